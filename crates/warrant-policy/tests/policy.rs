//! The shipped schema, default policies and documented examples, and how a decision's
//! input reaches Cedar.
#![expect(clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeMap;

use serde_json::json;
use warrant_core::{
    Actor, Agent, AgentId, AgentStatus, HumanId, Mode, PublicJwk, Scope, TaskClaim, TaskId, UnixTime, WarrantClaims,
    WarrantId,
};
use warrant_policy::schema::BASE_SCHEMA;
use warrant_policy::{CompiledPolicies, DecisionInput, PolicyError, PolicyFile, DEFAULT_POLICIES};

fn files(items: &[(&str, &str)]) -> Vec<PolicyFile> {
    items.iter().map(|(n, t)| PolicyFile { name: (*n).to_owned(), text: (*t).to_owned() }).collect()
}

fn compile(items: &[(&str, &str)]) -> Result<CompiledPolicies, PolicyError> {
    CompiledPolicies::compile(files(items), BASE_SCHEMA)
}

fn agent(labels: &[(&str, &str)]) -> Agent {
    Agent {
        id: AgentId::from_random([1; 12]),
        name: "payments-bot".into(),
        owner: HumanId::from_random([2; 12]),
        mode: Mode::Delegated,
        max_scope: Scope::parse("*").unwrap(),
        public_key: Some(PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: "x".into(), kid: None }),
        spiffe_id: None,
        status: AgentStatus::Active,
        expires_at: None,
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        created_at: UnixTime(0),
    }
}

fn claims(agent: &Agent, depth: u8) -> WarrantClaims {
    let mut chain: Vec<AgentId> = (10..10 + depth - 1).map(|n| AgentId::from_random([n; 12])).collect();
    chain.push(agent.id.clone());
    let human = HumanId::from_random([3; 12]);
    WarrantClaims {
        iss: "http://issuer".into(),
        sub: human.to_string(),
        aud: "http://issuer".into(),
        exp: UnixTime(2_000_000_000),
        iat: UnixTime(1_000),
        nbf: UnixTime(1_000),
        jti: WarrantId::from_random([4; 12]),
        client_id: agent.id.clone(),
        scope: "payments.* crm.read".into(),
        act: Actor::from_chain(&chain).unwrap(),
        task: TaskClaim { id: TaskId::from_random([5; 12]), purpose: "pay invoice 7".into(), human },
        mode: Mode::Delegated,
        owner: agent.owner.clone(),
        parent: None,
        cnf: None,
        budget: Default::default(),
    }
}

/// Monday 2026-11-23 10:00 UTC.
const MONDAY_10: UnixTime = UnixTime(1_795_428_000);

fn decide(
    policies: &CompiledPolicies,
    agent: &Agent,
    claims: &WarrantClaims,
    action: &str,
    attrs: serde_json::Value,
    telemetry: serde_json::Value,
    now: UnixTime,
) -> warrant_policy::Verdict {
    policies
        .evaluate(&DecisionInput {
            agent,
            claims,
            warrant: None,
            action,
            resource: "accounts/1",
            resource_attrs: Some(&attrs),
            telemetry: Some(&telemetry),
            now,
            trust: 100,
            anomaly: &[],
            approved: false,
            history: None,
        })
        .unwrap()
}

#[test]
fn default_set_allows_within_and_forbids_cost_and_depth() {
    let p = compile(&[("default.cedar", DEFAULT_POLICIES)]).unwrap();
    assert_eq!(p.policy_ids(), ["permit-within-scope", "cost-ceiling", "no-deep-money-movement"]);
    let a = agent(&[]);
    let shallow = claims(&a, 2);
    let v = decide(&p, &a, &shallow, "crm.read", json!({}), json!({"estimated_cost": 100}), MONDAY_10);
    assert!(v.allow);
    assert_eq!(v.policies, ["permit-within-scope"]);

    let v = decide(&p, &a, &shallow, "crm.read", json!({}), json!({"estimated_cost": 10_001}), MONDAY_10);
    assert!(!v.allow);
    assert_eq!(v.policies, ["cost-ceiling"]);

    assert!(decide(&p, &a, &shallow, "payments.transfer", json!({}), json!({}), MONDAY_10).allow);
    let deep = claims(&a, 3);
    let v = decide(&p, &a, &deep, "payments.transfer", json!({}), json!({}), MONDAY_10);
    assert!(!v.allow);
    assert_eq!(v.policies, ["no-deep-money-movement"]);
    // The wildcard group covers actions strictly below `payments`, not `payments` itself.
    assert!(decide(&p, &a, &deep, "payments", json!({}), json!({}), MONDAY_10).allow);
    assert!(!decide(&p, &a, &deep, "payments.refund.partial", json!({}), json!({}), MONDAY_10).allow);
}

