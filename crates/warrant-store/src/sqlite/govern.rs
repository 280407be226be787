//! `GovernStore` for SQLite.

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, OptionalExtension, Row};
use warrant_core::govern::{AgentUsage, Finding, FindingKind, FindingStatus};
use warrant_core::{AgentId, UnixTime, WarrantId};

use super::SqliteStore;
use crate::columns::{finding_cols, finding_matches};
use crate::govern::{Attestation, FindingFilter, GovernStore, LiveWarrant, MAX_FINDING_LIST_LIMIT};
use crate::StoreError;

/// Reads column `idx` as text and parses it with `parse`, as a conversion failure when
/// it does not parse.
fn text_col<T, E>(row: &Row<'_>, idx: usize, parse: impl FnOnce(String) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    parse(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The columns a finding is read back from.
const FINDING_COLS: &str = "id, status, kind, body";

/// A finding from its `(id, status, kind, body)` columns; the columns must agree with the body.
fn finding_row(row: &Row<'_>) -> rusqlite::Result<Finding> {
    let (id, status, kind): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
    let finding: Finding = text_col(row, 3, |body| serde_json::from_str(&body))?;
    if !finding_matches(&finding, &id, &status, &kind) {
        return Err(rusqlite::Error::FromSqlConversionFailure(
            3,
            Type::Text,
            format!("finding `{id}`: the stored body does not match its columns").into(),
        ));
    }
    Ok(finding)
}

fn attestation_row(row: &Row<'_>) -> rusqlite::Result<Attestation> {
    Ok(Attestation {
        id: row.get(0)?,
        agent: text_col(row, 1, AgentId::try_from)?,
        by: row.get(2)?,
        at: UnixTime(row.get(3)?),
        note: row.get(4)?,
        evidence: text_col(row, 5, |text| serde_json::from_str(&text))?,
    })
}

/// A live warrant's columns, as [`live_warrant_row`] reads them (`w`: the warrants table).
const LIVE_COLS: &str = "w.jti, w.parent, w.agent, json_array_length(w.chain), w.issued_at, w.expires_at";

/// What makes warrant `w` live at `?1`: unexpired, not revoked, its task not ended.
const LIVE_WHERE: &str = "w.expires_at > ?1 \
     AND NOT EXISTS (SELECT 1 FROM revoked_warrants r WHERE r.jti = w.jti) \
     AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = w.task AND t.completed_at IS NOT NULL)";

/// Every warrant live at `?1`, oldest first: through `warrants_expires`, so the sweep
/// reads the unexpired warrants only, not every warrant ever issued.
fn live_sql() -> String {
    format!("SELECT {LIVE_COLS} FROM warrants w WHERE {LIVE_WHERE} ORDER BY w.issued_at, w.rowid")
}

fn live_warrant_row(row: &Row<'_>) -> rusqlite::Result<LiveWarrant> {
    let parent: Option<String> = row.get(1)?;
    let parent = parent
        .map(WarrantId::try_from)
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    let depth: i64 = row.get(3)?;
    let depth =
        usize::try_from(depth).map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Integer, Box::new(e)))?;
    Ok(LiveWarrant {
        jti: text_col(row, 0, WarrantId::try_from)?,
        parent,
        agent: text_col(row, 2, AgentId::try_from)?,
        depth,
        issued_at: UnixTime(row.get(4)?),
        expires_at: UnixTime(row.get(5)?),
    })
}

/// A `LIMIT` parameter.
fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The statement that lists the findings `filter` asks for, most recently seen first,
/// and its parameters. The read goes through the most selective column named: a subject,
/// then a status, then a kind ([`super::keyed_filters`]; SQLite, without statistics,
/// preferred the status or kind index, which also gives the order, and read every finding
/// of that status or kind for one subject's).
fn findings_sql(filter: &FindingFilter) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let keyed = [
        ("subject", filter.subject.as_deref()),
        ("status", filter.status.map(FindingStatus::as_str)),
        ("kind", filter.kind.map(FindingKind::as_str)),
    ];
    super::keyed_filters(&keyed, &mut clauses, &mut values);
    let mut sql = format!("SELECT {FINDING_COLS} FROM findings");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY last_seen DESC, id LIMIT ?");
    values.push(Value::Integer(limit_value(filter.limit.min(MAX_FINDING_LIST_LIMIT))));
    (sql, values)
}

