//! `warrant bench`: the HTTP load harness. Drives a Warrant server (a running one, or one
//! started in this process on a temporary data directory) over loopback HTTP at chosen
//! concurrencies, and, in the same run and with the same client, a trivial axum JSON
//! endpoint: the framework's ceiling, the baseline of every ratio.

mod cedar_agent;
mod commits;
mod floor;
mod gateway;
mod idle;
mod load;
mod mcp;
mod propagation;
mod report;
mod target;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::client::{Client, ClientError};
use load::{closed_loop, open_loop, Phase};
use report::{OpenLoop, Point, Ratio, Report};
use target::{authorize_bodies, FormMaker, FormPool, Runner, Work};

/// The largest number of requests an open-loop point keeps in flight.
const OPEN_LOOP_IN_FLIGHT: usize = 256;
/// The open-loop points' rates, as fractions of the authorize peak (without `--rate`).
const OPEN_LOOP_FRACTIONS: [f64; 3] = [0.5, report::P99_TARGET_FRACTION, 0.9];
/// The most form bodies pre-signed for one point.
const POOL_CAP: usize = 100_000;
/// The rate assumed for the first point of a token scenario, per second.
const POOL_FIRST_GUESS: f64 = 1500.0;

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// `POST /v1/authorize`: one decision, durably audited.
    Authorize,
    /// `POST /access/v1/evaluation` (AuthZEN) by a PEP: the same decision as authorize.
    Authzen,
    /// `POST /v1/authorize/batch`.
    Batch,
    /// Client credentials with a fresh client assertion per request.
    Mint,
    /// Token exchange (delegation) with a fresh actor assertion per request.
    Exchange,
    /// Delegate, authorize, revoke, authorize again: does the very next decision deny?
    Revocation,
    /// MCP `tools/call` at a fixed rate: directly, through nginx, through `warrant gateway`
    /// and through the gateway of `warrant serve`.
    Gateway,
    /// Servers sharing a database (`--also`): a warrant revoked on the first server,
    /// asked on the others until they deny it; the time to that deny, under load.
    Propagation,
    /// A cedar-agent (`--cedar-agent URL`, a Cedar PDP that audits nothing) asked what
    /// authorize asks, with the same policies, by the same client.
    CedarAgent,
    /// Every scenario above but propagation and cedar-agent.
    All,
}

impl Scenario {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Authorize => "authorize",
            Scenario::Authzen => "authzen",
            Scenario::Batch => "batch",
            Scenario::Mint => "mint",
            Scenario::Exchange => "exchange",
            Scenario::Revocation => "revocation",
            Scenario::Gateway => "gateway",
            Scenario::Propagation => "propagation",
            Scenario::CedarAgent => "cedar-agent",
            Scenario::All => "all",
        }
    }
}

/// `warrant bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A running server to drive (loopback only); without it a server is started in this
    /// process on a temporary data directory.
    #[arg(long, value_parser = base_url)]
    server: Option<String>,
    /// The admin token of `--server`; by default read from `<data>/admin.token`.
    #[arg(long, env = "WARRANT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The data directory of `--server`, holding `admin.token`.
    #[arg(long, env = "WARRANT_DATA", default_value = warrant_server::config::DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// Other servers sharing `--server`'s database (PostgreSQL; loopback only): the
    /// authorize load is spread over every server, and the propagation scenario asks them.
    #[arg(long, value_name = "URL", value_parser = base_url)]
    also: Vec<String>,
    /// A running server to measure as the baseline instead of the axum endpoint this
    /// process starts (loopback only). It must echo the harness's `POST /ping` body as the
    /// built-in one does; `docs/bench/answer-path` serves one in its own process, plain or
    /// with a durable write per request, to compare designs with the same client.
    #[arg(long, value_name = "URL", value_parser = base_url)]
    baseline: Option<String>,
    /// A running cedar-agent for the cedar-agent scenario (loopback only;
    /// `scripts/bench-cedar-agent` installs and starts one).
    #[arg(long, value_name = "URL", value_parser = base_url)]
    cedar_agent: Option<String>,
    /// Revocations the propagation scenario makes.
    #[arg(long, default_value_t = 1000)]
    revocations: usize,
    /// Scenarios, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenario: Vec<Scenario>,
    /// Closed-loop concurrencies (clients, each with one request in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds per point (run, not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open-loop rate, requests per second [default: 50%, 70% and 90% of the measured
    /// authorize peak, one point each].
    #[arg(long)]
    rate: Option<f64>,
    /// Requests per batch in the batch scenario (at most 100).
    #[arg(long, default_value_t = 20)]
    batch_size: usize,
    /// The gateway scenario's rate: MCP tool calls per second, on every path.
    #[arg(long, default_value_t = 1000.0)]
    gateway_rate: f64,
    /// The nginx binary the gateway scenario runs as a plain reverse proxy (skipped, and
    /// said so, when there is none).
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw latency (p50, p99) against throughput for authorize and the axum baseline as SVG.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
}

