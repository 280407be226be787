//! Group commit for the writes on the hot paths (issuance, revocation, the audit log).
//!
//! SQLite makes a transaction durable with one `fsync` of its write-ahead log, whatever
//! the transaction holds. Committing each write on its own makes every mint, every
//! revocation and every audit batch pay that sync in turn, one after the other. The
//! [`Committer`] is one thread that owns a write connection: it takes the first waiting
//! write, drains every other already queued (up to [`MAX_BATCH`]), runs them in order in
//! one `BEGIN IMMEDIATE` transaction, each inside a savepoint of its own, commits once,
//! and only then answers each caller. So:
//!
//! - a write is answered only once the transaction that holds it is durable ("recorded
//!   before it is returned" is unchanged);
//! - a write that fails (a conflict, a refused issuance) is rolled back to its savepoint
//!   and answered with its own error; the others of the batch are unaffected;
//! - a failed commit (or a savepoint that cannot be rolled back) answers every write of
//!   the batch with the error, and nothing of the batch is on disk;
//! - writes apply in the order they were queued, one at a time, so the checks a write
//!   makes inside its savepoint (a parent revoked, an assertion already spent) see every
//!   write before it, committed or in the same batch, exactly as one transaction per
//!   write would.
//!
//! The same thread keeps the audit log's unindexed tail short (see `audit.rs`): a batch
//! that finds [`super::audit::SETTLE_ROWS`] records waiting moves them into the indexed
//! table inside its own transaction, before its writes, so the move shares the batch's
//! sync; after [`IDLE_SETTLE`] without a write, the whole tail is moved in a transaction
//! of its own, and again when the writer stops. A move that fails is rolled back alone
//! (the records stay in the tail, as durable and as readable) and tried again later: by
//! the idle writer, and by a batch only after [`SETTLE_BACKOFF_BATCHES`] batches without.
//!
//! The thread ends when the last [`Committer`] handle is dropped, and that drop waits for
//! it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::priority::{WriterNice, WriterPriority};
use crate::StoreError;

/// The most writes committed in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// How long the writer waits, idle, before it moves the audit tail on its own.
pub(crate) const IDLE_SETTLE: Duration = Duration::from_millis(200);

/// After a move of the audit tail failed inside a batch, the batches that skip the move
/// before one tries again: a move that keeps failing (the indexed table unwritable while
/// the tail is not) is not copied and rolled back by every batch. Idle moves go on.
pub(crate) const SETTLE_BACKOFF_BATCHES: u64 = 1024;

