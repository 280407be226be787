//! The policy set in force: loaded from `<data>/policies/*.cedar`, validated before it
//! takes effect (an invalid set never replaces a valid one), every version stored and
//! referenced by the decisions it made, reloaded without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use warrant_core::audit::details::PolicyDetails;
use warrant_core::audit::AuditEntry;
use warrant_core::UnixTime;
use warrant_policy::schema::{BASE_SCHEMA, SCHEMA_FILE};
use warrant_policy::{CompiledPolicies, PolicyError, PolicyFile, DEFAULT_POLICIES, DEFAULT_POLICY_FILE};
use warrant_store::{PolicyVersionRecord, Store, StoreError};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{Classify, ErrorKind};
use crate::govern::Governance;

/// The set in force and its stored version id.
#[derive(Debug)]
pub struct ActivePolicies {
    /// The compiled set.
    pub compiled: CompiledPolicies,
    /// Its id in the store's version history.
    pub version: i64,
}

/// Why the policy set could not be loaded or reloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// The files are not a valid set; the previous set stays in force.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The directory could not be prepared.
    #[error("cannot prepare the policy directory `{path}`: {message}")]
    Dir {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be audited, so it did not take effect.
    #[error("the policy change could not be audited, so it did not take effect: {0}")]
    Audit(String),
}

