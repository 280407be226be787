//! The guardrails' endpoints: approvals (`/v1/approvals`), an agent's trust and
//! baseline (`/v1/agents/{id}/trust`), and the live event stream (`/v1/events`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json as JsonOut;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::guard::approval::{Approval, ApprovalStatus, Decider};
use warrant_engine::events::EventKind;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApproverAuth, Json, Operator, Path, Query, Viewer};
use crate::state::AppState;

/// An approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// `apr_…`.
    pub id: String,
    /// `pending`, `approved`, `rejected`, `used` or `expired`.
    pub status: &'static str,
    /// `owner` or `human`.
    pub approver_role: &'static str,
    /// The human who must decide.
    pub approver: String,
    /// The agent that asked.
    pub agent: String,
    /// The human the work traces to.
    pub human: String,
    /// The task.
    pub task: String,
    /// The warrant the request came with.
    pub warrant: String,
    /// The action asked for.
    pub action: String,
    /// The resource asked for.
    pub resource: String,
    /// The request's `resource_attrs` and `context`, as the approver should see them.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// When it was opened (Unix seconds).
    pub created_at: i64,
    /// When it lapses: while pending, the deadline to decide; once approved, to use it.
    pub expires_at: i64,
    /// Who decided (`hum_…` or `admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The approver's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the retry used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

impl From<Approval> for ApprovalView {
    fn from(a: Approval) -> Self {
        ApprovalView {
            id: a.id.to_string(),
            status: a.status.as_str(),
            approver_role: a.approver_role.as_str(),
            approver: a.approver.to_string(),
            agent: a.agent.to_string(),
            human: a.human.to_string(),
            task: a.task.to_string(),
            warrant: a.warrant.to_string(),
            action: a.action,
            resource: a.resource,
            request: a.request,
            policies: a.policies,
            created_at: a.created_at.secs(),
            expires_at: a.expires_at.secs(),
            decided_by: a.decided_by,
            reason: a.reason,
            used_at: a.used_at.map(|t| t.secs()),
        }
    }
}

/// Approvals.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    /// Newest first.
    pub approvals: Vec<ApprovalView>,
}

/// Which approvals to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// Only this status (`pending`, `approved`, `rejected`, `used`, `expired`).
    pub status: Option<String>,
    /// Only this agent's.
    pub agent: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// An approver's decision.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

/// Lists approvals. The admin sees all; a human (session token) sees those they must decide.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", security(("admin" = [])), params(ApprovalQuery),
    responses((status = 200, body = ApprovalList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Query(q): Query<ApprovalQuery>,
) -> Result<JsonOut<ApprovalList>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("`{s}` is not a status: pending, approved, rejected, used or expired"))
        })?),
    };
    let approver = match &by {
        Decider::Admin | Decider::Operator { .. } => None,
        Decider::Human(h) => Some(h),
    };
    let rows = state.engine.approvals().list(status, q.agent.as_deref(), approver, q.limit.unwrap_or(100)).await?;
    let approvals = rows.into_iter().map(Into::into).collect();
    Ok(JsonOut(ApprovalList { approvals }))
}

/// Shows one approval, with what was asked.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", security(("admin" = [])),
    params(("id" = String, Path, description = "approval id")),
    responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<ApprovalView>, ApiError> {
    let a = state.engine.approvals().get(&id).await?;
    if let Decider::Human(h) = &by {
        if a.approver != *h {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this approval is not yours to see"));
        }
    }
    Ok(JsonOut(a.into()))
}

/// The optional JSON body of approve and reject: none at all is no reason.
fn decide_body(bytes: &[u8]) -> Result<Option<DecideBody>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes).map(Some).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

async fn decide(
    state: &AppState,
    id: &str,
    approve: bool,
    by: &Decider,
    body: Option<DecideBody>,
) -> Result<JsonOut<ApprovalView>, ApiError> {
    let reason = body.unwrap_or_default().reason;
    Ok(JsonOut(state.engine.approvals().decide(id, approve, by, reason).await?.into()))
}

