//! stopper_new … stopper_wait_any, stopper_strerror.

use std::ffi::c_char;

use super::{
    boundary, deadline, give, put, stopper, stopper_arg, Borrowed, STOPPER_EINVAL, STOPPER_STOPPED,
    STOPPER_TIMEDOUT,
};
use crate::{Status, Stopper};

/// Creates a running stopper. The caller owns the returned reference (release it with
/// `stopper_release`). NULL with `errno` = `ENOMEM` when memory cannot be had (the library
/// never aborts its host).
#[no_mangle]
pub extern "C" fn stopper_new() -> *mut stopper {
    boundary!({ give_or_null(Stopper::try_new()) })
}

/// A new reference for C, or NULL with `errno` = `ENOMEM`.
fn give_or_null(s: Result<Stopper, Status>) -> *mut stopper {
    match s {
        Ok(s) => give(s),
        Err(_) => {
            crate::base::sys::set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// Creates a child of `parent`: stopped when `parent` is (recording the parent's reason),
/// never the other way round; born stopped when `parent` already is. The child keeps its
/// parent alive; releasing the child unlinks it from the parent. The caller owns the returned
/// reference. NULL `parent`: returns NULL (`STOPPER_EINVAL`). Out of memory: NULL with
/// `errno` = `ENOMEM`, and `parent` is left as it was.
#[no_mangle]
pub extern "C" fn stopper_new_child(parent: *mut stopper) -> *mut stopper {
    boundary!({
        let p = stopper_arg!(parent, std::ptr::null_mut());
        give_or_null(p.try_child())
    })
}

/// Creates a stopper stopped when any of `parents[0..n]` is, with that parent's reason.
/// `n == 0` gives a plain running stopper. NULL `parents` with `n > 0`, or a NULL entry:
/// returns NULL. The caller owns the returned reference. Out of memory: NULL with `errno` =
/// `ENOMEM`, and no parent keeps a link.
#[no_mangle]
pub extern "C" fn stopper_new_linked(parents: *const *mut stopper, n: usize) -> *mut stopper {
    boundary!({
        if n == 0 {
            return give_or_null(Stopper::try_new());
        }
        if parents.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller passes an array of `n` pointers.
        let list = unsafe { std::slice::from_raw_parts(parents, n) };
        let mut borrowed: Vec<Borrowed> = Vec::new();
        let mut refs: Vec<&Stopper> = Vec::new();
        if borrowed.try_reserve_exact(n).is_err() || refs.try_reserve_exact(n).is_err() {
            return give_or_null(Err(Status::NoMem));
        }
        for &p in list {
            borrowed.push(stopper_arg!(p, std::ptr::null_mut()));
        }
        refs.extend(borrowed.iter().map(|b| &**b));
        give_or_null(Stopper::try_linked(&refs))
    })
}

/// Adds a reference to `s` and returns `s` (NULL gives NULL). The caller owns the new
/// reference.
#[no_mangle]
pub extern "C" fn stopper_retain(s: *mut stopper) -> *mut stopper {
    boundary!({
        let b = stopper_arg!(s, std::ptr::null_mut());
        give((*b).clone())
    })
}

/// Drops one reference to `s`; the last one frees it (and closes its descriptor). NULL is
/// ignored.
#[no_mangle]
pub extern "C" fn stopper_release(s: *mut stopper) {
    boundary!({
        if !s.is_null() {
            // SAFETY: the caller gives back one reference it owns.
            drop(unsafe { Stopper::from_raw(s as *const crate::token::inner::Inner) });
        }
    })
}

/// Stops `s`, recording `reason` (0 becomes `STOPPER_REASON_REQUESTED`; any other value,
/// negative too, is recorded as given). Before returning, on the calling thread: wakes every
/// waiter, stops every child, marks the descriptor readable, calls the interrupt hooks of the
/// workers inside, then runs the registered callbacks in registration order. Returns 1 when
/// this call stopped it, 0 when it was already stopped, `STOPPER_EINVAL` for NULL.
/// Everything written before this call is visible to a thread that then sees
/// `stopper_is_set(s)` return true.
#[no_mangle]
pub extern "C" fn stopper_stop(s: *mut stopper, reason: i32) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        i32::from(s.stop(reason))
    })
}

/// Whether `s` is stopped: one atomic load (acquire), no lock, no system call. NULL: false.
#[no_mangle]
pub extern "C" fn stopper_is_set(s: *const stopper) -> bool {
    boundary!({
        let s = stopper_arg!(s, false);
        s.is_set()
    })
}

