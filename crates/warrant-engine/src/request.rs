//! What the decision path takes and gives: a request to act and the decision on it.
//! Plain data, shared by the decision pipeline and the services it calls (approvals
//! bind a request's digest), so it sits below all of them.

use std::sync::Arc;

use serde_json::Value;
use warrant_core::authzen::McpCall;
use warrant_core::guard::budget::Charge;
use warrant_core::guard::signal::Signal;
use warrant_core::{WarrantClaims, WarrantId};

pub use warrant_core::decision::{DecisionCode, Outcome};

/// The most requests one batch may hold.
pub const MAX_BATCH: usize = 100;
/// The longest resource path accepted, in bytes.
pub const MAX_RESOURCE: usize = 1024;

/// A request to act.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    /// The warrant (ignored when `recorded` names one).
    pub token: String,
    /// The warrant named by its `jti` instead of presented: for an enforcement point
    /// that validated the JWT itself (the AuthZEN COAZ shape). The claims Warrant
    /// recorded when it issued the warrant stand in for the token's; every later stage
    /// is the same. When set, `token` is not read.
    pub recorded: Option<WarrantId>,
    /// The enforcement point that asked, when the request came through the AuthZEN
    /// PDP (recorded with the decision).
    pub via: Option<Via>,
    /// The concrete action, e.g. `crm.read`.
    pub action: String,
    /// The concrete resource path, e.g. `customers/42`.
    pub resource: String,
    /// Attributes of the resource (a JSON object).
    pub resource_attrs: Option<Arc<Value>>,
    /// Runtime telemetry (a JSON object): `estimated_cost`, `rows`, …
    pub context: Option<Arc<Value>>,
    /// The approval this retry presents (`apr_…`), after a `pending` answer.
    pub approval_id: Option<String>,
    /// The DPoP proof (RFC 9449) that came with the request, with the method and URL it
    /// must be for: required when the warrant is DPoP-bound (`cnf.jkt`).
    pub proof: Option<crate::dpop::PresentedProof>,
}

/// The enforcement point a request came through, as its decision records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The PEP credential's name (`admin` for the admin token).
    pub pep: String,
    /// The MCP call it decides, when it stated one.
    pub mcp: Option<McpCall>,
}

/// A request to act by a plain subject: a human or a service, with no warrant, as an
/// enforcement point asks about it (the AuthZEN subject that carries neither a warrant
/// nor a reference to one). Decided by the policies for plain subjects alone.
#[derive(Debug, Clone)]
pub struct SubjectRequest {
    /// The subject: `type` `user` or `human` is a registered human, named by its id
    /// (`hum_…`), its email or its external id; any other type is a service-like
    /// principal of its own.
    pub subject: warrant_core::authzen::Subject,
    /// The concrete action (AuthZEN `action.name`).
    pub action: String,
    /// The concrete resource path, `<type>/<id>`.
    pub resource: String,
    /// The resource's attributes (AuthZEN `resource.properties`; untrusted).
    pub resource_attrs: Option<Arc<Value>>,
    /// The decision context (AuthZEN `context`, reserved keys removed; untrusted).
    pub context: Option<Arc<Value>>,
    /// The enforcement point it came through, for the audit record.
    pub via: Option<Via>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allow, deny or pending.
    pub outcome: Outcome,
    /// The decision's id (its audit record), `dec_…`.
    pub decision_id: String,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The policies that decided (empty when the decision was made before Cedar).
    pub policies: Vec<String>,
    /// The policy set version that decided, when Cedar ran.
    pub policy_version: Option<i64>,
    /// The warrant's claims, when it verified.
    pub claims: Option<Arc<WarrantClaims>>,
    /// The machine-readable reason.
    pub code: DecisionCode,
    /// For `pending`: the approval to retry with. For an approved retry: the one used.
    pub approval_id: Option<String>,
    /// For a rate-limit deny: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// The acting agent's trust score when the guardrails ran.
    pub trust: Option<f64>,
    /// The anomaly signals the request raised.
    pub signals: Vec<Signal>,
    /// What the request spent from budgets (recorded with the decision).
    pub charges: Vec<Charge>,
    /// Set when this decision quarantined the agent: why.
    pub quarantined: Option<String>,
    /// The guardrails' graduated response, when one applied (carried out or in shadow
    /// mode): what was done about the agent's trust, and why.
    pub response: Option<warrant_core::guard::response::GuardResponse>,
    /// An anonymous deny counted into its window's aggregate record instead of getting
    /// one of its own; its id is then `dec_aggregated`.
    pub aggregated: bool,
}

impl Decision {
    /// A deny with a reason, before it is recorded.
    pub(crate) fn deny(code: DecisionCode, reason: impl Into<String>, claims: Option<&Arc<WarrantClaims>>) -> Decision {
        Decision {
            outcome: Outcome::Deny,
            decision_id: String::new(),
            reasons: vec![reason.into()],
            policies: Vec::new(),
            policy_version: None,
            claims: claims.cloned(),
            code,
            approval_id: None,
            retry_after: None,
            trust: None,
            signals: Vec::new(),
            charges: Vec::new(),
            quarantined: None,
            response: None,
            aggregated: false,
        }
    }
}
