//! Selecting elements and answering for them: index/rank arithmetic (negative from the end,
//! ranges clamped), the return-type argument ([`ReturnSpec`]), selections over a list's or
//! map's elements ([`View`], [`Selection`]), results built by return type
//! ([`build_result`]) and removal of what was selected ([`remove_selected`]).

use std::cmp::Ordering;

use petrel_proto::cdt::{map_order, ReturnType, RETURN_INVERTED};
use petrel_proto::msgpack::{MsgMap, MsgValue};

use crate::cdt::order::{cmp_total, cmp_values, in_interval, ValueSet};
use crate::cdt::{particle_from_msgpack, CdtError, Particle};

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

/// A decoded return-type argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReturnSpec {
    pub(crate) kind: ReturnType,
    pub(crate) inverted: bool,
}

impl ReturnSpec {
    pub(crate) fn plain(kind: ReturnType) -> ReturnSpec {
        ReturnSpec { kind, inverted: false }
    }

    /// Decodes a return-type argument; `is_map` allows the key and map return types.
    pub(crate) fn parse(v: u64, is_map: bool) -> Result<ReturnSpec, CdtError> {
        let kind = ReturnType::from_code(v)
            .filter(|kind| is_map || !kind.is_map_only())
            .ok_or(CdtError::NotApplicable("return type not supported"))?;
        Ok(ReturnSpec { kind, inverted: v & RETURN_INVERTED != 0 })
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
    /// By a list of values: values in index order, ranks in the order of the values asked for.
    ValueList,
    /// A rank range of an unordered list: values in the order Aerospike's heap selection gives
    /// them (see [`View::by_rank_heap`]), ranks ascending.
    Heap,
}

/// Selected element positions, in result order.
#[derive(Debug)]
pub(crate) struct Selection {
    pub(crate) idx: Vec<usize>,
    pub(crate) order: SelOrder,
}

impl Selection {
    /// Replaces the selection by its complement within the view's elements: in rank order
    /// for a selection by rank (as Aerospike answers it), else in index order.
    pub(crate) fn invert(&mut self, view: &View<'_>) {
        let n = view.len();
        let mut mask = vec![false; n];
        for &i in &self.idx {
            if let Some(m) = mask.get_mut(i) {
                *m = true;
            }
        }
        let unselected = |i: &usize| !mask.get(*i).copied().unwrap_or(true);
        if self.order == SelOrder::Rank {
            self.idx = view.rank_order().into_iter().filter(unselected).collect();
        } else {
            self.idx = (0..n).filter(unselected).collect();
            self.order = SelOrder::Index;
        }
    }

    /// Applies the inverted flag (multi-result ops only).
    pub(crate) fn apply_inverted(mut self, rt: ReturnSpec, view: &View<'_>) -> Selection {
        if rt.inverted {
            self.invert(view);
        }
        self
    }

