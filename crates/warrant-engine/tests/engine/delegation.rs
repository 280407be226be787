//! Delegation: a child warrant only narrows its parent, nests the actor chain, respects
//! the depth limit and never outlives its parent.

use warrant_core::Mode;

use crate::harness::{perms, Ask, Harness, Outcome};

#[tokio::test]
async fn a_delegation_only_narrows() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*", "tickets.*"]).await;
    let session = h.session(&human).await;
    let a = h.delegated_agent(&human, &["crm.*", "tickets.*"]).await;
    let b = h.delegated_agent(&human, &["crm.*"]).await;
    let c = h.delegated_agent(&human, &["crm.*"]).await;
    let root = h.root(&session, &a, Ask::new().scope("crm.read crm.write:leads/** tickets.read")).await.unwrap();

    // Asking for nothing in particular: the parent's scope within the child's ceiling.
    let child = h.delegate(&root.token, &b, Ask::new()).await.unwrap();
    assert_eq!(perms(&child.claims.scope), perms("crm.read crm.write:leads/**"));
    // Asking for less gets exactly that.
    let narrow = h.delegate(&root.token, &b, Ask::new().scope("crm.write:leads/hot/**")).await.unwrap();
    assert_eq!(narrow.claims.scope, "crm.write:leads/hot/**");
    // Anything beyond the parent, or the child's own ceiling, is refused.
    for over in ["crm.delete", "crm.write", "crm.write:customers/**", "tickets.read"] {
        let err = h.delegate(&root.token, &b, Ask::new().scope(over)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_scope", "{over}: {err}");
    }
    // A grandchild cannot win back what its parent gave up.
    let err = h.delegate(&narrow.token, &c, Ask::new().scope("crm.read")).await.unwrap_err();
    assert_eq!(err.code(), "invalid_scope", "{err}");
    let grand = h.delegate(&narrow.token, &c, Ask::new()).await.unwrap();
    assert_eq!(grand.claims.scope, "crm.write:leads/hot/**");

    // And decisions follow the narrowed scope.
    assert_eq!(h.authorize(&narrow.token, "crm.write", "leads/hot/1").await.outcome, Outcome::Allow);
    assert_eq!(h.authorize(&narrow.token, "crm.write", "leads/cold/1").await.code.as_str(), "scope");
    assert_eq!(h.authorize(&narrow.token, "crm.read", "customers/1").await.code.as_str(), "scope");
    assert_eq!(h.authorize(&root.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
}

#[tokio::test]
async fn a_delegation_nests_the_actor_chain_and_keeps_the_task() {
    let h = Harness::start().await;
    let chain = h.chain(&["crm.*"], &["crm.*"], 3).await;
    let (a, b, c) = (&chain.agents[0].id, &chain.agents[1].id, &chain.agents[2].id);
    let claims = &chain.warrants[2].claims;
    assert_eq!(&claims.act.sub, c, "the outermost actor acts now");
    let inner = claims.act.act.as_deref().unwrap();
    assert_eq!(&inner.sub, b);
    let innermost = inner.act.as_deref().unwrap();
    assert_eq!(&innermost.sub, a);
    assert!(innermost.act.is_none());
    assert_eq!(claims.chain(), vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(claims.depth(), 3);
    assert_eq!(&claims.client_id, c);
    assert_eq!(claims.parent.as_ref(), Some(&chain.warrants[1].claims.jti));
    assert_eq!(chain.warrants[1].claims.parent.as_ref(), Some(&chain.warrants[0].claims.jti));
    for w in &chain.warrants {
        assert_eq!(w.claims.task.id, chain.warrants[0].claims.task.id, "one task");
        assert_eq!(w.claims.sub, chain.human.id.to_string());
        assert_eq!(w.claims.mode, Mode::Delegated);
        assert!(w.exchanged);
    }
    // The task tree holds all three.
    let task = h.task(&chain.task()).await;
    let held: Vec<_> = task.warrants.iter().map(|w| (w.record.jti.clone(), w.record.chain.len())).collect();
    let expected: Vec<_> = chain.warrants.iter().map(|w| (w.claims.jti.clone(), w.claims.depth())).collect();
    assert_eq!(held, expected);

    // An agent already in the chain cannot be delegated to again.
    let err = h.delegate(chain.token(2), &chain.agents[0], Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    assert!(err.to_string().contains("already appears"), "{err}");
}

#[tokio::test]
async fn the_depth_limit_holds() {
    let h = Harness::start().await;
    let chain = h.chain(&["crm.*"], &["crm.*"], 5).await;
    assert_eq!(chain.warrants[4].claims.depth(), 5);
    assert_eq!(h.authorize(chain.token(4), "crm.read", "customers/1").await.outcome, Outcome::Allow);
    let sixth = h.delegated_agent(&chain.human, &["crm.*"]).await;
    let err = h.delegate(chain.token(4), &sixth, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    assert!(err.to_string().contains("the limit is 5"), "{err}");

    // The limit is configuration.
    let shallow = Harness::start_with(|c| c.limits.max_depth = 2).await;
    let chain = shallow.chain(&["crm.*"], &["crm.*"], 2).await;
    let third = shallow.delegated_agent(&chain.human, &["crm.*"]).await;
    let err = shallow.delegate(chain.token(1), &third, Ask::new()).await.unwrap_err();
    assert!(err.to_string().contains("the limit is 2"), "{err}");
}

#[tokio::test]
async fn a_child_never_outlives_its_parent() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let a = h.delegated_agent(&human, &["crm.*"]).await;
    let b = h.delegated_agent(&human, &["crm.*"]).await;
    let root = h.root(&session, &a, Ask::new().ttl("100")).await.unwrap();
    h.advance(40);
    let long = h.delegate(&root.token, &b, Ask::new().ttl("900")).await.unwrap();
    assert_eq!(long.claims.exp, root.claims.exp, "capped at the parent's expiry");
    assert_eq!(long.expires_in, 60);
    assert_eq!(long.claims.iat, h.now());
    let short = h.delegate(&root.token, &b, Ask::new().ttl("10")).await.unwrap();
    assert_eq!(short.claims.exp, h.now().plus(10));

    h.advance(59);
    assert_eq!(h.authorize(&long.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    h.advance(1);
    // Parent and child expire together; an expired parent delegates nothing.
    for token in [&root.token, &long.token] {
        let d = h.authorize(token, "crm.read", "customers/1").await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_token"), "{d:?}");
    }
    let err = h.delegate(&root.token, &b, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
}

#[tokio::test]
async fn autonomous_work_is_delegated_only_to_autonomous_agents() {
    let h = Harness::start().await;
    let owner = h.human(&[]).await;
    let root_bot = h.autonomous_agent(&owner, &["crm.*"]).await;
    let worker = h.autonomous_agent(&owner, &["crm.read"]).await;
    let helper = h.delegated_agent(&owner, &["crm.read"]).await;
    let root = h.autonomous_root(&root_bot, Ask::new()).await.unwrap();
    let child = h.delegate(&root.token, &worker, Ask::new()).await.unwrap();
    assert_eq!(child.claims.mode, Mode::Autonomous);
    assert_eq!(child.claims.sub, root_bot.id.to_string(), "the subject stays the root agent");
    assert_eq!(child.claims.scope, "crm.read");
    let err = h.delegate(&root.token, &helper, Ask::new()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
}
