//! A stoppable multi-producer multi-consumer channel of 64-bit items: blocking send and
//! receive return `Stopped` the moment the stopper stops.
//!
//! **Queue.** A linked list of blocks of `BLOCK` slots. Senders, one at a time under the
//! *tail* lock, write an item into the next slot of the last block (linking a new block first
//! when it is full), then publish the count of items ever sent (`sent`, release). Receivers, one
//! at a time under the *head* lock, read the slot after the last one taken while `taken` is
//! below `sent` (acquire), and publish `taken`; the senders' lock is not taken to receive. Order
//! is FIFO: slots are filled and read in one order, each once. A receiver leaves a block once it
//! has read all of it and the next block is linked (which the senders did before publishing the
//! item in it), so no sender touches the block any more; it keeps one such block for the
//! senders' next one (no allocation in a steady stream) and frees any other. Each side keeps a
//! copy of the other side's count and reads the shared one only when its copy says empty (or
//! full), and each count lives on a cache line of its own, away from the locks. Blocks are
//! allocated fallibly, when needed: a bounded channel's capacity is a limit, not an allocation
//! made up front (a channel of [`MAX_CAPACITY`] costs a few cache lines until it fills), and a
//! send that cannot get memory returns `NoMem` instead of aborting the host. The capacity
//! bounds `sent - taken`.
//!
//! **Fork.** Every locked section (one per operation, whichever locks it takes) is entered
//! through the fork gate (`sync::gate`, once per operation): the fork's prepare handler waits
//! until no thread is inside one, so a forked child never inherits a channel lock held by a
//! thread it does not have, nor a block, a count or a link half written (all of them are
//! written under a lock). No thread sleeps or spins inside a section, and a section takes no
//! other lock of the library.
//!
//! **Waiting.** A side (senders, receivers) that finds nothing to do spins briefly (at most
//! `SPIN` pauses in all, looking at the other side's count after 1, 2, 4, … of them, never
//! at a lock), tries once more, then sleeps on its futex word, whose low bit says "a thread of
//! this side may sleep". A thread sets the bit *before* its last look, and the other side,
//! after publishing an item (or a free slot), wakes the side only when the bit is set, clearing
//! it as it wakes: an operation that finds the other side awake costs no futex call and no
//! write to a shared word, and a woken thread slow to run costs one wake, not one per item. The
//! last look and the publishing are ordered by a lock both take: a receiver's last look reads
//! `sent` and the close under the tail lock, under which senders publish and `close` closes; a
//! sender's reads `taken` under the head lock, under which receivers publish. A blocked
//! operation on a stopper registers a wake-up on it for the time it blocks: the stop changes
//! the word it sleeps on; the stop is checked again after the word is read, so a stop landing
//! anywhere before the sleep is seen. A receive after close keeps returning queued items until
//! the queue is empty.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use crate::base::status::Status;
use crate::base::sync::{futex, gate, spin_loop, AtomicU32, Mutex, MutexGuard};
use crate::base::sys;
use crate::token::callbacks::Waker;
use crate::token::stopper::Stopper;

#[cfg(not(loom))]
use std::sync::atomic::{AtomicPtr, AtomicU64};

#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicU64};

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

/// Items per block of the queue: a block (its link and its slots) is 512 bytes.
const BLOCK: usize = 63;

/// A block of the queue: slots written once by a sender (under the tail lock) before the item
/// count that covers them is published, read once by a receiver (under the head lock) after.
struct Block {
    next: AtomicPtr<Block>,
    slots: [UnsafeCell<u64>; BLOCK],
}

impl Block {
    /// A fresh block, or `None` without memory.
    fn alloc() -> Option<*mut Block> {
        let b = Block {
            next: AtomicPtr::new(std::ptr::null_mut()),
            slots: [const { UnsafeCell::new(0) }; BLOCK],
        };
        crate::base::rc::try_box(b).ok().map(Box::into_raw)
    }

    /// # Safety
    /// `b` came from [`Block::alloc`] and nothing uses it any more.
    unsafe fn free(b: *mut Block) {
        // SAFETY: promised by the caller.
        drop(unsafe { Box::from_raw(b) });
    }
}

/// The senders' end, under the tail lock.
struct TailEnd {
    /// The block being filled (null before the first item).
    block: *mut Block,
    /// The next free slot of `block` (`BLOCK`: a new block is needed).
    slot: usize,
    /// Items ever sent.
    sent: u64,
    /// The last `taken` read: the full check reads the shared one only when this says full.
    taken_seen: u64,
}

