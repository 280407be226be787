#![expect(clippy::unwrap_used, missing_docs, reason = "benchmark code")]
//! The governance sweep over 100 000 agents (issue: "a sweep over 100,000 agents
//! completes quickly enough to run every minute").
//! `cargo bench -p warrant-bench --bench govern`, then `scripts/bench-report`.
//!
//! Groups (criterion ids, as read by `scripts/bench-report`), N = 100 000 agents (or
//! `WARRANT_SWEEP_AGENTS`), the registry of `warrant_bench::govern`:
//! * `govern/list_agents/N`: the baseline: `store.list_agents(None)`, the whole registry
//!   read once from the same SQLite file;
//! * `govern/sweep/N`: `Engine::sweep()` with the findings already open and nothing
//!   changed since the last sweep (same clock): what a sweep costs when it writes nothing;
//! * `govern/sweep_next_minute/N`: the same, the clock one minute away from the last
//!   sweep's (it moves +60 s and -60 s alternately, so the fixture does not drift): what
//!   the every-minute timer pays, including findings whose evidence carries a time;
//! * `govern/sweep_refresh/N`: the same, the clock an hour on each time: every active
//!   finding is due for its hourly `last_seen` write (`GovernConfig::refresh`), the
//!   write-heavy sweep the timer pays once an hour;
//! * `govern/first_sweep/N`: the first sweep of a new engine on the registry, which
//!   opens every finding (one engine per iteration, opened outside the measurement).
//!
//! Before measuring it prints the setup times, each sweep's report and a split of the
//! steady sweep into its phases, rebuilt from the engine's public pieces.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use warrant_bench::govern::{SweepFixture, SweepTemplate};
use warrant_core::govern::{observe_agent, reconcile, AgentFacts, LiveStats, SweepScope};
use warrant_engine::govern::sweep::{live_stats, SweepReport};
use warrant_store::{AgentStore as _, GovernStore as _};

