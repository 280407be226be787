//! The Warrant application without HTTP, as one service per capability.
//!
//! [`Engine`] is the composition root: [`Engine::open`] builds every service in
//! dependency order and hands them out; [`Engine::start`] starts every background loop
//! and returns the [`Background`] handle that stops them gracefully. The services:
//!
//! * [`keys::KeyManager`]: the issuer's key ring and the audit checkpoint key, sealed at
//!   rest with the key-encryption key, created on first start, rotated, refreshed;
//! * [`audit::Audit`]: the hash-chained audit log (group commit, checkpoints, witness),
//!   queries, provenance traces and verification;
//! * [`events::EventBus`]: live events for the event stream and the [`webhook`];
//! * [`registry::Registry`]: humans, their sessions, and agents;
//! * [`revocation::Revocation`]: revoking warrants, agents, tasks and humans; task
//!   completion; whether a warrant is in force;
//! * [`guard::Guardrails`]: baselines, trust, rate limits, budgets, and the responses
//!   (quarantine, containment of probing);
//! * [`govern::Governance`]: findings from sweeps and events, usage and least-privilege
//!   recommendations, attestation, shadow activity, the inventory;
//! * [`policy::Policy`]: the Cedar policy set in force, validated, versioned, reloaded;
//! * [`approvals::Approvals`]: human step-up;
//! * [`issuer::Issuer`]: the token endpoint's grants;
//! * [`decisions::Decisions`]: the decision pipeline (verify, admit, assess, evaluate,
//!   settle, record, answer);
//! * [`peps::Peps`]: the credentials of enforcement points asking the AuthZEN PDP;
//! * [`authzen::Authzen`]: the AuthZEN adapter, access evaluations onto the pipeline.
//!
//! Time comes only through the [`Clock`] trait, randomness only through [`random`].
//! Every error says its kind through [`error::Classify`].

pub mod approvals;
pub mod audit;
pub mod authzen;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod decisions;
pub(crate) mod directory;
pub mod dpop;
pub mod error;
pub mod events;
pub mod federation;
pub mod govern;
pub mod guard;
pub mod issuer;
pub mod keys;
pub mod lead;
pub mod peps;
pub mod policy;
pub mod random;
pub mod registry;
pub mod request;
pub mod revocation;
mod shards;
pub mod signals;
pub mod spiffe;
pub mod transmitter;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use warrant_store::Store;

pub use approvals::Approvals;
pub use audit::Audit;
pub use authzen::{Asker, Authzen, EvaluationError};
pub use clock::{Clock, ManualClock};
pub use cluster::{ChangeFeed, ClusterConfig};
pub use config::EngineConfig;
pub use decisions::Decisions;
pub use error::{Classify, ErrorKind};
pub use events::EventBus;
pub use govern::Governance;
pub use guard::Guardrails;
pub use issuer::{Issued, Issuer, TokenError, TokenRequest};
pub use keys::{KeyError, KeyManager};
pub use peps::{CreatedPep, NewPep, Pep, PepError, Peps};
pub use policy::Policy;
pub use registry::{NewAgent, NewHuman, Registry, RegistryError, Session};
pub use request::{AuthorizeRequest, Decision, DecisionCode, Outcome, SubjectRequest};
pub use revocation::{Revocation, RevokeError, Revoked};

/// How long [`Engine::ready`] waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why [`Engine::ready`] says the engine cannot serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The store answered with an error.
    #[error("the store is not available: {0}")]
    Store(warrant_store::StoreError),
    /// The store did not answer in time.
    #[error("the store did not answer within {READY_TIMEOUT:?}")]
    Timeout,
    /// The server shares its database and cannot confirm it follows the change feed.
    #[error("{0}")]
    Feed(String),
}

