//! `warrant approvals`, `warrant approve`, `warrant reject`, `warrant agent trust` and
//! `warrant events`: the guardrails from the command line.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::with_query;
use crate::output::{print, record, table};
use crate::{CliResult, Conn};

const APPROVAL_FIELDS: &[&str] = &[
    "id",
    "status",
    "approver_role",
    "approver",
    "agent",
    "human",
    "task",
    "action",
    "resource",
    "request",
    "policies",
    "created_at",
    "expires_at",
    "decided_by",
    "reason",
    "used_at",
];
const APPROVAL_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("STATUS", "status"),
    ("APPROVER", "approver"),
    ("AGENT", "agent"),
    ("ACTION", "action"),
    ("RESOURCE", "resource"),
    ("EXPIRES", "expires_at"),
];

/// `warrant approvals …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// List approvals, newest first.
    List {
        /// Only this status: pending, approved, rejected, used, expired.
        #[arg(long)]
        status: Option<String>,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Show one approval with the request it holds.
    Show {
        /// Approval id (`apr_…`).
        id: String,
    },
}

/// A client that authenticates as the approver when a session token is given, else as admin.
fn approver_client(conn: &Conn, session: Option<String>) -> Result<crate::client::Client, String> {
    match session {
        Some(s) => Ok(crate::client::Client::new(&conn.server, Some(crate::tokens::read_token_arg(&s)?))),
        None => conn.client().map_err(|e| e.to_string()),
    }
}

/// Runs `warrant approvals`.
pub async fn approvals(conn: &Conn, cmd: ApprovalsCmd, session: Option<String>) -> CliResult {
    let client = approver_client(conn, session)?;
    match cmd {
        ApprovalsCmd::List { status, agent } => {
            let path = with_query("/v1/approvals", &[("status", status), ("agent", agent)]);
            let list = client.get(&path).await?;
            print(conn.json, &list, |v| {
                table(
                    v.get("approvals").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(),
                    APPROVAL_COLUMNS,
                )
            });
        }
        ApprovalsCmd::Show { id } => {
            print(conn.json, &client.get(&format!("/v1/approvals/{id}")).await?, |v| record(v, APPROVAL_FIELDS))
        }
    }
    Ok(())
}

/// `warrant approve` and `warrant reject`'s arguments.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Approval id (`apr_…`).
    id: String,
    /// Why (kept in the audit log).
    #[arg(long)]
    reason: Option<String>,
    /// Act as this human: their approver token (`warrant human approver-session`, never
    /// the session token their agents exchange); `-` reads stdin, `@FILE` a file.
    /// Default: the admin token.
    #[arg(long = "approver", alias = "session")]
    session: Option<String>,
}

/// Runs `warrant approve` (`approve = true`) or `warrant reject`.
pub async fn decide(conn: &Conn, args: DecideArgs, approve: bool) -> CliResult {
    let DecideArgs { id, reason, session } = args;
    let client = approver_client(conn, session)?;
    let verb = if approve { "approve" } else { "reject" };
    let answer = client.post(&format!("/v1/approvals/{id}/{verb}"), &json!({ "reason": reason })).await?;
    print(conn.json, &answer, |v| record(v, APPROVAL_FIELDS));
    Ok(())
}

/// Runs `warrant agent trust`.
pub async fn trust(conn: &Conn, id: String) -> CliResult {
    let answer = conn.client()?.get(&format!("/v1/agents/{id}/trust")).await?;
    print(conn.json, &answer, |v| {
        let mut out = record(
            v,
            &[
                "agent",
                "trust",
                "quarantine_below",
                "thresholds",
                "shadow",
                "learning",
                "allowed",
                "actions",
                "prefixes",
                "rate_mean",
                "rate_active_mean",
                "period_secs",
                "deploy",
            ],
        );
        let signals = v.get("recent_signals").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if !signals.is_empty() {
            out.push_str("\nrecent signals:\n");
            out.push_str(&table(
                signals,
                &[("AT", "at"), ("KIND", "kind"), ("DETAIL", "detail"), ("FIGURES", "figures")],
            ));
        }
        let responses = v.get("recent_responses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if !responses.is_empty() {
            out.push_str("\nrecent responses:\n");
            out.push_str(&table(
                responses,
                &[("AT", "at"), ("LEVEL", "level"), ("ENFORCED", "enforced"), ("WHY", "why")],
            ));
        }
        out
    });
    Ok(())
}

/// Runs `warrant events`: prints the live event stream until interrupted, one JSON event
/// per line.
pub async fn events(conn: &Conn, agent: Option<String>, kind: Option<String>) -> CliResult {
    let path = with_query("/v1/events", &[("agent", agent), ("kind", kind)]);
    let mut response = conn.client()?.stream(&path).await?;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        if crate::output::stdout_closed() {
            break;
        }
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    outln!("{}", data.trim());
                }
            }
        }
    }
    Ok(())
}
