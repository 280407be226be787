//! Extractors whose rejections use the API's own error bodies: [`Json`], [`Path`] and
//! [`Query`] (problem-style `{error, message}`), [`TokenForm`] (RFC 6749 errors), and
//! the role extractors [`Viewer`], [`Operator`] and [`Admin`] (the admin bearer token,
//! or a console session whose role allows it).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use warrant_core::{Capability, Principal};
use warrant_engine::TokenRequest;

use crate::error::{ApiError, OAuthError};
use crate::state::AppState;

/// A JSON body; malformed or mistyped bodies (missing, wrongly typed or unknown fields)
/// are 400 `invalid_request`, a wrong content type 415, an oversized body 413, all as
/// [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !plain_json(req.headers()) {
            // Parameters, `+json` suffixes, odd casing: axum's own reading of the type.
            return from_axum(axum::Json::<T>::from_request(req, state).await);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| json_rejection(JsonRejection::from(e)))?;
        parse_json(&bytes)
    }
}

/// Whether the content type is exactly `application/json` (in any case), as nearly every
/// client sends it.
fn plain_json(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"))
}

/// `bytes` as a `T`. The body is parsed once, without tracking where in it the parser is;
/// only a body that does not parse is read again with the path tracked (axum's reading),
/// so that its error names the field at fault.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Json<T>, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(Json(value)),
        Err(_) => from_axum(axum::Json::<T>::from_bytes(bytes)),
    }
}

/// axum's reading of a JSON body, with its rejection as an [`ApiError`].
fn from_axum<T>(read: Result<axum::Json<T>, JsonRejection>) -> Result<Json<T>, ApiError> {
    read.map(|axum::Json(value)| Json(value)).map_err(json_rejection)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "the request body is too large")
        }
        // Well-formed JSON of the wrong shape (a missing, mistyped or unknown field) is as
        // much a bad request as malformed JSON: 400, as the wire contract says, not
        // axum's default 422.
        JsonRejection::JsonDataError(e) => ApiError::bad_request(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(e.body_text()),
        other => ApiError::new(other.status(), "invalid_request", other.body_text()),
    }
}

/// Path parameters; undecodable ones (e.g. invalid UTF-8) become [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) if rejection.status().is_server_error() => Err(ApiError::internal(&rejection.body_text())),
            Err(rejection) => Err(ApiError::new(rejection.status(), "invalid_request", rejection.body_text())),
        }
    }
}

/// A query string; one that does not fit `T` becomes an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "invalid_request", rejection.body_text())),
        }
    }
}

/// The token endpoint's form body (RFC 6749 §3.2): `application/x-www-form-urlencoded`,
/// each parameter at most once, unknown parameters ignored.
#[derive(Debug, Clone)]
pub struct TokenForm(pub TokenRequest);

impl<S: Send + Sync> FromRequest<S> for TokenForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !is_form {
            return Err(OAuthError::new("invalid_request", "send the body as `application/x-www-form-urlencoded`"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError::new("invalid_request", "the request body is too large")
            } else {
                OAuthError::new("invalid_request", "the request body could not be read")
            }
        })?;
        parse_token_form(&bytes).map(TokenForm)
    }
}

/// Parses a token endpoint form body (RFC 6749 §3.2, `application/x-www-form-urlencoded`)
/// into a [`TokenRequest`]: each known parameter at most once, unknown parameters
/// ignored. [`TokenForm`] calls it once the body is read; it is pure, so it can be tested
/// and fuzzed on bytes alone.
pub fn parse_token_form(body: &[u8]) -> Result<TokenRequest, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::new("invalid_request", "the body is not a valid form"))?;
    let mut out = TokenRequest::default();
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "grant_type" => &mut out.grant_type,
            "scope" => &mut out.scope,
            "ttl" => &mut out.ttl,
            "task_purpose" => &mut out.task_purpose,
            "client_assertion_type" => &mut out.client_assertion_type,
            "client_assertion" => &mut out.client_assertion,
            "subject_token" => &mut out.subject_token,
            "subject_token_type" => &mut out.subject_token_type,
            "actor_token" => &mut out.actor_token,
            "actor_token_type" => &mut out.actor_token_type,
            "budget" => &mut out.budget,
            "resource" => &mut out.resource,
            "token" => &mut out.token,
            "token_type_hint" => &mut out.token_type_hint,
            "subject_dpop" => &mut out.subject_dpop,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(OAuthError::new("invalid_request", format!("`{name}` must not be repeated")));
        }
    }
    Ok(out)
}

