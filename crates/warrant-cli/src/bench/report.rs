//! The figures of a run: the table, the JSON file and the SVG chart.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::load::{Latency, OpenRaw, Raw};
use super::target::FormPool;
use super::{BenchArgs, BenchError};
use crate::output::{grid, Cell, Frame};

/// The fraction of the authorize peak whose open-loop point the p99 target applies to.
pub const P99_TARGET_FRACTION: f64 = 0.7;
/// The p99 the open-loop point is checked against, in milliseconds.
pub const P99_TARGET_MS: f64 = 2.0;
/// The throughput ratio authorize / axum the issue targets.
pub const RATIO_TARGET: f64 = 0.5;

/// The gateway scenario's overhead target at the p99, milliseconds.
pub const OVERHEAD_P99_TARGET_MS: f64 = 2.0;

/// One way of reaching the upstream, measured at the scenario's rate.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayPath {
    /// `direct`, `nginx`, `gateway` (standalone, deciding over HTTP) or `in-serve` (the
    /// gateway of `warrant serve`, deciding in-process).
    pub via: &'static str,
    /// The MCP endpoint called.
    pub url: String,
    /// What the open loop measured.
    pub point: OpenLoop,
    /// This path's p50 minus the direct call's, milliseconds (none for `direct`).
    pub overhead_p50_ms: Option<f64>,
    /// … at the p99.
    pub overhead_p99_ms: Option<f64>,
    /// For a gateway path: whether its p99 overhead is under the target, with no failed
    /// call.
    pub target_met: Option<bool>,
}

/// What the gateway scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// Calls per second, for every path.
    pub rate_per_s: f64,
    /// Each path, in the order run.
    pub paths: Vec<GatewayPath>,
    /// Why nginx was not measured, when it was not.
    pub nginx_skipped: Option<String>,
    /// Why the in-process gateway was not measured, when it was not.
    pub in_serve_skipped: Option<String>,
}

/// The revocation-to-deny figures of one point.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationPoint {
    /// Completed cycles (delegate, allow, revoke, next decision).
    pub cycles: u64,
    /// Next decisions that allowed after an acknowledged revocation (target: zero).
    pub allows_after_revocation: u64,
    /// The codes of those next decisions.
    pub next_decision_codes: BTreeMap<String, u64>,
    /// `POST /v1/revocations` round trip.
    pub revoke: Latency,
    /// From sending the revocation to receiving the next decision.
    pub revoke_to_deny: Latency,
}

/// One closed-loop point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Clients, each with one request in flight.
    pub concurrency: usize,
    /// Successful requests in the measured window.
    pub requests: u64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// The first few failures.
    pub error_samples: Vec<String>,
    /// The measured window, seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput_per_s: f64,
    /// Decisions per second (batch only).
    pub decisions_per_s: Option<f64>,
    /// Request latency (a whole cycle for revocation).
    pub latency: Latency,
    /// Client assertions signed before the point (mint, exchange, revocation).
    pub presigned_assertions: Option<usize>,
    /// Client assertions signed inside the timed loop because the pre-signed ran out.
    pub inline_assertions: Option<u64>,
    /// Revocation-to-deny figures (revocation only).
    pub revocation: Option<RevocationPoint>,
    /// The audit appends of the measured window (the authorize scenario's points), read
    /// from the servers' metrics; `None` when not read.
    pub commits: Option<super::commits::CommitWindow>,
}

impl Point {
    /// A point from what a closed loop measured.
    pub fn closed(concurrency: usize, raw: &Raw, pool: Option<&FormPool>, batch: bool) -> Point {
        let revocation = (!raw.to_deny.is_empty()).then(|| RevocationPoint {
            cycles: raw.to_deny.len(),
            allows_after_revocation: raw.allows_after_revocation,
            next_decision_codes: raw.next_codes.clone(),
            revoke: Latency::of(&raw.revoke),
            revoke_to_deny: Latency::of(&raw.to_deny),
        });
        Point {
            concurrency,
            requests: raw.ok,
            errors: raw.errors,
            error_samples: raw.error_samples.clone(),
            elapsed_s: raw.elapsed.as_secs_f64(),
            throughput_per_s: raw.throughput(),
            decisions_per_s: batch.then(|| raw.unit_throughput()),
            latency: Latency::of(&raw.latency),
            presigned_assertions: pool.map(FormPool::size),
            inline_assertions: pool.map(FormPool::inline),
            revocation,
            commits: None,
        }
    }
}

