//! Plain subjects: a human or a service that an enforcement point asks about with no
//! warrant (an AuthZEN subject that carries neither a warrant nor a reference to one).
//!
//! There is no warrant, so the warrant stages do not run: no token to verify, no
//! revocation, chain or scope to admit, no guardrails (signals, trust, rate limits,
//! budgets, approvals, quarantine) to settle. What runs:
//!
//! 1. resolve: the subject becomes a principal. `user` or `human` is a registered human,
//!    named by its id (`hum_…`), its email (an id with `@`) or its external id (the
//!    identity provider's `sub`; anything else), and must be active; any other type is a
//!    service-like principal of its own, with the enforcement point's `properties`;
//! 2. shape: the same checks on action, resource and caller input as every decision;
//! 3. evaluate: the policies for plain subjects, and only those (see
//!    `warrant_policy::CompiledPolicies::compile`); no policy permitting is a deny, and
//!    an evaluation error is a deny;
//! 4. record and answer: the audit record (naming the subject, the human it resolved to,
//!    the action, resource, policies and enforcement point) is durable before the answer,
//!    as for every decision; a decision that cannot be recorded is a deny.

use std::sync::Arc;

use serde_json::Value;
use warrant_core::audit::details::DecisionSubject;
use warrant_core::decision::{DecisionCode, Outcome};
use warrant_core::{Human, HumanId, UnixTime};
use warrant_policy::{SubjectInput, SubjectPrincipal};

use super::admit::check_shape;
use super::record::draft_with;
use super::Decisions;
use crate::request::{AuthorizeRequest, Decision, SubjectRequest, MAX_RESOURCE};

/// The subject types that name a registered human.
pub const HUMAN_TYPES: [&str; 2] = ["user", "human"];

/// The longest subject type accepted, in bytes.
pub const MAX_SUBJECT_TYPE: usize = 64;

/// The subject, resolved.
enum Resolved {
    Human(Arc<Human>),
    Service,
}

impl Decisions {
    /// Decides one request by a plain subject (a human or a service, no warrant) with
    /// the policies for plain subjects. Never fails: every error is a deny with a reason.
    /// Answers only once the decision's audit record is durable.
    pub async fn authorize_subject(&self, req: &SubjectRequest) -> Decision {
        let now = self.clock.now();
        let plain = AuthorizeRequest {
            token: String::new(),
            recorded: None,
            action: req.action.clone(),
            resource: req.resource.clone(),
            resource_attrs: req.resource_attrs.clone(),
            context: req.context.clone(),
            approval_id: None,
            via: req.via.clone(),
            proof: None,
        };
        let (decision, human) = self.decide_subject(req, &plain, now);
        let subject = DecisionSubject {
            kind: req.subject.kind.clone(),
            id: req.subject.id.clone(),
            human: human.as_ref().map(|h| h.id.clone()),
            roles: human.as_ref().map(|h| h.roles.clone()).unwrap_or_default(),
        };
        let mut draft = draft_with(&plain, &decision, now, Some(subject));
        draft.human = human.as_ref().map(|h| h.id.clone());
        let queued = self.queue(draft, decision, plain.action, plain.resource, now).await;
        self.answer(queued).await
    }

    /// Stages 1 to 3: the decision, and the human it is about (when resolved).
    fn decide_subject(
        &self,
        req: &SubjectRequest,
        plain: &AuthorizeRequest,
        now: UnixTime,
    ) -> (Decision, Option<Arc<Human>>) {
        let resolved = match self.resolve_subject(req) {
            Ok(resolved) => resolved,
            Err((code, reason)) => return (Decision::deny(code, reason, None), None),
        };
        let human = match &resolved {
            Resolved::Human(h) => Some(Arc::clone(h)),
            Resolved::Service => None,
        };
        if let Err(e) = check_shape(plain) {
            return (Decision::deny(DecisionCode::InvalidRequest, format!("invalid request: {e}"), None), human);
        }
        let Some(policies) = self.policy.current() else {
            return (Decision::deny(DecisionCode::Policy, "the policy set is unavailable", None), human);
        };
        let principal = match &resolved {
            Resolved::Human(h) => SubjectPrincipal::Human(h),
            Resolved::Service => SubjectPrincipal::Service {
                kind: &req.subject.kind,
                id: &req.subject.id,
                properties: Some(&Value::Object(req.subject.properties.clone())),
            },
        };
        let input = SubjectInput {
            principal,
            action: &req.action,
            resource: &req.resource,
            resource_attrs: req.resource_attrs.as_deref(),
            telemetry: req.context.as_deref(),
            pep: req.via.as_ref().map(|v| v.pep.as_str()).unwrap_or_default(),
            now,
        };
        let verdict = match policies.compiled.evaluate_subject(&input) {
            Ok(verdict) => verdict,
            Err(e) => {
                return (Decision::deny(DecisionCode::InvalidRequest, format!("invalid request: {e}"), None), human)
            }
        };
        let mut d = Decision::deny(DecisionCode::Policy, String::new(), None);
        d.policy_version = Some(policies.version);
        d.policies = verdict.policies;
        if !verdict.errors.is_empty() {
            d.code = DecisionCode::PolicyError;
            d.reasons = vec![format!("policy evaluation failed: {}", verdict.errors.join("; "))];
        } else if !verdict.allow {
            d.reasons = vec![if d.policies.is_empty() {
                "no policy for plain subjects permits this action".to_owned()
            } else {
                format!("forbidden by policy {}", d.policies.join(", "))
            }];
        } else {
            d.outcome = Outcome::Allow;
            d.code = DecisionCode::Allow;
            d.reasons = vec![format!("allowed by policy {}", d.policies.join(", "))];
        }
        (d, human)
    }

    /// Stage 1: the subject as a principal, or why it is none.
    fn resolve_subject(&self, req: &SubjectRequest) -> Result<Resolved, (DecisionCode, String)> {
        let subject = &req.subject;
        let invalid = |why: String| (DecisionCode::InvalidRequest, format!("invalid request: {why}"));
        let printable = |s: &str, max: usize| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control);
        if !printable(&subject.kind, MAX_SUBJECT_TYPE) {
            return Err(invalid(format!("the subject type must be 1 to {MAX_SUBJECT_TYPE} printable bytes")));
        }
        if !printable(&subject.id, MAX_RESOURCE) {
            return Err(invalid(format!("the subject id must be 1 to {MAX_RESOURCE} printable bytes")));
        }
        if !HUMAN_TYPES.contains(&subject.kind.as_str()) {
            return Ok(Resolved::Service);
        }
        let human = if subject.id.starts_with("hum_") {
            HumanId::parse(&subject.id).ok().and_then(|id| self.directory.human(&id))
        } else if subject.id.contains('@') {
            self.directory.human_by_email(&subject.id)
        } else {
            self.directory.human_by_external_id(&subject.id)
        };
        let Some(human) = human else {
            return Err((DecisionCode::Human, format!("no registered human `{}`", subject.id.escape_debug())));
        };
        if !human.is_active() {
            return Err((DecisionCode::Human, format!("human `{}` is disabled", human.id)));
        }
        Ok(Resolved::Human(human))
    }
}
