//! `PolicyStore` for PostgreSQL: versions of the policy set.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{get, lock_writes, time, PgStore};
use crate::records::PolicyVersionRecord;
use crate::{PolicyStore, StoreError};

/// A row of `policy_versions` selected as `id, hash, policies, schema, loaded_at`.
fn version_row(row: &Row) -> Result<PolicyVersionRecord, StoreError> {
    Ok(PolicyVersionRecord {
        id: get(row, 0)?,
        hash: get(row, 1)?,
        policies: get(row, 2)?,
        schema: get(row, 3)?,
        loaded_at: time(row, 4)?,
    })
}

#[async_trait]
impl PolicyStore for PgStore {
    async fn active_policy(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT version FROM cluster_policy", &[]).await?;
        row.map(|row| super::get(&row, 0)).transpose()
    }

    async fn activate_policy(&self, version: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            "INSERT INTO cluster_policy (version) VALUES ($1) \
             ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, activated_at = now()",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_policy_version(&self, version: &PolicyVersionRecord) -> Result<i64, StoreError> {
        let v = version;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        // Look the fingerprint up before inserting, rather than `ON CONFLICT DO NOTHING`:
        // a refused insert would still consume an identity value, leaving a gap in the ids
        // that SQLite's `INSERT OR IGNORE` does not leave. The write lock makes this safe.
        let existing = tx.query_opt("SELECT id FROM policy_versions WHERE hash = $1", &[&v.hash]).await?;
        let row = match existing {
            Some(row) => row,
            None => {
                tx.query_one(
                    "INSERT INTO policy_versions (hash, policies, schema, loaded_at) VALUES ($1, $2, $3, $4) \
                     RETURNING id",
                    &[&v.hash, &v.policies, &v.schema, &v.loaded_at.0],
                )
                .await?
            }
        };
        let id: i64 = get(&row, 0)?;
        tx.commit().await?;
        Ok(id)
    }

    async fn policy_versions(&self) -> Result<Vec<PolicyVersionRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT id, hash, loaded_at FROM policy_versions ORDER BY id", &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(PolicyVersionRecord {
                    id: get(r, 0)?,
                    hash: get(r, 1)?,
                    policies: String::new(),
                    schema: String::new(),
                    loaded_at: time(r, 2)?,
                })
            })
            .collect()
    }

    async fn policy_version(&self, id: i64) -> Result<Option<PolicyVersionRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id, hash, policies, schema, loaded_at FROM policy_versions WHERE id = $1", &[&id])
            .await?;
        row.as_ref().map(version_row).transpose()
    }
}
