//! The embedded default store: SQLite (bundled), WAL journal, schema migrations by
//! `PRAGMA user_version`.
//!
//! One connection serves every call, each on tokio's blocking pool, so the async
//! executor never waits on disk. SQLite serializes writers anyway; reads on the hot path
//! are served from the engine's in-memory state, not from here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warrant_core::{
    Agent, AgentId, AgentStatus, Human, HumanId, HumanStatus, Mode, PublicJwk, Scope, TaskId, UnixTime, WarrantId,
};
use zeroize::Zeroizing;

use crate::records::{
    IssueGuard, KeyMaterial, KeyPurpose, SessionPurpose, SessionRecord, StoredKey, TaskRecord, WarrantRecord,
};
use crate::{AgentStore, HumanStore, KeyStore, StoreError, WarrantStore};

/// Schema migrations, applied in order; `PRAGMA user_version` holds how many ran. Each is
/// one file of `migrations/sqlite/`, numbered from `0001` in the order they apply; a new
/// migration is a new file with the next number, added at the end of this list.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/sqlite/0002_revocations_policies_audit.sql"),
    include_str!("../migrations/sqlite/0003_warrant_agents.sql"),
    include_str!("../migrations/sqlite/0004_budgets_guard_approvals.sql"),
    include_str!("../migrations/sqlite/0005_agent_keys_govern.sql"),
    include_str!("../migrations/sqlite/0006_sessions.sql"),
    include_str!("../migrations/sqlite/0007_sealed_keys.sql"),
];

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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

pub(crate) fn to_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(StoreError::Corrupt(e.to_string())),
    }
}

/// Reads column `idx` as text and parses it with `parse`, as a conversion failure when
/// it does not parse.
fn col<T, E>(row: &Row<'_>, idx: usize, parse: impl FnOnce(String) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    parse(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn json<T: DeserializeOwned>(text: String) -> Result<T, serde_json::Error> {
    serde_json::from_str(&text)
}

fn word<T: DeserializeOwned>(text: String) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(text))
}

fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<UnixTime> {
    row.get::<_, i64>(idx).map(UnixTime)
}

const HUMAN_COLS: &str = "id, name, email, entitlements, status, created_at";

fn human_row(row: &Row<'_>) -> rusqlite::Result<Human> {
    Ok(Human {
        id: col(row, 0, HumanId::try_from)?,
        name: row.get(1)?,
        email: row.get(2)?,
        entitlements: col(row, 3, json::<Scope>)?,
        status: col(row, 4, word::<HumanStatus>)?,
        created_at: time(row, 5)?,
    })
}

const AGENT_COLS: &str = "id, name, owner, mode, max_scope, public_key, status, expires_at, labels, created_at";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: col(row, 0, AgentId::try_from)?,
        name: row.get(1)?,
        owner: col(row, 2, HumanId::try_from)?,
        mode: col(row, 3, word::<Mode>)?,
        max_scope: col(row, 4, json::<Scope>)?,
        public_key: col(row, 5, json::<PublicJwk>)?,
        status: col(row, 6, word::<AgentStatus>)?,
        expires_at: row.get::<_, Option<i64>>(7)?.map(UnixTime),
        labels: col(row, 8, json)?,
        created_at: time(row, 9)?,
    })
}

pub(crate) const WARRANT_COLS: &str =
    "jti, parent, agent, task, human, sub, mode, scope, chain, kid, issued_at, expires_at, budget";

/// A budget as stored: `NULL` when there is none, else a JSON object counter -> limit.
pub(crate) fn budget_text(budget: &BTreeMap<String, i64>) -> Result<Option<String>, StoreError> {
    if budget.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(budget).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
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
    })
}

fn task_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: col(row, 0, TaskId::try_from)?,
        purpose: row.get(1)?,
        human: col(row, 2, HumanId::try_from)?,
        root_agent: col(row, 3, AgentId::try_from)?,
        created_at: time(row, 4)?,
        deadline: time(row, 5)?,
    })
}

const KEY_COLS: &str = "kid, purpose, seed, sealed, created_at, retired_at";

