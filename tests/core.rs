//! The core contract, through the safe Rust API: stop, flag, reason, wait, children, linked
//! stoppers, callbacks, wait_any — and the races between them, repeated many times.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use stopper::{wait_any, Status, Stopper, Wait, REASON_REQUESTED};

#[test]
fn first_stop_wins_and_records_its_reason() {
    let s = Stopper::new();
    assert!(!s.is_set());
    assert_eq!(s.reason(), 0);
    assert!(s.stop(42));
    assert!(!s.stop(7));
    assert!(s.is_set());
    assert_eq!(s.reason(), 42);
    let t = Stopper::new();
    assert!(t.stop(0));
    assert_eq!(t.reason(), REASON_REQUESTED, "0 becomes REQUESTED");
    let n = Stopper::new();
    n.stop(-9);
    assert_eq!(n.reason(), -9, "negative reasons are the caller's own");
}

#[test]
fn flag_byte_follows_the_stop() {
    let s = Stopper::new();
    let f = s.flag_ptr();
    // SAFETY: valid while `s` lives.
    assert_eq!(unsafe { f.read_volatile() }, 0);
    s.stop(0);
    assert_ne!(unsafe { f.read_volatile() }, 0);
}

#[test]
fn wait_times_out_then_wakes_on_stop() {
    let s = Stopper::new();
    let t0 = Instant::now();
    assert_eq!(s.wait(Some(Duration::from_millis(50))), Wait::TimedOut);
    assert!(
        t0.elapsed() >= Duration::from_millis(45),
        "returned early: {:?}",
        t0.elapsed()
    );
    let w = {
        let s = s.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            (s.wait(Some(Duration::from_secs(30))), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    s.stop(0);
    let (r, took) = w.join().unwrap();
    assert_eq!(r, Wait::Stopped);
    assert!(took < Duration::from_secs(5), "woke after {took:?}");
    assert_eq!(s.wait(Some(Duration::ZERO)), Wait::Stopped);
}

#[test]
fn stop_publishes_prior_writes() {
    for _ in 0..common::iters(2000) {
        let s = Stopper::new();
        let data = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (s, data) = (s.clone(), Arc::clone(&data));
            std::thread::spawn(move || {
                while !s.is_set() {
                    std::hint::spin_loop();
                }
                data.load(Ordering::Relaxed)
            })
        };
        data.store(99, Ordering::Relaxed);
        s.stop(0);
        assert_eq!(reader.join().unwrap(), 99);
    }
}

#[test]
fn race_stop_vs_wait_loses_no_wakeup() {
    for i in 0..common::iters(5000) {
        let s = Stopper::new();
        let w = {
            let s = s.clone();
            std::thread::spawn(move || s.wait(Some(Duration::from_secs(10))))
        };
        if i % 2 == 0 {
            std::thread::yield_now();
        }
        s.stop(0);
        assert_eq!(
            w.join().unwrap(),
            Wait::Stopped,
            "iteration {i}: lost wake-up"
        );
    }
}

#[test]
fn race_concurrent_stops_have_exactly_one_winner() {
    for _ in 0..common::iters(2000) {
        let s = Stopper::new();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (1..=4)
            .map(|r| {
                let (s, b) = (s.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    b.wait();
                    let won = s.stop(r);
                    // "already stopped" must be true when a stop returns it.
                    assert!(s.is_set());
                    (won, r)
                })
            })
            .collect();
        let results: Vec<(bool, i32)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<i32> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
        assert_eq!(winners.len(), 1);
        assert_eq!(s.reason(), winners[0], "the winner's reason is recorded");
    }
}

#[test]
fn children_follow_parents_never_upward() {
    let p = Stopper::new();
    let c = p.child();
    let g = c.child();
    g.stop(5);
    assert!(!c.is_set() && !p.is_set(), "a child's stop never goes up");
    p.stop(11);
    assert!(c.is_set());
    assert_eq!(c.reason(), 11, "children record the parent's reason");
    assert_eq!(g.reason(), 5, "already stopped grandchild keeps its reason");
    let late = p.child();
    assert!(late.is_set(), "child of a stopped parent is born stopped");
    assert_eq!(late.reason(), 11);
}

