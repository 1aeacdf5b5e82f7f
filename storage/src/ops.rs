//! The single-record operations a caller can ask for, and their policies, in the terms of the
//! Aerospike protocol (protocol reference §6).

use petrel_proto::wire::{OpType, TTL_DONT_UPDATE, TTL_NEVER_EXPIRE, TTL_SECS_MAX};

use crate::record::KeyRef;
use crate::value::{Particle, ParticleRef};
use crate::StorageError;

/// One operation on one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op<'a> {
    /// Read a bin; an empty name reads every bin.
    Read { bin: &'a [u8] },
    /// Set a bin; a nil value removes it.
    Write { bin: &'a [u8], value: ParticleRef<'a> },
    /// Add to an integer or float bin (creating it); integers wrap on overflow.
    Add { bin: &'a [u8], value: ParticleRef<'a> },
    /// Append to a string or blob bin (creating it).
    Append { bin: &'a [u8], value: ParticleRef<'a> },
    /// Prepend to a string or blob bin (creating it).
    Prepend { bin: &'a [u8], value: ParticleRef<'a> },
    /// Refresh the record's generation and expiry.
    Touch,
    /// Remove every bin (and so the record, unless later ops add bins).
    DeleteRecord,
    /// A list or map read; `payload` is the msgpack `[op_code, args...]`.
    CdtRead { bin: &'a [u8], payload: &'a [u8] },
    /// A list or map modify.
    CdtModify { bin: &'a [u8], payload: &'a [u8] },
    /// A bit read on a bytes bin; `payload` is the msgpack `[op_code, args...]`.
    BitRead { bin: &'a [u8], payload: &'a [u8] },
    /// A bit modify on a bytes bin.
    BitModify { bin: &'a [u8], payload: &'a [u8] },
    /// A HyperLogLog read; `payload` is the msgpack `[op_code, args...]`.
    HllRead { bin: &'a [u8], payload: &'a [u8] },
    /// A HyperLogLog modify.
    HllModify { bin: &'a [u8], payload: &'a [u8] },
    /// An expression read answered under `bin`; `payload` is the msgpack `[expression, flags]`.
    ExpRead { bin: &'a [u8], payload: &'a [u8] },
    /// An expression modify of `bin`.
    ExpModify { bin: &'a [u8], payload: &'a [u8] },
}

impl Op<'_> {
    /// Whether the op changes the record.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::Read { .. } | Op::CdtRead { .. } | Op::BitRead { .. } | Op::HllRead { .. } | Op::ExpRead { .. }
        )
    }

    /// The wire op type, echoed in results.
    pub fn op_type(&self) -> OpType {
        match self {
            Op::Read { .. } => OpType::Read,
            Op::Write { .. } => OpType::Write,
            Op::Add { .. } => OpType::Incr,
            Op::Append { .. } => OpType::Append,
            Op::Prepend { .. } => OpType::Prepend,
            Op::Touch => OpType::Touch,
            Op::DeleteRecord => OpType::Delete,
            Op::CdtRead { .. } => OpType::CdtRead,
            Op::CdtModify { .. } => OpType::CdtModify,
            Op::BitRead { .. } => OpType::BitRead,
            Op::BitModify { .. } => OpType::BitModify,
            Op::HllRead { .. } => OpType::HllRead,
            Op::HllModify { .. } => OpType::HllModify,
            Op::ExpRead { .. } => OpType::ExpRead,
            Op::ExpModify { .. } => OpType::ExpModify,
        }
    }

    /// The bin the op names, if any.
    pub fn bin(&self) -> &[u8] {
        match self {
            Op::Read { bin }
            | Op::Write { bin, .. }
            | Op::Add { bin, .. }
            | Op::Append { bin, .. }
            | Op::Prepend { bin, .. }
            | Op::CdtRead { bin, .. }
            | Op::CdtModify { bin, .. }
            | Op::BitRead { bin, .. }
            | Op::BitModify { bin, .. }
            | Op::HllRead { bin, .. }
            | Op::HllModify { bin, .. }
            | Op::ExpRead { bin, .. }
            | Op::ExpModify { bin, .. } => bin,
            Op::Touch | Op::DeleteRecord => b"",
        }
    }
}

/// What a write does depending on whether the record exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExistsAction {
    /// Create or merge bins into the existing record.
    #[default]
    Update,
    /// The record must exist; bins are merged.
    UpdateOnly,
    /// Create, or replace every bin of the existing record.
    Replace,
    /// The record must exist; every bin is replaced.
    ReplaceOnly,
    /// The record must not exist.
    CreateOnly,
}

/// Generation check of a write or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GenerationPolicy {
    #[default]
    None,
    /// Proceed only if the record's generation equals this.
    ExpectEqual(u32),
    /// Proceed only if this is greater than the record's generation.
    ExpectGreater(u32),
}

impl GenerationPolicy {
    pub(crate) fn check(self, actual: u16) -> Result<(), StorageError> {
        let ok = match self {
            GenerationPolicy::None => true,
            GenerationPolicy::ExpectEqual(g) => g == actual as u32,
            GenerationPolicy::ExpectGreater(g) => g > actual as u32,
        };
        if ok {
            Ok(())
        } else {
            Err(StorageError::Generation { actual })
        }
    }
}

/// A write's TTL, as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The namespace's default TTL (wire 0).
    #[default]
    NamespaceDefault,
    /// Never expire (wire -1).
    Never,
    /// Keep the record's current expiry (wire -2); the default on create.
    KeepExisting,
    /// Expire this many seconds from now (1 ..= 10 years).
    Secs(u32),
}

impl Ttl {
    /// Decodes a wire `record_ttl`.
    pub fn from_wire(v: u32) -> Result<Ttl, StorageError> {
        Ok(match v {
            0 => Ttl::NamespaceDefault,
            TTL_NEVER_EXPIRE => Ttl::Never,
            TTL_DONT_UPDATE => Ttl::KeepExisting,
            1..=TTL_SECS_MAX => Ttl::Secs(v),
            _ => return Err(StorageError::Parameter("TTL is over 10 years")),
        })
    }
}

/// Policies of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WritePolicy {
    pub exists: ExistsAction,
    pub generation: GenerationPolicy,
    pub ttl: Ttl,
    /// Return one result per op, in order (write ops give an empty result).
    pub respond_all_ops: bool,
}

/// A request to apply ops to one record.
#[derive(Debug, Clone, Copy)]
pub struct OperateRequest<'a> {
    pub digest: petrel_proto::Digest,
    /// The record's set name; empty means no set.
    pub set: &'a [u8],
    /// The user key to store, when the client sends it.
    pub key: Option<KeyRef<'a>>,
    pub policy: WritePolicy,
    pub ops: &'a [Op<'a>],
}

/// One op's result.
#[derive(Debug, Clone, PartialEq)]
pub struct OpResult {
    pub op_type: OpType,
    /// The bin name (empty for record-level ops).
    pub bin: Vec<u8>,
    /// The value; `None` answers as a nil particle.
    pub value: Option<Particle>,
}

/// What a bit or HLL operation did to its bin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BinOutcome {
    /// The bin's new value; `None` leaves the bin as it was.
    pub new_value: Option<Particle>,
    /// The op's answer, if it has one.
    pub result: Option<Particle>,
}

/// Which bins a read returns.
#[derive(Debug, Clone, Copy)]
pub enum ReadSelect<'a> {
    All,
    Bins(&'a [&'a [u8]]),
    /// Metadata only (exists, header reads).
    NoBins,
}
