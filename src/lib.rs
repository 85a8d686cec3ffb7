//! # stopper
//!
//! Stop a thread safely and promptly, from any language: cooperative stop tokens whose waits
//! wake at once (no polling interval anywhere), callbacks, child tokens, deadlines, worker
//! join, a descriptor for event loops, a stoppable channel, and an interrupt hook that
//! reaches a thread blocked where no flag is checked.
//!
//! This crate is a safe Rust core ([`Stopper`], [`Channel`], [`Scope`], [`Callback`]…) and a
//! thin C ABI over it (module `ffi`, header `include/stopper.h`), used from C, from C++
//! through `bindings/cpp/stopper.hpp` and from Python through `bindings/python`.
//!
//! ```
//! use std::time::Duration;
//! let s = stopper::Stopper::new();
//! let worker = {
//!     let s = s.clone();
//!     std::thread::spawn(move || {
//!         // Sleeps up to 10 s, but wakes the moment `s` stops.
//!         s.wait(Some(Duration::from_secs(10)))
//!     })
//! };
//! s.stop(0);
//! assert_eq!(worker.join().unwrap(), stopper::Wait::Stopped);
//! assert_eq!(s.reason(), stopper::REASON_REQUESTED);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod chan;
mod fdwait;
pub mod ffi;
mod process;
mod rc;
pub mod service;
mod shared;
mod signal;
mod slab;
mod status;
mod stopper;
mod sync;
mod sys;
mod workers;

pub use chan::{Channel, MAX_CAPACITY as CHANNEL_MAX_CAPACITY};
pub use fdwait::wait_fd;
pub use process::watch_process;
pub use shared::{
    open_shared, unlink_shared, validate_shared_name, watcher_running, MAX_OPEN_SHARED,
};
pub use signal::{install as install_signal, interrupt as interrupt_thread, stop_on_signal};
pub use status::Status;
pub use stopper::{wait_any, Callback, RawFn, Stopper, Wait};
pub use workers::{current, Hook, HookFn, Scope};

/// Reason recorded when a caller stops with reason 0.
pub const REASON_REQUESTED: i32 = 1;
/// Reason recorded by a deadline armed with reason 0.
pub const REASON_DEADLINE: i32 = 2;
/// Reason recorded by a stop on a process signal.
pub const REASON_SIGNAL: i32 = 3;

/// The calling thread's id as hooks receive it (`pthread_self()`).
pub fn thread_id() -> u64 {
    sys::thread_id()
}

/// Nanoseconds on the monotonic clock that every timeout is measured on.
pub fn now_ns() -> u64 {
    sys::now_ns()
}

/// The crate version ("major.minor.patch").
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `major << 16 | minor` of this build, as `stopper_abi_version()` reports it.
pub fn abi_version() -> u32 {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major << 16) | minor
}
