//! Warrant's persistence.
//!
//! The [`Store`] trait is the one door to storage. It is split, SPIRE-style, into one
//! trait per entity group ([`HumanStore`], [`AgentStore`], [`KeyStore`],
//! [`WarrantStore`], [`RevocationStore`], [`PolicyStore`], [`AuditStore`],
//! [`GuardStore`], [`GovernStore`], [`PepStore`], [`ssf::SsfStore`], [`ChangeStore`],
//! [`ConsoleStore`],
//! [`HealthStore`]) so
//! that each group can be read and tested on its own. Every method is async.
//! [`sqlite::SqliteStore`] is the default, embedded implementation; [`postgres::PgStore`]
//! keeps the same data in PostgreSQL. The conformance suite in `tests/store.rs` is written
//! against the traits and runs against both.

pub mod audit;
pub mod cluster;
mod columns;
pub mod console;
pub mod govern;
pub mod guard;
pub mod postgres;
pub mod records;
pub mod sqlite;
pub mod ssf;

use async_trait::async_trait;
use warrant_core::{
    Agent, AgentId, AgentStatus, FederatedIdentity, Human, HumanId, HumanStatus, PepId, PublicJwk, Scope, TaskId,
    UnixTime, WarrantId,
};

pub use audit::{Appended, AuditFilter, AuditRow, AuditStore, StoredCheckpoint};
pub use cluster::{Change, ChangeBatch, ChangeKind, ChangeListener, ChangeStore, Leadership};
pub use console::{ConsoleLoginRecord, ConsoleSessionRecord, ConsoleStore};
pub use govern::{Attestation, FindingFilter, GovernStore, LiveWarrant, MAX_FINDING_LIST_LIMIT};
pub use guard::{GuardStore, LiveBudget, MAX_APPROVAL_LIST_LIMIT};
pub use postgres::PgStore;
pub use records::{
    DelegationStart, Issuance, IssuanceStart, IssueGuard, KeyMaterial, KeyPurpose, PepRecord, PolicyVersionRecord,
    RevocationKind, RevocationRecord, SessionPurpose, SessionRecord, SpendCharge, SpentAssertion, StoredKey,
    TaskRecord, WarrantRecord,
};
pub use sqlite::{SqliteOptions, SqliteStore, WriterNice, WriterPriority};

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness or reference constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row could not be read back into a domain value.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Something a new warrant rests on (its parent, task, an agent of its chain, its
    /// human or session) is revoked, ended or inactive, so it was not recorded.
    #[error("refused: {0}")]
    Revoked(String),
    /// A single-use credential (a client assertion) was presented again, so nothing was
    /// written.
    #[error("replayed: {0}")]
    Replayed(String),
    /// The database's schema is a version this build cannot use as asked: written by a
    /// newer build, or older than a read that may not migrate it accepts. Not damage, and
    /// nothing was changed; the message says which versions fit and what to do.
    #[error("{0}")]
    Schema(String),
    /// The database failed. The message is for logs, never for API clients.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Why the store did not record one issuance of an audit batch
/// ([`AuditRow::issuance`]): every [`StoreError`] that is about that warrant alone. A
/// failure of the database itself ([`StoreError::Backend`]) fails the whole batch instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// As [`StoreError::Revoked`]: something the warrant rests on is revoked or ended.
    #[error("refused: {0}")]
    Revoked(String),
    /// As [`StoreError::Replayed`]: its client assertion was spent already.
    #[error("replayed: {0}")]
    Replayed(String),
    /// As [`StoreError::Conflict`]: a constraint refused it (an id taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// As [`StoreError::Corrupt`]: it could not be written as stored data.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl Refusal {
    /// The refusal `e` is, or `e` itself when it is a failure of the database.
    pub fn of(e: StoreError) -> Result<Refusal, StoreError> {
        match e {
            StoreError::Revoked(why) => Ok(Refusal::Revoked(why)),
            StoreError::Replayed(why) => Ok(Refusal::Replayed(why)),
            StoreError::Conflict(why) => Ok(Refusal::Conflict(why)),
            StoreError::Corrupt(why) => Ok(Refusal::Corrupt(why)),
            e => Err(e),
        }
    }
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Revoked(why) => StoreError::Revoked(why),
            Refusal::Replayed(why) => StoreError::Replayed(why),
            Refusal::Conflict(why) => StoreError::Conflict(why),
            Refusal::Corrupt(why) => StoreError::Corrupt(why),
        }
    }
}

