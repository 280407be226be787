//! DPoP proofs (RFC 9449): a JWT a client signs with its own key for one HTTP request,
//! carrying the public key in its header. Checked here, in this order: size and shape;
//! the header (`typ` `dpop+jwt`, `alg` `EdDSA`, `ES256` or `RS256`, a public `jwk` with no
//! private part, no `crit`); the signature against that `jwk`; then the claims: `htm` and
//! `htu` (compared without query and fragment, after URL normalisation), `iat` within the
//! accepted window, a `jti`, and `ath` (the SHA-256 of the access token) when a token is
//! presented with the proof. The key's thumbprint (RFC 7638) is what a warrant's
//! `cnf.jkt` binds. Replay (`jti` reuse) is the caller's check, since it needs state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use warrant_core::UnixTime;

use crate::oidc::{json_part, signed_payload, split, time_claim, IdTokenError, ProviderKeys};

/// How old a proof may be (`iat` before now), seconds.
pub const MAX_PROOF_AGE: i64 = 60;
/// How far in the future a proof's `iat` may be (clock skew), seconds.
pub const PROOF_SKEW: i64 = 5;
/// The longest proof accepted, in bytes (a proof carries one public key).
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// The proof's media type.
pub const DPOP_TYP: &str = "dpop+jwt";
/// The signature algorithms accepted on proofs.
pub const PROOF_ALGS: [&str; 3] = ["EdDSA", "ES256", "RS256"];

/// Why a DPoP proof was refused (`invalid_dpop_proof`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Not a compact JWS with JSON header and claims, or too long.
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(String),
    /// The header breaks a rule of RFC 9449 §4.2.
    #[error("the DPoP proof's header is not acceptable: {0}")]
    Header(String),
    /// The signature does not verify with the header's key.
    #[error("the DPoP proof's signature is invalid")]
    BadSignature,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for method `{0}`, not this request's")]
    Method(String),
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for `{0}`, not this request's URL")]
    Url(String),
    /// `iat` is outside the window.
    #[error("the DPoP proof {0}")]
    Time(&'static str),
    /// A required claim is missing or of the wrong type.
    #[error("the DPoP proof's claims are invalid: {0}")]
    Claims(String),
    /// `ath` is missing or not the hash of the presented token.
    #[error("the DPoP proof is not for this access token (`ath`)")]
    TokenHash,
    /// The proof's key is not the one the warrant is bound to.
    #[error("the DPoP proof is signed by another key than the one the warrant is bound to")]
    WrongKey,
    /// The proof was used before.
    #[error("the DPoP proof was already used; make a new proof for every request")]
    Replayed,
    /// Too many proofs are remembered to take another safely (the caller should answer
    /// "try again later", not "invalid").
    #[error("too many DPoP proofs are in flight; retry in a minute")]
    TooMany,
}

/// The most proofs a [`ProofRegister`] remembers at once; when full, expired ones are
/// dropped, and if it is still full, new proofs are refused (fail closed) until some
/// expire.
pub const MAX_REMEMBERED_PROOFS: usize = 200_000;

/// The proofs seen, by `(jkt, jti)`, until they are too old to be accepted anyway: each
/// proof is accepted once.
#[derive(Debug, Default)]
pub struct ProofRegister {
    seen: std::sync::Mutex<std::collections::HashMap<(String, String), UnixTime>>,
}

impl ProofRegister {
    /// Records `proof` as used at `now`; [`ProofError::Replayed`] if it was used before.
    pub fn spend(&self, proof: &Proof, now: UnixTime) -> Result<(), ProofError> {
        use std::collections::hash_map::Entry;
        let until = UnixTime(proof.iat.0.saturating_add(MAX_PROOF_AGE + PROOF_SKEW + 1));
        let mut seen = self.seen.lock().map_err(|_| ProofError::TooMany)?;
        if seen.len() >= MAX_REMEMBERED_PROOFS {
            seen.retain(|_, until| *until > now);
            if seen.len() >= MAX_REMEMBERED_PROOFS {
                return Err(ProofError::TooMany);
            }
        }
        match seen.entry((proof.jkt.clone(), proof.jti.clone())) {
            Entry::Occupied(mut e) if *e.get() <= now => {
                e.insert(until);
            }
            Entry::Occupied(_) => return Err(ProofError::Replayed),
            Entry::Vacant(e) => {
                e.insert(until);
            }
        }
        Ok(())
    }

    /// Accepts `proof` for a warrant bound to `jkt`: verified for `expected`, made with
    /// that key, and spent (refused from then on). Nothing is remembered of a proof that
    /// is refused.
    pub fn accept(&self, proof: &str, expected: &Expected<'_>, jkt: &str, now: UnixTime) -> Result<Proof, ProofError> {
        let checked = verify_proof(proof, expected, now)?;
        if checked.jkt != jkt {
            return Err(ProofError::WrongKey);
        }
        self.spend(&checked, now)?;
        Ok(checked)
    }

