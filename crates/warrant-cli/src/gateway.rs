//! `warrant gateway`: runs the MCP gateway against a Warrant server. Flags override the
//! `[gateway]` table of a configuration file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use warrant_gateway::{AuthorizePdp, Gateway, GatewayConfig, HttpPdp, Pdp, Upstream};

use crate::{CliResult, Conn};

/// Which endpoint of the Warrant server decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PdpKind {
    /// `POST /access/v1/evaluation` (AuthZEN), with the PEP credential.
    Authzen,
    /// `POST /v1/authorize`, with the warrant as the credential.
    Authorize,
}

/// `warrant gateway`'s flags.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// An upstream MCP server, `NAME=URL` (repeatable); served at `/mcp/NAME`.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    upstreams: Vec<Upstream>,
    /// Listen address [default: 127.0.0.1:8090].
    #[arg(long)]
    listen: Option<String>,
    /// The gateway's public URL [default: http://<listen address>]; warrants must be
    /// minted for `<public-url>/mcp/NAME`.
    #[arg(long)]
    public_url: Option<String>,
    /// A file holding the PEP credential [default: `WARRANT_PEP_TOKEN`, else the admin
    /// token].
    #[arg(long)]
    credential: Option<PathBuf>,
    /// Which endpoint decides [default: authzen].
    #[arg(long, value_enum)]
    pdp: Option<PdpKind>,
    /// A configuration file with a `[gateway]` table.
    #[arg(long, env = "WARRANT_CONFIG")]
    config: Option<PathBuf>,
}

/// The `[gateway]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayTable {
    #[serde(default)]
    upstreams: BTreeMap<String, String>,
    listen: Option<String>,
    server: Option<String>,
    public_url: Option<String>,
    credential_file: Option<PathBuf>,
    pdp: Option<PdpKind>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    gateway: Option<GatewayTable>,
}

fn read_table(path: &PathBuf) -> Result<GatewayTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
    Ok(file.gateway.unwrap_or_default())
}

fn read_credential(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    Ok(text)
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(conn: &Conn, args: GatewayArgs) -> CliResult {
    warrant_server::telemetry::init(false);
    let table = match &args.config {
        Some(path) => read_table(path)?,
        None => GatewayTable::default(),
    };
    let mut upstreams = args.upstreams;
    if upstreams.is_empty() {
        for (name, url) in &table.upstreams {
            upstreams.push(Upstream::new(name, url)?);
        }
    }
    let server = match (&table.server, conn.server.as_str()) {
        // The flag (or WARRANT_SERVER) wins unless it is the default and the table says otherwise.
        (Some(s), "http://127.0.0.1:8080") => s.clone(),
        (_, flag) => flag.to_owned(),
    };
    let credential = match args.credential.as_ref().or(table.credential_file.as_ref()) {
        Some(path) => Some(read_credential(path)?),
        None => std::env::var("WARRANT_PEP_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| conn.admin_token()),
    };
    let pdp_kind = args.pdp.or(table.pdp).unwrap_or(PdpKind::Authzen);
    // A PDP that does not answer is a deny, not a hung call: bounded connect and answer.
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let pdp: Arc<dyn Pdp> = match pdp_kind {
        PdpKind::Authzen => {
            let credential = credential.ok_or(
                "no PEP credential: pass `--credential FILE`, set `WARRANT_PEP_TOKEN`, or give the admin token \
                 (`WARRANT_ADMIN_TOKEN` or `./warrant-data/admin.token`)",
            )?;
            Arc::new(HttpPdp::new(http.clone(), &server, credential))
        }
        PdpKind::Authorize => Arc::new(AuthorizePdp::new(http.clone(), &server)),
    };
    let listen = args.listen.or(table.listen).unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let public_url = args.public_url.or(table.public_url).unwrap_or_else(|| format!("http://{addr}"));
    let names: Vec<String> = upstreams.iter().map(|u| u.name.clone()).collect();
    let config = GatewayConfig { upstreams, server, public_url: public_url.clone() };
    let gateway = Gateway::new(config, pdp).await?;
    outln!("warrant gateway listening on http://{addr}");
    for name in names {
        outln!("  upstream {name}: {public_url}/mcp/{name}");
    }
    // The server's accept loop: a header timeout (also the idle timeout) and a cap on
    // connections, which `axum::serve` lacks; rate limits are the server's business.
    let limits = warrant_server::config::ServerLimits {
        token_rate_per_client: None,
        token_rate_per_ip: None,
        anonymous_rate_per_ip: None,
        ..warrant_server::config::ServerLimits::default()
    };
    warrant_server::listen::serve(listener, gateway.router(), limits, warrant_server::server::shutdown_signal())
        .await?;
    Ok(())
}
