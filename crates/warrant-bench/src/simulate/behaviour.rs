//! The labelled corpus: what agents do, as time-ordered streams of events over simulated
//! days on a one-second clock.
//!
//! A [`Scenario`] is either a benign [`Behaviour`] (every decision it gets should be
//! free of any guardrail response) or an [`Attack`] (its actions are numbered 1..N so
//! the driver can say when it was contained). A [`Generator`] produces one group's
//! events (one agent, or an orchestrator with its workers, or a victim with its thief),
//! one UTC date at a time, deterministically from its seed: the same seed always gives
//! the same corpus.

use serde_json::Value;
use warrant_core::UnixTime;

use super::rng::{mix, SplitMix64};

/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// Seconds in an hour.
pub const HOUR: i64 = 3_600;

/// The scope of every agent's own (root) warrant: broader than what any benign
/// behaviour uses, as real grants are.
pub const ROOT_SCOPE: &str = "crm.* tickets.* payments.* tools.*";
/// The scope an orchestrator delegates to its workers.
pub const WORKER_SCOPE: &str = "crm.read tickets.comment";
/// The scope a privilege-creep parent delegates to its sub-agent.
pub const CREEP_SCOPE: &str = "crm.read";
/// How long a delegated warrant is asked to live, in seconds.
pub const DELEGATION_TTL: i64 = 900;

/// Days of `steady` history (or normal fan-out) before an attack starts.
pub const HISTORY_DAYS: i64 = 3;
/// Actions of a fast attack (everything but slow exfiltration).
pub const FAST_ATTACK_ACTIONS: u32 = 200;
/// Delegations in a delegation burst.
pub const BURST_DELEGATIONS: u32 = 50;
/// Seconds between two extra reads of a slow exfiltration.
pub const SLOW_EXFIL_EVERY: i64 = 300;

/// The three actions of the steady agents.
pub const STEADY_ACTIONS: [&str; 3] = ["crm.read", "crm.update", "tickets.comment"];
/// The five resource prefixes of the steady agents (`customers/42` has the prefix
/// `customers`, `tickets/acme/123` the prefix `tickets/acme`).
pub const STEADY_PREFIXES: [&str; 5] = ["customers", "tickets/acme", "tickets/globex", "orders/eu", "orders/us"];

/// Actions no warrant of the corpus covers: retried by the retry behaviours, probed by
/// scope probing.
pub const OUT_OF_SCOPE: [&str; 16] = [
    "admin.users.delete",
    "billing.refund",
    "hr.records.read",
    "iam.keys.rotate",
    "secrets.read",
    "billing.export",
    "admin.audit.purge",
    "hr.salaries.read",
    "iam.roles.grant",
    "infra.deploy",
    "storage.buckets.list",
    "email.send",
    "calendar.read",
    "git.push",
    "db.query",
    "vault.unseal",
];

/// Actions within [`ROOT_SCOPE`] that no benign behaviour uses.
pub const UNUSED_IN_SCOPE: [&str; 12] = [
    "payments.refund",
    "payments.send",
    "payments.payouts.create",
    "crm.export",
    "crm.delete",
    "crm.notes.write",
    "crm.contacts.merge",
    "crm.owners.change",
    "tickets.delete",
    "tickets.assign",
    "tools.shell.exec",
    "tools.http.fetch",
];

/// Resource prefixes no benign behaviour uses.
pub const UNUSED_PREFIXES: [&str; 8] = [
    "finance/ledger",
    "vault/secrets",
    "hr/people",
    "billing/invoices",
    "admin/users",
    "exports/all",
    "payroll/runs",
    "keys/prod",
];

/// The tools a deploy adds, four per deploy (`tools.v3.search` on `tools/v3-search/…`).
const TOOL_NAMES: [&str; 4] = ["search", "summarize", "translate", "classify"];

/// How much traffic an agent-day carries.
///
/// [`Volume::Spec`] is the corpus as specified (a steady agent calls every 2 minutes,
/// a batch job runs every 200 s all day, …). The engine decides about 15,000 to 20,000
/// requests a second on two cores, so 10,000 agent-days of every behaviour at these
/// volumes (about 60 million decisions) take about an hour. [`Volume::Reduced`] keeps
/// every behaviour's shape (its arrival process, its bursts, its hours, its retries) at
/// about a quarter of the volume, so that run takes about a quarter of an hour:
///
/// | behaviour | spec | reduced |
/// | --- | --- | --- |
/// | steady (and the steady part of retry, deploy and every attack's history) | one call per 2 min | one call per 15 min |
/// | diurnal | peak 3/min at 13:00, 0.01/min at night | peak 0.3/min, 0.005/min at night |
/// | batch-200s | 25 calls every 200 s, all day | the same during a 20-minute run a day |
/// | batch-hourly | 25 calls every hour | the same every hour from 09:00 to 16:00 |
/// | batch-daily | 500 calls over 2 minutes at 02:00 | 250 calls over 1 minute (the same rate) |
/// | interactive | 6 to 10 sessions a day | 3 to 5 sessions a day |
/// | orchestrator | a fan-out every 30 min, each worker 5 to 20 calls | the same from 09:00 to 17:00, 2 to 8 calls |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Volume {
    /// The volumes as specified.
    Spec,
    /// The same shapes at about a quarter of the volume.
    #[default]
    Reduced,
}

