//! The registry: humans, their sessions, and agents.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use warrant_core::audit::details::RegistryDetails;
use warrant_core::audit::AuditEntry;
use warrant_core::{
    Agent, AgentId, AgentStatus, Human, HumanId, HumanStatus, Mode, Principal, PublicJwk, Scope, UnixTime,
};
use warrant_store::{SessionPurpose, SessionRecord, Store, StoreError};
use warrant_token::session::{sign_approver, sign_session, SessionClaims};
use warrant_token::spiffe::SpiffeId;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{Classify, ErrorKind};
use crate::federation::FederatedSignIn;
use crate::govern::Governance;
use crate::guard::Guardrails;
use crate::keys::KeyManager;
use crate::random::{self, RandomError};
use crate::spiffe::SpiffeTrust;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The input is invalid; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such human or agent.
    #[error("no {kind} `{id}`")]
    NotFound {
        /// `human` or `agent`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (the cause is kept); the detail is for logs.
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    /// Storage, randomness or signing failed; the detail is for logs only.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Invalid(_) => ErrorKind::Invalid,
            RegistryError::NotFound { .. } => ErrorKind::NotFound,
            RegistryError::Conflict(_) => ErrorKind::Conflict,
            RegistryError::Store(_) | RegistryError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Store(e)
    }
}

impl From<RandomError> for RegistryError {
    fn from(e: RandomError) -> Self {
        RegistryError::Internal(e.to_string())
    }
}

/// A human to register.
#[derive(Debug, Clone)]
pub struct NewHuman {
    /// Display name.
    pub name: String,
    /// Contact email, unique.
    pub email: String,
    /// Permissions the human may delegate.
    pub entitlements: Vec<String>,
    /// Roles (see [`check_roles`] for their form).
    pub roles: Vec<String>,
    /// What an identity provider calls this human (its `sub`), unique among humans.
    pub external_id: Option<String>,
}

/// An agent to register.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Display name.
    pub name: String,
    /// The owner's human id.
    pub owner: String,
    /// Delegated or autonomous.
    pub mode: Mode,
    /// The ceiling of its warrants.
    pub max_scope: Vec<String>,
    /// Its Ed25519 public key (its client assertions are signed with it), or `None` with
    /// a `spiffe_id`.
    pub public_key: Option<PublicJwk>,
    /// The SPIFFE ID it authenticates as with JWT-SVIDs, instead of a key of its own; its
    /// trust domain must be trusted (`[[federation.spiffe]]`).
    pub spiffe_id: Option<String>,
    /// When an ephemeral agent stops being usable.
    pub expires_at: Option<UnixTime>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// A status change requested for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTransition {
    /// Active -> suspended.
    Suspend,
    /// Suspended -> active.
    Resume,
    /// Any -> retired, for good.
    Retire,
}

/// A human session token, standing in for an IdP's ID token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed token.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

const MAX_NAME: usize = 200;
const MAX_LABELS: usize = 32;
const MAX_LABEL_LEN: usize = 128;

fn check_name(name: &str) -> Result<String, RegistryError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(RegistryError::Invalid(format!("`name` must be 1 to {MAX_NAME} printable characters")));
    }
    Ok(name.to_owned())
}

fn check_email(email: &str) -> Result<String, RegistryError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid {
        Ok(email.to_ascii_lowercase())
    } else {
        Err(RegistryError::Invalid(format!("`{email}` is not a valid email address")))
    }
}

/// The longest external id, in bytes.
pub const MAX_EXTERNAL_ID: usize = 255;

/// An external id: 1 to [`MAX_EXTERNAL_ID`] bytes, no whitespace or control characters,
/// not of the form of a Warrant human id (`hum_…`) nor an email (no `@`), so that a
/// subject id names one human one way.
pub fn check_external_id(id: &str) -> Result<String, RegistryError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_EXTERNAL_ID
        && !id.starts_with("hum_")
        && !id.contains('@')
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(id.to_owned())
    } else {
        Err(RegistryError::Invalid(format!(
            "`external_id` must be 1 to {MAX_EXTERNAL_ID} bytes without whitespace or `@`, not starting with `hum_`"
        )))
    }
}

