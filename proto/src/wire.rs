//! The Aerospike wire contract: proto header, message header, field, op and particle types,
//! flag bits, result codes, and the size limits Petrel enforces.
//!
//! Numbers here are the protocol's, not ours: every enum carries its wire value explicitly.

/// Proto header version byte.
pub const PROTO_VERSION: u8 = 2;
/// Length of the proto header that precedes every frame.
pub const PROTO_HEADER_LEN: usize = 8;
/// Length of the AS_MSG header.
pub const MSG_HEADER_LEN: usize = 22;
/// Largest frame body the protocol allows (128 MiB).
pub const PROTO_SIZE_MAX: u64 = 128 * 1024 * 1024;
/// Longest bin name, in bytes.
pub const BIN_NAME_LEN_MAX: usize = 15;
/// Longest set name, in bytes.
pub const SET_NAME_LEN_MAX: usize = 63;
/// Longest namespace name, in bytes.
pub const NAMESPACE_NAME_LEN_MAX: usize = 31;
/// Seconds between the Unix epoch and the Citrusleaf epoch, 2010-01-01T00:00:00Z.
pub const CITRUSLEAF_EPOCH_SECS: u64 = 1_262_304_000;
/// Longest TTL a client may ask for: 10 years.
pub const TTL_SECS_MAX: u32 = 315_360_000;
/// `record_ttl` value: never expire.
pub const TTL_NEVER_EXPIRE: u32 = u32::MAX;
/// `record_ttl` value: keep the record's current expiry.
pub const TTL_DONT_UPDATE: u32 = u32::MAX - 1;

/// Proto frame types (header byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Info = 1,
    Admin = 2,
    Message = 3,
    CompressedMessage = 4,
}

/// `info1` flags (read side).
pub mod info1 {
    pub const READ: u8 = 0x01;
    pub const GET_ALL: u8 = 0x02;
    pub const SHORT_QUERY: u8 = 0x04;
    pub const BATCH: u8 = 0x08;
    pub const XDR: u8 = 0x10;
    pub const GET_NO_BINS: u8 = 0x20;
    pub const READ_MODE_AP_ALL: u8 = 0x40;
    pub const COMPRESS_RESPONSE: u8 = 0x80;
}

/// `info2` flags (write side).
pub mod info2 {
    pub const WRITE: u8 = 0x01;
    pub const DELETE: u8 = 0x02;
    pub const GENERATION: u8 = 0x04;
    pub const GENERATION_GT: u8 = 0x08;
    pub const DURABLE_DELETE: u8 = 0x10;
    pub const CREATE_ONLY: u8 = 0x20;
    pub const RELAX_AP_LONG_QUERY: u8 = 0x40;
    pub const RESPOND_ALL_OPS: u8 = 0x80;
}

/// `info3` flags.
pub mod info3 {
    pub const LAST: u8 = 0x01;
    pub const COMMIT_MASTER: u8 = 0x02;
    pub const PARTITION_DONE: u8 = 0x04;
    pub const UPDATE_ONLY: u8 = 0x08;
    pub const CREATE_OR_REPLACE: u8 = 0x10;
    pub const REPLACE_ONLY: u8 = 0x20;
    pub const SC_READ_TYPE: u8 = 0x40;
    pub const SC_READ_RELAX: u8 = 0x80;
}

/// `info4` flags: multi-record transactions (bits 0-4) and error-detail verbosity (5-6).
pub mod info4 {
    pub const TXN_VERIFY_READ: u8 = 0x01;
    pub const TXN_ROLL_FORWARD: u8 = 0x02;
    pub const TXN_ROLL_BACK: u8 = 0x04;
    pub const TXN_MONITOR: u8 = 0x08;
    pub const TXN_ON_LOCKING_ONLY: u8 = 0x10;
    /// Every bit that belongs to a multi-record transaction.
    pub const TXN_MASK: u8 = 0x1f;
}

/// Field types of an AS_MSG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FieldType {
    Namespace = 0,
    Set = 1,
    Key = 2,
    RecordVersion = 3,
    Digest = 4,
    TxnId = 5,
    TxnDeadline = 6,
    TaskId = 7,
    SocketTimeout = 9,
    RecordsPerSecond = 10,
    PidArray = 11,
    DigestArray = 12,
    MaxRecords = 13,
    BvalArray = 15,
    IndexName = 21,
    IndexRange = 22,
    IndexContext = 23,
    IndexExpression = 24,
    IndexType = 26,
    UdfPackageName = 30,
    UdfFunction = 31,
    UdfArgList = 32,
    UdfOp = 33,
    QueryBinList = 40,
    BatchIndex = 41,
    BatchIndexWithSet = 42,
    Filter = 43,
}

/// Op types of an AS_MSG op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpType {
    Read = 1,
    Write = 2,
    CdtRead = 3,
    CdtModify = 4,
    Incr = 5,
    ExpRead = 7,
    ExpModify = 8,
    Append = 9,
    Prepend = 10,
    Touch = 11,
    BitRead = 12,
    BitModify = 13,
    Delete = 14,
    HllRead = 15,
    HllModify = 16,
}

