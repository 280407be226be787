//! `ConsoleStore` for SQLite: console sessions and pending sign-ins.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use warrant_core::UnixTime;

use super::SqliteStore;
use crate::console::{digest_from, principal_from, principal_text, KEEP_ENDED_SECS};
use crate::{ConsoleLoginRecord, ConsoleSessionRecord, ConsoleStore, StoreError};

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> Result<(), StoreError> {
        let s = session.clone();
        let principal = principal_text(&s.principal)?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO console_sessions (digest, principal, csrf, created_at, expires_at, ended_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.digest.as_slice(),
                    principal,
                    s.csrf,
                    s.created_at.0,
                    s.expires_at.0,
                    s.ended_at.map(|t| t.0)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn console_session(&self, digest: &[u8; 32]) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        let digest = *digest;
        let row = self
            .run(move |c| {
                Ok(c.query_row(
                    "SELECT principal, csrf, created_at, expires_at, ended_at FROM console_sessions WHERE digest = ?1",
                    params![digest.as_slice()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                        ))
                    },
                )
                .optional()?)
            })
            .await?;
        row.map(|(principal, csrf, created, expires, ended)| {
            Ok(ConsoleSessionRecord {
                digest,
                principal: principal_from(&principal)?,
                csrf,
                created_at: UnixTime(created),
                expires_at: UnixTime(expires),
                ended_at: ended.map(UnixTime),
            })
        })
        .transpose()
    }

    async fn end_console_session(&self, digest: &[u8; 32], at: UnixTime) -> Result<bool, StoreError> {
        let digest = *digest;
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE console_sessions SET ended_at = ?2 WHERE digest = ?1 AND ended_at IS NULL",
                params![digest.as_slice(), at.0],
            )?;
            tx.execute(
                "DELETE FROM console_sessions WHERE COALESCE(ended_at, expires_at) < ?1",
                params![at.0 - KEEP_ENDED_SECS],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_console_login(&self, login: &ConsoleLoginRecord, now: UnixTime) -> Result<(), StoreError> {
        let l = login.clone();
        self.write(move |tx| {
            tx.execute("DELETE FROM console_logins WHERE expires_at <= ?1", params![now.0])?;
            tx.execute(
                "INSERT INTO console_logins (state_digest, issuer, verifier, nonce, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![l.state_digest.as_slice(), l.issuer, l.verifier, l.nonce, l.expires_at.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_console_login(
        &self,
        state_digest: &[u8; 32],
        now: UnixTime,
    ) -> Result<Option<ConsoleLoginRecord>, StoreError> {
        let digest = *state_digest;
        let row = self
            .run(move |c| {
                Ok(c.query_row(
                    "DELETE FROM console_logins WHERE state_digest = ?1 \
                     RETURNING state_digest, issuer, verifier, nonce, expires_at",
                    params![digest.as_slice()],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()?)
            })
            .await?;
        let Some((state, issuer, verifier, nonce, expires)) = row else { return Ok(None) };
        let login = ConsoleLoginRecord {
            state_digest: digest_from(&state)?,
            issuer,
            verifier,
            nonce,
            expires_at: UnixTime(expires),
        };
        Ok((now < login.expires_at).then_some(login))
    }
}
