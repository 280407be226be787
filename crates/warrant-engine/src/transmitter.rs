//! The Shared Signals transmitter (OpenID SSF 1.0): tools and gateways that cache
//! warrants subscribe to a stream and receive a signed CAEP `session-revoked` SET for
//! every warrant that is revoked, however it was revoked (the warrant itself, its agent,
//! task or human, a quarantine, a holder's RFC 7009 revocation), in order and at least
//! once, pushed (RFC 8935) or polled (RFC 8936).
//!
//! Nothing is lost: the store writes each revoked warrant into an outbox in the
//! transaction that revokes it, and each stream keeps the sequence number up to which
//! its receiver has everything. A push stream advances only when the receiver answered
//! 2xx, one SET at a time, in order; a poll stream advances over the SETs the receiver
//! acknowledged. A SET's `jti` is `<stream>.<seq>`, the same however often it is sent,
//! so a receiver drops duplicates by `jti`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;
use warrant_store::ssf::{DeliveryMethod, OutboxEvent, OutboxRecord, StreamRecord};
use warrant_store::{Store, StoreError};

use crate::clock::Clock;
use crate::error::{Classify, ErrorKind};
use crate::events::EventBus;
use crate::keys::KeyManager;
use crate::random;

/// The delivery method URI of push (RFC 8935).
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// The delivery method URI of poll (RFC 8936).
pub const POLL: &str = "urn:ietf:rfc:8936";
/// CAEP `session-revoked`: the event every revoked warrant is announced with.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// SSF stream verification.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// The path of the stream configuration endpoint.
pub const STREAMS_PATH: &str = "/ssf/streams";
/// The path of the stream status endpoint.
pub const STATUS_PATH: &str = "/ssf/status";
/// The path of the verification endpoint.
pub const VERIFY_PATH: &str = "/ssf/verify";
/// The path prefix of the poll endpoints (`/ssf/poll/<stream>`).
pub const POLL_PATH: &str = "/ssf/poll";
/// The most SETs one poll answers.
pub const MAX_POLL: usize = 100;
/// The most streams there may be.
pub const MAX_STREAMS: usize = 100;
/// The most streams one receiver may have.
pub const MAX_STREAMS_PER_OWNER: usize = 10;
/// The most verification events one stream may have waiting.
pub const MAX_PENDING_VERIFICATIONS: usize = 10;
/// How long a push waits for the receiver.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts to push to a failing receiver.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often push streams are looked at when no revocation wakes the loop.
const PUSH_TICK: Duration = Duration::from_secs(1);
/// The least time from one push round's start to the next's: the revocations of a burst
/// are delivered by one round, at most this much later, rather than each reading the
/// streams from the store in a round of its own.
const PUSH_COALESCE: Duration = Duration::from_millis(20);
/// How long an event is kept for a receiver that has not collected it, seconds.
pub const RETENTION_SECS: i64 = 7 * 24 * 3600;
/// How often the outbox is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The transmitter's configuration metadata (`/.well-known/ssf-configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransmitterMetadata {
    /// `1_0`.
    pub spec_version: &'static str,
    /// The issuer (the `iss` of every SET).
    pub issuer: String,
    /// Where the SETs' signing keys are published.
    pub jwks_uri: String,
    /// Push and poll.
    pub delivery_methods_supported: [&'static str; 2],
    /// Create, read and delete streams.
    pub configuration_endpoint: String,
    /// A stream's status.
    pub status_endpoint: String,
    /// Ask for a verification event.
    pub verification_endpoint: String,
    /// How receivers authenticate: a bearer token (a PEP credential).
    pub authorization_schemes: Vec<BTreeMap<&'static str, &'static str>>,
    /// Every subject is announced; receivers do not add subjects.
    pub default_subjects: &'static str,
}

