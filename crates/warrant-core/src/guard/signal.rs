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

/// One anomaly signal, with a human-readable reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// What kind of anomaly.
    pub kind: SignalKind,
    /// Why it was raised, for a human, e.g. "action `payments.send` never seen in 1200
    /// allowed decisions".
    pub detail: String,
}

impl Signal {
    /// A signal of `kind` with the reason `detail`.
    pub fn new(kind: SignalKind, detail: impl Into<String>) -> Signal {
        Signal { kind, detail: detail.into() }
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
}
