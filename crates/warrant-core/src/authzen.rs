//! The OpenID AuthZEN Authorization API 1.0 on the wire: the access evaluation request
//! and response, the batch (`evaluations`) form with its defaults and semantics, and the
//! PDP metadata document. Plain data: the PDP (`warrant serve`) and every enforcement
//! point Warrant ships (the MCP gateway) share these types.
//!
//! Unknown fields are ignored, as the specification asks, so a PEP written against a
//! later revision still gets answers. Warrant's own keys in a request's `context` (the
//! COAZ warrant reference, a presented approval) and in a response's `context` (the
//! decision's id, reasons, a pending approval) are named by the constants and
//! [`ResponseContext`] here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `context.agent`: the acting agent (`client_id`) of the warrant a COAZ-shaped request
/// names.
pub const CONTEXT_AGENT: &str = "agent";
/// `context.warrant_id`: the `jti` of the warrant a COAZ-shaped request names.
pub const CONTEXT_WARRANT_ID: &str = "warrant_id";
/// `context.approval_id`: the approval a retried request presents after a `pending`
/// answer (a Warrant extension).
pub const CONTEXT_APPROVAL_ID: &str = "approval_id";
/// `subject.properties.token`: the warrant itself.
pub const SUBJECT_TOKEN: &str = "token";
/// `subject.properties.dpop`: for a DPoP-bound warrant, the proof the client sent the
/// enforcement point, with the method and URL of that request: `{proof, htm, htu}`.
pub const SUBJECT_DPOP: &str = "dpop";
/// `action.properties.mcp`: the MCP call an enforcement point decides ([`McpCall`]),
/// recorded with the decision.
pub const ACTION_MCP: &str = "mcp";

/// The MCP call behind an evaluation, as the gateway states it in
/// `action.properties.mcp`; the PDP records it with the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpCall {
    /// The JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// The tool called (`tools/call`), the prompt got or the resource read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The upstream MCP server's name at the gateway.
    pub upstream: String,
}

/// Who asks to act: `{type, id, properties}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The subject's type, e.g. `user`, `agent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The subject's id within its type.
    pub id: String,
    /// More about the subject (for an agent: `token`, the warrant).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// What is acted on: `{type, id, properties}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource's type, e.g. `todo`; with the id it makes the Warrant resource path
    /// `<type>/<id>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's id within its type.
    pub id: String,
    /// The resource's attributes (untrusted caller input).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// The action: `{name, properties}`; the name is the Warrant action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The action's name, e.g. `can_read_todos` or `mcp.tools.call`.
    pub name: String,
    /// More about the action.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// One access evaluation request (`POST /access/v1/evaluation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// Who.
    pub subject: Subject,
    /// Does what.
    pub action: Action,
    /// To what.
    pub resource: Resource,
    /// In which circumstances (untrusted caller input, seen by policies).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
}

/// The answer to one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResponse {
    /// `true` to permit, `false` otherwise (deny, pending, or an error in this entry).
    pub decision: bool,
    /// Why, and what to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ResponseContext>,
}

/// What Warrant says about a decision besides its boolean.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseContext {
    /// The decision's audit record (`dec_…`), when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Warrant's decision: `allow`, `deny` or `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The machine-readable reason (`allow`, `scope`, `policy`, `revoked`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// For `pending`: the approval to retry with, once a human approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// For `pending`: when the approval request expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// For `pending`: the approval's URL, to poll for its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<String>,
    /// For an entry of a batch that could not be evaluated: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EvaluationError>,
}

/// An entry of a batch that could not be evaluated (its decision is `false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationError {
    /// The HTTP status the entry would have had on its own (400, 401, 403, …).
    pub status: u16,
    /// Why, in words.
    pub message: String,
}

/// One entry of a batch: what it states overrides the batch's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationItem {
    /// Who; the default subject when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Does what; the default action when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// To what; the default resource when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// In which circumstances; replaces the default context when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// How a batch is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    /// Every entry, in order (the default).
    #[default]
    ExecuteAll,
    /// In order, stopping after the first entry that is not permitted.
    DenyOnFirstDeny,
    /// In order, stopping after the first entry that is permitted.
    PermitOnFirstPermit,
}

/// A batch's options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsOptions {
    /// How the batch is evaluated.
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
}

/// Many evaluations in one request (`POST /access/v1/evaluations`): defaults, then
/// entries that override them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    /// The default subject, action, resource and context, at the top level of the body.
    #[serde(flatten)]
    pub defaults: EvaluationItem,
    /// The entries; absent or empty, the request is one evaluation of the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<Vec<EvaluationItem>>,
    /// How to evaluate them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EvaluationsOptions>,
}

/// The answers to a batch, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsResponse {
    /// One answer per evaluated entry, in order (fewer than the entries when the
    /// semantic stopped early).
    pub evaluations: Vec<EvaluationResponse>,
}

