//! Records as calls return them.

use std::collections::BTreeMap;

use petrel_proto::wire::CITRUSLEAF_EPOCH_SECS;

use crate::key::Key;
use crate::value::Value;

/// A record: its bins and metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The key, when the call knows it (scans return the stored key if any).
    pub key: Option<Key>,
    pub bins: BTreeMap<String, Value>,
    pub generation: u32,
    /// Expiry in seconds since 2010-01-01; 0 = never.
    pub void_time: u32,
    /// Bins that received several results (their value is the list of them).
    pub(crate) merged: Vec<String>,
}

impl Record {
    /// Seconds left to live, or `None` for a record that never expires.
    pub fn ttl_secs(&self) -> Option<u32> {
        if self.void_time == 0 {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(CITRUSLEAF_EPOCH_SECS);
        Some((self.void_time as u64).saturating_sub(now) as u32)
    }

    /// A bin's value.
    pub fn bin(&self, name: &str) -> Option<&Value> {
        self.bins.get(name)
    }

    /// Adds a result; several results for one bin are gathered into a list, in order.
    pub(crate) fn push_bin(&mut self, name: String, value: Value) {
        if let Some(existing) = self.bins.get_mut(&name) {
            if self.merged.contains(&name) {
                if let Value::List(items) = existing {
                    items.push(value);
                }
            } else {
                let first = std::mem::replace(existing, Value::Nil);
                *existing = Value::List(vec![first, value]);
                self.merged.push(name);
            }
        } else {
            self.bins.insert(name, value);
        }
    }
}
