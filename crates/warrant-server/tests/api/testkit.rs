//! The test kit: a real server on `127.0.0.1:0` with a fresh data directory, and helpers
//! that speak its API the way a client would.
//!
//! The suite runs on either store: SQLite (the default, `warrant.db` in the data
//! directory) or, with `WARRANT_TEST_STORE=postgres`, PostgreSQL, where every [`Server`]
//! gets a fresh database of its own on the server `WARRANT_TEST_POSTGRES` names (a URL
//! whose role may create databases), dropped with it. The few tests that are about
//! SQLite's file itself skip the PostgreSQL pass, saying so ([`skip_on_postgres`]).
//!
//! Every server runs for real (its socket, its background loops, its graceful shutdown),
//! but the helpers hand their requests to its router in-process (`tower`'s `oneshot`),
//! unless the test asked for the socket with [`Server::over_socket`]: the tests about
//! connections, streams and concurrency on the wire. Either way a request is the same
//! `reqwest` request and its answer the same [`Reply`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warrant_core::{AgentId, PublicJwk, UnixTime, WarrantClaims};
use warrant_server::{BoundServer, FileConfig, ServeError, Settings};
use warrant_token::jws::Header;
use warrant_token::KeyPair;

/// `subject_token_type` of a human session.
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// `subject_token_type` of a warrant.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The generic JWT token type.
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The RFC 7523 client assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A number no other call in this test binary gets.
pub fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// Whether this run is on PostgreSQL (`WARRANT_TEST_STORE=postgres`) rather than on
/// SQLite (`WARRANT_TEST_STORE` unset, empty or `sqlite`).
pub fn on_postgres() -> bool {
    match std::env::var("WARRANT_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("" | "sqlite") | Err(_) => false,
        Ok(other) => panic!("WARRANT_TEST_STORE must be `sqlite` or `postgres`, not `{other}`"),
    }
}

/// For a test about SQLite's file itself: on PostgreSQL, says that it is skipped and
/// why, and returns true (the test then returns at once); on SQLite, false.
pub fn skip_on_postgres(why: &str) -> bool {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {why}");
        return true;
    }
    false
}

/// A PostgreSQL database of one [`Server`]'s own on the test server, created empty (the
/// server migrates it) and dropped with the `Server`.
struct PgDatabase {
    /// `WARRANT_TEST_POSTGRES`: the test server, as a role that may create databases.
    admin: String,
    name: String,
    /// The database's URL, for the server's `database` setting.
    url: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin = match std::env::var("WARRANT_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "WARRANT_TEST_STORE=postgres runs the API suite on PostgreSQL, but WARRANT_TEST_POSTGRES is not set: \
                 set it to the URL of a PostgreSQL server whose role may CREATE DATABASE (scripts/test starts one; \
                 scripts/pg-test-cluster starts one by hand)"
            ),
        };
        let name = format!("api_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to WARRANT_TEST_POSTGRES: {e}"));
        let connection = tokio::spawn(connection);
        // Left over by an earlier run whose process had this id and was killed.
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        drop(client);
        let _ = connection.await;
        // The admin URL with this database in place of its own.
        let (base, query) = admin.split_once('?').map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = match query {
            Some(q) => format!("{server}/{name}?{q}"),
            None => format!("{server}/{name}"),
        };
        PgDatabase { admin, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop cannot await, and this may run inside the test's runtime: drop the
        // database on a thread of its own, with a runtime of its own. FORCE ends the
        // connections a server that was not stopped still holds. Errors are ignored.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// The current time, as the server's clock reads it.
pub fn now() -> UnixTime {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    UnixTime(i64::try_from(secs).unwrap())
}

/// Waits until the server's clock reads `t` or later. Wall-clock by necessity: the
/// server reads the system clock, whole seconds, so a lifetime of a second ends only when
/// the real second has passed; this returns as soon as it has (no fixed pause), and the
/// tests call it with deadlines a second or two away.
pub async fn until(t: UnixTime) {
    loop {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let secs = i64::try_from(since.as_secs()).unwrap();
        if secs >= t.0 {
            return;
        }
        let left = std::time::Duration::from_secs((t.0 - secs).unsigned_abs())
            .saturating_sub(std::time::Duration::from_nanos(u64::from(since.subsec_nanos())));
        tokio::time::sleep(left).await;
    }
}

/// A fresh Ed25519 key pair from the operating system's randomness.
pub fn new_key() -> KeyPair {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    KeyPair::from_seed(&seed)
}

/// The permissions of a space-separated scope, as a set.
pub fn scope_set(scope: &str) -> BTreeSet<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

/// Decodes base64url without padding.
pub fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text).unwrap()
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl Reply {
    /// Asserts `status` and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        &self.body
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        self.expect(StatusCode::OK)
    }

    /// Asserts an RFC 6749 §5.2 error: `status`, `error` = `code`, a description, and
    /// `Cache-Control: no-store`.
    #[track_caller]
    pub fn oauth_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_json(self);
        assert_eq!(self.body["error"], code, "unexpected error code; body: {}", self.text);
        let description = self.body["error_description"].as_str().expect("error_description is a string");
        assert!(!description.is_empty(), "empty error_description");
        assert_eq!(self.headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            assert!(self.headers.contains_key("www-authenticate"), "401 without WWW-Authenticate");
        }
    }

    /// Asserts an error outside OAuth: `status` and `{error: code, message}`.
    #[track_caller]
    pub fn api_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_json(self);
        assert_eq!(self.body["error"], code, "unexpected error code; body: {}", self.text);
        let message = self.body["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "empty message");
        // A 4xx, or 503 (shed: come back later); any other 5xx says nothing of its cause.
        assert!(
            self.status.is_client_error() || self.status == StatusCode::SERVICE_UNAVAILABLE,
            "an error outside OAuth must be a 4xx or a 503"
        );
    }
}

