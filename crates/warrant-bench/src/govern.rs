#![expect(clippy::unwrap_used, missing_docs, reason = "benchmark code")]
//! A large registry for the governance sweep benchmark (`benches/govern.rs`).
//!
//! [`SweepTemplate::build`] writes N agents (and their owners, and a warrant history)
//! through the store's own trait methods into a SQLite file, once; every
//! [`SweepTemplate::open`] copies that file into a new temporary directory and opens a
//! real [`Engine`] on it, with a [`ManualClock`] at [`T0`], then records the agents' usage
//! through `Governance::decided` as the decision path would.
//!
//! The store commits each insert on its own with `synchronous = FULL` (one fsync each),
//! and its trait offers no multi-row transaction for the registry, so the file is built
//! on tmpfs (`/dev/shm`, where fsync is free) when there is one and then copied to the
//! ordinary temporary directory (a disk), where the benchmarks run.
//!
//! The population, by `i % 100` of the agent's index (one owner per 20 agents, 1 owner
//! in 50 disabled, so about 2% of agents are orphaned on top of the below):
//!
//! | share | profile | findings |
//! | --- | --- | --- |
//! | 80% | healthy: `crm.read:crm/accounts/**`, used on two accounts an hour ago | none |
//! | 5% | over-privileged: `crm.* tickets.read`, used only `crm.read` | over_privileged |
//! | 3% | idle: never used since registration (31-80 days ago) | idle_agent |
//! | 2% | ephemeral, expired weeks ago | expired_ephemeral, idle_agent |
//! | 3% | max scope has `hr.read:people/**`, beyond the owner's entitlements | exceeds_owner, over_privileged |
//! | 2% | max scope has `payments.*` | broad_grant, over_privileged |
//! | 1% | registered 120 days ago, key never rotated, never attested | stale_key, attestation_overdue |
//! | 1% | retired | none |
//!
//! Every agent has one expired warrant in the history (the `warrants` table), one in 10
//! holds a live 15-minute root warrant, and one in 100 a live one-hour warrant
//! (long_lived_grant).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warrant_core::{
    Agent, AgentId, AgentStatus, Human, HumanId, HumanStatus, Mode, Scope, TaskId, UnixTime, WarrantId,
};
use warrant_engine::{Engine, EngineConfig, ManualClock};
use warrant_store::{
    AgentStore as _, HumanStore as _, IssueGuard, SqliteStore, TaskRecord, WarrantRecord, WarrantStore as _,
};

/// The key-encryption key the benchmark's throw-away databases are sealed with.
fn bench_kek() -> warrant_token::Kek {
    warrant_token::Kek::from_bytes([0x42; 32])
}
use warrant_token::KeyPair;

use crate::{ISSUER, T0};

const DAY: i64 = 86_400;
/// Agents per owner.
const AGENTS_PER_HUMAN: usize = 20;
/// When the agents' usage was recorded: an hour before [`T0`].
const USED_AT: UnixTime = UnixTime(T0.0 - 3600);

/// What an agent is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Healthy,
    OverPrivileged,
    Idle,
    ExpiredEphemeral,
    ExceedsOwner,
    BroadPayments,
    StaleKey,
    Retired,
}

impl Profile {
    /// The profile of agent number `i`.
    pub fn of(i: usize) -> Profile {
        match i % 100 {
            80..=84 => Profile::OverPrivileged,
            85..=87 => Profile::Idle,
            88..=89 => Profile::ExpiredEphemeral,
            90..=92 => Profile::ExceedsOwner,
            93..=94 => Profile::BroadPayments,
            95 => Profile::StaleKey,
            96 => Profile::Retired,
            _ => Profile::Healthy,
        }
    }

