//! Plain subjects (a human or a service, no warrant): the AuthZEN interop "todo"
//! decisions with the example's policies, and the fail-closed edges.

use serde_json::{json, Map, Value};
use warrant_core::authzen::{EvaluationRequest, Subject};
use warrant_engine::request::Via;
use warrant_engine::{Asker, SubjectRequest};

use crate::harness::{AuditFilter, AuditKind, Harness, Outcome};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/authzen-todo");

/// The example's files (its policies and its schema), as the README installs them.
fn example_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(EXAMPLE).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".cedar") || name == "warrant.cedarschema" {
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(out.iter().any(|(n, _)| n == "warrant.cedarschema"), "the example ships its schema");
    assert!(out.iter().any(|(n, _)| n.ends_with(".cedar")), "the example ships its policies");
    out
}

async fn todo_harness() -> Harness {
    let files = example_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    Harness::start_with_policies(&refs, |_| {}).await
}

/// The interop suite's users: email, the identity provider's id (what the 1.0 suite
/// sends as `subject.id`), roles.
const USERS: [(&str, &str, &[&str]); 5] = [
    ("rick@the-citadel.com", "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", &["admin", "evil_genius"]),
    ("morty@the-citadel.com", "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", &["editor"]),
    ("summer@the-smiths.com", "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", &["editor"]),
    ("beth@the-smiths.com", "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", &["viewer"]),
    ("jerry@the-smiths.com", "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", &["viewer"]),
];

async fn todo_users(h: &Harness) {
    for (email, identity, roles) in USERS {
        h.human_with_identity(email, Some(identity), roles).await;
    }
}

fn identity_of(email: &str) -> &'static str {
    USERS.iter().find(|(e, _, _)| *e == email).unwrap().1
}

fn request(kind: &str, id: &str, action: &str, resource: &str, attrs: Option<Value>) -> SubjectRequest {
    SubjectRequest {
        subject: Subject { kind: kind.into(), id: id.into(), properties: Map::new() },
        action: action.into(),
        resource: resource.into(),
        resource_attrs: attrs.map(std::sync::Arc::new),
        context: None,
        via: Some(Via { pep: "todo-backend".into(), mcp: None }),
    }
}

const R: &str = "rick@the-citadel.com";
const M: &str = "morty@the-citadel.com";
const B: &str = "beth@the-smiths.com";
const TODO: &str = "todo/7240d0db-8ff0-41ec-98b2-34a096273b9f";

/// The interop decisions as the example ships them: AuthZEN 1.0 requests with the
/// expected answer.
#[derive(serde::Deserialize)]
struct Interop {
    users: std::collections::BTreeMap<String, Vec<String>>,
    decisions: Vec<InteropCase>,
}

#[derive(serde::Deserialize)]
struct InteropCase {
    request: EvaluationRequest,
    expected: bool,
}

fn interop() -> Interop {
    serde_json::from_str(&std::fs::read_to_string(format!("{EXAMPLE}/decisions.json")).unwrap()).unwrap()
}

