//! What a secondary index holds for one record: the keys drawn from the indexed bin (the bin
//! itself, or the list elements, map keys or map values at the definition's CDT context) that
//! have the index's key type, and whether a query range matches a key.

use petrel_proto::msgpack::MsgValue;
use petrel_proto::particle;
use petrel_proto::wire::ParticleType;

use super::geo_cells::CellLookup;
use crate::cdt::{self, ParticleRef};
use crate::record::ImageView;

const P_INTEGER: u8 = ParticleType::Integer as u8;
const P_STRING: u8 = ParticleType::String as u8;
const P_BLOB: u8 = ParticleType::Blob as u8;
const P_GEOJSON: u8 = ParticleType::GeoJson as u8;

/// Most keys one record contributes to one index; a collection with more elements is indexed
/// by its first elements only (bounded work and memory per write).
pub const KEYS_PER_RECORD_MAX: usize = 4096;

/// The type of value an index holds (Aerospike's `NUMERIC`/`STRING`/`BLOB`/`GEO2DSPHERE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Numeric,
    String,
    Blob,
    Geo,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<KeyType> {
        match s.to_ascii_uppercase().as_str() {
            "NUMERIC" | "INTEGER" => Some(KeyType::Numeric),
            "STRING" => Some(KeyType::String),
            "BLOB" => Some(KeyType::Blob),
            "GEO2DSPHERE" | "GEOJSON" => Some(KeyType::Geo),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Numeric => "numeric",
            KeyType::String => "string",
            KeyType::Blob => "blob",
            KeyType::Geo => "geo2dsphere",
        }
    }

    /// The particle type a query range of this key type carries.
    pub fn particle(self) -> u8 {
        match self {
            KeyType::Numeric => P_INTEGER,
            KeyType::String => P_STRING,
            KeyType::Blob => P_BLOB,
            KeyType::Geo => P_GEOJSON,
        }
    }
}

/// Which values of the bin (at the context) are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// The value itself.
    Default,
    /// Each element of a list.
    List,
    /// Each key of a map.
    MapKeys,
    /// Each value of a map.
    MapValues,
}

impl Collection {
    pub fn parse(s: &str) -> Option<Collection> {
        match s.to_ascii_uppercase().as_str() {
            "DEFAULT" | "NONE" => Some(Collection::Default),
            "LIST" => Some(Collection::List),
            "MAPKEYS" => Some(Collection::MapKeys),
            "MAPVALUES" => Some(Collection::MapValues),
            _ => None,
        }
    }

    /// From the query's INDEX_TYPE field byte.
    pub fn from_wire(b: u8) -> Option<Collection> {
        [Collection::Default, Collection::List, Collection::MapKeys, Collection::MapValues].get(b as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Collection::Default => "default",
            Collection::List => "list",
            Collection::MapKeys => "mapkeys",
            Collection::MapValues => "mapvalues",
        }
    }
}

/// One index key, or one value drawn from a record. Keys of one index all have the index's
/// type: integers, bytes (strings, blobs) or, for a geospatial index, S2 cell ids; the values
/// a geospatial index is drawn from are the GeoJSON texts, matched geometrically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Int(i64),
    Bytes(Box<[u8]>),
    Cell(u64),
}

impl Key {
    /// Bytes of memory the key takes besides its enum slot.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Key::Int(_) | Key::Cell(_) => 0,
            Key::Bytes(b) => b.len(),
        }
    }
}

/// A record's keys for one index: most records have one, kept inline.
pub type Keys = smallvec::SmallVec<[Key; 2]>;

/// What a query asks of an index's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// Integers from `.0` to `.1`, both included.
    Int(i64, i64),
    /// Exactly these bytes (string or blob equality).
    Bytes(Vec<u8>),
    /// GeoJSON: points within this region, or regions containing this point.
    Geo(GeoQuery),
}

/// A geospatial query: the GeoJSON value and the cell lookups that find its candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoQuery {
    pub json: Vec<u8>,
    pub lookups: Vec<CellLookup>,
}

impl Range {
    /// A geospatial range for the GeoJSON `json` (a region or a point).
    pub fn geo(json: Vec<u8>) -> Range {
        Range::Geo(GeoQuery { lookups: super::geo_cells::lookups(&json), json })
    }

