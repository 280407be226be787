//! The audit service: the hash-chained audit log, written with group commit
//! ([`writer`]), its checkpoints also kept in the [`witness`] file outside the database,
//! and read back as records, provenance traces ([`trace`]) and a verification report.

pub mod commit_times;
pub mod trace;
pub mod witness;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use warrant_core::audit::AuditEntry;
use warrant_store::{Issuance, SpendCharge, Store, StoreError};

use crate::error::{Classify, ErrorKind};
use crate::keys::KeyManager;

pub use commit_times::{CommitHistogram, CommitTimes, CommitTimesSnapshot, COMMIT_BOUNDS_MICROS};
pub use trace::{AuditQuery, AuditView, Trace, MAX_QUERY};
pub use writer::{
    verify, verify_all, AuditConfig, AuditError, AuditMetrics, AuditStartError, AuditVerifyError, AuditWriter, Draft,
    Receipt, SigningKeySource, Verification, WitnessCoverage, WitnessReport,
};

/// The audit log: every audited operation writes through it, and evidence is read from
/// it.
pub struct Audit {
    writer: writer::AuditWriter,
    store: Arc<dyn Store>,
    keys: Arc<KeyManager>,
    witness: Option<PathBuf>,
    /// The last whole-log verification and when it finished (see [`Audit::verify_recent`]).
    last_verified: tokio::sync::Mutex<Option<(warrant_core::UnixTime, Arc<Verification>)>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("writer", &self.writer).finish_non_exhaustive()
    }
}

impl Audit {
    /// Starts the writer over `store`, signing checkpoints with the checkpoint key of
    /// `keys`.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        keys: Arc<KeyManager>,
        config: AuditConfig,
    ) -> Result<Self, AuditStartError> {
        let witness = config.witness.clone();
        let audit_store: Arc<dyn warrant_store::audit::AuditStore> = Arc::clone(&store) as _;
        let signer: Arc<dyn SigningKeySource> = Arc::clone(&keys) as _;
        let writer = writer::AuditWriter::spawn(audit_store, signer, config).await?;
        Ok(Audit { writer, store, keys, witness, last_verified: tokio::sync::Mutex::new(None) })
    }

    /// Writes one record and waits until it is durable; returns its sequence number. An
    /// error means nothing can be assumed recorded: the audited operation must fail.
    pub async fn record(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.writer.submit(entry).await
    }

    /// Queues a record (waiting at most the submit timeout for queue space) and returns
    /// a receipt to await durability with. Nobody may be answered before it is durable.
    pub async fn enqueue(&self, entry: AuditEntry) -> Result<Receipt, AuditError> {
        self.writer.enqueue(entry).await
    }

    /// Records an issuance and its audit record in one transaction and waits until both
    /// are durable ([`AuditWriter::enqueue_issuance`]); returns the record's sequence
    /// number. [`AuditError::Refused`]: the store refused the warrant (something it
    /// rests on was revoked, or the assertion replayed), and neither was written.
    pub(crate) async fn issue(&self, entry: AuditEntry, issuance: Issuance) -> Result<u64, AuditError> {
        self.writer.enqueue_issuance(entry, issuance).await?.durable().await
    }

    /// Queues a record the writer encodes off the caller's thread ([`Draft`]), with
    /// budget charges made durable in the same transaction as the record.
    pub(crate) async fn enqueue_draft(
        &self,
        draft: Box<dyn writer::Draft>,
        charges: Vec<SpendCharge>,
    ) -> Result<Receipt, AuditError> {
        self.writer.enqueue_draft(draft, charges).await
    }

    /// Records matching `query`, newest first (at most [`MAX_QUERY`]).
    pub async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditView>, StoreError> {
        trace::query(self.store.as_ref(), query).await
    }

    /// One record.
    pub async fn get(&self, seq: u64) -> Result<Option<AuditView>, StoreError> {
        trace::get(self.store.as_ref(), seq).await
    }

    /// The provenance of record `seq`, back to the human.
    pub async fn trace(&self, seq: u64) -> Result<Option<Trace>, StoreError> {
        trace::trace(self.store.as_ref(), seq).await
    }

    /// Verifies the whole chain, its signed checkpoints (against the checkpoint keys the
    /// KEK opens) and, when one is kept, the witness.
    pub async fn verify(&self) -> Result<Verification, AuditVerifyError> {
        let keys = self.keys.checkpoint_keys(self.store.as_ref()).await?;
        let coverage = if self.store.shared() { WitnessCoverage::OwnOnly } else { WitnessCoverage::Every };
        verify_all(self.store.as_ref(), &keys, self.witness.as_deref(), coverage).await
    }

    /// The last verification if it finished less than `max_age` seconds before `now`,
    /// else a new one: what a dashboard shows without reading the whole log at every
    /// look. One verification runs at a time; callers meanwhile wait for its result.
    pub async fn verify_recent(
        &self,
        now: warrant_core::UnixTime,
        max_age: i64,
    ) -> Result<(warrant_core::UnixTime, Arc<Verification>), AuditVerifyError> {
        let mut last = self.last_verified.lock().await;
        if let Some((at, v)) = last.as_ref() {
            if now.0 - at.0 < max_age {
                return Ok((*at, Arc::clone(v)));
            }
        }
        let v = Arc::new(self.verify().await?);
        *last = Some((now, Arc::clone(&v)));
        Ok((now, v))
    }

    /// The writer's counters.
    pub fn metrics(&self) -> &AuditMetrics {
        self.writer.metrics()
    }

    /// How many records wait in the queue.
    pub fn queue_depth(&self) -> usize {
        self.writer.queue_depth()
    }

    /// Stops accepting records, writes what is queued, signs a last checkpoint.
    pub(crate) async fn shutdown(&self) {
        self.writer.shutdown().await;
    }
}

impl Classify for AuditError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Refused(_) => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl Classify for AuditVerifyError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}
