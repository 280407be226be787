//! The harness: one engine on an in-memory SQLite store and a manual clock, and every
//! call the tests make into it. Nothing outside this file calls the engine, so a change
//! of the engine's API is ported here alone. [`Harness::start_on_postgres`] and
//! [`Harness::replica`] put engines on one PostgreSQL database instead, as servers
//! sharing it would be.
//!
//! Time moves only through [`Harness::advance`]; nothing runs in the background but the
//! engine's own audit writer, and sweeps and reloads are called explicitly.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;
use warrant_core::govern::{Finding, FindingKind};
use warrant_core::guard::approval::{Approval, Decider};
use warrant_core::{AgentId, AgentStatus, Human, HumanId, Mode, UnixTime};
use warrant_engine::audit::AuditView;
use warrant_engine::govern::sweep::SweepReport;
use warrant_engine::issuer::{
    ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
};
use warrant_engine::revocation::Completer;
use warrant_engine::{
    AuthorizeRequest, Clock as _, Engine, EngineConfig, ManualClock, NewAgent, NewHuman, SubjectRequest, TokenRequest,
};
use warrant_store::{PgStore, SqliteStore, Store};
use warrant_token::{Kek, KeyPair};

// What the tests read of the engine's answers, re-exported so that they name no engine
// path themselves.
pub use warrant_core::audit::AuditKind;
pub use warrant_core::guard::approval::ApprovalStatus;
pub use warrant_engine::approvals::ApprovalOpError;
pub use warrant_engine::audit::AuditQuery as AuditFilter;
pub use warrant_engine::events::{Event, EventKind};
pub use warrant_engine::revocation::TaskView;
pub use warrant_engine::{Decision, Issued, Outcome, RevokeError, Revoked, TokenError};
pub use warrant_store::RevocationKind;

/// Where the clock starts: 2026-01-01T09:00:00Z.
pub const T0: i64 = 1_767_258_000;

/// The issuer URL of every harness.
pub const ISSUER: &str = "http://warrant.test";

/// The key-encryption key of every harness (fixed: nothing here is secret).
fn kek() -> Kek {
    Kek::from_bytes([0x5a; 32])
}

/// An agent registered through the harness, with its private key.
#[derive(Debug, Clone)]
pub struct TestAgent {
    /// Its id.
    pub id: AgentId,
    /// Its owner.
    pub owner: HumanId,
    /// Its key pair (the public half is registered).
    pub key: KeyPair,
}

/// The permissions of a space-separated scope, as a set.
pub fn perms(scope: &str) -> BTreeSet<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// A delegated chain built by [`Harness::chain`].
pub struct Chain {
    /// The human the work is done for (and every agent's owner).
    pub human: Human,
    /// Their delegation session.
    pub session: String,
    /// The agents, root first.
    pub agents: Vec<TestAgent>,
    /// `warrants[i]` is held by `agents[i]`; `warrants[0]` is the task's root warrant.
    pub warrants: Vec<Issued>,
}

impl Chain {
    /// The token held by `agents[i]`.
    pub fn token(&self, i: usize) -> &str {
        &self.warrants[i].token
    }

    /// The warrant id held by `agents[i]`.
    pub fn jti(&self, i: usize) -> String {
        self.warrants[i].claims.jti.to_string()
    }

    /// The task.
    pub fn task(&self) -> String {
        self.warrants[0].claims.task.id.to_string()
    }
}

/// What a token request asks for beyond the grant itself.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    scope: Option<String>,
    ttl: Option<String>,
    budget: Option<String>,
    purpose: Option<String>,
}

impl Ask {
    /// Nothing in particular: the ceilings' intersection, the default lifetime.
    pub fn new() -> Self {
        Ask::default()
    }

    /// A space-separated scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }

    /// A lifetime in seconds (as the form would carry it).
    pub fn ttl(mut self, ttl: &str) -> Self {
        self.ttl = Some(ttl.to_owned());
        self
    }

    /// A budget, `counter=limit` pairs.
    pub fn budget(mut self, budget: &str) -> Self {
        self.budget = Some(budget.to_owned());
        self
    }