    /// Whether a record's value (as [`KeySpec::values_of`] draws it) satisfies the range.
    pub fn matches(&self, value: &Key) -> bool {
        match (self, value) {
            (Range::Int(lo, hi), Key::Int(v)) => lo <= v && v <= hi,
            (Range::Bytes(want), Key::Bytes(b)) => **b == want[..],
            (Range::Geo(query), Key::Bytes(json)) => crate::exp::geo_compare(json, &query.json).unwrap_or(false),
            _ => false,
        }
    }
}

/// The definition an index's keys are drawn by.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub bin: Vec<u8>,
    pub key_type: KeyType,
    pub collection: Collection,
    /// The CDT context (decoded type/value pairs) down to the indexed value; empty for the
    /// bin itself.
    pub ctx: Vec<MsgValue>,
}

impl KeySpec {
    /// The index keys of a record image, sorted and without duplicates, in `out` (cleared
    /// first): its values, or for a geospatial index the S2 cells they are indexed under.
    pub fn keys_of(&self, image: &ImageView<'_>, out: &mut Keys) {
        self.values_of(image, out);
        if self.key_type == KeyType::Geo {
            super::geo_cells::to_cells(out);
        }
    }

    /// The values of a record image the index is drawn from, sorted and without duplicates,
    /// in `out` (cleared first); GeoJSON values as their text. A record without the bin, or
    /// whose value has another type, has none.
    pub fn values_of(&self, image: &ImageView<'_>, out: &mut Keys) {
        out.clear();
        let Ok(Some(bin)) = image.bin(&self.bin) else { return };
        if self.ctx.is_empty() && self.collection == Collection::Default {
            // The common case: a scalar bin, no decoding into a tree.
            if let Some(k) = self.scalar_key(bin.value) {
                out.push(k);
            }
            return;
        }
        let Ok(mut root) = cdt::msgpack_from_particle(bin.value) else { return };
        let Some(value) = cdt::walk_context(&mut root, &self.ctx) else { return };
        match (self.collection, &*value) {
            (Collection::Default, v) => out.extend(self.msgpack_key(v)),
            (Collection::List, MsgValue::List(items)) => {
                out.extend(cdt::list_items(items).iter().filter_map(|v| self.msgpack_key(v)).take(KEYS_PER_RECORD_MAX))
            }
            (Collection::MapKeys, MsgValue::Map(m)) => {
                out.extend(m.entries.iter().filter_map(|(k, _)| self.msgpack_key(k)).take(KEYS_PER_RECORD_MAX))
            }
            (Collection::MapValues, MsgValue::Map(m)) => {
                out.extend(m.entries.iter().filter_map(|(_, v)| self.msgpack_key(v)).take(KEYS_PER_RECORD_MAX))
            }
            _ => {}
        }
        out.sort_unstable();
        out.dedup();
    }

    fn scalar_key(&self, p: ParticleRef<'_>) -> Option<Key> {
        match (self.key_type, p.particle) {
            (KeyType::Numeric, P_INTEGER) => particle::decode_int(p.bytes).ok().map(Key::Int),
            (KeyType::String, P_STRING) | (KeyType::Blob, P_BLOB) => Some(Key::Bytes(p.bytes.into())),
            (KeyType::Geo, P_GEOJSON) => particle::geojson_text(p.bytes).ok().map(|t| Key::Bytes(t.into())),
            _ => None,
        }
    }

    fn msgpack_key(&self, v: &MsgValue) -> Option<Key> {
        match (self.key_type, v) {
            (KeyType::Numeric, MsgValue::Int(i)) => Some(Key::Int(*i)),
            (KeyType::String, MsgValue::Str(s)) => Some(Key::Bytes(s.as_slice().into())),
            (KeyType::Blob, MsgValue::Blob(P_BLOB, b)) => Some(Key::Bytes(b.as_slice().into())),
            (KeyType::Geo, MsgValue::Blob(P_GEOJSON, b)) => {
                let text = particle::geojson_text(b).unwrap_or(b);
                Some(Key::Bytes(text.into()))
            }
            _ => None,
        }
    }
}