#[test]
fn linked_stopper_stops_with_any_parent_and_its_reason() {
    let a = Stopper::new();
    let b = Stopper::new();
    let l = Stopper::linked(&[&a, &b]);
    assert!(!l.is_set());
    b.stop(23);
    assert!(l.is_set());
    assert_eq!(l.reason(), 23);
    assert!(!a.is_set());
    let plain = Stopper::linked(&[]);
    assert!(!plain.is_set());
}

#[test]
fn released_children_are_unlinked_memory_stays_flat() {
    let p = Stopper::new();
    let n = common::iters(1_000_000);
    for _ in 0..n / 10 {
        drop(p.child());
    }
    let before = common::rss_bytes();
    for _ in 0..n {
        drop(p.child());
    }
    let after = common::rss_bytes();
    assert!(
        after < before + 4 * 1024 * 1024,
        "parent grew: {before} -> {after} bytes over {n} children"
    );
    // The parent still works and still stops live children.
    let c = p.child();
    p.stop(0);
    assert!(c.is_set());
}

#[test]
fn callbacks_run_once_in_order_on_the_stopping_thread() {
    let s = Stopper::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stopping_thread = Arc::new(Mutex::new(None));
    let mut guards = vec![];
    for i in 0..5 {
        let (log, st) = (Arc::clone(&log), Arc::clone(&stopping_thread));
        guards.push(s.on_stop(move |r| {
            log.lock().unwrap().push((i, r));
            *st.lock().unwrap() = Some(std::thread::current().id());
        }));
    }
    let t = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.stop(3);
            std::thread::current().id()
        })
    };
    let stopper_tid = t.join().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        (0..5).map(|i| (i, 3)).collect::<Vec<_>>()
    );
    assert_eq!(*stopping_thread.lock().unwrap(), Some(stopper_tid));
    s.stop(0);
    drop(guards);
    assert_eq!(log.lock().unwrap().len(), 5, "ran once each");
}

#[test]
fn on_stop_after_stop_runs_inline() {
    let s = Stopper::new();
    s.stop(8);
    let ran = Arc::new(Mutex::new(None));
    let r2 = Arc::clone(&ran);
    let here = std::thread::current().id();
    let g = s.on_stop(move |r| *r2.lock().unwrap() = Some((r, std::thread::current().id())));
    assert_eq!(*ran.lock().unwrap(), Some((8, here)));
    assert!(!g.unregister(), "nothing was registered");
}

#[test]
fn unregister_before_stop_means_never_runs() {
    let s = Stopper::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let g = s.on_stop(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(g.unregister());
    s.stop(0);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[test]
fn unregister_ids_unknown_removed_and_run() {
    let s = Stopper::new();
    assert_eq!(s.unregister(12345), Status::Inval, "never issued");
    // SAFETY: a plain fn with no context.
    let id = unsafe {
        s.on_stop_raw(stopper::RawFn {
            call: noop,
            ctx: 0,
            data: 0,
        })
    }
    .unwrap();
    assert_ne!(id, 0);
    assert_eq!(s.unregister(id), Status::Ok);
    assert_eq!(
        s.unregister(id),
        Status::Inval,
        "already removed while running"
    );
    // SAFETY: as above.
    let id2 = unsafe {
        s.on_stop_raw(stopper::RawFn {
            call: noop,
            ctx: 0,
            data: 0,
        })
    }
    .unwrap();
    s.stop(0);
    assert_eq!(s.unregister(id2), Status::Stopped, "ran");
}

unsafe fn noop(_: usize, _: usize, _: u64, _: i32) {}

#[test]
fn unregister_blocks_while_the_callback_runs_elsewhere() {
    let s = Stopper::new();
    let entered = Arc::new(Barrier::new(2));
    let finished = Arc::new(AtomicUsize::new(0));
    let g = {
        let (entered, finished) = (Arc::clone(&entered), Arc::clone(&finished));
        s.on_stop(move |_| {
            entered.wait();
            std::thread::sleep(Duration::from_millis(100));
            finished.store(1, Ordering::SeqCst);
        })
    };
    let stopper_thread = {
        let s = s.clone();
        std::thread::spawn(move || s.stop(0))
    };
    entered.wait();
    let t0 = Instant::now();
    assert!(!g.unregister(), "it ran (is running)");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "unregister returned before the callback did"
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));
    stopper_thread.join().unwrap();
}

