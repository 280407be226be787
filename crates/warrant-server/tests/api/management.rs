//! The management API (humans, agents), its admin token, the discovery documents, and
//! the files the server keeps in its data directory.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use warrant_server::{BoundServer, FileConfig, Settings};

use crate::testkit::{b64, new_key, on_postgres, scope_set, unb64, Server};

const UNKNOWN_HUMAN: &str = "hum_000000000000000000000000";
const UNKNOWN_AGENT: &str = "agt_000000000000000000000000";

#[tokio::test]
async fn management_needs_the_admin_token() {
    let s = Server::start().await;
    let human = s.human(&[]).await;
    let endpoints = [
        (Method::GET, "/v1/humans".to_owned()),
        (Method::POST, "/v1/humans".to_owned()),
        (Method::GET, format!("/v1/humans/{human}")),
        (Method::POST, format!("/v1/humans/{human}/sessions")),
        (Method::POST, format!("/v1/humans/{human}/disable")),
        (Method::PUT, format!("/v1/humans/{human}/roles")),
        (Method::GET, "/v1/agents".to_owned()),
        (Method::POST, "/v1/agents".to_owned()),
        (Method::GET, format!("/v1/agents/{UNKNOWN_AGENT}")),
        (Method::DELETE, format!("/v1/agents/{UNKNOWN_AGENT}")),
        (Method::POST, format!("/v1/agents/{UNKNOWN_AGENT}/suspend")),
        (Method::POST, format!("/v1/agents/{UNKNOWN_AGENT}/resume")),
    ];
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {}x", s.admin)),
        Some(format!("Bearer {}", &s.admin[..s.admin.len() - 1])),
        Some(format!("Basic {}", s.admin)),
        Some(s.admin.clone()),
        Some("Bearer ".to_owned()),
    ];
    for (method, path) in &endpoints {
        for authorization in &wrong {
            let mut request = s.http.request(method.clone(), s.url(path)).json(&json!({}));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let reply = s.send(request).await;
            reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer", "{method} {path}");
            assert!(!reply.text.contains(&s.admin), "an error must not echo the admin token");
        }
    }
    // Nothing happened: the human is still active.
    assert_eq!(s.admin_get(&format!("/v1/humans/{human}")).await.ok()["status"], "active");
}

