//! `warrant keygen` and `warrant token …`: agent keys, client assertions, minting,
//! exchanging and inspecting warrants.

use std::io::Read as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use warrant_core::{AgentId, UnixTime};
use warrant_engine::issuer::{
    ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT,
};
use warrant_engine::Clock as _;
use warrant_token::assertion::make_assertion;
use warrant_token::KeyPair;

use crate::client::Client;
use crate::output::{field, print, time_field, timestamp, warrant_summary};
use crate::{keyfile, CliResult, Conn};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Base name of the files: writes `NAME.key.jwk` (private, 0600) and `NAME.pub.jwk`.
    name: PathBuf,
}

/// The acting agent: its id and private key file.
#[derive(Debug, Clone, Args)]
pub struct AgentKey {
    /// The agent id.
    #[arg(long)]
    agent: String,
    /// The agent's private key file (`NAME.key.jwk` from `warrant keygen`).
    #[arg(long)]
    key: PathBuf,
}

/// What to ask for.
#[derive(Debug, Clone, Args)]
pub struct Ask {
    /// Space-separated permissions; default: everything every ceiling allows.
    #[arg(long)]
    scope: Option<String>,
    /// Lifetime in seconds; capped by the server's maximum and the parent's expiry.
    #[arg(long)]
    ttl: Option<i64>,
    /// Budgets, e.g. `estimated_cost=5000`: what this warrant and its sub-agents may spend
    /// in all (a delegation gets at most what the parent has left).
    #[arg(long)]
    budget: Option<String>,
    /// The resource server the warrant is for (RFC 8707 `resource`, an absolute URI such
    /// as a gateway's `http://host/mcp/NAME`); it becomes the warrant's audience.
    #[arg(long)]
    resource: Option<String>,
    /// Print only the token (for `$(…)` in scripts).
    #[arg(long)]
    token_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Get an autonomous warrant: client credentials with a client assertion signed by the agent's key.
    Mint {
        #[command(flatten)]
        agent: AgentKey,
        /// What the work is for.
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        ask: Ask,
    },
    /// Exchange a human session (delegated work) or a parent warrant (delegation) for a warrant held by `--agent`.
    Exchange {
        #[command(flatten)]
        agent: AgentKey,
        /// The subject token: a session token or a parent warrant; `-` reads stdin, `@FILE` reads a file.
        #[arg(long)]
        subject_token: String,
        /// `session`, `warrant`, or `auto` (read the token's type).
        #[arg(long, default_value = "auto", value_parser = ["auto", "session", "warrant"])]
        subject_type: String,
        /// What the work is for (needed when starting from a session).
        #[arg(long)]
        purpose: Option<String>,
        #[command(flatten)]
        ask: Ask,
    },
    /// Print a client assertion for `--agent` (to use with curl).
    Assertion {
        #[command(flatten)]
        agent: AgentKey,
    },
    /// Verify a warrant against the server's JWKS, ask the server (admin) whether it was
    /// revoked, and print its claims: VALID, REVOKED (with the reason) or EXPIRED. Exits 1
    /// unless it is valid.
    Inspect {
        /// The warrant; `-` reads stdin, `@FILE` reads a file.
        token: String,
    },
}

/// Runs `warrant keygen`.
pub fn keygen(args: KeygenArgs) -> CliResult {
    let pair = keyfile::generate()?;
    let private = args.name.with_extension("key.jwk");
    let public = args.name.with_extension("pub.jwk");
    let private_json = serde_json::to_string_pretty(&pair.private_jwk_json())?;
    let public_json = serde_json::to_string_pretty(&pair.public_jwk())?;
    keyfile::write_new(&private, &private_json, true)?;
    keyfile::write_new(&public, &public_json, false)?;
    outln!("private key: {} (keep it secret)", private.display());
    outln!("public key:  {}", public.display());
    Ok(())
}

/// A token argument: the token itself, `-` for stdin, or `@FILE`.
pub fn read_token_arg(arg: &str) -> Result<String, String> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read stdin: {e}"))?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))?
    } else {
        arg.to_owned()
    };
    Ok(text.trim().to_owned())
}

