//! The few system calls the core needs, each wrapped once: the monotonic clock, futex
//! wait/wake, eventfd and poll. Everything above this module is safe Rust.

use std::io;
use std::sync::atomic::AtomicU32;

/// Nanoseconds on `CLOCK_MONOTONIC` (the clock every timeout is measured on).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// An absolute deadline on the monotonic clock from a relative timeout; `None` = no limit.
pub fn deadline_after(timeout_ns: i64) -> Option<u64> {
    if timeout_ns < 0 {
        None
    } else {
        Some(now_ns().saturating_add(timeout_ns as u64))
    }
}

/// An absolute deadline on the monotonic clock from a relative `Duration`; `None` = no limit.
pub fn deadline_in(timeout: Option<std::time::Duration>) -> Option<u64> {
    timeout.map(|t| now_ns().saturating_add(t.as_nanos().min(u64::MAX as u128) as u64))
}

fn timespec_of(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// The outcome of one futex wait.
#[derive(Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken, value changed, or interrupted: the caller re-reads the word.
    Retry,
    /// The absolute deadline passed.
    TimedOut,
}

/// Blocks while `*word == expected`, until woken or until the absolute monotonic `deadline`.
/// `shared` selects a process-shared futex (for words in shared memory).
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<u64>,
    shared: bool,
) -> FutexWait {
    let op = libc::FUTEX_WAIT_BITSET | if shared { 0 } else { libc::FUTEX_PRIVATE_FLAG };
    let ts = deadline.map(timespec_of);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAIT_BITSET takes an absolute
    // CLOCK_MONOTONIC timeout (or NULL) and only reads the word.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        FutexWait::TimedOut
    } else {
        FutexWait::Retry
    }
}

/// Wakes every thread blocked in `futex_wait` on `word`.
pub fn futex_wake_all(word: &AtomicU32, shared: bool) {
    let op = libc::FUTEX_WAKE | if shared { 0 } else { libc::FUTEX_PRIVATE_FLAG };
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, i32::MAX) };
}

