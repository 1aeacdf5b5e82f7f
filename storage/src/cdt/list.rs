//! List CDT operations (op codes 0–40): appending, inserting, setting, incrementing,
//! popping, removing, trimming, sorting and reading list elements by index, rank and value.
//!
//! Unordered lists keep insertion order; a list whose flags say ordered (flag 1) keeps its
//! elements sorted by value, appends go to their sorted place, and index-based writes
//! (insert, set) do not apply to it. Selection and result building are shared with maps in
//! `select.rs`.

use std::cmp::Ordering;

use petrel_proto::cdt::list::is_modify;
use petrel_proto::cdt::list::{
    APPEND, APPEND_ITEMS, CLEAR, GET, GET_ALL_BY_VALUE, GET_BY_INDEX, GET_BY_INDEX_RANGE, GET_BY_RANK,
    GET_BY_RANK_RANGE, GET_BY_VALUE, GET_BY_VALUE_INTERVAL, GET_BY_VALUE_LIST, GET_BY_VALUE_REL_RANK_RANGE, GET_RANGE,
    INCREMENT, INSERT, INSERT_ITEMS, POP, POP_RANGE, REMOVE, REMOVE_ALL_BY_VALUE, REMOVE_BY_INDEX,
    REMOVE_BY_INDEX_RANGE, REMOVE_BY_RANK, REMOVE_BY_RANK_RANGE, REMOVE_BY_VALUE, REMOVE_BY_VALUE_INTERVAL,
    REMOVE_BY_VALUE_LIST, REMOVE_BY_VALUE_REL_RANK_RANGE, REMOVE_RANGE, SET, SET_TYPE, SIZE, SORT, TRIM,
};
use petrel_proto::cdt::list_order;
use petrel_proto::cdt::list_sort::{DESCENDING as SORT_DESCENDING, DROP_DUPLICATES as SORT_DROP_DUPLICATES};
use petrel_proto::cdt::list_write::{ADD_UNIQUE, INSERT_BOUNDED, NO_FAIL, PARTIAL};
use petrel_proto::cdt::{ReturnType, PERSIST_INDEX};
use petrel_proto::msgpack::MsgValue;

use crate::cdt::args::{Args, Delta};
use crate::cdt::order::{cmp_total, cmp_values};
use crate::cdt::select::{
    build_result, int_particle, range_index, remove_selected, single_index, ReturnSpec, Selection, View,
};
use crate::cdt::stored::{join_list_marker, split_list_marker};
use crate::cdt::{particle_from_msgpack, CdtError, Exec, Particle, PAD_MAX};

/// A list's order flags and elements.
#[derive(Debug)]
struct ListVal {
    flags: u8,
    items: Vec<MsgValue>,
}

impl ListVal {
    fn ordered(&self) -> bool {
        self.flags & list_order::ORDERED != 0
    }
}

/// Runs list op `code` on `slot`. `missing`: the list does not exist yet (`slot` is a
/// placeholder), so ops that add create it and the others do nothing.
pub(crate) fn run(slot: &mut MsgValue, missing: bool, code: i64, args: &mut Args) -> Result<Exec, CdtError> {
    let modify = is_modify(code).unwrap_or(false);
    if missing {
        if !modify {
            return Ok(Exec::untouched());
        }
        let flags = match code {
            APPEND | APPEND_ITEMS => args.opt_uint(1, 0)? & u64::from(list_order::ORDERED),
            INCREMENT => args.opt_uint(2, 0)? & u64::from(list_order::ORDERED),
            SET_TYPE | INSERT | INSERT_ITEMS | SET => 0,
            SORT => return Err(CdtError::IncompatibleType),
            _ => return Ok(Exec::untouched()),
        };
        *slot = MsgValue::List(join_list_marker(flags as u8, Vec::new()));
    }
    let MsgValue::List(raw) = slot else {
        return Err(CdtError::IncompatibleType);
    };
    let (flags, items) = split_list_marker(std::mem::take(raw));
    let mut list = ListVal { flags, items };
    let out = exec(&mut list, code, args);
    *raw = join_list_marker(list.flags, list.items);
    Ok(Exec { result: out?, touched: modify })
}

