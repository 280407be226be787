//! The decisions service: the decision path, one straight pipeline, every call, no
//! database read on the way (the presented approval, and a warrant named by `jti` on its
//! first use, aside):
//!
//! 1. verify ([`verify`]): the token is a warrant of ours (cached by token digest until
//!    expiry), or, for a warrant named by its `jti` (the AuthZEN COAZ shape), the claims
//!    recorded at issuance (cached by `jti` until expiry; read from the store once);
//!    On a shared database, a server that cannot confirm it is current denies here
//!    (`stale`, see [`crate::cluster`]);
//! 2. admit ([`admit`]): revocation, the identity of every agent in the chain and its
//!    owner, the human, the request's shape and the warrant's scope, a presented approval;
//! 3. assess ([`evaluate`]): the guardrails' signals and trust;
//! 4. evaluate ([`evaluate`]): Cedar;
//! 5. settle ([`settle`]): quarantine, approvals, probing responses, rate limits,
//!    budgets, the approval used;
//! 6. record ([`record`]): the audit record queued (group commit);
//! 7. answer ([`record`]): once it is durable, the answer and the `decision` event.
//!
//! Each stage is a function returning its outcome; only settle writes the decision.
//! Every failure on the way is a deny with a reason (fail closed): an invalid token, an
//! unknown key, a policy error, an audit write failure. `/v1/authorize`, batches and every
//! other entry point are thin adapters onto [`Decisions::authorize`].

pub mod admit;
pub mod anonymous;
pub mod evaluate;
pub mod introspect;
pub mod record;
pub mod settle;
pub mod subject;
pub mod verify;

use std::sync::Arc;

use warrant_core::decision::DecisionCode;
use warrant_core::UnixTime;

use warrant_store::Store;

use crate::approvals::Approvals;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::cluster::Freshness;
use crate::directory::Directory;
use crate::dpop::Dpop;
use crate::events::EventBus;
use crate::govern::Governance;
use crate::guard::Guardrails;
use crate::keys::KeyManager;
use crate::policy::Policy;
use crate::request::{AuthorizeRequest, Decision};
use crate::revocation::Revocation;

pub use record::Queued;
pub use verify::{VerifiedWarrant, WarrantCache, WARRANT_CACHE_MAX};

/// Why a request was refused before the policy was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: DecisionCode,
    pub reason: String,
}

impl Refusal {
    pub(crate) fn new(code: DecisionCode, reason: impl Into<String>) -> Self {
        Refusal { code, reason: reason.into() }
    }
}

/// The decision path and the state only it owns: the verified-warrant cache and the
/// accounting of anonymous denies.
pub struct Decisions {
    clock: Arc<dyn Clock>,
    issuer: String,
    cache: WarrantCache,
    recorded: WarrantCache,
    store: Arc<dyn Store>,
    anonymous: anonymous::AnonymousAccounting,
    keys: Arc<KeyManager>,
    directory: Arc<Directory>,
    revocation: Arc<Revocation>,
    policy: Arc<Policy>,
    guardrails: Arc<Guardrails>,
    approvals: Arc<Approvals>,
    governance: Arc<Governance>,
    audit: Arc<Audit>,
    events: Arc<EventBus>,
    dpop: Arc<Dpop>,
    freshness: Arc<Freshness>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions").field("cached", &self.cache.len()).finish_non_exhaustive()
    }
}

/// What the decisions service is built from.
pub(crate) struct DecisionParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub issuer: String,
    pub anonymous: anonymous::AnonymousConfig,
    pub keys: Arc<KeyManager>,
    pub directory: Arc<Directory>,
    pub revocation: Arc<Revocation>,
    pub policy: Arc<Policy>,
    pub guardrails: Arc<Guardrails>,
    pub approvals: Arc<Approvals>,
    pub governance: Arc<Governance>,
    pub audit: Arc<Audit>,
    pub events: Arc<EventBus>,
    pub dpop: Arc<Dpop>,
    pub freshness: Arc<Freshness>,
}