/// Approves a pending request: the agent's retry with this approval id is allowed once.
/// Only the approver (their session token) or the admin may.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", security(("admin" = [])),
    params(("id" = String, Path, description = "approval id")), request_body = Option<DecideBody>,
    responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn approve(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<JsonOut<ApprovalView>, ApiError> {
    decide(&state, &id, true, &by, decide_body(&body)?).await
}

/// Rejects a pending request.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals", security(("admin" = [])),
    params(("id" = String, Path, description = "approval id")), request_body = Option<DecideBody>,
    responses((status = 200, body = ApprovalView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn reject(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<JsonOut<ApprovalView>, ApiError> {
    decide(&state, &id, false, &by, decide_body(&body)?).await
}

/// An agent's trust and what its baseline has learned.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrustView {
    /// The agent.
    pub agent: String,
    /// Its trust score now, 0-1.
    pub trust: f64,
    /// Below this it is quarantined.
    pub quarantine_below: f64,
    /// The graduated response's thresholds that apply to it (its label's, if a rule names
    /// one of its labels): `observe_below`, `throttle_below`, `approval_below`,
    /// `revoke_warrant_below`, `revoke_task_below`, `quarantine_below`.
    #[schema(value_type = Object)]
    pub thresholds: warrant_core::guard::response::Thresholds,
    /// Levels only recorded for it (shadow mode).
    pub shadow: Vec<&'static str>,
    /// Whether its baseline is still learning (no novelty or rate signals yet).
    pub learning: bool,
    /// Allowed decisions learned from.
    pub allowed: u64,
    /// Distinct actions it has been allowed, with counts.
    #[schema(value_type = Object)]
    pub actions: serde_json::Value,
    /// Distinct resource prefixes it has been allowed, with counts.
    #[schema(value_type = Object)]
    pub prefixes: serde_json::Value,
    /// Its usual requests per rate window, over every window (moving mean).
    pub rate_mean: f64,
    /// Its usual requests per rate window when it is active.
    pub rate_active_mean: f64,
    /// The usual gap between its bursts of activity, in seconds, once it has had a few
    /// (the period of a periodic job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_secs: Option<f64>,
    /// The deploy announced for it whose grace period still holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub deploy: Option<warrant_core::guard::baseline::Deploy>,
    /// The last signals it raised, oldest first, with the figures that triggered them.
    pub recent_signals: Vec<SignalAt>,
    /// The last responses chosen for it, oldest first.
    pub recent_responses: Vec<ResponseAt>,
}

/// A signal an agent raised, when.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalAt {
    /// When (seconds since the epoch).
    pub at: i64,
    /// The signal, with the figures that triggered it and what it cost (`cost`).
    #[serde(flatten)]
    pub signal: crate::routes::decisions::SignalView,
}

/// A response the guardrails chose for an agent, when.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseAt {
    /// When (seconds since the epoch).
    pub at: i64,
    /// The response.
    #[serde(flatten)]
    pub response: crate::routes::decisions::ResponseView,
}

/// Shows an agent's trust score, baseline, recent anomaly signals with their figures and
/// the responses chosen for it (for review before resuming a quarantined agent).
#[utoipa::path(get, path = "/v1/agents/{id}/trust", tag = "agents", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = TrustView), (status = 404, body = ErrorBody)))]
pub async fn trust(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<TrustView>, ApiError> {
    let agent = state.engine.registry().agent(&id).await?;
    let now = state.engine.now();
    let guard = state.engine.guardrails();
    let cfg = guard.config();
    let response = guard.response_config(&agent);
    let g = guard.agent_or_new(&agent.id, now);
    let rate = &g.baseline.rate;
    let view = TrustView {
        agent: agent.id.to_string(),
        trust: g.trust.current(&cfg.trust, now),
        quarantine_below: response.thresholds.quarantine_below,
        thresholds: response.thresholds,
        shadow: response.shadow.iter().map(|l| l.as_str()).collect(),
        learning: g.baseline.learning(&cfg.baseline, now),
        allowed: g.baseline.allowed,
        actions: serde_json::json!(g.baseline.actions),
        prefixes: serde_json::json!(g.baseline.prefixes),
        rate_mean: rate.mean,
        rate_active_mean: rate.active.mean,
        period_secs: (rate.gap.n >= warrant_core::guard::baseline::MIN_WINDOWS).then_some(rate.gap.mean),
        deploy: g.baseline.deploy_at(now).cloned(),
        recent_signals: g.recent.iter().map(|(at, s)| SignalAt { at: at.secs(), signal: s.clone().into() }).collect(),
        recent_responses: g
            .responses
            .iter()
            .map(|(at, r)| ResponseAt { at: at.secs(), response: r.clone().into() })
            .collect(),
    };
    Ok(JsonOut(view))
}

/// A deploy of an agent, announced by its owner's side (a release pipeline, an operator).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// What was deployed: a version, a tag (1 to 100 characters).
    pub version: String,
}

/// An announced deploy.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployView {
    /// The agent.
    pub agent: String,
    /// What was deployed.
    pub version: String,
    /// Until when its new tools and resources are expected (seconds since the epoch).
    pub until: i64,
}

