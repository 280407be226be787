//! Signed checkpoints of the audit chain head.
//!
//! A checkpoint is a compact JWS (`typ: audit-checkpoint+jwt`, EdDSA) by the issuer's
//! active key over the statement `{seq, head_hash, at}`: "the audit record `seq` has hash
//! `head_hash` (hex)". A checkpoint stays verifiable for as long as the log is kept, so it
//! is checked against *every* key the issuer ever used ([`KeyArchive`]), not the JWKS,
//! which drops keys once their warrants have expired.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use warrant_core::audit::{hash_hex, parse_hash_hex};
use warrant_core::UnixTime;

use crate::jws::{self, JwsError, KeyResolver};
use crate::keys::KeyPair;

/// The `typ` header of a checkpoint.
pub const CHECKPOINT_TYP: &str = "audit-checkpoint+jwt";

/// What a checkpoint states about the audit chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The head record's sequence number.
    pub seq: u64,
    /// The head record's hash.
    pub head_hash: [u8; 32],
    /// When the checkpoint was taken (the head record's time).
    pub at: UnixTime,
}

/// The payload on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    seq: u64,
    head_hash: String,
    at: UnixTime,
}

/// A checkpoint whose signature verified, with the id of the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The statement.
    pub checkpoint: Checkpoint,
    /// The signing key's id.
    pub kid: String,
}

/// Why a checkpoint could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointSignError {
    /// The statement could not be encoded.
    #[error("the checkpoint cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The JWS is malformed, of another type, signed by an unknown key, or forged.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// The statement's `head_hash` is not 64 hex digits.
    #[error("the checkpoint's `head_hash` is not a SHA-256 hash in hex")]
    BadHash,
    /// The token has no `kid`.
    #[error("the checkpoint names no key")]
    NoKid,
}

/// Signs `checkpoint` with `key` (the issuer's active key).
pub fn sign(key: &KeyPair, checkpoint: &Checkpoint) -> Result<String, CheckpointSignError> {
    let claims = Claims { seq: checkpoint.seq, head_hash: hash_hex(&checkpoint.head_hash), at: checkpoint.at };
    Ok(jws::sign(key, CHECKPOINT_TYP, &claims)?)
}

/// Verifies a checkpoint's signature and type against `keys` and returns its statement.
pub fn verify(token: &str, keys: &dyn KeyResolver) -> Result<VerifiedCheckpoint, CheckpointError> {
    let (header, claims): (_, Claims) = jws::verify(token, &[CHECKPOINT_TYP], keys)?;
    let kid = header.kid.ok_or(CheckpointError::NoKid)?;
    let head_hash = parse_hash_hex(&claims.head_hash).map_err(|_| CheckpointError::BadHash)?;
    Ok(VerifiedCheckpoint { checkpoint: Checkpoint { seq: claims.seq, head_hash, at: claims.at }, kid })
}

/// Every signing key the issuer ever used, retired or not: the resolver checkpoints are
/// verified with. Keys are looked up by `kid`; a token without `kid` resolves to nothing.
#[derive(Debug, Clone, Default)]
pub struct KeyArchive(Vec<(String, VerifyingKey)>);

impl KeyArchive {
    /// An archive of (kid, key) pairs.
    pub fn new(keys: Vec<(String, VerifyingKey)>) -> Self {
        KeyArchive(keys)
    }

    /// Adds a key under its RFC 7638 thumbprint.
    pub fn insert(&mut self, key: VerifyingKey) {
        let kid = crate::keys::thumbprint(&key);
        if self.resolve(Some(&kid)).is_none() {
            self.0.push((kid, key));
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<VerifyingKey> for KeyArchive {
    fn from_iter<T: IntoIterator<Item = VerifyingKey>>(iter: T) -> Self {
        let mut archive = KeyArchive::default();
        for key in iter {
            archive.insert(key);
        }
        archive
    }
}

impl KeyResolver for KeyArchive {
    fn resolve(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        let kid = kid?;
        self.0.iter().find(|(k, _)| k == kid).map(|(_, key)| *key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Checkpoint {
        Checkpoint { seq: 1000, head_hash: [0xa5; 32], at: UnixTime(1_700_000_000) }
    }

    #[test]
    fn sign_then_verify_with_a_retired_key() {
        let old = KeyPair::from_seed(&[1; 32]);
        let new = KeyPair::from_seed(&[2; 32]);
        let archive: KeyArchive = [old.verifying_key(), new.verifying_key()].into_iter().collect();
        assert_eq!(archive.len(), 2);
        let token = sign(&old, &statement()).unwrap();
        let verified = verify(&token, &archive).unwrap();
        assert_eq!(verified.checkpoint, statement());
        assert_eq!(verified.kid, old.kid());
        let (header, claims): (jws::Header, serde_json::Value) = jws::peek_unverified(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(CHECKPOINT_TYP));
        assert_eq!(claims["head_hash"], "a5".repeat(32));
        assert_eq!(claims["seq"], 1000);
    }

    #[test]
    fn unknown_keys_forgeries_and_other_token_types_are_refused() {
        let key = KeyPair::from_seed(&[1; 32]);
        let archive: KeyArchive = [key.verifying_key()].into_iter().collect();
        let stranger = KeyPair::from_seed(&[3; 32]);
        let token = sign(&stranger, &statement()).unwrap();
        assert_eq!(verify(&token, &archive), Err(CheckpointError::Jws(JwsError::UnknownKey)));

        let token = sign(&key, &statement()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = Claims { seq: 999, head_hash: "a5".repeat(32), at: UnixTime(1_700_000_000) };
        use base64::Engine as _;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(verify(&parts.join("."), &archive), Err(CheckpointError::Jws(JwsError::BadSignature)));

        let warrant_like = jws::sign(&key, "at+jwt", &serde_json::json!({"seq": 1})).unwrap();
        assert!(matches!(verify(&warrant_like, &archive), Err(CheckpointError::Jws(JwsError::WrongType { .. }))));

        let bad_hash =
            jws::sign(&key, CHECKPOINT_TYP, &serde_json::json!({"seq": 1, "head_hash": "zz", "at": 1})).unwrap();
        assert_eq!(verify(&bad_hash, &archive), Err(CheckpointError::BadHash));
    }
}
