#![expect(clippy::unwrap_used, missing_docs, reason = "benchmark code")]
//! Warrant's micro-benchmarks (issue 4). `cargo bench -p warrant-bench`, then
//! `scripts/bench-report` for the table of figures, baselines and ratios.
//!
//! Groups (criterion ids, as read by `scripts/bench-report`):
//! * `scope/*`: `Scope::covers` and `Scope::allows` on a realistic scope;
//! * `verify/cold`: `verify_warrant` on a token (no cache); `verify/cache_lookup_replica`:
//!   the engine's cache lookup rebuilt here (SHA-256 of the token + a map read), since
//!   the engine exposes no cache-only entry: the cached verification is measured as part
//!   of `decision/engine`;
//! * `decision/{engine,cedar_bare,cedar_evaluate,rvm,regorus_interpreter}/N` for N in
//!   10, 50, 500: the full in-process decision with a cached warrant and its audit
//!   record queued, against a bare Cedar evaluation of the whole set (request and
//!   entities prebuilt), Warrant's own policy evaluation alone, and regorus on the same
//!   semantics in Rego (compiled VM and interpreter);
//!   `decision/engine_writer_idle/N` is the same decision on a current-thread runtime, so
//!   the audit writer does not run (and compete for the two cores) while it is measured;
//! * `pieces/*`: parts of the decision measured apart, as `warrant_policy::eval` and the
//!   engine do them: building the Cedar request (entities, context, and one entity type
//!   name parse, which `eval` does for every uid), and building + queueing the decision's
//!   audit record;
//! * `mint/*`: `sign_warrant` against a raw Ed25519 signature over as many bytes as the
//!   warrant's signing input (and the claims' JSON encoding alone);
//! * `delegation/exchange`: a token exchange of a parent warrant for a child agent,
//!   durable (assertion spent, audit record and warrant recorded);
//! * `audit/append/C`: records through `AuditWriter::submit` from C concurrent tasks, each
//!   waiting for durability (group commit), in records per second;
//! * `audit/verify/100000`: `audit::verify` over 100 000 records and their checkpoints;
//! * `guard/{off,on}/50`: the full decision (as `decision/engine`) with every guardrail off
//!   (no baselines, no trust, no rate limit, no budget) and on (a trained baseline with
//!   novelty, rate and trust checks, three rate limits, a budget charged on every call),
//!   at 50 policies: what the guardrails add to a decision.

use std::collections::HashMap;
use std::hint::black_box;

/// The allocator the `warrant` binary runs with, so the decision is measured as the server
/// makes it (the baselines in the same process run with it too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use sha2::{Digest as _, Sha256};
use warrant_bench::anchors::{
    self, cedar_context, cedar_entities, cedar_request, entity_type_name, rego_input, BareCedar, RegoInterpreter,
    RegoVm, Subject, SCOPE,
};
use warrant_bench::fixture::{authorize_request, roomy_audit, EngineFixture};
use warrant_bench::policies::{self, Probe};
use warrant_bench::{ISSUER, SIZES, T0};
use warrant_core::audit::{AuditEntry, AuditKind};
use warrant_core::{Mode, Scope, UnixTime, WarrantClaims};
use warrant_engine::audit::{self, AuditConfig, AuditWriter, SigningKeySource};
use warrant_engine::Outcome;
use warrant_store::audit::AuditStore;
use warrant_store::SqliteStore;
use warrant_token::checkpoint::KeyArchive;
use warrant_token::warrant::{sign_warrant, verify_warrant};
use warrant_token::{KeyPair, KeyRing};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn scope(c: &mut Criterion) {
    let scope = Scope::parse(SCOPE).unwrap();
    let narrower = Scope::parse("svc3.read:accounts/7 crm.read:customers/42 billing.pay:invoices/2024/11").unwrap();
    let mut group = c.benchmark_group("scope");
    group.bench_function("covers", |b| b.iter(|| black_box(&scope).covers(black_box(&narrower))));
    group.bench_function("allows", |b| b.iter(|| black_box(&scope).allows(black_box("svc3.write"), "accounts/7")));
    group.bench_function("allows_last", |b| {
        b.iter(|| black_box(&scope).allows(black_box("payments.refund"), "orders/9/lines/2"))
    });
    group.bench_function("denies", |b| b.iter(|| black_box(&scope).allows(black_box("hr.fire"), "people/1")));
    group.finish();
}

