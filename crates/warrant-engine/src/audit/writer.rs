//! The audit writer: group commit of hash-chained records, checkpoints, verification.
//!
//! [`AuditWriter`] owns the chain head. Callers [`submit`](AuditWriter::submit) an
//! [`AuditEntry`] into a bounded queue and are answered with the record's sequence
//! number only once the record is durable. A single task takes the first waiting entry,
//! drains whatever else is already queued (up to [`AuditConfig::max_batch`]), chains the
//! batch onto the last durable head and appends it in one transaction, so one fsync
//! covers the whole batch. A failed append answers every caller of the batch with an
//! error and forgets the head, which is read back from the store before the next batch:
//! nothing is acknowledged that is not on disk, and the chain never skips. Several
//! writers may share one store (one chain, e.g. servers sharing a PostgreSQL database):
//! the store chains a batch that no longer continues the stored head (another writer
//! moved it) onto that head inside its write transaction
//! ([`AuditStore::append_audit_at_head`]), so the store is the chain's one serial point
//! and no writer waits on or retries for another.
//!
//! After a batch, when [`AuditConfig::checkpoint_every`] records or
//! [`AuditConfig::checkpoint_interval`] have passed since the last checkpoint, the head
//! is signed with the checkpoint key (a key of its own, never the warrant-signing key),
//! appended to the witness file ([`AuditConfig::witness`], fsync'd) and then stored
//! (also on an idle timer and at shutdown, so that a truncated tail is detectable).
//!
//! [`verify_all`] streams the chain in pages, checks every checkpoint's signature against
//! the checkpoint keys the KEK opens ([`CheckpointKeys`]), names the first bad record,
//! and compares the log with the witness: a checkpoint the witness holds beyond the
//! log's end (a truncated tail, a wiped log), a witnessed head the chain no longer has
//! (records rewritten and re-chained, checkpoints re-signed), a database checkpoint the
//! witness never saw.
//!
//! A caller on a hot path queues a [`Draft`] instead of an entry: the record's typed
//! details, encoded into the entry by the writer itself, off the caller's thread (an
//! encoding failure refuses that record alone, and its caller hears it as a write
//! failure).
//!
//! The writer reads no clock: record and checkpoint times come from the entries.
//! `tokio::time` only paces checkpoints and bounds the wait for queue space.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warrant_core::audit::{
    chain, parse_hash_hex, AuditEntry, AuditRecord, ChainVerifier, CheckpointHead, EncodeError, VerifyReport, GENESIS,
};
use warrant_core::UnixTime;
use warrant_store::audit::{Appended, AuditRow, AuditStore, StoredCheckpoint};
use warrant_store::{Issuance, Refusal, SpendCharge, StoreError};
use warrant_token::checkpoint::{self, Checkpoint, CheckpointError, KeyArchive};
use warrant_token::{JwsError, KeyPair, KeyResolver};

use super::commit_times::{micros_of, CommitTimes, CommitTimesSnapshot};
use super::witness::{self, WitnessLine};
use crate::keys::{CheckpointKeys, KeyError, KeyManager};

/// How records are batched, queued and checkpointed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// How many entries may wait in the queue.
    pub queue_capacity: usize,
    /// The most records written in one transaction.
    pub max_batch: usize,
    /// How long [`AuditWriter::submit`] waits for queue space before failing.
    pub submit_timeout: Duration,
    /// Sign a checkpoint after this many records.
    pub checkpoint_every: u64,
    /// Sign a checkpoint after this much time, when records were written since the last.
    pub checkpoint_interval: Duration,
    /// The witness file every checkpoint is appended to before it is stored; `None`
    /// keeps no witness (the server always keeps one).
    pub witness: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue_capacity: 16_384,
            max_batch: 4096,
            submit_timeout: Duration::from_secs(2),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            witness: None,
        }
    }
}

/// Gives the key checkpoints are signed with.
pub trait SigningKeySource: Send + Sync {
    /// The active checkpoint key, `None` when it is unavailable.
    fn signing_key(&self) -> Option<KeyPair>;
}

impl SigningKeySource for KeyManager {
    fn signing_key(&self) -> Option<KeyPair> {
        self.checkpoint_key().ok()
    }
}

impl SigningKeySource for KeyPair {
    fn signing_key(&self) -> Option<KeyPair> {
        Some(self.clone())
    }
}

/// A queued audit entry; [`Receipt::durable`] resolves once it is on disk.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<u64, AuditError>>);

