//! `GET /metrics`: Prometheus text with decisions by outcome and code, latency,
//! revocations, live warrants and the audit writer's state.

use serde_json::{json, Value};

use crate::testkit::{assert_allow, assert_deny, Server};

#[cfg(target_os = "linux")]
#[path = "../../../warrant-store/tests/support/threads.rs"]
mod threads;

/// The value of the first sample whose line starts with `prefix`.
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{prefix}` in:\n{text}"))
}

/// The nice values of this process's SQLite commit threads (Linux).
#[cfg(target_os = "linux")]
fn writer_nices() -> Vec<i32> {
    let writers = threads::threads("self").into_iter().filter(|t| t.name == "warrant-sqlite-");
    writers.map(|t| t.nice).collect()
}

#[tokio::test]
async fn metrics_count_decisions_revocations_and_audit() {
    let s = Server::start().await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 2, "metrics").await;
    assert_allow(&s.authorize(c.token(1), "crm.read", "customers/1", Value::Null).await);
    assert_allow(&s.authorize(c.token(1), "crm.read", "customers/2", Value::Null).await);
    assert_deny(&s.authorize(c.token(1), "crm.write", "customers/1", Value::Null).await, "scope");
    assert_deny(&s.authorize("garbage", "crm.read", "customers/1", Value::Null).await, "invalid_token");
    s.admin_post("/v1/revocations", &json!({"kind": "warrant", "id": c.jti(0), "reason": "metrics"})).await.ok();

    let reply = s.get("/metrics").await;
    assert!(reply.status.is_success());
    let text = &reply.text;
    assert_eq!(sample(text, r#"warrant_decisions_total{code="allow",decision="allow"}"#), 2.0);
    assert_eq!(sample(text, r#"warrant_decisions_total{code="scope",decision="deny"}"#), 1.0);
    assert_eq!(sample(text, r#"warrant_decisions_total{code="invalid_token",decision="deny"}"#), 1.0);
    assert_eq!(sample(text, "warrant_decision_seconds_count"), 4.0);
    // A bucket at 2 ms, the decisions' p99 target, so the share over it can be read off.
    assert!(sample(text, r#"warrant_decision_seconds_bucket{le="0.002"}"#) <= 4.0);
    assert_eq!(sample(text, r#"warrant_revocations_total{kind="warrant"}"#), 1.0);
    assert_eq!(sample(text, "warrant_revoked_warrants_total"), 2.0);
    assert!(sample(text, "warrant_live_warrants") >= 2.0);
    assert!(sample(text, "warrant_audit_head_seq") >= 4.0);
    assert!(sample(text, "warrant_audit_batches") >= 1.0);
    assert_eq!(sample(text, "warrant_audit_queue_depth"), 0.0);
    // Nothing waits for a database connection between requests.
    assert_eq!(sample(text, "warrant_store_waiting"), 0.0);
    assert!(sample(text, "warrant_policy_version") >= 1.0);
    // Exposed whether or not this server delivers push streams (on a shared database,
    // only the leader starts rounds).
    assert!(sample(text, "warrant_ssf_push_rounds") >= 0.0);
    // Every record this server made durable is counted once in the per-record histograms
    // of append times and of waits (the server started on an empty log), and every
    // append once in the per-append one; the decisions' appends were well under 5 s, and
    // a record's caller waited at least as long as its append took.
    let head = sample(text, "warrant_audit_head_seq");
    assert_eq!(sample(text, "warrant_audit_record_commit_seconds_count"), head);
    assert_eq!(sample(text, r#"warrant_audit_record_commit_seconds_bucket{le="5"}"#), head);
    assert_eq!(sample(text, "warrant_audit_record_wait_seconds_count"), head);
    assert!(
        sample(text, "warrant_audit_record_wait_seconds_sum")
            >= sample(text, "warrant_audit_record_commit_seconds_sum")
    );
    assert_eq!(sample(text, "warrant_audit_commit_duration_seconds_count"), sample(text, "warrant_audit_batches"));
    assert!(sample(text, "warrant_audit_commit_duration_seconds_sum") > 0.0);
    // The SQLite commit thread's nice value, where threads have one (Linux): the default
    // -10 when the system allowed it, else what the thread started with; PostgreSQL has
    // no such thread.
    let name = warrant_server::metrics::WRITER_NICE;
    if crate::testkit::on_postgres() || !cfg!(target_os = "linux") {
        assert!(!text.contains(name), "{text}");
    } else {
        // The value of a commit thread of this process (each test server has one): the
        // default -10 wherever this process may take it.
        #[cfg(target_os = "linux")]
        {
            let nice = sample(text, name);
            assert!(writer_nices().iter().any(|n| f64::from(*n) == nice), "{nice} against {:?}", writer_nices());
            // A writer whose opener already ran higher is never lowered to -10.
            let own = rustix::process::getpriority_process(None).unwrap();
            let expected = if own > -10 && threads::may_take_nice(-10) { -10 } else { own };
            assert_eq!(nice, f64::from(expected), "this thread at {own}");
        }
    }
    assert!(!text.contains("eyJ"), "a token leaked into the metrics");
}
