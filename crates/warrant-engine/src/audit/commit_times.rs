//! How long the audit log makes its callers wait, kept as three histograms with atomic
//! counters that can be read at any time:
//! - one observation per append (a batch written and synced in one transaction);
//! - one per record the append made durable, valued at its append's duration, so that
//!   "what share of the answers waited for a slow append" can be read off directly;
//! - one per record made durable, valued at how long its caller waited for it: from the
//!   moment the record was handed to the writer (queueing behind the append under way,
//!   or behind an audit checkpoint, included) until it was durable.
//!
//! Every decision waits for its record, so a record that took longer than a latency
//! target puts its answer over that target, whatever else the server does. The server
//! exposes the histograms in `/metrics`; `warrant bench` reads them around its authorize
//! points to tell a slow audit log from a slow server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds, in microseconds, ascending; one more bucket (without a
/// bound) holds every append slower than the last.
pub const COMMIT_BOUNDS_MICROS: [u64; 13] =
    [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000];

const BUCKETS: usize = COMMIT_BOUNDS_MICROS.len() + 1;

/// One histogram over [`COMMIT_BOUNDS_MICROS`], read at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitHistogram {
    /// Observations per bucket (not cumulative), in the order of
    /// [`COMMIT_BOUNDS_MICROS`], then the bucket above the last bound.
    pub counts: [u64; BUCKETS],
    /// The sum of every observed duration, in microseconds.
    pub sum_micros: u64,
}

impl CommitHistogram {
    /// Every observation.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |all, n| all.saturating_add(*n))
    }

    /// Observations at or under each bound of [`COMMIT_BOUNDS_MICROS`] (cumulative, as
    /// Prometheus buckets count).
    pub fn cumulative(&self) -> [u64; COMMIT_BOUNDS_MICROS.len()] {
        let mut out = [0; COMMIT_BOUNDS_MICROS.len()];
        let mut running = 0u64;
        for (slot, n) in out.iter_mut().zip(self.counts) {
            running = running.saturating_add(n);
            *slot = running;
        }
        out
    }
}

/// The three histograms, read at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTimesSnapshot {
    /// One observation per append that succeeded.
    pub appends: CommitHistogram,
    /// One observation per record made durable: its append's duration.
    pub records: CommitHistogram,
    /// One observation per record made durable: from being handed to the writer until
    /// durable.
    pub waits: CommitHistogram,
}

#[derive(Debug, Default)]
struct Counts {
    buckets: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Counts {
    fn add(&self, bucket: usize, weight: u64, micros: u64) {
        if let Some(slot) = self.buckets.get(bucket) {
            slot.fetch_add(weight, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros.saturating_mul(weight), Ordering::Relaxed);
    }

    fn read(&self) -> CommitHistogram {
        CommitHistogram {
            counts: self.buckets.each_ref().map(|n| n.load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// The histograms the audit writer feeds after every append.
#[derive(Debug, Default)]
pub struct CommitTimes {
    appends: Counts,
    records: Counts,
    waits: Counts,
}

/// The bucket of `took`: the first whose bound is not below it (compared whole, so a
/// duration a fraction of a microsecond over a bound is counted above it).
fn bucket_of(took: Duration) -> usize {
    COMMIT_BOUNDS_MICROS.iter().position(|&bound| took <= Duration::from_micros(bound)).unwrap_or(BUCKETS - 1)
}

/// `took` in whole microseconds, saturating.
pub(crate) fn micros_of(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

impl CommitTimes {
    /// Counts one append that took `took` and made `records` records durable. The
    /// writer counts the appends that succeeded (failed ones are counted apart, as failed
    /// batches), so `appends` counts what `records` are durable by.
    pub fn observe(&self, took: Duration, records: u64) {
        let micros = micros_of(took);
        let bucket = bucket_of(took);
        self.appends.add(bucket, 1, micros);
        if records > 0 {
            self.records.add(bucket, records, micros);
        }
    }

    /// Counts one record made durable whose caller waited `waited` for it.
    pub fn observe_wait(&self, waited: Duration) {
        let micros = micros_of(waited);
        self.waits.add(bucket_of(waited), 1, micros);
    }

    /// The histograms as they are now. Read while appends go on, they may disagree by the
    /// append being counted.
    pub fn snapshot(&self) -> CommitTimesSnapshot {
        CommitTimesSnapshot { appends: self.appends.read(), records: self.records.read(), waits: self.waits.read() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_lands_in_the_first_bucket_whose_bound_holds_it() {
        let times = CommitTimes::default();
        times.observe(Duration::from_micros(100), 1); // on the bound: the 100 µs bucket
        times.observe(Duration::from_micros(101), 1); // just over: the 250 µs bucket
        times.observe(Duration::from_nanos(1_000_001), 1); // a nanosecond over 1 ms: the 2 ms bucket
        times.observe(Duration::from_millis(3), 1); // the 5 ms bucket
        times.observe(Duration::from_secs(9), 1); // over every bound
        let s = times.snapshot();
        let mut want = [0u64; BUCKETS];
        want[0] = 1;
        want[1] = 1;
        want[4] = 1;
        want[5] = 1;
        want[BUCKETS - 1] = 1;
        assert_eq!(s.appends.counts, want);
        assert_eq!(s.appends.count(), 5);
        assert_eq!(s.appends.sum_micros, 100 + 101 + 1_000 + 3_000 + 9_000_000);
    }

    #[test]
    fn records_are_counted_by_their_append() {
        let times = CommitTimes::default();
        times.observe(Duration::from_micros(400), 40);
        times.observe(Duration::from_millis(30), 60);
        times.observe(Duration::from_millis(30), 0); // every record of it refused
        let s = times.snapshot();
        assert_eq!(s.appends.count(), 3);
        assert_eq!(s.records.count(), 100);
        assert_eq!(s.records.counts[2], 40); // 500 µs
        assert_eq!(s.records.counts[8], 60); // 50 ms
        assert_eq!(s.records.sum_micros, 400 * 40 + 30_000 * 60);
        // Cumulative, as Prometheus reads it: 40 at or under 500 µs, all 100 under 50 ms.
        let cumulative = s.records.cumulative();
        assert_eq!(cumulative[1], 0);
        assert_eq!(cumulative[2], 40);
        assert_eq!(cumulative[7], 40);
        assert_eq!(cumulative[8], 100);
        assert_eq!(cumulative[COMMIT_BOUNDS_MICROS.len() - 1], 100);
        // Waits are counted apart, one per record.
        assert_eq!(s.waits.count(), 0);
        times.observe_wait(Duration::from_micros(2_001));
        times.observe_wait(Duration::from_micros(2_000));
        let waits = times.snapshot().waits;
        assert_eq!((waits.counts[4], waits.counts[5], waits.sum_micros), (1, 1, 4_001));
        assert_eq!(times.snapshot().records, s.records);
    }

    #[test]
    fn concurrent_appends_are_all_counted() {
        let times = std::sync::Arc::new(CommitTimes::default());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let times = std::sync::Arc::clone(&times);
                std::thread::spawn(move || {
                    for i in 0..1_000u64 {
                        times.observe(Duration::from_micros((i * 37 + t) % 20_000), 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = times.snapshot();
        assert_eq!(s.appends.count(), 4_000);
        assert_eq!(s.records.count(), 12_000);
    }
}
