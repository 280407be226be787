//! Revocation: of a warrant (with its descendants), an agent (suspended, and every
//! warrant whose chain contains it), a task (also how a task completes) or a human
//! (every warrant on their behalf).
//!
//! A revocation is written to the store, then to the in-memory index the decision path
//! reads, and only then acknowledged: the next decision on this node denies.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use warrant_core::audit::details::RevocationDetails;
use warrant_core::audit::AuditEntry;
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_store::{RevocationKind, RevocationRecord, Store, StoreError, TaskRecord, WarrantRecord};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{Classify, ErrorKind};
use crate::events::{EventBus, EventKind};
use crate::keys::KeyManager;
use crate::random;

/// Why a revocation or task operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The id is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No such warrant, agent, task or human.
    #[error("no {kind} `{id}`")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed (the cause is kept); the detail is for logs.
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    /// Storage or audit failed; nothing was acknowledged. The detail is for logs.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl Classify for RevokeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RevokeError::Invalid(_) => ErrorKind::Invalid,
            RevokeError::NotFound { .. } => ErrorKind::NotFound,
            RevokeError::Forbidden(_) => ErrorKind::Forbidden,
            RevokeError::Store(_) | RevokeError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<StoreError> for RevokeError {
    fn from(e: StoreError) -> Self {
        RevokeError::Store(e)
    }
}

/// What a revocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The revocation's id.
    pub id: String,
    /// How many live warrants it ended.
    pub revoked_warrants: usize,
}

/// The revoked warrants and ended tasks the decision path checks, in memory.
#[derive(Debug, Default)]
pub struct RevocationIndex {
    warrants: RwLock<HashMap<WarrantId, Arc<str>>>,
    tasks: RwLock<HashSet<TaskId>>,
}

impl RevocationIndex {
    /// Loads the unexpired revoked warrants and the ended tasks.
    pub async fn load(store: &dyn Store, now: UnixTime) -> Result<Self, StoreError> {
        let warrants = store.revoked_warrants(now).await?.into_iter().map(|jti| (jti, Arc::from("revoked"))).collect();
        let tasks = store.ended_tasks().await?.into_iter().collect();
        Ok(RevocationIndex { warrants: RwLock::new(warrants), tasks: RwLock::new(tasks) })
    }

    /// Why `jti` was revoked, if it was. A poisoned lock counts as revoked (fail closed).
    pub fn warrant(&self, jti: &WarrantId) -> Option<Arc<str>> {
        match self.warrants.read() {
            Ok(m) => m.get(jti).cloned(),
            Err(_) => Some(Arc::from("the revocation index is unavailable")),
        }
    }

    /// Whether `task` has ended. A poisoned lock counts as ended (fail closed).
    pub fn task_ended(&self, task: &TaskId) -> bool {
        self.tasks.read().map(|s| s.contains(task)).unwrap_or(true)
    }

    pub(crate) fn add(&self, jtis: impl IntoIterator<Item = WarrantId>, why: &str) {
        let why: Arc<str> = Arc::from(why);
        if let Ok(mut m) = self.warrants.write() {
            for jti in jtis {
                m.entry(jti).or_insert_with(|| Arc::clone(&why));
            }
        }
    }

    pub(crate) fn end_task(&self, task: TaskId) {
        if let Ok(mut s) = self.tasks.write() {
            s.insert(task);
        }
    }

    /// How many revoked warrants are tracked.
    pub fn len(&self) -> usize {
        self.warrants.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no warrant is tracked as revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The revocation service: revokes warrants, agents, tasks and humans, completes tasks,
/// and answers whether a warrant or task is still in force (from memory, for the
/// decision path, or from the store, for reports).
pub struct Revocation {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    issuer: String,
    index: RevocationIndex,
    directory: Arc<Directory>,
    keys: Arc<KeyManager>,
    audit: Arc<Audit>,
    events: Arc<EventBus>,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation").field("tracked", &self.index.len()).finish_non_exhaustive()
    }
}

/// What the revocation service is built from.
pub(crate) struct RevocationParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub issuer: String,
    pub directory: Arc<Directory>,
    pub keys: Arc<KeyManager>,
    pub audit: Arc<Audit>,
    pub events: Arc<EventBus>,
}

/// A warrant's state in a task tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWarrant {
    /// The record.
    pub record: WarrantRecord,
    /// Active, expired or revoked.
    pub state: WarrantState,
}

/// A task and its warrants.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The task.
    pub task: TaskRecord,
    /// Whether it has ended (completed or revoked).
    pub ended: bool,
    /// Its warrants in issuance order (the tree is given by `parent`).
    pub warrants: Vec<TaskWarrant>,
}

