//! The Shared Signals transmitter's persistence: the outbox of events (written with the
//! revocation that causes them, so none is lost) and the receivers' streams with their
//! delivery cursors.

use async_trait::async_trait;
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

use crate::records::RevocationRecord;
use crate::StoreError;

/// How a stream's events reach its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMethod {
    /// RFC 8935: Warrant POSTs each SET to the receiver's endpoint.
    Push,
    /// RFC 8936: the receiver polls Warrant and acknowledges what it got.
    Poll,
}

/// A receiver's stream. Its `Debug` never shows the `authorization` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The stream id.
    pub id: String,
    /// Who created it and may manage and poll it (a PEP credential's name, or `admin`).
    pub owner: String,
    /// Push or poll.
    pub method: DeliveryMethod,
    /// Push: the receiver's endpoint.
    pub endpoint: Option<String>,
    /// Push: the `Authorization` header value the receiver asked to be sent (a secret).
    pub authorization: Option<String>,
    /// The `aud` of its SETs.
    pub audience: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// The receiver's description.
    pub description: Option<String>,
    /// Every event with a sequence number up to this one is delivered (push) or
    /// acknowledged (poll).
    pub cursor: u64,
    /// When it was created.
    pub created_at: UnixTime,
}

impl std::fmt::Debug for StreamRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for DeliveryMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeliveryMethod::Push => "push",
            DeliveryMethod::Poll => "poll",
        })
    }
}

/// What an outbox event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    /// A warrant was revoked: the revocation, and what the warrant named (when its record
    /// is still there).
    Revoked {
        /// The warrant.
        jti: WarrantId,
        /// The revocation that ended it (by its own target, or by cascade).
        revocation: RevocationRecord,
        /// The agent the warrant was issued to.
        agent: Option<AgentId>,
        /// Its task.
        task: Option<TaskId>,
        /// The human it traces to.
        human: Option<HumanId>,
    },
    /// A stream verification (SSF §8.1.4), for one stream, echoing the receiver's state.
    Verification {
        /// The `state` the receiver sent, if any.
        state: Option<String>,
    },
}

/// One event of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Its sequence number (increasing, never reused).
    pub seq: u64,
    /// When it happened.
    pub at: UnixTime,
    /// What happened.
    pub event: OutboxEvent,
}

/// The most events one read returns.
pub const MAX_OUTBOX_READ: usize = 1000;

/// The transmitter's outbox and streams.
#[async_trait]
pub trait SsfStore: Send + Sync {
    /// The sequence number of the newest event (0 when there is none).
    async fn outbox_head(&self) -> Result<u64, StoreError>;
    /// Up to `limit` (at most [`MAX_OUTBOX_READ`]) events after `after` that are for
    /// every stream or for `stream`, oldest first.
    async fn outbox_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError>;
    /// Adds a verification event for `stream`; returns its sequence number.
    async fn add_verification(&self, stream: &str, state: Option<&str>, at: UnixTime) -> Result<u64, StoreError>;
    /// Inserts a stream whose cursor is the newest event's sequence number at the moment
    /// it is inserted (`stream.cursor` is ignored), so it carries exactly the events that
    /// come after it; returns that cursor. `Conflict` if its id exists.
    async fn insert_stream(&self, stream: &StreamRecord) -> Result<u64, StoreError>;
    /// Deletes the events every stream has (at or below the smallest cursor; all of them
    /// when there is no stream), and any event older than `older_than` whatever the
    /// cursors. Returns how many were deleted.
    async fn prune_outbox(&self, older_than: UnixTime) -> Result<u64, StoreError>;
    /// One stream.
    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError>;
    /// Every stream, oldest first.
    async fn list_streams(&self) -> Result<Vec<StreamRecord>, StoreError>;
    /// Deletes a stream; `false` when there was none.
    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError>;
    /// Moves a stream's cursor forward to `cursor` (never back); `false` when there is no
    /// such stream.
    async fn advance_stream(&self, id: &str, cursor: u64) -> Result<bool, StoreError>;
}
