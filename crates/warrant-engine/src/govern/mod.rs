//! Continuous governance: the state the engine keeps for it and the hooks the decision
//! path, the issuer and the registry call.
//!
//! The rules are pure ([`warrant_core::govern`]); this module owns the facts they need
//! and keeps them current as things happen:
//!
//! * what each agent used (allowed actions and resources, delegated scope, last
//!   activity), recorded on the decision path and the issuer, flushed to the store;
//! * shadow activity: tokens Warrant did not issue, from unknown issuers or keys
//!   ([`shadow`]);
//! * the recent decision history a policy change is replayed on ([`replay`]);
//! * the active findings, loaded at start and changed only by sweeps and the
//!   operations in [`findings`], one at a time.
//!
//! [`sweep`] runs the rules: every agent on a timer, and only the agents a registry
//! event touched soon after the event. [`owner`] holds attestation, key rotation and the
//! inventory export.

pub mod findings;
pub mod owner;
pub mod replay;
pub mod shadow;
pub mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use warrant_core::govern::{AgentUsage, Finding, FindingKind, GovernRules, ShadowActivity};
use warrant_core::{AgentId, Scope, UnixTime};
use warrant_store::{Store, StoreError};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::events::EventBus;
use crate::guard::Guardrails;
use crate::lead::Lead;
use crate::revocation::Revocation;

/// Governance settings.
#[derive(Debug, Clone)]
pub struct GovernConfig {
    /// Whether the engine sweeps and records usage at all.
    pub enabled: bool,
    /// How often every agent is swept.
    pub sweep_interval: Duration,
    /// How soon after a registry event the agents it touched are swept.
    pub react_within: Duration,
    /// The rules' thresholds.
    pub rules: GovernRules,
    /// Suspend an orphaned agent (and revoke what it holds) when its finding opens.
    pub auto_suspend_orphans: bool,
    /// Shadow activity resolves after this many seconds without a new occurrence.
    pub shadow_quiet: i64,
    /// A steady finding's `last_seen` is written again after this many seconds.
    pub refresh: i64,
    /// How many recent decisions a policy change is replayed on.
    pub history: usize,
    /// The longest a finding may be accepted for, in seconds.
    pub max_acceptance: i64,
    /// How often usage is written to the store.
    pub flush_interval: Duration,
}

impl Default for GovernConfig {
    fn default() -> Self {
        GovernConfig {
            enabled: true,
            sweep_interval: Duration::from_secs(60),
            react_within: Duration::from_secs(2),
            rules: GovernRules::default(),
            auto_suspend_orphans: false,
            shadow_quiet: 3600,
            refresh: 3600,
            history: 2000,
            max_acceptance: 365 * 86_400,
            flush_interval: Duration::from_secs(5),
        }
    }
}

/// Usage handed to the store, marked as written. Dropped before
/// [`written`](Self::written), whether the write failed or was cancelled (a shutdown
/// aborting the flush loop), it is marked unwritten again, so the next flush retries it.
struct UsageRows<'a> {
    governance: &'a Governance,
    rows: Vec<(AgentId, AgentUsage)>,
}

impl UsageRows<'_> {
    /// The store has it.
    fn written(mut self) {
        self.rows.clear();
    }
}

impl Drop for UsageRows<'_> {
    fn drop(&mut self) {
        if !self.rows.is_empty() {
            self.governance.usage_unwritten(&self.rows);
        }
    }
}

/// Usage is written again once it is this many seconds older than what is stored, even
/// if only its times moved.
const USAGE_REWRITE_SECS: i64 = 60;

/// The most shadow batches one flush writes (a failed flush leaves at most one per flush
/// that ran at once, and then comes what was counted since).
const FLUSH_BATCHES: usize = 4;

/// One agent's usage and whether the store is behind it.
#[derive(Debug, Default)]
struct Tracked {
    usage: AgentUsage,
    /// Something other than a time changed since the last write.
    changed: bool,
    /// Only times changed since the last write.
    touched: bool,
    /// When it was last written.
    written_at: Option<UnixTime>,
}

impl Tracked {
    /// A structural change is written at the next flush; a change of times only once it
    /// is [`USAGE_REWRITE_SECS`] old; an unchanged agent never.
    fn due(&self, now: UnixTime) -> bool {
        self.changed || (self.touched && self.written_at.is_none_or(|t| t.until(now) >= USAGE_REWRITE_SECS))
    }
}

