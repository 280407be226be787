//! `warrant demo`: a throw-away server on a temporary data directory, and a guided walk
//! through human -> agent -> sub-agent delegation, over real HTTP.

use serde_json::{json, Value};
use warrant_engine::issuer::{GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT};
use warrant_server::config::{FileConfig, Settings};
use warrant_token::KeyPair;

use crate::client::{Client, ClientError};
use crate::output::warrant_summary;
use crate::tokens::{assertion, claims_of};
use crate::{keyfile, CliResult};

fn step(n: u32, text: &str) {
    outln!("\n{n}. {text}");
}

/// Indents a block under a step's text.
fn indent(text: &str) -> String {
    crate::output::indent(text, 3)
}

async fn register_agent(
    client: &Client,
    owner: &str,
    name: &str,
    max_scope: &[&str],
) -> Result<(String, KeyPair), Box<dyn std::error::Error + Send + Sync>> {
    let key = keyfile::generate()?;
    let body = json!({
        "name": name, "owner": owner, "mode": "delegated", "max_scope": max_scope,
        "public_key": key.public_jwk(), "labels": {"demo": "true"},
    });
    let agent = client.post("/v1/agents", &body).await?;
    let id = agent.get("id").and_then(Value::as_str).ok_or("no agent id")?.to_owned();
    outln!("   {name:<18} {id}  max scope: {}", max_scope.join(" "));
    Ok((id, key))
}

