//! `POST /v1/keys/rotate`: rotating the issuer's signing key on a running server.

use axum::extract::State;
use axum::Json as JsonOut;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Admin;
use crate::state::AppState;

/// The key ring after a rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedView {
    /// The new signing key's id (its RFC 7638 thumbprint).
    pub kid: String,
    /// Every key id the JWKS now publishes (the new key and the retired keys whose
    /// warrants may still be alive).
    pub published: Vec<String>,
}

/// Rotates the issuer's signing key: new warrants are signed with a new key at once; the
/// old key stays in the JWKS until every warrant it signed has expired.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "discovery", security(("admin" = [])),
    responses((status = 200, body = RotatedView), (status = 401, body = ErrorBody)))]
pub async fn rotate(_: Admin, State(state): State<AppState>) -> Result<JsonOut<RotatedView>, ApiError> {
    let kid = state.engine.keys().rotate().await.map_err(|e| ApiError::internal(&e))?;
    let published = state.engine.keys().ring().map(|r| r.kids()).unwrap_or_default();
    Ok(JsonOut(RotatedView { kid, published }))
}
