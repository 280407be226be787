#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test code")]
//! The storage conformance suite.
//!
//! Every `check_*` function is written only against the public [`Store`] traits, so it
//! states behaviour that callers rely on whatever the backend. The [`conformance!`]
//! macro instantiates every check as a `#[tokio::test]` for one backend; adding a
//! backend (PostgreSQL, say) is one more `conformance!(postgres, open_postgres);` line
//! with an `async fn open_postgres() -> (Guard, PgStore)` fixture.
//!
//! Tests that depend on how one backend keeps its data (SQLite's file, its mode, its
//! migrations) live after the suite, outside the macro.

#[path = "support/undo.rs"]
mod undo;

use std::collections::BTreeMap;

use tempfile::TempDir;
use undo::undo_migrations_to;
use warrant_core::audit::{chain, AuditEntry, AuditKind, GENESIS};
use warrant_core::govern::{
    Acceptance, AgentUsage, Finding, FindingKind, FindingStatus, Severity, ShadowBatch, ShadowBatchId,
};
use warrant_core::guard::approval::{Approval, ApprovalStatus, Approver};
use warrant_core::{
    Actor, Agent, AgentId, AgentStatus, ApprovalId, FederatedIdentity, Human, HumanId, HumanStatus, Mode, PepId,
    PublicJwk, Scope, TaskClaim, TaskId, UnixTime, WarrantClaims, WarrantId,
};
use warrant_store::{
    AgentStore as _, Attestation, AuditFilter, AuditRow, AuditStore as _, FindingFilter, GovernStore as _,
    GuardStore as _, HumanStore as _, IssueGuard, KeyMaterial, KeyPurpose, KeyStore as _, LiveWarrant, PepRecord,
    PepStore as _, PolicyVersionRecord, RevocationKind, RevocationRecord, SessionPurpose, SessionRecord, SpendCharge,
    SqliteStore, Store, StoreError, StoredKey, TaskRecord, WarrantRecord, WarrantStore as _,
};

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// Instantiates every conformance check as a test in module `$backend`, each on a fresh
/// store from `$open`, an async fn returning `Some((guard, store))`, or `None` when the
/// backend is deliberately skipped; the guard (a temporary directory, a database schema,
/// …) lives until the check ends.
macro_rules! conformance {
    ($backend:ident, $open:ident) => {
        conformance!(@tests $backend, $open;
            check_human_round_trip,
            check_human_unknown_is_none,
            check_humans_listed_oldest_first,
            check_human_duplicate_id_conflicts,
            check_human_duplicate_email_conflicts,
            check_set_human_status,
            check_human_roles,
            check_human_external_id,
            check_human_identity,
            check_agent_round_trip,
            check_issuance_start_reads_watermark_agent_and_owner,
            check_delegation_start_reads_what_a_delegation_rests_on,
            check_agent_owner_must_exist,
            check_agent_duplicate_id_conflicts,
            check_list_agents,
            check_set_agent_status,
            check_first_key_is_the_only_active_one,
            check_rotation_retires_previous_keys,
            check_rotation_is_per_purpose,
            check_plaintext_keys_are_never_written,
            check_last_expiry_for_key,
            check_assertion_replay_is_refused,
            check_assertion_spent_with_the_issuance,
            check_assertion_jti_is_per_agent,
            check_expired_assertions_are_purged,
            check_warrant_tree,
            check_ssf_outbox_and_streams,
            check_warrant_needs_existing_task,
            check_warrant_jti_is_unique,
            check_warrant_and_task_are_atomic,
            check_live_warrants_with_agent,
            check_warrant_budget_round_trip,
            check_live_budgets,
            check_charges_accumulate_with_their_records,
            check_refused_append_charges_nothing,
            check_append_at_head_chains_a_stale_batch_again,
            check_issuances_commit_with_their_records,
            check_purge_spends,
            check_guard_states_upsert,
            check_approval_round_trip,
            check_approval_compare_and_set,
            check_list_approvals,
            check_list_approvals_is_capped,
            check_findings_round_trip,
            check_list_findings,
            check_list_findings_is_capped,
            check_usage_upsert,
            check_attestations,
            check_set_agent_key,
            check_set_agent_max_scope,
            check_govern_live_warrants,
            check_warrant_claims_round_trip,
            check_pep_round_trip,
            check_concurrent_issue_and_revoke_leave_nothing_alive_under_a_revocation,
            check_sessions_record_get_and_revoke,
            check_agent_owner_transfer,
            check_policy_versions,
            check_revocation_by_id,
            check_console_sessions_and_logins,
            check_a_console_sign_in_and_a_sign_out_each_happen_once_under_concurrency,
        );
    };
    (@tests $backend:ident, $open:ident; $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $check() {
                    // `None`: this backend is skipped deliberately (and says so).
                    let Some((_guard, store)) = super::$open().await else { return };
                    super::$check(&store).await;
                }
            )+
        }
    };
}

/// A fresh SQLite store on a new file in a temporary directory.
async fn open_sqlite() -> Option<(TempDir, SqliteStore)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("warrant.db")).expect("open the SQLite store");
    Some((dir, store))
}

conformance!(sqlite, open_sqlite);

/// The PostgreSQL server the suite runs against: `WARRANT_TEST_POSTGRES`, the URL of a
/// role that may create schemas (`scripts/test` starts a throw-away server and sets it).
/// Without it the PostgreSQL checks fail, unless `WARRANT_SKIP_POSTGRES_TESTS=1` says to
/// skip them deliberately.
fn postgres_url() -> Option<String> {
    match std::env::var("WARRANT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("WARRANT_SKIP_POSTGRES_TESTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "WARRANT_TEST_POSTGRES is not set: the PostgreSQL conformance checks need a server \
             (scripts/test starts one; scripts/pg-test-cluster starts one by hand). \
             Set WARRANT_SKIP_POSTGRES_TESTS=1 to skip them deliberately."
        ),
    }
}

/// Drops its schema (and everything in it) when the check ends.
struct PgSchema {
    admin: String,
    name: String,
}

impl PgSchema {
    /// The URL of the test server with this schema as the search path.
    fn url(&self) -> String {
        let separator = if self.admin.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-csearch_path%3D{}", self.admin, self.name)
    }

    /// Runs `sql` in this schema, as its owner.
    async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped inside the check's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

/// A fresh PostgreSQL store: a new schema of its own on the test server, migrated.
async fn open_postgres() -> Option<(PgSchema, warrant_store::PgStore)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some(admin) = postgres_url() else {
        eprintln!("SKIPPED (WARRANT_SKIP_POSTGRES_TESTS=1): a PostgreSQL conformance check");
        return None;
    };
    let name = format!("conformance_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let (client, connection) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to WARRANT_TEST_POSTGRES");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create a schema");
    // The guard first: the schema is dropped even when opening fails.
    let guard = PgSchema { admin, name };
    let store = warrant_store::PgStore::open(&guard.url()).await.expect("open the PostgreSQL store");
    Some((guard, store))
}

conformance!(postgres, open_postgres);

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const JWK_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn scope(text: &str) -> Scope {
    Scope::parse(text).expect("valid scope")
}

fn jwk() -> PublicJwk {
    PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: JWK_X.into(), kid: None }
}

fn human(n: u8, created_at: i64) -> Human {
    Human {
        id: HumanId::from_random([n; 12]),
        name: format!("Human {n}"),
        email: format!("human{n}@example.com"),
        entitlements: scope("crm.read billing.*:invoices/**"),
        status: HumanStatus::Active,
        created_at: UnixTime(created_at),
        roles: Default::default(),
        external_id: None,
        identity: None,
    }
}

fn agent(n: u8, owner: &Human, created_at: i64) -> Agent {
    Agent {
        id: AgentId::from_random([n; 12]),
        name: format!("agent-{n}"),
        owner: owner.id.clone(),
        mode: Mode::Delegated,
        max_scope: scope("crm.read"),
        public_key: Some(jwk()),
        spiffe_id: None,
        status: AgentStatus::Active,
        expires_at: None,
        labels: BTreeMap::new(),
        created_at: UnixTime(created_at),
    }
}

/// A key whose sealed form is `[n; 61]` (the store does not open it).
fn key(n: u8, created_at: i64) -> StoredKey {
    StoredKey {
        kid: format!("kid-{n}"),
        purpose: KeyPurpose::Warrant,
        material: KeyMaterial::Sealed(vec![n; 61]),
        created_at: UnixTime(created_at),
        retired_at: None,
    }
}

fn task(n: u8, human: &Human, root_agent: &Agent, created_at: i64) -> TaskRecord {
    TaskRecord {
        id: TaskId::from_random([n; 12]),
        purpose: format!("task {n}: reconcile the CRM"),
        human: human.id.clone(),
        root_agent: root_agent.id.clone(),
        created_at: UnixTime(created_at),
        deadline: UnixTime(created_at + 3600),
    }
}

/// A warrant for `agent` in `task`; a child of `parent` when given, whose chain it extends.
fn warrant(n: u8, task: &TaskRecord, agent: &Agent, parent: Option<&WarrantRecord>, issued_at: i64) -> WarrantRecord {
    let mut chain = parent.map(|p| p.chain.clone()).unwrap_or_default();
    chain.push(agent.id.clone());
    WarrantRecord {
        jti: WarrantId::from_random([n; 12]),
        parent: parent.map(|p| p.jti.clone()),
        agent: agent.id.clone(),
        task: task.id.clone(),
        human: task.human.clone(),
        sub: task.human.as_str().to_owned(),
        mode: Mode::Delegated,
        scope: scope("crm.read"),
        chain,
        kid: "kid-1".into(),
        issued_at: UnixTime(issued_at),
        expires_at: UnixTime(issued_at + 600),
        budget: BTreeMap::new(),
        claims: None,
    }
}

/// Registers a human and an agent of theirs, and returns them.
async fn principals(store: &dyn Store, n: u8) -> (Human, Agent) {
    let h = human(n, 100);
    let a = agent(n, &h, 200);
    store.insert_human(&h).await.unwrap();
    store.insert_agent(&a).await.unwrap();
    (h, a)
}

/// Registers a human, an agent, and starts a task with a root warrant; returns the task
/// and the root warrant.
async fn started_task(store: &dyn Store, n: u8) -> (TaskRecord, WarrantRecord) {
    let (h, a) = principals(store, n).await;
    let t = task(n, &h, &a, 1_000);
    let root = warrant(n, &t, &a, None, 1_000);
    store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
    (t, root)
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}

