//! The embedded default store: SQLite (bundled), WAL journal, schema migrations by
//! `PRAGMA user_version`.
//!
//! Reads run on one of four connections (one for an in-memory or read-only database): the
//! first free, or when all are busy the first to come free (`reads.rs`), so a long read
//! never holds up the short ones behind it. On a database file, point reads by key (the
//! lookups of issuance, revocation, sessions and the registry) run on the calling thread;
//! every other read runs on tokio's blocking pool, so the async executor never waits on a
//! scan. Reads on the decision's path are served from the engine's in-memory state, not
//! from here. Every write goes through the group-commit writer (`commit.rs`), one thread
//! with a connection of its own that commits whatever is queued in one transaction, so
//! readers and the writer never wait on each other's write lock; that writer also
//! checkpoints the write-ahead log, after answering (`checkpoint.rs`), never inside a
//! commit, and moves the audit records from the unindexed table they are committed to
//! into the indexed one (`audit.rs`).
//!
//! This module opens the database (pragmas, migrations) and holds the helpers every
//! entity group shares; each group's traits are implemented in a file of their own:
//! `humans.rs` (humans and their sessions), `agents.rs`, `keys.rs`, `warrants.rs` (tasks,
//! warrants, spent assertions and revocations), `policies.rs`, `audit.rs`, `guard.rs`
//! (budgets, guard states and approvals) and `govern.rs`.

mod agents;
mod audit;
mod checkpoint;
mod commit;
mod console;
mod govern;
mod guard;
mod humans;
mod keys;
mod peps;
mod policies;
mod priority;
mod reads;
mod ssf;
mod warrants;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use warrant_core::{AgentId, HumanId, Mode, Scope, TaskId, UnixTime, WarrantId};

pub(crate) use crate::columns::{budget_text, json, to_text, word, WARRANT_COLS};
use crate::records::WarrantRecord;
use crate::StoreError;

pub use audit::settle_audit_tail;
pub use priority::{InvalidNice, WriterNice, WriterPriority};

/// Schema migrations, applied in order; `PRAGMA user_version` holds how many ran. Each is
/// one file of `migrations/sqlite/`, numbered from `0001` in the order they apply; a new
/// migration is a new file with the next number, added at the end of this list, and its
/// undo in `tests/support/undo.rs` (for the tests of what a migration does to older data).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_revocations_policies_audit.sql"),
    include_str!("../../migrations/sqlite/0003_warrant_agents.sql"),
    include_str!("../../migrations/sqlite/0004_budgets_guard_approvals.sql"),
    include_str!("../../migrations/sqlite/0005_agent_keys_govern.sql"),
    include_str!("../../migrations/sqlite/0006_sessions.sql"),
    include_str!("../../migrations/sqlite/0007_sealed_keys.sql"),
    include_str!("../../migrations/sqlite/0008_peps_warrant_claims.sql"),
    include_str!("../../migrations/sqlite/0009_human_roles.sql"),
    include_str!("../../migrations/sqlite/0010_human_external_id.sql"),
    include_str!("../../migrations/sqlite/0011_human_identity.sql"),
    include_str!("../../migrations/sqlite/0012_ssf_transmitter.sql"),
    include_str!("../../migrations/sqlite/0013_agent_spiffe.sql"),
    include_str!("../../migrations/sqlite/0014_console.sql"),
    include_str!("../../migrations/sqlite/0015_audit_tail.sql"),
    include_str!("../../migrations/sqlite/0016_history_indexes.sql"),
    include_str!("../../migrations/sqlite/0017_audit_decision_index.sql"),
];

/// The oldest schema version `SqliteStore::open_read_only` reads: every migration after it
/// only creates or drops indexes, which no read names, so an evidence copy taken before an
/// upgrade (on read-only media, where it cannot be migrated) is still verified and exported
/// by this build, only more slowly where an index it lacks would have helped. A migration
/// that changes a table or a column, or adds a unique index, raises this to
/// `MIGRATIONS.len()`; the test `migrations_a_read_only_open_skips_only_touch_indexes`
/// holds to that.
const READ_ONLY_OLDEST: usize = 15;

