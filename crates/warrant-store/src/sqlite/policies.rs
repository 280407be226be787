//! `PolicyStore` for SQLite: versions of the policy set.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use warrant_core::UnixTime;

use super::SqliteStore;
use crate::records::PolicyVersionRecord;
use crate::{PolicyStore, StoreError};

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn save_policy_version(&self, version: &PolicyVersionRecord) -> Result<i64, StoreError> {
        let v = version.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO policy_versions (hash, policies, schema, loaded_at) VALUES (?1, ?2, ?3, ?4)",
                params![v.hash, v.policies, v.schema, v.loaded_at.0],
            )?;
            let id: i64 = tx.query_row("SELECT id FROM policy_versions WHERE hash = ?1", [&v.hash], |r| r.get(0))?;
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