    /// The task's purpose (root warrants; a default one is sent when unset).
    pub fn purpose(mut self, purpose: &str) -> Self {
        self.purpose = Some(purpose.to_owned());
        self
    }
}

/// One engine under test.
pub struct Harness {
    engine: Engine,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    config: EngineConfig,
    policies: PathBuf,
    counter: Arc<AtomicU64>,
    /// The PostgreSQL database's URL, for replicas.
    postgres: Option<String>,
    _dir: Arc<TempDir>,
    _schema: Option<Arc<PgSchema>>,
}

/// A schema of its own on the PostgreSQL test server, dropped with the last harness
/// using it.
struct PgSchema {
    admin: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped inside the test's runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
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

/// The PostgreSQL test server (`WARRANT_TEST_POSTGRES`); `None` when
/// `WARRANT_SKIP_POSTGRES_TESTS=1` skips the PostgreSQL tests deliberately.
fn postgres_admin() -> Option<String> {
    match std::env::var("WARRANT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("WARRANT_SKIP_POSTGRES_TESTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "WARRANT_TEST_POSTGRES is not set: the engine's PostgreSQL tests need a server \
             (scripts/test starts one; scripts/pg-test-cluster starts one by hand). \
             Set WARRANT_SKIP_POSTGRES_TESTS=1 to skip them deliberately."
        ),
    }
}

impl Harness {
    /// An engine with the default settings.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// An engine whose settings `configure` changed first.
    pub async fn start_with(configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        Harness::start_with_policies(&[], configure).await
    }

    /// An engine whose policy directory holds the default set plus `policies` (name,
    /// text) from the start, with settings `configure` changed.
    pub async fn start_with_policies(policies: &[(&str, &str)], configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        Harness::open(store, None, policies, configure).await
    }

