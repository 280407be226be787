//! What one connection, client or address may take of the server: header timeouts, the
//! connection limit, token-endpoint and anonymous-decision rate limits, and the size of
//! what a token request may make the server compute and mint.
//!
//! The connection and per-address tests run over the socket: the accept loop applies the
//! timeouts and the connection limit and records the peer address the rate limits key on.
//! Their waits are on the wall clock by necessity (a header timeout is real time on a real
//! connection); each is bounded well above the one-second timeout it waits for.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use warrant_server::config::LimitsFile;
use warrant_server::FileConfig;

use crate::testkit::{assert_allow, assert_deny, Server};

fn limits(l: LimitsFile) -> FileConfig {
    FileConfig { limits: Some(l), ..Default::default() }
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; `None` if it has not within `limit` (a
/// bound, so that a connection the server fails to close fails the test instead of
/// hanging it).
async fn closed_within(conn: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    match tokio::time::timeout(limit, conn.read_to_end(&mut seen)).await {
        Ok(_) => Some(String::from_utf8_lossy(&seen).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_connections_beyond_the_limit_wait_their_turn() {
    let s = Server::start_with(limits(LimitsFile {
        header_timeout_secs: Some(1),
        max_connections: Some(4),
        ..Default::default()
    }))
    .await
    .over_socket();
    // Four connections take every slot, each dribbling a header a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ").await.unwrap();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if conn.write_all(b"a").await.is_err() {
                    break;
                }
                let mut byte = [0u8; 1];
                let read = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut byte)).await;
                if let Ok(Ok(0) | Err(_)) = read {
                    break;
                }
            }
            started.elapsed()
        }));
    }
    // A fifth client is not refused: it is served once the slow ones are cut off.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    let reply = fresh.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    // Trickling bytes did not keep the slow connections open past the header timeout.
    for task in slow {
        let lasted = task.await.unwrap();
        assert!(lasted < Duration::from_secs(6), "a slow-header connection stayed open {lasted:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_connection_beyond_the_limit_is_served_only_once_a_slot_frees() {
    // A header timeout far beyond the test, so only the test frees a slot.
    let s = Server::start_with(limits(LimitsFile {
        header_timeout_secs: Some(60),
        max_connections: Some(4),
        ..Default::default()
    }))
    .await
    .over_socket();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(conn);
    }
    let url = s.url("/healthz");
    let fifth = tokio::spawn(async move {
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        fresh.get(url).send().await.map(|r| r.status())
    });
    // A pause, not a measurement: long enough for a server without the limit to have
    // answered a health check many times over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fifth.is_finished(), "served while every slot was taken");
    // Closing one held connection frees its slot: the fifth is served.
    drop(held.pop());
    assert_eq!(fifth.await.unwrap().unwrap(), StatusCode::OK);
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let s = Server::start_with(limits(LimitsFile { header_timeout_secs: Some(1), ..Default::default() }))
        .await
        .over_socket();
    let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The answer comes, then the idle connection is closed although it asked to be kept.
    let seen = closed_within(&mut conn, Duration::from_secs(6)).await.expect("the idle connection stays open");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    s.stop().await;
}

