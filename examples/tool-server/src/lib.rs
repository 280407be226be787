//! An example tool server that is its own enforcement point: it verifies every caller's
//! warrant against the Warrant server's keys (and that the warrant is for this server:
//! RFC 8707 audience), then asks Warrant's AuthZEN PDP about the call, naming the
//! warrant it has verified (the COAZ shape: `subject.id`, `context.agent`,
//! `context.warrant_id`), and runs the tool only on a permit.
//!
//! The tool `lookup_customer` is the action `crm.read` on the resource `customers/<id>`.
//! [`app`] builds the router; `src/main.rs` serves it, and the tests drive it against a
//! real Warrant server. How to run it: `examples/tool-server/README.md`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warrant_core::authzen::{
    Action, EvaluationRequest, Resource, ResponseContext, Subject, CONTEXT_AGENT, CONTEXT_WARRANT_ID,
};
use warrant_core::UnixTime;
use warrant_gateway::auth::Verifier;
use warrant_gateway::Pdp;

/// The path of the one tool this server offers.
pub const LOOKUP_CUSTOMER: &str = "/tools/lookup_customer";

/// What every request shares.
struct App {
    /// The URL callers reach this server at: the audience their warrants must carry.
    resource: String,
    verifier: Verifier,
    pdp: Arc<dyn Pdp>,
}

/// The arguments of `lookup_customer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The customer's id: the resource is `customers/<id>`.
    pub customer: String,
}

/// What `lookup_customer` answers on a permit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer asked about.
    pub customer: String,
    /// A made-up figure: this is an example.
    pub open_tickets: u32,
    /// The agent (`client_id` of the warrant) that asked.
    pub agent: String,
}

/// Why a call did not run: the body of every 400, 401, 403 and 503.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// `invalid_request` (400), `invalid_token` (401), `denied` (403) or `no_decision` (503).
    pub error: String,
    /// In words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On a deny: what the PDP said (its `decision_id` names the audit record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ResponseContext>,
}

/// The router of the tool server: `POST /tools/lookup_customer` with a JSON [`Lookup`].
///
/// `resource` is the URL callers reach this server at (warrants must carry it as their
/// audience), `verifier` checks warrants against the Warrant server's keys, and `pdp` is
/// the AuthZEN PDP asked about every call (in practice a
/// [`warrant_gateway::HttpPdp`] with this server's PEP credential).
pub fn app(resource: String, verifier: Verifier, pdp: Arc<dyn Pdp>) -> Router {
    let state = Arc::new(App { resource, verifier, pdp });
    Router::new().route(LOOKUP_CUSTOMER, post(lookup_customer)).with_state(state)
}

fn now() -> UnixTime {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn refuse(status: StatusCode, refusal: Refusal) -> Response {
    (status, Json(refusal)).into_response()
}

/// `POST /tools/lookup_customer`: verify, read the arguments, ask, then act. The warrant
/// is checked first, so a caller without one learns nothing about the tool's arguments.
async fn lookup_customer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    args: Result<Json<Lookup>, JsonRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // 1. The warrant: ours (signature, issuer, expiry) and for this server (audience).
    let verified = match app.verifier.verify(token, &app.resource, now()).await {
        Ok(verified) => verified,
        Err(e) => {
            let refusal = Refusal { error: "invalid_token".into(), message: Some(e.to_string()), decision: None };
            let mut refused = refuse(StatusCode::UNAUTHORIZED, refusal);
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return refused;
        }
    };
    let claims = &verified.claims;
    let args = match args {
        Ok(Json(args)) => args,
        Err(e) => {
            let refusal = Refusal { error: "invalid_request".into(), message: Some(e.body_text()), decision: None };
            return refuse(StatusCode::BAD_REQUEST, refusal);
        }
    };
    // 2. The decision, about the warrant this server verified: Warrant checks the stated
    //    subject and agent against its own record of it, then runs its whole pipeline
    //    (revocation, scope, policies, guardrails, budgets, approvals, audit).
    let mut context = Map::new();
    context.insert(CONTEXT_AGENT.into(), Value::from(claims.client_id.to_string()));
    context.insert(CONTEXT_WARRANT_ID.into(), Value::from(claims.jti.to_string()));
    let request = EvaluationRequest {
        subject: Subject { kind: "agent".into(), id: claims.sub.clone(), properties: Map::new() },
        action: Action { name: "crm.read".into(), properties: Map::new() },
        resource: Resource { kind: "customers".into(), id: args.customer.clone(), properties: Map::new() },
        context,
    };
    match app.pdp.evaluate(&request).await {
        // 3. Only a permit runs the tool.
        Ok(decision) if decision.decision => {
            let customer = Customer { customer: args.customer, open_tickets: 3, agent: claims.client_id.to_string() };
            (StatusCode::OK, Json(customer)).into_response()
        }
        Ok(decision) => {
            refuse(StatusCode::FORBIDDEN, Refusal { error: "denied".into(), message: None, decision: decision.context })
        }
        // No answer from the PDP is no permit (fail closed).
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Refusal { error: "no_decision".into(), message: Some(e.to_string()), decision: None },
        ),
    }
}
