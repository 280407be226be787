//! SPIFFE workload identity for agents (the OAuth SPIFFE client authentication draft):
//! SPIFFE IDs, and JWT-SVIDs presented as client assertions
//! (`urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`), verified against the trust
//! domain's bundle (a JWKS whose keys have `use` `jwt-svid`). Checked: the signature
//! (`RS256`, `ES256` or `EdDSA`, the key found by `kid`), `sub` a SPIFFE ID of the bundle's
//! trust domain, `aud` naming this server, `exp` (required, at most an hour ahead), `iat`
//! and `nbf` not in the future. `iss` is not read (SPIFFE does not define it); `jti` is
//! optional, and single-use when present (the caller's check).

use serde_json::Value;
use warrant_core::UnixTime;

use crate::oidc::{json_part, signed_payload, split, string_list, time_claim, IdTokenError, ProviderKeys};

/// The `client_assertion_type` of a JWT-SVID.
pub const ASSERTION_TYPE_JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// The longest lifetime a JWT-SVID may have left, seconds.
pub const MAX_SVID_LIFETIME: i64 = 3600;
/// How far a workload's clock may be from ours, seconds.
pub const LEEWAY_SECS: i64 = 30;
/// The longest SPIFFE ID, in bytes (the SPIFFE ID specification's limit).
pub const MAX_SPIFFE_ID: usize = 2048;

/// A SPIFFE ID: `spiffe://<trust domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    text: String,
    domain_len: usize,
}

