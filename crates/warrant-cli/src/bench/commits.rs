//! The audit log's appends during a load point, read from the servers' `/metrics` before
//! and after it: how many appends and records, how long the records' callers waited for
//! them, how many waited longer than the p99 target, and the decisions' own time in the
//! server.
//!
//! Every answer waits for its record, from the moment the handler queues it (after the
//! request arrived) until it is durable, so an answer is never quicker than that wait.
//! When more than 1% of a point's records waited longer than the target, the audit log
//! alone put the point's p99 over it, whatever the rest of the server does; when fewer
//! did and the p99 is still over, the rest of the path is the cause.

use serde::Serialize;

use super::BenchError;

/// The per-record histogram of append times the server exposes.
const RECORDS: &str = "warrant_audit_record_commit_seconds";
/// The per-append histogram.
const APPENDS: &str = "warrant_audit_commit_duration_seconds";
/// The per-record histogram of waits, from queued to durable.
const WAITS: &str = "warrant_audit_record_wait_seconds";
/// The decisions' own time in the server, from the parsed request to the decision (its
/// record's wait included).
const DECISIONS: &str = "warrant_decision_seconds";

/// One histogram as exposed: cumulative counts at each upper bound (seconds), ascending,
/// the total count (the `+Inf` bucket) and the sum of the observations (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    bounds: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

/// The histograms of one server at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    appends: Buckets,
    records: Buckets,
    waits: Buckets,
    decisions: Buckets,
}

/// Where the slowest append of a window took its time: between two bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slowest {
    /// The lower bound, milliseconds (exclusive; 0 for the first bucket).
    pub over_ms: f64,
    /// The upper bound, milliseconds (inclusive); `None` above the last bound.
    pub at_most_ms: Option<f64>,
}

/// The appends between two readings, summed over the servers read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommitWindow {
    /// Appends (batches written and synced).
    pub appends: u64,
    /// Records made durable.
    pub records: u64,
    /// Appends that took longer than the target.
    pub appends_over_target: u64,
    /// Records whose append took longer than the target.
    pub records_over_target: u64,
    /// Records whose caller waited longer than the target for them, from queued to
    /// durable (their append, and the queue before it).
    pub records_waited_over_target: u64,
    /// The appends' mean duration, milliseconds (0 without an append).
    pub append_mean_ms: f64,
    /// The records' mean wait from queued to durable, milliseconds (0 without a record).
    pub wait_mean_ms: f64,
    /// Decisions the servers made in the window.
    pub decisions: u64,
    /// Their mean time in the server, from the parsed request to the decision, the
    /// record's wait included, milliseconds (0 without a decision).
    pub decision_mean_ms: f64,
    /// Decisions that took longer than the target in the server (parsed request to
    /// decision, the record's wait included).
    pub decisions_over_target: u64,
    /// The bucket bound the decisions' p99 in the server is at most, milliseconds: the
    /// lowest bound holding 99% of them (summed over the servers read). `None` without a
    /// decision, or when the p99 is above the last bound.
    pub decision_p99_at_most_ms: Option<f64>,
    /// The target, milliseconds.
    pub target_ms: f64,
    /// The bucket of the slowest append; `None` when there was none.
    pub slowest: Option<Slowest>,
}

impl CommitWindow {
    /// The share of the records whose append took longer than the target.
    pub fn share_over_target(&self) -> f64 {
        share(self.records_over_target, self.records)
    }

    /// The share of the decisions that took longer than the target in the server.
    pub fn share_decisions_over_target(&self) -> f64 {
        share(self.decisions_over_target, self.decisions)
    }

    /// The share of the records whose callers waited longer than the target for them.
    pub fn share_waited_over_target(&self) -> f64 {
        share(self.records_waited_over_target, self.records)
    }

