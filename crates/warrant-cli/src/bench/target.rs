//! What the harness drives: the Warrant server (in-process or running), the trivial axum
//! baseline, the identities and warrants set up through the API, and the operations.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warrant_core::AgentId;
use warrant_engine::issuer::{
    ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT,
};
use warrant_engine::Clock as _;
use warrant_server::config::{FileConfig, Settings};
use warrant_token::assertion::make_assertion;
use warrant_token::KeyPair;

use super::load::{Done, Op, OpFailure, RevocationSample};
use super::BenchError;
use crate::client::Client;

/// Pre-signed assertions older than this are not used (they live 60 s).
const POOL_FRESH_FOR: Duration = Duration::from_secs(45);
/// A request that takes longer than this fails (every loop stays bounded).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many distinct authorize bodies (resources) a point cycles through.
pub(super) const BODY_VARIANTS: usize = 256;

/// The MCP protocol revision the client states (and the bench's upstream answers).
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// The HTTP client every measurement uses, the baseline's included.
pub fn http_client() -> Result<reqwest::Client, BenchError> {
    Ok(reqwest::Client::builder().no_proxy().http1_only().tcp_nodelay(true).timeout(REQUEST_TIMEOUT).build()?)
}

/// A server this process started; stopped (gracefully) by [`Started::stop`].
pub struct Started {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), String>>,
}

impl Started {
    /// Stops the server and waits for it (the Warrant server drains its audit queue).
    pub async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        self.handle.await.map_err(|e| BenchError::Worker(e.to_string()))?.map_err(BenchError::Server)
    }
}

/// Starts a Warrant server on a temporary data directory, as `warrant demo` does: the
/// server, its admin token and its engine (for the in-process gateway).
pub async fn start_warrant(
    data: &std::path::Path,
) -> Result<(Started, String, std::sync::Arc<warrant_engine::Engine>), BenchError> {
    // The load phases ramp one agent from idle to thousands of requests a second, which
    // its baseline rightly calls a rate spike; guardrails would quarantine the load agent.
    // Their cost is measured in-process instead (`cargo bench -p warrant-bench`).
    let guard = warrant_server::config::GuardFile { enabled: Some(false), ..Default::default() };
    // One load agent on one address mints and decides far beyond any client's fair share.
    let off = || Some("off".to_owned());
    let limits = warrant_server::config::LimitsFile {
        token_rate_per_client: off(),
        token_rate_per_ip: off(),
        anonymous_rate_per_ip: off(),
        ..Default::default()
    };
    let settings = Settings::from_config(FileConfig {
        data: Some(data.to_owned()),
        listen: Some("127.0.0.1:0".into()),
        guard: Some(guard),
        limits: Some(limits),
        ..Default::default()
    })
    .map_err(|e| BenchError::Server(e.to_string()))?;
    let server = warrant_server::BoundServer::bind(&settings).await.map_err(|e| BenchError::Server(e.to_string()))?;
    let addr = server.local_addr().ok_or_else(|| BenchError::Server("the server has no address".into()))?;
    let admin = server
        .admin_token()
        .ok_or_else(|| BenchError::Server("the benchmark server holds no admin token".into()))?
        .to_owned();
    let engine = server.engine();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    Ok((Started { url: format!("http://{addr}"), stop, handle }, admin, engine))
}

#[derive(Debug, Deserialize)]
struct Ping {
    agent: String,
    action: String,
    n: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pong {
    ok: bool,
    agent: String,
    n: u64,
}

async fn ping(axum::Json(p): axum::Json<Ping>) -> axum::Json<Pong> {
    axum::Json(Pong { ok: !p.action.is_empty(), agent: p.agent, n: p.n })
}

/// Starts the baseline: a trivial axum server with `POST /ping` (a small JSON body in, a
/// small JSON body out) on 127.0.0.1:0.
pub async fn start_baseline() -> Result<Started, BenchError> {
    Started::serve(axum::Router::new().route("/ping", axum::routing::post(ping))).await
}

impl Started {
    /// Serves `router` on 127.0.0.1:0 in this process until stopped.
    pub async fn serve(router: axum::Router) -> Result<Started, BenchError> {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| BenchError::Server(e.to_string()))?;
        Started::serve_listener(listener, router).await
    }

