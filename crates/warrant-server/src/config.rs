//! Settings, layered: a TOML file, then `WARRANT_*` environment variables, then flags,
//! each overriding the one before. Flags and environment variables are read by the CLI
//! (clap) into [`ServeOptions`]; [`Settings::resolve`] lays them over the file. The
//! `[governance]` table is read in [`govern`].

pub mod govern;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warrant_core::guard::rate::RateLimit;
use warrant_core::Limits;
use warrant_engine::federation::OidcProvider;
use warrant_engine::spiffe::{BundleSource, SpiffeDomain};

/// The data directory when nothing else is configured.
pub const DEFAULT_DATA_DIR: &str = "./warrant-data";
/// The listen address when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The largest request body accepted, in bytes, when nothing else is configured.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The `[guard]` table: runtime guardrails. Every key is optional.
///
/// ```toml
/// [guard]
/// rate_agent = "600/min"      # per agent, counted over its whole delegation subtree
/// rate_task = "1000/min"      # per task
/// rate_human = "5000/min"     # everything tracing to one human
/// quarantine_below = 0.3      # trust threshold
/// auto_quarantine = true      # suspend + revoke the subtree (false: deny only)
/// learning_decisions = 100    # a new agent's learning period: this many allowed decisions
/// learning_secs = 600         # ... and at least this long
/// window_secs = 10            # the rate window baselines count requests in
/// approval_ttl = 900          # a pending approval waits this long for its approver
/// approval_use_within = 300   # an approved request must be retried within this
/// probe_warrant_denies = 5    # probing denies with one warrant that revoke it (0: off)
/// probe_task_warrants = 2     # warrants of a task revoked for probing that revoke the task
/// probe_agent_tasks = 2       # tasks revoked for probing that quarantine the agent
/// probe_window_secs = 3600    # only a warrant's probing denies of the last hour count
/// sensitive_actions = ["*.delete", "*.export", "*.admin", "payments.*", "iam.*"]
/// deploy_grace_secs = 86400   # an announced deploy's new tools are expected this long
/// novelty_window_secs = 3600  # the n-th novel request within this weighs n times
/// hours_learning_secs = 604800 # off-hours activity is signalled once a baseline is a week old
///
/// [guard.response]            # the graduated response to falling trust
/// observe_below = 0.9
/// throttle_below = 0.5
/// approval_below = 0.45
/// revoke_warrant_below = 0.4
/// revoke_task_below = 0.35    # (quarantine: `quarantine_below` above)
/// throttle = "6/min"
/// shadow = ["approval"]       # levels only recorded, not carried out
///
/// [[guard.response.label]]    # thresholds of their own for agents carrying a label
/// label = "env=prod"
/// approval_below = 0.7
/// shadow = []
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardFile {
    /// Baselines, anomaly signals and trust (budgets, rate limits and approvals apply
    /// regardless).
    pub enabled: Option<bool>,
    /// Quarantine automatically.
    pub auto_quarantine: Option<bool>,
    /// The trust threshold below which an agent is quarantined.
    pub quarantine_below: Option<f64>,
    /// Per-agent rate limit, e.g. `600/min`.
    pub rate_agent: Option<String>,
    /// Per-task rate limit.
    pub rate_task: Option<String>,
    /// Per-human rate limit.
    pub rate_human: Option<String>,
    /// Allowed decisions before a new agent's baseline is trusted.
    pub learning_decisions: Option<u64>,
    /// Seconds before a new agent's baseline is trusted.
    pub learning_secs: Option<i64>,
    /// The rate window a baseline counts requests in, seconds (default 10).
    pub window_secs: Option<i64>,
    /// Seconds a pending approval waits.
    pub approval_ttl: Option<i64>,
    /// Seconds an approved request may wait for its retry.
    pub approval_use_within: Option<i64>,
    /// Probing denies with one warrant that revoke that warrant (0: never).
    pub probe_warrant_denies: Option<u32>,
    /// Warrants of one task revoked for probing that revoke the task (0: never).
    pub probe_task_warrants: Option<u32>,
    /// Tasks revoked for probing that quarantine the agent (0: never).
    pub probe_agent_tasks: Option<u32>,
    /// Seconds within which a warrant's probing denies count towards its rung (0: all).
    pub probe_window_secs: Option<i64>,
    /// Sensitive action patterns: a novelty on them weighs more, and a deploy does not
    /// explain it.
    pub sensitive_actions: Option<Vec<String>>,
    /// Seconds an announced deploy's new tools and resources are expected.
    pub deploy_grace_secs: Option<i64>,
    /// The novelty window, seconds.
    pub novelty_window_secs: Option<i64>,
    /// Seconds before off-hours activity is signalled.
    pub hours_learning_secs: Option<i64>,
    /// The graduated response.
    pub response: Option<ResponseFile>,
}

/// The `[guard.response]` table: thresholds of the graduated response, the throttle rate,
/// shadow levels, and rules for labels.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseFile {
    /// Observe below this trust.
    pub observe_below: Option<f64>,
    /// Throttle below this trust.
    pub throttle_below: Option<f64>,
    /// Require the owner's approval below this trust.
    pub approval_below: Option<f64>,
    /// Revoke the warrant below this trust.
    pub revoke_warrant_below: Option<f64>,
    /// Revoke the task below this trust.
    pub revoke_task_below: Option<f64>,
    /// The rate a throttled agent is held to, e.g. `6/min`.
    pub throttle: Option<String>,
    /// Levels only recorded (`observe`, `throttle`, `approval`, `revoke_warrant`,
    /// `revoke_task`, `quarantine`).
    pub shadow: Option<Vec<String>>,
    /// Rules for agents carrying a label.
    #[serde(default)]
    pub label: Vec<LabelFile>,
}

/// A `[[guard.response.label]]` rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelFile {
    /// `key=value`: the agents carrying this label.
    pub label: String,
    /// Observe below this trust.
    pub observe_below: Option<f64>,
    /// Throttle below this trust.
    pub throttle_below: Option<f64>,
    /// Require approval below this trust.
    pub approval_below: Option<f64>,
    /// Revoke the warrant below this trust.
    pub revoke_warrant_below: Option<f64>,
    /// Revoke the task below this trust.
    pub revoke_task_below: Option<f64>,
    /// Quarantine below this trust.
    pub quarantine_below: Option<f64>,
    /// The throttle rate.
    pub throttle: Option<String>,
    /// Levels only recorded.
    pub shadow: Option<Vec<String>>,
}

/// Parses shadow level names.
fn shadow_levels(
    name: &str,
    levels: &[String],
) -> Result<std::collections::BTreeSet<warrant_core::guard::response::Level>, ConfigError> {
    use warrant_core::guard::response::Level;
    levels
        .iter()
        .map(|l| {
            Level::parse(l).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "`{name}`: `{l}` is not a response level (observe, throttle, approval, revoke_warrant, revoke_task, quarantine)"
                ))
            })
        })
        .collect()
}

