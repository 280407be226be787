//! `HumanStore` for PostgreSQL: humans and their sessions.

use std::collections::BTreeSet;

use async_trait::async_trait;
use tokio_postgres::Row;
use warrant_core::{FederatedIdentity, Human, HumanId, HumanStatus, Scope, UnixTime};

use super::{col, get, lock_writes, opt_time, time, PgStore};
use crate::columns::{json, to_text, word};
use crate::records::{SessionPurpose, SessionRecord};
use crate::{HumanStore, StoreError};

const HUMAN_COLS: &str =
    "id, name, email, entitlements, status, created_at, roles, external_id, idp_issuer, idp_subject";

const SESSION_COLS: &str = "jti, human, purpose, issued_at, expires_at, revoked_at";

fn human_row(row: &Row) -> Result<Human, StoreError> {
    Ok(Human {
        id: col(row, 0, HumanId::try_from)?,
        name: get(row, 1)?,
        email: get(row, 2)?,
        entitlements: col(row, 3, json::<Scope>)?,
        status: col(row, 4, word::<HumanStatus>)?,
        created_at: time(row, 5)?,
        roles: col(row, 6, json::<BTreeSet<String>>)?,
        external_id: get(row, 7)?,
        identity: match (get::<Option<String>>(row, 8)?, get::<Option<String>>(row, 9)?) {
            (Some(issuer), Some(subject)) => Some(FederatedIdentity { issuer, subject }),
            _ => None,
        },
    })
}

fn session_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        jti: get(row, 0)?,
        human: col(row, 1, |s| HumanId::parse(&s))?,
        purpose: col(row, 2, word::<SessionPurpose>)?,
        issued_at: time(row, 3)?,
        expires_at: time(row, 4)?,
        revoked_at: opt_time(row, 5)?,
    })
}

/// `value` as JSON text, as the SQLite store writes it.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Sets one text column (`column`, a name from this file, never input) of human `id`
/// under the write lock; whether such a human exists.
async fn update_human(store: &PgStore, id: &HumanId, column: &str, value: &str) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    lock_writes(&tx).await?;
    let n = tx.execute(&format!("UPDATE humans SET {column} = $2 WHERE id = $1"), &[&id.as_str(), &value]).await?;
    tx.commit().await?;
    Ok(n > 0)
}

#[async_trait]
impl HumanStore for PgStore {
    async fn insert_human(&self, human: &Human) -> Result<(), StoreError> {
        let h = human;
        let entitlements = json_text(&h.entitlements)?;
        let status = to_text(&h.status)?;
        let roles = json_text(&h.roles)?;
        let (idp_issuer, idp_subject) = match &h.identity {
            Some(i) => (Some(i.issuer.as_str()), Some(i.subject.as_str())),
            None => (None, None),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            &format!("INSERT INTO humans ({HUMAN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            &[
                &h.id.as_str(),
                &h.name,
                &h.email,
                &entitlements,
                &status,
                &h.created_at.0,
                &roles,
                &h.external_id,
                &idp_issuer,
                &idp_subject,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {HUMAN_COLS} FROM humans WHERE id = $1"), &[&id.as_str()]).await?;
        row.as_ref().map(human_row).transpose()
    }

    async fn human_by_email(&self, email: &str) -> Result<Option<Human>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {HUMAN_COLS} FROM humans WHERE email = $1"), &[&email]).await?;
        row.as_ref().map(human_row).transpose()
    }

    async fn human_by_identity(&self, identity: &FederatedIdentity) -> Result<Option<Human>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {HUMAN_COLS} FROM humans WHERE idp_issuer = $1 AND idp_subject = $2");
        let row = client.query_opt(&sql, &[&identity.issuer, &identity.subject]).await?;
        row.as_ref().map(human_row).transpose()
    }

    async fn set_human_entitlements(&self, id: &HumanId, entitlements: &Scope) -> Result<bool, StoreError> {
        let text = json_text(entitlements)?;
        update_human(self, id, "entitlements", &text).await
    }

    async fn list_humans(&self) -> Result<Vec<Human>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {HUMAN_COLS} FROM humans ORDER BY created_at, id COLLATE \"C\""), &[])
            .await?;
        rows.iter().map(human_row).collect()
    }

    async fn set_human_status(&self, id: &HumanId, status: HumanStatus) -> Result<bool, StoreError> {
        let status = to_text(&status)?;
        update_human(self, id, "status", &status).await
    }

    async fn set_human_roles(&self, id: &HumanId, roles: &BTreeSet<String>) -> Result<bool, StoreError> {
        let roles = json_text(roles)?;
        update_human(self, id, "roles", &roles).await
    }

    async fn record_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let s = session;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        tx.execute(
            &format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &s.jti,
                &s.human.as_str(),
                &s.purpose.as_str(),
                &s.issued_at.0,
                &s.expires_at.0,
                &s.revoked_at.map(|t| t.0),
            ],
        )
        .await?;
        // Expired sessions need no record: their tokens no longer verify.
        tx.execute("DELETE FROM sessions WHERE expires_at < $1", &[&s.issued_at.0]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {SESSION_COLS} FROM sessions WHERE jti = $1"), &[&jti]).await?;
        row.as_ref().map(session_row).transpose()
    }

    async fn revoke_sessions(&self, human: &HumanId, now: UnixTime) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let n = tx
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE human = $1 AND revoked_at IS NULL",
                &[&human.as_str(), &now.0],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}
