//! The graduated response: what the guardrails do as an agent's trust falls.
//!
//! Each [`Level`] has its own threshold; the most severe level whose threshold the trust
//! is below applies: observe (record what would have happened, nothing else), throttle
//! (hold the agent to a slow rate), require approval (every allowed request waits for the
//! owner), revoke the warrant, revoke the task, quarantine the agent (suspend it and revoke
//! its whole subtree). A level in `shadow` is only recorded: new thresholds can run in
//! observe mode before they enforce. Agents carrying a label can have thresholds of their
//! own ([`LabelRule`]).
//!
//! Pure: the engine passes the trust in and carries out the response.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rate::RateLimit;

/// A rung of the graduated response, from the mildest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Level {
    /// Record that the agent is below the threshold; nothing else.
    Observe,
    /// Hold the agent to the throttle rate.
    Throttle,
    /// Every allowed request waits for the owner's approval.
    Approval,
    /// Revoke the warrant the request was made with (and what was delegated from it).
    RevokeWarrant,
    /// Revoke the request's task (every warrant of it).
    RevokeTask,
    /// Quarantine the agent: suspend it and revoke its whole delegation subtree.
    Quarantine,
}

impl Level {
    /// Every level, mildest first.
    pub const ALL: [Level; 6] =
        [Level::Observe, Level::Throttle, Level::Approval, Level::RevokeWarrant, Level::RevokeTask, Level::Quarantine];

    /// The wire name (`observe`, `throttle`, `approval`, `revoke_warrant`, `revoke_task`,
    /// `quarantine`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Observe => "observe",
            Level::Throttle => "throttle",
            Level::Approval => "approval",
            Level::RevokeWarrant => "revoke_warrant",
            Level::RevokeTask => "revoke_task",
            Level::Quarantine => "quarantine",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Below which trust each level applies (0 turns a level off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Observe below this.
    pub observe_below: f64,
    /// Throttle below this.
    pub throttle_below: f64,
    /// Require the owner's approval below this.
    pub approval_below: f64,
    /// Revoke the warrant below this.
    pub revoke_warrant_below: f64,
    /// Revoke the task below this.
    pub revoke_task_below: f64,
    /// Quarantine the agent below this.
    pub quarantine_below: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            observe_below: 0.9,
            throttle_below: 0.5,
            approval_below: 0.45,
            revoke_warrant_below: 0.4,
            revoke_task_below: 0.35,
            quarantine_below: 0.3,
        }
    }
}

impl Thresholds {
    /// The threshold of `level`.
    pub fn of(&self, level: Level) -> f64 {
        match level {
            Level::Observe => self.observe_below,
            Level::Throttle => self.throttle_below,
            Level::Approval => self.approval_below,
            Level::RevokeWarrant => self.revoke_warrant_below,
            Level::RevokeTask => self.revoke_task_below,
            Level::Quarantine => self.quarantine_below,
        }
    }
}

/// The graduated response's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseConfig {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The rate a throttled agent is held to (over its whole subtree).
    pub throttle: RateLimit,
    /// Levels that are only recorded, not carried out.
    pub shadow: BTreeSet<Level>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            thresholds: Thresholds::default(),
            throttle: RateLimit { limit: 6, per_secs: 60 },
            shadow: BTreeSet::new(),
        }
    }
}

/// Thresholds and shadow levels of their own for the agents carrying a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRule {
    /// The label's key.
    pub key: String,
    /// The label's value.
    pub value: String,
    /// The thresholds it sets (the others come from the general settings).
    #[serde(default)]
    pub thresholds: BTreeMap<Level, f64>,
    /// Its shadow levels, replacing the general ones when set.
    #[serde(default)]
    pub shadow: Option<BTreeSet<Level>>,
    /// Its throttle rate, when set.
    #[serde(default)]
    pub throttle: Option<RateLimit>,
}

/// Why a [`ResponseConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseConfigError {
    /// A threshold is not a number from 0 to 1.
    #[error("response threshold `{level}` must be a number from 0 to 1, not `{value}`")]
    OutOfRange {
        /// Its level.
        level: Level,
        /// The value given.
        value: f64,
    },
    /// A milder level has a lower threshold than a more severe one, so it could never
    /// apply before it.
    #[error("response threshold `{milder}` ({milder_value}) must not be below `{severe}` ({severe_value}): a milder response comes first")]
    OutOfOrder {
        /// The milder level.
        milder: Level,
        /// Its threshold.
        milder_value: f64,
        /// The more severe level.
        severe: Level,
        /// Its threshold.
        severe_value: f64,
    },
}

impl ResponseConfig {
    /// Checks that every threshold is from 0 to 1 and that, among the levels that are on
    /// (above 0), a milder level's threshold is not below a more severe one's.
    pub fn validate(&self) -> Result<(), ResponseConfigError> {
        let t = &self.thresholds;
        for level in Level::ALL {
            let value = t.of(level);
            if !(0.0..=1.0).contains(&value) {
                return Err(ResponseConfigError::OutOfRange { level, value });
            }
        }
        let on: Vec<Level> = Level::ALL.into_iter().filter(|&l| t.of(l) > 0.0).collect();
        for pair in on.windows(2) {
            if let [milder, severe] = *pair {
                if t.of(milder) < t.of(severe) {
                    return Err(ResponseConfigError::OutOfOrder {
                        milder,
                        milder_value: t.of(milder),
                        severe,
                        severe_value: t.of(severe),
                    });
                }
            }
        }
        Ok(())
    }

