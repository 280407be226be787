//! `ConsoleStore` for PostgreSQL: console sessions and pending sign-ins, shared by every
//! server on the database (a session opened on one is good on all).

use async_trait::async_trait;
use warrant_core::UnixTime;

use super::{get, opt_time, time, PgStore};
use crate::console::{digest_from, principal_from, principal_text, KEEP_ENDED_SECS};
use crate::{ConsoleLoginRecord, ConsoleSessionRecord, ConsoleStore, StoreError};

#[async_trait]
impl ConsoleStore for PgStore {
    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> Result<(), StoreError> {
        let s = session;
        let principal = principal_text(&s.principal)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO console_sessions (digest, principal, csrf, created_at, expires_at, ended_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &s.digest.as_slice(),
                    &principal,
                    &s.csrf,
                    &s.created_at.0,
                    &s.expires_at.0,
                    &s.ended_at.map(|t| t.0),
                ],
            )
            .await?;
        Ok(())
    }

    async fn console_session(&self, digest: &[u8; 32]) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT principal, csrf, created_at, expires_at, ended_at FROM console_sessions WHERE digest = $1",
                &[&digest.as_slice()],
            )
            .await?;
        row.map(|r| {
            Ok(ConsoleSessionRecord {
                digest: *digest,
                principal: principal_from(&get::<String>(&r, 0)?)?,
                csrf: get(&r, 1)?,
                created_at: time(&r, 2)?,
                expires_at: time(&r, 3)?,
                ended_at: opt_time(&r, 4)?,
            })
        })
        .transpose()
    }

    async fn end_console_session(&self, digest: &[u8; 32], at: UnixTime) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE console_sessions SET ended_at = $2 WHERE digest = $1 AND ended_at IS NULL",
                &[&digest.as_slice(), &at.0],
            )
            .await?;
        tx.execute(
            "DELETE FROM console_sessions WHERE COALESCE(ended_at, expires_at) < $1",
            &[&(at.0 - KEEP_ENDED_SECS)],
        )
        .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn insert_console_login(&self, login: &ConsoleLoginRecord, now: UnixTime) -> Result<(), StoreError> {
        let l = login;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM console_logins WHERE expires_at <= $1", &[&now.0]).await?;
        tx.execute(
            "INSERT INTO console_logins (state_digest, issuer, verifier, nonce, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[&l.state_digest.as_slice(), &l.issuer, &l.verifier, &l.nonce, &l.expires_at.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_console_login(
        &self,
        state_digest: &[u8; 32],
        now: UnixTime,
    ) -> Result<Option<ConsoleLoginRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM console_logins WHERE state_digest = $1 \
                 RETURNING state_digest, issuer, verifier, nonce, expires_at",
                &[&state_digest.as_slice()],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let login = ConsoleLoginRecord {
            state_digest: digest_from(&get::<Vec<u8>>(&r, 0)?)?,
            issuer: get(&r, 1)?,
            verifier: get(&r, 2)?,
            nonce: get(&r, 3)?,
            expires_at: time(&r, 4)?,
        };
        Ok((now < login.expires_at).then_some(login))
    }
}
