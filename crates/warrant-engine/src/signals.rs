//! Shared Signals, receiving: Security Event Tokens a trusted identity provider pushes
//! (RFC 8935) about its users. CAEP `session-revoked` and `credential-change` end every
//! live warrant that traces to the human (they can sign in again); RISC
//! `account-disabled` and `account-purged` disable the human, so none of their warrants
//! is allowed again until an administrator enables them. A SET about someone Warrant
//! does not know, or of an event type it does not act on, is accepted and changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use warrant_core::{FederatedIdentity, HumanId, UnixTime};
use warrant_store::{RevocationKind, Store};

use crate::clock::Clock;
use crate::federation::{Federation, FederationError};
use crate::registry::Registry;
use crate::revocation::Revocation;

/// CAEP: the user's sessions at the provider were revoked.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP: the user's credentials changed.
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC: the account was disabled.
pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC: the account was deleted.
pub const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";

/// The oldest SET accepted, by its `iat`, seconds; also how long a SET's `jti` is
/// remembered, so a SET is acted on once and a captured one cannot be replayed later.
pub const MAX_SET_AGE_SECS: i64 = 900;
/// The most SET ids remembered at once.
const MAX_SEEN: usize = 100_000;

/// Why a SET was refused; [`SignalError::err`] is its RFC 8935 error code.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Not from a configured provider.
    #[error("{0}")]
    Issuer(String),
    /// Signed with a key the provider does not publish, or not verifiable.
    #[error("{0}")]
    Key(String),
    /// Not for Warrant.
    #[error("{0}")]
    Audience(String),
    /// Malformed, expired, or naming a subject of another provider.
    #[error("{0}")]
    Invalid(String),
    /// The provider's keys could not be read; the transmitter should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The change could not be made (store or audit); the transmitter should retry.
    #[error("{0}")]
    Internal(String),
}

impl SignalError {
    /// The RFC 8935 `err` code for a 400 answer (`None`: not the sender's fault).
    pub fn err(&self) -> Option<&'static str> {
        match self {
            SignalError::Issuer(_) => Some("invalid_issuer"),
            SignalError::Key(_) => Some("invalid_key"),
            SignalError::Audience(_) => Some("invalid_audience"),
            SignalError::Invalid(_) => Some("invalid_request"),
            SignalError::Unavailable(_) | SignalError::Internal(_) => None,
        }
    }
}

impl From<FederationError> for SignalError {
    fn from(e: FederationError) -> Self {
        use warrant_token::oidc::IdTokenError as E;
        match e {
            FederationError::Untrusted(_) => SignalError::Issuer(e.to_string()),
            FederationError::Unavailable(why) => SignalError::Unavailable(why),
            FederationError::Invalid(E::UnknownKey | E::BadSignature | E::UnsupportedAlg(_)) => {
                SignalError::Key(e.to_string())
            }
            FederationError::Invalid(E::Issuer(_)) => SignalError::Issuer(e.to_string()),
            FederationError::Invalid(E::Audience(_)) => SignalError::Audience(e.to_string()),
            FederationError::Invalid(_) => SignalError::Invalid(e.to_string()),
        }
    }
}

/// What a SET changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// The human it was about, when Warrant knows them.
    pub human: Option<HumanId>,
    /// What was done, in order: `warrants_revoked`, `human_disabled`.
    pub applied: Vec<&'static str>,
    /// The SET was received before (a retried delivery): nothing was done again.
    pub duplicate: bool,
}

/// The receiver.
pub struct Signals {
    federation: Arc<Federation>,
    registry: Arc<Registry>,
    revocation: Arc<Revocation>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    receiver: String,
    /// (issuer, jti) of the SETs received in the last [`MAX_SET_AGE_SECS`], with their `iat`.
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").field("receiver", &self.receiver).finish_non_exhaustive()
    }
}

