//! `PepStore` for SQLite: the credentials of enforcement points.

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Row};
use warrant_core::{PepId, UnixTime};

use super::{col, time, SqliteStore};
use crate::records::PepRecord;
use crate::{PepStore, StoreError};

const PEP_COLS: &str = "id, name, secret_sha256, plain_subjects, created_at, revoked_at";

fn pep_row(row: &Row<'_>) -> rusqlite::Result<PepRecord> {
    let digest: Vec<u8> = row.get(2)?;
    let secret_sha256 = <[u8; 32]>::try_from(digest.as_slice())
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Blob, Box::new(e)))?;
    Ok(PepRecord {
        id: col(row, 0, PepId::try_from)?,
        name: row.get(1)?,
        secret_sha256,
        plain_subjects: row.get(3)?,
        created_at: time(row, 4)?,
        revoked_at: row.get::<_, Option<i64>>(5)?.map(UnixTime),
    })
}

#[async_trait]
impl PepStore for SqliteStore {
    async fn insert_pep(&self, pep: &PepRecord) -> Result<(), StoreError> {
        let p = pep.clone();
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO peps ({PEP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    p.id.as_str(),
                    p.name,
                    p.secret_sha256.as_slice(),
                    p.plain_subjects,
                    p.created_at.0,
                    p.revoked_at.map(|t| t.0)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_peps(&self) -> Result<Vec<PepRecord>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare(&format!("SELECT {PEP_COLS} FROM peps ORDER BY created_at, rowid"))?;
            let rows = stmt.query_map([], pep_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_pep(&self, id: &PepId, at: UnixTime) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE peps SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.as_str(), at.0],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
