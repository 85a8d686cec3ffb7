//! The C ABI: a thin shim over the safe core. Each export is a plain
//! `#[no_mangle] pub extern "C" fn` whose body runs inside one panic boundary
//! (`boundary!`), checks its arguments (`stopper_arg!`…), converts, and calls the core.
//! Nothing here decides behaviour; cbindgen reads these signatures and doc comments into
//! `include/stopper.h`.
//!
//! Ownership, in one fixed sentence form used in every doc comment: "The caller owns the
//! returned reference" (release it once) / "borrowed" (valid while the caller holds a
//! reference).

#![allow(non_camel_case_types)]
// The C boundary takes raw pointers by design: every export checks them (NULL, and the
// contract's rules) before it dereferences anything, and cannot be `unsafe fn` without
// making every C caller's call unsafe in Rust tests too. This is the one place that says so.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::mem::ManuallyDrop;

use crate::token::inner::Inner;
use crate::token::stopper::Stopper;
use crate::Channel;

mod callbacks;
mod chan;
mod core;
mod process;
mod time;
mod version;
mod workers;

pub use self::callbacks::*;
pub use self::chan::*;
pub use self::core::*;
pub use self::process::*;
pub use self::time::*;
pub use self::version::*;
pub use self::workers::*;

/// Done.
pub const STOPPER_OK: i32 = 0;
/// The stopper was (or already is) stopped.
pub const STOPPER_STOPPED: i32 = 1;
/// The time limit passed first.
pub const STOPPER_TIMEDOUT: i32 = 2;
/// The channel is closed (and, for receive, drained).
pub const STOPPER_CLOSED: i32 = 3;
/// Bad argument: NULL where one is needed, mismatched exit, unknown id.
pub const STOPPER_EINVAL: i32 = -1;
/// Out of memory.
pub const STOPPER_ENOMEM: i32 = -2;
/// The call would wait for the calling thread itself (a worker joining its own stopper).
pub const STOPPER_EDEADLK: i32 = -3;
/// A system call failed; `errno` holds its cause.
pub const STOPPER_EOS: i32 = -4;
/// A bug inside the library was caught at the boundary; nothing was unwound into the caller.
pub const STOPPER_EINTERNAL: i32 = -5;

/// Reason recorded when a caller stops with reason 0.
pub const STOPPER_REASON_REQUESTED: i32 = 1;
/// Reason recorded by a deadline (`stopper_stop_after` with reason 0).
pub const STOPPER_REASON_DEADLINE: i32 = 2;
/// Reason recorded by a stop on a process signal.
pub const STOPPER_REASON_SIGNAL: i32 = 3;

/// A stop token: opaque, reference-counted, thread-safe. Starts running and is stopped at most
/// once, for good. Every function may be called on it from any thread.
pub struct stopper {
    _private: [u8; 0],
}

/// A stoppable multi-producer multi-consumer queue of 64-bit items: opaque, reference-counted,
/// thread-safe.
pub struct stopper_chan {
    _private: [u8; 0],
}

/// What a boundary returns when it caught a panic (a bug inside the library).
pub(crate) trait Fallback {
    fn fallback() -> Self;
}

impl Fallback for i32 {
    fn fallback() -> Self {
        STOPPER_EINTERNAL
    }
}
impl Fallback for i64 {
    fn fallback() -> Self {
        STOPPER_EINTERNAL as i64
    }
}
impl Fallback for u64 {
    fn fallback() -> Self {
        0
    }
}
impl Fallback for u32 {
    fn fallback() -> Self {
        0
    }
}
impl Fallback for usize {
    fn fallback() -> Self {
        0
    }
}
impl Fallback for bool {
    fn fallback() -> Self {
        false
    }
}
impl Fallback for () {
    fn fallback() -> Self {}
}
impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        std::ptr::null_mut()
    }
}
impl<T> Fallback for *const T {
    fn fallback() -> Self {
        std::ptr::null()
    }
}