impl Volume {
    /// Its name (`spec`, `reduced`).
    pub fn name(self) -> &'static str {
        match self {
            Volume::Spec => "spec",
            Volume::Reduced => "reduced",
        }
    }

    /// The volume of a name.
    pub fn parse(name: &str) -> Option<Volume> {
        [Volume::Spec, Volume::Reduced].into_iter().find(|v| v.name() == name)
    }

    fn shape(self) -> Shape {
        match self {
            Volume::Spec => Shape {
                steady_gap: 120.0,
                diurnal_peak: 3.0,
                diurnal_floor: 0.01,
                batch200_run: DAY,
                hourly: (0, 24),
                daily: (500, 120),
                sessions: (6, 10),
                worker_calls: (5, 20),
                fan_out_hours: (0, 24),
            },
            Volume::Reduced => Shape {
                steady_gap: 900.0,
                diurnal_peak: 0.3,
                diurnal_floor: 0.005,
                batch200_run: 20 * 60,
                hourly: (9, 17),
                daily: (250, 60),
                sessions: (3, 5),
                worker_calls: (2, 8),
                fan_out_hours: (9, 17),
            },
        }
    }
}

/// The parameters a [`Volume`] sets.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Mean seconds between two steady calls.
    steady_gap: f64,
    /// Diurnal calls per minute at 13:00 UTC.
    diurnal_peak: f64,
    /// Diurnal calls per minute at night.
    diurnal_floor: f64,
    /// Seconds a day the 200-s batch job runs.
    batch200_run: i64,
    /// The UTC hours (from, to) the hourly batch runs at the top of.
    hourly: (i64, i64),
    /// The daily batch's calls and the seconds they are spread over.
    daily: (u32, u64),
    /// Interactive sessions a day (at least, at most).
    sessions: (i64, i64),
    /// Calls per worker per fan-out (at least, at most).
    worker_calls: (i64, i64),
    /// The UTC hours (from, to) an orchestrator fans out in.
    fan_out_hours: (i64, i64),
}

/// A benign behaviour: each of its decisions should get no guardrail response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// Poisson arrivals, one call per 2 minutes on average, all day.
    Steady,
    /// Business hours: about 3 calls a minute around 13:00 UTC, a few at night.
    Diurnal,
    /// 25 calls within about 5 s every 200 s.
    Batch200s,
    /// 25 calls at the top of every hour.
    BatchHourly,
    /// 500 calls over about 2 minutes once a day at 02:00 UTC.
    BatchDaily,
    /// About 8 sessions a day between 07:00 and 22:00 UTC, 5 to 40 calls each.
    Interactive,
    /// Steady, plus three times a day one out-of-scope request retried 15 times, one
    /// per second.
    RetryNoBackoff,
    /// The same retried with exponential backoff (1, 2, 4, … s, at most 60 s).
    RetryBackoff,
    /// Steady; every 7 days the owner announces a deploy, after which 4 new tools on 4
    /// new resource prefixes join the traffic.
    Deploy,
    /// An orchestrator delegating to 5 workers (at once) every 30 minutes, each worker
    /// making 5 to 20 calls with its delegated warrant (6 agents per group).
    Orchestrator,
}

impl Behaviour {
    /// Every behaviour, in the order reports list them.
    pub const ALL: [Behaviour; 10] = [
        Behaviour::Steady,
        Behaviour::Diurnal,
        Behaviour::Batch200s,
        Behaviour::BatchHourly,
        Behaviour::BatchDaily,
        Behaviour::Interactive,
        Behaviour::RetryNoBackoff,
        Behaviour::RetryBackoff,
        Behaviour::Deploy,
        Behaviour::Orchestrator,
    ];

