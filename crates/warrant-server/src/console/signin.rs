//! Signing in to the console and out of it.
//!
//! The sign-in forms carry a one-time value that must match the `__Host-warrant-signin`
//! cookie set with the page (double submit), so another site cannot sign a browser in
//! to an account of its choosing.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use warrant_core::Principal;
use warrant_engine::console::ConsoleError;

use super::view;
use super::User;
use crate::extract::{cookie, is_admin_token, same_secret, SESSION_COOKIE};
use crate::state::AppState;

/// The cookie of the sign-in page's one-time value.
const SIGNIN_COOKIE: &str = "__Host-warrant-signin";

/// The cookie that binds a sign-in at a provider to the browser that started it: the
/// `state` sent, which the callback must bring back in this browser (so nobody can
/// finish, in someone else's browser, a sign-in they started for their own account).
const STATE_COOKIE: &str = "__Host-warrant-oidc";

fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let text = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The sign-in page (or the overview, for someone signed in already).
pub async fn page_for(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let Ok(value) = warrant_engine::random::secret::<24>() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    let providers = state.engine.console().providers();
    let body = html! {
        @if let Some(error) = error {
            p.error role="alert" #signin-error { (error) }
        }
        @if !providers.is_empty() {
            section aria-labelledby="idp" {
                h2 #idp { "Your identity provider" }
                p { "Operators get the role their groups hold; anyone else signs in as themselves and sees their own agents and approvals." }
                @for issuer in &providers {
                    form method="post" action="/console/sign-in/oidc" {
                        input type="hidden" name="signin" value=(value);
                        input type="hidden" name="issuer" value=(issuer);
                        button type="submit" { "Sign in at " (issuer) }
                    }
                }
            }
        }
        section aria-labelledby="tok" {
            h2 #tok { "With a token" }
            p { "A human's approver token (" code { "POST /v1/humans/{id}/approver-sessions" } "), or the admin token as break-glass. Delegation session tokens, which agents hold, are refused." }
            form method="post" action="/console/sign-in/token" {
                input type="hidden" name="signin" value=(value);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, view::page("Sign in", None, "", body)).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, &value, 600));
    response
}

/// `GET /console/sign-in`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if state.engine.console().session(secret).await.is_some() {
            return Redirect::to("/console").into_response();
        }
    }
    page_for(&state, StatusCode::OK, None).await
}

/// Whether the form's one-time value is the sign-in cookie's.
fn signin_matches(headers: &HeaderMap, presented: &str) -> bool {
    cookie(headers, SIGNIN_COOKIE).is_some_and(|c| !c.is_empty() && same_secret(c, presented))
}

/// Opens a session for `principal` and sends the browser to the overview.
async fn signed_in(state: &AppState, principal: Principal) -> Response {
    match state.engine.console().open(principal).await {
        Ok(opened) => {
            let max_age = opened.session.expires_at.0 - state.engine.now().0;
            let mut response = Redirect::to("/console").into_response();
            let h = response.headers_mut();
            h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &opened.secret, max_age));
            h.append(header::SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", 0));
            response
        }
        Err(e) => refused(state, e).await,
    }
}

async fn refused(state: &AppState, e: ConsoleError) -> Response {
    let (status, message) = match &e {
        ConsoleError::Refused(m) => (StatusCode::UNAUTHORIZED, m.clone()),
        ConsoleError::UnknownProvider(_) => (StatusCode::BAD_REQUEST, e.to_string()),
        ConsoleError::Provider(_) => {
            tracing::warn!(error = %e, "a console sign-in at an identity provider failed");
            (StatusCode::BAD_GATEWAY, e.to_string())
        }
        ConsoleError::Store(_) | ConsoleError::Internal(_) => {
            tracing::error!(error = %e, "a console sign-in failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The server failed; see its log.".to_owned())
        }
    };
    page_for(state, status, Some(&message)).await
}

/// The token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    /// The sign-in page's one-time value.
    #[serde(default)]
    pub signin: String,
    /// An approver token or the admin token.
    #[serde(default)]
    pub token: String,
}

/// `POST /console/sign-in/token`.
pub async fn with_token(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if !signin_matches(&headers, &form.signin) {
        return page_for(&state, StatusCode::FORBIDDEN, Some("The sign-in form expired; try again.")).await;
    }
    let token = form.token.trim();
    if is_admin_token(&state, token) {
        tracing::warn!("break-glass: someone signed in to the console with the admin token");
        return signed_in(&state, Principal::AdminToken).await;
    }
    match state.engine.console().human_by_token(token).await {
        Ok(principal) => signed_in(&state, principal).await,
        Err(e) => refused(&state, e).await,
    }
}

/// The identity provider form.
#[derive(Debug, Deserialize)]
pub struct ProviderForm {
    /// The sign-in page's one-time value.
    #[serde(default)]
    pub signin: String,
    /// The provider's issuer.
    #[serde(default)]
    pub issuer: String,
}

/// `POST /console/sign-in/oidc`: off to the provider (by a page that refreshes to it, not
/// a redirect, which the sign-in page's `form-action 'self'` would block).
pub async fn start(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<ProviderForm>) -> Response {
    if !signin_matches(&headers, &form.signin) {
        return page_for(&state, StatusCode::FORBIDDEN, Some("The sign-in form expired; try again.")).await;
    }
    match state.engine.console().start(&form.issuer).await {
        Ok(started) => {
            let mut response = view::continue_to(&started.redirect).into_response();
            response.headers_mut().append(header::SET_COOKIE, set_cookie(STATE_COOKIE, &started.state, 600));
            response
        }
        Err(e) => refused(&state, e).await,
    }
}

/// What the provider sends back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state this console sent.
    pub state: Option<String>,
    /// An error the provider reports instead.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// `GET /console/oidc/callback`.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(back): axum::extract::Query<Callback>,
) -> Response {
    if let Some(error) = back.error {
        let detail = back.error_description.unwrap_or_default();
        let message = format!(
            "The identity provider refused the sign-in: {} {}",
            warrant_core::permission::shown(&error),
            warrant_core::permission::shown(&detail)
        );
        return page_for(&state, StatusCode::UNAUTHORIZED, Some(message.trim())).await;
    }
    let (Some(code), Some(login)) = (back.code, back.state) else {
        return page_for(&state, StatusCode::BAD_REQUEST, Some("The identity provider sent no code or state.")).await;
    };
    if !cookie(&headers, STATE_COOKIE).is_some_and(|c| !c.is_empty() && same_secret(c, &login)) {
        tracing::warn!("a console sign-in came back to a browser that did not start it; refused");
        return page_for(
            &state,
            StatusCode::FORBIDDEN,
            Some("This sign-in was not started in this browser; start again here."),
        )
        .await;
    }
    match state.engine.console().finish(&code, &login).await {
        Ok(principal) => {
            let mut response = signed_in(&state, principal).await;
            response.headers_mut().append(header::SET_COOKIE, set_cookie(STATE_COOKIE, "", 0));
            response
        }
        Err(e) => refused(&state, e).await,
    }
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

/// `POST /console/sign-out`: ends the session on every server.
pub async fn sign_out(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    if let Err(refused) = user.check_csrf(&form.csrf) {
        return refused.into_response();
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.engine.console().sign_out(secret).await {
            tracing::error!(error = %e, "a console session could not be ended");
            return super::Failure::internal(&e).into_response();
        }
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    response
}
