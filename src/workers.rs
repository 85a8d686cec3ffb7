//! Workers: threads that have entered a stopper. Enter/exit nest per thread; `join` stops and
//! waits for the workers; the interrupt hook reaches a worker blocked where no flag is checked.
//!
//! Hook rules: a hook call for a worker starts only under the stopper's lock after checking the
//! worker is still inside; `exit` removes the worker under that lock and first waits for a call
//! in progress. So no hook call for a thread starts after its exit returned.

use std::cell::RefCell;
use std::sync::Arc;

use crate::service;
use crate::status::Status;
use crate::stopper::{Inner, RawFn, Stopper};
use crate::sys;

/// How a stop reaches a worker blocked elsewhere.
#[derive(Clone)]
pub enum HookFn {
    /// A C function and its data (see [`RawFn`]); called with the worker's thread id.
    Raw(RawFn),
    /// A Rust closure, called with the worker's thread id and the reason.
    Boxed(Arc<dyn Fn(u64, i32) + Send + Sync>),
}

/// An interrupt hook: `func` is called for the worker when the stopper stops, then again
/// every `repeat_ns` (when > 0) from the service thread until the worker exits.
#[derive(Clone)]
pub struct Hook {
    pub func: HookFn,
    pub repeat_ns: i64,
}

impl Hook {
    fn call(&self, tid: u64, reason: i32) {
        match &self.func {
            HookFn::Raw(f) => {
                // SAFETY: the RawFn's creator guaranteed it is callable until removed.
                unsafe { (f.call)(f.ctx, f.data, tid, reason) }
            }
            HookFn::Boxed(f) => f(tid, reason),
        }
    }
}

pub(crate) struct Worker {
    key: u64,
    tid: u64,
    hook: Option<Hook>,
    /// The first call was made (or is not owed: entered after the stop).
    delivered: bool,
    in_hook: bool,
    /// Pending repeat timer (due, id).
    repeat: Option<(u64, u64)>,
}

struct Entered {
    stopper: Stopper,
    key: u64,
}

/// The calling thread's entered stoppers, innermost last. Its destructor exits what a thread
/// left entered when it ended, so `join` never waits for a dead thread.
struct Stack(RefCell<Vec<Entered>>);

