//! The gateway scenario: MCP `tools/call` at a fixed rate (open loop), to the same
//! upstream directly, through nginx as a plain reverse proxy, and through
//! `warrant gateway` (which verifies the warrant, asks the PDP over AuthZEN, audits the
//! decision durably and only then forwards) and through the gateway of `warrant serve`
//! (the same, deciding in-process), all in one run with one client. A gateway's overhead
//! is its latency minus the direct call's, percentile by percentile.

use std::sync::Arc;

use warrant_engine::Engine;
use warrant_gateway::{Gateway, GatewayConfig, HttpPdp, Pdp, Upstream};

use super::load::{open_loop, Latency, Phase};
use super::mcp::{self, UPSTREAM};
use super::report::{GatewayPath, GatewayReport, OpenLoop, OVERHEAD_P99_TARGET_MS};
use super::target::{Fixture, Runner, Started, Work};
use super::{BenchArgs, BenchError};
use crate::client::Client;
use crate::serve_gateway::EnginePdp;

/// The largest number of calls a point keeps in flight.
const IN_FLIGHT: usize = 256;
/// How many distinct calls (customers) a point cycles through.
const CALLS: usize = 256;
/// A gateway in front of the benchmark's upstream, served on its own loopback address.
struct Front {
    server: Started,
    url: String,
    warrant: String,
}

/// Starts a gateway deciding through `pdp`, and mints the load agent's warrant for it.
async fn front(
    client: &Client,
    server: &str,
    fixture: &Fixture,
    upstream_url: &str,
    pdp: Arc<dyn Pdp>,
) -> Result<Front, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| BenchError::Server(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| BenchError::Server(e.to_string()))?;
    let public_url = format!("http://{addr}");
    let config = GatewayConfig {
        upstreams: vec![Upstream::new(UPSTREAM, &format!("{upstream_url}/mcp")).map_err(BenchError::Setup)?],
        server: server.to_owned(),
        public_url: public_url.clone(),
    };
    let gateway = Gateway::new(config, pdp).await.map_err(|e| BenchError::Server(e.to_string()))?;
    let started = Started::serve_listener(listener, gateway.router()).await?;
    let resource = warrant_gateway::auth::resource_id(&public_url, UPSTREAM);
    let scope = format!("mcp.tools.call:mcp/{UPSTREAM}/tool/{}", mcp::TOOL);
    let warrant = fixture.mcp_warrant(client, &resource, &scope).await?;
    Ok(Front { server: started, url: format!("{public_url}/mcp/{UPSTREAM}"), warrant })
}

/// Runs the scenario against the Warrant server at `server` (its admin `client`) at
/// `args.gateway_rate`; with its `engine` (a server in this process), the in-process
/// gateway is measured too.
pub async fn run(
    http: &reqwest::Client,
    client: &Client,
    server: &str,
    engine: Option<Arc<Engine>>,
    fixture: &Fixture,
    args: &BenchArgs,
    phase: Phase,
) -> Result<GatewayReport, BenchError> {
    let (rate, nginx) = (args.gateway_rate, args.nginx.as_path());
    let upstream = mcp::start_upstream().await?;
    let upstream_addr = upstream.url.trim_start_matches("http://").to_owned();
    let proxy = mcp::start_nginx(nginx, &upstream_addr).await?;

    // The gateway standalone: its PDP is the Warrant server's AuthZEN endpoint.
    let pdp = Arc::new(HttpPdp::new(super::target::http_client()?, server, fixture.pep.clone()));
    let standalone = front(client, server, fixture, &upstream.url, pdp).await?;
    // The gateway of `warrant serve`: the engine decides in-process.
    let in_serve = match engine {
        Some(engine) => Some(front(client, server, fixture, &upstream.url, Arc::new(EnginePdp::new(engine))).await?),
        None => None,
    };

    // Any warrant does for the direct and nginx paths: they do not read it.
    let mut targets = vec![("direct", format!("{}/mcp", upstream.url), standalone.warrant.clone())];
    let nginx_skipped = match &proxy {
        Some(p) => {
            targets.push(("nginx", format!("{}/mcp", p.url), standalone.warrant.clone()));
            None
        }
        None => Some(format!("no `{}` to run (install nginx or pass --nginx PATH)", nginx.display())),
    };
    targets.push(("gateway", standalone.url.clone(), standalone.warrant.clone()));
    let in_serve_skipped = match &in_serve {
        Some(f) => {
            targets.push(("in-serve", f.url.clone(), f.warrant.clone()));
            None
        }
        None => Some("the server runs in another process (`--server`)".to_owned()),
    };

    let bodies = mcp::call_bodies(CALLS);
    let mut measured = Vec::new();
    for (via, url, bearer) in targets {
        let runner = Arc::new(Runner {
            http: http.clone(),
            work: Work::Mcp { url: url.clone(), bearer, bodies: bodies.clone() },
        });
        let raw = open_loop(runner, rate, IN_FLIGHT, phase, &format!("tools/call {via} {rate:.0}/s")).await?;
        measured.push((via, url, OpenLoop::new(&raw, None, format!("--gateway-rate, {via}"), IN_FLIGHT)));
    }
    let stopped_gateway = standalone.server.stop().await;
    let stopped_in_serve = match in_serve {
        Some(f) => f.server.stop().await,
        None => Ok(()),
    };
    drop(proxy);
    let stopped_upstream = upstream.stop().await;
    stopped_gateway?;
    stopped_in_serve?;
    stopped_upstream?;

    let direct = measured.iter().find(|(via, _, _)| *via == "direct").map(|(_, _, p)| p.latency);
    let paths = measured
        .into_iter()
        .map(|(via, url, point)| {
            let over = |f: fn(&Latency) -> f64| match direct {
                Some(d) if via != "direct" && d.count > 0 && point.latency.count > 0 => Some(f(&point.latency) - f(&d)),
                _ => None,
            };
            let (overhead_p50_ms, overhead_p99_ms) = (over(|l| l.p50_ms), over(|l| l.p99_ms));
            let target_met = matches!(via, "gateway" | "in-serve")
                .then(|| point.errors == 0 && overhead_p99_ms.is_some_and(|o| o < OVERHEAD_P99_TARGET_MS));
            GatewayPath { via, url, point, overhead_p50_ms, overhead_p99_ms, target_met }
        })
        .collect();
    Ok(GatewayReport { rate_per_s: rate, paths, nginx_skipped, in_serve_skipped })
}