/// Humans.
#[async_trait]
pub trait HumanStore: Send + Sync {
    /// Inserts a new human; `Conflict` if the id, email or external id exists.
    async fn insert_human(&self, human: &Human) -> Result<(), StoreError>;
    /// One human by id.
    async fn get_human(&self, id: &HumanId) -> Result<Option<Human>, StoreError>;
    /// One human by email (emails are stored lower-case and unique).
    async fn human_by_email(&self, email: &str) -> Result<Option<Human>, StoreError>;
    /// Every human, oldest first.
    async fn list_humans(&self) -> Result<Vec<Human>, StoreError>;
    /// The human signed in from an identity provider as `identity`, if any.
    async fn human_by_identity(&self, identity: &FederatedIdentity) -> Result<Option<Human>, StoreError>;
    /// Replaces a human's entitlements; `false` when there is no such human.
    async fn set_human_entitlements(&self, id: &HumanId, entitlements: &Scope) -> Result<bool, StoreError>;
    /// Sets a human's status; `false` when there is no such human.
    async fn set_human_status(&self, id: &HumanId, status: HumanStatus) -> Result<bool, StoreError>;
    /// Replaces a human's roles; `false` when there is no such human.
    async fn set_human_roles(
        &self,
        id: &HumanId,
        roles: &std::collections::BTreeSet<String>,
    ) -> Result<bool, StoreError>;
    /// Records a newly opened session.
    async fn record_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// One session by its `jti`.
    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Revokes every unrevoked session of `human` at `now`; returns how many.
    async fn revoke_sessions(&self, human: &HumanId, now: UnixTime) -> Result<u64, StoreError>;
}

/// Agents.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Inserts a new agent; `Conflict` if the id exists or the owner does not.
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    /// One agent by id.
    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// The agent registered with SPIFFE ID `spiffe_id`, if any.
    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError>;
    /// Every agent, oldest first, optionally only those of one owner.
    async fn list_agents(&self, owner: Option<&HumanId>) -> Result<Vec<Agent>, StoreError>;
    /// Sets an agent's status; `false` when there is no such agent.
    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus) -> Result<bool, StoreError>;
    /// Hands an agent to another owner (an existing human: else `Conflict` or a backend
    /// error); `false` when there is no such agent.
    async fn set_agent_owner(&self, id: &AgentId, owner: &HumanId) -> Result<bool, StoreError>;
    /// Replaces an agent's max scope; `false` when there is no such agent.
    async fn set_agent_max_scope(&self, id: &AgentId, max_scope: &Scope) -> Result<bool, StoreError>;
    /// Replaces an agent's public key and records `at` as when it was set; `false` when
    /// there is no such agent, or it authenticates with a SPIFFE ID (it has no key).
    async fn set_agent_key(&self, id: &AgentId, key: &PublicJwk, at: UnixTime) -> Result<bool, StoreError>;
    /// When each agent's current key was set: its registration time until the key is
    /// first replaced.
    async fn agent_key_times(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError>;
}

