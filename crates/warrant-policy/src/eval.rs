//! One decision's input as Cedar sees it, and its evaluation.
//!
//! * principal: `Warrant::Agent::"agt_…"` (name, owner, mode; labels as tags), a member
//!   of `Warrant::Human::"<owner>"`;
//! * action: `Warrant::Action::"crm.read"`, a member of `"crm.*"`, itself of `"*"`;
//! * resource: `Warrant::Resource::"<path>"` with `path` and `attrs` (the caller's
//!   `resource_attrs`);
//! * context: `mode`, `human`, `owner`, `chain` (a set: Cedar has no lists, so
//!   `root_agent` and `chain_depth` carry the order that matters), `task`, `purpose`,
//!   `scope`, `hour` and `weekday` (UTC, Monday = 0), `trust` (the agent's trust score as
//!   a percent, 0-100: Cedar has no floats), `anomaly` (the kinds of the anomaly signals
//!   this request raised, e.g. `"novel_resource"`), and `telemetry` (the caller's own
//!   `context` object, kept apart so it can never shadow what Warrant sets).
//!
//! Guardrail annotations on forbids: a request denied only by `@approval` forbids, that
//! the rest of the set allows, is reported as needing approval; an approved retry is
//! held to the set without them. A request denied by a `@quarantine` forbid is reported
//! so the caller quarantines the agent.

use std::sync::Arc;

use cedar_policy::{Decision, Entities, Entity, EntityId, EntityUid, Request};
use cedar_policy_core::ast::Value as CedarValue;
use serde_json::Value;
use smol_str::SmolStr;
use warrant_core::{Agent, UnixTime, WarrantClaims};

use crate::load::{AgentEntities, CompiledPolicies};
use crate::native::{self, json_object, WarrantContext};
pub use crate::native::{EvalError, MAX_DEPTH};

/// The most agents whose entities are cached before the cache is cleared.
pub const MAX_AGENTS: usize = 65_536;

/// Everything a policy may look at for one decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// The agent acting now, as registered.
    pub agent: &'a Agent,
    /// The verified warrant's claims.
    pub claims: &'a WarrantClaims,
    /// The context attributes derived from `claims`, when kept with the verified
    /// warrant ([`WarrantContext::new`]); `None` builds them for this decision.
    pub warrant: Option<&'a WarrantContext>,
    /// The concrete action.
    pub action: &'a str,
    /// The concrete resource path.
    pub resource: &'a str,
    /// The caller's `resource_attrs` (a JSON object), if any.
    pub resource_attrs: Option<&'a Value>,
    /// The caller's `context` (a JSON object), if any.
    pub telemetry: Option<&'a Value>,
    /// The decision time.
    pub now: UnixTime,
    /// The agent's trust score, as a percent (0-100).
    pub trust: i64,
    /// The kinds of the anomaly signals this request raised.
    pub anomaly: &'a [&'static str],
    /// Whether the request carries a valid approval: `@approval` forbids are skipped.
    pub approved: bool,
    /// The agent's recent activity, when the policy set reads it
    /// ([`CompiledPolicies::uses_history`]).
    pub history: Option<&'a warrant_core::guard::history::HistoryView>,
}

/// The outcome of evaluating the policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether Cedar allowed the request with no evaluation error.
    pub allow: bool,
    /// The policies that determined the outcome (the permits that allowed, or the
    /// forbids that denied).
    pub policies: Vec<String>,
    /// Evaluation errors (a policy that errored is a reason to deny).
    pub errors: Vec<String>,
    /// Set when the deny came only from `@approval` forbids and the rest of the set
    /// allows: who must approve (`human` when any of them names the human).
    pub approval: Option<warrant_core::guard::approval::Approver>,
    /// Whether a `@quarantine` forbid denied it.
    pub quarantine: bool,
}

/// Hour of day (0-23) and weekday (Monday = 0) in UTC.
fn hour_and_weekday(now: UnixTime) -> (i64, i64) {
    let secs = now.secs();
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    (hour, (days + 3).rem_euclid(7))
}

