//! Printing: tables for people, JSON for scripts.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

/// A field of a JSON object as display text.
pub fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::Null) | None => "-".into(),
        Some(Value::Object(map)) if map.is_empty() => "-".into(),
        Some(Value::Object(map)) => {
            map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn timestamp(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Whether a field holds Unix seconds to show as a timestamp.
fn is_time(name: &str) -> bool {
    name == "at" || name.ends_with("_at")
}

/// A table of `rows` with the given `(header, field)` columns; `*_at` fields are shown as timestamps.
pub fn table(rows: &[Value], columns: &[(&str, &str)]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(columns.iter().map(|(h, _)| *h));
    for row in rows {
        table.add_row(columns.iter().map(|(_, f)| match row.get(*f).and_then(Value::as_i64) {
            Some(t) if is_time(f) => timestamp(t),
            _ => field(row, f),
        }));
    }
    table.to_string()
}

/// Prints `value` as JSON, or as a table/record via `human`.
pub fn print(json: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", human(value));
    }
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
    let mut lines = vec![
        format!("warrant   {}", field(claims, "jti")),
        format!("chain     {root}{}", chain.join(" -> ")),
        format!("scope     {}", field(claims, "scope")),
        format!("task      {} \"{}\"", field(&task, "id"), field(&task, "purpose")),
        format!("expires   {} (in {} s)", timestamp(exp), exp - now),
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
