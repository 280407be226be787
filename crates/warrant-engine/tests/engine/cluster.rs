//! Servers sharing one PostgreSQL database: what one changes, the others apply from the
//! change feed; a server that cannot confirm it is current denies (fail closed).
//!
//! Each test puts two engines on one fresh schema ([`Harness::replica`]: a pool of its
//! own, as a second process would have) and a shared manual clock. Reading the feed is
//! explicit ([`Harness::catch_up`]) except in the test of the running loop.

use std::time::Duration;

use warrant_engine::{DecisionCode, NewPep, Outcome};

use crate::harness::{wait_until, Ask, Harness, RevocationKind};

/// Two engines on one database, or `None` when the PostgreSQL tests are skipped.
async fn pair() -> Option<(Harness, Harness)> {
    let a = Harness::start_on_postgres(|_| {}).await?;
    let b = a.replica().await;
    Some((a, b))
}

/// A session of its own on `h`'s database, as an operator's `psql` would have.
async fn sql_session(h: &Harness) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&h.postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A session of its own on `h`'s database that holds the write lock every store write
/// takes first, until it runs `ROLLBACK`: every server's writes wait meanwhile.
async fn hold_writes(h: &Harness) -> tokio_postgres::Client {
    let holder = sql_session(h).await;
    let lock = format!("BEGIN; SELECT pg_advisory_xact_lock({});", warrant_store::postgres::WRITE_LOCK);
    holder.batch_execute(&lock).await.unwrap();
    holder
}

