//! Decisions: allow, scope deny, policy deny (a custom Cedar policy), expiry on the
//! manual clock, and every decision, denies included, recorded in the audit log.

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{Ask, AuditFilter, AuditKind, EventKind, Harness, Outcome, RevocationKind};

const NO_EXPORT: &str = r#"
@id("no-crm-export")
@description("customer data never leaves through crm.export")
forbid (principal, action == Warrant::Action::"crm.export", resource);
"#;

#[tokio::test]
async fn an_allow_names_its_policy_and_is_recorded_before_it_is_answered() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 1).await;
    let d = h.authorize(c.token(0), "crm.read", "customers/42").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Allow, "allow"), "{d:?}");
    assert_eq!(d.policies, ["permit-within-scope"]);
    assert_eq!(d.policy_version, Some(h.policy_version()));
    assert_eq!(d.claims.as_ref().map(|c| c.jti.clone()), Some(c.warrants[0].claims.jti.clone()));
    assert!(d.trust.is_some_and(|t| t > 0.9), "{d:?}");

    let record = h.decision_record(&d.decision_id).await;
    assert_eq!(record.entry.kind, AuditKind::Decision);
    assert_eq!(record.entry.decision.as_deref(), Some("allow"));
    assert_eq!(record.entry.warrant.as_ref(), Some(&c.warrants[0].claims.jti));
    assert_eq!(record.entry.agent.as_ref(), Some(&c.agents[0].id));
    assert_eq!(record.entry.human.as_ref(), Some(&c.human.id));
    assert_eq!(record.entry.task.as_ref(), Some(&c.warrants[0].claims.task.id));
    assert_eq!(record.entry.at, h.now());
    assert_eq!(record.entry.details["action"], "crm.read");
    assert_eq!(record.entry.details["resource"], "customers/42");
    assert_eq!(record.entry.details["code"], "allow");
    assert_eq!(record.entry.details["policies"], json!(["permit-within-scope"]));
    assert_eq!(record.entry.details["chain"], json!([c.agents[0].id]));
}