impl ResponseFile {
    /// Lays these settings over `g`'s response settings.
    fn apply(&self, g: &mut warrant_engine::guard::GuardConfig) -> Result<(), ConfigError> {
        use warrant_core::guard::response::{LabelRule, Level};
        let r = &mut g.response;
        let t = &mut r.thresholds;
        t.observe_below = self.observe_below.unwrap_or(t.observe_below);
        t.throttle_below = self.throttle_below.unwrap_or(t.throttle_below);
        t.approval_below = self.approval_below.unwrap_or(t.approval_below);
        t.revoke_warrant_below = self.revoke_warrant_below.unwrap_or(t.revoke_warrant_below);
        t.revoke_task_below = self.revoke_task_below.unwrap_or(t.revoke_task_below);
        t.quarantine_below = g.trust.quarantine_below;
        let rate = |name: &str, v: &Option<String>| -> Result<Option<RateLimit>, ConfigError> {
            v.as_deref().map(RateLimit::parse).transpose().map_err(|e| ConfigError::Invalid(format!("`{name}`: {e}")))
        };
        if let Some(limit) = rate("guard.response.throttle", &self.throttle)? {
            r.throttle = limit;
        }
        if let Some(shadow) = &self.shadow {
            r.shadow = shadow_levels("guard.response.shadow", shadow)?;
        }
        r.validate().map_err(|e| ConfigError::Invalid(format!("`guard.response`: {e}")))?;
        for rule in &self.label {
            let Some((key, value)) = rule.label.split_once('=') else {
                return Err(ConfigError::Invalid(format!(
                    "`guard.response.label`: `{}` is not `key=value`",
                    rule.label
                )));
            };
            let thresholds = [
                (Level::Observe, rule.observe_below),
                (Level::Throttle, rule.throttle_below),
                (Level::Approval, rule.approval_below),
                (Level::RevokeWarrant, rule.revoke_warrant_below),
                (Level::RevokeTask, rule.revoke_task_below),
                (Level::Quarantine, rule.quarantine_below),
            ]
            .into_iter()
            .filter_map(|(l, v)| v.map(|v| (l, v)))
            .collect();
            let shadow = rule.shadow.as_deref().map(|s| shadow_levels("guard.response.label.shadow", s)).transpose()?;
            let throttle = rate("guard.response.label.throttle", &rule.throttle)?;
            let rule =
                LabelRule { key: key.trim().to_owned(), value: value.trim().to_owned(), thresholds, shadow, throttle };
            g.response
                .with(&rule)
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("`guard.response.label` `{key}={value}`: {e}")))?;
            g.response_labels.push(rule);
        }
        Ok(())
    }
}

impl GuardFile {
    /// The engine's guardrail settings: these values over the defaults.
    pub fn resolve(&self) -> Result<warrant_engine::guard::GuardConfig, ConfigError> {
        use warrant_core::guard::rate::RateLimit;
        let mut g = warrant_engine::guard::GuardConfig::default();
        let rate = |name: &str, v: &Option<String>| -> Result<Option<RateLimit>, ConfigError> {
            v.as_deref()
                .map(RateLimit::parse)
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("`guard.{name}`: {e}")))
        };
        g.rate_agent = rate("rate_agent", &self.rate_agent)?;
        g.rate_task = rate("rate_task", &self.rate_task)?;
        g.rate_human = rate("rate_human", &self.rate_human)?;
        g.enabled = self.enabled.unwrap_or(g.enabled);
        g.auto_quarantine = self.auto_quarantine.unwrap_or(g.auto_quarantine);
        if let Some(q) = self.quarantine_below {
            if !(0.0..=1.0).contains(&q) {
                return Err(ConfigError::Invalid("`guard.quarantine_below` must be between 0 and 1".into()));
            }
            g.trust.quarantine_below = q;
        }
        g.baseline.learning_decisions = self.learning_decisions.unwrap_or(g.baseline.learning_decisions);
        g.baseline.learning_secs = self.learning_secs.unwrap_or(g.baseline.learning_secs);
        if let Some(w) = self.window_secs {
            if !(1..=3600).contains(&w) {
                return Err(ConfigError::Invalid("`guard.window_secs` must be between 1 and 3600".into()));
            }
            g.baseline.window_secs = w;
        }
        if self.learning_secs.is_some_and(|s| s < 0) {
            return Err(ConfigError::Invalid("`guard.learning_secs` must not be negative".into()));
        }
        for (name, v, slot) in [
            ("approval_ttl", self.approval_ttl, &mut g.approval_ttl),
            ("approval_use_within", self.approval_use_within, &mut g.approval_use_within),
        ] {
            if let Some(v) = v {
                if !(1..=7 * 86_400).contains(&v) {
                    return Err(ConfigError::Invalid(format!("`guard.{name}` must be between 1 second and 7 days")));
                }
                *slot = v;
            }
        }
        let e = &mut g.escalation;
        e.warrant_denies = self.probe_warrant_denies.unwrap_or(e.warrant_denies);
        e.task_warrants = self.probe_task_warrants.unwrap_or(e.task_warrants);
        e.agent_tasks = self.probe_agent_tasks.unwrap_or(e.agent_tasks);
        if let Some(w) = self.probe_window_secs {
            if w < 0 {
                return Err(ConfigError::Invalid("`guard.probe_window_secs` must not be negative".into()));
            }
            e.window_secs = w;
        }
        let b = &mut g.baseline;
        if let Some(sensitive) = &self.sensitive_actions {
            b.sensitive = sensitive.clone();
        }
        b.deploy_grace_secs = self.deploy_grace_secs.unwrap_or(b.deploy_grace_secs);
        b.novelty_window_secs = self.novelty_window_secs.unwrap_or(b.novelty_window_secs);
        b.hours_learning_secs = self.hours_learning_secs.unwrap_or(b.hours_learning_secs);
        b.validate().map_err(|e| ConfigError::Invalid(format!("`guard`: {e}")))?;
        g.response.thresholds.quarantine_below = g.trust.quarantine_below;
        if let Some(response) = &self.response {
            response.apply(&mut g)?;
        }
        Ok(g)
    }
}

