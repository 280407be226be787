//! Quarantine: an agent driven below the trust threshold by probing is suspended and
//! every warrant of its subtree denies; probing is first contained at the smallest
//! scale (the warrant, then the task, then the agent); a `@quarantine` policy acts at once.

use warrant_core::AgentStatus;

use crate::harness::{Ask, Harness, Outcome};

const WIDE: &[&str] = &["tickets.*", "crm.*"];

#[tokio::test]
async fn probing_drives_trust_below_the_threshold_and_quarantines_the_whole_subtree() {
    // The escalation ladder off, so that trust alone decides.
    let mut h = Harness::start_with(|c| c.guard.escalation.warrant_denies = 0).await;
    let human = h.human(WIDE).await;
    let session = h.session(&human).await;
    let a = h.delegated_agent(&human, WIDE).await;
    let b = h.delegated_agent(&human, WIDE).await;
    let bystander = h.delegated_agent(&human, WIDE).await;
    let main = h.root(&session, &a, Ask::new().scope("tickets.*").purpose("triage")).await.unwrap();
    let other = h.root(&session, &a, Ask::new().purpose("weekly digest")).await.unwrap();
    let sub = h.delegate(&main.token, &b, Ask::new()).await.unwrap();
    let unrelated = h.root(&session, &bystander, Ask::new()).await.unwrap();
    for t in [&main.token, &other.token, &sub.token, &unrelated.token] {
        assert_eq!(h.authorize(t, "tickets.read", "tickets/acme/1").await.outcome, Outcome::Allow);
    }
    assert!((h.trust(&a) - 1.0).abs() < 1e-9);

    // Every fifth consecutive scope deny is a deny streak, costing 0.25: the fifteenth
    // probe takes trust from 1 to 0.25, below 0.3.
    let mut quarantine = None;
    for n in 1..=20 {
        let d = h.authorize(&main.token, "hr.read", &format!("hr/payroll/{n}")).await;
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        if d.code.as_str() == "quarantine" {
            quarantine = Some((n, d));
            break;
        }
        assert_eq!(d.code.as_str(), "scope", "{d:?}");
        if n == 5 || n == 10 {
            assert!(d.signals.iter().any(|s| s.kind.as_str() == "deny_streak"), "{d:?}");
            assert!((h.trust(&a) - (1.0 - 0.25 * (n / 5) as f64)).abs() < 1e-9, "after {n}: {}", h.trust(&a));
        }
    }
    let (n, q) = quarantine.expect("twenty probes did not quarantine the agent");
    assert_eq!(n, 15);
    let why = q.quarantined.clone().unwrap();
    assert!(why.contains("below the quarantine threshold") && why.contains("deny_streak"), "{q:?}");
    assert!(q.trust.is_some_and(|t| t < 0.3), "{q:?}");
    assert!(q.reasons.iter().any(|r| r.contains("3 warrant(s) of its subtree are revoked")), "{q:?}");
    let record = h.decision_record(&q.decision_id).await;
    assert_eq!(record.entry.details["quarantined"], why.as_str());

    // Suspended, with its whole subtree, on the very next decision; nobody else.
    assert_eq!(h.agent_status(&a).await, AgentStatus::Suspended);
    assert_eq!(h.agent_status(&b).await, AgentStatus::Active, "only the prober is suspended");
    for t in [&main.token, &other.token, &sub.token] {
        let d = h.authorize(t, "tickets.read", "tickets/acme/1").await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "revoked"), "{d:?}");
        assert!(d.reasons[0].contains("quarantined:"), "{d:?}");
    }
    assert_eq!(h.authorize(&unrelated.token, "tickets.read", "tickets/acme/1").await.outcome, Outcome::Allow);
    let err = h.root(&session, &a, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");

    // A restart changes none of it, and remembers the low trust.
    h.restart().await;
    assert_eq!(h.agent_status(&a).await, AgentStatus::Suspended);
    assert!(h.trust(&a) < 0.3, "{}", h.trust(&a));
    for t in [&main.token, &other.token, &sub.token] {
        assert_eq!(h.authorize(t, "tickets.read", "tickets/acme/1").await.code.as_str(), "revoked");
    }
    assert_eq!(h.authorize(&unrelated.token, "tickets.read", "tickets/acme/1").await.outcome, Outcome::Allow);
}