/// Authorize against the baseline at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Concurrency.
    pub concurrency: usize,
    /// Authorize requests per second.
    pub authorize_per_s: f64,
    /// Baseline requests per second.
    pub axum_per_s: f64,
    /// `authorize_per_s / axum_per_s` (target: at least 0.5).
    pub ratio: f64,
    /// The baseline measured again after the scenarios ([`Report::baseline_after`]).
    pub axum_after_per_s: Option<f64>,
    /// `authorize_per_s / axum_after_per_s`: the ratio against the endpoint as it ran
    /// after authorize. The target is met only when both ratios meet it.
    pub ratio_after: Option<f64>,
    /// Batch decisions per second over baseline requests per second.
    pub batch_decisions_ratio: Option<f64>,
}

impl Ratio {
    /// Whether authorize made at least [`RATIO_TARGET`] of the baseline's throughput,
    /// against the baseline measured before and, when it was, after.
    pub fn met(&self) -> bool {
        self.ratio >= RATIO_TARGET && self.ratio_after.is_none_or(|r| r >= RATIO_TARGET)
    }
}

/// One open-loop point.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    /// Requests per second asked.
    pub rate_per_s: f64,
    /// That rate as a fraction of a peak (`None`: given with `--rate`): the authorize
    /// peak's, except for [`Report::baseline_open_loop_own`], where it is the endpoint's
    /// own; [`OpenLoop::basis`] says which.
    pub fraction_of_peak: Option<f64>,
    /// Where the rate comes from.
    pub basis: String,
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// Requests scheduled in the measured window.
    pub scheduled: u64,
    /// Successful.
    pub requests: u64,
    /// Failed.
    pub errors: u64,
    /// The first few failures.
    pub error_samples: Vec<String>,
    /// Successful requests per second achieved.
    pub achieved_per_s: f64,
    /// Latency from the intended send time (corrected for coordinated omission).
    pub latency: Latency,
    /// Latency from the actual send time.
    pub service_latency: Latency,
    /// How late the client sent, against the schedule: its own pacing on the shared
    /// cores, and any wait for a free slot once [`OpenLoop::max_in_flight`] requests are
    /// in flight (a backlog of the server's making).
    pub send_lag: Latency,
    /// The p99 target, milliseconds.
    pub p99_target_ms: f64,
    /// Whether p99 (from the intended send time) is under the target, with no failure.
    pub p99_met: bool,
    /// Whether the client sent late: its send lag's p99 over the p99 target, so the
    /// point's latencies hold the client's pacing on these cores, or a backlog past
    /// `max_in_flight`, as well as the server's answers.
    pub client_late: bool,
    /// The audit appends of the measured window, read from the servers' metrics; `None`
    /// when they could not be read (and for the gateway's points).
    pub commits: Option<super::commits::CommitWindow>,
}

impl OpenLoop {
    /// The point from what the open loop measured.
    pub fn new(raw: &OpenRaw, fraction_of_peak: Option<f64>, basis: String, max_in_flight: usize) -> OpenLoop {
        let latency = Latency::of(&raw.raw.latency);
        let send_lag = Latency::of(&raw.lag);
        OpenLoop {
            rate_per_s: raw.rate,
            fraction_of_peak,
            basis,
            max_in_flight,
            scheduled: raw.scheduled,
            requests: raw.raw.ok,
            errors: raw.raw.errors,
            error_samples: raw.raw.error_samples.clone(),
            achieved_per_s: raw.raw.throughput(),
            latency,
            service_latency: Latency::of(&raw.service),
            send_lag,
            p99_target_ms: P99_TARGET_MS,
            p99_met: raw.raw.errors == 0 && latency.count > 0 && latency.p99_ms < P99_TARGET_MS,
            client_late: send_lag.p99_ms > P99_TARGET_MS,
            commits: None,
        }
    }
}

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical cores this process may use.
    pub cores: usize,
    /// `std::env::consts::OS`.
    pub os: &'static str,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// How idle CPUs wait for work (Linux), which moves the low-concurrency latencies of
    /// every server measured; `None` where the kernel does not say.
    pub idle: Option<super::idle::IdlePolicy>,
}

