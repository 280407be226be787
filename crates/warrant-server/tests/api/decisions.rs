//! `POST /v1/authorize` and `/v1/authorize/batch` through the real server: allow within
//! scope and policy, deny outside scope, deny by a forbid reading telemetry, deny by
//! chain depth, invalid tokens are a `deny` (never an HTTP error), malformed bodies are.

use reqwest::StatusCode;
use serde_json::{json, Value};
use warrant_token::warrant::sign_warrant;

use crate::testkit::{assert_allow, assert_decision_shape, assert_deny, assert_json, new_key, now, until, Server};

const CRM: &[&str] = &["crm.read:customers/**", "tickets.*"];

#[tokio::test]
async fn allow_within_scope_and_policy_and_deny_outside_scope() {
    let s = Server::start().await;
    let c = s.chain(CRM, &["crm.*", "tickets.*"], 1, "answer ticket 4711").await;
    let version = s.policy_version().await;

    let d = s.authorize(c.token(0), "crm.read", "customers/42", Value::Null).await;
    assert_allow(&d);
    assert_eq!(d["policies"], json!(["permit-within-scope"]));
    assert_eq!(d["policy_version"], version);
    let d2 = s.authorize(c.token(0), "tickets.close", "t/4711", json!({"rows": 1})).await;
    assert_allow(&d2);
    assert_ne!(d["decision_id"], d2["decision_id"], "every decision has its own id");

    // The decision is the audit record it names.
    let record = s.admin_get(&format!("/v1/audit/{}", d["decision_id"].as_str().unwrap())).await;
    let record = record.ok();
    assert_eq!(record["kind"], "decision");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["warrant"], c.jti(0).as_str());
    assert_eq!(record["agent"], c.agents[0].id.as_str());
    assert_eq!(record["human"], c.human.as_str());
    assert_eq!(record["task"], c.task().as_str());
    assert_eq!(record["details"]["action"], "crm.read");
    assert_eq!(record["details"]["resource"], "customers/42");
    assert_eq!(record["details"]["policy_version"], version);

    // Outside the scope: another action, another resource, a wildcard-shaped request.
    for (action, resource) in [("crm.write", "customers/42"), ("crm.read", "orders/1"), ("billing.refund", "x")] {
        let d = s.authorize(c.token(0), action, resource, Value::Null).await;
        assert_deny(&d, "scope");
        assert_eq!(d["policies"], json!([]), "Cedar never ran: {d}");
        let reasons = d["reasons"].to_string();
        assert!(reasons.contains(action), "the reason names the request: {d}");
    }
    // A request that is not concrete is a deny too, not an HTTP error.
    assert_deny(&s.authorize(c.token(0), "crm.*", "customers/42", Value::Null).await, "invalid_request");
    assert_deny(&s.authorize(c.token(0), "crm.read", "customers/*", Value::Null).await, "invalid_request");

    // Denies are recorded as well.
    let denies = s.admin_get(&format!("/v1/audit?task={}&kind=decision&decision=deny", c.task())).await;
    assert_eq!(denies.ok()["records"].as_array().unwrap().len(), 5);
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn a_forbid_reading_telemetry_denies_over_the_cost_ceiling() {
    let s = Server::start().await;
    let c = s.chain(CRM, &["crm.*"], 1, "bulk lookups").await;
    let t = c.token(0);

    let over = s.authorize(t, "crm.read", "customers/42", json!({"estimated_cost": 10_001})).await;
    assert_deny(&over, "policy");
    assert_eq!(over["policies"], json!(["cost-ceiling"]));
    assert!(over["policy_version"].as_i64().unwrap() > 0, "{over}");
    assert!(over["reasons"].to_string().contains("cost-ceiling"), "{over}");

    let at = s.authorize(t, "crm.read", "customers/42", json!({"estimated_cost": 10_000})).await;
    assert_allow(&at);
    assert_eq!(at["policies"], json!(["permit-within-scope"]));

    // Telemetry the schema does not know is ignored; telemetry Cedar cannot take is a deny.
    assert_allow(&s.authorize(t, "crm.read", "customers/42", json!({"mood": "fine", "rows": 3})).await);
    assert_deny(&s.authorize(t, "crm.read", "customers/42", json!({"estimated_cost": 100.5})).await, "invalid_request");
    assert_deny(&s.authorize(t, "crm.read", "customers/42", json!("not an object")).await, "invalid_request");

    // The audit record keeps the telemetry that decided.
    let record = s.admin_get(&format!("/v1/audit/{}", over["decision_id"].as_str().unwrap())).await;
    assert_eq!(record.ok()["details"]["context"]["estimated_cost"], 10_001);
    assert_eq!(record.ok()["decision"], "deny");
}

