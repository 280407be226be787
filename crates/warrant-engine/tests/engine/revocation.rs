//! Revocation cascades: a warrant with its descendants, an agent with every warrant
//! whose chain holds it, a human with everything on their behalf, a task with all its
//! warrants. The very next decision denies.

use warrant_core::{AgentStatus, WarrantId};

use crate::harness::{Ask, Harness, Outcome, RevocationKind, RevokeError};

/// Asserts that `token` is denied as revoked.
async fn assert_revoked(h: &Harness, token: &str) {
    let d = h.authorize(token, "crm.read", "customers/1").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "revoked"), "{d:?}");
    assert!(d.reasons[0].contains("revoked"), "{d:?}");
}

/// Asserts that `token` is still allowed.
async fn assert_live(h: &Harness, token: &str) {
    let d = h.authorize(token, "crm.read", "customers/1").await;
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

#[tokio::test]
async fn revoking_a_warrant_ends_its_descendants_and_nothing_else() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 3).await;
    let sibling_agent = h.delegated_agent(&c.human, &["crm.*"]).await;
    let sibling = h.delegate(c.token(0), &sibling_agent, Ask::new()).await.unwrap();
    for token in [c.token(0), c.token(1), c.token(2), &sibling.token] {
        assert_live(&h, token).await;
    }
    let revoked = h.revoke(RevocationKind::Warrant, &c.jti(1)).await.unwrap();
    assert!(revoked.id.starts_with("rev_"), "{revoked:?}");
    assert_eq!(revoked.revoked_warrants, 2, "the warrant and its child");
    assert_revoked(&h, c.token(1)).await;
    assert_revoked(&h, c.token(2)).await;
    assert_live(&h, c.token(0)).await;
    assert_live(&h, &sibling.token).await;
    // A revoked warrant delegates nothing.
    let late = h.delegated_agent(&c.human, &["crm.*"]).await;
    let err = h.delegate(c.token(1), &late, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    // Revoking it again ends nothing more.
    assert_eq!(h.revoke(RevocationKind::Warrant, &c.jti(1)).await.unwrap().revoked_warrants, 0);
    let view = h.task(&c.task()).await;
    let states: Vec<&str> = view.warrants.iter().map(|w| w.state.as_str()).collect();
    assert_eq!(states, ["active", "revoked", "revoked", "active"]);
    assert!(!view.ended);
}

#[tokio::test]
async fn revoking_an_agent_ends_every_warrant_whose_chain_holds_it() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 3).await;
    let (a, b, leaf) = (&c.agents[0], &c.agents[1], &c.agents[2]);
    // B also holds a root warrant of a task of its own, and delegates it on.
    let own = h.root(&c.session, b, Ask::new().purpose("b's own work")).await.unwrap();
    let own_child = h.delegate(&own.token, leaf, Ask::new()).await.unwrap();
    // Someone else's chain is untouched.
    let other = h.chain(&["crm.*"], &["crm.*"], 2).await;

    let revoked = h.revoke(RevocationKind::Agent, b.id.as_str()).await.unwrap();
    assert_eq!(revoked.revoked_warrants, 4);
    for token in [c.token(1), c.token(2), &own.token, &own_child.token] {
        assert_revoked(&h, token).await;
    }
    assert_live(&h, c.token(0)).await;
    assert_live(&h, other.token(1)).await;
    assert_eq!(h.agent_status(b).await, AgentStatus::Suspended);
    assert_eq!(h.agent_status(a).await, AgentStatus::Active);
    assert_eq!(h.agent_status(leaf).await, AgentStatus::Active);
    // A suspended agent obtains nothing new, by either grant.
    let err = h.root(&c.session, b, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");
    let err = h.delegate(c.token(0), b, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");
    // Its former delegate still works for others.
    let fresh = h.delegate(c.token(0), leaf, Ask::new()).await.unwrap();
    assert_live(&h, &fresh.token).await;
}

#[tokio::test]
async fn revoking_a_human_ends_everything_on_their_behalf_and_their_sessions() {
    let h = Harness::start().await;
    let mine = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let theirs = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let second_task = h.root(&mine.session, &mine.agents[1], Ask::new().purpose("another")).await.unwrap();
    let revoked = h.revoke(RevocationKind::Human, mine.human.id.as_str()).await.unwrap();
    assert_eq!(revoked.revoked_warrants, 3);
    for token in [mine.token(0), mine.token(1), &second_task.token] {
        assert_revoked(&h, token).await;
    }
    assert_live(&h, theirs.token(0)).await;
    assert_live(&h, theirs.token(1)).await;
    // The session they handed out is revoked with them.
    let err = h.root(&mine.session, &mine.agents[0], Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test]
async fn revoking_a_task_ends_all_of_it_and_no_other_task() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let other_task = h.root(&c.session, &c.agents[0], Ask::new().purpose("other task")).await.unwrap();
    let revoked = h.revoke(RevocationKind::Task, &c.task()).await.unwrap();
    assert_eq!(revoked.revoked_warrants, 2);
    assert_revoked(&h, c.token(0)).await;
    assert_revoked(&h, c.token(1)).await;
    assert_live(&h, &other_task.token).await;
    let late = h.delegated_agent(&c.human, &["crm.*"]).await;
    let err = h.delegate(c.token(0), &late, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    let view = h.task(&c.task()).await;
    assert!(view.ended);
    assert!(view.warrants.iter().all(|w| w.state.as_str() == "revoked"), "{:?}", view.warrants);
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let mut h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 3).await;
    let other = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let third = h.chain(&["crm.*"], &["crm.*"], 1).await;
    h.revoke(RevocationKind::Warrant, &c.jti(1)).await.unwrap();
    h.revoke(RevocationKind::Task, &other.task()).await.unwrap();
    h.revoke(RevocationKind::Agent, third.agents[0].id.as_str()).await.unwrap();
    h.restart().await;
    for token in [c.token(1), c.token(2), other.token(0), other.token(1), third.token(0)] {
        assert_revoked(&h, token).await;
    }
    assert_live(&h, c.token(0)).await;
    assert!(h.task(&other.task()).await.ended);
    assert_eq!(h.agent_status(&third.agents[0]).await, AgentStatus::Suspended);
    let err = h.root(&third.session, &third.agents[0], Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_client", "{err}");
    let err = h.delegate(other.token(0), &c.agents[2], Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    assert!(h.audit_verifies().await);
}

#[tokio::test]
async fn revoking_what_does_not_exist_is_refused() {
    let h = Harness::start().await;
    let unknown = WarrantId::from_random([7; 12]).to_string();
    assert!(matches!(
        h.revoke(RevocationKind::Warrant, &unknown).await,
        Err(RevokeError::NotFound { kind: "warrant", .. })
    ));
    assert!(matches!(h.revoke(RevocationKind::Agent, "not-an-id").await, Err(RevokeError::Invalid(_))));
}
