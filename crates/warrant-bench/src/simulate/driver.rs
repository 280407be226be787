//! The driver: a real engine in-process (SQLite in memory or on tmpfs, a
//! [`ManualClock`]), many agents registered in it, their streams merged by time and every
//! event run through the engine's own entry points: `Decisions` for actions, the token
//! endpoint for warrants and delegations.
//!
//! Each agent with its own warrant mints one a day (autonomous, scope
//! [`ROOT_SCOPE`](super::behaviour::ROOT_SCOPE), 24 h): the warrants expiring within 15
//! minutes are renewed together every 5 simulated minutes (concurrently, as a fleet of
//! agents would; they all start together, so they renew together once a day), and an
//! agent whose warrant was revoked, or is within 10 minutes of expiry, mints on its own
//! before it acts. A quarantined agent cannot mint (it retries hourly) and keeps sending
//! with its revoked warrant (a real agent gets a deny and keeps trying), which is counted.
//! Delegations made in the same second are run concurrently too.
//!
//! The clock is set before each event. Decisions are either answered one by one
//! ([`Answering::EachDecision`]) or queued (decided synchronously, in order, so each
//! agent's decisions keep their order) and answered in batches once their audit records
//! are durable ([`Answering::Queued`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use warrant_core::{Agent, Mode};
use warrant_engine::audit::AuditConfig;
use warrant_engine::decisions::Queued;
use warrant_engine::guard::GuardConfig;
use warrant_engine::issuer::{
    ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT,
};
use warrant_engine::{
    AuthorizeRequest, Decision, DecisionCode, Engine, EngineConfig, Issued, ManualClock, NewAgent, NewHuman, Outcome,
    TokenError, TokenRequest,
};
use warrant_store::SqliteStore;
use warrant_token::KeyPair;

use super::announce_deploy;
use super::behaviour::{
    Attack, Behaviour, Event, EventKind, Generator, Label, Role, Scenario, Volume, DAY, DELEGATION_TTL, ROOT_SCOPE,
};
use super::classify::{classify, classify_refusal, Response};
use super::report::{AttackReport, BenignReport, Containment, Step, Tally};
use super::rng::{mix, SplitMix64};
use crate::{ISSUER, T0};

/// How long a root warrant is asked to live: a day.
pub const ROOT_TTL: i64 = 86_400;
/// A root warrant this close to its expiry is replaced.
pub const RENEW_BEFORE: i64 = 600;
/// A refused mint is tried again after this long.
pub const MINT_RETRY: i64 = 3_600;
/// Every RENEWAL_EVERY seconds, the warrants expiring within this long are renewed
/// together (concurrently, as many agents would): all agents mint at the start, so
/// they stay in step and renew in one go once a day. An agent whose warrant was revoked,
/// or that had no event in time, mints on its own before acting.
pub const RENEW_AHEAD: i64 = 900;
/// How often warrants due are renewed together.
pub const RENEWAL_EVERY: i64 = 300;
/// The most token requests (mints, delegations) run at once.
pub const CONCURRENT_TOKENS: usize = 64;
/// The most decisions one engine's database holds by default: a run larger than this is
/// spread over several engines, one after the other. A smaller database is faster (10,000
/// agent-days of `batch-daily`, 2.5 million decisions: 250 s in one engine, 140 s in
/// engines of 1,000,000, 107 s in engines of 250,000, 94 s in engines of 100,000).
pub const DECISIONS_PER_ENGINE: u64 = 250_000;
/// The most agents (groups) per engine.
pub const GROUPS_PER_ENGINE: u64 = 200;

/// A simulation failed to set up (an engine that did not open, an agent that could not
/// be registered). Decisions never fail: a deny is a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError(pub String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

fn err(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> SimError + '_ {
    move |e| SimError(format!("{what}: {e}"))
}

/// How decisions are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// `Decisions::authorize`: each waits for its own audit record.
    EachDecision,
    /// `Decisions::authorize_queued`, answered (`Decisions::answer`) `batch` at a time.
    Queued {
        /// How many decisions wait before they are answered together.
        batch: usize,
    },
}

