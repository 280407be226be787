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
/// (not unique) index or drops one that was made plain, and returns the names of the
/// indexes they create: the migrations a store may open a database without, since no query
/// needs an index to be right (a unique index is a constraint writes rely on, made or
/// dropped). Any other statement fails, naming the migration and the value `oldest` must be
/// raised to.
#[cfg(test)]
pub(crate) fn index_migrations_after(listed: &[&str], oldest: usize) -> Vec<String> {
    assert!(oldest <= listed.len());
    let statements = |sql: &str| -> Vec<String> {
        let text: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    };
    let words = |statement: &str| -> Vec<String> { statement.split_whitespace().map(str::to_owned).collect() };
    let upper = |words: &[String]| -> Vec<String> { words.iter().map(|w| w.to_uppercase()).collect() };
    // Every index any migration makes unique, by name.
    let mut unique = Vec::new();
    for sql in listed {
        for statement in statements(sql) {
            let (original, words) = (words(&statement), upper(&words(&statement)));
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            match words[..] {
                ["CREATE", "UNIQUE", "INDEX", "IF", "NOT", "EXISTS", ..] => unique.extend(original.get(6).cloned()),
                ["CREATE", "UNIQUE", "INDEX", ..] => unique.extend(original.get(3).cloned()),
                _ => {}
            }
        }
    }
    let mut created = Vec::new();
    for (i, sql) in listed.iter().enumerate().skip(oldest) {
        for statement in statements(sql) {
            let (original, words) = (words(&statement), upper(&words(&statement)));
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let refuse = || -> ! {
                panic!(
                    "migration {} may be missing when a database is opened without migrating, but runs \
                     `{statement}`; raise the oldest version opened so to {}",
                    i + 1,
                    i + 1
                )
            };
            match words[..] {
                ["CREATE", "INDEX", "IF", "NOT", "EXISTS", _, "ON", ..] => created.extend(original.get(5).cloned()),
                ["CREATE", "INDEX", name, "ON", ..] if name != "CONCURRENTLY" => {
                    created.extend(original.get(2).cloned())
                }
                ["DROP", "INDEX", "IF", "EXISTS", _] | ["DROP", "INDEX", _] => {
                    let dropped = original.last().map(|n| n.to_lowercase());
                    if unique.iter().any(|u| Some(u.to_lowercase()) == dropped) {
                        refuse()
                    }
                }
                _ => refuse(),
            }
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::index_migrations_after;

    /// Whether `index_migrations_after` accepts `later` as the migration after `earlier`.
    fn accepts(earlier: &str, later: &str) -> Option<Vec<String>> {
        let (earlier, later) = (earlier.to_owned(), later.to_owned());
        std::panic::catch_unwind(move || index_migrations_after(&[&earlier, &later], 1)).ok()
    }

    /// The checker lets through plain indexes made or dropped, and nothing else: not a
    /// unique index made or dropped, a table or column changed, or an index built
    /// concurrently or without a name.
    #[test]
    fn only_plain_index_migrations_may_be_skipped() {
        let base = "CREATE TABLE t (a INTEGER, b TEXT);\n-- a comment\nCREATE UNIQUE INDEX t_b ON t (b);\nCREATE INDEX t_a ON t (a);";
        let plain = "-- two plain indexes\nCREATE INDEX t_ab ON t (a, b);\ncreate index if not exists t_ba on t (b, a);\nDROP INDEX t_a;";
        assert_eq!(accepts(base, plain), Some(vec!["t_ab".to_owned(), "t_ba".to_owned()]));
        assert_eq!(accepts(base, "DROP INDEX IF EXISTS t_a;"), Some(vec![]));
        for refused in [
            "CREATE UNIQUE INDEX t_ab ON t (a, b);",
            "DROP INDEX t_b;",
            "DROP INDEX IF EXISTS t_b;",
            "ALTER TABLE t ADD COLUMN c TEXT;",
            "CREATE TABLE u (a INTEGER);",
            "CREATE INDEX CONCURRENTLY t_c ON t (a);",
            "CREATE INDEX ON t (a);",
            "CREATE INDEX t_c ON t (a); UPDATE t SET a = 1;",
        ] {
            assert_eq!(accepts(base, refused), None, "{refused}");
        }
    }
}
