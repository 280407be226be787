//! An agent's recent activity, counted over sliding windows, for policies to read.
//!
//! Cedar sees it as `context.history`: how many requests of this action, on this resource
//! prefix, in this task and in all were allowed to the agent in the last minute, hour and
//! day, and (as the tags of `context.history.recent`) the counts per action and the sums of
//! the integer telemetry fields per action. Rules that temporal policy languages write
//! ("at most 10 transfers per hour", "no export after a bulk read") are plain Cedar then.
//!
//! Windows slide in steps: the minute in 10-second steps, the hour in 5-minute steps, the
//! day in 1-hour steps, so a count may include up to one step more than its window. Only
//! allowed requests are counted. Pure: the caller passes the time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::UnixTime;

/// The most actions, resource prefixes, tasks and sums one agent's history keeps; the
/// least recently used goes first.
pub const MAX_KEYS: usize = 32;

/// The most integer telemetry fields of one request that are summed.
pub const MAX_FIELDS: usize = 8;

/// A count over each window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// In the last minute.
    pub minute: i64,
    /// In the last hour.
    pub hour: i64,
    /// In the last day.
    pub day: i64,
}

/// A ring of `N` buckets of `step` seconds: (bucket number, total).
fn add<const N: usize>(ring: &mut [(i64, i64); N], step: i64, now: UnixTime, x: i64) {
    let bucket = now.secs().div_euclid(step);
    let Some(slot) = ring.get_mut(usize::try_from(bucket.rem_euclid(N as i64)).unwrap_or(0)) else { return };
    if slot.0 == bucket {
        slot.1 = slot.1.saturating_add(x);
    } else {
        *slot = (bucket, x);
    }
}

fn total<const N: usize>(ring: &[(i64, i64); N], step: i64, now: UnixTime) -> i64 {
    let bucket = now.secs().div_euclid(step);
    ring.iter().filter(|(b, _)| *b <= bucket && *b > bucket - N as i64).map(|(_, x)| *x).fold(0, i64::saturating_add)
}

/// One series: totals over the last minute, hour and day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    minute: [(i64, i64); 6],
    hour: [(i64, i64); 12],
    day: [(i64, i64); 24],
    /// When it was last added to.
    last: i64,
}

impl Series {
    /// Adds `x` at `now`.
    pub fn add(&mut self, now: UnixTime, x: i64) {
        add(&mut self.minute, 10, now, x);
        add(&mut self.hour, 300, now, x);
        add(&mut self.day, 3_600, now, x);
        self.last = self.last.max(now.secs());
    }

    /// The totals at `now`.
    pub fn counts(&self, now: UnixTime) -> Counts {
        Counts {
            minute: total(&self.minute, 10, now),
            hour: total(&self.hour, 300, now),
            day: total(&self.day, 3_600, now),
        }
    }
}

/// Adds `x` to `key`'s series in `map`, making room (the least recently used key goes)
/// when the map is full.
fn bump(map: &mut BTreeMap<String, Series>, key: &str, now: UnixTime, x: i64) {
    if !map.contains_key(key) && map.len() >= MAX_KEYS {
        if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone()) {
            map.remove(&oldest);
        }
    }
    map.entry(key.to_owned()).or_default().add(now, x);
}

/// One agent's recent allowed activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    all: Series,
    actions: BTreeMap<String, Series>,
    prefixes: BTreeMap<String, Series>,
    tasks: BTreeMap<String, Series>,
    /// `<action>:<field>`: sums of an integer telemetry field.
    sums: BTreeMap<String, Series>,
}

/// What a policy sees of an agent's history for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryView {
    /// Allowed requests of the request's action.
    pub action: Counts,
    /// Allowed requests on the request's resource prefix.
    pub prefix: Counts,
    /// Allowed requests in the request's task.
    pub task: Counts,
    /// All allowed requests.
    pub agent: Counts,
    /// Per action and per summed field, as Cedar tags: `<action>` (last hour),
    /// `<action>@day`, `<action>:<field>` (sum over the last hour), `<action>:<field>@day`.
    pub tags: Vec<(String, i64)>,
}

