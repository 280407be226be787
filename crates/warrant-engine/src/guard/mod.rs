//! Runtime guardrails, the state half: per-agent baselines and trust, rate-limit
//! counters and the budget ledger, kept in memory and persisted.
//!
//! The rules are pure and live in `warrant_core::guard`; this module owns the state,
//! its locks and its persistence. The decision path ([`crate::decision`]) calls:
//! [`Guardrails::assess`] before Cedar (the signals and trust Cedar sees),
//! [`Guardrails::record`] once the policy has decided, [`Guardrails::check_rates`] and
//! [`Guardrails::charge`] before an allow.
//!
//! Persistence: budgets are charged in memory under one lock (so concurrent spending is
//! exact) and made durable in the same transaction as the decision's audit record.
//! Baselines and trust are flushed every few seconds and at shutdown; a crash loses at
//! most that much learning. Rate-limit counters live in memory only: a restart forgets
//! them.

pub mod respond;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_core::guard::baseline::{Baseline, BaselineConfig};
use warrant_core::guard::budget::{Budget, Charge, ChargeError, Ledger};
use warrant_core::guard::rate::{Gcra, RateLimit};
use warrant_core::guard::response::{rule_for, GuardResponse, LabelRule, Level, ResponseConfig};
use warrant_core::guard::signal::Signal;
use warrant_core::guard::trust::{Trust, TrustConfig};
use warrant_core::{Agent, AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_store::{Store, StoreError};

use crate::events::EventBus;
use crate::revocation::Revocation;

pub use respond::{Probed, Quarantine};

/// Guardrail settings.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Baselines, anomaly signals and trust on every decision. Budgets, rate limits and
    /// approvals apply whatever this says.
    pub enabled: bool,
    /// How baselines learn and when a request is anomalous.
    pub baseline: BaselineConfig,
    /// How signals move the trust score, and the quarantine threshold.
    pub trust: TrustConfig,
    /// Quarantine automatically (suspend the agent, revoke its subtree) when its trust
    /// falls below the threshold or a `@quarantine` forbid matches. When off, such
    /// requests are still denied but the agent stays active.
    pub auto_quarantine: bool,
    /// Most requests per agent, counted over its whole delegation subtree.
    pub rate_agent: Option<RateLimit>,
    /// Most requests per task, over every warrant of the task.
    pub rate_task: Option<RateLimit>,
    /// Most requests tracing to one human, over every task and agent.
    pub rate_human: Option<RateLimit>,
    /// How long a pending approval waits for its approver, in seconds.
    pub approval_ttl: i64,
    /// How long an approved request may wait for its retry, in seconds.
    pub approval_use_within: i64,
    /// How often baselines and trust are written to the store.
    pub flush_interval: Duration,
    /// The response to probing denies: the warrant, then the task, then the agent.
    pub escalation: warrant_core::guard::escalation::EscalationConfig,
    /// The graduated response to falling trust. Its quarantine threshold is
    /// `trust.quarantine_below` (copied in when the guardrails load).
    pub response: ResponseConfig,
    /// Thresholds and shadow levels of their own for agents carrying a label; the first
    /// rule whose label an agent carries applies.
    pub response_labels: Vec<LabelRule>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            baseline: BaselineConfig::default(),
            trust: TrustConfig::default(),
            auto_quarantine: true,
            rate_agent: None,
            rate_task: None,
            rate_human: None,
            approval_ttl: 900,
            approval_use_within: 300,
            flush_interval: Duration::from_secs(5),
            escalation: warrant_core::guard::escalation::EscalationConfig::default(),
            response: ResponseConfig::default(),
            response_labels: Vec::new(),
        }
    }
}

/// One agent's behaviour and trust, as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentGuard {
    /// What it normally does.
    pub baseline: Baseline,
    /// How far it is trusted.
    pub trust: Trust,
    /// The last signals it raised, newest last (at most [`RECENT_SIGNALS`]).
    #[serde(default)]
    pub recent: Vec<(UnixTime, Signal)>,
    /// Its probing denies per warrant and task, and what was revoked for them.
    #[serde(default)]
    pub ladder: warrant_core::guard::escalation::Ladder,
    /// The last responses chosen for it, newest last (at most [`RECENT_SIGNALS`]).
    #[serde(default)]
    pub responses: Vec<(UnixTime, GuardResponse)>,
    /// Its recent allowed activity, counted while a policy reads `context.history`.
    #[serde(default)]
    pub history: warrant_core::guard::history::History,
}

