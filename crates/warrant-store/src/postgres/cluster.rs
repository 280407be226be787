//! The change feed on PostgreSQL: the log `cluster_changes`, filled by triggers in the
//! writing transaction (migration 2), announced on the channel `warrant_changes`.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::AsyncMessage;
use warrant_core::govern::shadow::{within_subject_bound, OVERFLOW_SUBJECT};
use warrant_core::govern::{ShadowActivity, ShadowBatch};
use warrant_core::UnixTime;

use super::{get, get_u64, lock_writes, to_i64, PgStore};
use crate::cluster::{Change, ChangeBatch, ChangeKind, ChangeListener, ChangeStore, LeaderConnection, Leadership};
use crate::StoreError;

/// The notification channel the triggers announce on.
const CHANNEL: &str = "warrant_changes";
/// The advisory lock the leader of the background work holds on a connection of its own.
const LEADER_LOCK: i64 = 0x5741_5252_414e_5404;
/// How long the leader's connection has to answer before leadership counts as lost.
const LEADER_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The leader's own connection, holding [`LEADER_LOCK`].
struct PgLeader(deadpool_postgres::ClientWrapper);

#[async_trait]
impl LeaderConnection for PgLeader {
    async fn alive(&self) -> bool {
        matches!(tokio::time::timeout(LEADER_CHECK, self.0.simple_query("SELECT 1")).await, Ok(Ok(_)))
    }
}

#[async_trait]
impl ChangeStore for PgStore {
    fn shared(&self) -> bool {
        true
    }