/// Read connections a database file has.
const READERS: usize = 4;

/// Where reads run.
#[derive(Clone)]
enum Reads {
    /// The one connection an in-memory or read-only database has, shared with its
    /// group-commit writer.
    Shared(Arc<Mutex<Connection>>),
    /// A database file's read connections (the group-commit writer has its own).
    Pool(Arc<reads::ReadPool>),
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads (and the one write that must run outside a transaction: sealing keys): a
    /// read takes a free connection, so a long read (a governance sweep over every live
    /// warrant, an audit export) never holds up the short reads of issuance and
    /// revocation behind it.
    reads: Reads,
    /// Every other write, group-committed on a connection of its own ([`commit`]).
    committer: commit::Committer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(code, msg) if code.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict(msg.clone().unwrap_or_else(|| "constraint violation".into()))
            }
            rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Reads column `idx` as text and parses it with `parse`, as a conversion failure when
/// it does not parse.
pub(crate) fn col<T, E>(row: &Row<'_>, idx: usize, parse: impl FnOnce(String) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    parse(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<UnixTime> {
    row.get::<_, i64>(idx).map(UnixTime)
}

/// Reads a budget column (`NULL`: none).
pub(crate) fn budget_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<BTreeMap<String, i64>> {
    let text: Option<String> = row.get(idx)?;
    match text {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))),
    }
}

pub(crate) fn warrant_row(row: &Row<'_>) -> rusqlite::Result<WarrantRecord> {
    let parent: Option<String> = row.get(1)?;
    let parent = parent
        .map(WarrantId::try_from)
        .transpose()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    Ok(WarrantRecord {
        jti: col(row, 0, WarrantId::try_from)?,
        parent,
        agent: col(row, 2, AgentId::try_from)?,
        task: col(row, 3, TaskId::try_from)?,
        human: col(row, 4, HumanId::try_from)?,
        sub: row.get(5)?,
        mode: col(row, 6, word::<Mode>)?,
        scope: col(row, 7, json::<Scope>)?,
        chain: col(row, 8, json::<Vec<AgentId>>)?,
        kid: row.get(9)?,
        issued_at: time(row, 10)?,
        expires_at: time(row, 11)?,
        budget: budget_col(row, 12)?,
        claims: {
            let text: Option<String> = row.get(13)?;
            text.map(json::<warrant_core::WarrantClaims>)
                .transpose()
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(13, Type::Text, Box::new(e)))?
        },
    })
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let applied = usize::try_from(applied).map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "the database has schema version {applied}, newer than this build's {}; upgrade warrant",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied storage migration");
    }
    Ok(())
}

/// Equality filters on indexed columns, given most selective first, as `WHERE` clauses
/// pushed onto `clauses`, each value onto `values` and named by its number (`?N`). The
/// first column given leads the read; every other is written `+column`, which SQLite
/// never looks up by an index. SQLite keeps no planner statistics unless `ANALYZE` runs,
/// and without them it weighs every equality alike, so it could read an agent's records
/// through an index (a kind, a status) that holds nearly every row; reading through the
/// most selective column bounds a read by that column's own rows.
pub(crate) fn keyed_filters(
    keyed: &[(&str, Option<&str>)],
    clauses: &mut Vec<String>,
    values: &mut Vec<rusqlite::types::Value>,
) {
    let mut lead = true;
    for (column, value) in keyed {
        if let Some(v) = value {
            values.push(rusqlite::types::Value::Text((*v).to_owned()));
            let plus = if lead { "" } else { "+" };
            clauses.push(format!("{plus}{column} = ?{}", values.len()));
            lead = false;
        }
    }
}

