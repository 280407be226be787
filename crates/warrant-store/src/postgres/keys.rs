//! `KeyStore` for PostgreSQL: the issuer's signing keys.

use async_trait::async_trait;
use tokio_postgres::Row;
use warrant_core::UnixTime;
use zeroize::Zeroizing;

use super::{col, get, lock_writes, opt_time, time, PgStore};
use crate::records::{KeyMaterial, KeyPurpose, StoredKey};
use crate::{KeyStore, StoreError};

const KEY_COLS: &str = "kid, purpose, seed, sealed, created_at, retired_at";

fn key_row(row: &Row) -> Result<StoredKey, StoreError> {
    let purpose = col(row, 1, |p| KeyPurpose::parse(&p).ok_or_else(|| format!("unknown key purpose `{p}`")))?;
    let sealed: Option<Vec<u8>> = get(row, 3)?;
    let material = match sealed {
        Some(sealed) => KeyMaterial::Sealed(sealed),
        None => {
            let seed = Zeroizing::new(get::<Vec<u8>>(row, 2)?);
            let seed = <[u8; 32]>::try_from(seed.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("column 2: a plaintext seed of {} bytes: {e}", seed.len())))?;
            KeyMaterial::Plaintext(Zeroizing::new(seed))
        }
    };
    Ok(StoredKey { kid: get(row, 0)?, purpose, material, created_at: time(row, 4)?, retired_at: opt_time(row, 5)? })
}

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"), &[])
            .await?;
        rows.iter().map(key_row).collect()
    }

    async fn rotate_in(&self, key: &StoredKey) -> Result<(), StoreError> {
        let KeyMaterial::Sealed(sealed) = &key.material else {
            return Err(StoreError::Backend("refusing to store a signing key that is not sealed".into()));
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND purpose = $2",
            &[&key.created_at.0, &key.purpose.as_str()],
        )
        .await?;
        tx.execute(
            "INSERT INTO signing_keys (kid, purpose, seed, sealed, created_at, retired_at) \
             VALUES ($1, $2, ''::BYTEA, $3, $4, NULL)",
            &[&key.kid, &key.purpose.as_str(), &sealed.as_slice(), &key.created_at.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn seal_keys(&self, sealed: &[(String, Vec<u8>)]) -> Result<usize, StoreError> {
        // PostgreSQL offers no secure delete: the old row versions stay in the table's
        // pages (until vacuumed and overwritten) and in the write-ahead log. Emptying the
        // seed here is what the store can do; the database's storage is the operator's.
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let mut changed: u64 = 0;
        for (kid, blob) in sealed {
            changed += tx
                .execute(
                    "UPDATE signing_keys SET sealed = $2, seed = ''::BYTEA WHERE kid = $1 AND sealed IS NULL",
                    &[kid, &blob.as_slice()],
                )
                .await?;
        }
        tx.commit().await?;
        usize::try_from(changed).map_err(|_| StoreError::Backend(format!("`{changed}` is out of range")))
    }

    async fn last_expiry_for_key(&self, kid: &str) -> Result<Option<UnixTime>, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT MAX(expires_at) FROM warrants WHERE kid = $1", &[&kid]).await?;
        opt_time(&row, 0)
    }
}
