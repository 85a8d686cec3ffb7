//! Processes: shared stoppers, TERM→KILL escalation, stop on a signal.

use std::ffi::{c_char, CStr};

use super::{boundary, give, stopper, stopper_arg, STOPPER_EINVAL};

/// The most shared stoppers one process can have open at once; one more makes
/// `stopper_open_shared` return NULL with `errno` = `EMFILE`.
pub const STOPPER_MAX_OPEN_SHARED: i32 = 127;

/// Creates or opens the shared stopper `name`: its stop flag and reason live in a POSIX
/// shared-memory object (mode 0600), so processes, also ones written in another language,
/// share one stop: a stop in any process wakes waiters in all of them, and each process's own
/// callbacks, hooks, children and descriptor fire. `name` matches `[A-Za-z0-9_.-]{1,200}` (not
/// `.` or `..`). In one process, opening the same object twice gives the same stopper. The
/// caller owns the returned reference. Returns NULL with `errno` set on failure: `EINVAL` for a
/// bad name or an object that is corrupt, truncated, not this user's or open to others (never
/// trusted), `EMFILE` past `STOPPER_MAX_OPEN_SHARED` (nothing is created then), `ENOSYS` on a
/// kernel without `futex_waitv` (Linux < 5.16), else the system call's cause.
#[no_mangle]
pub extern "C" fn stopper_open_shared(name: *const c_char) -> *mut stopper {
    boundary!({
        let Some(name) = c_name(name) else {
            return std::ptr::null_mut();
        };
        match crate::open_shared(name) {
            Ok(s) => give(s),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Removes the name of a shared stopper; processes that opened it keep theirs, and the next
/// `stopper_open_shared` of the name creates a fresh one. Returns `STOPPER_OK`,
/// `STOPPER_EINVAL` (and `errno` = `EINVAL`: bad or NULL name), or `STOPPER_EOS` with `errno` (`ENOENT`: no such object).
#[no_mangle]
pub extern "C" fn stopper_unlink_shared(name: *const c_char) -> i32 {
    boundary!({
        let Some(name) = c_name(name) else {
            return einval();
        };
        with_errno(crate::unlink_shared(name).code())
    })
}

/// When `s` stops, asks process `pid` to end with `SIGTERM`, then kills it with `SIGKILL` if
/// it still runs after `grace_ns` (negative: never killed), through a pidfd opened now, so a
/// reused pid is never hit. The process is not reaped (its parent's `waitpid` still works).
/// Returns `STOPPER_OK` (also when `pid` already ended), `STOPPER_STOPPED` when `s` is already
/// stopped (the escalation starts at once), `STOPPER_EINVAL` (and `errno` = `EINVAL`) for NULL `s` or `pid <= 0`,
/// `STOPPER_EOS` with `errno` when the pidfd cannot be opened.
#[no_mangle]
pub extern "C" fn stopper_watch_process(s: *mut stopper, pid: i32, grace_ns: i64) -> i32 {
    boundary!({
        let s = stopper_arg!(s, einval());
        with_errno(crate::watch_process(&s, pid, grace_ns).code())
    })
}

/// Stops `s` with `STOPPER_REASON_SIGNAL` when the process receives `signo` (`SIGINT`,
/// `SIGTERM`…). The handler only does async-signal-safe work; the stop itself, with its
/// callbacks, runs on the library's service thread. `s` is kept alive until it stops. Like
/// `stopper_install_signal`, it refuses (`STOPPER_EINVAL`) a signal that already has a
/// disposition other than the default or the library's own. Returns `STOPPER_OK`,
/// `STOPPER_STOPPED` when `s` is already stopped, `STOPPER_EINVAL` (and `errno` = `EINVAL`) for
/// NULL `s` or a refused signal.
#[no_mangle]
pub extern "C" fn stopper_stop_on_signal(s: *mut stopper, signo: i32) -> i32 {
    boundary!({
        let s = stopper_arg!(s, einval());
        with_errno(crate::stop_on_signal(&s, signo).code())
    })
}

/// `STOPPER_EINVAL` with `errno` = `EINVAL`, as the processes functions report bad input.
fn einval() -> i32 {
    crate::sys::set_errno(libc::EINVAL);
    STOPPER_EINVAL
}

fn with_errno(code: i32) -> i32 {
    if code == STOPPER_EINVAL {
        einval()
    } else {
        code
    }
}

fn c_name<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        crate::sys::set_errno(libc::EINVAL);
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    match unsafe { CStr::from_ptr(name) }.to_str() {
        Ok(s) => Some(s),
        Err(_) => {
            crate::sys::set_errno(libc::EINVAL);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_limit_is_the_core_limit() {
        assert_eq!(
            super::STOPPER_MAX_OPEN_SHARED as usize,
            crate::MAX_OPEN_SHARED
        );
    }
}
