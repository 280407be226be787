//! Load generation: closed loop (N workers, each sending its next request when the last
//! one is answered) and open loop (requests sent on a fixed schedule, latency measured
//! from the intended send time so a slow answer cannot hide the requests it delayed).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::BenchError;

/// The largest latency a histogram holds, in microseconds (a minute; longer saturates).
const MAX_LATENCY_US: u64 = 60_000_000;
/// How many failure messages a point keeps as samples.
const ERROR_SAMPLES: usize = 5;

/// An empty latency histogram in microseconds, 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

/// `d` as a latency histogram's value: whole microseconds, at least 1 (the histogram's
/// lowest), saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), BenchError> {
    into.add(from).map_err(|e| BenchError::Histogram(e.to_string()))
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Fastest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// 99.99th percentile.
    pub p9999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// The summary of a histogram in microseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            p9999_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Why one operation failed (counted, never fatal to the run).
#[derive(Debug, thiserror::Error)]
pub enum OpFailure {
    /// The request could not be sent or its answer not read.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an unexpected HTTP status.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer was not what this operation expects.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// What one revocation-to-deny cycle observed.
#[derive(Debug, Clone)]
pub struct RevocationSample {
    /// The `POST /v1/revocations` round trip.
    pub revoke: Duration,
    /// From sending the revocation to receiving the next decision on the revoked warrant.
    pub to_deny: Duration,
    /// That next decision's code (`revoked` expected).
    pub next_code: String,
    /// Whether that next decision allowed (the target is never).
    pub allowed: bool,
}

/// One successful operation.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// Decisions (or issued warrants, pings) it stands for: the batch size for a batch.
    pub units: u64,
    /// Set by a revocation-to-deny cycle.
    pub revocation: Option<RevocationSample>,
}

/// One kind of request the load generators can repeat.
pub trait Op: Send + Sync + 'static {
    /// Performs operation number `seq` of `worker` and checks its answer.
    fn call(&self, worker: usize, seq: u64) -> impl Future<Output = Result<Done, OpFailure>> + Send;
}

/// How long a point lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Run but not counted.
    pub warmup: Duration,
    /// Counted.
    pub measure: Duration,
}

/// What a closed-loop point measured, before it is summarized.
#[derive(Debug)]
pub struct Raw {
    /// Successful operations that started in the measured window.
    pub ok: u64,
    /// Their units (decisions for a batch).
    pub units: u64,
    /// Failed operations in the measured window.
    pub errors: u64,
    /// The first few failures.
    pub error_samples: Vec<String>,
    /// From the start of the measured window to the last answer (at least the window).
    pub elapsed: Duration,
    /// Latency of successful operations, microseconds.
    pub latency: Histogram<u64>,
    /// Revocation round trips, microseconds (revocation cycles only).
    pub revoke: Histogram<u64>,
    /// Revocation sent to next decision received, microseconds (revocation cycles only).
    pub to_deny: Histogram<u64>,
    /// Codes of the decision right after each acknowledged revocation.
    pub next_codes: BTreeMap<String, u64>,
    /// Allows right after an acknowledged revocation (target: zero).
    pub allows_after_revocation: u64,
}

impl Raw {
    pub(crate) fn new() -> Result<Raw, BenchError> {
        Ok(Raw {
            ok: 0,
            units: 0,
            errors: 0,
            error_samples: Vec::new(),
            elapsed: Duration::ZERO,
            latency: histogram()?,
            revoke: histogram()?,
            to_deny: histogram()?,
            next_codes: BTreeMap::new(),
            allows_after_revocation: 0,
        })
    }

    fn record(&mut self, latency: Duration, result: Result<Done, OpFailure>) {
        match result {
            Ok(done) => {
                self.ok += 1;
                self.units += done.units;
                self.latency.saturating_record(micros(latency));
                if let Some(r) = done.revocation {
                    self.revoke.saturating_record(micros(r.revoke));
                    self.to_deny.saturating_record(micros(r.to_deny));
                    *self.next_codes.entry(r.next_code).or_default() += 1;
                    if r.allowed {
                        self.allows_after_revocation += 1;
                    }
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.error_samples.len() < ERROR_SAMPLES {
                    self.error_samples.push(e.to_string());
                }
            }
        }
    }

    fn absorb(&mut self, other: Raw) -> Result<(), BenchError> {
        self.ok += other.ok;
        self.units += other.units;
        self.errors += other.errors;
        for s in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(s);
            }
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        merge(&mut self.latency, &other.latency)?;
        merge(&mut self.revoke, &other.revoke)?;
        merge(&mut self.to_deny, &other.to_deny)?;
        for (code, n) in other.next_codes {
            *self.next_codes.entry(code).or_default() += n;
        }
        self.allows_after_revocation += other.allows_after_revocation;
        Ok(())
    }

    /// Successful operations per second of the measured window.
    pub fn throughput(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }

    /// Units (decisions) per second of the measured window.
    pub fn unit_throughput(&self) -> f64 {
        per_second(self.units, self.elapsed)
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal) that follows a point.
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(label: &str, phase: Phase, completed: Arc<AtomicU64>) -> Progress {
        let total = phase.warmup + phase.measure;
        let bar = ProgressBar::new(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
        if let Ok(style) = ProgressStyle::with_template("{prefix:>26} [{bar:30.cyan/blue}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let ticking = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let elapsed = started.elapsed();
                ticking.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                let stage = if elapsed < phase.warmup { "warm-up" } else { "measuring" };
                ticking.set_message(format!("{stage}, {} done", completed.load(Ordering::Relaxed)));
            }
        });
        Progress { bar, ticker }
    }

    fn finish(self, summary: String) {
        self.ticker.abort();
        self.bar.finish_with_message(summary);
    }
}

