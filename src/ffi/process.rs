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
/// kernel without `futex_waitv` (Linux < 5.16), `EAGAIN` when this process's watcher thread
/// cannot be started (never a stopper deaf to other processes), else the system call's cause.
/// A failed call leaves nothing behind (an object it created is removed again).
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
/// reused pid is never hit. The process is not reaped (its parent's `waitpid` still works). A
/// watch ends when its process does: a process that ends before the stop (or before the grace)
/// leaves no descriptor and no thread behind. Returns `STOPPER_OK` (also when `pid` already
/// ended), `STOPPER_STOPPED` when `s` is already stopped (the escalation starts at once),
/// `STOPPER_EINVAL` (and `errno` = `EINVAL`) for NULL `s` or `pid <= 0`, `STOPPER_EOS` with
/// `errno`: `EPERM` when the caller may not signal `pid` (asked now, with signal 0, not found
/// out at the stop), `EAGAIN` when no thread can be started to watch it, else why the pidfd
/// cannot be opened.
#[no_mangle]
pub extern "C" fn stopper_watch_process(s: *mut stopper, pid: i32, grace_ns: i64) -> i32 {
    boundary!({
        let s = stopper_arg!(s, einval());
        with_errno(crate::watch_process(&s, pid, grace_ns).code())
    })
}

/// Like `stopper_watch_process`, for the whole process group that `pid` leads (`pid` must be
/// its group's leader, as after `setpgid(0, 0)` or `setsid()` in the child): when `s` stops,
/// `SIGTERM` goes to every process of the group, and after `grace_ns` (negative: never)
/// `SIGKILL` to what remains of it. Both go through the leader's pidfd with
/// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9 and later), so no other group is ever signalled,
/// even one that reuses the id. A leader that ends before the stop ends the watch: the group
/// is never signalled after that. After the stop, the `SIGKILL` reaches members that remain
/// when the grace passes, also if the leader is gone by then. Nothing is reaped. Returns
/// `STOPPER_OK` (also when `pid` already ended), `STOPPER_STOPPED` when `s` is already stopped
/// (the escalation starts at once), `STOPPER_EINVAL` (and `errno` = `EINVAL`) for NULL `s`,
/// `pid <= 0` or a `pid` that does not lead its group, `STOPPER_EOS` with `errno`: `EPERM`
/// when the caller may signal no process of the group, `EINVAL` (or `ENOSYS`) when the kernel
/// cannot signal a group through a pidfd (before Linux 6.9: there is no racy `killpg`
/// fallback), `EAGAIN` when no thread can be started to watch it.
#[no_mangle]
pub extern "C" fn stopper_watch_process_group(s: *mut stopper, pid: i32, grace_ns: i64) -> i32 {
    boundary!({
        let s = stopper_arg!(s, einval());
        with_errno(crate::watch_process_group(&s, pid, grace_ns).code())
    })
}

/// Stops `s` with `STOPPER_REASON_SIGNAL` when the process receives `signo` (`SIGINT`,
/// `SIGTERM`…). The handler only does async-signal-safe work; the stop itself, with its
/// callbacks, runs on the library's service thread. `s` is kept alive until it stops. Like
/// `stopper_install_signal`, it refuses (`STOPPER_EINVAL`) a signal that already has a
/// disposition other than the default or the library's own. Returns `STOPPER_OK`,
/// `STOPPER_STOPPED` when `s` is already stopped, `STOPPER_EINVAL` (and `errno` = `EINVAL`) for
/// NULL `s` or a refused signal, `STOPPER_EOS` with `errno` (`EAGAIN`) when the service thread
/// cannot be started. A call that fails leaves the signal's disposition as it found it.
#[no_mangle]
pub extern "C" fn stopper_stop_on_signal(s: *mut stopper, signo: i32) -> i32 {
    boundary!({
        let s = stopper_arg!(s, einval());
        with_errno(crate::stop_on_signal(&s, signo).code())
    })
}

/// `STOPPER_EINVAL` with `errno` = `EINVAL`, as the processes functions report bad input.
fn einval() -> i32 {
    crate::base::sys::set_errno(libc::EINVAL);
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
        crate::base::sys::set_errno(libc::EINVAL);
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    match unsafe { CStr::from_ptr(name) }.to_str() {
        Ok(s) => Some(s),
        Err(_) => {
            crate::base::sys::set_errno(libc::EINVAL);
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
