//! The web console over HTTP, as a browser uses it: sign-in pages and their cookies,
//! security headers, CSRF on forms and on the API, what a human may see, the kill switch
//! and who the audit log says acted. (The browser itself drives it in
//! tests/python/test_console.py.)

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::testkit::{assert_allow, assert_deny, Server};

const ENT: &[&str] = &["crm.read:customers/**"];
const MAX: &[&str] = &["crm.*"];
const SESSION: &str = "__Host-warrant-console";
const SIGNIN: &str = "__Host-warrant-signin";

/// The value of cookie `name` a response sets, with its attributes.
fn set_cookie(reply: &crate::testkit::Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value part of a `Set-Cookie`.
fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

/// The value of the first hidden input `name` on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no `{name}` field on the page: {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// A signed-in browser: its session cookie and the session's CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

/// Posts the token form as a browser would (with the sign-in page's cookie).
async fn post_token(s: &Server, token: &str) -> crate::testkit::Reply {
    let page = s.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    let signin = cookie_value(&set_cookie(&page, SIGNIN).expect("the sign-in page sets its cookie"));
    assert_eq!(hidden(&page.text, "signin"), signin);
    s.send(
        s.http
            .post(s.url("/console/sign-in/token"))
            .header("cookie", format!("{SIGNIN}={signin}"))
            .form(&[("signin", signin.as_str()), ("token", token)]),
    )
    .await
}

async fn sign_in(s: &Server, token: &str) -> Browser {
    let reply = post_token(s, token).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.headers["location"], "/console");
    let set = set_cookie(&reply, SESSION).expect("a session cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attribute), "the session cookie lacks {attribute}: {set}");
    }
    assert!(!set.contains("Domain"), "a __Host- cookie has no Domain: {set}");
    let cookie = format!("{SESSION}={}", cookie_value(&set));
    let overview = s.send(s.http.get(s.url("/console")).header("cookie", &cookie)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    let csrf = hidden(&overview.text, "csrf");
    Browser { cookie, csrf }
}

impl Browser {
    async fn get(&self, s: &Server, path: &str) -> crate::testkit::Reply {
        s.send(s.http.get(s.url(path)).header("cookie", &self.cookie)).await
    }

    /// A JSON POST to the API with the session cookie and its CSRF header.
    async fn api_post(&self, s: &Server, path: &str, body: &Value) -> crate::testkit::Reply {
        s.send(s.http.post(s.url(path)).header("cookie", &self.cookie).header("x-csrf-token", &self.csrf).json(body))
            .await
    }

    async fn form(&self, s: &Server, path: &str, fields: &[(&str, &str)]) -> crate::testkit::Reply {
        s.send(s.http.post(s.url(path)).header("cookie", &self.cookie).form(fields)).await
    }
}

#[tokio::test]
async fn console_pages_carry_a_strict_content_security_policy_and_need_a_session() {
    let s = Server::start().await;
    let page = s.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(!page.text.contains("<script>"), "no inline script");
    // Signed out, a page sends the browser to sign in; the API says 401.
    for path in ["/console", "/console/agents", "/console/kill"] {
        let reply = s.get(path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers["location"], "/console/sign-in");
    }
    let forged = s.send(s.http.get(s.url("/v1/agents")).header("cookie", format!("{SESSION}=made-up"))).await;
    forged.api_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_sign_in_form_without_the_pages_own_value_is_refused() {
    let s = Server::start().await;
    // Another site posting the form has neither the cookie nor its value.
    let reply = s
        .send(s.http.post(s.url("/console/sign-in/token")).form(&[("signin", "guess"), ("token", s.admin.as_str())]))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&reply, SESSION).is_none());
}

#[tokio::test]
async fn only_a_humans_approver_token_or_the_admin_token_signs_in_never_an_agents_session_token() {
    let s = Server::start().await;
    let human = s.human(ENT).await;
    // The delegation session token is what an agent holds to act for the human.
    let delegation = s.session(&human).await;
    let reply = post_token(&s, &delegation).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(set_cookie(&reply, SESSION).is_none());
    let reply = post_token(&s, "not-a-token").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let approver = s.approver(&human).await;
    let browser = sign_in(&s, &approver).await;
    let overview = browser.get(&s, "/console").await;
    let name = s.admin_get(&format!("/v1/humans/{human}")).await.ok()["name"].as_str().unwrap().to_owned();
    assert!(overview.text.contains(&name), "the page names who is signed in: {}", overview.text);
}