/// What was driven.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `in-process` or `running`.
    pub kind: &'static str,
    /// The server's URL.
    pub url: String,
    /// A sentence saying where it runs.
    pub description: String,
    /// The nice value its SQLite commit thread runs at, as its `/metrics` reported when
    /// the run started; `None` when it reported none or its metrics could not be read.
    pub writer_nice: Option<i32>,
}

/// The options of the run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Measured seconds per point.
    pub duration_s: f64,
    /// Warm-up seconds per point.
    pub warmup_s: f64,
    /// Closed-loop concurrencies.
    pub concurrency: Vec<usize>,
    /// Requests per batch.
    pub batch_size: usize,
    /// Scenarios run.
    pub scenarios: Vec<&'static str>,
    /// The running server measured as the baseline (`--baseline`); `None` for the axum
    /// endpoint started in the harness's own process.
    pub baseline_url: Option<String>,
}

/// Every figure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The harness version.
    pub warrant_version: &'static str,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The machine.
    pub machine: Machine,
    /// The server driven.
    pub target: TargetInfo,
    /// The options.
    pub settings: RunSettings,
    /// The trivial axum endpoint, per concurrency, measured before the scenarios.
    pub baseline: Vec<Point>,
    /// The same endpoint measured again once the closed-loop scenarios have run (when
    /// authorize is one of them), per concurrency: how far the endpoint itself moved
    /// during the run, which moves every ratio as much.
    pub baseline_after: Vec<Point>,
    /// Each scenario, per concurrency.
    pub scenarios: BTreeMap<String, Vec<Point>>,
    /// Authorize against the baseline, per concurrency.
    pub ratios: Vec<Ratio>,
    /// The open-loop authorize points (50%, 70% and 90% of the peak, or `--rate`).
    pub open_loop: Vec<OpenLoop>,
    /// The baseline endpoint driven on the same schedule just before each open-loop
    /// authorize point, at the same rate: the tail this client and machine give a
    /// server that does nothing, the floor of [`Report::open_loop`]'s latencies.
    pub baseline_open_loop: Vec<OpenLoop>,
    /// The baseline endpoint driven open-loop at the same fractions of its own peak (the
    /// fastest of [`Report::baseline`]), after the authorize points (without `--rate`):
    /// the tail of a server that does nothing at the same share of its capacity.
    pub baseline_open_loop_own: Vec<OpenLoop>,
    /// The gateway scenario, when run.
    pub gateway: Option<GatewayReport>,
    /// The propagation scenario, when run.
    pub propagation: Option<super::propagation::PropagationReport>,
    /// The data directory disk's `fdatasync` latency: the floor of a durable answer.
    pub floor: Option<super::floor::Floor>,
}

impl Report {
    /// The baseline's row label: the built-in axum endpoint, or `--baseline`'s server.
    pub fn baseline_label(&self) -> &'static str {
        if self.settings.baseline_url.is_some() {
            "baseline /ping"
        } else {
            "axum /ping"
        }
    }

    /// An empty report for a run.
    pub fn new(args: &BenchArgs, url: &str, in_process: bool, description: &str, cores: usize) -> Report {
        let started_at =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Report {
            warrant_version: env!("CARGO_PKG_VERSION"),
            started_at,
            machine: Machine {
                cores,
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
                idle: super::idle::read(std::path::Path::new(super::idle::SYSFS)),
            },
            target: TargetInfo {
                kind: if in_process { "in-process" } else { "running" },
                url: url.to_owned(),
                description: description.to_owned(),
                writer_nice: None,
            },
            settings: RunSettings {
                duration_s: args.duration,
                warmup_s: args.warmup,
                concurrency: args.concurrency.clone(),
                batch_size: args.batch_size,
                scenarios: super::scenarios(&args.scenario).into_iter().map(super::Scenario::name).collect(),
                baseline_url: args.baseline.clone(),
            },
            baseline: Vec::new(),
            baseline_after: Vec::new(),
            scenarios: BTreeMap::new(),
            ratios: Vec::new(),
            open_loop: Vec::new(),
            baseline_open_loop: Vec::new(),
            baseline_open_loop_own: Vec::new(),
            gateway: None,
            propagation: None,
            floor: None,
        }
    }
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn right(text: String) -> Cell {
    Cell::Right(text)
}

