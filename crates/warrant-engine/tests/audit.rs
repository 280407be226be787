#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test code"
)]
//! The audit writer against a real SQLite file: group commit, chain verification,
//! tamper detection on the file itself, fail-closed behaviour and restarts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use warrant_core::audit::{AuditEntry, AuditKind, VerifyReport};
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_engine::audit::{self, AuditConfig, AuditError, AuditWriter};
use warrant_engine::{EngineConfig, KeyManager};
use warrant_store::audit::{AuditFilter, AuditRow, AuditStore, StoredCheckpoint};
use warrant_store::{SqliteStore, StoreError};
use warrant_token::checkpoint::KeyArchive;
use warrant_token::KeyPair;

const T0: i64 = 1_700_000_000;

fn entry(i: u64) -> AuditEntry {
    let mut e = AuditEntry::new(UnixTime(T0 + i as i64), AuditKind::Decision);
    e.agent = Some(AgentId::from_random([(i % 7) as u8; 12]));
    e.human = Some(HumanId::from_random([1; 12]));
    e.task = Some(TaskId::from_random([(i % 3) as u8; 12]));
    e.warrant = Some(WarrantId::from_random([(i % 251) as u8; 12]));
    e.decision = Some(if i % 2 == 1 { "deny" } else { "allow" }.into());
    e.details = serde_json::json!({ "i": i, "action": "crm.read", "reasons": ["scope covers"] });
    e
}

fn db(dir: &Path) -> PathBuf {
    dir.join("warrant.db")
}

fn config() -> EngineConfig {
    EngineConfig::for_issuer("http://127.0.0.1:8080")
}

async fn open(dir: &Path) -> (Arc<SqliteStore>, Arc<KeyManager>) {
    let store = Arc::new(SqliteStore::open(&db(dir)).unwrap());
    let keys = Arc::new(KeyManager::load(store.as_ref(), UnixTime(T0), &config()).await.unwrap());
    (store, keys)
}

async fn writer(store: &Arc<SqliteStore>, keys: &Arc<KeyManager>, config: AuditConfig) -> AuditWriter {
    AuditWriter::spawn(Arc::clone(store) as Arc<dyn AuditStore>, Arc::clone(keys) as _, config).await.unwrap()
}

fn every(n: u64) -> AuditConfig {
    AuditConfig { checkpoint_every: n, ..AuditConfig::default() }
}

async fn verify(store: &SqliteStore) -> VerifyReport {
    let keys = audit::key_archive(store).await.unwrap();
    audit::verify(store, &keys).await.unwrap()
}

/// Writes `n` records one at a time (one batch each, a checkpoint every 10), shuts
/// the writer down and closes the store, leaving only the file.
async fn build_log(dir: &Path, n: u64) {
    let (store, keys) = open(dir).await;
    let w = writer(&store, &keys, every(10)).await;
    for i in 1..=n {
        assert_eq!(w.submit(entry(i)).await.unwrap(), i);
    }
    w.shutdown().await;
    let report = verify(&store).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, n);
}

/// Reopens the file after tampering and verifies it.
async fn verify_file(dir: &Path) -> VerifyReport {
    let store = SqliteStore::open(&db(dir)).unwrap();
    verify(&store).await
}

fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db(dir)).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn assert_bad(report: &VerifyReport, seq: u64) {
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad, Some(seq), "{report:?}");
    assert_eq!(report.records, seq - 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_get_distinct_seqs_in_few_batches_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = Arc::new(writer(&store, &keys, AuditConfig::default()).await);
    const N: u64 = 10_000;
    let tasks: Vec<_> = (1..=N)
        .map(|i| {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.submit(entry(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    let m = w.metrics();
    assert_eq!(m.records(), N);
    assert_eq!(m.head_seq(), N);
    assert!(m.batches() * 10 < N, "{} batches for {N} records: no group commit", m.batches());
    assert!(m.last_commit_latency() > Duration::ZERO);
    assert!(m.checkpoints() >= 1);
    assert_eq!(m.failed_batches(), 0);
    w.shutdown().await;
    let report = verify(&store).await;
    assert_eq!(report, VerifyReport { ok: true, records: N, first_bad: None, reason: None });
    // Every accepted entry is readable back, indexed.
    let deny = AuditFilter { decision: Some("deny".into()), limit: 10_000, ..AuditFilter::default() };
    assert_eq!(store.query_audit(&deny).await.unwrap().len() as u64, N / 2);
    let cps = store.checkpoints(0, 100).await.unwrap();
    assert!(cps.iter().any(|c| c.seq == N), "the head is checkpointed at shutdown");
}

#[tokio::test]
async fn a_record_is_readable_and_indexed_when_submit_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, AuditConfig::default()).await;
    let seq = w.submit(entry(1)).await.unwrap();
    let row = store.get_audit(seq).await.unwrap().unwrap();
    let (embedded, back) = warrant_core::audit::decode(&row.record).unwrap();
    assert_eq!((embedded, back), (1, entry(1)));
    assert!(row.columns_match(&entry(1)));
    w.shutdown().await;
    assert!(matches!(w.submit(entry(2)).await, Err(AuditError::Closed)));
}

#[tokio::test]
async fn tamper_an_edited_record_body_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 100).await;
    // Record 43 is a deny; make it say allow (and its indexed column too).
    tamper(
        dir.path(),
        r#"UPDATE audit_records SET body = replace(body, '"decision":"deny"', '"decision":"allow"'),
                                  decision = 'allow' WHERE seq = 43;"#,
    );
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 43);
    assert!(report.reason.unwrap().contains("altered"));
}

#[tokio::test]
async fn tamper_an_edited_indexed_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 30).await;
    tamper(dir.path(), "UPDATE audit_records SET decision = 'allow' WHERE seq = 17;");
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 17);
    assert!(report.reason.unwrap().contains("indexed columns"));
}

#[tokio::test]
async fn tamper_a_deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 100).await;
    tamper(dir.path(), "DELETE FROM audit_records WHERE seq = 57;");
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 57);
    assert!(report.reason.unwrap().contains("missing"));
}

#[tokio::test]
async fn tamper_two_swapped_records_are_named() {
    for (a, b) in [(30u64, 31u64), (12, 88)] {
        let dir = tempfile::tempdir().unwrap();
        build_log(dir.path(), 100).await;
        tamper(
            dir.path(),
            &format!(
                "CREATE TEMP TABLE t AS SELECT * FROM audit_records WHERE seq IN ({a}, {b});
                 UPDATE audit_records SET
                   at = (SELECT at FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   agent = (SELECT agent FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   task = (SELECT task FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   warrant = (SELECT warrant FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   decision = (SELECT decision FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   body = (SELECT body FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   prev_hash = (SELECT prev_hash FROM t WHERE t.seq = {a} + {b} - audit_records.seq),
                   hash = (SELECT hash FROM t WHERE t.seq = {a} + {b} - audit_records.seq)
                 WHERE seq IN ({a}, {b});"
            ),
        );
        let report = verify_file(dir.path()).await;
        assert_bad(&report, a);
        assert!(report.reason.unwrap().contains(&format!("body of record {b}")));
    }
}

#[tokio::test]
async fn tamper_a_tail_truncated_after_a_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 100).await;
    tamper(dir.path(), "DELETE FROM audit_records WHERE seq > 64;");
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 65);
    assert!(report.reason.unwrap().contains("removed"));
}

#[tokio::test]
async fn tamper_a_forged_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 60).await;
    // A checkpoint re-signed by a key the issuer never had.
    let stranger = KeyPair::from_seed(&[42; 32]);
    let store = SqliteStore::open(&db(dir.path())).unwrap();
    let cp = store.checkpoints(40, 1).await.unwrap().remove(0);
    assert_eq!(cp.seq, 50);
    let statement = warrant_token::checkpoint::Checkpoint { seq: cp.seq, head_hash: cp.head_hash, at: cp.at };
    let forged = warrant_token::checkpoint::sign(&stranger, &statement).unwrap();
    drop(store);
    tamper(
        dir.path(),
        &format!("UPDATE audit_checkpoints SET signature = '{forged}', kid = '{}' WHERE seq = 50;", stranger.kid()),
    );
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 50);
    assert!(report.reason.unwrap().contains("not validly signed"));
}

