//! JWS compact serialization with EdDSA (Ed25519) only, and the tokens Warrant signs and
//! verifies with it:
//!
//! * [`keys`]: Ed25519 key pairs, JWKs and RFC 7638 thumbprints.
//! * [`jws`]: compact JWS signing and verification. Only `alg: EdDSA` is ever accepted:
//!   `none`, HMAC and every other algorithm are refused before any key is looked up.
//! * [`ring`]: the issuer's key ring: one active signing key plus retired keys that still
//!   verify until the warrants they signed have expired; the JWKS.
//! * [`warrant`]: signing and verifying warrants (RFC 9068 `at+jwt`).
//! * [`assertion`]: RFC 7523 client assertions, made by agents and checked by the issuer.
//! * [`session`]: human session tokens (they stand in for an IdP's ID token).
//!
//! The crate does no I/O and reads no clock: the current time is always a parameter.

pub mod assertion;
pub mod checkpoint;
pub mod dpop;
pub mod jws;
pub mod keys;
pub mod oidc;
pub mod ring;
pub mod seal;
pub mod session;
pub mod spiffe;
pub mod warrant;

pub use jws::{JwsError, KeyResolver};
pub use keys::{KeyError, KeyPair};
pub use ring::{KeyRing, KeySet};
pub use seal::{Kek, SealError};

/// Clock skew tolerated on `nbf`/`iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