fn key_row(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let purpose: String = row.get(1)?;
    let purpose = KeyPurpose::parse(&purpose).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, Type::Text, format!("unknown key purpose `{purpose}`").into())
    })?;
    let sealed: Option<Vec<u8>> = row.get(3)?;
    let material = match sealed {
        Some(sealed) => KeyMaterial::Sealed(sealed),
        None => {
            let seed = Zeroizing::new(row.get::<_, Vec<u8>>(2)?);
            let seed = <[u8; 32]>::try_from(seed.as_slice())
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Blob, Box::new(e)))?;
            KeyMaterial::Plaintext(Zeroizing::new(seed))
        }
    };
    Ok(StoredKey {
        kid: row.get(0)?,
        purpose,
        material,
        created_at: time(row, 4)?,
        retired_at: row.get::<_, Option<i64>>(5)?.map(UnixTime),
    })
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let applied = usize::try_from(applied).map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
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

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and migrates it.
    /// On Unix the file is restricted to its owner (mode 0600): it holds signing keys.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Backend(format!("cannot restrict `{}`: {e}", path.display())))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::configure(&mut conn)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Opens the existing database at `path` for reading only: nothing is written,
    /// migrated or chmod-ed, so an audit log can be verified or exported from read-only
    /// media (a snapshot, a read-only mount) and verification never changes what it
    /// verifies. A WAL database whose `-wal` file is present is read with it; one without
    /// (closed cleanly, every record in the main file) is read as immutable, since SQLite
    /// could not create its wal-index on a read-only file system. Refuses a database whose
    /// schema is not this build's.
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
        if usize::try_from(applied).ok() != Some(MIGRATIONS.len()) {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {applied}, this build reads version {}; open it read-write \
                 (`warrant serve`) with a matching build first",
                MIGRATIONS.len()
            )));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        Self::configure(&mut conn)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    fn configure(conn: &mut Connection) -> Result<(), StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(conn)
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Backend("the connection lock is poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }
}