/// Every decision of the AuthZEN todo interop suite (1.0), asked through the AuthZEN
/// adapter: each user reads users and todos; admins and editors create; the evil genius
/// updates any todo, an editor only their own; the admin deletes any todo, an editor
/// only their own; viewers do neither.
#[tokio::test]
async fn the_todo_interop_decisions_all_hold() {
    let h = todo_harness().await;
    let suite = interop();
    assert_eq!(suite.users.len(), USERS.len(), "the example's users are the suite's");
    for (email, roles) in &suite.users {
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        h.human_with_identity(email, Some(identity_of(email)), &roles).await;
    }
    assert_eq!(suite.decisions.len(), 40, "every decision of the suite");
    let mut wrong = Vec::new();
    // As shipped, the requests name users by email; the 1.0 suite upstream names them by
    // the identity provider's id. Both must hold.
    for by_identity in [false, true] {
        for case in &suite.decisions {
            let mut request = case.request.clone();
            if by_identity {
                request.subject.id = identity_of(&request.subject.id).to_owned();
            }
            let answer = h.engine().authzen().evaluate(&Asker::admin(), &request).await.unwrap();
            if answer.decision != case.expected {
                wrong.push(format!("{request:?}: expected {}, got {answer:?}", case.expected));
            }
            let id = answer.context.and_then(|c| c.decision_id).unwrap_or_default();
            assert!(id.starts_with("dec_") && id != "dec_aggregated", "{id}");
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} interop decisions differ:\n{}",
        wrong.len(),
        2 * suite.decisions.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn every_user_action_and_owner_follows_the_roles() {
    // Beyond the suite's own rows: every user, on a todo of every owner (and of none).
    let h = todo_harness().await;
    todo_users(&h).await;
    let owners: Vec<Option<&str>> = USERS.iter().map(|(e, _, _)| Some(*e)).chain([None]).collect();
    for (user, _, roles) in USERS {
        let has = |r: &str| roles.contains(&r);
        for owner in &owners {
            let own = *owner == Some(user);
            let attrs = owner.map(|o| json!({ "ownerID": o }));
            for (action, expected) in [
                ("can_read_todos", true),
                ("can_create_todo", has("admin") || has("editor")),
                ("can_update_todo", has("evil_genius") || (has("editor") && own)),
                ("can_delete_todo", has("admin") || (has("editor") && own)),
            ] {
                let d = h.authorize_subject(&request("user", user, action, TODO, attrs.clone())).await;
                assert_eq!(d.outcome == Outcome::Allow, expected, "{user} {action} owner={owner:?}: {d:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_human_is_named_by_id_email_or_external_id_and_roles_changes_take_effect() {
    let h = todo_harness().await;
    let beth = h.human_with_identity(B, Some("idp-beth"), &["viewer"]).await;
    let create = |id: &str| request("user", id, "can_create_todo", "todo/1", None);
    for id in [beth.id.as_str(), B, "Beth@The-Smiths.com", "idp-beth"] {
        let d = h.authorize_subject(&create(id)).await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "policy"), "{id}: {d:?}");
    }
    // An external id is matched exactly, and only as one.
    for id in ["IDP-BETH", "idp-beth "] {
        assert_eq!(h.authorize_subject(&create(id)).await.code.as_str(), "human", "{id}");
    }
    let beth = h.set_roles(&beth, &["editor"]).await;
    assert_eq!(beth.roles.iter().collect::<Vec<_>>(), ["editor"]);
    for id in [beth.id.as_str(), B, "idp-beth"] {
        let d = h.authorize_subject(&create(id)).await;
        assert_eq!((d.outcome, d.policies.clone()), (Outcome::Allow, vec!["todo-create".to_owned()]), "{id}: {d:?}");
    }
    // The change is audited with the roles before and after.
    let filter = AuditFilter {
        kind: Some(AuditKind::Registry),
        human: Some(beth.id.clone()),
        limit: 10,
        ..AuditFilter::default()
    };
    let records = h.audit(filter).await;
    let change = records.iter().find(|r| r.entry.details["op"] == "human.roles").unwrap();
    assert_eq!(change.entry.details["change"], json!({"from": ["viewer"], "to": ["editor"]}));
    let added = records.iter().find(|r| r.entry.details["op"] == "human.add").unwrap();
    assert_eq!(added.entry.details["change"]["roles"], json!(["viewer"]));
    assert_eq!(added.entry.details["change"]["external_id"], "idp-beth");
    // `human` is the same as `user`.
    assert_eq!(
        h.authorize_subject(&request("human", B, "can_create_todo", "todo/1", None)).await.outcome,
        Outcome::Allow
    );
}

#[tokio::test]
async fn a_disabled_or_unknown_human_is_denied_with_the_reason() {
    let h = todo_harness().await;
    todo_users(&h).await;
    let read = |id: &str| request("user", id, "can_read_todos", "todo/todo-1", None);
    assert_eq!(h.authorize_subject(&read(R)).await.outcome, Outcome::Allow);

    let rick = h.human_with_roles("rick2@the-citadel.com", &["admin"]).await;
    h.disable_human(&rick).await;
    let d = h.authorize_subject(&read("rick2@the-citadel.com")).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "human"), "{d:?}");
    assert!(d.reasons[0].contains("disabled"), "{d:?}");
    let d = h.authorize_subject(&read(rick.id.as_str())).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "human"), "{d:?}");

    for unknown in ["nobody@example.com", "hum_000000000000000000000000", "hum_not-an-id"] {
        let d = h.authorize_subject(&read(unknown)).await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "human"), "{unknown}: {d:?}");
        assert!(d.reasons[0].contains("no registered human"), "{d:?}");
        assert!(d.policies.is_empty() && d.policy_version.is_none(), "Cedar never ran: {d:?}");
    }
    // An empty id or type is a bad request, not a lookup.
    let d = h.authorize_subject(&request("user", "", "can_read_todos", "todo/todo-1", None)).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_request"), "{d:?}");
    let d = h.authorize_subject(&request("", "x", "can_read_todos", "todo/todo-1", None)).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_request"), "{d:?}");
}

