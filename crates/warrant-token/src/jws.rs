//! Compact JWS (RFC 7515) with EdDSA only.
//!
//! Verification order: size, shape, header (`alg` must be exactly `EdDSA`, no `crit`,
//! the expected `typ`), key lookup by `kid`, signature (strict Ed25519), and only then
//! the claims are parsed. Nothing about a token is trusted before its signature checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::KeyPair;

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url parts with a JSON header and payload.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// An algorithm other than `EdDSA` (including `none` and HMAC).
    #[error("the token's algorithm `{0}` is not accepted; only `EdDSA` is")]
    UnsupportedAlg(String),
    /// A `crit` header, which this implementation does not understand.
    #[error("the token has a `crit` header, which is not supported")]
    CritHeader,
    /// The `typ` header is not the one this kind of token must carry.
    #[error("the token's type `{found}` is not `{expected}`")]
    WrongType {
        /// The `typ` found (empty when absent).
        found: String,
        /// The `typ` expected.
        expected: String,
    },
    /// No key with the token's `kid`.
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// The payload is not the expected claims.
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
}

/// The JOSE header of a token Warrant signs or accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `EdDSA` on accepted tokens.
    pub alg: String,
    /// The media type (`at+jwt`, `JWT`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The signing key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Critical extensions; refused when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

/// Chooses the key that verifies a token, by its `kid` (absent for some clients).
pub trait KeyResolver {
    /// The verifying key for `kid`, if known.
    fn resolve(&self, kid: Option<&str>) -> Option<VerifyingKey>;
}

/// A single known key: accepts any `kid` (used for an agent's registered key).
impl KeyResolver for VerifyingKey {
    fn resolve(&self, _kid: Option<&str>) -> Option<VerifyingKey> {
        Some(*self)
    }
}

/// `typ` normalized as RFC 7515 §4.1.9 says: case-insensitive, `application/` optional;
/// an absent `typ` is the empty string.
fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower.strip_prefix("application/").unwrap_or(&lower).to_owned()
}

/// Signs `claims` as a compact JWS with `typ` and the key's `kid`.
pub fn sign<T: Serialize>(key: &KeyPair, typ: &str, claims: &T) -> Result<String, serde_json::Error> {
    let header = Header { alg: "EdDSA".into(), typ: Some(typ.into()), kid: Some(key.kid().into()), crit: None };
    let mut out = B64.encode(serde_json::to_vec(&header)?);
    out.push('.');
    out.push_str(&B64.encode(serde_json::to_vec(claims)?));
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&B64.encode(signature.to_bytes()));
    Ok(out)
}

struct Parts<'a> {
    signing_input: &'a str,
    header: Header,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::TooLong);
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwsError::Malformed("expected three dot-separated parts"));
    };
    let header_bytes = B64.decode(h).map_err(|_| JwsError::Malformed("the header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Malformed("the header is not a JSON object"))?;
    let payload = B64.decode(p).map_err(|_| JwsError::Malformed("the payload is not base64url"))?;
    let signature = B64.decode(s).map_err(|_| JwsError::Malformed("the signature is not base64url"))?;
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(JwsError::Malformed("bad length"))?;
    Ok(Parts { signing_input, header, payload, signature })
}

/// Reads a token's header and claims WITHOUT verifying anything: only for choosing
/// which key to verify with (e.g. the `iss` of a client assertion).
pub fn peek_unverified<T: DeserializeOwned>(token: &str) -> Result<(Header, T), JwsError> {
    let parts = split(token)?;
    let claims = serde_json::from_slice(&parts.payload).map_err(|e| JwsError::Claims(e.to_string()))?;
    Ok((parts.header, claims))
}

/// Verifies a compact JWS and returns its header and claims. `expected_typ` lists the
/// accepted `typ` values; `""` in it accepts a token without `typ`.
pub fn verify<T: DeserializeOwned>(
    token: &str,
    expected_typ: &[&str],
    keys: &dyn KeyResolver,
) -> Result<(Header, T), JwsError> {
    let parts = split(token)?;
    if parts.header.alg != "EdDSA" {
        return Err(JwsError::UnsupportedAlg(parts.header.alg));
    }
    if parts.header.crit.is_some() {
        return Err(JwsError::CritHeader);
    }
    let found = normalize_typ(parts.header.typ.as_deref().unwrap_or_default());
    if !expected_typ.iter().any(|t| normalize_typ(t) == found) {
        return Err(JwsError::WrongType {
            found: parts.header.typ.clone().unwrap_or_default(),
            expected: expected_typ.join("` or `"),
        });
    }
    let key = keys.resolve(parts.header.kid.as_deref()).ok_or(JwsError::UnknownKey)?;
    let signature = Signature::from_slice(&parts.signature).map_err(|_| JwsError::BadSignature)?;
    key.verify_strict(parts.signing_input.as_bytes(), &signature).map_err(|_| JwsError::BadSignature)?;
    let claims = serde_json::from_slice(&parts.payload).map_err(|e| JwsError::Claims(e.to_string()))?;
    Ok((parts.header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let key = KeyPair::from_seed(&[3; 32]);
        let token = sign(&key, "JWT", &serde_json::json!({"a": 1})).unwrap();
        let (header, claims): (Header, serde_json::Value) = verify(&token, &["jwt"], &key.verifying_key()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(claims["a"], 1);
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_key_lookup() {
        let key = KeyPair::from_seed(&[3; 32]);
        for alg in ["none", "HS256", "RS256", "eddsa"] {
            let header = B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{}.", B64.encode(b"{}"));
            let err = verify::<serde_json::Value>(&token, &["JWT"], &key.verifying_key()).unwrap_err();
            assert_eq!(err, JwsError::UnsupportedAlg(alg.into()));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let key = KeyPair::from_seed(&[3; 32]);
        let token = sign(&key, "JWT", &serde_json::json!({"a": 1})).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"a":2}"#);
        parts[1] = &forged;
        let err = verify::<serde_json::Value>(&parts.join("."), &["JWT"], &key.verifying_key()).unwrap_err();
        assert_eq!(err, JwsError::BadSignature);
        let other = KeyPair::from_seed(&[4; 32]);
        assert_eq!(
            verify::<serde_json::Value>(&token, &["JWT"], &other.verifying_key()).unwrap_err(),
            JwsError::BadSignature
        );
    }

    #[test]
    fn wrong_type_and_garbage() {
        let key = KeyPair::from_seed(&[3; 32]);
        let token = sign(&key, "at+jwt", &serde_json::json!({})).unwrap();
        assert!(verify::<serde_json::Value>(&token, &["application/at+JWT"], &key.verifying_key()).is_ok());
        assert!(matches!(
            verify::<serde_json::Value>(&token, &["session+jwt"], &key.verifying_key()),
            Err(JwsError::WrongType { .. })
        ));
        for garbage in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(verify::<serde_json::Value>(garbage, &["JWT"], &key.verifying_key()).is_err());
        }
    }
}