impl Receipt {
    /// Waits until the entry is durable; returns its sequence number.
    pub async fn durable(self) -> Result<u64, AuditError> {
        self.0.await.map_err(|_| AuditError::Closed)?
    }
}

/// Why an entry was not recorded. In every case the caller must treat the operation it
/// audits as failed (a decision denies, a mutation fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The writer has shut down.
    #[error("the audit log is closed")]
    Closed,
    /// The record could not be made durable. The message is for logs only.
    #[error("the audit log could not be written: {0}")]
    WriteFailed(String),
    /// The queue stayed full for the whole submit timeout.
    #[error("the audit queue stayed full for {0:?}")]
    QueueFull(Duration),
    /// The store refused the issuance the record audits
    /// ([`AuditWriter::enqueue_issuance`]): neither was written.
    #[error("the issuance was refused: {0}")]
    Refused(Refusal),
}

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditStartError {
    /// The store could not tell the chain head.
    #[error("cannot read the audit chain head: {0}")]
    Store(#[from] StoreError),
    /// A configuration value is unusable.
    #[error("invalid audit configuration: {0}")]
    Config(&'static str),
}

/// Why the chain could not be verified (a tampered chain is not an error: it is a
/// [`VerifyReport`] that is not `ok`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditVerifyError {
    /// The store failed.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
    /// The checkpoint keys could not be read or opened.
    #[error("cannot read the checkpoint keys: {0}")]
    Keys(#[from] KeyError),
}

/// Counters for metrics; read them at any time.
#[derive(Debug, Default)]
pub struct AuditMetrics {
    batches: AtomicU64,
    records: AtomicU64,
    failed_batches: AtomicU64,
    checkpoints: AtomicU64,
    last_commit_micros: AtomicU64,
    last_batch_size: AtomicU64,
    head_seq: AtomicU64,
    commit_times: CommitTimes,
}

impl AuditMetrics {
    /// Committed batches (transactions) since start.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Records committed since start.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Batches whose append failed since start.
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }

    /// Checkpoints stored since start.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// How long the last append (commit included) took.
    pub fn last_commit_latency(&self) -> Duration {
        Duration::from_micros(self.last_commit_micros.load(Ordering::Relaxed))
    }

    /// How many records the last batch held.
    pub fn last_batch_size(&self) -> u64 {
        self.last_batch_size.load(Ordering::Relaxed)
    }

    /// The sequence number of the last durable record this writer knows of.
    pub fn head_seq(&self) -> u64 {
        self.head_seq.load(Ordering::Relaxed)
    }

    /// How long every append since start took, per append and per record made durable,
    /// and how long each durable record's caller waited for it.
    pub fn commit_times(&self) -> CommitTimesSnapshot {
        self.commit_times.snapshot()
    }
}

type Ack = oneshot::Sender<Result<u64, AuditError>>;

/// A queued record: its draft, what commits with it, who waits for it and since when
/// (the moment it was handed to [`AuditWriter`], before any wait for queue space).
struct Job {
    draft: Box<dyn Draft>,
    charges: Vec<SpendCharge>,
    issuance: Option<Box<Issuance>>,
    ack: Ack,
    queued: Instant,
}

/// A record the writer encodes itself: what a hot path queues so that building the
/// entry's JSON happens on the writer, not on the caller's thread.
pub trait Draft: Send + 'static {
    /// The record chained as `seq` onto `prev_hash` ([`chain`]), and the entry whose
    /// columns index it (its `details` need not be set: the record's body holds them).
    /// An error refuses this record alone.
    fn chain(self: Box<Self>, prev_hash: [u8; 32], seq: u64) -> Result<(AuditRecord, AuditEntry), EncodeError>;
}

/// An entry encoded by its caller is its own draft.
impl Draft for AuditEntry {
    fn chain(self: Box<Self>, prev_hash: [u8; 32], seq: u64) -> Result<(AuditRecord, AuditEntry), EncodeError> {
        Ok((chain(prev_hash, seq, &self)?, *self))
    }
}