fn jtis(warrants: &[WarrantRecord]) -> Vec<WarrantId> {
    warrants.iter().map(|w| w.jti.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// Humans
// ---------------------------------------------------------------------------------------

async fn check_human_round_trip(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    assert_eq!(store.get_human(&h.id).await.unwrap(), Some(h));

    let mut disabled = human(2, 200);
    disabled.status = HumanStatus::Disabled;
    disabled.entitlements = Scope::empty();
    store.insert_human(&disabled).await.unwrap();
    assert_eq!(store.get_human(&disabled.id).await.unwrap(), Some(disabled));
}

async fn check_human_unknown_is_none(store: &dyn Store) {
    assert_eq!(store.get_human(&HumanId::from_random([9; 12])).await.unwrap(), None);
    assert!(store.list_humans().await.unwrap().is_empty());
}

async fn check_humans_listed_oldest_first(store: &dyn Store) {
    let (h1, h2, h3) = (human(1, 100), human(2, 200), human(3, 300));
    for h in [&h2, &h3, &h1] {
        store.insert_human(h).await.unwrap();
    }
    assert_eq!(store.list_humans().await.unwrap(), vec![h1, h2, h3]);
}

async fn check_human_duplicate_id_conflicts(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let mut same_id = human(2, 200);
    same_id.id = h.id.clone();
    assert_conflict(store.insert_human(&same_id).await, "duplicate human id");
    assert_eq!(store.get_human(&h.id).await.unwrap(), Some(h.clone()));
    assert_eq!(store.list_humans().await.unwrap(), vec![h]);
}

async fn check_human_duplicate_email_conflicts(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let mut same_email = human(2, 200);
    same_email.email = h.email.clone();
    assert_conflict(store.insert_human(&same_email).await, "duplicate human email");
    assert_eq!(store.get_human(&same_email.id).await.unwrap(), None);
    assert_eq!(store.list_humans().await.unwrap(), vec![h.clone()]);
    assert_eq!(store.human_by_email(&h.email).await.unwrap(), Some(h));
    assert_eq!(store.human_by_email("nobody@example.com").await.unwrap(), None);
}

async fn check_human_identity(store: &dyn Store) {
    let idp = |issuer: &str, subject: &str| FederatedIdentity { issuer: issuer.into(), subject: subject.into() };
    let signed_in = Human { identity: Some(idp("https://idp.example", "u-1")), ..human(1, 100) };
    store.insert_human(&signed_in).await.unwrap();
    store.insert_human(&human(2, 200)).await.unwrap();
    assert_eq!(store.human_by_identity(&idp("https://idp.example", "u-1")).await.unwrap(), Some(signed_in.clone()));
    assert_eq!(store.get_human(&signed_in.id).await.unwrap(), Some(signed_in.clone()));
    // The pair is the key: the same subject at another provider is someone else.
    assert_eq!(store.human_by_identity(&idp("https://other.example", "u-1")).await.unwrap(), None);
    assert_eq!(store.human_by_identity(&idp("https://idp.example", "u-2")).await.unwrap(), None);
    let again = Human { identity: Some(idp("https://idp.example", "u-1")), ..human(3, 300) };
    assert_conflict(store.insert_human(&again).await, "a second human with one identity");
    let elsewhere = Human { identity: Some(idp("https://other.example", "u-1")), ..human(4, 400) };
    store.insert_human(&elsewhere).await.unwrap();

    assert!(store.set_human_entitlements(&signed_in.id, &scope("tickets.read")).await.unwrap());
    let got = store.get_human(&signed_in.id).await.unwrap().unwrap();
    assert_eq!(got, Human { entitlements: scope("tickets.read"), ..signed_in });
    assert!(!store.set_human_entitlements(&HumanId::from_random([9; 12]), &scope("x")).await.unwrap());
}

async fn check_set_human_status(store: &dyn Store) {
    let (h1, h2) = (human(1, 100), human(2, 200));
    store.insert_human(&h1).await.unwrap();
    store.insert_human(&h2).await.unwrap();

    assert!(store.set_human_status(&h1.id, HumanStatus::Disabled).await.unwrap());
    let got = store.get_human(&h1.id).await.unwrap().unwrap();
    assert_eq!(got.status, HumanStatus::Disabled);
    assert_eq!(got, Human { status: HumanStatus::Disabled, ..h1.clone() });
    // Only that human changed.
    assert_eq!(store.get_human(&h2.id).await.unwrap(), Some(h2));

    assert!(store.set_human_status(&h1.id, HumanStatus::Active).await.unwrap());
    assert_eq!(store.get_human(&h1.id).await.unwrap(), Some(h1));

    assert!(!store.set_human_status(&HumanId::from_random([9; 12]), HumanStatus::Disabled).await.unwrap());
    assert_eq!(store.list_humans().await.unwrap().len(), 2);
}

async fn check_human_roles(store: &dyn Store) {
    let (mut h1, h2) = (human(1, 100), human(2, 200));
    h1.roles = ["editor".to_owned(), "admin".to_owned()].into_iter().collect();
    store.insert_human(&h1).await.unwrap();
    store.insert_human(&h2).await.unwrap();
    // Inserted roles come back, by id, by email and in the list.
    assert_eq!(store.get_human(&h1.id).await.unwrap(), Some(h1.clone()));
    assert_eq!(store.human_by_email(&h1.email).await.unwrap(), Some(h1.clone()));
    assert_eq!(store.list_humans().await.unwrap(), vec![h1.clone(), h2.clone()]);

    let viewer: std::collections::BTreeSet<String> = ["viewer".to_owned()].into_iter().collect();
    assert!(store.set_human_roles(&h1.id, &viewer).await.unwrap());
    let got = store.get_human(&h1.id).await.unwrap().unwrap();
    assert_eq!(got, Human { roles: viewer.clone(), ..h1.clone() });
    // Only that human changed.
    assert_eq!(store.get_human(&h2.id).await.unwrap(), Some(h2.clone()));

    assert!(store.set_human_roles(&h1.id, &Default::default()).await.unwrap());
    assert!(store.get_human(&h1.id).await.unwrap().unwrap().roles.is_empty());
    assert!(!store.set_human_roles(&HumanId::from_random([9; 12]), &viewer).await.unwrap());
}

async fn check_human_external_id(store: &dyn Store) {
    let (mut h1, mut h2, h3) = (human(1, 100), human(2, 200), human(3, 300));
    h1.external_id = Some("CiRmZDA2".into());
    store.insert_human(&h1).await.unwrap();
    assert_eq!(store.get_human(&h1.id).await.unwrap(), Some(h1.clone()));
    // Unique when present; any number of humans have none.
    h2.external_id = h1.external_id.clone();
    assert_conflict(store.insert_human(&h2).await, "duplicate external id");
    assert_eq!(store.get_human(&h2.id).await.unwrap(), None);
    h2.external_id = None;
    store.insert_human(&h2).await.unwrap();
    store.insert_human(&h3).await.unwrap();
    assert_eq!(store.list_humans().await.unwrap(), vec![h1, h2, h3]);
}

/// Sessions read back as recorded; revoking a human's sessions marks each unrevoked one
/// (and only theirs) revoked at `now`, says how many, and keeps a first revocation time.
async fn check_sessions_record_get_and_revoke(store: &dyn Store) {
    let (h1, h2) = (human(1, 100), human(2, 200));
    store.insert_human(&h1).await.unwrap();
    store.insert_human(&h2).await.unwrap();
    let session = |n: u8, human: &Human, purpose: SessionPurpose, issued_at: i64| SessionRecord {
        jti: format!("ses-{n}"),
        human: human.id.clone(),
        purpose,
        issued_at: UnixTime(issued_at),
        expires_at: UnixTime(issued_at + 3_600),
        revoked_at: None,
    };
    let s1 = session(1, &h1, SessionPurpose::Delegation, 1_000);
    let s2 = session(2, &h1, SessionPurpose::Approval, 1_010);
    let s3 = session(3, &h2, SessionPurpose::Delegation, 1_020);
    for s in [&s1, &s2, &s3] {
        store.record_session(s).await.unwrap();
    }
    for s in [&s1, &s2, &s3] {
        assert_eq!(store.get_session(&s.jti).await.unwrap().as_ref(), Some(s), "a session reads back whole");
    }
    assert_eq!(store.get_session("ses-unknown").await.unwrap(), None);

    assert_eq!(store.revoke_sessions(&h1.id, UnixTime(2_000)).await.unwrap(), 2, "both of h1's sessions");
    assert_eq!(store.revoke_sessions(&h1.id, UnixTime(2_100)).await.unwrap(), 0, "nothing left to revoke");
    for s in [&s1, &s2] {
        let revoked = SessionRecord { revoked_at: Some(UnixTime(2_000)), ..s.clone() };
        assert_eq!(store.get_session(&s.jti).await.unwrap(), Some(revoked), "revoked at the first call's time");
    }
    assert_eq!(store.get_session(&s3.jti).await.unwrap(), Some(s3.clone()), "another human's session is untouched");

    // A session opened after the revocation is live, and is the only one a later call revokes.
    let s4 = session(4, &h1, SessionPurpose::Delegation, 2_200);
    store.record_session(&s4).await.unwrap();
    assert_eq!(store.get_session(&s4.jti).await.unwrap(), Some(s4.clone()));
    assert_eq!(store.revoke_sessions(&h1.id, UnixTime(2_300)).await.unwrap(), 1);
    assert_eq!(store.get_session(&s4.jti).await.unwrap().unwrap().revoked_at, Some(UnixTime(2_300)));
    assert_eq!(store.get_session(&s1.jti).await.unwrap().unwrap().revoked_at, Some(UnixTime(2_000)));
    assert_eq!(store.revoke_sessions(&HumanId::from_random([9; 12]), UnixTime(2_300)).await.unwrap(), 0);
    assert_eq!(store.get_session(&s3.jti).await.unwrap(), Some(s3));
}

// ---------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------

async fn check_agent_round_trip(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();

    let plain = agent(1, &h, 200);
    store.insert_agent(&plain).await.unwrap();
    assert_eq!(store.get_agent(&plain.id).await.unwrap(), Some(plain));

    let mut rich = agent(2, &h, 300);
    rich.mode = Mode::Autonomous;
    rich.max_scope = scope("crm.read:customers/* billing.*:invoices/2024/**");
    rich.public_key = Some(PublicJwk { kid: Some("client-key-1".into()), ..jwk() });
    rich.status = AgentStatus::Suspended;
    rich.expires_at = Some(UnixTime(1_700_000_000));
    rich.labels = BTreeMap::from([
        ("team".to_owned(), "finance".to_owned()),
        ("env".to_owned(), "prod".to_owned()),
        ("note".to_owned(), "quotes \" and ünïcödé".to_owned()),
    ]);
    store.insert_agent(&rich).await.unwrap();
    assert_eq!(store.get_agent(&rich.id).await.unwrap(), Some(rich));

    assert_eq!(store.get_agent(&AgentId::from_random([9; 12])).await.unwrap(), None);

    // An agent with a SPIFFE ID instead of a key: found by it, unique, with no key to
    // replace and no key age.
    let mut workload = agent(3, &h, 400);
    workload.public_key = None;
    workload.spiffe_id = Some("spiffe://example.org/ns/prod/sa/reporter".into());
    store.insert_agent(&workload).await.unwrap();
    assert_eq!(store.get_agent(&workload.id).await.unwrap(), Some(workload.clone()));
    let by_id = store.agent_by_spiffe_id("spiffe://example.org/ns/prod/sa/reporter").await.unwrap();
    assert_eq!(by_id, Some(workload.clone()));
    assert_eq!(store.agent_by_spiffe_id("spiffe://example.org/other").await.unwrap(), None);
    let twin = Agent { id: AgentId::from_random([8; 12]), ..workload.clone() };
    assert_conflict(store.insert_agent(&twin).await, "a SPIFFE ID names one agent");
    assert!(!store.set_agent_key(&workload.id, &jwk(), UnixTime(500)).await.unwrap());
    assert!(store.agent_key_times().await.unwrap().iter().all(|(id, _)| *id != workload.id));
}

/// What an issuance starts from: the watermark as `revocation_watermark` tells it, the
/// agent and its owner as `get_agent` and `get_human` tell them; an unknown agent has
/// neither.
async fn check_issuance_start_reads_watermark_agent_and_owner(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let start = store.issuance_start(&a.id).await.unwrap();
    assert_eq!(start.watermark, store.revocation_watermark().await.unwrap());
    assert_eq!(start.agent, store.get_agent(&a.id).await.unwrap());
    assert_eq!(start.owner.as_ref(), Some(&h));
    store.revoke(&revocation(1, RevocationKind::Agent, a.id.as_str(), 300), UnixTime(300)).await.unwrap();
    let after = store.issuance_start(&a.id).await.unwrap();
    assert!(after.watermark > start.watermark, "{} then {}", start.watermark, after.watermark);
    assert_eq!(after.watermark, store.revocation_watermark().await.unwrap());
    assert_eq!(after.agent.map(|a| a.status), Some(AgentStatus::Suspended));
    let unknown = store.issuance_start(&AgentId::parse("agt_unknown").unwrap()).await.unwrap();
    assert_eq!((unknown.agent, unknown.owner), (None, None));
}

/// What a delegation starts from: the watermark, whether the parent is recorded, the
/// actor and its owner, the chain's agents and their distinct owners and the human, each
/// as the single reads tell them; unknown ones are `None` or left out.
async fn check_delegation_start_reads_what_a_delegation_rests_on(store: &dyn Store) {
    let (t, root) = started_task(store, 1).await;
    let (h2, a2) = principals(store, 2).await;
    let a3 = agent(3, &h2, 300);
    store.insert_agent(&a3).await.unwrap();
    let child = warrant(2, &t, &a2, Some(&root), 1_001);
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    let start = store.delegation_start(&child.jti, Some(&a3.id), &child.chain, &t.human).await.unwrap();
    assert_eq!(start.watermark, store.revocation_watermark().await.unwrap());
    assert!(start.parent_recorded);
    assert_eq!(start.actor.as_ref(), Some(&a3));
    assert_eq!(start.actor_owner.as_ref(), Some(&h2));
    let chain: Vec<_> = child.chain.iter().map(|id| Some(id.clone())).collect();
    assert_eq!(start.chain.iter().map(|a| a.as_ref().map(|a| a.id.clone())).collect::<Vec<_>>(), chain);
    let owners: Vec<_> = start.chain_owners.iter().map(|h| h.id.clone()).collect();
    assert_eq!(owners, vec![t.human.clone(), h2.id.clone()], "distinct, in chain order");
    assert_eq!(start.human.as_ref().map(|h| &h.id), Some(&t.human));

    store.revoke(&revocation(1, RevocationKind::Agent, a3.id.as_str(), 300), UnixTime(300)).await.unwrap();
    let unknown = AgentId::parse("agt_unknown").unwrap();
    let missing = WarrantId::from_random([0xEE; 12]);
    let later = store.delegation_start(&missing, None, &[root.agent.clone(), unknown], &h2.id).await.unwrap();
    assert!(later.watermark > start.watermark);
    assert!(!later.parent_recorded);
    assert_eq!((later.actor, later.actor_owner), (None, None), "no actor asked for");
    assert_eq!(later.chain.len(), 2);
    assert!(later.chain[0].is_some() && later.chain[1].is_none(), "an unknown agent is None");
    assert_eq!(later.chain_owners.len(), 1);
    assert_eq!(later.human.map(|h| h.id), Some(h2.id));
    let suspended = store.delegation_start(&child.jti, Some(&a3.id), &[], &t.human).await.unwrap();
    assert_eq!(suspended.actor.map(|a| a.status), Some(AgentStatus::Suspended), "as registered now");
}

async fn check_agent_owner_must_exist(store: &dyn Store) {
    let ghost = human(9, 100);
    let orphan = agent(1, &ghost, 200);
    assert_conflict(store.insert_agent(&orphan).await, "agent with unknown owner");
    assert_eq!(store.get_agent(&orphan.id).await.unwrap(), None);
    assert!(store.list_agents(None).await.unwrap().is_empty());

    // Once the owner exists the same agent is accepted.
    store.insert_human(&ghost).await.unwrap();
    store.insert_agent(&orphan).await.unwrap();
    assert_eq!(store.get_agent(&orphan.id).await.unwrap(), Some(orphan));
}

async fn check_agent_duplicate_id_conflicts(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let mut same_id = agent(2, &h, 300);
    same_id.id = a.id.clone();
    assert_conflict(store.insert_agent(&same_id).await, "duplicate agent id");
    assert_eq!(store.get_agent(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.list_agents(None).await.unwrap(), vec![a]);
}

async fn check_list_agents(store: &dyn Store) {
    let (h1, h2, idle) = (human(1, 100), human(2, 100), human(3, 100));
    for h in [&h1, &h2, &idle] {
        store.insert_human(h).await.unwrap();
    }
    let a1 = agent(1, &h1, 200);
    let a2 = agent(2, &h2, 300);
    let a3 = agent(3, &h1, 400);
    let a4 = agent(4, &h2, 500);
    // Inserted out of age order: listing is by age, not insertion.
    for a in [&a4, &a1, &a3, &a2] {
        store.insert_agent(a).await.unwrap();
    }

    assert_eq!(store.list_agents(None).await.unwrap(), vec![a1.clone(), a2.clone(), a3.clone(), a4.clone()]);
    assert_eq!(store.list_agents(Some(&h1.id)).await.unwrap(), vec![a1, a3]);
    assert_eq!(store.list_agents(Some(&h2.id)).await.unwrap(), vec![a2, a4]);
    assert!(store.list_agents(Some(&idle.id)).await.unwrap().is_empty());
    assert!(store.list_agents(Some(&HumanId::from_random([9; 12]))).await.unwrap().is_empty());
}

async fn check_set_agent_status(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let other = agent(2, &h, 300);
    store.insert_agent(&other).await.unwrap();

    for status in [AgentStatus::Suspended, AgentStatus::Active, AgentStatus::Retired] {
        assert!(store.set_agent_status(&a.id, status).await.unwrap());
        assert_eq!(store.get_agent(&a.id).await.unwrap(), Some(Agent { status, ..a.clone() }));
    }
    // Only that agent changed.
    assert_eq!(store.get_agent(&other.id).await.unwrap(), Some(other));

    assert!(!store.set_agent_status(&AgentId::from_random([9; 12]), AgentStatus::Retired).await.unwrap());
    assert_eq!(store.list_agents(None).await.unwrap().len(), 2);
}

/// Handing an agent to another existing human changes its owner (and only its owner);
/// an unknown agent is `false`; an owner that does not exist is refused, and the agent
/// keeps the owner it had.
async fn check_agent_owner_transfer(store: &dyn Store) {
    let (h1, a1) = principals(store, 1).await;
    let h2 = human(2, 150);
    store.insert_human(&h2).await.unwrap();
    let stays = agent(2, &h1, 300);
    store.insert_agent(&stays).await.unwrap();

    assert!(store.set_agent_owner(&a1.id, &h2.id).await.unwrap());
    let moved = Agent { owner: h2.id.clone(), ..a1.clone() };
    assert_eq!(store.get_agent(&a1.id).await.unwrap(), Some(moved.clone()));
    assert_eq!(store.list_agents(Some(&h2.id)).await.unwrap(), vec![moved.clone()]);
    assert_eq!(store.list_agents(Some(&h1.id)).await.unwrap(), vec![stays.clone()], "only that agent moved");

    assert!(!store.set_agent_owner(&AgentId::from_random([9; 12]), &h1.id).await.unwrap());
    assert_eq!(store.list_agents(None).await.unwrap(), vec![moved.clone(), stays]);

    match store.set_agent_owner(&a1.id, &HumanId::from_random([9; 12])).await {
        Err(StoreError::Conflict(_) | StoreError::Backend(_)) => {}
        other => panic!("an owner that does not exist: expected Conflict or Backend, got {other:?}"),
    }
    assert_eq!(store.get_agent(&a1.id).await.unwrap(), Some(moved), "the owner is unchanged");
}

// ---------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------

/// `(kid, sealed, created_at, retired_at)`: `StoredKey` has no `PartialEq`, by design.
fn key_view(k: &StoredKey) -> (String, Vec<u8>, UnixTime, Option<UnixTime>) {
    let sealed = match &k.material {
        KeyMaterial::Sealed(sealed) => sealed.clone(),
        KeyMaterial::Plaintext(_) => panic!("key {} came back in plaintext", k.kid),
    };
    (k.kid.clone(), sealed, k.created_at, k.retired_at)
}

async fn check_first_key_is_the_only_active_one(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());

    store.rotate_in(&key(1, 1_000)).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(key_view).collect::<Vec<_>>(),
        vec![("kid-1".to_owned(), vec![1; 61], UnixTime(1_000), None)]
    );
}

async fn check_rotation_is_per_purpose(store: &dyn Store) {
    store.rotate_in(&key(1, 1_000)).await.unwrap();
    let checkpoint = StoredKey { purpose: KeyPurpose::Checkpoint, ..key(2, 2_000) };
    store.rotate_in(&checkpoint).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    let view: Vec<_> = keys.iter().map(|k| (k.kid.clone(), k.purpose, k.retired_at)).collect();
    assert_eq!(
        view,
        vec![("kid-2".to_owned(), KeyPurpose::Checkpoint, None), ("kid-1".to_owned(), KeyPurpose::Warrant, None)],
        "a checkpoint key does not retire the warrant key"
    );
    store.rotate_in(&key(3, 3_000)).await.unwrap();
    let retired: Vec<_> = store.signing_keys().await.unwrap().iter().map(|k| (k.kid.clone(), k.retired_at)).collect();
    assert_eq!(
        retired,
        vec![("kid-3".to_owned(), None), ("kid-2".to_owned(), None), ("kid-1".to_owned(), Some(UnixTime(3_000)))]
    );
}

async fn check_plaintext_keys_are_never_written(store: &dyn Store) {
    let plain = StoredKey { material: KeyMaterial::Plaintext(zeroize::Zeroizing::new([5; 32])), ..key(5, 1_000) };
    assert!(matches!(store.rotate_in(&plain).await, Err(StoreError::Backend(_))));
    assert!(store.signing_keys().await.unwrap().is_empty());
    // Nothing to seal: the key is not there in plaintext.
    assert_eq!(store.seal_keys(&[("kid-5".to_owned(), vec![5; 61])]).await.unwrap(), 0);
}

async fn check_rotation_retires_previous_keys(store: &dyn Store) {
    store.rotate_in(&key(1, 1_000)).await.unwrap();
    store.rotate_in(&key(2, 2_000)).await.unwrap();

    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(key_view).collect::<Vec<_>>(),
        vec![
            ("kid-2".to_owned(), vec![2; 61], UnixTime(2_000), None),
            ("kid-1".to_owned(), vec![1; 61], UnixTime(1_000), Some(UnixTime(2_000))),
        ],
        "newest first; the first key retired when the second came in"
    );

    // A third rotation retires only the then-active key: an already retired key keeps
    // the time it was retired at.
    store.rotate_in(&key(3, 3_000)).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(key_view).collect::<Vec<_>>(),
        vec![
            ("kid-3".to_owned(), vec![3; 61], UnixTime(3_000), None),
            ("kid-2".to_owned(), vec![2; 61], UnixTime(2_000), Some(UnixTime(3_000))),
            ("kid-1".to_owned(), vec![1; 61], UnixTime(1_000), Some(UnixTime(2_000))),
        ]
    );
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1, "exactly one key signs");
}

