//! The evidence through the real server: the provenance trace of a sub-sub-agent's
//! decision back to the human, audit queries, verification (and one edit of the SQLite
//! file under a running server, named by `/v1/audit/verify`), and the metrics.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{assert_allow, assert_deny, skip_on_postgres, Server};

fn seq(decision: &Value) -> u64 {
    decision["decision_id"].as_str().unwrap().strip_prefix("dec_").unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_trace_of_a_sub_sub_agent_decision_leads_back_to_the_human() {
    let s = Server::start().await;
    let purpose = "reconcile invoices for March";
    let c = s.chain(&["crm.read:customers/**", "crm.write:customers/**"], &["crm.*"], 3, purpose).await;
    let decision = s.authorize(c.token(2), "crm.read", "customers/42", json!({"rows": 3})).await;
    assert_allow(&decision);
    let id = decision["decision_id"].as_str().unwrap();

    let reply = s.admin_get(&format!("/v1/audit/{id}/trace")).await;
    let trace = reply.ok();
    // The record itself.
    assert_eq!(trace["record"]["seq"], seq(&decision));
    assert_eq!(trace["record"]["kind"], "decision");
    assert_eq!(trace["record"]["decision"], "allow");
    assert_eq!(trace["record"]["agent"], c.agents[2].id.as_str());
    assert_eq!(trace["record"]["details"]["chain"], json!(c.agents.iter().map(|a| &a.id).collect::<Vec<_>>()));
    // The human, by id.
    assert_eq!(trace["human"]["id"], c.human.as_str());
    assert_eq!(trace["human"]["status"], "active");
    assert!(trace["human"]["email"].as_str().unwrap().ends_with("@example.com"));
    // The task and its purpose.
    assert_eq!(trace["task"]["id"], c.task().as_str());
    assert_eq!(trace["task"]["purpose"], purpose);
    assert_eq!(trace["task"]["human"], c.human.as_str());
    assert_eq!(trace["task"]["root_agent"], c.agents[0].id.as_str());
    // Every agent, root first.
    let agents: Vec<&str> = trace["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(agents, c.agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>());
    for a in trace["agents"].as_array().unwrap() {
        assert_eq!(a["owner"], c.human.as_str());
        assert_eq!(a["mode"], "delegated");
        assert!(a["name"].as_str().unwrap().starts_with("agent "));
    }
    // Every warrant, root first, with its scope and expiry as issued.
    let warrants = trace["warrants"].as_array().unwrap();
    assert_eq!(warrants.len(), 3);
    for (i, w) in warrants.iter().enumerate() {
        let issued = &c.warrants[i].1.typed;
        assert_eq!(w["jti"], issued.jti.as_str());
        assert_eq!(w["agent"], c.agents[i].id.as_str());
        assert_eq!(w["scope"], issued.scope.as_str());
        assert_eq!(w["expires_at"], issued.exp.0);
        assert_eq!(w["issued_at"], issued.iat.0);
        let parent = if i == 0 { Value::Null } else { json!(c.jti(i - 1)) };
        assert_eq!(w["parent"], parent);
    }
    // The deciding policies, with the set's text as it was.
    let policies = &trace["policies"];
    assert_eq!(policies["deciding"], json!(["permit-within-scope"]));
    assert_eq!(policies["version"], decision["policy_version"]);
    assert_eq!(policies["hash"].as_str().unwrap().len(), 64);
    let text = policies["text"].as_str().unwrap();
    assert!(text.contains(r#"@id("permit-within-scope")"#) && text.contains("cost-ceiling"), "{text}");

    // A deny by policy traces to the forbid that decided.
    let denied = s.authorize(c.token(2), "crm.read", "customers/42", json!({"estimated_cost": 50_000})).await;
    assert_deny(&denied, "policy");
    let trace = s.admin_get(&format!("/v1/audit/{}/trace", seq(&denied))).await;
    assert_eq!(trace.ok()["policies"]["deciding"], json!(["cost-ceiling"]));
    assert_eq!(trace.ok()["human"]["id"], c.human.as_str());

    // A delegation record traces too (no policies: nothing was decided).
    let delegations = s.admin_get(&format!("/v1/audit?warrant={}&kind=delegation", c.jti(2))).await;
    let record = delegations.ok()["records"][0].clone();
    let trace = s.admin_get(&format!("/v1/audit/{}/trace", record["seq"])).await;
    assert_eq!(trace.ok()["warrants"].as_array().unwrap().len(), 3);
    assert_eq!(trace.ok()["task"]["purpose"], purpose);
    assert_eq!(trace.ok()["policies"], Value::Null);

    // Unknown and malformed ids.
    s.admin_get("/v1/audit/dec_999999/trace").await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_get("/v1/audit/nonsense/trace").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let anonymous = s.get(&format!("/v1/audit/{id}/trace")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
}

#[tokio::test]
async fn audit_queries_filter_and_page_and_the_chain_verifies() {
    let s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 2, "filtered").await;
    let other = s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "noise").await;
    let mine = [
        s.authorize(c.token(1), "crm.read", "customers/1", Value::Null).await,
        s.authorize(c.token(1), "crm.write", "customers/1", Value::Null).await,
        s.authorize(c.token(0), "crm.read", "customers/2", Value::Null).await,
    ];
    s.authorize(other.token(0), "crm.read", "customers/3", Value::Null).await;

    let q = |query: String| {
        let s = &s;
        async move {
            let reply = s.admin_get(&format!("/v1/audit?{query}")).await;
            reply.ok()["records"].as_array().unwrap().clone()
        }
    };
    let task = c.task();
    let decisions = q(format!("task={task}&kind=decision&order=oldest")).await;
    let seqs: Vec<u64> = decisions.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, mine.iter().map(seq).collect::<Vec<_>>(), "oldest first, this task only");
    // Newest first by default.
    let newest = q(format!("task={task}&kind=decision")).await;
    let newest: Vec<u64> = newest.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(newest, seqs.iter().rev().copied().collect::<Vec<_>>(), "newest first by default");
    assert!(decisions.iter().all(|r| r["kind"] == "decision" && r["task"] == task.as_str()));
    for r in &decisions {
        assert_eq!(r["hash"].as_str().unwrap().len(), 64);
        assert_eq!(r["human"], c.human.as_str());
    }
    // Issuance and delegation records of the task, and the other filters.
    let all = q(format!("task={task}")).await;
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["decision", "decision", "decision", "delegation", "issuance"]);
    assert_eq!(q(format!("task={task}&decision=deny")).await.len(), 1);
    assert_eq!(q(format!("agent={}&kind=decision", c.agents[1].id)).await.len(), 2);
    assert_eq!(q(format!("warrant={}&kind=decision", c.jti(0))).await.len(), 1);
    assert_eq!(q(format!("human={}&kind=decision", c.human)).await.len(), 3);
    assert_eq!(q("kind=registry".into()).await.len(), 5, "two humans and three agents registered");
    assert_eq!(q(format!("task={task}&until=0")).await.len(), 0);
    // Paging: newest first with `before`, oldest first with `after`; `next` is the cursor.
    let page = s.admin_get(&format!("/v1/audit?task={task}&limit=2")).await;
    let first: Vec<u64> = page.ok()["records"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let next = page.ok()["next"].as_u64().unwrap();
    assert_eq!(Some(&next), first.last());
    let rest = q(format!("task={task}&before={next}")).await;
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|r| r["seq"].as_u64().unwrap() < next));
    let last = s.admin_get(&format!("/v1/audit?task={task}&before={next}&limit=3")).await;
    assert!(last.ok()["next"].as_u64().is_some(), "a full page has a cursor");
    let page = s.admin_get(&format!("/v1/audit?task={task}&limit=2&order=oldest")).await;
    let next = page.ok()["next"].as_u64().unwrap();
    assert_eq!(q(format!("task={task}&order=oldest&after={next}")).await.len(), 3);
    assert!(s.admin_get(&format!("/v1/audit?task={task}&limit=10")).await.ok()["next"].is_null());
    // Bad filters are 400s.
    for bad in ["kind=gossip", "decision=maybe", "agent=nobody", "surprise=1", "order=sideways"] {
        s.admin_get(&format!("/v1/audit?{bad}")).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["records"].as_u64().unwrap() >= 10, "{report}");
    assert_eq!(report["first_bad"], Value::Null);
}

