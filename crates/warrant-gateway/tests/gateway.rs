//! The gateway end to end, on real sockets: a real Warrant server (its engine, store,
//! policies and audit), a small MCP server written here as the upstream (it answers one
//! upstream in `application/json` and the other in `text/event-stream`, and records
//! every request it gets), and the gateway in front of it, called as an MCP client would.
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use warrant_core::{AgentId, UnixTime};
use warrant_gateway::{AuthorizePdp, Gateway, GatewayConfig, HttpPdp, Pdp, Upstream};
use warrant_server::{BoundServer, FileConfig, Settings};
use warrant_token::KeyPair;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Large transfers need the agent's owner.
const APPROVAL_POLICY: &str = r#"
@id("large-transfers-need-the-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    body: Value,
    authorization: bool,
    session: Option<String>,
    protocol: Option<String>,
}

#[derive(Clone, Default)]
struct UpstreamLog(Arc<Mutex<Vec<Seen>>>);

impl UpstreamLog {
    fn methods(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().filter_map(|s| s.body["method"].as_str().map(str::to_owned)).collect()
    }

    fn calls(&self) -> Vec<Value> {
        let seen = self.0.lock().unwrap();
        seen.iter().filter(|s| s.body["method"] == "tools/call").map(|s| s.body["params"].clone()).collect()
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

fn tools() -> Value {
    json!([
        {"name": "get_customer", "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}},
        {"name": "delete_customer", "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}},
        {"name": "transfer", "inputSchema": {
            "type": "object",
            "properties": {"from": {"type": "string"}, "amount": {"type": "integer"}, "currency": {"type": "string"}},
            "x-authzen-mapping": {"evaluation": {
                "subject": {"type": "identity", "id": "$token.sub"},
                "action": {"name": "$params.arguments.currency == 'USD' ? 'payments.domestic' : 'payments.international'"},
                "resource": {"type": "accounts", "id": "$params.arguments.from"},
                "context": {"amount": "$params.arguments.amount"}
            }}
        }},
        {"name": "broken", "inputSchema": {"type": "object", "x-authzen-mapping": {"nonsense": {}}}}
    ])
}

/// A small MCP server: `/json` answers in JSON, `/sse` in an event stream.
async fn upstream(
    State(log): State<UpstreamLog>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    log.0.lock().unwrap().push(Seen {
        body: body.clone(),
        authorization: headers.contains_key("authorization"),
        session: header("mcp-session-id"),
        protocol: header("mcp-protocol-version"),
    });
    let Some(id) = body.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
    let method = body["method"].as_str().unwrap_or_default();
    let result = match method {
        "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                              "serverInfo": {"name": "upstream", "version": "1"}}),
        "server/discover" => json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                                    "serverInfo": {"name": "upstream", "version": "1"}}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => json!({"content": [{"type": "text", "text": format!("called {}", body["params"]["name"])}]}),
        "ping" => json!({}),
        "resources/read" => json!({"contents": [{"uri": body["params"]["uri"], "text": "hello"}]}),
        "resources/subscribe" => json!({}),
        _ => {
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}});
            return Json(error).into_response();
        }
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result, "future_field": {"kept": true}});
    let mut response = if mode == "sse" {
        let text = format!("event: message\nid: 1\ndata: {answer}\n\n");
        ([("content-type", "text/event-stream")], text).into_response()
    } else {
        Json(answer).into_response()
    };
    if method == "initialize" {
        response.headers_mut().insert("mcp-session-id", "session-1".parse().unwrap());
    }
    response
}

/// The PDP the tests' gateway asks: the server's AuthZEN endpoint, with the admin token
/// as the credential.
fn pdp(http: reqwest::Client, server: &str, admin: &str) -> Arc<dyn Pdp> {
    Arc::new(HttpPdp::new(http, server, admin.to_owned()))
}

/// The same decisions through the server's `/v1/authorize` (`--pdp authorize`).
fn authorize_pdp(http: reqwest::Client, server: &str, _admin: &str) -> Arc<dyn Pdp> {
    Arc::new(AuthorizePdp::new(http, server))
}