    /// Serves `router` on `listener` in this process until stopped.
    pub async fn serve_listener(
        listener: tokio::net::TcpListener,
        router: axum::Router,
    ) -> Result<Started, BenchError> {
        let addr = listener.local_addr().map_err(|e| BenchError::Server(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| e.to_string())
        });
        Ok(Started { url: format!("http://{addr}"), stop, handle })
    }
}

/// An agent registered by the harness, with its private key.
#[derive(Debug, Clone)]
pub struct BenchAgent {
    /// Its id.
    pub id: AgentId,
    /// Its key.
    pub key: KeyPair,
}

/// The identities the scenarios use, registered through the API.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The human's id.
    pub human: String,
    /// A delegated agent: holds the root warrant of the human's task.
    pub assistant: BenchAgent,
    /// A delegated agent: receives delegations from the assistant.
    pub researcher: BenchAgent,
    /// An autonomous agent: mints its own root warrants with client credentials.
    pub reporter: BenchAgent,
    /// An autonomous agent calling MCP tools through the gateway.
    pub tool_user: BenchAgent,
    /// Where client assertions are addressed.
    pub token_endpoint: String,
    /// A PEP credential, for the AuthZEN scenario.
    pub pep: String,
}

/// Warrants for one point: a session, the root warrant it starts, a delegation of it.
#[derive(Debug, Clone)]
pub struct Warrants {
    /// The root warrant (assistant, delegated work for the human).
    pub root: String,
    /// The delegated warrant (researcher, `crm.read:customers/**`).
    pub delegated: String,
}

fn text(v: &Value, key: &str) -> Result<String, BenchError> {
    v.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| BenchError::Setup(format!("no `{key}` in {v}")))
}

fn now() -> warrant_core::UnixTime {
    warrant_server::server::SystemClock.now()
}

/// A random hex string (16 bytes) to keep this run's assertion ids apart from any other's.
fn run_id() -> Result<String, BenchError> {
    let bytes = warrant_engine::random::bytes::<16>().map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn register(
    client: &Client,
    owner: &str,
    name: &str,
    mode: &str,
    max_scope: &[&str],
) -> Result<BenchAgent, BenchError> {
    let key = crate::keyfile::generate().map_err(BenchError::Setup)?;
    let body = json!({
        "name": name, "owner": owner, "mode": mode, "max_scope": max_scope,
        "public_key": key.public_jwk(), "labels": {"bench": "true"},
    });
    let agent = client.post("/v1/agents", &body).await?;
    let id = AgentId::parse(&text(&agent, "id")?).map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(BenchAgent { id, key })
}

impl Fixture {
    /// Registers a human and three agents (two delegated, one autonomous).
    pub async fn create(client: &Client) -> Result<Fixture, BenchError> {
        let tag = run_id()?;
        let short = tag.get(..8).unwrap_or(&tag);
        let human = client
            .post(
                "/v1/humans",
                &json!({
                    "name": "Bench Human",
                    "email": format!("bench-{short}@example.com"),
                    "entitlements": ["crm.read:customers/**", "crm.notes.write:customers/**", "tickets.*", "reports.*", "mcp.*"],
                }),
            )
            .await?;
        let human = text(&human, "id")?;
        let assistant = register(client, &human, "bench-assistant", "delegated", &["crm.*", "tickets.*"]).await?;
        let researcher = register(client, &human, "bench-researcher", "delegated", &["crm.read:customers/**"]).await?;
        let reporter = register(client, &human, "bench-reporter", "autonomous", &["reports.*"]).await?;
        let tool_user = register(client, &human, "bench-tool-user", "autonomous", &["mcp.*"]).await?;
        let meta = client.get("/.well-known/oauth-authorization-server").await?;
        let token_endpoint = text(&meta, "token_endpoint")?;
        let pep = client.post("/v1/peps", &json!({"name": format!("bench-{short}")})).await?;
        let pep = text(&pep, "token")?;
        Ok(Fixture { human, assistant, researcher, reporter, tool_user, token_endpoint, pep })
    }

    /// Fresh warrants: a session for the human, the root warrant it starts (assistant),
    /// and a delegation to the researcher.
    pub async fn warrants(&self, client: &Client) -> Result<Warrants, BenchError> {
        let session = client.post(&format!("/v1/humans/{}/sessions", self.human), &json!({})).await?;
        let session = text(&session, "token")?;
        let tag = run_id()?;
        let actor = make_assertion(&self.assistant.key, &self.assistant.id, &self.token_endpoint, now(), &tag)?;
        let root = client
            .token(&[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", &session),
                ("subject_token_type", TOKEN_TYPE_ID_TOKEN),
                ("actor_token", &actor),
                ("actor_token_type", TOKEN_TYPE_JWT),
                ("task_purpose", "bench: answer the support queue"),
                ("ttl", "3600"),
            ])
            .await?;
        let root = text(&root, "access_token")?;
        let actor = make_assertion(&self.researcher.key, &self.researcher.id, &self.token_endpoint, now(), &tag)?;
        let delegated = client
            .token(&[
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", &root),
                ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
                ("actor_token", &actor),
                ("actor_token_type", TOKEN_TYPE_JWT),
                ("scope", "crm.read:customers/**"),
                ("ttl", "3600"),
            ])
            .await?;
        Ok(Warrants { root, delegated: text(&delegated, "access_token")? })
    }
}

impl Fixture {
    /// A warrant (an hour) for the tool user: `scope`, for the resource server
    /// `resource` (RFC 8707: it becomes the warrant's audience).
    pub async fn mcp_warrant(&self, client: &Client, resource: &str, scope: &str) -> Result<String, BenchError> {
        let assertion =
            make_assertion(&self.tool_user.key, &self.tool_user.id, &self.token_endpoint, now(), &run_id()?)?;
        let issued = client
            .token(&[
                ("grant_type", GRANT_CLIENT_CREDENTIALS),
                ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER),
                ("client_assertion", &assertion),
                ("task_purpose", "bench: tool calls through the gateway"),
                ("scope", scope),
                ("resource", resource),
                ("ttl", "3600"),
            ])
            .await?;
        text(&issued, "access_token")
    }
}

