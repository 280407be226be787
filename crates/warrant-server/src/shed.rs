//! Load shedding: past a bound of requests in progress, decisions and issuance are
//! refused at once with `503 Service Unavailable` and `Retry-After`, before they are
//! parsed, decided or recorded.
//!
//! Every decision waits for its audit record to be durable, so an overloaded server does
//! not fail: it queues, and every caller's latency grows with the queue. Refusing the
//! excess early keeps the admitted requests' latency bounded and tells the callers (PEPs,
//! SDKs) to come back, instead of answering all of them late. A shed request is not a
//! decision: it is never an allow, it has no audit record, and the caller must treat it
//! as "not decided" (a PEP fails closed). Revocation, introspection, health and
//! management are never shed: the kill switch must work hardest exactly when the server
//! is busiest.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::{ApiError, OAuthError};

/// Seconds a shed caller is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The bound on requests in progress, and the count against it.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    now: AtomicUsize,
    shed: AtomicU64,
}

/// One admitted request; dropping it (when the answer is ready) frees its place.
#[derive(Debug)]
pub struct Admitted(Arc<InFlight>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// At most `max` requests in progress at once (`None`: no bound).
    pub fn new(max: Option<usize>) -> Arc<Self> {
        Arc::new(InFlight { max: max.unwrap_or(usize::MAX), now: AtomicUsize::new(0), shed: AtomicU64::new(0) })
    }

    /// Admits one request, or `None` when `max` are already in progress (counted as shed).
    pub fn enter(self: &Arc<Self>) -> Option<Admitted> {
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.now.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Admitted(Arc::clone(self)))
    }

    /// Requests in progress now.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }

    /// Requests shed since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// The bound (`usize::MAX` when there is none).
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Middleware for the shed routes: admits the request or answers 503 with `Retry-After`
/// (an OAuth error body on the token endpoint, the API's error body elsewhere).
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(admitted) = state.limits.in_flight().enter() else {
        let max = state.limits.in_flight().max();
        tracing::warn!(max, path = %request.uri().path(), "shed a request: the server is at its limit of requests in progress");
        let message =
            format!("the server is at its limit of {max} requests in progress; retry in {RETRY_AFTER_SECS} s");
        let retry = [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())];
        return if request.uri().path() == "/oauth2/token" {
            let error = OAuthError::with_status(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", message);
            (retry, error).into_response()
        } else {
            (retry, ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)).into_response()
        };
    };
    let response = next.run(request).await;
    drop(admitted);
    response
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn past_the_bound_requests_are_shed_until_a_place_frees() {
        let gate = InFlight::new(Some(2));
        let a = gate.enter().expect("first admitted");
        let b = gate.enter().expect("second admitted");
        assert!(gate.enter().is_none());
        assert_eq!((gate.current(), gate.shed()), (2, 1));
        drop(a);
        let c = gate.enter().expect("a freed place admits again");
        assert!(gate.enter().is_none());
        drop((b, c));
        assert_eq!((gate.current(), gate.shed()), (0, 2));
        assert!(InFlight::new(None).enter().is_some());
    }

    /// Many threads entering and leaving at once never have more than the bound admitted
    /// at the same time, and the count returns to zero.
    #[test]
    fn the_bound_holds_under_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = InFlight::new(Some(3));
        let (admitted, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        if let Some(place) = gate.enter() {
                            let now = admitted.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            admitted.fetch_sub(1, Ordering::SeqCst);
                            drop(place);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 1);
        assert_eq!(gate.current(), 0);
    }
}
