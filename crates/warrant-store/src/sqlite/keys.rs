//! `KeyStore` for SQLite: the issuer's signing keys.

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Row};
use warrant_core::UnixTime;
use zeroize::Zeroizing;

use super::{time, SqliteStore};
use crate::records::{KeyMaterial, KeyPurpose, StoredKey};
use crate::{KeyStore, StoreError};

const KEY_COLS: &str = "kid, purpose, seed, sealed, created_at, retired_at";

fn key_row(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let purpose: String = row.get(1)?;
    let purpose = KeyPurpose::parse(&purpose).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, Type::Text, format!("unknown key purpose `{purpose}`").into())
    })?;
    let sealed: Option<Vec<u8>> = row.get(3)?;
    let material = match sealed {
        Some(sealed) => KeyMaterial::Sealed(sealed),
        None => {
            let seed = Zeroizing::new(row.get::<_, Vec<u8>>(2)?);
            let seed = <[u8; 32]>::try_from(seed.as_slice())
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Blob, Box::new(e)))?;
            KeyMaterial::Plaintext(Zeroizing::new(seed))
        }
    };
    Ok(StoredKey {
        kid: row.get(0)?,
        purpose,
        material,
        created_at: time(row, 4)?,
        retired_at: row.get::<_, Option<i64>>(5)?.map(UnixTime),
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"))?;
            let rows = stmt.query_map([], key_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn rotate_in(&self, key: &StoredKey) -> Result<(), StoreError> {
        let KeyMaterial::Sealed(sealed) = &key.material else {
            return Err(StoreError::Backend("refusing to store a signing key that is not sealed".into()));
        };
        let (kid, purpose, sealed, created_at) = (key.kid.clone(), key.purpose, sealed.clone(), key.created_at);
        self.write(move |tx| {
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL AND purpose = ?2",
                params![created_at.0, purpose.as_str()],
            )?;
            tx.execute(
                "INSERT INTO signing_keys (kid, purpose, seed, sealed, created_at, retired_at) \
                 VALUES (?1, ?2, x'', ?3, ?4, NULL)",
                params![kid, purpose.as_str(), sealed, created_at.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn seal_keys(&self, sealed: &[(String, Vec<u8>)]) -> Result<usize, StoreError> {
        let sealed = sealed.to_vec();
        // On the store's own connection, not in the group commit: the seeds' old pages
        // must be zeroed and the log truncated, outside any transaction.
        self.run(move |c| {
            // Zero the freed bytes of each plaintext seed inside its page, not just unlink them.
            c.pragma_update(None, "secure_delete", "ON")?;
            let written = (|| -> Result<usize, StoreError> {
                let tx = c.transaction()?;
                let mut changed = 0;
                for (kid, blob) in &sealed {
                    changed += tx.execute(
                        "UPDATE signing_keys SET sealed = ?2, seed = x'' WHERE kid = ?1 AND sealed IS NULL",
                        params![kid, blob],
                    )?;
                }
                tx.commit()?;
                Ok(changed)
            })();
            let restored = c.pragma_update(None, "secure_delete", "OFF");
            let changed = written?;
            restored?;
            if changed > 0 {
                // Copy the rewritten pages into the main file and empty the write-ahead
                // log, whose older frames still hold the pages with the plaintext seeds.
                // The writer may be running a checkpoint of its own: try again until this
                // one completes.
                let mut attempts = 0;
                loop {
                    let busy = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
                    match busy {
                        Ok(0) => break,
                        Ok(_)
                        | Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error {
                                code: rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                                ..
                            },
                            _,
                        )) if attempts < 500 => {
                            attempts += 1;
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        Ok(_) => {
                            return Err(StoreError::Backend(
                                "the sealed keys could not be checkpointed into the database file".into(),
                            ))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(changed)
        })
        .await
    }

    async fn last_expiry_for_key(&self, kid: &str) -> Result<Option<UnixTime>, StoreError> {
        let kid = kid.to_owned();
        self.run(move |c| {
            let max: Option<i64> =
                c.query_row("SELECT MAX(expires_at) FROM warrants WHERE kid = ?1", [kid], |r| r.get(0))?;
            Ok(max.map(UnixTime))
        })
        .await
    }
}