    /// Whether the audit log alone put the p99 over the target: more than 1% of the
    /// records kept their callers waiting longer.
    pub fn writes_exceed_p99(&self) -> bool {
        self.share_waited_over_target() > 0.01
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The mean of `n` observations summing to `seconds`, in milliseconds (0 for none).
fn mean_ms(seconds: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        seconds * 1000.0 / n as f64
    }
}

/// `server`'s `/metrics` text and its URL (for the errors that name it).
async fn metrics_text(http: &reqwest::Client, server: &str) -> Result<(String, String), BenchError> {
    let url = format!("{server}/metrics");
    let reply = http.get(&url).send().await?;
    let status = reply.status();
    if !status.is_success() {
        return Err(BenchError::Setup(format!("{url} answered {status}")));
    }
    Ok((reply.text().await?, url))
}

/// Reads the histograms from `server`'s `/metrics`.
pub async fn read(http: &reqwest::Client, server: &str) -> Result<Reading, BenchError> {
    let (text, url) = metrics_text(http, server).await?;
    parse(&text).map_err(|why| BenchError::Setup(format!("{url}: {why}")))
}

/// The nice value `server`'s SQLite commit thread runs at, from its `/metrics`
/// ([`warrant_server::metrics::WRITER_NICE`]): `Ok(None)` when it reports none
/// (PostgreSQL, not Linux, an older server), `Err` with the reason when its metrics
/// cannot be read.
pub async fn writer_nice(http: &reqwest::Client, server: &str) -> Result<Option<i32>, BenchError> {
    let (text, _) = metrics_text(http, server).await?;
    Ok(writer_nice_in(&text))
}

/// [`writer_nice`], out of Prometheus text.
fn writer_nice_in(text: &str) -> Option<i32> {
    let name = warrant_server::metrics::WRITER_NICE;
    let line = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?;
    line.trim().parse().ok()
}

/// The histograms, out of Prometheus text.
fn parse(text: &str) -> Result<Reading, String> {
    Ok(Reading {
        appends: histogram(text, APPENDS)?,
        records: histogram(text, RECORDS)?,
        waits: histogram(text, WAITS)?,
        decisions: histogram(text, DECISIONS)?,
    })
}

fn histogram(text: &str, name: &str) -> Result<Buckets, String> {
    let bucket = format!("{name}_bucket{{le=\"");
    let sum_line = format!("{name}_sum ");
    let mut bounds = Vec::new();
    let mut count = None;
    let mut sum = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix(&sum_line) {
            sum = Some(value.trim().parse::<f64>().map_err(|_| format!("cannot read `{line}`"))?);
            continue;
        }
        let Some(rest) = line.strip_prefix(&bucket) else { continue };
        let (le, value) = rest.split_once("\"} ").ok_or_else(|| format!("cannot read `{line}`"))?;
        let value: u64 = value.trim().parse().map_err(|_| format!("cannot read `{line}`"))?;
        if le == "+Inf" {
            count = Some(value);
        } else {
            let le: f64 = le.parse().map_err(|_| format!("cannot read `{line}`"))?;
            bounds.push((le, value));
        }
    }
    let count = count.ok_or_else(|| format!("no `{name}` histogram (a server older than this harness?)"))?;
    let sum = sum.ok_or_else(|| format!("no `{name}_sum`"))?;
    if bounds.iter().zip(bounds.iter().skip(1)).any(|(low, high)| low.0 >= high.0 || low.1 > high.1) {
        return Err(format!("the `{name}` buckets are out of order"));
    }
    Ok(Buckets { bounds, count, sum })
}

/// The appends between `before` and `after` of each server (read in the same order),
/// counted against `target_ms`, which must be one of the histograms' bounds.
pub fn window(pairs: &[(Reading, Reading)], target_ms: f64) -> Result<CommitWindow, String> {
    let mut out = CommitWindow { target_ms, ..CommitWindow::default() };
    let (mut append_seconds, mut wait_seconds) = (0.0, 0.0);
    // The decisions of every server, summed: their count, mean, share over the target
    // and p99 bucket all come from it.
    let mut all_decisions: Option<Buckets> = None;
    for (before, after) in pairs {
        let appends = diff(&before.appends, &after.appends)?;
        let records = diff(&before.records, &after.records)?;
        let waits = diff(&before.waits, &after.waits)?;
        let decisions = diff(&before.decisions, &after.decisions)?;
        all_decisions = Some(match all_decisions {
            None => decisions,
            Some(seen) => add(&seen, &decisions)?,
        });
        out.appends += appends.count;
        out.records += records.count;
        append_seconds += appends.sum;
        out.appends_over_target += over(&appends, target_ms)?;
        out.records_over_target += over(&records, target_ms)?;
        out.records_waited_over_target += over(&waits, target_ms)?;
        wait_seconds += waits.sum;
        if let Some(slowest) = slowest(&appends) {
            let higher = match out.slowest {
                None => true,
                Some(seen) => seen.over_ms < slowest.over_ms,
            };
            if higher {
                out.slowest = Some(slowest);
            }
        }
    }
    out.append_mean_ms = mean_ms(append_seconds, out.appends);
    out.wait_mean_ms = mean_ms(wait_seconds, out.records);
    if let Some(decisions) = &all_decisions {
        out.decisions = decisions.count;
        out.decision_mean_ms = mean_ms(decisions.sum, decisions.count);
        out.decisions_over_target = over(decisions, target_ms)?;
        out.decision_p99_at_most_ms = at_most(decisions, 0.99);
    }
    Ok(out)
}

