//! Stage 5, settle: what the verdict leads to. A quarantine (trust below the threshold
//! or a `@quarantine` forbid), an approval opened (`pending`), the response to a probing
//! deny (scope or policy), and for an allow: rate limits, budgets, and the presented
//! approval used exactly once. Every response returns what it did, and this stage writes
//! the one [`Decision`] that the record stage audits.

use warrant_core::decision::{DecisionCode, Outcome};
use warrant_core::guard::approval::Approver;
use warrant_core::guard::response::Level;
use warrant_core::UnixTime;
use warrant_store::RevocationKind;

use super::admit::Admitted;
use super::evaluate::{Assessed, Verdict};
use super::{Decisions, Refusal};
use crate::guard::respond::quarantine_reason;
use crate::guard::{Planned, Probed, Quarantine, Recorded};
use crate::request::{AuthorizeRequest, Decision};

/// Writes a quarantine's outcome into `d`.
fn quarantined(d: &mut Decision, q: Quarantine) {
    d.outcome = Outcome::Deny;
    d.reasons.push(q.note);
    if q.enforced {
        d.code = DecisionCode::Quarantine;
        d.quarantined = Some(q.why);
    }
}

/// Writes a probing deny's consequences into `d`.
fn probed(d: &mut Decision, p: Probed) {
    d.signals.extend(p.signals);
    d.trust = Some(p.trust);
    if p.response.is_some() {
        d.response = p.response;
    }
    if let Some(note) = p.contained {
        d.reasons.push(note);
    }
    if let Some(q) = p.quarantine {
        quarantined(d, q);
    }
}

impl Decisions {
    /// Stage 5 for a refused request: a scope refusal is probing, answered like a
    /// policy deny; every other refusal is just a deny.
    pub(crate) async fn settle_refusal(
        &self,
        req: &AuthorizeRequest,
        refusal: Refusal,
        admitted_warrant: Option<&super::verify::VerifiedWarrant>,
        now: UnixTime,
    ) -> Decision {
        let claims = admitted_warrant.map(|w| &w.claims);
        let mut d = Decision::deny(refusal.code, refusal.reason, claims);
        if let (Some(warrant), DecisionCode::Scope) = (admitted_warrant, refusal.code) {
            let claims = &warrant.claims;
            let p = self.guardrails.probing_deny(&claims.client_id, claims, &req.action, &req.resource, &[], now).await;
            probed(&mut d, p);
        }
        d
    }

    /// Stage 5: the decision the verdict leads to, with everything it set in motion.
    pub(crate) async fn settle(
        &self,
        req: &AuthorizeRequest,
        admitted: Admitted,
        assessed: Assessed,
        verdict: Verdict,
        now: UnixTime,
    ) -> Decision {
        let claims = &admitted.warrant.claims;
        let agent = &admitted.agent;
        let Assessed { assessment, plan, .. } = assessed;
        let (version, verdict, reads_history) = match verdict {
            Verdict::Unavailable => {
                return Decision::deny(DecisionCode::Policy, "the policy set is unavailable", Some(claims));
            }
            Verdict::BadInput(reason) => return Decision::deny(DecisionCode::InvalidRequest, reason, Some(claims)),
            Verdict::Untrusted => {
                let mut d = Decision::deny(
                    DecisionCode::Quarantine,
                    "the agent's trust fell below the quarantine threshold",
                    Some(claims),
                );
                d.trust = Some(assessment.trust);
                d.response = plan.map(|p| p.shown);
                let why = quarantine_reason(assessment.trust, &assessment.signals);
                let q =
                    self.guardrails.quarantine(&agent.id, why, Some(assessment.trust), &assessment.signals, now).await;
                d.signals = assessment.signals;
                quarantined(&mut d, q);
                return d;
            }
            Verdict::Decided { version, verdict, reads_history } => (version, verdict, reads_history),
        };
        let mut d = Decision::deny(DecisionCode::Policy, String::new(), Some(claims));
        d.trust = Some(assessment.trust);
        d.signals = assessment.signals;
        d.policy_version = Some(version);
        if let Some(p) = &plan {
            self.guardrails.note_response(&agent.id, &p.shown, now);
            d.response = Some(p.shown.clone());
        }
        if !verdict.errors.is_empty() {
            d.code = DecisionCode::PolicyError;
            d.reasons = vec![format!("policy evaluation failed: {}", verdict.errors.join("; "))];
            return d;
        }
        d.policies = verdict.policies;
        if verdict.quarantine {
            d.code = DecisionCode::Quarantine;
            let why = format!("forbidden by quarantine policy {}", d.policies.join(", "));
            d.reasons = vec![why.clone()];
            let q = self.guardrails.quarantine(&agent.id, why, d.trust, &d.signals, now).await;
            quarantined(&mut d, q);
            return d;
        }
        if let Some(role) = verdict.approval {
            match self.approvals.open(role, req, claims, agent, &d.policies, now).await {
                Ok(approval) => {
                    d.outcome = Outcome::Pending;
                    d.code = DecisionCode::ApprovalRequired;
                    d.reasons = vec![format!(
                        "policy {} asks for the approval of {} `{}`: retry with approval_id `{}` once approved",
                        d.policies.join(", "),
                        role.as_str(),
                        approval.approver,
                        approval.id
                    )];
                    d.approval_id = Some(approval.id.to_string());
                }
                Err(reason) => {
                    d.code = DecisionCode::Approval;
                    d.reasons = vec![reason];
                }
            }
            return d;
        }
        if !verdict.allow {
            d.reasons = vec![if d.policies.is_empty() {
                "no policy permits this action".to_owned()
            } else {
                format!("forbidden by policy {}", d.policies.join(", "))
            }];
            let p = self.guardrails.probing_deny(&agent.id, claims, &req.action, &req.resource, &d.signals, now).await;
            probed(&mut d, p);
            return d;
        }
        let warrant = &admitted.warrant;
        if let Some(plan) = &plan {
            if self.respond(&mut d, plan, req, &admitted, now).await {
                return d;
            }
        }
        if let Err(limited) = self.guardrails.check_rates(&warrant.chain, &claims.task.id, claims.human(), now) {
            d.code = DecisionCode::RateLimited;
            d.reasons = vec![format!("{}; retry in {} s", limited.reason, limited.retry_after)];
            d.retry_after = Some(limited.retry_after);
            return d;
        }
        match self.guardrails.charge(&claims.jti, &claims.budget, req.context.as_deref()).await {
            Ok(charges) => d.charges = charges,
            Err(e) => {
                d.code = DecisionCode::Budget;
                d.reasons = vec![e.to_string()];
                return d;
            }
        }
        if let Some(used) = admitted.approval {
            if let Err(reason) = self.approvals.use_approved(&used, now).await {
                self.guardrails.refund(&d.charges);
                d.charges.clear();
                d.code = DecisionCode::Approval;
                d.reasons = vec![reason];
                return d;
            }
            d.approval_id = Some(used.id.to_string());
        }
        if reads_history {
            self.guardrails.record_history(&agent.id, req, &claims.task.id, now);
        }
        let clean = d.signals.is_empty();
        let learned = Recorded { action: &req.action, resource: &req.resource, allowed: true, probing: false, clean };
        self.guardrails.record(&agent.id, learned, now);
        d.outcome = Outcome::Allow;
        d.code = DecisionCode::Allow;
        d.reasons = vec![format!("allowed by policy {}", d.policies.join(", "))];
        d
    }

