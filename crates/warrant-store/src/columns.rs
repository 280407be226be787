//! How records are laid out in columns, the same for every backend: values as the text
//! both schemas store, the column lists, and the checks that read them back; and what
//! both say about schema versions (the refusal of one a store cannot open without
//! migrating, and which later migrations such a store may do without). The
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

/// Refuses a schema version a store opened without migrating cannot use, with the same
/// message from both stores: the version found, the versions this build opens so
/// (`usable`), and what to do: `empty` for a database holding no Warrant schema (version 0
/// or less), `older` for one behind `usable`, and for a newer one, to use the release that
/// wrote it.
pub(crate) fn refuse_unusable_schema(
    version: i64,
    usable: std::ops::RangeInclusive<usize>,
    empty: &str,
    older: &str,
) -> Result<(), StoreError> {
    let known = usize::try_from(version).ok().filter(|v| *v > 0);
    if known.is_some_and(|v| usable.contains(&v)) {
        return Ok(());
    }
    let advice = match known {
        None => empty,
        Some(v) if v > *usable.end() => "a newer release wrote it; use that release",
        Some(_) => older,
    };
    let opens = if usable.start() == usable.end() {
        format!("version {}", usable.end())
    } else {
        format!("versions {} to {}", usable.start(), usable.end())
    };
    Err(StoreError::Schema(format!(
        "the database has schema version {version}, this build opens {opens} without migrating; {advice}"
    )))
}

/// What one migration statement does to indexes, as [`index_migrations_after`] sorts it.
#[cfg(test)]
enum IndexChange {
    /// `CREATE INDEX [IF NOT EXISTS] name ON …`: a plain, named index.
    Create(String),
    /// `CREATE UNIQUE INDEX …`, under the name it gives, bare and in lower case (if one
    /// can be read).
    CreateUnique(Option<String>),
    /// `DROP INDEX [IF EXISTS] name`, the name bare (unquoted, without a schema) and in
    /// lower case.
    Drop(String),
    /// `CREATE TABLE [IF NOT EXISTS] name …`, the name bare and in lower case.
    CreateTable(String),
    /// Anything else: a table or column changed, data written, an index built
    /// concurrently or without a name.
    Other,
}

#[cfg(test)]
impl IndexChange {
    /// Sorts one statement (comments and the closing `;` already taken off): an index it
    /// creates under its name as written (the name queries use), a unique index made or an
    /// index dropped under its bare name, as the database compares names.
    fn of(statement: &str) -> Self {
        let original: Vec<&str> = statement.split_whitespace().collect();
        let upper: Vec<String> = original.iter().map(|w| w.to_uppercase()).collect();
        let words: Vec<&str> = upper.iter().map(String::as_str).collect();
        // A name as the database compares it: unquoted, without a schema, any case. A
        // list of names (a comma) is not one name, and sorts as something else.
        let bare = |i: usize| -> Option<String> {
            let name = original.get(i)?.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
            let name = name.rsplit('.').next()?.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
            (!name.is_empty() && !name.contains(',')).then(|| name.to_lowercase())
        };
        match words[..] {
            // The name is the word before the first `ON`, whatever options come first.
            ["CREATE", "UNIQUE", "INDEX", ref rest @ ..] => {
                Self::CreateUnique(rest.iter().position(|w| *w == "ON").and_then(|on| bare(3 + on - 1)))
            }
            ["CREATE", "INDEX", "IF", "NOT", "EXISTS", _, "ON", ..] => Self::Create(original[5].to_owned()),
            ["CREATE", "INDEX", name, "ON", ..] if name != "CONCURRENTLY" => Self::Create(original[2].to_owned()),
            ["DROP", "INDEX", "IF", "EXISTS", _] | ["DROP", "INDEX", _] => match bare(original.len() - 1) {
                Some(name) => Self::Drop(name),
                None => Self::Other,
            },
            ["CREATE", "TABLE", ref rest @ ..] => {
                let name = if rest.starts_with(&["IF", "NOT", "EXISTS"]) { 5 } else { 2 };
                bare(name).map_or(Self::Other, |n| Self::CreateTable(n.trim_end_matches('(').to_owned()))
            }
            _ => Self::Other,
        }
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
    skippable_migrations_after(listed, oldest, &[])
}

/// [`index_migrations_after`] for a reader that never reads the tables `unread`: a
/// migration after the first `oldest` may also create one of those.
#[cfg(test)]
pub(crate) fn skippable_migrations_after(listed: &[&str], oldest: usize, unread: &[&str]) -> Vec<String> {
    assert!(oldest <= listed.len());
    let migrations: Vec<Vec<(String, IndexChange)>> = listed
        .iter()
        .map(|sql| {
            let text: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            text.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_owned(), IndexChange::of(s)))
                .collect()
        })
        .collect();
    // Every index any migration makes unique, by name.
    let unique: Vec<String> = migrations
        .iter()
        .flatten()
        .filter_map(|(_, change)| match change {
            IndexChange::CreateUnique(name) => name.clone(),
            _ => None,
        })
        .collect();
    let mut created = Vec::new();
    for (i, statements) in migrations.iter().enumerate().skip(oldest) {
        for (statement, change) in statements {
            match change {
                IndexChange::Create(name) => created.push(name.clone()),
                IndexChange::Drop(name) if !unique.contains(name) => {}
                IndexChange::CreateTable(name) if unread.contains(&name.as_str()) => {}
                _ => panic!(
                    "migration {} may be missing when a database is opened without migrating, but runs \
                     `{statement}`; raise the oldest version opened so to {}",
                    i + 1,
                    i + 1
                ),
            }
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::{index_migrations_after, refuse_unusable_schema};
    use crate::StoreError;

    /// A version inside the usable range opens; any other is a schema error naming the
    /// version found and the advice that fits it, a negative version as no Warrant schema.
    #[test]
    fn an_unusable_schema_is_refused_with_the_advice_that_fits() {
        let says = |version: i64| match refuse_unusable_schema(version, 5..=7, "empty", "older") {
            Ok(()) => None,
            Err(StoreError::Schema(text)) => Some(text),
            Err(other) => panic!("not a schema error: {other}"),
        };
        for usable in 5..=7 {
            assert_eq!(says(usable), None);
        }
        for (version, advice) in [(-1, "empty"), (0, "empty"), (4, "older"), (8, "a newer release wrote it")] {
            let text = says(version).expect("refused");
            assert!(text.contains(&format!("schema version {version}, this build opens versions 5 to 7")), "{text}");
            assert!(text.contains(advice), "{text}");
        }
    }

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
        let concurrent = format!("{base}\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_u ON t (a);");
        assert_eq!(accepts(&concurrent, "DROP INDEX t_a;"), Some(vec![]));
        assert_eq!(accepts(&concurrent, "DROP INDEX t_u;"), None, "t_u is unique however it was made");
        let odd_names =
            format!("{base}\nCREATE UNIQUE INDEX concurrently ON t (a);\nCREATE UNIQUE INDEX main.\"T_Q\" ON t (b);");
        for dropped in
            ["DROP INDEX concurrently;", "DROP INDEX t_q;", "DROP INDEX IF EXISTS public.\"t_q\";", "DROP INDEX `T_Q`;"]
        {
            assert_eq!(accepts(&odd_names, dropped), None, "{dropped}: a unique index");
        }
        assert_eq!(accepts(base, "DROP INDEX t_a,t_b;"), None, "a list of names");
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
