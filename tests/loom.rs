//! Loom model of the core state machine: every interleaving (up to LOOM_MAX_PREEMPTIONS) of
//! stop vs wait, concurrent stops, stop vs register/unregister, child linking and release vs
//! the parent's stop, enter/exit vs join. Built only with `--cfg loom` (`make check-loom`);
//! the futex is modelled exactly (see src/base/sync.rs), deadlines are not.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;
use std::sync::atomic::Ordering::SeqCst;

use stopper::{Status, Stopper, Wait};

#[test]
fn stop_vs_wait_loses_no_wakeup() {
    loom::model(|| {
        let s = Stopper::new();
        let w = {
            let s = s.clone();
            thread::spawn(move || s.wait(None))
        };
        s.stop(0);
        assert_eq!(w.join().unwrap(), Wait::Stopped);
    });
}

#[test]
fn concurrent_stops_have_one_winner_whose_reason_is_kept() {
    loom::model(|| {
        let s = Stopper::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.stop(2))
        };
        let mine = s.stop(3);
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs, "exactly one winner");
        assert_eq!(s.reason(), if mine { 3 } else { 2 });
    });
}

#[test]
fn stop_vs_register_runs_each_callback_once() {
    loom::model(|| {
        let s = Stopper::new();
        let count = Arc::new(AtomicUsize::new(0));
        let t = {
            let (s, count) = (s.clone(), Arc::clone(&count));
            thread::spawn(move || {
                s.on_stop(move |_| {
                    count.fetch_add(1, SeqCst);
                })
                .forget();
            })
        };
        s.stop(0);
        t.join().unwrap();
        assert_eq!(count.load(SeqCst), 1);
    });
}

#[test]
fn stop_vs_unregister_is_exact() {
    loom::model(|| {
        let s = Stopper::new();
        let count = Arc::new(AtomicUsize::new(0));
        let g = {
            let count = Arc::clone(&count);
            s.on_stop(move |_| {
                count.fetch_add(1, SeqCst);
            })
        };
        let t = {
            let s = s.clone();
            thread::spawn(move || s.stop(0))
        };
        let removed = g.unregister();
        // Removed: it never runs. Not removed: it has run to completion by now.
        assert_eq!(count.load(SeqCst), usize::from(!removed));
        t.join().unwrap();
        assert_eq!(count.load(SeqCst), usize::from(!removed));
    });
}

#[test]
fn child_created_during_the_parents_stop_ends_stopped() {
    loom::model(|| {
        let p = Stopper::new();
        let t = {
            let p = p.clone();
            thread::spawn(move || p.child())
        };
        p.stop(7);
        let c = t.join().unwrap();
        assert!(c.is_set());
        assert_eq!(c.reason(), 7);
    });
}

#[test]
fn child_released_during_the_parents_stop() {
    loom::model(|| {
        let p = Stopper::new();
        let c = p.child();
        let c2 = p.child();
        let t = thread::spawn(move || drop(c));
        p.stop(0);
        t.join().unwrap();
        assert!(c2.is_set());
    });
}

#[test]
fn join_waits_for_a_worker_inside() {
    loom::model(|| {
        let s = Stopper::new();
        let entered = Arc::new(AtomicBool::new(false));
        let leaving = Arc::new(AtomicBool::new(false));
        let t = {
            let (s, entered, leaving) = (s.clone(), Arc::clone(&entered), Arc::clone(&leaving));
            thread::spawn(move || {
                s.enter_raw(None);
                entered.store(true, SeqCst);
                s.wait(None);
                leaving.store(true, SeqCst);
                assert_eq!(s.exit(), Status::Ok);
            })
        };
        while !entered.load(SeqCst) {
            loom::hint::spin_loop();
        }
        assert_eq!(s.join_deadline(None), Status::Ok);
        assert!(
            leaving.load(SeqCst),
            "join returned while the worker was inside"
        );
        t.join().unwrap();
    });
}

#[test]
fn wait_any_vs_stop() {
    loom::model(|| {
        let a = Stopper::new();
        let b = Stopper::new();
        let t = {
            let b = b.clone();
            thread::spawn(move || b.stop(0))
        };
        assert_eq!(stopper::wait_any(&[Some(&a), Some(&b)], None), Some(1));
        t.join().unwrap();
    });
}

/// The channel: a receive blocked on an empty channel gets the item sent from another thread
/// (the sleeper bit set before the last look, the wake after the publishing: no lost wake-up).
#[test]
fn chan_blocked_recv_gets_the_item() {
    loom::model(|| {
        let c = Arc::new(stopper::Channel::new(0));
        let r = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.recv(None, None))
        };
        assert_eq!(c.send(7, None, None), Status::Ok);
        assert_eq!(r.join().unwrap(), Ok(7));
    });
}

/// A full channel of capacity 1: the second send blocks until the receiver takes the first;
/// both arrive, in order.
#[test]
fn chan_blocked_send_gets_the_freed_slot() {
    loom::model(|| {
        let c = Arc::new(stopper::Channel::new(1));
        let s = {
            let c = Arc::clone(&c);
            thread::spawn(move || {
                assert_eq!(c.send(1, None, None), Status::Ok);
                assert_eq!(c.send(2, None, None), Status::Ok);
            })
        };
        assert_eq!(c.recv(None, None), Ok(1));
        assert_eq!(c.recv(None, None), Ok(2));
        s.join().unwrap();
    });
}

/// A stop wakes a receive blocked (or about to block) on an empty channel.
#[test]
fn chan_stop_wakes_blocked_recv() {
    loom::model(|| {
        let s = Stopper::new();
        let c = Arc::new(stopper::Channel::new(0));
        let r = {
            let (s, c) = (s.clone(), Arc::clone(&c));
            thread::spawn(move || c.recv(Some(&s), None))
        };
        s.stop(0);
        assert_eq!(r.join().unwrap(), Err(Status::Stopped));
    });
}

/// `close` wakes a send blocked on a full channel; the queued item is still received.
#[test]
fn chan_close_wakes_blocked_send() {
    loom::model(|| {
        let c = Arc::new(stopper::Channel::new(1));
        assert_eq!(c.send(1, None, None), Status::Ok);
        let w = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.send(2, None, None))
        };
        c.close();
        assert_eq!(w.join().unwrap(), Status::Closed);
        assert_eq!(c.recv(None, None), Ok(1));
        assert_eq!(c.recv(None, None), Err(Status::Closed));
    });
}
