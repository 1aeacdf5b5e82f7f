//! One sprig's red-black tree: arena-allocated nodes keyed by digest.
//!
//! Nodes live in one `Vec` per sprig and refer to each other by 32-bit handles (indexes into
//! that vector), so there is no per-node heap allocation and no pointer chasing through the
//! allocator. There are no parent pointers: insertion and deletion record their search path
//! on the stack (at most 64 steps) and fix colours bottom-up along it, which usually stops
//! within a step or two. Freed nodes are chained through their left link into a free list and
//! reused.
//!
//! The vector grows by an eighth of its size at a time rather than doubling, so at most about
//! 12 % of the arena is slack; that keeps the whole index inside 64 bytes per record.
//! Dropping a tree gives all its memory back to the allocator at once.

use petrel_proto::Digest;

/// A node handle inside one tree's arena.
pub type Handle = u32;
/// The null handle.
pub const NIL: Handle = u32::MAX;
/// The handle standing for the root's parent in recorded paths; its right link is the root.
const HEAD: Handle = u32::MAX - 1;
/// Largest number of nodes one tree can hold.
pub const NODES_MAX: usize = (u32::MAX - 2) as usize;

const LEFT: usize = 0;
const RIGHT: usize = 1;
/// Longest search path recorded: the height bound of a red-black tree with fewer than 2^32
/// nodes (64) plus room for the fix-up's extra step.
const PATH_MAX: usize = 72;

const META_RED: u16 = 1 << 15;
const META_KEY_STORED: u16 = 1 << 14;
const META_SET_MASK: u16 = 0x0fff;

/// One index entry: the record's digest, its metadata, and where its data lives.
///
/// 56 bytes when `L` is 8 bytes (asserted in `index::tests`).
#[derive(Debug)]
#[repr(C)]
pub struct Entry<L> {
    /// Last update time, milliseconds since the Citrusleaf epoch.
    pub lut_ms: u64,
    /// Where the record's data lives; `None` only in a free slot.
    pub(crate) loc: Option<L>,
    pub digest: Digest,
    links: [Handle; 2],
    /// Expiry, seconds since the Citrusleaf epoch; 0 = never.
    pub void_time: u32,
    /// Size in bytes of the record's data image.
    pub data_size: u32,
    pub generation: u16,
    meta: u16,
}

impl<L> Entry<L> {
    /// The record's set id (0 = no set).
    pub fn set_id(&self) -> u16 {
        self.meta & META_SET_MASK
    }

    pub fn set_set_id(&mut self, set_id: u16) {
        debug_assert!(set_id <= META_SET_MASK);
        self.meta = (self.meta & !META_SET_MASK) | (set_id & META_SET_MASK);
    }

    /// Whether the record's data image holds the user key.
    pub fn key_stored(&self) -> bool {
        self.meta & META_KEY_STORED != 0
    }

    pub fn set_key_stored(&mut self, stored: bool) {
        if stored {
            self.meta |= META_KEY_STORED;
        } else {
            self.meta &= !META_KEY_STORED;
        }
    }

    /// The storage location of the record's data.
    pub fn loc(&self) -> Option<&L> {
        self.loc.as_ref()
    }

    fn is_red(&self) -> bool {
        self.meta & META_RED != 0
    }

    fn set_red(&mut self, red: bool) {
        if red {
            self.meta |= META_RED;
        } else {
            self.meta &= !META_RED;
        }
    }

    /// Moves everything but the tree links and colour from `other` into `self`.
    fn take_payload(&mut self, other: &mut Entry<L>) {
        self.lut_ms = other.lut_ms;
        self.loc = other.loc.take();
        self.digest = other.digest;
        self.void_time = other.void_time;
        self.data_size = other.data_size;
        self.generation = other.generation;
        self.meta = (self.meta & META_RED) | (other.meta & !META_RED);
    }
}

/// What a removed entry held, handed back so the caller can release its storage.
#[derive(Debug)]
pub struct Removed<L> {
    pub digest: Digest,
    pub loc: Option<L>,
    pub data_size: u32,
    pub set_id: u16,
}

/// A red-black tree of entries ordered by ascending digest.
#[derive(Debug)]
pub struct Tree<L> {
    nodes: Vec<Entry<L>>,
    root: Handle,
    free_head: Handle,
    len: u32,
}

impl<L> Default for Tree<L> {
    fn default() -> Self {
        Tree { nodes: Vec::new(), root: NIL, free_head: NIL, len: 0 }
    }
}