/// The application: builds the services and hands them out.
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    keys: Arc<KeyManager>,
    audit: Arc<Audit>,
    events: Arc<EventBus>,
    registry: Arc<Registry>,
    revocation: Arc<Revocation>,
    guardrails: Arc<Guardrails>,
    governance: Arc<Governance>,
    policy: Arc<Policy>,
    approvals: Arc<Approvals>,
    issuer: Arc<Issuer>,
    decisions: Arc<Decisions>,
    peps: Arc<Peps>,
    authzen: Arc<Authzen>,
    signals: Arc<signals::Signals>,
    transmitter: Arc<transmitter::Transmitter>,
    feed: Arc<cluster::ChangeFeed>,
    lead: Arc<lead::Lead>,
    console: Arc<console::Console>,
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
    /// A trusted identity provider is Warrant itself.
    #[error("`federation.oidc` names Warrant's own issuer `{0}`; a provider must be another party")]
    SelfFederation(String),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the engine over `store`: creates the first signing key if there is none,
    /// loads the registry, the revocations, the guardrails' and governance's state and
    /// the policy set into memory, and starts the audit writer. Starts no other
    /// background work (see [`Engine::start`]). Must be called inside a tokio runtime.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Result<Self, OpenError> {
        let now = clock.now();
        // Before anything is loaded: changes made while loading are applied again.
        let feed_start = cluster::FeedStart::read(store.as_ref(), clock.as_ref()).await?;
        // Alone on its database, a server leads; sharing it, it contends (`Engine::start`).
        let lead = Arc::new(lead::Lead::new(!store.shared()));
        let lifetimes = keys::KeyLifetimes { max_ttl: config.limits.max_ttl, grace: config.key_grace };
        let keys =
            Arc::new(KeyManager::load(Arc::clone(&store), Arc::clone(&clock), config.kek.clone(), lifetimes).await?);
        let audit = Arc::new(Audit::start(Arc::clone(&store), Arc::clone(&keys), config.audit.clone()).await?);
        let events = Arc::new(EventBus::default());
        let directory = Arc::new(directory::Directory::load(store.as_ref()).await?);
        let revocation = Arc::new(
            Revocation::load(revocation::RevocationParts {
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
                issuer: config.issuer.clone(),
                directory: Arc::clone(&directory),
                keys: Arc::clone(&keys),
                audit: Arc::clone(&audit),
                events: Arc::clone(&events),
            })
            .await?,
        );
        let guardrails = Arc::new(
            Guardrails::load(
                Arc::clone(&store),
                config.guard.clone(),
                now,
                Arc::clone(&events),
                Arc::clone(&revocation),
            )
            .await?,
        );
        let mut govern_config = config.govern.clone();
        govern_config.rules.max_depth = config.limits.max_depth;
        let governance = Arc::new(
            Governance::load(govern::GovernanceParts {
                store: Arc::clone(&store),
                clock: Arc::clone(&clock),
                config: govern_config,
                directory: Arc::clone(&directory),
                revocation: Arc::clone(&revocation),
                guardrails: Arc::clone(&guardrails),
                audit: Arc::clone(&audit),
                events: Arc::clone(&events),
                lead: Arc::clone(&lead),
            })
            .await?,
        );
        let policy = Arc::new(
            Policy::open(
                Arc::clone(&store),
                Arc::clone(&clock),
                config.policy_dir.clone(),
                Arc::clone(&audit),
                Arc::clone(&governance),
            )
            .await?,
        );
        let approvals = Arc::new(Approvals::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            approvals::ApprovalTimes { ttl: config.guard.approval_ttl, use_within: config.guard.approval_use_within },
            Arc::clone(&audit),
            Arc::clone(&events),
        ));
        let spiffe = Arc::new(spiffe::SpiffeTrust::new(config.spiffe.clone()));
        let registry = Arc::new(Registry::new(registry::RegistryParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            sessions: registry::SessionSettings {
                issuer: config.issuer.clone(),
                session_ttl: config.session_ttl,
                approver_ttl: config.approver_ttl,
            },
            directory: Arc::clone(&directory),
            keys: Arc::clone(&keys),
            audit: Arc::clone(&audit),
            governance: Arc::clone(&governance),
            guardrails: Arc::clone(&guardrails),
            spiffe: Arc::clone(&spiffe),
        }));
        if let Some(own) = config.federation.iter().find(|p| p.issuer == config.issuer) {
            return Err(OpenError::SelfFederation(own.issuer.clone()));
        }
        let federation = Arc::new(federation::Federation::new(config.federation.clone()));
        let dpop = Arc::new(dpop::Dpop::on(Arc::clone(&store)));
        let issuer = Arc::new(Issuer::new(issuer::IssuerParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            settings: issuer::IssuerSettings {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                limits: config.limits,
                token_endpoint: config.token_endpoint(),
            },
            keys: Arc::clone(&keys),
            revocation: Arc::clone(&revocation),
            guardrails: Arc::clone(&guardrails),
            governance: Arc::clone(&governance),
            audit: Arc::clone(&audit),
            federation: Arc::clone(&federation),
            registry: Arc::clone(&registry),
            dpop: Arc::clone(&dpop),
            spiffe,
        }));
        let peps = Arc::new(Peps::load(Arc::clone(&store), Arc::clone(&clock), Arc::clone(&audit)).await?);
        let feed = Arc::new(cluster::ChangeFeed::new(cluster::FeedParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            config: config.cluster,
            start: feed_start,
            directory: Arc::clone(&directory),
            revocation: Arc::clone(&revocation),
            peps: Arc::clone(&peps),
            keys: Arc::clone(&keys),
            policy: Arc::clone(&policy),
            guardrails: Arc::clone(&guardrails),
        }));
        let decisions = Arc::new(Decisions::new(decisions::DecisionParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            issuer: config.issuer.clone(),
            anonymous: config.anonymous,
            keys: Arc::clone(&keys),
            directory,
            revocation: Arc::clone(&revocation),
            policy: Arc::clone(&policy),
            guardrails: Arc::clone(&guardrails),
            approvals: Arc::clone(&approvals),
            governance: Arc::clone(&governance),
            audit: Arc::clone(&audit),
            events: Arc::clone(&events),
            dpop,
            freshness: Arc::clone(feed.freshness()),
        }));
        let console = Arc::new(console::Console::new(console::ConsoleParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            federation: Arc::clone(&federation),
            registry: Arc::clone(&registry),
            issuer: config.issuer.clone(),
            session_ttl: config.console_session_ttl,
        }));
        let signals = Arc::new(signals::Signals::new(signals::SignalParts {
            federation,
            registry: Arc::clone(&registry),
            revocation: Arc::clone(&revocation),
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            receiver: config.issuer.clone(),
        }));
        let transmitter = Arc::new(transmitter::Transmitter::new(transmitter::TransmitterParts {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            keys: Arc::clone(&keys),
            events: Arc::clone(&events),
            issuer: config.issuer.clone(),
            allow_private_push: config.ssf_allow_private_push,
            lead: Arc::clone(&lead),
        }));
        let authzen = Arc::new(Authzen::new(
            Arc::clone(&clock),
            config.issuer.clone(),
            Arc::clone(&decisions),
            Arc::clone(&approvals),
        ));
        Ok(Engine {
            store,
            clock,
            config,
            keys,
            audit,
            events,
            registry,
            revocation,
            guardrails,
            governance,
            policy,
            approvals,
            issuer,
            decisions,
            peps,
            authzen,
            transmitter,
            signals,
            feed,
            lead,
            console,
        })
    }

    /// Whether the engine can serve now: its store answers within [`READY_TIMEOUT`] and,
    /// on a shared database, it has followed the change feed recently
    /// ([`cluster::NOT_READY_AFTER`]).
    /// An error says why not (for logs; a readiness probe needs only the yes or no).
    pub async fn ready(&self) -> Result<(), NotReady> {
        match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NotReady::Store(e)),
            Err(_) => return Err(NotReady::Timeout),
        }
        self.feed.freshness().ready().map_err(NotReady::Feed)
    }

    /// How many store calls wait for a free database connection now (see
    /// [`warrant_store::HealthStore::waiting_for_connection`]).
    pub fn store_waiting(&self) -> usize {
        self.store.waiting_for_connection()
    }

    /// Whether this server leads the background work of a shared database.
    pub fn lead(&self) -> &lead::Lead {
        &self.lead
    }

    /// The change feed that keeps this server current when its database is shared.
    pub fn cluster(&self) -> &ChangeFeed {
        &self.feed
    }

    /// Console sessions and sign-ins.
    pub fn console(&self) -> &console::Console {
        &self.console
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The current time, from the engine's clock.
    pub fn now(&self) -> warrant_core::UnixTime {
        self.clock.now()
    }

    /// The keys service.
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// The audit service.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The live event stream.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The registry service.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The revocation service.
    pub fn revocation(&self) -> &Revocation {
        &self.revocation
    }

    /// The guardrails service.
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    /// The governance service.
    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    /// The policy service.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The approvals service.
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The issuer service.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The Shared Signals transmitter: revoked warrants announced to subscribed streams.
    pub fn transmitter(&self) -> &transmitter::Transmitter {
        &self.transmitter
    }

    /// The Shared Signals receiver: security events from trusted identity providers.
    pub fn signals(&self) -> &signals::Signals {
        &self.signals
    }

    /// The decisions service.
    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }

    /// The PEP credentials service.
    pub fn peps(&self) -> &Peps {
        &self.peps
    }

    /// The AuthZEN adapter: access evaluations onto the decision pipeline.
    pub fn authzen(&self) -> &Authzen {
        &self.authzen
    }

    /// Saves what is only in memory (baselines and trust, usage, the anonymous-deny
    /// aggregate), drains the audit queue and signs a last checkpoint: for an engine
    /// whose background was never started (benchmarks, tests). Later audited operations
    /// fail.
    pub async fn close(&self) {
        close(&self.clock, &self.guardrails, &self.governance, &self.decisions, &self.audit).await;
    }

    /// Starts every background loop: key refresh, policy watch, the guardrails' and
    /// anonymous-deny flush, the governance sweep and usage flush, the change feed (on a
    /// shared database; without it the engine denies once stale), and (when configured)
    /// the webhook. Returns the handle that stops them gracefully. Call it once, inside a
    /// tokio runtime.
    pub fn start(&self, options: BackgroundOptions) -> Background {
        let mut loops = Vec::new();
        let keys = Arc::clone(&self.keys);
        loops.push(every(options.key_refresh, move || {
            let keys = Arc::clone(&keys);
            async move {
                if let Err(e) = keys.refresh().await {
                    tracing::warn!(error = %e, "could not reload the signing keys; keeping the current ring");
                }
            }
        }));
        let policy = Arc::clone(&self.policy);
        loops.push(every(options.policy_watch, move || {
            let policy = Arc::clone(&policy);
            async move {
                if policy.changed_on_disk() {
                    // Both outcomes are logged and audited by the reload itself; an invalid
                    // set is refused and the previous one stays in force.
                    let _ = policy.reload().await;
                }
            }
        }));
        let (guardrails, decisions, clock) =
            (Arc::clone(&self.guardrails), Arc::clone(&self.decisions), Arc::clone(&self.clock));
        loops.push(every(self.guardrails.config().flush_interval, move || {
            let (guardrails, decisions, clock) = (Arc::clone(&guardrails), Arc::clone(&decisions), Arc::clone(&clock));
            async move {
                flush_guardrails(&guardrails, clock.now()).await;
                decisions.flush_anonymous(false).await;
            }
        }));
        // Subscribed before governance starts, so the first sweep's findings are delivered.
        let webhook = options.webhook.map(|config| {
            let events = self.events.subscribe_to(events::EventKind::Finding);
            tokio::spawn(webhook::run(config, events))
        });
        let governance = Arc::clone(&self.governance);
        loops.push(tokio::spawn(async move { governance.run().await }));
        loops.push(tokio::spawn(Arc::clone(&self.transmitter).run_push()));
        loops.push(tokio::spawn(Arc::clone(&self.feed).run()));
        loops.push(tokio::spawn(Arc::clone(&self.lead).contend(Arc::clone(&self.store))));
        Background {
            loops,
            webhook,
            clock: Arc::clone(&self.clock),
            guardrails: Arc::clone(&self.guardrails),
            governance: Arc::clone(&self.governance),
            decisions: Arc::clone(&self.decisions),
            audit: Arc::clone(&self.audit),
        }
    }
}