struct Setup {
    server: String,
    admin: String,
    gateway: String,
    log: UpstreamLog,
    http: reqwest::Client,
    human: String,
    agent: String,
    key: KeyPair,
    issuer: String,
    _dir: tempfile::TempDir,
}

async fn serve(listener: TcpListener, router: Router) {
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(pdp).await
    }

    /// A setup whose gateway decides through the PDP `pdp` makes (given the client and
    /// the Warrant server's URL).
    async fn start_with(pdp: impl FnOnce(reqwest::Client, &str, &str) -> Arc<dyn Pdp>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let settings = Settings::from_config(FileConfig {
            data: Some(data.clone()),
            listen: Some("127.0.0.1:0".into()),
            ..FileConfig::default()
        })
        .unwrap();
        let bound = BoundServer::bind(&settings).await.unwrap();
        let server = format!("http://{}", bound.local_addr().unwrap());
        let admin = bound.admin_token().unwrap().to_owned();
        let issuer = bound.issuer().to_owned();
        tokio::spawn(bound.run(std::future::pending()));
        std::fs::write(data.join("policies/approval.cedar"), APPROVAL_POLICY).unwrap();

        let log = UpstreamLog::default();
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        serve(up, Router::new().route("/{mode}", post(upstream)).with_state(log.clone())).await;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = format!("http://{}", listener.local_addr().unwrap());
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let config = GatewayConfig {
            upstreams: vec![
                Upstream::new("crm", &format!("http://{up_addr}/json")).unwrap(),
                Upstream::new("crm-sse", &format!("http://{up_addr}/sse")).unwrap(),
            ],
            server: server.clone(),
            public_url: gateway.clone(),
        };
        let gw = Gateway::new(config, pdp(http.clone(), &server, &admin)).await.unwrap();
        serve(listener, gw.router()).await;

        let mut s = Setup {
            server,
            admin,
            gateway,
            log,
            http,
            human: String::new(),
            agent: String::new(),
            key: KeyPair::from_seed(&[7; 32]),
            issuer,
            _dir: dir,
        };
        s.admin_post("/v1/policies/reload", &json!({})).await;
        let human = s
            .admin_post(
                "/v1/humans",
                &json!({"name": "Alice", "email": "alice@example.com",
                                              "entitlements": ["mcp.*", "payments.*"]}),
            )
            .await;
        s.human = human["id"].as_str().unwrap().to_owned();
        let agent = s
            .admin_post(
                "/v1/agents",
                &json!({"name": "assistant", "owner": s.human, "mode": "delegated",
                        "max_scope": ["mcp.*", "payments.*"], "public_key": s.key.public_jwk()}),
            )
            .await;
        s.agent = agent["id"].as_str().unwrap().to_owned();
        s
    }

    async fn admin_post(&self, path: &str, body: &Value) -> Value {
        let r =
            self.http.post(format!("{}{path}", self.server)).bearer_auth(&self.admin).json(body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A delegated warrant of the agent for Alice, with `scope`, for `resource` (or the
    /// default audience).
    async fn warrant(&self, scope: &str, resource: Option<&str>) -> (String, String) {
        let session = self.admin_post(&format!("/v1/humans/{}/sessions", self.human), &json!({})).await;
        let id = AgentId::parse(&self.agent).unwrap();
        let now =
            UnixTime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64);
        let jti =
            format!("jti-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
        let assertion = warrant_token::assertion::make_assertion(&self.key, &id, &self.issuer, now, &jti).unwrap();
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", session["token"].as_str().unwrap()),
            ("subject_token_type", ID_TOKEN),
            ("actor_token", assertion.as_str()),
            ("actor_token_type", JWT),
            ("task_purpose", "gateway test"),
            ("scope", scope),
        ];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let r = self.http.post(format!("{}/oauth2/token", self.server)).form(&form).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        (body["access_token"].as_str().expect("a warrant").to_owned(), body["warrant_id"].as_str().unwrap().to_owned())
    }

    fn resource(&self, upstream: &str) -> String {
        format!("{}/mcp/{upstream}", self.gateway)
    }

    /// A warrant for upstream `upstream` with the scope the tests use.
    async fn standard(&self, upstream: &str) -> String {
        let scope =
            "mcp.initialize mcp.server.discover mcp.tools.list mcp.tools.call:mcp/*/tool/get_customer payments.*";
        self.warrant(scope, Some(&self.resource(upstream))).await.0
    }

    /// POSTs one message; the status, the headers and the JSON-RPC answer (read from an
    /// event stream when the answer is one).
    async fn post(
        &self,
        upstream: &str,
        token: Option<&str>,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req =
            self.http.post(self.resource(upstream)).header("accept", "application/json, text/event-stream").json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        let headers = r.headers().clone();
        let sse = headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let text = r.text().await.unwrap();
        let value = if sse {
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
            serde_json::from_str(data).unwrap()
        } else if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, value)
    }

    async fn call(&self, upstream: &str, token: &str, id: u64, method: &str, params: Value) -> Value {
        let (status, _, body) = self
            .post(upstream, Some(token), json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}), &[])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], id, "{body}");
        body
    }
}

