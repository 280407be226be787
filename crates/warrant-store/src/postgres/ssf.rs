//! `SsfStore` for PostgreSQL: the transmitter's outbox and streams.
//!
//! Every write (an event, a stream, a cursor, a prune) runs under the store's write lock,
//! so outbox events are numbered in commit order: a reader that sees event `n` has
//! already seen every event numbered below it.

use async_trait::async_trait;
use tokio_postgres::Row;
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

use super::{col, get, lock_writes, time, PgStore};
use crate::columns::{to_text, word};
use crate::records::{RevocationKind, RevocationRecord};
use crate::ssf::{DeliveryMethod, OutboxEvent, OutboxRecord, SsfStore, StreamRecord, MAX_OUTBOX_READ};
use crate::StoreError;

/// The sequence number of the next outbox event, for a write transaction holding the
/// write lock (which keeps numbers in commit order): the next value of the column's
/// identity sequence, so a number is never reused, even after the newest events were
/// pruned (a rolled-back write leaves a gap, which readers allow).
pub(super) const NEXT_SEQ: &str = "nextval(pg_get_serial_sequence('ssf_events', 'seq'))";

/// The columns of `ssf_streams`, in [`stream_row`]'s order. `authorization` is a reserved
/// word in PostgreSQL, so the column is always named quoted.
const STREAM_COLS: &str =
    r#"id, owner, method, endpoint, "authorization", audience, events, description, cursor, created_at"#;

fn stream_row(row: &Row) -> Result<StreamRecord, StoreError> {
    let events: String = get(row, 6)?;
    Ok(StreamRecord {
        id: get(row, 0)?,
        owner: get(row, 1)?,
        method: col(row, 2, word::<DeliveryMethod>)?,
        endpoint: get(row, 3)?,
        authorization: get(row, 4)?,
        audience: get(row, 5)?,
        events: events.split(' ').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        description: get(row, 7)?,
        cursor: u64::try_from(get::<i64>(row, 8)?).unwrap_or(0),
        created_at: time(row, 9)?,
    })
}

fn optional<T, E>(value: Option<String>, parse: impl FnOnce(String) -> Result<T, E>) -> Option<T> {
    value.and_then(|v| parse(v).ok())
}

/// An outbox row joined with its revocation and its warrant's record.
fn outbox_row(row: &Row) -> Result<OutboxRecord, StoreError> {
    let seq = u64::try_from(get::<i64>(row, 0)?).unwrap_or(0);
    let at = time(row, 1)?;
    let jti: Option<String> = get(row, 2)?;
    let event = match jti {
        None => OutboxEvent::Verification { state: get(row, 3)? },
        Some(jti) => {
            let revocation = RevocationRecord {
                id: get(row, 4)?,
                kind: col(row, 5, word::<RevocationKind>)?,
                target: get(row, 6)?,
                reason: get(row, 7)?,
                at: time(row, 8)?,
            };
            OutboxEvent::Revoked {
                jti: WarrantId::parse(&jti).map_err(|e| StoreError::Corrupt(format!("column 2: {e}")))?,
                revocation,
                agent: optional(get(row, 9)?, AgentId::try_from),
                task: optional(get(row, 10)?, TaskId::try_from),
                human: optional(get(row, 11)?, HumanId::try_from),
            }
        }
    };
    Ok(OutboxRecord { seq, at, event })
}

#[async_trait]
impl SsfStore for PgStore {
    async fn outbox_head(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT COALESCE(MAX(seq), 0) FROM ssf_events", &[]).await?;
        Ok(u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0))
    }

    async fn outbox_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit.min(MAX_OUTBOX_READ)).unwrap_or(0);
        let client = self.client().await?;
        client
            .query(
                "SELECT e.seq, e.at, e.jti, e.state, r.id, r.kind, r.target, r.reason, r.at, w.agent, w.task, w.human \
                 FROM ssf_events e \
                 LEFT JOIN revocations r ON r.id = e.revocation \
                 LEFT JOIN warrants w ON w.jti = e.jti \
                 WHERE e.seq > $1 AND (e.stream IS NULL OR e.stream = $2) \
                   AND (e.jti IS NULL OR r.id IS NOT NULL) \
                 ORDER BY e.seq LIMIT $3",
                &[&after, &stream, &limit],
            )
            .await?
            .iter()
            .map(outbox_row)
            .collect()
    }

    async fn add_verification(&self, stream: &str, state: Option<&str>, at: UnixTime) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO ssf_events (seq, stream, state, at) SELECT {NEXT_SEQ}, $1::TEXT, $2::TEXT, $3::BIGINT \
                     RETURNING seq"
                ),
                &[&stream, &state, &at.0],
            )
            .await?;
        let seq: i64 = get(&row, 0)?;
        tx.commit().await?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn insert_stream(&self, stream: &StreamRecord) -> Result<u64, StoreError> {
        let s = stream;
        let method = to_text(&s.method)?;
        let events = s.events.join(" ");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        // The cursor is the head at the moment of the insert (no event is added while
        // the write lock is held), so no event falls between what the stream is told it
        // has and what it is sent.
        let row = tx
            .query_opt(
                &format!(
                    "INSERT INTO ssf_streams ({STREAM_COLS}) \
                     SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, $5::TEXT, $6::TEXT, $7::TEXT, $8::TEXT, \
                     COALESCE(MAX(seq), 0), $9::BIGINT FROM ssf_events \
                     ON CONFLICT DO NOTHING RETURNING cursor"
                ),
                &[
                    &s.id,
                    &s.owner,
                    &method,
                    &s.endpoint,
                    &s.authorization,
                    &s.audience,
                    &events,
                    &s.description,
                    &s.created_at.0,
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!("stream `{}` exists", s.id)));
        };
        let cursor: i64 = get(&row, 0)?;
        tx.commit().await?;
        Ok(u64::try_from(cursor).unwrap_or(0))
    }

    async fn prune_outbox(&self, older_than: UnixTime) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        // Under the write lock no stream is inserted meanwhile: the smallest cursor is
        // that of every stream there is.
        let deleted = tx
            .execute(
                "DELETE FROM ssf_events WHERE at < $1 OR seq <= COALESCE( \
                     (SELECT MIN(cursor) FROM ssf_streams), (SELECT MAX(seq) FROM ssf_events))",
                &[&older_than.0],
            )
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {STREAM_COLS} FROM ssf_streams WHERE id = $1"), &[&id]).await?;
        row.as_ref().map(stream_row).transpose()
    }

    async fn list_streams(&self) -> Result<Vec<StreamRecord>, StoreError> {
        let client = self.client().await?;
        client
            .query(&format!("SELECT {STREAM_COLS} FROM ssf_streams ORDER BY created_at, rowid"), &[])
            .await?
            .iter()
            .map(stream_row)
            .collect()
    }

    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let deleted = tx.execute("DELETE FROM ssf_streams WHERE id = $1", &[&id]).await?;
        tx.execute("DELETE FROM ssf_events WHERE stream = $1", &[&id]).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn advance_stream(&self, id: &str, cursor: u64) -> Result<bool, StoreError> {
        let cursor = i64::try_from(cursor).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        // A row the WHERE matches counts as updated even when its cursor stays.
        let matched =
            tx.execute("UPDATE ssf_streams SET cursor = GREATEST(cursor, $2) WHERE id = $1", &[&id, &cursor]).await?;
        tx.commit().await?;
        Ok(matched > 0)
    }
}
