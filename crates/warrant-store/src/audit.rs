//! Audit persistence: the `AuditStore` trait.
//!
//! The chain itself (encoding, hashing, verification) is pure and lives in
//! `warrant_core::audit`; this trait only stores records and checkpoints. Each row carries
//! the entry's indexed columns (kind, agent, human, task, warrant, decision, time) next to
//! the hashed body, so that queries never parse bodies; the verifier checks that the
//! columns agree with the body.

use async_trait::async_trait;
use warrant_core::audit::{AuditEntry, AuditKind, AuditRecord};
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

use crate::records::{Issuance, SpendCharge};
use crate::{Refusal, StoreError};

/// The most rows one query returns.
pub const MAX_AUDIT_QUERY_LIMIT: usize = 10_000;

/// A stored audit record: the chained record and the entry's indexed columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// The chained record (seq, body, hashes).
    pub record: AuditRecord,
    /// When it happened.
    pub at: UnixTime,
    /// What it is about.
    pub kind: AuditKind,
    /// The agent, if any.
    pub agent: Option<AgentId>,
    /// The human, if any.
    pub human: Option<HumanId>,
    /// The task, if any.
    pub task: Option<TaskId>,
    /// The warrant, if any.
    pub warrant: Option<WarrantId>,
    /// For decisions: `allow`, `deny` or `pending`.
    pub decision: Option<String>,
    /// Budget charges the record's decision incurred. `append_audit` applies them in the
    /// same transaction as the record, so a charge is durable exactly when its record is.
    /// They are not part of the hashed record: rows read back have none.
    pub charges: Vec<SpendCharge>,
    /// The issuance this record audits, recorded in the same transaction, with the same
    /// checks as [`crate::WarrantStore::record_warrant`]: the warrant is durable exactly
    /// when its record is. Not part of the hashed record: rows read back have none.
    pub issuance: Option<Box<Issuance>>,
}

impl AuditRow {
    /// The row for `record`, chained from `entry`.
    pub fn new(record: AuditRecord, entry: &AuditEntry) -> Self {
        AuditRow {
            record,
            at: entry.at,
            kind: entry.kind,
            agent: entry.agent.clone(),
            human: entry.human.clone(),
            task: entry.task.clone(),
            warrant: entry.warrant.clone(),
            decision: entry.decision.clone(),
            charges: Vec::new(),
            issuance: None,
        }
    }

    /// Whether the indexed columns are exactly those of `entry` (the decoded body).
    pub fn columns_match(&self, entry: &AuditEntry) -> bool {
        self.at == entry.at
            && self.kind == entry.kind
            && self.agent == entry.agent
            && self.human == entry.human
            && self.task == entry.task
            && self.warrant == entry.warrant
            && self.decision == entry.decision
    }
}

/// What both stores do in an append's transaction once they read the stored `head`: a
/// batch that does not continue it is refused (`Conflict`) unless `rebase`, when it is
/// chained again onto it. Returns the head after the batch.
pub(crate) fn append_onto(
    rows: &mut [AuditRow],
    head: (u64, [u8; 32]),
    rebase: bool,
) -> Result<(u64, [u8; 32]), StoreError> {
    let (head_seq, head_hash) = head;
    if rebase {
        return self::rebase(rows, head);
    }
    if let Some(first) = rows.first() {
        if first.record.seq != head_seq.saturating_add(1) || first.record.prev_hash != head_hash {
            return Err(StoreError::Conflict(format!(
                "the audit batch starting at record `{}` does not continue the stored head `{head_seq}`",
                first.record.seq
            )));
        }
    }
    Ok(rows.last().map_or(head, |last| (last.record.seq, last.record.hash)))
}

/// Chains again every row of `rows` that does not continue the one before it (the first:
/// `head`, seq and hash), and every row after it: each such row's entry is read back from
/// its body and chained anew. What both stores do inside
/// [`AuditStore::append_audit_at_head`]'s transaction, when another writer moved the
/// head or a refused issuance took a row out of the batch. Returns the new head.
pub(crate) fn rebase(rows: &mut [AuditRow], head: (u64, [u8; 32])) -> Result<(u64, [u8; 32]), StoreError> {
    let (mut seq, mut prev) = head;
    let mut continues = true;
    for row in rows.iter_mut() {
        seq = seq.saturating_add(1);
        continues = continues && row.record.seq == seq && row.record.prev_hash == prev;
        if !continues {
            let (_, entry) = warrant_core::audit::decode(&row.record)
                .map_err(|e| StoreError::Backend(format!("cannot read back an audit entry to chain it again: {e}")))?;
            row.record = warrant_core::audit::chain(prev, seq, &entry)
                .map_err(|e| StoreError::Backend(format!("cannot chain an audit entry again: {e}")))?;
        }
        prev = row.record.hash;
    }
    Ok((seq, prev))
}

