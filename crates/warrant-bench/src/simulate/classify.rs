//! What the guardrails did about a decision, as the simulator scores it.
//!
//! [`classify`] is the single place a [`Decision`] is read for its guardrail response: the
//! typed response a decision carries (the graduated response, the probing ladder, a
//! quarantine), when it was carried out.

use warrant_engine::{Decision, DecisionCode, TokenError};

/// A guardrail response: something the guardrails did beyond deciding the request by its
/// scope and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Response {
    /// A rate limit was reached (`rate_limited`).
    Throttle,
    /// A human approval was asked for (`pending`, `approval_required`).
    Approval,
    /// The warrant (and what was delegated from it) was revoked for probing.
    RevokeWarrant,
    /// The warrant's task was revoked for probing.
    RevokeTask,
    /// The agent was quarantined: suspended, its whole subtree revoked.
    Quarantine,
}

impl Response {
    /// Every response, from the mildest.
    pub const ALL: [Response; 5] =
        [Response::Throttle, Response::Approval, Response::RevokeWarrant, Response::RevokeTask, Response::Quarantine];

    /// Its name in reports (`revoke warrant`).
    pub fn name(self) -> &'static str {
        match self {
            Response::Throttle => "throttle",
            Response::Approval => "approval",
            Response::RevokeWarrant => "revoke warrant",
            Response::RevokeTask => "revoke task",
            Response::Quarantine => "quarantine",
        }
    }

    /// Whether it ends the warrant or the agent (a revocation or a quarantine), rather
    /// than holding one request back.
    pub fn is_revocation(self) -> bool {
        matches!(self, Response::RevokeWarrant | Response::RevokeTask | Response::Quarantine)
    }
}

/// The guardrail response a decision carries, if any. A plain allow or deny (scope,
/// policy, a revoked warrant) has none.
pub fn classify(d: &Decision) -> Option<Response> {
    use warrant_core::guard::response::Level;
    if d.code == DecisionCode::Quarantine {
        return Some(Response::Quarantine);
    }
    let carried = d.response.as_ref().filter(|r| r.enforced)?;
    // A throttle or an approval that let the request through did nothing to it.
    let held = d.outcome != warrant_engine::Outcome::Allow;
    match carried.level {
        Level::Throttle if held && d.code == DecisionCode::RateLimited => Some(Response::Throttle),
        Level::Approval if held && d.code == DecisionCode::ApprovalRequired => Some(Response::Approval),
        Level::RevokeWarrant => Some(Response::RevokeWarrant),
        Level::RevokeTask => Some(Response::RevokeTask),
        Level::Quarantine => Some(Response::Quarantine),
        _ => None,
    }
}

/// The guardrail response behind a refused token exchange (a delegation), if any: a
/// burst of delegations that quarantined the delegating agent. Token exchanges are not
/// decisions, so they have no code to read.
pub fn classify_refusal(e: &TokenError) -> Option<Response> {
    e.to_string().contains("was quarantined").then_some(Response::Quarantine)
}
