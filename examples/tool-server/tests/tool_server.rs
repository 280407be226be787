//! The example tool server end to end, on real sockets: a real Warrant server (engine,
//! store, policies, audit) in-process, a PEP credential for the tool server, an autonomous
//! agent, warrants minted for the tool server's URL, and the example's router in front.
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use warrant_core::{AgentId, UnixTime};
use warrant_example_tool_server::{app, Customer, Refusal, LOOKUP_CUSTOMER};
use warrant_gateway::auth::Verifier;
use warrant_gateway::HttpPdp;
use warrant_server::{BoundServer, FileConfig, Settings};
use warrant_token::KeyPair;

const PEP_NAME: &str = "example-tool-server";

struct Setup {
    server: String,
    pep: String,
    admin: String,
    tools: String,
    http: reqwest::Client,
    agent: String,
    key: KeyPair,
    token_endpoint: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_config(FileConfig {
            data: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".into()),
            ..FileConfig::default()
        })
        .unwrap();
        let bound = BoundServer::bind(&settings).await.unwrap();
        let server = format!("http://{}", bound.local_addr().unwrap());
        let admin = bound.admin_token().unwrap().to_owned();
        tokio::spawn(bound.run(std::future::pending()));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut s = Setup {
            server,
            pep: String::new(),
            admin,
            tools: String::new(),
            http,
            agent: String::new(),
            key: KeyPair::from_seed(&[9; 32]),
            token_endpoint: String::new(),
            _dir: dir,
        };
        let meta = s.http.get(format!("{}/.well-known/oauth-authorization-server", s.server)).send().await.unwrap();
        let meta: Value = meta.json().await.unwrap();
        s.token_endpoint = meta["token_endpoint"].as_str().unwrap().to_owned();

        let pep = s.admin_post("/v1/peps", &json!({"name": PEP_NAME})).await;
        s.pep = pep["token"].as_str().unwrap().to_owned();
        let human = s
            .admin_post(
                "/v1/humans",
                &json!({"name": "Olivia", "email": "olivia@example.com", "entitlements": ["crm.*"]}),
            )
            .await;
        let agent = s
            .admin_post(
                "/v1/agents",
                &json!({"name": "crm-reader", "owner": human["id"], "mode": "autonomous",
                        "max_scope": ["crm.read:customers/*"], "public_key": s.key.public_jwk()}),
            )
            .await;
        s.agent = agent["id"].as_str().unwrap().to_owned();

