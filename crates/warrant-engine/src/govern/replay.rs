//! Policy changes replayed on recent decisions: which requests the previous set denied
//! and the new set allows.
//!
//! The decision path records every request that reached Cedar, exactly as Cedar saw it,
//! in a ring of the last [`GovernConfig::history`](super::GovernConfig::history)
//! requests. A policy change evaluates the old and the new set on each distinct request
//! (the latest per agent, action and resource) in the ring. The ring is in memory: after
//! a restart the history starts empty.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use warrant_core::govern::evidence::BroadenedRequest;
use warrant_core::{Agent, UnixTime, WarrantClaims};
use warrant_policy::{CompiledPolicies, DecisionInput};

/// One request as Cedar saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The acting agent as registered then.
    pub agent: Arc<Agent>,
    /// The warrant's claims.
    pub claims: Arc<WarrantClaims>,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The caller's `resource_attrs`.
    pub resource_attrs: Option<Arc<Value>>,
    /// The caller's `context`.
    pub telemetry: Option<Arc<Value>>,
    /// When it was decided.
    pub at: UnixTime,
    /// The trust percent Cedar saw.
    pub trust: i64,
    /// The anomaly kinds Cedar saw.
    pub anomaly: Vec<&'static str>,
    /// Whether it carried an approval.
    pub approved: bool,
}

impl Recorded {
    fn input(&self) -> DecisionInput<'_> {
        DecisionInput {
            agent: &self.agent,
            claims: &self.claims,
            warrant: None,
            action: &self.action,
            resource: &self.resource,
            resource_attrs: self.resource_attrs.as_deref(),
            telemetry: self.telemetry.as_deref(),
            now: self.at,
            trust: self.trust,
            anomaly: &self.anomaly,
            approved: self.approved,
            history: None,
        }
    }

    /// The request, for evidence (no context or attributes: they may hold data).
    pub fn summary(&self) -> BroadenedRequest {
        BroadenedRequest {
            agent: self.agent.id.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            human: self.claims.human().clone(),
            decided_at: self.at,
        }
    }

    /// Whether `set` allows it, without evaluation errors.
    pub fn allowed_by(&self, set: &CompiledPolicies) -> bool {
        set.evaluate(&self.input()).is_ok_and(|v| v.allow && v.errors.is_empty())
    }
}

/// The recent requests that reached Cedar.
#[derive(Debug)]
pub struct History {
    cap: usize,
    ring: Mutex<VecDeque<Arc<Recorded>>>,
}

impl History {
    /// A history of at most `cap` requests (0 records nothing).
    pub fn new(cap: usize) -> Self {
        History { cap, ring: Mutex::new(VecDeque::with_capacity(cap.min(4096))) }
    }

    /// Whether anything is recorded at all.
    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Records one request, dropping the oldest when full.
    pub fn record(&self, recorded: Recorded) {
        if self.cap == 0 {
            return;
        }
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() >= self.cap {
                ring.pop_front();
            }
            ring.push_back(Arc::new(recorded));
        }
    }

    /// The distinct requests, newest first: the latest per agent, action and resource.
    pub fn distinct(&self) -> Vec<Arc<Recorded>> {
        let Ok(ring) = self.ring.lock() else { return Vec::new() };
        let mut seen = HashSet::new();
        ring.iter()
            .rev()
            .filter(|r| seen.insert((r.agent.id.clone(), r.action.clone(), r.resource.clone())))
            .cloned()
            .collect()
    }
}

/// The requests of `history` that `old` denies and `new` allows.
pub fn newly_allowed(old: &CompiledPolicies, new: &CompiledPolicies, history: &[Arc<Recorded>]) -> Vec<Arc<Recorded>> {
    history.iter().filter(|r| !r.allowed_by(old) && r.allowed_by(new)).cloned().collect()
}