/// What a simulation runs with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The guardrails' settings (the default unless varied).
    pub guard: GuardConfig,
    /// The seed every stream and key derives from.
    pub seed: u64,
    /// How decisions are answered.
    pub answering: Answering,
    /// How much traffic an agent-day carries.
    pub volume: Volume,
    /// Where the engine's database lives.
    pub storage: Storage,
    /// The most decisions one engine is sized for (see [`plan`]).
    pub decisions_per_engine: u64,
}

/// Where a simulation's SQLite database lives. The engine is the same either way. In
/// memory it decides about 20 % more requests a second while the database is small, but
/// slows down as it grows past a million records or so; on tmpfs it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// A file in a temporary directory on tmpfs (`/dev/shm`, else the default temporary
    /// directory): the server's own configuration (WAL, synchronous), without a disk.
    #[default]
    Tmpfs,
    /// SQLite's in-memory database: no file system at all, every page in the process.
    Memory,
}

impl Storage {
    /// Its name (`tmpfs`, `memory`).
    pub fn name(self) -> &'static str {
        match self {
            Storage::Tmpfs => "tmpfs",
            Storage::Memory => "memory",
        }
    }

    /// The storage of a name.
    pub fn parse(name: &str) -> Option<Storage> {
        [Storage::Tmpfs, Storage::Memory].into_iter().find(|s| s.name() == name)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            guard: GuardConfig::default(),
            seed: 1,
            answering: Answering::Queued { batch: 1_000 },
            volume: Volume::default(),
            storage: Storage::default(),
            decisions_per_engine: DECISIONS_PER_ENGINE,
        }
    }
}

/// Where a simulation is, for progress reports.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The behaviour or attack.
    pub scenario: Scenario,
    /// Agent-days simulated so far.
    pub agent_days: u64,
    /// Agent-days in all.
    pub of: u64,
    /// Decisions so far.
    pub decisions: u64,
    /// Wall time so far.
    pub elapsed: Duration,
}

/// A real engine for a simulation: SQLite in a temporary directory on tmpfs (when there
/// is one) or in memory, warrants of up to a day, the default policy set, the given
/// guardrails.
pub struct SimEngine {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its clock, moved by the driver.
    pub clock: Arc<ManualClock>,
    /// The data directory, removed on drop (empty with [`Storage::Memory`]).
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for SimEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEngine").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// Opens a [`SimEngine`] at [`T0`]. Must be called inside a tokio runtime.
pub async fn open_engine(guard: GuardConfig, storage: Storage) -> Result<SimEngine, SimError> {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("warrant-sim-");
        b
    };
    let dir = if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }
        .map_err(|e| err("a temporary directory")(&e))?;
    let store = match storage {
        Storage::Tmpfs => SqliteStore::open(&dir.path().join("warrant.db")),
        Storage::Memory => SqliteStore::open_in_memory(),
    };
    let store = Arc::new(store.map_err(|e| err("the SQLite store")(&e))?);
    let clock = Arc::new(ManualClock::at(T0));
    let mut config = EngineConfig::for_issuer(ISSUER);
    // A throw-away database: a fixed key-encryption key is enough.
    config.kek = Some(warrant_token::Kek::from_bytes([0x42; 32]));
    config.limits.max_ttl = ROOT_TTL;
    config.audit = AuditConfig { queue_capacity: 1 << 16, ..AuditConfig::default() };
    config.guard = guard;
    let engine = Engine::open(store, Arc::clone(&clock) as _, config).await.map_err(|e| err("the engine")(&e))?;
    Ok(SimEngine { engine: Arc::new(engine), clock, dir })
}

/// How a benign run of some agent-days is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Simulated days.
    pub days: u32,
    /// Groups (agents, or orchestrators with their workers) per engine, one engine after
    /// the other.
    pub engines: Vec<u64>,
}

impl Plan {
    /// Groups in all.
    pub fn groups(&self) -> u64 {
        self.engines.iter().sum()
    }
}