    async fn change_head(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT COALESCE(MAX(seq), 0) FROM cluster_changes", &[]).await?;
        get_u64(&row, 0)
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeBatch, StoreError> {
        let client = self.client().await?;
        // One statement, so one snapshot: the horizon and the changes agree.
        let statement = client
            .prepare_cached(
                "SELECT f.pruned_through, c.seq, c.kind, c.subject FROM cluster_feed f \
                 LEFT JOIN LATERAL (SELECT seq, kind, subject FROM cluster_changes \
                 WHERE seq > $1 ORDER BY seq LIMIT $2) c ON TRUE ORDER BY c.seq",
            )
            .await?;
        let limit = to_i64(u64::try_from(limit).unwrap_or(u64::MAX))?;
        let rows = client.query(&statement, &[&to_i64(after)?, &limit]).await?;
        let mut batch = ChangeBatch::default();
        for row in &rows {
            batch.pruned_through = get_u64(row, 0)?;
            let seq: Option<i64> = super::get(row, 1)?;
            let Some(seq) = seq else { continue };
            let kind: String = super::get(row, 2)?;
            let kind = ChangeKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("cluster_changes.kind: unknown kind `{kind}`")))?;
            let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt("cluster_changes.seq: negative".into()))?;
            batch.changes.push(Change { seq, kind, subject: super::get(row, 3)? });
        }
        Ok(batch)
    }

    async fn listen_changes(&self) -> Result<ChangeListener, StoreError> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
        let (announce, announcements) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            // Drives the connection (the LISTEN below needs it) and turns every
            // notification into an announcement; ends when the connection does.
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        // Full: an announcement is already waiting, which covers this one.
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = announce.try_send(()) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %StoreError::from(e), "the change feed's connection failed");
                        return;
                    }
                }
            }
        });
        // A failure here drops the task's handle only; the connection ends with the client.
        let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
        if let Err(e) = listening {
            task.abort();
            return Err(e.into());
        }
        // The listener keeps the client: dropping it would close the connection.
        Ok(ChangeListener::new(announcements, task, Box::new(client)))
    }

    async fn lead(&self) -> Result<Option<Leadership>, StoreError> {
        let client = deadpool_postgres::Object::take(self.client().await?);
        let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await?;
        let locked: bool = super::get(&row, 0)?;
        Ok(locked.then(|| Leadership::on(Box::new(PgLeader(client)))))
    }

    async fn heartbeat(&self, id: &str, within_secs: u64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // No write lock: nothing here is ordered against other writes.
        client
            .execute(
                "INSERT INTO cluster_members (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                &[&id],
            )
            .await?;
        client.execute("DELETE FROM cluster_members WHERE seen_at < now() - interval '1 hour'", &[]).await?;
        let within = f64::from(u32::try_from(within_secs).unwrap_or(u32::MAX));
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM cluster_members WHERE seen_at >= now() - make_interval(secs => $1)",
                &[&within],
            )
            .await?;
        get_u64(&row, 0).map(|n| n.max(1))
    }

    async fn spend_proof(&self, jkt: &str, jti: &str, exp: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
        self.use_once("spent_proofs", "jkt", jkt, jti, exp, now).await
    }

    async fn claim_set(&self, issuer: &str, jti: &str, exp: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
        self.use_once("received_sets", "issuer", issuer, jti, exp, now).await
    }

    async fn release_set(&self, issuer: &str, jti: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM received_sets WHERE issuer = $1 AND jti = $2", &[&issuer, &jti]).await?;
        Ok(())
    }

    async fn merge_shadow(&self, batch: &ShadowBatch) -> Result<(), StoreError> {
        if batch.counted.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Under the write lock: two servers adding to one subject never lose a count.
        lock_writes(&tx).await?;
        let id = batch.id.to_string();
        let added = tx.execute("INSERT INTO shadow_merges (batch) VALUES ($1) ON CONFLICT DO NOTHING", &[&id]).await?;
        if added == 0 {
            // Already added: its write committed and the answer was lost.
            tx.commit().await?;
            return Ok(());
        }
        tx.execute("DELETE FROM shadow_merges WHERE merged_at < now() - interval '1 day'", &[]).await?;
        let mut asked: Vec<&str> = batch.counted.iter().map(|(subject, _)| subject.as_str()).collect();
        asked.push(OVERFLOW_SUBJECT);
        asked.sort_unstable();
        asked.dedup();
        let stored = stored_shadow(&tx, &asked).await?;
        let count = get_u64(&tx.query_one("SELECT COUNT(*) FROM shadow_activity", &[]).await?, 0)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let unique = within_subject_bound(&batch.counted, |subject| stored.contains_key(subject), count);
        let mut merged = Vec::with_capacity(unique.len());
        for (subject, seen) in unique {
            // The stored counts are the earlier ones: what this server counted is added to
            // them, so what was claimed first stays in the samples.
            let activity = match stored.get(&subject) {
                Some(Ok(earlier)) => {
                    let mut earlier = earlier.clone();
                    earlier.merge(&seen);
                    earlier
                }
                Some(Err(e)) => {
                    tracing::warn!(subject = %subject, error = %e, "stored shadow activity is unreadable; replacing it");
                    seen
                }
                None => seen,
            };
            merged.push((subject, activity));
        }
        write_shadow(&tx, &merged, Mark::Counted).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn shadow_activity(
        &self,
        quiet_through: UnixTime,
        recorded: &[(String, ShadowActivity)],
    ) -> Result<Vec<(String, ShadowActivity)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        if !recorded.is_empty() {
            let asked: Vec<&str> = recorded.iter().map(|(subject, _)| subject.as_str()).collect();
            let stored = stored_shadow(&tx, &asked).await?;
            let mut missing = Vec::new();
            for (subject, finding) in recorded {
                // The finding's counts are earlier than a count that began after them, and
                // are added to it; a count that holds them (it began no later) stands.
                let activity = match stored.get(subject) {
                    None => finding.clone(),
                    Some(Ok(since)) if finding.first_seen < since.first_seen => {
                        let mut merged = finding.clone();
                        merged.merge(since);
                        merged
                    }
                    Some(_) => continue,
                };
                missing.push((subject.clone(), activity));
            }
            write_shadow(&tx, &missing, Mark::Findings).await?;
        }
        tx.execute("DELETE FROM shadow_activity WHERE reported AND last_seen <= $1", &[&quiet_through.0]).await?;
        let rows =
            tx.query("SELECT subject, activity FROM shadow_activity ORDER BY subject COLLATE \"C\"", &[]).await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (subject, text): (String, String) = (get(row, 0)?, get(row, 1)?);
            // One unreadable row (written by a later build, say) must not stop the sweep.
            match serde_json::from_str(&text) {
                Ok(activity) => out.push((subject, activity)),
                Err(e) => tracing::warn!(subject = %subject, error = %e, "skipping unreadable shadow activity"),
            }
        }
        Ok(out)
    }

    async fn shadow_reported(&self, reported: &[(String, u64)]) -> Result<(), StoreError> {
        if reported.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let mark =
            tx.prepare("UPDATE shadow_activity SET reported = TRUE WHERE subject = $1 AND occurrences = $2").await?;
        for (subject, occurrences) in reported {
            tx.execute(&mark, &[subject, &to_i64(*occurrences)?]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn admin_token_digest(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT token_sha256 FROM cluster_admin", &[]).await?;
        row.map(|row| digest_of(&row)).transpose()
    }

    async fn claim_admin_token(&self, digest: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let client = self.client().await?;
        // One row at most (its key is always TRUE): the first insert wins.
        client
            .execute(
                "INSERT INTO cluster_admin (token_sha256) VALUES ($1) ON CONFLICT (one) DO NOTHING",
                &[&digest.as_slice()],
            )
            .await?;
        let row = client.query_one("SELECT token_sha256 FROM cluster_admin", &[]).await?;
        digest_of(&row)
    }

    async fn prune_changes(&self, keep_secs: u64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let keep = f64::from(u32::try_from(keep_secs).unwrap_or(u32::MAX));
        let row = tx
            .query_one(
                "WITH gone AS (DELETE FROM cluster_changes WHERE at < now() - make_interval(secs => $1) \
                 RETURNING seq) SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM gone",
                &[&keep],
            )
            .await?;
        let (count, through) = (get_u64(&row, 0)?, get_u64(&row, 1)?);
        if through > 0 {
            tx.execute("UPDATE cluster_feed SET pruned_through = GREATEST(pruned_through, $1)", &[&to_i64(through)?])
                .await?;
        }
        tx.commit().await?;
        Ok(count)
    }
}

impl PgStore {
    /// Records `(owner, jti)` in `table` (whose owner column is `owner_col`) until `exp`,
    /// forgetting rows expired at `now`: `false` when it was there already. No write lock:
    /// the primary key alone decides who was first. The names are this file's constants.
    async fn use_once(
        &self,
        table: &str,
        owner_col: &str,
        owner: &str,
        jti: &str,
        exp: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client.execute(&format!("DELETE FROM {table} WHERE exp < $1"), &[&now.0]).await?;
        let inserted = client
            .execute(
                &format!("INSERT INTO {table} ({owner_col}, jti, exp) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
                &[&owner, &jti, &exp.0],
            )
            .await?;
        Ok(inserted == 1)
    }
}

/// The stored admin token digest of `row`'s first column.
fn digest_of(row: &tokio_postgres::Row) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = super::get(row, 0)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt("cluster_admin.token_sha256 is not 32 bytes".into()))
}

/// The stored shadow activity of `subjects`, by subject: each read back, or why it could
/// not be (written by a later build, say).
async fn stored_shadow(
    tx: &tokio_postgres::Transaction<'_>,
    subjects: &[&str],
) -> Result<HashMap<String, Result<ShadowActivity, serde_json::Error>>, StoreError> {
    let rows = tx.query("SELECT subject, activity FROM shadow_activity WHERE subject = ANY($1)", &[&subjects]).await?;
    rows.iter()
        .map(|row| {
            let text: String = get(row, 1)?;
            Ok((get(row, 0)?, serde_json::from_str(&text)))
        })
        .collect()
}

/// How [`write_shadow`] marks what it writes.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// New occurrences: unreported, stored anew or added to a count.
    Counted,
    /// An open finding's counts: reported when stored anew (its finding is open); added to a
    /// count, that count keeps its mark.
    Findings,
}

