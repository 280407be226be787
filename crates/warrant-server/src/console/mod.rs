//! The web console at `/console`: server-rendered pages (maud) with one small script for
//! live updates over server-sent events, assets built into the binary, nothing fetched
//! from elsewhere.
//!
//! Security: every page is served with a strict Content-Security-Policy (no inline
//! script or style, nothing from other origins, no framing), `no-store`, `nosniff` and
//! no referrer. The session is the `__Host-` cookie (HttpOnly, Secure, SameSite=Lax) of
//! a session kept in the store; every form that changes anything carries the session's
//! CSRF token, checked in constant time. Pages check the signed-in principal's role (the
//! same roles as the HTTP API); a human sees only their own agents and approvals.
//!
//! * [`signin`]: sign-in (identity provider, approver token, admin token) and sign-out.
//! * [`pages`]: the pages that show (overview, inventory, agent, decisions, trace,
//!   approvals, findings, policies, kill switch).
//! * [`actions`]: the forms that change something (suspend, resume, revoke, rotate key,
//!   approve, reject, apply or accept a finding, kill switch).

pub mod actions;
pub mod pages;
pub mod signin;
mod view;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use warrant_core::{Capability, HumanId, Principal};
use warrant_engine::console::ConsoleSession;

use crate::extract::{cookie, same_secret, SESSION_COOKIE};
use crate::state::AppState;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The console's routes, mounted at `/console`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/sign-in", get(signin::page))
        .route("/console/sign-in/token", post(signin::with_token))
        .route("/console/sign-in/oidc", post(signin::start))
        .route("/console/oidc/callback", get(signin::callback))
        .route("/console/sign-out", post(signin::sign_out))
        .route("/console/agents", get(pages::agents))
        .route("/console/agents/{id}", get(pages::agent))
        .route("/console/agents/{id}/{change}", post(actions::agent))
        .route("/console/decisions", get(pages::decisions))
        .route("/console/decisions/{id}", get(pages::trace))
        .route("/console/approvals", get(pages::approvals))
        .route("/console/approvals/{id}", get(pages::approval))
        .route("/console/approvals/{id}/card", get(pages::approval_card_only))
        .route("/console/approvals/{id}/{verdict}", post(actions::decide))
        .route("/console/findings", get(pages::findings))
        .route("/console/findings/{id}/{what}", post(actions::finding))
        .route("/console/policies", get(pages::policies))
        .route("/console/policies/reload", post(actions::reload))
        .route("/console/kill", get(pages::kill))
        .route("/console/kill/confirm", post(actions::kill_confirm))
        .route("/console/kill/revoke", post(actions::kill))
        .route("/console/assets/console.css", get(style))
        .route("/console/assets/console.js", get(script))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Adds the console's security headers to every response under `/console`.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// A signed-in console user: who, and their session (with its CSRF token). Pages that
/// take it redirect to the sign-in page when nobody is signed in.
#[derive(Debug, Clone)]
pub struct User(pub ConsoleSession);

impl User {
    /// Who is signed in.
    pub fn principal(&self) -> &Principal {
        &self.0.principal
    }

    /// Whether they may do what `needed` names (a human may not, beyond their own).
    pub fn can(&self, needed: Capability) -> bool {
        self.0.principal.can(needed)
    }

    /// The human, for a human signed in for themselves.
    pub fn human(&self) -> Option<&HumanId> {
        self.0.principal.human()
    }

    /// Whether they may see what `owner` owns or must decide: an operator (any role),
    /// or that human.
    pub fn may_see(&self, owner: &HumanId) -> bool {
        self.can(Capability::Read) || self.human() == Some(owner)
    }

    /// Refuses unless `needed` is allowed (403 page naming the role).
    pub fn require(&self, needed: Capability) -> Result<(), Failure> {
        if self.can(needed) {
            return Ok(());
        }
        Err(self.refusal(needed))
    }

    /// The 403 page for something that needs `needed`, naming who is signed in.
    pub fn refusal(&self, needed: Capability) -> Failure {
        Failure::forbidden(format!(
            "Not allowed: {}; you are signed in as {} ({}).",
            needed.needs(),
            self.principal().label(),
            self.principal().role_label()
        ))
    }

    /// Checks a form that changes something: its CSRF token, then the role it needs.
    pub fn may_change(&self, csrf: &str, needed: Capability) -> Result<(), Failure> {
        self.check_csrf(csrf)?;
        self.require(needed)
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Failure> {
        if same_secret(presented, &self.0.csrf) {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong (reload the page and try again).",
            ))
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(secret) => state.engine.console().session(secret).await,
            None => None,
        };
        session.map(User).ok_or_else(|| Redirect::to("/console/sign-in").into_response())
    }
}

/// A console page that could not be shown: a status and a message for a person.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    /// 500, logged; the page says only that it failed.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "a console page failed");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "The server failed; see its log.")
    }
}

impl<E: warrant_engine::Classify> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::from(crate::error::ApiError::from(e))
    }
}

impl From<crate::error::ApiError> for Failure {
    fn from(e: crate::error::ApiError) -> Self {
        let status = e.status();
        if status.is_server_error() {
            return Failure::new(status, "The server failed; see its log.");
        }
        Failure::new(status, e.message().to_owned())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, view::failure(self.status, &self.message)).into_response()
    }
}