/// One queued write: runs inside the batch's transaction, then learns how the commit went.
trait Write: Send {
    /// Runs the write on `c`, inside its savepoint; `true` when it succeeded (its savepoint
    /// is released), `false` when it failed (its savepoint is rolled back).
    fn apply(&mut self, c: &Connection) -> bool;
    /// Answers the caller once the batch's commit is known (`commit` is its error, if any).
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A write and the channel its caller waits on.
struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, c: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| work(c))) {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Backend("a storage write panicked".into())),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
            // The write's own failure is its answer (it was rolled back either way).
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::Backend("the write was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

type Job = Box<dyn Write>;

/// The group-commit writer of one SQLite database. Cheap to clone; every clone feeds the
/// same thread.
#[derive(Clone)]
pub(crate) struct Committer {
    // Declared before `_thread`: the last clone drops its sender (which ends the thread's
    // loop) before it waits for the thread.
    queue: mpsc::Sender<Job>,
    counts: Arc<Counts>,
    /// What the thread reported as it started: its priority.
    started: Arc<Started>,
    /// Held for its drop only.
    _thread: Arc<Stopping>,
}

/// What the writer thread reports as it starts: what became of the priority it asked
/// for, and the nice value it then runs at (when it could read it).
struct Started {
    priority: WriterPriority,
    nice: Option<i32>,
}

/// The writer thread, waited for when the last [`Committer`] is dropped: its last move of
/// the audit tail is done, and its connection closed, when the store's drop returns.
struct Stopping(Option<std::thread::JoinHandle<()>>);

impl Drop for Stopping {
    fn drop(&mut self) {
        let Some(handle) = self.0.take() else { return };
        // Never from the writer itself (a write that held the last handle).
        if handle.thread().id() != std::thread::current().id() && handle.join().is_err() {
            tracing::error!("the storage writer panicked");
        }
    }
}

/// How much the writer has done, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Writes queued since start.
    pub(crate) queued: AtomicU64,
    /// Transactions committed (or attempted) since start.
    pub(crate) batches: AtomicU64,
    /// Moves of the audit tail inside a batch that failed (and were rolled back).
    pub(crate) failed_moves: AtomicU64,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the thread that commits on `conn` (a connection of its own for a database
    /// file; the store's one connection for an in-memory database, which no second
    /// connection can open).
    /// `checkpoints`: whether it also checkpoints the write-ahead log (see
    /// [`super::checkpoint`]; a database file, whose connections never do it on commit).
    /// `nice`: the priority the thread asks for as it starts (see [`super::priority`]).
    pub(crate) fn start(conn: Arc<Mutex<Connection>>, checkpoints: bool, nice: WriterNice) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let (report, reported) = mpsc::sync_channel(1);
        let counts = Arc::new(Counts::default());
        let counted = Arc::clone(&counts);
        let handle = std::thread::Builder::new()
            .name("warrant-sqlite-commit".into())
            .spawn(move || {
                let priority = super::priority::raise_this_thread(nice);
                let _ = report.send(Started { priority, nice: super::priority::this_thread_nice() });
                run(&conn, &jobs, &counted, checkpoints.then(super::checkpoint::Pacer::new))
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the storage writer: {e}")))?;
        let thread = Arc::new(Stopping(Some(handle)));
        let started =
            reported.recv().map_err(|_| StoreError::Backend("the storage writer stopped as it started".into()))?;
        Ok(Committer { queue, counts, started: Arc::new(started), _thread: thread })
    }

    /// What became of the priority the writer thread asked for.
    pub(crate) fn priority(&self) -> &WriterPriority {
        &self.started.priority
    }

    /// The nice value the writer thread runs at, read by it once it had asked (`None`
    /// off Linux, or when it could not be read).
    pub(crate) fn nice(&self) -> Option<i32> {
        self.started.nice
    }

    /// The writer's counters.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Queues `work` for the next group commit and waits until the transaction that holds
    /// it is durable. `work` runs inside a transaction (and a savepoint) already open: it
    /// must not begin, commit or roll back one itself.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending { work: Some(work), outcome: None, reply });
        self.queue.send(job).map_err(|_| StoreError::Backend("the storage writer has stopped".into()))?;
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| StoreError::Backend("the storage writer stopped before answering".into()))?
    }
}

/// The writer thread: one transaction per batch of whatever is queued.
fn run(
    conn: &Mutex<Connection>,
    jobs: &mpsc::Receiver<Job>,
    counts: &Counts,
    mut pacer: Option<super::checkpoint::Pacer>,
) {
    // Whether records may wait in the audit tail since the last idle move.
    let mut unsettled = false;
    // Batches left before a batch tries to move the tail again, after a move failed.
    let mut skip_moves = 0u64;
    loop {
        let first = if unsettled {
            match jobs.recv_timeout(IDLE_SETTLE) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    unsettled = !settle_all(conn);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counts.batches.fetch_add(1, Ordering::Relaxed);
        let moves = skip_moves == 0;
        skip_moves = skip_moves.saturating_sub(1);
        let commit = match conn.lock() {
            Ok(guard) => commit(&guard, &mut batch, moves),
            Err(_) => Err(StoreError::Backend("the connection lock is poisoned".into())),
        };
        let commit = commit.map(|moved| {
            if !moved {
                counts.failed_moves.fetch_add(1, Ordering::Relaxed);
                skip_moves = SETTLE_BACKOFF_BATCHES;
            }
        });
        unsettled |= commit.is_ok();
        for job in batch {
            job.answer(commit.clone());
        }
        // Only once every caller of the batch has its answer.
        if let (Some(pacer), Ok(guard)) = (pacer.as_mut(), conn.lock()) {
            pacer.after_batch(&guard);
        }
    }
    // Stopping: leave every record indexed, for whoever opens the file next (a database
    // file: the writer that paces checkpoints; an in-memory one ends with its store).
    if unsettled && pacer.is_some() {
        settle_all(conn);
    }
}

/// Moves the whole audit tail into the indexed table in a transaction of its own, when
/// the writer is idle or stopping; `true` when it did (or there was nothing to move).
fn settle_all(conn: &Mutex<Connection>) -> bool {
    let Ok(c) = conn.lock() else { return false };
    match super::audit::settle_audit_tail(&c) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot index the newest audit records yet; tried again later");
            false
        }
    }
}

