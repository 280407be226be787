//! `WarrantStore` and `RevocationStore` for SQLite: tasks, issued warrants, spent client
//! assertions, and the revocations that end them.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use warrant_core::{AgentId, AgentStatus, HumanId, HumanStatus, TaskId, UnixTime, WarrantId};

use super::{budget_text, col, time, to_text, warrant_row, SqliteStore, WARRANT_COLS};
use crate::columns::revocation_names;
use crate::records::{
    DelegationStart, Issuance, IssuanceStart, IssueGuard, RevocationKind, RevocationRecord, TaskRecord, WarrantRecord,
};
use crate::{RevocationStore, StoreError, WarrantStore};

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

/// Spends a client assertion; `false` when it was spent already. Expired ones are purged.
fn spend(c: &Connection, agent: &AgentId, jti: &str, exp: UnixTime, now: UnixTime) -> Result<bool, StoreError> {
    c.prepare_cached("DELETE FROM spent_assertions WHERE exp < ?1")?.execute([now.0])?;
    let inserted = c
        .prepare_cached("INSERT OR IGNORE INTO spent_assertions (agent, jti, exp) VALUES (?1, ?2, ?3)")?
        .execute(params![agent.as_str(), jti, exp.0])?;
    Ok(inserted == 1)
}

/// The columns of a warrant's row that are stored as text, encoded before its write is
/// queued, so that the group commit's one thread does not serialize them.
pub(super) struct WarrantText {
    mode: String,
    scope: String,
    chain: String,
    budget: Option<String>,
    claims: Option<String>,
}

impl WarrantText {
    /// `w`'s text columns.
    pub(super) fn of(w: &WarrantRecord) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        Ok(WarrantText {
            mode: to_text(&w.mode)?,
            scope: serde_json::to_string(&w.scope).map_err(corrupt)?,
            chain: serde_json::to_string(&w.chain).map_err(corrupt)?,
            budget: budget_text(&w.budget)?,
            claims: w.claims.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?,
        })
    }
}

/// Records `issuance`, whose warrant's text columns are `text`, in `tx`
/// ([`crate::WarrantStore::record_warrant`]): its checks, the assertion spent, the task,
/// the warrant and its chain's index rows. On an error the caller rolls back what was
/// written (the write's savepoint).
pub(super) fn record(tx: &Connection, issuance: &Issuance, text: &WarrantText) -> Result<(), StoreError> {
    let Issuance { warrant: w, new_task: task, guard } = issuance;
    issuable(tx, w, task.as_ref(), guard)?;
    if let Some(a) = &guard.assertion {
        if !spend(tx, &a.agent, &a.jti, a.exp, a.now)? {
            return Err(StoreError::Replayed("the client assertion was already used".into()));
        }
    }
    if let Some(t) = task {
        tx.prepare_cached(
            "INSERT INTO tasks (id, purpose, human, root_agent, created_at, deadline) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            t.id.as_str(),
            t.purpose,
            t.human.as_str(),
            t.root_agent.as_str(),
            t.created_at.0,
            t.deadline.0
        ])?;
    }
    tx.prepare_cached(&format!(
        "INSERT INTO warrants ({WARRANT_COLS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        w.jti.as_str(),
        w.parent.as_ref().map(WarrantId::as_str),
        w.agent.as_str(),
        w.task.as_str(),
        w.human.as_str(),
        w.sub,
        text.mode,
        text.scope,
        text.chain,
        w.kid,
        w.issued_at.0,
        w.expires_at.0,
        text.budget,
        text.claims
    ])?;
    // Every agent of the chain, so "every warrant whose chain contains this agent" is an
    // index lookup (agent revocation).
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO warrant_agents (agent, jti) VALUES (?1, ?2)")?;
    for agent in &w.chain {
        stmt.execute(params![agent.as_str(), w.jti.as_str()])?;
    }
    Ok(())
}

