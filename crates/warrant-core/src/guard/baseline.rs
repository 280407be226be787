//! What an agent normally does, learned online from its own allowed actions.
//!
//! A [`Baseline`] is kept per agent. Every request that reaches the guardrails is
//! [assessed](Baseline::assess) against it before the policy decides, and every decision
//! is [recorded](Baseline::record) once known. Only allowed requests teach the baseline
//! (which actions, which resource prefixes, which hours of the day), so an agent cannot
//! make a probe look normal by repeating it until it is denied often enough.
//!
//! While the baseline is still learning (too few allowed decisions, or too young) it
//! raises no signal except [`SignalKind::DenyStreak`], which needs no history.
//!
//! Real agents are not steady, so the baseline does not compare them to a steady mean:
//!
//! * Rates ([`WindowRate`]) are compared with what the agent does **when it is active**:
//!   a batch job's 25 calls every few minutes are its normal, not a spike over the idle
//!   windows between batches. The gap between active windows (the period of a periodic
//!   job) is learned too and shown with the figures.
//! * A deny streak counts **distinct** refused requests: a retry loop sending the same
//!   refused request again and again is one refusal, probing with varied requests is many.
//! * Novelty is weighed: a sensitive action costs more, the second and third novel
//!   request within the novelty window cost twice and three times as much (a stolen
//!   warrant tries many new things at once, a growing agent one now and then), and the
//!   novelty an owner announced with a deploy costs nothing while its grace period lasts.
//! * The hours of the day are known only after a week: off-hours activity is not
//!   signalled before.
//!
//! Every signal carries the figures that triggered it ([`Figures`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::signal::{Figures, Signal, SignalKind};
use crate::time::UnixTime;

/// After a gap, at most this many empty windows are folded into a rate one by one; a
/// longer gap decays the rate by exactly this many empty windows (which leaves nothing
/// measurable of it at any sensible `alpha`).
pub const MAX_EMPTY_WINDOWS: u64 = 1000;

/// Closed windows, and closed active windows, a [`WindowRate`] must have seen before it
/// can call a spike.
pub const MIN_WINDOWS: u64 = 3;

/// The most distinct refused requests a deny streak tells apart; beyond them every
/// refusal counts as a new one.
pub const MAX_STREAK_KEYS: usize = 64;

/// The most novel requests remembered for the novelty window.
pub const MAX_RECENT_NOVEL: usize = 32;

/// The most a novelty signal's factor grows with the novel requests before it.
pub const MAX_NOVELTY_FACTOR: f64 = 10.0;

/// How baselines learn and when they signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineConfig {
    /// With fewer allowed decisions than this, the baseline is still learning.
    pub learning_decisions: u64,
    /// Younger than this (seconds since its first observation), the baseline is still
    /// learning. It learns while either this or `learning_decisions` holds.
    pub learning_secs: i64,
    /// The length of a rate window, in seconds.
    pub window_secs: i64,
    /// The weight of a closed window in the moving mean and variance, in (0, 1].
    pub alpha: f64,
    /// How many standard deviations above the mean a window's count must be to spike.
    pub rate_sigmas: f64,
    /// A window with fewer requests than this is never a rate spike.
    pub rate_min: u64,
    /// This many consecutive scope or policy denies raise a deny-streak signal, and again
    /// at every further multiple. 0 disables the signal.
    pub deny_streak: u32,
    /// A window with fewer delegations than this is never a delegation burst.
    pub burst_min: u64,
    /// The most distinct actions, and the most distinct resource prefixes, remembered.
    /// Once a map is full, new keys are neither learned nor signalled as novel: an agent
    /// that has already done this many different things has no meaningful "new".
    pub max_keys: usize,
    /// Off-hours activity is signalled only once the baseline is this old (seconds): the
    /// hours of an agent's week are not known after a day.
    pub hours_learning_secs: i64,
    /// The novelty window, in seconds: the n-th novel request within it weighs n times.
    pub novelty_window_secs: i64,
    /// Sensitive actions: `crm.export`, `payments.*` (a prefix), `*.delete` (a suffix) or
    /// `*`. A novelty on a sensitive action weighs `sensitive_factor` times more, and an
    /// announced deploy does not explain it.
    pub sensitive: Vec<String>,
    /// How much more a novelty on a sensitive action weighs.
    pub sensitive_factor: f64,
    /// How long after the owner announces a deploy its new actions and resource prefixes
    /// are expected (seconds).
    pub deploy_grace_secs: i64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            learning_decisions: 100,
            learning_secs: 600,
            window_secs: 10,
            alpha: 0.1,
            rate_sigmas: 4.0,
            rate_min: 20,
            deny_streak: 5,
            burst_min: 5,
            max_keys: 512,
            hours_learning_secs: 7 * 86_400,
            novelty_window_secs: 3_600,
            sensitive: ["*.delete", "*.export", "*.admin", "payments.*", "iam.*"].map(str::to_owned).to_vec(),
            sensitive_factor: 3.0,
            deploy_grace_secs: 86_400,
        }
    }
}

/// Why a [`BaselineConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineConfigError {
    /// A setting is out of its range.
    #[error("baseline setting `{field}` must be {expected}, not `{value}`")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its valid range, in words.
        expected: &'static str,
        /// The value given.
        value: String,
    },
}

impl BaselineConfig {
    /// Checks the ranges: `window_secs` at least 1, `learning_secs` not negative, `alpha`
    /// in (0, 1] and `rate_sigmas` finite and not negative.
    pub fn validate(&self) -> Result<(), BaselineConfigError> {
        let bad = |field, expected, value: String| Err(BaselineConfigError::OutOfRange { field, expected, value });
        if self.window_secs < 1 {
            return bad("window_secs", "at least 1", self.window_secs.to_string());
        }
        if self.learning_secs < 0 {
            return bad("learning_secs", "at least 0", self.learning_secs.to_string());
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return bad("alpha", "greater than 0 and at most 1", self.alpha.to_string());
        }
        if !(self.rate_sigmas.is_finite() && self.rate_sigmas >= 0.0) {
            return bad("rate_sigmas", "a finite number, at least 0", self.rate_sigmas.to_string());
        }
        if !(self.sensitive_factor.is_finite() && self.sensitive_factor >= 0.0) {
            return bad("sensitive_factor", "a finite number, at least 0", self.sensitive_factor.to_string());
        }
        for (field, value) in [
            ("hours_learning_secs", self.hours_learning_secs),
            ("novelty_window_secs", self.novelty_window_secs),
            ("deploy_grace_secs", self.deploy_grace_secs),
        ] {
            if value < 0 {
                return bad(field, "at least 0", value.to_string());
            }
        }
        if let Some(bad_pattern) = self.sensitive.iter().find(|p| !valid_pattern(p)) {
            return bad(
                "sensitive",
                "action patterns like `crm.export`, `payments.*` or `*.delete`",
                bad_pattern.clone(),
            );
        }
        Ok(())
    }

