//! Warrants named by `jti` (the AuthZEN COAZ shape) through the decision pipeline: the
//! recorded claims stand in for the token, and everything after verification is the
//! same; an unknown, claim-less or expired reference is an `invalid_token` deny. And the
//! AuthZEN adapter in-process, as the MCP gateway calls it.

use serde_json::json;
use warrant_core::authzen::{EvaluationRequest, EvaluationsRequest};
use warrant_engine::{Asker, EvaluationError};

use crate::harness::{Harness, Outcome, RevocationKind};

#[tokio::test]
async fn a_warrant_named_by_jti_is_decided_as_its_token_is() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read:customers/**"], &["crm.*"], 2).await;
    let by_token = h.authorize(c.token(1), "crm.read", "customers/1").await;
    let by_jti = h.authorize_recorded(&c.jti(1), "crm.read", "customers/1").await;
    assert_eq!((by_jti.outcome, by_jti.code), (Outcome::Allow, by_token.code), "{by_jti:?}");
    assert_eq!(by_jti.policies, by_token.policies);
    assert_eq!(by_jti.claims, by_token.claims, "the recorded claims are the token's");
    let record = h.decision_record(&by_jti.decision_id).await;
    assert_eq!(record.entry.warrant.as_ref(), Some(&c.warrants[1].claims.jti));
    assert_eq!(record.entry.details["chain"], json!([c.agents[0].id, c.agents[1].id]));
    // The scope still binds.
    assert_eq!(h.authorize_recorded(&c.jti(1), "crm.write", "customers/1").await.code.as_str(), "scope");

    // Claims are kept in the store: a restarted engine reads them again.
    let mut h = h;
    h.restart().await;
    assert_eq!(h.authorize_recorded(&c.jti(1), "crm.read", "customers/2").await.outcome, Outcome::Allow);

    // A revocation reaches a cached reference on its next use.
    h.revoke(RevocationKind::Warrant, &c.jti(0)).await.unwrap();
    let d = h.authorize_recorded(&c.jti(1), "crm.read", "customers/1").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "revoked"), "{d:?}");
}

#[tokio::test]
async fn an_unknown_claimless_or_expired_reference_is_an_invalid_token() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read"], &["crm.*"], 1).await;
    let unknown = h.authorize_recorded("wrt_000000000000000000000000", "crm.read", "customers/1").await;
    assert_eq!((unknown.outcome, unknown.code.as_str()), (Outcome::Deny, "invalid_token"), "{unknown:?}");
    assert!(unknown.claims.is_none());

    let claimless = h.record_without_claims(&c.jti(0)).await;
    let d = h.authorize_recorded(&claimless, "crm.read", "customers/1").await;
    assert_eq!(d.code.as_str(), "invalid_token", "{d:?}");
    assert!(d.reasons[0].contains("before its claims were recorded"), "{d:?}");

    // Cached while it lives, refused once it has expired.
    assert_eq!(h.authorize_recorded(&c.jti(0), "crm.read", "customers/1").await.outcome, Outcome::Allow);
    let exp = c.warrants[0].claims.exp;
    h.advance(exp.0 - h.now().0);
    let d = h.authorize_recorded(&c.jti(0), "crm.read", "customers/1").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_token"), "{d:?}");
    assert_eq!(h.authorize(c.token(0), "crm.read", "customers/1").await.code.as_str(), "invalid_token");
}

#[tokio::test]
async fn the_adapter_maps_both_shapes_and_refuses_a_stated_mismatch() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.read"], &["crm.*"], 1).await;
    let claims = &c.warrants[0].claims;
    let gateway = Asker { name: "mcp-gateway".into(), plain_subjects: false };
    let request = |subject: &str, context: serde_json::Value| -> EvaluationRequest {
        serde_json::from_value(json!({
            "subject": {"type": "user", "id": subject},
            "action": {"name": "crm.read", "properties": {"mcp": {"method": "tools/call", "target": "lookup", "upstream": "crm"}}},
            "resource": {"type": "customers", "id": "7", "properties": {"owner": "alice"}},
            "context": context,
        }))
        .unwrap()
    };
    let coaz = json!({"agent": claims.client_id, "warrant_id": claims.jti, "rows": 2});
    let answer = h.engine().authzen().evaluate(&gateway, &request(&claims.sub, coaz.clone())).await.unwrap();
    assert!(answer.decision, "{answer:?}");
    let ctx = answer.context.unwrap();
    let record = h.decision_record(ctx.decision_id.as_deref().unwrap()).await;
    let details = &record.entry.details;
    assert_eq!(details["resource"], "customers/7");
    assert_eq!(details["resource_attrs"], json!({"owner": "alice"}));
    assert_eq!(details["context"], json!({"rows": 2}), "the reserved keys are taken out");
    assert_eq!(details["pep"], "mcp-gateway");
    assert_eq!(details["mcp"], json!({"method": "tools/call", "target": "lookup", "upstream": "crm"}));

    // A stated subject or agent that is not the warrant's is an error, not a decision.
    let err = h.engine().authzen().evaluate(&gateway, &request("hum_someone_else", coaz)).await.unwrap_err();
    assert!(matches!(err, EvaluationError::Mismatch(_)), "{err:?}");
    let wrong_agent = json!({"agent": "agt_000000000000000000000000", "warrant_id": claims.jti});
    let err = h.engine().authzen().evaluate(&gateway, &request(&claims.sub, wrong_agent)).await.unwrap_err();
    assert!(matches!(err, EvaluationError::Mismatch(_)), "{err:?}");
    let with_token = json!({"agent": "agt_000000000000000000000000"});
    let mut by_token = request(&claims.sub, with_token);
    by_token.subject.properties.insert("token".into(), json!(c.token(0)));
    let err = h.engine().authzen().evaluate(&gateway, &by_token).await.unwrap_err();
    assert!(matches!(err, EvaluationError::Mismatch(_)), "{err:?}");

    // Plain subjects: refused without the right; with it, decided by the policies (an
    // unregistered human is a recorded deny).
    let plain = request("alice", json!({}));
    let err = h.engine().authzen().evaluate(&gateway, &plain).await.unwrap_err();
    assert_eq!(err, EvaluationError::PlainSubjectsForbidden);
    assert_eq!(err.status(), 403);
    let answer = h.engine().authzen().evaluate(&Asker::admin(), &plain).await.unwrap();
    assert!(!answer.decision);
    let context = answer.context.unwrap();
    assert_eq!(context.code.as_deref(), Some("human"), "{context:?}");
    assert!(context.decision_id.is_some_and(|id| id.starts_with("dec_")));

    // A batch stops where its semantic says, answering in order.
    let batch: EvaluationsRequest = serde_json::from_value(json!({
        "subject": {"type": "user", "id": claims.sub, "properties": {"token": c.token(0)}},
        "action": {"name": "crm.read"},
        "evaluations": [
            {"resource": {"type": "customers", "id": "1"}},
            {"resource": {"type": "customers", "id": "bad/../path"}},
            {"resource": {"type": "customers", "id": "3"}},
        ],
        "options": {"evaluations_semantic": "deny_on_first_deny"},
    }))
    .unwrap();
    let answers = h.engine().authzen().evaluations(&gateway, &batch).await.unwrap().evaluations;
    assert_eq!(answers.iter().map(|a| a.decision).collect::<Vec<_>>(), [true, false]);
}
