//! The Shared Signals transmitter under concurrency: revocations racing with a receiver
//! that polls and acknowledges lose no revoked warrant and never skip one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use warrant_core::UnixTime;
use warrant_engine::events::EventKind;
use warrant_engine::transmitter::{Delivery, Owner, PollRequest, StreamRequest, POLL};
use warrant_store::RevocationKind;

use crate::harness::{wait_until, Harness};

fn poll_stream() -> StreamRequest {
    StreamRequest {
        delivery: Delivery { method: POLL.into(), endpoint_url: None, authorization_header: None },
        events_requested: Vec::new(),
        description: None,
    }
}

/// The warrant a SET announces (its signature is checked by the Python subscriber
/// tests; here only what it says).
fn announced(set: &str) -> String {
    use base64::Engine as _;
    let payload = set.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub_id"]["session"]["jti"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_racing_with_polls_and_acks_lose_nothing() {
    let h = Arc::new(Harness::start().await);
    let owner = Owner::Pep("pep_test".into());
    let stream = h.engine().transmitter().create(&owner, poll_stream()).await.unwrap();
    let mut chains = Vec::new();
    for _ in 0..12 {
        chains.push(h.chain(&["crm.read"], &["crm.read"], 2).await);
    }
    let expected: BTreeSet<String> = chains.iter().flat_map(|c| [c.jti(0), c.jti(1)]).collect();

    // Revoke every root (each takes its child with it) from several tasks at once...
    let mut revokers = Vec::new();
    for chain in &chains {
        let (h, jti) = (Arc::clone(&h), chain.jti(0));
        revokers.push(tokio::spawn(async move { h.revoke(RevocationKind::Warrant, &jti).await.unwrap() }));
    }
    // ...while the receiver polls and acknowledges what it got each time.
    let mut received = BTreeSet::new();
    let mut ack: Vec<String> = Vec::new();
    for _ in 0..200 {
        let req = PollRequest { ack: std::mem::take(&mut ack), max_events: Some(5), ..PollRequest::default() };
        let answer = h.engine().transmitter().poll(&owner, &stream.stream_id, req).await.unwrap();
        for (id, set) in answer.sets {
            received.insert(announced(&set));
            ack.push(id);
        }
        if received.len() == expected.len() && revokers.iter().all(|r| r.is_finished()) {
            break;
        }
        tokio::task::yield_now().await;
    }
    for r in revokers {
        r.await.unwrap();
    }
    // Whatever is left after the last revocation is there for the next poll.
    loop {
        let req = PollRequest { ack: std::mem::take(&mut ack), ..PollRequest::default() };
        let answer = h.engine().transmitter().poll(&owner, &stream.stream_id, req).await.unwrap();
        if answer.sets.is_empty() {
            break;
        }
        for (id, set) in answer.sets {
            received.insert(announced(&set));
            ack.push(id);
        }
    }
    assert_eq!(received, expected, "every revoked warrant is announced, and nothing else");
}

/// With every background loop running and nobody streaming the live events, a decision
/// builds no event and wakes nothing: the SSF push loop follows revocations only. It
/// followed every event, so each decision built its event and woke the loop, which read
/// the streams from the store (a tenth of the server's CPU at one connection).
#[tokio::test]
async fn the_push_loop_follows_revocations_not_decisions() {
    let h = Harness::start().await;
    let background = h.start_background();
    assert!(!h.events().has_subscribers(), "a background loop listens to every event");
    background.shutdown().await;
}

/// The revocations of a burst are delivered by one push round, which reads the streams
/// from the store once for all of them; a round per revocation made the store read the
/// streams some 1 800 times a second at 64 connections. (The runtime has one thread, so
/// the burst is published before the loop can take any of it.)
#[tokio::test]
async fn a_burst_of_revocations_takes_one_push_round() {
    let h = Harness::start().await;
    let background = h.start_background();
    let transmitter = h.engine().transmitter();
    wait_until(Duration::from_secs(10), "the round at start", || transmitter.push_rounds() >= 1).await;
    let before = transmitter.push_rounds();
    for _ in 0..50 {
        h.events().publish_with(EventKind::Revocation, UnixTime(1), None, || serde_json::Value::Null);
    }
    wait_until(Duration::from_secs(10), "a round for the burst", || transmitter.push_rounds() > before).await;
    // Time for any further round the burst would start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rounds = transmitter.push_rounds() - before;
    // One for the burst; at most one more, the loop's tick (once a second) falling here.
    assert!(rounds <= 2, "{rounds} push rounds for a burst of 50 revocations");
    background.shutdown().await;
}