    /// An engine with the default settings (changed by `configure`) on a fresh schema of
    /// the PostgreSQL test server; `None` when the PostgreSQL tests are skipped.
    pub async fn start_on_postgres(configure: impl FnOnce(&mut EngineConfig)) -> Option<Harness> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin = postgres_admin()?;
        let name = format!("engine_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-csearch_path%3D{name}");
        let schema = Arc::new(PgSchema { admin, name });
        let store: Arc<dyn Store> = Arc::new(PgStore::open(&url).await.unwrap());
        Some(Harness::open(store, Some((url, schema)), &[], configure).await)
    }

    /// An engine on `store` (on PostgreSQL: with its URL and schema), whose policy
    /// directory holds the default set plus `policies`, with settings `configure` changed.
    async fn open(
        store: Arc<dyn Store>,
        postgres: Option<(String, Arc<PgSchema>)>,
        policies: &[(&str, &str)],
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        std::fs::write(policy_dir.join(warrant_policy::DEFAULT_POLICY_FILE), warrant_policy::DEFAULT_POLICIES).unwrap();
        for (name, text) in policies {
            std::fs::write(policy_dir.join(name), text).unwrap();
        }
        let mut config = EngineConfig::for_issuer(ISSUER);
        config.kek = Some(kek());
        config.policy_dir = Some(policy_dir.clone());
        configure(&mut config);
        let clock = Arc::new(ManualClock::at(UnixTime(T0)));
        let engine = Engine::open(Arc::clone(&store), Arc::clone(&clock) as _, config.clone()).await.unwrap();
        let (postgres, schema) = postgres.map_or((None, None), |(url, schema)| (Some(url), Some(schema)));
        Harness {
            engine,
            clock,
            store,
            config,
            policies: policy_dir,
            counter: Arc::new(AtomicU64::new(0)),
            postgres,
            _dir: Arc::new(dir),
            _schema: schema,
        }
    }

    /// Another engine on this harness's PostgreSQL database, with a pool of its own and
    /// the same settings, clock and policy files: a second server sharing the database.
    pub async fn replica(&self) -> Harness {
        let url = self.postgres.as_deref().expect("a replica needs a harness on PostgreSQL");
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(url).unwrap());
        let engine = Engine::open(Arc::clone(&store), Arc::clone(&self.clock) as _, self.config.clone()).await.unwrap();
        Harness {
            engine,
            clock: Arc::clone(&self.clock),
            store,
            config: self.config.clone(),
            policies: self.policies.clone(),
            counter: Arc::clone(&self.counter),
            postgres: self.postgres.clone(),
            _dir: Arc::clone(&self._dir),
            _schema: self._schema.clone(),
        }
    }

    /// The PostgreSQL database's URL (a harness on PostgreSQL only).
    pub fn postgres_url(&self) -> String {
        self.postgres.clone().expect("a harness on PostgreSQL")
    }

    /// Reads the change feed and applies what other servers changed; how many changes.
    pub async fn catch_up(&self) -> usize {
        self.engine.cluster().catch_up().await.unwrap()
    }

    /// Starts the engine's background loops (the change feed among them).
    pub fn start_background(&self) -> warrant_engine::Background {
        self.engine.start(warrant_engine::BackgroundOptions::default())
    }

    /// Moves the clock forward by `millis` milliseconds.
    pub fn advance_millis(&self, millis: i64) {
        self.clock.advance_millis(millis);
    }

    /// Stops the engine the way the server does at shutdown (guard state and usage
    /// flushed, the audit log drained) and opens a new one on the same database: what is
    /// in memory is gone, what the store holds is loaded again.
    pub async fn restart(&mut self) {
        self.engine.close().await;
        let store = Arc::clone(&self.store);
        self.engine = Engine::open(store, Arc::clone(&self.clock) as _, self.config.clone()).await.unwrap();
    }

    fn unique(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    // --- time -----------------------------------------------------------------------

    /// Now, as the engine's clock reads it.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    // --- registry -------------------------------------------------------------------

    /// Registers a human with `entitlements`.
    pub async fn human(&self, entitlements: &[&str]) -> Human {
        let n = self.unique();
        self.engine
            .registry()
            .add_human(NewHuman {
                name: format!("Human {n}"),
                email: format!("human{n}@example.com"),
                entitlements: entitlements.iter().map(|s| (*s).to_owned()).collect(),
                roles: Vec::new(),
                external_id: None,
            })
            .await
            .unwrap()
    }

    /// Registers a human named by `email` with `roles` and no entitlements.
    pub async fn human_with_roles(&self, email: &str, roles: &[&str]) -> Human {
        self.human_with_identity(email, None, roles).await
    }

    /// Registers a human named by `email`, known to its identity provider as
    /// `external_id`, with `roles` and no entitlements.
    pub async fn human_with_identity(&self, email: &str, external_id: Option<&str>, roles: &[&str]) -> Human {
        self.engine
            .registry()
            .add_human(NewHuman {
                name: email.split('@').next().unwrap().to_owned(),
                email: email.to_owned(),
                entitlements: Vec::new(),
                roles: roles.iter().map(|s| (*s).to_owned()).collect(),
                external_id: external_id.map(str::to_owned),
            })
            .await
            .unwrap()
    }

    /// Replaces a human's roles.
    pub async fn set_roles(&self, human: &Human, roles: &[&str]) -> Human {
        let roles: Vec<String> = roles.iter().map(|s| (*s).to_owned()).collect();
        self.engine.registry().set_human_roles(human.id.as_str(), &roles).await.unwrap()
    }

    /// Decides a plain subject's request.
    pub async fn authorize_subject(&self, req: &SubjectRequest) -> Decision {
        self.engine.decisions().authorize_subject(req).await
    }

    /// Registers an agent of `owner` in `mode` with `max_scope` and a fresh key.
    pub async fn agent(&self, owner: &Human, mode: Mode, max_scope: &[&str]) -> TestAgent {
        let n = self.unique();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        seed[8] = 0xa9;
        let key = KeyPair::from_seed(&seed);
        let agent = self
            .engine
            .registry()
            .add_agent(NewAgent {
                name: format!("agent {n}"),
                owner: owner.id.to_string(),
                mode,
                max_scope: max_scope.iter().map(|s| (*s).to_owned()).collect(),
                public_key: Some(key.public_jwk()),
                spiffe_id: None,
                expires_at: None,
                labels: Default::default(),
            })
            .await
            .unwrap();
        TestAgent { id: agent.id, owner: agent.owner, key }
    }

    /// A delegated agent (works for humans) of `owner`.
    pub async fn delegated_agent(&self, owner: &Human, max_scope: &[&str]) -> TestAgent {
        self.agent(owner, Mode::Delegated, max_scope).await
    }

    /// An autonomous agent of `owner`.
    pub async fn autonomous_agent(&self, owner: &Human, max_scope: &[&str]) -> TestAgent {
        self.agent(owner, Mode::Autonomous, max_scope).await
    }

    /// The agent's registered status.
    pub async fn agent_status(&self, agent: &TestAgent) -> AgentStatus {
        self.engine.registry().agent(agent.id.as_str()).await.unwrap().status
    }

    /// Disables a human.
    pub async fn disable_human(&self, human: &Human) {
        self.engine.registry().disable_human(human.id.as_str(), None).await.unwrap();
    }

    /// Opens a delegation session for `human`: the subject token of a delegated root.
    pub async fn session(&self, human: &Human) -> String {
        self.engine.registry().open_session(human.id.as_str()).await.unwrap().token
    }

    // --- issuance -------------------------------------------------------------------

    /// A fresh single-use client assertion of `agent`, for the token endpoint.
    pub fn assertion(&self, agent: &TestAgent) -> String {
        let audience = format!("{ISSUER}/oauth2/token");
        let jti = format!("assertion-{}", self.unique());
        warrant_token::assertion::make_assertion(&agent.key, &agent.id, &audience, self.now(), &jti).unwrap()
    }

    fn extend(req: &mut TokenRequest, ask: Ask) {
        req.scope = ask.scope;
        req.ttl = ask.ttl;
        req.budget = ask.budget;
        req.task_purpose = ask.purpose;
    }

    /// A token request as it stands.
    pub async fn token(&self, req: &TokenRequest) -> Result<Issued, TokenError> {
        self.engine.issuer().token(req).await
    }

    /// `client_credentials` authenticated by `assertion`: an autonomous root warrant.
    pub async fn client_credentials_with(&self, assertion: String, ask: Ask) -> Result<Issued, TokenError> {
        let mut req = TokenRequest {
            grant_type: Some(GRANT_CLIENT_CREDENTIALS.into()),
            client_assertion_type: Some(ASSERTION_TYPE_JWT_BEARER.into()),
            client_assertion: Some(assertion),
            ..TokenRequest::default()
        };
        Self::extend(&mut req, ask);
        self.token(&req).await
    }

    /// An autonomous root warrant for `agent` (a purpose is sent when `ask` has none).
    pub async fn autonomous_root(&self, agent: &TestAgent, ask: Ask) -> Result<Issued, TokenError> {
        let ask = if ask.purpose.is_none() { ask.purpose("nightly reconciliation") } else { ask };
        self.client_credentials_with(self.assertion(agent), ask).await
    }

    /// A token exchange of `subject` (of type `subject_type`) with `actor`'s assertion.
    async fn exchange(
        &self,
        subject: &str,
        subject_type: &str,
        actor: &TestAgent,
        ask: Ask,
    ) -> Result<Issued, TokenError> {
        let mut req = TokenRequest {
            grant_type: Some(GRANT_TOKEN_EXCHANGE.into()),
            subject_token: Some(subject.to_owned()),
            subject_token_type: Some(subject_type.to_owned()),
            actor_token: Some(self.assertion(actor)),
            ..TokenRequest::default()
        };
        Self::extend(&mut req, ask);
        self.token(&req).await
    }

    /// A delegated root warrant: `agent` acts for the human whose session this is.
    pub async fn root(&self, session: &str, agent: &TestAgent, ask: Ask) -> Result<Issued, TokenError> {
        let ask = if ask.purpose.is_none() { ask.purpose("help the human") } else { ask };
        self.exchange(session, TOKEN_TYPE_ID_TOKEN, agent, ask).await
    }

    /// A delegation of the warrant `parent` to `child`.
    pub async fn delegate(&self, parent: &str, child: &TestAgent, ask: Ask) -> Result<Issued, TokenError> {
        self.exchange(parent, TOKEN_TYPE_ACCESS_TOKEN, child, ask).await
    }

    /// A delegated chain: a human with `entitlements`, `depth` delegated agents of theirs
    /// with `max_scope`, the first holding a root warrant, each next one a delegation of
    /// the one before (each asking for nothing in particular).
    pub async fn chain(&self, entitlements: &[&str], max_scope: &[&str], depth: usize) -> Chain {
        let human = self.human(entitlements).await;
        let session = self.session(&human).await;
        let mut chain = Chain { human, session, agents: Vec::new(), warrants: Vec::new() };
        for i in 0..depth {
            let agent = self.delegated_agent(&chain.human, max_scope).await;
            let issued = match chain.warrants.last() {
                None => self.root(&chain.session, &agent, Ask::new()).await,
                Some(parent) => self.delegate(&parent.token, &agent, Ask::new()).await,
            };
            let issued = issued.unwrap_or_else(|e| panic!("link {i} of the chain: {e}"));
            chain.agents.push(agent);
            chain.warrants.push(issued);
        }
        chain
    }

    // --- decisions ------------------------------------------------------------------

    /// May `token` do `action` on `resource`?
    pub async fn authorize(&self, token: &str, action: &str, resource: &str) -> Decision {
        self.authorize_with(token, action, resource, Value::Null, None).await
    }

    /// Asks, then goes away (as a client that disconnects would) once the decision is
    /// queued and its answer has started waiting for the record, before it is durable.
    pub async fn authorize_and_leave(&self, token: &str, action: &str, resource: &str) {
        let req = AuthorizeRequest {
            token: token.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            ..AuthorizeRequest::default()
        };
        let decisions = self.engine.decisions();
        let queued = decisions.authorize_queued(&req).await;
        // Polled once, then dropped.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, decisions.answer(queued)).await;
    }

    /// The same, with telemetry `context` (none when null) and an approval to present.
    pub async fn authorize_with(
        &self,
        token: &str,
        action: &str,
        resource: &str,
        context: Value,
        approval: Option<&str>,
    ) -> Decision {
        let req = AuthorizeRequest {
            token: token.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            resource_attrs: None,
            context: (!context.is_null()).then(|| std::sync::Arc::new(context)),
            approval_id: approval.map(str::to_owned),
            recorded: None,
            via: None,
            proof: None,
        };
        self.engine.decisions().authorize(&req).await
    }

    /// The agent's trust as the guardrails hold it now.
    pub fn trust(&self, agent: &TestAgent) -> f64 {
        self.engine.guardrails().trust_of(&agent.id, self.now())
    }

    // --- revocation and tasks -------------------------------------------------------

    /// Revokes `id` of `kind`.
    pub async fn revoke(&self, kind: RevocationKind, id: &str) -> Result<Revoked, RevokeError> {
        self.engine.revocation().revoke(kind, id, "revoked by the test").await
    }

    /// Completes a task as an administrator.
    pub async fn complete_task_as_admin(&self, task: &str) -> Result<Revoked, RevokeError> {
        self.engine.revocation().complete_task(task, Completer::Admin).await
    }

    /// Completes a task presenting `token` as its root warrant.
    pub async fn complete_task_with(&self, task: &str, token: &str) -> Result<Revoked, RevokeError> {
        self.engine.revocation().complete_task(task, Completer::RootWarrant(token)).await
    }

    /// A task and its warrants' states.
    pub async fn task(&self, task: &str) -> TaskView {
        self.engine.revocation().task(task).await.unwrap()
    }

    /// A subscription to the live events, from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.engine.events().subscribe()
    }

    /// The engine's live events.
    pub fn events(&self) -> &warrant_engine::events::EventBus {
        self.engine.events()
    }

    // --- approvals ------------------------------------------------------------------

    /// One approval, with its status as of now.
    pub async fn approval(&self, id: &str) -> Approval {
        self.engine.approvals().get(id).await.unwrap()
    }

    /// Approves or rejects approval `id` as `human`, authenticated the way the API does
    /// it: with an approver session of theirs.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        human: &Human,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalOpError> {
        let session = self.engine.registry().open_approver_session(human.id.as_str()).await.unwrap().token;
        let who = self.engine.registry().approver_human(&session).await.unwrap();
        self.engine.approvals().decide(id, approve, &Decider::Human(who), reason.map(str::to_owned)).await
    }

    /// Whether a delegation session (what an agent holds) is accepted as an approver.
    pub async fn session_approves(&self, session: &str) -> bool {
        self.engine.registry().approver_human(session).await.is_some()
    }

    // --- policies -------------------------------------------------------------------

    /// Writes `text` as `name` in the policy directory and reloads; returns the version
    /// in force afterwards.
    pub async fn install_policy(&self, name: &str, text: &str) -> i64 {
        std::fs::write(self.policies.join(name), text).unwrap();
        self.engine.policy().reload().await.unwrap();
        self.policy_version()
    }

    /// The version of the policy set in force.
    pub fn policy_version(&self) -> i64 {
        self.engine.policy().current().unwrap().version
    }

    // --- audit ----------------------------------------------------------------------

    /// The audit record of a decision, by its `dec_N` id.
    pub async fn decision_record(&self, decision_id: &str) -> AuditView {
        let seq: u64 = decision_id.strip_prefix("dec_").unwrap().parse().unwrap();
        self.engine.audit().get(seq).await.unwrap().unwrap()
    }

    /// May the warrant named by `jti` (not presented: its recorded claims) do `action` on
    /// `resource`?
    pub async fn authorize_recorded(&self, jti: &str, action: &str, resource: &str) -> Decision {
        let req = AuthorizeRequest {
            recorded: Some(warrant_core::WarrantId::parse(jti).unwrap()),
            action: action.to_owned(),
            resource: resource.to_owned(),
            ..AuthorizeRequest::default()
        };
        self.engine.decisions().authorize(&req).await
    }

    /// Records a copy of warrant `jti` under a new id without its claims, as a warrant
    /// issued before claims were kept; returns the new id.
    pub async fn record_without_claims(&self, jti: &str) -> String {
        let original = self.store.get_warrant(&warrant_core::WarrantId::parse(jti).unwrap()).await.unwrap().unwrap();
        let copy = warrant_store::WarrantRecord {
            jti: warrant_core::WarrantId::from_random([0xAB; 12]),
            claims: None,
            ..original
        };
        self.store.record_warrant(&copy, None, &warrant_store::IssueGuard::default()).await.unwrap();
        copy.jti.to_string()
    }

    /// How many warrants are recorded and not expired now (revoked ones included).
    pub async fn recorded_warrants(&self) -> u64 {
        self.store.count_live_warrants(self.now()).await.unwrap()
    }

    /// The engine itself, for the services without a helper here (the AuthZEN adapter).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Audit records matching `filter`.
    pub async fn audit(&self, filter: AuditFilter) -> Vec<AuditView> {
        self.engine.audit().query(&filter).await.unwrap()
    }

    /// Whether the whole audit chain and its checkpoints verify.
    pub async fn audit_verifies(&self) -> bool {
        self.engine.audit().verify().await.unwrap().ok()
    }

    // --- governance -----------------------------------------------------------------

    /// Sweeps every agent now.
    pub async fn sweep(&self) -> SweepReport {
        self.engine.governance().sweep().await.unwrap()
    }

    /// The active findings of `kind` about `agent`.
    pub fn findings(&self, agent: &TestAgent, kind: FindingKind) -> Vec<Finding> {
        self.engine.governance().active_about(agent.id.as_str()).into_iter().filter(|f| f.kind == kind).collect()
    }
}

/// Waits, checking every 50 ms, until `done` holds; fails with `what` after `limit`. (What
/// it waits for is the background loops' real-time intervals and the lock's connection.)
pub async fn wait_until(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let step = std::time::Duration::from_millis(50);
    let mut waited = std::time::Duration::ZERO;
    while !done() {
        assert!(waited < limit, "{what} within {limit:?}");
        tokio::time::sleep(step).await;
        waited += step;
    }
}
