//! What a CDT operation says: its payload (`[op, args...]`, or the context wrapper
//! `[0xff, [ctx...], [op, args...]]`) parsed into op code, arguments and context, the op's
//! [`Family`] (list or map), typed argument accessors ([`Args`]) and increment deltas
//! ([`Delta`]).

use petrel_proto::cdt::{self, OP_CONTEXT_EVAL, OP_SELECT};
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::ParticleType;

use crate::cdt::stored::{normalize_value, split_list_marker, strip_list_marker};
use crate::cdt::CdtError;

/// A parsed CDT payload.
pub(super) struct OpPayload {
    pub(super) code: i64,
    pub(super) args: Vec<MsgValue>,
    /// The context pairs, for a context-wrapped op.
    pub(super) ctx: Option<Vec<MsgValue>>,
}

/// Parses a CDT payload; a select (path expression) op is not supported.
pub(super) fn parse_payload(payload: &[u8]) -> Result<OpPayload, CdtError> {
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

/// Splits a decoded op list into its op code and its arguments.
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
pub(super) enum Family {
    List,
    Map,
}

impl Family {
    /// The family op `code` belongs to, if any.
    pub(super) fn of(code: i64) -> Option<Family> {
        if cdt::list::is_modify(code).is_some() {
            Some(Family::List)
        } else if cdt::map::is_modify(code).is_some() {
            Some(Family::Map)
        } else {
            None
        }
    }

    /// Whether op `code` of this family changes the collection.
    pub(super) fn is_modify(self, code: i64) -> bool {
        match self {
            Family::List => cdt::list::is_modify(code).unwrap_or(false),
            Family::Map => cdt::map::is_modify(code).unwrap_or(false),
        }
    }

    /// The particle type of the collections this family works on.
    pub(super) fn particle(self) -> u8 {
        match self {
            Family::List => ParticleType::List as u8,
            Family::Map => ParticleType::Map as u8,
        }
    }
}

/// The op's arguments (after the op code), with typed accessors that fail as Parameter.
#[derive(Debug)]
pub(crate) struct Args {
    vals: Vec<MsgValue>,
}

impl Args {
    pub(super) fn new(vals: Vec<MsgValue>) -> Args {
        Args { vals }
    }

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
