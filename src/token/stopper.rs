//! The stopper: a one-way stop flag whose waits wake at once, with children, callbacks and
//! wake-ups, and the attachment slots the extensions use (`token::attach`).
//!
//! Layout. The hot part is two words: a 32-bit state word (byte 0 is the stop flag that
//! `stopper_flag` exposes, bit 8 says "a thread may be sleeping on this word") and the reason.
//! They sit behind a pointer so that a shared stopper can put them in shared memory. Everything
//! else (callbacks, children, wakers, attachments) lives in a `Slow` box allocated on first
//! use, so an idle stopper is a handful of words.
//!
//! Ordering. `stop` decides the winner with a compare-and-swap on the reason (0 → reason), then
//! publishes the flag with a release RMW; readers load the flag with acquire. So everything the
//! stopping thread wrote before `stop`, and the reason, are visible to a thread that sees the
//! flag. After the flag: waiters are woken (futex), then, under the slow lock but never while
//! user code runs, wakers run, children are stopped, the attachments' stop steps run (the
//! descriptor, the workers' hooks…) and callbacks run, each popped from its list one at a time
//! so that concurrent unregistration stays exact.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::base::rc::{Arc, Weak};

use crate::base::sync::{futex, AtomicI32, AtomicU32, AtomicU8, Gated, Mutex};

use crate::base::slab::{Fate, OrderedSlab};
use crate::base::status::Status;
use crate::base::sys;
use crate::token::attach::{Attachment, Attachments, Panic, MAX_STEPS};

/// Reason recorded when a caller stops with reason 0.
pub const REASON_REQUESTED: i32 = 1;
/// Reason recorded by a deadline armed with reason 0.
pub const REASON_DEADLINE: i32 = 2;
/// Reason recorded by a stop on a process signal.
pub const REASON_SIGNAL: i32 = 3;

/// Byte 0 of the state word: set once stopped.
pub(crate) const STOPPED: u32 = 1;
/// A thread may be asleep on the state word: the stop must issue a futex wake.
pub(crate) const WAITERS: u32 = 1 << 8;

const ACTIONS_IDLE: u8 = 0;
const ACTIONS_RUNNING: u8 = 1;
const ACTIONS_DONE: u8 = 2;
/// A stopper made by `Stopper::never`: no stop is ever claimed.
const ACTIONS_NEVER: u8 = 3;

/// The two words every process sharing a stopper must see: in the stopper itself, or in a
/// shared-memory page for a shared stopper.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Cell {
    pub(crate) word: AtomicU32,
    pub(crate) reason: AtomicI32,
}

/// A shared stopper's part of the shared page: the cell, and the word this process's watcher
/// (and every other process's) sleeps on. Watchers have their own word so that a stop wakes
/// the real waiters first and the watchers after, not all in one crowd.
#[repr(C)]
pub(crate) struct SharedCell {
    pub(crate) cell: Cell,
    /// 0 until stopped, then 1 (set after the flag).
    pub(crate) watch: AtomicU32,
    /// The stop flag of every process (what `stopper_flag` exposes for a shared stopper).
    pub(crate) flag: AtomicU8,
    _reserved: [u8; 3],
}

/// A callback as C gives it: a function and its context, stored without allocation. The core
/// never looks inside `ctx` and `data`; `call(ctx, data, thread_id, reason)` does.
#[derive(Clone, Copy)]
pub struct RawFn {
    /// Called with `ctx`, `data`, a thread id (0 for callbacks) and the reason.
    pub call: unsafe fn(usize, usize, u64, i32),
    /// First context word (typically the C function pointer).
    pub ctx: usize,
    /// Second context word (typically the C `user_data`).
    pub data: usize,
}

impl RawFn {
    fn invoke(&self, tid: u64, reason: i32) {
        // SAFETY: whoever built this RawFn promised (in an `unsafe` constructor call) that
        // `call` may be invoked with these words, from any thread, until it is removed.
        unsafe { (self.call)(self.ctx, self.data, tid, reason) }
    }
}

/// A wake-up run right after the flag is set, under the stopper's lock: it may only wake
/// (set a word, issue a futex wake), never block or run user code. `wait_any` and channel
/// operations register one for the length of a wait; the service thread one per signal stop.
#[derive(Clone, Copy)]
pub(crate) struct Waker {
    wake: unsafe fn(*const ()),
    data: *const (),
}

// SAFETY: see `Waker::new`: `data` is valid, and `wake` callable, from any thread while the
// waker is registered.
unsafe impl Send for Waker {}

impl Waker {
    /// A wake-up calling `wake(data)`.
    ///
    /// # Safety
    /// `wake(data)` must be callable from any thread, and only wake, for as long as the waker
    /// is registered: whoever registers it removes it before `data` goes away.
    pub(crate) unsafe fn new(wake: unsafe fn(*const ()), data: *const ()) -> Waker {
        Waker { wake, data }
    }