    /// The graduated response to the agent's trust, for a request the policy allows:
    /// throttle it, hold it for the owner's approval (unless this is the approved retry),
    /// or revoke its warrant or task. Writes the outcome into `d` and returns true when
    /// the request is not to be allowed.
    async fn respond(
        &self,
        d: &mut Decision,
        plan: &Planned,
        req: &AuthorizeRequest,
        admitted: &Admitted,
        now: UnixTime,
    ) -> bool {
        let claims = &admitted.warrant.claims;
        let why = format!("guardrails: {}", plan.shown.why);
        match plan.act {
            None | Some(Level::Observe) => false,
            Some(Level::Throttle) => match self.guardrails.throttle(&admitted.warrant.chain, plan.throttle, now) {
                Ok(()) => false,
                Err(limited) => {
                    d.code = DecisionCode::RateLimited;
                    d.reasons = vec![format!("{why}: {}; retry in {} s", limited.reason, limited.retry_after)];
                    d.retry_after = Some(limited.retry_after);
                    true
                }
            },
            Some(Level::Approval) if admitted.approval.is_some() => false,
            Some(Level::Approval) => {
                match self.approvals.open(Approver::Owner, req, claims, &admitted.agent, &d.policies, now).await {
                    Ok(approval) => {
                        d.outcome = Outcome::Pending;
                        d.code = DecisionCode::ApprovalRequired;
                        d.reasons = vec![format!(
                            "{why}: the owner `{}` must approve: retry with approval_id `{}` once approved",
                            approval.approver, approval.id
                        )];
                        d.approval_id = Some(approval.id.to_string());
                    }
                    Err(reason) => {
                        d.code = DecisionCode::Approval;
                        d.reasons = vec![reason];
                    }
                }
                true
            }
            Some(Level::RevokeWarrant) => {
                let note = self.guardrails.contain(RevocationKind::Warrant, claims.jti.as_str(), why).await;
                d.code = DecisionCode::Revoked;
                d.reasons = vec![note];
                true
            }
            Some(Level::RevokeTask) => {
                let note = self.guardrails.contain(RevocationKind::Task, claims.task.id.as_str(), why).await;
                d.code = DecisionCode::Revoked;
                d.reasons = vec![note];
                true
            }
            // Quarantine is carried out before Cedar (the agent is untrusted); anything
            // else unknown denies.
            Some(_) => {
                d.code = DecisionCode::Quarantine;
                d.reasons = vec![why];
                true
            }
        }
    }
}
