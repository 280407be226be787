//! What a decision answers, as types: its outcome and its machine-readable code.
//!
//! The codes are part of the wire contract (`code` in every decision answer, audit record
//! and event): [`DecisionCode::as_str`] gives exactly the strings clients match on.

use serde::{Deserialize, Serialize};

/// `allow`, `deny` or `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action may proceed.
    Allow,
    /// It may not.
    Deny,
    /// It may proceed once a human approves it: retry with the approval id.
    Pending,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Pending => "pending",
        }
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// Why a decision came out as it did: one code per reason, serialised to the
        /// wire names clients match on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum DecisionCode {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl DecisionCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [DecisionCode] = &[$(DecisionCode::$variant,)*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DecisionCode::$variant => $wire,)*
                }
            }
        }
    };
}

codes! {
    /// Allowed by policy.
    Allow => "allow",
    /// Held back until a human approves (the outcome is `pending`).
    ApprovalRequired => "approval_required",
    /// The token is not a valid warrant of this issuer.
    InvalidToken => "invalid_token",
    /// The request is malformed (action, resource, attributes).
    InvalidRequest => "invalid_request",
    /// The warrant (or one it derives from) was revoked.
    Revoked => "revoked",
    /// The warrant's task has ended.
    TaskEnded => "task_ended",
    /// An agent of the chain is unknown, suspended, retired or expired.
    Agent => "agent",
    /// The owner of an agent of the chain is disabled.
    Owner => "owner",
    /// The human the work traces to is disabled.
    Human => "human",
    /// The warrant's scope does not cover the request.
    Scope => "scope",
    /// No policy permits it, or a policy forbids it.
    Policy => "policy",
    /// A policy failed to evaluate (fail closed).
    PolicyError => "policy_error",
    /// The agent is quarantined by the guardrails.
    Quarantine => "quarantine",
    /// The presented approval is not usable, or one could not be opened.
    Approval => "approval",
    /// A rate limit is reached.
    RateLimited => "rate_limited",
    /// A budget would be overspent.
    Budget => "budget",
    /// The decision could not be made durable in the audit log.
    Audit => "audit",
    /// The server failed on the decision path (fail closed).
    Internal => "internal",
    /// The aggregate record of anonymous denies.
    Aggregated => "aggregated",
}

impl DecisionCode {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<DecisionCode> {
        DecisionCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for DecisionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_to_its_wire_name_and_parses_back() {
        for code in DecisionCode::ALL {
            let json = serde_json::to_value(code).ok();
            assert_eq!(json, Some(serde_json::Value::String(code.as_str().to_owned())), "{code:?}");
            assert_eq!(DecisionCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(DecisionCode::parse("nonsense"), None);
    }
}
