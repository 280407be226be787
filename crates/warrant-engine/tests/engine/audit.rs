//! The audit writer against a real SQLite file: group commit, chain verification,
//! tamper detection on the file itself, fail-closed behaviour and restarts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use warrant_core::audit::{AuditEntry, AuditKind, VerifyReport};
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_engine::audit::{self, AuditConfig, AuditError, AuditWriter, Verification};
use warrant_engine::{EngineConfig, KeyManager};
use warrant_store::audit::{Appended, AuditFilter, AuditRow, AuditStore, StoredCheckpoint};
use warrant_store::{KeyPurpose, KeyStore as _, SqliteStore, StoreError};
use warrant_token::checkpoint::KeyArchive;
use warrant_token::{Kek, KeyPair};

use crate::undo::undo_migrations_to;

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

/// The key-encryption key of these tests' databases.
fn kek() -> Kek {
    Kek::from_bytes([0x4b; 32])
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::for_issuer("http://127.0.0.1:8080");
    config.kek = Some(kek());
    config
}

/// Where these tests keep the witness: outside the database, as the server does.
fn witness_path(dir: &Path) -> PathBuf {
    dir.join("witness").join("audit-witness.jsonl")
}

/// Loads the key ring over `store` as the engine does, at `T0`.
async fn load_keys(store: &Arc<SqliteStore>, config: &EngineConfig) -> Result<KeyManager, warrant_engine::KeyError> {
    let clock: Arc<dyn warrant_engine::Clock> = Arc::new(warrant_engine::ManualClock::at(UnixTime(T0)));
    let lifetimes = warrant_engine::keys::KeyLifetimes { max_ttl: config.limits.max_ttl, grace: config.key_grace };
    KeyManager::load(Arc::clone(store) as _, clock, config.kek.clone(), lifetimes).await
}

async fn open(dir: &Path) -> (Arc<SqliteStore>, Arc<KeyManager>) {
    let store = Arc::new(SqliteStore::open(&db(dir)).unwrap());
    let keys = Arc::new(load_keys(&store, &config()).await.unwrap());
    (store, keys)
}

async fn writer(store: &Arc<SqliteStore>, keys: &Arc<KeyManager>, config: AuditConfig) -> AuditWriter {
    AuditWriter::spawn(Arc::clone(store) as Arc<dyn AuditStore>, Arc::clone(keys) as _, config).await.unwrap()
}

fn every(n: u64) -> AuditConfig {
    AuditConfig { checkpoint_every: n, ..AuditConfig::default() }
}

/// The chain and checkpoints alone (what verification was before the witness).
async fn verify(store: &SqliteStore) -> VerifyReport {
    let keys = warrant_engine::keys::checkpoint_keys(store, Some(&kek())).await.unwrap();
    audit::verify_all(store, &keys, None, audit::WitnessCoverage::Every).await.unwrap().chain
}

/// The chain, the checkpoints and the witness, as `warrant audit verify` does it.
async fn verify_witnessed(dir: &Path) -> Verification {
    let store = SqliteStore::open(&db(dir)).unwrap();
    let keys = warrant_engine::keys::checkpoint_keys(&store, Some(&kek())).await.unwrap();
    audit::verify_all(&store, &keys, Some(&witness_path(dir)), audit::WitnessCoverage::Every).await.unwrap()
}

/// Writes `n` records one at a time (one batch each, a checkpoint every 10), shuts
/// the writer down and closes the store, leaving only the file.
async fn build_log(dir: &Path, n: u64) {
    let (store, keys) = open(dir).await;
    let w = writer(&store, &keys, AuditConfig { witness: Some(witness_path(dir)), ..every(10) }).await;
    for i in 1..=n {
        assert_eq!(w.submit(entry(i)).await.unwrap(), i);
    }
    w.shutdown().await;
    let report = verify(&store).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, n);
    drop(store);
    let witnessed = verify_witnessed(dir).await;
    assert!(witnessed.ok(), "{witnessed:?}");
}

/// Reopens the file after tampering and verifies it.
async fn verify_file(dir: &Path) -> VerifyReport {
    let store = SqliteStore::open(&db(dir)).unwrap();
    verify(&store).await
}