impl AgentGuard {
    /// An agent first seen at `now`: an empty baseline, the initial trust.
    pub fn new(config: &GuardConfig, now: UnixTime) -> Self {
        AgentGuard {
            baseline: Baseline::new(now),
            trust: Trust::new(&config.trust, now),
            recent: Vec::new(),
            ladder: Default::default(),
            responses: Vec::new(),
            history: Default::default(),
        }
    }
}

/// How many recent signals (and responses) are kept per agent, for review.
pub const RECENT_SIGNALS: usize = 20;

/// A decided request, as the guardrails learn from it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// Its action.
    pub action: &'a str,
    /// Its resource.
    pub resource: &'a str,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Whether it was refused by the scope or the policy (probing).
    pub probing: bool,
    /// Whether it raised no signal (an allowed clean request earns trust back).
    pub clean: bool,
}

/// What the graduated response chose for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The most severe level the trust is below, as recorded (in shadow mode, what would
    /// have happened).
    pub shown: GuardResponse,
    /// The most severe level that is carried out, if any.
    pub act: Option<Level>,
    /// The rate a throttled agent is held to.
    pub throttle: RateLimit,
}

/// What the guardrails saw in a request before the policy decided.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    /// The signals it raised.
    pub signals: Vec<Signal>,
    /// The agent's trust after them, in [0, 1].
    pub trust: f64,
    /// The signals' kinds, for Cedar's `context.anomaly`.
    pub kinds: Vec<&'static str>,
}

/// A rate limit's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RateKey {
    Agent(AgentId),
    Task(TaskId),
    Human(HumanId),
    /// The throttle of an agent the graduated response holds back.
    Throttle(AgentId),
}

impl RateKey {
    /// Why a request was refused when this key's `limit` is reached, in words.
    fn reached(&self, limit: RateLimit) -> String {
        let what = match self {
            RateKey::Agent(a) => format!("agent `{a}` (with its sub-agents)"),
            RateKey::Task(t) => format!("task `{t}`"),
            RateKey::Human(h) => format!("everything on behalf of `{h}`"),
            RateKey::Throttle(a) => return format!("agent `{a}` is throttled to {limit} while its trust is low"),
        };
        format!("rate limit {limit} reached for {what}")
    }
}

/// A rate limit was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// Which limit, in words.
    pub reason: String,
    /// Seconds until a retry can conform.
    pub retry_after: u64,
}

#[derive(Debug)]
struct Slot {
    guard: AgentGuard,
    dirty: bool,
}

