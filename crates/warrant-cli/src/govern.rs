//! `warrant review …`, `warrant inventory`, `warrant agent attest` and `warrant agent
//! rotate-key`: continuous governance from the command line.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{with_query, Client, ClientError};
use crate::output::{
    duration, field, grid, indent, is_time, json, print, record, time_field, timestamp, truncate, Cell, Frame,
};
use crate::{keyfile, CliResult, Conn};

/// The severities, most urgent first.
const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

/// The longest one-line evidence summary, in characters.
const SUMMARY_MAX: usize = 240;

/// `warrant review`'s filters (when no subcommand is given).
#[derive(Debug, Args)]
pub struct ReviewFilter {
    /// Which findings: active (open and accepted; the default), open, accepted, resolved or all.
    #[arg(long, value_parser = ["active", "open", "accepted", "resolved", "all"])]
    status: Option<String>,
    /// Only this kind, e.g. `over_privileged`.
    #[arg(long)]
    kind: Option<String>,
    /// Only findings about this subject, e.g. an agent id or `policy:3`.
    #[arg(long)]
    subject: Option<String>,
    /// At most this many findings (the most recently seen).
    #[arg(long)]
    limit: Option<u32>,
}

/// `warrant review …`.
#[derive(Debug, Subcommand)]
pub enum ReviewCmd {
    /// Show one finding with its full evidence.
    Show {
        /// Finding id (`fnd_…`).
        id: String,
    },
    /// Accept a finding's risk, with a justification, for a while; it opens again
    /// afterwards if its cause remains.
    #[command(group(ArgGroup::new("lapse").required(true).args(["duration", "until"])))]
    Accept {
        /// Finding id (`fnd_…`).
        id: String,
        /// Why the risk is acceptable (kept in the audit log).
        #[arg(long)]
        justification: String,
        /// For how long, e.g. `30d`, `12h`, `90m`, `3600s`.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<i64>,
        /// Until when: Unix seconds or RFC 3339.
        #[arg(long, value_name = "UNIX", value_parser = parse_time)]
        until: Option<i64>,
    },
    /// Apply an over-privileged finding's recommendation: narrow the agent's max scope
    /// to what it used.
    Apply {
        /// Finding id (`fnd_…`) of an `over_privileged` finding.
        id: String,
    },
    /// Run a governance sweep of every agent now and print what changed.
    Sweep,
}

/// `warrant inventory`'s arguments.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// `csv` or `json` [default: csv, or json with `--json`].
    #[arg(long, value_parser = ["csv", "json"])]
    format: Option<String>,
    /// Write to this file (created or truncated, mode 0600) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The governance subcommands of `warrant agent`.
#[derive(Debug, Subcommand)]
pub enum AgentGovernCmd {
    /// Attest, as the agent's owner, that it should keep what it holds: shows what it holds
    /// against what it used, then records the attestation.
    Attest {
        /// Agent id.
        id: String,
        /// A note kept with the attestation.
        #[arg(long)]
        note: Option<String>,
        /// Act as this human: their approver token (`warrant human approver-session`, never
        /// the session token their agents exchange); `-` reads stdin, `@FILE` a file.
        /// Default: the admin token.
        #[arg(long = "approver", alias = "session")]
        session: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Replace an agent's public key: client assertions signed with the old key are
    /// refused from then on; warrants already issued stay valid.
    #[command(group(ArgGroup::new("key").required(true).args(["public_key", "generate"])))]
    RotateKey {
        /// Agent id.
        id: String,
        /// The new public key: a JWK file from `warrant keygen` (`.pub.jwk` or `.key.jwk`).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Generate a new key pair as `NAME.key.jwk` (0600) and `NAME.pub.jwk`, and register it.
        #[arg(long, value_name = "NAME")]
        generate: Option<PathBuf>,
    },
}

/// Parses a duration such as `30d`, `12h`, `90m`, `3600s` or `2w` (a bare number is
/// seconds) into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a duration like `30d`, `12h`, `90m` or `3600s`"));
    }
    let multiplier: i64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("unknown duration unit `{other}` in `{text}`: use s, m, h, d or w")),
    };
    let n: i64 = digits.parse().map_err(|_| format!("`{text}` is too long a duration"))?;
    let secs = n.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too long a duration"))?;
    if secs == 0 {
        return Err("the duration must be longer than zero".into());
    }
    Ok(secs)
}

/// Parses a point in time given as Unix seconds or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("`{text}` is neither Unix seconds nor an RFC 3339 time"))
}