/// Asserts that the reply is a JSON object with a JSON content type.
#[track_caller]
pub fn assert_json(reply: &Reply) {
    let content_type = reply.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content type `{content_type}`; body: {}", reply.text);
    assert!(reply.body.is_object(), "not a JSON object: {}", reply.text);
}

/// A registered agent and its private key.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub key: KeyPair,
}

/// A verified warrant.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: Header,
    /// The claims as JSON, for checking the wire shape.
    pub claims: Value,
    /// The claims as the core types read them.
    pub typed: WarrantClaims,
}

/// What one server start returns: base URL, issuer, admin token, router, shutdown, task.
type Launched = (String, String, String, axum::Router, oneshot::Sender<()>, JoinHandle<Result<(), ServeError>>);

/// A running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The issuer URL warrants carry.
    pub issuer: String,
    /// The admin bearer token.
    pub admin: String,
    /// The data directory (on PostgreSQL too: the admin token, the KEK, the policies and
    /// the audit witness live there).
    pub data: PathBuf,
    pub http: reqwest::Client,
    /// The running server's router, which the helpers call in-process.
    router: axum::Router,
    /// Whether the helpers send their requests over the socket instead.
    socket: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    /// The configuration it was started with (reused by [`Server::restart`]).
    config: FileConfig,
    /// Its PostgreSQL database (`WARRANT_TEST_STORE=postgres`), reused by
    /// [`Server::restart`]; `None` on SQLite.
    database: Option<PgDatabase>,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Server {
    /// Starts a server with the default settings.
    pub async fn start() -> Server {
        Server::start_with(FileConfig::default()).await
    }

    /// Starts a server with `config` (its `data` and `listen` are set here, and on
    /// PostgreSQL its `database`, and its `issuer` unless `config` sets one).
    pub async fn start_with(config: FileConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: the server creates it, with its mode.
        let data = dir.path().join("data");
        let database = if on_postgres() { Some(PgDatabase::create().await) } else { None };
        let url = database.as_ref().map(|d| d.url.as_str());
        let (base, issuer, admin, router, shutdown, task) = Server::launch(&data, url, config.clone()).await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Server {
            base,
            issuer,
            admin,
            data,
            http,
            router,
            socket: false,
            shutdown: Some(shutdown),
            task: Some(task),
            config,
            database,
            _dir: dir,
        }
    }

    /// Sends every request of the helpers over the server's socket (HTTP on loopback)
    /// instead of in-process: for tests where the connection itself matters.
    pub fn over_socket(mut self) -> Server {
        self.socket = true;
        self
    }

    /// Binds a server on `data` (and on PostgreSQL, the database at `database`) with
    /// `config` on a fresh loopback port and runs it.
    async fn launch(data: &std::path::Path, database: Option<&str>, config: FileConfig) -> Launched {
        let config = FileConfig { data: Some(data.to_owned()), ..config };
        let server = match database {
            None => {
                let settings =
                    Settings::from_config(FileConfig { listen: Some("127.0.0.1:0".into()), ..config }).unwrap();
                BoundServer::bind(&settings).await.unwrap()
            }
            // PostgreSQL needs its issuer before the server binds, and the tests expect
            // the server's own address: a port found free, then bound by the server. Should
            // another process take the port in between, another one is tried.
            Some(url) => {
                let mut attempts = 0;
                loop {
                    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                    let settings = Settings::from_config(FileConfig {
                        listen: Some(format!("127.0.0.1:{port}")),
                        database: Some(url.to_owned()),
                        issuer: config.issuer.clone().or_else(|| Some(format!("http://127.0.0.1:{port}"))),
                        ..config.clone()
                    })
                    .unwrap();
                    match BoundServer::bind(&settings).await {
                        Err(ServeError::Bind { .. }) if attempts < 5 => attempts += 1,
                        bound => break bound.unwrap(),
                    }
                }
            }
        };
        let addr = server.local_addr().unwrap();
        let issuer = server.issuer().to_owned();
        let admin = server.admin_token().expect("the first server on a database holds the admin token").to_owned();
        let router = server.router();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        (format!("http://{addr}"), issuer, admin, router, tx, task)
    }

    /// Stops the server gracefully and starts a new one on the same data directory (a
    /// new port, the same issuer URL, so warrants issued before stay valid there).
    pub async fn restart(&mut self) {
        self.halt().await;
        let config = FileConfig { issuer: Some(self.issuer.clone()), ..self.config.clone() };
        let database = self.database.as_ref().map(|d| d.url.as_str());
        let (base, issuer, admin, router, shutdown, task) = Server::launch(&self.data, database, config).await;
        assert_eq!(issuer, self.issuer);
        assert_eq!(admin, self.admin, "the admin token survives a restart");
        self.base = base;
        self.router = router;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
    }

    /// Stops the server gracefully but keeps its data directory (and its lock released),
    /// so a test can open the directory itself.
    pub async fn halt(&mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// The configuration of another server on this one's store: `config` with this data
    /// directory, a fresh loopback port, and on PostgreSQL this database and issuer (for
    /// the tests that bind a server of their own next to, or after, this one).
    pub fn same_store(&self, config: FileConfig) -> FileConfig {
        FileConfig {
            data: Some(self.data.clone()),
            listen: Some("127.0.0.1:0".into()),
            database: self.database.as_ref().map(|d| d.url.clone()),
            issuer: if self.database.is_some() { Some(self.issuer.clone()) } else { config.issuer.clone() },
            ..config
        }
    }

    /// Shuts the server down gracefully and asserts it stopped without error.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and reads the whole answer: in-process to the server's router, or
    /// over its socket (after [`Server::over_socket`], or for a URL not of this server).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let request = request.build().unwrap();
        if self.socket || !request.url().as_str().starts_with(&format!("{}/", self.base)) {
            return self.send_socket(request).await;
        }
        let url = request.url();
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let body = request.body().map(|b| b.as_bytes().expect("a buffered request body").to_vec());
        let mut http_request = axum::http::Request::builder().method(request.method().clone()).uri(target);
        let headers = http_request.headers_mut().unwrap();
        headers.extend(request.headers().clone());
        // What a client's HTTP/1.1 connection adds to the request on the wire.
        let host = self.base.trim_start_matches("http://");
        headers.entry(reqwest::header::HOST).or_insert(host.parse().unwrap());
        if let Some(body) = &body {
            headers.insert(reqwest::header::CONTENT_LENGTH, body.len().into());
        }
        let mut http_request = http_request.body(axum::body::Body::from(body.unwrap_or_default())).unwrap();
        // The peer address the accept loop records for every connection (a loopback client).
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        http_request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        let response = tower::ServiceExt::oneshot(self.router.clone(), http_request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, text, body }
    }

    /// Sends a request over the server's socket and reads the whole answer.
    async fn send_socket(&self, request: reqwest::Request) -> Reply {
        let response = self.http.execute(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, text, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(&self.admin)).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).bearer_auth(&self.admin).json(body)).await
    }

    /// A POST without a body (the action endpoints).
    pub async fn admin_action(&self, path: &str) -> Reply {
        self.send(self.http.post(self.url(path)).bearer_auth(&self.admin)).await
    }

    pub async fn admin_delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path)).bearer_auth(&self.admin)).await
    }

    /// Asserts that the server still answers.
    pub async fn healthy(&self) {
        let reply = self.get("/healthz").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text, "ok");
    }

    /// Registers a human with `entitlements` and a unique email; returns the id.
    pub async fn human(&self, entitlements: &[&str]) -> String {
        let n = unique();
        let reply = self
            .admin_post(
                "/v1/humans",
                &json!({"name": format!("Human {n}"), "email": format!("human{n}@example.com"), "entitlements": entitlements}),
            )
            .await;
        let body = reply.expect(StatusCode::CREATED);
        assert_eq!(body["status"], "active");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Opens a session for `human`; returns its token.
    pub async fn session(&self, human: &str) -> String {
        let reply = self.admin_action(&format!("/v1/humans/{human}/sessions")).await;
        let body = reply.expect(StatusCode::CREATED);
        assert!(body["expires_in"].as_i64().unwrap() > 0);
        body["token"].as_str().unwrap().to_owned()
    }

    /// Opens an approver session for `human` (approvals, attestation); returns its token.
    pub async fn approver(&self, human: &str) -> String {
        let reply = self.admin_action(&format!("/v1/humans/{human}/approver-sessions")).await;
        let body = reply.expect(StatusCode::CREATED);
        assert!(body["expires_in"].as_i64().unwrap() > 0);
        body["token"].as_str().unwrap().to_owned()
    }

    /// The registration body for an agent with `key`.
    pub fn agent_body(owner: &str, mode: &str, max_scope: &[&str], key: &KeyPair) -> Value {
        json!({
            "name": format!("agent {}", unique()),
            "owner": owner,
            "mode": mode,
            "max_scope": max_scope,
            "public_key": key.public_jwk(),
        })
    }

    /// Registers an agent with a fresh key.
    pub async fn agent(&self, owner: &str, mode: &str, max_scope: &[&str]) -> Agent {
        let key = new_key();
        self.agent_from(Server::agent_body(owner, mode, max_scope, &key), key).await
    }

    /// Registers an agent from a full body whose `public_key` belongs to `key`.
    pub async fn agent_from(&self, body: Value, key: KeyPair) -> Agent {
        let reply = self.admin_post("/v1/agents", &body).await;
        let view = reply.expect(StatusCode::CREATED);
        assert_eq!(view["status"], "active");
        Agent { id: view["id"].as_str().unwrap().to_owned(), key }
    }

    /// A fresh, single-use client assertion of `agent` for the token endpoint.
    pub fn assertion(&self, agent: &Agent) -> String {
        let id = AgentId::parse(&agent.id).unwrap();
        let audience = format!("{}/oauth2/token", self.issuer);
        let jti = format!("jti-{}-{}", unique(), b64(new_key().kid()));
        warrant_token::assertion::make_assertion(&agent.key, &id, &audience, now(), &jti).unwrap()
    }

    /// Posts a form to the token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Reply {
        self.send(self.http.post(self.url("/oauth2/token")).form(form)).await
    }

    /// `client_credentials` with a fresh assertion, plus `extra` parameters.
    pub async fn client_credentials(&self, agent: &Agent, purpose: &str, extra: &[(&str, &str)]) -> Reply {
        let assertion = self.assertion(agent);
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("task_purpose", purpose),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    /// A token exchange with `actor`'s fresh assertion as the `actor_token`.
    pub async fn exchange(&self, subject: &str, subject_type: &str, actor: &Agent, extra: &[(&str, &str)]) -> Reply {
        let assertion = self.assertion(actor);
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
            ("actor_token", assertion.as_str()),
            ("actor_token_type", JWT),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    /// A delegated root warrant: `agent` acts for the human whose session this is.
    pub async fn delegated_root(&self, session: &str, agent: &Agent, extra: &[(&str, &str)]) -> Reply {
        let mut form = extra.to_vec();
        if !form.iter().any(|(name, _)| *name == "task_purpose") {
            form.push(("task_purpose", "help the human"));
        }
        self.exchange(session, ID_TOKEN, agent, &form).await
    }

    /// A delegation of `parent` (a warrant) to `agent`.
    pub async fn delegate(&self, parent: &str, agent: &Agent, extra: &[(&str, &str)]) -> Reply {
        self.exchange(parent, ACCESS_TOKEN, agent, extra).await
    }

    /// The JWKS.
    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json").await.ok().clone()
    }

    /// Verifies `token` as a warrant with the key the JWKS publishes under its `kid`.
    pub async fn decode(&self, token: &str) -> Decoded {
        let (header, _): (Header, Value) = warrant_token::jws::peek_unverified(token).unwrap();
        let kid = header.kid.clone().expect("a warrant names its key");
        let jwks = self.jwks().await;
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("kid `{kid}` is not in the JWKS {jwks}"));
        let jwk: PublicJwk = serde_json::from_value(jwk.clone()).unwrap();
        let key = warrant_token::keys::verifying_key(&jwk).unwrap();
        let (header, claims): (Header, Value) = warrant_token::jws::verify(token, &["at+jwt"], &key).unwrap();
        // The claims as the core types read them; expiry is not checked here, so that a
        // warrant of a one-second lifetime can still be inspected.
        let (_, typed): (Header, WarrantClaims) = warrant_token::jws::verify(token, &["at+jwt"], &key).unwrap();
        assert_eq!(typed.iss, self.issuer);
        Decoded { header, claims, typed }
    }

    /// The access token of a successful token response, verified.
    pub async fn warrant(&self, reply: &Reply) -> (String, Decoded) {
        let token = reply.ok()["access_token"].as_str().unwrap().to_owned();
        let decoded = self.decode(&token).await;
        (token, decoded)
    }
}

