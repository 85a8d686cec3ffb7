//! The two-core race harness of `tests/stress.rs` (included there by path, so that the other
//! tests that use `common` do not build it).
//!
//! `race` runs one race for a number of rounds: each round, the main thread makes a fresh
//! stopper and prepares the round (`setup`), the two racers, pinned to different cores, meet at
//! a barrier, each spins for its own jitter (so that, over the rounds, the two sides' steps
//! slide past each other), then runs its side (`main` here, `helper` on the other thread); they
//! meet again, and `check` looks at what the round left. A broken property is counted, not
//! panicked on mid-race (the other thread would be left at the barrier): `expect!` records it
//! with the round's number, and the race fails at its end if any was recorded.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::stopper::ffi::{self, stopper_new, stopper_release, stopper_thread_id};

/// The races run one at a time: each wants both cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Records a violation in round `$r` unless `$cond` holds; the rest is a `format!` of what
/// went wrong (the round's number is prefixed).
macro_rules! expect {
    ($r:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $r.violated(format!($($arg)+));
        }
    };
}

/// What a race is called, how many rounds it runs, and each side's jitter: how many spins it
/// waits after the start of round `i` before its step.
pub struct Race {
    /// Names the race in its failure and in its figures.
    pub name: &'static str,
    pub rounds: u64,
    pub main_jitter: fn(u64) -> u64,
    pub helper_jitter: fn(u64) -> u64,
}

/// One side's view of a round.
#[derive(Clone, Copy)]
pub struct Round<'a> {
    /// The round's number, from 0.
    pub i: u64,
    /// The round's fresh stopper (made before `setup`, released after `check`).
    pub s: *mut ffi::stopper,
    /// This side's thread (`stopper_thread_id`).
    pub me: u64,
    violations: &'a Violations,
}

impl Round<'_> {
    /// Records that a property did not hold in this round (see `expect!`).
    pub fn violated(&self, what: String) {
        self.violations.add(format!("iteration {}: {what}", self.i));
    }
}

/// A race that ran to its end with no violation.
pub struct Ran {
    name: &'static str,
    rounds: u64,
    secs: f64,
}

impl Ran {
    /// Prints the race's rate and its figures (`--nocapture` shows them).
    pub fn report(&self, figures: &[(&str, u64)]) {
        let mut s = format!(
            "stress {}: {} iterations in {:.1} s ({:.0}/s)",
            self.name,
            self.rounds,
            self.secs,
            self.rounds as f64 / self.secs.max(1e-9)
        );
        for (k, v) in figures {
            s.push_str(&format!("; {k} {v}"));
        }
        println!("{s}");
    }
}

/// Runs `race.rounds` rounds of a race between this thread (pinned to one core: `setup`,
/// `main`, `check`) and a helper thread (pinned to another: `helper`), each round on a fresh
/// stopper; `main`'s result goes to `check`. Fails if any round recorded a violation, or if a
/// side does not reach the barrier within 30 s (a hang).
pub fn race<T, U>(
    race: Race,
    mut setup: impl FnMut(Round<'_>) -> T,
    mut main: impl FnMut(Round<'_>, &T) -> U,
    helper: impl Fn(Round<'_>) + Sync,
    mut check: impl FnMut(Round<'_>, &T, U),
) -> Ran {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Race {
        name,
        rounds,
        main_jitter,
        helper_jitter,
    } = race;
    let violations = Violations::default();
    let bar = Barrier2::new();
    let slot = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        let other = sc.spawn(|| {
            pin(1);
            let me = stopper_thread_id();
            for i in 0..rounds {
                bar.wait();
                let s = slot.load(Acquire) as *mut ffi::stopper;
                jitter(helper_jitter(i));
                helper(Round {
                    i,
                    s,
                    me,
                    violations: &violations,
                });
                bar.wait();
            }
        });
        pin(0);
        let me = stopper_thread_id();
        for i in 0..rounds {
            let s = stopper_new();
            let r = Round {
                i,
                s,
                me,
                violations: &violations,
            };
            let prepared = setup(r);
            slot.store(s as usize, Release);
            bar.wait();
            jitter(main_jitter(i));
            let outcome = main(r, &prepared);
            bar.wait();
            check(r, &prepared, outcome);
            stopper_release(s);
        }
        other.join().expect("helper thread");
    });
    violations.assert_none(name);
    Ran {
        name,
        rounds,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// Spins `n` times.
pub fn jitter(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
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

/// Violations, counted instead of panicking mid-race; the first few are described.
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

    fn assert_none(&self, race: &str) {
        let n = self.count.load(Relaxed);
        assert!(
            n == 0,
            "{race}: {n} violations, first: {:#?}",
            self.first.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
}
