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

/// One `PASSIVE` checkpoint: returns how many pages the log held, or `None` when
/// another connection's checkpoint holds the log (SQLite then answers "busy", with -1
/// pages, and copies nothing).
pub(crate) fn passive(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let (busy, logged) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(u64::try_from(logged).ok().filter(|_| busy == 0))
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
            Ok(Some(logged)) => {
                let per_batch = logged.div_ceil(self.since).max(1);
                self.every = (TARGET_FRAMES / per_batch).clamp(1, MAX_EVERY);
                self.since = 0;
            }
            // Not done, so not counted: counting it would pace the next try as after an
            // empty log, a thousand batches away, while the log grows.
            Ok(None) => {
                tracing::debug!("another connection is checkpointing the WAL; tried again after the next batch")
            }
            Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed; tried again after the next batch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use warrant_core::{AgentId, UnixTime};

    use super::{passive, Pacer, FIRST_EVERY};
    use crate::sqlite::SqliteStore;
    use crate::WarrantStore;

    /// A checkpoint that finds another connection's checkpoint holding the log copies
    /// nothing and is not counted as done: the writer tries again after its next batch
    /// (counted, the next try waited another thousand batches while the log grew). Here
    /// the other checkpoint is a `TRUNCATE` waiting for a reader that holds an older
    /// snapshot, as `seal_keys`'s does while reads go on.
    #[test]
    fn a_checkpoint_found_busy_is_tried_again_after_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let open = || {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
            c
        };
        let writer = open();
        writer.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);").unwrap();
        let reader = open();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let truncate = || {
            let path = path.clone();
            std::thread::spawn(move || {
                let c = Connection::open(&path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(60)).unwrap();
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap()
            })
        };
        // Until the other checkpoint holds the log (it waits for the reader meanwhile).
        let mut truncating = truncate();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(1));
            if passive(&writer).unwrap().is_none() {
                break;
            }
            if truncating.is_finished() {
                // It found this probe's checkpoint holding the log and gave up at once.
                assert_eq!(truncating.join().unwrap(), 1, "the TRUNCATE checkpoint did not wait for the reader");
                truncating = truncate();
            }
        }
        let mut pacer = Pacer::new();
        pacer.since = FIRST_EVERY - 1;
        pacer.after_batch(&writer);
        assert_eq!((pacer.since, pacer.every), (FIRST_EVERY, FIRST_EVERY), "a busy checkpoint was counted as done");
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(truncating.join().unwrap(), 0, "the TRUNCATE checkpoint completed once the reader let go");
        pacer.after_batch(&writer);
        assert_eq!(pacer.since, 0, "the next batch's checkpoint is done and counted");
    }

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
