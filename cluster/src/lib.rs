//! Petrel's cluster layer: heartbeat, membership, the partition table, the fabric between
//! nodes, replication and migrations.
//!
//! It sits between `petrel-storage` (which holds a node's partitions) and `petrel-server`
//! (which serves clients). What is here so far is the logic every node runs identically,
//! free of sockets and clocks so it can be tested with injected time:
//!
//! * [`partition_table`] — replica lists per partition from the member list (rendezvous
//!   hashing plus a balancing pass).
//! * [`membership`] — heartbeat bookkeeping and the agreement on who is in the cluster
//!   (principal, quanta, cluster key, clique eviction, splits and merges).
//! * [`heartbeat`] — the mesh transport that carries pulses between nodes and drives the
//!   membership.
//! * [`fabric`] — multiplexed request/answer connections between nodes for replica writes,
//!   migrations and proxied requests, with per-peer back-pressure and deadlines.
//!
//! `petreld` does not start the heartbeat yet: until replication and migrations land, it runs
//! as a cluster of one, so that a partition is never served by a node without its data.

pub mod fabric;
pub mod heartbeat;
pub mod membership;
pub mod partition_table;
pub mod plan;
pub mod runtime;

pub use membership::{ClusterView, Membership, MembershipConfig, NodeEndpoints};
pub use partition_table::{NodeId, PartitionTable};