#[tokio::test]
async fn what_one_server_registers_and_revokes_the_other_applies_from_the_feed() {
    let Some((a, b)) = pair().await else { return };
    // Registered and issued on A.
    let chain = a.chain(&["crm.read"], &["crm.read"], 2).await;
    assert_eq!(a.authorize(chain.token(1), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    // B opened before A registered anything: it knows the agents once it applied the feed.
    let unknown = b.authorize(chain.token(1), "crm.read", "crm/acct/1").await;
    assert_eq!(unknown.code, DecisionCode::Agent, "{unknown:?}");
    assert!(b.catch_up().await > 0);
    assert_eq!(b.authorize(chain.token(1), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);

    // Revoked on A: B denies once it applied the feed, with the revocation's reason.
    a.revoke(RevocationKind::Warrant, &chain.jti(0)).await.unwrap();
    b.catch_up().await;
    let denied = b.authorize(chain.token(1), "crm.read", "crm/acct/1").await;
    assert_eq!(denied.code, DecisionCode::Revoked, "{denied:?}");

    // A task ended on A ends it on B too.
    let other = a.chain(&["crm.read"], &["crm.read"], 1).await;
    b.catch_up().await;
    assert_eq!(b.authorize(other.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    a.complete_task_as_admin(&other.task()).await.unwrap();
    b.catch_up().await;
    let ended = b.authorize(other.token(0), "crm.read", "crm/acct/1").await;
    assert!(matches!(ended.code, DecisionCode::TaskEnded | DecisionCode::Revoked), "{ended:?}");
}

#[tokio::test]
async fn suspensions_disables_and_pep_credentials_reach_the_other_server() {
    let Some((a, b)) = pair().await else { return };
    let chain = a.chain(&["crm.read"], &["crm.read"], 1).await;
    let pep = a.engine().peps().create(NewPep { name: "edge".into(), plain_subjects: false }).await.unwrap();
    b.catch_up().await;
    assert_eq!(b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    assert!(b.engine().peps().authenticate(&pep.token).is_some(), "a PEP created on A authenticates on B");

    // The agent suspended on A (an agent revocation suspends it): denied on B.
    a.revoke(RevocationKind::Agent, chain.agents[0].id.as_str()).await.unwrap();
    a.engine().peps().revoke(pep.pep.id.as_str()).await.unwrap();
    b.catch_up().await;
    let denied = b.authorize(chain.token(0), "crm.read", "crm/acct/1").await;
    assert!(denied.outcome != Outcome::Allow, "{denied:?}");
    assert_eq!(
        b.engine().registry().agent(chain.agents[0].id.as_str()).await.unwrap().status,
        a.agent_status(&chain.agents[0]).await
    );
    assert!(b.engine().peps().authenticate(&pep.token).is_none(), "a PEP revoked on A no longer authenticates on B");

    // A human disabled on A: their other work is denied on B.
    let second = a.chain(&["crm.read"], &["crm.read"], 1).await;
    b.catch_up().await;
    assert_eq!(b.authorize(second.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    a.disable_human(&second.human).await;
    b.catch_up().await;
    let disabled = b.authorize(second.token(0), "crm.read", "crm/acct/1").await;
    assert!(matches!(disabled.code, DecisionCode::Human | DecisionCode::Owner), "{disabled:?}");
}

#[tokio::test]
async fn a_server_that_cannot_confirm_it_is_current_denies_until_it_has() {
    let Some((a, b)) = pair().await else { return };
    let chain = a.chain(&["crm.read"], &["crm.read"], 1).await;
    b.catch_up().await;
    assert_eq!(b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    // The default bound is one second: just past it, without reading the feed, B denies
    // (so does A, which has not read it either), and introspection calls nothing active.
    b.advance_millis(1_001);
    let stale = b.authorize(chain.token(0), "crm.read", "crm/acct/1").await;
    assert_eq!(stale.code, DecisionCode::Stale, "{stale:?}");
    assert!(stale.reasons.iter().any(|r| r.contains("max_staleness")), "{stale:?}");
    assert!(b.engine().ready().await.is_ok(), "not ready only after five seconds");
    b.advance_millis(5_000);
    assert!(b.engine().ready().await.is_err(), "stale for five seconds: not ready");
    // Reading the feed confirms it current again.
    b.catch_up().await;
    assert_eq!(b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    assert!(b.engine().ready().await.is_ok());
}

#[tokio::test]
async fn a_server_behind_a_pruned_log_reloads_everything() {
    use warrant_store::ChangeStore as _;
    let Some((a, b)) = pair().await else { return };
    let chain = a.chain(&["crm.read"], &["crm.read"], 1).await;
    b.catch_up().await;
    let later = a.chain(&["crm.read"], &["crm.read"], 1).await;
    a.revoke(RevocationKind::Warrant, &chain.jti(0)).await.unwrap();
    // Everything in the log is pruned before B reads it.
    let store = warrant_store::PgStore::connect(&a.postgres_url()).unwrap();
    assert!(store.prune_changes(0).await.unwrap() > 0);
    b.catch_up().await;
    assert_eq!(b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.code, DecisionCode::Revoked);
    assert_eq!(b.authorize(later.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
}

/// The running loop: with a poll interval far longer than the test, B can only learn of
/// A's revocation from the announcement A's commit made.
#[tokio::test]
async fn the_running_feed_applies_a_revocation_on_its_announcement() {
    let Some(a) = Harness::start_on_postgres(|c| {
        c.cluster.poll_interval = Duration::from_secs(600);
        c.cluster.max_staleness = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let b = a.replica().await;
    let chain = a.chain(&["crm.read"], &["crm.read"], 1).await;
    let background = b.start_background();
    // The loop reads the feed once on start, then waits for announcements.
    let mut waited = Duration::ZERO;
    while b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome != Outcome::Allow {
        assert!(waited < Duration::from_secs(10), "B never applied A's registrations");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    a.revoke(RevocationKind::Warrant, &chain.jti(0)).await.unwrap();
    let mut waited = Duration::ZERO;
    loop {
        let decision = b.authorize(chain.token(0), "crm.read", "crm/acct/1").await;
        if decision.code == DecisionCode::Revoked {
            break;
        }
        assert!(waited < Duration::from_secs(10), "B never applied A's revocation: {decision:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    background.shutdown().await;
}

/// Spends `cost` with `token` on `h`; whether it was allowed.
async fn spend(h: &Harness, token: &str, cost: i64) -> bool {
    let d = h.authorize_with(token, "crm.read", "leads/1", serde_json::json!({ "estimated_cost": cost }), None).await;
    match d.outcome {
        Outcome::Allow => true,
        _ => {
            assert_eq!(d.code, DecisionCode::Budget, "only the budget may deny here: {d:?}");
            false
        }
    }
}

/// A three-level budget whose warrants are used on three servers at once: exactly the
/// budget is spent (never more, and all of it), as on one server; a child gets what its
/// parent has left counting every server's spending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_tree_spent_on_three_servers_at_once_is_spent_exactly() {
    let Some((a, b)) = pair().await else { return };
    let c = a.replica().await;
    let human = a.human(&["crm.*"]).await;
    let session = a.session(&human).await;
    let (r, ch, g) = (
        a.delegated_agent(&human, &["crm.*"]).await,
        a.delegated_agent(&human, &["crm.*"]).await,
        a.delegated_agent(&human, &["crm.*"]).await,
    );
    let root = a.root(&session, &r, Ask::new().budget("estimated_cost=100")).await.unwrap();
    b.catch_up().await;
    // Spent on B: the child delegated on A gets what is left after B's spending.
    assert!(spend(&b, &root.token, 10).await);
    let child = a.delegate(&root.token, &ch, Ask::new()).await.unwrap();
    assert_eq!(child.claims.budget.get("estimated_cost"), Some(&90), "what the parent has left, on every server");
    let grandchild = a.delegate(&child.token, &g, Ask::new()).await.unwrap();
    b.catch_up().await;
    c.catch_up().await;

    // Three warrants, three servers (each level on each server), 225 requests of 1
    // against the 90 left.
    let run = |h: &'static Harness, token: String| async move {
        let mut allowed = 0;
        for _ in 0..25 {
            if spend(h, &token, 1).await {
                allowed += 1;
            }
        }
        allowed
    };
    // The harnesses live for the test; leaking them gives the concurrent tasks `'static`.
    let (a, b, c): (&'static Harness, &'static Harness, &'static Harness) =
        (Box::leak(Box::new(a)), Box::leak(Box::new(b)), Box::leak(Box::new(c)));
    let mut tasks = Vec::new();
    for h in [a, b, c] {
        for token in [&root.token, &child.token, &grandchild.token] {
            tasks.push(tokio::spawn(run(h, token.clone())));
        }
    }
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    assert_eq!(allowed, 90, "never over the budget, and all of it spendable");
    for h in [a, b, c] {
        assert!(!spend(h, &grandchild.token, 1).await && !spend(h, &root.token, 1).await, "nothing left anywhere");
    }
}

/// One server leads the background work at a time; when it stops, another takes over.
#[tokio::test]
async fn one_server_leads_at_a_time_and_another_takes_over() {
    let Some((a, b)) = pair().await else { return };
    assert!(!a.engine().lead().is_leader() && !b.engine().lead().is_leader(), "nobody leads before contending");
    let (bg_a, bg_b) = (a.start_background(), b.start_background());
    let leaders = || [a.engine().lead().is_leader(), b.engine().lead().is_leader()];
    wait_until(Duration::from_secs(10), "somebody takes the lead", || leaders() != [false, false]).await;
    for _ in 0..20 {
        assert_ne!(leaders(), [true, true], "never two leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The leader stops (its lock's connection closes with its background work).
    let (leader, follower, bg_follower) =
        if a.engine().lead().is_leader() { (bg_a, &b, bg_b) } else { (bg_b, &a, bg_a) };
    leader.shutdown().await;
    wait_until(Duration::from_secs(15), "somebody takes over the lead", || follower.engine().lead().is_leader()).await;
    bg_follower.shutdown().await;
}

/// A server that takes the lead while its background work is running sweeps at its next
/// interval, without waiting for anything else (a usage flush, a registry event) to wake
/// its governance loop: shadow activity it saw after taking over becomes a finding.
#[tokio::test]
async fn a_server_that_takes_over_the_lead_sweeps_at_its_interval() {
    let configure = |c: &mut warrant_engine::EngineConfig| {
        c.govern.sweep_interval = Duration::from_millis(100);
        // Nothing but the sweep interval may wake the loop within the test.
        c.govern.flush_interval = Duration::from_secs(3600);
    };
    let Some(a) = Harness::start_on_postgres(configure).await else { return };
    let b = a.replica().await;
    let bg_a = a.start_background();
    wait_until(Duration::from_secs(10), "A takes the lead", || a.engine().lead().is_leader()).await;
    // B's loop starts as a follower and waits.
    let bg_b = b.start_background();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.engine().lead().is_leader());
    bg_a.shutdown().await;
    wait_until(Duration::from_secs(15), "B takes over the lead", || b.engine().lead().is_leader()).await;
    assert_eq!(b.authorize("not-a-token", "crm.read", "crm/acct/1").await.code, DecisionCode::InvalidToken);
    wait_until(Duration::from_secs(10), "B, leading, sweeps", || {
        !b.engine().governance().active_about("token:not_a_warrant").is_empty()
    })
    .await;
    bg_b.shutdown().await;
}

/// Presents a token Warrant did not issue to each of `servers` (shadow activity under
/// `token:not_a_warrant`).
async fn present_junk(servers: &[&Harness]) {
    for h in servers {
        assert_eq!(h.authorize("not-a-token", "crm.read", "crm/acct/1").await.code, DecisionCode::InvalidToken);
    }
}

/// The occurrences the active `token:not_a_warrant` finding on `h` records, if one is.
fn junk_occurrences(h: &Harness) -> Option<u64> {
    let found = h.engine().governance().active_about("token:not_a_warrant");
    assert!(found.len() <= 1, "{found:?}");
    found.first().map(|f| f.evidence["occurrences"].as_u64().unwrap())
}

/// Shadow activity is counted wherever it is seen: tokens Warrant did not issue,
/// presented to two servers sharing a database, make one finding with every occurrence,
/// which outlives a restart of the server sweeping and resolves once quiet.
#[tokio::test]
async fn shadow_activity_seen_by_every_server_makes_one_finding() {
    let Some((mut a, b)) = pair().await else { return };
    present_junk(&[&a, &b, &b]).await;
    // B does not sweep; it adds what it counted to the database at its next flush.
    b.engine().governance().flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(3), "A's occurrence and B's two");
    // The counts are the database's: a restarted A neither loses nor counts them twice.
    a.restart().await;
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(3));
    present_junk(&[&b]).await;
    b.engine().governance().flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(4));
    // Quiet for the quiet time: resolved, and forgotten.
    a.advance_millis((a.engine().governance().config().shadow_quiet + 1) * 1000);
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), None);
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), None, "forgotten, not opened again");
}

/// A shadow finding opened before the database counted shadow activity (as after the
/// upgrade that added those counts, which start empty) goes on counting from the
/// occurrences its evidence records, not from zero.
#[tokio::test]
async fn a_shadow_finding_the_database_has_no_count_of_counts_on_from_its_evidence() {
    let Some((a, b)) = pair().await else { return };
    present_junk(&[&a, &b, &b]).await;
    b.engine().governance().flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(3));
    // The counts are gone, the finding is open.
    let client = sql_session(&a).await;
    client.batch_execute("DELETE FROM shadow_activity").await.unwrap();
    a.advance_millis(1000);
    present_junk(&[&b]).await;
    b.engine().governance().flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(4), "the finding's 3, and the new one");
    // Without new activity the finding's count stands, and it resolves once quiet.
    client.batch_execute("DELETE FROM shadow_activity").await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(4));
    a.advance_millis((a.engine().governance().config().shadow_quiet + 1) * 1000);
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), None);
}

/// Shadow activity whose write was cancelled partway (as a shutdown aborting the flush
/// loop cancels it) is written by the next flush, once.
#[tokio::test]
async fn a_cancelled_shadow_flush_is_written_by_the_next_once() {
    let Some((a, b)) = pair().await else { return };
    present_junk(&[&b, &b]).await;
    let holder = hold_writes(&a).await;
    let governance = b.engine().governance();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), governance.flush(b.now())).await;
    assert!(cancelled.is_err(), "the flush waited for the lock and was cancelled there");
    holder.batch_execute("ROLLBACK").await.unwrap();
    present_junk(&[&b]).await;
    governance.flush(b.now()).await.unwrap();
    governance.flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(3), "the cancelled batch's two and the one since");
}

/// Shadow activity whose write committed while the flush was cancelled waiting for the
/// answer (the commit is slowed here by a deferred trigger, as a slow disk or a lost
/// connection would leave it) is not added again by the next flush: it hands the same
/// batch, which the database recognises.
#[tokio::test]
async fn a_shadow_write_that_committed_unanswered_is_not_counted_again() {
    let Some((a, b)) = pair().await else { return };
    present_junk(&[&b, &b]).await;
    let client = sql_session(&a).await;
    client
        .batch_execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON shadow_activity \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
        )
        .await
        .unwrap();
    let governance = b.engine().governance();
    let cancelled = tokio::time::timeout(Duration::from_millis(500), governance.flush(b.now())).await;
    assert!(cancelled.is_err(), "the flush was cancelled while its commit ran");
    // Dropping the trigger waits for that commit, which completes.
    client.batch_execute("DROP TRIGGER slow_commit ON shadow_activity").await.unwrap();
    let stored = client.query_one("SELECT occurrences FROM shadow_activity", &[]).await.unwrap();
    assert_eq!(stored.get::<_, i64>(0), 2, "the cancelled write committed");
    governance.flush(b.now()).await.unwrap();
    a.sweep().await;
    assert_eq!(junk_occurrences(&a), Some(2), "counted once");
}

/// A policy reloaded on one server is put in force on the others from the feed (audited
/// there too), and a server starting later starts with it.
#[tokio::test]
async fn a_policy_reloaded_on_one_server_is_in_force_on_every_server() {
    let Some((a, b)) = pair().await else { return };
    let chain = a.chain(&["crm.*"], &["crm.*"], 1).await;
    b.catch_up().await;
    assert_eq!(b.policy_version(), a.policy_version());
    assert_eq!(b.authorize(chain.token(0), "crm.export", "crm/acct/1").await.outcome, Outcome::Allow);
    let forbid = "@id(\"no-crm-export\")\nforbid (principal, action == Warrant::Action::\"crm.export\", resource);\n";
    let version = a.install_policy("forbid.cedar", forbid).await;
    assert_ne!(version, b.policy_version());
    b.catch_up().await;
    assert_eq!(b.policy_version(), version, "the version A activated is in force on B");
    let denied = b.authorize(chain.token(0), "crm.export", "crm/acct/1").await;
    assert_eq!(denied.code, DecisionCode::Policy, "{denied:?}");
    assert_eq!(b.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    let c = a.replica().await;
    assert_eq!(c.policy_version(), version, "a server starting later starts with the shared version");
}

/// Servers sharing a database share each rate limit: each enforces its share (the limit
/// divided by the servers alive), so an agent calling both gets the limit in all, not
/// the limit on each.
#[tokio::test]
async fn servers_share_each_rate_limit() {
    use warrant_core::guard::rate::RateLimit;
    let Some(a) =
        Harness::start_on_postgres(|c| c.guard.rate_agent = Some(RateLimit { limit: 10, per_secs: 60 })).await
    else {
        return;
    };
    let b = a.replica().await;
    let chain = a.chain(&["crm.read"], &["crm.read"], 1).await;
    b.catch_up().await;
    assert_eq!(a.engine().cluster().heartbeat().await.unwrap(), 1, "A alone so far");
    assert_eq!(b.engine().cluster().heartbeat().await.unwrap(), 2);
    assert_eq!(a.engine().cluster().heartbeat().await.unwrap(), 2);
    let mut allowed = 0;
    for i in 0..30 {
        let h = if i % 2 == 0 { &a } else { &b };
        let d = h.authorize(chain.token(0), "crm.read", "crm/acct/1").await;
        match d.code {
            DecisionCode::Allow => allowed += 1,
            DecisionCode::RateLimited => {}
            other => panic!("only the rate limit may deny here: {other:?} {d:?}"),
        }
    }
    assert_eq!(allowed, 10, "the limit in all, across both servers");
}

/// A DPoP proof (RFC 9449) made with `key` for `POST url`, bound to `token` when given.
fn dpop_proof(
    key: &warrant_token::KeyPair,
    url: &str,
    token: Option<&str>,
    jti: &str,
) -> warrant_engine::dpop::PresentedProof {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| B64.encode(bytes);
    let mut claims = serde_json::json!({ "htm": "POST", "htu": url, "iat": crate::harness::T0, "jti": jti });
    if let Some(token) = token {
        claims["ath"] = warrant_token::dpop::token_hash(token).into();
    }
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": { "kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes()) },
    });
    let input =
        format!("{}.{}", b64(&serde_json::to_vec(&header).unwrap()), b64(&serde_json::to_vec(&claims).unwrap()));
    let proof = format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()));
    warrant_engine::dpop::PresentedProof { proof, htm: "POST".into(), htu: url.into() }
}

