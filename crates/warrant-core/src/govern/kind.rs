//! What a finding is about: its kind, a closed list the rules and the evidence types
//! share (kept apart so that neither imports the other).

use serde::{Deserialize, Serialize};

/// What kind of problem a finding reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// The agent's owner is disabled or no longer registered.
    OrphanedAgent,
    /// An ephemeral agent is past its expiry but not retired, or still holds live warrants.
    ExpiredEphemeral,
    /// The agent has not acted for longer than the idle limit.
    IdleAgent,
    /// The agent's max scope holds permissions it has not used in the usage window.
    OverPrivileged,
    /// The agent's max scope goes beyond its owner's entitlements.
    ExceedsOwner,
    /// The max scope holds an open-ended (`**` or no resource) grant on a sensitive namespace.
    BroadGrant,
    /// A live warrant, or an ephemeral agent, lives longer than governance allows.
    LongLivedGrant,
    /// The agent's key is older than the rotation period.
    StaleKey,
    /// Decisions were asked for with tokens Warrant did not issue, from unknown issuers or
    /// for unregistered agents.
    ShadowActivity,
    /// The agent holds a warrant whose chain is at or next to the depth limit.
    DelegationDepth,
    /// The agent has delegated to more live warrants than the fan-out limit.
    DelegationFanout,
    /// A policy change allows requests the previous set denied.
    PolicyBroadening,
    /// The owner has not re-attested the agent within the attestation cadence.
    AttestationOverdue,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [FindingKind; 13] = [
        FindingKind::OrphanedAgent,
        FindingKind::ExpiredEphemeral,
        FindingKind::IdleAgent,
        FindingKind::OverPrivileged,
        FindingKind::ExceedsOwner,
        FindingKind::BroadGrant,
        FindingKind::LongLivedGrant,
        FindingKind::StaleKey,
        FindingKind::ShadowActivity,
        FindingKind::DelegationDepth,
        FindingKind::DelegationFanout,
        FindingKind::PolicyBroadening,
        FindingKind::AttestationOverdue,
    ];

    /// The wire name, e.g. `orphaned_agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OrphanedAgent => "orphaned_agent",
            FindingKind::ExpiredEphemeral => "expired_ephemeral",
            FindingKind::IdleAgent => "idle_agent",
            FindingKind::OverPrivileged => "over_privileged",
            FindingKind::ExceedsOwner => "exceeds_owner",
            FindingKind::BroadGrant => "broad_grant",
            FindingKind::LongLivedGrant => "long_lived_grant",
            FindingKind::StaleKey => "stale_key",
            FindingKind::ShadowActivity => "shadow_activity",
            FindingKind::DelegationDepth => "delegation_depth",
            FindingKind::DelegationFanout => "delegation_fanout",
            FindingKind::PolicyBroadening => "policy_broadening",
            FindingKind::AttestationOverdue => "attestation_overdue",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the finding is about one registered agent (its subject is the agent id)
    /// and raised by the per-agent rules of a sweep.
    pub fn per_agent(self) -> bool {
        !matches!(self, FindingKind::ShadowActivity | FindingKind::PolicyBroadening)
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
