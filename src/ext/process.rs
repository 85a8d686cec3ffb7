//! Processes: the recipe's `terminate()`, `join(timeout)`, `kill()` escalation as one call,
//! for one process or a whole process group, through a pidfd opened at watch time, so a
//! reused pid (or group id) is never hit.
//!
//! A watch lives as long as it has something to do: before the stop, while its process runs
//! (the service thread polls the pidfd; a process that ends drops its watch, pidfd included);
//! after the stop, until the grace passes or the process (the whole group, for a group) is
//! gone. A watch whose stopper is released without stopping ends with it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::base::status::Status;
use crate::base::sys;
use crate::ext::service;
use crate::token::callbacks::Action;
use crate::token::inner::Inner;
use crate::token::stopper::Stopper;

/// When `stopper` stops, asks process `pid` to end with `SIGTERM`, then kills it with
/// `SIGKILL` if it still runs after `grace_ns` (negative: never). The process is not reaped.
/// `Ok` (also when `pid` already ended), `Stopped` when the stopper was already stopped (the
/// escalation starts at once), `Inval` for `pid <= 0`, `Os` with `errno` when the pidfd cannot
/// be opened, the caller may not signal `pid` (`EPERM`), or no thread can watch it (`EAGAIN`).
pub fn watch_process(stopper: &Stopper, pid: i32, grace_ns: i64) -> Status {
    watch(stopper, pid, grace_ns, false)
}

/// Like [`watch_process`], for the whole process group that `pid` leads: `SIGTERM` to the
/// group at the stop, `SIGKILL` to what remains of it after `grace_ns`, both through the
/// leader's pidfd (`PIDFD_SIGNAL_PROCESS_GROUP`, Linux 6.9), so no other group is ever hit.
/// `Inval` when `pid` does not lead its group; `Os` with `errno` as the kernel says when it
/// cannot signal a group through a pidfd (`EINVAL` before 6.9), rather than a racy `killpg`.
/// A leader that ends before the stop ends the watch (its group is not signalled after that);
/// after the stop, the group's `SIGKILL` comes at the grace as long as any member remains.
pub fn watch_process_group(stopper: &Stopper, pid: i32, grace_ns: i64) -> Status {
    watch(stopper, pid, grace_ns, true)
}

/// `pidfd_send_signal`'s flag for a whole process group (Linux 6.9).
const PIDFD_SIGNAL_PROCESS_GROUP: u32 = 1 << 2;

fn send(fd: &OwnedFd, signo: i32, group: bool) -> std::io::Result<()> {
    let flags = if group { PIDFD_SIGNAL_PROCESS_GROUP } else { 0 };
    sys::pidfd_send_signal_flags(fd.as_raw_fd(), signo, flags)
}

fn os_error(e: std::io::Error) -> Status {
    sys::set_errno(e.raw_os_error().unwrap_or(libc::EIO));
    Status::Os
}

fn watch(stopper: &Stopper, pid: i32, grace_ns: i64, group: bool) -> Status {
    if pid <= 0 {
        return Status::Inval;
    }
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Status::Ok, // already gone
        Err(e) => return os_error(e),
    };
    // An ended process (a zombie) is not an error: nothing to signal, nothing to watch.
    let ended = || {
        if stopper.is_set() {
            Status::Stopped
        } else {
            Status::Ok
        }
    };
    if group {
        // Asked while the pidfd shows the process running: a pid is not reused before its
        // process is reaped, so the answer is about this process.
        // SAFETY: plain system call.
        let pgid = unsafe { libc::getpgid(pid) };
        if sys::pidfd_exited(pidfd.as_raw_fd()) || pgid < 0 {
            return ended();
        }
        if pgid != pid {
            return Status::Inval;
        }
    }
    if sys::pidfd_exited(pidfd.as_raw_fd()) {
        return ended();
    }
    // May we signal it (and, for a group, can this kernel)? Asked now, not found out at the stop.
    match send(&pidfd, 0, group) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Status::Ok,
        Err(e) => return os_error(e),
    }
    let w = Arc::new(Watched {
        pidfd,
        group,
        grace_ns,
        reg: Mutex::new(Reg::default()),
    });
    let trigger = Trigger(Arc::clone(&w));
    let action = Action::Boxed(Box::new(move |_| {
        let t = trigger;
        stopped(&t.0);
    }));
    let id = match stopper.inner.register(action) {
        Ok(id) => id,
        Err(action) => {
            drop(action);
            stopped(&w); // already stopped: the escalation starts now
            return Status::Stopped;
        }
    };
    let mut reg = w.lock();
    if reg.stage != Stage::Armed {
        return Status::Ok; // the stop came meanwhile: its callback took the watch over
    }
    reg.callback = Some((crate::base::rc::Arc::downgrade(&stopper.inner), id));
    match watch_exit(&w, &mut reg) {
        Ok(()) => Status::Ok,
        Err(st) => {
            // No thread to watch it: fail the call, leaving nothing registered.
            reg.stage = Stage::Over;
            reg.callback = None;
            drop(reg);
            let errno = std::io::Error::last_os_error().raw_os_error();
            stopper.inner.unregister(id);
            sys::set_errno(errno.unwrap_or(libc::EAGAIN));
            st
        }
    }
}

