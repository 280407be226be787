//! WAL checkpoints off the commit path.
//!
//! In WAL mode SQLite appends every commit to the write-ahead log and, by default, the
//! commit that takes the log past 1000 pages also copies the log back into the database
//! file and syncs it (a checkpoint): that one commit, and every caller waiting on it,
//! pays for the copy and a second sync. Under load that is the tail of every latency
//! figure. So the store's connections do not checkpoint when they commit
//! (`wal_autocheckpoint = 0`); a thread of its own with its own connection runs a
//! `PASSIVE` checkpoint every [`INTERVAL`], which copies what the log holds without
//! blocking writers or readers (it stops short of frames a reader still needs and picks
//! them up the next time).
//!
//! A checkpoint changes where committed data lives, never whether it is durable: a
//! commit is durable once its log frames are synced, checkpoint or not. The thread ends
//! with the store (a last `PASSIVE` checkpoint first); SQLite checkpoints again when the
//! last connection closes.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// How often the log is checkpointed.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);

/// Keeps the checkpoint thread alive; dropping the last handle ends it.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    _alive: std::sync::Arc<mpsc::Sender<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the WAL database at `path` on a connection of its own.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (alive, stop) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("warrant-sqlite-checkpoint".into())
            .spawn(move || loop {
                let last = matches!(stop.recv_timeout(INTERVAL), Err(mpsc::RecvTimeoutError::Disconnected));
                if let Err(e) = passive(&conn) {
                    tracing::warn!(error = %e, "a WAL checkpoint failed; retried at the next interval");
                }
                if last {
                    break;
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { _alive: std::sync::Arc::new(alive) })
    }
}

/// One `PASSIVE` checkpoint: returns (frames in the log, frames copied back).
pub(crate) fn passive(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use warrant_core::{AgentId, UnixTime};

    use crate::sqlite::SqliteStore;
    use crate::WarrantStore;

    /// Commits never checkpoint the log themselves (so no commit pays for copying it
    /// back), and the checkpoint thread copies it back on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_by_its_thread_not_by_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteStore::open(&path).unwrap();
        let autocheckpoint: i64 =
            store.write(|c| Ok(c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(autocheckpoint, 0, "the writer's commits must not checkpoint");
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap();
        let before = size();
        let agent = AgentId::parse("agt_checkpoint").unwrap();
        for i in 0..3000 {
            store.spend_assertion(&agent, &format!("j{i}"), UnixTime(1_000_000), UnixTime(1)).await.unwrap();
        }
        // Only a checkpoint moves the new pages from the log into the database file.
        // Within a bound far above the interval, the thread has done it (the bound only
        // caps how long the test waits).
        let started = Instant::now();
        loop {
            if size() > before {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the log was never checkpointed");
            tokio::time::sleep(super::INTERVAL).await;
        }
    }
}