/// The delivery part of a stream configuration. Its `Debug` never shows the
/// `authorization_header` secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// [`PUSH`] or [`POLL`].
    pub method: String,
    /// Push: the receiver's endpoint. Poll: Warrant's poll endpoint for the stream (set
    /// by Warrant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Push: the `Authorization` header value to send with each SET (never shown back).
    #[serde(default, skip_serializing)]
    pub authorization_header: Option<String>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("method", &self.method)
            .field("endpoint_url", &self.endpoint_url)
            .field("authorization_header", &self.authorization_header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What a receiver asks for when it creates a stream.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamRequest {
    /// How its SETs are delivered.
    pub delivery: Delivery,
    /// The event types it wants; the ones Warrant sends are delivered.
    #[serde(default)]
    pub events_requested: Vec<String>,
    /// Its own description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A stream's configuration, as the SSF management API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamConfiguration {
    /// The stream id.
    pub stream_id: String,
    /// The transmitter.
    pub iss: String,
    /// The `aud` of the stream's SETs (the stream's own URL).
    pub aud: String,
    /// What Warrant can send.
    pub events_supported: Vec<&'static str>,
    /// What the receiver asked for.
    pub events_requested: Vec<String>,
    /// What the stream carries.
    pub events_delivered: Vec<String>,
    /// How.
    pub delivery: Delivery,
    /// The receiver's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A stream's status (Warrant's streams are always enabled while they exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// The stream id.
    pub stream_id: String,
    /// `enabled`.
    pub status: &'static str,
}

/// An RFC 8936 poll request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PollRequest {
    /// The `jti`s of SETs the receiver processed.
    #[serde(default)]
    pub ack: Vec<String>,
    /// SETs the receiver could not process (logged; they count as acknowledged).
    #[serde(default, rename = "setErrs")]
    pub set_errs: BTreeMap<String, Value>,
    /// The most SETs to return (default and ceiling [`MAX_POLL`]); 0 only acknowledges.
    #[serde(default, rename = "maxEvents")]
    pub max_events: Option<usize>,
    /// Accepted; Warrant always answers at once.
    #[serde(default, rename = "returnImmediately")]
    pub return_immediately: Option<bool>,
}

/// An RFC 8936 poll answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollResponse {
    /// SET `jti` to the SET.
    pub sets: BTreeMap<String, String>,
    /// Whether more SETs are waiting.
    #[serde(rename = "moreAvailable")]
    pub more_available: bool,
}

/// Why a stream request failed. One variant per answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No such stream (or not the caller's).
    #[error("no stream `{0}` of yours")]
    NotFound(String),
    /// Too many streams (in all, or of this receiver).
    #[error("too many streams (at most {MAX_STREAMS_PER_OWNER} per receiver, {MAX_STREAMS} in all); delete one first")]
    TooMany,
    /// Too many verification events are waiting on the stream.
    #[error("{MAX_PENDING_VERIFICATIONS} verification events are already waiting on this stream; collect them first")]
    Busy,
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A SET could not be made.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl Classify for StreamError {
    fn kind(&self) -> ErrorKind {
        match self {
            StreamError::Invalid(_) | StreamError::TooMany => ErrorKind::Invalid,
            StreamError::Busy => ErrorKind::Conflict,
            StreamError::NotFound(_) => ErrorKind::NotFound,
            StreamError::Store(_) | StreamError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Who a stream belongs to: the operator (the admin token, which sees every stream) or
/// one enforcement point (a PEP credential, by its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The admin token.
    Admin,
    /// A PEP credential's id.
    Pep(String),
}

impl Owner {
    /// How the store records it.
    fn label(&self) -> String {
        match self {
            Owner::Admin => "admin".to_owned(),
            Owner::Pep(id) => format!("pep:{id}"),
        }
    }

    fn may_see(&self, stream: &StreamRecord) -> bool {
        matches!(self, Owner::Admin) || stream.owner == self.label()
    }
}

/// A push receiver that failed: when to try again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next: Instant,
}

/// The transmitter service.
pub struct Transmitter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyManager>,
    events: Arc<EventBus>,
    issuer: String,
    allow_private_push: bool,
    /// `None` when the client could not be built: every push fails (closed), never
    /// through a client without the public-address guard.
    http: Option<reqwest::Client>,
    /// Poll streams: SETs acknowledged beyond the stored cursor (lost on restart, which
    /// only redelivers them).
    acked: Mutex<HashMap<String, BTreeSet<u64>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Push streams with a delivery round running.
    pushing: Mutex<BTreeSet<String>>,
    /// Push rounds started since the server started.
    rounds: std::sync::atomic::AtomicU64,
    wake: tokio::sync::Notify,
    /// Whether this server delivers push streams (one server of a shared database).
    lead: Arc<crate::lead::Lead>,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// What the transmitter is built from.
pub(crate) struct TransmitterParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyManager>,
    pub events: Arc<EventBus>,
    pub issuer: String,
    pub allow_private_push: bool,
    pub lead: Arc<crate::lead::Lead>,
}

