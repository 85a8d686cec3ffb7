//! The stop as a future: [`Stopper::stopped`] and [`Stopper::stopped_owned`].
//!
//! How it works. The future registers nothing until it is first polled. Then it stores the
//! task's waker in itself and registers a raw stop callback (no allocation: the callback's words
//! are a pointer to the pinned future) that takes the waker out and wakes it. Registration
//! checks the flag under the stopper's lock, so a stop that races with the first poll either
//! happens before (the registration runs the callback at once and the poll returns `Ready`) or
//! after (the callback finds the waker): no wake-up is lost. A later poll with another waker
//! swaps it in under the future's own small lock and then reads the flag again, so a stop that
//! ran the callback with the old waker is seen there. Dropping the future unregisters the
//! callback, waiting if the stopping thread is running it right now: after the drop nothing
//! refers to the future's memory, which is why it must be pinned (it is `!Unpin`).
//!
//! The callback marks `fired` after its last access to the future, and only then wakes the
//! waker it took, so a future whose callback has fired is dropped without touching the stopper
//! (and a waker that drops the future from inside `wake`, on the stopping thread, finds nothing
//! left to do).

use std::fmt;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::token::callbacks::RawFn;
use crate::token::stopper::Stopper;

/// The registration of a stop future: pinned in it, since the callback points into it.
struct Waiter {
    shared: Shared,
    /// The registered callback's id; 0 while not registered. Only the future touches it.
    id: u64,
    _pinned: PhantomPinned,
}

/// The part of a `Waiter` that the stop callback reaches, through a shared reference while
/// the future may be polled: only interior mutability here, so that the future writing `id`
/// never touches what the callback reads.
struct Shared {
    /// The waker to wake at the stop; taken by the callback.
    waker: Mutex<Option<Waker>>,
    /// Set by the callback after its last access to this waiter.
    fired: AtomicBool,
    /// The stop's reason, stored by the callback before `fired`: a task woken by the stop reads
    /// its own memory, not the stopper's, which the stopping thread is still writing.
    reason: AtomicI32,
}

impl Waiter {
    fn new() -> Waiter {
        Waiter {
            shared: Shared {
                waker: Mutex::new(None),
                fired: AtomicBool::new(false),
                reason: AtomicI32::new(0),
            },
            id: 0,
            _pinned: PhantomPinned,
        }
    }

    fn poll(self: Pin<&mut Self>, stopper: &Stopper, cx: &mut Context<'_>) -> Poll<i32> {
        if self.shared.fired.load(Ordering::Acquire) {
            return Poll::Ready(self.shared.reason.load(Ordering::Relaxed));
        }
        if stopper.is_set() {
            return Poll::Ready(stopper.reason());
        }
        // SAFETY: nothing is moved out of the waiter; its address stays valid until `drop`
        // below, which unregisters the callback that holds it.
        let this = unsafe { self.get_unchecked_mut() };
        if this.id == 0 && !this.shared.fired.load(Ordering::Acquire) {
            *lock(&this.shared.waker) = Some(cx.waker().clone());
            let raw = RawFn {
                call: wake_waiter,
                ctx: &this.shared as *const Shared as usize,
                data: 0,
            };
            // SAFETY: `wake_waiter` may be called with a pointer to this pinned waiter from any
            // thread until the callback has run or is unregistered, which `drop` does before
            // the memory goes away.
            return match unsafe { stopper.on_stop_raw(raw) } {
                Ok(id) => {
                    this.id = id;
                    Poll::Pending
                }
                // Stopped meanwhile: the callback has already run, here.
                Err(_) => Poll::Ready(stopper.reason()),
            };
        }
        {
            let mut slot = lock(&this.shared.waker);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // The callback may have taken the old waker just before the swap: it runs only after
        // the flag is set, so the flag says so.
        if stopper.is_set() {
            Poll::Ready(stopper.reason())
        } else {
            Poll::Pending
        }
    }

    /// Unregisters the callback if it may still run (`drop` of the future).
    fn release(self: Pin<&mut Self>, stopper: &Stopper) {
        // SAFETY: as in `poll`.
        let this = unsafe { self.get_unchecked_mut() };
        if this.id != 0 && !this.shared.fired.load(Ordering::Acquire) {
            // Returns once the callback is removed, or has finished running elsewhere.
            stopper.unregister(this.id);
        }
        this.id = 0;
    }
}

fn lock(m: &Mutex<Option<Waker>>) -> std::sync::MutexGuard<'_, Option<Waker>> {
    // A waker's clone or drop that panicked leaves nothing half done in an Option.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stop callback of a waiting future: `ctx` is the address of its pinned waiter's
/// `Shared` part.
///
/// # Safety
/// `ctx` must point to a live `Shared` (the future is pinned and has not finished dropping).
unsafe fn wake_waiter(ctx: usize, _data: usize, _tid: u64, reason: i32) {
    // SAFETY: the future unregisters this callback in its drop (waiting while it runs), so the
    // waiter is alive until `fired` is set below.
    let waiter = unsafe { &*(ctx as *const Shared) };
    let waker = lock(&waiter.waker).take();
    waiter.reason.store(reason, Ordering::Relaxed);
    // The last access to the waiter: from here on its future may be dropped on another thread.
    waiter.fired.store(true, Ordering::Release);
    if let Some(w) = waker {
        w.wake();
    }
}

/// The future returned by [`Stopper::stopped`]: ready with the stop's reason once the stopper
/// is stopped.
///
/// It borrows the stopper; [`StoppedOwned`] (from [`Stopper::stopped_owned`]) owns a handle
/// instead, for a future that must be `'static`. It is `Send` and may be polled again after it
/// has completed (it is ready again, with the same reason).
#[must_use = "futures do nothing unless polled"]
pub struct StoppedFuture<'a> {
    stopper: &'a Stopper,
    waiter: Waiter,
}