struct Tail {
    end: Mutex<TailEnd>,
    /// A copy of `sent`, published (release) after the item's slot is written; on a line of
    /// its own, so that receivers reading it do not take the lock's line from the senders.
    sent: Padded<AtomicU64>,
    /// The first block, published once by the first send for the first receive.
    first: AtomicPtr<Block>,
}

/// The receivers' end, under the head lock.
struct HeadEnd {
    /// The block being read (null before the first item).
    block: *mut Block,
    /// The next slot of `block` to read (`BLOCK`: move to the next block).
    slot: usize,
    /// Items ever received.
    taken: u64,
    /// The last `sent` read: the shared one is read again only when this says empty.
    sent_seen: u64,
}

struct Head {
    end: Mutex<HeadEnd>,
    /// A copy of `taken`, for the senders' capacity check and `len` (its own line, as `sent`).
    taken: Padded<AtomicU64>,
    /// One drained block kept for the senders' next block (no allocation in a steady stream).
    spare: AtomicPtr<Block>,
}

// SAFETY: the block pointers are owned by the channel and used only under its locks (see
// `Block`); nothing in them is tied to a thread.
unsafe impl Send for TailEnd {}
// SAFETY: as above.
unsafe impl Send for HeadEnd {}

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
    cap: u64,
    /// Written under the tail lock; nonzero once closed.
    closed: AtomicU32,
}

