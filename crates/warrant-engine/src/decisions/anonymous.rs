//! Anonymous denies: decisions on requests whose token is not a warrant of ours (junk,
//! forged, foreign, expired). Anybody can send them, so they must not be able to grow the
//! audit log without bound. Within each window the first few are recorded one by one, as
//! any decision is; the rest are only counted, and one aggregate record per window says
//! how many there were, when, and with which deny codes. Together with the size bounds on
//! what a record keeps of caller input, this caps what an unauthenticated caller can add
//! to the log at a few records per window, however fast it calls.
//!
//! The state here is pure: time is passed in and nothing is written; the engine writes
//! the records this hands out.

use std::collections::BTreeMap;
use std::sync::Mutex;

use warrant_core::audit::details::AnonymousDenies;
use warrant_core::audit::AuditEntry;
use warrant_core::decision::DecisionCode;
use warrant_core::UnixTime;

/// How anonymous denies are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousConfig {
    /// The window, in seconds.
    pub window_secs: i64,
    /// How many anonymous denies per window get a record of their own.
    pub recorded_per_window: u32,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig { window_secs: 10, recorded_per_window: 20 }
    }
}

/// What to do with one anonymous deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Record it like any decision.
    Record,
    /// Count it into the window's aggregate; no record of its own.
    Aggregate,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<UnixTime>,
    recorded: u32,
    aggregated: u64,
    first: Option<UnixTime>,
    last: Option<UnixTime>,
    codes: BTreeMap<DecisionCode, u64>,
}

impl Window {
    /// The aggregate record of this window, if anything was aggregated.
    fn summary(&self) -> Option<AuditEntry> {
        let (first_at, last_at) = (self.first?, self.last?);
        if self.aggregated == 0 {
            return None;
        }
        let details = AnonymousDenies { count: self.aggregated, first_at, last_at, codes: self.codes.clone() };
        match AuditEntry::with_details(last_at, details) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::error!(error = %e, "the aggregate of anonymous denies could not be encoded");
                None
            }
        }
    }
}

/// The anonymous-deny accounting.
#[derive(Debug, Default)]
pub struct AnonymousAccounting {
    config: AnonymousConfig,
    window: Mutex<Window>,
}

impl AnonymousAccounting {
    /// Accounting with `config`.
    pub fn new(config: AnonymousConfig) -> Self {
        AnonymousAccounting { config, window: Mutex::new(Window::default()) }
    }

    /// Admits one anonymous deny with `code` at `now`. Returns whether it gets a record of
    /// its own, and the aggregate record of a window that has just closed, if any. A
    /// poisoned lock records (failing towards more evidence, never less).
    pub fn admit(&self, code: DecisionCode, now: UnixTime) -> (Admission, Option<AuditEntry>) {
        let Ok(mut w) = self.window.lock() else { return (Admission::Record, None) };
        let closed = match w.start {
            Some(start) if now.0 < start.0.saturating_add(self.config.window_secs) => None,
            _ => {
                let summary = w.summary();
                *w = Window { start: Some(now), ..Window::default() };
                summary
            }
        };
        if w.recorded < self.config.recorded_per_window {
            w.recorded += 1;
            return (Admission::Record, closed);
        }
        w.aggregated += 1;
        w.first.get_or_insert(now);
        w.last = Some(now);
        *w.codes.entry(code).or_insert(0) += 1;
        (Admission::Aggregate, closed)
    }

    /// The aggregate record of the window if it has ended by `now` (or unconditionally
    /// when `force`, at shutdown); the window then starts afresh.
    pub fn close(&self, now: UnixTime, force: bool) -> Option<AuditEntry> {
        let mut w = self.window.lock().ok()?;
        let ended = w.start.is_some_and(|start| now.0 >= start.0.saturating_add(self.config.window_secs));
        if !(ended || force) {
            return None;
        }
        let summary = w.summary();
        *w = Window::default();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_per_window_are_recorded_the_rest_aggregated() {
        let a = AnonymousAccounting::new(AnonymousConfig { window_secs: 10, recorded_per_window: 3 });
        let t = UnixTime(1_000);
        for _ in 0..3 {
            assert_eq!(a.admit(DecisionCode::InvalidToken, t), (Admission::Record, None));
        }
        for _ in 0..500 {
            assert_eq!(a.admit(DecisionCode::InvalidToken, t).0, Admission::Aggregate);
        }
        assert_eq!(a.admit(DecisionCode::Revoked, UnixTime(1_009)).0, Admission::Aggregate);
        assert!(a.close(UnixTime(1_009), false).is_none(), "the window is still open");
        // The next window: its first deny is recorded, and the closed window's aggregate
        // comes out once.
        let (admission, summary) = a.admit(DecisionCode::InvalidToken, UnixTime(1_010));
        assert_eq!(admission, Admission::Record);
        let summary = summary.unwrap();
        assert_eq!(summary.details["aggregated"]["count"], 501);
        assert_eq!(summary.details["aggregated"]["codes"]["invalid_token"], 500);
        assert_eq!(summary.details["aggregated"]["codes"]["revoked"], 1);
        assert_eq!(summary.details["aggregated"]["first_at"], 1_000);
        assert_eq!(summary.details["aggregated"]["last_at"], 1_009);
        assert_eq!(summary.decision.as_deref(), Some("deny"));
        assert!(a.admit(DecisionCode::InvalidToken, UnixTime(1_011)).1.is_none());
    }

    #[test]
    fn a_window_without_aggregated_denies_needs_no_summary() {
        let a = AnonymousAccounting::new(AnonymousConfig { window_secs: 10, recorded_per_window: 3 });
        a.admit(DecisionCode::InvalidToken, UnixTime(1_000));
        assert!(a.close(UnixTime(2_000), false).is_none());
        for _ in 0..5 {
            a.admit(DecisionCode::InvalidToken, UnixTime(3_000));
        }
        let summary = a.close(UnixTime(3_001), true).unwrap();
        assert_eq!(summary.details["aggregated"]["count"], 2);
        assert!(a.close(UnixTime(3_001), true).is_none(), "handed out once");
    }
}