async fn check_last_expiry_for_key(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let t = task(1, &h, &a, 1_000);

    let mut w1 = warrant(1, &t, &a, None, 1_000);
    w1.kid = "kid-old".into();
    w1.expires_at = UnixTime(5_000);
    let mut w2 = warrant(2, &t, &a, Some(&w1), 1_100);
    w2.kid = "kid-old".into();
    w2.expires_at = UnixTime(9_000);
    let mut w3 = warrant(3, &t, &a, Some(&w1), 1_200);
    w3.kid = "kid-old".into();
    w3.expires_at = UnixTime(7_000);
    let mut w4 = warrant(4, &t, &a, Some(&w1), 1_300);
    w4.kid = "kid-new".into();
    w4.expires_at = UnixTime(20_000);

    store.record_warrant(&w1, Some(&t), &IssueGuard::default()).await.unwrap();
    for w in [&w2, &w3, &w4] {
        store.record_warrant(w, None, &IssueGuard::default()).await.unwrap();
    }

    assert_eq!(
        store.last_expiry_for_key("kid-old").await.unwrap(),
        Some(UnixTime(9_000)),
        "the latest expiry, not the latest issued"
    );
    assert_eq!(store.last_expiry_for_key("kid-new").await.unwrap(), Some(UnixTime(20_000)));
    assert_eq!(store.last_expiry_for_key("kid-unused").await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Client assertions
// ---------------------------------------------------------------------------------------

async fn check_assertion_replay_is_refused(store: &dyn Store) {
    let (_, a) = principals(store, 1).await;
    let exp = UnixTime(10_000);
    assert!(store.spend_assertion(&a.id, "jti-1", exp, UnixTime(9_000)).await.unwrap());
    assert!(!store.spend_assertion(&a.id, "jti-1", exp, UnixTime(9_000)).await.unwrap(), "replay");
    assert!(!store.spend_assertion(&a.id, "jti-1", exp, UnixTime(9_999)).await.unwrap(), "replay just before expiry");
    // A different jti of the same agent is its own assertion.
    assert!(store.spend_assertion(&a.id, "jti-2", exp, UnixTime(9_000)).await.unwrap());
}

/// An issuance's assertion is spent with its warrant's record, in one transaction: a
/// replay refuses the record and writes nothing (no warrant, no task), and an assertion
/// spent by either path is spent for the other.
async fn check_assertion_spent_with_the_issuance(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let spent = |jti: &str| warrant_store::SpentAssertion {
        agent: a.id.clone(),
        jti: jti.into(),
        exp: UnixTime(10_000),
        now: UnixTime(9_000),
    };
    let guard = |jti: &str| IssueGuard { assertion: Some(spent(jti)), ..IssueGuard::default() };
    let t1 = task(1, &h, &a, 400);
    let w1 = warrant(1, &t1, &a, None, 400);
    store.record_warrant(&w1, Some(&t1), &guard("jti-1")).await.unwrap();
    assert!(!store.spend_assertion(&a.id, "jti-1", UnixTime(10_000), UnixTime(9_000)).await.unwrap(), "spent");

    let t2 = task(2, &h, &a, 401);
    let w2 = warrant(2, &t2, &a, None, 401);
    let replayed = store.record_warrant(&w2, Some(&t2), &guard("jti-1")).await;
    assert!(matches!(replayed, Err(StoreError::Replayed(_))), "{replayed:?}");
    assert_eq!(store.get_warrant(&w2.jti).await.unwrap(), None, "nothing recorded");
    assert_eq!(store.get_task(&t2.id).await.unwrap(), None, "nothing recorded");

    assert!(store.spend_assertion(&a.id, "jti-2", UnixTime(10_000), UnixTime(9_000)).await.unwrap());
    let replayed = store.record_warrant(&w2, Some(&t2), &guard("jti-2")).await;
    assert!(matches!(replayed, Err(StoreError::Replayed(_))), "{replayed:?}");
    store.record_warrant(&w2, Some(&t2), &guard("jti-3")).await.unwrap();
    assert_eq!(store.get_warrant(&w2.jti).await.unwrap().map(|w| w.jti), Some(w2.jti.clone()));
}

async fn check_assertion_jti_is_per_agent(store: &dyn Store) {
    let (h, a1) = principals(store, 1).await;
    let a2 = agent(2, &h, 300);
    store.insert_agent(&a2).await.unwrap();
    let (exp, now) = (UnixTime(10_000), UnixTime(9_000));

    assert!(store.spend_assertion(&a1.id, "shared", exp, now).await.unwrap());
    assert!(store.spend_assertion(&a2.id, "shared", exp, now).await.unwrap(), "another agent's jti is independent");
    assert!(!store.spend_assertion(&a1.id, "shared", exp, now).await.unwrap());
    assert!(!store.spend_assertion(&a2.id, "shared", exp, now).await.unwrap());
}

async fn check_expired_assertions_are_purged(store: &dyn Store) {
    let (_, a) = principals(store, 1).await;
    assert!(store.spend_assertion(&a.id, "jti-1", UnixTime(1_000), UnixTime(900)).await.unwrap());
    assert!(!store.spend_assertion(&a.id, "jti-1", UnixTime(1_000), UnixTime(950)).await.unwrap());
    // Once `now` is past the spent entry's expiry, the entry is gone: the jti can be
    // spent again (with a new expiry), and is then spent again.
    assert!(store.spend_assertion(&a.id, "jti-1", UnixTime(3_000), UnixTime(2_000)).await.unwrap());
    assert!(!store.spend_assertion(&a.id, "jti-1", UnixTime(3_000), UnixTime(2_001)).await.unwrap());
}

// ---------------------------------------------------------------------------------------
// Warrants and tasks
// ---------------------------------------------------------------------------------------

async fn check_warrant_tree(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let (a1, a2, a3) = (agent(1, &h, 200), agent(2, &h, 201), agent(3, &h, 202));
    for a in [&a1, &a2, &a3] {
        store.insert_agent(a).await.unwrap();
    }

    let t = task(1, &h, &a1, 1_000);
    let mut root = warrant(1, &t, &a1, None, 1_000);
    root.scope = scope("crm.* billing.read:invoices/**");
    root.kid = "kid-root".into();
    let mut child = warrant(2, &t, &a2, Some(&root), 1_010);
    child.scope = scope("crm.read billing.read:invoices/2024/*");
    child.mode = Mode::Autonomous;
    child.sub = a2.id.as_str().to_owned();
    let mut grandchild = warrant(3, &t, &a3, Some(&child), 1_020);
    grandchild.scope = scope("crm.read:customers/42");
    grandchild.expires_at = UnixTime(1_300);

    store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    store.record_warrant(&grandchild, None, &IssueGuard::default()).await.unwrap();

    // A second task, which none of the first task's queries may see.
    let t2 = task(2, &h, &a2, 1_005);
    let other_root = warrant(4, &t2, &a2, None, 1_005);
    let other_child = warrant(5, &t2, &a3, Some(&other_root), 1_015);
    store.record_warrant(&other_root, Some(&t2), &IssueGuard::default()).await.unwrap();
    store.record_warrant(&other_child, None, &IssueGuard::default()).await.unwrap();

    // Round trips.
    assert_eq!(grandchild.chain, vec![a1.id.clone(), a2.id.clone(), a3.id.clone()]);
    for w in [&root, &child, &grandchild, &other_root, &other_child] {
        assert_eq!(store.get_warrant(&w.jti).await.unwrap().as_ref(), Some(w));
    }
    assert_eq!(store.get_warrant(&WarrantId::from_random([9; 12])).await.unwrap(), None);
    assert_eq!(store.get_task(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(store.get_task(&t2.id).await.unwrap(), Some(t2.clone()));
    assert_eq!(store.get_task(&TaskId::from_random([9; 12])).await.unwrap(), None);

    // Direct children only.
    assert_eq!(store.child_warrants(&root.jti).await.unwrap(), vec![child.clone()]);
    assert_eq!(store.child_warrants(&child.jti).await.unwrap(), vec![grandchild.clone()]);
    assert!(store.child_warrants(&grandchild.jti).await.unwrap().is_empty());
    assert!(store.child_warrants(&WarrantId::from_random([9; 12])).await.unwrap().is_empty());

    // Several children, in issuance order.
    let second_child = warrant(6, &t, &a3, Some(&root), 1_030);
    store.record_warrant(&second_child, None, &IssueGuard::default()).await.unwrap();
    assert_eq!(
        jtis(&store.child_warrants(&root.jti).await.unwrap()),
        vec![child.jti.clone(), second_child.jti.clone()]
    );

    // Every warrant of the task, in issuance order, and none of another task's.
    assert_eq!(store.task_warrants(&t.id).await.unwrap(), vec![root, child, grandchild, second_child]);
    assert_eq!(store.task_warrants(&t2.id).await.unwrap(), vec![other_root, other_child]);
    assert!(store.task_warrants(&TaskId::from_random([9; 12])).await.unwrap().is_empty());
}

/// A revocation puts each warrant it ends (and no warrant already revoked) into the
/// transmitter's outbox, in order, with what the warrant named; a stream's cursor only
/// moves forward; a verification event is for its stream only and goes with it.
async fn check_ssf_outbox_and_streams(store: &dyn Store) {
    use warrant_store::ssf::{DeliveryMethod, OutboxEvent, StreamRecord};
    let (t, root) = started_task(store, 1).await;
    let a = store.get_agent(&root.agent).await.unwrap().unwrap();
    let child = warrant(2, &t, &a, Some(&root), 1_010);
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    assert_eq!(store.outbox_head().await.unwrap(), 0);
    let stream = |id: &str, cursor: u64| StreamRecord {
        id: id.into(),
        owner: "pep:1".into(),
        method: DeliveryMethod::Poll,
        endpoint: None,
        authorization: None,
        audience: format!("https://as/ssf/streams/{id}"),
        events: vec!["e1".into(), "e2".into()],
        description: Some("d".into()),
        cursor,
        created_at: UnixTime(1_000),
    };
    store.insert_stream(&stream("s1", 0)).await.unwrap();
    assert_conflict(store.insert_stream(&stream("s1", 0)).await, "a stream id is unique");
    assert_eq!(store.get_stream("s1").await.unwrap(), Some(stream("s1", 0)));

    // The child first, then the root (whose subtree holds the child again).
    store.revoke(&revocation(1, RevocationKind::Warrant, child.jti.as_str(), 1_020), UnixTime(1_020)).await.unwrap();
    store.revoke(&revocation(2, RevocationKind::Warrant, root.jti.as_str(), 1_030), UnixTime(1_030)).await.unwrap();
    let events = store.outbox_after("s1", 0, 100).await.unwrap();
    let announced: Vec<(WarrantId, String)> = events
        .iter()
        .map(|e| match &e.event {
            OutboxEvent::Revoked { jti, revocation, agent, task, human } => {
                assert_eq!(agent.as_ref(), Some(&a.id));
                assert_eq!(task.as_ref(), Some(&t.id));
                assert_eq!(human.as_ref(), Some(&t.human));
                (jti.clone(), revocation.id.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(announced, vec![(child.jti.clone(), "rev_1".into()), (root.jti.clone(), "rev_2".into())]);
    assert!(events[0].seq < events[1].seq);
    assert_eq!(store.outbox_head().await.unwrap(), events[1].seq);
    assert_eq!(store.outbox_after("s1", events[0].seq, 100).await.unwrap().len(), 1);

    // A verification for s2 is s2's alone.
    store.insert_stream(&stream("s2", 0)).await.unwrap();
    let v = store.add_verification("s2", Some("st"), UnixTime(1_040)).await.unwrap();
    assert!(store.outbox_after("s1", events[1].seq, 100).await.unwrap().is_empty());
    let for_s2 = store.outbox_after("s2", events[1].seq, 100).await.unwrap();
    assert_eq!(for_s2.len(), 1);
    assert_eq!(for_s2[0].seq, v);
    assert_eq!(for_s2[0].event, OutboxEvent::Verification { state: Some("st".into()) });

    // Cursors only move forward.
    assert!(store.advance_stream("s1", 5).await.unwrap());
    assert!(store.advance_stream("s1", 2).await.unwrap());
    assert_eq!(store.get_stream("s1").await.unwrap().unwrap().cursor, 5);
    assert!(!store.advance_stream("nope", 9).await.unwrap());
    let listed: Vec<String> = store.list_streams().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, ["s1", "s2"]);
    assert!(store.delete_stream("s2").await.unwrap());
    assert!(!store.delete_stream("s2").await.unwrap());
    assert!(store.outbox_after("s2", events[1].seq, 100).await.unwrap().is_empty());

    // Pruning keeps what a stream has not had yet, and only that.
    assert!(store.delete_stream("s1").await.unwrap());
    store.insert_stream(&stream("s3", 0)).await.unwrap();
    let head = store.outbox_head().await.unwrap();
    assert_eq!(store.get_stream("s3").await.unwrap().unwrap().cursor, head, "a new stream starts at the head");
    assert_eq!(store.prune_outbox(UnixTime(0)).await.unwrap(), 2, "the events before s3 go");
    let (_, r4) = started_task(store, 4).await;
    store.revoke(&revocation(4, RevocationKind::Warrant, r4.jti.as_str(), 1_050), UnixTime(1_050)).await.unwrap();
    assert_eq!(store.prune_outbox(UnixTime(0)).await.unwrap(), 0, "nothing at or below s3's cursor is left");
    let pending = store.outbox_after("s3", head, 100).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(store.advance_stream("s3", pending[0].seq).await.unwrap());
    assert_eq!(store.prune_outbox(UnixTime(0)).await.unwrap(), 1);
    // Past the retention, an event goes even if a stream never collected it.
    let (_, r5) = started_task(store, 5).await;
    store.revoke(&revocation(5, RevocationKind::Warrant, r5.jti.as_str(), 1_060), UnixTime(1_060)).await.unwrap();
    assert_eq!(store.prune_outbox(UnixTime(1_060)).await.unwrap(), 0);
    assert_eq!(store.prune_outbox(UnixTime(1_061)).await.unwrap(), 1);
}

async fn check_warrant_needs_existing_task(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let never_started = task(1, &h, &a, 1_000);
    let w = warrant(1, &never_started, &a, None, 1_000);
    assert_conflict(store.record_warrant(&w, None, &IssueGuard::default()).await, "warrant of an unknown task");
    assert_eq!(store.get_warrant(&w.jti).await.unwrap(), None);
    assert!(store.task_warrants(&never_started.id).await.unwrap().is_empty());
    assert_eq!(store.last_expiry_for_key(&w.kid).await.unwrap(), None);
}

async fn check_warrant_jti_is_unique(store: &dyn Store) {
    let (t, root) = started_task(store, 1).await;
    let (_, a) = principals(store, 2).await;

    // The same jti again, even with different contents, is refused and changes nothing.
    let mut again = warrant(1, &t, &a, Some(&root), 2_000);
    again.jti = root.jti.clone();
    assert_conflict(store.record_warrant(&again, None, &IssueGuard::default()).await, "duplicate jti");
    assert_conflict(
        store.record_warrant(&root, None, &IssueGuard::default()).await,
        "identical warrant recorded twice",
    );
    assert_eq!(store.get_warrant(&root.jti).await.unwrap(), Some(root.clone()));
    assert_eq!(store.task_warrants(&t.id).await.unwrap(), vec![root.clone()]);
    assert!(store.child_warrants(&root.jti).await.unwrap().is_empty());
}

async fn check_warrant_and_task_are_atomic(store: &dyn Store) {
    let (_, root) = started_task(store, 1).await;
    let (h, a) = principals(store, 2).await;

    // A new task whose root warrant is refused (its jti is taken) is not recorded either.
    let t2 = task(2, &h, &a, 2_000);
    let mut clash = warrant(2, &t2, &a, None, 2_000);
    clash.jti = root.jti.clone();
    assert_conflict(
        store.record_warrant(&clash, Some(&t2), &IssueGuard::default()).await,
        "root warrant with a taken jti",
    );
    assert_eq!(store.get_task(&t2.id).await.unwrap(), None);
    assert!(store.task_warrants(&t2.id).await.unwrap().is_empty());

    // A task id that exists already is refused, and the warrant with it.
    let (t3, _) = started_task(store, 3).await;
    let mut dup_task = task(4, &h, &a, 3_000);
    dup_task.id = t3.id.clone();
    let w = warrant(4, &dup_task, &a, None, 3_000);
    assert_conflict(store.record_warrant(&w, Some(&dup_task), &IssueGuard::default()).await, "task id taken");
    assert_eq!(store.get_warrant(&w.jti).await.unwrap(), None);
    assert_eq!(store.get_task(&t3.id).await.unwrap(), Some(t3));

    // And after both refusals the store still accepts the valid write.
    let ok = warrant(5, &t2, &a, None, 2_000);
    store.record_warrant(&ok, Some(&t2), &IssueGuard::default()).await.unwrap();
    assert_eq!(store.get_task(&t2.id).await.unwrap(), Some(t2.clone()));
    assert_eq!(store.task_warrants(&t2.id).await.unwrap(), vec![ok]);
}

// ---------------------------------------------------------------------------------------
// Budgets, guard states and approvals
// ---------------------------------------------------------------------------------------

fn budget(limits: &[(&str, i64)]) -> BTreeMap<String, i64> {
    limits.iter().map(|(counter, limit)| ((*counter).to_owned(), *limit)).collect()
}

fn charge(w: &WarrantRecord, counter: &str, amount: i64) -> SpendCharge {
    SpendCharge { warrant: w.jti.clone(), counter: counter.to_owned(), amount, expires_at: w.expires_at }
}

/// Decision records `from..from + n` chained from `prev`, record `seq` carrying
/// `charges(seq)`.
fn audit_rows(from: u64, n: u64, prev: [u8; 32], charges: impl Fn(u64) -> Vec<SpendCharge>) -> Vec<AuditRow> {
    deciding_rows(from, n, prev, charges, |_| "allow")
}

/// Like [`audit_rows`], each record deciding what `decision` says for its seq.
fn deciding_rows(
    from: u64,
    n: u64,
    prev: [u8; 32],
    charges: impl Fn(u64) -> Vec<SpendCharge>,
    decision: impl Fn(u64) -> &'static str,
) -> Vec<AuditRow> {
    let mut prev = prev;
    (from..from + n)
        .map(|seq| {
            let mut e = AuditEntry::new(UnixTime(1_000 + seq as i64), AuditKind::Decision);
            e.decision = Some(decision(seq).into());
            let record = chain(prev, seq, &e).unwrap();
            prev = record.hash;
            AuditRow { charges: charges(seq), ..AuditRow::new(record, &e) }
        })
        .collect()
}

/// `live_spends` as a map `(jti, counter) -> spent` (the order is not part of the contract).
async fn spends(store: &dyn Store, now: i64) -> BTreeMap<(String, String), i64> {
    let list = store.live_spends(UnixTime(now)).await.unwrap();
    let n = list.len();
    let map: BTreeMap<_, _> =
        list.into_iter().map(|(jti, counter, spent)| ((jti.to_string(), counter), spent)).collect();
    assert_eq!(map.len(), n, "one row per warrant and counter");
    map
}

fn spend(w: &WarrantRecord, counter: &str, spent: i64) -> ((String, String), i64) {
    ((w.jti.to_string(), counter.to_owned()), spent)
}

/// A task whose root warrant (expiring at 1600) has a budget, with a budgeted child
/// expiring at 1200 and a child without a budget; returns (root, child, plain).
async fn budgeted_tree(store: &dyn Store) -> (WarrantRecord, WarrantRecord, WarrantRecord) {
    let (h, a) = principals(store, 1).await;
    let t = task(1, &h, &a, 1_000);
    let mut root = warrant(1, &t, &a, None, 1_000);
    root.budget = budget(&[("payments.usd_cents", 50_000), ("emails", 10)]);
    let mut child = warrant(2, &t, &a, Some(&root), 1_010);
    child.budget = budget(&[("payments.usd_cents", 1_000)]);
    child.expires_at = UnixTime(1_200);
    let plain = warrant(3, &t, &a, Some(&root), 1_020);
    store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    store.record_warrant(&plain, None, &IssueGuard::default()).await.unwrap();
    (root, child, plain)
}

async fn check_warrant_budget_round_trip(store: &dyn Store) {
    let (root, child, plain) = budgeted_tree(store).await;
    assert_eq!(root.budget.len(), 2);
    for w in [&root, &child, &plain] {
        assert_eq!(store.get_warrant(&w.jti).await.unwrap().as_ref(), Some(w));
    }
    assert!(store.get_warrant(&plain.jti).await.unwrap().unwrap().budget.is_empty(), "no budget reads back as none");
    assert_eq!(store.task_warrants(&root.task).await.unwrap(), vec![root.clone(), child.clone(), plain.clone()]);
    assert_eq!(store.child_warrants(&root.jti).await.unwrap(), vec![child, plain]);
}

async fn check_live_budgets(store: &dyn Store) {
    assert!(store.live_budgets(UnixTime(0)).await.unwrap().is_empty());
    let (root, child, _plain) = budgeted_tree(store).await;
    let entry = |w: &WarrantRecord| (w.jti.clone(), w.parent.clone(), w.budget.clone(), w.expires_at);
    assert_eq!(
        store.live_budgets(UnixTime(1_100)).await.unwrap(),
        vec![entry(&root), entry(&child)],
        "the warrant without a budget is not listed"
    );
    assert_eq!(store.live_budgets(UnixTime(1_199)).await.unwrap().len(), 2);
    assert_eq!(store.live_budgets(UnixTime(1_200)).await.unwrap(), vec![entry(&root)], "expired at its expiry");
    assert!(store.live_budgets(UnixTime(1_600)).await.unwrap().is_empty());
}

async fn check_charges_accumulate_with_their_records(store: &dyn Store) {
    let (root, child, _) = budgeted_tree(store).await;
    const USD: &str = "payments.usd_cents";
    assert!(spends(store, 1_100).await.is_empty());

    // A charge to a child is charged up the tree: the caller lists every warrant.
    let first = audit_rows(1, 3, GENESIS, |seq| match seq {
        1 => vec![charge(&child, USD, 100), charge(&root, USD, 100)],
        3 => vec![charge(&root, "emails", 1)],
        _ => Vec::new(),
    });
    store.append_audit(first.clone()).await.unwrap();
    assert_eq!(
        spends(store, 1_100).await,
        BTreeMap::from([spend(&root, USD, 100), spend(&child, USD, 100), spend(&root, "emails", 1)])
    );

    // A second batch adds to what was spent, as does a second charge in one record.
    let second = audit_rows(4, 2, first[2].record.hash, |seq| match seq {
        4 => vec![charge(&root, USD, 200), charge(&root, USD, 50)],
        _ => vec![charge(&child, USD, 5), charge(&root, USD, 5)],
    });
    store.append_audit(second.clone()).await.unwrap();
    assert_eq!(
        spends(store, 1_100).await,
        BTreeMap::from([spend(&root, USD, 355), spend(&child, USD, 105), spend(&root, "emails", 1)])
    );

    // The charges are not part of the record: rows read back carry none.
    let stored: Vec<AuditRow> =
        first.into_iter().chain(second).map(|row| AuditRow { charges: Vec::new(), ..row }).collect();
    assert_eq!(store.audit_records(1, 100).await.unwrap(), stored);
    assert_eq!(store.query_audit(&AuditFilter::default()).await.unwrap(), stored);
    assert_eq!(store.get_audit(4).await.unwrap().as_ref(), Some(&stored[3]));
}

async fn check_refused_append_charges_nothing(store: &dyn Store) {
    let (root, _, _) = budgeted_tree(store).await;
    const USD: &str = "payments.usd_cents";
    let first = audit_rows(1, 2, GENESIS, |_| vec![charge(&root, USD, 10)]);
    store.append_audit(first.clone()).await.unwrap();
    let head = first[1].record.hash;
    let before = BTreeMap::from([spend(&root, USD, 20)]);
    assert_eq!(spends(store, 1_100).await, before);

    // A batch that does not continue the head: refused, and its charges with it.
    let stale = audit_rows(1, 2, GENESIS, |_| vec![charge(&root, USD, 1_000), charge(&root, "emails", 1)]);
    assert_conflict(store.append_audit(stale).await, "batch behind the head");
    assert_eq!(spends(store, 1_100).await, before);

    // A batch that continues the head but repeats a seq: refused whole, charges included,
    // even those of the rows before the duplicate.
    let mut dup = audit_rows(3, 2, head, |_| vec![charge(&root, USD, 1_000)]);
    dup.push(dup[0].clone());
    assert_conflict(store.append_audit(dup).await, "batch with a duplicate seq");
    assert_eq!(spends(store, 1_100).await, before);
    assert_eq!(store.audit_head().await.unwrap(), Some((2, head)));

    // The valid batch still goes through, with its charges.
    store.append_audit(audit_rows(3, 1, head, |_| vec![charge(&root, USD, 1)])).await.unwrap();
    assert_eq!(spends(store, 1_100).await, BTreeMap::from([spend(&root, USD, 21)]));
}

/// Appending at the head: a batch chained onto a head another writer has since moved is
/// chained again onto the stored head in the store's transaction (numbers, bodies and
/// hashes rewritten, entries and charges kept); one that continues it is stored as is.
/// The chain verifies throughout.
async fn check_append_at_head_chains_a_stale_batch_again(store: &dyn Store) {
    use warrant_core::audit::{decode, record_hash};
    let (root, _, _) = budgeted_tree(store).await;
    const USD: &str = "payments.usd_cents";
    assert_eq!(store.append_audit_at_head(Vec::new()).await.unwrap().head, (0, GENESIS), "nothing to append");
    let first = audit_rows(1, 2, GENESIS, |_| vec![charge(&root, USD, 10)]);
    assert_eq!(store.append_audit_at_head(first.clone()).await.unwrap().head, (2, first[1].record.hash), "as is");
    // Chained onto the empty log, as a writer that had not seen the first batch would.
    let stale = audit_rows(1, 3, GENESIS, |_| vec![charge(&root, USD, 1)]);
    let (seq, hash) = store.append_audit_at_head(stale.clone()).await.unwrap().head;
    assert_eq!(seq, 5);
    let stored = store.audit_records(1, 100).await.unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[4].record.hash, hash);
    let mut prev = GENESIS;
    for (i, row) in stored.iter().enumerate() {
        assert_eq!(row.record.seq, i as u64 + 1);
        assert_eq!(row.record.prev_hash, prev, "record {} continues the one before it", i + 1);
        assert_eq!(row.record.hash, record_hash(&prev, &row.record.body));
        assert_eq!(decode(&row.record).unwrap().0, row.record.seq, "the body names the record's number");
        prev = row.record.hash;
    }
    for (old, new) in stale.iter().zip(&stored[2..]) {
        assert_eq!(decode(&old.record).unwrap().1, decode(&new.record).unwrap().1, "the entry is kept");
        assert_eq!((old.at, old.kind, &old.agent), (new.at, new.kind, &new.agent));
    }
    assert_eq!(spends(store, 1_100).await, BTreeMap::from([spend(&root, USD, 23)]), "every charge applied once");
}

/// An audit row may carry the issuance it audits: the warrant is recorded in the
/// batch's transaction with `record_warrant`'s checks, in batch order. At the head, a
/// refused issuance (an assertion replayed, an agent revoked) takes its row out, is
/// reported with its index, and leaves nothing behind; the other rows, their issuances
/// (one resting on a warrant of the same batch) and the chain are whole. A strict append
/// with a refused issuance writes nothing at all.
async fn check_issuances_commit_with_their_records(store: &dyn Store) {
    use warrant_core::audit::{decode, record_hash};
    use warrant_store::{Issuance, Refusal};
    let (h, a) = principals(store, 1).await;
    let (h2, a2) = principals(store, 2).await;
    store.revoke(&revocation(1, RevocationKind::Agent, a2.id.as_str(), 300), UnixTime(300)).await.unwrap();
    let exp = UnixTime(10_000);
    assert!(store.spend_assertion(&a.id, "jti-1", exp, UnixTime(9_000)).await.unwrap());
    let (t1, t2, t4) = (task(1, &h, &a, 400), task(2, &h, &a, 400), task(4, &h2, &a2, 400));
    let w1 = warrant(1, &t1, &a, None, 400);
    let w2 = warrant(2, &t2, &a, None, 400);
    let w3 = warrant(3, &t1, &a, Some(&w1), 401);
    let w4 = warrant(4, &t4, &a2, None, 400);
    let guard = IssueGuard { as_of: store.revocation_watermark().await.unwrap(), ..IssueGuard::default() };
    let replay = IssueGuard {
        assertion: Some(warrant_store::SpentAssertion {
            agent: a.id.clone(),
            jti: "jti-1".into(),
            exp,
            now: UnixTime(9_000),
        }),
        ..guard.clone()
    };
    let issuance = |w: &WarrantRecord, t: Option<&TaskRecord>, guard: &IssueGuard| {
        Some(Box::new(Issuance { warrant: w.clone(), new_task: t.cloned(), guard: guard.clone() }))
    };
    let mut rows = audit_rows(1, 5, GENESIS, |_| Vec::new());
    rows[0].issuance = issuance(&w1, Some(&t1), &guard);
    rows[1].issuance = issuance(&w2, Some(&t2), &replay);
    rows[3].issuance = issuance(&w4, Some(&t4), &guard);
    rows[4].issuance = issuance(&w3, None, &guard);

    // Strict: one refusal and nothing is written, not even the issuances that passed.
    let strict = store.append_audit(rows.clone()).await;
    assert!(matches!(strict, Err(StoreError::Replayed(_))), "{strict:?}");
    assert_eq!(store.audit_head().await.unwrap(), None);
    assert_eq!(store.get_warrant(&w1.jti).await.unwrap(), None, "nothing of a refused batch");

    let appended = store.append_audit_at_head(rows.clone()).await.unwrap();
    assert!(
        matches!(&appended.refused[..], [(1, Refusal::Replayed(_)), (3, Refusal::Revoked(_))]),
        "{:?}",
        appended.refused
    );
    assert_eq!(appended.head.0, 3, "the rows left hold 1 to 3");
    let stored = store.audit_records(1, 100).await.unwrap();
    assert_eq!(stored.len(), 3);
    let mut prev = GENESIS;
    for (row, sent) in stored.iter().zip([&rows[0], &rows[2], &rows[4]]) {
        assert_eq!(row.record.prev_hash, prev, "record {} continues the one before it", row.record.seq);
        assert_eq!(row.record.hash, record_hash(&prev, &row.record.body));
        assert_eq!(decode(&row.record).unwrap().1, decode(&sent.record).unwrap().1, "the entry is kept");
        assert_eq!(row.issuance, None, "rows read back carry no issuance");
        prev = row.record.hash;
    }
    assert_eq!(appended.head.1, prev);
    for (w, recorded) in [(&w1, true), (&w2, false), (&w3, true), (&w4, false)] {
        let found = store.get_warrant(&w.jti).await.unwrap().map(|w| w.jti);
        assert_eq!(found.as_ref(), recorded.then_some(&w.jti), "warrant {}", w.jti);
    }
    assert_eq!(store.get_task(&t1.id).await.unwrap(), Some(t1));
    assert_eq!(store.get_task(&t2.id).await.unwrap(), None, "a refused issuance leaves no task");
    assert_eq!(store.get_task(&t4.id).await.unwrap(), None, "a refused issuance leaves no task");
}

async fn check_purge_spends(store: &dyn Store) {
    let (root, child, _) = budgeted_tree(store).await;
    const USD: &str = "payments.usd_cents";
    assert_eq!(store.purge_spends(UnixTime(1_100)).await.unwrap(), 0, "nothing to purge");
    let rows =
        audit_rows(1, 1, GENESIS, |_| vec![charge(&root, USD, 7), charge(&child, USD, 7), charge(&root, "emails", 1)]);
    store.append_audit(rows).await.unwrap();

    assert_eq!(store.purge_spends(UnixTime(1_199)).await.unwrap(), 0, "every warrant is live");
    assert_eq!(spends(store, 1_199).await.len(), 3);
    // The child expires at 1200: from then on its spend is neither live nor kept.
    assert_eq!(spends(store, 1_200).await, BTreeMap::from([spend(&root, USD, 7), spend(&root, "emails", 1)]));
    assert_eq!(store.purge_spends(UnixTime(1_200)).await.unwrap(), 1);
    assert_eq!(store.purge_spends(UnixTime(1_200)).await.unwrap(), 0);
    assert_eq!(spends(store, 1_100).await, BTreeMap::from([spend(&root, USD, 7), spend(&root, "emails", 1)]));
    assert_eq!(store.purge_spends(UnixTime(5_000)).await.unwrap(), 2);
    assert!(spends(store, 0).await.is_empty());
}

async fn check_guard_states_upsert(store: &dyn Store) {
    assert!(store.guard_states().await.unwrap().is_empty());
    store.save_guard_states(&[]).await.unwrap();
    assert!(store.guard_states().await.unwrap().is_empty());

    let (a1, a2, a3) = (AgentId::from_random([1; 12]), AgentId::from_random([2; 12]), AgentId::from_random([3; 12]));
    let sorted = |mut states: Vec<(AgentId, String)>| {
        states.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        states
    };
    store
        .save_guard_states(&[
            (a1.clone(), r#"{"trust":1.0,"baseline":{"actions":["crm.read"]}}"#.into(), UnixTime(100)),
            (a2.clone(), "{}".into(), UnixTime(100)),
        ])
        .await
        .unwrap();
    assert_eq!(
        sorted(store.guard_states().await.unwrap()),
        vec![
            (a1.clone(), r#"{"trust":1.0,"baseline":{"actions":["crm.read"]}}"#.to_owned()),
            (a2.clone(), "{}".to_owned())
        ]
    );

    // Saving again replaces those agents' states and adds new ones; others are kept.
    store
        .save_guard_states(&[
            (a1.clone(), r#"{"trust":0.5}"#.into(), UnixTime(200)),
            (a3.clone(), "{}".into(), UnixTime(200)),
        ])
        .await
        .unwrap();
    assert_eq!(
        sorted(store.guard_states().await.unwrap()),
        vec![(a1, r#"{"trust":0.5}"#.to_owned()), (a2, "{}".to_owned()), (a3, "{}".to_owned())]
    );
}

fn approval(n: u8, agent: &AgentId, status: ApprovalStatus, created_at: i64) -> Approval {
    Approval {
        id: ApprovalId::from_random([n; 12]),
        status,
        approver_role: Approver::Owner,
        approver: HumanId::from_random([200; 12]),
        agent: agent.clone(),
        human: HumanId::from_random([201; 12]),
        task: TaskId::from_random([202; 12]),
        warrant: WarrantId::from_random([203; 12]),
        action: "payments.send".into(),
        resource: format!("accounts/{n}"),
        request_digest: format!("digest-{n}"),
        request: serde_json::json!({"resource_attrs": {"amount": 1200, "note": "ünïcödé \" quote"}, "context": {}}),
        policies: vec!["large-payments".into(), "weekend".into()],
        created_at: UnixTime(created_at),
        expires_at: UnixTime(created_at + 900),
        decided_at: None,
        decided_by: None,
        reason: None,
        used_at: None,
    }
}

async fn check_approval_round_trip(store: &dyn Store) {
    let agent = AgentId::from_random([1; 12]);
    let pending = approval(1, &agent, ApprovalStatus::Pending, 100);
    store.insert_approval(&pending).await.unwrap();
    assert_eq!(store.get_approval(&pending.id).await.unwrap(), Some(pending.clone()));

    let mut decided = approval(2, &agent, ApprovalStatus::Rejected, 200);
    decided.approver_role = Approver::Human;
    decided.decided_at = Some(UnixTime(250));
    decided.decided_by = Some("admin".into());
    decided.reason = Some("not this week".into());
    decided.request = serde_json::Value::Null;
    decided.policies = Vec::new();
    store.insert_approval(&decided).await.unwrap();
    assert_eq!(store.get_approval(&decided.id).await.unwrap(), Some(decided));

    // The same id again is refused, and the stored approval is unchanged.
    let mut again = approval(3, &agent, ApprovalStatus::Approved, 300);
    again.id = pending.id.clone();
    assert_conflict(store.insert_approval(&again).await, "duplicate approval id");
    assert_eq!(store.get_approval(&pending.id).await.unwrap(), Some(pending));
    assert_eq!(store.get_approval(&ApprovalId::from_random([9; 12])).await.unwrap(), None);
}

async fn check_approval_compare_and_set(store: &dyn Store) {
    let agent = AgentId::from_random([1; 12]);
    let pending = approval(1, &agent, ApprovalStatus::Pending, 100);
    store.insert_approval(&pending).await.unwrap();

    let approved = Approval {
        status: ApprovalStatus::Approved,
        decided_at: Some(UnixTime(150)),
        decided_by: Some(pending.approver.to_string()),
        reason: Some("fine".into()),
        expires_at: UnixTime(210),
        ..pending.clone()
    };
    let rejected = Approval {
        status: ApprovalStatus::Rejected,
        decided_at: Some(UnixTime(151)),
        decided_by: Some("admin".into()),
        ..pending.clone()
    };
    assert!(store.update_approval(&approved, ApprovalStatus::Pending).await.unwrap());
    assert_eq!(store.get_approval(&pending.id).await.unwrap(), Some(approved.clone()));

    // A second decision that read the approval while it was pending loses the race.
    assert!(!store.update_approval(&rejected, ApprovalStatus::Pending).await.unwrap());
    assert_eq!(store.get_approval(&pending.id).await.unwrap(), Some(approved.clone()));

    // Used once: the second use, expecting `approved` again, fails.
    let used = Approval { status: ApprovalStatus::Used, used_at: Some(UnixTime(160)), ..approved.clone() };
    assert!(store.update_approval(&used, ApprovalStatus::Approved).await.unwrap());
    assert!(!store.update_approval(&used, ApprovalStatus::Approved).await.unwrap());
    assert_eq!(store.get_approval(&pending.id).await.unwrap(), Some(used.clone()));

    // Listings filter on the stored status, which follows the updates.
    assert!(store.list_approvals(Some(ApprovalStatus::Pending), None, None, 10).await.unwrap().is_empty());
    assert!(store.list_approvals(Some(ApprovalStatus::Approved), None, None, 10).await.unwrap().is_empty());
    assert_eq!(store.list_approvals(Some(ApprovalStatus::Used), None, None, 10).await.unwrap(), vec![used]);

    // An approval that does not exist is never updated (nor created).
    let ghost = approval(9, &agent, ApprovalStatus::Approved, 100);
    assert!(!store.update_approval(&ghost, ApprovalStatus::Pending).await.unwrap());
    assert_eq!(store.get_approval(&ghost.id).await.unwrap(), None);
}

async fn check_list_approvals(store: &dyn Store) {
    let (a1, a2) = (AgentId::from_random([1; 12]), AgentId::from_random([2; 12]));
    let p1 = approval(1, &a1, ApprovalStatus::Pending, 100);
    let p2 = approval(2, &a2, ApprovalStatus::Pending, 200);
    let p3 = approval(3, &a1, ApprovalStatus::Approved, 300);
    let p4 = approval(4, &a1, ApprovalStatus::Pending, 400);
    let p5 = approval(5, &a2, ApprovalStatus::Rejected, 500);
    assert!(store.list_approvals(None, None, None, 100).await.unwrap().is_empty());
    // Inserted out of age order: listing is newest first by creation, not insertion.
    for a in [&p3, &p1, &p5, &p2, &p4] {
        store.insert_approval(a).await.unwrap();
    }
    let list = |status, agent: Option<AgentId>, limit| async move {
        store.list_approvals(status, agent.as_ref(), None, limit).await.unwrap()
    };
    use ApprovalStatus::{Approved, Expired, Pending};
    let all = vec![p5.clone(), p4.clone(), p3.clone(), p2.clone(), p1.clone()];
    assert_eq!(list(None, None, 100).await, all);
    assert_eq!(list(None, None, usize::MAX).await, all, "a huge limit is capped, not an error");
    assert_eq!(list(None, None, 2).await, vec![p5.clone(), p4.clone()]);
    assert!(list(None, None, 0).await.is_empty());
    assert_eq!(list(Some(Pending), None, 100).await, vec![p4.clone(), p2.clone(), p1.clone()]);
    assert_eq!(list(Some(Approved), None, 100).await, vec![p3.clone()]);
    assert!(list(Some(Expired), None, 100).await.is_empty());
    assert_eq!(list(None, Some(a1.clone()), 100).await, vec![p4.clone(), p3.clone(), p1.clone()]);
    assert_eq!(list(Some(Pending), Some(a1.clone()), 100).await, vec![p4.clone(), p1.clone()]);
    assert_eq!(list(Some(Pending), Some(a1), 1).await, vec![p4.clone()]);
    assert_eq!(list(Some(Pending), Some(a2.clone()), 100).await, vec![p2]);
    assert!(list(Some(Approved), Some(a2), 100).await.is_empty());
    assert!(list(None, Some(AgentId::from_random([9; 12])), 100).await.is_empty());

    // By approver, chosen in the store: the limit counts only theirs.
    let other = HumanId::from_random([77; 12]);
    let mut p6 = approval(6, &AgentId::from_random([3; 12]), ApprovalStatus::Pending, 600);
    p6.approver = other.clone();
    store.insert_approval(&p6).await.unwrap();
    let mine = HumanId::from_random([200; 12]);
    assert_eq!(store.list_approvals(Some(Pending), None, Some(&mine), 1).await.unwrap(), vec![p4.clone()]);
    assert_eq!(store.list_approvals(None, None, Some(&other), 100).await.unwrap(), vec![p6]);
    assert!(store.list_approvals(None, None, Some(&HumanId::from_random([9; 12])), 100).await.unwrap().is_empty());
}

/// Listings return at most `MAX_APPROVAL_LIST_LIMIT` approvals, whatever the limit asked.
async fn check_list_approvals_is_capped(store: &dyn Store) {
    let agent = AgentId::from_random([1; 12]);
    let cap = warrant_store::MAX_APPROVAL_LIST_LIMIT;
    for i in 0..=cap {
        let mut a = approval(0, &agent, ApprovalStatus::Pending, i as i64);
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        a.id = ApprovalId::from_random(bytes);
        store.insert_approval(&a).await.unwrap();
    }
    let listed = store.list_approvals(None, None, None, cap + 5).await.unwrap();
    assert_eq!(listed.len(), cap);
    assert_eq!(listed[0].created_at, UnixTime(cap as i64), "the newest first");
}

// ---------------------------------------------------------------------------------------
// Governance: findings, usage, attestations, agent keys and live warrants
// ---------------------------------------------------------------------------------------

/// A finding of `kind` about `subject`, last seen at `last_seen`; resolved and accepted
/// ones carry their resolution or acceptance.
fn finding(n: u8, kind: FindingKind, subject: &str, status: FindingStatus, last_seen: i64) -> Finding {
    Finding {
        id: format!("fnd_{n:03}"),
        kind,
        severity: Severity::Medium,
        subject: subject.to_owned(),
        evidence: serde_json::json!({ "n": n, "unused": ["crm.write", "billing.*"], "note": "quotes \" and ünïcödé" }),
        status,
        first_seen: UnixTime(last_seen - 50),
        last_seen: UnixTime(last_seen),
        resolved_at: (status == FindingStatus::Resolved).then_some(UnixTime(last_seen)),
        acceptance: (status == FindingStatus::Accepted).then(|| Acceptance {
            by: "admin".into(),
            justification: "a known nightly batch".into(),
            at: UnixTime(last_seen - 10),
            until: UnixTime(last_seen + 1_000),
        }),
    }
}

fn by_id(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings
}

async fn check_findings_round_trip(store: &dyn Store) {
    assert_eq!(store.get_finding("fnd_001").await.unwrap(), None);
    assert!(store.active_findings().await.unwrap().is_empty());
    store.save_findings(&[]).await.unwrap();

    let subject = AgentId::from_random([1; 12]).to_string();
    let open = finding(1, FindingKind::IdleAgent, &subject, FindingStatus::Open, 100);
    let accepted = finding(2, FindingKind::OverPrivileged, &subject, FindingStatus::Accepted, 200);
    let resolved = finding(3, FindingKind::StaleKey, &subject, FindingStatus::Resolved, 300);
    store.save_findings(&[open.clone(), accepted.clone(), resolved.clone()]).await.unwrap();
    for f in [&open, &accepted, &resolved] {
        assert_eq!(store.get_finding(&f.id).await.unwrap().as_ref(), Some(f));
    }
    assert_eq!(by_id(store.active_findings().await.unwrap()), vec![open.clone(), accepted.clone()]);

    // Saving again by id replaces the finding: its status, evidence and times.
    let now_resolved = Finding {
        status: FindingStatus::Resolved,
        resolved_at: Some(UnixTime(400)),
        last_seen: UnixTime(390),
        evidence: serde_json::json!({ "idle_days": 31 }),
        ..open.clone()
    };
    let reopened =
        Finding { status: FindingStatus::Open, resolved_at: None, last_seen: UnixTime(410), ..resolved.clone() };
    store.save_findings(&[now_resolved.clone(), reopened.clone()]).await.unwrap();
    assert_eq!(store.get_finding(&open.id).await.unwrap(), Some(now_resolved.clone()));
    assert_eq!(store.get_finding(&resolved.id).await.unwrap(), Some(reopened.clone()));
    assert_eq!(by_id(store.active_findings().await.unwrap()), vec![accepted.clone(), reopened.clone()]);

    // Resolved findings are kept, as history.
    let all = store.list_findings(&FindingFilter::default()).await.unwrap();
    assert_eq!(by_id(all), vec![now_resolved, accepted, reopened]);
}

async fn check_list_findings(store: &dyn Store) {
    use FindingKind::{IdleAgent, OverPrivileged, PolicyBroadening, StaleKey};
    use FindingStatus::{Accepted, Open, Resolved};
    let (a, b) = (AgentId::from_random([1; 12]).to_string(), AgentId::from_random([2; 12]).to_string());
    let f1 = finding(1, IdleAgent, &a, Open, 100);
    let f2 = finding(2, OverPrivileged, &a, Accepted, 400);
    let f3 = finding(3, IdleAgent, &b, Resolved, 300);
    let f4 = finding(4, StaleKey, &b, Open, 200);
    let f5 = finding(5, PolicyBroadening, "policy:3", Open, 400);
    assert!(store.list_findings(&FindingFilter::default()).await.unwrap().is_empty());
    // Saved out of order: listing is by last seen, newest first, then by id.
    store.save_findings(&[f3.clone(), f5.clone(), f1.clone(), f4.clone(), f2.clone()]).await.unwrap();

    let list = |status: Option<FindingStatus>, kind: Option<FindingKind>, subject: Option<&str>, limit: usize| {
        let filter = FindingFilter { status, kind, subject: subject.map(str::to_owned), limit };
        async move { store.list_findings(&filter).await.unwrap() }
    };
    let all = vec![f2.clone(), f5.clone(), f3.clone(), f4.clone(), f1.clone()];
    assert_eq!(store.list_findings(&FindingFilter::default()).await.unwrap(), all);
    assert_eq!(list(None, None, None, usize::MAX).await, all, "a huge limit is capped, not an error");
    assert_eq!(list(None, None, None, 2).await, vec![f2.clone(), f5.clone()]);
    assert!(list(None, None, None, 0).await.is_empty());

    assert_eq!(list(Some(Open), None, None, 100).await, vec![f5.clone(), f4.clone(), f1.clone()]);
    assert_eq!(list(Some(Accepted), None, None, 100).await, vec![f2.clone()]);
    assert_eq!(list(Some(Resolved), None, None, 100).await, vec![f3.clone()]);
    assert_eq!(list(Some(Open), None, None, 1).await, vec![f5.clone()]);

    assert_eq!(list(None, Some(IdleAgent), None, 100).await, vec![f3.clone(), f1.clone()]);
    assert_eq!(list(Some(Open), Some(IdleAgent), None, 100).await, vec![f1.clone()]);
    assert!(list(None, Some(FindingKind::ShadowActivity), None, 100).await.is_empty());

    assert_eq!(list(None, None, Some(&a), 100).await, vec![f2.clone(), f1.clone()]);
    assert_eq!(list(None, None, Some(&b), 100).await, vec![f3.clone(), f4.clone()]);
    assert_eq!(list(None, None, Some("policy:3"), 100).await, vec![f5]);
    assert_eq!(list(None, Some(StaleKey), Some(&b), 100).await, vec![f4.clone()]);
    assert_eq!(list(Some(Open), Some(StaleKey), Some(&b), 100).await, vec![f4]);
    assert!(list(Some(Accepted), None, Some(&b), 100).await.is_empty());
    assert!(list(None, None, Some("agt_nobody"), 100).await.is_empty());
}

/// One save of more findings than a listing returns, in one call; listings return at most
/// `MAX_FINDING_LIST_LIMIT`, the active set is not capped.
async fn check_list_findings_is_capped(store: &dyn Store) {
    let cap = warrant_store::MAX_FINDING_LIST_LIMIT;
    let findings: Vec<Finding> = (0..=cap)
        .map(|i| Finding {
            id: format!("fnd_{i:06}"),
            subject: format!("client:{i}"),
            ..finding(0, FindingKind::ShadowActivity, "", FindingStatus::Open, 100 + i as i64)
        })
        .collect();
    store.save_findings(&findings).await.unwrap();
    let listed = store.list_findings(&FindingFilter { limit: cap + 5, ..FindingFilter::default() }).await.unwrap();
    assert_eq!(listed.len(), cap);
    assert_eq!(listed[0], findings[cap], "the most recently seen first");
    assert_eq!(store.active_findings().await.unwrap().len(), cap + 1);

    // Saving them all again (an upsert) changes nothing.
    store.save_findings(&findings).await.unwrap();
    assert_eq!(store.active_findings().await.unwrap().len(), cap + 1);
}

fn by_agent<T>(mut rows: Vec<(AgentId, T)>) -> Vec<(AgentId, T)> {
    rows.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    rows
}

async fn check_usage_upsert(store: &dyn Store) {
    assert!(store.usages().await.unwrap().is_empty());
    store.save_usage(&[]).await.unwrap();

    let (a1, a2) = (AgentId::from_random([1; 12]), AgentId::from_random([2; 12]));
    let mut u1 = AgentUsage::default();
    u1.used("crm.read", "crm/accounts/1", UnixTime(10));
    u1.used("crm.read", "crm/accounts/2", UnixTime(11));
    u1.delegated(&scope("tickets.create:queue/ops/**"), UnixTime(12));
    let mut u2 = AgentUsage::default();
    u2.seen(UnixTime(20));
    store.save_usage(&[(a1.clone(), u1.clone()), (a2.clone(), u2.clone())]).await.unwrap();
    assert_eq!(
        by_agent(store.usages().await.unwrap()),
        by_agent(vec![(a1.clone(), u1.clone()), (a2.clone(), u2.clone())])
    );

    // Saving again updates only that agent's usage: what it now used is there. (What
    // this server forgot may stay: one server's store replaces the usage, a database
    // servers share merges it with what the others saw; readers forget by time.)
    u1.used("billing.read", "invoices/7", UnixTime(30));
    u1.forget_before(UnixTime(12));
    store.save_usage(&[(a1.clone(), u1.clone())]).await.unwrap();
    let stored: std::collections::HashMap<AgentId, AgentUsage> = store.usages().await.unwrap().into_iter().collect();
    assert_eq!(stored.get(&a2), Some(&u2), "another agent's usage is untouched");
    let saved = stored.get(&a1).unwrap();
    assert_eq!(saved.actions.get("billing.read"), u1.actions.get("billing.read"));
    assert_eq!(saved.last_seen, u1.last_seen);
    assert_eq!(saved.delegated, u1.delegated);
}

fn attestation(n: u8, agent: &AgentId, at: i64) -> Attestation {
    Attestation {
        id: format!("att_{n:03}"),
        agent: agent.clone(),
        by: if n.is_multiple_of(2) { "admin".into() } else { HumanId::from_random([n; 12]).to_string() },
        at: UnixTime(at),
        note: format!("still needed ({n}), quotes \" and ünïcödé"),
        evidence: serde_json::json!({ "max_scope": "crm.read crm.write", "used": ["crm.read"], "n": n }),
    }
}

async fn check_attestations(store: &dyn Store) {
    let (a1, a2) = (AgentId::from_random([1; 12]), AgentId::from_random([2; 12]));
    assert!(store.last_attestations().await.unwrap().is_empty());
    assert!(store.attestations(&a1, 10).await.unwrap().is_empty());

    let (t1, t2, t3) = (attestation(1, &a1, 100), attestation(2, &a1, 300), attestation(3, &a1, 200));
    let other = attestation(4, &a2, 50);
    for att in [&t1, &t2, &t3, &other] {
        store.record_attestation(att).await.unwrap();
    }
    let duplicate = Attestation { at: UnixTime(999), ..attestation(1, &a2, 999) };
    assert_conflict(store.record_attestation(&duplicate).await, "duplicate attestation id");

    assert_eq!(
        by_agent(store.last_attestations().await.unwrap()),
        by_agent(vec![(a1.clone(), UnixTime(300)), (a2.clone(), UnixTime(50))]),
        "the duplicate was not stored"
    );
    assert_eq!(store.attestations(&a1, 10).await.unwrap(), vec![t2.clone(), t3.clone(), t1]);
    assert_eq!(store.attestations(&a1, 2).await.unwrap(), vec![t2, t3]);
    assert!(store.attestations(&a1, 0).await.unwrap().is_empty());
    assert_eq!(store.attestations(&a2, usize::MAX).await.unwrap(), vec![other]);
    assert!(store.attestations(&AgentId::from_random([9; 12]), 10).await.unwrap().is_empty());
}

async fn check_set_agent_key(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let other = agent(2, &h, 300);
    store.insert_agent(&other).await.unwrap();
    // Until replaced, a key dates from the agent's registration.
    assert_eq!(
        by_agent(store.agent_key_times().await.unwrap()),
        by_agent(vec![(a.id.clone(), a.created_at), (other.id.clone(), other.created_at)])
    );

    let rotated = PublicJwk {
        kid: Some("client-key-2".into()),
        x: "Wq3vDcDpPUlvMyflRs5pBpIjVQJfB9ysJcxFrJlZpZk".into(),
        ..jwk()
    };
    assert!(store.set_agent_key(&a.id, &rotated, UnixTime(5_000)).await.unwrap());
    assert_eq!(store.get_agent(&a.id).await.unwrap(), Some(Agent { public_key: Some(rotated.clone()), ..a.clone() }));
    assert_eq!(store.get_agent(&other.id).await.unwrap(), Some(other.clone()), "only that agent changed");
    assert_eq!(
        by_agent(store.agent_key_times().await.unwrap()),
        by_agent(vec![(a.id.clone(), UnixTime(5_000)), (other.id.clone(), other.created_at)])
    );

    // Replaced again: the latest time counts.
    assert!(store.set_agent_key(&a.id, &jwk(), UnixTime(6_000)).await.unwrap());
    assert_eq!(store.get_agent(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        by_agent(store.agent_key_times().await.unwrap()),
        by_agent(vec![(a.id.clone(), UnixTime(6_000)), (other.id.clone(), other.created_at)])
    );

    let ghost = AgentId::from_random([9; 12]);
    assert!(!store.set_agent_key(&ghost, &rotated, UnixTime(7_000)).await.unwrap());
    assert_eq!(store.get_agent(&ghost).await.unwrap(), None);
    assert_eq!(store.agent_key_times().await.unwrap().len(), 2, "no key time for an unknown agent");
}

async fn check_set_agent_max_scope(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let other = agent(2, &h, 300);
    store.insert_agent(&other).await.unwrap();

    for max_scope in [scope("crm.read:customers/** billing.read:invoices/7"), Scope::empty(), scope("crm.read")] {
        assert!(store.set_agent_max_scope(&a.id, &max_scope).await.unwrap());
        assert_eq!(store.get_agent(&a.id).await.unwrap(), Some(Agent { max_scope, ..a.clone() }));
    }
    assert_eq!(store.get_agent(&other.id).await.unwrap(), Some(other), "only that agent changed");
    assert!(!store.set_agent_max_scope(&AgentId::from_random([9; 12]), &scope("crm.read")).await.unwrap());
}

fn live(w: &WarrantRecord) -> LiveWarrant {
    LiveWarrant {
        jti: w.jti.clone(),
        parent: w.parent.clone(),
        agent: w.agent.clone(),
        depth: w.chain.len(),
        issued_at: w.issued_at,
        expires_at: w.expires_at,
    }
}

fn revocation(n: u8, kind: RevocationKind, target: &str, at: i64) -> RevocationRecord {
    RevocationRecord {
        id: format!("rev_{n}"),
        kind,
        target: target.to_owned(),
        reason: "test".into(),
        at: UnixTime(at),
    }
}

/// Unexpired, unrevoked warrants of unended tasks, in issuance order, with their depth.
async fn check_govern_live_warrants(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let (a, b, c) = (agent(1, &h, 100), agent(2, &h, 100), agent(3, &h, 100));
    for x in [&a, &b, &c] {
        store.insert_agent(x).await.unwrap();
    }
    assert!(store.live_warrants(UnixTime(0)).await.unwrap().is_empty());

    // Task 1: root -> mid -> leaf, live; a revoked child and an expired child of the root.
    let t1 = task(1, &h, &a, 1_000);
    let root = warrant(1, &t1, &a, None, 1_000);
    let mid = warrant(2, &t1, &b, Some(&root), 1_001);
    let leaf = warrant(3, &t1, &c, Some(&mid), 1_002);
    let revoked = warrant(4, &t1, &c, Some(&root), 1_003);
    let expired = WarrantRecord { expires_at: UnixTime(1_050), ..warrant(5, &t1, &b, Some(&root), 1_004) };
    store.record_warrant(&root, Some(&t1), &IssueGuard::default()).await.unwrap();
    for w in [&mid, &leaf, &revoked, &expired] {
        store.record_warrant(w, None, &IssueGuard::default()).await.unwrap();
    }
    store.revoke(&revocation(1, RevocationKind::Warrant, revoked.jti.as_str(), 1_010), UnixTime(1_010)).await.unwrap();

    // Task 2 ended (completed): its warrant is not live though no warrant was listed revoked.
    let t2 = task(2, &h, &b, 1_000);
    let ended = warrant(6, &t2, &b, None, 1_005);
    store.record_warrant(&ended, Some(&t2), &IssueGuard::default()).await.unwrap();
    store.revoke(&revocation(2, RevocationKind::Task, t2.id.as_str(), 1_020), UnixTime(1_020)).await.unwrap();

    // Task 3: recorded last but issued first; expires at 1500.
    let t3 = task(3, &h, &c, 900);
    let early = warrant(7, &t3, &c, None, 900);
    store.record_warrant(&early, Some(&t3), &IssueGuard::default()).await.unwrap();

    let got = store.live_warrants(UnixTime(1_100)).await.unwrap();
    assert_eq!(got, vec![live(&early), live(&root), live(&mid), live(&leaf)]);
    assert_eq!(got.iter().map(|w| w.depth).collect::<Vec<_>>(), vec![1, 1, 2, 3]);
    assert_eq!(got[2].parent.as_ref(), Some(&root.jti));
    assert_eq!(got[0].parent, None);

    // The expired warrant was live before its expiry; expiry is exclusive.
    assert_eq!(
        store.live_warrants(UnixTime(1_049)).await.unwrap(),
        vec![live(&early), live(&root), live(&mid), live(&leaf), live(&expired)]
    );
    assert_eq!(store.live_warrants(UnixTime(1_600)).await.unwrap(), vec![live(&mid), live(&leaf)]);
    assert!(store.live_warrants(UnixTime(10_000)).await.unwrap().is_empty());

    // Through one agent: the live warrants whose chain names it, by the same rules.
    let through = |agent: &Agent, at: i64| {
        let id = agent.id.clone();
        async move { store.live_warrants_through(&id, UnixTime(at)).await.unwrap() }
    };
    assert_eq!(through(&a, 1_100).await, vec![live(&root), live(&mid), live(&leaf)]);
    assert_eq!(through(&b, 1_100).await, vec![live(&mid), live(&leaf)]);
    assert_eq!(through(&c, 1_100).await, vec![live(&early), live(&leaf)]);
    assert_eq!(through(&b, 1_049).await, vec![live(&mid), live(&leaf), live(&expired)]);
    assert_eq!(through(&c, 1_600).await, vec![live(&leaf)]);
    assert!(through(&a, 10_000).await.is_empty());
    assert!(store.live_warrants_through(&AgentId::from_random([9; 12]), UnixTime(1_100)).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Policy versions
// ---------------------------------------------------------------------------------------

/// A policy set is stored once per fingerprint: saving the same fingerprint again
/// returns its id and keeps when it was first loaded; a new one gets a larger id. The
/// listing is oldest first with the text left empty; one version by id has its text.
async fn check_policy_versions(store: &dyn Store) {
    let version = |hash: &str, policies: &str, loaded_at: i64| PolicyVersionRecord {
        id: 0,
        hash: hash.into(),
        policies: policies.into(),
        schema: format!("{{\"schema\": \"{hash}\"}}"),
        loaded_at: UnixTime(loaded_at),
    };
    assert!(store.policy_versions().await.unwrap().is_empty());
    assert_eq!(store.policy_version(1).await.unwrap(), None);

    let v1 = version("sha256-one", "permit(principal, action, resource);", 100);
    let v2 = version("sha256-two", "forbid(principal, action, resource);", 200);
    let id1 = store.save_policy_version(&v1).await.unwrap();
    assert_eq!(store.save_policy_version(&v1).await.unwrap(), id1, "the same set keeps its id");
    // Loaded again later (say, after a restart): still the first version, first loaded at 100.
    assert_eq!(
        store.save_policy_version(&PolicyVersionRecord { loaded_at: UnixTime(150), ..v1.clone() }).await.unwrap(),
        id1
    );
    let id2 = store.save_policy_version(&v2).await.unwrap();
    assert!(id2 > id1, "a new set gets a larger id ({id2} after {id1})");
    assert_eq!(store.save_policy_version(&v1).await.unwrap(), id1, "an older set keeps its id after a newer one");

    let listed = |v: &PolicyVersionRecord, id: i64| PolicyVersionRecord {
        id,
        policies: String::new(),
        schema: String::new(),
        ..v.clone()
    };
    assert_eq!(
        store.policy_versions().await.unwrap(),
        vec![listed(&v1, id1), listed(&v2, id2)],
        "oldest first, no text"
    );

    assert_eq!(store.policy_version(id1).await.unwrap(), Some(PolicyVersionRecord { id: id1, ..v1 }));
    assert_eq!(store.policy_version(id2).await.unwrap(), Some(PolicyVersionRecord { id: id2, ..v2 }));
    assert_eq!(store.policy_version(id2 + 1).await.unwrap(), None);
    assert_eq!(store.policy_version(0).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Issuance racing revocation: a concurrent stress check
// ---------------------------------------------------------------------------------------

/// A deterministic pseudo-random sequence (xorshift64), one per worker.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u8) -> Self {
        XorShift((u64::from(seed) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A number below `n` (which is not 0).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n).unwrap()).unwrap()
    }
}

/// How many operations each racing worker performs.
const RACE_OPS: u16 = 150;
/// The time of every racing revocation; every racing warrant expires well after it.
const RACE_NOW: UnixTime = UnixTime(1_001);

/// What the racing workers share. They run interleaved on one task (`tokio::join!`), so
/// plain cells do; no borrow is held across an `.await`.
struct Race<'a> {
    store: &'a dyn Store,
    agents: Vec<Agent>,
    tasks: BTreeMap<TaskId, TaskRecord>,
    /// Every warrant recorded, with the watermark its issuance read (0 for the roots),
    /// the roots first.
    recorded: std::cell::RefCell<Vec<(WarrantRecord, u64)>>,
    /// Every warrant a revocation reported ending.
    ended: std::cell::RefCell<std::collections::BTreeSet<WarrantId>>,
    /// Every revocation by id, with the watermarks read just before it was requested and
    /// just after it returned: its sequence number is above the first, at most the second.
    revocations: std::cell::RefCell<BTreeMap<String, (u64, u64)>>,
    /// The agent revocations: the agent and the revocation's id.
    agent_revocations: std::cell::RefCell<Vec<(AgentId, String)>>,
    /// Issuances refused with `Revoked`.
    refused: std::cell::Cell<u32>,
    /// Workers (issuers and revokers) still running.
    running: std::cell::Cell<usize>,
}

/// Issues children of random recorded warrants (preferring ones not known revoked),
/// each for a random agent: reads the watermark, then the store (as the engine's checks
/// do), yields, and records.
async fn race_issuer(race: &Race<'_>, worker: u8) {
    let mut rng = XorShift::new(worker);
    for op in 0..RACE_OPS {
        let parent = {
            let recorded = race.recorded.borrow();
            let ended = race.ended.borrow();
            let mut pick = &recorded[rng.below(recorded.len())].0;
            for _ in 0..8 {
                if !ended.contains(&pick.jti) {
                    break;
                }
                pick = &recorded[rng.below(recorded.len())].0;
            }
            pick.clone()
        };
        let acting = &race.agents[rng.below(race.agents.len())];
        let mut jti = [0xA0 + worker; 12];
        jti[1..3].copy_from_slice(&op.to_be_bytes());
        let child = WarrantRecord {
            jti: WarrantId::from_random(jti),
            ..warrant(0, &race.tasks[&parent.task], acting, Some(&parent), 1_000)
        };
        let as_of = race.store.revocation_watermark().await.unwrap();
        // Revocations (and resumes) land between the watermark and the write.
        assert!(race.store.get_warrant(&parent.jti).await.unwrap().is_some());
        assert!(race.store.get_task(&parent.task).await.unwrap().is_some());
        assert!(race.store.get_human(&parent.human).await.unwrap().is_some());
        assert!(race.store.get_agent(&acting.id).await.unwrap().is_some());
        tokio::task::yield_now().await;
        match race.store.record_warrant(&child, None, &IssueGuard { as_of, session: None, assertion: None }).await {
            Ok(()) => race.recorded.borrow_mut().push((child, as_of)),
            Err(StoreError::Revoked(_)) => race.refused.set(race.refused.get() + 1),
            Err(e) => panic!("issuer {worker}: a child of {} for {}: {e:?}", parent.jti, acting.id),
        }
    }
    race.running.set(race.running.get() - 1);
}

/// Revokes random recorded non-root warrants and, every tenth operation, an agent other
/// than the roots' (which it resumes right after).
async fn race_revoker(race: &Race<'_>, worker: u8) {
    let mut rng = XorShift::new(100 + worker);
    let roots = race.tasks.len();
    for op in 0..RACE_OPS {
        let id = format!("rev_{worker}_{op}");
        let before = race.store.revocation_watermark().await.unwrap();
        let (kind, target) = if (op + 5 * u16::from(worker)) % 10 == 5 {
            let agent = race.agents[1 + rng.below(race.agents.len() - 1)].id.clone();
            race.agent_revocations.borrow_mut().push((agent.clone(), id.clone()));
            (RevocationKind::Agent, agent.as_str().to_owned())
        } else {
            let target = {
                let recorded = race.recorded.borrow();
                (recorded.len() > roots).then(|| recorded[roots + rng.below(recorded.len() - roots)].0.jti.clone())
            };
            let Some(target) = target else {
                tokio::task::yield_now().await;
                continue;
            };
            // The revocation's own check reads the store, as the API's does.
            assert!(race.store.get_warrant(&target).await.unwrap().is_some());
            (RevocationKind::Warrant, target.as_str().to_owned())
        };
        let r = RevocationRecord { id: id.clone(), kind, target: target.clone(), reason: "race".into(), at: RACE_NOW };
        let ended = race.store.revoke(&r, RACE_NOW).await.unwrap();
        let after = race.store.revocation_watermark().await.unwrap();
        assert!(after > before, "{id}: the watermark grows ({before} -> {after})");
        race.revocations.borrow_mut().insert(id, (before, after));
        if kind == RevocationKind::Warrant {
            assert!(ended.iter().any(|(jti, _)| jti.as_str() == target), "revoking {target} ends it");
        }
        race.ended.borrow_mut().extend(ended.into_iter().map(|(jti, _)| jti));
        if kind == RevocationKind::Agent {
            let agent = AgentId::parse(&target).unwrap();
            assert!(race.store.set_agent_status(&agent, AgentStatus::Active).await.unwrap());
        }
    }
    race.running.set(race.running.get() - 1);
}

/// Polls `stream` while the workers run, and once more after they finish, until the
/// outbox is drained; returns every event it saw, in the order it saw them.
async fn race_poller(race: &Race<'_>, stream: &str) -> Vec<warrant_store::ssf::OutboxRecord> {
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        // Read before polling: a read that starts after the last worker ends sees all.
        let finished = race.running.get() == 0;
        let page = race.store.outbox_after(stream, after, warrant_store::ssf::MAX_OUTBOX_READ).await.unwrap();
        for event in &page {
            assert!(event.seq > after, "the poller saw event {} after event {after}", event.seq);
            after = event.seq;
        }
        let drained = page.is_empty();
        seen.extend(page);
        if drained && finished {
            return seen;
        }
        if drained {
            tokio::task::yield_now().await;
        }
    }
}

/// Issuances racing revocations, for real: four issuers record children of random
/// recorded warrants (each with the watermark read before its checks and a yield), two
/// revokers revoke random warrants and every tenth time an agent (resumed right after),
/// and a poller reads the SSF outbox meanwhile. Afterwards:
/// - exactly the accepted issuances are recorded;
/// - (a) no warrant that is not revoked has a revoked ancestor, and no warrant was first
///   ended by a revocation that came after its parent's (a child recorded concurrently
///   with its parent's revocation was refused or ended with it);
/// - every warrant whose chain holds an agent revoked after the watermark its issuance
///   read is revoked, and by that revocation or an earlier one (it was refused, or
///   ended by it), even though the agent was resumed;
/// - the warrants the revocations reported ending are exactly the revoked ones;
/// - (b) the poller saw every event of the outbox, in strictly increasing order, none
///   skipped, and one event per revoked warrant.
async fn check_concurrent_issue_and_revoke_leave_nothing_alive_under_a_revocation(store: &dyn Store) {
    use std::collections::BTreeSet;
    use warrant_store::ssf::{DeliveryMethod, OutboxEvent, StreamRecord, MAX_OUTBOX_READ};

    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let agents: Vec<Agent> = (1..=4).map(|n| agent(n, &h, 200)).collect();
    for a in &agents {
        store.insert_agent(a).await.unwrap();
    }
    // Every root is the first agent's, which is never revoked: the forest never dies.
    let mut tasks = BTreeMap::new();
    let mut roots = Vec::new();
    for n in 1..=4 {
        let t = task(n, &h, &agents[0], 1_000);
        let root = warrant(n, &t, &agents[0], None, 1_000);
        store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
        tasks.insert(t.id.clone(), t);
        roots.push((root, 0));
    }
    let stream = StreamRecord {
        id: "race".into(),
        owner: "pep:1".into(),
        method: DeliveryMethod::Poll,
        endpoint: None,
        authorization: None,
        audience: "https://as/ssf/streams/race".into(),
        events: vec!["https://schemas.openid.net/secevent/caep/event-type/session-revoked".into()],
        description: None,
        cursor: 0,
        created_at: UnixTime(1_000),
    };
    assert_eq!(store.insert_stream(&stream).await.unwrap(), 0, "no event before the race");

    let race = Race {
        store,
        agents,
        tasks,
        recorded: std::cell::RefCell::new(roots),
        ended: Default::default(),
        revocations: Default::default(),
        agent_revocations: Default::default(),
        refused: Default::default(),
        running: std::cell::Cell::new(6),
    };
    let (.., seen) = tokio::join!(
        race_issuer(&race, 0),
        race_issuer(&race, 1),
        race_issuer(&race, 2),
        race_issuer(&race, 3),
        race_revoker(&race, 0),
        race_revoker(&race, 1),
        race_poller(&race, &stream.id),
    );
    let recorded: BTreeMap<WarrantId, (WarrantRecord, u64)> =
        race.recorded.take().into_iter().map(|(w, as_of)| (w.jti.clone(), (w, as_of))).collect();
    let revocations = race.revocations.take();
    let revoked: BTreeSet<WarrantId> = store.revoked_warrants(RACE_NOW).await.unwrap().into_iter().collect();

    // Exactly the accepted issuances were written: a refused one left nothing behind.
    let mut stored = BTreeSet::new();
    for t in race.tasks.keys() {
        stored.extend(store.task_warrants(t).await.unwrap().into_iter().map(|w| w.jti));
    }
    assert_eq!(stored, recorded.keys().cloned().collect::<BTreeSet<_>>(), "the recorded warrants");

    // The revocation that first ended each warrant, and whether it definitely came after
    // another (its watermark before was at or past the other's watermark after).
    let mut first = BTreeMap::new();
    for jti in recorded.keys() {
        let by = store.revocation_of(jti).await.unwrap().map(|r| r.id);
        assert_eq!(by.is_some(), revoked.contains(jti), "{jti}: revocation_of agrees with revoked_warrants");
        if let Some(by) = by {
            first.insert(jti.clone(), by);
        }
    }
    let later = |a: &str, b: &str| revocations[a].0 >= revocations[b].1;

    // (a) Nothing alive under a revoked ancestor, nor ended after its parent was.
    for (jti, (w, _)) in &recorded {
        if !revoked.contains(jti) {
            let mut at = w.parent.clone();
            while let Some(parent) = at {
                assert!(!revoked.contains(&parent), "{jti} is alive under its revoked ancestor {parent}");
                at = recorded[&parent].0.parent.clone();
            }
        }
        if let (Some(by), Some(parent_by)) = (first.get(jti), w.parent.as_ref().and_then(|p| first.get(p))) {
            assert!(!later(by, parent_by), "{jti} outlived its parent's revocation {parent_by}: first ended by {by}");
        }
    }
    // Nothing outlives an agent revocation recorded after its watermark: it was ended by
    // that revocation or an earlier one, or refused (the agent's resume changes nothing).
    for (agent, id) in race.agent_revocations.borrow().iter() {
        let before = revocations[id].0;
        for (jti, (w, as_of)) in &recorded {
            if w.chain.contains(agent) && *as_of <= before {
                let by = first.get(jti);
                assert!(
                    by.is_some_and(|by| !later(by, id)),
                    "{jti} (watermark {as_of}) outlived {id} revoking {agent} (watermark {before}): first ended by {by:?}"
                );
            }
        }
    }
    assert_eq!(*race.ended.borrow(), revoked, "the revocations reported ending exactly the revoked warrants");

    // (b) The poller saw the whole outbox, in order, nothing skipped, one event per
    // revoked warrant.
    let mut full = Vec::new();
    loop {
        let after = full.last().map_or(0, |e: &warrant_store::ssf::OutboxRecord| e.seq);
        let page = store.outbox_after(&stream.id, after, MAX_OUTBOX_READ).await.unwrap();
        if page.is_empty() {
            break;
        }
        full.extend(page);
    }
    assert_eq!(seen.len(), full.len(), "the poller saw as many events as the outbox holds");
    assert_eq!(seen, full, "the poller saw the outbox's events, in its order");
    let mut announced: BTreeMap<WarrantId, u32> = BTreeMap::new();
    for event in &seen {
        match &event.event {
            OutboxEvent::Revoked { jti, revocation, .. } => {
                assert_eq!(first.get(jti), Some(&revocation.id), "{jti} is announced with its first revocation");
                *announced.entry(jti.clone()).or_default() += 1;
            }
            other => panic!("an unexpected event: {other:?}"),
        }
    }
    if let Some((jti, n)) = announced.iter().find(|(_, n)| **n != 1) {
        panic!("{jti} was announced {n} times");
    }
    assert_eq!(announced.keys().cloned().collect::<BTreeSet<_>>(), revoked, "one event per revoked warrant");

    eprintln!(
        "race: recorded {} (4 roots), refused {}, revoked {}, alive {}, events {}, revocations {} ({} of agents)",
        recorded.len(),
        race.refused.get(),
        revoked.len(),
        recorded.len() - revoked.len(),
        seen.len(),
        revocations.len(),
        race.agent_revocations.borrow().len(),
    );
    assert!(recorded.len() > 4 && !revoked.is_empty(), "the race issued and revoked something");
}

// ---------------------------------------------------------------------------------------
// SQLite only: the file
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");

    let h = human(1, 100);
    let mut a = agent(1, &h, 200);
    a.labels = BTreeMap::from([("team".to_owned(), "ops".to_owned())]);
    a.expires_at = Some(UnixTime(99_999));
    let t = task(1, &h, &a, 1_000);
    let root = warrant(1, &t, &a, None, 1_000);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.insert_human(&h).await.unwrap();
        store.insert_agent(&a).await.unwrap();
        store.rotate_in(&key(1, 1_000)).await.unwrap();
        store.rotate_in(&key(2, 2_000)).await.unwrap();
        store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
        assert!(store.spend_assertion(&a.id, "jti-1", UnixTime(10_000), UnixTime(900)).await.unwrap());
    }

    // Reopening runs the migrations again: they must be idempotent, and keep the data.
    for _ in 0..2 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_humans().await.unwrap(), vec![h.clone()]);
        assert_eq!(store.list_agents(None).await.unwrap(), vec![a.clone()]);
        assert_eq!(
            store.signing_keys().await.unwrap().iter().map(key_view).collect::<Vec<_>>(),
            vec![
                ("kid-2".to_owned(), vec![2; 61], UnixTime(2_000), None),
                ("kid-1".to_owned(), vec![1; 61], UnixTime(1_000), Some(UnixTime(2_000))),
            ]
        );
        assert_eq!(store.get_task(&t.id).await.unwrap(), Some(t.clone()));
        assert_eq!(store.get_warrant(&root.jti).await.unwrap(), Some(root.clone()));
        assert_eq!(store.last_expiry_for_key(&root.kid).await.unwrap(), Some(root.expires_at));
        assert!(
            !store.spend_assertion(&a.id, "jti-1", UnixTime(10_000), UnixTime(950)).await.unwrap(),
            "a spent assertion stays spent across restarts"
        );
        // Still writable, with its constraints in force.
        assert_conflict(store.insert_human(&h).await, "duplicate after reopening");
        assert_conflict(store.insert_agent(&agent(2, &human(9, 1), 300)).await, "foreign keys on after reopening");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    store.rotate_in(&key(1, 1_000)).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "the database holds signing keys");

    // The write-ahead log holds the same secrets until checkpointed.
    for side in ["warrant.db-wal", "warrant.db-shm"] {
        let side = dir.path().join(side);
        if side.exists() {
            assert_eq!(mode(&side), 0o600, "{}", side.display());
        }
    }
    drop(store);

    // A file that was created with laxer permissions is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);
}

/// Whether `needle` occurs in the database file or its write-ahead log.
fn file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    ["warrant.db", "warrant.db-wal"]
        .iter()
        .any(|name| std::fs::read(dir.join(name)).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
}

/// Turns a current database back into the shape written before keys were sealed (schema
/// version 5, `signing_keys (kid, seed, created_at, retired_at)`) and stores `seed` in
/// the clear under `kid`, the way the old code did.
fn downgrade_to_plaintext_keys(path: &std::path::Path, kid: &str, seed: &[u8; 32], created_at: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DELETE FROM signing_keys;").unwrap();
    undo_migrations_to(&conn, 6);
    conn.execute(
        "INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)",
        rusqlite::params![kid, seed.as_slice(), created_at],
    )
    .unwrap();
}

#[tokio::test]
async fn sqlite_migrates_a_plaintext_key_and_sealing_erases_it_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    drop(SqliteStore::open(&path).unwrap());
    let seed = [0x5a, 0x17, 0xc3, 0x99, 0x01, 0xfe, 0x42, 0x7d].repeat(4);
    let seed: [u8; 32] = seed.try_into().unwrap();
    downgrade_to_plaintext_keys(&path, "kid-old", &seed, 1_000);
    assert!(file_holds(dir.path(), &seed), "the old shape keeps the seed in the clear");

    let store = SqliteStore::open(&path).unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].kid.as_str(), keys[0].purpose, keys[0].retired_at), ("kid-old", KeyPurpose::Warrant, None));
    match &keys[0].material {
        KeyMaterial::Plaintext(read) => assert_eq!(**read, seed),
        KeyMaterial::Sealed(_) => panic!("the old row is read as plaintext"),
    }

    let sealed = [("kid-old".to_owned(), vec![0xee; 61])];
    assert_eq!(store.seal_keys(&sealed).await.unwrap(), 1);
    assert_eq!(store.seal_keys(&sealed).await.unwrap(), 0, "sealed once");
    let keys = store.signing_keys().await.unwrap();
    assert!(matches!(&keys[0].material, KeyMaterial::Sealed(s) if s == &vec![0xee; 61]));
    assert!(!file_holds(dir.path(), &seed), "the plaintext seed is overwritten in the file and its log");
    drop(store);
    assert!(!file_holds(dir.path(), &seed));
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    match SqliteStore::open(&path) {
        Err(StoreError::Schema(msg)) => assert!(msg.contains("999"), "{msg}"),
        other => panic!("expected a schema refusal for a newer schema, got {other:?}"),
    }
}

/// Every unexpired warrant whose chain contains an agent, wherever it stands in the chain.
async fn check_live_warrants_with_agent(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let (a, b, c) = (agent(1, &h, 100), agent(2, &h, 100), agent(3, &h, 100));
    for x in [&a, &b, &c] {
        store.insert_agent(x).await.unwrap();
    }
    let t = task(1, &h, &a, 1000);
    let root = warrant(1, &t, &a, None, 1000);
    let mid = warrant(2, &t, &b, Some(&root), 1001);
    let leaf = warrant(3, &t, &c, Some(&mid), 1002);
    let other = warrant(4, &t, &c, Some(&root), 1003);
    store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
    for w in [&mid, &leaf, &other] {
        store.record_warrant(w, None, &IssueGuard::default()).await.unwrap();
    }
    let jtis = |ws: Vec<WarrantRecord>| ws.into_iter().map(|w| w.jti).collect::<Vec<_>>();
    let now = UnixTime(1100);
    assert_eq!(
        jtis(store.live_warrants_with_agent(&b.id, now).await.unwrap()),
        vec![mid.jti.clone(), leaf.jti.clone()]
    );
    assert_eq!(
        jtis(store.live_warrants_with_agent(&a.id, now).await.unwrap()),
        vec![root.jti.clone(), mid.jti.clone(), leaf.jti.clone(), other.jti.clone()]
    );
    assert_eq!(
        jtis(store.live_warrants_with_agent(&c.id, now).await.unwrap()),
        vec![leaf.jti.clone(), other.jti.clone()]
    );
    // Expired warrants are not live.
    assert!(store.live_warrants_with_agent(&a.id, UnixTime(5000)).await.unwrap().is_empty());
    assert!(store.live_warrants_with_agent(&AgentId::from_random([9; 12]), now).await.unwrap().is_empty());
}

/// Migration 3 indexes the agents of warrants recorded before it existed.
#[tokio::test]
async fn migration_backfills_the_agent_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    check_live_warrants_with_agent_setup(&store).await;
    drop(store);
    // Back to the schema before migration 3, as an older build left it.
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 2);
    drop(db);
    let store = SqliteStore::open(&path).unwrap();
    let live = warrant_store::RevocationStore::live_warrants_with_agent(
        &store,
        &AgentId::from_random([2; 12]),
        UnixTime(1100),
    )
    .await
    .unwrap();
    assert_eq!(live.len(), 2, "the middle agent's warrant and its child");
}

async fn check_live_warrants_with_agent_setup(store: &dyn Store) {
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    let (a, b) = (agent(1, &h, 100), agent(2, &h, 100));
    store.insert_agent(&a).await.unwrap();
    store.insert_agent(&b).await.unwrap();
    let t = task(1, &h, &a, 1000);
    let root = warrant(1, &t, &a, None, 1000);
    let mid = warrant(2, &t, &b, Some(&root), 1001);
    let leaf = warrant(3, &t, &a, Some(&mid), 1002);
    store.record_warrant(&root, Some(&t), &IssueGuard::default()).await.unwrap();
    store.record_warrant(&mid, None, &IssueGuard::default()).await.unwrap();
    store.record_warrant(&leaf, None, &IssueGuard::default()).await.unwrap();
}

/// Migration 4 adds warrants' budgets (none for warrants recorded before it: `NULL`) and
/// the tables of spends, guard states and approvals.
#[tokio::test]
async fn migration_adds_budgets_and_guard_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    let (t, root) = started_task(&store, 1).await;
    drop(store);
    // Back to the schema before migration 4, as an older build left it.
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 3);
    drop(db);

    let store = SqliteStore::open(&path).unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, current_schema_version(), "migration 4 and every later one ran");
    for (kind, name) in [
        ("table", "budget_spend"),
        ("table", "agent_guard"),
        ("table", "approvals"),
        ("index", "warrants_budget"),
        ("index", "budget_spend_exp"),
        ("index", "approvals_status"),
        ("index", "approvals_agent"),
    ] {
        assert_eq!(schema_objects(&db, kind, name), 1, "{kind} {name}");
    }
    let raw_budget = |jti: &WarrantId| {
        db.query_row("SELECT budget FROM warrants WHERE jti = ?1", [jti.as_str()], |r| r.get::<_, Option<String>>(0))
            .unwrap()
    };
    // The warrant recorded before has no budget.
    assert_eq!(raw_budget(&root.jti), None);
    assert_eq!(store.get_warrant(&root.jti).await.unwrap(), Some(root.clone()));
    assert!(store.live_budgets(UnixTime(1_100)).await.unwrap().is_empty());

    // The new schema is in use: a budget is stored as a JSON object, none as NULL.
    let a = store.get_agent(&root.agent).await.unwrap().unwrap();
    let mut child = warrant(2, &t, &a, Some(&root), 1_010);
    child.budget = budget(&[("emails", 3)]);
    let plain = warrant(3, &t, &a, Some(&root), 1_020);
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    store.record_warrant(&plain, None, &IssueGuard::default()).await.unwrap();
    assert_eq!(raw_budget(&child.jti).as_deref(), Some(r#"{"emails":3}"#));
    assert_eq!(raw_budget(&plain.jti), None);
    assert_eq!(
        store.live_budgets(UnixTime(1_100)).await.unwrap(),
        vec![(child.jti.clone(), Some(root.jti.clone()), child.budget.clone(), child.expires_at)]
    );
    store.save_guard_states(&[(a.id.clone(), "{}".into(), UnixTime(1))]).await.unwrap();
    store.insert_approval(&approval(1, &a.id, ApprovalStatus::Pending, 1)).await.unwrap();
    store.append_audit(audit_rows(1, 1, GENESIS, |_| vec![charge(&child, "emails", 1)])).await.unwrap();
    assert_eq!(spends(&store, 1_100).await, BTreeMap::from([spend(&child, "emails", 1)]));
}

/// How many objects of `kind` (`table`, `index`) named `name` the database's schema holds.
fn schema_objects(db: &rusqlite::Connection, kind: &str, name: &str) -> i64 {
    db.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = ?1 AND name = ?2", [kind, name], |r| r.get(0))
        .unwrap()
}

/// A database's schema as comparable rows: every table's columns (name, type, not null,
/// default, key) and indexes (name, unique, how made, partial), and every index as the
/// statement that made it, by name.
fn schema_shape(db: &rusqlite::Connection) -> Vec<String> {
    let strings = |sql: &str, arg: &str| -> Vec<String> {
        db.prepare(sql).unwrap().query_map([arg], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let mut shape = strings(
        "SELECT 'index ' || name || ': ' || sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         AND name != ?1",
        "",
    );
    for table in strings("SELECT name FROM sqlite_master WHERE type = 'table' AND name != ?1", "sqlite_sequence") {
        let columns = strings(
            "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || COALESCE(dflt_value, '-') || ' ' || pk \
             FROM pragma_table_info(?1)",
            &table,
        );
        let indexes = strings(
            "SELECT name || ' ' || \"unique\" || ' ' || origin || ' ' || partial FROM pragma_index_list(?1)",
            &table,
        );
        shape.push(format!("table {table}: {} | {}", columns.join(", "), indexes.join(", ")));
    }
    shape.sort();
    shape
}

/// Every migration has an undo (`support/undo.rs`), and it is faithful: a new database
/// taken back to a version has the same tables, columns and indexes as one an older build
/// made (only the migrations up to that version run), and opened again (so migrated
/// forward from there) the same as a new one. A migration added without its undo, or an
/// undo that leaves something behind or takes too much away, fails here, also when the
/// migration would step over what its undo left (`IF NOT EXISTS`).
#[test]
fn every_migration_is_undone_and_redone_to_the_same_schema() {
    let current = usize::try_from(current_schema_version()).unwrap();
    assert_eq!(undo::UNDO.len(), current, "one entry in support/undo.rs per migration");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    let redone = dir.path().join("redone.db");
    drop(SqliteStore::open(&fresh).unwrap());
    drop(SqliteStore::open(&redone).unwrap());
    let expected = schema_shape(&rusqlite::Connection::open(&fresh).unwrap());
    for version in (2..current).rev() {
        let db = rusqlite::Connection::open(&redone).unwrap();
        undo_migrations_to(&db, version);
        assert_ne!(schema_shape(&db), expected, "undoing down to version {version} changed nothing");
        assert_eq!(schema_shape(&db), schema_shape(&built_by_migrations(version)), "undone to version {version}");
        drop(db);
        drop(SqliteStore::open(&redone).unwrap());
        let db = rusqlite::Connection::open(&redone).unwrap();
        assert_eq!(schema_shape(&db), expected, "undone to version {version} and migrated again");
    }
}

/// An in-memory database with the schema an older build made: the first `version`
/// migration files of `migrations/sqlite/` run in order.
fn built_by_migrations(version: usize) -> rusqlite::Connection {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    for file in &files[..version] {
        db.execute_batch(&std::fs::read_to_string(file).unwrap()).unwrap();
    }
    db
}

/// The schema version a new database gets: every migration of this build.
fn current_schema_version() -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    drop(SqliteStore::open(&path).unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

/// The migration that gives humans an identity at a provider gives those registered
/// before it none, and they read back unchanged.
#[tokio::test]
async fn migration_gives_existing_humans_no_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let h = human(1, 100);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.insert_human(&h).await.unwrap();
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 10);
    drop(db);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_human(&h.id).await.unwrap(), Some(h));
}

/// A database file whose audit log holds records 1 to 9, every third a deny, taken back
/// to schema `version`.
async fn audit_log_of_version(version: usize) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    let deny_every_third = |seq: u64| if seq.is_multiple_of(3) { "deny" } else { "allow" };
    store.append_audit(deciding_rows(1, 9, GENESIS, |_| Vec::new(), deny_every_third)).await.unwrap();
    drop(store);
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, version);
    (dir, path)
}