    /// How many proofs are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a proof must match: the request it came with, and the token presented with it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The HTTP method, e.g. `POST`.
    pub htm: &'a str,
    /// The request URL (its query and fragment are ignored).
    pub htu: &'a str,
    /// The access token presented with the proof, whose hash `ath` must be; `None` at the
    /// token endpoint (no token yet), or when the warrant is named by its id.
    pub token: Option<&'a str>,
}

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The thumbprint of the key that signed it (RFC 7638, SHA-256, base64url).
    pub jkt: String,
    /// The proof's id.
    pub jti: String,
    /// When it was made.
    pub iat: UnixTime,
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK (`OKP`, `EC` or `RSA`), base64url.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, ProofError> {
    let member = |name: &str| {
        jwk.get(name).and_then(Value::as_str).ok_or_else(|| ProofError::Header(format!("the `jwk` has no `{name}`")))
    };
    // The required members, in lexicographic order, as JSON strings without whitespace.
    let names: &[&str] = match member("kty")? {
        "OKP" => &["crv", "kty", "x"],
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        other => return Err(ProofError::Header(format!("the `jwk` type `{other}` is not supported"))),
    };
    let mut canonical = String::from("{");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let value = serde_json::to_string(member(name)?).map_err(|e| ProofError::Header(e.to_string()))?;
        canonical.push_str(&format!("\"{name}\":{value}"));
    }
    canonical.push('}');
    Ok(B64.encode(Sha256::digest(canonical.as_bytes())))
}

/// The `ath` of an access token: base64url SHA-256 of its ASCII text.
pub fn token_hash(token: &str) -> String {
    B64.encode(Sha256::digest(token.as_bytes()))
}

/// A URL as `htu` compares it: parsed and normalised (scheme and host lower-cased,
/// default port dropped, path percent-encoding normalised), without query and fragment.
pub fn normalise_htu(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Some(parsed.to_string())
}

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, ProofError> {
    match claims.get(name).and_then(Value::as_str) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ProofError::Claims(format!("`{name}` is missing or not a string"))),
    }
}

fn signature_error(e: IdTokenError) -> ProofError {
    match e {
        IdTokenError::BadSignature => ProofError::BadSignature,
        IdTokenError::UnsupportedAlg(alg) => ProofError::Header(format!("algorithm `{alg}` is not accepted")),
        IdTokenError::UnknownKey => ProofError::Header("the `jwk` does not fit the algorithm".into()),
        other => ProofError::Malformed(other.to_string()),
    }
}