impl Classify for PolicyLoadError {
    fn kind(&self) -> ErrorKind {
        match self {
            PolicyLoadError::Policy(_) => ErrorKind::Invalid,
            PolicyLoadError::Audit(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// One stored version of the policy set, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// Its id, increasing.
    pub id: i64,
    /// Its fingerprint.
    pub hash: String,
    /// When it was loaded.
    pub loaded_at: UnixTime,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The files hold the set already in force.
    Unchanged(i64),
    /// A new set is in force.
    Activated(i64),
}

/// A validated set read from the policy directory, not yet in force.
#[derive(Debug)]
pub enum Staged {
    /// The files hold the set already in force (its version).
    Unchanged(i64),
    /// A new, stored version, ready to activate.
    New(Box<ActivePolicies>),
}

/// The policy service: the set in force (swapped atomically on reload), its
/// validation, versions and audited reloads. Governance is told of every change (it
/// replays recent decisions on the new set).
pub struct Policy {
    dir: Option<PathBuf>,
    current: RwLock<Arc<ActivePolicies>>,
    fingerprint: Mutex<Vec<(String, u64, Option<std::time::SystemTime>)>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Arc<Audit>,
    governance: Arc<Governance>,
    /// Held while this server switches the set in force (a reload, or applying the one
    /// another server activated), so the change feed never applies a reload of this
    /// server's half-way.
    switching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Names, sizes and modification times of the policy files: cheap change detection.
fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let relevant = name.ends_with(".cedar") || name == SCHEMA_FILE;
                    let meta = e.metadata().ok()?;
                    relevant.then(|| (name, meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn compile_dir(dir: &Path) -> Result<CompiledPolicies, PolicyError> {
    let (files, schema) = warrant_policy::load::read_dir(dir)?;
    CompiledPolicies::compile(files, schema.as_deref().unwrap_or(BASE_SCHEMA))
}

/// The stored `version`, compiled, with the fingerprint it was stored with.
async fn compile_stored(store: &dyn Store, version: i64) -> Result<(CompiledPolicies, String), PolicyLoadError> {
    let stored = store
        .policy_version(version)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("policy version {version} is in force but not stored")))?;
    let compiled = CompiledPolicies::compile(
        vec![PolicyFile { name: format!("version-{}.cedar", stored.id), text: stored.policies }],
        &stored.schema,
    )?;
    Ok((compiled, stored.hash))
}

async fn save(store: &dyn Store, compiled: &CompiledPolicies, now: UnixTime) -> Result<i64, StoreError> {
    store
        .save_policy_version(&PolicyVersionRecord {
            id: 0,
            hash: compiled.hash().to_owned(),
            policies: compiled.source_text(),
            schema: compiled.base_schema().to_owned(),
            loaded_at: now,
        })
        .await
}

impl Policy {
    /// Loads the policy set. With a directory: creates it with the default set when it
    /// does not exist; when its files are invalid, falls back to the newest stored
    /// version (logged loudly) and fails only when there is none. Without a directory:
    /// the default set. The set in force at start is audited.
    pub(crate) async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        dir: Option<PathBuf>,
        audit: Arc<Audit>,
        governance: Arc<Governance>,
    ) -> Result<Self, PolicyLoadError> {
        let now = clock.now();
        let policy = Self::load(store.as_ref(), dir, now).await?;
        let (dir, current, fingerprint) = policy;
        let policy = Policy {
            dir,
            current,
            fingerprint,
            store,
            clock,
            audit,
            governance,
            switching: tokio::sync::Mutex::new(()),
        };
        // The set in force at start is evidence too: which policies decided from now on.
        if let Some(current) = policy.current() {
            let details = PolicyDetails::InForceAtStart {
                version: current.version,
                hash: current.compiled.hash().to_owned(),
                policies: current.compiled.policy_ids().to_vec(),
            };
            if let Err(e) = policy.record(now, details).await {
                tracing::error!(error = %e, "cannot audit the policy set in force at start");
            }
        }
        Ok(policy)
    }

    async fn load(
        store: &dyn Store,
        dir: Option<PathBuf>,
        now: UnixTime,
    ) -> Result<
        (Option<PathBuf>, RwLock<Arc<ActivePolicies>>, Mutex<Vec<(String, u64, Option<std::time::SystemTime>)>>),
        PolicyLoadError,
    > {
        // Servers sharing a database put in force the version they share, once there is
        // one; this server's files take effect only when they change (a reload).
        if let Some(version) = store.active_policy().await? {
            let (compiled, _) = compile_stored(store, version).await?;
            tracing::info!(
                version,
                policies = compiled.policy_ids().len(),
                "policy set in force: the version the database's servers share"
            );
            let fingerprint = dir.as_deref().map(fingerprint).unwrap_or_default();
            return Ok((dir, RwLock::new(Arc::new(ActivePolicies { compiled, version })), Mutex::new(fingerprint)));
        }
        let compiled = match &dir {
            None => CompiledPolicies::compile(
                vec![PolicyFile { name: DEFAULT_POLICY_FILE.into(), text: DEFAULT_POLICIES.into() }],
                BASE_SCHEMA,
            )?,
            Some(dir) => {
                if !dir.exists() {
                    let err = |e: std::io::Error| PolicyLoadError::Dir {
                        path: dir.display().to_string(),
                        message: e.to_string(),
                    };
                    std::fs::create_dir_all(dir).map_err(err)?;
                    std::fs::write(dir.join(DEFAULT_POLICY_FILE), DEFAULT_POLICIES).map_err(err)?;
                    tracing::info!(dir = %dir.display(), "wrote the default policy set");
                }
                match compile_dir(dir) {
                    Ok(compiled) => compiled,
                    Err(e) => {
                        let Some(last) = store.policy_versions().await?.last().cloned() else {
                            return Err(e.into());
                        };
                        tracing::error!(error = %e, version = last.id, "the policy files are invalid; using the last valid stored version until they are fixed");
                        let stored = store.policy_version(last.id).await?.ok_or(PolicyLoadError::Policy(e))?;
                        CompiledPolicies::compile(
                            vec![PolicyFile { name: format!("version-{}.cedar", stored.id), text: stored.policies }],
                            &stored.schema,
                        )?
                    }
                }
            }
        };
        let version = save(store, &compiled, now).await?;
        // The first server on a shared database makes its set the one they share.
        store.activate_policy(version).await?;
        tracing::info!(version, policies = compiled.policy_ids().len(), hash = compiled.hash(), "policy set in force");
        let fingerprint = dir.as_deref().map(fingerprint).unwrap_or_default();
        Ok((dir, RwLock::new(Arc::new(ActivePolicies { compiled, version })), Mutex::new(fingerprint)))
    }

    /// The set in force. `None` only if a panic poisoned the lock (callers deny).
    pub fn current(&self) -> Option<Arc<ActivePolicies>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }

    /// The policy directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the files changed since the last load (cheap: names, sizes, mtimes).
    pub fn changed_on_disk(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        let now = fingerprint(dir);
        self.fingerprint.lock().map(|f| *f != now).unwrap_or(true)
    }

    /// Reads and validates the files' set and, when it differs from the set in force,
    /// stores it as a version. It does not take effect until [`activate`](Self::activate).
    async fn stage(&self, now: UnixTime) -> Result<Staged, PolicyLoadError> {
        let store = self.store.as_ref();
        let unchanged = || Staged::Unchanged(self.current().map(|c| c.version).unwrap_or(0));
        let Some(dir) = &self.dir else { return Ok(unchanged()) };
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fingerprint(dir);
        }
        let compiled = compile_dir(dir)?;
        if self.current().is_some_and(|c| c.compiled.hash() == compiled.hash()) {
            return Ok(unchanged());
        }
        let version = save(store, &compiled, now).await?;
        // The files hold a stored version already in force (one put in force from the
        // store, whose compiled form names its source differently).
        if self.current().is_some_and(|c| c.version == version) {
            return Ok(unchanged());
        }
        Ok(Staged::New(Box::new(ActivePolicies { compiled, version })))
    }

    /// Forgets what the files looked like, so the next check reloads them (after a change
    /// that could not take effect).
    fn forget_files(&self) {
        if let Ok(mut f) = self.fingerprint.lock() {
            f.clear();
        }
    }

    /// Puts a staged set in force.
    fn activate(&self, staged: Box<ActivePolicies>) -> Reloaded {
        let (version, ids) = (staged.version, staged.compiled.policy_ids().len());
        if let Ok(mut current) = self.current.write() {
            *current = Arc::from(staged);
        }
        tracing::info!(version, policies = ids, "activated a new policy set");
        Reloaded::Activated(version)
    }

    /// Writes a policy record and waits until it is durable.
    async fn record(&self, now: UnixTime, details: PolicyDetails) -> Result<u64, String> {
        let entry = AuditEntry::with_details(now, details).map_err(|e| e.to_string())?;
        self.audit.record(entry).await.map_err(|e| e.to_string())
    }

    /// One stored version with its text, if it exists.
    pub async fn version(&self, id: i64) -> Result<Option<warrant_store::PolicyVersionRecord>, StoreError> {
        self.store.policy_version(id).await
    }

    /// Every stored version, oldest first.
    pub async fn versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        Ok(self
            .store
            .policy_versions()
            .await?
            .into_iter()
            .map(|v| PolicyVersion { id: v.id, hash: v.hash, loaded_at: v.loaded_at })
            .collect())
    }

