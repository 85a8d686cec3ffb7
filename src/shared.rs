//! Shared stoppers: the state word and the reason live in a POSIX shared-memory object, so
//! that processes (written in any language, through this library) share one stop. A stop in
//! any process wakes the waiters of all of them through a process-shared futex; each process's
//! own callbacks, hooks, children and descriptor fire from one watcher thread per process,
//! started lazily and gone when no shared stopper is open.
//!
//! The object (`/stopper.<name>` in the shm namespace, mode 0600) starts with a header — magic,
//! layout version, size, a "ready" word written last — and is refused unless every field
//! checks out, it belongs to this user and nobody else may open it: a corrupt, truncated or
//! foreign object is never trusted. No lock lives in the page, so a process that dies leaves
//! it usable.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::rc::{Arc, Weak};
use std::thread::JoinHandle;

use crate::status::Status;
use crate::stopper::{Inner, SharedCell, Stopper, STOPPED, WAITERS};
use crate::sys;

const MAGIC: [u8; 8] = *b"stopper\x01";
const LAYOUT: u32 = 3;
const READY: u32 = 0x5245_4459; // "READ(Y)"
/// The most shared stoppers one process can have open at once (one `futex_waitv` call).
pub const MAX_OPEN_SHARED: usize = 127;

#[repr(C)]
struct Page {
    magic: [u8; 8],
    layout: u32,
    size: u32,
    ready: AtomicU32,
    _reserved: u32,
    shared: SharedCell,
}

/// Whether `name` is a valid shared stopper name: `[A-Za-z0-9_.-]{1,200}`, not `.` or `..`.
pub fn validate_shared_name(name: &str) -> bool {
    (1..=200).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn shm_path(name: &str) -> CString {
    CString::new(format!("/stopper.{name}")).expect("validated names have no NUL")
}

/// A mapping of one shared page, unmapped on drop.
struct Mapping {
    page: NonNull<Page>,
    len: usize,
}

// SAFETY: the page holds only plain data written once before `ready` and atomics after.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range and nothing refers to it any more (the
        // stopper that owned it is being dropped).
        unsafe { libc::munmap(self.page.as_ptr().cast(), self.len) };
    }
}

fn os_err() -> Status {
    Status::Os
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, Status> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(os_err());
    }
    Ok(st)
}

fn map(fd: &OwnedFd, len: usize) -> Result<Mapping, Status> {
    // SAFETY: maps `len` bytes of a descriptor we hold, shared, read-write.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err());
    }
    Ok(Mapping {
        page: NonNull::new(p.cast()).expect("mmap succeeded"),
        len,
    })
}

fn refuse() -> Status {
    sys::set_errno(libc::EINVAL);
    Status::Inval
}

/// Creates the object, or returns `None` when it already exists.
fn create(path: &CString, len: usize) -> Result<Option<(OwnedFd, Mapping)>, Status> {
    // SAFETY: valid C string; the descriptor is owned below.
    let fd = unsafe {
        libc::shm_open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            return Ok(None);
        }
        return Err(os_err());
    }
    // SAFETY: a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain calls on our descriptor (fchmod: the umask may have narrowed the mode,
    // never widened it; make it exactly 0600).
    if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } != 0
        || unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0
    {
        // SAFETY: removing the object we just created.
        unsafe { libc::shm_unlink(path.as_ptr()) };
        return Err(os_err());
    }
    let m = map(&fd, len)?;
    // SAFETY: fresh zero-filled memory of at least size_of::<Page>(); only we know of it
    // until `ready` is published.
    unsafe {
        let p = m.page.as_ptr();
        std::ptr::addr_of_mut!((*p).magic).write(MAGIC);
        std::ptr::addr_of_mut!((*p).layout).write(LAYOUT);
        std::ptr::addr_of_mut!((*p).size).write(std::mem::size_of::<Page>() as u32);
        (*p).ready.store(READY, Ordering::Release);
    }
    Ok(Some((fd, m)))
}

