//! Map CDT operations (op codes 64–110): putting, adding, replacing, incrementing, clearing,
//! removing and reading map entries by key, index, value and rank.
//!
//! Maps are always stored sorted by key in canonical order (whatever their order flags), so a
//! map's index order is its key order. The flags (0 unordered, 1 key-ordered, 3 key-value
//! ordered) are kept and re-encoded. Map policy arguments follow the clients: `put`/`put_items`
//! take `(attributes, flags)`, the legacy `add`/`replace` ops take the attributes only or
//! nothing. Selection and result building are shared with lists in `select.rs`.

use std::cmp::Ordering;

use petrel_proto::cdt::map::{
    is_modify, ADD, ADD_ITEMS, CLEAR, DECREMENT, GET_ALL_BY_VALUE, GET_BY_INDEX, GET_BY_INDEX_RANGE, GET_BY_KEY,
    GET_BY_KEY_INTERVAL, GET_BY_KEY_LIST, GET_BY_KEY_REL_INDEX_RANGE, GET_BY_RANK, GET_BY_RANK_RANGE, GET_BY_VALUE,
    GET_BY_VALUE_INTERVAL, GET_BY_VALUE_LIST, GET_BY_VALUE_REL_RANK_RANGE, INCREMENT, PUT, PUT_ITEMS,
    REMOVE_ALL_BY_VALUE, REMOVE_BY_INDEX, REMOVE_BY_INDEX_RANGE, REMOVE_BY_KEY, REMOVE_BY_KEY_INTERVAL,
    REMOVE_BY_KEY_LIST, REMOVE_BY_KEY_REL_INDEX_RANGE, REMOVE_BY_RANK, REMOVE_BY_RANK_RANGE, REMOVE_BY_VALUE,
    REMOVE_BY_VALUE_INTERVAL, REMOVE_BY_VALUE_LIST, REMOVE_BY_VALUE_REL_RANK_RANGE, REPLACE, REPLACE_ITEMS, SET_TYPE,
    SIZE,
};
use petrel_proto::cdt::map_order;
use petrel_proto::cdt::map_write::{CREATE_ONLY, NO_FAIL, PARTIAL, UPDATE_ONLY};
use petrel_proto::cdt::PERSIST_INDEX;
use petrel_proto::msgpack::{MsgMap, MsgValue};
use petrel_proto::ParticleType;

use crate::cdt::args::{Args, Delta};
use crate::cdt::order::{cmp_total, cmp_values, in_interval, ValueSet};
use crate::cdt::select::{
    build_result, int_particle, rel_index, remove_selected, ReturnSpec, SelOrder, Selection, View,
};
use crate::cdt::stored::sort_map;
use crate::cdt::{particle_from_msgpack, CdtError, Exec, Particle};

/// The bits of a map's order flags.
const ORDER_BITS: u64 = map_order::KEY_VALUE_ORDERED as u64;

/// Map keys must be integers, strings or blobs.
pub(crate) fn check_key(k: &MsgValue) -> Result<(), CdtError> {
    match k {
        MsgValue::Int(_) | MsgValue::UInt(_) | MsgValue::Str(_) => Ok(()),
        MsgValue::Blob(t, _) if *t == ParticleType::Blob as u8 => Ok(()),
        _ => Err(CdtError::Parameter("map key must be an integer, string or blob")),
    }
}

/// What a write may do with existing and missing keys.
#[derive(Debug, Clone, Copy)]
struct Control {
    overwrite: bool,
    create: bool,
    no_fail: bool,
    partial: bool,
}

impl Control {
    fn from_flags(mf: u64) -> Control {
        Control {
            overwrite: mf & CREATE_ONLY == 0,
            create: mf & UPDATE_ONLY == 0,
            no_fail: mf & NO_FAIL != 0,
            partial: mf & PARTIAL != 0,
        }
    }

    const ADD: Control = Control { overwrite: false, create: true, no_fail: false, partial: false };

    const REPLACE: Control = Control { overwrite: true, create: false, no_fail: false, partial: false };
}

