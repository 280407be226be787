//! The client's warrant: verified against the Warrant server's JWKS (cached, fetched
//! again when a warrant names a key it does not hold), its audience checked against the
//! upstream's resource identifier (RFC 8707); the 401 challenge and the RFC 9728
//! protected resource metadata that tell a client where to get a warrant.
//!
//! A verified warrant is remembered by the SHA-256 of the token until it expires, so an
//! agent calling many tools with one warrant has its signature checked once. The cache
//! only saves the gateway's own check: every call is still decided by the PDP, which
//! checks revocation, scope and policy each time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::RwLock;
use warrant_core::{UnixTime, WarrantClaims};
use warrant_token::warrant::VerifyError;
use warrant_token::{JwsError, KeySet};

/// The shortest time between two JWKS fetches caused by unknown keys.
const REFETCH_EVERY: Duration = Duration::from_secs(1);
/// The most verified warrants remembered; when full, expired ones are dropped, and if
/// none has expired, all are.
pub const VERIFIED_MAX: usize = 10_000;

/// Why a request's warrant is refused (401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("a warrant is required as the bearer token")]
    Missing,
    /// The token is not a valid warrant of the Warrant server.
    #[error("the warrant is not valid: {0}")]
    Invalid(String),
    /// The warrant is for another resource.
    #[error("the warrant is for `{0}`, not for this resource")]
    Audience(String),
    /// The warrant is DPoP-bound and the request's proof is missing or refused.
    #[error("{0}")]
    Dpop(String),
    /// The Warrant server's keys could not be fetched (answered 503).
    #[error("the Warrant server's keys could not be fetched: {0}")]
    Keys(String),
}

/// Verifies warrants against the Warrant server's published keys.
pub struct Verifier {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    keys: RwLock<(Arc<KeySet>, Option<Instant>)>,
    verified: std::sync::RwLock<HashMap<[u8; 32], Arc<Verified>>>,
}

/// A verified warrant: its claims, and the claims as JSON (what declared mappings read as
/// `token`).
#[derive(Debug)]
pub struct Verified {
    /// The warrant's claims.
    pub claims: WarrantClaims,
    /// The same claims as a JSON object.
    pub json: Value,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Reads the Warrant server's issuer (`/.well-known/oauth-authorization-server`) and
    /// keys (`/.well-known/jwks.json`).
    pub async fn connect(http: reqwest::Client, server: &str) -> Result<Self, AuthError> {
        let server = server.trim_end_matches('/');
        let meta = fetch_json(&http, &format!("{server}/.well-known/oauth-authorization-server")).await?;
        let issuer = meta
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Keys("the server's metadata names no issuer".into()))?
            .to_owned();
        let jwks_url = format!("{server}/.well-known/jwks.json");
        let keys = KeySet::from_jwks(&fetch_json(&http, &jwks_url).await?);
        Ok(Verifier {
            http,
            jwks_url,
            issuer,
            keys: RwLock::new((Arc::new(keys), Some(Instant::now()))),
            verified: std::sync::RwLock::new(HashMap::new()),
        })
    }

    /// The Warrant server's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` (signature, type, issuer, expiry) and checks that its `aud` is
    /// `resource`. A token verified before is taken from the cache while it is unexpired
    /// and valid (`nbf`); its audience is checked on every call.
    pub async fn verify(&self, token: &str, resource: &str, now: UnixTime) -> Result<Arc<Verified>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.verified.read().ok().and_then(|m| m.get(&digest).cloned());
        let verified = match cached {
            Some(hit) if hit.claims.exp > now && hit.claims.nbf <= now => hit,
            _ => {
                let claims = self.verify_signed(token, now).await?;
                let json = serde_json::to_value(&claims).map_err(|e| AuthError::Invalid(e.to_string()))?;
                let verified = Arc::new(Verified { claims, json });
                self.remember(digest, Arc::clone(&verified), now);
                verified
            }
        };
        if verified.claims.aud != resource {
            return Err(AuthError::Audience(warrant_core::permission::shown(&verified.claims.aud)));
        }
        Ok(verified)
    }

    /// How many verified warrants are remembered.
    pub fn cached(&self) -> usize {
        self.verified.read().map(|m| m.len()).unwrap_or(0)
    }

    fn remember(&self, digest: [u8; 32], verified: Arc<Verified>, now: UnixTime) {
        if let Ok(mut map) = self.verified.write() {
            if map.len() >= VERIFIED_MAX {
                map.retain(|_, v| v.claims.exp > now);
                if map.len() >= VERIFIED_MAX {
                    map.clear();
                }
            }
            map.insert(digest, verified);
        }
    }

    /// The signature, type, issuer and time checks, against the cached keys (fetched
    /// again when the token names a key they do not hold).
    async fn verify_signed(&self, token: &str, now: UnixTime) -> Result<WarrantClaims, AuthError> {
        let keys = self.keys.read().await.0.clone();
        match warrant_token::warrant::verify_warrant(token, keys.as_ref(), &self.issuer, now) {
            Err(VerifyError::Jws(JwsError::UnknownKey)) => {
                let keys = self.refetch().await?;
                warrant_token::warrant::verify_warrant(token, keys.as_ref(), &self.issuer, now)
            }
            other => other,
        }
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// The keys, fetched again unless they were fetched less than [`REFETCH_EVERY`] ago.
    async fn refetch(&self) -> Result<Arc<KeySet>, AuthError> {
        let mut guard = self.keys.write().await;
        if guard.1.is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
            return Ok(guard.0.clone());
        }
        let keys = Arc::new(KeySet::from_jwks(&fetch_json(&self.http, &self.jwks_url).await?));
        *guard = (keys.clone(), Some(Instant::now()));
        Ok(keys)
    }
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, AuthError> {
    let response = http.get(url).send().await.map_err(|e| AuthError::Keys(e.to_string()))?;
    if !response.status().is_success() {
        return Err(AuthError::Keys(format!("{url} answered {}", response.status())));
    }
    response.json().await.map_err(|e| AuthError::Keys(e.to_string()))
}