    /// Its name (`steady`, `batch-200s`, …).
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Steady => "steady",
            Behaviour::Diurnal => "diurnal",
            Behaviour::Batch200s => "batch-200s",
            Behaviour::BatchHourly => "batch-hourly",
            Behaviour::BatchDaily => "batch-daily",
            Behaviour::Interactive => "interactive",
            Behaviour::RetryNoBackoff => "retry-no-backoff",
            Behaviour::RetryBackoff => "retry-backoff",
            Behaviour::Deploy => "deploy",
            Behaviour::Orchestrator => "orchestrator",
        }
    }

    /// The behaviour of a name.
    pub fn parse(name: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.name() == name)
    }

    /// How many agents one group of it has (an orchestrator comes with 5 workers).
    pub fn agents_per_group(self) -> usize {
        match self {
            Behaviour::Orchestrator => 6,
            _ => 1,
        }
    }

    /// About how many decisions (and delegations) one agent-day of it makes at `volume`:
    /// used to size engines, not to generate.
    pub fn volume_per_agent_day(self, volume: Volume) -> u64 {
        if volume == Volume::Reduced {
            return match self {
                Behaviour::Steady | Behaviour::Deploy => 96,
                Behaviour::Diurnal => 120,
                Behaviour::Batch200s => 150,
                Behaviour::BatchHourly => 200,
                Behaviour::BatchDaily => 250,
                Behaviour::Interactive => 90,
                Behaviour::RetryNoBackoff | Behaviour::RetryBackoff => 144,
                Behaviour::Orchestrator => 80,
            };
        }
        match self {
            Behaviour::Steady | Behaviour::Deploy => 720,
            Behaviour::Diurnal => 1_130,
            Behaviour::Batch200s => 10_800,
            Behaviour::BatchHourly => 600,
            Behaviour::BatchDaily => 500,
            Behaviour::Interactive => 180,
            Behaviour::RetryNoBackoff | Behaviour::RetryBackoff => 770,
            Behaviour::Orchestrator => 540,
        }
    }
}

/// An attack: its actions are numbered 1..N in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attack {
    /// A thief uses the agent's current warrant at one call per second, on actions of its
    /// scope the agent never used and resources on prefixes it never used.
    StolenWarrant,
    /// Varied requests outside the warrant's scope, one per second.
    ScopeProbing,
    /// `crm.read` on many distinct resources across many prefixes, 5 per second.
    BulkExfiltration,
    /// The same, one extra read every 5 minutes mixed into normal traffic, for a day.
    SlowExfiltration,
    /// A sub-agent delegated a narrow scope asks for more of its parent's (varied), one
    /// per second.
    PrivilegeCreep,
    /// An orchestrator with 3 days of normal fan-out delegates 50 times within 10 s,
    /// then the workers act.
    DelegationBurst,
}

impl Attack {
    /// Every attack, in the order reports list them.
    pub const ALL: [Attack; 6] = [
        Attack::StolenWarrant,
        Attack::ScopeProbing,
        Attack::BulkExfiltration,
        Attack::SlowExfiltration,
        Attack::PrivilegeCreep,
        Attack::DelegationBurst,
    ];

    /// Its name (`stolen-warrant`, …).
    pub fn name(self) -> &'static str {
        match self {
            Attack::StolenWarrant => "stolen-warrant",
            Attack::ScopeProbing => "scope-probing",
            Attack::BulkExfiltration => "bulk-exfiltration",
            Attack::SlowExfiltration => "slow-exfiltration",
            Attack::PrivilegeCreep => "privilege-creep",
            Attack::DelegationBurst => "delegation-burst",
        }
    }

    /// The attack of a name.
    pub fn parse(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|a| a.name() == name)
    }

    /// How many actions it numbers (N).
    pub fn actions(self) -> u32 {
        match self {
            Attack::SlowExfiltration => u32::try_from(DAY / SLOW_EXFIL_EVERY).unwrap_or(u32::MAX),
            _ => FAST_ATTACK_ACTIONS,
        }
    }

    /// The action it should be contained within, when there is a target.
    pub fn target(self) -> Option<u32> {
        match self {
            Attack::ScopeProbing => Some(20),
            Attack::BulkExfiltration => Some(50),
            Attack::StolenWarrant => Some(10),
            _ => None,
        }
    }

    /// How many simulated days a run lasts: the history, the attack's day and, for slow
    /// exfiltration, the day it spills into.
    pub fn days(self) -> u32 {
        let history = u32::try_from(HISTORY_DAYS).unwrap_or(3);
        match self {
            Attack::SlowExfiltration => history + 2,
            _ => history + 1,
        }
    }
}

/// A benign behaviour or an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// A benign behaviour.
    Benign(Behaviour),
    /// An attack, on an agent with [`HISTORY_DAYS`] of history.
    Attack(Attack),
}

