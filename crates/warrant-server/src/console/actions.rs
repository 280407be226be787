//! The console's forms that change something. Each checks the session's CSRF token and
//! the user's role, does what the HTTP API would do under the user's name (so the audit
//! record says who), and sends the browser back to a page that shows the result.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use warrant_core::guard::approval::Decider;
use warrant_core::{Capability, PublicJwk, RevocationKind};
use warrant_engine::policy::{PolicyLoadError, Reloaded};
use warrant_engine::registry::AgentTransition;

use super::pages::{doomed, policies_page, PolicyDiff};
use super::view::{csrf, page};
use super::{Failure, User};
use crate::extract::Path;
use crate::state::AppState;

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct Plain {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

/// The agent forms: suspend, resume, or a new key.
#[derive(Debug, Deserialize)]
pub struct AgentForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// For `key`: the new public key as a JWK.
    #[serde(default)]
    pub public_key: String,
}

/// `POST /console/agents/{id}/{change}`: `suspend`, `resume` or `key`.
pub async fn agent(
    State(state): State<AppState>,
    user: User,
    Path((id, change)): Path<(String, String)>,
    Form(form): Form<AgentForm>,
) -> Result<Response, Failure> {
    user.may_change(&form.csrf, Capability::Operate)?;
    let by = Some(user.principal());
    match change.as_str() {
        "suspend" => state.engine.registry().transition_agent(&id, AgentTransition::Suspend, by).await?,
        "resume" => state.engine.registry().transition_agent(&id, AgentTransition::Resume, by).await?,
        "key" => {
            let key: PublicJwk = serde_json::from_str(form.public_key.trim()).map_err(|e| {
                Failure::new(StatusCode::BAD_REQUEST, format!("The key is not an Ed25519 public JWK: {e}"))
            })?;
            state.engine.governance().rotate_agent_key(&id, key, by).await?
        }
        _ => return Err(Failure::not_found("no such action")),
    };
    Ok(Redirect::to(&format!("/console/agents/{id}")).into_response())
}

/// The approve and reject form.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// The approver's note.
    #[serde(default)]
    pub reason: String,
}

/// Who decides an approval for `user`: a human decides their own; an approver or admin
/// role (or the admin token) any.
fn decider(user: &User) -> Result<Decider, Failure> {
    Decider::of(user.principal()).ok_or_else(|| user.refusal(Capability::Decide))
}

/// `POST /console/approvals/{id}/{verdict}`: `approve` or `reject`.
pub async fn decide(
    State(state): State<AppState>,
    user: User,
    Path((id, verdict)): Path<(String, String)>,
    Form(form): Form<DecideForm>,
) -> Result<Response, Failure> {
    user.check_csrf(&form.csrf)?;
    let approve = match verdict.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(Failure::not_found("no such verdict")),
    };
    let by = decider(&user)?;
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    state.engine.approvals().decide(&id, approve, &by, reason).await?;
    Ok(Redirect::to(&format!("/console/approvals/{id}")).into_response())
}

/// The finding forms.
#[derive(Debug, Deserialize)]
pub struct FindingForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// For `accept`: why.
    #[serde(default)]
    pub justification: String,
    /// For `accept`: for how many days (1 to 365).
    #[serde(default)]
    pub days: String,
}

/// `POST /console/findings/{id}/{what}`: `apply` the recommendation or `accept` the risk.
pub async fn finding(
    State(state): State<AppState>,
    user: User,
    Path((id, what)): Path<(String, String)>,
    Form(form): Form<FindingForm>,
) -> Result<Response, Failure> {
    user.may_change(&form.csrf, Capability::Operate)?;
    let by = user.principal().recorded_as();
    let governance = state.engine.governance();
    let subject = match what.as_str() {
        "apply" => governance.apply_recommendation(&id, &by).await?.1.subject,
        "accept" => {
            let days: i64 =
                form.days.trim().parse().ok().filter(|d| (1..=365).contains(d)).ok_or_else(|| {
                    Failure::new(StatusCode::BAD_REQUEST, "Days must be a whole number from 1 to 365.")
                })?;
            let until = state.engine.now().plus(days * 86_400);
            governance.accept_finding(&id, &by, &form.justification, until).await?.subject
        }
        _ => return Err(Failure::not_found("no such action")),
    };
    let back =
        if subject.starts_with("agt_") { format!("/console/agents/{subject}") } else { "/console/findings".into() };
    Ok(Redirect::to(&back).into_response())
}

