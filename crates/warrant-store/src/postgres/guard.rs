//! `GuardStore` for PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use warrant_core::guard::approval::{Approval, ApprovalStatus};
use warrant_core::{AgentId, ApprovalId, HumanId, UnixTime, WarrantId};

use warrant_core::guard::budget::{Budget, Charge, ChargeError, Ledger, MAX_WALK};

use super::{budget_col, cached, col, get, lock_writes, opt_col, time, PgStore};
use crate::columns::approval_cols;
use crate::guard::{AmountsFor, GuardStore, LiveBudget, MAX_APPROVAL_LIST_LIMIT};
use crate::StoreError;

/// `$1` and its ancestors (at most [`MAX_WALK`]), with their budgets and expiry.
const BUDGET_WALK: &str = "WITH RECURSIVE walk (jti, parent, budget, expires_at, depth) AS ( \
     SELECT jti, parent, budget, expires_at, 1 FROM warrants WHERE jti = $1 \
     UNION ALL SELECT w.jti, w.parent, w.budget, w.expires_at, walk.depth + 1 \
     FROM warrants w JOIN walk ON w.jti = walk.parent WHERE walk.depth < $2) \
     SELECT jti, parent, budget, expires_at FROM walk ORDER BY depth DESC";

/// What the warrants `$1` have spent.
const WALK_SPENDS: &str = "SELECT jti, counter, spent FROM budget_spend WHERE jti = ANY($1)";

/// The ledger of `jti`'s walk up the tree as stored (root first), with what it spent.
async fn walk_ledger(tx: &cached::Tx<'_>, jti: &WarrantId) -> Result<Ledger, StoreError> {
    let depth = i32::try_from(MAX_WALK).unwrap_or(i32::MAX);
    let walk = cached::query(tx, BUDGET_WALK, &[&jti.as_str(), &depth]).await?;
    let mut ledger = Ledger::default();
    let mut jtis = Vec::with_capacity(walk.len());
    for row in &walk {
        let (id, parent, budget, expires_at) = budget_row(row)?;
        jtis.push(id.as_str().to_owned());
        ledger.open(id, parent, budget, expires_at);
    }
    for row in cached::query(tx, WALK_SPENDS, &[&jtis]).await? {
        let id: WarrantId = col(&row, 0, WarrantId::try_from)?;
        let counter: String = get(&row, 1)?;
        ledger.restore(&id, &counter, get(&row, 2)?);
    }
    Ok(ledger)
}

fn budget_row(row: &Row) -> Result<LiveBudget, StoreError> {
    Ok((col(row, 0, WarrantId::try_from)?, opt_col(row, 1, WarrantId::try_from)?, budget_col(row, 2)?, time(row, 3)?))
}

/// An approval from its `(id, status, body)` columns; the columns must agree with the body.
fn approval_row(row: &Row) -> Result<Approval, StoreError> {
    let (id, status): (&str, &str) = (get(row, 0)?, get(row, 1)?);
    let approval: Approval = col(row, 2, |body| serde_json::from_str(&body))?;
    if approval.id.as_str() != id || approval.status.as_str() != status {
        return Err(StoreError::Corrupt(format!("approval `{id}`: the stored body does not match its columns")));
    }
    Ok(approval)
}

