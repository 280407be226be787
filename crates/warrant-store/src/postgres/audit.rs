//! `AuditStore` for PostgreSQL.
//!
//! A batch is one transaction under the store's write lock, so the head it is checked
//! against cannot move before it commits: one commit (one WAL flush) covers the whole
//! batch (group commit), and its records go in with one statement. The budget charges
//! that the batch's decisions incurred are applied in that same transaction, and so are
//! the issuances its records audit.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use warrant_core::audit::{AuditKind, AuditRecord, GENESIS};
use warrant_core::{AgentId, HumanId, TaskId, WarrantId};

use super::{col, get, get_u64, lock_writes, opt_col, time, to_i64, PgStore};
use crate::audit::{Appended, AuditFilter, AuditRow, AuditStore, StoredCheckpoint, MAX_AUDIT_QUERY_LIMIT};
use crate::StoreError;

const RECORD_COLS: &str = "seq, at, kind, agent, human, task, warrant, decision, body, prev_hash, hash";
const CHECKPOINT_COLS: &str = "seq, head_hash, at, kid, signature";

/// The last record's seq and hash.
const HEAD: &str = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1";

/// A batch of records, one array per column (in `RECORD_COLS` order).
const INSERT_RECORDS: &str = "INSERT INTO audit_records (seq, at, kind, agent, human, task, warrant, decision, body, \
     prev_hash, hash) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], \
     $8::TEXT[], $9::TEXT[], $10::BYTEA[], $11::BYTEA[])";

/// A batch's budget charges, at most one per `(jti, counter)`, one array per column.
pub(super) const ADD_SPENDS: &str = "INSERT INTO budget_spend (jti, counter, spent, expires_at) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) \
     ON CONFLICT (jti, counter) DO UPDATE SET spent = budget_spend.spent + EXCLUDED.spent";

fn to_i64_saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn hash(row: &Row, idx: usize) -> Result<[u8; 32], StoreError> {
    let bytes: &[u8] = get(row, idx)?;
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("column {idx}: a hash of {} bytes, not 32", bytes.len())))
}

fn record_row(row: &Row) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        record: AuditRecord {
            seq: get_u64(row, 0)?,
            body: get(row, 8)?,
            prev_hash: hash(row, 9)?,
            hash: hash(row, 10)?,
        },
        at: time(row, 1)?,
        kind: col(row, 2, |kind| AuditKind::parse(&kind))?,
        agent: opt_col(row, 3, AgentId::try_from)?,
        human: opt_col(row, 4, HumanId::try_from)?,
        task: opt_col(row, 5, TaskId::try_from)?,
        warrant: opt_col(row, 6, WarrantId::try_from)?,
        decision: get(row, 7)?,
        charges: Vec::new(),
        issuance: None,
    })
}

fn checkpoint_row(row: &Row) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        seq: get_u64(row, 0)?,
        head_hash: hash(row, 1)?,
        at: time(row, 2)?,
        kid: get(row, 3)?,
        signature: get(row, 4)?,
    })
}

fn head_row(row: Option<Row>) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    row.map(|r| Ok((get_u64(&r, 0)?, hash(&r, 1)?))).transpose()
}

/// A batch's charges summed per `(jti, counter)`, each with the expiry of its first
/// charge: what charging them one by one would store (a new spend row keeps the expiry
/// it was inserted with), in one statement that may touch each row once.
type Spends<'a> = BTreeMap<(&'a str, &'a str), (i64, i64)>;

fn spends_of(rows: &[AuditRow]) -> Result<Spends<'_>, StoreError> {
    let mut spends = Spends::new();
    for charge in rows.iter().flat_map(|row| &row.charges) {
        let entry =
            spends.entry((charge.warrant.as_str(), charge.counter.as_str())).or_insert((0, charge.expires_at.0));
        entry.0 = entry.0.checked_add(charge.amount).ok_or_else(|| {
            StoreError::Backend(format!(
                "the charges to counter `{}` of warrant `{}` are out of range",
                charge.counter, charge.warrant
            ))
        })?;
    }
    Ok(spends)
}