fn exec(list: &mut ListVal, code: i64, args: &mut Args) -> Result<Option<Particle>, CdtError> {
    let n = list.items.len();
    let remove = is_modify(code).unwrap_or(false);
    match code {
        SET_TYPE => {
            args.count(1, 1)?;
            let f = args.uint(0)?;
            // The persisted-index bit is accepted and has no meaning in memory.
            let ordered = u64::from(list_order::ORDERED);
            if f & !(ordered | PERSIST_INDEX) != 0 {
                return Err(CdtError::NotApplicable("invalid list flags"));
            }
            let f = (f & ordered) as u8;
            if f == list_order::ORDERED && !list.ordered() {
                list.items.sort_by(cmp_total);
            }
            list.flags = f;
            Ok(None)
        }
        APPEND | APPEND_ITEMS => {
            args.count(1, 3)?;
            args.opt_uint(1, 0)?;
            let mf = args.opt_uint(2, 0)?;
            let items = if code == APPEND { vec![args.storage_value(0)?] } else { args.storage_list(0)? };
            add(list, None, items, mf)
        }
        INSERT | INSERT_ITEMS => {
            args.count(2, 3)?;
            let index = args.index(0)?;
            let mf = args.opt_uint(2, 0)?;
            let items = if code == INSERT { vec![args.storage_value(1)?] } else { args.storage_list(1)? };
            if list.ordered() {
                return Err(CdtError::NotApplicable("insert into an ordered list"));
            }
            add(list, Some(index), items, mf)
        }
        POP | REMOVE => {
            args.count(1, 1)?;
            let sel = View::List(&list.items).by_index(args.index(0)?, 1, false)?;
            let kind = if code == POP { ReturnType::Value } else { ReturnType::Count };
            finish(list, sel, false, ReturnSpec::plain(kind), true)
        }
        POP_RANGE | REMOVE_RANGE => {
            args.count(1, 2)?;
            let sel = View::List(&list.items).by_index(args.index(0)?, args.opt_count(1)?, true)?;
            let kind = if code == POP_RANGE { ReturnType::Value } else { ReturnType::Count };
            finish(list, sel, true, ReturnSpec::plain(kind), true)
        }
        SET => {
            args.count(2, 3)?;
            let index = args.index(0)?;
            let mf = args.opt_uint(2, 0)?;
            let v = args.storage_value(1)?;
            set(list, index, v, mf)?;
            Ok(None)
        }
        TRIM => {
            args.count(2, 2)?;
            let (start, count) = range_index(args.index(0)?, args.uint(1)?, n);
            list.items.truncate(start + count);
            list.items.drain(..start.min(list.items.len()));
            Ok(Some(int_particle(n - list.items.len())))
        }
        CLEAR => {
            list.items.clear();
            Ok(None)
        }
        INCREMENT => {
            args.count(1, 4)?;
            let index = args.index(0)?;
            let delta = Delta::parse(args.opt_value(1), false)?;
            args.opt_uint(2, 0)?;
            let mf = args.opt_uint(3, 0)?;
            increment(list, index, delta, mf)
        }
        SORT => {
            args.count(1, 1)?;
            sort(list, args.uint(0)?);
            Ok(None)
        }
        SIZE => Ok(Some(int_particle(n))),
        GET => {
            args.count(1, 1)?;
            let sel = View::List(&list.items).by_index(args.index(0)?, 1, false)?;
            finish(list, sel, false, ReturnSpec::plain(ReturnType::Value), false)
        }
        GET_RANGE => {
            args.count(1, 2)?;
            let sel = View::List(&list.items).by_index(args.index(0)?, args.opt_count(1)?, true)?;
            finish(list, sel, true, ReturnSpec::plain(ReturnType::Value), false)
        }
        GET_BY_INDEX | REMOVE_BY_INDEX | GET_BY_RANK | REMOVE_BY_RANK => {
            args.count(2, 2)?;
            let rt = single_return_type(args)?;
            let view = View::List(&list.items);
            let sel = if code == GET_BY_INDEX || code == REMOVE_BY_INDEX {
                view.by_index(args.index(1)?, 1, false)?
            } else {
                view.by_rank(args.index(1)?, 1, false)?
            };
            finish(list, sel, false, rt, remove)
        }
        GET_BY_VALUE | REMOVE_BY_VALUE => {
            args.count(2, 2)?;
            let rt = single_return_type(args)?;
            let sel = View::List(&list.items).by_value(args.value(1)?, false);
            finish(list, sel, false, rt, remove)
        }
        GET_ALL_BY_VALUE | REMOVE_ALL_BY_VALUE => {
            args.count(2, 2)?;
            let rt = multi_return_type(args)?;
            let sel = View::List(&list.items).by_value(args.value(1)?, true);
            finish(list, sel.apply_inverted(rt, &View::List(&list.items)), true, rt, remove)
        }
        GET_BY_VALUE_LIST | REMOVE_BY_VALUE_LIST => {
            args.count(2, 2)?;
            let rt = multi_return_type(args)?;
            let sel = View::List(&list.items).by_value_list(args.list(1)?);
            finish(list, sel.apply_inverted(rt, &View::List(&list.items)), true, rt, remove)
        }
        GET_BY_INDEX_RANGE | REMOVE_BY_INDEX_RANGE | GET_BY_RANK_RANGE | REMOVE_BY_RANK_RANGE => {
            args.count(2, 3)?;
            let rt = multi_return_type(args)?;
            let (start, count) = (args.index(1)?, args.opt_count(2)?);
            let view = View::List(&list.items);
            let sel = if code == GET_BY_INDEX_RANGE || code == REMOVE_BY_INDEX_RANGE {
                view.by_index(start, count, true)?
            } else if heap_order(list, rt) {
                view.by_rank_heap(start, count)?
            } else {
                view.by_rank(start, count, true)?
            };
            finish(list, sel.apply_inverted(rt, &View::List(&list.items)), true, rt, remove)
        }
        GET_BY_VALUE_INTERVAL | REMOVE_BY_VALUE_INTERVAL => {
            args.count(2, 3)?;
            let rt = multi_return_type(args)?;
            let sel = View::List(&list.items).by_value_interval(args.value(1)?, args.opt_value(2));
            finish(list, sel.apply_inverted(rt, &View::List(&list.items)), true, rt, remove)
        }
        GET_BY_VALUE_REL_RANK_RANGE | REMOVE_BY_VALUE_REL_RANK_RANGE => {
            args.count(3, 4)?;
            let rt = multi_return_type(args)?;
            let view = View::List(&list.items);
            let (value, rank, count) = (args.value(1)?, args.index(2)?, args.opt_count(3)?);
            let sel = if heap_order(list, rt) {
                view.by_value_rel_rank_heap(value, rank, count)?
            } else {
                view.by_value_rel_rank(value, rank, count)?
            };
            finish(list, sel.apply_inverted(rt, &View::List(&list.items)), true, rt, remove)
        }
        _ => Err(CdtError::Parameter("unknown list op code")),
    }
}