fn retry_after(reply: &crate::testkit::Reply) -> u64 {
    reply.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn token_requests_are_rate_limited_per_agent_and_per_address() {
    let s = Server::start_with(limits(LimitsFile {
        token_rate_per_client: Some("2/min".into()),
        token_rate_per_ip: Some("2/min".into()),
        ..Default::default()
    }))
    .await
    .over_socket();
    let owner = s.human(&["*"]).await;
    let busy = s.agent(&owner, "autonomous", &["crm.read"]).await;
    let other = s.agent(&owner, "autonomous", &["crm.read"]).await;
    for _ in 0..2 {
        s.client_credentials(&busy, "p", &[]).await.ok();
    }
    let refused = s.client_credentials(&busy, "p", &[]).await;
    refused.oauth_error(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable");
    assert!((1..=60).contains(&retry_after(&refused)), "{:?}", refused.headers);
    // Per agent: another agent from the same address is served.
    s.client_credentials(&other, "p", &[]).await.ok();

    // Requests naming no registered agent are counted per address.
    let nobody = [("grant_type", "client_credentials"), ("task_purpose", "p")];
    for _ in 0..2 {
        s.token(&nobody).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let refused = s.token(&nobody).await;
    refused.oauth_error(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable");
    assert!(retry_after(&refused) >= 1);
    s.stop().await;
}

#[tokio::test]
async fn anonymous_decisions_are_rate_limited_per_address() {
    let s =
        Server::start_with(limits(LimitsFile { anonymous_rate_per_ip: Some("3/min".into()), ..Default::default() }))
            .await
            .over_socket();
    let c = s.chain(&["crm.*"], &["crm.*"], 1, "p").await;
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);
    for _ in 0..3 {
        assert_deny(&s.authorize("junk", "crm.read", "customers/1", Value::Null).await, "invalid_token");
    }
    let body = json!({"token": "junk", "action": "crm.read", "resource": "customers/1"});
    let refused = s.authorize_body(&body).await;
    refused.api_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry_after(&refused) >= 1);
    let batch = s.authorize_batch(std::slice::from_ref(&body)).await;
    batch.api_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // A warrant of ours the server has verified is still decided.
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/2", Value::Null).await);
    s.stop().await;
}

#[tokio::test]
async fn refused_security_events_are_rate_limited_per_address() {
    let s =
        Server::start_with(limits(LimitsFile { anonymous_rate_per_ip: Some("2/min".into()), ..Default::default() }))
            .await
            .over_socket();
    let post =
        || s.http.post(s.url("/ssf/receiver")).header("content-type", "application/secevent+jwt").body("not.a.set");
    for _ in 0..2 {
        let reply = s.send(post()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }
    let refused = s.send(post()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.text);
    assert_eq!(refused.body["err"], "temporarily_unavailable");
    assert!(retry_after(&refused) >= 1);
    s.stop().await;
}

/// `n` permissions of 15 bytes each: with the spaces, 16n - 1 bytes.
fn permissions(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a.p{i:03}:rr/{i:03}/x")).collect()
}

#[tokio::test]
async fn a_warrant_of_the_largest_scope_is_minted_and_allowed() {
    let s = Server::start().await;
    let owner = s.human(&["*"]).await;
    let max = permissions(256);
    let refs: Vec<&str> = max.iter().map(String::as_str).collect();
    let agent = s.agent(&owner, "autonomous", &refs).await;
    // The longest purpose, in four-byte characters.
    let purpose = "\u{1F600}".repeat(500);
    let reply = s.client_credentials(&agent, &purpose, &[]).await;
    let body = reply.ok();
    assert_eq!(body["scope"].as_str().unwrap().split(' ').count(), 256);
    let token = body["access_token"].as_str().unwrap();
    assert_allow(&s.authorize(token, "a.p255", "rr/255/x", Value::Null).await);
    assert_allow(&s.authorize(token, "a.p000", "rr/000/x", Value::Null).await);
    s.stop().await;
}

#[tokio::test]
async fn scopes_too_large_for_a_warrant_are_refused_with_the_limit() {
    let s = Server::start().await;
    // More than 256 permissions cannot be registered.
    let owner = s.human(&["*"]).await;
    let too_many = permissions(257);
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let reply = s
        .admin_post(
            "/v1/agents",
            &crate::testkit::Server::agent_body(&owner, "autonomous", &refs, &crate::testkit::new_key()),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text);
    assert!(reply.text.contains("at most 256 permissions"), "{}", reply.text);

    // 256 long permissions are a valid max scope, but too large for one warrant: without
    // `scope` the request is refused, asking for one; with one it is served.
    let long: Vec<String> = (0..256).map(|i| format!("crm.read:customers/{i:03}/{}", "n".repeat(20))).collect();
    let refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let agent = s.agent(&owner, "autonomous", &refs).await;
    let reply = s.client_credentials(&agent, "p", &[]).await;
    reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(reply.text.contains("explicit `scope`"), "{}", reply.text);
    s.client_credentials(&agent, "p", &[("scope", refs[7])]).await.ok();

    // Ceilings whose intersection explodes (every action of one with every resource of
    // the other: 65,536 meets) are refused by the bound on the intersection (that it stops
    // early is `scope::tests::bounded_intersection_stops_early`).
    let actions: Vec<String> = (0..256).map(|i| format!("x.a{i}:*/**")).collect();
    let resources: Vec<String> = (0..256).map(|i| format!("x.*:r{i}/**")).collect();
    let human = s.human(&resources.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let delegated = s.agent(&owner, "delegated", &actions.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let session = s.session(&human).await;
    let reply = s.delegated_root(&session, &delegated, &[]).await;
    reply.oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    assert!(reply.text.contains("256 permissions"), "{}", reply.text);
    s.stop().await;
}

/// How many decision records the audit log holds (at most 1000).
async fn decision_records(s: &Server) -> usize {
    s.admin_get("/v1/audit?kind=decision&limit=1000").await.ok()["records"].as_array().map_or(0, Vec::len)
}

/// Past `max_in_flight` requests in progress, decisions and token requests are shed at
/// once with 503 and `Retry-After`, with no decision and no audit record; the kill switch
/// is never shed, and a freed place admits again.
#[tokio::test]
async fn decisions_beyond_the_in_flight_bound_are_shed_and_revocation_is_not() {
    let s = Server::start_with(limits(LimitsFile {
        max_in_flight: Some(1),
        header_timeout_secs: Some(60),
        ..Default::default()
    }))
    .await
    .over_socket();
    let c = s.chain(&["crm.*"], &["crm.*"], 1, "p").await;
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);
    let before = decision_records(&s).await;

    // A decision whose body is still arriving holds the one place.
    let mut slow = TcpStream::connect(addr(&s)).await.unwrap();
    slow.write_all(
        b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
    )
    .await
    .unwrap();
    // Admission happens once the headers are read: wait until the place is taken.
    let (mut shed, mut allowed) = (None, 0usize);
    for _ in 0..200 {
        let reply = s
            .send(s.http.post(s.url("/v1/authorize")).json(&json!({
                "token": c.token(0), "action": "crm.read", "resource": "customers/2"
            })))
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(reply);
            break;
        }
        assert_allow(&reply.body);
        allowed += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = shed.expect("a decision beyond the bound was admitted");
    shed.api_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(retry_after(&shed), 1);
    let batch =
        s.authorize_batch(&[json!({"token": c.token(0), "action": "crm.read", "resource": "customers/3"})]).await;
    batch.api_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    let token = s.client_credentials(&c.agents[0], "p", &[]).await;
    token.oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    assert_eq!(retry_after(&token), 1);
    let metrics = s.get("/metrics").await.text;
    assert!(metrics.contains("warrant_shed_total 3"), "{metrics}");
    assert!(metrics.contains("warrant_in_flight 1"), "{metrics}");

    // The kill switch still works, and nothing shed was recorded as a decision.
    let revoked = s.revoke("warrant", &c.jti(0), "incident").await;
    assert!(revoked["revoked_warrants"].as_u64() >= Some(1), "{revoked}");
    // The probes allowed before the place was taken are the only new decision records.
    assert_eq!(decision_records(&s).await - before, allowed);

    // Closing the slow request frees its place: the next decision is decided (a deny,
    // the warrant is revoked).
    drop(slow);
    let mut decided = None;
    for _ in 0..200 {
        let reply =
            s.authorize_body(&json!({"token": c.token(0), "action": "crm.read", "resource": "customers/4"})).await;
        if reply.status == StatusCode::OK {
            decided = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_deny(&decided.expect("the freed place admitted nothing").body, "revoked");
    s.stop().await;
}
