//! `GovernStore` for PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use warrant_core::govern::{AgentUsage, Finding};
use warrant_core::{AgentId, UnixTime, WarrantId};

use super::{col, get, lock_writes, opt_col, time, PgStore};
use crate::columns::{finding_cols, finding_matches};
use crate::govern::{Attestation, FindingFilter, GovernStore, LiveWarrant, MAX_FINDING_LIST_LIMIT};
use crate::StoreError;

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The columns a finding is read back from.
const FINDING_COLS: &str = "id, status, kind, body";

/// A finding from its `(id, status, kind, body)` columns; the columns must agree with the body.
fn finding_row(row: &Row) -> Result<Finding, StoreError> {
    let (id, status, kind): (&str, &str, &str) = (get(row, 0)?, get(row, 1)?, get(row, 2)?);
    let finding: Finding = col(row, 3, |body| serde_json::from_str(&body))?;
    if !finding_matches(&finding, id, status, kind) {
        return Err(StoreError::Corrupt(format!("finding `{id}`: the stored body does not match its columns")));
    }
    Ok(finding)
}

fn attestation_row(row: &Row) -> Result<Attestation, StoreError> {
    Ok(Attestation {
        id: get(row, 0)?,
        agent: col(row, 1, AgentId::try_from)?,
        by: get(row, 2)?,
        at: time(row, 3)?,
        note: get(row, 4)?,
        evidence: col(row, 5, |text| serde_json::from_str(&text))?,
    })
}

/// A live warrant's columns, as [`live_warrant_row`] reads them (`w`: the warrants table;
/// `chain` is JSON text, as on SQLite: its length is the depth).
const LIVE_COLS: &str = "w.jti, w.parent, w.agent, json_array_length(w.chain::json)::BIGINT, w.issued_at, w.expires_at";

/// What makes warrant `w` live at `$1`: unexpired, not revoked, its task not ended.
const LIVE_WHERE: &str = "w.expires_at > $1 \
     AND NOT EXISTS (SELECT 1 FROM revoked_warrants r WHERE r.jti = w.jti) \
     AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = w.task AND t.completed_at IS NOT NULL)";

fn live_warrant_row(row: &Row) -> Result<LiveWarrant, StoreError> {
    let depth: i64 = get(row, 3)?;
    let depth = usize::try_from(depth)
        .map_err(|_| StoreError::Corrupt(format!("column 3: negative chain length `{depth}`")))?;
    Ok(LiveWarrant {
        jti: col(row, 0, WarrantId::try_from)?,
        parent: opt_col(row, 1, WarrantId::try_from)?,
        agent: col(row, 2, AgentId::try_from)?,
        depth,
        issued_at: time(row, 4)?,
        expires_at: time(row, 5)?,
    })
}

