//! Quarantine and the guardrails' events: the glue between the decision path, the
//! revocation machinery and the event stream.

use warrant_core::guard::signal::Signal;
use warrant_core::{AgentId, UnixTime};
use warrant_store::{RevocationKind, SpendCharge};

use crate::decision::{AuthorizeRequest, Decision};
use crate::events::EventKind;
use crate::Engine;

/// Why trust-based quarantine happened, in words.
pub(crate) fn quarantine_reason(trust: f64, signals: &[Signal]) -> String {
    let kinds: Vec<&str> = signals.iter().map(|s| s.kind.as_str()).collect();
    if kinds.is_empty() {
        format!("trust {trust:.2} is below the quarantine threshold")
    } else {
        format!("trust {trust:.2} is below the quarantine threshold after {}", kinds.join(", "))
    }
}

impl Engine {
    /// Quarantines `agent` as part of decision `d`: suspends it and revokes every warrant
    /// whose chain holds it (its whole delegation subtree), before the decision is
    /// answered. With `auto_quarantine` off, the decision is only a deny.
    pub(crate) async fn quarantine(&self, d: &mut Decision, agent: &AgentId, why: String, now: UnixTime) {
        d.outcome = crate::decision::Outcome::Deny;
        self.guard().refund(&d.charges);
        d.charges.clear();
        if !self.guard().config().auto_quarantine {
            d.reasons.push(format!("{why} (automatic quarantine is off)"));
            return;
        }
        d.code = "quarantine";
        // A revocation reason holds at most 500 characters.
        let reason: String = format!("quarantined: {why}").chars().take(500).collect();
        match self.revoke(RevocationKind::Agent, agent.as_str(), &reason).await {
            Ok(revoked) => {
                tracing::warn!(agent = %agent, warrants = revoked.revoked_warrants, %why, "quarantined an agent");
                d.reasons.push(format!(
                    "agent `{agent}` is quarantined: {why}; it is suspended and {} warrant(s) of its subtree are revoked",
                    revoked.revoked_warrants
                ));
                self.events().publish_with(EventKind::Quarantine, now, Some(agent), || {
                    serde_json::json!({
                        "reason": why, "revocation": revoked.id, "revoked_warrants": revoked.revoked_warrants,
                        "trust": d.trust, "signals": d.signals,
                    })
                });
            }
            Err(e) => {
                // The suspension and revocations are applied before the audit record is
                // written (revoke fails closed), so the agent is still stopped.
                tracing::error!(agent = %agent, error = %e, "quarantine did not complete cleanly");
                d.reasons.push(format!("agent `{agent}` is quarantined: {why}"));
            }
        }
        d.quarantined = Some(why);
    }

    /// Publishes each signal as an `anomaly` event.
    pub(crate) fn publish_signals(&self, agent: &AgentId, signals: &[Signal], now: UnixTime) {
        for s in signals {
            self.events().publish_with(
                EventKind::Anomaly,
                now,
                Some(agent),
                || serde_json::json!({ "signal": s.kind.as_str(), "detail": s.detail }),
            );
        }
    }

    /// Publishes a decision event (only built when someone listens).
    pub(crate) fn publish_decision(&self, req: &AuthorizeRequest, d: &Decision, now: UnixTime) {
        let agent = d.claims.as_ref().map(|c| &c.client_id);
        self.events().publish_with(EventKind::Decision, now, agent, || {
            serde_json::json!({
                "decision": d.outcome.as_str(), "code": d.code, "action": req.action, "resource": req.resource,
                "reasons": d.reasons, "policies": d.policies, "approval_id": d.approval_id,
                "warrant": d.claims.as_ref().map(|c| &c.jti), "task": d.claims.as_ref().map(|c| &c.task.id),
                "trust": d.trust,
            })
        });
    }
}

/// The budget charges of a decision, as the store persists them with its record.
pub(crate) fn spend_rows(d: &Decision) -> Vec<SpendCharge> {
    d.charges
        .iter()
        .map(|c| SpendCharge {
            warrant: c.warrant.clone(),
            counter: c.counter.clone(),
            amount: c.amount,
            expires_at: c.expires_at,
        })
        .collect()
}
