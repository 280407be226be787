//! `warrant gateway`: an MCP gateway (Streamable HTTP) in front of one or more upstream
//! MCP servers, the enforcement point of the COAZ-MCP profile. Upstream `u` is served at
//! `/mcp/<u>`, its resource identifier is `<public-url>/mcp/<u>`; every request carries
//! a warrant for that resource, and every MCP call is decided by the Warrant server's
//! PDP before the upstream sees it. See `docs/gateway.md`.
//!
//! - [`mapping`]: MCP methods to Warrant actions and resources, declared mappings (CEL);
//! - [`pdp`]: the [`Pdp`] trait and its HTTP implementations;
//! - [`auth`]: warrant verification, the 401 challenge, protected resource metadata;
//! - [`rpc`]: JSON-RPC errors (with `rmcp`'s error object) and the `text/event-stream`
//!   framing of answers;
//! - [`proxy`]: the HTTP handlers.

pub mod auth;
pub mod mapping;
pub mod pdp;
pub mod proxy;
pub mod rpc;

pub use pdp::{AuthorizePdp, HttpPdp, Pdp, PdpError};
pub use proxy::{Gateway, GatewayError};

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its name at the gateway: served at `/mcp/<name>`.
    pub name: String,
    /// Its Streamable HTTP endpoint, e.g. `http://127.0.0.1:9000/mcp`.
    pub url: String,
}

impl std::str::FromStr for Upstream {
    type Err = String;

    /// Reads `NAME=URL`; the name is 1 to 64 of `A-Z a-z 0-9 _ -`, the URL absolute
    /// `http` or `https`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, url) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=URL"))?;
        Upstream::new(name, url)
    }
}

impl Upstream {
    /// An upstream, checked (see [`Upstream::from_str`](std::str::FromStr)).
    pub fn new(name: &str, url: &str) -> Result<Self, String> {
        let name_ok =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!("upstream name `{name}` must be 1 to 64 of A-Z a-z 0-9 _ -"));
        }
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(format!("upstream `{name}`: `{url}` is not an absolute http(s) URL")),
        }
        Ok(Upstream { name: name.to_owned(), url: url.to_owned() })
    }
}

/// How a gateway runs.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The upstreams, by distinct name.
    pub upstreams: Vec<Upstream>,
    /// The Warrant server's base URL.
    pub server: String,
    /// The gateway's public base URL (no trailing `/`): resource identifiers and
    /// metadata URLs are made from it.
    pub public_url: String,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("upstreams", &self.upstreams)
            .field("server", &self.server)
            .field("public_url", &self.public_url)
            .finish()
    }
}
