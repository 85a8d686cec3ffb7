//! `make bench`, Rust async rows: `Stopper::stopped()` against tokio-util's
//! `CancellationToken::cancelled()`, side by side.
//!
//!     bench_async [--samples N] [--rounds R] [--scale F]
//!
//! Wake-up latency: a task awaits the future (already polled once, so registered), the main
//! thread waits 300 us so that the task's thread is really asleep, then reads the monotonic
//! clock and stops the stopper (or cancels the token); the task reads the clock when its await
//! returns. One sample of each kind at a time, interleaved, on three executors: a tokio
//! current-thread runtime on a thread of its own, a tokio multi-thread runtime (2 workers), and
//! `futures::executor::block_on`. Each await is checked (the reason is REASON_REQUESTED).
//!
//! Per-operation pair: create the future, poll it once (it registers its waker), drop it (it
//! unregisters), on a long-lived stopper / token; rounds interleaved.
//!
//! Output: JSON lines as `benches/src/bench_util.h` prints them (kinds samples, pair, meta).

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use stopper::{now_ns, Stopper, REASON_REQUESTED};
use tokio_util::sync::CancellationToken;

/// What one sample waits on.
enum Job {
    Stopper(Stopper),
    Token(CancellationToken),
}

/// The waiting side of one sample: registers (first poll), says so on `armed`, awaits, and
/// sends the clock reading taken as the await returns.
async fn wait_one(job: Job, armed: mpsc::Sender<()>, done: mpsc::Sender<u64>) {
    match job {
        Job::Stopper(s) => {
            let mut f = pin!(s.stopped());
            poll_once(f.as_mut()).await;
            armed.send(()).unwrap();
            let reason = f.await;
            let t1 = now_ns();
            if reason != REASON_REQUESTED {
                eprintln!("bench_async: stopped() gave reason {reason}");
                std::process::exit(1);
            }
            done.send(t1).unwrap();
        }
        Job::Token(t) => {
            let mut f = pin!(t.cancelled());
            poll_once(f.as_mut()).await;
            armed.send(()).unwrap();
            f.await;
            let t1 = now_ns();
            done.send(t1).unwrap();
        }
    }
}

/// Polls `f` once with the task's waker (so it registers), whatever it answers.
async fn poll_once<F: Future>(mut f: std::pin::Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        let _ = f.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await
}

#[derive(Clone, Copy)]
enum Exec {
    TokioCurrent,
    TokioMulti,
    BlockOn,
}

impl Exec {
    fn id(self) -> &'static str {
        match self {
            Exec::TokioCurrent => "tokio_ct",
            Exec::TokioMulti => "tokio_mt",
            Exec::BlockOn => "block_on",
        }
    }
}

/// One sample handed to a waiter thread: what to wait on, where to say "registered", where to
/// send the clock reading.
type Task = (Job, mpsc::Sender<()>, mpsc::Sender<u64>);

/// Where samples run: a thread driving one future at a time, or a multi-thread runtime.
struct Runner {
    jobs: Option<mpsc::Sender<Task>>,
    thread: Option<std::thread::JoinHandle<()>>,
    multi: Option<tokio::runtime::Runtime>,
}

impl Runner {
    fn new(exec: Exec) -> Runner {
        if let Exec::TokioMulti = exec {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("tokio runtime");
            return Runner {
                jobs: None,
                thread: None,
                multi: Some(rt),
            };
        }
        let (tx, rx) = mpsc::channel::<Task>();
        let thread = std::thread::spawn(move || match exec {
            Exec::TokioCurrent => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("tokio runtime");
                while let Ok((job, armed, done)) = rx.recv() {
                    rt.block_on(wait_one(job, armed, done));
                }
            }
            _ => {
                while let Ok((job, armed, done)) = rx.recv() {
                    futures::executor::block_on(wait_one(job, armed, done));
                }
            }
        });
        Runner {
            jobs: Some(tx),
            thread: Some(thread),
            multi: None,
        }
    }

    /// One wake-up sample: ns from just before the stop to the await's return.
    fn sample(&self, job: Job) -> u64 {
        let (armed_tx, armed_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let trigger: Box<dyn FnOnce()> = match &job {
            Job::Stopper(s) => {
                let s = s.clone();
                Box::new(move || {
                    s.stop(0);
                })
            }
            Job::Token(t) => {
                let t = t.clone();
                Box::new(move || t.cancel())
            }
        };
        match (&self.jobs, &self.multi) {
            (Some(jobs), _) => jobs.send((job, armed_tx, done_tx)).unwrap(),
            (None, Some(rt)) => drop(rt.spawn(wait_one(job, armed_tx, done_tx))),
            _ => unreachable!(),
        }
        armed_rx.recv().expect("the waiter registered");
        std::thread::sleep(Duration::from_micros(300));
        let t0 = now_ns();
        trigger();
        let t1 = done_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                eprintln!("bench_async: a waiter was not woken within 10 s");
                std::process::exit(1);
            });
        t1.saturating_sub(t0)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Prints a `samples` record as bench_util.h does (summary plus up to 2000 rank-spread values).
