//! Stage 1, verify: the token is a warrant this issuer signed, unexpired, with a
//! readable scope. Verified warrants are cached by the SHA-256 of the token until they
//! expire, so a warrant's signature is checked once. A token that is not ours (foreign
//! issuer, unknown key, forged signature, not a JWT) is shadow activity, noted for
//! governance.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};
use warrant_core::decision::DecisionCode;
use warrant_core::permission::shown;
use warrant_core::{Scope, UnixTime, WarrantClaims, WarrantId};
use warrant_token::warrant::verify_warrant;

use super::{Decisions, Refusal};
use crate::govern::shadow::{peek, ShadowCause};
use crate::request::AuthorizeRequest;

/// The most entries the verified-warrant cache holds before it is swept.
pub const WARRANT_CACHE_MAX: usize = 100_000;

/// A verified warrant, as cached.
#[derive(Debug)]
pub struct VerifiedWarrant {
    /// Its claims.
    pub claims: Arc<WarrantClaims>,
    /// Its parsed scope.
    pub scope: Scope,
    /// Its chain of agents, root first.
    pub chain: Vec<warrant_core::AgentId>,
    /// The Cedar context attributes its claims give every decision made with it.
    pub context: warrant_policy::WarrantContext,
}

impl VerifiedWarrant {
    /// A verified warrant of `claims` with scope `scope`.
    pub fn new(claims: WarrantClaims, scope: Scope) -> Self {
        let chain = claims.chain();
        let context = warrant_policy::WarrantContext::new(&claims);
        VerifiedWarrant { claims: Arc::new(claims), scope, chain, context }
    }
}

/// Verified warrants by SHA-256 of the token, until they expire.
#[derive(Debug, Default)]
pub struct WarrantCache {
    entries: RwLock<HashMap<[u8; 32], Arc<VerifiedWarrant>>>,
}

impl WarrantCache {
    pub(crate) fn get(&self, digest: &[u8; 32], now: UnixTime) -> Option<Arc<VerifiedWarrant>> {
        let hit = self.entries.read().ok()?.get(digest).cloned()?;
        (hit.claims.exp > now).then_some(hit)
    }

    pub(crate) fn put(&self, digest: [u8; 32], warrant: Arc<VerifiedWarrant>, now: UnixTime) {
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= WARRANT_CACHE_MAX {
                map.retain(|_, w| w.claims.exp > now);
                if map.len() >= WARRANT_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(digest, warrant);
        }
    }

    /// How many warrants are cached.
    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The recorded-warrant cache's key for `jti` (a digest, so the cache's type is the
/// token cache's).
fn recorded_key(jti: &WarrantId) -> [u8; 32] {
    Sha256::digest(format!("recorded:{jti}").as_bytes()).into()
}

/// Whether a verification failure means the token was not issued by Warrant (shadow
/// activity), as opposed to one of ours that expired or is not valid yet.
fn shadow_cause(e: &warrant_token::warrant::VerifyError) -> Option<ShadowCause> {
    use warrant_token::jws::JwsError;
    use warrant_token::warrant::VerifyError;
    match e {
        VerifyError::WrongIssuer(_) => Some(ShadowCause::ForeignIssuer),
        VerifyError::Jws(JwsError::UnknownKey) => Some(ShadowCause::UnknownKey),
        VerifyError::Jws(JwsError::BadSignature) => Some(ShadowCause::Forged),
        VerifyError::Jws(_) => Some(ShadowCause::NotAWarrant),
        _ => None,
    }
}

impl Decisions {
    /// Stage 1: the verified warrant, from the cache when it was verified before.
    pub(crate) fn verify(&self, token: &str, now: UnixTime) -> Result<Arc<VerifiedWarrant>, Refusal> {
        self.verify_noting(token, now, true)
    }

