//! `warrant human …` and `warrant agent …`: the management API from the command line.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::output::{print, record, table};
use crate::{keyfile, CliResult, Conn};

#[derive(Debug, Subcommand)]
pub enum HumanCmd {
    /// Register a human.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email (unique).
        #[arg(long)]
        email: String,
        /// A permission the human may delegate (repeatable), e.g. `crm.read:customers/*`.
        #[arg(long = "entitlement", short = 'e')]
        entitlements: Vec<String>,
        /// A role (repeatable), e.g. `editor`: policies for humans read `principal.roles`.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// What the identity provider calls this human (its `sub`); an enforcement point
        /// may name the human by it.
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Replace a human's roles with the `--role`s given (none: remove every role).
    Roles {
        /// Human id.
        id: String,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List humans.
    List,
    /// Show one human.
    Show {
        /// Human id.
        id: String,
    },
    /// Disable a human: nothing more happens on their behalf.
    Disable {
        /// Human id.
        id: String,
    },
    /// Enable a disabled human again (their live warrants decide again; revoked ones
    /// stay revoked).
    Enable {
        /// Human id.
        id: String,
    },
    /// Open a session token for a human (stands in for an IdP login); prints the token,
    /// or writes it to `--out`. It is good only as the subject of a token exchange
    /// (delegating work to an agent).
    Session {
        /// Human id.
        id: String,
        /// Write the token to this file (created or truncated, mode 0600) instead of
        /// printing it; use it as `--session @FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Open a short-lived approver token for a human; prints the token. It is good only
    /// for deciding their approvals and attesting their agents (`--approver`), never
    /// for a token exchange: give it to the human, not to their agents.
    ApproverSession {
        /// Human id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Register an agent.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The owner's human id.
        #[arg(long)]
        owner: String,
        /// `delegated` (acts for a human) or `autonomous` (acts as itself).
        #[arg(long, value_parser = ["delegated", "autonomous"])]
        mode: String,
        /// A permission of its max scope (repeatable).
        #[arg(long = "max-scope", short = 's', required = true)]
        max_scope: Vec<String>,
        /// Its public key: a JWK file from `warrant keygen` (`.pub.jwk` or `.key.jwk`).
        #[arg(long, required_unless_present = "spiffe_id", conflicts_with = "spiffe_id")]
        public_key: Option<PathBuf>,
        /// Or its SPIFFE ID (`spiffe://<trust domain>/<path>`): the workload authenticates
        /// with JWT-SVIDs of a trust domain in `[[federation.spiffe]]`.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// Expiry of an ephemeral agent: Unix seconds or RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        /// A label `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List agents.
    List {
        /// Only agents of this owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show one agent.
    Show {
        /// Agent id.
        id: String,
    },
    /// Suspend an agent.
    Suspend {
        /// Agent id.
        id: String,
    },
    /// Resume a suspended agent.
    Resume {
        /// Agent id.
        id: String,
    },
    /// Hand an agent to another owner (an active human), e.g. when its owner left.
    Transfer {
        /// Agent id.
        id: String,
        /// The new owner's human id.
        #[arg(long)]
        owner: String,
    },
    /// Retire an agent for good.
    Retire {
        /// Agent id.
        id: String,
    },
    /// Show an agent's trust score, what its baseline learned, its recent anomaly
    /// signals with the figures behind them and the responses chosen for it (review this
    /// before resuming a quarantined agent).
    Trust {
        /// Agent id.
        id: String,
    },
    /// Announce a deploy of an agent (a new tool version): for a day its new tools and
    /// resources are expected and cost it no trust, unless they are sensitive.
    Deploy {
        /// Agent id.
        id: String,
        /// What was deployed (a version, a tag).
        #[arg(long)]
        version: String,
    },
}

const HUMAN_FIELDS: &[&str] = &["id", "name", "email", "status", "entitlements", "roles", "external_id", "created_at"];
const HUMAN_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("EMAIL", "email"),
    ("STATUS", "status"),
    ("ENTITLEMENTS", "entitlements"),
    ("ROLES", "roles"),
];
const AGENT_FIELDS: &[&str] =
    &["id", "name", "owner", "mode", "status", "max_scope", "spiffe_id", "expires_at", "labels", "created_at"];
const AGENT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("OWNER", "owner"),
    ("MODE", "mode"),
    ("STATUS", "status"),
    ("MAX SCOPE", "max_scope"),
    ("EXPIRES", "expires_at"),
];

/// Runs a `warrant human` command.
pub async fn human(conn: &Conn, cmd: HumanCmd) -> CliResult {
    let client = conn.client()?;
    let one = |v: &Value| record(v, HUMAN_FIELDS);
    match cmd {
        HumanCmd::Add { name, email, entitlements, roles, external_id } => {
            let body = json!({
                "name": name, "email": email, "entitlements": entitlements, "roles": roles, "external_id": external_id,
            });
            print(conn.json, &client.post("/v1/humans", &body).await?, one);
        }
        HumanCmd::Roles { id, roles } => {
            print(conn.json, &client.put(&format!("/v1/humans/{id}/roles"), &json!({"roles": roles})).await?, one)
        }
        HumanCmd::List => {
            let list = client.get("/v1/humans").await?;
            print(conn.json, &list, |v| {
                table(v.get("humans").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), HUMAN_COLUMNS)
            });
        }
        HumanCmd::Show { id } => print(conn.json, &client.get(&format!("/v1/humans/{id}")).await?, one),
        HumanCmd::Disable { id } => {
            print(conn.json, &client.post(&format!("/v1/humans/{id}/disable"), &json!({})).await?, one)
        }
        HumanCmd::Enable { id } => {
            print(conn.json, &client.post(&format!("/v1/humans/{id}/enable"), &json!({})).await?, one)
        }
        HumanCmd::Session { id, out } => {
            let session = client.post(&format!("/v1/humans/{id}/sessions"), &json!({})).await?;
            let token = session.get("token").and_then(Value::as_str).unwrap_or_default();
            match out {
                Some(path) => {
                    keyfile::write_private(&path, &format!("{token}\n"))?;
                    errln!("wrote the session token of {id} to {}", path.display());
                }
                None => print(conn.json, &session, |_| token.to_owned()),
            }
        }
        HumanCmd::ApproverSession { id } => {
            let session = client.post(&format!("/v1/humans/{id}/approver-sessions"), &json!({})).await?;
            print(conn.json, &session, |v| v.get("token").and_then(Value::as_str).unwrap_or_default().to_owned());
        }
    }
    Ok(())
}

/// Runs a `warrant agent` command.
pub async fn agent(conn: &Conn, cmd: AgentCmd) -> CliResult {
    let client = conn.client()?;
    let one = |v: &Value| record(v, AGENT_FIELDS);
    match cmd {
        AgentCmd::Add { name, owner, mode, max_scope, public_key, spiffe_id, expires_at, labels } => {
            let jwk = public_key.map(|path| keyfile::read_public(&path)).transpose()?;
            let mut label_map = serde_json::Map::new();
            for label in labels {
                let (k, v) = label.split_once('=').ok_or_else(|| format!("label `{label}` is not `key=value`"))?;
                label_map.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let expires_at = expires_at.map(|e| e.parse::<i64>().map(Value::from).unwrap_or(Value::String(e)));
            let body = json!({
                "name": name, "owner": owner, "mode": mode, "max_scope": max_scope,
                "public_key": jwk, "spiffe_id": spiffe_id, "expires_at": expires_at, "labels": label_map,
            });
            print(conn.json, &client.post("/v1/agents", &body).await?, one);
        }
        AgentCmd::List { owner } => {
            let path = crate::client::with_query("/v1/agents", &[("owner", owner)]);
            let list = client.get(&path).await?;
            print(conn.json, &list, |v| {
                table(v.get("agents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), AGENT_COLUMNS)
            });
        }
        AgentCmd::Show { id } => print(conn.json, &client.get(&format!("/v1/agents/{id}")).await?, one),
        AgentCmd::Suspend { id } => {
            print(conn.json, &client.post(&format!("/v1/agents/{id}/suspend"), &json!({})).await?, one)
        }
        AgentCmd::Resume { id } => {
            print(conn.json, &client.post(&format!("/v1/agents/{id}/resume"), &json!({})).await?, one)
        }
        AgentCmd::Transfer { id, owner } => {
            let body = json!({ "owner": owner });
            print(conn.json, &client.post(&format!("/v1/agents/{id}/owner"), &body).await?, one)
        }
        AgentCmd::Retire { id } => print(conn.json, &client.delete(&format!("/v1/agents/{id}")).await?, one),
        AgentCmd::Trust { id } => return crate::guard::trust(conn, id).await,
        AgentCmd::Deploy { id, version } => {
            let body = json!({ "version": version });
            let answer = client.post(&format!("/v1/agents/{id}/deploys"), &body).await?;
            print(conn.json, &answer, |v| record(v, &["agent", "version", "until"]))
        }
    }
    Ok(())
}
