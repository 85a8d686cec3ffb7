//! Workers: threads that have entered a stopper. Enter/exit nest per thread; `join` stops and
//! waits for the workers; the interrupt hook reaches a worker blocked where no flag is checked.
//!
//! Hook rules: a hook call for a worker starts only under the stopper's lock after checking the
//! worker is still inside; `exit` removes the worker under that lock and first waits for a call
//! in progress. So no hook call for a thread starts after its exit returned.

use std::cell::RefCell;
use std::sync::Arc;

use crate::base::rc::Arc as Rc;

use crate::base::status::Status;
use crate::base::sys;
use crate::ext::service;
use crate::token::attach::{Attachment, Panic};
use crate::token::callbacks::RawFn;
use crate::token::inner::{Inner, SlowGuard};
use crate::token::stopper::Stopper;

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

/// A stopper's workers: its attachment.
#[derive(Default)]
struct Workers {
    list: Vec<Worker>,
    /// Threads `spawn` started that have not entered yet (room for them is reserved).
    pending_spawns: usize,
    next_key: u64,
}

impl Attachment for Workers {
    /// After the descriptor is signalled (SPEC's order).
    const ORDER: u8 = 20;

    fn on_stop(stopper: &Rc<Inner>, reason: i32) -> Option<Panic> {
        deliver_hooks(stopper, reason)
    }
}

/// The workers of a locked stopper, if it ever had any.
fn workers<'a>(g: &'a mut SlowGuard<'_>) -> Option<&'a mut Workers> {
    g.attachment::<Workers>()
}

/// The workers of a locked stopper, attached now if it had none; `NoMem` when it cannot be.
fn workers_or_new<'a>(g: &'a mut SlowGuard<'_>) -> Result<&'a mut Workers, Status> {
    g.attach(Workers::default)
}

/// Whether a locked stopper has no worker inside and none on the way.
fn idle(g: &mut SlowGuard<'_>) -> bool {
    workers(g).is_none_or(|w| w.list.is_empty() && w.pending_spawns == 0)
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

/// Runs `f` on the calling thread's stack: `Err(Inval)` when it has none and `create` is
/// false, `Err(NoMem)` when it cannot be created, `Err(Internal)` when the thread is ending.
///
/// Not a Rust `thread_local!` with a destructor: registering one calls glibc's
/// `__cxa_thread_atexit_impl`, which aborts the process when its allocation fails. The stack is
/// a fallibly allocated box behind a pthread key (whose destructor exits what the thread left
/// entered); keys below 32 take no allocation in `pthread_setspecific`.
#[cfg(not(loom))]
fn with_stack<R>(create: bool, f: impl FnOnce(&Stack) -> R) -> Result<R, Status> {
    use std::sync::OnceLock;
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
    unsafe extern "C" fn destroy(p: *mut std::ffi::c_void) {
        // SAFETY: the value set below: a leaked `Box<Stack>`, taken back once (the key's value
        // is cleared before its destructor runs).
        let st = unsafe { Box::from_raw(p as *mut Stack) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(st)));
    }
    let key = *KEY.get_or_init(|| {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: `k` is written on success; `destroy` has the destructor's signature.
        (unsafe { libc::pthread_key_create(&mut k, Some(destroy)) } == 0).then_some(k)
    });
    let Some(key) = key else {
        return Err(Status::Internal);
    };
    // SAFETY: a key created above.
    let mut p = unsafe { libc::pthread_getspecific(key) } as *const Stack;
    if p.is_null() {
        if !create {
            return Err(Status::Inval);
        }
        let st =
            crate::base::rc::try_box(Stack(RefCell::new(Vec::new()))).map_err(|_| Status::NoMem)?;
        let raw = Box::into_raw(st);
        // SAFETY: a key created above; the box is the thread's from now on.
        if unsafe { libc::pthread_setspecific(key, raw as *const std::ffi::c_void) } != 0 {
            // SAFETY: not handed over: still ours.
            drop(unsafe { Box::from_raw(raw) });
            return Err(Status::NoMem);
        }
        p = raw;
    }
    // SAFETY: this thread's stack, freed only by the key's destructor when the thread ends.
    Ok(f(unsafe { &*p }))
}

