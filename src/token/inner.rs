//! The object behind a stopper: its state word and flag (local, or in a shared page), the
//! lock over its rarely used part, and its waits.
//!
//! Layout. The hot part is two words: a 32-bit state word (byte 0 is the stop flag that
//! `stopper_flag` exposes, bit 8 says "a thread may be sleeping on this word") and the reason.
//! They sit behind a pointer so that a shared stopper can put them in shared memory. Everything
//! else (callbacks, children, wakers, attachments) lives in a `Slow` box allocated on first
//! use, so an idle stopper is a handful of words.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::base::rc::{Arc, Weak};
use crate::base::slab::OrderedSlab;
use crate::base::status::Status;
use crate::base::sync::{futex, AtomicI32, AtomicU32, AtomicU8, Gated, Mutex};
use crate::base::sys;
use crate::token::attach::Attachments;
use crate::token::callbacks::{Action, Waker};
use crate::token::stopper::REASON_REQUESTED;

/// Byte 0 of the state word: set once stopped.
pub(crate) const STOPPED: u32 = 1;
/// A thread may be asleep on the state word: the stop must issue a futex wake.
pub(crate) const WAITERS: u32 = 1 << 8;

pub(super) const ACTIONS_IDLE: u8 = 0;
pub(super) const ACTIONS_RUNNING: u8 = 1;
pub(super) const ACTIONS_DONE: u8 = 2;
/// A stopper made by `Stopper::never`: no stop is ever claimed.
pub(super) const ACTIONS_NEVER: u8 = 3;

/// The two words every process sharing a stopper must see: in the stopper itself, or in a
/// shared-memory page for a shared stopper.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Cell {
    pub(crate) word: AtomicU32,
    pub(crate) reason: AtomicI32,
}

/// A shared stopper's part of the shared page: the cell, and the word this process's watcher
/// (and every other process's) sleeps on. Watchers have their own word so that a stop wakes
/// the real waiters first and the watchers after, not all in one crowd.
#[repr(C)]
pub(crate) struct SharedCell {
    pub(crate) cell: Cell,
    /// 0 until stopped, then 1 (set after the flag).
    pub(crate) watch: AtomicU32,
    /// The stop flag of every process (what `stopper_flag` exposes for a shared stopper).
    pub(crate) flag: AtomicU8,
    _reserved: [u8; 3],
}

/// The rarely used part of a stopper, allocated on first need.
#[derive(Default)]
pub(crate) struct Slow {
    pub(crate) callbacks: OrderedSlab<Action>,
    /// The callback being run by the stopping thread: (id, thread id).
    pub(crate) running: Option<(u64, u64)>,
    pub(crate) children: OrderedSlab<Weak<Inner>>,
    pub(crate) parents: Vec<(Arc<Inner>, u64)>,
    /// Wake-ups for `wait_any`, channel operations and signal stops: run right after the flag.
    pub(crate) wakers: OrderedSlab<Waker>,
    /// Threads blocked in `Inner::cv_wait`; notify only when nonzero (a wake is a system call).
    pub(crate) cv_waiters: u32,
    /// The extensions' state on this stopper (see `token::attach`).
    pub(crate) attached: Attachments,
}

/// The object behind a `stopper *`.
pub struct Inner {
    /// `None`: the cell is `local`; `Some`: it lives in a shared mapping.
    pub(super) shared_cell: Option<NonNull<SharedCell>>,
    pub(super) local: Cell,
    /// The stop flag byte of a local stopper (what `stopper_flag` exposes): its own memory
    /// location, written once by the stop, so that readers' one-byte atomic loads never overlap
    /// the wider atomics on the futex word (a mixed-size access the memory model forbids).
    pub(super) local_flag: AtomicU8,
    pub(super) slow: Mutex<Option<Box<Slow>>>,
    /// Bumped by `notify`; `cv_wait` sleeps on it (a futex word, not a condition variable: a
    /// waiter re-locks through the fork gate, see `sync::gate`).
    pub(super) epoch: AtomicU32,
    /// This process's side of the stop (wakers, children, fd, hooks, callbacks): `IDLE`,
    /// `RUNNING`, `DONE`. For a shared stopper the stop may come from another process: exactly
    /// one thread of this process runs them — the local winner if there is one, else the
    /// watcher; a losing `stop` waits for `DONE` in `cv_wait`.
    pub(super) actions: AtomicU8,
}

// SAFETY: `shared_cell` points into a shared mapping kept alive by an attachment (dropped
// after `Inner`'s own `Drop`), which holds only atomics.
unsafe impl Send for Inner {}
// SAFETY: as above; all shared mutation goes through atomics or the mutex.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // Unlink from the parents, so that a long-lived parent does not keep an entry per
        // child ever created. A parent whose last reference was ours is taken apart here in
        // the same way, in a loop: releasing a chain of any depth does not recurse.
        let mut parents = self.take_parents();
        while let Some((parent, _)) = parents.pop() {
            if let Some(mut owned) = Arc::into_inner(parent) {
                let grand = owned.take_parents();
                if parents.try_reserve(grand.len()).is_ok() {
                    parents.extend(grand);
                } else {
                    drop(grand); // no memory for the loop: release them by recursion
                }
                drop(owned); // finds no parents left
            }
        }
    }
}

impl Inner {
    /// Unlinks from every parent (with `&mut self`: only while dropping); returns the parents'
    /// references.
    fn take_parents(&mut self) -> Vec<(Arc<Inner>, u64)> {
        let slow = self.slow.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(slow) = slow.as_mut() else {
            return Vec::new();
        };
        let parents = std::mem::take(&mut slow.parents);
        for (parent, id) in &parents {
            parent.lock().as_mut().map(|p| p.children.remove(*id));
        }
        parents
    }