/// Migration 17 indexes the audit log by decision (and drops the index by time that no read
/// used): the records written before it are found by their decision through the new index.
#[tokio::test]
async fn migration_indexes_audit_records_by_decision() {
    let (_dir, path) = audit_log_of_version(16).await;

    let store = SqliteStore::open(&path).unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, current_schema_version());
    assert_eq!((schema_objects(&db, "index", "audit_decision"), schema_objects(&db, "index", "audit_at")), (1, 0));
    let denies = AuditFilter { decision: Some("deny".into()), limit: 100, ..AuditFilter::default() };
    let seqs: Vec<u64> = store.query_audit(&denies).await.unwrap().iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, [3, 6, 9]);
}

/// Sets a database's schema version, nothing else, so a read-only open sees that version.
fn stamp_schema_version(path: &std::path::Path, version: i64) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.pragma_update(None, "user_version", version).unwrap();
}

/// An evidence copy taken before an upgrade, on read-only media where it cannot be
/// migrated: a database behind this build only by migrations that change indexes (16 and
/// 17) is read without writing, its records and filters as they were. One behind by a
/// migration that changes a table, or written by a newer build, is refused with an error
/// that says which versions this build reads and what to do.
#[tokio::test]
async fn a_read_only_open_reads_a_database_behind_only_by_index_migrations() {
    let (_dir, path) = audit_log_of_version(16).await;
    for version in [16, 15] {
        undo_migrations_to(&rusqlite::Connection::open(&path).unwrap(), version);
        let before = std::fs::read(&path).unwrap();
        let store = SqliteStore::open_read_only(&path).unwrap();
        let all = AuditFilter { limit: 100, ..AuditFilter::default() };
        let seqs: Vec<u64> = store.query_audit(&all).await.unwrap().iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<u64>>(), "version {version}");
        let denies = AuditFilter { decision: Some("deny".into()), limit: 100, ..AuditFilter::default() };
        let seqs: Vec<u64> = store.query_audit(&denies).await.unwrap().iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, [3, 6, 9], "version {version}");
        drop(store);
        assert!(std::fs::read(&path).unwrap() == before, "a read-only open changed the version {version} file");
    }

    let newer = current_schema_version() + 1;
    for (version, says) in [(14, "`warrant serve`"), (0, "no Warrant schema"), (newer, "a newer release")] {
        stamp_schema_version(&path, version);
        let Err(err) = SqliteStore::open_read_only(&path) else { panic!("a version {version} database was read") };
        assert!(matches!(err, StoreError::Schema(_)), "a version mismatch is not damage: {err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("schema version {version}")), "{text}");
        assert!(text.contains(&format!("versions 15 to {}", current_schema_version())), "{text}");
        assert!(text.contains(says), "{text}");
    }
}

