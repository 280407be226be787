//! `warrant policy …` and `warrant audit …`.
//!
//! `policy validate`, `audit verify` and `audit export` work on files and the data
//! directory directly, with no server; the rest go through the API.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;
use warrant_core::audit::{decode, hash_hex};
use warrant_policy::schema::BASE_SCHEMA;
use warrant_policy::CompiledPolicies;
use warrant_server::config::DEFAULT_DATA_DIR;

use crate::output::{field, print, table, timestamp};
use crate::{CliResult, Conn};

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Validate a policy directory against the schema, without a server.
    Validate {
        /// The directory [default: <data>/policies].
        dir: Option<PathBuf>,
        /// The data directory.
        #[arg(long, env = "WARRANT_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
    },
    /// Show the policy set in force.
    Show,
    /// List every version of the policy set.
    History,
    /// Make the server re-read its policy directory now.
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain and signed checkpoints in the data directory, and compare
    /// the log with the audit witness, naming the first bad record or what the witness
    /// shows. Exits 1 when the log has been tampered with.
    Verify {
        /// The data directory.
        #[arg(long, env = "WARRANT_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// Verify the log in this PostgreSQL database (`postgres://` URL) instead of the
        /// data directory's SQLite file; the data directory still gives the key-encryption
        /// key and the witness.
        #[arg(long, env = "WARRANT_DATABASE", hide_env_values = true)]
        database: Option<String>,
        #[command(flatten)]
        keys: crate::KeyPaths,
    },
    /// Export the audit log from the data directory as JSON lines (for a SIEM).
    Export {
        /// The data directory.
        #[arg(long, env = "WARRANT_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// Export from this PostgreSQL database (`postgres://` URL) instead of the data
        /// directory's SQLite file.
        #[arg(long, env = "WARRANT_DATABASE", hide_env_values = true)]
        database: Option<String>,
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Write to this file (created or truncated, mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the provenance of a record (e.g. a decision id) as a tree back to the human.
    Trace {
        /// `dec_123` or `123`.
        id: String,
    },
    /// Query the audit log through the server: newest first, a page at a time (the next
    /// page's `--before` is printed on stderr).
    Query {
        /// Records about this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Records tracing to this human.
        #[arg(long)]
        human: Option<String>,
        /// Records of this task.
        #[arg(long)]
        task: Option<String>,
        /// `issuance`, `delegation`, `decision`, `revocation`, `registry` or `policy`.
        #[arg(long)]
        kind: Option<String>,
        /// `allow` or `deny`.
        #[arg(long)]
        decision: Option<String>,
        /// At most this many per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only records before this sequence number (the next page, newest first).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// Only records after this sequence number.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Oldest first (the next page is then `--after`).
        #[arg(long)]
        oldest_first: bool,
    },
}

/// Runs a `warrant policy` command.
pub async fn policy(conn: &Conn, cmd: PolicyCmd) -> CliResult {
    match cmd {
        PolicyCmd::Validate { dir, data } => {
            let dir = dir.unwrap_or_else(|| data.join(warrant_server::server::POLICY_DIR));
            let (files, schema) = warrant_policy::load::read_dir(&dir)?;
            let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
            let compiled = CompiledPolicies::compile(files, schema.as_deref().unwrap_or(BASE_SCHEMA))
                .map_err(|e| format!("INVALID: {e}"))?;
            outln!(
                "valid: {} policies in {} ({}), fingerprint {}",
                compiled.policy_ids().len(),
                dir.display(),
                names.join(", "),
                compiled.hash()
            );
            for id in compiled.policy_ids() {
                outln!("  {id}");
            }
        }
        PolicyCmd::Show => {
            let set = conn.client()?.get("/v1/policies").await?;
            print(conn.json, &set, |v| {
                format!("version {}  fingerprint {}\n\n{}", field(v, "version"), field(v, "hash"), field(v, "text"))
            });
        }
        PolicyCmd::History => {
            let history = conn.client()?.get("/v1/policies/history").await?;
            print(conn.json, &history, |v| {
                let rows = v.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
                table(
                    &rows,
                    &[("VERSION", "version"), ("LOADED", "loaded_at"), ("ACTIVE", "active"), ("FINGERPRINT", "hash")],
                )
            });
        }
        PolicyCmd::Reload => {
            let answer = conn.client()?.post("/v1/policies/reload", &serde_json::json!({})).await?;
            print(conn.json, &answer, |v| {
                if v.get("changed").and_then(Value::as_bool) == Some(true) {
                    format!("version {} is now in force", field(v, "version"))
                } else {
                    format!("unchanged: version {} stays in force", field(v, "version"))
                }
            });
        }
    }
    Ok(())
}

/// The database to read, unchanged: the data directory's SQLite file, opened read only
/// (offline verification and export change nothing and work on read-only media), or the
/// PostgreSQL database `database` names (not migrated: a schema whose audit log this
/// build cannot read as it is is refused).
async fn open(
    data: &std::path::Path,
    database: Option<&str>,
) -> Result<Box<dyn warrant_store::Store>, Box<dyn std::error::Error + Send + Sync>> {
    use warrant_server::config::Database;
    match database.map(Database::parse).transpose()? {
        Some(Database::Postgres(url)) => Ok(Box::new(
            warrant_store::PgStore::open_for_evidence(url.expose())
                .await
                .map_err(|e| format!("cannot read {url}: {e}"))?,
        )),
        _ => {
            let db = data.join(warrant_server::server::DB_FILE);
            if !db.exists() {
                return Err(format!("no Warrant database in `{}`", data.display()).into());
            }
            Ok(Box::new(warrant_store::SqliteStore::open_read_only(&db)?))
        }
    }
}

/// The provenance trace as a tree.
pub fn trace_tree(t: &Value) -> String {
    let rec = t.get("record").cloned().unwrap_or_default();
    let at = rec.get("at").and_then(Value::as_i64).map(timestamp).unwrap_or_default();
    let details = rec.get("details").cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "record   #{} {} {} at {at}",
        field(&rec, "seq"),
        field(&rec, "kind"),
        rec.get("decision").and_then(Value::as_str).unwrap_or("")
    )];
    if details.get("action").is_some() {
        lines.push(format!("action   {} on {}", field(&details, "action"), field(&details, "resource")));
        lines.push(format!("reasons  {}", field(&details, "reasons")));
    }
    if details.get("pep").is_some() {
        lines.push(format!("via      PEP {}", field(&details, "pep")));
    }
    if let Some(mcp) = details.get("mcp").filter(|m| !m.is_null()) {
        let target = mcp.get("target").and_then(Value::as_str).map(|t| format!(" {t}")).unwrap_or_default();
        lines.push(format!("mcp      {}{target} on upstream {}", field(mcp, "method"), field(mcp, "upstream")));
    }
    if let Some(h) = t.get("human").filter(|h| !h.is_null()) {
        lines.push(format!("human    {} ({}, {})", field(h, "id"), field(h, "name"), field(h, "email")));
    }
    if let Some(task) = t.get("task").filter(|x| !x.is_null()) {
        lines.push(format!("task     {} \"{}\"", field(task, "id"), field(task, "purpose")));
    }
    let agents = t.get("agents").and_then(Value::as_array).cloned().unwrap_or_default();
    let warrants = t.get("warrants").and_then(Value::as_array).cloned().unwrap_or_default();
    lines.push("chain".into());
    for (depth, w) in warrants.iter().enumerate() {
        let agent_id = field(w, "agent");
        let name = agents.iter().find(|a| field(a, "id") == agent_id).map(|a| field(a, "name")).unwrap_or_default();
        let exp = w.get("expires_at").and_then(Value::as_i64).map(timestamp).unwrap_or_default();
        lines.push(format!(
            "{}└─ {agent_id} {name}  warrant {}  scope: {}  expires {exp}",
            "   ".repeat(depth),
            field(w, "jti"),
            field(w, "scope")
        ));
    }
    if let Some(p) = t.get("policies").filter(|p| !p.is_null()) {
        lines.push(format!(
            "policies version {} ({}): {}",
            field(p, "version"),
            field(p, "hash"),
            field(p, "deciding")
        ));
    }
    lines.join("\n")
}