/// The single writer of the audit chain. Share it (e.g. in an `Arc`); every clone of the
/// queue feeds the same task.
pub struct AuditWriter {
    queue: mpsc::Sender<Job>,
    metrics: Arc<AuditMetrics>,
    submit_timeout: Duration,
    shutdown: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").field("metrics", &self.metrics).finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Reads the durable head from `store` and starts the writer task (on the current
    /// tokio runtime). `keys` gives the key checkpoints are signed with.
    pub async fn spawn(
        store: Arc<dyn AuditStore>,
        keys: Arc<dyn SigningKeySource>,
        config: AuditConfig,
    ) -> Result<Self, AuditStartError> {
        if config.queue_capacity == 0 {
            return Err(AuditStartError::Config("`queue_capacity` must be at least 1"));
        }
        if config.max_batch == 0 {
            return Err(AuditStartError::Config("`max_batch` must be at least 1"));
        }
        let head = store.audit_head().await?.unwrap_or((0, GENESIS));
        let last_checkpoint = store.latest_checkpoint().await?.map_or(0, |c| c.seq);
        let witness_behind = match &config.witness {
            Some(path) => last_witnessed(path).await < last_checkpoint,
            None => false,
        };
        let metrics = Arc::new(AuditMetrics::default());
        metrics.head_seq.store(head.0, Ordering::Relaxed);
        let (queue, rx) = mpsc::channel(config.queue_capacity);
        let shutdown = Arc::new(Notify::new());
        let submit_timeout = config.submit_timeout;
        let state = Writer {
            store,
            keys,
            metrics: Arc::clone(&metrics),
            head: Some(head),
            head_at: None,
            last_checkpoint_seq: last_checkpoint,
            last_checkpoint_time: Instant::now(),
            witness_behind,
            config,
        };
        let task = tokio::spawn(state.run(rx, Arc::clone(&shutdown)));
        Ok(AuditWriter { queue, metrics, submit_timeout, shutdown, task: Mutex::new(Some(task)) })
    }

    /// Queues `entry` and waits until it is durable; returns its sequence number. Waits
    /// at most the submit timeout for queue space. An error means nothing can be
    /// assumed recorded: the audited operation must fail (or deny).
    pub async fn submit(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.enqueue(entry).await?.durable().await
    }

    /// Queues `entry` (waiting at most the submit timeout for queue space) and returns a
    /// receipt to await durability with. Callers that answer anyone must await it first;
    /// this split exists so benchmarks can measure the decision path up to the queue.
    pub async fn enqueue(&self, entry: AuditEntry) -> Result<Receipt, AuditError> {
        self.enqueue_with(entry, Vec::new()).await
    }

    /// Like [`AuditWriter::enqueue`], with budget charges that become durable in the same
    /// transaction as the record (never one without the other).
    pub async fn enqueue_with(&self, entry: AuditEntry, charges: Vec<SpendCharge>) -> Result<Receipt, AuditError> {
        self.enqueue_draft(Box::new(entry), charges).await
    }

    /// Like [`AuditWriter::enqueue_with`], for a record the writer encodes ([`Draft`]).
    pub async fn enqueue_draft(&self, entry: Box<dyn Draft>, charges: Vec<SpendCharge>) -> Result<Receipt, AuditError> {
        self.enqueue_job(entry, charges, None).await
    }

    /// Queues the record of an issuance with the issuance itself: the store records the
    /// warrant in the same transaction as the record, with the checks of
    /// `WarrantStore::record_warrant`, so one commit makes both durable, or neither. A
    /// refused issuance is answered with [`AuditError::Refused`] and takes nothing of
    /// the chain (the records after it are chained without it).
    pub async fn enqueue_issuance(&self, entry: AuditEntry, issuance: Issuance) -> Result<Receipt, AuditError> {
        self.enqueue_job(Box::new(entry), Vec::new(), Some(Box::new(issuance))).await
    }