#[tokio::test]
async fn money_moves_at_depth_two_but_not_deeper() {
    let s = Server::start().await;
    let c = s.chain(&["payments.transfer:accounts/**"], &["payments.*"], 3, "pay the supplier").await;
    assert_eq!(c.warrants[2].1.typed.chain().len(), 3);

    assert_allow(&s.authorize(c.token(0), "payments.transfer", "accounts/7", Value::Null).await);
    let depth2 = s.authorize(c.token(1), "payments.transfer", "accounts/7", Value::Null).await;
    assert_allow(&depth2);
    assert_eq!(depth2["policies"], json!(["permit-within-scope"]));

    let depth3 = s.authorize(c.token(2), "payments.transfer", "accounts/7", Value::Null).await;
    assert_deny(&depth3, "policy");
    assert_eq!(depth3["policies"], json!(["no-deep-money-movement"]));
}

#[tokio::test]
async fn invalid_tokens_are_a_deny_not_an_http_error() {
    let s = Server::start().await;
    let c = s.chain(CRM, &["crm.*"], 1, "p").await;
    let (token, decoded) = (c.token(0), &c.warrants[0].1);
    assert_allow(&s.authorize(token, "crm.read", "customers/1", Value::Null).await);

    let foreign = sign_warrant(&new_key(), &decoded.typed).unwrap();
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims = decoded.claims.clone();
    claims["scope"] = json!("crm.*");
    let tampered_payload = crate::testkit::b64(serde_json::to_vec(&claims).unwrap());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    let other_server = Server::start().await;
    let oc = other_server.chain(CRM, &["crm.*"], 1, "p").await;
    let session = c.session.clone();

    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("garbage", "not-a-token".into()),
        ("three dots", "a.b.c".into()),
        ("signed by a foreign key", foreign),
        ("tampered payload", tampered),
        ("a human session", session),
        ("another server's warrant", oc.token(0).to_owned()),
        ("long", "x".repeat(10_000)),
    ];
    for (what, bad) in &cases {
        let reply = s.authorize_body(&json!({"token": bad, "action": "crm.read", "resource": "customers/1"})).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text);
        assert_json(&reply);
        assert_decision_shape(&reply.body);
        assert_deny(&reply.body, "invalid_token");
        assert_eq!(reply.body["policies"], json!([]), "{what}");
    }

    // An expired warrant: a one-second lifetime, allowed while it lives, denied once the
    // clock has passed its expiry.
    let (short, decoded) = s.warrant(&s.delegated_root(&c.session, &c.agents[0], &[("ttl", "1")]).await).await;
    let d = s.authorize(&short, "crm.read", "customers/1", Value::Null).await;
    if now() < decoded.typed.exp {
        assert_allow(&d);
    }
    // Wall-clock by necessity (see `until`): expiry on a manual clock is the engine's tests' business.
    until(decoded.typed.exp.plus(1)).await;
    let d = s.authorize(&short, "crm.read", "customers/1", Value::Null).await;
    assert_deny(&d, "invalid_token");
    assert!(d["reasons"].to_string().contains("expired"), "{d}");
    // The original is unaffected; every one of these was audited.
    assert_allow(&s.authorize(token, "crm.read", "customers/1", Value::Null).await);
    assert_eq!(s.verify_audit().await["ok"], true);
    s.healthy().await;
}

