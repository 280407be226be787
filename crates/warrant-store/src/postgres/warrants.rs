//! `WarrantStore` and `RevocationStore` for PostgreSQL: tasks, issued warrants, spent
//! client assertions, and the revocations that end them.
//!
//! Recording a warrant and recording a revocation are both write transactions, so they
//! run one after the other under the store's write lock (see the module docs of
//! `postgres`): a revocation selects the warrants it ends after every warrant recorded
//! before it has committed, and a warrant's checks see every revocation committed before
//! it. A warrant recorded concurrently with a revocation is therefore either refused or
//! ended, as on SQLite.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use warrant_core::{AgentId, AgentStatus, HumanId, HumanStatus, TaskId, UnixTime, WarrantId};

use super::{cached, col, get, lock_writes, time, warrant_cols, warrant_row, PgStore};
use crate::columns::revocation_names;
use crate::columns::{budget_text, to_text, word, WARRANT_COLS};
use crate::records::{
    DelegationStart, Issuance, IssuanceStart, IssueGuard, RevocationKind, RevocationRecord, TaskRecord, WarrantRecord,
};
use crate::{RevocationStore, StoreError, WarrantStore};

fn task_row(row: &Row) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        id: col(row, 0, TaskId::try_from)?,
        purpose: get(row, 1)?,
        human: col(row, 2, HumanId::try_from)?,
        root_agent: col(row, 3, AgentId::try_from)?,
        created_at: time(row, 4)?,
        deadline: time(row, 5)?,
    })
}

/// Spends a client assertion; `false` when it was spent already. Expired ones are purged.
async fn spend(
    tx: &cached::Tx<'_>,
    agent: &AgentId,
    jti: &str,
    exp: UnixTime,
    now: UnixTime,
) -> Result<bool, StoreError> {
    cached::execute(tx, "DELETE FROM spent_assertions WHERE exp < $1", &[&now.0]).await?;
    let inserted = cached::execute(
        tx,
        "INSERT INTO spent_assertions (agent, jti, exp) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&agent.as_str(), &jti, &exp.0],
    )
    .await?;
    Ok(inserted == 1)
}

