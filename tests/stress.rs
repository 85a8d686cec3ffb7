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

//!
//! The scaffolding every race shares (pinning, the two-party barrier, jitter, the rounds, the
//! counted violations) is `race` in `tests/common/race.rs`; each test here is only its race:
//! what each side does and what must hold after every round.

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use ::stopper::ffi::{self, *};

#[macro_use]
#[path = "common/race.rs"]
mod race;

use race::{jitter, race, Race};

const MS: i64 = 1_000_000;
/// A waiter's limit: reaching it means the stop's wake-up was lost.
const WAIT_LIMIT: i64 = 5_000 * MS;

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

// ------------------------------------------------------------------------------------------

/// The main race, `STOPPER_STRESS_ITERS` times: a stopper with two callbacks; the main thread
/// stops it while the other registers a third callback, unregisters the second and waits.
#[test]
fn race_stop_wait_register_unregister() {
    let n = iters();
    let id1 = AtomicU64::new(0);
    let (kept, unreg, late) = (Rec::new(), Rec::new(), Rec::new());
    let stop_at = AtomicU64::new(0);
    // Figures.
    let unreg_ok = AtomicU64::new(0);
    let unreg_stopped = AtomicU64::new(0);
    let unreg_caught_running = AtomicU64::new(0);
    let reg_inline = AtomicU64::new(0);
    let reg_ok = AtomicU64::new(0);
    let waited_before_stop = AtomicU64::new(0);
    let max_wake_ns = AtomicU64::new(0);
    let ran = race(
        Race {
            name: "stop/wait/register/unregister",
            rounds: n,
            // Sweeps the stop across the helper's register / unregister / wait.
            main_jitter: |i| (i * 7) % 89 + if i % 3 == 0 { (i * 31) % 2500 } else { 0 },
            helper_jitter: |i| (i * 13) % 97,
        },
        // Before the round, on this thread: the fresh stopper's set-up.
        |r| {
            kept.reset(0);
            unreg.reset(if r.i % 4 == 0 { 2000 } else { 50 });
            late.reset(0);
            let mut id = 0u64;
            let a = stopper_on_stop(r.s, Some(record), kept.data(), null_mut());
            let b = stopper_on_stop(r.s, Some(record), unreg.data(), &mut id);
            expect!(
                r,
                a == STOPPER_OK && b == STOPPER_OK,
                "setup registrations {a} {b}"
            );
            id1.store(id, Relaxed);
            stop_at.store(0, Release);
        },
        // This thread's side (pinned to one core).
        |r, _| {
            let reason = (r.i % 1000) as i32 + 10;
            stop_at.store(::stopper::now_ns(), Release);
            let won = stopper_stop(r.s, reason);
            expect!(r, won == 1, "stop returned {won}");
            reason
        },
        // The helper thread's side (pinned to another).
        |r| {
            // 1. Register while the stop may be under way.
            let mut id2 = 0u64;
            match stopper_on_stop(r.s, Some(record), late.data(), &mut id2) {
                STOPPER_OK => {
                    reg_ok.fetch_add(1, Relaxed);
                    expect!(r, id2 != 0, "on_stop OK with id 0");
                }
                STOPPER_STOPPED => {
                    reg_inline.fetch_add(1, Relaxed);
                    expect!(r, id2 == 0, "on_stop STOPPED with id {id2}");
                    expect!(
                        r,
                        late.runs.load(Acquire) == 1 && late.tid.load(Relaxed) == r.me,
                        "inline callback did not run once on the registering thread"
                    );
                }
                other => r.violated(format!("on_stop returned {other}")),
            }
            // 2. Unregister the second callback, maybe while it runs on the other thread.
            let running_before = unreg.runs.load(Acquire) == 1 && !unreg.done.load(Acquire);
            match stopper_unregister(r.s, id1.load(Relaxed)) {
                STOPPER_OK => {
                    unreg_ok.fetch_add(1, Relaxed);
                }
                STOPPER_STOPPED => {
                    unreg_stopped.fetch_add(1, Relaxed);
                    if running_before {
                        unreg_caught_running.fetch_add(1, Relaxed);
                    }
                    expect!(
                        r,
                        unreg.done.load(Acquire),
                        "unregister returned STOPPED before the callback returned"
                    );
                }
                other => r.violated(format!("unregister returned {other}")),
            }
            // 3. Wait: a lost wake-up shows as TIMEDOUT after 5 s.
            if !stopper_is_set(r.s) {
                waited_before_stop.fetch_add(1, Relaxed);
            }
            let w = stopper_wait(r.s, WAIT_LIMIT);
            let woke = ::stopper::now_ns();
            expect!(r, w == STOPPER_STOPPED, "wait returned {w}: lost wake-up");
            let at = stop_at.load(Acquire);
            if at != 0 && woke > at {
                max_wake_ns.fetch_max(woke - at, Relaxed);
            }
        },
        // After both sides: what must hold.
        |r, _, reason| {
            let runs = kept.runs.load(Acquire);
            expect!(r, runs == 1, "a registered callback ran {runs} times");
            expect!(
                r,
                kept.tid.load(Relaxed) == r.me && kept.reason.load(Relaxed) == reason,
                "callback not on the stopping thread or wrong reason"
            );
            let ur = unreg.runs.load(Acquire);
            expect!(r, ur <= 1, "double callback ({ur})");
            // Which way the unregister went is in the counters; the relation must hold:
            // (runs == 0) <=> unregister returned OK. Recompute from the records.
            let late_runs = late.runs.load(Acquire);
            expect!(
                r,
                late_runs == 1,
                "a callback registered during the stop ran {late_runs} times"
            );
        },
    );
    // Global relation between unregister results and runs, counted on both sides.
    let total = unreg_ok.load(Relaxed) + unreg_stopped.load(Relaxed);
    assert_eq!(total, n, "every unregister returned OK or STOPPED");
    ran.report(&[
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
    ]);
}

