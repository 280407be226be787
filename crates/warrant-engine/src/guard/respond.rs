//! What the guardrails do about what they see: quarantine an agent (suspend it and
//! revoke its whole delegation subtree), contain probing at the smallest scale that
//! stops it (the warrant, then the task, then the agent), and publish anomaly and
//! quarantine events. Each response returns what it did; the caller (the decision
//! pipeline's settle stage, the issuer) writes it into its own answer.

use warrant_core::guard::baseline::request_key;
use warrant_core::guard::escalation::Response;
use warrant_core::guard::response::{GuardResponse, Level};
use warrant_core::guard::signal::Signal;
use warrant_core::{AgentId, UnixTime, WarrantClaims};
use warrant_store::RevocationKind;

use super::{Guardrails, Recorded};
use crate::events::EventKind;

/// What a quarantine did.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// Why the agent was quarantined.
    pub why: String,
    /// Whether it was carried out (suspended and revoked); `false` when automatic
    /// quarantine is off, in which case the request is only denied.
    pub enforced: bool,
    /// What to tell the caller, in words.
    pub note: String,
}

/// What the guardrails made of a probing deny.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probed {
    /// The signals the deny raised.
    pub signals: Vec<Signal>,
    /// The agent's trust after them.
    pub trust: f64,
    /// The quarantine it led to, if any.
    pub quarantine: Option<Quarantine>,
    /// The containment it led to (a warrant or task revoked), in words.
    pub contained: Option<String>,
    /// The response it led to (the warrant or the task revoked, the agent quarantined).
    pub response: Option<GuardResponse>,
}

/// Why trust-based quarantine happened, in words.
pub(crate) fn quarantine_reason(trust: f64, signals: &[Signal]) -> String {
    let kinds: Vec<&str> = signals.iter().map(|s| s.kind.as_str()).collect();
    if kinds.is_empty() {
        format!("trust {trust:.2} is below the quarantine threshold")
    } else {
        format!("trust {trust:.2} is below the quarantine threshold after {}", kinds.join(", "))
    }
}

impl Guardrails {
    /// Quarantines `agent`: suspends it and revokes every warrant whose chain holds it
    /// (its whole delegation subtree), before the caller answers anyone. With
    /// `auto_quarantine` off, nothing is done and the caller only denies.
    pub async fn quarantine(
        &self,
        agent: &AgentId,
        why: String,
        trust: Option<f64>,
        signals: &[Signal],
        now: UnixTime,
    ) -> Quarantine {
        if !self.config.auto_quarantine {
            return Quarantine { note: format!("{why} (automatic quarantine is off)"), why, enforced: false };
        }
        // A revocation reason holds at most 500 characters.
        let reason: String = format!("quarantined: {why}").chars().take(500).collect();
        self.note_response(
            agent,
            &GuardResponse {
                level: Level::Quarantine,
                enforced: true,
                trust: trust.unwrap_or(0.0),
                threshold: self.config.trust.quarantine_below,
                why: why.clone(),
            },
            now,
        );
        let note = match self.revocation.revoke(RevocationKind::Agent, agent.as_str(), &reason).await {
            Ok(revoked) => {
                tracing::warn!(agent = %agent, warrants = revoked.revoked_warrants, %why, "quarantined an agent");
                self.events.publish_with(EventKind::Quarantine, now, Some(agent), || {
                    serde_json::json!({
                        "reason": why, "revocation": revoked.id, "revoked_warrants": revoked.revoked_warrants,
                        "trust": trust, "signals": signals,
                    })
                });
                format!(
                    "agent `{agent}` is quarantined: {why}; it is suspended and {} warrant(s) of its subtree are revoked",
                    revoked.revoked_warrants
                )
            }
            Err(e) => {
                // The suspension and revocations are applied before the audit record is
                // written (revoke fails closed), so the agent is still stopped.
                tracing::error!(agent = %agent, error = %e, "quarantine did not complete cleanly");
                format!("agent `{agent}` is quarantined: {why}")
            }
        };
        Quarantine { why, enforced: true, note }
    }

