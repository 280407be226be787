//! Stages 6 and 7, record and answer. The decision's audit record is queued (with its
//! budget charges, made durable in the same transaction) and the answer waits until it
//! is durable; a decision that cannot be recorded is a deny, whatever was decided. Only
//! then is the `decision` event published. Anonymous denies beyond each window's first
//! few are counted into one aggregate record instead ([`super::anonymous`]).

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use warrant_core::audit::details::{DecisionDetails, DecisionOrigin, DecisionSubject, DecisionWarrant};
use warrant_core::audit::{chain_details, AuditDetails, AuditEntry, AuditKind, AuditRecord, EncodeError};
use warrant_core::authzen::McpCall;
use warrant_core::decision::{DecisionCode, Outcome};
use warrant_core::UnixTime;
use warrant_store::SpendCharge;

use super::anonymous::Admission;
use super::Decisions;
use crate::audit::{AuditError, Draft, Receipt};
use crate::events::{EventBus, EventKind};
use crate::guard::Guardrails;
use crate::request::{AuthorizeRequest, Decision, MAX_RESOURCE};

/// A decision whose audit record is queued but not yet durable. Nobody may be answered
/// before [`Decisions::answer`].
#[derive(Debug)]
pub struct Queued {
    decision: Decision,
    receipt: Option<Receipt>,
    action: String,
    resource: String,
    at: UnixTime,
}

impl Queued {
    /// The decision as it stands before its record is durable.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether the record was queued (an aggregated anonymous deny or a queue failure
    /// has none).
    pub fn is_queued(&self) -> bool {
        self.receipt.is_some()
    }

    /// The decision before its record is durable, dropping the wait: for benchmarks of
    /// the path up to the queue only. Nobody may be answered with it.
    pub fn into_unanswered(self) -> Decision {
        self.decision
    }
}

/// The most of one caller-supplied JSON value (`resource_attrs`, `context`) an audit
/// record keeps, in bytes of compact JSON. A larger value is kept as its size and
/// SHA-256, so the record still binds it without storing it.
pub const MAX_AUDITED_INPUT: usize = 2048;

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as an audit record keeps it: whole when small, else its size and digest.
fn audited_input(value: Arc<Value>) -> Arc<Value> {
    let mut size = Counter(0);
    if serde_json::to_writer(&mut size, &*value).is_ok() && size.0 <= MAX_AUDITED_INPUT {
        return value;
    }
    let text = value.to_string();
    Arc::new(serde_json::json!({
        "truncated": true,
        "bytes": text.len(),
        "sha256": hex::encode(Sha256::digest(text.as_bytes())),
    }))
}

/// A caller-supplied string as an audit record keeps it: escaped, and cut to
/// `MAX_RESOURCE` bytes' worth of characters (a request this long was refused anyway).
fn audited_text(text: &str) -> String {
    if text.len() <= MAX_RESOURCE && !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_RESOURCE / 4).flat_map(char::escape_debug).collect();
    out.push('…');
    out
}