impl<L> Tree<L> {
    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of arena this tree holds (live, free and slack slots).
    pub fn arena_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Entry<L>>()
    }

    /// The entry behind a handle returned by this tree.
    pub fn entry(&self, h: Handle) -> &Entry<L> {
        &self.nodes[h as usize]
    }

    pub fn entry_mut(&mut self, h: Handle) -> &mut Entry<L> {
        &mut self.nodes[h as usize]
    }

    #[inline]
    fn link(&self, h: Handle, dir: usize) -> Handle {
        if h == HEAD {
            if dir == RIGHT {
                self.root
            } else {
                NIL
            }
        } else {
            self.nodes[h as usize].links[dir]
        }
    }

    #[inline]
    fn set_link(&mut self, h: Handle, dir: usize, to: Handle) {
        if h == HEAD {
            debug_assert_eq!(dir, RIGHT);
            self.root = to;
        } else {
            self.nodes[h as usize].links[dir] = to;
        }
    }

    #[inline]
    fn red(&self, h: Handle) -> bool {
        h != NIL && h != HEAD && self.nodes[h as usize].is_red()
    }

    #[inline]
    fn paint(&mut self, h: Handle, red: bool) {
        if h != NIL && h != HEAD {
            self.nodes[h as usize].set_red(red);
        }
    }

    /// Consumes the tree, returning the data locations of its live entries (to release them).
    pub fn into_locations(self) -> impl Iterator<Item = L> {
        self.nodes.into_iter().filter_map(|n| n.loc)
    }

    /// Finds the entry for `digest`.
    #[inline]
    pub fn find(&self, digest: &Digest) -> Option<Handle> {
        let mut h = self.root;
        while h != NIL {
            let n = &self.nodes[h as usize];
            match digest.cmp(&n.digest) {
                std::cmp::Ordering::Equal => return Some(h),
                std::cmp::Ordering::Less => h = n.links[LEFT],
                std::cmp::Ordering::Greater => h = n.links[RIGHT],
            }
        }
        None
    }

    fn alloc(&mut self, digest: Digest) -> Handle {
        let fresh = Entry {
            lut_ms: 0,
            loc: None,
            digest,
            links: [NIL, NIL],
            void_time: 0,
            data_size: 0,
            generation: 0,
            meta: META_RED,
        };
        if self.free_head != NIL {
            let h = self.free_head;
            self.free_head = self.nodes[h as usize].links[LEFT];
            self.nodes[h as usize] = fresh;
            return h;
        }
        if self.nodes.len() == self.nodes.capacity() {
            // Grow by an eighth (at least 4 slots): bounded slack, amortised O(1) pushes.
            let grow = (self.nodes.capacity() / 8).max(4);
            self.nodes.reserve_exact(grow);
        }
        assert!(self.nodes.len() < NODES_MAX, "sprig arena is full");
        self.nodes.push(fresh);
        (self.nodes.len() - 1) as Handle
    }

    fn free(&mut self, h: Handle) {
        let n = &mut self.nodes[h as usize];
        n.loc = None;
        n.links = [self.free_head, NIL];
        self.free_head = h;
    }

    /// Walks from the root towards `digest`, recording each (node, direction taken) in `path`.
    /// Returns the entry holding `digest` (or `NIL`) and the number of steps recorded; the
    /// height of the tree is at most 2·log2(n+1) ≤ 64, and the fix-ups may add one step.
    fn descend(&self, digest: &Digest, path: &mut [(Handle, usize); PATH_MAX]) -> (Handle, usize) {
        let mut depth = 0usize;
        let mut h = self.root;
        while h != NIL {
            let n = &self.nodes[h as usize];
            let dir = match digest.cmp(&n.digest) {
                std::cmp::Ordering::Equal => return (h, depth),
                std::cmp::Ordering::Less => LEFT,
                std::cmp::Ordering::Greater => RIGHT,
            };
            path[depth] = (h, dir);
            depth += 1;
            h = n.links[dir];
        }
        (NIL, depth)
    }

    /// Finds the entry for `digest`, inserting a fresh one (generation 0, no location) if it is
    /// absent. Returns its handle and whether it was inserted.
    ///
    /// One descent records the search path; a new red leaf is fixed up bottom-up along it
    /// (recolouring up the path, at most two rotations).
    pub fn find_or_insert(&mut self, digest: &Digest) -> (Handle, bool) {
        let mut path = [(NIL, LEFT); PATH_MAX];
        let (found, mut depth) = self.descend(digest, &mut path);
        if found != NIL {
            return (found, false);
        }
        let inserted = self.alloc(*digest);
        let (parent, side) = if depth == 0 { (HEAD, RIGHT) } else { path[depth - 1] };
        self.set_link(parent, side, inserted);
        // `x` is red; `path[depth - 1]` is its parent.
        let mut x = inserted;
        while depth >= 1 {
            let (p, pdir) = path[depth - 1];
            if !self.red(p) {
                break;
            }
            // A red parent is never the root, so there is a grandparent.
            let (g, gdir) = path[depth - 2];
            let uncle = self.link(g, 1 - gdir);
            if self.red(uncle) {
                // Red uncle: push the blackness down from the grandparent and go up two.
                self.paint(p, false);
                self.paint(uncle, false);
                self.paint(g, true);
                x = g;
                depth -= 2;
                continue;
            }
            let (ggp, ggdir) = if depth >= 3 { path[depth - 3] } else { (HEAD, RIGHT) };
            let mut top = p;
            if pdir != gdir {
                // Inner grandchild: rotate it above its parent first.
                let inner = self.link(x, gdir);
                self.set_link(p, pdir, inner);
                self.set_link(x, gdir, p);
                self.set_link(g, gdir, x);
                top = x;
            }
            // Outer: rotate the grandparent down.
            let inner = self.link(top, 1 - gdir);
            self.set_link(g, gdir, inner);
            self.set_link(top, 1 - gdir, g);
            self.set_link(ggp, ggdir, top);
            self.paint(top, false);
            self.paint(g, true);
            break;
        }
        let root = self.root;
        self.paint(root, false);
        self.len += 1;
        (inserted, true)
    }

    /// Removes the entry for `digest`, returning what it held.
    ///
    /// Bottom-up: one descent records the path (there are no parent pointers), the node
    /// physically unlinked has at most one child, and the colour fix-up walks back up the
    /// recorded path, usually stopping after a step or two.
    pub fn remove(&mut self, digest: &Digest) -> Option<Removed<L>> {
        let mut path = [(NIL, LEFT); PATH_MAX];
        let (found, mut depth) = self.descend(digest, &mut path);
        if found == NIL {
            return None;
        }
        let removed = {
            let f = &mut self.nodes[found as usize];
            Removed { digest: f.digest, loc: f.loc.take(), data_size: f.data_size, set_id: f.set_id() }
        };
        // With two children, the in-order successor (leftmost of the right subtree) is the node
        // unlinked; its payload moves into `found`.
        let mut target = found;
        if self.link(found, LEFT) != NIL && self.link(found, RIGHT) != NIL {
            path[depth] = (found, RIGHT);
            depth += 1;
            let mut y = self.link(found, RIGHT);
            while self.link(y, LEFT) != NIL {
                path[depth] = (y, LEFT);
                depth += 1;
                y = self.link(y, LEFT);
            }
            target = y;
            let (a, b) = two_mut(&mut self.nodes, found as usize, target as usize);
            a.take_payload(b);
        }
        let child = if self.link(target, LEFT) != NIL { self.link(target, LEFT) } else { self.link(target, RIGHT) };
        let (parent, side) = if depth == 0 { (HEAD, RIGHT) } else { path[depth - 1] };
        self.set_link(parent, side, child);
        let target_was_red = self.red(target);
        self.free(target);
        if !target_was_red {
            if self.red(child) {
                self.paint(child, false);
            } else {
                self.fix_double_black(&mut path, depth);
            }
        }
        let root = self.root;
        self.paint(root, false);
        self.len -= 1;
        if self.len == 0 {
            // An emptied sprig gives its whole arena back.
            *self = Tree::default();
        }
        Some(removed)
    }

    /// Restores the black height after a black node was unlinked: the subtree at
    /// `path[depth - 1]` (parent, side) is one black short.
    fn fix_double_black(&mut self, path: &mut [(Handle, usize); PATH_MAX], mut depth: usize) {
        while depth > 0 {
            let (p, dir) = path[depth - 1];
            let x = self.link(p, dir);
            if self.red(x) {
                self.paint(x, false);
                return;
            }
            let (gp, gdir) = if depth >= 2 { path[depth - 2] } else { (HEAD, RIGHT) };
            let mut s = self.link(p, 1 - dir);
            if self.red(s) {
                // Red sibling: rotate it above the parent, so the new sibling is black.
                self.paint(s, false);
                self.paint(p, true);
                let inner = self.link(s, dir);
                self.set_link(p, 1 - dir, inner);
                self.set_link(s, dir, p);
                self.set_link(gp, gdir, s);
                path[depth - 1] = (s, dir);
                path[depth] = (p, dir);
                depth += 1;
                s = self.link(p, 1 - dir);
            }
            let (near, far) = (self.link(s, dir), self.link(s, 1 - dir));
            if !self.red(near) && !self.red(far) {
                // Both nephews black: recolour and move the shortfall up to the parent.
                self.paint(s, true);
                depth -= 1;
                if self.red(p) {
                    self.paint(p, false);
                    return;
                }
                continue;
            }
            let (gp, gdir) = if depth >= 2 { path[depth - 2] } else { (HEAD, RIGHT) };
            if !self.red(far) {
                // Near nephew red: rotate it above the sibling.
                self.paint(near, false);
                self.paint(s, true);
                let inner = self.link(near, 1 - dir);
                self.set_link(s, dir, inner);
                self.set_link(near, 1 - dir, s);
                self.set_link(p, 1 - dir, near);
                s = near;
            }
            // Far nephew red: rotate the sibling above the parent; done.
            let p_red = self.red(p);
            self.paint(s, p_red);
            self.paint(p, false);
            let far = self.link(s, 1 - dir);
            self.paint(far, false);
            let inner = self.link(s, dir);
            self.set_link(p, 1 - dir, inner);
            self.set_link(s, dir, p);
            self.set_link(gp, gdir, s);
            return;
        }
    }

    /// The first entry whose digest is strictly greater than `after` (or the smallest entry
    /// when `after` is `None`).
    pub fn first_after(&self, after: Option<&Digest>) -> Option<Handle> {
        let mut h = self.root;
        let mut best = NIL;
        while h != NIL {
            let n = &self.nodes[h as usize];
            let go_left = match after {
                None => true,
                Some(a) => n.digest > *a,
            };
            if go_left {
                best = h;
                h = n.links[LEFT];
            } else {
                h = n.links[RIGHT];
            }
        }
        (best != NIL).then_some(best)
    }

    /// Visits entries in ascending digest order, starting after `after`, until `visit`
    /// returns `false` or the tree ends.
    pub fn visit_from(&self, after: Option<&Digest>, mut visit: impl FnMut(&Entry<L>) -> bool) {
        // An explicit stack bounded by the tree height (at most 2·log2(n+1) ≤ 64).
        let mut stack: [Handle; 64] = [NIL; 64];
        let mut depth = 0usize;
        let mut h = self.root;
        while h != NIL {
            let n = &self.nodes[h as usize];
            let include = after.is_none_or(|a| n.digest > *a);
            if include {
                stack[depth] = h;
                depth += 1;
                h = n.links[LEFT];
            } else {
                h = n.links[RIGHT];
            }
        }
        while depth > 0 {
            depth -= 1;
            let h = stack[depth];
            let n = &self.nodes[h as usize];
            if !visit(n) {
                return;
            }
            let mut c = n.links[RIGHT];
            while c != NIL {
                stack[depth] = c;
                depth += 1;
                c = self.nodes[c as usize].links[LEFT];
            }
        }
    }

    /// Checks the red-black and ordering invariants; returns the black height.
    /// Used by tests and debug assertions.
    pub fn check_invariants(&self) -> Result<usize, String> {
        if self.red(self.root) {
            return Err("root is red".into());
        }
        let mut count = 0usize;
        let bh = self.check_subtree(self.root, None, None, &mut count)?;
        if count != self.len as usize {
            return Err(format!("len {} but {} reachable entries", self.len, count));
        }
        Ok(bh)
    }

    fn check_subtree(
        &self,
        h: Handle,
        lo: Option<&Digest>,
        hi: Option<&Digest>,
        count: &mut usize,
    ) -> Result<usize, String> {
        if h == NIL {
            return Ok(1);
        }
        let n = &self.nodes[h as usize];
        if n.loc.is_none() && n.generation != 0 {
            return Err(format!("entry {h} has a generation but no data"));
        }
        if lo.is_some_and(|lo| n.digest <= *lo) || hi.is_some_and(|hi| n.digest >= *hi) {
            return Err(format!("entry {h} out of order"));
        }
        if n.is_red() && (self.red(n.links[LEFT]) || self.red(n.links[RIGHT])) {
            return Err(format!("red entry {h} has a red child"));
        }
        *count += 1;
        let l = self.check_subtree(n.links[LEFT], lo, Some(&n.digest), count)?;
        let r = self.check_subtree(n.links[RIGHT], Some(&n.digest), hi, count)?;
        if l != r {
            return Err(format!("black heights differ under {h}: {l} vs {r}"));
        }
        Ok(l + usize::from(!n.is_red()))
    }
}

fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn d(i: u32) -> Digest {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Digest(b)
    }

    #[derive(Debug, Clone)]
    enum Action {
        Insert(u16),
        Remove(u16),
        Find(u16),
        Scan(Option<u16>, u8),
    }

    fn action() -> impl Strategy<Value = Action> {
        // A small key space makes removals and re-insertions of the same key frequent.
        prop_oneof![
            4 => (0u16..512).prop_map(Action::Insert),
            3 => (0u16..512).prop_map(Action::Remove),
            1 => (0u16..512).prop_map(Action::Find),
            1 => (proptest::option::of(0u16..512), any::<u8>()).prop_map(|(a, n)| Action::Scan(a, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn model_check_against_btreemap(actions in proptest::collection::vec(action(), 1..600)) {
            let mut tree: Tree<u64> = Tree::default();
            let mut model: BTreeMap<Digest, u64> = BTreeMap::new();
            for (step, a) in actions.into_iter().enumerate() {
                match a {
                    Action::Insert(k) => {
                        let (h, inserted) = tree.find_or_insert(&d(k as u32));
                        prop_assert_eq!(inserted, !model.contains_key(&d(k as u32)));
                        tree.entry_mut(h).loc = Some(step as u64);
                        tree.entry_mut(h).generation = 1;
                        model.insert(d(k as u32), step as u64);
                    }
                    Action::Remove(k) => {
                        let got = tree.remove(&d(k as u32)).map(|r| (r.digest, r.loc));
                        let want = model.remove(&d(k as u32)).map(|v| (d(k as u32), Some(v)));
                        prop_assert_eq!(got, want);
                    }
                    Action::Find(k) => {
                        let got = tree.find(&d(k as u32)).map(|h| tree.entry(h).loc);
                        prop_assert_eq!(got, model.get(&d(k as u32)).map(|v| Some(*v)));
                    }
                    Action::Scan(after, n) => {
                        let after = after.map(|a| d(a as u32));
                        let mut got = Vec::new();
                        tree.visit_from(after.as_ref(), |e| {
                            got.push((e.digest, e.loc.unwrap_or(u64::MAX)));
                            got.len() < n as usize
                        });
                        let want: Vec<_> = match after {
                            None => model.iter().map(|(k, v)| (*k, *v)).take((n as usize).max(1)).collect(),
                            Some(a) => model
                                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                                .map(|(k, v)| (*k, *v))
                                .take((n as usize).max(1))
                                .collect(),
                        };
                        prop_assert_eq!(got, want);
                        let first = tree.first_after(after.as_ref()).map(|h| tree.entry(h).digest);
                        let want_first = match after {
                            None => model.keys().next().copied(),
                            Some(a) => model.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).next().map(|(k, _)| *k),
                        };
                        prop_assert_eq!(first, want_first);
                    }
                }
                if let Err(e) = tree.check_invariants() {
                    return Err(TestCaseError::fail(format!("step {step}: {e}")));
                }
                prop_assert_eq!(tree.len(), model.len());
            }
        }
    }

    #[test]
    fn sequential_and_reverse_inserts_stay_balanced() {
        let mut tree: Tree<u64> = Tree::default();
        for i in 0..10_000u32 {
            let (h, _) = tree.find_or_insert(&d(i));
            tree.entry_mut(h).loc = Some(i as u64);
        }
        for i in (10_000..20_000u32).rev() {
            let (h, _) = tree.find_or_insert(&d(i));
            tree.entry_mut(h).loc = Some(i as u64);
        }
        let bh = tree.check_invariants().expect("valid");
        // Black height of a red-black tree with n nodes is at most log2(n+1) + 1.
        assert!(bh <= 16, "black height {bh}");
        for i in (0..20_000u32).step_by(2) {
            assert!(tree.remove(&d(i)).is_some());
        }
        tree.check_invariants().expect("valid after removals");
        assert_eq!(tree.len(), 10_000);
        // Freed slots are reused before the arena grows.
        let cap = tree.nodes.capacity();
        for i in (0..20_000u32).step_by(2) {
            tree.find_or_insert(&d(i)).1.then_some(()).expect("inserted");
            let h = tree.find(&d(i)).expect("present");
            tree.entry_mut(h).loc = Some(0);
        }
        assert_eq!(tree.nodes.capacity(), cap);
    }
}
