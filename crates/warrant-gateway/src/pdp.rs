//! Asking for a decision: the [`Pdp`] trait and its implementations over HTTP, the
//! AuthZEN endpoint of a Warrant server ([`HttpPdp`]) and, for servers without it, its
//! `/v1/authorize` ([`AuthorizePdp`]). Any failure is an error, which the gateway turns
//! into a refusal (fail closed).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warrant_core::authzen::{
    EvaluationRequest, EvaluationResponse, ResponseContext, CONTEXT_APPROVAL_ID, SUBJECT_TOKEN,
};

/// Why a PDP gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PdpError {
    /// The PDP could not be reached.
    #[error("the PDP could not be reached: {0}")]
    Unreachable(String),
    /// The PDP answered with an unexpected status.
    #[error("the PDP answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The PDP's answer could not be read.
    #[error("the PDP's answer could not be read: {0}")]
    Malformed(String),
}

/// A policy decision point that answers AuthZEN evaluation requests.
#[async_trait::async_trait]
pub trait Pdp: Send + Sync {
    /// Decides one evaluation.
    async fn evaluate(&self, request: &EvaluationRequest) -> Result<EvaluationResponse, PdpError>;
}

async fn read_answer<T: for<'de> Deserialize<'de>>(response: reqwest::Response) -> Result<T, PdpError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| PdpError::Unreachable(e.to_string()))?;
    if !status.is_success() {
        let body = String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes)).into_owned();
        return Err(PdpError::Status { status: status.as_u16(), body });
    }
    serde_json::from_slice(&bytes).map_err(|e| PdpError::Malformed(e.to_string()))
}

/// `POST <server>/access/v1/evaluation` with the PEP credential as the bearer.
#[derive(Clone)]
pub struct HttpPdp {
    http: reqwest::Client,
    endpoint: String,
    credential: String,
}

impl std::fmt::Debug for HttpPdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPdp").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl HttpPdp {
    /// A PDP at Warrant server `server` (its base URL), called with `credential`.
    pub fn new(http: reqwest::Client, server: &str, credential: String) -> Self {
        let endpoint = format!("{}/access/v1/evaluation", server.trim_end_matches('/'));
        HttpPdp { http, endpoint, credential }
    }
}

#[async_trait::async_trait]
impl Pdp for HttpPdp {
    async fn evaluate(&self, request: &EvaluationRequest) -> Result<EvaluationResponse, PdpError> {
        let response = self
            .http
            .post(&self.endpoint)
            .bearer_auth(&self.credential)
            .json(request)
            .send()
            .await
            .map_err(|e| PdpError::Unreachable(e.to_string()))?;
        read_answer(response).await
    }
}

/// The same decisions through a Warrant server's `POST /v1/authorize` (the warrant is
/// the credential): `action.name` is the action, `<type>/<id>` the resource,
/// `resource.properties` its attributes, the context the decision context (with the MCP
/// call under `mcp`), `context.approval_id` the presented approval.
#[derive(Debug, Clone)]
pub struct AuthorizePdp {
    http: reqwest::Client,
    server: String,
}

impl AuthorizePdp {
    /// Decisions by Warrant server `server` (its base URL).
    pub fn new(http: reqwest::Client, server: &str) -> Self {
        AuthorizePdp { http, server: server.trim_end_matches('/').to_owned() }
    }
}

/// The body of `POST /v1/authorize`.
#[derive(Debug, Serialize)]
struct AuthorizeBody<'a> {
    token: &'a str,
    action: &'a str,
    resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_attrs: Option<&'a Map<String, Value>>,
    context: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_id: Option<&'a str>,
}

/// What the gateway reads of `/v1/authorize`'s answer.
#[derive(Debug, Deserialize)]
struct AuthorizeAnswer {
    decision: String,
    decision_id: String,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    approval_id: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

#[async_trait::async_trait]
impl Pdp for AuthorizePdp {
    async fn evaluate(&self, request: &EvaluationRequest) -> Result<EvaluationResponse, PdpError> {
        let token = request
            .subject
            .properties
            .get(SUBJECT_TOKEN)
            .and_then(Value::as_str)
            .ok_or_else(|| PdpError::Malformed("the request names no warrant".into()))?;
        let mut context = request.context.clone();
        let approval_id = request.context.get(CONTEXT_APPROVAL_ID).and_then(Value::as_str);
        context.remove(CONTEXT_APPROVAL_ID);
        if let Some(mcp) = request.action.properties.get(warrant_core::authzen::ACTION_MCP) {
            context.insert("mcp".into(), mcp.clone());
        }
        let body = AuthorizeBody {
            token,
            action: &request.action.name,
            resource: format!("{}/{}", request.resource.kind, request.resource.id),
            resource_attrs: (!request.resource.properties.is_empty()).then_some(&request.resource.properties),
            context,
            approval_id,
        };
        let response = self
            .http
            .post(format!("{}/v1/authorize", self.server))
            .json(&body)
            .send()
            .await
            .map_err(|e| PdpError::Unreachable(e.to_string()))?;
        let answer: AuthorizeAnswer = read_answer(response).await?;
        let pending = answer.decision == "pending";
        let poll = match (&answer.approval_id, pending) {
            (Some(id), true) => Some(format!("{}/v1/approvals/{id}", self.server)),
            _ => None,
        };
        Ok(EvaluationResponse {
            decision: answer.decision == "allow",
            context: Some(ResponseContext {
                decision_id: Some(answer.decision_id),
                outcome: Some(answer.decision),
                code: answer.code,
                reasons: answer.reasons,
                approval_id: answer.approval_id.filter(|_| pending),
                expires_at: answer.expires_at,
                poll,
                error: None,
            }),
        })
    }
}
