//! Petrel's storage core: everything about records on one node, below the network.
//!
//! * [`index`] — the primary index: per partition, sprigs of arena-based red-black trees
//!   keyed by digest, each sprig behind its own lock.
//! * [`engine`] — where record data lives ([`StorageEngine`]); today in memory.
//! * [`exp`] — filter expressions: compiled once per request, evaluated per record.
//! * [`record`] — the data image of a record; [`value`] — bin values and their checks.
//! * [`ops`] — the single-record operations and policies; [`cdt`] — list and map operations;
//!   [`bits`] — bitwise operations on bytes bins; [`hll`] — HyperLogLog operations.
//! * [`namespace`] — a namespace: partitions, sets, reads, operates, deletes, copies from other
//!   nodes, scans, truncation, statistics.
//! * [`nsup`] — the background supervisor and its passes (expiry, eviction); [`clock`] — time
//!   behind a seam.
//!
//! This crate knows nothing of sockets or of other nodes.

pub mod bits;
pub mod cdt;
pub mod clock;
pub mod device;
pub mod engine;
mod error;
pub mod exp;
pub mod hll;
pub mod index;
pub mod location;
pub mod namespace;
pub mod nsup;
mod oparg;
pub mod ops;
pub mod record;
pub mod sindex;
pub mod value;

pub use device::{DeviceConfig, DeviceEngine, DeviceFileConfig};
pub use engine::{MemoryEngine, StorageEngine};
pub use error::StorageError;
pub use location::{Engine, Location};
pub use namespace::{Namespace, NamespaceConfig, NamespaceStats, RecordMeta};
pub use ops::{ExistsAction, GenerationPolicy, Op, OperateRequest, ReadSelect, Ttl, WritePolicy};
pub use value::Value;