impl History {
    /// Counts an allowed request of `action` on a resource with `prefix` in `task` at
    /// `now`, and adds its integer telemetry `fields` (at most [`MAX_FIELDS`], negative
    /// values ignored) to the action's sums.
    pub fn record(&mut self, action: &str, prefix: &str, task: &str, fields: &[(&str, i64)], now: UnixTime) {
        self.all.add(now, 1);
        bump(&mut self.actions, action, now, 1);
        if !prefix.is_empty() {
            bump(&mut self.prefixes, prefix, now, 1);
        }
        bump(&mut self.tasks, task, now, 1);
        for (field, value) in fields.iter().filter(|(_, v)| *v >= 0).take(MAX_FIELDS) {
            bump(&mut self.sums, &format!("{action}:{field}"), now, *value);
        }
    }

    /// What a policy sees for a request of `action` on `prefix` in `task` at `now`: what
    /// was allowed before it.
    pub fn view(&self, action: &str, prefix: &str, task: &str, now: UnixTime) -> HistoryView {
        let of = |map: &BTreeMap<String, Series>, key: &str| map.get(key).map(|s| s.counts(now)).unwrap_or_default();
        let mut tags = Vec::with_capacity(2 * (self.actions.len() + self.sums.len()));
        for (key, series) in self.actions.iter().chain(&self.sums) {
            let c = series.counts(now);
            tags.push((key.clone(), c.hour));
            tags.push((format!("{key}@day"), c.day));
        }
        HistoryView {
            action: of(&self.actions, action),
            prefix: of(&self.prefixes, prefix),
            task: of(&self.tasks, task),
            agent: self.all.counts(now),
            tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000;

    #[test]
    fn counts_slide_out_of_their_windows() {
        let mut h = History::default();
        for i in 0..5 {
            h.record("payments.send", "vendors/acme", "tsk_1", &[("amount", 100)], UnixTime(T + i));
        }
        h.record("crm.read", "customers", "tsk_1", &[], UnixTime(T + 5));
        let v = h.view("payments.send", "vendors/acme", "tsk_1", UnixTime(T + 6));
        assert_eq!(v.action, Counts { minute: 5, hour: 5, day: 5 });
        assert_eq!(v.task.hour, 6);
        assert_eq!(v.agent.minute, 6);
        assert!(v.tags.contains(&("payments.send:amount".into(), 500)));
        assert!(v.tags.contains(&("crm.read".into(), 1)));
        // Two minutes on: out of the minute, still in the hour.
        let v = h.view("payments.send", "vendors/acme", "tsk_1", UnixTime(T + 130));
        assert_eq!(v.action, Counts { minute: 0, hour: 5, day: 5 });
        // Two hours on: only the day.
        let v = h.view("payments.send", "vendors/acme", "tsk_1", UnixTime(T + 7_500));
        assert_eq!(v.action, Counts { minute: 0, hour: 0, day: 5 });
        assert!(v.tags.contains(&("payments.send:amount@day".into(), 500)));
        // Two days on: nothing.
        assert_eq!(h.view("payments.send", "", "tsk_1", UnixTime(T + 2 * 86_400)).action, Counts::default());
    }

    #[test]
    fn keys_are_bounded_and_the_least_recent_goes() {
        let mut h = History::default();
        for i in 0..(MAX_KEYS as i64 + 5) {
            h.record(&format!("a.{i}"), "p", "t", &[("n", -3)], UnixTime(T + i));
        }
        assert_eq!(h.actions.len(), MAX_KEYS);
        assert!(!h.actions.contains_key("a.0") && h.actions.contains_key(&format!("a.{}", MAX_KEYS + 4)));
        assert!(h.sums.is_empty(), "negative values are not summed");
    }
}
