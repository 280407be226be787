//! Rate limits, enforced with the generic cell rate algorithm (GCRA).
//!
//! A [`RateLimit`] of `limit` requests per `per_secs` seconds allows a burst of `limit`
//! requests, then one every `per_secs / limit` seconds (the emission interval). The state
//! per key is a single [`Gcra`] value, the theoretical arrival time of the next request;
//! there are no buckets to refill or windows to slide.
//!
//! The arithmetic is exact (integer ticks of `1/limit` second), so a burst is always
//! exactly `limit` and a saturated key gets exactly `limit` requests per period, even
//! when `per_secs / limit` is not a whole number of seconds or nanoseconds.

use serde::{Deserialize, Serialize};

use crate::time::UnixTime;

/// `limit` requests per `per_secs` seconds, in bursts of up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per period (and the largest burst). 0 allows nothing.
    pub limit: u64,
    /// The period, in seconds (at least 1).
    pub per_secs: u64,
}

/// Why a string is not a rate limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Not `<count>/<period>`.
    #[error("`{value}` is not a rate limit: write `<count>/<period>`, e.g. `600/min`, `10/s` or `100/60s`")]
    Syntax {
        /// The input.
        value: String,
    },
    /// The period's unit is not one of s, sec, m, min, h, hour, d, day.
    #[error(
        "`{value}` has an unknown period unit `{unit}`: use `s`, `min`, `h` or `d`, optionally after a count (`60s`)"
    )]
    BadUnit {
        /// The input.
        value: String,
        /// The unit given.
        unit: String,
    },
    /// The period is zero seconds long.
    #[error("`{value}` has a period of zero seconds")]
    ZeroPeriod {
        /// The input.
        value: String,
    },
    /// A number is too large.
    #[error("`{value}` is too large a rate limit")]
    TooLarge {
        /// The input.
        value: String,
    },
}

/// Seconds in one `unit`.
fn unit_secs(unit: &str) -> Option<u64> {
    match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        "h" | "hr" | "hour" | "hours" => Some(3_600),
        "d" | "day" | "days" => Some(86_400),
        _ => None,
    }
}

/// Parses a non-empty run of ASCII digits (no sign, no spaces).
fn digits(s: &str) -> Option<Result<u64, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().map_err(|_| ()))
}

impl RateLimit {
    /// Parses `<count>/<period>`: `600/min`, `10/s`, `100/60s`, `5000/h`. The period is a
    /// unit (`s`, `sec`, `m`, `min`, `h`, `hour`, `d`, `day`, or their plurals), optionally
    /// after a count of them (`60s`, `5min`).
    pub fn parse(s: &str) -> Result<RateLimit, RateLimitError> {
        let syntax = || RateLimitError::Syntax { value: s.to_owned() };
        let too_large = || RateLimitError::TooLarge { value: s.to_owned() };
        let (count, period) = s.trim().split_once('/').ok_or_else(syntax)?;
        let limit = digits(count.trim()).ok_or_else(syntax)?.map_err(|()| too_large())?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
        let (n, unit) = period.split_at(split);
        if unit.is_empty() {
            return Err(syntax());
        }
        let n = if n.is_empty() { 1 } else { digits(n).ok_or_else(syntax)?.map_err(|()| too_large())? };
        let secs =
            unit_secs(unit).ok_or_else(|| RateLimitError::BadUnit { value: s.to_owned(), unit: unit.to_owned() })?;
        let per_secs = n.checked_mul(secs).ok_or_else(too_large)?;
        if per_secs == 0 {
            return Err(RateLimitError::ZeroPeriod { value: s.to_owned() });
        }
        Ok(RateLimit { limit, per_secs })
    }
}

impl std::fmt::Display for RateLimit {
    /// `<limit>/<per_secs>s`, which parses back to the same limit.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.limit, self.per_secs)
    }
}

impl std::str::FromStr for RateLimit {
    type Err = RateLimitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RateLimit::parse(s)
    }
}

/// The GCRA state of one rate-limited key: the theoretical arrival time of the next
/// request. The default is a key with no history.
///
/// The time is kept exactly, as a count of `1/limit`-second ticks (the emission interval
/// `per_secs / limit` is then a whole `per_secs` ticks, and every comparison is integer);
/// [`tat`](Self::tat) mirrors it in seconds for display and eviction. Should the limit of
/// a key change, its state is converted to the new ticks, rounding up (towards stricter).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gcra {
    /// The theoretical arrival time, in seconds since the epoch (0 with no history).
    /// Informational: [`check`](Self::check) uses the exact value.
    pub tat: f64,
    /// The theoretical arrival time, in ticks of `1/scale` second since the epoch.
    ticks: i128,
    /// Ticks per second of `ticks`: the `limit` it was computed with; 0 for no history.
    scale: u64,
}

