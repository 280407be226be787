//! The shared store: PostgreSQL, for several `warrant serve` replicas on one database.
//!
//! A pool of connections (`deadpool-postgres` over `tokio-postgres`) serves every call;
//! nothing blocks the async executor. The schema is the SQLite schema in PostgreSQL's
//! types (`migrations/postgres/`), applied by [`PgStore::migrate`], which is safe to run
//! from several processes at once (they queue on an advisory lock) and safe to run twice.
//! No superuser and no extension is needed: the role in the URL needs only to create
//! tables in its schema (for migrations) and to read and write them.
//!
//! **Writes are serialized.** SQLite has one writer at a time, and the checks the store
//! makes inside a write (a warrant is recorded only if nothing it rests on is revoked; a
//! revocation ends every warrant recorded before it) rely on that. Here every write
//! transaction first takes one transaction-scoped advisory lock ([`WRITE_LOCK`]), so
//! writers from every replica run one after another, with PostgreSQL's default isolation
//! (read committed): each statement after the lock sees every earlier writer's commit.
//! Rows numbered by an identity column (the `rowid` columns, the outbox) are therefore
//! numbered in commit order. Reads take no lock.
//!
//! Like `sqlite/`, this module holds what every entity group shares; each group's traits
//! are implemented in a file of their own.

mod agents;
mod audit;
mod cluster;
mod console;
mod govern;
mod guard;
mod humans;
mod keys;
mod peps;
mod policies;
mod ssf;
mod tls;
mod warrants;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr as _;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use warrant_core::{AgentId, HumanId, Mode, Scope, TaskId, UnixTime, WarrantId};

use crate::columns::{json, word};
use crate::records::WarrantRecord;
use crate::StoreError;

/// The oldest schema version [`PgStore::open_without_migrating`] accepts: every migration
/// after it only creates or drops plain indexes, so a server told not to migrate, or
/// `warrant audit verify`, works on a database that `warrant migrate` has not brought up
/// yet (more slowly where an index it lacks would help). A migration that changes a table
/// or a column, or adds a unique index, raises this to `MIGRATIONS.len()`; the test
/// `migrations_an_unmigrated_open_skips_only_touch_indexes` holds to that.
const UNMIGRATED_OLDEST: usize = 11;

/// The oldest schema version [`PgStore::open_for_evidence`] accepts: every migration after
/// it only creates or drops plain indexes, or creates a table of `EVIDENCE_UNREAD`, so
/// `warrant audit verify` and `audit export` read a database `warrant migrate` has not
/// brought up yet. The test `migrations_an_evidence_open_skips_only_touch_indexes_and_unread_tables`
/// holds to that.
const EVIDENCE_OLDEST: usize = 7;

/// Tables the evidence commands never read (the shadow activity counts of migration 10 and
/// the batches added to them of migration 11), for the test that holds [`EVIDENCE_OLDEST`]
/// true.
#[cfg(test)]
const EVIDENCE_UNREAD: &[&str] = &["shadow_activity", "shadow_merges"];

/// Schema migrations, applied in order; the table `warrant_schema` holds how many ran.
/// Each is one file of `migrations/postgres/`, numbered from `0001`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_initial.sql"),
    include_str!("../../migrations/postgres/0002_change_feed.sql"),
    include_str!("../../migrations/postgres/0003_cluster_state.sql"),
    include_str!("../../migrations/postgres/0004_cluster_members.sql"),
    include_str!("../../migrations/postgres/0005_spent_proofs.sql"),
    include_str!("../../migrations/postgres/0006_received_sets.sql"),
    include_str!("../../migrations/postgres/0007_console.sql"),
    include_str!("../../migrations/postgres/0008_history_indexes.sql"),
    include_str!("../../migrations/postgres/0009_audit_decision_index.sql"),
    include_str!("../../migrations/postgres/0010_shadow_activity.sql"),
    include_str!("../../migrations/postgres/0011_shadow_merges.sql"),
];

/// The advisory lock every write transaction takes first (see the module docs). A session
/// that takes it (`SELECT pg_advisory_xact_lock(…)` inside a transaction) holds every
/// server's writes to the database until that transaction ends.
pub const WRITE_LOCK: i64 = 0x5741_5252_414e_5401;
/// The advisory lock migrations take, so that replicas starting together migrate once.
const MIGRATE_LOCK: i64 = 0x5741_5252_414e_5402;