/// Whether a rank range's values come in Aerospike's heap order: on an unordered list, unless
/// inverted (an inverted selection, like an ordered list's range, answers by position).
fn heap_order(list: &ListVal, rt: ReturnSpec) -> bool {
    !list.ordered() && !rt.inverted
}

fn single_return_type(args: &Args) -> Result<ReturnSpec, CdtError> {
    let rt = ReturnSpec::parse(args.uint(0)?, false)?;
    if rt.inverted {
        return Err(CdtError::NotApplicable("inverted flag on a single-element op"));
    }
    Ok(rt)
}

fn multi_return_type(args: &Args) -> Result<ReturnSpec, CdtError> {
    ReturnSpec::parse(args.uint(0)?, false)
}

/// Builds the op's result from the selection, then removes the selection if asked.
fn finish(
    list: &mut ListVal,
    sel: Selection,
    multi: bool,
    rt: ReturnSpec,
    remove: bool,
) -> Result<Option<Particle>, CdtError> {
    // Aerospike answers a list remove by rank in index order (a heap-ordered range keeps its
    // order: Aerospike reads removed values back the same way).
    let sel = if remove { sel.into_index_order() } else { sel };
    let result = build_result(View::List(&list.items), &sel, multi, rt)?;
    if remove {
        remove_selected(&mut list.items, &sel);
    }
    Ok(result)
}

fn exists_or_ok(mf: u64, n: usize) -> Result<Option<Particle>, CdtError> {
    if mf & NO_FAIL != 0 {
        Ok(Some(int_particle(n)))
    } else {
        Err(CdtError::ElementExists)
    }
}

/// Position after the last element not greater than `v` in a sorted list.
fn upper_bound(items: &[MsgValue], v: &MsgValue) -> usize {
    items.partition_point(|x| cmp_total(x, v) != Ordering::Greater)
}

/// For each item, whether an equal item comes before it.
fn earlier_duplicates(items: &[MsgValue]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    let cmp_at = |a: usize, b: usize| match (items.get(a), items.get(b)) {
        (Some(x), Some(y)) => cmp_total(x, y),
        _ => Ordering::Equal,
    };
    order.sort_by(|&a, &b| cmp_at(a, b).then(a.cmp(&b)));
    let mut dup = vec![false; items.len()];
    for w in order.windows(2) {
        if let [a, b] = w {
            if cmp_at(*a, *b) == Ordering::Equal {
                if let Some(d) = dup.get_mut(*b) {
                    *d = true;
                }
            }
        }
    }
    dup
}

/// Appends (`index` None) or inserts `items`, honouring the write flags. Returns the new size.
fn add(list: &mut ListVal, index: Option<i64>, items: Vec<MsgValue>, mf: u64) -> Result<Option<Particle>, CdtError> {
    let n = list.items.len();
    if items.is_empty() {
        return Ok(Some(int_particle(n)));
    }
    let no_fail = mf & NO_FAIL != 0;
    let partial = no_fail && mf & PARTIAL != 0;
    let at = match index {
        None => n,
        Some(index) => {
            let i = write_position(index, n)?;
            if mf & INSERT_BOUNDED != 0 && i > n {
                if no_fail {
                    return Ok(Some(int_particle(n)));
                }
                return Err(CdtError::NotApplicable("insert beyond the end of a bounded list"));
            }
            i
        }
    };
    let items = if mf & ADD_UNIQUE != 0 {
        let mut present: Vec<&MsgValue> = list.items.iter().collect();
        present.sort_by(|a, b| cmp_total(a, b));
        let dups = earlier_duplicates(&items);
        let mut kept = Vec::with_capacity(items.len());
        for (item, dup) in items.into_iter().zip(dups) {
            if present.binary_search_by(|p| cmp_total(p, &item)).is_ok() {
                if partial {
                    continue;
                }
                return exists_or_ok(mf, n);
            }
            if dup {
                if !no_fail {
                    return Err(CdtError::NotApplicable("unique add of repeated values"));
                }
                if !partial {
                    return Ok(Some(int_particle(n)));
                }
                continue;
            }
            kept.push(item);
        }
        if kept.is_empty() {
            return exists_or_ok(mf, n);
        }
        kept
    } else {
        items
    };
    if list.ordered() {
        if items.len() == 1 {
            for item in items {
                let p = upper_bound(&list.items, &item);
                list.items.insert(p, item);
            }
        } else {
            list.items.extend(items);
            list.items.sort_by(cmp_total);
        }
    } else {
        if at > n {
            let pad = at - n;
            if pad > PAD_MAX {
                return Err(CdtError::NotApplicable("list index too far beyond the end"));
            }
            list.items.extend(std::iter::repeat_n(MsgValue::Nil, pad));
        }
        let at = at.min(list.items.len());
        list.items.splice(at..at, items);
    }
    Ok(Some(int_particle(list.items.len())))
}

