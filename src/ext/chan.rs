//! A stoppable multi-producer multi-consumer channel of 64-bit items: blocking send and
//! receive return `Stopped` the moment the stopper stops.
//!
//! **Queue.** Two queues, each under its own mutex, so that senders and receivers do not take
//! the same lock on every item: senders push to the *tail* queue; receivers pop from the *head*
//! queue and, when it runs dry, swap the two (holding both locks, head first), which moves every
//! queued item to the head side in one step and hands the senders the emptied buffer, capacity
//! kept. Order is FIFO: the head queue holds only items sent before every item of the tail
//! queue, and a swap happens only when the head queue is empty. Both queues grow by fallible
//! reservations only: a bounded channel's capacity is a limit, not an allocation made up front
//! (a channel of [`MAX_CAPACITY`] costs a few words until it fills), and a send that cannot get
//! memory returns `NoMem` instead of aborting the host. The capacity counts the items of both
//! queues: `sent` (written under the tail lock) minus `taken` (written under the head lock).
//! A sender keeps the last `taken` it read and reads it again only when that copy says full.
//!
//! **Fork.** Every locked section (one per operation, whichever of the two locks it takes) is
//! entered through the fork gate (`sync::gate`, once per operation): the fork's prepare handler
//! waits until no thread is inside one, so a forked child never inherits a channel lock held by
//! a thread it does not have, nor a queue half changed. No thread sleeps or spins inside a
//! section, and a section takes no other lock of the library.
//!
//! **Waiting.** A side (senders, receivers) that finds nothing to do spins briefly (at most
//! [`SPIN`] pauses, watching a counter of the other side, never a lock), then sleeps on its
//! futex word. It counts itself among the side's sleepers *before* its last look (under the
//! locks that decide), and the other side, after publishing an item (or a free slot), wakes it
//! only when that count is nonzero: an operation that finds the other side awake costs no
//! futex call and no write to a shared word. For the receivers the publishing and the last look
//! are ordered by the tail lock both take; for the senders of a bounded channel, whose last look
//! reads `taken` outside the head lock, by sequentially consistent accesses on both sides
//! (`sleepers` incremented then `taken` read; `taken` written then `sleepers` read). A blocked
//! operation on a stopper registers a wake-up on it for the time it blocks: the stop bumps the
//! word it sleeps on; the stop is checked again after the word is read, so a stop landing
//! anywhere before the sleep is seen. A receive after close keeps returning queued items until
//! the queue is empty.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::base::status::Status;
use crate::base::sync::{futex, gate, spin_loop, AtomicU32, Mutex, MutexGuard};
use crate::base::sys;
use crate::token::callbacks::Waker;
use crate::token::stopper::Stopper;

/// The largest capacity of a bounded channel; beyond it, use an unbounded channel
/// (capacity 0). Memory follows the items queued, not the capacity.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Pauses (`spin_loop`) an operation waits, watching the other side's counter, before it
/// sleeps on its futex word. Bounded, so a wait is still a sleep on a real primitive; none under
/// loom, whose model would only grow.
const SPIN: u32 = if cfg!(loom) { 0 } else { 100 };

/// Keeps what one side writes on cache lines of its own (128 bytes: x86's adjacent-line
/// prefetch pairs 64-byte lines), so the other side's reads and writes do not bounce them.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The stopper's waker for a blocked operation: changes its side's futex word (keeping its
/// sleeper bit) and wakes the side's sleepers.
unsafe fn bump(word: *const ()) {
    // SAFETY: registered with a side's word, which outlives the registration (see the caller).
    let w = unsafe { &*(word as *const AtomicU32) };
    w.fetch_add(2, SeqCst);
    futex::wake_all(w, false);
}

/// One side's futex word: bit 0 says a thread of the side may sleep on it (set by each thread
/// before its last look), the other bits count the wakes. The first waker to find the bit set
/// clears it while bumping the count, and issues the one futex wake for every sleeper; until a
/// thread of the side sets the bit again, the other side issues none (a woken thread that is
/// slow to run does not cost a system call per item in the meantime).
struct Side {
    seq: AtomicU32,
}

impl Side {
    fn new() -> Side {
        Side {
            seq: AtomicU32::new(0),
        }
    }