    async fn enqueue_job(
        &self,
        draft: Box<dyn Draft>,
        charges: Vec<SpendCharge>,
        issuance: Option<Box<Issuance>>,
    ) -> Result<Receipt, AuditError> {
        let queued = Instant::now();
        let (ack, answer) = oneshot::channel();
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(AuditError::Closed),
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(self.submit_timeout, self.queue.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(AuditError::Closed),
                    Err(_) => return Err(AuditError::QueueFull(self.submit_timeout)),
                }
            }
        };
        permit.send(Job { draft, charges, issuance, ack, queued });
        Ok(Receipt(answer))
    }

    /// How many entries wait in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity().saturating_sub(self.queue.capacity())
    }

    /// The writer's counters.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    /// A shared handle on the writer's counters.
    pub fn metrics_handle(&self) -> Arc<AuditMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops accepting entries, writes everything already queued, signs a final
    /// checkpoint of the head, and waits for the task to end. Later submits fail with
    /// [`AuditError::Closed`].
    pub async fn shutdown(&self) {
        self.shutdown.notify_one();
        let task = self.task.lock().ok().and_then(|mut guard| guard.take());
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the audit writer task failed");
            }
        }
    }
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn AuditStore>,
    keys: Arc<dyn SigningKeySource>,
    metrics: Arc<AuditMetrics>,
    config: AuditConfig,
    /// The last durable record's seq and hash; `None` after a failed append, until it is
    /// read back from the store.
    head: Option<(u64, [u8; 32])>,
    /// The head record's time, when known without a read.
    head_at: Option<UnixTime>,
    last_checkpoint_seq: u64,
    last_checkpoint_time: Instant,
    /// The witness lacks the latest stored checkpoint (a database written before the
    /// witness existed, or restored without it): sign the head as soon as it moves.
    witness_behind: bool,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, shutdown: Arc<Notify>) {
        let mut closing = false;
        loop {
            let due = self.checkpoint_due_at();
            let timer = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                job = rx.recv() => {
                    let Some(first) = job else { break };
                    let mut batch = Vec::with_capacity(self.config.max_batch.min(rx.len().saturating_add(1)));
                    batch.push(first);
                    while batch.len() < self.config.max_batch {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.commit(batch).await;
                    if self.checkpoint_wanted() {
                        self.checkpoint().await;
                    }
                }
                () = shutdown.notified(), if !closing => {
                    // Refuse new entries; the ones already queued are still received.
                    closing = true;
                    rx.close();
                }
                () = timer => self.checkpoint().await,
            }
        }
        self.checkpoint().await;
        tracing::info!(head = self.metrics.head_seq(), "the audit writer stopped");
    }

    /// Chains `jobs` onto the durable head as this writer knows it and appends them in
    /// one transaction, then answers every caller. When another writer on the same store
    /// moved the head meanwhile, the store chains the batch again onto the stored head in
    /// its write transaction ([`AuditStore::append_audit_at_head`]), so several writers
    /// share one chain without ever refusing a batch for it.
    async fn commit(&mut self, jobs: Vec<Job>) {
        let head = match self.durable_head().await {
            Ok(head) => head,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit head; refusing the batch");
                self.metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
                let error = AuditError::WriteFailed(e.to_string());
                for job in jobs {
                    let _ = job.ack.send(Err(error.clone()));
                }
                return;
            }
        };
        let (mut seq, mut prev) = head;
        let mut at = self.head_at;
        let mut rows = Vec::with_capacity(jobs.len());
        let mut acks = Vec::with_capacity(jobs.len());
        for Job { draft, charges, issuance, ack, queued } in jobs {
            let next = seq.saturating_add(1);
            match draft.chain(prev, next) {
                Ok((record, entry)) => {
                    (seq, prev, at) = (next, record.hash, Some(entry.at));
                    let mut row = AuditRow::new(record, &entry);
                    row.charges = charges;
                    row.issuance = issuance;
                    rows.push(row);
                    acks.push((ack, queued));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode an audit entry");
                    let _ = ack.send(Err(AuditError::WriteFailed(e.to_string())));
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let count = rows.len() as u64;
        let started = Instant::now();
        let result = self.store.append_audit_at_head(rows).await;
        let took = started.elapsed();
        self.metrics.last_commit_micros.store(micros_of(took), Ordering::Relaxed);
        self.metrics.last_batch_size.store(count, Ordering::Relaxed);
        match result {
            Ok(Appended { head: (last, hash), refused }) => {
                let durable = count.saturating_sub(refused.len() as u64);
                self.metrics.commit_times.observe(took, durable);
                if last != seq && refused.is_empty() {
                    tracing::debug!(
                        expected = seq,
                        stored = last,
                        "another writer moved the audit head; the batch was chained onto it"
                    );
                }
                self.head = Some((last, hash));
                // The head's time is the last appended record's; unknown (read back at
                // the checkpoint) when a refusal may have taken the last one out.
                self.head_at = if refused.is_empty() { at } else { None };
                self.metrics.head_seq.store(last, Ordering::Relaxed);
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                self.metrics.records.fetch_add(durable, Ordering::Relaxed);
                let mut refused = refused.into_iter().peekable();
                let mut next = last.saturating_sub(durable).saturating_add(1);
                let answered = Instant::now();
                for (index, (ack, queued)) in acks.into_iter().enumerate() {
                    if let Some((_, refusal)) = refused.next_if(|(i, _)| *i == index) {
                        let _ = ack.send(Err(AuditError::Refused(refusal)));
                        continue;
                    }
                    self.metrics.commit_times.observe_wait(answered.saturating_duration_since(queued));
                    let _ = ack.send(Ok(next));
                    next = next.saturating_add(1);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "the audit batch could not be written");
                self.head = None;
                self.head_at = None;
                self.metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
                let error = AuditError::WriteFailed(e.to_string());
                for (ack, _) in acks {
                    let _ = ack.send(Err(error.clone()));
                }
            }
        }
    }

    /// The durable head: the one this writer last appended, else read from the store.
    async fn durable_head(&mut self) -> Result<(u64, [u8; 32]), StoreError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let head = self.store.audit_head().await?.unwrap_or((0, GENESIS));
        self.head = Some(head);
        self.head_at = None;
        Ok(head)
    }

    fn unsigned_records(&self) -> u64 {
        self.head.map_or(0, |(seq, _)| seq.saturating_sub(self.last_checkpoint_seq))
    }

    fn checkpoint_wanted(&self) -> bool {
        let pending = self.unsigned_records();
        pending > 0
            && (self.witness_behind
                || pending >= self.config.checkpoint_every
                || self.last_checkpoint_time.elapsed() >= self.config.checkpoint_interval)
    }

    /// When the idle timer should sign the head, if records wait for a checkpoint.
    fn checkpoint_due_at(&self) -> Option<Instant> {
        (self.unsigned_records() > 0).then(|| {
            if self.witness_behind {
                Instant::now()
            } else {
                self.last_checkpoint_time + self.config.checkpoint_interval
            }
        })
    }

    /// Signs and stores a checkpoint of the durable head, if it moved since the last one.
    /// A failure is logged and retried later; it never fails a caller.
    async fn checkpoint(&mut self) {
        let Some((seq, head_hash)) = self.head else { return };
        if seq <= self.last_checkpoint_seq {
            return;
        }
        // Even on failure, wait a full interval before the timer tries again (a witness
        // that lagged gets this one prompt attempt, then the usual pacing).
        self.last_checkpoint_time = Instant::now();
        self.witness_behind = false;
        let Some(key) = self.keys.signing_key() else {
            tracing::warn!(seq, "no signing key for the audit checkpoint");
            return;
        };
        let at = match self.head_at {
            Some(at) => at,
            None => match self.store.get_audit(seq).await {
                Ok(Some(row)) => row.at,
                Ok(None) => {
                    tracing::warn!(seq, "the audit head vanished before its checkpoint");
                    self.head = None;
                    return;
                }
                Err(e) => {
                    tracing::warn!(seq, error = %e, "cannot read the audit head for its checkpoint");
                    return;
                }
            },
        };
        let statement = Checkpoint { seq, head_hash, at };
        let signature = match checkpoint::sign(&key, &statement) {
            Ok(signature) => signature,
            Err(e) => {
                tracing::warn!(seq, error = %e, "cannot sign the audit checkpoint");
                return;
            }
        };
        let stored = StoredCheckpoint { seq, head_hash, at, kid: key.kid().to_owned(), signature };
        // The witness first: a checkpoint the database holds is always witnessed.
        if let Some(path) = self.config.witness.clone() {
            let line = WitnessLine::of(&stored);
            match tokio::task::spawn_blocking(move || witness::append(&path, &line)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(seq, error = %e, "cannot append the audit checkpoint to the witness; retrying later");
                    return;
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "the witness append failed; retrying later");
                    return;
                }
            }
        }
        match self.store.add_checkpoint(&stored).await {
            Ok(()) => {
                self.last_checkpoint_seq = seq;
                self.head_at = Some(at);
                self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(seq, "signed an audit checkpoint");
            }
            Err(e) => tracing::warn!(seq, error = %e, "cannot store the audit checkpoint"),
        }
    }
}

