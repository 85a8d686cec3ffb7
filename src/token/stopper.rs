//! `Stopper`: the public handle of a stop token (a counted reference to an `Inner`), its
//! constructors, children and links, and `wait_any`.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::base::rc::Arc;
use crate::base::status::Status;
use crate::base::sync::{futex, AtomicU32, AtomicU8};
use crate::base::sys;
use crate::token::attach::Attachment;
use crate::token::callbacks::{wake_word, Waker};
use crate::token::inner::{Inner, SharedCell, Slow};

/// Reason recorded when a caller stops with reason 0.
pub const REASON_REQUESTED: i32 = 1;
/// Reason recorded by a deadline armed with reason 0.
pub const REASON_DEADLINE: i32 = 2;
/// Reason recorded by a stop on a process signal.
pub const REASON_SIGNAL: i32 = 3;

/// A reference-counted, thread-safe stop token: running until stopped, once, for good.
///
/// Clones share one stopper (like `stopper_retain`). All methods may be called from any thread.
#[derive(Clone)]
pub struct Stopper {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Stopper {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.is_set())
            .field("reason", &self.reason())
            .finish()
    }
}

impl PartialEq for Stopper {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Stopper {}

/// The result of a wait with a time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The stopper is stopped.
    Stopped,
    /// The time limit passed first.
    TimedOut,
}

/// Rust's answer to an allocation that cannot be had, for the infallible Rust constructors.
pub(super) fn out_of_memory() -> ! {
    std::alloc::handle_alloc_error(std::alloc::Layout::new::<Inner>())
}

impl Stopper {
    /// A new, running stopper. Out of memory is Rust's usual `handle_alloc_error` (see
    /// [`Stopper::try_new`]).
    pub fn new() -> Stopper {
        Stopper::try_new().unwrap_or_else(|_| out_of_memory())
    }

    /// A new, running stopper, or `Err(Status::NoMem)` when memory cannot be had.
    pub fn try_new() -> Result<Stopper, Status> {
        Inner::try_new_with(None, None)
            .map(|inner| Stopper { inner })
            .ok_or(Status::NoMem)
    }

    /// A stopper over a shared page (`shared`), or `Err(Status::NoMem)`. `keeper` is attached
    /// to it: it keeps the cell's memory alive at least as long as the stopper.
    pub(crate) fn try_with_cell<K: Attachment>(
        cell: NonNull<SharedCell>,
        keeper: K,
    ) -> Result<Stopper, Status> {
        // The slow part is made here, not through the lock: this runs under the shared
        // registry's lock, which a gated section must never be taken under (`sync::gate`).
        let mut slow = Slow::default();
        slow.attach(|| keeper)?;
        let slow = crate::base::rc::try_box(slow).map_err(|_| Status::NoMem)?;
        let inner = Inner::try_new_with(Some(cell), Some(slow)).ok_or(Status::NoMem)?;
        Ok(Stopper { inner })
    }

    /// A child: stopped when this stopper is (with its reason), never the other way round.
    /// A child of a stopped stopper is born stopped.
    pub fn child(&self) -> Stopper {
        Stopper::linked(&[self])
    }

    /// [`Stopper::child`], or `Err(Status::NoMem)` when memory cannot be had.
    pub fn try_child(&self) -> Result<Stopper, Status> {
        Stopper::try_linked(&[self])
    }

    /// A stopper stopped when any of `parents` is, with that parent's reason.
    pub fn linked(parents: &[&Stopper]) -> Stopper {
        Stopper::try_linked(parents).unwrap_or_else(|_| out_of_memory())
    }

    /// [`Stopper::linked`], or `Err(Status::NoMem)` when memory cannot be had (nothing is
    /// left linked then).
    pub fn try_linked(parents: &[&Stopper]) -> Result<Stopper, Status> {
        let child = Stopper::try_new()?;
        for p in parents {
            if !child.link_to(p)? {
                break; // born stopped
            }
        }
        Ok(child)
    }