    fn wake(&self) {
        // SAFETY: promised by the caller of `new`.
        unsafe { (self.wake)(self.data) }
    }
}

/// The waker of `wait_any`: sets its word to 1 and wakes the word's futex sleepers.
unsafe fn wake_word(data: *const ()) {
    // SAFETY: registered by `try_wait_any` with its own word, removed before it returns.
    let w = unsafe { &*(data as *const AtomicU32) };
    w.store(1, Ordering::Release);
    futex::wake_all(w, false);
}

pub(crate) enum Action {
    Raw(RawFn),
    Boxed(Box<dyn FnOnce(i32) + Send>),
}

impl Action {
    pub(crate) fn run(self, reason: i32) {
        match self {
            Action::Raw(f) => f.invoke(0, reason),
            Action::Boxed(f) => f(reason),
        }
    }
}

/// The rarely used part of a stopper, allocated on first need.
#[derive(Default)]
pub(crate) struct Slow {
    pub(crate) callbacks: OrderedSlab<Action>,
    /// The callback being run by the stopping thread: (id, thread id).
    pub(crate) running: Option<(u64, u64)>,
    pub(crate) children: OrderedSlab<Weak<Inner>>,
    pub(crate) parents: Vec<(Arc<Inner>, u64)>,
    /// Wake-ups for `wait_any`, channel operations and signal stops: run right after the flag.
    pub(crate) wakers: OrderedSlab<Waker>,
    /// Threads blocked in `Inner::cv_wait`; notify only when nonzero (a wake is a system call).
    pub(crate) cv_waiters: u32,
    /// The extensions' state on this stopper (see `token::attach`).
    pub(crate) attached: Attachments,
}

/// The object behind a `stopper *`.
pub struct Inner {
    /// `None`: the cell is `local`; `Some`: it lives in a shared mapping.
    shared_cell: Option<NonNull<SharedCell>>,
    local: Cell,
    /// The stop flag byte of a local stopper (what `stopper_flag` exposes): its own memory
    /// location, written once by the stop, so that readers' one-byte atomic loads never overlap
    /// the wider atomics on the futex word (a mixed-size access the memory model forbids).
    local_flag: AtomicU8,
    slow: Mutex<Option<Box<Slow>>>,
    /// Bumped by `notify`; `cv_wait` sleeps on it (a futex word, not a condition variable: a
    /// waiter re-locks through the fork gate, see `sync::gate`).
    epoch: AtomicU32,
    /// This process's side of the stop (wakers, children, fd, hooks, callbacks): `IDLE`,
    /// `RUNNING`, `DONE`. For a shared stopper the stop may come from another process: exactly
    /// one thread of this process runs them — the local winner if there is one, else the
    /// watcher; a losing `stop` waits for `DONE` in `cv_wait`.
    actions: AtomicU8,
}

// SAFETY: `shared_cell` points into a shared mapping kept alive by an attachment (dropped
// after `Inner`'s own `Drop`), which holds only atomics.
unsafe impl Send for Inner {}
// SAFETY: as above; all shared mutation goes through atomics or the mutex.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // Unlink from the parents, so that a long-lived parent does not keep an entry per
        // child ever created. A parent whose last reference was ours is taken apart here in
        // the same way, in a loop: releasing a chain of any depth does not recurse.
        let mut parents = self.take_parents();
        while let Some((parent, _)) = parents.pop() {
            if let Some(mut owned) = Arc::into_inner(parent) {
                let grand = owned.take_parents();
                if parents.try_reserve(grand.len()).is_ok() {
                    parents.extend(grand);
                } else {
                    drop(grand); // no memory for the loop: release them by recursion
                }
                drop(owned); // finds no parents left
            }
        }
    }
}

impl Inner {
    /// Unlinks from every parent (with `&mut self`: only while dropping); returns the parents'
    /// references.
    fn take_parents(&mut self) -> Vec<(Arc<Inner>, u64)> {
        let slow = self.slow.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(slow) = slow.as_mut() else {
            return Vec::new();
        };
        let parents = std::mem::take(&mut slow.parents);
        for (parent, id) in &parents {
            parent.lock().as_mut().map(|p| p.children.remove(*id));
        }
        parents
    }

    /// A new stopper's counted box; `None` when memory cannot be had.
    fn try_new_with(
        shared_cell: Option<NonNull<SharedCell>>,
        slow: Option<Box<Slow>>,
    ) -> Option<Arc<Inner>> {
        Arc::try_new(Inner {
            shared_cell,
            local: Cell::default(),
            local_flag: AtomicU8::new(0),
            slow: Mutex::new(slow),
            epoch: AtomicU32::new(0),
            actions: AtomicU8::new(ACTIONS_IDLE),
        })
        .ok()
    }