/// The highest sequence number the witness at `path` holds (0 when it holds none or
/// cannot be read).
async fn last_witnessed(path: &Path) -> u64 {
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || witness::read(&path)).await {
        Ok(Ok(contents)) => contents.lines.iter().map(|(_, line)| line.seq).max().unwrap_or(0),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the audit witness");
            0
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the audit witness");
            0
        }
    }
}

/// How many records [`verify`] reads at a time.
pub const VERIFY_PAGE: usize = 1024;

/// Verifies the whole chain and every checkpoint, streaming records in pages of
/// [`VERIFY_PAGE`]. Checkpoint signatures are checked against `keys` only (see
/// [`verify_all`] for the checkpoint keys, the keys of older builds and the witness); a bad signature, or a stored checkpoint row that disagrees with what
/// was signed, fails verification at the checkpoint's seq. Records whose indexed columns
/// disagree with their body, and rows that cannot be read, fail at their seq. Only a
/// failing store is an error.
pub async fn verify(store: &dyn AuditStore, keys: &(dyn KeyResolver + Sync)) -> Result<VerifyReport, AuditVerifyError> {
    let mut resolvers = Resolvers { current: keys, legacy: None, seen_current: false };
    verify_chain(store, &mut resolvers, &[]).await
}

/// What checkpoints are verified with while streaming.
struct Resolvers<'a> {
    /// The checkpoint keys.
    current: &'a (dyn KeyResolver + Sync),
    /// Warrant keys that signed checkpoints before checkpoints had their own key:
    /// accepted only until a checkpoint key has signed one.
    legacy: Option<&'a KeyArchive>,
    seen_current: bool,
}