/// Sets the element at `index`; beyond the end it is an insert (padding with nils).
fn set(list: &mut ListVal, index: i64, v: MsgValue, mf: u64) -> Result<(), CdtError> {
    if list.ordered() {
        return Err(CdtError::NotApplicable("set in an ordered list"));
    }
    let n = list.items.len();
    if index >= n as i64 {
        return add(list, Some(index), vec![v], mf).map(|_| ());
    }
    let i = single_index(index, n).ok_or(CdtError::NotApplicable("list index out of range"))?;
    if mf & ADD_UNIQUE != 0 {
        let elsewhere = list.items.iter().enumerate().any(|(j, x)| j != i && cmp_values(x, &v) == Ordering::Equal);
        if elsewhere {
            return exists_or_ok(mf, n).map(|_| ());
        }
    }
    if let Some(slot) = list.items.get_mut(i) {
        *slot = v;
    }
    Ok(())
}

/// The position a write at `index` addresses in a list of `n` elements: negative indexes
/// count from the end; a position past the end is allowed (the list is padded) up to
/// `i32::MAX`, a negative one before the start is not.
fn write_position(index: i64, n: usize) -> Result<usize, CdtError> {
    let i = if index < 0 { n as i64 + index } else { index };
    if !(0..=i64::from(i32::MAX)).contains(&i) {
        return Err(CdtError::NotApplicable("list index out of range"));
    }
    Ok(i as usize)
}

/// Adds `delta` to the number at `index` (beyond the end: the delta itself is set there).
fn increment(list: &mut ListVal, index: i64, delta: Delta, mf: u64) -> Result<Option<Particle>, CdtError> {
    let n = list.items.len();
    let i = write_position(index, n)?;
    let new = delta.add_to(list.items.get(i))?;
    let result = particle_from_msgpack(&new);
    if list.ordered() {
        if i < n {
            list.items.remove(i);
        }
        let p = upper_bound(&list.items, &new);
        list.items.insert(p, new);
    } else {
        set(list, i as i64, new, mf)?;
    }
    Ok(Some(result))
}

fn sort(list: &mut ListVal, flags: u64) {
    if !list.ordered() {
        if flags & SORT_DESCENDING != 0 {
            list.items.sort_by(|a, b| cmp_total(b, a));
        } else {
            list.items.sort_by(cmp_total);
        }
    }
    if flags & SORT_DROP_DUPLICATES != 0 {
        list.items.dedup_by(|a, b| cmp_total(a, b) == Ordering::Equal);
    }
}

#[cfg(test)]
mod tests {
    use petrel_proto::msgpack::{self, MsgValue};

    use crate::cdt::tests::{i, l, op, s};
    use crate::cdt::{apply, msgpack_from_particle, CdtError, CdtOutcome, ParticleRef};

    fn run(list: Option<&MsgValue>, code: i64, args: Vec<MsgValue>) -> Result<CdtOutcome, CdtError> {
        let bytes = list.map(msgpack::to_vec);
        let existing = bytes.as_deref().map(|b| ParticleRef { particle: 20, bytes: b });
        apply(existing, &op(code, args), true)
    }

    /// Runs an op and returns (new list or None if unchanged, result as msgpack or None).
    fn ok(list: &MsgValue, code: i64, args: Vec<MsgValue>) -> (Option<MsgValue>, Option<MsgValue>) {
        let out = run(Some(list), code, args).expect("op succeeds");
        decode_outcome(out)
    }

    fn decode_outcome(out: CdtOutcome) -> (Option<MsgValue>, Option<MsgValue>) {
        let new = out.new_value.map(|p| {
            let p = p.expect("bin stays");
            assert_eq!(p.particle, 20);
            msgpack::decode(&p.bytes).expect("valid list")
        });
        let result = out.result.map(|p| {
            msgpack_from_particle(ParticleRef { particle: p.particle, bytes: &p.bytes }).expect("valid result")
        });
        (new, result)
    }

    fn sample() -> MsgValue {
        l(vec![i(5), i(1), i(9), i(3), i(1)])
    }