    /// Puts in force the version the servers sharing the database have in force now, as
    /// the store says (after the change feed announced an activation), once its audit
    /// record is durable; nothing when it is in force here already. The store's version,
    /// not the announced one: an announcement applied late must not bring back an older
    /// set.
    pub(crate) async fn apply_shared(&self) -> Result<(), PolicyLoadError> {
        let _switching = self.switching.lock().await;
        let Some(version) = self.store.active_policy().await? else { return Ok(()) };
        if self.current().is_some_and(|c| c.version == version) {
            return Ok(());
        }
        let (compiled, hash) = compile_stored(self.store.as_ref(), version).await?;
        let details = PolicyDetails::Activated { version, hash, policies: compiled.policy_ids().to_vec() };
        self.record(self.clock.now(), details).await.map_err(PolicyLoadError::Audit)?;
        // Governance's check of what the change broadens ran on the server that made it.
        self.activate(Box::new(ActivePolicies { compiled, version }));
        Ok(())
    }

    /// Re-reads the policy directory; a valid, changed set takes effect once its audit
    /// record is durable (if the record cannot be written, the change does not happen).
    /// A refused set is audited too.
    pub async fn reload(&self) -> Result<Reloaded, PolicyLoadError> {
        let _switching = self.switching.lock().await;
        let now = self.clock.now();
        let staged = match self.stage(now).await {
            Ok(Staged::Unchanged(version)) => return Ok(Reloaded::Unchanged(version)),
            Ok(Staged::New(staged)) => staged,
            Err(e) => {
                tracing::error!(error = %e, "refused the new policy set; the previous set stays in force");
                if let Err(audit) = self.record(now, PolicyDetails::Refused { error: e.to_string() }).await {
                    tracing::error!(error = %audit, "a refused policy change could not be audited");
                }
                return Err(e);
            }
        };
        let details = PolicyDetails::Activated {
            version: staged.version,
            hash: staged.compiled.hash().to_owned(),
            policies: staged.compiled.policy_ids().to_vec(),
        };
        if let Err(e) = self.record(now, details).await {
            self.forget_files();
            tracing::error!(error = %e, "a policy change could not be audited; it stays pending");
            return Err(PolicyLoadError::Audit(e.to_string()));
        }
        // Servers sharing the database put it in force too (from the change feed); if
        // that cannot be recorded, no server does, this one included.
        if let Err(e) = self.store.activate_policy(staged.version).await {
            self.forget_files();
            tracing::error!(error = %e, "a policy change could not be shared with the other servers; it stays pending");
            return Err(e.into());
        }
        let previous = self.current();
        let reloaded = self.activate(staged);
        if let (Some(old), Some(new)) = (previous, self.current()) {
            self.governance.policy_changed((&old.compiled, old.version), (&new.compiled, new.version)).await;
        }
        Ok(reloaded)
    }
}