/// The `[limits]` table: what one connection, client or address may take of the server.
/// Every key is optional; a rate of `"off"` turns that limit off.
///
/// ```toml
/// [limits]
/// header_timeout_secs = 10              # a request's headers must arrive within this
/// max_connections = 1024                # open connections; beyond, new ones wait
/// token_rate_per_client = "60/min"      # POST /oauth2/token per agent
/// token_rate_per_ip = "60/min"          # ... per address, for requests naming no agent
/// anonymous_rate_per_ip = "600/min"     # POST /v1/authorize with tokens not ours
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Seconds a connection has to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    pub header_timeout_secs: Option<u64>,
    /// The most connections served at once.
    pub max_connections: Option<usize>,
    /// The most decision and token requests in progress at once; beyond, 503 with
    /// `Retry-After` (0: no bound).
    pub max_in_flight: Option<usize>,
    /// Token requests per agent, e.g. `60/min`, or `off`.
    pub token_rate_per_client: Option<String>,
    /// Token requests per source address when they name no registered agent.
    pub token_rate_per_ip: Option<String>,
    /// Anonymous decision requests (a token that is not a warrant of ours) per source
    /// address.
    pub anonymous_rate_per_ip: Option<String>,
}

/// The resolved `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's headers must arrive within this; an idle keep-alive connection is
    /// closed after it too.
    pub header_timeout: Duration,
    /// The most connections served at once; beyond, new connections wait to be accepted.
    pub max_connections: usize,
    /// The most decision and token requests in progress at once; beyond, they are shed
    /// with 503 and `Retry-After` (`None`: no bound).
    pub max_in_flight: Option<usize>,
    /// Token requests per agent.
    pub token_rate_per_client: Option<RateLimit>,
    /// Token requests per source address, for requests naming no registered agent.
    pub token_rate_per_ip: Option<RateLimit>,
    /// Anonymous decision requests per source address.
    pub anonymous_rate_per_ip: Option<RateLimit>,
}

/// The header timeout when nothing else is configured, seconds.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// The connection limit when nothing else is configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The bound on decision and token requests in progress when nothing else is configured.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// The per-agent token rate when nothing else is configured.
pub const DEFAULT_TOKEN_RATE_PER_CLIENT: RateLimit = RateLimit { limit: 60, per_secs: 60 };
/// The per-address token rate (requests naming no agent) when nothing else is configured.
pub const DEFAULT_TOKEN_RATE_PER_IP: RateLimit = RateLimit { limit: 60, per_secs: 60 };
/// The per-address anonymous decision rate when nothing else is configured.
pub const DEFAULT_ANONYMOUS_RATE_PER_IP: RateLimit = RateLimit { limit: 600, per_secs: 60 };

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: Some(DEFAULT_MAX_IN_FLIGHT),
            token_rate_per_client: Some(DEFAULT_TOKEN_RATE_PER_CLIENT),
            token_rate_per_ip: Some(DEFAULT_TOKEN_RATE_PER_IP),
            anonymous_rate_per_ip: Some(DEFAULT_ANONYMOUS_RATE_PER_IP),
        }
    }
}

impl LimitsFile {
    /// These values over the defaults.
    pub fn resolve(&self) -> Result<ServerLimits, ConfigError> {
        let mut l = ServerLimits::default();
        if let Some(t) = self.header_timeout_secs {
            if !(1..=300).contains(&t) {
                return Err(ConfigError::Invalid("`limits.header_timeout_secs` must be between 1 and 300".into()));
            }
            l.header_timeout = Duration::from_secs(t);
        }
        if let Some(n) = self.max_connections {
            if !(1..=1_000_000).contains(&n) {
                return Err(ConfigError::Invalid("`limits.max_connections` must be between 1 and 1000000".into()));
            }
            l.max_connections = n;
        }
        if let Some(n) = self.max_in_flight {
            if n > 1_000_000 {
                return Err(ConfigError::Invalid(
                    "`limits.max_in_flight` must be between 0 (no bound) and 1000000".into(),
                ));
            }
            l.max_in_flight = (n > 0).then_some(n);
        }
        let rate = |name: &str, v: &Option<String>, slot: &mut Option<RateLimit>| -> Result<(), ConfigError> {
            match v.as_deref().map(str::trim) {
                None => {}
                Some("off") => *slot = None,
                Some(text) => {
                    *slot = Some(
                        RateLimit::parse(text).map_err(|e| ConfigError::Invalid(format!("`limits.{name}`: {e}")))?,
                    )
                }
            }
            Ok(())
        };
        rate("token_rate_per_client", &self.token_rate_per_client, &mut l.token_rate_per_client)?;
        rate("token_rate_per_ip", &self.token_rate_per_ip, &mut l.token_rate_per_ip)?;
        rate("anonymous_rate_per_ip", &self.anonymous_rate_per_ip, &mut l.anonymous_rate_per_ip)?;
        Ok(l)
    }
}

/// The `[gateway]` table: the MCP gateway `warrant serve` runs beside the API, on its
/// own address, deciding in-process. Without it no gateway runs.
///
/// ```toml
/// [gateway]
/// listen = "127.0.0.1:8090"                  # its own address (default 127.0.0.1:8090)
/// public_url = "https://mcp.example.com"     # default http://<listen>
/// upstreams = { crm = "http://127.0.0.1:9000/mcp", docs = "http://127.0.0.1:9001/mcp" }
/// ```
///
/// Upstream `u` is served at `<public_url>/mcp/<u>`; warrants for it are minted with that
/// URL as their `resource`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// The gateway's listen address (not the API's).
    pub listen: Option<String>,
    /// The gateway's public base URL.
    pub public_url: Option<String>,
    /// The upstream MCP servers, name to Streamable HTTP endpoint.
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, String>,
}

/// The gateway's listen address when `[gateway]` names none.
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8090";

/// The resolved `[gateway]`. The upstreams' names and URLs are checked by the gateway
/// itself when it starts (before the server binds anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The gateway's listen address.
    pub listen: SocketAddr,
    /// The gateway's public base URL (no trailing `/`); `None`: `http://<bound address>`.
    pub public_url: Option<String>,
    /// The upstreams, name to URL, in name order.
    pub upstreams: Vec<(String, String)>,
}

impl GatewayFile {
    /// `self` (flags or variables) where set, else `under` (the file): `listen` and
    /// `public_url` key by key, `upstreams` as a whole when `self` names any.
    pub fn over(self, under: GatewayFile) -> GatewayFile {
        GatewayFile {
            listen: self.listen.or(under.listen),
            public_url: self.public_url.or(under.public_url),
            upstreams: if self.upstreams.is_empty() { under.upstreams } else { self.upstreams },
        }
    }