#[test]
fn callback_may_unregister_itself_release_stop_and_register() {
    let s = Stopper::new();
    let other = Stopper::new();
    let id_cell = Arc::new(Mutex::new(0u64));
    let inner_ran = Arc::new(AtomicUsize::new(0));
    let result = Arc::new(Mutex::new(None));
    {
        let (s2, other2, idc, res, inner_ran2) = (
            s.clone(),
            other.clone(),
            Arc::clone(&id_cell),
            Arc::clone(&result),
            Arc::clone(&inner_ran),
        );
        let g = s.on_stop(move |_| {
            let own = *idc.lock().unwrap();
            let r = s2.unregister(own); // from inside itself: must not block
            other2.stop(4); // stop another stopper
            let ir = Arc::clone(&inner_ran2);
            s2.on_stop(move |_| {
                ir.fetch_add(1, Ordering::SeqCst);
            })
            .forget(); // register on a stopped stopper: runs inline
            drop(s2); // release a reference to the stopper being stopped
            *res.lock().unwrap() = Some(r);
        });
        // Learn the id through a raw registration alongside: use the guard's unregister path
        // only at the end. The Rust guard hides its id, so test self-unregister via C ABI too.
        g.forget();
    }
    // For self-unregister with a real id, use the raw API.
    let s_raw = s.clone();
    let self_id = Arc::new(Mutex::new(0u64));
    let res2 = Arc::new(Mutex::new(None));
    struct Ctx {
        s: Stopper,
        id: Arc<Mutex<u64>>,
        res: Arc<Mutex<Option<Status>>>,
    }
    unsafe fn self_unreg(ctx: usize, _: usize, _: u64, _: i32) {
        // SAFETY: ctx is a leaked Box<Ctx> below, used once.
        let c = unsafe { Box::from_raw(ctx as *mut Ctx) };
        let id = *c.id.lock().unwrap();
        *c.res.lock().unwrap() = Some(c.s.unregister(id));
    }
    let ctx = Box::into_raw(Box::new(Ctx {
        s: s_raw,
        id: Arc::clone(&self_id),
        res: Arc::clone(&res2),
    })) as usize;
    // SAFETY: self_unreg consumes ctx exactly once; it runs (the stopper is stopped below).
    let id = unsafe {
        s.on_stop_raw(stopper::RawFn {
            call: self_unreg,
            ctx,
            data: 0,
        })
    }
    .unwrap();
    *self_id.lock().unwrap() = id;
    let t = {
        let s = s.clone();
        std::thread::spawn(move || s.stop(0))
    };
    assert!(t.join().unwrap());
    assert_eq!(
        *res2.lock().unwrap(),
        Some(Status::Stopped),
        "self-unregister from inside returns STOPPED"
    );
    assert!(other.is_set());
    assert_eq!(inner_ran.load(Ordering::SeqCst), 1);
    assert!(result.lock().unwrap().is_some());
}

