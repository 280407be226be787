//! Reading the evidence: audit queries, the provenance trace of any record back to the
//! human, chain verification, and audited policy reloads.

use serde::Serialize;
use warrant_core::audit::{hash_hex, AuditEntry, AuditKind};
use warrant_core::{AgentId, WarrantId};
use warrant_store::audit::{AuditFilter, AuditRow};
use warrant_store::{StoreError, TaskRecord, WarrantRecord};

use crate::audit::{verify_all, AuditVerifyError, Verification};
use crate::policy::{PolicyLoadError, Reloaded, Staged};
use crate::Engine;

/// The most records one query returns.
pub const MAX_QUERY: usize = 1000;

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

impl Engine {
    /// Audit records matching `filter`, oldest first (at most [`MAX_QUERY`]).
    pub async fn audit_query(&self, mut filter: AuditFilter) -> Result<Vec<AuditView>, StoreError> {
        filter.limit = filter.limit.clamp(1, MAX_QUERY);
        self.store().query_audit(&filter).await?.iter().map(AuditView::from_row).collect()
    }

    /// One audit record.
    pub async fn audit_record(&self, seq: u64) -> Result<Option<AuditView>, StoreError> {
        self.store().get_audit(seq).await?.as_ref().map(AuditView::from_row).transpose()
    }

    /// The provenance of record `seq`, back to the human.
    pub async fn trace(&self, seq: u64) -> Result<Option<Trace>, StoreError> {
        let Some(record) = self.audit_record(seq).await? else { return Ok(None) };
        let mut warrants = Vec::new();
        let mut next = record.entry.warrant.clone();
        // Bounded walk: a chain is never deeper than the limit; stop on a cycle anyway.
        while let Some(jti) = next {
            if warrants.len() > 64 || warrants.iter().any(|w: &WarrantRecord| w.jti == jti) {
                break;
            }
            let Some(w) = self.store().get_warrant(&jti).await? else { break };
            next = w.parent.clone();
            warrants.push(w);
        }
        warrants.reverse();
        let chain: Vec<AgentId> = warrants.last().map(|w| w.chain.clone()).unwrap_or_default();
        let mut agents = Vec::new();
        for id in &chain {
            if let Some(a) = self.store().get_agent(id).await? {
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
            Some(id) => self.store().get_task(id).await?,
            None => None,
        };
        let human_id = record.entry.human.clone().or_else(|| task.as_ref().map(|t| t.human.clone()));
        let human = match &human_id {
            Some(id) => self
                .store()
                .get_human(id)
                .await?
                .map(|h| serde_json::json!({ "id": h.id, "name": h.name, "email": h.email, "status": h.status })),
            None => None,
        };
        let policies = match (record.entry.kind, record.entry.details.get("policy_version").and_then(|v| v.as_i64())) {
            (AuditKind::Decision, Some(version)) => {
                self.store().policy_version(version).await?.map(|v| TracedPolicies {
                    version: v.id,
                    hash: v.hash,
                    deciding: record
                        .entry
                        .details
                        .get("policies")
                        .and_then(|p| serde_json::from_value(p.clone()).ok())
                        .unwrap_or_default(),
                    text: v.policies,
                })
            }
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

    /// Verifies the whole audit chain, its signed checkpoints (against the checkpoint
    /// keys the KEK opens) and, when one is kept, the witness.
    pub async fn verify_audit(&self) -> Result<Verification, AuditVerifyError> {
        let keys = self.keys().checkpoint_keys(self.store()).await?;
        verify_all(self.store(), &keys, self.config().audit.witness.as_deref()).await
    }

    /// Re-reads the policy directory; a valid, changed set takes effect once its audit
    /// record is durable (if the record cannot be written, the change does not happen).
    /// A refused set is audited too.
    pub async fn reload_policies(&self) -> Result<Reloaded, PolicyLoadError> {
        let now = self.now();
        let staged = match self.policies().stage(self.store(), now).await {
            Ok(Staged::Unchanged(version)) => return Ok(Reloaded::Unchanged(version)),
            Ok(Staged::New(staged)) => staged,
            Err(e) => {
                tracing::error!(error = %e, "refused the new policy set; the previous set stays in force");
                let mut entry = AuditEntry::new(now, AuditKind::Policy);
                entry.details = serde_json::json!({ "op": "refused", "error": e.to_string() });
                if let Err(audit) = self.audit(entry).await {
                    tracing::error!(error = %audit, "a refused policy change could not be audited");
                }
                return Err(e);
            }
        };
        let mut entry = AuditEntry::new(now, AuditKind::Policy);
        entry.details = serde_json::json!({
            "op": "activated",
            "version": staged.version,
            "hash": staged.compiled.hash(),
            "policies": staged.compiled.policy_ids(),
        });
        if let Err(e) = self.audit(entry).await {
            self.policies().forget_files();
            tracing::error!(error = %e, "a policy change could not be audited; it stays pending");
            return Err(PolicyLoadError::Audit(e.to_string()));
        }
        let previous = self.policies().current();
        let reloaded = self.policies().activate(staged);
        if let (Some(old), Some(new)) = (previous, self.policies().current()) {
            self.check_policy_change(&old, &new).await;
        }
        Ok(reloaded)
    }
}