impl Scenario {
    /// The behaviour's or the attack's name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Benign(b) => b.name(),
            Scenario::Attack(a) => a.name(),
        }
    }

    /// A stable number for the scenario, to derive seeds from.
    fn stream(self) -> u64 {
        let (base, i) = match self {
            Scenario::Benign(b) => (0, Behaviour::ALL.iter().position(|x| *x == b)),
            Scenario::Attack(a) => (100, Attack::ALL.iter().position(|x| *x == a)),
        };
        base + u64::try_from(i.unwrap_or(0)).unwrap_or(0)
    }
}

/// What an actor of a group is, which decides where its warrant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An agent with its own warrant of [`ROOT_SCOPE`], minted once a day (and again
    /// when revoked).
    Root,
    /// An agent acting only with what was last delegated to it.
    Worker,
    /// Not an agent: someone holding the warrant the `victim` actor had when the thief
    /// first acted, used ever after.
    Thief {
        /// The actor (of the same group) whose warrant was stolen.
        victim: usize,
    },
}

/// One actor of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorSpec {
    /// What it is.
    pub role: Role,
    /// A short name (`agent`, `orchestrator`, `worker-3`, `thief`).
    pub name: String,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A request to act, decided by `Decisions`.
    Action {
        /// The action, e.g. `crm.read`.
        action: String,
        /// The resource path, e.g. `customers/42`.
        resource: String,
        /// The request's telemetry.
        context: Option<Value>,
    },
    /// A token exchange (RFC 8693) of the actor's warrant to actor `to` of the group.
    Delegate {
        /// The actor (of the same group) receiving the delegation.
        to: usize,
        /// The scope asked for.
        scope: String,
    },
    /// The actor's owner announces a deploy of `version`.
    AnnounceDeploy {
        /// The version deployed.
        version: String,
    },
}

/// What an event is, for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// Benign traffic: any guardrail response to it is a false response.
    Benign,
    /// Benign traffic the behaviour itself expects to be denied (a retry of a request
    /// outside the warrant's scope): a plain deny is expected, a response is not.
    ExpectedDeny,
    /// Action k (from 1) of the attack.
    Attack(u32),
}

/// One event of a group's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When (whole seconds).
    pub at: UnixTime,
    /// Which actor of the group.
    pub actor: usize,
    /// What it does.
    pub kind: EventKind,
    /// What it is.
    pub label: Label,
}

fn action(at: i64, actor: usize, action: &str, resource: String, label: Label) -> Event {
    Event {
        at: UnixTime(at),
        actor,
        kind: EventKind::Action { action: action.to_owned(), resource, context: None },
        label,
    }
}

/// A steady agent's call: one of its three actions on one of its five prefixes.
fn steady_call(rng: &mut SplitMix64, at: i64, actor: usize) -> Event {
    let act = rng.pick(&STEADY_ACTIONS).copied().unwrap_or("crm.read");
    let prefix = rng.pick(&STEADY_PREFIXES).copied().unwrap_or("customers");
    action(at, actor, act, format!("{prefix}/{}", rng.below(5_000)), Label::Benign)
}

/// Poisson arrival times with mean gap `mean` seconds in [from, to).
fn poisson(rng: &mut SplitMix64, from: i64, to: i64, mean: f64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = from as f64 + rng.exp(mean);
    while t < to as f64 {
        out.push(t as i64);
        t += rng.exp(mean);
    }
    out
}

/// The times of a periodic schedule `origin + k * period` that fall in [from, to).
fn periodic(origin: i64, period: i64, from: i64, to: i64) -> Vec<i64> {
    let k0 = (from - origin).div_euclid(period) + i64::from((from - origin).rem_euclid(period) != 0);
    let mut out = Vec::new();
    let mut t = origin + k0 * period;
    while t < to {
        out.push(t);
        t += period;
    }
    out
}

/// The diurnal rate at `t`, in calls per minute: a bell around 13:00 UTC (`peak`, 2.5 h
/// wide), and `floor` (a few calls a night) outside it.
fn diurnal_rate(t: i64, peak: f64, floor: f64) -> f64 {
    let hour = t.rem_euclid(DAY) as f64 / HOUR as f64;
    let d = hour - 13.0;
    floor + (peak - floor) * (-(d * d) / (2.0 * 2.5 * 2.5)).exp()
}

/// One group's stream: its actors and, one UTC date at a time, their events.
#[derive(Debug, Clone)]
pub struct Generator {
    scenario: Scenario,
    shape: Shape,
    seed: u64,
    start: i64,
    end: i64,
    next_date: i64,
    actors: Vec<ActorSpec>,
    /// A periodic job's phase (seconds after the start).
    phase: i64,
    /// When an attack starts.
    attack_at: i64,
    /// Events generated for a date that fall after its end.
    carry: Vec<Event>,
}

