//! One sweep's observations against the active findings: what opens, what is refreshed,
//! what reopens because its acceptance lapsed, and what resolves because its cause is gone.

use std::collections::{HashMap, HashSet};

use crate::govern::finding::{Finding, FindingKind, FindingStatus, Observation};
use crate::id::AgentId;
use crate::time::UnixTime;

/// Which findings a sweep looked at, and so may resolve.
#[derive(Debug, Clone, Copy)]
pub enum SweepScope<'a> {
    /// Every per-agent finding and every shadow-activity finding (a full sweep).
    All,
    /// Only the per-agent findings of these agents (a sweep driven by a registry event).
    Agents(&'a HashSet<AgentId>),
}

impl SweepScope<'_> {
    /// Whether a sweep of this scope has the final word on `finding`: when it no longer
    /// observes it, the finding resolves. Policy broadening is never resolved by a sweep,
    /// only by re-evaluating a later policy set.
    fn covers(&self, finding: &Finding) -> bool {
        match self {
            SweepScope::All => finding.kind != FindingKind::PolicyBroadening,
            SweepScope::Agents(agents) => {
                finding.kind.per_agent() && finding.agent().is_some_and(|agent| agents.contains(&agent))
            }
        }
    }
}

/// What a sweep changes. Every finding here is in its new state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// New findings.
    pub opened: Vec<Finding>,
    /// Active findings whose severity or evidence changed, or whose `last_seen` is worth
    /// writing down again.
    pub updated: Vec<Finding>,
    /// Accepted findings whose acceptance lapsed while the cause remains: open again.
    pub reopened: Vec<Finding>,
    /// Findings whose cause is gone.
    pub resolved: Vec<Finding>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.opened.is_empty() && self.updated.is_empty() && self.reopened.is_empty() && self.resolved.is_empty()
    }

    /// Every changed finding.
    pub fn all(&self) -> impl Iterator<Item = &Finding> {
        self.opened.iter().chain(&self.updated).chain(&self.reopened).chain(&self.resolved)
    }
}

