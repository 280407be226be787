//! Calibration: benign agents that are not steady keep their standing (a periodic batch
//! job, an hourly job, a retry loop, a deploy that brings new tools), and the graduated
//! response answers a new pattern with its milder levels first, carried out or in shadow
//! mode.

use warrant_core::guard::response::Level;
use warrant_core::guard::signal::SignalKind;
use warrant_core::AgentStatus;

use crate::harness::{Ask, Harness, Outcome};

const DAY: &str = "86400";

/// A harness whose warrants may live a day, so one warrant serves a long run.
async fn long_lived() -> Harness {
    Harness::start_with(|c| c.limits.max_ttl = 86_400).await
}

#[tokio::test]
async fn a_batch_of_25_every_200_seconds_is_never_a_spike_nor_quarantined() {
    let h = long_lived().await;
    let human = h.human(&["reports.*"]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &["reports.*"]).await;
    let w = h.root(&session, &agent, Ask::new().ttl(DAY)).await.unwrap();
    // 60 batches (3 h 20 min): learning ends in the fifth; before this change the third
    // batch after it was quarantined (the idle windows decayed the usual rate to nothing).
    for batch in 0..60 {
        for i in 0..25 {
            let d = h.authorize(&w.token, "reports.build", &format!("reports/daily/{i}")).await;
            assert_eq!(d.outcome, Outcome::Allow, "batch {batch}, call {i}: {d:?}");
            assert!(!d.signals.iter().any(|s| s.kind == SignalKind::RateSpike), "batch {batch}: {d:?}");
            if i % 5 == 4 {
                h.advance(1);
            }
        }
        h.advance(200 - 5);
    }
    assert_eq!(h.agent_status(&agent).await, AgentStatus::Active);
    assert!(h.trust(&agent) > 0.99, "{}", h.trust(&agent));
    let g = h.engine().guardrails().agent(&agent.id).unwrap();
    assert!((g.baseline.rate.gap.mean - 200.0).abs() < 1.0, "the period is learned: {:?}", g.baseline.rate.gap);
}

#[tokio::test]
async fn an_hourly_job_keeps_its_trust_for_a_day() {
    let h = long_lived().await;
    let human = h.human(&["ledger.*"]).await;
    let agent = h.autonomous_agent(&human, &["ledger.*"]).await;
    for hour in 0..24 {
        let w = h.autonomous_root(&agent, Ask::new().ttl("3000")).await.unwrap();
        for i in 0..25 {
            let d = h.authorize(&w.token, "ledger.reconcile", &format!("ledger/eu/{i}")).await;
            assert_eq!(d.outcome, Outcome::Allow, "hour {hour}: {d:?}");
            assert!(d.response.is_none(), "hour {hour}: {d:?}");
        }
        h.advance(3_600);
    }
    assert!(h.trust(&agent) > 0.99, "{}", h.trust(&agent));
}

#[tokio::test]
async fn a_refused_request_retried_fifteen_times_is_one_refusal_not_probing() {
    let h = Harness::start().await;
    let human = h.human(&["tickets.*"]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &["tickets.*"]).await;
    let w = h.root(&session, &agent, Ask::new().scope("tickets.read")).await.unwrap();
    // A brand-new agent (still learning) in a naive retry loop: the same refused request,
    // fifteen times in a row, within a few seconds.
    for i in 0..15 {
        let d = h.authorize(&w.token, "tickets.close", "tickets/acme/7").await;
        assert_eq!(d.code.as_str(), "scope", "retry {i}: {d:?}");
        assert!(d.signals.is_empty() && d.response.is_none(), "retry {i}: {d:?}");
        if i % 5 == 4 {
            h.advance(1);
        }
    }
    // Its warrant still works and nothing was held against the agent.
    assert_eq!(h.authorize(&w.token, "tickets.read", "tickets/acme/7").await.outcome, Outcome::Allow);
    assert_eq!(h.agent_status(&agent).await, AgentStatus::Active);
    assert!((h.trust(&agent) - 1.0).abs() < 1e-9);

    // Varied refused requests are probing, as before: the fifth revokes the warrant.
    let probe = h.root(&session, &agent, Ask::new().scope("tickets.read")).await.unwrap();
    for n in 0..5 {
        h.authorize(&probe.token, "tickets.close", &format!("tickets/acme/{n}")).await;
    }
    assert_eq!(h.authorize(&probe.token, "tickets.read", "tickets/acme/1").await.code.as_str(), "revoked");
}

