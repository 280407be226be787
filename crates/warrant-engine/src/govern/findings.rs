//! Findings: recording a sweep's changes, listing, accepting a risk, applying a
//! least-privilege recommendation, and the policy-broadening check on a policy change.

use std::collections::HashSet;

use serde_json::json;
use warrant_core::audit::details::{GovernanceDetails, RegistryDetails};
use warrant_core::audit::AuditEntry;
use warrant_core::govern::evidence::PolicyBroadening;
use warrant_core::govern::usage::recommend;
use warrant_core::govern::{Acceptance, Changes, Finding, FindingKind, FindingStatus, Observation, Severity};
use warrant_core::{Agent, AgentStatus, Scope, UnixTime};
use warrant_store::{FindingFilter, RevocationKind, StoreError};

use super::Governance;
use crate::events::EventKind;
use warrant_policy::CompiledPolicies;

/// The longest acceptance justification, in characters.
pub const MAX_JUSTIFICATION: usize = 1000;
/// The most newly allowed requests listed in a policy-broadening finding.
const MAX_SAMPLES: usize = 20;

/// Which findings to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingQuery {
    /// Only findings with this status.
    pub status: Option<FindingStatus>,
    /// Only findings of this kind.
    pub kind: Option<FindingKind>,
    /// Only findings about this subject (e.g. an agent id).
    pub subject: Option<String>,
    /// At most this many (clamped to 1..=[`MAX_FINDINGS`]), most recently seen first.
    pub limit: usize,
}

/// The most findings one listing returns.
pub const MAX_FINDINGS: usize = warrant_store::MAX_FINDING_LIST_LIMIT;

/// Why a finding operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindingError {
    /// No finding (or agent) with that id.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The finding is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be audited or made.
    #[error("{0}")]
    Internal(String),
}

