//! The issuer's key ring: one active signing key, plus retired keys that keep verifying
//! (and stay in the JWKS) until every warrant they signed has expired.

use ed25519_dalek::VerifyingKey;

use crate::jws::KeyResolver;
use crate::keys::KeyPair;

/// The active signing key and every key that still verifies.
#[derive(Debug, Clone)]
pub struct KeyRing {
    active: KeyPair,
    retired: Vec<(String, VerifyingKey)>,
}

impl KeyRing {
    /// A ring that signs with `active` and also verifies with `retired` (kid, key) pairs.
    pub fn new(active: KeyPair, retired: Vec<(String, VerifyingKey)>) -> Self {
        let retired = retired.into_iter().filter(|(kid, _)| kid != active.kid()).collect();
        KeyRing { active, retired }
    }

    /// The key new tokens are signed with.
    pub fn active(&self) -> &KeyPair {
        &self.active
    }

    /// The ids of every key in the ring, active first.
    pub fn kids(&self) -> Vec<String> {
        std::iter::once(self.active.kid().to_owned()).chain(self.retired.iter().map(|(k, _)| k.clone())).collect()
    }

    /// The JWKS document (RFC 7517) with every key that still verifies, active first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = std::iter::once((self.active.kid().to_owned(), self.active.verifying_key()))
            .chain(self.retired.iter().cloned())
            .map(|(kid, key)| {
                let jwk = crate::keys::public_jwk(&key, Some(kid));
                serde_json::json!({
                    "kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "kid": jwk.kid,
                    "use": "sig", "alg": "EdDSA",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

impl KeyResolver for KeyRing {
    fn resolve(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        let kid = kid?;
        if kid == self.active.kid() {
            return Some(self.active.verifying_key());
        }
        self.retired.iter().find(|(k, _)| k == kid).map(|(_, key)| *key)
    }
}

/// A set of public keys read from a JWKS document: verifies, never signs. Used by
/// clients (`warrant token inspect`) that fetch the issuer's JWKS.
#[derive(Debug, Clone, Default)]
pub struct KeySet(Vec<(String, VerifyingKey)>);

impl KeySet {
    /// Reads every Ed25519 key with a `kid` from a JWKS document; other keys are skipped.
    pub fn from_jwks(jwks: &serde_json::Value) -> Self {
        let keys = jwks.get("keys").and_then(|k| k.as_array()).map(Vec::as_slice).unwrap_or_default();
        KeySet(
            keys.iter()
                .filter_map(|k| {
                    let jwk: warrant_core::PublicJwk = serde_json::from_value(k.clone()).ok()?;
                    let kid = jwk.kid.clone()?;
                    Some((kid, crate::keys::verifying_key(&jwk).ok()?))
                })
                .collect(),
        )
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl KeyResolver for KeySet {
    fn resolve(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        let kid = kid?;
        self.0.iter().find(|(k, _)| k == kid).map(|(_, key)| *key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws;

    #[test]
    fn jwks_round_trip_verifies_active_and_retired() {
        let old = KeyPair::from_seed(&[1; 32]);
        let new = KeyPair::from_seed(&[2; 32]);
        let ring = KeyRing::new(new.clone(), vec![(old.kid().to_owned(), old.verifying_key())]);
        let set = KeySet::from_jwks(&ring.jwks());
        assert_eq!(set.len(), 2);
        for key in [&old, &new] {
            let token = jws::sign(key, "JWT", &serde_json::json!({})).unwrap();
            assert!(jws::verify::<serde_json::Value>(&token, &["JWT"], &set).is_ok());
            assert!(jws::verify::<serde_json::Value>(&token, &["JWT"], &ring).is_ok());
        }
        let stranger = KeyPair::from_seed(&[3; 32]);
        let token = jws::sign(&stranger, "JWT", &serde_json::json!({})).unwrap();
        assert_eq!(jws::verify::<serde_json::Value>(&token, &["JWT"], &set).unwrap_err(), jws::JwsError::UnknownKey);
    }
}
