//! `SsfStore` for SQLite: the transmitter's outbox and streams.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, Row};
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

use super::{col, time, to_text, word, SqliteStore};
use crate::records::{RevocationKind, RevocationRecord};
use crate::ssf::{DeliveryMethod, OutboxEvent, OutboxRecord, SsfStore, StreamRecord, MAX_OUTBOX_READ};
use crate::StoreError;

const STREAM_COLS: &str =
    "id, owner, method, endpoint, authorization, audience, events, description, cursor, created_at";

fn stream_row(row: &Row<'_>) -> rusqlite::Result<StreamRecord> {
    let events: String = row.get(6)?;
    Ok(StreamRecord {
        id: row.get(0)?,
        owner: row.get(1)?,
        method: col(row, 2, word::<DeliveryMethod>)?,
        endpoint: row.get(3)?,
        authorization: row.get(4)?,
        audience: row.get(5)?,
        events: events.split(' ').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        description: row.get(7)?,
        cursor: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        created_at: time(row, 9)?,
    })
}

fn optional<T, E>(value: Option<String>, parse: impl FnOnce(String) -> Result<T, E>) -> Option<T> {
    value.and_then(|v| parse(v).ok())
}

/// An outbox row joined with its revocation and its warrant's record.
fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
    let at = time(row, 1)?;
    let jti: Option<String> = row.get(2)?;
    let event = match jti {
        None => OutboxEvent::Verification { state: row.get(3)? },
        Some(jti) => {
            let revocation = RevocationRecord {
                id: row.get(4)?,
                kind: col(row, 5, word::<RevocationKind>)?,
                target: row.get(6)?,
                reason: row.get(7)?,
                at: time(row, 8)?,
            };
            OutboxEvent::Revoked {
                jti: WarrantId::parse(&jti).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
                })?,
                revocation,
                agent: optional(row.get(9)?, AgentId::try_from),
                task: optional(row.get(10)?, TaskId::try_from),
                human: optional(row.get(11)?, HumanId::try_from),
            }
        }
    };
    Ok(OutboxRecord { seq, at, event })
}

#[async_trait]
impl SsfStore for SqliteStore {
    async fn outbox_head(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let head: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM ssf_events", [], |r| r.get(0))?;
            Ok(u64::try_from(head).unwrap_or(0))
        })
        .await
    }

    async fn outbox_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let (stream, after) = (stream.to_owned(), i64::try_from(after).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit.min(MAX_OUTBOX_READ)).unwrap_or(0);
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT e.seq, e.at, e.jti, e.state, r.id, r.kind, r.target, r.reason, r.at, w.agent, w.task, w.human \
                 FROM ssf_events e \
                 LEFT JOIN revocations r ON r.id = e.revocation \
                 LEFT JOIN warrants w ON w.jti = e.jti \
                 WHERE e.seq > ?1 AND (e.stream IS NULL OR e.stream = ?2) \
                   AND (e.jti IS NULL OR r.id IS NOT NULL) \
                 ORDER BY e.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, stream, limit], outbox_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_verification(&self, stream: &str, state: Option<&str>, at: UnixTime) -> Result<u64, StoreError> {
        let (stream, state) = (stream.to_owned(), state.map(str::to_owned));
        self.write(move |c| {
            c.execute("INSERT INTO ssf_events (stream, state, at) VALUES (?1, ?2, ?3)", params![stream, state, at.0])?;
            Ok(u64::try_from(c.last_insert_rowid()).unwrap_or(0))
        })
        .await
    }

    async fn insert_stream(&self, stream: &StreamRecord) -> Result<u64, StoreError> {
        let s = stream.clone();
        let method = to_text(&s.method)?;
        self.write(move |c| {
            // One statement: the cursor is the head at the moment of the insert, so no
            // event falls between what the stream is told it has and what it is sent.
            let inserted = c.execute(
                &format!(
                    "INSERT OR IGNORE INTO ssf_streams ({STREAM_COLS}) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, COALESCE(MAX(seq), 0), ?9 FROM ssf_events"
                ),
                params![
                    s.id,
                    s.owner,
                    method,
                    s.endpoint,
                    s.authorization,
                    s.audience,
                    s.events.join(" "),
                    s.description,
                    s.created_at.0
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("stream `{}` exists", s.id)));
            }
            let cursor: i64 = c.query_row("SELECT cursor FROM ssf_streams WHERE id = ?1", [&s.id], |r| r.get(0))?;
            Ok(u64::try_from(cursor).unwrap_or(0))
        })
        .await
    }

    async fn prune_outbox(&self, older_than: UnixTime) -> Result<u64, StoreError> {
        self.write(move |c| {
            // One statement, so a stream inserted meanwhile is either counted in the
            // smallest cursor or starts after everything deleted.
            let deleted = c.execute(
                "DELETE FROM ssf_events WHERE at < ?1 OR seq <= COALESCE( \
                     (SELECT MIN(cursor) FROM ssf_streams), (SELECT MAX(seq) FROM ssf_events))",
                [older_than.0],
            )?;
            Ok(u64::try_from(deleted).unwrap_or(0))
        })
        .await
    }

    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {STREAM_COLS} FROM ssf_streams WHERE id = ?1"), [id], stream_row)
                .optional()?)
        })
        .await
    }

    async fn list_streams(&self) -> Result<Vec<StreamRecord>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare(&format!("SELECT {STREAM_COLS} FROM ssf_streams ORDER BY created_at, rowid"))?;
            let rows = stmt.query_map([], stream_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let deleted = tx.execute("DELETE FROM ssf_streams WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM ssf_events WHERE stream = ?1", [&id])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn advance_stream(&self, id: &str, cursor: u64) -> Result<bool, StoreError> {
        let (id, cursor) = (id.to_owned(), i64::try_from(cursor).unwrap_or(i64::MAX));
        self.write(move |c| {
            // A row the WHERE matches counts as changed even when its cursor stays.
            let matched =
                c.execute("UPDATE ssf_streams SET cursor = MAX(cursor, ?2) WHERE id = ?1", params![id, cursor])?;
            Ok(matched > 0)
        })
        .await
    }
}