/// Records `issuance` in `tx`, which holds the write lock
/// ([`WarrantStore::record_warrant`]): its checks, the assertion spent, the task, the
/// warrant and its chain's index rows. On an error the caller rolls `tx` back.
pub(super) async fn record(tx: &cached::Tx<'_>, issuance: &Issuance) -> Result<(), StoreError> {
    let Issuance { warrant: w, new_task, guard } = issuance;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let scope = serde_json::to_string(&w.scope).map_err(corrupt)?;
    let chain = serde_json::to_string(&w.chain).map_err(corrupt)?;
    let mode = to_text(&w.mode)?;
    let budget = budget_text(&w.budget)?;
    let claims = w.claims.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?;
    let chain_agents: Vec<&str> = w.chain.iter().map(AgentId::as_str).collect();
    issuable(tx, w, new_task.as_ref(), guard).await?;
    if let Some(a) = &guard.assertion {
        if !spend(tx, &a.agent, &a.jti, a.exp, a.now).await? {
            return Err(StoreError::Replayed("the client assertion was already used".into()));
        }
    }
    if let Some(t) = new_task {
        cached::execute(
            tx,
            "INSERT INTO tasks (id, purpose, human, root_agent, created_at, deadline) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&t.id.as_str(), &t.purpose, &t.human.as_str(), &t.root_agent.as_str(), &t.created_at.0, &t.deadline.0],
        )
        .await?;
    }
    let params: [&(dyn ToSql + Sync); 14] = [
        &w.jti.as_str(),
        &w.parent.as_ref().map(WarrantId::as_str),
        &w.agent.as_str(),
        &w.task.as_str(),
        &w.human.as_str(),
        &w.sub,
        &mode,
        &scope,
        &chain,
        &w.kid,
        &w.issued_at.0,
        &w.expires_at.0,
        &budget,
        &claims,
    ];
    cached::execute(
        tx,
        &format!(
            "INSERT INTO warrants ({WARRANT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &params,
    )
    .await?;
    // Every agent of the chain, so "every warrant whose chain contains this agent" is
    // an index lookup (agent revocation).
    cached::execute(
        tx,
        "INSERT INTO warrant_agents (agent, jti) SELECT a, $2::TEXT FROM UNNEST($1::TEXT[]) AS a ON CONFLICT DO NOTHING",
        &[&chain_agents, &w.jti.as_str()],
    )
    .await?;
    Ok(())
}

/// Whether `w` may be recorded now: the checks of [`WarrantStore::record_warrant`], run
/// inside its transaction (after it took the write lock).
async fn issuable(
    tx: &cached::Tx<'_>,
    w: &WarrantRecord,
    new_task: Option<&TaskRecord>,
    guard: &IssueGuard,
) -> Result<(), StoreError> {
    let refuse = |why: String| Err(StoreError::Revoked(why));
    if let Some(parent) = &w.parent {
        let row =
            cached::query_one(tx, "SELECT EXISTS (SELECT 1 FROM revoked_warrants WHERE jti = $1)", &[&parent.as_str()])
                .await?;
        let revoked: bool = get(&row, 0)?;
        if revoked {
            return refuse(format!("its parent `{parent}` has been revoked"));
        }
    }
    if new_task.is_none() {
        let row = cached::query_opt(tx, "SELECT completed_at FROM tasks WHERE id = $1", &[&w.task.as_str()]).await?;
        let ended: Option<Option<i64>> = row.map(|r| get(&r, 0)).transpose()?;
        if let Some(Some(_)) = ended {
            return refuse(format!("task `{}` has ended", w.task));
        }
    }
    let active_agent = to_text(&AgentStatus::Active)?;
    let active_human = to_text(&HumanStatus::Active)?;
    let mut humans = vec![w.human.as_str().to_owned()];
    for agent in &w.chain {
        let row = cached::query_opt(tx, "SELECT status, owner FROM agents WHERE id = $1", &[&agent.as_str()]).await?;
        let row: Option<(String, String)> = row.map(|r| Ok::<_, StoreError>((get(&r, 0)?, get(&r, 1)?))).transpose()?;
        match row {
            Some((status, owner)) if status == active_agent => humans.push(owner),
            Some(_) => return refuse(format!("agent `{agent}` of its chain is not active")),
            None => return refuse(format!("agent `{agent}` of its chain is not registered")),
        }
    }
    for human in &humans {
        let row = cached::query_opt(tx, "SELECT status FROM humans WHERE id = $1", &[human]).await?;
        let status: Option<String> = row.map(|r| get(&r, 0)).transpose()?;
        if status.as_deref() != Some(active_human.as_str()) {
            return refuse(format!("human `{human}` is not active"));
        }
    }
    if let Some(session) = &guard.session {
        let row = tx
            .query_opt("SELECT revoked_at FROM sessions WHERE jti = $1 AND human = $2", &[session, &w.human.as_str()])
            .await?;
        let revoked: Option<Option<i64>> = row.map(|r| get(&r, 0)).transpose()?;
        match revoked {
            Some(None) => {}
            Some(Some(_)) => return refuse("the session it was exchanged for has been revoked".into()),
            None => return refuse("the session it was exchanged for is not known".into()),
        }
    }
    // `revocations.rowid` is numbered under the write lock, so in commit order: the
    // revocations recorded after the watermark `as_of` was read.
    let as_of = i64::try_from(guard.as_of).unwrap_or(i64::MAX);
    let since =
        cached::query(tx, "SELECT kind, target FROM revocations WHERE rowid > $1 ORDER BY rowid", &[&as_of]).await?;
    for row in &since {
        let (kind, target): (String, String) = (get(row, 0)?, get(row, 1)?);
        if revocation_names(&kind, &target, w) {
            return refuse(format!("{kind} `{target}` was revoked while it was issued"));
        }
    }
    Ok(())
}

#[async_trait]
impl WarrantStore for PgStore {
    async fn issuance_start(&self, agent: &AgentId) -> Result<IssuanceStart, StoreError> {
        use crate::{AgentStore as _, HumanStore as _};
        let watermark = self.revocation_watermark().await?;
        let agent = self.get_agent(agent).await?;
        let owner = match &agent {
            Some(a) => self.get_human(&a.owner).await?,
            None => None,
        };
        Ok(IssuanceStart { watermark, agent, owner })
    }

    async fn delegation_start(
        &self,
        parent: &WarrantId,
        actor: Option<&AgentId>,
        chain: &[AgentId],
        human: &HumanId,
    ) -> Result<DelegationStart, StoreError> {
        use crate::{AgentStore as _, HumanStore as _};
        let watermark = self.revocation_watermark().await?;
        let parent_recorded = self.get_warrant(parent).await?.is_some();
        let actor = match actor {
            Some(id) => self.get_agent(id).await?,
            None => None,
        };
        let actor_owner = match &actor {
            Some(a) => self.get_human(&a.owner).await?,
            None => None,
        };
        let mut agents = Vec::with_capacity(chain.len());
        for id in chain {
            agents.push(self.get_agent(id).await?);
        }
        let mut chain_owners: Vec<warrant_core::Human> = Vec::new();
        for agent in agents.iter().flatten() {
            if !chain_owners.iter().any(|o| o.id == agent.owner) {
                chain_owners.extend(self.get_human(&agent.owner).await?);
            }
        }
        let human = self.get_human(human).await?;
        Ok(DelegationStart { watermark, parent_recorded, actor, actor_owner, chain: agents, chain_owners, human })
    }

    async fn spend_assertion(
        &self,
        agent: &AgentId,
        jti: &str,
        exp: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let spent = spend(&tx, agent, jti, exp, now).await?;
        tx.commit().await?;
        Ok(spent)
    }

    async fn record_warrant(
        &self,
        warrant: &WarrantRecord,
        new_task: Option<&TaskRecord>,
        guard: &IssueGuard,
    ) -> Result<(), StoreError> {
        let issuance = Issuance { warrant: warrant.clone(), new_task: new_task.cloned(), guard: guard.clone() };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        record(&tx, &issuance).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_warrant(&self, jti: &WarrantId) -> Result<Option<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        let row =
            client.query_opt(&format!("SELECT {WARRANT_COLS} FROM warrants WHERE jti = $1"), &[&jti.as_str()]).await?;
        row.as_ref().map(warrant_row).transpose()
    }

    async fn child_warrants(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {WARRANT_COLS} FROM warrants WHERE parent = $1 ORDER BY issued_at, rowid");
        warrants(&client, &sql, &[&jti.as_str()]).await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, purpose, human, root_agent, created_at, deadline FROM tasks WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        row.as_ref().map(task_row).transpose()
    }

    async fn count_live_warrants(&self, now: UnixTime) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT COUNT(*) FROM warrants WHERE expires_at > $1", &[&now.0]).await?;
        let n: i64 = get(&row, 0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn task_warrants(&self, id: &TaskId) -> Result<Vec<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {WARRANT_COLS} FROM warrants WHERE task = $1 ORDER BY issued_at, rowid");
        warrants(&client, &sql, &[&id.as_str()]).await
    }
}

/// `sub(jti)`: the warrant `$1` and every warrant delegated from it, at any depth, each
/// found through the `warrants_parent` index (a macro, so that `concat!` can use it).
/// `UNION` (not `UNION ALL`) stops at a warrant already found.
macro_rules! subtree {
    () => {
        "WITH RECURSIVE sub(jti) AS (SELECT $1::TEXT UNION SELECT w.jti FROM warrants w JOIN sub ON w.parent = sub.jti)"
    };
}

// The unexpired warrants a revocation ends, by its kind (`$1`: its target, `$2`: now), as
// `(jti, expires_at)`. Each is a walk of indexes from the target.

/// A warrant: its subtree.
const ENDS_WARRANT: &str = concat!(
    subtree!(),
    " SELECT w.jti, w.expires_at FROM sub JOIN warrants w ON w.jti = sub.jti WHERE w.expires_at > $2"
);
/// An agent: every warrant whose chain holds it.
const ENDS_AGENT: &str = "SELECT w.jti, w.expires_at FROM warrant_agents a JOIN warrants w ON w.jti = a.jti \
     WHERE a.agent = $1 AND w.expires_at > $2";
/// A task: its warrants.
const ENDS_TASK: &str = "SELECT jti, expires_at FROM warrants WHERE task = $1 AND expires_at > $2";
/// A human: every warrant tracing to them.
const ENDS_HUMAN: &str = "SELECT jti, expires_at FROM warrants WHERE human = $1 AND expires_at > $2";

fn revocation_row(row: &Row) -> Result<RevocationRecord, StoreError> {
    Ok(RevocationRecord {
        id: get(row, 0)?,
        kind: col(row, 1, word::<RevocationKind>)?,
        target: get(row, 2)?,
        reason: get(row, 3)?,
        at: time(row, 4)?,
    })
}

/// The warrants `sql` selects (as [`warrant_cols`]).
async fn warrants(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<WarrantRecord>, StoreError> {
    client.query(sql, params).await?.iter().map(warrant_row).collect()
}

#[async_trait]
impl RevocationStore for PgStore {
    async fn revocation_watermark(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT COALESCE(MAX(rowid), 0) FROM revocations", &[]).await?;
        let seq: i64 = get(&row, 0)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn revoke(
        &self,
        revocation: &RevocationRecord,
        now: UnixTime,
    ) -> Result<Vec<(WarrantId, UnixTime)>, StoreError> {
        let rev = revocation;
        let kind = to_text(&rev.kind)?;
        let (active, suspended) = (to_text(&AgentStatus::Active)?, to_text(&AgentStatus::Suspended)?);

        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_writes(&tx).await?;
        let select = match rev.kind {
            RevocationKind::Warrant => ENDS_WARRANT,
            RevocationKind::Agent => {
                cached::execute(
                    &tx,
                    "UPDATE agents SET status = $2 WHERE id = $1 AND status = $3",
                    &[&rev.target, &suspended, &active],
                )
                .await?;
                ENDS_AGENT
            }
            RevocationKind::Task => {
                cached::execute(
                    &tx,
                    "UPDATE tasks SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL",
                    &[&rev.target, &rev.at.0],
                )
                .await?;
                ENDS_TASK
            }
            RevocationKind::Human => {
                cached::execute(
                    &tx,
                    "UPDATE sessions SET revoked_at = $2 WHERE human = $1 AND revoked_at IS NULL",
                    &[&rev.target, &rev.at.0],
                )
                .await?;
                ENDS_HUMAN
            }
        };
        let targets = tx
            .query(select, &[&rev.target, &now.0])
            .await?
            .iter()
            .map(|r| {
                let jti: String = get(r, 0)?;
                let jti = WarrantId::parse(&jti).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((jti, time(r, 1)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        cached::execute(
            &tx,
            "INSERT INTO revocations (id, kind, target, reason, at) VALUES ($1, $2, $3, $4, $5)",
            &[&rev.id, &kind, &rev.target, &rev.reason, &rev.at.0],
        )
        .await?;
        let mark = tx
            .prepare_cached(
                "INSERT INTO revoked_warrants (jti, revocation, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .await?;
        // Each warrant this revocation ends (not one an earlier revocation ended) goes
        // into the transmitter's outbox in the same transaction, numbered under the write
        // lock (so in commit order).
        let outbox = tx
            .prepare_cached(&format!(
                "INSERT INTO ssf_events (seq, jti, revocation, at) SELECT {}, $1::TEXT, $2::TEXT, $3::BIGINT",
                super::ssf::NEXT_SEQ
            ))
            .await?;
        for (jti, exp) in &targets {
            if tx.execute(&mark, &[&jti.as_str(), &rev.id, &exp.0]).await? > 0 {
                tx.execute(&outbox, &[&jti.as_str(), &rev.id, &rev.at.0]).await?;
            }
        }
        tx.commit().await?;
        Ok(targets)
    }

    async fn revoked_warrants(&self, now: UnixTime) -> Result<Vec<WarrantId>, StoreError> {
        let client = self.client().await?;
        client
            .query("SELECT jti FROM revoked_warrants WHERE expires_at > $1", &[&now.0])
            .await?
            .iter()
            .map(|r| col(r, 0, |s| WarrantId::parse(&s)))
            .collect()
    }

    async fn ended_tasks(&self) -> Result<Vec<TaskId>, StoreError> {
        let client = self.client().await?;
        client
            .query("SELECT id FROM tasks WHERE completed_at IS NOT NULL", &[])
            .await?
            .iter()
            .map(|r| col(r, 0, |s| TaskId::parse(&s)))
            .collect()
    }

    async fn warrant_subtree(&self, jti: &WarrantId) -> Result<Vec<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            concat!(subtree!(), " SELECT {} FROM sub JOIN warrants w ON w.jti = sub.jti ORDER BY w.issued_at, w.rowid"),
            warrant_cols("w.")
        );
        warrants(&client, &sql, &[&jti.as_str()]).await
    }

    async fn live_warrants_with_agent(&self, agent: &AgentId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM warrant_agents a JOIN warrants w ON w.jti = a.jti \
             WHERE a.agent = $1 AND w.expires_at > $2 ORDER BY w.issued_at, w.rowid",
            warrant_cols("w.")
        );
        warrants(&client, &sql, &[&agent.as_str(), &now.0]).await
    }

    async fn live_warrants_of_human(&self, human: &HumanId, now: UnixTime) -> Result<Vec<WarrantRecord>, StoreError> {
        let client = self.client().await?;
        // `rowid` only breaks ties between warrants issued in the same second (recording
        // order), where SQLite's order is its scan order.
        let sql = format!(
            "SELECT {WARRANT_COLS} FROM warrants WHERE human = $1 AND expires_at > $2 ORDER BY issued_at, rowid"
        );
        warrants(&client, &sql, &[&human.as_str(), &now.0]).await
    }

    async fn revocation_of(&self, jti: &WarrantId) -> Result<Option<RevocationRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT r.id, r.kind, r.target, r.reason, r.at FROM revoked_warrants w \
                 JOIN revocations r ON r.id = w.revocation WHERE w.jti = $1",
                &[&jti.as_str()],
            )
            .await?;
        row.as_ref().map(revocation_row).transpose()
    }

    async fn revocation(&self, id: &str) -> Result<Option<(RevocationRecord, Vec<WarrantId>)>, StoreError> {
        let client = self.client().await?;
        let row =
            client.query_opt("SELECT id, kind, target, reason, at FROM revocations WHERE id = $1", &[&id]).await?;
        let Some(record) = row.as_ref().map(revocation_row).transpose()? else { return Ok(None) };
        let jtis = client
            .query("SELECT jti FROM revoked_warrants WHERE revocation = $1 ORDER BY jti", &[&id])
            .await?
            .iter()
            .map(|r| col(r, 0, |s| WarrantId::parse(&s)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((record, jtis)))
    }
}
