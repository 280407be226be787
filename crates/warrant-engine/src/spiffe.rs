//! SPIFFE trust domains whose workloads may authenticate as agents with JWT-SVIDs
//! (`[[federation.spiffe]]`): each domain's trust bundle, from a file (read again whenever
//! the file changes) or from the domain's bundle endpoint (fetched again when the bundle's
//! `spiffe_refresh_hint` passes, and when a JWT-SVID names a key it does not hold, at most
//! once every 10 seconds).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use warrant_token::oidc::ProviderKeys;

/// Where a trust domain's bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// A JWKS file, e.g. written by the SPIFFE implementation's agent.
    File(PathBuf),
    /// The trust domain's bundle endpoint (https; http only on loopback), authenticated
    /// by the web PKI (`https_web`).
    Url(String),
}

/// One trusted SPIFFE trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeDomain {
    /// The trust domain, e.g. `example.org`.
    pub trust_domain: String,
    /// Its trust bundle: a JWKS (RFC 7517, SPIFFE bundle format) whose keys with `use`
    /// `jwt-svid` verify its JWT-SVIDs.
    pub bundle: BundleSource,
}

/// Why a trust domain's keys are not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    /// The trust domain is not configured.
    #[error("trust domain `{0}` is not trusted (not in `[[federation.spiffe]]`)")]
    NotTrusted(String),
    /// The bundle could not be read or holds no usable key.
    #[error("the trust bundle of `{domain}` could not be used: {why}")]
    Bundle {
        /// The trust domain.
        domain: String,
        /// Why.
        why: String,
    },
}

/// How long a fetched bundle is used when it gives no `spiffe_refresh_hint`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The shortest and longest refresh a bundle's hint is held to.
const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// The least time between two fetches of one endpoint caused by unknown keys.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// How long a fetched bundle may still be used while its endpoint cannot be reached.
const STALE_FOR: Duration = Duration::from_secs(3600);

/// A bundle as last read: from a file, by its modification time; from an endpoint, by
/// when it was fetched and how long it is fresh.
#[derive(Clone)]
enum Held {
    File { modified: SystemTime, keys: Arc<ProviderKeys> },
    Url { fetched: Instant, fresh_for: Duration, keys: Arc<ProviderKeys> },
}

/// The trusted SPIFFE trust domains and their bundles.
#[derive(Default)]
pub struct SpiffeTrust {
    domains: Vec<SpiffeDomain>,
    held: Mutex<HashMap<String, Held>>,
    /// When each endpoint was last fetched because of an unknown key (the rate limit of
    /// fetches anyone can cause by naming a key).
    forced: Mutex<HashMap<String, Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for SpiffeTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeTrust").field("domains", &self.domains).finish_non_exhaustive()
    }
}

fn parse_bundle(jwks: &Value) -> Result<Arc<ProviderKeys>, String> {
    let keys = ProviderKeys::from_jwks_for(jwks, "jwt-svid");
    if keys.is_empty() {
        return Err("it holds no usable JWT-SVID key (RSA, P-256 or Ed25519)".into());
    }
    Ok(Arc::new(keys))
}

impl SpiffeTrust {
    /// Trusts `domains`.
    pub fn new(domains: Vec<SpiffeDomain>) -> Self {
        for d in &domains {
            tracing::info!(trust_domain = %d.trust_domain, bundle = ?d.bundle, "trusting a SPIFFE trust domain's JWT-SVIDs");
        }
        let http = domains
            .iter()
            .any(|d| matches!(d.bundle, BundleSource::Url(_)))
            .then(crate::federation::trust_client)
            .flatten();
        SpiffeTrust { domains, http, ..SpiffeTrust::default() }
    }

    /// Whether `trust_domain` is trusted.
    pub fn trusts(&self, trust_domain: &str) -> bool {
        self.domains.iter().any(|d| d.trust_domain == trust_domain)
    }