#[test]
fn documented_examples_validate_and_mean_what_they_say() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policies");
    let (mut files, schema) = warrant_policy::load::read_dir(std::path::Path::new(dir)).unwrap();
    assert!(schema.is_none());
    assert!(files.len() >= 4);
    files.push(PolicyFile { name: "default.cedar".into(), text: DEFAULT_POLICIES.into() });
    let p = CompiledPolicies::compile(files, BASE_SCHEMA).unwrap();

    let finance = agent(&[("team", "finance")]);
    let other = agent(&[("team", "support")]);
    let c = claims(&finance, 1);
    let own = json!({"owner": c.task.human.as_str()});
    assert!(decide(&p, &finance, &c, "payments.transfer", own.clone(), json!({}), MONDAY_10).allow);
    assert!(!decide(&p, &other, &claims(&other, 1), "payments.transfer", own.clone(), json!({}), MONDAY_10).allow);
    // What the caller says about the resource neither grants nor is trusted: an
    // autonomous transfer stays denied whatever `owner` it claims, and the example
    // decides the same with or without the claim (ownership is the scope's job).
    let mut autonomous_payer = c.clone();
    autonomous_payer.mode = Mode::Autonomous;
    assert!(!decide(&p, &finance, &autonomous_payer, "payments.transfer", own.clone(), json!({}), MONDAY_10).allow);
    for attrs in [json!({}), json!({"owner": "hum_other"}), own.clone()] {
        assert!(decide(&p, &finance, &c, "payments.transfer", attrs, json!({}), MONDAY_10).allow);
    }
    let examples = std::fs::read_to_string(format!("{dir}/money-movement.cedar")).unwrap();
    let code: String = examples.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
    assert!(!code.contains("resource.attrs"), "the example trusts caller-supplied attributes");

    // Business hours: Monday 10:00 yes, Monday 20:00 no, Saturday 10:00 no.
    assert!(decide(&p, &finance, &c, "prod.deploy", json!({}), json!({}), MONDAY_10).allow);
    assert!(!decide(&p, &finance, &c, "prod.deploy", json!({}), json!({}), MONDAY_10.plus(10 * 3600)).allow);
    assert!(!decide(&p, &finance, &c, "prod.deploy", json!({}), json!({}), MONDAY_10.plus(5 * 86_400)).allow);

    // Delegated only.
    assert!(decide(&p, &finance, &c, "hr.read", json!({}), json!({}), MONDAY_10).allow);
    let mut autonomous = c.clone();
    autonomous.mode = Mode::Autonomous;
    assert!(!decide(&p, &finance, &autonomous, "hr.read", json!({}), json!({}), MONDAY_10).allow);

    // Export ceiling reads telemetry.
    assert!(decide(&p, &finance, &c, "data.export", json!({}), json!({"rows": 10}), MONDAY_10).allow);
    assert!(!decide(&p, &finance, &c, "data.export", json!({}), json!({"rows": 200_000}), MONDAY_10).allow);
}

