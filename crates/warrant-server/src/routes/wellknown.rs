//! Discovery: JWKS, RFC 8414 metadata, the OpenAPI document, health.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use warrant_engine::config::{AUTHORIZE_PATH, INTROSPECTION_PATH, REVOCATION_PATH};

use crate::error::ApiError;
use crate::state::AppState;

/// The public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JWKS (RFC 7517): every key that may still verify a live warrant", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let ring = state.engine.keys().ring().map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CACHE_CONTROL, "max-age=60")], Json(ring.jwks())))
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
pub async fn metadata(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = state.engine.config();
    let issuer = &config.issuer;
    Json(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": config.token_endpoint(),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials", warrant_engine::issuer::GRANT_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "warrant_client_assertion_types_supported": [
            warrant_engine::issuer::ASSERTION_TYPE_JWT_BEARER,
            warrant_token::spiffe::ASSERTION_TYPE_JWT_SPIFFE,
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "introspection_endpoint": config.endpoint(INTROSPECTION_PATH),
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "bearer"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "revocation_endpoint": config.endpoint(REVOCATION_PATH),
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "dpop_signing_alg_values_supported": warrant_token::dpop::PROOF_ALGS,
        "warrant_decision_endpoint": config.endpoint(AUTHORIZE_PATH),
        "warrant_ssf_receiver_endpoint": config.endpoint("/ssf/receiver"),
        "warrant_authzen_configuration": format!("{issuer}/.well-known/authzen-configuration"),
        "response_types_supported": [],
        "service_documentation": format!("{issuer}/openapi.json"),
        "warrant_default_ttl": config.limits.default_ttl,
        "warrant_max_ttl": config.limits.max_ttl,
        "warrant_max_depth": config.limits.max_depth,
    }))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "discovery", responses((status = 200, description = "`ok`")))]
pub async fn health() -> &'static str {
    "ok"
}

/// Readiness: 200 `ready` while the store answers, else 503 `not ready` (within
/// [`warrant_engine::READY_TIMEOUT`]); a load balancer sends requests only to ready servers.
#[utoipa::path(get, path = "/readyz", tag = "discovery", responses(
    (status = 200, description = "`ready`"),
    (status = 503, description = "`not ready`: the store does not answer")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.engine.ready().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "discovery",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.engine, state.limits.in_flight()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
