//! The trust score: a number in [0, 1] per agent, lowered by signals, recovering with time.
//!
//! Each [`Signal`] costs the weight configured for its kind. The score then climbs back
//! linearly toward 1 with the time that passes without a signal, never with the number
//! of clean requests, so an agent cannot wash its score by spamming harmless calls.
//! Below `quarantine_below` the agent is quarantined until its owner resumes it, which
//! gives it back at least `resume_floor`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::signal::{Signal, SignalKind};
use crate::time::UnixTime;

/// How signals weigh on trust and how it recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustConfig {
    /// The score a new agent starts with.
    pub initial: f64,
    /// Below this score, the agent is quarantined.
    pub quarantine_below: f64,
    /// How much the score recovers per hour without a signal (linearly, up to 1).
    pub recovery_per_hour: f64,
    /// The score an agent is given back, at least, when its owner resumes it.
    pub resume_floor: f64,
    /// What each kind of signal costs; a kind not listed costs nothing.
    pub weights: BTreeMap<SignalKind, f64>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            initial: 1.0,
            quarantine_below: 0.3,
            recovery_per_hour: 0.1,
            resume_floor: 0.6,
            weights: BTreeMap::from([
                (SignalKind::NovelAction, 0.1),
                (SignalKind::NovelResource, 0.1),
                (SignalKind::RateSpike, 0.25),
                (SignalKind::DenyStreak, 0.25),
                (SignalKind::DelegationBurst, 0.2),
                (SignalKind::OffHours, 0.02),
            ]),
        }
    }
}

/// Why a [`TrustConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustConfigError {
    /// A setting is not a number from 0 to 1.
    #[error("trust setting `{field}` must be a number from 0 to 1, not `{value}`")]
    OutOfRange {
        /// The setting (`weights.<kind>` for a weight).
        field: String,
        /// The value given.
        value: f64,
    },
    /// A score the agent can be given is already in quarantine.
    #[error("trust setting `{field}` ({value}) must not be below `quarantine_below` ({quarantine_below}), or the agent would be quarantined at once")]
    BelowQuarantine {
        /// `initial` or `resume_floor`.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The quarantine threshold.
        quarantine_below: f64,
    },
}

impl TrustConfig {
    /// What a signal of `kind` costs (0 when not configured).
    pub fn weight(&self, kind: SignalKind) -> f64 {
        self.weights.get(&kind).copied().unwrap_or(0.0)
    }

    /// Checks that every setting and weight is a finite number from 0 to 1, and that
    /// neither `initial` nor `resume_floor` is below `quarantine_below`.
    pub fn validate(&self) -> Result<(), TrustConfigError> {
        let fields = [
            ("initial".to_owned(), self.initial),
            ("quarantine_below".to_owned(), self.quarantine_below),
            ("recovery_per_hour".to_owned(), self.recovery_per_hour),
            ("resume_floor".to_owned(), self.resume_floor),
        ];
        let weights = self.weights.iter().map(|(k, &w)| (format!("weights.{k}"), w));
        for (field, value) in fields.into_iter().chain(weights) {
            if !(0.0..=1.0).contains(&value) {
                return Err(TrustConfigError::OutOfRange { field, value });
            }
        }
        for (field, value) in [("initial", self.initial), ("resume_floor", self.resume_floor)] {
            if value < self.quarantine_below {
                return Err(TrustConfigError::BelowQuarantine {
                    field,
                    value,
                    quarantine_below: self.quarantine_below,
                });
            }
        }
        Ok(())
    }
}

/// Forces `x` into [0, 1]; not a number counts as 0.
fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// One agent's trust: a score and when it was set. The score at any later time adds the
/// recovery since then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    /// The score when it was set.
    pub value: f64,
    /// When `value` was set.
    pub at: UnixTime,
}

impl Trust {
    /// A new agent's trust: `initial`, as of `now`.
    pub fn new(cfg: &TrustConfig, now: UnixTime) -> Self {
        Trust { value: unit(cfg.initial), at: now }
    }

