//! Console sign-ins: the sessions of people signed in to `/console` and the pending
//! sign-ins at an identity provider. Kept in the database, so any server of a cluster
//! recognises a session another one opened.

use async_trait::async_trait;
use warrant_core::{Principal, UnixTime};

use crate::StoreError;

/// A console session as stored. The cookie's secret is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    /// SHA-256 of the session cookie's secret.
    pub digest: [u8; 32],
    /// Who signed in.
    pub principal: Principal,
    /// The session's CSRF token, which every state-changing request must carry.
    pub csrf: String,
    /// When it was opened.
    pub created_at: UnixTime,
    /// When it ends by itself.
    pub expires_at: UnixTime,
    /// When it was signed out, if it was.
    pub ended_at: Option<UnixTime>,
}

impl ConsoleSessionRecord {
    /// Whether it may be used at `now`: not signed out, not expired.
    pub fn live_at(&self, now: UnixTime) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A sign-in started at an identity provider and not yet come back (authorization code
/// flow with PKCE): what the callback needs, found by the SHA-256 of its `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLoginRecord {
    /// SHA-256 of the `state` parameter sent to the provider.
    pub state_digest: [u8; 32],
    /// The provider's issuer.
    pub issuer: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// When the sign-in must have come back by.
    pub expires_at: UnixTime,
}

/// Console sessions and pending sign-ins.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Records a new session; a duplicate digest is a conflict.
    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> Result<(), StoreError>;
    /// The session whose cookie secret hashes to `digest`, live or not.
    async fn console_session(&self, digest: &[u8; 32]) -> Result<Option<ConsoleSessionRecord>, StoreError>;
    /// Signs a session out at `at`; `false` when it is unknown or already signed out.
    /// Sessions that ended more than a day before `at` are deleted on the way.
    async fn end_console_session(&self, digest: &[u8; 32], at: UnixTime) -> Result<bool, StoreError>;
    /// Records a pending sign-in; pending sign-ins expired before `now` are deleted on the way.
    async fn insert_console_login(&self, login: &ConsoleLoginRecord, now: UnixTime) -> Result<(), StoreError>;
    /// Takes (deletes and returns) the pending sign-in for `state_digest`, if it has not
    /// expired at `now`: each is used at most once.
    async fn take_console_login(
        &self,
        state_digest: &[u8; 32],
        now: UnixTime,
    ) -> Result<Option<ConsoleLoginRecord>, StoreError>;
}

/// The stored form of a principal (JSON).
pub(crate) fn principal_text(p: &Principal) -> Result<String, StoreError> {
    serde_json::to_string(p).map_err(|e| StoreError::Backend(format!("a principal could not be encoded: {e}")))
}

/// A principal read back.
pub(crate) fn principal_from(text: &str) -> Result<Principal, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a console session's principal: {e}")))
}

/// A stored 32-byte digest read back.
pub(crate) fn digest_from(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("a digest of {} bytes", bytes.len())))
}

/// How long an ended or expired session is kept before it is deleted, seconds.
pub(crate) const KEEP_ENDED_SECS: i64 = 86_400;
