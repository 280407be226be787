//! Records that only storage needs (the domain types live in `warrant-core`).

use std::collections::BTreeMap;

use warrant_core::{AgentId, HumanId, Mode, PepId, Scope, TaskId, UnixTime, WarrantClaims, WarrantId};

/// Re-exported from `warrant-core`, where the domain enums live; kept here so that
/// `warrant_store::records::{RevocationKind, SessionPurpose}` still name them.
pub use warrant_core::{RevocationKind, SessionPurpose};
use zeroize::Zeroizing;

/// What a signing key signs. Each purpose has its own active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Warrants, human sessions (the issuer's JWKS).
    Warrant,
    /// Audit checkpoints only.
    Checkpoint,
}

impl KeyPurpose {
    /// The stored name (`warrant`, `checkpoint`), also bound into the sealed form.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Warrant => "warrant",
            KeyPurpose::Checkpoint => "checkpoint",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "warrant" => Some(KeyPurpose::Warrant),
            "checkpoint" => Some(KeyPurpose::Checkpoint),
            _ => None,
        }
    }
}

/// A signing key's secret as stored.
#[derive(Clone)]
pub enum KeyMaterial {
    /// The seed sealed with the key-encryption key (see `warrant_token::seal`): the only
    /// form this build writes.
    Sealed(Vec<u8>),
    /// A 32-byte seed in the clear, as databases written before keys were sealed hold
    /// it. Read only so that it can be sealed; [`KeyStore::rotate_in`](crate::KeyStore::rotate_in)
    /// refuses it.
    Plaintext(Zeroizing<[u8; 32]>),
}

/// A signing key as stored. The material is secret (even sealed): never log it.
#[derive(Clone)]
pub struct StoredKey {
    /// The key id (RFC 7638 thumbprint).
    pub kid: String,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// The seed, sealed (or, in a database not yet migrated, in the clear).
    pub material: KeyMaterial,
    /// When the key was created.
    pub created_at: UnixTime,
    /// When it stopped signing, if it has.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let material = match self.material {
            KeyMaterial::Sealed(_) => "sealed",
            KeyMaterial::Plaintext(_) => "plaintext",
        };
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("purpose", &self.purpose)
            .field("material", &material)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// A task: one unit of intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task id.
    pub id: TaskId,
    /// What it is for.
    pub purpose: String,
    /// The accountable human.
    pub human: HumanId,
    /// The agent that holds the root warrant.
    pub root_agent: AgentId,
    /// When it started.
    pub created_at: UnixTime,
    /// When its root warrant expires.
    pub deadline: UnixTime,
}

/// An issued warrant, as recorded for walking its delegation tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantRecord {
    /// The `jti`.
    pub jti: WarrantId,
    /// The parent warrant, absent at the root.
    pub parent: Option<WarrantId>,
    /// The agent holding it.
    pub agent: AgentId,
    /// Its task.
    pub task: TaskId,
    /// The human it traces to.
    pub human: HumanId,
    /// Its `sub` claim.
    pub sub: String,
    /// Delegated or autonomous work.
    pub mode: Mode,
    /// Its scope.
    pub scope: Scope,
    /// Every agent of its chain, root first.
    pub chain: Vec<AgentId>,
    /// The key that signed it.
    pub kid: String,
    /// Issued at.
    pub issued_at: UnixTime,
    /// Expiry.
    pub expires_at: UnixTime,
    /// Its budget: counter -> limit. Empty when the warrant has no budget.
    pub budget: BTreeMap<String, i64>,
    /// The claims it was issued with; `None` for warrants recorded before claims were
    /// kept (such a warrant cannot be named by its `jti` alone).
    pub claims: Option<WarrantClaims>,
}

/// An enforcement point's (PEP's) credential for the AuthZEN PDP. Only the SHA-256 of
/// its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepRecord {
    /// Its id, `pep_…`.
    pub id: PepId,
    /// A name for people (and audit records).
    pub name: String,
    /// The SHA-256 of its secret.
    pub secret_sha256: [u8; 32],
    /// Whether it may ask about plain subjects (no warrant).
    pub plain_subjects: bool,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
}

/// A charge against a warrant's budget counter, applied with the audit record of the
/// decision that incurred it (see `AuditRow::charges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendCharge {
    /// The warrant whose counter is charged.
    pub warrant: WarrantId,
    /// The budget counter.
    pub counter: String,
    /// How much is added to what the counter has spent.
    pub amount: i64,
    /// The warrant's expiry, after which the spend may be purged.
    pub expires_at: UnixTime,
}

