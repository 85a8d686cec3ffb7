//! The service thread: one per process, started lazily, gone when nothing is pending. It fires
//! deadlines and repeated hooks from one ordered map (earliest first), so 100 000 pending
//! deadlines cost one thread and O(log n) per operation.
//!
//! Lock order: a stopper's lock may be held while calling `schedule`/`cancel` (which take the
//! service lock); the service thread never takes a stopper's lock while holding its own, and
//! nothing that could run user code or drop a stopper happens under the service lock.
//!
//! Fork: the child inherits the pending timers but not the thread; a fork handler marks the
//! thread gone, and the next call that schedules or waits starts a new one.
//! Unload: `shutdown` (run from the shared library's finalizer) stops and joins an idle thread,
//! so a plugin host that `dlclose`s the library keeps no thread running its code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::status::Status;
use crate::stopper::Inner;
use crate::sys;

/// What a timer does when it comes due.
pub(crate) enum Timer {
    /// Stop `target` with `reason` if this deadline is still the armed one.
    Deadline { target: Arc<Inner>, reason: i32 },
    /// Call worker `key`'s hook again.
    Repeat { target: Arc<Inner>, key: u64, reason: i32 },
    /// Run a closure (process watching, signal stops).
    Task(Box<dyn FnOnce() + Send>),
}

#[derive(Default)]
struct State {
    timers: BTreeMap<(u64, u64), Timer>,
    next_id: u64,
    running: bool,
    /// The thread is running a timer's action (user code may be on its stack).
    busy: bool,
    quit: bool,
    thread: Option<JoinHandle<()>>,
}

struct Service {
    state: Mutex<State>,
    cv: Condvar,
}

static SERVICE: Service = Service { state: Mutex::new(State::new()), cv: Condvar::new() };
static AFTER_FORK: AtomicBool = AtomicBool::new(false);
static ATFORK: Once = Once::new();

impl State {
    const fn new() -> State {
        State { timers: BTreeMap::new(), next_id: 0, running: false, busy: false, quit: false, thread: None }
    }
}

fn lock() -> MutexGuard<'static, State> {
    SERVICE.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Schedules `timer` at the absolute monotonic time `due`; returns its id for `cancel`.
pub(crate) fn schedule(due: u64, timer: Timer) -> Result<u64, Status> {
    let mut st = lock();
    st.next_id += 1;
    let id = st.next_id;
    let earliest = st.timers.first_key_value().map(|(k, _)| k.0);
    st.timers.insert((due, id), timer);
    if let Err(s) = ensure_thread(&mut st) {
        let t = st.timers.remove(&(due, id));
        drop(st);
        drop(t);
        return Err(s);
    }
    if earliest.map_or(true, |e| due < e) {
        SERVICE.cv.notify_all();
    }
    Ok(id)
}

/// Removes timer `id` due at `due`; returns it so the caller drops it with no lock held.
pub(crate) fn cancel(due: u64, id: u64) -> Option<Timer> {
    let mut st = lock();
    let t = st.timers.remove(&(due, id));
    if st.timers.is_empty() {
        SERVICE.cv.notify_all(); // let an idle thread exit now
    }
    t
}

/// The number of pending timers (for tests and diagnostics).
pub fn pending() -> usize {
    lock().timers.len()
}

/// Whether the service thread is running (for tests and diagnostics).
pub fn thread_running() -> bool {
    lock().running
}

/// Restarts the thread in a forked child that inherited pending timers.
pub(crate) fn after_fork_check() {
    if AFTER_FORK.load(Ordering::Relaxed) {
        let mut st = lock();
        AFTER_FORK.store(false, Ordering::Relaxed);
        if !st.timers.is_empty() {
            let _ = ensure_thread(&mut st);
        }
    }
}

fn ensure_thread(st: &mut State) -> Result<(), Status> {
    ATFORK.call_once(|| sys::at_fork(fork_prepare, fork_parent, fork_child));
    AFTER_FORK.store(false, Ordering::Relaxed);
    if st.running || st.quit {
        return Ok(());
    }
    // A thread that found nothing to do has set `running = false` and is returning: join it
    // so that at most one exists.
    if let Some(h) = st.thread.take() {
        let _ = h.join();
    }
    let h = std::thread::Builder::new()
        .name("stopper-service".into())
        .stack_size(256 * 1024)
        .spawn(run)
        .map_err(|_| Status::Os)?;
    st.running = true;
    st.thread = Some(h);
    Ok(())
}

fn run() {
    let mut st = lock();
    loop {
        if st.quit {
            break;
        }
        let now = sys::now_ns();
        let Some((&(due, id), _)) = st.timers.first_key_value() else { break };
        if due > now {
            st = SERVICE.cv.wait_timeout(st, Duration::from_nanos(due - now)).unwrap_or_else(|e| e.into_inner()).0;
            continue;
        }
        let timer = st.timers.remove(&(due, id)).expect("first key is present");
        st.busy = true;
        drop(st);
        fire(id, timer);
        st = lock();
        st.busy = false;
    }
    st.running = false;
    SERVICE.cv.notify_all();
}

fn fire(id: u64, timer: Timer) {
    // A panic in user code must not take the service thread (and every later deadline) down.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match timer {
        Timer::Deadline { target, reason } => target.deadline_fired(id, reason),
        Timer::Repeat { target, key, reason } => drop(crate::workers::repeat_hook(&target, key, reason)),
        Timer::Task(f) => f(),
    }));
}

/// Stops and joins the service thread if it is idle (called when the library is unloaded or
/// the process exits). A thread busy in user code is left alone: waiting for it at exit could
/// deadlock with a lock the exiting thread holds.
pub fn shutdown() {
    let mut st = lock();
    st.quit = true;
    SERVICE.cv.notify_all();
    let deadline = sys::now_ns() + 2_000_000_000;
    while st.running && !st.busy && sys::now_ns() < deadline {
        st = SERVICE.cv.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
    }
    if !st.running {
        if let Some(h) = st.thread.take() {
            drop(st);
            let _ = h.join();
        }
    }
}

// Fork handling: hold the service lock across fork so the child never inherits it locked by
// a thread that does not exist there.
thread_local! {
    static FORK_GUARD: std::cell::RefCell<Option<MutexGuard<'static, State>>> = const { std::cell::RefCell::new(None) };
}

fn fork_prepare() {
    let g = lock();
    let _ = FORK_GUARD.try_with(|f| *f.borrow_mut() = Some(g));
}

fn fork_parent() {
    let _ = FORK_GUARD.try_with(|f| f.borrow_mut().take());
}

fn fork_child() {
    let _ = FORK_GUARD.try_with(|f| {
        if let Some(mut g) = f.borrow_mut().take() {
            // The thread did not come along: forget it (its handle names a thread of the parent).
            std::mem::forget(g.thread.take());
            g.running = false;
            g.busy = false;
            if !g.timers.is_empty() {
                AFTER_FORK.store(true, Ordering::Relaxed);
            }
        }
    });
}
