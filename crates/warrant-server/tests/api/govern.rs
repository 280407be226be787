//! Continuous governance through the real server (docs/governance.md): each kind of
//! problem is created, its finding appears within a sweep interval, and it resolves once
//! the cause is fixed; an over-privileged agent's recommendation narrows its max scope
//! while what it used stays allowed; acceptance, the webhook and the inventory export.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};
use warrant_server::config::govern::GovernanceFile;
use warrant_server::FileConfig;
use warrant_token::warrant::sign_warrant;

use crate::testkit::{assert_allow, assert_deny, new_key, now, Server};

/// Sweeps every second; registry events are swept at once.
const SWEEP_SECS: i64 = 1;

fn config(g: GovernanceFile) -> FileConfig {
    FileConfig {
        governance: Some(GovernanceFile { sweep_secs: Some(SWEEP_SECS), react_secs: Some(0), ..g }),
        ..Default::default()
    }
}

/// How long a finding may take to appear or resolve: its threshold, one sweep interval,
/// and slack for a loaded CI machine.
fn within(threshold_secs: u64) -> Duration {
    Duration::from_secs(threshold_secs + SWEEP_SECS.unsigned_abs() + 15)
}

async fn findings(s: &Server, query: &str) -> Vec<Value> {
    let reply = s.admin_get(&format!("/v1/findings?{query}")).await;
    reply.ok()["findings"].as_array().unwrap().clone()
}

/// Asks `probe` every 100 ms until it gives a value; `None` once `limit` has passed.
/// Wall-clock by necessity: what it waits for is the server's governance loop (sweeps
/// every `SWEEP_SECS` of real time) or its webhook deliveries over a real socket; the
/// bounds ([`within`]) are a sweep interval plus seconds of slack.
async fn poll<T, F: Future<Output = Option<T>>>(limit: Duration, mut probe: impl FnMut() -> F) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until an active finding of `kind` about `subject` exists; returns it.
async fn appears(s: &Server, subject: &str, kind: &str, limit: Duration) -> Value {
    let query = format!("subject={subject}&kind={kind}");
    let Some(f) = poll(limit, || async { findings(s, &query).await.into_iter().next() }).await else {
        let all = findings(s, &format!("subject={subject}&status=all")).await;
        panic!("no `{kind}` finding about {subject} within {limit:?}; its findings: {all:#?}");
    };
    assert_eq!(f["status"], "open", "{f}");
    assert!(f["id"].as_str().unwrap().starts_with("fnd_"), "{f}");
    assert!(f["first_seen"].as_i64().unwrap() <= f["last_seen"].as_i64().unwrap(), "{f}");
    assert!(["low", "medium", "high", "critical"].contains(&f["severity"].as_str().unwrap()), "{f}");
    f
}

/// Waits until finding `id` has `status`; returns it.
async fn becomes(s: &Server, id: &str, status: &str, limit: Duration) -> Value {
    let path = format!("/v1/findings/{id}");
    let probe = || async { Some(s.admin_get(&path).await.ok().clone()).filter(|f| f["status"] == status) };
    match poll(limit, probe).await {
        Some(f) => f,
        None => panic!("finding {id} did not become {status} within {limit:?}: {}", s.admin_get(&path).await.text),
    }
}

/// Waits until finding `id` is resolved; returns it.
async fn resolves(s: &Server, id: &str, limit: Duration) -> Value {
    let f = becomes(s, id, "resolved", limit).await;
    assert!(f["resolved_at"].as_i64().is_some(), "{f}");
    f
}

/// An autonomous agent's warrant: `(token, jti)`.
async fn autonomous_warrant(s: &Server, agent: &crate::testkit::Agent, extra: &[(&str, &str)]) -> (String, String) {
    let (token, decoded) = s.warrant(&s.client_credentials(agent, "governance test", extra).await).await;
    (token, decoded.typed.jti.to_string())
}