/// Stores each of `counts` by subject, replacing a stored count, marked as `mark` says.
async fn write_shadow(
    tx: &tokio_postgres::Transaction<'_>,
    counts: &[(String, ShadowActivity)],
    mark: Mark,
) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    let (mut subjects, mut texts, mut occurrences, mut last_seen) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (subject, activity) in counts {
        subjects.push(subject.as_str());
        texts.push(serde_json::to_string(activity).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        occurrences.push(to_i64(activity.occurrences)?);
        last_seen.push(activity.last_seen.0);
    }
    let statement = match mark {
        Mark::Counted => {
            "INSERT INTO shadow_activity (subject, activity, occurrences, last_seen, reported) \
             SELECT subject, activity, occurrences, last_seen, FALSE \
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS t(subject, activity, occurrences, last_seen) \
             ON CONFLICT (subject) DO UPDATE SET activity = EXCLUDED.activity, \
             occurrences = EXCLUDED.occurrences, last_seen = EXCLUDED.last_seen, reported = FALSE"
        }
        Mark::Findings => {
            "INSERT INTO shadow_activity (subject, activity, occurrences, last_seen, reported) \
             SELECT subject, activity, occurrences, last_seen, TRUE \
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS t(subject, activity, occurrences, last_seen) \
             ON CONFLICT (subject) DO UPDATE SET activity = EXCLUDED.activity, \
             occurrences = EXCLUDED.occurrences, last_seen = EXCLUDED.last_seen"
        }
    };
    tx.execute(statement, &[&subjects, &texts, &occurrences, &last_seen]).await?;
    Ok(())
}