impl crate::error::Classify for FindingError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            FindingError::NotFound(_) => ErrorKind::NotFound,
            FindingError::Invalid(_) => ErrorKind::Invalid,
            FindingError::Conflict(_) => ErrorKind::Conflict,
            FindingError::Store(_) | FindingError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl Governance {
    /// Records a sweep's (or an event's) changes: the store first, then memory, then
    /// one `finding` event per opened, reopened or resolved finding.
    pub(crate) async fn commit_findings(&self, changes: Changes, now: UnixTime) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let all: Vec<Finding> = changes.all().cloned().collect();
        self.store.save_findings(&all).await?;
        let gov = self;
        if let Ok(mut active) = gov.active.lock() {
            for f in changes.opened.iter().chain(&changes.updated).chain(&changes.reopened) {
                active.insert(f.key(), f.clone());
            }
            for f in &changes.resolved {
                active.remove(&f.key());
            }
        }
        for (change, list) in
            [("opened", &changes.opened), ("reopened", &changes.reopened), ("resolved", &changes.resolved)]
        {
            for f in list {
                self.publish_finding(change, f, now);
            }
        }
        Ok(())
    }

    fn publish_finding(&self, change: &str, finding: &Finding, now: UnixTime) {
        self.events.publish_with(EventKind::Finding, now, finding.agent().as_ref(), || {
            let mut data = serde_json::to_value(finding).unwrap_or_default();
            if let Some(map) = data.as_object_mut() {
                map.insert("change".into(), json!(change));
            }
            data
        });
    }

    async fn audit_governance(&self, entry: AuditEntry) -> Result<(), FindingError> {
        self.audit
            .record(entry)
            .await
            .map(|_| ())
            .map_err(|e| FindingError::Internal(format!("the change could not be audited, so it was not made: {e}")))
    }

    /// Findings matching `filter`, most recently seen first.
    pub async fn findings(&self, query: &FindingQuery) -> Result<Vec<Finding>, FindingError> {
        let filter = FindingFilter {
            status: query.status,
            kind: query.kind,
            subject: query.subject.clone(),
            limit: query.limit.clamp(1, MAX_FINDINGS),
        };
        Ok(self.store.list_findings(&filter).await?)
    }

    /// One finding.
    pub async fn finding(&self, id: &str) -> Result<Finding, FindingError> {
        if id.len() > 64 || !id.starts_with("fnd_") {
            return Err(FindingError::NotFound(format!("finding `{}`", id.chars().take(64).collect::<String>())));
        }
        self.store.get_finding(id).await?.ok_or_else(|| FindingError::NotFound(format!("finding `{id}`")))
    }

    /// Accepts the risk of an active finding until `until`, with a justification. The
    /// finding stays accepted while its cause remains and the acceptance holds; when
    /// the acceptance lapses it opens again, and when the cause goes it resolves.
    pub async fn accept_finding(
        &self,
        id: &str,
        by: &str,
        justification: &str,
        until: UnixTime,
    ) -> Result<Finding, FindingError> {
        let justification = justification.trim();
        if justification.is_empty() || justification.chars().count() > MAX_JUSTIFICATION {
            return Err(FindingError::Invalid(format!("`justification` must be 1 to {MAX_JUSTIFICATION} characters")));
        }
        let now = self.clock.now();
        let max = self.config().max_acceptance;
        if until <= now || now.until(until) > max {
            return Err(FindingError::Invalid(format!(
                "`until` must be in the future and at most {max} seconds away (acceptances expire)"
            )));
        }
        let _serial = self.serial.lock().await;
        let mut finding = self.finding(id).await?;
        if finding.status == FindingStatus::Resolved {
            return Err(FindingError::Conflict(format!("finding `{id}` is resolved; there is nothing to accept")));
        }
        finding.status = FindingStatus::Accepted;
        finding.acceptance =
            Some(Acceptance { by: by.to_owned(), justification: justification.to_owned(), at: now, until });
        let details = GovernanceDetails::FindingAccept {
            finding: finding.id.clone(),
            kind: finding.kind,
            subject: finding.subject.clone(),
            by: by.to_owned(),
            justification: justification.to_owned(),
            until,
        };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| FindingError::Internal(e.to_string()))?;
        entry.agent = finding.agent();
        self.audit_governance(entry).await?;
        self.store.save_findings(std::slice::from_ref(&finding)).await?;
        if let Ok(mut active) = self.active.lock() {
            active.insert(finding.key(), finding.clone());
        }
        self.publish_finding("accepted", &finding, now);
        tracing::info!(finding = %finding.id, kind = %finding.kind, by, "accepted a finding");
        Ok(finding)
    }

    /// Applies an open over-privileged finding's recommendation: narrows the agent's max
    /// scope to what it used in the usage window (recomputed now, so it is never wider
    /// than the current max scope), revokes its live warrants the new max scope no longer
    /// covers, and sweeps the agent. Returns the agent as changed.
    pub async fn apply_recommendation(&self, id: &str, by: &str) -> Result<(Agent, Finding), FindingError> {
        let finding = self.finding(id).await?;
        if finding.kind != FindingKind::OverPrivileged || !finding.status.is_active() {
            return Err(FindingError::Conflict(format!(
                "finding `{id}` is not an active over-privileged finding; only those carry a recommendation"
            )));
        }
        let agent_id = finding.agent().ok_or_else(|| FindingError::Internal("the finding names no agent".into()))?;
        let agent =
            self.directory.agent(&agent_id).ok_or_else(|| FindingError::NotFound(format!("agent `{agent_id}`")))?;
        if agent.status == AgentStatus::Retired {
            return Err(FindingError::Conflict(format!("agent `{agent_id}` is retired")));
        }
        let now = self.clock.now();
        let since = now.plus(-self.config().rules.usage_window);
        let usage = self.usage_within(&agent_id, since).unwrap_or_default();
        let narrowed = recommend(&agent.max_scope, &usage.used_permissions());
        if narrowed.is_empty() || narrowed.covers(&agent.max_scope) {
            return Err(FindingError::Conflict(format!(
                "agent `{agent_id}` has nothing to narrow now; the next sweep updates the finding"
            )));
        }
        let details = RegistryDetails::AgentMaxScope {
            from: agent.max_scope.clone(),
            to: narrowed.clone(),
            finding: finding.id.clone(),
            by: by.to_owned(),
        };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| FindingError::Internal(e.to_string()))?;
        entry.agent = Some(agent_id.clone());
        entry.human = Some(agent.owner.clone());
        self.audit_governance(entry).await?;
        self.store.set_agent_max_scope(&agent_id, &narrowed).await?;
        let changed = Agent { max_scope: narrowed.clone(), ..(*agent).clone() };
        self.directory.put_agent(changed.clone());
        self.revoke_beyond(&changed, &narrowed, now).await;
        tracing::info!(agent = %agent_id, finding = %finding.id, scope = %narrowed, "narrowed an agent's max scope");
        let only: HashSet<_> = [agent_id].into_iter().collect();
        if let Err(e) = self.sweep_agents(&only).await {
            tracing::warn!(error = %e, "could not sweep the narrowed agent; the next full sweep will");
        }
        let finding = self.finding(id).await?;
        Ok((changed, finding))
    }

    /// Revokes the agent's live warrants that `max` no longer covers (a live
    /// warrant's scope stays covered by its agent's max scope).
    async fn revoke_beyond(&self, agent: &Agent, max: &Scope, now: UnixTime) {
        let live = match self.store.live_warrants_with_agent(&agent.id, now).await {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(agent = %agent.id, error = %e, "could not list warrants beyond the narrowed max scope");
                return;
            }
        };
        for w in live.iter().filter(|w| w.agent == agent.id && !max.covers(&w.scope)) {
            if let Err(e) = self
                .revocation
                .revoke(RevocationKind::Warrant, w.jti.as_str(), "its agent's max scope was narrowed by governance")
                .await
            {
                tracing::error!(warrant = %w.jti, error = %e, "could not revoke a warrant beyond the narrowed max scope");
            }
        }
    }

    /// After a policy change from `old` to `new`: replays the recent decision history on
    /// both sets and opens a policy-broadening finding for the requests `new` allows and
    /// `old` denied; resolves earlier broadening findings whose requests `new` denies
    /// again.
    pub(crate) async fn policy_changed(&self, old: (&CompiledPolicies, i64), new: (&CompiledPolicies, i64)) {
        let ((old_set, old_version), (new_set, new_version)) = (old, new);
        let gov = self;
        if !gov.config().enabled || !gov.history().enabled() {
            return;
        }
        let now = self.clock.now();
        let history = gov.history().distinct();
        let broadened = super::replay::newly_allowed(old_set, new_set, &history);
        let _serial = gov.serial.lock().await;
        let mut changes = Changes::default();
        // Earlier broadenings: resolved once none of their requests is allowed any more.
        let earlier: Vec<Finding> = gov
            .active
            .lock()
            .map(|a| a.values().filter(|f| f.kind == FindingKind::PolicyBroadening).cloned().collect())
            .unwrap_or_default();
        for mut f in earlier {
            // Samples are in memory: after a restart an earlier finding waits for acceptance.
            let samples = gov.broadened_samples(&f.subject);
            if !samples.is_empty() && !samples.iter().any(|r| r.allowed_by(new_set)) {
                f.status = FindingStatus::Resolved;
                f.resolved_at = Some(now);
                gov.forget_broadened(&f.subject);
                changes.resolved.push(f);
            }
        }
        if !broadened.is_empty() {
            let subject = format!("policy:{new_version}");
            let samples: Vec<_> = broadened.iter().take(MAX_SAMPLES).map(|r| r.summary()).collect();
            let evidence = PolicyBroadening {
                from_version: old_version,
                to_version: new_version,
                replayed: history.len(),
                newly_allowed: broadened.len(),
                samples,
            };
            let obs = Observation::new(Severity::High, subject.clone(), evidence);
            match crate::random::bytes::<12>() {
                Ok(bytes) => {
                    changes.opened.push(Finding::open(format!("fnd_{}", hex::encode(bytes)), obs, now));
                    gov.remember_broadened(&subject, broadened);
                }
                Err(e) => tracing::error!(error = %e, "no randomness for a policy-broadening finding"),
            }
        }
        if let Err(e) = self.commit_findings(changes, now).await {
            tracing::error!(error = %e, "could not record the policy change's findings");
        }
    }
}