/// A fresh in-memory database with every migration applied (tests of statements).
#[cfg(test)]
pub(crate) fn migrated_in_memory() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    migrate(&mut c).unwrap();
    c
}

/// The steps of the plan SQLite chooses for `sql` run with `params` (`EXPLAIN QUERY
/// PLAN`), one line each: tests check which index a read goes through.
#[cfg(test)]
pub(crate) fn query_plan(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
    c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .and_then(|mut stmt| stmt.query_map(params, |r| r.get::<_, String>(3))?.collect())
        .unwrap_or_else(|e| panic!("cannot explain `{sql}`: {e}"))
}

/// How [`SqliteStore::open_with`] runs a database file.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The priority the group-commit writer's thread asks for as it starts (default
    /// [`WriterNice::NORMAL`]: none).
    pub writer_nice: WriterNice,
}

impl SqliteOptions {
    /// The default options with the writer asking for `nice`.
    pub fn with_writer_nice(nice: WriterNice) -> Self {
        SqliteOptions { writer_nice: nice }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and migrates it.
    /// On Unix the file is restricted to its owner (mode 0600): it holds signing keys.
    /// The group-commit writer keeps the process's priority; see [`Self::open_with`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// [`Self::open`], tuned by `options`. What became of the writer's priority is
    /// [`Self::writer_priority`].
    pub fn open_with(path: &Path, options: &SqliteOptions) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Backend(format!("cannot restrict `{}`: {e}", path.display())))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::configure(&mut conn)?;
        // No commit checkpoints the log: the writer does, after answering ([`checkpoint`]).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // The group-commit writer gets a connection of its own, so reads never wait for
        // its commits (WAL readers do not block on the writer).
        let writer = Connection::open(path)?;
        Self::settings(&writer)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Each write of a batch runs in a savepoint, whose journal holds the first copy of
        // every page the write changes; SQLite writes that journal to a temporary file once
        // it outgrows 64 KiB, and then each copy is a system call (two fifths of the commit
        // thread's time under a load of mints). In memory it is a copy; it lives only as
        // long as the batch's transaction, and the reads (whose sorts also use the temporary
        // store) keep the default.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        let committer = commit::Committer::start(Arc::new(Mutex::new(writer)), true, options.writer_nice)?;
        let mut readers = vec![conn];
        for _ in 1..READERS {
            let reader = Connection::open(path)?;
            Self::settings(&reader)?;
            reader.pragma_update(None, "wal_autocheckpoint", 0)?;
            readers.push(reader);
        }
        Ok(SqliteStore { reads: Reads::Pool(Arc::new(reads::ReadPool::new(readers))), committer })
    }

    /// Opens the existing database at `path` for reading only: nothing is written,
    /// migrated or chmod-ed, so an audit log can be verified or exported from read-only
    /// media (a snapshot, a read-only mount) and verification never changes what it
    /// verifies. A WAL database whose `-wal` file is present is read with it; one without
    /// (closed cleanly, every record in the main file) is read as immutable, since SQLite
    /// could not create its wal-index on a read-only file system. Reads a database whose
    /// schema is this build's or behind it only by migrations that change indexes
    /// (`READ_ONLY_OLDEST`); refuses an older or a newer one.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        let mut conn = Connection::open_with_flags(path, flags)?;
        let applied = match version(&conn) {
            Ok(applied) => applied,
            Err(e) => {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                if Path::new(&wal).exists() {
                    return Err(e.into());
                }
                let text = path.to_str().ok_or_else(|| StoreError::Backend("the database path is not UTF-8".into()))?;
                let escaped = text.replace('%', "%25").replace('?', "%3f").replace('#', "%23");
                conn = Connection::open_with_flags(format!("file:{escaped}?immutable=1"), flags)?;
                version(&conn)?
            }
        };
        crate::columns::refuse_unusable_schema(
            applied,
            READ_ONLY_OLDEST..=MIGRATIONS.len(),
            "it holds no Warrant schema",
            "verify it with the release that wrote it, or start `warrant serve` with this build on a \
             writable copy, which migrates the copy",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::sharing(conn)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        Self::configure(&mut conn)?;
        Self::sharing(conn)
    }

    /// What became of the priority asked for the group-commit writer's thread (see
    /// [`SqliteOptions::writer_nice`]).
    pub fn writer_priority(&self) -> &WriterPriority {
        self.committer.priority()
    }

    /// The nice value the group-commit writer's thread runs at, read by that thread once
    /// it had asked for its priority (`None` off Linux, where threads have none of their
    /// own, or when it could not be read).
    pub fn writer_nice(&self) -> Option<i32> {
        self.committer.nice()
    }

    /// A store whose group-commit writer shares its one connection (an in-memory
    /// database, which a second connection cannot open; a read-only one, which is never
    /// written).
    fn sharing(conn: Connection) -> Result<Self, StoreError> {
        let conn = Arc::new(Mutex::new(conn));
        let committer = commit::Committer::start(Arc::clone(&conn), false, WriterNice::NORMAL)?;
        Ok(SqliteStore { reads: Reads::Shared(conn), committer })
    }

    fn configure(conn: &mut Connection) -> Result<(), StoreError> {
        Self::settings(conn)?;
        migrate(conn)
    }

    /// What every read-write connection is opened with: durable commits, enforced
    /// foreign keys, and a wait for a lock held elsewhere.
    fn settings(conn: &Connection) -> Result<(), StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement the hot paths prepare once (issuance's checks and
        // inserts, revocation, the audit insert, the budget charges, the registry reads),
        // so none is evicted and parsed again.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    /// Runs `f` in the next group commit (see [`commit`]): `f` runs inside a transaction
    /// already open and must not open, commit or roll back one; its result is answered
    /// once that transaction is durable, or its error (its writes undone) when it fails.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.committer.write(f).await
    }

    /// Runs `f` on a read connection on tokio's blocking pool (waiting, off that pool,
    /// for one to be free).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let task = match &self.reads {
            Reads::Shared(conn) => {
                let conn = Arc::clone(conn);
                tokio::task::spawn_blocking(move || {
                    let mut guard =
                        conn.lock().map_err(|_| StoreError::Backend("the connection lock is poisoned".into()))?;
                    f(&mut guard)
                })
            }
            Reads::Pool(pool) => {
                let mut lease = pool.lease().await?;
                tokio::task::spawn_blocking(move || f(lease.conn()?))
            }
        };
        task.await.map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }

    /// Runs `f`, a point read, on a read connection on the calling thread (waiting, off
    /// any thread, for one to be free). For reads of one row, or a few, found through a
    /// primary key or a unique index (the lookups of issuance, revocation, sessions and
    /// the registry): with their pages cached they take a few microseconds, less than
    /// handing them to the blocking pool and back, which wakes two threads per read and
    /// grows that pool under load; uncached, a disk read or two. Anything that scans or
    /// may return many rows goes through [`SqliteStore::run`], so it never holds up the
    /// async worker that runs it.
    ///
    /// A store whose one connection is shared with the group-commit writer (in memory,
    /// read-only) reads on the blocking pool: the writer may hold that connection for a
    /// whole commit.
    pub(crate) async fn run_point<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.reads {
            Reads::Shared(_) => self.run(f).await,
            Reads::Pool(pool) => {
                let mut lease = pool.lease().await?;
                f(lease.conn()?)
            }
        }
    }

    /// The one connection of an in-memory or read-only store (tests hold it).
    #[cfg(test)]
    pub(crate) fn shared_conn(&self) -> Arc<Mutex<Connection>> {
        match &self.reads {
            Reads::Shared(conn) => Arc::clone(conn),
            Reads::Pool(_) => panic!("a database file has no shared connection"),
        }
    }
}

