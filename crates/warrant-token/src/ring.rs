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
        let retired = retired
            .into_iter()
            .filter(|(kid, _)| kid != active.kid())
            .collect();
        KeyRing { active, retired }
    }

    /// The key new tokens are signed with.
    pub fn active(&self) -> &KeyPair {
        &self.active
    }

    /// The ids of every key in the ring, active first.
    pub fn kids(&self) -> Vec<String> {
        std::iter::once(self.active.kid().to_owned())
            .chain(self.retired.iter().map(|(k, _)| k.clone()))
            .collect()
    }

    /// The JWKS document (RFC 7517) with every key that still verifies, active first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> =
            std::iter::once((self.active.kid().to_owned(), self.active.verifying_key()))
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
        self.retired
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| *key)
    }
}
