//! The service thread: one per process, started lazily, gone when nothing is pending. It fires
//! deadlines and repeated hooks from a binary heap of (due, id) over a slab of timers, so
//! 100 000 pending deadlines cost one thread and O(log n) per operation. Both grow only by
//! fallible reservations: scheduling under memory pressure is `NoMem`, never an abort. A
//! cancelled timer leaves its heap entry behind (skipped when it surfaces); the heap is
//! compacted when such entries outnumber the live ones.
//!
//! Lock order: a stopper's lock may be held while calling `schedule`/`cancel` (which take the
//! service lock); the service thread never takes a stopper's lock while holding its own, and
//! nothing that could run user code or drop a stopper happens under the service lock.
//!
//! Fork: the child inherits the pending timers but not the thread; a fork handler marks the
//! thread gone, and the next call that schedules or waits starts a new one.
//! Unload: `shutdown` (run from the shared library's finalizer) stops and joins an idle thread,
//! so a plugin host that `dlclose`s the library keeps no thread running its code.
//!
//! Waking: the thread sleeps on a futex "epoch" word, not a condition variable, so that a
//! signal handler can wake it with async-signal-safe operations only (an atomic add and a
//! futex wake): that is how `stop_on_signal` hands its stop to this thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::base::rc::Arc;
use crate::base::slab::OrderedSlab;
use crate::base::status::Status;
use crate::base::sys;
use crate::token::callbacks::Waker;
use crate::token::inner::Inner;

/// What a timer does when it comes due.
pub(crate) enum Timer {
    /// Calls `fire(&target, timer id, arg, reason)` (a deadline, a repeated hook). The timer
    /// keeps `target` alive until it fires or is cancelled.
    Stopper {
        target: Arc<Inner>,
        fire: fn(&Arc<Inner>, u64, u64, i32),
        arg: u64,
        reason: i32,
    },
    /// Runs a closure (process watching).
    Task(Box<dyn FnOnce() + Send>),
}

/// A stopper to stop with `REASON_SIGNAL` when `signo` arrives.
struct SignalStop {
    signo: i32,
    target: Arc<Inner>,
}

#[derive(Default)]
struct State {
    /// Pending timers by id, with their due time.
    timers: OrderedSlab<(u64, Timer)>,
    /// (due, id) of every pending timer, earliest on top; also of cancelled ones, skipped.
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    /// Ids of descriptor watches.
    next_id: u64,
    running: bool,
    /// The thread is running a timer's action (user code may be on its stack).
    busy: bool,
    quit: bool,
    thread: Option<sys::LibThread>,
    /// Stoppers to stop on a signal; kept alive until stopped (like a deadline).
    signal_stops: Vec<SignalStop>,
    /// Descriptors polled for readability (process watching: a pidfd is readable once its
    /// process ended): (id, fd, what to run then, once).
    fd_watches: Vec<FdWatch>,
}

/// A descriptor the thread polls: (id, fd, what to run once it is readable).
type FdWatch = (u64, RawFd, Box<dyn FnOnce() + Send>);

impl State {
    const fn new() -> State {
        State {
            timers: OrderedSlab::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            running: false,
            busy: false,
            quit: false,
            thread: None,
            signal_stops: Vec::new(),
            fd_watches: Vec::new(),
        }
    }

    fn has_work(&self) -> bool {
        !self.timers.is_empty() || !self.signal_stops.is_empty() || !self.fd_watches.is_empty()
    }

    /// The earliest pending timer (due, id), dropping the heap's stale entries on the way.
    fn first(&mut self) -> Option<(u64, u64)> {
        while let Some(&Reverse((due, id))) = self.heap.peek() {
            if self.timers.get(id).is_some_and(|(d, _)| *d == due) {
                return Some((due, id));
            }
            self.heap.pop();
        }
        None
    }

    /// Removes timer `id`; its heap entry goes when it surfaces, or here when stale entries
    /// outnumber the live ones (no allocation either way).
    fn remove(&mut self, id: u64) -> Option<Timer> {
        let t = self.timers.remove(id).map(|(_, t)| t);
        if self.heap.len() > 2 * self.timers.len() + 64 {
            let timers = &self.timers;
            self.heap
                .retain(|Reverse((due, id))| timers.get(*id).is_some_and(|(d, _)| d == due));
        }
        t
    }
}