impl CompiledPolicies {
    /// Evaluates the policy set for one decision, over the slice of policies that can
    /// apply to the action.
    pub fn evaluate(&self, input: &DecisionInput<'_>) -> Result<Verdict, EvalError> {
        self.evaluate_over(input, true)
    }

    /// The same evaluation over the whole set, without slicing: for tests that check
    /// slicing changes nothing, and for benchmarks.
    pub fn evaluate_whole(&self, input: &DecisionInput<'_>) -> Result<Verdict, EvalError> {
        self.evaluate_over(input, false)
    }

    /// The agent and its owner as entities, built once per agent state.
    fn agent_entities(&self, agent: &Agent) -> Result<Arc<AgentEntities>, EvalError> {
        if let Some(hit) = self.agents.read().ok().and_then(|m| m.get(&agent.id).cloned()) {
            if hit.agent == *agent {
                return Ok(hit);
            }
        }
        let owner_uid = EntityUid::from_type_name_and_id(self.types.human.clone(), EntityId::new(agent.owner.as_str()));
        let uid = EntityUid::from_type_name_and_id(self.types.agent.clone(), EntityId::new(agent.id.as_str()));
        let principal = native::entity(
            &uid,
            [
                ("name", CedarValue::from(agent.name.as_str())),
                ("owner", CedarValue::from(agent.owner.as_str())),
                ("mode", CedarValue::from(agent.mode.as_str())),
            ],
            [owner_uid.clone()],
            agent.labels.iter().map(|(k, v)| (SmolStr::new(k), CedarValue::from(v.as_str()))),
        );
        let owner = native::leaf_entity(&owner_uid, [], []);
        let built = Arc::new(AgentEntities {
            agent: agent.clone(),
            entities_id: Arc::new(()),
            uid,
            entities: [Entity::from(owner), Entity::from(principal)],
        });
        if let Ok(mut m) = self.agents.write() {
            if m.len() >= MAX_AGENTS {
                m.clear();
            }
            m.insert(agent.id.clone(), Arc::clone(&built));
        }
        Ok(built)
    }

    /// The entities every request of this agent for this action shares.
    /// The agent's `Activity` entity (its recent activity as tags) and the `history`
    /// record of the context.
    fn history(
        &self,
        agent: &Agent,
        h: &warrant_core::guard::history::HistoryView,
    ) -> (cedar_policy_core::ast::Entity, CedarValue) {
        let uid = EntityUid::from_type_name_and_id(self.types.activity.clone(), EntityId::new(agent.id.as_str()));
        let tags = h.tags.iter().map(|(k, v)| (SmolStr::new(k), CedarValue::from(*v)));
        let entity = native::leaf_entity(&uid, [], tags);
        let counts = |c: &warrant_core::guard::history::Counts| {
            native::record([
                ("minute", CedarValue::from(c.minute)),
                ("hour", CedarValue::from(c.hour)),
                ("day", CedarValue::from(c.day)),
            ])
        };
        let record = native::record([
            ("action", counts(&h.action)),
            ("prefix", counts(&h.prefix)),
            ("task", counts(&h.task)),
            ("agent", counts(&h.agent)),
            (
                "recent",
                CedarValue::from(cedar_policy_core::ast::Literal::from(cedar_policy_core::ast::EntityUID::from(uid))),
            ),
        ]);
        (entity, record)
    }

    /// The resource `path` as an entity, with `path` and the caller's `attrs`.
    fn resource(
        &self,
        path: &str,
        attrs: Option<&Value>,
    ) -> Result<(EntityUid, cedar_policy_core::ast::Entity), EvalError> {
        let uid = EntityUid::from_type_name_and_id(self.types.resource.clone(), EntityId::new(path));
        let entity = native::leaf_entity(
            &uid,
            [("path", CedarValue::from(path)), ("attrs", json_object("resource_attrs", attrs)?)],
            [],
        );
        Ok((uid, entity))
    }