/// Makes token-endpoint form bodies, each with a fresh client assertion.
#[derive(Debug)]
pub struct FormMaker {
    agent: BenchAgent,
    audience: String,
    /// `client_assertion` or `actor_token`.
    field: &'static str,
    fixed: Vec<(&'static str, String)>,
    jti_prefix: String,
    counter: AtomicU64,
}

impl FormMaker {
    /// Client credentials for the autonomous agent.
    pub fn mint(fixture: &Fixture) -> Result<FormMaker, BenchError> {
        Ok(FormMaker {
            agent: fixture.reporter.clone(),
            audience: fixture.token_endpoint.clone(),
            field: "client_assertion",
            fixed: vec![
                ("grant_type", GRANT_CLIENT_CREDENTIALS.to_owned()),
                ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER.to_owned()),
                ("task_purpose", "bench: nightly report".to_owned()),
                ("scope", "reports.read".to_owned()),
                ("ttl", "300".to_owned()),
            ],
            jti_prefix: run_id()?,
            counter: AtomicU64::new(0),
        })
    }

    /// A delegation of `root` to the researcher, narrowed to one customer.
    pub fn exchange(fixture: &Fixture, root: &str) -> Result<FormMaker, BenchError> {
        Ok(FormMaker {
            agent: fixture.researcher.clone(),
            audience: fixture.token_endpoint.clone(),
            field: "actor_token",
            fixed: vec![
                ("grant_type", GRANT_TOKEN_EXCHANGE.to_owned()),
                ("subject_token", root.to_owned()),
                ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN.to_owned()),
                ("actor_token_type", TOKEN_TYPE_JWT.to_owned()),
                ("scope", "crm.read:customers/42".to_owned()),
                ("ttl", "120".to_owned()),
            ],
            jti_prefix: run_id()?,
            counter: AtomicU64::new(0),
        })
    }

    /// One form body with a fresh assertion (signed now).
    pub fn make(&self) -> Result<String, String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let jti = format!("{}-{n}", self.jti_prefix);
        let assertion =
            make_assertion(&self.agent.key, &self.agent.id, &self.audience, now(), &jti).map_err(|e| e.to_string())?;
        let mut fields: Vec<(&str, &str)> = self.fixed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fields.push((self.field, &assertion));
        serde_urlencoded::to_string(&fields).map_err(|e| e.to_string())
    }
}