fn verify(c: &mut Criterion) {
    let key = KeyPair::from_seed(&[21; 32]);
    let ring = KeyRing::new(key.clone(), Vec::new());
    let claims = anchors::subject(2, Mode::Delegated).claims;
    let token = sign_warrant(&key, &claims).unwrap();
    let mut group = c.benchmark_group("verify");
    group.bench_function("cold", |b| b.iter(|| verify_warrant(black_box(&token), &ring, ISSUER, T0).unwrap()));
    // The engine's cache (decisions/verify.rs), rebuilt: SHA-256 of the token, a read-locked map.
    let cache: RwLock<HashMap<[u8; 32], Arc<WarrantClaims>>> = RwLock::default();
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    cache.write().unwrap().insert(digest, Arc::new(claims));
    group.bench_function("cache_lookup_replica", |b| {
        b.iter(|| {
            let digest: [u8; 32] = Sha256::digest(black_box(&token).as_bytes()).into();
            let hit = cache.read().unwrap().get(&digest).cloned().unwrap();
            (hit.exp > T0).then_some(hit)
        })
    });
    group.finish();
}

/// Measures the decision (audit record queued, not awaited) on `rt`, then lets the
/// writer catch up and stops it, so nothing measured afterwards competes with it.
fn measure_decisions(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    id: BenchmarkId,
    fixture: &EngineFixture,
    req: &warrant_engine::AuthorizeRequest,
) {
    let engine = &fixture.engine;
    group.bench_with_input(id, req, |b, req| {
        b.to_async(rt).iter(|| async move { engine.decisions().authorize_queued(req).await.into_unanswered() })
    });
    rt.block_on(fixture.drain());
    rt.block_on(engine.close());
}

fn decision(c: &mut Criterion) {
    let rt = runtime();
    let probe = Probe::bench();
    let mut group = c.benchmark_group("decision");
    group.measurement_time(Duration::from_secs(3));
    for n in SIZES {
        // The full decision: a real engine over SQLite, the warrant cached by a first call.
        let fixture = rt.block_on(EngineFixture::open(n, roomy_audit()));
        let engine = &fixture.engine;
        let req = fixture.authorize_request(&probe);
        let first = rt.block_on(engine.decisions().authorize(&req));
        assert_eq!(first.outcome, Outcome::Allow, "{first:?}");
        measure_decisions(&mut group, &rt, BenchmarkId::new("engine", n), &fixture, &req);

        let bare = BareCedar::new(n, &probe);
        assert!(bare.is_authorized());
        group.bench_function(BenchmarkId::new("cedar_bare", n), |b| b.iter(|| bare.is_authorized()));

        let compiled = policies::compiled(n);
        let subject = Subject::for_probe(&probe);
        let input = subject.input(&probe);
        group.bench_function(BenchmarkId::new("cedar_evaluate", n), |b| {
            b.iter(|| compiled.evaluate(black_box(&input)).unwrap().allow)
        });

        let rego = rego_input(&probe);
        let mut vm = RegoVm::new(n);
        assert!(vm.eval(&rego));
        group.bench_function(BenchmarkId::new("rvm", n), |b| b.iter(|| vm.eval(black_box(&rego))));

        let mut interpreter = RegoInterpreter::new(n);
        assert!(interpreter.eval(&rego));
        group.bench_function(BenchmarkId::new("regorus_interpreter", n), |b| {
            b.iter(|| interpreter.eval(black_box(&rego)))
        });
        drop(fixture);

        // The same decision on a current-thread runtime: the audit writer cannot run
        // while the loop is measured (records wait in the queue and are written after),
        // so this is the decision's own cost without the writer competing for the
        // machine's two cores. A diagnostic, not the headline figure.
        let idle = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fixture = idle.block_on(EngineFixture::open(n, roomy_audit()));
        let engine = &fixture.engine;
        let req = fixture.authorize_request(&probe);
        assert_eq!(idle.block_on(engine.decisions().authorize(&req)).outcome, Outcome::Allow);
        group.bench_with_input(BenchmarkId::new("engine_writer_idle", n), &req, |b, req| {
            b.to_async(&idle).iter(|| async move { engine.decisions().authorize_queued(req).await.into_unanswered() })
        });
        idle.block_on(fixture.drain());
        idle.block_on(engine.close());
        drop(fixture);
    }
    group.finish();
}