#[tokio::test]
async fn tamper_an_unreadable_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 40).await;
    tamper(dir.path(), "UPDATE audit_records SET hash = x'00' WHERE seq = 23;");
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 23);
    assert!(report.reason.unwrap().contains("cannot be read"));
}

#[tokio::test]
async fn checkpoints_signed_by_a_retired_key_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, every(10)).await;
    for i in 1..=10 {
        w.submit(entry(i)).await.unwrap();
    }
    let first_kid = keys.ring().unwrap().active().kid().to_owned();
    // Rotate, and let the old key drop out of the published ring entirely.
    warrant_engine::keys::rotate(store.as_ref(), UnixTime(T0 + 1)).await.unwrap();
    keys.refresh(store.as_ref(), UnixTime(T0 + 10 * 86_400), &config()).await.unwrap();
    let ring = keys.ring().unwrap();
    assert_ne!(ring.active().kid(), first_kid);
    assert!(!ring.kids().contains(&first_kid), "the retired key is no longer published");
    for i in 11..=20 {
        w.submit(entry(i)).await.unwrap();
    }
    w.shutdown().await;
    let cps = store.checkpoints(0, 10).await.unwrap();
    assert_eq!(cps.iter().map(|c| (c.seq, c.kid == first_kid)).collect::<Vec<_>>(), vec![(10, true), (20, false)]);
    assert!(verify(&store).await.ok);
    // Against the published ring only, the old checkpoint is unverifiable: named.
    let report = audit::verify(store.as_ref(), ring.as_ref()).await.unwrap();
    assert_bad(&report, 10);
}

#[tokio::test]
async fn an_idle_log_is_checkpointed_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let config = AuditConfig {
        checkpoint_every: 1_000_000,
        checkpoint_interval: Duration::from_millis(100),
        ..AuditConfig::default()
    };
    let w = writer(&store, &keys, config).await;
    for i in 1..=3 {
        w.submit(entry(i)).await.unwrap();
    }
    let mut latest = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        latest = store.latest_checkpoint().await.unwrap().map(|c| c.seq);
        if latest == Some(3) {
            break;
        }
    }
    assert_eq!(latest, Some(3));
    w.shutdown().await;
}

#[tokio::test]
async fn a_restart_continues_the_chain_from_the_durable_head() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 30).await;
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, every(10)).await;
    assert_eq!(w.metrics().head_seq(), 30);
    for i in 31..=55 {
        assert_eq!(w.submit(entry(i)).await.unwrap(), i);
    }
    w.shutdown().await;
    let (r30, r31) = (store.get_audit(30).await.unwrap().unwrap(), store.get_audit(31).await.unwrap().unwrap());
    assert_eq!(r31.record.prev_hash, r30.record.hash);
    let report = verify(&store).await;
    assert_eq!(report, VerifyReport { ok: true, records: 55, first_bad: None, reason: None });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_what_was_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = Arc::new(writer(&store, &keys, AuditConfig::default()).await);
    let tasks: Vec<_> = (1..=500)
        .map(|i| {
            let w = Arc::clone(&w);
            tokio::spawn(async move { (i, w.submit(entry(i)).await) })
        })
        .collect();
    tokio::task::yield_now().await;
    w.shutdown().await;
    let mut answered = 0;
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match result {
            Ok(seq) => {
                answered += 1;
                let row = store.get_audit(seq).await.unwrap().unwrap();
                assert_eq!(warrant_core::audit::decode(&row.record).unwrap().1, entry(i));
            }
            Err(e) => assert_eq!(e, AuditError::Closed),
        }
    }
    let report = verify(&store).await;
    assert!(report.ok);
    assert_eq!(report.records, answered);
}

#[tokio::test]
async fn fail_closed_when_the_table_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = Arc::new(writer(&store, &keys, AuditConfig::default()).await);
    w.submit(entry(1)).await.unwrap();
    tamper(dir.path(), "DROP TABLE audit_records;");
    let tasks: Vec<_> = (2..=20)
        .map(|i| {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.submit(entry(i)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Err(AuditError::WriteFailed(_))));
    }
    assert!(w.metrics().failed_batches() >= 1);
    assert_eq!(w.metrics().head_seq(), 1);
    // Still alive and still refusing, without panicking.
    assert!(matches!(w.submit(entry(21)).await, Err(AuditError::WriteFailed(_))));
    w.shutdown().await;
}

