//! Task completion: by an administrator or by the holder of the task's root warrant,
//! never by a delegate; completion ends every warrant of the task.

use crate::harness::{Ask, Harness, Outcome, RevokeError, TaskView};

#[tokio::test]
async fn an_administrator_completes_a_task_and_every_warrant_of_it_ends() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 3).await;
    let other = h.root(&c.session, &c.agents[0], Ask::new().purpose("keep going")).await.unwrap();
    let done = h.complete_task_as_admin(&c.task()).await.unwrap();
    assert_eq!(done.revoked_warrants, 3);
    for i in 0..3 {
        let d = h.authorize(c.token(i), "crm.read", "customers/1").await;
        assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
        assert!(d.reasons[0].contains("task completed by an administrator"), "{d:?}");
    }
    assert_eq!(h.authorize(&other.token, "crm.read", "customers/1").await.outcome, Outcome::Allow);
    let view = h.task(&c.task()).await;
    assert!(view.ended);
    assert!(view.warrants.iter().all(|w| w.state.as_str() == "revoked"));
}

#[tokio::test]
async fn the_root_warrant_holder_completes_its_task_a_delegate_cannot() {
    let h = Harness::start().await;
    let c = h.chain(&["crm.*"], &["crm.*"], 2).await;
    let other = h.chain(&["crm.*"], &["crm.*"], 1).await;

    // Not by a delegate of the task, nor by the root warrant of another task.
    for token in [c.token(1), other.token(0)] {
        let err = h.complete_task_with(&c.task(), token).await.unwrap_err();
        assert!(matches!(err, RevokeError::Forbidden(_)), "{err}");
    }
    assert!(matches!(h.complete_task_with(&c.task(), "junk").await, Err(RevokeError::Forbidden(_))));
    assert_eq!(h.authorize(c.token(1), "crm.read", "customers/1").await.outcome, Outcome::Allow, "still open");

    let done = h.complete_task_with(&c.task(), c.token(0)).await.unwrap();
    assert_eq!(done.revoked_warrants, 2);
    for i in 0..2 {
        let d = h.authorize(c.token(i), "crm.read", "customers/1").await;
        assert_eq!(d.code.as_str(), "revoked", "{d:?}");
        assert!(d.reasons[0].contains(&format!("agent `{}` holding the root warrant", c.agents[0].id)), "{d:?}");
    }
    assert_eq!(h.authorize(other.token(0), "crm.read", "customers/1").await.outcome, Outcome::Allow);
    // Done is done: the revoked root warrant cannot complete it again.
    assert!(matches!(h.complete_task_with(&c.task(), c.token(0)).await, Err(RevokeError::Forbidden(_))));
}

#[tokio::test]
async fn a_task_view_shows_expiry_as_the_clock_moves() {
    let h = Harness::start().await;
    let human = h.human(&["crm.*"]).await;
    let session = h.session(&human).await;
    let a = h.delegated_agent(&human, &["crm.*"]).await;
    let b = h.delegated_agent(&human, &["crm.*"]).await;
    let root = h.root(&session, &a, Ask::new().ttl("600")).await.unwrap();
    let child = h.delegate(&root.token, &b, Ask::new().ttl("60")).await.unwrap();
    let task = root.claims.task.id.to_string();
    let states = |view: &TaskView| view.warrants.iter().map(|w| w.state.as_str()).collect::<Vec<_>>();
    assert_eq!(states(&h.task(&task).await), ["active", "active"]);
    h.advance(60);
    assert_eq!(states(&h.task(&task).await), ["active", "expired"]);
    assert_eq!(h.authorize(&child.token, "crm.read", "x/1").await.code.as_str(), "invalid_token");
    h.advance(540);
    let view = h.task(&task).await;
    assert_eq!(states(&view), ["expired", "expired"]);
    assert!(!view.ended, "expiry is not completion");
}
