#![expect(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, missing_docs, reason = "benchmark code")]
//! The baselines Warrant's decision is measured against, over the same generated
//! policies and the same [`Probe`]s:
//!
//! * [`BareCedar`]: `cedar_policy::Authorizer::is_authorized` over the WHOLE policy set,
//!   with the request and entities built once (the same mapping as
//!   `warrant_policy::eval`, rebuilt here because the compiled set's internals are not
//!   public);
//! * [`RegoInterpreter`]: regorus's interpreter (`set_input` + `eval_rule`);
//! * [`RegoVm`]: regorus's bytecode VM (RVM), the program compiled once.
//!
//! [`Subject`] is the agent and warrant a probe is asked under, so that
//! `CompiledPolicies::evaluate` can be asked the same thing.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression,
};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use serde_json::{json, Value};
use warrant_core::{
    Actor, Agent, AgentId, AgentStatus, HumanId, Mode, Scope, TaskClaim, TaskId, UnixTime, WarrantClaims, WarrantId,
};
use warrant_policy::schema::action_groups;
use warrant_policy::{CompiledPolicies, DecisionInput};

use crate::policies::{cedar_text, rego_text, Probe, REGO_ENTRY};
use crate::ISSUER;

/// The scope of the benchmark's warrants: a realistic mix of actions and resources.
pub const SCOPE: &str = "svc2.* svc3.*:accounts/** svc4.* svc5.* svc6.* svc7.* svc8.* svc9.* \
                         crm.read:customers/* billing.*:invoices/** docs.read:wiki/** payments.refund:orders/*/lines/*";

/// The agent acting and the claims of its warrant, for a chain of `depth` agents.
#[derive(Debug, Clone)]
pub struct Subject {
    pub agent: Agent,
    pub claims: WarrantClaims,
}

/// A warrant subject with a chain of `depth` agents (the last one acting), in `mode`.
pub fn subject(depth: usize, mode: Mode) -> Subject {
    let owner = HumanId::from_random([7; 12]);
    let chain: Vec<AgentId> =
        (0..depth.max(1)).map(|i| AgentId::from_random([u8::try_from(i).unwrap() + 1; 12])).collect();
    let acting = chain.last().unwrap().clone();
    let agent = Agent {
        id: acting.clone(),
        name: "ledger-bot".to_owned(),
        owner: owner.clone(),
        mode,
        max_scope: Scope::parse(SCOPE).unwrap(),
        public_key: Some(warrant_token::KeyPair::from_seed(&[9; 32]).public_jwk()),
        spiffe_id: None,
        status: AgentStatus::Active,
        expires_at: None,
        labels: BTreeMap::from([("team".to_owned(), "finance".to_owned()), ("env".to_owned(), "prod".to_owned())]),
        created_at: UnixTime(crate::T0.secs() - 86_400),
    };
    let claims = WarrantClaims {
        iss: ISSUER.to_owned(),
        sub: owner.to_string(),
        aud: ISSUER.to_owned(),
        exp: UnixTime(crate::T0.secs() + 900),
        iat: crate::T0,
        nbf: crate::T0,
        jti: WarrantId::from_random([3; 12]),
        client_id: acting,
        scope: Scope::parse(SCOPE).unwrap().to_string(),
        act: Actor::from_chain(&chain).unwrap(),
        task: TaskClaim {
            id: TaskId::from_random([4; 12]),
            purpose: "reconcile the October ledger".to_owned(),
            human: owner.clone(),
        },
        mode,
        owner,
        parent: None,
        cnf: None,
        budget: Default::default(),
    };
    Subject { agent, claims }
}

impl Subject {
    /// The subject a probe is asked under.
    pub fn for_probe(probe: &Probe) -> Self {
        subject(probe.depth, probe.mode)
    }

    /// The input Warrant's `CompiledPolicies::evaluate` takes.
    pub fn input<'a>(&'a self, probe: &'a Probe) -> DecisionInput<'a> {
        DecisionInput {
            agent: &self.agent,
            claims: &self.claims,
            warrant: None,
            action: &probe.action,
            resource: &probe.resource,
            resource_attrs: Some(&probe.resource_attrs),
            telemetry: Some(&probe.telemetry),
            now: probe.at,
            trust: 100,
            anomaly: &[],
            approved: false,
            history: None,
        }
    }
}

/// Hour of day (0-23) and weekday (Monday = 0) in UTC, as Warrant computes them.
pub fn hour_and_weekday(now: UnixTime) -> (i64, i64) {
    let secs = now.secs();
    (secs.rem_euclid(86_400) / 3600, (secs.div_euclid(86_400) + 3).rem_euclid(7))
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(entity_type_name(kind), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn json_expr(value: &Value) -> Option<RestrictedExpression> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(n.as_i64().unwrap()),
        Value::String(s) => string(s),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(json_expr)),
        Value::Object(map) => {
            RestrictedExpression::new_record(map.iter().filter_map(|(k, v)| Some((k.clone(), json_expr(v)?)))).unwrap()
        }
    })
}

