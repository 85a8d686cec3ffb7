//! Helpers shared by the integration tests (included with `mod common;`).
//!
//! `race.rs` beside it is the two-core race harness of `tests/stress.rs`, which includes it by
//! path (`mod race;` is not declared here, so the other tests do not build it).
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits (bounded) until `f` holds; true if it did.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// Iterations for race loops: many in release, fewer under Miri or debug.
pub fn iters(release: usize) -> usize {
    if cfg!(miri) {
        20
    } else if cfg!(debug_assertions) {
        release / 10
    } else {
        release
    }
}