/// A revocation as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// `rev_…`.
    pub id: String,
    /// What it names.
    pub kind: RevocationKind,
    /// The id of the warrant, agent, task or human.
    pub target: String,
    /// Why, in the revoker's words.
    pub reason: String,
    /// When.
    pub at: UnixTime,
}

/// A stored version of the policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRecord {
    /// The version id (assigned by the store; 0 before saving).
    pub id: i64,
    /// The SHA-256 fingerprint of schema and policies.
    pub hash: String,
    /// The policy files' text (empty in listings).
    pub policies: String,
    /// The schema's text (empty in listings).
    pub schema: String,
    /// When it was first loaded.
    pub loaded_at: UnixTime,
}

/// What an issuance rests on, checked in the same transaction that records the warrant
/// (see [`crate::WarrantStore::record_warrant`]), so that no interleaving of an issuance
/// with a revocation can leave a warrant alive under something revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueGuard {
    /// The revocation watermark ([`crate::RevocationStore::revocation_watermark`]) read
    /// before the issuance's checks began. Any revocation recorded after it that names
    /// an agent of the new warrant's chain, its task, or its human refuses the warrant,
    /// even when the agent has been resumed since.
    pub as_of: u64,
    /// The human session the work started from (a delegated root warrant): refused when
    /// that session has been revoked or is unknown.
    pub session: Option<String>,
    /// The client assertion the issuance was authenticated with, spent in the same
    /// transaction as the warrant is recorded: a replayed assertion is refused with
    /// [`crate::StoreError::Replayed`] and nothing is written. `None` when the caller
    /// spent it already (or there is none).
    pub assertion: Option<SpentAssertion>,
}

/// An issuance recorded in the same transaction as its audit record: an
/// [`AuditRow`](crate::AuditRow) that carries one makes the warrant (and its task) durable
/// exactly when the record is, with the checks of [`crate::WarrantStore::record_warrant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The warrant to record.
    pub warrant: WarrantRecord,
    /// The task it starts, if it starts one.
    pub new_task: Option<TaskRecord>,
    /// What it rests on, checked in the transaction.
    pub guard: IssueGuard,
}

/// What an agent's issuance starts from, read together
/// ([`crate::WarrantStore::issuance_start`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IssuanceStart {
    /// The revocation watermark, read first (what [`IssueGuard::as_of`] is set to).
    pub watermark: u64,
    /// The agent, as registered (`None`: not registered).
    pub agent: Option<warrant_core::Agent>,
    /// The agent's owner, as registered (`None`: no agent, or its owner is missing).
    pub owner: Option<warrant_core::Human>,
}

/// What a delegation (a token exchange of a recorded warrant) starts from, read together
/// ([`crate::WarrantStore::delegation_start`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationStart {
    /// The revocation watermark, read first (what [`IssueGuard::as_of`] is set to).
    pub watermark: u64,
    /// Whether the parent warrant is recorded.
    pub parent_recorded: bool,
    /// The acting agent, as registered (`None`: not registered, or not asked for).
    pub actor: Option<warrant_core::Agent>,
    /// The acting agent's owner, as registered.
    pub actor_owner: Option<warrant_core::Human>,
    /// Each agent of the parent's chain, in chain order (`None`: not registered).
    pub chain: Vec<Option<warrant_core::Agent>>,
    /// The distinct owners of the chain's agents, in chain order (a missing one is left
    /// out).
    pub chain_owners: Vec<warrant_core::Human>,
    /// The human the parent warrant traces to, as registered.
    pub human: Option<warrant_core::Human>,
}

/// A single-use client assertion, as spent ([`crate::WarrantStore::spend_assertion`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentAssertion {
    /// The agent it authenticated.
    pub agent: AgentId,
    /// Its `jti`.
    pub jti: String,
    /// Its expiry: it is remembered until then.
    pub exp: UnixTime,
    /// When it was spent (assertions spent before `now` and expired are purged).
    pub now: UnixTime,
}

/// A human session as recorded, so it can be revoked before it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session token's `jti`.
    pub jti: String,
    /// The human it speaks for.
    pub human: HumanId,
    /// What it is good for.
    pub purpose: SessionPurpose,
    /// When it was opened.
    pub issued_at: UnixTime,
    /// When it expires.
    pub expires_at: UnixTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
}