/// A `LIMIT` parameter.
fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl GovernStore for PgStore {
    async fn save_findings(&self, findings: &[Finding]) -> Result<(), StoreError> {
        if findings.is_empty() {
            return Ok(());
        }
        let rows = findings.iter().map(finding_cols).collect::<Result<Vec<_>, _>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let stmt = tx
            .prepare(
                "INSERT INTO findings (id, kind, subject, severity, status, first_seen, last_seen, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, subject = EXCLUDED.subject, \
                 severity = EXCLUDED.severity, status = EXCLUDED.status, first_seen = EXCLUDED.first_seen, \
                 last_seen = EXCLUDED.last_seen, body = EXCLUDED.body",
            )
            .await?;
        for (id, kind, subject, severity, status, first_seen, last_seen, body) in &rows {
            tx.execute(&stmt, &[id, kind, subject, severity, status, first_seen, last_seen, body]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError> {
        let client = self.client().await?;
        // Ids in byte order, as SQLite sorts text, whatever the database's collation.
        let rows = client
            .query(
                &format!(
                    "SELECT {FINDING_COLS} FROM findings WHERE status IN ('open', 'accepted') \
                     ORDER BY last_seen DESC, id COLLATE \"C\""
                ),
                &[],
            )
            .await?;
        rows.iter().map(finding_row).collect()
    }

    async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(status) = filter.status {
            values.push(Box::new(status.as_str().to_owned()));
            clauses.push(format!("status = ${}", values.len()));
        }
        if let Some(kind) = filter.kind {
            values.push(Box::new(kind.as_str().to_owned()));
            clauses.push(format!("kind = ${}", values.len()));
        }
        if let Some(subject) = &filter.subject {
            values.push(Box::new(subject.clone()));
            clauses.push(format!("subject = ${}", values.len()));
        }
        let mut sql = format!("SELECT {FINDING_COLS} FROM findings");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        values.push(Box::new(limit_value(filter.limit.min(MAX_FINDING_LIST_LIMIT))));
        sql.push_str(&format!(" ORDER BY last_seen DESC, id COLLATE \"C\" LIMIT ${}", values.len()));
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let rows = client.query(&sql, &refs).await?;
        rows.iter().map(finding_row).collect()
    }

    async fn get_finding(&self, id: &str) -> Result<Option<Finding>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {FINDING_COLS} FROM findings WHERE id = $1"), &[&id]).await?;
        row.as_ref().map(finding_row).transpose()
    }

    async fn save_usage(&self, usage: &[(AgentId, AgentUsage)]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        // Servers sharing the database each record what they saw of an agent: what is
        // stored is merged with, never replaced by, one server's view.
        let read = tx.prepare("SELECT usage FROM agent_usage WHERE agent_id = $1").await?;
        let write = tx
            .prepare(
                "INSERT INTO agent_usage (agent_id, usage) VALUES ($1, $2) \
                 ON CONFLICT (agent_id) DO UPDATE SET usage = EXCLUDED.usage",
            )
            .await?;
        for (agent, seen) in usage {
            let mut merged = seen.clone();
            if let Some(row) = tx.query_opt(&read, &[&agent.as_str()]).await? {
                let stored: AgentUsage = col(&row, 0, |text| serde_json::from_str(&text))?;
                merged.merge(&stored);
            }
            let text = serde_json::to_string(&merged).map_err(corrupt)?;
            tx.execute(&write, &[&agent.as_str(), &text]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usages(&self) -> Result<Vec<(AgentId, AgentUsage)>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT agent_id, usage FROM agent_usage ORDER BY agent_id COLLATE \"C\"", &[]).await?;
        rows.iter()
            .map(|r| Ok((col(r, 0, AgentId::try_from)?, col(r, 1, |text| serde_json::from_str(&text))?)))
            .collect()
    }

    async fn record_attestation(&self, attestation: &Attestation) -> Result<(), StoreError> {
        let a = attestation;
        let evidence = serde_json::to_string(&a.evidence).map_err(corrupt)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            "INSERT INTO attestations (id, agent_id, by_whom, at, note, evidence) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&a.id, &a.agent.as_str(), &a.by, &a.at.0, &a.note, &evidence],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_attestations(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT agent_id, MAX(at) FROM attestations GROUP BY agent_id ORDER BY agent_id COLLATE \"C\"", &[])
            .await?;
        rows.iter().map(|r| Ok((col(r, 0, AgentId::try_from)?, time(r, 1)?))).collect()
    }

    async fn attestations(&self, agent: &AgentId, limit: usize) -> Result<Vec<Attestation>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, agent_id, by_whom, at, note, evidence FROM attestations \
                 WHERE agent_id = $1 ORDER BY at DESC, rowid DESC LIMIT $2",
                &[&agent.as_str(), &limit_value(limit)],
            )
            .await?;
        rows.iter().map(attestation_row).collect()
    }

    async fn live_warrants(&self, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError> {
        let client = self.client().await?;
        // One pass over the unexpired warrants; the revocation and task checks are
        // primary-key lookups.
        let sql = format!("SELECT {LIVE_COLS} FROM warrants w WHERE {LIVE_WHERE} ORDER BY w.issued_at, w.rowid");
        let rows = client.query(&sql, &[&now.0]).await?;
        rows.iter().map(live_warrant_row).collect()
    }

    async fn live_warrants_through(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError> {
        let client = self.client().await?;
        // The agent index first (every warrant whose chain names the agent), then the
        // same checks as `live_warrants`.
        let sql = format!(
            "SELECT {LIVE_COLS} FROM warrant_agents a JOIN warrants w ON w.jti = a.jti \
             WHERE a.agent = $2 AND {LIVE_WHERE} ORDER BY w.issued_at, w.rowid"
        );
        let rows = client.query(&sql, &[&now.0, &agent.as_str()]).await?;
        rows.iter().map(live_warrant_row).collect()
    }
}
