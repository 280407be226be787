//! Tasks close access when work ends: completing a task (as an administrator, or as the
//! agent holding its root warrant) ends every warrant of it, sub-agents' included, for the
//! very next call; `GET /v1/tasks/{id}` shows the tree and each warrant's state.

use reqwest::StatusCode;
use serde_json::Value;

use crate::testkit::{assert_allow, assert_deny, Server};

const ENT: &[&str] = &["crm.read:customers/**"];
const MAX: &[&str] = &["crm.*"];

async fn read(s: &Server, token: &str) -> Value {
    s.authorize(token, "crm.read", "customers/5", Value::Null).await
}

/// Asserts that completing a task ended `token`: a deny, and no further delegation.
async fn ended(s: &Server, human: &str, token: &str) {
    let d = read(s, token).await;
    assert_deny(&d, "revoked");
    assert!(d["reasons"].to_string().contains("task completed"), "{d}");
    let agent = s.agent(human, "delegated", MAX).await;
    s.delegate(token, &agent, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn completing_a_task_as_admin_ends_every_warrant_of_it() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 3, "close ticket 12").await;
    let d_agent = s.agent(&c.human, "delegated", MAX).await;
    let (branch, _) = s.sub_warrant(c.token(0), &d_agent).await;
    // Another task of the same human and agents is not touched.
    let (other, _) = s.root_warrant(&c.session, &c.agents[0], "another ticket").await;

    let task = s.task(&c.task()).await;
    assert_eq!(task["id"], c.task().as_str());
    assert_eq!(task["purpose"], "close ticket 12");
    assert_eq!(task["human"], c.human.as_str());
    assert_eq!(task["root_agent"], c.agents[0].id.as_str());
    assert_eq!(task["ended"], false);
    let warrants = task["warrants"].as_array().unwrap();
    assert_eq!(warrants.len(), 4);
    // The tree: root, then B under the root, C under B, D under the root.
    let expect = [
        (c.jti(0), None, c.agents[0].id.clone(), 1),
        (c.jti(1), Some(c.jti(0)), c.agents[1].id.clone(), 2),
        (c.jti(2), Some(c.jti(1)), c.agents[2].id.clone(), 3),
    ];
    for (w, (jti, parent, agent, depth)) in warrants.iter().zip(expect) {
        assert_eq!(w["jti"], jti.as_str());
        assert_eq!(w["parent"].as_str().map(str::to_owned), parent);
        assert_eq!(w["agent"], agent.as_str());
        assert_eq!(w["chain"].as_array().unwrap().len(), depth);
        assert_eq!(w["state"], "active");
        assert!(w["expires_at"].as_i64().unwrap() > w["issued_at"].as_i64().unwrap());
        assert!(w["scope"].is_string());
    }
    assert_eq!(warrants[3]["parent"], c.jti(0).as_str());
    assert_eq!(warrants[3]["agent"], d_agent.id.as_str());
    for t in [c.token(0), c.token(1), c.token(2), &branch, &other] {
        assert_allow(&read(&s, t).await);
    }

    let done = s.complete_task(&c.task(), &s.admin).await;
    assert_eq!(done.ok()["revoked_warrants"], 4);
    for t in [c.token(0), c.token(1), c.token(2), &branch] {
        ended(&s, &c.human, t).await;
    }
    assert_allow(&read(&s, &other).await);

    let task = s.task(&c.task()).await;
    assert_eq!(task["ended"], true);
    assert!(task["warrants"].as_array().unwrap().iter().all(|w| w["state"] == "revoked"), "{task}");
    // Completing it again is harmless and ends nothing more.
    assert_eq!(s.complete_task(&c.task(), &s.admin).await.ok()["revoked_warrants"], 0);
    let audit = s.admin_get(&format!("/v1/audit?task={}&kind=revocation&order=oldest", c.task())).await;
    let records = audit.ok()["records"].as_array().unwrap().clone();
    assert!(!records.is_empty());
    assert_eq!(records[0]["details"]["kind"], "task");
}

#[tokio::test]
async fn the_root_warrant_holder_may_complete_its_task_and_nobody_else() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 3, "summarise accounts").await;
    let elsewhere = s.chain(ENT, MAX, 1, "other work").await;
    let task = c.task();

    // No bearer; a garbage bearer; a sub-agent's warrant; another task's root warrant.
    let reply = s.send(s.http.post(s.url(&format!("/v1/tasks/{task}/complete")))).await;
    reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    s.complete_task(&task, "garbage").await.api_error(StatusCode::FORBIDDEN, "forbidden");
    s.complete_task(&task, c.token(1)).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    s.complete_task(&task, c.token(2)).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    s.complete_task(&task, elsewhere.token(0)).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    s.complete_task(&task, &c.session).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    // None of that ended anything.
    for i in 0..3 {
        assert_allow(&read(&s, c.token(i)).await);
    }
    assert_eq!(s.task(&task).await["ended"], false);

    let done = s.complete_task(&task, c.token(0)).await;
    assert_eq!(done.ok()["revoked_warrants"], 3);
    for i in 0..3 {
        ended(&s, &c.human, c.token(i)).await;
    }
    assert_allow(&read(&s, elsewhere.token(0)).await);
    // The root warrant is spent: it cannot complete (or do) anything again.
    s.complete_task(&task, c.token(0)).await.api_error(StatusCode::FORBIDDEN, "forbidden");

    // Unknown and malformed task ids.
    s.complete_task("tsk_doesnotexist000000", &s.admin).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.complete_task("nonsense", &s.admin).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_get("/v1/tasks/tsk_doesnotexist000000").await.api_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn an_autonomous_root_agent_completes_its_own_task() {
    let s = Server::start().await;
    let owner = s.human(&[]).await;
    let robot = s.agent(&owner, "autonomous", &["crm.*"]).await;
    let helper = s.agent(&owner, "autonomous", &["crm.read:customers/**"]).await;
    let (root, decoded) = s.warrant(&s.client_credentials(&robot, "nightly sync", &[]).await).await;
    let (child, _) = s.sub_warrant(&root, &helper).await;
    assert_allow(&read(&s, &child).await);
    let task = decoded.typed.task.id.to_string();
    s.complete_task(&task, &child).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(s.complete_task(&task, &root).await.ok()["revoked_warrants"], 2);
    assert_deny(&read(&s, &child).await, "revoked");
    assert_deny(&read(&s, &root).await, "revoked");
}
