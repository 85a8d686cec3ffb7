//! A stoppable multi-producer multi-consumer channel of 64-bit items on crossbeam-channel:
//! blocking send and receive return `Stopped` the moment the stopper stops.
//!
//! Closing never drops the crossbeam sender (other threads may be mid-send); a `closed` flag
//! and a second "closed" channel, disconnected by `close`, wake every blocked operation.
//! A receive after close keeps returning queued items until the queue is empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use crossbeam_utils::Backoff;

use crate::status::Status;
use crate::stopper::Stopper;
use crate::sys;

/// The largest capacity of a bounded channel (its slots are allocated up front); beyond it,
/// use an unbounded channel (capacity 0), which allocates as it grows.
pub const MAX_CAPACITY: usize = 1 << 24;

/// A stoppable MPMC queue of `u64` (bounded, or unbounded with capacity 0).
pub struct Channel {
    tx: Sender<u64>,
    rx: Receiver<u64>,
    closed: AtomicBool,
    close_tx: Mutex<Option<Sender<()>>>,
    close_rx: Receiver<()>,
}

fn instant_of(deadline: Option<u64>) -> Option<Instant> {
    deadline
        .map(|d| Instant::now() + std::time::Duration::from_nanos(d.saturating_sub(sys::now_ns())))
}

impl Channel {
    /// A channel holding at most `capacity` items; 0 means unbounded. `None` past
    /// [`MAX_CAPACITY`] (a bounded channel allocates its slots up front).
    pub fn with_capacity(capacity: usize) -> Option<Channel> {
        (capacity <= MAX_CAPACITY).then(|| Channel::new(capacity))
    }

    /// A channel holding at most `capacity` items; 0 means unbounded.
    ///
    /// # Panics
    /// When `capacity` exceeds [`MAX_CAPACITY`] (see [`Channel::with_capacity`]).
    pub fn new(capacity: usize) -> Channel {
        assert!(
            capacity <= MAX_CAPACITY,
            "channel capacity {capacity} exceeds {MAX_CAPACITY}"
        );
        let (tx, rx) = if capacity == 0 {
            crossbeam_channel::unbounded()
        } else {
            crossbeam_channel::bounded(capacity)
        };
        let (close_tx, close_rx) = crossbeam_channel::bounded(0);
        Channel {
            tx,
            rx,
            closed: AtomicBool::new(false),
            close_tx: Mutex::new(Some(close_tx)),
            close_rx,
        }
    }

    /// Sends `item`: `Ok`, `Stopped` (checked first), `TimedOut` or `Closed`.
    /// `deadline` is absolute on the monotonic clock (`None`: no limit).
    pub fn send(&self, item: u64, stopper: Option<&Stopper>, deadline: Option<u64>) -> Status {
        if stopper.is_some_and(|s| s.is_set()) {
            return Status::Stopped;
        }
        if self.closed.load(Ordering::Acquire) {
            return Status::Closed;
        }
        // Like crossbeam's own blocking calls: retry briefly before paying for a `Select`.
        let backoff = Backoff::new();
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Status::Ok,
                Err(TrySendError::Disconnected(_)) => return Status::Closed,
                Err(TrySendError::Full(_)) => {}
            }
            if backoff.is_completed()
                || stopper.is_some_and(|s| s.is_set())
                || self.closed.load(Ordering::Acquire)
            {
                break;
            }
            backoff.snooze();
        }
        if deadline.is_some_and(|d| d <= sys::now_ns()) {
            return Status::TimedOut;
        }
        let stop_rx = stopper.and_then(|s| s.inner.stop_receiver());
        if stopper.is_some() && stop_rx.is_none() {
            return Status::Stopped;
        }
        let at = instant_of(deadline);
        let mut sel = Select::new();
        let op_send = sel.send(&self.tx);
        let op_closed = sel.recv(&self.close_rx);
        let op_stop = stop_rx.as_ref().map(|r| sel.recv(r));
        loop {
            let oper = match at {
                Some(at) => match sel.select_deadline(at) {
                    Ok(o) => o,
                    Err(_) => return Status::TimedOut,
                },
                None => sel.select(),
            };
            let i = oper.index();
            if Some(i) == op_stop {
                let _ = oper.recv(stop_rx.as_ref().expect("stop receiver"));
                return Status::Stopped;
            } else if i == op_closed {
                let _ = oper.recv(&self.close_rx);
                return Status::Closed;
            } else if i == op_send {
                return match oper.send(&self.tx, item) {
                    Ok(()) => Status::Ok,
                    Err(_) => Status::Closed,
                };
            }
        }
    }

    /// Receives an item: `Ok(item)`, or `Err(Stopped | TimedOut | Closed)`; `Closed` only once
    /// the channel is closed and empty.
    pub fn recv(&self, stopper: Option<&Stopper>, deadline: Option<u64>) -> Result<u64, Status> {
        if stopper.is_some_and(|s| s.is_set()) {
            return Err(Status::Stopped);
        }
        let backoff = Backoff::new();
        loop {
            match self.rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Disconnected) => return Err(Status::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if backoff.is_completed()
                || stopper.is_some_and(|s| s.is_set())
                || self.closed.load(Ordering::Acquire)
            {
                break;
            }
            backoff.snooze();
        }
        if self.closed.load(Ordering::Acquire) {
            return self.rx.try_recv().map_err(|_| Status::Closed);
        }
        if deadline.is_some_and(|d| d <= sys::now_ns()) {
            return Err(Status::TimedOut);
        }
        let stop_rx = stopper.and_then(|s| s.inner.stop_receiver());
        if stopper.is_some() && stop_rx.is_none() {
            return Err(Status::Stopped);
        }
        let at = instant_of(deadline);
        let mut sel = Select::new();
        let op_recv = sel.recv(&self.rx);
        let op_closed = sel.recv(&self.close_rx);
        let op_stop = stop_rx.as_ref().map(|r| sel.recv(r));
        let oper = match at {
            Some(at) => match sel.select_deadline(at) {
                Ok(o) => o,
                Err(_) => return Err(Status::TimedOut),
            },
            None => sel.select(),
        };
        let i = oper.index();
        if Some(i) == op_stop {
            let _ = oper.recv(stop_rx.as_ref().expect("stop receiver"));
            Err(Status::Stopped)
        } else if i == op_closed {
            let _ = oper.recv(&self.close_rx);
            // Closed: drain what is left.
            self.rx.try_recv().map_err(|_| Status::Closed)
        } else {
            debug_assert_eq!(i, op_recv);
            oper.recv(&self.rx).map_err(|_| Status::Closed)
        }
    }

    /// Closes the channel: sends fail with `Closed`, receives drain then return `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