/// Sleeps until the absolute monotonic deadline (restarting after signals).
pub fn sleep_until(deadline: u64) {
    let ts = timespec_of(deadline);
    loop {
        // SAFETY: `ts` is a valid timespec; TIMER_ABSTIME makes restarts exact.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}

/// The calling thread's id as hooks receive it: `pthread_self()`.
pub fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// A new close-on-exec, non-blocking eventfd.
pub fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned by the returned OwnedFd.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}

/// Replaces the descriptor `fd` (an eventfd) with a fresh eventfd at the same number (a
/// forked child's own, no longer shared with its parent); closes it when that fails.
pub fn eventfd_renew(fd: std::os::fd::RawFd) -> bool {
    use std::os::fd::AsRawFd;
    match eventfd() {
        Ok(new) => {
            // SAFETY: dup3 atomically makes `fd` refer to the new eventfd; the temporary
            // descriptor is closed when `new` drops.
            let r = unsafe { libc::dup3(new.as_raw_fd(), fd, libc::O_CLOEXEC) };
            r == fd
        }
        Err(_) => {
            // SAFETY: `fd` is ours (the caller's inherited eventfd).
            unsafe { libc::close(fd) };
            false
        }
    }
}

/// Makes an eventfd readable for good (adds 1 to its counter; nobody reads it).
pub fn eventfd_signal(fd: std::os::fd::RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to a descriptor the caller owns.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// `poll` on a set of descriptors until the absolute deadline; restarts after `EINTR` only when
/// `restart` says so. Returns the number of ready descriptors (0 = timed out).
pub fn poll_until(fds: &mut [libc::pollfd], deadline: Option<u64>) -> io::Result<usize> {
    let ts = deadline.map(|d| timespec_of(d.saturating_sub(now_ns())));
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid slice of pollfd; ppoll reads/writes only within it.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// The stack size of the library's own threads (service, watcher), which run host callbacks:
/// the process's default thread stack, as `pthread_attr_init` gives it (glibc derives it from
/// `RLIMIT_STACK` at start-up), and never less than 2 MiB. Computed once.
pub fn library_stack_size() -> usize {
    const FLOOR: usize = 2 * 1024 * 1024;
    static SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let known = SIZE.load(std::sync::atomic::Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    // SAFETY: a zeroed attribute object is initialised by pthread_attr_init before use and
    // destroyed after; getstacksize only writes the out-parameter.
    let default = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut size: libc::size_t = 0;
        if libc::pthread_attr_init(&mut attr) == 0 {
            if libc::pthread_attr_getstacksize(&attr, &mut size) != 0 {
                size = 0;
            }
            libc::pthread_attr_destroy(&mut attr);
        }
        size
    };
    let default = if default != 0 {
        default
    } else {
        // No answer from the thread library: RLIMIT_STACK itself.
        // SAFETY: a zeroed rlimit is a valid out-parameter.
        let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut rl) } == 0
            && rl.rlim_cur != libc::RLIM_INFINITY
        {
            usize::try_from(rl.rlim_cur).unwrap_or(FLOOR)
        } else {
            FLOOR
        }
    };
    let size = default.max(FLOOR);
    SIZE.store(size, std::sync::atomic::Ordering::Relaxed);
    size
}

/// A thread started by [`spawn_thread`]: joined with [`LibThread::join`], detached when dropped
/// (as std's `JoinHandle` is).
#[derive(Debug)]
pub struct LibThread(libc::pthread_t);

impl LibThread {
    /// Waits for the thread to end.
    pub fn join(self) {
        let t = std::mem::ManuallyDrop::new(self);
        // SAFETY: a joinable thread this handle owns; the handle is consumed, so it is joined
        // (or detached) exactly once.
        unsafe { libc::pthread_join(t.0, std::ptr::null_mut()) };
    }
}

impl Drop for LibThread {
    fn drop(&mut self) {
        // SAFETY: a joinable thread this handle owns, not joined (join consumes the handle).
        unsafe { libc::pthread_detach(self.0) };
    }
}

/// Handles of the library's threads that belonged to a parent process: kept for good in a
/// forked child (the handle names a thread of the parent, which must never be joined or
/// detached there), reachable, not leaked.
static ABANDONED: std::sync::Mutex<Vec<LibThread>> = std::sync::Mutex::new(Vec::new());

/// Keeps `h`, a thread handle that came from the parent process, for good (see `ABANDONED`).
pub fn abandon(h: LibThread) {
    ABANDONED.lock().unwrap_or_else(|e| e.into_inner()).push(h);
}

/// Starts a native thread running `f`, with no allocation that can abort: the closure is boxed
/// fallibly and handed to `pthread_create` (std's `thread::Builder::spawn` allocates
/// infallibly, and aborts the host when memory is short). `stack` is the stack size (None: the
/// thread library's default). A panic in `f` ends the thread, reported by the panic hook; it
/// never unwinds into the thread library. Errors: `ENOMEM`, or `pthread_create`'s own.
pub fn spawn_thread<F: FnOnce() + Send + 'static>(
    name: &std::ffi::CStr,
    stack: Option<usize>,
    f: F,
) -> io::Result<LibThread> {
    extern "C" fn start<F: FnOnce() + Send + 'static>(
        arg: *mut std::ffi::c_void,
    ) -> *mut std::ffi::c_void {
        // SAFETY: `arg` is the box `spawn_thread` leaked for this thread, taken back once.
        let f = unsafe { Box::from_raw(arg as *mut F) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::ptr::null_mut()
    }
    let raw = match crate::base::rc::try_box(f) {
        Ok(b) => Box::into_raw(b),
        Err(_) => return Err(io::Error::from_raw_os_error(libc::ENOMEM)),
    };
    // SAFETY: a zeroed pthread_attr_t is what pthread_attr_init overwrites.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is initialised here and destroyed below; `start::<F>` takes back exactly
    // this box.
    let rc = unsafe {
        let mut rc = libc::pthread_attr_init(&mut attr);
        if rc == 0 {
            if let Some(size) = stack {
                rc = libc::pthread_attr_setstacksize(&mut attr, size);
            }
            let mut tid: libc::pthread_t = 0;
            if rc == 0 {
                rc =
                    libc::pthread_create(&mut tid, &attr, start::<F>, raw as *mut std::ffi::c_void);
            }
            libc::pthread_attr_destroy(&mut attr);
            if rc == 0 {
                // Best effort: a name helps a host's debugger and /proc; its failure is harmless.
                libc::pthread_setname_np(tid, name.as_ptr());
                return Ok(LibThread(tid));
            }
        }
        rc
    };
    // SAFETY: the thread was not created: the box is still ours.
    drop(unsafe { Box::from_raw(raw) });
    Err(io::Error::from_raw_os_error(rc))
}

