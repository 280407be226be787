//! `POST /v1/authorize` bodies, decoded as the server decodes them and decided by a real
//! in-process engine (SQLite in memory, the default policy set; see `src/engine.rs`).
//!
//! A body may name the fixture's tokens by placeholder: `"@valid"` (a live warrant),
//! `"@revoked"` (a revoked warrant), `"@session"` (a human session token, not a
//! warrant). Asserts: nothing panics; a decision is `allow` only when the token is the
//! live warrant, no approval is presented, the action and resource are well formed and
//! inside the warrant's scope (checked by this target's own matcher, not by
//! `warrant-core`), `resource_attrs` and `context` are objects (or absent), and the
//! caller's `estimated_cost` is an integer within the default set's ceiling of 10000;
//! never `pending` (the default set asks for no approval); every decision has a code and
//! a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warrant_engine::Outcome;
use warrant_fuzz::engine::{fixture, SCOPE_PATTERNS};
use warrant_server::routes::decisions::{request, AuthorizeBody};

fn action_ok(action: &str) -> bool {
    !action.is_empty()
        && action
            .split('.')
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

fn resource_ok(resource: &str) -> bool {
    !resource.is_empty()
        && resource.len() <= 1024
        && resource.split('/').all(|s| !s.is_empty() && !s.contains('*') && !s.chars().any(char::is_whitespace))
}

fn action_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        None => pattern == action,
    }
}

fn resource_matches(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((&"**", [])), _) => true,
        (Some((p, p_rest)), Some((s, s_rest))) => (*p == "*" || p == s) && resource_matches(p_rest, s_rest),
        _ => false,
    }
}

fn in_scope(action: &str, resource: &str) -> bool {
    let path: Vec<&str> = resource.split('/').collect();
    SCOPE_PATTERNS.iter().any(|(a, r)| {
        action_matches(a, action) && r.is_none_or(|r| resource_matches(&r.split('/').collect::<Vec<_>>(), &path))
    })
}

fn object_or_absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null | Value::Object(_)))
}

fn cost_ok(context: Option<&Value>) -> bool {
    match context.and_then(|c| c.get("estimated_cost")) {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|c| c <= 10_000),
        Some(_) => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<AuthorizeBody>(data) else { return };
    let f = fixture();
    let mut req = request(body);
    let live = match req.token.as_str() {
        "@valid" => {
            req.token = f.valid.clone();
            true
        }
        "@revoked" => {
            req.token = f.revoked.clone();
            false
        }
        "@session" => {
            req.token = f.session.clone();
            false
        }
        _ => false,
    };
    let d = f.rt.block_on(f.engine.decisions().authorize(&req));
    assert!(!d.code.as_str().is_empty() && !d.reasons.is_empty(), "{d:?}");
    assert_ne!(d.outcome, Outcome::Pending, "{d:?}");
    if d.outcome == Outcome::Allow {
        assert!(live, "allowed with a token that is not the live warrant: {req:?}");
        assert!(req.approval_id.is_none(), "allowed with an approval that was never granted: {req:?}");
        assert!(action_ok(&req.action), "allowed a malformed action: {req:?}");
        assert!(resource_ok(&req.resource), "allowed a malformed resource: {req:?}");
        assert!(in_scope(&req.action, &req.resource), "allowed outside the warrant's scope: {req:?}");
        assert!(object_or_absent(req.resource_attrs.as_deref()) && object_or_absent(req.context.as_deref()), "{req:?}");
        assert!(cost_ok(req.context.as_deref()), "allowed above the cost ceiling: {req:?}");
        assert_eq!(d.code.as_str(), "allow");
    }
});