    fn domain(&self, trust_domain: &str) -> Result<&SpiffeDomain, SpiffeError> {
        self.domains
            .iter()
            .find(|d| d.trust_domain == trust_domain)
            .ok_or_else(|| SpiffeError::NotTrusted(trust_domain.chars().take(100).collect()))
    }

    fn held(&self, trust_domain: &str) -> Option<Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).get(trust_domain).cloned()
    }

    /// The JWT-SVID keys of `trust_domain`: a file read again when it changed, an
    /// endpoint fetched again when its bundle is no longer fresh.
    pub async fn keys(&self, trust_domain: &str) -> Result<Arc<ProviderKeys>, SpiffeError> {
        let domain = self.domain(trust_domain)?;
        let failed = |why: String| SpiffeError::Bundle { domain: trust_domain.to_owned(), why };
        match &domain.bundle {
            BundleSource::File(path) => {
                let modified =
                    tokio::fs::metadata(path).await.and_then(|m| m.modified()).map_err(|e| failed(e.to_string()))?;
                if let Some(Held::File { modified: seen, keys }) = self.held(trust_domain) {
                    if seen == modified {
                        return Ok(keys);
                    }
                }
                let bytes = tokio::fs::read(path).await.map_err(|e| failed(e.to_string()))?;
                if bytes.len() > 1 << 20 {
                    return Err(failed("the bundle is larger than 1 MiB".into()));
                }
                let jwks: Value = serde_json::from_slice(&bytes).map_err(|e| failed(format!("not a JWKS: {e}")))?;
                let keys = parse_bundle(&jwks).map_err(failed)?;
                self.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(trust_domain.to_owned(), Held::File { modified, keys: Arc::clone(&keys) });
                Ok(keys)
            }
            BundleSource::Url(url) => {
                if let Some(Held::Url { fetched, fresh_for, keys }) = self.held(trust_domain) {
                    if fetched.elapsed() < fresh_for {
                        return Ok(keys);
                    }
                }
                self.fetch(trust_domain, url).await.map_err(failed)
            }
        }
    }

    /// After a JWT-SVID named a key the bundle does not hold: the endpoint's bundle
    /// fetched again (such fetches at most once every 10 seconds per domain; a file is
    /// read on every change anyway). `None` when nothing new could be had.
    pub async fn refreshed(&self, trust_domain: &str) -> Option<Arc<ProviderKeys>> {
        let BundleSource::Url(url) = &self.domain(trust_domain).ok()?.bundle else { return None };
        {
            let mut forced = self.forced.lock().unwrap_or_else(|e| e.into_inner());
            if forced.get(trust_domain).is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
                return None;
            }
            forced.insert(trust_domain.to_owned(), Instant::now());
        }
        self.fetch(trust_domain, url).await.ok()
    }

    /// Fetches the bundle, one fetch at a time; on failure, a bundle fetched within the
    /// last hour is used still.
    async fn fetch(&self, trust_domain: &str, url: &str) -> Result<Arc<ProviderKeys>, String> {
        let _one = self.fetching.lock().await;
        let http = self.http.as_ref().ok_or("no HTTP client")?;
        let fetched = crate::federation::fetch_json(http, url).await.and_then(|jwks| {
            let hint = jwks.get("spiffe_refresh_hint").and_then(Value::as_u64).map(Duration::from_secs);
            Ok((parse_bundle(&jwks)?, hint.unwrap_or(DEFAULT_REFRESH).clamp(MIN_REFRESH, MAX_REFRESH)))
        });
        match fetched {
            Ok((keys, fresh_for)) => {
                let held = Held::Url { fetched: Instant::now(), fresh_for, keys: Arc::clone(&keys) };
                self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(trust_domain.to_owned(), held);
                Ok(keys)
            }
            Err(why) => match self.held(trust_domain) {
                Some(Held::Url { fetched, keys, .. }) if fetched.elapsed() < STALE_FOR => {
                    tracing::warn!(trust_domain, error = %why, "the SPIFFE bundle endpoint failed; using the bundle fetched before");
                    Ok(keys)
                }
                _ => Err(why),
            },
        }
    }
}
