//! Collection data type (CDT) operations on list and map bins kept in msgpack form.
//!
//! This module owns the public entry points — [`apply`] for CDT read/modify operations,
//! [`normalize_collection`] for whole list/map values a client writes, the conversions
//! between msgpack elements and particles, and [`CdtError`] and [`CdtOutcome`]. What list and
//! map operations share lives one concern a file: `args` (payload and argument decoding),
//! `stored` (the stored form and its normalisation), `order` (value comparison, with the
//! wildcard and infinity sentinels), `select` (index/rank arithmetic, element selection and
//! result building by return type) and `context` (the `[0xff, [ctx...], [op, args...]]` walk
//! into nested elements). The list operations live in `list.rs`, the map operations in
//! `map.rs`.
//!
//! Values are decoded to [`MsgValue`] trees, changed, and re-encoded canonically. Every map
//! that is stored (at any depth) is kept sorted by key in canonical order without duplicate
//! keys; an ordered list (flag 1) is kept sorted by value. Semantics follow the Aerospike
//! server: single-element index/rank operations out of range fail with
//! [`CdtError::NotApplicable`], range operations clamp, operations that remove from a missing
//! bin are no-ops, operations that add to a missing bin create it.

use petrel_proto::msgpack::{self, MsgValue, DEPTH_MAX};
use petrel_proto::particle::{self, ParticleError};
use petrel_proto::{ParticleType, ResultCode};

mod args;
mod context;
mod list;
mod map;
mod order;
mod select;
mod stored;
#[cfg(test)]
mod tests;

use args::{parse_payload, Args, Family};
use context::navigate;
use stored::{decode_stored, depth, normalize_value};

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
    let mut args = Args::new(op.args);
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

/// Converts a msgpack element to its particle form for a result (the protocol's mapping,
/// [`particle::from_msgpack`]).
pub fn particle_from_msgpack(v: &MsgValue) -> Particle {
    let (particle, bytes) = particle::from_msgpack(v);
    Particle { particle, bytes }
}

/// The inverse, for values written into lists/maps from op args (args already arrive as
/// msgpack, so this is mostly for tests and for integer/float bins).
pub fn msgpack_from_particle(p: ParticleRef<'_>) -> Result<MsgValue, CdtError> {
    particle::to_msgpack(p.particle, p.bytes).map_err(|e| match e {
        ParticleError::Collection => CdtError::Parameter("stored collection is malformed"),
        _ => CdtError::Parameter("malformed particle"),
    })
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

/// The outcome of an op that changes nothing and answers nothing.
fn nothing() -> CdtOutcome {
    CdtOutcome { new_value: None, result: None }
}

/// The element a CDT context (type/value pairs) names inside `root`, for reading: `None` when
/// the context is malformed or names nothing. Secondary indexes on nested elements use it.
pub fn walk_context<'a>(root: &'a mut MsgValue, ctx: &[MsgValue]) -> Option<&'a mut MsgValue> {
    let mut created = false;
    navigate(root, ctx, false, &mut created).ok()
}

/// A decoded list's elements, without the leading marker that carries its order flags.
pub fn list_items(items: &[MsgValue]) -> &[MsgValue] {
    stored::strip_list_marker(items)
}