#[cfg(loom)]
loom::thread_local! {
    static STACK: Stack = Stack(RefCell::new(Vec::new()));
}

#[cfg(loom)]
fn with_stack<R>(_create: bool, f: impl FnOnce(&Stack) -> R) -> Result<R, Status> {
    STACK.try_with(f).map_err(|_| Status::Internal)
}

impl Stopper {
    /// Makes the calling thread a worker of this stopper. Returns `Status::Stopped` when it is
    /// already stopped (the thread is inside all the same and must exit).
    pub fn enter_raw(&self, hook: Option<Hook>) -> Status {
        self.enter_impl(hook, false).0
    }

    /// Enters; for a spawned thread (`from_spawn`) also when the thread's own list cannot
    /// grow: then the worker is registered (so `join` waits for it) but not listed, and the
    /// second value is its key, for `leave` when the thread's body returns.
    fn enter_impl(&self, hook: Option<Hook>, from_spawn: bool) -> (Status, Option<u64>) {
        crate::base::fork::after_fork_check();
        let tid = crate::base::sync::thread_key();
        let (key, stopped) = {
            let mut g = match self.inner.try_lock_slow() {
                Ok(g) => g,
                Err(st) => return (st, None),
            };
            let stopped = self.inner.is_set();
            let ws = match workers_or_new(&mut g) {
                Ok(ws) => ws,
                Err(st) => return (st, None),
            };
            if from_spawn {
                // `spawn` reserved room for this thread's entry.
                ws.pending_spawns -= 1;
            } else {
                let room = ws.pending_spawns + 1;
                if ws.list.try_reserve(room).is_err() {
                    return (Status::NoMem, None);
                }
            }
            ws.next_key += 1;
            let key = ws.next_key;
            ws.list.push(Worker {
                key,
                tid,
                hook,
                delivered: stopped,
                in_hook: false,
                repeat: None,
            });
            (key, stopped)
        };
        let pushed = with_stack(true, |st| {
            let mut v = st.0.borrow_mut();
            if v.try_reserve(1).is_err() {
                return false;
            }
            v.push(Entered {
                stopper: self.clone(),
                key,
            });
            true
        });
        match pushed {
            Ok(true) => {}
            Ok(false) | Err(Status::NoMem) if from_spawn => return (Status::NoMem, Some(key)),
            Ok(false) | Err(Status::NoMem) => {
                leave(&self.inner, key);
                return (Status::NoMem, None);
            }
            Err(_) => {
                leave(&self.inner, key); // thread is ending: cannot be inside anything
                return (Status::Internal, None);
            }
        }
        let st = if stopped { Status::Stopped } else { Status::Ok };
        (st, None)
    }

