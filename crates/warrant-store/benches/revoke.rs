#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code"
)]
//! Revocation latency against the size of the store (issue 12): `Store::revoke` of one
//! warrant on a fresh file-backed store against the same on a store already holding
//! 20 000 recorded warrants, in the same run.
//!
//! `cargo bench -p warrant-store --bench revoke`. Criterion ids: `revoke/warrant/fresh`
//! and `revoke/warrant/20000`; then the same two interleaved (see [`interleaved`]), whose
//! printed ratios (20 000 / fresh) are the figures to read.
//!
//! Each timed iteration revokes a root warrant that was recorded (untimed) just before
//! it, so both stores do exactly the same work per revocation: one new revocation, one
//! newly revoked warrant, one durable commit. The fresh store is a new database for
//! every sample; the large one is filled once, with `record_warrant` (one durable
//! transaction per warrant, as the engine records them), before it is measured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use tempfile::TempDir;
use warrant_core::{
    Agent, AgentId, AgentStatus, Human, HumanId, HumanStatus, Mode, PublicJwk, Scope, TaskId, UnixTime, WarrantId,
};
use warrant_store::{
    AgentStore as _, HumanStore as _, IssueGuard, RevocationKind, RevocationRecord, RevocationStore as _, SqliteStore,
    TaskRecord, WarrantRecord, WarrantStore as _,
};

/// Warrants in the large store.
const LARGE: u64 = 20_000;
/// Warrants per task in the large store: a root and its delegated children.
const PER_TASK: u64 = 10;
/// The clock: every warrant is issued here and lives a day, so none expires.
const T0: i64 = 1_800_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Twelve id bytes from a counter, distinct for each `n` and `tag`, and scattered as
/// random ids are (splitmix64), so that the indexes grow as they do in production.
fn id_bytes(tag: u8, n: u64) -> [u8; 12] {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut bytes = [tag; 12];
    bytes[..8].copy_from_slice(&z.to_be_bytes());
    bytes
}

struct Fixture {
    _dir: TempDir,
    store: SqliteStore,
    human: Human,
    root: Agent,
    child: Agent,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("warrant.db")).unwrap();
    let human = Human {
        id: HumanId::from_random([1; 12]),
        name: "Bench Human".into(),
        email: "bench@example.com".into(),
        entitlements: Scope::parse("crm.read billing.*:invoices/**").unwrap(),
        status: HumanStatus::Active,
        created_at: UnixTime(T0),
        roles: Default::default(),
        external_id: None,
        identity: None,
    };
    store.insert_human(&human).await.unwrap();
    let agent = |n: u8| Agent {
        id: AgentId::from_random([n; 12]),
        name: format!("agent-{n}"),
        owner: human.id.clone(),
        mode: Mode::Delegated,
        max_scope: Scope::parse("crm.read billing.*:invoices/**").unwrap(),
        public_key: Some(PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: None,
        }),
        spiffe_id: None,
        status: AgentStatus::Active,
        expires_at: None,
        labels: BTreeMap::new(),
        created_at: UnixTime(T0),
    };
    let (root, child) = (agent(1), agent(2));
    store.insert_agent(&root).await.unwrap();
    store.insert_agent(&child).await.unwrap();
    Fixture { _dir: dir, store, human, root, child }
}

impl Fixture {
    /// Records warrant number `n`: the root of a new task when `parent` is `None`, else a
    /// child of `parent` held by the second agent.
    async fn record(&self, n: u64, parent: Option<&WarrantRecord>) -> WarrantRecord {
        let task = match parent {
            Some(p) => p.task.clone(),
            None => TaskId::from_random(id_bytes(7, n)),
        };
        let (agent, chain) = match parent {
            Some(_) => (&self.child, vec![self.root.id.clone(), self.child.id.clone()]),
            None => (&self.root, vec![self.root.id.clone()]),
        };
        let warrant = WarrantRecord {
            jti: WarrantId::from_random(id_bytes(9, n)),
            parent: parent.map(|p| p.jti.clone()),
            agent: agent.id.clone(),
            task: task.clone(),
            human: self.human.id.clone(),
            sub: self.human.id.as_str().to_owned(),
            mode: Mode::Delegated,
            scope: Scope::parse("crm.read billing.read:invoices/**").unwrap(),
            chain,
            kid: "kid-1".into(),
            issued_at: UnixTime(T0),
            expires_at: UnixTime(T0 + 86_400),
            budget: BTreeMap::new(),
            claims: None,
        };
        let new_task = parent.is_none().then(|| TaskRecord {
            id: task,
            purpose: "reconcile the CRM".into(),
            human: self.human.id.clone(),
            root_agent: self.root.id.clone(),
            created_at: UnixTime(T0),
            deadline: UnixTime(T0 + 86_400),
        });
        self.store.record_warrant(&warrant, new_task.as_ref(), &IssueGuard::default()).await.unwrap();
        warrant
    }

