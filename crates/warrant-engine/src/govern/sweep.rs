//! The sweep: every agent's facts through the rules, reconciled with the active
//! findings. A full sweep runs on a timer; a targeted one runs soon after a registry
//! event for just the agents it touched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use warrant_core::govern::{
    observe_agent, reconcile, AgentFacts, Changes, FindingKind, GovernRules, LiveStats, SweepScope,
};
use warrant_core::{Agent, AgentId, AgentStatus, UnixTime};
use warrant_store::{LiveWarrant, RevocationKind, StoreError};

use super::{shadow, Governance};

/// The most long-lived warrants listed in one finding's evidence.
const MAX_LISTED: usize = 10;

/// Why a sweep failed. Nothing it found was recorded; the next sweep tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for finding ids.
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
}

impl crate::error::Classify for SweepError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Internal
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// How many agents it looked at.
    pub agents: usize,
    /// How many live warrants it looked at.
    pub live_warrants: usize,
    /// Findings opened.
    pub opened: usize,
    /// Findings whose evidence or severity changed.
    pub updated: usize,
    /// Accepted findings that reopened because their acceptance lapsed.
    pub reopened: usize,
    /// Findings resolved because their cause is gone.
    pub resolved: usize,
    /// Orphaned agents suspended.
    pub suspended: usize,
}

/// What each agent holds, from the live warrants.
pub fn live_stats(live: &[LiveWarrant], rules: &GovernRules) -> HashMap<AgentId, LiveStats> {
    let holder: HashMap<_, _> = live.iter().map(|w| (&w.jti, &w.agent)).collect();
    let mut stats: HashMap<AgentId, LiveStats> = HashMap::new();
    for w in live {
        let s = stats.entry(w.agent.clone()).or_default();
        s.count += 1;
        let lifetime = w.issued_at.until(w.expires_at);
        if lifetime > rules.max_warrant_lifetime && s.long_lived.len() < MAX_LISTED {
            s.long_lived.push((w.jti.clone(), lifetime));
        }
        if s.deepest.as_ref().is_none_or(|(_, d)| w.depth > *d) {
            s.deepest = Some((w.jti.clone(), w.depth));
        }
        if let Some(parent_agent) = w.parent.as_ref().and_then(|p| holder.get(p)) {
            stats.entry((*parent_agent).clone()).or_default().fanout += 1;
        }
    }
    stats
}

