//! Petrel's cluster layer: heartbeat, membership, the partition table, the fabric between
//! nodes, replication and migrations.
//!
//! It sits between `petrel-storage` (which holds a node's partitions) and `petrel-server`
//! (which serves clients).
//!
//! * [`partition_table`]: replica lists per partition from the member list (rendezvous
//!   hashing plus a balancing pass).
//! * [`membership`]: heartbeat bookkeeping and the agreement on who is in the cluster
//!   (principal, quanta, cluster key, clique eviction, splits and merges).
//! * [`plan`]: what happens to each partition after a view change (who holds it at which
//!   version, who sends it where, who acts as master meanwhile, when copies are given back).
//! * [`heartbeat`]: the mesh transport that carries pulses between nodes and drives the
//!   membership.
//! * [`fabric`]: multiplexed request/answer connections between nodes for replica writes,
//!   migrations and proxied requests, with per-peer back-pressure and deadlines.
//! * [`runtime`]: a node's cluster layer at run time, tying the above to its namespaces.
//!
//! The first three are pure logic, tested with injected time and inputs; the last three are
//! tested on loopback and through `petreld` in `tests/`.

pub mod fabric;
pub mod heartbeat;
pub mod membership;
pub mod partition_table;
pub mod plan;
pub mod runtime;

pub use membership::{ClusterView, Membership, MembershipConfig, NodeEndpoints};
pub use partition_table::{NodeId, PartitionTable};
