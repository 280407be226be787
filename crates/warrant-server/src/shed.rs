//! Load shedding: past a bound of requests in progress, decisions and issuance are
//! refused at once with `503 Service Unavailable` and `Retry-After`, before they are
//! parsed, decided or recorded.
//!
//! Every decision waits for its audit record to be durable, so an overloaded server does
//! not fail: it queues, and every caller's latency grows with the queue. Refusing the
//! excess early keeps the admitted requests' latency bounded and tells the callers (PEPs,
//! SDKs) to come back, instead of answering all of them late. A shed request is not a
//! decision: it is never an allow, it has no audit record, and the caller must treat it
//! as "not decided" (a PEP fails closed). Revocation, introspection, health and
//! management are never shed: the kill switch must work hardest exactly when the server
//! is busiest.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, OAuthError};
use crate::state::AppState;

/// Seconds a shed caller is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Middleware for the shed routes: admits the request or answers 503 with `Retry-After`
/// (an OAuth error body on the token endpoint, the API's error body elsewhere).
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(admitted) = state.limits.in_flight().enter() else {
        let max = state.limits.in_flight().max();
        tracing::warn!(max, path = %request.uri().path(), "shed a request: the server is at its limit of requests in progress");
        let message =
            format!("the server is at its limit of {max} requests in progress; retry in {RETRY_AFTER_SECS} s");
        let retry = [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())];
        return if request.uri().path() == "/oauth2/token" {
            let error = OAuthError::with_status(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", message);
            (retry, error).into_response()
        } else {
            (retry, ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)).into_response()
        };
    };
    let response = next.run(request).await;
    drop(admitted);
    response
}
