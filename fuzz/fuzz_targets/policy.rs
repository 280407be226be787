//! Policy loading: arbitrary Cedar text through `CompiledPolicies::compile`, the function
//! `load::read_dir`'s files go to.
//!
//! The input is one or more policy files, separated by lines `//@@file`; text after a
//! line `//@@schema` replaces the shipped schema (as `warrant.cedarschema` in the policy
//! directory does). Asserts: loading gives `Ok` or an error with a message, never a
//! panic; a set that loads evaluates fixed requests (the actions it names and a few
//! fixed ones, with and without an approval) without panicking, and the sliced
//! evaluation the decision path uses gives the same verdict as the whole set.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use warrant_core::{
    Actor, Agent, AgentId, AgentStatus, HumanId, Mode, Permission, PublicJwk, Scope, TaskClaim, TaskId, UnixTime,
    WarrantClaims, WarrantId,
};
use warrant_policy::schema::BASE_SCHEMA;
use warrant_policy::{CompiledPolicies, DecisionInput, PolicyFile};

/// Monday 2026-11-23 10:00 UTC.
const MONDAY_10: UnixTime = UnixTime(1_795_428_000);

struct Request {
    agent: Agent,
    claims: WarrantClaims,
    attrs: Value,
    telemetry: Value,
}

fn request() -> &'static Request {
    static REQUEST: OnceLock<Request> = OnceLock::new();
    REQUEST.get_or_init(|| {
        let owner = HumanId::from_random([2; 12]);
        let agent = Agent {
            id: AgentId::from_random([1; 12]),
            name: "payments-bot".into(),
            owner: owner.clone(),
            mode: Mode::Delegated,
            max_scope: Scope::parse("*").unwrap(),
            public_key: Some(PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: "x".into(), kid: None }),
            spiffe_id: None,
            status: AgentStatus::Active,
            expires_at: None,
            labels: [("team".to_owned(), "finance".to_owned())].into_iter().collect(),
            created_at: UnixTime(0),
        };
        let root = AgentId::from_random([10; 12]);
        let human = HumanId::from_random([3; 12]);
        let claims = WarrantClaims {
            iss: "http://issuer".into(),
            sub: human.to_string(),
            aud: "http://issuer".into(),
            exp: UnixTime(2_000_000_000),
            iat: UnixTime(1_000),
            nbf: UnixTime(1_000),
            jti: WarrantId::from_random([4; 12]),
            client_id: agent.id.clone(),
            scope: "payments.* crm.read".into(),
            act: Actor::from_chain(&[root, agent.id.clone()]).unwrap(),
            task: TaskClaim { id: TaskId::from_random([5; 12]), purpose: "pay invoice 7".into(), human: human.clone() },
            mode: Mode::Delegated,
            owner,
            parent: None,
            cnf: None,
            budget: Default::default(),
        };
        let attrs = json!({"owner": human.as_str(), "amount": 1500, "tags": ["a", "b"], "nested": {"x": true}});
        let telemetry = json!({"estimated_cost": 500, "rows": 10, "amount": 1500, "region": "eu"});
        Request { agent, claims, attrs, telemetry }
    })
}

/// The concrete actions the text names (`Action::"…"`), at most six.
fn named_actions(text: &str) -> Vec<String> {
    text.split("Action::\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|a| !a.contains(':') && Permission::parse(a).is_ok_and(|p| p.is_concrete_action()))
        .map(str::to_owned)
        .take(6)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (policies, schema) = match text.split_once("//@@schema\n") {
        Some((p, s)) => (p, s),
        None => (text, BASE_SCHEMA),
    };
    let files: Vec<PolicyFile> = policies
        .split("//@@file\n")
        .enumerate()
        .map(|(i, t)| PolicyFile { name: format!("f{i}.cedar"), text: t.to_owned() })
        .collect();
    let compiled = match CompiledPolicies::compile(files, schema) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let _ = (compiled.hash(), compiled.policy_ids(), compiled.source_text(), compiled.has_marks());
    for id in compiled.policy_ids() {
        let _ = compiled.marks(id);
    }

    let r = request();
    let mut actions = named_actions(policies);
    actions.extend(["payments.transfer", "crm.read", "other.thing"].map(str::to_owned));
    for action in &actions {
        let _ = compiled.slice_len(action);
        for (approved, depth_now) in [(false, MONDAY_10), (true, MONDAY_10), (false, MONDAY_10.plus(10 * 3600))] {
            let input = DecisionInput {
                agent: &r.agent,
                claims: &r.claims,
                warrant: None,
                action,
                resource: "accounts/1",
                resource_attrs: Some(&r.attrs),
                telemetry: Some(&r.telemetry),
                now: depth_now,
                trust: 80,
                anomaly: &["novel_action"],
                approved,
                history: None,
            };
            let sliced = compiled.evaluate(&input);
            let whole = compiled.evaluate_whole(&input);
            match (sliced, whole) {
                (Ok(mut s), Ok(mut w)) => {
                    s.policies.sort();
                    w.policies.sort();
                    s.errors.sort();
                    w.errors.sort();
                    assert_eq!(s, w, "sliced and whole-set verdicts differ for {action} (approved {approved})");
                }
                (Err(s), Err(w)) => assert_eq!(s, w),
                (s, w) => panic!("sliced {s:?} but whole {w:?} for {action}"),
            }
        }
    }
});
