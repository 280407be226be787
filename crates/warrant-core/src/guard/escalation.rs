//! The response to probing, at the smallest scale that contains it.
//!
//! A probing deny (a request the scope or the policy refused) is evidence against the
//! warrant that made it before it is evidence against the agent: a leaked narrow warrant
//! probing for more should cost that warrant, not every task the agent is doing. So the
//! ladder answers first at the scale of the warrant, then of the task, then of the agent:
//!
//! 1. `warrant_denies` probing denies of distinct requests with one warrant revoke that
//!    warrant (and what was delegated from it); the same refused request retried is one;
//! 2. `task_warrants` warrants of one task revoked for probing revoke the task;
//! 3. `agent_tasks` tasks revoked for probing quarantine the agent.
//!
//! Trust still falls with every deny streak, and trust below the threshold still
//! quarantines at once: the ladder only adds earlier, smaller responses.
//!
//! Pure: no clock, no I/O; the caller passes the time and carries out the response.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{TaskId, UnixTime, WarrantId};

/// Where the ladder's rungs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationConfig {
    /// Probing denies with one warrant that revoke it (0: never).
    pub warrant_denies: u32,
    /// Warrants of one task revoked for probing that revoke the task (0: never).
    pub task_warrants: u32,
    /// Tasks revoked for probing that quarantine the agent (0: never).
    pub agent_tasks: u32,
    /// Only the probing denies of the last this many seconds count towards a warrant's
    /// rung (0: every one since the warrant was issued): probing is many refusals close
    /// together, not a few spread over a long-lived warrant's day.
    pub window_secs: i64,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig { warrant_denies: 5, task_warrants: 2, agent_tasks: 2, window_secs: 3_600 }
    }
}

/// What to do about one probing deny.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// Nothing yet.
    None,
    /// Revoke this warrant: it made `denies` probing requests.
    RevokeWarrant {
        /// How many.
        denies: u32,
    },
    /// Revoke this task: `warrants` of its warrants were revoked for probing.
    RevokeTask {
        /// How many.
        warrants: u32,
    },
    /// Quarantine the agent: `tasks` of its tasks were revoked for probing.
    QuarantineAgent {
        /// How many.
        tasks: u32,
    },
}

/// The most warrants and tasks one agent's ladder remembers; expired entries go first.
const MAX_ENTRIES: usize = 1000;

/// One agent's ladder: probing denies per warrant, and warrants and tasks revoked for
/// probing. Entries are forgotten when their warrant or task expires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ladder {
    /// Probing denies per warrant, with the warrant's expiry.
    warrants: BTreeMap<WarrantId, (u32, UnixTime)>,
    /// Warrants revoked for probing per task, with the latest expiry seen in it.
    tasks: BTreeMap<TaskId, (u32, UnixTime)>,
    /// Tasks revoked for probing (an agent-level count; reset on resume).
    tasks_revoked: u32,
    /// The request keys each warrant was refused for, and when, so a retry is not counted
    /// again and old refusals leave the window.
    #[serde(default)]
    seen: BTreeMap<WarrantId, Vec<(u64, UnixTime)>>,
    /// The warrants the ladder already revoked.
    #[serde(default)]
    revoked: std::collections::BTreeSet<WarrantId>,
}

/// The most distinct refused requests remembered per warrant; beyond them every refusal
/// counts.
const MAX_SEEN: usize = 32;

impl Ladder {
    /// Counts one probing deny of the request `request` (its
    /// [key](crate::guard::baseline::request_key)) by `warrant` (expiring at `expires`) of
    /// `task`, at `now`, and says how to respond. A request this warrant was already
    /// refused for within the window is a retry: it counts nothing. A warrant is revoked
    /// once, when its distinct refusals within the window reach the rung.
    pub fn probe(
        &mut self,
        cfg: &EscalationConfig,
        warrant: &WarrantId,
        task: &TaskId,
        request: u64,
        expires: UnixTime,
        now: UnixTime,
    ) -> Response {
        self.forget_expired(now);
        let seen = self.seen.entry(warrant.clone()).or_default();
        if cfg.window_secs > 0 {
            let from = now.plus(-cfg.window_secs);
            seen.retain(|(_, at)| *at > from);
        }
        if seen.iter().any(|(key, _)| *key == request) {
            return Response::None;
        }
        if seen.len() < MAX_SEEN {
            seen.push((request, now));
        }
        let denies = u32::try_from(seen.len()).unwrap_or(u32::MAX);
        self.warrants.entry(warrant.clone()).or_insert((0, expires)).0 = denies;
        if cfg.warrant_denies == 0 || denies < cfg.warrant_denies || !self.revoked.insert(warrant.clone()) {
            return Response::None;
        }
        let warrants = {
            let entry = self.tasks.entry(task.clone()).or_insert((0, expires));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = entry.1.max(expires);
            entry.0
        };
        if cfg.task_warrants == 0 || warrants != cfg.task_warrants {
            return Response::RevokeWarrant { denies };
        }
        self.tasks_revoked = self.tasks_revoked.saturating_add(1);
        if cfg.agent_tasks == 0 || self.tasks_revoked < cfg.agent_tasks {
            return Response::RevokeTask { warrants };
        }
        Response::QuarantineAgent { tasks: self.tasks_revoked }
    }