    #[inline]
    pub(crate) fn cell(&self) -> &Cell {
        match self.shared_cell {
            None => &self.local,
            // SAFETY: see the `Send`/`Sync` impls: the mapping outlives `self`.
            Some(p) => unsafe { &p.as_ref().cell },
        }
    }

    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared_cell.is_some()
    }

    /// The stop flag byte: its own location, shared with other processes for a shared stopper.
    #[inline]
    pub(crate) fn flag(&self) -> &AtomicU8 {
        match self.shared_cell {
            None => &self.local_flag,
            // SAFETY: as in `cell`.
            Some(p) => unsafe { &p.as_ref().flag },
        }
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    pub(crate) fn reason(&self) -> i32 {
        if !self.is_set() {
            return 0;
        }
        match self.cell().reason.load(Ordering::Relaxed) {
            // Only a shared page can show the flag without a reason (a peer wrote the flag
            // byte alone, before any watcher or opener repaired the page): a stop is never
            // reported with reason 0.
            0 => REASON_REQUESTED,
            r => r,
        }
    }

    /// Locks the slow part (which may be absent). Poisoning is ignored: no invariant of the
    /// slow part is left broken across user code, which never runs under this lock.
    pub(crate) fn lock(&self) -> Gated<'_, Option<Box<Slow>>> {
        Gated::lock(&self.slow)
    }

    /// Locks the slow part, allocating it if needed; `NoMem` when memory cannot be had.
    pub(crate) fn try_lock_slow(&self) -> Result<SlowGuard<'_>, Status> {
        let mut g = self.lock();
        if g.is_none() {
            *g = Some(crate::base::rc::try_box(Slow::default()).map_err(|_| Status::NoMem)?);
        }
        Ok(SlowGuard(g))
    }

    /// Locks the slow part, allocating it if needed. Used where it exists already (a worker
    /// inside, a callback running, a deadline armed), or where out of memory is Rust's usual
    /// `handle_alloc_error`.
    pub(crate) fn lock_slow(&self) -> SlowGuard<'_> {
        self.try_lock_slow()
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Slow>()))
    }

    /// Releases the lock and sleeps until a `notify` (or the deadline), then locks again;
    /// returns the guard and whether the deadline passed. Callers re-check their condition
    /// (a wake-up may be for another waiter).
    pub(crate) fn cv_wait<'a>(
        &'a self,
        mut g: SlowGuard<'a>,
        deadline: Option<u64>,
    ) -> (SlowGuard<'a>, bool) {
        g.cv_waiters += 1;
        // Read under the lock: a `notify` after it (also under the lock) changes it.
        let seen = self.epoch.load(Ordering::Acquire);
        drop(g);
        let timed_out = match deadline {
            Some(d) if sys::now_ns() >= d => true,
            _ => futex::wait(&self.epoch, seen, deadline, false) == sys::FutexWait::TimedOut,
        };
        let mut g = self.lock_slow();
        g.cv_waiters -= 1;
        (g, timed_out)
    }

    /// Wakes the `cv_wait` sleepers; called with the lock held.
    pub(crate) fn notify(&self, slow: &Slow) {
        if slow.cv_waiters > 0 {
            self.epoch.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.epoch, false);
        }
    }

    /// Blocks until stopped or until the absolute deadline; true when stopped.
    pub(crate) fn wait_until(&self, deadline: Option<u64>) -> bool {
        crate::base::fork::after_fork_check();
        let cell = self.cell();
        let shared = self.is_shared();
        loop {
            let w = cell.word.load(Ordering::Acquire);
            if w & STOPPED != 0 {
                return true;
            }
            if w & WAITERS == 0 {
                // Announce a sleeper before sleeping, so the stop knows to wake us.
                let _ = cell.word.compare_exchange_weak(
                    w,
                    w | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                );
                continue;
            }
            if futex::wait(&cell.word, w, deadline, shared) == sys::FutexWait::TimedOut {
                return self.is_set();
            }
        }
    }
}

/// The parts of a stopper's behaviour that need its counted reference (to keep it alive,
/// or to hand it to a timer).
impl Arc<Inner> {
    /// Records the stop; true for the call that stopped it. Everything the stop does in this
    /// process is done when it returns, on this thread when it won.
    pub(crate) fn stop(&self, reason: i32) -> bool {
        // A callback may release the caller's last reference: keep the stopper alive until
        // the stop is complete.
        let keep = Arc::clone(self);
        if keep.claim(reason) {
            keep.do_stop_actions(reason);
            return true;
        }
        if keep.is_shared() {
            // The winner may be another process: our own side must be done on return, by us
            // or by the watcher that got there first.
            keep.run_stop_actions(keep.cell().reason.load(Ordering::Acquire));
            keep.wait_stop_actions();
        }
        false
    }
}

