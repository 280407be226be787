//! The change feed: how servers sharing one database hear what the others changed.
//!
//! A server keeps what the decision path reads in memory (the directory of humans and
//! agents, the revocation index, the PEP credentials, the signing keys). When several
//! servers share a PostgreSQL database, each must learn of a change another made: every
//! write of a table behind that state adds a [`Change`] to a numbered log in the writing
//! transaction (triggers, so no write can forget it), numbered under the store's write
//! lock and so in commit order, and announces it on a notification channel when it
//! commits. A server reads the log from the last number it applied
//! ([`ChangeStore::changes_since`]), woken by the announcements
//! ([`ChangeStore::listen_changes`]) and by a timer, so a lost announcement only delays.
//!
//! An embedded SQLite database has one server ([`ChangeStore::shared`] is false): it has
//! no feed, and every method here answers "nothing changed".

use async_trait::async_trait;
use warrant_core::govern::{ShadowActivity, ShadowBatch};
use warrant_core::UnixTime;

use crate::StoreError;

/// What a [`Change`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// An agent was registered or changed (status, owner, max scope, key): its id.
    Agent,
    /// A human was registered or changed (status, entitlements, roles): their id.
    Human,
    /// A revocation was recorded (with the warrants it ended, and the task it ended for
    /// a task revocation): its id.
    Revocation,
    /// A PEP credential was created or revoked: its id.
    Pep,
    /// A signing key was added or changed: its `kid`.
    Key,
    /// A policy version was put in force on every server: its number.
    Policy,
}

