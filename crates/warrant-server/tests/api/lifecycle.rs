//! Agent and human lifecycle: suspended, retired and expired agents, disabled humans and
//! owners are refused; resume restores a suspended agent; retirement is final.

use reqwest::StatusCode;
use serde_json::json;
use warrant_core::UnixTime;

use crate::testkit::{new_key, now, until, Reply, Server};

/// Asserts that a token request was refused because an agent or its owner may not act:
/// `invalid_client` (401) or `invalid_grant` (400).
#[track_caller]
fn refused_for_owner(reply: &Reply) {
    match reply.body["error"].as_str() {
        Some("invalid_client") => reply.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        Some("invalid_grant") => reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
        _ => panic!("expected invalid_client or invalid_grant: {} {}", reply.status, reply.text),
    }
}

#[tokio::test]
async fn a_suspended_agent_is_refused_until_resumed() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    s.client_credentials(&agent, "p", &[]).await.ok();

    let reply = s.admin_action(&format!("/v1/agents/{}/suspend", agent.id)).await;
    assert_eq!(reply.ok()["status"], "suspended");
    s.client_credentials(&agent, "p", &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(s.admin_get(&format!("/v1/agents/{}", agent.id)).await.ok()["status"], "suspended");

    let reply = s.admin_action(&format!("/v1/agents/{}/resume", agent.id)).await;
    assert_eq!(reply.ok()["status"], "active");
    s.client_credentials(&agent, "p", &[]).await.ok();
}

