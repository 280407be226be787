//! What owners and auditors do: attest an agent with the evidence in front of them,
//! rotate an agent's key, and export the inventory.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use warrant_core::audit::details::{GovernanceDetails, RegistryDetails};
use warrant_core::audit::AuditEntry;
use warrant_core::govern::usage::{recommend, unused};
use warrant_core::govern::{Finding, FindingKind};
use warrant_core::{Agent, AgentId, AgentStatus, HumanId, Mode, PublicJwk, Scope, UnixTime};
use warrant_store::StoreError;

pub use warrant_core::govern::Attestation;

use super::Governance;

/// The longest attestation note, in characters.
pub const MAX_NOTE: usize = 1000;

/// Why an owner operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// No such agent.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this for this agent.
    #[error("{0}")]
    Forbidden(String),
    /// The agent's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be audited or made.
    #[error("{0}")]
    Internal(String),
}

impl crate::error::Classify for OwnerError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            OwnerError::NotFound(_) => ErrorKind::NotFound,
            OwnerError::Invalid(_) => ErrorKind::Invalid,
            OwnerError::Forbidden(_) => ErrorKind::Forbidden,
            OwnerError::Conflict(_) => ErrorKind::Conflict,
            OwnerError::Store(_) | OwnerError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Who attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attester {
    /// The admin token (break-glass; recorded as `admin`).
    Admin,
    /// A human's session: must be the agent's owner.
    Human(HumanId),
}

impl Attester {
    fn name(&self) -> String {
        match self {
            Attester::Admin => "admin".into(),
            Attester::Human(h) => h.to_string(),
        }
    }
}

/// One inventory row: an agent as an auditor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryRow {
    /// The agent id.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: HumanId,
    /// The owner's email, when the owner is registered.
    pub owner_email: Option<String>,
    /// `active`, `disabled` or `removed`.
    pub owner_status: &'static str,
    /// Delegated or autonomous.
    pub mode: Mode,
    /// Active, suspended or retired.
    pub status: AgentStatus,
    /// Its max scope.
    pub max_scope: Scope,
    /// When it was registered.
    pub created_at: UnixTime,
    /// When an ephemeral agent expires.
    pub expires_at: Option<UnixTime>,
    /// Its last decision or warrant.
    pub last_activity: Option<UnixTime>,
    /// Its trust score now.
    pub trust: f64,
    /// When its owner last attested it.
    pub last_attested: Option<UnixTime>,
    /// Its open and accepted findings' kinds.
    pub open_findings: Vec<FindingKind>,
}

impl Governance {
    fn governed_agent(&self, id: &str) -> Result<std::sync::Arc<Agent>, OwnerError> {
        let id = warrant_core::AgentId::parse(id).map_err(|e| OwnerError::Invalid(e.to_string()))?;
        self.directory.agent(&id).ok_or_else(|| OwnerError::NotFound(format!("agent `{id}`")))
    }

    async fn audit_owner(&self, entry: AuditEntry) -> Result<(), OwnerError> {
        self.audit
            .record(entry)
            .await
            .map(|_| ())
            .map_err(|e| OwnerError::Internal(format!("the change could not be audited, so it was not made: {e}")))
    }

    /// The agent, when `by` may attest it: its owner, or the admin.
    fn attestable(&self, id: &str, by: &Attester) -> Result<std::sync::Arc<Agent>, OwnerError> {
        let agent = self.governed_agent(id)?;
        match by {
            Attester::Human(h) if *h != agent.owner => Err(OwnerError::Forbidden(format!(
                "only the owner of agent `{}` (or the admin) may see its evidence or attest it",
                agent.id
            ))),
            _ => Ok(agent),
        }
    }

    /// What an owner sees before attesting: what the agent holds against what it used
    /// in the usage window, the recommended narrower scope, and its open findings. Only
    /// the owner (or the admin) may see it.
    pub fn attestation_evidence(&self, id: &str, by: &Attester) -> Result<Value, OwnerError> {
        let agent = self.attestable(id, by)?;
        Ok(self.evidence_of(&agent))
    }