/// A DPoP proof is accepted once across servers: presented again at another server, it
/// is refused there as a replay.
#[tokio::test]
async fn a_dpop_proof_is_accepted_once_across_servers() {
    use warrant_engine::issuer::{ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS};
    let Some((a, b)) = pair().await else { return };
    let human = a.human(&["crm.*"]).await;
    let agent = a.autonomous_agent(&human, &["crm.*"]).await;
    b.catch_up().await;
    let holder = warrant_token::KeyPair::from_seed(&[42; 32]);
    let config = a.engine().config();
    let minted = a
        .token(&warrant_engine::TokenRequest {
            grant_type: Some(GRANT_CLIENT_CREDENTIALS.into()),
            client_assertion_type: Some(ASSERTION_TYPE_JWT_BEARER.into()),
            client_assertion: Some(a.assertion(&agent)),
            task_purpose: Some("bound work".into()),
            dpop: Some(dpop_proof(&holder, &config.token_endpoint(), None, "mint-1")),
            ..warrant_engine::TokenRequest::default()
        })
        .await
        .unwrap();
    assert!(minted.claims.cnf.is_some(), "bound to the holder's key");
    let authorize_url = config.endpoint(warrant_engine::config::AUTHORIZE_PATH);
    let request = |proof: warrant_engine::dpop::PresentedProof| warrant_engine::AuthorizeRequest {
        token: minted.token.clone(),
        action: "crm.read".into(),
        resource: "crm/acct/1".into(),
        resource_attrs: None,
        context: None,
        approval_id: None,
        recorded: None,
        via: None,
        proof: Some(proof),
    };
    let proof = dpop_proof(&holder, &authorize_url, Some(&minted.token), "use-1");
    let first = a.engine().decisions().authorize(&request(proof.clone())).await;
    assert_eq!(first.outcome, Outcome::Allow, "{first:?}");
    let replayed = b.engine().decisions().authorize(&request(proof)).await;
    assert_eq!(replayed.code, DecisionCode::Dpop, "the same proof at another server: {replayed:?}");
    let fresh = dpop_proof(&holder, &authorize_url, Some(&minted.token), "use-2");
    assert_eq!(b.engine().decisions().authorize(&request(fresh)).await.outcome, Outcome::Allow);
}

