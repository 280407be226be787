//! What every handler shares: the engine, the admin token, metrics and rate limits.

use std::sync::Arc;

use warrant_engine::Engine;

use crate::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The application.
    pub engine: Arc<Engine>,
    /// The admin bearer token management endpoints require.
    pub admin_token: AdminToken,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Rate limits on the token endpoint and anonymous decisions.
    pub limits: Arc<crate::ratelimit::RateLimits>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("engine", &self.engine).finish_non_exhaustive()
    }
}

/// The admin token as a server holds it: the SHA-256 presented tokens are compared with,
/// and the token itself when this server's data directory holds it (on a database several
/// servers share, only the first server's does). Its `Debug` shows neither.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken").field("held", &self.token.is_some()).finish_non_exhaustive()
    }
}

impl AdminToken {
    /// The token itself, known to this server.
    pub fn new(token: &str) -> Self {
        AdminToken { digest: sha256(token), token: Some(Arc::from(token)) }
    }

    /// A token known only by its SHA-256.
    pub(crate) fn by_digest(digest: [u8; 32]) -> Self {
        AdminToken { digest, token: None }
    }

    /// Whether `presented` is the admin token (its SHA-256 compared in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(sha256(presented).as_slice().ct_eq(self.digest.as_slice()))
    }

    /// The token, when this server's data directory holds it.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// The SHA-256 of `text`, as the admin token is kept and compared.
pub(crate) fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}