/// The budget charges of a decision, as the store persists them with its record.
fn spend_rows(d: &Decision) -> Vec<SpendCharge> {
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

/// A decision's audit record before it is encoded: its typed details (the caller's
/// `resource_attrs` and `context` as sent) and the record's header. The audit writer
/// encodes it ([`Draft`]), so the JSON is built off the deciding thread.
pub(super) struct DecisionDraft {
    at: UnixTime,
    details: DecisionDetails,
    outcome: Outcome,
    claims: Option<Arc<warrant_core::WarrantClaims>>,
    /// The human the record names, when not the warrant's (a plain subject's).
    pub(super) human: Option<warrant_core::HumanId>,
}

impl Draft for DecisionDraft {
    fn chain(self: Box<Self>, prev_hash: [u8; 32], seq: u64) -> Result<(AuditRecord, AuditEntry), EncodeError> {
        let DecisionDraft { at, mut details, outcome, claims, human } = *self;
        details.resource_attrs = details.resource_attrs.map(audited_input);
        details.context = details.context.map(audited_input);
        let mut entry = AuditEntry::new(at, AuditKind::Decision);
        entry.decision = Some(outcome.as_str().to_owned());
        if let Some(claims) = &claims {
            entry.agent = Some(claims.client_id.clone());
            entry.human = Some(claims.human().clone());
            entry.task = Some(claims.task.id.clone());
            entry.warrant = Some(claims.jti.clone());
        }
        if human.is_some() {
            entry.human = human;
        }
        let record = chain_details(prev_hash, seq, &entry, &AuditDetails::Decision(details))?;
        Ok((record, entry))
    }
}

/// The decision's audit record, naming the plain subject, the enforcement point and the
/// MCP call it stated when there are.
pub(super) fn draft_with(
    req: &AuthorizeRequest,
    decision: &Decision,
    now: UnixTime,
    subject: Option<DecisionSubject>,
) -> DecisionDraft {
    let details = DecisionDetails {
        action: audited_text(&req.action),
        resource: audited_text(&req.resource),
        code: decision.code,
        reasons: decision.reasons.clone(),
        policies: decision.policies.clone(),
        policy_version: decision.policy_version,
        trust: decision.trust,
        signals: decision.signals.clone(),
        charges: decision.charges.clone(),
        approval_id: decision.approval_id.clone(),
        retry_after: decision.retry_after,
        quarantined: decision.quarantined.clone(),
        response: decision.response.clone().map(Box::new),
        warrant: decision
            .claims
            .as_ref()
            .map(|claims| DecisionWarrant { chain: claims.chain(), scope: claims.scope.clone() }),
        origin: (subject.is_some() || req.via.is_some()).then(|| {
            Box::new(DecisionOrigin {
                subject: subject.map(|s| DecisionSubject { id: audited_text(&s.id), kind: audited_text(&s.kind), ..s }),
                pep: req.via.as_ref().map(|v| audited_text(&v.pep)),
                mcp: req.via.as_ref().and_then(|v| v.mcp.as_ref()).map(|m| McpCall {
                    method: audited_text(&m.method),
                    target: m.target.as_deref().map(audited_text),
                    upstream: audited_text(&m.upstream),
                }),
            })
        }),
        resource_attrs: req.resource_attrs.clone(),
        context: req.context.clone(),
    };
    DecisionDraft { at: now, details, outcome: decision.outcome, claims: decision.claims.clone(), human: None }
}

impl Decisions {
    /// Stage 6: queues the decision's audit record (or counts an anonymous deny into
    /// its window's aggregate).
    pub(crate) async fn record(&self, req: &AuthorizeRequest, mut decision: Decision, now: UnixTime) -> Queued {
        let (action, resource) = (req.action.clone(), req.resource.clone());
        if decision.claims.is_none() && decision.outcome == Outcome::Deny {
            let (admission, closed) = self.anonymous.admit(decision.code, now);
            if let Some(summary) = closed {
                // Queued, not awaited: it records denies that were answered already.
                if let Err(e) = self.audit.enqueue(summary).await {
                    tracing::error!(error = %e, "the aggregate of anonymous denies could not be queued");
                }
            }
            if admission == Admission::Aggregate {
                decision.aggregated = true;
                return Queued { decision, receipt: None, action, resource, at: now };
            }
        }
        self.queue(draft_with(req, &decision, now, None), decision, action, resource, now).await
    }

    /// Queues a decision's audit record (`draft`, encoded by the audit writer); a record
    /// that could not be queued leaves the decision without a receipt, and one that could
    /// not be encoded fails its receipt: either way it answers a deny.
    pub(super) async fn queue(
        &self,
        draft: DecisionDraft,
        decision: Decision,
        action: String,
        resource: String,
        now: UnixTime,
    ) -> Queued {
        // Charged in the store already when servers share it: the record carries none.
        let charges = if self.guardrails.charges_in_store() { Vec::new() } else { spend_rows(&decision) };
        match self.audit.enqueue_draft(Box::new(draft), charges).await {
            Ok(receipt) => Queued { decision, receipt: Some(receipt), action, resource, at: now },
            Err(e) => {
                tracing::error!(error = %e, "a decision could not be queued for the audit log; denying");
                Queued { decision, receipt: None, action, resource, at: now }
            }
        }
    }

    /// Stage 7: waits for the decision's record to be durable and answers; a decision
    /// that could not be recorded is a deny (its budget charges given back). The
    /// `decision` event is published only once the record is durable. The wait runs in a
    /// task of its own, so a caller that goes away (a client that disconnects) does not
    /// lose the event or the refund.
    pub async fn answer(&self, queued: Queued) -> Decision {
        let Queued { mut decision, receipt, action, resource, at } = queued;
        if decision.aggregated {
            // A deny either way; its evidence is the window's aggregate record.
            decision.decision_id = "dec_aggregated".into();
            return decision;
        }
        let Some(receipt) = receipt else {
            return unrecorded(decision, &self.guardrails, &AuditError::Closed);
        };
        let (events, guardrails) = (Arc::clone(&self.events), Arc::clone(&self.guardrails));
        let settle = tokio::spawn(async move {
            match receipt.durable().await {
                Ok(seq) => {
                    decision.decision_id = format!("dec_{seq}");
                    publish(&events, &action, &resource, &decision, at);
                    decision
                }
                Err(e) => unrecorded(decision, &guardrails, &e),
            }
        });
        match settle.await {
            Ok(decision) => decision,
            Err(e) => {
                // The task panicked or was cancelled: nothing can be assumed recorded.
                tracing::error!(error = %e, "waiting for a decision's audit record failed; denying");
                Decision::deny(
                    DecisionCode::Audit,
                    "the decision could not be recorded in the audit log, so it is a deny",
                    None,
                )
            }
        }
    }
}

/// The answer for a decision whose record could not be written: a deny, with what it
/// charged given back.
fn unrecorded(mut decision: Decision, guardrails: &Guardrails, e: &AuditError) -> Decision {
    tracing::error!(error = %e, "a decision could not be audited; denying");
    guardrails.refund(&decision.charges);
    decision.charges.clear();
    decision.outcome = Outcome::Deny;
    decision.code = DecisionCode::Audit;
    decision.decision_id = "dec_unrecorded".into();
    decision.reasons = vec!["the decision could not be recorded in the audit log, so it is a deny".into()];
    decision
}

/// Publishes a decision event (only built when someone listens).
fn publish(events: &EventBus, action: &str, resource: &str, d: &Decision, now: UnixTime) {
    let agent = d.claims.as_ref().map(|c| &c.client_id);
    events.publish_with(EventKind::Decision, now, agent, || {
        serde_json::json!({
            "decision": d.outcome.as_str(), "decision_id": d.decision_id, "code": d.code, "action": action,
            "resource": resource,
            "reasons": d.reasons, "policies": d.policies, "approval_id": d.approval_id,
            "warrant": d.claims.as_ref().map(|c| &c.jti), "task": d.claims.as_ref().map(|c| &c.task.id),
            "human": d.claims.as_ref().map(|c| &c.task.human),
            "trust": d.trust,
        })
    });
}
