//! The cluster simulator: five real cluster nodes (membership, exchange, plans, migrations,
//! replica writes, routing, each node with its own in-memory namespace) in one process, on a
//! single-threaded runtime whose clock only moves when every task waits (tokio's paused
//! time), talking through a simulated network ([`net::SimNet`]). A schedule drawn from a
//! seed injects message delay, loss, duplication and reordering, one-way and two-way cuts,
//! splits, pauses (as by SIGSTOP, shorter and longer than the node timeout) and crashes with
//! restarts, while clients write registers through the nodes' own request path (plan wait,
//! route, apply on the master, copies to every other owner).
//!
//! Checked every few steps: among nodes holding one cluster key, at most one takes writes for
//! a partition. Checked at the end, once every fault is healed: every node installed the plan
//! of one common view of all nodes within a bounded time, every owner of a partition holds
//! the same copy of each record, and each record holds its last acknowledged value (or the
//! value of a later write whose outcome was in doubt).
//!
//! A seed replays exactly: `cargo run --release -p petrel-cluster --features sim --bin sim --
//! --seed N`. Only with the `sim` feature (it needs tokio's paused clock).

mod machine;
pub mod net;
mod watch;
mod world;

pub use world::{run, run_on, Report, Storage};