/// The Cedar entities for a probe: the same mapping as `warrant_policy::eval` (principal
/// with attributes and tags, member of its owner; the action in its wildcard groups; the
/// resource with `path` and `attrs`).
pub fn cedar_entities(subject: &Subject, probe: &Probe) -> Entities {
    let agent = &subject.agent;
    let owner = uid("Human", agent.owner.as_str());
    let principal = uid("Agent", agent.id.as_str());
    let resource = uid("Resource", &probe.resource);
    let mut entities = vec![Entity::new_no_attrs(owner.clone(), Default::default())];
    let tags: BTreeMap<String, RestrictedExpression> =
        agent.labels.iter().map(|(k, v)| (k.clone(), string(v))).collect();
    entities.push(
        Entity::new_with_tags(
            principal,
            [
                ("name".to_owned(), string(&agent.name)),
                ("owner".to_owned(), string(agent.owner.as_str())),
                ("mode".to_owned(), string(agent.mode.as_str())),
            ],
            [owner],
            tags,
        )
        .unwrap(),
    );
    let mut member = uid("Action", &probe.action);
    for group in action_groups(&probe.action) {
        let group = uid("Action", &group);
        entities.push(Entity::new_no_attrs(member, [group.clone()].into_iter().collect()));
        member = group;
    }
    entities.push(Entity::new_no_attrs(member, Default::default()));
    let attrs = json_expr(&probe.resource_attrs).unwrap();
    entities.push(
        Entity::new(
            resource,
            [("path".to_owned(), string(&probe.resource)), ("attrs".to_owned(), attrs)].into_iter().collect(),
            Default::default(),
        )
        .unwrap(),
    );
    Entities::from_entities(entities, None).unwrap()
}

/// The Cedar context for a probe, as `warrant_policy::eval` builds it.
pub fn cedar_context(subject: &Subject, probe: &Probe) -> Context {
    let claims = &subject.claims;
    let chain = claims.chain();
    let (hour, weekday) = hour_and_weekday(probe.at);
    Context::from_pairs([
        ("mode".to_owned(), string(claims.mode.as_str())),
        ("human".to_owned(), string(claims.human().as_str())),
        ("owner".to_owned(), string(claims.owner.as_str())),
        ("chain".to_owned(), RestrictedExpression::new_set(chain.iter().map(|a| string(a.as_str())))),
        ("root_agent".to_owned(), string(chain[0].as_str())),
        ("chain_depth".to_owned(), RestrictedExpression::new_long(i64::try_from(chain.len()).unwrap())),
        ("task".to_owned(), string(claims.task.id.as_str())),
        ("purpose".to_owned(), string(&claims.task.purpose)),
        ("scope".to_owned(), RestrictedExpression::new_set(claims.scope.split_whitespace().map(string))),
        ("hour".to_owned(), RestrictedExpression::new_long(hour)),
        ("weekday".to_owned(), RestrictedExpression::new_long(weekday)),
        ("trust".to_owned(), RestrictedExpression::new_long(100)),
        ("anomaly".to_owned(), RestrictedExpression::new_set([])),
        ("telemetry".to_owned(), json_expr(&probe.telemetry).unwrap()),
    ])
    .unwrap()
}

/// The Cedar request and entities for a probe (what `warrant_policy::eval` builds per
/// decision).
pub fn cedar_request(subject: &Subject, probe: &Probe) -> (Request, Entities) {
    let entities = cedar_entities(subject, probe);
    let context = cedar_context(subject, probe);
    let principal = uid("Agent", subject.agent.id.as_str());
    let request =
        Request::new(principal, uid("Action", &probe.action), uid("Resource", &probe.resource), context, None).unwrap();
    (request, entities)
}

/// A Warrant entity type name, parsed (as `warrant_policy::eval` does for every uid).
pub fn entity_type_name(kind: &str) -> EntityTypeName {
    EntityTypeName::from_str(&format!("Warrant::{kind}")).unwrap()
}

/// The Cedar text of `n` policies as a bare `PolicySet`, each policy named by its `@id`.
pub fn cedar_policy_set(n: usize) -> PolicySet {
    let parsed = PolicySet::from_str(&cedar_text(n)).unwrap();
    let mut set = PolicySet::new();
    for policy in parsed.policies() {
        let id = policy.annotation("id").unwrap().to_owned();
        set.add(policy.new_id(PolicyId::new(id))).unwrap();
    }
    set
}

/// A bare Cedar evaluation: the whole set, the request and entities prebuilt.
#[derive(Debug)]
pub struct BareCedar {
    pub authorizer: Authorizer,
    pub set: PolicySet,
    pub request: Request,
    pub entities: Entities,
}