/// One evidence value, compactly.
fn compact(name: &str, value: &Value) -> String {
    match value {
        Value::Number(n) if is_time(name) => n.as_i64().map(timestamp).unwrap_or_else(|| n.to_string()),
        Value::Number(n) if name.ends_with("_secs") => n.as_i64().map(duration).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(|i| compact("", i)).collect::<Vec<_>>().join(","),
        Value::Object(map) => {
            let inner: Vec<String> =
                map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={}", compact(k, v))).collect();
            format!("{{{}}}", inner.join(" "))
        }
        other => other.to_string(),
    }
}

/// A one-line summary of a finding's evidence. For `over_privileged`, what is unused and
/// the recommended scope; otherwise the evidence's fields as `key=value` (the `fix`
/// advice is shown on its own line by [`finding_block`]).
pub fn evidence_summary(kind: &str, evidence: &Value) -> String {
    let line = if kind == "over_privileged" {
        format!(
            "unused: {}; recommended scope: {}",
            compact("", evidence.get("unused").unwrap_or(&Value::Null)),
            compact("", evidence.get("recommended_scope").unwrap_or(&Value::Null)),
        )
    } else {
        match evidence {
            Value::Object(map) => map
                .iter()
                .filter(|(k, v)| !v.is_null() && k.as_str() != "fix")
                .map(|(k, v)| format!("{k}={}", compact(k, v)))
                .collect::<Vec<_>>()
                .join(" "),
            Value::Null => String::new(),
            other => compact("", other),
        }
    };
    truncate(line, SUMMARY_MAX)
}

/// Where a severity sorts: most urgent first, unknown ones last.
fn severity_rank(severity: &str) -> usize {
    SEVERITIES.iter().position(|s| *s == severity).unwrap_or(SEVERITIES.len())
}

/// The findings sorted by severity (critical first), then kind, then subject.
fn sorted(findings: &[Value]) -> Vec<&Value> {
    let mut out: Vec<&Value> = findings.iter().collect();
    out.sort_by(|a, b| {
        severity_rank(&field(a, "severity"))
            .cmp(&severity_rank(&field(b, "severity")))
            .then_with(|| field(a, "kind").cmp(&field(b, "kind")))
            .then_with(|| field(a, "subject").cmp(&field(b, "subject")))
    });
    out
}

/// The summary table: one row per kind, a column per severity, and totals.
pub fn summary_table(findings: &[Value]) -> String {
    let mut counts: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    let mut totals = [0usize; 5];
    for f in findings {
        let row = counts.entry(field(f, "kind")).or_default();
        let rank = severity_rank(&field(f, "severity"));
        if let (Some(cell), Some(sum)) = (row.get_mut(rank), totals.get_mut(rank)) {
            *cell += 1;
            *sum += 1;
        }
    }
    // Kinds with the most urgent findings first, then by name.
    let mut rows: Vec<(String, [usize; 5])> = counts.into_iter().collect();
    rows.sort_by_key(|(kind, c)| (c.iter().position(|n| *n > 0).unwrap_or(c.len()), kind.clone()));
    // The counts, header included, keep to the right.
    let header = ["KIND", "CRITICAL", "HIGH", "MEDIUM", "LOW", "TOTAL"]
        .into_iter()
        .enumerate()
        .map(|(i, h)| if i == 0 { Cell::Left(h.to_owned()) } else { Cell::Right(h.to_owned()) })
        .collect();
    let line = |name: String, c: &[usize; 5]| {
        let mut cells = vec![Cell::Left(name)];
        cells.extend(
            c.iter().take(SEVERITIES.len()).map(|n| Cell::Right(if *n == 0 { "-".to_owned() } else { n.to_string() })),
        );
        cells.push(Cell::Right(c.iter().sum::<usize>().to_string()));
        cells
    };
    let mut lines: Vec<Vec<Cell>> = rows.iter().map(|(kind, c)| line(kind.clone(), c)).collect();
    lines.push(line("total".into(), &totals));
    grid(Frame::Borders, header, lines)
}