/// Whether `w` may be recorded now: the checks of [`WarrantStore::record_warrant`], run
/// inside its transaction.
fn issuable(
    tx: &Connection,
    w: &WarrantRecord,
    new_task: Option<&TaskRecord>,
    guard: &IssueGuard,
) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Revoked(why));
    if let Some(parent) = &w.parent {
        let revoked: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM revoked_warrants WHERE jti = ?1)")?
            .query_row([parent.as_str()], |r| r.get(0))?;
        if revoked {
            return refuse(format!("its parent `{parent}` has been revoked"));
        }
    }
    if new_task.is_none() {
        let ended: Option<Option<i64>> = tx
            .prepare_cached("SELECT completed_at FROM tasks WHERE id = ?1")?
            .query_row([w.task.as_str()], |r| r.get(0))
            .optional()?;
        if let Some(Some(_)) = ended {
            return refuse(format!("task `{}` has ended", w.task));
        }
    }
    let active_agent = to_text(&AgentStatus::Active)?;
    let active_human = to_text(&HumanStatus::Active)?;
    let mut humans = vec![w.human.as_str().to_owned()];
    for agent in &w.chain {
        let row: Option<(String, String)> = tx
            .prepare_cached("SELECT status, owner FROM agents WHERE id = ?1")?
            .query_row([agent.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((status, owner)) if status == active_agent => humans.push(owner),
            Some(_) => return refuse(format!("agent `{agent}` of its chain is not active")),
            None => return refuse(format!("agent `{agent}` of its chain is not registered")),
        }
    }
    for human in &humans {
        let status: Option<String> = tx
            .prepare_cached("SELECT status FROM humans WHERE id = ?1")?
            .query_row([human], |r| r.get(0))
            .optional()?;
        if status.as_deref() != Some(active_human.as_str()) {
            return refuse(format!("human `{human}` is not active"));
        }
    }
    if let Some(session) = &guard.session {
        let revoked: Option<Option<i64>> = tx
            .prepare_cached("SELECT revoked_at FROM sessions WHERE jti = ?1 AND human = ?2")?
            .query_row([session, w.human.as_str()], |r| r.get(0))
            .optional()?;
        match revoked {
            Some(None) => {}
            Some(Some(_)) => return refuse("the session it was exchanged for has been revoked".into()),
            None => return refuse("the session it was exchanged for is not known".into()),
        }
    }
    let as_of = i64::try_from(guard.as_of).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached("SELECT kind, target FROM revocations WHERE rowid > ?1")?;
    let since = stmt.query_map([as_of], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in since {
        let (kind, target) = row?;
        if revocation_names(&kind, &target, w) {
            return refuse(format!("{kind} `{target}` was revoked while it was issued"));
        }
    }
    Ok(())
}

/// How many warrants are unexpired at `?1` (the live-warrant gauge, read at every
/// metrics scrape): counted in `warrants_expires`, not over every warrant ever issued.
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM warrants WHERE expires_at > ?1";

/// The revocation watermark: the last revocation's rowid (0 before the first).
fn watermark(c: &Connection) -> Result<u64, StoreError> {
    let seq: i64 = c.prepare_cached("SELECT COALESCE(MAX(rowid), 0) FROM revocations")?.query_row([], |r| r.get(0))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

#[async_trait]
impl WarrantStore for SqliteStore {
    async fn issuance_start(&self, agent: &AgentId) -> Result<IssuanceStart, StoreError> {
        let id = agent.clone();
        // One read connection for the three reads; the watermark is read first.
        self.run_point(move |c| {
            let watermark = watermark(c)?;
            let agent = super::agents::agent(c, &id)?;
            let owner = match &agent {
                Some(a) => super::humans::human(c, &a.owner)?,
                None => None,
            };
            Ok(IssuanceStart { watermark, agent, owner })
        })
        .await
    }

    async fn delegation_start(
        &self,
        parent: &WarrantId,
        actor: Option<&AgentId>,
        chain: &[AgentId],
        human: &HumanId,
    ) -> Result<DelegationStart, StoreError> {
        let (parent, actor, chain, human) = (parent.clone(), actor.cloned(), chain.to_vec(), human.clone());
        // One read connection for every read; the watermark first.
        self.run_point(move |c| {
            let watermark = watermark(c)?;
            let parent_recorded = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM warrants WHERE jti = ?1)")?
                .query_row([parent.as_str()], |row| row.get::<_, bool>(0))?;
            let actor = actor.map(|id| super::agents::agent(c, &id)).transpose()?.flatten();
            let actor_owner = match &actor {
                Some(a) => super::humans::human(c, &a.owner)?,
                None => None,
            };
            let chain = chain.iter().map(|id| super::agents::agent(c, id)).collect::<Result<Vec<_>, _>>()?;
            let mut chain_owners: Vec<warrant_core::Human> = Vec::new();
            for agent in chain.iter().flatten() {
                if !chain_owners.iter().any(|o| o.id == agent.owner) {
                    chain_owners.extend(super::humans::human(c, &agent.owner)?);
                }
            }
            let human = super::humans::human(c, &human)?;
            Ok(DelegationStart { watermark, parent_recorded, actor, actor_owner, chain, chain_owners, human })
        })
        .await
    }

    async fn spend_assertion(
        &self,
        agent: &AgentId,
        jti: &str,
        exp: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (agent, jti) = (agent.clone(), jti.to_owned());
        self.write(move |c| spend(c, &agent, &jti, exp, now)).await
    }

    async fn record_warrant(
        &self,
        warrant: &WarrantRecord,
        new_task: Option<&TaskRecord>,
        guard: &IssueGuard,
    ) -> Result<(), StoreError> {
        let text = WarrantText::of(warrant)?;
        let issuance = Issuance { warrant: warrant.clone(), new_task: new_task.cloned(), guard: guard.clone() };
        self.write(move |tx| record(tx, &issuance, &text)).await
    }

    async fn get_warrant(&self, jti: &WarrantId) -> Result<Option<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run_point(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {WARRANT_COLS} FROM warrants WHERE jti = ?1"))?
                .query_row([jti.as_str()], warrant_row)
                .optional()?)
        })
        .await
    }

    async fn child_warrants(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {WARRANT_COLS} FROM warrants WHERE parent = ?1 ORDER BY issued_at, rowid"
            ))?;
            let rows = stmt.query_map([jti.as_str()], warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.clone();
        self.run_point(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, purpose, human, root_agent, created_at, deadline FROM tasks WHERE id = ?1",
            )?
            .query_row([id.as_str()], task_row)
            .optional()?)
        })
        .await
    }

    async fn count_live_warrants(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.run(move |c| {
            let n: i64 = c.prepare_cached(COUNT_LIVE)?.query_row([now.0], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn task_warrants(&self, id: &TaskId) -> Result<Vec<WarrantRecord>, StoreError> {
        let id = id.clone();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {WARRANT_COLS} FROM warrants WHERE task = ?1 ORDER BY issued_at, rowid"
            ))?;
            let rows = stmt.query_map([id.as_str()], warrant_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// `sub(jti)`: the warrant `?1` and every warrant delegated from it, at any depth, each
/// found through the `warrants_parent` index (a macro, so that `concat!` can use it).
macro_rules! subtree {
    () => {
        "WITH RECURSIVE sub(jti) AS (SELECT ?1 UNION SELECT w.jti FROM warrants w JOIN sub ON w.parent = sub.jti)"
    };
}

/// `warrant_subtree`'s select of the columns `cols` (each prefixed `w.`): the subtree of
/// `?1`, oldest first.
fn subtree_select(cols: &str) -> String {
    format!(
        concat!(
            subtree!(),
            " SELECT {} FROM sub CROSS JOIN warrants w ON w.jti = sub.jti ORDER BY w.issued_at, w.rowid"
        ),
        cols
    )
}

// The unexpired warrants a revocation ends, by its kind (`?1`: its target, `?2`: now), as
// `(jti, expires_at)`. Each is a walk of indexes from the target, so what a revocation
// costs grows with what it ends, not with how many warrants the store holds. `CROSS JOIN`
// fixes the loop order: left as a plain join, SQLite's planner may run the subtree query
// the other way round, scanning every stored warrant and probing the subtree for each.

/// A warrant: its subtree.
const ENDS_WARRANT: &str = concat!(
    subtree!(),
    " SELECT w.jti, w.expires_at FROM sub CROSS JOIN warrants w ON w.jti = sub.jti WHERE w.expires_at > ?2"
);
/// An agent: every warrant whose chain holds it.
const ENDS_AGENT: &str = "SELECT w.jti, w.expires_at FROM warrant_agents a CROSS JOIN warrants w ON w.jti = a.jti \
     WHERE a.agent = ?1 AND w.expires_at > ?2";
/// A task: its warrants.
const ENDS_TASK: &str = "SELECT jti, expires_at FROM warrants WHERE task = ?1 AND expires_at > ?2";
/// A human: every warrant tracing to them.
const ENDS_HUMAN: &str = "SELECT jti, expires_at FROM warrants WHERE human = ?1 AND expires_at > ?2";

fn revocation_row(row: &Row<'_>) -> rusqlite::Result<RevocationRecord> {
    let kind: String = row.get(1)?;
    let kind = serde_json::from_value::<RevocationKind>(serde_json::Value::String(kind))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(RevocationRecord { id: row.get(0)?, kind, target: row.get(2)?, reason: row.get(3)?, at: UnixTime(row.get(4)?) })
}

fn warrants(
    c: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WarrantRecord>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params, warrant_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revocation_watermark(&self) -> Result<u64, StoreError> {
        self.run_point(|c| watermark(c)).await
    }

    async fn revoke(
        &self,
        revocation: &RevocationRecord,
        now: UnixTime,
    ) -> Result<Vec<(WarrantId, UnixTime)>, StoreError> {
        let rev = revocation.clone();
        let kind = to_text(&rev.kind)?;
        let (active, suspended) = (to_text(&AgentStatus::Active)?, to_text(&AgentStatus::Suspended)?);
        self.write(move |tx| {
            let select = match rev.kind {
                RevocationKind::Warrant => ENDS_WARRANT,
                RevocationKind::Agent => {
                    tx.prepare_cached("UPDATE agents SET status = ?2 WHERE id = ?1 AND status = ?3")?
                        .execute(params![rev.target, suspended, active])?;
                    ENDS_AGENT
                }
                RevocationKind::Task => {
                    tx.prepare_cached("UPDATE tasks SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL")?
                        .execute(params![rev.target, rev.at.0])?;
                    ENDS_TASK
                }
                RevocationKind::Human => {
                    tx.prepare_cached("UPDATE sessions SET revoked_at = ?2 WHERE human = ?1 AND revoked_at IS NULL")?
                        .execute(params![rev.target, rev.at.0])?;
                    ENDS_HUMAN
                }
            };
            let targets = {
                let mut stmt = tx.prepare_cached(select)?;
                let rows = stmt
                    .query_map(params![rev.target, now.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(jti, exp)| {
                        WarrantId::parse(&jti)
                            .map(|j| (j, UnixTime(exp)))
                            .map_err(|e| StoreError::Corrupt(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            tx.prepare_cached("INSERT INTO revocations (id, kind, target, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![rev.id, kind, rev.target, rev.reason, rev.at.0])?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO revoked_warrants (jti, revocation, expires_at) VALUES (?1, ?2, ?3)",
                )?;
                // Each warrant this revocation ends (not one an earlier revocation ended)
                // goes into the transmitter's outbox in the same transaction.
                let mut outbox =
                    tx.prepare_cached("INSERT INTO ssf_events (jti, revocation, at) VALUES (?1, ?2, ?3)")?;
                for (jti, exp) in &targets {
                    if stmt.execute(params![jti.as_str(), rev.id, exp.0])? > 0 {
                        outbox.execute(params![jti.as_str(), rev.id, rev.at.0])?;
                    }
                }
            }
            Ok(targets)
        })
        .await
    }

    async fn revoked_warrants(&self, now: UnixTime) -> Result<Vec<WarrantId>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached("SELECT jti FROM revoked_warrants WHERE expires_at > ?1")?;
            let rows = stmt
                .query_map([now.0], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| WarrantId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ended_tasks(&self) -> Result<Vec<TaskId>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM tasks WHERE completed_at IS NOT NULL")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| TaskId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn warrant_subtree(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let jti = jti.clone();
        self.run(move |c| {
            let cols = WARRANT_COLS.split(", ").map(|col| format!("w.{col}")).collect::<Vec<_>>().join(", ");
            warrants(c, &subtree_select(&cols), [jti.as_str()])
        })
        .await
    }

    async fn live_warrants_with_agent(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let agent = agent.clone();
        self.run(move |c| {
            let cols = WARRANT_COLS.split(", ").map(|col| format!("w.{col}")).collect::<Vec<_>>().join(", ");
            warrants(
                c,
                &format!(
                    "SELECT {cols} FROM warrant_agents a CROSS JOIN warrants w ON w.jti = a.jti \
                     WHERE a.agent = ?1 AND w.expires_at > ?2 ORDER BY w.issued_at, w.rowid"
                ),
                params![agent.as_str(), now.0],
            )
        })
        .await
    }

    async fn live_warrants_of_human(&self, human: &HumanId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let human = human.clone();
        self.run(move |c| {
            warrants(
                c,
                &format!("SELECT {WARRANT_COLS} FROM warrants WHERE human = ?1 AND expires_at > ?2 ORDER BY issued_at"),
                params![human.as_str(), now.0],
            )
        })
        .await
    }

    async fn revocation_of(&self, jti: &WarrantId) -> Result<Option<RevocationRecord>, StoreError> {
        let jti = jti.clone();
        self.run_point(move |c| {
            Ok(c.prepare_cached(
                "SELECT r.id, r.kind, r.target, r.reason, r.at FROM revoked_warrants w \
                 JOIN revocations r ON r.id = w.revocation WHERE w.jti = ?1",
            )?
            .query_row([jti.as_str()], revocation_row)
            .optional()?)
        })
        .await
    }

    async fn revocation(&self, id: &str) -> Result<Option<(RevocationRecord, Vec<WarrantId>)>, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            let Some(record) = c
                .prepare_cached("SELECT id, kind, target, reason, at FROM revocations WHERE id = ?1")?
                .query_row([&id], revocation_row)
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached("SELECT jti FROM revoked_warrants WHERE revocation = ?1 ORDER BY jti")?;
            let jtis = stmt
                .query_map([&id], |r| r.get::<_, String>(0))?
                .map(|jti| {
                    WarrantId::parse(&jti?).map_err(|e| StoreError::Corrupt(format!("revoked_warrants.jti: {e}")))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some((record, jtis)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::{migrated_in_memory, query_plan};
    use super::{subtree_select, COUNT_LIVE, ENDS_AGENT, ENDS_HUMAN, ENDS_TASK, ENDS_WARRANT};

    /// The steps of SQLite's plan for `sql`, every parameter bound to a text.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        let params = vec!["x"; c.prepare(sql).unwrap().parameter_count()];
        query_plan(c, sql, rusqlite::params_from_iter(params))
    }

    /// What a revocation selects is found through indexes: no step of the plan reads every
    /// row of `warrants` (or of `warrant_agents`), so revoking does not slow down as the
    /// store fills up.
    #[test]
    fn revocation_targets_are_index_walks() {
        let c = migrated_in_memory();
        let subtree = subtree_select("w.jti, w.expires_at");
        for sql in [ENDS_WARRANT, ENDS_AGENT, ENDS_TASK, ENDS_HUMAN, subtree.as_str()] {
            let steps = plan(&c, sql);
            assert!(
                steps.iter().all(|step| !step.starts_with("SCAN w") && !step.starts_with("SCAN a")),
                "`{sql}` scans a whole table: {steps:?}"
            );
            assert!(steps.iter().any(|step| step.starts_with("SEARCH")), "`{sql}`: {steps:?}");
        }
    }

    /// The live-warrant gauge counts the unexpired warrants in `warrants_expires`; it read
    /// every warrant ever issued (expired ones are kept) at every metrics scrape.
    #[test]
    fn the_live_warrant_count_reads_the_unexpired_only() {
        let c = migrated_in_memory();
        let steps = plan(&c, COUNT_LIVE);
        assert!(steps.iter().any(|step| step.contains("USING COVERING INDEX warrants_expires")), "{steps:?}");
    }
}