/// How many connections one store keeps open at most.
const POOL_SIZE: usize = 16;

/// The PostgreSQL store. Cloning it shares its pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// How to open a connection outside the pool (the change feed's listener).
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// What [`PgStore::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version the database had before.
    pub from: usize,
    /// The schema version it has now (this build's).
    pub to: usize,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let constraint = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
        ];
        match e.code() {
            Some(code) if constraint.contains(code) => StoreError::Conflict(
                e.as_db_error().map_or_else(|| "constraint violation".to_owned(), |db| db.message().to_owned()),
            ),
            _ => StoreError::Backend(match e.as_db_error() {
                // The server's own words, which `Display` leaves out ("db error").
                Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
                None => e.to_string(),
            }),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Backend(format!("no database connection: {other}")),
        }
    }
}

/// Hides the password of a `postgres://` URL (in its user part or a `password=` query
/// parameter), for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let mut out = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl PgStore {
    /// Connects to the database named by `url` (`postgres://user:password@host:port/db`,
    /// or the key=value form) without touching its schema. Connections are made lazily;
    /// the first call that needs one reports an unreachable server.
    ///
    /// TLS follows the URL's `sslmode` (default `prefer`) and `sslrootcert`; whenever it
    /// is used the server's certificate and name are verified (see `postgres/tls.rs`).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let invalid =
            |e: &dyn Display| StoreError::Backend(format!("the database URL `{}` is not valid: {e}", redact_url(url)));
        let split = tls::split(url).map_err(|e| invalid(&e))?;
        let config = tokio_postgres::Config::from_str(&split.url).map_err(|e| invalid(&e))?;
        let tls = tls::connector(split.root_cert.as_deref())?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot set up the connection pool: {e}")))?;
        Ok(PgStore { pool, config, tls })
    }

    /// Connects to `url` and brings its schema to this build's version.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to `url` and checks that this build can use its schema, changing nothing:
    /// for replicas told not to migrate. The schema is this build's version, or behind it
    /// only by migrations that add plain indexes ([`UNMIGRATED_OLDEST`]), which no query
    /// needs to be right.
    pub async fn open_without_migrating(url: &str) -> Result<Self, StoreError> {
        Self::open_from_version(url, UNMIGRATED_OLDEST).await
    }

    /// Connects to `url` for reading evidence (`warrant audit verify --database`, `audit
    /// export`), changing nothing: as [`open_without_migrating`](Self::open_without_migrating),
    /// but also a schema behind this build by migrations that create tables the evidence
    /// commands never read ([`EVIDENCE_OLDEST`]). Only the audit log, its checkpoints and
    /// the keys that signed them are read through it.
    pub async fn open_for_evidence(url: &str) -> Result<Self, StoreError> {
        Self::open_from_version(url, EVIDENCE_OLDEST).await
    }

    /// Connects to `url`, refusing a schema older than `oldest` or newer than this build's.
    async fn open_from_version(url: &str, oldest: usize) -> Result<Self, StoreError> {
        let store = Self::connect(url)?;
        let version = store.schema_version().await?;
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        crate::columns::refuse_unusable_schema(
            version,
            oldest..=MIGRATIONS.len(),
            "run `warrant migrate` with this build",
            "run `warrant migrate` with this build",
        )?;
        Ok(store)
    }

    /// The schema version of the database: how many migrations ran (0 for an empty one).
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('warrant_schema') IS NOT NULL", &[])
            .await
            .and_then(|row| row.try_get(0))?;
        if !exists {
            return Ok(0);
        }
        let row = client.query_opt("SELECT version FROM warrant_schema", &[]).await?;
        let version: i32 = match row {
            Some(row) => get(&row, 0)?,
            None => 0,
        };
        usize::try_from(version).map_err(|_| StoreError::Corrupt("negative schema version".into()))
    }

    /// Creates or upgrades the schema to this build's version, in one transaction (all
    /// of it or none). Processes that migrate at once queue on an advisory lock, so the
    /// second finds the work done; a database newer than this build is refused.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS warrant_schema (version INTEGER NOT NULL)").await?;
        let row = tx.query_opt("SELECT version FROM warrant_schema", &[]).await?;
        let from: i32 = match row {
            Some(row) => get(&row, 0)?,
            None => {
                tx.execute("INSERT INTO warrant_schema (version) VALUES (0)", &[]).await?;
                0
            }
        };
        let from = usize::try_from(from).map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
        if from > MIGRATIONS.len() {
            return Err(StoreError::Schema(format!(
                "the database has schema version {from}, newer than this build's {}; upgrade warrant",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            tx.batch_execute(sql).await?;
            let version = i32::try_from(i + 1).map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
            tx.execute("UPDATE warrant_schema SET version = $1", &[&version]).await?;
            tracing::info!(version = i + 1, "applied storage migration (postgres)");
        }
        tx.commit().await?;
        Ok(Migrated { from, to: MIGRATIONS.len() })
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

#[async_trait::async_trait]
impl crate::HealthStore for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    fn waiting_for_connection(&self) -> usize {
        // The pool's own `waiting` counts the callers beyond the connections opened so
        // far, so a call whose connection is still being opened would show; beyond the
        // pool's size, a call has to wait for another to finish.
        let status = self.pool.status();
        (status.size + status.waiting).saturating_sub(status.max_size)
    }
}

/// Takes the store's write lock inside `tx` (see the module docs); every write
/// transaction calls this before its first read or write.
/// The statement is prepared once per connection (one round trip, not two).
pub(crate) async fn lock_writes(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
    tx.execute(&lock, &[&WRITE_LOCK]).await?;
    Ok(())
}

/// Statements prepared once per connection (the pool's statement cache), for the write
/// transactions on the hot paths (issuance, revocation, decisions): a statement then costs
/// one round trip instead of two.
pub(crate) mod cached {
    use tokio_postgres::types::ToSql;
    use tokio_postgres::Row;

    use crate::StoreError;

    /// A pooled connection's transaction.
    pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

    /// Runs `sql`; how many rows it changed.
    pub(crate) async fn execute(tx: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let statement = tx.prepare_cached(sql).await?;
        Ok(tx.execute(&statement, params).await?)
    }

    /// Runs `sql`; its rows.
    pub(crate) async fn query(tx: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let statement = tx.prepare_cached(sql).await?;
        Ok(tx.query(&statement, params).await?)
    }

    /// Runs `sql`; its one row, if any (more than one is an error).
    pub(crate) async fn query_opt(
        tx: &Tx<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = tx.prepare_cached(sql).await?;
        Ok(tx.query_opt(&statement, params).await?)
    }

    /// Runs `sql`; its one row (none or more is an error).
    pub(crate) async fn query_one(tx: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        let statement = tx.prepare_cached(sql).await?;
        Ok(tx.query_one(&statement, params).await?)
    }
}

/// Reads column `idx`, as corrupt data when it has another type.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// Reads column `idx` as text and parses it with `parse`, as corrupt data when it does
/// not parse.
pub(crate) fn col<T, E: Display>(
    row: &Row,
    idx: usize,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Result<T, StoreError> {
    let text: String = get(row, idx)?;
    parse(text).map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// Reads a nullable text column `idx` and parses it with `parse` when present.
pub(crate) fn opt_col<T, E: Display>(
    row: &Row,
    idx: usize,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = get(row, idx)?;
    text.map(parse).transpose().map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// Reads column `idx` as Unix seconds.
pub(crate) fn time(row: &Row, idx: usize) -> Result<UnixTime, StoreError> {
    get::<i64>(row, idx).map(UnixTime)
}

/// Reads a nullable column `idx` as Unix seconds.
pub(crate) fn opt_time(row: &Row, idx: usize) -> Result<Option<UnixTime>, StoreError> {
    Ok(get::<Option<i64>>(row, idx)?.map(UnixTime))
}

/// Converts a count or sequence number for a `BIGINT` parameter.
pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("`{value}` is out of range")))
}

/// Reads a non-negative `BIGINT` column.
pub(crate) fn get_u64(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let value: i64 = get(row, idx)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("column {idx}: negative value `{value}`")))
}