/// What [`Engine::start`] runs besides the loops every engine has.
#[derive(Debug, Clone)]
pub struct BackgroundOptions {
    /// How often the key ring is reloaded from the store.
    pub key_refresh: Duration,
    /// How often the policy directory is checked for changes.
    pub policy_watch: Duration,
    /// Where finding events are delivered, if anywhere.
    pub webhook: Option<webhook::WebhookConfig>,
}

impl Default for BackgroundOptions {
    fn default() -> Self {
        BackgroundOptions { key_refresh: Duration::from_secs(30), policy_watch: Duration::from_secs(2), webhook: None }
    }
}

/// The engine's background work, running until [`Background::shutdown`].
pub struct Background {
    loops: Vec<JoinHandle<()>>,
    webhook: Option<JoinHandle<()>>,
    clock: Arc<dyn Clock>,
    guardrails: Arc<Guardrails>,
    governance: Arc<Governance>,
    decisions: Arc<Decisions>,
    audit: Arc<Audit>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").field("loops", &self.loops.len()).finish_non_exhaustive()
    }
}

impl Background {
    /// Stops the loops, writes what is only in memory (baselines and trust, usage, the
    /// anonymous-deny aggregate), drains the audit queue and signs a last checkpoint,
    /// then stops the webhook. Every answered request's record is already durable.
    pub async fn shutdown(self) {
        for task in &self.loops {
            task.abort();
        }
        // Wait for each loop to be dropped, so whatever a cancelled flush had taken out of
        // memory is back before `close` writes it.
        for task in self.loops {
            let _ = task.await;
        }
        close(&self.clock, &self.guardrails, &self.governance, &self.decisions, &self.audit).await;
        if let Some(webhook) = self.webhook {
            webhook.abort();
        }
    }
}

/// Writes what only memory holds and closes the audit log.
async fn close(
    clock: &Arc<dyn Clock>,
    guardrails: &Guardrails,
    governance: &Governance,
    decisions: &Decisions,
    audit: &Audit,
) {
    flush_guardrails(guardrails, clock.now()).await;
    governance.flush_usage().await;
    decisions.flush_anonymous(true).await;
    audit.shutdown().await;
}

async fn flush_guardrails(guardrails: &Guardrails, now: warrant_core::UnixTime) {
    if let Err(e) = guardrails.flush(now).await {
        tracing::warn!(error = %e, "could not save baselines and trust; will retry");
    }
}

/// Runs `tick` every `period` (the first time one period from now) until aborted.
fn every<F, Fut>(period: Duration, tick: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(period);
        timer.tick().await;
        loop {
            timer.tick().await;
            tick().await;
        }
    })
}
