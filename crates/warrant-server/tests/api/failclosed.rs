//! Fail closed (an invariant, see `docs/architecture.md`): with the audit store failing under a running
//! server, decisions deny with code `audit`, registry mutations and token issuance fail
//! with a 5xx that reveals nothing, nothing panics; once the fault is gone, decisions
//! allow again and the chain verifies.
//!
//! The faults are injected through a second SQLite connection to `<data>/warrant.db`:
//! the audit table renamed away (every append fails at once), or the database write lock
//! held past the store's busy timeout (every append waits, then fails). The tests run as
//! root, where a read-only data directory would not stop writes. Being about SQLite's
//! file, they skip the PostgreSQL pass (`WARRANT_TEST_STORE=postgres`); the PostgreSQL
//! store failing under a running server is tested by the CLI suite (`crates/warrant-cli`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{assert_allow, assert_deny, skip_on_postgres, Reply, Server};

const ENT: &[&str] = &["crm.read:customers/**"];
const MAX: &[&str] = &["crm.*"];

/// Why the fault-injecting tests skip the PostgreSQL pass.
const SQLITE_FAULTS: &str = "injects its fault through a second connection to the SQLite file `warrant.db`";

fn db(s: &Server) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(s.data.join("warrant.db")).unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    db
}

/// Asserts a 5xx JSON error that names no internals.
#[track_caller]
fn opaque_failure(reply: &Reply, error: &str) {
    assert!(reply.status.is_server_error(), "expected a 5xx: {} {}", reply.status, reply.text);
    assert!(reply.body.is_object(), "not JSON: {}", reply.text);
    assert_eq!(reply.body["error"], error, "{}", reply.text);
    let lower = reply.text.to_lowercase();
    for secret in ["sqlite", "audit_records", "no such table", "database", "locked", "busy", "panic"] {
        assert!(!lower.contains(secret), "the error reveals `{secret}`: {}", reply.text);
    }
}

