//! The change feed: keeping this server's in-memory state current when other servers
//! share its database (PostgreSQL), and knowing when it might not be.
//!
//! What the decision path reads from memory (the directory of humans and agents, the
//! revocation index, the PEP credentials, the signing keys) changes when any server
//! writes. The store logs every such change in the writing transaction, numbered in
//! commit order, and announces it ([`warrant_store::cluster`]). [`ChangeFeed`] reads the
//! log from the last number it applied and applies each change by reading the entry it
//! names from the store again, woken by the announcements and, in case one is lost, by a
//! timer ([`ClusterConfig::poll_interval`]). A server that missed changes the log no
//! longer holds reloads everything.
//!
//! **Fail closed.** [`Freshness`] remembers when the server last confirmed it had applied
//! every change: the start of the last read of the log that succeeded and was applied in
//! full. A server that has not confirmed for longer than
//! [`ClusterConfig::max_staleness`] denies every decision (code `stale`) until it has
//! again, and reports not ready after [`NOT_READY_AFTER`] (also when its announcement
//! connection has been down that long).
//!
//! On SQLite (one server per database) there is no feed: nothing to follow, never stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warrant_store::{Change, ChangeKind, ChangeListener, Store, StoreError};

use crate::clock::Clock;
use crate::directory::Directory;
use crate::guard::Guardrails;
use crate::keys::{KeyError, KeyManager};
use crate::peps::Peps;
use crate::policy::{Policy, PolicyLoadError};
use crate::revocation::Revocation;

/// How many changes one read of the log takes at most.
const BATCH: usize = 500;
/// How long a server that has not confirmed it is current, or has lost its announcement
/// connection, still reports ready.
pub const NOT_READY_AFTER: Duration = Duration::from_secs(5);
/// How long connecting the announcement connection may take.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the log is pruned of changes older than [`ClusterConfig::keep_changes`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often a server says it is alive, and counts the servers that are.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A server not heard from for this long no longer counts (its share of the rate limits
/// goes to the others).
const ALIVE_WITHIN_SECS: u64 = 5;
/// How a server follows the change feed (`[cluster]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterConfig {
    /// How long a server may go without confirming it is current before it denies
    /// (default 1 s).
    pub max_staleness: Duration,
    /// How often the log is read when no announcement wakes the server (default 100 ms).
    pub poll_interval: Duration,
    /// How long changes stay in the log; a server away for longer reloads everything
    /// (default 1 hour).
    pub keep_changes: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            max_staleness: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            keep_changes: Duration::from_secs(3600),
        }
    }
}

/// Why a change could not be applied, or the log not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing keys could not be reloaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The policy version another server put in force could not be.
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
}

/// When this server last confirmed it is current, read by the decision path.
pub struct Freshness {
    clock: Arc<dyn Clock>,
    /// Whether the store is shared (otherwise the server is always current).
    shared: bool,
    max_staleness: Duration,
    /// [`Clock::ticks`] in milliseconds at the start of the last confirming read.
    confirmed_ms: AtomicU64,
    /// Ticks in milliseconds since the announcement connection has been down; `u64::MAX`
    /// while it is up (or before it was first needed).
    listener_down_ms: AtomicU64,
}

impl std::fmt::Debug for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Freshness").field("shared", &self.shared).field("age", &self.age()).finish_non_exhaustive()
    }
}