fn tool_names(answer: &Value) -> Vec<&str> {
    answer["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn initialize_discover_and_ping_pass_session_headers_but_never_the_token() {
    let s = Setup::start().await;
    let w = s.standard("crm").await;
    let (status, headers, init) = s
        .post("crm", Some(&w), json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(init["result"]["serverInfo"]["name"], "upstream");
    assert_eq!(init["future_field"]["kept"], true, "fields the gateway does not know are kept");
    assert_eq!(headers.get("mcp-session-id").unwrap(), "session-1");
    let session = [("mcp-session-id", "session-1"), ("mcp-protocol-version", "2025-06-18")];
    let (status, _, _) =
        s.post("crm", Some(&w), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), &session).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // `ping` is not in the warrant's scope and passes all the same.
    let (_, _, pong) = s.post("crm", Some(&w), json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}), &session).await;
    assert_eq!(pong["result"], json!({}));
    // A stateless client of 2026-07-28 discovers instead, in either framing.
    let d = s.call("crm-sse", &s.standard("crm-sse").await, 3, "server/discover", json!({})).await;
    assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));

    let seen = s.log.all();
    assert_eq!(s.log.methods(), ["initialize", "notifications/initialized", "ping", "server/discover"]);
    assert!(seen.iter().all(|x| !x.authorization), "the client's token never reaches the upstream");
    assert_eq!(seen[1].session.as_deref(), Some("session-1"));
    assert_eq!(seen[2].protocol.as_deref(), Some("2025-06-18"));
    // GET and DELETE on the endpoint are not offered.
    let r = s.http.get(s.resource("crm")).bearer_auth(&w).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tools_list_shows_only_what_the_warrant_may_call_in_json_and_in_event_streams() {
    let s = Setup::start().await;
    for upstream in ["crm", "crm-sse"] {
        let w = s.standard(upstream).await;
        let list = s.call(upstream, &w, 1, "tools/list", json!({})).await;
        assert_eq!(tool_names(&list), ["get_customer", "transfer"], "{upstream}: {list}");
        assert!(list["result"]["tools"][1]["inputSchema"]["x-authzen-mapping"].is_object());
    }
    // A warrant that may list but call nothing sees none of the tools whose action is
    // known before the call; `transfer` computes its action from the arguments, so only
    // its call can be decided, and it stays listed.
    let (w, _) = s.warrant("mcp.tools.list", Some(&s.resource("crm"))).await;
    assert_eq!(tool_names(&s.call("crm", &w, 2, "tools/list", json!({})).await), ["transfer"]);
    // ... and one that may not even list is refused.
    let (w, _) = s.warrant("mcp.initialize", Some(&s.resource("crm"))).await;
    let answer = s.call("crm", &w, 3, "tools/list", json!({})).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
}

