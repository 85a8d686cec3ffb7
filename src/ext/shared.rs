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

use crate::base::rc::{Arc, Weak};

use crate::base::status::Status;
use crate::base::sys;
use crate::token::attach::Attachment;
use crate::token::inner::{Inner, SharedCell, STOPPED, WAITERS};
use crate::token::stopper::Stopper;

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
        let errno = std::io::Error::last_os_error().raw_os_error();
        // SAFETY: removing the object we just created.
        unsafe { libc::shm_unlink(path.as_ptr()) };
        sys::set_errno(errno.unwrap_or(libc::EIO));
        return Err(os_err());
    }
    let m = match map(&fd, len) {
        Ok(m) => m,
        Err(e) => {
            // Nothing half-made may keep the name: remove the object this call created.
            let errno = std::io::Error::last_os_error().raw_os_error();
            // SAFETY: removing the object we just created.
            unsafe { libc::shm_unlink(path.as_ptr()) };
            sys::set_errno(errno.unwrap_or(libc::ENOMEM));
            return Err(e);
        }
    };
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
/// object twice gives the same stopper. A failed call leaves nothing behind: no object it
/// created, no mapping, and never a stopper this process's watcher does not hear.
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
    // The watcher first: when no thread can be started (a thread limit), fail now, before
    // anything exists, rather than hand out a stopper deaf to other processes.
    let opening = watcher::Opening::begin()?;
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
    let key = cell.as_ptr() as usize;
    let stopper = Stopper::try_with_cell(
        cell,
        SharedPage {
            key,
            _mapping: mapping,
        },
    )?;
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
    // A state no real stop leaves (a flag without a reason…): complete it as a stop.
    let _ = settle(&stopper.inner);
    watcher::watch(&stopper.inner);
    drop(opening);
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

/// A shared stopper's attachment: its mapping of the page, unmapped when the stopper is
/// freed, after the watcher forgot it.
struct SharedPage {
    /// The stopper's cell in the page: the watcher's key for it.
    key: usize,
    _mapping: Mapping,
}

impl Attachment for SharedPage {
    const ORDER: u8 = 0; // no stop step: the cell is the token's
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // Before the page is unmapped (with `_mapping`, after this).
        watcher::forget(self.key);
    }
}

/// The watcher's key for a shared stopper: the address of its cell (see `SharedPage`).
fn key(inner: &Inner) -> usize {
    inner.cell() as *const crate::token::inner::Cell as usize
}

/// Reads a shared stopper's page as a stop or not, completing a stop that no real stop leaves
/// half done. The page is written by other processes and is not trusted:
/// - the flag (or the state word's stop bit) without a reason: no stop records its flag before
///   its reason, so this is a peer's write; the flag may already have been seen by a hot loop,
///   so it is not undone but completed, with `REASON_REQUESTED`, by whoever records a reason
///   first (this call, or a concurrent `stop`, which then publishes it itself);
/// - the state word's stop bit without the flag but with a reason: its stopper publishes it
///   (or, if it died, the next `stop` or opener finishes it): not a stop yet;
/// - a reason alone: a stop in progress (or a dead one, as above): not a stop yet.
///
/// Returns the stop's reason (never 0) when the page shows a stop.
fn settle(inner: &Inner) -> Option<i32> {
    let cell = inner.cell();
    let flag = inner.is_set();
    let word = cell.word.load(Ordering::Acquire);
    if !flag && word & STOPPED == 0 {
        return None;
    }
    let reason = cell.reason.load(Ordering::Acquire);
    if reason != 0 {
        return flag.then_some(reason);
    }
    match cell.reason.compare_exchange(
        0,
        crate::token::stopper::REASON_REQUESTED,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // Ours to publish: nobody else can have recorded a reason.
            inner.publish_stop();
            Some(crate::token::stopper::REASON_REQUESTED)
        }
        Err(r) => flag.then_some(r),
    }
}