impl Decisions {
    pub(crate) fn new(parts: DecisionParts) -> Self {
        Decisions {
            cache: WarrantCache::default(),
            recorded: WarrantCache::default(),
            store: parts.store,
            anonymous: anonymous::AnonymousAccounting::new(parts.anonymous),
            clock: parts.clock,
            issuer: parts.issuer,
            keys: parts.keys,
            directory: parts.directory,
            revocation: parts.revocation,
            policy: parts.policy,
            guardrails: parts.guardrails,
            approvals: parts.approvals,
            governance: parts.governance,
            audit: parts.audit,
            events: parts.events,
            dpop: parts.dpop,
            freshness: parts.freshness,
        }
    }

    /// Decides one request. Never fails: every error is a deny with a reason. Answers
    /// only once the decision's audit record is durable.
    pub async fn authorize(&self, req: &AuthorizeRequest) -> Decision {
        let queued = self.authorize_queued(req).await;
        self.answer(queued).await
    }

    /// The decision with its audit record queued but not yet durable. Nobody may be
    /// answered before [`Decisions::answer`]; this split is for benchmarks and batches.
    pub async fn authorize_queued(&self, req: &AuthorizeRequest) -> Queued {
        let now = self.clock.now();
        let decision = self.decide(req, now).await;
        self.record(req, decision, now).await
    }

    /// Decides many requests (at most [`crate::request::MAX_BATCH`]), in order. Their
    /// audit records are queued together and committed in one group; the answers wait
    /// for all of them.
    pub async fn authorize_batch(&self, reqs: &[AuthorizeRequest]) -> Vec<Decision> {
        let mut queued = Vec::with_capacity(reqs.len());
        for req in reqs {
            queued.push(self.authorize_queued(req).await);
        }
        let mut out = Vec::with_capacity(queued.len());
        for q in queued {
            out.push(self.answer(q).await);
        }
        out
    }

    /// Stages 1 to 5: the decision, before its audit record.
    async fn decide(&self, req: &AuthorizeRequest, now: UnixTime) -> Decision {
        let verified = match &req.recorded {
            Some(jti) => self.verify_recorded(jti, now).await,
            None => self.verify(&req.token, now),
        };
        let warrant = match verified {
            Ok(warrant) => warrant,
            Err(refusal) => return self.settle_refusal(req, refusal, None, now).await,
        };
        // A server sharing its database that cannot confirm it is current does not know
        // what was revoked elsewhere: it denies (fail closed).
        if let Some(reason) = self.freshness.stale() {
            return self.settle_refusal(req, Refusal::new(DecisionCode::Stale, reason), Some(&warrant), now).await;
        }
        if let Err(refusal) = self.check_proof(req, &warrant, now).await {
            return self.settle_refusal(req, refusal, Some(&warrant), now).await;
        }
        let decision = match self.admit(req, Arc::clone(&warrant), now).await {
            Err(refusal) => self.settle_refusal(req, refusal, Some(&warrant), now).await,
            // Without a policy set in force (only a poisoned lock) nothing is assessed:
            // a local fault must deny, not teach the guardrails to quarantine.
            Ok(admitted) if self.policy.current().is_none() => {
                Decision::deny(DecisionCode::Policy, "the policy set is unavailable", Some(&admitted.warrant.claims))
            }
            Ok(admitted) => {
                let assessed = self.assess(req, &admitted, now);
                let verdict = self.evaluate(req, &admitted, &assessed, now);
                self.settle(req, admitted, assessed, verdict, now).await
            }
        };
        // Governance notes the agent's use (an unknown or unusable agent is not one).
        if decision.code != DecisionCode::Agent {
            let allowed = (decision.outcome == crate::request::Outcome::Allow)
                .then_some((req.action.as_str(), req.resource.as_str()));
            self.governance.decided(&warrant.claims.client_id, allowed, now);
        }
        decision
    }
}

impl Decisions {
    /// Writes the aggregate record of anonymous denies once its window has ended, or now
    /// when `force` (at shutdown).
    pub(crate) async fn flush_anonymous(&self, force: bool) {
        if let Some(summary) = self.anonymous.close(self.clock.now(), force) {
            if let Err(e) = self.audit.record(summary).await {
                tracing::error!(error = %e, "the aggregate of anonymous denies could not be recorded");
            }
        }
    }
}