/// A decision's audit record as `Engine::queue_decision` builds it.
fn decision_entry(claims: &WarrantClaims, req: &warrant_engine::AuthorizeRequest, at: UnixTime) -> AuditEntry {
    let mut entry = AuditEntry::new(at, AuditKind::Decision);
    entry.decision = Some("allow".to_owned());
    entry.agent = Some(claims.client_id.clone());
    entry.human = Some(claims.human().clone());
    entry.task = Some(claims.task.id.clone());
    entry.warrant = Some(claims.jti.clone());
    let mut details = serde_json::json!({
        "action": req.action,
        "resource": req.resource,
        "code": "allow",
        "reasons": ["allowed by policy permit-within-scope"],
        "policies": ["permit-within-scope"],
        "policy_version": 1,
        "chain": claims.chain(),
        "scope": claims.scope,
    });
    let map = details.as_object_mut().unwrap();
    if let Some(attrs) = &req.resource_attrs {
        map.insert("resource_attrs".into(), (**attrs).clone());
    }
    if let Some(context) = &req.context {
        map.insert("context".into(), (**context).clone());
    }
    entry.details = details;
    entry
}

fn pieces(c: &mut Criterion) {
    let rt = runtime();
    let probe = Probe::bench();
    let subject = Subject::for_probe(&probe);
    let mut group = c.benchmark_group("pieces");
    group.bench_function("cedar_request_build", |b| b.iter(|| cedar_request(black_box(&subject), &probe)));
    group.bench_function("cedar_entities_build", |b| b.iter(|| cedar_entities(black_box(&subject), &probe)));
    group.bench_function("cedar_context_build", |b| b.iter(|| cedar_context(black_box(&subject), &probe)));
    group.bench_function("entity_type_name_parse", |b| b.iter(|| entity_type_name(black_box("Agent"))));
    let fixture = rt.block_on(EngineFixture::open(10, roomy_audit()));
    let req = fixture.authorize_request(&probe);
    let (claims, engine) = (&fixture.claims, &fixture.engine);
    group.bench_function("audit_entry_build_enqueue", |b| {
        b.to_async(&rt).iter(|| async {
            let entry = decision_entry(claims, &req, T0);
            engine.audit().enqueue(entry).await.unwrap()
        })
    });
    rt.block_on(fixture.drain());
    rt.block_on(engine.close());
    group.finish();
}

fn mint(c: &mut Criterion) {
    let key = KeyPair::from_seed(&[21; 32]);
    let claims = anchors::subject(2, Mode::Delegated).claims;
    let token = sign_warrant(&key, &claims).unwrap();
    let message = vec![b'e'; token.rfind('.').unwrap()];
    let mut group = c.benchmark_group("mint");
    group.bench_function("sign_warrant", |b| b.iter(|| sign_warrant(&key, black_box(&claims)).unwrap()));
    group.bench_function("raw_ed25519", |b| b.iter(|| key.sign(black_box(&message))));
    group.bench_function("claims_json", |b| b.iter(|| serde_json::to_vec(black_box(&claims)).unwrap()));
    group.finish();
}

fn delegation(c: &mut Criterion) {
    let rt = runtime();
    let fixture = rt.block_on(EngineFixture::open(50, AuditConfig::default()));
    let engine = &fixture.engine;
    let mut group = c.benchmark_group("delegation");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(6));
    group.bench_function("exchange", |b| {
        b.to_async(&rt).iter_batched(
            || fixture.exchange_request(),
            |req| async move { engine.issuer().token(&req).await.unwrap() },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    rt.block_on(engine.close());
}

fn audit_store(dir: &std::path::Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&dir.join("audit.db")).unwrap())
}