#[test]
fn a_type_error_is_refused_with_the_reason() {
    let err =
        compile(&[("bad.cedar", r#"forbid (principal, action, resource) when { context.chain_depth == "deep" };"#)])
            .unwrap_err();
    assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
    let err =
        compile(&[("bad.cedar", "permit (principal, action, resource) when { context.nonexistent };")]).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
    let err = compile(&[("bad.cedar", "permit (principal, action resource);")]).unwrap_err();
    assert!(matches!(err, PolicyError::Parse { .. }), "{err}");
    let err = compile(&[
        ("a.cedar", "@id(\"x\") permit (principal, action, resource);"),
        ("b.cedar", "@id(\"x\") permit (principal, action, resource);"),
    ])
    .unwrap_err();
    assert_eq!(err, PolicyError::DuplicateId("x".into()));
    let err = compile(&[("t.cedar", "permit (principal == ?principal, action, resource);")]).unwrap_err();
    assert!(matches!(err, PolicyError::Template(_)), "{err}");
}

#[test]
fn principal_membership_and_labels() {
    let a = agent(&[("env", "prod")]);
    let text = format!(
        r#"permit (principal in Warrant::Human::"{}", action, resource) when {{ principal.hasTag("env") && principal.getTag("env") == "prod" }};"#,
        a.owner
    );
    let p = compile(&[("owner.cedar", &text)]).unwrap();
    assert!(decide(&p, &a, &claims(&a, 1), "crm.read", json!({}), json!({}), MONDAY_10).allow);
    let staging = agent(&[("env", "staging")]);
    assert!(!decide(&p, &staging, &claims(&staging, 1), "crm.read", json!({}), json!({}), MONDAY_10).allow);
}

#[test]
fn evaluation_errors_and_bad_input_fail_closed() {
    // Overflow at run time: the policy errors, and an errored evaluation never allows.
    let p = compile(&[(
        "overflow.cedar",
        "permit (principal, action, resource) when { context.telemetry has rows && context.telemetry.rows * 1000000000000 > 0 };",
    )])
    .unwrap();
    let a = agent(&[]);
    let v = decide(&p, &a, &claims(&a, 1), "crm.read", json!({}), json!({"rows": 1}), MONDAY_10);
    assert!(v.allow);
    let v = decide(&p, &a, &claims(&a, 1), "crm.read", json!({}), json!({"rows": 100_000_000}), MONDAY_10);
    assert!(!v.allow);
    assert!(!v.errors.is_empty());

    let c = claims(&a, 1);
    let input = |telemetry: &serde_json::Value| {
        p.evaluate(&DecisionInput {
            agent: &a,
            claims: &c,
            warrant: None,
            action: "crm.read",
            resource: "x",
            resource_attrs: None,
            telemetry: Some(telemetry),
            now: MONDAY_10,
            trust: 100,
            anomaly: &[],
            approved: false,
            history: None,
        })
    };
    assert!(input(&json!({"estimated_cost": 1.5})).is_err());
    assert!(input(&json!("not an object")).is_err());
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!({ "d": deep });
    }
    assert!(input(&deep).is_err());
}

/// Slicing (evaluating only the policies whose action constraint can match) never
/// changes a decision or the deciding policies.
#[test]
fn slicing_changes_no_decision() {
    let mut text = String::from("@id(\"base\") permit (principal, action, resource);\n");
    let namespaces = ["crm", "crm.notes", "payments", "payments.refund", "hr", "prod"];
    for (i, ns) in namespaces.iter().enumerate() {
        text.push_str(&format!(
            "@id(\"group-{i}\") forbid (principal, action in Warrant::Action::\"{ns}.*\", resource) when {{ context.telemetry has estimated_cost && context.telemetry.estimated_cost > {} }};\n",
            100 * (i + 1)
        ));
        text.push_str(&format!(
            "@id(\"exact-{i}\") forbid (principal, action == Warrant::Action::\"{ns}.write\", resource) when {{ context.chain_depth > {} }};\n",
            i % 3 + 1
        ));
        text.push_str(&format!(
            "@id(\"list-{i}\") forbid (principal, action in [Warrant::Action::\"{ns}.read\", Warrant::Action::\"{ns}.*\"], resource) when {{ context.mode == \"autonomous\" && context.telemetry has rows && context.telemetry.rows > {i} }};\n"
        ));
    }
    text.push_str("@id(\"cond\") forbid (principal, action, resource) when { action == Warrant::Action::\"hr.read\" && context.hour > 30 };\n");
    let p = compile(&[("many.cedar", &text)]).unwrap();
    let a = agent(&[]);
    let actions = [
        "crm.read",
        "crm.write",
        "crm.notes.write",
        "crm.notes.read",
        "crm",
        "payments.transfer",
        "payments.refund.partial",
        "payments.refund.write",
        "hr.read",
        "hr.write",
        "prod.deploy",
        "prod.write",
        "other.thing",
        "crm.notes.deep.write",
    ];
    let mut compared = 0;
    for depth in 1..=3 {
        for mode in [Mode::Delegated, Mode::Autonomous] {
            let mut c = claims(&a, depth);
            c.mode = mode;
            for action in actions {
                for telemetry in [json!({}), json!({"estimated_cost": 150}), json!({"estimated_cost": 1000, "rows": 9})]
                {
                    let input = DecisionInput {
                        agent: &a,
                        claims: &c,
                        warrant: None,
                        action,
                        resource: "x/1",
                        resource_attrs: None,
                        telemetry: Some(&telemetry),
                        now: MONDAY_10,
                        trust: 100,
                        anomaly: &[],
                        approved: false,
                        history: None,
                    };
                    let mut sliced = p.evaluate(&input).unwrap();
                    let mut whole = p.evaluate_whole(&input).unwrap();
                    sliced.policies.sort();
                    whole.policies.sort();
                    assert_eq!(sliced, whole, "{action} depth {depth} {mode:?} {telemetry}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 3 * 2 * actions.len() * 3);
    // And the slice is what makes cost independent of the rest of the set.
    assert_eq!(p.slice_len("other.thing"), 2, "only the unconstrained policies apply to an unnamed action");
    assert!(p.slice_len("crm.notes.write") < p.policy_ids().len() / 2);
}

const GUARDED: &str = r#"
@id("permit-all")
permit (principal, action, resource);

@id("big-payments-need-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };

@id("huge-payments-need-human")
@approval("human")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 100000 };

@id("no-payments-at-low-trust")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.trust < 80 };

@id("exfiltration-quarantines")
@quarantine
forbid (principal, action == Warrant::Action::"crm.export", resource)
when { context.anomaly.contains("novel_resource") };
"#;

fn guarded_input<'a>(
    a: &'a Agent,
    c: &'a WarrantClaims,
    action: &'a str,
    telemetry: &'a serde_json::Value,
    trust: i64,
    anomaly: &'a [&'static str],
    approved: bool,
) -> DecisionInput<'a> {
    DecisionInput {
        agent: a,
        claims: c,
        warrant: None,
        action,
        resource: "accounts/1",
        resource_attrs: None,
        telemetry: Some(telemetry),
        now: MONDAY_10,
        trust,
        anomaly,
        approved,
        history: None,
    }
}

#[test]
fn approval_forbids_ask_for_approval_and_approved_retries_skip_only_them() {
    use warrant_core::guard::approval::Approver;
    let p = compile(&[("g.cedar", GUARDED)]).unwrap();
    let a = agent(&[]);
    let c = claims(&a, 1);
    let small = json!({"amount": 10});
    let big = json!({"amount": 5000});
    let huge = json!({"amount": 500_000});

    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &small, 100, &[], false)).unwrap();
    assert!(v.allow && v.approval.is_none());

    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &big, 100, &[], false)).unwrap();
    assert!(!v.allow);
    assert_eq!(v.approval, Some(Approver::Owner));
    assert_eq!(v.policies, ["big-payments-need-owner"]);

    // When both match, the delegating human decides.
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &huge, 100, &[], false)).unwrap();
    assert_eq!(v.approval, Some(Approver::Human));

    // An approved retry skips the approval forbids...
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &huge, 100, &[], true)).unwrap();
    assert!(v.allow);
    // ...but not the others: low trust is a plain deny, approval or not.
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &big, 50, &[], false)).unwrap();
    assert!(!v.allow);
    assert_eq!(v.approval, None, "another forbid also denies, so approval cannot help");
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &big, 50, &[], true)).unwrap();
    assert!(!v.allow);
    assert_eq!(v.policies, ["no-payments-at-low-trust"]);
}

