//! Federation: humans who sign in at a trusted OpenID provider. An ID token of a
//! configured provider is verified against the provider's published keys (discovery and
//! JWKS fetched on first use and cached; fetched again when a token names a key not held,
//! at most once per [`REFETCH_EVERY_SECS`] per provider), and turned into a
//! [`FederatedSignIn`]: who the human is there, and the entitlements their groups give
//! under the provider's rules, computed afresh at every sign-in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Mutex;
use warrant_core::{FederatedIdentity, UnixTime};
use warrant_token::oidc::{self, IdTokenError, ProviderKeys};

/// The shortest time between two key fetches of one provider, seconds.
pub const REFETCH_EVERY_SECS: i64 = 10;
/// How long fetched keys are used before they are fetched again, seconds: a key the
/// provider removed is refused at most this long after.
pub const KEYS_MAX_AGE_SECS: i64 = 3600;
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
    /// Whether a new human may be registered with an email the provider does not mark
    /// `email_verified: true` (for providers that never send the claim). Default false.
    pub trust_unverified_email: bool,
    /// Whether, and how, people sign in to the console here (`[federation.oidc.console]`).
    pub console: Option<ConsoleClient>,
}

/// Signing in to the console at a provider: Warrant is the client whose id is the
/// provider's `audience`, with the authorization code flow and PKCE.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleClient {
    /// The client secret, for a confidential client; `None` for a public one.
    pub client_secret: Option<String>,
    /// The scopes asked for (space-separated; `openid` is always included).
    pub scopes: String,
    /// The groups that hold each operator role.
    pub roles: BTreeMap<warrant_core::Role, Vec<String>>,
}

impl std::fmt::Debug for ConsoleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleClient")
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish()
    }
}

/// Where a provider signs people in and hands out tokens (from its discovery document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    /// `authorization_endpoint`.
    pub authorization: String,
    /// `token_endpoint`.
    pub token: String,
}

/// A provider's discovery document, read from `url`.
struct Discovery {
    url: String,
    meta: Value,
}

impl Discovery {
    /// One of its URLs, checked like every URL fetched (`https`, or `http` on loopback).
    fn url(&self, name: &str) -> Result<String, FederationError> {
        let found = self
            .meta
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| FederationError::Unavailable(format!("{} has no `{name}`", self.url)))?;
        check_url(found).map_err(FederationError::Unavailable)?;
        Ok(found.to_owned())
    }
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
    /// Whether the email may name a new human: `email_verified` is `true`, or the
    /// provider is configured to be trusted without it.
    pub email_trusted: bool,
    /// The user's groups, as the provider sent them.
    pub groups: Vec<String>,
    /// The permissions the groups give under the provider's rules.
    pub entitlements: Vec<String>,
    /// The `nonce` claim, when present (console sign-ins check it).
    pub nonce: Option<String>,
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
    /// When the keys were last fetched.
    fetched_at: Option<UnixTime>,
    /// When a fetch was last tried, whether it worked or not.
    attempted_at: Option<UnixTime>,
}

impl Keys {
    fn fresh(&self, now: UnixTime) -> bool {
        self.fetched_at.is_some_and(|at| now.0.saturating_sub(at.0) < KEYS_MAX_AGE_SECS)
    }

    /// Whether to fetch now: never more than once per [`REFETCH_EVERY_SECS`]; when the
    /// keys are stale or missing, or `again` (a token named a key not held).
    fn due(&self, now: UnixTime, again: bool) -> bool {
        match self.attempted_at {
            None => true,
            Some(at) => (again || !self.fresh(now)) && now.0.saturating_sub(at.0) >= REFETCH_EVERY_SECS,
        }
    }

    fn usable(&self, now: UnixTime) -> Result<Arc<ProviderKeys>, FederationError> {
        if self.fresh(now) {
            Ok(Arc::clone(&self.keys))
        } else {
            Err(FederationError::Unavailable(format!(
                "the provider's keys could not be fetched (tried again at most every {REFETCH_EVERY_SECS} s)"
            )))
        }
    }
}