    fn evidence_of(&self, agent: &Agent) -> Value {
        let gov = self;
        let now = self.clock.now();
        let rules = &gov.config().rules;
        let usage = gov.usage_within(&agent.id, now.plus(-rules.usage_window)).unwrap_or_default();
        let used = usage.used_permissions();
        let recommended = recommend(&agent.max_scope, &used);
        let last_attested = gov.last_attested(&agent.id);
        let findings: Vec<Value> = gov
            .active_about(agent.id.as_str())
            .iter()
            .map(|f| json!({"id": f.id, "kind": f.kind, "severity": f.severity, "status": f.status}))
            .collect();
        json!({
            "agent": agent.id,
            "name": agent.name,
            "owner": agent.owner,
            "mode": agent.mode,
            "status": agent.status.as_str(),
            "max_scope": agent.max_scope,
            "unused": unused(&agent.max_scope, &used),
            "used": used,
            "recommended_scope": (!recommended.covers(&agent.max_scope)).then_some(recommended),
            "last_activity": usage.last_seen,
            "usage_window_secs": rules.usage_window,
            "last_attested": last_attested,
            "due_at": last_attested.unwrap_or(agent.created_at).plus(rules.attestation_every),
            "open_findings": findings,
        })
    }

    /// Records the owner's attestation that the agent should keep what it holds, with
    /// the evidence that was in front of them. Only the owner (or the admin) may.
    pub async fn attest(&self, id: &str, by: Attester, note: &str) -> Result<Attestation, OwnerError> {
        let agent = self.attestable(id, &by)?;
        if agent.status == AgentStatus::Retired {
            return Err(OwnerError::Conflict(format!("agent `{}` is retired", agent.id)));
        }
        let note = note.trim();
        if note.chars().count() > MAX_NOTE {
            return Err(OwnerError::Invalid(format!("`note` may be at most {MAX_NOTE} characters")));
        }
        let evidence = self.evidence_of(&agent);
        let now = self.clock.now();
        let bytes = crate::random::bytes::<12>().map_err(|e| OwnerError::Internal(e.to_string()))?;
        let attestation = Attestation {
            id: format!("att_{}", hex::encode(bytes)),
            agent: agent.id.clone(),
            by: by.name(),
            at: now,
            note: note.to_owned(),
            evidence,
        };
        let details = GovernanceDetails::AgentAttest {
            attestation: attestation.id.clone(),
            by: attestation.by.clone(),
            note: attestation.note.clone(),
            max_scope: agent.max_scope.clone(),
        };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| OwnerError::Internal(e.to_string()))?;
        entry.agent = Some(agent.id.clone());
        entry.human = Some(agent.owner.clone());
        self.audit_owner(entry).await?;
        self.store.record_attestation(&attestation).await?;
        self.set_attested(&agent.id, now);
        self.touch([agent.id.clone()]);
        tracing::info!(agent = %agent.id, by = %attestation.by, "attested an agent");
        Ok(attestation)
    }

    /// An agent's attestations, newest first.
    pub async fn attestations(&self, id: &str, limit: usize) -> Result<Vec<Attestation>, OwnerError> {
        let agent = self.governed_agent(id)?;
        Ok(self.store.attestations(&agent.id, limit.clamp(1, 1000)).await?)
    }

    /// Replaces an agent's public key (rotation). Client assertions signed with the old
    /// key are refused from now on; warrants already issued are unaffected.
    /// `by` is who asked, for the audit record.
    pub async fn rotate_agent_key(
        &self,
        id: &str,
        key: PublicJwk,
        by: Option<&warrant_core::Principal>,
    ) -> Result<Agent, OwnerError> {
        let agent = self.governed_agent(id)?;
        if agent.status == AgentStatus::Retired {
            return Err(OwnerError::Conflict(format!("agent `{}` is retired", agent.id)));
        }
        let Some(current) = &agent.public_key else {
            return Err(OwnerError::Invalid(format!(
                "agent `{}` authenticates with its SPIFFE ID and has no key to rotate; its trust domain rotates its keys",
                agent.id
            )));
        };
        warrant_token::keys::verifying_key(&key).map_err(|e| OwnerError::Invalid(format!("`public_key`: {e}")))?;
        if key.x == current.x {
            return Err(OwnerError::Invalid("`public_key` is the agent's current key; rotate to a new one".into()));
        }
        let now = self.clock.now();
        let details = RegistryDetails::AgentKey { from: current.x.clone(), to: key.x.clone() };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| OwnerError::Internal(e.to_string()))?;
        entry.agent = Some(agent.id.clone());
        entry.human = Some(agent.owner.clone());
        entry.by = by.cloned();
        self.audit_owner(entry).await?;
        if !self.store.set_agent_key(&agent.id, &key, now).await? {
            return Err(OwnerError::NotFound(format!("agent `{}`", agent.id)));
        }
        let changed = Agent { public_key: Some(key), ..(*agent).clone() };
        self.directory.put_agent(changed.clone());
        self.set_key_time(&agent.id, now);
        self.touch([agent.id.clone()]);
        tracing::info!(agent = %agent.id, "rotated an agent's key");
        Ok(changed)
    }

    /// Every registered agent with its owner, mode, scope, last activity, trust and
    /// active findings, oldest first.
    pub fn inventory(&self) -> Vec<InventoryRow> {
        let now = self.clock.now();
        let gov = self;
        let humans = self.directory.humans();
        let mut findings: HashMap<String, Vec<FindingKind>> = HashMap::new();
        if let Ok(active) = gov.active.lock() {
            for f in active.values().filter(|f: &&Finding| f.kind.per_agent()) {
                findings.entry(f.subject.clone()).or_default().push(f.kind);
            }
        }
        let mut agents = self.directory.agents();
        agents.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.as_str().cmp(b.id.as_str())));
        agents
            .iter()
            .map(|a| {
                let open = findings.remove(a.id.as_str()).unwrap_or_default();
                self.inventory_row_of(a, humans.get(&a.owner).map(|h| h.as_ref()), open, now)
            })
            .collect()
    }

    /// One agent's [`InventoryRow`] (without building the whole inventory).
    pub fn inventory_row(&self, id: &warrant_core::AgentId) -> Option<InventoryRow> {
        let agent = self.directory.agent(id)?;
        let owner = self.directory.human(&agent.owner);
        let open = match self.active.lock() {
            Ok(active) => {
                active.values().filter(|f| f.kind.per_agent() && f.subject == id.as_str()).map(|f| f.kind).collect()
            }
            Err(_) => Vec::new(),
        };
        Some(self.inventory_row_of(&agent, owner.as_deref(), open, self.clock.now()))
    }

    fn inventory_row_of(
        &self,
        a: &Agent,
        owner: Option<&warrant_core::Human>,
        mut open: Vec<FindingKind>,
        now: UnixTime,
    ) -> InventoryRow {
        open.sort();
        InventoryRow {
            id: a.id.clone(),
            name: a.name.clone(),
            owner: a.owner.clone(),
            owner_email: owner.map(|h| h.email.clone()),
            owner_status: owner.map_or("removed", |h| if h.is_active() { "active" } else { "disabled" }),
            mode: a.mode,
            status: a.status,
            max_scope: a.max_scope.clone(),
            created_at: a.created_at,
            expires_at: a.expires_at,
            last_activity: self.usage_of(&a.id).and_then(|u| u.last_seen),
            trust: self.guardrails.trust_of(&a.id, now),
            last_attested: self.last_attested(&a.id),
            open_findings: open,
        }
    }
}