#[async_trait]
impl GovernStore for SqliteStore {
    async fn save_findings(&self, findings: &[Finding]) -> Result<(), StoreError> {
        if findings.is_empty() {
            return Ok(());
        }
        let rows = findings.iter().map(finding_cols).collect::<Result<Vec<_>, _>>()?;
        self.write(move |tx| {
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO findings (id, kind, subject, severity, status, first_seen, last_seen, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, \
                     severity = excluded.severity, status = excluded.status, first_seen = excluded.first_seen, \
                     last_seen = excluded.last_seen, body = excluded.body",
                )?;
                for (id, kind, subject, severity, status, first_seen, last_seen, body) in &rows {
                    stmt.execute(params![id, kind, subject, severity, status, first_seen, last_seen, body])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FINDING_COLS} FROM findings WHERE status IN ('open', 'accepted') ORDER BY last_seen DESC, id"
            ))?;
            let rows = stmt.query_map([], finding_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let (sql, values) = findings_sql(filter);
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), finding_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn get_finding(&self, id: &str) -> Result<Option<Finding>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {FINDING_COLS} FROM findings WHERE id = ?1"), [id], finding_row)
                .optional()?)
        })
        .await
    }

    async fn save_usage(&self, usage: &[(AgentId, AgentUsage)]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let rows = usage
            .iter()
            .map(|(agent, usage)| Ok((agent.as_str().to_owned(), serde_json::to_string(usage).map_err(corrupt)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |tx| {
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO agent_usage (agent_id, usage) VALUES (?1, ?2) \
                     ON CONFLICT(agent_id) DO UPDATE SET usage = excluded.usage",
                )?;
                for (agent, usage) in &rows {
                    stmt.execute(params![agent, usage])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn usages(&self) -> Result<Vec<(AgentId, AgentUsage)>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT agent_id, usage FROM agent_usage ORDER BY agent_id")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((text_col(r, 0, AgentId::try_from)?, text_col(r, 1, |text| serde_json::from_str(&text))?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn record_attestation(&self, attestation: &Attestation) -> Result<(), StoreError> {
        let a = attestation.clone();
        let evidence = serde_json::to_string(&a.evidence).map_err(corrupt)?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO attestations (id, agent_id, by_whom, at, note, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.id, a.agent.as_str(), a.by, a.at.0, a.note, evidence],
            )?;
            Ok(())
        })
        .await
    }

    async fn last_attestations(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError> {
        self.run(|c| {
            let mut stmt =
                c.prepare_cached("SELECT agent_id, MAX(at) FROM attestations GROUP BY agent_id ORDER BY agent_id")?;
            let rows = stmt
                .query_map([], |r| Ok((text_col(r, 0, AgentId::try_from)?, UnixTime(r.get(1)?))))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn attestations(&self, agent: &AgentId, limit: usize) -> Result<Vec<Attestation>, StoreError> {
        let agent = agent.clone();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, agent_id, by_whom, at, note, evidence FROM attestations \
                 WHERE agent_id = ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![agent.as_str(), limit_value(limit)], attestation_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn live_warrants(&self, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError> {
        self.run(move |c| {
            // One pass over the unexpired warrants; the revocation and task checks are
            // primary-key lookups.
            let mut stmt = c.prepare_cached(&live_sql())?;
            let rows = stmt.query_map([now.0], live_warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn live_warrants_through(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError> {
        let agent = agent.clone();
        self.run(move |c| {
            // The agent index first (every warrant whose chain names the agent), then the
            // same checks as `live_warrants`.
            let sql = format!(
                "SELECT {LIVE_COLS} FROM warrant_agents a CROSS JOIN warrants w ON w.jti = a.jti \
                 WHERE a.agent = ?2 AND {LIVE_WHERE} ORDER BY w.issued_at, w.rowid"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows =
                stmt.query_map(params![now.0, agent.as_str()], live_warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params_from_iter;

    use super::super::{migrated_in_memory as migrated, query_plan};
    use super::{findings_sql, live_sql, FindingKind, FindingStatus};
    use crate::govern::FindingFilter;

    /// A list of findings goes through the index of its most selective column and never
    /// sorts the whole read: a subject's findings through `findings_subject` (status and
    /// kind went through their own indexes without statistics, reading every finding of
    /// that status or kind), the unfiltered list through `findings_recent` (it read and
    /// sorted every finding).
    #[test]
    fn a_finding_list_reads_through_its_most_selective_index() {
        let c = migrated();
        let subject = Some("agt_one".to_owned());
        let (status, kind) = (Some(FindingStatus::Resolved), Some(FindingKind::IdleAgent));
        let cases = [
            (FindingFilter { subject: subject.clone(), status, ..FindingFilter::default() }, "findings_subject"),
            (FindingFilter { subject: subject.clone(), kind, ..FindingFilter::default() }, "findings_subject"),
            (FindingFilter { subject, status, kind, ..FindingFilter::default() }, "findings_subject"),
            (FindingFilter { status, ..FindingFilter::default() }, "findings_status"),
            (FindingFilter::default(), "findings_recent"),
        ];
        for (filter, index) in cases {
            let (sql, values) = findings_sql(&filter);
            let plan = query_plan(&c, &sql, params_from_iter(values));
            assert!(plan.iter().any(|step| step.contains(&format!("INDEX {index}"))), "{filter:?} reads {plan:?}");
            if filter.subject.is_none() {
                // Sorting the ties of `last_seen` by id ("LAST TERM") is fine; sorting the
                // whole read is not.
                assert!(plan.iter().all(|step| step != "USE TEMP B-TREE FOR ORDER BY"), "{filter:?} sorts: {plan:?}");
            }
        }
    }

    /// The sweep's read of the live warrants goes through `warrants_expires`: it read every
    /// warrant ever issued (expired ones are kept), 13 ms at 20 live of 46 000.
    #[test]
    fn the_live_warrants_are_found_by_their_expiry() {
        let plan = query_plan(&migrated(), &live_sql(), [0]);
        assert!(plan.iter().any(|step| step.contains("USING INDEX warrants_expires")), "{plan:?}");
    }
}
