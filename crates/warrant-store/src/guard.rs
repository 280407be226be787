//! Runtime guardrail persistence: the `GuardStore` trait.
//!
//! The guardrails themselves are pure and live in `warrant_core::guard`; the engine keeps
//! their state in memory and stores here what must survive a restart:
//!
//! * budgets: each warrant's limits are recorded with the warrant
//!   ([`WarrantRecord::budget`](crate::WarrantRecord::budget)); what it has spent is
//!   charged with the audit record of the decision that spent it
//!   ([`AuditRow::charges`](crate::AuditRow::charges)), and read back here; servers
//!   sharing a database charge here instead, exactly ([`GuardStore::charge_budget`]);
//! * each agent's guard state (baseline and trust), as opaque JSON written by the engine;
//! * approvals (step-up), whose status changes by compare-and-set.

use std::collections::BTreeMap;

use async_trait::async_trait;
use warrant_core::guard::approval::{Approval, ApprovalStatus};
use warrant_core::guard::budget::{Budget, Charge, ChargeError};
use warrant_core::{AgentId, ApprovalId, HumanId, UnixTime, WarrantId};

use crate::StoreError;

/// The most approvals one listing returns.
pub const MAX_APPROVAL_LIST_LIMIT: usize = 1000;

/// An unexpired warrant's budget: `(jti, parent, budget, expires_at)`.
pub type LiveBudget = (WarrantId, Option<WarrantId>, BTreeMap<String, i64>, UnixTime);

/// What the caller of [`GuardStore::charge_budget`] answers when told which counters
/// matter: the request's amount for each (a missing one counts as 0), or why not.
pub type AmountsFor<'a> = &'a (dyn Fn(&[String]) -> Result<Budget, ChargeError> + Send + Sync);

/// Budgets, agents' guard states and approvals.
///
/// A warrant is expired at `now` when its `expires_at <= now`.
#[async_trait]
pub trait GuardStore: Send + Sync {
    /// Unexpired warrants that carry a budget: (jti, parent, budget, expires_at), in
    /// issuance order.
    async fn live_budgets(&self, now: UnixTime) -> Result<Vec<LiveBudget>, StoreError>;
    /// What unexpired warrants have spent: (jti, counter, spent).
    async fn live_spends(&self, now: UnixTime) -> Result<Vec<(WarrantId, String, i64)>, StoreError>;
    /// Drops spend rows of warrants expired at `now` (those `live_spends` no longer
    /// returns); returns how many.
    async fn purge_spends(&self, now: UnixTime) -> Result<u64, StoreError>;
    /// Charges a request made with warrant `jti` exactly, against what every server
    /// sharing the database has spent: in one write transaction, reads `jti` and its
    /// ancestors with their budgets and spends, asks `amounts` for the amounts of the
    /// counters they budget, and charges them with the [`Ledger`](warrant_core::guard::budget::Ledger)'s
    /// rules (the warrant and every ancestor budgeting the counter, all or nothing).
    /// `Ok(Err(_))`: refused, nothing charged. For servers sharing a database; one server
    /// charges in memory and stores the charges with the decision's audit record.
    async fn charge_budget(
        &self,
        jti: &WarrantId,
        amounts: AmountsFor<'_>,
    ) -> Result<Result<Vec<Charge>, ChargeError>, StoreError> {
        let _ = (jti, amounts);
        Err(StoreError::Backend("this store does not charge budgets itself (one server charges in memory)".into()))
    }
    /// Gives back charges [`charge_budget`](Self::charge_budget) made (their decision
    /// could not be recorded).
    async fn refund_budget(&self, charges: &[Charge]) -> Result<(), StoreError> {
        let _ = charges;
        Err(StoreError::Backend("this store does not charge budgets itself (one server charges in memory)".into()))
    }
    /// What `jti` may still spend, counting every server's spending (empty: no budget).
    async fn budget_left(&self, jti: &WarrantId) -> Result<Budget, StoreError> {
        let _ = jti;
        Err(StoreError::Backend("this store does not charge budgets itself (one server charges in memory)".into()))
    }
    /// Upserts agents' guard states `(agent, state, updated_at)` in one transaction.
    async fn save_guard_states(&self, states: &[(AgentId, String, UnixTime)]) -> Result<(), StoreError>;
    /// Every stored guard state, by agent id.
    async fn guard_states(&self) -> Result<Vec<(AgentId, String)>, StoreError>;
    /// Stores a new approval; `Conflict` if the id exists.
    async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    /// One approval.
    async fn get_approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError>;
    /// Replaces an approval only if its stored status is still `expected`
    /// (compare-and-set); `false` otherwise (or when absent).
    async fn update_approval(&self, approval: &Approval, expected: ApprovalStatus) -> Result<bool, StoreError>;
    /// Approvals, newest first, optionally only those with one stored status, of one
    /// agent and/or for one approver to decide, at most `limit` (capped at
    /// [`MAX_APPROVAL_LIST_LIMIT`]).
    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        agent: Option<&AgentId>,
        approver: Option<&HumanId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError>;
}
