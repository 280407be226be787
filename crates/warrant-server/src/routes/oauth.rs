//! `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use warrant_core::{RevocationKind, WarrantClaims};
use warrant_engine::config::{INTROSPECTION_PATH, REVOCATION_PATH};
use warrant_engine::decisions::introspect::{Introspection, Introspector};

use crate::error::{OAuthError, OAuthErrorBody};
use crate::extract::{bearer_token, dpop_proof, is_admin_token, TokenForm};
use crate::ratelimit::ClientAddr;
use crate::state::AppState;

/// The form of an introspection or revocation request (RFC 7662 §2.1, RFC 7009 §2.1).
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "documentation-only schema for the form body")]
pub struct TokenQueryForm {
    /// The warrant.
    token: String,
    /// `access_token` (optional; Warrant has one kind of token).
    token_type_hint: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, when an agent calls.
    client_assertion_type: Option<String>,
    /// The agent's client assertion (`aud`: this endpoint, the token endpoint or the issuer).
    client_assertion: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `{"active": false}` alone, or `active` with
/// the warrant's claims (`scope`, `client_id`, `sub`, `exp`, `iat`, `nbf`, `aud`, `iss`,
/// `jti`, `act`, `task`, `mode`, `owner`, `parent`, `cnf`, `budget`) and `token_type`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectionView {
    /// Whether the warrant is in force now (not expired, revoked, of an ended task, of a
    /// suspended, quarantined or retired agent or a disabled human, and visible to the
    /// caller).
    pub active: bool,
    /// `Bearer` or `DPoP`, when active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The claims, when active.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub claims: Option<WarrantClaims>,
}

fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// Says whether a warrant is in force (RFC 7662). Callers authenticate with the admin
/// token or a PEP credential (`Authorization: Bearer`), or as an agent with a client
/// assertion (`private_key_jwt`), which sees only warrants whose chain it is in; any other
/// warrant, an invalid token, or one expired, revoked or of an ended task is
/// `{"active": false}`. A DPoP proof (`DPoP` header, for this endpoint and token) is
/// checked when sent; an agent introspecting a bound warrant must send one.
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth", security(("admin" = []), ("pep" = []), ()),
    request_body(content = TokenQueryForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = IntrospectionView),
        (status = 400, description = "invalid_request (no `token`), invalid_dpop_proof (several `DPoP` headers)", body = OAuthErrorBody),
        (status = 401, description = "invalid_client: no or a bad credential", body = OAuthErrorBody),
        (status = 429, description = "temporarily_unavailable: see `Retry-After`", body = OAuthErrorBody),
    ))]
pub async fn introspect(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    TokenForm(req): TokenForm,
) -> Result<Response, OAuthError> {
    let url = state.engine.config().endpoint(INTROSPECTION_PATH);
    let caller = match bearer_token(&headers) {
        Some(p) if is_admin_token(&state, p) => Introspector::Admin,
        Some(p) => match state.engine.peps().authenticate(p) {
            Some(pep) => Introspector::Pep(pep.name.clone()),
            None => return Err(unauthorized("the bearer token is neither the admin token nor a PEP credential")),
        },
        None => {
            if let Some(refused) = state.limits.token(&state.engine, &req, addr) {
                return Ok(refused);
            }
            let agent = state.engine.issuer().authenticate_client(&req, &url).await?;
            Introspector::Agent(agent.id)
        }
    };
    let token = token_of(&req)?;
    let proof = dpop_proof(&headers, "POST", || url).map_err(|e| OAuthError::new("invalid_dpop_proof", e))?;
    let view = match state.engine.decisions().introspect(token, &caller, proof.as_ref()).await {
        Introspection::Active(claims) => IntrospectionView {
            active: true,
            token_type: Some(if claims.cnf.is_some() { "DPoP" } else { "Bearer" }),
            claims: Some((*claims).clone()),
        },
        Introspection::Inactive(why) => {
            tracing::debug!(reason = %why, "introspected an inactive token");
            IntrospectionView { active: false, token_type: None, claims: None }
        }
    };
    Ok(no_store(Json(view)))
}

/// The form's `token`, which both endpoints require.
fn token_of(req: &warrant_engine::issuer::TokenRequest) -> Result<&str, OAuthError> {
    match req.token.as_deref() {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(OAuthError::new("invalid_request", "`token` is required")),
    }
}

fn unauthorized(why: &str) -> OAuthError {
    OAuthError::with_status(StatusCode::UNAUTHORIZED, "invalid_client", why)
}

/// A holder revokes its warrant (RFC 7009): the agent authenticates with a client
/// assertion (`private_key_jwt`); a warrant whose chain it is in is revoked with every
/// warrant delegated from it, in force for the next decision once this returns. An invalid
/// or expired token is answered 200 and changes nothing (RFC 7009 §2.2); another agent's
/// warrant is refused.
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = TokenQueryForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked (or nothing to revoke)"),
        (status = 400, description = "invalid_request (no `token`), unauthorized_client (another agent's warrant)", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 429, description = "temporarily_unavailable: see `Retry-After`", body = OAuthErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    TokenForm(req): TokenForm,
) -> Result<Response, OAuthError> {
    if let Some(refused) = state.limits.token(&state.engine, &req, addr) {
        return Ok(refused);
    }
    let url = state.engine.config().endpoint(REVOCATION_PATH);
    let agent = state.engine.issuer().authenticate_client(&req, &url).await?;
    let token = token_of(&req)?;
    let Some(claims) = state.engine.decisions().verified_claims(token) else {
        return Ok(no_store(StatusCode::OK));
    };
    if !claims.chain().contains(&agent.id) {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!("agent `{}` is not in this warrant's chain, so it may not revoke it", agent.id),
        ));
    }
    let reason = format!("revoked by agent `{}` (RFC 7009)", agent.id);
    match state.engine.revocation().revoke(RevocationKind::Warrant, claims.jti.as_str(), &reason).await {
        Ok(revoked) => state.metrics.revoked(RevocationKind::Warrant.as_str(), revoked.revoked_warrants),
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            if e.status().is_server_error() {
                return Err(OAuthError::with_status(e.status(), "server_error", "the server failed; see its log"));
            }
            // Already revoked, or never recorded: nothing (more) to revoke.
            tracing::debug!(status = %e.status(), "RFC 7009 revocation changed nothing");
        }
    }
    Ok(no_store(StatusCode::OK))
}