impl Inner {
    /// Decides the winner (compare-and-swap on the reason), takes this process's stop actions
    /// for itself, and only then publishes the flag (so a watcher woken by the flag never takes
    /// them from the stopping thread). A loser returns false only once the flag is visible, so
    /// "0 = already stopped" is true when it is said.
    pub(crate) fn claim(&self, reason: i32) -> bool {
        if self.is_unstoppable() {
            return false;
        }
        let cell = self.cell();
        if cell
            .reason
            .compare_exchange(0, reason, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // In one process nobody else can have started them: they start only after the
            // flag, set below. Only a shared page can show the flag first (a peer wrote it
            // without a reason, and the watcher or an opener already took this process's
            // actions): then the stop was not this call's, which only completed its reason.
            let took = self
                .actions
                .compare_exchange(
                    ACTIONS_IDLE,
                    ACTIONS_RUNNING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            self.publish_stop();
            return took;
        }
        let mut spins = 0u32;
        while !self.is_set() {
            spins += 1;
            if spins < 64 {
                crate::base::sync::spin_loop();
            } else if spins < 20_000 {
                crate::base::sync::yield_now();
            } else {
                // The winner vanished between its two steps (only possible for a shared
                // stopper whose process was killed there): finish its stop for it.
                self.publish_stop();
            }
        }
        false
    }

    /// Makes a new stopper one that no stop reaches (`Stopper::never`).
    pub(crate) fn make_unstoppable(&self) {
        self.actions.store(ACTIONS_NEVER, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_unstoppable(&self) -> bool {
        self.actions.load(Ordering::Relaxed) == ACTIONS_NEVER
    }

    /// Sleeps until this process's stop actions are done (a shared stopper's loser).
    fn wait_stop_actions(&self) {
        let mut g = self.lock_slow();
        while self.actions.load(Ordering::Acquire) != ACTIONS_DONE {
            g = self.cv_wait(g, None).0;
        }
    }

    /// Sets the flag (the reason is recorded) and wakes the futex sleepers; for a shared
    /// stopper, then the watchers of every process.
    pub(crate) fn publish_stop(&self) {
        let cell = self.cell();
        // The flag byte first: a waiter woken by the word then sees it set.
        self.flag().store(1, Ordering::Release);
        let prev = cell.word.fetch_or(STOPPED, Ordering::AcqRel);
        if prev & WAITERS != 0 {
            futex::wake_all(&cell.word, self.is_shared());
        }
        if let Some(watch) = self.watch_word() {
            watch.store(1, Ordering::Release);
            futex::wake_all(watch, true);
        }
    }

    /// The word watchers sleep on (shared stoppers only).
    pub(crate) fn watch_word(&self) -> Option<&AtomicU32> {
        // SAFETY: as in `cell`.
        self.shared_cell.map(|p| unsafe { &p.as_ref().watch })
    }
}

/// The parts of a stopper's behaviour that need its counted reference (to keep it alive,
/// or to hand it to a timer).
impl Arc<Inner> {
    /// Runs this process's stop actions unless another thread already took them (the watcher
    /// for a shared stopper stopped by another process, or a late opener of one).
    pub(crate) fn run_stop_actions(&self, reason: i32) {
        if self
            .actions
            .compare_exchange(
                ACTIONS_IDLE,
                ACTIONS_RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.do_stop_actions(reason);
        }
    }

    /// What a stop does after the flag: wakers, children, the extensions' steps (descriptor,
    /// hooks…), callbacks. Run by the thread that took them (`claim` or `run_stop_actions`);
    /// marks them done at the end.
    ///
    /// The children it stops are walked depth first with an explicit stack, not by recursion,
    /// so a chain of any depth stops on a thread with any stack. Each stopper's steps keep
    /// their order: its wakers, then its children (each completely, in turn), then the steps
    /// of its attachments and its callbacks. A panicking (Rust) hook or callback, of this
    /// stopper or of any child, stops nothing else: every other action runs and every stopper
    /// is marked done, then the first panic resumes.
    ///
    /// A stopper without children goes from its wakers to its last steps under one lock: a
    /// stopper with one callback takes its lock twice in all (before and after the callback).
    pub(crate) fn do_stop_actions(&self, reason: i32) {
        let mut first_panic: Option<Panic> = None;
        // Stoppers whose children are being stopped, innermost last; `self` is below them all.
        let mut stack: Vec<Arc<Inner>> = Vec::new();
        if let Begin::Leaf(g) = self.begin_stop_actions() {
            if let Some(p) = self.finish_stop_actions(reason, Some(g)) {
                std::panic::resume_unwind(p);
            }
            return;
        }
        loop {
            let child = stack.last().unwrap_or(self).next_child();
            match child {
                Some(c) if c.is_shared() => {
                    // Not made by the library (children are local), but kept exact: a shared
                    // stopper's stop is its own.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.stop(reason);
                    }));
                    if let Err(p) = r {
                        first_panic.get_or_insert(p);
                    }
                }
                Some(c) if c.claim(reason) => match c.begin_stop_actions() {
                    Begin::Leaf(g) => {
                        if let Some(p) = c.finish_stop_actions(reason, Some(g)) {
                            first_panic.get_or_insert(p);
                        }
                    }
                    Begin::Parent if stack.try_reserve(1).is_ok() => stack.push(c.clone()),
                    Begin::Parent => {
                        // No memory for the walk: finish this child here (by recursion for
                        // its own children, the one case where depth costs stack).
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            c.finish_children_then_actions(reason);
                        }));
                        if let Err(p) = r {
                            first_panic.get_or_insert(p);
                        }
                    }
                },
                Some(_) => {} // stopped already, by another thread or another parent
                None => {
                    let done = stack.pop();
                    let inner = done.as_ref().unwrap_or(self);
                    if let Some(p) = inner.finish_stop_actions(reason, None) {
                        first_panic.get_or_insert(p);
                    }
                    if done.is_none() {
                        break;
                    }
                }
            }
        }
        if let Some(p) = first_panic {
            std::panic::resume_unwind(p);
        }
    }

    /// `do_stop_actions` for a stopper already claimed and begun (the walk's fallback).
    fn finish_children_then_actions(&self, reason: i32) {
        let mut first_panic = None;
        while let Some(c) = self.next_child() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.stop(reason);
            }));
            if let Err(p) = r {
                first_panic.get_or_insert(p);
            }
        }
        if let Some(p) = self.finish_stop_actions(reason, None).or(first_panic) {
            std::panic::resume_unwind(p);
        }
    }
}

