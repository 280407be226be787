//! One subject's shadow activity, as counted: how many tokens Warrant did not issue were
//! presented under it, when, and a bounded sample of what they claimed.
//!
//! What a server saw is counted in memory; servers sharing a database add what each saw
//! together ([`ShadowActivity::merge`]), so a sweep judges the activity every server saw.
//! Everything a token claims is the caller's to choose, so every collection here is
//! bounded whatever the caller sends, and so is the number of subjects ([`MAX_SUBJECTS`],
//! beyond which new subjects are counted under [`OVERFLOW_SUBJECT`]).
//!
//! A server hands what it counted to a shared store as a [`ShadowBatch`]: a write whose
//! outcome was lost (its connection dropped during the commit, or the write was cancelled
//! there) is retried as the same batch, which the store recognises, so no count is added
//! twice.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::evidence::{Claimed, Shadow, ShadowCause};
use crate::UnixTime;

/// How many distinct claimed values a subject keeps as samples.
pub const MAX_SAMPLES: usize = 5;
/// How many distinct claimed values a subject counts, at most.
pub const MAX_DISTINCT: usize = 100;
/// The most distinct shadow subjects counted: a new subject beyond them is counted under
/// [`OVERFLOW_SUBJECT`].
pub const MAX_SUBJECTS: usize = 1000;
/// The subject counting what arrived under new subjects once [`MAX_SUBJECTS`] were taken.
pub const OVERFLOW_SUBJECT: &str = "token:other";

/// The identifiers the first token of a subject claimed (read without verifying it, for
/// evidence only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedIds {
    /// The `iss` claim.
    pub iss: Option<String>,
    /// The `client_id` claim (or `sub`).
    pub client: Option<String>,
    /// The header's `kid`.
    pub kid: Option<String>,
}

/// One subject's shadow activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowActivity {
    /// Why its tokens count.
    pub cause: ShadowCause,
    /// The first occurrence's time.
    pub first_seen: UnixTime,
    /// The last occurrence's time.
    pub last_seen: UnixTime,
    /// How many occurrences.
    pub occurrences: u64,
    /// What the first token claimed.
    pub first: ClaimedIds,
    /// The first [`MAX_SAMPLES`] distinct claimed values (issuer, key or client, by
    /// cause), with how often each was seen.
    pub samples: Vec<Claimed>,
    /// The distinct claimed values, at most [`MAX_DISTINCT`] of them.
    pub distinct: BTreeSet<String>,
}

impl ShadowActivity {
    /// Activity first seen at `now`, with no occurrence counted yet.
    pub fn new(cause: ShadowCause, now: UnixTime, first: ClaimedIds) -> Self {
        ShadowActivity {
            cause,
            first_seen: now,
            last_seen: now,
            occurrences: 0,
            first,
            samples: Vec::new(),
            distinct: BTreeSet::new(),
        }
    }

    /// Counts one occurrence at `now` that claimed `claimed`.
    pub fn note(&mut self, claimed: Option<String>, now: UnixTime) {
        self.first_seen = self.first_seen.min(now);
        self.last_seen = self.last_seen.max(now);
        self.occurrences = self.occurrences.saturating_add(1);
        if let Some(claimed) = claimed {
            self.sample(claimed, 1);
        }
    }

    /// Keeps `claimed` (values with how often each was seen, as a finding's evidence
    /// records them) as samples and distinct values, within their bounds; the occurrences
    /// are not changed.
    pub fn add_samples(&mut self, claimed: &[Claimed]) {
        for c in claimed {
            self.sample(c.value.clone(), c.occurrences);
        }
    }

    fn sample(&mut self, claimed: String, occurrences: u64) {
        if let Some(s) = self.samples.iter_mut().find(|s| s.value == claimed) {
            s.occurrences = s.occurrences.saturating_add(occurrences);
        } else if self.samples.len() < MAX_SAMPLES {
            self.samples.push(Claimed { value: claimed.clone(), occurrences });
        }
        if self.distinct.len() < MAX_DISTINCT {
            self.distinct.insert(claimed);
        }
    }

