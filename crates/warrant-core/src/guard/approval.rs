//! Human approval (step-up) of a `pending` decision.
//!
//! A forbid policy annotated `@approval("owner")` or `@approval("human")` turns a request
//! it matches into `pending`: an [`Approval`] is opened for the request. The approver
//! (the acting agent's owner, or the human the work traces to) approves or rejects it;
//! the agent then retries the very same request with the approval's id and is allowed
//! exactly once, before the approval expires.
//!
//! ```text
//! pending --approve--> approved --use--> used
//!    |                    |
//!    +--reject--> rejected +--(expires_at passes)--> expired
//!    +--(expires_at passes)--> expired
//! ```

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, ApprovalId, HumanId, TaskId, WarrantId};
use crate::time::UnixTime;

/// Who must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Approver {
    /// The acting agent's owner.
    Owner,
    /// The human the work traces to (the delegating human; the owner for autonomous work).
    Human,
}

impl Approver {
    /// The wire name, as written in `@approval("…")`.
    pub fn as_str(self) -> &'static str {
        match self {
            Approver::Owner => "owner",
            Approver::Human => "human",
        }
    }

    /// Parses the annotation value.
    pub fn parse(s: &str) -> Option<Approver> {
        match s {
            "owner" => Some(Approver::Owner),
            "human" => Some(Approver::Human),
            _ => None,
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalStatus {
    /// Waiting for the approver.
    Pending,
    /// Approved; not used yet.
    Approved,
    /// Rejected by the approver.
    Rejected,
    /// Used by the one retry it allowed.
    Used,
    /// Lapsed before it was decided or used.
    Expired,
}

impl ApprovalStatus {
    /// Every status.
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Rejected,
        ApprovalStatus::Used,
        ApprovalStatus::Expired,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Used => "used",
            ApprovalStatus::Expired => "expired",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        ApprovalStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One request waiting for, or holding, a human's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// `apr_…`.
    pub id: ApprovalId,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Which role must approve.
    pub approver_role: Approver,
    /// The human who must approve.
    pub approver: HumanId,
    /// The agent that asked.
    pub agent: AgentId,
    /// The human the work traces to.
    pub human: HumanId,
    /// The task.
    pub task: TaskId,
    /// The warrant the request was made with.
    pub warrant: WarrantId,
    /// The action asked for.
    pub action: String,
    /// The resource asked for.
    pub resource: String,
    /// SHA-256 (hex) of the request's `resource_attrs` and `context`: the retry must be
    /// the same request, not a bigger one.
    pub request_digest: String,
    /// The request's `resource_attrs` and `context`, shown to the approver.
    pub request: serde_json::Value,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// When it was opened.
    pub created_at: UnixTime,
    /// When it lapses (pending: until decided; approved: until used).
    pub expires_at: UnixTime,
    /// When it was approved or rejected.
    pub decided_at: Option<UnixTime>,
    /// Who approved or rejected it (`hum_…`, or `admin`).
    pub decided_by: Option<String>,
    /// The approver's reason, if given.
    pub reason: Option<String>,
    /// When the retry used it.
    pub used_at: Option<UnixTime>,
}

/// Why an approval cannot be approved, rejected or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// It is not pending (already decided, used or expired).
    #[error("approval `{id}` is {status}, not pending")]
    NotPending {
        /// The approval.
        id: ApprovalId,
        /// Its status.
        status: &'static str,
    },
    /// The caller is not the approver.
    #[error("approval `{id}` must be decided by `{approver}` (its {role})")]
    WrongApprover {
        /// The approval.
        id: ApprovalId,
        /// Who must decide.
        approver: HumanId,
        /// Their role.
        role: &'static str,
    },
    /// It cannot be used: not approved, already used, rejected or expired.
    #[error("approval `{id}` is {status}")]
    NotUsable {
        /// The approval.
        id: ApprovalId,
        /// Its status.
        status: &'static str,
    },
    /// The retry is not the request that was approved.
    #[error("approval `{id}` was given for another request ({what} differs)")]
    Mismatch {
        /// The approval.
        id: ApprovalId,
        /// What differs.
        what: &'static str,
    },
}

/// Who decides an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// A human, authenticated by a session token.
    Human(HumanId),
    /// The administrator (break-glass; recorded as `admin`).
    Admin,
    /// An operator whose role decides approvals (`approver` or `admin`), by name:
    /// recorded as `operator:<issuer>#<subject>`.
    Operator {
        /// The operator's identity provider.
        issuer: String,
        /// Their subject there.
        subject: String,
    },
}