    /// Whether `action` matches one of the [`sensitive`](Self::sensitive) patterns.
    pub fn is_sensitive(&self, action: &str) -> bool {
        self.sensitive.iter().any(|p| pattern_matches(p, action))
    }

    /// The window length, at least one second whatever the configuration says.
    fn window(&self) -> i64 {
        self.window_secs.max(1)
    }

    /// `alpha` forced into [0, 1] (0.1 when it is not a number).
    fn alpha(&self) -> f64 {
        if self.alpha.is_nan() {
            0.1
        } else {
            self.alpha.clamp(0.0, 1.0)
        }
    }

    /// `rate_sigmas`, not negative (4 when it is not a number).
    fn sigmas(&self) -> f64 {
        if self.rate_sigmas.is_nan() {
            4.0
        } else {
            self.rate_sigmas.max(0.0)
        }
    }
}

/// Whether `pattern` is an action pattern [`BaselineConfig::sensitive`] accepts: `*`,
/// an action, `prefix.*` or `*.suffix`, with no other `*`.
fn valid_pattern(pattern: &str) -> bool {
    let core = pattern.strip_suffix(".*").or_else(|| pattern.strip_prefix("*.")).unwrap_or(pattern);
    pattern == "*" || (!core.is_empty() && !core.contains('*'))
}

/// Whether `action` matches `pattern` (see [`valid_pattern`]).
fn pattern_matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        return action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'));
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return action.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.'));
    }
    pattern == action
}

/// A request's identity for telling a retry from a new request: a 64-bit FNV-1a hash of
/// its action and resource.
pub fn request_key(action: &str, resource: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in action.bytes().chain([0u8]).chain(resource.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An exponentially weighted moving mean and variance of counts per window, with the
/// window being filled.
///
/// Windows are `window_secs` long and start at the time the rate was created; every
/// window counts, including the empty ones between two events. The first closed window
/// seeds the mean (so a young rate is not biased towards zero); later ones move it by
/// `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRate {
    /// The moving mean of the count per closed window.
    pub mean: f64,
    /// The moving variance of the count per closed window.
    pub var: f64,
    /// How many windows have closed.
    pub windows: u64,
    /// When the window being filled started.
    pub window_start: UnixTime,
    /// Events in the window being filled.
    pub count: u64,
    /// Whether a spike was already reported in the window being filled.
    pub flagged: bool,
    /// The usual count of the windows that were active (held at least one event): what
    /// the agent does when it works, whatever it does between.
    #[serde(default)]
    pub active: Moving,
    /// The usual gap between the starts of two active windows that had idle windows
    /// between them, in seconds: the period of a periodic job.
    #[serde(default)]
    pub gap: Moving,
    /// When the last active window started.
    #[serde(default)]
    pub last_active: Option<UnixTime>,
    /// In a window already flagged, the count at which it is flagged again (for rates
    /// that flag at every doubling); 0 when not flagged.
    #[serde(default)]
    pub again_at: u64,
}

/// An exponentially weighted moving mean and variance of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moving {
    /// The moving mean.
    pub mean: f64,
    /// The moving variance.
    pub var: f64,
    /// How many values were folded in.
    pub n: u64,
}

impl Moving {
    /// Folds in `x` with weight `alpha` (the first value seeds the mean).
    pub fn fold(&mut self, alpha: f64, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n = self.n.saturating_add(1);
    }

    /// The mean plus `sigmas` times the largest of the standard deviation, the square
    /// root of the mean (the spread of a Poisson count) and 1.
    pub fn threshold(&self, sigmas: f64) -> f64 {
        let spread = self.var.max(0.0).sqrt().max(self.mean.max(0.0).sqrt()).max(1.0);
        self.mean + sigmas * spread
    }
}

impl WindowRate {
    /// A rate with no history whose first window starts at `now`.
    pub fn new(now: UnixTime) -> Self {
        WindowRate {
            mean: 0.0,
            var: 0.0,
            windows: 0,
            window_start: now,
            count: 0,
            flagged: false,
            active: Moving::default(),
            gap: Moving::default(),
            last_active: None,
            again_at: 0,
        }
    }

    /// The mean and variance over every closed window, idle ones included.
    fn all(&self) -> Moving {
        Moving { mean: self.mean, var: self.var, n: self.windows }
    }

    /// Folds one closed window holding `x` events into the mean and variance.
    fn fold(&mut self, alpha: f64, x: f64) {
        let mut all = self.all();
        all.fold(alpha, x);
        (self.mean, self.var, self.windows) = (all.mean, all.var, all.n);
    }

    /// Rolls forward to the window holding `now`: the window being filled and every
    /// empty window after it (at most [`MAX_EMPTY_WINDOWS`] of them) are folded into the
    /// mean and variance. A `now` inside the current window, or before it, changes nothing.
    pub fn roll(&mut self, cfg: &BaselineConfig, now: UnixTime) {
        let w = cfg.window();
        let elapsed = self.window_start.until(now);
        if elapsed < w {
            return;
        }
        let closed = elapsed / w;
        let alpha = cfg.alpha();
        #[expect(clippy::cast_precision_loss, reason = "counts per window are far below 2^52")]
        let count = self.count as f64;
        self.fold(alpha, count);
        if self.count > 0 {
            self.active.fold(alpha, count);
            if let Some(last) = self.last_active {
                let gap = last.until(self.window_start);
                // Only gaps with idle windows in them: back-to-back windows are one run.
                if gap > w {
                    #[expect(clippy::cast_precision_loss, reason = "seconds far below 2^52 are exact")]
                    self.gap.fold(alpha, gap as f64);
                }
            }
            self.last_active = Some(self.window_start);
        }
        let empty = u64::try_from(closed.saturating_sub(1)).unwrap_or(0);
        let folded = empty.min(MAX_EMPTY_WINDOWS);
        for _ in 0..folded {
            self.fold(alpha, 0.0);
        }
        self.windows = self.windows.saturating_add(empty - folded);
        self.window_start = self.window_start.plus(closed.saturating_mul(w));
        self.count = 0;
        self.flagged = false;
        self.again_at = 0;
    }