impl OpType {
    /// Decodes a wire op type; `None` for codes Petrel does not know.
    pub fn from_u8(v: u8) -> Option<OpType> {
        use OpType::*;
        Some(match v {
            1 => Read,
            2 => Write,
            3 => CdtRead,
            4 => CdtModify,
            5 => Incr,
            7 => ExpRead,
            8 => ExpModify,
            9 => Append,
            10 => Prepend,
            11 => Touch,
            12 => BitRead,
            13 => BitModify,
            14 => Delete,
            15 => HllRead,
            16 => HllModify,
            _ => return None,
        })
    }
}

/// Particle (value) types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ParticleType {
    Null = 0,
    Integer = 1,
    Float = 2,
    String = 3,
    Blob = 4,
    Digest = 6,
    JavaBlob = 7,
    CSharpBlob = 8,
    PythonBlob = 9,
    RubyBlob = 10,
    PhpBlob = 11,
    ErlangBlob = 12,
    Vector = 16,
    Bool = 17,
    Hll = 18,
    Map = 19,
    List = 20,
    GeoJson = 23,
}

impl ParticleType {
    /// Decodes a wire particle type; `None` for codes that are not particle types.
    pub fn from_u8(v: u8) -> Option<ParticleType> {
        use ParticleType::*;
        Some(match v {
            0 => Null,
            1 => Integer,
            2 => Float,
            3 => String,
            4 => Blob,
            6 => Digest,
            7 => JavaBlob,
            8 => CSharpBlob,
            9 => PythonBlob,
            10 => RubyBlob,
            11 => PhpBlob,
            12 => ErlangBlob,
            16 => Vector,
            17 => Bool,
            18 => Hll,
            19 => Map,
            20 => List,
            23 => GeoJson,
            _ => return None,
        })
    }
}

/// Result codes, with their wire values. Client-side negative codes never travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResultCode {
    Ok = 0,
    Unknown = 1,
    NotFound = 2,
    Generation = 3,
    Parameter = 4,
    RecordExists = 5,
    BinExists = 6,
    ClusterKeyMismatch = 7,
    OutOfSpace = 8,
    Timeout = 9,
    Unavailable = 11,
    IncompatibleType = 12,
    RecordTooBig = 13,
    KeyBusy = 14,
    QueryAbort = 15,
    UnsupportedFeature = 16,
    BinNotFound = 17,
    DeviceOverload = 18,
    KeyMismatch = 19,
    Namespace = 20,
    BinName = 21,
    Forbidden = 22,
    ElementNotFound = 23,
    ElementExists = 24,
    EnterpriseOnly = 25,
    OpNotApplicable = 26,
    FilteredOut = 27,
    LostConflict = 28,
    QueryEnd = 50,
    SecurityNotSupported = 51,
    SecurityNotEnabled = 52,
    UdfExecution = 100,
    BatchDisabled = 150,
    BatchMaxRequests = 151,
    BatchQueuesFull = 152,
    GeoInvalidGeoJson = 160,
    IndexFound = 200,
    IndexNotFound = 201,
    IndexOom = 202,
    IndexNotReadable = 203,
    IndexGeneric = 204,
    IndexName = 205,
    IndexMaxCount = 206,
}

impl ResultCode {
    /// The wire byte.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The code for a wire byte, if it is one Petrel knows.
    pub fn from_u8(v: u8) -> Option<ResultCode> {
        use ResultCode::*;
        const ALL: [ResultCode; 43] = [
            Ok,
            Unknown,
            NotFound,
            Generation,
            Parameter,
            RecordExists,
            BinExists,
            ClusterKeyMismatch,
            OutOfSpace,
            Timeout,
            Unavailable,
            IncompatibleType,
            RecordTooBig,
            KeyBusy,
            QueryAbort,
            UnsupportedFeature,
            BinNotFound,
            DeviceOverload,
            KeyMismatch,
            Namespace,
            BinName,
            Forbidden,
            ElementNotFound,
            ElementExists,
            EnterpriseOnly,
            OpNotApplicable,
            FilteredOut,
            LostConflict,
            QueryEnd,
            SecurityNotSupported,
            SecurityNotEnabled,
            UdfExecution,
            BatchDisabled,
            BatchMaxRequests,
            BatchQueuesFull,
            GeoInvalidGeoJson,
            IndexFound,
            IndexNotFound,
            IndexOom,
            IndexNotReadable,
            IndexGeneric,
            IndexName,
            IndexMaxCount,
        ];
        ALL.iter().copied().find(|c| c.code() == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_round_trip() {
        for v in 0..=255u8 {
            if let Some(c) = ResultCode::from_u8(v) {
                assert_eq!(c.code(), v);
            }
        }
        assert_eq!(ResultCode::from_u8(11), Some(ResultCode::Unavailable));
        assert_eq!(ResultCode::from_u8(10), None);
    }

    #[test]
    fn op_and_particle_types_round_trip() {
        for v in 0..=255u8 {
            if let Some(op) = OpType::from_u8(v) {
                assert_eq!(op as u8, v);
            }
            if let Some(p) = ParticleType::from_u8(v) {
                assert_eq!(p as u8, v);
            }
        }
    }
}