    #[test]
    fn append_and_insert_variants() {
        let base = l(vec![i(1), i(2)]);
        assert_eq!(ok(&base, 1, vec![i(3)]), (Some(l(vec![i(1), i(2), i(3)])), Some(i(3))));
        assert_eq!(ok(&base, 2, vec![l(vec![i(3), i(4)])]), (Some(l(vec![i(1), i(2), i(3), i(4)])), Some(i(4))));
        assert_eq!(ok(&base, 3, vec![i(0), s("x")]), (Some(l(vec![s("x"), i(1), i(2)])), Some(i(3))));
        assert_eq!(ok(&base, 3, vec![i(-1), s("x")]).0, Some(l(vec![i(1), s("x"), i(2)])));
        assert_eq!(ok(&base, 4, vec![i(1), l(vec![i(7), i(8)])]).0, Some(l(vec![i(1), i(7), i(8), i(2)])));
        // Beyond the end pads with nils; bounded refuses.
        assert_eq!(ok(&base, 3, vec![i(4), i(9)]).0, Some(l(vec![i(1), i(2), MsgValue::Nil, MsgValue::Nil, i(9)])));
        assert_eq!(
            run(Some(&base), 3, vec![i(4), i(9), i(2)]).unwrap_err(),
            CdtError::NotApplicable("insert beyond the end of a bounded list")
        );
        assert_eq!(ok(&base, 3, vec![i(4), i(9), i(6)]), (None, Some(i(2))));
        assert!(matches!(run(Some(&base), 3, vec![i(-3), i(9)]), Err(CdtError::NotApplicable(_))));
        // Append to a missing bin creates the list.
        let out = run(None, 1, vec![s("a")]).expect("creates");
        assert_eq!(decode_outcome(out), (Some(l(vec![s("a")])), Some(i(1))));
        // Empty items change nothing.
        assert_eq!(ok(&base, 2, vec![l(vec![])]), (None, Some(i(2))));
    }

    #[test]
    fn unique_flags() {
        let base = l(vec![i(1), i(2)]);
        assert_eq!(run(Some(&base), 1, vec![i(2), i(0), i(1)]).unwrap_err(), CdtError::ElementExists);
        assert_eq!(ok(&base, 1, vec![i(2), i(0), i(1 | 4)]), (None, Some(i(2))));
        assert_eq!(
            ok(&base, 2, vec![l(vec![i(2), i(3)]), i(0), i(1 | 4 | 8)]),
            (Some(l(vec![i(1), i(2), i(3)])), Some(i(3)))
        );
        assert_eq!(
            run(Some(&base), 2, vec![l(vec![i(3), i(3)]), i(0), i(1)]).unwrap_err(),
            CdtError::NotApplicable("unique add of repeated values")
        );
        assert_eq!(run(Some(&base), 9, vec![i(0), i(2), i(1)]).unwrap_err(), CdtError::ElementExists);
        assert_eq!(ok(&base, 9, vec![i(1), i(2), i(1)]).0, None);
    }

    #[test]
    fn pop_remove_trim_clear() {
        let base = sample();
        assert_eq!(ok(&base, 5, vec![i(-1)]), (Some(l(vec![i(5), i(1), i(9), i(3)])), Some(i(1))));
        assert_eq!(ok(&base, 6, vec![i(1), i(2)]), (Some(l(vec![i(5), i(3), i(1)])), Some(l(vec![i(1), i(9)]))));
        assert_eq!(ok(&base, 6, vec![i(3)]).1, Some(l(vec![i(3), i(1)])));
        assert_eq!(ok(&base, 7, vec![i(0)]), (Some(l(vec![i(1), i(9), i(3), i(1)])), Some(i(1))));
        assert_eq!(ok(&base, 8, vec![i(-2)]), (Some(l(vec![i(5), i(1), i(9)])), Some(i(2))));
        assert_eq!(ok(&base, 8, vec![i(10), i(3)]), (None, Some(i(0))));
        assert_eq!(ok(&base, 10, vec![i(1), i(2)]), (Some(l(vec![i(1), i(9)])), Some(i(3))));
        assert_eq!(ok(&base, 10, vec![i(7), i(2)]), (Some(l(vec![])), Some(i(5))));
        assert_eq!(ok(&base, 11, vec![]), (Some(l(vec![])), None));
        assert!(matches!(run(Some(&base), 5, vec![i(5)]), Err(CdtError::NotApplicable(_))));
        assert!(matches!(run(Some(&base), 7, vec![i(-6)]), Err(CdtError::NotApplicable(_))));
        // Removing from a missing bin does nothing.
        assert_eq!(run(None, 7, vec![i(0)]).expect("no-op"), CdtOutcome { new_value: None, result: None });
        assert_eq!(run(None, 11, vec![]).expect("no-op").new_value, None);
    }