    /// Before the last look: sets the sleeper bit; the word's value to sleep on.
    fn prepare_sleep(&self) -> u32 {
        self.seq.fetch_or(1, SeqCst) | 1
    }

    /// Something this side waits for may have changed: wakes its sleepers, if any.
    fn wake(&self) {
        let mut v = self.seq.load(SeqCst);
        while v & 1 != 0 {
            // +1 clears the bit and carries into the count.
            match self
                .seq
                .compare_exchange_weak(v, v.wrapping_add(1), SeqCst, SeqCst)
            {
                Ok(_) => return futex::wake_all(&self.seq, false),
                Err(now) => v = now,
            }
        }
    }
}

/// The senders' end: the tail queue and the count of items ever pushed.
struct TailQueue {
    items: VecDeque<u64>,
    /// Items ever sent (wrapping; only differences are used, all below 2^32).
    sent: u32,
    /// The last `taken` read: the full check reads the shared one only when this says full.
    taken_seen: u32,
}

struct Tail {
    queue: Mutex<TailQueue>,
    /// A copy of `sent`, for receivers spinning on an empty channel.
    sent: AtomicU32,
}

struct Head {
    queue: Mutex<VecDeque<u64>>,
    /// Items ever received (wrapping), written under `queue`'s lock.
    taken: AtomicU32,
}

/// A locked section inside the fork gate; declared before the guards it covers, so that it is
/// left after they are dropped.
struct Section;