#[tokio::test]
async fn a_human_sees_only_their_own_agents_and_no_operator_page_or_api() {
    let s = Server::start().await;
    let alice = s.human(ENT).await;
    let bob = s.human(ENT).await;
    let mine = s.agent(&alice, "delegated", MAX).await;
    let theirs = s.agent(&bob, "delegated", MAX).await;
    let browser = sign_in(&s, &s.approver(&alice).await).await;

    let list = browser.get(&s, "/console/agents").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(&mine.id), "{}", list.text);
    assert!(!list.text.contains(&theirs.id), "another human's agent is listed");
    assert_eq!(browser.get(&s, &format!("/console/agents/{}", mine.id)).await.status, StatusCode::OK);
    assert_eq!(browser.get(&s, &format!("/console/agents/{}", theirs.id)).await.status, StatusCode::NOT_FOUND);
    for path in ["/console/decisions", "/console/findings", "/console/policies", "/console/kill"] {
        assert_eq!(browser.get(&s, path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    // The same session on the API: no operator read, no revocation.
    let reply = s.send(s.http.get(s.url("/v1/agents")).header("cookie", &browser.cookie)).await;
    reply.api_error(StatusCode::FORBIDDEN, "forbidden");
    let reply =
        browser.api_post(&s, "/v1/revocations", &json!({"kind": "human", "id": bob, "reason": "not mine to do"})).await;
    reply.api_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_request_without_the_csrf_token_is_refused_on_forms_and_on_the_api() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 1, "csrf").await;
    let browser = sign_in(&s, &s.admin).await;

    // A form without the token, or with another, does nothing.
    for fields in [vec![], vec![("csrf", "wrong")]] {
        let mut f = fields.clone();
        f.extend([("kind", "human"), ("id", c.human.as_str()), ("reason", "forged")]);
        let reply = browser.form(&s, "/console/kill/revoke", &f).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    }
    // The API with the session cookie but no X-CSRF-Token header.
    let body = json!({"kind": "human", "id": c.human, "reason": "forged"});
    let reply = s.send(s.http.post(s.url("/v1/revocations")).header("cookie", &browser.cookie).json(&body)).await;
    reply.api_error(StatusCode::FORBIDDEN, "csrf");
    assert_allow(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await);
    // With it, the same call works.
    let reply = browser.api_post(&s, "/v1/revocations", &body).await;
    assert_eq!(reply.ok()["revoked_warrants"], 1);
    assert_deny(&s.authorize(c.token(0), "crm.read", "customers/1", Value::Null).await, "revoked");
}

#[tokio::test]
async fn the_kill_switch_names_how_many_warrants_die_then_shows_none_live_and_the_audit_names_who() {
    let s = Server::start().await;
    let c = s.chain(ENT, MAX, 2, "kill switch").await;
    let browser = sign_in(&s, &s.admin).await;
    let csrf = browser.csrf.clone();
    let fields = [("csrf", csrf.as_str()), ("kind", "human"), ("id", c.human.as_str()), ("reason", "lost laptop")];
    let confirm = browser.form(&s, "/console/kill/confirm", &fields).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(confirm.text.contains("<strong>2</strong> live warrants"), "{}", confirm.text);
    // Nothing is revoked by the confirmation page.
    assert_allow(&s.authorize(c.token(1), "crm.read", "customers/1", Value::Null).await);

    let done = browser.form(&s, "/console/kill/revoke", &fields).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("<strong id=\"killed-count\">2</strong>"), "{}", done.text);
    assert!(done.text.contains("<strong id=\"still-live\">0</strong>"), "{}", done.text);
    for i in 0..2 {
        assert_deny(&s.authorize(c.token(i), "crm.read", "customers/1", Value::Null).await, "revoked");
    }
    let audit = s.admin_get("/v1/audit?kind=revocation").await;
    let records = audit.ok()["records"].as_array().unwrap().clone();
    let last = records.last().unwrap();
    assert_eq!(last["by"], json!({"kind": "admin_token"}), "{last}");
}

