//! `AuditStore` for SQLite.
//!
//! The audit tables live in the main database (WAL, `synchronous=FULL`), so a committed
//! batch is durable when `append_audit` returns. A batch is one transaction: the
//! group commit that lets one fsync cover thousands of records. The budget charges that
//! the batch's decisions incurred are applied in that same transaction, and so are the
//! issuances its records audit.
//!
//! Records are appended to `audit_tail`, a table without secondary indexes: SQLite writes
//! every page a commit changed to the log, and a record inserted into the indexed
//! `audit_records` changes one leaf of each of its six indexes besides its own page, so
//! the commit every decision waits for would sync seven pages instead of one. The writer
//! moves the tail into `audit_records` in bulk ([`settle`]): alongside a later batch once
//! [`SETTLE_ROWS`] records wait, and on its own when the writer has been idle a moment.
//! The move is one transaction, so a record is in exactly one of the two tables; every
//! read asks both in one statement (one snapshot), so where a record is never shows.

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

/// Once this many records wait in the tail, the next batch moves them into the indexed
/// table in its own transaction (one log sync for both). Small on purpose: every move
/// makes one commit longer, and moves of 256 at once showed in the p99 of a steady load
/// where moves of 16 did not (BENCHMARKS.md, section 16).
pub(crate) const SETTLE_ROWS: i64 = 16;

/// The most records one move takes, so a backlog is moved a bounded piece at a time.
const SETTLE_MOST: i64 = 4096;

/// `select`, a statement over `{table}`, asked of the indexed table and of the tail in one
/// statement (one snapshot), ordered by `seq` (`order`: `ASC` or `DESC`) and cut to
/// `limit` (a parameter); `select` orders and limits itself the same way, so each side
/// gives at most `limit` rows through its own index.
fn both(select: &str, order: &str, limit: &str) -> String {
    format!(
        "SELECT * FROM ({}) UNION ALL SELECT * FROM ({}) ORDER BY seq {order} LIMIT {limit}",
        select.replace("{table}", "audit_records"),
        select.replace("{table}", "audit_tail"),
    )
}

/// The last record of `{table}`, found by a probe of its key.
const HEAD_OF: &str = "SELECT seq, hash FROM {table} WHERE seq = (SELECT max(seq) FROM {table})";

/// The stored head: read in every audit batch's transaction, so prepared once per
/// connection rather than parsed and planned each time.
fn head(c: &Connection) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    Ok(c.prepare_cached(&both(HEAD_OF, "DESC", "1"))?.query_row([], |r| Ok((seq(r, 0)?, hash(r, 1)?))).optional()?)
}

/// The tail's first and last `seq`, read by every batch: each end is a probe of the
/// table's key (`min` and `max` in one `SELECT` would read every row of the tail).
const TAIL_ENDS: &str = "SELECT (SELECT min(seq) FROM audit_tail), (SELECT max(seq) FROM audit_tail)";

/// The last `seq` a move of at most `most` records takes from the tail, `None` when the
/// tail holds fewer than `least`. The tail holds consecutive sequence numbers (the chain
/// has no gaps), so its ends tell its length without counting it.
fn settle_upto(c: &Connection, least: i64, most: i64) -> Result<Option<i64>, StoreError> {
    let ends: (Option<i64>, Option<i64>) =
        c.prepare_cached(TAIL_ENDS)?.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(first), Some(last)) = ends else { return Ok(None) };
    if last - first + 1 < least {
        return Ok(None);
    }
    Ok(Some(last.min(first.saturating_add(most - 1))))
}

/// Moves the oldest records of the tail (at most `most`, none unless at least `least`
/// wait) into the indexed table; returns how many moved. Runs inside a transaction (or
/// savepoint) the caller holds and rolls back whole when this fails: a move that fails
/// part way leaves what it copied, and only that rollback makes it all or nothing.
///
/// (The copy is `INSERT OR FAIL`: a statement that may stop part way and keep what it
/// did needs no statement journal, which would otherwise copy each page the move touches
/// before changing it: half the move's cost.)
pub(crate) fn settle(c: &Connection, least: i64, most: i64) -> Result<usize, StoreError> {
    let Some(upto) = settle_upto(c, least, most)? else { return Ok(0) };
    let moved = c
        .prepare_cached(&format!(
            "INSERT OR FAIL INTO audit_records ({RECORD_COLS}) SELECT {RECORD_COLS} FROM audit_tail WHERE seq <= ?1"
        ))?
        .execute([upto])?;
    c.prepare_cached("DELETE FROM audit_tail WHERE seq <= ?1")?.execute([upto])?;
    Ok(moved)
}

