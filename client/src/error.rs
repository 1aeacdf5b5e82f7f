//! The client's errors. A server refusal carries the protocol's result code.

use petrel_proto::ResultCode;
use thiserror::Error;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The server answered with a non-zero result code.
    #[error("server answered result code {code}")]
    Server { code: u8 },
    /// The call's total timeout passed.
    #[error("timed out")]
    Timeout,
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something the client cannot understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No node is known for the key's partition.
    #[error("no node serves namespace {namespace} partition {partition}")]
    NoNode { namespace: String, partition: u16 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The cluster could not be reached from any seed.
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("client is closed")]
    Closed,
}

impl Error {
    /// The server's result code, for server refusals.
    pub fn result_code(&self) -> Option<u8> {
        match self {
            Error::Server { code } => Some(*code),
            _ => None,
        }
    }

    /// True when the server answered "not found".
    pub fn is_not_found(&self) -> bool {
        self.result_code() == Some(ResultCode::NotFound.code())
    }

    /// Whether another attempt (maybe on another node) may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Io(_) | Error::Timeout | Error::NoNode { .. } => true,
            Error::Server { code } => {
                *code == ResultCode::Unavailable.code()
                    || *code == ResultCode::Timeout.code()
                    || *code == ResultCode::DeviceOverload.code()
            }
            _ => false,
        }
    }
}
