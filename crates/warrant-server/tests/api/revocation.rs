//! Revocation through the real server: a warrant takes its descendants with it, an agent
//! everything below it wherever it stands (a sibling branch lives on), a human every
//! warrant on their behalf; each is in force for the very next call, and survives a
//! restart. Revoked warrants cannot be exchanged.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{assert_allow, assert_deny, until, Chain, Server};

const ENT: &[&str] = &["crm.read:customers/**"];
const MAX: &[&str] = &["crm.*"];

/// Asserts that `token` is allowed to read a customer.
async fn allows(s: &Server, token: &str) {
    assert_allow(&s.authorize(token, "crm.read", "customers/1", Value::Null).await);
}

/// Asserts that `token` is denied with `code`.
async fn denies(s: &Server, token: &str, code: &str) -> Value {
    let d = s.authorize(token, "crm.read", "customers/1", Value::Null).await;
    assert_deny(&d, code);
    d
}

/// Asserts that `token` can no longer be exchanged for a delegation.
async fn not_exchangeable(s: &Server, c: &Chain, token: &str) {
    let agent = s.agent(&c.human, "delegated", MAX).await;
    s.delegate(token, &agent, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn revoking_a_parent_denies_its_descendants_on_the_next_call() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 3, "three levels").await;
    // A sibling of the middle warrant: A -> B' next to A -> B -> C.
    let sibling_agent = s.agent(&c.human, "delegated", MAX).await;
    let (sibling, _) = s.sub_warrant(c.token(0), &sibling_agent).await;
    for i in 0..3 {
        allows(&s, c.token(i)).await;
    }
    allows(&s, &sibling).await;

    // Revoke the middle warrant: it and its child deny on the very next call, no sleep.
    let r = s.revoke("warrant", &c.jti(1), "compromised sub-agent").await;
    assert_eq!(r["revoked_warrants"], 2);
    let d = denies(&s, c.token(1), "revoked").await;
    assert!(d["reasons"].to_string().contains("compromised sub-agent"), "{d}");
    denies(&s, c.token(2), "revoked").await;
    allows(&s, c.token(0)).await;
    allows(&s, &sibling).await;
    not_exchangeable(&s, &c, c.token(1)).await;
    not_exchangeable(&s, &c, c.token(2)).await;

    // Revoke the root: everything below it goes, the sibling too.
    let r = s.revoke("warrant", &c.jti(0), "task abandoned").await;
    assert_eq!(r["revoked_warrants"], 2, "the root and the sibling; the rest was already revoked: {r}");
    denies(&s, c.token(0), "revoked").await;
    denies(&s, &sibling, "revoked").await;
    denies(&s, c.token(2), "revoked").await;
    not_exchangeable(&s, &c, c.token(0)).await;
    not_exchangeable(&s, &c, &sibling).await;

    // The revocations are in the audit log.
    let revocations = s.admin_get("/v1/audit?kind=revocation&order=oldest").await;
    let records = revocations.ok()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["warrant"], c.jti(1).as_str());
    assert_eq!(records[0]["details"]["reason"], "compromised sub-agent");
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn revoking_an_agent_in_the_middle_spares_a_sibling_branch() {
    let s = Server::start().await;
    // A -> B -> C, and A -> D.
    let c = s.chain(ENT, MAX, 3, "research").await;
    let d_agent = s.agent(&c.human, "delegated", MAX).await;
    let (d_token, _) = s.sub_warrant(c.token(0), &d_agent).await;
    let b = c.agents[1].id.clone();

    let r = s.revoke("agent", &b, "misbehaving").await;
    assert_eq!(r["revoked_warrants"], 2, "B's and C's warrants: {r}");
    denies(&s, c.token(1), "revoked").await;
    denies(&s, c.token(2), "revoked").await;
    allows(&s, &d_token).await;
    allows(&s, c.token(0)).await;

    // The agent is suspended: it gets no new warrant, and nothing is delegated through it.
    assert_eq!(s.admin_get(&format!("/v1/agents/{b}")).await.ok()["status"], "suspended");
    s.delegate(c.token(0), &c.agents[1], &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    not_exchangeable(&s, &c, c.token(1)).await;
    // A stays able to delegate to others.
    let e = s.agent(&c.human, "delegated", MAX).await;
    let (e_token, _) = s.sub_warrant(c.token(0), &e).await;
    allows(&s, &e_token).await;

    // Resuming the agent does not bring its revoked warrants back.
    s.admin_action(&format!("/v1/agents/{b}/resume")).await.ok();
    denies(&s, c.token(1), "revoked").await;
    denies(&s, c.token(2), "revoked").await;
}

#[tokio::test]
async fn revoking_a_human_denies_every_warrant_on_their_behalf() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 2, "first task").await;
    // A second task for the same human with another root agent.
    let other_root = s.agent(&c.human, "delegated", MAX).await;
    let (second, _) = s.root_warrant(&c.session, &other_root, "second task").await;
    // Autonomous work of an agent the human owns traces to them too.
    let robot = s.agent(&c.human, "autonomous", &["crm.read:customers/**"]).await;
    let (autonomous, _) = s.warrant(&s.client_credentials(&robot, "nightly sync", &[]).await).await;
    // Someone else's work is untouched.
    let bystander = s.chain(ENT, MAX, 2, "unrelated").await;
    for t in [c.token(0), c.token(1), &second, &autonomous, bystander.token(0), bystander.token(1)] {
        allows(&s, t).await;
    }

    let r = s.revoke("human", &c.human, "left the company").await;
    assert_eq!(r["revoked_warrants"], 4);
    for t in [c.token(0), c.token(1), &second, &autonomous] {
        denies(&s, t, "revoked").await;
    }
    allows(&s, bystander.token(0)).await;
    allows(&s, bystander.token(1)).await;
    not_exchangeable(&s, &c, c.token(0)).await;

    // A leaked session of theirs is revoked with them: it starts no new work.
    let leaked = s.delegated_root(&c.session, &other_root, &[("task_purpose", "with a leaked session")]).await;
    leaked.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(leaked.text.contains("revoked"), "{}", leaked.text);
    // The bystander's session is untouched, and a session opened afterwards works.
    s.delegated_root(&bystander.session, &bystander.agents[0], &[]).await.expect(StatusCode::OK);
    let fresh = s.session(&c.human).await;
    s.delegated_root(&fresh, &other_root, &[("task_purpose", "signed in again")]).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn revocations_refuse_bad_input() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 1, "p").await;
    let s = &s;
    let post = |body: Value| async move { s.admin_post("/v1/revocations", &body).await };
    post(json!({"kind": "warrant", "id": "wrt_doesnotexist00000000", "reason": "x"}))
        .await
        .api_error(StatusCode::NOT_FOUND, "not_found");
    post(json!({"kind": "warrant", "id": "nonsense", "reason": "x"}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    post(json!({"kind": "warrant", "id": c.jti(0), "reason": "  "}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    post(json!({"kind": "planet", "id": c.jti(0), "reason": "x"}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Without the admin token nothing is revoked.
    let reply = s
        .send(
            s.http
                .post(s.url("/v1/revocations"))
                .bearer_auth(c.token(0))
                .json(&json!({"kind": "warrant", "id": c.jti(0), "reason": "x"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    allows(s, c.token(0)).await;
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let mut s = Server::start().await;
    let c = s.chain(ENT, MAX, 3, "long job").await;
    let untouched = s.chain(ENT, MAX, 2, "other job").await;
    let by_agent = s.chain(ENT, MAX, 2, "agent job").await;
    let by_task = s.chain(ENT, MAX, 2, "task job").await;
    s.revoke("warrant", &c.jti(1), "cut the branch").await;
    s.revoke("agent", &by_agent.agents[0].id, "rogue").await;
    s.complete_task(&by_task.task(), &s.admin.clone()).await.ok();
    denies(&s, c.token(1), "revoked").await;

    s.restart().await;
    s.healthy().await;

    denies(&s, c.token(1), "revoked").await;
    denies(&s, c.token(2), "revoked").await;
    denies(&s, by_agent.token(0), "revoked").await;
    denies(&s, by_agent.token(1), "revoked").await;
    denies(&s, by_task.token(0), "revoked").await;
    denies(&s, by_task.token(1), "revoked").await;
    allows(&s, c.token(0)).await;
    allows(&s, untouched.token(0)).await;
    allows(&s, untouched.token(1)).await;
    not_exchangeable(&s, &c, c.token(1)).await;
    not_exchangeable(&s, &by_task, by_task.token(0)).await;
    assert_eq!(s.admin_get(&format!("/v1/agents/{}", by_agent.agents[0].id)).await.ok()["status"], "suspended");
    let task = s.task(&by_task.task()).await;
    assert_eq!(task["ended"], true);
    assert!(task["warrants"].as_array().unwrap().iter().all(|w| w["state"] == "revoked"), "{task}");
    let task = s.task(&c.task()).await;
    let states: Vec<&str> = task["warrants"].as_array().unwrap().iter().map(|w| w["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["active", "revoked", "revoked"]);

    // The chain written by both lives verifies as one.
    assert_eq!(s.verify_audit().await["ok"], true);
}

/// A server whose baselines and trust are off, so that a burst of delegations or mints
/// cannot quarantine anybody: the stress tests below are about revocation alone.
async fn without_guardrails() -> Server {
    Server::start_with(warrant_server::FileConfig {
        guard: Some(warrant_server::config::GuardFile { enabled: Some(false), ..Default::default() }),
        ..Default::default()
    })
    .await
}

/// Every warrant in `issued` is denied as revoked and cannot be exchanged any more.
async fn all_dead(s: &Server, c: &Chain, issued: &[String], what: &str) {
    for token in issued {
        let d = s.authorize(token, "crm.read", "customers/1", Value::Null).await;
        assert_eq!(d["decision"], "deny", "{what}: a warrant issued around the revocation is alive: {d}");
        assert_eq!(d["code"], "revoked", "{what}: {d}");
        not_exchangeable(s, c, token).await;
    }
}

/// Exchanges of a warrant's children in flight while it is revoked: each child is either
/// refused or revoked with its parent, however the calls interleave; none is allowed
/// afterwards or can mint grandchildren. Repeated with the revocation landing at
/// different points of the burst: once `round` exchanges have been answered. Over the
/// socket, so that the server serves the exchanges on its worker threads in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_exchanged_while_their_parent_is_revoked_never_survive() {
    const CHILDREN: usize = 24;
    let s = without_guardrails().await.over_socket();
    let mut survivors_before_fix = 0;
    for round in 0..6u64 {
        let c = s.chain(ENT, MAX, 1, "burst of delegations").await;
        let mut agents = Vec::new();
        for _ in 0..CHILDREN {
            agents.push(s.agent(&c.human, "delegated", MAX).await);
        }
        let parent = c.token(0).to_owned();
        let (answered, mut counted) = tokio::sync::watch::channel(0usize);
        let exchanges = futures_util::future::join_all(agents.iter().map(|a| {
            let parent = parent.clone();
            let (s, answered) = (&s, &answered);
            async move {
                let reply = s.delegate(&parent, a, &[]).await;
                answered.send_modify(|n| *n += 1);
                reply
            }
        }));
        let revoke = async {
            let after = usize::try_from(round).unwrap();
            counted.wait_for(|n| *n >= after).await.unwrap();
            s.revoke("warrant", &c.jti(0), "revoked mid-burst").await
        };
        let (replies, revoked) = tokio::join!(exchanges, revoke);
        assert!(revoked["revoked_warrants"].as_u64().unwrap() >= 1, "{revoked}");
        let mut issued = Vec::new();
        for reply in replies {
            if reply.status == StatusCode::OK {
                issued.push(reply.body["access_token"].as_str().unwrap().to_owned());
            } else {
                reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        survivors_before_fix += issued.len();
        all_dead(&s, &c, &issued, &format!("round {round}")).await;
        denies(&s, c.token(0), "revoked").await;
    }
    // Some exchanges must have won the race, or the test proved nothing.
    assert!(survivors_before_fix > 0, "no child was issued before the revocation in any round");
    assert_eq!(s.verify_audit().await["ok"], true);
}

/// `client_credentials` mints in flight while their agent is revoked: after the agent is
/// resumed, no warrant minted around the revocation allows again. The revocation lands
/// once `round` mints have been answered; over the socket, like the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warrants_minted_while_their_agent_is_revoked_stay_dead_after_resume() {
    const MINTS: usize = 24;
    let s = without_guardrails().await.over_socket();
    let c = s.chain(ENT, MAX, 1, "owner").await;
    let mut issued_total = 0;
    for round in 0..6u64 {
        let bot = s.agent(&c.human, "autonomous", &["crm.read:customers/**"]).await;
        let (answered, mut counted) = tokio::sync::watch::channel(0usize);
        let mints = futures_util::future::join_all((0..MINTS).map(|_| async {
            let reply = s.client_credentials(&bot, "nightly sync", &[]).await;
            answered.send_modify(|n| *n += 1);
            reply
        }));
        let revoke = async {
            let after = usize::try_from(round).unwrap();
            counted.wait_for(|n| *n >= after).await.unwrap();
            s.revoke("agent", &bot.id, "revoked mid-burst").await
        };
        let (replies, _) = tokio::join!(mints, revoke);
        let mut issued = Vec::new();
        for reply in replies {
            if reply.status == StatusCode::OK {
                issued.push(reply.body["access_token"].as_str().unwrap().to_owned());
            } else {
                assert!(
                    reply.body["error"] == "invalid_client" || reply.body["error"] == "invalid_grant",
                    "{}",
                    reply.text
                );
            }
        }
        // A warrant and its issuance record commit together: one record per warrant
        // answered, none for a refused mint, and every one names a recorded warrant.
        let records = s.admin_get(&format!("/v1/audit?agent={}&kind=issuance&limit=1000", bot.id)).await;
        let records = records.ok()["records"].as_array().unwrap().clone();
        assert_eq!(records.len(), issued.len(), "round {round}: {records:?}");
        for record in &records {
            let jti = record["warrant"].as_str().unwrap();
            s.admin_get(&format!("/v1/warrants/{jti}")).await.expect(StatusCode::OK);
        }
        s.admin_action(&format!("/v1/agents/{}/resume", bot.id)).await.expect(StatusCode::OK);
        issued_total += issued.len();
        for token in &issued {
            let d = s.authorize(token, "crm.read", "customers/1", Value::Null).await;
            assert_eq!(d["decision"], "deny", "round {round}: minted around the revocation, allowed after resume: {d}");
            assert_eq!(d["code"], "revoked", "{d}");
        }
        // A mint after the resume is good.
        let fresh = s.client_credentials(&bot, "after resume", &[]).await;
        let fresh = fresh.ok()["access_token"].as_str().unwrap().to_owned();
        assert_allow(&s.authorize(&fresh, "crm.read", "customers/1", Value::Null).await);
    }
    assert!(issued_total > 0, "no mint won the race in any round");
}

/// `GET /v1/warrants/{jti}` tells what a signature check cannot: whether a warrant was
/// revoked (and by which revocation, also when it came through an ancestor) or has expired.
#[tokio::test]
async fn a_warrants_state_is_active_revoked_or_expired() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 2, "state").await;
    let state = |jti: String| {
        let s = &s;
        async move { s.admin_get(&format!("/v1/warrants/{jti}")).await }
    };
    let active = state(c.jti(1)).await;
    let active = active.ok();
    assert_eq!(active["state"], "active", "{active}");
    assert_eq!(active["parent"], c.jti(0).as_str());
    assert_eq!(active["task"], c.task().as_str());
    assert!(active["revocation"].is_null(), "{active}");

    // Revoking the root revokes the child too; the child's record names the revocation.
    let r = s.revoke("warrant", &c.jti(0), "wrong customer").await;
    for i in 0..2 {
        let revoked = state(c.jti(i)).await;
        let revoked = revoked.ok();
        assert_eq!(revoked["state"], "revoked", "{revoked}");
        assert_eq!(revoked["revocation"]["id"], r["revocation_id"], "{revoked}");
        assert_eq!(revoked["revocation"]["reason"], "wrong customer");
        assert_eq!(revoked["revocation"]["kind"], "warrant");
        assert_eq!(revoked["revocation"]["target"], c.jti(0).as_str());
    }

    // An expired warrant is `expired`.
    let agent = s.agent(&c.human, "autonomous", MAX).await;
    let issued = s.client_credentials(&agent, "short", &[("ttl", "1")]).await;
    let jti = issued.ok()["warrant_id"].as_str().unwrap().to_owned();
    let (_, short) = s.warrant(&issued).await;
    // Wall-clock by necessity (see `until`): expiry on a manual clock is the engine's tests' business.
    until(short.typed.exp.plus(1)).await;
    let expired = state(jti).await;
    assert_eq!(expired.ok()["state"], "expired", "{}", expired.text);

    // Unknown, malformed, and without the admin token.
    state("wrt_nope".into()).await.api_error(StatusCode::NOT_FOUND, "not_found");
    state("agt_nope".into()).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.get(&format!("/v1/warrants/{}", c.jti(0))).await.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
