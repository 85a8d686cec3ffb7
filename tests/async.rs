//! `Stopper::stopped()` on several executors, and the guards: `drop_guard`, `check`, `never`.
//!
//! The futures are run on `futures::executor::block_on` and on tokio runtimes (current-thread
//! and multi-thread); races between a stop and a first poll are repeated many times; whether a
//! dropped future unregistered is seen two ways: its waker is never woken, and a stopper that
//! has seen a million futures come and go holds no more memory than after the first thousand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::{noop_waker, waker, ArcWake};
use stopper::{
    DropGuard, Status, Stopped, StoppedFuture, StoppedOwned, Stopper, Wait, REASON_DEADLINE,
    REASON_REQUESTED,
};

// ---------------------------------------------------------------- heap bytes of this thread

/// Counts the heap bytes allocated minus freed by each thread, so that a test can see whether
/// the stopper it drives grows, whatever the other tests running at the same time do.
struct PerThreadCount;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add_live(delta: isize) {
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: forwards to the system allocator; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for PerThreadCount {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add_live(layout.size() as isize);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as isize));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add_live(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PerThreadCount = PerThreadCount;

fn live_bytes() -> isize {
    LIVE_BYTES.with(|c| c.get())
}

// ---------------------------------------------------------------- helpers

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl ArcWake for CountingWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once<F: Future>(f: Pin<&mut F>, w: &std::task::Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(w))
}

/// Runs `f` on a thread of its own and fails the test if it does not finish in `limit` (a lost
/// wake-up shows as a hang: this turns it into a failure with a message).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done after {limit:?} (a lost wake-up?)"),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

/// `n`, or a few under Miri (which interprets every step: the properties are the same, the
/// repetitions are for real runs).
const fn reps(n: usize) -> usize {
    if cfg!(miri) {
        if n < 5 {
            n
        } else {
            5
        }
    } else {
        n
    }
}

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn the_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StoppedFuture<'static>>();
    send_sync::<StoppedOwned>();
    send_sync::<DropGuard>();
    send_sync::<Stopped>();
}

// ---------------------------------------------------------------- stopped(): executors

#[test]
fn block_on_wakes_when_another_thread_stops() {
    let s = Stopper::new();
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || futures::executor::block_on(s.stopped()))
    };
    std::thread::sleep(Duration::from_millis(20)); // most likely parked in block_on by now
    assert!(s.stop(9));
    assert_eq!(waiter.join().unwrap(), 9);
}

#[test]
fn an_already_stopped_stopper_is_ready_at_the_first_poll() {
    let s = Stopper::new();
    s.stop(0);
    let w = Arc::new(CountingWaker::default());
    let f = pin!(s.stopped());
    assert_eq!(
        poll_once(f, &waker(w.clone())),
        Poll::Ready(REASON_REQUESTED)
    );
    assert_eq!(
        w.wakes.load(Ordering::SeqCst),
        0,
        "nothing registered, nothing woken"
    );
}

#[test]
fn pending_until_the_stop_then_ready_with_its_reason_and_ready_again() {
    let s = Stopper::new();
    let w = Arc::new(CountingWaker::default());
    let wk = waker(w.clone());
    let mut f = pin!(s.stopped());
    assert_eq!(poll_once(f.as_mut(), &wk), Poll::Pending);
    assert_eq!(poll_once(f.as_mut(), &wk), Poll::Pending);
    assert_eq!(w.wakes.load(Ordering::SeqCst), 0);
    s.stop(4);
    assert_eq!(
        w.wakes.load(Ordering::SeqCst),
        1,
        "the stop wakes the task once"
    );
    assert_eq!(poll_once(f.as_mut(), &wk), Poll::Ready(4));
    assert_eq!(poll_once(f.as_mut(), &wk), Poll::Ready(4));
}

#[test]
fn a_later_poll_with_another_waker_replaces_the_first() {
    let s = Stopper::new();
    let (a, b) = (
        Arc::new(CountingWaker::default()),
        Arc::new(CountingWaker::default()),
    );
    let mut f = pin!(s.stopped());
    assert_eq!(poll_once(f.as_mut(), &waker(a.clone())), Poll::Pending);
    assert_eq!(poll_once(f.as_mut(), &waker(b.clone())), Poll::Pending);
    s.stop(0);
    assert_eq!(
        a.wakes.load(Ordering::SeqCst),
        0,
        "the task moved: its old waker is stale"
    );
    assert_eq!(b.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll_once(f, &waker(b.clone())),
        Poll::Ready(REASON_REQUESTED)
    );
}