/// The future returned by [`Stopper::stopped_owned`]: [`StoppedFuture`] holding its own handle
/// to the stopper, so that it is `'static` (for `tokio::spawn`, say).
#[must_use = "futures do nothing unless polled"]
pub struct StoppedOwned {
    stopper: Stopper,
    waiter: Waiter,
}

impl Future for StoppedFuture<'_> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        // SAFETY: structural pinning of `waiter`; `stopper` is a plain reference.
        let this = unsafe { self.get_unchecked_mut() };
        let waiter = unsafe { Pin::new_unchecked(&mut this.waiter) };
        waiter.poll(this.stopper, cx)
    }
}

impl Drop for StoppedFuture<'_> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs on the pinned value in place (the pinning guarantee); the waiter
        // is not used after this.
        let waiter = unsafe { Pin::new_unchecked(&mut self.waiter) };
        waiter.release(self.stopper);
    }
}

impl Future for StoppedOwned {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        // SAFETY: structural pinning of `waiter`; the stopper handle is never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let waiter = unsafe { Pin::new_unchecked(&mut this.waiter) };
        waiter.poll(&this.stopper, cx)
    }
}

impl Drop for StoppedOwned {
    fn drop(&mut self) {
        // SAFETY: as for `StoppedFuture`.
        let waiter = unsafe { Pin::new_unchecked(&mut self.waiter) };
        waiter.release(&self.stopper);
    }
}

impl StoppedOwned {
    /// The stopper this future waits for.
    pub fn stopper(&self) -> &Stopper {
        &self.stopper
    }
}

impl fmt::Debug for StoppedFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoppedFuture")
            .field("stopper", self.stopper)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StoppedOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoppedOwned")
            .field("stopper", &self.stopper)
            .finish_non_exhaustive()
    }
}

impl Stopper {
    /// A future that completes with the stop's reason once this stopper is stopped.
    ///
    /// It runs on any executor (tokio, async-std, smol, `futures::executor`, your own): it
    /// needs no runtime, timer or thread of its own. Its first poll registers the task's waker
    /// with the stopper (a stop callback, without allocating); the stop wakes it; dropping the
    /// future unregisters, so a future abandoned in a `select!` leaves nothing behind on a
    /// long-lived stopper. A stop that races with the first poll is never missed.
    ///
    /// The waker is woken on the thread that stops the stopper, as its stop callbacks run.
    ///
    /// ```
    /// use stopper::Stopper;
    ///
    /// let s = Stopper::new();
    /// let worker = {
    ///     let s = s.clone();
    ///     std::thread::spawn(move || futures::executor::block_on(s.stopped()))
    /// };
    /// s.stop(7);
    /// assert_eq!(worker.join().unwrap(), 7);
    /// ```
    ///
    /// Cancelling other work when the stop comes, with tokio:
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// use std::time::Duration;
    /// let s = stopper::Stopper::new();
    /// s.stop_after(Some(Duration::from_millis(10)), 0);
    /// tokio::select! {
    ///     reason = s.stopped() => assert_eq!(reason, stopper::REASON_DEADLINE),
    ///     _ = tokio::time::sleep(Duration::from_secs(60)) => unreachable!("the deadline comes first"),
    /// }
    /// # });
    /// ```
    pub fn stopped(&self) -> StoppedFuture<'_> {
        StoppedFuture {
            stopper: self,
            waiter: Waiter::new(),
        }
    }

    /// [`Stopper::stopped`] owning this handle: a `'static` future, for spawning.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    /// # rt.block_on(async {
    /// let s = stopper::Stopper::new();
    /// let task = tokio::spawn(s.clone().stopped_owned());
    /// s.stop(3);
    /// assert_eq!(task.await.unwrap(), 3);
    /// # });
    /// ```
    pub fn stopped_owned(self) -> StoppedOwned {
        StoppedOwned {
            stopper: self,
            waiter: Waiter::new(),
        }
    }
}