/// A revocation answers how many warrants it ended even while the server's own change
/// feed applies it at the same time (the feed must not make them count as ended
/// before): many revocations at once, with the feed running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_counts_what_it_ended_while_the_feed_applies_it() {
    let Some(a) = Harness::start_on_postgres(|_| {}).await else { return };
    let a: &'static Harness = Box::leak(Box::new(a));
    let background = a.start_background();
    let mut chains = Vec::new();
    for _ in 0..48 {
        chains.push(a.chain(&["crm.read"], &["crm.read"], 2).await);
    }
    let chains: &'static [crate::harness::Chain] = Box::leak(chains.into_boxed_slice());
    let tasks: Vec<_> = chains
        .chunks(6)
        .map(|chunk| {
            tokio::spawn(async move {
                for chain in chunk {
                    let revoked = a.revoke(RevocationKind::Agent, chain.agents[0].id.as_str()).await.unwrap();
                    assert_eq!(revoked.revoked_warrants, 2, "the root and its delegation: {revoked:?}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    background.shutdown().await;
}

/// What an agent used through two servers is stored as one usage: each server's flush
/// merges into what the other stored, so least-privilege recommendations see all of it.
#[tokio::test]
async fn usage_seen_by_two_servers_is_merged_in_the_store() {
    use warrant_store::GovernStore as _;
    let Some((a, b)) = pair().await else { return };
    let chain = a.chain(&["crm.*"], &["crm.*"], 1).await;
    b.catch_up().await;
    assert_eq!(a.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    assert_eq!(b.authorize(chain.token(0), "crm.write", "crm/acct/1").await.outcome, Outcome::Allow);
    a.engine().governance().flush(a.now()).await.unwrap();
    b.engine().governance().flush(b.now()).await.unwrap();
    let store = warrant_store::PgStore::connect(&a.postgres_url()).unwrap();
    let usages = store.usages().await.unwrap();
    let (_, usage) = usages.iter().find(|(agent, _)| *agent == chain.agents[0].id).expect("the agent's usage");
    let actions: Vec<&str> = usage.actions.keys().map(String::as_str).collect();
    assert_eq!(actions, ["crm.read", "crm.write"], "both servers' use, neither replaced by the other");
}

/// A usage write cancelled partway (as a shutdown aborting the flush loop cancels it) is
/// written by the next flush: it was marked written as it was handed to the store, and
/// the transaction it was in rolled back.
#[tokio::test]
async fn a_cancelled_usage_flush_is_written_by_the_next() {
    use warrant_store::GovernStore as _;
    let Some(a) = Harness::start_on_postgres(|_| {}).await else { return };
    let chain = a.chain(&["crm.*"], &["crm.*"], 1).await;
    assert_eq!(a.authorize(chain.token(0), "crm.read", "crm/acct/1").await.outcome, Outcome::Allow);
    // Another session holds the write lock, so the flush's transaction waits inside.
    let holder = hold_writes(&a).await;
    let governance = a.engine().governance();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), governance.flush(a.now())).await;
    assert!(cancelled.is_err(), "the flush waited for the lock and was cancelled there");
    holder.batch_execute("ROLLBACK").await.unwrap();
    governance.flush(a.now()).await.unwrap();
    let store = warrant_store::PgStore::connect(&a.postgres_url()).unwrap();
    let usages = store.usages().await.unwrap();
    assert!(usages.iter().any(|(agent, _)| *agent == chain.agents[0].id), "{usages:?}");
}

/// An activation the feed announces late never brings back an older policy set: the
/// version a server puts in force from the feed is the store's current one, not the one
/// the (older) change names.
#[tokio::test]
async fn a_late_policy_announcement_does_not_bring_back_an_older_set() {
    let Some(a) = Harness::start_on_postgres(|_| {}).await else { return };
    let first = a.policy_version();
    // Reloaded before the feed read the first version's activation (logged at start).
    let forbid = "@id(\"no-crm-export\")\nforbid (principal, action == Warrant::Action::\"crm.export\", resource);\n";
    let second = a.install_policy("forbid.cedar", forbid).await;
    assert_ne!(first, second);
    a.catch_up().await;
    assert_eq!(a.policy_version(), second, "still the newer set");
    let chain = a.chain(&["crm.*"], &["crm.*"], 1).await;
    assert_eq!(a.authorize(chain.token(0), "crm.export", "crm/acct/1").await.code, DecisionCode::Policy);
}