/// What step 1 of a stop found.
enum Begin<'a> {
    /// No children: the last steps follow under the lock still held.
    Leaf(Gated<'a, Option<Box<Slow>>>),
    /// Children to stop first.
    Parent,
}

impl Inner {
    /// Step 1 of the stop: waiters in `wait_any`, channel operations and signal stops are
    /// woken.
    fn begin_stop_actions(&self) -> Begin<'_> {
        let g = self.lock();
        match g.as_ref() {
            Some(slow) => {
                slow.wakers.for_each(|_, w| w.wake());
                if slow.children.is_empty() {
                    Begin::Leaf(g)
                } else {
                    Begin::Parent
                }
            }
            None => Begin::Leaf(g),
        }
    }

    /// Step 2, one child at a time: the next live child to stop (unlinked from the list).
    fn next_child(&self) -> Option<Arc<Inner>> {
        loop {
            let weak = {
                let mut g = self.lock();
                g.as_mut()?.children.pop_front()?.1
            };
            if let Some(c) = weak.upgrade() {
                return Some(c);
            }
        }
    }
}

/// The parts of a stopper's behaviour that need its counted reference (to keep it alive,
/// or to hand it to a timer).
impl Arc<Inner> {
    /// The last steps: each attachment's stop step (the descriptor, the workers' hooks…), then
    /// the callbacks in registration order, one at a time with no lock held; then the actions
    /// are marked done. `g`: the lock, when the caller holds it. Returns the first panic of a
    /// (Rust) hook or callback, after all of them ran.
    fn finish_stop_actions(
        &self,
        reason: i32,
        g: Option<Gated<'_, Option<Box<Slow>>>>,
    ) -> Option<Panic> {
        let mut first_panic = None;
        let mut g = g.unwrap_or_else(|| self.lock());
        if g.is_some() {
            let mut from = 0;
            loop {
                let (steps, all) = g
                    .as_ref()
                    .map_or(([None; MAX_STEPS], true), |s| s.stop_steps(from));
                if steps[0].is_none() {
                    break;
                }
                drop(g);
                for step in steps.iter().flatten() {
                    if let Some(p) = step(self, reason) {
                        first_panic.get_or_insert(p);
                    }
                }
                g = self.lock();
                if all {
                    break;
                }
                from += MAX_STEPS;
            }
            let me = crate::base::sync::thread_key();
            while let Some((id, action)) = g.as_mut().and_then(|slow| slow.callbacks.pop_front()) {
                let slow = g.as_mut().expect("present: a callback was popped");
                slow.running = Some((id, me));
                drop(g);
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action.run(reason)));
                if let Err(p) = r {
                    first_panic.get_or_insert(p);
                }
                g = self.lock();
                if let Some(slow) = g.as_mut() {
                    slow.running = None;
                    self.notify(slow); // an unregister may wait for this callback
                }
            }
        }
        // Under the lock, so a waiter between its check and its sleep cannot miss it.
        self.actions.store(ACTIONS_DONE, Ordering::Release);
        if let Some(slow) = g.as_ref() {
            self.notify(slow);
        }
        first_panic
    }
}