impl ChangeKind {
    /// The word the log stores.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Agent => "agent",
            ChangeKind::Human => "human",
            ChangeKind::Revocation => "revocation",
            ChangeKind::Pep => "pep",
            ChangeKind::Key => "key",
            ChangeKind::Policy => "policy",
        }
    }

    /// The kind the log's `word` names, if any.
    pub fn parse(word: &str) -> Option<ChangeKind> {
        [
            ChangeKind::Agent,
            ChangeKind::Human,
            ChangeKind::Revocation,
            ChangeKind::Pep,
            ChangeKind::Key,
            ChangeKind::Policy,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its number: every later change has a greater one (numbers skipped by a write that
    /// rolled back are never used).
    pub seq: u64,
    /// What changed.
    pub kind: ChangeKind,
    /// Which one (an id, a `kid` or a policy version number).
    pub subject: String,
}

/// What [`ChangeStore::changes_since`] read, in one snapshot of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The changes after the number asked for, in order (at most the limit asked for).
    pub changes: Vec<Change>,
    /// Changes numbered up to this have been pruned from the log: a reader whose last
    /// applied number is below it missed some and must reload everything.
    pub pruned_through: u64,
}

/// Announcements of new changes, from a connection of their own
/// ([`ChangeStore::listen_changes`]). Each is only a hint to read the log now.
pub struct ChangeListener {
    announcements: tokio::sync::mpsc::Receiver<()>,
    /// Ends the task that reads the connection when the listener is dropped.
    task: tokio::task::JoinHandle<()>,
    /// What keeps the connection open (its client), dropped with the listener.
    _connection: Box<dyn std::any::Any + Send + Sync>,
}

impl ChangeListener {
    /// A listener fed by `task` through `announcements`.
    pub(crate) fn new(
        announcements: tokio::sync::mpsc::Receiver<()>,
        task: tokio::task::JoinHandle<()>,
        connection: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        ChangeListener { announcements, task, _connection: connection }
    }

    /// Waits for the next announcement (several that arrived meanwhile count as one).
    /// `None` once the connection is lost: listen again.
    pub async fn next(&mut self) -> Option<()> {
        self.announcements.recv().await
    }
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener").finish_non_exhaustive()
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Held by the one server that leads the background work of a shared database (the
/// periodic governance sweep, Shared Signals push delivery): a session lock on a
/// connection of its own, released when this is dropped or the connection is lost.
pub struct Leadership {
    check: Option<Box<dyn LeaderConnection>>,
}

/// The connection a [`Leadership`] lives on.
#[async_trait]
pub(crate) trait LeaderConnection: Send + Sync {
    /// Whether the connection, and so the lock, is still there.
    async fn alive(&self) -> bool;
}

impl Leadership {
    /// Leadership of a database only one server uses: held for good.
    pub fn sole() -> Self {
        Leadership { check: None }
    }

    pub(crate) fn on(connection: Box<dyn LeaderConnection>) -> Self {
        Leadership { check: Some(connection) }
    }

    /// Whether this server still leads: its lock's connection still answers.
    pub async fn held(&self) -> bool {
        match &self.check {
            None => true,
            Some(connection) => connection.alive().await,
        }
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("shared", &self.check.is_some()).finish()
    }
}

/// The change feed of a database several servers share.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Whether other servers may write to this database, so that a server must follow
    /// the feed (PostgreSQL) or not (SQLite, one server).
    fn shared(&self) -> bool {
        false
    }

    /// The number of the newest change (0 for none).
    async fn change_head(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The changes numbered after `after`, oldest first, at most `limit`, and how far
    /// the log has been pruned: one snapshot, so a reader that applies them all has seen
    /// every change committed before it asked.
    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeBatch, StoreError> {
        let _ = (after, limit);
        Ok(ChangeBatch::default())
    }

    /// Starts listening for announcements of new changes on a connection of its own.
    async fn listen_changes(&self) -> Result<ChangeListener, StoreError> {
        Err(StoreError::Backend("this database has no change feed (one server only)".into()))
    }

    /// Tries to become the leader of the background work; `None` while another server
    /// leads. On a database of one server, always [`Leadership::sole`].
    async fn lead(&self) -> Result<Option<Leadership>, StoreError> {
        Ok(Some(Leadership::sole()))
    }

    /// The SHA-256 of the admin token every server sharing the database accepts, once a
    /// server has claimed it (`None` before, and always on a database of one server,
    /// whose token is only in its data directory).
    async fn admin_token_digest(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(None)
    }

    /// Makes `digest` the admin token's SHA-256 unless a server claimed one first;
    /// returns the one in force (`digest` when this call claimed it). On a database of
    /// one server, `digest` itself.
    async fn claim_admin_token(&self, digest: [u8; 32]) -> Result<[u8; 32], StoreError> {
        Ok(digest)
    }

    /// Records that server `id` is alive now and answers how many servers have been
    /// alive within `within_secs` seconds (this one included); forgets servers not seen
    /// for an hour. On a database of one server, 1.
    async fn heartbeat(&self, id: &str, within_secs: u64) -> Result<u64, StoreError> {
        let _ = (id, within_secs);
        Ok(1)
    }

    /// Spends the DPoP proof `jti` made with key `jkt`, remembered until `exp`: `false`
    /// when a server sharing the database spent it already. Forgets proofs expired at
    /// `now`. On a database of one server, always `true` (the server's own register is
    /// the whole truth).
    async fn spend_proof(&self, jkt: &str, jti: &str, exp: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
        let _ = (jkt, jti, exp, now);
        Ok(true)
    }

    /// Claims the security event token `jti` of `issuer`, remembered until `exp`: `false`
    /// when a server sharing the database claimed it already (it is being, or was, acted
    /// on there). Forgets tokens expired at `now`. On a database of one server, `true`.
    async fn claim_set(&self, issuer: &str, jti: &str, exp: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
        let _ = (issuer, jti, exp, now);
        Ok(true)
    }

    /// Gives a claimed security event token up (acting on it failed; a retried delivery
    /// must be acted on).
    async fn release_set(&self, issuer: &str, jti: &str) -> Result<(), StoreError> {
        let _ = (issuer, jti);
        Ok(())
    }

    /// Adds the shadow activity this server counted (`batch`), by finding subject, to what
    /// every server sharing the database counted ([`ShadowActivity::merge`]), in one write
    /// transaction; a subject with new occurrences is no longer reported. A new subject
    /// beyond [`MAX_SUBJECTS`](warrant_core::govern::shadow::MAX_SUBJECTS) stored ones is
    /// counted under the overflow subject. A batch already added (a retry of a write whose
    /// answer was lost) adds nothing, if it is retried within a day. On a database of one
    /// server, nothing: that server's own count is the whole truth.
    async fn merge_shadow(&self, batch: &ShadowBatch) -> Result<(), StoreError> {
        let _ = batch;
        Ok(())
    }

    /// Adds each of `recorded` (the activity an open finding records, by subject) to the
    /// database's count where that count does not hold it, having begun after it (a finding
    /// opened before the database counted shadow activity, or counted where the count was
    /// lost): a subject with no count is stored as reported, one with a later count goes
    /// on from the finding's. Then forgets the reported shadow activity last seen at or before
    /// `quiet_through`, and answers the rest, by subject: what a sweep of a shared database
    /// observes. On a database of one server, none.
    async fn shadow_activity(
        &self,
        quiet_through: UnixTime,
        recorded: &[(String, ShadowActivity)],
    ) -> Result<Vec<(String, ShadowActivity)>, StoreError> {
        let _ = (quiet_through, recorded);
        Ok(Vec::new())
    }

    /// Marks each `(subject, occurrences)` reported (a sweep committed its finding with
    /// that many occurrences), unless more were counted since.
    async fn shadow_reported(&self, reported: &[(String, u64)]) -> Result<(), StoreError> {
        let _ = reported;
        Ok(())
    }

    /// Removes changes older than `keep_secs` seconds (by the database's clock) and
    /// records how far it pruned; how many it removed.
    async fn prune_changes(&self, keep_secs: u64) -> Result<u64, StoreError> {
        let _ = keep_secs;
        Ok(0)
    }
}