/// What the receiver is built from.
pub(crate) struct SignalParts {
    pub federation: Arc<Federation>,
    pub registry: Arc<Registry>,
    pub revocation: Arc<Revocation>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Warrant's issuer, an audience SETs may name.
    pub receiver: String,
}

/// The subject of an event: the event's own `subject`, else the SET's `sub_id`; only the
/// `iss_sub` format names a human here.
fn subject_of(event: &Value, sub_id: Option<&Value>) -> Result<Option<FederatedIdentity>, SignalError> {
    let Some(subject) = event.get("subject").or(sub_id) else {
        return Err(SignalError::Invalid("the event names no subject (`sub_id` or `subject`)".into()));
    };
    if subject.get("format").and_then(Value::as_str) != Some("iss_sub") {
        return Ok(None);
    }
    match (subject.get("iss").and_then(Value::as_str), subject.get("sub").and_then(Value::as_str)) {
        (Some(iss), Some(sub)) => Ok(Some(FederatedIdentity { issuer: iss.to_owned(), subject: sub.to_owned() })),
        _ => Err(SignalError::Invalid("an `iss_sub` subject needs `iss` and `sub`".into())),
    }
}

impl Signals {
    pub(crate) fn new(parts: SignalParts) -> Self {
        let SignalParts { federation, registry, revocation, store, clock, receiver } = parts;
        Signals { federation, registry, revocation, store, clock, receiver, seen: Mutex::default() }
    }

    /// Verifies and acts on one SET: every event is checked before any is acted on; a
    /// SET received before is accepted and not acted on again.
    pub async fn receive(&self, token: &str) -> Result<Received, SignalError> {
        let now = self.clock.now();
        let (issuer, set) = self.federation.security_event(token, &self.receiver, now).await?;
        if set.iat < now.0.saturating_sub(MAX_SET_AGE_SECS) {
            return Err(SignalError::Invalid(format!(
                "the SET was issued more than {MAX_SET_AGE_SECS} s ago; it is not acted on"
            )));
        }
        let mut actions = Vec::new();
        for (kind, event) in &set.events {
            let disable = matches!(kind.as_str(), ACCOUNT_DISABLED | ACCOUNT_PURGED);
            let revoke = matches!(kind.as_str(), SESSION_REVOKED | CREDENTIAL_CHANGE);
            if !disable && !revoke {
                continue;
            }
            let Some(identity) = subject_of(event, set.sub_id.as_ref())? else {
                tracing::warn!(event = %kind, set = %set.jti, "a security event names its subject in a format Warrant does not map to a human; nothing done");
                continue;
            };
            if identity.issuer != issuer {
                return Err(SignalError::Invalid(format!(
                    "`{issuer}` may only signal about its own users, not `{}`'s",
                    warrant_core::permission::shown(&identity.issuer)
                )));
            }
            actions.push((kind.rsplit('/').next().unwrap_or(kind).to_owned(), identity, revoke, disable));
        }
        let key = (issuer.clone(), set.jti.clone());
        if !self.remember(key.clone(), set.iat, now)? {
            return Ok(Received { duplicate: true, ..Received::default() });
        }
        // Servers sharing the database: one of them acts on a SET, once.
        let until = UnixTime(set.iat.saturating_add(MAX_SET_AGE_SECS));
        match self.store.claim_set(&issuer, &set.jti, until, now).await {
            Ok(true) => {}
            Ok(false) => return Ok(Received { duplicate: true, ..Received::default() }),
            Err(e) => {
                self.forget(&key);
                return Err(SignalError::Unavailable(format!(
                    "cannot tell whether another server received this SET: {e}"
                )));
            }
        }
        let mut received = Received::default();
        for (short, identity, revoke, disable) in actions {
            if let Err(e) = self.act(&short, &identity, revoke, disable, &set.jti, &mut received).await {
                // Not acted on in full: a retried delivery must be acted on.
                self.forget(&key);
                if let Err(release) = self.store.release_set(&issuer, &set.jti).await {
                    tracing::warn!(error = %release, set = %set.jti, "could not give up a SET that was not acted on in full");
                }
                return Err(e);
            }
        }
        Ok(received)
    }

