//! crossbeam-ref: channel throughput of crossbeam-channel used directly.
//!
//! Usage: crossbeam-ref ITEMS CONFIG...   where CONFIG is `PxC:CAP` (CAP 0 = unbounded),
//! e.g. `crossbeam-ref 500000 1x1:1024 2x2:1024 1x1:0`.
//! Prints one line per config: `RESULT PxC:CAP <items per second>`.
//! Producers send ITEMS items in total (split evenly); consumers receive until the channel is
//! closed (all senders dropped) and the received count and sum are checked.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::process::exit;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

/// What each thread reports: (items received, their sum, its own start, its own end). Every
/// thread reads the clock itself: the main thread may not run between the start and the end.
type Report = (u64, u64, Instant, Instant);

fn parse_config(s: &str) -> Option<(usize, usize, usize)> {
    let (pc, cap) = s.split_once(':')?;
    let (p, c) = pc.split_once('x')?;
    Some((p.parse().ok()?, c.parse().ok()?, cap.parse().ok()?))
}

fn run(items: u64, producers: usize, consumers: usize, cap: usize) -> f64 {
    let (tx, rx): (Sender<u64>, Receiver<u64>) = if cap == 0 { unbounded() } else { bounded(cap) };
    let start = Arc::new(Barrier::new(producers + consumers + 1));
    let per = items / producers as u64;
    let mut handles: Vec<thread::JoinHandle<Report>> = Vec::new();
    for p in 0..producers {
        let tx = tx.clone();
        let start = start.clone();
        handles.push(thread::spawn(move || {
            start.wait();
            let t0 = Instant::now();
            let base = p as u64 * per;
            for i in 0..per {
                tx.send(base + i + 1).expect("receivers gone");
            }
            (0u64, 0u64, t0, Instant::now())
        }));
    }
    drop(tx);
    for _ in 0..consumers {
        let rx = rx.clone();
        let start = start.clone();
        handles.push(thread::spawn(move || {
            start.wait();
            let t0 = Instant::now();
            let (mut n, mut sum) = (0u64, 0u64);
            while let Ok(v) = rx.recv() {
                n += 1;
                sum = sum.wrapping_add(v);
            }
            (n, sum, t0, Instant::now())
        }));
    }
    drop(rx);
    start.wait();
    let (mut n, mut sum) = (0u64, 0u64);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for h in handles {
        let (a, b, t0, t1) = h.join().expect("thread panicked");
        n += a;
        sum = sum.wrapping_add(b);
        first = Some(first.map_or(t0, |f| f.min(t0)));
        last = Some(last.map_or(t1, |l| l.max(t1)));
    }
    let secs = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    let total = per * producers as u64;
    let expect = total.wrapping_mul(total + 1) / 2;
    if n != total || sum != expect {
        eprintln!("crossbeam-ref: lost or duplicated items: got {n} (sum {sum}), expected {total} (sum {expect})");
        exit(2);
    }
    total as f64 / secs
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: crossbeam-ref ITEMS PxC:CAP...");
        exit(2);
    }
    let items: u64 = match args[0].parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("crossbeam-ref: bad ITEMS {:?}", args[0]);
            exit(2);
        }
    };
    for cfg in &args[1..] {
        let Some((p, c, cap)) = parse_config(cfg).filter(|&(p, c, _)| p > 0 && c > 0) else {
            eprintln!("crossbeam-ref: bad config {cfg:?}");
            exit(2);
        };
        let rate = run(items, p, c, cap);
        println!("RESULT {cfg} {rate:.0}");
    }
}
