//! RFC 7523 client assertions: short-lived JWTs an agent signs with its own key to
//! authenticate to the token endpoint (`iss` = `sub` = the agent id, `aud` = the token
//! endpoint URL or the issuer). Replay (`jti` reuse) is the caller's check, since it
//! needs storage.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use warrant_core::{AgentId, UnixTime};

use crate::jws::{self, JwsError};
use crate::keys::KeyPair;
use crate::LEEWAY_SECS;

/// The longest lifetime (`exp` minus now) an assertion may have, in seconds: an hour, as
/// common OAuth client libraries (authlib among them) make them by default. An assertion
/// is single-use whatever its lifetime (its `jti` is spent until it expires).
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;
/// The lifetime of assertions [`make_assertion`] creates, in seconds.
pub const DEFAULT_ASSERTION_LIFETIME: i64 = 60;

/// Why a client assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// The JWS was refused.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `iss` and `sub` are not both the agent id.
    #[error("the client assertion's `iss` and `sub` must both be the agent id")]
    WrongSubject,
    /// `aud` names neither the token endpoint nor the issuer.
    #[error("the client assertion's `aud` must be the token endpoint or the issuer")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the client assertion has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the client assertion is not valid yet")]
    NotYetValid,
    /// `exp` is too far in the future.
    #[error("the client assertion lives too long: at most {MAX_ASSERTION_LIFETIME} seconds")]
    TooLongLived,
    /// `jti` is missing or unreasonable.
    #[error("the client assertion needs a `jti` of 1 to 256 characters")]
    BadJti,
}

/// `aud` as RFC 7519 allows: one string or an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[&str]) -> bool {
        match self {
            Audience::One(a) => accepted.contains(&a.as_str()),
            Audience::Many(list) => list.iter().any(|a| accepted.contains(&a.as_str())),
        }
    }
}

/// The claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The agent id.
    pub iss: String,
    /// The agent id.
    pub sub: String,
    /// The token endpoint or issuer.
    pub aud: Audience,
    /// Expiry.
    pub exp: UnixTime,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<UnixTime>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<UnixTime>,
    /// Unique id, single use.
    #[serde(default)]
    pub jti: String,
}

/// Creates a client assertion for `agent`, signed with its key.
pub fn make_assertion(
    key: &KeyPair,
    agent: &AgentId,
    audience: &str,
    now: UnixTime,
    jti: &str,
) -> Result<String, serde_json::Error> {
    let claims = AssertionClaims {
        iss: agent.to_string(),
        sub: agent.to_string(),
        aud: Audience::One(audience.to_owned()),
        exp: now.plus(DEFAULT_ASSERTION_LIFETIME),
        iat: Some(now),
        nbf: None,
        jti: jti.to_owned(),
    };
    jws::sign(key, "JWT", &claims)
}

/// The agent an assertion claims to come from, read WITHOUT verification, so that the
/// caller can look up that agent's key.
pub fn claimed_agent(token: &str) -> Result<AgentId, AssertionError> {
    let (_, claims): (_, AssertionClaims) = jws::peek_unverified(token)?;
    AgentId::parse(&claims.sub).map_err(|_| AssertionError::WrongSubject)
}

/// Verifies a client assertion from `agent` signed with its registered `key`.
pub fn verify_assertion(
    token: &str,
    key: &VerifyingKey,
    agent: &AgentId,
    audiences: &[&str],
    now: UnixTime,
) -> Result<AssertionClaims, AssertionError> {
    let (_, claims): (_, AssertionClaims) = jws::verify(token, &["JWT", ""], key)?;
    if claims.iss != agent.as_str() || claims.sub != agent.as_str() {
        return Err(AssertionError::WrongSubject);
    }
    if !claims.aud.contains_any(audiences) {
        return Err(AssertionError::WrongAudience);
    }
    if claims.exp <= now {
        return Err(AssertionError::Expired);
    }
    if now.until(claims.exp) > MAX_ASSERTION_LIFETIME {
        return Err(AssertionError::TooLongLived);
    }
    let future = |t: Option<UnixTime>| t.is_some_and(|t| t > now.plus(LEEWAY_SECS));
    if future(claims.nbf) || future(claims.iat) {
        return Err(AssertionError::NotYetValid);
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(AssertionError::BadJti);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_round_trip_and_checks() {
        let key = KeyPair::from_seed(&[5; 32]);
        let agent = AgentId::from_random([1; 12]);
        let now = UnixTime(1_000_000);
        let token = make_assertion(&key, &agent, "http://issuer", now, "j1").unwrap();
        assert_eq!(claimed_agent(&token).unwrap(), agent);
        let vk = key.verifying_key();
        assert!(verify_assertion(&token, &vk, &agent, &["http://issuer"], now).is_ok());
        assert_eq!(verify_assertion(&token, &vk, &agent, &["http://other"], now), Err(AssertionError::WrongAudience));
        assert_eq!(
            verify_assertion(&token, &vk, &agent, &["http://issuer"], now.plus(61)),
            Err(AssertionError::Expired)
        );
        let other = AgentId::from_random([2; 12]);
        assert_eq!(verify_assertion(&token, &vk, &other, &["http://issuer"], now), Err(AssertionError::WrongSubject));
        // Minted far in the future relative to the verifier's clock: too long-lived.
        let late = make_assertion(&key, &agent, "http://issuer", now.plus(3601), "j2").unwrap();
        assert_eq!(verify_assertion(&late, &vk, &agent, &["http://issuer"], now), Err(AssertionError::TooLongLived));
    }
}