impl Server {
    /// Writes `request` as raw bytes on a fresh connection and reads the answer until the
    /// server closes it. Write errors are ignored: the server may answer (and close)
    /// before it has read everything.
    pub async fn raw(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Decisions, revocations, tasks and policies.
impl Server {
    /// `POST /v1/authorize` with a raw JSON body.
    pub async fn authorize_body(&self, body: &Value) -> Reply {
        self.send(self.http.post(self.url("/v1/authorize")).json(body)).await
    }

    /// Asks whether `token` may do `action` on `resource` with telemetry `context`
    /// (`Value::Null` for none). Asserts a well-formed 200 decision and returns it.
    pub async fn authorize(&self, token: &str, action: &str, resource: &str, context: Value) -> Value {
        let mut body = json!({"token": token, "action": action, "resource": resource});
        if !context.is_null() {
            body["context"] = context;
        }
        let reply = self.authorize_body(&body).await;
        assert_json(&reply);
        let decision = reply.ok().clone();
        assert_decision_shape(&decision);
        decision
    }

    /// `POST /v1/authorize/batch`.
    pub async fn authorize_batch(&self, requests: &[Value]) -> Reply {
        self.send(self.http.post(self.url("/v1/authorize/batch")).json(&json!({"requests": requests}))).await
    }

    /// `POST /v1/revocations`; asserts 200 and returns the answer.
    pub async fn revoke(&self, kind: &str, id: &str, reason: &str) -> Value {
        let reply = self.admin_post("/v1/revocations", &json!({"kind": kind, "id": id, "reason": reason})).await;
        let body = reply.ok().clone();
        assert!(body["revoked_warrants"].is_u64(), "{body}");
        assert!(body["revocation_id"].as_str().is_some_and(|id| id.starts_with("rev_")), "{body}");
        body
    }

    /// `POST /v1/tasks/{task}/complete` with `bearer` (the admin token or a warrant).
    pub async fn complete_task(&self, task: &str, bearer: &str) -> Reply {
        self.send(self.http.post(self.url(&format!("/v1/tasks/{task}/complete"))).bearer_auth(bearer)).await
    }

    /// `GET /v1/tasks/{task}`; asserts 200.
    pub async fn task(&self, task: &str) -> Value {
        self.admin_get(&format!("/v1/tasks/{task}")).await.ok().clone()
    }

    /// The policy directory, `<data>/policies`.
    pub fn policy_dir(&self) -> PathBuf {
        self.data.join("policies")
    }

    /// Writes `<data>/policies/<name>`.
    pub fn write_policy(&self, name: &str, text: &str) {
        std::fs::write(self.policy_dir().join(name), text).unwrap();
    }

    /// `POST /v1/policies/reload`.
    pub async fn reload_policies(&self) -> Reply {
        self.admin_action("/v1/policies/reload").await
    }

    /// The version of the policy set in force.
    pub async fn policy_version(&self) -> i64 {
        self.admin_get("/v1/policies").await.ok()["version"].as_i64().unwrap()
    }

    /// `GET /v1/audit/verify`; asserts 200 and returns the report.
    pub async fn verify_audit(&self) -> Value {
        self.admin_get("/v1/audit/verify").await.ok().clone()
    }

    /// A delegated root warrant for `agent` acting for the human of `session`.
    pub async fn root_warrant(&self, session: &str, agent: &Agent, purpose: &str) -> (String, Decoded) {
        self.warrant(&self.delegated_root(session, agent, &[("task_purpose", purpose)]).await).await
    }

    /// A delegation of `parent` to `agent`, with the ceilings' intersection as its scope.
    pub async fn sub_warrant(&self, parent: &str, agent: &Agent) -> (String, Decoded) {
        self.warrant(&self.delegate(parent, agent, &[]).await).await
    }

    /// A delegated chain: a human with `entitlements`, `depth` delegated agents with
    /// `max_scope`, the first holding the root warrant, each next one a delegation of the
    /// one before.
    pub async fn chain(&self, entitlements: &[&str], max_scope: &[&str], depth: usize, purpose: &str) -> Chain {
        let human = self.human(entitlements).await;
        let session = self.session(&human).await;
        let mut chain = Chain { human, session, agents: Vec::new(), warrants: Vec::new() };
        for i in 0..depth {
            let agent = self.agent(&chain.human, "delegated", max_scope).await;
            let warrant = if i == 0 {
                self.root_warrant(&chain.session, &agent, purpose).await
            } else {
                self.sub_warrant(&chain.warrants[i - 1].0, &agent).await
            };
            chain.agents.push(agent);
            chain.warrants.push(warrant);
        }
        chain
    }
}

/// A delegation chain built by [`Server::chain`].
pub struct Chain {
    /// The human the work is done for.
    pub human: String,
    /// Their session.
    pub session: String,
    /// The agents, root first.
    pub agents: Vec<Agent>,
    /// `warrants[i]` is held by `agents[i]`; `warrants[0]` is the task's root warrant.
    pub warrants: Vec<(String, Decoded)>,
}

impl Chain {
    /// The token held by `agents[i]`.
    pub fn token(&self, i: usize) -> &str {
        &self.warrants[i].0
    }

    /// The warrant id held by `agents[i]`.
    pub fn jti(&self, i: usize) -> String {
        self.warrants[i].1.typed.jti.to_string()
    }

    /// The task.
    pub fn task(&self) -> String {
        self.warrants[0].1.typed.task.id.to_string()
    }
}

/// Asserts the wire shape of a decision (`docs/wire.md`, `code` and `policy_version` included).
#[track_caller]
pub fn assert_decision_shape(d: &Value) {
    let decision = d["decision"].as_str().unwrap_or_else(|| panic!("no decision: {d}"));
    assert!(decision == "allow" || decision == "deny", "{d}");
    assert!(d["decision_id"].as_str().is_some_and(|id| id.starts_with("dec_")), "{d}");
    assert!(d["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{d}");
    assert!(d["policies"].is_array(), "{d}");
    assert!(d["code"].is_string(), "{d}");
}

/// Asserts an allow by the default permit, recorded in the audit log.
#[track_caller]
pub fn assert_allow(d: &Value) {
    assert_eq!(d["decision"], "allow", "expected allow: {d}");
    assert_eq!(d["code"], "allow", "{d}");
    let id = d["decision_id"].as_str().unwrap();
    assert!(id.strip_prefix("dec_").is_some_and(|n| n.parse::<u64>().is_ok()), "{d}");
    assert!(d["policy_version"].as_i64().is_some_and(|v| v > 0), "{d}");
}

/// Asserts a deny with reason `code`.
#[track_caller]
pub fn assert_deny(d: &Value, code: &str) {
    assert_eq!(d["decision"], "deny", "expected deny ({code}): {d}");
    assert_eq!(d["code"], code, "{d}");
}