/// Form bodies signed before a point starts, so the client's signing stays out of the
/// timed loop; when they run out (or grow too old) the rest are signed inline, counted.
#[derive(Debug)]
pub struct FormPool {
    maker: FormMaker,
    forms: Vec<String>,
    next: AtomicUsize,
    made: Instant,
    inline: AtomicU64,
}

impl FormPool {
    /// Signs `size` forms now.
    pub fn new(maker: FormMaker, size: usize) -> Result<FormPool, BenchError> {
        let forms = (0..size).map(|_| maker.make()).collect::<Result<Vec<_>, _>>().map_err(BenchError::Setup)?;
        Ok(FormPool { maker, forms, next: AtomicUsize::new(0), made: Instant::now(), inline: AtomicU64::new(0) })
    }

    pub(super) fn take(&self) -> Result<String, OpFailure> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.made.elapsed() < POOL_FRESH_FOR {
            if let Some(form) = self.forms.get(i) {
                return Ok(form.clone());
            }
        }
        self.inline.fetch_add(1, Ordering::Relaxed);
        self.maker.make().map_err(OpFailure::Answer)
    }

    /// Forms that had to be signed inside the timed loop.
    pub fn inline(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }

    /// Forms pre-signed.
    pub fn size(&self) -> usize {
        self.forms.len()
    }
}

/// Authorize request bodies: the delegated warrant reading one of many customers, with
/// resource attributes and caller telemetry, all allowed by the default policies.
pub fn authorize_bodies(warrant: &str) -> Result<Vec<Value>, BenchError> {
    Ok((0..BODY_VARIANTS)
        .map(|n| {
            json!({
                "token": warrant,
                "action": "crm.read",
                "resource": format!("customers/{}", 1000 + n),
                "resource_attrs": {"owner": "acme-support", "classification": "internal", "environment": "production"},
                "context": {"rows": 25 + n, "query": "open tickets for this customer", "estimated_cost": 120},
            })
        })
        .collect())
}

/// AuthZEN evaluation bodies asking what [`authorize_bodies`] asks, request for request:
/// the warrant as `subject.properties.token`, the resource path as `{type, id}`.
pub fn evaluation_bodies(warrant: &str) -> Result<Vec<Value>, BenchError> {
    let sub = warrant_token::jws::peek_unverified::<warrant_core::WarrantClaims>(warrant)
        .map(|(_, c)| c.sub)
        .map_err(|e| BenchError::Setup(format!("the bench warrant: {e}")))?;
    Ok((0..BODY_VARIANTS)
        .map(|n| {
            json!({
                "subject": {"type": "agent", "id": sub, "properties": {"token": warrant}},
                "action": {"name": "crm.read"},
                "resource": {"type": "customers", "id": format!("{}", 1000 + n),
                    "properties": {"owner": "acme-support", "classification": "internal", "environment": "production"}},
                "context": {"rows": 25 + n, "query": "open tickets for this customer", "estimated_cost": 120},
            })
        })
        .collect())
}