#[tokio::test]
async fn what_the_scope_does_not_cover_is_denied() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read:customers/**"], &["crm.*"], 1).await;
    assert_eq!(c.warrants[0].claims.scope, "crm.read:customers/**");
    assert_eq!(h.authorize(c.token(0), "crm.read", "customers/acme/7").await.outcome, Outcome::Allow);
    for (action, resource) in [("crm.write", "customers/1"), ("crm.read", "orders/1"), ("hr.read", "hr/payroll")] {
        let d = h.authorize(c.token(0), action, resource).await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "scope"), "{action} {resource}: {d:?}");
        assert!(d.reasons[0].contains("does not cover"), "{d:?}");
        assert!(d.policies.is_empty(), "decided before the policies: {d:?}");
    }
    // A request that is not one concrete action on one concrete resource is refused as such.
    for (action, resource) in [("crm.*", "customers/1"), ("crm.read", "customers/*"), ("crm.read", "customers//1")] {
        let d = h.authorize(c.token(0), action, resource).await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_request"), "{action} {resource}: {d:?}");
    }
}

#[tokio::test]
async fn a_custom_policy_denies_within_scope_once_it_is_in_force() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 1).await;
    let v1 = h.policy_version();
    let before = h.authorize(c.token(0), "crm.export", "reports/q3").await;
    assert_eq!(before.outcome, Outcome::Allow);
    assert_eq!(before.policy_version, Some(v1));

    let v2 = h.install_policy("no-export.cedar", NO_EXPORT).await;
    assert!(v2 > v1, "a new version: {v1} -> {v2}");
    let after = h.authorize(c.token(0), "crm.export", "reports/q3").await;
    assert_eq!((after.outcome, after.code.as_str()), (Outcome::Deny, "policy"), "{after:?}");
    assert_eq!(after.policies, ["no-crm-export"]);
    assert_eq!(after.policy_version, Some(v2));
    assert!(after.reasons[0].contains("no-crm-export"), "{after:?}");
    let still = h.authorize(c.token(0), "crm.read", "customers/1").await;
    assert_eq!((still.outcome, still.policy_version), (Outcome::Allow, Some(v2)));

    // The default set's own forbid: no single action may cost more than 10000.
    let costly = h.authorize_with(c.token(0), "crm.read", "customers/1", json!({"estimated_cost": 20_000}), None).await;
    assert_eq!((costly.outcome, costly.code.as_str()), (Outcome::Deny, "policy"), "{costly:?}");
    assert_eq!(costly.policies, ["cost-ceiling"]);
    let cheap = h.authorize_with(c.token(0), "crm.read", "customers/1", json!({"estimated_cost": 9_000}), None).await;
    assert_eq!(cheap.outcome, Outcome::Allow, "{cheap:?}");
}

#[tokio::test]
async fn a_warrant_is_denied_once_the_clock_passes_its_expiry() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &["crm.*"]).await;
    let w = h.root(&session, &agent, Ask::new().ttl("60")).await.unwrap();
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    h.advance(59);
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/1").await.outcome, Outcome::Allow, "one second left");
    h.advance(1);
    let d = h.authorize(&w.token, "crm.read", "customers/1").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_token"), "{d:?}");
    assert!(d.reasons[0].contains("expired"), "{d:?}");
    assert!(d.claims.is_none());
    // Still recorded (the first anonymous denies of a window get a record each).
    let record = h.decision_record(&d.decision_id).await;
    assert_eq!(record.entry.decision.as_deref(), Some("deny"));
    assert_eq!(record.entry.details["code"], "invalid_token");
}

#[tokio::test]
async fn every_deny_is_in_the_audit_log_with_its_code_and_reasons() {
    let h = Harness::start().await;
    h.install_policy("no-export.cedar", NO_EXPORT).await;
    let c = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let short = h.root(&c.session, &c.agents[0], Ask::new().ttl("30")).await.unwrap();
    let t = c.token(0);
    let mut denies = vec![
        h.authorize(t, "hr.read", "hr/payroll").await,
        h.authorize(t, "crm.export", "reports/q3").await,
        h.authorize_with(t, "crm.read", "customers/1", json!({"estimated_cost": 50_000}), None).await,
        h.authorize(t, "crm.read", "customers/*").await,
        h.authorize("not-a-warrant", "crm.read", "customers/1").await,
    ];
    h.revoke(RevocationKind::Warrant, &c.jti(1)).await.unwrap();
    denies.push(h.authorize(c.token(1), "crm.read", "customers/1").await);
    h.advance(30);
    denies.push(h.authorize(&short.token, "crm.read", "customers/1").await);
    let allowed = h.authorize(t, "crm.read", "customers/1").await;
    assert_eq!(allowed.outcome, Outcome::Allow, "{allowed:?}");

    let codes: Vec<&str> = denies.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["scope", "policy", "policy", "invalid_request", "invalid_token", "revoked", "invalid_token"]);
    let mut seqs = BTreeSet::new();
    for d in &denies {
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        let record = h.decision_record(&d.decision_id).await;
        assert_eq!(record.entry.kind, AuditKind::Decision);
        assert_eq!(record.entry.decision.as_deref(), Some("deny"), "{d:?}");
        assert_eq!(record.entry.details["code"], d.code.as_str(), "{d:?}");
        assert_eq!(record.entry.details["reasons"], json!(d.reasons), "{d:?}");
        assert_eq!(record.entry.details["policies"], json!(d.policies), "{d:?}");
        if let Some(claims) = &d.claims {
            assert_eq!(record.entry.warrant.as_ref(), Some(&claims.jti));
        }
        seqs.insert(record.seq);
    }
    // The log holds exactly these denies, and its chain verifies.
    let logged: BTreeSet<u64> = h
        .audit(AuditFilter {
            kind: Some(AuditKind::Decision),
            decision: Some(Outcome::Deny),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(logged, seqs);
    assert!(h.audit_verifies().await);
}

#[tokio::test]
async fn a_decision_event_names_a_record_that_is_already_durable() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read"], &["crm.read"], 1).await;
    let mut events = h.subscribe();
    let d = h.authorize(c.token(0), "crm.read", "customers/1").await;
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    let event = loop {
        let e = events.try_recv().expect("the decision event is published before the answer returns");
        if e.kind == EventKind::Decision {
            break e;
        }
    };
    assert_eq!(event.data["decision_id"], d.decision_id.as_str());
    // The record it names is in the log: the event was published after it was durable.
    let record = h.decision_record(&d.decision_id).await;
    assert_eq!(record.entry.details["code"], "allow");
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_lose_the_decision_event() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read"], &["crm.read"], 1).await;
    let mut events = h.subscribe();
    h.authorize_and_leave(c.token(0), "crm.read", "customers/7").await;
    // Wall-clock bound only: the record is written by the audit writer's own task.
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind == EventKind::Decision {
                break e;
            }
        }
    })
    .await
    .expect("the decision event is published once the record is durable, caller or not");
    let id = event.data["decision_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dec_") && id != "dec_unrecorded", "{id}");
    assert_eq!(h.decision_record(&id).await.entry.details["resource"], "customers/7");
}
