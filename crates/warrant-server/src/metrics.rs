//! Prometheus metrics at `GET /metrics`: decisions by outcome and reason, decision
//! latency, live warrants, revocations, audit queue depth and commit latency, requests in
//! progress and shed. How long the audit log's durable appends take is kept by the
//! audit writer and exposed as histograms: per append, per record made durable (its
//! append's time), and per record, how long its caller waited for it.
//!
//! Each server has its own registry (several servers may share a process in tests).

use std::time::Duration;

use prometheus::proto::{Bucket, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use warrant_core::authzen::EvaluationResponse;
use warrant_engine::audit::{CommitHistogram, COMMIT_BOUNDS_MICROS};
use warrant_engine::{Decision, Engine};

/// The histogram of audit appends, one observation per append.
pub const COMMIT_APPENDS: &str = "warrant_audit_commit_duration_seconds";
/// The histogram of audit appends, one observation per record made durable.
pub const COMMIT_RECORDS: &str = "warrant_audit_record_commit_seconds";
/// How long each durable record's caller waited for it, from being queued to durable.
pub const RECORD_WAITS: &str = "warrant_audit_record_wait_seconds";
/// The nice value the SQLite commit thread runs at.
pub const WRITER_NICE: &str = "warrant_storage_writer_nice";

/// The server's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    latency: Histogram,
    revocations: IntCounterVec,
    revoked_warrants: IntCounter,
    live_warrants: IntGauge,
    revoked_tracked: IntGauge,
    cached_warrants: IntGauge,
    audit_queue: IntGauge,
    audit_head: IntGauge,
    audit_batches: IntGauge,
    audit_failed_batches: IntGauge,
    audit_commit_seconds: prometheus::Gauge,
    policy_version: IntGauge,
    in_flight: IntGauge,
    shed: IntGauge,
    store_waiting: IntGauge,
    ssf_push_rounds: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    /// A fresh registry with every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help)?);
        Ok(Metrics {
            decisions: register(
                &r,
                IntCounterVec::new(
                    Opts::new("warrant_decisions_total", "decisions by outcome and reason code"),
                    &["decision", "code"],
                )?,
            )?,
            latency: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "warrant_decision_seconds",
                        "time to decide, including the durable audit record",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ]),
                )?,
            )?,
            revocations: register(
                &r,
                IntCounterVec::new(Opts::new("warrant_revocations_total", "revocations by kind"), &["kind"])?,
            )?,
            revoked_warrants: register(
                &r,
                IntCounter::new("warrant_revoked_warrants_total", "live warrants ended by revocations")?,
            )?,
            live_warrants: gauge("warrant_live_warrants", "recorded warrants that have not expired")?,
            revoked_tracked: gauge("warrant_revoked_warrants_tracked", "unexpired revoked warrants held in memory")?,
            cached_warrants: gauge("warrant_cached_warrants", "verified warrants in the cache")?,
            audit_queue: gauge("warrant_audit_queue_depth", "audit records waiting to be written")?,
            audit_head: gauge("warrant_audit_head_seq", "sequence number of the last durable audit record")?,
            audit_batches: gauge("warrant_audit_batches", "audit group commits since start")?,
            audit_failed_batches: gauge("warrant_audit_failed_batches", "audit group commits that failed since start")?,
            audit_commit_seconds: register(
                &r,
                prometheus::Gauge::new("warrant_audit_commit_seconds", "duration of the last audit group commit")?,
            )?,
            policy_version: gauge("warrant_policy_version", "the policy set version in force")?,
            in_flight: gauge("warrant_in_flight", "decision and token requests in progress")?,
            shed: gauge("warrant_shed_total", "decision and token requests shed with 503 since start")?,
            store_waiting: gauge(
                "warrant_store_waiting",
                "store calls waiting for a free database connection (SQLite: reads; PostgreSQL: every call)",
            )?,
            ssf_push_rounds: gauge(
                "warrant_ssf_push_rounds",
                "Shared Signals push delivery rounds started since start (each reads the streams once)",
            )?,
            registry: r,
        })
    }

    /// Exposes the nice value the SQLite commit thread runs at ([`WRITER_NICE`]), once,
    /// as the server starts; a server on PostgreSQL has no such thread and no such gauge.
    pub fn storage_writer_nice(&self, nice: i32) -> Result<(), prometheus::Error> {
        let help = "the nice value the SQLite commit thread runs at (lower runs first; see writer_nice)";
        register(&self.registry, IntGauge::new(WRITER_NICE, help)?)?.set(i64::from(nice));
        Ok(())
    }

    /// Counts one decision.
    pub fn decided(&self, decision: &Decision, took: Duration) {
        self.decisions.with_label_values(&[decision.outcome.as_str(), decision.code.as_str()]).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Counts the decisions of AuthZEN answers, given together in `took` (an entry that
    /// could not be evaluated is no decision and is not counted).
    pub fn evaluated<'a>(&self, answers: impl ExactSizeIterator<Item = &'a EvaluationResponse>, took: Duration) {
        let each = took / u32::try_from(answers.len().max(1)).unwrap_or(u32::MAX);
        for answer in answers {
            let Some(ctx) = &answer.context else { continue };
            if let (Some(outcome), Some(code)) = (&ctx.outcome, &ctx.code) {
                self.decisions.with_label_values(&[outcome.as_str(), code.as_str()]).inc();
                self.latency.observe(each.as_secs_f64());
            }
        }
    }

    /// Counts one revocation.
    pub fn revoked(&self, kind: &str, warrants: usize) {
        self.revocations.with_label_values(&[kind]).inc();
        self.revoked_warrants.inc_by(u64::try_from(warrants).unwrap_or(u64::MAX));
    }

    /// The Prometheus text exposition, with gauges read now (`gate`: the bound on
    /// requests in progress).
    pub async fn render(&self, engine: &Engine, gate: &crate::ratelimit::InFlight) -> String {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.in_flight.set(to_i64(gate.current() as u64));
        self.shed.set(to_i64(gate.shed()));
        if let Ok(n) = engine.revocation().live_warrants().await {
            self.live_warrants.set(to_i64(n));
        }
        self.revoked_tracked.set(to_i64(engine.revocation().tracked() as u64));
        self.cached_warrants.set(to_i64(engine.decisions().cached_warrants() as u64));
        let audit = engine.audit();
        self.audit_queue.set(to_i64(audit.queue_depth() as u64));
        let m = audit.metrics();
        self.audit_head.set(to_i64(m.head_seq()));
        self.audit_batches.set(to_i64(m.batches()));
        self.audit_failed_batches.set(to_i64(m.failed_batches()));
        self.audit_commit_seconds.set(m.last_commit_latency().as_secs_f64());
        self.policy_version.set(engine.policy().current().map(|c| c.version).unwrap_or(0));
        self.ssf_push_rounds.set(to_i64(engine.transmitter().push_rounds()));
        self.store_waiting.set(to_i64(engine.store_waiting() as u64));
        let times = m.commit_times();
        let mut families = self.registry.gather();
        families.push(histogram_family(
            COMMIT_APPENDS,
            "how long each audit append (a batch written and synced in one transaction) took",
            &times.appends,
        ));
        families.push(histogram_family(
            COMMIT_RECORDS,
            "for each audit record made durable, how long its batch's append took (every decision waits for it)",
            &times.records,
        ));
        families.push(histogram_family(
            RECORD_WAITS,
            "for each audit record made durable, how long its caller waited for it, from queued to durable",
            &times.waits,
        ));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A Prometheus histogram of `histogram`, whose buckets are [`COMMIT_BOUNDS_MICROS`].
fn histogram_family(name: &str, help: &str, histogram: &CommitHistogram) -> MetricFamily {
    let buckets = COMMIT_BOUNDS_MICROS
        .iter()
        .zip(histogram.cumulative())
        .map(|(&bound, count)| {
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(Duration::from_micros(bound).as_secs_f64());
            bucket.set_cumulative_count(count);
            bucket
        })
        .collect();
    let mut proto = prometheus::proto::Histogram::default();
    proto.set_sample_count(histogram.count());
    proto.set_sample_sum(Duration::from_micros(histogram.sum_micros).as_secs_f64());
    proto.set_bucket(buckets);
    let mut metric = Metric::default();
    metric.set_histogram(proto);
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(vec![metric]);
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_histograms_are_exposed_in_prometheus_text() {
        let times = warrant_engine::audit::CommitTimes::default();
        times.observe(Duration::from_micros(300), 10);
        times.observe(Duration::from_millis(40), 5);
        let snapshot = times.snapshot();
        let families = vec![
            histogram_family(COMMIT_APPENDS, "appends", &snapshot.appends),
            histogram_family(COMMIT_RECORDS, "records", &snapshot.records),
        ];
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("# TYPE warrant_audit_commit_duration_seconds histogram"), "{text}");
        assert!(text.contains("warrant_audit_commit_duration_seconds_bucket{le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("warrant_audit_commit_duration_seconds_bucket{le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("warrant_audit_commit_duration_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("warrant_audit_commit_duration_seconds_count 2\n"), "{text}");
        assert!(text.contains("warrant_audit_record_commit_seconds_bucket{le=\"0.002\"} 10\n"), "{text}");
        assert!(text.contains("warrant_audit_record_commit_seconds_bucket{le=\"0.05\"} 15\n"), "{text}");
        assert!(text.contains("warrant_audit_record_commit_seconds_count 15\n"), "{text}");
    }
}
