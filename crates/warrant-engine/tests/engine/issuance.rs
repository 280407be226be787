//! Issuance: autonomous and delegated root warrants, their claims, scope and lifetime
//! caps, and the checks on who may obtain one.

use warrant_core::Mode;

use crate::harness::{perms, Ask, AuditFilter, AuditKind, Harness, Issued, Outcome, ISSUER};

#[tokio::test]
async fn an_autonomous_root_warrant_names_the_agent_its_owner_and_a_new_task() {
    let h = Harness::start().await;
    let owner = h.human(&["crm.*"]).await;
    let bot = h.autonomous_agent(&owner, &["crm.read", "crm.write:leads/**"]).await;
    let issued = h.autonomous_root(&bot, Ask::new().purpose("reconcile leads")).await.unwrap();
    let c = &issued.claims;
    assert_eq!((c.iss.as_str(), c.aud.as_str()), (ISSUER, ISSUER));
    assert_eq!(c.sub, bot.id.to_string(), "autonomous work is its own subject");
    assert_eq!(c.mode, Mode::Autonomous);
    assert_eq!(c.client_id, bot.id);
    assert_eq!(c.owner, owner.id);
    assert_eq!(c.task.human, owner.id, "autonomous work traces to the owner");
    assert_eq!(c.task.purpose, "reconcile leads");
    assert_eq!(c.parent, None);
    assert_eq!(c.chain(), vec![bot.id.clone()]);
    assert!(c.act.act.is_none());
    assert_eq!(perms(&c.scope), perms("crm.read crm.write:leads/**"), "no scope asked: the agent's ceiling");
    assert_eq!((c.iat, c.nbf), (h.now(), h.now()));
    assert_eq!(c.exp, h.now().plus(300), "the default lifetime");
    assert_eq!(issued.expires_in, 300);
    assert!(c.budget.is_empty());
    assert!(!issued.exchanged);

    // Recorded: a new task rooted at this agent, and an issuance audit record.
    let task = h.task(c.task.id.as_str()).await;
    assert_eq!(task.task.root_agent, bot.id);
    assert_eq!(task.task.purpose, "reconcile leads");
    assert_eq!(task.task.deadline, c.exp);
    assert!(!task.ended);
    assert_eq!(task.warrants.len(), 1);
    assert_eq!((task.warrants[0].record.jti.clone(), task.warrants[0].state.as_str()), (c.jti.clone(), "active"));
    let records = h
        .audit(AuditFilter { warrant: Some(c.jti.clone()), kind: Some(AuditKind::Issuance), ..AuditFilter::default() })
        .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].entry.agent.as_ref(), Some(&bot.id));
    assert_eq!(records[0].entry.details["scope"], c.scope.as_str());
    assert_eq!(records[0].entry.details["mode"], "autonomous");

    // And it works.
    assert_eq!(h.authorize(&issued.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    // Each root warrant is a task of its own.
    let again = h.autonomous_root(&bot, Ask::new()).await.unwrap();
    assert_ne!(again.claims.task.id, c.task.id);
}

#[tokio::test]
async fn lifetimes_are_capped_and_must_be_positive() {
    let h = Harness::start().await;
    let owner = h.human(&[]).await;
    let bot = h.autonomous_agent(&owner, &["crm.read"]).await;
    let lifetime = |issued: &Issued| issued.claims.iat.until(issued.claims.exp);
    assert_eq!(lifetime(&h.autonomous_root(&bot, Ask::new().ttl("60")).await.unwrap()), 60);
    assert_eq!(lifetime(&h.autonomous_root(&bot, Ask::new().ttl("900")).await.unwrap()), 900);
    let capped = h.autonomous_root(&bot, Ask::new().ttl("86400")).await.unwrap();
    assert_eq!(lifetime(&capped), 900, "capped at the longest lifetime");
    assert_eq!(capped.expires_in, 900);
    for bad in ["0", "-5", "soon", "1.5"] {
        let err = h.autonomous_root(&bot, Ask::new().ttl(bad)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_request", "ttl {bad}: {err}");
    }

    // The caps are configuration.
    let short = Harness::start_with(|c| {
        c.limits.default_ttl = 30;
        c.limits.max_ttl = 120;
    })
    .await;
    let owner = short.human(&[]).await;
    let bot = short.autonomous_agent(&owner, &["crm.read"]).await;
    assert_eq!(lifetime(&short.autonomous_root(&bot, Ask::new()).await.unwrap()), 30);
    assert_eq!(lifetime(&short.autonomous_root(&bot, Ask::new().ttl("3600")).await.unwrap()), 120);
}

#[tokio::test]
async fn a_delegated_root_warrant_is_bounded_by_the_agent_and_the_human() {
    let h = Harness::start().await;
    let owner = h.human(&["crm.*", "tickets.*"]).await;
    let human = h.human(&["crm.read", "tickets.*"]).await;
    let session = h.session(&human).await;
    let helper = h.delegated_agent(&owner, &["crm.*", "tickets.read"]).await;

    let issued = h.root(&session, &helper, Ask::new().purpose("answer the inbox")).await.unwrap();
    let c = &issued.claims;
    assert_eq!(c.sub, human.id.to_string(), "delegated work is the human's");
    assert_eq!(c.mode, Mode::Delegated);
    assert_eq!(c.task.human, human.id);
    assert_eq!(c.owner, owner.id, "the agent's owner stays accountable");
    assert_eq!(c.client_id, helper.id);
    assert_eq!(c.parent, None);
    assert_eq!(perms(&c.scope), perms("crm.read tickets.read"), "both ceilings, intersected");
    assert!(issued.exchanged);

    // Asking within both ceilings gets exactly that.
    let narrow = h.root(&session, &helper, Ask::new().scope("crm.read:customers/**")).await.unwrap();
    assert_eq!(narrow.claims.scope, "crm.read:customers/**");
    // Beyond the human's entitlements, or the agent's ceiling: refused.
    for over in ["crm.write", "tickets.write", "hr.read"] {
        let err = h.root(&session, &helper, Ask::new().scope(over)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_scope", "{over}: {err}");
    }
    assert_eq!(h.authorize(&issued.token, "crm.read", "customers/9").await.outcome, Outcome::Allow);
    assert_eq!(h.authorize(&issued.token, "crm.write", "customers/9").await.code.as_str(), "scope");
}

#[tokio::test]
async fn who_may_obtain_a_root_warrant() {
    let h = Harness::start().await;
    let owner = h.human(&["crm.*"]).await;
    let session = h.session(&owner).await;
    let autonomous = h.autonomous_agent(&owner, &["crm.read"]).await;
    let delegated = h.delegated_agent(&owner, &["crm.read"]).await;

    // Each agent only does its kind of work.
    let err = h.root(&session, &autonomous, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    let err = h.autonomous_root(&delegated, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");

    // A client assertion is single-use.
    let assertion = h.assertion(&autonomous);
    h.client_credentials_with(assertion.clone(), Ask::new().purpose("first")).await.unwrap();
    let err = h.client_credentials_with(assertion, Ask::new().purpose("replayed")).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");
    assert!(err.to_string().contains("single-use"), "{err}");

    // An assertion signed by another key is not the agent's.
    let mut impostor = autonomous.clone();
    impostor.key = warrant_token::KeyPair::from_seed(&[0x13; 32]);
    let err = h.autonomous_root(&impostor, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");

    // Every root warrant belongs to a task with a purpose.
    let err = h.client_credentials_with(h.assertion(&autonomous), Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request", "{err}");

    // An assertion is only good for its few minutes.
    let stale = h.assertion(&autonomous);
    h.advance(3600);
    let err = h.client_credentials_with(stale, Ask::new().purpose("late")).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");

    // A session is only good for its lifetime (one hour by default).
    let err = h.root(&session, &delegated, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "an expired session: {err}");

    // A disabled owner's agents get nothing.
    h.disable_human(&owner).await;
    let err = h.autonomous_root(&autonomous, Ask::new()).await.unwrap_err();
    assert!(["invalid_client", "invalid_grant"].contains(&err.code()), "{err}");
}

/// The assertion of an issuance is spent with the warrant's record (one durable write):
/// however many requests present it at once, exactly one warrant is issued.
/// A warrant is recorded in the same transaction as its issuance's audit record: when the
/// audit log cannot take the record (here: closed), the mint fails and no warrant is
/// recorded at all (before, the warrant was recorded first, then revoked).
#[tokio::test]
async fn an_issuance_that_cannot_be_audited_records_no_warrant() {
    let h = Harness::start().await;
    let owner = h.human(&["crm.*"]).await;
    let agent = h.autonomous_agent(&owner, &["crm.read"]).await;
    h.autonomous_root(&agent, Ask::new()).await.unwrap();
    assert_eq!(h.recorded_warrants().await, 1);
    h.start_background().shutdown().await;
    let err = h.autonomous_root(&agent, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "server_error", "{err}");
    assert_eq!(h.recorded_warrants().await, 1, "the refused mint recorded nothing");
    assert!(h.audit_verifies().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_assertion_presented_at_once_issues_one_warrant() {
    let h = Harness::start().await;
    let owner = h.human(&["crm.*"]).await;
    let agent = h.autonomous_agent(&owner, &["crm.read"]).await;
    for round in 0..5 {
        let assertion = h.assertion(&agent);
        let ask = || Ask::new().purpose("the same assertion");
        let results = tokio::join!(
            h.client_credentials_with(assertion.clone(), ask()),
            h.client_credentials_with(assertion.clone(), ask()),
            h.client_credentials_with(assertion.clone(), ask()),
            h.client_credentials_with(assertion.clone(), ask()),
        );
        let results = [results.0, results.1, results.2, results.3];
        let issued: Vec<&Issued> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(issued.len(), 1, "round {round}: {results:?}");
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(err.code(), "invalid_client", "{err}");
            assert!(err.to_string().contains("single-use"), "{err}");
        }
        // The one issued is usable.
        assert_eq!(h.authorize(&issued[0].token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    }
}
