//! Race stress through the C ABI: two threads pinned to different cores race on a fresh
//! stopper every iteration, and counters prove, over every iteration:
//! - no lost wake-up (a waiter blocked with a 5 s limit always returns STOPPED),
//! - no double callback and no missing one (each registered callback runs exactly once,
//!   inline or by the stop, on the right thread),
//! - no callback after a successful unregister, and `stopper_unregister` returning STOPPED
//!   only after the callback has returned (it waits for one running on the other thread),
//! - one winner among concurrent stops, child creation never misses the parent's stop,
//!   `join` never misses a worker's exit, hooks reach exactly the workers inside.
//!
//! `STOPPER_STRESS_ITERS` sets the iterations of the main race (default 10^4, so that
//! `cargo test` stays fast); the other races run a tenth of it. `make stress` runs 10^7.
//! Each test prints its figures (`--nocapture` to see them).

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::stopper::ffi::{self, *};

const MS: i64 = 1_000_000;
/// A waiter's limit: reaching it means the stop's wake-up was lost.
const WAIT_LIMIT: i64 = 5_000 * MS;

static SERIAL: Mutex<()> = Mutex::new(());

fn iters() -> u64 {
    let n = std::env::var("STOPPER_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u64);
    if cfg!(miri) {
        n.min(30)
    } else {
        n
    }
}

fn minor_iters() -> u64 {
    (iters() / 10).max(if cfg!(miri) { 10 } else { 200 })
}

/// Pins the calling thread to one CPU (`cpu` modulo the CPUs this process may use).
fn pin(cpu: usize) {
    if cfg!(miri) {
        return;
    }
    // SAFETY: plain CPU-set manipulation on a zeroed set; sched_setaffinity(0) is this thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.len() < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[cpu % cpus.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A two-party barrier: spins briefly (the racers are meant to meet on two cores), then
/// sleeps on a futex, so that a core shared with other work delays the race but never starves
/// it. A side that waits more than 30 s fails the test as a hang.
struct Barrier2 {
    arrived: AtomicU32,
    generation: AtomicU32,
    sleeping: AtomicU32,
    abort: AtomicBool,
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a live, aligned 32-bit word; FUTEX_WAIT only reads it; a relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE uses the address as a key only.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

impl Barrier2 {
    const fn new() -> Barrier2 {
        Barrier2 {
            arrived: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            sleeping: AtomicU32::new(0),
            abort: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        let gen = self.generation.load(Acquire);
        if self.arrived.fetch_add(1, AcqRel) == 1 {
            self.arrived.store(0, Relaxed);
            self.generation.fetch_add(1, Release);
            if self.sleeping.swap(0, AcqRel) != 0 {
                futex_wake(&self.generation);
            }
            return;
        }
        for _ in 0..2000 {
            if self.generation.load(Acquire) != gen {
                return;
            }
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        while self.generation.load(Acquire) == gen {
            if self.abort.load(Relaxed) || t0.elapsed() > Duration::from_secs(30) {
                self.abort.store(true, Relaxed);
                panic!("HANG: the other racer did not reach the barrier within 30 s");
            }
            self.sleeping.store(1, SeqCst);
            futex_wait(&self.generation, gen, Duration::from_millis(100));
        }
    }
}

fn jitter(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// What a callback records.
struct Rec {
    runs: AtomicU32,
    done: AtomicBool,
    tid: AtomicU64,
    reason: AtomicI32,
    /// Busy-work inside the callback, so that an unregister can catch it running.
    linger: AtomicU32,
}

impl Rec {
    const fn new() -> Rec {
        Rec {
            runs: AtomicU32::new(0),
            done: AtomicBool::new(false),
            tid: AtomicU64::new(0),
            reason: AtomicI32::new(0),
            linger: AtomicU32::new(0),
        }
    }

    fn reset(&self, linger: u32) {
        self.runs.store(0, Relaxed);
        self.done.store(false, Relaxed);
        self.tid.store(0, Relaxed);
        self.reason.store(0, Relaxed);
        self.linger.store(linger, Relaxed);
    }

    fn data(&self) -> *mut c_void {
        self as *const Rec as *mut c_void
    }
}

unsafe extern "C" fn record(data: *mut c_void, reason: i32) {
    // SAFETY: tests pass a pointer to a Rec that outlives the stopper's callbacks.
    let r = unsafe { &*(data as *const Rec) };
    r.runs.fetch_add(1, AcqRel);
    r.tid.store(stopper_thread_id(), Relaxed);
    r.reason.store(reason, Relaxed);
    jitter(u64::from(r.linger.load(Relaxed)));
    r.done.store(true, Release);
}

/// Violations, counted instead of panicking mid-race (the other thread would be left at the
/// barrier); the first few are described.
#[derive(Default)]
struct Violations {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Violations {
    fn add(&self, what: String) {
        self.count.fetch_add(1, Relaxed);
        let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 10 {
            f.push(what);
        }
    }

    fn assert_none(&self, test: &str) {
        let n = self.count.load(Relaxed);
        assert!(
            n == 0,
            "{test}: {n} violations, first: {:#?}",
            self.first.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
}

macro_rules! expect {
    ($v:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $v.add(format!($($arg)+));
        }
    };
}

fn report(test: &str, n: u64, t0: Instant, figures: &[(&str, u64)]) {
    let secs = t0.elapsed().as_secs_f64();
    let mut s = format!(
        "stress {test}: {n} iterations in {secs:.1} s ({:.0}/s)",
        n as f64 / secs.max(1e-9)
    );
    for (k, v) in figures {
        s.push_str(&format!("; {k} {v}"));
    }
    println!("{s}");
}

// ------------------------------------------------------------------------------------------

/// The main race, `STOPPER_STRESS_ITERS` times: a stopper with two callbacks; the main thread
/// stops it while the other registers a third callback, unregisters the second and waits.
#[test]
fn race_stop_wait_register_unregister() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = iters();
    let v = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let id1 = AtomicU64::new(0);
    let (kept, unreg, late) = (Rec::new(), Rec::new(), Rec::new());
    // Figures.
    let unreg_ok = AtomicU64::new(0);
    let unreg_stopped = AtomicU64::new(0);
    let unreg_caught_running = AtomicU64::new(0);
    let reg_inline = AtomicU64::new(0);
    let reg_ok = AtomicU64::new(0);
    let waited_before_stop = AtomicU64::new(0);
    let max_wake_ns = AtomicU64::new(0);
    let stop_at = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| {
            pin(1);
            let me = stopper_thread_id();
            for i in 0..n {
                bar.wait();
                let s = slot.load(Acquire) as *mut ffi::stopper;
                jitter((i * 13) % 97);
                // 1. Register while the stop may be under way.
                let mut id2 = 0u64;
                let st = stopper_on_stop(s, Some(record), late.data(), &mut id2);
                match st {
                    STOPPER_OK => {
                        reg_ok.fetch_add(1, Relaxed);
                        expect!(v, id2 != 0, "iteration {i}: on_stop OK with id 0");
                    }
                    STOPPER_STOPPED => {
                        reg_inline.fetch_add(1, Relaxed);
                        expect!(v, id2 == 0, "iteration {i}: on_stop STOPPED with id {id2}");
                        expect!(v, late.runs.load(Acquire) == 1 && late.tid.load(Relaxed) == me, "iteration {i}: inline callback did not run once on the registering thread");
                    }
                    other => v.add(format!("iteration {i}: on_stop returned {other}")),
                }
                // 2. Unregister the second callback, maybe while it runs on the other thread.
                let running_before = unreg.runs.load(Acquire) == 1 && !unreg.done.load(Acquire);
                let u = stopper_unregister(s, id1.load(Relaxed));
                match u {
                    STOPPER_OK => {
                        unreg_ok.fetch_add(1, Relaxed);
                    }
                    STOPPER_STOPPED => {
                        unreg_stopped.fetch_add(1, Relaxed);
                        if running_before {
                            unreg_caught_running.fetch_add(1, Relaxed);
                        }
                        expect!(v, unreg.done.load(Acquire), "iteration {i}: unregister returned STOPPED before the callback returned");
                    }
                    other => v.add(format!("iteration {i}: unregister returned {other}")),
                }
                // 3. Wait: a lost wake-up shows as TIMEDOUT after 5 s.
                if !stopper_is_set(s) {
                    waited_before_stop.fetch_add(1, Relaxed);
                }
                let w = stopper_wait(s, WAIT_LIMIT);
                let woke = ::stopper::now_ns();
                expect!(v, w == STOPPER_STOPPED, "iteration {i}: wait returned {w}: lost wake-up");
                let at = stop_at.load(Acquire);
                if at != 0 && woke > at {
                    max_wake_ns.fetch_max(woke - at, Relaxed);
                }
                bar.wait();
            }
        });
        pin(0);
        let me = stopper_thread_id();
        for i in 0..n {
            let s = stopper_new();
            kept.reset(0);
            unreg.reset(if i % 4 == 0 { 2000 } else { 50 });
            late.reset(0);
            let mut id = 0u64;
            let a = stopper_on_stop(s, Some(record), kept.data(), null_mut());
            let b = stopper_on_stop(s, Some(record), unreg.data(), &mut id);
            expect!(
                v,
                a == STOPPER_OK && b == STOPPER_OK,
                "iteration {i}: setup registrations {a} {b}"
            );
            id1.store(id, Relaxed);
            slot.store(s as usize, Release);
            stop_at.store(0, Release);
            bar.wait();
            // Sweeps the stop across the helper's register / unregister / wait.
            jitter((i * 7) % 89 + if i % 3 == 0 { (i * 31) % 2500 } else { 0 });
            let reason = (i % 1000) as i32 + 10;
            stop_at.store(::stopper::now_ns(), Release);
            let won = stopper_stop(s, reason);
            expect!(v, won == 1, "iteration {i}: stop returned {won}");
            bar.wait();
            // Checks, both threads done.
            expect!(
                v,
                kept.runs.load(Acquire) == 1,
                "iteration {i}: a registered callback ran {} times",
                kept.runs.load(Acquire)
            );
            expect!(
                v,
                kept.tid.load(Relaxed) == me && kept.reason.load(Relaxed) == reason,
                "iteration {i}: callback not on the stopping thread or wrong reason"
            );
            let ur = unreg.runs.load(Acquire);
            expect!(v, ur <= 1, "iteration {i}: double callback ({ur})");
            // Which way the unregister went is in the counters; the relation must hold:
            // (runs == 0) <=> unregister returned OK. Recompute from the records.
            let late_runs = late.runs.load(Acquire);
            expect!(
                v,
                late_runs == 1,
                "iteration {i}: a callback registered during the stop ran {late_runs} times"
            );
            stopper_release(s);
        }
        helper.join().expect("helper thread");
    });
    // Global relation between unregister results and runs, counted on both sides.
    let total = unreg_ok.load(Relaxed) + unreg_stopped.load(Relaxed);
    assert_eq!(total, n, "every unregister returned OK or STOPPED");
    v.assert_none("race_stop_wait_register_unregister");
    report(
        "stop/wait/register/unregister",
        n,
        t0,
        &[
            ("lost wake-ups", 0),
            ("unregister OK (never ran)", unreg_ok.load(Relaxed)),
            ("unregister STOPPED (ran)", unreg_stopped.load(Relaxed)),
            (
                "of which caught it running and waited",
                unreg_caught_running.load(Relaxed),
            ),
            ("on_stop OK", reg_ok.load(Relaxed)),
            ("on_stop inline", reg_inline.load(Relaxed)),
            (
                "waits begun before the stop",
                waited_before_stop.load(Relaxed),
            ),
            (
                "max wake-up after stop (us)",
                max_wake_ns.load(Relaxed) / 1000,
            ),
        ],
    );
}

/// Unregister returning OK means the callback never runs: checked per iteration, with the
/// unregister racing the stop from the other core.
#[test]
fn race_unregister_ok_means_never_runs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = iters();
    let v = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let id = AtomicU64::new(0);
    let rec = Rec::new();
    let result = AtomicI32::new(0);
    let (ok, stopped) = (AtomicU64::new(0), AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| {
            pin(1);
            for i in 0..n {
                bar.wait();
                jitter((i * 11) % 61);
                let s = slot.load(Acquire) as *mut ffi::stopper;
                result.store(stopper_unregister(s, id.load(Relaxed)), Release);
                bar.wait();
            }
        });
        pin(0);
        for i in 0..n {
            let s = stopper_new();
            rec.reset((i % 3) as u32 * 100);
            let mut cid = 0;
            stopper_on_stop(s, Some(record), rec.data(), &mut cid);
            id.store(cid, Relaxed);
            slot.store(s as usize, Release);
            bar.wait();
            jitter((i * 5) % 67);
            stopper_stop(s, 0);
            bar.wait();
            let r = result.load(Acquire);
            let runs = rec.runs.load(Acquire);
            match r {
                STOPPER_OK => {
                    ok.fetch_add(1, Relaxed);
                    expect!(
                        v,
                        runs == 0,
                        "iteration {i}: callback ran {runs} times after unregister returned OK"
                    );
                }
                STOPPER_STOPPED => {
                    stopped.fetch_add(1, Relaxed);
                    expect!(
                        v,
                        runs == 1,
                        "iteration {i}: unregister said STOPPED but the callback ran {runs} times"
                    );
                }
                other => v.add(format!("iteration {i}: unregister returned {other}")),
            }
            // Unregistering again once stopped: STOPPED when it ran, EINVAL when the first
            // unregister removed it (STOPPED means "it ran"); never a second run.
            let again = stopper_unregister(s, cid);
            let want = if r == STOPPER_OK {
                STOPPER_EINVAL
            } else {
                STOPPER_STOPPED
            };
            expect!(
                v,
                again == want,
                "iteration {i}: second unregister returned {again}, expected {want}"
            );
            stopper_release(s);
        }
        helper.join().expect("helper");
    });
    v.assert_none("race_unregister_ok_means_never_runs");
    report(
        "unregister-vs-stop",
        n,
        t0,
        &[
            ("OK (removed first)", ok.load(Relaxed)),
            ("STOPPED (ran first)", stopped.load(Relaxed)),
        ],
    );
}

/// Two stops race, with children and a linked stopper below: one winner, whose reason every
/// descendant records; a child created during the stop is stopped too (born or propagated).
#[test]
fn race_concurrent_stops_and_child_creation() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = minor_iters();
    let v = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let helper_won = AtomicI32::new(0);
    let late_child = AtomicUsize::new(0);
    let (main_wins, helper_wins, born_stopped) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| {
            pin(1);
            for i in 0..n {
                bar.wait();
                let s = slot.load(Acquire) as *mut ffi::stopper;
                jitter((i * 3) % 41);
                let c = stopper_new_child(s);
                if stopper_is_set(c) {
                    born_stopped.fetch_add(1, Relaxed);
                }
                late_child.store(c as usize, Release);
                helper_won.store(stopper_stop(s, 200), Release);
                bar.wait();
            }
        });
        pin(0);
        for i in 0..n {
            let s = stopper_new();
            let child = stopper_new_child(s);
            let other = stopper_new();
            let parents = [other, child];
            let linked = stopper_new_linked(parents.as_ptr(), 2);
            slot.store(s as usize, Release);
            bar.wait();
            jitter((i * 7) % 43 + if i % 2 == 0 { (i * 13) % 600 } else { 0 });
            let mine = stopper_stop(s, 100);
            bar.wait();
            let theirs = helper_won.load(Acquire);
            expect!(
                v,
                mine + theirs == 1,
                "iteration {i}: stop winners: main {mine}, helper {theirs}"
            );
            let want = if mine == 1 { 100 } else { 200 };
            if mine == 1 {
                main_wins.fetch_add(1, Relaxed);
            } else {
                helper_wins.fetch_add(1, Relaxed);
            }
            let c2 = late_child.load(Acquire) as *mut ffi::stopper;
            for (name, x) in [
                ("s", s),
                ("child", child),
                ("linked", linked),
                ("late child", c2),
            ] {
                expect!(
                    v,
                    stopper_reason(x) == want,
                    "iteration {i}: {name} has reason {} not {want}",
                    stopper_reason(x)
                );
            }
            expect!(
                v,
                !stopper_is_set(other),
                "iteration {i}: a stop went upward"
            );
            for x in [c2, linked, child, other, s] {
                stopper_release(x);
            }
        }
        helper.join().expect("helper");
    });
    v.assert_none("race_concurrent_stops_and_child_creation");
    report(
        "concurrent stops + child creation",
        n,
        t0,
        &[
            ("main won", main_wins.load(Relaxed)),
            ("helper won", helper_wins.load(Relaxed)),
            ("late child born stopped", born_stopped.load(Relaxed)),
        ],
    );
}