/// Opens an existing object and checks it; waits a bounded time for a creator that is still
/// initialising it.
fn open_existing(path: &CString, len: usize) -> Result<(OwnedFd, Mapping), Status> {
    // SAFETY: valid C string.
    let fd = unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err());
    }
    // SAFETY: a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A creator runs O_EXCL, ftruncate, header, `ready` in a few microseconds: give it up to a
    // second (this bounds a creation race, it is not a stop poll), then refuse.
    let give_up = sys::now_ns() + 1_000_000_000;
    loop {
        let st = fstat(&fd)?;
        // SAFETY: geteuid has no preconditions.
        if st.st_uid != unsafe { libc::geteuid() } || st.st_mode & 0o077 != 0 {
            return Err(refuse()); // someone else's object, or open to others: not trusted
        }
        if st.st_size as usize >= len {
            break;
        }
        if st.st_size != 0 || sys::now_ns() > give_up {
            return Err(refuse()); // truncated
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let m = map(&fd, len)?;
    let p = m.page.as_ptr();
    loop {
        // SAFETY: `p` maps at least size_of::<Page>() bytes; fields are read as plain data
        // only after `ready` (acquire) says they were written.
        let ready = unsafe { (*p).ready.load(Ordering::Acquire) };
        if ready == READY {
            break;
        }
        if ready != 0 || sys::now_ns() > give_up {
            return Err(refuse());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: as above.
    let ok = unsafe {
        (*p).magic == MAGIC
            && (*p).layout == LAYOUT
            && (*p).size as usize == std::mem::size_of::<Page>()
            && (*p).shared.cell.word.load(Ordering::Acquire) & !(STOPPED | WAITERS) == 0
            && (*p).shared.watch.load(Ordering::Acquire) <= 1
            && (*p).shared.flag.load(Ordering::Acquire) <= 1
    };
    if !ok {
        return Err(refuse());
    }
    Ok((fd, m))
}

struct Registered {
    name: String,
    dev: u64,
    ino: u64,
    stopper: Weak<Inner>,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Opens (creating if needed) the shared stopper `name`. In one process, opening the same
/// object twice gives the same stopper.
pub fn open_shared(name: &str) -> Result<Stopper, Status> {
    if !validate_shared_name(name) {
        return Err(refuse());
    }
    if !watcher::supported() {
        // Without futex_waitv (Linux < 5.16, or a seccomp filter refusing it) one thread could
        // not watch every shared stopper without polling: refuse clearly instead.
        sys::set_errno(libc::ENOSYS);
        return Err(Status::Os);
    }
    {
        // Refuse past the limit before creating anything (no object left behind).
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|r| r.stopper.strong_count() > 0);
        if reg.len() >= MAX_OPEN_SHARED && !reg.iter().any(|r| r.name == name) {
            sys::set_errno(libc::EMFILE);
            return Err(Status::Os);
        }
    }
    let path = shm_path(name);
    let len = page_len();
    let (fd, mapping) = match create(&path, len)? {
        Some(created) => created,
        None => match open_existing(&path, len) {
            Ok(opened) => opened,
            // Unlinked between our create and open: try creating once more.
            Err(Status::Os)
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) =>
            {
                create(&path, len)?.ok_or_else(os_err)?
            }
            Err(e) => return Err(e),
        },
    };
    let st = fstat(&fd)?;
    drop(fd); // the mapping stays valid without the descriptor
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|r| r.stopper.strong_count() > 0);
    if let Some(inner) = reg
        .iter()
        .find(|r| r.name == name && r.dev == st.st_dev && r.ino == st.st_ino)
        .and_then(|r| r.stopper.upgrade())
    {
        return Ok(Stopper { inner }); // `mapping` (a second view of the same page) is dropped
    }
    if reg.len() >= MAX_OPEN_SHARED {
        sys::set_errno(libc::EMFILE);
        return Err(Status::Os);
    }
    // SAFETY: the page outlives the stopper, which owns the mapping (`backing`).
    let cell =
        unsafe { NonNull::new_unchecked(std::ptr::addr_of_mut!((*mapping.page.as_ptr()).shared)) };
    let stopper = Stopper::with_cell(cell, Box::new(mapping));
    reg.push(Registered {
        name: name.to_string(),
        dev: st.st_dev,
        ino: st.st_ino,
        stopper: Arc::downgrade(&stopper.inner),
    });
    drop(reg);
    // A stop whose process died between recording the reason and setting the flag: finish it.
    if stopper.inner.cell().reason.load(Ordering::Acquire) != 0 && !stopper.is_set() {
        stopper.inner.publish_stop();
    }
    watcher::watch(&stopper.inner);
    // Already stopped by another process before we watched: run our side now.
    if stopper.is_set() {
        stopper
            .inner
            .run_stop_actions(stopper.inner.cell().reason.load(Ordering::Acquire));
    }
    Ok(stopper)
}

fn page_len() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page.max(4096) as usize).max(std::mem::size_of::<Page>())
}

