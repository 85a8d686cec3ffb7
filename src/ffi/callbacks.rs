//! stopper_on_stop, stopper_unregister.

use std::ffi::c_void;

use super::{boundary, put, stopper, stopper_arg, STOPPER_EINVAL, STOPPER_OK};
use crate::{RawFn, Status};

/// A stop callback: called once with `user_data` and the stop's reason, on the thread that
/// stopped the stopper (or on the registering thread, when it was already stopped).
pub type stopper_callback_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, reason: i32)>;

unsafe fn call_c_callback(ctx: usize, data: usize, _tid: u64, reason: i32) {
    // SAFETY: `ctx` (its provenance exposed) was made from a non-null `stopper_callback_fn` in `stopper_on_stop`.
    let f: unsafe extern "C" fn(*mut c_void, i32) =
        unsafe { std::mem::transmute(std::ptr::with_exposed_provenance::<()>(ctx)) };
    // SAFETY: the C caller registered `f` with `data` for exactly this call.
    unsafe { f(data as *mut c_void, reason) }
}

/// Registers `fn(user_data, reason)` to run once when `s` stops. Returns `STOPPER_OK` and a
/// nonzero id in `*id` (`id` may be NULL when the caller will never unregister). When `s` is
/// already stopped it runs `fn` at once on the calling thread, registers nothing, sets `*id`
/// to 0 and returns `STOPPER_STOPPED`. Callbacks run once each, in registration order, on the
/// thread that stops `s`, with no lock of the library held: a callback may call any function
/// of the library. NULL `s` or `fn`: `STOPPER_EINVAL`. `STOPPER_ENOMEM` (nothing registered,
/// `fn` not called, `*id` set to 0) when memory cannot be had.
#[no_mangle]
pub extern "C" fn stopper_on_stop(
    s: *mut stopper,
    r#fn: stopper_callback_fn,
    user_data: *mut c_void,
    id: *mut u64,
) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        let Some(f) = r#fn else { return STOPPER_EINVAL };
        let raw = RawFn {
            call: call_c_callback,
            ctx: (f as *const ()).expose_provenance(),
            data: user_data as usize,
        };
        // SAFETY: the C contract: `fn` may be called with `user_data` from any thread until it
        // ran or was unregistered.
        match unsafe { s.on_stop_raw(raw) } {
            Ok(new_id) => {
                put(id, new_id);
                STOPPER_OK
            }
            Err(st) => {
                put(id, 0);
                st.code()
            }
        }
    })
}

/// Removes callback `id` from `s`. Returns `STOPPER_OK` when it was removed before it ran (it
/// never will), `STOPPER_STOPPED` when it has run. If it is running on another thread at that
/// moment, blocks until it returns, so `user_data` may be freed as soon as this returns;
/// called from inside that same callback it does not block. Id 0, an id `s` never issued, or
/// one already removed (by an earlier `stopper_unregister`, also one made during the stop, by
/// a callback): `STOPPER_EINVAL`, before and after the stop (`STOPPER_STOPPED` always means
/// that the callback ran). NULL `s`: `STOPPER_EINVAL`.
#[no_mangle]
pub extern "C" fn stopper_unregister(s: *mut stopper, id: u64) -> i32 {
    boundary!({
        let s = stopper_arg!(s);
        if id == 0 {
            return Status::Inval.code();
        }
        s.unregister(id).code()
    })
}