#[test]
fn a_dropped_future_is_never_woken() {
    let s = Stopper::new();
    let w = Arc::new(CountingWaker::default());
    let mut f = Box::pin(s.clone().stopped_owned());
    assert_eq!(poll_once(f.as_mut(), &waker(w.clone())), Poll::Pending);
    drop(f);
    let kept = Arc::new(CountingWaker::default());
    let mut g = Box::pin(s.stopped());
    assert_eq!(poll_once(g.as_mut(), &waker(kept.clone())), Poll::Pending);
    s.stop(0);
    assert_eq!(
        w.wakes.load(Ordering::SeqCst),
        0,
        "dropping the future unregistered it"
    );
    assert_eq!(kept.wakes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_child_future_completes_with_the_parents_reason() {
    let parent = Stopper::new();
    let child = parent.child();
    let waiter = std::thread::spawn(move || futures::executor::block_on(child.stopped()));
    std::thread::sleep(Duration::from_millis(10));
    parent.stop(12);
    assert_eq!(waiter.join().unwrap(), 12);
}

#[test]
fn a_deadline_completes_the_future() {
    let s = Stopper::new();
    assert_eq!(s.stop_after(Some(Duration::from_millis(5)), 0), Status::Ok);
    let reason = within(LIMIT, "deadline", move || {
        futures::executor::block_on(s.stopped())
    });
    assert_eq!(reason, REASON_DEADLINE);
}

#[test]
fn tokio_current_thread_wakes_on_a_stop_from_another_thread() {
    let rt = current_thread_rt();
    let s = Stopper::new();
    let stopper_thread = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s.stop(5)
        })
    };
    let reason = rt.block_on(async {
        let a = tokio::spawn(s.clone().stopped_owned());
        let b = s.stopped().await;
        (a.await.unwrap(), b)
    });
    assert_eq!(reason, (5, 5));
    assert!(stopper_thread.join().unwrap());
}

#[test]
fn tokio_current_thread_wakes_on_a_stop_from_another_task() {
    let rt = current_thread_rt();
    let s = Stopper::new();
    let got = rt.block_on(async {
        let waiter = tokio::spawn(s.clone().stopped_owned());
        tokio::task::yield_now().await; // the waiter registers
        let stopper = {
            let s = s.clone();
            tokio::spawn(async move { s.stop(6) })
        };
        assert!(stopper.await.unwrap());
        waiter.await.unwrap()
    });
    assert_eq!(got, 6);
}

#[test]
fn tokio_multi_thread_many_tasks_on_one_stopper_all_wake() {
    const TASKS: usize = reps(2000);
    let rt = multi_thread_rt();
    let s = Stopper::new();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let s = s.clone();
            let done = Arc::clone(&done);
            rt.spawn(async move {
                let r = s.stopped().await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "nothing completes before the stop"
    );
    s.stop(31);
    let reasons = rt.block_on(async {
        let mut v = Vec::with_capacity(TASKS);
        for h in handles {
            v.push(
                tokio::time::timeout(LIMIT, h)
                    .await
                    .expect("a task was never woken")
                    .unwrap(),
            );
        }
        v
    });
    assert!(reasons.iter().all(|&r| r == 31));
    assert_eq!(done.load(Ordering::SeqCst), TASKS);
}

#[test]
fn many_futures_in_one_task_all_complete() {
    let s = Stopper::new();
    let n = reps(500);
    let futs: Vec<_> = (0..n).map(|_| s.stopped()).collect();
    let stopper_thread = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            s.stop(8)
        })
    };
    let all = futures::executor::block_on(futures::future::join_all(futs));
    assert_eq!(all, vec![8; n]);
    stopper_thread.join().unwrap();
}

// ---------------------------------------------------------------- select! and memory

#[test]
fn select_drops_the_losing_future_which_unregisters() {
    const WARM: usize = reps(2_000);
    const ROUNDS: usize = reps(200_000);
    let rt = current_thread_rt();
    let s = Stopper::new();
    let grew = rt.block_on(async {
        let mut before = 0;
        for i in 0..WARM + ROUNDS {
            if i == WARM {
                before = live_bytes();
            }
            tokio::select! {
                biased;
                _ = s.stopped() => unreachable!("nobody stops it"),
                _ = std::future::ready(()) => {}
            }
        }
        live_bytes() - before
    });
    assert!(
        grew < 4096,
        "the stopper grew by {grew} bytes over {ROUNDS} abandoned futures"
    );
    // And it still works.
    s.stop(0);
    assert_eq!(rt.block_on(s.stopped()), REASON_REQUESTED);
}