/// Gives this process a private, stopped copy of a stopped shared page, at the same address:
/// once a stop has happened here, nothing another process does to the object (zeroing it,
/// truncating and regrowing it) can undo it in this process or fault a read of it. Called by
/// the watcher once it has completed the stop on the shared page (every step of a stop, so
/// that a stopping thread of this process that is still between its steps cannot leave the
/// shared page half-published: its later writes land in the private copy) and woken every
/// process's waiters there.
fn freeze(inner: &Inner, reason: i32) {
    let len = page_len();
    let page = (inner.cell() as *const crate::token::inner::Cell as usize)
        - std::mem::offset_of!(Page, shared);
    // SAFETY: a fresh private anonymous mapping, written before anyone can see it.
    let copy = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if copy == libc::MAP_FAILED {
        return; // no memory: the stopper keeps its shared view
    }
    // SAFETY: `copy` maps `len` >= size_of::<Page>() zeroed, writable bytes nobody else knows.
    unsafe {
        let p = copy.cast::<Page>();
        std::ptr::addr_of_mut!((*p).magic).write(MAGIC);
        std::ptr::addr_of_mut!((*p).layout).write(LAYOUT);
        std::ptr::addr_of_mut!((*p).size).write(std::mem::size_of::<Page>() as u32);
        (*p).ready.store(READY, Ordering::Relaxed);
        (*p).shared.cell.reason.store(reason, Ordering::Relaxed);
        (*p).shared.cell.word.store(STOPPED, Ordering::Relaxed);
        (*p).shared.watch.store(1, Ordering::Relaxed);
        (*p).shared.flag.store(1, Ordering::Relaxed);
    }
    // SAFETY: moves our private page over the shared one in one step (the kernel swaps the
    // mapping under its lock: a concurrent reader sees the old page or the new one, both
    // stopped); the stopper (alive: the caller holds it) keeps owning `len` bytes there.
    let r = unsafe {
        libc::mremap(
            copy,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            page as *mut libc::c_void,
        )
    };
    if r == libc::MAP_FAILED {
        // SAFETY: our own mapping, never shared.
        unsafe { libc::munmap(copy, len) };
    }
}

/// The watcher did not come along into a forked child and could not be started there: set
/// when a later call must try again.
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

/// The first process-wide locks taken at a fork (see `base::fork`).
const FORK_RANK: usize = 1;

crate::base::fork::fork_hooks!(FORK_RANK);

fn fork_prepare() {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let st = watcher::lock();
    let _ = FORK_GUARDS.try_with(|f| *f.borrow_mut() = Some((reg, st)));
}

fn fork_parent() {
    let _ = FORK_GUARDS.try_with(|f| f.borrow_mut().take());
}

/// In the child: the watcher did not come along. When shared stoppers are open, start this
/// process's own watcher at once, so that a child that only polls a stopper's descriptor (or
/// never calls the library again) still hears a stop made by another process.
fn fork_child() {
    let _ = FORK_GUARDS.try_with(|f| {
        if let Some((reg, mut st)) = f.borrow_mut().take() {
            if let Some(h) = st.thread.take() {
                sys::abandon(h);
            }
            st.running = false;
            st.opening = 0; // the parent's openers did not come along
            if !st.list.is_empty() && watcher::ensure_running(&mut st).is_err() {
                WATCHER_AFTER_FORK.store(true, Ordering::Relaxed);
                crate::base::fork::retry_later();
            }
            drop(st);
            drop(reg);
        }
    });
}

/// In a forked child whose watcher could not be started at the fork: try again.
fn after_fork() {
    if WATCHER_AFTER_FORK.load(Ordering::Relaxed) {
        if watcher::restart() {
            WATCHER_AFTER_FORK.store(false, Ordering::Relaxed);
        } else {
            crate::base::fork::retry_later();
        }
    }
}

/// One thread per process waiting on every open shared stopper's word with `futex_waitv`.
mod watcher {
    use super::*;