/// The guardrails service: per-agent baselines and trust, rate-limit counters and the
/// budget ledger (its state), and the responses to what they see: quarantine and
/// containment ([`respond`]), carried out through the revocation service.
pub struct Guardrails {
    config: GuardConfig,
    /// Each agent's state, sharded: decisions about different agents take different locks.
    agents: crate::shards::Shards<AgentId, Slot>,
    rates: Mutex<HashMap<RateKey, Gcra>>,
    ledger: Mutex<Ledger>,
    store: Arc<dyn Store>,
    events: Arc<EventBus>,
    revocation: Arc<Revocation>,
    /// How many servers share the database (and so each rate limit): each enforces its
    /// share of every limit.
    servers: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardrails").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Guardrails {
    /// Loads baselines, trust, live budgets and what they have spent.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        mut config: GuardConfig,
        now: UnixTime,
        events: Arc<EventBus>,
        revocation: Arc<Revocation>,
    ) -> Result<Self, StoreError> {
        config.response.thresholds.quarantine_below = config.trust.quarantine_below;
        let mut agents = HashMap::new();
        for (id, state) in store.guard_states().await? {
            match serde_json::from_str::<AgentGuard>(&state) {
                Ok(guard) => {
                    agents.insert(id, Slot { guard, dirty: false });
                }
                Err(e) => tracing::warn!(agent = %id, error = %e, "ignoring an unreadable guard state"),
            }
        }
        let mut ledger = Ledger::default();
        for (jti, parent, budget, exp) in store.live_budgets(now).await? {
            ledger.open(jti, parent, budget, exp);
        }
        for (jti, counter, spent) in store.live_spends(now).await? {
            ledger.restore(&jti, &counter, spent);
        }
        Ok(Guardrails {
            config,
            agents: crate::shards::Shards::from_entries(agents),
            rates: Mutex::new(HashMap::new()),
            servers: std::sync::atomic::AtomicU64::new(1),
            ledger: Mutex::new(ledger),
            store,
            events,
            revocation,
        })
    }

    /// The settings.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    fn with_agent<T>(&self, agent: &AgentId, now: UnixTime, f: impl FnOnce(&mut AgentGuard) -> T) -> Option<T> {
        self.agents.with(agent, |map| {
            let slot = map
                .entry(agent.clone())
                .or_insert_with(|| Slot { guard: AgentGuard::new(&self.config, now), dirty: true });
            slot.dirty = true;
            f(&mut slot.guard)
        })
    }

    fn penalise(&self, guard: &mut AgentGuard, signals: &mut [Signal], now: UnixTime) -> f64 {
        Trust::price(&self.config.trust, signals);
        guard.trust = guard.trust.penalise(&self.config.trust, signals, now);
        for s in signals {
            guard.recent.push((now, s.clone()));
        }
        let excess = guard.recent.len().saturating_sub(RECENT_SIGNALS);
        guard.recent.drain(..excess);
        guard.trust.current(&self.config.trust, now)
    }

    /// Before the policy decides: the request's signals against the agent's baseline,
    /// and its trust after them. With guardrails disabled: no signals, full trust.
    pub fn assess(&self, agent: &AgentId, action: &str, resource: &str, now: UnixTime) -> Assessment {
        if !self.config.enabled {
            return Assessment { signals: Vec::new(), trust: 1.0, kinds: Vec::new() };
        }
        let cfg = &self.config.baseline;
        let assessed = self.with_agent(agent, now, |g| {
            let mut signals = g.baseline.assess(cfg, action, resource, now);
            let trust = self.penalise(g, &mut signals, now);
            (signals, trust)
        });
        // A poisoned lock is a failure on the decision path: report no trust at all,
        // which every trust-aware policy denies and the quarantine check catches.
        let (signals, trust) = assessed.unwrap_or_default();
        let kinds = signals.iter().map(|s| s.kind.as_str()).collect();
        Assessment { signals, trust, kinds }
    }

    /// Once the decision is known: learns from an allow (and a `clean` one, that raised
    /// no signal, earns trust back), counts a probing deny. Returns the new signals and
    /// the trust after them.
    pub fn record(&self, agent: &AgentId, request: Recorded<'_>, now: UnixTime) -> (Vec<Signal>, f64) {
        if !self.config.enabled {
            return (Vec::new(), 1.0);
        }
        let cfg = &self.config.baseline;
        let Recorded { action, resource, allowed, probing, clean } = request;
        self.with_agent(agent, now, |g| {
            let mut signals = g.baseline.record(cfg, action, resource, allowed, probing, now);
            if allowed && clean {
                g.trust = g.trust.clean(&self.config.trust, now);
            }
            let trust = self.penalise(g, &mut signals, now);
            (signals, trust)
        })
        .unwrap_or_default()
    }

    /// What a policy sees of `agent`'s recent activity for a request of `action` on
    /// `resource` in `task` at `now`. Nothing known (a poisoned lock) reads as no activity.
    pub fn history_view(
        &self,
        agent: &AgentId,
        action: &str,
        resource: &str,
        task: &TaskId,
        now: UnixTime,
    ) -> warrant_core::guard::history::HistoryView {
        let prefix = warrant_core::guard::baseline::resource_prefix(resource);
        self.agents
            .with(agent, |map| map.get(agent).map(|s| s.guard.history.view(action, prefix, task.as_str(), now)))
            .flatten()
            .unwrap_or_default()
    }

    /// Counts an allowed request in `agent`'s recent activity (with the integer fields of
    /// its telemetry summed per action).
    pub fn record_history(
        &self,
        agent: &AgentId,
        req: &crate::request::AuthorizeRequest,
        task: &TaskId,
        now: UnixTime,
    ) {
        let prefix = warrant_core::guard::baseline::resource_prefix(&req.resource);
        let fields: Vec<(&str, i64)> = req
            .context
            .as_deref()
            .and_then(serde_json::Value::as_object)
            .map(|o| o.iter().filter_map(|(k, v)| v.as_i64().map(|n| (k.as_str(), n))).collect())
            .unwrap_or_default();
        let _ = self.with_agent(agent, now, |g| g.history.record(&req.action, prefix, task.as_str(), &fields, now));
    }

    /// The owner of `agent` announced a deploy of `version` at `now`: for the deploy grace
    /// period, its new actions and resource prefixes that are not sensitive cost no trust.
    pub fn announce_deploy(&self, agent: &AgentId, version: &str, now: UnixTime) {
        let cfg = &self.config.baseline;
        let _ = self.with_agent(agent, now, |g| g.baseline.announce_deploy(cfg, version, now));
    }

    /// The graduated response settings that apply to `agent` (its label's, if a rule
    /// names one of its labels).
    pub fn response_config(&self, agent: &Agent) -> std::borrow::Cow<'_, ResponseConfig> {
        match rule_for(&self.config.response_labels, &agent.labels) {
            Some(rule) => std::borrow::Cow::Owned(self.config.response.with(rule)),
            None => std::borrow::Cow::Borrowed(&self.config.response),
        }
    }

    /// The response the graduated response chooses for `agent` at `trust`, with guardrails
    /// on: the most severe level it is below (recorded, enforced or in shadow mode), and
    /// the most severe level that is carried out. Quarantine is carried out only with
    /// automatic quarantine on.
    pub fn plan(&self, agent: &Agent, trust: f64) -> Option<Planned> {
        if !self.config.enabled {
            return None;
        }
        let cfg = self.response_config(agent);
        let mut shown = cfg.respond(trust)?;
        let carried = |l: Level| !cfg.shadow.contains(&l);
        shown.enforced = carried(shown.level) && (shown.level != Level::Quarantine || self.config.auto_quarantine);
        let act = Level::ALL.into_iter().rev().find(|&l| trust < cfg.thresholds.of(l) && carried(l));
        Some(Planned { shown, act, throttle: cfg.throttle })
    }

    /// Notes a response chosen for `agent` in its guard state (for `warrant agent trust`)
    /// and publishes it as a `response` event, unless the last one noted was the same
    /// level, as carried out, less than a minute ago (an agent that stays below a
    /// threshold is noted once a minute, not at every request).
    pub fn note_response(&self, agent: &AgentId, response: &GuardResponse, now: UnixTime) {
        let noted = self.with_agent(agent, now, |g| {
            let repeat = g.responses.last().is_some_and(|(at, last)| {
                last.level == response.level && last.enforced == response.enforced && at.until(now) < 60
            });
            if !repeat {
                g.responses.push((now, response.clone()));
                let excess = g.responses.len().saturating_sub(RECENT_SIGNALS);
                g.responses.drain(..excess);
            }
            !repeat
        });
        if noted == Some(true) {
            self.events.publish_with(crate::events::EventKind::Response, now, Some(agent), || {
                serde_json::to_value(response).unwrap_or_default()
            });
        }
    }

    /// Holds a throttled agent to `limit`, over its whole subtree (`chain`).
    pub fn throttle(&self, chain: &[AgentId], limit: RateLimit, now: UnixTime) -> Result<(), RateLimited> {
        self.take(chain.iter().map(|a| (RateKey::Throttle(a.clone()), limit)).collect(), now)
    }

    /// A delegation made by `agent`: its fan-out. Returns the signals and trust.
    pub fn record_delegation(&self, agent: &AgentId, now: UnixTime) -> (Vec<Signal>, f64) {
        if !self.config.enabled {
            return (Vec::new(), 1.0);
        }
        let cfg = &self.config.baseline;
        self.with_agent(agent, now, |g| {
            let mut signals = g.baseline.record_delegation(cfg, now);
            let trust = self.penalise(g, &mut signals, now);
            (signals, trust)
        })
        .unwrap_or_default()
    }

    /// A probing deny by `warrant` (of `task`, expiring at `expires`) of `agent`: how to
    /// respond, at the smallest scale that contains it. With guardrails or automatic
    /// quarantine off: nothing.
    pub fn escalate(
        &self,
        agent: &AgentId,
        warrant: &warrant_core::WarrantId,
        task: &warrant_core::TaskId,
        request: u64,
        expires: UnixTime,
        now: UnixTime,
    ) -> warrant_core::guard::escalation::Response {
        use warrant_core::guard::escalation::Response;
        if !self.config.enabled || !self.config.auto_quarantine {
            return Response::None;
        }
        let cfg = &self.config.escalation;
        self.with_agent(agent, now, |g| g.ladder.probe(cfg, warrant, task, request, expires, now))
            .unwrap_or(Response::None)
    }

    /// Whether `trust` is below the quarantine threshold.
    pub fn below_threshold(&self, trust: f64) -> bool {
        self.config.enabled && trust < self.config.trust.quarantine_below
    }

    /// The owner resumed `agent`: its trust is raised to the resume floor and its deny
    /// streak forgotten, so the next request does not quarantine it again at once.
    pub fn resumed(&self, agent: &AgentId, now: UnixTime) {
        let cfg = &self.config.trust;
        let _ = self.with_agent(agent, now, |g| {
            g.trust = g.trust.resumed(cfg, now);
            g.baseline.deny_streak = 0;
            g.ladder.reset();
        });
    }

    /// An agent's guard state; one never seen is shown as it would start.
    pub fn agent_or_new(&self, agent: &AgentId, now: UnixTime) -> AgentGuard {
        self.agent(agent).unwrap_or_else(|| AgentGuard::new(&self.config, now))
    }

    /// An agent's guard state, if it has been seen.
    pub fn agent(&self, agent: &AgentId) -> Option<AgentGuard> {
        self.agents.with(agent, |map| map.get(agent).map(|s| s.guard.clone())).flatten()
    }

    /// The agent's trust at `now` (the initial trust for an agent never seen).
    pub fn trust_of(&self, agent: &AgentId, now: UnixTime) -> f64 {
        self.agent(agent).map_or(self.config.trust.initial, |g| g.trust.current(&self.config.trust, now))
    }

    /// Counts one request against every limit that applies: each agent of the chain
    /// (so a subtree shares its root's limit), the task and the human. All or nothing.
    pub fn check_rates(
        &self,
        chain: &[AgentId],
        task: &TaskId,
        human: &HumanId,
        now: UnixTime,
    ) -> Result<(), RateLimited> {
        let c = &self.config;
        if c.rate_agent.is_none() && c.rate_task.is_none() && c.rate_human.is_none() {
            return Ok(());
        }
        let servers = self.servers.load(std::sync::atomic::Ordering::Relaxed);
        let mut keys: Vec<(RateKey, RateLimit)> = Vec::with_capacity(chain.len() + 2);
        if let Some(limit) = c.rate_agent.map(|l| share(l, servers)) {
            keys.extend(chain.iter().map(|a| (RateKey::Agent(a.clone()), limit)));
        }
        if let Some(limit) = c.rate_task.map(|l| share(l, servers)) {
            keys.push((RateKey::Task(task.clone()), limit));
        }
        if let Some(limit) = c.rate_human.map(|l| share(l, servers)) {
            keys.push((RateKey::Human(human.clone()), limit));
        }
        self.take(keys, now)
    }

    /// Counts one request against every one of `keys`, all or nothing: the first limit
    /// that is reached refuses it and nothing is counted.
    fn take(&self, keys: Vec<(RateKey, RateLimit)>, now: UnixTime) -> Result<(), RateLimited> {
        let Ok(mut rates) = self.rates.lock() else {
            return Err(RateLimited { reason: "the rate limiter is unavailable".into(), retry_after: 1 });
        };
        let mut next = Vec::with_capacity(keys.len());
        for (key, limit) in &keys {
            let state = rates.get(key).copied().unwrap_or_default();
            match state.check(*limit, now) {
                Ok(s) => next.push(s),
                Err(retry_after) => return Err(RateLimited { reason: key.reached(*limit), retry_after }),
            }
        }
        for ((key, _), state) in keys.into_iter().zip(next) {
            rates.insert(key, state);
        }
        if rates.len() > 1_000_000 {
            // Keys idle long enough to be fully replenished carry no information.
            let now_f = now.secs() as f64;
            rates.retain(|_, g| g.tat > now_f);
        }
        Ok(())
    }

    /// Charges the request's telemetry to the warrant's budget and every ancestor's.
    /// `budgeted` is the warrant's own budget: every counter an ancestor budgets is in it
    /// (a delegation gets at most what its parent has left, counter by counter), so a
    /// warrant without one charges nothing. Returns the charges made. On one server they
    /// are charged in memory and persisted with the decision's audit record
    /// ([`Guardrails::charges_in_store`] is false); on a database several servers share,
    /// the store charges them exactly against every server's spending, durable before
    /// this returns.
    pub async fn charge(
        &self,
        jti: &WarrantId,
        budgeted: &Budget,
        telemetry: Option<&serde_json::Value>,
    ) -> Result<Vec<Charge>, ChargeError> {
        if self.charges_in_store() {
            if budgeted.is_empty() {
                return Ok(Vec::new());
            }
            let counters: Vec<String> = budgeted.keys().cloned().collect();
            let amounts = amounts_of(&counters, telemetry)?;
            if amounts.values().all(|&amount| amount == 0) {
                return Ok(Vec::new());
            }
            let amounts = |_: &[String]| Ok(amounts.clone());
            return match self.store.charge_budget(jti, &amounts).await {
                Ok(charged) => charged,
                Err(e) => Err(ChargeError::Unavailable(e.to_string())),
            };
        }
        let Ok(mut ledger) = self.ledger.lock() else {
            return Err(ChargeError::Unavailable("the budget ledger is unavailable".into()));
        };
        if ledger.is_empty() {
            return Ok(Vec::new());
        }
        let counters = ledger.counters(jti);
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let amounts = amounts_of(&counters, telemetry)?;
        ledger.charge(jti, &amounts)
    }

    /// Sets how many servers share the database: from then on this server enforces
    /// `limit / servers` (at least 1) of every rate limit, so the servers together allow
    /// at most the limit (or one per server, when the limit is below the number of
    /// servers). Heard from the change feed's heartbeat.
    pub fn set_servers(&self, servers: u64) {
        self.servers.store(servers.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many servers this one believes share the database (1 alone).
    pub fn servers(&self) -> u64 {
        self.servers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether budgets are charged in the store (a database several servers share)
    /// rather than in memory: then a decision's charges are durable before its audit
    /// record, which carries none.
    pub fn charges_in_store(&self) -> bool {
        self.store.shared()
    }

    /// Gives charges back (the decision they were made for was not recorded): in memory,
    /// or, when the store charged them, in the store (in the background; a failure is
    /// logged and leaves the amount spent, never more than was allowed).
    pub fn refund(&self, charges: &[Charge]) {
        if charges.is_empty() {
            return;
        }
        if self.charges_in_store() {
            let (store, charges) = (Arc::clone(&self.store), charges.to_vec());
            tokio::spawn(async move {
                if let Err(e) = store.refund_budget(&charges).await {
                    tracing::error!(error = %e, "could not give back the charges of an unrecorded decision; they stay spent");
                }
            });
            return;
        }
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.refund(charges);
        }
    }

    /// Registers a freshly issued warrant's budget.
    pub fn open_budget(&self, jti: &WarrantId, parent: Option<&WarrantId>, budget: &Budget, exp: UnixTime) {
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.open(jti.clone(), parent.cloned(), budget.clone(), exp);
        }
    }

    /// What `jti` may still spend (empty: no budget), counting every server's spending
    /// when the store charges budgets.
    pub async fn budget_left(&self, jti: &WarrantId) -> Result<Budget, StoreError> {
        if self.charges_in_store() {
            return self.store.budget_left(jti).await;
        }
        Ok(self.ledger.lock().map(|l| l.left(jti)).unwrap_or_default())
    }

    /// Writes every changed agent state to the store (periodically and at shutdown).
    pub async fn flush(&self, now: UnixTime) -> Result<usize, StoreError> {
        let store = self.store.as_ref();
        let mut states: Vec<(AgentId, String, UnixTime)> = Vec::new();
        self.agents.for_each_shard(|map| {
            states.extend(map.iter_mut().filter(|(_, s)| s.dirty).filter_map(|(id, s)| {
                s.dirty = false;
                serde_json::to_string(&s.guard).ok().map(|json| (id.clone(), json, now))
            }));
        });
        if states.is_empty() {
            return Ok(0);
        }
        let n = states.len();
        if let Err(e) = store.save_guard_states(&states).await {
            // Mark them dirty again so the next flush retries.
            for (id, _, _) in &states {
                self.agents.with(id, |map| {
                    if let Some(s) = map.get_mut(id) {
                        s.dirty = true;
                    }
                });
            }
            return Err(e);
        }
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.sweep(now);
        }
        Ok(n)
    }
}

/// This server's share of `limit` when `servers` share it: the limit divided evenly, at
/// least 1 (a limit of 0 stays 0).
fn share(limit: RateLimit, servers: u64) -> RateLimit {
    if limit.limit == 0 || servers <= 1 {
        return limit;
    }
    RateLimit { limit: (limit.limit / servers).max(1), per_secs: limit.per_secs }
}

/// The request's amount for each of `counters`, from its telemetry (a missing or null
/// value is 0); anything but a whole number is refused.
fn amounts_of(counters: &[String], telemetry: Option<&serde_json::Value>) -> Result<Budget, ChargeError> {
    let mut amounts = Budget::new();
    for counter in counters {
        let amount = match telemetry.and_then(|t| t.get(counter)) {
            None | Some(serde_json::Value::Null) => 0,
            Some(v) => v.as_i64().ok_or_else(|| ChargeError::BadAmount { counter: counter.clone() })?,
        };
        amounts.insert(counter.clone(), amount);
    }
    Ok(amounts)
}