    #[test]
    fn set_increment_sort_set_type() {
        let base = sample();
        assert_eq!(ok(&base, 9, vec![i(1), s("z")]), (Some(l(vec![i(5), s("z"), i(9), i(3), i(1)])), None));
        assert_eq!(ok(&base, 9, vec![i(6), i(0)]).0.map(|v| msgpack::to_vec(&v).len()), Some(8));
        assert!(matches!(run(Some(&base), 9, vec![i(-9), i(0)]), Err(CdtError::NotApplicable(_))));
        assert_eq!(ok(&base, 12, vec![i(2)]).1, Some(i(10)));
        assert_eq!(ok(&base, 12, vec![i(0), i(-7)]), (Some(l(vec![i(-2), i(1), i(9), i(3), i(1)])), Some(i(-2))));
        assert_eq!(ok(&base, 12, vec![i(0), MsgValue::Float(0.5)]).1, Some(i(5)));
        assert_eq!(ok(&l(vec![MsgValue::Float(1.5)]), 12, vec![i(0), i(2)]).1, Some(MsgValue::Float(3.5)));
        assert_eq!(
            run(Some(&l(vec![s("x")])), 12, vec![i(0)]).unwrap_err(),
            CdtError::Parameter("value to increment is not a number")
        );
        assert_eq!(decode_outcome(run(None, 12, vec![i(0), i(4)]).expect("creates")).0, Some(l(vec![i(4)])));
        assert_eq!(ok(&base, 13, vec![i(0)]).0, Some(l(vec![i(1), i(1), i(3), i(5), i(9)])));
        assert_eq!(ok(&base, 13, vec![i(3)]).0, Some(l(vec![i(9), i(5), i(3), i(1)])));
        assert_eq!(run(None, 13, vec![i(0)]).unwrap_err(), CdtError::IncompatibleType);
        // Ordered lists keep sorted order on append and refuse index writes.
        let (ordered, _) = ok(&base, 0, vec![i(1)]);
        let ordered = ordered.expect("changed");
        let marker = MsgValue::Ext(1, Vec::new());
        assert_eq!(ordered, l(vec![marker.clone(), i(1), i(1), i(3), i(5), i(9)]));
        assert_eq!(ok(&ordered, 1, vec![i(4)]).0, Some(l(vec![marker.clone(), i(1), i(1), i(3), i(4), i(5), i(9)])));
        assert_eq!(
            ok(&ordered, 2, vec![l(vec![i(10), i(0)])]).0,
            Some(l(vec![marker.clone(), i(0), i(1), i(1), i(3), i(5), i(9), i(10)]))
        );
        assert!(matches!(run(Some(&ordered), 3, vec![i(0), i(4)]), Err(CdtError::NotApplicable(_))));
        assert!(matches!(run(Some(&ordered), 9, vec![i(0), i(4)]), Err(CdtError::NotApplicable(_))));
        assert_eq!(ok(&ordered, 12, vec![i(0), i(20)]).0, Some(l(vec![marker, i(1), i(3), i(5), i(9), i(21)])));
        assert_eq!(ok(&ordered, 0, vec![i(0)]).0, Some(l(vec![i(1), i(1), i(3), i(5), i(9)])));
        assert!(matches!(run(Some(&base), 0, vec![i(2)]), Err(CdtError::NotApplicable(_))));
    }