struct Provider {
    config: OidcProvider,
    /// The cached keys; held only to read or replace them, never across a fetch, so
    /// sign-ins with cached keys never wait for the network.
    keys: std::sync::RwLock<Keys>,
    /// Held across a fetch: one at a time per provider; whoever needed the fetch waits
    /// for it here and then reads its result.
    fetching: Mutex<()>,
}

fn poisoned() -> FederationError {
    FederationError::Unavailable("the key cache is poisoned".into())
}

/// The trusted providers and their cached keys.
pub struct Federation {
    providers: Vec<Provider>,
    /// `None` when the client could not be built: every fetch fails (closed).
    http: Option<reqwest::Client>,
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
        let http = trust_client();
        for p in &providers {
            tracing::info!(issuer = %p.issuer, audience = %p.audience, "trusting an identity provider's ID tokens");
        }
        let providers = providers
            .into_iter()
            .map(|config| Provider { config, keys: std::sync::RwLock::default(), fetching: Mutex::new(()) })
            .collect();
        Federation { providers, http }
    }

    /// The configured provider that issued `token` (by its unverified `iss`) and what
    /// `verify` makes of the token with that provider's keys; the keys are fetched again
    /// once when the token names a key not held.
    async fn verified<T>(
        &self,
        token: &str,
        now: UnixTime,
        verify: impl Fn(&OidcProvider, &ProviderKeys) -> Result<T, IdTokenError>,
    ) -> Result<(&OidcProvider, T), FederationError> {
        let issuer = oidc::peek_issuer(token)?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == issuer)
            .ok_or_else(|| FederationError::Untrusted(warrant_core::permission::shown(&issuer)))?;
        let keys = self.keys(provider, now, false).await?;
        let verified = match verify(&provider.config, &keys) {
            Err(IdTokenError::UnknownKey) => verify(&provider.config, &*self.keys(provider, now, true).await?)?,
            other => other?,
        };
        Ok((&provider.config, verified))
    }

    /// Verifies `token`, an ID token of a configured provider, at `now`.
    pub async fn sign_in(&self, token: &str, now: UnixTime) -> Result<FederatedSignIn, FederationError> {
        let (provider, claims) = self
            .verified(token, now, |p, keys| oidc::verify_id_token(token, keys, &p.issuer, &p.audience, now))
            .await?;
        let groups = claims.strings(&provider.groups_claim);
        let entitlements = oidc::permissions_of(&groups, &provider.groups);
        let verified = claims.all.get("email_verified").and_then(serde_json::Value::as_bool) == Some(true);
        Ok(FederatedSignIn {
            name: claims.text("name").filter(|n| !n.trim().is_empty()).unwrap_or(&claims.sub).to_owned(),
            email: claims.text("email").map(str::to_owned),
            email_trusted: verified || provider.trust_unverified_email,
            nonce: claims.text("nonce").map(str::to_owned),
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
        let (provider, set) = self
            .verified(token, now, |p, keys| {
                oidc::verify_set(token, keys, &p.issuer, &[p.audience.as_str(), receiver], now)
            })
            .await?;
        Ok((provider.issuer.clone(), set))
    }

    /// The provider's keys: cached while fresh ([`KEYS_MAX_AGE_SECS`]); fetched when
    /// missing or stale, or when `again` (a token named a key not held), at most once per
    /// [`REFETCH_EVERY_SECS`] whether the last try worked or not. One fetch at a time,
    /// and no cache lock is held across it.
    async fn keys(
        &self,
        provider: &Provider,
        now: UnixTime,
        again: bool,
    ) -> Result<Arc<ProviderKeys>, FederationError> {
        {
            let cached = provider.keys.read().map_err(|_| poisoned())?;
            if !cached.due(now, again) {
                return cached.usable(now);
            }
        }
        let _one_fetch = provider.fetching.lock().await;
        let jwks_uri = {
            let mut cached = provider.keys.write().map_err(|_| poisoned())?;
            // Another fetch may have finished while this one waited.
            if !cached.due(now, again) {
                return cached.usable(now);
            }
            cached.attempted_at = Some(now);
            cached.jwks_uri.clone()
        };
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => self.discover(&provider.config.issuer).await?,
        };
        let jwks = self.fetch(&jwks_uri).await?;
        let keys = Arc::new(ProviderKeys::from_jwks(&jwks));
        tracing::info!(issuer = %provider.config.issuer, keys = keys.len(), "fetched an identity provider's keys");
        *provider.keys.write().map_err(|_| poisoned())? =
            Keys { jwks_uri: Some(jwks_uri), keys: Arc::clone(&keys), fetched_at: Some(now), attempted_at: Some(now) };
        Ok(keys)
    }

    /// The provider's `jwks_uri`, from its discovery document (whose `issuer` must be the
    /// configured one).
    async fn discover(&self, issuer: &str) -> Result<String, FederationError> {
        self.discovery(issuer).await?.url("jwks_uri")
    }

    /// The provider's discovery document, whose `issuer` must be the configured one.
    async fn discovery(&self, issuer: &str) -> Result<Discovery, FederationError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let meta = self.fetch(&url).await?;
        if meta.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(FederationError::Unavailable(format!("{url} names another issuer")));
        }
        Ok(Discovery { url, meta })
    }

    /// The providers people may sign in to the console at.
    pub fn console_providers(&self) -> impl Iterator<Item = &OidcProvider> {
        self.providers.iter().map(|p| &p.config).filter(|c| c.console.is_some())
    }

    /// The authorization and token endpoints of `issuer` (read from its discovery
    /// document at every call: console sign-ins are rare).
    pub async fn endpoints(&self, issuer: &str) -> Result<ProviderEndpoints, FederationError> {
        let discovery = self.discovery(issuer).await?;
        Ok(ProviderEndpoints {
            authorization: discovery.url("authorization_endpoint")?,
            token: discovery.url("token_endpoint")?,
        })
    }

    /// Redeems an authorization `code` at `token_endpoint` (with the PKCE `verifier` and
    /// the client's secret, if it has one) and returns the ID token it answers with.
    pub async fn redeem_code(
        &self,
        provider: &OidcProvider,
        token_endpoint: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, FederationError> {
        let unavailable = |e: String| FederationError::Unavailable(format!("{token_endpoint}: {e}"));
        let http = self.http.as_ref().ok_or_else(|| unavailable("no HTTP client".into()))?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", provider.audience.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = provider.console.as_ref().and_then(|c| c.client_secret.as_deref()) {
            form.push(("client_secret", secret));
        }
        let response = http.post(token_endpoint).form(&form).send().await.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| unavailable(format!("not JSON: {e}")))?;
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("an error");
            return Err(unavailable(format!("answered {status} with `{}`", warrant_core::permission::shown(error))));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| unavailable("the answer carries no `id_token`".into()))
    }

    async fn fetch(&self, url: &str) -> Result<Value, FederationError> {
        let http = self.http.as_ref().ok_or_else(|| FederationError::Unavailable(format!("{url}: no HTTP client")))?;
        fetch_json(http, url).await.map_err(FederationError::Unavailable)
    }
}

