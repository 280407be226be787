//! `/v1/policies`: the policy set in force, its history, and reloading it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use serde::Serialize;
use utoipa::ToSchema;
use warrant_engine::policy::{PolicyLoadError, Reloaded};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Admin, Viewer};
use crate::state::AppState;

/// The policy set in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySetView {
    /// Its version (referenced by every decision it makes).
    pub version: i64,
    /// SHA-256 of schema and policies.
    pub hash: String,
    /// Policy ids, in file order.
    pub policies: Vec<String>,
    /// The policy files' text.
    pub text: String,
    /// The schema it was validated against, with the generated action declarations.
    pub schema: String,
}

/// One stored version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionView {
    /// Version id.
    pub version: i64,
    /// SHA-256 of schema and policies.
    pub hash: String,
    /// When it was first loaded, Unix seconds.
    pub loaded_at: i64,
    /// Whether it is the set in force.
    pub active: bool,
}

/// Every version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyHistoryView {
    /// Oldest first.
    pub versions: Vec<PolicyVersionView>,
}

/// The outcome of a reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadView {
    /// The version in force now.
    pub version: i64,
    /// Whether a new set took effect.
    pub changed: bool,
}

fn unavailable() -> ApiError {
    ApiError::internal(&"the policy set is unavailable")
}

/// The policy set in force.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", security(("admin" = [])),
    responses((status = 200, body = PolicySetView), (status = 401, body = ErrorBody)))]
pub async fn show(_: Viewer, State(state): State<AppState>) -> Result<JsonOut<PolicySetView>, ApiError> {
    let current = state.engine.policy().current().ok_or_else(unavailable)?;
    let c = &current.compiled;
    Ok(JsonOut(PolicySetView {
        version: current.version,
        hash: c.hash().to_owned(),
        policies: c.policy_ids().to_vec(),
        text: c.source_text(),
        schema: c.schema_text().to_owned(),
    }))
}

/// Every version of the policy set, oldest first.
#[utoipa::path(get, path = "/v1/policies/history", tag = "policies", security(("admin" = [])),
    responses((status = 200, body = PolicyHistoryView), (status = 401, body = ErrorBody)))]
pub async fn history(_: Viewer, State(state): State<AppState>) -> Result<JsonOut<PolicyHistoryView>, ApiError> {
    let active = state.engine.policy().current().map(|c| c.version);
    let versions = state.engine.policy().versions().await.map_err(|e| ApiError::internal(&e))?;
    Ok(JsonOut(PolicyHistoryView {
        versions: versions
            .into_iter()
            .map(|v| PolicyVersionView {
                active: Some(v.id) == active,
                version: v.id,
                hash: v.hash,
                loaded_at: v.loaded_at.0,
            })
            .collect(),
    }))
}

/// Re-reads `<data>/policies` now (it is also watched). An invalid set is refused with
/// the validator's message and the previous set stays in force.
#[utoipa::path(post, path = "/v1/policies/reload", tag = "policies", security(("admin" = [])),
    responses((status = 200, body = ReloadView), (status = 422, body = ErrorBody)))]
pub async fn reload(_: Admin, State(state): State<AppState>) -> Result<JsonOut<ReloadView>, ApiError> {
    match state.engine.policy().reload().await {
        Ok(Reloaded::Unchanged(version)) => Ok(JsonOut(ReloadView { version, changed: false })),
        Ok(Reloaded::Activated(version)) => Ok(JsonOut(ReloadView { version, changed: true })),
        Err(PolicyLoadError::Policy(e)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("{e}; the previous set stays in force"),
        )),
        Err(e) => Err(ApiError::internal(&e)),
    }
}
