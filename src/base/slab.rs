//! An ordered slab: entries keep their insertion order (a doubly linked list through slot
//! indices), are removed by id in O(1), and freed slots are reused, so a long-lived stopper's
//! memory follows the number of live entries, not the number ever added.
//!
//! Ids are `generation << 32 | (slot + 1)`, where a slot's generation counts its uses: nonzero,
//! unique per slab, a stale id (its slot reused) never matches, and whether an id was ever
//! issued is exact (generations are kept when the slots are given back: 4 bytes per slot at the
//! high-water mark).
//!
//! How an entry left is kept too, for the latest use of each slot: removed by id (`remove`) or
//! taken in order (`pop_front`). The top bit of a slot's generation word says "removed".

const NIL: u32 = u32::MAX;
/// Slots kept allocated when the slab empties.
const KEEP: usize = 8;
/// In `gens`: the slot's latest entry was removed by `remove` (not taken by `pop_front`).
const REMOVED: u32 = 1 << 31;
/// In `gens`: the generation itself.
const GEN: u32 = REMOVED - 1;

/// What became of an id (see [`OrderedSlab::fate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Never handed out by this slab.
    NeverIssued,
    /// Still in the slab.
    Present,
    /// Taken out by [`OrderedSlab::pop_front`].
    Popped,
    /// Taken out by [`OrderedSlab::remove`] (or, for an id whose slot was used again since,
    /// left before that reuse: see `fate`).
    Removed,
}

struct Slot<T> {
    id: u64,
    prev: u32,
    next: u32,
    value: Option<T>,
}

pub struct OrderedSlab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    /// Uses of each slot so far (its last generation); never shrinks.
    gens: Vec<u32>,
    len: usize,
}

impl<T> Default for OrderedSlab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> OrderedSlab<T> {
    /// An empty slab (no allocation).
    pub const fn new() -> Self {
        OrderedSlab {
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            gens: Vec::new(),
            len: 0,
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of entry `id`, if present.
    pub fn get(&self, id: u64) -> Option<&T> {
        let i = self.index_of(id)?;
        self.slots[i as usize].value.as_ref()
    }

    /// Whether `id` has ever been handed out by this slab (it may since have been removed).
    pub fn was_issued(&self, id: u64) -> bool {
        let gen = (id >> 32) as u32;
        let slot = (id & 0xffff_ffff) as usize;
        slot >= 1 && gen >= 1 && self.gens.get(slot - 1).is_some_and(|&g| gen <= g & GEN)
    }

    /// What became of `id`. An id whose slot was used again since is reported `Removed`: the
    /// callers (a stopper's callback list) push only before the entries start being popped,
    /// so an entry popped in order never has its slot reused.
    pub fn fate(&self, id: u64) -> Fate {
        if !self.was_issued(id) {
            return Fate::NeverIssued;
        }
        if self.index_of(id).is_some() {
            return Fate::Present;
        }
        let gen = (id >> 32) as u32;
        let word = self.gens[(id & 0xffff_ffff) as usize - 1];
        if gen == word & GEN && word & REMOVED == 0 {
            Fate::Popped
        } else {
            Fate::Removed
        }
    }

    /// [`OrderedSlab::push`], or `Err(value)` when memory cannot be had. Memory is reserved
    /// here, so that a later `remove` or `pop_front` never allocates.
    pub fn try_push(&mut self, value: T) -> Result<u64, T> {
        if self.free.is_empty() {
            let slots = self.slots.len() + 1;
            if self.slots.try_reserve(1).is_err()
                || self.gens.try_reserve(1).is_err()
                || self.free.try_reserve(slots - self.free.len()).is_err()
            {
                return Err(value);
            }
        }
        Ok(self.push(value))
    }

    /// Appends `value` at the end of the order; returns its id.
    pub fn push(&mut self, value: T) -> u64 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    id: 0,
                    prev: NIL,
                    next: NIL,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        if idx as usize == self.gens.len() {
            self.gens.push(0);
        }
        let word = &mut self.gens[idx as usize];
        let gen = (((*word & GEN) + 1) & GEN).max(1);
        *word = gen;
        let id = (u64::from(gen) << 32) | u64::from(idx + 1);
        let tail = self.tail;
        {
            let s = &mut self.slots[idx as usize];
            s.id = id;
            s.prev = tail;
            s.next = NIL;
            s.value = Some(value);
        }
        if tail == NIL {
            self.head = idx;
        } else {
            self.slots[tail as usize].next = idx;
        }
        self.tail = idx;
        self.len += 1;
        id
    }

    fn index_of(&self, id: u64) -> Option<u32> {
        let slot = (id & 0xffff_ffff) as usize;
        if slot == 0 || slot > self.slots.len() || self.slots[slot - 1].id != id {
            return None;
        }
        Some((slot - 1) as u32)
    }

    /// Removes the entry `id`; `None` if it is not (or no longer) here.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let i = self.index_of(id)?;
        self.gens[i as usize] |= REMOVED;
        Some(self.unlink(i))
    }