/// One finding as a readable block: a headline, when it was seen, its evidence summary,
/// the suggested fix and any acceptance.
pub fn finding_block(f: &Value) -> String {
    let status = field(f, "status");
    let mut lines = vec![format!(
        "[{}] {}  {}  ({status})",
        field(f, "severity").to_uppercase(),
        field(f, "kind"),
        field(f, "subject"),
    )];
    let mut seen = format!(
        "  {}  first seen {}, last seen {}",
        field(f, "id"),
        time_field(f, "first_seen"),
        time_field(f, "last_seen")
    );
    if f.get("resolved_at").and_then(Value::as_i64).is_some() {
        seen.push_str(&format!(", resolved {}", time_field(f, "resolved_at")));
    }
    lines.push(seen);
    let evidence = f.get("evidence").unwrap_or(&Value::Null);
    let summary = evidence_summary(&field(f, "kind"), evidence);
    if !summary.is_empty() {
        lines.push(format!("  evidence: {summary}"));
    }
    if let Some(fix) = evidence.get("fix").and_then(Value::as_str) {
        lines.push(format!("  fix: {fix}"));
    }
    if let Some(acceptance) = f.get("acceptance").filter(|a| a.is_object()) {
        lines.push(format!(
            "  accepted by {} on {} until {}: {}",
            field(acceptance, "by"),
            time_field(acceptance, "at"),
            time_field(acceptance, "until"),
            field(acceptance, "justification"),
        ));
    }
    lines.join("\n")
}

/// The whole review report: the summary table, then one block per finding, most urgent first.
pub fn report(answer: &Value, status: &str) -> String {
    let findings = answer.get("findings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if findings.is_empty() {
        return format!("no {status} findings");
    }
    let mut out = format!("{} {status} finding{}\n", findings.len(), if findings.len() == 1 { "" } else { "s" });
    out.push_str(&summary_table(findings));
    for f in sorted(findings) {
        out.push_str("\n\n");
        out.push_str(&finding_block(f));
    }
    out
}

/// Runs `warrant review` (the report) or one of its subcommands.
pub async fn review(conn: &Conn, filter: ReviewFilter, cmd: Option<ReviewCmd>) -> CliResult {
    let client = conn.client()?;
    let Some(cmd) = cmd else {
        let ReviewFilter { status, kind, subject, limit } = filter;
        let shown = status.clone().unwrap_or_else(|| "active".into());
        let path = with_query(
            "/v1/findings",
            &[("status", status), ("kind", kind), ("subject", subject), ("limit", limit.map(|l| l.to_string()))],
        );
        let answer = client.get(&path).await?;
        print(conn.json, &answer, |v| report(v, &shown));
        return Ok(());
    };
    match cmd {
        ReviewCmd::Show { id } => {
            let finding = client.get(&format!("/v1/findings/{id}")).await?;
            print(conn.json, &finding, |f| {
                let evidence = json(f.get("evidence").unwrap_or(&Value::Null));
                format!("{}\n  evidence (full):\n{}", finding_block(f), indent(&evidence, 4))
            });
        }
        ReviewCmd::Accept { id, justification, duration, until } => {
            let body = match (duration, until) {
                (Some(secs), _) => json!({"justification": justification, "for_secs": secs}),
                (None, Some(until)) => json!({"justification": justification, "until": until}),
                (None, None) => return Err("give `--for DURATION` or `--until UNIX`".into()),
            };
            let finding = client.post(&format!("/v1/findings/{id}/accept"), &body).await?;
            print(conn.json, &finding, finding_block);
        }
        ReviewCmd::Apply { id } => {
            let answer = client.post(&format!("/v1/findings/{id}/apply"), &json!({})).await?;
            print(conn.json, &answer, |v| {
                let agent = v.get("agent").unwrap_or(&Value::Null);
                let finding = v.get("finding").unwrap_or(&Value::Null);
                format!(
                    "narrowed agent {} ({}): max scope is now {}\nfinding {} is {}",
                    field(agent, "id"),
                    field(agent, "name"),
                    field(agent, "max_scope"),
                    field(finding, "id"),
                    field(finding, "status"),
                )
            });
        }
        ReviewCmd::Sweep => {
            let answer = client.post("/v1/governance/sweep", &json!({})).await?;
            print(conn.json, &answer, |v| {
                let n = |name: &str| v.get(name).and_then(Value::as_i64).unwrap_or(0);
                format!(
                    "swept {} agents ({} live warrants) in {} ms\n{}",
                    n("agents"),
                    n("live_warrants"),
                    n("took_ms"),
                    record(v, &["opened", "updated", "reopened", "resolved", "suspended"]),
                )
            });
        }
    }
    Ok(())
}