#[tokio::test]
async fn an_edited_record_under_a_running_server_is_named_by_verify() {
    if skip_on_postgres("edits an audit record through a second connection to the SQLite file `warrant.db`") {
        return;
    }
    let s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "p").await;
    let d = s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await;
    assert_allow(&d);
    s.authorize(c.token(0), "crm.read", "customers/2", Value::Null).await;
    assert_eq!(s.verify_audit().await["ok"], true);

    // Turn the allow into a deny behind the server's back.
    let db = rusqlite::Connection::open(s.data.join("warrant.db")).unwrap();
    // A bound on waiting for a write of the server's, not a pause.
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    warrant_store::sqlite::settle_audit_tail(&db).unwrap();
    let edited = db
        .execute(
            "UPDATE audit_records SET body = replace(body, '\"allow\"', '\"deny\"'), decision = 'deny' WHERE seq = ?1",
            [i64::try_from(seq(&d)).unwrap()],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(db);

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad"], seq(&d), "{report}");
    assert!(report["reason"].as_str().is_some_and(|r| !r.is_empty()), "{report}");
    // The server keeps deciding (and recording) while the evidence says what happened.
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/3", Value::Null).await);
    assert_eq!(s.verify_audit().await["first_bad"], seq(&d));
}

#[tokio::test]
async fn a_wiped_log_is_named_by_verify_through_the_witness() {
    if skip_on_postgres("wipes the audit log through a second connection to the SQLite file `warrant.db`") {
        return;
    }
    let mut s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "p").await;
    for i in 0..3 {
        assert_allow(&s.authorize(c.token(0), "crm.read", &format!("customers/{i}"), Value::Null).await);
    }
    // A graceful stop signs the head; the checkpoint is witnessed outside the database.
    s.restart().await;
    let witness = s.data.join("witness").join("audit-witness.jsonl");
    let lines = std::fs::read_to_string(&witness).unwrap();
    assert!(lines.lines().count() >= 1, "{lines}");
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["witness"]["ok"], true, "{report}");
    assert!(report["witness"]["checkpoints"].as_u64().unwrap() >= 1, "{report}");

    // Wipe the log and its checkpoints behind the server's back.
    let db = rusqlite::Connection::open(s.data.join("warrant.db")).unwrap();
    // A bound on waiting for a write of the server's, not a pause.
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    warrant_store::sqlite::settle_audit_tail(&db).unwrap();
    db.execute_batch("DELETE FROM audit_records; DELETE FROM audit_checkpoints;").unwrap();
    drop(db);
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad"], 1, "{report}");
    assert_eq!(report["witness"]["ok"], false, "{report}");
    assert!(report["witness"]["problem"].as_str().unwrap().contains("wiped"), "{report}");
}

