//! Bad input: every malformed, mistyped, oversized or hostile request gets a clear 4xx in
//! the endpoint's error format, and the server keeps serving afterwards.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{
    b64, new_key, now, unb64, until, Reply, Server, ACCESS_TOKEN, ID_TOKEN, JWT, JWT_BEARER, TOKEN_EXCHANGE,
};

/// 70 KiB: more than the default 64 KiB body limit.
const OVERSIZED: usize = 70 * 1024;

impl Server {
    /// POSTs `body` with `content_type` (none when `None`) and the admin token.
    async fn admin_raw_post(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut request = self.http.post(self.url(path)).bearer_auth(&self.admin).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    /// POSTs `body` to the token endpoint with `content_type`.
    async fn token_raw(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut request = self.http.post(self.url("/oauth2/token")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }
}

/// Asserts a 4xx `{error, message}` body, whatever the exact status.
#[track_caller]
fn client_error(reply: &Reply) {
    assert!(reply.status.is_client_error(), "expected a 4xx: {} {}", reply.status, reply.text);
    reply.api_error(reply.status, reply.body["error"].as_str().unwrap_or("<missing>"));
}

#[tokio::test]
async fn bad_json_bodies() {
    let s = Server::start().await;
    let json_type = Some("application/json");

    // Malformed JSON.
    for body in [r#"{"name": "#, "{", "not json", r#"{"name": "a", "email": "b@c",}"#, ""] {
        s.admin_raw_post("/v1/humans", json_type, body).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Well-formed JSON of the wrong shape or types.
    for body in [
        json!({"name": 1, "email": "a@example.com"}),
        json!({"name": "A", "email": ["a@example.com"]}),
        json!({"name": "A", "email": "a@example.com", "entitlements": "crm.read"}),
        json!({"name": "A"}),
        json!({"name": "A", "email": "a@example.com", "admin": true}),
        json!([1, 2, 3]),
        json!(null),
        json!("a string"),
    ] {
        s.admin_post("/v1/humans", &body).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Missing or wrong content type.
    let valid = r#"{"name": "A", "email": "a@example.com"}"#;
    s.admin_raw_post("/v1/humans", None, valid)
        .await
        .api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
        s.admin_raw_post("/v1/humans", Some(content_type), valid)
            .await
            .api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    // Deep nesting, invalid UTF-8, a NUL byte.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    client_error(&s.admin_raw_post("/v1/humans", json_type, deep).await);
    client_error(
        &s.admin_raw_post("/v1/humans", json_type, b"{\"name\": \"\xff\xfe\", \"email\": \"a@b\"}".to_vec()).await,
    );
    client_error(&s.admin_raw_post("/v1/humans", json_type, "{\"name\": \"a\u{0}\", \"email\": \"a@b\"}").await);
    // The same on the agent endpoint.
    s.admin_raw_post("/v1/agents", json_type, "{").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_raw_post("/v1/agents", None, "{}")
        .await
        .api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    s.admin_post("/v1/agents", &json!({})).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");

    // Nothing was registered, and the server still serves.
    assert!(s.admin_get("/v1/humans").await.ok()["humans"].as_array().unwrap().is_empty());
    s.healthy().await;
}

/// A missing or mistyped field is 400 `{error, message}` on every JSON endpoint, as the
/// wire contract says (not axum's default 422), and the message names the field.
#[tokio::test]
async fn missing_or_mistyped_json_fields_are_400_everywhere() {
    let s = Server::start().await;
    let missing = [
        ("/v1/findings/fnd_any/accept", json!({"for_secs": 3600}), "justification"),
        ("/v1/humans", json!({"name": "A"}), "email"),
        ("/v1/agents", json!({"name": "a"}), "owner"),
        ("/v1/revocations", json!({"kind": "warrant", "id": "wrt_x"}), "reason"),
        ("/v1/agents/agt_any/key", json!({}), "public_key"),
        ("/v1/authorize", json!({"token": "t", "action": "crm.read"}), "resource"),
        ("/v1/authorize/batch", json!({}), "requests"),
    ];
    for (path, body, field) in missing {
        let reply = s.admin_post(path, &body).await;
        reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(reply.body["message"].as_str().unwrap().contains(field), "{path}: {}", reply.text);
    }
    let mistyped = s.admin_post("/v1/findings/fnd_any/accept", &json!({"justification": 7, "for_secs": 60})).await;
    mistyped.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let unknown = s.admin_post("/v1/revocations", &json!({"kind": "planet", "id": "x", "reason": "r"})).await;
    unknown.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn oversized_bodies() {
    let s = Server::start().await;
    let big_name = "a".repeat(OVERSIZED);
    let body = serde_json::to_vec(&json!({"name": big_name, "email": "big@example.com"})).unwrap();
    s.admin_raw_post("/v1/humans", Some("application/json"), body)
        .await
        .api_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    s.healthy().await;

    let form = format!("grant_type=client_credentials&task_purpose={}", "a".repeat(OVERSIZED));
    let reply = s.token_raw(Some("application/x-www-form-urlencoded"), form).await;
    assert!(
        reply.status == StatusCode::PAYLOAD_TOO_LARGE || reply.status == StatusCode::BAD_REQUEST,
        "oversized token request: {} {}",
        reply.status,
        reply.text
    );
    crate::testkit::assert_json(&reply);
    assert!(reply.body["error"].is_string(), "{}", reply.text);
    s.healthy().await;

    // Without a Content-Length: a chunked body that grows past the limit.
    let mut request = format!(
        "POST /v1/humans HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        s.base.trim_start_matches("http://"),
        s.admin
    )
    .into_bytes();
    let filler = "a".repeat(8 * 1024);
    let mut chunks = vec![r#"{"email": "c@example.com", "name": ""#];
    chunks.extend(std::iter::repeat_n(filler.as_str(), 10));
    chunks.push(r#""}"#);
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = s.raw(&request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "chunked oversized body: {answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    s.healthy().await;
    assert!(s.admin_get("/v1/humans").await.ok()["humans"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_token_requests() {
    let s = Server::start().await;
    let form_type = Some("application/x-www-form-urlencoded");

    // Not a form.
    s.token_raw(Some("application/json"), r#"{"grant_type": "client_credentials"}"#)
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.token_raw(None, "grant_type=client_credentials").await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.token_raw(Some("text/plain"), "grant_type=client_credentials")
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Repeated parameters.
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=a&scope=b",
        "grant_type=client_credentials&client_assertion=a&client_assertion=a",
    ] {
        s.token_raw(form_type, body).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Grant types.
    s.token(&[("grant_type", "password"), ("username", "u"), ("password", "p")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    s.token(&[("grant_type", "authorization_code")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    s.token(&[("grant_type", &"x".repeat(10_000))])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    s.token(&[("scope", "crm.read")]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.token(&[("grant_type", "")]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.token_raw(form_type, "").await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Invalid UTF-8 and stray bytes in the form.
    let reply = s.token_raw(form_type, b"grant_type=\xff\xfe&%zz=%".to_vec()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply.body["error"].is_string(), "{}", reply.text);

    // Client credentials without a usable client authentication.
    let owner = s.human(&["crm.*"]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    s.token(&[("grant_type", "client_credentials"), ("task_purpose", "p")])
        .await
        .oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let assertion = s.assertion(&agent);
    let cc = |assertion_type: &'static str, assertion: String| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", assertion_type.to_owned()),
            ("client_assertion", assertion),
            ("task_purpose", "p".to_owned()),
        ]
    };
    let form = cc("urn:ietf:params:oauth:client-assertion-type:saml2-bearer", assertion.clone());
    s.send(s.http.post(s.url("/oauth2/token")).form(&form))
        .await
        .oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    for garbage in ["", "garbage", "a.b.c", "!!.!!.!!", &"x".repeat(20_000)] {
        let form = cc(JWT_BEARER, garbage.to_owned());
        s.send(s.http.post(s.url("/oauth2/token")).form(&form))
            .await
            .oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // Bad extension parameters are refused before the assertion is spent.
    for (name, value, code) in [
        ("ttl", "abc", "invalid_request"),
        ("ttl", "0", "invalid_request"),
        ("ttl", "-5", "invalid_request"),
        ("ttl", "1e3", "invalid_request"),
        ("ttl", "99999999999999999999999", "invalid_request"),
        ("scope", "crm read!!", "invalid_scope"),
        ("scope", "crm.read:a/**/b", "invalid_scope"),
        ("task_purpose", "", "invalid_request"),
        ("task_purpose", "line\nbreak", "invalid_request"),
    ] {
        let mut form = cc(JWT_BEARER, assertion.clone());
        form.retain(|(n, _)| *n != name);
        form.push((name, value.to_owned()));
        let reply = s.send(s.http.post(s.url("/oauth2/token")).form(&form)).await;
        reply.oauth_error(StatusCode::BAD_REQUEST, code);
    }
    let mut form = cc(JWT_BEARER, assertion.clone());
    form.retain(|(n, _)| *n != "task_purpose");
    form.push(("task_purpose", "x".repeat(501)));
    s.send(s.http.post(s.url("/oauth2/token")).form(&form))
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    form.retain(|(n, _)| *n != "task_purpose");
    s.send(s.http.post(s.url("/oauth2/token")).form(&form))
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // ... so the assertion is still good.
    s.send(s.http.post(s.url("/oauth2/token")).form(&cc(JWT_BEARER, assertion))).await.ok();
    s.healthy().await;
}

/// A compact JWS with `header`, the payload of `token`, and `signature` bytes.
fn with_header(header: &Value, token: &str, signature: &[u8]) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!("{}.{payload}.{}", b64(serde_json::to_vec(header).unwrap()), b64(signature))
}

#[tokio::test]
async fn bad_subject_and_actor_tokens() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;
    let (root, decoded) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;
    let kid = decoded.header.kid.clone().unwrap();

    // Missing or unsupported exchange parameters.
    let actor = s.assertion(&b);
    let exchange = |pairs: &[(&'static str, &str)]| {
        let mut form: Vec<(&'static str, String)> = vec![("grant_type", TOKEN_EXCHANGE.to_owned())];
        form.extend(pairs.iter().map(|(n, v)| (*n, (*v).to_owned())));
        s.send(s.http.post(s.url("/oauth2/token")).form(&form))
    };
    exchange(&[("subject_token_type", ACCESS_TOKEN), ("actor_token", &actor)])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    exchange(&[("subject_token", &root), ("actor_token", &actor)])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    exchange(&[("subject_token", &root), ("subject_token_type", ACCESS_TOKEN)])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    exchange(&[
        ("subject_token", &root),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2"),
        ("actor_token", &actor),
    ])
    .await
    .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    exchange(&[
        ("subject_token", &root),
        ("subject_token_type", ACCESS_TOKEN),
        ("actor_token", &actor),
        ("actor_token_type", ACCESS_TOKEN),
    ])
    .await
    .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // A session exchange needs a purpose.
    exchange(&[("subject_token", &session), ("subject_token_type", ID_TOKEN), ("actor_token", &actor)])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // Garbage subject tokens, under every subject token type.
    let long = format!("{}.{}.{}", "a".repeat(10_000), "b".repeat(10_000), "c");
    for garbage in ["garbage", "a.b.c", "!!!.!!!.!!!", "...", "e30.e30.", long.as_str()] {
        for kind in [ACCESS_TOKEN, ID_TOKEN, JWT] {
            let reply = s.exchange(garbage, kind, &b, &[("task_purpose", "p")]).await;
            reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }

    // `alg: none`: the warrant's own payload, no signature.
    for typ in ["at+jwt", "JWT"] {
        let none = with_header(&json!({"alg": "none", "typ": typ}), &root, b"");
        for kind in [ACCESS_TOKEN, JWT] {
            s.delegate_as(&none, kind, &b).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    let none_session = with_header(&json!({"alg": "none", "typ": "session+jwt"}), &session, b"");
    s.delegated_root(&none_session, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // HS256 with an HMAC-looking signature (with and without the issuer's kid), and
    // other algorithms.
    let mut mac = [0u8; 32];
    getrandom::getrandom(&mut mac).unwrap();
    for header in [
        json!({"alg": "HS256", "typ": "at+jwt"}),
        json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "eddsa", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
    ] {
        let forged = with_header(&header, &root, &mac);
        for kind in [ACCESS_TOKEN, JWT] {
            s.delegate_as(&forged, kind, &b).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    // The warrant's own signature under a header that changed (typ dropped, kid removed).
    let signature = unb64(root.rsplit('.').next().unwrap());
    for header in [json!({"alg": "EdDSA", "kid": kid}), json!({"alg": "EdDSA", "typ": "at+jwt"})] {
        let changed = with_header(&header, &root, &signature);
        s.delegate_as(&changed, ACCESS_TOKEN, &b).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }

    // Garbage actor tokens.
    for garbage in ["garbage", "a.b.c", "e30.e30.e30"] {
        let form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", root.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", garbage),
        ];
        s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // An actor token signed by a key that is not the agent's.
    let id = warrant_core::AgentId::parse(&b.id).unwrap();
    let audience = format!("{}/oauth2/token", s.issuer);
    let foreign = warrant_token::assertion::make_assertion(&new_key(), &id, &audience, now(), "foreign").unwrap();
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", root.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
        ("actor_token", foreign.as_str()),
    ];
    s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // The genuine warrant still works.
    s.delegate(&root, &b, &[]).await.ok();
    s.healthy().await;
}

impl Server {
    /// A delegation of `subject` presented as `kind`.
    async fn delegate_as(&self, subject: &str, kind: &str, agent: &crate::testkit::Agent) -> Reply {
        self.exchange(subject, kind, agent, &[]).await
    }
}

#[tokio::test]
async fn an_expired_warrant_is_refused_as_a_subject() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;
    let reply = s.delegated_root(&session, &a, &[("ttl", "1")]).await;
    let (token, w) = s.warrant(&reply).await;
    assert_eq!(w.typed.exp.0 - w.typed.iat.0, 1);
    // Wall-clock by necessity (see `until`): expiry on a manual clock is the engine's tests' business.
    until(w.typed.exp.plus(1)).await;
    s.delegate(&token, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.exchange(&token, JWT, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.healthy().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let s = Server::start().await;
    for path in
        ["/nope", "/v1", "/v1/humans/x/y", "/v2/agents", "/.well-known/openid-configuration", "/oauth2/authorize"]
    {
        s.get(path).await.api_error(StatusCode::NOT_FOUND, "not_found");
        let reply = s.send(s.http.post(s.url(path)).bearer_auth(&s.admin).json(&json!({}))).await;
        reply.api_error(StatusCode::NOT_FOUND, "not_found");
    }
    let wrong = [
        (reqwest::Method::GET, "/oauth2/token"),
        (reqwest::Method::PUT, "/oauth2/token"),
        (reqwest::Method::DELETE, "/v1/humans"),
        (reqwest::Method::PATCH, "/v1/agents"),
        (reqwest::Method::POST, "/.well-known/jwks.json"),
        (reqwest::Method::PUT, "/healthz"),
        (reqwest::Method::GET, "/v1/humans/hum_000000000000000000000000/disable"),
    ];
    for (method, path) in wrong {
        let reply = s.send(s.http.request(method.clone(), s.url(path)).bearer_auth(&s.admin)).await;
        reply.api_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    // Not HTTP at all.
    let answer = s.raw(b"HELLO\r\n\r\n").await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    s.healthy().await;
}

#[tokio::test]
async fn bad_paths_and_query_strings() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    // Path segments that are not valid UTF-8, or not ids at all.
    for path in ["/v1/humans/%FF", "/v1/agents/%FF%FE", "/v1/agents/%00", "/v1/humans/hum_%2F..%2F"] {
        let reply = s.admin_get(path).await;
        client_error(&reply);
    }
    // Query strings that do not fit the filter.
    for query in ["owner=%FF", &format!("owner={owner}&owner={owner}"), "owner"] {
        let reply = s.admin_get(&format!("/v1/agents?{query}")).await;
        client_error(&reply);
    }
    s.healthy().await;
}

#[tokio::test]
async fn a_small_chunked_body_is_read() {
    // The raw chunked encoding used for the oversized case is itself well formed.
    let s = Server::start().await;
    let mut request = format!(
        "POST /v1/humans HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        s.base.trim_start_matches("http://"),
        s.admin
    )
    .into_bytes();
    for chunk in [r#"{"email": "d@example.com", "name": ""#, "dee", r#""}"#] {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = s.raw(&request).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
