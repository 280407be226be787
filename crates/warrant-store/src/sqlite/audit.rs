//! `AuditStore` for SQLite.
//!
//! The audit tables live in the main database (WAL, `synchronous=FULL`), so a committed
//! batch is durable when `append_audit` returns. A batch is one transaction: the
//! group commit that lets one fsync cover thousands of records. The budget charges that
//! the batch's decisions incurred are applied in that same transaction, and so are the
//! issuances its records audit.

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use warrant_core::audit::{AuditKind, AuditRecord};
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

use super::warrants::WarrantText;
use super::SqliteStore;
use crate::audit::{Appended, AuditFilter, AuditRow, AuditStore, StoredCheckpoint, MAX_AUDIT_QUERY_LIMIT};
use crate::StoreError;

const RECORD_COLS: &str = "seq, at, kind, agent, human, task, warrant, decision, body, prev_hash, hash";
const CHECKPOINT_COLS: &str = "seq, head_hash, at, kid, signature";

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("sequence number `{value}` is out of range")))
}

fn to_i64_saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn seq(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

fn hash(row: &Row<'_>, idx: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.get(idx)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Blob, Box::new(e)))
}

fn opt_id<T, E>(row: &Row<'_>, idx: usize, parse: impl FnOnce(String) -> Result<T, E>) -> rusqlite::Result<Option<T>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = row.get(idx)?;
    text.map(parse).transpose().map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn record_row(row: &Row<'_>) -> rusqlite::Result<AuditRow> {
    let kind: String = row.get(2)?;
    let kind =
        AuditKind::parse(&kind).map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e)))?;
    Ok(AuditRow {
        record: AuditRecord { seq: seq(row, 0)?, body: row.get(8)?, prev_hash: hash(row, 9)?, hash: hash(row, 10)? },
        at: UnixTime(row.get(1)?),
        kind,
        agent: opt_id(row, 3, AgentId::try_from)?,
        human: opt_id(row, 4, HumanId::try_from)?,
        task: opt_id(row, 5, TaskId::try_from)?,
        warrant: opt_id(row, 6, WarrantId::try_from)?,
        decision: row.get(7)?,
        charges: Vec::new(),
        issuance: None,
    })
}

fn checkpoint_row(row: &Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        seq: seq(row, 0)?,
        head_hash: hash(row, 1)?,
        at: UnixTime(row.get(2)?),
        kid: row.get(3)?,
        signature: row.get(4)?,
    })
}

/// The stored head: read in every audit batch's transaction, so prepared once per
/// connection rather than parsed and planned each time.
fn head(c: &Connection) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    Ok(c.prepare_cached("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((seq(r, 0)?, hash(r, 1)?)))
        .optional()?)
}

/// The text columns of each row's issuance (`None`: the row carries none), encoded before
/// the write is queued; one that cannot be encoded refuses that issuance alone.
fn issuance_texts(rows: &[AuditRow]) -> Vec<Option<Result<WarrantText, StoreError>>> {
    rows.iter().map(|row| row.issuance.as_ref().map(|i| WarrantText::of(&i.warrant))).collect()
}

/// Appends `rows` inside the group commit's transaction (see `commit.rs`, which holds the
/// write lock from its start): onto the stored head exactly (`rebase` false: `Conflict`
/// otherwise), or chained again onto it when they do not continue it. Returns the new head.
fn append(
    tx: &Connection,
    rows: &mut Vec<AuditRow>,
    texts: &[Option<Result<WarrantText, StoreError>>],
    rebase: bool,
) -> Result<Appended, StoreError> {
    let outcomes = rows
        .iter()
        .zip(texts)
        .map(|(row, text)| {
            let (Some(issuance), Some(text)) = (&row.issuance, text) else { return Ok(()) };
            let text = text.as_ref().map_err(Clone::clone)?;
            // A savepoint of its own: a refused issuance leaves nothing behind.
            let run = |sql: &str| tx.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map(|_| ());
            run("SAVEPOINT issuance")?;
            let recorded = super::warrants::record(tx, issuance, text);
            if recorded.is_err() {
                run("ROLLBACK TO issuance")?;
            }
            run("RELEASE issuance")?;
            recorded
        })
        .collect();
    let refused = crate::audit::keep_recorded(rows, outcomes, rebase)?;
    let stored = head(tx)?.unwrap_or((0, warrant_core::audit::GENESIS));
    let new_head = crate::audit::append_onto(rows, stored, rebase)?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO audit_records ({RECORD_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?;
        for row in rows.iter() {
            stmt.execute(params![
                to_i64(row.record.seq)?,
                row.at.0,
                row.kind.as_str(),
                row.agent.as_ref().map(AgentId::as_str),
                row.human.as_ref().map(HumanId::as_str),
                row.task.as_ref().map(TaskId::as_str),
                row.warrant.as_ref().map(WarrantId::as_str),
                row.decision.as_deref(),
                row.record.body,
                row.record.prev_hash.as_slice(),
                row.record.hash.as_slice(),
            ])?;
        }
    }
    {
        // The decisions' budget charges commit with their records, or not at all.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO budget_spend (jti, counter, spent, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(jti, counter) DO UPDATE SET spent = spent + excluded.spent",
        )?;
        for charge in rows.iter().flat_map(|row| &row.charges) {
            stmt.execute(params![charge.warrant.as_str(), charge.counter, charge.amount, charge.expires_at.0])?;
        }
    }
    Ok(Appended { head: new_head, refused })
}