fn now() -> UnixTime {
    warrant_server::server::SystemClock.now()
}

/// A fresh client assertion for `agent` addressed to the server's token endpoint.
pub async fn assertion(
    client: &Client,
    agent: &str,
    key: &KeyPair,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let agent = AgentId::parse(agent)?;
    let meta = client.get("/.well-known/oauth-authorization-server").await?;
    let endpoint =
        meta.get("token_endpoint").and_then(Value::as_str).ok_or("the server's metadata names no token endpoint")?;
    let jti =
        warrant_engine::random::bytes::<16>().map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())?;
    Ok(make_assertion(key, &agent, endpoint, now(), &jti)?)
}

/// The claims of a token, NOT verified (for display of a token just received).
pub fn claims_of(token: &str) -> Value {
    warrant_token::jws::peek_unverified::<Value>(token).map(|(_, c)| c).unwrap_or_default()
}

fn show_issued(json_out: bool, ask: &Ask, response: &Value) {
    let token = response.get("access_token").and_then(Value::as_str).unwrap_or_default();
    if ask.token_only {
        outln!("{token}");
        return;
    }
    let claims = claims_of(token);
    let out = json!({ "response": response, "claims": claims });
    print(json_out, &out, |_| format!("{}\ntoken     {token}", warrant_summary(&claims, now().0)));
}

/// Form fields for `scope`, `ttl`, `budget` and `resource` when given.
fn ask_fields(ask: &Ask) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(scope) = &ask.scope {
        out.push(("scope", scope.clone()));
    }
    if let Some(ttl) = ask.ttl {
        out.push(("ttl", ttl.to_string()));
    }
    if let Some(budget) = &ask.budget {
        out.push(("budget", budget.clone()));
    }
    if let Some(resource) = &ask.resource {
        out.push(("resource", resource.clone()));
    }
    out
}

async fn post_form(client: &Client, fields: Vec<(&'static str, String)>) -> Result<Value, crate::client::ClientError> {
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.token(&form).await
}

/// Runs a `warrant token` command.
pub async fn token(conn: &Conn, cmd: TokenCmd) -> CliResult {
    let client = conn.public_client();
    match cmd {
        TokenCmd::Mint { agent, purpose, ask } => {
            let key = keyfile::read_private(&agent.key)?;
            let assertion = assertion(&client, &agent.agent, &key).await?;
            let mut fields = vec![
                ("grant_type", GRANT_CLIENT_CREDENTIALS.to_owned()),
                ("client_assertion_type", ASSERTION_TYPE_JWT_BEARER.to_owned()),
                ("client_assertion", assertion),
                ("task_purpose", purpose),
            ];
            fields.extend(ask_fields(&ask));
            show_issued(conn.json, &ask, &post_form(&client, fields).await?);
        }
        TokenCmd::Exchange { agent, subject_token, subject_type, purpose, ask } => {
            let key = keyfile::read_private(&agent.key)?;
            let subject = read_token_arg(&subject_token)?;
            let subject_type = match subject_type.as_str() {
                "session" => TOKEN_TYPE_ID_TOKEN,
                "warrant" => TOKEN_TYPE_ACCESS_TOKEN,
                _ => TOKEN_TYPE_JWT,
            };
            let actor = assertion(&client, &agent.agent, &key).await?;
            let mut fields = vec![
                ("grant_type", GRANT_TOKEN_EXCHANGE.to_owned()),
                ("subject_token", subject),
                ("subject_token_type", subject_type.to_owned()),
                ("actor_token", actor),
                ("actor_token_type", TOKEN_TYPE_JWT.to_owned()),
            ];
            if let Some(p) = purpose {
                fields.push(("task_purpose", p));
            }
            fields.extend(ask_fields(&ask));
            show_issued(conn.json, &ask, &post_form(&client, fields).await?);
        }
        TokenCmd::Assertion { agent } => {
            let key = keyfile::read_private(&agent.key)?;
            outln!("{}", assertion(&client, &agent.agent, &key).await?);
        }
        TokenCmd::Inspect { token } => inspect(conn, &client, &read_token_arg(&token)?).await?,
    }
    Ok(())
}

/// What `warrant token inspect` concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Signature, issuer and expiry check out, and the server says it is active.
    Valid,
    /// The server revoked it.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Revoked => "revoked",
            Verdict::Expired => "expired",
        }
    }
}

