//! The agent inventory: `/v1/agents`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::{Agent, Mode, PublicJwk, UnixTime};
use warrant_engine::registry::AgentTransition;
use warrant_engine::NewAgent;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Admin, Json, Operator, Path, Query, Viewer};
use crate::state::AppState;

/// An Ed25519 public key as a JWK (RFC 8037).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Optional key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// An expiry: Unix seconds or an RFC 3339 timestamp.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Expiry {
    /// Unix seconds.
    Unix(i64),
    /// RFC 3339, e.g. `2026-12-01T00:00:00Z`.
    Rfc3339(String),
}

impl Expiry {
    fn to_unix(&self) -> Result<UnixTime, ApiError> {
        match self {
            Expiry::Unix(t) => Ok(UnixTime(*t)),
            Expiry::Rfc3339(s) => parse_rfc3339(s)
                .ok_or_else(|| ApiError::bad_request(format!("`expires_at` `{s}` is not Unix seconds or RFC 3339"))),
        }
    }
}

/// Parses an RFC 3339 timestamp into Unix seconds.
fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(UnixTime(t.unix_timestamp()))
}

/// An agent to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// Display name.
    pub name: String,
    /// The accountable human's id (must be active).
    pub owner: String,
    /// `delegated` or `autonomous`.
    #[schema(value_type = String, example = "delegated")]
    pub mode: Mode,
    /// The ceiling of anything the agent may ever hold.
    pub max_scope: Vec<String>,
    /// Its Ed25519 public key: its client assertions are signed with it. Give this or
    /// `spiffe_id`.
    pub public_key: Option<Jwk>,
    /// Its SPIFFE ID (`spiffe://<trust domain>/<path>`), for a workload that
    /// authenticates with JWT-SVIDs of a trusted trust domain instead of a key of its own.
    pub spiffe_id: Option<String>,
    /// When an ephemeral agent stops being usable.
    pub expires_at: Option<Expiry>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A registered agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// `agt_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The accountable human.
    pub owner: String,
    /// `delegated` or `autonomous`.
    pub mode: String,
    /// The ceiling of its warrants.
    pub max_scope: Vec<String>,
    /// Its public key (absent for an agent with a SPIFFE ID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Jwk>,
    /// The SPIFFE ID it authenticates as, if it has one instead of a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// `active`, `suspended` or `retired`.
    pub status: String,
    /// Unix seconds, for ephemeral agents.
    pub expires_at: Option<i64>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        AgentView {
            id: a.id.to_string(),
            name: a.name,
            owner: a.owner.to_string(),
            mode: a.mode.as_str().into(),
            max_scope: a.max_scope.into(),
            public_key: a.public_key.map(|k| Jwk { kty: k.kty, crv: k.crv, x: k.x, kid: k.kid }),
            spiffe_id: a.spiffe_id,
            status: a.status.as_str().into(),
            expires_at: a.expires_at.map(|t| t.0),
            labels: a.labels,
            created_at: a.created_at.0,
        }
    }
}

/// A list of agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// The agents, oldest first.
    pub agents: Vec<AgentView>,
}

/// Filters for listing agents.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AgentFilter {
    /// Only agents of this owner.
    pub owner: Option<String>,
}

/// Registers an agent.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", security(("admin" = [])), request_body = AgentBody,
    responses((status = 201, body = AgentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    Json(body): Json<AgentBody>,
) -> Result<(StatusCode, JsonOut<AgentView>), ApiError> {
    let expires_at = body.expires_at.as_ref().map(Expiry::to_unix).transpose()?;
    let new = NewAgent {
        name: body.name,
        owner: body.owner,
        mode: body.mode,
        max_scope: body.max_scope,
        public_key: body.public_key.map(|k| PublicJwk { kty: k.kty, crv: k.crv, x: k.x, kid: k.kid }),
        spiffe_id: body.spiffe_id,
        expires_at,
        labels: body.labels,
    };
    let agent = state.engine.registry().add_agent(new).await?;
    Ok((StatusCode::CREATED, JsonOut(agent.into())))
}

/// Lists agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("admin" = [])), params(AgentFilter),
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody)))]
pub async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Query(filter): Query<AgentFilter>,
) -> Result<JsonOut<AgentList>, ApiError> {
    let agents = state.engine.registry().agents(filter.owner.as_deref()).await?;
    Ok(JsonOut(AgentList { agents: agents.into_iter().map(Into::into).collect() }))
}

/// Shows one agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<AgentView>, ApiError> {
    Ok(JsonOut(state.engine.registry().agent(&id).await?.into()))
}

async fn transition(
    state: &AppState,
    id: &str,
    change: AgentTransition,
    by: &Operator,
) -> Result<JsonOut<AgentView>, ApiError> {
    Ok(JsonOut(state.engine.registry().transition_agent(id, change, by.by()).await?.into()))
}

/// An agent's new owner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    /// The new owner: an existing, active human (`hum_…`).
    pub owner: String,
}

/// Hands an agent to another owner (fixes an orphan without retiring it).
#[utoipa::path(post, path = "/v1/agents/{id}/owner", tag = "agents", security(("admin" = [])), request_body = OwnerBody,
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn transfer(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<OwnerBody>,
) -> Result<JsonOut<AgentView>, ApiError> {
    Ok(JsonOut(state.engine.registry().transfer_agent(&id, &body.owner).await?.into()))
}

/// Suspends an agent: it gets no new warrant until resumed.
#[utoipa::path(post, path = "/v1/agents/{id}/suspend", tag = "agents", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn suspend(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<AgentView>, ApiError> {
    transition(&state, &id, AgentTransition::Suspend, &who).await
}

/// Resumes a suspended agent.
#[utoipa::path(post, path = "/v1/agents/{id}/resume", tag = "agents", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<AgentView>, ApiError> {
    transition(&state, &id, AgentTransition::Resume, &who).await
}

/// Retires an agent for good.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
pub async fn retire(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<AgentView>, ApiError> {
    transition(&state, &id, AgentTransition::Retire, &who).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UnixTime(0)));
        assert_eq!(parse_rfc3339("2026-11-22T15:38:52Z"), Some(UnixTime(1_795_361_932)));
        assert_eq!(parse_rfc3339("2026-11-22T16:38:52.123+01:00"), Some(UnixTime(1_795_361_932)));
        assert_eq!(parse_rfc3339("2026-13-22T15:38:52Z"), None);
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }
}