/// Two servers' histograms of the same bounds, summed.
fn add(a: &Buckets, b: &Buckets) -> Result<Buckets, String> {
    if a.bounds.len() != b.bounds.len() || a.bounds.iter().zip(&b.bounds).any(|(x, y)| x.0 != y.0) {
        return Err("the servers' histograms have different buckets".into());
    }
    let bounds = a.bounds.iter().zip(&b.bounds).map(|(&(le, x), &(_, y))| (le, x + y)).collect();
    Ok(Buckets { bounds, count: a.count + b.count, sum: a.sum + b.sum })
}

/// The lowest bound, in milliseconds, at or under which `quantile` of the observations
/// fall; `None` without an observation, or when it is above the last bound.
fn at_most(b: &Buckets, quantile: f64) -> Option<f64> {
    if b.count == 0 {
        return None;
    }
    let needed = (b.count as f64 * quantile).ceil() as u64;
    // Rounded to the microsecond: the bounds are given in seconds.
    b.bounds.iter().find(|(_, n)| *n >= needed).map(|(le, _)| (le * 1e6).round() / 1000.0)
}

fn diff(before: &Buckets, after: &Buckets) -> Result<Buckets, String> {
    // Counters only grow: any that shrank (or bounds that changed) means another process
    // answered the second reading.
    let grew = before.bounds.len() == after.bounds.len()
        && before.bounds.iter().zip(&after.bounds).all(|(was, now)| was.0 == now.0 && was.1 <= now.1)
        && before.count <= after.count
        && before.sum <= after.sum;
    if !grew {
        return Err("the server restarted between the two readings".into());
    }
    let bounds =
        before.bounds.iter().zip(&after.bounds).map(|(&(le, was), &(_, now))| (le, now.saturating_sub(was))).collect();
    Ok(Buckets { bounds, count: after.count - before.count, sum: (after.sum - before.sum).max(0.0) })
}

/// Observations above `target_ms`.
fn over(b: &Buckets, target_ms: f64) -> Result<u64, String> {
    let at_target = b
        .bounds
        .iter()
        .find(|(le, _)| (le * 1000.0 - target_ms).abs() < 1e-9)
        .ok_or_else(|| format!("the histogram has no bucket at {target_ms} ms"))?;
    Ok(b.count.saturating_sub(at_target.1))
}