impl Inner {
    /// Registers a callback; gives it back with `Stopped` when already stopped (the caller
    /// runs it inline), with `NoMem` when memory cannot be had.
    pub(crate) fn register(&self, action: Action) -> Result<u64, (Status, Action)> {
        crate::base::fork::after_fork_check();
        let mut g = match self.try_lock_slow() {
            Ok(g) => g,
            Err(st) => return Err((st, action)),
        };
        if self.is_set() {
            return Err((Status::Stopped, action));
        }
        g.callbacks
            .try_push(action)
            .map_err(|action| (Status::NoMem, action))
    }

    pub(crate) fn unregister(&self, id: u64) -> Status {
        let me = crate::base::sync::thread_key();
        let Some(mut g) = self.lock_existing() else {
            return Status::Inval;
        };
        if let Some(action) = g.callbacks.remove(id) {
            // Dropped with no lock held: a closure may own something (a child of this very
            // stopper, say) whose drop takes this lock.
            drop(g);
            drop(action);
            return Status::Ok;
        }
        match g.callbacks.fate(id) {
            // Removed earlier (by an unregister, before or during the stop): it never ran, and
            // "stopped" would tell the caller it did.
            Fate::NeverIssued | Fate::Removed | Fate::Present => return Status::Inval,
            Fate::Popped => {}
        }
        // Taken by the stop: running on another thread right now, wait until it returns, so
        // the caller may free what the callback uses. From inside the callback itself, do not
        // wait.
        while matches!(g.running, Some((rid, rtid)) if rid == id && rtid != me) {
            g = self.cv_wait(g, None).0;
        }
        Status::Stopped
    }

    /// Locks the slow part only if it exists.
    pub(crate) fn lock_existing(&self) -> Option<SlowGuard<'_>> {
        let g = self.lock();
        if g.is_some() {
            Some(SlowGuard(g))
        } else {
            None
        }
    }

    /// Adds a wake-up for the stop: `Err(Stopped)` when already stopped, `Err(NoMem)`.
    pub(crate) fn add_waker(&self, w: Waker) -> Result<u64, Status> {
        let mut g = self.try_lock_slow()?;
        if self.is_set() {
            return Err(Status::Stopped);
        }
        g.wakers.try_push(w).map_err(|_| Status::NoMem)
    }

    pub(crate) fn remove_waker(&self, id: u64) {
        if let Some(mut g) = self.lock_existing() {
            g.wakers.remove(id);
        }
    }
}

/// A locked, present slow part.
pub(crate) struct SlowGuard<'a>(pub(crate) Gated<'a, Option<Box<Slow>>>);

impl std::ops::Deref for SlowGuard<'_> {
    type Target = Slow;
    fn deref(&self) -> &Slow {
        self.0
            .as_ref()
            .expect("SlowGuard holds a present slow part")
    }
}

impl std::ops::DerefMut for SlowGuard<'_> {
    fn deref_mut(&mut self) -> &mut Slow {
        self.0
            .as_mut()
            .expect("SlowGuard holds a present slow part")
    }
}

/// A reference-counted, thread-safe stop token: running until stopped, once, for good.
///
/// Clones share one stopper (like `stopper_retain`). All methods may be called from any thread.
#[derive(Clone)]
pub struct Stopper {
    pub(crate) inner: Arc<Inner>,
}

impl Default for Stopper {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.is_set())
            .field("reason", &self.reason())
            .finish()
    }
}

impl PartialEq for Stopper {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Stopper {}

/// The result of a wait with a time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The stopper is stopped.
    Stopped,
    /// The time limit passed first.
    TimedOut,
}

/// Rust's answer to an allocation that cannot be had, for the infallible Rust constructors.
fn out_of_memory() -> ! {
    std::alloc::handle_alloc_error(std::alloc::Layout::new::<Inner>())
}

impl Stopper {
    /// A new, running stopper. Out of memory is Rust's usual `handle_alloc_error` (see
    /// [`Stopper::try_new`]).
    pub fn new() -> Stopper {
        Stopper::try_new().unwrap_or_else(|_| out_of_memory())
    }

    /// A new, running stopper, or `Err(Status::NoMem)` when memory cannot be had.
    pub fn try_new() -> Result<Stopper, Status> {
        Inner::try_new_with(None, None)
            .map(|inner| Stopper { inner })
            .ok_or(Status::NoMem)
    }

