//! Human approval (step-up): a policy with `@approval` makes a decision `pending` with an
//! approval id; the owner approves; the retry with that id is allowed exactly once; an
//! approval nobody decides, or nobody uses, lapses as the clock moves.

use serde_json::json;

use crate::harness::{ApprovalOpError, ApprovalStatus, AuditFilter, AuditKind, Chain, Decision, Harness, Outcome};

/// Large payments need the agent's owner.
const APPROVAL_POLICY: &str = r#"
@id("large-payments-need-the-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;

/// An engine with the approval policy in force and warrants that outlive the approvals.
async fn start() -> (Harness, Chain) {
    let h = Harness::start_with_policies(&[("approvals.cedar", APPROVAL_POLICY)], |c| {
        c.limits.default_ttl = 3600;
        c.limits.max_ttl = 3600;
    })
    .await;
    let c = h.chain(&["payments.*"], &["payments.*"], 1).await;
    (h, c)
}

async fn pay(h: &Harness, token: &str, resource: &str, amount: i64, approval: Option<&str>) -> Decision {
    h.authorize_with(token, "payments.send", resource, json!({"amount": amount, "currency": "EUR"}), approval).await
}

/// Asserts a `pending` answer and returns its approval id.
#[track_caller]
fn pending(d: &Decision) -> String {
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Pending, "approval_required"), "{d:?}");
    assert_eq!(d.policies, ["large-payments-need-the-owner"]);
    let id = d.approval_id.clone().unwrap();
    assert!(id.starts_with("apr_"), "{d:?}");
    id
}

/// Asserts a deny by the approval machinery.
#[track_caller]
fn refused(d: &Decision) {
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "approval"), "{d:?}");
}

#[tokio::test]
async fn an_approved_request_is_allowed_exactly_once() {
    let (mut h, c) = start().await;
    let t = c.token(0);
    let owner = &c.human;
    assert_eq!(pay(&h, t, "payments/inv-1", 500, None).await.outcome, Outcome::Allow, "below the threshold");

    let id = pending(&pay(&h, t, "payments/inv-2", 5000, None).await);
    let a = h.approval(&id).await;
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert_eq!(a.approver, c.agents[0].owner, "the agent's owner approves");
    assert_eq!(a.approver, owner.id);
    assert_eq!(a.agent, c.agents[0].id);
    assert_eq!(a.human, owner.id);
    assert_eq!(a.task, c.warrants[0].claims.task.id);
    assert_eq!(a.warrant, c.warrants[0].claims.jti);
    assert_eq!((a.action.as_str(), a.resource.as_str()), ("payments.send", "payments/inv-2"));
    assert_eq!(a.request["context"]["amount"], 5000);
    assert_eq!(a.expires_at, h.now().plus(900));

    // Before it is approved, the retry is a deny.
    refused(&pay(&h, t, "payments/inv-2", 5000, Some(&id)).await);
    // Nobody but the owner decides it; the delegation session the agent holds is no
    // approver's credential.
    let stranger = h.human(&["payments.*"]).await;
    let err = h.decide_approval(&id, true, &stranger, None).await.unwrap_err();
    assert!(matches!(err, ApprovalOpError::Forbidden(_)), "{err}");
    assert!(!h.session_approves(&c.session).await);

    let approved = h.decide_approval(&id, true, owner, Some("invoice checked")).await.unwrap();
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some(owner.id.as_str()));
    assert_eq!(approved.reason.as_deref(), Some("invoice checked"));

    // Only the very request it was asked for.
    refused(&pay(&h, t, "payments/inv-2", 50_000, Some(&id)).await);
    refused(&pay(&h, t, "payments/inv-3", 5000, Some(&id)).await);
    let allowed = pay(&h, t, "payments/inv-2", 5000, Some(&id)).await;
    assert_eq!((allowed.outcome, allowed.code.as_str()), (Outcome::Allow, "allow"), "{allowed:?}");
    assert_eq!(allowed.approval_id.as_deref(), Some(id.as_str()));
    // Once.
    refused(&pay(&h, t, "payments/inv-2", 5000, Some(&id)).await);
    assert_eq!(h.approval(&id).await.status, ApprovalStatus::Used);
    let err = h.decide_approval(&id, true, owner, None).await.unwrap_err();
    assert!(matches!(err, ApprovalOpError::Conflict(_)), "{err}");
    // Even after a restart.
    let carried = pending(&pay(&h, t, "payments/inv-5", 8000, None).await);
    h.restart().await;
    refused(&pay(&h, t, "payments/inv-2", 5000, Some(&id)).await);
    assert_eq!(h.approval(&id).await.status, ApprovalStatus::Used);
    // An approval opened before the restart is decided and used after it, once.
    h.decide_approval(&carried, true, owner, None).await.unwrap();
    assert_eq!(pay(&h, t, "payments/inv-5", 8000, Some(&carried)).await.outcome, Outcome::Allow);
    refused(&pay(&h, t, "payments/inv-5", 8000, Some(&carried)).await);
    // Without it the same request asks again, under a new approval.
    assert_ne!(pending(&pay(&h, t, "payments/inv-2", 5000, None).await), id);

    // Rejected: the retry is a deny and it cannot be approved afterwards.
    let rejected = pending(&pay(&h, t, "payments/inv-4", 7000, None).await);
    let decided = h.decide_approval(&rejected, false, owner, Some("not budgeted")).await.unwrap();
    assert_eq!(decided.status, ApprovalStatus::Rejected);
    refused(&pay(&h, t, "payments/inv-4", 7000, Some(&rejected)).await);
    assert!(matches!(h.decide_approval(&rejected, true, owner, None).await, Err(ApprovalOpError::Conflict(_))));

    // Every step is in the audit log.
    let records = h.audit(AuditFilter { kind: Some(AuditKind::Approval), limit: 100, ..AuditFilter::default() }).await;
    let ops = |approval: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.entry.details["approval_id"] == approval)
            .map(|r| r.entry.details["op"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ops(&id), ["opened", "approved", "used"]);
    assert_eq!(ops(&carried), ["opened", "approved", "used"]);
    assert_eq!(ops(&rejected), ["opened", "rejected"]);
    assert!(h.audit_verifies().await);
}

