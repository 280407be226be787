//! `warrant pep …`: the credentials of enforcement points (PEPs) for the AuthZEN PDP.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::output::{print, record, table};
use crate::{keyfile, CliResult, Conn};

#[derive(Debug, Subcommand)]
pub enum PepCmd {
    /// Create a credential for an enforcement point; prints its secret once (or writes
    /// it to `--out`). It is good only for `/access/v1/*`.
    Add {
        /// A name for people; recorded with every decision the PEP asks for.
        #[arg(long)]
        name: String,
        /// Allow it to ask about plain subjects (humans, services: no warrant).
        #[arg(long)]
        plain_subjects: bool,
        /// Write the secret alone to this file (created or truncated, mode 0600) instead
        /// of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List credentials (never their secrets).
    List,
    /// Revoke a credential: it authenticates nothing from now on.
    Revoke {
        /// Credential id (`pep_…`).
        id: String,
    },
}

const PEP_FIELDS: &[&str] = &["id", "name", "plain_subjects", "created_at", "revoked_at"];
const PEP_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("PLAIN SUBJECTS", "plain_subjects"),
    ("CREATED", "created_at"),
    ("REVOKED", "revoked_at"),
];

/// Runs a `warrant pep` command.
pub async fn pep(conn: &Conn, cmd: PepCmd) -> CliResult {
    let client = conn.client()?;
    let one = |v: &Value| record(v, PEP_FIELDS);
    match cmd {
        PepCmd::Add { name, plain_subjects, out } => {
            let mut created = client.post("/v1/peps", &json!({"name": name, "plain_subjects": plain_subjects})).await?;
            let token = created.get("token").and_then(Value::as_str).unwrap_or_default().to_owned();
            match out {
                Some(path) => {
                    keyfile::write_private(&path, &format!("{token}\n"))?;
                    if let Some(map) = created.as_object_mut() {
                        map.remove("token");
                    }
                    print(conn.json, &created, one);
                    errln!("wrote the PEP credential's secret to {}", path.display());
                }
                None => print(conn.json, &created, |_| token.clone()),
            }
        }
        PepCmd::List => {
            let list = client.get("/v1/peps").await?;
            print(conn.json, &list, |v| {
                table(v.get("peps").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), PEP_COLUMNS)
            });
        }
        PepCmd::Revoke { id } => print(conn.json, &client.delete(&format!("/v1/peps/{id}")).await?, one),
    }
    Ok(())
}