    fn base_entities(
        &self,
        agent: &AgentEntities,
        action: &crate::load::ActionSlice,
    ) -> Result<Arc<Entities>, EvalError> {
        let key = (agent.agent.id.clone(), action.uid.id().unescaped().to_owned());
        if let Some(hit) = self.bases.read().ok().and_then(|m| m.get(&key).cloned()) {
            if Arc::ptr_eq(&hit.0, &agent.entities_id) {
                return Ok(hit.1);
            }
        }
        let entities = Arc::new(
            Entities::from_entities(agent.entities.iter().cloned().chain(action.entities.iter().cloned()), None)
                .map_err(|e| EvalError::Cedar(e.to_string()))?,
        );
        if let Ok(mut m) = self.bases.write() {
            if m.len() >= MAX_AGENTS {
                m.clear();
            }
            m.insert(key, (Arc::clone(&agent.entities_id), Arc::clone(&entities)));
        }
        Ok(entities)
    }

    fn evaluate_over(&self, input: &DecisionInput<'_>, sliced: bool) -> Result<Verdict, EvalError> {
        let claims = input.claims;
        let cedar = |e: &dyn std::fmt::Display| EvalError::Cedar(e.to_string());
        let agent = self.agent_entities(input.agent)?;
        let action = self.slice(input.action)?;
        let (resource, resource_entity) = self.resource(input.resource, input.resource_attrs)?;
        let mut extra = vec![resource_entity];
        let base = self.base_entities(&agent, &action)?;
        let (hour, weekday) = hour_and_weekday(input.now);
        let mut request_attrs = vec![
            ("hour", CedarValue::from(hour)),
            ("weekday", CedarValue::from(weekday)),
            ("trust", CedarValue::from(input.trust)),
            ("anomaly", native::strings(input.anomaly.iter().copied())),
            ("telemetry", json_object("context", input.telemetry)?),
        ];
        if let Some(history) = input.history {
            let (entity, record) = self.history(input.agent, history);
            extra.push(entity);
            request_attrs.push(("history", record));
        }
        let entities = native::with_entities(&base, extra)?;
        let built;
        let warrant = match input.warrant {
            Some(warrant) => warrant,
            None => {
                built = WarrantContext::new(claims);
                &built
            }
        };
        let context = warrant.with(request_attrs);
        let request =
            Request::new(agent.uid.clone(), action.uid.clone(), resource, context, None).map_err(|e| cedar(&e))?;
        let set = match (&action.relaxed, input.approved) {
            (Some(relaxed), true) => relaxed,
            _ if sliced => &action.set,
            _ => &self.set,
        };
        let response = self.authorizer.is_authorized(&request, set, &entities);
        let errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
        let policies: Vec<String> = response.diagnostics().reason().map(policy_name).collect();
        let allow = response.decision() == Decision::Allow && errors.is_empty();
        let mut verdict = Verdict { allow, policies, errors, approval: None, quarantine: false };
        if allow || !verdict.errors.is_empty() || verdict.policies.is_empty() {
            return Ok(verdict);
        }
        let marks: Vec<_> = verdict.policies.iter().map(|id| self.marks(id)).collect();
        verdict.quarantine = marks.iter().any(|m| m.quarantine);
        let all_approval = marks.iter().all(|m| m.approval.is_some());
        if let (Some(relaxed), true, false) = (&action.relaxed, all_approval, input.approved) {
            // Would the rest of the set allow it? Then it needs approval, not a deny.
            let without = self.authorizer.is_authorized(&request, relaxed, &entities);
            if without.decision() == Decision::Allow && without.diagnostics().errors().next().is_none() {
                use warrant_core::guard::approval::Approver;
                let human = marks.iter().any(|m| m.approval == Some(Approver::Human));
                verdict.approval = Some(if human { Approver::Human } else { Approver::Owner });
            }
        }
        Ok(verdict)
    }
}