    /// Puts a selection by rank in index order, values answered in index order and ranks
    /// ascending: how Aerospike answers a list remove by rank.
    pub(crate) fn into_index_order(mut self) -> Selection {
        if self.order == SelOrder::Rank {
            self.idx.sort_unstable();
            self.order = SelOrder::Value;
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

    /// The elements' values, in index order.
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

    /// Selects a rank range of an unordered list with its values in the order Aerospike answers
    /// them. Aerospike picks the range with a heap built from the nearer end and reads the
    /// picked elements back in the order the heap gave them up, reversed: from the low end
    /// (a range starting no further from the lowest rank than it ends from the highest) the
    /// values come highest rank first, from the high end lowest rank first.
    pub(crate) fn by_rank_heap(&self, rank: i64, count: u64) -> Result<Selection, CdtError> {
        let (start, c) = range_index(rank, count, self.len());
        let mut sel = self.by_rank(rank, count, true)?;
        if start <= self.len() - start - c {
            sel.idx.reverse();
        }
        sel.order = SelOrder::Heap;
        Ok(sel)
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

    /// Selects the elements whose value equals one of `values`, in the order of `values`
    /// (equal elements in index order), as Aerospike answers it.
    pub(crate) fn by_value_list(&self, values: &[MsgValue]) -> Selection {
        let set = ValueSet::new(values);
        let mut found: Vec<(usize, usize)> =
            (0..self.len()).filter_map(|i| self.value(i).and_then(|x| set.position(x)).map(|p| (p, i))).collect();
        found.sort_unstable();
        Selection { idx: found.into_iter().map(|(_, i)| i).collect(), order: SelOrder::ValueList }
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

    /// [`Self::by_value_rel_rank`] on an unordered list, values as [`Self::by_rank_heap`] gives them.
    pub(crate) fn by_value_rel_rank_heap(&self, v: &MsgValue, rank: i64, count: u64) -> Result<Selection, CdtError> {
        let (start, count) = rel_index(rank, count, self.count_below(v));
        self.by_rank_heap(start, count)
    }
}

/// An integer result.
fn int_result(v: i64) -> Particle {
    particle_from_msgpack(&MsgValue::Int(v))
}

/// A count or position as an integer result.
pub(crate) fn int_particle(v: usize) -> Particle {
    int_result(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A count or position as a msgpack integer (saturating, though no collection is that big).
fn as_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds the result of a selecting operation.
pub(crate) fn build_result(
    view: View<'_>,
    sel: &Selection,
    multi: bool,
    rt: ReturnSpec,
) -> Result<Option<Particle>, CdtError> {
    let n = view.len();
    let is_map = matches!(view, View::Map(_));
    let map_kind = matches!(rt.kind, ReturnType::KeyValue | ReturnType::UnorderedMap | ReturnType::OrderedMap);
    if !is_map && (map_kind || rt.kind == ReturnType::Key) {
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
            if matches!(sel.order, SelOrder::Value | SelOrder::Heap) {
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
    // Values and entries are answered in index order, whatever order the ranks take.
    let in_index_order: std::borrow::Cow<'_, [usize]> = if sel.order == SelOrder::ValueList {
        let mut idx = sel.idx.clone();
        idx.sort_unstable();
        idx.into()
    } else {
        sel.idx.as_slice().into()
    };
    let result = match rt.kind {
        ReturnType::None => return Ok(None),
        ReturnType::Count => MsgValue::Int(as_i64(sel.idx.len())),
        ReturnType::Exists => MsgValue::Bool(!sel.idx.is_empty()),
        ReturnType::Index | ReturnType::ReverseIndex | ReturnType::Rank | ReturnType::ReverseRank => {
            let rev = matches!(rt.kind, ReturnType::ReverseIndex | ReturnType::ReverseRank);
            let ranks = matches!(rt.kind, ReturnType::Rank | ReturnType::ReverseRank);
            let nums = numbers(rev, ranks);
            if multi {
                MsgValue::List(nums.into_iter().map(MsgValue::Int).collect())
            } else {
                MsgValue::Int(nums.first().copied().unwrap_or(-1))
            }
        }
        ReturnType::Value | ReturnType::Key => {
            let pick = |i: usize| -> Option<MsgValue> {
                match (view, rt.kind) {
                    (View::Map(entries), ReturnType::Key) => entries.get(i).map(|e| e.0.clone()),
                    _ => view.value(i).cloned(),
                }
            };
            if multi {
                MsgValue::List(in_index_order.iter().filter_map(|&i| pick(i)).collect())
            } else {
                match sel.idx.first().and_then(|&i| pick(i)) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
        }
        ReturnType::KeyValue | ReturnType::UnorderedMap | ReturnType::OrderedMap => {
            let View::Map(entries) = view else {
                return Err(CdtError::NotApplicable("return type not supported for lists"));
            };
            let mut picked: Vec<(MsgValue, MsgValue)> =
                in_index_order.iter().filter_map(|&i| entries.get(i).cloned()).collect();
            let flags = match rt.kind {
                ReturnType::KeyValue => map_order::PRESERVE_ORDER,
                ReturnType::OrderedMap => {
                    picked.sort_by(|a, b| cmp_total(&a.0, &b.0));
                    map_order::KEY_ORDERED
                }
                _ => map_order::UNORDERED,
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