/// How many agents (`WARRANT_SWEEP_AGENTS` overrides, e.g. for a quick try).
fn agents() -> usize {
    std::env::var("WARRANT_SWEEP_AGENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn changed(r: &SweepReport) -> usize {
    r.opened + r.updated + r.reopened + r.resolved + r.suspended
}

/// The steady sweep's phases, as `Engine::sweep` runs them, timed one by one.
async fn phases(f: &SweepFixture) -> Vec<(&'static str, Duration)> {
    let engine = &f.engine;
    let gov = engine.governance();
    let rules = &gov.config().rules;
    let now = engine.now();
    let mut out = Vec::new();
    let mut t = Instant::now();
    let mut lap = |name, out: &mut Vec<_>| {
        out.push((name, t.elapsed()));
        t = Instant::now();
    };
    let agents = engine.registry().agents_in_memory();
    let humans = engine.registry().humans_in_memory();
    lap("directory snapshot (agents + humans)", &mut out);
    let live = f.store.live_warrants(now).await.unwrap();
    lap("store.live_warrants (SQL)", &mut out);
    let stats = live_stats(&live, rules);
    lap("live_stats", &mut out);
    let usage: Vec<_> = agents.iter().map(|a| gov.usage_of(&a.id)).collect();
    lap("usage lookups (map lookup + clone per agent)", &mut out);
    let copies = std::hint::black_box(usage.clone());
    lap("… of which cloning the usages alone", &mut out);
    drop(copies);
    let nothing = LiveStats::default();
    let facts: Vec<_> = agents
        .iter()
        .zip(&usage)
        .map(|(agent, usage)| AgentFacts {
            agent,
            owner: humans.get(&agent.owner).map(AsRef::as_ref),
            usage: usage.as_ref(),
            live: stats.get(&agent.id).unwrap_or(&nothing),
            key_set_at: gov.key_time(&agent.id).unwrap_or(agent.created_at),
            last_attested: gov.last_attested(&agent.id),
        })
        .collect();
    lap("facts lookups (owner, live stats, key time, attestation)", &mut out);
    let mut observed = Vec::new();
    let (mut quiet, mut raising, mut quiet_n) = (Duration::ZERO, Duration::ZERO, 0usize);
    for facts in &facts {
        let start = Instant::now();
        let obs = observe_agent(facts, rules, now);
        if obs.is_empty() {
            quiet += start.elapsed();
            quiet_n += 1;
        } else {
            raising += start.elapsed();
        }
        observed.extend(obs);
    }
    out.push(("observe_agent, agents raising no finding", quiet));
    out.push(("observe_agent, agents raising findings", raising));
    eprintln!("govern: {quiet_n} agents raise no finding, {} raise {} findings", facts.len() - quiet_n, observed.len());
    let active: HashMap<_, _> = f.store.active_findings().await.unwrap().into_iter().map(|f| (f.key(), f)).collect();
    t = Instant::now();
    let mut n = 0u32;
    let mut new_id = || {
        n += 1;
        format!("fnd_bench{n:06x}")
    };
    let changes = reconcile(&active, observed, SweepScope::All, now, gov.config().refresh, &mut new_id);
    assert!(changes.is_empty(), "{} opened", changes.opened.len());
    out.push(("reconcile with the active findings", t.elapsed()));
    // What a sweep that rewrites every finding pays in the store (the first sweep, the
    // hourly refresh): the same rows upserted again, one transaction.
    let rows: Vec<_> = active.into_values().collect();
    t = Instant::now();
    f.store.save_findings(&rows).await.unwrap();
    out.push(("store.save_findings, every active finding again", t.elapsed()));
    out
}

fn govern(c: &mut Criterion) {
    let rt = runtime();
    let n = agents();
    let template = rt.block_on(SweepTemplate::build(n));
    eprintln!(
        "govern: {} agents, {} humans, {} warrant rows ({} live) written through the store in {} (in {}), copied to disk in {}",
        template.agents,
        template.humans,
        template.warrant_rows,
        template.live_warrants,
        ms(template.build_time),
        template.built_in.display(),
        ms(template.copy_time),
    );
    let fixture = rt.block_on(template.open());
    eprintln!(
        "govern: copy {}, Engine::open {}, usage recorded {}",
        ms(fixture.copy_time),
        ms(fixture.open_time),
        ms(fixture.usage_time)
    );
    let (engine, store, clock) = (&fixture.engine, &fixture.store, &fixture.clock);

    let mut group = c.benchmark_group("govern");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(12));

    // The baseline: the registry read once.
    group.bench_function(BenchmarkId::new("list_agents", n), |b| {
        b.to_async(&rt).iter(|| async { store.list_agents(None).await.unwrap().len() })
    });

    // The first sweep, which opens every finding: a new engine per iteration.
    let mut first: Option<SweepReport> = None;
    group.bench_function(BenchmarkId::new("first_sweep", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let f = rt.block_on(template.open());
                let start = Instant::now();
                let report = rt.block_on(f.engine.governance().sweep()).unwrap();
                total += start.elapsed();
                assert!(report.opened > 0, "{report:?}");
                first = Some(report);
                rt.block_on(f.close());
            }
            total
        })
    });
    if let Some(report) = &first {
        eprintln!("govern: first sweep: {report:?}");
    }

    // Open the findings on the long-lived fixture, then sweep with nothing changed.
    let start = Instant::now();
    let opening = rt.block_on(engine.governance().sweep()).unwrap();
    eprintln!("govern: first sweep of the steady fixture, timed once: {} {opening:?}", ms(start.elapsed()));
    let again = rt.block_on(engine.governance().sweep()).unwrap();
    assert_eq!(changed(&again), 0, "{again:?}");
    for (name, took) in rt.block_on(phases(&fixture)) {
        eprintln!("govern: phase {name}: {}", ms(took));
    }
    group.bench_function(BenchmarkId::new("sweep", n), |b| {
        b.to_async(&rt).iter(|| async {
            let report = engine.governance().sweep().await.unwrap();
            assert_eq!(changed(&report), 0, "{report:?}");
            report
        })
    });

    // A minute later (alternately a minute earlier, so nothing drifts).
    let mut forward = true;
    let mut minute: Option<SweepReport> = None;
    group.bench_function(BenchmarkId::new("sweep_next_minute", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clock.advance(if forward { 60 } else { -60 });
                forward = !forward;
                let start = Instant::now();
                let report = rt.block_on(engine.governance().sweep()).unwrap();
                total += start.elapsed();
                assert_eq!(report.opened + report.resolved, 0, "{report:?}");
                minute = Some(report);
            }
            total
        })
    });
    if let Some(report) = &minute {
        eprintln!("govern: sweep a minute later: {report:?}");
    }

    // An hour later, every iteration: every active finding's `last_seen` is `refresh`
    // (3600 s) old, so every one is written again. Last, since the clock only moves on:
    // the fixture's live warrants expire at T0+600 and T0+3300, so the first iteration
    // also resolves the long-lived-grant findings.
    let mut hourly: Option<SweepReport> = None;
    group.bench_function(BenchmarkId::new("sweep_refresh", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clock.advance(3600);
                let start = Instant::now();
                let report = rt.block_on(engine.governance().sweep()).unwrap();
                total += start.elapsed();
                assert!(report.updated > 0 && report.opened == 0, "{report:?}");
                hourly = Some(report);
            }
            total
        })
    });
    if let Some(report) = &hourly {
        eprintln!("govern: sweep an hour later: {report:?}");
    }
    group.finish();
    rt.block_on(fixture.close());
}

fn config() -> Criterion {
    Criterion::default().configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = govern
}
criterion_main!(benches);