/// The most roles a human may hold.
pub const MAX_ROLES: usize = 32;
/// The longest role, in bytes.
pub const MAX_ROLE_LEN: usize = 64;

/// Roles as a human holds them: each 1 to [`MAX_ROLE_LEN`] characters of ASCII letters,
/// digits, `_`, `-`, `.` and `:`; at most [`MAX_ROLES`] distinct ones; duplicates merged.
pub fn check_roles(roles: &[String]) -> Result<BTreeSet<String>, RegistryError> {
    let mut out = BTreeSet::new();
    for role in roles {
        let valid = !role.is_empty()
            && role.len() <= MAX_ROLE_LEN
            && role.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !valid {
            return Err(RegistryError::Invalid(format!(
                "role `{}` must be 1 to {MAX_ROLE_LEN} of the characters A-Z a-z 0-9 _ - . :",
                role.escape_debug()
            )));
        }
        out.insert(role.clone());
    }
    if out.len() > MAX_ROLES {
        return Err(RegistryError::Invalid(format!("a human holds at most {MAX_ROLES} roles")));
    }
    Ok(out)
}

fn parse_scope(field: &str, items: &[String]) -> Result<Scope, RegistryError> {
    Scope::parse_list(items.iter().map(String::as_str)).map_err(|e| RegistryError::Invalid(format!("`{field}`: {e}")))
}

/// Parses a human id from user input.
pub fn parse_human_id(id: &str) -> Result<HumanId, RegistryError> {
    HumanId::parse(id).map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Parses an agent id from user input.
pub fn parse_agent_id(id: &str) -> Result<AgentId, RegistryError> {
    AgentId::parse(id).map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Session lifetimes and the issuer sessions name.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub issuer: String,
    pub session_ttl: i64,
    pub approver_ttl: i64,
}

/// The registry service: humans, their sessions, and agents. Every change is audited,
/// written to the store, then to the in-memory directory the decision path reads.
pub struct Registry {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sessions: SessionSettings,
    directory: Arc<Directory>,
    keys: Arc<KeyManager>,
    audit: Arc<Audit>,
    governance: Arc<Governance>,
    guardrails: Arc<Guardrails>,
    /// The trusted SPIFFE trust domains (an agent's `spiffe_id` must be of one).
    spiffe: Arc<SpiffeTrust>,
    /// Held while a signed-in human is found, updated or registered, and while a human is
    /// disabled or enabled: two first sign-ins of one person at once register them once
    /// (and audit it once), and a sign-in never writes back a status it read before a
    /// disable.
    signins: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("agents", &self.directory.agent_count()).finish_non_exhaustive()
    }
}

/// What the registry service is built from.
pub(crate) struct RegistryParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub sessions: SessionSettings,
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyManager>,
    pub audit: Arc<Audit>,
    pub governance: Arc<Governance>,
    pub guardrails: Arc<Guardrails>,
    pub spiffe: Arc<SpiffeTrust>,
}