/// Runs map op `code` on `slot`. `missing`: the map does not exist yet (`slot` is a
/// placeholder), so ops that add create it and the others do nothing.
pub(crate) fn run(slot: &mut MsgValue, missing: bool, code: i64, args: &mut Args) -> Result<Exec, CdtError> {
    let modify = is_modify(code).unwrap_or(false);
    if missing {
        if !modify {
            return Ok(Exec::untouched());
        }
        let attr = match code {
            ADD | PUT | INCREMENT | DECREMENT => args.opt_uint(2, 0)?,
            ADD_ITEMS | PUT_ITEMS => args.opt_uint(1, 0)?,
            SET_TYPE | REPLACE => 0,
            REPLACE_ITEMS => return Err(CdtError::ElementNotFound),
            _ => return Ok(Exec::untouched()),
        };
        *slot = MsgValue::Map(MsgMap { flags: (attr & ORDER_BITS) as u8, entries: Vec::new() });
    }
    let MsgValue::Map(m) = slot else {
        return Err(CdtError::IncompatibleType);
    };
    sort_map(m);
    Ok(Exec { result: exec(m, code, args)?, touched: modify })
}

fn exec(m: &mut MsgMap, code: i64, args: &mut Args) -> Result<Option<Particle>, CdtError> {
    let n = m.entries.len();
    let remove = is_modify(code).unwrap_or(false);
    match code {
        SET_TYPE => {
            args.count(1, 1)?;
            let f = args.uint(0)?;
            // The persisted-index bit is accepted and has no meaning in memory.
            if f & !(ORDER_BITS | PERSIST_INDEX) != 0 {
                return Err(CdtError::NotApplicable("invalid map flags"));
            }
            m.flags = (f & ORDER_BITS) as u8;
            Ok(None)
        }
        ADD | PUT | REPLACE => {
            let (max, ctl) = match code {
                ADD => (3, Control::ADD),
                PUT => (4, Control::from_flags(args.opt_uint(3, 0)?)),
                _ => (2, Control::REPLACE),
            };
            args.count(2, max)?;
            args.opt_uint(2, 0)?;
            let key = args.storage_value(0)?;
            let value = args.storage_value(1)?;
            put(m, key, value, ctl)
        }
        ADD_ITEMS | PUT_ITEMS | REPLACE_ITEMS => {
            let (max, ctl) = match code {
                ADD_ITEMS => (2, Control::ADD),
                PUT_ITEMS => (3, Control::from_flags(args.opt_uint(2, 0)?)),
                _ => (1, Control::REPLACE),
            };
            args.count(1, max)?;
            args.opt_uint(1, 0)?;
            let items = args.storage_map(0)?;
            put_items(m, items, ctl)
        }
        INCREMENT | DECREMENT => {
            args.count(1, 3)?;
            let delta = Delta::parse(args.opt_value(1), code == DECREMENT)?;
            args.opt_uint(2, 0)?;
            let key = args.storage_value(0)?;
            check_key(&key)?;
            let new = match m.entries.binary_search_by(|e| cmp_total(&e.0, &key)) {
                Ok(i) => {
                    let slot = m.entries.get_mut(i).ok_or(CdtError::Parameter("map entry vanished"))?;
                    slot.1 = delta.add_to(Some(&slot.1))?;
                    slot.1.clone()
                }
                Err(i) => {
                    let new = delta.add_to(None)?;
                    m.entries.insert(i, (key, new.clone()));
                    new
                }
            };
            Ok(Some(particle_from_msgpack(&new)))
        }
        CLEAR => {
            m.entries.clear();
            Ok(None)
        }
        SIZE => Ok(Some(int_particle(n))),
        REMOVE_BY_KEY | GET_BY_KEY => {
            args.count(2, 2)?;
            let rt = single_return_type(args)?;
            let sel = by_key(&m.entries, args.value(1)?);
            finish(m, sel, false, rt, remove)
        }
        REMOVE_BY_INDEX | GET_BY_INDEX | REMOVE_BY_RANK | GET_BY_RANK => {
            args.count(2, 2)?;
            let rt = single_return_type(args)?;
            let view = View::Map(&m.entries);
            let sel = if code == REMOVE_BY_INDEX || code == GET_BY_INDEX {
                view.by_index(args.index(1)?, 1, false)?
            } else {
                view.by_rank(args.index(1)?, 1, false)?
            };
            finish(m, sel, false, rt, remove)
        }
        REMOVE_BY_VALUE | GET_BY_VALUE => {
            args.count(2, 2)?;
            let rt = single_return_type(args)?;
            let sel = View::Map(&m.entries).by_value(args.value(1)?, false);
            finish(m, sel, false, rt, remove)
        }
        REMOVE_BY_KEY_LIST | GET_BY_KEY_LIST => {
            args.count(2, 2)?;
            let rt = multi_return_type(args)?;
            let set = ValueSet::new(args.list(1)?);
            let sel = key_selection(&m.entries, |k| set.contains(k));
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_ALL_BY_VALUE | GET_ALL_BY_VALUE => {
            args.count(2, 2)?;
            let rt = multi_return_type(args)?;
            let sel = View::Map(&m.entries).by_value(args.value(1)?, true);
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_VALUE_LIST | GET_BY_VALUE_LIST => {
            args.count(2, 2)?;
            let rt = multi_return_type(args)?;
            let sel = View::Map(&m.entries).by_value_list(args.list(1)?);
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_KEY_INTERVAL | GET_BY_KEY_INTERVAL => {
            args.count(2, 3)?;
            let rt = multi_return_type(args)?;
            let (start, end) = (args.value(1)?, args.opt_value(2));
            let sel = key_selection(&m.entries, |k| in_interval(k, start, end));
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_INDEX_RANGE | GET_BY_INDEX_RANGE | REMOVE_BY_RANK_RANGE | GET_BY_RANK_RANGE => {
            args.count(2, 3)?;
            let rt = multi_return_type(args)?;
            let (start, count) = (args.index(1)?, args.opt_count(2)?);
            let view = View::Map(&m.entries);
            let sel = if code == REMOVE_BY_INDEX_RANGE || code == GET_BY_INDEX_RANGE {
                view.by_index(start, count, true)?
            } else {
                view.by_rank(start, count, true)?
            };
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_VALUE_INTERVAL | GET_BY_VALUE_INTERVAL => {
            args.count(2, 3)?;
            let rt = multi_return_type(args)?;
            let sel = View::Map(&m.entries).by_value_interval(args.value(1)?, args.opt_value(2));
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_KEY_REL_INDEX_RANGE | GET_BY_KEY_REL_INDEX_RANGE => {
            args.count(3, 4)?;
            let rt = multi_return_type(args)?;
            let key = args.value(1)?;
            let anchor = m.entries.iter().filter(|e| cmp_values(&e.0, key) == Ordering::Less).count();
            let (start, count) = rel_index(args.index(2)?, args.opt_count(3)?, anchor);
            let sel = View::Map(&m.entries).by_index(start, count, true)?;
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        REMOVE_BY_VALUE_REL_RANK_RANGE | GET_BY_VALUE_REL_RANK_RANGE => {
            args.count(3, 4)?;
            let rt = multi_return_type(args)?;
            let sel = View::Map(&m.entries).by_value_rel_rank(args.value(1)?, args.index(2)?, args.opt_count(3)?)?;
            finish(m, sel.apply_inverted(rt, &View::Map(&m.entries)), true, rt, remove)
        }
        _ => Err(CdtError::Parameter("unknown map op code")),
    }
}

fn single_return_type(args: &Args) -> Result<ReturnSpec, CdtError> {
    let rt = ReturnSpec::parse(args.uint(0)?, true)?;
    if rt.inverted {
        return Err(CdtError::NotApplicable("inverted flag on a single-element op"));
    }
    Ok(rt)
}

fn multi_return_type(args: &Args) -> Result<ReturnSpec, CdtError> {
    ReturnSpec::parse(args.uint(0)?, true)
}

/// The entries whose key satisfies `pred`, in key order.
fn key_selection(entries: &[(MsgValue, MsgValue)], pred: impl Fn(&MsgValue) -> bool) -> Selection {
    Selection {
        idx: entries.iter().enumerate().filter(|(_, e)| pred(&e.0)).map(|(i, _)| i).collect(),
        order: SelOrder::Index,
    }
}

/// The entry with key `key` (the first match, for a wildcard pattern).
fn by_key(entries: &[(MsgValue, MsgValue)], key: &MsgValue) -> Selection {
    Selection {
        idx: entries.iter().position(|e| cmp_values(&e.0, key) == Ordering::Equal).into_iter().collect(),
        order: SelOrder::Index,
    }
}

/// Builds the op's result from the selection, then removes the selection if asked.
fn finish(
    m: &mut MsgMap,
    sel: Selection,
    multi: bool,
    rt: ReturnSpec,
    remove: bool,
) -> Result<Option<Particle>, CdtError> {
    let result = build_result(View::Map(&m.entries), &sel, multi, rt)?;
    if remove {
        remove_selected(&mut m.entries, &sel);
    }
    Ok(result)
}

/// What to do with a write the control refuses: with no-fail, stop and report the size.
fn refused(ctl: Control, n: usize, err: CdtError) -> Result<Option<Particle>, CdtError> {
    if ctl.no_fail {
        Ok(Some(int_particle(n)))
    } else {
        Err(err)
    }
}

/// Writes one entry. Returns the new size.
fn put(m: &mut MsgMap, key: MsgValue, value: MsgValue, ctl: Control) -> Result<Option<Particle>, CdtError> {
    check_key(&key)?;
    let n = m.entries.len();
    match m.entries.binary_search_by(|e| cmp_total(&e.0, &key)) {
        Ok(i) => {
            if !ctl.overwrite {
                return refused(ctl, n, CdtError::ElementExists);
            }
            if let Some(e) = m.entries.get_mut(i) {
                e.1 = value;
            }
        }
        Err(i) => {
            if !ctl.create {
                return refused(ctl, n, CdtError::ElementNotFound);
            }
            m.entries.insert(i, (key, value));
        }
    }
    Ok(Some(int_particle(m.entries.len())))
}

/// Writes several entries (sorted, unique keys). With no-fail and partial, refused entries are
/// skipped; with no-fail alone, one refusal leaves the map unchanged. Returns the new size.
fn put_items(m: &mut MsgMap, items: Vec<(MsgValue, MsgValue)>, ctl: Control) -> Result<Option<Particle>, CdtError> {
    let n = m.entries.len();
    for (k, _) in &items {
        check_key(k)?;
    }
    let mut kept = Vec::with_capacity(items.len());
    for (k, v) in items {
        let found = m.entries.binary_search_by(|e| cmp_total(&e.0, &k)).is_ok();
        let refusal = if found && !ctl.overwrite {
            Some(CdtError::ElementExists)
        } else if !found && !ctl.create {
            Some(CdtError::ElementNotFound)
        } else {
            None
        };
        match refusal {
            Some(_) if ctl.no_fail && ctl.partial => continue,
            Some(err) => return refused(ctl, n, err),
            None => kept.push((k, v)),
        }
    }
    if kept.len() <= 8 {
        for (k, v) in kept {
            match m.entries.binary_search_by(|e| cmp_total(&e.0, &k)) {
                Ok(i) => {
                    if let Some(e) = m.entries.get_mut(i) {
                        e.1 = v;
                    }
                }
                Err(i) => m.entries.insert(i, (k, v)),
            }
        }
    } else {
        // Old entries first, then new ones: the stable sort and last-wins dedup keep the new.
        m.entries.extend(kept);
        sort_map(m);
    }
    Ok(Some(int_particle(m.entries.len())))
}

#[cfg(test)]
mod tests {
    use petrel_proto::msgpack::{self, MsgMap, MsgValue};

    use crate::cdt::tests::{i, l, op, s};
    use crate::cdt::{apply, msgpack_from_particle, CdtError, CdtOutcome, ParticleRef};

    fn m(flags: u8, entries: Vec<(MsgValue, MsgValue)>) -> MsgValue {
        MsgValue::Map(MsgMap { flags, entries })
    }

    fn run(map: Option<&MsgValue>, code: i64, args: Vec<MsgValue>) -> Result<CdtOutcome, CdtError> {
        let bytes = map.map(msgpack::to_vec);
        let existing = bytes.as_deref().map(|b| ParticleRef { particle: 19, bytes: b });
        apply(existing, &op(code, args), true)
    }

    fn decode_outcome(out: CdtOutcome) -> (Option<MsgValue>, Option<MsgValue>) {
        let new = out.new_value.map(|p| {
            let p = p.expect("bin stays");
            assert_eq!(p.particle, 19);
            msgpack::decode(&p.bytes).expect("valid map")
        });
        let result = out.result.map(|p| {
            msgpack_from_particle(ParticleRef { particle: p.particle, bytes: &p.bytes }).expect("valid result")
        });
        (new, result)
    }

    fn ok(map: &MsgValue, code: i64, args: Vec<MsgValue>) -> (Option<MsgValue>, Option<MsgValue>) {
        decode_outcome(run(Some(map), code, args).expect("op succeeds"))
    }

    /// {0: 17, 4: 2, 5: 15, 9: 10}, the clients' documentation example.
    fn sample() -> MsgValue {
        m(0, vec![(i(0), i(17)), (i(4), i(2)), (i(5), i(15)), (i(9), i(10))])
    }

    #[test]
    fn writes() {
        let base = m(0, vec![(s("a"), i(1))]);
        assert_eq!(ok(&base, 67, vec![s("b"), i(2)]), (Some(m(0, vec![(s("a"), i(1)), (s("b"), i(2))])), Some(i(2))));
        assert_eq!(ok(&base, 67, vec![s("a"), i(5), i(0), i(0)]).0, Some(m(0, vec![(s("a"), i(5))])));
        assert_eq!(run(Some(&base), 67, vec![s("a"), i(5), i(0), i(1)]).unwrap_err(), CdtError::ElementExists);
        assert_eq!(ok(&base, 67, vec![s("a"), i(5), i(0), i(1 | 4)]), (None, Some(i(1))));
        assert_eq!(run(Some(&base), 67, vec![s("b"), i(5), i(0), i(2)]).unwrap_err(), CdtError::ElementNotFound);
        assert_eq!(run(Some(&base), 65, vec![s("a"), i(5)]).unwrap_err(), CdtError::ElementExists);
        assert_eq!(ok(&base, 65, vec![i(3), i(5)]).0, Some(m(0, vec![(i(3), i(5)), (s("a"), i(1))])));
        assert_eq!(ok(&base, 69, vec![s("a"), s("x")]).0, Some(m(0, vec![(s("a"), s("x"))])));
        assert_eq!(run(Some(&base), 69, vec![s("q"), i(1)]).unwrap_err(), CdtError::ElementNotFound);
        let items = m(0, vec![(s("c"), i(3)), (s("a"), i(9))]);
        assert_eq!(ok(&base, 68, vec![items.clone()]), (Some(m(0, vec![(s("a"), i(9)), (s("c"), i(3))])), Some(i(2))));
        assert_eq!(run(Some(&base), 66, vec![items.clone()]).unwrap_err(), CdtError::ElementExists);
        assert_eq!(
            ok(&base, 68, vec![items.clone(), i(0), i(1 | 4 | 8)]).0,
            Some(m(0, vec![(s("a"), i(1)), (s("c"), i(3))]))
        );
        assert_eq!(ok(&base, 68, vec![items.clone(), i(0), i(1 | 4)]), (None, Some(i(1))));
        assert_eq!(run(Some(&base), 70, vec![items]).unwrap_err(), CdtError::ElementNotFound);
        assert_eq!(ok(&base, 70, vec![m(0, vec![(s("a"), i(0))])]).0, Some(m(0, vec![(s("a"), i(0))])));
        // A missing bin is created with the policy's order; replace needs an existing map.
        let out = run(None, 67, vec![s("k"), i(1), i(1)]).expect("creates");
        assert_eq!(decode_outcome(out), (Some(m(1, vec![(s("k"), i(1))])), Some(i(1))));
        assert_eq!(run(None, 70, vec![m(0, vec![])]).unwrap_err(), CdtError::ElementNotFound);
        assert_eq!(run(None, 69, vec![s("k"), i(1)]).unwrap_err(), CdtError::ElementNotFound);
        // Keys must be integers, strings or blobs.
        assert!(matches!(run(Some(&base), 67, vec![MsgValue::Float(1.0), i(1)]), Err(CdtError::Parameter(_))));
        assert!(matches!(run(Some(&base), 67, vec![l(vec![]), i(1)]), Err(CdtError::Parameter(_))));
        // Many items at once merge through a sort.
        let many = m(0, (0..20).map(|k| (i(k), i(k))).collect());
        assert_eq!(ok(&base, 68, vec![many]).1, Some(i(21)));
    }

    #[test]
    fn increment_clear_set_type() {
        let base = m(0, vec![(s("a"), i(1)), (s("f"), MsgValue::Float(1.5)), (s("s"), s("x"))]);
        assert_eq!(ok(&base, 73, vec![s("a"), i(4)]).1, Some(i(5)));
        assert_eq!(ok(&base, 74, vec![s("a")]).1, Some(i(0)));
        assert_eq!(ok(&base, 73, vec![s("f"), MsgValue::Float(1.0)]).1, Some(MsgValue::Float(2.5)));
        let (new, result) = ok(&base, 73, vec![s("b"), i(7)]);
        assert_eq!(result, Some(i(7)));
        assert_eq!(new.map(|v| matches!(v, MsgValue::Map(m) if m.entries.len() == 4)), Some(true));
        assert!(matches!(run(Some(&base), 73, vec![s("s"), i(1)]), Err(CdtError::Parameter(_))));
        assert!(matches!(run(Some(&base), 73, vec![s("a"), s("1")]), Err(CdtError::Parameter(_))));
        let out = run(None, 74, vec![i(1), i(2)]).expect("creates");
        assert_eq!(decode_outcome(out), (Some(m(0, vec![(i(1), i(-2))])), Some(i(-2))));
        assert_eq!(ok(&base, 75, vec![]), (Some(m(0, vec![])), None));
        assert_eq!(run(None, 75, vec![]).expect("no-op").new_value, None);
        assert_eq!(
            ok(&base, 64, vec![i(3)]).0.map(|v| msgpack::to_vec(&v).get(1..4).map(<[u8]>::to_vec)),
            Some(Some(vec![0xc7, 0, 3]))
        );
        assert!(matches!(run(Some(&base), 64, vec![i(4)]), Err(CdtError::NotApplicable(_))));
        assert_eq!(decode_outcome(run(None, 64, vec![i(1)]).expect("creates")).0, Some(m(1, vec![])));
    }

    #[test]
    fn reads_by_key_index_rank_value() {
        let base = sample();
        assert_eq!(ok(&base, 96, vec![]).1, Some(i(4)));
        assert_eq!(ok(&base, 97, vec![i(7), i(5)]).1, Some(i(15)));
        assert_eq!(ok(&base, 97, vec![i(7), i(6)]).1, None);
        assert_eq!(ok(&base, 97, vec![i(1), i(6)]).1, Some(i(-1)));
        assert_eq!(ok(&base, 97, vec![i(13), i(6)]).1, Some(MsgValue::Bool(false)));
        assert_eq!(ok(&base, 97, vec![i(6), i(9)]).1, Some(i(9)));
        assert_eq!(ok(&base, 97, vec![i(8), i(9)]).1, Some(m(8, vec![(i(9), i(10))])));
        assert_eq!(ok(&base, 97, vec![i(3), i(4)]).1, Some(i(0)));
        assert_eq!(ok(&base, 98, vec![i(6), i(-1)]).1, Some(i(9)));
        assert_eq!(ok(&base, 98, vec![i(2), i(0)]).1, Some(i(3)));
        assert!(matches!(run(Some(&base), 98, vec![i(7), i(4)]), Err(CdtError::NotApplicable(_))));
        assert!(matches!(run(Some(&base), 98, vec![i(0x10007), i(0)]), Err(CdtError::NotApplicable(_))));
        assert_eq!(ok(&base, 99, vec![i(6), i(2)]).1, Some(i(4)));
        assert_eq!(ok(&base, 100, vec![i(6), i(0)]).1, Some(i(4)));
        assert_eq!(ok(&base, 100, vec![i(4), i(0)]).1, Some(i(3)));
        assert_eq!(ok(&base, 102, vec![i(6), i(10)]).1, Some(l(vec![i(9)])));
        assert_eq!(ok(&base, 103, vec![i(6), i(4), i(9)]).1, Some(l(vec![i(4), i(5)])));
        assert_eq!(ok(&base, 103, vec![i(6), i(5)]).1, Some(l(vec![i(5), i(9)])));
        assert_eq!(ok(&base, 103, vec![i(0x10006), i(5)]).1, Some(l(vec![i(0), i(4)])));
        assert_eq!(ok(&base, 104, vec![i(7), i(1), i(2)]).1, Some(l(vec![i(2), i(15)])));
        assert_eq!(ok(&base, 104, vec![i(17), i(-2)]).1, Some(m(1, vec![(i(5), i(15)), (i(9), i(10))])));
        assert_eq!(ok(&base, 104, vec![i(16), i(-2)]).1, Some(m(0, vec![(i(5), i(15)), (i(9), i(10))])));
        assert_eq!(ok(&base, 105, vec![i(6), i(10), i(16)]).1, Some(l(vec![i(5), i(9)])));
        assert_eq!(ok(&base, 106, vec![i(6), i(0), i(2)]).1, Some(l(vec![i(4), i(9)])));
        assert_eq!(ok(&base, 106, vec![i(8), i(-1)]).1, Some(m(8, vec![(i(0), i(17))])));
        assert_eq!(ok(&base, 107, vec![i(7), l(vec![i(9), i(0), i(3)])]).1, Some(l(vec![i(17), i(10)])));
        assert_eq!(ok(&base, 108, vec![i(6), l(vec![i(2), i(10)])]).1, Some(l(vec![i(4), i(9)])));
        // Relative ranges, with the clients' documented examples.
        let rel = |k: i64, idx: i64, count: Option<i64>| {
            let mut args = vec![i(6), i(k), i(idx)];
            args.extend(count.map(i));
            ok(&base, 109, args).1
        };
        assert_eq!(rel(5, 0, None), Some(l(vec![i(5), i(9)])));
        assert_eq!(rel(5, 1, None), Some(l(vec![i(9)])));
        assert_eq!(rel(5, -1, None), Some(l(vec![i(4), i(5), i(9)])));
        assert_eq!(rel(3, 2, None), Some(l(vec![i(9)])));
        assert_eq!(rel(3, -2, None), Some(l(vec![i(0), i(4), i(5), i(9)])));
        assert_eq!(rel(5, 1, Some(2)), Some(l(vec![i(9)])));
        assert_eq!(rel(5, -1, Some(1)), Some(l(vec![i(4)])));
        assert_eq!(rel(3, -2, Some(2)), Some(l(vec![i(0)])));
        assert_eq!(ok(&base, 110, vec![i(6), i(11), i(1)]).1, Some(l(vec![i(0)])));
        assert_eq!(ok(&base, 110, vec![i(6), i(11), i(-1)]).1, Some(l(vec![i(9), i(5), i(0)])));
        assert_eq!(ok(&base, 110, vec![i(6), i(11), i(-1), i(1)]).1, Some(l(vec![i(9)])));
        // Reads on a missing bin return nothing; key/map return types are fine on maps only.
        assert_eq!(run(None, 97, vec![i(7), i(1)]).expect("read"), CdtOutcome { new_value: None, result: None });
    }

    #[test]
    fn inverted_rank_selections_answer_in_rank_order() {
        let base = m(0, vec![(s("a"), l(vec![s("bird")])), (s("b"), s("dog")), (s("c"), i(5))]);
        let want = Some(l(vec![s("dog"), l(vec![s("bird")])]));
        assert_eq!(ok(&base, 110, vec![i(0x10007), i(5), i(0), i(1)]).1, want);
        assert_eq!(ok(&base, 89, vec![i(0x10007), i(5), i(0), i(1)]).1, want);
    }

    #[test]
    fn removes() {
        let base = sample();
        let rest = |keys: &[i64]| {
            let all = [(0, 17), (4, 2), (5, 15), (9, 10)];
            m(0, all.iter().filter(|(k, _)| keys.contains(k)).map(|(k, v)| (i(*k), i(*v))).collect())
        };
        assert_eq!(ok(&base, 76, vec![i(7), i(4)]), (Some(rest(&[0, 5, 9])), Some(i(2))));
        assert_eq!(ok(&base, 76, vec![i(7), i(3)]), (None, None));
        assert_eq!(ok(&base, 77, vec![i(6), i(-1)]), (Some(rest(&[0, 4, 5])), Some(i(9))));
        assert_eq!(ok(&base, 78, vec![i(6), i(15)]), (Some(rest(&[0, 4, 9])), Some(i(5))));
        assert_eq!(ok(&base, 79, vec![i(6), i(0)]), (Some(rest(&[0, 5, 9])), Some(i(4))));
        assert_eq!(ok(&base, 81, vec![i(5), l(vec![i(0), i(9), i(7)])]), (Some(rest(&[4, 5])), Some(i(2))));
        assert_eq!(ok(&base, 82, vec![i(5), i(10)]), (Some(rest(&[0, 4, 5])), Some(i(1))));
        assert_eq!(ok(&base, 83, vec![i(0), l(vec![i(2), i(17)])]), (Some(rest(&[5, 9])), None));
        assert_eq!(ok(&base, 84, vec![i(5), i(1), i(6)]), (Some(rest(&[0, 9])), Some(i(2))));
        assert_eq!(ok(&base, 84, vec![i(0x10005), i(1), i(6)]), (Some(rest(&[4, 5])), Some(i(2))));
        assert_eq!(ok(&base, 85, vec![i(5), i(2)]), (Some(rest(&[0, 4])), Some(i(2))));
        assert_eq!(ok(&base, 86, vec![i(5), i(10), i(16)]), (Some(rest(&[0, 4])), Some(i(2))));
        assert_eq!(ok(&base, 87, vec![i(5), i(-2), i(1)]), (Some(rest(&[0, 4, 9])), Some(i(1))));
        assert_eq!(ok(&base, 88, vec![i(5), i(5), i(0)]), (Some(rest(&[0, 4])), Some(i(2))));
        assert_eq!(ok(&base, 89, vec![i(5), i(11), i(-1)]), (Some(rest(&[4])), Some(i(3))));
        assert_eq!(ok(&base, 85, vec![i(0), i(0)]), (Some(rest(&[])), None));
        assert_eq!(run(None, 76, vec![i(7), i(1)]).expect("no-op"), CdtOutcome { new_value: None, result: None });
    }

    #[test]
    fn flags_survive_and_errors() {
        let ordered = m(1, vec![(s("a"), i(1))]);
        let (new, _) = ok(&ordered, 67, vec![s("b"), i(2)]);
        assert_eq!(new, Some(m(1, vec![(s("a"), i(1)), (s("b"), i(2))])));
        let param = |r: Result<CdtOutcome, CdtError>| matches!(r, Err(CdtError::Parameter(_)));
        assert!(param(run(Some(&ordered), 97, vec![s("7"), s("a")])));
        assert!(param(run(Some(&ordered), 97, vec![i(7)])));
        assert!(param(run(Some(&ordered), 107, vec![i(7), s("a")])));
        assert!(param(run(Some(&ordered), 68, vec![l(vec![])])));
        assert!(param(run(Some(&ordered), 67, vec![s("a")])));
        assert!(param(run(Some(&ordered), 67, vec![s("a"), i(1), i(0), i(0), i(0)])));
        assert!(param(run(Some(&ordered), 71, vec![])));
        assert!(param(run(Some(&ordered), 101, vec![])));
        let list = ParticleRef { particle: 20, bytes: &[0x90] };
        assert_eq!(apply(Some(list), &op(67, vec![s("a"), i(1)]), true).unwrap_err(), CdtError::IncompatibleType);
        // An unsorted stored map is sorted (duplicates dropped, last wins) before use.
        let unsorted = m(0, vec![(s("z"), i(1)), (s("a"), i(2)), (s("z"), i(3))]);
        assert_eq!(ok(&unsorted, 104, vec![i(8), i(0)]).1, Some(m(8, vec![(s("a"), i(2)), (s("z"), i(3))])));
    }
}