/// Why `warrant bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range.
    #[error("{0}")]
    Usage(String),
    /// A server to drive (`--server`, `--also`, `--baseline`, `--cedar-agent`) is not a
    /// loopback address.
    #[error("`{0}` is not a loopback URL: the harness only drives 127.0.0.0/8, ::1 or localhost")]
    NotLoopback(String),
    /// No admin token for `--server`.
    #[error("no admin token: pass --admin-token, or --data with the server's data directory")]
    NoAdminToken,
    /// A server (Warrant or the baseline) could not start or stopped with an error.
    #[error("server: {0}")]
    Server(String),
    /// A setup call failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The server refused or failed a setup call.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// JSON could not be written or a token signed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file or the temporary directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A histogram operation failed.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A load worker failed.
    #[error("load worker: {0}")]
    Worker(String),
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

/// A server's URL as the options take it: without the trailing slash, so that paths are
/// appended to it and it is reported (and recorded in the JSON) one way.
fn base_url(url: &str) -> Result<String, std::convert::Infallible> {
    Ok(url.trim_end_matches('/').to_owned())
}

/// Whether `url` names a loopback host.
fn is_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else { return false };
    if !matches!(parsed.scheme(), "http" | "https") {
        return false;
    }
    match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => {
            host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

fn check(args: &BenchArgs) -> Result<(), BenchError> {
    let bad = |m: &str| Err(BenchError::Usage(m.to_owned()));
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return bad("--duration must be more than 0 and at most 3600 seconds");
    }
    if !(args.warmup >= 0.0 && args.warmup <= 60.0) {
        return bad("--warmup must be from 0 to 60 seconds");
    }
    if args.concurrency.is_empty() || args.concurrency.iter().any(|&c| c == 0 || c > 1024) {
        return bad("--concurrency values must be from 1 to 1024");
    }
    if args.batch_size == 0 || args.batch_size > warrant_engine::request::MAX_BATCH {
        return bad("--batch-size must be from 1 to 100");
    }
    if !(args.gateway_rate > 0.0 && args.gateway_rate <= 1_000_000.0) {
        return bad("--gateway-rate must be more than 0 and at most 1000000 per second");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r <= 1_000_000.0)) {
        return bad("--rate must be more than 0 and at most 1000000 per second");
    }
    if !args.also.is_empty() && args.server.is_none() {
        return bad("--also names servers sharing --server's database: give --server too");
    }
    if let Some(url) = args.also.iter().find(|u| !is_loopback(u)) {
        return Err(BenchError::NotLoopback(url.clone()));
    }
    if let Some(url) = args.baseline.as_ref().filter(|u| !is_loopback(u)) {
        return Err(BenchError::NotLoopback(url.clone()));
    }
    if let Some(url) = args.cedar_agent.as_ref().filter(|u| !is_loopback(u)) {
        return Err(BenchError::NotLoopback(url.clone()));
    }
    if args.scenario.contains(&Scenario::CedarAgent) && args.cedar_agent.is_none() {
        return bad("the cedar-agent scenario needs a running cedar-agent: --cedar-agent URL (scripts/bench-cedar-agent starts one)");
    }
    if args.scenario.contains(&Scenario::Propagation) && args.also.is_empty() {
        return bad("the propagation scenario needs another server sharing the database: --also URL");
    }
    if args.revocations == 0 || args.revocations > 100_000 {
        return bad("--revocations must be from 1 to 100000");
    }
    Ok(())
}

