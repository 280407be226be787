//! RFC 7662 introspection and RFC 7009 revocation over HTTP: `active` follows everything
//! a decision checks about the warrant itself (revocation, task end, the agent's and the
//! human's state), and nothing else.

use reqwest::StatusCode;
use serde_json::Value;

use crate::testkit::{Server, JWT_BEARER};

async fn introspect_as_admin(s: &Server, token: &str) -> Value {
    let request = s.http.post(s.url("/oauth2/introspect")).bearer_auth(&s.admin).form(&[("token", token)]);
    let reply = s.send(request).await;
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    reply.ok().clone()
}

#[tokio::test]
async fn introspection_follows_the_task_the_agent_and_the_human() {
    let s = Server::start().await;
    let owner = s.human(&["crm.read"]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let reply = s.client_credentials(&agent, "introspected", &[]).await;
    let (token, w) = s.warrant(&reply).await;

    let seen = introspect_as_admin(&s, &token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["token_type"], "Bearer");
    for claim in ["jti", "sub", "client_id", "scope", "exp", "iat", "iss", "aud", "act", "task"] {
        assert_eq!(seen[claim], w.claims[claim], "{claim}");
    }

    // Suspended agent: inactive; resumed: active again.
    s.admin_action(&format!("/v1/agents/{}/suspend", agent.id)).await.ok();
    assert_eq!(introspect_as_admin(&s, &token).await, serde_json::json!({"active": false}));
    s.admin_action(&format!("/v1/agents/{}/resume", agent.id)).await.ok();
    assert_eq!(introspect_as_admin(&s, &token).await["active"], true);

    // Disabled owner (who is also the human of autonomous work): inactive.
    s.admin_action(&format!("/v1/humans/{owner}/disable")).await.ok();
    assert_eq!(introspect_as_admin(&s, &token).await["active"], false);
    s.admin_action(&format!("/v1/humans/{owner}/enable")).await.ok();
    assert_eq!(introspect_as_admin(&s, &token).await["active"], true);

    // The task completed: inactive for good.
    let task = w.claims["task"]["id"].as_str().unwrap();
    s.admin_action(&format!("/v1/tasks/{task}/complete")).await.ok();
    assert_eq!(introspect_as_admin(&s, &token).await["active"], false);
}

#[tokio::test]
async fn a_holder_revokes_its_warrant_and_everything_delegated_from_it() {
    let s = Server::start().await;
    let owner = s.human(&["crm.read"]).await;
    let parent_agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let child_agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let (parent, _) = s.warrant(&s.client_credentials(&parent_agent, "cascade", &[]).await).await;
    let (child, _) = s.warrant(&s.delegate(&parent, &child_agent, &[]).await).await;
    assert_eq!(introspect_as_admin(&s, &child).await["active"], true);

    // The child may not revoke its parent (it is not in the parent's chain)...
    let revoke = |agent: &crate::testkit::Agent, token: &str| {
        let url = format!("{}/oauth2/revoke", s.issuer);
        let assertion = assertion_for(agent, &url);
        let form = [
            ("token", token.to_owned()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", assertion),
        ];
        s.http.post(s.url("/oauth2/revoke")).form(&form)
    };
    s.send(revoke(&child_agent, &parent)).await.oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client");
    assert_eq!(introspect_as_admin(&s, &parent).await["active"], true);
    // ...but the parent's holder revokes it, and the child dies with it.
    let done = s.send(revoke(&parent_agent, &parent)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(introspect_as_admin(&s, &parent).await["active"], false);
    assert_eq!(introspect_as_admin(&s, &child).await["active"], false);
    let decided = s.authorize(&child, "crm.read", "customers/1", Value::Null).await;
    assert_eq!(decided["code"], "revoked");
    // An assertion is single-use here as at the token endpoint; a bad one is refused.
    let form = [("token", parent.as_str()), ("client_assertion_type", JWT_BEARER), ("client_assertion", "x.y.z")];
    let bad = s.send(s.http.post(s.url("/oauth2/revoke")).form(&form)).await;
    bad.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

fn assertion_for(agent: &crate::testkit::Agent, audience: &str) -> String {
    let id = warrant_core::AgentId::parse(&agent.id).unwrap();
    let jti = format!("jti-{}", crate::testkit::unique());
    warrant_token::assertion::make_assertion(&agent.key, &id, audience, crate::testkit::now(), &jti).unwrap()
}

/// A DPoP proof (RFC 9449) by `key` for `htm` `htu`, bound to `token` when given.
fn dpop_proof(key: &warrant_token::KeyPair, htm: &str, htu: &str, token: Option<&str>) -> String {
    use crate::testkit::b64;
    let mut claims = serde_json::json!({
        "htm": htm, "htu": htu, "iat": crate::testkit::now().0, "jti": format!("p-{}", crate::testkit::unique()),
    });
    if let Some(token) = token {
        claims["ath"] = warrant_token::dpop::token_hash(token).into();
    }
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())},
    });
    let input = format!("{}.{}", b64(serde_json::to_vec(&header).unwrap()), b64(serde_json::to_vec(&claims).unwrap()));
    format!("{input}.{}", b64(key.sign(input.as_bytes()).to_bytes()))
}

