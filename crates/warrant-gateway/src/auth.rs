//! The client's warrant: verified against the Warrant server's JWKS (cached, fetched
//! again when a warrant names a key it does not hold), its audience checked against the
//! upstream's resource identifier (RFC 8707); the 401 challenge and the RFC 9728
//! protected resource metadata that tell a client where to get a warrant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::RwLock;
use warrant_core::{UnixTime, WarrantClaims};
use warrant_token::warrant::VerifyError;
use warrant_token::{JwsError, KeySet};

/// The shortest time between two JWKS fetches caused by unknown keys.
const REFETCH_EVERY: Duration = Duration::from_secs(1);

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
        Ok(Verifier { http, jwks_url, issuer, keys: RwLock::new((Arc::new(keys), Some(Instant::now()))) })
    }

    /// The Warrant server's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` (signature, type, issuer, expiry) and checks that its `aud` is
    /// `resource`.
    pub async fn verify(&self, token: &str, resource: &str, now: UnixTime) -> Result<WarrantClaims, AuthError> {
        let keys = self.keys.read().await.0.clone();
        let claims = match warrant_token::warrant::verify_warrant(token, keys.as_ref(), &self.issuer, now) {
            Err(VerifyError::Jws(JwsError::UnknownKey)) => {
                let keys = self.refetch().await?;
                warrant_token::warrant::verify_warrant(token, keys.as_ref(), &self.issuer, now)
            }
            other => other,
        }
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if claims.aud != resource {
            return Err(AuthError::Audience(warrant_core::permission::shown(&claims.aud)));
        }
        Ok(claims)
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
    let mut value = format!("Bearer resource_metadata=\"{}\"", metadata_url(public_url, upstream));
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
}

impl ResourceMetadata {
    /// The metadata of upstream `upstream`.
    pub fn of(public_url: &str, upstream: &str, issuer: &str) -> Self {
        ResourceMetadata {
            resource: resource_id(public_url, upstream),
            authorization_servers: vec![issuer.to_owned()],
            bearer_methods_supported: vec!["header".into()],
            resource_name: format!("MCP server `{upstream}` behind warrant gateway"),
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
    }
}