    /// A stopper over a shared page (`shared`), or `Err(Status::NoMem)`. `keeper` is attached
    /// to it: it keeps the cell's memory alive at least as long as the stopper.
    pub(crate) fn try_with_cell<K: Attachment>(
        cell: NonNull<SharedCell>,
        keeper: K,
    ) -> Result<Stopper, Status> {
        // The slow part is made here, not through the lock: this runs under the shared
        // registry's lock, which a gated section must never be taken under (`sync::gate`).
        let mut slow = Slow::default();
        slow.attach(|| keeper)?;
        let slow = crate::base::rc::try_box(slow).map_err(|_| Status::NoMem)?;
        let inner = Inner::try_new_with(Some(cell), Some(slow)).ok_or(Status::NoMem)?;
        Ok(Stopper { inner })
    }

    /// A child: stopped when this stopper is (with its reason), never the other way round.
    /// A child of a stopped stopper is born stopped.
    pub fn child(&self) -> Stopper {
        Stopper::linked(&[self])
    }

    /// [`Stopper::child`], or `Err(Status::NoMem)` when memory cannot be had.
    pub fn try_child(&self) -> Result<Stopper, Status> {
        Stopper::try_linked(&[self])
    }

    /// A stopper stopped when any of `parents` is, with that parent's reason.
    pub fn linked(parents: &[&Stopper]) -> Stopper {
        Stopper::try_linked(parents).unwrap_or_else(|_| out_of_memory())
    }

    /// [`Stopper::linked`], or `Err(Status::NoMem)` when memory cannot be had (nothing is
    /// left linked then).
    pub fn try_linked(parents: &[&Stopper]) -> Result<Stopper, Status> {
        let child = Stopper::try_new()?;
        for p in parents {
            if !child.link_to(p)? {
                break; // born stopped
            }
        }
        Ok(child)
    }

    /// Links `self` under `parent`; `Ok(false)` when the parent was already stopped (and so
    /// `self` now is). Memory is reserved on both sides before anything is linked.
    fn link_to(&self, parent: &Stopper) -> Result<bool, Status> {
        self.inner
            .try_lock_slow()?
            .parents
            .try_reserve(1)
            .map_err(|_| Status::NoMem)?;
        let mut pg = parent.inner.try_lock_slow()?;
        if parent.is_set() {
            let reason = parent.reason();
            drop(pg);
            self.inner.stop(reason);
            return Ok(false);
        }
        let id = pg
            .children
            .try_push(Arc::downgrade(&self.inner))
            .map_err(|_| Status::NoMem)?;
        drop(pg);
        // Reserved above: no allocation.
        self.inner
            .lock_slow()
            .parents
            .push((Arc::clone(&parent.inner), id));
        Ok(true)
    }

    /// Stops it; `reason` 0 means [`crate::REASON_REQUESTED`]. True for the call that stopped
    /// it, false when it was already stopped.
    pub fn stop(&self, reason: i32) -> bool {
        self.inner.stop(if reason == 0 {
            REASON_REQUESTED
        } else {
            reason
        })
    }

    /// One atomic load with acquire ordering.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// The address of the stop flag byte (nonzero once stopped), valid while `self` lives.
    #[inline]
    pub fn flag_ptr(&self) -> *const u8 {
        self.inner.flag() as *const AtomicU8 as *const u8
    }

    /// The reason recorded by the stop that won; 0 while running.
    pub fn reason(&self) -> i32 {
        self.inner.reason()
    }

    /// Blocks until stopped, or until `timeout` passes (`None`: no limit).
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> Wait {
        let deadline = sys::deadline_in(timeout);
        self.wait_deadline(deadline)
    }

    /// Blocks until stopped or until the absolute deadline on the monotonic clock.
    pub fn wait_deadline(&self, deadline: Option<u64>) -> Wait {
        if self.inner.wait_until(deadline) {
            Wait::Stopped
        } else {
            Wait::TimedOut
        }
    }