impl BareCedar {
    pub fn new(n: usize, probe: &Probe) -> Self {
        Self::with_set(cedar_policy_set(n), probe)
    }

    /// Over an already parsed set.
    pub fn with_set(set: PolicySet, probe: &Probe) -> Self {
        let (request, entities) = cedar_request(&Subject::for_probe(probe), probe);
        BareCedar { authorizer: Authorizer::new(), set, request, entities }
    }

    /// One evaluation; whether it allows.
    pub fn is_authorized(&self) -> bool {
        let response = self.authorizer.is_authorized(&self.request, &self.set, &self.entities);
        response.decision() == Decision::Allow && response.diagnostics().errors().next().is_none()
    }
}

/// Warrant's own policy evaluation of a probe (entities built, the set sliced, Cedar).
pub fn warrant_evaluate(compiled: &CompiledPolicies, probe: &Probe) -> bool {
    let subject = Subject::for_probe(probe);
    let verdict = compiled.evaluate(&subject.input(probe)).unwrap();
    assert!(verdict.errors.is_empty(), "{}: {:?}", probe.name, verdict.errors);
    verdict.allow
}

/// The Rego input for a probe: everything the Cedar context carries, flat, with the
/// caller's telemetry under `context`.
pub fn rego_input_json(subject: &Subject, probe: &Probe) -> Value {
    let (agent, claims) = (&subject.agent, &subject.claims);
    let chain: Vec<String> = claims.chain().iter().map(|a| a.as_str().to_owned()).collect();
    let (hour, weekday) = hour_and_weekday(probe.at);
    json!({
        "principal": {
            "id": agent.id.as_str(), "name": agent.name, "owner": agent.owner.as_str(),
            "mode": agent.mode.as_str(), "labels": agent.labels,
        },
        "action": probe.action,
        "resource": { "path": probe.resource, "attrs": probe.resource_attrs },
        "mode": claims.mode.as_str(),
        "human": claims.human().as_str(),
        "owner": claims.owner.as_str(),
        "chain": chain,
        "root_agent": chain[0],
        "chain_depth": chain.len(),
        "task": claims.task.id.as_str(),
        "purpose": claims.task.purpose,
        "scope": claims.scope.split_whitespace().collect::<Vec<_>>(),
        "hour": hour,
        "weekday": weekday,
        "trust": 100,
        "anomaly": [],
        "context": probe.telemetry,
    })
}

/// The Rego input for a probe, as a regorus value.
pub fn rego_input(probe: &Probe) -> regorus::Value {
    regorus::Value::from(rego_input_json(&Subject::for_probe(probe), probe))
}

fn as_allow(value: &regorus::Value) -> bool {
    match value {
        regorus::Value::Bool(b) => *b,
        other => panic!("`{REGO_ENTRY}` evaluated to {other:?}, not a boolean"),
    }
}

/// regorus's interpreter with the generated Rego loaded.
pub struct RegoInterpreter {
    pub engine: regorus::Engine,
}

impl std::fmt::Debug for RegoInterpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoInterpreter").finish_non_exhaustive()
    }
}

impl RegoInterpreter {
    pub fn new(n: usize) -> Self {
        let mut engine = regorus::Engine::new();
        engine.add_policy(format!("bench-{n}.rego"), rego_text(n)).unwrap();
        RegoInterpreter { engine }
    }

    /// `set_input` + `eval_rule("data.warrant.allow")`.
    pub fn eval(&mut self, input: &regorus::Value) -> bool {
        self.engine.set_input(input.clone());
        as_allow(&self.engine.eval_rule(REGO_ENTRY.to_owned()).unwrap())
    }
}

/// regorus's compiled bytecode VM with the generated Rego compiled to a program once.
pub struct RegoVm {
    pub program: Arc<Program>,
    pub vm: RegoVM,
}

impl std::fmt::Debug for RegoVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoVm").finish_non_exhaustive()
    }
}

impl RegoVm {
    /// Compiles the Rego of `n` policies: interpreter's `compile_with_entrypoint`, then
    /// `Compiler::compile_from_policy` to an RVM program, loaded into a VM.
    pub fn new(n: usize) -> Self {
        let mut engine = regorus::Engine::new();
        engine.add_policy(format!("bench-{n}.rego"), rego_text(n)).unwrap();
        let entry: regorus::Rc<str> = REGO_ENTRY.into();
        let compiled = engine.compile_with_entrypoint(&entry).unwrap();
        let program = Compiler::compile_from_policy(&compiled, &[REGO_ENTRY]).unwrap();
        let mut vm = RegoVM::new();
        vm.load_program(Arc::clone(&program));
        RegoVm { program, vm }
    }

    /// `set_input` + `execute` on the loaded program.
    pub fn eval(&mut self, input: &regorus::Value) -> bool {
        self.vm.set_input(input.clone());
        as_allow(&self.vm.execute().unwrap())
    }
}