impl Section {
    fn enter() -> Section {
        gate::enter();
        Section
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        gate::leave();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stoppable MPMC queue of `u64` (bounded, or unbounded with capacity 0).
pub struct Channel {
    tail: Padded<Tail>,
    head: Padded<Head>,
    senders: Padded<Side>,
    receivers: Padded<Side>,
    /// 0: unbounded.
    cap: usize,
    /// Written under the tail lock; nonzero once closed.
    closed: AtomicU32,
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
            tail: Padded(Tail {
                queue: Mutex::new(TailQueue {
                    items: VecDeque::new(),
                    sent: 0,
                    taken_seen: 0,
                }),
                sent: AtomicU32::new(0),
            }),
            head: Padded(Head {
                queue: Mutex::new(VecDeque::new()),
                taken: AtomicU32::new(0),
            }),
            senders: Padded(Side::new()),
            receivers: Padded(Side::new()),
            cap: capacity,
            closed: AtomicU32::new(0),
        }
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

    /// Waits at most [`SPIN`] pauses for `changed` (or the close); true when it came.
    fn spin(&self, changed: impl Fn() -> bool) -> bool {
        for _ in 0..SPIN {
            spin_loop();
            if changed() || self.closed.load(Relaxed) != 0 {
                return true;
            }
        }
        false
    }

    /// One attempt to send: `None` when full, else the status (the receivers woken on `Ok`).
    fn try_send(&self, item: u64) -> Option<Status> {
        {
            let _section = Section::enter();
            let mut tail = lock(&self.tail.queue);
            if self.closed.load(Relaxed) != 0 {
                return Some(Status::Closed);
            }
            if self.cap != 0 {
                // Exact: `sent` and `taken` count every item in and out (wrapping; the
                // capacity is below 2^32); a stale `taken_seen` only errs towards full.
                let cap = self.cap as u32;
                if tail.sent.wrapping_sub(tail.taken_seen) >= cap {
                    tail.taken_seen = self.head.taken.load(SeqCst);
                    if tail.sent.wrapping_sub(tail.taken_seen) >= cap {
                        return None;
                    }
                }
            }
            if tail.items.try_reserve(1).is_err() {
                return Some(Status::NoMem);
            }
            tail.items.push_back(item);
            tail.sent = tail.sent.wrapping_add(1);
            self.tail.sent.store(tail.sent, Release);
        }
        self.receivers.wake();
        Some(Status::Ok)
    }

    /// One attempt to receive: `None` when empty, else the item or `Closed` (the senders of a
    /// bounded channel woken when it takes an item).
    fn try_recv(&self) -> Option<Result<u64, Status>> {
        let item = {
            let _section = Section::enter();
            let mut head = lock(&self.head.queue);
            let item = match head.pop_front() {
                Some(v) => v,
                None => {
                    let mut tail = lock(&self.tail.queue);
                    if tail.items.is_empty() {
                        let closed = self.closed.load(Relaxed) != 0;
                        return closed.then_some(Err(Status::Closed));
                    }
                    // Every queued item moves to the head side, in order; the senders get the
                    // empty buffer (its capacity kept: no allocation in a steady stream).
                    std::mem::swap(&mut *head, &mut tail.items);
                    drop(tail);
                    // Not `None`: the swapped-in queue has items.
                    head.pop_front()?
                }
            };
            let taken = self.head.taken.load(Relaxed).wrapping_add(1);
            self.head.taken.store(taken, SeqCst);
            item
        };
        if self.cap != 0 {
            self.senders.wake();
        }
        Some(Ok(item))
    }

    /// Sends `item`: `Ok`, `Stopped` (checked first), `TimedOut`, `Closed`, or `NoMem` when the
    /// queue cannot grow. `deadline` is absolute on the monotonic clock (`None`: no limit).
    pub fn send(&self, item: u64, stopper: Option<&Stopper>, deadline: Option<u64>) -> Status {
        let stopped = || stopper.is_some_and(|s| s.is_set());
        let mut wake = None;
        let mut spin = true;
        loop {
            if stopped() {
                return Status::Stopped;
            }
            if let Some(st) = self.try_send(item) {
                return st;
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Status::TimedOut;
            }
            if std::mem::take(&mut spin) {
                let taken = self.head.taken.load(Relaxed);
                if self.spin(|| self.head.taken.load(Relaxed) != taken || stopped()) {
                    continue;
                }
            }
            if let Some(s) = stopper {
                if let Err(st) = self.watch(s, &self.senders, &mut wake) {
                    return st;
                }
            }
            // Counted among the sleepers before the last look (see the module's doc), and the
            // stop checked after reading the word (its waker bumps the word after the flag).
            let seen = self.senders.prepare_sleep();
            let last = if stopped() {
                Some(Status::Stopped)
            } else {
                self.try_send(item)
            };
            if last.is_none() {
                futex::wait(&self.senders.seq, seen, deadline, false);
            }
            if let Some(st) = last {
                return st;
            }
            spin = true;
        }
    }

    /// Receives an item: `Ok(item)`, or `Err(Stopped | TimedOut | Closed | NoMem)`; `Closed`
    /// only once the channel is closed and empty.
    pub fn recv(&self, stopper: Option<&Stopper>, deadline: Option<u64>) -> Result<u64, Status> {
        let stopped = || stopper.is_some_and(|s| s.is_set());
        let mut wake = None;
        let mut spin = true;
        loop {
            if stopped() {
                return Err(Status::Stopped);
            }
            if let Some(r) = self.try_recv() {
                return r;
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Err(Status::TimedOut);
            }
            if std::mem::take(&mut spin) {
                let sent = || self.tail.sent.load(Acquire) != self.head.taken.load(Relaxed);
                if self.spin(|| sent() || stopped()) {
                    continue;
                }
            }
            if let Some(s) = stopper {
                self.watch(s, &self.receivers, &mut wake)?;
            }
            // As in `send`.
            let seen = self.receivers.prepare_sleep();
            let last = if stopped() {
                Some(Err(Status::Stopped))
            } else {
                self.try_recv()
            };
            if last.is_none() {
                futex::wait(&self.receivers.seq, seen, deadline, false);
            }
            if let Some(r) = last {
                return r;
            }
            spin = true;
        }
    }

    /// Closes the channel: sends fail with `Closed`, receives drain then return `Closed`.
    pub fn close(&self) {
        {
            let _section = Section::enter();
            let _tail = lock(&self.tail.queue);
            self.closed.store(1, Release);
        }
        // Every sleeper counted itself before a last look under the tail lock, which saw the
        // close or was seen by this count.
        self.senders.wake();
        self.receivers.wake();
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        let _section = Section::enter();
        let head = lock(&self.head.queue);
        let tail = lock(&self.tail.queue);
        head.len() + tail.items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Acquire) != 0
    }
}
