//! The stop descriptor (`stopper_fd`): an eventfd, made on first use, that polls readable
//! from the stop on, for event loops (`select`, `poll`, `epoll`, asyncio's `add_reader`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::base::rc::Arc;
use crate::base::sys;
use crate::token::attach::{Attachment, Panic};
use crate::token::inner::Inner;
use crate::token::stopper::Stopper;

/// A stopper's descriptor, owned by the stopper (closed when it is freed).
struct Descriptor(OwnedFd);

impl Attachment for Descriptor {
    /// Signalled before the workers' hooks are called (SPEC's order).
    const ORDER: u8 = 10;

    fn on_stop(stopper: &Arc<Inner>, _reason: i32) -> Option<Panic> {
        let mut g = stopper.lock_slow();
        if let Some(d) = g.attachment::<Descriptor>() {
            sys::eventfd_signal(d.0.as_raw_fd());
        }
        None
    }
}

impl Stopper {
    /// A descriptor (owned by the stopper) that polls readable from the stop on.
    pub fn fd(&self) -> std::io::Result<RawFd> {
        let mut g = self
            .inner
            .try_lock_slow()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        if let Some(d) = g.attachment::<Descriptor>() {
            return Ok(d.0.as_raw_fd());
        }
        let fd = sys::eventfd()?;
        let raw = fd.as_raw_fd();
        g.attach(|| Descriptor(fd))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        // Under the lock: a stop either happened before (its step found no descriptor, so it
        // is signalled here) or will signal it in its step.
        if self.is_set() {
            sys::eventfd_signal(raw);
        }
        Ok(raw)
    }
}

impl std::os::fd::AsRawFd for Stopper {
    /// The stop descriptor; panics only if the descriptor cannot be created (out of fds).
    fn as_raw_fd(&self) -> RawFd {
        self.fd().expect("stopper descriptor")
    }
}
