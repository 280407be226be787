//! The two error bodies of the API.
//!
//! * [`ApiError`]: `{error, message}` with a 4xx status, for everything outside OAuth.
//! * [`OAuthError`]: RFC 6749 §5.2 `{error, error_description}`, for the token endpoint.
//!
//! Neither ever carries internals: a 5xx says only that the server failed, and the
//! detail goes to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use warrant_engine::{Classify, ErrorKind, TokenError};

/// The body of every error outside OAuth.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code (`invalid_request`, `not_found`, …).
    pub error: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

/// An API error: a status, a code and a message safe to show to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 with no detail; `detail` is logged.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the server failed; see its log")
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.code, message: self.message })).into_response()
    }
}

/// Every engine error becomes an API error the same way, by its kind: its message is
/// shown for what the caller can fix, and an internal failure shows nothing but is
/// logged.
impl<E: Classify> From<E> for ApiError {
    fn from(e: E) -> Self {
        match e.kind() {
            ErrorKind::Invalid => ApiError::bad_request(e.to_string()),
            ErrorKind::NotFound => ApiError::not_found(e.to_string()),
            ErrorKind::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            ErrorKind::Forbidden => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "a dependency is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the server cannot do this now; retry later",
                )
            }
            _ => ApiError::internal(&e),
        }
    }
}

/// The RFC 6749 §5.2 error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// The error code.
    pub error: &'static str,
    /// A human-readable explanation.
    pub error_description: String,
}

/// A token endpoint error.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    body: OAuthErrorBody,
}

impl OAuthError {
    /// 400 with `code`.
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, code, description)
    }

    /// `status` with `code`.
    pub fn with_status(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, body: OAuthErrorBody { error: code, error_description: description.into() } }
    }
}

impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        let status = match e.kind() {
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "token endpoint: try again later");
                return OAuthError::with_status(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string());
            }
            ErrorKind::Internal => {
                tracing::error!(error = %e, "token endpoint failure");
                return OAuthError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: OAuthErrorBody {
                        error: "server_error",
                        error_description: "the server failed; see its log".into(),
                    },
                };
            }
            ErrorKind::Forbidden => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError { status, body: OAuthErrorBody { error: e.code(), error_description: e.to_string() } }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