    /// Runs `f(reason)` once, on the thread that stops this stopper, or at once on this thread
    /// when it is already stopped (then the returned guard is inert). Dropping the guard
    /// unregisters the callback, blocking while it runs on another thread.
    pub fn on_stop<F: FnOnce(i32) + Send + 'static>(&self, f: F) -> Callback {
        match self.inner.register(Action::Boxed(Box::new(f))) {
            Ok(id) => Callback {
                stopper: Some(self.clone()),
                id,
            },
            Err((Status::NoMem, _)) => out_of_memory(),
            Err((_, action)) => {
                action.run(self.reason());
                Callback {
                    stopper: None,
                    id: 0,
                }
            }
        }
    }

    /// Registers a raw callback (no allocation of its own); `Err(Status::Stopped)` after
    /// running it inline when already stopped, `Err(Status::NoMem)` (not registered, not run)
    /// when the callback list cannot grow.
    ///
    /// # Safety
    /// `f.call` must be callable with `f`'s words from any thread until the callback has run
    /// or has been unregistered.
    pub unsafe fn on_stop_raw(&self, f: RawFn) -> Result<u64, Status> {
        match self.inner.register(Action::Raw(f)) {
            Ok(id) => Ok(id),
            Err((Status::NoMem, _)) => Err(Status::NoMem),
            Err((_, action)) => {
                action.run(self.reason());
                Err(Status::Stopped)
            }
        }
    }

    /// Unregisters callback `id`: `Ok` when removed before it ran, `Stopped` when it has run
    /// (after waiting for it if it is running on another thread), `Inval` for an id never
    /// issued or already removed (also when removed during the stop: it never ran).
    pub fn unregister(&self, id: u64) -> Status {
        self.inner.unregister(id)
    }

    /// Raw pointer for the C layer (one strong reference moves into it).
    pub fn into_raw(self) -> *const Inner {
        Arc::into_raw(self.inner)
    }

    /// Takes back a reference given out by [`Stopper::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and own one reference.
    pub unsafe fn from_raw(p: *const Inner) -> Stopper {
        // SAFETY: forwarded from the caller's contract.
        Stopper {
            inner: unsafe { Arc::from_raw(p) },
        }
    }

    /// A borrowed pointer, valid while `self` lives.
    pub fn as_ptr(&self) -> *const Inner {
        Arc::as_ptr(&self.inner)
    }
}

/// Waits until any of `list` stops; `Some(index)` of a stopped one, or `None` on time-out.
/// `None` entries never stop.
pub fn wait_any(list: &[Option<&Stopper>], deadline: Option<u64>) -> Option<usize> {
    try_wait_any(list, deadline).unwrap_or_else(|_| out_of_memory())
}

/// [`wait_any`], or `Err(Status::NoMem)` when the wake-up cannot be registered for lack of
/// memory (nothing is left registered then).
pub(crate) fn try_wait_any(
    list: &[Option<&Stopper>],
    deadline: Option<u64>,
) -> Result<Option<usize>, Status> {
    let first = || list.iter().position(|s| s.is_some_and(|s| s.is_set()));
    if let Some(i) = first() {
        return Ok(Some(i));
    }
    crate::base::fork::after_fork_check();
    // On this stack: every waker naming it is removed before the function returns.
    let signal = AtomicU32::new(0);
    let mut registered = Vec::new();
    if registered.try_reserve_exact(list.len()).is_err() {
        return Err(Status::NoMem);
    }
    let mut failed = None;
    for s in list.iter().flatten() {
        // SAFETY: `wake_word` only wakes; removed below, before `signal` goes away.
        let waker = unsafe { Waker::new(wake_word, &signal as *const AtomicU32 as *const ()) };
        match s.inner.add_waker(waker) {
            Ok(id) => registered.push((s, id)),
            Err(Status::Stopped) => {
                signal.store(1, Ordering::Release);
                break;
            }
            Err(st) => {
                failed = Some(st);
                signal.store(1, Ordering::Release);
                break;
            }
        }
    }
    while signal.load(Ordering::Acquire) == 0 {
        if futex::wait(&signal, 0, deadline, false) == sys::FutexWait::TimedOut {
            break;
        }
    }
    for (s, id) in registered {
        s.inner.remove_waker(id);
    }
    match (first(), failed) {
        (Some(i), _) => Ok(Some(i)),
        (None, Some(st)) => Err(st),
        (None, None) => Ok(None),
    }
}

/// A registered callback; dropping it unregisters (see [`Stopper::on_stop`]).
#[must_use = "dropping the guard unregisters the callback"]
pub struct Callback {
    stopper: Option<Stopper>,
    id: u64,
}

impl Callback {
    /// Unregisters now: true when removed before it ran.
    pub fn unregister(mut self) -> bool {
        self.take() == Status::Ok
    }

    /// Keeps the callback registered for the stopper's lifetime.
    pub fn forget(mut self) {
        self.stopper = None;
    }

    fn take(&mut self) -> Status {
        match self.stopper.take() {
            Some(s) => s.unregister(self.id),
            None => Status::Stopped,
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_stopper_fits_in_a_64_byte_allocation() {
        // Arc header (two counts) + Inner; glibc rounds a 56-byte request to a 64-byte chunk.
        let arc_inner = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Inner>();
        assert!(arc_inner <= 56, "ArcInner<Inner> is {arc_inner} bytes");
    }
}
