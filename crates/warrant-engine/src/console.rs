//! Console sign-in: who is signed in to `/console` (and may use the HTTP API with the
//! same session), and how they got there.
//!
//! Three ways in, each giving a [`Principal`]:
//! - at an identity provider configured for the console (authorization code flow with
//!   PKCE, `state` and `nonce`): an operator whose groups map to a [`Role`], or else a
//!   registered human signed in at that provider, who sees only their own agents and
//!   approvals;
//! - with a human's approver token (`POST /v1/humans/{id}/approver-sessions`), the
//!   human's own credential (a delegation session token, which agents hold, is refused);
//! - with the admin token (break-glass), checked by the server.
//!
//! A session is a random secret in a cookie; the store keeps only its SHA-256, with the
//! principal, a CSRF token and the expiry, so every server on a shared database knows
//! it, and signing out ends it everywhere.

use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use warrant_core::{Principal, Role, UnixTime};
use warrant_store::{ConsoleLoginRecord, ConsoleSessionRecord, Store, StoreError};

use crate::clock::Clock;
use crate::federation::{Federation, FederationError};
use crate::random;
use crate::random::secret_digest as digest;
use crate::registry::Registry;

/// How long a pending sign-in at a provider may take, seconds.
pub const LOGIN_TTL_SECS: i64 = 600;
/// The default session lifetime, seconds (8 hours).
pub const DEFAULT_SESSION_TTL_SECS: i64 = 8 * 3600;

/// Why a sign-in or a session failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The token, code or state presented does not sign anyone in; the message says why
    /// (it is safe to show).
    #[error("{0}")]
    Refused(String),
    /// No such provider is configured for the console.
    #[error("`{0}` is not an identity provider configured for the console")]
    UnknownProvider(String),
    /// The provider could not be reached or answered wrongly.
    #[error("the identity provider could not sign you in: {0}")]
    Provider(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness failed.
    #[error("{0}")]
    Internal(String),
}

impl From<FederationError> for ConsoleError {
    fn from(e: FederationError) -> Self {
        match e {
            FederationError::Unavailable(m) => ConsoleError::Provider(m),
            other => ConsoleError::Refused(other.to_string()),
        }
    }
}

/// A session just opened: the cookie's secret (shown once, never stored) and what the
/// pages need.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The cookie value.
    pub secret: String,
    /// The session as stored.
    pub session: ConsoleSession,
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Who is signed in.
    pub principal: Principal,
    /// The CSRF token every state-changing request of this session must carry.
    pub csrf: String,
    /// When the session ends by itself.
    pub expires_at: UnixTime,
}

/// A sign-in sent to a provider: where to send the browser.
#[derive(Debug, Clone)]
pub struct Started {
    /// The provider's authorization URL with every parameter.
    pub redirect: String,
    /// The `state` it carries: the browser that started the sign-in keeps it (a cookie),
    /// and only that browser may finish it.
    pub state: String,
}

/// The console's sessions and sign-ins.
pub struct Console {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    federation: Arc<Federation>,
    registry: Arc<Registry>,
    /// `<issuer>/console/oidc/callback`.
    redirect_uri: String,
    session_ttl: i64,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("redirect_uri", &self.redirect_uri).finish_non_exhaustive()
    }
}

/// What [`Console::new`] needs.
pub struct ConsoleParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The trusted identity providers.
    pub federation: Arc<Federation>,
    /// Humans (for approver tokens and signed-in humans).
    pub registry: Arc<Registry>,
    /// Warrant's public URL (its issuer).
    pub issuer: String,
    /// How long a session lasts, seconds.
    pub session_ttl: i64,
}

fn secret() -> Result<String, ConsoleError> {
    random::secret::<32>().map_err(|e| ConsoleError::Internal(e.to_string()))
}

impl Console {
    /// The console over `parts`.
    pub fn new(parts: ConsoleParts) -> Self {
        Console {
            redirect_uri: format!("{}/console/oidc/callback", parts.issuer.trim_end_matches('/')),
            store: parts.store,
            clock: parts.clock,
            federation: parts.federation,
            registry: parts.registry,
            session_ttl: parts.session_ttl,
        }
    }

    /// The redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The issuers people may sign in at, in configuration order.
    pub fn providers(&self) -> Vec<String> {
        self.federation.console_providers().map(|p| p.issuer.clone()).collect()
    }

    /// Opens a session for `principal`.
    pub async fn open(&self, principal: Principal) -> Result<Opened, ConsoleError> {
        let now = self.clock.now();
        let secret = secret()?;
        let record = ConsoleSessionRecord {
            digest: digest(&secret),
            principal,
            csrf: self::secret()?,
            created_at: now,
            expires_at: now.plus(self.session_ttl),
            ended_at: None,
        };
        self.store.insert_console_session(&record).await?;
        tracing::info!(principal = %record.principal.label(), role = record.principal.role_label(), "opened a console session");
        Ok(Opened {
            secret,
            session: ConsoleSession { principal: record.principal, csrf: record.csrf, expires_at: record.expires_at },
        })
    }

