//! Printing: tables for people, JSON for scripts, and the one way to write to stdout.
//!
//! This is the CLI's one formatting module: how values look (timestamps, durations,
//! numbers, lists), tables ([`table`] for lists of API objects, [`grid`] for figures),
//! JSON text ([`json`]), `key: value` records and indented blocks. The command modules
//! choose what to show and call these; none of them draws a table or writes JSON text
//! for people itself.
//!
//! Everything the CLI prints goes through [`emit`] (or the [`outln!`](crate::outln)
//! macro). When the reader of a pipe goes away (`warrant openapi | head`) the write fails
//! with `EPIPE`; that is not an error of the command: further output is dropped, the
//! command finishes and exits with its own status, and streaming commands stop (see
//! [`stdout_closed`]). Messages for people go to stderr through [`errln!`](crate::errln)
//! (or [`emit_err`]), which never fails either.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use comfy_table::presets::{UTF8_BORDERS_ONLY, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table};
use serde_json::Value;

/// Set once a write to stdout found the reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Table width when stdout is not a terminal.
pub const PIPE_WIDTH: u16 = 100;

/// The longest table cell (other than ids), in characters; longer ones are cut with `…`.
const CELL_MAX: usize = 48;

/// Prints a line to stdout: `outln!("{x}")`, like `println!` but quiet on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::emit("")
    };
    ($($arg:tt)*) => {
        $crate::output::emit(&format!($($arg)*))
    };
}

/// Prints a line to stderr: `errln!("{x}")`, like `eprintln!` but never a panic when
/// stderr is a closed pipe (`warrant … 2>&1 | head`).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::emit_err(&format!("{}\n", format!($($arg)*)))
    };
}

/// Writes `text` to stderr as it is (no newline added) and flushes. A failure is
/// dropped: there is nowhere left to report it.
pub fn emit_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

/// Writes `text` and a newline to stdout. A closed pipe marks stdout closed and drops
/// this and every later write; any other failure is reported once on stderr.
pub fn emit(text: &str) {
    if stdout_closed() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let written =
        stdout.write_all(text.as_bytes()).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush());
    if let Err(e) = written {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            errln!("error: cannot write to standard output: {e}");
        }
    }
}