impl Decider {
    /// Who decides for someone signed in as `principal`: the admin token as the
    /// administrator, a human as themselves (their own approvals), an operator by name
    /// when their role decides approvals; `None` for an operator whose role does not.
    pub fn of(principal: &crate::access::Principal) -> Option<Decider> {
        use crate::access::{Capability, Principal};
        match principal {
            Principal::AdminToken => Some(Decider::Admin),
            Principal::Human { id, .. } => Some(Decider::Human(id.clone())),
            Principal::Operator { issuer, subject, role, .. } => role
                .can(Capability::Decide)
                .then(|| Decider::Operator { issuer: issuer.clone(), subject: subject.clone() }),
        }
    }

    /// How the approval records who decided it.
    pub fn label(&self) -> String {
        match self {
            Decider::Human(h) => h.to_string(),
            Decider::Admin => "admin".to_owned(),
            Decider::Operator { issuer, subject } => format!("operator:{issuer}#{subject}"),
        }
    }
}

/// The request a retry presents, to compare with the approved one.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    /// The acting agent.
    pub agent: &'a AgentId,
    /// The task.
    pub task: &'a TaskId,
    /// The action.
    pub action: &'a str,
    /// The resource.
    pub resource: &'a str,
    /// The digest of its `resource_attrs` and `context`.
    pub request_digest: &'a str,
}