    fn max_scope(self) -> &'static str {
        match self {
            Profile::OverPrivileged => "crm.* tickets.read",
            Profile::ExceedsOwner => "crm.read:crm/accounts/** hr.read:people/**",
            Profile::BroadPayments => "crm.read:crm/accounts/** payments.*",
            _ => "crm.read:crm/accounts/**",
        }
    }

    /// Whether the agent used `crm.read` recently.
    fn active(self) -> bool {
        !matches!(self, Profile::Idle | Profile::ExpiredEphemeral | Profile::Retired)
    }
}

/// A stable 12-byte id body from a tag and a number.
fn id_bytes(tag: u8, n: usize) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = tag;
    b[4..].copy_from_slice(&(n as u64).to_be_bytes());
    b
}

/// A registry of N agents in a closed SQLite file, and what each agent used.
#[derive(Debug)]
pub struct SweepTemplate {
    /// Holds `template.db`; removed on drop.
    dir: tempfile::TempDir,
    /// How many agents, humans, warrant rows and live warrants it holds.
    pub agents: usize,
    pub humans: usize,
    pub warrant_rows: usize,
    pub live_warrants: usize,
    /// Where it was built (tmpfs or the temporary directory), and how long that took.
    pub built_in: PathBuf,
    pub build_time: Duration,
    /// How long copying the file to disk took.
    pub copy_time: Duration,
    /// The agents that used `crm.read` recently.
    used: Vec<AgentId>,
}

/// An engine over a copy of a [`SweepTemplate`], its usage recorded, no sweep run yet.
pub struct SweepFixture {
    pub engine: Arc<Engine>,
    /// The same store the engine uses.
    pub store: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    /// The data directory; removed on drop.
    pub dir: tempfile::TempDir,
    /// How long copying the file, `Engine::open` and recording the usage took.
    pub copy_time: Duration,
    pub open_time: Duration,
    pub usage_time: Duration,
}

impl std::fmt::Debug for SweepFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepFixture").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// Copies the SQLite database `from` (closed: no `-wal` left) to `to`.
fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", from.display()));
        if side.exists() {
            std::fs::copy(&side, format!("{}{suffix}", to.display())).unwrap();
        }
    }
}