#[tokio::test]
async fn a_bad_shape_or_a_cedar_error_is_a_deny() {
    let policy = r#"
@id("service-reads")
permit (principal is Warrant::Service, action == Warrant::Action::"reports.read", resource)
when { principal.kind == "service" && principal.properties has department && principal.properties.department == "finance" };

@id("service-cost-guard")
forbid (principal is Warrant::Service, action == Warrant::Action::"reports.read", resource)
when { context.telemetry has rows && context.telemetry.rows * 1000000000000 > 5 };
"#;
    let h = Harness::start_with_policies(&[("service.cedar", policy)], |_| {}).await;
    let mut ok = request("service", "svc-billing", "reports.read", "reports/q3", None);
    ok.subject.properties.insert("department".into(), json!("finance"));
    let d = h.authorize_subject(&ok).await;
    assert_eq!((d.outcome, d.policies.clone()), (Outcome::Allow, vec!["service-reads".to_owned()]), "{d:?}");

    // The service's properties are the PEP's statement, read as typed attributes.
    let mut other = ok.clone();
    other.subject.properties.insert("department".into(), json!("support"));
    assert_eq!(h.authorize_subject(&other).await.outcome, Outcome::Deny);

    // A forbid that overflows errors; Cedar alone would skip it and allow: Warrant denies.
    let mut overflow = ok.clone();
    overflow.context = Some(std::sync::Arc::new(json!({"rows": 9_000_000_000_i64})));
    let d = h.authorize_subject(&overflow).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "policy_error"), "{d:?}");

    // Caller input Cedar cannot take (a float) and a non-canonical resource are denies.
    let mut float = ok.clone();
    float.resource_attrs = Some(std::sync::Arc::new(json!({"amount": 1.5})));
    let d = h.authorize_subject(&float).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_request"), "{d:?}");
    for resource in ["reports/../q3", "reports/*", ""] {
        let mut bad = ok.clone();
        bad.resource = resource.into();
        let d = h.authorize_subject(&bad).await;
        assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "invalid_request"), "{resource}: {d:?}");
    }
}