async fn exchange(
    client: &Client,
    subject: &str,
    subject_type: &str,
    agent: &str,
    key: &KeyPair,
    extra: &[(&str, &str)],
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let actor = assertion(client, agent, key).await?;
    let mut form = vec![
        ("grant_type", GRANT_TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", subject_type),
        ("actor_token", actor.as_str()),
        ("actor_token_type", TOKEN_TYPE_JWT),
    ];
    form.extend_from_slice(extra);
    Ok(client.token(&form).await?)
}

/// Runs the demo.
pub async fn run() -> CliResult {
    outln!("Warrant demo: a human delegates to an agent, which delegates to a sub-agent.");
    let dir = tempfile::tempdir()?;
    let settings = Settings::from_config(FileConfig {
        data: Some(dir.path().to_owned()),
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    })?;
    let server = warrant_server::BoundServer::bind(&settings).await?;
    let addr = server.local_addr().ok_or("the server has no address")?;
    let admin = server.admin_token().ok_or("the demo server holds no admin token")?.to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = Client::new(&format!("http://{addr}"), Some(admin));
    outln!("A throw-away server is listening on http://{addr} (data in {}).", dir.path().display());

    let result = walk(&client).await;
    let _ = stop.send(());
    let _ = handle.await;
    result?;
    outln!("\nDone. The server and its data directory are gone; run `warrant serve` for a real one.");
    Ok(())
}

async fn walk(client: &Client) -> CliResult {
    let entitlements = ["crm.read:customers/**", "crm.notes.write:customers/**", "tickets.*"];
    step(1, "Register Alice, a human, with the permissions she may delegate:");
    let alice = client
        .post(
            "/v1/humans",
            &json!({"name": "Alice Example", "email": "alice@example.com", "entitlements": entitlements}),
        )
        .await?;
    let alice_id = alice.get("id").and_then(Value::as_str).ok_or("no human id")?.to_owned();
    outln!("   Alice              {alice_id}  entitlements: {}", entitlements.join(" "));

    step(2, "Register two delegated agents owned by Alice, each with an Ed25519 key:");
    let (assistant, assistant_key) =
        register_agent(client, &alice_id, "support-assistant", &["crm.*", "tickets.*"]).await?;
    let (researcher, researcher_key) =
        register_agent(client, &alice_id, "crm-researcher", &["crm.read:customers/**"]).await?;

    step(3, "Alice signs in (a session token) and hands a task to support-assistant (RFC 8693 token exchange):");
    let session = client.post(&format!("/v1/humans/{alice_id}/sessions"), &json!({})).await?;
    let session_token = session.get("token").and_then(Value::as_str).ok_or("no session token")?;
    let root = exchange(
        client,
        session_token,
        TOKEN_TYPE_ID_TOKEN,
        &assistant,
        &assistant_key,
        &[("task_purpose", "answer ticket 4711 for customer 42"), ("ttl", "600")],
    )
    .await?;
    let root_token = root.get("access_token").and_then(Value::as_str).ok_or("no access token")?;
    let now = warrant_engine::Clock::now(&warrant_server::server::SystemClock).0;
    outln!("{}", indent(&warrant_summary(&claims_of(root_token), now)));
    outln!("   (scope = Alice's entitlements within the agent's max scope; 10 minutes asked)");

    step(4, "support-assistant delegates a narrower warrant to crm-researcher, asking for a whole hour:");
    let child = exchange(
        client,
        root_token,
        TOKEN_TYPE_ACCESS_TOKEN,
        &researcher,
        &researcher_key,
        &[("scope", "crm.read:customers/42"), ("ttl", "3600")],
    )
    .await?;
    let child_token = child.get("access_token").and_then(Value::as_str).ok_or("no access token")?;
    let child_claims = claims_of(child_token);
    outln!("{}", indent(&warrant_summary(&child_claims, now)));
    outln!("   (lifetime capped: a delegated warrant never outlives its parent)");
    outln!("   the nested RFC 8693 `act` claim, outermost = the agent acting now:");
    outln!("{}", indent(&crate::output::json(child_claims.get("act").unwrap_or(&Value::Null))));

    step(5, "Escalation: support-assistant tries to give crm-researcher `billing.refund:invoices/*`:");
    match exchange(
        client,
        root_token,
        TOKEN_TYPE_ACCESS_TOKEN,
        &researcher,
        &researcher_key,
        &[("scope", "billing.refund:invoices/*")],
    )
    .await
    {
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Api { code, message, .. }) => outln!("   refused: {code}: {message}"),
            _ => return Err(e),
        },
        Ok(_) => return Err("the escalation was not refused: this is a bug".into()),
    }

    step(6, "Check the sub-agent's warrant against the server's published keys (JWKS):");
    let meta = client.get("/.well-known/oauth-authorization-server").await?;
    let issuer = meta.get("issuer").and_then(Value::as_str).ok_or("no issuer")?;
    let keys = warrant_token::KeySet::from_jwks(&client.get("/.well-known/jwks.json").await?);
    let verified = warrant_token::warrant::verify_warrant(child_token, &keys, issuer, warrant_core::UnixTime(now))?;
    outln!(
        "   valid EdDSA signature; acts for human {} on task \"{}\"; chain {}",
        verified.sub,
        verified.task.purpose,
        verified.chain().iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
    );

    step(7, "crm-researcher acts. Every action is decided when it happens (scope, then Cedar policies):");
    let first = decide(client, child_token, "crm.read", "customers/42", json!({})).await?;
    decide(client, child_token, "crm.read", "customers/43", json!({})).await?;
    decide(client, root_token, "crm.notes.write", "customers/42", json!({"estimated_cost": 25000})).await?;

    step(8, "The work is done: support-assistant completes the task with its root warrant.");
    let task = claims_of(root_token)
        .get("task")
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}/v1/tasks/{task}/complete", client.base());
    let done: Value = reqwest::Client::new().post(&url).bearer_auth(root_token).send().await?.json().await?;
    outln!("   task {task} completed: {} warrant(s) ended", done.get("revoked_warrants").unwrap_or(&Value::Null));
    outln!("   crm-researcher tries again, a moment later:");
    decide(client, child_token, "crm.read", "customers/42", json!({})).await?;

    step(9, "Evidence: the provenance of crm-researcher's first decision, back to the human:");
    let trace = client.get(&format!("/v1/audit/{first}/trace")).await?;
    outln!("{}", indent(&crate::evidence::trace_tree(&trace)));
    let verify = client.get("/v1/audit/verify").await?;
    outln!(
        "   audit chain: {} records, intact: {}",
        verify.get("records").unwrap_or(&Value::Null),
        verify.get("ok").unwrap_or(&Value::Null)
    );
    Ok(())
}

/// Asks for a decision and prints it; returns the decision id.
async fn decide(
    client: &Client,
    token: &str,
    action: &str,
    resource: &str,
    context: Value,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let answer = client
        .post("/v1/authorize", &json!({ "token": token, "action": action, "resource": resource, "context": context }))
        .await?;
    let text = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let reasons: Vec<String> = answer
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let telemetry =
        if context.as_object().is_some_and(|m| !m.is_empty()) { format!(" {context}") } else { String::new() };
    outln!(
        "   {action} {resource}{telemetry} -> {} ({}): {}",
        text("decision").to_uppercase(),
        text("decision_id"),
        reasons.join("; ")
    );
    Ok(text("decision_id"))
}
