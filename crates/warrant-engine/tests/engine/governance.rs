//! Governance: findings from explicit sweeps as the clock moves (no background loop).

use warrant_core::govern::{FindingKind, Severity};
use warrant_core::AgentStatus;

use crate::harness::{Ask, Harness, Outcome};

const DAY: i64 = 86_400;

#[tokio::test]
async fn an_agent_idle_past_the_threshold_is_found_and_resolves_once_it_acts() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let idle = h.delegated_agent(&human, &["crm.read"]).await;
    let busy = h.delegated_agent(&human, &["crm.read"]).await;
    h.sweep().await;
    assert!(h.findings(&idle, FindingKind::IdleAgent).is_empty(), "new agents are not idle");

    // Twenty days on, the busy agent works; eleven more, the other one has been idle for
    // thirty-one days, past the thirty-day threshold.
    h.advance(20 * DAY);
    let session = h.session(&human).await;
    let w = h.root(&session, &busy, Ask::new()).await.unwrap();
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    h.advance(11 * DAY);
    let report = h.sweep().await;
    assert!(report.opened >= 1, "{report:?}");
    let found = h.findings(&idle, FindingKind::IdleAgent);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.severity, Severity::Low);
    assert_eq!(f.subject, idle.id.to_string());
    assert_eq!(f.first_seen, h.now());
    assert_eq!(f.evidence["idle_secs"], 31 * DAY);
    assert_eq!(f.evidence["idle_after_secs"], 30 * DAY);
    assert_eq!(f.evidence["never_active"], true);
    assert!(h.findings(&busy, FindingKind::IdleAgent).is_empty(), "eleven days is not idle");

    // A sweep with nothing new leaves it as it is.
    let again = h.sweep().await;
    assert_eq!(again.opened, 0, "{again:?}");
    assert_eq!(h.findings(&idle, FindingKind::IdleAgent)[0].id, f.id);

    // It acts: the next sweep resolves the finding.
    let session = h.session(&human).await;
    let w = h.root(&session, &idle, Ask::new()).await.unwrap();
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    let report = h.sweep().await;
    assert!(report.resolved >= 1, "{report:?}");
    assert!(h.findings(&idle, FindingKind::IdleAgent).is_empty());
}

#[tokio::test]
async fn an_orphaned_agent_is_found_and_suspended_when_so_configured() {
    let h = Harness::start_with(|c| c.govern.auto_suspend_orphans = true).await;
    let c = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let owner = h.human(&["crm.*"]).await;
    let other = h.delegated_agent(&owner, &["crm.read"]).await;
    assert!(h.findings(&c.agents[0], FindingKind::OrphanedAgent).is_empty());

    h.disable_human(&c.human).await;
    let report = h.sweep().await;
    assert_eq!(report.suspended, 2, "{report:?}");
    for agent in &c.agents {
        assert_eq!(h.findings(agent, FindingKind::OrphanedAgent).len(), 1);
        assert_eq!(h.agent_status(agent).await, AgentStatus::Suspended);
    }
    assert!(h.findings(&other, FindingKind::OrphanedAgent).is_empty());
    assert_eq!(h.agent_status(&other).await, AgentStatus::Active);
    for i in 0..2 {
        assert_eq!(h.authorize(c.token(i), "crm.read", "customers/1").await.outcome, Outcome::Deny);
    }
}

/// One agent's inventory row (the console's agent page) is the row the whole inventory
/// holds for it: findings, activity and trust included.
#[tokio::test]
async fn one_agents_inventory_row_is_its_row_in_the_whole_inventory() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let idle = h.delegated_agent(&human, &["crm.read"]).await;
    let busy = h.delegated_agent(&human, &["crm.read"]).await;
    h.advance(20 * DAY);
    let session = h.session(&human).await;
    let w = h.root(&session, &busy, Ask::new()).await.unwrap();
    assert_eq!(h.authorize(&w.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    h.advance(11 * DAY);
    h.sweep().await;
    let governance = h.engine().governance();
    let all = governance.inventory();
    for agent in [&idle, &busy] {
        let row = governance.inventory_row(&agent.id).unwrap();
        assert_eq!(Some(&row), all.iter().find(|r| r.id == agent.id));
    }
    let idle_row = governance.inventory_row(&idle.id).unwrap();
    assert_eq!(idle_row.open_findings, vec![FindingKind::IdleAgent]);
    assert!(governance.inventory_row(&busy.id).unwrap().last_activity.is_some());
    assert!(governance.inventory_row(&warrant_core::AgentId::from_random([7; 12])).is_none());
}