/// One watched process (or group).
struct Watched {
    pidfd: OwnedFd,
    group: bool,
    grace_ns: i64,
    reg: Mutex<Reg>,
}

#[derive(PartialEq, Eq, Default, Clone, Copy)]
enum Stage {
    /// Waiting for the stop.
    #[default]
    Armed,
    /// SIGTERM sent; SIGKILL due at the grace.
    Escalating,
    /// Nothing more to do.
    Over,
}

/// What is registered for a watch right now.
#[derive(Default)]
struct Reg {
    stage: Stage,
    /// Before the stop: the stopper and the callback's id.
    callback: Option<(crate::base::rc::Weak<Inner>, u64)>,
    /// The service thread's poll of the pidfd.
    fd_watch: Option<u64>,
    /// During the escalation: the SIGKILL timer (due, id).
    kill: Option<(u64, u64)>,
}

impl Watched {
    fn lock(&self) -> MutexGuard<'_, Reg> {
        self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The stopper's callback holds this: a stopper released without stopping ends the watch.
struct Trigger(Arc<Watched>);

impl Drop for Trigger {
    fn drop(&mut self) {
        let mut reg = self.0.lock();
        if reg.stage == Stage::Armed && reg.callback.is_some() {
            reg.stage = Stage::Over;
            reg.callback = None;
            let fd_watch = reg.fd_watch.take();
            drop(reg);
            if let Some(id) = fd_watch {
                drop(service::unwatch_fd(id));
            }
        }
    }
}

/// Has the service thread poll the pidfd (unless it already does): `exited` runs when the
/// process ends.
fn watch_exit(w: &Arc<Watched>, reg: &mut Reg) -> Result<(), Status> {
    if reg.fd_watch.is_none() {
        let w2 = Arc::clone(w);
        let id = service::watch_fd(w.pidfd.as_raw_fd(), Box::new(move || exited(&w2)))?;
        reg.fd_watch = Some(id);
    }
    Ok(())
}

/// The stop: SIGTERM now, SIGKILL at the grace (run on the stopping thread).
fn stopped(w: &Arc<Watched>) {
    let mut reg = w.lock();
    if reg.stage != Stage::Armed {
        return;
    }
    reg.callback = None;
    if sys::pidfd_exited(w.pidfd.as_raw_fd()) {
        // The leader ended before the stop (its watch was about to go): nothing to signal.
        return end(reg);
    }
    let _ = send(&w.pidfd, libc::SIGTERM, w.group);
    if w.grace_ns < 0 {
        return end(reg);
    }
    let due = sys::now_ns().saturating_add(w.grace_ns as u64);
    let w2 = Arc::clone(w);
    match service::schedule(due, service::Timer::Task(Box::new(move || kill(&w2)))) {
        Ok(id) => {
            reg.stage = Stage::Escalating;
            reg.kill = Some((due, id));
            // Polled so that a process that ends before the grace ends the watch then.
            let _ = watch_exit(w, &mut reg);
        }
        Err(_) => end(reg), // no thread to time the SIGKILL: the SIGTERM is all there is
    }
}

/// Nothing more to do: drops the pidfd's poll.
fn end(mut reg: MutexGuard<'_, Reg>) {
    reg.stage = Stage::Over;
    let fd_watch = reg.fd_watch.take();
    drop(reg);
    if let Some(id) = fd_watch {
        drop(service::unwatch_fd(id));
    }
}

/// The process ended (the service thread saw its pidfd readable).
fn exited(w: &Arc<Watched>) {
    let mut reg = w.lock();
    reg.fd_watch = None;
    match reg.stage {
        Stage::Armed => {
            // Before the stop: the watch ends, and its callback (with the pidfd) goes.
            reg.stage = Stage::Over;
            let callback = reg.callback.take();
            drop(reg);
            if let Some((inner, id)) = callback {
                if let Some(inner) = inner.upgrade() {
                    inner.unregister(id);
                }
            }
        }
        Stage::Escalating => {
            if w.group && send(&w.pidfd, 0, true).is_ok() {
                return; // the leader is gone, the rest of its group gets SIGKILL at the grace
            }
            reg.stage = Stage::Over;
            let timer = reg.kill.take();
            drop(reg);
            if let Some((due, id)) = timer {
                drop(service::cancel(due, id));
            }
        }
        Stage::Over => {}
    }
}

/// The grace passed: SIGKILL to what remains.
fn kill(w: &Arc<Watched>) {
    let mut reg = w.lock();
    reg.kill = None;
    if reg.stage != Stage::Escalating {
        return;
    }
    // A process: only if it still runs. A group: whatever remains of it (the kernel signals
    // only members of the watched group, also when its leader is gone).
    if w.group || !sys::pidfd_exited(w.pidfd.as_raw_fd()) {
        let _ = send(&w.pidfd, libc::SIGKILL, w.group);
    }
    end(reg);
}
