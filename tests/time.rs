//! Deadlines, remaining time, the service thread, the stop descriptor, wait_fd.

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stopper::{Status, Stopper, Wait, REASON_DEADLINE};

#[test]
fn deadline_fires_with_its_reason_not_before() {
    let s = Stopper::new();
    let t0 = Instant::now();
    assert_eq!(s.stop_after(Some(Duration::from_millis(60)), 0), Status::Ok);
    assert_eq!(s.wait(Some(Duration::from_secs(10))), Wait::Stopped);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(55), "fired early: {took:?}");
    assert!(took < Duration::from_secs(5), "fired late: {took:?}");
    assert_eq!(s.reason(), REASON_DEADLINE);
    let custom = Stopper::new();
    custom.stop_after(Some(Duration::from_millis(1)), 77);
    custom.wait(None);
    assert_eq!(custom.reason(), 77);
    assert_eq!(
        custom.stop_after(Some(Duration::from_millis(1)), 0),
        Status::Stopped
    );
}

#[test]
fn rearm_replaces_and_disarm_cancels() {
    let s = Stopper::new();
    s.stop_after(Some(Duration::from_millis(30)), 0);
    s.stop_after(Some(Duration::from_secs(100)), 0);
    assert_eq!(
        s.wait(Some(Duration::from_millis(120))),
        Wait::TimedOut,
        "the first deadline was not replaced"
    );
    let rem = s.remaining().unwrap();
    assert!(
        rem > Duration::from_secs(90) && rem <= Duration::from_secs(100),
        "{rem:?}"
    );
    s.stop_after(None, 0);
    assert_eq!(s.remaining(), None);
    assert_eq!(s.wait(Some(Duration::from_millis(50))), Wait::TimedOut);
}

#[test]
fn remaining_is_the_earliest_over_ancestors() {
    let p = Stopper::new();
    let c = p.child();
    assert_eq!(c.remaining(), None);
    p.stop_after(Some(Duration::from_secs(50)), 0);
    c.stop_after(Some(Duration::from_secs(80)), 0);
    let r = c.remaining().unwrap();
    assert!(
        r <= Duration::from_secs(50) && r > Duration::from_secs(40),
        "{r:?}"
    );
    p.stop(0);
    assert_eq!(c.remaining(), Some(Duration::ZERO), "stopped: zero");
}

#[test]
fn a_released_stopper_with_a_deadline_still_fires() {
    let s = Stopper::new();
    let fired = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&fired);
    s.on_stop(move |_| {
        f.fetch_add(1, Ordering::SeqCst);
    })
    .forget();
    s.stop_after(Some(Duration::from_millis(10)), 0);
    drop(s);
    assert!(common::eventually(Duration::from_secs(5), || fired
        .load(Ordering::SeqCst)
        == 1));
}

#[test]
fn twenty_thousand_deadlines_all_fire() {
    let n = common::iters(20_000);
    let stoppers: Vec<Stopper> = (0..n).map(|_| Stopper::new()).collect();
    for (i, s) in stoppers.iter().enumerate() {
        s.stop_after(Some(Duration::from_millis(20 + (i % 50) as u64)), 0);
    }
    let t0 = Instant::now();
    for s in &stoppers {
        assert_eq!(s.wait(Some(Duration::from_secs(20))), Wait::Stopped);
    }
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert!(stoppers.iter().all(|s| s.reason() == REASON_DEADLINE));
}

#[test]
fn service_thread_exists_only_while_it_has_work() {
    let s = Stopper::new();
    s.stop_after(Some(Duration::from_millis(20)), 0);
    assert!(stopper::service::thread_running());
    s.wait(None);
    // Other tests in this binary may arm deadlines; wait for none pending, then no thread.
    assert!(
        common::eventually(Duration::from_secs(10), || stopper::service::pending() > 0
            || !stopper::service::thread_running()),
        "service thread kept running with nothing pending"
    );
}

#[test]
fn descriptor_polls_readable_from_the_stop_on() {
    let s = Stopper::new();
    let fd = s.fd().unwrap();
    assert_eq!(s.fd().unwrap(), fd, "one descriptor per stopper");
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 0);
    s.stop(0);
    for _ in 0..3 {
        // SAFETY: valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 1, "readable for good");
    }
    // SAFETY: F_GETFD on a number.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags & libc::FD_CLOEXEC != 0);
    let late = Stopper::new();
    late.stop(0);
    let mut p2 = libc::pollfd {
        fd: late.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: valid pollfd.
    assert_eq!(
        unsafe { libc::poll(&mut p2, 1, 0) },
        1,
        "created after the stop: readable"
    );
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: valid array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

#[test]
fn wait_fd_data_stop_timeout_and_bad_fds() {
    let (r, w) = pipe();
    let s = Stopper::new();
    assert_eq!(
        stopper::wait_fd(
            Some(&s),
            r,
            libc::POLLIN,
            Some(stopper::now_ns() + 20_000_000)
        ),
        Err(Status::TimedOut)
    );
    // SAFETY: writes one byte to our pipe.
    assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
    let rev = stopper::wait_fd(Some(&s), r, libc::POLLIN, None).unwrap();
    assert!(rev & libc::POLLIN != 0);
    s.stop(0);
    assert_eq!(
        stopper::wait_fd(Some(&s), r, libc::POLLIN, None),
        Err(Status::Stopped),
        "stop checked first"
    );
    assert_eq!(
        stopper::wait_fd(None, -1, libc::POLLIN, None),
        Err(Status::Inval)
    );
    // SAFETY: closing our own descriptors.
    unsafe {
        libc::close(r);
        libc::close(w);
    }
    assert_eq!(
        stopper::wait_fd(None, r, libc::POLLIN, Some(stopper::now_ns() + 10_000_000)),
        Err(Status::Os)
    );
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EBADF)
    );
    // A blocked wait_fd wakes on the stop.
    let (r2, w2) = pipe();
    let s2 = Stopper::new();
    let t = {
        let s2 = s2.clone();
        std::thread::spawn(move || stopper::wait_fd(Some(&s2), r2, libc::POLLIN, None))
    };
    std::thread::sleep(Duration::from_millis(30));
    s2.stop(0);
    assert_eq!(t.join().unwrap(), Err(Status::Stopped));
    // SAFETY: ours.
    unsafe {
        libc::close(r2);
        libc::close(w2);
    }
}