    /// These settings with `rule` applied.
    #[must_use]
    pub fn with(&self, rule: &LabelRule) -> ResponseConfig {
        let mut out = self.clone();
        for (&level, &value) in &rule.thresholds {
            let slot = match level {
                Level::Observe => &mut out.thresholds.observe_below,
                Level::Throttle => &mut out.thresholds.throttle_below,
                Level::Approval => &mut out.thresholds.approval_below,
                Level::RevokeWarrant => &mut out.thresholds.revoke_warrant_below,
                Level::RevokeTask => &mut out.thresholds.revoke_task_below,
                Level::Quarantine => &mut out.thresholds.quarantine_below,
            };
            *slot = value;
        }
        if let Some(shadow) = &rule.shadow {
            out.shadow = shadow.clone();
        }
        if let Some(throttle) = rule.throttle {
            out.throttle = throttle;
        }
        out
    }

    /// The most severe level whose threshold `trust` is below, if any.
    pub fn level(&self, trust: f64) -> Option<Level> {
        Level::ALL.into_iter().rev().find(|&l| trust < self.thresholds.of(l))
    }

    /// The response to an agent at `trust`: its level, whether it is carried out, and why.
    pub fn respond(&self, trust: f64) -> Option<GuardResponse> {
        let level = self.level(trust)?;
        let threshold = self.thresholds.of(level);
        Some(GuardResponse {
            level,
            enforced: !self.shadow.contains(&level),
            trust,
            threshold,
            why: format!("trust {trust:.2} is below the {level} threshold {threshold:.2}"),
        })
    }
}

/// The first rule among `rules` whose label the agent carries (its `labels`), if any.
pub fn rule_for<'a>(rules: &'a [LabelRule], labels: &BTreeMap<String, String>) -> Option<&'a LabelRule> {
    rules.iter().find(|r| labels.get(&r.key).is_some_and(|v| *v == r.value))
}

/// A response the guardrails chose, as recorded with the decision, in the event and in
/// the agent's guard state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardResponse {
    /// Which rung.
    pub level: Level,
    /// Whether it was carried out; `false` in shadow mode (recorded only).
    pub enforced: bool,
    /// The agent's trust that led to it.
    pub trust: f64,
    /// The threshold the trust was below.
    pub threshold: f64,
    /// Why, in words.
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_level_below_its_threshold_applies() {
        let cfg = ResponseConfig::default();
        assert_eq!(cfg.level(0.95), None);
        assert_eq!(cfg.level(0.85), Some(Level::Observe));
        assert_eq!(cfg.level(0.5), Some(Level::Observe));
        assert_eq!(cfg.level(0.48), Some(Level::Throttle));
        assert_eq!(cfg.level(0.42), Some(Level::Approval));
        assert_eq!(cfg.level(0.38), Some(Level::RevokeWarrant));
        assert_eq!(cfg.level(0.32), Some(Level::RevokeTask));
        assert_eq!(cfg.level(0.1), Some(Level::Quarantine));
        let r = cfg.respond(0.42).unwrap();
        assert!(r.enforced);
        assert_eq!(r.why, "trust 0.42 is below the approval threshold 0.45");
    }

    #[test]
    fn shadow_levels_are_recorded_not_enforced_and_zero_is_off() {
        let cfg = ResponseConfig {
            shadow: BTreeSet::from([Level::Approval]),
            thresholds: Thresholds { throttle_below: 0.0, ..Thresholds::default() },
            ..ResponseConfig::default()
        };
        assert!(!cfg.respond(0.42).unwrap().enforced);
        assert_eq!(cfg.level(0.48), Some(Level::Observe), "throttle is off");
        assert_eq!((cfg.shadow.contains(&Level::Quarantine), cfg.thresholds.quarantine_below), (false, 0.3));
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn label_rules_override_what_they_name() {
        let rules = vec![LabelRule {
            key: "env".into(),
            value: "prod".into(),
            thresholds: BTreeMap::from([(Level::Approval, 0.8), (Level::Observe, 0.95)]),
            shadow: Some(BTreeSet::from([Level::Quarantine])),
            throttle: None,
        }];
        let prod = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let dev = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        assert!(rule_for(&rules, &dev).is_none());
        let cfg = ResponseConfig::default().with(rule_for(&rules, &prod).unwrap());
        assert_eq!(cfg.level(0.75), Some(Level::Approval));
        assert_eq!(cfg.thresholds.revoke_warrant_below, 0.4);
        assert_eq!((cfg.shadow.contains(&Level::Quarantine), cfg.thresholds.quarantine_below), (true, 0.3));
    }

    #[test]
    fn validation() {
        let bad = ResponseConfig {
            thresholds: Thresholds { approval_below: 0.2, ..Thresholds::default() },
            ..ResponseConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "response threshold `approval` (0.2) must not be below `revoke_warrant` (0.4): a milder response comes first"
        );
        let nan = ResponseConfig {
            thresholds: Thresholds { observe_below: f64::NAN, ..Thresholds::default() },
            ..ResponseConfig::default()
        };
        assert!(matches!(nan.validate(), Err(ResponseConfigError::OutOfRange { level: Level::Observe, .. })));
        for level in Level::ALL {
            assert_eq!(Level::parse(level.as_str()), Some(level));
            assert_eq!(serde_json::to_value(level).unwrap(), serde_json::json!(level.as_str()));
        }
    }
}