/// The bucket of the slowest observation.
fn slowest(b: &Buckets) -> Option<Slowest> {
    if b.count == 0 {
        return None;
    }
    // The first bound that holds every observation, above the bound before it; none:
    // above the last bound.
    let mut lower = 0.0;
    for &(le, n) in &b.bounds {
        if n == b.count {
            return Some(Slowest { over_ms: lower, at_most_ms: Some(le * 1000.0) });
        }
        lower = le * 1000.0;
    }
    Some(Slowest { over_ms: lower, at_most_ms: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus text of the four histograms: `appends`, `records`, `waits` and
    /// `decisions` are cumulative counts at 0.5, 2 and 50 ms, then the total; each
    /// observation's sum is 1 ms.
    fn text4(appends: [u64; 4], records: [u64; 4], waits: [u64; 4], decisions: [u64; 4]) -> String {
        let mut out = String::from("# TYPE x gauge\nwarrant_audit_head_seq 9\n");
        for (name, counts) in [(APPENDS, appends), (RECORDS, records), (WAITS, waits), (DECISIONS, decisions)] {
            for (le, n) in ["0.0005", "0.002", "0.05", "+Inf"].iter().zip(counts) {
                out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {n}\n"));
            }
            out.push_str(&format!("{name}_sum {}\n{name}_count {}\n", counts[3] as f64 / 1000.0, counts[3]));
        }
        out
    }

    /// [`text4`] with one decision per record, taking as long as its record's wait.
    fn text3(appends: [u64; 4], records: [u64; 4], waits: [u64; 4]) -> String {
        text4(appends, records, waits, waits)
    }

    /// [`text3`] with every record waiting exactly its append's time.
    fn text(appends: [u64; 4], records: [u64; 4]) -> String {
        text3(appends, records, records)
    }

    #[test]
    fn records_over_the_target_are_counted_between_two_readings() {
        let before = parse(&text([10, 10, 10, 10], [100, 100, 100, 100])).unwrap();
        // Since then: 5 appends, 3 of them over 2 ms (one over 50 ms), holding 400 records,
        // 30 of which waited over 2 ms.
        let after = parse(&text([12, 12, 14, 15], [450, 470, 495, 500])).unwrap();
        let w = window(&[(before, after)], 2.0).unwrap();
        assert_eq!((w.appends, w.records), (5, 400));
        assert_eq!((w.appends_over_target, w.records_over_target), (3, 30));
        assert!((w.append_mean_ms - 1.0).abs() < 1e-9, "{}", w.append_mean_ms);
        assert_eq!(w.slowest, Some(Slowest { over_ms: 50.0, at_most_ms: None }));
        assert!((w.share_over_target() - 0.075).abs() < 1e-12);
        assert!(w.writes_exceed_p99());
    }

    #[test]
    fn the_verdict_counts_the_whole_wait_not_only_the_append() {
        let before = parse(&text3([0; 4], [0; 4], [0; 4])).unwrap();
        // 1 000 records, none with an append over 2 ms, but 30 queued behind something
        // long enough to wait over 2 ms in all: the audit log alone breaks p99.
        let after = parse(&text3([100, 100, 100, 100], [1000, 1000, 1000, 1000], [900, 970, 1000, 1000])).unwrap();
        let w = window(&[(before, after)], 2.0).unwrap();
        assert_eq!((w.records_over_target, w.records_waited_over_target), (0, 30));
        assert!((w.share_waited_over_target() - 0.03).abs() < 1e-12);
        assert!((w.wait_mean_ms - 1.0).abs() < 1e-9, "{}", w.wait_mean_ms);
        // (The made-up decisions' histogram is the waits': one decision per record.)
        assert_eq!(w.decisions, 1000);
        assert!((w.decision_mean_ms - 1.0).abs() < 1e-9, "{}", w.decision_mean_ms);
        assert!(w.writes_exceed_p99());
    }

    #[test]
    fn the_decisions_over_the_target_and_their_p99_bucket_are_read() {
        let before = parse(&text3([0; 4], [0; 4], [0; 4])).unwrap();
        // Every record durable within 0.5 ms, but of the 1 000 decisions 980 within 0.5 ms,
        // 15 more within 2 ms, 5 within 50 ms: the p99 is at most 2 ms.
        let after = parse(&text4([10; 4], [1000; 4], [1000; 4], [980, 995, 1000, 1000])).unwrap();
        let w = window(&[(before.clone(), after)], 2.0).unwrap();
        assert_eq!((w.records_waited_over_target, w.decisions_over_target), (0, 5));
        assert!((w.share_decisions_over_target() - 0.005).abs() < 1e-12);
        assert_eq!(w.decision_p99_at_most_ms, Some(2.0));
        // Two servers, one of them slow: 1 980 of 2 000 within 2 ms, as many as 99% needs.
        let slow = parse(&text4([10; 4], [1000; 4], [1000; 4], [0, 980, 1000, 1000])).unwrap();
        let fast = parse(&text3([10; 4], [1000; 4], [1000; 4])).unwrap();
        let w = window(&[(before.clone(), slow.clone()), (before.clone(), fast)], 2.0).unwrap();
        assert_eq!((w.decisions, w.decisions_over_target, w.decision_p99_at_most_ms), (2000, 20, Some(2.0)));
        // Alone, the slow one's p99 is over 2 ms (980 of 1 000 within it); 50 ms holds it.
        assert_eq!(window(&[(before.clone(), slow)], 2.0).unwrap().decision_p99_at_most_ms, Some(50.0));
        // Over the last bound, or no decision: no bound to give.
        let beyond = parse(&text4([10; 4], [1000; 4], [1000; 4], [0, 0, 900, 1000])).unwrap();
        assert_eq!(window(&[(before.clone(), beyond)], 2.0).unwrap().decision_p99_at_most_ms, None);
        assert_eq!(window(&[(before.clone(), before)], 2.0).unwrap().decision_p99_at_most_ms, None);
    }

    #[test]
    fn a_quiet_window_leaves_the_p99_to_the_rest_of_the_path() {
        let before = parse(&text([0, 0, 0, 0], [0, 0, 0, 0])).unwrap();
        // 1 000 records in 100 appends; one append of 5 records took 2-50 ms: 0.5%.
        let after = parse(&text([90, 99, 100, 100], [900, 995, 1000, 1000])).unwrap();
        let w = window(&[(before, after)], 2.0).unwrap();
        assert_eq!(w.records_over_target, 5);
        assert_eq!(w.slowest, Some(Slowest { over_ms: 2.0, at_most_ms: Some(50.0) }));
        assert!(!w.writes_exceed_p99());
    }

    #[test]
    fn servers_sharing_the_load_are_summed_and_the_slowest_is_the_slowest_of_all() {
        let zero = parse(&text([0; 4], [0; 4])).unwrap();
        let first = parse(&text([4, 4, 4, 4], [40, 40, 40, 40])).unwrap();
        let second = parse(&text([1, 2, 2, 2], [10, 30, 30, 30])).unwrap();
        let w = window(&[(zero.clone(), first), (zero, second)], 2.0).unwrap();
        assert_eq!((w.appends, w.records, w.records_over_target), (6, 70, 0));
        assert_eq!(w.slowest, Some(Slowest { over_ms: 0.5, at_most_ms: Some(2.0) }));
        assert!(!w.writes_exceed_p99());
    }

    #[test]
    fn no_append_means_no_slowest_and_no_share() {
        let r = parse(&text([3, 3, 3, 3], [9, 9, 9, 9])).unwrap();
        let w = window(&[(r.clone(), r)], 2.0).unwrap();
        assert_eq!((w.appends, w.records, w.slowest), (0, 0, None));
        assert_eq!((w.append_mean_ms, w.decisions, w.decision_mean_ms), (0.0, 0, 0.0));
        assert_eq!(w.share_over_target(), 0.0);
    }

    #[test]
    fn the_commit_threads_nice_value_is_read_when_reported() {
        let text = "# TYPE warrant_storage_writer_nice gauge\nwarrant_storage_writer_nice -10\nwarrant_x 1\n";
        assert_eq!(super::writer_nice_in(text), Some(-10));
        assert_eq!(super::writer_nice_in("warrant_x 1\n"), None, "PostgreSQL, or an older server");
        assert_eq!(super::writer_nice_in("warrant_storage_writer_nice soon\n"), None);
    }

    #[test]
    fn unusable_metrics_are_refused_with_the_reason() {
        let err = parse("warrant_audit_head_seq 3\n").unwrap_err();
        assert!(err.contains("no `warrant_audit_commit_duration_seconds` histogram"), "{err}");
        let disordered = text([5, 4, 5, 5], [1, 1, 1, 1]);
        assert!(parse(&disordered).unwrap_err().contains("out of order"));
        let restarted = (parse(&text([9; 4], [9; 4])).unwrap(), parse(&text([1; 4], [1; 4])).unwrap());
        assert!(window(&[restarted], 2.0).unwrap_err().contains("restarted"));
        // Restarted and busy since: more appends in all than before, fewer in one bucket.
        let busy_again = (parse(&text([5, 5, 5, 5], [9; 4])).unwrap(), parse(&text([1, 1, 6, 6], [9; 4])).unwrap());
        assert!(window(&[busy_again], 2.0).unwrap_err().contains("restarted"));
        let r = parse(&text([1; 4], [1; 4])).unwrap();
        assert!(window(&[(r.clone(), r)], 3.0).unwrap_err().contains("no bucket at 3 ms"));
    }
}
