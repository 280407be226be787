//! Federation: humans who sign in at a trusted OpenID provider. An ID token of a
//! configured provider is verified against the provider's published keys (discovery and
//! JWKS fetched on first use and cached; fetched again when a token names a key not held,
//! at most once per [`REFETCH_EVERY_SECS`] per provider), and turned into a
//! [`FederatedSignIn`]: who the human is there, and the entitlements their groups give
//! under the provider's rules, computed afresh at every sign-in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::RwLock;
use warrant_core::{FederatedIdentity, UnixTime};
use warrant_token::oidc::{self, IdTokenError, ProviderKeys};

/// The shortest time between two key fetches of one provider, seconds.
pub const REFETCH_EVERY_SECS: i64 = 10;
/// The largest discovery or JWKS document read, bytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One trusted OpenID provider (`[[federation.oidc]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Its issuer identifier (ID tokens' `iss`, and where discovery is read).
    pub issuer: String,
    /// The audience its ID tokens must name (Warrant's client id there).
    pub audience: String,
    /// The claim holding the user's groups.
    pub groups_claim: String,
    /// Permissions by group: a human's entitlements are the union for their groups.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// Whether `url` may be fetched: `https`, or `http` on a loopback host only.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{url}` has no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!("`{url}` must be https (http is accepted only on loopback hosts)")),
        other => Err(format!("`{url}` has scheme `{other}`; https is required")),
    }
}

/// Who signed in, as their provider says, and what Warrant makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedSignIn {
    /// The provider and the subject there.
    pub identity: FederatedIdentity,
    /// The `name` claim (the subject when absent).
    pub name: String,
    /// The `email` claim, when present.
    pub email: Option<String>,
    /// The user's groups, as the provider sent them.
    pub groups: Vec<String>,
    /// The permissions the groups give under the provider's rules.
    pub entitlements: Vec<String>,
}

/// Why a sign-in token is refused.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// No configured provider issued it.
    #[error("the token's issuer `{0}` is not a trusted identity provider")]
    Untrusted(String),
    /// The token is not a valid ID token of its provider for Warrant.
    #[error(transparent)]
    Invalid(#[from] IdTokenError),
    /// The provider's discovery document or keys could not be read.
    #[error("the identity provider's keys could not be read: {0}")]
    Unavailable(String),
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    keys: Arc<ProviderKeys>,
    fetched_at: Option<UnixTime>,
}

struct Provider {
    config: OidcProvider,
    keys: RwLock<Keys>,
}

/// The trusted providers and their cached keys.
pub struct Federation {
    providers: Vec<Provider>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.providers.iter().map(|p| p.config.issuer.as_str()).collect();
        f.debug_struct("Federation").field("providers", &issuers).finish()
    }
}

impl Federation {
    /// Federation with `providers` (none: only Warrant's own sessions sign humans in).
    pub fn new(providers: Vec<OidcProvider>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        for p in &providers {
            tracing::info!(issuer = %p.issuer, audience = %p.audience, "trusting an identity provider's ID tokens");
        }
        let providers = providers.into_iter().map(|config| Provider { config, keys: RwLock::default() }).collect();
        Federation { providers, http }
    }

