//! The Warrant application without HTTP.
//!
//! [`Engine`] owns the store, the clock, the signing keys and the configuration, and
//! exposes every operation the server (and later benchmarks and gateways) drive
//! in-process:
//!
//! * [`registry`]: humans, their sessions, and agents ([`directory`] holds them in memory);
//! * [`keys`]: the issuer's key ring and the audit checkpoint key, sealed at rest with
//!   the key-encryption key, created on first start, rotated, refreshed;
//! * [`issuer`]: the token endpoint's grants (client credentials and token exchange);
//! * [`decision`]: the decision path, `authorize`;
//! * [`policy`]: the Cedar policy set in force, validated, versioned, hot-reloaded;
//! * [`revocation`]: revoking warrants, agents, tasks and humans; task completion;
//! * [`audit`]: the hash-chained audit log, written with group commit, its checkpoints
//!   also kept in the [`witness`] file outside the database;
//! * [`guard`]: runtime guardrails' state (baselines, trust, rate limits, budgets), with
//!   [`quarantine`] and [`approvals`] (human step-up) on the decision path;
//! * [`govern`]: continuous governance: findings from sweeps and events, usage and
//!   least-privilege recommendations, attestation, shadow activity, the inventory;
//! * [`events`]: live events for the event stream;
//! * [`anonymous`]: how denies of requests without a valid warrant are recorded.
//!
//! Time comes only through the [`Clock`] trait, randomness only through [`random`].

pub mod anonymous;
pub mod approvals;
pub mod audit;
pub mod clock;
pub mod config;
pub mod decision;
pub mod directory;
pub mod events;
pub mod evidence;
pub mod govern;
pub mod guard;
pub mod issuer;
pub mod keys;
pub mod policy;
pub mod quarantine;
pub mod random;
pub mod registry;
pub mod revocation;
pub mod warrants;
pub mod witness;

use std::sync::Arc;

use warrant_store::Store;

pub use clock::{Clock, ManualClock};
pub use config::EngineConfig;
pub use decision::{AuthorizeRequest, Decision, Outcome};
pub use issuer::{Issued, TokenError, TokenRequest};
pub use keys::{KeyError, KeyManager};
pub use registry::{NewAgent, NewHuman, RegistryError, Session};
pub use revocation::{RevokeError, Revoked};