fn query(c: &Connection, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut text = |clause: &'static str, value: Option<&str>| {
        if let Some(v) = value {
            clauses.push(clause);
            values.push(Value::Text(v.to_owned()));
        }
    };
    text("agent = ?", filter.agent.as_ref().map(AgentId::as_str));
    text("human = ?", filter.human.as_ref().map(HumanId::as_str));
    text("task = ?", filter.task.as_ref().map(TaskId::as_str));
    text("warrant = ?", filter.warrant.as_ref().map(WarrantId::as_str));
    text("kind = ?", filter.kind.map(AuditKind::as_str));
    text("decision = ?", filter.decision.as_deref());
    let mut int = |clause: &'static str, value: Option<i64>| {
        if let Some(v) = value {
            clauses.push(clause);
            values.push(Value::Integer(v));
        }
    };
    int("at >= ?", filter.since.map(|t| t.0));
    int("at <= ?", filter.until.map(|t| t.0));
    int("seq > ?", filter.after_seq.map(to_i64_saturating));
    int("seq < ?", filter.before_seq.map(to_i64_saturating));
    let mut sql = format!("SELECT {RECORD_COLS} FROM audit_records");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(if filter.newest_first { " ORDER BY seq DESC LIMIT ?" } else { " ORDER BY seq LIMIT ?" });
    values.push(Value::Integer(limit_of(filter.limit.min(MAX_AUDIT_QUERY_LIMIT))));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), record_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, mut rows: Vec<AuditRow>) -> Result<(), StoreError> {
        let texts = issuance_texts(&rows);
        self.write(move |c| append(c, &mut rows, &texts, false).map(|_| ())).await
    }

    async fn append_audit_at_head(&self, mut rows: Vec<AuditRow>) -> Result<Appended, StoreError> {
        let texts = issuance_texts(&rows);
        self.write(move |c| append(c, &mut rows, &texts, true)).await
    }

    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        self.run(|c| head(c)).await
    }

    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let (from, limit) = (to_i64_saturating(from_seq), limit_of(limit));
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECORD_COLS} FROM audit_records WHERE seq >= ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map([from, limit], record_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let filter = filter.clone();
        self.run(move |c| query(c, &filter)).await
    }

    async fn get_audit(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
        let seq = to_i64_saturating(seq);
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {RECORD_COLS} FROM audit_records WHERE seq = ?1"), [seq], record_row)
                .optional()?)
        })
        .await
    }

    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let cp = checkpoint.clone();
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO audit_checkpoints ({CHECKPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![to_i64(cp.seq)?, cp.head_hash.as_slice(), cp.at.0, cp.kid, cp.signature],
            )?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let (after, limit) = (to_i64_saturating(after_seq), limit_of(limit));
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map([after, limit], checkpoint_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.run(|c| {
            Ok(c.query_row(
                &format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"),
                [],
                checkpoint_row,
            )
            .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use warrant_core::audit::{chain, AuditEntry, GENESIS};

    use super::*;

    fn rows(from: u64, n: u64, prev: [u8; 32]) -> Vec<AuditRow> {
        let mut prev = prev;
        (from..from + n)
            .map(|seq| {
                let mut e = AuditEntry::new(UnixTime(100 + seq as i64), AuditKind::Decision);
                e.agent = Some(AgentId::parse(if seq % 2 == 1 { "agt_odd" } else { "agt_even" }).unwrap());
                e.human = Some(HumanId::parse("hum_h").unwrap());
                e.decision = Some(if matches!(seq % 3, 0) { "deny" } else { "allow" }.into());
                if matches!(seq % 5, 0) {
                    e.kind = AuditKind::Revocation;
                    e.decision = None;
                }
                let r = chain(prev, seq, &e).unwrap();
                prev = r.hash;
                AuditRow::new(r, &e)
            })
            .collect()
    }

    #[tokio::test]
    async fn append_read_back_and_head() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.audit_head().await.unwrap(), None);
        let batch = rows(1, 10, GENESIS);
        store.append_audit(batch.clone()).await.unwrap();
        assert_eq!(store.audit_head().await.unwrap(), Some((10, batch[9].record.hash)));
        assert_eq!(store.audit_records(1, 100).await.unwrap(), batch);
        assert_eq!(store.audit_records(4, 2).await.unwrap(), batch[3..5].to_vec());
        assert_eq!(store.get_audit(7).await.unwrap().as_ref(), Some(&batch[6]));
        assert_eq!(store.get_audit(11).await.unwrap(), None);
        store.append_audit(Vec::new()).await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_that_does_not_continue_the_head_is_refused_whole() {
        let store = SqliteStore::open_in_memory().unwrap();
        let batch = rows(1, 5, GENESIS);
        store.append_audit(batch.clone()).await.unwrap();
        // Same seqs again, a gap, and a wrong prev_hash: all refused, nothing written.
        for bad in [rows(1, 3, GENESIS), rows(7, 3, batch[4].record.hash), rows(6, 3, [9; 32])] {
            assert!(matches!(store.append_audit(bad).await, Err(StoreError::Conflict(_))));
        }
        assert_eq!(store.audit_head().await.unwrap(), Some((5, batch[4].record.hash)));
        // A batch with a duplicate inside rolls back whole.
        let mut next = rows(6, 3, batch[4].record.hash);
        next.push(next[0].clone());
        assert!(store.append_audit(next).await.is_err());
        assert_eq!(store.audit_head().await.unwrap().map(|h| h.0), Some(5));
    }

    #[tokio::test]
    async fn query_filters() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.append_audit(rows(1, 30, GENESIS)).await.unwrap();
        let seqs = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.record.seq).collect::<Vec<_>>();
        let all = store.query_audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(seqs(all), (1..=30).collect::<Vec<_>>());
        let f = AuditFilter { agent: Some(AgentId::parse("agt_even").unwrap()), limit: 3, ..AuditFilter::default() };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![2, 4, 6]);
        let f = AuditFilter { after_seq: Some(6), ..f };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![8, 10, 12]);
        let f = AuditFilter { kind: Some(AuditKind::Revocation), ..AuditFilter::default() };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![5, 10, 15, 20, 25, 30]);
        let f = AuditFilter {
            decision: Some("deny".into()),
            since: Some(UnixTime(106)),
            until: Some(UnixTime(118)),
            ..AuditFilter::default()
        };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![6, 9, 12, 18]);
        let f = AuditFilter { human: Some(HumanId::parse("hum_other").unwrap()), ..AuditFilter::default() };
        assert!(store.query_audit(&f).await.unwrap().is_empty());
        let f = AuditFilter { limit: 0, ..AuditFilter::default() };
        assert!(store.query_audit(&f).await.unwrap().is_empty());
        // Newest first, paged with `before_seq`, bounded by `after_seq`.
        let f = AuditFilter { newest_first: true, limit: 3, ..AuditFilter::default() };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![30, 29, 28]);
        let f = AuditFilter { before_seq: Some(28), ..f };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![27, 26, 25]);
        let f = AuditFilter { before_seq: Some(5), after_seq: Some(2), ..f };
        assert_eq!(seqs(store.query_audit(&f).await.unwrap()), vec![4, 3]);
    }

    #[tokio::test]
    async fn checkpoints_page_and_latest() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.latest_checkpoint().await.unwrap(), None);
        for seq in [10u64, 20, 30] {
            let cp = StoredCheckpoint {
                seq,
                head_hash: [seq as u8; 32],
                at: UnixTime(seq as i64),
                kid: "k".into(),
                signature: format!("sig{seq}"),
            };
            store.add_checkpoint(&cp).await.unwrap();
            assert!(matches!(store.add_checkpoint(&cp).await, Err(StoreError::Conflict(_))));
        }
        let page = store.checkpoints(10, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].seq, 20);
        assert_eq!(page[0].head_hash, [20; 32]);
        assert_eq!(store.checkpoints(0, 10).await.unwrap().len(), 3);
        assert_eq!(store.latest_checkpoint().await.unwrap().map(|c| c.signature), Some("sig30".into()));
    }
}
