//! `AgentStore` for PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;
use warrant_core::{Agent, AgentId, AgentStatus, HumanId, Mode, PublicJwk, Scope, UnixTime};

use super::{col, get, lock_writes, opt_time, time, PgStore};
use crate::columns::{json, to_text, word};
use crate::{AgentStore, StoreError};

const AGENT_COLS: &str =
    "id, name, owner, mode, max_scope, public_key, status, expires_at, labels, created_at, spiffe_id";

fn agent_row(row: &Row) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: col(row, 0, AgentId::try_from)?,
        name: get(row, 1)?,
        owner: col(row, 2, HumanId::try_from)?,
        mode: col(row, 3, word::<Mode>)?,
        max_scope: col(row, 4, json::<Scope>)?,
        public_key: col(row, 5, json::<Option<PublicJwk>>)?,
        spiffe_id: get(row, 10)?,
        status: col(row, 6, word::<AgentStatus>)?,
        expires_at: opt_time(row, 7)?,
        labels: col(row, 8, json)?,
        created_at: time(row, 9)?,
    })
}

/// `value` as JSON text, as the SQLite store writes it.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Sets one text column (`column`, a name from this file, never input) of agent `id`
/// under the write lock; whether such an agent exists.
async fn update_agent(store: &PgStore, id: &AgentId, column: &str, value: &str) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    lock_writes(&tx).await?;
    let n = tx.execute(&format!("UPDATE agents SET {column} = $2 WHERE id = $1"), &[&id.as_str(), &value]).await?;
    tx.commit().await?;
    Ok(n > 0)
}

#[async_trait]
impl AgentStore for PgStore {
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let a = agent;
        let max_scope = json_text(&a.max_scope)?;
        let public_key = json_text(&a.public_key)?;
        let labels = json_text(&a.labels)?;
        let (mode, status) = (to_text(&a.mode)?, to_text(&a.status)?);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            &format!("INSERT INTO agents ({AGENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            &[
                &a.id.as_str(),
                &a.name,
                &a.owner.as_str(),
                &mode,
                &max_scope,
                &public_key,
                &status,
                &a.expires_at.map(|t| t.0),
                &labels,
                &a.created_at.0,
                &a.spiffe_id,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError> {
        let client = self.client().await?;
        let row =
            client.query_opt(&format!("SELECT {AGENT_COLS} FROM agents WHERE spiffe_id = $1"), &[&spiffe_id]).await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1"), &[&id.as_str()]).await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn list_agents(&self, owner: Option<&HumanId>) -> Result<Vec<Agent>, StoreError> {
        let owner = owner.map(HumanId::as_str);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {AGENT_COLS} FROM agents WHERE $1::TEXT IS NULL OR owner = $1 ORDER BY created_at, id COLLATE \"C\""),
                &[&owner],
            )
            .await?;
        rows.iter().map(agent_row).collect()
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus) -> Result<bool, StoreError> {
        let status = to_text(&status)?;
        update_agent(self, id, "status", &status).await
    }

    async fn set_agent_owner(&self, id: &AgentId, owner: &HumanId) -> Result<bool, StoreError> {
        update_agent(self, id, "owner", owner.as_str()).await
    }

    async fn set_agent_max_scope(&self, id: &AgentId, max_scope: &Scope) -> Result<bool, StoreError> {
        let max_scope = json_text(max_scope)?;
        update_agent(self, id, "max_scope", &max_scope).await
    }

    async fn set_agent_key(&self, id: &AgentId, key: &PublicJwk, at: UnixTime) -> Result<bool, StoreError> {
        let key = json_text(key)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let sql = "UPDATE agents SET public_key = $2 WHERE id = $1 AND spiffe_id IS NULL";
        if tx.execute(sql, &[&id.as_str(), &key]).await? == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO agent_keys (agent_id, set_at) VALUES ($1, $2) \
             ON CONFLICT (agent_id) DO UPDATE SET set_at = EXCLUDED.set_at",
            &[&id.as_str(), &at.0],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn agent_key_times(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT a.id, COALESCE(k.set_at, a.created_at) FROM agents a \
                 LEFT JOIN agent_keys k ON k.agent_id = a.id WHERE a.spiffe_id IS NULL ORDER BY a.created_at, a.id COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter().map(|r| Ok((col(r, 0, AgentId::try_from)?, time(r, 1)?))).collect()
    }
}
