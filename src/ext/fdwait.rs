//! Waiting on a descriptor and a stop together: the recipe's "blocking call with a timeout,
//! then look at the flag" loop without the loop.

use std::os::fd::RawFd;

use crate::base::status::Status;
use crate::base::sys;
use crate::token::stopper::Stopper;

/// Waits until `fd` is ready for `events` (poll flags); returns poll's `revents`, or
/// `Err(Stopped)` (checked first, so a busy descriptor never hides a stop), `Err(TimedOut)`,
/// `Err(Inval)` for a negative fd, `Err(Os)` with `errno` set (`EBADF` for a closed fd).
pub fn wait_fd(
    stopper: Option<&Stopper>,
    fd: RawFd,
    events: i16,
    deadline: Option<u64>,
) -> Result<i16, Status> {
    if fd < 0 {
        return Err(Status::Inval);
    }
    let stopped = || stopper.is_some_and(|s| s.is_set());
    if stopped() {
        return Err(Status::Stopped);
    }
    crate::base::fork::after_fork_check();
    let stop_fd = match stopper {
        Some(s) => Some(s.fd().map_err(|_| Status::Os)?),
        None => None,
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: stop_fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if stop_fd.is_some() { 2 } else { 1 };
        match sys::poll_until(&mut fds[..n], deadline) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                if stopped() {
                    return Err(Status::Stopped);
                }
            }
            Err(_) => return Err(Status::Os),
            Ok(0) => {
                return Err(if stopped() {
                    Status::Stopped
                } else {
                    Status::TimedOut
                });
            }
            Ok(_) => {
                if stopped() {
                    return Err(Status::Stopped);
                }
                if fds[0].revents & libc::POLLNVAL != 0 {
                    // SAFETY: errno is thread-local.
                    unsafe { *libc::__errno_location() = libc::EBADF };
                    return Err(Status::Os);
                }
                return Ok(fds[0].revents);
            }
        }
    }
}