/// Runs `sql` on the database file, every record first moved into the indexed table
/// (where the edits below look for them).
fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db(dir)).unwrap();
    warrant_store::sqlite::settle_audit_tail(&conn).unwrap();
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
    // Every append counted once, every record once by its append's time and once by how
    // long its caller waited, which is never less than its append took.
    let times = m.commit_times();
    assert_eq!(times.appends.count(), m.batches());
    assert_eq!((times.records.count(), times.waits.count()), (N, N));
    assert!(times.waits.sum_micros >= times.records.sum_micros, "{times:?}");
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

/// A record the writer cannot encode.
struct Unencodable;

impl audit::Draft for Unencodable {
    fn chain(
        self: Box<Self>,
        _: [u8; 32],
        _: u64,
    ) -> Result<(warrant_core::audit::AuditRecord, AuditEntry), warrant_core::audit::EncodeError> {
        Err(serde_json::from_str::<u8>("not a number").unwrap_err().into())
    }
}

#[tokio::test]
async fn a_draft_that_cannot_be_encoded_fails_alone_and_the_chain_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, AuditConfig::default()).await;
    // Queued together, so they share a batch.
    let first = w.enqueue_draft(Box::new(entry(1)), Vec::new()).await.unwrap();
    let bad = w.enqueue_draft(Box::new(Unencodable), Vec::new()).await.unwrap();
    let last = w.enqueue_draft(Box::new(entry(2)), Vec::new()).await.unwrap();
    assert_eq!(first.durable().await.unwrap(), 1);
    assert!(matches!(bad.durable().await, Err(AuditError::WriteFailed(m)) if m.contains("cannot be encoded")));
    assert_eq!(last.durable().await.unwrap(), 2);
    w.shutdown().await;
    assert_eq!(verify(&store).await, VerifyReport { ok: true, records: 2, first_bad: None, reason: None });
    let row = store.get_audit(2).await.unwrap().unwrap();
    assert_eq!(warrant_core::audit::decode(&row.record).unwrap(), (2, entry(2)));
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
async fn checkpoints_have_a_key_of_their_own_and_a_retired_one_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, every(10)).await;
    for i in 1..=10 {
        w.submit(entry(i)).await.unwrap();
    }
    let warrant_kid = keys.ring().unwrap().active().kid().to_owned();
    let first_kid = keys.checkpoint_key().unwrap().kid().to_owned();
    assert_ne!(first_kid, warrant_kid, "checkpoints are not signed with the warrant-signing key");
    // Rotating the warrant key leaves the checkpoint key alone; rotating the checkpoint
    // key retires the old one, whose checkpoints keep verifying.
    warrant_engine::keys::rotate(store.as_ref(), &kek(), UnixTime(T0 + 1)).await.unwrap();
    keys.refresh_at(UnixTime(T0 + 1)).await.unwrap();
    assert_eq!(keys.checkpoint_key().unwrap().kid(), first_kid);
    warrant_engine::keys::rotate_purpose(store.as_ref(), &kek(), KeyPurpose::Checkpoint, UnixTime(T0 + 2))
        .await
        .unwrap();
    keys.refresh_at(UnixTime(T0 + 10 * 86_400)).await.unwrap();
    assert_ne!(keys.checkpoint_key().unwrap().kid(), first_kid);
    for i in 11..=20 {
        w.submit(entry(i)).await.unwrap();
    }
    w.shutdown().await;
    let cps = store.checkpoints(0, 10).await.unwrap();
    assert_eq!(cps.iter().map(|c| (c.seq, c.kid == first_kid)).collect::<Vec<_>>(), vec![(10, true), (20, false)]);
    assert!(verify(&store).await.ok);
    // Against the issuer's published ring, no checkpoint verifies: named at the first.
    let ring = keys.ring().unwrap();
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
    // Wall-clock on purpose: the idle checkpoint is paced by the writer's tokio timer
    // (`checkpoint_interval`, 100 ms here), not by the engine's clock; polled, bounded at 1 s.
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
    // Only the append that succeeded is timed, with its one record; the failed ones are
    // counted as failed batches.
    let times = w.metrics().commit_times();
    assert_eq!(times.appends.count(), w.metrics().batches());
    assert_eq!((times.appends.count(), times.records.count(), times.waits.count()), (1, 1, 1));
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
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_tail BEGIN SELECT RAISE(ABORT, 'disk is read-only'); END;",
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