/// The migration that gives humans roles gives the humans registered before it none.
#[tokio::test]
async fn migration_gives_existing_humans_no_roles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    let h = human(1, 100);
    store.insert_human(&h).await.unwrap();
    drop(store);
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 8);
    drop(db);

    let store = SqliteStore::open(&path).unwrap();
    let got = store.get_human(&h.id).await.unwrap().unwrap();
    assert!(got.roles.is_empty());
    assert_eq!(got, h);
    let editor: std::collections::BTreeSet<String> = ["editor".to_owned()].into_iter().collect();
    assert!(store.set_human_roles(&h.id, &editor).await.unwrap());
    assert_eq!(store.get_human(&h.id).await.unwrap().unwrap().roles, editor);
}

/// Migration 5 adds the governance tables; agents registered before it date their key
/// from their registration.
#[tokio::test]
async fn migration_adds_governance_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    let (_, root) = started_task(&store, 1).await;
    drop(store);
    // Back to the schema before migration 5, as an older build left it.
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 4);
    drop(db);

    let store = SqliteStore::open(&path).unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, current_schema_version());
    for (kind, name) in [
        ("table", "agent_keys"),
        ("table", "findings"),
        ("table", "agent_usage"),
        ("table", "attestations"),
        ("index", "findings_status"),
        ("index", "findings_subject"),
        ("index", "findings_kind"),
        ("index", "attestations_agent"),
    ] {
        assert_eq!(schema_objects(&db, kind, name), 1, "{kind} {name}");
    }
    drop(db);

    let a = store.get_agent(&root.agent).await.unwrap().unwrap();
    assert_eq!(store.agent_key_times().await.unwrap(), vec![(a.id.clone(), a.created_at)]);
    assert_eq!(store.live_warrants(UnixTime(1_100)).await.unwrap(), vec![live(&root)]);
    assert!(store.set_agent_key(&a.id, &jwk(), UnixTime(2_000)).await.unwrap());
    assert_eq!(store.agent_key_times().await.unwrap(), vec![(a.id.clone(), UnixTime(2_000))]);
    let f = finding(1, FindingKind::IdleAgent, a.id.as_str(), FindingStatus::Open, 1_000);
    store.save_findings(std::slice::from_ref(&f)).await.unwrap();
    assert_eq!(store.get_finding(&f.id).await.unwrap(), Some(f));
}

