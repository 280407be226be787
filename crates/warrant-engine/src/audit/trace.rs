//! Reading the evidence: audit queries and the provenance trace of any record back to
//! the human.

use serde::Serialize;
use warrant_core::audit::{hash_hex, AuditEntry, AuditKind};
use warrant_core::decision::Outcome;
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_store::audit::{AuditFilter, AuditRow};
use warrant_store::{Store, StoreError, TaskRecord, WarrantRecord};

/// The most records one query returns.
pub const MAX_QUERY: usize = 1000;

/// Which audit records to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records about this agent.
    pub agent: Option<AgentId>,
    /// Only records tracing to this human.
    pub human: Option<HumanId>,
    /// Only records of this task.
    pub task: Option<TaskId>,
    /// Only records about this warrant.
    pub warrant: Option<WarrantId>,
    /// Only records of this kind.
    pub kind: Option<AuditKind>,
    /// Only decisions with this outcome.
    pub decision: Option<Outcome>,
    /// Only records at or after this time.
    pub since: Option<UnixTime>,
    /// Only records at or before this time.
    pub until: Option<UnixTime>,
    /// Only records with a greater sequence number (paging oldest first).
    pub after_seq: Option<u64>,
    /// Only records with a smaller sequence number (paging newest first).
    pub before_seq: Option<u64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many records (clamped to 1..=[`MAX_QUERY`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    /// No filter, the oldest 100 records.
    fn default() -> Self {
        AuditQuery {
            agent: None,
            human: None,
            task: None,
            warrant: None,
            kind: None,
            decision: None,
            since: None,
            until: None,
            after_seq: None,
            before_seq: None,
            newest_first: false,
            limit: 100,
        }
    }
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            agent: self.agent.clone(),
            human: self.human.clone(),
            task: self.task.clone(),
            warrant: self.warrant.clone(),
            kind: self.kind,
            decision: self.decision.map(|o| o.as_str().to_owned()),
            since: self.since,
            until: self.until,
            after_seq: self.after_seq,
            before_seq: self.before_seq,
            newest_first: self.newest_first,
            limit: self.limit.clamp(1, MAX_QUERY),
        }
    }
}

/// One audit record, decoded for reading.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    /// Sequence number (the record's id).
    pub seq: u64,
    /// Its SHA-256 chain hash, hex.
    pub hash: String,
    /// The event.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

impl AuditView {
    fn from_row(row: &AuditRow) -> Result<AuditView, StoreError> {
        let (seq, entry) =
            warrant_core::audit::decode(&row.record).map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))?;
        Ok(AuditView { seq, hash: hash_hex(&row.record.hash), entry })
    }
}

/// An agent of a traced chain.
#[derive(Debug, Clone, Serialize)]
pub struct TracedAgent {
    /// Its id.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// Its mode.
    pub mode: String,
}

/// A warrant of a traced chain.
#[derive(Debug, Clone, Serialize)]
pub struct TracedWarrant {
    /// Its id.
    pub jti: WarrantId,
    /// Its parent.
    pub parent: Option<WarrantId>,
    /// The agent holding it.
    pub agent: AgentId,
    /// Its scope.
    pub scope: String,
    /// Issued at.
    pub issued_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// The policies that decided.
#[derive(Debug, Clone, Serialize)]
pub struct TracedPolicies {
    /// The policy set version.
    pub version: i64,
    /// Its fingerprint.
    pub hash: String,
    /// The deciding policy ids.
    pub deciding: Vec<String>,
    /// The whole set's text, as it was.
    pub text: String,
}

/// Who authorized this, which agent did it, on whose behalf, with which credential,
/// under which policy, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The record traced.
    pub record: AuditView,
    /// The human the work traces to.
    pub human: Option<serde_json::Value>,
    /// The task and its purpose.
    pub task: Option<serde_json::Value>,
    /// The warrants, root first.
    pub warrants: Vec<TracedWarrant>,
    /// The agents of the chain, root first.
    pub agents: Vec<TracedAgent>,
    /// For a decision: the policies that decided.
    pub policies: Option<TracedPolicies>,
}

fn task_json(task: &TaskRecord) -> serde_json::Value {
    serde_json::json!({
        "id": task.id, "purpose": task.purpose, "human": task.human, "root_agent": task.root_agent,
        "created_at": task.created_at, "deadline": task.deadline,
    })
}

fn traced(w: &WarrantRecord) -> TracedWarrant {
    TracedWarrant {
        jti: w.jti.clone(),
        parent: w.parent.clone(),
        agent: w.agent.clone(),
        scope: w.scope.to_string(),
        issued_at: w.issued_at.0,
        expires_at: w.expires_at.0,
    }
}

/// Audit records matching `query`.
pub(crate) async fn query(store: &dyn Store, query: &AuditQuery) -> Result<Vec<AuditView>, StoreError> {
    store.query_audit(&query.filter()).await?.iter().map(AuditView::from_row).collect()
}

/// One audit record.
pub(crate) async fn get(store: &dyn Store, seq: u64) -> Result<Option<AuditView>, StoreError> {
    store.get_audit(seq).await?.as_ref().map(AuditView::from_row).transpose()
}

/// The provenance of record `seq`, back to the human.
pub(crate) async fn trace(store: &dyn Store, seq: u64) -> Result<Option<Trace>, StoreError> {
    let Some(record) = get(store, seq).await? else { return Ok(None) };
    let mut warrants = Vec::new();
    let mut next = record.entry.warrant.clone();
    // Bounded walk: a chain is never deeper than the limit; stop on a cycle anyway.
    while let Some(jti) = next {
        if warrants.len() > 64 || warrants.iter().any(|w: &WarrantRecord| w.jti == jti) {
            break;
        }
        let Some(w) = store.get_warrant(&jti).await? else { break };
        next = w.parent.clone();
        warrants.push(w);
    }
    warrants.reverse();
    let chain: Vec<AgentId> = warrants.last().map(|w| w.chain.clone()).unwrap_or_default();
    let mut agents = Vec::new();
    for id in &chain {
        if let Some(a) = store.get_agent(id).await? {
            agents.push(TracedAgent {
                id: a.id.clone(),
                name: a.name.clone(),
                owner: a.owner.to_string(),
                mode: a.mode.as_str().into(),
            });
        }
    }
    let task_id = record.entry.task.clone().or_else(|| warrants.first().map(|w| w.task.clone()));
    let task = match &task_id {
        Some(id) => store.get_task(id).await?,
        None => None,
    };
    let human_id = record.entry.human.clone().or_else(|| task.as_ref().map(|t| t.human.clone()));
    let human = match &human_id {
        Some(id) => store
            .get_human(id)
            .await?
            .map(|h| serde_json::json!({ "id": h.id, "name": h.name, "email": h.email, "status": h.status })),
        None => None,
    };
    let policies = match (record.entry.kind, record.entry.details.get("policy_version").and_then(|v| v.as_i64())) {
        (AuditKind::Decision, Some(version)) => store.policy_version(version).await?.map(|v| TracedPolicies {
            version: v.id,
            hash: v.hash,
            deciding: record
                .entry
                .details
                .get("policies")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default(),
            text: v.policies,
        }),
        _ => None,
    };
    Ok(Some(Trace {
        record,
        human,
        task: task.as_ref().map(task_json),
        warrants: warrants.iter().map(traced).collect(),
        agents,
        policies,
    }))
}
