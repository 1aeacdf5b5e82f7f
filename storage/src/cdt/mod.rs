//! Collection data type (CDT) operations on list and map bins kept in msgpack form.
//!
//! This module owns the public entry points — [`apply`] for CDT read/modify operations,
//! [`normalize_collection`] for whole list/map values a client writes, and the conversions
//! between msgpack elements and particles — plus what list and map operations share: payload
//! and argument decoding, the context (`[0xff, [ctx...], [op, args...]]`) walk into nested
//! elements, value comparison (with the wildcard and infinity sentinels), index/rank range
//! arithmetic, element selection and result building by return type. The list operations
//! live in `list.rs`, the map operations in `map.rs`.
//!
//! Values are decoded to [`MsgValue`] trees, changed, and re-encoded canonically. Every map
//! that is stored (at any depth) is kept sorted by key in canonical order without duplicate
//! keys; an ordered list (flag 1) is kept sorted by value. Semantics follow the Aerospike
//! server: single-element index/rank operations out of range fail with
//! [`CdtError::NotApplicable`], range operations clamp, operations that remove from a missing
//! bin are no-ops, operations that add to a missing bin create it.

use std::cmp::Ordering;

use petrel_proto::msgpack::{self, MsgMap, MsgValue, DEPTH_MAX};
use petrel_proto::{ParticleType, ResultCode};

mod list;
mod map;

/// A bin value as stored: its particle type byte and its wire bytes (for lists (20) and maps
/// (19) the msgpack bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticleRef<'a> {
    pub particle: u8,
    pub bytes: &'a [u8],
}

/// An owned particle value.
#[derive(Debug, Clone, PartialEq)]
pub struct Particle {
    pub particle: u8,
    pub bytes: Vec<u8>,
}

/// Why a CDT operation failed; each maps to one wire result code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CdtError {
    #[error("malformed CDT operation: {0}")]
    Parameter(&'static str),
    #[error("bin holds a different type")]
    IncompatibleType,
    #[error("operation not applicable: {0}")]
    NotApplicable(&'static str),
    #[error("element not found")]
    ElementNotFound,
    #[error("element exists")]
    ElementExists,
    #[error("unsupported CDT operation {0}")]
    Unsupported(i64),
}

impl CdtError {
    /// The result code the client sees.
    pub fn result_code(&self) -> ResultCode {
        match self {
            CdtError::Parameter(_) => ResultCode::Parameter,
            CdtError::IncompatibleType => ResultCode::IncompatibleType,
            CdtError::NotApplicable(_) => ResultCode::OpNotApplicable,
            CdtError::ElementNotFound => ResultCode::ElementNotFound,
            CdtError::ElementExists => ResultCode::ElementExists,
            CdtError::Unsupported(_) => ResultCode::UnsupportedFeature,
        }
    }
}

/// What a CDT operation did.
#[derive(Debug, Clone, PartialEq)]
pub struct CdtOutcome {
    /// None: bin unchanged. Some(None): bin removed. Some(Some(p)): bin's new value.
    pub new_value: Option<Option<Particle>>,
    /// The op's result, if it returns one (particle form: ints as particle 1 with 8-byte BE,
    /// floats particle 2, strings particle 3 raw bytes, blobs 4, bools 17, nested lists 20 /
    /// maps 19 as msgpack bytes). None = nothing to return.
    pub result: Option<Particle>,
}

/// Op code of the context wrapper `[0xff, [ctx...], [op, args...]]`.
const OP_CONTEXT_EVAL: i64 = 0xff;
/// Op code of the server-side select/apply operation (path expressions).
const OP_SELECT: i64 = 0xfe;

/// Most nil elements a list insert/set beyond the end may pad with.
pub(crate) const PAD_MAX: usize = 1 << 16;

/// Applies a CDT read (op type 3, `modify == false`) or modify (op type 4) operation.
/// `payload` is the op's value bytes: a msgpack array `[op_code, args...]`. `existing` is the
/// bin's current value (None if the bin does not exist).
///
/// A read op given `modify == true` is fine (clients send reads as type 3, but accept either);
/// a modify op given `modify == false` is Parameter.
pub fn apply(existing: Option<ParticleRef<'_>>, payload: &[u8], modify: bool) -> Result<CdtOutcome, CdtError> {
    let op = parse_payload(payload)?;
    let family = Family::of(op.code).ok_or(CdtError::Parameter("unknown CDT op code"))?;
    let is_modify = family.is_modify(op.code);
    if is_modify && !modify {
        return Err(CdtError::Parameter("CDT modify op sent as a read"));
    }

    let mut root = match existing {
        None if !is_modify => return Ok(nothing()),
        None => MsgValue::Nil,
        Some(p) => {
            let wanted = op.ctx.is_some() || p.particle == family.particle();
            let collection = p.particle == ParticleType::List as u8 || p.particle == ParticleType::Map as u8;
            if !wanted || !collection {
                return Err(CdtError::IncompatibleType);
            }
            decode_stored(p)?
        }
    };

    let mut created = existing.is_none();
    let target = match &op.ctx {
        Some(ctx) => navigate(&mut root, ctx, is_modify, &mut created)?,
        None => &mut root,
    };
    let mut args = Args { vals: op.args };
    let exec = match family {
        Family::List => list::run(target, created, op.code, &mut args)?,
        Family::Map => map::run(target, created, op.code, &mut args)?,
    };
    if !is_modify || !exec.touched {
        return Ok(CdtOutcome { new_value: None, result: exec.result });
    }

    if depth(&root) > DEPTH_MAX {
        return Err(CdtError::Parameter("collection nested too deep"));
    }
    let particle = match root {
        MsgValue::List(_) => ParticleType::List as u8,
        MsgValue::Map(_) => ParticleType::Map as u8,
        _ => return Err(CdtError::IncompatibleType),
    };
    let bytes = msgpack::to_vec(&root);
    let unchanged = existing.is_some_and(|p| p.bytes == bytes.as_slice());
    Ok(CdtOutcome {
        new_value: if unchanged { None } else { Some(Some(Particle { particle, bytes })) },
        result: exec.result,
    })
}

/// Normalises a list or map bin value a client writes (particle 20 or 19): validates the
/// msgpack, and for maps puts entries in canonical key order (by MsgValue::canonical_cmp; see
/// `cmp_total`),
/// dropping duplicate keys (last wins). Returns the bytes to store.
///
/// Nested maps are normalised the same way and ordered lists are sorted; the wildcard and
/// infinity sentinels cannot be stored.
pub fn normalize_collection(particle: u8, bytes: &[u8]) -> Result<Vec<u8>, CdtError> {
    let mut v = msgpack::decode(bytes).map_err(|_| CdtError::Parameter("malformed msgpack"))?;
    let kind_ok = match &v {
        MsgValue::List(_) => particle == ParticleType::List as u8,
        MsgValue::Map(_) => particle == ParticleType::Map as u8,
        _ => false,
    };
    if !kind_ok {
        return Err(CdtError::Parameter("value is not a list or map of its particle type"));
    }
    normalize_value(&mut v)?;
    Ok(msgpack::to_vec(&v))
}

/// Converts a msgpack element to its particle form for a result (Int -> 1, Float -> 2,
/// Str -> 3, Blob(t, b) -> t, Bool -> 17, List -> 20 msgpack bytes, Map -> 19, Nil -> 0 with
/// no bytes). An unsigned integer above `i64::MAX` wraps as the server's does; a stray ext
/// value comes back as a blob of its data.
pub fn particle_from_msgpack(v: &MsgValue) -> Particle {
    let (particle, bytes) = match v {
        MsgValue::Nil => (ParticleType::Null as u8, Vec::new()),
        MsgValue::Bool(b) => (ParticleType::Bool as u8, vec![u8::from(*b)]),
        MsgValue::Int(i) => (ParticleType::Integer as u8, i.to_be_bytes().to_vec()),
        MsgValue::UInt(u) => (ParticleType::Integer as u8, u.to_be_bytes().to_vec()),
        MsgValue::Float(f) => (ParticleType::Float as u8, f.to_be_bytes().to_vec()),
        MsgValue::Str(s) => (ParticleType::String as u8, s.clone()),
        MsgValue::Blob(t, b) => (*t, b.clone()),
        MsgValue::List(_) => (ParticleType::List as u8, msgpack::to_vec(v)),
        MsgValue::Map(_) => (ParticleType::Map as u8, msgpack::to_vec(v)),
        MsgValue::Ext(_, data) => (ParticleType::Blob as u8, data.clone()),
    };
    Particle { particle, bytes }
}

/// The inverse, for values written into lists/maps from op args (args already arrive as
/// msgpack, so this is mostly for tests and for integer/float bins).
pub fn msgpack_from_particle(p: ParticleRef<'_>) -> Result<MsgValue, CdtError> {
    let bad = CdtError::Parameter("malformed particle");
    Ok(match ParticleType::from_u8(p.particle) {
        Some(ParticleType::Null) => MsgValue::Nil,
        Some(ParticleType::Integer) => {
            if p.bytes.is_empty() || p.bytes.len() > 8 {
                return Err(bad);
            }
            let fill = if p.bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
            let mut be = [fill; 8];
            let start = 8 - p.bytes.len();
            be.get_mut(start..).ok_or(bad.clone())?.copy_from_slice(p.bytes);
            MsgValue::Int(i64::from_be_bytes(be))
        }
        Some(ParticleType::Float) => MsgValue::Float(f64::from_be_bytes(p.bytes.try_into().map_err(|_| bad)?)),
        Some(ParticleType::Bool) => match p.bytes {
            [b] => MsgValue::Bool(*b != 0),
            _ => return Err(bad),
        },
        Some(ParticleType::String) => MsgValue::Str(p.bytes.to_vec()),
        Some(ParticleType::List) | Some(ParticleType::Map) => decode_stored(p)?,
        _ => MsgValue::Blob(p.particle, p.bytes.to_vec()),
    })
}

// ---------------------------------------------------------------------------------------
// Payload, families, arguments.

/// A parsed CDT payload.
struct OpPayload {
    code: i64,
    args: Vec<MsgValue>,
    /// The context pairs, for a context-wrapped op.
    ctx: Option<Vec<MsgValue>>,
}

fn parse_payload(payload: &[u8]) -> Result<OpPayload, CdtError> {
    let top = match msgpack::decode(payload) {
        Ok(MsgValue::List(items)) => items,
        Ok(_) => return Err(CdtError::Parameter("CDT payload is not a list")),
        Err(_) => return Err(CdtError::Parameter("malformed CDT payload")),
    };
    let (code, args) = split_op(top)?;
    match code {
        OP_SELECT => Err(CdtError::Unsupported(OP_SELECT)),
        OP_CONTEXT_EVAL => {
            let mut it = args.into_iter();
            let (Some(MsgValue::List(ctx)), Some(MsgValue::List(inner)), None) = (it.next(), it.next(), it.next())
            else {
                return Err(CdtError::Parameter("malformed CDT context wrapper"));
            };
            if ctx.is_empty() || ctx.len() % 2 != 0 {
                return Err(CdtError::Parameter("CDT context must hold type/value pairs"));
            }
            let (code, args) = split_op(inner)?;
            if code == OP_CONTEXT_EVAL || code == OP_SELECT {
                return Err(CdtError::Parameter("nested CDT context wrapper"));
            }
            Ok(OpPayload { code, args, ctx: Some(ctx) })
        }
        _ => Ok(OpPayload { code, args, ctx: None }),
    }
}

fn split_op(mut items: Vec<MsgValue>) -> Result<(i64, Vec<MsgValue>), CdtError> {
    if items.is_empty() {
        return Err(CdtError::Parameter("CDT payload has no op code"));
    }
    let code = match items.remove(0) {
        MsgValue::Int(c) if c >= 0 => c,
        _ => return Err(CdtError::Parameter("CDT op code is not an integer")),
    };
    Ok((code, items))
}

/// Whether an op code is a list or a map operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    List,
    Map,
}