/// A finding whose columns disagree with its stored body is reported corrupt, not
/// returned.
#[tokio::test]
async fn sqlite_finding_body_must_match_its_columns() {
    let (dir, store) = open_sqlite().await.expect("SQLite is never skipped");
    let f = finding(1, FindingKind::IdleAgent, "agt_x", FindingStatus::Open, 100);
    store.save_findings(std::slice::from_ref(&f)).await.unwrap();
    {
        let conn = store_conn(&dir);
        conn.execute("UPDATE findings SET status = 'resolved' WHERE id = ?1", [&f.id]).unwrap();
    }
    match store.get_finding(&f.id).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("fnd_001"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(store.active_findings().await, Ok(v) if v.is_empty()), "filtered on the column");
    assert!(matches!(store.list_findings(&FindingFilter::default()).await, Err(StoreError::Corrupt(_))));
}

fn store_conn(dir: &TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("warrant.db")).unwrap()
}

// ---------------------------------------------------------------------------------------
// Issuance against revocation: a model-based property test
// ---------------------------------------------------------------------------------------
//
// An issuance reads the revocation watermark, runs its checks, and records its warrant
// later; revocations land in between. Random interleavings of those steps with warrant,
// agent, task and human revocations and agent resumes run against the store and against
// a model that knows nothing of SQL: who is revoked, which agent is suspended, which
// revocations happened after an issuance began. After every step the store must agree
// with the model on whether a warrant was recorded and on exactly which warrants are
// revoked: no warrant is ever left alive under a revoked ancestor, task, agent or human.

