//! One real engine for the `authorize` target: SQLite in memory, the default policy set,
//! a human, a delegated agent, a valid warrant and a revoked one, built once.

use std::sync::{Arc, OnceLock};

use warrant_core::RevocationKind;
use warrant_core::{Mode, UnixTime};
use warrant_engine::guard::GuardConfig;
use warrant_engine::issuer::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT};
use warrant_engine::{AuthorizeRequest, Engine, EngineConfig, ManualClock, NewAgent, NewHuman, Outcome, TokenRequest};
use warrant_store::SqliteStore;
use warrant_token::KeyPair;

use crate::ISSUER;

/// The scope of both warrants, as written in the token request.
pub const SCOPE: &str =
    "crm.read:customers/* crm.notes.*:customers/*/notes/** billing.read payments.transfer:accounts/*";

/// The same scope as (action pattern, resource pattern) pairs, for the target's own
/// matcher (an oracle written without `warrant-core`).
pub const SCOPE_PATTERNS: &[(&str, Option<&str>)] = &[
    ("crm.read", Some("customers/*")),
    ("crm.notes.*", Some("customers/*/notes/**")),
    ("billing.read", None),
    ("payments.transfer", Some("accounts/*")),
];

/// The engine's fixed time; the clock never moves, so the warrants never expire.
pub const T0: UnixTime = UnixTime(1_795_428_000);

/// The engine, its runtime and the tokens a fuzzed body may name by placeholder.
pub struct Fixture {
    /// Drives the engine (and its audit writer) on this thread.
    pub rt: tokio::runtime::Runtime,
    /// The engine.
    pub engine: Arc<Engine>,
    /// A live warrant for [`SCOPE`] (`"@valid"` in a body).
    pub valid: String,
    /// A warrant for [`SCOPE`] that was revoked (`"@revoked"`).
    pub revoked: String,
    /// The human's session token (`"@session"`): never a warrant.
    pub session: String,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (engine, valid, revoked, session) = rt.block_on(async {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let clock = Arc::new(ManualClock::at(T0));
        let mut config = EngineConfig::for_issuer(ISSUER);
        // Baselines and trust learn from every request: with them on, the fuzzer's
        // history would decide later answers. Off, each input is judged on its own.
        config.guard = GuardConfig { enabled: false, auto_quarantine: false, ..GuardConfig::default() };
        // A throw-away key-encryption key: signing keys are sealed at rest.
        config.kek = Some(warrant_token::Kek::from_bytes([0x42; 32]));
        let engine = Arc::new(Engine::open(store, clock, config).await.unwrap());
        let human = engine
            .registry()
            .add_human(NewHuman {
                name: "Ada".into(),
                email: "ada@example.com".into(),
                entitlements: vec!["*".into()],
                roles: Vec::new(),
                external_id: None,
            })
            .await
            .unwrap();
        let key = KeyPair::from_seed(&[11; 32]);
        let agent = engine
            .registry()
            .add_agent(NewAgent {
                name: "ledger-bot".into(),
                owner: human.id.to_string(),
                mode: Mode::Delegated,
                max_scope: vec!["*".into()],
                public_key: Some(key.public_jwk()),
                spiffe_id: None,
                expires_at: None,
                labels: [("team".to_owned(), "finance".to_owned())].into_iter().collect(),
            })
            .await
            .unwrap();
        let session = engine.registry().open_session(human.id.as_str()).await.unwrap().token;
        let mint = |jti: &str| {
            let assertion = warrant_token::assertion::make_assertion(
                &key,
                &agent.id,
                &engine.config().token_endpoint(),
                engine.now(),
                jti,
            )
            .unwrap();
            TokenRequest {
                grant_type: Some(GRANT_TOKEN_EXCHANGE.into()),
                scope: Some(SCOPE.into()),
                ttl: Some("900".into()),
                task_purpose: Some("reconcile the October ledger".into()),
                subject_token: Some(session.clone()),
                subject_token_type: Some(TOKEN_TYPE_ID_TOKEN.into()),
                actor_token: Some(assertion),
                actor_token_type: Some(TOKEN_TYPE_JWT.into()),
                ..TokenRequest::default()
            }
        };
        let (first, second) = (mint("fuzz-1"), mint("fuzz-2"));
        let valid = engine.issuer().token(&first).await.unwrap();
        let revoked = engine.issuer().token(&second).await.unwrap();
        engine.revocation().revoke(RevocationKind::Warrant, revoked.claims.jti.as_str(), "fuzz fixture").await.unwrap();
        // The fixture must be able to allow, or the target's oracle would hold vacuously.
        let probe = |token: &str| AuthorizeRequest {
            token: token.to_owned(),
            action: "crm.read".into(),
            resource: "customers/42".into(),
            ..AuthorizeRequest::default()
        };
        assert_eq!(engine.decisions().authorize(&probe(&valid.token)).await.outcome, Outcome::Allow);
        assert_eq!(engine.decisions().authorize(&probe(&revoked.token)).await.outcome, Outcome::Deny);
        (engine, valid.token, revoked.token, session)
    });
    Fixture { rt, engine, valid, revoked, session }
}