/// Who a plain-subject decision is about: a registered human, or another subject (a
/// service) as the enforcement point states it.
#[derive(Debug, Clone, Copy)]
pub enum SubjectPrincipal<'a> {
    /// `Warrant::Human::"hum_…"` with `name`, `email` and `roles` from the registry.
    Human(&'a warrant_core::Human),
    /// `Warrant::Service::"<id>"` with `kind` (the AuthZEN subject type) and
    /// `properties` (the enforcement point's statement, a JSON object).
    Service {
        /// The AuthZEN subject type, e.g. `service`.
        kind: &'a str,
        /// The subject's id.
        id: &'a str,
        /// What the enforcement point states about it.
        properties: Option<&'a Value>,
    },
}

/// Everything a policy for plain subjects may look at for one decision.
#[derive(Debug, Clone, Copy)]
pub struct SubjectInput<'a> {
    /// The principal.
    pub principal: SubjectPrincipal<'a>,
    /// The concrete action.
    pub action: &'a str,
    /// The concrete resource path.
    pub resource: &'a str,
    /// The caller's resource attributes (a JSON object), if any.
    pub resource_attrs: Option<&'a Value>,
    /// The caller's `context` (a JSON object), if any.
    pub telemetry: Option<&'a Value>,
    /// The enforcement point's name (`""` when it has none).
    pub pep: &'a str,
    /// The decision time.
    pub now: UnixTime,
}

impl CompiledPolicies {
    /// Evaluates the policies for plain subjects (and only those: the agent policies,
    /// `permit-within-scope` among them, never decide about a human or a service). With
    /// no policy for plain subjects, every such request is denied. Any evaluation error is
    /// a deny.
    pub fn evaluate_subject(&self, input: &SubjectInput<'_>) -> Result<Verdict, EvalError> {
        let cedar = |e: &dyn std::fmt::Display| EvalError::Cedar(e.to_string());
        let (principal_uid, principal) = match input.principal {
            SubjectPrincipal::Human(human) => {
                let uid = EntityUid::from_type_name_and_id(self.types.human.clone(), EntityId::new(human.id.as_str()));
                let entity = native::leaf_entity(
                    &uid,
                    [
                        ("name", CedarValue::from(human.name.as_str())),
                        ("email", CedarValue::from(human.email.as_str())),
                        ("roles", native::strings(human.roles.iter().map(String::as_str))),
                    ],
                    [],
                );
                (uid, entity)
            }
            SubjectPrincipal::Service { kind, id, properties } => {
                let uid = EntityUid::from_type_name_and_id(self.types.service.clone(), EntityId::new(id));
                let entity = native::leaf_entity(
                    &uid,
                    [("kind", CedarValue::from(kind)), ("properties", json_object("subject.properties", properties)?)],
                    [],
                );
                (uid, entity)
            }
        };
        let action = self.slice(input.action)?;
        let (resource, resource_entity) = self.resource(input.resource, input.resource_attrs)?;
        let entities = Entities::from_entities(
            [Entity::from(principal), Entity::from(resource_entity)].into_iter().chain(action.entities.iter().cloned()),
            None,
        )
        .map_err(|e| cedar(&e))?;
        let (hour, weekday) = hour_and_weekday(input.now);
        let context = native::context([
            ("hour", CedarValue::from(hour)),
            ("weekday", CedarValue::from(weekday)),
            ("pep", CedarValue::from(input.pep)),
            ("telemetry", json_object("context", input.telemetry)?),
        ]);
        let request =
            Request::new(principal_uid, action.uid.clone(), resource, context, None).map_err(|e| cedar(&e))?;
        let response = self.authorizer.is_authorized(&request, &self.subject_set, &entities);
        let errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
        let policies: Vec<String> = response.diagnostics().reason().map(policy_name).collect();
        let allow = response.decision() == Decision::Allow && errors.is_empty();
        Ok(Verdict { allow, policies, errors, approval: None, quarantine: false })
    }
}

/// A policy's id as its `@id` annotation wrote it. (`PolicyId`'s `Display` escapes quotes
/// and backslashes, so it neither names the policy as written nor finds its guardrail
/// marks; it also formats where a copy does.)
fn policy_name(id: &cedar_policy::PolicyId) -> String {
    AsRef::<str>::as_ref(id).to_owned()
}