#[test]
fn a_million_polled_and_dropped_futures_leave_no_memory_behind() {
    let s = Stopper::new();
    let w = noop_waker();
    let cycle = || {
        let f = pin!(s.stopped());
        assert_eq!(poll_once(f, &w), Poll::Pending); // registered...
    }; // ...and unregistered by the drop
    for _ in 0..reps(1_000) {
        cycle();
    }
    let before = live_bytes();
    let rounds = reps(1_000_000);
    for _ in 0..rounds {
        cycle();
    }
    let grew = live_bytes() - before;
    assert!(
        grew < 4096,
        "the stopper grew by {grew} bytes over {rounds} futures"
    );
    // Futures held at once do take room, and give it back.
    let mut held: Vec<_> = (0..reps(1000)).map(|_| Box::pin(s.stopped())).collect();
    for f in &mut held {
        assert_eq!(poll_once(f.as_mut(), &w), Poll::Pending);
    }
    drop(held);
    s.stop(0);
}

// ---------------------------------------------------------------- races

#[test]
fn stop_racing_the_first_poll_never_loses_the_wake_up() {
    const ROUNDS: usize = reps(1000);
    within(LIMIT, "stop vs first poll, block_on", || {
        let (tx, rx) = mpsc::channel::<Option<Stopper>>();
        let go = Arc::new(Barrier::new(2));
        let stopper_thread = {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                while let Some(s) = rx.recv().unwrap() {
                    go.wait();
                    s.stop(3);
                }
            })
        };
        for _ in 0..ROUNDS {
            let s = Stopper::new();
            tx.send(Some(s.clone())).unwrap();
            go.wait();
            assert_eq!(futures::executor::block_on(s.stopped()), 3);
        }
        tx.send(None).unwrap();
        stopper_thread.join().unwrap();
    });
}

#[test]
fn stop_racing_the_first_poll_on_a_multi_thread_runtime() {
    const ROUNDS: usize = reps(1000);
    let rt = multi_thread_rt();
    within(LIMIT, "stop vs first poll, tokio", move || {
        for i in 0..ROUNDS {
            let s = Stopper::new();
            let task = rt.spawn(s.clone().stopped_owned());
            if i % 2 == 0 {
                std::thread::yield_now();
            }
            s.stop(i as i32 + 1);
            assert_eq!(rt.block_on(task).unwrap(), i as i32 + 1);
        }
    });
}

#[test]
fn stop_racing_a_poll_with_a_new_waker_wakes_the_right_one() {
    // A task moves to another waker while the stop runs: one of the two polls sees the stop or
    // the new waker is woken; never neither.
    for _ in 0..reps(1000) {
        let s = Stopper::new();
        let (a, b) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        let mut f = Box::pin(s.clone().stopped_owned());
        assert_eq!(poll_once(f.as_mut(), &waker(a.clone())), Poll::Pending);
        let stopper_thread = {
            let s = s.clone();
            std::thread::spawn(move || s.stop(0))
        };
        let second = poll_once(f.as_mut(), &waker(b.clone()));
        stopper_thread.join().unwrap();
        if second.is_pending() {
            assert_eq!(
                b.wakes.load(Ordering::SeqCst),
                1,
                "pending, so the new waker must be woken"
            );
        }
        assert_eq!(
            poll_once(f.as_mut(), &waker(b.clone())),
            Poll::Ready(REASON_REQUESTED)
        );
    }
}

#[test]
fn dropping_futures_while_the_stop_wakes_them_is_safe() {
    // The stop's callback may be waking a future on one thread while another drops it: the drop
    // waits for the callback, so no waker is used after its future is gone.
    let rt = multi_thread_rt();
    for _ in 0..reps(300) {
        let s = Stopper::new();
        let tasks: Vec<_> = (0..8)
            .map(|_| rt.spawn(s.clone().stopped_owned()))
            .collect();
        let s2 = s.clone();
        let stopper_thread = std::thread::spawn(move || s2.stop(0));
        for t in &tasks {
            t.abort();
        }
        stopper_thread.join().unwrap();
        for t in tasks {
            match rt.block_on(t) {
                Ok(r) => assert_eq!(r, REASON_REQUESTED),
                Err(e) => assert!(e.is_cancelled()),
            }
        }
    }
}

// ---------------------------------------------------------------- drop_guard

#[test]
fn the_drop_guard_stops_with_reason_requested() {
    let s = Stopper::new();
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || s.wait(None))
    };
    let guard = s.clone().drop_guard();
    assert_eq!(guard.stopper(), &s);
    assert!(!s.is_set());
    drop(guard);
    assert!(s.is_set());
    assert_eq!(s.reason(), REASON_REQUESTED);
    assert_eq!(waiter.join().unwrap(), Wait::Stopped);
}

