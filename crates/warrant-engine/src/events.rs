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
    /// One channel per kind, in the order of [`EventKind::ALL`], for consumers that follow
    /// one kind (the webhook: findings; the SSF transmitter: revocations) and must not
    /// make every decision build its event, nor be woken by it.
    only: [broadcast::Sender<Arc<Event>>; EventKind::ALL.len()],
    next: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(EVENT_BUFFER).0,
            only: std::array::from_fn(|_| broadcast::channel(EVENT_BUFFER).0),
            next: AtomicU64::new(1),
        }
    }
}

impl EventBus {
    /// A new subscription, receiving every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// A new subscription to the events of one kind only, published from now on. Events
    /// of other kinds are not built for it, and do not wake it.
    pub fn subscribe_to(&self, kind: EventKind) -> broadcast::Receiver<Arc<Event>> {
        self.only(kind).subscribe()
    }

    /// The channel of `kind`'s events alone.
    fn only(&self, kind: EventKind) -> &broadcast::Sender<Arc<Event>> {
        let [decision, anomaly, quarantine, approval, revocation, finding, response] = &self.only;
        match kind {
            EventKind::Decision => decision,
            EventKind::Anomaly => anomaly,
            EventKind::Quarantine => quarantine,
            EventKind::Approval => approval,
            EventKind::Revocation => revocation,
            EventKind::Finding => finding,
            EventKind::Response => response,
        }
    }

    /// Whether anyone listens to every event.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event whose data is built by `data`, only when someone listens to
    /// every event or to events of this kind.
    pub fn publish_with(
        &self,
        kind: EventKind,
        at: UnixTime,
        agent: Option<&AgentId>,
        data: impl FnOnce() -> serde_json::Value,
    ) {
        let only = self.only(kind);
        let to_only = only.receiver_count() > 0;
        if !self.has_subscribers() && !to_only {
            return;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(Event { id, kind, at, agent: agent.cloned(), data: data() });
        // An error only means every subscriber left meanwhile.
        if to_only {
            let _ = only.send(Arc::clone(&event));
        }
        let _ = self.tx.send(event);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Publishes an event of `kind`; whether its data was built.
    fn publish(bus: &EventBus, kind: EventKind) -> bool {
        let built = Cell::new(false);
        bus.publish_with(kind, UnixTime(1), None, || {
            built.set(true);
            serde_json::Value::Null
        });
        built.get()
    }

    /// Each kind's subscribers get that kind and no other.
    #[test]
    fn every_kind_has_a_channel_of_its_own() {
        let bus = EventBus::default();
        let mut each: Vec<_> = EventKind::ALL.into_iter().map(|kind| (kind, bus.subscribe_to(kind))).collect();
        for kind in EventKind::ALL {
            assert!(publish(&bus, kind));
        }
        for (kind, rx) in &mut each {
            assert_eq!(rx.try_recv().unwrap().kind, *kind);
            assert!(rx.try_recv().is_err(), "{kind:?}");
        }
    }

    /// A subscriber to one kind gets that kind only, and the events of other kinds are
    /// not even built while nobody else listens.
    #[test]
    fn a_subscriber_to_one_kind_gets_that_kind_only() {
        let bus = EventBus::default();
        let mut revocations = bus.subscribe_to(EventKind::Revocation);
        let mut findings = bus.subscribe_to(EventKind::Finding);
        assert!(!publish(&bus, EventKind::Decision), "a decision's event was built for nobody");
        assert!(publish(&bus, EventKind::Revocation));
        assert!(publish(&bus, EventKind::Finding));
        assert_eq!(revocations.try_recv().unwrap().kind, EventKind::Revocation);
        assert!(revocations.try_recv().is_err());
        assert_eq!(findings.try_recv().unwrap().kind, EventKind::Finding);
        assert!(findings.try_recv().is_err());
    }

    /// A subscriber to every event gets every kind, in order, alongside the subscribers
    /// to one kind.
    #[test]
    fn a_subscriber_to_everything_gets_every_kind() {
        let bus = EventBus::default();
        let mut all = bus.subscribe();
        let mut revocations = bus.subscribe_to(EventKind::Revocation);
        for kind in EventKind::ALL {
            assert!(publish(&bus, kind));
        }
        let got: Vec<EventKind> = std::iter::from_fn(|| all.try_recv().ok()).map(|e| e.kind).collect();
        assert_eq!(got, EventKind::ALL);
        assert_eq!(revocations.try_recv().unwrap().kind, EventKind::Revocation);
    }
}