/// An agent past learning: 150 allowed reads over 15 minutes.
async fn trained(h: &Harness, scope: &str) -> (crate::harness::TestAgent, String) {
    let human = h.human(&[scope]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &[scope]).await;
    let w = h.root(&session, &agent, Ask::new().ttl(DAY)).await.unwrap();
    for i in 0..150 {
        let d = h.authorize(&w.token, "crm.read", &format!("customers/{i}")).await;
        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
        h.advance(6);
    }
    (agent, w.token)
}

const TOOLS: [(&str, &str); 4] = [
    ("kb.search", "kb/articles"),
    ("calendar.read", "calendar/team"),
    ("mail.draft", "mail/outbox"),
    ("docs.summarise", "docs/shared"),
];

#[tokio::test]
async fn a_deploy_that_adds_four_tools_on_new_prefixes_keeps_the_agent_standing() {
    let h = long_lived().await;
    let (agent, token) = trained(&h, "*").await;
    let (_, until) = h.engine().registry().announce_deploy(agent.id.as_str(), "v2.3.0", None).await.unwrap();
    assert_eq!(until, h.now().plus(86_400));
    for round in 0..10 {
        for (tool, prefix) in TOOLS {
            let d = h.authorize(&token, tool, &format!("{prefix}/{round}")).await;
            assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
            assert!(d.response.is_none(), "{d:?}");
            for s in &d.signals {
                let figures = s.figures.as_ref().unwrap();
                assert_eq!(figures.deploy.as_deref(), Some("v2.3.0"), "{s:?}");
                assert_eq!(figures.cost, Some(0.0), "{s:?}");
            }
        }
        h.advance(30);
    }
    assert!(h.trust(&agent) > 0.99, "{}", h.trust(&agent));

    // Unannounced, the same adoption is a new pattern: the graduated response holds the
    // agent for its owner's approval, but novelty alone never revokes or quarantines.
    let (quiet, token) = trained(&h, "*").await;
    let mut levels = Vec::new();
    for (tool, prefix) in TOOLS {
        let d = h.authorize(&token, tool, &format!("{prefix}/1")).await;
        assert!(!["quarantine", "revoked"].contains(&d.code.as_str()), "{d:?}");
        levels.extend(d.response.filter(|r| r.enforced).map(|r| r.level));
    }
    assert!(levels.iter().all(|&l| l <= Level::Approval), "{levels:?}");
    assert_eq!(levels.last(), Some(&Level::Approval), "{levels:?}");
    assert_eq!(h.agent_status(&quiet).await, AgentStatus::Active);
}

#[tokio::test]
async fn a_stolen_warrant_used_for_new_things_is_held_for_approval_with_the_figures_that_explain_why() {
    let h = long_lived().await;
    let (agent, token) = trained(&h, "*").await;
    let mut first_held = None;
    for n in 1..=10 {
        let d = h.authorize(&token, "payments.send", &format!("vendors/v{n}/invoices/1")).await;
        if d.outcome != Outcome::Allow {
            first_held.get_or_insert((n, d));
        }
    }
    let (n, d) = first_held.expect("contained within ten actions");
    assert!(n <= 3, "held at action {n}");
    let response = d.response.as_ref().unwrap();
    assert!(response.enforced && response.level >= Level::Approval, "{d:?}");
    // The owner sees why: the signals' figures and the response are in the trust view's
    // state and in the decision's audit record.
    let g = h.engine().guardrails().agent(&agent.id).unwrap();
    assert!(g.responses.iter().any(|(_, r)| r.level >= Level::Approval));
    let novel = g.recent.iter().find(|(_, s)| s.kind == SignalKind::NovelAction).unwrap();
    let figures = novel.1.figures.as_ref().unwrap();
    assert!(figures.sensitive && figures.cost.is_some_and(|c| c > 0.0), "{figures:?}");
}