#[tokio::test]
async fn a_retired_agent_is_refused_for_good() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let agent = s.agent(&owner, "autonomous", &["crm.read"]).await;
    s.client_credentials(&agent, "p", &[]).await.ok();

    let reply = s.admin_delete(&format!("/v1/agents/{}", agent.id)).await;
    assert_eq!(reply.ok()["status"], "retired");
    s.client_credentials(&agent, "p", &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    s.admin_action(&format!("/v1/agents/{}/resume", agent.id)).await.api_error(StatusCode::CONFLICT, "conflict");
    s.admin_action(&format!("/v1/agents/{}/suspend", agent.id)).await.api_error(StatusCode::CONFLICT, "conflict");
    // Retiring again is harmless; the agent stays retired and listed.
    assert_eq!(s.admin_delete(&format!("/v1/agents/{}", agent.id)).await.ok()["status"], "retired");
    let list = s.admin_get("/v1/agents").await;
    let listed = list.ok()["agents"].as_array().unwrap().iter().find(|a| a["id"] == agent.id.as_str()).cloned();
    assert_eq!(listed.unwrap()["status"], "retired");
    s.client_credentials(&agent, "p", &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn an_expired_ephemeral_agent_is_refused() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let ephemeral = |expires_at: i64| {
        let key = new_key();
        let mut body = Server::agent_body(&owner, "autonomous", &["crm.read"], &key);
        body["expires_at"] = json!(expires_at);
        (body, key)
    };

    // While it lives, its warrants end no later than it does.
    let expires_at = now().0 + 60;
    let (body, key) = ephemeral(expires_at);
    let living = s.agent_from(body, key).await;
    assert_eq!(s.admin_get(&format!("/v1/agents/{}", living.id)).await.ok()["expires_at"], expires_at);
    let (_, w) = s.warrant(&s.client_credentials(&living, "p", &[]).await).await;
    assert_eq!(w.typed.exp.0, expires_at, "the default lifetime is capped at the agent's expiry");

    // Once it has expired, it is refused.
    let expires_at = now().0 + 2;
    let (body, key) = ephemeral(expires_at);
    let agent = s.agent_from(body, key).await;
    // Wall-clock by necessity (see `until`): expiry on a manual clock is the engine's tests' business.
    until(UnixTime(expires_at + 1)).await;
    s.client_credentials(&agent, "p", &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        s.admin_get(&format!("/v1/agents/{}", agent.id)).await.ok()["status"],
        "active",
        "expiry is not a status"
    );
}

#[tokio::test]
async fn a_disabled_human_can_no_longer_delegate() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&owner, "delegated", &["crm.*"]).await;
    let b = s.agent(&owner, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;
    let (root, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;

    let reply = s.admin_action(&format!("/v1/humans/{human}/disable")).await;
    assert_eq!(reply.ok()["status"], "disabled");
    assert_eq!(s.admin_get(&format!("/v1/humans/{human}")).await.ok()["status"], "disabled");

    // The session they opened before is refused, and so is a new one.
    s.delegated_root(&session, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.admin_action(&format!("/v1/humans/{human}/sessions")).await.api_error(StatusCode::CONFLICT, "conflict");
    // Work already started on their behalf cannot be delegated further.
    s.delegate(&root, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // They can own no new agent.
    let key = new_key();
    let reply = s.admin_post("/v1/agents", &Server::agent_body(&human, "delegated", &["crm.read"], &key)).await;
    reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn an_agent_whose_owner_is_disabled_is_refused() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let human = s.human(&["crm.*"]).await;
    let autonomous = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let delegated = s.agent(&owner, "delegated", &["crm.*"]).await;
    let other = s.agent(&human, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;
    s.client_credentials(&autonomous, "p", &[]).await.ok();
    s.delegated_root(&session, &delegated, &[]).await.ok();
    let (root, _) = s.warrant(&s.delegated_root(&session, &other, &[]).await).await;

    s.admin_action(&format!("/v1/humans/{owner}/disable")).await.ok();
    refused_for_owner(&s.client_credentials(&autonomous, "p", &[]).await);
    refused_for_owner(&s.delegated_root(&session, &delegated, &[]).await);
    refused_for_owner(&s.delegate(&root, &delegated, &[]).await);
    // The active human's own agent still works.
    s.delegated_root(&session, &other, &[]).await.ok();
}

#[tokio::test]
async fn an_orphan_is_handed_to_a_new_owner_and_works_again_and_a_disabled_owner_comes_back_with_enable() {
    let s = Server::start().await;
    let leaver = s.human(&[]).await;
    let successor = s.human(&[]).await;
    let robot = s.agent(&leaver, "autonomous", &["crm.read"]).await;
    let other = s.agent(&leaver, "autonomous", &["crm.read"]).await;
    s.admin_action(&format!("/v1/humans/{leaver}/disable")).await.ok();
    refused_for_owner(&s.client_credentials(&robot, "p", &[]).await);

    // Not to a disabled human, not to nobody, not with a malformed body.
    let to = |owner: &str| json!({ "owner": owner });
    let path = format!("/v1/agents/{}/owner", robot.id);
    s.admin_post(&path, &to(&leaver)).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_post(&path, &to("hum_000000000000000000000000"))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_post(&path, &json!({ "owner": successor, "x": 1 }))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let missing = "/v1/agents/agt_000000000000000000000000/owner";
    s.admin_post(missing, &to(&successor)).await.api_error(StatusCode::NOT_FOUND, "not_found");

    let moved = s.admin_post(&path, &to(&successor)).await;
    assert_eq!(moved.ok()["owner"], successor.as_str());
    let (_, w) = s.warrant(&s.client_credentials(&robot, "p", &[]).await).await;
    assert_eq!(w.typed.owner.as_str(), successor, "new warrants name the new owner");
    refused_for_owner(&s.client_credentials(&other, "p", &[]).await);
    let audit = s.admin_get(&format!("/v1/audit?kind=registry&agent={}", robot.id)).await;
    let change = audit.ok()["records"][0]["details"].clone();
    assert_eq!(change["op"], "agent.owner", "{change}");
    assert_eq!(change["change"], json!({ "from": leaver, "to": successor }));

    // Enabling the leaver again lets their remaining agent act again.
    assert_eq!(s.admin_action(&format!("/v1/humans/{leaver}/enable")).await.ok()["status"], "active");
    s.client_credentials(&other, "p", &[]).await.ok();
    // A retired agent cannot be handed over.
    s.admin_delete(&format!("/v1/agents/{}", other.id)).await.ok();
    let retired = format!("/v1/agents/{}/owner", other.id);
    s.admin_post(&retired, &to(&successor)).await.api_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn a_suspended_agent_in_the_chain_stops_further_delegation() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let session = s.session(&human).await;
    let (root, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;

    s.admin_action(&format!("/v1/agents/{}/suspend", a.id)).await.ok();
    s.delegate(&root, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.admin_action(&format!("/v1/agents/{}/resume", a.id)).await.ok();
    s.delegate(&root, &b, &[]).await.ok();
}

#[tokio::test]
async fn autonomous_work_of_a_disabled_owner_cannot_be_delegated() {
    let s = Server::start().await;
    let o1 = s.human(&[]).await;
    let o2 = s.human(&[]).await;
    let a = s.agent(&o1, "autonomous", &["reports.*"]).await;
    let b = s.agent(&o2, "autonomous", &["reports.*"]).await;
    let (root, w) = s.warrant(&s.client_credentials(&a, "reports", &[]).await).await;
    assert_eq!(w.claims["task"]["human"], o1.as_str());

    // The human accountable for the task is disabled: no new work on their behalf.
    s.admin_action(&format!("/v1/humans/{o1}/disable")).await.ok();
    s.delegate(&root, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn an_agent_in_the_chain_whose_owner_is_disabled_stops_further_delegation() {
    let s = Server::start().await;
    let alice = s.human(&["crm.*"]).await;
    let owner_of_a = s.human(&[]).await;
    let a = s.agent(&owner_of_a, "delegated", &["crm.*"]).await;
    let b = s.agent(&alice, "delegated", &["crm.*"]).await;
    let session = s.session(&alice).await;
    let (root, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;
    s.delegate(&root, &b, &[]).await.ok();

    // A is orphaned: the warrant it holds may no longer be passed on, even though the
    // human it acts for is still active.
    s.admin_action(&format!("/v1/humans/{owner_of_a}/disable")).await.ok();
    let reply = s.delegate(&root, &b, &[]).await;
    reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(reply.body["error_description"].as_str().unwrap().contains("is disabled"), "{}", reply.text);
}