    /// Forgets a SET noted as received (it was not acted on in full).
    fn forget(&self, key: &(String, String)) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(key);
        }
    }

    /// Notes a SET as received; `false` when it was received before.
    fn remember(&self, key: (String, String), iat: i64, now: UnixTime) -> Result<bool, SignalError> {
        let mut seen = self.seen.lock().map_err(|_| SignalError::Internal("the SET register is poisoned".into()))?;
        if seen.contains_key(&key) {
            return Ok(false);
        }
        if seen.len() >= MAX_SEEN {
            let oldest = now.0.saturating_sub(MAX_SET_AGE_SECS);
            seen.retain(|_, at| *at >= oldest);
            if seen.len() >= MAX_SEEN {
                return Err(SignalError::Unavailable("too many security events at once; retry later".into()));
            }
        }
        seen.insert(key, iat);
        Ok(true)
    }

    async fn act(
        &self,
        short: &str,
        identity: &FederatedIdentity,
        revoke: bool,
        disable: bool,
        jti: &str,
        received: &mut Received,
    ) -> Result<(), SignalError> {
        let Some(human) =
            self.store.human_by_identity(identity).await.map_err(|e| SignalError::Internal(e.to_string()))?
        else {
            return Ok(());
        };
        received.human = Some(human.id.clone());
        if revoke {
            let reason = format!("the identity provider signalled {short} (SET {jti})");
            self.revocation
                .revoke(RevocationKind::Human, human.id.as_str(), &reason)
                .await
                .map_err(|e| SignalError::Internal(e.to_string()))?;
            received.applied.push("warrants_revoked");
        }
        if disable && human.is_active() {
            self.registry
                .disable_human(human.id.as_str(), None)
                .await
                .map_err(|e| SignalError::Internal(e.to_string()))?;
            received.applied.push("human_disabled");
        }
        tracing::info!(human = %human.id, event = short, set = %jti, "acted on a security event");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warrant_token::oidc::IdTokenError;

    use super::*;

    #[test]
    fn the_subject_is_the_events_own_else_the_sets_and_only_iss_sub_names_a_human() {
        let top = json!({"format": "iss_sub", "iss": "https://idp", "sub": "u-1"});
        let own = json!({"subject": {"format": "iss_sub", "iss": "https://idp", "sub": "u-2"}});
        let named = |event: &Value, sub_id: Option<&Value>| subject_of(event, sub_id).unwrap().map(|i| i.subject);
        assert_eq!(named(&json!({}), Some(&top)).as_deref(), Some("u-1"));
        assert_eq!(named(&own, Some(&top)).as_deref(), Some("u-2"));
        assert_eq!(named(&json!({"subject": {"format": "email", "email": "a@b"}}), None), None);
        assert!(matches!(subject_of(&json!({}), None), Err(SignalError::Invalid(_))));
        let half = json!({"subject": {"format": "iss_sub", "iss": "https://idp"}});
        assert!(matches!(subject_of(&half, None), Err(SignalError::Invalid(_))));
    }

    #[test]
    fn refusals_carry_the_rfc_8935_codes_and_transient_failures_none() {
        let code = |e: FederationError| SignalError::from(e).err();
        assert_eq!(code(FederationError::Untrusted("x".into())), Some("invalid_issuer"));
        assert_eq!(code(FederationError::Invalid(IdTokenError::UnknownKey)), Some("invalid_key"));
        assert_eq!(code(FederationError::Invalid(IdTokenError::BadSignature)), Some("invalid_key"));
        assert_eq!(code(FederationError::Invalid(IdTokenError::Audience("w".into()))), Some("invalid_audience"));
        assert_eq!(code(FederationError::Invalid(IdTokenError::Time("has expired"))), Some("invalid_request"));
        assert_eq!(code(FederationError::Unavailable("down".into())), None);
        assert_eq!(SignalError::Internal("disk".into()).err(), None);
    }
}