async fn spawn_writer(store: &Arc<SqliteStore>, key: &KeyPair, config: AuditConfig) -> Arc<AuditWriter> {
    let keys: Arc<dyn SigningKeySource> = Arc::new(key.clone());
    Arc::new(AuditWriter::spawn(Arc::clone(store) as Arc<dyn AuditStore>, keys, config).await.unwrap())
}

const VERIFY_RECORDS: u64 = 100_000;

fn audit_log(c: &mut Criterion) {
    let rt = runtime();
    let key = KeyPair::from_seed(&[31; 32]);
    let claims = anchors::subject(2, Mode::Delegated).claims;
    let req = authorize_request("", &Probe::bench());
    let entry = decision_entry(&claims, &req, T0);

    let dir = tempfile::tempdir().unwrap();
    let store = audit_store(dir.path());
    let writer = rt.block_on(spawn_writer(&store, &key, AuditConfig::default()));
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(4));
    for tasks in [64u64, 512] {
        group.bench_function(BenchmarkId::new("append", tasks), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (writer, entry) = (Arc::clone(&writer), entry.clone());
                            let count = iters / tasks + u64::from(t < iters % tasks);
                            tokio::spawn(async move {
                                for _ in 0..count {
                                    writer.submit(entry.clone()).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    rt.block_on(writer.shutdown());

    // A log of 100 000 records (a checkpoint every 1000), then verified whole.
    let vdir = tempfile::tempdir().unwrap();
    let vstore = audit_store(vdir.path());
    rt.block_on(async {
        let config = AuditConfig { queue_capacity: 1 << 18, ..AuditConfig::default() };
        let writer = spawn_writer(&vstore, &key, config).await;
        let mut receipts = Vec::new();
        for _ in 0..VERIFY_RECORDS {
            receipts.push(writer.enqueue(entry.clone()).await.unwrap());
        }
        for receipt in receipts {
            receipt.durable().await.unwrap();
        }
        writer.shutdown().await;
    });
    let archive: KeyArchive = [key.verifying_key()].into_iter().collect();
    let report = rt.block_on(audit::verify(vstore.as_ref(), &archive)).unwrap();
    assert!(report.ok && report.records == VERIFY_RECORDS, "{report:?}");
    group.throughput(Throughput::Elements(VERIFY_RECORDS)).sampling_mode(SamplingMode::Flat);
    group.bench_function(BenchmarkId::new("verify", VERIFY_RECORDS), |b| {
        b.to_async(&rt).iter(|| async { audit::verify(vstore.as_ref(), &archive).await.unwrap().records })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

fn guard(c: &mut Criterion) {
    use warrant_core::guard::rate::RateLimit;
    use warrant_engine::guard::GuardConfig;
    let rt = runtime();
    let probe = Probe::bench();
    let mut group = c.benchmark_group("guard");
    group.measurement_time(Duration::from_secs(3));
    let n = 50;
    let off = GuardConfig { enabled: false, ..GuardConfig::default() };
    let mut on = GuardConfig::default();
    on.baseline.learning_decisions = 10;
    on.baseline.learning_secs = 0;
    let generous = RateLimit::parse("1000000000/s").unwrap();
    (on.rate_agent, on.rate_task, on.rate_human) = (Some(generous), Some(generous), Some(generous));
    for (name, config, budget) in [("off", off, None), ("on", on, Some("estimated_cost=1000000000000000"))] {
        let fixture = rt.block_on(EngineFixture::open_with(n, roomy_audit(), config, budget));
        let engine = &fixture.engine;
        let req = fixture.authorize_request(&probe);
        // Past the learning period: every check of the baseline runs.
        for _ in 0..20 {
            let d = rt.block_on(engine.decisions().authorize(&req));
            assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
        }
        let d = rt.block_on(engine.decisions().authorize(&req));
        assert_eq!(d.charges.is_empty(), budget.is_none(), "{d:?}");
        measure_decisions(&mut group, &rt, BenchmarkId::new(name, n), &fixture, &req);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = scope, verify, decision, pieces, mint, delegation, audit_log, guard
}
criterion_main!(benches);