mod issuance_model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use warrant_store::{Issuance, RevocationStore as _};

    const AGENTS: u8 = 3;
    const SLOTS: usize = 3;

    #[derive(Debug, Clone)]
    enum Op {
        /// An issuance starts: reads the watermark, picks a parent (an index into the
        /// recorded warrants) or starts a new task (`root`), and the acting agent.
        Begin {
            slot: usize,
            parent: usize,
            root: bool,
            agent: u8,
        },
        /// The issuance in `slot` records its warrant: with `record_warrant`, or with its
        /// audit record (`audited`: an audit batch of one row carrying it).
        Commit {
            slot: usize,
            audited: bool,
        },
        RevokeWarrant {
            idx: usize,
        },
        RevokeAgent {
            agent: u8,
        },
        ResumeAgent {
            agent: u8,
        },
        RevokeTask {
            idx: usize,
        },
        RevokeHuman,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..SLOTS, 0..16usize, proptest::bool::weighted(0.2), 0..AGENTS)
                .prop_map(|(slot, parent, root, agent)| Op::Begin { slot, parent, root, agent }),
            6 => (0..SLOTS, proptest::bool::ANY).prop_map(|(slot, audited)| Op::Commit { slot, audited }),
            2 => (0..16usize).prop_map(|idx| Op::RevokeWarrant { idx }),
            2 => (0..AGENTS).prop_map(|agent| Op::RevokeAgent { agent }),
            3 => (0..AGENTS).prop_map(|agent| Op::ResumeAgent { agent }),
            1 => (0..16usize).prop_map(|idx| Op::RevokeTask { idx }),
            1 => Just(Op::RevokeHuman),
        ]
    }

    /// A warrant as the model sees it.
    struct ModelWarrant {
        record: WarrantRecord,
        parent: Option<usize>,
        task: usize,
        /// The agents of its chain, root first.
        chain: Vec<u8>,
        revoked: bool,
    }

    /// An issuance under way.
    struct Pending {
        as_of: u64,
        parent: Option<usize>,
        agent: u8,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Named {
        Warrant,
        Agent(u8),
        Task(usize),
        Human,
    }

    #[derive(Default)]
    struct Model {
        warrants: Vec<ModelWarrant>,
        tasks: Vec<(TaskRecord, bool)>,
        suspended: BTreeSet<u8>,
        /// Every revocation in order; the n-th has sequence number n (from 1).
        revocations: Vec<Named>,
    }

    impl Model {
        fn in_subtree(&self, idx: usize, root: usize) -> bool {
            let mut at = Some(idx);
            while let Some(i) = at {
                if i == root {
                    return true;
                }
                at = self.warrants[i].parent;
            }
            false
        }

        fn revoke_where(&mut self, hit: impl Fn(&Model, usize) -> bool) -> BTreeSet<WarrantId> {
            let hits: Vec<usize> = (0..self.warrants.len()).filter(|&i| hit(self, i)).collect();
            hits.iter()
                .map(|&i| {
                    self.warrants[i].revoked = true;
                    self.warrants[i].record.jti.clone()
                })
                .collect()
        }

        fn revoked(&self) -> BTreeSet<WarrantId> {
            self.warrants.iter().filter(|w| w.revoked).map(|w| w.record.jti.clone()).collect()
        }

        /// Whether the model refuses the issuance `p` with `chain`, in task `task`.
        fn refuses(&self, p: &Pending, chain: &[u8], task: Option<usize>) -> bool {
            task.is_some_and(|t| self.tasks[t].1)
                || p.parent.is_some_and(|i| self.warrants[i].revoked)
                || chain.iter().any(|a| self.suspended.contains(a))
                || self.revocations.iter().enumerate().any(|(n, named)| {
                    n as u64 + 1 > p.as_of
                        && match named {
                            Named::Agent(a) => chain.contains(a),
                            Named::Human => true,
                            Named::Task(t) => Some(*t) == task,
                            Named::Warrant => false,
                        }
                })
        }
    }

    fn ids(ended: Vec<(WarrantId, UnixTime)>) -> BTreeSet<WarrantId> {
        ended.into_iter().map(|(j, _)| j).collect()
    }

    async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let store = SqliteStore::open_in_memory().unwrap();
        let h = human(1, 100);
        store.insert_human(&h).await.unwrap();
        let agents: Vec<Agent> = (0..AGENTS).map(|n| agent(10 + n, &h, 200)).collect();
        for a in &agents {
            store.insert_agent(a).await.unwrap();
        }
        let mut model = Model::default();
        let mut audit_records = 0u64;
        let mut pending: Vec<Option<Pending>> = (0..SLOTS).map(|_| None).collect();
        let now = UnixTime(1_001);
        let mut next_id: u32 = 0;
        let mut rev = |kind: RevocationKind, target: &str| {
            next_id += 1;
            RevocationRecord {
                id: format!("rev_{next_id}"),
                kind,
                target: target.to_owned(),
                reason: "model".into(),
                at: now,
            }
        };
        for op in ops {
            match op.clone() {
                Op::Begin { slot, parent, root, agent } => {
                    let as_of = store.revocation_watermark().await.unwrap();
                    prop_assert_eq!(as_of, model.revocations.len() as u64, "the watermark counts revocations");
                    let parent = (!root && !model.warrants.is_empty()).then(|| parent % model.warrants.len());
                    pending[slot] = Some(Pending { as_of, parent, agent });
                }
                Op::Commit { slot, audited } => {
                    let Some(p) = pending[slot].take() else { continue };
                    let n = u8::try_from(model.warrants.len() + 1).unwrap();
                    let acting = &agents[usize::from(p.agent)];
                    let (record, new_task, task, mut chain) = match p.parent {
                        Some(i) => {
                            let parent = &model.warrants[i];
                            let task = &model.tasks[parent.task].0;
                            (
                                warrant(n, task, acting, Some(&parent.record), 1_001),
                                None,
                                Some(parent.task),
                                parent.chain.clone(),
                            )
                        }
                        None => {
                            let t = task(n, &h, acting, 1_001);
                            (warrant(n, &t, acting, None, 1_001), Some(t), None, Vec::new())
                        }
                    };
                    chain.push(p.agent);
                    let refused = model.refuses(&p, &chain, task);
                    let guard = IssueGuard { as_of: p.as_of, session: None, assertion: None };
                    let got = if audited {
                        let mut row = audit_rows(1, 1, GENESIS, |_| Vec::new()).remove(0);
                        let issuance = Issuance { warrant: record.clone(), new_task: new_task.clone(), guard };
                        row.issuance = Some(Box::new(issuance));
                        match store.append_audit_at_head(vec![row]).await {
                            Ok(mut appended) => {
                                appended.refused.pop().map_or(Ok(()), |(_, r)| Err(StoreError::from(r)))
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        store.record_warrant(&record, new_task.as_ref(), &guard).await
                    };
                    match (&got, refused) {
                        (Ok(()), false) => {
                            audit_records += u64::from(audited);
                            let task = match (task, new_task) {
                                (Some(t), _) => t,
                                (None, Some(t)) => {
                                    model.tasks.push((t, false));
                                    model.tasks.len() - 1
                                }
                                (None, None) => unreachable!(),
                            };
                            model.warrants.push(ModelWarrant { record, parent: p.parent, task, chain, revoked: false });
                        }
                        (Err(StoreError::Revoked(_)), true) => {}
                        _ => prop_assert!(false, "the model refused: {refused}; the store answered {got:?}"),
                    }
                }
                Op::RevokeWarrant { idx } => {
                    if model.warrants.is_empty() {
                        continue;
                    }
                    let idx = idx % model.warrants.len();
                    let r = rev(RevocationKind::Warrant, model.warrants[idx].record.jti.as_str());
                    let ended = ids(store.revoke(&r, now).await.unwrap());
                    prop_assert_eq!(ended, model.revoke_where(|m, i| m.in_subtree(i, idx)));
                    model.revocations.push(Named::Warrant);
                }
                Op::RevokeAgent { agent } => {
                    let r = rev(RevocationKind::Agent, agents[usize::from(agent)].id.as_str());
                    let ended = ids(store.revoke(&r, now).await.unwrap());
                    prop_assert_eq!(ended, model.revoke_where(|m, i| m.warrants[i].chain.contains(&agent)));
                    model.suspended.insert(agent);
                    model.revocations.push(Named::Agent(agent));
                    let stored = store.get_agent(&agents[usize::from(agent)].id).await.unwrap().unwrap();
                    prop_assert_eq!(stored.status, AgentStatus::Suspended);
                }
                Op::ResumeAgent { agent } => {
                    store.set_agent_status(&agents[usize::from(agent)].id, AgentStatus::Active).await.unwrap();
                    model.suspended.remove(&agent);
                }
                Op::RevokeTask { idx } => {
                    if model.tasks.is_empty() {
                        continue;
                    }
                    let idx = idx % model.tasks.len();
                    let r = rev(RevocationKind::Task, model.tasks[idx].0.id.as_str());
                    let ended = ids(store.revoke(&r, now).await.unwrap());
                    prop_assert_eq!(ended, model.revoke_where(|m, i| m.warrants[i].task == idx));
                    model.tasks[idx].1 = true;
                    model.revocations.push(Named::Task(idx));
                }
                Op::RevokeHuman => {
                    let r = rev(RevocationKind::Human, h.id.as_str());
                    let ended = ids(store.revoke(&r, now).await.unwrap());
                    prop_assert_eq!(ended, model.revoke_where(|_, _| true));
                    model.revocations.push(Named::Human);
                }
            }
            let stored: BTreeSet<WarrantId> = store.revoked_warrants(now).await.unwrap().into_iter().collect();
            prop_assert_eq!(&stored, &model.revoked(), "the revoked set after {:?}", op);
            // The invariant itself: nothing alive rests on anything revoked.
            for (i, w) in model.warrants.iter().enumerate() {
                if !w.revoked {
                    prop_assert!(!model.tasks[w.task].1, "warrant {} of an ended task is alive", i);
                    prop_assert!(
                        !w.parent.is_some_and(|p| model.warrants[p].revoked),
                        "warrant {} is alive under a revoked parent",
                        i
                    );
                }
            }
        }
        // One audit record for each issuance recorded with one, none for a refused one.
        let head = store.audit_head().await.unwrap().map_or(0, |(seq, _)| seq);
        prop_assert_eq!(head, audit_records);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn no_warrant_outlives_what_it_rests_on(ops in proptest::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run(ops))?;
        }
    }
}

async fn check_warrant_claims_round_trip(store: &dyn Store) {
    let (t, plain) = started_task(store, 1).await;
    assert_eq!(store.get_warrant(&plain.jti).await.unwrap().unwrap().claims, None, "no claims read back as none");
    let agent = plain.agent.clone();
    let jti = WarrantId::from_random([9; 12]);
    let claims = WarrantClaims {
        iss: "https://warrant.example".into(),
        sub: t.human.as_str().to_owned(),
        aud: "https://api.example".into(),
        exp: UnixTime(1_600),
        iat: UnixTime(1_000),
        nbf: UnixTime(1_000),
        jti: jti.clone(),
        client_id: agent.clone(),
        scope: "crm.read".into(),
        act: Actor { sub: agent.clone(), act: None },
        task: TaskClaim { id: t.id.clone(), purpose: "p".into(), human: t.human.clone() },
        mode: Mode::Delegated,
        owner: t.human.clone(),
        parent: Some(plain.jti.clone()),
        cnf: None,
        budget: BTreeMap::new(),
    };
    let w = WarrantRecord {
        jti: jti.clone(),
        parent: Some(plain.jti.clone()),
        issued_at: UnixTime(1_000),
        expires_at: UnixTime(1_600),
        claims: Some(claims.clone()),
        ..plain.clone()
    };
    store.record_warrant(&w, None, &IssueGuard::default()).await.unwrap();
    let read = store.get_warrant(&jti).await.unwrap().unwrap();
    assert_eq!(read.claims, Some(claims), "the issued claims read back whole");
    assert_eq!(store.child_warrants(&plain.jti).await.unwrap(), vec![read]);
}

async fn check_console_sessions_and_logins(store: &dyn Store) {
    use warrant_store::{ConsoleLoginRecord, ConsoleSessionRecord};
    let session = |n: u8, principal: warrant_core::Principal| ConsoleSessionRecord {
        digest: [n; 32],
        principal,
        csrf: format!("csrf-{n}"),
        created_at: UnixTime(1_000),
        expires_at: UnixTime(5_000),
        ended_at: None,
    };
    let operator = warrant_core::Principal::Operator {
        issuer: "https://idp.example".into(),
        subject: "olga".into(),
        name: "Olga".into(),
        role: warrant_core::Role::Viewer,
    };
    let a = session(1, operator);
    let b = session(2, warrant_core::Principal::AdminToken);
    store.insert_console_session(&a).await.unwrap();
    store.insert_console_session(&b).await.unwrap();
    assert!(matches!(store.insert_console_session(&a).await, Err(StoreError::Conflict(_))), "a digest is unique");
    assert_eq!(store.console_session(&[1; 32]).await.unwrap(), Some(a.clone()), "read back whole");
    assert_eq!(store.console_session(&[9; 32]).await.unwrap(), None);
    assert!(a.live_at(UnixTime(4_999)) && !a.live_at(UnixTime(5_000)), "expires at expires_at");

    assert!(store.end_console_session(&[1; 32], UnixTime(2_000)).await.unwrap());
    assert!(!store.end_console_session(&[1; 32], UnixTime(2_001)).await.unwrap(), "signed out once");
    let ended = store.console_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(UnixTime(2_000)));
    assert!(!ended.live_at(UnixTime(2_500)));
    // A day after both ended, signing anything out deletes them.
    assert!(!store.end_console_session(&[7; 32], UnixTime(5_000 + 86_401)).await.unwrap());
    assert_eq!(store.console_session(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.console_session(&[2; 32]).await.unwrap(), None);

    let login = |n: u8, expires: i64| ConsoleLoginRecord {
        state_digest: [n; 32],
        issuer: "https://idp.example".into(),
        verifier: format!("verifier-{n}"),
        nonce: format!("nonce-{n}"),
        expires_at: UnixTime(expires),
    };
    store.insert_console_login(&login(1, 600), UnixTime(0)).await.unwrap();
    store.insert_console_login(&login(2, 600), UnixTime(0)).await.unwrap();
    assert_eq!(store.take_console_login(&[1; 32], UnixTime(10)).await.unwrap(), Some(login(1, 600)));
    assert_eq!(store.take_console_login(&[1; 32], UnixTime(10)).await.unwrap(), None, "used once");
    assert_eq!(store.take_console_login(&[2; 32], UnixTime(600)).await.unwrap(), None, "expired");
    assert_eq!(store.take_console_login(&[2; 32], UnixTime(10)).await.unwrap(), None, "taken even when expired");
    store.insert_console_login(&login(3, 100), UnixTime(0)).await.unwrap();
    store.insert_console_login(&login(4, 900), UnixTime(200)).await.unwrap();
    assert_eq!(
        store.take_console_login(&[3; 32], UnixTime(50)).await.unwrap(),
        None,
        "expired ones are deleted on insert"
    );
}

/// Racing callbacks with one `state` sign in once; racing sign-outs end a session once.
async fn check_a_console_sign_in_and_a_sign_out_each_happen_once_under_concurrency(store: &dyn Store) {
    use warrant_store::{ConsoleLoginRecord, ConsoleSessionRecord};
    for round in 1..=25u8 {
        let digest = [round; 32];
        let login = ConsoleLoginRecord {
            state_digest: digest,
            issuer: "https://idp.example".into(),
            verifier: "v".into(),
            nonce: "n".into(),
            expires_at: UnixTime(600),
        };
        store.insert_console_login(&login, UnixTime(0)).await.unwrap();
        let now = UnixTime(10);
        let taken = tokio::join!(
            store.take_console_login(&digest, now),
            store.take_console_login(&digest, now),
            store.take_console_login(&digest, now),
            store.take_console_login(&digest, now),
        );
        let taken = [taken.0, taken.1, taken.2, taken.3];
        assert_eq!(taken.iter().filter(|t| t.as_ref().unwrap().is_some()).count(), 1, "round {round}: {taken:?}");

        let session = ConsoleSessionRecord {
            digest,
            principal: warrant_core::Principal::AdminToken,
            csrf: "c".into(),
            created_at: UnixTime(0),
            expires_at: UnixTime(5_000),
            ended_at: None,
        };
        store.insert_console_session(&session).await.unwrap();
        let ended = tokio::join!(
            store.end_console_session(&digest, now),
            store.end_console_session(&digest, now),
            store.end_console_session(&digest, now),
        );
        let ended = [ended.0.unwrap(), ended.1.unwrap(), ended.2.unwrap()];
        assert_eq!(ended.iter().filter(|e| **e).count(), 1, "round {round}: {ended:?}");
    }
}

async fn check_pep_round_trip(store: &dyn Store) {
    assert!(store.list_peps().await.unwrap().is_empty());
    let pep = |n: u8, name: &str, plain_subjects: bool, at: i64| PepRecord {
        id: PepId::from_random([n; 12]),
        name: name.into(),
        secret_sha256: [n; 32],
        plain_subjects,
        created_at: UnixTime(at),
        revoked_at: None,
    };
    let (a, b) = (pep(1, "gateway", false, 100), pep(2, "api-gw", true, 200));
    store.insert_pep(&b).await.unwrap();
    store.insert_pep(&a).await.unwrap();
    assert_eq!(store.list_peps().await.unwrap(), vec![a.clone(), b.clone()], "oldest first");
    assert_conflict(store.insert_pep(&a).await, "duplicate PEP id");
    assert_conflict(
        store.insert_pep(&PepRecord { id: PepId::from_random([3; 12]), ..b.clone() }).await,
        "duplicate PEP secret",
    );
    assert!(store.revoke_pep(&a.id, UnixTime(300)).await.unwrap());
    assert!(!store.revoke_pep(&a.id, UnixTime(400)).await.unwrap(), "revoked once");
    assert!(!store.revoke_pep(&PepId::from_random([7; 12]), UnixTime(400)).await.unwrap(), "unknown");
    let listed = store.list_peps().await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(UnixTime(300)), "the first revocation's time stays");
    assert_eq!(listed[1], b);
}

/// A revocation read by its id names the warrants it ended, not those an earlier
/// revocation had ended; an unknown id is `None`.
async fn check_revocation_by_id(store: &dyn Store) {
    let (t, root) = started_task(store, 1).await;
    let a = store.get_agent(&root.agent).await.unwrap().unwrap();
    let child = warrant(2, &t, &a, Some(&root), 1_010);
    store.record_warrant(&child, None, &IssueGuard::default()).await.unwrap();
    let first = revocation(1, RevocationKind::Warrant, child.jti.as_str(), 1_020);
    let second = revocation(2, RevocationKind::Task, t.id.as_str(), 1_030);
    store.revoke(&first, UnixTime(1_020)).await.unwrap();
    store.revoke(&second, UnixTime(1_030)).await.unwrap();
    assert_eq!(store.revocation("rev_1").await.unwrap(), Some((first, vec![child.jti.clone()])));
    assert_eq!(store.revocation("rev_2").await.unwrap(), Some((second, vec![root.jti.clone()])));
    assert_eq!(store.revocation("rev_9").await.unwrap(), None);
}

/// Migration 8 adds the PEP credentials and the warrants' claims: a warrant recorded
/// before it reads back without claims.
#[tokio::test]
async fn migration_adds_peps_and_warrant_claims() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.db");
    let store = SqliteStore::open(&path).unwrap();
    let (_, root) = started_task(&store, 1).await;
    drop(store);
    let db = rusqlite::Connection::open(&path).unwrap();
    undo_migrations_to(&db, 7);
    drop(db);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_warrant(&root.jti).await.unwrap().unwrap().claims, None);
    assert!(store.list_peps().await.unwrap().is_empty());
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, current_schema_version());
}

// ---------------------------------------------------------------------------------------
// PostgreSQL over TLS
// ---------------------------------------------------------------------------------------

/// A throw-away PostgreSQL server that speaks TLS with a certificate for `localhost` only
/// (`scripts/pg-test-cluster start DIR --tls`), stopped and removed when dropped.
struct TlsServer {
    dir: std::path::PathBuf,
    port: String,
}

impl TlsServer {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster")
    }

    fn start(dir: &std::path::Path) -> TlsServer {
        let out = std::process::Command::new(Self::script())
            .arg("start")
            .arg(dir)
            .arg("--tls")
            .output()
            .expect("run scripts/pg-test-cluster");
        assert!(out.status.success(), "pg-test-cluster --tls: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap();
        let port = url.trim().rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned();
        TlsServer { dir: dir.to_owned(), port }
    }

    fn ca(&self) -> String {
        self.dir.join("tls/ca.crt").display().to_string()
    }

    /// Whether the connections named `application` use TLS, asked over a plain one.
    async fn uses_tls(&self, application: &str) -> bool {
        let admin = format!("postgres://warrant@127.0.0.1:{}/postgres?sslmode=disable", self.port);
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1",
                &[&application],
            )
            .await
            .unwrap();
        row.get::<_, Option<bool>>(0).expect("a connection of that name")
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script()).arg("stop").arg(&self.dir).status();
    }
}

