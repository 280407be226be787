//! Human session tokens: in the embedded default they stand in for an IdP's ID token.
//! Signed by the issuer with `typ: session+jwt`, so a session can never be mistaken for
//! a warrant (or the other way round).

use serde::{Deserialize, Serialize};
use warrant_core::{HumanId, UnixTime};

use crate::jws::{self, KeyResolver};
use crate::keys::KeyPair;
use crate::warrant::{check_issued, VerifyError};

/// The `typ` header of a session token.
pub const SESSION_TYP: &str = "session+jwt";

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The issuer URL.
    pub iss: String,
    /// The human.
    pub sub: HumanId,
    /// The audience: the issuer itself.
    pub aud: String,
    /// Expiry.
    pub exp: UnixTime,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// Unique id.
    pub jti: String,
}

/// Signs a session token.
pub fn sign_session(key: &KeyPair, claims: &SessionClaims) -> Result<String, serde_json::Error> {
    jws::sign(key, SESSION_TYP, claims)
}

/// Verifies a session token: signature, type, issuer, expiry.
pub fn verify_session(
    token: &str,
    keys: &dyn KeyResolver,
    issuer: &str,
    now: UnixTime,
) -> Result<SessionClaims, VerifyError> {
    let (_, claims): (_, SessionClaims) = jws::verify(token, &[SESSION_TYP], keys)?;
    check_issued(&claims.iss, claims.exp, claims.nbf, issuer, now)?;
    Ok(claims)
}

/// The `typ` header of an approver token: a human's own, short-lived credential for
/// deciding approvals and attesting agents. It is never accepted as the subject of a
/// token exchange, and a session token is never accepted in its place, so an agent that
/// holds the session that started its work cannot approve its own step-up.
pub const APPROVER_TYP: &str = "approver+jwt";

/// Signs an approver token (same claims as a session, another `typ`).
pub fn sign_approver(key: &KeyPair, claims: &SessionClaims) -> Result<String, serde_json::Error> {
    jws::sign(key, APPROVER_TYP, claims)
}

/// Verifies an approver token: signature, type (`approver+jwt` only), issuer, expiry.
pub fn verify_approver(
    token: &str,
    keys: &dyn KeyResolver,
    issuer: &str,
    now: UnixTime,
) -> Result<SessionClaims, VerifyError> {
    let (_, claims): (_, SessionClaims) = jws::verify(token, &[APPROVER_TYP], keys)?;
    check_issued(&claims.iss, claims.exp, claims.nbf, issuer, now)?;
    Ok(claims)
}