/// Unregister returning OK means the callback never runs: checked per iteration, with the
/// unregister racing the stop from the other core.
#[test]
fn race_unregister_ok_means_never_runs() {
    let id = AtomicU64::new(0);
    let rec = Rec::new();
    let result = AtomicI32::new(0);
    let [ok, stopped]: [AtomicU64; 2] = Default::default();
    race(
        Race {
            name: "unregister-vs-stop",
            rounds: iters(),
            main_jitter: |i| (i * 5) % 67,
            helper_jitter: |i| (i * 11) % 61,
        },
        // Before the round, on this thread: the fresh stopper's set-up.
        |r| {
            rec.reset((r.i % 3) as u32 * 100);
            let mut cid = 0;
            stopper_on_stop(r.s, Some(record), rec.data(), &mut cid);
            id.store(cid, Relaxed);
            cid
        },
        // This thread's side (pinned to one core).
        |r, _| {
            stopper_stop(r.s, 0);
        },
        // The helper thread's side (pinned to another).
        |r| result.store(stopper_unregister(r.s, id.load(Relaxed)), Release),
        // After both sides: what must hold.
        |r, &cid, ()| {
            let first = result.load(Acquire);
            let runs = rec.runs.load(Acquire);
            match first {
                STOPPER_OK => {
                    ok.fetch_add(1, Relaxed);
                    expect!(
                        r,
                        runs == 0,
                        "callback ran {runs} times after unregister returned OK"
                    );
                }
                STOPPER_STOPPED => {
                    stopped.fetch_add(1, Relaxed);
                    expect!(
                        r,
                        runs == 1,
                        "unregister said STOPPED but the callback ran {runs} times"
                    );
                }
                other => r.violated(format!("unregister returned {other}")),
            }
            // Unregistering again once stopped: STOPPED when it ran, EINVAL when the first
            // unregister removed it (STOPPED means "it ran"); never a second run.
            let again = stopper_unregister(r.s, cid);
            let want = if first == STOPPER_OK {
                STOPPER_EINVAL
            } else {
                STOPPER_STOPPED
            };
            expect!(
                r,
                again == want,
                "second unregister returned {again}, expected {want}"
            );
        },
    )
    .report(&[
        ("OK (removed first)", ok.load(Relaxed)),
        ("STOPPED (ran first)", stopped.load(Relaxed)),
    ]);
}