/// Which element a batch entry lacks once the defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingElement {
    /// No subject in the entry or the defaults.
    #[error("evaluation {0} has no `subject` and the request has no default one")]
    Subject(usize),
    /// No action in the entry or the defaults.
    #[error("evaluation {0} has no `action` and the request has no default one")]
    Action(usize),
    /// No resource in the entry or the defaults.
    #[error("evaluation {0} has no `resource` and the request has no default one")]
    Resource(usize),
}

impl EvaluationsRequest {
    /// The batch's entries with the defaults applied, in order: an entry's subject,
    /// action and resource replace the defaults, its context replaces the default
    /// context. Without entries, the defaults are the one evaluation.
    pub fn expand(&self) -> Result<Vec<EvaluationRequest>, MissingElement> {
        let single = [EvaluationItem::default()];
        let items: &[EvaluationItem] = match &self.evaluations {
            Some(items) if !items.is_empty() => items,
            _ => &single,
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let defaults = &self.defaults;
                let subject = item.subject.as_ref().or(defaults.subject.as_ref()).ok_or(MissingElement::Subject(i))?;
                let action = item.action.as_ref().or(defaults.action.as_ref()).ok_or(MissingElement::Action(i))?;
                let resource =
                    item.resource.as_ref().or(defaults.resource.as_ref()).ok_or(MissingElement::Resource(i))?;
                let context = item.context.as_ref().or(defaults.context.as_ref()).cloned().unwrap_or_default();
                Ok(EvaluationRequest {
                    subject: subject.clone(),
                    action: action.clone(),
                    resource: resource.clone(),
                    context,
                })
            })
            .collect()
    }

    /// The batch's semantic (`execute_all` when unstated).
    pub fn semantic(&self) -> EvaluationsSemantic {
        self.options.as_ref().map(|o| o.evaluations_semantic).unwrap_or_default()
    }
}

impl EvaluationsSemantic {
    /// Whether evaluation stops after an entry that got `decision`.
    pub fn stops_after(self, decision: bool) -> bool {
        match self {
            EvaluationsSemantic::ExecuteAll => false,
            EvaluationsSemantic::DenyOnFirstDeny => !decision,
            EvaluationsSemantic::PermitOnFirstPermit => decision,
        }
    }
}

/// The PDP's metadata (`GET /.well-known/authzen-configuration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdpMetadata {
    /// The PDP's base URL.
    pub policy_decision_point: String,
    /// The access evaluation endpoint's URL.
    pub access_evaluation_endpoint: String,
    /// The access evaluations (batch) endpoint's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_evaluations_endpoint: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> EvaluationsRequest {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn entries_override_the_defaults_and_unknown_fields_are_ignored() {
        let req = parse(
            r#"{"subject": {"type": "user", "id": "a", "extra": 1},
                "action": {"name": "read"},
                "context": {"k": 1},
                "evaluations": [
                  {"resource": {"type": "doc", "id": "1"}},
                  {"resource": {"type": "doc", "id": "2"}, "action": {"name": "write"}, "context": {"k": 2}}
                ],
                "options": {"evaluations_semantic": "deny_on_first_deny"},
                "future": true}"#,
        );
        let all = req.expand().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].action.name, "read");
        assert_eq!(all[0].context.get("k"), Some(&Value::from(1)));
        assert_eq!(all[1].action.name, "write");
        assert_eq!(all[1].resource.id, "2");
        assert_eq!(all[1].context.get("k"), Some(&Value::from(2)));
        assert_eq!(req.semantic(), EvaluationsSemantic::DenyOnFirstDeny);
    }

    #[test]
    fn an_entry_missing_an_element_is_named() {
        let req = parse(r#"{"action": {"name": "read"}, "evaluations": [{"subject": {"type": "u", "id": "a"}}]}"#);
        assert_eq!(req.expand().unwrap_err(), MissingElement::Resource(0));
        let req = parse(r#"{"subject": {"type": "u", "id": "a"}, "resource": {"type": "d", "id": "1"}}"#);
        assert_eq!(req.expand().unwrap_err(), MissingElement::Action(0));
    }

    #[test]
    fn without_entries_the_defaults_are_the_one_evaluation() {
        let req = parse(
            r#"{"subject": {"type": "u", "id": "a"}, "action": {"name": "r"}, "resource": {"type": "d", "id": "1"}, "evaluations": []}"#,
        );
        assert_eq!(req.expand().unwrap().len(), 1);
        assert_eq!(req.semantic(), EvaluationsSemantic::ExecuteAll);
    }

    #[test]
    fn semantics_stop_where_the_specification_says() {
        assert!(!EvaluationsSemantic::ExecuteAll.stops_after(false));
        assert!(EvaluationsSemantic::DenyOnFirstDeny.stops_after(false));
        assert!(!EvaluationsSemantic::DenyOnFirstDeny.stops_after(true));
        assert!(EvaluationsSemantic::PermitOnFirstPermit.stops_after(true));
    }
}
