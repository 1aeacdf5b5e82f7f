//! Petrel's wire contract, in one place.
//!
//! This crate owns everything a peer must agree on byte for byte: the key digest and the
//! partition id it selects ([`digest`]), the constants of the Aerospike wire protocol — header
//! layout, field, op and particle types, flag bits, result codes, size limits ([`wire`]) — frames
//! and messages ([`message`]), the batch-index rows ([`batch`]), the
//! bytes of each bin value type ([`particle`]), the msgpack flavour used for list and map
//! values and CDT operation payloads ([`msgpack`]), the CDT op codes, return types and flags
//! ([`cdt`]), the bitwise op codes and flags ([`bits`]), the HyperLogLog op codes, flags and
//! value layout ([`hll`]), the filter-expression op codes and flags ([`exp`]), and the messages nodes exchange among themselves, as protobuf ([`cluster`]).
//! It depends on nothing else in the workspace, so the client can use it alone.

pub mod batch;
pub mod bits;
pub mod cdt;
pub mod cluster;
pub mod digest;
pub mod exp;
pub mod hll;
pub mod message;
pub mod msgpack;
pub mod particle;
pub mod wire;

pub use digest::{Digest, KeyRef, PartitionId, PARTITIONS_COUNT};
pub use wire::{ParticleType, ResultCode};
