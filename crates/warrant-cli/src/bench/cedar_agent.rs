//! The `cedar-agent` scenario: a Cedar HTTP PDP that audits nothing
//! ([permitio/cedar-agent](https://github.com/permitio/cedar-agent), started by
//! `scripts/bench-cedar-agent`), given the policy set in force at the Warrant server and
//! the entities and context a Warrant decision of the authorize scenario evaluates, and
//! asked the same questions by the same client at the same concurrencies.
//!
//! What each side does per request differs, and the comparison says so: cedar-agent parses
//! the request and evaluates the policies; Warrant also verifies the warrant, checks
//! revocation and scope, builds the entities and context from it, and makes the decision's
//! audit record durable before it answers.

use serde_json::{json, Value};

use super::target::BODY_VARIANTS;
use super::BenchError;
use crate::client::Client;

/// A loaded cedar-agent: the `is_authorized` URL and the request bodies.
#[derive(Debug)]
pub struct Prepared {
    /// `POST <url>/v1/is_authorized`.
    pub url: String,
    /// Pre-serialized authorization requests.
    pub bodies: Vec<String>,
}

fn uid(kind: &str, id: &str) -> Value {
    json!({"type": format!("Warrant::{kind}"), "id": id})
}

fn uid_text(kind: &str, id: &str) -> String {
    format!("Warrant::{kind}::{}", Value::String(id.to_owned()))
}

/// Loads the Warrant server's policy set (one policy per statement, each keeping its
/// `@id`) and the entities of `warrant`'s decisions into the cedar-agent at `base` (a URL
/// without a trailing slash, as `--cedar-agent` is parsed), and returns requests asking
/// what [`super::target::authorize_bodies`] asks.
pub async fn prepare(
    http: &reqwest::Client,
    base: &str,
    warrant_server: &Client,
    warrant: &str,
) -> Result<Prepared, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Setup(format!("cedar-agent at {base}: {e}"));
    let set = warrant_server.get("/v1/policies").await.map_err(|e| setup(&e))?;
    let text = set.get("text").and_then(Value::as_str).ok_or_else(|| setup(&"the policy set has no text"))?;
    let parsed: cedar_policy::PolicySet = text.parse().map_err(|e: cedar_policy::ParseErrors| setup(&e))?;
    let policies: Vec<Value> = parsed
        .policies()
        .map(|p| {
            let id = p.annotation("id").map_or_else(|| p.id().to_string(), str::to_owned);
            json!({"id": id, "content": p.to_string()})
        })
        .collect();
    put(http, &format!("{base}/v1/policies"), &Value::Array(policies)).await.map_err(|e| setup(&e))?;

    let (_, claims) = warrant_token::jws::peek_unverified::<warrant_core::WarrantClaims>(warrant)
        .map_err(|e| BenchError::Setup(format!("the bench warrant: {e}")))?;
    let chain = claims.chain();
    let agent = claims.client_id.as_str();
    let mut entities = vec![
        json!({"uid": uid("Human", claims.owner.as_str()), "attrs": {}, "parents": []}),
        json!({"uid": uid("Agent", agent), "attrs": {"name": agent, "owner": claims.owner.as_str(), "mode": claims.mode.as_str()},
            "parents": [uid("Human", claims.owner.as_str())]}),
        json!({"uid": {"type": "Warrant::Action", "id": "crm.read"}, "attrs": {},
            "parents": [{"type": "Warrant::Action", "id": "crm.*"}, {"type": "Warrant::Action", "id": "*"}]}),
        json!({"uid": {"type": "Warrant::Action", "id": "crm.*"}, "attrs": {}, "parents": [{"type": "Warrant::Action", "id": "*"}]}),
        json!({"uid": {"type": "Warrant::Action", "id": "*"}, "attrs": {}, "parents": []}),
    ];
    let attrs = json!({"owner": "acme-support", "classification": "internal", "environment": "production"});
    for n in 0..BODY_VARIANTS {
        let path = format!("customers/{}", 1000 + n);
        entities.push(json!({"uid": uid("Resource", &path), "attrs": {"path": path, "attrs": attrs}, "parents": []}));
    }
    put(http, &format!("{base}/v1/data"), &Value::Array(entities)).await.map_err(|e| setup(&e))?;

    let scope: Vec<&str> = claims.scope.split_whitespace().collect();
    let chain: Vec<&str> = chain.iter().map(|a| a.as_str()).collect();
    let bodies = (0..BODY_VARIANTS)
        .map(|n| {
            json!({
                "principal": uid_text("Agent", agent),
                "action": "Warrant::Action::\"crm.read\"",
                "resource": uid_text("Resource", &format!("customers/{}", 1000 + n)),
                "context": {
                    "mode": claims.mode.as_str(), "human": claims.human().as_str(), "owner": claims.owner.as_str(),
                    "chain": chain, "root_agent": chain.first().copied().unwrap_or_default(),
                    "chain_depth": chain.len(), "task": claims.task.id.as_str(), "purpose": claims.task.purpose,
                    "scope": scope, "hour": 12, "weekday": 3, "trust": 100, "anomaly": [],
                    "telemetry": {"rows": 25 + n, "query": "open tickets for this customer", "estimated_cost": 120},
                },
            })
            .to_string()
        })
        .collect();
    Ok(Prepared { url: format!("{base}/v1/is_authorized"), bodies })
}

async fn put(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let resp = http.put(url).json(body).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("PUT {url}: {status}: {}", text.chars().take(300).collect::<String>()));
    }
    Ok(())
}