    /// A new stopper's counted box; `None` when memory cannot be had.
    pub(super) fn try_new_with(
        shared_cell: Option<NonNull<SharedCell>>,
        slow: Option<Box<Slow>>,
    ) -> Option<Arc<Inner>> {
        Arc::try_new(Inner {
            shared_cell,
            local: Cell::default(),
            local_flag: AtomicU8::new(0),
            slow: Mutex::new(slow),
            epoch: AtomicU32::new(0),
            actions: AtomicU8::new(ACTIONS_IDLE),
        })
        .ok()
    }

    #[inline]
    pub(crate) fn cell(&self) -> &Cell {
        match self.shared_cell {
            None => &self.local,
            // SAFETY: see the `Send`/`Sync` impls: the mapping outlives `self`.
            Some(p) => unsafe { &p.as_ref().cell },
        }
    }

    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared_cell.is_some()
    }

    /// The stop flag byte: its own location, shared with other processes for a shared stopper.
    #[inline]
    pub(crate) fn flag(&self) -> &AtomicU8 {
        match self.shared_cell {
            None => &self.local_flag,
            // SAFETY: as in `cell`.
            Some(p) => unsafe { &p.as_ref().flag },
        }
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    pub(crate) fn reason(&self) -> i32 {
        if !self.is_set() {
            return 0;
        }
        match self.cell().reason.load(Ordering::Relaxed) {
            // Only a shared page can show the flag without a reason (a peer wrote the flag
            // byte alone, before any watcher or opener repaired the page): a stop is never
            // reported with reason 0.
            0 => REASON_REQUESTED,
            r => r,
        }
    }

    /// Locks the slow part (which may be absent). Poisoning is ignored: no invariant of the
    /// slow part is left broken across user code, which never runs under this lock.
    pub(crate) fn lock(&self) -> Gated<'_, Option<Box<Slow>>> {
        Gated::lock(&self.slow)
    }

    /// Locks the slow part, allocating it if needed; `NoMem` when memory cannot be had.
    pub(crate) fn try_lock_slow(&self) -> Result<SlowGuard<'_>, Status> {
        let mut g = self.lock();
        if g.is_none() {
            *g = Some(crate::base::rc::try_box(Slow::default()).map_err(|_| Status::NoMem)?);
        }
        Ok(SlowGuard(g))
    }

    /// Locks the slow part, allocating it if needed. Used where it exists already (a worker
    /// inside, a callback running, a deadline armed), or where out of memory is Rust's usual
    /// `handle_alloc_error`.
    pub(crate) fn lock_slow(&self) -> SlowGuard<'_> {
        self.try_lock_slow()
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Slow>()))
    }

    /// Releases the lock and sleeps until a `notify` (or the deadline), then locks again;
    /// returns the guard and whether the deadline passed. Callers re-check their condition
    /// (a wake-up may be for another waiter).
    pub(crate) fn cv_wait<'a>(
        &'a self,
        mut g: SlowGuard<'a>,
        deadline: Option<u64>,
    ) -> (SlowGuard<'a>, bool) {
        g.cv_waiters += 1;
        // Read under the lock: a `notify` after it (also under the lock) changes it.
        let seen = self.epoch.load(Ordering::Acquire);
        drop(g);
        let timed_out = match deadline {
            Some(d) if sys::now_ns() >= d => true,
            _ => futex::wait(&self.epoch, seen, deadline, false) == sys::FutexWait::TimedOut,
        };
        let mut g = self.lock_slow();
        g.cv_waiters -= 1;
        (g, timed_out)
    }

    /// Wakes the `cv_wait` sleepers; called with the lock held.
    pub(crate) fn notify(&self, slow: &Slow) {
        if slow.cv_waiters > 0 {
            self.epoch.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.epoch, false);
        }
    }

    /// Blocks until stopped or until the absolute deadline; true when stopped.
    pub(crate) fn wait_until(&self, deadline: Option<u64>) -> bool {
        crate::base::fork::after_fork_check();
        let cell = self.cell();
        let shared = self.is_shared();
        loop {
            let w = cell.word.load(Ordering::Acquire);
            if w & STOPPED != 0 {
                return true;
            }
            if w & WAITERS == 0 {
                // Announce a sleeper before sleeping, so the stop knows to wake us.
                let _ = cell.word.compare_exchange_weak(
                    w,
                    w | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                );
                continue;
            }
            if futex::wait(&cell.word, w, deadline, shared) == sys::FutexWait::TimedOut {
                return self.is_set();
            }
        }
    }
}

impl Inner {
    /// Locks the slow part only if it exists.
    pub(crate) fn lock_existing(&self) -> Option<SlowGuard<'_>> {
        let g = self.lock();
        if g.is_some() {
            Some(SlowGuard(g))
        } else {
            None
        }
    }
}

/// A locked, present slow part.
pub(crate) struct SlowGuard<'a>(pub(crate) Gated<'a, Option<Box<Slow>>>);

impl std::ops::Deref for SlowGuard<'_> {
    type Target = Slow;
    fn deref(&self) -> &Slow {
        self.0
            .as_ref()
            .expect("SlowGuard holds a present slow part")
    }
}

impl std::ops::DerefMut for SlowGuard<'_> {
    fn deref_mut(&mut self) -> &mut Slow {
        self.0
            .as_mut()
            .expect("SlowGuard holds a present slow part")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_stopper_fits_in_a_64_byte_allocation() {
        // Arc header (two counts) + Inner; glibc rounds a 56-byte request to a 64-byte chunk.
        let arc_inner = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Inner>();
        assert!(arc_inner <= 56, "ArcInner<Inner> is {arc_inner} bytes");
    }
}