struct HookCount {
    calls: AtomicU32,
    tid: AtomicU64,
}

unsafe extern "C" fn count_hook(data: *mut c_void, thread_id: u64, _reason: i32) {
    // SAFETY: a HookCount that outlives the worker's time inside.
    let h = unsafe { &*(data as *const HookCount) };
    h.tid.store(thread_id, Relaxed);
    h.calls.fetch_add(1, AcqRel);
}

/// A worker enters (with a hook) while the other core stops and joins. Even iterations: the
/// worker stays inside until `stopper_stop` has returned, so its hook must have been called
/// exactly once by then (the stop calls the hooks of the workers inside before it returns).
/// Odd iterations: the worker leaves as soon as it sees the stop, racing the hook step, so at
/// most one call. Always: `join` returns OK only after the worker began its exit, a worker
/// that entered a stopped stopper gets STOPPED and no call, the hook gets the worker's id.
#[test]
fn race_enter_exit_vs_stop_join_with_hooks() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = minor_iters();
    let v = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let hook = HookCount {
        calls: AtomicU32::new(0),
        tid: AtomicU64::new(0),
    };
    let entered = AtomicI32::new(0);
    let exiting = AtomicBool::new(false);
    let stop_returned = AtomicBool::new(false);
    let (inside_at_stop, left_early, entered_stopped) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| {
            pin(1);
            let me = stopper_thread_id();
            for i in 0..n {
                bar.wait();
                let s = slot.load(Acquire) as *mut ffi::stopper;
                jitter((i * 17) % 53);
                let h = stopper_hook { func: Some(count_hook), data: &hook as *const HookCount as *mut c_void, repeat_ns: 0 };
                let e = stopper_enter(s, &h);
                entered.store(e, Release);
                if e == STOPPER_OK {
                    let w = stopper_wait(stopper_current(), WAIT_LIMIT);
                    expect!(v, w == STOPPER_STOPPED, "iteration {i}: the worker's wait returned {w}");
                    if i % 2 == 0 {
                        let t = Instant::now();
                        while !stop_returned.load(Acquire) && t.elapsed() < Duration::from_secs(5) {
                            std::hint::spin_loop();
                        }
                        let c = hook.calls.load(Acquire);
                        expect!(v, c == 1, "iteration {i}: worker inside when stopper_stop returned got {c} hook calls");
                    }
                }
                expect!(v, stopper_current() == s, "iteration {i}: current is not the entered stopper");
                // Set just before exiting: join may return as soon as the exit removed us.
                exiting.store(true, Release);
                let x = stopper_exit(s);
                expect!(v, x == STOPPER_OK, "iteration {i}: exit returned {x}");
                let t = hook.tid.load(Relaxed);
                expect!(v, t == 0 || t == me, "iteration {i}: the hook got another thread's id");
                bar.wait();
            }
        });
        pin(0);
        for i in 0..n {
            let s = stopper_new();
            hook.calls.store(0, Relaxed);
            hook.tid.store(0, Relaxed);
            exiting.store(false, Relaxed);
            stop_returned.store(false, Relaxed);
            slot.store(s as usize, Release);
            bar.wait();
            jitter((i * 7) % 47 + if i % 3 != 0 { (i * 11) % 1200 } else { 0 });
            if i % 2 == 0 {
                stopper_stop(s, 0);
                stop_returned.store(true, Release);
            }
            let j = stopper_join(s, WAIT_LIMIT);
            expect!(v, j == STOPPER_OK, "iteration {i}: join returned {j}");
            let ex = exiting.load(Acquire);
            bar.wait();
            let calls = hook.calls.load(Acquire);
            match entered.load(Acquire) {
                STOPPER_OK => {
                    expect!(v, ex, "iteration {i}: join returned OK while the worker (entered before the stop) was inside");
                    expect!(v, calls <= 1, "iteration {i}: {calls} hook calls");
                    if calls == 1 {
                        inside_at_stop.fetch_add(1, Relaxed);
                    } else {
                        expect!(
                            v,
                            i % 2 == 1,
                            "iteration {i}: no hook call for a worker inside at the stop"
                        );
                        left_early.fetch_add(1, Relaxed);
                    }
                }
                STOPPER_STOPPED => {
                    entered_stopped.fetch_add(1, Relaxed);
                    expect!(v, calls == 0, "iteration {i}: worker that entered a stopped stopper got {calls} hook calls");
                }
                other => v.add(format!("iteration {i}: enter returned {other}")),
            }
            stopper_release(s);
        }
        helper.join().expect("helper");
    });
    v.assert_none("race_enter_exit_vs_stop_join_with_hooks");
    report(
        "enter/exit vs stop/join + hooks",
        n,
        t0,
        &[
            (
                "hook called (inside at the stop)",
                inside_at_stop.load(Relaxed),
            ),
            ("left before the hook step", left_early.load(Relaxed)),
            ("entered after the stop", entered_stopped.load(Relaxed)),
        ],
    );
}