#[tokio::test]
async fn idle_agents_stale_keys_and_overdue_attestations_are_found_and_resolved() {
    const T: i64 = 4;
    let s = Server::start_with(config(GovernanceFile {
        idle_after_secs: Some(T),
        key_rotation_secs: Some(T),
        attestation_every_secs: Some(T),
        ..Default::default()
    }))
    .await;
    let owner = s.human(&["crm.*"]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let limit = within(T.unsigned_abs());
    let idle = appears(&s, &agent.id, "idle_agent", limit).await;
    assert_eq!(idle["evidence"]["never_active"], true, "{idle}");
    let stale = appears(&s, &agent.id, "stale_key", limit).await;
    let overdue = appears(&s, &agent.id, "attestation_overdue", limit).await;

    // Activity ends idleness.
    let (token, _) = autonomous_warrant(&s, &agent, &[]).await;
    assert_allow(&s.authorize(&token, "crm.read", "crm/accounts/1", Value::Null).await);
    resolves(&s, idle["id"].as_str().unwrap(), within(0)).await;

    // A new key ends staleness; the old key no longer works.
    let old = agent.clone();
    let fresh = new_key();
    let reply = s.admin_post(&format!("/v1/agents/{}/key", agent.id), &json!({"public_key": fresh.public_jwk()})).await;
    assert_eq!(reply.ok()["public_key"]["x"], fresh.public_jwk().x, "{}", reply.text);
    resolves(&s, stale["id"].as_str().unwrap(), within(0)).await;
    s.client_credentials(&old, "old key", &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let rotated = crate::testkit::Agent { id: agent.id.clone(), key: fresh };
    assert_eq!(s.client_credentials(&rotated, "new key", &[]).await.status, StatusCode::OK);
    // Rotating to the same key is refused.
    let same =
        s.admin_post(&format!("/v1/agents/{}/key", agent.id), &json!({"public_key": rotated.key.public_jwk()})).await;
    same.api_error(StatusCode::BAD_REQUEST, "invalid_request");

    // The owner attests, with the evidence in front of them; another human may not, and
    // the delegation session an agent holds is no approver credential.
    let delegation_session = s.session(&owner).await;
    let url = s.url(&format!("/v1/agents/{}/attest", agent.id));
    let by_agent =
        s.send(s.http.post(&url).bearer_auth(&delegation_session).json(&json!({"note": "self-attested"}))).await;
    by_agent.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let session = s.approver(&owner).await;
    let evidence =
        s.send(s.http.get(s.url(&format!("/v1/agents/{}/attestation", agent.id))).bearer_auth(&session)).await;
    let evidence = evidence.ok().clone();
    assert_eq!(evidence["max_scope"], json!(["crm.read"]), "{evidence}");
    assert!(evidence["used"].as_array().unwrap().iter().any(|p| p == "crm.read:crm/accounts/1"), "{evidence}");
    let stranger = s.approver(&s.human(&["crm.*"]).await).await;
    let refused = s.send(s.http.post(&url).bearer_auth(&stranger).json(&json!({"note": "not mine"}))).await;
    refused.api_error(StatusCode::FORBIDDEN, "forbidden");
    let attested = s.send(s.http.post(&url).bearer_auth(&session).json(&json!({"note": "still needed"}))).await;
    let attested = attested.ok().clone();
    assert_eq!(attested["by"], owner);
    assert!(attested["id"].as_str().unwrap().starts_with("att_"));
    assert_eq!(attested["evidence"]["agent"], agent.id);
    resolves(&s, overdue["id"].as_str().unwrap(), within(0)).await;
    s.stop().await;
}

#[tokio::test]
async fn registry_and_grant_findings_appear_and_resolve() {
    let s = Server::start_with(FileConfig {
        max_depth: Some(3),
        ..config(GovernanceFile {
            auto_suspend_orphans: Some(true),
            max_warrant_lifetime_secs: Some(60),
            fanout_limit: Some(2),
            ..Default::default()
        })
    })
    .await;
    let limit = within(0);
    let boss = s.human(&["*"]).await;

    // Orphaned: the owner is disabled; the agent is suspended automatically; retiring it resolves.
    let leaver = s.human(&["crm.*"]).await;
    let orphan = s.agent(&leaver, "autonomous", &["crm.read"]).await;
    s.admin_action(&format!("/v1/humans/{leaver}/disable")).await.ok();
    let f = appears(&s, &orphan.id, "orphaned_agent", limit).await;
    assert_eq!(f["evidence"]["owner_status"], "disabled", "{f}");
    let agent_path = format!("/v1/agents/{}", orphan.id);
    let suspended =
        poll(limit, || async { (s.admin_get(&agent_path).await.ok()["status"] == "suspended").then_some(()) });
    assert!(suspended.await.is_some(), "the orphan was not suspended");
    s.admin_delete(&format!("/v1/agents/{}", orphan.id)).await.ok();
    resolves(&s, f["id"].as_str().unwrap(), limit).await;

    // More powerful than its owner: found at registration; fixed by retiring it.
    let small = s.human(&["crm.read"]).await;
    let greedy = s.agent(&small, "autonomous", &["crm.*"]).await;
    let f = appears(&s, &greedy.id, "exceeds_owner", limit).await;
    assert_eq!(f["severity"], "high", "autonomous: {f}");
    assert_eq!(f["evidence"]["beyond_owner"], json!(["crm.*"]), "{f}");
    s.admin_delete(&format!("/v1/agents/{}", greedy.id)).await.ok();
    resolves(&s, f["id"].as_str().unwrap(), limit).await;

    // A broad grant on a sensitive namespace.
    let payer = s.agent(&boss, "autonomous", &["payments.*", "crm.read:crm/accounts/**"]).await;
    let f = appears(&s, &payer.id, "broad_grant", limit).await;
    assert_eq!(f["evidence"]["grants"].as_array().unwrap().len(), 1, "only payments.* is broad: {f}");
    s.admin_delete(&format!("/v1/agents/{}", payer.id)).await.ok();
    resolves(&s, f["id"].as_str().unwrap(), limit).await;

    // An ephemeral agent past its expiry, not retired. (Its warrants cannot outlive it:
    // issuance caps them at its expiry, so `live_warrants` is 0 here.)
    let key = new_key();
    let mut body = Server::agent_body(&boss, "autonomous", &["crm.read"], &key);
    body["expires_at"] = json!(now().secs() + 2);
    let ephemeral = s.agent_from(body, key).await;
    let (_token, decoded) = s.warrant(&s.client_credentials(&ephemeral, "short", &[]).await).await;
    assert!(decoded.typed.exp.secs() <= now().secs() + 2);
    let f = appears(&s, &ephemeral.id, "expired_ephemeral", within(2)).await;
    assert_eq!(f["evidence"]["live_warrants"], 0, "{f}");
    assert_eq!(f["severity"], "medium", "{f}");
    s.admin_delete(&format!("/v1/agents/{}", ephemeral.id)).await.ok();
    resolves(&s, f["id"].as_str().unwrap(), limit).await;

    // A live warrant living longer than governance allows; revoking it resolves.
    let worker = s.agent(&boss, "autonomous", &["crm.read"]).await;
    let (_, jti) = autonomous_warrant(&s, &worker, &[("ttl", "600")]).await;
    let f = appears(&s, &worker.id, "long_lived_grant", limit).await;
    assert_eq!(f["evidence"]["warrants"][0]["warrant"], jti, "{f}");
    s.revoke("warrant", &jti, "too long").await;
    resolves(&s, f["id"].as_str().unwrap(), limit).await;

    // A chain next to the depth limit (3), and a fan-out above the limit (2).
    let chain = s.chain(&["crm.*"], &["crm.*"], 2, "deep work").await;
    let deep = appears(&s, &chain.agents[1].id, "delegation_depth", limit).await;
    assert_eq!(deep["evidence"]["depth"], 2, "{deep}");
    for _ in 0..3 {
        let helper = s.agent(&chain.human, "delegated", &["crm.*"]).await;
        s.sub_warrant(chain.token(0), &helper).await;
    }
    let fan = appears(&s, &chain.agents[0].id, "delegation_fanout", limit).await;
    // It opens once the fan-out passes the limit (3 live delegations; a 4th may follow).
    assert!(fan["evidence"]["live_delegations"].as_u64().unwrap() >= 3, "{fan}");
    s.complete_task(&chain.task(), &s.admin.clone()).await.ok();
    resolves(&s, deep["id"].as_str().unwrap(), limit).await;
    resolves(&s, fan["id"].as_str().unwrap(), limit).await;
    s.stop().await;
}

#[tokio::test]
async fn shadow_activity_is_found_and_resolves_when_it_stops() {
    let s = Server::start_with(config(GovernanceFile { shadow_quiet_secs: Some(3), ..Default::default() })).await;
    let boss = s.human(&["*"]).await;
    let agent = s.agent(&boss, "autonomous", &["crm.read"]).await;
    let (token, decoded) = s.warrant(&s.client_credentials(&agent, "shadow", &[]).await).await;
    assert_allow(&s.authorize(&token, "crm.read", "crm/1", Value::Null).await);

    // A token in our name, signed by a key Warrant never had.
    let forged = sign_warrant(&new_key(), &decoded.typed).unwrap();
    assert_deny(&s.authorize(&forged, "crm.read", "crm/1", Value::Null).await, "invalid_token");
    // A token from another issuer.
    let mut foreign = decoded.typed.clone();
    foreign.iss = "https://shadow-idp.example".into();
    let foreign = sign_warrant(&new_key(), &foreign).unwrap();
    assert_deny(&s.authorize(&foreign, "crm.read", "crm/1", Value::Null).await, "invalid_token");
    assert_deny(&s.authorize("not-a-token", "crm.read", "crm/1", Value::Null).await, "invalid_token");

    // Junk with attacker-chosen issuers: no more findings, no high severity.
    for i in 0..30 {
        let mut junk = decoded.typed.clone();
        junk.iss = format!("https://attacker-{i}.example/\u{1b}[31mALERT");
        let junk = sign_warrant(&new_key(), &junk).unwrap();
        assert_deny(&s.authorize(&junk, "crm.read", "crm/1", Value::Null).await, "invalid_token");
    }

    let limit = within(0);
    let issuer = appears(&s, "shadow:foreign_issuer", "shadow_activity", limit).await;
    // A sweep after every call has been made, so the evidence counts them all.
    s.admin_action("/v1/governance/sweep").await.ok();
    let issuer = s.admin_get(&format!("/v1/findings/{}", issuer["id"].as_str().unwrap())).await.ok().clone();
    assert_eq!(issuer["evidence"]["cause"], "foreign_issuer", "{issuer}");
    assert_eq!(issuer["severity"], "medium", "{issuer}");
    assert_eq!(issuer["evidence"]["occurrences"], 31, "{issuer}");
    assert_eq!(issuer["evidence"]["distinct_claimed"], 31, "{issuer}");
    let claimed = issuer["evidence"]["claimed"].as_array().unwrap();
    assert!(claimed.len() <= 5, "{issuer}");
    assert_eq!(claimed[0]["value"], "https://shadow-idp.example", "{issuer}");
    assert!(!issuer.to_string().contains('\u{1b}'), "a control character reached the finding: {issuer}");
    let all = findings(&s, "kind=shadow_activity").await;
    assert_eq!(all.iter().filter(|f| f["evidence"]["cause"] == "foreign_issuer").count(), 1, "{all:#?}");
    let key = all.iter().find(|f| f["evidence"]["cause"] == "unknown_key").expect("a finding for the unknown key");
    assert_eq!(key["subject"], "shadow:unknown_key", "{key}");
    assert!(all.iter().any(|f| f["subject"] == "token:not_a_warrant"), "{all:#?}");
    // Our own, valid warrant raised nothing.
    assert!(findings(&s, &format!("subject={}", agent.id)).await.iter().all(|f| f["kind"] != "shadow_activity"));

    // Quiet for 3 s: resolved.
    resolves(&s, issuer["id"].as_str().unwrap(), within(3)).await;
    resolves(&s, key["id"].as_str().unwrap(), within(3)).await;
    s.stop().await;
}

/// What the over-privileged agent uses.
const USED: [(&str, &str); 3] =
    [("crm.read", "crm/accounts/1"), ("crm.read", "crm/accounts/2"), ("crm.update", "crm/accounts/2")];

#[tokio::test]
async fn applying_a_recommendation_narrows_the_max_scope_and_keeps_what_was_used() {
    const WINDOW: i64 = 2;
    let s = Server::start_with(config(GovernanceFile { usage_window_secs: Some(WINDOW), ..Default::default() })).await;
    let boss = s.human(&["*"]).await;
    let agent = s.agent(&boss, "autonomous", &["crm.*", "billing.read", "tickets.create:queue/**"]).await;
    let (token, jti) = autonomous_warrant(&s, &agent, &[]).await;
    // The agent keeps working (so its use stays inside the window) until it has been
    // registered for a whole window and a sweep judges it.
    let query = format!("subject={}&kind=over_privileged", agent.id);
    let working = || async {
        for (action, resource) in USED {
            assert_allow(&s.authorize(&token, action, resource, Value::Null).await);
        }
        findings(&s, &query).await.into_iter().next()
    };
    let f = poll(within(WINDOW.unsigned_abs()), working).await.expect("an over-privileged finding");
    let ev = &f["evidence"];
    assert_eq!(ev["recommended_scope"], json!(["crm.read:crm/accounts/**", "crm.update:crm/accounts/2"]), "{f}");
    assert_eq!(ev["unused"], json!(["billing.read", "tickets.create:queue/**"]), "{f}");

    let applied = s.admin_action(&format!("/v1/findings/{}/apply", f["id"].as_str().unwrap())).await;
    let applied = applied.ok().clone();
    assert_eq!(applied["agent"]["max_scope"], ev["recommended_scope"], "{applied}");
    assert_eq!(applied["finding"]["status"], "resolved", "{applied}");
    // The old, broader warrant is revoked: it is not covered by the new max scope.
    assert_deny(&s.authorize(&token, "crm.read", "crm/accounts/1", Value::Null).await, "revoked");
    // What it used is still allowed with a new warrant; the rest is not.
    let (token, new_jti) = autonomous_warrant(&s, &agent, &[]).await;
    assert_ne!(jti, new_jti);
    for (action, resource) in USED {
        assert_allow(&s.authorize(&token, action, resource, Value::Null).await);
    }
    assert_allow(&s.authorize(&token, "crm.read", "crm/accounts/3", Value::Null).await);
    assert_deny(&s.authorize(&token, "billing.read", "invoices/1", Value::Null).await, "scope");
    assert_deny(&s.authorize(&token, "crm.delete", "crm/accounts/1", Value::Null).await, "scope");
    // A second apply has nothing to do.
    s.admin_action(&format!("/v1/findings/{}/apply", f["id"].as_str().unwrap()))
        .await
        .api_error(StatusCode::CONFLICT, "conflict");
    s.stop().await;
}

const NO_EXPORT: &str = r#"
@id("no-crm-export")
forbid (principal, action == Warrant::Action::"crm.export", resource);
"#;

#[tokio::test]
async fn a_policy_change_that_broadens_is_found_and_resolves_when_reverted() {
    let s = Server::start_with(config(GovernanceFile::default())).await;
    s.write_policy("no-export.cedar", NO_EXPORT);
    s.reload_policies().await.ok();
    let boss = s.human(&["*"]).await;
    let agent = s.agent(&boss, "autonomous", &["crm.*"]).await;
    let (token, _) = autonomous_warrant(&s, &agent, &[]).await;
    assert_deny(&s.authorize(&token, "crm.export", "crm/accounts/1", Value::Null).await, "policy");
    assert_allow(&s.authorize(&token, "crm.read", "crm/accounts/1", Value::Null).await);

    // Dropping the forbid allows what was denied.
    std::fs::remove_file(s.policy_dir().join("no-export.cedar")).unwrap();
    s.reload_policies().await.ok();
    let version = s.policy_version().await;
    let f = appears(&s, &format!("policy:{version}"), "policy_broadening", within(0)).await;
    assert_eq!(f["evidence"]["newly_allowed"], 1, "only crm.export changed: {f}");
    assert_eq!(f["evidence"]["samples"][0]["action"], "crm.export", "{f}");
    assert_eq!(f["evidence"]["samples"][0]["agent"], agent.id, "{f}");
    // Sweeps do not resolve it.
    s.admin_action("/v1/governance/sweep").await.ok();
    assert_eq!(s.admin_get(&format!("/v1/findings/{}", f["id"].as_str().unwrap())).await.ok()["status"], "open");

    // Restoring it resolves the finding, and a narrowing change raises nothing.
    s.write_policy("no-export.cedar", NO_EXPORT);
    s.reload_policies().await.ok();
    resolves(&s, f["id"].as_str().unwrap(), within(0)).await;
    let version = s.policy_version().await;
    assert!(findings(&s, &format!("subject=policy:{version}&status=all")).await.is_empty());
    s.stop().await;
}

/// What the test webhook receiver saw.
#[derive(Default)]
struct Received {
    attempts: usize,
    delivered: Vec<(HeaderMap, Vec<u8>)>,
}

/// A webhook receiver on a loopback port that fails every first attempt of a delivery.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut r = state.lock().unwrap();
                r.attempts += 1;
                let id = headers.get("x-warrant-delivery").map(|v| v.to_str().unwrap().to_owned());
                let retried = r
                    .delivered
                    .iter()
                    .any(|(h, _)| h.get("x-warrant-delivery").map(|v| v.to_str().unwrap().to_owned()) == id);
                let first_try = !retried && r.attempts % 2 == 1;
                if first_try {
                    r.delivered.push((headers, Vec::new()));
                    return AxumStatus::SERVICE_UNAVAILABLE;
                }
                r.delivered.push((headers, body.to_vec()));
                AxumStatus::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn findings_are_accepted_delivered_by_webhook_and_exported() {
    const SECRET: &str = "a-webhook-secret-of-some-length";
    let (hook, seen) = receiver().await;
    let s = Server::start_with(config(GovernanceFile {
        webhook_url: Some(hook),
        webhook_secret: Some(SECRET.into()),
        // The receiver is on a loopback port.
        danger_allow_private_webhook: Some(true),
        ..Default::default()
    }))
    .await;
    let boss = s.human(&["*"]).await;
    let agent = s.agent(&boss, "delegated", &["secrets.read"]).await;
    let f = appears(&s, &agent.id, "broad_grant", within(0)).await;
    let id = f["id"].as_str().unwrap();

    // The webhook got the opened finding after one retry, signed.
    let delivered = || async {
        let r = seen.lock().unwrap();
        r.delivered.iter().find(|(_, b)| !b.is_empty() && String::from_utf8_lossy(b).contains(id)).cloned()
    };
    let Some((headers, bytes)) = poll(Duration::from_secs(15), delivered).await else {
        panic!("the webhook never got finding {id}");
    };
    assert_eq!(headers["x-warrant-event"], "finding");
    let signature = headers["x-warrant-signature"].to_str().unwrap();
    assert_eq!(signature, warrant_server::webhook::signature(SECRET.as_bytes(), &bytes));
    let event: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(event["kind"], "finding");
    assert_eq!(event["data"]["change"], "opened");
    assert_eq!(event["data"]["kind"], "broad_grant");
    assert!(seen.lock().unwrap().attempts >= 2, "the first attempt failed and was retried");

    // Acceptance: validated, then accepted until an expiry, after which it reopens.
    let accept = format!("/v1/findings/{id}/accept");
    s.admin_post(&accept, &json!({"justification": " "})).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_post(&accept, &json!({"justification": "x", "for_secs": -5}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_post("/v1/findings/fnd_nope/accept", &json!({"justification": "x", "for_secs": 60}))
        .await
        .api_error(StatusCode::NOT_FOUND, "not_found");
    let anonymous = s.send(s.http.post(s.url(&accept)).json(&json!({"justification": "x", "for_secs": 60}))).await;
    anonymous.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let accepted = s.admin_post(&accept, &json!({"justification": "vault migration in progress", "for_secs": 2})).await;
    let accepted = accepted.ok().clone();
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["acceptance"]["justification"], "vault migration in progress");
    assert_eq!(accepted["acceptance"]["by"], "admin");
    let reopened = becomes(&s, id, "open", within(2)).await;
    assert_eq!(reopened["id"], id, "the same finding reopens");
    let trail = s.admin_get("/v1/audit?kind=governance").await;
    assert!(trail.text.contains("finding.accept"), "{}", trail.text);

    // The inventory, as JSON and CSV.
    let inventory = s.admin_get("/v1/inventory").await.ok().clone();
    let row = inventory["agents"].as_array().unwrap().iter().find(|a| a["id"] == agent.id).unwrap().clone();
    assert_eq!(row["owner"], boss);
    assert_eq!(row["mode"], "delegated");
    assert_eq!(row["max_scope"], json!(["secrets.read"]));
    assert!(row["trust"].as_f64().is_some());
    assert!(row["open_findings"].as_array().unwrap().iter().any(|k| k == "broad_grant"), "{row}");
    let csv = s.admin_get("/v1/inventory?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let mut lines = csv.text.lines();
    assert!(lines.next().unwrap().starts_with("id,name,owner,owner_email,owner_status,mode,status,max_scope"));
    let line = lines.find(|l| l.starts_with(&agent.id)).expect("a CSV row for the agent");
    assert!(line.contains("broad_grant") && line.contains(&boss), "{line}");
    s.admin_get("/v1/inventory?format=xml").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.get("/v1/inventory").await.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    s.admin_get("/v1/findings?kind=nope").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn the_webhook_does_not_follow_redirects() {
    let hits = Arc::new(Mutex::new((0usize, 0usize)));
    let (to_hook, to_landing) = (Arc::clone(&hits), Arc::clone(&hits));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move || {
                let hits = Arc::clone(&to_hook);
                async move {
                    hits.lock().unwrap().0 += 1;
                    (AxumStatus::TEMPORARY_REDIRECT, [("location", "/landing")])
                }
            }),
        )
        .route(
            "/landing",
            axum::routing::post(move || {
                let hits = Arc::clone(&to_landing);
                async move {
                    hits.lock().unwrap().1 += 1;
                    AxumStatus::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = Server::start_with(config(GovernanceFile {
        webhook_url: Some(format!("http://{addr}/hook")),
        webhook_attempts: Some(1),
        danger_allow_private_webhook: Some(true),
        ..Default::default()
    }))
    .await;
    let boss = s.human(&["*"]).await;
    let agent = s.agent(&boss, "delegated", &["secrets.read"]).await;
    appears(&s, &agent.id, "broad_grant", within(0)).await;
    let hit = poll(Duration::from_secs(15), || async { (hits.lock().unwrap().0 > 0).then_some(()) }).await;
    assert!(hit.is_some(), "the webhook was never called");
    // Deliveries are made one after the other, so once a second one has reached the hook
    // the first is over, with its redirect followed if it ever would be.
    let other = s.agent(&boss, "delegated", &["secrets.read"]).await;
    appears(&s, &other.id, "broad_grant", within(0)).await;
    let second = poll(Duration::from_secs(15), || async { (hits.lock().unwrap().0 > 1).then_some(()) }).await;
    assert!(second.is_some(), "the webhook was called only once");
    assert_eq!(hits.lock().unwrap().1, 0, "the redirect was followed");
    s.stop().await;
}

#[test]
fn a_loopback_webhook_is_refused_without_the_danger_key() {
    let hook = || GovernanceFile { webhook_url: Some("http://127.0.0.1:9/hook".into()), ..Default::default() };
    let refused = warrant_server::Settings::from_config(config(hook())).unwrap_err().to_string();
    assert!(refused.contains("danger_allow_private_webhook"), "{refused}");
    let allowed = GovernanceFile { danger_allow_private_webhook: Some(true), ..hook() };
    assert!(warrant_server::Settings::from_config(config(allowed)).is_ok());
}