/// The active findings by kind and subject.
pub(crate) type ActiveFindings = HashMap<(FindingKind, String), Finding>;

/// The governance service: the facts the rules need, kept current as things happen,
/// the sweeps that run the rules, and the findings they keep.
pub struct Governance {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    directory: Arc<Directory>,
    revocation: Arc<Revocation>,
    guardrails: Arc<Guardrails>,
    audit: Arc<Audit>,
    events: Arc<EventBus>,
    config: GovernConfig,
    /// Each agent's usage, sharded: decisions about different agents take different locks.
    usage: crate::shards::Shards<AgentId, Tracked>,
    active: Mutex<ActiveFindings>,
    key_times: RwLock<HashMap<AgentId, UnixTime>>,
    attested: RwLock<HashMap<AgentId, UnixTime>>,
    shadow: shadow::ShadowTracker,
    history: replay::History,
    /// The newly allowed requests behind each policy-broadening finding, by subject.
    broadened: Mutex<HashMap<String, Vec<Arc<replay::Recorded>>>>,
    /// Agents a registry event touched, waiting for a targeted sweep.
    pending: Mutex<HashSet<AgentId>>,
    nudge: tokio::sync::Notify,
    /// One sweep or finding change at a time.
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// Whether this server runs the periodic full sweep (one server of a shared database).
    pub(crate) lead: Arc<Lead>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance").field("config", &self.config).finish_non_exhaustive()
    }
}

/// What the governance service is built from.
pub(crate) struct GovernanceParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: GovernConfig,
    pub directory: Arc<Directory>,
    pub revocation: Arc<Revocation>,
    pub guardrails: Arc<Guardrails>,
    pub audit: Arc<Audit>,
    pub events: Arc<EventBus>,
    pub lead: Arc<Lead>,
}

impl Governance {
    /// Loads the active findings, usage, key times and attestations.
    pub(crate) async fn load(parts: GovernanceParts) -> Result<Self, StoreError> {
        let GovernanceParts { store, clock, config, directory, revocation, guardrails, audit, events, lead } = parts;
        let active = store.active_findings().await?.into_iter().map(|f| (f.key(), f)).collect::<ActiveFindings>();
        let usage = store
            .usages()
            .await?
            .into_iter()
            .map(|(agent, usage)| (agent, Tracked { usage, changed: false, touched: false, written_at: None }));
        let usage = crate::shards::Shards::from_entries(usage);
        let key_times = store.agent_key_times().await?.into_iter().collect();
        let attested = store.last_attestations().await?.into_iter().collect();
        let shadow = shadow::ShadowTracker::default();
        // Sharing the database, the counts are the store's (and this server's since).
        if !store.shared() {
            shadow.resume(active.values());
        }
        Ok(Governance {
            store,
            clock,
            directory,
            revocation,
            guardrails,
            audit,
            events,
            history: replay::History::new(config.history),
            broadened: Mutex::new(HashMap::new()),
            config,
            usage,
            active: Mutex::new(active),
            key_times: RwLock::new(key_times),
            attested: RwLock::new(attested),
            shadow,
            pending: Mutex::new(HashSet::new()),
            nudge: tokio::sync::Notify::new(),
            serial: tokio::sync::Mutex::new(()),
            lead,
        })
    }

    /// The settings.
    pub fn config(&self) -> &GovernConfig {
        &self.config
    }

    /// Notes a decision asked for by `agent` at `now`; `allowed` carries the action and
    /// resource when it was allowed.
    pub fn decided(&self, agent: &AgentId, allowed: Option<(&str, &str)>, now: UnixTime) {
        if !self.config.enabled {
            return;
        }
        self.usage.with(agent, |map| {
            let tracked = map.entry(agent.clone()).or_default();
            tracked.touched = true;
            match allowed {
                Some((action, resource)) => {
                    let before = tracked.usage.actions.get(action).map(|u| (u.resources.len(), u.overflow));
                    tracked.usage.used(action, resource, now);
                    let after = tracked.usage.actions.get(action).map(|u| (u.resources.len(), u.overflow));
                    tracked.changed |= before != after;
                }
                None => tracked.usage.seen(now),
            }
        });
    }