/// The operations the harness measures.
#[derive(Debug)]
pub enum Work {
    /// `POST /ping` on the axum baseline.
    Ping {
        /// Its URL.
        url: String,
    },
    /// `POST /v1/authorize`, one decision.
    Authorize {
        /// Its URLs: one per server (servers sharing a database), asked in turn.
        urls: Vec<String>,
        /// Pre-serialized bodies.
        bodies: Vec<String>,
    },
    /// `POST /v1/authorize/batch`.
    Batch {
        /// Its URL.
        url: String,
        /// Pre-serialized bodies of `size` requests each.
        bodies: Vec<String>,
        /// Requests per batch.
        size: u64,
    },
    /// `POST /oauth2/token`: client credentials, or a delegation by token exchange.
    Token {
        /// Its URL.
        url: String,
        /// The forms.
        pool: Arc<FormPool>,
    },
    /// An MCP `tools/call` (JSON-RPC over Streamable HTTP), answered with a result.
    Mcp {
        /// The MCP endpoint.
        url: String,
        /// The warrant, sent as a bearer token (to every target alike).
        bearer: String,
        /// Pre-serialized JSON-RPC requests.
        bodies: Vec<String>,
    },
    /// `POST /v1/is_authorized` of a cedar-agent (a Cedar PDP that audits nothing).
    CedarAgent {
        /// Its URL.
        url: String,
        /// Pre-serialized authorization requests.
        bodies: Vec<String>,
    },
    /// `POST /access/v1/evaluation` (AuthZEN), one decision, by a PEP.
    Authzen {
        /// Its URL.
        url: String,
        /// The PEP's credential.
        bearer: String,
        /// Pre-serialized evaluation requests.
        bodies: Vec<String>,
    },
    /// Delegate, authorize (allow), revoke, authorize again at once (must deny).
    Revocation {
        /// The server's base URL.
        base: String,
        /// The admin token (revocation is an admin call).
        admin: String,
        /// Delegation forms.
        pool: Arc<FormPool>,
    },
}

/// One kind of work with the shared client.
#[derive(Debug)]
pub struct Runner {
    /// The shared client.
    pub http: reqwest::Client,
    /// What to do.
    pub work: Work,
}

#[derive(Debug, Deserialize)]
struct DecisionOut {
    decision: String,
    #[serde(default)]
    code: String,
}

#[derive(Debug, Deserialize)]
struct BatchOut {
    decisions: Vec<DecisionOut>,
}

#[derive(Debug, Deserialize)]
struct Issued {
    access_token: String,
    warrant_id: String,
}

#[derive(Debug, Deserialize)]
struct Revoked {
    revoked_warrants: u64,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

async fn post<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    body: String,
    bearer: Option<&str>,
) -> Result<T, OpFailure> {
    let mut req = http.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| OpFailure::Transport(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| OpFailure::Transport(e.to_string()))?;
    if !status.is_success() {
        return Err(OpFailure::Status(status.as_u16(), String::from_utf8_lossy(&bytes).chars().take(200).collect()));
    }
    serde_json::from_slice(&bytes).map_err(|e| OpFailure::Answer(e.to_string()))
}

fn pick(bodies: &[String], worker: usize, seq: u64) -> Result<String, OpFailure> {
    let len = u64::try_from(bodies.len()).unwrap_or(1).max(1);
    let i = (u64::try_from(worker).unwrap_or(0).wrapping_mul(7919).wrapping_add(seq)) % len;
    bodies
        .get(usize::try_from(i).unwrap_or(0))
        .cloned()
        .ok_or_else(|| OpFailure::Answer("no request body prepared".into()))
}

/// The server a worker's request goes to: each worker goes round the servers in turn.
fn pick_url(urls: &[String], worker: usize, seq: u64) -> Result<&str, OpFailure> {
    let len = u64::try_from(urls.len()).unwrap_or(1).max(1);
    let i = (u64::try_from(worker).unwrap_or(0).wrapping_add(seq)) % len;
    urls.get(usize::try_from(i).unwrap_or(0)).map(String::as_str).ok_or_else(|| OpFailure::Answer("no server".into()))
}

fn allowed(d: &DecisionOut) -> Result<(), OpFailure> {
    if d.decision == "allow" {
        Ok(())
    } else {
        Err(OpFailure::Answer(format!("expected allow, got {} ({})", d.decision, d.code)))
    }
}

impl Runner {
    async fn authorize(&self, url: &str, warrant: &str) -> Result<DecisionOut, OpFailure> {
        let body = json!({
            "token": warrant, "action": "crm.read", "resource": "customers/42",
            "context": {"rows": 1, "query": "revocation check"},
        });
        post(&self.http, url, JSON, body.to_string(), None).await
    }

