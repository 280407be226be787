//! Time as a dependency. The server supplies a clock that reads the system time; tests
//! supply a [`ManualClock`] they can move.

use std::sync::atomic::{AtomicI64, Ordering};

use warrant_core::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn at(t: UnixTime) -> Self {
        ManualClock(AtomicI64::new(t.0))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}
