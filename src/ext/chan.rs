//! A stoppable multi-producer multi-consumer channel of 64-bit items: blocking send and
//! receive return `Stopped` the moment the stopper stops.
//!
//! A queue under a mutex that grows as items arrive, by fallible reservations only: a bounded
//! channel's capacity is a limit, not an allocation made up front (a channel of
//! [`MAX_CAPACITY`] costs a few words until it fills), and a send that cannot get memory
//! returns `NoMem` instead of aborting the host.
//!
//! Waiting: senders sleep on one futex word, receivers on another; each word is bumped (and
//! its sleepers woken, only when there are any) when what its side waits for may have
//! changed — an item in (receivers), an item out (senders), the close (both). A blocked
//! operation on a stopper registers a wake-up on it for the time it sleeps: the stop bumps the
//! word it sleeps on. A receive after close keeps returning queued items until the queue is
//! empty.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::base::status::Status;
use crate::base::sys;
use crate::token::callbacks::Waker;
use crate::token::stopper::Stopper;

/// The largest capacity of a bounded channel; beyond it, use an unbounded channel
/// (capacity 0). Memory follows the items queued, not the capacity.
pub const MAX_CAPACITY: usize = 1 << 24;

/// The stopper's waker for a blocked operation: bumps its side's futex word and wakes the
/// side's sleepers.
unsafe fn bump(word: *const ()) {
    // SAFETY: registered with a side's word, which outlives the registration (see the caller).
    let w = unsafe { &*(word as *const AtomicU32) };
    w.fetch_add(1, Ordering::SeqCst);
    sys::futex_wake_all(w, false);
}

/// One side's futex word and its sleepers.
struct Side {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Side {
    const fn new() -> Side {
        Side {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Something this side waits for may have changed.
    fn bump(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            sys::futex_wake_all(&self.seq, false);
        }
    }

    /// Sleeps while the word still reads `seen` (or until `deadline`).
    fn sleep(&self, seen: u32, deadline: Option<u64>) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        sys::futex_wait(&self.seq, seen, deadline, false);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The queue's guard: unlocks, then leaves the fork gate.
struct QueueGuard<'a>(std::mem::ManuallyDrop<std::sync::MutexGuard<'a, VecDeque<u64>>>);

impl std::ops::Deref for QueueGuard<'_> {
    type Target = VecDeque<u64>;
    fn deref(&self) -> &VecDeque<u64> {
        &self.0
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut VecDeque<u64> {
        &mut self.0
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.0) };
        crate::base::sync::gate::leave();
    }
}

/// A stoppable MPMC queue of `u64` (bounded, or unbounded with capacity 0).
pub struct Channel {
    queue: Mutex<VecDeque<u64>>,
    /// 0: unbounded.
    cap: usize,
    closed: AtomicBool,
    senders: Side,
    receivers: Side,
}

/// A wake-up registered on a stopper for one blocked operation; removed on drop (before the
/// operation returns, so the word it points to outlives it).
struct StopWake<'a> {
    stopper: &'a Stopper,
    id: u64,
}

impl Drop for StopWake<'_> {
    fn drop(&mut self) {
        self.stopper.inner.remove_waker(self.id);
    }
}

impl Channel {
    /// A channel holding at most `capacity` items; 0 means unbounded. `None` past
    /// [`MAX_CAPACITY`].
    pub fn with_capacity(capacity: usize) -> Option<Channel> {
        (capacity <= MAX_CAPACITY).then(|| Channel::new(capacity))
    }

    /// A channel holding at most `capacity` items; 0 means unbounded. Allocates nothing until
    /// items arrive.
    ///
    /// # Panics
    /// When `capacity` exceeds [`MAX_CAPACITY`] (see [`Channel::with_capacity`]).
    pub fn new(capacity: usize) -> Channel {
        assert!(
            capacity <= MAX_CAPACITY,
            "channel capacity {capacity} exceeds {MAX_CAPACITY}"
        );
        Channel {
            queue: Mutex::new(VecDeque::new()),
            cap: capacity,
            closed: AtomicBool::new(false),
            senders: Side::new(),
            receivers: Side::new(),
        }
    }

    /// Locks the queue inside the fork gate (`sync::gate`), so a forked child never finds it
    /// locked. No user code runs under this lock and no step leaves the queue half changed.
    fn lock(&self) -> QueueGuard<'_> {
        crate::base::sync::gate::enter();
        QueueGuard(std::mem::ManuallyDrop::new(
            self.queue.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Registers (once per blocked operation) a wake-up of `side` on `stopper`.
    fn watch<'a>(
        &'a self,
        stopper: &'a Stopper,
        side: &'a Side,
        slot: &mut Option<StopWake<'a>>,
    ) -> Result<(), Status> {
        if slot.is_none() {
            let word = NonNull::from(&side.seq);
            // SAFETY: `bump` only wakes; `StopWake` removes the waker before `self` (and so
            // the word) can go away.
            let waker = unsafe { Waker::new(bump, word.as_ptr() as *const ()) };
            let id = stopper.inner.add_waker(waker)?;
            *slot = Some(StopWake { stopper, id });
        }
        Ok(())
    }

    /// Sends `item`: `Ok`, `Stopped` (checked first), `TimedOut`, `Closed`, or `NoMem` when the
    /// queue cannot grow. `deadline` is absolute on the monotonic clock (`None`: no limit).
    pub fn send(&self, item: u64, stopper: Option<&Stopper>, deadline: Option<u64>) -> Status {
        let stopped = || stopper.is_some_and(|s| s.is_set());
        let mut wake = None;
        loop {
            if stopped() {
                return Status::Stopped;
            }
            let seen = self.senders.seq.load(Ordering::SeqCst);
            {
                let mut q = self.lock();
                if self.closed.load(Ordering::Acquire) {
                    return Status::Closed;
                }
                if self.cap == 0 || q.len() < self.cap {
                    if q.try_reserve(1).is_err() {
                        return Status::NoMem;
                    }
                    q.push_back(item);
                    drop(q);
                    self.receivers.bump();
                    return Status::Ok;
                }
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Status::TimedOut;
            }
            if let Some(s) = stopper {
                if let Err(st) = self.watch(s, &self.senders, &mut wake) {
                    return st;
                }
            }
            self.senders.sleep(seen, deadline);
        }
    }

    /// Receives an item: `Ok(item)`, or `Err(Stopped | TimedOut | Closed | NoMem)`; `Closed`
    /// only once the channel is closed and empty.
    pub fn recv(&self, stopper: Option<&Stopper>, deadline: Option<u64>) -> Result<u64, Status> {
        let stopped = || stopper.is_some_and(|s| s.is_set());
        let mut wake = None;
        loop {
            if stopped() {
                return Err(Status::Stopped);
            }
            let seen = self.receivers.seq.load(Ordering::SeqCst);
            {
                let mut q = self.lock();
                if let Some(v) = q.pop_front() {
                    drop(q);
                    if self.cap != 0 {
                        self.senders.bump();
                    }
                    return Ok(v);
                }
                if self.closed.load(Ordering::Acquire) {
                    return Err(Status::Closed);
                }
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Err(Status::TimedOut);
            }
            if let Some(s) = stopper {
                self.watch(s, &self.receivers, &mut wake)?;
            }
            self.receivers.sleep(seen, deadline);
        }
    }

    /// Closes the channel: sends fail with `Closed`, receives drain then return `Closed`.
    pub fn close(&self) {
        {
            let _q = self.lock();
            self.closed.store(true, Ordering::Release);
        }
        self.senders.bump();
        self.receivers.bump();
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