/// Runs `warrant inventory`: exports the agent inventory as CSV or JSON, to stdout or a file.
pub async fn inventory(conn: &Conn, args: InventoryArgs) -> CliResult {
    let format = match (args.format.as_deref(), conn.json) {
        (Some("csv"), true) => return Err("`--json` and `--format csv` contradict each other".into()),
        (Some(f), _) => f.to_owned(),
        (None, true) => "json".into(),
        (None, false) => "csv".into(),
    };
    let path = with_query("/v1/inventory", &[("format", Some(format.clone()))]);
    let mut text =
        if format == "json" { json(&conn.client()?.get(&path).await?) } else { get_text(conn, &path).await? };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match args.out {
        None => crate::output::emit(text.trim_end_matches('\n')),
        Some(out) => {
            keyfile::write_private(&out, &text)?;
            let agents = match format.as_str() {
                "json" => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("agents").and_then(Value::as_array).map(Vec::len))
                    .unwrap_or(0),
                _ => text.lines().count().saturating_sub(1),
            };
            let plural = if agents == 1 { "" } else { "s" };
            errln!("wrote the inventory of {agents} agent{plural} as {format} to {}", out.display());
        }
    }
    Ok(())
}

/// `GET path` as text (for CSV), authenticated as admin; errors as the JSON client reports them.
async fn get_text(conn: &Conn, path: &str) -> Result<String, ClientError> {
    let url = format!("{}{path}", conn.server.trim_end_matches('/'));
    let mut req = reqwest::Client::new().get(&url);
    req = req.bearer_auth(conn.require_admin_token()?);
    let resp = req.send().await.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
    if status.is_success() {
        return Ok(text);
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let member = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let message = match member("message") {
        m if m.is_empty() => text.chars().take(200).collect(),
        m => m,
    };
    Err(ClientError::Api { status: status.as_u16(), code: member("error"), message })
}

/// A client that authenticates as the given human's session when set, else as admin.
fn owner_client(conn: &Conn, session: Option<String>) -> Result<Client, String> {
    match session {
        Some(s) => Ok(Client::new(&conn.server, Some(crate::tokens::read_token_arg(&s)?))),
        None => conn.client().map_err(|e| e.to_string()),
    }
}

/// The attestation evidence, readably: what the agent holds against what it used, the
/// recommended scope and its open findings.
pub fn attestation_evidence(v: &Value) -> String {
    // A heading with the permissions one per line below it, or `none` on the same line.
    let list = |heading: String, name: &str| match v.get(name) {
        Some(Value::Array(items)) if !items.is_empty() => {
            let lines = items.iter().map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()));
            format!("{heading}:{}", lines.map(|p| format!("\n    {p}")).collect::<String>())
        }
        Some(Value::Array(_)) => format!("{heading}: none"),
        _ => format!("{heading}: -"),
    };
    let used = v
        .get("usage_window_secs")
        .and_then(Value::as_i64)
        .map(|w| format!("used in the last {}", duration(w)))
        .unwrap_or_else(|| "used".into());
    let recommended = match v.get("recommended_scope") {
        Some(Value::Array(items)) if items.is_empty() => {
            "recommended scope: none to recommend (no use in the window to base it on)".into()
        }
        Some(Value::Array(_)) => list("recommended scope (what it used)".into(), "recommended_scope"),
        _ => "recommended scope: keep the current max scope (all of it was used)".into(),
    };
    let mut lines = vec![
        format!("agent          {} ({})", field(v, "agent"), field(v, "name")),
        format!("owner          {}", field(v, "owner")),
        format!("mode, status   {}, {}", field(v, "mode"), field(v, "status")),
        format!("last activity  {}", time_field(v, "last_activity")),
        format!("last attested  {} (next due {})", time_field(v, "last_attested"), time_field(v, "due_at")),
        list("holds (max scope)".into(), "max_scope"),
        list(used, "used"),
        list("unused".into(), "unused"),
        recommended,
    ];
    let findings = v.get("open_findings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if findings.is_empty() {
        lines.push("open findings: none".into());
    } else {
        lines.push("open findings:".into());
        for f in sorted(findings) {
            lines.push(format!(
                "    [{}] {} {} ({})",
                field(f, "severity").to_uppercase(),
                field(f, "kind"),
                field(f, "id"),
                field(f, "status")
            ));
        }
    }
    lines.join("\n")
}

