//! The synchronisation primitives of the core state machine (`stopper.rs`, `workers.rs`):
//! std's, or loom's when built with `--cfg loom` so that `tests/loom.rs` can explore every
//! interleaving of stop, wait, register/unregister, child linking and enter/exit/join.
//! The service thread, shared memory and the channel keep std's types and are not modelled.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU8};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI32, AtomicU32, AtomicU8};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

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
    crate::base::sys::thread_id()
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
    use crate::base::sys::FutexWait;

    #[cfg(not(loom))]
    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<u64>,
        shared: bool,
    ) -> FutexWait {
        crate::base::sys::futex_wait(word, expected, deadline, shared)
    }

    #[cfg(not(loom))]
    pub(crate) fn wake_all(word: &AtomicU32, shared: bool) {
        crate::base::sys::futex_wake_all(word, shared)
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

/// The fork gate: no per-object lock of the library (a stopper's, a channel's) is held by any
/// thread at a `fork`, so a child never inherits one locked by a thread it does not have.
///
/// glibc's `malloc` does the same for its arenas: the fork's prepare handler closes the gate
/// (`close`) and waits until no thread is inside a gated section; threads that want to enter
/// wait on the gate's futex word until it opens again (`open`, in both parent and child). A
/// section is entered once per thread (a thread-local depth): a thread already inside takes
/// more locks without waiting, so nested locks cannot deadlock against a closing gate. No
/// thread sleeps inside a section: the stopper's condition waits leave it while they sleep
/// (`Inner::cv_wait` is a futex wait, not a condition variable that re-locks behind the gate's
/// back), and user code never runs under a lock.
///
/// Order at a fork (service.rs): the gate closes first, then the process-wide locks are taken
/// (shared stoppers', then the service's); a gated section may take those, never the reverse.
pub(crate) mod gate {
    #[cfg(not(loom))]
    mod imp {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

        /// Threads inside a section (or about to find the gate closed and back off), counted
        /// in stripes, one cache line each: a thread always counts in the same stripe, so
        /// threads working on different stripes never write the same line (a sender and a
        /// receiver of a channel, say). Only a fork reads them all.
        const STRIPES: usize = 16;

        #[repr(align(64))]
        struct Stripe(AtomicU32);

        static INSIDE: [Stripe; STRIPES] = [const { Stripe(AtomicU32::new(0)) }; STRIPES];
        /// 1 while a fork is being prepared; threads wait on it.
        static CLOSED: AtomicU32 = AtomicU32::new(0);
        /// Hands out stripes to threads in turn.
        static NEXT_STRIPE: AtomicU32 = AtomicU32::new(0);

        thread_local! {
            /// (sections entered and not left, this thread's stripe + 1; 0 = none yet).
            static STATE: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
        }

        pub(crate) fn enter() {
            let first = STATE.try_with(|st| {
                let (depth, mut stripe) = st.get();
                if stripe == 0 {
                    stripe = NEXT_STRIPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        % STRIPES as u32
                        + 1;
                }
                st.set((depth + 1, stripe));
                (depth, stripe - 1)
            });
            // Nested (or a thread in its last destructors, which no fork runs beside): pass.
            let Ok((0, stripe)) = first else { return };
            let count = &INSIDE[stripe as usize].0;
            loop {
                count.fetch_add(1, SeqCst);
                if CLOSED.load(SeqCst) == 0 {
                    return;
                }
                leave_count(count);
                crate::base::sys::futex_wait(&CLOSED, 1, None, false);
            }
        }

        pub(crate) fn leave() {
            let last = STATE.try_with(|st| {
                let (depth, stripe) = st.get();
                let depth = depth.saturating_sub(1);
                st.set((depth, stripe));
                (depth, stripe.wrapping_sub(1))
            });
            if let Ok((0, stripe)) = last {
                leave_count(&INSIDE[stripe as usize % STRIPES].0);
            }
        }

        fn leave_count(count: &AtomicU32) {
            if count.fetch_sub(1, SeqCst) == 1 && CLOSED.load(SeqCst) != 0 {
                crate::base::sys::futex_wake_all(count, false);
            }
        }

        /// Closes the gate and waits until no thread is inside (the fork's prepare handler).
        /// A thread that counts itself after the gate closed sees it closed and backs off, so
        /// once every stripe has been seen at zero, one after the other, nobody is inside.
        pub(crate) fn close() {
            CLOSED.store(1, SeqCst);
            for stripe in &INSIDE {
                loop {
                    let n = stripe.0.load(SeqCst);
                    if n == 0 {
                        break;
                    }
                    crate::base::sys::futex_wait(&stripe.0, n, None, false);
                }
            }
        }

        /// Opens the gate after the fork (parent), waking the threads that waited.
        pub(crate) fn open() {
            CLOSED.store(0, SeqCst);
            crate::base::sys::futex_wake_all(&CLOSED, false);
        }

        /// In the child: only the forking thread exists, and it is outside every section; a
        /// parent thread caught between its count and its look at the gate is forgotten.
        pub(crate) fn open_in_child() {
            for stripe in &INSIDE {
                stripe.0.store(0, SeqCst);
            }
            CLOSED.store(0, SeqCst);
        }
    }

    /// Under loom the gate is not modelled (no fork there): sections are plain locks.
    #[cfg(loom)]
    mod imp {
        pub(crate) fn enter() {}
        pub(crate) fn leave() {}
        pub(crate) fn close() {}
        pub(crate) fn open() {}
        pub(crate) fn open_in_child() {}
    }

    pub(crate) use imp::*;
}

/// A mutex guard taken inside the fork gate (see [`gate`]): the lock is released first, then
/// the section is left.
pub(crate) struct Gated<'a, T>(std::mem::ManuallyDrop<MutexGuard<'a, T>>);

impl<T> Gated<'_, T> {
    /// Locks `m` inside the gate; poisoning is ignored (no user code runs under these locks).
    pub(crate) fn lock(m: &Mutex<T>) -> Gated<'_, T> {
        gate::enter();
        Gated(std::mem::ManuallyDrop::new(
            m.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl<T> std::ops::Deref for Gated<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Gated<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> Drop for Gated<'_, T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; not used after.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.0) };
        gate::leave();
    }
}