static STATE: Mutex<State> = Mutex::new(State::new());
/// Bumped (then futex-woken) whenever the thread must look again: new earliest timer, work
/// removed, a signal arrived, shutdown.
static EPOCH: AtomicU32 = AtomicU32::new(0);
/// In a forked child: timers came along but the thread did not (see `fork_child`).
static AFTER_FORK: AtomicBool = AtomicBool::new(false);

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes the service thread. Async-signal-safe: an atomic add and a futex wake.
pub(crate) fn kick() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
    sys::futex_wake_all(&EPOCH, false);
    // The thread may be in `ppoll` (descriptors to watch) instead of the futex wait.
    if POLLING.load(Ordering::SeqCst) {
        let fd = WAKE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            sys::eventfd_signal(fd);
        }
    }
}

/// Schedules `timer` at the absolute monotonic time `due`; returns its id for `cancel`.
pub(crate) fn schedule(due: u64, timer: Timer) -> Result<u64, Status> {
    let mut st = lock();
    let earliest = st.first().map(|k| k.0);
    if st.heap.try_reserve(1).is_err() {
        drop(st);
        drop(timer); // holds a stopper: dropped with no lock held
        return Err(Status::NoMem);
    }
    let id = match st.timers.try_push((due, timer)) {
        Ok(id) => id,
        Err(entry) => {
            drop(st);
            drop(entry);
            return Err(Status::NoMem);
        }
    };
    st.heap.push(Reverse((due, id))); // reserved: no allocation
    if let Err(s) = ensure_thread(&mut st) {
        let t = st.remove(id);
        drop(st);
        drop(t);
        return Err(s);
    }
    drop(st);
    if earliest.is_none_or(|e| due < e) {
        kick();
    }
    Ok(id)
}

/// Stops `stopper` with `REASON_SIGNAL` when the process receives `signo`. The handler only
/// does async-signal-safe work; the stop, with its callbacks, runs on the service thread. The
/// same rules as [`crate::install_signal`] decide which signals may be used. The stopper is
/// kept alive until it stops; once it stops for any reason the registration goes away.
pub fn stop_on_signal(stopper: &crate::token::stopper::Stopper, signo: i32) -> Status {
    if !crate::base::signal::usable(signo) {
        return Status::Inval;
    }
    if stopper.is_set() {
        return Status::Stopped;
    }
    match add_signal_stop(signo, Arc::clone(&stopper.inner)) {
        Ok(()) => Status::Ok,
        Err(s) => s,
    }
}

/// The service thread's waker: a stopper with a signal stop registered wakes it when it stops
/// some other way, so the registration goes.
unsafe fn kick_waker(_: *const ()) {
    kick();
}

fn add_signal_stop(signo: i32, target: Arc<Inner>) -> Result<(), Status> {
    crate::base::signal::on_stop_signal(kick);
    let mut st = lock();
    // The thread first: a call that fails leaves the signal's disposition as it found it.
    ensure_thread(&mut st)?;
    let taken = crate::base::signal::take_for_stop(signo);
    if taken != Status::Ok {
        drop(st);
        kick(); // a thread started for nothing ends
        return Err(taken);
    }
    st.signal_stops.push(SignalStop {
        signo,
        target: Arc::clone(&target),
    });
    drop(st);
    // When the stopper stops some other way, let the thread drop the entry (and maybe exit).
    // SAFETY: `kick_waker` only wakes, and uses no data.
    let waker = unsafe { Waker::new(kick_waker, std::ptr::null()) };
    if target.add_waker(waker).is_err() {
        kick();
    }
    Ok(())
}

