//! The token endpoint's form body, parsed as the server parses it
//! (`warrant_server::extract::parse_token_form`).
//!
//! Asserts: nothing panics; the body parses exactly when no known parameter appears
//! twice (counted by an independent `application/x-www-form-urlencoded` reader), and then
//! every known parameter holds the value it was sent with and the others are absent;
//! a refusal is an RFC 6749 `invalid_request`. The parsed `scope` and `budget` go through
//! their parsers, and whatever parses prints back to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warrant_core::guard::budget::{format_budget, parse_budget};
use warrant_core::Scope;
use warrant_engine::TokenRequest;
use warrant_server::extract::parse_token_form;

const KNOWN: [&str; 15] = [
    "grant_type",
    "scope",
    "ttl",
    "task_purpose",
    "client_assertion_type",
    "client_assertion",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "budget",
    "resource",
    "token",
    "token_type_hint",
    "subject_dpop",
];

fn field<'a>(req: &'a TokenRequest, name: &str) -> Option<&'a str> {
    match name {
        "grant_type" => req.grant_type.as_deref(),
        "scope" => req.scope.as_deref(),
        "ttl" => req.ttl.as_deref(),
        "task_purpose" => req.task_purpose.as_deref(),
        "client_assertion_type" => req.client_assertion_type.as_deref(),
        "client_assertion" => req.client_assertion.as_deref(),
        "subject_token" => req.subject_token.as_deref(),
        "subject_token_type" => req.subject_token_type.as_deref(),
        "actor_token" => req.actor_token.as_deref(),
        "actor_token_type" => req.actor_token_type.as_deref(),
        "budget" => req.budget.as_deref(),
        "resource" => req.resource.as_deref(),
        "token" => req.token.as_deref(),
        "token_type_hint" => req.token_type_hint.as_deref(),
        "subject_dpop" => req.subject_dpop.as_deref(),
        _ => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let sent = |name: &str| pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let repeated = KNOWN.iter().any(|name| sent(name).len() > 1);

    match parse_token_form(data) {
        Ok(req) => {
            assert!(!repeated, "a repeated parameter was accepted: {pairs:?}");
            for name in KNOWN {
                assert_eq!(field(&req, name), sent(name).first().copied(), "`{name}` differs");
            }
            if let Some(scope) = &req.scope {
                if let Ok(s) = Scope::parse(scope) {
                    assert_eq!(Scope::parse(&s.to_string()).as_ref(), Ok(&s));
                }
            }
            if let Some(budget) = &req.budget {
                if let Ok(b) = parse_budget(budget) {
                    assert_eq!(parse_budget(&format_budget(&b)).as_ref(), Ok(&b));
                }
            }
        }
        Err(e) => {
            assert!(repeated, "a form without repeats was refused: {e:?} for {pairs:?}");
            assert!(format!("{e:?}").contains("invalid_request"), "{e:?}");
        }
    }
});
