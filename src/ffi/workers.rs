//! Workers, join, the current stopper, the interrupt hook.

use std::ffi::c_void;

use super::{boundary, stopper, stopper_arg, STOPPER_EINVAL};
use crate::{Hook, HookFn, RawFn};

/// An interrupt hook function: called with the hook's `data`, the id of the worker thread to
/// interrupt (its `pthread_self()`), and the stop's reason.
pub type stopper_interrupt_fn =
    Option<unsafe extern "C" fn(data: *mut c_void, thread_id: u64, reason: i32)>;

/// How a stop reaches a worker blocked where no flag is checked. When the stopper stops,
/// `fn(data, worker_thread_id, reason)` is called once for the worker on the stopping
/// thread; with `repeat_ns > 0`, again every `repeat_ns` from the library's service thread
/// until the worker exits. No call for a thread starts after its `stopper_exit` returned.
/// cbindgen:field-names=[fn, data, repeat_ns]
#[repr(C)]
pub struct stopper_hook {
    /// Called to interrupt a worker.
    pub func: stopper_interrupt_fn,
    /// Passed to `fn` unchanged.
    pub data: *mut c_void,
    /// `<= 0`: once; `> 0`: again every `repeat_ns` while the thread is inside.
    pub repeat_ns: i64,
}

/// A thread body for `stopper_spawn`.
pub type stopper_thread_fn = Option<unsafe extern "C" fn(arg: *mut c_void)>;

unsafe fn call_c_hook(ctx: usize, data: usize, tid: u64, reason: i32) {
    // SAFETY: `ctx` (its provenance exposed) was made from a non-null `stopper_interrupt_fn` in `stopper_enter`.
    let f: unsafe extern "C" fn(*mut c_void, u64, i32) =
        unsafe { std::mem::transmute(std::ptr::with_exposed_provenance::<()>(ctx)) };
    // SAFETY: the C caller entered with this hook; it is valid until the worker exits.
    unsafe { f(data as *mut c_void, tid, reason) }
}

/// Makes the calling thread a worker of `s` (it holds a reference to `s` until it exits), with
/// an optional interrupt hook (`hook` may be NULL; it is copied). Enters nest per thread.
/// Returns `STOPPER_OK`, or `STOPPER_STOPPED` when `s` is already stopped (the thread is inside
/// all the same and must exit; no hook is called for it). A thread that ends inside a stopper
/// is exited automatically. NULL `s`, or a hook whose `fn` is NULL: `STOPPER_EINVAL`.
/// `STOPPER_ENOMEM` (the thread is not inside) when memory cannot be had.
#[no_mangle]
pub extern "C" fn stopper_enter(s: *mut stopper, hook: *const stopper_hook) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        let hook = if hook.is_null() {
            None
        } else {
            // SAFETY: the caller passes NULL or a valid hook.
            let h = unsafe { &*hook };
            let Some(f) = h.func else {
                return STOPPER_EINVAL;
            };
            Some(Hook {
                func: HookFn::Raw(RawFn {
                    call: call_c_hook,
                    ctx: (f as *const ()).expose_provenance(),
                    data: h.data as usize,
                }),
                repeat_ns: h.repeat_ns,
            })
        };
        s.enter_raw(hook).code()
    })
}

/// Leaves `s`, which must be the calling thread's innermost entered stopper (else
/// `STOPPER_EINVAL`, and nothing changes). Waits for a hook call in progress for this thread;
/// no hook call for it starts after this returns.
#[no_mangle]
pub extern "C" fn stopper_exit(s: *mut stopper) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        s.exit().code()
    })
}

/// The calling thread's innermost entered stopper, borrowed (valid until the thread exits
/// it), or NULL. `stopper_is_set(stopper_current())` works on any thread.
#[no_mangle]
pub extern "C" fn stopper_current() -> *mut stopper {
    boundary!({ crate::ext::workers::current_ptr() as *mut stopper })
}

/// Stops `s` (reason `STOPPER_REASON_REQUESTED` if it was running), then waits until every
/// worker of `s` has exited. Returns `STOPPER_OK`, `STOPPER_TIMEDOUT` (`timeout_ns` passed;
/// negative: no limit), or `STOPPER_EDEADLK` (without stopping) when the calling thread is
/// itself a worker of `s`. NULL `s`: `STOPPER_EINVAL`.
#[no_mangle]
pub extern "C" fn stopper_join(s: *mut stopper, timeout_ns: i64) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        s.join_deadline(super::deadline(timeout_ns)).code()
    })
}

struct SendArg(usize);

/// Starts a native thread that enters `s`, runs `fn(arg)` and exits `s`; `stopper_join(s, …)`
/// waits for it (it counts as a worker from this call on). The thread starts even when `s` is
/// already stopped (`fn` sees the stop). The thread has the process's default thread stack
/// (`RLIMIT_STACK`). Returns `STOPPER_OK`, `STOPPER_EOS` (with `errno`) when the thread could not
/// be created, `STOPPER_ENOMEM` when memory cannot be had, `STOPPER_EINVAL` for NULL `s` or
/// `fn`.
#[no_mangle]
pub extern "C" fn stopper_spawn(s: *mut stopper, r#fn: stopper_thread_fn, arg: *mut c_void) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        let Some(f) = r#fn else { return STOPPER_EINVAL };
        let arg = SendArg(arg as usize);
        s.spawn(move || {
            let arg = arg;
            // SAFETY: the C caller asked for `f(arg)` to run on the new thread.
            unsafe { f(arg.0 as *mut c_void) }
        })
        .code()
    })
}

/// The calling thread's id as hooks receive it: `pthread_self()`, which on Linux is also what
/// CPython's `threading.get_ident()` returns.
#[no_mangle]
pub extern "C" fn stopper_thread_id() -> u64 {
    boundary!({ crate::thread_id() })
}

/// A ready-made interrupt hook: `pthread_kill(thread_id, (int)(intptr_t)signo)`. Use it with
/// `stopper_install_signal(signo)`, so the signal interrupts a blocking system call (`read`,
/// `accept`, `nanosleep`, `poll`…) with `EINTR`: `stopper_hook h = { stopper_hook_signal,
/// (void *)(intptr_t)SIGUSR1, 0 };`
#[no_mangle]
pub extern "C" fn stopper_hook_signal(signo: *mut c_void, thread_id: u64, reason: i32) {
    boundary!({
        let _ = reason;
        let _ = crate::interrupt_thread(thread_id, signo as isize as i32);
    })
}

/// Installs, once, a handler for `signo` that does nothing and is not `SA_RESTART`, so a
/// blocking system call in a signalled thread returns `EINTR`. Returns `STOPPER_OK` (also when
/// already installed by the library), or `STOPPER_EINVAL` when the signal already has another
/// disposition (a handler, or `SIG_IGN`: the host's signals are never taken), is out of range,
/// or cannot be caught safely (`SIGKILL`, `SIGSTOP`, `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`,
/// `SIGABRT`, `SIGTRAP`, `SIGSYS`). Use `SIGUSR1`, `SIGUSR2` or a real-time signal.
#[no_mangle]
pub extern "C" fn stopper_install_signal(signo: i32) -> i32 {
    boundary!({ crate::install_signal(signo).code() })
}