impl Drop for Stack {
    fn drop(&mut self) {
        while let Some(e) = self.0.get_mut().pop() {
            leave(&e.stopper.inner, e.key);
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static STACK: Stack = const { Stack(RefCell::new(Vec::new())) };
}

#[cfg(loom)]
loom::thread_local! {
    static STACK: Stack = Stack(RefCell::new(Vec::new()));
}

impl Stopper {
    /// Makes the calling thread a worker of this stopper. Returns `Status::Stopped` when it is
    /// already stopped (the thread is inside all the same and must exit).
    pub fn enter_raw(&self, hook: Option<Hook>) -> Status {
        self.enter_impl(hook, false)
    }

    fn enter_impl(&self, hook: Option<Hook>, from_spawn: bool) -> Status {
        service::after_fork_check();
        let tid = crate::sync::thread_key();
        let (key, stopped) = {
            let mut g = self.inner.lock_slow();
            if from_spawn {
                g.pending_spawns -= 1;
            }
            g.next_worker_key += 1;
            let key = g.next_worker_key;
            let stopped = self.inner.is_set();
            g.workers.push(Worker {
                key,
                tid,
                hook,
                delivered: stopped,
                in_hook: false,
                repeat: None,
            });
            (key, stopped)
        };
        let pushed = STACK
            .try_with(|st| {
                st.0.borrow_mut().push(Entered {
                    stopper: self.clone(),
                    key,
                })
            })
            .is_ok();
        if !pushed {
            leave(&self.inner, key); // thread is ending: cannot be inside anything
            return Status::Internal;
        }
        if stopped {
            Status::Stopped
        } else {
            Status::Ok
        }
    }

    /// Leaves the innermost entered stopper, which must be this one (else `Status::Inval`).
    pub fn exit(&self) -> Status {
        let popped = STACK.try_with(|st| {
            let mut v = st.0.borrow_mut();
            match v.last() {
                Some(e) if e.stopper == *self => v.pop(),
                _ => None,
            }
        });
        match popped {
            Ok(Some(e)) => {
                leave(&e.stopper.inner, e.key);
                Status::Ok
            }
            _ => Status::Inval,
        }
    }

    /// Enters for the life of the returned guard.
    pub fn enter(&self, hook: Option<Hook>) -> Scope {
        let status = self.enter_raw(hook);
        Scope {
            stopper: self.clone(),
            stopped_at_entry: status == Status::Stopped,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Whether the calling thread is a worker of this stopper.
    pub fn is_entered(&self) -> bool {
        STACK
            .try_with(|st| st.0.borrow().iter().any(|e| e.stopper == *self))
            .unwrap_or(false)
    }

    /// Stops (reason REQUESTED if running), then waits until every worker has exited.
    /// `Deadlk` when the caller is itself a worker.
    pub fn join_deadline(&self, deadline: Option<u64>) -> Status {
        if self.is_entered() {
            return Status::Deadlk;
        }
        self.stop(0);
        let Some(mut g) = self.inner.lock_existing() else {
            return Status::Ok;
        };
        loop {
            if g.workers.is_empty() && g.pending_spawns == 0 {
                return Status::Ok;
            }
            let (ng, timed_out) = self.inner.cv_wait(g, deadline);
            g = ng;
            if timed_out && !(g.workers.is_empty() && g.pending_spawns == 0) {
                return Status::TimedOut;
            }
        }
    }

    /// [`Stopper::join_deadline`] with a relative limit (`None`: no limit).
    pub fn join(&self, timeout: Option<std::time::Duration>) -> Status {
        let deadline = sys::deadline_in(timeout);
        self.join_deadline(deadline)
    }

    /// Starts a thread that enters this stopper, runs `f` and exits; `join` waits for it.
    /// The thread counts as a worker from this call on, so a `join` right after it waits.
    pub fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> Status {
        self.inner.lock_slow().pending_spawns += 1;
        let s = self.clone();
        let r = std::thread::Builder::new()
            .name("stopper-worker".into())
            .spawn(move || {
                s.enter_impl(None, true);
                f();
                s.exit();
            });
        match r {
            Ok(_) => Status::Ok,
            Err(_) => {
                let mut g = self.inner.lock_slow();
                g.pending_spawns -= 1;
                self.inner.notify(&g);
                Status::Os
            }
        }
    }
}

/// The calling thread's innermost entered stopper.
pub fn current() -> Option<Stopper> {
    STACK
        .try_with(|st| st.0.borrow().last().map(|e| e.stopper.clone()))
        .ok()
        .flatten()
}

/// The calling thread's innermost entered stopper as a borrowed pointer (valid until the
/// thread exits it).
pub fn current_ptr() -> *const Inner {
    STACK
        .try_with(|st| {
            st.0.borrow()
                .last()
                .map_or(std::ptr::null(), |e| e.stopper.as_ptr())
        })
        .unwrap_or(std::ptr::null())
}

/// RAII for [`Stopper::enter`]: exits on drop. Bound to its thread.
#[must_use = "dropping the scope exits the stopper"]
pub struct Scope {
    stopper: Stopper,
    stopped_at_entry: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Scope {
    /// Whether the stopper was already stopped when entered.
    pub fn stopped_at_entry(&self) -> bool {
        self.stopped_at_entry
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.stopper.exit();
    }
}

/// Removes worker `key`, waiting for a hook call in progress for it; cancels its repeats.
fn leave(inner: &Arc<Inner>, key: u64) {
    let mut g = inner.lock_slow();
    loop {
        let Some(pos) = g.workers.iter().position(|w| w.key == key) else {
            return;
        };
        if g.workers[pos].in_hook {
            g = inner.cv_wait(g, None).0;
            continue;
        }
        let w = g.workers.swap_remove(pos);
        inner.notify(&g);
        drop(g);
        if let Some((due, id)) = w.repeat {
            drop(service::cancel(due, id));
        }
        return;
    }
}

pub(crate) type Panic = Box<dyn std::any::Any + Send + 'static>;

/// Calls each worker's hook once (the stop's step 4), on the stopping thread. A panicking
/// (Rust) hook does not keep the others from being called; the first panic is returned.
pub(crate) fn deliver_hooks(inner: &Arc<Inner>, reason: i32) -> Option<Panic> {
    let mut first_panic = None;
    loop {
        let mut g = inner.lock_slow();
        let Some(pos) = g
            .workers
            .iter()
            .position(|w| w.hook.is_some() && !w.delivered)
        else {
            return first_panic;
        };
        let w = &mut g.workers[pos];
        w.delivered = true;
        let key = w.key;
        if let Some(p) = call_hook(inner, g, key, reason) {
            first_panic.get_or_insert(p);
        }
    }
}

/// Called by the service thread when a repeat comes due.
pub(crate) fn repeat_hook(inner: &Arc<Inner>, key: u64, reason: i32) -> Option<Panic> {
    let mut g = inner.lock_slow();
    let w = g.workers.iter_mut().find(|w| w.key == key)?;
    w.repeat = None;
    call_hook(inner, g, key, reason)
}

/// With the lock held and worker `key` present: marks it in a hook call, calls without the
/// lock, then schedules the next repeat if the hook asks for one and the worker is still in.
fn call_hook(
    inner: &Arc<Inner>,
    mut g: crate::stopper::SlowGuard<'_>,
    key: u64,
    reason: i32,
) -> Option<Panic> {
    let w = g.workers.iter_mut().find(|w| w.key == key)?;
    let hook = w.hook.clone()?;
    let tid = w.tid;
    w.in_hook = true;
    drop(g);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.call(tid, reason)));
    let mut g = inner.lock_slow();
    if let Some(w) = g.workers.iter_mut().find(|w| w.key == key) {
        w.in_hook = false;
        if hook.repeat_ns > 0 && w.repeat.is_none() {
            let due = sys::now_ns().saturating_add(hook.repeat_ns as u64);
            let timer = service::Timer::Repeat {
                target: Arc::clone(inner),
                key,
                reason,
            };
            if let Ok(id) = service::schedule(due, timer) {
                w.repeat = Some((due, id));
            }
        }
    }
    inner.notify(&g);
    drop(g);
    r.err()
}