    #[derive(Default)]
    pub(crate) struct State {
        pub(super) list: Vec<(usize, Weak<Inner>)>,
        /// `open_shared` calls in progress: they keep the thread from ending (it is started
        /// before the object is made, so a failure to start it leaves nothing behind).
        pub(super) opening: usize,
        pub(super) running: bool,
        pub(super) thread: Option<sys::LibThread>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        list: Vec::new(),
        opening: 0,
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
    /// A plain atomic, not a lazy lock: a fork during the probe must not leave the child a
    /// lock nobody will release.
    pub(super) fn supported() -> bool {
        static SUPPORTED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        match SUPPORTED.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let yes = match sys::futex_waitv(&[]) {
                    Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)),
                    Ok(()) => true,
                };
                SUPPORTED.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }

    pub(super) fn lock() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An `open_shared` in progress: the watcher runs (or the call fails now) and stays until
    /// it ends.
    pub(super) struct Opening(());

    impl Opening {
        pub(super) fn begin() -> Result<Opening, Status> {
            super::register_fork_hooks();
            let mut st = lock();
            ensure_running(&mut st)?;
            st.opening += 1;
            Ok(Opening(()))
        }
    }

    impl Drop for Opening {
        fn drop(&mut self) {
            let mut st = lock();
            st.opening = st.opening.saturating_sub(1);
            drop(st);
            kick(); // an idle watcher may end now
        }
    }

    /// Adds a stopper to the watched list (the caller holds an `Opening`: the thread runs).
    pub(super) fn watch(inner: &Arc<Inner>) {
        let mut st = lock();
        st.list.push((key(inner), Arc::downgrade(inner)));
        drop(st);
        kick();
    }

    /// Starts the watcher again (a forked child) if shared stoppers are open; false when
    /// that failed (a later call tries again).
    pub(super) fn restart() -> bool {
        let mut st = lock();
        let ok = st.list.is_empty() || ensure_running(&mut st).is_ok();
        drop(st);
        kick();
        ok
    }

    pub(super) fn ensure_running(st: &mut State) -> Result<(), Status> {
        if st.running {
            return Ok(());
        }
        if let Some(h) = st.thread.take() {
            h.join();
        }
        match sys::spawn_library_thread(c"stopper-watch", run) {
            Ok(h) => {
                st.running = true;
                st.thread = Some(h);
                Ok(())
            }
            Err(e) => {
                sys::set_errno(e.raw_os_error().unwrap_or(libc::EAGAIN));
                Err(Status::Os)
            }
        }
    }

    pub(super) fn forget(key: usize) {
        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
        st.list.retain(|(k, _)| *k != key);
        drop(st);
        // Before the page is unmapped: a waiting watcher sees the epoch change and rebuilds.
        kick();
    }

    /// What the watcher makes of one stopper's page.
    enum Look {
        /// Stopped, with this reason (never 0).
        Stopped(i32),
        /// Not stopped: sleep while the watcher word holds this value.
        Sleep(u32),
    }

    /// Reads one page. The watcher word is only a wake-up: a stop is what `settle` says. A
    /// word a peer set without a stop is put back to 0 (so that a real stop, which stores 1,
    /// changes it and cannot be slept through), and the page is read again after that.
    fn look(inner: &Inner) -> Look {
        let watch = inner.watch_word().expect("watched stoppers are shared");
        for _ in 0..8 {
            // The watcher word is set after the flag: read it first, then the page.
            let v = watch.load(Ordering::Acquire);
            if let Some(reason) = settle(inner) {
                return Look::Stopped(reason);
            }
            if v == 0 {
                return Look::Sleep(0);
            }
            if watch
                .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // A stop that stored its 1 before our reset set its flag before that: seen now.
                return match settle(inner) {
                    Some(reason) => Look::Stopped(reason),
                    None => Look::Sleep(0),
                };
            }
        }
        // A peer rewriting the word without pause: sleep on what it holds now.
        Look::Sleep(watch.load(Ordering::Acquire))
    }

    fn run() {
        loop {
            let epoch = EPOCH.load(Ordering::Acquire);
            let weaks: Vec<Weak<Inner>> = {
                let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
                if st.list.is_empty() && st.opening == 0 {
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
                match look(&inner) {
                    Look::Stopped(reason) => stopped.push((inner, reason)),
                    Look::Sleep(val) => waiters.push(sys::FutexWaitv {
                        val: u64::from(val),
                        uaddr: inner.watch_word().expect("shared") as *const _ as u64,
                        flags: sys::FUTEX2_SIZE_U32,
                        reserved: 0,
                    }),
                }
                // `inner` drops here; if it was the last reference, its drop calls `forget`,
                // which changes the epoch, so the wait below returns at once.
            }
            drop(weaks);
            if !stopped.is_empty() {
                // Woken by a stop, the watcher steps back once first: the threads of this
                // process blocked on the stopper were woken by the same stop, and on a busy
                // machine the watcher's work (completing and freezing the page, whose `mremap`
                // interrupts every CPU running a thread of this process) would otherwise run
                // before them. They return from their wait; the watcher runs the actions next.
                sys::yield_cpu();
                for (inner, reason) in stopped {
                    {
                        let k = key(&inner);
                        let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
                        st.list.retain(|(p, _)| *p != k);
                    }
                    // Complete the stop on the shared page ourselves (idempotent: a stop's
                    // own steps, which its thread, in this process or another, may not have
                    // finished): the page is about to be frozen here, and what that thread
                    // still writes then lands in this process's private copy.
                    inner.publish_stop();
                    // Waiters of every process on this page, also those a peer's cleared
                    // waiter bit would leave asleep (the stop wakes only announced sleepers).
                    crate::base::sync::futex::wake_all(&inner.cell().word, true);
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.run_stop_actions(reason)
                    }));
                    freeze(&inner, reason);
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
