//! Warrants: RFC 9068 JWT access tokens (`typ: at+jwt`) signed by the issuer's key ring.

use warrant_core::{UnixTime, WarrantClaims};

use crate::jws::{self, JwsError, KeyResolver};
use crate::keys::KeyPair;
use crate::LEEWAY_SECS;

/// The `typ` header of a warrant (RFC 9068 §2.1).
pub const WARRANT_TYP: &str = "at+jwt";

/// Why an issued token (warrant or session) failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The JWS itself was refused.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not this issuer.
    #[error("the token was issued by `{0}`, not by this server")]
    WrongIssuer(String),
}

/// Signs a warrant with `key`.
pub fn sign_warrant(key: &KeyPair, claims: &WarrantClaims) -> Result<String, serde_json::Error> {
    jws::sign(key, WARRANT_TYP, claims)
}

/// Checks `iss`, `exp` and `nbf` of a token this server issued.
pub(crate) fn check_issued(
    iss: &str,
    exp: UnixTime,
    nbf: UnixTime,
    issuer: &str,
    now: UnixTime,
) -> Result<(), VerifyError> {
    if iss != issuer {
        return Err(VerifyError::WrongIssuer(iss.to_owned()));
    }
    if exp <= now {
        return Err(VerifyError::Expired);
    }
    if nbf > now.plus(LEEWAY_SECS) {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// Verifies a warrant: signature by a key of the ring, type, issuer, expiry.
pub fn verify_warrant(
    token: &str,
    keys: &dyn KeyResolver,
    issuer: &str,
    now: UnixTime,
) -> Result<WarrantClaims, VerifyError> {
    let (_, claims): (_, WarrantClaims) = jws::verify(token, &[WARRANT_TYP], keys)?;
    check_issued(&claims.iss, claims.exp, claims.nbf, issuer, now)?;
    Ok(claims)
}