/// Removes the name; processes that opened it keep their stopper. `Os` (errno `ENOENT`) when
/// there is no such object.
pub fn unlink_shared(name: &str) -> Status {
    if !validate_shared_name(name) {
        return refuse();
    }
    let path = shm_path(name);
    // SAFETY: valid C string.
    if unsafe { libc::shm_unlink(path.as_ptr()) } != 0 {
        return Status::Os;
    }
    Status::Ok
}

/// Called when a shared stopper is dropped, before its page is unmapped.
pub(crate) fn forget(inner: *const Inner) {
    watcher::forget(inner);
}

/// The watcher did not come along into a forked child: set when it must be restarted there.
static WATCHER_AFTER_FORK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The registry's and the watcher's locks, held by the forking thread across `fork`.
type ForkGuards = (
    std::sync::MutexGuard<'static, Vec<Registered>>,
    std::sync::MutexGuard<'static, watcher::State>,
);

thread_local! {
    static FORK_GUARDS: std::cell::RefCell<Option<ForkGuards>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) fn fork_prepare() {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let st = watcher::lock();
    let _ = FORK_GUARDS.try_with(|f| *f.borrow_mut() = Some((reg, st)));
}

pub(crate) fn fork_parent() {
    let _ = FORK_GUARDS.try_with(|f| f.borrow_mut().take());
}

pub(crate) fn fork_child() {
    let _ = FORK_GUARDS.try_with(|f| {
        if let Some((reg, mut st)) = f.borrow_mut().take() {
            if let Some(h) = st.thread.take() {
                crate::service::abandon(h);
            }
            st.running = false;
            if !st.list.is_empty() {
                WATCHER_AFTER_FORK.store(true, Ordering::Relaxed);
            }
            drop(st);
            drop(reg);
        }
    });
}

/// In a forked child that inherited open shared stoppers: start this process's watcher.
pub(crate) fn after_fork_check() {
    if WATCHER_AFTER_FORK.swap(false, Ordering::Relaxed) {
        watcher::restart();
    }
}

/// One thread per process waiting on every open shared stopper's word with `futex_waitv`.
mod watcher {
    use super::*;

    #[derive(Default)]
    pub(crate) struct State {
        pub(super) list: Vec<(*const Inner, Weak<Inner>)>,
        pub(super) running: bool,
        pub(super) thread: Option<JoinHandle<()>>,
    }

    // SAFETY: the raw pointers are only compared, never dereferenced.
    unsafe impl Send for State {}

    static STATE: Mutex<State> = Mutex::new(State {
        list: Vec::new(),
        running: false,
        thread: None,
    });
    /// Bumped and woken when the list changes.
    static EPOCH: AtomicU32 = AtomicU32::new(0);