#[tokio::test]
async fn a_humans_own_approval_is_decided_in_the_console_and_the_audit_names_them() {
    let s = Server::start().await;
    // Same policy as the approvals API tests: the owner approves large payments.
    crate::guard::install(&s, &[("approvals.cedar", crate::guard::APPROVAL_POLICY)]).await;
    let c = s.chain(&["payments.*"], &["payments.*"], 1, "pay supplier invoices").await;
    let pay = |approval: Option<&str>| {
        let mut body = json!({"token": c.token(0), "action": "payments.send", "resource": "payments/inv-4711",
                              "context": {"amount": 25000, "currency": "EUR"}});
        if let Some(id) = approval {
            body["approval_id"] = json!(id);
        }
        body
    };
    let pending = s.authorize_body(&pay(None)).await;
    assert_eq!(pending.ok()["decision"], "pending", "{}", pending.text);
    let id = pending.ok()["approval_id"].as_str().unwrap().to_owned();
    let owner = sign_in(&s, &s.approver(&c.human).await).await;
    let inbox = owner.get(&s, "/console/approvals").await;
    assert!(inbox.text.contains(&id), "{}", inbox.text);
    // Another human does not see it, and cannot decide it.
    let other = sign_in(&s, &s.approver(&s.human(ENT).await).await).await;
    assert!(!other.get(&s, "/console/approvals").await.text.contains(&id));
    let refused = other.form(&s, &format!("/console/approvals/{id}/approve"), &[("csrf", &other.csrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);

    let approved = owner
        .form(&s, &format!("/console/approvals/{id}/approve"), &[("csrf", &owner.csrf), ("reason", "invoice checked")])
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.text);
    let view = s.admin_get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(view.ok()["status"], "approved");
    assert_eq!(view.ok()["reason"], "invoice checked");
    let retry = s.authorize_body(&pay(Some(&id))).await;
    assert_eq!(retry.ok()["decision"], "allow", "{}", retry.text);
    let card = owner.get(&s, &format!("/console/approvals/{id}/card")).await;
    assert!(card.text.contains("retry was allowed"), "{}", card.text);
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let s = Server::start().await;
    let browser = sign_in(&s, &s.admin).await;
    let out = browser.form(&s, "/console/sign-out", &[("csrf", &browser.csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The old cookie, replayed, is worth nothing.
    let reply = browser.get(&s, "/console").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], "/console/sign-in");
}

#[tokio::test]
async fn the_policies_page_shows_why_a_set_was_refused_and_diffs_two_versions() {
    let s = Server::start().await;
    let browser = sign_in(&s, &s.admin).await;
    let before = s.policy_version().await;
    s.write_policy(
        "extra.cedar",
        "@id(\"read-leads\")\npermit (principal, action, resource) when { resource.path like \"leads/*\" };\n",
    );
    s.reload_policies().await.ok();
    let after = s.policy_version().await;
    assert_ne!(before, after);
    let diff = browser.get(&s, &format!("/console/policies?from={before}&to={after}")).await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
    assert!(diff.text.contains("<span class=\"ins\">+ @id(&quot;read-leads&quot;)"), "{}", diff.text);

    // An invalid file: the reload is refused (from the console's button too) and the page says why.
    s.write_policy("broken.cedar", "permit (principal, action, resource) when { nonsense };\n");
    let refused = browser.form(&s, "/console/policies/reload", &[("csrf", &browser.csrf)]).await;
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.text);
    assert!(refused.text.contains("The reload failed; the previous set stays in force."), "{}", refused.text);
    let page = browser.get(&s, "/console/policies").await;
    assert!(page.text.contains("id=\"refused-policy\""), "{}", page.text);
    assert!(page.text.contains("nonsense"), "the validator's message names the problem: {}", page.text);
    assert_eq!(s.policy_version().await, after, "the previous set stays in force");
}

#[tokio::test]
async fn a_provider_callback_is_finished_only_in_the_browser_that_started_the_sign_in() {
    let s = Server::start().await;
    // Someone started a sign-in for their own account and sends the callback link to a
    // victim: the victim's browser has no state cookie, so nothing signs it in.
    let reply = s.get("/console/oidc/callback?code=attackers-code&state=attackers-state").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("not started in this browser"), "{}", reply.text);
    assert!(set_cookie(&reply, SESSION).is_none());
    // The right browser with a state this server never issued is refused by the engine.
    let reply = s
        .send(
            s.http
                .get(s.url("/console/oidc/callback?code=c&state=made-up"))
                .header("cookie", "__Host-warrant-oidc=made-up"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(set_cookie(&reply, SESSION).is_none());
}

#[tokio::test]
async fn a_human_sees_their_own_approval_even_when_newer_ones_of_others_fill_the_limit() {
    let s = Server::start().await;
    crate::guard::install(&s, &[("approvals.cedar", crate::guard::APPROVAL_POLICY)]).await;
    let pay = |token: &str| {
        json!({"token": token, "action": "payments.send", "resource": "payments/inv-1",
               "context": {"amount": 5000, "currency": "EUR"}})
    };
    let mine = s.chain(&["payments.*"], &["payments.*"], 1, "mine").await;
    let theirs = s.chain(&["payments.*"], &["payments.*"], 1, "theirs").await;
    let id = s.authorize_body(&pay(mine.token(0))).await.ok()["approval_id"].as_str().unwrap().to_owned();
    s.authorize_body(&pay(theirs.token(0))).await.ok();
    // The other human's approval is the newest; with a limit of one, it used to be read
    // and then filtered away, leaving the owner an empty inbox.
    let token = s.approver(&mine.human).await;
    let reply = s.send(s.http.get(s.url("/v1/approvals?status=pending&limit=1")).bearer_auth(&token)).await;
    let listed: Vec<Value> = reply.ok()["approvals"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
}

#[tokio::test]
async fn a_disabled_humans_console_session_signs_nobody_in() {
    let s = Server::start().await;
    let human = s.human(ENT).await;
    let browser = sign_in(&s, &s.approver(&human).await).await;
    assert_eq!(browser.get(&s, "/console/agents").await.status, StatusCode::OK);
    s.admin_action(&format!("/v1/humans/{human}/disable")).await.ok();
    let reply = browser.get(&s, "/console/agents").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], "/console/sign-in");
}
