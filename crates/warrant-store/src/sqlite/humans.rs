//! `HumanStore` for SQLite: humans and their sessions.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use warrant_core::{FederatedIdentity, Human, HumanId, HumanStatus, Scope, UnixTime};

use super::{col, json, time, to_text, word, SqliteStore};
use crate::records::{SessionPurpose, SessionRecord};
use crate::{HumanStore, StoreError};

const HUMAN_COLS: &str =
    "id, name, email, entitlements, status, created_at, roles, external_id, idp_issuer, idp_subject";

/// One human by id, on `c`.
pub(super) fn human(c: &Connection, id: &HumanId) -> Result<Option<Human>, StoreError> {
    Ok(c.prepare_cached(&format!("SELECT {HUMAN_COLS} FROM humans WHERE id = ?1"))?
        .query_row([id.as_str()], human_row)
        .optional()?)
}

fn human_row(row: &Row<'_>) -> rusqlite::Result<Human> {
    Ok(Human {
        id: col(row, 0, HumanId::try_from)?,
        name: row.get(1)?,
        email: row.get(2)?,
        entitlements: col(row, 3, json::<Scope>)?,
        status: col(row, 4, word::<HumanStatus>)?,
        created_at: time(row, 5)?,
        roles: col(row, 6, json::<BTreeSet<String>>)?,
        external_id: row.get(7)?,
        identity: match (row.get::<_, Option<String>>(8)?, row.get::<_, Option<String>>(9)?) {
            (Some(issuer), Some(subject)) => Some(FederatedIdentity { issuer, subject }),
            _ => None,
        },
    })
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        jti: row.get(0)?,
        human: col(row, 1, |s| HumanId::parse(&s))?,
        purpose: col(row, 2, word::<SessionPurpose>)?,
        issued_at: time(row, 3)?,
        expires_at: time(row, 4)?,
        revoked_at: row.get::<_, Option<i64>>(5)?.map(UnixTime),
    })
}

#[async_trait]
impl HumanStore for SqliteStore {
    async fn insert_human(&self, human: &Human) -> Result<(), StoreError> {
        let h = human.clone();
        let entitlements = serde_json::to_string(&h.entitlements).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let status = to_text(&h.status)?;
        let roles = serde_json::to_string(&h.roles).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (idp_issuer, idp_subject) = match &h.identity {
            Some(i) => (Some(i.issuer.clone()), Some(i.subject.clone())),
            None => (None, None),
        };
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO humans (id, name, email, entitlements, status, created_at, roles, external_id, \
                 idp_issuer, idp_subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                h.id.as_str(),
                h.name,
                h.email,
                entitlements,
                status,
                h.created_at.0,
                roles,
                h.external_id,
                idp_issuer,
                idp_subject
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
        let id = id.clone();
        self.run_point(move |c| human(c, &id)).await
    }

    async fn human_by_email(&self, email: &str) -> Result<Option<Human>, StoreError> {
        let email = email.to_owned();
        self.run(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {HUMAN_COLS} FROM humans WHERE email = ?1"))?
                .query_row([email], human_row)
                .optional()?)
        })
        .await
    }

    async fn human_by_identity(&self, identity: &FederatedIdentity) -> Result<Option<Human>, StoreError> {
        let FederatedIdentity { issuer, subject } = identity.clone();
        self.run(move |c| {
            let sql = format!("SELECT {HUMAN_COLS} FROM humans WHERE idp_issuer = ?1 AND idp_subject = ?2");
            Ok(c.prepare_cached(&sql)?.query_row(params![issuer, subject], human_row).optional()?)
        })
        .await
    }

    async fn set_human_entitlements(&self, id: &HumanId, entitlements: &Scope) -> Result<bool, StoreError> {
        let id = id.clone();
        let text = serde_json::to_string(entitlements).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE humans SET entitlements = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), text])?
                > 0)
        })
        .await
    }

    async fn list_humans(&self) -> Result<Vec<Human>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {HUMAN_COLS} FROM humans ORDER BY created_at, id"))?;
            let rows = stmt.query_map([], human_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_human_status(&self, id: &HumanId, status: HumanStatus) -> Result<bool, StoreError> {
        let id = id.clone();
        let status = to_text(&status)?;
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE humans SET status = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), status])?
                > 0)
        })
        .await
    }

    async fn set_human_roles(&self, id: &HumanId, roles: &BTreeSet<String>) -> Result<bool, StoreError> {
        let id = id.clone();
        let roles = serde_json::to_string(roles).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE humans SET roles = ?2 WHERE id = ?1")?.execute(params![id.as_str(), roles])?
                > 0)
        })
        .await
    }

    async fn record_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let s = session.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO sessions (jti, human, purpose, issued_at, expires_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.jti,
                s.human.as_str(),
                s.purpose.as_str(),
                s.issued_at.0,
                s.expires_at.0,
                s.revoked_at.map(|t| t.0)
            ])?;
            // Expired sessions need no record: their tokens no longer verify.
            c.prepare_cached("DELETE FROM sessions WHERE expires_at < ?1")?.execute([s.issued_at.0])?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError> {
        let jti = jti.to_owned();
        self.run_point(move |c| {
            Ok(c.prepare_cached(
                "SELECT jti, human, purpose, issued_at, expires_at, revoked_at FROM sessions WHERE jti = ?1",
            )?
            .query_row([jti], session_row)
            .optional()?)
        })
        .await
    }

    async fn revoke_sessions(&self, human: &HumanId, now: UnixTime) -> Result<u64, StoreError> {
        let human = human.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached("UPDATE sessions SET revoked_at = ?2 WHERE human = ?1 AND revoked_at IS NULL")?
                .execute(params![human.as_str(), now.0])?;
            Ok(n as u64)
        })
        .await
    }
}