/// Reads a budget column (`NULL`: none).
pub(crate) fn budget_col(row: &Row, idx: usize) -> Result<BTreeMap<String, i64>, StoreError> {
    Ok(opt_col(row, idx, json::<BTreeMap<String, i64>>)?.unwrap_or_default())
}

/// The columns of `warrants`, in [`warrant_row`]'s order, each prefixed with `prefix`
/// (`""` or an alias such as `"w."`).
pub(crate) fn warrant_cols(prefix: &str) -> String {
    crate::columns::WARRANT_COLS.split(", ").map(|c| format!("{prefix}{c}")).collect::<Vec<_>>().join(", ")
}

/// A row of `warrants` (selected as [`warrant_cols`]).
pub(crate) fn warrant_row(row: &Row) -> Result<WarrantRecord, StoreError> {
    Ok(WarrantRecord {
        jti: col(row, 0, WarrantId::try_from)?,
        parent: opt_col(row, 1, WarrantId::try_from)?,
        agent: col(row, 2, AgentId::try_from)?,
        task: col(row, 3, TaskId::try_from)?,
        human: col(row, 4, HumanId::try_from)?,
        sub: get(row, 5)?,
        mode: col(row, 6, word::<Mode>)?,
        scope: col(row, 7, json::<Scope>)?,
        chain: col(row, 8, json::<Vec<AgentId>>)?,
        kid: get(row, 9)?,
        issued_at: time(row, 10)?,
        expires_at: time(row, 11)?,
        budget: budget_col(row, 12)?,
        claims: opt_col(row, 13, json::<warrant_core::WarrantClaims>)?,
    })
}

