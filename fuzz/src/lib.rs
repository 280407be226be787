//! What the fuzz targets share: the fixed keys and the tokens they sign (the `jws`
//! target's key ring and the seed corpus are built from the same function, so the target
//! knows every token that may verify), and the in-process engine of the `authorize`
//! target, and the seed corpora ([`seeds`]).

pub mod engine;
pub mod seeds;

use warrant_core::{Actor, AgentId, HumanId, Mode, TaskClaim, TaskId, UnixTime, WarrantClaims, WarrantId};
use warrant_token::assertion::make_assertion;
use warrant_token::session::{sign_session, SessionClaims};
use warrant_token::warrant::sign_warrant;
use warrant_token::{KeyPair, KeyRing};

/// The issuer every fixed token names.
pub const ISSUER: &str = "http://127.0.0.1:8080";
/// The time the `jws` target verifies at.
pub const NOW: UnixTime = UnixTime(1_700_000_000);

/// The ring's active key.
pub fn active_key() -> KeyPair {
    KeyPair::from_seed(&[1; 32])
}

/// A retired key the ring still verifies with.
pub fn retired_key() -> KeyPair {
    KeyPair::from_seed(&[2; 32])
}

/// A key the ring does not know.
pub fn stranger_key() -> KeyPair {
    KeyPair::from_seed(&[3; 32])
}

/// The agent's own key (client assertions).
pub fn agent_key() -> KeyPair {
    KeyPair::from_seed(&[4; 32])
}

/// The agent the fixed tokens name.
pub fn agent_id() -> AgentId {
    AgentId::from_random([7; 12])
}

/// The key ring the `jws` target verifies with: the active key and one retired key.
pub fn ring() -> KeyRing {
    let retired = retired_key();
    KeyRing::new(active_key(), vec![(retired.kid().to_owned(), retired.verifying_key())])
}

/// Warrant claims valid at [`NOW`] (depth 2, with a budget), for `scope`.
pub fn warrant_claims(scope: &str) -> WarrantClaims {
    let human = HumanId::from_random([5; 12]);
    let root = AgentId::from_random([8; 12]);
    WarrantClaims {
        iss: ISSUER.into(),
        sub: human.to_string(),
        aud: ISSUER.into(),
        exp: NOW.plus(900),
        iat: NOW.plus(-10),
        nbf: NOW.plus(-10),
        jti: WarrantId::from_random([9; 12]),
        client_id: agent_id(),
        scope: scope.into(),
        act: Actor::from_chain(&[root, agent_id()]).unwrap_or_else(|| unreachable!()),
        task: TaskClaim {
            id: TaskId::from_random([6; 12]),
            purpose: "reconcile the October ledger".into(),
            human: human.clone(),
        },
        mode: Mode::Delegated,
        owner: human,
        parent: Some(WarrantId::from_random([10; 12])),
        cnf: None,
        budget: [("estimated_cost".to_owned(), 5000)].into_iter().collect(),
    }
}

/// Every token the fixed keys sign, by name: the ones that verify at [`NOW`] and the ones
/// that must not (expired, wrong issuer, unknown key). Ed25519 signatures are
/// deterministic, so this list is the same on every call.
pub fn fixed_tokens() -> Vec<(&'static str, String)> {
    let sign = |key: &KeyPair, claims: &WarrantClaims| sign_warrant(key, claims).unwrap_or_else(|e| panic!("{e}"));
    let claims = warrant_claims("crm.read:customers/* billing.*:invoices/** payments.transfer:accounts/*");
    let mut expired = claims.clone();
    expired.exp = NOW;
    let mut foreign = claims.clone();
    foreign.iss = "https://elsewhere.example".into();
    let mut early = claims.clone();
    early.nbf = NOW.plus(3600);
    let session = SessionClaims {
        iss: ISSUER.into(),
        sub: HumanId::from_random([5; 12]),
        aud: ISSUER.into(),
        exp: NOW.plus(3600),
        iat: NOW,
        nbf: NOW,
        jti: "sess-1".into(),
    };
    let assertion = make_assertion(&agent_key(), &agent_id(), &format!("{ISSUER}/oauth2/token"), NOW, "jti-1")
        .unwrap_or_else(|e| panic!("{e}"));
    vec![
        ("warrant", sign(&active_key(), &claims)),
        ("warrant-retired-key", sign(&retired_key(), &claims)),
        ("warrant-unknown-key", sign(&stranger_key(), &claims)),
        ("warrant-expired", sign(&active_key(), &expired)),
        ("warrant-foreign-issuer", sign(&active_key(), &foreign)),
        ("warrant-not-yet-valid", sign(&active_key(), &early)),
        ("session", sign_session(&active_key(), &session).unwrap_or_else(|e| panic!("{e}"))),
        ("assertion", assertion),
    ]
}