impl Family {
    fn of(code: i64) -> Option<Family> {
        if list::is_modify(code).is_some() {
            Some(Family::List)
        } else if map::is_modify(code).is_some() {
            Some(Family::Map)
        } else {
            None
        }
    }

    fn is_modify(self, code: i64) -> bool {
        match self {
            Family::List => list::is_modify(code).unwrap_or(false),
            Family::Map => map::is_modify(code).unwrap_or(false),
        }
    }

    fn particle(self) -> u8 {
        match self {
            Family::List => ParticleType::List as u8,
            Family::Map => ParticleType::Map as u8,
        }
    }
}

/// What an operation did to its target.
#[derive(Debug)]
pub(crate) struct Exec {
    /// The op's result.
    pub(crate) result: Option<Particle>,
    /// False when the op was a read, or a no-op on a missing collection (which stays missing).
    pub(crate) touched: bool,
}

impl Exec {
    pub(crate) fn untouched() -> Exec {
        Exec { result: None, touched: false }
    }
}

fn nothing() -> CdtOutcome {
    CdtOutcome { new_value: None, result: None }
}

/// The op's arguments (after the op code), with typed accessors that fail as Parameter.
#[derive(Debug)]
pub(crate) struct Args {
    vals: Vec<MsgValue>,
}

impl Args {
    /// Checks the argument count is within `min..=max`.
    pub(crate) fn count(&self, min: usize, max: usize) -> Result<(), CdtError> {
        if self.vals.len() < min || self.vals.len() > max {
            return Err(CdtError::Parameter("wrong number of CDT op arguments"));
        }
        Ok(())
    }

    /// A signed index or rank.
    pub(crate) fn index(&self, i: usize) -> Result<i64, CdtError> {
        match self.vals.get(i) {
            Some(MsgValue::Int(v)) => Ok(*v),
            _ => Err(CdtError::Parameter("CDT argument must be an integer index")),
        }
    }

    /// An unsigned flag word or count (negative integers wrap, as on the server).
    pub(crate) fn uint(&self, i: usize) -> Result<u64, CdtError> {
        match self.vals.get(i) {
            Some(MsgValue::Int(v)) => Ok(*v as u64),
            Some(MsgValue::UInt(v)) => Ok(*v),
            _ => Err(CdtError::Parameter("CDT argument must be an integer")),
        }
    }

    /// Like [`Args::uint`], with `default` when the argument is absent.
    pub(crate) fn opt_uint(&self, i: usize, default: u64) -> Result<u64, CdtError> {
        if i >= self.vals.len() {
            Ok(default)
        } else {
            self.uint(i)
        }
    }

    /// A count; absent means "to the end".
    pub(crate) fn opt_count(&self, i: usize) -> Result<u64, CdtError> {
        self.opt_uint(i, u64::MAX)
    }

    pub(crate) fn value(&self, i: usize) -> Result<&MsgValue, CdtError> {
        self.vals.get(i).ok_or(CdtError::Parameter("missing CDT op argument"))
    }

    pub(crate) fn opt_value(&self, i: usize) -> Option<&MsgValue> {
        self.vals.get(i)
    }

    /// A list argument's elements (an ordered-list marker is skipped).
    pub(crate) fn list(&self, i: usize) -> Result<&[MsgValue], CdtError> {
        match self.vals.get(i) {
            Some(MsgValue::List(items)) => Ok(strip_list_marker(items)),
            _ => Err(CdtError::Parameter("CDT argument must be a list")),
        }
    }

    /// Takes a value that is to be stored, normalised.
    pub(crate) fn storage_value(&mut self, i: usize) -> Result<MsgValue, CdtError> {
        let slot = self.vals.get_mut(i).ok_or(CdtError::Parameter("missing CDT op argument"))?;
        let mut v = std::mem::replace(slot, MsgValue::Nil);
        normalize_value(&mut v)?;
        Ok(v)
    }

    /// Takes a list of values that are to be stored, normalised.
    pub(crate) fn storage_list(&mut self, i: usize) -> Result<Vec<MsgValue>, CdtError> {
        match self.storage_value(i)? {
            MsgValue::List(items) => Ok(split_list_marker(items).1),
            _ => Err(CdtError::Parameter("CDT argument must be a list")),
        }
    }

