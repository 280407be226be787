//! `GET /v1/warrants/{jti}`: one recorded warrant and whether it still stands.

use axum::extract::State;
use axum::Json as JsonOut;
use serde::Serialize;
use utoipa::ToSchema;
use warrant_engine::revocation::WarrantStatus;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Viewer};
use crate::state::AppState;

/// The revocation that ended a warrant.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationView {
    /// `rev_…`.
    pub id: String,
    /// What was revoked: `warrant`, `agent`, `task` or `human`.
    pub kind: &'static str,
    /// The id of what was revoked (this warrant, an ancestor, an agent of its chain, its
    /// task or its human).
    pub target: String,
    /// Why, in the revoker's words.
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
}

/// A recorded warrant and its state.
#[derive(Debug, Serialize, ToSchema)]
pub struct WarrantView {
    /// `wrt_…`.
    pub jti: String,
    /// `active`, `expired` or `revoked` (revoked wins over expired).
    #[schema(example = "active")]
    pub state: &'static str,
    /// The agent holding it.
    pub agent: String,
    /// Its task.
    pub task: String,
    /// The human it traces to.
    pub human: String,
    /// Its parent, absent at the root.
    pub parent: Option<String>,
    /// The chain of agents, root first.
    pub chain: Vec<String>,
    /// Its scope.
    pub scope: String,
    /// The signing key's id.
    pub kid: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The revocation that ended it, when `state` is `revoked` and it is on record.
    pub revocation: Option<RevocationView>,
}

impl From<WarrantStatus> for WarrantView {
    fn from(s: WarrantStatus) -> Self {
        let w = s.record;
        WarrantView {
            jti: w.jti.to_string(),
            state: s.state.as_str(),
            agent: w.agent.to_string(),
            task: w.task.to_string(),
            human: w.human.to_string(),
            parent: w.parent.map(|p| p.to_string()),
            chain: w.chain.iter().map(ToString::to_string).collect(),
            scope: w.scope.to_string(),
            kid: w.kid,
            issued_at: w.issued_at.0,
            expires_at: w.expires_at.0,
            revocation: s.revocation.map(|r| RevocationView {
                id: r.id,
                kind: r.kind.as_str(),
                target: r.target,
                reason: r.reason,
                at: r.at.0,
            }),
        }
    }
}

/// One warrant this server issued, with its state: `active`, `expired` or `revoked` (with
/// the revocation). Verifying a warrant's signature against the JWKS cannot tell whether it
/// was revoked; this can.
#[utoipa::path(get, path = "/v1/warrants/{jti}", tag = "revocations", security(("admin" = [])),
    params(("jti" = String, Path, description = "warrant id (`wrt_…`)")),
    responses((status = 200, body = WarrantView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(jti): Path<String>,
) -> Result<JsonOut<WarrantView>, ApiError> {
    Ok(JsonOut(state.engine.revocation().warrant_status(&jti).await?.into()))
}
