//! Signals as interrupts: a do-nothing handler installed without `SA_RESTART`, so that a
//! thread blocked in `read`, `accept`, `nanosleep`, `poll`… returns `EINTR` when signalled,
//! and a hook that signals one thread. The library never takes a signal that already has a
//! handler: a plugin must not steal its host's signals.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::base::status::Status;
use crate::base::sys;

/// Signals whose handler the library installed (bit n = signal n).
static INSTALLED: AtomicU64 = AtomicU64::new(0);
/// Signals that stop stoppers (`stop_on_signal`).
static STOP_SIGNALS: AtomicU64 = AtomicU64::new(0);
/// Signals installed as interrupts (`install`): theirs stays for the process's life.
static INTERRUPT_SIGNALS: AtomicU64 = AtomicU64::new(0);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

// Fork: the install lock is also the unload hook's (`uninstall_all` runs at exit). A thread
// inside `install` when another thread forks would leave it locked in the child for good, and
// the child would hang in `exit()`: the forking thread holds it across `fork` (taken after the
// service's lock, the order `take_for_stop` uses), and both sides release it.
thread_local! {
    static FORK_GUARD: std::cell::RefCell<Option<std::sync::MutexGuard<'static, ()>>> =
        const { std::cell::RefCell::new(None) };
}

/// After the service's lock: see `base::fork`.
const FORK_RANK: usize = 3;

crate::base::fork::fork_hooks!(FORK_RANK);

fn fork_prepare() {
    let g = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = FORK_GUARD.try_with(|f| *f.borrow_mut() = Some(g));
}

/// Both sides of the fork: the thread that took the lock in `fork_prepare` releases it.
fn fork_done() {
    let _ = FORK_GUARD.try_with(|f| f.borrow_mut().take());
}

fn fork_parent() {
    fork_done();
}

fn fork_child() {
    fork_done();
}

/// Nothing to restart: the dispositions came along.
fn after_fork() {}

/// Stop signals received and not yet taken (bit n = signal n).
static PENDING: AtomicU64 = AtomicU64::new(0);
/// What the handler calls after marking a stop signal pending (set by whoever runs the stops:
/// the service thread). Async-signal-safe by contract.
static ON_STOP_SIGNAL: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Signals received by the library's handler (diagnostics; also keeps the handler's code
/// unique, so that identical-code folding can never merge it with a host's empty handler and
/// make the library mistake the host's handler for its own).
pub static INTERRUPTS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// The library's signal handler, shared by interrupts and stops on a signal. For an interrupt
/// its effect is that a blocking system call in the signalled thread returns `EINTR` (it is
/// installed without `SA_RESTART`); for a stop signal it marks the signal pending and wakes
/// whoever runs the stops.
extern "C" fn handler(signo: libc::c_int) {
    // Atomics and the registered wake (a futex wake) only: async-signal-safe; errno is
    // preserved for the interrupted code.
    let saved = sys::errno();
    INTERRUPTS_RECEIVED.fetch_add(1, Ordering::Relaxed);
    if (1..64).contains(&signo) && STOP_SIGNALS.load(Ordering::Acquire) & (1u64 << signo) != 0 {
        PENDING.fetch_or(1u64 << signo, Ordering::AcqRel);
        let wake = ON_STOP_SIGNAL.load(Ordering::Acquire);
        if !wake.is_null() {
            // SAFETY: only `fn()` values are stored (`on_stop_signal`).
            let wake: fn() = unsafe { std::mem::transmute::<*mut (), fn()>(wake) };
            wake();
        }
    }
    sys::set_errno(saved);
}

