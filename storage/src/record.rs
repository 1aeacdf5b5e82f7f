//! The record data image: what the storage engine keeps for a record, apart from the
//! metadata in its index entry.
//!
//! ```text
//! u8      flags            bit 0: a user key follows
//! [u8     key particle type
//!  u32 LE key length
//!  bytes  key]
//! u16 LE  bin count
//! per bin:
//!   u8      name length (1..=15)
//!   bytes   name
//!   u8      particle type
//!   u32 LE  value length
//!   bytes   value (wire form)
//! ```
//!
//! Images are written only by this module, but they are parsed defensively all the same:
//! a malformed image yields an error, never a panic.

use crate::value::ParticleRef;
use crate::StorageError;

const FLAG_HAS_KEY: u8 = 0x01;
/// Most bins a record may hold.
pub const BINS_MAX: usize = u16::MAX as usize;
/// Bytes an image spends per bin besides name and value.
pub const BIN_OVERHEAD: usize = 1 + 1 + 4;

/// A bin as stored: its name and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinRef<'a> {
    pub name: &'a [u8],
    pub value: ParticleRef<'a>,
}

/// A user key as stored: particle type and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub particle: u8,
    pub bytes: &'a [u8],
}

/// A parsed view of an image.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub key: Option<KeyRef<'a>>,
    bins_count: u16,
    bins: &'a [u8],
}

const CORRUPT: StorageError = StorageError::Internal("corrupt record image");

impl<'a> ImageView<'a> {
    pub fn parse(image: &'a [u8]) -> Result<ImageView<'a>, StorageError> {
        let mut c = Cursor { buf: image, pos: 0 };
        let flags = c.u8()?;
        let key = if flags & FLAG_HAS_KEY != 0 {
            let particle = c.u8()?;
            let len = c.u32()? as usize;
            Some(KeyRef { particle, bytes: c.take(len)? })
        } else {
            None
        };
        let bins_count = c.u16()?;
        Ok(ImageView { key, bins_count, bins: &image[c.pos..] })
    }

    pub fn bins_count(&self) -> usize {
        self.bins_count as usize
    }

    /// The bins, in stored order. A malformed bin ends the iteration with an error item.
    pub fn bins(&self) -> BinIter<'a> {
        BinIter { cursor: Cursor { buf: self.bins, pos: 0 }, left: self.bins_count }
    }

    /// The bin called `name`, if present.
    pub fn bin(&self, name: &[u8]) -> Result<Option<BinRef<'a>>, StorageError> {
        for b in self.bins() {
            let b = b?;
            if b.name == name {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}

/// Iterator over an image's bins.
#[derive(Debug)]
pub struct BinIter<'a> {
    cursor: Cursor<'a>,
    left: u16,
}

impl<'a> Iterator for BinIter<'a> {
    type Item = Result<BinRef<'a>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let c = &mut self.cursor;
            let name_len = c.u8()? as usize;
            let name = c.take(name_len)?;
            let particle = c.u8()?;
            let len = c.u32()? as usize;
            let bytes = c.take(len)?;
            Ok(BinRef { name, value: ParticleRef { particle, bytes } })
        })();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }
}

#[derive(Debug)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        let end = self.pos.checked_add(n).ok_or(CORRUPT)?;
        let s = self.buf.get(self.pos..end).ok_or(CORRUPT)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StorageError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, StorageError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Size of the image that [`encode`] would produce.
pub fn encoded_len<'b>(key: Option<KeyRef<'_>>, bins: impl Iterator<Item = (&'b [u8], usize)>) -> usize {
    let key_len = key.map_or(0, |k| 1 + 4 + k.bytes.len());
    1 + key_len + 2 + bins.map(|(name, value_len)| BIN_OVERHEAD + name.len() + value_len).sum::<usize>()
}

/// Writes an image into `out` (cleared first).
pub fn encode<'b>(
    out: &mut Vec<u8>,
    key: Option<KeyRef<'_>>,
    bins: impl ExactSizeIterator<Item = (&'b [u8], u8, &'b [u8])>,
) -> Result<(), StorageError> {
    out.clear();
    let count = u16::try_from(bins.len()).map_err(|_| StorageError::Parameter("too many bins"))?;
    match key {
        Some(k) => {
            out.push(FLAG_HAS_KEY);
            out.push(k.particle);
            out.extend_from_slice(&(k.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(k.bytes);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&count.to_le_bytes());
    for (name, particle, value) in bins {
        debug_assert!(!name.is_empty() && name.len() <= petrel_proto::wire::BIN_NAME_LEN_MAX);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(particle);
        let len = u32::try_from(value.len()).map_err(|_| StorageError::Parameter("value too large"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trip() {
        let mut out = Vec::new();
        let key = Some(KeyRef { particle: 3, bytes: b"k1" });
        let bins: Vec<(&[u8], u8, &[u8])> = vec![(b"a", 1, &[0, 0, 0, 0, 0, 0, 0, 7]), (b"bb", 3, b"hi")];
        encode(&mut out, key, bins.iter().copied()).expect("encode");
        assert_eq!(out.len(), encoded_len(key, bins.iter().map(|b| (b.0, b.2.len()))));
        let view = ImageView::parse(&out).expect("parse");
        assert_eq!(view.key, key);
        let got: Vec<_> = view.bins().map(|b| b.expect("bin")).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].name, b"bb");
        assert_eq!(got[1].value.bytes, b"hi");
        assert_eq!(view.bin(b"a").expect("ok").map(|b| b.value.particle), Some(1));
    }

    #[test]
    fn truncated_images_are_errors() {
        let mut out = Vec::new();
        let bins: Vec<(&[u8], u8, &[u8])> = vec![(b"a", 3, b"hello")];
        encode(&mut out, None, bins.into_iter()).expect("encode");
        for cut in 0..out.len() {
            let r = ImageView::parse(&out[..cut]).and_then(|v| v.bins().collect::<Result<Vec<_>, _>>());
            assert!(r.is_err(), "cut at {cut} parsed");
        }
    }
}