/// Announces a deploy of an agent: for the deploy grace period (a day by default), the new
/// actions and resource prefixes it starts to use are expected, and cost it no trust
/// unless they are sensitive. Audited as `agent.deploy`.
#[utoipa::path(post, path = "/v1/agents/{id}/deploys", tag = "agents", security(("admin" = [])), request_body = DeployBody,
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = DeployView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deploy(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DeployBody>,
) -> Result<JsonOut<DeployView>, ApiError> {
    let (agent, until) = state.engine.registry().announce_deploy(&id, &body.version, who.by()).await?;
    Ok(JsonOut(DeployView {
        agent: agent.id.to_string(),
        version: body.version.trim().to_owned(),
        until: until.secs(),
    }))
}

/// Which events to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events about this agent.
    pub agent: Option<String>,
    /// Only these kinds, comma-separated: `decision`, `anomaly`, `quarantine`,
    /// `approval`, `revocation`, `finding`, `response`.
    pub kind: Option<String>,
}

/// Streams live events as server-sent events: `event:` is the kind, `id:` increases,
/// `data:` is the JSON event `{id, kind, at, agent?, data}`. A client that falls behind
/// gets a `lagged` event saying how many it missed.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("admin" = [])), params(EventQuery),
    responses((status = 200, description = "text/event-stream"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn events(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<EventQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let kinds = match q.kind.as_deref() {
        None | Some("") => None,
        Some(list) => {
            let mut kinds = Vec::new();
            for k in list.split(',').map(str::trim) {
                kinds.push(EventKind::parse(k).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`{k}` is not an event kind: decision, anomaly, quarantine, approval, revocation, finding"
                    ))
                })?);
            }
            Some(kinds)
        }
    };
    let agent = match q.agent.as_deref() {
        None => None,
        Some(a) => Some(warrant_core::AgentId::parse(a).map_err(|e| ApiError::bad_request(e.to_string()))?),
    };
    let rx = state.engine.events().subscribe();
    // The filters travel with the receiver, so nothing is copied per event.
    let stream = stream::unfold((rx, kinds, agent), |(mut rx, kinds, agent)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let wanted = kinds.as_ref().is_none_or(|k| k.contains(&event.kind))
                        && agent.as_ref().is_none_or(|a| event.agent.as_ref() == Some(a));
                    if !wanted {
                        continue;
                    }
                    let data = serde_json::to_string(event.as_ref()).unwrap_or_else(|_| "{}".into());
                    let sse = SseEvent::default().event(event.kind.as_str()).id(event.id.to_string()).data(data);
                    return Some((Ok(sse), (rx, kinds, agent)));
                }
                Err(RecvError::Lagged(n)) => {
                    let sse = SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"));
                    return Some((Ok(sse), (rx, kinds, agent)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