/// Whether stdout's reader has gone away (or stdout failed): streaming commands stop.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Whether `error` (anywhere in its source chain) is a write to a closed pipe.
pub fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A writer on stdout for bulk output (exports): a closed pipe is reported as
/// `BrokenPipe` so the caller stops, and marks stdout closed.
#[derive(Debug)]
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = std::io::stdout().lock().write(buf);
        if result.is_err() {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = std::io::stdout().lock().flush();
        if result.is_err() {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// A field of a JSON object as display text.
pub fn field(value: &Value, name: &str) -> String {
    value.get(name).map(display).unwrap_or_else(|| "-".into())
}

/// A JSON value as display text: strings bare, lists space-separated, objects as
/// `key=value`, numbers rounded to at most three decimals, null as `-`.
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(" "),
        Value::Null => "-".into(),
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", display(v))).collect::<Vec<_>>().join(","),
        Value::Number(n) if n.is_f64() => n.as_f64().map(decimal).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// A float with at most three decimals, trailing zeros dropped.
fn decimal(x: f64) -> String {
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_owned()
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp, e.g. `2026-12-02T05:51:43Z`: the one time
/// format of the CLI's output.
pub fn timestamp(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// A time field of `value` as a timestamp, or `-` when absent.
pub fn time_field(value: &Value, name: &str) -> String {
    value.get(name).and_then(Value::as_i64).map(timestamp).unwrap_or_else(|| "-".into())
}

/// Whether a field holds Unix seconds to show as a timestamp.
pub fn is_time(name: &str) -> bool {
    name == "at"
        || name.ends_with("_at")
        || name == "due_since"
        || matches!(name, "first_seen" | "last_seen" | "last_activity" | "last_attested" | "exp" | "iat" | "nbf")
}

/// Whether a column holds ids of other things than the row (owner, agent, task…): cut
/// to [`SHORT_ID`] characters when the table would not fit otherwise.
fn is_id_column(name: &str) -> bool {
    matches!(name, "agent" | "owner" | "human" | "task" | "warrant" | "jti" | "parent" | "subject" | "approver")
}

/// How many characters of a secondary id are kept when a table must be narrowed
/// (`hum_afa0abc…`: the prefix and enough to tell ids apart).
const SHORT_ID: usize = 12;

/// How many items of a list a table cell shows, one per line, before `(+N more)`.
const CELL_ITEMS: usize = 3;

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The width tables are fitted to: the terminal's, or [`PIPE_WIDTH`] when stdout is not
/// a terminal.
fn table_width() -> Option<u16> {
    if std::io::stdout().is_terminal() {
        None
    } else {
        Some(PIPE_WIDTH)
    }
}

/// A table cell: a timestamp for a time field, a list one item per line (at most
/// [`CELL_ITEMS`]), other text cut at [`CELL_MAX`] characters.
fn cell(row: &Value, name: &str) -> String {
    match row.get(name) {
        Some(Value::Number(n)) if is_time(name) => n.as_i64().map(timestamp).unwrap_or_else(|| n.to_string()),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut lines: Vec<String> =
                items.iter().take(CELL_ITEMS).map(|i| truncate(display(i), CELL_MAX)).collect();
            if items.len() > CELL_ITEMS {
                lines.push(format!("(+{} more)", items.len() - CELL_ITEMS));
            }
            lines.join("\n")
        }
        _ if name == "id" => field(row, name),
        _ => truncate(field(row, name), CELL_MAX),
    }
}

/// The width of a column: its widest line, header included, plus padding.
fn column_width(header: &str, cells: &[Vec<String>], index: usize) -> usize {
    let widest = cells
        .iter()
        .filter_map(|row| row.get(index))
        .flat_map(|c| c.lines().map(|l| l.chars().count()))
        .max()
        .unwrap_or(0);
    widest.max(header.chars().count()) + 2
}

/// A table of `rows` with the given `(header, field)` columns, fitted to the terminal
/// (100 columns when not a terminal). Time fields are shown as timestamps, lists one item
/// per line. When the table is too wide, columns with no value in any row are left out
/// and ids of other things (owner, agent…) are shortened; the row's own `id` is always
/// whole, and short columns are never wrapped.
pub fn table(rows: &[Value], columns: &[(&str, &str)]) -> String {
    table_with_width(rows, columns, table_width())
}

/// [`table`] for a given width (`None`: the terminal's).
pub fn table_with_width(rows: &[Value], columns: &[(&str, &str)], width: Option<u16>) -> String {
    let mut columns: Vec<(&str, &str)> = columns.to_vec();
    let mut cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|(_, f)| cell(r, f)).collect()).collect();
    let total = |columns: &[(&str, &str)], cells: &[Vec<String>]| {
        columns.iter().enumerate().map(|(i, (h, _))| column_width(h, cells, i)).sum::<usize>() + 2
    };
    let limit =
        width.map(usize::from).or_else(|| comfy_table::Table::new().width().map(usize::from)).unwrap_or(usize::MAX);
    if total(&columns, &cells) > limit && !cells.is_empty() {
        let empty: Vec<bool> =
            (0..columns.len()).map(|i| cells.iter().all(|r| r.get(i).is_none_or(|c| c == "-"))).collect();
        let mut index = 0;
        columns.retain(|_| {
            index += 1;
            !empty.get(index - 1).copied().unwrap_or(false)
        });
        for row in &mut cells {
            let mut index = 0;
            row.retain(|_| {
                index += 1;
                !empty.get(index - 1).copied().unwrap_or(false)
            });
        }
    }
    if total(&columns, &cells) > limit {
        for (i, (_, f)) in columns.iter().enumerate() {
            if is_id_column(f) {
                for row in &mut cells {
                    if let Some(c) = row.get_mut(i) {
                        *c = truncate(std::mem::take(c), SHORT_ID);
                    }
                }
            }
        }
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(width) = width {
        table.set_width(width);
    }
    table.set_header(columns.iter().map(|(h, _)| *h));
    for row in &cells {
        table.add_row(row);
    }
    // Columns kept whole (never wrapped): the row's id and short columns, as long as what
    // is left leaves the others at least 10 characters.
    let widths: Vec<usize> = columns.iter().enumerate().map(|(i, (h, _))| column_width(h, &cells, i)).collect();
    let whole_up_to = [20, 12]
        .into_iter()
        .find(|max| {
            let (whole, others) = columns.iter().zip(&widths).fold((2, 0), |(whole, others), ((_, f), w)| {
                if *f == "id" || *w <= *max {
                    (whole + w, others)
                } else {
                    (whole, others + 12)
                }
            });
            whole + others <= limit
        })
        .unwrap_or(0);
    for (index, ((_, f), w)) in columns.iter().zip(&widths).enumerate() {
        if let Some(column) = table.column_mut(index).filter(|_| *f == "id" || *w <= whole_up_to) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    table.to_string()
}

/// Prints `value` as JSON, or as a table/record via `human`.
pub fn print(as_json: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if as_json {
        emit(&json(value));
    } else {
        emit(&human(value));
    }
}

/// `value` as pretty-printed JSON text (empty if it cannot be serialised, which a
/// `serde_json::Value` always can).
pub fn json(value: &(impl serde::Serialize + ?Sized)) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Every line of `text` indented by `by` spaces.
pub fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// Seconds as a short duration, e.g. `3d 4h`, `12m`, `45s`: the two most significant
/// adjacent units.
pub fn duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let mut left = secs.unsigned_abs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        } else if !parts.is_empty() {
            // Only the two most significant adjacent units.
            break;
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    format!("{sign}{}", parts.join(" "))
}

/// A cell of a [`grid`]: its text, kept to the left or to the right of its column.
#[derive(Debug, Clone)]
pub enum Cell {
    /// Left-aligned (text).
    Left(String),
    /// Right-aligned (figures).
    Right(String),
}

/// How a [`grid`] is drawn.
#[derive(Debug, Clone, Copy)]
pub enum Frame {
    /// Borders only, fitted to the terminal: summaries among the CLI's other tables.
    Borders,
    /// Every column and the header ruled, never wrapped: benchmark figures.
    Ruled,
}

/// A table of figures: a header and rows of [`Cell`]s, each aligned as it says (header
/// cells too). Unlike [`table`], the cells are shown as given.
pub fn grid(frame: Frame, header: Vec<Cell>, rows: Vec<Vec<Cell>>) -> String {
    let cell = |c: Cell| match c {
        Cell::Left(text) => comfy_table::Cell::new(text),
        Cell::Right(text) => comfy_table::Cell::new(text).set_alignment(CellAlignment::Right),
    };
    let mut table = Table::new();
    match frame {
        Frame::Borders => table.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic),
        Frame::Ruled => table.load_preset(UTF8_FULL_CONDENSED),
    };
    table.set_header(header.into_iter().map(cell));
    for row in rows {
        table.add_row(row.into_iter().map(cell));
    }
    table.to_string()
}

/// One object as `key: value` lines, in the given order.
pub fn record(value: &Value, fields: &[&str]) -> String {
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|f| {
            let text = match value.get(*f).and_then(Value::as_i64) {
                Some(t) if is_time(f) => timestamp(t),
                _ => field(value, f),
            };
            format!("{f:width$}  {text}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A warrant's claims as a short readable summary: chain, scope, task and expiry.
pub fn warrant_summary(claims: &Value, now: i64) -> String {
    let chain = chain_of(claims);
    let root = match field(claims, "mode").as_str() {
        "delegated" => format!("human {} -> ", field(claims, "sub")),
        _ => format!("(autonomous, owner {}) ", field(claims, "owner")),
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let task = claims.get("task").cloned().unwrap_or_default();
    let left = if exp > now { format!("in {} s", exp - now) } else { format!("{} s ago", now - exp) };
    let mut lines = vec![
        format!("warrant   {}", field(claims, "jti")),
        format!("chain     {root}{}", chain.join(" -> ")),
        format!("scope     {}", field(claims, "scope")),
        format!("task      {} \"{}\"", field(&task, "id"), field(&task, "purpose")),
        format!("expires   {} ({left})", timestamp(exp)),
    ];
    if let Some(parent) = claims.get("parent").and_then(Value::as_str) {
        lines.push(format!("parent    {parent}"));
    }
    lines.join("\n")
}

/// The agents of the `act` chain, root first.
pub fn chain_of(claims: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = claims.get("act");
    while let Some(actor) = cur {
        out.push(field(actor, "sub"));
        cur = actor.get("act");
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_796_190_703), "2026-12-02T05:51:43Z");
        assert_eq!(time_field(&json!({"at": 1_700_000_000}), "at"), "2023-11-14T22:13:20Z");
        assert_eq!(time_field(&json!({}), "at"), "-");
    }

    #[test]
    fn durations_read_as_two_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(90 * 60), "1h 30m");
        assert_eq!(duration(30 * 86_400), "30d");
        assert_eq!(duration(86_400 + 61), "1d");
        assert_eq!(duration(-3600), "-1h");
    }

    #[test]
    fn indent_prefixes_every_line_and_json_is_pretty() {
        assert_eq!(indent("a\nb", 3), "   a\n   b");
        assert_eq!(json(&json!({"a": 1})), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn grids_align_cells_as_they_say() {
        let text = grid(
            Frame::Ruled,
            vec![Cell::Left("name".into()), Cell::Left("count".into())],
            vec![vec![Cell::Left("a".into()), Cell::Right("7".into())]],
        );
        assert!(text.contains("│ name ┆ count │"), "{text}");
        assert!(text.contains("│ a    ┆     7 │"), "{text}");
        let text = grid(
            Frame::Borders,
            vec![Cell::Left("K".into()), Cell::Right("TOTAL".into())],
            vec![vec![Cell::Left("abc".into()), Cell::Right("5".into())]],
        );
        assert!(text.contains("│ K     TOTAL │") && text.contains("│ abc       5 │"), "{text}");
    }

    #[test]
    fn values_display_readably() {
        assert_eq!(display(&json!({"crm.read": 3, "tickets.close": 1})), "crm.read=3,tickets.close=1");
        assert_eq!(display(&json!(0.966_666_7)), "0.967");
        assert_eq!(display(&json!(1.0)), "1");
        assert_eq!(display(&json!([])), "-");
        assert_eq!(display(&json!(["a", 2])), "a 2");
        assert_eq!(display(&json!(true)), "true");
    }

    #[test]
    fn tables_fit_the_width_and_keep_ids_whole() {
        let id = "agt_0123456789abcdefghijklmnop";
        let scope: Vec<String> = (0..30).map(|i| format!("crm.read:customers/{i}")).collect();
        let rows =
            vec![json!({"id": id, "name": "support-assistant", "max_scope": scope, "created_at": 1_700_000_000})];
        let text = table_with_width(
            &rows,
            &[("ID", "id"), ("NAME", "name"), ("MAX SCOPE", "max_scope"), ("CREATED", "created_at")],
            Some(PIPE_WIDTH),
        );
        for line in text.lines() {
            assert!(line.chars().count() <= usize::from(PIPE_WIDTH), "too wide: {line}\n{text}");
        }
        assert!(text.contains(id), "{text}");
        assert!(text.contains("(+27 more)"), "{text}");
        assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
    }

    #[test]
    fn a_crowded_table_drops_empty_columns_and_shortens_other_ids() {
        let row = |i: u32| {
            json!({"id": format!("agt_{i}040e55cf17cf3d0c2373bd3"), "name": "support-assistant",
                   "owner": "hum_afa0abc3cbfb5b9283a9d60a", "mode": "delegated", "status": "active",
                   "max_scope": ["crm.*", "tickets.*"], "expires_at": null})
        };
        let columns = [
            ("ID", "id"),
            ("NAME", "name"),
            ("OWNER", "owner"),
            ("MODE", "mode"),
            ("STATUS", "status"),
            ("MAX SCOPE", "max_scope"),
            ("EXPIRES", "expires_at"),
        ];
        let text = table_with_width(&[row(1), row(2)], &columns, Some(PIPE_WIDTH));
        assert!(!text.contains("EXPIRES"), "{text}");
        assert!(text.contains("hum_afa0abc…") && text.contains("agt_1040e55cf17cf3d0c2373bd3"), "{text}");
        assert!(text.contains(" delegated ") && text.contains(" active ") && text.contains(" tickets.* "), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= usize::from(PIPE_WIDTH)), "{text}");
        // Wide enough: everything as it is.
        let wide = table_with_width(&[row(1)], &columns, Some(200));
        assert!(wide.contains("EXPIRES") && wide.contains("hum_afa0abc3cbfb5b9283a9d60a"), "{wide}");
    }
}
