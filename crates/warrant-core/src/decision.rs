//! The machine-readable code of an authorization decision.
//!
//! Every decision carries one [`DecisionCode`]: `allow` for an allow,
//! `approval_required` for a pending decision, and for a deny the check that refused
//! it (`scope`, `revoked`, `policy`, …). The code is on the wire (the decision answer,
//! its audit record, its event, the metrics label), so each variant's name is fixed.

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

    /// The outcome of a wire name.
    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Allow, Outcome::Deny, Outcome::Pending].into_iter().find(|o| o.as_str() == s)
    }
}

/// The machine-readable code of a decision, or of a decision's audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecisionCode {
    /// Allowed: every check passed.
    Allow,
    /// Pending: a human approval is needed; the answer names it.
    ApprovalRequired,
    /// Denied: the warrant did not verify, or names no agent.
    InvalidToken,
    /// Denied: the request is malformed (its shape, or its Cedar inputs).
    InvalidRequest,
    /// Denied: the warrant (or something it rests on) is revoked.
    Revoked,
    /// Denied: the warrant's task has ended.
    TaskEnded,
    /// Denied: an agent of the chain is unregistered or unusable.
    Agent,
    /// Denied: the owner of an agent of the chain is disabled.
    Owner,
    /// Denied: the human the work traces to is disabled.
    Human,
    /// Denied: the warrant's scope does not cover the request.
    Scope,
    /// Denied by the policy set (or the policy set is unavailable).
    Policy,
    /// Denied: a policy failed to evaluate.
    PolicyError,
    /// Denied: the agent is (or was just) quarantined.
    Quarantine,
    /// Denied: an approval was rejected, expired, mismatched or already used.
    Approval,
    /// Denied: a rate limit is exhausted; the answer says when to retry.
    RateLimited,
    /// Denied: a budget is exhausted.
    Budget,
    /// Denied: the decision could not be recorded in the audit log.
    Audit,
    /// Denied: an internal failure (e.g. the signing keys are unavailable).
    Internal,
    /// Denied: the warrant is DPoP-bound and the request's proof is missing, invalid,
    /// replayed or made with another key.
    Dpop,
    /// Denied: this server could not confirm, within its configured bound
    /// (`cluster.max_staleness`), that what it knows of revocations and the registry is
    /// current (servers sharing a database, when the database or its feed is unreachable).
    Stale,
    /// Not a decision's own code: the code of the audit record that counts a window of
    /// anonymous denies instead of recording each.
    Aggregated,
}

impl DecisionCode {
    /// Every code, in declaration order.
    pub const ALL: [DecisionCode; 21] = [
        DecisionCode::Allow,
        DecisionCode::ApprovalRequired,
        DecisionCode::InvalidToken,
        DecisionCode::InvalidRequest,
        DecisionCode::Revoked,
        DecisionCode::TaskEnded,
        DecisionCode::Agent,
        DecisionCode::Owner,
        DecisionCode::Human,
        DecisionCode::Scope,
        DecisionCode::Policy,
        DecisionCode::PolicyError,
        DecisionCode::Quarantine,
        DecisionCode::Approval,
        DecisionCode::RateLimited,
        DecisionCode::Budget,
        DecisionCode::Audit,
        DecisionCode::Internal,
        DecisionCode::Dpop,
        DecisionCode::Stale,
        DecisionCode::Aggregated,
    ];

    /// The wire name (`snake_case`), the same string serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionCode::Allow => "allow",
            DecisionCode::ApprovalRequired => "approval_required",
            DecisionCode::InvalidToken => "invalid_token",
            DecisionCode::InvalidRequest => "invalid_request",
            DecisionCode::Revoked => "revoked",
            DecisionCode::TaskEnded => "task_ended",
            DecisionCode::Agent => "agent",
            DecisionCode::Owner => "owner",
            DecisionCode::Human => "human",
            DecisionCode::Scope => "scope",
            DecisionCode::Policy => "policy",
            DecisionCode::PolicyError => "policy_error",
            DecisionCode::Quarantine => "quarantine",
            DecisionCode::Approval => "approval",
            DecisionCode::RateLimited => "rate_limited",
            DecisionCode::Budget => "budget",
            DecisionCode::Audit => "audit",
            DecisionCode::Internal => "internal",
            DecisionCode::Dpop => "dpop",
            DecisionCode::Stale => "stale",
            DecisionCode::Aggregated => "aggregated",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Result<DecisionCode, UnknownDecisionCode> {
        DecisionCode::ALL.into_iter().find(|c| c.as_str() == text).ok_or_else(|| UnknownDecisionCode(text.to_owned()))
    }

    /// Whether this is the code of a deny (everything but `allow` and
    /// `approval_required`).
    pub fn is_deny(self) -> bool {
        !matches!(self, DecisionCode::Allow | DecisionCode::ApprovalRequired)
    }
}

impl std::fmt::Display for DecisionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DecisionCode {
    type Err = UnknownDecisionCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DecisionCode::parse(s)
    }
}

impl AsRef<str> for DecisionCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A string that names no [`DecisionCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decision code")]
pub struct UnknownDecisionCode(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the decision path writes today, as literal strings: the wire must not
    /// change when the engine switches from strings to the enum.
    const TODAY: [&str; 21] = [
        "allow",
        "approval_required",
        "invalid_token",
        "invalid_request",
        "revoked",
        "task_ended",
        "agent",
        "owner",
        "human",
        "scope",
        "policy",
        "policy_error",
        "quarantine",
        "approval",
        "rate_limited",
        "budget",
        "audit",
        "internal",
        "dpop",
        "stale",
        "aggregated",
    ];

    #[test]
    fn each_code_is_its_serde_string_and_round_trips() {
        for code in DecisionCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()), "{code:?}");
            assert_eq!(serde_json::from_value::<DecisionCode>(json).unwrap(), code);
            assert_eq!(DecisionCode::parse(code.as_str()), Ok(code));
            assert_eq!(code.to_string().parse::<DecisionCode>(), Ok(code));
        }
    }

    #[test]
    fn the_codes_are_exactly_todays_strings() {
        let names: Vec<&str> = DecisionCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, TODAY);
        let unique: std::collections::BTreeSet<_> = DecisionCode::ALL.into_iter().collect();
        assert_eq!(unique.len(), DecisionCode::ALL.len(), "ALL lists each code once");
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert_eq!(DecisionCode::parse("expired"), Err(UnknownDecisionCode("expired".into())));
        assert!(serde_json::from_str::<DecisionCode>("\"Allow\"").is_err());
    }

    #[test]
    fn only_allow_and_approval_required_are_not_denies() {
        let not_deny: Vec<_> = DecisionCode::ALL.into_iter().filter(|c| !c.is_deny()).collect();
        assert_eq!(not_deny, [DecisionCode::Allow, DecisionCode::ApprovalRequired]);
    }
}