impl SweepTemplate {
    /// Writes `n` agents, `n / 20` owners and the warrant history through the store.
    /// Must be called inside a tokio runtime.
    pub async fn build(n: usize) -> SweepTemplate {
        let started = Instant::now();
        let shm = Path::new("/dev/shm");
        let build_dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("warrant-sweep-").tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let path = build_dir.path().join("warrant.db");
        let store = SqliteStore::open(&path).unwrap();
        let humans = n.div_ceil(AGENTS_PER_HUMAN);
        for j in 0..humans {
            let human = Human {
                id: HumanId::from_random(id_bytes(1, j)),
                name: format!("Owner {j}"),
                email: format!("owner{j}@example.com"),
                entitlements: Scope::parse("crm.* tickets.* payments.*").unwrap(),
                status: if j % 50 == 49 { HumanStatus::Disabled } else { HumanStatus::Active },
                created_at: T0.plus(-200 * DAY),
                roles: Default::default(),
                external_id: None,
                identity: None,
            };
            store.insert_human(&human).await.unwrap();
        }
        let public_key = KeyPair::from_seed(&[41; 32]).public_jwk();
        let labels = BTreeMap::from([("team".to_owned(), "sales".to_owned())]);
        let mut used = Vec::new();
        let (mut warrant_rows, mut live_warrants) = (0, 0);
        for i in 0..n {
            let profile = Profile::of(i);
            let created_at = match profile {
                Profile::StaleKey => T0.plus(-120 * DAY),
                _ => T0.plus(-DAY * (31 + (i % 50) as i64)),
            };
            let agent = Agent {
                id: AgentId::from_random(id_bytes(2, i)),
                name: format!("agent-{i}"),
                owner: HumanId::from_random(id_bytes(1, i / AGENTS_PER_HUMAN)),
                mode: if i % 100 == 92 { Mode::Autonomous } else { Mode::Delegated },
                max_scope: Scope::parse(profile.max_scope()).unwrap(),
                public_key: Some(public_key.clone()),
                spiffe_id: None,
                status: if profile == Profile::Retired { AgentStatus::Retired } else { AgentStatus::Active },
                expires_at: (profile == Profile::ExpiredEphemeral).then(|| created_at.plus(5 * DAY)),
                labels: labels.clone(),
                created_at,
            };
            store.insert_agent(&agent).await.unwrap();
            if profile.active() {
                used.push(agent.id.clone());
            }
            // An expired warrant in the history; one live root warrant for 1 agent in 10
            // (one hour long for 1 in 100, 15 minutes otherwise).
            let mut warrants = vec![(T0.plus(-2 * DAY), T0.plus(-2 * DAY + 900))];
            if i % 10 == 0 && profile != Profile::Retired {
                let life = if i % 100 == 50 { 3600 } else { 900 };
                warrants.push((T0.plus(-300), T0.plus(life - 300)));
                live_warrants += 1;
            }
            for (k, (issued_at, expires_at)) in warrants.into_iter().enumerate() {
                let task = TaskRecord {
                    id: TaskId::from_random(id_bytes(3 + k as u8, i)),
                    purpose: "bench".into(),
                    human: agent.owner.clone(),
                    root_agent: agent.id.clone(),
                    created_at: issued_at,
                    deadline: expires_at,
                };
                let warrant = WarrantRecord {
                    jti: WarrantId::from_random(id_bytes(3 + k as u8, i)),
                    parent: None,
                    agent: agent.id.clone(),
                    task: task.id.clone(),
                    human: agent.owner.clone(),
                    sub: agent.owner.to_string(),
                    mode: agent.mode,
                    scope: agent.max_scope.clone(),
                    chain: vec![agent.id.clone()],
                    kid: "bench".into(),
                    issued_at,
                    expires_at,
                    budget: BTreeMap::new(),
                    claims: None,
                };
                store.record_warrant(&warrant, Some(&task), &IssueGuard::default()).await.unwrap();
                warrant_rows += 1;
            }
        }
        drop(store);
        let build_time = started.elapsed();
        let copied = Instant::now();
        let dir = tempfile::Builder::new().prefix("warrant-sweep-").tempdir().unwrap();
        copy_db(&path, &dir.path().join("template.db"));
        let copy_time = copied.elapsed();
        SweepTemplate {
            dir,
            agents: n,
            humans,
            warrant_rows,
            live_warrants,
            built_in: build_dir.path().to_owned(),
            build_time,
            copy_time,
            used,
        }
    }

    /// A new engine on a copy of the template, the clock at [`T0`], the agents' usage
    /// recorded (in memory, as the decision path records it). Must be called inside a
    /// tokio runtime.
    pub async fn open(&self) -> SweepFixture {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("warrant-sweep-").tempdir().unwrap();
        let path = dir.path().join("warrant.db");
        copy_db(&self.dir.path().join("template.db"), &path);
        let copy_time = started.elapsed();
        let opened = Instant::now();
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let clock = Arc::new(ManualClock::at(T0));
        let mut config = EngineConfig::for_issuer(ISSUER);
        config.kek = Some(bench_kek());
        let engine = Engine::open(Arc::clone(&store) as _, Arc::clone(&clock) as _, config).await.unwrap();
        let open_time = opened.elapsed();
        let recorded = Instant::now();
        let governance = engine.governance();
        for agent in &self.used {
            governance.decided(agent, Some(("crm.read", "crm/accounts/1")), USED_AT);
            governance.decided(agent, Some(("crm.read", "crm/accounts/2")), USED_AT);
        }
        let usage_time = recorded.elapsed();
        SweepFixture { engine: Arc::new(engine), store, clock, dir, copy_time, open_time, usage_time }
    }
}

impl SweepFixture {
    /// Stops the engine's audit writer.
    pub async fn close(self) {
        self.engine.close().await;
    }
}