impl Generator {
    /// The stream of one group of `behaviour` from `start` for `days` days.
    pub fn benign(behaviour: Behaviour, seed: u64, start: UnixTime, days: u32, volume: Volume) -> Generator {
        let actors = match behaviour {
            Behaviour::Orchestrator => {
                let mut a = vec![ActorSpec { role: Role::Root, name: "orchestrator".into() }];
                a.extend((1..=5).map(|i| ActorSpec { role: Role::Worker, name: format!("worker-{i}") }));
                a
            }
            _ => vec![ActorSpec { role: Role::Root, name: "agent".into() }],
        };
        Generator::new(Scenario::Benign(behaviour), seed, start, days, actors, volume)
    }

    /// The stream of one run of `attack` from `start`: [`HISTORY_DAYS`] of history, then
    /// the attack.
    pub fn attack(attack: Attack, seed: u64, start: UnixTime, volume: Volume) -> Generator {
        let root = |name: &str| ActorSpec { role: Role::Root, name: name.into() };
        let actors = match attack {
            Attack::StolenWarrant => {
                vec![root("agent"), ActorSpec { role: Role::Thief { victim: 0 }, name: "thief".into() }]
            }
            Attack::ScopeProbing | Attack::BulkExfiltration | Attack::SlowExfiltration => vec![root("agent")],
            Attack::PrivilegeCreep => vec![root("agent"), ActorSpec { role: Role::Worker, name: "sub-agent".into() }],
            Attack::DelegationBurst => {
                let mut a = vec![root("orchestrator")];
                let workers = 5 + BURST_DELEGATIONS;
                a.extend((1..=workers).map(|i| ActorSpec { role: Role::Worker, name: format!("worker-{i}") }));
                a
            }
        };
        Generator::new(Scenario::Attack(attack), seed, start, attack.days(), actors, volume)
    }

    fn new(
        scenario: Scenario,
        seed: u64,
        start: UnixTime,
        days: u32,
        actors: Vec<ActorSpec>,
        volume: Volume,
    ) -> Generator {
        let seed = mix(seed, scenario.stream());
        let mut rng = SplitMix64::new(mix(seed, u64::MAX));
        let phase = i64::try_from(rng.below(1_800)).unwrap_or(0);
        // Attacks start between 10:00 and 14:00 (after T0's 10:00) of the day after the
        // history.
        let attack_at = start.0 + HISTORY_DAYS * DAY + i64::try_from(rng.below(4 * 3_600)).unwrap_or(0);
        Generator {
            scenario,
            shape: volume.shape(),
            seed,
            start: start.0,
            end: start.0 + i64::from(days) * DAY,
            next_date: start.0.div_euclid(DAY),
            actors,
            phase,
            attack_at,
            carry: Vec::new(),
        }
    }

    /// The scenario it generates.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The group's actors; events name them by index.
    pub fn actors(&self) -> &[ActorSpec] {
        &self.actors
    }

    /// When the stream starts.
    pub fn start(&self) -> UnixTime {
        UnixTime(self.start)
    }

    /// When the stream ends (exclusive).
    pub fn end(&self) -> UnixTime {
        UnixTime(self.end)
    }

    /// When the attack starts (meaningless for a benign behaviour).
    pub fn attack_at(&self) -> UnixTime {
        UnixTime(self.attack_at)
    }

    /// The events of the next UTC date (clipped to the stream's start and end), in time
    /// order; `None` once the stream has ended. A date may have no events.
    pub fn next_window(&mut self) -> Option<Vec<Event>> {
        let date_start = self.next_date * DAY;
        if date_start >= self.end {
            return None;
        }
        self.next_date += 1;
        let date_end = date_start + DAY;
        let mut rng = SplitMix64::new(mix(self.seed, u64::try_from(self.next_date).unwrap_or(0)));
        let mut out = std::mem::take(&mut self.carry);
        match self.scenario {
            Scenario::Benign(b) => self.benign_date(b, &mut rng, date_start, date_end, &mut out),
            Scenario::Attack(a) => self.attack_date(a, &mut rng, date_start, date_end, &mut out),
        }
        out.sort_by_key(|e| e.at.0);
        let (start, end) = (self.start, self.end);
        let split = out.partition_point(|e| e.at.0 < date_end);
        self.carry = out.split_off(split);
        self.carry.retain(|e| e.at.0 < end);
        out.retain(|e| e.at.0 >= start && e.at.0 < end);
        Some(out)
    }

