//! Shadow activity: decisions asked for with tokens Warrant did not issue (a foreign
//! issuer, an unknown key, a forged signature, not a Warrant token at all) or naming
//! agents that are not registered.
//!
//! What an unverified token claims (`iss`, `kid`, `client_id`) is the caller's to choose,
//! so it never picks a subject: every foreign-issuer token is counted under one subject,
//! every unknown-key token under another, every forged signature and every non-warrant
//! under one each, with a few sanitised samples of what they claimed as evidence. A flood
//! of junk with a thousand different `iss` values is one finding, not a thousand. Only a
//! verified warrant of ours naming an unregistered agent is filed under that agent, at
//! most [`MAX_SUBJECTS`] of them (the rest under [`OVERFLOW_SUBJECT`]). A subject's
//! finding resolves once it has been quiet for the configured time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::Value;
use warrant_core::govern::evidence::Claimed;
use warrant_core::govern::{
    ClaimedIds, Finding, FindingKind, Observation, Severity, ShadowActivity, ShadowBatch, ShadowBatchId,
};
use warrant_core::UnixTime;

use crate::random::{self, RandomError};

/// The longest identifier copied out of an unverified token.
const MAX_FIELD: usize = 100;

pub use warrant_core::govern::evidence::ShadowCause;
pub use warrant_core::govern::shadow::{MAX_DISTINCT, MAX_SAMPLES, MAX_SUBJECTS, OVERFLOW_SUBJECT};

/// A few identifiers read from a token without verifying it, for evidence only.
pub type Peek = ClaimedIds;

fn clean(v: Option<&Value>) -> Option<String> {
    clean_str(v?.as_str()?)
}