impl Revocation {
    /// Loads the revocations in force and builds the service.
    pub(crate) async fn load(parts: RevocationParts) -> Result<Self, StoreError> {
        let RevocationParts { store, clock, issuer, directory, keys, audit, events } = parts;
        let index = RevocationIndex::load(store.as_ref(), clock.now()).await?;
        Ok(Revocation { store, clock, issuer, index, directory, keys, audit, events })
    }

    /// Applies a revocation another server made (read from the store): the warrants it
    /// ended go into the in-memory index and, for a task, the task ends.
    pub(crate) fn apply_recorded(&self, revocation: &RevocationRecord, ended: Vec<WarrantId>) {
        let why = format!("revoked ({} `{}`): {}", revocation.kind.as_str(), revocation.target, revocation.reason);
        self.index.add(ended, &why);
        if revocation.kind == RevocationKind::Task {
            match TaskId::parse(&revocation.target) {
                Ok(task) => self.index.end_task(task),
                Err(e) => {
                    tracing::error!(revocation = %revocation.id, error = %e, "a stored task revocation names no task")
                }
            }
        }
    }

    /// Loads every unexpired revoked warrant and every ended task into the in-memory
    /// index again (for a server that missed changes another server made).
    pub(crate) async fn reload_index(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let fresh = RevocationIndex::load(self.store.as_ref(), now).await?;
        let warrants = fresh.warrants.into_inner().unwrap_or_default();
        self.index.add(warrants.into_keys(), "revoked");
        for task in fresh.tasks.into_inner().unwrap_or_default() {
            self.index.end_task(task);
        }
        Ok(())
    }

    /// How many revoked warrants the in-memory index tracks.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// How many recorded warrants are unexpired now (revoked ones included).
    pub async fn live_warrants(&self) -> Result<u64, StoreError> {
        self.store.count_live_warrants(self.clock.now()).await
    }

    /// Why `jti` was revoked, if it was (from memory; fail closed).
    pub fn warrant_revoked(&self, jti: &WarrantId) -> Option<Arc<str>> {
        self.index.warrant(jti)
    }

    /// Whether `task` has ended (from memory; fail closed).
    pub fn task_ended(&self, task: &TaskId) -> bool {
        self.index.task_ended(task)
    }

    /// Revokes `id` of `kind`, with everything derived from it. Effective for the next
    /// decision on this node once this returns.
    pub async fn revoke(&self, kind: RevocationKind, id: &str, reason: &str) -> Result<Revoked, RevokeError> {
        self.revoke_by(kind, id, reason, None).await
    }