/// Two stops race, with children and a linked stopper below: one winner, whose reason every
/// descendant records; a child created during the stop is stopped too (born or propagated).
#[test]
fn race_concurrent_stops_and_child_creation() {
    let helper_won = AtomicI32::new(0);
    let late_child = AtomicUsize::new(0);
    let [main_wins, helper_wins, born_stopped]: [AtomicU64; 3] = Default::default();
    race(
        Race {
            name: "concurrent stops + child creation",
            rounds: minor_iters(),
            main_jitter: |i| (i * 7) % 43 + if i % 2 == 0 { (i * 13) % 600 } else { 0 },
            helper_jitter: |i| (i * 3) % 41,
        },
        // Before the round, on this thread: the fresh stopper's set-up.
        |r| {
            let child = stopper_new_child(r.s);
            let other = stopper_new();
            let parents = [other, child];
            let linked = stopper_new_linked(parents.as_ptr(), 2);
            (child, other, linked)
        },
        // This thread's side (pinned to one core).
        |r, _| stopper_stop(r.s, 100),
        // The helper thread's side (pinned to another).
        |r| {
            let c = stopper_new_child(r.s);
            if stopper_is_set(c) {
                born_stopped.fetch_add(1, Relaxed);
            }
            late_child.store(c as usize, Release);
            helper_won.store(stopper_stop(r.s, 200), Release);
        },
        // After both sides: what must hold.
        |r, &(child, other, linked), mine| {
            let theirs = helper_won.load(Acquire);
            expect!(
                r,
                mine + theirs == 1,
                "stop winners: main {mine}, helper {theirs}"
            );
            let want = if mine == 1 { 100 } else { 200 };
            if mine == 1 {
                main_wins.fetch_add(1, Relaxed);
            } else {
                helper_wins.fetch_add(1, Relaxed);
            }
            let c2 = late_child.load(Acquire) as *mut ffi::stopper;
            for (name, x) in [
                ("s", r.s),
                ("child", child),
                ("linked", linked),
                ("late child", c2),
            ] {
                expect!(
                    r,
                    stopper_reason(x) == want,
                    "{name} has reason {} not {want}",
                    stopper_reason(x)
                );
            }
            expect!(r, !stopper_is_set(other), "a stop went upward");
            for x in [c2, linked, child, other] {
                stopper_release(x);
            }
        },
    )
    .report(&[
        ("main won", main_wins.load(Relaxed)),
        ("helper won", helper_wins.load(Relaxed)),
        ("late child born stopped", born_stopped.load(Relaxed)),
    ]);
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
    let hook = HookCount {
        calls: AtomicU32::new(0),
        tid: AtomicU64::new(0),
    };
    let entered = AtomicI32::new(0);
    let exiting = AtomicBool::new(false);
    let stop_returned = AtomicBool::new(false);
    let [inside_at_stop, left_early, entered_stopped]: [AtomicU64; 3] = Default::default();
    race(
        Race {
            name: "enter/exit vs stop/join + hooks",
            rounds: minor_iters(),
            main_jitter: |i| (i * 7) % 47 + if i % 3 != 0 { (i * 11) % 1200 } else { 0 },
            helper_jitter: |i| (i * 17) % 53,
        },
        // Before the round, on this thread: the fresh stopper's set-up.
        |_| {
            hook.calls.store(0, Relaxed);
            hook.tid.store(0, Relaxed);
            exiting.store(false, Relaxed);
            stop_returned.store(false, Relaxed);
        },
        // This thread's side (pinned to one core).
        |r, _| {
            if r.i % 2 == 0 {
                stopper_stop(r.s, 0);
                stop_returned.store(true, Release);
            }
            let j = stopper_join(r.s, WAIT_LIMIT);
            expect!(r, j == STOPPER_OK, "join returned {j}");
            exiting.load(Acquire)
        },
        // The helper thread's side (pinned to another).
        |r| {
            let h = stopper_hook {
                func: Some(count_hook),
                data: &hook as *const HookCount as *mut c_void,
                repeat_ns: 0,
            };
            let e = stopper_enter(r.s, &h);
            entered.store(e, Release);
            if e == STOPPER_OK {
                let w = stopper_wait(stopper_current(), WAIT_LIMIT);
                expect!(r, w == STOPPER_STOPPED, "the worker's wait returned {w}");
                if r.i % 2 == 0 {
                    let t = Instant::now();
                    while !stop_returned.load(Acquire) && t.elapsed() < Duration::from_secs(5) {
                        std::hint::spin_loop();
                    }
                    let c = hook.calls.load(Acquire);
                    expect!(
                        r,
                        c == 1,
                        "worker inside when stopper_stop returned got {c} hook calls"
                    );
                }
            }
            expect!(
                r,
                stopper_current() == r.s,
                "current is not the entered stopper"
            );
            // Set just before exiting: join may return as soon as the exit removed us.
            exiting.store(true, Release);
            let x = stopper_exit(r.s);
            expect!(r, x == STOPPER_OK, "exit returned {x}");
            let t = hook.tid.load(Relaxed);
            expect!(r, t == 0 || t == r.me, "the hook got another thread's id");
        },
        // After both sides: what must hold.
        |r, _, ex| {
            let calls = hook.calls.load(Acquire);
            match entered.load(Acquire) {
                STOPPER_OK => {
                    expect!(
                        r,
                        ex,
                        "join returned OK while the worker (entered before the stop) was inside"
                    );
                    expect!(r, calls <= 1, "{calls} hook calls");
                    if calls == 1 {
                        inside_at_stop.fetch_add(1, Relaxed);
                    } else {
                        expect!(
                            r,
                            r.i % 2 == 1,
                            "no hook call for a worker inside at the stop"
                        );
                        left_early.fetch_add(1, Relaxed);
                    }
                }
                STOPPER_STOPPED => {
                    entered_stopped.fetch_add(1, Relaxed);
                    expect!(r, calls == 0, "entered stopped, yet {calls} hook calls");
                }
                other => r.violated(format!("enter returned {other}")),
            }
        },
    )
    .report(&[
        (
            "hook called (inside at the stop)",
            inside_at_stop.load(Relaxed),
        ),
        ("left before the hook step", left_early.load(Relaxed)),
        ("entered after the stop", entered_stopped.load(Relaxed)),
    ]);
}

