//! An example tool server that is its own enforcement point: it verifies every caller's
//! warrant against the Warrant server's keys (and that the warrant is for this server:
//! RFC 8707 audience), then asks Warrant's AuthZEN PDP about the call, naming the
//! warrant it has verified (the COAZ shape: `subject.id`, `context.agent`,
//! `context.warrant_id`), and runs the tool only on a permit.
//!
//! ```sh
//! warrant pep add --name tool-server --out tool-server.pep
//! WARRANT_PEP_TOKEN=$(cat tool-server.pep) cargo run -p warrant-example-tool-server -- \
//!     --server http://127.0.0.1:8080 --listen 127.0.0.1:9100
//! # an agent with `crm.read:customers/*`, warrant minted with --resource http://127.0.0.1:9100
//! curl -H "Authorization: Bearer $W" -d '{"customer": "42"}' \
//!     -H 'content-type: application/json' http://127.0.0.1:9100/tools/lookup_customer
//! ```
//!
//! The tool `lookup_customer` is the action `crm.read` on the resource `customers/<id>`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warrant_core::authzen::{Action, EvaluationRequest, Resource, Subject, CONTEXT_AGENT, CONTEXT_WARRANT_ID};
use warrant_core::UnixTime;
use warrant_gateway::auth::Verifier;
use warrant_gateway::{HttpPdp, Pdp};

/// What every request shares.
struct App {
    /// The URL callers reach this server at: the audience their warrants must carry.
    resource: String,
    verifier: Verifier,
    pdp: HttpPdp,
}

/// The tool's arguments.
#[derive(Debug, Deserialize)]
struct Lookup {
    customer: String,
}

/// An answer with a status and a small JSON body.
fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn now() -> UnixTime {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// `POST /tools/lookup_customer`: verify, ask, then act.
async fn lookup_customer(State(app): State<Arc<App>>, headers: HeaderMap, Json(args): Json<Lookup>) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // 1. The warrant: ours (signature, issuer, expiry) and for this server (audience).
    let claims = match app.verifier.verify(token, &app.resource, now()).await {
        Ok(claims) => claims,
        Err(e) => {
            let mut refused = answer(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token", "message": e.to_string()}));
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return refused;
        }
    };
    // 2. The decision, about the warrant this server verified: Warrant checks the stated
    //    subject and agent against its own record of it, then runs its whole pipeline
    //    (revocation, scope, policies, guardrails, budgets, approvals, audit).
    let mut context = Map::new();
    context.insert(CONTEXT_AGENT.into(), Value::from(claims.client_id.to_string()));
    context.insert(CONTEXT_WARRANT_ID.into(), Value::from(claims.jti.to_string()));
    let request = EvaluationRequest {
        subject: Subject { kind: "agent".into(), id: claims.sub.clone(), properties: Map::new() },
        action: Action { name: "crm.read".into(), properties: Map::new() },
        resource: Resource { kind: "customers".into(), id: args.customer.clone(), properties: Map::new() },
        context,
    };
    match app.pdp.evaluate(&request).await {
        // 3. Only a permit runs the tool.
        Ok(decision) if decision.decision => {
            answer(StatusCode::OK, json!({"customer": args.customer, "open_tickets": 3, "agent": claims.client_id}))
        }
        Ok(decision) => {
            let why = decision.context.map(|c| json!({"decision_id": c.decision_id, "code": c.code, "reasons": c.reasons}));
            answer(StatusCode::FORBIDDEN, json!({"error": "denied", "decision": why}))
        }
        // No answer from the PDP is no permit (fail closed).
        Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "no_decision", "message": e.to_string()})),
    }
}

/// `--flag value` from the command line, or `default`.
fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let server = flag(&args, "--server", "http://127.0.0.1:8080");
    let listen = flag(&args, "--listen", "127.0.0.1:9100");
    let credential = std::env::var("WARRANT_PEP_TOKEN").map_err(|_| "set WARRANT_PEP_TOKEN to a PEP credential")?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let verifier = Verifier::connect(http.clone(), &server).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let resource = format!("http://{}", listener.local_addr()?);
    let app = Arc::new(App { resource: resource.clone(), verifier, pdp: HttpPdp::new(http, &server, credential) });
    let router = Router::new().route("/tools/lookup_customer", post(lookup_customer)).with_state(app);
    eprintln!("tool server at {resource}: warrants must be minted with --resource {resource}");
    axum::serve(listener, router).await?;
    Ok(())
}