/// A figures table: the header as given (left-aligned), then `rows`.
fn table(header: &[&str], rows: Vec<Vec<Cell>>) -> String {
    grid(Frame::Ruled, header.iter().map(|h| Cell::Left((*h).to_owned())).collect(), rows)
}

/// Prints the tables.
pub fn print(report: &Report) {
    let ratio_at: BTreeMap<usize, f64> = report.ratios.iter().map(|r| (r.concurrency, r.ratio)).collect();
    let header =
        ["scenario", "conc", "req/s", "decisions/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "vs axum"];
    let mut lines = Vec::new();
    let baseline = report.baseline_label();
    let rows = std::iter::once((baseline, &report.baseline))
        .chain(report.scenarios.iter().map(|(name, points)| (name.as_str(), points)));
    let order = [baseline, "authorize", "authzen", "batch", "mint", "exchange", "revocation"];
    let authorize_at: BTreeMap<usize, f64> = report
        .scenarios
        .get("authorize")
        .map(|ps| ps.iter().map(|p| (p.concurrency, p.throughput_per_s)).collect())
        .unwrap_or_default();
    let mut rows: Vec<_> = rows.collect();
    rows.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(order.len()));
    for (name, points) in rows {
        for p in points {
            let ratio = match name {
                "authorize" => ratio_at.get(&p.concurrency).map(|r| format!("{r:.2}x")).unwrap_or_default(),
                // AuthZEN against /v1/authorize at the same concurrency, in the same run.
                "authzen" => authorize_at
                    .get(&p.concurrency)
                    .filter(|a| **a > 0.0)
                    .map(|a| format!("{:.2}x authorize", p.throughput_per_s / a))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let decisions = match (name, p.decisions_per_s) {
                (_, Some(d)) => format!("{d:.0}"),
                ("authorize" | "authzen", None) => format!("{:.0}", p.throughput_per_s),
                _ => String::new(),
            };
            lines.push(vec![
                Cell::Left(name.to_owned()),
                right(p.concurrency.to_string()),
                right(format!("{:.0}", p.throughput_per_s)),
                right(decisions),
                right(ms(p.latency.p50_ms)),
                right(ms(p.latency.p99_ms)),
                right(ms(p.latency.p999_ms)),
                right(ms(p.latency.max_ms)),
                right(p.errors.to_string()),
                right(ratio),
            ]);
        }
    }
    if let Some(floor) = &report.floor {
        let f = &floor.fdatasync;
        outln!(
            "\nfloor: a 4 KiB write + fdatasync on {} ({} samples): p50 {} ms, p99 {} ms, max {} ms",
            floor.dir.display(),
            f.count,
            ms(f.p50_ms),
            ms(f.p99_ms),
            ms(f.max_ms)
        );
        let after_idle = &floor.fdatasync_after_idle;
        outln!(
            "       after {} ms idle before each (as at one connection): p50 {} ms, p99 {} ms, max {} ms",
            floor.idle_gap_ms,
            ms(after_idle.p50_ms),
            ms(after_idle.p99_ms),
            ms(after_idle.max_ms)
        );
        if let Some(p) = report.scenarios.get("authorize").and_then(|ps| ps.iter().find(|p| p.concurrency == 1)) {
            outln!(
                "       authorize at c=1: p50 {} ms; {} ms above the floor's p50, {} ms above the after-idle p50 \
                 (every answer waits for one sync)",
                ms(p.latency.p50_ms),
                ms(p.latency.p50_ms - f.p50_ms),
                ms(p.latency.p50_ms - after_idle.p50_ms)
            );
            if let Some(w) = p.commits.as_ref().filter(|w| w.appends > 0) {
                outln!(
                    "       in the server: a decision {} ms on average (parsed request to decision); its record's wait from queued to durable {} ms, of which the append (write and sync, the hand-offs to and from the commit thread included) {} ms",
                    ms(w.decision_mean_ms),
                    ms(w.wait_mean_ms),
                    ms(w.append_mean_ms)
                );
            }
        }
    }
    if let Some(idle) = &report.machine.idle {
        // Under the floor's lines, or on its own after whatever came before.
        outln!("{}{}", if report.floor.is_none() { "\n" } else { "" }, idle.describe());
    }
    outln!("\nclosed loop (each client sends its next request when the last is answered)");
    outln!("{}", table(&header, lines));
    outln!(
        "batch: {} requests per call; revocation: one row per delegate/allow/revoke/next-decision cycle",
        report.settings.batch_size
    );

    if let Some(p) = &report.propagation {
        outln!(
            "\npropagation: {} revocations on the first server, each asked on {} other server(s) until denied, \
             under {:.0} background decisions/s ({} workers, {} not allowed)",
            p.revocations,
            p.followers.len(),
            p.load_per_s,
            p.load_concurrency,
            p.load_failures
        );
        let header = ["asked on", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms"];
        let row = |name: String, l: &super::load::Latency| {
            vec![
                Cell::Left(name),
                right(l.count.to_string()),
                right(ms(l.p50_ms)),
                right(ms(l.p90_ms)),
                right(ms(l.p99_ms)),
                right(ms(l.max_ms)),
            ]
        };
        let mut lines: Vec<_> = p.followers.iter().zip(&p.per_follower).map(|(f, l)| row(f.clone(), l)).collect();
        lines.push(row("every other server".into(), &p.to_deny));
        lines.push(row("(the revoke call itself)".into(), &p.revoke));
        outln!("{}", table(&header, lines));
        outln!("time from the revocation's answer to the first deny on another server");
    }

    if let Some(points) = report.scenarios.get("revocation") {
        let header = [
            "conc",
            "cycles",
            "revoke p50 ms",
            "revoke p99 ms",
            "revoke p99.9 ms",
            "revoke->deny p50 ms",
            "revoke->deny p99 ms",
            "allows after revocation",
            "next decision codes",
        ];
        let mut lines = Vec::new();
        for p in points {
            let Some(r) = &p.revocation else { continue };
            let codes: Vec<String> = r.next_decision_codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            lines.push(vec![
                right(p.concurrency.to_string()),
                right(r.cycles.to_string()),
                right(ms(r.revoke.p50_ms)),
                right(ms(r.revoke.p99_ms)),
                right(ms(r.revoke.p999_ms)),
                right(ms(r.revoke_to_deny.p50_ms)),
                right(ms(r.revoke_to_deny.p99_ms)),
                right(r.allows_after_revocation.to_string()),
                Cell::Left(codes.join(", ")),
            ]);
        }
        let allows: u64 = points.iter().filter_map(|p| p.revocation.as_ref()).map(|r| r.allows_after_revocation).sum();
        let cycles: u64 = points.iter().filter_map(|p| p.revocation.as_ref()).map(|r| r.cycles).sum();
        outln!("\nrevocation to deny (POST /v1/revocations, then at once POST /v1/authorize with the revoked warrant)");
        outln!("{}", table(&header, lines));
        outln!(
            "allows after an acknowledged revocation: {allows} of {cycles} cycles (target 0): {}",
            if allows == 0 && cycles > 0 { "MET" } else { "NOT MET" }
        );
    }

    if !report.ratios.is_empty() {
        outln!("\nauthorize throughput / axum baseline throughput, same client and concurrency (target >= {RATIO_TARGET}):");
        if let Some(url) = &report.settings.baseline_url {
            outln!(
                "  (the baseline is the running server at {url}; the target is set against the built-in axum endpoint)"
            );
        }
        for r in &report.ratios {
            let after = match (r.axum_after_per_s, r.ratio_after) {
                (Some(axum), Some(ratio)) => format!("; baseline after: {axum:>9.0}/s, {ratio:.3}x"),
                _ => String::new(),
            };
            outln!(
                "  c={:<4} {:>9.0}/s / {:>9.0}/s = {:.3}x{after}  {}",
                r.concurrency,
                r.authorize_per_s,
                r.axum_per_s,
                r.ratio,
                if r.met() { "met" } else { "not met" }
            );
        }
        if !report.baseline_after.is_empty() {
            outln!("  (the baseline measured before the scenarios and again after them; met only against both)");
        }
    }

    if let (Some(authorize), Some(agent)) = (report.scenarios.get("authorize"), report.scenarios.get("cedar-agent")) {
        outln!("\nauthorize (verified, decided, durably audited) / cedar-agent (evaluated only), same client and concurrency:");
        for a in authorize {
            let Some(c) = agent.iter().find(|p| p.concurrency == a.concurrency) else { continue };
            let ratio = if c.throughput_per_s > 0.0 { a.throughput_per_s / c.throughput_per_s } else { 0.0 };
            outln!(
                "  c={:<4} {:>9.0}/s / {:>9.0}/s = {:.3}x  p50 {:.3} / {:.3} ms  {}",
                a.concurrency,
                a.throughput_per_s,
                c.throughput_per_s,
                ratio,
                a.latency.p50_ms,
                c.latency.p50_ms,
                if ratio >= 1.0 { "ahead" } else { "behind" }
            );
        }
    }

    if !report.open_loop.is_empty() {
        outln!("\nopen loop: authorize on a fixed schedule, latency from the intended send time");
        let header = [
            "rate",
            "scheduled",
            "achieved/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "service p99 ms",
            "send lag p99 ms",
            "errors",
        ];
        let rows = |points: &[OpenLoop]| -> Vec<Vec<Cell>> {
            points
                .iter()
                .map(|o| {
                    let rate = match o.fraction_of_peak {
                        Some(f) => format!("{:.0}/s ({:.0}% of peak)", o.rate_per_s, f * 100.0),
                        None => format!("{:.0}/s", o.rate_per_s),
                    };
                    let mut line = vec![right(rate), right(o.scheduled.to_string())];
                    line.extend(open_loop_cells(o));
                    line.extend([right(ms(o.send_lag.p99_ms)), right(o.errors.to_string())]);
                    line
                })
                .collect()
        };
        outln!("{}", table(&header, rows(&report.open_loop)));
        if let Some(first) = report.open_loop.first() {
            outln!("basis: {}", first.basis);
        }
        if !report.baseline_open_loop.is_empty() {
            outln!(
                "\n{} on the same schedule, just before each authorize point: the tail of a server that does nothing",
                report.baseline_label()
            );
            outln!("{}", table(&header, rows(&report.baseline_open_loop)));
            outln!("basis: the rates of the authorize points above");
        }
        if let Some(first) = report.baseline_open_loop_own.first() {
            outln!("\n{} at the same fractions of its own peak", report.baseline_label());
            outln!("{}", table(&header, rows(&report.baseline_open_loop_own)));
            outln!("basis: {}", first.basis);
        }
        let endpoint = report.baseline_label();
        let all = (report.open_loop.iter().map(|o| ("authorize", o)))
            .chain(report.baseline_open_loop.iter().chain(&report.baseline_open_loop_own).map(|o| (endpoint, o)));
        let late: Vec<String> =
            all.filter(|(_, o)| o.client_late).map(|(what, o)| format!("{what} {:.0}/s", o.rate_per_s)).collect();
        if !late.is_empty() {
            outln!(
                "the client sent late (send lag p99 over {P99_TARGET_MS} ms) at {}: its pacing on these cores, or a wait for a free in-flight slot, is in those latencies",
                late.join(", ")
            );
        }
        for o in &report.open_loop {
            if let Some(w) = &o.commits {
                outln!("{}", commits_line(o.rate_per_s, w));
            }
        }
        // The endpoint's points were pushed in authorize's order: the same-rate ones beside
        // them, the own-peak ones after them, fraction for fraction.
        let late_mark = |b: &OpenLoop| if b.client_late { " (client late)" } else { "" };
        for (i, o) in report.open_loop.iter().enumerate() {
            if o.fraction_of_peak.is_some_and(|f| f != P99_TARGET_FRACTION) {
                continue;
            }
            let floor = report
                .baseline_open_loop
                .get(i)
                .map(|b| format!("; the endpoint at the same rate: p99 {} ms{}", ms(b.latency.p99_ms), late_mark(b)))
                .unwrap_or_default();
            let own = report
                .baseline_open_loop_own
                .get(i)
                .map(|b| {
                    let (rate, p99) = (b.rate_per_s, ms(b.latency.p99_ms));
                    format!("; at the same share of its own peak ({rate:.0}/s): p99 {p99} ms{}", late_mark(b))
                })
                .unwrap_or_default();
            outln!(
                "p99 under {P99_TARGET_MS} ms at {:.0}/s: {}{floor}{own}",
                o.rate_per_s,
                if o.p99_met { "MET" } else { "NOT MET" }
            );
        }
    }
    if let Some(g) = &report.gateway {
        print_gateway(g);
    }
    if report.target.kind == "in-process" {
        outln!(
            "\nnote: client, Warrant server and baseline share this machine's {} cores; every figure includes the client's own CPU.",
            report.machine.cores
        );
    }
}

/// What the audit log's part of an open-loop point says about its p99: how many records
/// kept their callers waiting longer than the target, and whether that alone puts the
/// p99 over it; then how many decisions took longer than the target in the server, the
/// record's wait included, and the histogram bound their p99 is at most.
fn commits_line(rate: f64, w: &super::commits::CommitWindow) -> String {
    let slowest = match w.slowest {
        Some(super::commits::Slowest { over_ms, at_most_ms: Some(at_most) }) => {
            format!("; the slowest append took {over_ms}-{at_most} ms")
        }
        Some(super::commits::Slowest { over_ms, at_most_ms: None }) => {
            format!("; the slowest append took over {over_ms} ms")
        }
        None => String::new(),
    };
    let verdict = if w.records == 0 {
        "no record was written"
    } else if w.writes_exceed_p99() {
        "the audit log alone puts p99 over the target"
    } else {
        "the audit log leaves p99 to the rest of the path"
    };
    let p99 = match w.decision_p99_at_most_ms {
        Some(ms) => format!("p99 at most {ms} ms"),
        None if w.decisions > 0 => "p99 over the histogram's last bound".to_owned(),
        None => "no decision".to_owned(),
    };
    format!(
        "audit log at {rate:.0}/s: {} records in {} appends (mean {:.2} ms); {} records ({:.2}%) kept their callers waiting over {} ms from queued to durable (mean wait {:.2} ms), {} ({:.2}%) in an append over {} ms itself{slowest}: {verdict}; in the server (parsed request to decision) {} decisions ({:.2}%) took over {} ms, {p99}",
        w.records,
        w.appends,
        w.append_mean_ms,
        w.records_waited_over_target,
        w.share_waited_over_target() * 100.0,
        w.target_ms,
        w.wait_mean_ms,
        w.records_over_target,
        w.share_over_target() * 100.0,
        w.target_ms,
        w.decisions_over_target,
        w.share_decisions_over_target() * 100.0,
        w.target_ms,
    )
}

/// The cells every open-loop table shows, in order: achieved/s, p50, p99, p99.9 and max
/// latency, and the service p99.
fn open_loop_cells(o: &OpenLoop) -> [Cell; 6] {
    [
        right(format!("{:.0}", o.achieved_per_s)),
        right(ms(o.latency.p50_ms)),
        right(ms(o.latency.p99_ms)),
        right(ms(o.latency.p999_ms)),
        right(ms(o.latency.max_ms)),
        right(ms(o.service_latency.p99_ms)),
    ]
}

fn print_gateway(g: &GatewayReport) {
    outln!("\ngateway: MCP tools/call at {:.0}/s (open loop), latency from the intended send time", g.rate_per_s);
    let header = [
        "path",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "service p99 ms",
        "errors",
        "overhead p50 ms",
        "overhead p99 ms",
    ];
    let show = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let lines = g
        .paths
        .iter()
        .map(|p| {
            let mut line = vec![Cell::Left(p.via.to_owned())];
            line.extend(open_loop_cells(&p.point));
            line.extend([
                right(p.point.errors.to_string()),
                right(show(p.overhead_p50_ms)),
                right(show(p.overhead_p99_ms)),
            ]);
            line
        })
        .collect();
    outln!("{}", table(&header, lines));
    outln!("overhead: the path's latency minus the direct call's, at the same percentile");
    if let Some(why) = &g.nginx_skipped {
        outln!("nginx: not measured: {why}");
    }
    if let Some(why) = &g.in_serve_skipped {
        outln!("in-serve: not measured: {why}");
    }
    for p in &g.paths {
        if let Some(met) = p.target_met {
            let verdict = if met { "MET" } else { "NOT MET" };
            outln!("{} overhead p99 < {OVERHEAD_P99_TARGET_MS} ms: {verdict}", p.via);
        }
    }
    for p in g.paths.iter().filter(|p| !p.point.error_samples.is_empty()) {
        outln!("{} failures, e.g.: {}", p.via, p.point.error_samples.join(" | "));
    }
}

/// Draws latency (p50 and p99) against throughput for authorize and the baseline.
pub fn chart(report: &Report, path: &Path) -> Result<(), BenchError> {
    use plotters::prelude::*;

    let err = |e: &dyn std::fmt::Display| BenchError::Chart(e.to_string());
    let authorize = report.scenarios.get("authorize").map(Vec::as_slice).unwrap_or_default();
    let series_of = |points: &[Point], p99: bool| -> Vec<(f64, f64, usize)> {
        points
            .iter()
            .filter(|p| p.latency.count > 0)
            .map(|p| (p.throughput_per_s, if p99 { p.latency.p99_ms } else { p.latency.p50_ms }, p.concurrency))
            .collect()
    };
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let series = [
        ("authorize p50".to_owned(), series_of(authorize, false), blue, false),
        ("authorize p99 (dashed)".to_owned(), series_of(authorize, true), blue, true),
        (format!("{} p50", report.baseline_label()), series_of(&report.baseline, false), orange, false),
        (format!("{} p99 (dashed)", report.baseline_label()), series_of(&report.baseline, true), orange, true),
    ];
    let open: Vec<&OpenLoop> = report.open_loop.iter().filter(|o| o.latency.count > 0).collect();
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).chain(open.iter().map(|o| o.achieved_per_s));
    let ys = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .chain(open.iter().map(|o| o.latency.p99_ms))
        .chain(std::iter::once(P99_TARGET_MS));
    let x_max = xs.fold(1.0f64, f64::max) * 1.1;
    let (y_min, y_max) = ys.fold((f64::MAX, 0.001f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let y_min = (y_min * 0.7).max(0.001);
    // Head room above the data for the legend.
    let y_max = y_max * 8.0;

    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!(
        "Warrant {}: latency against throughput ({} cores, {})",
        report.warrant_version, report.machine.cores, report.target.kind
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("throughput (requests per second)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(|e| err(&e))?;

    for (name, points, color, p99) in &series {
        if points.is_empty() {
            continue;
        }
        let style = if *p99 { color.stroke_width(2) } else { color.mix(0.55).stroke_width(2) };
        let line = points.iter().map(|p| (p.0, p.1));
        let drawn = if *p99 {
            chart.draw_series(DashedLineSeries::new(line, 8, 5, style)).map_err(|e| err(&e))?
        } else {
            chart.draw_series(LineSeries::new(line, style)).map_err(|e| err(&e))?
        };
        drawn.label(name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart.draw_series(points.iter().map(|p| Circle::new((p.0, p.1), 3, style.filled()))).map_err(|e| err(&e))?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Text::new(format!("c={}", p.2), (p.0, p.1 * 1.08), ("sans-serif", 11).into_font())),
            )
            .map_err(|e| err(&e))?;
    }
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new([(0.0, P99_TARGET_MS), (x_max, P99_TARGET_MS)], 4, 4, grey.stroke_width(1)))
        .map_err(|e| err(&e))?
        .label("p99 target, 2 ms")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey));
    if !open.is_empty() {
        let red = RGBColor(214, 39, 40);
        let rates: Vec<String> = open.iter().map(|o| format!("{:.0}", o.rate_per_s)).collect();
        chart
            .draw_series(open.iter().map(|o| Cross::new((o.achieved_per_s, o.latency.p99_ms), 6, red.stroke_width(2))))
            .map_err(|e| err(&e))?
            .label(format!("authorize p99, open loop at {}/s", rates.join(", ")))
            .legend(move |(x, y)| Cross::new((x + 12, y), 5, red.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