    async fn revocation_cycle(&self, base: &str, admin: &str, pool: &FormPool) -> Result<Done, OpFailure> {
        let issued: Issued = post(&self.http, &format!("{base}/oauth2/token"), FORM, pool.take()?, None).await?;
        let authorize_url = format!("{base}/v1/authorize");
        allowed(&self.authorize(&authorize_url, &issued.access_token).await?)?;
        let body = json!({"kind": "warrant", "id": issued.warrant_id, "reason": "bench: revocation-to-deny"});
        let sent = Instant::now();
        let revoked: Revoked =
            post(&self.http, &format!("{base}/v1/revocations"), JSON, body.to_string(), Some(admin)).await?;
        let acknowledged = Instant::now();
        if revoked.revoked_warrants == 0 {
            return Err(OpFailure::Answer("the revocation ended no warrant".into()));
        }
        let next = self.authorize(&authorize_url, &issued.access_token).await?;
        let answered = Instant::now();
        Ok(Done {
            units: 1,
            revocation: Some(RevocationSample {
                revoke: acknowledged - sent,
                to_deny: answered - sent,
                allowed: next.decision == "allow",
                next_code: next.code,
            }),
        })
    }
}

impl Op for Runner {
    async fn call(&self, worker: usize, seq: u64) -> Result<Done, OpFailure> {
        match &self.work {
            Work::Ping { url } => {
                let body = format!(r#"{{"agent":"agt_bench","action":"crm.read","n":{seq}}}"#);
                let pong: Pong = post(&self.http, url, JSON, body, None).await?;
                if !pong.ok || pong.n != seq {
                    return Err(OpFailure::Answer("the ping was not echoed".into()));
                }
                Ok(Done { units: 1, revocation: None })
            }
            Work::Authorize { urls, bodies } => {
                let d: DecisionOut =
                    post(&self.http, pick_url(urls, worker, seq)?, JSON, pick(bodies, worker, seq)?, None).await?;
                allowed(&d)?;
                Ok(Done { units: 1, revocation: None })
            }
            Work::Batch { url, bodies, size } => {
                let out: BatchOut = post(&self.http, url, JSON, pick(bodies, worker, seq)?, None).await?;
                if u64::try_from(out.decisions.len()).unwrap_or(0) != *size {
                    return Err(OpFailure::Answer(format!("{} decisions for {size} requests", out.decisions.len())));
                }
                out.decisions.iter().try_for_each(allowed)?;
                Ok(Done { units: *size, revocation: None })
            }
            Work::Token { url, pool } => {
                let issued: Issued = post(&self.http, url, FORM, pool.take()?, None).await?;
                if issued.access_token.is_empty() {
                    return Err(OpFailure::Answer("no access token".into()));
                }
                Ok(Done { units: 1, revocation: None })
            }
            Work::Revocation { base, admin, pool } => self.revocation_cycle(base, admin, pool).await,
            Work::Mcp { url, bearer, bodies } => {
                let resp = self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, JSON)
                    .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
                    .header("mcp-protocol-version", PROTOCOL_VERSION)
                    .bearer_auth(bearer)
                    .body(pick(bodies, worker, seq)?)
                    .send()
                    .await
                    .map_err(|e| OpFailure::Transport(e.to_string()))?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| OpFailure::Transport(e.to_string()))?;
                let text = String::from_utf8_lossy(&bytes);
                if !status.is_success() {
                    return Err(OpFailure::Status(status.as_u16(), text.chars().take(200).collect()));
                }
                // A JSON answer, or one SSE event holding it: either way it carries a result.
                if !text.contains("\"result\"") {
                    return Err(OpFailure::Answer(text.chars().take(200).collect()));
                }
                Ok(Done { units: 1, revocation: None })
            }
            Work::CedarAgent { url, bodies } => {
                let out: Value = post(&self.http, url, JSON, pick(bodies, worker, seq)?, None).await?;
                if out.get("decision").and_then(Value::as_str) != Some("Allow") {
                    return Err(OpFailure::Answer(format!("expected Allow, got {out}")));
                }
                Ok(Done { units: 1, revocation: None })
            }
            Work::Authzen { url, bearer, bodies } => {
                let out: warrant_core::authzen::EvaluationResponse =
                    post(&self.http, url, JSON, pick(bodies, worker, seq)?, Some(bearer)).await?;
                if !out.decision {
                    let why = out.context.map(|c| c.reasons.join("; ")).unwrap_or_default();
                    return Err(OpFailure::Answer(format!("expected a permit, got a deny: {why}")));
                }
                Ok(Done { units: 1, revocation: None })
            }
        }
    }
}
