//! `POST /ssf/receiver`: Security Event Tokens pushed by a trusted identity provider
//! (RFC 8935). The SET's signature is its authentication. 202 when accepted (including a
//! SET about someone Warrant does not know), 400 with an RFC 8935 `err` when not, 503
//! when the provider's keys cannot be read or the change cannot be made now (the
//! transmitter retries).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ratelimit::ClientAddr;
use crate::state::AppState;

/// The media type of a pushed SET.
pub const SECEVENT_JWT: &str = "application/secevent+jwt";

/// An RFC 8935 error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetErrorBody {
    /// `invalid_request`, `invalid_key`, `invalid_issuer` or `invalid_audience`.
    pub err: String,
    /// What was wrong.
    pub description: String,
}

fn refuse(status: StatusCode, err: &str, description: impl Into<String>) -> Response {
    (status, Json(SetErrorBody { err: err.into(), description: description.into() })).into_response()
}

/// Receives one SET.
#[utoipa::path(post, path = "/ssf/receiver", tag = "federation",
    request_body(content = String, content_type = "application/secevent+jwt", description = "a SET (RFC 8417)"),
    responses((status = 202, description = "accepted"), (status = 400, body = SetErrorBody),
              (status = 429, description = "too many refused SETs from this address; see `Retry-After`"),
              (status = 503, body = SetErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Refused SETs count against the sender's address like anonymous decisions; over
    // the limit nothing more from it is verified until it waits.
    if let Some(wait) = state.limits.refused_over(&state.engine, addr) {
        let answer = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            format!("too many refused security events from this address; retry in {wait} s"),
        );
        return ([(header::RETRY_AFTER, wait.to_string())], answer).into_response();
    }
    let answer = receive_set(&state, &headers, &body).await;
    if answer.status() == StatusCode::BAD_REQUEST {
        state.limits.count_refused(&state.engine, addr);
    }
    answer
}

async fn receive_set(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Response {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(SECEVENT_JWT) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", format!("the body must be `{SECEVENT_JWT}`"));
    }
    let Ok(token) = std::str::from_utf8(body) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "the body is not UTF-8");
    };
    match state.engine.signals().receive(token.trim()).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => match e.err() {
            Some(err) => refuse(StatusCode::BAD_REQUEST, err, e.to_string()),
            None => {
                tracing::warn!(error = %e, "a security event could not be acted on now");
                refuse(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again later")
            }
        },
    }
}