#[tokio::test]
async fn humans_carry_roles_set_at_registration_and_replaced() {
    let s = Server::start().await;
    let beth = s
        .admin_post(
            "/v1/humans",
            &json!({"name": "Beth", "email": "beth@the-smiths.com", "roles": ["viewer", "viewer", "admin"]}),
        )
        .await
        .expect(StatusCode::CREATED)
        .clone();
    assert_eq!(beth["roles"], json!(["admin", "viewer"]), "sorted, each once");
    let id = beth["id"].as_str().unwrap();
    let put = |path: String, body: Value| s.send(s.http.put(s.url(&path)).bearer_auth(&s.admin).json(&body));
    let changed = put(format!("/v1/humans/{id}/roles"), json!({"roles": ["editor"]})).await;
    assert_eq!(changed.ok()["roles"], json!(["editor"]));
    assert_eq!(s.admin_get(&format!("/v1/humans/{id}")).await.ok()["roles"], json!(["editor"]));
    // Without roles, a human shows an empty list.
    let plain = s.admin_post("/v1/humans", &json!({"name": "Jerry", "email": "jerry@the-smiths.com"})).await;
    assert_eq!(plain.expect(StatusCode::CREATED)["roles"], json!([]));
    // Bad roles, bodies and ids.
    for roles in [
        json!([""]),
        json!(["has space"]),
        json!(["x".repeat(65)]),
        json!((0..33).map(|i| format!("r{i}")).collect::<Vec<_>>()),
    ] {
        put(format!("/v1/humans/{id}/roles"), json!({"roles": roles}))
            .await
            .api_error(StatusCode::BAD_REQUEST, "invalid_request");
        s.admin_post("/v1/humans", &json!({"name": "X", "email": "x@example.com", "roles": roles}))
            .await
            .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    put(format!("/v1/humans/{id}/roles"), json!({"role": ["editor"]}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    put(format!("/v1/humans/{UNKNOWN_HUMAN}/roles"), json!({"roles": []}))
        .await
        .api_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(s.admin_get(&format!("/v1/humans/{id}")).await.ok()["roles"], json!(["editor"]), "nothing changed");

    // The identity provider's id: shown, unique, and of a form that names one human one way.
    let rick = s
        .admin_post("/v1/humans", &json!({"name": "Rick", "email": "rick@the-citadel.com", "external_id": "CiRmZDA2"}))
        .await;
    assert_eq!(rick.expect(StatusCode::CREATED)["external_id"], "CiRmZDA2");
    assert_eq!(beth["external_id"], Value::Null);
    s.admin_post("/v1/humans", &json!({"name": "R2", "email": "r2@the-citadel.com", "external_id": "CiRmZDA2"}))
        .await
        .api_error(StatusCode::CONFLICT, "conflict");
    for external_id in ["", "has space", "a@b", "hum_x"] {
        s.admin_post("/v1/humans", &json!({"name": "X", "email": "x@example.com", "external_id": external_id}))
            .await
            .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn humans_are_registered_shown_and_listed() {
    let s = Server::start().await;
    let reply = s
        .admin_post(
            "/v1/humans",
            &json!({"name": "Ada Lovelace", "email": "Ada@Example.com", "entitlements": ["crm.read", "mail.send:drafts/**"]}),
        )
        .await;
    let ada = reply.expect(StatusCode::CREATED).clone();
    let id = ada["id"].as_str().unwrap();
    assert!(id.starts_with("hum_"));
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["email"], "ada@example.com");
    assert_eq!(ada["status"], "active");
    assert_eq!(
        scope_set(
            &ada["entitlements"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(" ")
        ),
        scope_set("crm.read mail.send:drafts/**")
    );
    assert!(ada["created_at"].as_i64().unwrap() > 0);
    assert_eq!(s.admin_get(&format!("/v1/humans/{id}")).await.ok(), &ada);
    let list = s.admin_get("/v1/humans").await;
    assert!(list.ok()["humans"].as_array().unwrap().contains(&ada));

    // The email is unique, whatever its case.
    for email in ["ada@example.com", "ADA@EXAMPLE.COM"] {
        s.admin_post("/v1/humans", &json!({"name": "Ada", "email": email}))
            .await
            .api_error(StatusCode::CONFLICT, "conflict");
    }
    // Invalid values.
    for body in [
        json!({"name": "", "email": "x@example.com"}),
        json!({"name": "X", "email": "not-an-email"}),
        json!({"name": "X", "email": "x@example.com", "entitlements": ["not a permission!"]}),
        json!({"name": "X\u{0007}", "email": "x@example.com"}),
    ] {
        s.admin_post("/v1/humans", &body).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Unknown and malformed ids.
    s.admin_get(&format!("/v1/humans/{UNKNOWN_HUMAN}")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_action(&format!("/v1/humans/{UNKNOWN_HUMAN}/disable")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_action(&format!("/v1/humans/{UNKNOWN_HUMAN}/sessions")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_get("/v1/humans/bob").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_get(&format!("/v1/humans/{}", "agt_000000000000000000000000"))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn agents_are_registered_shown_and_listed() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let other_owner = s.human(&[]).await;
    let key = new_key();
    let mut body = Server::agent_body(&owner, "delegated", &["crm.read", "crm.*"], &key);
    body["labels"] = json!({"team": "sales"});
    body["expires_at"] = json!("2099-01-01T00:00:00Z");
    let reply = s.admin_post("/v1/agents", &body).await;
    let view = reply.expect(StatusCode::CREATED).clone();
    let id = view["id"].as_str().unwrap();
    assert!(id.starts_with("agt_"));
    assert_eq!(view["owner"], owner.as_str());
    assert_eq!(view["mode"], "delegated");
    assert_eq!(view["max_scope"], json!(["crm.*"]), "a covered permission is dropped");
    assert_eq!(view["public_key"], serde_json::to_value(key.public_jwk()).unwrap());
    assert_eq!(view["status"], "active");
    assert_eq!(view["labels"], json!({"team": "sales"}));
    assert_eq!(view["expires_at"], 4_070_908_800_i64);
    assert_eq!(s.admin_get(&format!("/v1/agents/{id}")).await.ok(), &view);

    let other = s.agent(&other_owner, "autonomous", &["mail.send"]).await;
    let all = s.admin_get("/v1/agents").await.ok()["agents"].clone();
    let all = all.as_array().unwrap();
    let mut ids: Vec<&str> = all.iter().map(|a| a["id"].as_str().unwrap()).collect();
    // Oldest first, at the one-second resolution of `created_at`.
    let created: Vec<i64> = all.iter().map(|a| a["created_at"].as_i64().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "not oldest first: {created:?}");
    ids.sort_unstable();
    let mut want = [id, other.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let mine = s.admin_get(&format!("/v1/agents?owner={owner}")).await.ok()["agents"].clone();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["id"], id);
    s.admin_get("/v1/agents?owner=bob").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");

    s.admin_get(&format!("/v1/agents/{UNKNOWN_AGENT}")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_delete(&format!("/v1/agents/{UNKNOWN_AGENT}")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_action(&format!("/v1/agents/{UNKNOWN_AGENT}/suspend")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_get("/v1/agents/robot").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn bad_agent_registrations_are_refused() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let disabled = s.human(&[]).await;
    s.admin_action(&format!("/v1/humans/{disabled}/disable")).await.ok();
    let key = new_key();
    let good = Server::agent_body(&owner, "autonomous", &["crm.read"], &key);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let x = key.public_jwk().x;
    let mut identity = [0u8; 32];
    identity[0] = 1;

    let bad_request = [
        // Owners: unknown, disabled, not a human id.
        with("owner", json!(UNKNOWN_HUMAN)),
        with("owner", json!(disabled)),
        with("owner", json!("bob")),
        // Keys that are not Ed25519 public keys.
        with("public_key", json!({"kty": "RSA", "crv": "Ed25519", "x": x})),
        with("public_key", json!({"kty": "OKP", "crv": "X25519", "x": x})),
        with("public_key", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
        with("public_key", json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64url!"})),
        with("public_key", json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{x}AAAA")})),
        // The identity point: a weak key.
        with("public_key", json!({"kty": "OKP", "crv": "Ed25519", "x": b64(identity)})),
        // Scopes, names, expiries, labels.
        with("max_scope", json!([])),
        with("max_scope", json!(["crm read"])),
        with("name", json!("   ")),
        with("expires_at", json!(1)),
        with("expires_at", json!("tomorrow")),
        with("labels", json!({"": "x"})),
    ];
    for body in &bad_request {
        let reply = s.admin_post("/v1/agents", body).await;
        reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let unprocessable = [
        with("mode", json!("robot")),
        with("public_key", json!({"kty": "OKP", "crv": "Ed25519"})),
        with("public_key", json!("a string")),
        with("max_scope", json!("crm.read")),
        with("unknown_field", json!(1)),
    ];
    for body in &unprocessable {
        let reply = s.admin_post("/v1/agents", body).await;
        reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    // None of them was registered; the good one is.
    assert!(s.admin_get("/v1/agents").await.ok()["agents"].as_array().unwrap().is_empty());
    s.admin_post("/v1/agents", &good).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn discovery_documents_have_the_standard_shapes() {
    let s = Server::start().await;
    assert_eq!(s.issuer, s.base, "the default issuer is the bound address");

    let reply = s.get("/.well-known/jwks.json").await;
    let jwks = reply.ok().clone();
    assert!(reply.headers.get("cache-control").unwrap().to_str().unwrap().starts_with("max-age="));
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(!key["kid"].as_str().unwrap().is_empty());
        assert_eq!(unb64(key["x"].as_str().unwrap()).len(), 32);
        assert!(key.get("d").is_none(), "the JWKS must never publish a private key");
    }

    let meta = s.get("/.well-known/oauth-authorization-server").await.ok().clone();
    assert_eq!(meta["issuer"], s.issuer.as_str());
    assert_eq!(meta["token_endpoint"], format!("{}/oauth2/token", s.issuer));
    assert_eq!(meta["jwks_uri"], format!("{}/.well-known/jwks.json", s.issuer));
    let grants = meta["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("client_credentials")));
    assert!(grants.contains(&json!(crate::testkit::TOKEN_EXCHANGE)));
    assert_eq!(meta["token_endpoint_auth_methods_supported"], json!(["private_key_jwt"]));
    assert_eq!(meta["token_endpoint_auth_signing_alg_values_supported"], json!(["EdDSA"]));

    let via_uri = s.send(s.http.get(meta["jwks_uri"].as_str().unwrap())).await;
    assert_eq!(via_uri.ok(), &jwks);

    let doc = s.get("/openapi.json").await;
    let served = doc.ok().clone();
    let generated: Value = serde_json::from_str(&warrant_server::openapi::json()).unwrap();
    assert_eq!(served, generated);
    s.healthy().await;
}

#[tokio::test]
async fn a_configured_issuer_is_used_everywhere() {
    let s =
        Server::start_with(FileConfig { issuer: Some("https://warrant.example/".into()), ..Default::default() }).await;
    assert_eq!(s.issuer, "https://warrant.example");
    let meta = s.get("/.well-known/oauth-authorization-server").await.ok().clone();
    assert_eq!(meta["issuer"], "https://warrant.example");
    assert_eq!(meta["token_endpoint"], "https://warrant.example/oauth2/token");
    let owner = s.human(&[]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let (_, w) = s.warrant(&s.client_credentials(&agent, "p", &[]).await).await;
    assert_eq!(w.claims["iss"], "https://warrant.example");
    assert_eq!(w.claims["aud"], "https://warrant.example");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_admin_token_are_private() {
    use std::os::unix::fs::PermissionsExt as _;

    let mut s = Server::start().await;
    let dir_mode = std::fs::metadata(&s.data).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "data directory mode {dir_mode:o}");
    let token_path = s.data.join(warrant_server::server::ADMIN_TOKEN_FILE);
    assert_eq!(token_path, s.data.join("admin.token"));
    let token_mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(token_mode, 0o600, "admin token mode {token_mode:o}");
    assert_eq!(std::fs::read_to_string(&token_path).unwrap().trim(), s.admin);

    // A restart on the same data directory reuses the token (and the signing key).
    s.restart().await;
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A second server on a data directory in use refuses to start, naming the directory and
/// the holder's pid, and the first one keeps serving; once it stops, the directory is free.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    use std::os::unix::fs::PermissionsExt as _;

    let mut s = Server::start().await;
    let settings = Settings::from_config(s.same_store(FileConfig::default())).unwrap();
    let refused = BoundServer::bind(&settings).await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains(&format!("`{}`", s.data.display())), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    let mode = std::fs::metadata(s.data.join(warrant_server::server::LOCK_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The first server is untouched: management still works.
    s.admin_get("/v1/humans").await.ok();
    // A restart releases and takes the lock again.
    s.restart().await;
    s.admin_get("/v1/humans").await.ok();
    assert!(BoundServer::bind(&settings).await.is_err(), "the restarted server holds the lock");
    // On PostgreSQL the database is not held: a server with a data directory of its own
    // on the same database starts beside it, and accepts the admin token the first server
    // created (its own data directory holds none).
    if on_postgres() {
        let other = tempfile::tempdir().unwrap();
        // Every server on a database is given the key-encryption key the keys are sealed with.
        let elsewhere = FileConfig {
            data: Some(other.path().join("data")),
            kek_file: Some(warrant_server::kek::default_kek_file(&s.data)),
            ..s.same_store(FileConfig::default())
        };
        let second = BoundServer::bind(&Settings::from_config(elsewhere).unwrap()).await.unwrap();
        assert_eq!(second.admin_token(), None, "the token stays with the server that created it");
        assert!(!other.path().join("data").join(warrant_server::server::ADMIN_TOKEN_FILE).exists());
        let router = second.router();
        let request = axum::http::Request::get("/v1/humans")
            .header("authorization", format!("Bearer {}", s.admin))
            .body(axum::body::Body::empty())
            .unwrap();
        let answer = tower::ServiceExt::oneshot(router, request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "the second server accepts the first server's admin token");
        s.admin_get("/v1/humans").await.ok();
    }
}

/// `POST /v1/keys/rotate` (admin) rotates the signing key on a running server: new
/// warrants carry the new key at once, warrants signed before stay valid.
#[tokio::test]
async fn the_signing_key_rotates_through_the_api() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let agent = s.agent(&human, "autonomous", &["crm.*"]).await;
    let (before, old) = s.warrant(&s.client_credentials(&agent, "before", &[]).await).await;
    s.send(s.http.post(s.url("/v1/keys/rotate"))).await.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let rotated = s.admin_action("/v1/keys/rotate").await;
    let rotated = rotated.ok();
    let kid = rotated["kid"].as_str().unwrap();
    assert_ne!(Some(kid), old.header.kid.as_deref());
    assert_eq!(rotated["published"].as_array().unwrap().len(), 2, "{rotated}");
    let (_, new) = s.warrant(&s.client_credentials(&agent, "after", &[]).await).await;
    assert_eq!(new.header.kid.as_deref(), Some(kid));
    assert_eq!(s.jwks().await["keys"].as_array().unwrap().len(), 2);
    crate::testkit::assert_allow(&s.authorize(&before, "crm.read", "x/1", Value::Null).await);
}
