//! Live events: decisions, anomalies, quarantines, approvals, revocations and findings,
//! fanned out to every subscriber (the server streams them as server-sent events).
//!
//! Publishing never blocks and never fails the operation that publishes: a subscriber
//! that falls behind loses the oldest events (and is told how many). Event payloads are
//! built only when someone is listening.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;
use warrant_core::{AgentId, UnixTime};

/// How many events a slow subscriber may lag behind before it loses the oldest.
pub const EVENT_BUFFER: usize = 4096;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An authorization decision.
    Decision,
    /// An anomaly signal raised by an agent's behaviour.
    Anomaly,
    /// An agent was quarantined.
    Quarantine,
    /// An approval was opened, approved, rejected or used.
    Approval,
    /// A warrant, agent, task or human was revoked.
    Revocation,
    /// A governance finding appeared or changed.
    Finding,
    /// The guardrails' graduated response chose a response for an agent (observe,
    /// throttle, approval, revoke the warrant or the task, quarantine), carried out or in
    /// shadow mode.
    Response,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 7] = [
        EventKind::Decision,
        EventKind::Anomaly,
        EventKind::Quarantine,
        EventKind::Approval,
        EventKind::Revocation,
        EventKind::Finding,
        EventKind::Response,
    ];

    /// The wire name (the SSE `event:` field).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Decision => "decision",
            EventKind::Anomaly => "anomaly",
            EventKind::Quarantine => "quarantine",
            EventKind::Approval => "approval",
            EventKind::Revocation => "revocation",
            EventKind::Finding => "finding",
            EventKind::Response => "response",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing per server start (the SSE `id:` field).
    pub id: u64,
    /// What it is about.
    pub kind: EventKind,
    /// When it happened.
    pub at: UnixTime,
    /// The agent it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    /// The details.
    pub data: serde_json::Value,
}

/// The fan-out point.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// Findings only, for consumers (the webhook) that must not make every decision
    /// build its event.
    findings: broadcast::Sender<Arc<Event>>,
    next: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(EVENT_BUFFER).0,
            findings: broadcast::channel(EVENT_BUFFER).0,
            next: AtomicU64::new(1),
        }
    }
}

impl EventBus {
    /// A new subscription, receiving every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// A new subscription to `finding` events only.
    pub fn subscribe_findings(&self) -> broadcast::Receiver<Arc<Event>> {
        self.findings.subscribe()
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event whose data is built by `data`, only when someone listens.
    pub fn publish_with(
        &self,
        kind: EventKind,
        at: UnixTime,
        agent: Option<&AgentId>,
        data: impl FnOnce() -> serde_json::Value,
    ) {
        let to_findings = kind == EventKind::Finding && self.findings.receiver_count() > 0;
        if !self.has_subscribers() && !to_findings {
            return;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(Event { id, kind, at, agent: agent.cloned(), data: data() });
        // An error only means every subscriber left meanwhile.
        if to_findings {
            let _ = self.findings.send(Arc::clone(&event));
        }
        let _ = self.tx.send(event);
    }
}