impl Freshness {
    /// Current as of `confirmed` ([`Clock::ticks`]): when the server began loading its
    /// state from the store.
    fn new(clock: Arc<dyn Clock>, shared: bool, max_staleness: Duration, confirmed: Duration) -> Self {
        let now = millis(confirmed);
        Freshness {
            clock,
            shared,
            max_staleness,
            confirmed_ms: AtomicU64::new(now),
            listener_down_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// How long ago this server last confirmed it is current (zero on one server).
    pub fn age(&self) -> Duration {
        if !self.shared {
            return Duration::ZERO;
        }
        let now = millis(self.clock.ticks());
        Duration::from_millis(now.saturating_sub(self.confirmed_ms.load(Ordering::SeqCst)))
    }

    /// Why this server must not decide now, if it must not: it has not confirmed it is
    /// current for longer than `max_staleness`.
    pub fn stale(&self) -> Option<String> {
        let age = self.age();
        (age > self.max_staleness).then(|| {
            format!(
                "this server has not confirmed for {} ms that it knows every revocation and registry change \
                 (cluster.max_staleness is {} ms)",
                age.as_millis(),
                self.max_staleness.as_millis()
            )
        })
    }

    /// Whether this server is ready as far as the feed goes: `Err` says why not.
    pub fn ready(&self) -> Result<(), String> {
        let age = self.age();
        if age > NOT_READY_AFTER {
            return Err(format!("the change feed has not been read for {} ms", age.as_millis()));
        }
        let down = self.listener_down_ms.load(Ordering::SeqCst);
        let now = millis(self.clock.ticks());
        if down != u64::MAX && now.saturating_sub(down) > millis(NOT_READY_AFTER) {
            return Err(format!("the change feed's announcements have been down for {} ms", now.saturating_sub(down)));
        }
        Ok(())
    }

    fn confirm(&self, started: Duration) {
        self.confirmed_ms.fetch_max(millis(started), Ordering::SeqCst);
    }

    fn listener_up(&self) {
        self.listener_down_ms.store(u64::MAX, Ordering::SeqCst);
    }

    fn listener_down(&self) {
        let now = millis(self.clock.ticks());
        let _ = self.listener_down_ms.compare_exchange(u64::MAX, now, Ordering::SeqCst, Ordering::SeqCst);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The change feed service.
pub struct ChangeFeed {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: ClusterConfig,
    freshness: Arc<Freshness>,
    directory: Arc<Directory>,
    revocation: Arc<Revocation>,
    peps: Arc<Peps>,
    keys: Arc<KeyManager>,
    policy: Arc<Policy>,
    guardrails: Arc<Guardrails>,
    /// This server's name among those sharing the database (random, per process).
    server_id: String,
    /// The number of the last change applied; held while reading and applying.
    cursor: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Where the feed starts: read before the engine loads its state from the store, so
/// that every change made while it loads is applied again (applying is idempotent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedStart {
    head: u64,
    freshness_at: Duration,
}

impl FeedStart {
    /// Reads the log's newest number (on a shared store) and the time.
    pub(crate) async fn read(store: &dyn Store, clock: &dyn Clock) -> Result<Self, StoreError> {
        let freshness_at = clock.ticks();
        let head = if store.shared() { store.change_head().await? } else { 0 };
        Ok(FeedStart { head, freshness_at })
    }
}

/// What the change feed is built from.
pub(crate) struct FeedParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: ClusterConfig,
    pub start: FeedStart,
    pub directory: Arc<Directory>,
    pub revocation: Arc<Revocation>,
    pub peps: Arc<Peps>,
    pub keys: Arc<KeyManager>,
    pub policy: Arc<Policy>,
    pub guardrails: Arc<Guardrails>,
}

impl ChangeFeed {
    pub(crate) fn new(parts: FeedParts) -> Self {
        let freshness = Freshness::new(
            Arc::clone(&parts.clock),
            parts.store.shared(),
            parts.config.max_staleness,
            parts.start.freshness_at,
        );
        ChangeFeed {
            store: parts.store,
            clock: parts.clock,
            config: parts.config,
            freshness: Arc::new(freshness),
            directory: parts.directory,
            revocation: parts.revocation,
            peps: parts.peps,
            keys: parts.keys,
            policy: parts.policy,
            guardrails: parts.guardrails,
            server_id: format!("srv_{}", hex::encode(crate::random::bytes::<8>().unwrap_or_default())),
            cursor: tokio::sync::Mutex::new(parts.start.head),
        }
    }

    /// Whether this server follows a feed (its database is shared).
    pub fn enabled(&self) -> bool {
        self.store.shared()
    }

    /// When this server last confirmed it is current.
    pub fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    /// The number of the last change applied.
    pub async fn cursor(&self) -> u64 {
        *self.cursor.lock().await
    }

    /// Says this server is alive and counts the servers that are: each enforces its share
    /// of every rate limit. How many there are.
    pub async fn heartbeat(&self) -> Result<u64, FeedError> {
        let servers = self.store.heartbeat(&self.server_id, ALIVE_WITHIN_SECS).await?;
        if servers != self.guardrails.servers() {
            tracing::info!(servers, "servers sharing the database (each enforces its share of every rate limit)");
        }
        self.guardrails.set_servers(servers);
        Ok(servers)
    }

    /// Reads the log from the last change applied and applies every change in it, then
    /// confirms this server current as of the moment it started reading. How many changes
    /// it applied. On an error, the changes before the failing one stay applied and the
    /// next call starts from it; nothing is confirmed.
    pub async fn catch_up(&self) -> Result<usize, FeedError> {
        if !self.enabled() {
            return Ok(0);
        }
        let mut cursor = self.cursor.lock().await;
        let started = self.clock.ticks();
        let mut applied = 0;
        loop {
            let batch = self.store.changes_since(*cursor, BATCH).await?;
            if batch.pruned_through > *cursor {
                tracing::warn!(
                    applied = *cursor,
                    pruned_through = batch.pruned_through,
                    "changes this server had not applied were pruned from the log; reloading everything"
                );
                self.reload_all().await?;
                *cursor = batch.pruned_through;
                continue;
            }
            let full = batch.changes.len() == BATCH;
            for change in &batch.changes {
                self.apply(change).await?;
                *cursor = change.seq;
                applied += 1;
            }
            if !full {
                break;
            }
        }
        self.freshness.confirm(started);
        Ok(applied)
    }

    /// Applies one change: reads what it names from the store again.
    async fn apply(&self, change: &Change) -> Result<(), FeedError> {
        let store = self.store.as_ref();
        match change.kind {
            // Read again whenever this server wrote to the directory meanwhile: what was
            // read may be older than that write, and must not replace it.
            ChangeKind::Agent => {
                let id = parse(&change.subject, warrant_core::AgentId::parse)?;
                self.read_until_current(
                    change,
                    || store.get_agent(&id),
                    |agent, mark| self.directory.put_agent_read_at(agent, mark),
                )
                .await?;
            }
            ChangeKind::Human => {
                let id = parse(&change.subject, warrant_core::HumanId::parse)?;
                self.read_until_current(
                    change,
                    || store.get_human(&id),
                    |human, mark| self.directory.put_human_read_at(human, mark),
                )
                .await?;
            }
            ChangeKind::Revocation => {
                if let Some((revocation, ended)) = store.revocation(&change.subject).await? {
                    self.revocation.apply_recorded(&revocation, ended);
                }
            }
            ChangeKind::Pep => self.peps.reload().await?,
            ChangeKind::Key => self.keys.refresh().await?,
            // Whatever version the change names, the one in force now is the store's.
            ChangeKind::Policy => self.policy.apply_shared().await?,
        }
        tracing::debug!(seq = change.seq, kind = change.kind.as_str(), subject = %change.subject, "applied a change");
        Ok(())
    }

    /// Reads what `change` names with `read` and records it with `put`, reading again
    /// whenever this server wrote to the directory meanwhile (what was read may be older
    /// than that write, and must not replace it); nothing when it no longer exists.
    async fn read_until_current<T, F>(
        &self,
        change: &Change,
        read: impl Fn() -> F,
        put: impl Fn(T, u64) -> bool,
    ) -> Result<(), FeedError>
    where
        F: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        for _ in 0..READ_AGAIN {
            let mark = self.directory.mark();
            let Some(entry) = read().await? else { return Ok(()) };
            if put(entry, mark) {
                return Ok(());
            }
        }
        Err(kept_changing(change))
    }

    /// Reads everything the feed keeps current from the store again.
    async fn reload_all(&self) -> Result<(), FeedError> {
        self.directory.reload(self.store.as_ref()).await?;
        self.revocation.reload_index().await?;
        self.peps.reload().await?;
        self.keys.refresh().await?;
        self.policy.apply_shared().await?;
        Ok(())
    }

    /// Follows the feed until the task is aborted: listens for announcements (again
    /// after a lost connection), reads the log on each and every
    /// [`ClusterConfig::poll_interval`], and prunes the log now and then.
    pub(crate) async fn run(self: Arc<Self>) {
        if !self.enabled() {
            return;
        }
        let mut listener: Option<ChangeListener> = None;
        let mut healthy = true;
        let mut last_prune = self.clock.ticks();
        let mut last_beat: Option<Duration> = None;
        loop {
            if last_beat.is_none_or(|at| self.clock.ticks().saturating_sub(at) >= HEARTBEAT) {
                last_beat = Some(self.clock.ticks());
                if let Err(e) = self.heartbeat().await {
                    tracing::debug!(error = %e, "heartbeat failed");
                }
            }
            if listener.is_none() {
                match tokio::time::timeout(LISTEN_TIMEOUT, self.store.listen_changes()).await {
                    Ok(Ok(l)) => {
                        listener = Some(l);
                        self.freshness.listener_up();
                    }
                    Ok(Err(e)) => {
                        self.freshness.listener_down();
                        if healthy {
                            tracing::warn!(error = %e, "cannot listen for the change feed's announcements; reading it on a timer");
                        }
                    }
                    Err(_) => self.freshness.listener_down(),
                }
            }
            match self.catch_up().await {
                Ok(_) if !healthy => {
                    healthy = true;
                    tracing::info!("the change feed is readable again; this server is current");
                }
                Ok(_) => {}
                Err(e) if healthy => {
                    healthy = false;
                    tracing::error!(error = %e, "cannot read the change feed; decisions are denied once this server is stale");
                }
                Err(_) => {}
            }
            if self.clock.ticks().saturating_sub(last_prune) >= PRUNE_EVERY {
                last_prune = self.clock.ticks();
                let keep = self.config.keep_changes.as_secs();
                if let Err(e) = self.store.prune_changes(keep).await {
                    tracing::warn!(error = %e, "cannot prune the change feed's log");
                }
            }
            let wait = tokio::time::sleep(self.config.poll_interval);
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        got = l.next() => if got.is_none() {
                            listener = None;
                            self.freshness.listener_down();
                            tracing::warn!("lost the change feed's announcement connection; listening again");
                        },
                        () = wait => {}
                    }
                }
                None => wait.await,
            }
        }
    }
}

/// How many times a change is read again while this server keeps writing to the
/// directory, before the read of the log is given up (and retried on the next one).
const READ_AGAIN: usize = 16;

/// A change that could not be applied because this server kept writing what it names.
fn kept_changing(change: &Change) -> FeedError {
    FeedError::Store(StoreError::Backend(format!(
        "`{}` kept changing on this server while change {} was applied; trying again",
        change.subject, change.seq
    )))
}

/// Parses a change's subject, as corrupt data when it does not parse.
fn parse<T, E: std::fmt::Display>(subject: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, StoreError> {
    parse(subject).map_err(|e| StoreError::Corrupt(format!("cluster_changes.subject `{subject}`: {e}")))
}