/// Runs a `warrant audit` command.
pub async fn audit(conn: &Conn, cmd: AuditCmd) -> CliResult {
    match cmd {
        AuditCmd::Verify { data, database, keys } => {
            let settings = keys.settings(&data)?;
            let store = open(&data, database.as_deref()).await?;
            let store = store.as_ref();
            // The KEK is needed only to open sealed keys; it is never created here.
            let kek = if warrant_server::kek::has_sealed_keys(store).await? {
                Some(
                    warrant_server::kek::for_store(store, &settings.kek_file, warrant_server::kek::WhenMissing::Fail)
                        .await?,
                )
            } else {
                None
            };
            let keys = warrant_engine::keys::checkpoint_keys(store, kek.as_ref()).await?;
            // Servers sharing a database each witness only the checkpoints they signed.
            let coverage = if store.shared() {
                warrant_engine::audit::WitnessCoverage::OwnOnly
            } else {
                warrant_engine::audit::WitnessCoverage::Every
            };
            let verification =
                warrant_engine::audit::verify_all(store, &keys, Some(&settings.witness), coverage).await?;
            let ok = verification.ok();
            let report = verification.chain;
            let witness = verification.witness.unwrap_or(warrant_engine::audit::WitnessReport {
                checkpoints: 0,
                ok: true,
                problem: None,
            });
            if conn.json {
                let view = serde_json::json!({
                    "ok": ok,
                    "records": report.records,
                    "first_bad": report.first_bad,
                    "reason": report.reason,
                    "witness": witness,
                });
                outln!("{}", crate::output::json(&view));
            }
            if ok {
                if !conn.json {
                    outln!(
                        "OK: {} audit records verified (hash chain, signed checkpoints, {} witnessed checkpoints in {})",
                        report.records,
                        witness.checkpoints,
                        settings.witness.display()
                    );
                }
            } else {
                let mut message = String::from("TAMPERED:");
                if !report.ok {
                    let first = report.first_bad.map(|s| format!("#{s}")).unwrap_or_else(|| "?".into());
                    message
                        .push_str(&format!(" the first bad record is {first}: {}", report.reason.unwrap_or_default()));
                }
                if let Some(problem) = witness.problem {
                    if !report.ok {
                        message.push(';');
                    }
                    message.push_str(&format!(" witness ({}): {problem}", settings.witness.display()));
                }
                return Err(message.into());
            }
        }
        AuditCmd::Export { data, database, after, out } => {
            let store = open(&data, database.as_deref()).await?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(crate::keyfile::create_private(path)?)),
                None => Box::new(std::io::BufWriter::new(crate::output::Stdout)),
            };
            let total = store.audit_head().await?.map_or(0, |(seq, _)| seq).saturating_sub(after);
            let bar = out.as_ref().map(|_| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, eta {eta})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let mut next = after.saturating_add(1);
            let mut written = 0u64;
            loop {
                let page = store.audit_records(next, 1000).await?;
                let Some(last) = page.last().map(|r| r.record.seq) else { break };
                for row in &page {
                    let (seq, entry) = decode(&row.record)?;
                    let mut line = serde_json::to_value(&entry)?;
                    if let Some(map) = line.as_object_mut() {
                        map.insert("seq".into(), seq.into());
                        map.insert("hash".into(), hash_hex(&row.record.hash).into());
                        map.insert("prev_hash".into(), hash_hex(&row.record.prev_hash).into());
                    }
                    writeln!(sink, "{}", serde_json::to_string(&line)?)?;
                    written += 1;
                }
                if let Some(bar) = &bar {
                    bar.set_position(written);
                }
                next = last.saturating_add(1);
            }
            sink.flush()?;
            if let Some(bar) = bar {
                bar.finish();
                errln!("exported {written} records");
            }
        }
        AuditCmd::Trace { id } => {
            let trace = conn.client()?.get(&format!("/v1/audit/{id}/trace")).await?;
            print(conn.json, &trace, trace_tree);
        }
        AuditCmd::Query { agent, human, task, kind, decision, limit, before, after, oldest_first } => {
            let params = [
                ("limit", Some(limit.to_string())),
                ("order", Some(if oldest_first { "oldest" } else { "newest" }.to_owned())),
                ("before", before.map(|b| b.to_string())),
                ("after", after.map(|a| a.to_string())),
                ("agent", agent),
                ("human", human),
                ("task", task),
                ("kind", kind),
                ("decision", decision),
            ];
            let page = conn.client()?.get(&crate::client::with_query("/v1/audit", &params)).await?;
            print(conn.json, &page, |v| {
                crate::ops::audit_table(
                    v.get("records").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(),
                )
            });
            if let (Some(next), false) = (page.get("next").and_then(Value::as_u64), conn.json) {
                let flag = if oldest_first { "--after" } else { "--before" };
                errln!("more: `warrant audit query {flag} {next}` (with the same filters) for the next page");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_trace_names_the_pep_and_the_mcp_call_it_came_through() {
        let t = json!({"record": {"seq": 7, "kind": "decision", "decision": "allow", "details": {
            "action": "mcp.tools.call", "resource": "mcp/crm/tool/lookup", "reasons": ["ok"],
            "pep": "mcp-gateway", "mcp": {"method": "tools/call", "target": "lookup", "upstream": "crm"}}}});
        let text = super::trace_tree(&t);
        assert!(text.contains("via      PEP mcp-gateway"), "{text}");
        assert!(text.contains("mcp      tools/call lookup on upstream crm"), "{text}");
        let direct = super::trace_tree(&json!({"record": {"details": {"action": "a", "resource": "r"}}}));
        assert!(!direct.contains("via ") && !direct.contains("mcp "), "{direct}");
    }
}
