//! Stop threads and tasks safely and promptly.
//!
//! A [`Stopper`] is a one-way, thread-safe stop flag (a cancellation token) whose waits wake
//! **at once**: no polling interval anywhere. Hand a clone to each worker; one `stop` tells them
//! all, with a reason. The same stopper serves blocking threads ([`Stopper::wait`]), async
//! tasks on any executor ([`Stopper::stopped`]), loops that check now and then
//! ([`Stopper::check`]), callbacks ([`Stopper::on_stop`]), child tokens, deadlines and event
//! loops (a descriptor). The library is also a C ABI (`include/stopper.h`), with C++ and
//! Python bindings in the repository, so one stop can reach the threads of every language in a
//! process, and even other processes.
//!
//! # A thread
//!
//! ```
//! use std::time::Duration;
//! use stopper::{Stopper, Wait};
//!
//! let s = Stopper::new();
//! let worker = {
//!     let s = s.clone();
//!     std::thread::spawn(move || {
//!         let mut rounds = 0;
//!         // "Sleep 10 s between rounds", except that a stop ends the sleep at once.
//!         while s.wait(Some(Duration::from_secs(10))) == Wait::TimedOut {
//!             rounds += 1;
//!         }
//!         rounds
//!     })
//! };
//! s.stop(0); // reason 0 means REASON_REQUESTED
//! assert_eq!(worker.join().unwrap(), 0);
//! assert_eq!(s.reason(), stopper::REASON_REQUESTED);
//! ```
//!
//! # A task
//!
//! [`Stopper::stopped`] is a future that completes with the reason. It needs no runtime: it
//! works on tokio, async-std, smol or `futures::executor`, and dropping it (a losing branch of
//! a `select!`) unregisters it.
//!
//! ```
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! use std::time::Duration;
//! let s = stopper::Stopper::new();
//! let task = tokio::spawn({
//!     let s = s.clone();
//!     async move {
//!         let mut ticks = 0u32;
//!         loop {
//!             tokio::select! {
//!                 reason = s.stopped() => return (ticks, reason),
//!                 _ = tokio::time::sleep(Duration::from_millis(1)) => ticks += 1,
//!             }
//!         }
//!     }
//! });
//! tokio::time::sleep(Duration::from_millis(5)).await;
//! s.stop(42);
//! let (_ticks, reason) = task.await.unwrap();
//! assert_eq!(reason, 42);
//! # });
//! ```
//!
//! # Checks and guards
//!
//! ```
//! use stopper::{Stopped, Stopper};
//!
//! fn crunch(s: &Stopper, n: u64) -> Result<u64, Stopped> {
//!     let mut acc = 0;
//!     for i in 0..n {
//!         s.check()?; // Err(Stopped) with the reason once stopped
//!         acc += i;
//!     }
//!     Ok(acc)
//! }
//!
//! let s = Stopper::new();
//! {
//!     // Stops `s` when this scope ends, however it ends (early return, `?`, panic)...
//!     let guard = s.clone().drop_guard();
//!     assert_eq!(crunch(guard.stopper(), 4), Ok(6));
//! }
//! assert_eq!(crunch(&s, 4), Err(Stopped::new(stopper::REASON_REQUESTED)));
//! // ...unless disarmed; and an API that wants a stopper can be given one nobody can stop.
//! assert_eq!(crunch(&Stopper::never(), 4), Ok(6));
//! ```
//!
//! # Callbacks and their guard
//!
//! [`Stopper::on_stop`] runs a closure once, on the thread that stops the stopper. It returns
//! a [`Callback`] guard, and the callback stays registered only while the guard lives:
//! dropping it unregisters (waiting if the callback is running on another thread right now),
//! which is what makes it safe for the callback to borrow the caller's state through an `Arc`
//! that the caller tears down after. The guard is `#[must_use]`, so a bare
//! `s.on_stop(f);` warns; but **`let _ = s.on_stop(f);` drops the guard on that line** (a `_`
//! pattern binds nothing) and the callback is gone before it could run. Keep the guard in a
//! named binding (`let _cb = ...`), or call [`Callback::forget`] to leave the callback
//! registered for the stopper's lifetime.
//!
//! ```
//! use std::sync::atomic::{AtomicI32, Ordering};
//! use std::sync::Arc;
//!
//! let s = stopper::Stopper::new();
//! let seen = Arc::new(AtomicI32::new(0));
//!
//! let _ = s.on_stop(|_| unreachable!("unregistered on the line that registered it"));
//! let seen2 = Arc::clone(&seen);
//! let _kept = s.on_stop(move |reason| seen2.store(reason, Ordering::SeqCst)); // lives to the end of scope
//! let seen3 = Arc::clone(&seen);
//! s.on_stop(move |reason| { seen3.fetch_add(reason * 10, Ordering::SeqCst); }).forget();
//!
//! s.stop(2);
//! assert_eq!(seen.load(Ordering::SeqCst), 22);
//! ```
//!
//! Forgetting the guard altogether is caught by the compiler (`unused_must_use`; here made an
//! error):
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let s = stopper::Stopper::new();
//! s.on_stop(|_| println!("stopped")); // error: unused `Callback` that must be used
//! ```
//!
//! # What is in the box
//!
//! * [`Stopper`]: stop once with a reason ([`REASON_REQUESTED`], [`REASON_DEADLINE`],
//!   [`REASON_SIGNAL`] or your own), [`is_set`](Stopper::is_set) in one atomic load, an inline
//!   flag byte for C ([`flag_ptr`](Stopper::flag_ptr)), blocking waits with a time-out, and
//!   [`wait_any`] over several stoppers.
//! * async: [`Stopper::stopped`] / [`Stopper::stopped_owned`], runtime-free futures.
//! * [`Stopper::check`] and its error [`Stopped`]; [`Stopper::drop_guard`] and [`DropGuard`];
//!   [`Stopper::never`].
//! * Callbacks ([`Stopper::on_stop`], and [`Stopper::on_stop_raw`] without allocation), run in
//!   registration order; a panicking callback never leaves a stop half done.
//! * Children and linked stoppers ([`Stopper::child`], [`Stopper::linked`]): stopped with
//!   their parent's reason, never the other way round.
//! * Deadlines ([`Stopper::stop_after`], [`Stopper::remaining`]) on one shared timer thread
//!   that exists only while a deadline is pending.
//! * Workers: threads that run inside a stopper ([`Stopper::spawn`], [`Stopper::enter`],
//!   [`current`]) and [`Stopper::join`]; an interrupt [`Hook`] for a thread blocked where no
//!   flag is checked, [`install_signal`] / [`stop_on_signal`] for process signals.
//! * Event loops: [`Stopper::fd`], an eventfd readable from the stop on; [`wait_fd`].
//! * [`Channel`]: a bounded or unbounded queue whose blocked `send`/`recv` a stop ends.
//! * Processes: [`open_shared`] (one stopper for several processes, in shared memory) and
//!   [`watch_process`].
//! * The C ABI (module [`ffi`], header `include/stopper.h`) that the C, C++ and Python
//!   bindings use.
//!
//! Linux only (futexes, eventfd, POSIX shared memory). The crate has no optional features and
//! no runtime dependency; the minimum Rust version is in `Cargo.toml`.

