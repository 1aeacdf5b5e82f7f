//! Petrel's cluster layer: heartbeat, membership, the partition table, the fabric between
//! nodes, replication and migrations.
//!
//! It sits between `petrel-storage` (which holds a node's partitions) and `petrel-server`
//! (which serves clients).
//!
//! The parts that are pure logic, tested with injected time and inputs:
//!
//! * [`partition_table`]: replica lists per partition from the member list (rendezvous
//!   hashing plus a balancing pass).
//! * [`membership`]: heartbeat bookkeeping and the agreement on who is in the cluster
//!   (principal, quanta, cluster key, clique eviction, splits and merges, stalls).
//! * [`plan`]: what happens to each partition after a view change (who holds it at which
//!   version, who sends it where, who acts as master meanwhile, when copies are given back).
//!
//! The transports, tested on loopback:
//!
//! * [`heartbeat`]: the mesh transport that carries pulses between nodes and drives the
//!   membership.
//! * [`fabric`]: multiplexed request/answer connections between nodes for replica writes,
//!   migrations and proxied requests, with per-peer back-pressure and deadlines.
//!
//! A node's cluster layer at run time, [`ClusterNode`], one module per step (tested through
//! `petreld` in `tests/`):
//!
//! * `node`: state, start and stop, settings, [`ServiceHooks`], dispatch of peers' requests.
//! * `exchange`: the exchange of partition versions after a view change.
//! * `rebalance`: following views, computing and installing the plans.
//! * `migrate`: sending and receiving partitions, announcing completed ones.
//! * `give_back`: dropping copies that settled on their owners.
//! * `leave`: leaving on purpose, handing every partition over first ([`LeaveOutcome`]).
//! * `route`: where a request is served ([`Route`]), the wait for a plan being installed.
//! * `replica`: replica writes ([`ClusterNode::write_copies`]) and applying them.
//! * `proxy`: requests and info commands carried to peers.
//! * `report`: summary, peers, roles, bitmaps, counters.
//! * `saved`: the partition versions of device namespaces, kept on disk across restarts.
//!
//! [`sim`] (feature `sim`) runs whole nodes on a simulated network under seeded faults; the
//! `sim` binary runs its seeds.

pub mod fabric;
pub mod heartbeat;
pub mod membership;
pub mod partition_table;
pub mod plan;

mod exchange;
mod give_back;
mod leave;
mod migrate;
mod node;
mod proxy;
mod rebalance;
mod reconcile;
mod replica;
mod report;
mod route;
mod saved;
#[cfg(feature = "sim")]
pub mod sim;

pub use heartbeat::HeartbeatConfig;
pub use leave::LeaveOutcome;
pub use membership::{ClusterView, Membership, MembershipConfig, NodeEndpoints};
pub use node::{ClusterConfig, ClusterNode, FabricStarter, ServiceHooks, Transports};
pub use partition_table::{NodeId, PartitionTable};
pub use proxy::PROXY_HOPS_MAX;
pub use replica::{CommitLevel, WriteCopy, REPLICA_WRITE_DEADLINE_MS};
pub use report::{ClusterCounters, ClusterSummary, Role};
pub use route::Route;
