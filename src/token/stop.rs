//! The stop: who wins it, how the flag is published, and the walk that runs its actions.
//!
//! Ordering. `stop` decides the winner with a compare-and-swap on the reason (0 → reason), then
//! publishes the flag with a release RMW; readers load the flag with acquire. So everything the
//! stopping thread wrote before `stop`, and the reason, are visible to a thread that sees the
//! flag. After the flag: waiters are woken (futex), then, under the slow lock but never while
//! user code runs, wakers run, children are stopped, the attachments' stop steps run (the
//! descriptor, the workers' hooks…) and callbacks run, each popped from its list one at a time
//! so that concurrent unregistration stays exact.

use std::sync::atomic::Ordering;

use crate::base::rc::Arc;
use crate::base::sync::{futex, AtomicU32, Gated};
use crate::token::attach::{Panic, MAX_STEPS};
use crate::token::inner::{
    Inner, Slow, ACTIONS_DONE, ACTIONS_IDLE, ACTIONS_NEVER, ACTIONS_RUNNING, STOPPED, WAITERS,
};

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
            let took = self.take_actions();
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

    /// Takes this process's stop actions for the calling thread: true when nobody had.
    fn take_actions(&self) -> bool {
        self.actions
            .compare_exchange(
                ACTIONS_IDLE,
                ACTIONS_RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
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
        if self.take_actions() {
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
