//! The MCP gateway inside `warrant serve` (the `[gateway]` table): the same gateway as
//! `warrant gateway`, on its own address, deciding in-process through the engine's
//! AuthZEN adapter (the PEP `gateway`) instead of over HTTP. It verifies warrants against
//! the server's own JWKS, read from the server's listener once that serves, and stops
//! with the server.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warrant_core::authzen::{EvaluationRequest, EvaluationResponse};
use warrant_engine::authzen::Asker;
use warrant_engine::Engine;
use warrant_gateway::{Gateway, GatewayConfig, Pdp, PdpError, Upstream};
use warrant_server::config::{GatewaySettings, ServerLimits, Settings};
use warrant_server::BoundServer;

use crate::CliResult;

/// The name the gateway's decisions record as their enforcement point.
pub const PEP_NAME: &str = "gateway";

/// The engine as the gateway's PDP: every MCP call is an AuthZEN evaluation by the PEP
/// [`PEP_NAME`], through the same pipeline as `POST /access/v1/evaluation`. A request the
/// adapter cannot evaluate is an error, which the gateway refuses (fail closed).
pub struct EnginePdp {
    engine: Arc<Engine>,
    asker: Asker,
}

impl std::fmt::Debug for EnginePdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnginePdp").field("asker", &self.asker).finish_non_exhaustive()
    }
}

impl EnginePdp {
    /// Decisions by `engine`, asked as the PEP `gateway` (agents only: no plain subjects).
    pub fn new(engine: Arc<Engine>) -> Self {
        EnginePdp { engine, asker: Asker { name: PEP_NAME.into(), plain_subjects: false } }
    }
}

#[async_trait::async_trait]
impl Pdp for EnginePdp {
    async fn evaluate(&self, request: &EvaluationRequest) -> Result<EvaluationResponse, PdpError> {
        self.engine
            .authzen()
            .evaluate(&self.asker, request)
            .await
            .map_err(|e| PdpError::Status { status: e.status(), body: e.to_string() })
    }
}

/// The `[gateway]` table, checked and with its listener bound.
pub struct Planned {
    listener: TcpListener,
    upstreams: Vec<Upstream>,
    public_url: String,
}

/// Checks the upstreams of `[gateway]` (before anything is bound).
pub fn upstreams(settings: &GatewaySettings) -> Result<Vec<Upstream>, String> {
    settings
        .upstreams
        .iter()
        .map(|(name, url)| Upstream::new(name, url).map_err(|e| format!("invalid setting: `gateway.upstreams`: {e}")))
        .collect()
}

impl Planned {
    /// Binds the gateway's address.
    pub async fn bind(settings: &GatewaySettings, upstreams: Vec<Upstream>) -> Result<Planned, String> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {} (`gateway.listen`): {e}", settings.listen))?;
        let addr = listener.local_addr().map_err(|e| format!("the gateway's address: {e}"))?;
        let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        Ok(Planned { listener, upstreams, public_url })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The public base URL.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The upstreams' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|u| u.name.as_str())
    }
}

/// A URL that reaches a listener bound to `addr` from this host.
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Completes once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `server` and the gateway until `shutdown` completes or either of them stops; then
/// both finish their in-flight requests. The gateway reads the server's issuer and keys
/// through the server's own listener first; if it cannot start, the server is stopped
/// and the error returned.
pub async fn run(
    server: BoundServer,
    gateway: Planned,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> CliResult {
    let api = server.local_addr().map(local_url).ok_or("the server's address is unknown")?;
    let pdp: Arc<dyn Pdp> = Arc::new(EnginePdp::new(server.engine()));
    let (stop, stop_rx) = watch::channel(false);
    let stop = Arc::new(stop);
    let on_signal = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown.await;
        let _ = on_signal.send(true);
    });
    // Rate limits are the API's business; the gateway takes its connection limits.
    let limits = ServerLimits {
        token_rate_per_client: None,
        token_rate_per_ip: None,
        anonymous_rate_per_ip: None,
        ..settings.server_limits
    };
    let serving = {
        let stop = Arc::clone(&stop);
        let stop_rx = stop_rx.clone();
        async move {
            let result = server.run(stopped(stop_rx)).await;
            let _ = stop.send(true);
            result
        }
    };
    let gatewaying = async move {
        let result: CliResult = async {
            let Planned { listener, upstreams, public_url } = gateway;
            let config = GatewayConfig { upstreams, server: api, public_url };
            let gateway = Gateway::new(config, pdp).await?;
            tracing::info!("gateway serving");
            warrant_server::listen::serve(listener, gateway.router(), limits, stopped(stop_rx)).await?;
            Ok(())
        }
        .await;
        let _ = stop.send(true);
        result
    };
    let (served, gatewayed) = tokio::join!(serving, gatewaying);
    gatewayed.map_err(|e| format!("the gateway: {e}"))?;
    served?;
    Ok(())
}
