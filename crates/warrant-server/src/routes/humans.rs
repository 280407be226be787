//! The human registry: `/v1/humans`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warrant_core::Human;
use warrant_engine::NewHuman;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Admin, Json, Operator, Path, Viewer};
use crate::state::AppState;

/// A human to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanBody {
    /// Display name.
    pub name: String,
    /// Contact email (unique).
    pub email: String,
    /// Permissions the human may delegate, e.g. `crm.read:customers/*`.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Roles, e.g. `editor` (letters, digits, `_ - . :`; at most 32), which policies for
    /// plain subjects read as `principal.roles`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// What the identity provider calls this human (its `sub`), unique; an enforcement
    /// point may name the human by it.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A human's new roles, replacing the old ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    /// The roles (an empty list removes them all).
    pub roles: Vec<String>,
}

/// A registered human.
#[derive(Debug, Serialize, ToSchema)]
pub struct HumanView {
    /// `hum_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Contact email.
    pub email: String,
    /// Delegable permissions.
    pub entitlements: Vec<String>,
    /// Roles, sorted.
    pub roles: Vec<String>,
    /// The identity provider's id for the human, if any.
    pub external_id: Option<String>,
    /// For a human who signs in at a trusted OpenID provider: the provider and who they
    /// are there. Absent for humans an administrator registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityView>,
    /// `active` or `disabled`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where a signed-in human comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    /// The provider's issuer.
    pub issuer: String,
    /// The human's subject (`sub`) there.
    pub subject: String,
}

impl From<Human> for HumanView {
    fn from(h: Human) -> Self {
        let status = if h.is_active() { "active" } else { "disabled" };
        HumanView {
            id: h.id.to_string(),
            name: h.name,
            email: h.email,
            entitlements: h.entitlements.into(),
            roles: h.roles.into_iter().collect(),
            external_id: h.external_id,
            identity: h.identity.map(|i| IdentityView { issuer: i.issuer, subject: i.subject }),
            status: status.into(),
            created_at: h.created_at.0,
        }
    }
}

/// A list of humans.
#[derive(Debug, Serialize, ToSchema)]
pub struct HumanList {
    /// The humans, oldest first.
    pub humans: Vec<HumanView>,
}

/// A session token for a human.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Present as `subject_token` with type `urn:ietf:params:oauth:token-type:id_token`.
    pub token: String,
    /// Seconds until expiry.
    pub expires_in: i64,
}

/// Registers a human.
#[utoipa::path(post, path = "/v1/humans", tag = "humans", security(("admin" = [])), request_body = HumanBody,
    responses((status = 201, body = HumanView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    Json(body): Json<HumanBody>,
) -> Result<(StatusCode, JsonOut<HumanView>), ApiError> {
    let new = NewHuman {
        name: body.name,
        email: body.email,
        entitlements: body.entitlements,
        roles: body.roles,
        external_id: body.external_id,
    };
    let human = state.engine.registry().add_human(new).await?;
    Ok((StatusCode::CREATED, JsonOut(human.into())))
}

/// Lists humans.
#[utoipa::path(get, path = "/v1/humans", tag = "humans", security(("admin" = [])),
    responses((status = 200, body = HumanList), (status = 401, body = ErrorBody)))]
pub async fn list(_: Viewer, State(state): State<AppState>) -> Result<JsonOut<HumanList>, ApiError> {
    let humans = state.engine.registry().humans().await?;
    Ok(JsonOut(HumanList { humans: humans.into_iter().map(Into::into).collect() }))
}

/// Shows one human.
#[utoipa::path(get, path = "/v1/humans/{id}", tag = "humans", security(("admin" = [])),
    params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = HumanView), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<HumanView>, ApiError> {
    Ok(JsonOut(state.engine.registry().human(&id).await?.into()))
}

/// Disables a human.
#[utoipa::path(post, path = "/v1/humans/{id}/disable", tag = "humans", security(("admin" = [])),
    params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = HumanView), (status = 404, body = ErrorBody)))]
pub async fn disable(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<HumanView>, ApiError> {
    Ok(JsonOut(state.engine.registry().disable_human(&id, who.by()).await?.into()))
}

/// Enables a disabled human again.
#[utoipa::path(post, path = "/v1/humans/{id}/enable", tag = "humans", security(("admin" = [])),
    params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = HumanView), (status = 404, body = ErrorBody)))]
pub async fn enable(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<HumanView>, ApiError> {
    Ok(JsonOut(state.engine.registry().enable_human(&id, who.by()).await?.into()))
}

/// Replaces a human's roles.
#[utoipa::path(put, path = "/v1/humans/{id}/roles", tag = "humans", security(("admin" = [])), request_body = RolesBody,
    params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = HumanView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_roles(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<RolesBody>,
) -> Result<JsonOut<HumanView>, ApiError> {
    Ok(JsonOut(state.engine.registry().set_human_roles(&id, &body.roles).await?.into()))
}

/// Opens a session for a human (stands in for an IdP login in the embedded default).
#[utoipa::path(post, path = "/v1/humans/{id}/sessions", tag = "humans", security(("admin" = [])),
    params(("id" = String, Path, description = "human id")),
    responses((status = 201, body = SessionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn session(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, JsonOut<SessionView>), ApiError> {
    let s = state.engine.registry().open_session(&id).await?;
    Ok((StatusCode::CREATED, JsonOut(SessionView { token: s.token, expires_in: s.expires_in })))
}

/// Opens an approver session for a human: a short-lived token, good only for deciding
/// their approvals and attesting their agents, never for a token exchange. In the
/// embedded default it stands in for the human's own sign-in, through a channel the
/// agents acting for them never see.
#[utoipa::path(post, path = "/v1/humans/{id}/approver-sessions", tag = "humans", security(("admin" = [])),
    params(("id" = String, Path, description = "human id")),
    responses((status = 201, body = SessionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approver_session(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, JsonOut<SessionView>), ApiError> {
    let s = state.engine.registry().open_approver_session(&id).await?;
    Ok((StatusCode::CREATED, JsonOut(SessionView { token: s.token, expires_in: s.expires_in })))
}