#[tokio::test]
async fn with_the_audit_table_gone_decisions_deny_and_mutations_fail() {
    if skip_on_postgres(SQLITE_FAULTS) {
        return;
    }
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 2, "keep working").await;
    let doomed = s.chain(ENT, MAX, 1, "to be revoked during the fault").await;
    let robot_owner = s.human(&[]).await;
    let robot = s.agent(&robot_owner, "autonomous", &["crm.read"]).await;
    assert_allow(&s.authorize(c.token(1), "crm.read", "customers/1", Value::Null).await);
    let head_before = s.verify_audit().await["records"].as_u64().unwrap();

    let conn = db(&s);
    conn.execute_batch("ALTER TABLE audit_records RENAME TO audit_records_away").unwrap();

    // Decisions deny with code `audit`, whatever would have been decided.
    for i in 0..2 {
        let d = s.authorize(c.token(i), "crm.read", "customers/1", Value::Null).await;
        assert_deny(&d, "audit");
        assert_eq!(d["decision_id"], "dec_unrecorded");
        assert!(d["reasons"].to_string().contains("could not be recorded"), "{d}");
    }
    assert_deny(&s.authorize(c.token(0), "crm.write", "customers/1", Value::Null).await, "audit");
    assert_deny(&s.authorize("garbage", "crm.read", "customers/1", Value::Null).await, "audit");
    let batch = s
        .authorize_batch(&[
            json!({"token": c.token(0), "action": "crm.read", "resource": "customers/1"}),
            json!({"token": c.token(1), "action": "crm.read", "resource": "customers/2"}),
        ])
        .await;
    for d in batch.ok()["decisions"].as_array().unwrap() {
        assert_deny(d, "audit");
    }
    s.healthy().await;

    // Registry mutations fail with a 5xx JSON error and do not happen.
    let reply =
        s.admin_post("/v1/humans", &json!({"name": "Ghost", "email": "ghost@example.com", "entitlements": []})).await;
    opaque_failure(&reply, "internal_error");
    let reply =
        s.admin_post("/v1/agents", &Server::agent_body(&c.human, "delegated", MAX, &crate::testkit::new_key())).await;
    opaque_failure(&reply, "internal_error");
    opaque_failure(&s.admin_action(&format!("/v1/agents/{}/suspend", robot.id)).await, "internal_error");
    opaque_failure(&s.admin_action(&format!("/v1/humans/{}/disable", robot_owner)).await, "internal_error");

    // Token issuance fails (RFC 6749 `server_error`), for a root warrant and a delegation.
    let reply = s.client_credentials(&robot, "p", &[]).await;
    opaque_failure(&reply, "server_error");
    let reply = s.delegate(c.token(0), &c.agents[1], &[]).await;
    opaque_failure(&reply, "server_error");

    // A revocation is applied even though its record cannot be written (the safe side),
    // and the call reports the failure.
    let reply = s.admin_post("/v1/revocations", &json!({"kind": "warrant", "id": doomed.jti(0), "reason": "x"})).await;
    opaque_failure(&reply, "internal_error");
    s.healthy().await;

    // Remove the fault.
    conn.execute_batch("ALTER TABLE audit_records_away RENAME TO audit_records").unwrap();
    drop(conn);

    let d = s.authorize(c.token(1), "crm.read", "customers/1", Value::Null).await;
    assert_allow(&d);
    let seq: u64 = d["decision_id"].as_str().unwrap().strip_prefix("dec_").unwrap().parse().unwrap();
    assert_eq!(seq, head_before + 1, "nothing was recorded during the fault, and the chain does not skip");
    assert_deny(&s.authorize(doomed.token(0), "crm.read", "customers/1", Value::Null).await, "revoked");
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");

    // Nothing the failed mutations asked for happened; they work again now.
    let humans = s.admin_get("/v1/humans").await;
    assert!(!humans.text.contains("ghost@example.com"), "an unaudited registry change happened");
    assert_eq!(s.admin_get(&format!("/v1/agents/{}", robot.id)).await.ok()["status"], "active");
    assert_eq!(s.admin_get(&format!("/v1/humans/{robot_owner}")).await.ok()["status"], "active");
    s.admin_post("/v1/humans", &json!({"name": "Ghost", "email": "ghost@example.com", "entitlements": []}))
        .await
        .expect(StatusCode::CREATED);
    s.client_credentials(&robot, "p", &[]).await.ok();
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test]
async fn with_the_database_locked_past_the_busy_timeout_decisions_deny() {
    if skip_on_postgres(SQLITE_FAULTS) {
        return;
    }
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 1, "locked out").await;
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);

    // Hold the write lock until every request below has been answered.
    let late = json!({"name": "Late", "email": "late@example.com", "entitlements": []});
    let conn = db(&s);
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (d1, d2, health, human) = tokio::join!(
        s.authorize(c.token(0), "crm.read", "customers/1", Value::Null),
        s.authorize(c.token(0), "crm.read", "customers/2", Value::Null),
        async {
            // Answered while the audit append waits on the lock: health does not touch the
            // store. (The pause only makes it likely that the append has started; it is on the
            // wall clock because nothing observable happens when a record is merely queued.)
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.healthy().await;
        },
        s.admin_post("/v1/humans", &late),
    );
    let () = health;
    assert_deny(&d1, "audit");
    assert_deny(&d2, "audit");
    opaque_failure(&human, "internal_error");
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);

    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/3", Value::Null).await);
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    s.admin_post("/v1/humans", &late).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn a_brief_concurrent_writer_is_waited_out_not_turned_into_denies() {
    if skip_on_postgres(SQLITE_FAULTS) {
        return;
    }
    // Another writer on the database (`warrant key rotate` on the data directory, say)
    // holds the write lock for a moment: the audit append waits for it (the store's busy
    // timeout) instead of failing at once, so nothing is denied for it.
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 1, "busy neighbour").await;
    let robot_owner = s.human(&[]).await;
    let robot = s.agent(&robot_owner, "autonomous", &["crm.read"]).await;

    let conn = db(&s);
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let releaser = std::thread::spawn(move || {
        // Wall-clock on purpose: this is the neighbour's write, holding the lock for a
        // real half second, well inside the store's busy timeout. (Decision events are
        // published only once a record is durable, so none can signal "queued" here.)
        std::thread::sleep(Duration::from_millis(500));
        conn.execute_batch("COMMIT").unwrap();
    });
    let late = json!({"name": "Neighbour", "email": "neighbour@example.com", "entitlements": []});
    let (d, human, token) = tokio::join!(
        s.authorize(c.token(0), "crm.read", "customers/1", Value::Null),
        s.admin_post("/v1/humans", &late),
        s.client_credentials(&robot, "p", &[]),
    );
    releaser.join().unwrap();
    assert_allow(&d);
    human.expect(StatusCode::CREATED);
    token.ok();
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test]
async fn a_policy_change_does_not_take_effect_while_it_cannot_be_audited() {
    if skip_on_postgres(SQLITE_FAULTS) {
        return;
    }
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 1, "policy under fault").await;
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);
    let version = s.policy_version().await;

    let conn = db(&s);
    conn.execute_batch("ALTER TABLE audit_records RENAME TO audit_records_away").unwrap();
    s.write_policy(
        "no-reads.cedar",
        r#"@id("no-reads") forbid (principal, action in Warrant::Action::"crm.*", resource);"#,
    );
    let reply = s.reload_policies().await;
    opaque_failure(&reply, "internal_error");
    assert_eq!(s.policy_version().await, version, "an unaudited policy change took effect");

    // Once the log can be written again, the pending change takes effect (by reload, or
    // by the watcher, whichever comes first) and is audited.
    conn.execute_batch("ALTER TABLE audit_records_away RENAME TO audit_records").unwrap();
    drop(conn);
    let reply = s.reload_policies().await;
    assert!(reply.status.is_success(), "{}", reply.text);
    assert!(s.policy_version().await > version);
    assert_deny(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await, "policy");
    let records = s.admin_get("/v1/audit?kind=policy").await;
    assert!(records.text.contains("\"activated\""), "{}", records.text);
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Anybody can call `/v1/authorize` with a junk token. What that adds to the audit log is
/// bounded: caller input is kept up to a size (beyond it, its size and digest), and past
/// the first few anonymous denies of a window the rest are counted into one aggregate
/// record. Every such call is still a deny.
#[tokio::test]
async fn junk_tokens_with_large_contexts_cannot_grow_the_audit_log() {
    let mut s = Server::start().await;
    let big = "x".repeat(6_000);
    let decisions = |reply: &Reply| reply.ok()["records"].as_array().unwrap().clone();
    let seq = |r: &Value| r["seq"].as_u64().unwrap();
    let before = decisions(&s.admin_get("/v1/audit?kind=decision&limit=1000").await).iter().map(seq).max().unwrap_or(0);
    let mut answered = 0;
    for call in 0..10 {
        let requests: Vec<Value> = (0..8)
            .map(|i| {
                json!({
                    "token": format!("junk-{call}-{i}"),
                    "action": "crm.read",
                    "resource": "customers/1",
                    "context": {"padding": big, "i": i},
                    "resource_attrs": {"owner": big},
                })
            })
            .collect();
        let reply = s.authorize_batch(&requests).await;
        for d in reply.ok()["decisions"].as_array().unwrap() {
            assert_eq!(d["decision"], "deny", "{d}");
            answered += 1;
        }
    }
    assert_eq!(answered, 80);
    // The aggregate of the window is written when the window closes (or at shutdown).
    s.restart().await;
    let records = decisions(&s.admin_get("/v1/audit?kind=decision&limit=1000").await);
    let added: Vec<Value> = records.into_iter().filter(|r| seq(r) > before).collect();
    assert!(added.len() <= 22, "{} records for 80 anonymous denies", added.len());
    let bytes: usize = added.iter().map(|r| r.to_string().len()).sum();
    assert!(bytes < 100_000, "80 junk calls with 12 KB each added {bytes} bytes to the log");
    for r in added.iter().filter(|r| r["details"]["code"] != "aggregated") {
        assert_eq!(r["details"]["context"]["truncated"], true, "{r}");
        assert_eq!(r["details"]["context"]["sha256"].as_str().unwrap().len(), 64, "{r}");
    }
    let aggregated: u64 = added.iter().filter_map(|r| r["details"]["aggregated"]["count"].as_u64()).sum();
    let individual = added.iter().filter(|r| r["details"]["code"] != "aggregated").count() as u64;
    assert_eq!(aggregated + individual, 80, "every anonymous deny is accounted for: {added:?}");
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
}
