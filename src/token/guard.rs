//! Guards and checks: [`DropGuard`] (stop on scope exit), [`Stopper::check`] with its error
//! [`Stopped`], and [`Stopper::never`].

use std::fmt;

use crate::token::stopper::{Stopper, REASON_DEADLINE, REASON_REQUESTED, REASON_SIGNAL};

/// The error of [`Stopper::check`]: the stopper is stopped, with this reason.
///
/// It is a [`std::error::Error`], so `s.check()?` works in any function that returns
/// `Result<_, Box<dyn Error>>` (or `anyhow::Result`, and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stopped {
    reason: i32,
}

impl Stopped {
    /// An error for a stop with `reason`.
    pub fn new(reason: i32) -> Stopped {
        Stopped { reason }
    }

    /// The reason recorded by the stop ([`crate::REASON_REQUESTED`], a deadline's, a
    /// signal's, or the caller's own number).
    pub fn reason(&self) -> i32 {
        self.reason
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            REASON_REQUESTED => write!(f, "stopped: stop requested (reason {})", self.reason),
            REASON_DEADLINE => write!(f, "stopped: deadline passed (reason {})", self.reason),
            REASON_SIGNAL => write!(f, "stopped: process signal (reason {})", self.reason),
            r => write!(f, "stopped (reason {r})"),
        }
    }
}

impl std::error::Error for Stopped {}

/// Stops its stopper (with [`crate::REASON_REQUESTED`]) when dropped, unless disarmed: made by
/// [`Stopper::drop_guard`].
///
/// A scope that owns workers keeps one so that they are told to stop however the scope is
/// left: by its end, by `?`, or by a panic. Dropped while this thread is panicking, the guard
/// still stops the stopper; a panic of a stop callback then is not raised (a second panic
/// during unwinding would abort the process): the first panic goes on.
#[must_use = "dropping the guard stops the stopper at once"]
pub struct DropGuard {
    stopper: Option<Stopper>,
}

impl DropGuard {
    /// Gives the stopper back without stopping it.
    pub fn disarm(mut self) -> Stopper {
        self.stopper
            .take()
            .expect("a DropGuard holds its stopper until disarmed or dropped")
    }

    /// The stopper this guard will stop.
    pub fn stopper(&self) -> &Stopper {
        self.stopper
            .as_ref()
            .expect("a DropGuard holds its stopper until disarmed or dropped")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let Some(s) = self.stopper.take() else { return };
        if std::thread::panicking() {
            // Every callback still runs; only their panic is dropped (see the type's docs).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s.stop(REASON_REQUESTED);
            }));
        } else {
            s.stop(REASON_REQUESTED);
        }
    }
}

impl fmt::Debug for DropGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropGuard")
            .field("stopper", &self.stopper)
            .finish()
    }
}

impl Stopper {
    /// `Err(Stopped)` with the reason once stopped, `Ok(())` while running: the stop check of a
    /// loop, written with `?`. As cheap as [`Stopper::is_set`] while running (one atomic load).
    ///
    /// ```
    /// use stopper::{Stopped, Stopper};
    ///
    /// fn work(s: &Stopper, items: &[u32]) -> Result<u32, Stopped> {
    ///     let mut sum = 0;
    ///     for i in items {
    ///         s.check()?;
    ///         sum += i;
    ///     }
    ///     Ok(sum)
    /// }
    ///
    /// let s = Stopper::new();
    /// assert_eq!(work(&s, &[1, 2, 3]), Ok(6));
    /// s.stop(5);
    /// let err = work(&s, &[1, 2, 3]).unwrap_err();
    /// assert_eq!(err.reason(), 5);
    /// assert_eq!(err.to_string(), "stopped (reason 5)");
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Stopped> {
        if self.is_set() {
            Err(Stopped::new(self.reason()))
        } else {
            Ok(())
        }
    }

    /// Turns this handle into a guard that stops the stopper (with
    /// [`crate::REASON_REQUESTED`]) when dropped; [`DropGuard::disarm`] gives the handle back
    /// instead. Other clones are unaffected: they see the stop.
    ///
    /// ```
    /// use stopper::Stopper;
    ///
    /// let s = Stopper::new();
    /// let worker = {
    ///     let s = s.clone();
    ///     std::thread::spawn(move || s.wait(None))
    /// };
    /// {
    ///     let _guard = s.clone().drop_guard();
    ///     // ... work that may return early or panic ...
    /// } // the guard stops `s` here
    /// assert_eq!(worker.join().unwrap(), stopper::Wait::Stopped);
    /// assert_eq!(s.reason(), stopper::REASON_REQUESTED);
    ///
    /// let t = Stopper::new();
    /// let guard = t.clone().drop_guard();
    /// let back = guard.disarm(); // no stop
    /// assert!(!back.is_set() && !t.is_set());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard {
            stopper: Some(self),
        }
    }

    /// A stopper that nobody can stop: for an API that takes a stopper when the caller has none
    /// to give (like `context.Background()` in Go or `CancellationToken.None` in .NET).
    ///
    /// Its [`stop`](Stopper::stop) returns `false` and changes nothing, a deadline armed on it
    /// never fires ([`Stopper::stop_after`] arms none), and its waits end only at their
    /// time-out; a callback registered on it never runs (it is dropped with the stopper, or
    /// when its guard unregisters it). Each call makes a new, independent stopper; a
    /// [`child`](Stopper::child) of it is an ordinary stopper that can be stopped itself, and
    /// that no parent ever stops.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stopper::{Stopper, Wait};
    ///
    /// let s = Stopper::never();
    /// assert!(!s.stop(0));
    /// assert!(!s.is_set());
    /// assert!(s.check().is_ok());
    /// assert_eq!(s.wait(Some(Duration::from_millis(1))), Wait::TimedOut);
    ///
    /// let c = s.child();
    /// assert!(c.stop(0)); // the child is a stopper like any other
    /// assert!(!s.is_set());
    /// ```
    pub fn never() -> Stopper {
        let s = Stopper::new();
        s.inner.make_unstoppable();
        s
    }
}