    /// Stage 1 for a warrant named by its `jti` (a PEP that validated the JWT itself):
    /// the claims recorded when Warrant issued it, cached by `jti` until it expires. An
    /// unknown `jti`, a warrant recorded before claims were kept, or one that expired or
    /// is not valid yet is an `invalid_token` deny; a store failure is an `internal` one.
    pub(crate) async fn verify_recorded(
        &self,
        jti: &WarrantId,
        now: UnixTime,
    ) -> Result<Arc<VerifiedWarrant>, Refusal> {
        let digest = recorded_key(jti);
        if let Some(hit) = self.recorded.get(&digest, now) {
            if hit.claims.nbf <= now {
                return Ok(hit);
            }
        }
        let invalid = |why: &str| {
            Refusal::new(
                DecisionCode::InvalidToken,
                format!("invalid warrant reference `{}`: {why}", shown(jti.as_str())),
            )
        };
        let record = self
            .store
            .get_warrant(jti)
            .await
            .map_err(|e| Refusal::new(DecisionCode::Internal, format!("the warrant record could not be read: {e}")))?
            .ok_or_else(|| invalid("no warrant with this id was issued here"))?;
        let claims = record
            .claims
            .ok_or_else(|| invalid("it was issued before its claims were recorded; present the token instead"))?;
        if claims.iss != self.issuer || claims.jti != *jti {
            return Err(invalid("its recorded claims are not this issuer's"));
        }
        if claims.exp <= now {
            return Err(invalid("it has expired"));
        }
        if claims.nbf > now {
            return Err(invalid("it is not valid yet"));
        }
        let scope = claims
            .scope()
            .map_err(|e| Refusal::new(DecisionCode::InvalidToken, format!("invalid warrant scope: {e}")))?;
        let verified = Arc::new(VerifiedWarrant::new(claims, scope));
        self.recorded.put(digest, Arc::clone(&verified), now);
        Ok(verified)
    }

    /// Stage 1, noting a token that is not ours as shadow activity only when `note`
    /// (a look-ahead at the claims, before the pipeline verifies, does not note it).
    pub(crate) fn verify_noting(
        &self,
        token: &str,
        now: UnixTime,
        note: bool,
    ) -> Result<Arc<VerifiedWarrant>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&digest, now) {
            return Ok(hit);
        }
        let ring =
            self.keys.ring().map_err(|e| Refusal::new(DecisionCode::Internal, format!("keys unavailable: {e}")))?;
        let claims = verify_warrant(token, ring.as_ref(), &self.issuer, now).map_err(|e| {
            if let Some(cause) = shadow_cause(&e).filter(|_| note) {
                let seen = peek(token);
                // A key we do not know, on a token claiming another issuer: that issuer's.
                let foreign = seen.iss.as_deref().is_some_and(|iss| iss != self.issuer);
                let cause = if foreign { ShadowCause::ForeignIssuer } else { cause };
                self.governance.shadow().record(cause, seen, now);
            }
            Refusal::new(DecisionCode::InvalidToken, format!("invalid warrant: {e}"))
        })?;
        let scope = claims
            .scope()
            .map_err(|e| Refusal::new(DecisionCode::InvalidToken, format!("invalid warrant scope: {e}")))?;
        let verified = Arc::new(VerifiedWarrant::new(claims, scope));
        self.cache.put(digest, Arc::clone(&verified), now);
        Ok(verified)
    }

    /// Stage 1, proof of possession: a DPoP-bound warrant (`cnf.jkt`) is used only with a
    /// fresh proof made with its key for this request and this token. A bound warrant named
    /// by its `jti` (no token to hash) is refused.
    pub(crate) async fn check_proof(
        &self,
        req: &AuthorizeRequest,
        warrant: &VerifiedWarrant,
        now: UnixTime,
    ) -> Result<(), Refusal> {
        if req.recorded.is_some() && warrant.claims.cnf.is_some() {
            return Err(Refusal::new(
                DecisionCode::Dpop,
                "a DPoP-bound warrant must be presented as its token (`subject.properties.token`), so the proof can be checked against it",
            ));
        }
        let token = req.recorded.is_none().then_some(req.token.as_str());
        self.dpop
            .check_bound(warrant.claims.cnf.as_ref(), req.proof.as_ref(), token, now)
            .await
            .map_err(|e| Refusal::new(DecisionCode::Dpop, e.to_string()))
    }

    /// The claims of `token` if it is a warrant of ours (signature, issuer, not expired),
    /// whatever else is true of it (revoked or not); notes nothing.
    pub fn verified_claims(&self, token: &str) -> Option<Arc<WarrantClaims>> {
        self.verify_noting(token, self.clock.now(), false).ok().map(|w| Arc::clone(&w.claims))
    }

    /// Whether `token` is a warrant of ours already verified and not expired (in the
    /// verified-warrant cache): a cheap look-up, with no verification and no side effect.
    pub fn knows_warrant(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.cache.get(&digest, self.clock.now()).is_some()
    }

    /// How many verified warrants are cached (presented and named by `jti`).
    pub fn cached_warrants(&self) -> usize {
        self.cache.len() + self.recorded.len()
    }
}
