//! Runtime guardrails through the real server (docs/guardrails.md): an agent that spikes,
//! wanders and probes is quarantined with its whole subtree while a steady one never is;
//! a budget shared by a delegation tree is never overspent, even concurrently, and
//! survives a restart; human approval (step-up) end to end; the live event stream; and a
//! rate limit counted over an agent's subtree.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use warrant_core::UnixTime;
use warrant_server::config::GuardFile;
use warrant_server::FileConfig;

use crate::testkit::{assert_allow, assert_deny, assert_json, until, Server};

/// What the agents of the quarantine tests may do.
const WIDE: &[&str] = &["tickets.*", "crm.*", "billing.*"];
/// Allowed requests of the quarantine test's baseline phase (about 10 per 1-s window).
const BASELINE: usize = 50;
/// The most requests of its burst (it stops at the first `rate_spike`).
const BURST_MAX: usize = 200;
/// Requests of the burst in flight at once: one, so the burst ends at the request that
/// raised the spike. Requests of a larger batch answered after it are clean activity,
/// which gives trust back (up to 0.2 an hour), so whether five probing denies then took
/// trust below the quarantine threshold, or the probing ladder revoked the warrant first,
/// depended on the order the batch was answered in.
const BURST_BATCH: usize = 1;

/// Baselines that learn in seconds: 1-s rate windows, 20 allowed decisions, no minimum age.
fn fast() -> FileConfig {
    FileConfig {
        guard: Some(GuardFile {
            window_secs: Some(1),
            learning_decisions: Some(20),
            learning_secs: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `POST /v1/authorize` with `body`; asserts a well-formed 200 answer (allow, deny or
/// pending) and returns it.
async fn decide(s: &Server, body: &Value) -> Value {
    let reply = s.authorize_body(body).await;
    assert_json(&reply);
    let d = reply.ok().clone();
    assert_shape(&d);
    d
}

/// The wire shape of a decision, `pending` included.
#[track_caller]
fn assert_shape(d: &Value) {
    let decision = d["decision"].as_str().unwrap_or_else(|| panic!("no decision: {d}"));
    assert!(["allow", "deny", "pending"].contains(&decision), "{d}");
    assert!(d["decision_id"].as_str().is_some_and(|id| id.starts_with("dec_")), "{d}");
    assert!(d["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{d}");
    assert!(d["code"].is_string(), "{d}");
}

/// The same request, sent from a task of its own (for concurrent load).
fn spawn_decide(s: &Server, body: Value) -> JoinHandle<Value> {
    let (http, url) = (s.http.clone(), s.url("/v1/authorize"));
    tokio::spawn(async move {
        let response = http.post(url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let d: Value = response.json().await.unwrap();
        assert_shape(&d);
        d
    })
}

/// The request body of `action` on `resource` with telemetry `context` (none when null).
fn request(token: &str, action: &str, resource: &str, context: Value) -> Value {
    let mut body = json!({"token": token, "action": action, "resource": resource});
    if !context.is_null() {
        body["context"] = context;
    }
    body
}

/// The kinds of the signals a decision carries.
fn signal_kinds(d: &Value) -> Vec<String> {
    d["signals"]
        .as_array()
        .map(|a| a.iter().map(|s| s["kind"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Asserts that `d` raised no signal but, at worst, `off_hours` (the test may cross an
/// hour boundary, an hour the baseline has never seen).
#[track_caller]
fn assert_unremarkable(d: &Value) {
    for kind in signal_kinds(d) {
        assert_eq!(kind, "off_hours", "a usual request raised a signal: {d}");
    }
}

/// Notes the signals of `d`, and `d` itself if it is the first quarantine.
fn note(d: &Value, seen: &mut BTreeSet<String>, quarantine: &mut Option<Value>) {
    seen.extend(signal_kinds(d));
    if d["code"] == "quarantine" && quarantine.is_none() {
        *quarantine = Some(d.clone());
    }
}

fn trust_of(d: &Value) -> f64 {
    d["trust"].as_f64().unwrap_or_else(|| panic!("no trust in {d}"))
}

/// `GET /v1/agents/{id}/trust`.
async fn trust_view(s: &Server, agent: &str) -> Value {
    let view = s.admin_get(&format!("/v1/agents/{agent}/trust")).await.ok().clone();
    assert_eq!(view["agent"], agent, "{view}");
    view
}

/// `GET /v1/agents/{id}`'s status.
async fn status(s: &Server, agent: &str) -> String {
    s.admin_get(&format!("/v1/agents/{agent}")).await.ok()["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn misbehaving_agent_is_quarantined_with_its_subtree() {
    let s = Server::start_with(fast()).await;
    let human = s.human(WIDE).await;
    let session = s.session(&human).await;
    let a = s.agent(&human, "delegated", WIDE).await;
    let b = s.agent(&human, "delegated", WIDE).await;
    let (main, main_claims) = s.root_warrant(&session, &a, "triage the support queue").await;
    let (other, other_claims) = s.root_warrant(&session, &a, "weekly digest").await;
    let (sub, sub_claims) = s.sub_warrant(&main, &b).await;
    assert_ne!(main_claims.typed.task.id, other_claims.typed.task.id, "two tasks");
    assert_allow(&s.authorize(&sub, "tickets.read", "tickets/acme/1", Value::Null).await);
    assert_allow(&s.authorize(&other, "tickets.read", "tickets/acme/1", Value::Null).await);

    // Baseline: about ten usual requests per one-second window, for about five windows.
    for n in 0..BASELINE {
        let d = s.authorize(&main, "tickets.read", &format!("tickets/acme/{n}"), Value::Null).await;
        assert_allow(&d);
        assert_unremarkable(&d);
        // Wall-clock pacing by necessity: the baseline counts requests per one-second
        // window of the server's clock, the real one (a version on a manual clock belongs
        // in the engine's own tests).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let learned = trust_view(&s, &a.id).await;
    assert_eq!(learned["learning"], false, "{learned}");
    assert!(learned["allowed"].as_u64().unwrap() >= BASELINE as u64, "{learned}");
    assert!(learned["actions"]["tickets.read"].as_u64().is_some(), "{learned}");
    assert!(learned["prefixes"]["tickets/acme"].as_u64().is_some(), "{learned}");
    assert!(learned["trust"].as_f64().unwrap() > 0.9, "{learned}");

    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut quarantine: Option<Value> = None;

    // A burst, as fast as it goes, until the baseline calls it a spike.
    let mut spike = None;
    let mut sent = 0;
    while sent < BURST_MAX && spike.is_none() {
        let batch: Vec<_> = (sent..sent + BURST_BATCH)
            .map(|n| spawn_decide(&s, request(&main, "tickets.read", &format!("tickets/acme/{n}"), Value::Null)))
            .collect();
        sent += BURST_BATCH;
        for handle in batch {
            let d = handle.await.unwrap();
            note(&d, &mut seen, &mut quarantine);
            if signal_kinds(&d).iter().any(|k| k == "rate_spike") {
                spike = Some(d);
            }
        }
    }
    let spike = spike.unwrap_or_else(|| panic!("{sent} requests in a burst raised no rate_spike"));
    assert_eq!(spike["decision"], "allow", "a spike alone lowers trust, it does not deny: {spike}");
    assert!(trust_of(&spike) <= 0.75 + 1e-6, "{spike}");

    // Things it never did: another action on another resource, twice.
    for (action, resource) in [("crm.read", "crm/x/1"), ("billing.read", "billing/y/1")] {
        let d = decide(&s, &request(&main, action, resource, Value::Null)).await;
        note(&d, &mut seen, &mut quarantine);
        if d["code"] == "quarantine" {
            break;
        }
        assert_allow(&d);
        let kinds = signal_kinds(&d);
        assert!(kinds.contains(&"novel_action".to_owned()) && kinds.contains(&"novel_resource".to_owned()), "{d}");
    }

    // Probing outside its scope until it is stopped.
    let mut probes = 0;
    while quarantine.is_none() {
        assert!(probes < 20, "20 probing denies after a spike and novelties did not quarantine the agent");
        let d = decide(&s, &request(&main, "hr.read", &format!("hr/payroll/{probes}"), Value::Null)).await;
        probes += 1;
        note(&d, &mut seen, &mut quarantine);
        if d["code"] != "quarantine" {
            assert_deny(&d, "scope");
        }
    }
    let q = quarantine.unwrap();
    assert_deny(&q, "quarantine");
    let why = q["quarantined"].as_str().unwrap_or_else(|| panic!("no `quarantined` in {q}"));
    assert!(why.contains("below the quarantine threshold"), "{q}");
    assert!(trust_of(&q) < 0.3, "{q}");
    if probes > 0 {
        // The expected path: 1 - 0.25 (spike) - 2 x 0.2 (novelties) - 0.25 (5 denies).
        assert!(signal_kinds(&q).contains(&"deny_streak".to_owned()), "{q}");
        assert!(why.contains("deny_streak"), "{q}");
    }
    for kind in ["rate_spike", "novel_action", "novel_resource"] {
        assert!(seen.contains(kind), "no {kind} signal on the way to quarantine; saw {seen:?}");
    }
    // The decision's audit record says so.
    let record = s.admin_get(&format!("/v1/audit/{}", q["decision_id"].as_str().unwrap())).await;
    assert_eq!(record.ok()["details"]["quarantined"], why, "{}", record.text);

    // Suspended, its whole subtree revoked on the very next decision.
    assert_eq!(status(&s, &a.id).await, "suspended");
    for token in [&sub, &other, &main] {
        let d = s.authorize(token, "tickets.read", "tickets/acme/1", Value::Null).await;
        assert_deny(&d, "revoked");
        assert!(d["reasons"].to_string().contains("quarantined:"), "{d}");
    }
    assert_eq!(status(&s, &b.id).await, "active", "only the quarantined agent is suspended");
    s.delegated_root(&session, &a, &[]).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // The revocation is audited with the reason.
    let audit = s.admin_get(&format!("/v1/audit?kind=revocation&agent={}", a.id)).await;
    let records = audit.ok()["records"].as_array().unwrap().clone();
    let revocation = records
        .iter()
        .find(|r| r["details"]["reason"].as_str().is_some_and(|r| r.starts_with("quarantined:")))
        .unwrap_or_else(|| panic!("no quarantine revocation for {}: {records:?}", a.id));
    assert_eq!(revocation["kind"], "revocation");
    assert_eq!(revocation["agent"], a.id.as_str());
    assert_eq!(revocation["details"]["kind"], "agent");
    let revoked: BTreeSet<&str> =
        revocation["details"]["revoked_warrants"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let expected: BTreeSet<String> =
        [&main_claims, &other_claims, &sub_claims].iter().map(|c| c.typed.jti.to_string()).collect();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(revoked, expected, "{revocation}");

    // The owner's review: low trust, and why.
    let review = trust_view(&s, &a.id).await;
    assert!(review["trust"].as_f64().unwrap() < 0.3, "{review}");
    assert!((review["quarantine_below"].as_f64().unwrap() - 0.3).abs() < 1e-9, "{review}");
    let recent: BTreeSet<&str> =
        review["recent_signals"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    for kind in ["rate_spike", "novel_action", "novel_resource"] {
        assert!(recent.contains(kind), "{review}");
    }

    // Resumed: trust back to at least 0.6, a fresh warrant works on its usual resource;
    // the revoked warrants stay revoked.
    let resumed = s.admin_action(&format!("/v1/agents/{}/resume", a.id)).await;
    assert_eq!(resumed.ok()["status"], "active");
    let review = trust_view(&s, &a.id).await;
    let trust = review["trust"].as_f64().unwrap();
    assert!((0.6..=1.0).contains(&trust), "{review}");
    let (fresh, _) = s.root_warrant(&session, &a, "triage the support queue, again").await;
    let d = s.authorize(&fresh, "tickets.read", "tickets/acme/7", Value::Null).await;
    assert_allow(&d);
    assert!(trust_of(&d) >= 0.6, "{d}");
    assert_deny(&s.authorize(&main, "tickets.read", "tickets/acme/7", Value::Null).await, "revoked");
    assert_deny(&s.authorize(&sub, "tickets.read", "tickets/acme/7", Value::Null).await, "revoked");
    assert_eq!(s.verify_audit().await["ok"], true);
}

#[tokio::test]
async fn well_behaved_agent_is_never_quarantined() {
    let s = Server::start_with(fast()).await;
    let c = s.chain(WIDE, WIDE, 1, "answer tickets all day").await;
    // As many requests as the misbehaving agent could make at most, evenly: at least 60 ms
    // apart, so never more than 17 in a one-second window.
    let total = BASELINE + BURST_MAX;
    let mut lowest = 1.0f64;
    for n in 0..total {
        let d = s.authorize(c.token(0), "tickets.read", &format!("tickets/acme/{n}"), Value::Null).await;
        assert_allow(&d);
        assert_unremarkable(&d);
        assert!(d.get("quarantined").is_none(), "{d}");
        lowest = lowest.min(trust_of(&d));
        // Wall-clock pacing by necessity, as in the test above: the rate windows are
        // seconds of the server's real clock.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(lowest >= 0.7, "trust fell to {lowest}");
    let view = trust_view(&s, &c.agents[0].id).await;
    assert_eq!(view["learning"], false, "{view}");
    assert!(view["trust"].as_f64().unwrap() >= 0.7, "{view}");
    assert!(view["allowed"].as_u64().unwrap() >= total as u64, "{view}");
    for signal in view["recent_signals"].as_array().unwrap() {
        assert_eq!(signal["kind"], "off_hours", "{view}");
    }
    assert_eq!(status(&s, &c.agents[0].id).await, "active");
}

/// The `estimated_cost` budget of a token response, checked against the warrant's claim.
async fn minted_budget(s: &Server, reply: &crate::testkit::Reply) -> (String, i64) {
    let budget = reply.ok()["budget"]["estimated_cost"].as_i64().unwrap_or_else(|| panic!("no budget: {}", reply.text));
    let (token, decoded) = s.warrant(reply).await;
    assert_eq!(decoded.claims["budget"], json!({"estimated_cost": budget}), "{}", decoded.claims);
    (token, budget)
}

/// Spends `cost` with `token`.
async fn spend(s: &Server, token: &str, cost: i64) -> Value {
    s.authorize(token, "crm.read", "leads/1", json!({"estimated_cost": cost})).await
}

/// Asserts a budget deny that says `left` is left.
#[track_caller]
fn assert_left(d: &Value, left: i64) {
    assert_deny(d, "budget");
    assert!(d["reasons"].to_string().contains(&format!("has {left} left")), "expected {left} left: {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_shared_by_a_three_level_tree_is_never_overspent_and_survives_restart() {
    const ROOT: i64 = 1000;
    const CHILD: i64 = 600;
    const PER_WARRANT: usize = 40;
    let mut s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let session = s.session(&human).await;
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(s.agent(&human, "delegated", &["crm.*"]).await);
    }

    // Minting: the root gets what it asks, the child what it asks within what is left,
    // the grandchild what the child has left.
    let reply = s
        .delegated_root(&session, &agents[0], &[("task_purpose", "enrich leads"), ("budget", "estimated_cost=1000")])
        .await;
    let (root, budget) = minted_budget(&s, &reply).await;
    assert_eq!(budget, ROOT);
    let (child, budget) =
        minted_budget(&s, &s.delegate(&root, &agents[1], &[("budget", "estimated_cost=600")]).await).await;
    assert_eq!(budget, CHILD);
    let (grand, budget) = minted_budget(&s, &s.delegate(&child, &agents[2], &[]).await).await;
    assert_eq!(budget, CHILD, "the child has all of its 600 left");
    // Asking for more than the parent has gets what it has.
    let greedy = s.agent(&human, "delegated", &["crm.*"]).await;
    let (_, budget) = minted_budget(&s, &s.delegate(&root, &greedy, &[("budget", "estimated_cost=5000")]).await).await;
    assert_eq!(budget, ROOT);
    // A malformed budget is refused.
    for bad in
        ["estimated_cost=lots", "estimated_cost=-5", "estimated_cost", "Cost=5", "estimated_cost=1 estimated_cost=2"]
    {
        s.delegated_root(&session, &agents[0], &[("budget", bad)])
            .await
            .oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        s.delegate(&root, &greedy, &[("budget", bad)]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // Amounts that cannot be charged are denied, and charge nothing.
    assert_deny(&spend(&s, &grand, -5).await, "budget");
    let float = s.authorize(&grand, "crm.read", "leads/1", json!({"estimated_cost": 7.5})).await;
    // Cedar takes no fractions: refused before any budget is looked at.
    assert_deny(&float, "invalid_request");
    let text = s.authorize(&grand, "crm.read", "leads/1", json!({"estimated_cost": "12"})).await;
    assert_eq!(text["decision"], "deny", "{text}");
    assert_left(&spend(&s, &grand, CHILD + 1).await, CHILD);
    assert_left(&spend(&s, &root, ROOT + 1).await, ROOT);

    // The whole tree spends at once: 3 x 40 requests costing 7 to 30, about twice the root.
    let tokens = [root.clone(), child.clone(), grand.clone()];
    let mut handles = Vec::new();
    for i in 0..PER_WARRANT {
        for (w, token) in tokens.iter().enumerate() {
            let cost = 7 + i64::try_from((i * 7 + w * 11) % 24).unwrap();
            let body = request(token, "crm.read", &format!("leads/{i}"), json!({"estimated_cost": cost}));
            handles.push((w, cost, spawn_decide(&s, body)));
        }
    }
    let (mut total, mut subtree, mut budget_denies) = (0i64, 0i64, 0);
    for (w, cost, handle) in handles {
        let d = handle.await.unwrap();
        match d["code"].as_str().unwrap() {
            "allow" => {
                total += cost;
                if w > 0 {
                    subtree += cost;
                }
            }
            "budget" => budget_denies += 1,
            other => panic!("unexpected {other}: {d}"),
        }
    }
    assert!(total <= ROOT, "the tree spent {total} of {ROOT}");
    assert!(subtree <= CHILD, "the child's subtree spent {subtree} of {CHILD}");
    assert!(budget_denies > 0, "some requests must have found the budget spent");
    assert!(total > ROOT / 2, "too little was allowed: {total}");

    // The server counted exactly what it allowed.
    let root_left = ROOT - total;
    let child_left = (CHILD - subtree).min(root_left);
    assert_left(&spend(&s, &root, root_left + 1).await, root_left);
    assert_left(&spend(&s, &child, child_left + 1).await, child_left);
    assert_left(&spend(&s, &grand, child_left + 1).await, child_left);

    // After a restart the spend is still there.
    s.restart().await;
    assert_left(&spend(&s, &root, root_left + 1).await, root_left);
    assert_left(&spend(&s, &child, child_left + 1).await, child_left);
    assert_left(&spend(&s, &grand, child_left + 1).await, child_left);
    // A delegation minted now gets what is left, not what was once given.
    let late = s.agent(&human, "delegated", &["crm.*"]).await;
    let (_, budget) = minted_budget(&s, &s.delegate(&child, &late, &[]).await).await;
    assert_eq!(budget, child_left);
    let late_root = s.agent(&human, "delegated", &["crm.*"]).await;
    let (_, budget) =
        minted_budget(&s, &s.delegate(&root, &late_root, &[("budget", "estimated_cost=100000")]).await).await;
    assert_eq!(budget, root_left);

    // What is left can be spent, to the unit, and then nothing more.
    assert_allow(&spend(&s, &grand, child_left).await);
    let root_left = root_left - child_left;
    assert_allow(&spend(&s, &root, root_left).await);
    assert_left(&spend(&s, &root, 1).await, 0);
    assert_left(&spend(&s, &child, 1).await, 0);
    assert_left(&spend(&s, &grand, 1).await, 0);
    // Requests reporting no cost spend nothing and stay allowed.
    assert_allow(&s.authorize(&grand, "crm.read", "leads/1", Value::Null).await);
    assert_eq!(s.verify_audit().await["ok"], true);
}

/// Large payments need the agent's owner.
pub(crate) const APPROVAL_POLICY: &str = r#"
@id("large-payments-need-the-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;

/// An export is exfiltration: quarantine at once.
const QUARANTINE_POLICY: &str = r#"
@id("exports-quarantine")
@quarantine
forbid (principal, action == Warrant::Action::"crm.export", resource);
"#;

/// Installs `policies` (name, text) and reloads; asserts they are in force.
pub(crate) async fn install(s: &Server, policies: &[(&str, &str)]) {
    for (name, text) in policies {
        s.write_policy(name, text);
    }
    s.reload_policies().await.ok();
    let shown = s.admin_get("/v1/policies").await;
    let text = shown.ok()["text"].as_str().unwrap().to_owned();
    for (_, policy) in policies {
        assert!(text.contains(policy.trim()), "not in force: {policy}");
    }
}

fn pay(token: &str, resource: &str, amount: i64, approval: Option<&str>) -> Value {
    let mut body = request(token, "payments.send", resource, json!({"amount": amount, "currency": "EUR"}));
    if let Some(id) = approval {
        body["approval_id"] = json!(id);
    }
    body
}

/// Asserts a `pending` answer and returns its approval id.
#[track_caller]
fn assert_pending(d: &Value) -> String {
    assert_eq!(d["decision"], "pending", "{d}");
    assert_eq!(d["code"], "approval_required", "{d}");
    assert_eq!(d["policies"], json!(["large-payments-need-the-owner"]), "{d}");
    let id = d["approval_id"].as_str().unwrap_or_else(|| panic!("no approval_id: {d}"));
    assert!(id.starts_with("apr_"), "{d}");
    id.to_owned()
}

/// Approves or rejects `id` as `bearer`.
async fn decide_approval(s: &Server, id: &str, verb: &str, bearer: &str, body: Value) -> crate::testkit::Reply {
    s.send(s.http.post(s.url(&format!("/v1/approvals/{id}/{verb}"))).bearer_auth(bearer).json(&body)).await
}

/// `GET /v1/approvals/{id}` as `bearer`.
async fn get_approval(s: &Server, id: &str, bearer: &str) -> crate::testkit::Reply {
    s.send(s.http.get(s.url(&format!("/v1/approvals/{id}"))).bearer_auth(bearer)).await
}

#[tokio::test]
async fn approval_flow_end_to_end() {
    let s = Server::start().await;
    install(&s, &[("approvals.cedar", APPROVAL_POLICY)]).await;
    let c = s.chain(&["payments.*"], &["payments.*"], 1, "pay supplier invoices").await;
    let owner = c.human.clone();
    // The delegation session the agent was handed (its exchange's subject token) is
    // good for nothing here: the owner decides with an approver token of their own.
    let delegation_session = c.session.clone();
    let owner_session = s.approver(&owner).await;
    let stranger = s.human(&["payments.*"]).await;
    let stranger_session = s.approver(&stranger).await;
    let t = c.token(0);

    // Below the threshold nothing is asked.
    assert_allow(&decide(&s, &pay(t, "payments/inv-1", 500, None)).await);

    // Above it: pending, with an approval the owner sees.
    let id = assert_pending(&decide(&s, &pay(t, "payments/inv-2", 5000, None)).await);
    let listed = s.admin_get("/v1/approvals?status=pending").await;
    let approvals = listed.ok()["approvals"].as_array().unwrap().clone();
    let a =
        approvals.iter().find(|a| a["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not listed: {approvals:?}"));
    assert_eq!(a["status"], "pending");
    assert_eq!(a["approver_role"], "owner");
    assert_eq!(a["approver"], owner.as_str());
    assert_eq!(a["agent"], c.agents[0].id.as_str());
    assert_eq!(a["human"], owner.as_str());
    assert_eq!(a["task"], c.task().as_str());
    assert_eq!(a["warrant"], c.jti(0).as_str());
    assert_eq!(a["action"], "payments.send");
    assert_eq!(a["resource"], "payments/inv-2");
    assert_eq!(a["request"]["context"]["amount"], 5000);
    assert_eq!(a["policies"], json!(["large-payments-need-the-owner"]));
    assert!(a["expires_at"].as_i64().unwrap() > a["created_at"].as_i64().unwrap(), "{a}");
    assert_eq!(get_approval(&s, &id, &owner_session).await.ok()["id"], id.as_str());
    let mine = s.send(s.http.get(s.url("/v1/approvals")).bearer_auth(&owner_session)).await;
    assert!(mine.ok()["approvals"].as_array().unwrap().iter().any(|a| a["id"] == id.as_str()));

    // Nobody else decides it, or even sees it.
    decide_approval(&s, &id, "approve", &stranger_session, json!({}))
        .await
        .api_error(StatusCode::FORBIDDEN, "forbidden");
    get_approval(&s, &id, &stranger_session).await.api_error(StatusCode::FORBIDDEN, "forbidden");
    let theirs = s.send(s.http.get(s.url("/v1/approvals")).bearer_auth(&stranger_session)).await;
    assert!(theirs.ok()["approvals"].as_array().unwrap().iter().all(|a| a["id"] != id.as_str()));
    let anonymous = s.send(s.http.post(s.url(&format!("/v1/approvals/{id}/approve")))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    let forged = decide_approval(&s, &id, "approve", t, json!({})).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "a warrant is not an approver: {}", forged.text);
    // The agent holds the owner's delegation session: it cannot approve its own step-up,
    // nor list or read the owner's approvals with it.
    let own_step_up = decide_approval(&s, &id, "approve", &delegation_session, json!({})).await;
    assert_eq!(own_step_up.status, StatusCode::UNAUTHORIZED, "a delegation session approved: {}", own_step_up.text);
    let read = get_approval(&s, &id, &delegation_session).await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED, "{}", read.text);
    // An approver token is no subject token either.
    let exchanged = s.delegated_root(&owner_session, &c.agents[0], &[("task_purpose", "approver as subject")]).await;
    exchanged.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Retrying before it is approved is a deny.
    assert_deny(&decide(&s, &pay(t, "payments/inv-2", 5000, Some(&id))).await, "approval");

    // The owner approves.
    let approved = decide_approval(&s, &id, "approve", &owner_session, json!({"reason": "invoice checked"})).await;
    let approved = approved.ok();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], owner.as_str());
    assert_eq!(approved["reason"], "invoice checked");

    // Only the very request it was asked for, once.
    assert_deny(&decide(&s, &pay(t, "payments/inv-2", 50_000, Some(&id))).await, "approval");
    assert_deny(&decide(&s, &pay(t, "payments/inv-3", 5000, Some(&id))).await, "approval");
    let allowed = decide(&s, &pay(t, "payments/inv-2", 5000, Some(&id))).await;
    assert_allow(&allowed);
    assert_eq!(allowed["approval_id"], id.as_str());
    assert_deny(&decide(&s, &pay(t, "payments/inv-2", 5000, Some(&id))).await, "approval");
    // Without it, the same request asks again.
    let again = assert_pending(&decide(&s, &pay(t, "payments/inv-2", 5000, None)).await);
    assert_ne!(again, id);
    decide_approval(&s, &id, "approve", &owner_session, json!({})).await.api_error(StatusCode::CONFLICT, "conflict");
    let used = get_approval(&s, &id, &s.admin).await;
    assert_eq!(used.ok()["status"], "used");
    assert!(used.ok()["used_at"].as_i64().is_some(), "{}", used.text);

    // Rejected: the retry is a deny, and it cannot be approved afterwards.
    let rejected_id = assert_pending(&decide(&s, &pay(t, "payments/inv-4", 7000, None)).await);
    let rejected = decide_approval(&s, &rejected_id, "reject", &owner_session, json!({"reason": "not budgeted"})).await;
    assert_eq!(rejected.ok()["status"], "rejected");
    assert_eq!(rejected.ok()["reason"], "not budgeted");
    assert_deny(&decide(&s, &pay(t, "payments/inv-4", 7000, Some(&rejected_id))).await, "approval");
    decide_approval(&s, &rejected_id, "approve", &s.admin, json!({})).await.api_error(StatusCode::CONFLICT, "conflict");

    // Every step is in the audit log.
    let audit = s.admin_get("/v1/audit?kind=approval&order=oldest").await;
    let records = audit.ok()["records"].as_array().unwrap().clone();
    let ops = |approval: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["details"]["approval_id"] == approval)
            .map(|r| r["details"]["op"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ops(&id), ["opened", "approved", "used"], "{records:?}");
    assert_eq!(ops(&rejected_id), ["opened", "rejected"], "{records:?}");
    assert!(records.iter().all(|r| r["kind"] == "approval" && r["agent"] == c.agents[0].id.as_str()));
    assert_eq!(s.verify_audit().await["ok"], true);

    // Expiry, on servers with one-second limits: an undecided approval lapses, and so
    // does an approved one nobody used.
    let undecided = Server::start_with(FileConfig {
        guard: Some(GuardFile { approval_ttl: Some(1), ..Default::default() }),
        ..Default::default()
    })
    .await;
    let unused = Server::start_with(FileConfig {
        guard: Some(GuardFile { approval_use_within: Some(1), ..Default::default() }),
        ..Default::default()
    })
    .await;
    install(&undecided, &[("approvals.cedar", APPROVAL_POLICY)]).await;
    install(&unused, &[("approvals.cedar", APPROVAL_POLICY)]).await;
    let cu = undecided.chain(&["payments.*"], &["payments.*"], 1, "pay").await;
    let cn = unused.chain(&["payments.*"], &["payments.*"], 1, "pay").await;
    let lapsing = assert_pending(&decide(&undecided, &pay(cu.token(0), "payments/inv-9", 5000, None)).await);
    let idle = assert_pending(&decide(&unused, &pay(cn.token(0), "payments/inv-9", 5000, None)).await);
    let approved = decide_approval(&unused, &idle, "approve", &unused.approver(&cn.human).await, json!({})).await;
    assert_eq!(approved.ok()["status"], "approved");
    // Both lapse once the server's clock reaches their `expires_at`, a second away: a
    // wall-clock wait by necessity (see `until`), as for any expiry through the server.
    let lapses = get_approval(&undecided, &lapsing, &undecided.admin).await.ok()["expires_at"].as_i64().unwrap();
    let unused_lapses = approved.ok()["expires_at"].as_i64().unwrap();
    until(UnixTime(lapses.max(unused_lapses) + 1)).await;
    decide_approval(&undecided, &lapsing, "approve", &undecided.approver(&cu.human).await, json!({}))
        .await
        .api_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(get_approval(&undecided, &lapsing, &undecided.admin).await.ok()["status"], "expired");
    let expired = undecided.admin_get("/v1/approvals?status=expired").await;
    assert!(expired.ok()["approvals"].as_array().unwrap().iter().any(|a| a["id"] == lapsing.as_str()));
    assert_deny(&decide(&undecided, &pay(cu.token(0), "payments/inv-9", 5000, Some(&lapsing))).await, "approval");
    assert_deny(&decide(&unused, &pay(cn.token(0), "payments/inv-9", 5000, Some(&idle))).await, "approval");
    assert_eq!(get_approval(&unused, &idle, &unused.admin).await.ok()["status"], "expired");
}

/// One server-sent event.
#[derive(Debug)]
struct Frame {
    event: String,
    data: Value,
}

/// Reads `response` until a frame `want` accepts arrives, for at most `wait`; every frame
/// read on the way is appended to `frames`.
async fn read_until(
    response: &mut reqwest::Response,
    buffer: &mut String,
    frames: &mut Vec<Frame>,
    wait: Duration,
    want: impl Fn(&Frame) -> bool,
) -> bool {
    // A real socket read: the bound makes a missing event fail the test instead of
    // hanging it; events are written as they are published, so it is never reached when
    // the server behaves.
    let deadline = Instant::now() + wait;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let raw: String = buffer.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in raw.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() && data.is_empty() {
                continue; // a keep-alive comment
            }
            let frame = Frame { event, data: serde_json::from_str(&data).unwrap_or(Value::Null) };
            let found = want(&frame);
            frames.push(frame);
            if found {
                return true;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(bytes))) => buffer.push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
            _ => return false,
        }
    }
}

#[tokio::test]
async fn events_stream_quarantine_and_approvals() {
    let s = Server::start().await.over_socket();
    install(&s, &[("approvals.cedar", APPROVAL_POLICY), ("quarantine.cedar", QUARANTINE_POLICY)]).await;
    let c = s.chain(&["payments.*", "crm.*"], &["payments.*", "crm.*"], 1, "pay and report").await;
    let agent = c.agents[0].id.clone();

    s.admin_get("/v1/events?kind=bogus").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    s.admin_get("/v1/events?kind=approval,bogus").await.api_error(StatusCode::BAD_REQUEST, "invalid_request");
    let anonymous = s.get("/v1/events").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    let warrant_bearer = s.send(s.http.get(s.url("/v1/events")).bearer_auth(c.token(0))).await;
    assert_eq!(warrant_bearer.status, StatusCode::UNAUTHORIZED, "{}", warrant_bearer.text);

    let mut stream =
        s.http.get(s.url("/v1/events?kind=quarantine,approval")).bearer_auth(&s.admin).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let content_type = stream.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let (mut buffer, mut frames) = (String::new(), Vec::new());

    // A decision that is not of a wanted kind is not streamed; an approval is.
    assert_allow(&decide(&s, &pay(c.token(0), "payments/inv-1", 10, None)).await);
    let id = assert_pending(&decide(&s, &pay(c.token(0), "payments/inv-2", 5000, None)).await);
    let got =
        read_until(&mut stream, &mut buffer, &mut frames, Duration::from_secs(5), |f| f.event == "approval").await;
    assert!(got, "no approval event within 5 s; got {frames:?}");
    let f = frames.last().unwrap();
    assert_eq!(f.data["kind"], "approval", "{f:?}");
    assert_eq!(f.data["agent"], agent.as_str(), "{f:?}");
    assert!(f.data["id"].as_u64().is_some() && f.data["at"].as_i64().is_some(), "{f:?}");
    assert_eq!(f.data["data"]["approval_id"], id.as_str(), "{f:?}");
    assert_eq!(f.data["data"]["status"], "pending", "{f:?}");

    // Deciding it is an event too.
    decide_approval(&s, &id, "approve", &s.approver(&c.human).await, json!({})).await.ok();
    let got = read_until(&mut stream, &mut buffer, &mut frames, Duration::from_secs(5), |f| {
        f.event == "approval" && f.data["data"]["status"] == "approved"
    })
    .await;
    assert!(got, "no approved event within 5 s; got {frames:?}");

    // A quarantine.
    let d = s.authorize(c.token(0), "crm.export", "reports/q3", Value::Null).await;
    assert_deny(&d, "quarantine");
    let got =
        read_until(&mut stream, &mut buffer, &mut frames, Duration::from_secs(5), |f| f.event == "quarantine").await;
    assert!(got, "no quarantine event within 5 s; got {frames:?}");
    let f = frames.last().unwrap();
    assert_eq!(f.data["agent"], agent.as_str(), "{f:?}");
    assert!(f.data["data"]["reason"].as_str().unwrap().contains("exports-quarantine"), "{f:?}");
    assert_eq!(f.data["data"]["revoked_warrants"], 1, "{f:?}");

    assert!(frames.iter().all(|f| f.event == "approval" || f.event == "quarantine"), "{frames:?}");
    let ids: Vec<u64> = frames.iter().map(|f| f.data["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids increase: {ids:?}");
}

async fn read(s: &Server, token: &str) -> Value {
    s.authorize(token, "crm.read", "customers/1", Value::Null).await
}

#[tokio::test]
async fn rate_limit_counts_the_whole_subtree() {
    let s = Server::start_with(FileConfig {
        guard: Some(GuardFile { rate_agent: Some("5/min".into()), ..Default::default() }),
        ..Default::default()
    })
    .await;
    let c = s.chain(&["crm.read:customers/**"], &["crm.*"], 2, "look customers up").await;
    let bystander = s.chain(&["crm.read:customers/**"], &["crm.*"], 1, "someone else's work").await;

    // A and its sub-agent B share A's five.
    for i in 0..5 {
        assert_allow(&read(&s, c.token(i % 2)).await);
    }
    for token in [c.token(1), c.token(0)] {
        let d = read(&s, token).await;
        assert_deny(&d, "rate_limited");
        assert!(d["retry_after"].as_u64().is_some_and(|s| s >= 1), "{d}");
        assert!(d["reasons"].to_string().contains("rate limit"), "{d}");
    }
    // Someone else's agent is not held back.
    assert_allow(&read(&s, bystander.token(0)).await);
}

/// One leaked narrow warrant probing for more costs that warrant, not the agent: the
/// response comes at the smallest scale that contains the probing, the warrant first,
/// then its task, then the agent.
#[tokio::test]
async fn probing_is_contained_at_the_warrant_then_the_task_then_the_agent() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let session = s.session(&human).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let (t1, _) = s.root_warrant(&session, &a, "first task").await;
    let (t2, _) = s.root_warrant(&session, &a, "second task").await;
    let narrow = |parent: &str, customer: u32| {
        let parent = parent.to_owned();
        let b = &b;
        let s = &s;
        async move {
            let scope = format!("crm.read:customers/{customer}");
            let reply = s.delegate(&parent, b, &[("scope", scope.as_str())]).await;
            reply.ok()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let probe = |token: String| {
        let s = &s;
        async move {
            let mut last = Value::Null;
            for n in 0..15 {
                last = s.authorize(&token, "crm.read", &format!("customers/{}", 100 + n), Value::Null).await;
                assert_eq!(last["decision"], "deny", "{last}");
            }
            last
        }
    };
    let other_task = narrow(&t2, 7).await;

    // Fifteen probes with one leaked narrow warrant: that warrant is revoked (at the
    // fifth), nothing else.
    let leaked = narrow(&t1, 42).await;
    let last = probe(leaked.clone()).await;
    assert_eq!(last["code"], "revoked", "{last}");
    assert!(last["reasons"].to_string().contains("probing"), "{last}");
    assert_allow(&s.authorize(&other_task, "crm.read", "customers/7", Value::Null).await);
    assert_allow(&s.authorize(&t1, "crm.read", "customers/1", Value::Null).await);
    let agent = s.admin_get(&format!("/v1/agents/{}", b.id)).await;
    assert_eq!(agent.ok()["status"], "active", "the agent is not quarantined for one warrant");

    // A second probing warrant in the same task: the task goes, the other task stays.
    let second = narrow(&t1, 43).await;
    let last = probe(second).await;
    assert_eq!(last["code"], "revoked", "{last}");
    let d = s.authorize(&t1, "crm.read", "customers/1", Value::Null).await;
    assert_deny(&d, "revoked");
    assert_allow(&s.authorize(&other_task, "crm.read", "customers/7", Value::Null).await);
    assert_eq!(s.admin_get(&format!("/v1/agents/{}", b.id)).await.ok()["status"], "active");

    // Probing keeps spreading, now in the other task: the agent is quarantined.
    let third = narrow(&t2, 44).await;
    probe(third).await;
    let agent = s.admin_get(&format!("/v1/agents/{}", b.id)).await;
    assert_eq!(agent.ok()["status"], "suspended", "{}", agent.text);
    assert_deny(&s.authorize(&other_task, "crm.read", "customers/7", Value::Null).await, "revoked");
}

#[tokio::test]
async fn a_deploy_is_announced_audited_and_shown_with_the_agents_trust() {
    let s = Server::start_with(fast()).await;
    let c = s.chain(WIDE, WIDE, 1, "answer tickets").await;
    let agent = &c.agents[0].id;
    let path = format!("/v1/agents/{agent}/deploys");
    // Only an operator (or the admin token) announces.
    let anonymous = s.send(s.http.post(s.url(&path)).json(&json!({"version": "v2"}))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    for bad in [json!({"version": ""}), json!({"version": "x".repeat(101)}), json!({"version": "v2", "extra": 1})] {
        let r = s.admin_post(&path, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let unknown = s.admin_post("/v1/agents/agt_nobody/deploys", &json!({"version": "v2"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);

    let announced = s.admin_post(&path, &json!({"version": " v2.3.0 "})).await.ok().clone();
    assert_eq!(announced["version"], "v2.3.0");
    assert_eq!(announced["agent"], json!(agent));
    let view = trust_view(&s, agent).await;
    assert_eq!(view["deploy"]["version"], "v2.3.0", "{view}");
    assert_eq!(view["deploy"]["until"], announced["until"], "{view}");
    assert_eq!(view["thresholds"]["approval_below"], json!(0.45), "{view}");
    assert!(view["recent_responses"].as_array().unwrap().is_empty(), "{view}");
    let audit = s.admin_get(&format!("/v1/audit?agent={agent}&kind=registry")).await.ok().clone();
    let record = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["details"]["op"] == "agent.deploy")
        .unwrap_or_else(|| panic!("no agent.deploy record in {audit}"));
    assert_eq!(record["details"]["change"]["version"], "v2.3.0", "{record}");
}