    /// Checks the table against the API's listen address `api`.
    pub fn resolve(self, api: SocketAddr) -> Result<GatewaySettings, ConfigError> {
        let text = self.listen.unwrap_or_else(|| DEFAULT_GATEWAY_LISTEN.to_owned());
        let listen: SocketAddr = text.parse().map_err(|_| {
            ConfigError::Invalid(format!("`gateway.listen` `{text}` is not an address like {DEFAULT_GATEWAY_LISTEN}"))
        })?;
        let same_ip = listen.ip() == api.ip() || listen.ip().is_unspecified() || api.ip().is_unspecified();
        if listen.port() != 0 && listen.port() == api.port() && same_ip {
            return Err(ConfigError::Invalid(format!(
                "`gateway.listen` {listen} collides with the API's `listen` {api}: the gateway needs its own address"
            )));
        }
        let public_url = match self.public_url {
            None => None,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(url) => {
                return Err(ConfigError::Invalid(format!("`gateway.public_url` `{url}` must be an http(s) URL")))
            }
        };
        if self.upstreams.is_empty() {
            return Err(ConfigError::Invalid(
                "`[gateway]` names no upstream: add e.g. `upstreams = { demo = \"http://127.0.0.1:8000/mcp\" }`".into(),
            ));
        }
        Ok(GatewaySettings { listen, public_url, upstreams: self.upstreams.into_iter().collect() })
    }
}

/// The `[federation]` table: identity providers whose users sign in.
///
/// ```toml
/// [[federation.oidc]]
/// issuer = "https://login.example.com"       # https (http only on loopback hosts)
/// audience = "warrant"                       # Warrant's client id at the provider
/// groups_claim = "groups"                    # the default
/// [federation.oidc.groups]
/// support = ["tickets.*", "customers.read"]
/// finance = ["payments.refund"]
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederationFile {
    /// Trusted OpenID providers.
    #[serde(default)]
    pub oidc: Vec<OidcFile>,
    /// Trusted SPIFFE trust domains, whose workloads authenticate as agents with JWT-SVIDs.
    #[serde(default)]
    pub spiffe: Vec<SpiffeFile>,
}

/// One `[[federation.spiffe]]` entry: a trust domain and where its bundle comes from
/// (exactly one of `bundle_file` and `bundle_url`).
///
/// ```toml
/// [[federation.spiffe]]
/// trust_domain = "example.org"
/// bundle_file = "/run/spire/bundle.jwks"       # re-read when it changes
/// # bundle_url = "https://spire.example.org/bundle"   # the bundle endpoint (https_web)
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpiffeFile {
    /// The trust domain, e.g. `example.org`.
    pub trust_domain: String,
    /// Its trust bundle as a file: a JWKS whose keys with `use` `jwt-svid` verify its
    /// JWT-SVIDs.
    pub bundle_file: Option<PathBuf>,
    /// Its bundle endpoint (https, or http on loopback), authenticated by the web PKI.
    pub bundle_url: Option<String>,
}

/// One `[[federation.oidc]]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// The provider's issuer identifier, exactly as its ID tokens' `iss`.
    pub issuer: String,
    /// The audience its ID tokens must name.
    pub audience: String,
    /// The claim with the user's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Permissions by group name.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Register humans with emails the provider does not mark verified (default false).
    #[serde(default)]
    pub trust_unverified_email: bool,
    /// Sign people in to the console here (`[federation.oidc.console]`).
    pub console: Option<ConsoleOidcFile>,
}

/// `[federation.oidc.console]`: people sign in to `/console` at this provider, with
/// Warrant as the client whose id is the provider's `audience` (authorization code flow
/// with PKCE; register `<issuer>/console/oidc/callback` as its redirect URI).
///
/// ```toml
/// [federation.oidc.console]
/// client_secret_file = "/etc/warrant/console-secret"   # omit for a public client
/// scopes = "openid profile email groups"               # the default: "openid profile email"
/// [federation.oidc.console.roles]
/// admin = ["warrant-admins"]
/// operator = ["secops"]
/// approver = ["finance-leads"]
/// viewer = ["auditors"]
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOidcFile {
    /// A file holding the client secret (a confidential client); none: a public client.
    pub client_secret_file: Option<PathBuf>,
    /// The scopes to ask for.
    pub scopes: Option<String>,
    /// The groups that hold each role (`viewer`, `approver`, `operator`, `admin`).
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
}

impl ConsoleOidcFile {
    fn resolve(self, at: &str) -> Result<warrant_engine::federation::ConsoleClient, ConfigError> {
        let mut roles = std::collections::BTreeMap::new();
        for (name, groups) in self.roles {
            let role = warrant_core::Role::parse(&name).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{at}: `console.roles.{name}` is not a role (viewer, approver, operator, admin)"
                ))
            })?;
            if groups.iter().any(|g| g.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!("{at}: `console.roles.{name}` names an empty group")));
            }
            roles.insert(role, groups);
        }
        let client_secret = match self.client_secret_file {
            None => None,
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "{at}: `console.client_secret_file` {} cannot be read: {e}",
                        file.display()
                    ))
                })?;
                let secret = text.trim().to_owned();
                if secret.is_empty() {
                    return Err(ConfigError::Invalid(format!("{at}: `console.client_secret_file` is empty")));
                }
                Some(secret)
            }
        };
        Ok(warrant_engine::federation::ConsoleClient {
            client_secret,
            scopes: self.scopes.unwrap_or_else(|| "openid profile email".to_owned()),
            roles,
        })
    }
}

/// The `[console]` table.
///
/// ```toml
/// [console]
/// session_ttl_secs = 28800     # how long a sign-in lasts (default 8 hours)
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleFile {
    /// How long a console session lasts, seconds (60 to 7 days).
    pub session_ttl_secs: Option<i64>,
}