#[async_trait]
impl GuardStore for PgStore {
    async fn charge_budget(
        &self,
        jti: &WarrantId,
        amounts: AmountsFor<'_>,
    ) -> Result<Result<Vec<Charge>, ChargeError>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let mut ledger = walk_ledger(&tx, jti).await?;
        let counters = ledger.counters(jti);
        if counters.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let wanted = match amounts(&counters) {
            Ok(wanted) => wanted,
            Err(e) => return Ok(Err(e)),
        };
        let charges = match ledger.charge(jti, &wanted) {
            Ok(charges) => charges,
            Err(e) => return Ok(Err(e)),
        };
        if !charges.is_empty() {
            let jtis: Vec<&str> = charges.iter().map(|c| c.warrant.as_str()).collect();
            let counters: Vec<&str> = charges.iter().map(|c| c.counter.as_str()).collect();
            let spent: Vec<i64> = charges.iter().map(|c| c.amount).collect();
            let expiries: Vec<i64> = charges.iter().map(|c| c.expires_at.0).collect();
            cached::execute(&tx, super::audit::ADD_SPENDS, &[&jtis, &counters, &spent, &expiries]).await?;
        }
        tx.commit().await?;
        Ok(Ok(charges))
    }

    async fn refund_budget(&self, charges: &[Charge]) -> Result<(), StoreError> {
        let charges: Vec<&Charge> = charges.iter().filter(|c| c.amount > 0).collect();
        if charges.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        for charge in charges {
            cached::execute(
                &tx,
                "UPDATE budget_spend SET spent = GREATEST(spent - $3, 0) WHERE jti = $1 AND counter = $2",
                &[&charge.warrant.as_str(), &charge.counter, &charge.amount],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn budget_left(&self, jti: &WarrantId) -> Result<Budget, StoreError> {
        let mut client = self.client().await?;
        // A read-only transaction: the walk and the spends from one snapshot.
        let tx = client
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let ledger = walk_ledger(&tx, jti).await?;
        tx.commit().await?;
        Ok(ledger.left(jti))
    }

    async fn live_budgets(&self, now: UnixTime) -> Result<Vec<LiveBudget>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT jti, parent, budget, expires_at FROM warrants \
                 WHERE budget IS NOT NULL AND expires_at > $1 ORDER BY issued_at, rowid",
                &[&now.0],
            )
            .await?;
        let budgets = rows.iter().map(budget_row).collect::<Result<Vec<_>, _>>()?;
        Ok(budgets.into_iter().filter(|(_, _, budget, _)| !budget.is_empty()).collect())
    }

    async fn live_spends(&self, now: UnixTime) -> Result<Vec<(WarrantId, String, i64)>, StoreError> {
        let client = self.client().await?;
        // Byte order, as SQLite sorts text, whatever the database's collation.
        let rows = client
            .query(
                "SELECT jti, counter, spent FROM budget_spend WHERE expires_at > $1 \
                 ORDER BY jti COLLATE \"C\", counter COLLATE \"C\"",
                &[&now.0],
            )
            .await?;
        rows.iter().map(|r| Ok((col(r, 0, WarrantId::try_from)?, get(r, 1)?, get(r, 2)?))).collect()
    }

    async fn purge_spends(&self, now: UnixTime) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let n = tx.execute("DELETE FROM budget_spend WHERE expires_at <= $1", &[&now.0]).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn save_guard_states(&self, states: &[(AgentId, String, UnixTime)]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let stmt = tx
            .prepare(
                "INSERT INTO agent_guard (agent_id, state, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
            )
            .await?;
        for (agent, state, at) in states {
            tx.execute(&stmt, &[&agent.as_str(), state, &at.0]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn guard_states(&self) -> Result<Vec<(AgentId, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT agent_id, state FROM agent_guard ORDER BY agent_id COLLATE \"C\"", &[]).await?;
        rows.iter().map(|r| Ok((col(r, 0, AgentId::try_from)?, get(r, 1)?))).collect()
    }

    async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        let (id, status, agent, approver, created_at, expires_at, body) = approval_cols(approval)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            "INSERT INTO approvals (id, status, agent_id, approver, created_at, expires_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &status, &agent, &approver, &created_at, &expires_at, &body],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT id, status, body FROM approvals WHERE id = $1", &[&id.as_str()]).await?;
        row.as_ref().map(approval_row).transpose()
    }

    async fn update_approval(&self, approval: &Approval, expected: ApprovalStatus) -> Result<bool, StoreError> {
        let (id, status, agent, approver, created_at, expires_at, body) = approval_cols(approval)?;
        let expected = expected.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = $2, agent_id = $3, approver = $4, created_at = $5, expires_at = $6, \
                 body = $7 WHERE id = $1 AND status = $8",
                &[&id, &status, &agent, &approver, &created_at, &expires_at, &body, &expected],
            )
            .await?;
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        agent: Option<&AgentId>,
        approver: Option<&HumanId>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(status) = status {
            values.push(Box::new(status.as_str().to_owned()));
            clauses.push(format!("status = ${}", values.len()));
        }
        if let Some(agent) = agent {
            values.push(Box::new(agent.as_str().to_owned()));
            clauses.push(format!("agent_id = ${}", values.len()));
        }
        if let Some(approver) = approver {
            values.push(Box::new(approver.as_str().to_owned()));
            clauses.push(format!("approver = ${}", values.len()));
        }
        let mut sql = "SELECT id, status, body FROM approvals".to_owned();
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        values.push(Box::new(i64::try_from(limit.min(MAX_APPROVAL_LIST_LIMIT)).unwrap_or(0)));
        sql.push_str(&format!(" ORDER BY created_at DESC, rowid DESC LIMIT ${}", values.len()));
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let rows = client.query(&sql, &refs).await?;
        rows.iter().map(approval_row).collect()
    }
}