#[tokio::test]
async fn agents_and_plain_subjects_never_match_each_others_rules() {
    // A rule for humans that would allow everything, and one that forbids what the
    // default set allows agents: neither touches an agent's decision.
    let human_rules = r#"
@id("humans-anything")
permit (principal is Warrant::Human, action, resource);

@id("humans-no-update")
forbid (principal is Warrant::Human, action == Warrant::Action::"crm.update", resource)
when { !principal.roles.contains("editor") };
"#;
    let h = Harness::start_with_policies(&[("humans.cedar", human_rules)], |_| {}).await;
    let c = h.chain(&["crm.*"], &["crm.*"], 1).await;
    let d = h.authorize(c.token(0), "crm.update", "customers/42").await;
    assert_eq!((d.outcome, d.policies.clone()), (Outcome::Allow, vec!["permit-within-scope".to_owned()]), "{d:?}");
    // Outside its scope the agent stays denied: `humans-anything` is not for it.
    let d = h.authorize(c.token(0), "payments.send", "accounts/1").await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "scope"), "{d:?}");

    // The agent's owner, asked about as a human, is decided by the human rules only:
    // `permit-within-scope` (an agent rule) never allows a human.
    let d = h.authorize_subject(&request("user", c.human.id.as_str(), "crm.update", "customers/42", None)).await;
    assert_eq!((d.outcome, d.policies.clone()), (Outcome::Deny, vec!["humans-no-update".to_owned()]), "{d:?}");
    let d = h.authorize_subject(&request("user", c.human.id.as_str(), "crm.read", "customers/42", None)).await;
    assert_eq!((d.outcome, d.policies.clone()), (Outcome::Allow, vec!["humans-anything".to_owned()]), "{d:?}");
    // A service matches neither the human rules nor the agent rules.
    let d = h.authorize_subject(&request("service", "svc-1", "crm.read", "customers/42", None)).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "policy"), "{d:?}");
    assert!(d.policies.is_empty(), "{d:?}");
}

#[tokio::test]
async fn without_a_policy_for_plain_subjects_every_plain_subject_is_denied() {
    // The default set alone permits whatever a warrant's scope covers; a human has no
    // warrant, so nothing of it applies.
    let h = Harness::start().await;
    let human = h.human(&["*"]).await;
    let d = h.authorize_subject(&request("user", human.id.as_str(), "crm.read", "customers/42", None)).await;
    assert_eq!((d.outcome, d.code.as_str()), (Outcome::Deny, "policy"), "{d:?}");
    assert_eq!(d.reasons, ["no policy for plain subjects permits this action"]);
    assert!(d.policies.is_empty());
}

#[tokio::test]
async fn a_plain_subject_decision_is_audited_with_subject_policies_and_pep() {
    let h = todo_harness().await;
    todo_users(&h).await;
    let morty = h.authorize_subject(&request("user", M, "can_update_todo", TODO, Some(json!({"ownerID": M})))).await;
    assert_eq!(morty.outcome, Outcome::Allow, "{morty:?}");
    let record = h.decision_record(&morty.decision_id).await;
    let e = &record.entry;
    assert_eq!(e.kind, AuditKind::Decision);
    assert_eq!(e.decision.as_deref(), Some("allow"));
    assert_eq!(e.at, h.now());
    assert!(e.agent.is_none() && e.warrant.is_none() && e.task.is_none(), "{e:?}");
    let human = e.human.clone().unwrap();
    assert_eq!(e.details["action"], "can_update_todo");
    assert_eq!(e.details["resource"], TODO);
    assert_eq!(e.details["code"], "allow");
    assert_eq!(e.details["policies"], json!(["todo-update-own"]));
    assert_eq!(e.details["policy_version"], json!(h.policy_version()));
    assert_eq!(e.details["pep"], "todo-backend");
    assert_eq!(e.details["subject"], json!({"type": "user", "id": M, "human": human, "roles": ["editor"]}));
    assert_eq!(e.details["resource_attrs"], json!({"ownerID": M}));
    assert!(e.details.get("chain").is_none() && e.details.get("scope").is_none(), "{e:?}");

    // A deny before Cedar is recorded too, one record each (no anonymous aggregation).
    let mut ids = Vec::new();
    for _ in 0..30 {
        let d = h.authorize_subject(&request("user", "nobody@example.com", "can_read_todos", "todo/1", None)).await;
        assert_eq!(d.outcome, Outcome::Deny);
        ids.push(d.decision_id.clone());
    }
    let last = h.decision_record(ids.last().unwrap()).await;
    assert_eq!(last.entry.details["code"], "human");
    assert_eq!(last.entry.details["subject"], json!({"type": "user", "id": "nobody@example.com"}));
    assert!(last.entry.human.is_none());
    ids.dedup();
    assert_eq!(ids.len(), 30, "each deny has a record of its own");
    assert!(h.audit_verifies().await);
}