/// The handler's address, to install it and to recognise it in `sigaction` results.
fn handler_address() -> libc::sighandler_t {
    handler as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Sets what the handler calls when a stop signal arrives; `wake` must be async-signal-safe.
pub(crate) fn on_stop_signal(wake: fn()) {
    ON_STOP_SIGNAL.store(wake as *mut (), Ordering::Release);
}

/// Takes the stop signals received since the last call (bit n = signal n).
pub(crate) fn take_pending() -> u64 {
    PENDING.swap(0, Ordering::AcqRel)
}

/// Whether the library may use `signo` as an interrupt at all: in range, catchable, and not
/// one of the synchronous/fatal signals a no-op handler would turn into a busy loop.
pub fn usable(signo: i32) -> bool {
    let max = libc::SIGRTMAX();
    signo >= 1
        && signo <= max
        && signo < 64
        && ![
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGABRT,
            libc::SIGTRAP,
            libc::SIGSYS,
        ]
        .contains(&signo)
}

/// Installs the no-op interrupt handler for `signo`, once. `Inval` when the signal is not
/// usable or already has a disposition other than the default or the library's own handler.
pub fn install(signo: i32) -> Status {
    let st = install_with(signo, 0);
    if st == Status::Ok {
        INTERRUPT_SIGNALS.fetch_or(1u64 << signo, Ordering::AcqRel);
    }
    st
}

fn install_with(signo: i32, flags: libc::c_int) -> Status {
    if !usable(signo) {
        return Status::Inval;
    }
    register_fork_hooks();
    let _g = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let old = match sys::sigaction_get(signo) {
        Ok(a) => a,
        Err(_) => return Status::Os,
    };
    let ours = handler_address();
    if old.sa_sigaction == ours {
        INSTALLED.fetch_or(1u64 << signo, Ordering::AcqRel);
        return Status::Ok;
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Status::Inval; // the host's handler (or its SIG_IGN): not ours to take
    }
    match sys::sigaction_set(signo, ours, flags) {
        Ok(()) => {
            INSTALLED.fetch_or(1u64 << signo, Ordering::AcqRel);
            Status::Ok
        }
        Err(_) => Status::Os,
    }
}

/// Puts back the default disposition of every signal whose handler is still the library's:
/// run when the library is unloaded, so a later signal never jumps into unmapped code.
pub(crate) fn uninstall_all() {
    let _g = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let installed = INSTALLED.swap(0, Ordering::AcqRel);
    STOP_SIGNALS.store(0, Ordering::Release);
    INTERRUPT_SIGNALS.store(0, Ordering::Release);
    let ours = handler_address();
    for signo in 1..64 {
        if installed & (1u64 << signo) != 0
            && sys::sigaction_get(signo).is_ok_and(|a| a.sa_sigaction == ours)
        {
            let _ = sys::sigaction_set(signo, libc::SIG_DFL, 0);
        }
    }
}

/// Takes `signo` for stopping (called under the service lock, like `release_stop_signal`, so
/// a registration and a release never interleave). A stop signal restarts interrupted system
/// calls (the stop reaches waiters through the stopper itself); if the library already
/// installed it as an interrupt, it stays one.
pub(crate) fn take_for_stop(signo: i32) -> Status {
    let st = install_with(signo, libc::SA_RESTART);
    if st == Status::Ok {
        STOP_SIGNALS.fetch_or(1u64 << signo, Ordering::AcqRel);
    }
    st // refused: not marked as a stop signal either
}

/// Called by the service thread once no stop-on-signal registration is left for `signo`: the
/// signal goes back to its default disposition (unless it is also an interrupt signal), so a
/// second SIGTERM ends the process as it would have without the library.
pub(crate) fn release_stop_signal(signo: i32) {
    let _g = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let bit = 1u64 << signo;
    STOP_SIGNALS.fetch_and(!bit, Ordering::AcqRel);
    if INTERRUPT_SIGNALS.load(Ordering::Acquire) & bit != 0 {
        return;
    }
    if sys::sigaction_get(signo).is_ok_and(|a| a.sa_sigaction == handler_address())
        && sys::sigaction_set(signo, libc::SIG_DFL, 0).is_ok()
    {
        INSTALLED.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Sends `signo` to thread `thread_id` (a `pthread_t`). Only valid for a live thread: the
/// hook rules guarantee that for workers.
pub fn interrupt(thread_id: u64, signo: i32) -> Status {
    if !(1..64).contains(&signo) {
        return Status::Inval;
    }
    // SAFETY: the caller guarantees `thread_id` names a live thread of this process.
    let r = unsafe { libc::pthread_kill(thread_id as libc::pthread_t, signo) };
    if r == 0 {
        Status::Ok
    } else {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = r };
        Status::Os
    }
}
