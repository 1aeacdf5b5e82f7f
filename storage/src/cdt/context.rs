//! The context walk: from a bin's root collection down through the context pairs
//! (`[type, value, ...]`, by index, rank, key or value) to the nested element an op applies
//! to, creating missing levels when a modify op's context says so.

use petrel_proto::cdt::{ctx, list_order, map_order};
use petrel_proto::msgpack::{MsgMap, MsgValue};

use crate::cdt::order::cmp_values;
use crate::cdt::select::{single_index, View};
use crate::cdt::stored::{is_flags_marker, is_ordered_list, join_list_marker, sort_map};
use crate::cdt::{map, CdtError, PAD_MAX};

/// Walks the context pairs from `root` to the element the op applies to. Missing levels are
/// created (as placeholders, then containers) only for modify ops whose context says so;
/// `created` is set when the returned element is a placeholder for a not-yet-existing one.
pub(super) fn navigate<'a>(
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
        if level == 0 && bin_missing && t & ctx::CREATE_MASK & !ctx::CREATE_PERSIST == 0 {
            return Err(CdtError::NotApplicable("bin is missing and the CDT context does not create it"));
        }
        cur = ctx_step(cur, t, v, modify, created)?;
    }
    Ok(cur)
}

/// One level of the walk: the element of `cur` that context entry `(t, v)` names.
fn ctx_step<'a>(
    cur: &'a mut MsgValue,
    t: u64,
    v: &MsgValue,
    modify: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    let base = t & ctx::BASE_MASK;
    let kind = t & (ctx::LIST | ctx::MAP);
    let create = t & ctx::CREATE_MASK & !ctx::CREATE_PERSIST;
    if base > ctx::VALUE
        || kind == ctx::LIST | ctx::MAP
        || t & !(ctx::BASE_MASK | ctx::LIST | ctx::MAP | ctx::CREATE_MASK) != 0
    {
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
            ctx::LIST => {
                let flags = if create == ctx::CREATE_ORDERED { list_order::ORDERED } else { list_order::UNORDERED };
                MsgValue::List(join_list_marker(flags, Vec::new()))
            }
            ctx::MAP => MsgValue::Map(MsgMap {
                flags: match create {
                    ctx::CREATE_UNBOUND => map_order::KEY_ORDERED,
                    ctx::CREATE_ORDERED => map_order::KEY_VALUE_ORDERED,
                    _ => map_order::UNORDERED,
                },
                entries: Vec::new(),
            }),
            _ => return Err(CdtError::NotApplicable("CDT context element not found")),
        };
    }
    match cur {
        MsgValue::List(raw) if kind != ctx::MAP => list_ctx_step(raw, base, create, v, may_create, created),
        MsgValue::Map(m) if kind != ctx::LIST => map_ctx_step(m, base, v, may_create, created),
        _ => Err(CdtError::NotApplicable("CDT context element is not the expected collection")),
    }
}

/// The element of a list that a context entry names (index, rank or value).
fn list_ctx_step<'a>(
    raw: &'a mut Vec<MsgValue>,
    base: u64,
    create: u64,
    v: &MsgValue,
    may_create: bool,
    created: &mut bool,
) -> Result<&'a mut MsgValue, CdtError> {
    let off = usize::from(raw.first().is_some_and(is_flags_marker));
    let ordered = is_ordered_list(raw);
    let items = raw.get(off..).unwrap_or(&[]);
    let n = items.len();
    let pos = match base {
        ctx::INDEX => {
            let MsgValue::Int(index) = v else {
                return Err(CdtError::Parameter("CDT context index must be an integer"));
            };
            match single_index(*index, n) {
                Some(i) => i,
                None if may_create => {
                    let at = if (n == 0 && *index == -1) || *index == n as i64 || (*index > n as i64 && ordered) {
                        n
                    } else if *index > n as i64 && create == ctx::CREATE_UNBOUND {
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
        ctx::RANK => {
            let MsgValue::Int(rank) = v else {
                return Err(CdtError::Parameter("CDT context rank must be an integer"));
            };
            let view = View::List(items);
            let r = single_index(*rank, n).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?;
            *view.rank_order().get(r).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?
        }
        ctx::VALUE => *View::List(items)
            .by_value(v, false)
            .idx
            .first()
            .ok_or(CdtError::NotApplicable("CDT context value not found"))?,
        _ => return Err(CdtError::NotApplicable("CDT context type does not apply to a list")),
    };
    raw.get_mut(off + pos).ok_or(CdtError::NotApplicable("CDT context element not found"))
}

/// The value of the map entry that a context entry names (index, rank, key or value).
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
        ctx::INDEX => {
            let MsgValue::Int(index) = v else {
                return Err(CdtError::Parameter("CDT context index must be an integer"));
            };
            single_index(*index, n).ok_or(CdtError::NotApplicable("CDT context index out of range"))?
        }
        ctx::RANK => {
            let MsgValue::Int(rank) = v else {
                return Err(CdtError::Parameter("CDT context rank must be an integer"));
            };
            let r = single_index(*rank, n).ok_or(CdtError::NotApplicable("CDT context rank out of range"))?;
            *View::Map(&m.entries)
                .rank_order()
                .get(r)
                .ok_or(CdtError::NotApplicable("CDT context rank out of range"))?
        }
        ctx::KEY => match m.entries.binary_search_by(|e| cmp_values(&e.0, v)) {
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