    /// Leaves the innermost entered stopper, which must be this one (else `Status::Inval`).
    pub fn exit(&self) -> Status {
        let popped = with_stack(false, |st| {
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
        with_stack(false, |st| st.0.borrow().iter().any(|e| e.stopper == *self)).unwrap_or(false)
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
            if idle(&mut g) {
                return Status::Ok;
            }
            let (ng, timed_out) = self.inner.cv_wait(g, deadline);
            g = ng;
            if timed_out && !idle(&mut g) {
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
    /// `NoMem` when memory cannot be had, `Os` (with `errno`) when no thread can be created.
    /// The thread has the process's default stack (`RLIMIT_STACK`), as a `pthread_create`
    /// thread does.
    pub fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> Status {
        {
            let mut g = match self.inner.try_lock_slow() {
                Ok(g) => g,
                Err(st) => return st,
            };
            let ws = match workers_or_new(&mut g) {
                Ok(ws) => ws,
                Err(st) => return st,
            };
            // Room for this thread's entry, so that entering on the new thread cannot fail.
            let room = ws.pending_spawns + 1;
            if ws.list.try_reserve(room).is_err() {
                return Status::NoMem;
            }
            ws.pending_spawns += 1;
        }
        let s = self.clone();
        let st = sys_spawn(move || {
            let (_, unlisted) = s.enter_impl(None, true);
            f();
            match unlisted {
                Some(key) => leave(&s.inner, key),
                None => {
                    s.exit();
                }
            }
        });
        if st != Status::Ok {
            let mut g = self.inner.lock_slow();
            if let Some(ws) = workers(&mut g) {
                ws.pending_spawns -= 1;
            }
            self.inner.notify(&g);
        }
        st
    }
}

/// Starts a detached native thread running `f` with the thread library's default stack
/// ([`sys::spawn_thread`]: nothing on the way can abort on out of memory).
fn sys_spawn<F: FnOnce() + Send + 'static>(f: F) -> Status {
    match sys::spawn_thread(c"stopper-worker", None, f) {
        Ok(t) => {
            drop(t); // detached
            Status::Ok
        }
        Err(e) => {
            let err = e.raw_os_error().unwrap_or(libc::EAGAIN);
            sys::set_errno(err);
            if err == libc::ENOMEM {
                Status::NoMem
            } else {
                Status::Os
            }
        }
    }
}

/// The calling thread's innermost entered stopper.
pub fn current() -> Option<Stopper> {
    with_stack(false, |st| st.0.borrow().last().map(|e| e.stopper.clone()))
        .ok()
        .flatten()
}

/// The calling thread's innermost entered stopper as a borrowed pointer (valid until the
/// thread exits it).
pub fn current_ptr() -> *const Inner {
    with_stack(false, |st| {
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
fn leave(inner: &Rc<Inner>, key: u64) {
    let mut g = inner.lock_slow();
    loop {
        let Some(ws) = workers(&mut g) else { return };
        let Some(pos) = ws.list.iter().position(|w| w.key == key) else {
            return;
        };
        if ws.list[pos].in_hook {
            g = inner.cv_wait(g, None).0;
            continue;
        }
        let w = ws.list.swap_remove(pos);
        inner.notify(&g);
        drop(g);
        if let Some((due, id)) = w.repeat {
            drop(service::cancel(due, id));
        }
        return;
    }
}

/// Calls each worker's hook once (the stop's step 4), on the stopping thread. A panicking
/// (Rust) hook does not keep the others from being called; the first panic is returned.
fn deliver_hooks(inner: &Rc<Inner>, reason: i32) -> Option<Panic> {
    let mut first_panic = None;
    loop {
        let mut g = inner.lock_slow();
        let Some(w) = workers(&mut g).and_then(|ws| {
            ws.list
                .iter_mut()
                .find(|w| w.hook.is_some() && !w.delivered)
        }) else {
            return first_panic;
        };
        w.delivered = true;
        let key = w.key;
        if let Some(p) = call_hook(inner, g, key, reason) {
            first_panic.get_or_insert(p);
        }
    }
}

/// Called by the service thread when worker `key`'s repeat comes due.
fn repeat_hook(inner: &Rc<Inner>, _timer: u64, key: u64, reason: i32) {
    let mut g = inner.lock_slow();
    let Some(w) = workers(&mut g).and_then(|ws| ws.list.iter_mut().find(|w| w.key == key)) else {
        return;
    };
    w.repeat = None;
    if let Some(p) = call_hook(inner, g, key, reason) {
        std::panic::resume_unwind(p); // caught by the service thread
    }
}

/// With the lock held and worker `key` present: marks it in a hook call, calls without the
/// lock, then schedules the next repeat if the hook asks for one and the worker is still in.
fn call_hook(inner: &Rc<Inner>, mut g: SlowGuard<'_>, key: u64, reason: i32) -> Option<Panic> {
    let w = workers(&mut g)?.list.iter_mut().find(|w| w.key == key)?;
    let hook = w.hook.clone()?;
    let tid = w.tid;
    w.in_hook = true;
    drop(g);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.call(tid, reason)));
    let mut g = inner.lock_slow();
    if let Some(w) = workers(&mut g).and_then(|ws| ws.list.iter_mut().find(|w| w.key == key)) {
        w.in_hook = false;
        if hook.repeat_ns > 0 && w.repeat.is_none() {
            let due = sys::now_ns().saturating_add(hook.repeat_ns as u64);
            let timer = service::Timer::Stopper {
                target: Rc::clone(inner),
                fire: repeat_hook,
                arg: key,
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
