//! The stop descriptor is closed with the last reference. Alone in its own test binary, so no
//! other test can open a descriptor with the same number in between.

use stopper::Stopper;

fn is_open_eventfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| p.display().to_string().contains("eventfd"))
}

#[test]
fn descriptor_is_closed_with_the_last_reference() {
    let s = Stopper::new();
    let fd = s.fd().unwrap();
    let s2 = s.clone();
    drop(s);
    assert!(is_open_eventfd(fd), "closed while a reference remains");
    drop(s2);
    assert!(!is_open_eventfd(fd), "still open after the last reference");
    // A stopped stopper's descriptor too.
    let t = Stopper::new();
    t.stop(0);
    let fd = t.fd().unwrap();
    drop(t);
    assert!(!is_open_eventfd(fd));
}