    /// The score at `now`: `value` plus the recovery since `at`, within [0, 1]. A `now`
    /// before `at` gives `value`.
    pub fn current(&self, cfg: &TrustConfig, now: UnixTime) -> f64 {
        let elapsed = self.at.until(now);
        if elapsed <= 0 {
            return unit(self.value);
        }
        #[expect(clippy::cast_precision_loss, reason = "seconds far below 2^52 are exact")]
        let hours = elapsed as f64 / 3_600.0;
        unit(self.value + unit(cfg.recovery_per_hour) * hours)
    }

    /// Applies `signals` at `now`: the score at `now` minus the sum of their weights,
    /// within [0, 1], set as of `now`. With no signals it returns `self` unchanged, so
    /// recovery keeps accruing from the old `at`. A `now` before `at` keeps `at`, so a
    /// clock going back never grants extra recovery.
    pub fn penalise(&self, cfg: &TrustConfig, signals: &[Signal], now: UnixTime) -> Trust {
        if signals.is_empty() {
            return *self;
        }
        let cost: f64 = signals.iter().map(|s| unit(cfg.weight(s.kind))).sum();
        Trust { value: unit(self.current(cfg, now) - cost), at: self.at.max(now) }
    }

    /// Whether the score at `now` is below the quarantine threshold.
    pub fn quarantined(&self, cfg: &TrustConfig, now: UnixTime) -> bool {
        self.current(cfg, now) < cfg.quarantine_below
    }

    /// The trust after the owner resumes the agent at `now`: at least `resume_floor`.
    pub fn resumed(&self, cfg: &TrustConfig, now: UnixTime) -> Trust {
        Trust { value: self.current(cfg, now).max(unit(cfg.resume_floor)), at: self.at.max(now) }
    }
}