/// The kill switch form.
#[derive(Debug, Deserialize)]
pub struct KillForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// `agent`, `task`, `human` or `warrant`.
    #[serde(default)]
    pub kind: String,
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

impl KillForm {
    fn kind(&self) -> Result<RevocationKind, Failure> {
        RevocationKind::parse(&self.kind).ok_or_else(|| {
            Failure::new(StatusCode::BAD_REQUEST, format!("`{}` is not agent, task, human or warrant", self.kind))
        })
    }
}

/// `POST /console/kill/confirm`: names how many warrants will die.
pub async fn kill_confirm(
    State(state): State<AppState>,
    user: User,
    Form(form): Form<KillForm>,
) -> Result<Html<String>, Failure> {
    user.may_change(&form.csrf, Capability::Operate)?;
    let kind = form.kind()?;
    let id = form.id.trim();
    let live = state.engine.revocation().live_under(kind, id).await?;
    let now = state.engine.now();
    let body = html! {
        p.warning role="alert" #kill-count {
            "Revoking " (kind.as_str()) " " code { (id) } " ends " strong { (live.len()) } " live warrant"
            @if live.len() != 1 { "s" } "."
            @if kind == RevocationKind::Agent { " The agent is also suspended." }
        }
        (doomed(now, &live))
        form method="post" action="/console/kill/revoke" {
            (csrf(&user))
            input type="hidden" name="kind" value=(kind.as_str());
            input type="hidden" name="id" value=(id);
            input type="hidden" name="reason" value=(form.reason);
            button.danger type="submit" { "Revoke " (live.len()) " warrants" }
            " " a href="/console/kill" { "Cancel" }
        }
    };
    Ok(page("Confirm the kill switch", Some(&user), "/console/kill", body))
}

/// `POST /console/kill/revoke`: revokes, then shows that nothing under it is live.
pub async fn kill(
    State(state): State<AppState>,
    user: User,
    Form(form): Form<KillForm>,
) -> Result<Html<String>, Failure> {
    user.may_change(&form.csrf, Capability::Operate)?;
    let kind = form.kind()?;
    let id = form.id.trim();
    let revoked = state.engine.revocation().revoke_by(kind, id, &form.reason, Some(user.principal())).await?;
    state.metrics.revoked(kind.as_str(), revoked.revoked_warrants);
    let still = state.engine.revocation().live_under(kind, id).await?.len();
    let body = html! {
        p.ok role="status" #killed {
            "Revoked: " strong #killed-count { (revoked.revoked_warrants) } " warrants ended (revocation " code { (revoked.id) } "). "
            "Live now under " (kind.as_str()) " " code { (id) } ": " strong #still-live { (still) } "."
        }
        p { a href="/console/kill" { "Back to the kill switch" } }
    };
    Ok(page("Revoked", Some(&user), "/console/kill", body))
}

/// `POST /console/policies/reload`: re-reads the policy directory; a refused set shows
/// the validator's message.
pub async fn reload(
    State(state): State<AppState>,
    user: User,
    Form(form): Form<Plain>,
) -> Result<Html<String>, Failure> {
    user.may_change(&form.csrf, Capability::Administer)?;
    let outcome = match state.engine.policy().reload().await {
        Ok(Reloaded::Unchanged(v)) => Ok(format!("The files hold version {v}, already in force.")),
        Ok(Reloaded::Activated(v)) => Ok(format!("Version {v} is in force.")),
        Err(PolicyLoadError::Policy(e)) => Err(e.to_string()),
        Err(e) => return Err(Failure::internal(&e)),
    };
    policies_page(&state, &user, PolicyDiff::default(), Some(outcome)).await
}
