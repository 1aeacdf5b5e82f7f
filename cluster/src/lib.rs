//! Petrel's cluster layer: heartbeat, membership, the partition table, the fabric between
//! nodes, replication and migrations.
//!
//! It sits between `petrel-storage` (which holds a node's partitions) and `petrel-server`
//! (which serves clients). Until membership lands, a node is a cluster of one and owns every
//! partition; the server answers the clients' cluster questions accordingly.