impl Drop for Channel {
    fn drop(&mut self) {
        let head_block = {
            let _section = Section::enter();
            lock(&self.head.end).block
        };
        let mut b = if head_block.is_null() {
            self.tail.first.load(Acquire)
        } else {
            head_block
        };
        while !b.is_null() {
            // SAFETY: the blocks from the receivers' one on are the channel's, linked in order,
            // and nothing else uses them now (`&mut self`).
            let next = unsafe { (*b).next.load(Acquire) };
            unsafe { Block::free(b) };
            b = next;
        }
        let spare = self.head.spare.load(Acquire);
        if !spare.is_null() {
            // SAFETY: as above; the spare is linked nowhere.
            unsafe { Block::free(spare) };
        }
    }
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
                end: Mutex::new(TailEnd {
                    block: std::ptr::null_mut(),
                    slot: BLOCK,
                    sent: 0,
                    taken_seen: 0,
                }),
                sent: Padded(AtomicU64::new(0)),
                first: AtomicPtr::new(std::ptr::null_mut()),
            }),
            head: Padded(Head {
                end: Mutex::new(HeadEnd {
                    block: std::ptr::null_mut(),
                    slot: BLOCK,
                    taken: 0,
                    sent_seen: 0,
                }),
                taken: Padded(AtomicU64::new(0)),
                spare: AtomicPtr::new(std::ptr::null_mut()),
            }),
            senders: Padded(Side::new()),
            receivers: Padded(Side::new()),
            cap: capacity as u64,
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

    /// Waits at most [`SPIN`] pauses for `changed` (or the close), looking after 1, 2, 4, …
    /// pauses (a thread that looks at every pause would pull the line the other side writes
    /// away from it at every item).
    fn spin(&self, changed: impl Fn() -> bool) {
        let (mut left, mut step) = (SPIN, 1);
        while left > 0 {
            let n = step.min(left);
            for _ in 0..n {
                spin_loop();
            }
            left -= n;
            step *= 2;
            if changed() || self.closed.load(Relaxed) != 0 {
                return;
            }
        }
    }

    /// One attempt to send: `None` when full, else the status (the receivers woken on `Ok`).
    /// `last_look`: before sleeping, read the receivers' count under their lock (see the
    /// module's doc).
    fn try_send(&self, item: u64, last_look: bool) -> Option<Status> {
        {
            let _section = Section::enter();
            let taken_now = (last_look && self.cap != 0).then(|| {
                let _head = lock(&self.head.end);
                self.head.taken.load(Relaxed)
            });
            let mut tail = lock(&self.tail.end);
            if self.closed.load(Relaxed) != 0 {
                return Some(Status::Closed);
            }
            if self.cap != 0 && tail.sent - tail.taken_seen >= self.cap {
                // `taken` only grows; a stale copy only errs towards full.
                let taken = taken_now.unwrap_or_else(|| self.head.taken.load(Acquire));
                tail.taken_seen = tail.taken_seen.max(taken);
                if tail.sent - tail.taken_seen >= self.cap {
                    return None;
                }
            }
            if tail.slot == BLOCK {
                let spare = self.head.spare.swap(std::ptr::null_mut(), AcqRel);
                let Some(next) = (!spare.is_null()).then_some(spare).or_else(Block::alloc) else {
                    return Some(Status::NoMem);
                };
                if tail.block.is_null() {
                    self.tail.first.store(next, Release);
                } else {
                    // SAFETY: the senders' block is live: receivers leave a block only after
                    // its successor is linked here.
                    unsafe { (*tail.block).next.store(next, Release) };
                }
                tail.block = next;
                tail.slot = 0;
            }
            // SAFETY: the slot is past every published item: no receiver reads it until the
            // count below covers it.
            unsafe { *(*tail.block).slots[tail.slot].get() = item };
            tail.slot += 1;
            tail.sent += 1;
            self.tail.sent.store(tail.sent, Release);
        }
        self.receivers.wake();
        Some(Status::Ok)
    }

    /// One attempt to receive: `None` when empty, else the item or `Closed` (the senders of a
    /// bounded channel woken when it takes an item). `last_look`: before sleeping, read the
    /// senders' count and the close under their lock (see the module's doc).
    fn try_recv(&self, last_look: bool) -> Option<Result<u64, Status>> {
        let item = {
            let _section = Section::enter();
            let mut head = lock(&self.head.end);
            if head.sent_seen == head.taken {
                head.sent_seen = self.tail.sent.load(Acquire);
            }
            if head.sent_seen == head.taken {
                let (sent, closed) = if last_look {
                    let _tail = lock(&self.tail.end);
                    (self.tail.sent.load(Relaxed), self.closed.load(Relaxed) != 0)
                } else if self.closed.load(Acquire) != 0 {
                    // Sends end at the close: the count read after it is final.
                    (self.tail.sent.load(Acquire), true)
                } else {
                    return None;
                };
                head.sent_seen = sent;
                if sent == head.taken {
                    return closed.then_some(Err(Status::Closed));
                }
            }
            if head.slot == BLOCK {
                // The item is in the next block, linked before its count was published.
                let next = if head.block.is_null() {
                    self.tail.first.load(Acquire)
                } else {
                    // SAFETY: the receivers' block is live (only they retire it, here).
                    unsafe { (*head.block).next.load(Acquire) }
                };
                let old = std::mem::replace(&mut head.block, next);
                head.slot = 0;
                if !old.is_null() {
                    // SAFETY: every slot of `old` was read, and the senders moved on to `next`
                    // when they linked it: nothing uses `old` any more.
                    unsafe {
                        (*old).next.store(std::ptr::null_mut(), Relaxed);
                        let prev = self.head.spare.swap(old, AcqRel);
                        if !prev.is_null() {
                            Block::free(prev);
                        }
                    }
                }
            }
            // SAFETY: covered by the count read above (acquire): written, and read only here.
            let item = unsafe { *(*head.block).slots[head.slot].get() };
            head.slot += 1;
            head.taken += 1;
            self.head.taken.store(head.taken, Release);
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
            if let Some(st) = self.try_send(item, false) {
                return st;
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Status::TimedOut;
            }
            if std::mem::take(&mut spin) {
                // Full: wait (briefly) for room for a batch, not for one slot at a time, which
                // would hand the receivers' line back and forth at every item. Then one more
                // attempt before sleeping, which takes any room there is.
                let taken = self.head.taken.load(Relaxed);
                let batch = (self.cap / 2).clamp(1, 32);
                self.spin(|| self.head.taken.load(Relaxed) - taken >= batch || stopped());
                continue;
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
                self.try_send(item, true)
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
            if let Some(r) = self.try_recv(false) {
                return r;
            }
            if deadline.is_some_and(|d| d <= sys::now_ns()) {
                return Err(Status::TimedOut);
            }
            if std::mem::take(&mut spin) {
                let sent = || self.tail.sent.load(Acquire) != self.head.taken.load(Relaxed);
                self.spin(|| sent() || stopped());
                continue;
            }
            if let Some(s) = stopper {
                self.watch(s, &self.receivers, &mut wake)?;
            }
            // As in `send`.
            let seen = self.receivers.prepare_sleep();
            let last = if stopped() {
                Some(Err(Status::Stopped))
            } else {
                self.try_recv(true)
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
            let _tail = lock(&self.tail.end);
            self.closed.store(1, Release);
        }
        // Every sleeper set its side's bit before a last look under the tail lock, which saw
        // the close or was seen by this wake.
        self.senders.wake();
        self.receivers.wake();
    }

    /// Items queued now (both counts read under their locks: one moment's value).
    pub fn len(&self) -> usize {
        let _section = Section::enter();
        let head = lock(&self.head.end);
        let tail = lock(&self.tail.end);
        (tail.sent - head.taken) as usize
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
