//! `POST /v1/authorize` and `/v1/authorize/batch`: decisions at the point of action.

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warrant_engine::config::AUTHORIZE_PATH;
use warrant_engine::request::MAX_BATCH;
use warrant_engine::{AuthorizeRequest, Decision};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{dpop_proof, Json};
use crate::ratelimit::ClientAddr;
use crate::state::AppState;

/// A request to act.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// The warrant the agent acts with.
    pub token: String,
    /// The concrete action, e.g. `crm.read`.
    pub action: String,
    /// The concrete resource path, e.g. `customers/42`.
    pub resource: String,
    /// Attributes of the resource, seen by policies as `resource.attrs`.
    #[schema(value_type = Option<Object>)]
    pub resource_attrs: Option<serde_json::Value>,
    /// Runtime telemetry, seen by policies as `context.telemetry` (integers, strings, booleans).
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// After a `pending` answer: the approval to redeem once it is approved. The retry
    /// must be the same request (action, resource, `resource_attrs`, `context`).
    pub approval_id: Option<String>,
}

/// A decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    /// `allow`, `deny` or `pending` (retry with `approval_id` once a human approves).
    pub decision: &'static str,
    /// The decision's audit record, `dec_<seq>`; trace it at `/v1/audit/{decision_id}/trace`.
    pub decision_id: String,
    /// Why.
    pub reasons: Vec<String>,
    /// The policies that decided.
    pub policies: Vec<String>,
    /// The policy set version that decided, when Cedar ran.
    pub policy_version: Option<i64>,
    /// A short machine-readable reason: `allow`, `invalid_token`, `revoked`, `task_ended`,
    /// `agent`, `owner`, `human`, `scope`, `policy`, `policy_error`, `invalid_request`,
    /// `audit`, `rate_limited`, `budget`, `quarantine`, `approval_required` (pending),
    /// `approval` (the presented approval is not usable).
    pub code: &'static str,
    /// For `pending`: the approval to retry with; for an approved retry: the one used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// For `rate_limited`: seconds until a retry can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The acting agent's trust score (0-1) when the guardrails ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<f64>,
    /// The anomaly signals the request raised.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<SignalView>,
    /// Set when this decision quarantined the agent: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
    /// The guardrails' graduated response to the agent's trust, when one applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseView>,
}

/// One anomaly signal.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalView {
    /// `novel_action`, `novel_resource`, `rate_spike`, `deny_streak`, `delegation_burst`, `off_hours`.
    pub kind: &'static str,
    /// Why, in words.
    pub detail: String,
    /// The baseline figures that triggered it (`observed`, `usual`, `threshold`,
    /// `window_secs`, `allowed`, `known`, `recent_novel`, `sensitive`, `deploy`, `cost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub figures: Option<Box<warrant_core::guard::signal::Figures>>,
}

/// A graduated response the guardrails chose.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseView {
    /// `observe`, `throttle`, `approval`, `revoke_warrant`, `revoke_task` or `quarantine`.
    pub level: &'static str,
    /// Whether it was carried out (`false`: shadow mode, recorded only).
    pub enforced: bool,
    /// The trust that led to it.
    pub trust: f64,
    /// The threshold the trust was below.
    pub threshold: f64,
    /// Why, in words.
    pub why: String,
}

impl From<warrant_core::guard::signal::Signal> for SignalView {
    fn from(s: warrant_core::guard::signal::Signal) -> Self {
        SignalView { kind: s.kind.as_str(), detail: s.detail, figures: s.figures }
    }
}

impl From<warrant_core::guard::response::GuardResponse> for ResponseView {
    fn from(r: warrant_core::guard::response::GuardResponse) -> Self {
        ResponseView {
            level: r.level.as_str(),
            enforced: r.enforced,
            trust: r.trust,
            threshold: r.threshold,
            why: r.why,
        }
    }
}

