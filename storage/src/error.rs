//! The storage layer's errors, each one the counterpart of one Aerospike result code.

use petrel_proto::ResultCode;
use thiserror::Error;

/// Why a storage operation failed. Every variant corresponds to exactly one result code
/// ([`StorageError::result_code`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("record not found")]
    NotFound,
    #[error("generation check failed (record generation {actual})")]
    Generation { actual: u16 },
    #[error("bad parameter: {0}")]
    Parameter(&'static str),
    #[error("record already exists")]
    RecordExists,
    #[error("namespace memory is past its stop-writes mark")]
    OutOfSpace,
    #[error("bin type does not fit the operation")]
    IncompatibleType,
    #[error("record of {size} bytes is over the {limit}-byte limit")]
    RecordTooBig { size: usize, limit: usize },
    #[error("operation not supported: {0}")]
    Unsupported(&'static str),
    #[error("sent key differs from the stored key")]
    KeyMismatch,
    #[error("namespace not found")]
    NamespaceNotFound,
    #[error("bad bin name: {0}")]
    BinName(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("bin already exists")]
    BinExists,
    #[error("bin not found")]
    BinNotFound,
    #[error("collection element not found")]
    ElementNotFound,
    #[error("collection element exists")]
    ElementExists,
    #[error("operation not applicable: {0}")]
    OpNotApplicable(&'static str),
    #[error("record filtered out by the request's expression")]
    FilteredOut,
    #[error("internal storage error: {0}")]
    Internal(&'static str),
    #[error("device error: {0}")]
    Device(String),
    #[error("secondary index exists: {0}")]
    IndexFound(&'static str),
    #[error("secondary index not found")]
    IndexNotFound,
    #[error("secondary index is still being built")]
    IndexNotReadable,
    #[error("bad secondary index name: {0}")]
    IndexName(&'static str),
    #[error("too many secondary indexes")]
    IndexMaxCount,
}

impl StorageError {
    /// The Aerospike result code this error is answered with.
    pub fn result_code(&self) -> ResultCode {
        use StorageError::*;
        match self {
            NotFound => ResultCode::NotFound,
            Generation { .. } => ResultCode::Generation,
            Parameter(_) => ResultCode::Parameter,
            RecordExists => ResultCode::RecordExists,
            OutOfSpace => ResultCode::OutOfSpace,
            IncompatibleType => ResultCode::IncompatibleType,
            RecordTooBig { .. } => ResultCode::RecordTooBig,
            Unsupported(_) => ResultCode::UnsupportedFeature,
            KeyMismatch => ResultCode::KeyMismatch,
            NamespaceNotFound => ResultCode::Namespace,
            BinName(_) => ResultCode::BinName,
            Forbidden(_) => ResultCode::Forbidden,
            BinExists => ResultCode::BinExists,
            BinNotFound => ResultCode::BinNotFound,
            ElementNotFound => ResultCode::ElementNotFound,
            ElementExists => ResultCode::ElementExists,
            OpNotApplicable(_) => ResultCode::OpNotApplicable,
            FilteredOut => ResultCode::FilteredOut,
            Internal(_) | Device(_) => ResultCode::Unknown,
            IndexFound(_) => ResultCode::IndexFound,
            IndexNotFound => ResultCode::IndexNotFound,
            IndexNotReadable => ResultCode::IndexNotReadable,
            IndexName(_) => ResultCode::IndexName,
            IndexMaxCount => ResultCode::IndexMaxCount,
        }
    }
}

impl From<crate::cdt::CdtError> for StorageError {
    fn from(e: crate::cdt::CdtError) -> Self {
        use crate::cdt::CdtError;
        match e {
            CdtError::Parameter(m) => StorageError::Parameter(m),
            CdtError::IncompatibleType => StorageError::IncompatibleType,
            CdtError::NotApplicable(m) => StorageError::OpNotApplicable(m),
            CdtError::ElementNotFound => StorageError::ElementNotFound,
            CdtError::ElementExists => StorageError::ElementExists,
            CdtError::Unsupported(_) => StorageError::Unsupported("collection operation"),
        }
    }
}

impl From<petrel_proto::particle::ParticleError> for StorageError {
    fn from(e: petrel_proto::particle::ParticleError) -> Self {
        StorageError::Parameter(e.message())
    }
}