#[cfg(test)]
mod tests {
    use super::{redact_url, EVIDENCE_OLDEST, EVIDENCE_UNREAD, MIGRATIONS, UNMIGRATED_OLDEST};

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://warrant:s3cret@db:5432/warrant"), "postgres://warrant@db:5432/warrant");
        assert_eq!(redact_url("postgres://db/warrant"), "postgres://db/warrant");
        assert_eq!(redact_url("postgresql://u:p@ss@h/d"), "postgresql://u@h/d");
        assert_eq!(redact_url("host=db password=x"), "(not a URL)");
        assert_eq!(
            redact_url("postgres://u@h/d?sslmode=disable&password=x&application_name=w"),
            "postgres://u@h/d?sslmode=disable&password=***&application_name=w"
        );
    }

    /// `MIGRATIONS` is every file of `migrations/postgres/`, in file-number order.
    #[test]
    fn migrations_are_every_file_in_number_order() {
        crate::columns::assert_migrations_are_every_file("postgres", MIGRATIONS);
    }

    /// Every migration an open without migrating may find missing (those after
    /// `UNMIGRATED_OLDEST`) only creates or drops plain indexes; migrations 10 and 11
    /// create tables, so none before them may be missing.
    #[test]
    fn migrations_an_unmigrated_open_skips_only_touch_indexes() {
        crate::columns::index_migrations_after(MIGRATIONS, UNMIGRATED_OLDEST);
        // Migrations 8 and 9 only add indexes; 10 and 11 add the tables `shadow_activity`
        // and `shadow_merges`.
        assert!(crate::columns::index_migrations_after(&MIGRATIONS[..9], 7).contains(&"audit_decision".to_owned()));
        for before in [9, 10] {
            let table = std::panic::catch_unwind(|| crate::columns::index_migrations_after(MIGRATIONS, before));
            assert!(table.is_err(), "a migration creating a table may not be skipped (after {before})");
        }
    }

    /// Every migration an evidence open may find missing (those after `EVIDENCE_OLDEST`)
    /// only creates or drops plain indexes or creates a table the evidence commands never
    /// read; any other table may not be skipped.
    #[test]
    fn migrations_an_evidence_open_skips_only_touch_indexes_and_unread_tables() {
        let created = crate::columns::skippable_migrations_after(MIGRATIONS, EVIDENCE_OLDEST, EVIDENCE_UNREAD);
        assert!(created.contains(&"audit_decision".to_owned()), "{created:?}");
        let read = std::panic::catch_unwind(|| {
            crate::columns::skippable_migrations_after(MIGRATIONS, EVIDENCE_OLDEST, &["findings"])
        });
        assert!(read.is_err(), "a table evidence reads may not be skipped");
    }
}