/// Starts one of the library's own threads (they run host callbacks: see
/// [`library_stack_size`]). The only place the library creates a thread of its own.
pub fn spawn_library_thread<F: FnOnce() + Send + 'static>(
    name: &std::ffi::CStr,
    f: F,
) -> io::Result<LibThread> {
    spawn_thread(name, Some(library_stack_size()), f)
}

// ---- Fork handlers (see `base::fork`), called by the OS.

/// `pthread_atfork`'s three handlers: prepare, parent, child.
type ForkHandlers = (fn(), fn(), fn());

static FORK_HANDLERS: std::sync::OnceLock<ForkHandlers> = std::sync::OnceLock::new();

extern "C" fn on_fork_prepare() {
    if let Some(h) = FORK_HANDLERS.get() {
        (h.0)()
    }
}
extern "C" fn on_fork_parent() {
    if let Some(h) = FORK_HANDLERS.get() {
        (h.1)()
    }
}
extern "C" fn on_fork_child() {
    if let Some(h) = FORK_HANDLERS.get() {
        (h.2)()
    }
}

/// Registers fork handlers (once per process; later calls are ignored).
pub fn at_fork(prepare: fn(), parent: fn(), child: fn()) {
    if FORK_HANDLERS.set((prepare, parent, child)).is_ok() {
        // SAFETY: registers plain functions that only read a OnceLock and call safe Rust.
        unsafe {
            libc::pthread_atfork(
                Some(on_fork_prepare),
                Some(on_fork_parent),
                Some(on_fork_child),
            )
        };
    }
}

/// The current disposition of `signo`.
pub fn sigaction_get(signo: i32) -> io::Result<libc::sigaction> {
    // SAFETY: zeroed sigaction is a valid out-parameter; a NULL new action only queries.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::sigaction(signo, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// Installs `handler` for `signo` without `SA_RESTART`, with `flags` added.
pub fn sigaction_set(
    signo: i32,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: zeroed sigaction is valid; fields set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    // SAFETY: valid pointers; sigemptyset on a local.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: valid pointers.
    if unsafe { libc::sigaction(signo, &act, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One entry of `futex_waitv`.
#[repr(C)]
pub struct FutexWaitv {
    pub val: u64,
    pub uaddr: u64,
    pub flags: u32,
    pub reserved: u32,
}

/// `FUTEX2_SIZE_U32`: a 32-bit futex word (shared between processes unless `FUTEX2_PRIVATE`).
pub(crate) const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX2_PRIVATE`.
pub(crate) const FUTEX2_PRIVATE: u32 = 128;

/// Waits until any of the words no longer holds its value or is woken (no time limit).
/// Returns on wake, on a changed value (`EAGAIN`), on `EINTR`, or on a fault.
pub fn futex_waitv(waiters: &[FutexWaitv]) -> io::Result<()> {
    // SAFETY: `waiters` is a valid array; the kernel only reads it and the words it names
    // (an unmapped word gives EFAULT, never a write).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as u32,
            0u32,
            std::ptr::null::<libc::timespec>(),
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `pidfd_open(pid, 0)`, close-on-exec.
pub fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned by the returned OwnedFd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a new descriptor nobody else owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// `pidfd_send_signal(fd, signo, NULL, flags)`.
pub fn pidfd_send_signal_flags(fd: std::os::fd::RawFd, signo: i32, flags: u32) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor the caller owns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            signo,
            std::ptr::null::<libc::siginfo_t>(),
            flags,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the process behind a pidfd has ended (the pidfd polls readable).
pub fn pidfd_exited(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// Sets the calling thread's timer slack (how late the kernel may end its timed sleeps to
/// batch wake-ups; a thread inherits 50 µs from its creator). Best effort.
pub fn set_timer_slack_ns(ns: u64) {
    // Miri implements only the name requests of `prctl`.
    #[cfg(not(miri))]
    // SAFETY: PR_SET_TIMERSLACK takes the slack as its one argument; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0)
    };
    #[cfg(miri)]
    let _ = ns;
}

/// Gives up the CPU to another runnable thread, if any (`sched_yield`).
pub fn yield_cpu() {
    // SAFETY: no arguments.
    unsafe { libc::sched_yield() };
}

/// Reads `errno`.
pub fn errno() -> i32 {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() }
}

/// Sets `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = e };
}