    /// The live session whose cookie is `secret`: not signed out, not expired, and for a
    /// human, the human still active. Anything else (including a store error) is `None`:
    /// the caller is not signed in.
    pub async fn session(&self, secret: &str) -> Option<ConsoleSession> {
        if secret.is_empty() || secret.len() > 128 {
            return None;
        }
        let record = match self.store.console_session(&digest(secret)).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, "a console session could not be read; treated as signed out");
                return None;
            }
        };
        if !record.live_at(self.clock.now()) {
            return None;
        }
        if let Principal::Human { id, .. } = &record.principal {
            if !self.registry.is_active_human(id) {
                return None;
            }
        }
        Some(ConsoleSession { principal: record.principal, csrf: record.csrf, expires_at: record.expires_at })
    }

    /// Signs the session `secret` out, on every server.
    pub async fn sign_out(&self, secret: &str) -> Result<(), ConsoleError> {
        self.store.end_console_session(&digest(secret), self.clock.now()).await?;
        Ok(())
    }

    /// The human whose approver token `token` is, as a principal.
    pub async fn human_by_token(&self, token: &str) -> Result<Principal, ConsoleError> {
        let id = self.registry.approver_human(token).await.ok_or_else(|| {
            ConsoleError::Refused(
                "that is not a live approver token of an active human (a delegation session token, which agents \
                 hold, does not sign in)"
                    .into(),
            )
        })?;
        let human = self.registry.human(id.as_str()).await.map_err(|e| ConsoleError::Refused(e.to_string()))?;
        Ok(Principal::Human { id: human.id, name: human.name })
    }

    /// Starts a sign-in at `issuer`: records the PKCE verifier and nonce under the
    /// `state`, and returns the provider's URL to send the browser to.
    pub async fn start(&self, issuer: &str) -> Result<Started, ConsoleError> {
        let provider = self
            .federation
            .console_providers()
            .find(|p| p.issuer == issuer)
            .ok_or_else(|| ConsoleError::UnknownProvider(warrant_core::permission::shown(issuer)))?;
        let client = provider.console.as_ref().ok_or_else(|| ConsoleError::UnknownProvider(issuer.to_owned()))?;
        let endpoints = self.federation.endpoints(issuer).await?;
        let (state, verifier, nonce) = (secret()?, secret()?, secret()?);
        let now = self.clock.now();
        let login = ConsoleLoginRecord {
            state_digest: digest(&state),
            issuer: issuer.to_owned(),
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            expires_at: now.plus(LOGIN_TTL_SECS),
        };
        self.store.insert_console_login(&login, now).await?;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|e| ConsoleError::Provider(format!("its authorization endpoint is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.audience)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scopes(&client.scopes))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Started { redirect: url.into(), state })
    }

    /// Finishes a sign-in: the `state` must be one this console started (once, within
    /// [`LOGIN_TTL_SECS`]), the code is redeemed with its verifier, the ID token verified
    /// (signature, issuer, audience, times) and its `nonce` must be the one sent. An
    /// operator is whoever the provider's groups give a role; anyone else must be a human
    /// already registered from that provider, and signs in as that human.
    pub async fn finish(&self, code: &str, state: &str) -> Result<Principal, ConsoleError> {
        let now = self.clock.now();
        let login = self.store.take_console_login(&digest(state), now).await?.ok_or_else(|| {
            ConsoleError::Refused("this sign-in is unknown, was already used or took too long; start again".into())
        })?;
        let provider = self
            .federation
            .console_providers()
            .find(|p| p.issuer == login.issuer)
            .ok_or_else(|| ConsoleError::UnknownProvider(login.issuer.clone()))?;
        let endpoints = self.federation.endpoints(&login.issuer).await?;
        let id_token =
            self.federation.redeem_code(provider, &endpoints.token, code, &login.verifier, &self.redirect_uri).await?;
        let signin = self.federation.sign_in(&id_token, now).await?;
        if signin.identity.issuer != login.issuer {
            return Err(ConsoleError::Refused("the ID token comes from another provider".into()));
        }
        if signin.nonce.as_deref() != Some(login.nonce.as_str()) {
            return Err(ConsoleError::Refused("the ID token's `nonce` is not the one this sign-in sent".into()));
        }
        let roles = provider.console.as_ref().map(|c| &c.roles);
        let role = roles.and_then(|r| Role::from_groups(&signin.groups, r.iter().map(|(k, v)| (*k, v.as_slice()))));
        if let Some(role) = role {
            tracing::info!(issuer = %signin.identity.issuer, subject = %signin.identity.subject, role = role.as_str(), "an operator signed in to the console");
            return Ok(Principal::Operator {
                issuer: signin.identity.issuer,
                subject: signin.identity.subject,
                name: signin.name,
                role,
            });
        }
        match self.store.human_by_identity(&signin.identity).await? {
            Some(human) if human.is_active() => Ok(Principal::Human { id: human.id, name: human.name }),
            Some(_) => Err(ConsoleError::Refused("this human is disabled".into())),
            None => Err(ConsoleError::Refused(
                "you have no console role (none of your groups is mapped to one) and no agents here".into(),
            )),
        }
    }
}

/// The scopes to ask for: the configured ones, with `openid` first if missing.
fn scopes(configured: &str) -> String {
    let mut out: Vec<&str> = configured.split_whitespace().collect();
    if !out.contains(&"openid") {
        out.insert(0, "openid");
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_is_always_asked_for_once() {
        assert_eq!(scopes("profile email"), "openid profile email");
        assert_eq!(scopes("openid groups"), "openid groups");
        assert_eq!(scopes(""), "openid");
    }
}