    /// The count above which the window being filled is a spike: the usual count of an
    /// active window plus `rate_sigmas` times its spread (the largest of its standard
    /// deviation, the square root of its mean and 1), and never below the same figure
    /// over every window, idle ones included.
    pub fn threshold(&self, cfg: &BaselineConfig) -> f64 {
        self.all().threshold(cfg.sigmas()).max(self.active.threshold(cfg.sigmas()))
    }

    /// Adds one event at `now` to its window and returns true the first time in that
    /// window that the count is a spike: at least `min`, above [`threshold`](Self::threshold),
    /// with at least [`MIN_WINDOWS`] closed windows and as many closed active ones known.
    pub fn add(&mut self, cfg: &BaselineConfig, min: u64, now: UnixTime) -> bool {
        self.roll(cfg, now);
        self.count = self.count.saturating_add(1);
        if self.flagged || self.windows < MIN_WINDOWS || self.active.n < MIN_WINDOWS || self.count < min {
            return false;
        }
        #[expect(clippy::cast_precision_loss, reason = "counts per window are far below 2^52")]
        let spike = self.count as f64 > self.threshold(cfg);
        if spike {
            self.flagged = true;
            self.again_at = self.count.saturating_mul(2);
        }
        spike
    }

    /// Like [`add`](Self::add), and in a window already flagged, flags it again each time
    /// its count doubles: a burst ten times the threshold is several signals, not one.
    pub fn add_doubling(&mut self, cfg: &BaselineConfig, min: u64, now: UnixTime) -> bool {
        if self.add(cfg, min, now) {
            return true;
        }
        if self.flagged && self.again_at > 0 && self.count >= self.again_at {
            self.again_at = self.count.saturating_mul(2);
            return true;
        }
        false
    }
}

/// One agent's behaviour, as learned from its allowed actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// When the agent was first observed.
    pub since: UnixTime,
    /// How many of its requests were allowed.
    pub allowed: u64,
    /// Allowed requests per action.
    pub actions: BTreeMap<String, u64>,
    /// Allowed requests per [resource prefix](resource_prefix).
    pub prefixes: BTreeMap<String, u64>,
    /// Allowed requests per hour of the day (UTC).
    pub hours: [u64; 24],
    /// Requests (allowed or not) per window.
    pub rate: WindowRate,
    /// Delegations made by the agent per window.
    pub fanout: WindowRate,
    /// Consecutive distinct scope or policy denies since the last allowed request (the
    /// same refused request again is a retry, not another probe).
    pub deny_streak: u32,
    /// The [request keys](request_key) of the streak's refused requests.
    #[serde(default)]
    pub streak_keys: Vec<u64>,
    /// When the recent novel requests were assessed (newest last).
    #[serde(default)]
    pub novel_at: Vec<UnixTime>,
    /// The latest deploy the owner announced.
    #[serde(default)]
    pub deploy: Option<Deploy>,
}

/// A deploy the owner announced: new tools and resources are expected for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    /// What was deployed (a version, a tag), as the owner named it.
    pub version: String,
    /// When it was announced.
    pub at: UnixTime,
    /// Until when its novelty is expected.
    pub until: UnixTime,
}

/// The hour of the day (UTC) of `t`, 0 to 23.
fn hour_of(t: UnixTime) -> usize {
    usize::try_from(t.secs().rem_euclid(86_400) / 3_600).unwrap_or(0)
}

/// Whether `key` is new to `seen`, which is not yet full.
fn novel(seen: &BTreeMap<String, u64>, key: &str, max_keys: usize) -> bool {
    !seen.contains_key(key) && seen.len() < max_keys
}

/// Counts `key` in `seen`, adding it only while fewer than `max_keys` keys are known.
fn learn(seen: &mut BTreeMap<String, u64>, key: &str, max_keys: usize) {
    if let Some(n) = seen.get_mut(key) {
        *n = n.saturating_add(1);
    } else if seen.len() < max_keys {
        seen.insert(key.to_owned(), 1);
    }
}

impl Baseline {
    /// An empty baseline for an agent first observed at `now`.
    pub fn new(now: UnixTime) -> Self {
        Baseline {
            since: now,
            allowed: 0,
            actions: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            hours: [0; 24],
            rate: WindowRate::new(now),
            fanout: WindowRate::new(now),
            deny_streak: 0,
            streak_keys: Vec::new(),
            novel_at: Vec::new(),
            deploy: None,
        }
    }

    /// The owner announced a deploy of `version` at `now`: for `deploy_grace_secs`, new
    /// actions and resource prefixes that are not sensitive cost no trust (they are still
    /// signalled, with the deploy in their figures).
    pub fn announce_deploy(&mut self, cfg: &BaselineConfig, version: &str, now: UnixTime) {
        self.deploy = Some(Deploy { version: version.to_owned(), at: now, until: now.plus(cfg.deploy_grace_secs) });
    }

    /// The announced deploy whose grace period holds at `now`.
    pub fn deploy_at(&self, now: UnixTime) -> Option<&Deploy> {
        self.deploy.as_ref().filter(|d| d.at <= now && now < d.until)
    }

    /// Counts a novel request at `now` and returns how many there were in the novelty
    /// window, this one included.
    fn note_novel(&mut self, cfg: &BaselineConfig, now: UnixTime) -> u32 {
        let from = now.plus(-cfg.novelty_window_secs);
        self.novel_at.retain(|&t| t > from);
        if self.novel_at.len() >= MAX_RECENT_NOVEL {
            self.novel_at.remove(0);
        }
        self.novel_at.push(now);
        u32::try_from(self.novel_at.len()).unwrap_or(u32::MAX)
    }

    /// Whether the baseline is still learning at `now`: fewer than `learning_decisions`
    /// allowed, or younger than `learning_secs`.
    pub fn learning(&self, cfg: &BaselineConfig, now: UnixTime) -> bool {
        self.allowed < cfg.learning_decisions || self.since.until(now) < cfg.learning_secs
    }