    #[test]
    fn reads() {
        let base = sample();
        assert_eq!(ok(&base, 16, vec![]).1, Some(i(5)));
        assert_eq!(ok(&base, 17, vec![i(-2)]).1, Some(i(3)));
        assert!(matches!(run(Some(&base), 17, vec![i(5)]), Err(CdtError::NotApplicable(_))));
        assert_eq!(ok(&base, 18, vec![i(3)]).1, Some(l(vec![i(3), i(1)])));
        assert_eq!(ok(&base, 18, vec![i(-7), i(3)]).1, Some(l(vec![i(5)])));
        assert_eq!(ok(&base, 18, vec![i(9), i(3)]).1, Some(l(vec![])));
        // By index with each return type.
        assert_eq!(ok(&base, 19, vec![i(7), i(2)]).1, Some(i(9)));
        assert_eq!(ok(&base, 19, vec![i(1), i(2)]).1, Some(i(2)));
        assert_eq!(ok(&base, 19, vec![i(2), i(2)]).1, Some(i(2)));
        assert_eq!(ok(&base, 19, vec![i(3), i(2)]).1, Some(i(4)));
        assert_eq!(ok(&base, 19, vec![i(4), i(2)]).1, Some(i(0)));
        assert_eq!(ok(&base, 19, vec![i(5), i(2)]).1, Some(i(1)));
        assert_eq!(ok(&base, 19, vec![i(13), i(2)]).1, Some(MsgValue::Bool(true)));
        assert_eq!(ok(&base, 19, vec![i(0), i(2)]).1, None);
        assert!(matches!(run(Some(&base), 19, vec![i(6), i(2)]), Err(CdtError::NotApplicable(_))));
        assert!(matches!(run(Some(&base), 19, vec![i(8), i(2)]), Err(CdtError::NotApplicable(_))));
        assert!(matches!(run(Some(&base), 19, vec![i(0x10007), i(2)]), Err(CdtError::NotApplicable(_))));
        // By value, rank, value list, intervals, relative rank.
        assert_eq!(ok(&base, 20, vec![i(1), i(1)]).1, Some(i(1)));
        assert_eq!(ok(&base, 22, vec![i(1), i(1)]).1, Some(l(vec![i(1), i(4)])));
        assert_eq!(ok(&base, 22, vec![i(5), i(7)]).1, Some(i(0)));
        assert_eq!(ok(&base, 21, vec![i(7), i(-1)]).1, Some(i(9)));
        assert_eq!(ok(&base, 21, vec![i(7), i(2)]).1, Some(i(3)));
        assert_eq!(ok(&base, 23, vec![i(7), l(vec![i(9), i(1)])]).1, Some(l(vec![i(1), i(9), i(1)])));
        assert_eq!(ok(&base, 24, vec![i(7), i(1), i(2)]).1, Some(l(vec![i(1), i(9)])));
        assert_eq!(ok(&base, 24, vec![i(0x10007), i(1), i(2)]).1, Some(l(vec![i(5), i(3), i(1)])));
        assert_eq!(ok(&base, 25, vec![i(7), i(2), i(6)]).1, Some(l(vec![i(5), i(3)])));
        assert_eq!(ok(&base, 25, vec![i(7), i(4)]).1, Some(l(vec![i(5), i(9)])));
        assert_eq!(ok(&base, 26, vec![i(7), i(0), i(3)]).1, Some(l(vec![i(3), i(1), i(1)])));
        assert_eq!(ok(&base, 26, vec![i(3), i(-2)]).1, Some(l(vec![i(3), i(4)])));
        assert_eq!(ok(&base, 26, vec![i(1), i(-2)]).1, Some(l(vec![i(0), i(2)])));
        // Ordered [0,4,5,9,11,15] examples from the client docs (op 0: set the order flag).
        let o = ok(&l(vec![i(0), i(4), i(5), i(9), i(11), i(15)]), 0, vec![i(1)]).0.expect("ordered");
        assert_eq!(ok(&o, 27, vec![i(7), i(5), i(-1)]).1, Some(l(vec![i(4), i(5), i(9), i(11), i(15)])));
        assert_eq!(ok(&o, 27, vec![i(7), i(3), i(3)]).1, Some(l(vec![i(11), i(15)])));
        assert_eq!(ok(&o, 27, vec![i(7), i(3), i(-3), i(2)]).1, Some(l(vec![])));
        assert_eq!(ok(&o, 27, vec![i(7), i(5), i(-1), i(2)]).1, Some(l(vec![i(4), i(5)])));
        // Read on a missing bin returns nothing; map return types do not apply to lists.
        assert_eq!(run(None, 16, vec![]).expect("read"), CdtOutcome { new_value: None, result: None });
        assert!(matches!(run(Some(&base), 24, vec![i(8), i(0)]), Err(CdtError::NotApplicable(_))));
    }

    #[test]
    fn removes_by_selector() {
        let base = sample();
        assert_eq!(ok(&base, 32, vec![i(7), i(0)]), (Some(l(vec![i(1), i(9), i(3), i(1)])), Some(i(5))));
        assert_eq!(ok(&base, 33, vec![i(1), i(1)]), (Some(l(vec![i(5), i(9), i(3), i(1)])), Some(i(1))));
        assert_eq!(ok(&base, 34, vec![i(7), i(-1)]), (Some(l(vec![i(5), i(1), i(3), i(1)])), Some(i(9))));
        assert_eq!(ok(&base, 35, vec![i(5), i(1)]), (Some(l(vec![i(5), i(9), i(3)])), Some(i(2))));
        assert_eq!(ok(&base, 35, vec![i(5), i(4)]), (None, Some(i(0))));
        assert_eq!(ok(&base, 36, vec![i(0), l(vec![i(5), i(3)])]), (Some(l(vec![i(1), i(9), i(1)])), None));
        assert_eq!(ok(&base, 37, vec![i(5), i(-2)]), (Some(l(vec![i(5), i(1), i(9)])), Some(i(2))));
        assert_eq!(ok(&base, 38, vec![i(7), i(3), i(9)]), (Some(l(vec![i(1), i(9), i(1)])), Some(l(vec![i(5), i(3)]))));
        assert_eq!(ok(&base, 39, vec![i(7), i(0), i(2)]), (Some(l(vec![i(5), i(9), i(3)])), Some(l(vec![i(1), i(1)]))));
        assert_eq!(
            ok(&base, 39, vec![i(0x10007), i(0), i(2)]),
            (Some(l(vec![i(1), i(1)])), Some(l(vec![i(5), i(9), i(3)])))
        );
        assert_eq!(ok(&base, 40, vec![i(5), i(4), i(1)]), (Some(l(vec![i(5), i(1), i(3), i(1)])), Some(i(1))));
        assert_eq!(ok(&base, 40, vec![i(5), i(4), i(0), i(1)]), (Some(l(vec![i(1), i(9), i(3), i(1)])), Some(i(1))));
        assert_eq!(run(None, 35, vec![i(5), i(1)]).expect("no-op").new_value, None);
        assert_eq!(ok(&l(vec![i(1)]), 32, vec![i(0), i(0)]).0, Some(l(vec![])));
    }