    /// Starts afresh (the agent was resumed by its owner).
    pub fn reset(&mut self) {
        *self = Ladder::default();
    }

    fn forget_expired(&mut self, now: UnixTime) {
        self.warrants.retain(|_, (_, exp)| *exp > now);
        self.tasks.retain(|_, (_, exp)| *exp > now);
        while self.warrants.len() >= MAX_ENTRIES {
            self.warrants.pop_first();
        }
        let warrants = &self.warrants;
        self.seen.retain(|w, _| warrants.contains_key(w));
        self.revoked.retain(|w| warrants.contains_key(w));
        while self.tasks.len() >= MAX_ENTRIES {
            self.tasks.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: u8) -> WarrantId {
        WarrantId::from_random([n; 12])
    }

    fn t(n: u8) -> TaskId {
        TaskId::from_random([n; 12])
    }

    const EXP: UnixTime = UnixTime(10_000);
    const NOW: UnixTime = UnixTime(1_000);

    /// A fresh request key for every call: each probe is a different request.
    fn key() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn the_warrant_goes_first_then_the_task_then_the_agent() {
        let cfg = EscalationConfig::default();
        let mut l = Ladder::default();
        // One leaked warrant probing: only it is revoked, at the 5th deny.
        for _ in 0..4 {
            assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), EXP, NOW), Response::None);
        }
        assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), EXP, NOW), Response::RevokeWarrant { denies: 5 });
        // Later denies of the same warrant ask for nothing more.
        assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), EXP, NOW), Response::None);
        // A second warrant of the same task probing: the task goes.
        for _ in 0..4 {
            l.probe(&cfg, &w(2), &t(1), key(), EXP, NOW);
        }
        assert_eq!(l.probe(&cfg, &w(2), &t(1), key(), EXP, NOW), Response::RevokeTask { warrants: 2 });
        // Another task: its first probing warrant is revoked alone, its second takes
        // the task, and that is the agent's second task: quarantine.
        for _ in 0..4 {
            l.probe(&cfg, &w(3), &t(2), key(), EXP, NOW);
        }
        assert_eq!(l.probe(&cfg, &w(3), &t(2), key(), EXP, NOW), Response::RevokeWarrant { denies: 5 });
        for _ in 0..4 {
            l.probe(&cfg, &w(4), &t(2), key(), EXP, NOW);
        }
        assert_eq!(l.probe(&cfg, &w(4), &t(2), key(), EXP, NOW), Response::QuarantineAgent { tasks: 2 });
    }

    #[test]
    fn probes_spread_over_warrants_of_other_tasks_escalate_no_further_than_each_warrant() {
        let cfg = EscalationConfig::default();
        let mut l = Ladder::default();
        for n in 0..10u8 {
            for _ in 0..4 {
                assert_eq!(l.probe(&cfg, &w(n), &t(n), key(), EXP, NOW), Response::None);
            }
        }
    }

    #[test]
    fn expired_warrants_are_forgotten_and_memory_is_bounded() {
        let cfg = EscalationConfig::default();
        let mut l = Ladder::default();
        for _ in 0..4 {
            l.probe(&cfg, &w(1), &t(1), key(), UnixTime(1_500), NOW);
        }
        // The warrant expired: a new probe by the same id (cannot happen for real ids,
        // but shows the entry was dropped) starts from one.
        assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), UnixTime(3_000), UnixTime(2_000)), Response::None);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let mut bytes = [0u8; 12];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            l.probe(&cfg, &WarrantId::from_random(bytes), &t(1), key(), EXP, NOW);
        }
        assert!(l.warrants.len() <= MAX_ENTRIES);
    }

    #[test]
    fn a_retried_refusal_counts_once() {
        let cfg = EscalationConfig::default();
        let mut l = Ladder::default();
        for _ in 0..50 {
            assert_eq!(l.probe(&cfg, &w(1), &t(1), 7, EXP, NOW), Response::None);
        }
        for k in 0..3 {
            assert_eq!(l.probe(&cfg, &w(1), &t(1), 100 + k, EXP, NOW), Response::None);
        }
        assert_eq!(l.probe(&cfg, &w(1), &t(1), 200, EXP, NOW), Response::RevokeWarrant { denies: 5 });
    }

    #[test]
    fn refusals_spread_beyond_the_window_do_not_add_up() {
        let cfg = EscalationConfig::default();
        let mut l = Ladder::default();
        // Four distinct refusals an hour apart, with a day-long warrant: never five in an hour.
        for h in 0..24 {
            let at = UnixTime(NOW.secs() + h * 3_601);
            assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), UnixTime(200_000), at), Response::None, "hour {h}");
        }
        // Five within the hour: revoked, once.
        let late = UnixTime(NOW.secs() + 100_000);
        for _ in 0..4 {
            l.probe(&cfg, &w(1), &t(1), key(), UnixTime(200_000), late);
        }
        assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), UnixTime(200_000), late), Response::RevokeWarrant { denies: 5 });
        assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), UnixTime(200_000), late), Response::None);
    }

    #[test]
    fn a_rung_at_zero_is_off() {
        let cfg = EscalationConfig { warrant_denies: 0, ..EscalationConfig::default() };
        let mut l = Ladder::default();
        for _ in 0..50 {
            assert_eq!(l.probe(&cfg, &w(1), &t(1), key(), EXP, NOW), Response::None);
        }
    }
}