    /// Adds `other`, the same subject's activity counted later or by another server, to
    /// this one (call it on the earlier counts): occurrences add up, the times widen, the
    /// cause stays this one's, the samples keep this one's first and fill what room is
    /// left from `other`'s (so a later burst cannot push out what was claimed first),
    /// distinct values are joined within their bound, and the first token's claims are
    /// the earlier one's.
    pub fn merge(&mut self, other: &ShadowActivity) {
        if other.first_seen < self.first_seen {
            self.first = other.first.clone();
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.occurrences = self.occurrences.saturating_add(other.occurrences);
        for s in &other.samples {
            self.sample(s.value.clone(), s.occurrences);
        }
        for value in &other.distinct {
            if self.distinct.len() >= MAX_DISTINCT {
                break;
            }
            self.distinct.insert(value.clone());
        }
    }

    /// Whether it has been quiet for `quiet` seconds at `now`.
    pub fn quiet_at(&self, now: UnixTime, quiet: i64) -> bool {
        self.last_seen.until(now) >= quiet
    }

    /// The finding evidence for it; it resolves after `quiet` seconds without a new
    /// occurrence.
    pub fn evidence(&self, quiet: i64) -> Shadow {
        Shadow {
            cause: self.cause,
            occurrences: self.occurrences,
            claimed: self.samples.clone(),
            distinct_claimed: self.distinct.len(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            claimed_issuer: self.first.iss.clone(),
            claimed_client: self.first.client.clone(),
            kid: self.first.kid.clone(),
            quiet_secs_to_resolve: quiet,
        }
    }
}

/// The id of one [`ShadowBatch`]: 128 random bits, so batches of different servers, or of
/// one server before and after a restart, never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShadowBatchId([u8; 16]);

impl ShadowBatchId {
    /// The id made of `random`, which must come from a CSPRNG.
    pub fn from_random(random: [u8; 16]) -> Self {
        ShadowBatchId(random)
    }
}

/// Lowercase hex, as the store keeps it.
impl fmt::Display for ShadowBatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What one server counted, by subject, handed to a shared store at once under one id: the
/// store adds a batch it has already added to nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowBatch {
    /// The batch's id.
    pub id: ShadowBatchId,
    /// The counts, by subject (a subject may appear more than once).
    pub counted: Vec<(String, ShadowActivity)>,
}

/// `counted`, one entry per subject (the counts of a subject given twice added up, in the
/// order given), with the subjects a store holding `stored_count` subjects has no room for
/// counted under [`OVERFLOW_SUBJECT`]. A subject `is_stored` already answers for keeps its
/// name, and so does the overflow subject; a new one takes a place while fewer than
/// [`MAX_SUBJECTS`] are taken (the stored ones and the new ones placed before it).
pub fn within_subject_bound(
    counted: &[(String, ShadowActivity)],
    is_stored: impl Fn(&str) -> bool,
    stored_count: usize,
) -> Vec<(String, ShadowActivity)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(String, ShadowActivity)> = Vec::new();
    let mut taken = stored_count;
    for (subject, seen) in counted {
        let known = index.contains_key(subject) || subject == OVERFLOW_SUBJECT || is_stored(subject);
        let name = if known || taken < MAX_SUBJECTS {
            if !known {
                taken += 1;
            }
            subject.as_str()
        } else {
            OVERFLOW_SUBJECT
        };
        match index.get(name).and_then(|&i| out.get_mut(i)) {
            Some((_, activity)) => activity.merge(seen),
            None => {
                index.insert(name.to_owned(), out.len());
                out.push((name.to_owned(), seen.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: i64, values: &[&str]) -> ShadowActivity {
        let first = ClaimedIds { iss: Some(format!("iss-at-{at}")), ..ClaimedIds::default() };
        let mut a = ShadowActivity::new(ShadowCause::ForeignIssuer, UnixTime(at), first);
        for (i, v) in values.iter().enumerate() {
            a.note(Some((*v).to_owned()), UnixTime(at + i64::try_from(i).unwrap()));
        }
        a
    }

    fn samples(a: &ShadowActivity) -> Vec<(&str, u64)> {
        a.samples.iter().map(|s| (s.value.as_str(), s.occurrences)).collect()
    }

    #[test]
    fn merging_adds_occurrences_widens_times_and_keeps_the_earlier_first_token() {
        let mut earlier = seen(50, &["a", "c"]);
        earlier.merge(&seen(100, &["a", "b", "a"]));
        assert_eq!(earlier.occurrences, 5);
        assert_eq!((earlier.first_seen, earlier.last_seen), (UnixTime(50), UnixTime(102)));
        assert_eq!(earlier.first.iss.as_deref(), Some("iss-at-50"));
        assert_eq!(samples(&earlier), [("a", 3), ("c", 1), ("b", 1)]);
        assert_eq!(earlier.distinct.len(), 3);
        // The other way round, the counts are the same and the samples keep this side's
        // first; the first token is still the earlier one's.
        let mut later = seen(100, &["a", "b", "a"]);
        later.merge(&seen(50, &["a", "c"]));
        assert_eq!((later.occurrences, later.first_seen, later.last_seen), (5, UnixTime(50), UnixTime(102)));
        assert_eq!(later.first.iss.as_deref(), Some("iss-at-50"));
        assert_eq!(samples(&later), [("a", 3), ("b", 1), ("c", 1)]);
    }

    #[test]
    fn a_later_burst_cannot_push_out_what_was_claimed_first() {
        let mut first = seen(1, &["https://the-real-one"]);
        let junk: Vec<String> = (0..30).map(|i| format!("junk{i}")).collect();
        first.merge(&seen(2, &junk.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(first.samples[0].value, "https://the-real-one");
        assert_eq!(first.samples.len(), MAX_SAMPLES);
        assert_eq!((first.occurrences, first.distinct.len()), (31, 31));
    }

    #[test]
    fn merged_samples_and_distinct_values_stay_bounded() {
        let many: Vec<String> = (0..150).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut a = seen(1, &refs[..80]);
        a.merge(&seen(1, &refs[70..]));
        assert_eq!(a.occurrences, 160);
        assert_eq!(samples(&a).iter().map(|(v, _)| *v).collect::<Vec<_>>(), ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(a.distinct.len(), MAX_DISTINCT);
    }

    #[test]
    fn quiet_after_the_quiet_time_since_the_last_occurrence() {
        let a = seen(10, &["a"]);
        assert!(!a.quiet_at(UnixTime(109), 100));
        assert!(a.quiet_at(UnixTime(110), 100));
        let e = a.evidence(100);
        assert_eq!((e.occurrences, e.distinct_claimed, e.quiet_secs_to_resolve), (1, 1, 100));
        assert_eq!(e.claimed_issuer.as_deref(), Some("iss-at-10"));
    }

    #[test]
    fn a_batch_id_is_its_bytes_in_lowercase_hex() {
        let id = ShadowBatchId::from_random([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_ne!(id, ShadowBatchId::from_random([0; 16]));
    }

    #[test]
    fn a_subject_given_twice_is_added_up_once() {
        let counted =
            [("s".to_owned(), seen(10, &["a"])), ("t".to_owned(), seen(5, &[])), ("s".to_owned(), seen(20, &["b"]))];
        let fitted = within_subject_bound(&counted, |_| false, 0);
        let names: Vec<&str> = fitted.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["s", "t"]);
        assert_eq!(fitted[0].1.occurrences, 2);
        assert_eq!(samples(&fitted[0].1), [("a", 1), ("b", 1)]);
    }

    #[test]
    fn new_subjects_beyond_the_bound_are_counted_under_the_overflow_subject() {
        let counted = [
            ("stored".to_owned(), seen(1, &["x"])),
            ("new-1".to_owned(), seen(2, &["a"])),
            ("new-2".to_owned(), seen(3, &["b", "b"])),
            ("new-3".to_owned(), seen(4, &["c"])),
            ("new-1".to_owned(), seen(5, &["a"])),
        ];
        // Room for one new subject: it takes it; the later new ones overflow, the stored
        // one and the placed one keep their names.
        let fitted = within_subject_bound(&counted, |s| s == "stored", MAX_SUBJECTS - 1);
        let counts: Vec<(&str, u64)> = fitted.iter().map(|(s, a)| (s.as_str(), a.occurrences)).collect();
        assert_eq!(counts, [("stored", 1), ("new-1", 2), (OVERFLOW_SUBJECT, 3)]);
        assert_eq!(samples(&fitted[2].1), [("b", 2), ("c", 1)]);
        // A full store: every new subject overflows, and so may the overflow subject's own.
        let full = within_subject_bound(&counted, |s| s == "stored", MAX_SUBJECTS + 1);
        let counts: Vec<(&str, u64)> = full.iter().map(|(s, a)| (s.as_str(), a.occurrences)).collect();
        assert_eq!(counts, [("stored", 1), (OVERFLOW_SUBJECT, 5)]);
        let again = within_subject_bound(&[(OVERFLOW_SUBJECT.to_owned(), seen(9, &[]))], |_| false, MAX_SUBJECTS);
        assert_eq!(again[0].0, OVERFLOW_SUBJECT);
    }
}