    /// Whether `issuer` is a configured provider.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.providers.iter().any(|p| p.config.issuer == issuer)
    }

    /// Verifies `token`, an ID token of a configured provider, at `now`.
    pub async fn sign_in(&self, token: &str, now: UnixTime) -> Result<FederatedSignIn, FederationError> {
        let issuer = oidc::peek_issuer(token)?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == issuer)
            .ok_or_else(|| FederationError::Untrusted(warrant_core::permission::shown(&issuer)))?;
        let keys = self.keys(provider, now, false).await?;
        let verify = |keys: &ProviderKeys| {
            oidc::verify_id_token(token, keys, &provider.config.issuer, &provider.config.audience, now)
        };
        let claims = match verify(&keys) {
            Err(IdTokenError::UnknownKey) => verify(&*self.keys(provider, now, true).await?)?,
            other => other?,
        };
        let groups = claims.strings(&provider.config.groups_claim);
        let entitlements = oidc::permissions_of(&groups, &provider.config.groups);
        Ok(FederatedSignIn {
            name: claims.text("name").filter(|n| !n.trim().is_empty()).unwrap_or(&claims.sub).to_owned(),
            email: claims.text("email").map(str::to_owned),
            identity: FederatedIdentity { issuer: claims.iss, subject: claims.sub },
            groups,
            entitlements,
        })
    }

    /// Verifies `token`, a Security Event Token (RFC 8417) pushed by a configured provider,
    /// at `now`: signed with the provider's keys, for the provider's `audience` or for
    /// `receiver` (Warrant's issuer). Returns the provider's issuer and the SET.
    pub async fn security_event(
        &self,
        token: &str,
        receiver: &str,
        now: UnixTime,
    ) -> Result<(String, oidc::SetClaims), FederationError> {
        let issuer = oidc::peek_issuer(token)?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == issuer)
            .ok_or_else(|| FederationError::Untrusted(warrant_core::permission::shown(&issuer)))?;
        let audiences = [provider.config.audience.as_str(), receiver];
        let verify = |keys: &ProviderKeys| oidc::verify_set(token, keys, &provider.config.issuer, &audiences, now);
        let keys = self.keys(provider, now, false).await?;
        let set = match verify(&keys) {
            Err(IdTokenError::UnknownKey) => verify(&*self.keys(provider, now, true).await?)?,
            other => other?,
        };
        Ok((provider.config.issuer.clone(), set))
    }

    /// The provider's keys: cached, or fetched when there are none yet, or when `again`
    /// and the last fetch is at least [`REFETCH_EVERY_SECS`] old.
    async fn keys(
        &self,
        provider: &Provider,
        now: UnixTime,
        again: bool,
    ) -> Result<Arc<ProviderKeys>, FederationError> {
        {
            let cached = provider.keys.read().await;
            let fresh = cached.fetched_at.is_some_and(|at| !again || now.0 - at.0 < REFETCH_EVERY_SECS);
            if fresh {
                return Ok(Arc::clone(&cached.keys));
            }
        }
        let mut cached = provider.keys.write().await;
        if cached.fetched_at.is_some_and(|at| !again || now.0 - at.0 < REFETCH_EVERY_SECS) {
            return Ok(Arc::clone(&cached.keys));
        }
        let jwks_uri = match &cached.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover(&provider.config.issuer).await?,
        };
        let jwks = self.fetch(&jwks_uri).await?;
        let keys = Arc::new(ProviderKeys::from_jwks(&jwks));
        tracing::info!(issuer = %provider.config.issuer, keys = keys.len(), "fetched an identity provider's keys");
        *cached = Keys { jwks_uri: Some(jwks_uri), keys: Arc::clone(&keys), fetched_at: Some(now) };
        Ok(keys)
    }

    /// The provider's `jwks_uri`, from its discovery document (whose `issuer` must be the
    /// configured one).
    async fn discover(&self, issuer: &str) -> Result<String, FederationError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let meta = self.fetch(&url).await?;
        if meta.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(FederationError::Unavailable(format!("{url} names another issuer")));
        }
        let jwks_uri = meta
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| FederationError::Unavailable(format!("{url} has no `jwks_uri`")))?;
        check_url(jwks_uri).map_err(FederationError::Unavailable)?;
        Ok(jwks_uri.to_owned())
    }

    async fn fetch(&self, url: &str) -> Result<Value, FederationError> {
        let unavailable = |e: String| FederationError::Unavailable(format!("{url}: {e}"));
        let response = self.http.get(url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("answered {}", response.status())));
        }
        let bytes = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_DOCUMENT {
            return Err(unavailable("the document is too large".into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("not JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn http_is_for_loopback_only() {
        for ok in ["https://idp.example", "http://127.0.0.1:9000", "http://localhost/x", "http://[::1]:8/"] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://idp.example", "http://10.0.0.1", "ftp://127.0.0.1", "idp.example", "file:///etc/x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
