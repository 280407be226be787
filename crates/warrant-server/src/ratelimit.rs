//! Rate limits on what anybody can call without credentials of ours: the token endpoint
//! (per agent, and per source address for requests that name no registered agent) and
//! anonymous decisions (per source address: requests whose token is not a warrant of
//! ours). Exact GCRA limits (`warrant_core::guard::rate`), one state per key, in memory.
//!
//! The agent a token request is counted against is the one its client assertion (or
//! actor token) *claims*, read without verification and only to pick the bucket: a
//! request naming an agent that is not registered is counted against its address, so
//! inventing agent ids does not buy fresh buckets. Over a limit the answer is 429 with
//! `Retry-After`, before any verification, store access or audit record.
//!
//! The bound on requests in progress ([`InFlight`], `[limits] max_in_flight`) is kept
//! here with the other limits; the middleware that sheds past it is the `shed` module.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use warrant_core::guard::rate::{Gcra, RateLimit};
use warrant_core::UnixTime;
use warrant_engine::{Decision, Engine, TokenRequest};

use crate::config::ServerLimits;
use crate::error::{ApiError, OAuthError};

/// The most keys one limiter tracks. Beyond, keys as good as new are forgotten; if none
/// is, a new key is refused until some are (a flood of addresses cannot grow memory).
pub const MAX_KEYS: usize = 100_000;

/// One rate limit over many keys.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    keys: Mutex<HashMap<String, Gcra>>,
}

impl RateLimiter {
    /// A limiter allowing `limit` per key.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter { limit, keys: Mutex::new(HashMap::new()) }
    }

    /// Counts one request for `key` at `now`: `Ok` if it conforms, else `Err` with the
    /// seconds to wait.
    pub fn check(&self, key: &str, now: UnixTime) -> Result<(), u64> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let state = keys.get(key).copied().unwrap_or_default();
        let next = state.check(self.limit, now)?;
        if !keys.contains_key(key) && keys.len() >= MAX_KEYS {
            keys.retain(|_, g| !g.idle(now));
            if keys.len() >= MAX_KEYS {
                return Err(self.limit.per_secs.max(1));
            }
        }
        keys.insert(key.to_owned(), next);
        Ok(())
    }

    /// Whether `key` is over the limit at `now` (without counting a request): the
    /// seconds to wait, if it is.
    pub fn over(&self, key: &str, now: UnixTime) -> Option<u64> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(key).and_then(|g| g.check(self.limit, now).err())
    }
}

/// The bucket of a source address: the address itself for IPv4 (and IPv4-mapped IPv6),
/// the /64 prefix for IPv6 (one host usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

/// The source address of the connection a request came on, when the server recorded it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// The server's rate limits.
#[derive(Debug)]
pub struct RateLimits {
    token_client: Option<RateLimiter>,
    token_ip: Option<RateLimiter>,
    anonymous_ip: Option<RateLimiter>,
    in_flight: std::sync::Arc<InFlight>,
}

fn with_retry_after(wait: u64, response: impl IntoResponse) -> Response {
    ([(header::RETRY_AFTER, wait.to_string())], response).into_response()
}

impl RateLimits {
    /// The limits configured in `[limits]`.
    pub fn new(limits: &ServerLimits) -> Self {
        RateLimits {
            token_client: limits.token_rate_per_client.map(RateLimiter::new),
            token_ip: limits.token_rate_per_ip.map(RateLimiter::new),
            anonymous_ip: limits.anonymous_rate_per_ip.map(RateLimiter::new),
            in_flight: InFlight::new(limits.max_in_flight),
        }
    }

    /// The bound on decisions and token requests in progress (`[limits] max_in_flight`).
    pub fn in_flight(&self) -> &std::sync::Arc<InFlight> {
        &self.in_flight
    }

    /// Counts a token request; `Some` 429 answer when it is over its limit: per agent
    /// when its client assertion (or actor token) names a registered agent, else per
    /// source address.
    pub fn token(&self, engine: &Engine, req: &TokenRequest, addr: Option<IpAddr>) -> Option<Response> {
        let now = engine.now();
        let claimed = req
            .client_assertion
            .as_deref()
            .or(req.actor_token.as_deref())
            .and_then(|assertion| warrant_token::assertion::claimed_agent(assertion).ok())
            .filter(|id| engine.registry().is_registered(id));
        let (wait, who) = match claimed {
            Some(agent) => (self.token_client.as_ref()?.check(agent.as_str(), now).err()?, "for this agent"),
            None => (self.token_ip.as_ref()?.check(&address_key(addr?), now).err()?, "from this address"),
        };
        tracing::info!(wait, who, "token request refused: over its rate limit");
        let error = OAuthError::with_status(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            format!("too many token requests {who}; retry in {wait} s"),
        );
        Some(with_retry_after(wait, error))
    }

    /// Before deciding: `Some` 429 answer when `addr` is over its anonymous limit and
    /// some token is not a warrant of ours the server already verified (a warrant in
    /// the verified-warrant cache is always decided).
    pub fn anonymous_over<'a>(
        &self,
        engine: &Engine,
        addr: Option<IpAddr>,
        mut tokens: impl Iterator<Item = &'a str>,
    ) -> Option<Response> {
        let limiter = self.anonymous_ip.as_ref()?;
        let key = address_key(addr?);
        let wait = limiter.over(&key, engine.now())?;
        if tokens.all(|t| engine.decisions().knows_warrant(t)) {
            return None;
        }
        tracing::info!(wait, "decision request refused: too many anonymous requests from its address");
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests from this address with tokens that are not warrants of this server; retry in {wait} s"
            ),
        );
        Some(with_retry_after(wait, error))
    }

    /// Seconds to wait when `addr` is over its anonymous limit (requests refused for
    /// their credential, such as Security Event Tokens that did not verify), else `None`.
    pub fn refused_over(&self, engine: &Engine, addr: Option<IpAddr>) -> Option<u64> {
        self.anonymous_ip.as_ref()?.over(&address_key(addr?), engine.now())
    }

    /// Counts one refused request (a Security Event Token that did not verify) against
    /// `addr`'s anonymous limit.
    pub fn count_refused(&self, engine: &Engine, addr: Option<IpAddr>) {
        if let (Some(limiter), Some(addr)) = (self.anonymous_ip.as_ref(), addr) {
            let _ = limiter.check(&address_key(addr), engine.now());
        }
    }

    /// After deciding: counts the anonymous denies among `decisions` against `addr`.
    pub fn count_anonymous<'a>(
        &self,
        engine: &Engine,
        addr: Option<IpAddr>,
        decisions: impl Iterator<Item = &'a Decision>,
    ) {
        let (Some(limiter), Some(addr)) = (self.anonymous_ip.as_ref(), addr) else {
            return;
        };
        let key = address_key(addr);
        let now = engine.now();
        for d in decisions {
            if d.claims.is_none() && d.outcome == warrant_engine::Outcome::Deny {
                let _ = limiter.check(&key, now);
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_counts_per_key() {
        let l = RateLimiter::new(RateLimit { limit: 2, per_secs: 60 });
        let now = UnixTime(1_700_000_000);
        assert!(l.check("a", now).is_ok());
        assert!(l.check("a", now).is_ok());
        assert_eq!(l.over("a", now), Some(30));
        assert_eq!(l.check("a", now), Err(30));
        assert!(l.check("b", now).is_ok());
        assert_eq!(l.over("c", now), None);
        assert!(l.check("a", UnixTime(now.secs() + 30)).is_ok());
    }

    #[test]
    fn addresses_are_bucketed() {
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(address_key(v6), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1");
    }

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