    /// The whole stream (for tests and small corpora).
    pub fn all(mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(mut w) = self.next_window() {
            out.append(&mut w);
        }
        out
    }

    fn benign_date(&self, b: Behaviour, rng: &mut SplitMix64, from: i64, to: i64, out: &mut Vec<Event>) {
        match b {
            Behaviour::Steady => steady(rng, 0, from, to, self.shape.steady_gap, out),
            Behaviour::Diurnal => {
                // Thinning: candidates at the peak rate, kept in proportion to the rate.
                let (peak, floor) = (self.shape.diurnal_peak, self.shape.diurnal_floor);
                for t in poisson(rng, from, to, 60.0 / peak) {
                    if rng.chance(diurnal_rate(t, peak, floor) / peak) {
                        out.push(steady_call(rng, t, 0));
                    }
                }
            }
            Behaviour::Batch200s => {
                // The job runs `batch200_run` seconds a day, from 10:00 plus the phase.
                let run_from = from + 10 * HOUR + self.phase;
                let (a, b) = if self.shape.batch200_run >= DAY {
                    (from, to)
                } else {
                    (run_from, run_from + self.shape.batch200_run)
                };
                for t in periodic(self.start + self.phase % 200, 200, a.max(from), b) {
                    batch(rng, 0, t, 25, 5, out);
                }
            }
            Behaviour::BatchHourly => {
                let (h0, h1) = self.shape.hourly;
                for t in periodic(from, HOUR, from + h0 * HOUR, from + h1 * HOUR) {
                    batch(rng, 0, t, 25, 5, out);
                }
            }
            Behaviour::BatchDaily => {
                let (calls, spread) = self.shape.daily;
                batch(rng, 0, from + 2 * HOUR, calls, spread, out);
            }
            Behaviour::Interactive => interactive(rng, from, self.shape.sessions, out),
            Behaviour::RetryNoBackoff | Behaviour::RetryBackoff => {
                steady(rng, 0, from, to, self.shape.steady_gap, out);
                for _ in 0..3 {
                    let t = from + i64::try_from(rng.below(86_400)).unwrap_or(0);
                    retry_episode(rng, t, b == Behaviour::RetryBackoff, out);
                }
            }
            Behaviour::Deploy => self.deploy_date(rng, from, to, out),
            Behaviour::Orchestrator => self.fan_out(rng, from, to, out),
        }
    }

    /// The deploys announced so far at `t`: deploy k (from 1) at 11:00 of day 7k.
    fn deploys_by(&self, t: i64) -> i64 {
        let since = t - (self.start + HOUR);
        if since < 0 {
            0
        } else {
            since / (7 * DAY)
        }
    }

    fn deploy_date(&self, rng: &mut SplitMix64, from: i64, to: i64, out: &mut Vec<Event>) {
        for k in 1.. {
            let at = self.start + HOUR + k * 7 * DAY;
            if at >= to {
                break;
            }
            if at >= from {
                out.push(Event {
                    at: UnixTime(at),
                    actor: 0,
                    kind: EventKind::AnnounceDeploy { version: format!("v{k}") },
                    label: Label::Benign,
                });
            }
        }
        for t in poisson(rng, from, to, self.shape.steady_gap) {
            let tools = 4 * self.deploys_by(t);
            let pick_tool = tools > 0 && rng.below(u64::try_from(3 + tools).unwrap_or(3)) >= 3;
            if pick_tool {
                let j = i64::try_from(rng.below(u64::try_from(tools).unwrap_or(1))).unwrap_or(0);
                let (deploy, name) = (j / 4 + 1, TOOL_NAMES.get(usize::try_from(j % 4).unwrap_or(0)).copied());
                let name = name.unwrap_or("search");
                let resource = format!("tools/v{deploy}-{name}/{}", rng.below(1_000));
                out.push(action(t, 0, &format!("tools.v{deploy}.{name}"), resource, Label::Benign));
            } else {
                out.push(steady_call(rng, t, 0));
            }
        }
    }

    /// An orchestrator's fan-out every 30 minutes: delegations to workers 1 to 5 (one a
    /// second), then each worker's 5 to 20 calls.
    fn fan_out(&self, rng: &mut SplitMix64, from: i64, to: i64, out: &mut Vec<Event>) {
        let (h0, h1) = self.shape.fan_out_hours;
        for t in periodic(self.start + self.phase, 1_800, from + h0 * HOUR, (from + h1 * HOUR).min(to)) {
            fan_out_once(rng, t, self.shape.worker_calls, out);
        }
    }