    /// Removes and returns the oldest entry with its id.
    pub fn pop_front(&mut self) -> Option<(u64, T)> {
        if self.head == NIL {
            return None;
        }
        let i = self.head;
        let id = self.slots[i as usize].id;
        Some((id, self.unlink(i)))
    }

    /// Visits every entry in order.
    pub fn for_each(&self, mut f: impl FnMut(u64, &T)) {
        let mut i = self.head;
        while i != NIL {
            let s = &self.slots[i as usize];
            f(s.id, s.value.as_ref().expect("linked slot holds a value"));
            i = s.next;
        }
    }

    fn unlink(&mut self, i: u32) -> T {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[i as usize];
        s.id = 0;
        let v = s.value.take().expect("linked slot holds a value");
        self.len -= 1;
        if self.len == 0 {
            // Nothing live: forget the slots. Give the memory back when it is large, so a
            // stopper that once held many entries does not keep their slots for good; keep a
            // small one, so register/unregister cycles on an idle stopper do not allocate.
            self.slots.clear();
            self.free.clear();
            if self.slots.capacity() > KEEP {
                // Given back whole (a shrinking reallocation could fail, and abort).
                self.slots = Vec::new();
                self.free = Vec::new();
            }
            self.head = NIL;
            self.tail = NIL;
        } else {
            self.free.push(i);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_removal_and_reuse() {
        let mut s = OrderedSlab::default();
        let a = s.push('a');
        let b = s.push('b');
        let c = s.push('c');
        assert_eq!(s.remove(b), Some('b'));
        assert_eq!(s.remove(b), None, "double removal");
        let d = s.push('d');
        assert_ne!(d, b, "a reused slot gets a new id");
        assert_eq!(s.remove(b), None, "stale id does not hit the reused slot");
        let mut order = vec![];
        s.for_each(|_, v| order.push(*v));
        assert_eq!(order, vec!['a', 'c', 'd']);
        assert_eq!(s.pop_front(), Some((a, 'a')));
        assert_eq!(s.pop_front(), Some((c, 'c')));
        assert_eq!(s.pop_front(), Some((d, 'd')));
        assert_eq!(s.pop_front(), None);
        assert!(s.was_issued(d) && !s.was_issued(0) && !s.was_issued(u64::MAX));
        assert_eq!(s.fate(a), Fate::Popped);
        assert_eq!(s.fate(b), Fate::Removed, "removed, then its slot reused");
        assert_eq!(s.fate(u64::MAX), Fate::NeverIssued);
        let e = s.push('e');
        let f = s.push('f');
        assert_eq!(s.fate(e), Fate::Present);
        assert_eq!(s.remove(e), Some('e'));
        assert_eq!(s.fate(e), Fate::Removed);
        assert_eq!(s.pop_front(), Some((f, 'f')));
        assert_eq!(s.fate(f), Fate::Popped);
        assert_eq!(
            s.fate(e),
            Fate::Removed,
            "still removed once the slab emptied"
        );
        assert!(
            s.was_issued(a),
            "an id stays 'issued' after the slab emptied"
        );
        // Exact: an id of the right shape that was never handed out is not "issued".
        assert!(!s.was_issued((1u64 << 32) | 9), "slot 9 was never used");
        assert!(
            !s.was_issued((7u64 << 32) | 1),
            "slot 1 was not used 7 times"
        );
    }

    #[test]
    fn memory_follows_live_entries() {
        let mut s = OrderedSlab::default();
        let keep = s.push(0u32);
        for i in 0..100_000u32 {
            let id = s.push(i);
            assert_eq!(s.remove(id), Some(i));
        }
        assert!(s.slots.len() <= 2, "slots grew to {}", s.slots.len());
        assert_eq!(s.remove(keep), Some(0));
        assert!(s.slots.capacity() <= KEEP);
        // Many live entries, then none: the large allocation is given back.
        let ids: Vec<u64> = (0..10_000).map(|i| s.push(i)).collect();
        assert!(s.slots.capacity() >= 10_000);
        for id in ids {
            s.remove(id);
        }
        assert!(
            s.slots.capacity() <= KEEP,
            "kept {} slots",
            s.slots.capacity()
        );
    }
}
