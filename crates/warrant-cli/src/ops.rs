//! `warrant authorize`, `warrant revoke`, `warrant task …`: decisions and revocations
//! from the command line.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::output::{field, print, record, table, timestamp};
use crate::{CliResult, Conn};

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Show a task's warrants as a tree, with their state.
    Show {
        /// Task id.
        id: String,
    },
    /// Complete a task: every warrant of it stops working now.
    Complete {
        /// Task id.
        id: String,
    },
}

fn parse_object(flag: &str, text: Option<String>) -> Result<Option<Value>, String> {
    text.map(|t| match serde_json::from_str::<Value>(&t) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!("`--{flag}` must be a JSON object, e.g. '{{\"estimated_cost\": 120}}'")),
    })
    .transpose()
}

/// `warrant authorize`'s arguments.
#[derive(Debug)]
pub struct AuthorizeArgs {
    /// The warrant argument (`-`, `@FILE` or the token).
    pub token: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// `--context` JSON.
    pub context: Option<String>,
    /// `--resource-attrs` JSON.
    pub resource_attrs: Option<String>,
    /// `--approval-id`.
    pub approval_id: Option<String>,
}

/// `warrant authorize`'s exit status on a deny (and on anything but allow or pending).
pub const EXIT_DENY: u8 = 1;
/// `warrant authorize`'s exit status on `pending` (a human approval is needed).
pub const EXIT_PENDING: u8 = 2;

/// Runs `warrant authorize`: exits 0 on allow, [`EXIT_DENY`] on deny and
/// [`EXIT_PENDING`] on pending, with or without `--json`.
pub async fn authorize(conn: &Conn, args: AuthorizeArgs) -> CliResult {
    let AuthorizeArgs { token, action, resource, context, resource_attrs, approval_id } = args;
    let token = crate::tokens::read_token_arg(&token)?;
    let mut body = json!({ "token": token, "action": action, "resource": resource, "approval_id": approval_id });
    if let (Some(map), Some(c)) = (body.as_object_mut(), parse_object("context", context)?) {
        map.insert("context".into(), c);
    }
    if let (Some(map), Some(a)) = (body.as_object_mut(), parse_object("resource-attrs", resource_attrs)?) {
        map.insert("resource_attrs".into(), a);
    }
    let answer = conn.public_client().post("/v1/authorize", &body).await?;
    print(conn.json, &answer, |v| {
        record(
            v,
            &[
                "decision",
                "decision_id",
                "code",
                "reasons",
                "policies",
                "policy_version",
                "approval_id",
                "retry_after",
                "trust",
            ],
        )
    });
    match answer.get("decision").and_then(Value::as_str) {
        Some("allow") => Ok(()),
        Some("pending") => Err(Box::new(crate::Exit {
            code: EXIT_PENDING,
            message: (!conn.json).then(|| {
                "pending: approve it with `warrant approve <approval_id>`, then retry with `--approval-id`".to_owned()
            }),
        })),
        _ => Err(Box::new(crate::Exit {
            code: EXIT_DENY,
            message: (!conn.json).then(|| format!("denied ({})", field(&answer, "code"))),
        })),
    }
}

/// Runs `warrant revoke`.
pub async fn revoke(conn: &Conn, kind: String, id: String, reason: String) -> CliResult {
    let answer = conn.client()?.post("/v1/revocations", &json!({ "kind": kind, "id": id, "reason": reason })).await?;
    print(conn.json, &answer, |v| {
        format!(
            "revoked {kind} {id}: {} live warrant(s) ended ({})",
            field(v, "revoked_warrants"),
            field(v, "revocation_id")
        )
    });
    Ok(())
}

/// The warrants of a task as an indented tree.
fn task_tree(task: &Value) -> String {
    let warrants = task.get("warrants").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut lines = vec![
        format!("task     {} \"{}\"", field(task, "id"), field(task, "purpose")),
        format!("human    {}", field(task, "human")),
        format!("root     {}", field(task, "root_agent")),
        format!("created  {}", crate::output::time_field(task, "created_at")),
        format!("ended    {}", if task.get("ended").and_then(Value::as_bool) == Some(true) { "yes" } else { "no" }),
    ];
    fn walk(all: &[Value], parent: Option<&str>, depth: usize, lines: &mut Vec<String>) {
        for w in all.iter().filter(|w| w.get("parent").and_then(Value::as_str) == parent) {
            let jti = field(w, "jti");
            let exp = w.get("expires_at").and_then(Value::as_i64).map(timestamp).unwrap_or_default();
            lines.push(format!(
                "{}└─ {jti}  {}  [{}]  scope: {}  expires {exp}",
                "   ".repeat(depth),
                field(w, "agent"),
                field(w, "state"),
                field(w, "scope")
            ));
            if depth < 32 {
                walk(all, Some(&jti), depth + 1, lines);
            }
        }
    }
    walk(&warrants, None, 0, &mut lines);
    lines.join("\n")
}

/// Runs a `warrant task` command.
pub async fn task(conn: &Conn, cmd: TaskCmd) -> CliResult {
    let client = conn.client()?;
    match cmd {
        TaskCmd::Show { id } => print(conn.json, &client.get(&format!("/v1/tasks/{id}")).await?, task_tree),
        TaskCmd::Complete { id } => {
            let answer = client.post(&format!("/v1/tasks/{id}/complete"), &json!({})).await?;
            print(conn.json, &answer, |v| {
                format!("task {id} completed: {} live warrant(s) ended", field(v, "revoked_warrants"))
            });
        }
    }
    Ok(())
}

/// A table of audit records.
pub fn audit_table(records: &[Value]) -> String {
    table(
        records,
        &[
            ("SEQ", "seq"),
            ("AT", "at"),
            ("KIND", "kind"),
            ("DECISION", "decision"),
            ("AGENT", "agent"),
            ("TASK", "task"),
            ("WARRANT", "warrant"),
        ],
    )
}