/// The bearer token of an `Authorization: Bearer …` header, if any.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The request's DPoP proof (RFC 9449 §4.1: the `DPoP` header, at most one), bound to
/// the method and the public URL of the endpoint it was sent to (`url`, built only when
/// a proof came).
pub fn dpop_proof(
    headers: &axum::http::HeaderMap,
    htm: &str,
    url: impl FnOnce() -> String,
) -> Result<Option<warrant_engine::dpop::PresentedProof>, &'static str> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("send one `DPoP` header, not several");
    }
    let proof = first.to_str().map_err(|_| "the `DPoP` header is not ASCII")?.trim();
    Ok(Some(warrant_engine::dpop::PresentedProof { proof: proof.to_owned(), htm: htm.to_owned(), htu: url() }))
}

/// Whether `presented` is the admin token (constant-time comparison).
pub fn is_admin_token(state: &AppState, presented: &str) -> bool {
    state.admin_token.matches(presented)
}

/// Who decides an approval or attests an agent: the admin token, or the human's own
/// approver token (`POST /v1/humans/{id}/approver-sessions`). A delegation session token,
/// which agents hold as the subject of their exchanges, is refused here.
#[derive(Debug, Clone)]
pub struct ApproverAuth(pub warrant_core::guard::approval::Decider);

impl FromRequestParts<AppState> for ApproverAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        use warrant_core::guard::approval::Decider;
        let presented = bearer_token(&parts.headers);
        if presented.is_some_and(|p| is_admin_token(state, p)) {
            return Ok(ApproverAuth(Decider::Admin));
        }
        if presented.is_none() {
            // A console session: a human decides their own approvals, an approver or an
            // admin any.
            if let Some(principal) = caller(parts, state).await? {
                return Decider::of(&principal)
                    .map(ApproverAuth)
                    .ok_or_else(|| forbidden(&principal, Capability::Decide));
            }
        }
        let human = match presented {
            Some(p) => state.engine.registry().approver_human(p).await,
            None => None,
        };
        human.map(|h| ApproverAuth(Decider::Human(h))).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the human's approver token (`POST /v1/humans/{id}/approver-sessions`) or the admin token as a bearer token; a delegation session token is not accepted here",
            )
        })
    }
}

/// Who asks the AuthZEN PDP (`/access/v1/*`): an enforcement point's credential
/// (`wpep_…`), or the admin token (which may ask about plain subjects). Anything else is
/// 401 with `WWW-Authenticate: Bearer`. A PEP credential is good for this, introspection
/// and Shared Signals streams, and nothing else.
#[derive(Debug, Clone)]
pub struct PepAuth(pub warrant_engine::Asker);

impl FromRequestParts<AppState> for PepAuth {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = bearer_token(&parts.headers);
        if presented.is_some_and(|p| is_admin_token(state, p)) {
            return Ok(PepAuth(warrant_engine::Asker::admin()));
        }
        if let Some(pep) = presented.and_then(|p| state.engine.peps().authenticate(p)) {
            return Ok(PepAuth(warrant_engine::Asker::from(&pep)));
        }
        Err(pep_challenge())
    }
}

/// The 401 for a request without a PEP credential or the admin token.
fn pep_challenge() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send a PEP credential (`warrant pep add`) or the admin token as a bearer token",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Who manages and polls Shared Signals streams: a PEP credential (an enforcement point
/// that caches warrants), named by its id, or the admin token, which sees every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverAuth(pub warrant_engine::transmitter::Owner);

impl FromRequestParts<AppState> for ReceiverAuth {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        use warrant_engine::transmitter::Owner;
        let presented = bearer_token(&parts.headers);
        if presented.is_some_and(|p| is_admin_token(state, p)) {
            return Ok(ReceiverAuth(Owner::Admin));
        }
        match presented.and_then(|p| state.engine.peps().authenticate(p)) {
            Some(pep) => Ok(ReceiverAuth(Owner::Pep(pep.id.to_string()))),
            None => Err(pep_challenge()),
        }
    }
}