    /// Takes a map of entries that are to be stored, normalised (sorted, unique keys).
    pub(crate) fn storage_map(&mut self, i: usize) -> Result<Vec<(MsgValue, MsgValue)>, CdtError> {
        match self.storage_value(i)? {
            MsgValue::Map(m) => Ok(m.entries),
            _ => Err(CdtError::Parameter("CDT argument must be a map")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Stored values.

fn decode_stored(p: ParticleRef<'_>) -> Result<MsgValue, CdtError> {
    let v = msgpack::decode(p.bytes).map_err(|_| CdtError::Parameter("stored collection is malformed"))?;
    match (&v, p.particle) {
        (MsgValue::List(_), 20) | (MsgValue::Map(_), 19) => Ok(v),
        _ => Err(CdtError::Parameter("stored collection is malformed")),
    }
}

/// True for the leading ext element that carries a list's (or map's) order flags.
pub(crate) fn is_flags_marker(v: &MsgValue) -> bool {
    matches!(v, MsgValue::Ext(t, data) if *t >= 0 && data.is_empty())
}

/// A list's elements without its flags marker.
pub(crate) fn strip_list_marker(items: &[MsgValue]) -> &[MsgValue] {
    match items.first() {
        Some(first) if is_flags_marker(first) => items.get(1..).unwrap_or(&[]),
        _ => items,
    }
}

/// Splits a decoded list into its order flags and its elements.
pub(crate) fn split_list_marker(mut items: Vec<MsgValue>) -> (u8, Vec<MsgValue>) {
    match items.first() {
        Some(MsgValue::Ext(t, data)) if *t >= 0 && data.is_empty() => {
            let flags = *t as u8;
            items.remove(0);
            (flags, items)
        }
        _ => (0, items),
    }
}

/// Rebuilds a decoded list from its flags and elements.
pub(crate) fn join_list_marker(flags: u8, mut items: Vec<MsgValue>) -> Vec<MsgValue> {
    if flags != 0 {
        items.insert(0, MsgValue::Ext((flags & 0x7f) as i8, Vec::new()));
    }
    items
}

/// Puts a value in its stored form: maps sorted by key without duplicates (last wins),
/// ordered lists sorted, at every depth. The wildcard/infinity sentinels cannot be stored.
pub(crate) fn normalize_value(v: &mut MsgValue) -> Result<(), CdtError> {
    match v {
        MsgValue::Ext(t, _) if *t == -1 => Err(CdtError::Parameter("comparison sentinel cannot be stored")),
        MsgValue::List(items) => {
            let ordered = matches!(items.first(), Some(MsgValue::Ext(t, d)) if *t >= 0 && d.is_empty() && *t & 1 != 0);
            let start = usize::from(items.first().is_some_and(is_flags_marker));
            let body = items.get_mut(start..).unwrap_or(&mut []);
            for item in body.iter_mut() {
                normalize_value(item)?;
            }
            if ordered {
                body.sort_by(cmp_total);
            }
            Ok(())
        }
        MsgValue::Map(m) => {
            for (k, val) in m.entries.iter_mut() {
                normalize_value(k)?;
                normalize_value(val)?;
            }
            sort_map(m);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Sorts a map's entries by key and drops duplicate keys, keeping the last of each.
pub(crate) fn sort_map(m: &mut MsgMap) {
    let sorted = m.entries.windows(2).all(|w| matches!(w, [a, b] if cmp_total(&a.0, &b.0) == Ordering::Less));
    if sorted {
        return;
    }
    m.entries.sort_by(|a, b| cmp_total(&a.0, &b.0));
    let mut out: Vec<(MsgValue, MsgValue)> = Vec::with_capacity(m.entries.len());
    for e in m.entries.drain(..) {
        match out.last_mut() {
            Some(last) if cmp_total(&last.0, &e.0) == Ordering::Equal => *last = e,
            _ => out.push(e),
        }
    }
    m.entries = out;
}

fn depth(v: &MsgValue) -> usize {
    match v {
        MsgValue::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        MsgValue::Map(m) => 1 + m.entries.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------
// Comparison.

/// The wildcard sentinel: ext type 0xff with one data byte 0x00.
pub(crate) fn is_wildcard(v: &MsgValue) -> bool {
    matches!(v, MsgValue::Ext(-1, d) if d.as_slice() == [0])
}

fn contains_wildcard(v: &MsgValue) -> bool {
    match v {
        MsgValue::List(items) => items.iter().any(contains_wildcard),
        MsgValue::Map(m) => m.entries.iter().any(|(k, v)| contains_wildcard(k) || contains_wildcard(v)),
        other => is_wildcard(other),
    }
}

/// The order used to match and search values: [`cmp_total`], except that a wildcard compares
/// equal to anything (ending the comparison), as on the server. Not transitive with
/// wildcards, so never used to sort.
pub(crate) fn cmp_values(a: &MsgValue, b: &MsgValue) -> Ordering {
    if is_wildcard(a) || is_wildcard(b) {
        return Ordering::Equal;
    }
    match (a, b) {
        (MsgValue::List(x), MsgValue::List(y)) => {
            for (p, q) in x.iter().zip(y) {
                if is_wildcard(p) || is_wildcard(q) {
                    return Ordering::Equal;
                }
                let o = cmp_values(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (MsgValue::Map(x), MsgValue::Map(y)) => {
            let o = x.entries.len().cmp(&y.entries.len());
            if o != Ordering::Equal {
                return o;
            }
            for ((ka, va), (kb, vb)) in x.entries.iter().zip(&y.entries) {
                if is_wildcard(ka) || is_wildcard(kb) || is_wildcard(va) || is_wildcard(vb) {
                    return Ordering::Equal;
                }
                let o = cmp_values(ka, kb).then_with(|| cmp_values(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        }
        _ => cmp_total(a, b),
    }
}

/// A strict total order over values, safe for sorting whatever the data: the protocol's
/// canonical order (nil < bool < integer < string < list < map < blob < float < GeoJSON < ext
/// < wildcard < infinity; within a type, natural order), with the sentinels as ordinary values.
pub(crate) fn cmp_total(a: &MsgValue, b: &MsgValue) -> Ordering {
    a.canonical_cmp(b)
}

/// Finds values equal to any of a list of patterns, sorting the plain patterns once.
pub(crate) struct ValueSet<'a> {
    plain: Vec<&'a MsgValue>,
    wild: Vec<&'a MsgValue>,
}

impl<'a> ValueSet<'a> {
    pub(crate) fn new(patterns: &'a [MsgValue]) -> ValueSet<'a> {
        let (wild, mut plain): (Vec<&MsgValue>, Vec<&MsgValue>) = patterns.iter().partition(|p| contains_wildcard(p));
        plain.sort_by(|a, b| cmp_total(a, b));
        ValueSet { plain, wild }
    }

    pub(crate) fn contains(&self, v: &MsgValue) -> bool {
        self.plain.binary_search_by(|p| cmp_values(p, v)).is_ok()
            || self.wild.iter().any(|p| cmp_values(v, p) == Ordering::Equal)
    }
}

// ---------------------------------------------------------------------------------------
// Index arithmetic.

/// Resolves a single-element index (negative counts from the end); None when out of range.
pub(crate) fn single_index(index: i64, n: usize) -> Option<usize> {
    let n = i64::try_from(n).ok()?;
    let i = if index < 0 { n + index } else { index };
    if i < 0 || i >= n {
        None
    } else {
        usize::try_from(i).ok()
    }
}

/// Resolves an index range to `(start, count)` clamped to `0..n`.
pub(crate) fn range_index(index: i64, count: u64, n: usize) -> (usize, usize) {
    let n64 = i64::try_from(n).unwrap_or(i64::MAX);
    if index >= n64 {
        return (n, 0);
    }
    let i = if index < 0 { n64 + index } else { index };
    if i < 0 {
        let before = i.unsigned_abs();
        if before < count {
            let c = (count - before).min(n as u64);
            (0, c as usize)
        } else {
            (0, 0)
        }
    } else {
        let start = i as usize;
        let avail = (n - start) as u64;
        (start, count.min(avail) as usize)
    }
}

/// Shifts a relative index/rank by its anchor; a start before 0 shortens the count.
pub(crate) fn rel_index(index: i64, count: u64, anchor: usize) -> (i64, u64) {
    let anchor = i64::try_from(anchor).unwrap_or(i64::MAX);
    let i = index.saturating_add(anchor);
    if i < 0 {
        (0, count.saturating_sub(i.unsigned_abs()))
    } else {
        (i, count)
    }
}

// ---------------------------------------------------------------------------------------
// Selection and results.

/// Return types of selecting operations (the low 16 bits of the return-type argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnKind {
    None,
    Index,
    ReverseIndex,
    Rank,
    ReverseRank,
    Count,
    Key,
    Value,
    KeyValue,
    Exists,
    UnorderedMap,
    OrderedMap,
}

/// A decoded return-type argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReturnType {
    pub(crate) kind: ReturnKind,
    pub(crate) inverted: bool,
}

const RETURN_INVERTED: u64 = 0x1_0000;

impl ReturnType {
    pub(crate) fn plain(kind: ReturnKind) -> ReturnType {
        ReturnType { kind, inverted: false }
    }

    /// Decodes a return-type argument; `is_map` allows the key and map return types.
    pub(crate) fn parse(v: u64, is_map: bool) -> Result<ReturnType, CdtError> {
        let kind = match v & 0xffff {
            0 => ReturnKind::None,
            1 => ReturnKind::Index,
            2 => ReturnKind::ReverseIndex,
            3 => ReturnKind::Rank,
            4 => ReturnKind::ReverseRank,
            5 => ReturnKind::Count,
            6 if is_map => ReturnKind::Key,
            7 => ReturnKind::Value,
            8 if is_map => ReturnKind::KeyValue,
            13 => ReturnKind::Exists,
            16 if is_map => ReturnKind::UnorderedMap,
            17 if is_map => ReturnKind::OrderedMap,
            _ => return Err(CdtError::NotApplicable("return type not supported")),
        };
        Ok(ReturnType { kind, inverted: v & RETURN_INVERTED != 0 })
    }
}

/// How a selection was made, which decides the order of index and rank results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelOrder {
    /// By index (or an inverted selection): everything in index order.
    Index,
    /// By rank: values in rank order.
    Rank,
    /// By value or key: values in index order, ranks ascending.
    Value,
}

/// Selected element positions, in result order.
#[derive(Debug)]
pub(crate) struct Selection {
    pub(crate) idx: Vec<usize>,
    pub(crate) order: SelOrder,
}

impl Selection {
    /// Replaces the selection by its complement within `0..n`.
    pub(crate) fn invert(&mut self, n: usize) {
        let mut mask = vec![false; n];
        for &i in &self.idx {
            if let Some(m) = mask.get_mut(i) {
                *m = true;
            }
        }
        self.idx = (0..n).filter(|i| !mask.get(*i).copied().unwrap_or(true)).collect();
        self.order = SelOrder::Index;
    }

    /// Applies the inverted flag (multi-result ops only).
    pub(crate) fn apply_inverted(mut self, rt: ReturnType, n: usize) -> Selection {
        if rt.inverted {
            self.invert(n);
        }
        self
    }
}

/// The elements a selection and its results are computed over.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'a> {
    List(&'a [MsgValue]),
    Map(&'a [(MsgValue, MsgValue)]),
}

impl<'a> View<'a> {
    pub(crate) fn len(&self) -> usize {
        match self {
            View::List(items) => items.len(),
            View::Map(entries) => entries.len(),
        }
    }

    /// The element's value (a list element, or a map entry's value).
    pub(crate) fn value(&self, i: usize) -> Option<&'a MsgValue> {
        match self {
            View::List(items) => items.get(i),
            View::Map(entries) => entries.get(i).map(|e| &e.1),
        }
    }

    fn values(&self) -> impl Iterator<Item = &'a MsgValue> + '_ {
        (0..self.len()).filter_map(|i| self.value(i))
    }

    /// Element positions sorted by value (stable: equal values keep index order).
    pub(crate) fn rank_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| match (self.value(a), self.value(b)) {
            (Some(x), Some(y)) => cmp_total(x, y),
            _ => Ordering::Equal,
        });
        order
    }

    /// How many values are below `v` (the anchor of a relative-rank range).
    pub(crate) fn count_below(&self, v: &MsgValue) -> usize {
        self.values().filter(|x| cmp_values(x, v) == Ordering::Less).count()
    }

    /// Selects by index: one element (out of range is NotApplicable) or a clamped range.
    pub(crate) fn by_index(&self, index: i64, count: u64, multi: bool) -> Result<Selection, CdtError> {
        let idx = if multi {
            let (start, c) = range_index(index, count, self.len());
            (start..start + c).collect()
        } else {
            match single_index(index, self.len()) {
                Some(i) => vec![i],
                None => return Err(CdtError::NotApplicable("index out of range")),
            }
        };
        Ok(Selection { idx, order: SelOrder::Index })
    }

    /// Selects by rank: one element (out of range is NotApplicable) or a clamped range.
    pub(crate) fn by_rank(&self, rank: i64, count: u64, multi: bool) -> Result<Selection, CdtError> {
        let (start, c) = if multi {
            range_index(rank, count, self.len())
        } else {
            match single_index(rank, self.len()) {
                Some(i) => (i, 1),
                None => return Err(CdtError::NotApplicable("rank out of range")),
            }
        };
        let order = self.rank_order();
        let idx = order.get(start..start + c).unwrap_or(&[]).to_vec();
        Ok(Selection { idx, order: SelOrder::Rank })
    }

    /// Selects the elements whose value equals `v` (the first one only unless `multi`).
    pub(crate) fn by_value(&self, v: &MsgValue, multi: bool) -> Selection {
        let mut idx: Vec<usize> = Vec::new();
        for i in 0..self.len() {
            if self.value(i).is_some_and(|x| cmp_values(x, v) == Ordering::Equal) {
                idx.push(i);
                if !multi {
                    break;
                }
            }
        }
        Selection { idx, order: SelOrder::Value }
    }

    /// Selects the elements whose value equals one of `values`.
    pub(crate) fn by_value_list(&self, values: &[MsgValue]) -> Selection {
        let set = ValueSet::new(values);
        let idx = (0..self.len()).filter(|&i| self.value(i).is_some_and(|x| set.contains(x))).collect();
        Selection { idx, order: SelOrder::Value }
    }

    /// Selects values in `[start, end)`; no `end` means up to infinity.
    pub(crate) fn by_value_interval(&self, start: &MsgValue, end: Option<&MsgValue>) -> Selection {
        let idx = (0..self.len()).filter(|&i| self.value(i).is_some_and(|x| in_interval(x, start, end))).collect();
        Selection { idx, order: SelOrder::Value }
    }

    /// Selects by rank relative to where `v` would rank.
    pub(crate) fn by_value_rel_rank(&self, v: &MsgValue, rank: i64, count: u64) -> Result<Selection, CdtError> {
        let (start, count) = rel_index(rank, count, self.count_below(v));
        self.by_rank(start, count, true)
    }
}

/// True when `start <= x < end` (no `end`: no upper bound).
pub(crate) fn in_interval(x: &MsgValue, start: &MsgValue, end: Option<&MsgValue>) -> bool {
    cmp_values(x, start) != Ordering::Less && end.is_none_or(|e| cmp_values(x, e) == Ordering::Less)
}

fn int_result(v: i64) -> Particle {
    particle_from_msgpack(&MsgValue::Int(v))
}

pub(crate) fn int_particle(v: usize) -> Particle {
    int_result(i64::try_from(v).unwrap_or(i64::MAX))
}

fn as_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds the result of a selecting operation.
pub(crate) fn build_result(
    view: View<'_>,
    sel: &Selection,
    multi: bool,
    rt: ReturnType,
) -> Result<Option<Particle>, CdtError> {
    let n = view.len();
    let is_map = matches!(view, View::Map(_));
    let map_kind = matches!(rt.kind, ReturnKind::KeyValue | ReturnKind::UnorderedMap | ReturnKind::OrderedMap);
    if !is_map && (map_kind || rt.kind == ReturnKind::Key) {
        return Err(CdtError::NotApplicable("return type not supported for lists"));
    }
    let numbers = |rev: bool, ranks: bool| -> Vec<i64> {
        let mut out: Vec<usize> = if ranks {
            let order = view.rank_order();
            let mut rank_of = vec![0usize; n];
            for (r, &i) in order.iter().enumerate() {
                if let Some(slot) = rank_of.get_mut(i) {
                    *slot = r;
                }
            }
            let mut out: Vec<usize> = sel.idx.iter().filter_map(|&i| rank_of.get(i).copied()).collect();
            if sel.order == SelOrder::Value {
                out.sort_unstable();
            }
            out
        } else {
            let mut out = sel.idx.clone();
            out.sort_unstable();
            out
        };
        if rev {
            for x in out.iter_mut() {
                *x = n.saturating_sub(*x + 1);
            }
        }
        out.into_iter().map(as_i64).collect()
    };
    let result = match rt.kind {
        ReturnKind::None => return Ok(None),
        ReturnKind::Count => MsgValue::Int(as_i64(sel.idx.len())),
        ReturnKind::Exists => MsgValue::Bool(!sel.idx.is_empty()),
        ReturnKind::Index | ReturnKind::ReverseIndex | ReturnKind::Rank | ReturnKind::ReverseRank => {
            let rev = matches!(rt.kind, ReturnKind::ReverseIndex | ReturnKind::ReverseRank);
            let ranks = matches!(rt.kind, ReturnKind::Rank | ReturnKind::ReverseRank);
            let nums = numbers(rev, ranks);
            if multi {
                MsgValue::List(nums.into_iter().map(MsgValue::Int).collect())
            } else {
                MsgValue::Int(nums.first().copied().unwrap_or(-1))
            }
        }
        ReturnKind::Value | ReturnKind::Key => {
            let pick = |i: usize| -> Option<MsgValue> {
                match (view, rt.kind) {
                    (View::Map(entries), ReturnKind::Key) => entries.get(i).map(|e| e.0.clone()),
                    _ => view.value(i).cloned(),
                }
            };
            if multi {
                MsgValue::List(sel.idx.iter().filter_map(|&i| pick(i)).collect())
            } else {
                match sel.idx.first().and_then(|&i| pick(i)) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
        }
        ReturnKind::KeyValue | ReturnKind::UnorderedMap | ReturnKind::OrderedMap => {
            let View::Map(entries) = view else {
                return Err(CdtError::NotApplicable("return type not supported for lists"));
            };
            let mut picked: Vec<(MsgValue, MsgValue)> =
                sel.idx.iter().filter_map(|&i| entries.get(i).cloned()).collect();
            let flags = match rt.kind {
                ReturnKind::KeyValue => 0x08,
                ReturnKind::OrderedMap => {
                    picked.sort_by(|a, b| cmp_total(&a.0, &b.0));
                    0x01
                }
                _ => 0,
            };
            MsgValue::Map(MsgMap { flags, entries: picked })
        }
    };
    Ok(Some(particle_from_msgpack(&result)))
}

/// Removes the selected positions from `items`.
pub(crate) fn remove_selected<T>(items: &mut Vec<T>, sel: &Selection) {
    if sel.idx.is_empty() {
        return;
    }
    let mut mask = vec![false; items.len()];
    for &i in &sel.idx {
        if let Some(m) = mask.get_mut(i) {
            *m = true;
        }
    }
    let mut it = mask.into_iter();
    items.retain(|_| !it.next().unwrap_or(false));
}

// ---------------------------------------------------------------------------------------
// Numbers.

/// An increment/decrement delta argument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Delta {
    Default,
    Int(i64),
    Float(f64),
}

impl Delta {
    pub(crate) fn parse(v: Option<&MsgValue>, negate: bool) -> Result<Delta, CdtError> {
        let d = match v {
            None | Some(MsgValue::Nil) => Delta::Default,
            Some(MsgValue::Int(i)) => Delta::Int(*i),
            Some(MsgValue::UInt(u)) => Delta::Int(*u as i64),
            Some(MsgValue::Float(f)) => Delta::Float(*f),
            Some(_) => return Err(CdtError::Parameter("increment must be an integer or float")),
        };
        Ok(if negate {
            match d {
                Delta::Default => Delta::Int(-1),
                Delta::Int(i) => Delta::Int(i.wrapping_neg()),
                Delta::Float(f) => Delta::Float(-f),
            }
        } else {
            d
        })
    }

    /// Adds the delta to `current` (absent: zero of the delta's type).
    pub(crate) fn add_to(self, current: Option<&MsgValue>) -> Result<MsgValue, CdtError> {
        let (as_int, as_float) = match self {
            Delta::Default => (1i64, 1f64),
            Delta::Int(i) => (i, i as f64),
            Delta::Float(f) => (f as i64, f),
        };
        Ok(match current {
            Some(MsgValue::Int(v)) => MsgValue::Int(v.wrapping_add(as_int)),
            Some(MsgValue::UInt(v)) => MsgValue::Int((*v as i64).wrapping_add(as_int)),
            Some(MsgValue::Float(v)) => MsgValue::Float(v + as_float),
            Some(_) => return Err(CdtError::Parameter("value to increment is not a number")),
            None => match self {
                Delta::Float(f) => MsgValue::Float(f),
                _ => MsgValue::Int(as_int),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// Context.

const CTX_LIST: u64 = 0x10;
const CTX_MAP: u64 = 0x20;
const CTX_CREATE_MASK: u64 = 0x1c0;
const CTX_PERSIST: u64 = 0x100;
const CTX_CREATE_UNBOUND: u64 = 0x80;
const CTX_CREATE_ORDERED: u64 = 0xc0;

/// Walks the context pairs from `root` to the element the op applies to. Missing levels are
/// created (as placeholders, then containers) only for modify ops whose context says so;
/// `created` is set when the returned element is a placeholder for a not-yet-existing one.
fn navigate<'a>(
    root: &'a mut MsgValue,
    ctx: &[MsgValue],
    modify: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    let bin_missing = *created;
    let mut cur = root;
    for (level, pair) in ctx.chunks(2).enumerate() {
        let (Some(t), Some(v)) = (pair.first(), pair.get(1)) else {
            return Err(CdtError::Parameter("CDT context must hold type/value pairs"));
        };
        let t = match t {
            MsgValue::Int(t) => *t as u64,
            MsgValue::UInt(t) => *t,
            _ => return Err(CdtError::Parameter("CDT context type must be an integer")),
        };
        if level == 0 && bin_missing && t & CTX_CREATE_MASK & !CTX_PERSIST == 0 {
            return Err(CdtError::NotApplicable("bin is missing and the CDT context does not create it"));
        }
        cur = ctx_step(cur, t, v, modify, created)?;
    }
    Ok(cur)
}

fn ctx_step<'a>(
    cur: &'a mut MsgValue,
    t: u64,
    v: &MsgValue,
    modify: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    let base = t & 0x0f;
    let kind = t & (CTX_LIST | CTX_MAP);
    let create = t & CTX_CREATE_MASK & !CTX_PERSIST;
    if base > 3 || kind == CTX_LIST | CTX_MAP || t & !(0x3f | CTX_CREATE_MASK) != 0 {
        return Err(CdtError::NotApplicable("unsupported CDT context type"));
    }
    if kind == 0 && create != 0 {
        return Err(CdtError::NotApplicable("CDT context create flags need a list or map type"));
    }
    // Levels below a created one are created too, whatever their flags.
    let may_create = modify && (create != 0 || *created);
    if *created {
        // A level that does not exist yet: make it the container this context entry names.
        if !modify {
            return Err(CdtError::NotApplicable("CDT context element not found"));
        }
        *cur = match kind {
            CTX_LIST => MsgValue::List(join_list_marker(u8::from(create == CTX_CREATE_ORDERED), Vec::new())),
            CTX_MAP => MsgValue::Map(MsgMap {
                flags: match create {
                    CTX_CREATE_UNBOUND => 1,
                    CTX_CREATE_ORDERED => 3,
                    _ => 0,
                },
                entries: Vec::new(),
            }),
            _ => return Err(CdtError::NotApplicable("CDT context element not found")),
        };
    }
    match cur {
        MsgValue::List(raw) if kind != CTX_MAP => list_ctx_step(raw, base, create, v, may_create, created),
        MsgValue::Map(m) if kind != CTX_LIST => map_ctx_step(m, base, v, may_create, created),
        _ => Err(CdtError::NotApplicable("CDT context element is not the expected collection")),
    }
}

fn list_ctx_step<'a>(
    raw: &'a mut Vec<MsgValue>,
    base: u64,
    create: u64,
    v: &MsgValue,
    may_create: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    let off = usize::from(raw.first().is_some_and(is_flags_marker));
    let ordered =
        raw.first().is_some_and(|f| matches!(f, MsgValue::Ext(t, d) if d.is_empty() && *t >= 0 && *t & 1 != 0));
    let items = raw.get(off..).unwrap_or(&[]);
    let n = items.len();
    let pos = match base {
        0 => {
            let MsgValue::Int(index) = v else {
                return Err(CdtError::Parameter("CDT context index must be an integer"));
            };
            match single_index(*index, n) {
                Some(i) => i,
                None if may_create => {
                    let at = if (n == 0 && *index == -1) || *index == n as i64 || (*index > n as i64 && ordered) {
                        n
                    } else if *index > n as i64 && create == CTX_CREATE_UNBOUND {
                        let pad = (*index as u64 - n as u64) as usize;
                        if pad > PAD_MAX {
                            return Err(CdtError::NotApplicable("list index too far beyond the end"));
                        }
                        raw.extend(std::iter::repeat_n(MsgValue::Nil, pad));
                        n + pad
                    } else {
                        return Err(CdtError::NotApplicable("CDT context index out of range"));
                    };
                    raw.insert(off + at, MsgValue::Nil);
                    *created = true;
                    at
                }
                None => return Err(CdtError::NotApplicable("CDT context index out of range")),
            }
        }
        1 => {
            let MsgValue::Int(rank) = v else {
                return Err(CdtError::Parameter("CDT context rank must be an integer"));
            };
            let view = View::List(items);
            let r = single_index(*rank, n).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?;
            *view.rank_order().get(r).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?
        }
        3 => *View::List(items)
            .by_value(v, false)
            .idx
            .first()
            .ok_or(CdtError::NotApplicable("CDT context value not found"))?,
        _ => return Err(CdtError::NotApplicable("CDT context type does not apply to a list")),
    };
    raw.get_mut(off + pos).ok_or(CdtError::NotApplicable("CDT context element not found"))
}

fn map_ctx_step<'a>(
    m: &'a mut MsgMap,
    base: u64,
    v: &MsgValue,
    may_create: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    sort_map(m);
    let n = m.entries.len();
    let pos = match base {
        0 => {
            let MsgValue::Int(index) = v else {
                return Err(CdtError::Parameter("CDT context index must be an integer"));
            };
            single_index(*index, n).ok_or(CdtError::NotApplicable("CDT context index out of range"))?
        }
        1 => {
            let MsgValue::Int(rank) = v else {
                return Err(CdtError::Parameter("CDT context rank must be an integer"));
            };
            let r = single_index(*rank, n).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?;
            *View::Map(&m.entries)
                .rank_order()
                .get(r)
                .ok_or(CdtError::NotApplicable("CDT context rank out of range"))?
        }
        2 => match m.entries.binary_search_by(|e| cmp_values(&e.0, v)) {
            Ok(i) => i,
            Err(i) if may_create => {
                map::check_key(v)?;
                m.entries.insert(i, (v.clone(), MsgValue::Nil));
                *created = true;
                i
            }
            Err(_) => return Err(CdtError::NotApplicable("CDT context key not found")),
        },
        _ => *View::Map(&m.entries)
            .by_value(v, false)
            .idx
            .first()
            .ok_or(CdtError::NotApplicable("CDT context value not found"))?,
    };
    m.entries.get_mut(pos).map(|e| &mut e.1).ok_or(CdtError::NotApplicable("CDT context element not found"))
}

#[cfg(test)]
mod tests {
    use petrel_proto::msgpack::{self, MsgMap, MsgValue};
    use proptest::prelude::*;

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn i(v: i64) -> MsgValue {
        MsgValue::Int(v)
    }

    fn s(v: &str) -> MsgValue {
        MsgValue::str(v)
    }

    fn l(items: Vec<MsgValue>) -> MsgValue {
        MsgValue::List(items)
    }

    fn m(entries: Vec<(MsgValue, MsgValue)>) -> MsgValue {
        MsgValue::Map(MsgMap { flags: 0, entries })
    }

    fn int_p(v: i64) -> Particle {
        Particle { particle: 1, bytes: v.to_be_bytes().to_vec() }
    }

    fn ctx_op(ctx: Vec<MsgValue>, code: i64, args: Vec<MsgValue>) -> Vec<u8> {
        let mut inner = vec![i(code)];
        inner.extend(args);
        msgpack::to_vec(&l(vec![i(0xff), l(ctx), l(inner)]))
    }

    fn apply_to(v: &MsgValue, payload: &[u8]) -> Result<CdtOutcome, CdtError> {
        let particle = if matches!(v, MsgValue::Map(_)) { 19 } else { 20 };
        let bytes = msgpack::to_vec(v);
        apply(Some(ParticleRef { particle, bytes: &bytes }), payload, true)
    }

    fn new_value(out: &CdtOutcome) -> Option<MsgValue> {
        out.new_value.as_ref().map(|p| msgpack::decode(&p.as_ref().expect("bin stays").bytes).expect("valid"))
    }

    #[test]
    fn golden_list_append_then_size() {
        let list = hex("9301a203619102");
        let out = apply(Some(ParticleRef { particle: 20, bytes: &list }), &hex("920109"), true).expect("append");
        assert_eq!(out.result, Some(int_p(4)));
        let stored = Particle { particle: 20, bytes: hex("9401a20361910209") };
        assert_eq!(out.new_value, Some(Some(stored.clone())));
        let size = apply(Some(ParticleRef { particle: 20, bytes: &stored.bytes }), &hex("9110"), false).expect("size");
        assert_eq!(size, CdtOutcome { new_value: None, result: Some(int_p(4)) });
    }

    #[test]
    fn golden_map_put_then_get_by_key() {
        let map = hex("82a2036102a2037a01");
        let out = apply(Some(ParticleRef { particle: 19, bytes: &map }), &hex("9443a203710500"), true).expect("put");
        assert_eq!(out.result, Some(int_p(3)));
        let stored = hex("83a2036102a2037105a2037a01");
        assert_eq!(out.new_value, Some(Some(Particle { particle: 19, bytes: stored.clone() })));
        let get = apply(Some(ParticleRef { particle: 19, bytes: &stored }), &hex("936107a20371"), false).expect("get");
        assert_eq!(get, CdtOutcome { new_value: None, result: Some(int_p(5)) });
    }

    #[test]
    fn result_codes() {
        assert_eq!(CdtError::Parameter("x").result_code(), ResultCode::Parameter);
        assert_eq!(CdtError::IncompatibleType.result_code(), ResultCode::IncompatibleType);
        assert_eq!(CdtError::NotApplicable("x").result_code(), ResultCode::OpNotApplicable);
        assert_eq!(CdtError::ElementNotFound.result_code(), ResultCode::ElementNotFound);
        assert_eq!(CdtError::ElementExists.result_code(), ResultCode::ElementExists);
        assert_eq!(CdtError::Unsupported(254).result_code(), ResultCode::UnsupportedFeature);
    }

    #[test]
    fn malformed_payloads() {
        let list = msgpack::to_vec(&l(vec![i(1)]));
        let p = Some(ParticleRef { particle: 20, bytes: &list });
        for payload in [&[][..], &[0x91], &[0x01], &[0x90], &[0x91, 0xa1, 0x03], &[0x92, 0x01, 0x01, 0x00]] {
            assert!(matches!(apply(p, payload, true), Err(CdtError::Parameter(_))), "{payload:?}");
        }
        assert!(matches!(apply(p, &[0x91, 0xcc, 200], true), Err(CdtError::Parameter(_))));
        let select = msgpack::to_vec(&l(vec![i(0xfe), l(vec![]), i(0)]));
        assert_eq!(apply(p, &select, true), Err(CdtError::Unsupported(0xfe)));
        let garbage = ParticleRef { particle: 20, bytes: &[0x93, 0x01] };
        assert!(matches!(apply(Some(garbage), &[0x91, 0x10], false), Err(CdtError::Parameter(_))));
    }

    #[test]
    fn contexts_reach_nested_elements() {
        let nested = l(vec![l(vec![i(1), i(2)]), l(vec![i(3)])]);
        let out = apply_to(&nested, &ctx_op(vec![i(0x10), i(0)], 1, vec![i(9)])).expect("append");
        assert_eq!(out.result, Some(int_p(3)));
        assert_eq!(new_value(&out), Some(l(vec![l(vec![i(1), i(2), i(9)]), l(vec![i(3)])])));
        let out = apply_to(&nested, &ctx_op(vec![i(0x10), i(-1)], 16, vec![])).expect("size");
        assert_eq!((out.new_value, out.result), (None, Some(int_p(1))));
        // By rank (the [3] list ranks above [1, 2]) and by value.
        let out = apply_to(&nested, &ctx_op(vec![i(0x11), i(-1)], 17, vec![i(0)])).expect("rank");
        assert_eq!(out.result, Some(int_p(3)));
        let out = apply_to(&nested, &ctx_op(vec![i(0x13), l(vec![i(3)])], 16, vec![])).expect("value");
        assert_eq!(out.result, Some(int_p(1)));
        assert!(matches!(apply_to(&nested, &ctx_op(vec![i(0x10), i(5)], 16, vec![])), Err(CdtError::NotApplicable(_))));
        assert!(matches!(
            apply_to(&nested, &ctx_op(vec![i(0x22), s("a")], 96, vec![])),
            Err(CdtError::NotApplicable(_))
        ));
        assert_eq!(apply_to(&nested, &ctx_op(vec![i(0x10), i(0)], 96, vec![])), Err(CdtError::IncompatibleType));

        let map = m(vec![(s("a"), m(vec![(s("x"), i(1))])), (s("b"), l(vec![i(7)]))]);
        let out = apply_to(&map, &ctx_op(vec![i(0x22), s("a")], 67, vec![s("y"), i(2)])).expect("put");
        assert_eq!(
            new_value(&out),
            Some(m(vec![(s("a"), m(vec![(s("x"), i(1)), (s("y"), i(2))])), (s("b"), l(vec![i(7)]))]))
        );
        let out = apply_to(&map, &ctx_op(vec![i(0x20), i(1)], 17, vec![i(0)])).expect("index");
        assert_eq!(out.result, Some(int_p(7)));
        let out = apply_to(&map, &ctx_op(vec![i(0x21), i(-1)], 96, vec![])).expect("rank");
        assert_eq!(out.result, Some(int_p(1)));
        let out = apply_to(&map, &ctx_op(vec![i(0x23), l(vec![i(7)])], 16, vec![])).expect("value");
        assert_eq!(out.result, Some(int_p(1)));
        // A missing key is created only when the context says so.
        assert!(matches!(
            apply_to(&map, &ctx_op(vec![i(0x22), s("c")], 1, vec![i(5)])),
            Err(CdtError::NotApplicable(_))
        ));
        let out = apply_to(&map, &ctx_op(vec![i(0x22 | 0x40), s("c")], 1, vec![i(5)])).expect("create");
        let Some(MsgValue::Map(created)) = new_value(&out) else {
            panic!("map expected");
        };
        assert_eq!(created.entries.last(), Some(&(s("c"), l(vec![i(5)]))));
        // A removal through a creating context changes nothing.
        let out = apply_to(&map, &ctx_op(vec![i(0x22 | 0x40), s("c")], 7, vec![i(0)])).expect("no-op");
        assert_eq!(out.new_value, None);
        // A list index past the end is created with an unbounded create flag, padding nils.
        let out = apply_to(&nested, &ctx_op(vec![i(0x10 | 0x80), i(3)], 1, vec![i(4)])).expect("pad");
        assert_eq!(new_value(&out), Some(l(vec![l(vec![i(1), i(2)]), l(vec![i(3)]), MsgValue::Nil, l(vec![i(4)])])));
    }

    #[test]
    fn contexts_on_missing_bins() {
        let payload = ctx_op(vec![i(0x22 | 0x40), s("k"), i(0x10), i(0)], 67, vec![s("x"), i(1)]);
        let out = apply(None, &payload, true).expect("creates");
        assert_eq!(new_value(&out), Some(m(vec![(s("k"), l(vec![m(vec![(s("x"), i(1))])]))])));
        assert!(matches!(
            apply(None, &ctx_op(vec![i(0x22), s("k")], 67, vec![s("x"), i(1)]), true),
            Err(CdtError::NotApplicable(_))
        ));
        assert_eq!(apply(None, &ctx_op(vec![i(0x22), s("k")], 96, vec![]), false), Ok(nothing()));
        let int = ParticleRef { particle: 1, bytes: &[0; 8] };
        assert_eq!(apply(Some(int), &ctx_op(vec![i(0x10), i(0)], 16, vec![]), false), Err(CdtError::IncompatibleType));
        assert!(matches!(
            apply(None, &ctx_op(vec![i(0x22 | 0x40)], 67, vec![s("x"), i(1)]), true),
            Err(CdtError::Parameter(_))
        ));
    }

    #[test]
    fn normalizes_written_collections() {
        let unsorted = m(vec![
            (s("z"), i(1)),
            (i(3), i(2)),
            (s("z"), i(9)),
            (s("a"), l(vec![m(vec![(i(2), i(0)), (i(1), i(0))])])),
        ]);
        let out = normalize_collection(19, &msgpack::to_vec(&unsorted)).expect("map");
        let expect = m(vec![(i(3), i(2)), (s("a"), l(vec![m(vec![(i(1), i(0)), (i(2), i(0))])])), (s("z"), i(9))]);
        assert_eq!(out, msgpack::to_vec(&expect));
        let ordered = l(vec![MsgValue::Ext(1, vec![]), i(3), i(1), i(2)]);
        assert_eq!(
            normalize_collection(20, &msgpack::to_vec(&ordered)).expect("list"),
            msgpack::to_vec(&l(vec![MsgValue::Ext(1, vec![]), i(1), i(2), i(3)]))
        );
        let golden = hex("9301a203619102");
        assert_eq!(normalize_collection(20, &golden).expect("list"), golden);
        assert!(matches!(normalize_collection(20, &hex("82a2036102a2037a01")), Err(CdtError::Parameter(_))));
        assert!(matches!(normalize_collection(19, &[0x93, 0x01]), Err(CdtError::Parameter(_))));
        assert!(matches!(normalize_collection(3, &[0x90]), Err(CdtError::Parameter(_))));
        let sentinel = l(vec![MsgValue::Ext(-1, vec![0])]);
        assert!(matches!(normalize_collection(20, &msgpack::to_vec(&sentinel)), Err(CdtError::Parameter(_))));
    }

    #[test]
    fn particle_conversions() {
        let values = [
            MsgValue::Nil,
            MsgValue::Bool(true),
            i(-5),
            MsgValue::Float(2.5),
            s("hi"),
            MsgValue::Blob(4, vec![1, 2]),
            l(vec![i(1)]),
            m(vec![(i(1), i(2))]),
        ];
        let particles = [0u8, 17, 1, 2, 3, 4, 20, 19];
        for (v, want) in values.iter().zip(particles) {
            let p = particle_from_msgpack(v);
            assert_eq!(p.particle, want);
            let back = msgpack_from_particle(ParticleRef { particle: p.particle, bytes: &p.bytes }).expect("back");
            assert_eq!(&back, v);
        }
        assert_eq!(particle_from_msgpack(&MsgValue::Nil).bytes, Vec::<u8>::new());
        assert_eq!(particle_from_msgpack(&s("hi")).bytes, b"hi".to_vec());
        assert_eq!(msgpack_from_particle(ParticleRef { particle: 1, bytes: &[0xff] }), Ok(i(-1)));
        assert!(msgpack_from_particle(ParticleRef { particle: 1, bytes: &[] }).is_err());
        assert!(msgpack_from_particle(ParticleRef { particle: 2, bytes: &[0; 4] }).is_err());
        assert!(msgpack_from_particle(ParticleRef { particle: 17, bytes: &[] }).is_err());
    }

    #[test]
    fn wildcard_and_infinity_compare() {
        let wild = MsgValue::Ext(-1, vec![0]);
        let inf = MsgValue::Ext(-1, vec![1]);
        assert_eq!(cmp_values(&l(vec![i(1), wild.clone()]), &l(vec![i(1), i(2), i(3)])), Ordering::Equal);
        assert_eq!(cmp_values(&l(vec![i(2), wild]), &l(vec![i(1), i(2)])), Ordering::Greater);
        assert_eq!(cmp_values(&inf, &MsgValue::Float(1e300)), Ordering::Greater);
        let list = l(vec![l(vec![s("a"), i(1)]), l(vec![s("b"), i(2)]), l(vec![s("a"), i(3)])]);
        let get = msgpack::to_vec(&l(vec![i(22), i(5), l(vec![s("a"), MsgValue::Ext(-1, vec![0])])]));
        assert_eq!(apply_to(&list, &get).expect("get").result, Some(int_p(2)));
        let range = msgpack::to_vec(&l(vec![i(25), i(5), l(vec![s("b")]), MsgValue::Ext(-1, vec![1])]));
        assert_eq!(apply_to(&list, &range).expect("range").result, Some(int_p(1)));
    }

    #[test]
    fn index_arithmetic() {
        assert_eq!(single_index(-1, 3), Some(2));
        assert_eq!(single_index(3, 3), None);
        assert_eq!(single_index(i64::MIN, 3), None);
        assert_eq!(range_index(-5, 4, 3), (0, 2));
        assert_eq!(range_index(-5, 2, 3), (0, 0));
        assert_eq!(range_index(1, u64::MAX, 3), (1, 2));
        assert_eq!(range_index(i64::MAX, 1, 3), (3, 0));
        assert_eq!(range_index(i64::MIN, u64::MAX, 3), (0, 3));
        assert_eq!(rel_index(-2, 3, 1), (0, 2));
        assert_eq!(rel_index(i64::MAX, 3, 9), (i64::MAX, 3));
    }

    fn arb_value() -> impl Strategy<Value = MsgValue> {
        let leaf = prop_oneof![
            Just(MsgValue::Nil),
            any::<bool>().prop_map(MsgValue::Bool),
            (-20i64..20).prop_map(MsgValue::Int),
            any::<i64>().prop_map(MsgValue::Int),
            any::<u64>().prop_map(|u| if u > i64::MAX as u64 { MsgValue::UInt(u) } else { MsgValue::Int(u as i64) }),
            any::<f64>().prop_map(MsgValue::Float),
            "[a-d]{0,3}".prop_map(|s| MsgValue::Str(s.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| MsgValue::Blob(4, b)),
            Just(MsgValue::Ext(-1, vec![0])),
            Just(MsgValue::Ext(-1, vec![1])),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(MsgValue::List),
                (proptest::collection::vec(inner.clone(), 0..6), 0u8..2).prop_map(|(mut items, ordered)| {
                    items.insert(0, MsgValue::Ext(ordered as i8, Vec::new()));
                    MsgValue::List(items)
                }),
                (proptest::collection::vec((inner.clone(), inner), 0..6), prop_oneof![Just(0u8), Just(1), Just(3)])
                    .prop_map(|(entries, flags)| MsgValue::Map(MsgMap { flags, entries })),
            ]
        })
    }

    fn arb_plain() -> impl Strategy<Value = MsgValue> {
        let leaf = prop_oneof![
            Just(MsgValue::Nil),
            any::<bool>().prop_map(MsgValue::Bool),
            (-3i64..3).prop_map(MsgValue::Int),
            Just(MsgValue::UInt(u64::MAX)),
            prop_oneof![Just(-0.0f64), Just(0.0), Just(1.5), Just(f64::NAN)].prop_map(MsgValue::Float),
            "[ab]{0,2}".prop_map(|s| MsgValue::Str(s.into_bytes())),
            (prop_oneof![Just(4u8), Just(9), Just(23)], proptest::collection::vec(0u8..2, 0..2))
                .prop_map(|(t, b)| MsgValue::Blob(t, b)),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(MsgValue::List),
                proptest::collection::vec((inner.clone(), inner), 0..3)
                    .prop_map(|entries| MsgValue::Map(MsgMap { flags: 0, entries })),
            ]
        })
    }

    #[test]
    fn sorting_odd_values_does_not_panic() {
        let mut items = Vec::new();
        for k in 0..60i64 {
            items.push(match k % 6 {
                0 => MsgValue::Ext(-1, vec![0]),
                1 => MsgValue::Float(k as f64),
                2 => MsgValue::Blob(23, vec![k as u8]),
                3 => MsgValue::Blob(30, vec![k as u8]),
                4 => MsgValue::Ext(0, vec![1]),
                _ => l(vec![i(k), MsgValue::Ext(-1, vec![0])]),
            });
        }
        let list = l(items.clone());
        for payload in [
            msgpack::to_vec(&l(vec![i(13), i(3)])),
            msgpack::to_vec(&l(vec![i(0), i(1)])),
            msgpack::to_vec(&l(vec![i(26), i(3), i(0), i(30)])),
        ] {
            let _ = apply_to(&list, &payload);
        }
        let map = m(items.into_iter().enumerate().map(|(k, v)| (v, i(k as i64))).collect());
        let _ = apply_to(&map, &msgpack::to_vec(&l(vec![i(106), i(17), i(0)])));
    }

    fn arb_collection() -> impl Strategy<Value = MsgValue> {
        arb_value().prop_filter_map("a collection", |v| match v {
            MsgValue::List(_) | MsgValue::Map(_) => Some(v),
            other => Some(MsgValue::List(vec![other])),
        })
    }

    fn arb_existing() -> impl Strategy<Value = Option<(u8, Vec<u8>)>> {
        prop_oneof![
            Just(None),
            arb_collection().prop_map(|v| {
                let particle = if matches!(v, MsgValue::Map(_)) { 19 } else { 20 };
                Some((particle, msgpack::to_vec(&v)))
            }),
            (prop_oneof![Just(19u8), Just(20), Just(1), Just(3)], proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(Some),
        ]
    }

    fn arb_code() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..=41, 63i64..=111, Just(0xfe), Just(0xff), any::<i64>()]
    }

    fn arb_arg() -> impl Strategy<Value = MsgValue> {
        prop_oneof![
            4 => (-8i64..8).prop_map(MsgValue::Int),
            1 => prop_oneof![Just(0x10000i64), Just(0x10007), Just(i64::MAX), Just(i64::MIN), Just(0xffff)].prop_map(MsgValue::Int),
            3 => arb_value(),
        ]
    }

    fn arb_ctx() -> impl Strategy<Value = Vec<MsgValue>> {
        let t = prop_oneof![
            Just(0x10i64),
            Just(0x11),
            Just(0x13),
            Just(0x20),
            Just(0x21),
            Just(0x22),
            Just(0x23),
            Just(0x50),
            Just(0x90),
            Just(0xd0),
            Just(0x62),
            Just(0xa2),
            Just(0xe2),
            Just(0x04),
            any::<i64>()
        ];
        proptest::collection::vec((t.prop_map(MsgValue::Int), arb_arg()), 1..4)
            .prop_map(|pairs| pairs.into_iter().flat_map(|(t, v)| [t, v]).collect())
    }

    fn run_any(existing: &Option<(u8, Vec<u8>)>, payload: &[u8], modify: bool) -> Result<CdtOutcome, CdtError> {
        let existing = existing.as_ref().map(|(particle, bytes)| ParticleRef { particle: *particle, bytes });
        apply(existing, payload, modify)
    }

    proptest! {
        #[test]
        fn total_order_agrees_with_canonical_order(a in arb_plain(), b in arb_plain(), c in arb_plain()) {
            prop_assert_eq!(cmp_total(&a, &b), a.canonical_cmp(&b));
            if cmp_total(&a, &b) != Ordering::Greater && cmp_total(&b, &c) != Ordering::Greater {
                prop_assert_ne!(cmp_total(&a, &c), Ordering::Greater);
            }
        }

        #[test]
        fn apply_never_panics_on_random_bytes(
            existing in arb_existing(),
            payload in proptest::collection::vec(any::<u8>(), 0..48),
            modify in any::<bool>(),
        ) {
            let _ = run_any(&existing, &payload, modify);
        }

        #[test]
        fn apply_never_panics_on_plausible_ops(
            existing in arb_existing(),
            code in arb_code(),
            args in proptest::collection::vec(arb_arg(), 0..5),
            ctx in proptest::option::of(arb_ctx()),
            modify in any::<bool>(),
        ) {
            let mut inner = vec![MsgValue::Int(code)];
            inner.extend(args);
            let payload = match ctx {
                Some(ctx) => msgpack::to_vec(&l(vec![i(0xff), l(ctx), l(inner)])),
                None => msgpack::to_vec(&l(inner)),
            };
            if let Ok(out) = run_any(&existing, &payload, modify) {
                if let Some(Some(p)) = &out.new_value {
                    prop_assert!(p.particle == 19 || p.particle == 20);
                    prop_assert!(msgpack::decode(&p.bytes).is_ok());
                }
            }
        }

        #[test]
        fn stored_values_stay_normalized(
            start in arb_collection(),
            code in prop_oneof![0i64..=40, 64i64..=89],
            args in proptest::collection::vec(arb_arg(), 0..5),
        ) {
            let particle = if matches!(start, MsgValue::Map(_)) { 19 } else { 20 };
            let Ok(bytes) = normalize_collection(particle, &msgpack::to_vec(&start)) else {
                return Ok(());
            };
            let mut inner = vec![MsgValue::Int(code)];
            inner.extend(args);
            let payload = msgpack::to_vec(&l(inner));
            if let Ok(CdtOutcome { new_value: Some(Some(p)), .. }) =
                apply(Some(ParticleRef { particle, bytes: &bytes }), &payload, true)
            {
                prop_assert_eq!(normalize_collection(p.particle, &p.bytes), Ok(p.bytes.clone()));
            }
        }
    }
}
