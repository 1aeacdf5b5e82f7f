//! The secondary-index part of a query: decoding the INDEX_RANGE field (with the collection
//! type and CDT context fields beside it) and choosing the index that answers it.
//!
//! INDEX_RANGE: u8 filter count (1), u8 bin-name length, bin name, u8 particle type
//! (1 integer, 3 string, 4 blob, 23 GeoJSON), u32 BE begin length, begin, u32 BE end length,
//! end. Integers are 8-byte big-endian; string and blob filters are equalities (begin = end);
//! a GeoJSON filter carries the region (points within it) or the point (regions holding it).

use std::sync::Arc;

use petrel_proto::message::Message;
use petrel_proto::wire::{FieldType, ParticleType};
use petrel_proto::ResultCode;
use petrel_storage::record::ImageView;
use petrel_storage::sindex::{Collection, Key, KeyType, Range, Sindex};
use petrel_storage::Namespace;

/// A query's index and what it asks of the index's keys.
pub(crate) struct IndexQuery {
    pub(crate) index: Arc<Sindex>,
    pub(crate) range: Range,
}

impl IndexQuery {
    /// The index value a returned record matched, as the u64 an index query's answer carries:
    /// the integer itself, or a 64-bit FNV-1a hash of a string or blob.
    pub(crate) fn bval(&self, image: &ImageView<'_>) -> u64 {
        let mut keys = petrel_storage::sindex::Keys::new();
        self.index.def.spec.values_of(image, &mut keys);
        match keys.iter().find(|k| self.range.matches(k)) {
            Some(Key::Int(v)) => *v as u64,
            Some(Key::Bytes(b)) => {
                b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &byte| (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3))
            }
            Some(Key::Cell(c)) => *c,
            None => 0,
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ResultCode> {
        if self.buf.len() < n {
            return Err(ResultCode::Parameter);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ResultCode> {
        Ok(self.take(1)?[0])
    }

    fn sized(&mut self) -> Result<&'a [u8], ResultCode> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| ResultCode::Parameter)?);
        self.take(len as usize)
    }
}

/// The index query a message carries, if it carries one: `Err(IndexNotFound)` when no index
/// serves it, `Err(Parameter)` when the range is malformed.
pub(crate) fn parse(msg: &Message<'_>, ns: &Namespace) -> Result<Option<IndexQuery>, ResultCode> {
    let Some(raw) = msg.field(FieldType::IndexRange) else { return Ok(None) };
    let mut c = Cursor { buf: raw };
    if c.u8()? != 1 {
        // Aerospike answers one filter per query.
        return Err(ResultCode::Parameter);
    }
    let bin_len = c.u8()? as usize;
    let bin = c.take(bin_len)?;
    let particle = c.u8()?;
    let begin = c.sized()?;
    let end = c.sized()?;
    let int = |b: &[u8]| -> Result<i64, ResultCode> {
        Ok(i64::from_be_bytes(b.try_into().map_err(|_| ResultCode::Parameter)?))
    };
    let (key_type, range) = match ParticleType::from_u8(particle) {
        Some(ParticleType::Integer) => (KeyType::Numeric, Range::Int(int(begin)?, int(end)?)),
        Some(ParticleType::String) => (KeyType::String, Range::Bytes(begin.to_vec())),
        Some(ParticleType::Blob) => (KeyType::Blob, Range::Bytes(begin.to_vec())),
        Some(ParticleType::GeoJson) => (KeyType::Geo, Range::geo(begin.to_vec())),
        _ => return Err(ResultCode::Parameter),
    };
    let collection = match msg.field(FieldType::IndexType) {
        Some([b]) => Collection::from_wire(*b).ok_or(ResultCode::Parameter)?,
        Some(_) => return Err(ResultCode::Parameter),
        None => Collection::Default,
    };
    let ctx = msg.field(FieldType::IndexContext).unwrap_or(b"");
    let set = msg.field(FieldType::Set).unwrap_or(b"");
    let index = match msg.field(FieldType::IndexName) {
        Some(name) => std::str::from_utf8(name).ok().and_then(|n| ns.sindex(n)),
        None => {
            let all = ns.sindexes();
            // An index on the query's own set is preferred to one over the whole namespace.
            let serving = || all.iter().filter(|ix| ix.serves(bin, key_type, collection, ctx, set));
            serving().find(|ix| ix.def.set.is_some()).or_else(|| serving().next()).cloned()
        }
    };
    let index = index.ok_or(ResultCode::IndexNotFound)?;
    Ok(Some(IndexQuery { index, range }))
}
