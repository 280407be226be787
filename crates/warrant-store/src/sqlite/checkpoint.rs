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
//! Copying the log back (a read of every logged page, a write of it into the database
//! file, and a sync of that file) takes milliseconds, and while the writer does it no
//! commit can run: every caller that arrives meanwhile waits for it. So the bulk of the
//! copy is done beside the writer: when a checkpoint is due, the writer hands it to the
//! [`Copier`], a thread with a connection of its own, and goes on committing. Once the
//! copier is done, the writer checkpoints itself, between two batches as before, and
//! copies only the pages logged while the copier ran (a few, and a sync of a few pages:
//! the copier syncs the database file after its copy, since SQLite syncs it only after
//! a copy that reached the end of the log); the log then starts again from its
//! beginning at the next commit. The copier alone
//! never gets there under load: the writer appends while it copies.
//!
//! A checkpoint changes where committed data lives, never whether it is durable: a
//! commit is durable once its log frames are synced, checkpoint or not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

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

/// The thread that copies the log back beside the writer (see the module's
/// documentation), on a connection of its own. Dropping it waits for the thread.
pub(crate) struct Copier {
    // Declared first: dropping it ends the thread's loop before the drop waits for it.
    asks: Option<mpsc::Sender<()>>,
    /// The thread's connection, which a test holds as a long copy would.
    #[cfg(test)]
    conn: Arc<Mutex<Connection>>,
    /// Whether the copy last asked for is over (done, or failed and logged).
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Copier {
    /// Starts the thread that checkpoints on `conn`, a connection of its own to the
    /// writer's database file, and syncs `file` (that database file) after each copy.
    pub(crate) fn start(conn: Connection, file: std::fs::File) -> Result<Self, StoreError> {
        let (asks, asked) = mpsc::channel::<()>();
        let conn = Arc::new(Mutex::new(conn));
        let done = Arc::new(AtomicBool::new(true));
        let (copying, finished) = (Arc::clone(&conn), Arc::clone(&done));
        let thread = std::thread::Builder::new()
            .name("warrant-ckpt".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    match copying.lock() {
                        Ok(c) => match passive(&c) {
                            // SQLite syncs the database file only at the end of a copy
                            // that reached the end of the log, which a copy beside a busy
                            // writer never does: the writer's catch-up would then sync
                            // every page copied here. Synced now, it syncs its own few.
                            Ok(_) => {
                                if let Err(e) = file.sync_data() {
                                    tracing::warn!(error = %e, "cannot sync the database file after a checkpoint; the writer syncs it");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "copying the write-ahead log back failed; the writer copies it")
                            }
                        },
                        Err(_) => tracing::error!("the checkpoint connection's lock is poisoned"),
                    }
                    finished.store(true, Ordering::Release);
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Copier {
            asks: Some(asks),
            #[cfg(test)]
            conn,
            done,
            thread: Some(thread),
        })
    }

    /// Asks the thread for a copy; `false` when it has stopped (the writer then copies).
    fn ask(&self) -> bool {
        self.done.store(false, Ordering::Release);
        let asked = self.asks.as_ref().is_some_and(|asks| asks.send(()).is_ok());
        if !asked {
            self.done.store(true, Ordering::Release);
        }
        asked
    }

    /// Whether the copy last asked for is over.
    fn finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The copier's connection, held by a test as a long copy would hold it.
    #[cfg(test)]
    fn connection(&self) -> Arc<Mutex<Connection>> {
        Arc::clone(&self.conn)
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.asks = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}

/// When the writer checkpoints: every `every` batches, re-estimated at each checkpoint
/// from how many pages the batches since the last one logged; the bulk of each copy by
/// the [`Copier`], when there is one.
pub(crate) struct Pacer {
    since: u64,
    every: u64,
    copier: Option<Copier>,
    /// A copy was asked of the copier and the writer has not caught up since.
    copying: bool,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("since", &self.since).field("every", &self.every).finish_non_exhaustive()
    }
}

impl Pacer {
    /// A pacer that first checkpoints after [`FIRST_EVERY`] batches (about
    /// [`TARGET_FRAMES`] pages of small batches, where SQLite's own default would), then
    /// paces by what it learnt; `copier` copies the bulk of each checkpoint (without one,
    /// the writer copies it all).
    pub(crate) fn new(copier: Option<Copier>) -> Self {
        Pacer { since: 0, every: FIRST_EVERY, copier, copying: false }
    }

    /// After a batch is answered: when a checkpoint is due, asks the copier for it; once
    /// the copier is done, checkpoints on `conn` what was logged meanwhile, so the log
    /// starts again at the next commit.
    pub(crate) fn after_batch(&mut self, conn: &Connection) {
        self.since += 1;
        if self.copying {
            if !self.copier.as_ref().is_none_or(Copier::finished) {
                return;
            }
            self.copying = false;
        } else {
            if self.since < self.every {
                return;
            }
            if self.copier.as_ref().is_some_and(Copier::ask) {
                self.copying = true;
                return;
            }
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
    use rusqlite::Connection;
    use warrant_core::{AgentId, UnixTime};

    use super::{Copier, Pacer, FIRST_EVERY};
    use crate::sqlite::SqliteStore;
    use crate::WarrantStore;

    fn size(p: &std::path::Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    /// The writer does not copy the log back while the copier does: batches go on being
    /// committed and paced while a copy holds the copier (here, its connection held as a
    /// long copy would hold it), and nothing reaches the database file meanwhile. Once
    /// the copier is done, the writer catches up on what was logged since and the log
    /// starts again from its beginning.
    #[test]
    fn the_writer_goes_on_while_the_log_is_copied_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let open = || {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.pragma_update(None, "synchronous", "FULL").unwrap();
            c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
            c
        };
        let writer = open();
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        let file_before = size(&path);
        let mut pacer = Pacer::new(Some(Copier::start(open(), std::fs::File::open(&path).unwrap()).unwrap()));
        let conn = pacer.copier.as_ref().unwrap().connection();
        let held = conn.lock().unwrap();
        let batches = FIRST_EVERY * 3;
        for _ in 0..batches {
            writer.execute("INSERT INTO t (v) VALUES (zeroblob(3000))", []).unwrap();
            pacer.after_batch(&writer);
        }
        assert!(pacer.copying, "a checkpoint was due after {FIRST_EVERY} batches and went to the copier");
        assert_eq!(size(&path), file_before, "the writer copied the log back itself");
        drop(held);
        while !pacer.copier.as_ref().unwrap().finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(size(&path) > file_before, "the copier copied nothing back");
        // The writer's next turn catches up on the pages logged since; the next commit
        // then starts the log again.
        pacer.after_batch(&writer);
        assert!(!pacer.copying);
        writer.execute("INSERT INTO t (v) VALUES (zeroblob(3000))", []).unwrap();
        let logged: i64 = writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap();
        assert!(logged < 10, "the log did not start again: {logged} pages in it");
        let rows: i64 = writer.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, i64::try_from(batches).unwrap() + 1);
    }

    /// Commits never checkpoint the log themselves (so no commit pays for copying it
    /// back), yet the log stays bounded: the writer checkpoints between batches (the
    /// copier beside it), and the data reaches the database file. Commits from several
    /// callers at once race the copies: every one of them is in the file afterwards, and
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
        // A few pages per commit: some 20 000 pages logged in all, by 8 callers at once.
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
        assert_eq!(spent, 5000);
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
