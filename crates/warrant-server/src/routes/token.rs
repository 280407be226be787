//! `POST /oauth2/token`.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{OAuthError, OAuthErrorBody};
use crate::extract::{dpop_proof, TokenForm};
use crate::ratelimit::ClientAddr;
use crate::state::AppState;

/// The form parameters (RFC 6749, 7523, 8693, plus `task_purpose` and `ttl`).
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "documentation-only schema for the form body")]
pub struct TokenFormDoc {
    /// `client_credentials` or `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_type: String,
    /// Space-separated permissions; default: everything every ceiling allows.
    scope: Option<String>,
    /// Requested lifetime in seconds; capped by the maximum and the parent's expiry.
    ttl: Option<i64>,
    /// What the work is for; required for root warrants.
    task_purpose: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` (client credentials).
    client_assertion_type: Option<String>,
    /// The agent's EdDSA client assertion (client credentials).
    client_assertion: Option<String>,
    /// A human session token or a parent warrant (token exchange).
    subject_token: Option<String>,
    /// `…:token-type:id_token`, `…:access_token` or `…:jwt`.
    subject_token_type: Option<String>,
    /// The acting agent's client assertion (token exchange).
    actor_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    actor_token_type: Option<String>,
    /// Budgets (extension): `counter=limit` pairs, e.g. `estimated_cost=5000`; every
    /// decision charges the request's `context.<counter>`. A delegation gets at most what
    /// the parent has left.
    budget: Option<String>,
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The warrant.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token` (token exchange only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// `Bearer`, or `DPoP` when the request carried a DPoP proof: the warrant is then
    /// bound to the proof's key (`cnf.jkt`) and is used only with fresh proofs.
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: i64,
    /// The granted scope.
    pub scope: String,
    /// The warrant's `jti`.
    pub warrant_id: String,
    /// The warrant's task.
    pub task_id: String,
    /// The warrant's budgets (counter -> limit), when it has any.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub budget: std::collections::BTreeMap<String, i64>,
}

/// Issues a warrant.
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, invalid_target, invalid_dpop_proof, unsupported_grant_type", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 429, description = "temporarily_unavailable: too many token requests for this agent (or, naming none, from this address); see `Retry-After`", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable: more decision and token requests in progress than `max_in_flight`; see `Retry-After`", body = OAuthErrorBody),
    ))]
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    TokenForm(mut req): TokenForm,
) -> Result<Response, OAuthError> {
    req.dpop = dpop_proof(&headers, "POST", || state.engine.config().token_endpoint())
        .map_err(|e| OAuthError::new("invalid_dpop_proof", e))?;
    if let Some(refused) = state.limits.token(&state.engine, &req, addr) {
        return Ok(refused);
    }
    let issued = state
        .engine
        .issuer()
        .token(&req)
        .await
        .inspect_err(|e| tracing::info!(error = e.code(), reason = %e, "token request refused"))?;
    let body = TokenResponse {
        access_token: issued.token,
        issued_token_type: issued.exchanged.then_some(warrant_engine::issuer::TOKEN_TYPE_ACCESS_TOKEN),
        token_type: if issued.claims.cnf.is_some() { "DPoP" } else { "Bearer" },
        expires_in: issued.expires_in,
        scope: issued.claims.scope.clone(),
        warrant_id: issued.claims.jti.to_string(),
        task_id: issued.claims.task.id.to_string(),
        budget: issued.claims.budget.clone(),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