    /// Links `self` under `parent`; `Ok(false)` when the parent was already stopped (and so
    /// `self` now is). Memory is reserved on both sides before anything is linked.
    fn link_to(&self, parent: &Stopper) -> Result<bool, Status> {
        self.inner
            .try_lock_slow()?
            .parents
            .try_reserve(1)
            .map_err(|_| Status::NoMem)?;
        let mut pg = parent.inner.try_lock_slow()?;
        if parent.is_set() {
            let reason = parent.reason();
            drop(pg);
            self.inner.stop(reason);
            return Ok(false);
        }
        let id = pg
            .children
            .try_push(Arc::downgrade(&self.inner))
            .map_err(|_| Status::NoMem)?;
        drop(pg);
        // Reserved above: no allocation.
        self.inner
            .lock_slow()
            .parents
            .push((Arc::clone(&parent.inner), id));
        Ok(true)
    }

    /// Stops it; `reason` 0 means [`crate::REASON_REQUESTED`]. True for the call that stopped
    /// it, false when it was already stopped.
    pub fn stop(&self, reason: i32) -> bool {
        self.inner.stop(if reason == 0 {
            REASON_REQUESTED
        } else {
            reason
        })
    }

    /// One atomic load with acquire ordering.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// The address of the stop flag byte (nonzero once stopped), valid while `self` lives.
    #[inline]
    pub fn flag_ptr(&self) -> *const u8 {
        self.inner.flag() as *const AtomicU8 as *const u8
    }

    /// The reason recorded by the stop that won; 0 while running.
    pub fn reason(&self) -> i32 {
        self.inner.reason()
    }

    /// Blocks until stopped, or until `timeout` passes (`None`: no limit).
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> Wait {
        let deadline = sys::deadline_in(timeout);
        self.wait_deadline(deadline)
    }

    /// Blocks until stopped or until the absolute deadline on the monotonic clock.
    pub fn wait_deadline(&self, deadline: Option<u64>) -> Wait {
        if self.inner.wait_until(deadline) {
            Wait::Stopped
        } else {
            Wait::TimedOut
        }
    }

    /// Raw pointer for the C layer (one strong reference moves into it).
    pub fn into_raw(self) -> *const Inner {
        Arc::into_raw(self.inner)
    }

    /// Takes back a reference given out by [`Stopper::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and own one reference.
    pub unsafe fn from_raw(p: *const Inner) -> Stopper {
        // SAFETY: forwarded from the caller's contract.
        Stopper {
            inner: unsafe { Arc::from_raw(p) },
        }
    }

    /// A borrowed pointer, valid while `self` lives.
    pub fn as_ptr(&self) -> *const Inner {
        Arc::as_ptr(&self.inner)
    }
}

/// Waits until any of `list` stops; `Some(index)` of a stopped one, or `None` on time-out.
/// `None` entries never stop.
pub fn wait_any(list: &[Option<&Stopper>], deadline: Option<u64>) -> Option<usize> {
    try_wait_any(list, deadline).unwrap_or_else(|_| out_of_memory())
}

/// [`wait_any`], or `Err(Status::NoMem)` when the wake-up cannot be registered for lack of
/// memory (nothing is left registered then).
pub(crate) fn try_wait_any(
    list: &[Option<&Stopper>],
    deadline: Option<u64>,
) -> Result<Option<usize>, Status> {
    let first = || list.iter().position(|s| s.is_some_and(|s| s.is_set()));
    if let Some(i) = first() {
        return Ok(Some(i));
    }
    crate::base::fork::after_fork_check();
    // On this stack: every waker naming it is removed before the function returns.
    let signal = AtomicU32::new(0);
    let mut registered = Vec::new();
    if registered.try_reserve_exact(list.len()).is_err() {
        return Err(Status::NoMem);
    }
    let mut failed = None;
    for s in list.iter().flatten() {
        // SAFETY: `wake_word` only wakes; removed below, before `signal` goes away.
        let waker = unsafe { Waker::new(wake_word, &signal as *const AtomicU32 as *const ()) };
        match s.inner.add_waker(waker) {
            Ok(id) => registered.push((s, id)),
            Err(Status::Stopped) => {
                signal.store(1, Ordering::Release);
                break;
            }
            Err(st) => {
                failed = Some(st);
                signal.store(1, Ordering::Release);
                break;
            }
        }
    }
    while signal.load(Ordering::Acquire) == 0 {
        if futex::wait(&signal, 0, deadline, false) == sys::FutexWait::TimedOut {
            break;
        }
    }
    for (s, id) in registered {
        s.inner.remove_waker(id);
    }
    match (first(), failed) {
        (Some(i), _) => Ok(Some(i)),
        (None, Some(st)) => Err(st),
        (None, None) => Ok(None),
    }
}