#[test]
fn quarantine_forbids_are_reported_and_anomaly_reaches_cedar() {
    let p = compile(&[("g.cedar", GUARDED)]).unwrap();
    let a = agent(&[]);
    let c = claims(&a, 1);
    let t = json!({});
    let v = p.evaluate(&guarded_input(&a, &c, "crm.export", &t, 100, &[], false)).unwrap();
    assert!(v.allow && !v.quarantine);
    let v = p.evaluate(&guarded_input(&a, &c, "crm.export", &t, 100, &["novel_resource"], false)).unwrap();
    assert!(!v.allow && v.quarantine);
    assert_eq!(v.policies, ["exfiltration-quarantines"]);
    assert!(p.has_marks());
    assert!(p.marks("exfiltration-quarantines").quarantine);
}

/// A policy id is the `@id` text as written: a quote or a backslash in it is not escaped,
/// so the guardrail annotations of such a policy still apply and the decision names it as
/// its author wrote it.
#[test]
fn policy_ids_with_quotes_keep_their_guardrail_marks() {
    use warrant_core::guard::approval::Approver;
    let text = r#"
@id("ops' \"export\" rule")
@quarantine
forbid (principal, action == Warrant::Action::"crm.export", resource)
when { context.anomaly.contains("novel_resource") };

@id("owner's call")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;
    let p = compile(&[("default.cedar", DEFAULT_POLICIES), ("q.cedar", text)]).unwrap();
    let a = agent(&[]);
    let c = claims(&a, 1);
    let t = json!({});
    let v = p.evaluate(&guarded_input(&a, &c, "crm.export", &t, 100, &["novel_resource"], false)).unwrap();
    assert!(!v.allow);
    assert_eq!(v.policies, [r#"ops' "export" rule"#]);
    assert!(v.quarantine, "the @quarantine forbid denied, so the agent is quarantined: {v:?}");
    let big = json!({"amount": 5000});
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &big, 100, &[], false)).unwrap();
    assert_eq!(v.policies, ["owner's call"]);
    assert_eq!(v.approval, Some(Approver::Owner), "{v:?}");
}