#[tokio::test]
async fn fail_closed_while_sqlite_refuses_writes_then_the_chain_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, every(5)).await;
    for i in 1..=7 {
        w.submit(entry(i)).await.unwrap();
    }
    tamper(
        dir.path(),
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END;",
    );
    for i in 8..=12 {
        let err = w.submit(entry(i)).await.unwrap_err();
        assert!(matches!(&err, AuditError::WriteFailed(m) if m.contains("read-only")), "{err}");
    }
    tamper(dir.path(), "DROP TRIGGER refuse;");
    // No seq was burnt by the failures: the chain continues at 8.
    assert_eq!(w.submit(entry(8)).await.unwrap(), 8);
    w.shutdown().await;
    let report = verify(&store).await;
    assert_eq!(report, VerifyReport { ok: true, records: 8, first_bad: None, reason: None });
}

/// An `AuditStore` whose every call can be made to fail or to be slow.
struct Faulty {
    inner: SqliteStore,
    fail: AtomicBool,
    delay: Duration,
}

impl Faulty {
    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Backend("injected fault".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl AuditStore for Faulty {
    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<(), StoreError> {
        tokio::time::sleep(self.delay).await;
        self.check()?;
        self.inner.append_audit(rows).await
    }
    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        self.check()?;
        self.inner.audit_head().await
    }
    async fn audit_records(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.inner.audit_records(from_seq, limit).await
    }
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        self.inner.query_audit(filter).await
    }
    async fn get_audit(&self, seq: u64) -> Result<Option<AuditRow>, StoreError> {
        self.inner.get_audit(seq).await
    }
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, after_seq: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.checkpoints(after_seq, limit).await
    }
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint().await
    }
}

#[tokio::test]
async fn fail_closed_on_an_injected_fault_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let faulty =
        Arc::new(Faulty { inner: store.as_ref().clone(), fail: AtomicBool::new(false), delay: Duration::ZERO });
    let key = Arc::new(keys.ring().unwrap().active().clone());
    let w = AuditWriter::spawn(Arc::clone(&faulty) as _, key, every(3)).await.unwrap();
    for i in 1..=4 {
        assert_eq!(w.submit(entry(i)).await.unwrap(), i);
    }
    faulty.fail.store(true, Ordering::SeqCst);
    // The append fails, then re-reading the head fails too: both refuse.
    for i in 5..=8 {
        assert!(matches!(w.submit(entry(i)).await, Err(AuditError::WriteFailed(m)) if m.contains("injected")));
    }
    faulty.fail.store(false, Ordering::SeqCst);
    assert_eq!(w.submit(entry(5)).await.unwrap(), 5);
    assert_eq!(w.submit(entry(6)).await.unwrap(), 6);
    w.shutdown().await;
    let report = verify(&store).await;
    assert_eq!(report, VerifyReport { ok: true, records: 6, first_bad: None, reason: None });
    let archive: KeyArchive = [keys.ring().unwrap().active().verifying_key()].into_iter().collect();
    assert!(audit::verify(store.as_ref(), &archive).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_after_the_submit_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let slow = Arc::new(Faulty {
        inner: store.as_ref().clone(),
        fail: AtomicBool::new(false),
        delay: Duration::from_millis(800),
    });
    let config = AuditConfig {
        queue_capacity: 1,
        max_batch: 1,
        submit_timeout: Duration::from_millis(50),
        ..AuditConfig::default()
    };
    let w = Arc::new(AuditWriter::spawn(slow as _, Arc::clone(&keys) as _, config).await.unwrap());
    let first = {
        let w = Arc::clone(&w);
        tokio::spawn(async move { w.submit(entry(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // the writer is inside the slow append
    let second = {
        let w = Arc::clone(&w);
        tokio::spawn(async move { w.submit(entry(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(w.queue_depth(), 1);
    assert_eq!(w.submit(entry(3)).await, Err(AuditError::QueueFull(Duration::from_millis(50))));
    assert_eq!(first.await.unwrap(), Ok(1));
    assert_eq!(second.await.unwrap(), Ok(2));
    w.shutdown().await;
    assert!(verify(&store).await.ok);
}