        s.tools = s.serve_tools(&s.server.clone()).await;
        s
    }

    /// Serves the tool server on a free port, asking the PDP at `pdp` (with the PEP
    /// credential); its URL.
    async fn serve_tools(&self, pdp: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let verifier = Verifier::connect(self.http.clone(), &self.server).await.unwrap();
        let pdp = Arc::new(HttpPdp::new(self.http.clone(), pdp, self.pep.clone()));
        let router = app(url.clone(), verifier, pdp);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    async fn admin_post(&self, path: &str, body: &Value) -> Value {
        let r =
            self.http.post(format!("{}{path}", self.server)).bearer_auth(&self.admin).json(body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn admin_get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.server)).bearer_auth(&self.admin).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A warrant of the agent (client credentials) with `scope`, for `resource`: the
    /// token and its id.
    async fn warrant(&self, scope: &str, resource: &str) -> (String, String) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let jti = format!("jti-{}", now.as_nanos());
        let now = UnixTime(i64::try_from(now.as_secs()).unwrap());
        let agent = AgentId::parse(&self.agent).unwrap();
        let assertion =
            warrant_token::assertion::make_assertion(&self.key, &agent, &self.token_endpoint, now, &jti).unwrap();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
            ("task_purpose", "tool server test"),
            ("scope", scope),
            ("resource", resource),
        ];
        let r = self.http.post(&self.token_endpoint).form(&form).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        (body["access_token"].as_str().expect("a warrant").to_owned(), body["warrant_id"].as_str().unwrap().to_owned())
    }

    /// Calls `lookup_customer` for `customer`.
    async fn lookup(&self, token: Option<&str>, customer: &str) -> reqwest::Response {
        self.call(&self.tools, token, &json!({"customer": customer})).await
    }

    /// Calls `lookup_customer` of the tool server at `tools` with `body`.
    async fn call(&self, tools: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(format!("{tools}{LOOKUP_CUSTOMER}")).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn the_tool_runs_only_on_a_permit_for_a_warrant_minted_for_it() {
    let s = Setup::start().await;

    // A warrant for this server, within the agent's scope: the tool runs.
    let (wide, _) = s.warrant("crm.read:customers/*", &s.tools).await;
    let r = s.lookup(Some(&wide), "42").await;
    assert_eq!(r.status(), StatusCode::OK);
    let customer: Customer = r.json().await.unwrap();
    assert_eq!(customer.customer, "42");
    assert_eq!(customer.agent, s.agent);

    // A narrower warrant: customers/42 only. Customer 43 is the PDP's deny, with the id
    // of its audit record, which names this server's PEP credential (the COAZ path).
    let (narrow, _) = s.warrant("crm.read:customers/42", &s.tools).await;
    assert_eq!(s.lookup(Some(&narrow), "42").await.status(), StatusCode::OK);
    let r = s.lookup(Some(&narrow), "43").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let refusal: Refusal = r.json().await.unwrap();
    assert_eq!(refusal.error, "denied");
    let decision = refusal.decision.expect("the PDP's answer");
    assert_eq!(decision.code.as_deref(), Some("scope"), "{decision:?}");
    let decision_id = decision.decision_id.expect("a decision id");
    let record = s.admin_get(&format!("/v1/audit/{decision_id}")).await;
    assert_eq!(record["details"]["pep"], PEP_NAME, "{record}");

    // A warrant for another resource server is not for this one.
    let (elsewhere, _) = s.warrant("crm.read:customers/*", "https://other.example.com").await;
    let r = s.lookup(Some(&elsewhere), "42").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers().get("www-authenticate").expect("a challenge").to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(r.json::<Refusal>().await.unwrap().error, "invalid_token");

    // No warrant at all.
    let r = s.lookup(None, "42").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));

    // A revoked warrant: it still verifies (signature, audience, expiry), but the PDP
    // denies it on the next call.
    let (revoked, jti) = s.warrant("crm.read:customers/*", &s.tools).await;
    assert_eq!(s.lookup(Some(&revoked), "42").await.status(), StatusCode::OK);
    s.admin_post("/v1/revocations", &json!({"kind": "warrant", "id": jti, "reason": "test"})).await;
    let r = s.lookup(Some(&revoked), "42").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let refusal: Refusal = r.json().await.unwrap();
    assert_eq!(refusal.decision.and_then(|d| d.code).as_deref(), Some("revoked"));
    // The other warrants are untouched.
    assert_eq!(s.lookup(Some(&wide), "42").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_arguments_are_a_400_but_only_for_a_caller_with_a_warrant() {
    let s = Setup::start().await;
    let (w, _) = s.warrant("crm.read:customers/*", &s.tools).await;
    let r = s.call(&s.tools, Some(&w), &json!({"customer": 42})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let refusal: Refusal = r.json().await.unwrap();
    assert_eq!(refusal.error, "invalid_request");
    assert!(refusal.message.unwrap().contains("customer"));
    let r = s.call(&s.tools, None, &json!({"customer": 42})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn no_answer_from_the_pdp_is_no_permit() {
    let s = Setup::start().await;
    // A port nothing listens on any more: the PDP cannot be reached.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let tools = s.serve_tools(&nowhere).await;
    let (w, _) = s.warrant("crm.read:customers/*", &tools).await;
    let r = s.call(&tools, Some(&w), &json!({"customer": "42"})).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Refusal>().await.unwrap().error, "no_decision");
    // The same call to a tool server whose PDP is in reach is a permit.
    let tools = s.serve_tools(&s.server.clone()).await;
    let (w, _) = s.warrant("crm.read:customers/*", &tools).await;
    assert_eq!(s.call(&tools, Some(&w), &json!({"customer": "42"})).await.status(), StatusCode::OK);
}