/// Removes timer `id` due at `due`; returns it so the caller drops it with no lock held.
pub(crate) fn cancel(due: u64, id: u64) -> Option<Timer> {
    let mut st = lock();
    let _ = due;
    let t = st.remove(id);
    let idle = !st.has_work();
    drop(st);
    if idle {
        kick(); // let an idle thread exit now
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

fn ensure_thread(st: &mut State) -> Result<(), Status> {
    register_fork_hooks();
    AFTER_FORK.store(false, Ordering::Relaxed);
    if st.running || st.quit {
        return Ok(());
    }
    // A thread that found nothing to do has set `running = false` and is returning: join it
    // so that at most one exists.
    if let Some(h) = st.thread.take() {
        h.join();
    }
    let h = sys::spawn_library_thread(c"stopper-service", run).map_err(|e| {
        sys::set_errno(e.raw_os_error().unwrap_or(libc::EAGAIN));
        Status::Os
    })?;
    st.running = true;
    st.thread = Some(h);
    Ok(())
}

fn run() {
    // Deadlines are absolute futex time-outs: with the 50 µs of timer slack a thread inherits,
    // the kernel may end each of them that much late. The service thread asks for the least
    // (it sleeps until the earliest deadline; nothing here spins).
    sys::set_timer_slack_ns(1);
    let mut st = lock();
    loop {
        if st.quit {
            break;
        }
        // Read before the signals: a signal whose kick comes after this read makes the wait
        // below return at once (read after them, its kick could be slept through).
        let epoch = EPOCH.load(Ordering::SeqCst);
        // Signals first: their stops run here, never in the handler.
        let pending = crate::base::signal::take_pending();
        let mut stop_now = Vec::new();
        let mut keep = Vec::with_capacity(st.signal_stops.len());
        for e in st.signal_stops.drain(..) {
            if e.target.is_set() {
                stop_now.push((e.target, None, e.signo)); // stopped otherwise: drop the entry
            } else if pending & (1u64 << e.signo) != 0 {
                stop_now.push((
                    e.target,
                    Some(crate::token::stopper::REASON_SIGNAL),
                    e.signo,
                ));
            } else {
                keep.push(e);
            }
        }
        st.signal_stops = keep;
        if !stop_now.is_empty() {
            // Signals none of the remaining registrations wants any more go back to default.
            let still: u64 = st.signal_stops.iter().fold(0, |m, e| m | 1u64 << e.signo);
            let done: u64 = stop_now
                .iter()
                .fold(0, |m, (_, _, signo)| m | 1u64 << signo);
            for signo in (1..64).filter(|n| done & !still & (1u64 << n) != 0) {
                crate::base::signal::release_stop_signal(signo);
            }
            st.busy = true;
            drop(st);
            for (target, reason, _) in stop_now {
                if let Some(r) = reason {
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.stop(r)));
                }
            }
            st = lock();
            st.busy = false;
            continue;
        }
        let now = sys::now_ns();
        let first = st.first();
        match first {
            None if st.signal_stops.is_empty() && st.fd_watches.is_empty() => break,
            Some((due, id)) if due <= now => {
                let timer = st.remove(id).expect("first key is present");
                st.busy = true;
                drop(st);
                fire(id, timer);
                st = lock();
                st.busy = false;
            }
            next if !st.fd_watches.is_empty() => st = poll_fd_watches(st, epoch, next.map(|k| k.0)),
            next => {
                drop(st);
                sys::futex_wait(&EPOCH, epoch, next.map(|(due, _)| due), false);
                st = lock();
            }
        }
    }
    st.running = false;
    drop(st);
    kick(); // wake `shutdown`, which waits for `running` to clear
}

fn fire(id: u64, timer: Timer) {
    // A panic in user code must not take the service thread (and every later deadline) down.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match timer {
        Timer::Stopper {
            target,
            fire,
            arg,
            reason,
        } => fire(&target, id, arg, reason),
        Timer::Task(f) => f(),
    }));
}

/// Stops and joins the service thread if it is idle (called when the library is unloaded or
/// the process exits). A thread busy in user code is left alone: waiting for it at exit could
/// deadlock with a lock the exiting thread holds.
pub fn shutdown() {
    let mut st = lock();
    st.quit = true;
    drop(st);
    kick();
    let deadline = sys::now_ns() + 2_000_000_000;
    loop {
        st = lock();
        if !st.running || st.busy || sys::now_ns() >= deadline {
            break;
        }
        let epoch = EPOCH.load(Ordering::Acquire);
        drop(st);
        sys::futex_wait(
            &EPOCH,
            epoch,
            Some((sys::now_ns() + 50_000_000).min(deadline)),
            false,
        );
    }
    if !st.running {
        if let Some(h) = st.thread.take() {
            drop(st);
            h.join();
        }
    }
}

// Fork: the service's lock is held across fork (see `base::fork`), so the child never inherits
// it locked by a thread that does not exist there; in the child the thread is marked gone and
// restarted by the next call that needs it when timers came along. The lock is taken after the
// shared stoppers' (a gated section may arm a deadline under a stopper's lock, never the
// reverse).
const FORK_RANK: usize = 2;

crate::base::fork::fork_hooks!(FORK_RANK);

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
            // The thread did not come along: its handle names a thread of the parent.
            if let Some(h) = g.thread.take() {
                sys::abandon(h);
            }
            g.running = false;
            g.busy = false;
            renew_wake_fd();
            if g.has_work() {
                AFTER_FORK.store(true, Ordering::Relaxed);
                crate::base::fork::retry_later();
            }
        }
    });
}