/// Streams the chain, feeding the verifier the stored checkpoints (signatures checked)
/// and the `witnessed` heads (already checked).
async fn verify_chain(
    store: &dyn AuditStore,
    keys: &mut Resolvers<'_>,
    witnessed: &[CheckpointHead],
) -> Result<VerifyReport, AuditVerifyError> {
    let mut verifier = ChainVerifier::new();
    for head in witnessed {
        verifier.add_checkpoint(*head);
    }
    let mut checkpoints_loaded = 0u64;
    // Rows up to this seq are read one at a time, to name an unreadable one exactly.
    let mut single_until = 0u64;
    loop {
        let from = verifier.next_seq();
        if verifier.failed_by(from) {
            break;
        }
        let size = if from <= single_until { 1 } else { VERIFY_PAGE };
        let page = match store.audit_records(from, size).await {
            Ok(page) => page,
            Err(StoreError::Corrupt(_)) if size > 1 => {
                single_until = from.saturating_add(VERIFY_PAGE as u64);
                continue;
            }
            Err(StoreError::Corrupt(message)) => {
                verifier.reject(from, format!("the record at or after {from} cannot be read: {message}"));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = page.last().map(|row| row.record.seq) else { break };
        load_checkpoints(store, keys, &mut verifier, &mut checkpoints_loaded, last, usize::MAX).await?;
        for row in &page {
            if verifier.failed_by(verifier.next_seq()) {
                break;
            }
            if let Some(entry) = verifier.push(&row.record) {
                if !row.columns_match(&entry) {
                    let seq = row.record.seq;
                    verifier.reject(seq, format!("the indexed columns of record {seq} disagree with its body"));
                }
            }
        }
        if page.len() < size {
            break;
        }
    }
    if !verifier.failed_by(verifier.next_seq()) {
        // One checkpoint beyond the last record is enough to show a truncated tail.
        load_checkpoints(store, keys, &mut verifier, &mut checkpoints_loaded, u64::MAX, 1).await?;
    }
    Ok(verifier.finish())
}

/// Loads checkpoints with seq in `(loaded, upto]` (at most `max` of them), checks each
/// signature and hands the good ones to `verifier`.
async fn load_checkpoints(
    store: &dyn AuditStore,
    keys: &mut Resolvers<'_>,
    verifier: &mut ChainVerifier,
    loaded: &mut u64,
    upto: u64,
    max: usize,
) -> Result<(), AuditVerifyError> {
    let mut taken = 0usize;
    while taken < max && *loaded < upto {
        let want = VERIFY_PAGE.min(max.saturating_sub(taken));
        let page = store.checkpoints(*loaded, want).await?;
        let fetched = page.len();
        for cp in page {
            if cp.seq > upto {
                // Loaded later, with the records it names.
                return Ok(());
            }
            *loaded = cp.seq;
            taken += 1;
            check_checkpoint(keys, verifier, &cp);
        }
        if fetched < want {
            break;
        }
    }
    Ok(())
}

fn check_checkpoint(keys: &mut Resolvers<'_>, verifier: &mut ChainVerifier, cp: &StoredCheckpoint) {
    let verified = match checkpoint::verify(&cp.signature, keys.current) {
        Ok(signed) => {
            keys.seen_current = true;
            Ok(signed)
        }
        Err(CheckpointError::Jws(JwsError::UnknownKey)) if !keys.seen_current => match keys.legacy {
            Some(legacy) => checkpoint::verify(&cp.signature, legacy),
            None => Err(CheckpointError::Jws(JwsError::UnknownKey)),
        },
        Err(e) => Err(e),
    };
    match verified {
        Ok(signed)
            if signed.checkpoint.seq == cp.seq
                && signed.checkpoint.head_hash == cp.head_hash
                && signed.checkpoint.at == cp.at
                && signed.kid == cp.kid =>
        {
            verifier.add_checkpoint(CheckpointHead { seq: cp.seq, head_hash: cp.head_hash });
        }
        Ok(_) => verifier.reject(cp.seq, format!("the checkpoint at {} disagrees with what was signed", cp.seq)),
        Err(e) => verifier.reject(cp.seq, format!("the checkpoint at {} is not validly signed: {e}", cp.seq)),
    }
}

/// What comparing the log with the witness found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WitnessReport {
    /// How many witnessed checkpoints were read (validly signed lines).
    pub checkpoints: u64,
    /// Whether the log agrees with the witness.
    pub ok: bool,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The outcome of [`verify_all`]: the chain and, when a witness is kept, the witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The chain and the stored checkpoints. When a witness is kept its heads are checked
    /// here too, so `first_bad` names the first record a witnessed head shows missing or
    /// rewritten.
    pub chain: VerifyReport,
    /// The witness comparison; `None` when no witness is kept.
    pub witness: Option<WitnessReport>,
}

impl Verification {
    /// Whether the chain verified and the witness (if any) agrees.
    pub fn ok(&self) -> bool {
        self.chain.ok && !matches!(&self.witness, Some(w) if !w.ok)
    }
}

/// Checks one witness line: its signature by a checkpoint key, and that it says what was
/// signed. Returns the witnessed head.
fn witnessed_head(line: &WitnessLine, keys: &KeyArchive) -> Result<[u8; 32], String> {
    let head_hash = parse_hash_hex(&line.head_hash).map_err(|_| "has a malformed head hash".to_owned())?;
    let signed = checkpoint::verify(&line.signature, keys)
        .map_err(|e| format!("is not validly signed by a checkpoint key: {e}"))?;
    let statement = signed.checkpoint;
    if statement.seq != line.seq
        || statement.head_hash != head_hash
        || statement.at != line.at
        || signed.kid != line.kid
    {
        return Err("disagrees with what was signed".to_owned());
    }
    Ok(head_hash)
}

/// Every stored checkpoint, in seq order.
async fn all_checkpoints(store: &dyn AuditStore) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.checkpoints(after, VERIFY_PAGE).await?;
        let fetched = page.len();
        if let Some(last) = page.last() {
            after = last.seq;
        }
        all.extend(page);
        if fetched < VERIFY_PAGE {
            return Ok(all);
        }
    }
}