/// Runs `batch` in one transaction, each write in its own savepoint, and commits; first,
/// when `moves`, moves the audit tail into the indexed table if it is due (a move that
/// fails leaves the tail as it was and the batch goes on). Returns whether no move failed.
fn commit(c: &Connection, batch: &mut [Job], moves: bool) -> Result<bool, StoreError> {
    // Prepared once per connection: these run for every write.
    let run = |sql: &str| c.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map(|_| ());
    let mut moved = true;
    let applied = (|| {
        run("BEGIN IMMEDIATE")?;
        if moves {
            // The move opens the transaction, so undoing it is undoing the transaction: no
            // savepoint, which would first copy every page the move touches into its journal
            // (two fifths of the move's cost under load; it spilled to a temporary file).
            if let Err(e) = super::audit::settle_due(c) {
                tracing::warn!(
                    error = %e,
                    "cannot index the newest audit records; batches try again after {SETTLE_BACKOFF_BATCHES} more"
                );
                if !c.is_autocommit() {
                    run("ROLLBACK")?;
                }
                run("BEGIN IMMEDIATE")?;
                moved = false;
            }
        }
        for job in batch.iter_mut() {
            run("SAVEPOINT write")?;
            if !job.apply(c) {
                run("ROLLBACK TO write")?;
            }
            run("RELEASE write")?;
        }
        run("COMMIT")
    })();
    match applied {
        Ok(()) => Ok(moved),
        Err(e) => {
            // Nothing of the batch may stay: roll the whole transaction back (it may
            // already be gone, when SQLite rolled it back itself).
            if !c.is_autocommit() {
                if let Err(rollback) = c.execute_batch("ROLLBACK") {
                    tracing::error!(error = %rollback, "cannot roll back a failed storage batch");
                }
            }
            tracing::error!(error = %e, writes = batch.len(), "a storage batch could not be committed");
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use rusqlite::Connection;
    use warrant_core::{AgentId, UnixTime};

    use crate::sqlite::SqliteStore;
    use crate::{StoreError, WarrantStore};

    fn store() -> SqliteStore {
        SqliteStore::open_in_memory().unwrap()
    }

    async fn count(store: &SqliteStore, table: &'static str) -> i64 {
        store.run(move |c| Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)).await.unwrap()
    }

    fn scratch(c: &Connection) -> Result<(), StoreError> {
        c.execute_batch("CREATE TABLE IF NOT EXISTS scratch (v INTEGER PRIMARY KEY)")?;
        Ok(())
    }

    /// Writes queued while a commit is under way wait for the next one and share it:
    /// ten writes queued behind a busy connection take at most two transactions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_together_commit_together() {
        let store = store();
        store.write(scratch).await.unwrap();
        let batches_before = store.committer.counts().batches.load(Ordering::Relaxed);
        let tasks = queued_behind_a_held_connection(&store, 10, |v| {
            move |c: &Connection| {
                c.execute("INSERT INTO scratch (v) VALUES (?1)", [v])?;
                Ok(v)
            }
        })
        .await;
        for (v, answer) in (0..10i64).zip(futures_join(tasks).await) {
            assert_eq!(answer.unwrap(), v);
        }
        let batches = store.committer.counts().batches.load(Ordering::Relaxed) - batches_before;
        assert!(batches <= 2, "10 writes queued together took {batches} transactions");
        assert_eq!(count(&store, "scratch").await, 10);
    }

    /// A write that fails is undone and answered with its own error; the writes around it
    /// in the same batch are committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_undone_alone() {
        let store = store();
        store.write(scratch).await.unwrap();
        let tasks = queued_behind_a_held_connection(&store, 6, |v| {
            move |c: &Connection| {
                c.execute("INSERT INTO scratch (v) VALUES (?1)", [v])?;
                match v {
                    2 => Err(StoreError::Revoked("refused after its insert".into())),
                    4 => panic!("a write that panics"),
                    _ => Ok(()),
                }
            }
        })
        .await;
        let answers: Vec<_> = futures_join(tasks).await;
        assert!(answers[0].is_ok() && answers[1].is_ok() && answers[3].is_ok() && answers[5].is_ok());
        assert!(matches!(&answers[2], Err(StoreError::Revoked(_))), "{:?}", answers[2]);
        assert!(matches!(&answers[4], Err(StoreError::Backend(_))), "{:?}", answers[4]);
        let kept: Vec<i64> = store
            .run(|c| {
                let mut stmt = c.prepare("SELECT v FROM scratch ORDER BY v")?;
                let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(kept, vec![0, 1, 3, 5]);
        // The writer survived the panic.
        store.write(|c| Ok(c.execute("INSERT INTO scratch (v) VALUES (9)", [])?)).await.unwrap();
    }

    /// Queues the writes `work(0)` .. `work(n - 1)`, each from a task of its own, while the
    /// writer's connection is held (as a long commit would hold it), and lets the writer go
    /// once all of them are queued; returns the tasks, in order.
    #[expect(
        clippy::await_holding_lock,
        reason = "the writer's connection is held on purpose while writes queue up; the writer thread waits for it, not this task"
    )]
    async fn queued_behind_a_held_connection<T, F>(
        store: &SqliteStore,
        n: i64,
        work: impl Fn(i64) -> F,
    ) -> Vec<tokio::task::JoinHandle<Result<T, StoreError>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let queued_before = store.committer.counts().queued.load(Ordering::Relaxed);
        let conn = store.shared_conn();
        let held = conn.lock().unwrap();
        let tasks: Vec<_> = (0..n)
            .map(|v| {
                let (store, write) = (store.clone(), work(v));
                tokio::spawn(async move { store.write(write).await })
            })
            .collect();
        let all = queued_before + u64::try_from(n).unwrap();
        while store.committer.counts().queued.load(Ordering::Relaxed) < all {
            tokio::task::yield_now().await;
        }
        drop(held);
        tasks
    }

    async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }

    /// A write the database cannot take (a read-only store) is an error, never a hang or
    /// an acknowledgement.
    #[tokio::test]
    async fn a_write_the_database_refuses_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        drop(SqliteStore::open(&path).unwrap());
        let ro = SqliteStore::open_read_only(&path).unwrap();
        let agent = AgentId::parse("agt_commit").unwrap();
        let err = ro.spend_assertion(&agent, "j", UnixTime(10), UnixTime(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    }

    /// Many callers spending the same assertions at once through the group commit: each
    /// assertion is spent exactly once, and every spend is on disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_spends_of_one_assertion_succeed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        let agent = AgentId::parse("agt_commit").unwrap();
        let mut tasks = Vec::new();
        for caller in 0..64u32 {
            let (store, agent) = (store.clone(), agent.clone());
            tasks.push(tokio::spawn(async move {
                let mut spent = 0u32;
                for jti in 0..16u32 {
                    let jti = format!("j{}", (jti + caller) % 16);
                    if store.spend_assertion(&agent, &jti, UnixTime(1_000), UnixTime(1)).await.unwrap() {
                        spent += 1;
                    }
                }
                spent
            }));
        }
        let spent: u32 = futures_join(tasks).await.into_iter().sum();
        assert_eq!(spent, 16);
        drop(store);
        let reopened = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        assert_eq!(count(&reopened, "spent_assertions").await, 16);
    }
}