/// In a forked child that inherited timers: starts the thread (see `base::fork`).
fn after_fork() {
    if AFTER_FORK.load(Ordering::Relaxed) {
        let mut st = lock();
        AFTER_FORK.store(false, Ordering::Relaxed);
        if st.has_work() {
            let _ = ensure_thread(&mut st);
        }
    }
}

// ---- Descriptors the thread polls (process watching). While there are any, the thread waits
// in `ppoll` on them and on an eventfd that `kick` writes (only while the thread is in `ppoll`:
// `POLLING` and the epoch form the same no-lost-wake-up handshake as the futex wait).

/// The eventfd that wakes a polling thread; -1 until the first descriptor watch. Kept for the
/// process's life (a signal handler's `kick` may write it at any moment).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The thread is in (or about to enter) `ppoll`.
static POLLING: AtomicBool = AtomicBool::new(false);

/// Runs `on_ready` on this thread, once, when `fd` becomes readable (the watch is removed
/// first). The caller keeps `fd` open until the watch ends (`on_ready` ran or `unwatch_fd`).
pub(crate) fn watch_fd(fd: RawFd, on_ready: Box<dyn FnOnce() + Send>) -> Result<u64, Status> {
    let mut st = lock();
    if WAKE_FD.load(Ordering::Relaxed) < 0 {
        let wake = sys::eventfd().map_err(|e| {
            sys::set_errno(e.raw_os_error().unwrap_or(libc::EMFILE));
            Status::Os
        })?;
        WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(wake), Ordering::Relaxed);
    }
    ensure_thread(&mut st)?;
    st.next_id += 1;
    let id = st.next_id;
    st.fd_watches.push((id, fd, on_ready));
    drop(st);
    kick();
    Ok(id)
}

/// Ends watch `id`; returns its action (to be dropped with no lock held) if it had not run.
pub(crate) fn unwatch_fd(id: u64) -> Option<Box<dyn FnOnce() + Send>> {
    let mut st = lock();
    let at = st.fd_watches.iter().position(|w| w.0 == id)?;
    let (_, _, action) = st.fd_watches.swap_remove(at);
    drop(st);
    kick(); // the thread polls one descriptor less (or ends)
    Some(action)
}

/// Waits until a watched descriptor is readable, a kick, or the absolute deadline `due`; runs
/// the actions of the ready ones (unlocked). Takes and gives back the lock.
fn poll_fd_watches(
    st: MutexGuard<'static, State>,
    epoch: u32,
    due: Option<u64>,
) -> MutexGuard<'static, State> {
    let wake = WAKE_FD.load(Ordering::Relaxed);
    let mut fds = Vec::with_capacity(st.fd_watches.len() + 1);
    fds.push(libc::pollfd {
        fd: wake,
        events: libc::POLLIN,
        revents: 0,
    });
    let ids: Vec<u64> = st.fd_watches.iter().map(|w| w.0).collect();
    fds.extend(st.fd_watches.iter().map(|w| libc::pollfd {
        fd: w.1,
        events: libc::POLLIN,
        revents: 0,
    }));
    drop(st);
    POLLING.store(true, Ordering::SeqCst);
    if EPOCH.load(Ordering::SeqCst) == epoch {
        let _ = sys::poll_until(&mut fds, due);
    }
    POLLING.store(false, Ordering::SeqCst);
    let mut drain = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a local buffer from our non-blocking eventfd.
    unsafe { libc::read(wake, drain.as_mut_ptr().cast(), 8) };
    let mut st = lock();
    let ready: Vec<u64> = ids
        .iter()
        .zip(&fds[1..])
        .filter(|(_, p)| p.revents != 0)
        .map(|(&id, _)| id)
        .collect();
    if ready.is_empty() {
        return st;
    }
    let mut actions = Vec::with_capacity(ready.len());
    st.fd_watches.retain_mut(|w| {
        if ready.contains(&w.0) {
            actions.push(std::mem::replace(&mut w.2, Box::new(|| ())));
            false
        } else {
            true
        }
    });
    st.busy = true;
    drop(st);
    for action in actions {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
    }
    let mut st = lock();
    st.busy = false;
    st
}

/// In a forked child: the wake eventfd is shared with the parent (a drain here could eat the
/// parent's wake-up): give the child its own, at the same number.
fn renew_wake_fd() {
    POLLING.store(false, Ordering::SeqCst);
    let old = WAKE_FD.load(Ordering::Relaxed);
    if old >= 0 && !sys::eventfd_renew(old) {
        WAKE_FD.store(-1, Ordering::Relaxed);
    }
}
