//! Processes: the recipe's `terminate()`, `join(timeout)`, `kill()` escalation as one call,
//! through a pidfd opened at watch time, so a reused pid is never hit.

use std::os::fd::AsRawFd;

use crate::service;
use crate::status::Status;
use crate::stopper::Stopper;
use crate::sys;

/// When `stopper` stops, asks process `pid` to end with `SIGTERM`, then kills it with
/// `SIGKILL` if it still runs after `grace_ns` (negative: never). The process is not reaped.
/// `Ok` (also when `pid` already ended), `Stopped` when the stopper was already stopped (the
/// escalation starts at once), `Inval` for `pid <= 0`, `Os` when the pidfd cannot be opened.
pub fn watch_process(stopper: &Stopper, pid: i32, grace_ns: i64) -> Status {
    if pid <= 0 {
        return Status::Inval;
    }
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Status::Ok, // already gone
        Err(e) => {
            sys::set_errno(e.raw_os_error().unwrap_or(libc::EIO));
            return Status::Os;
        }
    };
    let was_stopped = stopper.is_set();
    stopper.on_stop(move |_| escalate(pidfd, grace_ns)).forget();
    if was_stopped {
        Status::Stopped
    } else {
        Status::Ok
    }
}

fn escalate(pidfd: std::os::fd::OwnedFd, grace_ns: i64) {
    let fd = pidfd.as_raw_fd();
    if sys::pidfd_exited(fd) {
        return;
    }
    let _ = sys::pidfd_send_signal(fd, libc::SIGTERM);
    if grace_ns < 0 {
        return;
    }
    let due = sys::now_ns().saturating_add(grace_ns as u64);
    let kill = service::Timer::Task(Box::new(move || {
        let fd = pidfd.as_raw_fd();
        if !sys::pidfd_exited(fd) {
            let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
        }
    }));
    let _ = service::schedule(due, kill);
}