#[tokio::test]
async fn a_data_directory_without_its_kek_does_not_start() {
    use warrant_server::{BoundServer, FileConfig, Settings};

    let mut s = Server::start().await;
    // The directory is locked while its server runs: stop it, keep the directory.
    s.halt().await;
    let kek = s.data.join("keys").join("kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let start = |kek_file: std::path::PathBuf| {
        let settings =
            Settings::from_config(s.same_store(FileConfig { kek_file: Some(kek_file), ..Default::default() })).unwrap();
        async move { BoundServer::bind(&settings).await.map(drop) }
    };
    // Another KEK: the stored keys do not open, and no key is made in their place.
    let other = s.data.join("other-kek");
    std::fs::write(&other, format!("{}\n", crate::testkit::b64([9u8; 32]))).unwrap();
    let err = start(other).await.unwrap_err().to_string();
    assert!(err.contains("does not open"), "{err}");
    // No KEK at all: named, and none is created.
    let missing = s.data.join("nowhere").join("kek");
    let err = start(missing.clone()).await.unwrap_err().to_string();
    assert!(err.contains("no key-encryption key"), "{err}");
    assert!(!missing.exists());
    // Its own KEK still opens it.
    start(kek).await.unwrap();
}

#[tokio::test]
async fn metrics_count_decisions_revocations_and_the_audit_log() {
    let s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 2, "p").await;
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);
    assert_deny(&s.authorize(c.token(0), "crm.write", "customers/1", Value::Null).await, "scope");
    assert_deny(&s.authorize("garbage", "crm.read", "customers/1", Value::Null).await, "invalid_token");
    s.revoke("warrant", &c.jti(0), "done").await;

    let reply = s.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text;
    let value = |prefix: &str| crate::metrics::sample(&text, prefix);
    assert_eq!(value(r#"warrant_decisions_total{code="allow",decision="allow"}"#), 1.0);
    assert_eq!(value(r#"warrant_decisions_total{code="scope",decision="deny"}"#), 1.0);
    assert_eq!(value(r#"warrant_decisions_total{code="invalid_token",decision="deny"}"#), 1.0);
    assert_eq!(value("warrant_decision_seconds_count"), 3.0);
    assert_eq!(value(r#"warrant_revocations_total{kind="warrant"}"#), 1.0);
    assert_eq!(value("warrant_revoked_warrants_total"), 2.0);
    assert_eq!(value("warrant_revoked_warrants_tracked"), 2.0);
    // Recorded warrants that have not expired (revoked ones included, as its help says).
    assert!(value("warrant_live_warrants") >= 2.0);
    assert!(value("warrant_audit_head_seq") >= 10.0);
    assert_eq!(value("warrant_audit_failed_batches"), 0.0);
    assert!(value("warrant_policy_version") >= 1.0);
    assert!(text.contains("warrant_audit_queue_depth"));
    assert!(text.contains("warrant_audit_commit_seconds"));
}
