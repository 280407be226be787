//! Time as a dependency. The server supplies a clock that reads the system time; tests
//! supply a [`ManualClock`] they can move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use warrant_core::UnixTime;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in seconds since the Unix epoch.
    fn now(&self) -> UnixTime;

    /// Now, in milliseconds since the Unix epoch (what time-ordered ids are made from).
    /// By default the start of the current second.
    fn now_millis(&self) -> i64 {
        self.now().0.saturating_mul(1000)
    }

    /// Time since an arbitrary fixed origin, never going back: for measuring intervals
    /// shorter than a second (how long ago a server last confirmed it is current).
    fn ticks(&self) -> Duration;
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Milliseconds since the Unix epoch.
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn at(t: UnixTime) -> Self {
        ManualClock { millis: AtomicI64::new(t.0.saturating_mul(1000)) }
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.millis.fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Moves the clock forward by `millis` milliseconds.
    pub fn advance_millis(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.millis.load(Ordering::SeqCst).div_euclid(1000))
    }

    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }

    fn ticks(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.millis.load(Ordering::SeqCst)).unwrap_or(0))
    }
}