/// Why a SPIFFE ID or a JWT-SVID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// Not a valid SPIFFE ID.
    #[error("`{0}` is not a SPIFFE ID (`spiffe://<trust domain>/<path>`, lowercase trust domain, no empty, `.` or `..` segments)")]
    BadId(String),
    /// The JWT is malformed, or its signature or key is refused.
    #[error("the JWT-SVID: {0}")]
    Token(#[from] IdTokenError),
    /// `aud` does not name this server.
    #[error("the JWT-SVID's `aud` does not name this server")]
    Audience,
    /// Expired, too long-lived, or not valid yet.
    #[error("the JWT-SVID {0}")]
    Time(&'static str),
    /// A claim is missing or malformed.
    #[error("the JWT-SVID's claims are invalid: {0}")]
    Claims(String),
}

impl SpiffeId {
    /// Parses a SPIFFE ID (SPIFFE ID specification §2): scheme `spiffe`, a trust domain of
    /// lowercase letters, digits, `.`, `-` and `_`, and a path of non-empty segments of
    /// letters, digits, `.`, `-` and `_` (not `.` or `..`), without a trailing `/`, query
    /// or fragment.
    pub fn parse(text: &str) -> Result<SpiffeId, SvidError> {
        let bad = || SvidError::BadId(text.chars().take(200).collect());
        if text.len() > MAX_SPIFFE_ID {
            return Err(bad());
        }
        let rest = text.strip_prefix("spiffe://").ok_or_else(bad)?;
        let (domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let domain_ok = !domain.is_empty()
            && domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
        if !domain_ok {
            return Err(bad());
        }
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                let ok = !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !ok {
                    return Err(bad());
                }
            }
        }
        Ok(SpiffeId { text: text.to_owned(), domain_len: domain.len() })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.text["spiffe://".len().."spiffe://".len() + self.domain_len]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether a JWT looks like a JWT-SVID (its unverified `sub` is a `spiffe://` URI): only
/// to choose how to check it.
pub fn looks_like_svid(token: &str) -> bool {
    peek_subject(token).is_ok()
}

/// The SPIFFE ID a JWT-SVID claims, read without verifying anything: only to pick the
/// trust domain's bundle and the agent.
pub fn peek_subject(token: &str) -> Result<SpiffeId, SvidError> {
    let (_, payload, _) = split(token)?;
    let claims = json_part(payload)?;
    let sub = claims.get("sub").and_then(Value::as_str).ok_or_else(|| SvidError::Claims("no `sub`".into()))?;
    if !sub.starts_with("spiffe://") {
        return Err(SvidError::Claims("`sub` is not a SPIFFE ID".into()));
    }
    SpiffeId::parse(sub)
}

/// A verified JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svid {
    /// The workload.
    pub sub: SpiffeId,
    /// Expiry.
    pub exp: UnixTime,
    /// Its id, when it has one (then it is single-use).
    pub jti: Option<String>,
}

/// Verifies a JWT-SVID of `trust_domain` against that domain's bundle `keys`, for one of
/// `audiences`, at `now`.
pub fn verify_svid(
    token: &str,
    keys: &ProviderKeys,
    trust_domain: &str,
    audiences: &[&str],
    now: UnixTime,
) -> Result<Svid, SvidError> {
    let (_, claims) = signed_payload(token, keys)?;
    let sub = claims.get("sub").and_then(Value::as_str).ok_or_else(|| SvidError::Claims("no `sub`".into()))?;
    let sub = SpiffeId::parse(sub)?;
    if sub.trust_domain() != trust_domain {
        return Err(SvidError::Claims(format!("`sub` is not of trust domain `{trust_domain}`")));
    }
    if !string_list(claims.get("aud")).iter().any(|a| audiences.contains(a)) {
        return Err(SvidError::Audience);
    }
    let time = |name: &str| time_claim(&claims, name).map_err(SvidError::from);
    let exp = time("exp")?.ok_or_else(|| SvidError::Claims("no `exp`".into()))?;
    if exp.saturating_add(LEEWAY_SECS) <= now.0 {
        return Err(SvidError::Time("has expired"));
    }
    if exp.saturating_sub(now.0) > MAX_SVID_LIFETIME {
        return Err(SvidError::Time("lives too long: at most an hour"));
    }
    for name in ["iat", "nbf"] {
        if time(name)?.is_some_and(|t| t > now.0.saturating_add(LEEWAY_SECS)) {
            return Err(SvidError::Time("is not valid yet"));
        }
    }
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => Some(j.clone()),
        Some(_) => return Err(SvidError::Claims("`jti` must be 1 to 256 characters".into())),
    };
    Ok(Svid { sub, exp: UnixTime(exp), jti })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use serde_json::json;

    fn bundle(key: &KeyPair, key_use: &str) -> ProviderKeys {
        let jwk = key.public_jwk();
        let jwks = json!({"keys": [{"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "kid": key.kid(), "use": key_use}],
                          "spiffe_sequence": 1});
        ProviderKeys::from_jwks_for(&jwks, "jwt-svid")
    }

    fn svid(key: &KeyPair, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut claims = json!({"sub": "spiffe://example.org/ns/prod/sa/reporter", "aud": ["https://as/oauth2/token"],
                                "exp": 1_300, "iat": 1_000});
        change(claims.as_object_mut().unwrap());
        crate::jws::sign(key, "JWT", &claims).unwrap()
    }

    #[test]
    fn a_jwt_svid_of_the_trust_domain_for_us_verifies_and_nothing_else_does() {
        let key = KeyPair::from_seed(&[11; 32]);
        let keys = bundle(&key, "jwt-svid");
        let aud = ["https://as/oauth2/token", "https://as"];
        let now = UnixTime(1_010);
        let ok = verify_svid(&svid(&key, |_| {}), &keys, "example.org", &aud, now).unwrap();
        assert_eq!(ok.sub.as_str(), "spiffe://example.org/ns/prod/sa/reporter");
        assert_eq!(ok.jti, None);
        assert_eq!(peek_subject(&svid(&key, |_| {})).unwrap(), ok.sub);
        let with_jti =
            verify_svid(&svid(&key, |c| drop(c.insert("jti".into(), json!("j1")))), &keys, "example.org", &aud, now);
        assert_eq!(with_jti.unwrap().jti.as_deref(), Some("j1"));

        let check = |token: String| verify_svid(&token, &keys, "example.org", &aud, now).unwrap_err();
        assert!(matches!(
            check(svid(&key, |c| drop(c.insert("sub".into(), json!("spiffe://other.org/x"))))),
            SvidError::Claims(_)
        ));
        assert_eq!(
            check(svid(&key, |c| drop(c.insert("aud".into(), json!("https://elsewhere"))))),
            SvidError::Audience
        );
        assert!(matches!(check(svid(&key, |c| drop(c.insert("exp".into(), json!(900))))), SvidError::Time(_)));
        assert!(matches!(
            check(svid(&key, |c| drop(c.insert("exp".into(), json!(1_010 + 3_601))))),
            SvidError::Time(_)
        ));
        assert!(matches!(check(svid(&key, |c| drop(c.remove("exp")))), SvidError::Claims(_)));
        assert!(matches!(check(svid(&key, |c| drop(c.insert("iat".into(), json!(2_000))))), SvidError::Time(_)));
        // Signed by a key the bundle does not hold, or held for another use.
        let other = KeyPair::from_seed(&[12; 32]);
        assert!(matches!(check(svid(&other, |_| {})), SvidError::Token(IdTokenError::UnknownKey)));
        let x509_only = bundle(&key, "x509-svid");
        assert!(verify_svid(&svid(&key, |_| {}), &x509_only, "example.org", &aud, now).is_err());
    }

    #[test]
    fn spiffe_ids_follow_the_specification() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/reporter").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(SpiffeId::parse("spiffe://td").unwrap().trust_domain(), "td");
        for bad in [
            "https://example.org/x",
            "spiffe://",
            "spiffe://Example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/x/..",
            "spiffe://example.org/x?y",
            "spiffe://example.org/x#y",
            "spiffe://ex ample.org/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org:8443/x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
        assert!(SpiffeId::parse(&format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID))).is_err());
    }
}