impl From<Decision> for DecisionView {
    fn from(d: Decision) -> Self {
        DecisionView {
            decision: d.outcome.as_str(),
            decision_id: d.decision_id,
            reasons: d.reasons,
            policies: d.policies,
            policy_version: d.policy_version,
            code: d.code.as_str(),
            approval_id: d.approval_id,
            retry_after: d.retry_after,
            trust: d.trust.map(|t| (t * 1000.0).round() / 1000.0),
            signals: d.signals.into_iter().map(SignalView::from).collect(),
            quarantined: d.quarantined,
            response: d.response.map(ResponseView::from),
        }
    }
}

/// Many requests in one round trip.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// At most 100 requests.
    pub requests: Vec<AuthorizeBody>,
}

/// Their decisions, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    /// One decision per request, in request order.
    pub decisions: Vec<DecisionView>,
}

/// The engine's request for a decoded body (what both endpoints hand to the engine).
pub fn request(body: AuthorizeBody) -> AuthorizeRequest {
    AuthorizeRequest {
        token: body.token,
        action: body.action,
        resource: body.resource,
        resource_attrs: body.resource_attrs.map(std::sync::Arc::new),
        context: body.context.map(std::sync::Arc::new),
        approval_id: body.approval_id,
        recorded: None,
        via: None,
        proof: None,
    }
}

/// Decides whether a warrant may do an action on a resource now. An invalid token is a
/// `deny`, not an HTTP error; so is any failure on the way, including the audit log. A
/// DPoP-bound warrant needs a `DPoP` header: a fresh proof made with its key for `POST`
/// on this endpoint's URL, with `ath` the hash of the token (else a `dpop` deny).
/// Requests whose token is not a warrant of this server are rate-limited per source
/// address (`anonymous_rate_per_ip`): over the limit they get a 429 and are not decided.
#[utoipa::path(post, path = "/v1/authorize", tag = "decisions", request_body = AuthorizeBody,
    responses((status = 200, body = DecisionView), (status = 400, body = ErrorBody),
        (status = 429, description = "rate_limited: too many anonymous requests from this address; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "overloaded: more decision and token requests in progress than `max_in_flight`; not decided, nothing recorded; see `Retry-After`", body = ErrorBody)))]
pub async fn authorize(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Json(body): Json<AuthorizeBody>,
) -> Result<JsonOut<DecisionView>, Response> {
    let url = || state.engine.config().endpoint(AUTHORIZE_PATH);
    let proof = dpop_proof(&headers, "POST", url).map_err(|e| ApiError::bad_request(e).into_response())?;
    if let Some(refused) = state.limits.anonymous_over(&state.engine, addr, std::iter::once(body.token.as_str())) {
        return Err(refused);
    }
    let started = Instant::now();
    let req = AuthorizeRequest { proof, ..request(body) };
    let decision = state.engine.decisions().authorize(&req).await;
    state.metrics.decided(&decision, started.elapsed());
    state.limits.count_anonymous(&state.engine, addr, std::iter::once(&decision));
    Ok(JsonOut(decision.into()))
}

/// Decides many requests in one round trip.
#[utoipa::path(post, path = "/v1/authorize/batch", tag = "decisions", request_body = BatchBody,
    responses((status = 200, body = BatchView), (status = 400, body = ErrorBody),
        (status = 429, description = "rate_limited: too many anonymous requests from this address; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "overloaded: more decision and token requests in progress than `max_in_flight`; not decided, nothing recorded; see `Retry-After`", body = ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Json(body): Json<BatchBody>,
) -> Result<JsonOut<BatchView>, Response> {
    if body.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!("a batch holds at most {MAX_BATCH} requests")).into_response());
    }
    let tokens = body.requests.iter().map(|r| r.token.as_str());
    if let Some(refused) = state.limits.anonymous_over(&state.engine, addr, tokens) {
        return Err(refused);
    }
    let started = Instant::now();
    let requests: Vec<AuthorizeRequest> = body.requests.into_iter().map(request).collect();
    let decisions = state.engine.decisions().authorize_batch(&requests).await;
    let elapsed = started.elapsed();
    for d in &decisions {
        state.metrics.decided(d, elapsed / u32::try_from(decisions.len().max(1)).unwrap_or(1));
    }
    state.limits.count_anonymous(&state.engine, addr, decisions.iter());
    Ok(JsonOut(BatchView { decisions: decisions.into_iter().map(Into::into).collect() }))
}
