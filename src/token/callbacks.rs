//! Callbacks and wake-ups: what a stop runs for others. A callback runs once, on the stopping
//! thread, with no lock held; a waker runs under the lock right after the flag and may only
//! wake. Both are registered by id and removed exactly (see `Inner::unregister`).

use crate::base::slab::Fate;
use crate::base::status::Status;
use crate::base::sync::{futex, AtomicU32};
use crate::token::inner::Inner;
use crate::token::stopper::{out_of_memory, Stopper};
use std::sync::atomic::Ordering;

/// A callback as C gives it: a function and its context, stored without allocation. The core
/// never looks inside `ctx` and `data`; `call(ctx, data, thread_id, reason)` does.
#[derive(Clone, Copy)]
pub struct RawFn {
    /// Called with `ctx`, `data`, a thread id (0 for callbacks) and the reason.
    pub call: unsafe fn(usize, usize, u64, i32),
    /// First context word (typically the C function pointer).
    pub ctx: usize,
    /// Second context word (typically the C `user_data`).
    pub data: usize,
}

impl RawFn {
    fn invoke(&self, tid: u64, reason: i32) {
        // SAFETY: whoever built this RawFn promised (in an `unsafe` constructor call) that
        // `call` may be invoked with these words, from any thread, until it is removed.
        unsafe { (self.call)(self.ctx, self.data, tid, reason) }
    }
}

/// A wake-up run right after the flag is set, under the stopper's lock: it may only wake
/// (set a word, issue a futex wake), never block or run user code. `wait_any` and channel
/// operations register one for the length of a wait; the service thread one per signal stop.
#[derive(Clone, Copy)]
pub(crate) struct Waker {
    wake: unsafe fn(*const ()),
    data: *const (),
}

// SAFETY: see `Waker::new`: `data` is valid, and `wake` callable, from any thread while the
// waker is registered.
unsafe impl Send for Waker {}

impl Waker {
    /// A wake-up calling `wake(data)`.
    ///
    /// # Safety
    /// `wake(data)` must be callable from any thread, and only wake, for as long as the waker
    /// is registered: whoever registers it removes it before `data` goes away.
    pub(crate) unsafe fn new(wake: unsafe fn(*const ()), data: *const ()) -> Waker {
        Waker { wake, data }
    }

    pub(super) fn wake(&self) {
        // SAFETY: promised by the caller of `new`.
        unsafe { (self.wake)(self.data) }
    }
}

/// The waker of `wait_any`: sets its word to 1 and wakes the word's futex sleepers.
pub(super) unsafe fn wake_word(data: *const ()) {
    // SAFETY: registered by `try_wait_any` with its own word, removed before it returns.
    let w = unsafe { &*(data as *const AtomicU32) };
    w.store(1, Ordering::Release);
    futex::wake_all(w, false);
}

pub(crate) enum Action {
    Raw(RawFn),
    Boxed(Box<dyn FnOnce(i32) + Send>),
}

impl Action {
    pub(crate) fn run(self, reason: i32) {
        match self {
            Action::Raw(f) => f.invoke(0, reason),
            Action::Boxed(f) => f(reason),
        }
    }
}

impl Inner {
    /// Registers a callback; gives it back with `Stopped` when already stopped (the caller
    /// runs it inline), with `NoMem` when memory cannot be had.
    pub(crate) fn register(&self, action: Action) -> Result<u64, (Status, Action)> {
        crate::base::fork::after_fork_check();
        let mut g = match self.try_lock_slow() {
            Ok(g) => g,
            Err(st) => return Err((st, action)),
        };
        if self.is_set() {
            return Err((Status::Stopped, action));
        }
        g.callbacks
            .try_push(action)
            .map_err(|action| (Status::NoMem, action))
    }

