//! The stoppable channel.

use crate::base::rc::Arc;

use super::{
    borrow_chan, boundary, deadline, put, stopper, stopper_chan, STOPPER_EINVAL, STOPPER_OK,
};
use crate::Channel;

/// The largest capacity of a bounded channel; beyond it, use an unbounded channel (capacity 0).
/// A channel allocates as items arrive, never its capacity up front.
pub const STOPPER_CHAN_MAX_CAPACITY: usize = 16777216;

/// Creates a channel holding at most `capacity` items (0: unbounded). The caller owns the
/// returned reference (release it with `stopper_chan_release`). Returns NULL with `errno` =
/// `EINVAL` when `capacity` exceeds `STOPPER_CHAN_MAX_CAPACITY`, NULL with `errno` = `ENOMEM`
/// when memory cannot be had. Memory follows the items queued, not the capacity.
#[no_mangle]
pub extern "C" fn stopper_chan_new(capacity: usize) -> *mut stopper_chan {
    boundary!({
        match Channel::with_capacity(capacity) {
            Some(c) => match Arc::try_new(c) {
                Ok(c) => Arc::into_raw(c) as *mut stopper_chan,
                Err(_) => {
                    crate::base::sys::set_errno(libc::ENOMEM);
                    std::ptr::null_mut()
                }
            },
            None => {
                crate::base::sys::set_errno(libc::EINVAL);
                std::ptr::null_mut()
            }
        }
    })
}

/// Adds a reference to `c` and returns `c` (NULL gives NULL).
#[no_mangle]
pub extern "C" fn stopper_chan_retain(c: *mut stopper_chan) -> *mut stopper_chan {
    boundary!({
        if !c.is_null() {
            // SAFETY: `c` is a live channel the caller holds a reference to.
            unsafe { Arc::increment_strong_count(c as *const Channel) };
        }
        c
    })
}

/// Drops one reference to `c`; the last one frees it and the items still queued. NULL is
/// ignored.
#[no_mangle]
pub extern "C" fn stopper_chan_release(c: *mut stopper_chan) {
    boundary!({
        if !c.is_null() {
            // SAFETY: the caller gives back one reference it owns.
            drop(unsafe { Arc::from_raw(c as *const Channel) });
        }
    })
}

/// Sends `item`, blocking while the channel is full. Returns `STOPPER_OK`, `STOPPER_STOPPED`
/// the moment `s` stops (checked first; NULL `s` never stops), `STOPPER_TIMEDOUT` after
/// `timeout_ns` (negative: no limit; 0: never blocks), `STOPPER_CLOSED` when the channel is
/// closed, `STOPPER_ENOMEM` when the queue cannot grow. NULL `c`: `STOPPER_EINVAL`.
#[no_mangle]
pub extern "C" fn stopper_chan_send(
    c: *mut stopper_chan,
    item: u64,
    s: *const stopper,
    timeout_ns: i64,
) -> i32 {
    boundary!({
        // SAFETY: NULL or live handles the caller holds.
        let (Some(c), s) = (unsafe { borrow_chan(c) }, unsafe { super::borrow(s) }) else {
            return STOPPER_EINVAL;
        };
        c.send(item, s.as_deref(), deadline(timeout_ns)).code()
    })
}

/// Receives the oldest item into `*item`, blocking while the channel is empty. Returns
/// `STOPPER_OK`, `STOPPER_STOPPED` the moment `s` stops (checked first; NULL `s` never stops),
/// `STOPPER_TIMEDOUT` after `timeout_ns` (negative: no limit; 0: never blocks),
/// `STOPPER_CLOSED` once the channel is closed and empty (queued items are still received after
/// `stopper_chan_close`). `*item` is written only on `STOPPER_OK`. NULL `c` or `item`:
/// `STOPPER_EINVAL`.
#[no_mangle]
pub extern "C" fn stopper_chan_recv(
    c: *mut stopper_chan,
    item: *mut u64,
    s: *const stopper,
    timeout_ns: i64,
) -> i32 {
    boundary!({
        if item.is_null() {
            return STOPPER_EINVAL;
        }
        // SAFETY: NULL or live handles the caller holds.
        let (Some(c), s) = (unsafe { borrow_chan(c) }, unsafe { super::borrow(s) }) else {
            return STOPPER_EINVAL;
        };
        match c.recv(s.as_deref(), deadline(timeout_ns)) {
            Ok(v) => {
                put(item, v);
                STOPPER_OK
            }
            Err(st) => st.code(),
        }
    })
}

/// Closes `c`: later sends return `STOPPER_CLOSED`, blocked ones wake with it; receives drain
/// the queue, then return `STOPPER_CLOSED`. Idempotent; NULL is ignored.
#[no_mangle]
pub extern "C" fn stopper_chan_close(c: *mut stopper_chan) {
    boundary!({
        // SAFETY: NULL or a live channel the caller holds.
        if let Some(c) = unsafe { borrow_chan(c) } {
            c.close();
        }
    })
}

/// The number of items queued now (0 for NULL).
#[no_mangle]
pub extern "C" fn stopper_chan_len(c: *const stopper_chan) -> usize {
    boundary!({
        // SAFETY: NULL or a live channel the caller holds.
        unsafe { borrow_chan(c) }.map_or(0, |c| c.len())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_limit_is_the_core_limit() {
        assert_eq!(
            super::STOPPER_CHAN_MAX_CAPACITY,
            crate::ext::chan::MAX_CAPACITY
        );
    }
}
