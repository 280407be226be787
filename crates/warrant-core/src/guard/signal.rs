//! Anomaly signals: what an agent did that departs from its own baseline.
//!
//! A [`Signal`] is raised by the [`baseline`](super::baseline) and consumed by the
//! [`trust`](super::trust) score, which it lowers by the weight configured for its
//! [`SignalKind`]. Signals are also recorded with the decision, so an owner can see why
//! an agent's trust fell.

use serde::{Deserialize, Serialize};

/// What kind of departure from the baseline a signal reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignalKind {
    /// An action the agent was never allowed before.
    NovelAction,
    /// A resource prefix the agent was never allowed before.
    NovelResource,
    /// Far more requests in a rate window than the agent usually makes.
    RateSpike,
    /// A run of consecutive scope or policy denies: the agent is probing.
    DenyStreak,
    /// Far more delegations in a rate window than the agent usually makes.
    DelegationBurst,
    /// Activity at an hour of the day (UTC) the agent was never allowed at before.
    OffHours,
}

impl SignalKind {
    /// Every kind, in declaration order.
    pub const ALL: [SignalKind; 6] = [
        SignalKind::NovelAction,
        SignalKind::NovelResource,
        SignalKind::RateSpike,
        SignalKind::DenyStreak,
        SignalKind::DelegationBurst,
        SignalKind::OffHours,
    ];

    /// The wire name (`novel_action`, `novel_resource`, `rate_spike`, `deny_streak`,
    /// `delegation_burst`, `off_hours`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::NovelAction => "novel_action",
            SignalKind::NovelResource => "novel_resource",
            SignalKind::RateSpike => "rate_spike",
            SignalKind::DenyStreak => "deny_streak",
            SignalKind::DelegationBurst => "delegation_burst",
            SignalKind::OffHours => "off_hours",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for SignalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomaly signal, with a human-readable reason and the baseline figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// What kind of anomaly.
    pub kind: SignalKind,
    /// Why it was raised, for a human, e.g. "action `payments.send` never seen in 1200
    /// allowed decisions".
    pub detail: String,
    /// How many times its kind's trust weight this signal costs: 1 normally, more for a
    /// sensitive action or the latest of several novelties in a row, 0 for the novelty an
    /// announced deploy explains.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub factor: f64,
    /// The baseline figures that triggered it, so the owner sees why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<Box<Figures>>,
}

fn one() -> f64 {
    1.0
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    clippy::float_cmp,
    reason = "serde's skip_serializing_if signature; exactly 1"
)]
fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// The figures behind a signal: what was observed against what the baseline expected.
/// Only the figures that matter for the signal's kind are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// What was observed: requests or delegations in the window, distinct denied requests
    /// in the streak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// What the baseline expects: the usual count per active window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usual: Option<f64>,
    /// Above this, the observation is a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The window the counts are over, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<i64>,
    /// Allowed decisions the baseline learned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<u64>,
    /// Distinct actions (or resource prefixes, for a novel resource) the baseline knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<u64>,
    /// Novel requests in the last novelty window, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_novel: Option<u32>,
    /// Whether the action is configured as sensitive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// The announced deploy whose grace period explains a novelty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// What the signal cost the agent's trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl Signal {
    /// A signal of `kind` with the reason `detail`, weighing its kind's weight, with no
    /// figures.
    pub fn new(kind: SignalKind, detail: impl Into<String>) -> Signal {
        Signal { kind, detail: detail.into(), factor: 1.0, figures: None }
    }

    /// The same signal with `figures`.
    #[must_use]
    pub fn with(mut self, figures: Figures) -> Signal {
        self.figures = Some(Box::new(figures));
        self
    }

    /// The same signal weighing `factor` times its kind's weight.
    #[must_use]
    pub fn weighing(mut self, factor: f64) -> Signal {
        self.factor = factor;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_match_serde() {
        for kind in SignalKind::ALL {
            assert_eq!(SignalKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(SignalKind::parse("rate_spike"), Some(SignalKind::RateSpike));
        assert_eq!(SignalKind::parse("RateSpike"), None);
        assert_eq!(SignalKind::parse(""), None);
    }

    #[test]
    fn signal_serialises_with_its_detail() {
        let s = Signal::new(SignalKind::DenyStreak, "5 consecutive denies");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "deny_streak", "detail": "5 consecutive denies"}));
        assert_eq!(serde_json::from_value::<Signal>(json).unwrap(), s);
    }

    #[test]
    fn figures_and_factor_appear_only_when_set() {
        let s = Signal::new(SignalKind::RateSpike, "45 requests")
            .with(Figures { observed: Some(45.0), usual: Some(3.0), threshold: Some(20.0), ..Figures::default() })
            .weighing(2.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "rate_spike", "detail": "45 requests", "factor": 2.0,
                "figures": {"observed": 45.0, "usual": 3.0, "threshold": 20.0}})
        );
        assert_eq!(serde_json::from_value::<Signal>(json).unwrap(), s);
    }
}