    /// Assesses a request that reached the guardrails, before the policy decides.
    ///
    /// It counts the request in the rate window and returns the signals it raises: a
    /// [`NovelAction`](SignalKind::NovelAction) (the action was never allowed before), a
    /// [`NovelResource`](SignalKind::NovelResource) (nor the [resource prefix](resource_prefix);
    /// an empty resource has none), a [`RateSpike`](SignalKind::RateSpike) (at most once
    /// per window) and [`OffHours`](SignalKind::OffHours) (nothing was allowed at this hour
    /// of the day, UTC, in a baseline at least `hours_learning_secs` old). While learning,
    /// it returns none. It learns nothing but the rate and the novelty window: the action,
    /// prefix and hour are learned when [recorded](Self::record) as allowed.
    ///
    /// A novel request's signals weigh (their [factor](Signal::factor)) as many times as
    /// there were novel requests in the novelty window, this one included (at most
    /// [`MAX_NOVELTY_FACTOR`]), times `sensitive_factor` for a sensitive action; during an
    /// announced deploy's grace period, the novelty of an action that is not sensitive
    /// weighs nothing and is not counted.
    pub fn assess(&mut self, cfg: &BaselineConfig, action: &str, resource: &str, now: UnixTime) -> Vec<Signal> {
        let spike = self.rate.add(cfg, cfg.rate_min, now);
        if self.learning(cfg, now) {
            return Vec::new();
        }
        let mut signals = Vec::new();
        let allowed = self.allowed;
        let prefix = resource_prefix(resource);
        let novel_action = novel(&self.actions, action, cfg.max_keys);
        let novel_prefix = !prefix.is_empty() && novel(&self.prefixes, prefix, cfg.max_keys);
        if novel_action || novel_prefix {
            let sensitive = cfg.is_sensitive(action);
            let deploy = self.deploy_at(now).filter(|_| !sensitive).map(|d| d.version.clone());
            let (recent, factor) = if deploy.is_some() {
                (None, 0.0)
            } else {
                let n = self.note_novel(cfg, now);
                let weight = f64::from(n).min(MAX_NOVELTY_FACTOR) * if sensitive { cfg.sensitive_factor } else { 1.0 };
                (Some(n), weight)
            };
            let figures = |known: usize| Figures {
                allowed: Some(allowed),
                known: u64::try_from(known).ok(),
                recent_novel: recent,
                sensitive,
                deploy: deploy.clone(),
                ..Figures::default()
            };
            let why = match (&deploy, recent) {
                (Some(version), _) => format!(" (expected after deploy `{version}`)"),
                (None, Some(n)) if n > 1 => format!(" ({n} novel requests in {} s)", cfg.novelty_window_secs),
                _ => String::new(),
            };
            let novelties = [
                (novel_action, SignalKind::NovelAction, "action", action, self.actions.len()),
                (novel_prefix, SignalKind::NovelResource, "resource prefix", prefix, self.prefixes.len()),
            ];
            for (_, kind, what, key, known) in novelties.into_iter().filter(|n| n.0) {
                signals.push(
                    Signal::new(kind, format!("{what} `{key}` never seen in {allowed} allowed decisions{why}"))
                        .with(figures(known))
                        .weighing(factor),
                );
            }
        }
        if spike {
            signals.push(spike_signal(&self.rate, cfg, SignalKind::RateSpike, "requests"));
        }
        let hour = hour_of(now);
        let week_old = self.since.until(now) >= cfg.hours_learning_secs;
        if week_old && self.hours.get(hour).is_some_and(|&n| n == 0) {
            signals.push(
                Signal::new(
                    SignalKind::OffHours,
                    format!(
                        "activity at {hour:02}:00-{hour:02}:59 UTC, an hour never seen in {allowed} allowed decisions"
                    ),
                )
                .with(Figures { allowed: Some(allowed), ..Figures::default() }),
            );
        }
        signals
    }

    /// Records the decision on a request once it is known.
    ///
    /// * Allowed: learns the action, the resource prefix and the hour (each map holds at
    ///   most `max_keys` distinct keys), counts the decision and ends any deny streak.
    ///   Returns no signal.
    /// * Denied by scope or policy (`probing`): extends the deny streak unless the same
    ///   action on the same resource was already refused in it (a retry), and returns a
    ///   [`DenyStreak`](SignalKind::DenyStreak) signal whenever its length is a multiple of
    ///   `deny_streak`, learning or not.
    /// * Denied otherwise (rate limit, budget, quarantine…): changes nothing.
    pub fn record(
        &mut self,
        cfg: &BaselineConfig,
        action: &str,
        resource: &str,
        allowed: bool,
        probing: bool,
        now: UnixTime,
    ) -> Vec<Signal> {
        if allowed {
            learn(&mut self.actions, action, cfg.max_keys);
            let prefix = resource_prefix(resource);
            if !prefix.is_empty() {
                learn(&mut self.prefixes, prefix, cfg.max_keys);
            }
            if let Some(n) = self.hours.get_mut(hour_of(now)) {
                *n = n.saturating_add(1);
            }
            self.allowed = self.allowed.saturating_add(1);
            self.deny_streak = 0;
            self.streak_keys.clear();
            return Vec::new();
        }
        if !probing {
            return Vec::new();
        }
        let key = request_key(action, resource);
        if self.streak_keys.contains(&key) {
            // The same refused request again: a retry, not another probe.
            return Vec::new();
        }
        if self.streak_keys.len() < MAX_STREAK_KEYS {
            self.streak_keys.push(key);
        }
        self.deny_streak = self.deny_streak.saturating_add(1);
        if cfg.deny_streak > 0 && self.deny_streak.is_multiple_of(cfg.deny_streak) {
            vec![Signal::new(
                SignalKind::DenyStreak,
                format!("{} consecutive scope or policy denies of distinct requests", self.deny_streak),
            )
            .with(Figures {
                observed: Some(f64::from(self.deny_streak)),
                threshold: Some(f64::from(cfg.deny_streak)),
                ..Figures::default()
            })]
        } else {
            Vec::new()
        }
    }

    /// Records a delegation made by this agent (it held the parent warrant) in the
    /// fan-out window. Returns a [`DelegationBurst`](SignalKind::DelegationBurst) signal
    /// the first time in a window that the count spikes (at least `burst_min`), and again
    /// each time the window's count doubles after that, never while learning.
    pub fn record_delegation(&mut self, cfg: &BaselineConfig, now: UnixTime) -> Vec<Signal> {
        let spike = self.fanout.add_doubling(cfg, cfg.burst_min, now);
        if !spike || self.learning(cfg, now) {
            return Vec::new();
        }
        vec![spike_signal(&self.fanout, cfg, SignalKind::DelegationBurst, "delegations")]
    }
}