impl Governance {
    /// Sweeps every agent now. Also picks up shadow activity and lapsed acceptances.
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
        self.sweep_scope(None).await
    }

    /// Sweeps only `agents` (their per-agent findings).
    pub async fn sweep_agents(&self, agents: &HashSet<AgentId>) -> Result<SweepReport, SweepError> {
        self.sweep_scope(Some(agents)).await
    }

    /// The live warrants whose chain includes one of `agents`, each once: what their
    /// holdings, delegation depth and fan-out are counted from.
    async fn live_of(&self, agents: &HashSet<AgentId>, now: UnixTime) -> Result<Vec<LiveWarrant>, StoreError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for id in agents {
            for w in self.store.live_warrants_through(id, now).await? {
                if seen.insert(w.jti.clone()) {
                    out.push(w);
                }
            }
        }
        Ok(out)
    }

    async fn sweep_scope(&self, only: Option<&HashSet<AgentId>>) -> Result<SweepReport, SweepError> {
        let gov = self;
        let _serial = gov.serial.lock().await;
        // Sharing the database, findings, usage and key times recorded elsewhere count.
        gov.refresh_shared().await?;
        let now = self.clock.now();
        let rules = &gov.config().rules;
        let (agents, live): (Vec<Arc<Agent>>, _) = match only {
            None => (self.directory.agents(), self.store.live_warrants(now).await?),
            Some(set) => {
                (set.iter().filter_map(|id| self.directory.agent(id)).collect(), self.live_of(set, now).await?)
            }
        };
        let stats = live_stats(&live, rules);
        let humans = self.directory.humans();
        let since = now.plus(-rules.usage_window);
        let nothing = LiveStats::default();
        let mut observed = Vec::new();
        for agent in &agents {
            let usage = gov.usage_within(&agent.id, since);
            let facts = AgentFacts {
                agent,
                owner: humans.get(&agent.owner).map(AsRef::as_ref),
                usage: usage.as_ref(),
                live: stats.get(&agent.id).unwrap_or(&nothing),
                key_set_at: gov.key_time(&agent.id).unwrap_or(agent.created_at),
                last_attested: gov.last_attested(&agent.id),
            };
            observed.extend(observe_agent(&facts, rules, now));
        }
        let mut shadow_seen = Vec::new();
        let scope = match only {
            None => {
                let quiet = gov.config().shadow_quiet;
                for (subject, activity) in gov.shadow_activity(now).await? {
                    observed.push(shadow::observation(&subject, &activity, quiet));
                    shadow_seen.push((subject, activity.occurrences));
                }
                SweepScope::All
            }
            Some(set) => SweepScope::Agents(set),
        };
        let seed = hex::encode(crate::random::bytes::<8>()?);
        let mut n = 0u32;
        let mut new_id = move || {
            n += 1;
            format!("fnd_{seed}{n:06x}")
        };
        let changes = match gov.active.lock() {
            Ok(active) => reconcile(&active, observed, scope, now, gov.config().refresh, &mut new_id),
            Err(_) => Changes::default(),
        };
        let mut report = SweepReport {
            agents: agents.len(),
            live_warrants: live.len(),
            opened: changes.opened.len(),
            updated: changes.updated.len(),
            reopened: changes.reopened.len(),
            resolved: changes.resolved.len(),
            suspended: 0,
        };
        let orphans: Vec<AgentId> = changes
            .opened
            .iter()
            .chain(&changes.reopened)
            .filter(|f| f.kind == FindingKind::OrphanedAgent)
            .filter_map(|f| f.agent())
            .collect();
        self.commit_findings(changes, now).await?;
        if let Err(e) = gov.shadow_reported(&shadow_seen).await {
            // Kept unreported, the activity is observed again by the next sweep.
            tracing::warn!(error = %e, "could not mark shadow activity as reported");
        }
        if gov.config().auto_suspend_orphans {
            for id in orphans {
                if self.directory.agent(&id).is_some_and(|a| a.status == AgentStatus::Active) {
                    let why = "orphaned: its owner is disabled or removed; suspended by governance";
                    match self.revocation.revoke(RevocationKind::Agent, id.as_str(), why).await {
                        Ok(_) => report.suspended += 1,
                        Err(e) => tracing::error!(agent = %id, error = %e, "could not suspend an orphaned agent"),
                    }
                }
            }
        }
        if report != (SweepReport { agents: report.agents, live_warrants: report.live_warrants, ..Default::default() })
        {
            tracing::info!(
                agents = report.agents,
                opened = report.opened,
                updated = report.updated,
                reopened = report.reopened,
                resolved = report.resolved,
                suspended = report.suspended,
                targeted = only.is_some(),
                "governance sweep"
            );
        }
        Ok(report)
    }

    /// Sweeps every agent on the configured interval, the agents a registry event
    /// touched soon after it, and writes usage to the store. Runs until dropped (the
    /// engine's background handle runs it).
    pub(crate) async fn run(&self) {
        let config = self.config().clone();
        if !config.enabled {
            return std::future::pending().await;
        }
        let mut sweep = tokio::time::interval(config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(config.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // On a shared database, one server (the leader) runs the full sweep. Who
                // leads is read at each tick, not as a guard of this branch: a guard is
                // read once as the loop waits, so a server that took the lead while
                // waiting would not sweep until something else woke it.
                _ = sweep.tick() => {
                    if self.lead.is_leader() {
                        if let Err(e) = self.sweep().await {
                            tracing::warn!(error = %e, "governance sweep failed; will retry at the next interval");
                        }
                    }
                }
                _ = flush.tick() => self.flush_usage().await,
                () = self.nudge.notified() => {
                    tokio::time::sleep(config.react_within).await;
                    let agents = self.take_pending();
                    // Sharing the database, the leader sweeps (its next full sweep covers
                    // what another server saw change).
                    if !agents.is_empty() && self.lead.is_leader() {
                        if let Err(e) = self.sweep_agents(&agents).await {
                            tracing::warn!(error = %e, "targeted governance sweep failed; the next full sweep covers it");
                        }
                    }
                }
            }
        }
    }

    /// Writes recorded usage the store is behind on (also at shutdown).
    pub(crate) async fn flush_usage(&self) {
        if let Err(e) = self.flush(self.clock.now()).await {
            tracing::warn!(error = %e, "could not save agents' usage or the shadow activity counted; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_core::WarrantId;

    fn w(jti: u8, parent: Option<u8>, agent: u8, depth: usize, life: i64) -> LiveWarrant {
        LiveWarrant {
            jti: WarrantId::from_random([jti; 12]),
            parent: parent.map(|p| WarrantId::from_random([p; 12])),
            agent: AgentId::from_random([agent; 12]),
            depth,
            issued_at: UnixTime(0),
            expires_at: UnixTime(life),
        }
    }

    #[test]
    fn live_stats_count_holdings_lifetimes_depth_and_fanout() {
        let rules = GovernRules { max_warrant_lifetime: 600, ..GovernRules::default() };
        let live =
            vec![w(1, None, 1, 1, 900), w(2, Some(1), 2, 2, 300), w(3, Some(1), 3, 2, 300), w(4, Some(3), 4, 3, 60)];
        let stats = live_stats(&live, &rules);
        let a1 = &stats[&AgentId::from_random([1; 12])];
        assert_eq!((a1.count, a1.fanout, a1.long_lived.len()), (1, 2, 1));
        let a3 = &stats[&AgentId::from_random([3; 12])];
        assert_eq!(a3.fanout, 1);
        assert_eq!(stats[&AgentId::from_random([4; 12])].deepest.as_ref().unwrap().1, 3);
    }
}
