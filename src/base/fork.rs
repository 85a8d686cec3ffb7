//! Fork: the library's one `pthread_atfork` registration, and the modules that hold a
//! process-wide lock across it.
//!
//! A module with a process-wide lock (or a thread that does not come along into a child)
//! registers its [`Hooks`] at a rank: the position of its lock in the library's lock order.
//! Before a fork the gate closes (`sync::gate`: no thread inside a stopper's or a channel's
//! lock), then each registered module's `prepare` runs, lowest rank first (it takes its lock);
//! after the fork, in both processes, `parent` or `child` run highest rank first (they release
//! it), then the gate opens. Registering is one atomic store, so a fork can never find a
//! registration half done; modules register when the library is loaded and again (at no cost)
//! on the paths that first use them.
//!
//! A child handler that could not restart what the child needs (a thread, say) asks for a
//! retry with [`retry_later`]: the next call that depends on it runs [`after_fork_check`].

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// A module's fork handlers.
pub(crate) struct Hooks {
    /// Before the fork, in the forking thread: take the module's process-wide lock.
    pub(crate) prepare: fn(),
    /// After the fork, in the parent: release it.
    pub(crate) parent: fn(),
    /// After the fork, in the child: release it, and forget the threads that did not come.
    pub(crate) child: fn(),
    /// In the child, on a later call, when `child` asked for it (`retry_later`).
    pub(crate) retry: fn(),
}

/// Ranks are `0..RANKS`.
pub(crate) const RANKS: usize = 4;

static SLOTS: [AtomicPtr<Hooks>; RANKS] = [
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
];
static RETRY: AtomicBool = AtomicBool::new(false);

/// Declares the calling module's fork hooks at a rank: its functions `fork_prepare`,
/// `fork_parent`, `fork_child` and `after_fork` (see [`Hooks`]). Defines `register_fork_hooks()`
/// (for the module's first-use paths) and registers them when the library is loaded
/// (`.init_array`).
macro_rules! fork_hooks {
    ($rank:expr) => {
        static FORK_HOOKS: $crate::base::fork::Hooks = $crate::base::fork::Hooks {
            prepare: fork_prepare,
            parent: fork_parent,
            child: fork_child,
            retry: after_fork,
        };

        extern "C" fn register_fork_hooks() {
            $crate::base::fork::register($rank, &FORK_HOOKS);
        }

        #[used]
        #[link_section = ".init_array"]
        static REGISTER_FORK_HOOKS: extern "C" fn() = register_fork_hooks;
    };
}
pub(crate) use fork_hooks;

/// Registers `hooks` at `rank` (idempotent; one atomic store).
pub(crate) fn register(rank: usize, hooks: &'static Hooks) {
    install();
    SLOTS[rank].store(hooks as *const Hooks as *mut Hooks, Ordering::Release);
}

fn registered() -> impl DoubleEndedIterator<Item = &'static Hooks> {
    SLOTS.iter().filter_map(|s| {
        // SAFETY: only `&'static Hooks` are stored.
        unsafe { s.load(Ordering::Acquire).as_ref() }
    })
}

fn prepare() {
    super::sync::gate::close();
    registered().for_each(|h| (h.prepare)());
}

fn parent() {
    registered().rev().for_each(|h| (h.parent)());
    super::sync::gate::open();
}

fn child() {
    registered().rev().for_each(|h| (h.child)());
    super::sync::gate::open_in_child();
}

/// In a forked child: asks for the modules' `retry` on the next library call that depends on
/// them.
pub(crate) fn retry_later() {
    RETRY.store(true, Ordering::Relaxed);
}

/// Restarts, in a forked child, what the child handlers could not (a thread the child needs).
/// Called on the paths that depend on them (waits, deadlines, registrations): one relaxed load
/// otherwise. A module whose restart fails again calls `retry_later` again.
pub(crate) fn after_fork_check() {
    if RETRY.load(Ordering::Relaxed) && RETRY.swap(false, Ordering::Relaxed) {
        registered().for_each(|h| (h.retry)());
    }
}

/// Registers the `pthread_atfork` handlers (once per process).
fn install() {
    super::sys::at_fork(prepare, parent, child);
}

/// The handlers are registered when the library is loaded, before any thread can be inside one
/// of its calls (registering them lazily, on first use, would leave a window in which a fork
/// copies a half-taken registration).
extern "C" fn install_at_load() {
    install();
}

#[used]
#[link_section = ".init_array"]
static INSTALL_AT_LOAD: extern "C" fn() = install_at_load;