/// The issuer's signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored key of every purpose, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Adds `key` as the active key of its purpose and, in the same transaction, marks
    /// every other unretired key of that purpose retired at `key.created_at`. A key whose
    /// material is not sealed is refused (`Backend`): nothing is written in the clear.
    async fn rotate_in(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Replaces the plaintext seed of each `(kid, sealed)` key by its sealed form, in one
    /// transaction. SQLite also overwrites the plaintext bytes in the database file and
    /// its journal; PostgreSQL keeps old row versions until it vacuums the table (a
    /// PostgreSQL database only ever holds plaintext seeds written by hand: `rotate_in`
    /// refuses them). Returns how many keys were sealed (keys that are absent or already
    /// sealed are left alone).
    async fn seal_keys(&self, sealed: &[(String, Vec<u8>)]) -> Result<usize, StoreError>;
    /// The latest expiry of any warrant signed with `kid`.
    async fn last_expiry_for_key(&self, kid: &str) -> Result<Option<UnixTime>, StoreError>;
}

/// Tasks, issued warrants and spent client assertions.
#[async_trait]
pub trait WarrantStore: Send + Sync {
    /// Records a client assertion's `jti` as spent. `false` when it was spent already
    /// (a replay). Spent entries past their expiry, relative to `now`, may be purged.
    async fn spend_assertion(
        &self,
        agent: &AgentId,
        jti: &str,
        exp: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Records an issued warrant, and its task when the warrant starts one, atomically,
    /// and only if, in the same transaction: its parent is not revoked, its task has not
    /// ended, every agent of its chain is active, its human and every chain agent's
    /// owner are active, the session in `guard` (if any) is recorded and unrevoked, and
    /// no revocation recorded after `guard.as_of` names an agent of its chain, its task
    /// or its human. Otherwise [`StoreError::Revoked`] and nothing is written. The
    /// assertion in `guard` (if any) is spent in the same transaction; spent already:
    /// [`StoreError::Replayed`] and nothing is written.
    async fn record_warrant(
        &self,
        warrant: &WarrantRecord,
        new_task: Option<&TaskRecord>,
        guard: &IssueGuard,
    ) -> Result<(), StoreError>;
    /// What an issuance for `agent` starts from, in one read where the store can: the
    /// revocation watermark first (so that any revocation after the reads is checked
    /// when the warrant is recorded), then the agent and its owner.
    async fn issuance_start(&self, agent: &AgentId) -> Result<IssuanceStart, StoreError>;
    /// What a delegation of the recorded warrant `parent` starts from, in one read where
    /// the store can: the revocation watermark first, then whether `parent` is recorded,
    /// the acting agent and its owner (when `actor` is given), each agent of the
    /// parent's `chain` and their owners, and the `human` it traces to.
    async fn delegation_start(
        &self,
        parent: &WarrantId,
        actor: Option<&AgentId>,
        chain: &[AgentId],
        human: &HumanId,
    ) -> Result<DelegationStart, StoreError>;
    /// One issued warrant.
    async fn get_warrant(&self, jti: &WarrantId) -> Result<Option<WarrantRecord>, StoreError>;
    /// The warrants delegated directly from `jti`.
    async fn child_warrants(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError>;
    /// One task.
    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError>;
    /// Every warrant of a task, in issuance order.
    async fn task_warrants(&self, id: &TaskId) -> Result<Vec<WarrantRecord>, StoreError>;
    /// How many recorded warrants have not expired at `now` (revoked ones included).
    async fn count_live_warrants(&self, now: UnixTime) -> Result<u64, StoreError>;
}

/// Revocations and completed tasks.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// The sequence number of the newest revocation, 0 when there is none. It only grows.
    async fn revocation_watermark(&self) -> Result<u64, StoreError>;
    /// Records a revocation and ends everything that rests on its target, in one
    /// transaction: an `agent` is suspended if active; a `human`'s sessions are revoked;
    /// a `task` is marked ended (completed). The warrants it ends are selected in the
    /// same transaction (a warrant: its subtree; an agent: every warrant whose chain
    /// holds it; a task: its warrants; a human: every warrant tracing to them), so a
    /// warrant recorded concurrently is either refused or ended. Returns the unexpired
    /// warrants ended, with their expiry; warrants already revoked keep their first
    /// revocation but are returned too.
    async fn revoke(
        &self,
        revocation: &RevocationRecord,
        now: UnixTime,
    ) -> Result<Vec<(WarrantId, UnixTime)>, StoreError>;
    /// Every revoked warrant that has not expired at `now`.
    async fn revoked_warrants(&self, now: UnixTime) -> Result<Vec<WarrantId>, StoreError>;
    /// Every task ended by completion or revocation.
    async fn ended_tasks(&self) -> Result<Vec<TaskId>, StoreError>;
    /// `jti` and every warrant delegated from it, at any depth.
    async fn warrant_subtree(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError>;
    /// Unexpired warrants whose chain contains `agent`, wherever it stands.
    async fn live_warrants_with_agent(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError>;
    /// Unexpired warrants that trace to `human`.
    async fn live_warrants_of_human(&self, human: &HumanId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError>;
    /// The revocations that ended `jti`, if any (the first one).
    async fn revocation_of(&self, jti: &WarrantId) -> Result<Option<RevocationRecord>, StoreError>;
    /// The revocation `id` and the warrants it ended (not those an earlier revocation
    /// had already ended), if it exists: what a server that did not make it applies.
    async fn revocation(&self, id: &str) -> Result<Option<(RevocationRecord, Vec<WarrantId>)>, StoreError>;
}

/// Versions of the policy set.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Stores a policy set version by its fingerprint; returns its id (the existing id
    /// when the same set was stored before).
    async fn save_policy_version(&self, version: &PolicyVersionRecord) -> Result<i64, StoreError>;
    /// Every stored version, oldest first, without their text.
    async fn policy_versions(&self) -> Result<Vec<PolicyVersionRecord>, StoreError>;
    /// One version with its text.
    async fn policy_version(&self, id: i64) -> Result<Option<PolicyVersionRecord>, StoreError>;
    /// The policy version the servers sharing the database have in force, once one was
    /// activated (always `None` on a database of one server, whose set in force comes
    /// from its policy directory).
    async fn active_policy(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// Makes `version` (a stored version) the one every server sharing the database puts
    /// in force, announced on the change feed. Nothing to do on a database of one server.
    async fn activate_policy(&self, version: i64) -> Result<(), StoreError> {
        let _ = version;
        Ok(())
    }
}

/// The credentials of enforcement points (PEPs) asking the AuthZEN PDP.
#[async_trait]
pub trait PepStore: Send + Sync {
    /// Records a new credential; a duplicate id or secret is a conflict.
    async fn insert_pep(&self, pep: &PepRecord) -> Result<(), StoreError>;
    /// Every credential, revoked ones included, oldest first.
    async fn list_peps(&self) -> Result<Vec<PepRecord>, StoreError>;
    /// Revokes a credential at `at`. `false` when it is unknown or already revoked.
    async fn revoke_pep(&self, id: &PepId, at: UnixTime) -> Result<bool, StoreError>;
}

/// The store's own health, for readiness checks.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Whether the database answers now: one round trip, no data read. An error says why
    /// it does not.
    async fn ping(&self) -> Result<(), StoreError>;
    /// How many store calls wait for a free database connection now: SQLite's reads
    /// (its writes queue for the group commit instead), every call on PostgreSQL. Above
    /// zero for long, the connections are too few for the load.
    fn waiting_for_connection(&self) -> usize;
}

/// Everything Warrant stores. Implemented by [`SqliteStore`] (one node, the default) and
/// [`PgStore`] (PostgreSQL).
pub trait Store:
    HealthStore
    + HumanStore
    + AgentStore
    + KeyStore
    + WarrantStore
    + RevocationStore
    + PolicyStore
    + audit::AuditStore
    + GuardStore
    + GovernStore
    + PepStore
    + ssf::SsfStore
    + ChangeStore
    + ConsoleStore
{
}

impl<T> Store for T where
    T: HealthStore
        + HumanStore
        + AgentStore
        + KeyStore
        + WarrantStore
        + RevocationStore
        + PolicyStore
        + audit::AuditStore
        + GuardStore
        + GovernStore
        + PepStore
        + ssf::SsfStore
        + ChangeStore
        + ConsoleStore
{
}