impl FederationFile {
    /// The SPIFFE trust domains, each checked: a valid trust domain, configured once, with
    /// a bundle file that holds at least one usable JWT-SVID key now.
    fn spiffe_domains(&self) -> Result<Vec<SpiffeDomain>, ConfigError> {
        let mut out: Vec<SpiffeDomain> = Vec::new();
        for (i, d) in self.spiffe.iter().enumerate() {
            let at = format!("`federation.spiffe[{i}]`");
            let parsed = warrant_token::spiffe::SpiffeId::parse(&format!("spiffe://{}", d.trust_domain));
            // A whole SPIFFE ID's path is not part of a trust domain: `a.org/x` is refused.
            let id = parsed.ok().filter(|id| id.trust_domain() == d.trust_domain).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{at}: `trust_domain` `{}` is not a SPIFFE trust domain (lowercase letters, digits, `.`, `-`, `_`)",
                    d.trust_domain
                ))
            })?;
            if out.iter().any(|o| o.trust_domain == id.trust_domain()) {
                return Err(ConfigError::Invalid(format!(
                    "{at}: trust domain `{}` is configured twice",
                    d.trust_domain
                )));
            }
            let bundle = match (&d.bundle_file, &d.bundle_url) {
                (Some(file), None) => {
                    let bundle = std::fs::read(file).map_err(|e| {
                        ConfigError::Invalid(format!("{at}: `bundle_file` {} cannot be read: {e}", file.display()))
                    })?;
                    let jwks: serde_json::Value = serde_json::from_slice(&bundle)
                        .map_err(|e| ConfigError::Invalid(format!("{at}: `bundle_file` is not a JWKS: {e}")))?;
                    if warrant_token::oidc::ProviderKeys::from_jwks_for(&jwks, "jwt-svid").is_empty() {
                        return Err(ConfigError::Invalid(format!(
                            "{at}: `bundle_file` holds no usable JWT-SVID key (RSA, P-256 or Ed25519, `use` `jwt-svid`)"
                        )));
                    }
                    BundleSource::File(file.clone())
                }
                (None, Some(url)) => {
                    warrant_engine::federation::check_url(url)
                        .map_err(|e| ConfigError::Invalid(format!("{at}: `bundle_url`: {e}")))?;
                    BundleSource::Url(url.clone())
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{at}: give exactly one of `bundle_file` and `bundle_url`"
                    )))
                }
            };
            out.push(SpiffeDomain { trust_domain: id.trust_domain().to_owned(), bundle });
        }
        Ok(out)
    }

    fn resolve(self) -> Result<Vec<OidcProvider>, ConfigError> {
        let mut providers: Vec<OidcProvider> = Vec::new();
        for (i, p) in self.oidc.into_iter().enumerate() {
            let at = format!("`federation.oidc[{i}]`");
            warrant_engine::federation::check_url(&p.issuer)
                .map_err(|e| ConfigError::Invalid(format!("{at}: `issuer`: {e}")))?;
            if providers.iter().any(|q| q.issuer == p.issuer) {
                return Err(ConfigError::Invalid(format!("{at}: issuer `{}` is configured twice", p.issuer)));
            }
            if p.audience.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("{at}: `audience` must not be empty")));
            }
            for (group, permissions) in &p.groups {
                warrant_core::Scope::parse_list(permissions.iter().map(String::as_str))
                    .map_err(|e| ConfigError::Invalid(format!("{at}: `groups.{group}`: {e}")))?;
            }
            let groups_claim = p.groups_claim.unwrap_or_else(|| "groups".to_owned());
            if groups_claim.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("{at}: `groups_claim` must not be empty")));
            }
            let console = p.console.map(|c| c.resolve(&at)).transpose()?;
            providers.push(OidcProvider {
                issuer: p.issuer,
                audience: p.audience,
                groups_claim,
                groups: p.groups,
                trust_unverified_email: p.trust_unverified_email,
                console,
            });
        }
        Ok(providers)
    }
}

/// The TOML configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// The database: `sqlite` (the default, a file in the data directory) or a
    /// `postgres://` URL.
    pub database: Option<String>,
    /// Whether `serve` brings the database's schema to this build's version on start
    /// (default true); with false, a database that is not at it is refused.
    pub migrate: Option<bool>,
    /// Listen address.
    pub listen: Option<String>,
    /// Public issuer URL.
    pub issuer: Option<String>,
    /// Default warrant lifetime, seconds.
    pub default_ttl: Option<i64>,
    /// Maximum warrant lifetime, seconds.
    pub max_ttl: Option<i64>,
    /// Maximum delegation depth.
    pub max_depth: Option<usize>,
    /// Human session lifetime, seconds.
    pub session_ttl: Option<i64>,
    /// Largest request body, bytes.
    pub body_limit: Option<usize>,
    /// Runtime guardrails (file only).
    pub guard: Option<GuardFile>,
    /// Continuous governance and its webhook (file only).
    pub governance: Option<govern::GovernanceFile>,
    /// The key-encryption key file (used when `WARRANT_KEK` is not set).
    pub kek_file: Option<PathBuf>,
    /// The audit witness file.
    pub witness: Option<PathBuf>,
    /// The SQLite group-commit writer's nice value, -20 to 0 (default -10; 0 leaves it at
    /// the process's priority).
    pub writer_nice: Option<i64>,
    /// Connection, request-rate and header-time limits (file only).
    pub limits: Option<LimitsFile>,
    /// The MCP gateway served beside the API.
    pub gateway: Option<GatewayFile>,
    /// Trusted identity providers (file only).
    pub federation: Option<FederationFile>,
    /// The Shared Signals transmitter (file only).
    pub ssf: Option<SsfFile>,
    /// How a server follows the change feed of a shared database (file only).
    pub cluster: Option<ClusterFile>,
    /// The web console (file only).
    pub console: Option<ConsoleFile>,
}

/// The `[cluster]` table: how a server on a PostgreSQL database shared with other
/// servers keeps current (ignored on SQLite).
///
/// ```toml
/// [cluster]
/// max_staleness = "1s"      # deny when not confirmed current for longer than this
///                           # (or max_staleness_ms = 1000)
/// poll_interval_ms = 100    # read the change log this often besides announcements
/// keep_changes_secs = 3600  # a server away longer than this reloads everything
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// How long a server may go without confirming it is current: `"1s"`, `"500ms"`.
    pub max_staleness: Option<String>,
    /// The same in milliseconds.
    pub max_staleness_ms: Option<u64>,
    /// How often the change log is read without an announcement, milliseconds.
    pub poll_interval_ms: Option<u64>,
    /// How long changes stay in the log, seconds.
    pub keep_changes_secs: Option<u64>,
}

/// Milliseconds in `"500ms"` or `"2s"`.
fn millis_of(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse().ok();
    }
    text.strip_suffix('s')?.trim().parse::<u64>().ok()?.checked_mul(1000)
}

impl ClusterFile {
    /// These values over the defaults.
    pub fn resolve(&self) -> Result<warrant_engine::ClusterConfig, ConfigError> {
        let mut c = warrant_engine::ClusterConfig::default();
        let staleness = match (&self.max_staleness, self.max_staleness_ms) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set `cluster.max_staleness` or `cluster.max_staleness_ms`, not both".into(),
                ))
            }
            (Some(text), None) => Some(millis_of(text).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "`cluster.max_staleness` `{text}` is not a duration: write e.g. `1s` or `500ms`"
                ))
            })?),
            (None, ms) => ms,
        };
        if let Some(ms) = staleness {
            if !(100..=60_000).contains(&ms) {
                return Err(ConfigError::Invalid("`cluster.max_staleness` must be between 100 ms and 60 s".into()));
            }
            c.max_staleness = Duration::from_millis(ms);
        }
        if let Some(ms) = self.poll_interval_ms {
            if !(10..=10_000).contains(&ms) {
                return Err(ConfigError::Invalid("`cluster.poll_interval_ms` must be between 10 and 10000".into()));
            }
            c.poll_interval = Duration::from_millis(ms);
        }
        if c.poll_interval >= c.max_staleness {
            return Err(ConfigError::Invalid(
                "`cluster.poll_interval_ms` must be shorter than `cluster.max_staleness`, or a quiet server \
                 would deny between two reads"
                    .into(),
            ));
        }
        if let Some(secs) = self.keep_changes_secs {
            if !(60..=7 * 86_400).contains(&secs) {
                return Err(ConfigError::Invalid(
                    "`cluster.keep_changes_secs` must be between 60 and 604800 (7 days)".into(),
                ));
            }
            c.keep_changes = Duration::from_secs(secs);
        }
        Ok(c)
    }
}

