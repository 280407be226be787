//! A finding: one governance problem, found continuously, with its evidence and status.

use serde::{Deserialize, Serialize};

use crate::govern::evidence::Evidence;
pub use crate::govern::kind::FindingKind;
use crate::id::AgentId;
use crate::time::UnixTime;

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Hygiene: fix at the next review.
    Low,
    /// Risk that grows with time: fix this week.
    Medium,
    /// Risk now: fix today.
    High,
    /// Active exposure: fix now.
    Critical,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 4] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingStatus {
    /// The problem is present and nobody has accepted it.
    Open,
    /// The cause is gone; resolved automatically by a sweep or a policy change.
    Resolved,
    /// Someone accepted the risk, with a justification, until an expiry.
    Accepted,
}

impl FindingStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Resolved => "resolved",
            FindingStatus::Accepted => "accepted",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<FindingStatus> {
        [FindingStatus::Open, FindingStatus::Resolved, FindingStatus::Accepted].into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the finding still counts (open or accepted), i.e. is not resolved.
    pub fn is_active(self) -> bool {
        self != FindingStatus::Resolved
    }
}

/// An accepted risk: who accepted it, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// Who accepted it (`admin` or a human id).
    pub by: String,
    /// Why, in their words.
    pub justification: String,
    /// When it was accepted.
    pub at: UnixTime,
    /// When the acceptance lapses and the finding opens again if its cause remains.
    pub until: UnixTime,
}

/// One governance problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `fnd_…`.
    pub id: String,
    /// What kind of problem.
    pub kind: FindingKind,
    /// How urgent.
    pub severity: Severity,
    /// What it is about: an agent id (`agt_…`), a policy version (`policy:3`), a token
    /// issuer (`issuer:…`) or an unregistered agent (`client:…`).
    pub subject: String,
    /// The facts behind it, as of `last_seen`.
    pub evidence: serde_json::Value,
    /// Open, resolved or accepted.
    pub status: FindingStatus,
    /// When it was first observed.
    pub first_seen: UnixTime,
    /// When it was last observed.
    pub last_seen: UnixTime,
    /// When its cause went away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<UnixTime>,
    /// The accepted risk, when it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Acceptance>,
}

impl Finding {
    /// A new open finding with id `id`, first and last seen at `now`.
    pub fn open(id: String, obs: Observation, now: UnixTime) -> Finding {
        Finding {
            id,
            kind: obs.kind,
            severity: obs.severity,
            subject: obs.subject,
            evidence: obs.evidence,
            status: FindingStatus::Open,
            first_seen: now,
            last_seen: now,
            resolved_at: None,
            acceptance: None,
        }
    }

    /// The agent the finding is about, when its subject is one.
    pub fn agent(&self) -> Option<AgentId> {
        self.subject.parse().ok()
    }

    /// The identity of the problem: one active finding per kind and subject.
    pub fn key(&self) -> (FindingKind, String) {
        (self.kind, self.subject.clone())
    }
}

/// What one rule observed in one sweep (or one event): a finding before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// What kind of problem.
    pub kind: FindingKind,
    /// How urgent.
    pub severity: Severity,
    /// What it is about (see [`Finding::subject`]).
    pub subject: String,
    /// The facts behind it: an [`Evidence`] of its kind, as JSON (see
    /// [`Observation::new`]).
    pub evidence: serde_json::Value,
}

impl Observation {
    /// An observation of `evidence`'s kind about `subject`.
    pub fn new(severity: Severity, subject: String, evidence: impl Into<Evidence>) -> Observation {
        let evidence = evidence.into();
        Observation { kind: evidence.kind(), severity, subject, evidence: evidence.to_value() }
    }

    /// The identity of the problem (see [`Finding::key`]).
    pub fn key(&self) -> (FindingKind, String) {
        (self.kind, self.subject.clone())
    }
}

/// An owner's attestation that an agent should keep what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Attestation {
    /// `att_…`.
    pub id: String,
    /// The agent attested.
    pub agent: AgentId,
    /// Who attested (`admin` or a human id).
    pub by: String,
    /// When.
    pub at: UnixTime,
    /// What they said.
    pub note: String,
    /// What was in front of them: what the agent holds against what it used.
    pub evidence: serde_json::Value,
}