/// Moves the oldest records of the tail (at most [`SETTLE_MOST`]) into the indexed table
/// when at least [`SETTLE_ROWS`] wait. Opens no transaction.
pub(crate) fn settle_due(c: &Connection) -> Result<usize, StoreError> {
    settle(c, SETTLE_ROWS, SETTLE_MOST)
}

/// Moves every record waiting in the unindexed tail into the indexed `audit_records`
/// table, in one transaction of its own on `conn`. The server's writer does this by
/// itself; call it before inspecting or editing the audit tables of a database file by
/// hand (another connection's move waits for, or is waited on by, this one).
pub fn settle_audit_tail(conn: &Connection) -> Result<usize, StoreError> {
    // Rolled back on drop, when the move fails.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let moved = settle(&tx, 1, i64::MAX)?;
    tx.commit()?;
    Ok(moved)
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
            "INSERT INTO audit_tail ({RECORD_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
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
    let (sql, values) = query_sql(filter);
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), record_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The statement that answers `filter`, and its parameters.
fn query_sql(filter: &AuditFilter) -> (String, Vec<Value>) {
    // Numbered parameters: the filter is asked of both tables. The indexed columns, most
    // selective first (without this, an agent's decisions were read through `audit_kind`,
    // which holds nearly every record). A decision comes before the kind `decision`: the
    // denies are a part of the decisions, and without their index a page of rare denies
    // read the log. Any other kind comes first: only decisions carry one, so such a
    // filter matches nothing, and its kind's records are the fewest to read to find that.
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let kind = filter.kind.map(AuditKind::as_str);
    let decision = filter.decision.as_deref();
    let (fifth, sixth) = if filter.kind.is_none_or(|k| k == AuditKind::Decision) {
        (("decision", decision), ("kind", kind))
    } else {
        (("kind", kind), ("decision", decision))
    };
    let keyed = [
        ("warrant", filter.warrant.as_ref().map(WarrantId::as_str)),
        ("task", filter.task.as_ref().map(TaskId::as_str)),
        ("agent", filter.agent.as_ref().map(AgentId::as_str)),
        ("human", filter.human.as_ref().map(HumanId::as_str)),
        fifth,
        sixth,
    ];
    super::keyed_filters(&keyed, &mut clauses, &mut values);
    // A time window is never looked up by time (`+at`): an index on `at` gives the
    // window's records in time order, which SQLite then sorts whole by `seq` to return the
    // first few (a second for a window of 200 000 records, again for every page of it;
    // migration 17 dropped that index). Read in `seq` order instead, stopping at the limit.
    let mut int = |clause: &'static str, value: Option<i64>| {
        if let Some(v) = value {
            values.push(Value::Integer(v));
            clauses.push(format!("{clause} ?{}", values.len()));
        }
    };
    int("+at >=", filter.since.map(|t| t.0));
    int("+at <=", filter.until.map(|t| t.0));
    int("seq >", filter.after_seq.map(to_i64_saturating));
    int("seq <", filter.before_seq.map(to_i64_saturating));
    values.push(Value::Integer(limit_of(filter.limit.min(MAX_AUDIT_QUERY_LIMIT))));
    let limit = format!("?{}", values.len());
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    let mut select = format!("SELECT {RECORD_COLS} FROM {{table}}");
    if !clauses.is_empty() {
        select.push_str(" WHERE ");
        select.push_str(&clauses.join(" AND "));
    }
    select.push_str(&format!(" ORDER BY seq {order} LIMIT {limit}"));
    (both(&select, order, &limit), values)
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
            let mut stmt = c.prepare_cached(&both(
                &format!("SELECT {RECORD_COLS} FROM {{table}} WHERE seq >= ?1 ORDER BY seq LIMIT ?2"),
                "ASC",
                "?2",
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
            let select = format!("SELECT {RECORD_COLS} FROM {{table}} WHERE seq = ?1 LIMIT 1");
            Ok(c.query_row(&both(&select, "ASC", "1"), [seq], record_row).optional()?)
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
                e.human = Some(HumanId::parse(if seq % 7 < 3 { "hum_h" } else { "hum_g" }).unwrap());
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

    /// A connection to a fresh, migrated database file, in WAL mode, that never
    /// checkpoints: the log then grows by exactly the pages each commit writes.
    fn raw_file(dir: &tempfile::TempDir) -> (Connection, std::path::PathBuf) {
        let path = dir.path().join("a.db");
        let mut c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        super::super::migrate(&mut c).unwrap();
        (c, dir.path().join("a.db-wal"))
    }

    /// Appends `rows` in one transaction on `c`, as the group commit does.
    fn append_in_tx(c: &Connection, mut rows: Vec<AuditRow>) {
        let texts = issuance_texts(&rows);
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        append(c, &mut rows, &texts, false).unwrap();
        c.execute_batch("COMMIT").unwrap();
    }

    /// The commit a decision waits for syncs the record's own page, not one page per
    /// index as well: appending one record to a log whose indexes already hold records
    /// (so every index has a leaf to change) logs at most two pages. It logged seven (the
    /// table's leaf and one leaf of each of its six indexes) when records were inserted
    /// into the indexed table directly.
    #[test]
    fn appending_a_record_logs_its_own_page_not_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let (c, wal) = raw_file(&dir);
        let warm = rows(1, 40, GENESIS);
        let prev = warm[39].record.hash;
        append_in_tx(&c, warm);
        settle_audit_tail(&c).unwrap();
        let before = std::fs::metadata(&wal).unwrap().len();
        append_in_tx(&c, rows(41, 1, prev));
        let frame = 4096 + 24;
        let pages = (std::fs::metadata(&wal).unwrap().len() - before) / frame;
        assert!(pages <= 2, "one record's commit logged {pages} pages");
        // And the record is read back like every other.
        let all = query(&c, &AuditFilter { limit: 100, ..AuditFilter::default() }).unwrap();
        assert_eq!(all.iter().map(|r| r.record.seq).collect::<Vec<_>>(), (1..=41).collect::<Vec<_>>());
    }

    /// Every batch reads the tail's ends (and the head across both tables) before its
    /// writes: each is a probe of a table's key, not a read of every row of the tail.
    #[test]
    fn the_reads_every_batch_makes_probe_keys_not_rows() {
        let c = super::super::migrated_in_memory();
        let head = both(HEAD_OF, "DESC", "1");
        for sql in [TAIL_ENDS, head.as_str()] {
            let steps = super::super::query_plan(&c, sql, []);
            assert!(steps.iter().all(|step| !step.starts_with("SCAN audit")), "`{sql}` reads every row: {steps:?}");
        }
    }

    /// The steps of the plan of a filtered read over the indexed table: its read of
    /// `audit_records` and what it does next to it (a sort of what it read), not the
    /// steps that merge it with the tail's side.
    fn plan_of(c: &Connection, f: &AuditFilter) -> Vec<String> {
        let (sql, values) = query_sql(f);
        let steps: Vec<(i64, i64, String)> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params_from_iter(values), |r| Ok((r.get(0)?, r.get(1)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let parent = steps.iter().find(|(_, _, step)| step.contains("audit_records")).map(|(_, parent, _)| *parent);
        steps.into_iter().filter(|(_, p, _)| Some(*p) == parent).map(|(_, _, step)| step).collect()
    }

    /// A filtered read goes through the index of its most selective column, whatever the
    /// planner knows of the data: a warrant, a task, an agent, a human, a decision, then a
    /// kind.
    /// Without statistics (SQLite keeps none unless `ANALYZE` runs), the planner weighed
    /// every equality alike and took `audit_kind` for an agent's decisions, so a question
    /// about one agent read every decision of the log (0.14-0.19 s at 271 000 records for
    /// an agent that had none, against under a millisecond through `audit_agent`).
    #[test]
    fn a_filtered_read_goes_through_its_most_selective_index() {
        let c = super::super::migrated_in_memory();
        let agent = Some(AgentId::parse("agt_one").unwrap());
        let human = Some(HumanId::parse("hum_one").unwrap());
        let task = Some(TaskId::parse("tsk_one").unwrap());
        let warrant = Some(WarrantId::parse("wrt_one").unwrap());
        let kind = Some(AuditKind::Decision);
        let deny = Some("deny".to_owned());
        let since = Some(UnixTime(100));
        let cases = [
            (AuditFilter { agent: agent.clone(), kind, ..AuditFilter::default() }, "audit_agent"),
            (
                AuditFilter { agent: agent.clone(), kind, since, newest_first: true, ..AuditFilter::default() },
                "audit_agent",
            ),
            (AuditFilter { human: human.clone(), kind, ..AuditFilter::default() }, "audit_human"),
            (AuditFilter { human: human.clone(), agent: agent.clone(), ..AuditFilter::default() }, "audit_agent"),
            (AuditFilter { task: task.clone(), agent: agent.clone(), kind, ..AuditFilter::default() }, "audit_task"),
            (AuditFilter { warrant, task, human, kind, ..AuditFilter::default() }, "audit_warrant"),
            (AuditFilter { kind, since, ..AuditFilter::default() }, "audit_kind"),
            (AuditFilter { decision: deny.clone(), ..AuditFilter::default() }, "audit_decision"),
            (AuditFilter { decision: deny.clone(), kind, since, ..AuditFilter::default() }, "audit_decision"),
            (
                AuditFilter { decision: deny.clone(), kind, newest_first: true, ..AuditFilter::default() },
                "audit_decision",
            ),
            (
                AuditFilter {
                    decision: deny.clone(),
                    newest_first: true,
                    before_seq: Some(500),
                    ..AuditFilter::default()
                },
                "audit_decision",
            ),
            (
                AuditFilter { agent: agent.clone(), decision: deny.clone(), kind, ..AuditFilter::default() },
                "audit_agent",
            ),
            // Only decisions carry one: another kind's few records are read, not every deny.
            (AuditFilter { decision: deny, kind: Some(AuditKind::Policy), ..AuditFilter::default() }, "audit_kind"),
        ];
        for (filter, index) in cases {
            let plan = plan_of(&c, &filter);
            let reads: Vec<&String> = plan.iter().filter(|step| step.contains("audit_records")).collect();
            assert!(
                !reads.is_empty() && reads.iter().all(|step| step.contains(&format!("INDEX {index} "))),
                "{filter:?} reads {plan:?}, not {index}"
            );
            // In `seq` order from the index: nothing read is sorted again.
            assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{filter:?} reads {plan:?}");
        }
        // A time window alone is read in `seq` order up to the limit, not looked up by time
        // and sorted whole (which it was through `audit_at`, for a window with both ends).
        let until = Some(UnixTime(200));
        for newest_first in [true, false] {
            for before_seq in [None, Some(500)] {
                let filter = AuditFilter { since, until, newest_first, before_seq, ..AuditFilter::default() };
                let plan = plan_of(&c, &filter);
                assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{filter:?} reads {plan:?}");
            }
        }
    }

    /// What the reference model keeps for one record: the columns a filter reads.
    fn matches(row: &AuditRow, f: &AuditFilter) -> bool {
        f.agent.as_ref().is_none_or(|a| row.agent.as_ref() == Some(a))
            && f.human.as_ref().is_none_or(|h| row.human.as_ref() == Some(h))
            && f.kind.is_none_or(|k| row.kind == k)
            && f.decision.as_ref().is_none_or(|d| row.decision.as_ref() == Some(d))
            && f.since.is_none_or(|t| row.at >= t)
            && f.until.is_none_or(|t| row.at <= t)
            && f.after_seq.is_none_or(|s| row.record.seq > s)
            && f.before_seq.is_none_or(|s| row.record.seq < s)
    }

    fn filter_strategy() -> impl proptest::strategy::Strategy<Value = AuditFilter> {
        use proptest::prelude::*;
        (
            proptest::option::of(prop_oneof![Just("agt_odd"), Just("agt_even")]),
            proptest::option::of(prop_oneof![Just("hum_h"), Just("hum_g")]),
            proptest::option::of(prop_oneof![Just(AuditKind::Decision), Just(AuditKind::Revocation)]),
            proptest::option::of(prop_oneof![Just("allow"), Just("deny")]),
            (proptest::option::of(90i64..200), proptest::option::of(90i64..200)),
            proptest::option::of(0u64..100),
            proptest::option::of(0u64..100),
            any::<bool>(),
            0usize..12,
        )
            .prop_map(|(agent, human, kind, decision, (since, until), after, before, newest_first, limit)| {
                AuditFilter {
                    agent: agent.map(|a| AgentId::parse(a).unwrap()),
                    human: human.map(|h| HumanId::parse(h).unwrap()),
                    kind,
                    decision: decision.map(str::to_owned),
                    since: since.map(UnixTime),
                    until: until.map(UnixTime),
                    after_seq: after,
                    before_seq: before,
                    newest_first,
                    limit,
                    ..AuditFilter::default()
                }
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Wherever the line between the indexed table and the tail falls, every read
        /// answers as one table would: each step appends a batch, then moves some of the
        /// tail (possibly none, possibly all), and every filter, page and lookup is
        /// compared with a plain list of the records.
        #[test]
        fn reads_answer_the_same_wherever_records_wait(
            steps in proptest::collection::vec((1u64..12, 0i64..16), 1..10),
            filters in proptest::collection::vec(filter_strategy(), 8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (c, _) = raw_file(&dir);
            let mut model: Vec<AuditRow> = Vec::new();
            for (n, moved) in steps {
                let prev = model.last().map_or(GENESIS, |r| r.record.hash);
                let batch = rows(model.len() as u64 + 1, n, prev);
                model.extend(batch.iter().cloned());
                append_in_tx(&c, batch);
                if moved > 0 {
                    c.execute_batch("BEGIN IMMEDIATE").unwrap();
                    settle(&c, 1, moved).unwrap();
                    c.execute_batch("COMMIT").unwrap();
                }
                let last = model.last().unwrap();
                proptest::prop_assert_eq!(head(&c).unwrap(), Some((last.record.seq, last.record.hash)));
                for f in &filters {
                    let mut want: Vec<AuditRow> = model.iter().filter(|r| matches(r, f)).cloned().collect();
                    if f.newest_first {
                        want.reverse();
                    }
                    want.truncate(f.limit);
                    proptest::prop_assert_eq!(query(&c, f).unwrap(), want, "filter {:?}", f);
                }
            }
            let store_rows = |from: u64, limit: i64| -> Vec<AuditRow> {
                let select = format!("SELECT {RECORD_COLS} FROM {{table}} WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
                let mut stmt = c.prepare(&both(&select, "ASC", "?2")).unwrap();
                stmt.query_map(params![to_i64(from).unwrap(), limit], record_row).unwrap().map(Result::unwrap).collect()
            };
            proptest::prop_assert_eq!(store_rows(1, 1000), model.clone());
            proptest::prop_assert_eq!(store_rows(3, 4), model.iter().skip(2).take(4).cloned().collect::<Vec<_>>());
        }
    }

    /// Reads racing the writer's moves: while one task appends batches (moved into the
    /// indexed table by the group commit once enough wait, and by hand in between, a few
    /// records at a time), readers page through the whole log and look up its newest
    /// record. Every read sees a gapless prefix of the log, each record once, and every
    /// record acknowledged before the read began.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_racing_moves_see_each_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("race.db")).unwrap();
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, acked, done) = (store.clone(), std::sync::Arc::clone(&acked), std::sync::Arc::clone(&done));
            tokio::spawn(async move {
                let mut prev = GENESIS;
                let mut next = 1;
                for round in 0..150u64 {
                    let batch = rows(next, 1 + round % 7, prev);
                    prev = batch.last().unwrap().record.hash;
                    next += batch.len() as u64;
                    store.append_audit(batch).await.unwrap();
                    acked.store(next - 1, std::sync::atomic::Ordering::SeqCst);
                    if round % 3 == 0 {
                        store.write(|c| settle(c, 1, 5)).await.unwrap();
                    }
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                next - 1
            })
        };
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, acked, done) = (store.clone(), std::sync::Arc::clone(&acked), std::sync::Arc::clone(&done));
                tokio::spawn(async move {
                    let mut reads = 0;
                    loop {
                        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                        let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
                        let all = store.audit_records(1, 100_000).await.unwrap();
                        let seqs: Vec<u64> = all.iter().map(|r| r.record.seq).collect();
                        assert_eq!(
                            seqs,
                            (1..=seqs.len() as u64).collect::<Vec<_>>(),
                            "a read saw a gap or a record twice"
                        );
                        assert!(seqs.len() as u64 >= floor, "a read missed acknowledged records");
                        if floor > 0 {
                            assert!(store.get_audit(floor).await.unwrap().is_some(), "record {floor} went missing");
                        }
                        reads += 1;
                        if finished {
                            return reads;
                        }
                    }
                })
            })
            .collect();
        let last = writer.await.unwrap();
        for reader in readers {
            assert!(reader.await.unwrap() > 0);
        }
        assert_eq!(store.audit_records(1, 100_000).await.unwrap().len() as u64, last);
    }

    /// How many records wait in the tail of the database file at `path`, asked on a
    /// connection of its own.
    fn tail_len(path: &std::path::Path) -> i64 {
        let c = Connection::open(path).unwrap();
        c.query_row("SELECT count(*) FROM audit_tail", [], |r| r.get(0)).unwrap()
    }

    /// Under a steady stream of batches the writer is never idle, yet the tail stays
    /// short: a batch that finds enough records waiting moves them first. Once the writer
    /// is idle the rest is moved too, and a closed store leaves none behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_keeps_the_tail_short_and_empties_it_when_idle_or_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.db");
        let store = SqliteStore::open(&path).unwrap();
        let mut prev = GENESIS;
        let batch = 50u64;
        for round in 0..20u64 {
            let rows = rows(round * batch + 1, batch, prev);
            prev = rows.last().unwrap().record.hash;
            store.append_audit(rows).await.unwrap();
            let waiting = tail_len(&path);
            assert!(waiting <= SETTLE_ROWS + batch as i64, "{waiting} records wait after round {round}");
        }
        assert_eq!(store.audit_records(1, 10_000).await.unwrap().len(), 1000);
        // Idle: the writer moves the rest on its own (waiting here is a bound, not a pause).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tail_len(&path) > 0 {
            assert!(std::time::Instant::now() < deadline, "the idle writer never moved the tail");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Closed: the records of the last batch are moved as the writer stops, and the
        // drop waits for it, so the file is closed cleanly (no write-ahead log left, which
        // a read-only mount could not open) with every record indexed.
        store.append_audit(rows(1001, 3, prev)).await.unwrap();
        drop(store);
        assert!(!dir.path().join("tail.db-wal").exists(), "the closed store left its write-ahead log");
        assert_eq!(tail_len(&path), 0, "the stopping writer left the tail");
        let c = Connection::open(&path).unwrap();
        let indexed: i64 = c.query_row("SELECT count(*) FROM audit_records", [], |r| r.get(0)).unwrap();
        assert_eq!(indexed, 1003);
    }

    /// A move that keeps failing (here the indexed table refuses every insert) costs one
    /// batch in [`super::super::commit::SETTLE_BACKOFF_BATCHES`], not every batch; the
    /// records stay in the tail, acknowledged and readable, and move once the table takes
    /// them again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_move_is_not_retried_by_every_batch() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .write(|c| {
                c.execute_batch(
                    "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let failed =
            |store: &SqliteStore| store.committer.counts().failed_moves.load(std::sync::atomic::Ordering::Relaxed);
        let mut prev = GENESIS;
        for seq in 1..=60u64 {
            let row = rows(seq, 1, prev);
            prev = row[0].record.hash;
            store.append_audit(row).await.unwrap();
        }
        assert_eq!(failed(&store), 1, "every batch tried the failing move again");
        assert_eq!(store.audit_records(1, 100).await.unwrap().len(), 60);
        assert_eq!(store.audit_head().await.unwrap().map(|h| h.0), Some(60));
        let moved = store
            .write(|c| {
                c.execute_batch("DROP TRIGGER refuse")?;
                settle(c, 1, SETTLE_MOST)
            })
            .await
            .unwrap();
        assert_eq!(moved, 60);
        assert_eq!(store.audit_records(1, 100).await.unwrap().len(), 60);
    }

    /// A move that fails part way (here at the fourth record it moves, after three were
    /// copied) is undone whole: no record is left in both tables, so every record is read
    /// exactly once, and the writes of the batch that tried it still commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_move_that_fails_part_way_leaves_no_record_twice() {
        let store = SqliteStore::open_in_memory().unwrap();
        let refused = SETTLE_ROWS + 4;
        store
            .write(move |c| {
                c.execute_batch(&format!(
                    "CREATE TRIGGER refuse_one BEFORE INSERT ON audit_records WHEN NEW.seq = {refused} \
                     BEGIN SELECT RAISE(FAIL, 'refused'); END;"
                ))?;
                Ok(())
            })
            .await
            .unwrap();
        let mut prev = GENESIS;
        for seq in 1..=60u64 {
            let row = rows(seq, 1, prev);
            prev = row[0].record.hash;
            store.append_audit(row).await.unwrap();
        }
        assert!(store.committer.counts().failed_moves.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        let read: Vec<u64> = store.audit_records(1, 100).await.unwrap().iter().map(|r| r.record.seq).collect();
        assert_eq!(read, (1..=60).collect::<Vec<u64>>(), "each record once, in order");
        let (indexed, waiting, both) = store
            .write(|c| {
                let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
                Ok((
                    count("SELECT count(*) FROM audit_records")?,
                    count("SELECT count(*) FROM audit_tail")?,
                    count("SELECT count(*) FROM audit_records JOIN audit_tail USING (seq)")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!((indexed + waiting, both), (60, 0), "{indexed} indexed, {waiting} waiting, {both} in both");
        assert_eq!(indexed, SETTLE_ROWS, "only the move before the refused record went through");
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