/// The `[ssf]` table: the Shared Signals transmitter.
///
/// ```toml
/// [ssf]
/// danger_allow_private_push = false  # true: push streams may deliver over http and to
///                                    # loopback, private and link-local addresses
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SsfFile {
    /// Whether push streams may deliver over plain http and to non-public addresses.
    pub danger_allow_private_push: Option<bool>,
}

/// Values from flags or the environment (already merged by clap: flag over variable).
pub type ServeOptions = FileConfig;

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("the configuration file `{path}` is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// The resolved settings `warrant serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory (the SQLite database, admin token, policies, key-encryption key).
    pub data: PathBuf,
    /// Where the store lives.
    pub database: Database,
    /// Whether the schema is migrated on start.
    pub migrate: bool,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public issuer URL; derived from the bound address when unset.
    pub issuer: Option<String>,
    /// Lifetimes and depth.
    pub limits: Limits,
    /// Human session lifetime, seconds.
    pub session_ttl: i64,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Runtime guardrails.
    pub guard: warrant_engine::guard::GuardConfig,
    /// Continuous governance.
    pub govern: warrant_engine::govern::GovernConfig,
    /// Where finding events are delivered, if anywhere.
    pub webhook: Option<warrant_engine::webhook::WebhookConfig>,
    /// The key-encryption key file, read when `WARRANT_KEK` is not set (default
    /// `<data>/keys/kek`; in production put it on another disk, or use the variable).
    pub kek_file: PathBuf,
    /// The audit witness file every checkpoint is appended to (default
    /// `<data>/witness/audit-witness.jsonl`; in production put it on another disk).
    pub witness: PathBuf,
    /// The nice value the SQLite group-commit writer's thread asks for, when set (ignored
    /// on PostgreSQL); unset, it asks for [`warrant_store::WriterNice::RAISED`] and a
    /// refusal is only information, not a warning.
    pub writer_nice: Option<warrant_store::WriterNice>,
    /// Connection, request-rate and header-time limits.
    pub server_limits: ServerLimits,
    /// The MCP gateway served beside the API, if any.
    pub gateway: Option<GatewaySettings>,
    /// Trusted OpenID providers whose users sign in.
    pub federation: Vec<OidcProvider>,
    /// Whether SSF push streams may deliver over http and to non-public addresses.
    pub ssf_allow_private_push: bool,
    /// How the server follows the change feed of a shared database.
    pub cluster: warrant_engine::ClusterConfig,
    /// Trusted SPIFFE trust domains.
    pub spiffe: Vec<SpiffeDomain>,
    /// How long a console session lasts, seconds.
    pub console_session_ttl: i64,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// SQLite, in `<data>/warrant.db` (the default).
    Sqlite,
    /// PostgreSQL, at this URL.
    Postgres(DatabaseUrl),
}

impl Database {
    /// Reads a `database` setting: `sqlite`, or a `postgres://` (`postgresql://`) URL.
    pub fn parse(text: &str) -> Result<Database, ConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("sqlite") {
            return Ok(Database::Sqlite);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres(DatabaseUrl(text.to_owned())));
        }
        Err(ConfigError::Invalid(format!(
            "`database` must be `sqlite` or a `postgres://user:password@host:port/dbname` URL, not `{}`",
            warrant_store::postgres::redact_url(text)
        )))
    }
}

/// A PostgreSQL URL. It may hold a password, so it prints without it (`Debug`,
/// `Display`); [`DatabaseUrl::expose`] gives the whole URL to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The whole URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", warrant_store::postgres::redact_url(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&warrant_store::postgres::redact_url(&self.0))
    }
}

/// The witness file for a data directory when none is configured:
/// `<data>/witness/audit-witness.jsonl`.
pub fn default_witness(data: &Path) -> PathBuf {
    data.join("witness").join(warrant_engine::audit::witness::WITNESS_FILE)
}

impl FileConfig {
    /// Reads a TOML configuration file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// `self` where set, else `under`.
    pub fn over(self, under: FileConfig) -> FileConfig {
        FileConfig {
            data: self.data.or(under.data),
            database: self.database.or(under.database),
            migrate: self.migrate.or(under.migrate),
            listen: self.listen.or(under.listen),
            issuer: self.issuer.or(under.issuer),
            default_ttl: self.default_ttl.or(under.default_ttl),
            max_ttl: self.max_ttl.or(under.max_ttl),
            max_depth: self.max_depth.or(under.max_depth),
            session_ttl: self.session_ttl.or(under.session_ttl),
            body_limit: self.body_limit.or(under.body_limit),
            guard: self.guard.or(under.guard),
            governance: self.governance.or(under.governance),
            kek_file: self.kek_file.or(under.kek_file),
            witness: self.witness.or(under.witness),
            writer_nice: self.writer_nice.or(under.writer_nice),
            limits: self.limits.or(under.limits),
            gateway: match (self.gateway, under.gateway) {
                (Some(over), Some(under)) => Some(over.over(under)),
                (over, under) => over.or(under),
            },
            federation: self.federation.or(under.federation),
            ssf: self.ssf.or(under.ssf),
            cluster: self.cluster.or(under.cluster),
            console: self.console.or(under.console),
        }
    }
}

impl Settings {
    /// Lays `options` (flags over environment) over the configuration file, if any: the
    /// file named by `config_path`, else `<data>/warrant.toml` when it exists.
    pub fn resolve(options: ServeOptions, config_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = match config_path {
            Some(path) => FileConfig::read(path)?,
            None => {
                let data = options.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let implicit = data.join("warrant.toml");
                if implicit.is_file() {
                    FileConfig::read(&implicit)?
                } else {
                    FileConfig::default()
                }
            }
        };
        Self::from_config(options.over(file))
    }