    /// Fills the store with `count` warrants, `PER_TASK` to a task.
    async fn fill(&self, count: u64) {
        let mut root = None;
        for n in 0..count {
            if n % PER_TASK == 0 {
                root = Some(self.record(n, None).await);
            } else {
                self.record(n, root.as_ref()).await;
            }
        }
    }

    /// Records a new root warrant (untimed), then revokes it; returns how long the
    /// revocation took.
    async fn revoke_one(&self, n: u64) -> Duration {
        let warrant = self.record(n, None).await;
        let revocation = RevocationRecord {
            id: format!("rev_{n}"),
            kind: RevocationKind::Warrant,
            target: warrant.jti.as_str().to_owned(),
            reason: "benchmark".into(),
            at: UnixTime(T0 + 1),
        };
        let start = Instant::now();
        let ended = self.store.revoke(&revocation, UnixTime(T0 + 1)).await.unwrap();
        let took = start.elapsed();
        assert_eq!(ended.len(), 1);
        took
    }
}

/// The criterion benchmarks: each store measured on its own, one after the other.
fn revoke(c: &mut Criterion, rt: &tokio::runtime::Runtime, large: &Fixture, next: &AtomicU64) {
    let mut group = c.benchmark_group("revoke");
    // Each iteration is durable (an fsync or more): few, long samples.
    group.sample_size(20).measurement_time(Duration::from_secs(15));
    group.bench_function(BenchmarkId::new("warrant", "fresh"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let fresh = fixture().await;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += fresh.revoke_one(next.fetch_add(1, Ordering::Relaxed)).await;
                }
                total
            })
        })
    });
    group.bench_function(BenchmarkId::new("warrant", LARGE), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += large.revoke_one(next.fetch_add(1, Ordering::Relaxed)).await;
                }
                total
            })
        })
    });
    group.finish();
}

/// Pairs of revocations in the interleaved comparison.
const PAIRS: usize = 600;
/// The fresh store of the interleaved comparison is replaced after this many revocations.
const FRESH_FOR: usize = 100;

/// The same comparison, interleaved: one revocation on a fresh store, one on the large
/// store, in turn (alternating which goes first), so that both see the same disk. An
/// fsync's latency on a shared machine drifts by several times over a minute, more than
/// what is measured here, so the criterion figures above, taken one store after the
/// other, can mislead; the ratios printed here are the figures to read.
fn interleaved(rt: &tokio::runtime::Runtime, large: &Fixture, next: &AtomicU64) {
    let (mut fresh_times, mut large_times) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    rt.block_on(async {
        let mut fresh = fixture().await;
        for i in 0..PAIRS {
            if i % FRESH_FOR == 0 {
                fresh = fixture().await;
            }
            let (a, b) = (next.fetch_add(1, Ordering::Relaxed), next.fetch_add(1, Ordering::Relaxed));
            if i % 2 == 0 {
                fresh_times.push(fresh.revoke_one(a).await);
                large_times.push(large.revoke_one(b).await);
            } else {
                large_times.push(large.revoke_one(b).await);
                fresh_times.push(fresh.revoke_one(a).await);
            }
        }
    });
    let fresh = Summary::of(fresh_times);
    let large = Summary::of(large_times);
    println!("revoke/warrant interleaved, {PAIRS} pairs (fresh | {LARGE} | ratio):");
    for (what, f, l) in [
        ("mean", fresh.mean, large.mean),
        ("median", fresh.median, large.median),
        ("p90", fresh.p90, large.p90),
        ("p99", fresh.p99, large.p99),
    ] {
        println!("  {what:>6}: {f:>10.3?} | {l:>10.3?} | {:.2}x", l.as_secs_f64() / f.as_secs_f64());
    }
}

struct Summary {
    mean: Duration,
    median: Duration,
    p90: Duration,
    p99: Duration,
}

impl Summary {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        Summary {
            mean: times.iter().sum::<Duration>() / times.len() as u32,
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = runtime();
    let next = AtomicU64::new(1 << 40);
    let large = rt.block_on(async {
        let fixture = fixture().await;
        fixture.fill(LARGE).await;
        fixture
    });
    revoke(&mut c, &rt, &large, &next);
    interleaved(&rt, &large, &next);
    c.final_summary();
}