/// Reconciles `observed` with the `active` findings (open or accepted, by kind and
/// subject) at `now`.
///
/// * An observation with no active finding opens one, with an id from `new_id`.
/// * An active finding observed again keeps its id and `first_seen`; it is reported as
///   updated when its severity or evidence changed, or its stored `last_seen` is older
///   than `refresh` seconds (so that a steady problem costs a write per `refresh`, not per
///   sweep). An accepted finding whose acceptance lapsed reopens.
/// * An active finding that the sweep's `scope` covers and did not observe resolves.
pub fn reconcile(
    active: &HashMap<(FindingKind, String), Finding>,
    observed: Vec<Observation>,
    scope: SweepScope<'_>,
    now: UnixTime,
    refresh: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Changes {
    let mut changes = Changes::default();
    let mut seen: HashSet<(FindingKind, String)> = HashSet::with_capacity(observed.len());
    for obs in observed {
        let key = obs.key();
        if !seen.insert(key.clone()) {
            continue;
        }
        match active.get(&key) {
            None => changes.opened.push(Finding::open(new_id(), obs, now)),
            Some(current) => {
                let lapsed = current.status == FindingStatus::Accepted
                    && current.acceptance.as_ref().is_none_or(|a| a.until <= now);
                let changed = current.severity != obs.severity || current.evidence != obs.evidence;
                let stale = current.last_seen.until(now) >= refresh;
                if !(lapsed || changed || stale) {
                    continue;
                }
                let mut next = current.clone();
                next.severity = obs.severity;
                next.evidence = obs.evidence;
                next.last_seen = now;
                if lapsed {
                    next.status = FindingStatus::Open;
                    changes.reopened.push(next);
                } else {
                    changes.updated.push(next);
                }
            }
        }
    }
    for (key, current) in active {
        if seen.contains(key) || !current.status.is_active() || !scope.covers(current) {
            continue;
        }
        let mut next = current.clone();
        next.status = FindingStatus::Resolved;
        next.resolved_at = Some(now);
        changes.resolved.push(next);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::finding::{Acceptance, Severity};

    fn obs(kind: FindingKind, subject: &str, evidence: serde_json::Value) -> Observation {
        Observation { kind, severity: Severity::Medium, subject: subject.into(), evidence }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("fnd_{n}")
        }
    }

    fn index(findings: &[Finding]) -> HashMap<(FindingKind, String), Finding> {
        findings.iter().map(|f| (f.key(), f.clone())).collect()
    }

    const AGENT: &str = "agt_010101010101010101010101";

    #[test]
    fn opens_refreshes_and_resolves() {
        let mut new_id = ids();
        let first = reconcile(
            &HashMap::new(),
            vec![obs(FindingKind::IdleAgent, AGENT, serde_json::json!({"idle": 1}))],
            SweepScope::All,
            UnixTime(100),
            600,
            &mut new_id,
        );
        assert_eq!(first.opened.len(), 1);
        let active = index(&first.opened);

        // Same evidence soon after: nothing to write.
        let again = reconcile(
            &active,
            vec![obs(FindingKind::IdleAgent, AGENT, serde_json::json!({"idle": 1}))],
            SweepScope::All,
            UnixTime(160),
            600,
            &mut new_id,
        );
        assert!(again.is_empty());

        // New evidence: updated, same id and first_seen.
        let changed = reconcile(
            &active,
            vec![obs(FindingKind::IdleAgent, AGENT, serde_json::json!({"idle": 2}))],
            SweepScope::All,
            UnixTime(200),
            600,
            &mut new_id,
        );
        assert_eq!(changed.updated.len(), 1);
        assert_eq!(changed.updated[0].id, "fnd_1");
        assert_eq!(changed.updated[0].first_seen, UnixTime(100));
        assert_eq!(changed.updated[0].last_seen, UnixTime(200));

        // Not observed any more: resolved.
        let gone = reconcile(&active, Vec::new(), SweepScope::All, UnixTime(300), 600, &mut new_id);
        assert_eq!(gone.resolved.len(), 1);
        assert_eq!(gone.resolved[0].status, FindingStatus::Resolved);
        assert_eq!(gone.resolved[0].resolved_at, Some(UnixTime(300)));
    }

    #[test]
    fn a_targeted_sweep_resolves_only_its_agents() {
        let mut new_id = ids();
        let other = "agt_020202020202020202020202";
        let opened = reconcile(
            &HashMap::new(),
            vec![
                obs(FindingKind::IdleAgent, AGENT, serde_json::Value::Null),
                obs(FindingKind::IdleAgent, other, serde_json::Value::Null),
                obs(FindingKind::ShadowActivity, "issuer:https://evil", serde_json::Value::Null),
            ],
            SweepScope::All,
            UnixTime(1),
            600,
            &mut new_id,
        );
        let active = index(&opened.opened);
        let only: HashSet<AgentId> = [AGENT.parse().unwrap()].into_iter().collect();
        let changes = reconcile(&active, Vec::new(), SweepScope::Agents(&only), UnixTime(2), 600, &mut new_id);
        assert_eq!(changes.resolved.len(), 1);
        assert_eq!(changes.resolved[0].subject, AGENT);
    }

    #[test]
    fn policy_broadening_is_never_resolved_by_a_sweep() {
        let mut new_id = ids();
        let opened = reconcile(
            &HashMap::new(),
            vec![obs(FindingKind::PolicyBroadening, "policy:2", serde_json::Value::Null)],
            SweepScope::All,
            UnixTime(1),
            600,
            &mut new_id,
        );
        let changes = reconcile(&index(&opened.opened), Vec::new(), SweepScope::All, UnixTime(2), 600, &mut new_id);
        assert!(changes.is_empty());
    }

    #[test]
    fn a_lapsed_acceptance_reopens_and_a_live_one_holds() {
        let mut new_id = ids();
        let opened = reconcile(
            &HashMap::new(),
            vec![obs(FindingKind::StaleKey, AGENT, serde_json::Value::Null)],
            SweepScope::All,
            UnixTime(1),
            600,
            &mut new_id,
        );
        let mut accepted = opened.opened[0].clone();
        accepted.status = FindingStatus::Accepted;
        accepted.acceptance = Some(Acceptance {
            by: "admin".into(),
            justification: "rotating Friday".into(),
            at: UnixTime(2),
            until: UnixTime(50),
        });
        let active = index(&[accepted]);
        let holding = reconcile(
            &active,
            vec![obs(FindingKind::StaleKey, AGENT, serde_json::Value::Null)],
            SweepScope::All,
            UnixTime(10),
            600,
            &mut new_id,
        );
        assert!(holding.is_empty(), "{holding:?}");
        let lapsed = reconcile(
            &active,
            vec![obs(FindingKind::StaleKey, AGENT, serde_json::Value::Null)],
            SweepScope::All,
            UnixTime(50),
            600,
            &mut new_id,
        );
        assert_eq!(lapsed.reopened.len(), 1);
        assert_eq!(lapsed.reopened[0].status, FindingStatus::Open);
        assert!(lapsed.reopened[0].acceptance.is_some(), "the lapsed acceptance stays on record");
    }
}