/// Which of the stored checkpoints a witness holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitnessCoverage {
    /// One server writes the log: its witness holds every checkpoint from its first on,
    /// so a stored checkpoint the witness lacks is a problem.
    Every,
    /// Several servers share the log (a shared database), each with a witness of its own
    /// holding the checkpoints it signed: every witnessed head must be in the log, and a
    /// checkpoint another server signed is checked by its signature alone.
    OwnOnly,
}

/// Compares the log with the witnessed heads; the first disagreement found.
async fn compare_with_witness(
    store: &dyn AuditStore,
    heads: &BTreeMap<u64, [u8; 32]>,
    coverage: WitnessCoverage,
) -> Result<Option<String>, StoreError> {
    let head = store.audit_head().await?;
    let stored = all_checkpoints(store).await?;
    let (Some((&first, _)), Some((&last, _))) = (heads.first_key_value(), heads.last_key_value()) else {
        if coverage == WitnessCoverage::OwnOnly {
            return Ok(None);
        }
        return Ok(stored.last().map(|cp| {
            format!(
                "the witness holds no checkpoint but the database holds {} (up to record {}): the witness was lost, \
                 or the database was restored without it",
                stored.len(),
                cp.seq
            )
        }));
    };
    let Some((head_seq, _)) = head else {
        return Ok(Some(format!(
            "the audit log is empty but the witness holds checkpoints up to record {last}: the log was wiped"
        )));
    };
    if last > head_seq {
        return Ok(Some(format!(
            "the witness holds a checkpoint at record {last} but the log ends at record {head_seq}: records from {} \
             on were removed",
            head_seq.saturating_add(1)
        )));
    }
    for (&seq, hash) in heads {
        let problem = match store.get_audit(seq).await {
            Ok(Some(row)) if row.record.hash == *hash => continue,
            Ok(Some(_)) => format!(
                "record {seq} no longer has the head hash the witness holds for it: records up to {seq} were \
                 rewritten (and the chain rebuilt)"
            ),
            Ok(None) => format!("record {seq}, which the witness holds a checkpoint for, is missing"),
            Err(StoreError::Corrupt(e)) => format!("record {seq}, which the witness holds, cannot be read: {e}"),
            Err(e) => return Err(e),
        };
        return Ok(Some(problem));
    }
    if coverage == WitnessCoverage::OwnOnly {
        return Ok(None);
    }
    for cp in stored.iter().filter(|cp| cp.seq >= first) {
        match heads.get(&cp.seq) {
            Some(hash) if *hash == cp.head_hash => {}
            Some(_) => {
                return Ok(Some(format!(
                    "the database checkpoint at record {} names another head than the witness",
                    cp.seq
                )))
            }
            None => return Ok(Some(format!("the database checkpoint at record {} is not in the witness", cp.seq))),
        }
    }
    Ok(None)
}

