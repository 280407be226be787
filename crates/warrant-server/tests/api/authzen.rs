//! The AuthZEN PDP through the real server: PEP credentials and who may ask, single and
//! batch evaluations, the token and COAZ shapes of an agent's warrant, stated subjects
//! and agents checked against the warrant, and that an evaluation through AuthZEN is
//! the very decision `/v1/authorize` makes, with the same audit trail.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{assert_json, Chain, Reply, Server};

/// Creates a PEP credential; returns `(id, token)`.
async fn pep(s: &Server, name: &str, plain_subjects: bool) -> (String, String) {
    let reply = s.admin_post("/v1/peps", &json!({"name": name, "plain_subjects": plain_subjects})).await;
    let body = reply.expect(StatusCode::CREATED);
    assert_eq!(body["name"], name);
    assert_eq!(body["plain_subjects"], plain_subjects);
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wpep_") && token.len() == 5 + 43, "{token}");
    (body["id"].as_str().unwrap().to_owned(), token)
}

/// `POST /access/v1/<path>` with `bearer` (none when empty).
async fn access(s: &Server, path: &str, bearer: &str, body: &Value) -> Reply {
    let mut req = s.http.post(s.url(&format!("/access/v1/{path}"))).json(body);
    if !bearer.is_empty() {
        req = req.bearer_auth(bearer);
    }
    s.send(req).await
}

/// One evaluation that must be answered 200; returns `{decision, context}`.
async fn evaluate(s: &Server, bearer: &str, body: &Value) -> Value {
    let reply = access(s, "evaluation", bearer, body).await;
    assert_json(&reply);
    let answer = reply.ok().clone();
    assert!(answer["decision"].is_boolean(), "{answer}");
    answer
}

/// An evaluation naming `c`'s warrant `i` by its token.
fn by_token(c: &Chain, i: usize, action: &str, resource: (&str, &str), context: Value) -> Value {
    let mut body = json!({
        "subject": {"type": "user", "id": c.warrants[i].1.typed.sub, "properties": {"token": c.token(i)}},
        "action": {"name": action},
        "resource": {"type": resource.0, "id": resource.1},
    });
    if !context.is_null() {
        body["context"] = context;
    }
    body
}

/// The same warrant in the COAZ shape: `subject.id` = `sub`, `context.agent` =
/// `client_id`, `context.warrant_id` = `jti`.
fn coaz(c: &Chain, i: usize, action: &str, resource: (&str, &str), context: Value) -> Value {
    let mut context = if context.is_null() { json!({}) } else { context };
    context["agent"] = json!(c.agents[i].id);
    context["warrant_id"] = json!(c.jti(i));
    json!({
        "subject": {"type": "user", "id": c.warrants[i].1.typed.sub},
        "action": {"name": action},
        "resource": {"type": resource.0, "id": resource.1},
        "context": context,
    })
}

/// Asserts a permit with a recorded decision.
#[track_caller]
fn assert_permit(a: &Value) {
    assert_eq!(a["decision"], true, "{a}");
    assert_eq!(a["context"]["outcome"], "allow", "{a}");
    assert_eq!(a["context"]["code"], "allow", "{a}");
    assert!(a["context"]["decision_id"].as_str().is_some_and(|d| d.starts_with("dec_")), "{a}");
}

