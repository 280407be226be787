//! The trust score: a number in [0, 1] per agent, lowered by signals, recovering with
//! time and with clean activity.
//!
//! Each [`Signal`] costs the weight configured for its kind, times the signal's
//! [factor](Signal::factor). The score then climbs back toward 1 in two ways: linearly
//! with the time that passes, and by each clean allowed request (one that raised no
//! signal), which earns `recovery_per_clean` up to `clean_recovery_per_hour` in any one
//! hour, so an agent that keeps working normally recovers sooner than one that sits idle,
//! but cannot wash its score by spamming harmless calls. Below `quarantine_below` the
//! agent is quarantined until its owner resumes it, which gives it back at least
//! `resume_floor`.

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
    /// What one clean allowed request (no signal) gives back.
    pub recovery_per_clean: f64,
    /// The most clean requests give back in one clock hour.
    pub clean_recovery_per_hour: f64,
    /// Novelty alone (novel actions and resource prefixes of actions that are not
    /// sensitive, activity at a new hour) never takes trust below this: a new tool is
    /// answered by the graduated response's milder levels (approval), never by
    /// revocation or quarantine, unless other signals add to it.
    pub novelty_floor: f64,
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
            recovery_per_clean: 0.01,
            clean_recovery_per_hour: 0.2,
            novelty_floor: 0.4,
            weights: BTreeMap::from([
                (SignalKind::NovelAction, 0.05),
                (SignalKind::NovelResource, 0.05),
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
            ("recovery_per_clean".to_owned(), self.recovery_per_clean),
            ("clean_recovery_per_hour".to_owned(), self.clean_recovery_per_hour),
            ("novelty_floor".to_owned(), self.novelty_floor),
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

/// Whether `s` is plain novelty: a novel action or resource prefix of an action that is
/// not sensitive, or activity at a new hour.
fn plain_novelty(s: &Signal) -> bool {
    let sensitive = s.figures.as_ref().is_some_and(|f| f.sensitive);
    matches!(s.kind, SignalKind::NovelAction | SignalKind::NovelResource | SignalKind::OffHours) && !sensitive
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
    /// What clean requests gave back in the clock hour `earned_hour`.
    #[serde(default)]
    pub earned: f64,
    /// The clock hour (seconds since the epoch / 3600) `earned` counts in.
    #[serde(default)]
    pub earned_hour: i64,
}

impl Trust {
    /// A new agent's trust: `initial`, as of `now`.
    pub fn new(cfg: &TrustConfig, now: UnixTime) -> Self {
        Trust { value: unit(cfg.initial), at: now, earned: 0.0, earned_hour: 0 }
    }

    /// What `signal` costs: its kind's weight times its factor, within [0, 1].
    pub fn cost(cfg: &TrustConfig, signal: &Signal) -> f64 {
        let factor = if signal.factor.is_nan() { 1.0 } else { signal.factor.max(0.0) };
        unit(unit(cfg.weight(signal.kind)) * factor)
    }

    /// Writes what each of `signals` costs into its figures.
    pub fn price(cfg: &TrustConfig, signals: &mut [Signal]) {
        for s in signals {
            let cost = Trust::cost(cfg, s);
            s.figures.get_or_insert_with(Default::default).cost = Some(cost);
        }
    }

    /// A clean allowed request at `now`: the score gains `recovery_per_clean`, within
    /// what clean requests may still give back in this clock hour. A score at 1 is
    /// returned unchanged.
    pub fn clean(&self, cfg: &TrustConfig, now: UnixTime) -> Trust {
        let current = self.current(cfg, now);
        if current >= 1.0 {
            return *self;
        }
        let hour = now.secs().div_euclid(3_600);
        let earned = if hour == self.earned_hour { self.earned } else { 0.0 };
        let credit = unit(cfg.recovery_per_clean).min(unit(cfg.clean_recovery_per_hour) - earned);
        if credit <= 0.0 {
            return *self;
        }
        Trust { value: unit(current + credit), at: self.at.max(now), earned: earned + credit, earned_hour: hour }
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

    /// Applies `signals` at `now`: the score at `now` minus the sum of their
    /// [costs](Trust::cost), within [0, 1], set as of `now`. The costs of plain novelty
    /// (see [`TrustConfig::novelty_floor`]) stop at the novelty floor; the other signals'
    /// costs do not. With no signals it returns `self` unchanged, so
    /// recovery keeps accruing from the old `at`. A `now` before `at` keeps `at`, so a
    /// clock going back never grants extra recovery.
    pub fn penalise(&self, cfg: &TrustConfig, signals: &[Signal], now: UnixTime) -> Trust {
        if signals.is_empty() {
            return *self;
        }
        let (novelty, other): (Vec<&Signal>, Vec<&Signal>) = signals.iter().partition(|s| plain_novelty(s));
        let current = self.current(cfg, now);
        let after_other = current - other.iter().map(|s| Trust::cost(cfg, s)).sum::<f64>();
        let novelty_cost: f64 = novelty.iter().map(|s| Trust::cost(cfg, s)).sum();
        let floor = after_other.min(unit(cfg.novelty_floor));
        let value = (after_other - novelty_cost).max(if novelty_cost > 0.0 { floor } else { f64::MIN });
        Trust { value: unit(value), at: self.at.max(now), ..*self }
    }

    /// Whether the score at `now` is below the quarantine threshold.
    pub fn quarantined(&self, cfg: &TrustConfig, now: UnixTime) -> bool {
        self.current(cfg, now) < cfg.quarantine_below
    }

    /// The trust after the owner resumes the agent at `now`: at least `resume_floor`.
    pub fn resumed(&self, cfg: &TrustConfig, now: UnixTime) -> Trust {
        Trust { value: self.current(cfg, now).max(unit(cfg.resume_floor)), at: self.at.max(now), ..*self }
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
        let hit = t.penalise(&cfg, &[sig(SignalKind::RateSpike), sig(SignalKind::DelegationBurst)], T0);
        assert!(close(hit.current(&cfg, T0), 0.55));
        // Half an hour later: +0.05; two hours: +0.2; it never passes 1.
        assert!(close(hit.current(&cfg, T0.plus(HOUR / 2)), 0.6));
        assert!(close(hit.current(&cfg, T0.plus(2 * HOUR)), 0.75));
        assert!(close(hit.current(&cfg, T0.plus(100 * HOUR)), 1.0));
        // A time before it was set gives the value as set.
        assert!(close(hit.current(&cfg, UnixTime(0)), 0.55));
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
        assert!(close(again.value, 0.75 + 0.1 - 0.05));
        // A clock going back does not move `at` back.
        let back = again.penalise(&cfg, &[sig(SignalKind::OffHours)], T0);
        assert_eq!(back.at, T0.plus(HOUR));
        assert!(close(back.value, 0.78));
    }

    #[test]
    fn a_signals_factor_scales_its_cost_and_is_priced_into_its_figures() {
        let cfg = TrustConfig::default();
        let mut signals =
            vec![sig(SignalKind::NovelAction).weighing(3.0), sig(SignalKind::NovelResource).weighing(0.0)];
        let hit = Trust::new(&cfg, T0).penalise(&cfg, &signals, T0);
        assert!(close(hit.value, 0.85));
        Trust::price(&cfg, &mut signals);
        assert_eq!(signals[0].figures.as_ref().unwrap().cost.map(|c| (c * 100.0).round()), Some(15.0));
        assert_eq!(signals[1].figures.as_ref().unwrap().cost, Some(0.0));
        // A negative or absurd factor costs nothing, or at most everything.
        assert!(close(Trust::cost(&cfg, &sig(SignalKind::RateSpike).weighing(-4.0)), 0.0));
        assert!(close(Trust::cost(&cfg, &sig(SignalKind::RateSpike).weighing(1e9)), 1.0));
    }

    #[test]
    fn clean_activity_earns_trust_back_within_an_hourly_cap() {
        let cfg = TrustConfig::default();
        let hit = Trust::new(&cfg, T0).penalise(&cfg, &vec![sig(SignalKind::DenyStreak); 2], T0);
        assert!(close(hit.value, 0.5));
        // Ten clean requests in a minute: +0.1 (and a minute's worth of time).
        let mut t = hit;
        for s in 0..10 {
            t = t.clean(&cfg, T0.plus(s));
        }
        assert!(close(t.current(&cfg, T0.plus(9)), 0.6 + 0.1 * 9.0 / 3_600.0), "{}", t.current(&cfg, T0.plus(9)));
        // A thousand more in the same hour earn no more than the hour's cap of 0.2.
        for s in 10..1_010 {
            t = t.clean(&cfg, T0.plus(s % 3_000));
        }
        let capped = t.current(&cfg, T0.plus(3_000));
        assert!(close(capped, 0.5 + 0.2 + 0.1 * 3_000.0 / 3_600.0), "{capped}");
        // The next hour earns again.
        let next = T0.plus(HOUR - T0.secs().rem_euclid(HOUR) + 10);
        let more = t.clean(&cfg, next);
        assert!(close(more.current(&cfg, next) - t.current(&cfg, next), 0.01));
        // Full trust stays full.
        let full = Trust::new(&cfg, T0);
        assert_eq!(full.clean(&cfg, T0), full);
    }

    #[test]
    fn novelty_alone_stops_at_the_floor_and_other_signals_do_not() {
        let cfg = TrustConfig::default();
        let novel = |f: f64| sig(SignalKind::NovelAction).weighing(f);
        let mut t = Trust::new(&cfg, T0);
        for n in 1..=20 {
            t = t.penalise(&cfg, &[novel(f64::from(n))], T0);
        }
        assert!(close(t.value, 0.4), "{}", t.value);
        // A deny streak on top goes below it.
        let t = t.penalise(&cfg, &[sig(SignalKind::DenyStreak), novel(5.0)], T0);
        assert!(close(t.value, 0.15), "{}", t.value);
        // A sensitive novelty is not plain: no floor.
        let sensitive = novel(10.0).with(crate::guard::signal::Figures { sensitive: true, ..Default::default() });
        assert!(close(Trust::new(&cfg, T0).penalise(&cfg, &[sensitive], T0).value, 0.5));
        let again = Trust { value: 0.5, ..Trust::new(&cfg, T0) }.penalise(
            &cfg,
            &[novel(10.0).with(crate::guard::signal::Figures { sensitive: true, ..Default::default() })],
            T0,
        );
        assert!(close(again.value, 0.0));
        // Below the floor already, novelty costs nothing more.
        let low = Trust { value: 0.35, ..Trust::new(&cfg, T0) };
        assert!(close(low.penalise(&cfg, &[novel(1.0)], T0).value, 0.35));
    }

    #[test]
    fn clamped_to_zero_and_one() {
        let cfg = TrustConfig::default();
        let many = vec![sig(SignalKind::DenyStreak); 10];
        let floored = Trust::new(&cfg, T0).penalise(&cfg, &many, T0);
        assert!(close(floored.value, 0.0));
        assert!(close(floored.current(&cfg, T0.plus(HOUR)), 0.1));
        let odd = Trust { value: 7.0, ..Trust::new(&cfg, T0) };
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