/// Two writers on one database (two connections, as two servers on one PostgreSQL would
/// have) share one chain: when the other moved the head since its last batch, a writer
/// chains its batch again onto the new head instead of failing its callers. Here the two
/// take turns, so every batch but the first finds the head moved. Every submit succeeds,
/// every sequence number is given once, and the chain verifies end to end.
#[tokio::test]
async fn two_writers_on_one_store_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (store_a, keys) = open(dir.path()).await;
    let store_b = Arc::new(SqliteStore::open(&db(dir.path())).unwrap());
    let a = writer(&store_a, &keys, every(50)).await;
    let b = writer(&store_b, &keys, every(50)).await;
    for i in 0..100u64 {
        let turn = if i % 2 == 0 { &a } else { &b };
        let seq = turn.submit(entry(i + 1)).await.expect("a moved head is not a failure");
        assert_eq!(seq, i + 1, "each record continues the one before it, whichever writer wrote that");
    }
    a.shutdown().await;
    b.shutdown().await;
    let report = verify(&store_a).await;
    assert!(report.ok && report.records == 100, "{report:?}");
}

/// Two writers on one database submitting at the same time, as two busy servers would:
/// every submit succeeds (neither waits on nor fails for the other), every sequence
/// number is given exactly once, and the chain verifies end to end.
#[tokio::test]
async fn two_writers_submitting_concurrently_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (store_a, keys) = open(dir.path()).await;
    let store_b = Arc::new(SqliteStore::open(&db(dir.path())).unwrap());
    let a = Arc::new(writer(&store_a, &keys, every(64)).await);
    let b = Arc::new(writer(&store_b, &keys, every(64)).await);
    let mut tasks = Vec::new();
    for (w, offset) in [(Arc::clone(&a), 0u64), (Arc::clone(&b), 10_000)] {
        for task in 0..8u64 {
            let w = Arc::clone(&w);
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50u64 {
                    seqs.push(w.submit(entry(offset + task * 100 + i)).await.expect("a moved head is not a failure"));
                }
                seqs
            }));
        }
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<u64>>(), "every number given once, none skipped");
    a.shutdown().await;
    b.shutdown().await;
    let report = verify(&store_a).await;
    assert!(report.ok && report.records == 800, "{report:?}");
}

/// An `AuditStore` whose every call can be made to fail, and whose appends can be held at
/// a gate or failed one in every few.
struct Faulty {
    inner: SqliteStore,
    fail: AtomicBool,
    /// Appends begun (counted before the gate).
    entered: AtomicU64,
    /// When set, each append waits for a permit of its own.
    gate: Option<Semaphore>,
    /// Every n-th append fails (0: none do).
    fail_every: u64,
}

impl Faulty {
    fn new(inner: &SqliteStore) -> Self {
        Faulty {
            inner: inner.clone(),
            fail: AtomicBool::new(false),
            entered: AtomicU64::new(0),
            gate: None,
            fail_every: 0,
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Backend("injected fault".into()))
        } else {
            Ok(())
        }
    }

    /// What every append goes through before the real one.
    async fn before_append(&self) -> Result<(), StoreError> {
        let n = self.entered.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await.map_err(|_| StoreError::Backend("gate closed".into()))?.forget();
        }
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            return Err(StoreError::Backend("injected append fault".into()));
        }
        self.check()
    }

    /// Waits (at most ten seconds, a guard against a hang) until `n` appends have begun.
    async fn wait_entered(&self, n: u64) -> bool {
        let until = async {
            while self.entered.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), until).await.is_ok()
    }
}

