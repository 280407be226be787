//! `POST /v1/revocations`, `GET /v1/tasks/{id}`, `POST /v1/tasks/{id}/complete`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warrant_core::RevocationKind;
use warrant_engine::revocation::{Completer, TaskView};
use warrant_engine::Revoked;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Operator, Path, Viewer};
use crate::state::AppState;

/// What to revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    /// `warrant`, `agent`, `task` or `human`.
    #[schema(value_type = String, example = "warrant")]
    pub kind: RevocationKind,
    /// The id of the warrant (`wrt_…`), agent, task or human.
    pub id: String,
    /// Why (kept in the audit log).
    pub reason: String,
}

/// What a revocation ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    /// How many live warrants it ended.
    pub revoked_warrants: usize,
    /// The revocation's id.
    pub revocation_id: String,
}

impl From<Revoked> for RevokedView {
    fn from(r: Revoked) -> Self {
        RevokedView { revoked_warrants: r.revoked_warrants, revocation_id: r.id }
    }
}

/// Revokes a warrant (with its descendants), an agent (suspended, and every warrant whose
/// chain contains it), a task, or a human (every warrant on their behalf). In force for
/// the next decision once this returns; survives restarts.
#[utoipa::path(post, path = "/v1/revocations", tag = "revocations", security(("admin" = [])), request_body = RevocationBody,
    responses((status = 200, body = RevokedView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    who: Operator,
    State(state): State<AppState>,
    Json(body): Json<RevocationBody>,
) -> Result<JsonOut<RevokedView>, ApiError> {
    let revoked = state.engine.revocation().revoke_by(body.kind, &body.id, &body.reason, who.by()).await?;
    state.metrics.revoked(body.kind.as_str(), revoked.revoked_warrants);
    Ok(JsonOut(revoked.into()))
}

/// One warrant of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskWarrantView {
    /// `wrt_…`.
    pub jti: String,
    /// Its parent, absent at the root.
    pub parent: Option<String>,
    /// The agent holding it.
    pub agent: String,
    /// The chain of agents, root first.
    pub chain: Vec<String>,
    /// Its scope.
    pub scope: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A task and its tree of warrants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskBody {
    /// `tsk_…`.
    pub id: String,
    /// What it is for.
    pub purpose: String,
    /// The accountable human.
    pub human: String,
    /// The agent holding the root warrant.
    pub root_agent: String,
    /// Whether it has ended (completed or revoked).
    pub ended: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Its warrants in issuance order; `parent` gives the tree.
    pub warrants: Vec<TaskWarrantView>,
}

impl From<TaskView> for TaskBody {
    fn from(v: TaskView) -> Self {
        TaskBody {
            id: v.task.id.to_string(),
            purpose: v.task.purpose,
            human: v.task.human.to_string(),
            root_agent: v.task.root_agent.to_string(),
            ended: v.ended,
            created_at: v.task.created_at.0,
            warrants: v
                .warrants
                .into_iter()
                .map(|w| TaskWarrantView {
                    jti: w.record.jti.to_string(),
                    parent: w.record.parent.map(|p| p.to_string()),
                    agent: w.record.agent.to_string(),
                    chain: w.record.chain.iter().map(ToString::to_string).collect(),
                    scope: w.record.scope.to_string(),
                    state: w.state.as_str(),
                    issued_at: w.record.issued_at.0,
                    expires_at: w.record.expires_at.0,
                })
                .collect(),
        }
    }
}

/// A task's tree of warrants and their state.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "revocations", security(("admin" = [])),
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = TaskBody), (status = 404, body = ErrorBody)))]
pub async fn task(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<TaskBody>, ApiError> {
    Ok(JsonOut(state.engine.revocation().task(&id).await?.into()))
}

/// Completes a task: every warrant of it (sub-agents' too) denies on the next call.
/// Callable by an administrator, or by the agent holding the task's root warrant with
/// that warrant as its bearer token.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "revocations",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, body = RevokedView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<JsonOut<RevokedView>, ApiError> {
    let bearer = crate::extract::bearer_token(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token or the task's root warrant as a bearer token",
        )
    })?;
    let by =
        if crate::extract::is_admin_token(&state, bearer) { Completer::Admin } else { Completer::RootWarrant(bearer) };
    let revoked = state.engine.revocation().complete_task(&id, by).await?;
    state.metrics.revoked("task", revoked.revoked_warrants);
    Ok(JsonOut(revoked.into()))
}