/// Runs `op` with `concurrency` workers for the warm-up and the measured window.
pub async fn closed_loop<O: Op>(op: Arc<O>, concurrency: usize, phase: Phase, label: &str) -> Result<Raw, BenchError> {
    let completed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, phase, Arc::clone(&completed));
    let begin = Instant::now();
    let measure_start = begin + phase.warmup;
    let end = measure_start + phase.measure;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let op = Arc::clone(&op);
        let completed = Arc::clone(&completed);
        workers.push(tokio::spawn(async move {
            let mut raw = Raw::new()?;
            let mut last = measure_start;
            let mut seq = 0u64;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let result = op.call(worker, seq).await;
                seq += 1;
                let done = Instant::now();
                completed.fetch_add(1, Ordering::Relaxed);
                if start >= measure_start {
                    last = last.max(done);
                    raw.record(done - start, result);
                }
            }
            raw.elapsed = last.max(end) - measure_start;
            Ok::<Raw, BenchError>(raw)
        }));
    }
    let mut total = Raw::new()?;
    for worker in workers {
        let raw = worker.await.map_err(|e| BenchError::Worker(e.to_string()))??;
        total.absorb(raw)?;
    }
    let lat = Latency::of(&total.latency);
    progress.finish(format!(
        "{:.0}/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        total.throughput(),
        lat.p50_ms,
        lat.p99_ms,
        total.errors
    ));
    Ok(total)
}

/// What an open-loop point measured.
#[derive(Debug)]
pub struct OpenRaw {
    /// The requested rate, per second.
    pub rate: f64,
    /// Requests scheduled in the measured window.
    pub scheduled: u64,
    /// Successes, failures, latency from the INTENDED send time (coordinated omission
    /// corrected), elapsed window.
    pub raw: Raw,
    /// Latency from the ACTUAL send time (service time only), microseconds.
    pub service: Histogram<u64>,
    /// How late the scheduler sent, microseconds.
    pub lag: Histogram<u64>,
}

/// Sends `op` at a fixed `rate` per second for the warm-up and the measured window, at
/// most `max_in_flight` at once (a request that must wait for a slot is still timed from
/// its intended send time). A dedicated thread keeps the schedule, since the async
/// timer's millisecond granularity would add up to a millisecond of its own lateness.
pub async fn open_loop<O: Op>(
    op: Arc<O>,
    rate: f64,
    max_in_flight: usize,
    phase: Phase,
    label: &str,
) -> Result<OpenRaw, BenchError> {
    struct Shared {
        raw: Raw,
        service: Histogram<u64>,
        lag: Histogram<u64>,
        scheduled: u64,
    }
    let completed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, phase, Arc::clone(&completed));
    let shared =
        Arc::new(Mutex::new(Shared { raw: Raw::new()?, service: histogram()?, lag: histogram()?, scheduled: 0 }));
    let slots = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let semaphore = Arc::new(Semaphore::new(usize::try_from(slots).unwrap_or(usize::MAX)));
    let handle = tokio::runtime::Handle::current();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<Instant>();
    let begin = Instant::now();
    let measure_start = begin + phase.warmup;
    let end = measure_start + phase.measure;
    {
        let (shared, semaphore, completed) = (Arc::clone(&shared), Arc::clone(&semaphore), Arc::clone(&completed));
        std::thread::Builder::new()
            .name("bench-open-loop".into())
            .spawn(move || {
                let mut seq = 0u64;
                loop {
                    let intended = begin + Duration::from_secs_f64(seq as f64 / rate);
                    if intended >= end {
                        break;
                    }
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let Ok(permit) = handle.block_on(Arc::clone(&semaphore).acquire_owned()) else { break };
                    let measured = intended >= measure_start;
                    if measured {
                        if let Ok(mut s) = shared.lock() {
                            s.scheduled += 1;
                        }
                    }
                    let (op, shared, completed) = (Arc::clone(&op), Arc::clone(&shared), Arc::clone(&completed));
                    handle.spawn(async move {
                        let sent = Instant::now();
                        let result = op.call(0, seq).await;
                        let done = Instant::now();
                        drop(permit);
                        completed.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            if let Ok(mut s) = shared.lock() {
                                if result.is_ok() {
                                    s.service.saturating_record(micros(done - sent));
                                    s.lag.saturating_record(micros(sent.saturating_duration_since(intended)));
                                }
                                s.raw.record(done - intended, result);
                                s.raw.elapsed = s.raw.elapsed.max(done - measure_start);
                            }
                        }
                    });
                    seq += 1;
                }
                let _ = sent_tx.send(Instant::now());
            })
            .map_err(|e| BenchError::Worker(e.to_string()))?;
    }
    sent_rx.await.map_err(|_| BenchError::Worker("the open-loop scheduler stopped".into()))?;
    // Every request holds a slot until answered: taking them all waits for the last.
    let _all = semaphore.acquire_many(slots).await.map_err(|e| BenchError::Worker(e.to_string()))?;
    let mut guard = shared.lock().map_err(|_| BenchError::Worker("a load task panicked".into()))?;
    let mut raw = std::mem::replace(&mut guard.raw, Raw::new()?);
    raw.elapsed = raw.elapsed.max(phase.measure);
    let out = OpenRaw { rate, scheduled: guard.scheduled, raw, service: guard.service.clone(), lag: guard.lag.clone() };
    drop(guard);
    let lat = Latency::of(&out.raw.latency);
    progress.finish(format!(
        "{:.0}/s sent, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        out.raw.throughput(),
        lat.p50_ms,
        lat.p99_ms,
        out.raw.errors
    ));
    Ok(out)
}