/// Whether `w` may be recorded now: the checks of [`WarrantStore::record_warrant`], run
/// inside its transaction.
fn issuable(
    tx: &rusqlite::Transaction<'_>,
    w: &WarrantRecord,
    new_task: Option<&TaskRecord>,
    guard: &IssueGuard,
) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Revoked(why));
    if let Some(parent) = &w.parent {
        let revoked: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM revoked_warrants WHERE jti = ?1)", [parent.as_str()], |r| {
                r.get(0)
            })?;
        if revoked {
            return refuse(format!("its parent `{parent}` has been revoked"));
        }
    }
    if new_task.is_none() {
        let ended: Option<Option<i64>> =
            tx.query_row("SELECT completed_at FROM tasks WHERE id = ?1", [w.task.as_str()], |r| r.get(0)).optional()?;
        if let Some(Some(_)) = ended {
            return refuse(format!("task `{}` has ended", w.task));
        }
    }
    let active_agent = to_text(&AgentStatus::Active)?;
    let active_human = to_text(&HumanStatus::Active)?;
    let mut humans = vec![w.human.as_str().to_owned()];
    for agent in &w.chain {
        let row: Option<(String, String)> = tx
            .query_row("SELECT status, owner FROM agents WHERE id = ?1", [agent.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match row {
            Some((status, owner)) if status == active_agent => humans.push(owner),
            Some(_) => return refuse(format!("agent `{agent}` of its chain is not active")),
            None => return refuse(format!("agent `{agent}` of its chain is not registered")),
        }
    }
    for human in &humans {
        let status: Option<String> =
            tx.query_row("SELECT status FROM humans WHERE id = ?1", [human], |r| r.get(0)).optional()?;
        if status.as_deref() != Some(active_human.as_str()) {
            return refuse(format!("human `{human}` is not active"));
        }
    }
    if let Some(session) = &guard.session {
        let revoked: Option<Option<i64>> = tx
            .query_row(
                "SELECT revoked_at FROM sessions WHERE jti = ?1 AND human = ?2",
                [session, w.human.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        match revoked {
            Some(None) => {}
            Some(Some(_)) => return refuse("the session it was exchanged for has been revoked".into()),
            None => return refuse("the session it was exchanged for is not known".into()),
        }
    }
    let as_of = i64::try_from(guard.as_of).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare("SELECT kind, target FROM revocations WHERE rowid > ?1")?;
    let since = stmt.query_map([as_of], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in since {
        let (kind, target) = row?;
        let hit = match kind.as_str() {
            "agent" => w.chain.iter().any(|a| a.as_str() == target),
            "task" => w.task.as_str() == target,
            "human" => w.human.as_str() == target,
            "warrant" => w.parent.as_ref().is_some_and(|p| p.as_str() == target),
            _ => true,
        };
        if hit {
            return refuse(format!("{kind} `{target}` was revoked while it was issued"));
        }
    }
    Ok(())
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        jti: row.get(0)?,
        human: col(row, 1, |s| HumanId::parse(&s))?,
        purpose: col(row, 2, word::<SessionPurpose>)?,
        issued_at: time(row, 3)?,
        expires_at: time(row, 4)?,
        revoked_at: row.get::<_, Option<i64>>(5)?.map(UnixTime),
    })
}

#[async_trait]
impl HumanStore for SqliteStore {
    async fn insert_human(&self, human: &Human) -> Result<(), StoreError> {
        let h = human.clone();
        let entitlements = serde_json::to_string(&h.entitlements).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let status = to_text(&h.status)?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO humans (id, name, email, entitlements, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![h.id.as_str(), h.name, h.email, entitlements, status, h.created_at.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {HUMAN_COLS} FROM humans WHERE id = ?1"), [id.as_str()], human_row)
                .optional()?)
        })
        .await
    }

    async fn human_by_email(&self, email: &str) -> Result<Option<Human>, StoreError> {
        let email = email.to_owned();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {HUMAN_COLS} FROM humans WHERE email = ?1"), [email], human_row)
                .optional()?)
        })
        .await
    }

    async fn list_humans(&self) -> Result<Vec<Human>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare(&format!("SELECT {HUMAN_COLS} FROM humans ORDER BY created_at, id"))?;
            let rows = stmt.query_map([], human_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_human_status(&self, id: &HumanId, status: HumanStatus) -> Result<bool, StoreError> {
        let id = id.clone();
        let status = to_text(&status)?;
        self.run(move |c| {
            Ok(c.execute("UPDATE humans SET status = ?2 WHERE id = ?1", params![id.as_str(), status])? > 0)
        })
        .await
    }

    async fn record_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let s = session.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO sessions (jti, human, purpose, issued_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.jti,
                    s.human.as_str(),
                    s.purpose.as_str(),
                    s.issued_at.0,
                    s.expires_at.0,
                    s.revoked_at.map(|t| t.0)
                ],
            )?;
            // Expired sessions need no record: their tokens no longer verify.
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [s.issued_at.0])?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, jti: &str) -> Result<Option<SessionRecord>, StoreError> {
        let jti = jti.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT jti, human, purpose, issued_at, expires_at, revoked_at FROM sessions WHERE jti = ?1",
                [jti],
                session_row,
            )
            .optional()?)
        })
        .await
    }

    async fn revoke_sessions(&self, human: &HumanId, now: UnixTime) -> Result<u64, StoreError> {
        let human = human.clone();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE human = ?1 AND revoked_at IS NULL",
                params![human.as_str(), now.0],
            )?;
            Ok(n as u64)
        })
        .await
    }
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn insert_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let a = agent.clone();
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let max_scope = serde_json::to_string(&a.max_scope).map_err(corrupt)?;
        let public_key = serde_json::to_string(&a.public_key).map_err(corrupt)?;
        let labels = serde_json::to_string(&a.labels).map_err(corrupt)?;
        let (mode, status) = (to_text(&a.mode)?, to_text(&a.status)?);
        self.run(move |c| {
            c.execute(
                &format!("INSERT INTO agents ({AGENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    a.id.as_str(),
                    a.name,
                    a.owner.as_str(),
                    mode,
                    max_scope,
                    public_key,
                    status,
                    a.expires_at.map(|t| t.0),
                    labels,
                    a.created_at.0
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1"), [id.as_str()], agent_row)
                .optional()?)
        })
        .await
    }

    async fn list_agents(&self, owner: Option<&HumanId>) -> Result<Vec<Agent>, StoreError> {
        let owner = owner.map(|o| o.as_str().to_owned());
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {AGENT_COLS} FROM agents WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([owner], agent_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus) -> Result<bool, StoreError> {
        let id = id.clone();
        let status = to_text(&status)?;
        self.run(move |c| {
            Ok(c.execute("UPDATE agents SET status = ?2 WHERE id = ?1", params![id.as_str(), status])? > 0)
        })
        .await
    }

    async fn set_agent_max_scope(&self, id: &AgentId, max_scope: &Scope) -> Result<bool, StoreError> {
        let id = id.clone();
        let max_scope = serde_json::to_string(max_scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.run(move |c| {
            Ok(c.execute("UPDATE agents SET max_scope = ?2 WHERE id = ?1", params![id.as_str(), max_scope])? > 0)
        })
        .await
    }

    async fn set_agent_key(&self, id: &AgentId, key: &PublicJwk, at: UnixTime) -> Result<bool, StoreError> {
        let id = id.clone();
        let key = serde_json::to_string(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.run(move |c| {
            let tx = c.transaction()?;
            if tx.execute("UPDATE agents SET public_key = ?2 WHERE id = ?1", params![id.as_str(), key])? == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO agent_keys (agent_id, set_at) VALUES (?1, ?2) \
                 ON CONFLICT(agent_id) DO UPDATE SET set_at = excluded.set_at",
                params![id.as_str(), at.0],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn agent_key_times(&self) -> Result<Vec<(AgentId, UnixTime)>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT a.id, COALESCE(k.set_at, a.created_at) FROM agents a \
                 LEFT JOIN agent_keys k ON k.agent_id = a.id ORDER BY a.created_at, a.id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((col(r, 0, AgentId::try_from)?, time(r, 1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"))?;
            let rows = stmt.query_map([], key_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn rotate_in(&self, key: &StoredKey) -> Result<(), StoreError> {
        let KeyMaterial::Sealed(sealed) = &key.material else {
            return Err(StoreError::Backend("refusing to store a signing key that is not sealed".into()));
        };
        let (kid, purpose, sealed, created_at) = (key.kid.clone(), key.purpose, sealed.clone(), key.created_at);
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL AND purpose = ?2",
                params![created_at.0, purpose.as_str()],
            )?;
            tx.execute(
                "INSERT INTO signing_keys (kid, purpose, seed, sealed, created_at, retired_at) \
                 VALUES (?1, ?2, x'', ?3, ?4, NULL)",
                params![kid, purpose.as_str(), sealed, created_at.0],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn seal_keys(&self, sealed: &[(String, Vec<u8>)]) -> Result<usize, StoreError> {
        let sealed = sealed.to_vec();
        self.run(move |c| {
            // Zero the freed bytes of each plaintext seed inside its page, not just unlink them.
            c.pragma_update(None, "secure_delete", "ON")?;
            let written = (|| -> Result<usize, StoreError> {
                let tx = c.transaction()?;
                let mut changed = 0;
                for (kid, blob) in &sealed {
                    changed += tx.execute(
                        "UPDATE signing_keys SET sealed = ?2, seed = x'' WHERE kid = ?1 AND sealed IS NULL",
                        params![kid, blob],
                    )?;
                }
                tx.commit()?;
                Ok(changed)
            })();
            let restored = c.pragma_update(None, "secure_delete", "OFF");
            let changed = written?;
            restored?;
            if changed > 0 {
                // Copy the rewritten pages into the main file and empty the write-ahead
                // log, whose older frames still hold the pages with the plaintext seeds.
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(changed)
        })
        .await
    }

    async fn last_expiry_for_key(&self, kid: &str) -> Result<Option<UnixTime>, StoreError> {
        let kid = kid.to_owned();
        self.run(move |c| {
            let max: Option<i64> =
                c.query_row("SELECT MAX(expires_at) FROM warrants WHERE kid = ?1", [kid], |r| r.get(0))?;
            Ok(max.map(UnixTime))
        })
        .await
    }
}

#[async_trait]
impl WarrantStore for SqliteStore {
    async fn spend_assertion(
        &self,
        agent: &AgentId,
        jti: &str,
        exp: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (agent, jti) = (agent.clone(), jti.to_owned());
        self.run(move |c| {
            c.execute("DELETE FROM spent_assertions WHERE exp < ?1", [now.0])?;
            let inserted = c.execute(
                "INSERT OR IGNORE INTO spent_assertions (agent, jti, exp) VALUES (?1, ?2, ?3)",
                params![agent.as_str(), jti, exp.0],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn record_warrant(
        &self,
        warrant: &WarrantRecord,
        new_task: Option<&TaskRecord>,
        guard: &IssueGuard,
    ) -> Result<(), StoreError> {
        let (w, task, guard) = (warrant.clone(), new_task.cloned(), guard.clone());
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let scope = serde_json::to_string(&w.scope).map_err(corrupt)?;
        let chain = serde_json::to_string(&w.chain).map_err(corrupt)?;
        let mode = to_text(&w.mode)?;
        let budget = budget_text(&w.budget)?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            issuable(&tx, &w, task.as_ref(), &guard)?;
            if let Some(t) = task {
                tx.execute(
                    "INSERT INTO tasks (id, purpose, human, root_agent, created_at, deadline) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![t.id.as_str(), t.purpose, t.human.as_str(), t.root_agent.as_str(), t.created_at.0, t.deadline.0],
                )?;
            }
            tx.execute(
                &format!("INSERT INTO warrants ({WARRANT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![
                    w.jti.as_str(),
                    w.parent.as_ref().map(WarrantId::as_str),
                    w.agent.as_str(),
                    w.task.as_str(),
                    w.human.as_str(),
                    w.sub,
                    mode,
                    scope,
                    chain,
                    w.kid,
                    w.issued_at.0,
                    w.expires_at.0,
                    budget
                ],
            )?;
            {
                // Every agent of the chain, so "every warrant whose chain contains this
                // agent" is an index lookup (agent revocation).
                let mut stmt = tx.prepare("INSERT OR IGNORE INTO warrant_agents (agent, jti) VALUES (?1, ?2)")?;
                for agent in &w.chain {
                    stmt.execute(params![agent.as_str(), w.jti.as_str()])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_warrant(&self, jti: &WarrantId) -> Result<Option<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            Ok(c.query_row(&format!("SELECT {WARRANT_COLS} FROM warrants WHERE jti = ?1"), [jti.as_str()], warrant_row)
                .optional()?)
        })
        .await
    }

    async fn child_warrants(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            let mut stmt =
                c.prepare(&format!("SELECT {WARRANT_COLS} FROM warrants WHERE parent = ?1 ORDER BY issued_at, rowid"))?;
            let rows = stmt.query_map([jti.as_str()], warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, purpose, human, root_agent, created_at, deadline FROM tasks WHERE id = ?1",
                [id.as_str()],
                task_row,
            )
            .optional()?)
        })
        .await
    }

    async fn count_live_warrants(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.run(move |c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM warrants WHERE expires_at > ?1", [now.0], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn task_warrants(&self, id: &TaskId) -> Result<Vec<WarrantRecord>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            let mut stmt =
                c.prepare(&format!("SELECT {WARRANT_COLS} FROM warrants WHERE task = ?1 ORDER BY issued_at, rowid"))?;
            let rows = stmt.query_map([id.as_str()], warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// `MIGRATIONS` is every file of `migrations/sqlite/`, in file-number order, each file
    /// numbered from `0001` without a gap: a migration file that is not in the list (or a
    /// list entry out of place) fails here rather than leaving a database unmigrated.
    #[test]
    fn migrations_are_every_file_in_number_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("the migrations directory")
            .map(|entry| {
                let path = entry.expect("a directory entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name").to_owned();
                (name, std::fs::read_to_string(&path).expect("a readable migration"))
            })
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "every file of {} is listed in MIGRATIONS", dir.display());
        for (i, ((name, sql), listed)) in files.iter().zip(MIGRATIONS).enumerate() {
            let number = format!("{:04}_", i + 1);
            assert!(
                name.starts_with(&number) && name.ends_with(".sql"),
                "migration file `{name}` should be numbered `{number}…` and end in `.sql`"
            );
            assert_eq!(sql, listed, "MIGRATIONS[{i}] is the text of `{name}`");
        }
    }
}