/// What both stores do in an append's transaction once they recorded the issuance of
/// every row that carries one (each in a savepoint of its own, in row order; `outcomes`
/// holds one result per row, `Ok` for a row without one), before the rows are chained:
/// a refused issuance takes its row out of `rows` when `rebase` (reported with its index
/// in the batch), and fails the whole append otherwise; any other error fails it too.
pub(crate) fn keep_recorded(
    rows: &mut Vec<AuditRow>,
    outcomes: Vec<Result<(), StoreError>>,
    rebase: bool,
) -> Result<Vec<(usize, Refusal)>, StoreError> {
    let mut refused = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        if let Err(e) = outcome {
            let refusal = Refusal::of(e)?;
            if !rebase {
                return Err(refusal.into());
            }
            refused.push((index, refusal));
        }
    }
    if !refused.is_empty() {
        let mut index = 0;
        rows.retain(|_| {
            let keep = !refused.iter().any(|(i, _)| *i == index);
            index += 1;
            keep
        });
    }
    Ok(refused)
}

/// What [`AuditStore::append_audit_at_head`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The new head, seq and hash: the rows appended hold the consecutive numbers ending
    /// at it, in batch order.
    pub head: (u64, [u8; 32]),
    /// The rows (by index in the batch) whose issuance was refused, and why: neither the
    /// row nor anything of its issuance was written.
    pub refused: Vec<(usize, Refusal)>,
}

/// Which records a query returns. Every set field must match; results are in sequence
/// order (newest first when `newest_first`), between `after_seq` and `before_seq`
/// (exclusive), at most `limit` (capped at [`MAX_AUDIT_QUERY_LIMIT`]) of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records about this agent.
    pub agent: Option<AgentId>,
    /// Only records tracing to this human.
    pub human: Option<HumanId>,
    /// Only records of this task.
    pub task: Option<TaskId>,
    /// Only records about this warrant.
    pub warrant: Option<WarrantId>,
    /// Only records of this kind.
    pub kind: Option<AuditKind>,
    /// Only decisions with this outcome (`allow`, `deny`, `pending`).
    pub decision: Option<String>,
    /// Only records at or after this time.
    pub since: Option<UnixTime>,
    /// Only records at or before this time.
    pub until: Option<UnixTime>,
    /// Only records with a greater sequence number (for paging).
    pub after_seq: Option<u64>,
    /// Only records with a smaller sequence number (for paging newest first).
    pub before_seq: Option<u64>,
    /// Newest (highest sequence number) first instead of oldest first.
    pub newest_first: bool,
    /// At most this many records.
    pub limit: usize,
}

impl Default for AuditFilter {
    /// No filter, the first (oldest) 100 records.
    fn default() -> Self {
        AuditFilter {
            agent: None,
            human: None,
            task: None,
            warrant: None,
            kind: None,
            decision: None,
            since: None,
            until: None,
            after_seq: None,
            before_seq: None,
            newest_first: false,
            limit: 100,
        }
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The head record's sequence number.
    pub seq: u64,
    /// The head record's hash.
    pub head_hash: [u8; 32],
    /// When it was taken.
    pub at: UnixTime,
    /// The signing key's id.
    pub kid: String,
    /// The compact JWS (`audit-checkpoint+jwt`) over `{seq, head_hash, at}`.
    pub signature: String,
}

/// The audit chain and its checkpoints.
///
/// Method names carry `audit` so that they stay unambiguous once this trait joins the
/// `Store` supertrait.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `rows`, which must continue the stored chain (the first row's seq is the
    /// head's plus one and its `prev_hash` is the head's hash), in ONE transaction: one
    /// durable commit for the whole batch (group commit). `Conflict` when the rows do not
    /// continue the head (another writer moved it) or a seq exists; nothing is written
    /// then. Every row's budget charges are added to the stored spends in that same
    /// transaction (and, like the rows, not at all when it fails), and so is every row's
    /// issuance ([`AuditRow::issuance`]); a refused one fails the whole append with its
    /// error (the [`Refusal`] as a `StoreError`).
    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<(), StoreError>;
    /// Appends `rows` onto the stored head, whatever it is now, in ONE transaction: when
    /// another writer moved the head since `rows` were chained, they are chained again
    /// onto it inside the write transaction (their sequence numbers, bodies, which embed
    /// the number, and hashes rewritten; the entries unchanged). The store is so the
    /// chain's one serial point: several writers share one chain and never conflict.
    /// Budget charges as in [`append_audit`](Self::append_audit). Every row's issuance is
    /// recorded first, in batch order; a refused one takes its row out of the batch (the
    /// rows after it are chained again) and is reported, the others are unaffected.
    /// Returns the new head, the rows appended holding the consecutive numbers ending at
    /// it, and the refused rows.
    async fn append_audit_at_head(&self, rows: Vec<AuditRow>) -> Result<Appended, StoreError>;
    /// The last record's seq and hash, `None` when the log is empty.
    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StoreError>;
    /// Up to `limit` records with seq `>= from_seq`, in seq order.
    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError>;
    /// The records matching `filter`, in seq order.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError>;
    /// One record.
    async fn get_audit(&self, seq: u64) -> Result<Option<AuditRow>, StoreError>;
    /// Stores a signed checkpoint; `Conflict` when one exists at that seq.
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
    /// Up to `limit` checkpoints with seq `> after_seq`, in seq order.
    async fn checkpoints(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// The checkpoint with the highest seq.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
}