/// The selected scenarios, in running order.
fn scenarios(selected: &[Scenario]) -> Vec<Scenario> {
    let all = [
        Scenario::Authorize,
        Scenario::Authzen,
        Scenario::Batch,
        Scenario::Mint,
        Scenario::Exchange,
        Scenario::Revocation,
        Scenario::Gateway,
        Scenario::Propagation,
        Scenario::CedarAgent,
    ];
    if selected.contains(&Scenario::All) {
        return all
            .into_iter()
            .filter(|s| !matches!(s, Scenario::Propagation | Scenario::CedarAgent) || selected.contains(s))
            .collect();
    }
    all.into_iter().filter(|s| selected.contains(s)).collect()
}

/// Where the Warrant server is.
struct Target {
    url: String,
    admin: String,
    description: String,
    in_process: bool,
    /// The in-process server's engine (none for `--server`).
    engine: Option<Arc<warrant_engine::Engine>>,
}

/// Runs `warrant bench`.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    check(&args)?;
    let http = target::http_client()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut own = None;
    let tmp;
    let mut tmp_dir = None;
    let target = match &args.server {
        Some(server) => {
            if !is_loopback(server) {
                return Err(BenchError::NotLoopback(server.clone()));
            }
            let admin = match &args.admin_token {
                Some(t) => t.clone(),
                None => std::fs::read_to_string(args.data.join(warrant_server::server::ADMIN_TOKEN_FILE))
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| BenchError::NoAdminToken)?,
            };
            let url = server.clone();
            Target {
                description: format!("the running server at {url} (its own process)"),
                url,
                admin,
                in_process: false,
                engine: None,
            }
        }
        None => {
            tmp =
                tempfile::tempdir().map_err(|source| BenchError::Io { path: "temporary directory".into(), source })?;
            tmp_dir = Some(tmp.path().to_owned());
            let (started, admin, engine) = target::start_warrant(tmp.path()).await?;
            let target = Target {
                description: format!(
                    "an in-process server at {} (data in {}), sharing this process and its {cores} cores with the client",
                    started.url,
                    tmp.path().display()
                ),
                url: started.url.clone(),
                admin,
                in_process: true,
                engine: Some(engine),
            };
            own = Some(started);
            target
        }
    };
    // The disk the server's data (and audit log) lives on: the in-process server's
    // temporary directory, or --data for a running server.
    let data_dir = match &own {
        Some(_) => tmp_dir.clone(),
        None => Some(args.data.clone()),
    };
    let floor = match &data_dir {
        Some(dir) => match floor::measure(dir).await {
            Ok(floor) => Some(floor),
            Err(e) => {
                outln!("floor:    not measured ({e})");
                None
            }
        },
        None => None,
    };
    let (baseline, baseline_url) = match &args.baseline {
        Some(url) => (None, url.clone()),
        None => {
            let started = target::start_baseline().await?;
            let url = started.url.clone();
            (Some(started), url)
        }
    };
    outln!("warrant bench {}", env!("CARGO_PKG_VERSION"));
    outln!("target:   {}", target.description);
    let writer_nice = match commits::writer_nice(&http, &target.url).await {
        Ok(Some(nice)) => {
            outln!("writer:   the target's SQLite commit thread runs at nice {nice}");
            Some(nice)
        }
        Ok(None) => {
            outln!("writer:   the target reports no commit thread priority (PostgreSQL, not Linux, or older)");
            None
        }
        Err(e) => {
            outln!("writer:   not read ({e})");
            None
        }
    };
    match &baseline {
        Some(_) => {
            outln!("baseline: trivial axum JSON endpoint POST {baseline_url}/ping, in this process, same client")
        }
        None => outln!("baseline: the running server at {baseline_url} (its own process), POST /ping, same client"),
    }
    outln!(
        "client:   reqwest (HTTP/1.1, keep-alive) in this process; {cores} cores shared by the client and {}",
        match (target.in_process, baseline.is_some()) {
            (true, true) => "both servers",
            (false, true) => "the baseline (the target server runs beside them)",
            (true, false) => "the target server (the baseline runs beside them)",
            (false, false) => "the servers it drives, each in its own process",
        }
    );
    outln!(
        "points:   {} s measured after {} s warm-up, concurrency {:?}",
        args.duration,
        args.warmup,
        args.concurrency
    );
    let outcome = measure(&args, &http, &target, &baseline_url, cores).await;
    let stopped_baseline = match baseline {
        Some(started) => started.stop().await,
        None => Ok(()),
    };
    let stopped_own = match own {
        Some(started) => started.stop().await,
        None => Ok(()),
    };
    let mut report = outcome?;
    report.floor = floor;
    report.target.writer_nice = writer_nice;
    stopped_baseline?;
    stopped_own?;
    report::print(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).map_err(|source| BenchError::Io { path: path.display().to_string(), source })?;
        outln!("JSON written to {}", path.display());
    }
    if let Some(path) = &args.chart {
        report::chart(&report, path)?;
        outln!("chart written to {}", path.display());
    }
    Ok(())
}

