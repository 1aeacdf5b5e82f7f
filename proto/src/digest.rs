//! Key digests and partition ids, computed exactly as the official Aerospike clients do.
//!
//! `digest = RIPEMD-160(set name || key particle-type byte || key bytes)`; the namespace is not
//! hashed. The partition id is the low 12 bits of the first two digest bytes read as a
//! little-endian `u16`.

use std::fmt;

use ripemd::{Digest as _, Ripemd160};

/// Number of partitions per namespace.
pub const PARTITIONS_COUNT: usize = 4096;
const PARTITION_MASK: u16 = (PARTITIONS_COUNT - 1) as u16;
const _: () = assert!(PARTITIONS_COUNT.is_power_of_two());

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 20;

/// A partition id, `0..PARTITIONS_COUNT`.
pub type PartitionId = u16;

/// A user key as the clients hash it: its particle type byte and its key bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyRef<'a> {
    /// Integer key (particle type 1), hashed as 8 bytes big-endian two's complement.
    Int(i64),
    /// String key (particle type 3), hashed as its UTF-8 bytes.
    Str(&'a str),
    /// Bytes key (particle type 4), hashed as is.
    Bytes(&'a [u8]),
}

impl KeyRef<'_> {
    /// The particle type byte that goes into the digest.
    pub fn particle_type(&self) -> u8 {
        match self {
            KeyRef::Int(_) => crate::ParticleType::Integer as u8,
            KeyRef::Str(_) => crate::ParticleType::String as u8,
            KeyRef::Bytes(_) => crate::ParticleType::Blob as u8,
        }
    }
}

/// The 20-byte RIPEMD-160 digest that identifies a record within a namespace.
///
/// Ordered bytewise (as the index and partition scans walk it); the comparison reads the
/// bytes as big-endian words, which is the same order without a call into `memcmp`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; DIGEST_LEN]);

impl Ord for Digest {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let word = |d: &[u8; DIGEST_LEN], i: usize| {
            u64::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6], d[i + 7]])
        };
        let tail = |d: &[u8; DIGEST_LEN]| u32::from_be_bytes([d[16], d[17], d[18], d[19]]);
        word(&self.0, 0)
            .cmp(&word(&other.0, 0))
            .then_with(|| word(&self.0, 8).cmp(&word(&other.0, 8)))
            .then_with(|| tail(&self.0).cmp(&tail(&other.0)))
    }
}

impl PartialOrd for Digest {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Digest {
    /// Computes the digest of `key` in `set` (empty set name = no set).
    pub fn compute(set: &[u8], key: KeyRef<'_>) -> Digest {
        let mut hasher = Ripemd160::new();
        hasher.update(set);
        hasher.update([key.particle_type()]);
        match key {
            KeyRef::Int(v) => hasher.update(v.to_be_bytes()),
            KeyRef::Str(s) => hasher.update(s.as_bytes()),
            KeyRef::Bytes(b) => hasher.update(b),
        }
        Digest(hasher.finalize().into())
    }

    /// Computes the digest from a raw particle type and key bytes, as they arrive in a KEY field.
    pub fn compute_raw(set: &[u8], particle_type: u8, key_bytes: &[u8]) -> Digest {
        let mut hasher = Ripemd160::new();
        hasher.update(set);
        hasher.update([particle_type]);
        hasher.update(key_bytes);
        Digest(hasher.finalize().into())
    }

    /// Builds a digest from a slice, which must be exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        <[u8; DIGEST_LEN]>::try_from(bytes).ok().map(Digest)
    }

    /// The partition this digest belongs to.
    #[inline]
    pub fn partition_id(&self) -> PartitionId {
        u16::from_le_bytes([self.0[0], self.0[1]]) & PARTITION_MASK
    }

    /// The 28 digest bits that follow the partition id bits (byte 1's high nibble, then bytes
    /// 2..=4), used to pick a sprig and its lock within a partition.
    #[inline]
    pub fn sprig_bits(&self) -> u32 {
        let d = &self.0;
        ((d[1] as u32 >> 4) << 24) | ((d[2] as u32) << 16) | ((d[3] as u32) << 8) | d[4] as u32
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_doc_vectors() {
        let cases: [(KeyRef<'_>, &str); 4] = [
            (KeyRef::Int(0), "93d943aae37b017ad7e011b0c1d2e2143c2fb37d"),
            (KeyRef::Int(1), "82d7213b469812947c109a6d341e3b5b1dedec1f"),
            (KeyRef::Int(-1), "22116d253745e29fc63fdf760b6e26f7e197e01d"),
            (KeyRef::Str(""), "2819b1ff6e346a43b4f5f6b77a88bc3eaac22a83"),
        ];
        for (key, want) in cases {
            assert_eq!(Digest::compute(b"set", key).to_string(), want, "{key:?}");
        }
        assert_eq!(Digest::compute(b"set", KeyRef::Int(1)).partition_id(), 1922);
    }

    proptest::proptest! {
        #[test]
        fn order_is_bytewise(a in proptest::array::uniform20(0u8..), b in proptest::array::uniform20(0u8..)) {
            proptest::prop_assert_eq!(Digest(a).cmp(&Digest(b)), a.cmp(&b));
        }
    }

    #[test]
    fn raw_and_typed_agree() {
        let typed = Digest::compute(b"demo", KeyRef::Str("key1"));
        let raw = Digest::compute_raw(b"demo", 3, b"key1");
        assert_eq!(typed, raw);
    }

    #[test]
    fn sprig_bits_follow_partition_bits() {
        let d = Digest([0xff, 0xab, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.partition_id(), 0x0bff);
        assert_eq!(d.sprig_bits(), 0x0a12_3456);
    }
}
