//! Workers, join, the current stopper and the interrupt hook.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use stopper::{current, Hook, HookFn, Status, Stopper};

fn boxed_hook(f: impl Fn(u64, i32) + Send + Sync + 'static, repeat_ns: i64) -> Hook {
    Hook {
        func: HookFn::Boxed(Arc::new(f)),
        repeat_ns,
    }
}

#[test]
fn enter_exit_nest_and_current_follows() {
    let a = Stopper::new();
    let b = Stopper::new();
    assert!(current().is_none());
    assert_eq!(a.enter_raw(None), Status::Ok);
    assert_eq!(current(), Some(a.clone()));
    assert_eq!(b.enter_raw(None), Status::Ok);
    assert_eq!(current(), Some(b.clone()));
    assert_eq!(a.exit(), Status::Inval, "not the innermost");
    assert_eq!(current(), Some(b.clone()), "a failed exit changes nothing");
    assert_eq!(b.exit(), Status::Ok);
    assert_eq!(a.exit(), Status::Ok);
    assert_eq!(a.exit(), Status::Inval, "not inside");
    assert!(current().is_none());
    a.stop(0);
    assert_eq!(a.enter_raw(None), Status::Stopped, "inside all the same");
    assert_eq!(current(), Some(a.clone()));
    assert_eq!(a.exit(), Status::Ok);
}

#[test]
fn join_stops_then_waits_for_every_worker() {
    let s = Stopper::new();
    let exited = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (s, exited, ready) = (s.clone(), Arc::clone(&exited), Arc::clone(&ready));
            std::thread::spawn(move || {
                let _scope = s.enter(None);
                ready.wait();
                s.wait(None);
                std::thread::sleep(Duration::from_millis(20));
                exited.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    ready.wait();
    assert_eq!(s.join(Some(Duration::from_secs(10))), Status::Ok);
    assert_eq!(s.reason(), stopper::REASON_REQUESTED);
    assert_eq!(
        exited.load(Ordering::SeqCst),
        3,
        "join returned before the workers exited"
    );
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn join_times_out_while_a_worker_stays() {
    let s = Stopper::new();
    let release = Arc::new(Barrier::new(2));
    let entered = Arc::new(Barrier::new(2));
    let t = {
        let (s, release, entered) = (s.clone(), Arc::clone(&release), Arc::clone(&entered));
        std::thread::spawn(move || {
            let _scope = s.enter(None);
            entered.wait();
            release.wait(); // ignores the stop until told
        })
    };
    entered.wait();
    let t0 = Instant::now();
    assert_eq!(s.join(Some(Duration::from_millis(50))), Status::TimedOut);
    assert!(t0.elapsed() >= Duration::from_millis(45));
    release.wait();
    assert_eq!(s.join(Some(Duration::from_secs(10))), Status::Ok);
    t.join().unwrap();
}

#[test]
fn a_worker_joining_its_own_stopper_gets_edeadlk_without_stopping_it() {
    let s = Stopper::new();
    let _scope = s.enter(None);
    assert_eq!(s.join(None), Status::Deadlk);
    assert!(!s.is_set());
}

#[test]
fn a_thread_that_ends_inside_is_exited_automatically() {
    let s = Stopper::new();
    let t = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.enter_raw(None); // never exits explicitly
        })
    };
    t.join().unwrap();
    assert_eq!(s.join(Some(Duration::from_secs(5))), Status::Ok);
}

#[test]
fn spawn_is_a_worker_from_the_call_on() {
    for _ in 0..common::iters(300) {
        let s = Stopper::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        let s2 = s.clone();
        assert_eq!(
            s.spawn(move || {
                assert_eq!(current(), Some(s2.clone()));
                s2.wait(None);
                d.store(1, Ordering::SeqCst);
            }),
            Status::Ok
        );
        assert_eq!(s.join(Some(Duration::from_secs(10))), Status::Ok);
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "join returned before the spawned thread ended"
        );
    }
}