fn bodies_for(values: Vec<Value>, batch: Option<usize>) -> Vec<String> {
    match batch {
        None => values.iter().map(Value::to_string).collect(),
        Some(size) => (0..values.len())
            .map(|start| {
                let requests: Vec<&Value> = values.iter().cycle().skip(start).take(size).collect();
                serde_json::json!({ "requests": requests }).to_string()
            })
            .collect(),
    }
}

fn pool_size(last_rate: Option<f64>, phase: Phase, concurrency: usize) -> usize {
    let rate = last_rate.unwrap_or(POOL_FIRST_GUESS).max(100.0);
    let secs = (phase.warmup + phase.measure).as_secs_f64();
    let want = (rate * secs * 1.5).ceil() as usize + 16 * concurrency;
    want.min(POOL_CAP)
}

async fn measure(
    args: &BenchArgs,
    http: &reqwest::Client,
    target: &Target,
    baseline_url: &str,
    cores: usize,
) -> Result<Report, BenchError> {
    let phase = Phase { warmup: Duration::from_secs_f64(args.warmup), measure: Duration::from_secs_f64(args.duration) };
    let client = Client::new(&target.url, Some(target.admin.clone()));
    let fixture = target::Fixture::create(&client).await?;
    let mut report = Report::new(args, &target.url, target.in_process, &target.description, cores);

    let ping = Arc::new(Runner { http: http.clone(), work: Work::Ping { url: format!("{baseline_url}/ping") } });
    for &c in &args.concurrency {
        let raw = closed_loop(Arc::clone(&ping), c, phase, &format!("axum baseline c={c}")).await?;
        report.baseline.push(Point::closed(c, &raw, None, false));
    }

    // Every server the authorize load is spread over (more than one: a shared database).
    let servers: Vec<String> = std::iter::once(target.url.clone()).chain(args.also.iter().cloned()).collect();
    let authorize_urls: Vec<String> = servers.iter().map(|s| format!("{s}/v1/authorize")).collect();
    for scenario in scenarios(&args.scenario) {
        if scenario == Scenario::Propagation {
            let warrants = fixture.warrants(&client).await?;
            let maker = FormMaker::exchange(&fixture, &warrants.root)?;
            let load = args.concurrency.first().copied().unwrap_or(1);
            let run =
                propagation::run(http, &servers, &target.admin, maker, &warrants.delegated, args.revocations, load);
            report.propagation = Some(run.await?);
            continue;
        }
        if scenario == Scenario::Gateway {
            let run = gateway::run(http, &client, &target.url, target.engine.clone(), &fixture, args, phase);
            report.gateway = Some(run.await?);
            continue;
        }
        let mut points = Vec::new();
        let mut last_rate = None;
        for &c in &args.concurrency {
            let warrants = fixture.warrants(&client).await?;
            let (work, pool) = match scenario {
                Scenario::Authorize => {
                    let bodies = bodies_for(authorize_bodies(&warrants.delegated)?, None);
                    (Work::Authorize { urls: authorize_urls.clone(), bodies }, None)
                }
                Scenario::CedarAgent => {
                    let url = args
                        .cedar_agent
                        .as_deref()
                        .ok_or_else(|| BenchError::Setup("the cedar-agent scenario needs --cedar-agent URL".into()))?;
                    let prepared = cedar_agent::prepare(http, url, &client, &warrants.delegated).await?;
                    (Work::CedarAgent { url: prepared.url, bodies: prepared.bodies }, None)
                }
                Scenario::Authzen => {
                    let bodies = bodies_for(target::evaluation_bodies(&warrants.delegated)?, None);
                    let bearer = fixture.pep.clone();
                    (Work::Authzen { url: format!("{}/access/v1/evaluation", target.url), bearer, bodies }, None)
                }
                Scenario::Batch => {
                    let bodies = bodies_for(authorize_bodies(&warrants.delegated)?, Some(args.batch_size));
                    let size = u64::try_from(args.batch_size).unwrap_or(1);
                    (Work::Batch { url: format!("{}/v1/authorize/batch", target.url), bodies, size }, None)
                }
                Scenario::Mint | Scenario::Exchange | Scenario::Revocation => {
                    let maker = match scenario {
                        Scenario::Mint => FormMaker::mint(&fixture)?,
                        _ => FormMaker::exchange(&fixture, &warrants.root)?,
                    };
                    let pool = Arc::new(FormPool::new(maker, pool_size(last_rate, phase, c))?);
                    let work = match scenario {
                        Scenario::Revocation => Work::Revocation {
                            base: target.url.clone(),
                            admin: target.admin.clone(),
                            pool: Arc::clone(&pool),
                        },
                        _ => Work::Token { url: format!("{}/oauth2/token", target.url), pool: Arc::clone(&pool) },
                    };
                    (work, Some(pool))
                }
                Scenario::All | Scenario::Gateway | Scenario::Propagation => continue,
            };
            let runner = Arc::new(Runner { http: http.clone(), work });
            let label = format!("{} c={c}", scenario.name());
            let run = closed_loop(runner, c, phase, &label);
            let (raw, commits) = if scenario == Scenario::Authorize {
                with_commits(http, &servers, phase, &label, run).await
            } else {
                (run.await, None)
            };
            let raw = raw?;
            last_rate = Some(raw.throughput());
            let mut point = Point::closed(c, &raw, pool.as_deref(), scenario == Scenario::Batch);
            point.commits = commits;
            points.push(point);
        }
        report.scenarios.insert(scenario.name().to_owned(), points);
    }

    // The endpoint again: its drift over the run moves every ratio as much as Warrant does.
    if report.scenarios.contains_key("authorize") {
        for &c in &args.concurrency {
            let raw = closed_loop(Arc::clone(&ping), c, phase, &format!("axum baseline again c={c}")).await?;
            report.baseline_after.push(Point::closed(c, &raw, None, false));
        }
    }
    report.ratios = ratios(&report);
    let peak = report
        .scenarios
        .get("authorize")
        .and_then(|points| points.iter().max_by(|a, b| a.throughput_per_s.total_cmp(&b.throughput_per_s)))
        .map(|p| (p.throughput_per_s, p.concurrency));
    let rates: Vec<(f64, Option<f64>, String)> = match (args.rate, peak) {
        (Some(rate), _) => vec![(rate, None, "--rate".to_owned())],
        (None, Some((tput, c))) if tput > 0.0 => OPEN_LOOP_FRACTIONS
            .iter()
            .map(|&f| {
                let basis = format!("{:.0}% of the authorize peak ({tput:.0}/s at concurrency {c})", f * 100.0);
                (tput * f, Some(f), basis)
            })
            .collect(),
        _ => Vec::new(),
    };
    if !rates.is_empty() {
        let warrants = fixture.warrants(&client).await?;
        let bodies = bodies_for(authorize_bodies(&warrants.delegated)?, None);
        for (rate, fraction, basis) in rates {
            // The endpoint first, on the same schedule: the tail this client and machine
            // give a server that does nothing at this rate.
            let at = format!("the rate of authorize's point: {basis}");
            report.baseline_open_loop.push(endpoint_open_loop(&ping, rate, fraction, at, phase).await?);
            let runner = Arc::new(Runner {
                http: http.clone(),
                work: Work::Authorize { urls: authorize_urls.clone(), bodies: bodies.clone() },
            });
            let label = format!("authorize open loop {rate:.0}/s");
            let run = open_loop(runner, rate, OPEN_LOOP_IN_FLIGHT, phase, &label);
            let (raw, commits) = with_commits(http, &servers, phase, &label, run).await;
            let mut point = OpenLoop::new(&raw?, fraction, basis, OPEN_LOOP_IN_FLIGHT);
            point.commits = commits;
            report.open_loop.push(point);
        }
        // The endpoint at the same fractions of its own peak: the tail this client and
        // machine give a server that does nothing, at the same share of its capacity.
        let own_peak =
            report.baseline.iter().map(|p| (p.throughput_per_s, p.concurrency)).max_by(|a, b| a.0.total_cmp(&b.0));
        if let (None, Some((tput, c))) = (args.rate, own_peak.filter(|(tput, _)| *tput > 0.0)) {
            for f in OPEN_LOOP_FRACTIONS {
                let basis = format!("{:.0}% of the endpoint's own peak ({tput:.0}/s at concurrency {c})", f * 100.0);
                report.baseline_open_loop_own.push(endpoint_open_loop(&ping, tput * f, Some(f), basis, phase).await?);
            }
        }
    }
    Ok(report)
}