/// `s` without characters other than printable ASCII, cut to [`MAX_FIELD`]; `None` when
/// nothing is left.
fn clean_str(s: &str) -> Option<String> {
    let cleaned: String = s.chars().filter(|c| c.is_ascii_graphic()).take(MAX_FIELD).collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Reads `iss`, `client_id` and `kid` from a JWT without verifying it. Never trust
/// the result: it is what the caller claims, recorded as evidence.
pub fn peek(token: &str) -> Peek {
    let mut parts = token.splitn(3, '.');
    let decode = |part: Option<&str>| -> Option<Value> {
        let bytes = B64.decode(part?.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = decode(parts.next());
    let payload = decode(parts.next());
    Peek {
        iss: clean(payload.as_ref().and_then(|p| p.get("iss"))),
        client: clean(payload.as_ref().and_then(|p| p.get("client_id").or_else(|| p.get("sub")))),
        kid: clean(header.as_ref().and_then(|h| h.get("kid"))),
    }
}

/// The claimed value a cause is about: the issuer, the key or the client.
fn claimed(cause: ShadowCause, peek: &Peek) -> Option<String> {
    match cause {
        ShadowCause::ForeignIssuer => peek.iss.clone(),
        ShadowCause::UnknownKey | ShadowCause::Forged => peek.kid.clone(),
        ShadowCause::NotAWarrant => None,
        ShadowCause::UnregisteredAgent => peek.client.clone(),
    }
}

/// How urgent a cause is. What an unverified token claims is the caller's to choose,
/// so those are medium (a forged signature on one of our key ids stays high: somebody
/// is trying); a verified warrant naming an unregistered agent is high.
fn severity(cause: ShadowCause) -> Severity {
    match cause {
        ShadowCause::NotAWarrant => Severity::Low,
        ShadowCause::ForeignIssuer | ShadowCause::UnknownKey => Severity::Medium,
        ShadowCause::Forged | ShadowCause::UnregisteredAgent => Severity::High,
    }
}

/// The observation a sweep makes of `subject`'s `activity`, which resolves after `quiet`
/// seconds without a new occurrence.
pub fn observation(subject: &str, activity: &ShadowActivity, quiet: i64) -> Observation {
    Observation::new(severity(activity.cause), subject.to_owned(), activity.evidence(quiet))
}

/// One subject's activity as this server counts it.
#[derive(Debug)]
struct Entry {
    activity: ShadowActivity,
    /// A sweep has committed a finding from it as it is: once quiet it may be forgotten.
    reported: bool,
}

/// A batch taken out of a [`ShadowTracker`] to be stored. Dropped before
/// [`written`](Self::written), whether the write failed or was cancelled, it goes back as it
/// is, to be handed to the store again under the same id: if the write did commit before
/// its answer was lost, the store recognises the batch and adds nothing, so no count is
/// lost and none is added twice.
#[derive(Debug)]
pub(crate) struct Taken<'a> {
    tracker: &'a ShadowTracker,
    batch: ShadowBatch,
    written: bool,
}

impl Taken<'_> {
    /// The batch.
    pub(crate) fn batch(&self) -> &ShadowBatch {
        &self.batch
    }

    /// It is stored: it does not go back.
    pub(crate) fn written(mut self) {
        self.written = true;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let batch = ShadowBatch { id: self.batch.id, counted: std::mem::take(&mut self.batch.counted) };
        self.tracker.unsent.lock().unwrap_or_else(PoisonError::into_inner).push_front(batch);
    }
}

/// Shadow occurrences by subject.
#[derive(Debug, Default)]
pub struct ShadowTracker {
    seen: Mutex<HashMap<String, Entry>>,
    /// Batches taken whose write failed or was cancelled: handed to the store again, as
    /// they are, before anything counted since.
    unsent: Mutex<VecDeque<ShadowBatch>>,
}

/// The subject a shadow occurrence is filed under.
fn subject(cause: ShadowCause, peek: &Peek) -> String {
    match cause {
        ShadowCause::ForeignIssuer => "shadow:foreign_issuer".into(),
        ShadowCause::UnknownKey => "shadow:unknown_key".into(),
        ShadowCause::Forged => "shadow:forged_signature".into(),
        ShadowCause::NotAWarrant => "token:not_a_warrant".into(),
        ShadowCause::UnregisteredAgent => {
            format!("client:{}", peek.client.clone().unwrap_or_else(|| "unknown".into()))
        }
    }
}

impl ShadowTracker {
    /// Counts one occurrence at `now`.
    pub fn record(&self, cause: ShadowCause, peek: Peek, now: UnixTime) {
        let Ok(mut map) = self.seen.lock() else { return };
        let mut key = subject(cause, &peek);
        if !map.contains_key(&key) && map.len() >= MAX_SUBJECTS {
            key = OVERFLOW_SUBJECT.into();
        }
        let value = claimed(cause, &peek);
        let entry = map
            .entry(key)
            .or_insert_with(|| Entry { activity: ShadowActivity::new(cause, now, peek), reported: false });
        entry.activity.note(value, now);
        entry.reported = false;
    }

    /// The subjects seen within `quiet` seconds before `now`, and those quiet for longer
    /// that no sweep has reported yet (activity that stopped before a sweep saw it still
    /// opens its finding, which the next sweep resolves), with their counts. Quiet
    /// subjects already [`reported`](Self::reported) are forgotten.
    pub(crate) fn current(&self, now: UnixTime, quiet: i64) -> Vec<(String, ShadowActivity)> {
        let Ok(mut map) = self.seen.lock() else { return Vec::new() };
        map.retain(|_, e| !e.reported || !e.activity.quiet_at(now, quiet));
        map.iter().map(|(subject, e)| (subject.clone(), e.activity.clone())).collect()
    }

    /// Marks each `(subject, occurrences)` as reported: a sweep has committed its
    /// finding with that many occurrences, so once quiet it may be forgotten. A subject
    /// with occurrences counted since stays unreported.
    pub(crate) fn reported<'a>(&self, subjects: impl IntoIterator<Item = (&'a str, u64)>) {
        let Ok(mut map) = self.seen.lock() else { return };
        for (subject, occurrences) in subjects {
            if let Some(e) = map.get_mut(subject).filter(|e| e.activity.occurrences == occurrences) {
                e.reported = true;
            }
        }
    }

    /// The next batch to store, on a database several servers share (where what each
    /// server saw is added to the store's counts): a batch whose write failed or was
    /// cancelled, as it was, or else everything counted so far under a fresh id, leaving the
    /// tracker empty. `None` when there is nothing to store. The batch goes back when the
    /// [`Taken`] is dropped unless it was [`written`](Taken::written).
    pub(crate) fn take(&self) -> Result<Option<Taken<'_>>, RandomError> {
        if let Some(batch) = self.unsent.lock().unwrap_or_else(PoisonError::into_inner).pop_front() {
            return Ok(Some(Taken { tracker: self, batch, written: false }));
        }
        let Ok(mut map) = self.seen.lock() else { return Ok(None) };
        if map.is_empty() {
            return Ok(None);
        }
        // An id only for a batch there is; without one, the counts stay where they are.
        let id = ShadowBatchId::from_random(random::bytes()?);
        let counted = map.drain().map(|(subject, e)| (subject, e.activity)).collect();
        Ok(Some(Taken { tracker: self, batch: ShadowBatch { id, counted }, written: false }))
    }

    /// The activity an active shadow finding records, by its subject: what a restarted
    /// server, or a database that has no count of it yet, starts from.
    pub(crate) fn recorded(finding: &Finding) -> Option<(String, ShadowActivity)> {
        if finding.kind != FindingKind::ShadowActivity || !finding.status.is_active() {
            return None;
        }
        let f = finding;
        let cause = f
            .evidence
            .get("cause")
            .and_then(Value::as_str)
            .and_then(ShadowCause::parse)
            .unwrap_or(ShadowCause::NotAWarrant);
        let text = |k: &str| clean(f.evidence.get(k));
        let time = |k: &str| f.evidence.get(k).and_then(Value::as_i64).map(UnixTime);
        let count = f.evidence.get("occurrences").and_then(Value::as_u64).unwrap_or(1);
        let first = Peek { iss: text("claimed_issuer"), client: text("claimed_client"), kid: text("kid") };
        // The activity's own first and last occurrences, as counted (the finding's own
        // times are those of the sweeps that opened and last refreshed it).
        let mut activity = ShadowActivity::new(cause, time("first_seen").unwrap_or(f.first_seen), first);
        activity.last_seen = time("last_seen").unwrap_or(f.last_seen).max(activity.first_seen);
        activity.occurrences = count;
        let claimed: Vec<Claimed> =
            f.evidence.get("claimed").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
        let claimed: Vec<Claimed> = claimed
            .into_iter()
            .filter_map(|c| Some(Claimed { value: clean_str(&c.value)?, occurrences: c.occurrences }))
            .collect();
        activity.add_samples(&claimed);
        Some((f.subject.clone(), activity))
    }

    /// Seeds the tracker from active shadow findings after a restart, so that they are
    /// not resolved before they have been quiet for the configured time. (On a database
    /// several servers share, the counts are in the store and this is not used.)
    pub(crate) fn resume<'a>(&self, active: impl Iterator<Item = &'a Finding>) {
        let Ok(mut map) = self.seen.lock() else { return };
        for (subject, activity) in active.filter_map(Self::recorded) {
            map.insert(subject, Entry { activity, reported: true });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a sweep observes of `t` at `now`.
    fn observed(t: &ShadowTracker, now: UnixTime, quiet: i64) -> Vec<Observation> {
        t.current(now, quiet).iter().map(|(subject, a)| observation(subject, a, quiet)).collect()
    }

    #[test]
    fn peeks_at_claims_without_trusting_them() {
        let header = B64.encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
        let payload = B64.encode(br#"{"iss":"https://evil.example","client_id":"agt_x\u0000y"}"#);
        let p = peek(&format!("{header}.{payload}.sig"));
        assert_eq!(p.iss.as_deref(), Some("https://evil.example"));
        assert_eq!(p.client.as_deref(), Some("agt_xy"));
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(peek("garbage"), Peek::default());
    }

    #[test]
    fn occurrences_are_counted_and_forgotten_after_the_quiet_time() {
        let t = ShadowTracker::default();
        let p = Peek { iss: Some("https://evil".into()), ..Peek::default() };
        t.record(ShadowCause::ForeignIssuer, p.clone(), UnixTime(10));
        t.record(ShadowCause::ForeignIssuer, p, UnixTime(20));
        let obs = observed(&t, UnixTime(30), 100);
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].subject, "shadow:foreign_issuer");
        assert_eq!(obs[0].evidence["occurrences"], 2);
        assert_eq!(obs[0].evidence["claimed"][0]["value"], "https://evil");
        assert_eq!(obs[0].evidence["claimed"][0]["occurrences"], 2);
        t.reported([("shadow:foreign_issuer", 2)]);
        assert!(observed(&t, UnixTime(120), 100).is_empty());
    }

    #[test]
    fn activity_that_stops_before_any_sweep_is_still_reported_once() {
        let t = ShadowTracker::default();
        t.record(ShadowCause::NotAWarrant, Peek::default(), UnixTime(10));
        // The first sweep comes long after the activity went quiet (a sweep interval
        // longer than the quiet time, or sweeps failing meanwhile).
        let late = observed(&t, UnixTime(500), 100);
        assert_eq!(late.len(), 1, "{late:?}");
        assert_eq!(late[0].subject, "token:not_a_warrant");
        // That sweep failed to commit: the next one reports it again.
        assert_eq!(observed(&t, UnixTime(600), 100).len(), 1);
        t.reported([("token:not_a_warrant", 1)]);
        assert!(observed(&t, UnixTime(700), 100).is_empty(), "reported and quiet: forgotten");
        // New activity under the same subject is a new report.
        t.record(ShadowCause::NotAWarrant, Peek::default(), UnixTime(800));
        assert_eq!(observed(&t, UnixTime(1000), 100).len(), 1);
        // An occurrence counted after a sweep read the subject keeps it unreported.
        t.record(ShadowCause::NotAWarrant, Peek::default(), UnixTime(900));
        t.reported([("token:not_a_warrant", 1)]);
        assert_eq!(observed(&t, UnixTime(2000), 100).len(), 1);
    }

    /// The counts of a batch, by subject.
    fn counts(batch: &ShadowBatch) -> Vec<(&str, u64)> {
        let mut counts: Vec<(&str, u64)> = batch.counted.iter().map(|(s, a)| (s.as_str(), a.occurrences)).collect();
        counts.sort_unstable();
        counts
    }

    #[test]
    fn a_batch_not_written_goes_back_as_it_was() {
        let t = ShadowTracker::default();
        let iss = |i: &str| Peek { iss: Some(i.into()), ..Peek::default() };
        assert!(t.take().unwrap().is_none(), "nothing counted, nothing to store");
        t.record(ShadowCause::ForeignIssuer, iss("https://first"), UnixTime(10));
        let taken = t.take().unwrap().unwrap();
        let first = taken.batch().clone();
        assert_eq!(counts(&first), [("shadow:foreign_issuer", 1)]);
        // Counted while the write runs.
        t.record(ShadowCause::ForeignIssuer, iss("https://later"), UnixTime(20));
        t.record(ShadowCause::NotAWarrant, Peek::default(), UnixTime(20));
        // The write failed, was cancelled, or committed and its answer was lost.
        drop(taken);
        // The same batch, under the same id, not mixed with what was counted since: a
        // store that did commit it recognises it.
        let again = t.take().unwrap().unwrap();
        assert_eq!(again.batch(), &first);
        again.written();
        let next = t.take().unwrap().unwrap();
        assert_ne!(next.batch().id, first.id);
        assert_eq!(counts(next.batch()), [("shadow:foreign_issuer", 1), ("token:not_a_warrant", 1)]);
        next.written();
        assert!(t.take().unwrap().is_none(), "written: gone from memory");
        assert!(t.current(UnixTime(30), 100).is_empty());
    }

    #[test]
    fn batches_of_two_failed_writes_both_go_back() {
        let t = ShadowTracker::default();
        t.record(ShadowCause::NotAWarrant, Peek::default(), UnixTime(1));
        let one = t.take().unwrap().unwrap();
        t.record(ShadowCause::Forged, Peek::default(), UnixTime(2));
        let two = t.take().unwrap().unwrap();
        let ids = [one.batch().id, two.batch().id];
        drop(one);
        drop(two);
        let mut back = Vec::new();
        while let Some(taken) = t.take().unwrap() {
            back.push(taken.batch().id);
            taken.written();
        }
        back.sort_unstable_by_key(ToString::to_string);
        let mut ids = ids.to_vec();
        ids.sort_unstable_by_key(ToString::to_string);
        assert_eq!(back, ids);
    }

    #[test]
    fn resumed_counts_keep_the_activity_times_and_samples_and_go_on_from_the_finding() {
        let t = ShadowTracker::default();
        let iss = |i: &str| Peek { iss: Some(i.into()), ..Peek::default() };
        t.record(ShadowCause::ForeignIssuer, iss("https://first"), UnixTime(10));
        t.record(ShadowCause::ForeignIssuer, iss("https://second"), UnixTime(20));
        let obs = observed(&t, UnixTime(60), 100).remove(0);
        // The sweep at 60 opened the finding, and one at 90 last refreshed it; its
        // activity ran from 10 to 20.
        let mut finding = Finding::open("fnd_1".into(), obs, UnixTime(60));
        finding.last_seen = UnixTime(90);
        let (_, activity) = ShadowTracker::recorded(&finding).unwrap();
        assert_eq!((activity.first_seen, activity.last_seen, activity.occurrences), (UnixTime(10), UnixTime(20), 2));
        let resumed = ShadowTracker::default();
        resumed.resume(std::iter::once(&finding));
        resumed.record(ShadowCause::ForeignIssuer, iss("https://third"), UnixTime(70));
        let e = &observed(&resumed, UnixTime(80), 100)[0].evidence;
        assert_eq!(e["occurrences"], 3);
        assert_eq!(e["first_seen"], 10, "the activity's first occurrence, not the finding's opening");
        let claimed: Vec<&str> =
            e["claimed"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
        assert_eq!(claimed, ["https://first", "https://second", "https://third"], "what was claimed first stays first");
        assert_eq!(e["distinct_claimed"], 3);
        // Resolved findings are not counts.
        finding.status = warrant_core::govern::FindingStatus::Resolved;
        assert!(ShadowTracker::recorded(&finding).is_none());
    }

    #[test]
    fn attacker_chosen_claims_never_pick_a_subject() {
        let t = ShadowTracker::default();
        for i in 0..(MAX_SUBJECTS + 50) {
            t.record(ShadowCause::ForeignIssuer, Peek { iss: Some(format!("iss{i}")), ..Peek::default() }, UnixTime(1));
            t.record(ShadowCause::UnknownKey, Peek { kid: Some(format!("kid{i}")), ..Peek::default() }, UnixTime(1));
        }
        let obs = observed(&t, UnixTime(2), 100);
        assert_eq!(obs.len(), 2, "one finding per cause, however many claims: {obs:?}");
        for o in &obs {
            assert_eq!(o.severity, Severity::Medium);
            assert_eq!(o.evidence["occurrences"], MAX_SUBJECTS + 50);
            assert_eq!(o.evidence["claimed"].as_array().unwrap().len(), MAX_SAMPLES);
            assert_eq!(o.evidence["distinct_claimed"], MAX_DISTINCT);
        }
    }

    #[test]
    fn unregistered_agent_subjects_are_bounded() {
        let t = ShadowTracker::default();
        for i in 0..(MAX_SUBJECTS + 50) {
            let peek = Peek { client: Some(format!("agt_{i}")), ..Peek::default() };
            t.record(ShadowCause::UnregisteredAgent, peek, UnixTime(1));
        }
        let obs = observed(&t, UnixTime(2), 100);
        assert_eq!(obs.len(), MAX_SUBJECTS + 1);
        assert!(obs.iter().any(|o| o.subject == OVERFLOW_SUBJECT));
    }
}
