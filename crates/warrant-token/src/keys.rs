//! Ed25519 key pairs and their JWK form (RFC 8037), with RFC 7638 thumbprints as key ids.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use warrant_core::PublicJwk;
use zeroize::Zeroizing;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not an `OKP`/`Ed25519` JWK.
    #[error("the key must be an Ed25519 JWK (`kty` `OKP`, `crv` `Ed25519`), found `kty` `{kty}`, `crv` `{crv}`")]
    NotEd25519 {
        /// The `kty` found.
        kty: String,
        /// The `crv` found.
        crv: String,
    },
    /// `x` or `d` is not 32 bytes of base64url.
    #[error("the key's `{0}` member is not 32 bytes of base64url")]
    BadBytes(&'static str),
    /// `x` is not a valid Ed25519 point.
    #[error("the key's `x` member is not a valid Ed25519 public key")]
    BadPoint,
    /// The private part does not match the public part.
    #[error("the key's `d` and `x` members do not belong together")]
    Mismatch,
}

fn decode32(text: &str, member: &'static str) -> Result<[u8; 32], KeyError> {
    let bytes = B64.decode(text).map_err(|_| KeyError::BadBytes(member))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadBytes(member))
}

/// The RFC 7638 thumbprint of an Ed25519 public key, base64url: a stable key id.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let x = B64.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public JWK for a verifying key.
pub fn public_jwk(key: &VerifyingKey, kid: Option<String>) -> PublicJwk {
    PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: B64.encode(key.as_bytes()), kid }
}

/// Reads a verifying key from a public JWK, checking type, curve and point.
pub fn verifying_key(jwk: &PublicJwk) -> Result<VerifyingKey, KeyError> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(KeyError::NotEd25519 { kty: jwk.kty.clone(), crv: jwk.crv.clone() });
    }
    let x = decode32(&jwk.x, "x")?;
    let key = VerifyingKey::from_bytes(&x).map_err(|_| KeyError::BadPoint)?;
    if key.is_weak() {
        return Err(KeyError::BadPoint);
    }
    Ok(key)
}

/// At most this many keys are kept decoded by a [`DecodedKeys`].
pub const MAX_DECODED: usize = 65_536;

/// Verifying keys already read from their JWK, by the JWK's `x`: a key that verifies
/// again (an agent's next client assertion) is not decompressed again (a curve-point
/// decompression, about a tenth of a mint's own CPU). Holds at most [`MAX_DECODED`]
/// keys and starts again empty when full. A JWK of another type or curve is refused as
/// by [`verifying_key`], whatever its `x`.
#[derive(Debug, Default)]
pub struct DecodedKeys {
    keys: std::sync::RwLock<std::collections::HashMap<String, VerifyingKey>>,
}

impl DecodedKeys {
    /// The verifying key of `jwk`, as [`verifying_key`] reads it.
    pub fn verifying_key(&self, jwk: &PublicJwk) -> Result<VerifyingKey, KeyError> {
        if jwk.kty == "OKP" && jwk.crv == "Ed25519" {
            if let Some(key) = self.keys.read().ok().and_then(|keys| keys.get(&jwk.x).copied()) {
                return Ok(key);
            }
        }
        let key = verifying_key(jwk)?;
        if let Ok(mut keys) = self.keys.write() {
            if keys.len() >= MAX_DECODED {
                keys.clear();
            }
            keys.insert(jwk.x.clone(), key);
        }
        Ok(key)
    }
}

/// A signing key with its key id. The secret is zeroized when dropped.
#[derive(Clone)]
pub struct KeyPair {
    kid: String,
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A key pair from a 32-byte secret seed (from a CSPRNG, or read back from storage).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let kid = thumbprint(&signing.verifying_key());
        KeyPair { kid, signing }
    }

    /// The key id (the RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The secret seed, for storage. Handle with care.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public JWK, with `kid`.
    pub fn public_jwk(&self) -> PublicJwk {
        public_jwk(&self.signing.verifying_key(), Some(self.kid.clone()))
    }

    /// The private JWK (RFC 8037, with `d`), as a JSON value for writing to a key file.
    pub fn private_jwk_json(&self) -> serde_json::Value {
        let public = self.public_jwk();
        serde_json::json!({
            "kty": public.kty, "crv": public.crv, "x": public.x,
            "d": B64.encode(self.signing.to_bytes()), "kid": self.kid,
        })
    }

    /// Reads a private JWK (with `d`), checking that `x` matches when present.
    pub fn from_private_jwk(value: &serde_json::Value) -> Result<Self, KeyError> {
        let member = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let (kty, crv) = (member("kty"), member("crv"));
        if kty != "OKP" || crv != "Ed25519" {
            return Err(KeyError::NotEd25519 { kty, crv });
        }
        let seed = Zeroizing::new(decode32(&member("d"), "d")?);
        let pair = KeyPair::from_seed(&seed);
        let x = member("x");
        if !x.is_empty() && x != B64.encode(pair.verifying_key().as_bytes()) {
            return Err(KeyError::Mismatch);
        }
        Ok(pair)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.signing.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded key is the key [`verifying_key`] reads, the second time too; and what
    /// [`verifying_key`] refuses is refused, also for an `x` already decoded.
    #[test]
    fn decoded_keys_read_as_verifying_key_does() {
        let decoded = DecodedKeys::default();
        let pair = KeyPair::from_seed(&[7; 32]);
        let jwk = pair.public_jwk();
        assert_eq!(decoded.verifying_key(&jwk).unwrap(), pair.verifying_key());
        assert_eq!(decoded.verifying_key(&jwk).unwrap(), pair.verifying_key());
        let other_curve = PublicJwk { crv: "X25519".into(), ..jwk.clone() };
        assert!(matches!(decoded.verifying_key(&other_curve), Err(KeyError::NotEd25519 { .. })));
        let other_type = PublicJwk { kty: "EC".into(), ..jwk };
        assert!(matches!(decoded.verifying_key(&other_type), Err(KeyError::NotEd25519 { .. })));
        let short = PublicJwk { x: "AAAA".into(), ..pair.public_jwk() };
        assert_eq!(decoded.verifying_key(&short), Err(KeyError::BadBytes("x")));
        // The identity point is weak: refused, and not remembered.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicJwk { x: B64.encode(identity), ..pair.public_jwk() };
        assert_eq!(decoded.verifying_key(&weak), Err(KeyError::BadPoint));
        assert_eq!(decoded.verifying_key(&weak), Err(KeyError::BadPoint));
    }

    #[test]
    fn private_jwk_round_trips_and_public_jwk_validates() {
        let pair = KeyPair::from_seed(&[9; 32]);
        let back = KeyPair::from_private_jwk(&pair.private_jwk_json()).unwrap();
        assert_eq!(back.kid(), pair.kid());
        assert_eq!(verifying_key(&pair.public_jwk()).unwrap(), pair.verifying_key());
    }

    #[test]
    fn rfc8037_thumbprint_vector() {
        // RFC 8037 appendix A.3: the thumbprint of the A.2 public key.
        let jwk = PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: None,
        };
        let key = verifying_key(&jwk).unwrap();
        assert_eq!(thumbprint(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn wrong_curve_and_bad_points_are_refused() {
        let mut jwk = KeyPair::from_seed(&[1; 32]).public_jwk();
        jwk.crv = "X25519".into();
        assert!(matches!(verifying_key(&jwk), Err(KeyError::NotEd25519 { .. })));
        jwk.crv = "Ed25519".into();
        jwk.x = "AAAA".into();
        assert_eq!(verifying_key(&jwk), Err(KeyError::BadBytes("x")));
    }
}