/// One server per SQLite database: no change feed (every method's default).
impl crate::ChangeStore for SqliteStore {}

#[async_trait::async_trait]
impl crate::HealthStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    fn waiting_for_connection(&self) -> usize {
        match &self.reads {
            Reads::Pool(pool) => pool.waiting(),
            // One connection behind a lock, for a database that is never served under
            // load (in memory, or opened read-only to verify it).
            Reads::Shared(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MIGRATIONS` is every file of `migrations/sqlite/`, in file-number order, each file
    /// numbered from `0001` without a gap: a migration file that is not in the list (or a
    /// list entry out of place) fails here rather than leaving a database unmigrated.
    #[test]
    fn migrations_are_every_file_in_number_order() {
        crate::columns::assert_migrations_are_every_file("sqlite", MIGRATIONS);
    }

    /// Every migration a read-only open may find missing (those after `READ_ONLY_OLDEST`)
    /// only creates or drops indexes: one that changed a table would let this build read a
    /// schema its queries do not fit, so it must raise `READ_ONLY_OLDEST` instead. And no
    /// query names one of the indexes those migrations create (`INDEXED BY`), which an
    /// older database lacks.
    #[test]
    fn migrations_a_read_only_open_skips_only_touch_indexes() {
        let created = crate::columns::index_migrations_after(MIGRATIONS, READ_ONLY_OLDEST);
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path)
                    .unwrap()
                    .to_uppercase()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                for index in &created {
                    let named = format!("INDEXED BY {}", index.to_uppercase());
                    assert!(
                        !code.contains(&named),
                        "{} names `{index}`, which a read-only open may lack",
                        path.display()
                    );
                }
            }
        }
    }

    /// An active human named after `id`, owning nothing.
    fn active_human(id: &str) -> warrant_core::Human {
        warrant_core::Human {
            id: HumanId::parse(id).unwrap(),
            name: id.into(),
            email: format!("{id}@example.com"),
            entitlements: Scope::default(),
            status: warrant_core::HumanStatus::Active,
            created_at: UnixTime(1),
            roles: Default::default(),
            external_id: None,
            identity: None,
        }
    }

    /// A read held up on one connection (a long sweep, say) does not hold up the others:
    /// with all but one connection leased, reads still answer (on the one left), and see
    /// what was committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_does_not_hold_up_the_others() {
        use crate::HumanStore as _;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let Reads::Pool(pool) = &store.reads else { panic!("a database file has a pool") };
        assert_eq!(pool.free(), READERS);
        let owner = active_human("hum_reads");
        store.insert_human(&owner).await.unwrap();
        let mut held = Vec::new();
        for _ in 1..READERS {
            held.push(pool.lease().await.unwrap());
        }
        for _ in 0..20 {
            let read = tokio::time::timeout(std::time::Duration::from_secs(60), store.get_human(&owner.id));
            let found = read.await.expect("a read waited for a held connection").unwrap();
            assert_eq!(found.as_ref().map(|h| &h.id), Some(&owner.id));
        }
        drop(held);
        assert_eq!(pool.free(), READERS, "a connection was not given back");
    }

    /// Issuance's and revocation's point reads run on the calling thread: they answer
    /// while every thread of tokio's blocking pool is held by other work (a witness
    /// append on a slow disk, a long export), and a scan queued behind that work still
    /// answers once it ends.
    #[test]
    fn point_reads_do_not_wait_for_the_blocking_pool() {
        use crate::{AgentStore as _, HumanStore as _, RevocationStore as _, WarrantStore as _};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
            let owner = active_human("hum_points");
            store.insert_human(&owner).await.unwrap();
            // The pool's one thread, held until released.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started_tx, started) = tokio::sync::oneshot::channel();
            let blocker = tokio::task::spawn_blocking(move || {
                let _ = started_tx.send(());
                let _ = held.recv();
            });
            started.await.unwrap();
            let points = async {
                let human = store.get_human(&owner.id).await.unwrap();
                let agent = store.get_agent(&AgentId::parse("agt_none").unwrap()).await.unwrap();
                let start = store.issuance_start(&AgentId::parse("agt_none").unwrap()).await.unwrap();
                let warrant = store.get_warrant(&WarrantId::parse("wrt_none").unwrap()).await.unwrap();
                let watermark = store.revocation_watermark().await.unwrap();
                let none = AgentId::parse("agt_none").unwrap();
                let delegation = store
                    .delegation_start(
                        &WarrantId::parse("wrt_none").unwrap(),
                        Some(&none),
                        std::slice::from_ref(&none),
                        &owner.id,
                    )
                    .await
                    .unwrap();
                assert!(delegation.human.is_some() && delegation.actor.is_none() && !delegation.parent_recorded);
                assert!(store.get_task(&TaskId::parse("tsk_none").unwrap()).await.unwrap().is_none());
                assert!(store.get_session("none").await.unwrap().is_none());
                assert!(store.agent_by_spiffe_id("spiffe://example.org/none").await.unwrap().is_none());
                assert!(store.revocation_of(&WarrantId::parse("wrt_none").unwrap()).await.unwrap().is_none());
                (human, agent, start, warrant, watermark)
            };
            let (human, agent, start, warrant, watermark) =
                tokio::time::timeout(std::time::Duration::from_secs(60), points)
                    .await
                    .expect("a point read waited for the blocking pool");
            assert_eq!(human.map(|h| h.id), Some(owner.id.clone()));
            assert!(agent.is_none() && start.agent.is_none() && warrant.is_none());
            assert_eq!((watermark, start.watermark), (0, 0));
            // A scan still runs on the pool: queued behind the held thread, answered after.
            let mut scan = tokio::spawn({
                let store = store.clone();
                async move { store.list_humans().await }
            });
            let queued = tokio::time::timeout(std::time::Duration::from_millis(200), &mut scan).await;
            assert!(queued.is_err(), "a scan ran while the blocking pool was held");
            release.send(()).unwrap();
            blocker.await.unwrap();
            let humans = scan.await.unwrap().unwrap();
            assert_eq!(humans.len(), 1);
        });
    }

    /// When every connection is busy, a read waits for whichever comes free first, not
    /// for one picked in advance: with all of them held, reads queued, and all but one
    /// let go (the one a long sweep keeps), every queued read answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_for_the_first_free_connection() {
        use crate::HumanStore as _;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.db")).unwrap();
        let Reads::Pool(pool) = &store.reads else { panic!("a database file has a pool") };
        let id = HumanId::parse("hum_nobody").unwrap();
        let long = pool.lease().await.unwrap();
        let mut busy = Vec::new();
        for _ in 1..READERS {
            busy.push(pool.lease().await.unwrap());
        }
        let reads: Vec<_> = (0..16)
            .map(|_| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move { store.get_human(&id).await })
            })
            .collect();
        // What `/metrics` reports: the reads waiting, not the connections held.
        let counted = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while crate::HealthStore::waiting_for_connection(&store) < 1 {
                tokio::task::yield_now().await;
            }
        });
        assert!(counted.await.is_ok(), "no read was counted as waiting for a connection");
        drop(busy);
        for read in reads {
            let answered = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
            assert!(answered.expect("a read waited for the one connection still held").unwrap().unwrap().is_none());
        }
        assert_eq!(crate::HealthStore::waiting_for_connection(&store), 0, "every read was answered");
        drop(long);
    }

    /// A read that panics gives its connection back: the pool never shrinks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_read_gives_its_connection_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        let Reads::Pool(pool) = &store.reads else { panic!("a database file has a pool") };
        for _ in 0..READERS * 2 {
            let failed = store.run::<(), _>(|_| panic!("a read that panics")).await;
            assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
        }
        assert_eq!(pool.free(), READERS);
        let one: i64 = store.run(|c| Ok(c.query_row("SELECT 1", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(one, 1);
    }
}