/// An HTTP client for fetching trust material (provider metadata, JWKS, SPIFFE
/// bundles): no redirects, a 5 s timeout; `None` (and every fetch fails, closed) when
/// it cannot be built.
pub(crate) fn trust_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| tracing::error!(error = %e, "no HTTP client for trust material; what needs it is refused"))
        .ok()
}

/// GETs a JSON document of at most 1 MiB; the error names the URL.
pub(crate) async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let unavailable = |e: String| format!("{url}: {e}");
    let mut response = http.get(url).send().await.map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(unavailable("the document is too large".into()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(e.to_string()))? {
        if bytes.len() + chunk.len() > MAX_DOCUMENT {
            return Err(unavailable("the document is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::sync::{Notify, RwLock};
    use warrant_core::UnixTime;
    use warrant_token::KeyPair;

    use super::{check_url, Federation, Keys, OidcProvider, KEYS_MAX_AGE_SECS, REFETCH_EVERY_SECS};

    /// A provider on loopback whose JWKS answer is whatever `jwks` holds; the second and
    /// later JWKS fetches wait for `gate`.
    async fn provider(jwks: Arc<RwLock<serde_json::Value>>, gate: Arc<Notify>, fetches: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let me = issuer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let (jwks, gate, fetches, me) = (jwks.clone(), gate.clone(), fetches.clone(), me.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let body = if request.starts_with("GET /.well-known/openid-configuration") {
                        json!({"issuer": me, "jwks_uri": format!("{me}/jwks")}).to_string()
                    } else {
                        if fetches.fetch_add(1, Ordering::SeqCst) >= 1 {
                            gate.notified().await;
                        }
                        jwks.read().await.to_string()
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                });
            }
        });
        issuer
    }

    fn jwk(key: &KeyPair) -> serde_json::Value {
        serde_json::to_value(key.public_jwk()).unwrap()
    }

    fn id_token(key: &KeyPair, issuer: &str, now: UnixTime) -> String {
        let claims = json!({"iss": issuer, "sub": "u-1", "aud": "warrant", "iat": now.0, "exp": now.0 + 300,
                            "email": "u@example.com", "email_verified": true, "groups": ["g"]});
        warrant_token::jws::sign(key, "JWT", &claims).unwrap()
    }

    #[tokio::test]
    async fn a_sign_in_with_cached_keys_never_waits_for_a_fetch_and_a_new_key_is_found_by_one() {
        let (a, b) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let jwks = Arc::new(RwLock::new(json!({"keys": [jwk(&a)]})));
        let (gate, fetches) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
        let issuer = provider(jwks.clone(), gate.clone(), fetches.clone()).await;
        let config = OidcProvider {
            issuer: issuer.clone(),
            audience: "warrant".into(),
            groups_claim: "groups".into(),
            groups: [("g".to_owned(), vec!["tickets.read".to_owned()])].into(),
            trust_unverified_email: false,
            console: None,
        };
        let federation = Arc::new(Federation::new(vec![config]));
        let t0 = UnixTime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64);
        let first = federation.sign_in(&id_token(&a, &issuer, t0), t0).await.unwrap();
        assert_eq!(first.entitlements, vec!["tickets.read"]);
        assert!(first.email_trusted);

        // The provider rotates to key b; a token signed with it makes Warrant fetch again,
        // and that fetch hangs at the provider.
        *jwks.write().await = json!({"keys": [jwk(&a), jwk(&b)]});
        let later = UnixTime(t0.0 + REFETCH_EVERY_SECS);
        let rotated = tokio::spawn({
            let (federation, token) = (federation.clone(), id_token(&b, &issuer, t0));
            async move { federation.sign_in(&token, later).await }
        });
        while fetches.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Meanwhile a sign-in with the cached key a is answered (a hang here is the bug).
        let cached = tokio::time::timeout(std::time::Duration::from_secs(30), {
            let token = id_token(&a, &issuer, t0);
            let federation = federation.clone();
            async move { federation.sign_in(&token, later).await }
        })
        .await
        .expect("a sign-in with cached keys waited for the fetch");
        assert!(cached.is_ok(), "{cached:?}");
        gate.notify_one();
        assert_eq!(rotated.await.unwrap().unwrap().identity.subject, "u-1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch for the new key");
    }

    #[test]
    fn keys_are_fetched_when_missing_stale_or_unknown_but_never_twice_in_ten_seconds() {
        let t = |s: i64| UnixTime(1_000_000 + s);
        let mut keys = Keys::default();
        assert!(keys.due(t(0), false), "nothing fetched yet");
        // A failed first try: no keys, and no new try for ten seconds.
        keys.attempted_at = Some(t(0));
        assert!(!keys.due(t(REFETCH_EVERY_SECS - 1), false) && keys.usable(t(1)).is_err());
        assert!(keys.due(t(REFETCH_EVERY_SECS), false));
        // Fetched: used while fresh; an unknown key fetches again, at most every ten seconds.
        keys.fetched_at = Some(t(20));
        keys.attempted_at = Some(t(20));
        assert!(!keys.due(t(25), false) && keys.usable(t(25)).is_ok());
        assert!(!keys.due(t(25), true));
        assert!(keys.due(t(20 + REFETCH_EVERY_SECS), true));
        // Stale keys are fetched again and are not used meanwhile.
        let stale = t(20 + KEYS_MAX_AGE_SECS);
        assert!(keys.due(stale, false) && keys.usable(stale).is_err());
    }

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