    fn kick() {
        EPOCH.fetch_add(1, Ordering::Release);
        sys::futex_wake_all(&EPOCH, false);
    }

    /// Whether this kernel lets us wait on many futexes at once (probed once: an empty
    /// `futex_waitv` is EINVAL where the call exists, ENOSYS or EPERM where it does not).
    pub(super) fn supported() -> bool {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| match sys::futex_waitv(&[]) {
            Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)),
            Ok(()) => true,
        })
    }

    pub(super) fn lock() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn watch(inner: &Arc<Inner>) {
        crate::service::register_fork_handlers();
        let mut st = lock();
        st.list.push((Arc::as_ptr(inner), Arc::downgrade(inner)));
        ensure_running(&mut st);
        drop(st);
        kick();
    }

    /// Starts the watcher again (a forked child) if shared stoppers are open.
    pub(super) fn restart() {
        let mut st = lock();
        if !st.list.is_empty() {
            ensure_running(&mut st);
        }
        drop(st);
        kick();
    }

    fn ensure_running(st: &mut State) {
        if st.running {
            return;
        }
        if let Some(h) = st.thread.take() {
            let _ = h.join();
        }
        if let Ok(h) = std::thread::Builder::new()
            .name("stopper-watch".into())
            .stack_size(256 * 1024)
            .spawn(run)
        {
            st.running = true;
            st.thread = Some(h);
        }
    }

    pub(super) fn forget(inner: *const Inner) {
        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
        st.list.retain(|(p, _)| !std::ptr::eq(*p, inner));
        drop(st);
        // Before the page is unmapped: a waiting watcher sees the epoch change and rebuilds.
        kick();
    }

    fn run() {
        loop {
            let epoch = EPOCH.load(Ordering::Acquire);
            let weaks: Vec<Weak<Inner>> = {
                let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
                if st.list.is_empty() {
                    st.running = false;
                    return;
                }
                st.list.iter().map(|(_, w)| w.clone()).collect()
            };
            let mut waiters = vec![sys::FutexWaitv {
                val: u64::from(epoch),
                uaddr: EPOCH.as_ptr() as u64,
                flags: sys::FUTEX2_SIZE_U32 | sys::FUTEX2_PRIVATE,
                reserved: 0,
            }];
            let mut stopped = Vec::new();
            for w in &weaks {
                let Some(inner) = w.upgrade() else { continue };
                let watch = inner.watch_word().expect("watched stoppers are shared");
                // The watch word is set after the flag: read it first, then the flag.
                let v = watch.load(Ordering::Acquire);
                if v != 0 || inner.is_set() {
                    stopped.push(inner);
                    continue;
                }
                waiters.push(sys::FutexWaitv {
                    val: 0,
                    uaddr: watch as *const _ as u64,
                    flags: sys::FUTEX2_SIZE_U32,
                    reserved: 0,
                });
                // `inner` drops here; if it was the last reference, its drop calls `forget`,
                // which changes the epoch, so the wait below returns at once.
            }
            drop(weaks);
            if !stopped.is_empty() {
                for inner in stopped {
                    let reason = inner.cell().reason.load(Ordering::Acquire);
                    let ptr = Arc::as_ptr(&inner);
                    {
                        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
                        st.list.retain(|(p, _)| !std::ptr::eq(*p, ptr));
                    }
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.run_stop_actions(reason)
                    }));
                }
                continue;
            }
            let _ = sys::futex_waitv(&waiters[..waiters.len().min(super::MAX_OPEN_SHARED + 1)]);
        }
    }

    /// Whether the watcher thread runs (for tests).
    pub fn running() -> bool {
        STATE.lock().unwrap_or_else(|e| e.into_inner()).running
    }
}

/// Whether this process's watcher thread is running (for tests and diagnostics).
pub fn watcher_running() -> bool {
    watcher::running()
}