/// Trust as an integer percent from 0 to 100, rounded down, for Cedar (which has no
/// floats). A billionth is added before rounding so that `0.29` is 29, not 28; not a
/// number is 0.
pub fn percent(value: f64) -> i64 {
    #[expect(clippy::cast_possible_truncation, reason = "the value is within 0..=100")]
    let p = (unit(value) * 100.0 + 1e-9).floor().min(100.0) as i64;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime(1_700_000_000);
    const HOUR: i64 = 3_600;

    fn sig(kind: SignalKind) -> Signal {
        Signal::new(kind, "test")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn signals_lower_it_and_time_restores_it() {
        let cfg = TrustConfig::default();
        let t = Trust::new(&cfg, T0);
        assert!(close(t.current(&cfg, T0), 1.0));
        let hit = t.penalise(&cfg, &[sig(SignalKind::RateSpike), sig(SignalKind::NovelAction)], T0);
        assert!(close(hit.current(&cfg, T0), 0.65));
        // Half an hour later: +0.05; two hours: +0.2; it never passes 1.
        assert!(close(hit.current(&cfg, T0.plus(HOUR / 2)), 0.7));
        assert!(close(hit.current(&cfg, T0.plus(2 * HOUR)), 0.85));
        assert!(close(hit.current(&cfg, T0.plus(100 * HOUR)), 1.0));
        // A time before it was set gives the value as set.
        assert!(close(hit.current(&cfg, UnixTime(0)), 0.65));
    }

    #[test]
    fn recovery_is_by_time_not_by_volume() {
        let cfg = TrustConfig::default();
        let hit = Trust::new(&cfg, T0).penalise(&cfg, &[sig(SignalKind::DenyStreak)], T0);
        // Many clean requests in a minute change nothing.
        let mut t = hit;
        for s in 0..60 {
            t = t.penalise(&cfg, &[], T0.plus(s));
        }
        assert_eq!(t, hit);
        assert!(close(t.current(&cfg, T0.plus(60)), 0.75 + 0.1 / 60.0));
    }

    #[test]
    fn a_penalty_starts_from_the_recovered_score() {
        let cfg = TrustConfig::default();
        let hit = Trust::new(&cfg, T0).penalise(&cfg, &[sig(SignalKind::RateSpike)], T0);
        let again = hit.penalise(&cfg, &[sig(SignalKind::NovelResource)], T0.plus(HOUR));
        assert_eq!(again.at, T0.plus(HOUR));
        assert!(close(again.value, 0.75 + 0.1 - 0.1));
        // A clock going back does not move `at` back.
        let back = again.penalise(&cfg, &[sig(SignalKind::OffHours)], T0);
        assert_eq!(back.at, T0.plus(HOUR));
        assert!(close(back.value, 0.73));
    }

    #[test]
    fn clamped_to_zero_and_one() {
        let cfg = TrustConfig::default();
        let many = vec![sig(SignalKind::DenyStreak); 10];
        let floored = Trust::new(&cfg, T0).penalise(&cfg, &many, T0);
        assert!(close(floored.value, 0.0));
        assert!(close(floored.current(&cfg, T0.plus(HOUR)), 0.1));
        let odd = Trust { value: 7.0, at: T0 };
        assert!(close(odd.current(&cfg, T0.plus(HOUR)), 1.0));
        let unweighted = TrustConfig { weights: BTreeMap::new(), ..TrustConfig::default() };
        let t = Trust::new(&unweighted, T0).penalise(&unweighted, &many, T0);
        assert!(close(t.value, 1.0));
        assert!(close(unweighted.weight(SignalKind::RateSpike), 0.0));
    }

    #[test]
    fn quarantine_and_resume() {
        let cfg = TrustConfig::default();
        let spikes = vec![sig(SignalKind::RateSpike); 3];
        let low = Trust::new(&cfg, T0).penalise(&cfg, &spikes, T0);
        assert!(close(low.value, 0.25));
        assert!(low.quarantined(&cfg, T0));
        // It recovers above the threshold by itself after half an hour...
        assert!(low.quarantined(&cfg, T0.plus(HOUR / 2 - 1)));
        assert!(!low.quarantined(&cfg, T0.plus(HOUR / 2)));
        // ...or the owner resumes it at once.
        let resumed = low.resumed(&cfg, T0.plus(60));
        assert!(close(resumed.value, 0.6));
        assert_eq!(resumed.at, T0.plus(60));
        assert!(!resumed.quarantined(&cfg, T0.plus(60)));
        // Resuming a healthy agent does not lower it.
        let healthy = Trust::new(&cfg, T0).resumed(&cfg, T0);
        assert!(close(healthy.value, 1.0));
    }

    #[test]
    fn percent_rounds_down_without_float_noise() {
        assert_eq!(percent(1.0), 100);
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(0.299), 29);
        assert_eq!(percent(0.29), 29);
        assert_eq!(percent(0.57), 57);
        assert_eq!(percent(0.3), 30);
        assert_eq!(percent(0.999_999), 99);
        assert_eq!(percent(-0.5), 0);
        assert_eq!(percent(1.5), 100);
        assert_eq!(percent(f64::NAN), 0);
    }

    #[test]
    fn config_validation_and_serde() {
        let cfg = TrustConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["weights"]["rate_spike"], serde_json::json!(0.25));
        assert_eq!(serde_json::from_value::<TrustConfig>(json).unwrap(), cfg);
        let partial: TrustConfig = serde_json::from_str(r#"{"quarantine_below": 0.5}"#).unwrap();
        assert_eq!(partial.weight(SignalKind::DenyStreak), 0.25);

        let mut heavy = cfg.clone();
        heavy.weights.insert(SignalKind::OffHours, 1.5);
        assert_eq!(
            heavy.validate().unwrap_err().to_string(),
            "trust setting `weights.off_hours` must be a number from 0 to 1, not `1.5`"
        );
        let nan = TrustConfig { recovery_per_hour: f64::NAN, ..cfg.clone() };
        assert!(matches!(nan.validate(), Err(TrustConfigError::OutOfRange { .. })));
        let useless = TrustConfig { resume_floor: 0.2, ..cfg.clone() };
        assert!(matches!(useless.validate(), Err(TrustConfigError::BelowQuarantine { field: "resume_floor", .. })));
    }
}