#[test]
fn a_disarmed_guard_gives_the_stopper_back_unstopped() {
    let s = Stopper::new();
    let back = s.clone().drop_guard().disarm();
    assert_eq!(back, s, "the same stopper");
    assert!(!s.is_set());
    drop(back);
    assert!(!s.is_set());
}

#[test]
fn a_guard_dropped_after_another_stop_keeps_the_first_reason() {
    let s = Stopper::new();
    let guard = s.clone().drop_guard();
    s.stop(77);
    drop(guard);
    assert_eq!(s.reason(), 77);
}

#[test]
fn a_guard_stops_on_panic_and_a_panicking_callback_does_not_abort() {
    let s = Stopper::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let _first = s.on_stop(|_| panic!("callback panics during unwinding"));
    let _second = {
        let ran = Arc::clone(&ran);
        s.on_stop(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _guard = s.clone().drop_guard();
        panic!("the scope fails");
    }));
    let msg = r.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<&str>(),
        Some(&"the scope fails"),
        "the first panic goes on"
    );
    assert!(s.is_set());
    assert_eq!(ran.load(Ordering::SeqCst), 1, "every callback still ran");
}

#[test]
fn a_guard_dropped_normally_resumes_a_callback_panic_after_the_stop() {
    let s = Stopper::new();
    let _cb = s.on_stop(|_| panic!("from the callback"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(s.clone().drop_guard());
    }));
    assert!(r.is_err());
    assert!(s.is_set());
}

// ---------------------------------------------------------------- check

#[test]
fn check_is_ok_while_running_and_err_with_the_reason_after() {
    let s = Stopper::new();
    assert_eq!(s.check(), Ok(()));
    s.stop(41);
    let e = s.check().unwrap_err();
    assert_eq!(e.reason(), 41);
    assert_eq!(e, Stopped::new(41));
    assert_eq!(e.to_string(), "stopped (reason 41)");
    assert_eq!(
        Stopped::new(REASON_REQUESTED).to_string(),
        "stopped: stop requested (reason 1)"
    );
    assert_eq!(
        Stopped::new(REASON_DEADLINE).to_string(),
        "stopped: deadline passed (reason 2)"
    );
}

#[test]
fn check_works_with_the_question_mark_into_a_boxed_error() {
    fn step(s: &Stopper) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
        s.check()?;
        Ok(1)
    }
    let s = Stopper::new();
    assert_eq!(step(&s).unwrap(), 1);
    s.stop(0);
    let e = step(&s).unwrap_err();
    let stopped = e.downcast_ref::<Stopped>().expect("the error is a Stopped");
    assert_eq!(stopped.reason(), REASON_REQUESTED);
}

// ---------------------------------------------------------------- never

#[test]
fn never_cannot_be_stopped() {
    let s = Stopper::never();
    let ran = Arc::new(AtomicUsize::new(0));
    let _cb = {
        let ran = Arc::clone(&ran);
        s.on_stop(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    assert!(!s.stop(0));
    assert!(!s.stop(5));
    assert!(!s.is_set());
    assert_eq!(s.reason(), 0);
    assert_eq!(s.check(), Ok(()));
    assert_eq!(s.wait(Some(Duration::from_millis(20))), Wait::TimedOut);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // A deadline arms nothing.
    assert_eq!(s.stop_after(Some(Duration::from_millis(1)), 0), Status::Ok);
    assert_eq!(s.remaining(), None);
    assert_eq!(s.wait(Some(Duration::from_millis(30))), Wait::TimedOut);
    // Nor does a guard stop it.
    drop(s.clone().drop_guard());
    assert!(!s.is_set());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn never_is_a_new_independent_stopper_each_time() {
    let (a, b) = (Stopper::never(), Stopper::never());
    assert_ne!(a, b);
    let c = a.child();
    assert!(c.stop(6), "a child of never is an ordinary stopper");
    assert_eq!(c.reason(), 6);
    assert!(!a.is_set() && !b.is_set());
    let other = Stopper::new();
    let linked = Stopper::linked(&[&a, &other]);
    other.stop(9);
    assert_eq!(
        linked.reason(),
        9,
        "linked to never and another: the other one stops it"
    );
}

#[test]
fn never_stopped_future_stays_pending() {
    let rt = current_thread_rt();
    let s = Stopper::never();
    s.stop(0);
    rt.block_on(async {
        tokio::select! {
            _ = s.stopped() => panic!("never() completed"),
            _ = tokio::time::sleep(Duration::from_millis(30)) => {}
        }
    });
}
