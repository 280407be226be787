//! Human approval (step-up), the engine half: opening an approval when an `@approval`
//! forbid asks for one, deciding it (the approver, through the API or `warrant
//! approve|reject`), and using it on the agent's retry, exactly once. The state machine
//! is pure (`warrant_core::guard::approval`); every transition is stored with a
//! compare-and-set and audited.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use warrant_core::audit::details::{ApprovalDetails, ApprovalOp};
use warrant_core::audit::AuditEntry;
use warrant_core::guard::approval::{Approval, ApprovalStatus, Approver, Decider, Retry};
use warrant_core::{Agent, ApprovalId, UnixTime, WarrantClaims};
use warrant_store::{Store, StoreError};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{Classify, ErrorKind};
use crate::events::{EventBus, EventKind};
use crate::random;
use crate::request::AuthorizeRequest;

/// The most approvals one listing returns.
pub const MAX_APPROVALS: usize = 1000;

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalOpError {
    /// Malformed input.
    #[error("{0}")]
    Invalid(String),
    /// No such approval.
    #[error("approval `{0}` does not exist")]
    NotFound(String),
    /// The caller may not decide it.
    #[error("{0}")]
    Forbidden(String),
    /// It is no longer pending.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (the cause is kept); the detail is for logs.
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    /// Storage or audit failed; the detail is for logs.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl Classify for ApprovalOpError {
    fn kind(&self) -> ErrorKind {
        match self {
            ApprovalOpError::Invalid(_) => ErrorKind::Invalid,
            ApprovalOpError::NotFound(_) => ErrorKind::NotFound,
            ApprovalOpError::Forbidden(_) => ErrorKind::Forbidden,
            ApprovalOpError::Conflict(_) => ErrorKind::Conflict,
            ApprovalOpError::Store(_) | ApprovalOpError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<StoreError> for ApprovalOpError {
    fn from(e: StoreError) -> Self {
        ApprovalOpError::Store(e)
    }
}

/// SHA-256 (hex) of a request's `resource_attrs` and `context`, which an approved retry
/// must repeat exactly.
pub fn request_digest(req: &AuthorizeRequest) -> String {
    let body = serde_json::json!({ "resource_attrs": req.resource_attrs, "context": req.context });
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

fn approval_event(a: &Approval) -> serde_json::Value {
    serde_json::json!({
        "approval_id": a.id, "status": a.status.as_str(), "approver": a.approver,
        "approver_role": a.approver_role.as_str(), "action": a.action, "resource": a.resource,
        "task": a.task, "warrant": a.warrant, "expires_at": a.expires_at, "decided_by": a.decided_by,
    })
}

/// How long approvals wait and stay usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalTimes {
    /// How long a pending approval waits for its approver, in seconds.
    pub ttl: i64,
    /// How long an approved request may wait for its retry, in seconds.
    pub use_within: i64,
}

/// The approvals service: human step-up for requests an `@approval` forbid holds back.
pub struct Approvals {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    times: ApprovalTimes,
    audit: Arc<Audit>,
    events: Arc<EventBus>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").field("times", &self.times).finish_non_exhaustive()
    }
}

impl Approvals {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        times: ApprovalTimes,
        audit: Arc<Audit>,
        events: Arc<EventBus>,
    ) -> Self {
        Approvals { store, clock, times, audit, events }
    }

    async fn audit_approval(&self, op: ApprovalOp, a: &Approval, now: UnixTime) -> Result<u64, ApprovalOpError> {
        let mut entry = AuditEntry::with_details(now, ApprovalDetails::new(op, a))
            .map_err(|e| ApprovalOpError::Internal(e.to_string()))?;
        entry.agent = Some(a.agent.clone());
        entry.human = Some(a.human.clone());
        entry.task = Some(a.task.clone());
        entry.warrant = Some(a.warrant.clone());
        let seq = self.audit.record(entry).await.map_err(|e| ApprovalOpError::Internal(e.to_string()))?;
        self.events.publish_with(EventKind::Approval, now, Some(&a.agent), || approval_event(a));
        Ok(seq)
    }

    /// Opens an approval for a request an `@approval` forbid held back. Audited before
    /// the agent hears of it.
    pub(crate) async fn open(
        &self,
        role: Approver,
        req: &AuthorizeRequest,
        claims: &WarrantClaims,
        agent: &Agent,
        policies: &[String],
        now: UnixTime,
    ) -> Result<Approval, String> {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "cannot open an approval");
            "the approval could not be recorded, so the request is denied".to_owned()
        };
        let approver = match role {
            Approver::Owner => agent.owner.clone(),
            Approver::Human => claims.human().clone(),
            _ => return Err("the policy asks for an unknown kind of approver".into()),
        };
        let approval = Approval {
            id: random::approval_id().map_err(|e| failed(&e))?,
            status: ApprovalStatus::Pending,
            approver_role: role,
            approver,
            agent: agent.id.clone(),
            human: claims.human().clone(),
            task: claims.task.id.clone(),
            warrant: claims.jti.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            request_digest: request_digest(req),
            request: serde_json::json!({ "resource_attrs": req.resource_attrs, "context": req.context }),
            policies: policies.to_vec(),
            created_at: now,
            expires_at: now.plus(self.times.ttl),
            decided_at: None,
            decided_by: None,
            reason: None,
            used_at: None,
        };
        self.store.insert_approval(&approval).await.map_err(|e| failed(&e))?;
        self.audit_approval(ApprovalOp::Opened, &approval, now).await.map_err(|e| failed(&e))?;
        Ok(approval)
    }

    /// The approval a retry presents, checked against the request and marked used (not
    /// yet stored): `Err` with the reason to deny.
    pub(crate) async fn presented(
        &self,
        id: &str,
        req: &AuthorizeRequest,
        claims: &WarrantClaims,
        now: UnixTime,
    ) -> Result<Approval, String> {
        let id = ApprovalId::parse(id).map_err(|e| format!("invalid approval_id: {e}"))?;
        let approval = match self.store.get_approval(&id).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(format!("approval `{id}` does not exist")),
            Err(e) => {
                tracing::error!(error = %e, "cannot read an approval");
                return Err("the approval could not be read, so the request is denied".into());
            }
        };
        let digest = request_digest(req);
        let retry = Retry {
            agent: &claims.client_id,
            task: &claims.task.id,
            action: &req.action,
            resource: &req.resource,
            request_digest: &digest,
        };
        approval.consume(&retry, now).map_err(|e| e.to_string())
    }

    /// Stores that an approval was used (compare-and-set from `approved`), before the
    /// allow is answered: a second retry with it is a deny, even after a restart.
    pub(crate) async fn use_approved(&self, used: &Approval, now: UnixTime) -> Result<(), String> {
        match self.store.update_approval(used, ApprovalStatus::Approved).await {
            Ok(true) => {
                if let Err(e) = self.audit_approval(ApprovalOp::Used, used, now).await {
                    tracing::error!(error = %e, "cannot audit an approval's use");
                }
                Ok(())
            }
            Ok(false) => Err(format!("approval `{}` was already used", used.id)),
            Err(e) => {
                tracing::error!(error = %e, "cannot mark an approval used");
                Err("the approval could not be marked used, so the request is denied".into())
            }
        }
    }

    /// One approval, with its status as of now.
    pub async fn get(&self, id: &str) -> Result<Approval, ApprovalOpError> {
        let parsed = ApprovalId::parse(id).map_err(|e| ApprovalOpError::Invalid(e.to_string()))?;
        let mut a = self.store.get_approval(&parsed).await?.ok_or_else(|| ApprovalOpError::NotFound(id.into()))?;
        a.status = a.status_at(self.clock.now());
        Ok(a)
    }

    /// Approvals, newest first, with their status as of now; only those `approver` must
    /// decide when one is named (chosen in the store, so `limit` counts only theirs).
    pub async fn list(
        &self,
        status: Option<ApprovalStatus>,
        agent: Option<&str>,
        approver: Option<&warrant_core::HumanId>,
        limit: usize,
    ) -> Result<Vec<Approval>, ApprovalOpError> {
        let agent =
            agent.map(warrant_core::AgentId::parse).transpose().map_err(|e| ApprovalOpError::Invalid(e.to_string()))?;
        let now = self.clock.now();
        // `expired` is not stored: it is pending or approved past its expiry.
        let stored = match status {
            Some(ApprovalStatus::Expired) => None,
            s => s,
        };
        let rows = self.store.list_approvals(stored, agent.as_ref(), approver, limit.min(MAX_APPROVALS)).await?;
        Ok(rows
            .into_iter()
            .map(|mut a| {
                a.status = a.status_at(now);
                a
            })
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect())
    }

    /// Approves or rejects a pending approval, as `by`.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &Decider,
        reason: Option<String>,
    ) -> Result<Approval, ApprovalOpError> {
        if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(ApprovalOpError::Invalid("`reason` must be at most 500 characters".into()));
        }
        let now = self.clock.now();
        let parsed = ApprovalId::parse(id).map_err(|e| ApprovalOpError::Invalid(e.to_string()))?;
        let current = self.store.get_approval(&parsed).await?.ok_or_else(|| ApprovalOpError::NotFound(id.into()))?;
        let next = if approve {
            current.approve(by, reason, now, self.times.use_within)
        } else {
            current.reject(by, reason, now)
        };
        let next = next.map_err(|e| match e {
            warrant_core::guard::approval::ApprovalError::WrongApprover { .. } => {
                ApprovalOpError::Forbidden(e.to_string())
            }
            other => ApprovalOpError::Conflict(other.to_string()),
        })?;
        // The compare-and-set decides who wins; only the winner's decision is audited.
        if !self.store.update_approval(&next, ApprovalStatus::Pending).await? {
            return Err(ApprovalOpError::Conflict(format!("approval `{id}` was decided meanwhile")));
        }
        if let Err(e) =
            self.audit_approval(if approve { ApprovalOp::Approved } else { ApprovalOp::Rejected }, &next, now).await
        {
            // An approval nobody can account for never allows: put it back to pending
            // (unless it was used meanwhile, which the use's own record accounts for).
            if let Err(undo) = self.store.update_approval(&current, next.status).await {
                tracing::error!(approval = %next.id, error = %undo, "could not undo an unaudited approval decision");
            }
            return Err(e);
        }
        tracing::info!(approval = %next.id, status = next.status.as_str(), by = ?next.decided_by, "decided an approval");
        Ok(next)
    }
}