#[test]
fn race_stop_vs_on_stop_runs_each_exactly_once() {
    for _ in 0..common::iters(3000) {
        let s = Stopper::new();
        let count = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(Barrier::new(2));
        let reg = {
            let (s, count, b) = (s.clone(), Arc::clone(&count), Arc::clone(&b));
            std::thread::spawn(move || {
                b.wait();
                for _ in 0..4 {
                    let c = Arc::clone(&count);
                    s.on_stop(move |_| {
                        c.fetch_add(1, Ordering::SeqCst);
                    })
                    .forget();
                }
            })
        };
        b.wait();
        s.stop(0);
        reg.join().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }
}

#[test]
fn race_stop_vs_unregister_never_runs_after_ok() {
    for _ in 0..common::iters(3000) {
        let s = Stopper::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let g = s.on_stop(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.stop(0))
        };
        let removed = g.unregister();
        t.join().unwrap();
        let n = ran.load(Ordering::SeqCst);
        if removed {
            assert_eq!(n, 0, "removed, yet it ran");
        } else {
            assert_eq!(n, 1, "not removed, so it ran (and finished) exactly once");
        }
    }
}

#[test]
fn wait_any_returns_a_stopped_index_or_times_out() {
    let a = Stopper::new();
    let b = Stopper::new();
    let t0 = Instant::now();
    let dl = Some(stopper::now_ns() + 30_000_000);
    assert_eq!(wait_any(&[Some(&a), None, Some(&b)], dl), None);
    assert!(t0.elapsed() >= Duration::from_millis(25));
    let t = {
        let b = b.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            b.stop(0);
        })
    };
    assert_eq!(wait_any(&[Some(&a), None, Some(&b)], None), Some(2));
    t.join().unwrap();
    for _ in 0..common::iters(2000) {
        let x = Stopper::new();
        let y = Stopper::new();
        let t = {
            let y = y.clone();
            std::thread::spawn(move || y.stop(0))
        };
        assert_eq!(
            wait_any(
                &[Some(&x), Some(&y)],
                Some(stopper::now_ns() + 10_000_000_000)
            ),
            Some(1)
        );
        t.join().unwrap();
    }
}

#[test]
fn stop_with_many_callbacks_and_children_is_complete_on_return() {
    let s = Stopper::new();
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let c = Arc::clone(&count);
        s.on_stop(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .forget();
    }
    let kids: Vec<Stopper> = (0..1000).map(|_| s.child()).collect();
    s.stop(0);
    assert_eq!(count.load(Ordering::Relaxed), 1000);
    assert!(kids.iter().all(|k| k.is_set()));
}

// ---- Second-edition hardening (issue 12): deep chains, panics, removed ids ----

/// A chain of `n` children under `root` (each the child of the previous one).
fn chain(root: &Stopper, n: usize) -> Vec<Stopper> {
    let mut v: Vec<Stopper> = Vec::with_capacity(n);
    for _ in 0..n {
        let next = v.last().unwrap_or(root).child();
        v.push(next);
    }
    v
}

const DEEP: usize = 200_000;

#[test]
fn a_deep_chain_stops_and_releases_without_recursion() {
    // On a thread with a small stack (256 KiB): a recursive stop or release of this chain
    // needs far more, and overflows (SIGSEGV: the whole test binary dies).
    let t = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            // Stopped at the root, then released leaf first.
            let root = Stopper::new();
            let mut v = chain(&root, DEEP);
            let ran = Arc::new(AtomicUsize::new(0));
            {
                let ran = Arc::clone(&ran);
                v.last()
                    .unwrap()
                    .on_stop(move |r| {
                        assert_eq!(r, 9);
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .forget();
            }
            assert!(root.stop(9));
            assert!(v.iter().all(|c| c.is_set() && c.reason() == 9));
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            v.reverse();
            drop(v);
            drop(root);
            // Released without a stop: only the leaf is held, it holds the whole chain.
            let root = Stopper::new();
            let v = chain(&root, DEEP);
            drop(root);
            let leaf = v.last().unwrap().clone();
            drop(v);
            drop(leaf);
            // Released root first, then the children in order.
            let root = Stopper::new();
            let v = chain(&root, DEEP);
            drop(root);
            drop(v);
        })
        .unwrap();
    t.join().unwrap();
}