    /// [`Revocation::revoke`] on someone's request: the audit record names `by`.
    pub async fn revoke_by(
        &self,
        kind: RevocationKind,
        id: &str,
        reason: &str,
        by: Option<&warrant_core::Principal>,
    ) -> Result<Revoked, RevokeError> {
        let now = self.clock.now();
        let invalid = |e: &dyn std::fmt::Display| RevokeError::Invalid(e.to_string());
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(RevokeError::Invalid("`reason` must be 1 to 500 characters".into()));
        }
        // Existence first, for a clear answer; what the revocation ends is chosen in the
        // store's transaction, so a warrant recorded concurrently is either refused there
        // or ended here.
        let task = match kind {
            RevocationKind::Warrant => {
                let jti = WarrantId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_warrant(&jti).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "warrant", id: id.into() });
                }
                None
            }
            RevocationKind::Agent => {
                let agent_id = AgentId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_agent(&agent_id).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "agent", id: id.into() });
                }
                None
            }
            RevocationKind::Task => {
                let task = TaskId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_task(&task).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "task", id: id.into() });
                }
                Some(task)
            }
            RevocationKind::Human => {
                let human = HumanId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_human(&human).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "human", id: id.into() });
                }
                None
            }
        };
        let revocation = RevocationRecord {
            id: format!(
                "rev_{}",
                hex::encode(random::bytes::<12>().map_err(|e| RevokeError::Internal(e.to_string()))?)
            ),
            kind,
            target: id.to_owned(),
            reason: reason.to_owned(),
            at: now,
        };
        let targets = self.store.revoke(&revocation, now).await?;
        if kind == RevocationKind::Agent {
            // The store suspended it in the revocation's transaction; the directory follows.
            if let Some(agent) = self.store.get_agent(&AgentId::parse(id).map_err(|e| invalid(&e))?).await? {
                self.directory.put_agent(agent);
            }
        }
        // Warrants an earlier revocation already ended are covered again, not ended again.
        // Sharing the database, the change feed may have put this revocation's warrants in
        // the index already: the store says which it ended.
        let ended = if self.store.shared() {
            self.store.revocation(&revocation.id).await?.map_or(0, |(_, ended)| ended.len())
        } else {
            targets.iter().filter(|(jti, _)| self.index.warrant(jti).is_none()).count()
        };
        let why = format!("revoked ({} `{}`): {}", kind.as_str(), id, reason);
        self.index.add(targets.iter().map(|(jti, _)| jti.clone()), &why);
        if let Some(task) = task {
            self.index.end_task(task);
        }
        tracing::info!(revocation = %revocation.id, kind = kind.as_str(), target = id, warrants = targets.len(), "revoked");
        let event_agent = AgentId::parse(id).ok();
        self.events.publish_with(EventKind::Revocation, now, event_agent.as_ref(), || {
            serde_json::json!({
                "revocation": revocation.id, "kind": kind.as_str(), "target": id, "reason": reason,
                "revoked_warrants": targets.len(),
            })
        });
        // The revocation is in force whatever happens next (failing closed); a missing
        // audit record is still reported as a failure.
        let details = RevocationDetails {
            revocation: revocation.id.clone(),
            kind,
            target: id.to_owned(),
            reason: reason.to_owned(),
            revoked_warrants: targets.iter().map(|(jti, _)| jti.clone()).collect(),
        };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| {
            RevokeError::Internal(format!("the revocation is in force but its record could not be encoded: {e}"))
        })?;
        match kind {
            RevocationKind::Warrant => entry.warrant = WarrantId::parse(id).ok(),
            RevocationKind::Agent => entry.agent = AgentId::parse(id).ok(),
            RevocationKind::Task => entry.task = TaskId::parse(id).ok(),
            RevocationKind::Human => entry.human = HumanId::parse(id).ok(),
        }
        entry.by = by.cloned();
        self.audit
            .record(entry)
            .await
            .map_err(|e| RevokeError::Internal(format!("the revocation is in force but could not be audited: {e}")))?;
        Ok(Revoked { id: revocation.id, revoked_warrants: ended })
    }

    /// A task with every warrant of it and each one's state.
    pub async fn task(&self, id: &str) -> Result<TaskView, RevokeError> {
        let task_id = TaskId::parse(id).map_err(|e| RevokeError::Invalid(e.to_string()))?;
        let task = self
            .store
            .get_task(&task_id)
            .await?
            .ok_or_else(|| RevokeError::NotFound { kind: "task", id: id.into() })?;
        let now = self.clock.now();
        let warrants = self
            .store
            .task_warrants(&task_id)
            .await?
            .into_iter()
            .map(|record| {
                let state = if self.index.warrant(&record.jti).is_some() {
                    WarrantState::Revoked
                } else if record.expires_at <= now {
                    WarrantState::Expired
                } else {
                    WarrantState::Active
                };
                TaskWarrant { record, state }
            })
            .collect();
        Ok(TaskView { ended: self.index.task_ended(&task_id), task, warrants })
    }
}

/// A live warrant, as a kill switch or a delegation tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWarrant {
    /// Its id.
    pub jti: WarrantId,
    /// The warrant it was delegated from; `None` at a task's root.
    pub parent: Option<WarrantId>,
    /// The agent holding it.
    pub agent: AgentId,
    /// Its task.
    pub task: TaskId,
    /// The human it acts for.
    pub human: HumanId,
    /// Its scope.
    pub scope: warrant_core::Scope,
    /// When it expires.
    pub expires_at: UnixTime,
}

impl From<WarrantRecord> for LiveWarrant {
    fn from(w: WarrantRecord) -> Self {
        LiveWarrant {
            jti: w.jti,
            parent: w.parent,
            agent: w.agent,
            task: w.task,
            human: w.human,
            scope: w.scope,
            expires_at: w.expires_at,
        }
    }
}

impl Revocation {
    /// The live warrants (not expired, not revoked) a revocation of `id` of `kind` would
    /// end now: what a kill switch names before it is pulled. A warrant's descendants are
    /// counted with it.
    pub async fn live_under(&self, kind: RevocationKind, id: &str) -> Result<Vec<LiveWarrant>, RevokeError> {
        let now = self.clock.now();
        let invalid = |e: &dyn std::fmt::Display| RevokeError::Invalid(e.to_string());
        let found = match kind {
            RevocationKind::Agent => {
                let agent = AgentId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_agent(&agent).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "agent", id: id.into() });
                }
                self.store.live_warrants_with_agent(&agent, now).await?
            }
            RevocationKind::Human => {
                let human = HumanId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_human(&human).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "human", id: id.into() });
                }
                self.store.live_warrants_of_human(&human, now).await?
            }
            RevocationKind::Task => {
                let task = TaskId::parse(id).map_err(|e| invalid(&e))?;
                if self.store.get_task(&task).await?.is_none() {
                    return Err(RevokeError::NotFound { kind: "task", id: id.into() });
                }
                self.store.task_warrants(&task).await?
            }
            RevocationKind::Warrant => {
                let jti = WarrantId::parse(id).map_err(|e| invalid(&e))?;
                let root = self
                    .store
                    .get_warrant(&jti)
                    .await?
                    .ok_or_else(|| RevokeError::NotFound { kind: "warrant", id: id.into() })?;
                let mut out = vec![root];
                let mut next = 0;
                while let Some(parent) = out.get(next).map(|w| w.jti.clone()) {
                    let children = self.store.child_warrants(&parent).await?;
                    out.extend(children);
                    next += 1;
                }
                out
            }
        };
        Ok(found
            .into_iter()
            .filter(|w| w.expires_at > now && self.index.warrant(&w.jti).is_none())
            .map(LiveWarrant::from)
            .collect())
    }
}

