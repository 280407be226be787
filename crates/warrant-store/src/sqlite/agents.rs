//! `AgentStore` for SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use warrant_core::{Agent, AgentId, AgentStatus, HumanId, Mode, PublicJwk, Scope, UnixTime};

use super::{col, json, time, to_text, word, SqliteStore};
use crate::{AgentStore, StoreError};

const AGENT_COLS: &str =
    "id, name, owner, mode, max_scope, public_key, status, expires_at, labels, created_at, spiffe_id";

/// One agent by id, on `c`.
pub(super) fn agent(c: &Connection, id: &AgentId) -> Result<Option<Agent>, StoreError> {
    Ok(c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1"))?
        .query_row([id.as_str()], agent_row)
        .optional()?)
}

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: col(row, 0, AgentId::try_from)?,
        name: row.get(1)?,
        owner: col(row, 2, HumanId::try_from)?,
        mode: col(row, 3, word::<Mode>)?,
        max_scope: col(row, 4, json::<Scope>)?,
        public_key: col(row, 5, json::<Option<PublicJwk>>)?,
        spiffe_id: row.get(10)?,
        status: col(row, 6, word::<AgentStatus>)?,
        expires_at: row.get::<_, Option<i64>>(7)?.map(UnixTime),
        labels: col(row, 8, json)?,
        created_at: time(row, 9)?,
    })
}

/// Every agent, oldest first.
fn all_agents_sql() -> String {
    format!("SELECT {AGENT_COLS} FROM agents ORDER BY created_at, id")
}

/// The agents `?1` owns, oldest first, found through `agents_owner` (one statement for
/// both cases, `?1 IS NULL OR owner = ?1`, read every agent for either).
fn owned_agents_sql() -> String {
    format!("SELECT {AGENT_COLS} FROM agents WHERE owner = ?1 ORDER BY created_at, id")
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let a = agent.clone();
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let max_scope = serde_json::to_string(&a.max_scope).map_err(corrupt)?;
        let public_key = serde_json::to_string(&a.public_key).map_err(corrupt)?;
        let labels = serde_json::to_string(&a.labels).map_err(corrupt)?;
        let (mode, status) = (to_text(&a.mode)?, to_text(&a.status)?);
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO agents ({AGENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                a.id.as_str(),
                a.name,
                a.owner.as_str(),
                mode,
                max_scope,
                public_key,
                status,
                a.expires_at.map(|t| t.0),
                labels,
                a.created_at.0,
                a.spiffe_id
            ])?;
            Ok(())
        })
        .await
    }

    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError> {
        let spiffe_id = spiffe_id.to_owned();
        self.run_point(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE spiffe_id = ?1"))?
                .query_row([spiffe_id], agent_row)
                .optional()?)
        })
        .await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let id = id.clone();
        self.run_point(move |c| agent(c, &id)).await
    }

    async fn list_agents(&self, owner: Option<&HumanId>) -> Result<Vec<Agent>, StoreError> {
        let owner = owner.map(|o| o.as_str().to_owned());
        self.run(move |c| {
            let rows: Result<Vec<_>, rusqlite::Error> = match owner {
                Some(owner) => c.prepare_cached(&owned_agents_sql())?.query_map([owner], agent_row)?.collect(),
                None => c.prepare_cached(&all_agents_sql())?.query_map([], agent_row)?.collect(),
            };
            Ok(rows?)
        })
        .await
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus) -> Result<bool, StoreError> {
        let id = id.clone();
        let status = to_text(&status)?;
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE agents SET status = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), status])?
                > 0)
        })
        .await
    }

    async fn set_agent_owner(&self, id: &AgentId, owner: &HumanId) -> Result<bool, StoreError> {
        let (id, owner) = (id.clone(), owner.clone());
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE agents SET owner = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), owner.as_str()])?
                > 0)
        })
        .await
    }

    async fn set_agent_max_scope(&self, id: &AgentId, max_scope: &Scope) -> Result<bool, StoreError> {
        let id = id.clone();
        let max_scope = serde_json::to_string(max_scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE agents SET max_scope = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), max_scope])?
                > 0)
        })
        .await
    }

    async fn set_agent_key(&self, id: &AgentId, key: &PublicJwk, at: UnixTime) -> Result<bool, StoreError> {
        let id = id.clone();
        let key = serde_json::to_string(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |tx| {
            let sql = "UPDATE agents SET public_key = ?2 WHERE id = ?1 AND spiffe_id IS NULL";
            if tx.prepare_cached(sql)?.execute(params![id.as_str(), key])? == 0 {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO agent_keys (agent_id, set_at) VALUES (?1, ?2) \
                 ON CONFLICT(agent_id) DO UPDATE SET set_at = excluded.set_at",
            )?
            .execute(params![id.as_str(), at.0])?;
            Ok(true)
        })
        .await
    }

    async fn agent_key_times(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT a.id, COALESCE(k.set_at, a.created_at) FROM agents a \
                 LEFT JOIN agent_keys k ON k.agent_id = a.id WHERE a.spiffe_id IS NULL ORDER BY a.created_at, a.id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((col(r, 0, AgentId::try_from)?, time(r, 1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{migrated_in_memory, query_plan};
    use super::owned_agents_sql;

    /// An owner's agents are found through `agents_owner`, not by reading every agent.
    #[test]
    fn an_owners_agents_are_found_by_the_owner_index() {
        let plan = query_plan(&migrated_in_memory(), &owned_agents_sql(), ["hum_one"]);
        assert!(plan.iter().any(|step| step.contains("USING INDEX agents_owner")), "{plan:?}");
    }
}
