//! The router.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::routes::{
    agents, audit, authzen, decisions, govern, guard, humans, keys, oauth, peps, policies, revocations, ssf, token,
    transmitter, warrants, wellknown,
};
use crate::state::AppState;

/// A batch body may be this many times the body limit: it carries up to 100 requests,
/// each with its own warrant, which the single-request limit could not hold.
pub const BATCH_BODY_FACTOR: usize = 16;

/// The whole HTTP API.
pub fn app(state: AppState, body_limit: usize) -> Router {
    // Decisions and issuance are shed past `[limits] max_in_flight` (see `shed`); the
    // kill switch, introspection and management never are.
    let shed = axum::middleware::from_fn_with_state(state.clone(), crate::shed::admit);
    Router::new()
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/.well-known/oauth-authorization-server", get(wellknown::metadata))
        .route("/openapi.json", get(crate::openapi::openapi))
        .route("/healthz", get(wellknown::health))
        .route("/readyz", get(wellknown::ready))
        .route("/oauth2/token", post(token::token).layer(shed.clone()))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/v1/keys/rotate", post(keys::rotate))
        .route("/v1/humans", post(humans::create).get(humans::list))
        .route("/v1/humans/{id}", get(humans::show))
        .route("/v1/humans/{id}/sessions", post(humans::session))
        .route("/v1/humans/{id}/approver-sessions", post(humans::approver_session))
        .route("/v1/humans/{id}/disable", post(humans::disable))
        .route("/v1/humans/{id}/enable", post(humans::enable))
        .route("/ssf/receiver", post(ssf::receive))
        .route("/.well-known/ssf-configuration", get(transmitter::configuration))
        .route("/ssf/streams", post(transmitter::create).get(transmitter::read).delete(transmitter::delete))
        .route("/ssf/status", get(transmitter::status))
        .route("/ssf/verify", post(transmitter::verify))
        .route("/ssf/poll/{stream}", post(transmitter::poll))
        .route("/v1/humans/{id}/roles", put(humans::set_roles))
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route("/v1/agents/{id}", get(agents::show).delete(agents::retire))
        .route("/v1/agents/{id}/suspend", post(agents::suspend))
        .route("/v1/agents/{id}/owner", post(agents::transfer))
        .route("/v1/agents/{id}/resume", post(agents::resume))
        .route("/v1/agents/{id}/trust", get(guard::trust))
        .route("/v1/agents/{id}/deploys", post(guard::deploy))
        .route("/v1/agents/{id}/attestation", get(govern::evidence))
        .route("/v1/agents/{id}/attest", post(govern::attest))
        .route("/v1/agents/{id}/key", post(govern::rotate_key))
        .route("/v1/findings", get(govern::list))
        .route("/v1/findings/{id}", get(govern::show))
        .route("/v1/findings/{id}/accept", post(govern::accept))
        .route("/v1/findings/{id}/apply", post(govern::apply))
        .route("/v1/governance/sweep", post(govern::sweep))
        .route("/v1/inventory", get(govern::inventory))
        .route("/v1/approvals", get(guard::list))
        .route("/v1/approvals/{id}", get(guard::show))
        .route("/v1/approvals/{id}/approve", post(guard::approve))
        .route("/v1/approvals/{id}/reject", post(guard::reject))
        .route("/v1/events", get(guard::events))
        .route("/v1/authorize", post(decisions::authorize).layer(shed.clone()))
        .route(
            "/v1/authorize/batch",
            post(decisions::batch)
                .layer(DefaultBodyLimit::max(body_limit.saturating_mul(BATCH_BODY_FACTOR)))
                .layer(shed.clone()),
        )
        .route("/v1/revocations", post(revocations::revoke))
        .route("/v1/warrants/{jti}", get(warrants::show))
        .route("/v1/tasks/{id}", get(revocations::task))
        .route("/v1/tasks/{id}/complete", post(revocations::complete))
        .route("/v1/policies", get(policies::show))
        .route("/v1/policies/history", get(policies::history))
        .route("/v1/policies/reload", post(policies::reload))
        .route("/v1/audit", get(audit::query))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/{id}", get(audit::record))
        .route("/v1/audit/{id}/trace", get(audit::trace))
        .route("/v1/peps", post(peps::create).get(peps::list))
        .route("/v1/peps/{id}", delete(peps::revoke))
        .route("/.well-known/authzen-configuration", get(authzen::configuration))
        .merge(
            Router::new()
                .route("/access/v1/evaluation", post(authzen::evaluation).layer(shed.clone()))
                .route(
                    "/access/v1/evaluations",
                    post(authzen::evaluations)
                        .layer(DefaultBodyLimit::max(body_limit.saturating_mul(BATCH_BODY_FACTOR)))
                        .layer(shed.clone()),
                )
                .layer(axum::middleware::from_fn(authzen::echo_request_id)),
        )
        .route("/metrics", get(wellknown::metrics))
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // The span names the path only: a query string may carry an authorization code.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked; answered 500");
            axum::response::IntoResponse::into_response(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the server failed; see its log",
            ))
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