    /// The response to a probing deny by `agent` with the warrant `claims`: counts
    /// towards the agent's deny streak, which may quarantine it, and towards the
    /// escalation ladder, which answers first at the scale of the warrant, then of its
    /// task, then of the agent.
    pub async fn probing_deny(
        &self,
        agent: &AgentId,
        claims: &WarrantClaims,
        action: &str,
        resource: &str,
        earlier: &[Signal],
        now: UnixTime,
    ) -> Probed {
        let recorded = Recorded { action, resource, allowed: false, probing: true, clean: false };
        let (signals, trust) = self.record(agent, recorded, now);
        self.publish_signals(agent, &signals, now);
        let mut probed = Probed { signals, trust, quarantine: None, contained: None, response: None };
        let responded = |level: Level, why: &str| GuardResponse {
            level,
            enforced: true,
            trust,
            threshold: self.config.trust.quarantine_below,
            why: why.to_owned(),
        };
        if self.below_threshold(trust) {
            let all: Vec<Signal> = earlier.iter().chain(&probed.signals).cloned().collect();
            let why = quarantine_reason(trust, &all);
            probed.response = Some(responded(Level::Quarantine, &why));
            probed.quarantine = Some(self.quarantine(agent, why, Some(trust), &all, now).await);
            return probed;
        }
        let request = request_key(action, resource);
        let (level, why) = match self.escalate(agent, &claims.jti, &claims.task.id, request, claims.exp, now) {
            Response::RevokeWarrant { denies } => {
                let why = format!(
                    "probing: {denies} distinct requests with this warrant were refused by its scope or the policy"
                );
                probed.contained = Some(self.contain(RevocationKind::Warrant, claims.jti.as_str(), why.clone()).await);
                (Level::RevokeWarrant, why)
            }
            Response::RevokeTask { warrants } => {
                let why = format!("probing: {warrants} warrants of this task were revoked for probing");
                probed.contained = Some(self.contain(RevocationKind::Task, claims.task.id.as_str(), why.clone()).await);
                (Level::RevokeTask, why)
            }
            Response::QuarantineAgent { tasks } => {
                let why = format!("{tasks} of its tasks were revoked for probing");
                let all: Vec<Signal> = earlier.iter().chain(&probed.signals).cloned().collect();
                probed.quarantine = Some(self.quarantine(agent, why.clone(), Some(trust), &all, now).await);
                probed.response = Some(GuardResponse { threshold: 0.0, ..responded(Level::Quarantine, &why) });
                return probed;
            }
            _ => return probed,
        };
        let response = GuardResponse { threshold: 0.0, ..responded(level, &why) };
        self.note_response(agent, &response, now);
        probed.response = Some(response);
        probed
    }

    /// Revokes a warrant or a task as the response to probing or to falling trust, before
    /// the decision that triggered it is answered. Returns what to tell the caller.
    pub(crate) async fn contain(&self, kind: RevocationKind, id: &str, why: String) -> String {
        match self.revocation.revoke(kind, id, &why).await {
            Ok(revoked) => {
                tracing::warn!(kind = kind.as_str(), id, warrants = revoked.revoked_warrants, %why, "contained probing");
                format!("{} `{id}` is revoked: {why} ({} warrant(s) ended)", kind.as_str(), revoked.revoked_warrants)
            }
            Err(e) => {
                tracing::error!(kind = kind.as_str(), id, error = %e, "containing probing did not complete cleanly");
                format!("{} `{id}` is revoked: {why}", kind.as_str())
            }
        }
    }

    /// A delegation made by `agent`: records its fan-out and, when a burst of
    /// delegations takes its trust below the threshold, quarantines it (and with it every
    /// warrant its chain holds, the one just issued included).
    pub async fn delegated(&self, agent: &AgentId, now: UnixTime) -> Option<Quarantine> {
        let (signals, trust) = self.record_delegation(agent, now);
        self.publish_signals(agent, &signals, now);
        if !self.below_threshold(trust) {
            return None;
        }
        let why = quarantine_reason(trust, &signals);
        Some(self.quarantine(agent, why, Some(trust), &signals, now).await)
    }

    /// Publishes each signal as an `anomaly` event.
    pub(crate) fn publish_signals(&self, agent: &AgentId, signals: &[Signal], now: UnixTime) {
        for s in signals {
            self.events.publish_with(
                EventKind::Anomaly,
                now,
                Some(agent),
                || serde_json::json!({ "signal": s.kind.as_str(), "detail": s.detail }),
            );
        }
    }
}
