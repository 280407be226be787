//! The JWS parser and verifier, and warrant / session / assertion verification, with a
//! fixed key ring.
//!
//! Asserts: nothing panics; a token that verifies is one of the tokens the fixed keys
//! signed (no forgery, no second encoding of a signed token is accepted); verification
//! implies the unverified peek sees the same header and claims; a warrant never verifies
//! as a session or the other way round; whatever verifies as a warrant is in date and
//! ours, and its claims re-serialize to equal claims.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warrant_core::WarrantClaims;
use warrant_fuzz::{agent_id, agent_key, fixed_tokens, ring, ISSUER, NOW};
use warrant_token::assertion::{claimed_agent, verify_assertion, AssertionClaims};
use warrant_token::jws::{self, Header};
use warrant_token::session::{verify_session, SessionClaims};
use warrant_token::warrant::verify_warrant;
use warrant_token::{KeyRing, KeySet};

struct Fixed {
    ring: KeyRing,
    jwks: KeySet,
    signed: Vec<String>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let ring = ring();
        let jwks = KeySet::from_jwks(&ring.jwks());
        Fixed { ring, jwks, signed: fixed_tokens().into_iter().map(|(_, t)| t).collect() }
    })
}

fuzz_target!(
    init: {
        // `WARRANT_FUZZ_WRITE_SEEDS=1`: write the seed corpora of every target and stop.
        if std::env::var_os("WARRANT_FUZZ_WRITE_SEEDS").is_some() {
            let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            warrant_fuzz::seeds::write_seeds(&fuzz.join("corpus"), fuzz.parent().unwrap());
            std::process::exit(0);
        }
    },
    |data: &[u8]| {
    let f = fixed();
    let token = String::from_utf8_lossy(data);
    let token = token.as_ref();
    let known = f.signed.iter().any(|t| t == token);

    let peeked = jws::peek_unverified::<Value>(token);
    let _ = jws::peek_unverified::<WarrantClaims>(token);
    let _ = jws::peek_unverified::<AssertionClaims>(token);
    let _ = warrant_engine::govern::shadow::peek(token);

    let all_types = ["at+jwt", "session+jwt", "JWT", ""];
    for keys in [&f.ring as &dyn jws::KeyResolver, &f.jwks] {
        if let Ok((header, claims)) = jws::verify::<Value>(token, &all_types, keys) {
            assert!(known, "a token no fixed key signed verified: {token:?}");
            assert_eq!(header.alg, "EdDSA");
            assert!(header.crit.is_none());
            let (peek_header, peek_claims): (Header, Value) = peeked.clone().expect("verified but peek failed");
            assert_eq!(peek_header, header);
            assert_eq!(peek_claims, claims);
        }
    }

    let warrant = verify_warrant(token, &f.ring, ISSUER, NOW);
    let session = verify_session(token, &f.ring, ISSUER, NOW);
    assert!(!(warrant.is_ok() && session.is_ok()), "one token verified as both a warrant and a session");
    if let Ok(claims) = &warrant {
        assert!(known);
        assert_eq!(claims.iss, ISSUER);
        assert!(claims.exp > NOW);
        let _ = claims.scope();
        let _ = claims.chain();
        let back: WarrantClaims = serde_json::from_value(serde_json::to_value(claims).unwrap()).unwrap();
        assert_eq!(&back, claims);
    }
    if let Ok(claims) = &session {
        assert!(known);
        let back: SessionClaims = serde_json::from_value(serde_json::to_value(claims).unwrap()).unwrap();
        assert_eq!(&back, claims);
    }
    // A warrant verified with the JWKS a client read agrees with the issuer's own ring.
    assert_eq!(warrant.is_ok(), verify_warrant(token, &f.jwks, ISSUER, NOW).is_ok());

    let _ = claimed_agent(token);
    let audiences = [ISSUER, "http://127.0.0.1:8080/oauth2/token"];
    if verify_assertion(token, &agent_key().verifying_key(), &agent_id(), &audiences, NOW).is_ok() {
        assert!(known, "an assertion the agent did not sign verified");
        assert_eq!(claimed_agent(token).ok(), Some(agent_id()));
    }

    // The same bytes as a JWKS document: reading keys from it never panics.
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        let set = KeySet::from_jwks(&doc);
        let _ = set.len();
    }
});
