//! The AuthZEN Authorization API 1.0 PDP: `/access/v1/evaluation`,
//! `/access/v1/evaluations` (a PEP credential or the admin token) and
//! `/.well-known/authzen-configuration` (public). The mapping onto Warrant's decisions
//! is the engine's AuthZEN adapter, which the MCP gateway calls too.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json as JsonOut;
use warrant_core::authzen::{
    EvaluationRequest, EvaluationResponse, EvaluationsRequest, EvaluationsResponse, PdpMetadata,
};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, PepAuth};
use crate::state::AppState;

/// The request id header the PDP echoes.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Echoes the request's `X-Request-ID` on the response, whatever the response is.
pub async fn echo_request_id(req: Request, next: Next) -> Response {
    let id = req.headers().get(&X_REQUEST_ID).cloned();
    let mut response = next.run(req).await;
    if let Some(id) = id {
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    response
}

/// Decides one access evaluation. A deny or a pending decision is 200 with
/// `decision: false`; `context` says why (and, when pending, which approval to retry
/// with).
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", security(("pep" = []), ("admin" = [])),
    request_body(content = Object, description = "AuthZEN access evaluation request: subject, action, resource, context"),
    responses((status = 200, body = Object, description = "`{decision, context}`"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, description = "overloaded: more decision and token requests in progress than `max_in_flight`; not decided, nothing recorded; see `Retry-After`", body = ErrorBody)))]
pub async fn evaluation(
    PepAuth(asker): PepAuth,
    State(state): State<AppState>,
    Json(body): Json<EvaluationRequest>,
) -> Result<JsonOut<EvaluationResponse>, ApiError> {
    let started = Instant::now();
    let answer = state.engine.authzen().evaluate(&asker, &body).await?;
    state.metrics.evaluated(std::iter::once(&answer), started.elapsed());
    Ok(JsonOut(answer))
}

/// Decides a batch of access evaluations (defaults, per-entry overrides and
/// `options.evaluations_semantic`), answered in request order.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen", security(("pep" = []), ("admin" = [])),
    request_body(content = Object, description = "AuthZEN access evaluations request"),
    responses((status = 200, body = Object, description = "`{evaluations: [{decision, context}]}`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "overloaded: more decision and token requests in progress than `max_in_flight`; not decided, nothing recorded; see `Retry-After`", body = ErrorBody)))]
pub async fn evaluations(
    PepAuth(asker): PepAuth,
    State(state): State<AppState>,
    Json(body): Json<EvaluationsRequest>,
) -> Result<JsonOut<EvaluationsResponse>, ApiError> {
    let started = Instant::now();
    let answers = state.engine.authzen().evaluations(&asker, &body).await?;
    state.metrics.evaluated(answers.evaluations.iter(), started.elapsed());
    Ok(JsonOut(answers))
}

/// The PDP's metadata.
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen",
    responses((status = 200, body = Object, description = "AuthZEN PDP metadata")))]
pub async fn configuration(State(state): State<AppState>) -> JsonOut<PdpMetadata> {
    JsonOut(state.engine.authzen().metadata())
}