#[async_trait]
impl AuditStore for Faulty {
    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<(), StoreError> {
        self.before_append().await?;
        self.inner.append_audit(rows).await
    }
    async fn append_audit_at_head(&self, rows: Vec<AuditRow>) -> Result<Appended, StoreError> {
        self.before_append().await?;
        self.inner.append_audit_at_head(rows).await
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

/// A writer over `store` whose appends each wait at a gate (closed: add permits to let
/// them through).
async fn gated_writer(
    store: &Arc<SqliteStore>,
    keys: &Arc<KeyManager>,
    config: AuditConfig,
) -> (Arc<Faulty>, Arc<AuditWriter>) {
    let gated = Arc::new(Faulty { gate: Some(Semaphore::new(0)), ..Faulty::new(store) });
    let w = AuditWriter::spawn(Arc::clone(&gated) as _, Arc::clone(keys) as _, config).await.unwrap();
    (gated, Arc::new(w))
}

/// Submits `entry(i)` from a task of its own.
fn in_background(w: &Arc<AuditWriter>, i: u64) -> tokio::task::JoinHandle<Result<u64, AuditError>> {
    let w = Arc::clone(w);
    tokio::spawn(async move { w.submit(entry(i)).await })
}

#[tokio::test]
async fn fail_closed_on_an_injected_fault_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let faulty = Arc::new(Faulty::new(&store));
    let key = Arc::new(keys.checkpoint_key().unwrap());
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
    let archive: KeyArchive = [keys.checkpoint_key().unwrap().verifying_key()].into_iter().collect();
    assert!(audit::verify(store.as_ref(), &archive).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_after_the_submit_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let config = AuditConfig {
        queue_capacity: 1,
        max_batch: 1,
        submit_timeout: Duration::from_millis(50),
        ..AuditConfig::default()
    };
    let (gated, w) = gated_writer(&store, &keys, config).await;
    let submit = |i: u64| in_background(&w, i);
    // The writer's append held at the gate, then one entry in the queue's one slot.
    let first = submit(1);
    assert!(gated.wait_entered(1).await);
    let second = submit(2);
    let queued = async {
        while w.queue_depth() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    assert!(tokio::time::timeout(Duration::from_secs(10), queued).await.is_ok());
    // Wall-clock on purpose: the submit timeout is a real bound on a real wait.
    assert_eq!(w.submit(entry(3)).await, Err(AuditError::QueueFull(Duration::from_millis(50))));
    gated.gate.as_ref().unwrap().add_permits(2);
    assert_eq!(first.await.unwrap(), Ok(1));
    assert_eq!(second.await.unwrap(), Ok(2));
    w.shutdown().await;
    assert!(verify(&store).await.ok);
}

/// Many callers at once against appends that fail one in every five: every acknowledged sequence number holds its caller's record, no record is on disk
/// that no caller was told of, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_concurrent_submits_and_failing_appends_every_acknowledged_record_is_on_disk_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let faulty = Arc::new(Faulty { fail_every: 5, ..Faulty::new(&store) });
    let config = AuditConfig { max_batch: 8, ..every(50) };
    let w = Arc::new(AuditWriter::spawn(Arc::clone(&faulty) as _, Arc::clone(&keys) as _, config).await.unwrap());
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let w = Arc::clone(&w);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..150u64 {
                    let i = t * 1_000 + k;
                    match w.submit(entry(i)).await {
                        Ok(seq) => acked.push((seq, i)),
                        Err(AuditError::WriteFailed(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    w.shutdown().await;
    let refused = 16 * 150 - acked.len();
    assert!(refused > 0 && w.metrics().failed_batches() > 0, "no append failed: the test tests nothing");
    acked.sort_unstable();
    let seqs: Vec<u64> = acked.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=acked.len() as u64).collect::<Vec<_>>(), "acknowledged sequence numbers");
    let report = verify(&store).await;
    assert_eq!(report, VerifyReport { ok: true, records: acked.len() as u64, first_bad: None, reason: None });
    for (seq, i) in acked {
        let body = store.get_audit(seq).await.unwrap().unwrap().record.body;
        assert!(body.contains(&format!("\"i\":{i},")), "record {seq} holds {body}, not entry {i}");
    }
}

// ---------------------------------------------------------------------------------------
// Keys at rest and the witness: what a copy of the database must not give away.
// ---------------------------------------------------------------------------------------

/// Whether `needle` occurs anywhere in the database file or its write-ahead log.
fn file_holds(dir: &Path, needle: &[u8]) -> bool {
    ["warrant.db", "warrant.db-wal"]
        .iter()
        .any(|name| std::fs::read(dir.join(name)).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
}

#[tokio::test]
async fn keys_at_rest_no_seed_is_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = open(dir.path()).await;
    let w = writer(&store, &keys, every(5)).await;
    for i in 1..=12 {
        w.submit(entry(i)).await.unwrap();
    }
    // A rotation writes a second warrant key.
    warrant_engine::keys::rotate(store.as_ref(), &kek(), UnixTime(T0 + 1)).await.unwrap();
    keys.refresh_at(UnixTime(T0 + 1)).await.unwrap();
    w.shutdown().await;
    let seeds: Vec<[u8; 32]> = store
        .signing_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| match &k.material {
            warrant_store::KeyMaterial::Sealed(sealed) => {
                *kek().open(k.purpose.as_str(), &k.kid, sealed.as_slice()).unwrap()
            }
            warrant_store::KeyMaterial::Plaintext(_) => panic!("key {} stored in plaintext", k.kid),
        })
        .collect();
    assert_eq!(seeds.len(), 3, "two warrant keys and the checkpoint key");
    assert!(seeds.contains(&*keys.ring().unwrap().active().seed()));
    assert!(seeds.contains(&*keys.checkpoint_key().unwrap().seed()));
    drop((store, keys));
    for seed in &seeds {
        assert!(!file_holds(dir.path(), seed), "a signing seed is in the database file");
    }
}

#[tokio::test]
async fn keys_at_rest_a_copied_database_without_its_kek_cannot_sign() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5).await;
    let store = Arc::new(SqliteStore::open(&db(dir.path())).unwrap());
    let before = store.signing_keys().await.unwrap().len();
    // No KEK at all, or another one: a clear error, and no new key is made.
    let mut no_kek = config();
    no_kek.kek = None;
    let err = load_keys(&store, &no_kek).await.unwrap_err();
    assert!(matches!(err, warrant_engine::KeyError::NoKek), "{err}");
    let mut wrong = config();
    wrong.kek = Some(Kek::from_bytes([0x66; 32]));
    let err = load_keys(&store, &wrong).await.unwrap_err();
    assert!(matches!(err, warrant_engine::KeyError::Sealed { .. }), "{err}");
    assert!(err.to_string().contains("does not open"), "{err}");
    assert!(warrant_engine::keys::checkpoint_keys(store.as_ref(), None).await.is_err());
    assert_eq!(store.signing_keys().await.unwrap().len(), before, "no key was created");
    // With its KEK it opens as before.
    assert!(load_keys(&store, &config()).await.is_ok());
    assert_eq!(store.signing_keys().await.unwrap().len(), before);
}

/// The attack a database copy allowed: edit record `edited`, re-chain every later record
/// and re-sign every checkpoint with `signer`, a key the attacker inserts in the database
/// (in the only form they can write without the KEK: plaintext).
fn rechain_and_resign(dir: &Path, edited: u64, signer: &KeyPair) {
    let conn = rusqlite::Connection::open(db(dir)).unwrap();
    warrant_store::sqlite::settle_audit_tail(&conn).unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = conn
        .prepare("SELECT seq, body, prev_hash FROM audit_records ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev: Option<[u8; 32]> = None;
    for (seq, body, prev_hash) in rows {
        let seq = u64::try_from(seq).unwrap();
        if seq < edited {
            continue;
        }
        let body = if seq == edited { body.replace(r#""decision":"deny""#, r#""decision":"allow""#) } else { body };
        let prev_hash = prev.unwrap_or_else(|| prev_hash.try_into().unwrap());
        let hash = warrant_core::audit::record_hash(&prev_hash, &body);
        conn.execute(
            "UPDATE audit_records SET body = ?2, prev_hash = ?3, hash = ?4, decision = \
             CASE WHEN seq = ?5 THEN 'allow' ELSE decision END WHERE seq = ?1",
            rusqlite::params![seq as i64, body, prev_hash.as_slice(), hash.as_slice(), edited as i64],
        )
        .unwrap();
        prev = Some(hash);
    }
    conn.execute(
        "INSERT INTO signing_keys (kid, purpose, seed, sealed, created_at, retired_at) \
         VALUES (?1, 'checkpoint', ?2, NULL, ?3, ?3)",
        rusqlite::params![signer.kid(), signer.seed().as_slice(), T0 - 1],
    )
    .unwrap();
    let cps: Vec<(i64, i64)> = conn
        .prepare("SELECT seq, at FROM audit_checkpoints ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (seq, at) in cps {
        let hash: Vec<u8> =
            conn.query_row("SELECT hash FROM audit_records WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
        let head_hash: [u8; 32] = hash.try_into().unwrap();
        let statement =
            warrant_token::checkpoint::Checkpoint { seq: u64::try_from(seq).unwrap(), head_hash, at: UnixTime(at) };
        let signature = warrant_token::checkpoint::sign(signer, &statement).unwrap();
        conn.execute(
            "UPDATE audit_checkpoints SET head_hash = ?2, kid = ?3, signature = ?4 WHERE seq = ?1",
            rusqlite::params![seq, head_hash.as_slice(), signer.kid(), signature],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn tamper_rechained_records_with_checkpoints_resigned_by_an_inserted_key_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 100).await;
    rechain_and_resign(dir.path(), 43, &KeyPair::from_seed(&[0x77; 32]));
    // The chain itself is consistent again; the inserted key is not trusted, so the
    // first re-signed checkpoint is named.
    let report = verify_file(dir.path()).await;
    assert_bad(&report, 10);
    assert!(report.reason.as_deref().unwrap().contains("not validly signed"), "{report:?}");
    // The witness holds the true heads: the first one after the edit no longer matches.
    let v = verify_witnessed(dir.path()).await;
    assert!(!v.ok());
    let witness = v.witness.unwrap();
    assert!(!witness.ok);
    assert!(witness.problem.as_deref().unwrap().contains("record 50 no longer has the head hash"), "{witness:?}");
    // A server would refuse to start on it rather than adopt the inserted key.
    let store = Arc::new(SqliteStore::open(&db(dir.path())).unwrap());
    let err = load_keys(&store, &config()).await.unwrap_err();
    assert!(matches!(err, warrant_engine::KeyError::UnexpectedPlaintext(_)), "{err}");
}

#[tokio::test]
async fn tamper_a_tail_truncated_with_its_checkpoints_is_detected_by_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 100).await;
    tamper(dir.path(), "DELETE FROM audit_records WHERE seq > 64; DELETE FROM audit_checkpoints WHERE seq > 60;");
    // The database alone looks whole.
    assert!(verify_file(dir.path()).await.ok);
    let v = verify_witnessed(dir.path()).await;
    assert!(!v.ok());
    assert_bad(&v.chain, 65);
    let problem = v.witness.unwrap().problem.unwrap();
    assert!(problem.contains("record 100 but the log ends at record 64"), "{problem}");
    assert!(problem.contains("from 65 on were removed"), "{problem}");
}

#[tokio::test]
async fn tamper_a_wiped_log_is_detected_by_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 30).await;
    tamper(dir.path(), "DELETE FROM audit_records; DELETE FROM audit_checkpoints;");
    let report = verify_file(dir.path()).await;
    assert_eq!(report, VerifyReport { ok: true, records: 0, first_bad: None, reason: None }, "alone it looks empty");
    let v = verify_witnessed(dir.path()).await;
    assert!(!v.ok());
    assert_bad(&v.chain, 1);
    let witness = v.witness.unwrap();
    assert_eq!(witness.checkpoints, 3);
    assert!(witness.problem.unwrap().contains("the log was wiped"));
}

#[tokio::test]
async fn tamper_a_checkpoint_missing_from_the_witness_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 30).await;
    // The witness lost its last line: the database's checkpoint at 30 was never witnessed.
    let path = witness_path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(r#""seq":30,"#)).collect();
    assert_eq!(kept.len(), 2);
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let v = verify_witnessed(dir.path()).await;
    assert!(v.chain.ok);
    let problem = v.witness.unwrap().problem.unwrap();
    assert!(problem.contains("checkpoint at record 30 is not in the witness"), "{problem}");
    // And a database restored without any witness is not taken as whole either.
    std::fs::remove_file(&path).unwrap();
    let v = verify_witnessed(dir.path()).await;
    assert!(!v.ok());
    assert!(v.witness.unwrap().problem.unwrap().contains("the witness holds no checkpoint"));
}

#[tokio::test]
async fn an_edited_witness_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 30).await;
    let path = witness_path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replacen(r#""seq":20,"#, r#""seq":21,"#, 1);
    std::fs::write(&path, forged).unwrap();
    let problem = verify_witnessed(dir.path()).await.witness.unwrap().problem.unwrap();
    assert!(problem.contains("line 2 of the witness") && problem.contains("disagrees"), "{problem}");
}

