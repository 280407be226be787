#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test code"
)]
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

use std::collections::BTreeMap;

use tempfile::TempDir;
use warrant_core::{
    Agent, AgentId, AgentStatus, Human, HumanId, HumanStatus, Mode, PublicJwk, Scope, TaskId, UnixTime, WarrantId,
};
use warrant_store::{
    AgentStore as _, HumanStore as _, KeyStore as _, SqliteStore, Store, StoreError, StoredKey, TaskRecord,
    WarrantRecord, WarrantStore as _,
};
use zeroize::Zeroizing;

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// Instantiates every conformance check as a test in module `$backend`, each on a fresh
/// store from `$open`, an async fn returning `(guard, store)`; the guard (a temporary
/// directory, a database handle, …) lives until the check ends.
macro_rules! conformance {
    ($backend:ident, $open:ident) => {
        conformance!(@tests $backend, $open;
            check_human_round_trip,
            check_human_unknown_is_none,
            check_humans_listed_oldest_first,
            check_human_duplicate_id_conflicts,
            check_human_duplicate_email_conflicts,
            check_set_human_status,
            check_agent_round_trip,
            check_agent_owner_must_exist,
            check_agent_duplicate_id_conflicts,
            check_list_agents,
            check_set_agent_status,
            check_first_key_is_the_only_active_one,
            check_rotation_retires_previous_keys,
            check_last_expiry_for_key,
            check_assertion_replay_is_refused,
            check_assertion_jti_is_per_agent,
            check_expired_assertions_are_purged,
            check_warrant_tree,
            check_warrant_needs_existing_task,
            check_warrant_jti_is_unique,
            check_warrant_and_task_are_atomic,
            check_live_warrants_with_agent,
        );
    };
    (@tests $backend:ident, $open:ident; $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $check() {
                    let (_guard, store) = super::$open().await;
                    super::$check(&store).await;
                }
            )+
        }
    };
}

/// A fresh SQLite store on a new file in a temporary directory.
async fn open_sqlite() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("warrant.db")).expect("open the SQLite store");
    (dir, store)
}

conformance!(sqlite, open_sqlite);

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
    }
}

fn agent(n: u8, owner: &Human, created_at: i64) -> Agent {
    Agent {
        id: AgentId::from_random([n; 12]),
        name: format!("agent-{n}"),
        owner: owner.id.clone(),
        mode: Mode::Delegated,
        max_scope: scope("crm.read"),
        public_key: jwk(),
        status: AgentStatus::Active,
        expires_at: None,
        labels: BTreeMap::new(),
        created_at: UnixTime(created_at),
    }
}

fn key(n: u8, created_at: i64) -> StoredKey {
    StoredKey {
        kid: format!("kid-{n}"),
        seed: Zeroizing::new([n; 32]),
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
    store.record_warrant(&root, Some(&t)).await.unwrap();
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
    rich.public_key = PublicJwk { kid: Some("client-key-1".into()), ..jwk() };
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

// ---------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------

/// `(kid, seed, created_at, retired_at)`: `StoredKey` has no `PartialEq`, by design.
fn key_view(k: &StoredKey) -> (String, [u8; 32], UnixTime, Option<UnixTime>) {
    (k.kid.clone(), *k.seed, k.created_at, k.retired_at)
}

async fn check_first_key_is_the_only_active_one(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());

    store.rotate_in(&key(1, 1_000)).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(key_view).collect::<Vec<_>>(),
        vec![("kid-1".to_owned(), [1; 32], UnixTime(1_000), None)]
    );
}

