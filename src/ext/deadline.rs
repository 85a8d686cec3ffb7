//! Deadlines: a stopper stopped by the service thread when its time comes
//! (`stopper_stop_after`), and the time left before the earliest deadline of a stopper and its
//! ancestors (`stopper_remaining`).
//!
//! A stopper's armed deadline is an attachment holding the service timer's (due, id). The
//! timer holds a reference to the stopper until it fires or is cancelled; the stop cancels it
//! (its step of the stop), so a stopped stopper keeps neither itself nor the service thread
//! alive.

use crate::base::rc::Arc;
use crate::base::status::Status;
use crate::base::sys;
use crate::ext::service;
use crate::token::attach::{Attachment, Panic};
use crate::token::inner::Inner;
use crate::token::stopper::{Stopper, REASON_DEADLINE};

/// A stopper's armed deadline: (due on the monotonic clock, service timer id).
#[derive(Default)]
struct Deadline(Option<(u64, u64)>);

impl Attachment for Deadline {
    const ORDER: u8 = 0;

    /// The deadline can no longer do anything: cancel its timer, which holds a reference to
    /// the stopper (dropped here, with no lock held).
    fn on_stop(stopper: &Arc<Inner>, _reason: i32) -> Option<Panic> {
        let armed = {
            let mut g = stopper.lock_slow();
            g.attachment::<Deadline>().and_then(|d| d.0.take())
        };
        if let Some((due, id)) = armed {
            drop(service::cancel(due, id));
        }
        None
    }
}

/// Arms (delay > 0), fires (delay 0: a deadline already passed, so the stop is done on this
/// thread before the call returns) or disarms (delay < 0) the deadline of `stopper`.
fn stop_after(stopper: &Arc<Inner>, delay_ns: i64, reason: i32) -> Status {
    let reason = if reason == 0 { REASON_DEADLINE } else { reason };
    if stopper.is_unstoppable() {
        return Status::Ok; // no deadline can stop it: none is armed
    }
    let mut g = match stopper.try_lock_slow() {
        Ok(g) => g,
        Err(st) => return st,
    };
    if stopper.is_set() {
        return Status::Stopped;
    }
    let deadline = match g.attach(Deadline::default) {
        Ok(d) => d,
        Err(st) => return st,
    };
    let old = deadline.0.take();
    // A cancelled timer holds a reference to the stopper: dropped with no lock held.
    let mut dropped = old.and_then(|(due, id)| service::cancel(due, id));
    let status = if delay_ns < 0 {
        Status::Ok
    } else if delay_ns == 0 {
        // Claimed under the lock, as a deadline that fires is: a racing `stop` either won
        // before (then the stop is not ours) or loses to this one.
        let won = stopper.claim(reason);
        drop(g);
        dropped.take();
        if !won {
            return Status::Stopped;
        }
        stopper.do_stop_actions(reason);
        return Status::Ok;
    } else {
        let due = sys::now_ns().saturating_add(delay_ns as u64);
        let timer = service::Timer::Stopper {
            target: Arc::clone(stopper),
            fire: fired,
            arg: 0,
            reason,
        };
        match service::schedule(due, timer) {
            Ok(id) => {
                deadline.0 = Some((due, id));
                Status::Ok
            }
            Err(s) => s,
        }
    };
    drop(g);
    dropped.take();
    status
}

/// Called by the service thread when deadline timer `id` comes due. The stop is claimed under
/// the lock, so a disarm racing with the fire either wins (no stop) or sees the stop.
fn fired(stopper: &Arc<Inner>, id: u64, _arg: u64, reason: i32) {
    let won = {
        let mut g = stopper.lock_slow();
        let Some(deadline) = g.attachment::<Deadline>() else {
            return;
        };
        match deadline.0 {
            Some((_, armed)) if armed == id => deadline.0 = None,
            _ => return, // re-armed or disarmed meanwhile
        }
        stopper.claim(reason)
    };
    if won {
        Arc::clone(stopper).do_stop_actions(reason);
    }
}

/// Nanoseconds to the earliest deadline of `stopper` and its ancestors: -1 for none, 0 once
/// stopped.
fn remaining_ns(stopper: &Inner) -> i64 {
    if stopper.is_set() {
        return 0;
    }
    match earliest_deadline(stopper) {
        None => -1,
        Some(due) => (due.saturating_sub(sys::now_ns())).clamp(1, i64::MAX as u64) as i64,
    }
}

fn earliest_deadline(stopper: &Inner) -> Option<u64> {
    let (own, parents) = {
        let mut g = stopper.lock_existing()?;
        let own = g
            .attachment::<Deadline>()
            .and_then(|d| d.0.map(|(due, _)| due));
        let parents = g
            .parents
            .iter()
            .map(|(p, _)| Arc::clone(p))
            .collect::<Vec<_>>();
        (own, parents)
    };
    parents
        .iter()
        .filter_map(|p| earliest_deadline(p))
        .chain(own)
        .min()
}

impl Stopper {
    /// Arms (or re-arms) a deadline: stopped with `reason` (0: [`crate::REASON_DEADLINE`])
    /// after `delay`. `None` disarms. A zero `delay` is a deadline already passed: the stop is
    /// done on the calling thread before this returns (as Go's `WithDeadline` in the past).
    pub fn stop_after(&self, delay: Option<std::time::Duration>, reason: i32) -> Status {
        let ns = delay.map_or(-1, |d| d.as_nanos().min(i64::MAX as u128) as i64);
        stop_after(&self.inner, ns, reason)
    }

    pub(crate) fn stop_after_ns(&self, delay_ns: i64, reason: i32) -> Status {
        stop_after(&self.inner, delay_ns, reason)
    }

    /// Time left before the earliest deadline of this stopper and its ancestors: `None` when
    /// there is none, zero when stopped.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        match remaining_ns(&self.inner) {
            -1 => None,
            ns => Some(std::time::Duration::from_nanos(ns.max(0) as u64)),
        }
    }

    pub(crate) fn remaining_ns(&self) -> i64 {
        remaining_ns(&self.inner)
    }
}