/// The `WWW-Authenticate` value of a 401 for upstream `upstream`: `Bearer
/// resource_metadata="<public>/.well-known/oauth-protected-resource/mcp/<u>"`, with
/// `error="invalid_token"` when a token was presented.
pub fn challenge(public_url: &str, upstream: &str, error: &AuthError) -> String {
    let metadata = metadata_url(public_url, upstream);
    if matches!(error, AuthError::Dpop(_)) {
        // RFC 9449 §7.1: the DPoP scheme, with the algorithms accepted.
        let algs = warrant_token::dpop::PROOF_ALGS.join(" ");
        return format!("DPoP error=\"invalid_dpop_proof\", algs=\"{algs}\", resource_metadata=\"{metadata}\"");
    }
    let mut value = format!("Bearer resource_metadata=\"{metadata}\"");
    if !matches!(error, AuthError::Missing) {
        value.push_str(", error=\"invalid_token\"");
    }
    value
}

/// The URL of upstream `upstream`'s protected resource metadata.
pub fn metadata_url(public_url: &str, upstream: &str) -> String {
    format!("{public_url}/.well-known/oauth-protected-resource/mcp/{upstream}")
}

/// The resource identifier of upstream `upstream`: `<public>/mcp/<u>`.
pub fn resource_id(public_url: &str, upstream: &str) -> String {
    format!("{public_url}/mcp/{upstream}")
}

/// RFC 9728 protected resource metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceMetadata {
    /// The resource identifier; a warrant's `aud` must equal it.
    pub resource: String,
    /// Where warrants come from: the Warrant server's issuer.
    pub authorization_servers: Vec<String>,
    /// How the warrant is presented: `header` only.
    pub bearer_methods_supported: Vec<String>,
    /// A human-readable name.
    pub resource_name: String,
    /// The DPoP proof algorithms accepted for sender-constrained warrants (RFC 9449).
    pub dpop_signing_alg_values_supported: Vec<String>,
}

impl ResourceMetadata {
    /// The metadata of upstream `upstream`.
    pub fn of(public_url: &str, upstream: &str, issuer: &str) -> Self {
        ResourceMetadata {
            resource: resource_id(public_url, upstream),
            authorization_servers: vec![issuer.to_owned()],
            bearer_methods_supported: vec!["header".into()],
            resource_name: format!("MCP server `{upstream}` behind warrant gateway"),
            dpop_signing_alg_values_supported: warrant_token::dpop::PROOF_ALGS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_metadata_and_the_error() {
        let missing = challenge("http://gw:1", "crm", &AuthError::Missing);
        assert_eq!(missing, r#"Bearer resource_metadata="http://gw:1/.well-known/oauth-protected-resource/mcp/crm""#);
        let bad = challenge("http://gw:1", "crm", &AuthError::Audience("x".into()));
        assert!(bad.ends_with(r#", error="invalid_token""#), "{bad}");
        let meta = serde_json::to_value(ResourceMetadata::of("http://gw:1", "crm", "http://warrant")).unwrap();
        assert_eq!(meta["resource"], "http://gw:1/mcp/crm");
        assert_eq!(meta["authorization_servers"], serde_json::json!(["http://warrant"]));
        assert_eq!(meta["bearer_methods_supported"], serde_json::json!(["header"]));
        let dpop = challenge("http://gw:1", "crm", &AuthError::Dpop("replayed".into()));
        assert!(dpop.starts_with(r#"DPoP error="invalid_dpop_proof", algs="EdDSA ES256 RS256""#), "{dpop}");
    }
}