    fn attack_date(&self, a: Attack, rng: &mut SplitMix64, from: i64, to: i64, out: &mut Vec<Event>) {
        match a {
            Attack::DelegationBurst => self.fan_out(rng, from, to, out),
            _ => steady(rng, 0, from, to, self.shape.steady_gap, out),
        }
        if (from..to).contains(&self.attack_at) {
            let mut arng = SplitMix64::new(mix(self.seed, 0x00A7_7AC4));
            let mut events = self.attack_events(a, &mut arng);
            events.sort_by_key(|e| e.at.0);
            let mut k = 0;
            for e in &mut events {
                if e.label == Label::Attack(0) {
                    k += 1;
                    e.label = Label::Attack(k);
                }
            }
            out.append(&mut events);
        }
    }

    /// The attack's events, its numbered actions labelled `Attack(0)` (numbered in time
    /// order by the caller).
    fn attack_events(&self, a: Attack, rng: &mut SplitMix64) -> Vec<Event> {
        let t0 = self.attack_at;
        let n = i64::from(a.actions());
        let mut out = Vec::new();
        let unused = |rng: &mut SplitMix64| {
            let act = rng.pick(&UNUSED_IN_SCOPE).copied().unwrap_or("crm.export");
            let prefix = rng.pick(&UNUSED_PREFIXES).copied().unwrap_or("vault/secrets");
            (act, format!("{prefix}/{}", rng.below(100_000)))
        };
        let tenant = |rng: &mut SplitMix64| format!("tenants/t{}/customers/{}", rng.below(1_000), rng.below(100_000));
        match a {
            Attack::StolenWarrant => {
                for i in 0..n {
                    let (act, resource) = unused(rng);
                    out.push(action(t0 + i, 1, act, resource, Label::Attack(0)));
                }
            }
            Attack::ScopeProbing => {
                for i in 0..n {
                    let act = rng.pick(&OUT_OF_SCOPE).copied().unwrap_or("secrets.read");
                    let prefix = rng.pick(&UNUSED_PREFIXES).copied().unwrap_or("vault/secrets");
                    out.push(action(t0 + i, 0, act, format!("{prefix}/{}", rng.below(100_000)), Label::Attack(0)));
                }
            }
            Attack::BulkExfiltration => {
                for i in 0..n {
                    out.push(action(t0 + i / 5, 0, "crm.read", tenant(rng), Label::Attack(0)));
                }
            }
            Attack::SlowExfiltration => {
                for i in 1..=n {
                    out.push(action(t0 + i * SLOW_EXFIL_EVERY, 0, "crm.read", tenant(rng), Label::Attack(0)));
                }
            }
            Attack::PrivilegeCreep => {
                out.push(Event {
                    at: UnixTime(t0),
                    actor: 0,
                    kind: EventKind::Delegate { to: 1, scope: CREEP_SCOPE.into() },
                    label: Label::Benign,
                });
                let beyond: Vec<&str> =
                    STEADY_ACTIONS.iter().chain(UNUSED_IN_SCOPE.iter()).copied().filter(|a| *a != "crm.read").collect();
                for i in 1..=n {
                    let act = rng.pick(&beyond).copied().unwrap_or("crm.update");
                    let prefix = rng.pick(&STEADY_PREFIXES).copied().unwrap_or("customers");
                    out.push(action(t0 + i, 1, act, format!("{prefix}/{}", rng.below(100_000)), Label::Attack(0)));
                }
            }
            Attack::DelegationBurst => {
                let burst = i64::from(BURST_DELEGATIONS);
                for i in 0..burst {
                    out.push(Event {
                        at: UnixTime(t0 + i / 5),
                        actor: 0,
                        kind: EventKind::Delegate {
                            to: usize::try_from(6 + i).unwrap_or(6),
                            scope: WORKER_SCOPE.into(),
                        },
                        label: Label::Attack(0),
                    });
                }
                let calls = (n - burst) / burst;
                for w in 0..burst {
                    let mut t = t0 + 10 + i64::try_from(rng.below(10)).unwrap_or(0);
                    for _ in 0..calls {
                        let mut e = worker_call(rng, t, usize::try_from(6 + w).unwrap_or(6));
                        e.label = Label::Attack(0);
                        out.push(e);
                        t += rng.between(1, 3);
                    }
                }
            }
        }
        out
    }
}

/// Poisson traffic of the steady agent `actor`, one call per `gap` seconds on average.
fn steady(rng: &mut SplitMix64, actor: usize, from: i64, to: i64, gap: f64, out: &mut Vec<Event>) {
    for t in poisson(rng, from, to, gap) {
        out.push(steady_call(rng, t, actor));
    }
}

