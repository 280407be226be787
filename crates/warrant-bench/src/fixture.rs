#![expect(clippy::unwrap_used, missing_docs, reason = "benchmark code")]
//! A real engine for the benchmarks: SQLite in a temporary directory, the generated
//! policies written to its policy directory, a human, two delegated agents and a root
//! warrant minted through the token endpoint's code path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use warrant_core::audit::{AuditEntry, AuditKind};
use warrant_core::{Agent, Human, Mode, UnixTime, WarrantClaims};
use warrant_engine::audit::AuditConfig;
use warrant_engine::issuer::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT};
use warrant_engine::{AuthorizeRequest, Engine, EngineConfig, ManualClock, NewAgent, NewHuman, TokenRequest};
use warrant_store::SqliteStore;
use warrant_token::KeyPair;

use crate::anchors::SCOPE;
use crate::policies::{cedar_file_name, cedar_text, Probe};
use crate::{ISSUER, T0};

/// An engine with its registry and a root warrant.
pub struct EngineFixture {
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    /// The data directory (SQLite file and `policies/`); removed on drop.
    pub dir: tempfile::TempDir,
    pub human: Human,
    /// The root warrant's holder.
    pub agent: Agent,
    pub agent_key: KeyPair,
    /// The delegation target.
    pub child: Agent,
    pub child_key: KeyPair,
    /// A delegated root warrant held by `agent` for `human`, scope [`SCOPE`].
    pub token: String,
    pub claims: WarrantClaims,
    jti: AtomicU64,
}

impl std::fmt::Debug for EngineFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineFixture").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// The decision request for `probe` under `token`.
pub fn authorize_request(token: &str, probe: &Probe) -> AuthorizeRequest {
    AuthorizeRequest {
        token: token.to_owned(),
        action: probe.action.clone(),
        resource: probe.resource.clone(),
        resource_attrs: Some(std::sync::Arc::new(probe.resource_attrs.clone())),
        context: Some(std::sync::Arc::new(probe.telemetry.clone())),
        approval_id: None,
        recorded: None,
        via: None,
        proof: None,
    }
}

/// An audit configuration whose queue holds a whole benchmark's decisions.
pub fn roomy_audit() -> AuditConfig {
    AuditConfig { queue_capacity: 1 << 21, ..AuditConfig::default() }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("team".to_owned(), "finance".to_owned()), ("env".to_owned(), "prod".to_owned())])
}

impl EngineFixture {
    /// Opens an engine over a new SQLite file with the generated set of `n` policies.
    /// Must be called inside a tokio runtime.
    pub async fn open(n: usize, audit: AuditConfig) -> Self {
        Self::open_with(n, audit, warrant_engine::guard::GuardConfig::default(), None).await
    }

    /// [`EngineFixture::open`] with guardrail settings, and a budget on the root warrant
    /// (e.g. `estimated_cost=1000000000`).
    pub async fn open_with(
        n: usize,
        audit: AuditConfig,
        guard: warrant_engine::guard::GuardConfig,
        budget: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        std::fs::write(policy_dir.join(cedar_file_name(n)), cedar_text(n)).unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("warrant.db")).unwrap());
        let clock = Arc::new(ManualClock::at(T0));
        let mut config = EngineConfig::for_issuer(ISSUER);
        // A throw-away database: a fixed key-encryption key is enough.
        config.kek = Some(warrant_token::Kek::from_bytes([0x42; 32]));
        config.policy_dir = Some(policy_dir);
        config.audit = audit;
        config.guard = guard;
        let engine = Arc::new(Engine::open(store, Arc::clone(&clock) as _, config).await.unwrap());
        let human = engine
            .registry()
            .add_human(NewHuman {
                name: "Ada Finance".into(),
                email: "ada@example.com".into(),
                entitlements: vec!["*".into()],
                roles: Vec::new(),
                external_id: None,
            })
            .await
            .unwrap();
        let register = |name: &str, key: &KeyPair| NewAgent {
            name: name.into(),
            owner: human.id.to_string(),
            mode: Mode::Delegated,
            max_scope: vec!["*".into()],
            public_key: Some(key.public_jwk()),
            spiffe_id: None,
            expires_at: None,
            labels: labels(),
        };
        let (agent_key, child_key) = (KeyPair::from_seed(&[11; 32]), KeyPair::from_seed(&[12; 32]));
        let agent = engine.registry().add_agent(register("ledger-bot", &agent_key)).await.unwrap();
        let child = engine.registry().add_agent(register("report-bot", &child_key)).await.unwrap();
        let mut fixture = EngineFixture {
            engine,
            clock,
            dir,
            human,
            agent,
            agent_key,
            child,
            child_key,
            token: String::new(),
            claims: crate::anchors::subject(1, Mode::Delegated).claims,
            jti: AtomicU64::new(0),
        };
        let session = fixture.engine.registry().open_session(fixture.human.id.as_str()).await.unwrap();
        let root = TokenRequest {
            grant_type: Some(GRANT_TOKEN_EXCHANGE.into()),
            scope: Some(SCOPE.into()),
            ttl: Some("900".into()),
            task_purpose: Some("reconcile the October ledger".into()),
            subject_token: Some(session.token),
            subject_token_type: Some(TOKEN_TYPE_ID_TOKEN.into()),
            actor_token: Some(fixture.assertion(&fixture.agent_key, &fixture.agent)),
            actor_token_type: Some(TOKEN_TYPE_JWT.into()),
            budget: budget.map(str::to_owned),
            ..TokenRequest::default()
        };
        let issued = fixture.engine.issuer().token(&root).await.unwrap();
        fixture.token = issued.token;
        fixture.claims = issued.claims;
        fixture
    }

    /// A fresh client assertion (new `jti`) for `agent`, signed with `key`.
    pub fn assertion(&self, key: &KeyPair, agent: &Agent) -> String {
        let jti = format!("bench-{}", self.jti.fetch_add(1, Ordering::Relaxed));
        let endpoint = self.engine.config().token_endpoint();
        warrant_token::assertion::make_assertion(key, &agent.id, &endpoint, self.engine.now(), &jti).unwrap()
    }

    /// The decision request for `probe` under the root warrant (the probe's depth, mode
    /// and time are the warrant's and the clock's: use [`Probe::bench`]).
    pub fn authorize_request(&self, probe: &Probe) -> AuthorizeRequest {
        authorize_request(&self.token, probe)
    }

    /// A delegation of the root warrant to the child agent, with a fresh actor assertion.
    pub fn exchange_request(&self) -> TokenRequest {
        TokenRequest {
            grant_type: Some(GRANT_TOKEN_EXCHANGE.into()),
            scope: Some("svc3.read:accounts/*".into()),
            subject_token: Some(self.token.clone()),
            subject_token_type: Some(TOKEN_TYPE_ACCESS_TOKEN.into()),
            actor_token: Some(self.assertion(&self.child_key, &self.child)),
            actor_token_type: Some(TOKEN_TYPE_JWT.into()),
            ..TokenRequest::default()
        }
    }

    /// Waits until every audit record queued so far is durable.
    pub async fn drain(&self) {
        let mut entry = AuditEntry::new(self.engine.now(), AuditKind::Registry);
        entry.details = serde_json::json!({ "op": "bench.drain" });
        self.engine.audit().record(entry).await.unwrap();
    }

    /// The current time of the engine's clock.
    pub fn now(&self) -> UnixTime {
        self.engine.now()
    }
}
