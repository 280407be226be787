//! The gateway scenario: MCP `tools/call` at a fixed rate (open loop), to the same
//! upstream directly, through nginx as a plain reverse proxy, and through
//! `warrant gateway` (which verifies the warrant, asks the PDP over AuthZEN, audits the
//! decision durably and only then forwards), all in one run with one client. The
//! gateway's overhead is its latency minus the direct call's, percentile by percentile.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use warrant_gateway::{Gateway, GatewayConfig, HttpPdp, Upstream};

use super::load::{open_loop, Latency, Phase};
use super::mcp::{self, UPSTREAM};
use super::report::OpenLoop;
use super::target::{Fixture, Runner, Started, Work};
use super::BenchError;
use crate::client::Client;

/// The largest number of calls a point keeps in flight.
const IN_FLIGHT: usize = 256;
/// How many distinct calls (customers) a point cycles through.
const CALLS: usize = 256;
/// The overhead target at the p99, milliseconds.
pub const OVERHEAD_P99_TARGET_MS: f64 = 2.0;

/// One way of reaching the upstream, measured at the scenario's rate.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayPath {
    /// `direct`, `nginx` or `gateway`.
    pub via: &'static str,
    /// The MCP endpoint called.
    pub url: String,
    /// What the open loop measured.
    pub point: OpenLoop,
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
    /// The gateway's latency minus the direct call's at the p50, milliseconds.
    pub overhead_p50_ms: Option<f64>,
    /// … at the p99.
    pub overhead_p99_ms: Option<f64>,
    /// nginx's latency minus the direct call's at the p50, milliseconds.
    pub nginx_overhead_p50_ms: Option<f64>,
    /// … at the p99.
    pub nginx_overhead_p99_ms: Option<f64>,
    /// Whether the gateway's p99 overhead is under the target, with no failed call.
    pub overhead_met: bool,
}

/// Runs the scenario against the Warrant server at `server` (its admin `client`).
pub async fn run(
    http: &reqwest::Client,
    client: &Client,
    server: &str,
    fixture: &Fixture,
    rate: f64,
    nginx: &Path,
    phase: Phase,
) -> Result<GatewayReport, BenchError> {
    let upstream = mcp::start_upstream().await?;
    let upstream_addr = upstream.url.trim_start_matches("http://").to_owned();
    let proxy = mcp::start_nginx(nginx, &upstream_addr).await?;

    // The gateway, standalone: its PDP is the Warrant server's AuthZEN endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| BenchError::Server(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| BenchError::Server(e.to_string()))?;
    let public_url = format!("http://{addr}");
    let config = GatewayConfig {
        upstreams: vec![Upstream::new(UPSTREAM, &format!("{}/mcp", upstream.url)).map_err(BenchError::Setup)?],
        server: server.to_owned(),
        public_url: public_url.clone(),
    };
    let pdp = Arc::new(HttpPdp::new(super::target::http_client()?, server, fixture.pep.clone()));
    let gateway = Gateway::new(config, pdp).await.map_err(|e| BenchError::Server(e.to_string()))?;
    let gateway_server = Started::serve_listener(listener, gateway.router()).await?;
    let resource = warrant_gateway::auth::resource_id(&public_url, UPSTREAM);
    let warrant =
        fixture.mcp_warrant(client, &resource, &format!("mcp.tools.call:mcp/{UPSTREAM}/tool/{}", mcp::TOOL)).await?;

    let mut targets = vec![("direct", format!("{}/mcp", upstream.url))];
    let nginx_skipped = match &proxy {
        Some(p) => {
            targets.push(("nginx", format!("{}/mcp", p.url)));
            None
        }
        None => Some(format!("no `{}` to run (install nginx or pass --nginx PATH)", nginx.display())),
    };
    targets.push(("gateway", format!("{public_url}/mcp/{UPSTREAM}")));

    let bodies = mcp::call_bodies(CALLS);
    let mut paths = Vec::new();
    for (via, url) in targets {
        let runner = Arc::new(Runner {
            http: http.clone(),
            work: Work::Mcp { url: url.clone(), bearer: warrant.clone(), bodies: bodies.clone() },
        });
        let raw = open_loop(runner, rate, IN_FLIGHT, phase, &format!("tools/call {via} {rate:.0}/s")).await?;
        let point = OpenLoop::new(&raw, format!("--gateway-rate, {via}"), IN_FLIGHT);
        paths.push(GatewayPath { via, url, point });
    }
    let stopped_gateway = gateway_server.stop().await;
    drop(proxy);
    let stopped_upstream = upstream.stop().await;
    stopped_gateway?;
    stopped_upstream?;

    let latency = |via: &str| paths.iter().find(|p| p.via == via).map(|p| (p.point.latency, p.point.errors));
    let diff = |a: Option<(Latency, u64)>, b: Option<(Latency, u64)>, f: fn(&Latency) -> f64| match (a, b) {
        (Some((a, _)), Some((b, _))) if a.count > 0 && b.count > 0 => Some(f(&a) - f(&b)),
        _ => None,
    };
    let (direct, through) = (latency("direct"), latency("gateway"));
    let overhead_p99_ms = diff(through, direct, |l| l.p99_ms);
    let failed = paths.iter().any(|p| p.point.errors > 0);
    Ok(GatewayReport {
        rate_per_s: rate,
        overhead_p50_ms: diff(through, direct, |l| l.p50_ms),
        overhead_p99_ms,
        nginx_overhead_p50_ms: diff(latency("nginx"), direct, |l| l.p50_ms),
        nginx_overhead_p99_ms: diff(latency("nginx"), direct, |l| l.p99_ms),
        overhead_met: !failed && overhead_p99_ms.is_some_and(|o| o < OVERHEAD_P99_TARGET_MS),
        nginx_skipped,
        paths,
    })
}