/// Verifies the chain, every stored checkpoint against `keys` (checkpoint keys; the
/// warrant keys of older builds only before the first checkpoint a checkpoint key
/// signed), and, when `witness` names the witness file, the log against it, as far as
/// `coverage` says the witness reaches. A witness that is missing reads as empty: with
/// checkpoints in the database and [`WitnessCoverage::Every`], that is a problem.
pub async fn verify_all(
    store: &dyn AuditStore,
    keys: &CheckpointKeys,
    witness: Option<&Path>,
    coverage: WitnessCoverage,
) -> Result<Verification, AuditVerifyError> {
    let mut resolvers = Resolvers { current: &keys.current, legacy: Some(&keys.legacy), seen_current: false };
    let Some(path) = witness else {
        let chain = verify_chain(store, &mut resolvers, &[]).await?;
        return Ok(Verification { chain, witness: None });
    };
    let owned = path.to_owned();
    let contents = tokio::task::spawn_blocking(move || witness::read(&owned))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|read| read);
    let mut problem = None;
    let mut heads = BTreeMap::new();
    match contents {
        Err(e) => problem = Some(format!("the witness `{}` cannot be read: {e}", path.display())),
        Ok(contents) => {
            for (number, line) in &contents.lines {
                match witnessed_head(line, &keys.current) {
                    Ok(hash) => {
                        if heads.insert(line.seq, hash).is_some_and(|earlier| earlier != hash) {
                            problem.get_or_insert_with(|| {
                                format!("the witness holds two different heads for record {}", line.seq)
                            });
                        }
                    }
                    Err(why) => {
                        problem.get_or_insert_with(|| {
                            format!("line {number} of the witness (checkpoint at record {}) {why}", line.seq)
                        });
                    }
                }
            }
            if let Some((number, why)) = contents.unreadable {
                problem.get_or_insert_with(|| format!("line {number} of the witness is not a checkpoint: {why}"));
            }
        }
    }
    let witnessed: Vec<CheckpointHead> =
        heads.iter().map(|(&seq, &head_hash)| CheckpointHead { seq, head_hash }).collect();
    let chain = verify_chain(store, &mut resolvers, &witnessed).await?;
    if problem.is_none() {
        problem = compare_with_witness(store, &heads, coverage).await?;
        if problem.is_some() {
            // The log may have been written to since the witness was read: a checkpoint
            // goes to the witness before the database, so one read from the database is in
            // the witness by now. Compare once more against the witness as it is now; a
            // log that really disagrees with it disagrees again.
            let owned = path.to_owned();
            let again = tokio::task::spawn_blocking(move || witness::read(&owned)).await;
            if let Ok(Ok(contents)) = again {
                // What the first read saw stays: the second may only add heads to it.
                let mut now = heads.clone();
                let mut agrees = contents.unreadable.is_none();
                for (_, line) in &contents.lines {
                    match witnessed_head(line, &keys.current) {
                        Ok(hash) => agrees &= *now.entry(line.seq).or_insert(hash) == hash,
                        Err(_) => agrees = false,
                    }
                }
                if agrees && now.len() > heads.len() {
                    problem = compare_with_witness(store, &now, coverage).await?;
                }
            }
        }
    }
    let report = WitnessReport { checkpoints: heads.len() as u64, ok: problem.is_none(), problem };
    Ok(Verification { chain, witness: Some(report) })
}