/// Verifies `proof` for the request `expected` at `now`. Replay is not checked here: the
/// caller registers the returned `jti` for [`MAX_PROOF_AGE`] plus [`PROOF_SKEW`].
pub fn verify_proof(proof: &str, expected: &Expected<'_>, now: UnixTime) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::Malformed(format!("longer than {MAX_PROOF_LEN} bytes")));
    }
    let (header_b64, _, _) = split(proof).map_err(|e| ProofError::Malformed(e.to_string()))?;
    let header = json_part(header_b64).map_err(|e| ProofError::Malformed(e.to_string()))?;
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case(DPOP_TYP) {
        return Err(ProofError::Header(format!("`typ` must be `{DPOP_TYP}`")));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !PROOF_ALGS.contains(&alg) {
        return Err(ProofError::Header(format!("`alg` must be one of {}", PROOF_ALGS.join(", "))));
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::Header("no `jwk` (the public key) in the header".into()));
    };
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::Header("the `jwk` holds a private key; send only the public part".into()));
    }
    let jkt = thumbprint(jwk)?;
    // The key as a one-key set, named by the header's `kid` (if any) so it is found.
    let mut key = jwk.clone();
    key.remove("use");
    match header.get("kid") {
        Some(kid) => key.insert("kid".into(), kid.clone()),
        None => key.remove("kid"),
    };
    let keys = ProviderKeys::from_jwks(&serde_json::json!({ "keys": [key] }));
    if keys.is_empty() {
        return Err(ProofError::Header("the `jwk` is not a usable Ed25519, P-256 or RSA public key".into()));
    }
    let (_, claims) = signed_payload(proof, &keys).map_err(signature_error)?;
    let htm = text(&claims, "htm")?;
    if htm != expected.htm {
        return Err(ProofError::Method(htm.chars().take(16).collect()));
    }
    let htu = text(&claims, "htu")?;
    if normalise_htu(htu).is_none() || normalise_htu(htu) != normalise_htu(expected.htu) {
        return Err(ProofError::Url(htu.chars().take(200).collect()));
    }
    let iat = time_claim(&claims, "iat")
        .map_err(|e| ProofError::Claims(e.to_string()))?
        .ok_or_else(|| ProofError::Claims("`iat` is missing".into()))?;
    if iat > now.0.saturating_add(PROOF_SKEW) {
        return Err(ProofError::Time("was made in the future"));
    }
    if iat.saturating_add(MAX_PROOF_AGE) < now.0 {
        return Err(ProofError::Time("is too old; make a new proof for every request"));
    }
    let jti = text(&claims, "jti")?;
    if jti.len() > 256 {
        return Err(ProofError::Claims("`jti` is longer than 256 bytes".into()));
    }
    if let Some(token) = expected.token {
        if claims.get("ath").and_then(Value::as_str) != Some(token_hash(token).as_str()) {
            return Err(ProofError::TokenHash);
        }
    }
    Ok(Proof { jkt, jti: jti.to_owned(), iat: UnixTime(iat) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use serde_json::json;

    fn sign(key: &KeyPair, header: Value, claims: Value) -> String {
        let h = B64.encode(serde_json::to_vec(&header).unwrap());
        let c = B64.encode(serde_json::to_vec(&claims).unwrap());
        let input = format!("{h}.{c}");
        let sig = key.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", B64.encode(sig))
    }

    fn public_jwk(key: &KeyPair) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.verifying_key().as_bytes()) })
    }

    fn proof(key: &KeyPair, change: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
        let mut header = json!({ "typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(key) });
        let mut claims = json!({
            "htm": "POST", "htu": "https://as.example/v1/authorize", "iat": 1000, "jti": "p-1",
            "ath": token_hash("the.token.here"),
        });
        change(header.as_object_mut().unwrap(), claims.as_object_mut().unwrap());
        sign(key, header, claims)
    }

    const EXPECTED: Expected<'static> =
        Expected { htm: "POST", htu: "https://AS.example:443/v1/authorize?x=1", token: Some("the.token.here") };

    #[test]
    fn a_proof_for_this_request_and_token_verifies_and_names_its_key() {
        let key = KeyPair::from_seed(&[3; 32]);
        let ok = verify_proof(&proof(&key, |_, _| {}), &EXPECTED, UnixTime(1010)).unwrap();
        assert_eq!(ok.jti, "p-1");
        assert_eq!(ok.jkt, thumbprint(public_jwk(&key).as_object().unwrap()).unwrap());
        // The same thumbprint Warrant uses as the key id of its own Ed25519 keys.
        assert_eq!(ok.jkt, key.kid());
        // Without a token to bind (the token endpoint), `ath` is not asked for.
        let no_token = Expected { token: None, ..EXPECTED };
        assert!(verify_proof(&proof(&key, |_, c| drop(c.remove("ath"))), &no_token, UnixTime(1010)).is_ok());
    }

    #[test]
    fn the_rfc_7638_example_thumbprint_is_reproduced() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn every_rule_of_a_proof_is_checked() {
        let key = KeyPair::from_seed(&[4; 32]);
        let now = UnixTime(1010);
        let check = |p: String| verify_proof(&p, &EXPECTED, now).unwrap_err();
        assert!(matches!(check(proof(&key, |h, _| drop(h.insert("typ".into(), json!("JWT"))))), ProofError::Header(_)));
        assert!(matches!(
            check(proof(&key, |h, _| drop(h.insert("alg".into(), json!("none"))))),
            ProofError::Header(_)
        ));
        assert!(matches!(check(proof(&key, |h, _| drop(h.remove("jwk")))), ProofError::Header(_)));
        assert!(matches!(
            check(proof(&key, |h, _| drop(h["jwk"].as_object_mut().unwrap().insert("d".into(), json!("AAAA"))))),
            ProofError::Header(_)
        ));
        // Signed by one key, naming another.
        let other = KeyPair::from_seed(&[5; 32]);
        assert_eq!(
            check(proof(&key, |h, _| drop(h.insert("jwk".into(), public_jwk(&other))))),
            ProofError::BadSignature
        );
        assert!(matches!(check(proof(&key, |_, c| drop(c.insert("htm".into(), json!("GET"))))), ProofError::Method(_)));
        for url in [
            "https://as.example/v1/authorize/batch",
            "http://as.example/v1/authorize",
            "https://as2.example/v1/authorize",
            "not a url",
        ] {
            assert!(
                matches!(check(proof(&key, |_, c| drop(c.insert("htu".into(), json!(url))))), ProofError::Url(_)),
                "{url}"
            );
        }
        assert!(matches!(check(proof(&key, |_, c| drop(c.insert("iat".into(), json!(1016))))), ProofError::Time(_)));
        assert!(matches!(check(proof(&key, |_, c| drop(c.insert("iat".into(), json!(949))))), ProofError::Time(_)));
        assert!(matches!(check(proof(&key, |_, c| drop(c.remove("jti")))), ProofError::Claims(_)));
        assert_eq!(check(proof(&key, |_, c| drop(c.remove("ath")))), ProofError::TokenHash);
        assert_eq!(
            check(proof(&key, |_, c| drop(c.insert("ath".into(), json!(token_hash("other")))))),
            ProofError::TokenHash
        );
        assert!(matches!(verify_proof("a.b", &EXPECTED, now).unwrap_err(), ProofError::Malformed(_)));
        assert!(matches!(
            verify_proof(&"x".repeat(MAX_PROOF_LEN + 1), &EXPECTED, now).unwrap_err(),
            ProofError::Malformed(_)
        ));
        // A query on the proof's URL is ignored like the request's.
        let q = proof(&key, |_, c| drop(c.insert("htu".into(), json!("https://as.example/v1/authorize?y=2#f"))));
        assert!(verify_proof(&q, &EXPECTED, now).is_ok());
    }
}