#[test]
fn hook_gets_the_worker_thread_id_and_reason_on_the_stopping_thread() {
    let s = Stopper::new();
    let seen = Arc::new(Mutex::new(None));
    let ready = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let worker = {
        let (s, seen, ready, go) = (
            s.clone(),
            Arc::clone(&seen),
            Arc::clone(&ready),
            Arc::clone(&go),
        );
        std::thread::spawn(move || {
            let seen2 = Arc::clone(&seen);
            let _scope = s.enter(Some(boxed_hook(
                move |tid, reason| {
                    *seen2.lock().unwrap() = Some((tid, reason, stopper::thread_id()))
                },
                0,
            )));
            ready.wait();
            go.wait();
            stopper::thread_id()
        })
    };
    ready.wait();
    s.stop(6);
    let me = stopper::thread_id();
    go.wait();
    let worker_tid = worker.join().unwrap();
    assert_eq!(*seen.lock().unwrap(), Some((worker_tid, 6, me)));
}

#[test]
fn no_hook_for_a_thread_entering_a_stopped_stopper() {
    let s = Stopper::new();
    s.stop(0);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let scope = s.enter(Some(boxed_hook(
        move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        },
        0,
    )));
    assert!(scope.stopped_at_entry());
    drop(scope);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn repeated_hook_repeats_until_exit_and_never_after() {
    let s = Stopper::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let scope = s.enter(Some(boxed_hook(
        move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        },
        5_000_000,
    )));
    s.stop(0);
    assert!(
        common::eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) >= 4),
        "hook not repeated"
    );
    drop(scope);
    let after_exit = calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_exit,
        "hook called after exit returned"
    );
}

#[test]
fn exit_waits_for_a_hook_in_progress() {
    for _ in 0..common::iters(200) {
        let s = Stopper::new();
        let in_hook = Arc::new(AtomicU64::new(0));
        let entered = Arc::new(Barrier::new(2));
        let worker = {
            let (s, in_hook, entered) = (s.clone(), Arc::clone(&in_hook), Arc::clone(&entered));
            std::thread::spawn(move || {
                let ih = Arc::clone(&in_hook);
                let scope = s.enter(Some(boxed_hook(
                    move |_, _| {
                        ih.store(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        ih.store(2, Ordering::SeqCst);
                    },
                    0,
                )));
                entered.wait();
                while !s.is_set() {
                    std::hint::spin_loop();
                }
                drop(scope);
                // After exit returned, the hook is not mid-call.
                in_hook.load(Ordering::SeqCst)
            })
        };
        entered.wait();
        s.stop(0);
        let state = worker.join().unwrap();
        assert_ne!(state, 1, "exit returned while the hook ran");
    }
}

#[test]
fn race_stop_vs_enter_exit_vs_join() {
    for _ in 0..common::iters(1000) {
        let s = Stopper::new();
        // Workers stay inside until `stop` has returned, so every worker inside at the stop
        // must have had its hook called by then.
        let stop_returned = Stopper::new();
        let b = Arc::new(Barrier::new(3));
        let hooks = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (s, after, b, hooks) = (
                    s.clone(),
                    stop_returned.clone(),
                    Arc::clone(&b),
                    Arc::clone(&hooks),
                );
                std::thread::spawn(move || {
                    b.wait();
                    let h = Arc::clone(&hooks);
                    let st = s.enter_raw(Some(boxed_hook(
                        move |_, _| {
                            h.fetch_add(1, Ordering::SeqCst);
                        },
                        0,
                    )));
                    let stopped_at_entry = st == Status::Stopped;
                    after.wait(Some(Duration::from_secs(10)));
                    assert_eq!(s.exit(), Status::Ok);
                    stopped_at_entry
                })
            })
            .collect();
        b.wait();
        s.stop(0);
        let hooks_at_return = hooks.load(Ordering::SeqCst);
        stop_returned.stop(0);
        assert_eq!(s.join(Some(Duration::from_secs(10))), Status::Ok);
        let late: usize = workers
            .into_iter()
            .map(|w| usize::from(w.join().unwrap()))
            .sum();
        // Each worker entered before the stop (one hook call, made before stop returned) or
        // after it (STOPPED at entry, no call).
        assert_eq!(hooks_at_return, 2 - late);
        assert_eq!(hooks.load(Ordering::SeqCst), 2 - late);
    }
}