/// The application: shared by every request handler.
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    keys: Arc<KeyManager>,
    directory: directory::Directory,
    revocations: revocation::RevocationIndex,
    policies: policy::PolicyManager,
    warrant_cache: decision::WarrantCache,
    audit: audit::AuditWriter,
    guard: guard::Guardrails,
    governance: govern::Governance,
    events: events::EventBus,
    anonymous: anonymous::AnonymousDenies,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The signing keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] warrant_store::StoreError),
    /// No valid policy set could be loaded.
    #[error(transparent)]
    Policy(#[from] policy::PolicyLoadError),
    /// The audit writer could not start.
    #[error(transparent)]
    Audit(#[from] audit::AuditStartError),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the engine over `store`: creates the first signing key if there is none,
    /// loads the registry, the revocations and the policy set into memory, and starts
    /// the audit writer. Must be called inside a tokio runtime.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Result<Self, OpenError> {
        let now = clock.now();
        let config_anonymous = config.anonymous;
        let keys = Arc::new(KeyManager::load(store.as_ref(), now, &config).await?);
        let directory = directory::Directory::load(store.as_ref()).await?;
        let revocations = revocation::RevocationIndex::load(store.as_ref(), now).await?;
        let policies = policy::PolicyManager::open(store.as_ref(), config.policy_dir.clone(), now).await?;
        let guard = guard::Guardrails::load(store.as_ref(), config.guard.clone(), now).await?;
        let mut govern_config = config.govern.clone();
        govern_config.rules.max_depth = config.limits.max_depth;
        let governance = govern::Governance::load(store.as_ref(), govern_config).await?;
        let audit_store: Arc<dyn warrant_store::audit::AuditStore> = Arc::clone(&store) as _;
        let signer: Arc<dyn audit::SigningKeySource> = Arc::clone(&keys) as _;
        let audit = audit::AuditWriter::spawn(audit_store, signer, config.audit.clone()).await?;
        let engine = Engine {
            store,
            clock,
            config,
            keys,
            directory,
            revocations,
            policies,
            warrant_cache: decision::WarrantCache::default(),
            audit,
            guard,
            governance,
            events: events::EventBus::default(),
            anonymous: anonymous::AnonymousDenies::new(config_anonymous),
        };
        // The set in force at start is evidence too: which policies decided from now on.
        if let Some(current) = engine.policies.current() {
            let mut entry = warrant_core::audit::AuditEntry::new(now, warrant_core::audit::AuditKind::Policy);
            entry.details = serde_json::json!({
                "op": "in_force_at_start",
                "version": current.version,
                "hash": current.compiled.hash(),
                "policies": current.compiled.policy_ids(),
            });
            if let Err(e) = engine.audit(entry).await {
                tracing::error!(error = %e, "cannot audit the policy set in force at start");
            }
        }
        Ok(engine)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The key manager.
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// The registry in memory.
    pub fn directory(&self) -> &directory::Directory {
        &self.directory
    }

    /// The revocation index.
    pub fn revocations(&self) -> &revocation::RevocationIndex {
        &self.revocations
    }

    /// The policy set in force.
    pub fn policies(&self) -> &policy::PolicyManager {
        &self.policies
    }

    /// The verified-warrant cache.
    pub fn warrant_cache(&self) -> &decision::WarrantCache {
        &self.warrant_cache
    }

    /// The guardrails' state.
    pub fn guard(&self) -> &guard::Guardrails {
        &self.guard
    }

    /// Continuous governance's state.
    pub fn governance(&self) -> &govern::Governance {
        &self.governance
    }

    /// The live event stream.
    pub fn events(&self) -> &events::EventBus {
        &self.events
    }

    /// Writes changed baselines and trust scores to the store (the server calls this
    /// periodically and at shutdown).
    pub async fn flush_guard(&self) {
        if let Err(e) = self.guard.flush(self.store.as_ref(), self.clock.now()).await {
            tracing::warn!(error = %e, "could not save baselines and trust; will retry");
        }
    }

    /// The accounting of anonymous denies (see [`anonymous`]).
    pub fn anonymous(&self) -> &anonymous::AnonymousDenies {
        &self.anonymous
    }

    /// Queues the aggregate record of anonymous denies once its window has ended, or
    /// now when `force` (at shutdown). The server calls this periodically.
    pub async fn flush_anonymous(&self, force: bool) {
        if let Some(summary) = self.anonymous.close(self.clock.now(), force) {
            if let Err(e) = self.audit.submit(summary).await {
                tracing::error!(error = %e, "the aggregate of anonymous denies could not be recorded");
            }
        }
    }

    /// The audit writer.
    pub fn audit_writer(&self) -> &audit::AuditWriter {
        &self.audit
    }

    /// Writes one audit record and waits until it is durable; returns its sequence number.
    pub async fn audit(&self, entry: warrant_core::audit::AuditEntry) -> Result<u64, audit::AuditError> {
        self.audit.submit(entry).await
    }

    /// The current time, from the engine's clock.
    pub fn now(&self) -> warrant_core::UnixTime {
        self.clock.now()
    }

    /// Reloads the key ring from the store (picks up `warrant key rotate`).
    pub async fn refresh_keys(&self) -> Result<(), KeyError> {
        self.keys.refresh(self.store.as_ref(), self.clock.now(), &self.config).await
    }

    /// Rotates the issuer's signing key through this engine: a new active key, in force on
    /// this node when this returns; the old one stays published until the warrants it
    /// signed have expired. Returns the new key's id.
    pub async fn rotate_signing_key(&self) -> Result<String, KeyError> {
        let kek = self.config.kek.as_ref().ok_or(KeyError::NoKek)?;
        let kid = keys::rotate(self.store.as_ref(), kek, self.clock.now()).await?;
        self.refresh_keys().await?;
        Ok(kid)
    }
}