#[test]
fn guardrail_annotations_are_checked() {
    let on_permit = "@id(\"p\") @approval(\"owner\") permit (principal, action, resource);";
    assert!(matches!(compile(&[("a.cedar", on_permit)]), Err(PolicyError::Annotation { .. })));
    let bad_role = "@id(\"f\") @approval(\"boss\") forbid (principal, action, resource);";
    let err = compile(&[("a.cedar", bad_role)]).unwrap_err();
    assert!(err.to_string().contains("`owner` or `human`"), "{err}");
    let both = "@id(\"f\") @approval(\"owner\") @quarantine forbid (principal, action, resource);";
    assert!(matches!(compile(&[("a.cedar", both)]), Err(PolicyError::Annotation { .. })));
    let q_permit = "@id(\"p\") @quarantine permit (principal, action, resource);";
    assert!(matches!(compile(&[("a.cedar", q_permit)]), Err(PolicyError::Annotation { .. })));
}

#[test]
fn documented_guardrail_example_means_what_it_says() {
    use warrant_core::guard::approval::Approver;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policies/guardrails.cedar");
    let text = std::fs::read_to_string(path).unwrap();
    let p = compile(&[("default.cedar", DEFAULT_POLICIES), ("guardrails.cedar", &text)]).unwrap();
    let a = agent(&[]);
    let c = claims(&a, 1);
    let small = json!({"amount": 5000});
    let large = json!({"amount": 500_000});
    assert!(p.evaluate(&guarded_input(&a, &c, "payments.send", &small, 90, &[], false)).unwrap().allow);
    assert!(!p.evaluate(&guarded_input(&a, &c, "payments.send", &small, 79, &[], false)).unwrap().allow);
    let v = p.evaluate(&guarded_input(&a, &c, "payments.send", &large, 90, &[], false)).unwrap();
    assert_eq!(v.approval, Some(Approver::Owner));
    assert!(p.evaluate(&guarded_input(&a, &c, "payments.send", &large, 90, &[], true)).unwrap().allow);
    let t = json!({});
    let v = p.evaluate(&guarded_input(&a, &c, "crm.export", &t, 100, &["novel_resource"], false)).unwrap();
    assert!(v.quarantine);
}

/// The shipped schema as it was before plain subjects, as users may have copied it.
const SCHEMA_BEFORE_PLAIN_SUBJECTS: &str = include_str!("fixtures/schema-before-plain-subjects.cedarschema");
const TODO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/authzen-todo");

fn documented_agent_policies() -> Vec<PolicyFile> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policies");
    let (mut files, _) = warrant_policy::load::read_dir(std::path::Path::new(dir)).unwrap();
    files.push(PolicyFile { name: "default.cedar".into(), text: DEFAULT_POLICIES.into() });
    files
}