/// Runs `warrant token inspect`: verifies the warrant against the server's JWKS, then
/// asks the server (admin) whether it was revoked. Prints VALID, REVOKED (with the
/// revocation) or EXPIRED, and exits 1 unless it is valid.
async fn inspect(conn: &Conn, client: &Client, token: &str) -> CliResult {
    use warrant_token::warrant::VerifyError;
    use warrant_token::JwsError;
    // The revocation check needs the admin token: fail before sending anything.
    let admin = conn.client()?;
    let meta = client.get("/.well-known/oauth-authorization-server").await?;
    let issuer = meta.get("issuer").and_then(Value::as_str).ok_or("the server's metadata names no issuer")?;
    let jwks = client.get("/.well-known/jwks.json").await?;
    let keys = warrant_token::KeySet::from_jwks(&jwks);
    let header = warrant_token::jws::peek_unverified::<Value>(token).map(|(h, _)| h).ok();
    let kid = header.as_ref().and_then(|h| h.kid.clone()).unwrap_or_default();
    let unverified = claims_of(token);
    let jti = unverified.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned();
    let exp = unverified.get("exp").and_then(Value::as_i64).unwrap_or(0);
    // An expired warrant's signature is still checked (just before it expired); its key may
    // have left the JWKS since, in which case only the server's record speaks for it.
    let signature = match warrant_token::warrant::verify_warrant(token, &keys, issuer, now()) {
        Err(VerifyError::Expired) => {
            warrant_token::warrant::verify_warrant(token, &keys, issuer, UnixTime(exp.saturating_sub(1))).map(|_| false)
        }
        other => other.map(|_| true),
    };
    let status = match admin.get(&format!("/v1/warrants/{jti}")).await {
        Ok(status) => Some(status),
        Err(crate::client::ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let state = status.as_ref().and_then(|s| s.get("state")).and_then(Value::as_str).unwrap_or_default();
    let verdict = match (&signature, state) {
        (Ok(_) | Err(VerifyError::Jws(JwsError::UnknownKey)), "revoked") => Verdict::Revoked,
        (Ok(_) | Err(VerifyError::Jws(JwsError::UnknownKey)), "expired") | (Ok(false), _) => Verdict::Expired,
        (Ok(true), "active") => Verdict::Valid,
        (Ok(_), _) => {
            return Err(format!("the warrant is NOT valid: this server has no record of warrant `{jti}`").into())
        }
        (Err(e), _) => return Err(format!("the warrant is NOT valid: {e}").into()),
    };
    let claims = unverified;
    let revocation = status.as_ref().and_then(|s| s.get("revocation")).cloned().unwrap_or(Value::Null);
    let out = json!({
        "valid": verdict == Verdict::Valid,
        "state": verdict.as_str(),
        "header": header,
        "claims": claims,
        "revocation": revocation,
    });
    print(conn.json, &out, |_| {
        let headline = match verdict {
            Verdict::Valid => format!("VALID: signed by {issuer} with key {kid}, found in its JWKS; not revoked"),
            Verdict::Revoked if revocation.is_object() => format!(
                "REVOKED: {} (revocation {} of {} {}, {})",
                field(&revocation, "reason"),
                field(&revocation, "id"),
                field(&revocation, "kind"),
                field(&revocation, "target"),
                time_field(&revocation, "at"),
            ),
            Verdict::Revoked => "REVOKED".to_owned(),
            Verdict::Expired => format!("EXPIRED at {}", timestamp(exp)),
        };
        format!("{headline}\n{}\n\n{}", warrant_summary(&claims, now().0), crate::output::json(&claims))
    });
    match verdict {
        Verdict::Valid => Ok(()),
        _ => Err(Box::new(crate::Exit { code: 1, message: None })),
    }
}