/// The baseline endpoint driven open-loop at `rate`: a point of `phase`, as authorize's are.
async fn endpoint_open_loop(
    ping: &Arc<Runner>,
    rate: f64,
    fraction: Option<f64>,
    basis: String,
    phase: Phase,
) -> Result<OpenLoop, BenchError> {
    let label = format!("axum baseline open loop {rate:.0}/s");
    let raw = open_loop(Arc::clone(ping), rate, OPEN_LOOP_IN_FLIGHT, phase, &label).await?;
    Ok(OpenLoop::new(&raw, fraction, basis, OPEN_LOOP_IN_FLIGHT))
}

/// Runs `point` (a load point of `phase`) and counts the servers' audit appends of its
/// measured window: read when the warm-up ends and again once the point's last answer
/// is in. Appends that cannot be counted are said (`label` names the point) and give
/// `None`; the point's own outcome is returned either way.
async fn with_commits<T>(
    http: &reqwest::Client,
    servers: &[String],
    phase: Phase,
    label: &str,
    point: impl std::future::Future<Output = T>,
) -> (T, Option<commits::CommitWindow>) {
    let before = {
        let (http, servers) = (http.clone(), servers.to_vec());
        tokio::spawn(async move {
            tokio::time::sleep(phase.warmup).await;
            read_commits(&http, &servers).await
        })
    };
    let out = point.await;
    let after = read_commits(http, servers).await;
    let before = before.await.map_err(|e| BenchError::Worker(e.to_string())).and_then(|read| read);
    let counted = match (before, after) {
        (Ok(before), Ok(after)) => {
            let pairs: Vec<_> = before.into_iter().zip(after).collect();
            commits::window(&pairs, report::P99_TARGET_MS)
        }
        (Err(e), _) | (_, Err(e)) => Err(format!("cannot read the servers' metrics: {e}")),
    };
    match counted {
        Ok(window) => (out, Some(window)),
        Err(why) => {
            outln!("audit appends at {label}: not counted ({why})");
            (out, None)
        }
    }
}

