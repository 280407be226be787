//! `GuardStore` for SQLite.

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, OptionalExtension, Row};
use warrant_core::guard::approval::{Approval, ApprovalStatus};
use warrant_core::{AgentId, ApprovalId, HumanId, UnixTime, WarrantId};

use super::{budget_col, SqliteStore};
use crate::columns::approval_cols;
use crate::guard::{GuardStore, LiveBudget, MAX_APPROVAL_LIST_LIMIT};
use crate::StoreError;

fn text_id<T, E>(row: &Row<'_>, idx: usize, parse: impl FnOnce(String) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    parse(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn budget_row(row: &Row<'_>) -> rusqlite::Result<LiveBudget> {
    let parent: Option<String> = row.get(1)?;
    let parent = parent
        .map(WarrantId::try_from)
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    Ok((text_id(row, 0, WarrantId::try_from)?, parent, budget_col(row, 2)?, UnixTime(row.get(3)?)))
}

/// An approval from its `(id, status, body)` columns; the columns must agree with the body.
fn approval_row(row: &Row<'_>) -> rusqlite::Result<Approval> {
    let (id, status): (String, String) = (row.get(0)?, row.get(1)?);
    let approval: Approval = text_id(row, 2, |body| serde_json::from_str(&body))?;
    if approval.id.as_str() != id || approval.status.as_str() != status {
        return Err(rusqlite::Error::FromSqlConversionFailure(
            2,
            Type::Text,
            format!("approval `{id}`: the stored body does not match its columns").into(),
        ));
    }
    Ok(approval)
}

/// The statement that lists approvals (by status, agent and approver, each optional),
/// newest first, and its parameters. Each filter column leads an index of its own that
/// also gives the order (`approvals_agent`, `approvals_approver`, `approvals_status`), and
/// `approvals_recent` serves the unfiltered list. The read goes through the most selective
/// column named: an agent, then an approver, then a status ([`super::keyed_filters`]).
fn approvals_sql(
    status: Option<ApprovalStatus>,
    agent: Option<&AgentId>,
    approver: Option<&HumanId>,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let keyed = [
        ("agent_id", agent.map(AgentId::as_str)),
        ("approver", approver.map(HumanId::as_str)),
        ("status", status.map(ApprovalStatus::as_str)),
    ];
    super::keyed_filters(&keyed, &mut clauses, &mut values);
    let mut sql = "SELECT id, status, body FROM approvals".to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY created_at DESC, rowid DESC LIMIT ?");
    values.push(Value::Integer(i64::try_from(limit.min(MAX_APPROVAL_LIST_LIMIT)).unwrap_or(0)));
    (sql, values)
}

#[async_trait]
impl GuardStore for SqliteStore {
    async fn live_budgets(&self, now: UnixTime) -> Result<Vec<LiveBudget>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT jti, parent, budget, expires_at FROM warrants \
                 WHERE budget IS NOT NULL AND expires_at > ?1 ORDER BY issued_at, rowid",
            )?;
            let rows = stmt.query_map([now.0], budget_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows.into_iter().filter(|(_, _, budget, _)| !budget.is_empty()).collect())
        })
        .await
    }

    async fn live_spends(&self, now: UnixTime) -> Result<Vec<(WarrantId, String, i64)>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT jti, counter, spent FROM budget_spend WHERE expires_at > ?1 ORDER BY jti, counter",
            )?;
            let rows = stmt
                .query_map([now.0], |r| Ok((text_id(r, 0, WarrantId::try_from)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn purge_spends(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.write(move |c| {
            let n = c.execute("DELETE FROM budget_spend WHERE expires_at <= ?1", [now.0])?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn save_guard_states(&self, states: &[(AgentId, String, UnixTime)]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let states = states.to_vec();
        self.write(move |tx| {
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO agent_guard (agent_id, state, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(agent_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )?;
                for (agent, state, at) in &states {
                    stmt.execute(params![agent.as_str(), state, at.0])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn guard_states(&self) -> Result<Vec<(AgentId, String)>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT agent_id, state FROM agent_guard ORDER BY agent_id")?;
            let rows = stmt
                .query_map([], |r| Ok((text_id(r, 0, AgentId::try_from)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let (id, status, agent, approver, created_at, expires_at, body) = approval_cols(approval)?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO approvals (id, status, agent_id, approver, created_at, expires_at, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, status, agent, approver, created_at, expires_at, body],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            Ok(c.query_row("SELECT id, status, body FROM approvals WHERE id = ?1", [id.as_str()], approval_row)
                .optional()?)
        })
        .await
    }

    async fn update_approval(&self, approval: &Approval, expected: ApprovalStatus) -> Result<bool, StoreError> {
        let (id, status, agent, approver, created_at, expires_at, body) = approval_cols(approval)?;
        let expected = expected.as_str();
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE approvals SET status = ?2, agent_id = ?3, approver = ?4, created_at = ?5, expires_at = ?6, \
                 body = ?7 WHERE id = ?1 AND status = ?8",
                params![id, status, agent, approver, created_at, expires_at, body, expected],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        agent: Option<&AgentId>,
        approver: Option<&HumanId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        let (sql, values) = approvals_sql(status, agent, approver, limit);
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), approval_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params_from_iter;
    use warrant_core::guard::approval::ApprovalStatus;
    use warrant_core::{AgentId, HumanId};

    use super::super::{migrated_in_memory, query_plan};
    use super::approvals_sql;

    /// A list of approvals goes through the index of its most selective column, newest
    /// first without sorting the table: an approver's through `approvals_approver` and the
    /// unfiltered list through `approvals_recent` (both read and sorted every approval).
    #[test]
    fn an_approval_list_reads_through_its_most_selective_index() {
        let c = migrated_in_memory();
        let agent = AgentId::parse("agt_one").unwrap();
        let approver = HumanId::parse("hum_one").unwrap();
        let pending = Some(ApprovalStatus::Pending);
        let cases = [
            (None, None, Some(&approver), "approvals_approver"),
            (pending, None, Some(&approver), "approvals_approver"),
            (pending, Some(&agent), Some(&approver), "approvals_agent"),
            (pending, None, None, "approvals_status"),
            (None, None, None, "approvals_recent"),
        ];
        for (status, agent, approver, index) in cases {
            let (sql, values) = approvals_sql(status, agent, approver, 10);
            let plan = query_plan(&c, &sql, params_from_iter(values));
            assert!(plan.iter().any(|step| step.contains(&format!("INDEX {index}"))), "{index}: {plan:?}");
            assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{index}: {plan:?}");
        }
    }
}