/// The console session cookie: a random secret; the store keeps only its SHA-256.
/// `__Host-`: Secure, no `Domain`, `Path=/`, so no other host or path can set it.
pub const SESSION_COOKIE: &str = "__Host-warrant-console";
/// The header a state-changing API request made with the session cookie carries the
/// session's CSRF token in (console forms carry it as the field `csrf`).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether `a` and `b` are equal, in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who is calling Warrant's management API: the admin token (a bearer token), or a
/// console session (the cookie; a state-changing method must also carry the session's
/// CSRF token in `X-CSRF-Token`). `Ok(None)`: neither.
pub async fn caller(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    if let Some(presented) = bearer_token(&parts.headers) {
        return Ok(is_admin_token(state, presented).then_some(Principal::AdminToken));
    }
    let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(None) };
    let Some(session) = state.engine.console().session(secret).await else { return Ok(None) };
    if !parts.method.is_safe() {
        let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same_secret(presented, &session.csrf) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a request made with the console session must carry its CSRF token in `X-CSRF-Token`",
            ));
        }
    }
    Ok(Some(session.principal))
}

/// The 401 of the management API.
fn unauthenticated() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs the admin bearer token (see `<data>/admin.token`) or a console session with a role",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// The caller, if they may do what `needed` names: 401 when nobody is signed in, 403
/// naming the role when their role does not allow it.
pub async fn require(
    parts: &Parts,
    state: &AppState,
    needed: Capability,
) -> Result<Principal, axum::response::Response> {
    use axum::response::IntoResponse as _;
    let principal = caller(parts, state).await.map_err(|e| e.into_response())?.ok_or_else(unauthenticated)?;
    if principal.can(needed) {
        return Ok(principal);
    }
    Err(forbidden(&principal, needed).into_response())
}

/// The 403 for `principal`, whose role does not allow what `needed` names.
fn forbidden(principal: &Principal, needed: Capability) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("signed in as {} ({}): {}", principal.label(), principal.role_label(), needed.needs()),
    )
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $capability:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = axum::response::Response;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                require(parts, state, $capability).await.map($name)
            }
        }

        impl $name {
            /// Who, as the audit log records them.
            pub fn by(&self) -> Option<&Principal> {
                Some(&self.0)
            }
        }
    };
}

role_extractor!(
    /// A caller who may read (any role, or the admin token).
    Viewer,
    Capability::Read
);
role_extractor!(
    /// A caller who may suspend, revoke and apply findings (operator, admin, the admin token).
    Operator,
    Capability::Operate
);
role_extractor!(
    /// A caller with the admin role or the admin token.
    Admin,
    Capability::Administer
);

#[cfg(test)]
mod tests {
    use super::{parse_json, parse_token_form};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        n: u32,
    }

    /// The one-pass parse gives the same value, and a body it refuses is explained with
    /// the path of the field at fault.
    #[test]
    fn a_json_body_that_does_not_fit_names_the_field_at_fault() {
        let ok: super::Json<Body> = parse_json(br#"{"items": [{"n": 1}, {"n": 2}]}"#).unwrap();
        assert_eq!(ok.0.items.iter().map(|i| i.n).collect::<Vec<_>>(), [1, 2]);
        let err = parse_json::<Body>(br#"{"items": [{"n": 1}, {"n": "two"}]}"#).unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("items[1].n") && text.contains("invalid type"), "{text}");
        let err = parse_json::<Body>(br#"{"items": [{"n": 1, "m": 2}]}"#).unwrap_err();
        assert!(format!("{err:?}").contains("items[0]") && format!("{err:?}").contains("unknown field"), "{err:?}");
        let err = parse_json::<Body>(b"{\"items\": [").unwrap_err();
        assert!(format!("{err:?}").contains("EOF"), "{err:?}");
    }

    #[test]
    fn token_form_takes_each_known_parameter_once_and_ignores_the_rest() {
        let req = parse_token_form(b"grant_type=client_credentials&scope=crm.read+billing.%2A&foo=1&foo=2").unwrap();
        assert_eq!(req.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(req.scope.as_deref(), Some("crm.read billing.*"));
        assert!(req.ttl.is_none() && req.client_assertion.is_none());
        let err = parse_token_form(b"scope=a&grant_type=x&scope=b").unwrap_err();
        assert!(format!("{err:?}").contains("`scope` must not be repeated"), "{err:?}");
        assert!(parse_token_form(b"").is_ok());
    }
}