impl PgStore {
    /// Appends `rows` in one transaction under the write lock: onto the stored head
    /// exactly (`rebase` false: `Conflict` otherwise), or chained again onto it when they
    /// do not continue it. Returns the new head.
    async fn append(&self, rows: &mut Vec<AuditRow>, rebase: bool) -> Result<Appended, StoreError> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in rows.iter() {
            let Some(issuance) = &row.issuance else {
                outcomes.push(Ok(()));
                continue;
            };
            // A savepoint of its own: a refused issuance leaves nothing behind.
            let savepoint = tx.transaction().await?;
            let recorded = super::warrants::record(&savepoint, issuance).await;
            match recorded {
                Ok(()) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
            outcomes.push(recorded);
        }
        let refused = crate::audit::keep_recorded(rows, outcomes, rebase)?;
        // Statements prepared once per connection: a decision's batch is the hot path.
        let head = tx.prepare_cached(HEAD).await?;
        let stored = head_row(tx.query_opt(&head, &[]).await?)?.unwrap_or((0, GENESIS));
        let new_head = crate::audit::append_onto(rows, stored, rebase)?;
        let rows = &*rows;
        let seqs = rows.iter().map(|r| to_i64(r.record.seq)).collect::<Result<Vec<_>, _>>()?;
        let ats: Vec<i64> = rows.iter().map(|r| r.at.0).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let agents: Vec<Option<&str>> = rows.iter().map(|r| r.agent.as_ref().map(AgentId::as_str)).collect();
        let humans: Vec<Option<&str>> = rows.iter().map(|r| r.human.as_ref().map(HumanId::as_str)).collect();
        let tasks: Vec<Option<&str>> = rows.iter().map(|r| r.task.as_ref().map(TaskId::as_str)).collect();
        let warrants: Vec<Option<&str>> = rows.iter().map(|r| r.warrant.as_ref().map(WarrantId::as_str)).collect();
        let decisions: Vec<Option<&str>> = rows.iter().map(|r| r.decision.as_deref()).collect();
        let bodies: Vec<&str> = rows.iter().map(|r| r.record.body.as_str()).collect();
        let prev_hashes: Vec<&[u8]> = rows.iter().map(|r| r.record.prev_hash.as_slice()).collect();
        let hashes: Vec<&[u8]> = rows.iter().map(|r| r.record.hash.as_slice()).collect();
        let spends = spends_of(rows)?;
        let insert = tx.prepare_cached(INSERT_RECORDS).await?;
        tx.execute(
            &insert,
            &[&seqs, &ats, &kinds, &agents, &humans, &tasks, &warrants, &decisions, &bodies, &prev_hashes, &hashes],
        )
        .await?;
        if !spends.is_empty() {
            // The decisions' budget charges commit with their records, or not at all.
            let jtis: Vec<&str> = spends.keys().map(|(jti, _)| *jti).collect();
            let counters: Vec<&str> = spends.keys().map(|(_, counter)| *counter).collect();
            let amounts: Vec<i64> = spends.values().map(|(amount, _)| *amount).collect();
            let expiries: Vec<i64> = spends.values().map(|(_, expires_at)| *expires_at).collect();
            let add = tx.prepare_cached(ADD_SPENDS).await?;
            tx.execute(&add, &[&jtis, &counters, &amounts, &expiries]).await?;
        }
        tx.commit().await?;
        Ok(Appended { head: new_head, refused })
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, mut rows: Vec<AuditRow>) -> Result<(), StoreError> {
        self.append(&mut rows, false).await.map(|_| ())
    }

    async fn append_audit_at_head(&self, mut rows: Vec<AuditRow>) -> Result<Appended, StoreError> {
        self.append(&mut rows, true).await
    }

    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let client = self.client().await?;
        head_row(client.query_opt(HEAD, &[]).await?)
    }

    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let (from, limit) = (to_i64_saturating(from_seq), limit_of(limit));
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {RECORD_COLS} FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"),
                &[&from, &limit],
            )
            .await?;
        rows.iter().map(record_row).collect()
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            clauses.push(format!("{clause} ${}", values.len()));
        };
        let text = |value: Option<&str>| value.map(|v| Box::new(v.to_owned()) as Box<dyn ToSql + Sync + Send>);
        let int = |value: Option<i64>| value.map(|v| Box::new(v) as Box<dyn ToSql + Sync + Send>);
        let conditions = [
            ("agent =", text(filter.agent.as_ref().map(AgentId::as_str))),
            ("human =", text(filter.human.as_ref().map(HumanId::as_str))),
            ("task =", text(filter.task.as_ref().map(TaskId::as_str))),
            ("warrant =", text(filter.warrant.as_ref().map(WarrantId::as_str))),
            ("kind =", text(filter.kind.map(AuditKind::as_str))),
            ("decision =", text(filter.decision.as_deref())),
            ("at >=", int(filter.since.map(|t| t.0))),
            ("at <=", int(filter.until.map(|t| t.0))),
            ("seq >", int(filter.after_seq.map(to_i64_saturating))),
            ("seq <", int(filter.before_seq.map(to_i64_saturating))),
        ];
        for (clause, value) in conditions {
            if let Some(value) = value {
                push(clause, value);
            }
        }
        let mut sql = format!("SELECT {RECORD_COLS} FROM audit_records");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        values.push(Box::new(limit_of(filter.limit.min(MAX_AUDIT_QUERY_LIMIT))));
        let order = if filter.newest_first { "seq DESC" } else { "seq" };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", values.len()));
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let rows = client.query(&sql, &refs).await?;
        rows.iter().map(record_row).collect()
    }

    async fn get_audit(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
        let seq = to_i64_saturating(seq);
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {RECORD_COLS} FROM audit_records WHERE seq = $1"), &[&seq]).await?;
        row.as_ref().map(record_row).transpose()
    }

    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let seq = to_i64(checkpoint.seq)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            &format!("INSERT INTO audit_checkpoints ({CHECKPOINT_COLS}) VALUES ($1, $2, $3, $4, $5)"),
            &[&seq, &checkpoint.head_hash.as_slice(), &checkpoint.at.0, &checkpoint.kid, &checkpoint.signature],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoints(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let (after, limit) = (to_i64_saturating(after_seq), limit_of(limit));
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&after, &limit],
            )
            .await?;
        rows.iter().map(checkpoint_row).collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"), &[])
            .await?;
        row.as_ref().map(checkpoint_row).transpose()
    }
}