#[test]
fn a_deep_chain_of_linked_stoppers_stops_and_releases() {
    let t = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let root = Stopper::new();
            let other = Stopper::new();
            let mut v: Vec<Stopper> = Vec::with_capacity(DEEP);
            for _ in 0..DEEP {
                let next = Stopper::linked(&[v.last().unwrap_or(&root), &other]);
                v.push(next);
            }
            assert!(root.stop(4));
            assert_eq!(v.last().unwrap().reason(), 4);
            let leaf = v.pop().unwrap();
            drop(v);
            drop(root);
            drop(leaf);
            drop(other);
        })
        .unwrap();
    t.join().unwrap();
}

#[test]
fn a_panicking_callback_of_a_child_leaves_no_stop_half_done() {
    for linked in [false, true] {
        let parent = Stopper::new();
        let other = Stopper::new();
        let make = || {
            if linked {
                Stopper::linked(&[&other, &parent])
            } else {
                parent.child()
            }
        };
        let first = make();
        let second = make();
        let grandchild = first.child();
        first.on_stop(|_| panic!("first child's callback")).forget();
        grandchild
            .on_stop(|_| panic!("grandchild's callback"))
            .forget();
        let parent_ran = Arc::new(AtomicUsize::new(0));
        {
            let parent_ran = Arc::clone(&parent_ran);
            parent
                .on_stop(move |_| {
                    parent_ran.fetch_add(1, Ordering::SeqCst);
                })
                .forget();
        }
        let fd = parent.fd().unwrap();
        let r = std::panic::catch_unwind(|| parent.stop(0));
        let p = r.expect_err("the first panic resumes");
        assert_eq!(
            p.downcast_ref::<&str>().copied(),
            Some("grandchild's callback"),
            "the first panic (depth first: the grandchild's runs first) is the one resumed"
        );
        assert!(second.is_set(), "a later child was stopped");
        assert_eq!(
            parent_ran.load(Ordering::SeqCst),
            1,
            "the parent's callback ran"
        );
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(
            unsafe { libc::poll(&mut pfd, 1, 0) },
            1,
            "the fd was signalled"
        );
        // Nothing is left waiting: a second stop returns at once.
        assert!(!parent.stop(0));
        assert!(!first.stop(0));
    }
}

#[test]
fn unregistering_a_removed_id_is_einval_also_during_and_after_the_stop() {
    // Removed earlier by unregister.
    let s = Stopper::new();
    // SAFETY: the function ignores its words.
    unsafe fn nothing(_: usize, _: usize, _: u64, _: i32) {}
    let raw = stopper::RawFn {
        call: nothing,
        ctx: 0,
        data: 0,
    };
    // SAFETY: `nothing` may be called from any thread at any time.
    let a = unsafe { s.on_stop_raw(raw) }.unwrap();
    assert_eq!(s.unregister(a), Status::Ok);
    assert_eq!(s.unregister(a), Status::Inval);
    s.stop(0);
    assert_eq!(
        s.unregister(a),
        Status::Inval,
        "removed before the stop: it never ran"
    );
    // Removed by a callback during the stop.
    let s = Stopper::new();
    let victim = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (s2, victim) = (s.clone(), Arc::clone(&victim));
        s.on_stop(move |_| {
            let id = victim.load(Ordering::SeqCst);
            assert_eq!(s2.unregister(id), Status::Ok, "removed before it ran");
        })
        .forget();
    }
    // SAFETY: as above.
    let b = unsafe { s.on_stop_raw(raw) }.unwrap();
    victim.store(b, Ordering::SeqCst);
    // SAFETY: as above.
    let c = unsafe { s.on_stop_raw(raw) }.unwrap();
    s.stop(0);
    assert_eq!(
        s.unregister(b),
        Status::Inval,
        "removed during the stop: it never ran"
    );
    assert_eq!(s.unregister(c), Status::Stopped, "this one ran");
}
