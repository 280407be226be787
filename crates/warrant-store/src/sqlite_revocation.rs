//! `RevocationStore` and `PolicyStore` for SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use warrant_core::{AgentId, AgentStatus, HumanId, TaskId, UnixTime, WarrantId};

use crate::records::{PolicyVersionRecord, RevocationKind, RevocationRecord, WarrantRecord};
use crate::sqlite::{to_text, warrant_row, SqliteStore, WARRANT_COLS};
use crate::{PolicyStore, RevocationStore, StoreError};

fn revocation_row(row: &Row<'_>) -> rusqlite::Result<RevocationRecord> {
    let kind: String = row.get(1)?;
    let kind = serde_json::from_value::<RevocationKind>(serde_json::Value::String(kind))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(RevocationRecord { id: row.get(0)?, kind, target: row.get(2)?, reason: row.get(3)?, at: UnixTime(row.get(4)?) })
}

fn warrants(
    c: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WarrantRecord>, StoreError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map(params, warrant_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revocation_watermark(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(rowid), 0) FROM revocations", [], |r| r.get(0))?;
            Ok(u64::try_from(seq).unwrap_or(0))
        })
        .await
    }

    async fn revoke(
        &self,
        revocation: &RevocationRecord,
        now: UnixTime,
    ) -> Result<Vec<(WarrantId, UnixTime)>, StoreError> {
        let rev = revocation.clone();
        let kind = to_text(&rev.kind)?;
        let (active, suspended) = (to_text(&AgentStatus::Active)?, to_text(&AgentStatus::Suspended)?);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let select = match rev.kind {
                RevocationKind::Warrant => {
                    "WITH RECURSIVE sub(jti) AS (SELECT ?1 UNION SELECT w.jti FROM warrants w JOIN sub ON w.parent = sub.jti) \
                     SELECT w.jti, w.expires_at FROM warrants w JOIN sub ON w.jti = sub.jti WHERE w.expires_at > ?2"
                }
                RevocationKind::Agent => {
                    tx.execute(
                        "UPDATE agents SET status = ?2 WHERE id = ?1 AND status = ?3",
                        params![rev.target, suspended, active],
                    )?;
                    "SELECT w.jti, w.expires_at FROM warrant_agents a CROSS JOIN warrants w ON w.jti = a.jti \
                     WHERE a.agent = ?1 AND w.expires_at > ?2"
                }
                RevocationKind::Task => {
                    tx.execute(
                        "UPDATE tasks SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
                        params![rev.target, rev.at.0],
                    )?;
                    "SELECT jti, expires_at FROM warrants WHERE task = ?1 AND expires_at > ?2"
                }
                RevocationKind::Human => {
                    tx.execute(
                        "UPDATE sessions SET revoked_at = ?2 WHERE human = ?1 AND revoked_at IS NULL",
                        params![rev.target, rev.at.0],
                    )?;
                    "SELECT jti, expires_at FROM warrants WHERE human = ?1 AND expires_at > ?2"
                }
            };
            let targets = {
                let mut stmt = tx.prepare(select)?;
                let rows = stmt
                    .query_map(params![rev.target, now.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(jti, exp)| {
                        WarrantId::parse(&jti).map(|j| (j, UnixTime(exp))).map_err(|e| StoreError::Corrupt(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            tx.execute(
                "INSERT INTO revocations (id, kind, target, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![rev.id, kind, rev.target, rev.reason, rev.at.0],
            )?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR IGNORE INTO revoked_warrants (jti, revocation, expires_at) VALUES (?1, ?2, ?3)",
                )?;
                for (jti, exp) in &targets {
                    stmt.execute(params![jti.as_str(), rev.id, exp.0])?;
                }
            }
            tx.commit()?;
            Ok(targets)
        })
        .await
    }

    async fn revoked_warrants(&self, now: UnixTime) -> Result<Vec<WarrantId>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare("SELECT jti FROM revoked_warrants WHERE expires_at > ?1")?;
            let rows = stmt
                .query_map([now.0], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| WarrantId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ended_tasks(&self) -> Result<Vec<TaskId>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT id FROM tasks WHERE completed_at IS NOT NULL")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| TaskId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn warrant_subtree(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            let cols = WARRANT_COLS.split(", ").map(|col| format!("w.{col}")).collect::<Vec<_>>().join(", ");
            warrants(
                c,
                &format!(
                    "WITH RECURSIVE sub(jti) AS (SELECT ?1 UNION SELECT w.jti FROM warrants w JOIN sub ON w.parent = sub.jti) \
                     SELECT {cols} FROM warrants w JOIN sub ON w.jti = sub.jti ORDER BY w.issued_at, w.rowid"
                ),
                [jti.as_str()],
            )
        })
        .await
    }

    async fn live_warrants_with_agent(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let agent = agent.clone();
        self.run(move |c| {
            let cols = WARRANT_COLS.split(", ").map(|col| format!("w.{col}")).collect::<Vec<_>>().join(", ");
            warrants(
                c,
                &format!(
                    "SELECT {cols} FROM warrant_agents a CROSS JOIN warrants w ON w.jti = a.jti \
                     WHERE a.agent = ?1 AND w.expires_at > ?2 ORDER BY w.issued_at, w.rowid"
                ),
                params![agent.as_str(), now.0],
            )
        })
        .await
    }

    async fn live_warrants_of_human(&self, human: &HumanId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let human = human.clone();
        self.run(move |c| {
            warrants(
                c,
                &format!("SELECT {WARRANT_COLS} FROM warrants WHERE human = ?1 AND expires_at > ?2 ORDER BY issued_at"),
                params![human.as_str(), now.0],
            )
        })
        .await
    }

    async fn revocation_of(&self, jti: &WarrantId) -> Result<Option<RevocationRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT r.id, r.kind, r.target, r.reason, r.at FROM revoked_warrants w JOIN revocations r ON r.id = w.revocation WHERE w.jti = ?1",
                [jti.as_str()],
                revocation_row,
            )
            .optional()?)
        })
        .await
    }
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn save_policy_version(&self, version: &PolicyVersionRecord) -> Result<i64, StoreError> {
        let v = version.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO policy_versions (hash, policies, schema, loaded_at) VALUES (?1, ?2, ?3, ?4)",
                params![v.hash, v.policies, v.schema, v.loaded_at.0],
            )?;
            let id: i64 = tx.query_row("SELECT id FROM policy_versions WHERE hash = ?1", [&v.hash], |r| r.get(0))?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn policy_versions(&self) -> Result<Vec<PolicyVersionRecord>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT id, hash, loaded_at FROM policy_versions ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(PolicyVersionRecord {
                        id: r.get(0)?,
                        hash: r.get(1)?,
                        policies: String::new(),
                        schema: String::new(),
                        loaded_at: UnixTime(r.get(2)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn policy_version(&self, id: i64) -> Result<Option<PolicyVersionRecord>, StoreError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, hash, policies, schema, loaded_at FROM policy_versions WHERE id = ?1",
                [id],
                |r| {
                    Ok(PolicyVersionRecord {
                        id: r.get(0)?,
                        hash: r.get(1)?,
                        policies: r.get(2)?,
                        schema: r.get(3)?,
                        loaded_at: UnixTime(r.get(4)?),
                    })
                },
            )
            .optional()?)
        })
        .await
    }
}