impl Registry {
    pub(crate) fn new(parts: RegistryParts) -> Self {
        let RegistryParts { store, clock, sessions, directory, keys, audit, governance, guardrails, spiffe } = parts;
        Registry {
            store,
            clock,
            sessions,
            directory,
            keys,
            audit,
            governance,
            guardrails,
            spiffe,
            signins: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `id` names a registered agent (from memory).
    pub fn is_registered(&self, id: &AgentId) -> bool {
        self.directory.agent(id).is_some()
    }

    /// Whether `id` is a registered, active human, from memory (as the decision path
    /// sees them).
    pub fn is_active_human(&self, id: &HumanId) -> bool {
        self.directory.human(id).is_some_and(|h| h.is_active())
    }

    /// Every registered agent as last written, from memory, in no particular order.
    pub fn agents_in_memory(&self) -> Vec<Arc<Agent>> {
        self.directory.agents()
    }

    /// Every registered human by id as last written, from memory.
    pub fn humans_in_memory(&self) -> std::collections::HashMap<HumanId, Arc<Human>> {
        self.directory.humans()
    }

    /// Audits a registry change before it is applied: if the record cannot be written,
    /// the change is refused.
    async fn audit_registry(
        &self,
        by: Option<&Principal>,
        details: RegistryDetails,
        agent: Option<&AgentId>,
        human: Option<&HumanId>,
    ) -> Result<(), RegistryError> {
        let mut entry = AuditEntry::with_details(self.clock.now(), details)
            .map_err(|e| RegistryError::Internal(format!("the change's record could not be encoded: {e}")))?;
        entry.agent = agent.cloned();
        entry.human = human.cloned();
        entry.by = by.cloned();
        self.audit
            .record(entry)
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::Internal(format!("the change could not be audited, so it was not made: {e}")))
    }

    /// Registers a human.
    pub async fn add_human(&self, new: NewHuman) -> Result<Human, RegistryError> {
        let human = Human {
            id: random::human_id()?,
            name: check_name(&new.name)?,
            email: check_email(&new.email)?,
            entitlements: parse_scope("entitlements", &new.entitlements)?,
            status: HumanStatus::Active,
            created_at: self.clock.now(),
            roles: check_roles(&new.roles)?,
            external_id: new.external_id.as_deref().map(check_external_id).transpose()?,
            identity: None,
        };
        if self.store.human_by_email(&human.email).await?.is_some() {
            return Err(RegistryError::Conflict(format!("a human with email `{}` already exists", human.email)));
        }
        if let Some(external) = &human.external_id {
            if self.directory.human_by_external_id(external).is_some() {
                return Err(RegistryError::Conflict(format!("a human with external id `{external}` already exists")));
            }
        }
        self.audit_registry(None, RegistryDetails::HumanAdd(human.clone()), None, Some(&human.id)).await?;
        match self.store.insert_human(&human).await {
            Ok(()) => {
                self.directory.put_human(human.clone());
                tracing::info!(human = %human.id, "registered a human");
                Ok(human)
            }
            Err(StoreError::Conflict(_)) => Err(RegistryError::Conflict(format!(
                "a human with email `{}` or external id {:?} already exists",
                human.email, human.external_id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The human who signed in at a trusted identity provider: found by their identity
    /// there, or registered now (audited as `human.add`, with the identity). Their
    /// entitlements are what their groups give now; a change is audited as
    /// `human.entitlements` and takes effect for the next warrant. A new human's email
    /// must not be another human's: an identity provider cannot claim a human an
    /// administrator registered (a `Conflict`).
    pub async fn federated_human(&self, signin: &FederatedSignIn) -> Result<Human, RegistryError> {
        let entitlements = parse_scope("entitlements", &signin.entitlements)?;
        let _one_at_a_time = self.signins.lock().await;
        if let Some(human) = self.store.human_by_identity(&signin.identity).await? {
            if human.entitlements == entitlements {
                return Ok(human);
            }
            let details = RegistryDetails::HumanEntitlements {
                from: human.entitlements.clone(),
                to: entitlements.clone(),
                groups: signin.groups.clone(),
            };
            self.audit_registry(None, details, None, Some(&human.id)).await?;
            if !self.store.set_human_entitlements(&human.id, &entitlements).await? {
                return Err(RegistryError::NotFound { kind: "human", id: human.id.to_string() });
            }
            let human = Human { entitlements, ..human };
            self.directory.put_human(human.clone());
            tracing::info!(human = %human.id, "a signed-in human's entitlements changed with their groups");
            return Ok(human);
        }
        let email = signin.email.as_deref().ok_or_else(|| {
            RegistryError::Invalid("the ID token carries no `email` claim (ask for the `email` scope)".into())
        })?;
        if !signin.email_trusted {
            return Err(RegistryError::Invalid(format!(
                "the ID token's email is not verified (`email_verified` is not true); a provider that never sends \
                 it needs `trust_unverified_email = true` for `{}`",
                signin.identity.issuer
            )));
        }
        let name: String = signin.name.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
        let human = Human {
            id: random::human_id()?,
            name: check_name(&name)?,
            email: check_email(email)?,
            entitlements,
            status: HumanStatus::Active,
            created_at: self.clock.now(),
            roles: BTreeSet::new(),
            external_id: None,
            identity: Some(signin.identity.clone()),
        };
        if self.store.human_by_email(&human.email).await?.is_some() {
            return Err(RegistryError::Conflict(format!(
                "a human with email `{}` already exists and does not sign in at `{}`",
                human.email, signin.identity.issuer
            )));
        }
        self.audit_registry(None, RegistryDetails::HumanAdd(human.clone()), None, Some(&human.id)).await?;
        match self.store.insert_human(&human).await {
            Ok(()) => {
                self.directory.put_human(human.clone());
                tracing::info!(human = %human.id, issuer = %signin.identity.issuer, "registered a signed-in human");
                Ok(human)
            }
            // Two first sign-ins at once: the other one registered them.
            Err(StoreError::Conflict(_)) => {
                self.store.human_by_identity(&signin.identity).await?.ok_or_else(|| {
                    RegistryError::Conflict(format!("a human with email `{}` already exists", human.email))
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One human.
    pub async fn human(&self, id: &str) -> Result<Human, RegistryError> {
        let id = parse_human_id(id)?;
        self.store.get_human(&id).await?.ok_or(RegistryError::NotFound { kind: "human", id: id.to_string() })
    }

    /// Every human.
    pub async fn humans(&self) -> Result<Vec<Human>, RegistryError> {
        Ok(self.store.list_humans().await?)
    }

    /// Disables a human: no new work on their behalf, and they can own no new agents.
    pub async fn disable_human(&self, id: &str, by: Option<&Principal>) -> Result<Human, RegistryError> {
        // Not while a sign-in of theirs reads and writes the same human.
        let _one_at_a_time = self.signins.lock().await;
        let human = self.human(id).await?;
        self.audit_registry(by, RegistryDetails::HumanDisable, None, Some(&human.id)).await?;
        self.store.set_human_status(&human.id, HumanStatus::Disabled).await?;
        // A disabled human's open sessions, of either purpose, are good for nothing more.
        self.store.revoke_sessions(&human.id, self.clock.now()).await?;
        let human = Human { status: HumanStatus::Disabled, ..human };
        self.directory.put_human(human.clone());
        // Their agents are orphans now.
        self.touch_owned(&human.id);
        tracing::info!(human = %human.id, "disabled a human");
        Ok(human)
    }

    /// Enables a disabled human again (audited as `human.enable`): decisions about their
    /// live warrants are allowed again and new work may start on their behalf. Warrants
    /// and sessions revoked meanwhile stay revoked.
    pub async fn enable_human(&self, id: &str, by: Option<&Principal>) -> Result<Human, RegistryError> {
        let _one_at_a_time = self.signins.lock().await;
        let human = self.human(id).await?;
        if human.is_active() {
            return Ok(human);
        }
        self.audit_registry(by, RegistryDetails::HumanEnable, None, Some(&human.id)).await?;
        self.store.set_human_status(&human.id, HumanStatus::Active).await?;
        let human = Human { status: HumanStatus::Active, ..human };
        self.directory.put_human(human.clone());
        // Their agents are no longer orphans.
        self.touch_owned(&human.id);
        tracing::info!(human = %human.id, "enabled a human");
        Ok(human)
    }

    /// Has governance look again at every agent `owner` owns (their owner's status changed).
    fn touch_owned(&self, owner: &HumanId) {
        let owned = self.directory.agents().into_iter().filter(|a| a.owner == *owner).map(|a| a.id.clone());
        self.governance.touch(owned.collect::<Vec<_>>());
    }

    /// Replaces a human's roles (audited as `human.roles`, with the roles before and
    /// after). Takes effect for the next decision about them.
    pub async fn set_human_roles(&self, id: &str, roles: &[String]) -> Result<Human, RegistryError> {
        let roles = check_roles(roles)?;
        let human = self.human(id).await?;
        let details = RegistryDetails::HumanRoles { from: human.roles.clone(), to: roles.clone() };
        self.audit_registry(None, details, None, Some(&human.id)).await?;
        if !self.store.set_human_roles(&human.id, &roles).await? {
            return Err(RegistryError::NotFound { kind: "human", id: human.id.to_string() });
        }
        let human = Human { roles, ..human };
        self.directory.put_human(human.clone());
        tracing::info!(human = %human.id, "set a human's roles");
        Ok(human)
    }

    /// Opens a session for an active human: a signed token to present as the
    /// `subject_token` of a token exchange, and good for nothing else. It is recorded, so
    /// revoking or disabling the human revokes it.
    pub async fn open_session(&self, id: &str) -> Result<Session, RegistryError> {
        self.open_human_session(id, SessionPurpose::Delegation).await
    }

    /// Opens an approver session for an active human: a short-lived token with which
    /// they decide their own approvals and attest their agents. It is never accepted as
    /// the subject of a token exchange, and a delegation session is never accepted in its
    /// place: the credential an agent holds cannot approve the agent's own requests.
    pub async fn open_approver_session(&self, id: &str) -> Result<Session, RegistryError> {
        self.open_human_session(id, SessionPurpose::Approval).await
    }

    async fn open_human_session(&self, id: &str, purpose: SessionPurpose) -> Result<Session, RegistryError> {
        let human = self.human(id).await?;
        if !human.is_active() {
            return Err(RegistryError::Conflict(format!("human `{}` is disabled", human.id)));
        }
        let now = self.clock.now();
        let ttl = match purpose {
            SessionPurpose::Approval => self.sessions.approver_ttl,
            _ => self.sessions.session_ttl,
        };
        let claims = SessionClaims {
            iss: self.sessions.issuer.clone(),
            sub: human.id.clone(),
            aud: self.sessions.issuer.clone(),
            exp: now.plus(ttl),
            iat: now,
            nbf: now,
            jti: hex_id(random::bytes::<16>()?),
        };
        let ring = self.keys.ring().map_err(|e| RegistryError::Internal(e.to_string()))?;
        let token = match purpose {
            SessionPurpose::Approval => sign_approver(ring.active(), &claims),
            _ => sign_session(ring.active(), &claims),
        }
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.store
            .record_session(&SessionRecord {
                jti: claims.jti.clone(),
                human: human.id.clone(),
                purpose,
                issued_at: now,
                expires_at: claims.exp,
                revoked_at: None,
            })
            .await?;
        tracing::info!(human = %human.id, purpose = purpose.as_str(), "opened a human session");
        Ok(Session { token, expires_in: ttl })
    }

    /// The active human an approver token speaks for, if it verifies and its session
    /// has not been revoked. A delegation session token is never accepted here.
    pub async fn approver_human(&self, token: &str) -> Option<HumanId> {
        let ring = self.keys.ring().ok()?;
        let claims =
            warrant_token::session::verify_approver(token, ring.as_ref(), &self.sessions.issuer, self.clock.now())
                .ok()?;
        let record = self.store.get_session(&claims.jti).await.ok()??;
        if record.purpose != SessionPurpose::Approval || record.revoked_at.is_some() || record.human != claims.sub {
            return None;
        }
        self.is_active_human(&claims.sub).then_some(claims.sub)
    }

    /// Registers an agent. Its owner must be an existing, active human.
    pub async fn add_agent(&self, new: NewAgent) -> Result<Agent, RegistryError> {
        let owner = parse_human_id(&new.owner)?;
        let owner = self
            .store
            .get_human(&owner)
            .await?
            .ok_or_else(|| RegistryError::Invalid(format!("owner `{owner}` is not a registered human")))?;
        if !owner.is_active() {
            return Err(RegistryError::Invalid(format!("owner `{}` is disabled", owner.id)));
        }
        let (public_key, spiffe_id) = self.credential(new.public_key, new.spiffe_id)?;
        if let Some(id) = &spiffe_id {
            if let Some(other) = self.store.agent_by_spiffe_id(id).await? {
                return Err(RegistryError::Conflict(format!(
                    "agent `{}` is already registered with SPIFFE ID `{id}`",
                    other.id
                )));
            }
        }
        let now = self.clock.now();
        if new.expires_at.is_some_and(|t| t <= now) {
            return Err(RegistryError::Invalid("`expires_at` must be in the future".into()));
        }
        if new.labels.len() > MAX_LABELS
            || new.labels.iter().any(|(k, v)| k.is_empty() || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN)
        {
            return Err(RegistryError::Invalid(format!(
                "`labels`: at most {MAX_LABELS} labels, keys 1 to {MAX_LABEL_LEN} bytes, values at most {MAX_LABEL_LEN}"
            )));
        }
        let max_scope = parse_scope("max_scope", &new.max_scope)?;
        if max_scope.is_empty() {
            return Err(RegistryError::Invalid("`max_scope` must hold at least one permission".into()));
        }
        let agent = Agent {
            id: random::agent_id()?,
            name: check_name(&new.name)?,
            owner: owner.id,
            mode: new.mode,
            max_scope,
            public_key,
            spiffe_id,
            status: AgentStatus::Active,
            expires_at: new.expires_at,
            labels: new.labels,
            created_at: now,
        };
        self.audit_registry(None, RegistryDetails::AgentAdd(agent.clone()), Some(&agent.id), Some(&agent.owner))
            .await?;
        self.store.insert_agent(&agent).await.map_err(|e| match e {
            // Another registration with the same SPIFFE ID won the race.
            StoreError::Conflict(why) => RegistryError::Conflict(why),
            e => RegistryError::Store(e),
        })?;
        self.directory.put_agent(agent.clone());
        self.governance.touch([agent.id.clone()]);
        tracing::info!(agent = %agent.id, owner = %agent.owner, mode = %agent.mode, "registered an agent");
        Ok(agent)
    }

    /// How a new agent authenticates: exactly one of an Ed25519 public key and a SPIFFE
    /// ID of a trusted trust domain.
    fn credential(
        &self,
        key: Option<PublicJwk>,
        spiffe_id: Option<String>,
    ) -> Result<(Option<PublicJwk>, Option<String>), RegistryError> {
        match (key, spiffe_id) {
            (Some(key), None) => {
                warrant_token::keys::verifying_key(&key)
                    .map_err(|e| RegistryError::Invalid(format!("`public_key`: {e}")))?;
                Ok((Some(key), None))
            }
            (None, Some(id)) => {
                let id = SpiffeId::parse(&id).map_err(|e| RegistryError::Invalid(format!("`spiffe_id`: {e}")))?;
                if !self.spiffe.trusts(id.trust_domain()) {
                    return Err(RegistryError::Invalid(format!(
                        "`spiffe_id`: trust domain `{}` is not trusted; add it to `[[federation.spiffe]]`",
                        id.trust_domain()
                    )));
                }
                Ok((None, Some(id.to_string())))
            }
            _ => Err(RegistryError::Invalid(
                "register an agent with exactly one of `public_key` (its Ed25519 key) and `spiffe_id`".into(),
            )),
        }
    }

    /// One agent.
    pub async fn agent(&self, id: &str) -> Result<Agent, RegistryError> {
        let id = parse_agent_id(id)?;
        self.store.get_agent(&id).await?.ok_or(RegistryError::NotFound { kind: "agent", id: id.to_string() })
    }

    /// Every agent, optionally only one owner's.
    pub async fn agents(&self, owner: Option<&str>) -> Result<Vec<Agent>, RegistryError> {
        let owner = owner.map(parse_human_id).transpose()?;
        Ok(self.store.list_agents(owner.as_ref()).await?)
    }

    /// Hands an agent to another owner, an existing, active human (audited as
    /// `agent.owner`): an orphan (its owner disabled) is fixed without retiring it. A
    /// retired agent stays retired. Warrants already issued keep the owner they named;
    /// the agent's next warrants name the new one.
    pub async fn transfer_agent(&self, id: &str, owner: &str) -> Result<Agent, RegistryError> {
        let agent = self.agent(id).await?;
        let owner = parse_human_id(owner)?;
        let owner = self
            .store
            .get_human(&owner)
            .await?
            .ok_or_else(|| RegistryError::Invalid(format!("owner `{owner}` is not a registered human")))?;
        if !owner.is_active() {
            return Err(RegistryError::Invalid(format!("owner `{}` is disabled", owner.id)));
        }
        if agent.status == AgentStatus::Retired {
            return Err(RegistryError::Conflict(format!("agent `{}` is retired; retirement is final", agent.id)));
        }
        if agent.owner == owner.id {
            return Ok(agent);
        }
        let details = RegistryDetails::AgentOwner { from: agent.owner.clone(), to: owner.id.clone() };
        self.audit_registry(None, details, Some(&agent.id), Some(&owner.id)).await?;
        if !self.store.set_agent_owner(&agent.id, &owner.id).await? {
            return Err(RegistryError::NotFound { kind: "agent", id: agent.id.to_string() });
        }
        let agent = Agent { owner: owner.id, ..agent };
        self.directory.put_agent(agent.clone());
        self.governance.touch([agent.id.clone()]);
        tracing::info!(agent = %agent.id, owner = %agent.owner, "handed an agent to another owner");
        Ok(agent)
    }

    /// Suspends, resumes or retires an agent. Retirement is final.
    pub async fn transition_agent(
        &self,
        id: &str,
        change: AgentTransition,
        by: Option<&Principal>,
    ) -> Result<Agent, RegistryError> {
        let agent = self.agent(id).await?;
        let next = match (agent.status, change) {
            (AgentStatus::Retired, AgentTransition::Retire) => AgentStatus::Retired,
            (AgentStatus::Retired, _) => {
                return Err(RegistryError::Conflict(format!("agent `{}` is retired; retirement is final", agent.id)))
            }
            (_, AgentTransition::Suspend) => AgentStatus::Suspended,
            (_, AgentTransition::Resume) => AgentStatus::Active,
            (_, AgentTransition::Retire) => AgentStatus::Retired,
        };
        self.audit_registry(by, RegistryDetails::AgentStatus(next), Some(&agent.id), Some(&agent.owner)).await?;
        self.store.set_agent_status(&agent.id, next).await?;
        let agent = Agent { status: next, ..agent };
        self.directory.put_agent(agent.clone());
        self.governance.touch([agent.id.clone()]);
        if change == AgentTransition::Resume {
            // The owner reviewed it: trust is raised to the resume floor, so the agent's
            // next request does not quarantine it again at once.
            self.guardrails.resumed(&agent.id, self.clock.now());
        }
        tracing::info!(agent = %agent.id, status = next.as_str(), "changed an agent's status");
        Ok(agent)
    }
}

impl Registry {
    /// The owner announced a deploy of agent `id` (a new tool version, named `version`):
    /// for the guardrails' deploy grace period its new actions and resource prefixes that
    /// are not sensitive cost it no trust. Audited before it takes effect; returns the
    /// agent and until when the deploy's novelty is expected.
    pub async fn announce_deploy(
        &self,
        id: &str,
        version: &str,
        by: Option<&Principal>,
    ) -> Result<(Agent, UnixTime), RegistryError> {
        let agent = self.agent(id).await?;
        let version = version.trim();
        if version.is_empty() || version.chars().count() > 100 || version.chars().any(char::is_control) {
            return Err(RegistryError::Invalid(
                "a deploy's `version` must be 1 to 100 characters with no control characters".into(),
            ));
        }
        let now = self.clock.now();
        let until = now.plus(self.guardrails.config().baseline.deploy_grace_secs);
        let details = RegistryDetails::AgentDeploy { version: version.to_owned(), until };
        self.audit_registry(by, details, Some(&agent.id), Some(&agent.owner)).await?;
        self.guardrails.announce_deploy(&agent.id, version, now);
        tracing::info!(agent = %agent.id, version, "a deploy was announced");
        Ok((agent, until))
    }
}

fn hex_id(bytes: [u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