#[tokio::test]
async fn probing_is_contained_at_the_warrant_then_the_task_then_the_agent() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let a = h.delegated_agent(&human, &["crm.*"]).await;
    let b = h.delegated_agent(&human, &["crm.*"]).await;
    let t1 = h.root(&session, &a, Ask::new().purpose("first task")).await.unwrap();
    let t2 = h.root(&session, &a, Ask::new().purpose("second task")).await.unwrap();
    let narrow = |parent: String, customer: u32| {
        let (h, b) = (&h, &b);
        async move {
            let scope = format!("crm.read:customers/{customer}");
            h.delegate(&parent, b, Ask::new().scope(&scope)).await.unwrap().token
        }
    };
    let probe = |token: String| {
        let h = &h;
        async move {
            let mut codes = Vec::new();
            for n in 0..5 {
                let d = h.authorize(&token, "crm.read", &format!("customers/{}", 100 + n)).await;
                assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
                codes.push(d.code.as_str());
            }
            let after = h.authorize(&token, "crm.read", "customers/100").await;
            (codes, after)
        }
    };
    let other_task = narrow(t2.token.clone(), 7).await;

    // Five probes with one leaked narrow warrant: that warrant is revoked, nothing else.
    let (codes, after) = probe(narrow(t1.token.clone(), 42).await).await;
    assert_eq!(codes, ["scope"; 5]);
    assert_eq!(after.code.as_str(), "revoked", "{after:?}");
    assert!(after.reasons[0].contains("probing"), "{after:?}");
    assert_eq!(h.authorize(&t1.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    assert_eq!(h.authorize(&other_task, "crm.read", "customers/7").await.outcome, Outcome::Allow);
    assert_eq!(h.agent_status(&b).await, AgentStatus::Active);

    // A second probing warrant in the same task: the task goes, the other task stays.
    let (_, after) = probe(narrow(t1.token.clone(), 43).await).await;
    assert_eq!(after.code.as_str(), "revoked", "{after:?}");
    assert_eq!(h.authorize(&t1.token, "crm.read", "customers/1").await.code.as_str(), "revoked");
    assert_eq!(h.authorize(&other_task, "crm.read", "customers/7").await.outcome, Outcome::Allow);
    assert_eq!(h.agent_status(&b).await, AgentStatus::Active);

    // Probing spreads to the other task: the agent is quarantined.
    probe(narrow(t2.token.clone(), 44).await).await;
    assert_eq!(h.agent_status(&b).await, AgentStatus::Suspended);
    assert_eq!(h.authorize(&other_task, "crm.read", "customers/7").await.code.as_str(), "revoked");
    assert_eq!(h.authorize(&t2.token, "crm.read", "customers/1").await.outcome, Outcome::Allow, "A holds it");
}

#[tokio::test]
async fn a_quarantine_policy_acts_on_the_first_match() {
    const EXPORTS: &str = r#"
@id("exports-quarantine")
@quarantine
forbid (principal, action == Warrant::Action::"crm.export", resource);
"#;
    let h = Harness::start_with_policies(&[("quarantine.cedar", EXPORTS)], |_| {}).await;
    let c = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let d = h.authorize(c.token(1), "crm.export", "reports/q3").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "quarantine"), "{d:?}");
    assert_eq!(d.policies, ["exports-quarantine"]);
    assert!(d.quarantined.as_deref().is_some_and(|w| w.contains("exports-quarantine")), "{d:?}");
    assert_eq!(h.agent_status(&c.agents[1]).await, AgentStatus::Suspended);
    assert_eq!(h.agent_status(&c.agents[0]).await, AgentStatus::Active);
    assert_eq!(h.authorize(c.token(1), "crm.read", "customers/1").await.code.as_str(), "revoked");
    assert_eq!(h.authorize(c.token(0), "crm.read", "customers/1").await.outcome, Outcome::Allow);
}
