//! The stoppable channel: MPMC order and completeness, stop, time-out, close and drain.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stopper::{Channel, Status, Stopper};

fn soon(ms: u64) -> Option<u64> {
    Some(stopper::now_ns() + ms * 1_000_000)
}

/// Starts `producers` threads, each sending `per` items `producer << 32 | i` in order.
fn spawn_producers(
    ch: &Arc<Channel>,
    producers: u64,
    per: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..producers)
        .map(|p| {
            let ch = Arc::clone(ch);
            std::thread::spawn(move || {
                for i in 0..per {
                    assert_eq!(ch.send(p << 32 | i, None, None), Status::Ok);
                }
            })
        })
        .collect()
}

#[test]
fn mpmc_keeps_per_producer_order_and_loses_nothing() {
    let ch = Arc::new(Channel::new(16));
    let producers = 4u64;
    let per = common::iters(20_000) as u64;
    let prods = spawn_producers(&ch, producers, per);
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

/// Sends `per` items from each of `producers` threads and receives them on `consumers`
/// threads; checks that nothing is lost or duplicated and that each consumer sees each
/// producer's items in order. Returns the largest `len()` a watcher saw meanwhile.
fn pump(cap: usize, producers: u64, consumers: usize, per: u64) -> usize {
    let ch = Arc::new(Channel::new(cap));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (ch, done) = (Arc::clone(&ch), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(ch.len());
                std::thread::yield_now();
            }
            most
        })
    };
    let prods = spawn_producers(&ch, producers, per);
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            let ch = Arc::clone(&ch);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = vec![None; producers as usize];
                loop {
                    match ch.recv(None, None) {
                        Ok(v) => {
                            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                            assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
                            last[p] = Some(i);
                            got.push(v);
                        }
                        Err(Status::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    prods.into_iter().for_each(|p| p.join().unwrap());
    ch.close();
    let mut all: Vec<u64> = cons.into_iter().flat_map(|c| c.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    all.sort_unstable();
    let expected: Vec<u64> = (0..producers)
        .flat_map(|p| (0..per).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all, expected, "lost or duplicated items (cap {cap})");
    assert!(ch.is_empty());
    most
}

/// The queue is a list of blocks: items cross block boundaries, drained blocks are reused or
/// freed, in every shape (capacities around the block size, one or more threads per side).
#[test]
fn items_cross_blocks_in_order_for_every_capacity_and_shape() {
    let per = common::iters(3_000) as u64;
    for round in 0..4 {
        for cap in [0usize, 1, 2, 62, 63, 64, 127, 1000] {
            let (p, c) = [(1, 1), (2, 2), (3, 1), (1, 3)][round];
            let most = pump(cap, p, c, per);
            if cap != 0 {
                assert!(most <= cap, "len {most} exceeded the capacity {cap}");
            }
        }
    }
}

/// A bounded channel holds at most its capacity: a full channel refuses a send that may not
/// wait, across block boundaries and after the receivers free slots in any order.
#[test]
fn a_full_channel_refuses_exactly_at_its_capacity() {
    for cap in [1usize, 5, 63, 64, 200] {
        let c = Channel::new(cap);
        for round in 0..3u64 {
            for i in 0..cap as u64 {
                assert_eq!(c.send(round * 1000 + i, None, Some(0)), Status::Ok);
            }
            assert_eq!(c.len(), cap);
            assert_eq!(c.send(7, None, Some(0)), Status::TimedOut, "cap {cap}");
            // Free one slot: exactly one more send fits.
            assert_eq!(c.recv(None, Some(0)), Ok(round * 1000));
            assert_eq!(c.send(round * 1000 + cap as u64, None, Some(0)), Status::Ok);
            assert_eq!(c.send(8, None, Some(0)), Status::TimedOut);
            for i in 1..=cap as u64 {
                assert_eq!(c.recv(None, Some(0)), Ok(round * 1000 + i));
            }
            assert_eq!(c.recv(None, Some(0)), Err(Status::TimedOut));
            assert!(c.is_empty());
        }
    }
}

/// A stop reaches a send or receive wherever it is on its way to sleep (racing its first look,
/// its spin, its last look), many times; with a second receiver taking the item that woke the
/// first, so that the stop lands on a later pass of the blocked receive's loop.
#[test]
fn stop_wakes_operations_racing_into_their_sleep() {
    let rounds = common::iters(300);
    for round in 0..rounds {
        let s = Stopper::new();
        let empty = Arc::new(Channel::new(0));
        let full = Arc::new(Channel::new(1));
        assert_eq!(full.send(0, None, None), Status::Ok);
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let (s, c) = (s.clone(), Arc::clone(&empty));
                std::thread::spawn(move || c.recv(Some(&s), None))
            })
            .collect();
        let sender = {
            let (s, c) = (s.clone(), Arc::clone(&full));
            std::thread::spawn(move || c.send(1, Some(&s), None))
        };
        // One item for the two receivers: one of them may take it, the other loops again.
        if round % 2 == 0 {
            assert_eq!(empty.send(42, None, None), Status::Ok);
        }
        for _ in 0..round % 7 {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        s.stop(0);
        let mut items = 0;
        for r in receivers {
            match r.join().unwrap() {
                Ok(42) => items += 1,
                Err(Status::Stopped) => {}
                other => panic!("receive returned {other:?}"),
            }
        }
        assert_eq!(sender.join().unwrap(), Status::Stopped);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "round {round}: slow wake"
        );
        assert_eq!(
            items + empty.len(),
            usize::from(round % 2 == 0),
            "item lost"
        );
    }
}

/// `close` reaches senders and receivers racing into their sleep; every item a send reported
/// `Ok` for is received before `Closed`.
#[test]
fn close_racing_with_blocked_operations_loses_no_item() {
    let rounds = common::iters(200);
    for round in 0..rounds {
        let cap = [0usize, 1, 3][round % 3];
        let c = Arc::new(Channel::new(cap));
        let senders: Vec<_> = (0..2u64)
            .map(|p| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut ok = 0u64;
                    for i in 0..50 {
                        match c.send(p << 32 | i, None, None) {
                            Status::Ok => ok += 1,
                            Status::Closed => break,
                            st => panic!("send returned {st}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let receiver = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut n = 0u64;
                // Takes a few, then leaves the rest for the drain after the close.
                while n < 10 {
                    match c.recv(None, None) {
                        Ok(_) => n += 1,
                        Err(Status::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                n
            })
        };
        for _ in 0..round % 11 {
            std::thread::yield_now();
        }
        let got_early = receiver.join().unwrap();
        c.close();
        let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
        let mut rest = 0;
        while c.recv(None, None).is_ok() {
            rest += 1;
        }
        assert_eq!(c.recv(None, None), Err(Status::Closed));
        assert_eq!(
            got_early + rest,
            sent,
            "round {round} (cap {cap}): items lost"
        );
    }
}

/// Dropping a channel with items queued over many blocks frees them (the process does not
/// grow over rounds); a drained channel keeps little.
#[test]
fn dropping_a_channel_with_queued_blocks_frees_them() {
    // Under Miri: one small round (what it checks there is the freeing itself).
    let (rounds, items) = if cfg!(miri) { (1, 300) } else { (60, 150_000) };
    let before = (!cfg!(miri)).then(common::rss_bytes);
    for _ in 0..rounds {
        let c = Channel::new(0);
        for i in 0..items {
            assert_eq!(c.send(i, None, None), Status::Ok);
        }
        for i in 0..items / 3 {
            assert_eq!(c.recv(None, None), Ok(i));
        }
        assert_eq!(c.len() as u64, items - items / 3);
    }
    let Some(before) = before else { return };
    // 60 rounds leaving 100 000 items: 48 MB if nothing were freed; the bound leaves room for what
    // the tests running meanwhile on other threads take.
    let grown = common::rss_bytes().saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "grew {} MiB over 60 channels",
        grown >> 20
    );
}