impl Gcra {
    /// The theoretical arrival time in ticks of `1/ticks` second (rounded up), or `None`
    /// with no history.
    fn tat_in(&self, ticks: u64) -> Option<i128> {
        if self.scale == 0 {
            return None;
        }
        if self.scale == ticks {
            return Some(self.ticks);
        }
        let scale = i128::from(self.scale);
        let whole = self.ticks.div_euclid(scale);
        let rest = self.ticks.rem_euclid(scale);
        // rest < scale <= u64::MAX, so the product fits in a u128.
        let rest = u128::try_from(rest).unwrap_or(0) * u128::from(ticks);
        let rest = i128::try_from(rest.div_ceil(u128::from(self.scale))).unwrap_or(i128::MAX);
        Some(whole.saturating_mul(i128::from(ticks)).saturating_add(rest))
    }

    /// Whether the key is as good as new at `now` (its theoretical arrival time has
    /// passed, so the full burst is available), and a caller may forget it to bound memory.
    pub fn idle(&self, now: UnixTime) -> bool {
        match self.tat_in(1) {
            Some(tat) => tat <= i128::from(now.secs()),
            None => true,
        }
    }

    /// Whether one more request at `now` conforms to `limit`: `Ok` with the new state, or
    /// `Err` with how many whole seconds to wait before it would (at least 1).
    ///
    /// With emission interval `T = per_secs / limit` and burst tolerance
    /// `per_secs - T`, a request conforms when `max(tat, now) - now` is within the
    /// tolerance; the new `tat` is then `max(tat, now) + T`. So a burst of exactly `limit`
    /// passes, then one request every `T`. A limit of 0 never conforms (retry after one
    /// period); a period of 0 counts as one second.
    pub fn check(&self, limit: RateLimit, now: UnixTime) -> Result<Gcra, u64> {
        let per_secs = limit.per_secs.max(1);
        if limit.limit == 0 {
            return Err(per_secs);
        }
        // In ticks of 1/limit second: T = per_secs, tolerance = per_secs * (limit - 1).
        let ticks = i128::from(limit.limit);
        let interval = i128::from(per_secs);
        let tolerance = interval.saturating_mul(ticks - 1);
        // |secs| < 2^63 and ticks < 2^64: the product fits.
        let now = i128::from(now.secs()).saturating_mul(ticks);
        let tat = self.tat_in(limit.limit).map_or(now, |tat| tat.max(now));
        let ahead = tat.saturating_sub(now);
        if ahead <= tolerance {
            let ticks = tat.saturating_add(interval);
            #[expect(clippy::cast_precision_loss, reason = "an approximation, for display")]
            let secs = ticks as f64 / limit.limit as f64;
            return Ok(Gcra { tat: secs, ticks, scale: limit.limit });
        }
        let wait = (ahead - tolerance).saturating_add(ticks - 1) / ticks;
        Err(u64::try_from(wait).unwrap_or(u64::MAX).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn rl(s: &str) -> RateLimit {
        RateLimit::parse(s).unwrap()
    }

    /// Sends `n` requests at `now`; returns how many passed and the last refusal.
    fn burst(g: &mut Gcra, limit: RateLimit, now: i64, n: u64) -> (u64, Option<u64>) {
        let mut passed = 0;
        let mut refused = None;
        for _ in 0..n {
            match g.check(limit, UnixTime(now)) {
                Ok(next) => {
                    *g = next;
                    passed += 1;
                }
                Err(retry) => refused = Some(retry),
            }
        }
        (passed, refused)
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(rl("600/min"), RateLimit { limit: 600, per_secs: 60 });
        assert_eq!(rl("10/s"), RateLimit { limit: 10, per_secs: 1 });
        assert_eq!(rl("100/60s"), RateLimit { limit: 100, per_secs: 60 });
        assert_eq!(rl("5000/h"), RateLimit { limit: 5000, per_secs: 3_600 });
        assert_eq!(rl("5000/hour"), rl("5000/h"));
        assert_eq!(rl("1/sec"), rl("1/s"));
        assert_eq!(rl("3/m"), rl("3/min"));
        assert_eq!(rl("7/5min"), RateLimit { limit: 7, per_secs: 300 });
        assert_eq!(rl("1000/day"), RateLimit { limit: 1000, per_secs: 86_400 });
        assert_eq!(rl(" 0/s "), RateLimit { limit: 0, per_secs: 1 });
        assert_eq!("600/min".parse::<RateLimit>(), Ok(rl("600/min")));
    }

    #[test]
    fn display_round_trips() {
        for s in ["600/min", "10/s", "100/60s", "5000/h", "0/1s", "7/5min"] {
            let limit = rl(s);
            assert_eq!(rl(&limit.to_string()), limit, "{s}");
        }
        assert_eq!(rl("600/min").to_string(), "600/60s");
    }

    #[test]
    fn refuses_malformed_limits() {
        for s in ["", "600", "/min", "600/", "-1/s", "+5/s", "1.5/s", "5/60", "a/s"] {
            assert!(matches!(RateLimit::parse(s), Err(RateLimitError::Syntax { .. })), "{s:?}");
        }
        assert_eq!(
            RateLimit::parse("5/week"),
            Err(RateLimitError::BadUnit { value: "5/week".into(), unit: "week".into() })
        );
        assert!(matches!(RateLimit::parse("5/s s"), Err(RateLimitError::BadUnit { .. })));
        assert!(matches!(RateLimit::parse("5/s/s"), Err(RateLimitError::BadUnit { .. })));
        assert!(matches!(RateLimit::parse("5/0s"), Err(RateLimitError::ZeroPeriod { .. })));
        assert!(matches!(RateLimit::parse("99999999999999999999/s"), Err(RateLimitError::TooLarge { .. })));
        assert!(matches!(RateLimit::parse("1/99999999999999999d"), Err(RateLimitError::TooLarge { .. })));
        assert_eq!(
            RateLimit::parse("fast").unwrap_err().to_string(),
            "`fast` is not a rate limit: write `<count>/<period>`, e.g. `600/min`, `10/s` or `100/60s`"
        );
    }

    #[test]
    fn a_burst_of_exactly_limit_then_wait_one_interval() {
        // 5 per minute: T = 12 s.
        let limit = rl("5/min");
        let mut g = Gcra::default();
        assert_eq!(burst(&mut g, limit, T0, 8), (5, Some(12)));
        assert_eq!(g.check(limit, UnixTime(T0 + 11)), Err(1));
        assert_eq!(burst(&mut g, limit, T0 + 12, 2), (1, Some(12)));
        // Idle for a whole period: the full burst is back.
        assert_eq!(burst(&mut g, limit, T0 + 12 + 60, 6).0, 5);
    }

    #[test]
    fn sub_second_intervals_and_uneven_division() {
        // 10 per second: ten at once, then ten more the next second.
        let ten = rl("10/s");
        let mut g = Gcra::default();
        assert_eq!(burst(&mut g, ten, T0, 11), (10, Some(1)));
        assert_eq!(burst(&mut g, ten, T0 + 1, 11), (10, Some(1)));
        // 3 per second does not divide a second evenly; the burst is still exactly 3, and
        // over 1000 seconds of saturation at most 3 per second pass.
        let three = rl("3/s");
        let mut g = Gcra::default();
        assert_eq!(burst(&mut g, three, T0, 5).0, 3);
        let passed: u64 = (1..=1000).map(|s| burst(&mut g, three, T0 + s, 5).0).sum();
        assert_eq!(passed, 3_000);
    }

    #[test]
    fn a_changed_limit_carries_the_state_over() {
        let mut g = Gcra::default();
        assert!(g.idle(UnixTime(T0)));
        assert_eq!(burst(&mut g, rl("4/min"), T0, 4).0, 4);
        assert!(!g.idle(UnixTime(T0)));
        // Four used of a minute's allowance of 4: tat is a minute ahead. Under 6/min the
        // tolerance is 50 s, so the next request waits 10 s.
        assert_eq!(g.check(rl("6/min"), UnixTime(T0)), Err(10));
        assert_eq!(burst(&mut g, rl("6/min"), T0 + 10, 3).0, 1);
        assert!(g.idle(UnixTime(T0 + 70)));
        assert!((g.tat - (T0 + 70) as f64).abs() < 1e-6, "{}", g.tat);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let huge = RateLimit { limit: u64::MAX, per_secs: u64::MAX };
        let one = RateLimit { limit: 1, per_secs: u64::MAX };
        for now in [i64::MIN, -1, 0, T0, i64::MAX] {
            for limit in [huge, one, rl("1/s")] {
                let mut g = Gcra::default();
                for _ in 0..3 {
                    if let Ok(next) = g.check(limit, UnixTime(now)) {
                        g = next;
                    }
                }
                let _ = g.idle(UnixTime(now));
                let _ = g.check(huge, UnixTime(now));
            }
        }
        let g = Gcra::default().check(one, UnixTime(T0)).unwrap();
        assert_eq!(g.check(one, UnixTime(T0)), Err(u64::MAX));
    }

    #[test]
    fn zero_allows_nothing() {
        let g = Gcra::default();
        assert_eq!(g.check(rl("0/min"), UnixTime(T0)), Err(60));
        assert_eq!(g.check(RateLimit { limit: 1, per_secs: 0 }, UnixTime(T0)).map(|_| ()), Ok(()));
    }
}