/// The one panic boundary: runs the body, and turns a panic into the return type's fallback
/// (`STOPPER_EINTERNAL`, NULL, false, 0) instead of unwinding into C.
macro_rules! boundary {
    ($body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $crate::ffi::Fallback::fallback(),
        }
    };
}
pub(crate) use boundary;

/// A stopper argument that must not be NULL: returns `$ret` (default `STOPPER_EINVAL`) when it is.
macro_rules! stopper_arg {
    ($p:expr) => {
        stopper_arg!($p, $crate::ffi::STOPPER_EINVAL)
    };
    ($p:expr, $ret:expr) => {
        // SAFETY: the C caller passes NULL or a stopper it holds a reference to.
        match unsafe { $crate::ffi::borrow($p) } {
            Some(s) => s,
            None => return $ret,
        }
    };
}
pub(crate) use stopper_arg;

/// A borrowed stopper: the C caller's reference, used without touching the count.
pub(crate) struct Borrowed(ManuallyDrop<Stopper>);

impl std::ops::Deref for Borrowed {
    type Target = Stopper;
    fn deref(&self) -> &Stopper {
        &self.0
    }
}

/// Borrows the stopper behind `p` (NULL gives `None`).
///
/// # Safety
/// `p` is NULL or a live `stopper *` the caller holds a reference to for the borrow's length.
pub(crate) unsafe fn borrow(p: *const stopper) -> Option<Borrowed> {
    if p.is_null() {
        None
    } else {
        // SAFETY: a `stopper *` is an `Arc<Inner>` pointer; ManuallyDrop keeps the count.
        Some(Borrowed(ManuallyDrop::new(unsafe {
            Stopper::from_raw(p as *const Inner)
        })))
    }
}

/// Hands a new reference to C.
pub(crate) fn give(s: Stopper) -> *mut stopper {
    s.into_raw() as *mut stopper
}

/// A borrowed channel.
pub(crate) struct BorrowedChan(ManuallyDrop<crate::base::rc::Arc<Channel>>);

impl std::ops::Deref for BorrowedChan {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.0
    }
}

/// # Safety
/// `p` is NULL or a live `stopper_chan *` the caller holds a reference to.
pub(crate) unsafe fn borrow_chan(p: *const stopper_chan) -> Option<BorrowedChan> {
    if p.is_null() {
        None
    } else {
        // SAFETY: a `stopper_chan *` is an `Arc<Channel>` pointer.
        Some(BorrowedChan(ManuallyDrop::new(unsafe {
            crate::base::rc::Arc::from_raw(p as *const Channel)
        })))
    }
}

/// A relative timeout in nanoseconds (negative: no limit) as an absolute monotonic deadline.
pub(crate) fn deadline(timeout_ns: i64) -> Option<u64> {
    crate::base::sys::deadline_after(timeout_ns)
}

/// Writes an output only when the caller gave a place for it.
pub(crate) fn put<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the C caller passes NULL or a valid, writable pointer.
        unsafe { out.write(v) };
    }
}

/// Called by the dynamic loader when the library is unloaded (dlclose) or the process exits:
/// joins the idle service thread, so no thread keeps running the library's code, and gives
/// back the signals whose handler is the library's (a signal must never reach unmapped code).
extern "C" fn stopper_on_unload() {
    crate::ext::service::shutdown();
    crate::base::signal::uninstall_all();
}

#[used]
#[link_section = ".fini_array"]
static STOPPER_FINI: extern "C" fn() = stopper_on_unload;

#[cfg(test)]
mod tests {
    use super::*;

    fn caught<T: Fallback>() -> T {
        boundary!({
            if true {
                panic!("a bug inside the library");
            }
            unreachable!()
        })
    }

    #[test]
    fn the_boundary_turns_a_panic_into_the_fallback() {
        assert_eq!(caught::<i32>(), STOPPER_EINTERNAL);
        assert_eq!(caught::<i64>(), STOPPER_EINTERNAL as i64);
        assert!(!caught::<bool>());
        assert_eq!(caught::<u64>(), 0);
        assert_eq!(caught::<usize>(), 0);
        assert!(caught::<*mut stopper>().is_null());
        assert!(caught::<*const u8>().is_null());
        caught::<()>();
    }
}
