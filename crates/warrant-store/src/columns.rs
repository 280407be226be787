//! How records are laid out in columns, the same for every backend: values as the text
//! both schemas store, the column lists, and the checks that read them back. The
//! backends (`sqlite/`, `postgres/`) differ only in how they talk to their database.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use warrant_core::govern::Finding;
use warrant_core::guard::approval::Approval;

use crate::records::WarrantRecord;
use crate::StoreError;

/// A value as stored text: a string as itself, anything else as JSON.
pub(crate) fn to_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(StoreError::Corrupt(e.to_string())),
    }
}

/// Parses a JSON column.
pub(crate) fn json<T: DeserializeOwned>(text: String) -> Result<T, serde_json::Error> {
    serde_json::from_str(&text)
}

/// Parses a column holding one word (a serde enum variant).
pub(crate) fn word<T: DeserializeOwned>(text: String) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(text))
}

/// The columns of `warrants`, in the order both backends read them.
pub(crate) const WARRANT_COLS: &str =
    "jti, parent, agent, task, human, sub, mode, scope, chain, kid, issued_at, expires_at, budget, claims";

/// A budget as stored: `NULL` when there is none, else a JSON object counter -> limit.
pub(crate) fn budget_text(budget: &BTreeMap<String, i64>) -> Result<Option<String>, StoreError> {
    if budget.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(budget).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The columns of a finding: `(id, kind, subject, severity, status, first_seen, last_seen, body)`.
pub(crate) type FindingCols = (String, &'static str, String, &'static str, &'static str, i64, i64, String);

/// A finding's columns, its whole value as the JSON `body` beside the ones it is queried by.
pub(crate) fn finding_cols(finding: &Finding) -> Result<FindingCols, StoreError> {
    let body = serde_json::to_string(finding).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((
        finding.id.clone(),
        finding.kind.as_str(),
        finding.subject.clone(),
        finding.severity.as_str(),
        finding.status.as_str(),
        finding.first_seen.0,
        finding.last_seen.0,
        body,
    ))
}

/// Whether a finding read back from its `body` agrees with the columns it was found by.
pub(crate) fn finding_matches(finding: &Finding, id: &str, status: &str, kind: &str) -> bool {
    finding.id == id && finding.status.as_str() == status && finding.kind.as_str() == kind
}

/// The columns of `approval`: `(id, status, agent_id, approver, created_at, expires_at, body)`.
pub(crate) type ApprovalCols = (String, &'static str, String, String, i64, i64, String);

/// An approval's columns, its whole value as the JSON `body` beside the ones it is queried by.
pub(crate) fn approval_cols(approval: &Approval) -> Result<ApprovalCols, StoreError> {
    let body = serde_json::to_string(approval).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((
        approval.id.as_str().to_owned(),
        approval.status.as_str(),
        approval.agent.as_str().to_owned(),
        approval.approver.as_str().to_owned(),
        approval.created_at.0,
        approval.expires_at.0,
        body,
    ))
}

/// Whether a revocation of `kind` on `target`, recorded while `w` was being issued, names
/// something `w` rests on (an agent of its chain, its task, its human, its parent). An
/// unknown kind counts as a hit: refuse rather than guess.
pub(crate) fn revocation_names(kind: &str, target: &str, w: &WarrantRecord) -> bool {
    match kind {
        "agent" => w.chain.iter().any(|a| a.as_str() == target),
        "task" => w.task.as_str() == target,
        "human" => w.human.as_str() == target,
        "warrant" => w.parent.as_ref().is_some_and(|p| p.as_str() == target),
        _ => true,
    }
}

/// Asserts that `listed` is the text of every file of `migrations/<dir>/`, in file-number
/// order, each numbered from `0001` without a gap: a migration file missing from the list
/// (or an entry out of place) fails the backend's test rather than leaving a database
/// unmigrated.
#[cfg(test)]
pub(crate) fn assert_migrations_are_every_file(dir: &str, listed: &[&str]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name").to_owned();
            (name, std::fs::read_to_string(&path).expect("a readable migration"))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), listed.len(), "every file of {} is listed", dir.display());
    for (i, ((name, sql), listed)) in files.iter().zip(listed).enumerate() {
        let number = format!("{:04}_", i + 1);
        if !(name.starts_with(&number) && name.ends_with(".sql")) {
            panic!("migration file `{name}` should be numbered `{number}…` and end in `.sql`");
        }
        assert_eq!(sql, listed, "entry {i} is the text of `{name}`");
    }
}

/// Checks that every migration of `listed` after the first `oldest` only creates a plain
/// (not unique) index or drops one, and returns the names of the indexes they create: the
/// migrations a store may open a database without, since no query needs an index to be
/// right (a unique index would be a constraint a write relies on). A statement of any
/// other kind fails, naming the migration and the value `oldest` must be raised to.
#[cfg(test)]
pub(crate) fn index_migrations_after(listed: &[&str], oldest: usize) -> Vec<String> {
    assert!(oldest <= listed.len());
    let mut created = Vec::new();
    for (i, sql) in listed.iter().enumerate().skip(oldest) {
        let text: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        for statement in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<String> = statement.split_whitespace().map(str::to_uppercase).collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let name_at = match words[..] {
                ["CREATE", "INDEX", "IF", "NOT", "EXISTS", _, ..] => Some(5),
                ["CREATE", "INDEX", _, ..] => Some(2),
                ["DROP", "INDEX", ..] => None,
                _ => panic!(
                    "migration {} may be missing when a database is opened without migrating, but runs \
                     `{statement}`; raise the oldest version opened so to {}",
                    i + 1,
                    i + 1
                ),
            };
            created.extend(name_at.and_then(|at| statement.split_whitespace().nth(at)).map(str::to_owned));
        }
    }
    created
}
