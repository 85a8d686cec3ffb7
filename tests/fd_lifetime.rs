//! Lifetimes: the stop descriptor is closed with the last reference, and a stop cancels a
//! pending deadline (which would otherwise keep the stopper, its descriptor and the service
//! thread alive). One test in its own binary, so no other test can open a descriptor with the
//! same number or arm a deadline in between.

use std::time::{Duration, Instant};

use stopper::Stopper;

fn is_open_eventfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|p| p.display().to_string().contains("eventfd"))
}

fn service_thread_gone() -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if !stopper::service::thread_running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn descriptors_and_deadlines_end_with_the_stopper() {
    // The descriptor lives exactly as long as the last reference.
    let s = Stopper::new();
    let fd = s.fd().unwrap();
    let s2 = s.clone();
    drop(s);
    assert!(is_open_eventfd(fd), "closed while a reference remains");
    drop(s2);
    assert!(!is_open_eventfd(fd), "still open after the last reference");
    let t = Stopper::new();
    t.stop(0);
    let fd = t.fd().unwrap();
    drop(t);
    assert!(!is_open_eventfd(fd));

    // A stop cancels the pending deadline: the stopper is freed and the thread goes.
    let d = Stopper::new();
    let fd = d.fd().unwrap();
    d.stop_after(Some(Duration::from_secs(3600)), 0);
    assert_eq!(stopper::service::pending(), 1);
    d.stop(0);
    assert_eq!(
        stopper::service::pending(),
        0,
        "the stop left its deadline pending"
    );
    drop(d);
    assert!(
        !is_open_eventfd(fd),
        "a dead deadline kept the stopper alive"
    );
    assert!(
        service_thread_gone(),
        "service thread kept alive by a dead deadline"
    );

    // Also when the stop comes from a parent.
    let p = Stopper::new();
    let c = p.child();
    let fd = c.fd().unwrap();
    c.stop_after(Some(Duration::from_secs(3600)), 0);
    p.stop(0);
    assert_eq!(stopper::service::pending(), 0);
    drop(c);
    assert!(!is_open_eventfd(fd));
    assert!(service_thread_gone());
}