/// Blocking calls that a stop must end: wait_any, channel receive and send, wait_fd — each
/// blocked on one core while the other stops; none may miss it.
#[test]
fn race_blocking_calls_vs_stop() {
    let chan = stopper_chan_new(1);
    let mut fds = [0i32; 2];
    if !cfg!(miri) {
        // SAFETY: valid array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    }
    // A stopper never stopped, listed before the raced one in wait_any.
    let other = stopper_new();
    let (chan_p, other_p) = (chan as usize, other as usize);
    let kinds = if cfg!(miri) { 3 } else { 4 };
    let per_kind: [AtomicU64; 4] = Default::default();
    let ran = race(
        Race {
            name: "blocking calls vs stop",
            rounds: minor_iters(),
            main_jitter: |i| (i * 29) % 300 + if i % 2 == 0 { (i * 37) % 4000 } else { 0 },
            helper_jitter: |_| 0,
        },
        // Before the round, on this thread: the fresh stopper's set-up.
        |r| {
            let c = chan_p as *mut ffi::stopper_chan;
            // Channel state for the kind: empty for receive, full for send.
            let mut item = 0u64;
            while stopper_chan_recv(c, &mut item, null(), 0) == STOPPER_OK {}
            if r.i % kinds == 2 {
                stopper_chan_send(c, 1, null(), 0);
            }
        },
        // This thread's side (pinned to one core).
        |r, _| {
            stopper_stop(r.s, 0);
        },
        // The helper thread's side (pinned to another).
        |r| {
            let s = r.s as *const ffi::stopper;
            let c = chan_p as *mut ffi::stopper_chan;
            let kind = r.i % kinds;
            let got = match kind {
                0 => {
                    let list = [other_p as *const ffi::stopper, null(), s];
                    let mut which = 9usize;
                    let got = stopper_wait_any(list.as_ptr(), 3, WAIT_LIMIT, &mut which);
                    expect!(
                        r,
                        got != STOPPER_STOPPED || which == 2,
                        "wait_any which = {which}"
                    );
                    got
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
                r,
                got == STOPPER_STOPPED,
                "blocking call kind {kind} returned {got}: missed the stop"
            );
            per_kind[kind as usize].fetch_add(1, Relaxed);
        },
        // After both sides: nothing more (the helper's side checks its own call).
        |_, _, ()| {},
    );
    stopper_release(other);
    stopper_chan_release(chan);
    if !cfg!(miri) {
        // SAFETY: our pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
    let f: Vec<u64> = per_kind.iter().map(|a| a.load(Relaxed)).collect();
    ran.report(&[
        ("wait_any", f[0]),
        ("chan_recv", f[1]),
        ("chan_send", f[2]),
        ("wait_fd", f[3]),
    ]);
}
