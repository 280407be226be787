//! Policies as code through the real server: a valid file in `<data>/policies` takes
//! effect on reload (and by the watcher) under a new version; a set with a type error is
//! refused with the validator's message and the previous set stays in force, also across
//! a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::testkit::{assert_allow, assert_deny, Chain, Server};

const NO_EXPORT: &str = r#"
@id("no-crm-export")
@description("customer data never leaves through crm.export")
forbid (principal, action == Warrant::Action::"crm.export", resource);
"#;

const TYPE_ERROR: &str = r#"
@id("broken")
forbid (principal, action, resource) when { context.chain_depth > "two" };
"#;

async fn setup(s: &Server) -> Chain {
    s.chain(&["crm.read:customers/**", "crm.export:reports/**"], &["crm.*"], 1, "quarterly report").await
}

async fn export(s: &Server, c: &Chain) -> Value {
    s.authorize(c.token(0), "crm.export", "reports/q3", Value::Null).await
}

async fn read(s: &Server, c: &Chain) -> Value {
    s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await
}

async fn history(s: &Server) -> Vec<Value> {
    s.admin_get("/v1/policies/history").await.ok()["versions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_valid_policy_file_takes_effect_on_reload_under_a_new_version() {
    let s = Server::start().await;
    let c = setup(&s).await;
    let v1 = s.policy_version().await;
    let before = export(&s, &c).await;
    assert_allow(&before);
    assert_eq!(before["policy_version"], v1);
    let shown = s.admin_get("/v1/policies").await;
    let ids: Vec<&str> = shown.ok()["policies"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(ids, ["permit-within-scope", "cost-ceiling", "no-deep-money-movement"]);

    // Nothing changed on disk: nothing to do.
    let reply = s.reload_policies().await;
    assert_eq!(reply.ok()["changed"], false);
    assert_eq!(reply.ok()["version"], v1);

    s.write_policy("no-export.cedar", NO_EXPORT);
    let reply = s.reload_policies().await;
    assert_eq!(reply.ok()["changed"], true);
    let v2 = reply.ok()["version"].as_i64().unwrap();
    assert!(v2 > v1, "the version increases: {v1} -> {v2}");
    assert_eq!(s.policy_version().await, v2);

    let after = export(&s, &c).await;
    assert_deny(&after, "policy");
    assert_eq!(after["policies"], serde_json::json!(["no-crm-export"]));
    assert_eq!(after["policy_version"], v2);
    let still = read(&s, &c).await;
    assert_allow(&still);
    assert_eq!(still["policy_version"], v2);

    let shown = s.admin_get("/v1/policies").await;
    assert!(shown.ok()["text"].as_str().unwrap().contains("no-crm-export"));
    assert!(shown.ok()["policies"].as_array().unwrap().iter().any(|p| p == "no-crm-export"));

    let versions = history(&s).await;
    let listed: Vec<i64> = versions.iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert!(listed.contains(&v1) && listed.contains(&v2), "{versions:?}");
    for v in &versions {
        assert_eq!(v["active"], v["version"] == v2, "{versions:?}");
        assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    }

    // The activation is in the audit log.
    let audit = s.admin_get("/v1/audit?kind=policy").await;
    let records = audit.ok()["records"].as_array().unwrap().clone();
    assert!(records.iter().any(|r| r["details"]["op"] == "activated" && r["details"]["version"] == v2), "{records:?}");
}

#[tokio::test]
async fn a_policy_with_a_type_error_is_refused_and_the_previous_set_stays() {
    let mut s = Server::start().await;
    let c = setup(&s).await;
    s.write_policy("no-export.cedar", NO_EXPORT);
    let v2 = s.reload_policies().await.ok()["version"].as_i64().unwrap();
    let versions_before = history(&s).await;

    s.write_policy("broken.cedar", TYPE_ERROR);
    let reply = s.reload_policies().await;
    reply.api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("do not validate against the schema"), "{message}");
    assert!(message.contains("previous set stays in force"), "{message}");
    assert!(message.to_lowercase().contains("type") || message.contains("Long"), "the validator's message: {message}");

    // Nothing changed: the version, the history, the decisions.
    assert_eq!(s.policy_version().await, v2);
    assert_eq!(history(&s).await, versions_before);
    let e = export(&s, &c).await;
    assert_deny(&e, "policy");
    assert_eq!(e["policies"], serde_json::json!(["no-crm-export"]));
    assert_eq!(e["policy_version"], v2);
    let r = read(&s, &c).await;
    assert_allow(&r);
    assert_eq!(r["policy_version"], v2);
    assert!(!s.admin_get("/v1/policies").await.ok()["text"].as_str().unwrap().contains("broken"));

    // A syntax error is refused the same way.
    s.write_policy("broken.cedar", "permit (principal, action resource);");
    s.reload_policies().await.api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert_eq!(s.policy_version().await, v2);

    // The refusals are audited.
    let audit = s.admin_get("/v1/audit?kind=policy").await;
    let refused = audit.ok()["records"].as_array().unwrap().iter().filter(|r| r["details"]["op"] == "refused").count();
    assert_eq!(refused, 2);

    // Restarting with the broken file still on disk keeps the last valid set.
    s.restart().await;
    let e = export(&s, &c).await;
    assert_deny(&e, "policy");
    assert_eq!(e["policies"], serde_json::json!(["no-crm-export"]));
    assert_allow(&read(&s, &c).await);

    // Fixing the file brings the directory's set back.
    std::fs::remove_file(s.policy_dir().join("broken.cedar")).unwrap();
    s.reload_policies().await.ok();
    assert_deny(&export(&s, &c).await, "policy");
    assert_allow(&read(&s, &c).await);
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn removing_a_policy_file_and_reloading_lifts_its_forbid() {
    let s = Server::start().await;
    let c = setup(&s).await;
    s.write_policy("no-export.cedar", NO_EXPORT);
    s.reload_policies().await.ok();
    assert_deny(&export(&s, &c).await, "policy");
    std::fs::remove_file(s.policy_dir().join("no-export.cedar")).unwrap();
    assert_eq!(s.reload_policies().await.ok()["changed"], true);
    assert_allow(&export(&s, &c).await);
}

#[tokio::test]
async fn the_watcher_picks_up_a_valid_change_without_a_reload_call() {
    let s = Server::start().await;
    let c = setup(&s).await;
    let v1 = s.policy_version().await;
    assert_allow(&export(&s, &c).await);

    s.write_policy("no-export.cedar", NO_EXPORT);
    // Polled, on the wall clock by necessity: the watcher is the server's background loop,
    // looking every `POLICY_WATCH` (2 s) of real time; 10 s is five of its looks.
    let deadline = Instant::now() + Duration::from_secs(10);
    let denied = loop {
        let d = export(&s, &c).await;
        if d["decision"] == "deny" {
            break d;
        }
        assert_allow(&d);
        assert!(Instant::now() < deadline, "the watcher never activated the new file");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_deny(&denied, "policy");
    assert_eq!(denied["policies"], serde_json::json!(["no-crm-export"]));
    assert!(denied["policy_version"].as_i64().unwrap() > v1);

    // An invalid change is ignored by the watcher: the set in force stays.
    s.write_policy("broken.cedar", TYPE_ERROR);
    // Polled like the change above, for the same reason and with the same bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = s.admin_get("/v1/audit?kind=policy").await;
        let refused = audit.ok()["records"].as_array().unwrap().iter().any(|r| r["details"]["op"] == "refused");
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher never looked at the broken file");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_deny(&export(&s, &c).await, "policy");
    assert_allow(&read(&s, &c).await);
}