    pub(crate) fn unregister(&self, id: u64) -> Status {
        let me = crate::base::sync::thread_key();
        let Some(mut g) = self.lock_existing() else {
            return Status::Inval;
        };
        if let Some(action) = g.callbacks.remove(id) {
            // Dropped with no lock held: a closure may own something (a child of this very
            // stopper, say) whose drop takes this lock.
            drop(g);
            drop(action);
            return Status::Ok;
        }
        match g.callbacks.fate(id) {
            // Removed earlier (by an unregister, before or during the stop): it never ran, and
            // "stopped" would tell the caller it did.
            Fate::NeverIssued | Fate::Removed | Fate::Present => return Status::Inval,
            Fate::Popped => {}
        }
        // Taken by the stop: running on another thread right now, wait until it returns, so
        // the caller may free what the callback uses. From inside the callback itself, do not
        // wait.
        while matches!(g.running, Some((rid, rtid)) if rid == id && rtid != me) {
            g = self.cv_wait(g, None).0;
        }
        Status::Stopped
    }

    /// Adds a wake-up for the stop: `Err(Stopped)` when already stopped, `Err(NoMem)`.
    pub(crate) fn add_waker(&self, w: Waker) -> Result<u64, Status> {
        let mut g = self.try_lock_slow()?;
        if self.is_set() {
            return Err(Status::Stopped);
        }
        g.wakers.try_push(w).map_err(|_| Status::NoMem)
    }

    pub(crate) fn remove_waker(&self, id: u64) {
        if let Some(mut g) = self.lock_existing() {
            g.wakers.remove(id);
        }
    }
}

impl Stopper {
    /// Runs `f(reason)` once, on the thread that stops this stopper, or at once on this thread
    /// when it is already stopped (then the returned guard is inert). Dropping the guard
    /// unregisters the callback, blocking while it runs on another thread.
    pub fn on_stop<F: FnOnce(i32) + Send + 'static>(&self, f: F) -> Callback {
        match self.inner.register(Action::Boxed(Box::new(f))) {
            Ok(id) => Callback {
                stopper: Some(self.clone()),
                id,
            },
            Err((Status::NoMem, _)) => out_of_memory(),
            Err((_, action)) => {
                action.run(self.reason());
                Callback {
                    stopper: None,
                    id: 0,
                }
            }
        }
    }

    /// Registers a raw callback (no allocation of its own); `Err(Status::Stopped)` after
    /// running it inline when already stopped, `Err(Status::NoMem)` (not registered, not run)
    /// when the callback list cannot grow.
    ///
    /// # Safety
    /// `f.call` must be callable with `f`'s words from any thread until the callback has run
    /// or has been unregistered.
    pub unsafe fn on_stop_raw(&self, f: RawFn) -> Result<u64, Status> {
        match self.inner.register(Action::Raw(f)) {
            Ok(id) => Ok(id),
            Err((Status::NoMem, _)) => Err(Status::NoMem),
            Err((_, action)) => {
                action.run(self.reason());
                Err(Status::Stopped)
            }
        }
    }

    /// Unregisters callback `id`: `Ok` when removed before it ran, `Stopped` when it has run
    /// (after waiting for it if it is running on another thread), `Inval` for an id never
    /// issued or already removed (also when removed during the stop: it never ran).
    pub fn unregister(&self, id: u64) -> Status {
        self.inner.unregister(id)
    }
}

/// A registered callback; dropping it unregisters (see [`Stopper::on_stop`]).
#[must_use = "dropping the guard unregisters the callback"]
pub struct Callback {
    stopper: Option<Stopper>,
    id: u64,
}

impl Callback {
    /// Unregisters now: true when removed before it ran.
    pub fn unregister(mut self) -> bool {
        self.take() == Status::Ok
    }

    /// Keeps the callback registered for the stopper's lifetime.
    pub fn forget(mut self) {
        self.stopper = None;
    }

    fn take(&mut self) -> Status {
        match self.stopper.take() {
            Some(s) => s.unregister(self.id),
            None => Status::Stopped,
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.take();
    }
}