#[tokio::test]
async fn approvals_lapse_as_the_clock_moves() {
    let (h, c) = start().await;
    let t = c.token(0);
    let owner = &c.human;
    let undecided = pending(&pay(&h, t, "payments/inv-9", 5000, None).await);
    let unused = pending(&pay(&h, t, "payments/inv-10", 6000, None).await);
    h.decide_approval(&unused, true, owner, None).await.unwrap();

    // An approved request must be retried within five minutes.
    h.advance(299);
    assert_eq!(h.approval(&unused).await.status, ApprovalStatus::Approved);
    h.advance(2);
    assert_eq!(h.approval(&unused).await.status, ApprovalStatus::Expired);
    refused(&pay(&h, t, "payments/inv-10", 6000, Some(&unused)).await);

    // A pending one waits fifteen minutes for its approver.
    assert_eq!(h.approval(&undecided).await.status, ApprovalStatus::Pending);
    h.advance(900 - 301);
    assert_eq!(h.approval(&undecided).await.status, ApprovalStatus::Expired);
    let err = h.decide_approval(&undecided, true, owner, None).await.unwrap_err();
    assert!(matches!(err, ApprovalOpError::Conflict(_)), "{err}");
    refused(&pay(&h, t, "payments/inv-9", 5000, Some(&undecided)).await);
    // The warrant itself is still good: asking again opens a fresh approval.
    assert_ne!(pending(&pay(&h, t, "payments/inv-9", 5000, None).await), undecided);
}

#[tokio::test]
async fn when_two_approvers_race_only_the_decision_that_took_effect_is_audited() {
    let (h, c) = start().await;
    let t = c.token(0);
    let owner = &c.human;
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = pending(&pay(&h, t, &format!("payments/race-{i}"), 5000, None).await);
        // Both read `pending`; only one compare-and-set can win.
        let (approve, reject) =
            tokio::join!(h.decide_approval(&id, true, owner, None), h.decide_approval(&id, false, owner, None));
        let winner = match (approve, reject) {
            (Ok(a), Err(ApprovalOpError::Conflict(_))) | (Err(ApprovalOpError::Conflict(_)), Ok(a)) => a,
            other => panic!("exactly one decision must win: {other:?}"),
        };
        assert_eq!(h.approval(&id).await.status, winner.status, "the store holds the winner's decision");
        ids.push((id, winner.status));
    }
    let records = h.audit(AuditFilter { kind: Some(AuditKind::Approval), limit: 1000, ..AuditFilter::default() }).await;
    for (id, status) in ids {
        let decided: Vec<&str> = records
            .iter()
            .filter(|r| r.entry.details["approval_id"] == id.as_str())
            .filter_map(|r| r.entry.details["op"].as_str())
            .filter(|op| *op != "opened")
            .collect();
        let expected = if status == ApprovalStatus::Approved { "approved" } else { "rejected" };
        assert_eq!(decided, [expected], "approval {id}: only the decision that took effect is in the log");
    }
}
