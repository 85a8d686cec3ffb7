//! The stoppable channel: MPMC order and completeness, stop, time-out, close and drain.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stopper::{Channel, Status, Stopper};

fn soon(ms: u64) -> Option<u64> {
    Some(stopper::now_ns() + ms * 1_000_000)
}

#[test]
fn mpmc_keeps_per_producer_order_and_loses_nothing() {
    let ch = Arc::new(Channel::new(16));
    let producers = 4u64;
    let per = common::iters(20_000) as u64;
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let ch = Arc::clone(&ch);
            std::thread::spawn(move || {
                for i in 0..per {
                    assert_eq!(ch.send(p << 32 | i, None, None), Status::Ok);
                }
            })
        })
        .collect();
    let cons: Vec<_> = (0..3)
        .map(|_| {
            let ch = Arc::clone(&ch);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match ch.recv(None, None) {
                        Ok(v) => got.push(v),
                        Err(Status::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    prods.into_iter().for_each(|p| p.join().unwrap());
    ch.close();
    let mut all = Vec::new();
    for c in cons {
        let got = c.join().unwrap();
        // Each consumer sees each producer's items in order.
        let mut last = vec![None; producers as usize];
        for v in &got {
            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
            last[p] = Some(i);
        }
        all.extend(got);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (0..producers)
        .flat_map(|p| (0..per).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all, expected, "lost or duplicated items");
}

#[test]
fn stop_wakes_blocked_receivers_and_senders() {
    let s = Stopper::new();
    let empty = Arc::new(Channel::new(1));
    let full = Arc::new(Channel::new(1));
    assert_eq!(full.send(1, None, None), Status::Ok);
    let r = {
        let (s, c) = (s.clone(), Arc::clone(&empty));
        std::thread::spawn(move || c.recv(Some(&s), None))
    };
    let w = {
        let (s, c) = (s.clone(), Arc::clone(&full));
        std::thread::spawn(move || c.send(2, Some(&s), None))
    };
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    s.stop(0);
    assert_eq!(r.join().unwrap(), Err(Status::Stopped));
    assert_eq!(w.join().unwrap(), Status::Stopped);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Stop is checked first, even with an item ready.
    assert_eq!(full.recv(Some(&s), None), Err(Status::Stopped));
    assert_eq!(full.len(), 1);
}

#[test]
fn timeouts_on_empty_and_full() {
    let c = Channel::new(1);
    let t0 = Instant::now();
    assert_eq!(c.recv(None, soon(30)), Err(Status::TimedOut));
    assert!(t0.elapsed() >= Duration::from_millis(25));
    assert_eq!(c.send(1, None, soon(0)), Status::Ok);
    assert_eq!(c.send(2, None, soon(30)), Status::TimedOut);
    assert_eq!(
        c.recv(None, Some(0)),
        Ok(1),
        "a past deadline still takes a ready item"
    );
}

#[test]
fn close_drains_then_reports_closed_and_wakes_blocked_senders() {
    let c = Arc::new(Channel::new(2));
    c.send(10, None, None);
    c.send(11, None, None);
    let blocked = {
        let c = Arc::clone(&c);
        std::thread::spawn(move || c.send(12, None, None))
    };
    std::thread::sleep(Duration::from_millis(30));
    c.close();
    assert_eq!(blocked.join().unwrap(), Status::Closed);
    assert_eq!(c.send(13, None, None), Status::Closed);
    assert_eq!(c.recv(None, None), Ok(10));
    assert_eq!(c.recv(None, None), Ok(11));
    assert_eq!(
        c.recv(None, None),
        Err(Status::Closed),
        "a closed channel never blocks"
    );
    let empty = Arc::new(Channel::new(0));
    let waiting = {
        let c = Arc::clone(&empty);
        std::thread::spawn(move || c.recv(None, None))
    };
    std::thread::sleep(Duration::from_millis(30));
    empty.close();
    assert_eq!(waiting.join().unwrap(), Err(Status::Closed));
}

/// Issue 12: a bounded channel's capacity is a limit, not an allocation made up front (it
/// was 256 MiB for the largest one, which aborted a host with less address space left).
#[test]
fn a_channel_of_the_largest_capacity_allocates_nothing_up_front() {
    fn vm_bytes() -> u64 {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
        pages * 4096
    }
    let before = vm_bytes();
    let chans: Vec<Channel> = (0..8)
        .map(|_| Channel::with_capacity(stopper::CHANNEL_MAX_CAPACITY).unwrap())
        .collect();
    let grown = vm_bytes().saturating_sub(before);
    // Preallocated, they took 8 × 256 MiB; the bound leaves room for the address space that
    // tests running meanwhile on other threads may map (a malloc arena is 64 MiB).
    assert!(
        grown < 512 << 20,
        "8 empty channels of the largest capacity took {} MiB of address space",
        grown >> 20
    );
    for c in &chans {
        assert_eq!(c.send(1, None, None), Status::Ok);
        assert_eq!(c.recv(None, None), Ok(1));
    }
}
