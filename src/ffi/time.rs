//! Deadlines, the stop descriptor, waiting on a descriptor.

use super::{boundary, deadline, put, stopper, stopper_arg, STOPPER_EOS, STOPPER_OK};
use crate::Status;

/// Arms a deadline: `s` stops with `reason` (0 becomes `STOPPER_REASON_DEADLINE`) `delay_ns`
/// from now, fired by the library's service thread. Replaces an earlier deadline of `s`; a
/// negative `delay_ns` disarms. `delay_ns == 0` is a deadline already passed: `s` is stopped
/// with `reason` on the calling thread (callbacks included) before the call returns, so a
/// `stopper_stop` made after it cannot win the reason. A deadline keeps `s` alive until it
/// fires or is disarmed.
/// Returns `STOPPER_OK`, `STOPPER_STOPPED` when `s` is already stopped, `STOPPER_EOS` when the
/// service thread could not be started, `STOPPER_ENOMEM` when memory cannot be had (the earlier
/// deadline is then disarmed), `STOPPER_EINVAL` for NULL.
#[no_mangle]
pub extern "C" fn stopper_stop_after(s: *mut stopper, delay_ns: i64, reason: i32) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        s.stop_after_ns(delay_ns, reason).code()
    })
}

/// Nanoseconds left before the earliest deadline of `s` and its ancestors: -1 when there is
/// none (and for NULL), 0 when `s` is stopped, else at least 1. Other negative values are
/// status codes.
#[no_mangle]
pub extern "C" fn stopper_remaining_ns(s: *const stopper) -> i64 {
    boundary!({
        let s = stopper_arg!(s, -1);
        s.remaining_ns()
    })
}

/// A close-on-exec descriptor owned by `s` (the caller neither reads nor closes it) that polls
/// readable from the moment `s` stops, for good: wait on a stop with `select`, `poll`, `epoll`,
/// libuv, asyncio's `add_reader`… Created on first use; closed with the last reference to `s`.
/// Returns the descriptor (>= 0), or a negative status: `STOPPER_EINVAL` for NULL,
/// `STOPPER_ENOMEM` when the library's memory for it cannot be had, `STOPPER_EOS` with `errno`
/// when the descriptor cannot be created.
#[no_mangle]
pub extern "C" fn stopper_fd(s: *mut stopper) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        match s.fd() {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error().is_none() => Status::NoMem.code(),
            Err(_) => STOPPER_EOS,
        }
    })
}

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`…) or `s` stops, or
/// `timeout_ns` passes (negative: no limit). Returns `STOPPER_OK` with poll's answer in
/// `*revents` (`revents` may be NULL), `STOPPER_STOPPED` (checked first, so a busy descriptor
/// never hides a stop), or `STOPPER_TIMEDOUT`. NULL `s` never stops. A negative `fd`:
/// `STOPPER_EINVAL`; a closed `fd`: `STOPPER_EOS` with `errno` = `EBADF`.
#[no_mangle]
pub extern "C" fn stopper_wait_fd(
    s: *const stopper,
    fd: i32,
    events: i16,
    timeout_ns: i64,
    revents: *mut i16,
) -> i32 {
    boundary!({
        // SAFETY: NULL or a stopper the caller holds.
        let s = unsafe { super::borrow(s) };
        match crate::wait_fd(s.as_deref(), fd, events, deadline(timeout_ns)) {
            Ok(r) => {
                put(revents, r);
                STOPPER_OK
            }
            Err(st) => Status::code(st),
        }
    })
}
