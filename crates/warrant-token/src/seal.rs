//! Signing keys sealed at rest with a key-encryption key (KEK).
//!
//! The database never holds a signing seed in the clear: each seed is sealed with
//! ChaCha20-Poly1305 under a 32-byte KEK kept outside the database (the environment or a
//! file on another disk). The sealed form is
//!
//! ```text
//! version (1 byte, 0x01) ‖ nonce (12 bytes, random per seal) ‖ ciphertext (32) ‖ tag (16)
//! ```
//!
//! with the associated data `warrant-sealed-key/v1 ‖ 0 ‖ purpose ‖ 0 ‖ kid`, so a sealed
//! seed only opens under its own key id and purpose: moving a sealed blob to another row
//! fails to open. Opening also checks that the seed's thumbprint is the row's `kid`.
//!
//! No I/O and no randomness here: the caller supplies the nonce from a CSPRNG.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use zeroize::Zeroizing;

use crate::keys::KeyPair;

/// The version byte of the sealed form this build writes.
pub const SEALED_V1: u8 = 1;
/// The length of a version 1 sealed seed.
pub const SEALED_V1_LEN: usize = 1 + 12 + 32 + 16;
/// The length of the nonce a seal takes.
pub const NONCE_LEN: usize = 12;

const AAD_PREFIX: &[u8] = b"warrant-sealed-key/v1";

/// Why a KEK could not be read or a sealed seed could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The KEK text is not base64 of exactly 32 bytes.
    #[error("the key-encryption key must be base64 of exactly 32 bytes")]
    BadKek,
    /// The sealed form has an unknown version byte or the wrong length.
    #[error("the sealed key has an unknown format (version or length)")]
    Format,
    /// Authentication failed: a different KEK sealed it, or the blob, its `kid` or its
    /// purpose were changed.
    #[error("the sealed key does not open with this key-encryption key (wrong KEK, or the row was altered)")]
    Open,
    /// The seed opened but its thumbprint is not the row's key id.
    #[error("the sealed key does not belong to its key id")]
    KidMismatch,
    /// The cipher refused to seal (cannot happen for a 32-byte seed).
    #[error("the key could not be sealed")]
    Seal,
}

/// A 32-byte key-encryption key. Zeroized on drop; its `Debug` never shows it.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

fn aad(purpose: &str, kid: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + purpose.len() + kid.len() + 2);
    aad.extend_from_slice(AAD_PREFIX);
    aad.push(0);
    aad.extend_from_slice(purpose.as_bytes());
    aad.push(0);
    aad.extend_from_slice(kid.as_bytes());
    aad
}

impl Kek {
    /// A KEK from 32 bytes (from a CSPRNG).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(Zeroizing::new(bytes))
    }

    /// Reads a KEK from base64 (standard or URL-safe alphabet, padded or not; surrounding
    /// whitespace is ignored) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or(SealError::BadKek)?;
        let array = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SealError::BadKek)?;
        Ok(Kek::from_bytes(array))
    }

    /// The KEK as standard base64 (for writing a new KEK file).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_slice()))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_slice()))
    }

    /// Seals `seed`, bound to `purpose` and `kid`, with `nonce` (random, never reused
    /// under this KEK).
    pub fn seal(
        &self,
        purpose: &str,
        kid: &str,
        seed: &[u8; 32],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, SealError> {
        let mut buffer = Zeroizing::new(*seed);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad(purpose, kid), buffer.as_mut_slice())
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(SEALED_V1_LEN);
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(buffer.as_slice());
        out.extend_from_slice(tag.as_slice());
        Ok(out)
    }

    /// Opens a sealed seed stored for `purpose` and `kid`.
    pub fn open(&self, purpose: &str, kid: &str, sealed: &[u8]) -> Result<Zeroizing<[u8; 32]>, SealError> {
        if sealed.len() != SEALED_V1_LEN {
            return Err(SealError::Format);
        }
        let (version, rest) = sealed.split_first().ok_or(SealError::Format)?;
        if *version != SEALED_V1 {
            return Err(SealError::Format);
        }
        let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or(SealError::Format)?;
        let (ciphertext, tag) = rest.split_at_checked(32).ok_or(SealError::Format)?;
        let mut buffer = Zeroizing::new(<[u8; 32]>::try_from(ciphertext).map_err(|_| SealError::Format)?);
        self.cipher()
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad(purpose, kid),
                buffer.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| SealError::Open)?;
        Ok(buffer)
    }

    /// Seals a key pair's seed under its own key id.
    pub fn seal_pair(&self, purpose: &str, pair: &KeyPair, nonce: [u8; NONCE_LEN]) -> Result<Vec<u8>, SealError> {
        self.seal(purpose, pair.kid(), &pair.seed(), nonce)
    }

    /// Opens a sealed seed into its key pair, checking that the pair's thumbprint is `kid`.
    pub fn open_pair(&self, purpose: &str, kid: &str, sealed: &[u8]) -> Result<KeyPair, SealError> {
        let seed = self.open(purpose, kid, sealed)?;
        let pair = KeyPair::from_seed(&seed);
        if pair.kid() != kid {
            return Err(SealError::KidMismatch);
        }
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_and_every_change_is_refused() {
        let kek = Kek::from_bytes([7; 32]);
        let pair = KeyPair::from_seed(&[9; 32]);
        let sealed = kek.seal_pair("warrant", &pair, [1; 12]).unwrap();
        assert_eq!(sealed.len(), SEALED_V1_LEN);
        assert_eq!(sealed[0], SEALED_V1);
        assert!(!sealed.windows(32).any(|w| w == [9; 32]), "the seed is not in the sealed form");
        assert_eq!(kek.open_pair("warrant", pair.kid(), &sealed).unwrap().kid(), pair.kid());
        // Another KEK, another purpose, another kid, a flipped bit, another version.
        assert_eq!(Kek::from_bytes([8; 32]).open("warrant", pair.kid(), &sealed).unwrap_err(), SealError::Open);
        assert_eq!(kek.open("checkpoint", pair.kid(), &sealed).unwrap_err(), SealError::Open);
        assert_eq!(kek.open("warrant", "other", &sealed).unwrap_err(), SealError::Open);
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(kek.open("warrant", pair.kid(), &flipped).unwrap_err(), SealError::Open);
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(kek.open("warrant", pair.kid(), &v2).unwrap_err(), SealError::Format);
        assert_eq!(kek.open("warrant", pair.kid(), &[9; 32]).unwrap_err(), SealError::Format);
        // A seed sealed under a kid that is not its thumbprint.
        let wrong = kek.seal("warrant", "not-its-kid", &[9; 32], [2; 12]).unwrap();
        assert_eq!(kek.open_pair("warrant", "not-its-kid", &wrong).unwrap_err(), SealError::KidMismatch);
    }

    #[test]
    fn nonces_differ_so_seals_differ_and_kek_text_round_trips() {
        let kek = Kek::from_bytes([7; 32]);
        let a = kek.seal("warrant", "k", &[9; 32], [1; 12]).unwrap();
        let b = kek.seal("warrant", "k", &[9; 32], [2; 12]).unwrap();
        assert_ne!(a, b);
        let text = kek.to_base64();
        let back = Kek::from_base64(&format!(" {}\n", text.as_str())).unwrap();
        assert_eq!(*back.open("warrant", "k", &a).unwrap(), [9; 32]);
        assert_eq!(Kek::from_base64("c2hvcnQ=").unwrap_err(), SealError::BadKek);
        assert_eq!(Kek::from_base64("not base64!").unwrap_err(), SealError::BadKek);
        assert_eq!(format!("{kek:?}"), "Kek(..)");
    }
}