#[tokio::test]
async fn calls_are_decided_and_a_denied_call_never_reaches_the_upstream() {
    let s = Setup::start().await;
    let w = s.standard("crm").await;
    let ok = s.call("crm", &w, 1, "tools/call", json!({"name": "get_customer", "arguments": {"id": "42"}})).await;
    assert_eq!(ok["result"]["content"][0]["text"], "called \"get_customer\"", "{ok}");
    let denied =
        s.call("crm", &w, 2, "tools/call", json!({"name": "delete_customer", "arguments": {"id": "42"}})).await;
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    assert_eq!(denied["error"]["data"]["outcome"], "deny");
    assert!(denied["error"]["data"]["decision_id"].as_str().unwrap().starts_with("dec_"));
    let unknown = s.call("crm", &w, 3, "admin/wipe", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    let broken = s.call("crm", &w, 4, "tools/call", json!({"name": "broken", "arguments": {}})).await;
    assert_eq!(broken["error"]["code"], -32602, "{broken}");
    let names: Vec<Value> = s.log.calls().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [json!("get_customer")], "only the allowed call reached the upstream");
    assert!(!s.log.methods().contains(&"admin/wipe".to_owned()));

    // The decisions are in the audit log with the MCP call.
    let r = s.http.get(format!("{}/v1/audit?kind=decision", s.server)).bearer_auth(&s.admin).send().await.unwrap();
    let audit: Value = r.json().await.unwrap();
    let records = audit["records"].as_array().unwrap();
    let denied = records
        .iter()
        .find(|r| r["details"]["resource"] == "mcp/crm/tool/delete_customer")
        .expect("the denied call is audited");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(
        denied["details"]["mcp"],
        json!({"method": "tools/call", "target": "delete_customer", "upstream": "crm"})
    );
    assert_eq!(denied["agent"], s.agent.as_str(), "the agent chain");
    assert_eq!(denied["human"], s.human.as_str(), "and the human");
    assert!(records
        .iter()
        .any(|r| r["details"]["resource"] == "mcp/crm/tool/get_customer" && r["decision"] == "allow"));
}

#[tokio::test]
async fn resources_are_read_on_their_percent_encoded_uri_through_authzen() {
    resources_by_uri(Setup::start().await).await;
}

#[tokio::test]
async fn resources_are_read_on_their_percent_encoded_uri_through_v1_authorize() {
    resources_by_uri(Setup::start_with(authorize_pdp).await).await;
}

/// A warrant that may read one resource by its exact encoded URI and subscribe to any:
/// the read of that URI reaches the upstream, a read of another URI (or of the same URI
/// on another upstream) is denied and never does.
async fn resources_by_uri(s: Setup) {
    let scope = "mcp.resources.read:mcp/crm/resource/file%3A%2F%2F%2Fdocs%2Freadme.md \
                 mcp.resources.subscribe:mcp/crm/resource/**";
    let (w, _) = s.warrant(scope, Some(&s.resource("crm"))).await;
    let ok = s.call("crm", &w, 1, "resources/read", json!({"uri": "file:///docs/readme.md"})).await;
    assert_eq!(ok["result"]["contents"][0]["uri"], "file:///docs/readme.md", "{ok}");
    let sub = s.call("crm", &w, 2, "resources/subscribe", json!({"uri": "https://example.com/a b?x=1#y"})).await;
    assert_eq!(sub["result"], json!({}), "{sub}");
    for (id, uri) in [(3, "file:///docs/secret.md"), (4, "file:///docs/readme.md/x"), (5, "file:///docs/../readme.md")]
    {
        let denied = s.call("crm", &w, id, "resources/read", json!({"uri": uri})).await;
        assert_eq!(denied["error"]["code"], -32001, "{uri}: {denied}");
    }
    // `**` covers every URI, but a URI with a `.` or `..` path component has no canonical
    // resource path: the decision is a deny, never a normalised allow.
    let dots = s.call("crm", &w, 6, "resources/subscribe", json!({"uri": "file:///docs/../etc/passwd"})).await;
    assert_eq!(dots["error"]["code"], -32001, "{dots}");
    let reads: Vec<Value> = s
        .log
        .all()
        .iter()
        .filter(|x| x.body["method"] == "resources/read")
        .map(|x| x.body["params"]["uri"].clone())
        .collect();
    assert_eq!(reads, [json!("file:///docs/readme.md")], "only the allowed read reached the upstream");
    assert_eq!(s.log.methods(), ["resources/read", "resources/subscribe"]);

    // The audit log names the resource in its one canonical spelling.
    let r = s.http.get(format!("{}/v1/audit?kind=decision", s.server)).bearer_auth(&s.admin).send().await.unwrap();
    let audit: Value = r.json().await.unwrap();
    let records = audit["records"].as_array().unwrap();
    assert!(records
        .iter()
        .any(|r| r["details"]["resource"] == "mcp/crm/resource/file%3A%2F%2F%2Fdocs%2Freadme.md"
            && r["decision"] == "allow"));
    assert!(records
        .iter()
        .any(|r| r["details"]["resource"] == "mcp/crm/resource/file%3A%2F%2F%2Fdocs%2Fsecret.md"
            && r["decision"] == "deny"));
}