#[tokio::test]
async fn malformed_bodies_are_json_errors() {
    let s = Server::start().await;
    let post = |body: &'static str, content_type: &'static str| {
        s.send(s.http.post(s.url("/v1/authorize")).header("content-type", content_type).body(body))
    };
    // Syntax errors: 400.
    for body in ["{", "{\"token\": ", "not json", "", "{\"token\": \"t\",}"] {
        post(body, "application/json").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Well-formed JSON of the wrong shape: 400 too.
    for body in [
        r#"{"token": "t", "action": "crm.read"}"#,
        r#"{"token": 1, "action": "crm.read", "resource": "x"}"#,
        r#"{"token": "t", "action": "crm.read", "resource": "x", "surprise": true}"#,
        r#"[]"#,
        r#"null"#,
    ] {
        post(body, "application/json").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    post(r#"{"token": "t", "action": "a", "resource": "x"}"#, "text/plain")
        .await
        .api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!(r#"{{"token": "{}", "action": "a", "resource": "x"}}"#, "x".repeat(200_000));
    let reply = s.send(s.http.post(s.url("/v1/authorize")).header("content-type", "application/json").body(huge)).await;
    reply.api_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    s.healthy().await;
}

#[tokio::test]
async fn the_batch_answers_in_order_and_refuses_more_than_a_hundred() {
    let s = Server::start().await;
    let c = s.chain(CRM, &["crm.*"], 1, "p").await;
    let t = c.token(0);
    let request = |action: &str, token: &str, cost: i64| json!({"token": token, "action": action, "resource": "customers/9", "context": {"estimated_cost": cost}});
    let reply = s
        .authorize_batch(&[
            request("crm.read", t, 1),
            request("crm.write", t, 1),
            request("crm.read", "garbage", 1),
            request("crm.read", t, 20_000),
            request("crm.read", t, 2),
        ])
        .await;
    let decisions = reply.ok()["decisions"].as_array().unwrap().clone();
    let codes: Vec<&str> = decisions.iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["allow", "scope", "invalid_token", "policy", "allow"]);
    let ids: Vec<u64> = decisions
        .iter()
        .map(|d| {
            assert_decision_shape(d);
            d["decision_id"].as_str().unwrap().strip_prefix("dec_").unwrap().parse().unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "recorded in order: {ids:?}");

    // Exactly the limit is fine; one more is refused whole, and nothing of it is decided.
    let hundred: Vec<Value> = (0..100).map(|i| request("crm.read", t, i)).collect();
    let reply = s.authorize_batch(&hundred).await;
    assert_eq!(reply.ok()["decisions"].as_array().unwrap().len(), 100);
    let before = s.admin_get("/v1/audit?kind=decision&limit=1000").await.ok()["records"].as_array().unwrap().len();
    let too_many: Vec<Value> = (0..101).map(|i| request("crm.read", t, i)).collect();
    s.authorize_batch(&too_many).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let after = s.admin_get("/v1/audit?kind=decision&limit=1000").await.ok()["records"].as_array().unwrap().len();
    assert_eq!(before, after, "a refused batch decides nothing");

    // An empty batch is an empty answer; a malformed member refuses the batch.
    assert_eq!(s.authorize_batch(&[]).await.ok()["decisions"], json!([]));
    s.authorize_batch(&[json!({"token": t})]).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

/// A resource path may carry canonical percent-encoding (how the MCP gateway names a
/// resource by its URI): `%` and two uppercase hex digits for every byte outside
/// `A-Z a-z 0-9 - . _ ~`, nothing else. Scopes name such paths exactly or by wildcard, and
/// any other spelling of the same URI is refused, so it can never be allowed.
#[tokio::test]
async fn canonical_percent_encoded_resources_are_decided_like_any_other() {
    let s = Server::start().await;
    let scope = [
        "mcp.resources.read:mcp/docs/resource/file%3A%2F%2F%2Freadme.md",
        "mcp.resources.subscribe:mcp/docs/resource/*",
    ];
    let c = s.chain(&scope, &["mcp.*"], 1, "encoded uris").await;
    let t = c.token(0);
    let readme = "mcp/docs/resource/file%3A%2F%2F%2Freadme.md";
    assert_allow(&s.authorize(t, "mcp.resources.read", readme, Value::Null).await);
    let any = "mcp/docs/resource/https%3A%2F%2Fexample.com%2Fa%20b%3Fq%3D%C3%BC";
    assert_allow(&s.authorize(t, "mcp.resources.subscribe", any, Value::Null).await);
    for resource in ["mcp/docs/resource/file%3A%2F%2F%2Fsecret.md", "mcp/other/resource/file%3A%2F%2F%2Freadme.md"] {
        assert_deny(&s.authorize(t, "mcp.resources.read", resource, Value::Null).await, "scope");
    }
    // Other spellings of `file:///readme.md`, and an encoded walk out of a directory.
    for resource in [
        "mcp/docs/resource/file%3a%2f%2f%2freadme.md",
        "mcp/docs/resource/file:%2F%2F%2Freadme.md",
        "mcp/docs/resource/%66ile%3A%2F%2F%2Freadme.md",
        "mcp/docs/resource/file%3A%2F%2F%2Freadme%2Emd",
        "mcp/docs/resource/file%3A%2F%2F%2Fdocs%2F..%2Freadme.md",
        "mcp/docs/resource/file%3A%2F%2F%2Freadme.md%",
    ] {
        for action in ["mcp.resources.read", "mcp.resources.subscribe"] {
            let d = s.authorize(t, action, resource, Value::Null).await;
            assert_deny(&d, "invalid_request");
            assert!(d["reasons"].to_string().contains("canonical"), "{resource:?}: {d}");
        }
    }
    // A scope must use the same spelling.
    let agent = s.agent(&c.human, "delegated", &["mcp.*"]).await;
    let reply =
        s.delegate(t, &agent, &[("scope", "mcp.resources.read:mcp/docs/resource/file%3a%2f%2f%2freadme.md")]).await;
    reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(reply.text.contains("uppercase hex"), "{}", reply.text);
    let narrowed = s
        .delegate(t, &agent, &[("scope", "mcp.resources.subscribe:mcp/docs/resource/file%3A%2F%2F%2Freadme.md")])
        .await;
    let narrowed = narrowed.ok()["access_token"].as_str().unwrap().to_owned();
    assert_allow(&s.authorize(&narrowed, "mcp.resources.subscribe", readme, Value::Null).await);
    assert_deny(&s.authorize(&narrowed, "mcp.resources.subscribe", any, Value::Null).await, "scope");
}

/// Resources have one canonical form and anything else is refused, at the decision and
/// at issuance: dot segments, non-canonical percent-encoding, backslashes, control and
/// invisible characters could otherwise walk out of a scope (`customers/42/../43` under
/// `customers/42/**`, `42%2F..%2Fadmin` under `customers/*`) or give one resource a
/// second spelling (`%34%32` for `42`).
#[tokio::test]
async fn non_canonical_resources_are_refused_at_decision_and_issuance() {
    let s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "canonical paths").await;
    let narrow_agent = s.agent(&c.human, "delegated", &["crm.*"]).await;
    let narrow = s.delegate(c.token(0), &narrow_agent, &[("scope", "crm.read:customers/42/**")]).await;
    let narrow = narrow.ok()["access_token"].as_str().unwrap().to_owned();
    let one_agent = s.agent(&c.human, "delegated", &["crm.*"]).await;
    let one = s.delegate(c.token(0), &one_agent, &[("scope", "crm.read:customers/*")]).await;
    let one = one.ok()["access_token"].as_str().unwrap().to_owned();
    assert_allow(&s.authorize(&narrow, "crm.read", "customers/42/notes", Value::Null).await);
    assert_allow(&s.authorize(&one, "crm.read", "customers/43", Value::Null).await);

    for (token, resource) in [
        (&narrow, "customers/42/../43"),
        (&narrow, "customers/42/./../../admin"),
        (&narrow, "customers/42/."),
        (&one, "customers/42%2F..%2F..%2Fadmin"),
        (&one, "customers/%34%32"),
        (&one, "customers\\42"),
        (&one, "customers/4\u{0}2"),
        (&one, "customers/\u{1b}[31m42"),
        (&one, "customers/\u{202e}24"),
        (&one, "customers/42\u{200b}"),
        (&one, "customers/\u{feff}42"),
        (&one, "customers/ 42"),
    ] {
        let d = s.authorize(token, "crm.read", resource, Value::Null).await;
        assert_deny(&d, "invalid_request");
        let reasons = d["reasons"].to_string();
        assert!(reasons.contains("canonical") || reasons.contains("concrete"), "{resource:?}: {d}");
        assert!(!reasons.contains('\u{1b}') && !reasons.contains('\u{0}'), "control characters echoed: {d}");
    }

    // Issuance refuses the same in a requested scope, in a max scope and in entitlements.
    for scope in
        ["crm.read:customers/42/../43", "crm.read:customers/\u{0}", "crm.read:customers/%2f", "crm.read:a/\u{202e}"]
    {
        let reply = s.delegate(c.token(0), &narrow_agent, &[("scope", scope)]).await;
        reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
        assert!(reply.text.contains("canonical"), "{scope:?}: {}", reply.text);
    }
    let bad_agent =
        s.admin_post("/v1/agents", &Server::agent_body(&c.human, "delegated", &["crm.read:x/../y"], &new_key())).await;
    bad_agent.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let bad_human = s
        .admin_post(
            "/v1/humans",
            &json!({"name": "Mallory", "email": "mallory@example.com", "entitlements": ["crm.read:a/\u{0}"]}),
        )
        .await;
    bad_human.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}
