//! The credentials of enforcement points (PEPs) for the AuthZEN PDP: `/v1/peps` (admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warrant_engine::{NewPep, Pep};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Admin, Json, Path, Viewer};
use crate::state::AppState;

/// A PEP credential to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PepBody {
    /// A name for people; recorded with every decision the PEP asks for.
    pub name: String,
    /// Whether it may ask about plain subjects (humans, services: no warrant).
    #[serde(default)]
    pub plain_subjects: bool,
}

/// A PEP credential, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct PepView {
    /// `pep_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it may ask about plain subjects.
    pub plain_subjects: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl From<Pep> for PepView {
    fn from(p: Pep) -> Self {
        PepView {
            id: p.id.to_string(),
            name: p.name,
            plain_subjects: p.plain_subjects,
            created_at: p.created_at.0,
            revoked_at: p.revoked_at.map(|t| t.0),
        }
    }
}

/// A PEP credential just created, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPepView {
    /// `pep_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it may ask about plain subjects.
    pub plain_subjects: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// The bearer secret, `wpep_…`: send it as `Authorization: Bearer` to `/access/v1/*`.
    pub token: String,
}

/// The PEP credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct PepList {
    /// Oldest first, revoked ones included.
    pub peps: Vec<PepView>,
}

/// Creates a PEP credential; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/peps", tag = "authzen", security(("admin" = [])), request_body = PepBody,
    responses((status = 201, body = CreatedPepView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    Json(body): Json<PepBody>,
) -> Result<(StatusCode, JsonOut<CreatedPepView>), ApiError> {
    let created = state.engine.peps().create(NewPep { name: body.name, plain_subjects: body.plain_subjects }).await?;
    let p = created.pep;
    Ok((
        StatusCode::CREATED,
        JsonOut(CreatedPepView {
            id: p.id.to_string(),
            name: p.name,
            plain_subjects: p.plain_subjects,
            created_at: p.created_at.0,
            token: created.token,
        }),
    ))
}

/// Lists PEP credentials.
#[utoipa::path(get, path = "/v1/peps", tag = "authzen", security(("admin" = [])),
    responses((status = 200, body = PepList), (status = 401, body = ErrorBody)))]
pub async fn list(_: Viewer, State(state): State<AppState>) -> Result<JsonOut<PepList>, ApiError> {
    let peps = state.engine.peps().list().await?;
    Ok(JsonOut(PepList { peps: peps.into_iter().map(Into::into).collect() }))
}

/// Revokes a PEP credential: it authenticates nothing from now on.
#[utoipa::path(delete, path = "/v1/peps/{id}", tag = "authzen", security(("admin" = [])),
    params(("id" = String, Path, description = "PEP credential id")),
    responses((status = 200, body = PepView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<PepView>, ApiError> {
    Ok(JsonOut(state.engine.peps().revoke(&id).await?.into()))
}
