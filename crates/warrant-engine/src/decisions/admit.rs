//! Stage 2, admit: is this warrant still in force for this request, and is everyone it
//! names still who they were? The request's shape (one concrete action, one canonical
//! resource path), revocation and task end (from the in-memory index), every agent of
//! the chain and its owner, the human, the warrant's scope, and a presented approval.
//!
//! The scope is checked here, before the guardrails look at the request: a request the
//! warrant does not cover never teaches an agent's baseline anything; it is a probing
//! deny, which the settle stage answers.

use std::sync::Arc;

use serde_json::Value;
use warrant_core::decision::DecisionCode;
use warrant_core::guard::approval::Approval;
use warrant_core::permission::shown;
use warrant_core::{Agent, Permission, UnixTime};

use super::verify::VerifiedWarrant;
use super::{Decisions, Refusal};
use crate::govern::shadow::{Peek, ShadowCause};
use crate::request::{AuthorizeRequest, MAX_RESOURCE};

/// A request admitted: its warrant in force, its acting agent, and the approval it
/// presents (checked against the request, not yet used).
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The verified warrant.
    pub warrant: Arc<VerifiedWarrant>,
    /// The acting agent (the last of the chain), as registered now.
    pub agent: Arc<Agent>,
    /// The approval the retry presents, when it holds.
    pub approval: Option<Approval>,
}

/// Checks that the request names one concrete action and one concrete resource in its
/// canonical form (see `warrant_core::permission`): a path that is not canonical is
/// refused, never normalised.
pub(super) fn check_shape(req: &AuthorizeRequest) -> Result<(), String> {
    let action_ok = !req.action.contains(':') && Permission::parse(&req.action).is_ok_and(|p| p.is_concrete_action());
    if !action_ok {
        return Err(format!("`{}` is not a concrete action (dot-separated segments, no wildcard)", shown(&req.action)));
    }
    let concrete = || {
        format!(
            "`{}` is not a concrete resource path (non-empty segments separated by `/`, no `*`, at most {MAX_RESOURCE} bytes)",
            shown(&req.resource)
        )
    };
    if req.resource.len() > MAX_RESOURCE || req.resource.contains('*') {
        return Err(concrete());
    }
    match Permission::parse(&format!("x:{}", req.resource)) {
        Ok(_) => {}
        Err(warrant_core::PermissionError::NonCanonicalResource { why, .. }) => {
            return Err(format!("`{}` is not a canonical resource path: {why}", shown(&req.resource)));
        }
        Err(_) => return Err(concrete()),
    }
    for (name, value) in [("resource_attrs", req.resource_attrs.as_deref()), ("context", req.context.as_deref())] {
        if !matches!(value, None | Some(Value::Null | Value::Object(_))) {
            return Err(format!("`{name}` must be a JSON object"));
        }
    }
    Ok(())
}

impl Decisions {
    /// Stage 2: admits `req` made with `warrant`, or refuses it with the reason.
    pub(crate) async fn admit(
        &self,
        req: &AuthorizeRequest,
        warrant: Arc<VerifiedWarrant>,
        now: UnixTime,
    ) -> Result<Admitted, Refusal> {
        let claims = &warrant.claims;
        check_shape(req).map_err(|e| Refusal::new(DecisionCode::InvalidRequest, format!("invalid request: {e}")))?;
        let agent = self.in_force(&warrant, now)?;
        if !warrant.scope.allows(&req.action, &req.resource) {
            return Err(Refusal::new(
                DecisionCode::Scope,
                format!("the warrant's scope `{}` does not cover `{}` on `{}`", claims.scope, req.action, req.resource),
            ));
        }
        let approval = match &req.approval_id {
            None => None,
            Some(id) => Some(
                self.approvals
                    .presented(id, req, claims, now)
                    .await
                    .map_err(|reason| Refusal::new(DecisionCode::Approval, reason))?,
            ),
        };
        Ok(Admitted { warrant, agent, approval })
    }

    /// Whether a verified warrant is in force: not revoked, its task not ended, every
    /// agent of its chain registered and usable with an active owner, its human active.
    /// Answers the acting agent, as registered now.
    pub(crate) fn in_force(&self, warrant: &VerifiedWarrant, now: UnixTime) -> Result<Arc<Agent>, Refusal> {
        let claims = &warrant.claims;
        if let Some(why) = self.revocation.warrant_revoked(&claims.jti) {
            return Err(Refusal::new(DecisionCode::Revoked, format!("warrant `{}` {why}", claims.jti)));
        }
        if self.revocation.task_ended(&claims.task.id) {
            return Err(Refusal::new(DecisionCode::TaskEnded, format!("task `{}` has ended", claims.task.id)));
        }
        let mut acting = None;
        for id in &warrant.chain {
            let Some(agent) = self.directory.agent(id) else {
                let seen = Peek { iss: Some(claims.iss.clone()), client: Some(id.to_string()), kid: None };
                self.governance.shadow().record(ShadowCause::UnregisteredAgent, seen, now);
                return Err(Refusal::new(DecisionCode::Agent, format!("agent `{id}` is not registered")));
            };
            agent.usable_at(now).map_err(|why| Refusal::new(DecisionCode::Agent, format!("agent `{id}` {why}")))?;
            if !self.directory.human(&agent.owner).is_some_and(|h| h.is_active()) {
                return Err(Refusal::new(
                    DecisionCode::Owner,
                    format!("the owner `{}` of agent `{id}` is disabled", agent.owner),
                ));
            }
            acting = Some(agent);
        }
        let Some(agent) = acting else {
            return Err(Refusal::new(DecisionCode::InvalidToken, "the warrant names no agent"));
        };
        if !self.directory.human(claims.human()).is_some_and(|h| h.is_active()) {
            return Err(Refusal::new(DecisionCode::Human, format!("human `{}` is disabled", claims.human())));
        }
        Ok(agent)
    }
}
