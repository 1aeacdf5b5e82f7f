//! Keys: namespace, set, user key, and the digest the cluster routes by.

use petrel_proto::{Digest, KeyRef, PartitionId};

use crate::value::Value;
use crate::Error;

/// A record's key. The digest is computed once, when the key is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub namespace: String,
    pub set: String,
    /// The user key, when known (it is sent to the server only with `send_key`).
    pub user_key: Option<Value>,
    pub digest: Digest,
}

impl Key {
    /// A key from a user key: an integer, a string or bytes.
    pub fn new(namespace: impl Into<String>, set: impl Into<String>, user_key: impl Into<Value>) -> Result<Key, Error> {
        let set = set.into();
        let user_key = user_key.into();
        let digest = match &user_key {
            Value::Int(i) => Digest::compute(set.as_bytes(), KeyRef::Int(*i)),
            Value::String(s) => Digest::compute(set.as_bytes(), KeyRef::Str(s)),
            Value::Blob(b) => Digest::compute(set.as_bytes(), KeyRef::Bytes(b)),
            other => {
                return Err(Error::InvalidArgument(format!("a key must be an integer, string or bytes, not {other:?}")))
            }
        };
        Ok(Key { namespace: namespace.into(), set, user_key: Some(user_key), digest })
    }

    /// A key known only by its digest.
    pub fn from_digest(namespace: impl Into<String>, set: impl Into<String>, digest: Digest) -> Key {
        Key { namespace: namespace.into(), set: set.into(), user_key: None, digest }
    }

    pub fn partition_id(&self) -> PartitionId {
        self.digest.partition_id()
    }
}
