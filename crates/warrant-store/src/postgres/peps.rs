//! `PepStore` for PostgreSQL: the credentials of enforcement points.

use async_trait::async_trait;
use tokio_postgres::Row;
use warrant_core::{PepId, UnixTime};

use super::{col, get, lock_writes, opt_time, time, PgStore};
use crate::records::PepRecord;
use crate::{PepStore, StoreError};

const PEP_COLS: &str = "id, name, secret_sha256, plain_subjects, created_at, revoked_at";

fn pep_row(row: &Row) -> Result<PepRecord, StoreError> {
    let digest: Vec<u8> = get(row, 2)?;
    let secret_sha256 = <[u8; 32]>::try_from(digest.as_slice())
        .map_err(|e| StoreError::Corrupt(format!("column 2: a digest of {} bytes: {e}", digest.len())))?;
    Ok(PepRecord {
        id: col(row, 0, PepId::try_from)?,
        name: get(row, 1)?,
        secret_sha256,
        plain_subjects: get(row, 3)?,
        created_at: time(row, 4)?,
        revoked_at: opt_time(row, 5)?,
    })
}

#[async_trait]
impl PepStore for PgStore {
    async fn insert_pep(&self, pep: &PepRecord) -> Result<(), StoreError> {
        let p = pep;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            &format!("INSERT INTO peps ({PEP_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &p.id.as_str(),
                &p.name,
                &p.secret_sha256.as_slice(),
                &p.plain_subjects,
                &p.created_at.0,
                &p.revoked_at.map(|t| t.0),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_peps(&self) -> Result<Vec<PepRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(&format!("SELECT {PEP_COLS} FROM peps ORDER BY created_at, rowid"), &[]).await?;
        rows.iter().map(pep_row).collect()
    }

    async fn revoke_pep(&self, id: &PepId, at: UnixTime) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let n = tx
            .execute("UPDATE peps SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id.as_str(), &at.0])
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }
}