async fn check_rotation_retires_previous_keys(store: &dyn Store) {
    store.rotate_in(&key(1, 1_000)).await.unwrap();
    store.rotate_in(&key(2, 2_000)).await.unwrap();

    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(key_view).collect::<Vec<_>>(),
        vec![
            ("kid-2".to_owned(), [2; 32], UnixTime(2_000), None),
            ("kid-1".to_owned(), [1; 32], UnixTime(1_000), Some(UnixTime(2_000))),
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
            ("kid-3".to_owned(), [3; 32], UnixTime(3_000), None),
            ("kid-2".to_owned(), [2; 32], UnixTime(2_000), Some(UnixTime(3_000))),
            ("kid-1".to_owned(), [1; 32], UnixTime(1_000), Some(UnixTime(2_000))),
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

    store.record_warrant(&w1, Some(&t)).await.unwrap();
    for w in [&w2, &w3, &w4] {
        store.record_warrant(w, None).await.unwrap();
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

    store.record_warrant(&root, Some(&t)).await.unwrap();
    store.record_warrant(&child, None).await.unwrap();
    store.record_warrant(&grandchild, None).await.unwrap();

    // A second task, which none of the first task's queries may see.
    let t2 = task(2, &h, &a2, 1_005);
    let other_root = warrant(4, &t2, &a2, None, 1_005);
    let other_child = warrant(5, &t2, &a3, Some(&other_root), 1_015);
    store.record_warrant(&other_root, Some(&t2)).await.unwrap();
    store.record_warrant(&other_child, None).await.unwrap();

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
    store.record_warrant(&second_child, None).await.unwrap();
    assert_eq!(
        jtis(&store.child_warrants(&root.jti).await.unwrap()),
        vec![child.jti.clone(), second_child.jti.clone()]
    );

    // Every warrant of the task, in issuance order, and none of another task's.
    assert_eq!(store.task_warrants(&t.id).await.unwrap(), vec![root, child, grandchild, second_child]);
    assert_eq!(store.task_warrants(&t2.id).await.unwrap(), vec![other_root, other_child]);
    assert!(store.task_warrants(&TaskId::from_random([9; 12])).await.unwrap().is_empty());
}

async fn check_warrant_needs_existing_task(store: &dyn Store) {
    let (h, a) = principals(store, 1).await;
    let never_started = task(1, &h, &a, 1_000);
    let w = warrant(1, &never_started, &a, None, 1_000);
    assert_conflict(store.record_warrant(&w, None).await, "warrant of an unknown task");
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
    assert_conflict(store.record_warrant(&again, None).await, "duplicate jti");
    assert_conflict(store.record_warrant(&root, None).await, "identical warrant recorded twice");
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
    assert_conflict(store.record_warrant(&clash, Some(&t2)).await, "root warrant with a taken jti");
    assert_eq!(store.get_task(&t2.id).await.unwrap(), None);
    assert!(store.task_warrants(&t2.id).await.unwrap().is_empty());

    // A task id that exists already is refused, and the warrant with it.
    let (t3, _) = started_task(store, 3).await;
    let mut dup_task = task(4, &h, &a, 3_000);
    dup_task.id = t3.id.clone();
    let w = warrant(4, &dup_task, &a, None, 3_000);
    assert_conflict(store.record_warrant(&w, Some(&dup_task)).await, "task id taken");
    assert_eq!(store.get_warrant(&w.jti).await.unwrap(), None);
    assert_eq!(store.get_task(&t3.id).await.unwrap(), Some(t3));

    // And after both refusals the store still accepts the valid write.
    let ok = warrant(5, &t2, &a, None, 2_000);
    store.record_warrant(&ok, Some(&t2)).await.unwrap();
    assert_eq!(store.get_task(&t2.id).await.unwrap(), Some(t2.clone()));
    assert_eq!(store.task_warrants(&t2.id).await.unwrap(), vec![ok]);
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
        store.record_warrant(&root, Some(&t)).await.unwrap();
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
                ("kid-2".to_owned(), [2; 32], UnixTime(2_000), None),
                ("kid-1".to_owned(), [1; 32], UnixTime(1_000), Some(UnixTime(2_000))),
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
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("999"), "{msg}"),
        other => panic!("expected Corrupt for a newer schema, got {other:?}"),
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
    store.record_warrant(&root, Some(&t)).await.unwrap();
    for w in [&mid, &leaf, &other] {
        store.record_warrant(w, None).await.unwrap();
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
    db.execute_batch("DROP TABLE warrant_agents; PRAGMA user_version = 2;").unwrap();
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
    store.record_warrant(&root, Some(&t)).await.unwrap();
    store.record_warrant(&mid, None).await.unwrap();
    store.record_warrant(&leaf, None).await.unwrap();
}