#![deny(unsafe_op_in_unsafe_fn)]

mod base;
mod ext;
pub mod ffi;
mod token;

pub use base::status::Status;
pub use ext::service;

pub use base::signal::{install as install_signal, interrupt as interrupt_thread};
pub use ext::chan::{Channel, MAX_CAPACITY as CHANNEL_MAX_CAPACITY};
pub use ext::fdwait::wait_fd;
pub use ext::process::{watch_process, watch_process_group};
pub use ext::service::stop_on_signal;
pub use ext::shared::{
    open_shared, unlink_shared, validate_shared_name, watcher_running, MAX_OPEN_SHARED,
};
pub use ext::workers::{current, Hook, HookFn, Scope};
pub use token::callbacks::{Callback, RawFn};
pub use token::future::{StoppedFuture, StoppedOwned};
pub use token::guard::{DropGuard, Stopped};
pub use token::stopper::{
    wait_any, Stopper, Wait, REASON_DEADLINE, REASON_REQUESTED, REASON_SIGNAL,
};

/// The calling thread's id as hooks receive it (`pthread_self()`).
pub fn thread_id() -> u64 {
    base::sys::thread_id()
}

/// Nanoseconds on the monotonic clock that every timeout is measured on.
pub fn now_ns() -> u64 {
    base::sys::now_ns()
}

/// The crate version ("major.minor.patch").
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `major << 16 | minor` of this build, as `stopper_abi_version()` reports it.
pub fn abi_version() -> u32 {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major << 16) | minor
}
