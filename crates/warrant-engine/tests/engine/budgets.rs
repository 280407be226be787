//! Budgets: a warrant with `budget=estimated_cost=100` is denied once what its requests
//! report spending would exceed it; a child gets at most what its parent has left, and
//! spends from its parent's budget too.

use serde_json::{json, Value};

use crate::harness::{Ask, Decision, Harness, Outcome};

async fn spend(h: &Harness, token: &str, cost: i64) -> Decision {
    h.authorize_with(token, "crm.read", "leads/1", json!({"estimated_cost": cost}), None).await
}

/// Asserts a budget deny that says `left` is left.
#[track_caller]
fn assert_left(d: &Decision, left: i64) {
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "budget"), "{d:?}");
    assert!(d.reasons[0].contains(&format!("has {left} left")), "expected {left} left: {d:?}");
}

#[track_caller]
fn assert_spent(d: &Decision, cost: i64) {
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert!(d.charges.iter().all(|c| c.counter == "estimated_cost" && c.amount == cost), "{d:?}");
    assert!(!d.charges.is_empty(), "{d:?}");
}

#[tokio::test]
async fn a_budget_is_spent_to_the_unit_and_then_denies() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let agent = h.delegated_agent(&human, &["crm.*"]).await;
    let w = h.root(&session, &agent, Ask::new().budget("estimated_cost=100")).await.unwrap();
    assert_eq!(w.claims.budget.get("estimated_cost"), Some(&100));
    let t = &w.token;

    assert_spent(&spend(&h, t, 60).await, 60);
    assert_left(&spend(&h, t, 41).await, 40);
    assert_spent(&spend(&h, t, 40).await, 40);
    assert_left(&spend(&h, t, 1).await, 0);
    // A request that reports no cost spends nothing and stays allowed.
    assert_eq!(h.authorize(t, "crm.read", "leads/1").await.outcome, Outcome::Allow);
    assert_eq!(h.authorize_with(t, "crm.read", "leads/1", json!({"rows": 5}), None).await.outcome, Outcome::Allow);
    // Amounts that cannot be charged are denied and charge nothing.
    assert_eq!(spend(&h, t, -5).await.code.as_str(), "budget");
    let text = h.authorize_with(t, "crm.read", "leads/1", json!({"estimated_cost": "12"}), None).await;
    assert_eq!(text.outcome, Outcome::Deny, "{text:?}");

    // A warrant without a budget is not limited by one.
    let free = h.root(&session, &agent, Ask::new()).await.unwrap();
    assert!(free.claims.budget.is_empty());
    assert_eq!(spend(&h, &free.token, 5000).await.outcome, Outcome::Allow);

    // A malformed budget is refused at issuance.
    for bad in ["estimated_cost=lots", "estimated_cost=-5", "estimated_cost", "Cost=5"] {
        let err = h.root(&session, &agent, Ask::new().budget(bad)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{bad}: {err}");
    }
}

#[tokio::test]
async fn a_child_gets_at_most_what_its_parent_has_left_and_spends_from_it() {
    let mut h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let mut agents = Vec::new();
    for _ in 0..4 {
        agents.push(h.delegated_agent(&human, &["crm.*"]).await);
    }
    let root = h.root(&session, &agents[0], Ask::new().budget("estimated_cost=100")).await.unwrap();
    assert_spent(&spend(&h, &root.token, 60).await, 60);

    // Asking for more than the parent has left gets what it has left; asking for less
    // gets that; asking for nothing inherits what is left.
    let greedy = h.delegate(&root.token, &agents[1], Ask::new().budget("estimated_cost=5000")).await.unwrap();
    assert_eq!(greedy.claims.budget.get("estimated_cost"), Some(&40));
    let modest = h.delegate(&root.token, &agents[2], Ask::new().budget("estimated_cost=15")).await.unwrap();
    assert_eq!(modest.claims.budget.get("estimated_cost"), Some(&15));
    let grand = h.delegate(&greedy.token, &agents[3], Ask::new()).await.unwrap();
    assert_eq!(grand.claims.budget.get("estimated_cost"), Some(&40));

    // The grandchild's spend counts against every ancestor.
    assert_spent(&spend(&h, &grand.token, 30).await, 30);
    assert_left(&spend(&h, &root.token, 11).await, 10);
    assert_left(&spend(&h, &greedy.token, 11).await, 10);
    assert_left(&spend(&h, &grand.token, 11).await, 10);
    // What was spent is durable: a restart forgets none of it.
    h.restart().await;
    assert_left(&spend(&h, &root.token, 11).await, 10);
    assert_left(&spend(&h, &grand.token, 11).await, 10);
    // The modest child's own cap still holds, within what the root has left.
    assert_left(&spend(&h, &modest.token, 11).await, 10);
    assert_spent(&spend(&h, &modest.token, 10).await, 10);
    // Nothing is left anywhere in the tree now.
    for token in [&root.token, &greedy.token, &modest.token, &grand.token] {
        assert_left(&spend(&h, token, 1).await, 0);
        assert_eq!(h.authorize_with(token, "crm.read", "leads/1", Value::Null, None).await.outcome, Outcome::Allow);
    }
    // A delegation minted now gets what is left: nothing.
    let late = h.delegated_agent(&human, &["crm.*"]).await;
    let broke = h.delegate(&root.token, &late, Ask::new()).await.unwrap();
    assert_eq!(broke.claims.budget.get("estimated_cost"), Some(&0));
}