/// The audit-append histograms of every server, in order.
async fn read_commits(http: &reqwest::Client, servers: &[String]) -> Result<Vec<commits::Reading>, BenchError> {
    let mut out = Vec::with_capacity(servers.len());
    for server in servers {
        out.push(commits::read(http, server).await?);
    }
    Ok(out)
}

/// Authorize against the baseline, per concurrency at which both were measured.
fn ratios(report: &Report) -> Vec<Ratio> {
    let rates = |points: &[Point]| -> BTreeMap<usize, f64> {
        points.iter().map(|p| (p.concurrency, p.throughput_per_s)).collect()
    };
    let (before, after) = (rates(&report.baseline), rates(&report.baseline_after));
    let batch: BTreeMap<usize, f64> = report
        .scenarios
        .get("batch")
        .map(|ps| ps.iter().map(|p| (p.concurrency, p.decisions_per_s.unwrap_or(0.0))).collect())
        .unwrap_or_default();
    let Some(authorize) = report.scenarios.get("authorize") else { return Vec::new() };
    let share = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
    authorize
        .iter()
        .filter_map(|p| {
            let axum = *before.get(&p.concurrency)?;
            let axum_after = after.get(&p.concurrency).copied();
            Some(Ratio {
                concurrency: p.concurrency,
                authorize_per_s: p.throughput_per_s,
                axum_per_s: axum,
                ratio: share(p.throughput_per_s, axum),
                axum_after_per_s: axum_after,
                ratio_after: axum_after.map(|a| share(p.throughput_per_s, a)),
                batch_decisions_ratio: batch.get(&p.concurrency).map(|&d| share(d, axum)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_driven() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://127.0.0.2:8080/"));
        assert!(is_loopback("http://localhost:1234"));
        assert!(is_loopback("http://[::1]:8080"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
        assert!(!is_loopback("http://example.com"));
        assert!(!is_loopback("ftp://127.0.0.1"));
        assert!(!is_loopback("not a url"));
    }

    /// `warrant bench --data /nonexistent` with `extra` options, as clap reads them.
    fn parse(extra: &[&str]) -> BenchArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Harness {
            #[command(flatten)]
            args: BenchArgs,
        }
        Harness::try_parse_from(["bench", "--data", "/nonexistent"].iter().chain(extra)).map(|h| h.args).unwrap()
    }

    /// A point of `ok` requests in one second at concurrency `c`.
    fn point(c: usize, ok: u64) -> Point {
        let mut raw = load::Raw::new().unwrap();
        raw.ok = ok;
        raw.elapsed = Duration::from_secs(1);
        Point::closed(c, &raw, None, false)
    }

    #[test]
    fn the_ratio_is_met_only_against_the_baseline_before_and_after() {
        let mut report = Report::new(&parse(&[]), "http://127.0.0.1:1", true, "test", 2);
        report.baseline = vec![point(1, 1_000), point(64, 40_000)];
        report.scenarios.insert("authorize".into(), vec![point(1, 600), point(64, 21_000)]);
        let before: Vec<(usize, f64, Option<f64>, bool)> =
            ratios(&report).iter().map(|r| (r.concurrency, r.ratio, r.ratio_after, r.met())).collect();
        assert_eq!(before, [(1, 0.6, None, true), (64, 0.525, None, true)]);
        // The endpoint ran faster after authorize: at c=64 the ratio against it is 0.42.
        report.baseline_after = vec![point(1, 1_000), point(64, 50_000)];
        let both = ratios(&report);
        let got: Vec<(usize, Option<f64>, Option<f64>, bool)> =
            both.iter().map(|r| (r.concurrency, r.axum_after_per_s, r.ratio_after, r.met())).collect();
        assert_eq!(got, [(1, Some(1_000.0), Some(0.6), true), (64, Some(50_000.0), Some(0.42), false)]);
        assert_eq!(both[1].ratio, 0.525, "the ratio against the baseline before stays as it was");
    }

    #[test]
    fn an_open_loop_point_says_when_the_client_itself_sent_late() {
        let point = |lag_us: &[u64]| {
            let mut raw = load::Raw::new().unwrap();
            raw.ok = 1;
            raw.elapsed = Duration::from_secs(1);
            raw.latency.record(500).unwrap();
            let mut lag = load::histogram().unwrap();
            lag_us.iter().for_each(|&us| lag.record(us).unwrap());
            let open = load::OpenRaw { rate: 100.0, scheduled: 1, raw, service: load::histogram().unwrap(), lag };
            OpenLoop::new(&open, None, "--rate".into(), 8)
        };
        // Sent within a millisecond of the schedule: the latencies are the server's.
        let on_time = point(&[50; 100]);
        assert!(!on_time.client_late && on_time.p99_met);
        // One request in ten sent 5 ms late: p99 of the lag is over the 2 ms target.
        let late = point(&[[50; 90].as_slice(), &[5_000; 10]].concat());
        assert!(late.client_late, "{:?}", late.send_lag);
    }

    #[test]
    fn a_baseline_elsewhere_must_be_on_loopback() {
        let args = parse(&["--baseline", "http://127.0.0.1:9/"]);
        assert_eq!(args.baseline.as_deref(), Some("http://127.0.0.1:9"), "kept without its trailing slash");
        assert!(check(&args).is_ok());
        let far = parse(&["--baseline", "http://192.0.2.1:9"]);
        assert!(matches!(check(&far), Err(BenchError::NotLoopback(url)) if url == "http://192.0.2.1:9"));
        assert!(parse(&[]).baseline.is_none(), "the built-in endpoint by default");
    }

    #[test]
    fn server_urls_are_taken_without_a_trailing_slash() {
        let args = parse(&[
            "--server",
            "http://127.0.0.1:8/",
            "--also",
            "http://127.0.0.1:7//",
            "--also",
            "http://127.0.0.1:6",
            "--cedar-agent",
            "http://127.0.0.1:5/",
        ]);
        assert_eq!(args.server.as_deref(), Some("http://127.0.0.1:8"));
        assert_eq!(args.also, ["http://127.0.0.1:7", "http://127.0.0.1:6"]);
        assert_eq!(args.cedar_agent.as_deref(), Some("http://127.0.0.1:5"));
    }

    #[test]
    fn all_selects_every_scenario_in_order() {
        assert_eq!(scenarios(&[Scenario::All]).len(), 7, "propagation only when asked for");
        assert_eq!(scenarios(&[Scenario::All, Scenario::Propagation]).len(), 8);
        assert_eq!(scenarios(&[Scenario::Mint, Scenario::Authorize]), vec![Scenario::Authorize, Scenario::Mint]);
    }

    #[test]
    fn batch_bodies_hold_the_batch_size() {
        let values = (0..5).map(|n| serde_json::json!({ "n": n })).collect();
        let bodies = bodies_for(values, Some(3));
        assert_eq!(bodies.len(), 5);
        let first: Value = serde_json::from_str(&bodies[4]).unwrap();
        assert_eq!(first["requests"].as_array().unwrap().len(), 3);
        assert_eq!(first["requests"][1]["n"], 0);
    }
}