#[test]
fn agent_policies_validate_and_decide_the_same_under_a_schema_copied_before_plain_subjects() {
    let old = CompiledPolicies::compile(documented_agent_policies(), SCHEMA_BEFORE_PLAIN_SUBJECTS).unwrap();
    let new = CompiledPolicies::compile(documented_agent_policies(), BASE_SCHEMA).unwrap();
    assert_eq!(old.subject_policy_count(), 0);
    assert_eq!(old.policy_ids(), new.policy_ids());
    let finance = agent(&[("team", "finance")]);
    let other = agent(&[("team", "support")]);
    for (a, depth) in [(&finance, 1), (&finance, 3), (&other, 1)] {
        let c = claims(a, depth);
        for action in ["payments.transfer", "crm.read", "hr.update", "prod.deploy", "data.export"] {
            for telemetry in [json!({}), json!({"estimated_cost": 20_000}), json!({"rows": 50_000})] {
                let mut o = decide(&old, a, &c, action, json!({}), telemetry.clone(), MONDAY_10);
                let mut n = decide(&new, a, &c, action, json!({}), telemetry, MONDAY_10);
                // Cedar names the deciding policies in no particular order.
                o.policies.sort();
                n.policies.sort();
                assert_eq!(o, n, "{action} at depth {depth}");
            }
        }
    }
}

#[test]
fn plain_subject_policies_need_the_plain_subject_types_and_are_refused_clearly_without() {
    let todo = std::fs::read_to_string(format!("{TODO_DIR}/todo.cedar")).unwrap();
    let err = CompiledPolicies::compile(files(&[("todo.cedar", &todo)]), SCHEMA_BEFORE_PLAIN_SUBJECTS).err().unwrap();
    assert!(matches!(err, PolicyError::InvalidSubject(_)), "{err:?}");
    assert!(err.to_string().contains("plain subjects"), "{err}");
    // With the example's schema, the example and every documented agent policy load.
    let schema = std::fs::read_to_string(format!("{TODO_DIR}/warrant.cedarschema")).unwrap();
    let mut all = documented_agent_policies();
    all.push(PolicyFile { name: "todo.cedar".into(), text: todo });
    let p = CompiledPolicies::compile(all, &schema).unwrap();
    assert_eq!(p.subject_policy_count(), 7);
    // A rule for humans that misuses an attribute is refused at load, like any other.
    let typo = r#"permit (principal is Warrant::Human, action, resource) when { principal.role == "x" };"#;
    let err = compile(&[("typo.cedar", typo)]).err().unwrap();
    assert!(matches!(err, PolicyError::InvalidSubject(_)), "{err:?}");
    // Guardrail annotations are for agents.
    let marked = r#"@quarantine("") forbid (principal is Warrant::Human, action, resource);"#;
    assert!(matches!(compile(&[("m.cedar", marked)]), Err(PolicyError::Annotation { .. })));
}

#[test]
fn the_todo_example_schema_is_the_shipped_schema_plus_owner_id() {
    let schema = std::fs::read_to_string(format!("{TODO_DIR}/warrant.cedarschema")).unwrap();
    let added = "    // The todo scenario: the todo's owner, as the todo backend states it.\n    ownerID?: String,\n";
    assert_eq!(schema.replacen(added, "", 1), BASE_SCHEMA, "the example's schema drifted from the shipped one");
}

#[test]
fn a_policy_is_for_plain_subjects_exactly_when_its_head_names_their_type() {
    let base = |head: &str| format!("permit ({head}, action == Warrant::Action::\"crm.read\", resource);");
    for (head, subject) in [
        ("principal is Warrant::Human", true),
        ("principal is Warrant::Service", true),
        ("principal == Warrant::Human::\"hum_1\"", true),
        ("principal is Warrant::Human in Warrant::Human::\"hum_1\"", true),
        ("principal", false),
        ("principal in Warrant::Human::\"hum_1\"", false),
        ("principal is Warrant::Agent", false),
        ("principal == Warrant::Agent::\"agt_1\"", false),
    ] {
        let p = compile(&[("p.cedar", &base(head))]).unwrap();
        assert_eq!(p.subject_policy_count(), usize::from(subject), "{head}");
    }
}
