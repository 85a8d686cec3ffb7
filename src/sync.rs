//! The synchronisation primitives of the core state machine (`stopper.rs`, `workers.rs`):
//! std's, or loom's when built with `--cfg loom` so that `tests/loom.rs` can explore every
//! interleaving of stop, wait, register/unregister, child linking and enter/exit/join.
//! The service thread, shared memory and the channel keep std's types and are not modelled.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU8};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI32, AtomicU32, AtomicU8};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// A pause in a spin loop (under loom, a point where another model thread may run).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}

/// Gives up the processor (under loom, to another model thread).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// The calling thread's id, as hooks receive it (`pthread_self()`); under loom, a unique number
/// per model thread (they may share one OS thread).
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_key() -> u64 {
    crate::sys::thread_id()
}

#[cfg(loom)]
pub(crate) fn thread_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    loom::thread_local! {
        static KEY: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    KEY.with(|k| *k)
}

/// Futex wait/wake on a state word of the core. Real futexes normally; under loom an exact
/// model of them: one global mutex + condvar, with the value check and the sleep done under the
/// mutex and the wake taking it, so a lost wake-up in the callers' protocol shows up as a
/// deadlock that loom reports. Deadlines are not modelled: a timed wait may time out at once,
/// which is one of the behaviours a real timed wait has.
pub(crate) mod futex {
    use super::AtomicU32;
    use crate::sys::FutexWait;

    #[cfg(not(loom))]
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<u64>,
        shared: bool,
    ) -> FutexWait {
        crate::sys::futex_wait(word, expected, deadline, shared)
    }

    #[cfg(not(loom))]
    pub(crate) fn wake_all(word: &AtomicU32, shared: bool) {
        crate::sys::futex_wake_all(word, shared)
    }

    #[cfg(loom)]
    loom::lazy_static! {
        static ref PARK: (loom::sync::Mutex<()>, loom::sync::Condvar) = (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }

    #[cfg(loom)]
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<u64>,
        _shared: bool,
    ) -> FutexWait {
        use std::sync::atomic::Ordering;
        if deadline.is_some() {
            return FutexWait::TimedOut;
        }
        let g = PARK.0.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return FutexWait::Retry;
        }
        drop(PARK.1.wait(g).unwrap());
        FutexWait::Retry
    }

    #[cfg(loom)]
    pub(crate) fn wake_all(_word: &AtomicU32, _shared: bool) {
        let _g = PARK.0.lock().unwrap();
        PARK.1.notify_all();
    }
}