    /// Notes that `agent` obtained a warrant at `now`, delegated onwards from one of its
    /// warrants when `delegated_by` is set.
    pub fn issued(&self, agent: &AgentId, delegated_by: Option<(&AgentId, &Scope)>, now: UnixTime) {
        if !self.config.enabled {
            return;
        }
        self.usage.with(agent, |map| {
            let holder = map.entry(agent.clone()).or_default();
            holder.usage.seen(now);
            holder.touched = true;
        });
        if let Some((parent, scope)) = delegated_by {
            self.usage.with(parent, |map| {
                let tracked = map.entry(parent.clone()).or_default();
                tracked.touched = true;
                let before = tracked.usage.delegated.len();
                tracked.usage.delegated(scope, now);
                tracked.changed |= before != tracked.usage.delegated.len();
            });
        }
        if let Some((parent, _)) = delegated_by {
            self.touch([parent.clone()]);
        }
    }

    /// One agent's usage, as recorded.
    pub fn usage_of(&self, agent: &AgentId) -> Option<AgentUsage> {
        self.usage.with(agent, |map| map.get(agent).map(|t| t.usage.clone())).flatten()
    }

    /// Forgets one agent's use before `since` and returns what remains.
    fn usage_within(&self, agent: &AgentId, since: UnixTime) -> Option<AgentUsage> {
        self.usage
            .with(agent, |map| {
                let tracked = map.get_mut(agent)?;
                tracked.changed |= tracked.usage.forget_before(since);
                Some(tracked.usage.clone())
            })
            .flatten()
    }

    /// On a database several servers share, takes in what the others recorded: the active
    /// findings, key times and attestations as stored (replacing this server's), and each
    /// agent's stored usage merged into this server's. Run before every sweep (on a shared
    /// database only the leader sweeps); nothing to do alone on a database.
    pub(crate) async fn refresh_shared(&self) -> Result<(), StoreError> {
        if !self.store.shared() {
            return Ok(());
        }
        let active: ActiveFindings = self.store.active_findings().await?.into_iter().map(|f| (f.key(), f)).collect();
        let key_times: HashMap<AgentId, UnixTime> = self.store.agent_key_times().await?.into_iter().collect();
        let attested: HashMap<AgentId, UnixTime> = self.store.last_attestations().await?.into_iter().collect();
        let usages = self.store.usages().await?;
        if let Ok(mut map) = self.active.lock() {
            *map = active;
        }
        if let Ok(mut map) = self.key_times.write() {
            *map = key_times;
        }
        if let Ok(mut map) = self.attested.write() {
            *map = attested;
        }
        for (agent, stored) in usages {
            self.usage.with(&agent, |map| match map.get_mut(&agent) {
                Some(tracked) => tracked.usage.merge(&stored),
                None => {
                    map.insert(
                        agent.clone(),
                        Tracked { usage: stored, changed: false, touched: false, written_at: None },
                    );
                }
            });
        }
        Ok(())
    }

    /// When the agent's key was set, if it was ever replaced.
    pub fn key_time(&self, agent: &AgentId) -> Option<UnixTime> {
        self.key_times.read().ok()?.get(agent).copied()
    }

    fn set_key_time(&self, agent: &AgentId, at: UnixTime) {
        if let Ok(mut map) = self.key_times.write() {
            map.insert(agent.clone(), at);
        }
    }

    /// When the agent was last attested.
    pub fn last_attested(&self, agent: &AgentId) -> Option<UnixTime> {
        self.attested.read().ok()?.get(agent).copied()
    }

    fn set_attested(&self, agent: &AgentId, at: UnixTime) {
        if let Ok(mut map) = self.attested.write() {
            map.insert(agent.clone(), at);
        }
    }

    /// The active findings about `subject`.
    pub fn active_about(&self, subject: &str) -> Vec<Finding> {
        let Ok(map) = self.active.lock() else { return Vec::new() };
        let mut out: Vec<Finding> = map.values().filter(|f| f.subject == subject).cloned().collect();
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
        out
    }

    /// How many findings are active, by kind.
    pub fn active_counts(&self) -> HashMap<FindingKind, usize> {
        let mut out = HashMap::new();
        if let Ok(map) = self.active.lock() {
            for f in map.values() {
                *out.entry(f.kind).or_insert(0) += 1;
            }
        }
        out
    }

    /// The shadow-activity tracker.
    pub fn shadow(&self) -> &shadow::ShadowTracker {
        &self.shadow
    }

    /// The recent decision history.
    pub fn history(&self) -> &replay::History {
        &self.history
    }

    fn broadened_samples(&self, subject: &str) -> Vec<Arc<replay::Recorded>> {
        self.broadened.lock().ok().and_then(|m| m.get(subject).cloned()).unwrap_or_default()
    }

