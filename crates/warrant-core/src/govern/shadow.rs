//! One subject's shadow activity, as counted: how many tokens Warrant did not issue were
//! presented under it, when, and a bounded sample of what they claimed.
//!
//! What a server saw is counted in memory; servers sharing a database add what each saw
//! together ([`ShadowActivity::merge`]), so a sweep judges the activity every server saw.
//! Everything a token claims is the caller's to choose, so every collection here is
//! bounded whatever the caller sends.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::evidence::{Claimed, Shadow, ShadowCause};
use crate::UnixTime;

/// How many distinct claimed values a subject keeps as samples.
pub const MAX_SAMPLES: usize = 5;
/// How many distinct claimed values a subject counts, at most.
pub const MAX_DISTINCT: usize = 100;

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

    /// Adds `other` (the same subject's activity seen elsewhere, or later) to this one:
    /// occurrences add up, the times widen, samples and distinct values are joined within
    /// their bounds, and the first token's claims are the earlier one's.
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

    #[test]
    fn merging_adds_occurrences_widens_times_and_keeps_the_earlier_first_token() {
        let mut here = seen(100, &["a", "b", "a"]);
        let there = seen(50, &["a", "c"]);
        here.merge(&there);
        assert_eq!(here.occurrences, 5);
        assert_eq!((here.first_seen, here.last_seen), (UnixTime(50), UnixTime(102)));
        assert_eq!(here.first.iss.as_deref(), Some("iss-at-50"));
        let samples: Vec<(&str, u64)> = here.samples.iter().map(|s| (s.value.as_str(), s.occurrences)).collect();
        assert_eq!(samples, [("a", 3), ("b", 1), ("c", 1)]);
        assert_eq!(here.distinct.len(), 3);
        // Merging in the other order gives the same counts.
        let mut other_way = seen(50, &["a", "c"]);
        other_way.merge(&seen(100, &["a", "b", "a"]));
        assert_eq!(
            (other_way.occurrences, other_way.first_seen, other_way.last_seen, other_way.distinct.len()),
            (5, UnixTime(50), UnixTime(102), 3)
        );
    }

    #[test]
    fn merged_samples_and_distinct_values_stay_bounded() {
        let many: Vec<String> = (0..150).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut a = seen(1, &refs[..80]);
        a.merge(&seen(1, &refs[70..]));
        assert_eq!(a.occurrences, 160);
        assert_eq!(a.samples.len(), MAX_SAMPLES);
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
}