static NEVER_STOPPED: u8 = 0;

/// The address of `s`'s stop flag byte, nonzero once stopped, valid while the caller holds a
/// reference; read it with `stopper_flag_is_set`. NULL gives the address of a static byte that
/// stays zero.
#[no_mangle]
pub extern "C" fn stopper_flag(s: *const stopper) -> *const u8 {
    boundary!({
        let s = stopper_arg!(s, &NEVER_STOPPED as *const u8);
        s.flag_ptr()
    })
}

/// The reason recorded by the stop that won; 0 while running (and for NULL).
#[no_mangle]
pub extern "C" fn stopper_reason(s: *const stopper) -> i32 {
    boundary!({
        let s = stopper_arg!(s, 0);
        s.reason()
    })
}

/// Blocks until `s` is stopped (`STOPPER_STOPPED`) or `timeout_ns` passes
/// (`STOPPER_TIMEDOUT`; negative: no limit). Wakes on the stop at once: no polling. NULL is a
/// stopper that never stops: it sleeps `timeout_ns` and returns `STOPPER_TIMEDOUT`, or
/// returns `STOPPER_EINVAL` at once when `timeout_ns` is negative.
#[no_mangle]
pub extern "C" fn stopper_wait(s: *const stopper, timeout_ns: i64) -> i32 {
    boundary!({
        let dl = deadline(timeout_ns);
        match unsafe { super::borrow(s) } {
            None => match dl {
                None => STOPPER_EINVAL,
                Some(d) => {
                    crate::base::sys::sleep_until(d);
                    STOPPER_TIMEDOUT
                }
            },
            Some(s) => match s.wait_deadline(dl) {
                crate::Wait::Stopped => STOPPER_STOPPED,
                crate::Wait::TimedOut => STOPPER_TIMEDOUT,
            },
        }
    })
}

/// Blocks until any of `list[0..n]` is stopped: returns `STOPPER_STOPPED` and writes the
/// index of a stopped entry to `*which` (`which` may be NULL), or `STOPPER_TIMEDOUT`. NULL
/// entries never stop; when every entry is NULL (or `n == 0`) it sleeps `timeout_ns`, or returns
/// `STOPPER_EINVAL` at once when `timeout_ns` is negative. NULL `list` with `n > 0`:
/// `STOPPER_EINVAL`. `STOPPER_ENOMEM` when memory for the wait cannot be had.
#[no_mangle]
pub extern "C" fn stopper_wait_any(
    list: *const *const stopper,
    n: usize,
    timeout_ns: i64,
    which: *mut usize,
) -> i32 {
    boundary!({
        if list.is_null() && n > 0 {
            return STOPPER_EINVAL;
        }
        let raw: &[*const stopper] = if n == 0 {
            &[]
        } else {
            // SAFETY: the caller passes an array of `n` pointers.
            unsafe { std::slice::from_raw_parts(list, n) }
        };
        let mut borrowed: Vec<Option<Borrowed>> = Vec::new();
        let mut refs: Vec<Option<&Stopper>> = Vec::new();
        if borrowed.try_reserve_exact(n).is_err() || refs.try_reserve_exact(n).is_err() {
            return Status::NoMem.code();
        }
        // SAFETY: each entry is NULL or a stopper the caller holds.
        borrowed.extend(raw.iter().map(|&p| unsafe { super::borrow(p) }));
        let dl = deadline(timeout_ns);
        if borrowed.iter().all(Option::is_none) {
            return match dl {
                None => STOPPER_EINVAL,
                Some(d) => {
                    crate::base::sys::sleep_until(d);
                    STOPPER_TIMEDOUT
                }
            };
        }
        refs.extend(borrowed.iter().map(|b| b.as_deref()));
        match crate::token::stopper::try_wait_any(&refs, dl) {
            Ok(Some(i)) => {
                put(which, i);
                STOPPER_STOPPED
            }
            Ok(None) => STOPPER_TIMEDOUT,
            Err(st) => st.code(),
        }
    })
}

/// A static, never-NULL description of a status code ("unknown status code" for a value that
/// is not one).
#[no_mangle]
pub extern "C" fn stopper_strerror(code: i32) -> *const c_char {
    boundary!({
        Status::from_code(code)
            .map_or(c"unknown status code", Status::c_message)
            .as_ptr()
    })
}
