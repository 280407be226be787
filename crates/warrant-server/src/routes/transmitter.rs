//! The Shared Signals transmitter (SSF 1.0): `/.well-known/ssf-configuration`, stream
//! management at `/ssf/streams`, `/ssf/status`, `/ssf/verify`, and RFC 8936 polling at
//! `/ssf/poll/{stream}`. Receivers authenticate with a PEP credential (or the admin
//! token) and see only their own streams.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use warrant_engine::transmitter::{
    PollRequest, PollResponse, StreamConfiguration, StreamRequest, StreamStatus, TransmitterMetadata,
};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query, ReceiverAuth};
use crate::state::AppState;

/// `?stream_id=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// The stream; without it, `GET` lists every stream of the caller.
    pub stream_id: Option<String>,
}

fn stream_id(q: StreamQuery) -> Result<String, ApiError> {
    q.stream_id.ok_or_else(|| ApiError::bad_request("`stream_id` is required"))
}

/// A verification request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyBody {
    /// The stream to verify.
    pub stream_id: String,
    /// Echoed in the verification event.
    pub state: Option<String>,
}

/// The transmitter configuration metadata.
#[utoipa::path(get, path = "/.well-known/ssf-configuration", tag = "ssf",
    responses((status = 200, description = "SSF 1.0 transmitter metadata", body = Object)))]
pub async fn configuration(State(state): State<AppState>) -> JsonOut<TransmitterMetadata> {
    JsonOut(state.engine.transmitter().metadata())
}

/// Creates a stream: `{delivery: {method, endpoint_url?, authorization_header?},
/// events_requested?, description?}`. Push (`urn:ietf:rfc:8935`) needs an https
/// `endpoint_url` of a public address; poll (`urn:ietf:rfc:8936`) gets its endpoint in the
/// answer. The stream carries every warrant revoked from now on.
#[utoipa::path(post, path = "/ssf/streams", tag = "ssf", security(("pep" = []), ("admin" = [])),
    request_body(content = Object, description = "stream configuration"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Json(body): Json<StreamRequest>,
) -> Result<Response, ApiError> {
    let created = state.engine.transmitter().create(&owner, body).await?;
    Ok((StatusCode::CREATED, JsonOut(created)).into_response())
}

/// One stream (`?stream_id=`) or every stream of the caller.
#[utoipa::path(get, path = "/ssf/streams", tag = "ssf", security(("pep" = []), ("admin" = [])), params(StreamQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn read(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let transmitter = state.engine.transmitter();
    Ok(match q.stream_id {
        Some(id) => JsonOut::<StreamConfiguration>(transmitter.get(&owner, &id).await?).into_response(),
        None => JsonOut(transmitter.list(&owner).await?).into_response(),
    })
}

/// Deletes a stream (`?stream_id=`).
#[utoipa::path(delete, path = "/ssf/streams", tag = "ssf", security(("pep" = []), ("admin" = [])), params(StreamQuery),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<StatusCode, ApiError> {
    state.engine.transmitter().delete(&owner, &stream_id(q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A stream's status (`?stream_id=`): `enabled` while it exists.
#[utoipa::path(get, path = "/ssf/status", tag = "ssf", security(("pep" = []), ("admin" = [])), params(StreamQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn status(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<JsonOut<StreamStatus>, ApiError> {
    Ok(JsonOut(state.engine.transmitter().status(&owner, &stream_id(q)?).await?))
}

/// Asks for a verification event on a stream, echoing `state`.
#[utoipa::path(post, path = "/ssf/verify", tag = "ssf", security(("pep" = []), ("admin" = [])), request_body = VerifyBody,
    responses((status = 204, description = "queued"), (status = 404, body = ErrorBody)))]
pub async fn verify(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Json(body): Json<VerifyBody>,
) -> Result<StatusCode, ApiError> {
    state.engine.transmitter().verify(&owner, &body.stream_id, body.state.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 8936 poll: `{ack?, setErrs?, maxEvents?, returnImmediately?}` ->
/// `{sets: {jti: SET}, moreAvailable}`, oldest first; what is acknowledged is not sent
/// again, what is not is sent again on the next poll.
#[utoipa::path(post, path = "/ssf/poll/{stream}", tag = "ssf", security(("pep" = []), ("admin" = [])),
    params(("stream" = String, Path, description = "the stream id")),
    request_body(content = Object, description = "RFC 8936 poll request"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn poll(
    ReceiverAuth(owner): ReceiverAuth,
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Json(body): Json<PollRequest>,
) -> Result<JsonOut<PollResponse>, ApiError> {
    Ok(JsonOut(state.engine.transmitter().poll(&owner, &stream, body).await?))
}