/// TLS to PostgreSQL is verified whenever it is used: with the server's CA as
/// `sslrootcert` and the certificate's name as host, the store connects over TLS; with the
/// system's roots (which do not hold that CA), or by an address the certificate does not
/// name, it refuses to connect instead of encrypting to a server it cannot authenticate;
/// `sslmode=disable` connects in plain text.
#[tokio::test]
async fn postgres_tls_is_verified() {
    if postgres_url().is_none() {
        eprintln!("SKIPPED (WARRANT_SKIP_POSTGRES_TESTS=1): PostgreSQL over TLS");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TlsServer::start(dir.path());
    let (port, ca) = (server.port.clone(), server.ca());
    let url = |host: &str, query: &str| format!("postgres://warrant@{host}:{port}/postgres?{query}");

    let verified = url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}&application_name=verified"));
    let store = warrant_store::PgStore::open(&verified).await.expect("TLS with the server's CA");
    store.list_humans().await.unwrap();
    assert!(server.uses_tls("verified").await, "the store's connection is encrypted");
    // `prefer` (the default) uses TLS when the server offers it, and verifies it too.
    let preferred = url("localhost", &format!("sslrootcert={ca}&application_name=preferred"));
    let preferring = warrant_store::PgStore::open(&preferred).await.expect("prefer, verified");
    preferring.list_humans().await.unwrap();
    assert!(server.uses_tls("preferred").await);

    for (why, bad) in [
        ("the system's roots do not hold the test CA", url("localhost", "sslmode=require")),
        ("nor does prefer fall back to plain text", url("localhost", "application_name=x")),
        (
            "the certificate names localhost, not 127.0.0.1",
            url("127.0.0.1", &format!("sslmode=require&sslrootcert={ca}")),
        ),
    ] {
        let e = warrant_store::PgStore::open(&bad).await.expect_err(why).to_string();
        assert!(e.to_lowercase().contains("certificate") || e.contains("TLS") || e.contains("tls"), "{why}: {e}");
    }
    let e = warrant_store::PgStore::connect(&url("localhost", "sslrootcert=/nonexistent/ca.crt")).unwrap_err();
    assert!(e.to_string().contains("cannot read `sslrootcert`"), "{e}");

    let plain = url("127.0.0.1", "sslmode=disable&application_name=plain");
    let plain = warrant_store::PgStore::open(&plain).await.expect("plain text when asked");
    plain.list_humans().await.unwrap();
    assert!(!server.uses_tls("plain").await);
}

/// A server told not to migrate opens a PostgreSQL database at this build's schema
/// version and reads and writes it as it is; one behind it (version 10 lacks the table
/// `shadow_merges` that version 11 adds), or migrated by a newer release, is refused
/// with a schema error that says what to do. The evidence commands read the audit log of
/// a database back to version 7.
#[tokio::test]
async fn postgres_without_migrating_opens_only_a_schema_it_can_use_and_evidence_reads_older_ones() {
    let Some((guard, store)) = open_postgres().await else { return };
    let deny_every_third = |seq: u64| if seq.is_multiple_of(3) { "deny" } else { "allow" };
    store.append_audit(deciding_rows(1, 9, GENESIS, |_| Vec::new(), deny_every_third)).await.unwrap();
    let current = store.schema_version().await.unwrap();
    drop(store);
    let store = warrant_store::PgStore::open_without_migrating(&guard.url()).await.unwrap();
    let denies = AuditFilter { decision: Some("deny".into()), limit: 100, ..AuditFilter::default() };
    let seqs: Vec<u64> = store.query_audit(&denies).await.unwrap().iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, [3, 6, 9]);
    use warrant_store::RevocationStore as _;
    let (_, root) = started_task(&store, 1).await;
    let ended =
        store.revoke(&revocation(1, RevocationKind::Warrant, root.jti.as_str(), 1_020), UnixTime(1_020)).await.unwrap();
    assert_eq!(ended.iter().map(|(jti, _)| jti).collect::<Vec<_>>(), [&root.jti]);
    drop(store);

    for (version, says) in
        [(current - 1, "run `warrant migrate`"), (7, "run `warrant migrate`"), (current + 1, "a newer release")]
    {
        guard.execute(&format!("UPDATE warrant_schema SET version = {version};")).await;
        let Err(err) = warrant_store::PgStore::open_without_migrating(&guard.url()).await else {
            panic!("a version {version} database was opened")
        };
        assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("schema version {version}, this build opens version {current} without migrating")),
            "{text}"
        );
        assert!(text.contains(says), "{text}");
    }

    // The evidence commands (`warrant audit verify --database`, `audit export`) also read
    // a database behind by migrations that create only indexes or tables they never read:
    // back to version 7, as the build before migration 8 left it.
    guard
        .execute(
            "DROP INDEX audit_decision; DROP INDEX warrants_expires; DROP INDEX findings_recent; \
             DROP INDEX approvals_approver; DROP INDEX approvals_recent; DROP INDEX revoked_warrants_revocation; \
             DROP TABLE shadow_activity; DROP TABLE shadow_merges; UPDATE warrant_schema SET version = 7;",
        )
        .await;
    let refused = warrant_store::PgStore::open_without_migrating(&guard.url()).await;
    assert!(matches!(refused, Err(StoreError::Schema(_))), "a server needs version {current}");
    let evidence = warrant_store::PgStore::open_for_evidence(&guard.url()).await.unwrap();
    let seqs: Vec<u64> = evidence.query_audit(&denies).await.unwrap().iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, [3, 6, 9]);
    assert_eq!(evidence.audit_head().await.unwrap().map(|(seq, _)| seq), Some(9));
    drop(evidence);
    guard.execute("UPDATE warrant_schema SET version = 6;").await;
    let Err(err) = warrant_store::PgStore::open_for_evidence(&guard.url()).await else {
        panic!("a version 6 database was opened for evidence")
    };
    assert!(err.to_string().contains(&format!("this build opens versions 7 to {current}")), "{err}");
}

/// Shadow activity counted by servers sharing a PostgreSQL database adds up by subject;
/// a sweep's read forgets what was reported and has been quiet since, and a report of
/// fewer occurrences than were counted meanwhile marks nothing. SQLite keeps nothing (its
/// one server counts in memory).
#[tokio::test]
async fn shadow_activity_counted_by_each_server_adds_up_and_is_forgotten_once_reported_and_quiet() {
    use warrant_core::govern::evidence::ShadowCause;
    use warrant_core::govern::{ClaimedIds, ShadowActivity};
    use warrant_store::ChangeStore as _;
    let counted = |at: i64, issuers: &[&str]| {
        let first = ClaimedIds { iss: issuers.first().map(|i| (*i).to_owned()), ..ClaimedIds::default() };
        let mut a = ShadowActivity::new(ShadowCause::ForeignIssuer, UnixTime(at), first);
        for issuer in issuers {
            a.note(Some((*issuer).to_owned()), UnixTime(at));
        }
        ("shadow:foreign_issuer".to_owned(), a)
    };
    let mut next = 0u8;
    let mut batch = |counted: Vec<(String, ShadowActivity)>| {
        next += 1;
        ShadowBatch { id: ShadowBatchId::from_random([next; 16]), counted }
    };
    let sqlite = SqliteStore::open_in_memory().unwrap();
    sqlite.merge_shadow(&batch(vec![counted(10, &["https://a"])])).await.unwrap();
    assert!(sqlite.shadow_activity(UnixTime(0), &[]).await.unwrap().is_empty());

    let Some((guard, store)) = open_postgres().await else { return };
    store.merge_shadow(&batch(vec![counted(100, &["https://b", "https://a"])])).await.unwrap();
    store.merge_shadow(&batch(vec![counted(90, &["https://c", "https://a"])])).await.unwrap();
    let seen = store.shadow_activity(UnixTime(0), &[]).await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (subject, activity) = &seen[0];
    assert_eq!(subject, "shadow:foreign_issuer");
    assert_eq!(activity.occurrences, 4);
    assert_eq!((activity.first_seen, activity.last_seen), (UnixTime(90), UnixTime(100)));
    assert_eq!(activity.distinct.len(), 3);
    assert_eq!(activity.first.iss.as_deref(), Some("https://c"), "the earliest first token");
    let values: Vec<&str> = activity.samples.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(values, ["https://b", "https://a", "https://c"], "what was stored first stays first");
    // Unreported, it is kept however long it has been quiet.
    assert_eq!(store.shadow_activity(UnixTime(1_000), &[]).await.unwrap().len(), 1);
    // A report of 3 occurrences when 4 were counted marks nothing; of 4, marks it.
    store.shadow_reported(&[("shadow:foreign_issuer".to_owned(), 3)]).await.unwrap();
    assert_eq!(store.shadow_activity(UnixTime(1_000), &[]).await.unwrap().len(), 1);
    store.shadow_reported(&[("shadow:foreign_issuer".to_owned(), 4)]).await.unwrap();
    assert_eq!(store.shadow_activity(UnixTime(99), &[]).await.unwrap().len(), 1, "reported, but not quiet yet");
    assert!(store.shadow_activity(UnixTime(100), &[]).await.unwrap().is_empty(), "reported and quiet: forgotten");
    // New activity after a report is counted, and unreported, again.
    store.merge_shadow(&batch(vec![counted(200, &["https://d"])])).await.unwrap();
    store.shadow_reported(&[("shadow:foreign_issuer".to_owned(), 1)]).await.unwrap();
    store.merge_shadow(&batch(vec![counted(201, &["https://d"])])).await.unwrap();
    let seen = store.shadow_activity(UnixTime(1_000), &[]).await.unwrap();
    assert_eq!(seen.iter().map(|(_, a)| a.occurrences).collect::<Vec<_>>(), [2]);
    // A row this build cannot read (a later build's, say) is skipped by the sweep's read
    // and replaced by the next count for its subject; the others are read as ever.
    guard
        .execute(
            "INSERT INTO shadow_activity (subject, activity, occurrences, last_seen) \
             VALUES ('token:not_a_warrant', '{\"cause\": \"a_later_cause\"}', 1, 300);",
        )
        .await;
    let seen = store.shadow_activity(UnixTime(1_000), &[]).await.unwrap();
    assert_eq!(seen.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["shadow:foreign_issuer"]);
    let mut junk = counted(400, &[]);
    junk.0 = "token:not_a_warrant".to_owned();
    junk.1.note(None, UnixTime(400));
    // Given twice in one batch, a subject is added up.
    let twice = batch(vec![junk.clone(), junk]);
    store.merge_shadow(&twice).await.unwrap();
    let seen = store.shadow_activity(UnixTime(1_000), &[]).await.unwrap();
    let counts: Vec<(&str, u64)> = seen.iter().map(|(s, a)| (s.as_str(), a.occurrences)).collect();
    assert_eq!(counts, [("shadow:foreign_issuer", 2), ("token:not_a_warrant", 2)]);
    // The same batch handed again (its write committed, and the answer was lost) adds
    // nothing; another batch with the same counts does.
    store.merge_shadow(&twice).await.unwrap();
    let counts = |seen: Vec<(String, ShadowActivity)>| -> Vec<(String, u64)> {
        seen.into_iter().map(|(s, a)| (s, a.occurrences)).collect()
    };
    let seen = counts(store.shadow_activity(UnixTime(1_000), &[]).await.unwrap());
    assert_eq!(seen, [("shadow:foreign_issuer".to_owned(), 2), ("token:not_a_warrant".to_owned(), 2)]);
    store
        .merge_shadow(&ShadowBatch { id: ShadowBatchId::from_random([0xee; 16]), counted: twice.counted.clone() })
        .await
        .unwrap();
    let seen = counts(store.shadow_activity(UnixTime(1_000), &[]).await.unwrap());
    assert_eq!(seen, [("shadow:foreign_issuer".to_owned(), 2), ("token:not_a_warrant".to_owned(), 4)]);
}

/// The shadow activity a PostgreSQL database counts is bounded to `MAX_SUBJECTS`
/// subjects: once they are taken, a new subject is counted under the overflow subject,
/// while the stored ones go on counting under their own. An open finding the database has
/// no count of (opened before it counted shadow activity) is stored from the finding's
/// evidence, as reported, and a stored count is never replaced by one.
#[tokio::test]
async fn postgres_shadow_subjects_are_bounded_and_open_findings_are_counted_from_their_evidence() {
    use warrant_core::govern::evidence::ShadowCause;
    use warrant_core::govern::shadow::{MAX_SUBJECTS, OVERFLOW_SUBJECT};
    use warrant_core::govern::{ClaimedIds, ShadowActivity};
    use warrant_store::ChangeStore as _;
    let Some((_guard, store)) = open_postgres().await else { return };
    let seen_once = |at: i64| {
        let mut a = ShadowActivity::new(ShadowCause::UnregisteredAgent, UnixTime(at), ClaimedIds::default());
        a.note(None, UnixTime(at));
        a
    };
    let agents = |range: std::ops::Range<usize>| -> Vec<(String, ShadowActivity)> {
        range.map(|i| (format!("client:agt_{i}"), seen_once(10))).collect()
    };
    store
        .merge_shadow(&ShadowBatch { id: ShadowBatchId::from_random([1; 16]), counted: agents(0..MAX_SUBJECTS - 1) })
        .await
        .unwrap();
    // One place left: the first new subject takes it, the next two overflow, and a
    // stored subject keeps counting under its own name.
    let mut counted = agents(MAX_SUBJECTS - 1..MAX_SUBJECTS + 2);
    counted.push(("client:agt_0".to_owned(), seen_once(20)));
    store.merge_shadow(&ShadowBatch { id: ShadowBatchId::from_random([2; 16]), counted }).await.unwrap();
    // Full: a later new subject overflows too.
    let counted = agents(MAX_SUBJECTS + 5..MAX_SUBJECTS + 6);
    store.merge_shadow(&ShadowBatch { id: ShadowBatchId::from_random([3; 16]), counted }).await.unwrap();
    let seen = store.shadow_activity(UnixTime(0), &[]).await.unwrap();
    assert_eq!(seen.len(), MAX_SUBJECTS + 1, "the bound, and the overflow subject");
    let occurrences = |subject: &str| seen.iter().find(|(s, _)| s == subject).map(|(_, a)| a.occurrences);
    assert_eq!(occurrences(&format!("client:agt_{}", MAX_SUBJECTS - 1)), Some(1), "the last place taken");
    assert_eq!(occurrences(&format!("client:agt_{MAX_SUBJECTS}")), None);
    assert_eq!(occurrences(OVERFLOW_SUBJECT), Some(3));
    assert_eq!(occurrences("client:agt_0"), Some(2));

    // An open finding's activity is stored where there is no count, reported (so it is
    // forgotten once quiet); a count that began after the finding's goes on from it; one
    // that began no later holds it already, and stands.
    let mut open = seen_once(5);
    open.occurrences = 7;
    let recorded = [
        ("shadow:forged_signature".to_owned(), open.clone()),
        ("client:agt_0".to_owned(), open.clone()),
        ("client:agt_1".to_owned(), seen_once(10)),
    ];
    let seen = store.shadow_activity(UnixTime(0), &recorded).await.unwrap();
    let occurrences = |subject: &str| seen.iter().find(|(s, _)| s == subject).map(|(_, a)| a.occurrences);
    assert_eq!(occurrences("shadow:forged_signature"), Some(7));
    assert_eq!(occurrences("client:agt_0"), Some(9), "the finding's 7 and the 2 counted since");
    assert_eq!(occurrences("client:agt_1"), Some(1));
    let again = store.shadow_activity(UnixTime(0), &recorded).await.unwrap();
    assert_eq!(again, seen, "added once: the count now holds the finding's");
    let seen = store.shadow_activity(UnixTime(5), &recorded).await.unwrap();
    assert!(seen.iter().all(|(s, _)| s != "shadow:forged_signature"), "reported and quiet: forgotten");
}

/// The change feed (PostgreSQL): every write of a table behind a server's in-memory
/// state is logged in its transaction, numbered in commit order and announced; a pruned
/// log says how far it was pruned. SQLite has no feed.
#[tokio::test]
async fn the_change_feed_logs_every_change_in_order_and_announces_it() {
    use warrant_store::{ChangeKind, ChangeStore as _, RevocationStore as _};
    let sqlite = SqliteStore::open_in_memory().unwrap();
    assert!(!sqlite.shared());
    assert_eq!(sqlite.heartbeat("a", 5).await.unwrap(), 1, "one server per SQLite database");
    let Some((_guard, store)) = open_postgres().await else { return };
    assert!(store.shared());
    // Servers count themselves by their heartbeats.
    assert_eq!(store.heartbeat("srv_a", 5).await.unwrap(), 1);
    assert_eq!(store.heartbeat("srv_b", 5).await.unwrap(), 2);
    assert_eq!(store.heartbeat("srv_a", 5).await.unwrap(), 2, "a server counts once");
    // Single use across servers: a DPoP proof, a security event token (given up when it
    // was not acted on, and claimable again then).
    assert!(store.spend_proof("jkt", "p1", UnixTime(200), UnixTime(100)).await.unwrap());
    assert!(!store.spend_proof("jkt", "p1", UnixTime(200), UnixTime(150)).await.unwrap(), "spent once");
    assert!(store.spend_proof("jkt", "p1", UnixTime(400), UnixTime(300)).await.unwrap(), "forgotten once too old");
    assert!(store.claim_set("https://idp", "s1", UnixTime(200), UnixTime(100)).await.unwrap());
    assert!(!store.claim_set("https://idp", "s1", UnixTime(200), UnixTime(100)).await.unwrap());
    assert!(store.claim_set("https://other", "s1", UnixTime(200), UnixTime(100)).await.unwrap(), "per issuer");
    store.release_set("https://idp", "s1").await.unwrap();
    assert!(store.claim_set("https://idp", "s1", UnixTime(200), UnixTime(100)).await.unwrap());
    assert!(sqlite.spend_proof("jkt", "p1", UnixTime(200), UnixTime(100)).await.unwrap());
    assert_eq!(store.change_head().await.unwrap(), 0);
    let mut listener = store.listen_changes().await.unwrap();

    let (t, root) = started_task(&store, 1).await;
    let h = store.get_human(&t.human).await.unwrap().unwrap();
    let a = store.get_agent(&root.agent).await.unwrap().unwrap();
    // Announced once the write committed.
    tokio::time::timeout(std::time::Duration::from_secs(10), listener.next())
        .await
        .expect("an announcement after a write")
        .expect("the listener's connection is up");
    store.set_agent_status(&a.id, AgentStatus::Suspended).await.unwrap();
    store.set_human_status(&h.id, HumanStatus::Disabled).await.unwrap();
    store.revoke(&revocation(1, RevocationKind::Warrant, root.jti.as_str(), 1_020), UnixTime(1_020)).await.unwrap();
    let pep = PepRecord {
        id: PepId::from_random([1; 12]),
        name: "edge".into(),
        secret_sha256: [1; 32],
        plain_subjects: false,
        created_at: UnixTime(100),
        revoked_at: None,
    };
    store.insert_pep(&pep).await.unwrap();
    store.rotate_in(&key(1, 100)).await.unwrap();

    let batch = store.changes_since(0, 100).await.unwrap();
    let seen: Vec<(ChangeKind, String)> = batch.changes.iter().map(|c| (c.kind, c.subject.clone())).collect();
    assert_eq!(
        seen,
        vec![
            (ChangeKind::Human, h.id.to_string()),
            (ChangeKind::Agent, a.id.to_string()),
            (ChangeKind::Agent, a.id.to_string()),
            (ChangeKind::Human, h.id.to_string()),
            (ChangeKind::Revocation, "rev_1".to_owned()),
            (ChangeKind::Pep, pep.id.to_string()),
            (ChangeKind::Key, key(1, 100).kid),
        ]
    );
    assert!(batch.changes.windows(2).all(|w| w[0].seq < w[1].seq), "numbered in order");
    assert_eq!(batch.pruned_through, 0);
    assert_eq!(store.change_head().await.unwrap(), batch.changes.last().unwrap().seq);
    // From a number on, and at most a limit.
    let after = store.changes_since(batch.changes[1].seq, 2).await.unwrap();
    assert_eq!(after.changes, batch.changes[2..4].to_vec());

    // Pruning everything older than now: the log says how far it went.
    assert_eq!(store.prune_changes(0).await.unwrap(), 7);
    let pruned = store.changes_since(0, 100).await.unwrap();
    assert!(pruned.changes.is_empty());
    assert_eq!(pruned.pruned_through, batch.changes.last().unwrap().seq);
}

/// `/metrics` reports the calls waiting for a free connection of the pool: with every
/// connection held by a read that waits behind a table lock, the reads beyond the pool
/// are counted as waiting, and once the lock goes and every read is answered, none is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_counts_the_calls_waiting_for_a_connection() {
    use warrant_store::HealthStore as _;
    let Some((guard, store)) = open_postgres().await else { return };
    assert_eq!(store.waiting_for_connection(), 0);
    let (locker, connection) = tokio_postgres::connect(&guard.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    locker.batch_execute("BEGIN; LOCK TABLE humans IN ACCESS EXCLUSIVE MODE").await.unwrap();
    // More reads than the pool has connections (16): each holds one while it waits.
    let reads: Vec<_> = (0..24u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.get_human(&HumanId::from_random([i; 12])).await })
        })
        .collect();
    // The 8 beyond the pool wait (for at most the pool's 5 s, so the lock goes at once).
    let waited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while store.waiting_for_connection() != 8 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{} reads counted as waiting, not the 8 beyond the pool", store.waiting_for_connection());
    locker.batch_execute("COMMIT").await.unwrap();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), None);
    }
    assert_eq!(store.waiting_for_connection(), 0);
}