    fn remember_broadened(&self, subject: &str, samples: Vec<Arc<replay::Recorded>>) {
        if let Ok(mut m) = self.broadened.lock() {
            m.insert(subject.to_owned(), samples);
        }
    }

    fn forget_broadened(&self, subject: &str) {
        if let Ok(mut m) = self.broadened.lock() {
            m.remove(subject);
        }
    }

    /// Asks for a sweep of `agents` soon (a registry event touched them).
    pub fn touch(&self, agents: impl IntoIterator<Item = AgentId>) {
        if !self.config.enabled {
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend(agents);
        }
        self.nudge.notify_one();
    }

    /// Takes the agents waiting for a targeted sweep.
    fn take_pending(&self) -> HashSet<AgentId> {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }

    /// The usage the store is behind on, marked as written at `now`.
    fn usage_to_write(&self, now: UnixTime) -> Vec<(AgentId, AgentUsage)> {
        let mut out = Vec::new();
        self.usage.for_each_shard(|map| {
            for (agent, tracked) in map.iter_mut() {
                if tracked.due(now) {
                    tracked.changed = false;
                    tracked.touched = false;
                    tracked.written_at = Some(now);
                    out.push((agent.clone(), tracked.usage.clone()));
                }
            }
        });
        out
    }

    /// Marks usage as not written after a failed write, so the next flush retries it.
    fn usage_unwritten(&self, agents: &[(AgentId, AgentUsage)]) {
        for (agent, _) in agents {
            self.usage.with(agent, |map| {
                if let Some(t) = map.get_mut(agent) {
                    t.changed = true;
                }
            });
        }
    }

    /// Writes the usage the store is behind on (how many agents' usage it wrote) and,
    /// on a database several servers share, the shadow activity this server counted.
    /// What a failed or cancelled write held is written by the next flush.
    pub async fn flush(&self, now: UnixTime) -> Result<usize, StoreError> {
        let shadow = self.flush_shadow().await;
        let rows = UsageRows { governance: self, rows: self.usage_to_write(now) };
        if rows.rows.is_empty() {
            return shadow.map(|()| 0);
        }
        self.store.save_usage(&rows.rows).await?;
        let written = rows.rows.len();
        rows.written();
        shadow.map(|()| written)
    }

    /// On a database several servers share, adds the shadow activity this server counted
    /// since its last flush to the store's counts, which the leader's sweeps observe; what
    /// could not be written is kept, as the batch it was, for the next flush. Nothing on a
    /// database of one server, whose sweeps read the server's own counts.
    pub(crate) async fn flush_shadow(&self) -> Result<(), StoreError> {
        if !self.store.shared() {
            return Ok(());
        }
        // The batches a failed flush left, then what was counted since; bounded, so that a
        // steady stream of shadow activity cannot keep one flush going.
        for _ in 0..FLUSH_BATCHES {
            let taken = self.shadow.take().map_err(|e| StoreError::Backend(e.to_string()))?;
            let Some(taken) = taken else { break };
            self.store.merge_shadow(taken.batch()).await?;
            taken.written();
        }
        Ok(())
    }

    /// The shadow activity a full sweep at `now` observes, by subject: this server's
    /// counts, or on a shared database every server's, from the store (this server's
    /// added first). An active finding the store has no count of (opened before the
    /// database counted shadow activity) is counted from its evidence.
    pub(crate) async fn shadow_activity(&self, now: UnixTime) -> Result<Vec<(String, ShadowActivity)>, StoreError> {
        let quiet = self.config.shadow_quiet;
        if !self.store.shared() {
            return Ok(self.shadow.current(now, quiet));
        }
        self.flush_shadow().await?;
        let recorded: Vec<(String, ShadowActivity)> = match self.active.lock() {
            Ok(active) => active.values().filter_map(shadow::ShadowTracker::recorded).collect(),
            Err(_) => Vec::new(),
        };
        self.store.shadow_activity(now.plus(-quiet), &recorded).await
    }

    /// Records that a sweep committed the findings of `reported` (subject, occurrences),
    /// so once quiet they may be forgotten.
    pub(crate) async fn shadow_reported(&self, reported: &[(String, u64)]) -> Result<(), StoreError> {
        if self.store.shared() {
            return self.store.shadow_reported(reported).await;
        }
        self.shadow.reported(reported.iter().map(|(subject, n)| (subject.as_str(), *n)));
        Ok(())
    }
}