/// Asserts `decision: false` with Warrant's `code`.
#[track_caller]
fn assert_refused(a: &Value, code: &str) {
    assert_eq!(a["decision"], false, "{a}");
    assert_eq!(a["context"]["code"], code, "{a}");
    assert!(a["context"]["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{a}");
}

/// The trace of a decision, without what only says which entry point asked.
async fn trace(s: &Server, decision_id: &str) -> Value {
    let mut t = s.admin_get(&format!("/v1/audit/{decision_id}/trace")).await.ok().clone();
    let record = t["record"].as_object_mut().unwrap();
    for volatile in ["seq", "at", "hash", "prev_hash"] {
        record.remove(volatile);
    }
    let details = record["details"].as_object_mut().unwrap();
    details.remove("pep");
    details.remove("mcp");
    details.remove("trust");
    details.remove("signals");
    t
}

#[tokio::test]
async fn pep_credentials_are_good_for_the_pdp_only() {
    let s = Server::start().await;
    let c = s.chain(&["crm.read"], &["crm.*"], 1, "read the CRM").await;
    let ask = by_token(&c, 0, "crm.read", ("customers", "1"), Value::Null);

    // Nobody but the admin creates one.
    let anonymous = s.send(s.http.post(s.url("/v1/peps")).json(&json!({"name": "x"}))).await;
    anonymous.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    s.admin_post("/v1/peps", &json!({"name": " "})).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_post("/v1/peps", &json!({"name": "x", "extra": 1}))
        .await
        .api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let (id, token) = pep(&s, "api-gateway", false).await;
    let listed = s.admin_get("/v1/peps").await;
    let peps = listed.ok()["peps"].as_array().unwrap().clone();
    assert_eq!(peps.len(), 1);
    assert_eq!(peps[0]["id"], id.as_str());
    assert!(
        peps[0].get("token").is_none() && !listed.text.contains(&token),
        "the secret is shown once: {}",
        listed.text
    );

    // The PEP asks; so does the admin.
    assert_permit(&evaluate(&s, &token, &ask).await);
    assert_permit(&evaluate(&s, &s.admin, &ask).await);
    // Without a credential, or with a wrong one: 401 with a Bearer challenge.
    for bearer in ["", "wpep_not-a-credential", c.token(0), c.session.as_str()] {
        let reply = access(&s, "evaluation", bearer, &ask).await;
        reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(reply.headers["www-authenticate"], "Bearer", "{bearer}");
    }
    // A PEP credential is no admin token.
    for path in ["/v1/peps", "/v1/humans", "/v1/audit"] {
        let reply = s.send(s.http.get(s.url(path)).bearer_auth(&token)).await;
        reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let reply = s.send(s.http.post(s.url("/v1/peps")).bearer_auth(&token).json(&json!({"name": "mine"}))).await;
    reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Revoked, it is refused from then on.
    let revoked = s.admin_delete(&format!("/v1/peps/{id}")).await;
    assert!(revoked.ok()["revoked_at"].is_i64(), "{}", revoked.text);
    access(&s, "evaluation", &token, &ask).await.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    s.admin_delete(&format!("/v1/peps/{id}")).await.api_error(StatusCode::NOT_FOUND, "not_found");
    s.admin_delete("/v1/peps/nonsense").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(s.admin_get("/v1/peps").await.ok()["peps"][0]["revoked_at"].is_i64());

    // Both changes are audited, without the secret.
    let audit = s.admin_get("/v1/audit?kind=registry&order=oldest").await;
    let ops: Vec<&str> =
        audit.ok()["records"].as_array().unwrap().iter().filter_map(|r| r["details"]["op"].as_str()).collect();
    assert!(ops.ends_with(&["pep.add", "pep.revoke"]), "{ops:?}");
    assert!(!audit.text.contains(&token));
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn an_agent_through_authzen_is_decided_and_traced_as_through_authorize() {
    let s = Server::start().await;
    let (_, token) = pep(&s, "crm-gateway", false).await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 2, "reconcile the CRM").await;

    // An allow: the same decision, the same trail, by either shape.
    let direct = s.authorize(c.token(1), "crm.read", "customers/42", json!({"rows": 3})).await;
    let through = evaluate(&s, &token, &by_token(&c, 1, "crm.read", ("customers", "42"), json!({"rows": 3}))).await;
    let named = evaluate(&s, &token, &coaz(&c, 1, "crm.read", ("customers", "42"), json!({"rows": 3}))).await;
    assert_eq!(direct["decision"], "allow", "{direct}");
    assert_permit(&through);
    assert_permit(&named);
    let expected = trace(&s, direct["decision_id"].as_str().unwrap()).await;
    for answer in [&through, &named] {
        let id = answer["context"]["decision_id"].as_str().unwrap();
        assert_eq!(trace(&s, id).await, expected, "the trail of {answer}");
        let record = s.admin_get(&format!("/v1/audit/{id}")).await;
        assert_eq!(record.ok()["details"]["pep"], "crm-gateway", "{}", record.text);
        assert_eq!(record.ok()["details"]["context"], json!({"rows": 3}), "reserved keys are not recorded as context");
    }
    assert_eq!(expected["human"]["id"], c.human.as_str());
    assert_eq!(expected["policies"]["deciding"], json!(["permit-within-scope"]));

    // A scope deny and a policy deny, alike. Each probing deny climbs the escalation
    // ladder of its warrant, so each shape is asked with a warrant of its own, and
    // `/v1/authorize` and AuthZEN share one (its second deny still answers `scope`).
    let fresh = || s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "reconcile the CRM");
    let d = fresh().await;
    let direct = s.authorize(d.token(0), "crm.write", "customers/42", Value::Null).await;
    assert_eq!(direct["code"], "scope");
    let through = evaluate(&s, &token, &by_token(&d, 0, "crm.write", ("customers", "42"), Value::Null)).await;
    assert_refused(&through, "scope");
    let (a, b) = (
        trace(&s, direct["decision_id"].as_str().unwrap()).await,
        trace(&s, through["context"]["decision_id"].as_str().unwrap()).await,
    );
    for part in ["human", "task", "agents", "warrants", "policies"] {
        assert_eq!(a[part], b[part], "{part}");
    }
    assert_eq!(a["record"]["details"]["chain"], b["record"]["details"]["chain"]);
    assert_refused(
        &evaluate(&s, &token, &coaz(&fresh().await, 0, "crm.write", ("customers", "42"), Value::Null)).await,
        "scope",
    );
    let costly = json!({"estimated_cost": 50_000});
    let direct = s.authorize(fresh().await.token(0), "crm.read", "customers/7", costly.clone()).await;
    let through = evaluate(&s, &token, &by_token(&fresh().await, 0, "crm.read", ("customers", "7"), costly)).await;
    assert_refused(&through, "policy");
    let id = through["context"]["decision_id"].as_str().unwrap();
    let policies = trace(&s, id).await["policies"].clone();
    assert_eq!(policies, trace(&s, direct["decision_id"].as_str().unwrap()).await["policies"]);
    assert_eq!(policies["deciding"], json!(["cost-ceiling"]));

    // Keys the Cedar schema does not declare are passed on and read by no policy.
    let undeclared = json!({"rows": 3, "ticket": "INC-1", "nested": {"a": [1, 2]}});
    assert_permit(&evaluate(&s, &token, &by_token(&c, 1, "crm.read", ("customers", "8"), undeclared)).await);
    // A value Cedar cannot hold is a deny, never a 500.
    let float = json!({"ratio": 0.5});
    assert_refused(
        &evaluate(&s, &token, &by_token(&c, 1, "crm.read", ("customers", "8"), float)).await,
        "invalid_request",
    );
    // A resource that is no canonical path is a deny, as on `/v1/authorize`.
    assert_refused(
        &evaluate(&s, &token, &by_token(&c, 1, "crm.read", ("customers", "../x"), Value::Null)).await,
        "invalid_request",
    );

    // Revoked: both shapes deny on the next evaluation (the jti cache included).
    s.revoke("warrant", &c.jti(0), "done").await;
    assert_eq!(s.authorize(c.token(1), "crm.read", "customers/42", Value::Null).await["code"], "revoked");
    assert_refused(
        &evaluate(&s, &token, &by_token(&c, 1, "crm.read", ("customers", "42"), Value::Null)).await,
        "revoked",
    );
    assert_refused(&evaluate(&s, &token, &coaz(&c, 1, "crm.read", ("customers", "42"), Value::Null)).await, "revoked");
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn stated_subjects_and_agents_must_be_the_warrants() {
    let s = Server::start().await;
    let (_, token) = pep(&s, "pep", false).await;
    let c = s.chain(&["crm.read"], &["crm.*"], 2, "read").await;
    let other = s.chain(&["crm.read"], &["crm.*"], 1, "another").await;
    let ask = |body: Value| {
        let (s, token) = (&s, &token);
        async move { access(s, "evaluation", token, &body).await }
    };

    // The token shape: a subject that is not the warrant's `sub`.
    let mut wrong = by_token(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["subject"]["id"] = json!(other.human);
    let reply = ask(wrong).await;
    reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(reply.text.contains("subject.id"), "{}", reply.text);
    // ... an agent that is not its `client_id`, a jti that is not its own.
    let wrong = by_token(&c, 1, "crm.read", ("customers", "1"), json!({"agent": c.agents[0].id}));
    assert!(ask(wrong).await.text.contains("context.agent"));
    let wrong =
        by_token(&c, 1, "crm.read", ("customers", "1"), json!({"agent": c.agents[1].id, "warrant_id": c.jti(0)}));
    ask(wrong).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Stated rightly, it is allowed.
    let right =
        by_token(&c, 1, "crm.read", ("customers", "1"), json!({"agent": c.agents[1].id, "warrant_id": c.jti(1)}));
    assert_permit(ask(right).await.ok());

    // The COAZ shape: the wrong subject, the wrong agent, no agent at all.
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["subject"]["id"] = json!(other.human);
    ask(wrong).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["context"]["agent"] = json!(c.agents[0].id);
    let reply = ask(wrong).await;
    reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(reply.text.contains("context.agent") && !reply.text.contains(c.agents[1].id.as_str()), "{}", reply.text);
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["context"].as_object_mut().unwrap().remove("agent");
    ask(wrong).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["context"]["warrant_id"] = json!("not-a-jti");
    ask(wrong).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["context"]["warrant_id"] = json!(42);
    ask(wrong).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    // A jti Warrant never issued, and a forged token: a recorded deny, never an allow.
    let mut unknown = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    unknown["context"]["warrant_id"] = json!("wrt_000000000000000000000000");
    assert_refused(ask(unknown).await.ok(), "invalid_token");
    let mut forged = by_token(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    forged["subject"]["properties"]["token"] = json!(format!("{}x", c.token(1)));
    assert_refused(ask(forged).await.ok(), "invalid_token");

    // In a batch, a mismatched entry is refused with its error, the others decided.
    let mut wrong = coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null);
    wrong["subject"]["id"] = json!(other.human);
    let batch = json!({"evaluations": [coaz(&c, 1, "crm.read", ("customers", "1"), Value::Null), wrong]});
    let answers = access(&s, "evaluations", &token, &batch).await.ok()["evaluations"].clone();
    assert_permit(&answers[0]);
    assert_eq!(answers[1]["decision"], false);
    assert_eq!(answers[1]["context"]["error"]["status"], 400, "{answers}");
    assert!(answers[1]["context"]["error"]["message"].as_str().unwrap().contains("subject.id"));
}

/// A batch about a fresh warrant (each probing deny climbs its warrant's escalation
/// ladder, so each run has its own): defaults, then five entries that override them.
/// Returns the answer and the warrant's id.
async fn batch(s: &Server, token: &str, semantic: Option<&str>) -> (Reply, String) {
    let c = s.chain(&["crm.read:customers/**", "crm.list"], &["crm.*"], 1, "read").await;
    let subject = json!({"type": "user", "id": c.warrants[0].1.typed.sub, "properties": {"token": c.token(0)}});
    let mut body = json!({
        "subject": subject, "action": {"name": "crm.read"}, "context": {"rows": 1},
        "evaluations": [
            {"resource": {"type": "customers", "id": "1"}},
            {"resource": {"type": "customers", "id": "../2"}},
            {"resource": {"type": "customers", "id": "3"}, "context": {"estimated_cost": 50_000}},
            {"resource": {"type": "customers", "id": "4"}, "action": {"name": "crm.list"}},
            {"resource": {"type": "customers", "id": "5"}},
        ],
    });
    if let Some(semantic) = semantic {
        body["options"] = json!({"evaluations_semantic": semantic});
    }
    (access(s, "evaluations", token, &body).await, c.jti(0))
}

/// The `code` of every answer of a batch, in order.
fn codes(reply: &Reply) -> Vec<String> {
    reply.ok()["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["context"]["code"].as_str().unwrap().to_owned())
        .collect()
}

/// How many decisions the audit log holds about warrant `jti`.
async fn recorded(s: &Server, jti: &str) -> usize {
    s.admin_get(&format!("/v1/audit?warrant={jti}&kind=decision")).await.ok()["records"].as_array().unwrap().len()
}

#[tokio::test]
async fn batches_apply_defaults_and_semantics_in_order() {
    let s = Server::start().await;
    let (_, token) = pep(&s, "pep", false).await;

    let (all, jti) = batch(&s, &token, None).await;
    assert_eq!(codes(&all), ["allow", "invalid_request", "policy", "allow", "allow"], "{}", all.text);
    assert_eq!(all.ok()["evaluations"][1]["decision"], false);
    let ids: Vec<u64> = all.ok()["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["context"]["decision_id"].as_str().unwrap()[4..].parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "recorded in request order: {ids:?}");
    assert_eq!(recorded(&s, &jti).await, 5);
    let first = s.admin_get(&format!("/v1/audit/dec_{}", ids[0])).await;
    assert_eq!(first.ok()["details"]["context"], json!({"rows": 1}), "the default context");
    let third = s.admin_get(&format!("/v1/audit/dec_{}", ids[2])).await;
    assert_eq!(third.ok()["details"]["context"], json!({"estimated_cost": 50_000}), "the entry's context replaces it");
    let fourth = s.admin_get(&format!("/v1/audit/dec_{}", ids[3])).await;
    assert_eq!(fourth.ok()["details"]["action"], "crm.list", "the entry's action overrides the default");
    let (explicit, _) = batch(&s, &token, Some("execute_all")).await;
    assert_eq!(codes(&explicit), codes(&all));
    // The other semantics stop, and nothing after the stop is decided or recorded.
    let (deny_first, jti) = batch(&s, &token, Some("deny_on_first_deny")).await;
    assert_eq!(codes(&deny_first), ["allow", "invalid_request"]);
    assert_eq!(recorded(&s, &jti).await, 2);
    let (permit_first, jti) = batch(&s, &token, Some("permit_on_first_permit")).await;
    assert_eq!(codes(&permit_first), ["allow"]);
    assert_eq!(recorded(&s, &jti).await, 1);

    // Without entries, the defaults are the one evaluation.
    let c = s.chain(&["crm.read"], &["crm.*"], 1, "read").await;
    let subject = json!({"type": "user", "id": c.warrants[0].1.typed.sub, "properties": {"token": c.token(0)}});
    let single =
        json!({"subject": subject, "action": {"name": "crm.read"}, "resource": {"type": "customers", "id": "9"}});
    assert_eq!(codes(&access(&s, "evaluations", &token, &single).await), ["allow"]);
    // An entry lacking an element, a bad semantic, too many entries: 400.
    let lacking = json!({"subject": subject, "evaluations": [{"resource": {"type": "customers", "id": "1"}}]});
    let reply = access(&s, "evaluations", &token, &lacking).await;
    reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(reply.text.contains("action"), "{}", reply.text);
    let mut bad = single.clone();
    bad["options"] = json!({"evaluations_semantic": "first_come"});
    access(&s, "evaluations", &token, &bad).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let many: Vec<Value> = (0..101).map(|i| json!({"resource": {"type": "customers", "id": i.to_string()}})).collect();
    let mut too_many = single.clone();
    too_many["evaluations"] = json!(many);
    access(&s, "evaluations", &token, &too_many).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(recorded(&s, &c.jti(0)).await, 1, "a refused batch decides nothing");
}

#[tokio::test]
async fn request_ids_errors_unknown_fields_metadata_and_plain_subjects() {
    let s = Server::start().await;
    let (_, token) = pep(&s, "pep", false).await;
    let (_, plain_token) = pep(&s, "api-gateway", true).await;
    let c = s.chain(&["crm.read"], &["crm.*"], 1, "read").await;
    let ask = by_token(&c, 0, "crm.read", ("customers", "1"), Value::Null);
    let with_id = |bearer: &str, body: &Value, id: &str| {
        s.http.post(s.url("/access/v1/evaluation")).bearer_auth(bearer).header("x-request-id", id).json(body)
    };

    // The request id comes back on every answer: a decision, a 400, a 401.
    let reply = s.send(with_id(&token, &ask, "req-1")).await;
    assert_permit(reply.ok());
    assert_eq!(reply.headers["x-request-id"], "req-1");
    let reply = s.send(with_id(&token, &json!({"action": {"name": "crm.read"}}), "req-2")).await;
    reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(reply.headers["x-request-id"], "req-2");
    let reply = s.send(with_id("wrong", &ask, "req-3")).await;
    reply.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(reply.headers["x-request-id"], "req-3");
    assert!(access(&s, "evaluation", &token, &ask).await.headers.get("x-request-id").is_none());

    // Missing elements and malformed JSON: 400 in the API's error body.
    for missing in ["subject", "action", "resource"] {
        let mut body = ask.clone();
        body.as_object_mut().unwrap().remove(missing);
        let reply = access(&s, "evaluation", &token, &body).await;
        reply.api_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(reply.text.contains(missing), "{}", reply.text);
    }
    let garbled =
        s.http.post(s.url("/access/v1/evaluation")).bearer_auth(&token).header("content-type", "application/json");
    s.send(garbled.body("{\"subject\":")).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut bad = ask.clone();
    bad["subject"]["properties"]["token"] = json!(7);
    access(&s, "evaluation", &token, &bad).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut bad = ask.clone();
    bad["context"] = json!({"approval_id": ["apr_x"]});
    access(&s, "evaluation", &token, &bad).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut bad = ask.clone();
    bad["action"]["properties"] = json!({"mcp": {"method": 1}});
    access(&s, "evaluation", &token, &bad).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");

    // Unknown fields are ignored, at every level.
    let mut extra = ask.clone();
    extra["future"] = json!({"a": 1});
    extra["subject"]["extra"] = json!(true);
    extra["action"]["extra"] = json!(true);
    extra["resource"]["extra"] = json!(true);
    assert_permit(&evaluate(&s, &token, &extra).await);

    // Decisions are counted in the metrics like any other (the three allows above, with
    // and without a request id, and with unknown fields); refused requests are not.
    let metrics = s.get("/metrics").await;
    let allowed = r#"warrant_decisions_total{code="allow",decision="allow"}"#;
    assert_eq!(crate::metrics::sample(&metrics.text, allowed), 3.0);
    assert_eq!(crate::metrics::sample(&metrics.text, "warrant_decision_seconds_count"), 3.0);

    // The metadata is public, with absolute URLs.
    let meta = s.get("/.well-known/authzen-configuration").await;
    let meta = meta.ok();
    assert_eq!(meta["policy_decision_point"], s.issuer.as_str());
    assert_eq!(meta["access_evaluation_endpoint"], format!("{}/access/v1/evaluation", s.issuer));
    assert_eq!(meta["access_evaluations_endpoint"], format!("{}/access/v1/evaluations", s.issuer));

    // A plain subject: refused to a credential without the right; decided by the
    // policies for one with it (an unregistered human is a recorded deny).
    let plain = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "can_read_todos"},
        "resource": {"type": "todo", "id": "1"}});
    access(&s, "evaluation", &token, &plain).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    let reply = access(&s, "evaluation", &plain_token, &plain).await;
    let reply = reply.ok();
    assert_eq!(reply["decision"], false, "{reply}");
    assert_eq!(reply["context"]["code"], "human", "{reply}");
    assert!(reply["context"]["decision_id"].as_str().is_some_and(|id| id.starts_with("dec_")), "{reply}");
    let mut stray = plain.clone();
    stray["context"] = json!({"agent": c.agents[0].id});
    access(&s, "evaluation", &plain_token, &stray).await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
}

/// Large payments need the agent's owner.
const APPROVAL_POLICY: &str = r#"
@id("large-payments-need-the-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;

#[tokio::test]
async fn a_pending_decision_round_trips_through_authzen_with_the_mcp_call_recorded() {
    let s = Server::start().await;
    s.write_policy("approvals.cedar", APPROVAL_POLICY);
    s.reload_policies().await.ok();
    let (_, token) = pep(&s, "mcp-gateway", false).await;
    let c = s.chain(&["payments.*"], &["payments.*"], 1, "pay supplier invoices").await;
    let owner = s.approver(&c.human).await;
    let mcp = json!({"method": "tools/call", "target": "send_payment", "upstream": "bank"});
    let pay = |approval: Option<&str>| {
        let mut context = json!({"amount": 5000, "currency": "EUR"});
        if let Some(id) = approval {
            context["approval_id"] = json!(id);
        }
        let mut body = coaz(&c, 0, "payments.send", ("payments", "inv-2"), context);
        body["action"]["properties"] = json!({"mcp": mcp});
        body
    };

    let pending = evaluate(&s, &token, &pay(None)).await;
    assert_eq!(pending["decision"], false, "{pending}");
    let ctx = &pending["context"];
    assert_eq!(ctx["outcome"], "pending");
    assert_eq!(ctx["code"], "approval_required");
    let id = ctx["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(ctx["poll"], format!("{}/v1/approvals/{id}", s.issuer));
    let approval = s.admin_get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(ctx["expires_at"], approval.ok()["expires_at"], "the approval's expiry");
    assert_eq!(approval.ok()["request"]["context"], json!({"amount": 5000, "currency": "EUR"}));
    let record = s.admin_get(&format!("/v1/audit/{}", ctx["decision_id"].as_str().unwrap())).await;
    assert_eq!(record.ok()["details"]["mcp"], mcp, "{}", record.text);
    // `/v1/authorize` asks the same and leaves the same trail.
    let direct = s
        .authorize_body(&json!({"token": c.token(0), "action": "payments.send", "resource": "payments/inv-2",
            "context": {"amount": 5000, "currency": "EUR"}}))
        .await;
    assert_eq!(direct.ok()["decision"], "pending", "{}", direct.text);
    let (a, b) = (
        trace(&s, direct.ok()["decision_id"].as_str().unwrap()).await,
        trace(&s, ctx["decision_id"].as_str().unwrap()).await,
    );
    for part in ["human", "task", "agents", "warrants", "policies"] {
        assert_eq!(a[part], b[part], "{part}");
    }
    assert_eq!(b["policies"]["deciding"], json!(["large-payments-need-the-owner"]));
    assert_eq!(record.ok()["details"]["pep"], "mcp-gateway");

    // Not approved yet: refused.
    assert_refused(&evaluate(&s, &token, &pay(Some(&id))).await, "approval");
    let approved =
        s.send(s.http.post(s.url(&format!("/v1/approvals/{id}/approve"))).bearer_auth(&owner).json(&json!({}))).await;
    assert_eq!(approved.ok()["status"], "approved");
    // Approved: the retry is allowed once.
    let allowed = evaluate(&s, &token, &pay(Some(&id))).await;
    assert_permit(&allowed);
    assert_eq!(allowed["context"]["approval_id"], id.as_str());
    assert!(allowed["context"].get("poll").is_none(), "{allowed}");
    assert_refused(&evaluate(&s, &token, &pay(Some(&id))).await, "approval");
    assert_eq!(s.verify_audit().await["ok"], true);
}

/// The AuthZEN interop "todo" scenario over HTTP, as a PEP would run it: the example's
/// policies and schema installed, its users registered with their roles, and every
/// decision of the suite asked one by one and then all in one batch: 100% must match.
#[tokio::test]
async fn the_todo_interop_decisions_all_hold_over_http() {
    let s = Server::start().await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/authzen-todo");
    for name in ["todo.cedar", "warrant.cedarschema"] {
        s.write_policy(name, &std::fs::read_to_string(format!("{example}/{name}")).unwrap());
    }
    s.reload_policies().await.ok();
    let suite: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{example}/decisions.json")).unwrap()).unwrap();
    for (email, roles) in suite["users"].as_object().unwrap() {
        let body = json!({"name": email, "email": email, "entitlements": [], "roles": roles});
        s.admin_post("/v1/humans", &body).await.expect(StatusCode::CREATED);
    }
    let (_, todo_backend) = pep(&s, "todo-backend", true).await;
    let cases = suite["decisions"].as_array().unwrap();
    assert_eq!(cases.len(), 40, "every decision of the suite");

    let mut wrong = Vec::new();
    for case in cases {
        let reply = access(&s, "evaluation", &todo_backend, &case["request"]).await;
        let answer = reply.ok();
        if answer["decision"] != case["expected"] {
            wrong.push(format!("{}: expected {}, got {answer}", case["request"], case["expected"]));
        }
    }
    assert!(wrong.is_empty(), "{} of {} interop decisions differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));

    // The same suite as one batch (`evaluations`, every entry stated in full).
    let batch = json!({"evaluations": cases.iter().map(|c| c["request"].clone()).collect::<Vec<_>>()});
    let answers =
        access(&s, "evaluations", &todo_backend, &batch).await.ok()["evaluations"].as_array().unwrap().clone();
    assert_eq!(answers.len(), cases.len());
    for (case, answer) in cases.iter().zip(&answers) {
        assert_eq!(answer["decision"], case["expected"], "{}: {answer}", case["request"]);
    }
}