    /// Validates merged values and fills defaults.
    pub fn from_config(c: FileConfig) -> Result<Settings, ConfigError> {
        let defaults = Limits::default();
        let listen_text = c.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            ConfigError::Invalid(format!("`listen` `{listen_text}` is not an address like 127.0.0.1:8080"))
        })?;
        let limits = Limits {
            default_ttl: c.default_ttl.unwrap_or(defaults.default_ttl),
            max_ttl: c.max_ttl.unwrap_or(defaults.max_ttl),
            max_depth: c.max_depth.unwrap_or(defaults.max_depth),
        };
        if limits.max_ttl <= 0 || limits.max_ttl > 86_400 {
            return Err(ConfigError::Invalid("`max_ttl` must be between 1 and 86400 seconds".into()));
        }
        if limits.default_ttl <= 0 || limits.default_ttl > limits.max_ttl {
            return Err(ConfigError::Invalid("`default_ttl` must be positive and at most `max_ttl`".into()));
        }
        if limits.max_depth == 0 || limits.max_depth > 32 {
            return Err(ConfigError::Invalid("`max_depth` must be between 1 and 32".into()));
        }
        let session_ttl = c.session_ttl.unwrap_or(3600);
        if session_ttl <= 0 || session_ttl > 7 * 86_400 {
            return Err(ConfigError::Invalid("`session_ttl` must be between 1 second and 7 days".into()));
        }
        let body_limit = c.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
            return Err(ConfigError::Invalid("`body_limit` must be between 1 KiB and 16 MiB".into()));
        }
        let guard = c.guard.unwrap_or_default().resolve()?;
        let (govern, webhook) = c.governance.unwrap_or_default().resolve()?;
        let server_limits = c.limits.unwrap_or_default().resolve()?;
        let gateway = c.gateway.map(|g| g.resolve(listen)).transpose()?;
        let federation_file = c.federation.unwrap_or_default();
        let spiffe = federation_file.spiffe_domains()?;
        let federation = federation_file.resolve()?;
        if let Some(issuer) = &c.issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!("`issuer` `{issuer}` must be an http(s) URL")));
            }
        }
        let database = match c.database.as_deref() {
            None => Database::Sqlite,
            Some(text) => Database::parse(text)?,
        };
        if matches!(database, Database::Postgres(_)) && c.issuer.is_none() {
            return Err(ConfigError::Invalid(
                "`database` is PostgreSQL: set `issuer` (`--issuer`, `WARRANT_ISSUER`) to the public URL every \
                 server on this database signs warrants with"
                    .into(),
            ));
        }
        let console_session_ttl =
            c.console.and_then(|c| c.session_ttl_secs).unwrap_or(warrant_engine::console::DEFAULT_SESSION_TTL_SECS);
        if !(60..=7 * 86_400).contains(&console_session_ttl) {
            return Err(ConfigError::Invalid(
                "`console.session_ttl_secs` must be between 60 and 604800 (7 days)".into(),
            ));
        }
        let data = c.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let kek_file = c.kek_file.unwrap_or_else(|| crate::kek::default_kek_file(&data));
        let witness = c.witness.unwrap_or_else(|| default_witness(&data));
        let writer_nice = c
            .writer_nice
            .map(warrant_store::WriterNice::new)
            .transpose()
            .map_err(|e| ConfigError::Invalid(format!("`writer_nice`: {e}")))?;
        Ok(Settings {
            data,
            database,
            migrate: c.migrate.unwrap_or(true),
            listen,
            issuer: c.issuer,
            limits,
            session_ttl,
            body_limit,
            guard,
            govern,
            webhook,
            kek_file,
            witness,
            writer_nice,
            server_limits,
            gateway,
            federation,
            ssf_allow_private_push: c.ssf.and_then(|s| s.danger_allow_private_push).unwrap_or(false),
            cluster: c.cluster.unwrap_or_default().resolve()?,
            spiffe,
            console_session_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_table_takes_durations_within_bounds() {
        let cluster = |text: &str| toml::from_str::<FileConfig>(text).unwrap().cluster.unwrap_or_default().resolve();
        assert_eq!(cluster("[cluster]\nmax_staleness = \"2s\"").unwrap().max_staleness, Duration::from_secs(2));
        assert_eq!(cluster("[cluster]\nmax_staleness = \"500ms\"").unwrap().max_staleness, Duration::from_millis(500));
        assert_eq!(cluster("[cluster]\nmax_staleness_ms = 700").unwrap().max_staleness, Duration::from_millis(700));
        assert_eq!(cluster("").unwrap(), warrant_engine::ClusterConfig::default());
        for bad in [
            "max_staleness = \"soon\"",
            "max_staleness = \"50ms\"",
            "max_staleness = \"1s\"\nmax_staleness_ms = 1000",
            "poll_interval_ms = 2000",
            "keep_changes_secs = 10",
        ] {
            assert!(cluster(&format!("[cluster]\n{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_over_environment_over_file() {
        let file = FileConfig { listen: Some("127.0.0.1:1".into()), max_ttl: Some(600), ..Default::default() };
        let flags = FileConfig { listen: Some("127.0.0.1:2".into()), ..Default::default() };
        let s = Settings::from_config(flags.over(file)).unwrap();
        assert_eq!(s.listen.port(), 2);
        assert_eq!(s.limits.max_ttl, 600);
        assert_eq!(s.data, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.kek_file, PathBuf::from(DEFAULT_DATA_DIR).join("keys").join("kek"));
        assert_eq!(s.witness, PathBuf::from(DEFAULT_DATA_DIR).join("witness").join("audit-witness.jsonl"));
        let file = FileConfig { kek_file: Some("/k".into()), witness: Some("/w".into()), ..Default::default() };
        let s = Settings::from_config(FileConfig::default().over(file)).unwrap();
        assert_eq!((s.kek_file, s.witness), (PathBuf::from("/k"), PathBuf::from("/w")));
    }

    #[test]
    fn the_database_is_sqlite_or_a_postgres_url_whose_password_is_never_shown() {
        let parse = |text: &str| Settings::from_config(toml::from_str::<FileConfig>(text).unwrap());
        let s = parse("").unwrap();
        assert_eq!((s.database, s.migrate), (Database::Sqlite, true));
        assert_eq!(parse("database = \"sqlite\"").unwrap().database, Database::Sqlite);
        let s = parse(
            "database = \"postgres://warrant:hunter2@db:5432/w\"\nissuer = \"https://w.example\"\nmigrate = false",
        )
        .unwrap();
        let Database::Postgres(url) = &s.database else { panic!("postgres: {:?}", s.database) };
        assert_eq!(url.expose(), "postgres://warrant:hunter2@db:5432/w");
        assert!(!format!("{s:?} {url}").contains("hunter2"), "the password is never printed");
        assert!(!s.migrate);
        // Every server on one database signs as one issuer: it must be set.
        let e = parse("database = \"postgres://db/w\"").unwrap_err().to_string();
        assert!(e.contains("set `issuer`"), "{e}");
        let e = parse("database = \"mysql://u:hunter2@db/w\"").unwrap_err().to_string();
        assert!(e.contains("must be `sqlite` or a `postgres://") && !e.contains("hunter2"), "{e}");
    }

    /// The store's writer asks for nice -10 unless told otherwise; 0 asks for nothing, and
    /// a value that would lower it, or is out of range, is refused with the range.
    #[test]
    fn the_writer_nice_value_is_minus_ten_unless_set() {
        let parse = |text: &str| Settings::from_config(toml::from_str::<FileConfig>(text).unwrap());
        assert_eq!(parse("").unwrap().writer_nice, None, "unset: -10, where the system allows it");
        assert_eq!(parse("writer_nice = 0").unwrap().writer_nice, Some(warrant_store::WriterNice::NORMAL));
        assert_eq!(parse("writer_nice = -20").unwrap().writer_nice.map(warrant_store::WriterNice::get), Some(-20));
        for bad in ["writer_nice = 5", "writer_nice = -21"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("`writer_nice`") && e.contains("from -20"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = FileConfig { default_ttl: Some(1000), max_ttl: Some(900), ..Default::default() };
        assert!(Settings::from_config(bad).is_err());
        let bad = FileConfig { listen: Some("nowhere".into()), ..Default::default() };
        assert!(Settings::from_config(bad).is_err());
        assert!(toml::from_str::<FileConfig>("unknown = 1").is_err());
    }

    #[test]
    fn identity_providers_are_checked() {
        let parse = |text: &str| Settings::from_config(toml::from_str::<FileConfig>(text).unwrap());
        assert!(parse("").unwrap().federation.is_empty());
        let s = parse(
            "[[federation.oidc]]\nissuer = \"https://idp.example\"\naudience = \"warrant\"\n\
             [federation.oidc.groups]\nsupport = [\"tickets.*\"]",
        )
        .unwrap();
        assert_eq!(s.federation.len(), 1);
        assert_eq!(s.federation[0].groups_claim, "groups");
        assert_eq!(s.federation[0].groups["support"], vec!["tickets.*".to_owned()]);
        for (text, why) in [
            ("[[federation.oidc]]\nissuer = \"http://idp.example\"\naudience = \"w\"", "https"),
            ("[[federation.oidc]]\nissuer = \"https://idp.example\"\naudience = \" \"", "audience"),
            (
                "[[federation.oidc]]\nissuer = \"https://i\"\naudience = \"w\"\n[[federation.oidc]]\nissuer = \"https://i\"\naudience = \"v\"",
                "twice",
            ),
            ("[[federation.oidc]]\nissuer = \"https://i\"\naudience = \"w\"\ngroups = { a = [\"\"] }", "groups.a"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        // http on loopback is for tests and local providers.
        assert!(parse("[[federation.oidc]]\nissuer = \"http://127.0.0.1:9\"\naudience = \"w\"").is_ok());
    }

    #[test]
    fn the_gateway_table_is_checked() {
        let s = Settings::from_config(FileConfig::default()).unwrap();
        assert_eq!(s.gateway, None, "no table, no gateway");
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:8080\"\n[gateway]\nupstreams = { b = \"http://127.0.0.1:2/mcp\", a = \"http://127.0.0.1:1/mcp\" }",
        )
        .unwrap();
        let g = Settings::from_config(file).unwrap().gateway.unwrap();
        assert_eq!(g.listen, DEFAULT_GATEWAY_LISTEN.parse().unwrap());
        assert_eq!(g.public_url, None);
        assert_eq!(g.upstreams[0], ("a".to_owned(), "http://127.0.0.1:1/mcp".to_owned()));
        let file: FileConfig = toml::from_str(
            "[gateway]\nlisten = \"0.0.0.0:9\"\npublic_url = \"https://mcp.example.com/\"\n[gateway.upstreams]\ncrm = \"http://h/mcp\"",
        )
        .unwrap();
        let g = Settings::from_config(file).unwrap().gateway.unwrap();
        assert_eq!(g.public_url.as_deref(), Some("https://mcp.example.com"));
        let up = "\nupstreams = { a = \"http://127.0.0.1:1/mcp\" }";
        for (bad, why) in [
            ("listen = \"127.0.0.1:7\"\n[gateway]\nlisten = \"127.0.0.1:7\"", "collides"),
            ("listen = \"127.0.0.1:7\"\n[gateway]\nlisten = \"0.0.0.0:7\"", "collides"),
            ("[gateway]\nlisten = \"nowhere\"", "not an address"),
            ("[gateway]\npublic_url = \"mcp.example.com\"", "http(s) URL"),
        ] {
            let file: FileConfig = toml::from_str(&format!("{bad}{up}")).unwrap();
            let err = Settings::from_config(file).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let file: FileConfig = toml::from_str("[gateway]\nlisten = \"127.0.0.1:0\"").unwrap();
        assert!(Settings::from_config(file).unwrap_err().to_string().contains("names no upstream"));
        // Port 0 on both sides is two ports, not a collision.
        let file: FileConfig =
            toml::from_str(&format!("listen = \"127.0.0.1:0\"\n[gateway]\nlisten = \"127.0.0.1:0\"{up}")).unwrap();
        assert!(Settings::from_config(file).is_ok());
        assert!(toml::from_str::<FileConfig>("[gateway]\nserver = \"http://x\"").is_err(), "unknown keys");
        // Flags over the file, key by key; flags alone make a gateway too.
        let file: FileConfig = toml::from_str(&format!("[gateway]\nlisten = \"127.0.0.1:5\"{up}")).unwrap();
        let flags = FileConfig {
            gateway: Some(GatewayFile { public_url: Some("http://gw".into()), ..GatewayFile::default() }),
            ..FileConfig::default()
        };
        let g = Settings::from_config(flags.clone().over(file)).unwrap().gateway.unwrap();
        assert_eq!((g.listen.port(), g.public_url.as_deref(), g.upstreams.len()), (5, Some("http://gw"), 1));
        assert!(Settings::from_config(flags.over(FileConfig::default())).is_err(), "flags without upstreams");
    }

    #[test]
    fn limits_have_defaults_and_can_be_turned_off() {
        let s = Settings::from_config(FileConfig::default()).unwrap();
        assert_eq!(s.server_limits, ServerLimits::default());
        assert_eq!(s.server_limits.header_timeout, Duration::from_secs(10));
        let file: FileConfig = toml::from_str(
            "[limits]\nheader_timeout_secs = 2\nmax_connections = 8\ntoken_rate_per_client = \"off\"\nanonymous_rate_per_ip = \"5/s\"",
        )
        .unwrap();
        let s = Settings::from_config(file).unwrap();
        assert_eq!(s.server_limits.header_timeout, Duration::from_secs(2));
        assert_eq!(s.server_limits.max_connections, 8);
        assert_eq!(s.server_limits.token_rate_per_client, None);
        assert_eq!(s.server_limits.anonymous_rate_per_ip, Some(RateLimit { limit: 5, per_secs: 1 }));
        for bad in ["header_timeout_secs = 0", "max_connections = 0", "token_rate_per_ip = \"fast\""] {
            let file: FileConfig = toml::from_str(&format!("[limits]\n{bad}")).unwrap();
            assert!(Settings::from_config(file).is_err(), "{bad}");
        }
    }
}