/// The layout of `agent_days` of `behaviour` at `volume`: 10 to 50 days (200 agents ×
/// 50 days for 10,000 agent-days), each engine holding at most `per_engine_decisions`
/// decisions (and [`GROUPS_PER_ENGINE`] groups).
pub fn plan(behaviour: Behaviour, agent_days: u64, volume: Volume, per_engine_decisions: u64) -> Plan {
    let days = u32::try_from((agent_days / 200).clamp(10, 50)).unwrap_or(50);
    let per_group = u64::try_from(behaviour.agents_per_group()).unwrap_or(1);
    let group_days = u64::from(days) * per_group;
    let groups = agent_days.div_ceil(group_days).max(1);
    let per_engine = (per_engine_decisions / (behaviour.volume_per_agent_day(volume) * group_days).max(1))
        .clamp(1, GROUPS_PER_ENGINE);
    let n = groups.div_ceil(per_engine);
    // Even shares, the first ones one larger.
    let engines = (0..n).map(|i| groups / n + u64::from(i < groups % n)).collect();
    Plan { days, engines }
}

/// Runs `agent_days` of `behaviour`, laid out by [`plan`].
pub async fn run_benign(
    behaviour: Behaviour,
    agent_days: u64,
    config: &SimConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BenignReport, SimError> {
    run_benign_plan(
        behaviour,
        &plan(behaviour, agent_days, config.volume, config.decisions_per_engine),
        config,
        progress,
    )
    .await
}

/// Runs `behaviour` laid out as `plan` says.
pub async fn run_benign_plan(
    behaviour: Behaviour,
    plan: &Plan,
    config: &SimConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BenignReport, SimError> {
    let per_group = u64::try_from(behaviour.agents_per_group()).unwrap_or(1);
    let total = plan.groups() * per_group * u64::from(plan.days);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut first_group = 0_u64;
    for &groups in &plan.engines {
        let sim = open_engine(config.guard.clone(), config.storage).await?;
        let gens: Vec<Generator> = (first_group..first_group + groups)
            .map(|g| Generator::benign(behaviour, mix(config.seed, g), T0, plan.days, config.volume))
            .collect();
        let mut run = Run::register(&sim, gens, config, mix(config.seed, first_group)).await?;
        let done_before = first_group * per_group * u64::from(plan.days);
        let base = tally.decisions;
        run.run(&mut |elapsed, decisions| {
            let days = u64::try_from(elapsed / DAY).unwrap_or(0);
            progress(&Progress {
                scenario: Scenario::Benign(behaviour),
                agent_days: done_before + groups * per_group * days,
                of: total,
                decisions: base + decisions,
                elapsed: started.elapsed(),
            });
        })
        .await?;
        tally.merge(&run.tally);
        sim.engine.close().await;
        first_group += groups;
        drop(run);
        drop(sim);
    }
    let wall = started.elapsed();
    progress(&Progress {
        scenario: Scenario::Benign(behaviour),
        agent_days: total,
        of: total,
        decisions: tally.decisions,
        elapsed: wall,
    });
    Ok(BenignReport {
        behaviour,
        agents: plan.groups() * per_group,
        days: plan.days,
        agent_days: total,
        engines: plan.engines.len(),
        tally,
        wall,
    })
}

/// Runs `runs` runs of `attack`, each on its own agent (its own seed), in one engine.
pub async fn run_attack(
    attack: Attack,
    runs: u64,
    config: &SimConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<AttackReport, SimError> {
    let started = Instant::now();
    let sim = open_engine(config.guard.clone(), config.storage).await?;
    let seed = mix(config.seed, 0x00A7_7AC4);
    let gens: Vec<Generator> = (0..runs).map(|r| Generator::attack(attack, mix(seed, r), T0, config.volume)).collect();
    let agents = gens.first().map_or(0, |g| g.actors().len());
    let total = runs * u64::try_from(agents).unwrap_or(0) * u64::from(attack.days());
    let mut run = Run::register(&sim, gens, config, seed).await?;
    run.run(&mut |elapsed, decisions| {
        let days = u64::try_from(elapsed / DAY).unwrap_or(0);
        progress(&Progress {
            scenario: Scenario::Attack(attack),
            agent_days: runs * u64::try_from(agents).unwrap_or(0) * days,
            of: total,
            decisions,
            elapsed: started.elapsed(),
        });
    })
    .await?;
    sim.engine.close().await;
    progress(&Progress {
        scenario: Scenario::Attack(attack),
        agent_days: total,
        of: total,
        decisions: run.tally.decisions,
        elapsed: started.elapsed(),
    });
    let containment: Vec<Containment> = run.steps.iter().map(|s| Containment::of(s)).collect();
    let tally = std::mem::take(&mut run.tally);
    Ok(AttackReport { attack, runs: containment, tally, wall: started.elapsed() })
}

/// One actor's state.
struct Actor {
    role: Role,
    /// Its group.
    group: usize,
    /// The registered agent and its key (none for a thief).
    agent: Option<(Agent, KeyPair)>,
    /// The warrant it acts with.
    token: Option<String>,
    /// Its `jti`.
    jti: Option<String>,
    /// Its expiry.
    exp: i64,
    /// It was revoked (learnt from a decision or a refused delegation).
    revoked: bool,
    /// No mint before this time (after a refused one).
    retry_mint_at: i64,
}

/// One group's stream and where its actors are.
struct Group {
    generator: Generator,
    buffer: VecDeque<Event>,
    /// Index of its first actor in [`Run::actors`].
    base: usize,
}

/// What a queued decision is scored as once answered.
#[derive(Clone, Copy)]
struct Meta {
    group: usize,
    label: Label,
}

/// A simulation in progress over one engine.
struct Run {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    endpoint: String,
    answering: Answering,
    actors: Vec<Actor>,
    groups: Vec<Group>,
    pending: Vec<(Queued, Meta)>,
    tally: Tally,
    /// Per group, its attack's numbered actions (empty for a benign group).
    steps: Vec<Vec<Step>>,
    assertions: u64,
}

impl Run {
    /// Registers every group's human (its owner) and agents.
    async fn register(sim: &SimEngine, gens: Vec<Generator>, config: &SimConfig, seed: u64) -> Result<Run, SimError> {
        let engine = Arc::clone(&sim.engine);
        let mut rng = SplitMix64::new(seed);
        let mut actors = Vec::new();
        let mut groups = Vec::with_capacity(gens.len());
        let mut steps = Vec::with_capacity(gens.len());
        for (g, generator) in gens.into_iter().enumerate() {
            let scenario = generator.scenario();
            let tag = format!("{}-{g}-{seed:x}", scenario.name());
            let human = engine
                .registry()
                .add_human(NewHuman {
                    name: format!("owner of {tag}"),
                    email: format!("owner-{tag}@sim.example"),
                    entitlements: vec!["*".into()],
                    roles: Vec::new(),
                    external_id: None,
                })
                .await
                .map_err(|e| err("a human")(&e))?;
            let base = actors.len();
            for spec in generator.actors() {
                let agent = match spec.role {
                    Role::Thief { .. } => None,
                    Role::Root | Role::Worker => {
                        let mut seed_bytes = [0_u8; 32];
                        for chunk in seed_bytes.chunks_mut(8) {
                            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                        }
                        let key = KeyPair::from_seed(&seed_bytes);
                        let agent = engine
                            .registry()
                            .add_agent(NewAgent {
                                name: format!("{tag}-{}", spec.name),
                                owner: human.id.to_string(),
                                mode: Mode::Autonomous,
                                max_scope: vec!["*".into()],
                                public_key: Some(key.public_jwk()),
                                spiffe_id: None,
                                expires_at: None,
                                labels: std::collections::BTreeMap::from([(
                                    "scenario".to_owned(),
                                    scenario.name().to_owned(),
                                )]),
                            })
                            .await
                            .map_err(|e| err("an agent")(&e))?;
                        Some((agent, key))
                    }
                };
                actors.push(Actor {
                    role: spec.role,
                    group: g,
                    agent,
                    token: None,
                    jti: None,
                    exp: 0,
                    revoked: false,
                    retry_mint_at: 0,
                });
            }
            let n = match scenario {
                Scenario::Attack(a) => usize::try_from(a.actions()).unwrap_or(0),
                Scenario::Benign(_) => 0,
            };
            steps.push(vec![Step::default(); n]);
            groups.push(Group { generator, buffer: VecDeque::new(), base });
        }
        Ok(Run {
            endpoint: engine.config().token_endpoint(),
            engine,
            clock: Arc::clone(&sim.clock),
            answering: config.answering,
            actors,
            groups,
            pending: Vec::new(),
            tally: Tally::default(),
            steps,
            assertions: 0,
        })
    }

    fn now(&self) -> i64 {
        self.engine.now().0
    }

    /// Fills group `g`'s buffer with its next non-empty window, if any is left.
    fn refill(&mut self, g: usize) {
        let Some(group) = self.groups.get_mut(g) else { return };
        while group.buffer.is_empty() {
            match group.generator.next_window() {
                Some(events) => group.buffer.extend(events),
                None => break,
            }
        }
    }

    fn head(&self, g: usize) -> Option<i64> {
        self.groups.get(g).and_then(|group| group.buffer.front()).map(|e| e.at.0)
    }

    /// Runs every group's stream to its end, merged by time; `progress` hears the
    /// simulated seconds elapsed and the decisions made at each new simulated hour.
    async fn run(&mut self, progress: &mut dyn FnMut(i64, u64)) -> Result<(), SimError> {
        let mut heap = BinaryHeap::with_capacity(self.groups.len());
        for g in 0..self.groups.len() {
            self.refill(g);
            if let Some(t) = self.head(g) {
                heap.push(Reverse((t, g)));
            }
        }
        let mut hour = 0;
        // Warrants due are renewed together, every RENEWAL_EVERY seconds.
        let mut renewal = T0.0;
        while let Some(Reverse((t, g))) = heap.pop() {
            let now = self.now();
            if t > now {
                self.clock.advance(t - now);
            }
            if (t - T0.0) / 3_600 > hour {
                hour = (t - T0.0) / 3_600;
                progress(t - T0.0, self.tally.decisions + u64::try_from(self.pending.len()).unwrap_or(0));
            }
            if t >= renewal {
                self.renew_all().await;
                renewal = t - (t - T0.0).rem_euclid(RENEWAL_EVERY) + RENEWAL_EVERY;
            }
            let Some(event) = self.pop(g, t) else { continue };
            if !matches!(event.kind, EventKind::Delegate { .. }) {
                self.handle(g, event).await;
                self.requeue(g, &mut heap);
                continue;
            }
            // The delegations of this second, its group's and others', go together.
            let mut batch = vec![(g, event)];
            self.take_delegations(g, t, &mut batch);
            self.requeue(g, &mut heap);
            while let Some(&Reverse((t2, g2))) = heap.peek() {
                if t2 != t || !self.delegation_next(g2, t) {
                    break;
                }
                heap.pop();
                self.take_delegations(g2, t, &mut batch);
                self.requeue(g2, &mut heap);
            }
            self.delegate_all(batch).await;
        }
        self.flush().await;
        let end = self.now();
        progress(end - T0.0, self.tally.decisions);
        Ok(())
    }

    /// Group `g`'s next event, if it is at `t`.
    fn pop(&mut self, g: usize, t: i64) -> Option<Event> {
        let buffer = &mut self.groups.get_mut(g)?.buffer;
        if buffer.front()?.at.0 != t {
            return None;
        }
        buffer.pop_front()
    }

    /// Whether group `g`'s next event is a delegation at `t`.
    fn delegation_next(&self, g: usize, t: i64) -> bool {
        self.groups
            .get(g)
            .and_then(|group| group.buffer.front())
            .is_some_and(|e| e.at.0 == t && matches!(e.kind, EventKind::Delegate { .. }))
    }

    /// Moves group `g`'s delegations at `t` into `batch`.
    fn take_delegations(&mut self, g: usize, t: i64, batch: &mut Vec<(usize, Event)>) {
        while self.delegation_next(g, t) {
            if let Some(e) = self.pop(g, t) {
                batch.push((g, e));
            }
        }
    }

    /// Puts group `g` back in the heap at its next event (refilled when it ran out).
    fn requeue(&mut self, g: usize, heap: &mut BinaryHeap<Reverse<(i64, usize)>>) {
        if self.groups.get(g).is_some_and(|group| group.buffer.is_empty()) {
            self.refill(g);
        }
        if let Some(t) = self.head(g) {
            heap.push(Reverse((t, g)));
        }
    }

    async fn handle(&mut self, g: usize, event: Event) {
        let Some(base) = self.groups.get(g).map(|group| group.base) else { return };
        let actor = base + event.actor;
        if matches!(event.kind, EventKind::Delegate { .. }) {
            self.delegate_all(vec![(g, event)]).await;
            return;
        }
        match event.kind {
            EventKind::Action { action, resource, context } => {
                self.act(g, actor, action, resource, context, event.label).await;
            }
            EventKind::Delegate { .. } => {}
            EventKind::AnnounceDeploy { version } => {
                if let Some((agent, _)) = self.actors.get(actor).and_then(|a| a.agent.as_ref()) {
                    announce_deploy(&self.engine, &agent.id, &version, self.engine.now());
                    self.tally.deploys += 1;
                }
            }
        }
    }

    /// A fresh client assertion for `actor`.
    fn assertion(&mut self, actor: usize) -> Option<String> {
        self.assertions += 1;
        let jti = format!("sim-{}", self.assertions);
        let (agent, key) = self.actors.get(actor)?.agent.as_ref()?;
        warrant_token::assertion::make_assertion(key, &agent.id, &self.endpoint, self.engine.now(), &jti).ok()
    }

    /// Whether `actor` needs a new warrant of its own: it has none, it is revoked or it
    /// expires within `ahead` seconds (and no refused mint holds it back).
    fn needs_mint(&self, actor: usize, ahead: i64) -> bool {
        let now = self.now();
        self.actors.get(actor).is_some_and(|a| {
            let fresh = a.token.is_some() && !a.revoked && a.exp - now > ahead;
            a.role == Role::Root && !fresh && now >= a.retry_mint_at
        })
    }

    /// The token request minting `actor`'s own warrant (client credentials).
    fn mint_request(&mut self, actor: usize) -> Option<TokenRequest> {
        let assertion = self.assertion(actor)?;
        Some(TokenRequest {
            grant_type: Some(GRANT_CLIENT_CREDENTIALS.into()),
            scope: Some(ROOT_SCOPE.into()),
            ttl: Some(ROOT_TTL.to_string()),
            task_purpose: Some("simulated work".into()),
            client_assertion_type: Some(ASSERTION_TYPE_JWT_BEARER.into()),
            client_assertion: Some(assertion),
            ..TokenRequest::default()
        })
    }

    /// Takes a mint's outcome: the new warrant, or no mint for [`MINT_RETRY`] seconds.
    fn minted(&mut self, actor: usize, issued: Option<Issued>) {
        let now = self.now();
        let Some(a) = self.actors.get_mut(actor) else { return };
        match issued {
            Some(issued) => {
                a.jti = Some(issued.claims.jti.to_string());
                a.exp = issued.claims.exp.0;
                a.token = Some(issued.token);
                a.revoked = false;
                self.tally.mints += 1;
            }
            None => {
                a.retry_mint_at = now + MINT_RETRY;
                self.tally.mint_failures += 1;
            }
        }
    }

    /// Mints `actor`'s own warrant when it has none, it is near expiry or was revoked.
    async fn ensure_warrant(&mut self, actor: usize) {
        if !self.needs_mint(actor, RENEW_BEFORE) {
            return;
        }
        let Some(req) = self.mint_request(actor) else { return };
        let issued = self.engine.issuer().token(&req).await.ok();
        self.minted(actor, issued);
    }

    /// Mints, concurrently (as many agents would), a new warrant for every agent whose
    /// own expires within [`RENEW_AHEAD`] seconds or that has none.
    async fn renew_all(&mut self) {
        let due: Vec<usize> = (0..self.actors.len()).filter(|a| self.needs_mint(*a, RENEW_AHEAD)).collect();
        for chunk in due.chunks(CONCURRENT_TOKENS) {
            let reqs: Vec<(usize, Option<TokenRequest>)> = chunk.iter().map(|a| (*a, self.mint_request(*a))).collect();
            let results = self.tokens(reqs.into_iter().map(|(_, r)| r).collect()).await;
            for (actor, issued) in chunk.iter().zip(results) {
                self.minted(*actor, issued.and_then(Result::ok));
            }
        }
    }

    /// Runs token requests concurrently; `None` for a request that was not made (or
    /// whose task failed).
    async fn tokens(&self, reqs: Vec<Option<TokenRequest>>) -> Vec<Option<Result<Issued, TokenError>>> {
        let handles: Vec<_> = reqs
            .into_iter()
            .map(|req| {
                req.map(|req| {
                    let engine = Arc::clone(&self.engine);
                    tokio::spawn(async move { engine.issuer().token(&req).await })
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(match h {
                Some(h) => h.await.ok(),
                None => None,
            });
        }
        out
    }

    /// The warrant `actor` acts with now, minting or stealing it first when needed.
    async fn warrant_of(&mut self, actor: usize) -> Option<String> {
        match self.actors.get(actor)?.role {
            Role::Root => self.ensure_warrant(actor).await,
            Role::Worker => {}
            Role::Thief { victim } => {
                if self.actors.get(actor)?.token.is_none() {
                    let victim = self.group_of(actor).0 + victim;
                    self.ensure_warrant(victim).await;
                    let (token, jti) = self.actors.get(victim).map(|v| (v.token.clone(), v.jti.clone()))?;
                    let thief = self.actors.get_mut(actor)?;
                    thief.token = token;
                    thief.jti = jti;
                }
            }
        }
        self.actors.get(actor)?.token.clone()
    }

    /// The range of actor indices of `actor`'s group: its first and one past its last.
    fn group_of(&self, actor: usize) -> (usize, usize) {
        let group = self.actors.get(actor).and_then(|a| self.groups.get(a.group));
        group.map_or((actor, actor + 1), |g| (g.base, g.base + g.generator.actors().len()))
    }

    async fn act(
        &mut self,
        g: usize,
        actor: usize,
        action: String,
        resource: String,
        context: Option<Value>,
        label: Label,
    ) {
        let Some(token) = self.warrant_of(actor).await else {
            self.tally.no_warrant += 1;
            self.step(g, label, false, None, true);
            return;
        };
        let context = context.map(std::sync::Arc::new);
        let req = AuthorizeRequest { token, action, resource, context, ..AuthorizeRequest::default() };
        match self.answering {
            Answering::EachDecision => {
                let d = self.engine.decisions().authorize(&req).await;
                self.observe(actor, &d);
                self.score(Meta { group: g, label }, &d);
            }
            Answering::Queued { batch } => {
                let queued = self.engine.decisions().authorize_queued(&req).await;
                self.observe(actor, queued.decision());
                self.pending.push((queued, Meta { group: g, label }));
                if self.pending.len() >= batch {
                    self.flush().await;
                }
            }
        }
    }

    /// What the acting agent learns from a decision: its warrant was revoked (it mints
    /// a new one before its next action) or it was quarantined.
    fn observe(&mut self, actor: usize, d: &Decision) {
        let response = classify(d);
        let revoked = d.code == DecisionCode::Revoked || response.is_some_and(Response::is_revocation);
        if !revoked {
            return;
        }
        let jti = d.claims.as_ref().map(|c| c.jti.to_string());
        let (base, end) = self.group_of(actor);
        // Whoever in the group holds the revoked warrant (a thief shares its victim's).
        for a in self.actors.get_mut(base..end).into_iter().flatten() {
            if a.jti.is_some() && a.jti == jti {
                a.revoked = true;
            }
        }
    }

    fn score(&mut self, meta: Meta, d: &Decision) {
        let t = &mut self.tally;
        t.decisions += 1;
        let allowed = d.outcome == Outcome::Allow;
        t.allowed += u64::from(allowed);
        *t.codes.entry(d.code.as_str().to_owned()).or_default() += 1;
        for s in &d.signals {
            *t.signals.entry(s.kind.as_str().to_owned()).or_default() += 1;
        }
        let response = classify(d);
        if let Some(r) = response {
            *t.responses.entry(r).or_default() += 1;
        }
        match d.code {
            DecisionCode::Scope => t.scope_denies += 1,
            DecisionCode::Revoked | DecisionCode::Agent => t.after_response += 1,
            _ => {}
        }
        if meta.label == Label::ExpectedDeny {
            t.expected_denies += 1;
        }
        self.step(meta.group, meta.label, allowed, response, false);
    }

    /// Records attack action k's outcome.
    fn step(&mut self, g: usize, label: Label, allowed: bool, response: Option<Response>, refused: bool) {
        let Label::Attack(k) = label else { return };
        let Some(step) = self.steps.get_mut(g).and_then(|s| s.get_mut(usize::try_from(k).unwrap_or(0).wrapping_sub(1)))
        else {
            return;
        };
        *step = Step { seen: true, allowed, response, refused };
    }

    /// Answers every queued decision (each waits until its record is durable).
    async fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for (queued, meta) in pending.drain(..) {
            let d = self.engine.decisions().answer(queued).await;
            self.score(meta, &d);
        }
        self.pending = pending;
    }

    /// Delegations made in the same second, run concurrently (an orchestrator fans out
    /// to its workers at once): each is its actor's warrant exchanged (RFC 8693) for one
    /// of `scope` held by `to`.
    async fn delegate_all(&mut self, batch: Vec<(usize, Event)>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut reqs = Vec::with_capacity(batch.len());
        for (g, event) in batch {
            let EventKind::Delegate { to, scope } = event.kind else { continue };
            let Some(base) = self.groups.get(g).map(|group| group.base) else { continue };
            let (from, to) = (base + event.actor, base + to);
            let subject = self.warrant_of(from).await;
            let assertion = self.assertion(to);
            reqs.push(match (subject, assertion) {
                (Some(subject), Some(assertion)) => Some(TokenRequest {
                    grant_type: Some(GRANT_TOKEN_EXCHANGE.into()),
                    scope: Some(scope),
                    ttl: Some(DELEGATION_TTL.to_string()),
                    subject_token: Some(subject),
                    subject_token_type: Some(TOKEN_TYPE_ACCESS_TOKEN.into()),
                    actor_token: Some(assertion),
                    actor_token_type: Some(TOKEN_TYPE_JWT.into()),
                    ..TokenRequest::default()
                }),
                _ => None,
            });
            jobs.push((g, from, to, event.label));
        }
        let results = self.tokens(reqs).await;
        for ((g, from, to, label), result) in jobs.into_iter().zip(results) {
            self.delegated(g, from, to, label, result);
        }
    }

    /// Takes a delegation's outcome (`None`: it could not even be asked).
    fn delegated(
        &mut self,
        g: usize,
        from: usize,
        to: usize,
        label: Label,
        result: Option<Result<Issued, TokenError>>,
    ) {
        match result {
            Some(Ok(issued)) => {
                self.tally.delegations += 1;
                if let Some(a) = self.actors.get_mut(to) {
                    a.jti = Some(issued.claims.jti.to_string());
                    a.exp = issued.claims.exp.0;
                    a.token = Some(issued.token);
                    a.revoked = false;
                }
                self.step(g, label, true, None, false);
            }
            Some(Err(e)) => {
                self.tally.refused_delegations += 1;
                let response = classify_refusal(&e);
                if let Some(r) = response {
                    *self.tally.responses.entry(r).or_default() += 1;
                }
                let text = e.to_string();
                // The delegating warrant is gone: mint a new one before the next use.
                if response.is_some() || text.contains("has been") || text.contains("has ended") {
                    if let Some(a) = self.actors.get_mut(from) {
                        a.revoked = true;
                    }
                }
                self.refused(g, to, label, response);
            }
            None => {
                self.tally.refused_delegations += 1;
                self.refused(g, to, label, None);
            }
        }
    }

    /// A refused delegation leaves its worker without a warrant.
    fn refused(&mut self, g: usize, to: usize, label: Label, response: Option<Response>) {
        if let Some(a) = self.actors.get_mut(to) {
            a.token = None;
            a.jti = None;
        }
        self.step(g, label, false, response, true);
    }
}