/// `calls` steady calls at `t` plus a uniform offset below `spread` seconds each.
fn batch(rng: &mut SplitMix64, actor: usize, t: i64, calls: u32, spread: u64, out: &mut Vec<Event>) {
    for _ in 0..calls {
        let at = t + i64::try_from(rng.below(spread)).unwrap_or(0);
        out.push(steady_call(rng, at, actor));
    }
}

/// `sessions` (at least, at most) sessions starting between 07:00 and 22:00 UTC of the
/// date at `midnight`, 5 to 40 calls each, 1 to 5 s apart.
fn interactive(rng: &mut SplitMix64, midnight: i64, sessions: (i64, i64), out: &mut Vec<Event>) {
    let sessions = rng.between(sessions.0, sessions.1);
    for _ in 0..sessions {
        let mut t = midnight + 7 * HOUR + i64::try_from(rng.below(15 * 3_600)).unwrap_or(0);
        for _ in 0..rng.between(5, 40) {
            out.push(steady_call(rng, t, 0));
            t += rng.between(1, 5);
        }
    }
}

/// One request outside the scope, sent at `t` and retried 15 times: one per second, or
/// with exponential backoff (1, 2, 4, … s, at most 60 s).
fn retry_episode(rng: &mut SplitMix64, t: i64, backoff: bool, out: &mut Vec<Event>) {
    let act = rng.pick(&OUT_OF_SCOPE).copied().unwrap_or("billing.refund");
    let resource = format!("{}/{}", act.split('.').next().unwrap_or("admin"), rng.below(10_000));
    let (mut at, mut delay) = (t, 1_i64);
    for _ in 0..16 {
        out.push(action(at, 0, act, resource.clone(), Label::ExpectedDeny));
        at += if backoff { delay } else { 1 };
        delay = (delay * 2).min(60);
    }
}

/// A worker's call within [`WORKER_SCOPE`].
fn worker_call(rng: &mut SplitMix64, at: i64, actor: usize) -> Event {
    if rng.chance(0.5) {
        action(at, actor, "crm.read", format!("customers/{}", rng.below(5_000)), Label::Benign)
    } else {
        action(at, actor, "tickets.comment", format!("tickets/acme/{}", rng.below(5_000)), Label::Benign)
    }
}

/// One fan-out at `t`: delegations to workers 1 to 5 at once, then their calls
/// (`calls`: at least, at most, per worker).
fn fan_out_once(rng: &mut SplitMix64, t: i64, calls: (i64, i64), out: &mut Vec<Event>) {
    for w in 1..=5_usize {
        out.push(Event {
            at: UnixTime(t),
            actor: 0,
            kind: EventKind::Delegate { to: w, scope: WORKER_SCOPE.into() },
            label: Label::Benign,
        });
    }
    for w in 1..=5_usize {
        let mut at = t + 5 + i64::try_from(rng.below(5)).unwrap_or(0);
        for _ in 0..rng.between(calls.0, calls.1) {
            out.push(worker_call(rng, at, w));
            at += rng.between(1, 5);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime(1_699_956_000);

    #[test]
    fn periodic_is_aligned() {
        assert_eq!(periodic(0, 200, 0, 600), vec![0, 200, 400]);
        assert_eq!(periodic(50, 200, 0, 600), vec![50, 250, 450]);
        assert_eq!(periodic(50, 200, 51, 600), vec![250, 450]);
    }

    #[test]
    fn streams_are_ordered_and_reproducible() {
        for b in Behaviour::ALL {
            let a = Generator::benign(b, 7, T0, 3, Volume::Reduced).all();
            let again = Generator::benign(b, 7, T0, 3, Volume::Reduced).all();
            assert_eq!(a, again, "{}", b.name());
            assert!(!a.is_empty(), "{}", b.name());
            assert!(a.windows(2).all(|w| matches!(w, [x, y] if x.at <= y.at)), "{}", b.name());
            assert!(a.iter().all(|e| e.at >= T0 && e.at.0 < T0.0 + 3 * DAY), "{}", b.name());
        }
    }

    #[test]
    fn attacks_number_their_actions() {
        for a in Attack::ALL {
            let events = Generator::attack(a, 3, T0, Volume::Reduced).all();
            let ks: Vec<u32> = events
                .iter()
                .filter_map(|e| match e.label {
                    Label::Attack(k) => Some(k),
                    _ => None,
                })
                .collect();
            let expected: Vec<u32> = (1..=a.actions()).collect();
            assert_eq!(ks, expected, "{}", a.name());
        }
    }
}