#[tokio::test]
async fn a_bound_warrant_is_decided_through_authzen_only_with_the_clients_proof() {
    let s = Server::start().await;
    let owner = s.human(&["crm.read"]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let holder = crate::testkit::new_key();
    let token_url = format!("{}/oauth2/token", s.issuer);
    let assertion = s.assertion(&agent);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
        ("task_purpose", "bound"),
    ];
    let proof = dpop_proof(&holder, "POST", &token_url, None);
    let reply = s.send(s.http.post(s.url("/oauth2/token")).header("DPoP", proof).form(&form)).await;
    assert_eq!(reply.ok()["token_type"], "DPoP");
    let (token, w) = s.warrant(&reply).await;
    assert_eq!(w.claims["cnf"], serde_json::json!({"jkt": holder.kid()}));

    let pep_url = "https://api.example/customers/7";
    let evaluation = |dpop: Option<Value>| {
        let mut subject = serde_json::json!({"type": "agent", "id": w.claims["sub"], "properties": {"token": token}});
        if let Some(dpop) = dpop {
            subject["properties"]["dpop"] = dpop;
        }
        let body = serde_json::json!({
            "subject": subject, "action": {"name": "crm.read"}, "resource": {"type": "customers", "id": "7"},
        });
        s.http.post(s.url("/access/v1/evaluation")).bearer_auth(&s.admin).json(&body)
    };
    let forwarded =
        serde_json::json!({"proof": dpop_proof(&holder, "GET", pep_url, Some(&token)), "htm": "GET", "htu": pep_url});
    let allowed = s.send(evaluation(Some(forwarded.clone()))).await;
    assert_eq!(allowed.ok()["decision"], true, "{}", allowed.text);
    for (what, dpop) in [
        ("replayed", Some(forwarded)),
        ("missing", None),
        (
            "for another URL",
            Some(
                serde_json::json!({"proof": dpop_proof(&holder, "GET", "https://evil.example/x", Some(&token)), "htm": "GET", "htu": pep_url}),
            ),
        ),
    ] {
        let denied = s.send(evaluation(dpop)).await;
        let answer = denied.ok();
        assert_eq!(answer["decision"], false, "{what}: {answer}");
        assert_eq!(answer["context"]["code"], "dpop", "{what}: {answer}");
    }
    // Named by reference (no token to hash the proof against): refused for a bound warrant.
    let by_reference = serde_json::json!({
        "subject": {"type": "agent", "id": w.claims["sub"], "properties": {
            "dpop": {"proof": dpop_proof(&holder, "GET", pep_url, Some(&token)), "htm": "GET", "htu": pep_url}}},
        "action": {"name": "crm.read"}, "resource": {"type": "customers", "id": "7"},
        "context": {"agent": w.claims["client_id"], "warrant_id": w.claims["jti"]},
    });
    let referenced =
        s.send(s.http.post(s.url("/access/v1/evaluation")).bearer_auth(&s.admin).json(&by_reference)).await;
    assert_eq!(referenced.ok()["context"]["code"], "dpop", "{}", referenced.text);
    let malformed = s.send(evaluation(Some(serde_json::json!("just a string")))).await;
    malformed.api_error(StatusCode::BAD_REQUEST, "invalid_request");

    // In a batch of /v1/authorize no request can carry its own proof: a bound warrant is denied.
    let batch = s
        .authorize_batch(&[serde_json::json!({"token": token, "action": "crm.read", "resource": "customers/7"})])
        .await;
    assert_eq!(batch.ok()["decisions"][0]["code"], "dpop");
}