    #[test]
    fn result_orders_follow_aerospike() {
        let base = l(vec![i(7), i(6), i(5), i(8), i(9), i(10)]);
        // Get and remove by rank range answer an unordered list's values in heap order.
        assert_eq!(ok(&base, 26, vec![i(7), i(0), i(3)]).1, Some(l(vec![i(7), i(6), i(5)])));
        assert_eq!(
            ok(&base, 39, vec![i(7), i(0), i(3)]),
            (Some(l(vec![i(8), i(9), i(10)])), Some(l(vec![i(7), i(6), i(5)])))
        );
        // An inverted rank range answers ranks ascending.
        let words = l(vec![s("how"), s("are"), l(vec![s("you")])]);
        assert_eq!(ok(&words, 39, vec![i(0x10003), i(2), i(2)]).1, Some(l(vec![i(0), i(1)])));
        assert_eq!(ok(&words, 26, vec![i(0x10007), i(2), i(2)]).1, Some(l(vec![s("are"), s("how")])));
        // By value list: ranks in the order of the values asked for, values in index order.
        let pair = l(vec![s("numbers"), l(vec![i(1), i(2), i(3)])]);
        let asked = l(vec![l(vec![i(1), i(2), i(3)]), s("numbers")]);
        assert_eq!(ok(&pair, 23, vec![i(3), asked.clone()]).1, Some(l(vec![i(1), i(0)])));
        assert_eq!(ok(&pair, 23, vec![i(7), asked.clone()]).1, Some(pair.clone()));
        assert_eq!(ok(&pair, 36, vec![i(3), asked]), (Some(l(vec![])), Some(l(vec![i(1), i(0)]))));
    }

    #[test]
    fn unordered_rank_ranges_answer_values_in_heap_order() {
        // Value 7 (return type), rank ranges of [26, 27, 28, x] as Aerospike answers them.
        let list = l(vec![i(26), i(27), i(28), i(3)]);
        // Nearer the low end: highest rank first.
        assert_eq!(ok(&list, 27, vec![i(7), i(26), i(0), i(2)]).1, Some(l(vec![i(27), i(26)])));
        assert_eq!(ok(&list, 26, vec![i(7), i(0), i(3)]).1, Some(l(vec![i(27), i(26), i(3)])));
        // Nearer the high end: lowest rank first.
        assert_eq!(ok(&list, 27, vec![i(7), i(2), i(2), i(2)]).1, Some(l(vec![i(27), i(28)])));
        assert_eq!(ok(&list, 26, vec![i(7), i(2)]).1, Some(l(vec![i(27), i(28)])));
        // Removing answers the same way; ranks are ascending whatever the order.
        let six = l(vec![i(7), i(6), i(5), i(8), i(9), i(10)]);
        assert_eq!(ok(&six, 39, vec![i(7), i(0), i(3)]).1, Some(l(vec![i(7), i(6), i(5)])));
        assert_eq!(ok(&six, 26, vec![i(3), i(0), i(3)]).1, Some(l(vec![i(0), i(1), i(2)])));
        // An ordered list answers by position.
        let (sorted, _) = ok(&list, 13, vec![i(0)]);
        let ordered = ok(&sorted.expect("sorted"), 0, vec![i(1)]).0.expect("ordered");
        assert_eq!(ok(&ordered, 26, vec![i(7), i(0), i(2)]).1, Some(l(vec![i(3), i(26)])));
    }

    #[test]
    fn argument_and_type_errors() {
        let base = sample();
        let param = |r: Result<CdtOutcome, CdtError>| matches!(r, Err(CdtError::Parameter(_)));
        assert!(param(run(Some(&base), 17, vec![s("0")])));
        assert!(param(run(Some(&base), 17, vec![])));
        assert!(param(run(Some(&base), 17, vec![i(0), i(1)])));
        assert!(param(run(Some(&base), 2, vec![i(1)])));
        assert!(param(run(Some(&base), 23, vec![i(7), i(1)])));
        assert!(param(run(Some(&base), 1, vec![MsgValue::Ext(-1, vec![1])])));
        assert!(param(run(Some(&base), 14, vec![])));
        let bytes = msgpack::to_vec(&base);
        let map = ParticleRef { particle: 19, bytes: &[0x80] };
        assert_eq!(apply(Some(map), &op(1, vec![i(1)]), true).unwrap_err(), CdtError::IncompatibleType);
        let int = ParticleRef { particle: 1, bytes: &[0, 0, 0, 0, 0, 0, 0, 1] };
        assert_eq!(apply(Some(int), &op(16, vec![]), false).unwrap_err(), CdtError::IncompatibleType);
        let list = ParticleRef { particle: 20, bytes: &bytes };
        assert!(param(apply(Some(list), &op(1, vec![i(1)]), false)));
        assert!(apply(Some(list), &op(16, vec![]), false).is_ok());
    }
}
