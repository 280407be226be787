//! Continuous governance persistence: the `GovernStore` trait.
//!
//! The rules are pure and live in `warrant_core::govern`; the engine keeps the active
//! findings and each agent's usage in memory and stores here what must survive a
//! restart: findings (open, accepted and resolved, as history), usage, owner
//! attestations and when each agent's key was last set. It also reads the live warrants
//! a sweep needs in one query.

use async_trait::async_trait;
use warrant_core::govern::{AgentUsage, Finding, FindingKind, FindingStatus};
use warrant_core::{AgentId, UnixTime, WarrantId};

use crate::StoreError;

/// The most findings one listing returns.
pub const MAX_FINDING_LIST_LIMIT: usize = 10_000;

/// Which findings to list. Every field narrows; the default lists the newest 100 of any
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingFilter {
    /// Only findings with this status.
    pub status: Option<FindingStatus>,
    /// Only findings of this kind.
    pub kind: Option<FindingKind>,
    /// Only findings about this subject (e.g. an agent id).
    pub subject: Option<String>,
    /// At most this many (capped at [`MAX_FINDING_LIST_LIMIT`]), most recently seen first.
    pub limit: usize,
}

impl Default for FindingFilter {
    fn default() -> Self {
        FindingFilter { status: None, kind: None, subject: None, limit: 100 }
    }
}

pub use warrant_core::govern::Attestation;

/// An unexpired, unrevoked warrant, as a sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWarrant {
    /// The `jti`.
    pub jti: WarrantId,
    /// The parent warrant, absent at the root.
    pub parent: Option<WarrantId>,
    /// The agent holding it.
    pub agent: AgentId,
    /// How many agents its chain holds (1 at the root).
    pub depth: usize,
    /// Issued at.
    pub issued_at: UnixTime,
    /// Expiry.
    pub expires_at: UnixTime,
}

/// Findings, usage, attestations, agent key times and live warrants.
#[async_trait]
pub trait GovernStore: Send + Sync {
    /// Upserts findings by id, in one transaction.
    async fn save_findings(&self, findings: &[Finding]) -> Result<(), StoreError>;
    /// Every finding that is open or accepted.
    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError>;
    /// Findings matching `filter`, most recently seen first.
    async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError>;
    /// One finding.
    async fn get_finding(&self, id: &str) -> Result<Option<Finding>, StoreError>;
    /// Upserts agents' usage, in one transaction. On a database several servers share,
    /// each agent's usage is merged with the stored one (`AgentUsage::merge`), so no
    /// server's view replaces another's.
    async fn save_usage(&self, usage: &[(AgentId, AgentUsage)]) -> Result<(), StoreError>;
    /// Every stored usage, by agent.
    async fn usages(&self) -> Result<Vec<(AgentId, AgentUsage)>, StoreError>;
    /// Stores an attestation; `Conflict` if its id exists.
    async fn record_attestation(&self, attestation: &Attestation) -> Result<(), StoreError>;
    /// The latest attestation time of every attested agent.
    async fn last_attestations(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError>;
    /// One agent's attestations, newest first, at most `limit`.
    async fn attestations(&self, agent: &AgentId, limit: usize) -> Result<Vec<Attestation>, StoreError>;
    /// Every warrant unexpired at `now`, not revoked, whose task has not ended, in
    /// issuance order.
    async fn live_warrants(&self, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError>;
    /// The [`live_warrants`](Self::live_warrants) whose delegation chain includes
    /// `agent` (the ones it holds and every one delegated from them), in issuance order:
    /// what a sweep of that one agent looks at, without reading whole warrant records.
    async fn live_warrants_through(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError>;
}