/// A database as the code before sealed keys wrote it: schema version 5, the warrant key
/// in the clear, checkpoints signed with that key.
#[tokio::test]
async fn migration_seals_plaintext_keys_of_an_old_database_and_its_log_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let old_key = KeyPair::from_seed(&[0x3c; 32]);
    {
        let store = Arc::new(SqliteStore::open(&db(dir.path())).unwrap());
        let w = AuditWriter::spawn(Arc::clone(&store) as _, Arc::new(old_key.clone()), every(10)).await.unwrap();
        for i in 1..=30 {
            w.submit(entry(i)).await.unwrap();
        }
        w.shutdown().await;
    }
    {
        let conn = rusqlite::Connection::open(db(dir.path())).unwrap();
        // An old database holds every record in `audit_records` (undoing migration 15
        // moves the tail's records there) and no key of its own purpose.
        conn.execute_batch("DELETE FROM signing_keys;").unwrap();
        undo_migrations_to(&conn, 5);
        conn.execute(
            "INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)",
            rusqlite::params![old_key.kid(), old_key.seed().as_slice(), T0],
        )
        .unwrap();
    }
    assert!(file_holds(dir.path(), &*old_key.seed()), "the old shape holds the seed in the clear");
    // Before any server starts, the old log verifies with the old key (in the clear).
    assert!(verify_file(dir.path()).await.ok);

    // First start with a KEK: the old key is sealed (and kept: its warrants still verify),
    // a checkpoint key is made, and the seed is gone from the file.
    let (store, keys) = open(dir.path()).await;
    assert_eq!(keys.ring().unwrap().active().kid(), old_key.kid());
    assert_ne!(keys.checkpoint_key().unwrap().kid(), old_key.kid());
    let stored = store.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|k| matches!(k.material, warrant_store::KeyMaterial::Sealed(_))));
    assert!(!file_holds(dir.path(), &*old_key.seed()), "the plaintext seed is erased from the file");

    // The writer witnesses the head as soon as it moves; the old checkpoints (signed by
    // the old warrant key, before the witness existed) still verify.
    let w = writer(&store, &keys, AuditConfig { witness: Some(witness_path(dir.path())), ..every(10) }).await;
    w.submit(entry(31)).await.unwrap();
    let mut witnessed = false;
    // Polled, bounded at 1 s: the checkpoint is written by the writer's own task after the
    // record is durable, so `submit` returning does not mean it is stored yet.
    for _ in 0..50 {
        if store.latest_checkpoint().await.unwrap().is_some_and(|c| c.seq == 31) {
            witnessed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(witnessed, "the head is checkpointed at once when the witness is behind");
    w.shutdown().await;
    drop((store, keys));
    let v = verify_witnessed(dir.path()).await;
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.chain.records, 31);
    assert_eq!(v.witness.unwrap().checkpoints, 1);
}

/// The overview's chain status: a verification is reused for `max_age` seconds, then
/// made again over the records written since.
#[tokio::test]
async fn a_recent_verification_is_reused_until_it_is_too_old() {
    let h = crate::harness::Harness::start().await;
    let audit = h.engine().audit();
    let t0 = h.now();
    let (at, first) = audit.verify_recent(t0, 60).await.unwrap();
    assert_eq!(at, t0);
    assert!(first.ok());
    audit.record(AuditEntry::new(t0, AuditKind::Task)).await.unwrap();
    h.advance(59);
    let (at, again) = audit.verify_recent(h.now(), 60).await.unwrap();
    assert_eq!((at, again.chain.records), (t0, first.chain.records), "within a minute, the same verification");
    h.advance(1);
    let (at, fresh) = audit.verify_recent(h.now(), 60).await.unwrap();
    assert_eq!(at, h.now());
    assert_eq!(fresh.chain.records, first.chain.records + 1, "a new verification sees the new record");
    assert!(fresh.ok());
}
