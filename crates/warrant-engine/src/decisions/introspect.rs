//! Token introspection (RFC 7662): whether a warrant is in force now, by the same checks
//! the decision path makes before the policy (stage 1 and the in-force part of stage 2),
//! so a warrant introspection calls active is one a decision would not refuse for what it
//! is. Nothing is recorded: introspection is a read.

use std::sync::Arc;

use warrant_core::{AgentId, UnixTime, WarrantClaims};

use super::Decisions;
use crate::dpop::PresentedProof;

/// Who introspects: an operator (the admin token), an enforcement point (a PEP
/// credential), or an agent authenticated by its client assertion, which may introspect
/// only warrants whose chain it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspector {
    /// The admin token.
    Admin,
    /// An enforcement point, by its credential's name.
    Pep(String),
    /// An agent (`private_key_jwt`).
    Agent(AgentId),
}

/// The answer: active with the warrant's claims, or inactive (with why, for the log
/// only: RFC 7662 §2.2 tells the caller nothing more than `active: false`).
#[derive(Debug, Clone)]
pub enum Introspection {
    /// The warrant is in force.
    Active(Arc<WarrantClaims>),
    /// It is not, or not for this caller.
    Inactive(String),
}

impl Decisions {
    /// Introspects `token` for `caller`. For a bound warrant, a DPoP proof that comes
    /// with the request (made for the introspection request and this token) is checked
    /// and spent, and the agent holding it (its `client_id`) must send one. An enforcement
    /// point (or an ancestor agent) introspecting a bound warrant gets the `cnf` and checks
    /// the holder's proof itself (RFC 9449 §6.2). A proof sent with an unbound warrant is
    /// ignored.
    pub async fn introspect(
        &self,
        token: &str,
        caller: &Introspector,
        proof: Option<&PresentedProof>,
    ) -> Introspection {
        let now = self.clock.now();
        self.introspect_at(token, caller, proof, now).await
    }

    async fn introspect_at(
        &self,
        token: &str,
        caller: &Introspector,
        proof: Option<&PresentedProof>,
        now: UnixTime,
    ) -> Introspection {
        let warrant = match self.verify_noting(token, now, false) {
            Ok(w) => w,
            Err(refusal) => return Introspection::Inactive(refusal.reason),
        };
        if warrant.claims.nbf > now {
            return Introspection::Inactive("the warrant is not valid yet".into());
        }
        if let Introspector::Agent(agent) = caller {
            if !warrant.chain.contains(agent) {
                return Introspection::Inactive(format!("agent `{agent}` is not in the warrant's chain"));
            }
        }
        // A stale server cannot say the warrant is still in force (fail closed).
        if let Some(reason) = self.freshness.stale() {
            return Introspection::Inactive(reason);
        }
        if let Err(refusal) = self.in_force(&warrant, now) {
            return Introspection::Inactive(refusal.reason);
        }
        // The agent the warrant was issued to holds its key; an ancestor does not.
        let holder = matches!(caller, Introspector::Agent(a) if *a == warrant.claims.client_id);
        let cnf = warrant.claims.cnf.as_ref();
        if cnf.is_some() && (proof.is_some() || holder) {
            if let Err(e) = self.dpop.check_bound(cnf, proof, Some(token), now).await {
                return Introspection::Inactive(e.to_string());
            }
        }
        Introspection::Active(Arc::clone(&warrant.claims))
    }
}
