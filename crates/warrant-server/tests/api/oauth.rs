//! The token endpoint's grants: client credentials, token exchange from a human session,
//! delegation chains, and the rules that bound them (scope, lifetime, depth, cycles,
//! replay).

use reqwest::StatusCode;
use serde_json::json;
use warrant_server::FileConfig;

use crate::testkit::{now, scope_set, Server, ACCESS_TOKEN, JWT, JWT_BEARER};

#[tokio::test]
async fn autonomous_warrant_from_client_credentials() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read", "reports.write:daily/*"]).await;

    let reply = s.client_credentials(&agent, "nightly report", &[]).await;
    let body = reply.ok();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("issued_token_type").is_none(), "client credentials is not an exchange: {body}");
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");

    let (_, w) = s.warrant(&reply).await;
    assert_eq!(w.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(w.header.alg, "EdDSA");
    let kid = w.header.kid.clone().unwrap();
    let jwks = s.jwks().await;
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str()));

    let c = &w.claims;
    assert_eq!(c["iss"], s.issuer.as_str());
    assert_eq!(c["aud"], s.issuer.as_str());
    assert_eq!(c["sub"], agent.id.as_str());
    assert_eq!(c["client_id"], agent.id.as_str());
    assert_eq!(c["mode"], "autonomous");
    assert_eq!(c["act"], json!({"sub": agent.id}));
    assert_eq!(c["owner"], owner.as_str());
    assert_eq!(c["task"]["purpose"], "nightly report");
    assert_eq!(c["task"]["human"], owner.as_str());
    assert_eq!(c["task"]["id"], body["task_id"]);
    assert_eq!(c["jti"], body["warrant_id"]);
    assert_eq!(c["scope"], body["scope"]);
    assert_eq!(scope_set(c["scope"].as_str().unwrap()), scope_set("crm.read reports.write:daily/*"));
    assert!(c.get("parent").is_none(), "a root warrant has no parent: {c}");
    assert!(c.get("cnf").is_none());
    let (iat, exp, nbf) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap(), c["nbf"].as_i64().unwrap());
    assert_eq!(exp - iat, 300, "default lifetime");
    assert_eq!(nbf, iat);
    assert!(c["task"]["id"].as_str().unwrap().starts_with("tsk_"));
    assert!(c["jti"].as_str().unwrap().starts_with("wrt_"));
}

#[tokio::test]
async fn client_credentials_scope_ttl_and_audience() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.*", "mail.send"]).await;

    // A narrower scope than the max scope, and a shorter lifetime.
    let reply = s.client_credentials(&agent, "p", &[("scope", "crm.read:customers/*"), ("ttl", "60")]).await;
    let (_, w) = s.warrant(&reply).await;
    assert_eq!(reply.body["scope"], "crm.read:customers/*");
    assert_eq!(reply.body["expires_in"], 60);
    assert_eq!(w.typed.exp.0 - w.typed.iat.0, 60);

    // A lifetime beyond the maximum is capped, not refused.
    let reply = s.client_credentials(&agent, "p", &[("ttl", "100000")]).await;
    let (_, w) = s.warrant(&reply).await;
    assert_eq!(w.typed.exp.0 - w.typed.iat.0, 900);

    // Beyond the agent's max scope.
    s.client_credentials(&agent, "p", &[("scope", "crm.read billing.read")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // The assertion may name the issuer itself as its audience.
    let id = warrant_core::AgentId::parse(&agent.id).unwrap();
    let assertion = warrant_token::assertion::make_assertion(&agent.key, &id, &s.issuer, now(), "aud-issuer").unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &assertion),
        ("task_purpose", "p"),
    ];
    s.token(&form).await.ok();

    // ... but not some other audience.
    let assertion =
        warrant_token::assertion::make_assertion(&agent.key, &id, "http://elsewhere.example", now(), "aud-other")
            .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &assertion),
        ("task_purpose", "p"),
    ];
    s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn delegated_warrant_from_human_session() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let human = s.human(&["crm.read", "crm.write:customers/*", "mail.send"]).await;
    let agent = s.agent(&owner, "delegated", &["crm.*", "calendar.read"]).await;
    let session = s.session(&human).await;

    let reply = s.delegated_root(&session, &agent, &[("task_purpose", "tidy my CRM")]).await;
    let body = reply.ok();
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let (_, w) = s.warrant(&reply).await;
    let c = &w.claims;
    assert_eq!(c["sub"], human.as_str());
    assert_eq!(c["client_id"], agent.id.as_str());
    assert_eq!(c["mode"], "delegated");
    assert_eq!(c["owner"], owner.as_str());
    assert_eq!(c["act"], json!({"sub": agent.id}));
    assert_eq!(c["task"]["human"], human.as_str());
    assert_eq!(c["task"]["purpose"], "tidy my CRM");
    // No scope asked: the human's entitlements intersected with the agent's max scope.
    assert_eq!(scope_set(c["scope"].as_str().unwrap()), scope_set("crm.read crm.write:customers/*"));
    assert_eq!(scope_set(body["scope"].as_str().unwrap()), scope_set(c["scope"].as_str().unwrap()));

    // Asked scope within both ceilings.
    let reply = s.delegated_root(&session, &agent, &[("scope", "crm.write:customers/42")]).await;
    assert_eq!(reply.ok()["scope"], "crm.write:customers/42");
    // Within the agent's max scope but beyond the human's entitlements.
    s.delegated_root(&session, &agent, &[("scope", "calendar.read")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    // Within the human's entitlements but beyond the agent's max scope.
    s.delegated_root(&session, &agent, &[("scope", "mail.send")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // The session is also accepted with the generic JWT token type.
    s.exchange(&session, JWT, &agent, &[("task_purpose", "p")]).await.ok();
}

#[tokio::test]
async fn three_level_delegation_nests_act() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let owner = s.human(&[]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&owner, "delegated", &["crm.*"]).await;
    let c = s.agent(&owner, "delegated", &["crm.read"]).await;
    let session = s.session(&human).await;

    let reply = s.delegated_root(&session, &a, &[("scope", "crm.read crm.write")]).await;
    let (root_token, root) = s.warrant(&reply).await;
    let reply = s.delegate(&root_token, &b, &[]).await;
    assert_eq!(reply.ok()["issued_token_type"], ACCESS_TOKEN);
    let (b_token, bw) = s.warrant(&reply).await;
    let reply = s.delegate(&b_token, &c, &[]).await;
    let (_, cw) = s.warrant(&reply).await;

    assert_eq!(bw.claims["parent"], root.claims["jti"]);
    assert_eq!(bw.claims["act"], json!({"sub": b.id, "act": {"sub": a.id}}));
    assert_eq!(scope_set(bw.claims["scope"].as_str().unwrap()), scope_set("crm.read crm.write"));

    let cc = &cw.claims;
    assert_eq!(cc["act"], json!({"sub": c.id, "act": {"sub": b.id, "act": {"sub": a.id}}}));
    assert_eq!(cc["parent"], bw.claims["jti"]);
    assert_eq!(cc["sub"], human.as_str());
    assert_eq!(cc["client_id"], c.id.as_str());
    assert_eq!(cc["owner"], owner.as_str());
    assert_eq!(cc["mode"], "delegated");
    assert_eq!(cc["scope"], "crm.read");
    assert_eq!(cc["aud"], root.claims["aud"]);
    for w in [&bw, &cw] {
        assert_eq!(w.claims["task"], root.claims["task"], "the task is unchanged down the chain");
        assert_eq!(w.claims["sub"], human.as_str());
    }
    let chain: Vec<String> = cw.typed.chain().iter().map(ToString::to_string).collect();
    assert_eq!(chain, [a.id.clone(), b.id.clone(), c.id.clone()]);
    assert!(bw.typed.exp <= root.typed.exp && cw.typed.exp <= bw.typed.exp);

    // A warrant is also accepted as a subject with the generic JWT token type.
    let d = s.agent(&owner, "delegated", &["crm.read"]).await;
    let reply = s.exchange(&b_token, JWT, &d, &[]).await;
    let (_, dw) = s.warrant(&reply).await;
    assert_eq!(dw.claims["parent"], bw.claims["jti"]);
}

#[tokio::test]
async fn autonomous_delegation_keeps_the_root_agent_as_subject() {
    let s = Server::start().await;
    let o1 = s.human(&[]).await;
    let o2 = s.human(&[]).await;
    let a = s.agent(&o1, "autonomous", &["reports.*"]).await;
    let b = s.agent(&o2, "autonomous", &["reports.read"]).await;
    let delegated = s.agent(&o2, "delegated", &["reports.*"]).await;

    let (root_token, root) = s.warrant(&s.client_credentials(&a, "reports", &[]).await).await;
    let (_, bw) = s.warrant(&s.delegate(&root_token, &b, &[]).await).await;
    assert_eq!(bw.claims["sub"], a.id.as_str());
    assert_eq!(bw.claims["mode"], "autonomous");
    assert_eq!(bw.claims["owner"], o2.as_str());
    assert_eq!(bw.claims["task"]["human"], o1.as_str());
    assert_eq!(bw.claims["task"], root.claims["task"]);
    assert_eq!(bw.claims["scope"], "reports.read");
    assert_eq!(bw.claims["act"], json!({"sub": b.id, "act": {"sub": a.id}}));

    // A delegated-mode agent takes no part in autonomous work, and the other way round.
    s.delegate(&root_token, &delegated, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.client_credentials(&delegated, "p", &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let session = s.session(&o1).await;
    s.delegated_root(&session, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn scope_escalation_is_refused() {
    let s = Server::start().await;
    let human = s.human(&["crm.*", "mail.send"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*", "mail.send"]).await;
    let narrow = s.agent(&human, "delegated", &["crm.read"]).await;
    let elsewhere = s.agent(&human, "delegated", &["billing.read"]).await;
    let session = s.session(&human).await;

    // Beyond the agent's own max scope, although the human holds it.
    s.delegated_root(&session, &a, &[("scope", "mail.send")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    let (parent, _) = s.warrant(&s.delegated_root(&session, &a, &[("scope", "crm.read")]).await).await;
    for wider in ["crm.read crm.write", "crm.*", "mail.send", "crm.read:customers/** crm.delete"] {
        s.delegate(&parent, &b, &[("scope", wider)]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    // Within the parent but beyond the child's max scope.
    let (wide_parent, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;
    s.delegate(&wide_parent, &narrow, &[("scope", "crm.write")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    // Nothing left once the ceilings are intersected.
    s.delegate(&parent, &elsewhere, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // No scope asked: the parent's scope within the child's ceilings.
    let (_, w) = s.warrant(&s.delegate(&parent, &b, &[]).await).await;
    assert_eq!(w.claims["scope"], "crm.read");
    // A narrower scope.
    let (_, w) = s.warrant(&s.delegate(&parent, &b, &[("scope", "crm.read:customers/7")]).await).await;
    assert_eq!(w.claims["scope"], "crm.read:customers/7");
}

#[tokio::test]
async fn lifetime_escalation_is_capped_by_the_parent() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;

    let reply = s.delegated_root(&session, &a, &[("ttl", "60")]).await;
    assert_eq!(reply.ok()["expires_in"], 60);
    let (parent_token, parent) = s.warrant(&reply).await;
    assert_eq!(parent.typed.exp.0 - parent.typed.iat.0, 60);

    let reply = s.delegate(&parent_token, &b, &[("ttl", "900")]).await;
    let expires_in = reply.ok()["expires_in"].as_i64().unwrap();
    assert!(expires_in <= 60, "expires_in {expires_in} beyond the parent's lifetime");
    let (_, child) = s.warrant(&reply).await;
    assert_eq!(child.typed.exp, parent.typed.exp, "the child's expiry is capped at the parent's");
}

#[tokio::test]
async fn too_deep_and_cyclic_chains_are_refused() {
    let s = Server::start_with(FileConfig { max_depth: Some(3), ..Default::default() }).await;
    assert_eq!(s.get("/.well-known/oauth-authorization-server").await.ok()["warrant_max_depth"], 3);
    let human = s.human(&["crm.*"]).await;
    let [a, b, c, d] = [
        s.agent(&human, "delegated", &["crm.*"]).await,
        s.agent(&human, "delegated", &["crm.*"]).await,
        s.agent(&human, "delegated", &["crm.*"]).await,
        s.agent(&human, "delegated", &["crm.*"]).await,
    ];
    let session = s.session(&human).await;

    let (wa, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;
    let (wb, _) = s.warrant(&s.delegate(&wa, &b, &[]).await).await;
    let (wc, cw) = s.warrant(&s.delegate(&wb, &c, &[]).await).await;
    assert_eq!(cw.typed.depth(), 3);
    // A fourth agent would exceed max_depth 3.
    s.delegate(&wc, &d, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // A -> B -> A.
    s.delegate(&wb, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A -> A.
    s.delegate(&wa, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A -> B -> C -> A: both too deep and a cycle; refused either way.
    s.delegate(&wc, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_replayed_client_assertion_is_refused() {
    let s = Server::start().await;
    let owner = s.human(&["crm.*"]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let assertion = s.assertion(&agent);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
        ("task_purpose", "p"),
    ];
    s.token(&form).await.ok();
    s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // The same for an actor token in a token exchange.
    let delegated = s.agent(&owner, "delegated", &["crm.*"]).await;
    let session = s.session(&owner).await;
    let actor = s.assertion(&delegated);
    let form = [
        ("grant_type", crate::testkit::TOKEN_EXCHANGE),
        ("subject_token", session.as_str()),
        ("subject_token_type", crate::testkit::ID_TOKEN),
        ("actor_token", actor.as_str()),
        ("task_purpose", "p"),
    ];
    s.token(&form).await.ok();
    s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    s.healthy().await;
}

#[tokio::test]
async fn resource_indicators_set_the_audience() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let owner = s.human(&[]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&owner, "delegated", &["crm.*"]).await;
    let auto = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let session = s.session(&human).await;
    let (gw, other) = ("https://gw.example/mcp/crm", "https://gw.example/mcp/mail");

    // Client credentials and a delegated root: `resource` becomes `aud`; without it the
    // audience stays the issuer.
    let (_, w) = s.warrant(&s.client_credentials(&auto, "p", &[("resource", gw)]).await).await;
    assert_eq!(w.claims["aud"], gw);
    let (plain, w) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;
    assert_eq!(w.claims["aud"], s.issuer.as_str());
    let (root, w) = s.warrant(&s.delegated_root(&session, &a, &[("resource", gw)]).await).await;
    assert_eq!(w.claims["aud"], gw);

    // A delegation keeps its parent's audience, may name it again, and may not name
    // another one.
    let (_, w) = s.warrant(&s.delegate(&root, &b, &[]).await).await;
    assert_eq!(w.claims["aud"], gw);
    let (_, w) = s.warrant(&s.delegate(&root, &b, &[("resource", gw)]).await).await;
    assert_eq!(w.claims["aud"], gw);
    s.delegate(&root, &b, &[("resource", other)]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    let issuer = s.issuer.clone();
    s.delegate(&root, &b, &[("resource", &issuer)]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    // A parent with the default audience may be narrowed to a resource.
    let (_, w) = s.warrant(&s.delegate(&plain, &b, &[("resource", other)]).await).await;
    assert_eq!(w.claims["aud"], other);

    // Malformed resources are `invalid_target`, and `resource` may not be repeated.
    for bad in ["/mcp/crm", "https://gw.example/mcp/crm#frag", "not a uri", ""] {
        s.client_credentials(&auto, "p", &[("resource", bad)])
            .await
            .oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    }
    s.client_credentials(&auto, "p", &[("resource", gw), ("resource", other)])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // A warrant for a resource is still a warrant: `/v1/authorize` decides it.
    let (token, _) = s.warrant(&s.client_credentials(&auto, "p", &[("resource", gw)]).await).await;
    crate::testkit::assert_allow(&s.authorize(&token, "crm.read", "customers/1", json!({})).await);
}
