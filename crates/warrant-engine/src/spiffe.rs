//! SPIFFE trust domains whose workloads may authenticate as agents with JWT-SVIDs
//! (`[[federation.spiffe]]`): each domain's trust bundle, read from its file and read
//! again whenever the file changes (SPIRE and other SPIFFE implementations rotate keys by
//! rewriting the bundle).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use warrant_token::oidc::ProviderKeys;

/// One trusted SPIFFE trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeDomain {
    /// The trust domain, e.g. `example.org`.
    pub trust_domain: String,
    /// Its trust bundle: a JWKS (RFC 7517, SPIFFE bundle format) whose keys with `use`
    /// `jwt-svid` verify its JWT-SVIDs.
    pub bundle_file: PathBuf,
}

/// Why a trust domain's keys are not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    /// The trust domain is not configured.
    #[error("trust domain `{0}` is not trusted (not in `[[federation.spiffe]]`)")]
    NotTrusted(String),
    /// The bundle file could not be read or holds no usable key.
    #[error("the trust bundle of `{domain}` could not be used: {why}")]
    Bundle {
        /// The trust domain.
        domain: String,
        /// Why.
        why: String,
    },
}

/// The trusted SPIFFE trust domains and their bundles.
#[derive(Debug, Default)]
pub struct SpiffeTrust {
    domains: Vec<SpiffeDomain>,
    bundles: Mutex<HashMap<String, (SystemTime, Arc<ProviderKeys>)>>,
}

impl SpiffeTrust {
    /// Trusts `domains`.
    pub fn new(domains: Vec<SpiffeDomain>) -> Self {
        for d in &domains {
            tracing::info!(trust_domain = %d.trust_domain, bundle = %d.bundle_file.display(), "trusting a SPIFFE trust domain's JWT-SVIDs");
        }
        SpiffeTrust { domains, bundles: Mutex::new(HashMap::new()) }
    }

    /// Whether `trust_domain` is trusted.
    pub fn trusts(&self, trust_domain: &str) -> bool {
        self.domains.iter().any(|d| d.trust_domain == trust_domain)
    }

    /// The JWT-SVID keys of `trust_domain`, read from its bundle file when the file is new
    /// or changed since it was last read.
    pub async fn keys(&self, trust_domain: &str) -> Result<Arc<ProviderKeys>, SpiffeError> {
        let domain = self
            .domains
            .iter()
            .find(|d| d.trust_domain == trust_domain)
            .ok_or_else(|| SpiffeError::NotTrusted(trust_domain.chars().take(100).collect()))?;
        let failed = |why: String| SpiffeError::Bundle { domain: trust_domain.to_owned(), why };
        let modified = tokio::fs::metadata(&domain.bundle_file)
            .await
            .and_then(|m| m.modified())
            .map_err(|e| failed(e.to_string()))?;
        if let Some((seen, keys)) = self.bundles.lock().unwrap_or_else(|e| e.into_inner()).get(trust_domain) {
            if *seen == modified {
                return Ok(Arc::clone(keys));
            }
        }
        let bytes = tokio::fs::read(&domain.bundle_file).await.map_err(|e| failed(e.to_string()))?;
        if bytes.len() > 1 << 20 {
            return Err(failed("the bundle is larger than 1 MiB".into()));
        }
        let jwks: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| failed(format!("not a JWKS: {e}")))?;
        let keys = Arc::new(ProviderKeys::from_jwks_for(&jwks, "jwt-svid"));
        if keys.is_empty() {
            return Err(failed("it holds no usable JWT-SVID key (RSA, P-256 or Ed25519)".into()));
        }
        self.bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(trust_domain.to_owned(), (modified, Arc::clone(&keys)));
        Ok(keys)
    }
}