impl Approval {
    /// The status as of `now`: a pending or approved approval past its expiry is expired.
    pub fn status_at(&self, now: UnixTime) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if now >= self.expires_at => ApprovalStatus::Expired,
            s => s,
        }
    }

    fn check_decider(&self, by: &Decider, now: UnixTime) -> Result<(), ApprovalError> {
        let status = self.status_at(now);
        if status != ApprovalStatus::Pending {
            return Err(ApprovalError::NotPending { id: self.id.clone(), status: status.as_str() });
        }
        match by {
            Decider::Admin | Decider::Operator { .. } => Ok(()),
            Decider::Human(h) if *h == self.approver => Ok(()),
            Decider::Human(_) => Err(ApprovalError::WrongApprover {
                id: self.id.clone(),
                approver: self.approver.clone(),
                role: self.approver_role.as_str(),
            }),
        }
    }

    /// Approves it: the retry may come until `now + use_within` seconds.
    pub fn approve(
        &self,
        by: &Decider,
        reason: Option<String>,
        now: UnixTime,
        use_within: i64,
    ) -> Result<Approval, ApprovalError> {
        self.check_decider(by, now)?;
        Ok(Approval {
            status: ApprovalStatus::Approved,
            decided_at: Some(now),
            decided_by: Some(by.label()),
            reason,
            expires_at: now.plus(use_within),
            ..self.clone()
        })
    }

    /// Rejects it.
    pub fn reject(&self, by: &Decider, reason: Option<String>, now: UnixTime) -> Result<Approval, ApprovalError> {
        self.check_decider(by, now)?;
        Ok(Approval {
            status: ApprovalStatus::Rejected,
            decided_at: Some(now),
            decided_by: Some(by.label()),
            reason,
            ..self.clone()
        })
    }

    /// Uses it for `retry`: allowed once, when approved, unexpired and the same request.
    pub fn consume(&self, retry: &Retry<'_>, now: UnixTime) -> Result<Approval, ApprovalError> {
        let status = self.status_at(now);
        if status != ApprovalStatus::Approved {
            return Err(ApprovalError::NotUsable { id: self.id.clone(), status: status.as_str() });
        }
        let mismatch = |what| Err(ApprovalError::Mismatch { id: self.id.clone(), what });
        if *retry.agent != self.agent {
            return mismatch("agent");
        }
        if *retry.task != self.task {
            return mismatch("task");
        }
        if retry.action != self.action {
            return mismatch("action");
        }
        if retry.resource != self.resource {
            return mismatch("resource");
        }
        if retry.request_digest != self.request_digest {
            return mismatch("resource_attrs or context");
        }
        Ok(Approval { status: ApprovalStatus::Used, used_at: Some(now), ..self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Approval {
        Approval {
            id: ApprovalId::from_random([1; 12]),
            status: ApprovalStatus::Pending,
            approver_role: Approver::Owner,
            approver: HumanId::from_random([2; 12]),
            agent: AgentId::from_random([3; 12]),
            human: HumanId::from_random([4; 12]),
            task: TaskId::from_random([5; 12]),
            warrant: WarrantId::from_random([6; 12]),
            action: "payments.send".into(),
            resource: "accounts/1".into(),
            request_digest: "d".into(),
            request: serde_json::json!({}),
            policies: vec!["p".into()],
            created_at: UnixTime(100),
            expires_at: UnixTime(200),
            decided_at: None,
            decided_by: None,
            reason: None,
            used_at: None,
        }
    }

    fn retry(a: &Approval) -> Retry<'_> {
        Retry {
            agent: &a.agent,
            task: &a.task,
            action: &a.action,
            resource: &a.resource,
            request_digest: &a.request_digest,
        }
    }

    #[test]
    fn approved_once_then_used() {
        let a = pending();
        let by = Decider::Human(a.approver.clone());
        let ok = a.approve(&by, None, UnixTime(150), 60).unwrap();
        assert_eq!(ok.expires_at, UnixTime(210));
        let used = ok.consume(&retry(&a), UnixTime(160)).unwrap();
        assert_eq!(used.status, ApprovalStatus::Used);
        assert!(matches!(used.consume(&retry(&a), UnixTime(161)), Err(ApprovalError::NotUsable { .. })));
    }

    #[test]
    fn only_the_approver_decides_and_only_once() {
        let a = pending();
        let stranger = Decider::Human(HumanId::from_random([9; 12]));
        assert!(matches!(a.approve(&stranger, None, UnixTime(150), 60), Err(ApprovalError::WrongApprover { .. })));
        let rejected = a.reject(&Decider::Admin, Some("no".into()), UnixTime(150)).unwrap();
        assert_eq!(rejected.decided_by.as_deref(), Some("admin"));
        assert!(matches!(
            rejected.approve(&Decider::Admin, None, UnixTime(151), 60),
            Err(ApprovalError::NotPending { .. })
        ));
        assert!(matches!(rejected.consume(&retry(&a), UnixTime(151)), Err(ApprovalError::NotUsable { .. })));
    }

    #[test]
    fn expiry_and_mismatch() {
        let a = pending();
        assert_eq!(a.status_at(UnixTime(200)), ApprovalStatus::Expired);
        assert!(a.approve(&Decider::Admin, None, UnixTime(200), 60).is_err());
        let ok = a.approve(&Decider::Admin, None, UnixTime(150), 60).unwrap();
        assert!(matches!(ok.consume(&retry(&a), UnixTime(210)), Err(ApprovalError::NotUsable { .. })));
        let mut other = retry(&a);
        other.request_digest = "bigger";
        assert!(matches!(ok.consume(&other, UnixTime(160)), Err(ApprovalError::Mismatch { .. })));
    }
}