#[tokio::test]
async fn a_declared_mapping_is_decided_with_cel_and_a_pending_decision_is_approved_once() {
    declared_mapping_and_approval(Setup::start().await).await;
}

#[tokio::test]
async fn through_v1_authorize_a_declared_mapping_and_an_approval_decide_the_same() {
    declared_mapping_and_approval(Setup::start_with(authorize_pdp).await).await;
}

async fn declared_mapping_and_approval(s: Setup) {
    let w = s.standard("crm-sse").await;
    let small = json!({"name": "transfer", "arguments": {"from": "acc-1", "amount": 50, "currency": "USD"}});
    let ok = s.call("crm-sse", &w, 1, "tools/call", small).await;
    assert_eq!(ok["result"]["content"][0]["text"], "called \"transfer\"", "{ok}");

    // Above 1000 the owner must approve.
    let large = json!({"name": "transfer", "arguments": {"from": "acc-1", "amount": 5000, "currency": "EUR"}});
    let pending = s.call("crm-sse", &w, 2, "tools/call", large.clone()).await;
    let data = &pending["error"]["data"];
    assert_eq!(pending["error"]["code"], -32001, "{pending}");
    assert_eq!(data["outcome"], "pending", "{pending}");
    let approval = data["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(data["poll"], format!("{}/v1/approvals/{approval}", s.server));
    assert_eq!(s.log.calls().len(), 1, "the pending call did not reach the upstream");

    s.admin_post(&format!("/v1/approvals/{approval}/approve"), &json!({})).await;
    let mut retry = large.clone();
    retry["_meta"] = json!({"io.warrant/approval_id": approval, "progressToken": 7});
    let ok = s.call("crm-sse", &w, 3, "tools/call", retry.clone()).await;
    assert_eq!(ok["result"]["content"][0]["text"], "called \"transfer\"", "{ok}");
    let forwarded = s.log.calls().last().cloned().unwrap();
    assert_eq!(forwarded["_meta"], json!({"progressToken": 7}), "the approval is stripped, the rest kept");
    // Allowed once.
    let again = s.call("crm-sse", &w, 4, "tools/call", retry).await;
    assert_eq!(again["error"]["code"], -32001, "{again}");
    assert_eq!(s.log.calls().len(), 2);
}

#[tokio::test]
async fn a_revoked_warrant_is_denied_on_its_next_call() {
    let s = Setup::start().await;
    let scope = "mcp.tools.call:mcp/crm/tool/get_customer";
    let (w, jti) = s.warrant(scope, Some(&s.resource("crm"))).await;
    let args = json!({"name": "get_customer", "arguments": {"id": "1"}});
    assert!(s.call("crm", &w, 1, "tools/call", args.clone()).await["result"].is_object());
    s.admin_post("/v1/revocations", &json!({"kind": "warrant", "id": jti, "reason": "test"})).await;
    let denied = s.call("crm", &w, 2, "tools/call", args).await;
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    assert_eq!(s.log.calls().len(), 1);
}

#[tokio::test]
async fn warrants_for_another_resource_are_refused_with_the_challenge_and_metadata_is_served() {
    let s = Setup::start().await;
    let meta_url = format!("{}/.well-known/oauth-protected-resource/mcp/crm", s.gateway);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, headers, _) = s.post("crm", None, ping.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers.get("www-authenticate").unwrap().to_str().unwrap(),
        format!("Bearer resource_metadata=\"{meta_url}\"")
    );

    let (default_aud, _) = s.warrant("mcp.*", None).await;
    let other = s.standard("crm-sse").await;
    for token in [default_aud.as_str(), other.as_str(), "junk"] {
        let (status, headers, _) = s.post("crm", Some(token), ping.clone(), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert_eq!(challenge, format!("Bearer resource_metadata=\"{meta_url}\", error=\"invalid_token\""));
    }
    // A browser page of another origin is refused, even with a good warrant; the
    // gateway's own origin is not.
    let good = s.standard("crm").await;
    let (status, _, _) = s.post("crm", Some(&good), ping.clone(), &[("origin", "http://evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(s.log.all().is_empty(), "nothing reached the upstream");
    let (status, _, _) = s.post("crm", Some(&good), ping.clone(), &[("origin", &s.gateway)]).await;
    assert_eq!(status, StatusCode::OK);

    let meta: Value = s.http.get(&meta_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["resource"], s.resource("crm"));
    assert_eq!(meta["authorization_servers"], json!([s.issuer]));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
    let missing =
        s.http.get(format!("{}/.well-known/oauth-protected-resource/mcp/nope", s.gateway)).send().await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_pdp_that_cannot_be_reached_refuses_every_decided_call() {
    // A port that was bound and released: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let s =
        Setup::start_with(|http, _, _| Arc::new(HttpPdp::new(http, &format!("http://{closed}"), "pep".into()))).await;
    let w = s.standard("crm").await;
    for (id, method, params) in [
        (1, "tools/list", json!({})),
        (2, "tools/call", json!({"name": "get_customer", "arguments": {"id": "1"}})),
        (3, "initialize", json!({"protocolVersion": "2025-06-18"})),
    ] {
        let answer = s.call("crm", &w, id, method, params).await;
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
        assert_eq!(answer["error"]["message"], "Authorization service unavailable");
    }
    // Undecided messages still pass; the decided ones never reached the upstream (the
    // gateway's own catalogue read aside).
    assert_eq!(s.call("crm", &w, 4, "ping", json!({})).await["result"], json!({}));
    assert!(s.log.calls().is_empty());
    assert!(!s.log.methods().contains(&"initialize".to_owned()));
}

#[tokio::test]
async fn a_verified_warrant_is_remembered_until_it_expires_and_its_audience_is_checked_every_time() {
    use warrant_gateway::auth::{AuthError, Verifier};
    let s = Setup::start().await;
    let verifier = Verifier::connect(s.http.clone(), &s.server).await.unwrap();
    let (w, _) = s.warrant("mcp.tools.call:mcp/crm/tool/get_customer", Some(&s.resource("crm"))).await;
    let now = UnixTime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64);

    let first = verifier.verify(&w, &s.resource("crm"), now).await.unwrap();
    let again = verifier.verify(&w, &s.resource("crm"), now).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second call is served from the cache");
    assert_eq!(verifier.cached(), 1);
    assert_eq!(first.json["jti"], json!(first.claims.jti.as_str()));

    // Remembered or not, a warrant for one upstream is refused at another.
    let other = verifier.verify(&w, &s.resource("crm-sse"), now).await;
    assert!(matches!(other, Err(AuthError::Audience(_))), "{other:?}");
    // At its expiry the remembered warrant is checked again, and refused.
    let expired = verifier.verify(&w, &s.resource("crm"), first.claims.exp).await;
    assert!(matches!(expired, Err(AuthError::Invalid(_))), "{expired:?}");
    // A forged token is never remembered.
    let at = w.len() - 10;
    let swapped = if &w[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &w[..at], &w[at + 1..]);
    assert!(matches!(verifier.verify(&forged, &s.resource("crm"), now).await, Err(AuthError::Invalid(_))));
    assert_eq!(verifier.cached(), 1);
}