#[tokio::test]
async fn a_response_in_shadow_mode_is_recorded_not_carried_out() {
    let h = Harness::start_with(|c| {
        c.limits.max_ttl = 86_400;
        c.guard.response.shadow = [Level::Throttle, Level::Approval, Level::RevokeWarrant].into_iter().collect();
    })
    .await;
    let (agent, token) = trained(&h, "*").await;
    let mut shadowed = Vec::new();
    for (tool, prefix) in TOOLS {
        let d = h.authorize(&token, tool, &format!("{prefix}/1")).await;
        assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
        shadowed.extend(d.response.filter(|r| !r.enforced).map(|r| r.level));
    }
    assert!(shadowed.contains(&Level::Approval), "{shadowed:?}");
    assert_eq!(h.agent_status(&agent).await, AgentStatus::Active);
    let g = h.engine().guardrails().agent(&agent.id).unwrap();
    assert!(g.responses.iter().any(|(_, r)| r.level == Level::Approval && !r.enforced), "{:?}", g.responses);
}

const HISTORY_RULES: &str = r#"
@id("at-most-three-transfers-an-hour")
forbid (principal, action == Warrant::Action::"payments.transfer", resource)
when { context.history.action.hour >= 3 };

@id("at-most-1000-a-day")
forbid (principal, action == Warrant::Action::"payments.transfer", resource)
when {
  context.telemetry has amount &&
  context.history.recent.hasTag("payments.transfer:amount@day") &&
  context.history.recent.getTag("payments.transfer:amount@day") + context.telemetry.amount > 1000
};

@id("no-export-after-a-bulk-read")
forbid (principal, action == Warrant::Action::"crm.export", resource)
when {
  context.history.recent.hasTag("crm.read") && context.history.recent.getTag("crm.read") >= 20
};
"#;

#[tokio::test]
async fn policies_read_the_agents_recent_counts_and_sums() {
    let h = Harness::start_with_policies(&[("history.cedar", HISTORY_RULES)], |c| {
        c.limits.max_ttl = 86_400;
        c.guard.enabled = false;
    })
    .await;
    let human = h.human(&["*"]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &["*"]).await;
    let w = h.root(&session, &agent, Ask::new().ttl(DAY)).await.unwrap();
    let transfer = |amount: i64| {
        let h = &h;
        let token = w.token.clone();
        async move {
            h.authorize_with(&token, "payments.transfer", "vendors/acme", serde_json::json!({"amount": amount}), None)
                .await
        }
    };
    // At most three transfers an hour: the fourth is refused, and an hour later allowed.
    for _ in 0..3 {
        assert_eq!(transfer(100).await.outcome, Outcome::Allow);
    }
    let fourth = transfer(100).await;
    assert_eq!(fourth.policies, ["at-most-three-transfers-an-hour"], "{fourth:?}");
    h.advance(3_700);
    assert_eq!(transfer(600).await.outcome, Outcome::Allow);
    // The day's sum: 300 + 600 spent; another 200 would pass 1000.
    let over = transfer(200).await;
    assert_eq!(over.policies, ["at-most-1000-a-day"], "{over:?}");
    assert_eq!(transfer(100).await.outcome, Outcome::Allow);

    // No export after a bulk read: nineteen reads leave it allowed, the twentieth blocks it.
    for i in 0..19 {
        assert_eq!(h.authorize(&w.token, "crm.read", &format!("customers/{i}")).await.outcome, Outcome::Allow);
    }
    assert_eq!(h.authorize(&w.token, "crm.export", "reports/q3").await.outcome, Outcome::Allow);
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/19").await.outcome, Outcome::Allow);
    let export = h.authorize(&w.token, "crm.export", "reports/q3").await;
    assert_eq!(export.policies, ["no-export-after-a-bulk-read"], "{export:?}");
}