fn emit_samples(id: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    let n = v.len();
    let mean = if n > 0 {
        v.iter().map(|&x| x as f64).sum::<f64>() / n as f64
    } else {
        0.0
    };
    let keep = n.min(2000);
    let values: Vec<String> = (0..keep)
        .map(|i| {
            let k = if keep == n {
                i
            } else {
                (i as f64 * (n - 1) as f64 / (keep - 1) as f64) as usize
            };
            v[k].to_string()
        })
        .collect();
    println!(
        "{{\"kind\":\"samples\",\"id\":\"{id}\",\"unit\":\"ns\",\"n\":{n},\"p50\":{},\"p90\":{},\
         \"p99\":{},\"max\":{},\"mean\":{mean:.1},\"values\":[{}]}}",
        quantile(&v, 0.5),
        quantile(&v, 0.9),
        quantile(&v, 0.99),
        v.last().copied().unwrap_or(0),
        values.join(",")
    );
}

fn emit_pair(id: &str, a: &[f64], b: &[f64]) {
    let j = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "{{\"kind\":\"pair\",\"id\":\"{id}\",\"a\":[{}],\"b\":[{}]}}",
        j(a),
        j(b)
    );
}

/// ns per create + first poll + drop of `make()`'s future.
fn register_drop_ns<F: Future>(iters: u64, mut make: impl FnMut() -> F) -> f64 {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let t0 = now_ns();
    for _ in 0..iters {
        let f = pin!(make());
        assert!(f.poll(&mut cx).is_pending());
    }
    (now_ns() - t0) as f64 / iters as f64
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("bench_async: bad value for {name}: {v}");
                std::process::exit(2)
            })
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples: usize = arg(&args, "--samples", 2000);
    let rounds: usize = arg(&args, "--rounds", 15);
    let scale: f64 = arg(&args, "--scale", 1.0);
    println!(
        "{{\"kind\":\"meta\",\"program\":\"bench_async\",\"samples\":{samples},\"rounds\":{rounds}}}"
    );

    for exec in [Exec::TokioCurrent, Exec::TokioMulti, Exec::BlockOn] {
        let runner = Runner::new(exec);
        // Warm-up: the threads exist and have run each path once.
        for _ in 0..3 {
            runner.sample(Job::Stopper(Stopper::new()));
            runner.sample(Job::Token(CancellationToken::new()));
        }
        let (mut ours, mut theirs) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        for _ in 0..samples {
            ours.push(runner.sample(Job::Stopper(Stopper::new())));
            theirs.push(runner.sample(Job::Token(CancellationToken::new())));
        }
        emit_samples(&format!("async_wake_stopper_{}", exec.id()), ours);
        emit_samples(&format!("async_wake_token_{}", exec.id()), theirs);
    }

    let iters = ((2_000_000.0 * scale) as u64).max(1);
    let s = Stopper::new();
    let t = CancellationToken::new();
    register_drop_ns(iters / 10 + 1, || s.stopped());
    register_drop_ns(iters / 10 + 1, || t.cancelled());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(register_drop_ns(iters, || s.stopped()));
        b.push(register_drop_ns(iters, || t.cancelled()));
    }
    emit_pair("async_register_drop", &a, &b);
}