/// The signal of a spike in `rate`, with its figures: the window's count against the
/// usual count of an active window, the threshold and, for a periodic agent, its period.
fn spike_signal(rate: &WindowRate, cfg: &BaselineConfig, kind: SignalKind, what: &str) -> Signal {
    let threshold = rate.threshold(cfg);
    let period =
        if rate.gap.n >= MIN_WINDOWS { format!(", usually every {:.0} s", rate.gap.mean) } else { String::new() };
    Signal::new(
        kind,
        format!(
            "{} {what} in {}s against a usual {:.1} when active (threshold {:.1}{period})",
            rate.count,
            cfg.window(),
            rate.active.mean,
            threshold
        ),
    )
    .with(Figures {
        #[expect(clippy::cast_precision_loss, reason = "counts per window are far below 2^52")]
        observed: Some(rate.count as f64),
        usual: Some(rate.active.mean),
        threshold: Some(threshold),
        window_secs: Some(cfg.window()),
        ..Figures::default()
    })
}

/// The prefix of a resource that a baseline learns: its parent path, at most two
/// segments deep; a one-segment path is its own prefix.
///
/// `customers/42` → `customers`, `tickets/acme/123` → `tickets/acme`, `a/b/c/d` → `a/b`,
/// `reports` → `reports`.
pub fn resource_prefix(resource: &str) -> &str {
    let mut slashes = resource.match_indices('/').map(|(i, _)| i);
    match (slashes.next(), slashes.next()) {
        (None, _) => resource,
        (Some(end), None) | (Some(_), Some(end)) => resource.get(..end).unwrap_or(resource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Midnight UTC, 2023-11-14.
    const DAY0: i64 = 19_675 * 86_400;

    fn kinds(signals: &[Signal]) -> Vec<SignalKind> {
        signals.iter().map(|s| s.kind).collect()
    }

    /// Drives `windows` windows of `per_window` allowed `crm.read` requests on
    /// `customers/…` from `start`; returns the start of the next window.
    fn train(b: &mut Baseline, cfg: &BaselineConfig, start: i64, windows: i64, per_window: i64) -> i64 {
        for w in 0..windows {
            for i in 0..per_window {
                let t = UnixTime(start + w * cfg.window_secs + i * cfg.window_secs / per_window);
                let signals = b.assess(cfg, "crm.read", &format!("customers/{i}"), t);
                assert!(signals.is_empty(), "training raised {signals:?}");
                assert!(b.record(cfg, "crm.read", &format!("customers/{i}"), true, false, t).is_empty());
            }
        }
        start + windows * cfg.window_secs
    }

    /// A baseline past learning: 70 windows (700 s) of 3 requests each (210 allowed).
    fn trained(cfg: &BaselineConfig) -> (Baseline, i64) {
        let mut b = Baseline::new(UnixTime(DAY0));
        let next = train(&mut b, cfg, DAY0, 70, 3);
        assert!(!b.learning(cfg, UnixTime(next)));
        (b, next)
    }

    #[test]
    fn learning_lasts_for_both_decisions_and_time() {
        let cfg = BaselineConfig::default();
        let mut b = Baseline::new(UnixTime(DAY0));
        for _ in 0..100 {
            b.record(&cfg, "crm.read", "customers/1", true, false, UnixTime(DAY0));
        }
        assert!(b.learning(&cfg, UnixTime(DAY0 + 599)), "too young");
        assert!(!b.learning(&cfg, UnixTime(DAY0 + 600)));
        let young = Baseline::new(UnixTime(DAY0));
        assert!(young.learning(&cfg, UnixTime(DAY0 + 100_000)), "too few decisions");
    }

    #[test]
    fn novelty_only_after_learning_and_learned_only_when_allowed() {
        let cfg = BaselineConfig::default();
        let mut young = Baseline::new(UnixTime(DAY0));
        train(&mut young, &cfg, DAY0, 5, 3);
        assert!(young.assess(&cfg, "payments.send", "invoices/1", UnixTime(DAY0 + 50)).is_empty());

        let (mut b, t) = trained(&cfg);
        let now = UnixTime(t);
        let first = b.assess(&cfg, "payments.send", "invoices/1", now);
        assert_eq!(kinds(&first), [SignalKind::NovelAction, SignalKind::NovelResource]);
        assert_eq!(first[0].detail, "action `payments.send` never seen in 210 allowed decisions");
        assert_eq!(first[1].detail, "resource prefix `invoices` never seen in 210 allowed decisions");
        // Assessing does not learn, and neither does a deny.
        assert_eq!(kinds(&b.assess(&cfg, "payments.send", "invoices/2", now)).len(), 2);
        b.record(&cfg, "payments.send", "invoices/2", false, true, now);
        assert_eq!(kinds(&b.assess(&cfg, "payments.send", "invoices/3", now)).len(), 2);
        // A known prefix with a new leaf is not novel.
        assert_eq!(kinds(&b.assess(&cfg, "payments.send", "customers/999", now)), [SignalKind::NovelAction]);
        // Once allowed, both are known.
        b.record(&cfg, "payments.send", "invoices/3", true, false, now);
        assert!(b.assess(&cfg, "payments.send", "invoices/4", now).is_empty());
    }

    #[test]
    fn beyond_the_key_cap_nothing_is_novel_or_learned() {
        let cfg = BaselineConfig { max_keys: 2, ..BaselineConfig::default() };
        let (mut b, t) = trained(&cfg);
        let now = UnixTime(t);
        assert_eq!(kinds(&b.assess(&cfg, "crm.write", "customers/1", now)), [SignalKind::NovelAction]);
        b.record(&cfg, "crm.write", "customers/1", true, false, now);
        assert_eq!(b.actions.len(), 2);
        assert!(b.assess(&cfg, "payments.send", "customers/1", now).is_empty());
        b.record(&cfg, "payments.send", "customers/1", true, false, now);
        assert_eq!(b.actions.len(), 2, "a full map learns no new key");
        assert_eq!(b.actions["crm.write"], 1);
    }

    #[test]
    fn off_hours_until_an_allow_at_that_hour() {
        let cfg = BaselineConfig { hours_learning_secs: 0, ..BaselineConfig::default() };
        let (mut b, _) = trained(&cfg);
        let five = UnixTime(DAY0 + 5 * 3_600 + 10);
        let signals = b.assess(&cfg, "crm.read", "customers/1", five);
        assert_eq!(kinds(&signals), [SignalKind::OffHours]);
        assert!(signals[0].detail.starts_with("activity at 05:00-05:59 UTC"), "{}", signals[0].detail);
        b.record(&cfg, "crm.read", "customers/1", true, false, five);
        assert!(b.assess(&cfg, "crm.read", "customers/1", five.plus(1_000)).is_empty());
        // The next day, same hour: still known.
        assert!(b.assess(&cfg, "crm.read", "customers/1", five.plus(86_400)).is_empty());
    }

    #[test]
    fn the_hours_of_the_day_are_known_only_after_a_week() {
        let cfg = BaselineConfig::default();
        let (mut b, _) = trained(&cfg);
        // Six days in, a new hour is not signalled: a week's hours are still being learned.
        let day6 = UnixTime(DAY0 + 6 * 86_400 + 5 * 3_600);
        assert!(b.assess(&cfg, "crm.read", "customers/1", day6).is_empty());
        let day8 = UnixTime(DAY0 + 8 * 86_400 + 6 * 3_600);
        assert_eq!(kinds(&b.assess(&cfg, "crm.read", "customers/1", day8)), [SignalKind::OffHours]);
    }

    #[test]
    fn rate_spike_after_learning_once_per_window() {
        let cfg = BaselineConfig::default();
        let (mut b, t) = trained(&cfg);
        let mut spikes = Vec::new();
        for i in 0..60 {
            let signals = b.assess(&cfg, "crm.read", "customers/1", UnixTime(t + i % 10));
            spikes.extend(signals.into_iter().filter(|s| s.kind == SignalKind::RateSpike));
        }
        assert_eq!(spikes.len(), 1, "{spikes:?}");
        assert!(spikes[0].detail.starts_with("20 requests in 10s"), "{}", spikes[0].detail);
        // Twenty requests a window but below the usual rate is not a spike.
        let cfg_busy = BaselineConfig::default();
        let mut busy = Baseline::new(UnixTime(DAY0));
        let next = train(&mut busy, &cfg_busy, DAY0, 70, 30);
        for i in 0..40 {
            let signals = busy.assess(&cfg_busy, "crm.read", "customers/1", UnixTime(next + i % 10));
            assert!(!kinds(&signals).contains(&SignalKind::RateSpike));
        }
    }

    #[test]
    fn no_rate_spike_while_learning() {
        let cfg = BaselineConfig::default();
        let mut b = Baseline::new(UnixTime(DAY0));
        let t = train(&mut b, &cfg, DAY0, 10, 3);
        assert!(b.learning(&cfg, UnixTime(t)));
        for i in 0..100 {
            assert!(b.assess(&cfg, "crm.read", "customers/1", UnixTime(t + i % 10)).is_empty());
        }
    }

    /// A small deterministic generator (SplitMix64), so the test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }

        /// A Poisson draw (Knuth).
        fn poisson(&mut self, lambda: f64) -> u64 {
            let limit = (-lambda).exp();
            let mut k = 0;
            let mut p = self.next_f64();
            while p > limit {
                k += 1;
                p *= self.next_f64();
            }
            k
        }
    }

    /// Spikes raised by 200 windows of Poisson(30) traffic after learning at 30 a window.
    fn steady_run(cfg: &BaselineConfig, seed: u64) -> usize {
        let mut rng = Rng(seed);
        let mut b = Baseline::new(UnixTime(DAY0));
        let start = train(&mut b, cfg, DAY0, 70, 30);
        let mut spikes = 0;
        for w in 0..200 {
            let n = rng.poisson(30.0);
            for i in 0..n {
                let t = UnixTime(start + w * 10 + i64::try_from(i * 10 / n).unwrap());
                let signals = b.assess(cfg, "crm.read", "customers/1", t);
                spikes += signals.iter().filter(|s| s.kind == SignalKind::RateSpike).count();
                b.record(cfg, "crm.read", "customers/1", true, false, t);
            }
        }
        spikes
    }

    /// The false-positive case. At 4 sigmas a Poisson(30) count still passes the
    /// threshold about twice in 10 000 windows (the tail is heavier than a normal one),
    /// so a perfectly steady agent sees a spurious spike every ~14 hours: this checks
    /// that the typical run of 200 windows raises none and the rate stays that low.
    #[test]
    fn steady_poisson_traffic_raises_no_rate_spike() {
        let cfg = BaselineConfig::default();
        let runs: Vec<usize> = (0..100).map(|seed| steady_run(&cfg, seed)).collect();
        assert_eq!(runs[..10], [0; 10]);
        let clean = runs.iter().filter(|&&n| n == 0).count();
        let total: usize = runs.iter().sum();
        assert!(clean >= 90, "only {clean} of 100 steady runs were clean");
        assert!(total <= 10, "{total} false positives in 20 000 steady windows");
    }

    #[test]
    fn deny_streak_at_every_multiple_and_reset_by_an_allow() {
        let cfg = BaselineConfig::default();
        // Works while learning: a brand-new baseline.
        let mut b = Baseline::new(UnixTime(DAY0));
        let now = UnixTime(DAY0);
        let mut n = 0;
        let mut deny = |b: &mut Baseline| {
            n += 1;
            b.record(&cfg, "admin.delete", &format!("users/{n}"), false, true, now)
        };
        let at: Vec<usize> = (1..=10).filter(|_| !deny(&mut b).is_empty()).collect();
        assert_eq!(at, [5, 10]);
        assert_eq!(b.deny_streak, 10);
        // Non-probing denies neither extend nor reset it.
        assert!(b.record(&cfg, "crm.read", "customers/1", false, false, now).is_empty());
        assert_eq!(b.deny_streak, 10);
        let signals: Vec<Signal> = (0..5).flat_map(|_| deny(&mut b)).collect();
        assert_eq!(kinds(&signals), [SignalKind::DenyStreak]);
        assert_eq!(signals[0].detail, "15 consecutive scope or policy denies of distinct requests");
        assert_eq!(signals[0].figures.as_ref().unwrap().observed, Some(15.0));
        // An allow resets it.
        b.record(&cfg, "crm.read", "customers/1", true, false, now);
        assert!((0..4).all(|_| deny(&mut b).is_empty()));
        assert_eq!(kinds(&deny(&mut b)), [SignalKind::DenyStreak]);
    }

    #[test]
    fn a_retried_refusal_is_one_probe_and_varied_refusals_are_many() {
        let cfg = BaselineConfig::default();
        let now = UnixTime(DAY0);
        // A naive retry loop: the same refused request fifteen times, at once.
        let mut retry = Baseline::new(now);
        for i in 0..15 {
            assert!(retry.record(&cfg, "tickets.close", "tickets/acme/7", false, true, now.plus(i)).is_empty());
        }
        assert_eq!(retry.deny_streak, 1);
        // Probing: five different refused requests are a streak.
        let mut probe = Baseline::new(now);
        let raised: Vec<Signal> = ["admin.delete", "iam.grant", "payments.send", "crm.export", "crm.delete"]
            .iter()
            .flat_map(|a| probe.record(&cfg, a, "customers/1", false, true, now))
            .collect();
        assert_eq!(kinds(&raised), [SignalKind::DenyStreak]);
        // The same action on another resource is another request.
        let mut sweep = Baseline::new(now);
        let raised: Vec<Signal> =
            (0..5).flat_map(|i| sweep.record(&cfg, "crm.read", &format!("vault/{i}"), false, true, now)).collect();
        assert_eq!(kinds(&raised), [SignalKind::DenyStreak]);
    }

    #[test]
    fn deny_streak_can_be_disabled() {
        let mut b = Baseline::new(UnixTime(DAY0));
        let off = BaselineConfig { deny_streak: 0, ..BaselineConfig::default() };
        assert!((0..20).all(|_| b.record(&off, "a", "r", false, true, UnixTime(DAY0)).is_empty()));
    }

    #[test]
    fn delegation_burst_after_learning_only() {
        let cfg = BaselineConfig::default();
        let (mut b, t) = trained(&cfg);
        // One delegation per window for a while.
        for w in 0..10 {
            assert!(b.record_delegation(&cfg, UnixTime(t + w * 10)).is_empty());
        }
        let burst_at = t + 100;
        let signals: Vec<Signal> =
            (0..11).flat_map(|i| b.record_delegation(&cfg, UnixTime(burst_at + i % 10))).collect();
        assert_eq!(kinds(&signals), [SignalKind::DelegationBurst]);
        // Twelve is twice the count it was flagged at: flagged again, and at 24, 48, ...
        let again: Vec<Signal> =
            (11..50).flat_map(|i| b.record_delegation(&cfg, UnixTime(burst_at + i % 10))).collect();
        assert_eq!(again.len(), 3, "{again:?}");
        assert!(again[0].detail.starts_with("12 delegations in 10s"), "{}", again[0].detail);
        // One a window when active: five is the threshold (1 + 4 sigmas), six is a burst.
        assert!(signals[0].detail.starts_with("6 delegations in 10s"), "{}", signals[0].detail);

        // Fewer than burst_min in a window never bursts, even from nothing.
        let (mut quiet, t) = trained(&cfg);
        for w in 0..5 {
            assert!(quiet.record_delegation(&cfg, UnixTime(t + w * 10)).is_empty());
        }
        assert!((0..4).all(|i| quiet.record_delegation(&cfg, UnixTime(t + 1_000 + i)).is_empty()));

        // While learning: never.
        let mut young = Baseline::new(UnixTime(DAY0));
        for w in 0..10 {
            young.record_delegation(&cfg, UnixTime(DAY0 + w * 10));
        }
        assert!((0..50).all(|i| young.record_delegation(&cfg, UnixTime(DAY0 + 100 + i % 10)).is_empty()));
    }

    #[test]
    fn empty_windows_decay_the_rate() {
        let cfg = BaselineConfig::default();
        let mut r = WindowRate::new(UnixTime(0));
        for w in 0..20 {
            for i in 0..30 {
                assert!(!r.add(&cfg, cfg.rate_min, UnixTime(w * 10 + i % 10)));
            }
        }
        r.roll(&cfg, UnixTime(200));
        assert_eq!(r.windows, 20);
        assert!((r.mean - 30.0).abs() < 1e-9);
        // Fifty silent windows: the usual rate decays towards zero.
        r.roll(&cfg, UnixTime(705));
        assert_eq!(r.windows, 70);
        assert_eq!(r.window_start, UnixTime(700));
        assert!(r.mean < 30.0 * 0.9f64.powi(49) && r.mean > 0.0, "{}", r.mean);
        // A time before the current window changes nothing.
        let before = r.clone();
        r.roll(&cfg, UnixTime(10));
        assert_eq!(r, before);
    }

    #[test]
    fn a_huge_gap_is_cheap_and_keeps_the_active_normal() {
        let cfg = BaselineConfig::default();
        let mut r = WindowRate::new(UnixTime(0));
        for w in 0..20 {
            for i in 0..30 {
                r.add(&cfg, cfg.rate_min, UnixTime(w * 10 + i % 10));
            }
        }
        let later = UnixTime(10_000_000_005);
        r.roll(&cfg, later);
        assert_eq!(r.windows, 1_000_000_000);
        assert_eq!(r.window_start, UnixTime(10_000_000_000));
        assert!(r.mean < 1e-6, "{}", r.mean);
        // The mean over every window is forgotten, but what the agent does when it works
        // is not: coming back at its old rate after a long pause is not a spike.
        assert!((r.active.mean - 30.0).abs() < 1e-9);
        assert_eq!((0..30).filter(|_| r.add(&cfg, cfg.rate_min, later)).count(), 0);
        // Far above it still is.
        assert_eq!((0..60).filter(|_| r.add(&cfg, cfg.rate_min, later)).count(), 1);
    }

    /// The false positive of a steady mean: 25 calls in one window every 20 windows.
    #[test]
    fn a_periodic_batch_is_its_own_normal_and_its_period_is_learned() {
        let cfg = BaselineConfig::default();
        let mut b = Baseline::new(UnixTime(DAY0));
        let mut spikes = Vec::new();
        for batch in 0..200 {
            let start = DAY0 + batch * 200;
            for i in 0..25 {
                let t = UnixTime(start + i / 5);
                let signals = b.assess(&cfg, "reports.build", "reports/daily", t);
                spikes.extend(signals.into_iter().filter(|s| s.kind == SignalKind::RateSpike));
                b.record(&cfg, "reports.build", "reports/daily", true, false, t);
            }
        }
        assert!(spikes.is_empty(), "{spikes:?}");
        assert!((b.rate.active.mean - 25.0).abs() < 1e-6, "{}", b.rate.active.mean);
        assert!((b.rate.gap.mean - 200.0).abs() < 1e-6, "{}", b.rate.gap.mean);
        // A batch four times the size is still a spike, and says so with its figures.
        let start = DAY0 + 200 * 200;
        let signals: Vec<Signal> =
            (0..100).flat_map(|i| b.assess(&cfg, "reports.build", "reports/daily", UnixTime(start + i / 10))).collect();
        assert_eq!(kinds(&signals), [SignalKind::RateSpike]);
        let figures = signals[0].figures.as_ref().unwrap();
        assert_eq!(figures.usual, Some(b.rate.active.mean));
        assert!(figures.observed.unwrap() > figures.threshold.unwrap());
        assert!(signals[0].detail.contains("usually every 200 s"), "{}", signals[0].detail);
    }

    #[test]
    fn novelty_weighs_more_in_a_row_and_on_sensitive_actions() {
        let cfg = BaselineConfig::default();
        let (mut b, t) = trained(&cfg);
        let factors = |signals: &[Signal]| signals.iter().map(|s| s.factor).collect::<Vec<_>>();
        // One new prefix: weighs once.
        let first = b.assess(&cfg, "crm.read", "invoices/1", UnixTime(t));
        assert_eq!(factors(&first), [1.0]);
        // A second and a third novel request within the hour weigh twice and three times.
        assert_eq!(factors(&b.assess(&cfg, "crm.read", "orders/1", UnixTime(t + 10))), [2.0]);
        assert_eq!(factors(&b.assess(&cfg, "crm.update", "customers/1", UnixTime(t + 20))), [3.0]);
        // A sensitive one: three times more again.
        let export = b.assess(&cfg, "crm.export", "customers/1", UnixTime(t + 30));
        assert_eq!(factors(&export), [12.0]);
        assert!(export[0].figures.as_ref().unwrap().sensitive);
        assert_eq!(export[0].figures.as_ref().unwrap().recent_novel, Some(4));
        // An hour later the window is empty again.
        assert_eq!(factors(&b.assess(&cfg, "crm.read", "leads/1", UnixTime(t + 3_700))), [1.0]);
    }

    #[test]
    fn an_announced_deploy_explains_new_tools_but_not_sensitive_ones() {
        let cfg = BaselineConfig::default();
        let (mut b, t) = trained(&cfg);
        b.announce_deploy(&cfg, "v2.3.0", UnixTime(t));
        for (i, tool) in ["kb.search", "kb.summarise", "calendar.read", "mail.draft"].iter().enumerate() {
            let signals = b.assess(&cfg, tool, &format!("{tool}/x/1"), UnixTime(t + 60 * i as i64));
            assert_eq!(kinds(&signals), [SignalKind::NovelAction, SignalKind::NovelResource]);
            assert!(signals.iter().all(|s| s.factor == 0.0), "{signals:?}");
            assert_eq!(signals[0].figures.as_ref().unwrap().deploy.as_deref(), Some("v2.3.0"));
            assert!(signals[0].detail.ends_with("(expected after deploy `v2.3.0`)"), "{}", signals[0].detail);
        }
        // Explained novelty does not count towards the novelty window.
        assert!(b.novel_at.is_empty());
        // A sensitive action is not explained by a deploy.
        let export = b.assess(&cfg, "crm.export", "customers/1", UnixTime(t + 600));
        assert_eq!(export[0].factor, 3.0);
        // After the grace period, novelty weighs again.
        let late = b.assess(&cfg, "kb.index", "customers/1", UnixTime(t + 86_400));
        assert_eq!(late[0].factor, 1.0);
    }

    #[test]
    fn sensitive_patterns() {
        let cfg = BaselineConfig::default();
        for a in ["crm.export", "crm.delete", "payments.send", "payments.refund.create", "iam.grant", "org.admin"] {
            assert!(cfg.is_sensitive(a), "{a}");
        }
        for a in ["crm.read", "payments", "crm.exporter", "tickets.comment", "xdelete"] {
            assert!(!cfg.is_sensitive(a), "{a}");
        }
        assert!(valid_pattern("*") && valid_pattern("a.b") && valid_pattern("a.*") && valid_pattern("*.b"));
        assert!(!valid_pattern("") && !valid_pattern("a*") && !valid_pattern("*.*") && !valid_pattern("a.*.b"));
        let bad = BaselineConfig { sensitive: vec!["cr*m".into()], ..BaselineConfig::default() };
        assert!(bad.validate().is_err());
        assert_ne!(request_key("a", "bc"), request_key("ab", "c"));
    }

    #[test]
    fn serde_round_trip() {
        let cfg = BaselineConfig::default();
        let (b, _) = trained(&cfg);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Baseline>(&json).unwrap(), b);
        let partial: BaselineConfig = serde_json::from_str(r#"{"rate_min": 50}"#).unwrap();
        assert_eq!(partial, BaselineConfig { rate_min: 50, ..BaselineConfig::default() });
    }

    #[test]
    fn config_validation() {
        assert_eq!(BaselineConfig::default().validate(), Ok(()));
        for bad in [
            BaselineConfig { window_secs: 0, ..BaselineConfig::default() },
            BaselineConfig { learning_secs: -1, ..BaselineConfig::default() },
            BaselineConfig { alpha: 0.0, ..BaselineConfig::default() },
            BaselineConfig { alpha: f64::NAN, ..BaselineConfig::default() },
            BaselineConfig { rate_sigmas: f64::INFINITY, ..BaselineConfig::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let err = BaselineConfig { alpha: 2.0, ..BaselineConfig::default() }.validate().unwrap_err();
        assert_eq!(err.to_string(), "baseline setting `alpha` must be greater than 0 and at most 1, not `2`");
    }

    #[test]
    fn resource_prefixes() {
        assert_eq!(resource_prefix("customers/42"), "customers");
        assert_eq!(resource_prefix("tickets/acme/123"), "tickets/acme");
        assert_eq!(resource_prefix("a/b/c/d"), "a/b");
        assert_eq!(resource_prefix("reports"), "reports");
        assert_eq!(resource_prefix(""), "");
    }
}