/// Blocking calls that a stop must end: wait_any, channel receive and send, wait_fd — each
/// blocked on one core while the other stops; none may miss it.
#[test]
fn race_blocking_calls_vs_stop() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = minor_iters();
    let v = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let chan = stopper_chan_new(1);
    let mut fds = [0i32; 2];
    if !cfg!(miri) {
        // SAFETY: valid array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    }
    let chan_p = chan as usize;
    let kinds = if cfg!(miri) { 3 } else { 4 };
    let per_kind: [AtomicU64; 4] = Default::default();
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let helper = sc.spawn(|| {
            pin(1);
            let other = stopper_new();
            for i in 0..n {
                bar.wait();
                let s = slot.load(Acquire) as *const ffi::stopper;
                let c = chan_p as *mut ffi::stopper_chan;
                let kind = i % kinds;
                let r = match kind {
                    0 => {
                        let list = [other as *const ffi::stopper, null(), s];
                        let mut which = 9usize;
                        let r = stopper_wait_any(list.as_ptr(), 3, WAIT_LIMIT, &mut which);
                        expect!(
                            v,
                            r != STOPPER_STOPPED || which == 2,
                            "iteration {i}: wait_any which = {which}"
                        );
                        r
                    }
                    1 => {
                        let mut item = 0u64;
                        stopper_chan_recv(c, &mut item, s, WAIT_LIMIT)
                    }
                    2 => {
                        // The channel holds one item (capacity 1): the send blocks.
                        stopper_chan_send(c, 9, s, WAIT_LIMIT)
                    }
                    _ => stopper_wait_fd(s, fds[0], libc::POLLIN, WAIT_LIMIT, null_mut()),
                };
                expect!(
                    v,
                    r == STOPPER_STOPPED,
                    "iteration {i}: blocking call kind {kind} returned {r}: missed the stop"
                );
                per_kind[kind as usize].fetch_add(1, Relaxed);
                bar.wait();
            }
            stopper_release(other);
        });
        pin(0);
        for i in 0..n {
            let s = stopper_new();
            let kind = i % kinds;
            let c = chan_p as *mut ffi::stopper_chan;
            // Channel state for the kind: empty for receive, full for send.
            let mut item = 0u64;
            while stopper_chan_recv(c, &mut item, null(), 0) == STOPPER_OK {}
            if kind == 2 {
                stopper_chan_send(c, 1, null(), 0);
            }
            slot.store(s as usize, Release);
            bar.wait();
            jitter((i * 29) % 300 + if i % 2 == 0 { (i * 37) % 4000 } else { 0 });
            stopper_stop(s, 0);
            bar.wait();
            stopper_release(s);
        }
        helper.join().expect("helper");
    });
    stopper_chan_release(chan);
    if !cfg!(miri) {
        // SAFETY: our pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
    v.assert_none("race_blocking_calls_vs_stop");
    let f: Vec<u64> = per_kind.iter().map(|a| a.load(Relaxed)).collect();
    report(
        "blocking calls vs stop",
        n,
        t0,
        &[
            ("wait_any", f[0]),
            ("chan_recv", f[1]),
            ("chan_send", f[2]),
            ("wait_fd", f[3]),
        ],
    );
}