fn valid_push_url(url: &str, allow_private: bool) -> Result<(), StreamError> {
    let bad = |why: String| StreamError::Invalid(format!("`delivery.endpoint_url` {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || url.len() > 2048 {
        return Err(bad("must be an http(s) URL of at most 2048 bytes".into()));
    }
    if parsed.scheme() == "http" && !allow_private {
        return Err(bad("must be https (http only with `ssf.danger_allow_private_push`)".into()));
    }
    let host = parsed.host_str().ok_or_else(|| bad("has no host".into()))?;
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        if let (Some(why), false) = (crate::webhook::forbidden_address(ip), allow_private) {
            return Err(bad(format!(
                "points at {ip}, a {why} address; set `ssf.danger_allow_private_push = true` to deliver there"
            )));
        }
    }
    Ok(())
}

impl Transmitter {
    pub(crate) fn new(parts: TransmitterParts) -> Self {
        let http = crate::webhook::client(parts.allow_private_push)
            .map_err(|e| tracing::error!(error = %e, "no HTTP client for SSF push; push streams will not be delivered"))
            .ok();
        Transmitter {
            store: parts.store,
            clock: parts.clock,
            keys: parts.keys,
            events: parts.events,
            issuer: parts.issuer,
            allow_private_push: parts.allow_private_push,
            http,
            acked: Mutex::new(HashMap::new()),
            lead: parts.lead,
            backoff: Mutex::new(HashMap::new()),
            pushing: Mutex::new(BTreeSet::new()),
            rounds: std::sync::atomic::AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The transmitter configuration metadata.
    pub fn metadata(&self) -> TransmitterMetadata {
        TransmitterMetadata {
            spec_version: "1_0",
            issuer: self.issuer.clone(),
            jwks_uri: self.url("/.well-known/jwks.json"),
            delivery_methods_supported: [PUSH, POLL],
            configuration_endpoint: self.url(STREAMS_PATH),
            status_endpoint: self.url(STATUS_PATH),
            verification_endpoint: self.url(VERIFY_PATH),
            authorization_schemes: vec![BTreeMap::from([("spec_urn", "urn:ietf:rfc:6750")])],
            default_subjects: "ALL",
        }
    }

    fn view(&self, s: &StreamRecord) -> StreamConfiguration {
        let delivery = match s.method {
            DeliveryMethod::Push => {
                Delivery { method: PUSH.into(), endpoint_url: s.endpoint.clone(), authorization_header: None }
            }
            DeliveryMethod::Poll => Delivery {
                method: POLL.into(),
                endpoint_url: Some(self.url(&format!("{POLL_PATH}/{}", s.id))),
                authorization_header: None,
            },
        };
        StreamConfiguration {
            stream_id: s.id.clone(),
            iss: self.issuer.clone(),
            aud: s.audience.clone(),
            events_supported: vec![SESSION_REVOKED],
            events_requested: s.events.clone(),
            events_delivered: vec![SESSION_REVOKED.to_owned()],
            delivery,
            description: s.description.clone(),
        }
    }

    /// Creates a stream owned by `owner`. It carries the events from now on.
    pub async fn create(&self, owner: &Owner, req: StreamRequest) -> Result<StreamConfiguration, StreamError> {
        let method = match req.delivery.method.as_str() {
            PUSH => DeliveryMethod::Push,
            POLL => DeliveryMethod::Poll,
            other => {
                return Err(StreamError::Invalid(format!(
                    "`delivery.method` `{}` is not supported; use `{PUSH}` or `{POLL}`",
                    other.chars().take(100).collect::<String>()
                )))
            }
        };
        let (endpoint, authorization) = match method {
            DeliveryMethod::Push => {
                let url = req.delivery.endpoint_url.clone().ok_or_else(|| {
                    StreamError::Invalid("push delivery needs `delivery.endpoint_url`, the receiver's endpoint".into())
                })?;
                valid_push_url(&url, self.allow_private_push)?;
                let auth = req.delivery.authorization_header.clone();
                if auth.as_ref().is_some_and(|a| a.len() > 4096 || a.chars().any(char::is_control)) {
                    return Err(StreamError::Invalid("`delivery.authorization_header` is not a header value".into()));
                }
                (Some(url), auth)
            }
            DeliveryMethod::Poll => {
                if req.delivery.endpoint_url.is_some() {
                    return Err(StreamError::Invalid(
                        "poll delivery takes no `delivery.endpoint_url`: Warrant names its poll endpoint".into(),
                    ));
                }
                (None, None)
            }
        };
        if req.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(StreamError::Invalid("`description` is longer than 500 characters".into()));
        }
        if req.events_requested.len() > 50 || req.events_requested.iter().any(|e| e.len() > 256) {
            return Err(StreamError::Invalid("`events_requested` is too long".into()));
        }
        let streams = self.store.list_streams().await?;
        if streams.len() >= MAX_STREAMS
            || streams.iter().filter(|s| s.owner == owner.label()).count() >= MAX_STREAMS_PER_OWNER
        {
            return Err(StreamError::TooMany);
        }
        let id =
            format!("ssf_{}", hex::encode(random::bytes::<12>().map_err(|e| StreamError::Internal(e.to_string()))?));
        let mut record = StreamRecord {
            audience: self.url(&format!("{STREAMS_PATH}/{id}")),
            id,
            owner: owner.label(),
            method,
            endpoint,
            authorization,
            events: req.events_requested,
            description: req.description,
            cursor: 0,
            created_at: self.clock.now(),
        };
        record.cursor = self.store.insert_stream(&record).await?;
        tracing::info!(stream = %record.id, owner = %record.owner, method = %record.method, "SSF stream created");
        Ok(self.view(&record))
    }

    /// The stream `id` if `owner` may see it (the admin sees every stream).
    async fn owned(&self, owner: &Owner, id: &str) -> Result<StreamRecord, StreamError> {
        match self.store.get_stream(id).await? {
            Some(s) if owner.may_see(&s) => Ok(s),
            _ => Err(StreamError::NotFound(id.chars().take(100).collect())),
        }
    }

    /// One stream's configuration.
    pub async fn get(&self, owner: &Owner, id: &str) -> Result<StreamConfiguration, StreamError> {
        Ok(self.view(&self.owned(owner, id).await?))
    }

    /// Every stream `owner` may see.
    pub async fn list(&self, owner: &Owner) -> Result<Vec<StreamConfiguration>, StreamError> {
        let all = self.store.list_streams().await?;
        Ok(all.iter().filter(|s| owner.may_see(s)).map(|s| self.view(s)).collect())
    }

    /// Deletes a stream; its undelivered events are dropped with it.
    pub async fn delete(&self, owner: &Owner, id: &str) -> Result<(), StreamError> {
        let stream = self.owned(owner, id).await?;
        self.store.delete_stream(&stream.id).await?;
        self.forget(&stream.id);
        tracing::info!(stream = %stream.id, owner = %stream.owner, "SSF stream deleted");
        Ok(())
    }

    fn forget(&self, id: &str) {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.backoff.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// A stream's status.
    pub async fn status(&self, owner: &Owner, id: &str) -> Result<StreamStatus, StreamError> {
        let stream = self.owned(owner, id).await?;
        Ok(StreamStatus { stream_id: stream.id, status: "enabled" })
    }

    /// Queues a verification event on the stream, echoing `state`.
    pub async fn verify(&self, owner: &Owner, id: &str, state: Option<&str>) -> Result<(), StreamError> {
        if state.is_some_and(|s| s.len() > 1024) {
            return Err(StreamError::Invalid("`state` is longer than 1024 bytes".into()));
        }
        let stream = self.owned(owner, id).await?;
        let pending = self.store.outbox_after(&stream.id, stream.cursor, warrant_store::ssf::MAX_OUTBOX_READ).await?;
        let waiting = pending.iter().filter(|r| matches!(r.event, OutboxEvent::Verification { .. })).count();
        if waiting >= MAX_PENDING_VERIFICATIONS {
            return Err(StreamError::Busy);
        }
        self.store.add_verification(&stream.id, state, self.clock.now()).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The SET announcing `record` on `stream`: its `jti` and the signed token.
    fn set_for(&self, stream: &StreamRecord, record: &OutboxRecord) -> Result<(String, String), StreamError> {
        let jti = format!("{}.{}", stream.id, record.seq);
        let (sub_id, events, txn) = match &record.event {
            OutboxEvent::Revoked { jti: warrant, revocation, agent, task, human } => {
                let opaque = |id: &str| serde_json::json!({"format": "opaque", "id": id});
                let mut subject = serde_json::Map::new();
                subject.insert("format".into(), "complex".into());
                subject.insert(
                    "session".into(),
                    serde_json::json!({"format": "jwt_id", "iss": self.issuer, "jti": warrant.as_str()}),
                );
                if let Some(h) = human {
                    subject.insert("user".into(), opaque(h.as_str()));
                }
                if let Some(a) = agent {
                    subject.insert("application".into(), opaque(a.as_str()));
                }
                if let Some(t) = task {
                    subject.insert("task".into(), opaque(t.as_str()));
                }
                let event = SessionRevoked {
                    event_timestamp: revocation.at.0,
                    reason_admin: BTreeMap::from([(
                        "en",
                        format!("{} revoked: {}", revocation.kind, revocation.reason),
                    )]),
                };
                let event = serde_json::to_value(event).map_err(|e| StreamError::Internal(e.to_string()))?;
                (Value::Object(subject), BTreeMap::from([(SESSION_REVOKED, event)]), Some(revocation.id.clone()))
            }
            OutboxEvent::Verification { state } => {
                let mut event = serde_json::Map::new();
                if let Some(state) = state {
                    event.insert("state".into(), state.clone().into());
                }
                let sub_id = serde_json::json!({"format": "opaque", "id": stream.id});
                (sub_id, BTreeMap::from([(VERIFICATION, Value::Object(event))]), None)
            }
        };
        let claims = SetClaims {
            iss: &self.issuer,
            aud: &stream.audience,
            iat: self.clock.now().0,
            jti: &jti,
            txn: txn.as_deref(),
            sub_id,
            events,
        };
        let ring = self.keys.ring().map_err(|e| StreamError::Internal(e.to_string()))?;
        let token = warrant_token::jws::sign(ring.active(), SET_TYP, &claims)
            .map_err(|e| StreamError::Internal(e.to_string()))?;
        Ok((jti, token))
    }

    /// An RFC 8936 poll: acknowledges what the receiver names, then answers the oldest
    /// unacknowledged SETs, in order.
    pub async fn poll(&self, owner: &Owner, id: &str, req: PollRequest) -> Result<PollResponse, StreamError> {
        let stream = self.owned(owner, id).await?;
        if stream.method != DeliveryMethod::Poll {
            return Err(StreamError::Invalid(format!("stream `{}` is delivered by push, not polled", stream.id)));
        }
        for (jti, err) in &req.set_errs {
            tracing::warn!(stream = %stream.id, set = %jti.chars().take(100).collect::<String>(), error = %err, "a receiver could not process a SET");
        }
        let mut cursor = stream.cursor;
        let pending = self.store.outbox_after(&stream.id, cursor, warrant_store::ssf::MAX_OUTBOX_READ).await?;
        // Only SETs that exist and are waiting can be acknowledged: an ack of anything
        // else (a future sequence number, another stream's SET) is ignored, so the set of
        // acknowledged SETs never outgrows one read of the outbox.
        let waiting: BTreeSet<u64> = pending.iter().map(|r| r.seq).collect();
        let prefix = format!("{}.", stream.id);
        let named: Vec<u64> = req
            .ack
            .iter()
            .chain(req.set_errs.keys())
            .filter_map(|jti| jti.strip_prefix(&prefix)?.parse::<u64>().ok())
            .filter(|seq| waiting.contains(seq))
            .collect();
        let acked = {
            let mut all = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            let acked = all.entry(stream.id.clone()).or_default();
            acked.extend(named);
            acked.retain(|seq| waiting.contains(seq));
            acked.clone()
        };
        // The cursor moves over every event acknowledged without a gap; an event of the
        // outbox not for this stream (another stream's verification) is no gap.
        for record in &pending {
            if acked.contains(&record.seq) {
                cursor = record.seq;
            } else {
                break;
            }
        }
        if cursor > stream.cursor {
            self.store.advance_stream(&stream.id, cursor).await?;
            let mut all = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(set) = all.get_mut(&stream.id) {
                set.retain(|seq| *seq > cursor);
            }
        }
        let max = req.max_events.unwrap_or(MAX_POLL).min(MAX_POLL);
        let mut sets = BTreeMap::new();
        let unacked = pending.iter().filter(|r| r.seq > cursor && !acked.contains(&r.seq));
        let mut more = false;
        for record in unacked {
            if sets.len() == max {
                more = true;
                break;
            }
            let (jti, token) = self.set_for(&stream, record)?;
            sets.insert(jti, token);
        }
        Ok(PollResponse { sets, more_available: more || pending.len() == warrant_store::ssf::MAX_OUTBOX_READ })
    }

    /// Pushes what each push stream has not received yet, in order, one SET at a time;
    /// a receiver that fails is tried again later with exponential backoff. Runs until
    /// aborted.
    ///
    /// The loop follows revocations from the call on (subscribed before it is polled),
    /// and only revocations: a subscription to every event would make every decision
    /// build its event and wake the loop, which reads the streams from the store each time.
    pub fn run_push(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let revocations = self.events.subscribe_to(crate::events::EventKind::Revocation);
        self.push_loop(revocations)
    }

    async fn push_loop(self: Arc<Self>, mut revocations: tokio::sync::broadcast::Receiver<Arc<crate::events::Event>>) {
        let mut pruned = Instant::now();
        let mut last_round: Option<Instant> = None;
        loop {
            // On a shared database, one server (the leader) delivers and prunes.
            if self.lead.is_leader() {
                if let Some(wait) = last_round.and_then(|at| PUSH_COALESCE.checked_sub(at.elapsed())) {
                    tokio::time::sleep(wait).await;
                }
                if !self.lead.is_leader() {
                    continue; // lost the lead while waiting
                }
                // The round reads the outbox after these revocations were recorded, so it
                // delivers them too: they need no round of their own.
                while matches!(revocations.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
                last_round = Some(Instant::now());
                self.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Arc::clone(&self).push_once();
                if pruned.elapsed() >= PRUNE_EVERY {
                    pruned = Instant::now();
                    self.prune().await;
                }
            }
            tokio::select! {
                _ = revocations.recv() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(PUSH_TICK) => {}
            }
        }
    }

    /// How many rounds of push delivery the push loop has started (each reads the streams
    /// from the store once): a burst of revocations takes one, not one each.
    pub fn push_rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the events every stream has received, and those older than
    /// [`RETENTION_SECS`] that a receiver never collected.
    pub async fn prune(&self) {
        let older_than = warrant_core::UnixTime(self.clock.now().0.saturating_sub(RETENTION_SECS));
        match self.store.prune_outbox(older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(events = n, "pruned the SSF outbox"),
            Err(e) => tracing::warn!(error = %e, "the SSF outbox could not be pruned; will retry"),
        }
    }

    /// Starts a round of push delivery for every push stream that is neither being
    /// pushed to nor backing off: each stream in a task of its own, so a slow receiver
    /// delays nobody else.
    pub fn push_once(self: Arc<Self>) {
        tokio::spawn(async move {
            let streams = match self.store.list_streams().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "the SSF streams could not be read; will retry");
                    return;
                }
            };
            for stream in streams.into_iter().filter(|s| s.method == DeliveryMethod::Push) {
                let waiting = self.backoff.lock().unwrap_or_else(|e| e.into_inner()).get(&stream.id).copied();
                if waiting.is_some_and(|b| b.next > Instant::now()) {
                    continue;
                }
                if !self.pushing.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.id.clone()) {
                    continue; // its previous round is still running
                }
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    let outcome = me.push_stream(&stream).await;
                    me.pushed(&stream.id, waiting, outcome);
                });
            }
        });
    }

    /// Records how a stream's round went: its backoff cleared, or lengthened.
    fn pushed(&self, id: &str, waiting: Option<Backoff>, outcome: Result<(), String>) {
        self.pushing.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => drop(backoff.remove(id)),
            Err(why) => {
                let failures = waiting.map_or(1, |b| b.failures.saturating_add(1));
                let delay = Duration::from_millis(500u64.saturating_mul(1 << failures.min(7))).min(MAX_BACKOFF);
                tracing::warn!(stream = %id, failures, retry_in = ?delay, error = %why, "SSF push failed; will retry");
                backoff.insert(id.to_owned(), Backoff { failures, next: Instant::now() + delay });
            }
        }
    }

    async fn push_stream(&self, stream: &StreamRecord) -> Result<(), String> {
        let Some(endpoint) = stream.endpoint.as_deref() else { return Ok(()) };
        let pending = self.store.outbox_after(&stream.id, stream.cursor, 100).await.map_err(|e| e.to_string())?;
        for record in pending {
            let (_, token) = self.set_for(stream, &record).map_err(|e| e.to_string())?;
            let http = self.http.as_ref().ok_or("no HTTP client could be built for SSF push")?;
            let mut request = http
                .post(endpoint)
                .timeout(PUSH_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/secevent+jwt")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(token);
            if let Some(auth) = &stream.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, auth);
            }
            let response = request.send().await.map_err(crate::webhook::describe)?;
            if !response.status().is_success() {
                return Err(format!("the receiver answered {}", response.status()));
            }
            if !self.store.advance_stream(&stream.id, record.seq).await.map_err(|e| e.to_string())? {
                return Ok(()); // deleted meanwhile
            }
        }
        Ok(())
    }
}

/// The SETs' media type (RFC 8417).
pub const SET_TYP: &str = "secevent+jwt";

#[derive(Serialize)]
struct SetClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    txn: Option<&'a str>,
    sub_id: Value,
    events: BTreeMap<&'static str, Value>,
}

#[derive(Serialize)]
struct SessionRevoked {
    event_timestamp: i64,
    reason_admin: BTreeMap<&'static str, String>,
}

#[cfg(test)]
mod tests {
    use super::valid_push_url;

    #[test]
    fn push_endpoints_are_public_https_unless_allowed() {
        assert!(valid_push_url("https://receiver.example/ssf", false).is_ok());
        for bad in ["http://receiver.example/ssf", "https://127.0.0.1/x", "https://10.0.0.1/x", "ftp://x/y", "nope"] {
            assert!(valid_push_url(bad, false).is_err(), "{bad}");
        }
        assert!(valid_push_url("http://127.0.0.1:9/x", true).is_ok());
    }
}