/// Asks on the terminal whether to go ahead; refuses when stdin is not a terminal.
fn confirm(question: &str) -> Result<bool, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err("stdin is not a terminal, so no one can confirm; pass `--yes` to attest without asking".into());
    }
    crate::output::emit_err(&format!("{question} [y/N] "));
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Runs `warrant agent attest` and `warrant agent rotate-key`.
pub async fn agent(conn: &Conn, cmd: AgentGovernCmd) -> CliResult {
    match cmd {
        AgentGovernCmd::Attest { id, note, session, yes } => {
            if !yes && !std::io::stdin().is_terminal() {
                return Err(
                    "stdin is not a terminal, so no one can confirm; pass `--yes` to attest without asking".into()
                );
            }
            let client = owner_client(conn, session)?;
            let evidence = client.get(&format!("/v1/agents/{id}/attestation")).await?;
            let shown = attestation_evidence(&evidence);
            // With --json stdout carries only the attestation; the evidence goes to stderr.
            if conn.json {
                errln!("{shown}");
            } else {
                outln!("{shown}\n");
            }
            if !yes && !confirm(&format!("Attest that agent {id} should keep this max scope?"))? {
                return Err("not attested; nothing was recorded".into());
            }
            let body = json!({"note": note.unwrap_or_default()});
            let attestation = client.post(&format!("/v1/agents/{id}/attest"), &body).await?;
            print(conn.json, &attestation, |a| {
                format!(
                    "attested agent {} as {} (by {}, {})",
                    field(a, "agent"),
                    field(a, "id"),
                    field(a, "by"),
                    time_field(a, "at")
                )
            });
        }
        AgentGovernCmd::RotateKey { id, public_key, generate } => {
            let jwk = match (public_key, generate) {
                (Some(path), _) => serde_json::to_value(keyfile::read_public(&path)?)?,
                (None, Some(name)) => {
                    let pair = keyfile::generate()?;
                    let private = name.with_extension("key.jwk");
                    let public = name.with_extension("pub.jwk");
                    keyfile::write_new(&private, &serde_json::to_string_pretty(&pair.private_jwk_json())?, true)?;
                    keyfile::write_new(&public, &serde_json::to_string_pretty(&pair.public_jwk())?, false)?;
                    errln!("private key: {} (keep it secret)", private.display());
                    errln!("public key:  {}", public.display());
                    serde_json::to_value(pair.public_jwk())?
                }
                (None, None) => return Err("give `--public-key FILE` or `--generate NAME`".into()),
            };
            let agent = conn.client()?.post(&format!("/v1/agents/{id}/key"), &json!({"public_key": jwk})).await?;
            print(conn.json, &agent, |a| {
                format!(
                    "rotated the key of agent {} ({}); assertions signed with the old key are refused from now on",
                    field(a, "id"),
                    field(a, "name")
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("90m"), Ok(90 * 60));
        assert_eq!(parse_duration("3600s"), Ok(3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration(" 7d "), Ok(7 * 86_400));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "d", "-5d", "5x", "5dd", "1.5h", "0s", "0", "99999999999999999999s", "9223372036854775807d"] {
            assert!(parse_duration(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn times_parse_as_unix_or_rfc3339() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert!(parse_time("tomorrow").is_err());
    }

    #[test]
    fn over_privileged_evidence_shows_unused_and_recommended() {
        let evidence = json!({
            "max_scope": ["crm.*", "payments.*"],
            "unused": ["payments.*"],
            "used": ["crm.read:crm/1"],
            "recommended_scope": ["crm.read:crm/1"],
            "window_secs": 2_592_000,
        });
        assert_eq!(
            evidence_summary("over_privileged", &evidence),
            "unused: payments.*; recommended scope: crm.read:crm/1"
        );
    }

    #[test]
    fn other_evidence_is_compact_key_values() {
        let evidence = json!({
            "owner": "hum_1",
            "owner_status": "disabled",
            "fix": "retire the agent",
            "idle_secs": 3 * 86_400,
            "last_activity": 1_700_000_000,
            "never": null,
            "grants": ["payments.* (namespace `payments`)"],
        });
        let line = evidence_summary("orphaned_agent", &evidence);
        assert!(line.contains("owner=hum_1") && line.contains("owner_status=disabled"), "{line}");
        assert!(line.contains("idle_secs=3d") && line.contains("last_activity=2023-11-14T22:13:20Z"), "{line}");
        assert!(line.contains("grants=payments.*"), "{line}");
        assert!(!line.contains("fix") && !line.contains("never"), "{line}");
        let long = json!({"samples": vec!["x".repeat(50); 20]});
        let cut = evidence_summary("policy_broadening", &long);
        assert_eq!(cut.chars().count(), SUMMARY_MAX);
        assert!(cut.ends_with('…'));
    }

    fn finding(id: &str, kind: &str, severity: &str) -> Value {
        json!({
            "id": id, "kind": kind, "severity": severity, "subject": "agt_1", "status": "open",
            "evidence": {"fix": "do something"}, "first_seen": 1_700_000_000, "last_seen": 1_700_000_600,
        })
    }

    #[test]
    fn the_report_summarises_by_kind_and_sorts_details_by_severity() {
        let answer = json!({"findings": [
            finding("fnd_a", "idle_agent", "low"),
            finding("fnd_b", "broad_grant", "high"),
            finding("fnd_c", "orphaned_agent", "critical"),
            finding("fnd_d", "broad_grant", "medium"),
        ]});
        let text = report(&answer, "active");
        assert!(text.starts_with("4 active findings"), "{text}");
        let (summary, details) = text.split_once("[CRITICAL]").unwrap();
        let rows: Vec<&str> = summary.lines().collect();
        let row = |name: &str| rows.iter().position(|l| l.contains(name)).unwrap();
        assert!(row("orphaned_agent") < row("broad_grant") && row("broad_grant") < row("idle_agent"), "{summary}");
        assert!(row("idle_agent") < row("total"), "{summary}");
        let cells = |name: &str| -> Vec<String> {
            rows[row(name)].split_whitespace().filter(|c| *c != "│").map(str::to_owned).collect()
        };
        assert_eq!(cells("broad_grant"), ["broad_grant", "-", "1", "1", "-", "2"]);
        assert_eq!(cells("total"), ["total", "1", "1", "1", "1", "4"]);
        let order: Vec<usize> =
            ["fnd_c", "fnd_b", "fnd_d", "fnd_a"].iter().map(|id| details.find(id).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{details}");
        assert!(details.contains("first seen 2023-11-14T22:13:20Z, last seen 2023-11-14T22:23:20Z"));
        assert!(details.contains("fix: do something"));
    }

    #[test]
    fn no_findings_says_so() {
        assert_eq!(report(&json!({"findings": []}), "resolved"), "no resolved findings");
    }

    #[test]
    fn acceptance_is_shown() {
        let mut f = finding("fnd_a", "stale_key", "medium");
        f["status"] = json!("accepted");
        f["acceptance"] =
            json!({"by": "admin", "justification": "vendor key", "at": 1_700_000_000, "until": 1_700_086_400});
        let block = finding_block(&f);
        assert!(block.contains("(accepted)"), "{block}");
        assert!(block.contains("accepted by admin on 2023-11-14T22:13:20Z until 2023-11-15T22:13:20Z: vendor key"));
    }

    #[test]
    fn attestation_evidence_lists_held_used_and_unused() {
        let v = json!({
            "agent": "agt_1", "name": "bot", "owner": "hum_1", "mode": "delegated", "status": "active",
            "max_scope": ["crm.*", "payments.*"], "used": ["crm.read:crm/1"], "unused": ["payments.*"],
            "recommended_scope": ["crm.read:crm/1"], "last_activity": null, "usage_window_secs": 2_592_000,
            "last_attested": null, "due_at": 1_700_000_000,
            "open_findings": [{"id": "fnd_1", "kind": "broad_grant", "severity": "high", "status": "open"}],
        });
        let text = attestation_evidence(&v);
        assert!(text.contains("used in the last 30d:\n    crm.read:crm/1\n"), "{text}");
        assert!(text.contains("unused:\n    payments.*\n"), "{text}");
        assert!(text.contains("holds (max scope):\n    crm.*\n    payments.*\n"), "{text}");
        assert!(!text.lines().any(|l| l.ends_with(' ')), "{text}");
        assert!(text.contains("[HIGH] broad_grant fnd_1 (open)"), "{text}");
        assert!(text.contains("next due 2023-11-14T22:13:20Z"), "{text}");
        let none = json!({"recommended_scope": null, "open_findings": [], "used": []});
        let text = attestation_evidence(&none);
        assert!(text.contains("keep the current max scope") && text.contains("open findings: none"), "{text}");
        assert!(text.contains("\nused: none\n"), "{text}");
        let unused_all = json!({"recommended_scope": [], "open_findings": []});
        assert!(attestation_evidence(&unused_all).contains("none to recommend"));
    }
}