#[test]
fn race_disarm_vs_fire_is_exact() {
    // A disarm that returns Ok means the deadline will never stop the stopper; Stopped means
    // it already did. Never Ok followed by a stop.
    let mut disarmed = 0;
    for i in 0..common::iters(1500) {
        let s = Stopper::new();
        s.stop_after(Some(Duration::from_micros((i % 7) as u64 * 20)), 0);
        // Spin a varying while so the disarm lands before, during and after the fire.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros((i % 11) as u64 * 10) {
            std::hint::spin_loop();
        }
        match s.stop_after(None, 0) {
            Status::Ok => {
                disarmed += 1;
                assert_eq!(
                    s.wait(Some(Duration::from_millis(1))),
                    Wait::TimedOut,
                    "iteration {i}: stopped after a successful disarm"
                );
            }
            Status::Stopped => assert!(s.is_set()),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        disarmed > 0,
        "the race was never exercised on the disarm side"
    );
}

#[test]
fn a_zero_delay_stops_before_the_call_returns() {
    for _ in 0..common::iters(2000) {
        let s = Stopper::new();
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let ran = Arc::clone(&ran);
            s.on_stop(move |r| {
                assert_eq!(r, 61);
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .forget();
        }
        assert_eq!(s.stop_after(Some(Duration::ZERO), 61), Status::Ok);
        assert!(s.is_set(), "stopped on return");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            1,
            "its callbacks ran on this thread"
        );
        assert!(!s.stop(5), "a stop right after cannot win the reason");
        assert_eq!(s.reason(), 61);
        assert_eq!(s.remaining(), Some(Duration::ZERO));
    }
    let s = Stopper::new();
    assert_eq!(s.stop_after(Some(Duration::ZERO), 0), Status::Ok);
    assert_eq!(s.reason(), REASON_DEADLINE);
    assert_eq!(
        s.stop_after(Some(Duration::ZERO), 0),
        Status::Stopped,
        "already stopped"
    );
    // A zero delay replaces an armed deadline (nothing stays pending for it).
    let s = Stopper::new();
    assert_eq!(s.stop_after(Some(Duration::from_secs(60)), 0), Status::Ok);
    assert_eq!(s.stop_after(Some(Duration::ZERO), 3), Status::Ok);
    assert_eq!(s.reason(), 3);
}

#[test]
fn a_panicking_callback_on_a_deadline_completes_the_stop_and_the_service_goes_on() {
    let parent = Stopper::new();
    let child = parent.child();
    child
        .on_stop(|_| panic!("child callback on the service thread"))
        .forget();
    let later = parent.child();
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let ran = Arc::clone(&ran);
        parent
            .on_stop(move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .forget();
    }
    assert_eq!(
        parent.stop_after(Some(Duration::from_millis(1)), 0),
        Status::Ok
    );
    assert_eq!(later.wait(Some(Duration::from_secs(10))), Wait::Stopped);
    assert!(common::eventually(Duration::from_secs(10), || ran
        .load(Ordering::SeqCst)
        == 1));
    // The service thread is still there for the next deadline.
    let next = Stopper::new();
    assert_eq!(
        next.stop_after(Some(Duration::from_millis(1)), 0),
        Status::Ok
    );
    assert_eq!(next.wait(Some(Duration::from_secs(10))), Wait::Stopped);
}

/// The service thread sleeps until the earliest deadline with the least timer slack the kernel
/// allows (1 ns), not the 50 µs every thread inherits: a deadline is not that much late.
#[test]
fn the_service_thread_sleeps_with_1_ns_of_timer_slack() {
    // SAFETY: PR_GET_TIMERSLACK reads the calling thread's slack; no memory is passed.
    let own = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    assert!(own > 1, "this thread has the inherited slack ({own} ns)");
    let s = Stopper::new();
    let (tx, rx) = std::sync::mpsc::channel();
    s.on_stop(move |_| {
        // Runs on the service thread, which fired the deadline.
        // SAFETY: as above.
        let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let _ = tx.send(slack);
    })
    .forget();
    assert_eq!(s.stop_after(Some(Duration::from_millis(1)), 0), Status::Ok);
    let slack = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the deadline fired");
    assert_eq!(slack, 1, "the service thread's timer slack");
}