/// Who asks to complete a task.
#[derive(Debug, Clone, Copy)]
pub enum Completer<'a> {
    /// An administrator.
    Admin,
    /// The agent holding the task's root warrant, presenting it.
    RootWarrant(&'a str),
}

impl Revocation {
    /// Completes a task: ends it and every warrant in it, so access closes when the work
    /// is done rather than when a timer runs out.
    pub async fn complete_task(&self, id: &str, by: Completer<'_>) -> Result<Revoked, RevokeError> {
        let task = TaskId::parse(id).map_err(|e| RevokeError::Invalid(e.to_string()))?;
        let who = match by {
            Completer::Admin => "an administrator".to_owned(),
            Completer::RootWarrant(token) => {
                let ring = self.keys.ring().map_err(|e| RevokeError::Internal(e.to_string()))?;
                let claims =
                    warrant_token::warrant::verify_warrant(token, ring.as_ref(), &self.issuer, self.clock.now())
                        .map_err(|e| RevokeError::Forbidden(format!("the bearer token is not a valid warrant: {e}")))?;
                if claims.task.id != task || claims.parent.is_some() {
                    return Err(RevokeError::Forbidden(format!(
                        "only the holder of task `{task}`'s root warrant (or an administrator) may complete it"
                    )));
                }
                if let Some(why) = self.index.warrant(&claims.jti) {
                    return Err(RevokeError::Forbidden(format!("the root warrant has been {why}")));
                }
                if claims.cnf.is_some() {
                    // No proof of possession comes with a bearer token here: a stolen bound
                    // warrant must not be able to end its task.
                    return Err(RevokeError::Forbidden(
                        "a DPoP-bound root warrant cannot complete its task as a bearer token; its holder revokes it at `/oauth2/revoke`, or an administrator completes the task".into(),
                    ));
                }
                format!("agent `{}` holding the root warrant", claims.client_id)
            }
        };
        self.revoke(RevocationKind::Task, task.as_str(), &format!("task completed by {who}")).await
    }
}

/// Where a recorded warrant stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarrantState {
    /// Unexpired and not revoked: decisions go on to the identity, scope and policy checks.
    Active,
    /// Past its expiry, never revoked.
    Expired,
    /// Revoked (directly, through its task, an agent of its chain, its human or an
    /// ancestor), whether or not it has expired since.
    Revoked,
}

impl WarrantState {
    /// The wire name: `active`, `expired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarrantState::Active => "active",
            WarrantState::Expired => "expired",
            WarrantState::Revoked => "revoked",
        }
    }
}

/// A recorded warrant, its state and the revocation that ended it, if any.
#[derive(Debug, Clone)]
pub struct WarrantStatus {
    /// The warrant as recorded at issuance.
    pub record: WarrantRecord,
    /// Its state now.
    pub state: WarrantState,
    /// The revocation that ended it (`None` unless `state` is `Revoked`). When the
    /// in-memory index knows of a revocation the store cannot show, the state is still
    /// `Revoked` (fail closed) and this is `None`.
    pub revocation: Option<RevocationRecord>,
}

impl Revocation {
    /// The state of the warrant `jti`: revoked (with its revocation), expired or active.
    pub async fn warrant_status(&self, jti: &str) -> Result<WarrantStatus, RevokeError> {
        let id = WarrantId::parse(jti).map_err(|e| RevokeError::Invalid(e.to_string()))?;
        let record = self
            .store
            .get_warrant(&id)
            .await?
            .ok_or_else(|| RevokeError::NotFound { kind: "warrant", id: jti.into() })?;
        let revocation = self.store.revocation_of(&id).await?;
        let revoked = revocation.is_some() || self.index.warrant(&id).is_some() || self.index.task_ended(&record.task);
        let state = if revoked {
            WarrantState::Revoked
        } else if record.expires_at <= self.clock.now() {
            WarrantState::Expired
        } else {
            WarrantState::Active
        };
        Ok(WarrantStatus { record, state, revocation })
    }
}
