//! WAL checkpoints, paced by the group-commit writer and run after its callers are
//! answered.
//!
//! In WAL mode SQLite appends every commit to the write-ahead log and, by default, the
//! commit that takes the log past 1000 pages also copies the log back into the database
//! file and syncs it (a checkpoint) before it returns: every caller of that commit waits
//! for the copy and a second sync. So no connection of the store checkpoints when it
//! commits (`wal_autocheckpoint = 0`). The group-commit writer, the only connection that
//! writes, runs a `PASSIVE` checkpoint itself after it has answered the callers of a
//! batch, once about [`TARGET_FRAMES`] pages have been logged since the last one. Being
//! the only writer, nothing is appended while it runs, so the checkpoint copies the
//! whole log and the next commit starts the log again from its beginning: the log stays
//! about [`TARGET_FRAMES`] pages long instead of growing without end (a checkpoint from
//! another connection races the writer's appends and never catches up under load).
//!
//! A checkpoint changes where committed data lives, never whether it is durable: a
//! commit is durable once its log frames are synced, checkpoint or not.

use rusqlite::Connection;

use crate::StoreError;

/// About how many log pages are written between two checkpoints.
pub(crate) const TARGET_FRAMES: u64 = 1000;

/// Batches before the first checkpoint: a small batch logs about four pages.
const FIRST_EVERY: u64 = TARGET_FRAMES / 4;

/// The most batches between two checkpoints, whatever their size.
const MAX_EVERY: u64 = 10_000;

/// One `PASSIVE` checkpoint: returns (pages in the log, pages copied back).
pub(crate) fn passive(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?)
}

/// When the writer checkpoints: every `every` batches, re-estimated at each checkpoint
/// from how many pages the batches since the last one logged.
#[derive(Debug)]
pub(crate) struct Pacer {
    since: u64,
    every: u64,
}

impl Pacer {
    /// A pacer that first checkpoints after [`FIRST_EVERY`] batches (about
    /// [`TARGET_FRAMES`] pages of small batches, where SQLite's own default would), then
    /// paces by what it learnt.
    pub(crate) fn new() -> Self {
        Pacer { since: 0, every: FIRST_EVERY }
    }

    /// After a batch is answered: checkpoints on `conn` when it is time.
    pub(crate) fn after_batch(&mut self, conn: &Connection) {
        self.since += 1;
        if self.since < self.every {
            return;
        }
        match passive(conn) {
            Ok((logged, _)) => {
                let per_batch = u64::try_from(logged).unwrap_or(0).div_ceil(self.since).max(1);
                self.every = (TARGET_FRAMES / per_batch).clamp(1, MAX_EVERY);
                self.since = 0;
            }
            Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed; tried again after the next batch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use warrant_core::{AgentId, UnixTime};

    use crate::sqlite::SqliteStore;
    use crate::WarrantStore;

    fn size(p: &std::path::Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits never checkpoint the log themselves (so no commit pays for copying it
    /// back), yet the log stays bounded: the writer checkpoints between batches, and the
    /// data reaches the database file. With commits from several callers at once too,
    /// checkpoints between their batches: every commit is in the file afterwards, and
    /// the file is sound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_stays_bounded_and_no_commit_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteStore::open(&path).unwrap();
        let autocheckpoint: i64 =
            store.write(|c| Ok(c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(autocheckpoint, 0, "the writer's commits must not checkpoint");
        let before = size(&path);
        let agent = AgentId::parse("agt_checkpoint").unwrap();
        // One commit each, a few pages each: some 20 000 pages logged in all.
        for i in 0..5000 {
            store.spend_assertion(&agent, &format!("j{i}"), UnixTime(1_000_000), UnixTime(1)).await.unwrap();
        }
        // Then 8 callers at once, whose writes share batches.
        let callers: Vec<_> = (0..8)
            .map(|caller| {
                let store = store.clone();
                tokio::spawn(async move {
                    let agent = AgentId::parse(&format!("agt_checkpoint{caller}")).unwrap();
                    for i in 0..625 {
                        store
                            .spend_assertion(&agent, &format!("j{i}"), UnixTime(1_000_000), UnixTime(1))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let wal = size(&dir.path().join("c.db-wal"));
        assert!(wal < 16 << 20, "the log grew to {wal} bytes: it is never checkpointed");
        assert!(size(&path) > before, "nothing reached the database file");
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let (spent, check) = reopened
            .run(|c| {
                let spent: i64 = c.query_row("SELECT COUNT(*) FROM spent_assertions", [], |r| r.get(0))?;
                let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                Ok((spent, check))
            })
            .await
            .unwrap();
        assert_eq!(spent, 10_000);
        assert_eq!(check, "ok");
    }

    /// The writer keeps its savepoints' journals in memory (`temp_store = MEMORY`): a
    /// write's journal that outgrew 64 KiB went to a temporary file, one system call per
    /// page it copied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_keeps_its_savepoint_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let temp_store: i64 = store.write(|c| Ok(c.query_row("PRAGMA temp_store", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(temp_store, 2, "0 is the build's default (a file), 2 memory");
    }
}
