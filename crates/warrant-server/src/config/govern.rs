//! The `[governance]` table: continuous governance and its outbound webhook.
//!
//! ```toml
//! [governance]
//! enabled = true
//! sweep_secs = 60                 # every agent is swept this often
//! react_secs = 2                  # agents a registry change touched are swept this soon after
//! idle_after_secs = 2592000       # 30 days without activity: idle
//! usage_window_secs = 2592000     # use counts this far back (over-privileged, recommendations)
//! key_rotation_secs = 7776000     # an agent key older than 90 days is stale
//! attestation_every_secs = 7776000  # owners re-attest every 90 days
//! max_warrant_lifetime_secs = 900 # a live warrant living longer is a long-lived grant
//! max_ephemeral_lifetime_secs = 604800
//! sensitive_namespaces = ["payments", "iam", "secrets", "admin"]
//! fanout_limit = 50               # live delegations from one agent
//! auto_suspend_orphans = false    # suspend an agent whose owner is disabled
//! shadow_quiet_secs = 3600        # shadow activity resolves after this long without recurrence
//! history = 2000                  # recent decisions a policy change is replayed on
//! max_acceptance_secs = 31536000  # the longest a finding may be accepted for
//! webhook_url = "https://siem.example.com/warrant"
//! webhook_secret = "…"            # HMAC-SHA256 key for X-Warrant-Signature; never logged
//! webhook_attempts = 6            # deliveries are retried with exponential backoff
//! danger_allow_private_webhook = false  # true: also deliver to loopback, private, link-local addresses
//! ```

use std::time::Duration;

use serde::Deserialize;
use warrant_engine::govern::GovernConfig;

use super::ConfigError;
use warrant_engine::webhook::WebhookConfig;

/// The `[governance]` table. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GovernanceFile {
    /// Sweep and record usage at all.
    pub enabled: Option<bool>,
    /// Full sweep interval, seconds.
    pub sweep_secs: Option<i64>,
    /// Delay before a targeted sweep after a registry change, seconds.
    pub react_secs: Option<i64>,
    /// Idle after this long without activity, seconds.
    pub idle_after_secs: Option<i64>,
    /// The usage window, seconds.
    pub usage_window_secs: Option<i64>,
    /// Agent key rotation period, seconds.
    pub key_rotation_secs: Option<i64>,
    /// Attestation cadence, seconds.
    pub attestation_every_secs: Option<i64>,
    /// The longest acceptable live warrant lifetime, seconds.
    pub max_warrant_lifetime_secs: Option<i64>,
    /// The longest acceptable ephemeral agent lifetime, seconds.
    pub max_ephemeral_lifetime_secs: Option<i64>,
    /// Namespaces where an open-ended grant is a finding.
    pub sensitive_namespaces: Option<Vec<String>>,
    /// Live delegations from one agent above which fan-out is unusual.
    pub fanout_limit: Option<usize>,
    /// Suspend orphaned agents.
    pub auto_suspend_orphans: Option<bool>,
    /// Quiet time after which shadow activity resolves, seconds.
    pub shadow_quiet_secs: Option<i64>,
    /// Recent decisions kept for policy replay.
    pub history: Option<usize>,
    /// The longest acceptance, seconds.
    pub max_acceptance_secs: Option<i64>,
    /// Where finding events are POSTed.
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key that signs webhook bodies.
    pub webhook_secret: Option<String>,
    /// Delivery attempts per event.
    pub webhook_attempts: Option<u32>,
    /// Deliver to loopback, private, link-local and other non-public addresses too
    /// (refused by default: see [`crate::webhook`]).
    pub danger_allow_private_webhook: Option<bool>,
}

const DAY: i64 = 86_400;

fn secs(name: &str, v: Option<i64>, min: i64, max: i64, slot: &mut i64) -> Result<(), ConfigError> {
    if let Some(v) = v {
        if !(min..=max).contains(&v) {
            return Err(ConfigError::Invalid(format!("`governance.{name}` must be between {min} and {max} seconds")));
        }
        *slot = v;
    }
    Ok(())
}

fn interval(name: &str, v: Option<i64>, min: i64, max: i64, slot: &mut Duration) -> Result<(), ConfigError> {
    let mut s = i64::try_from(slot.as_secs()).unwrap_or(max);
    secs(name, v, min, max, &mut s)?;
    *slot = Duration::from_secs(s.unsigned_abs());
    Ok(())
}

impl GovernanceFile {
    /// The engine's governance settings and the webhook, these values over the defaults.
    pub fn resolve(&self) -> Result<(GovernConfig, Option<WebhookConfig>), ConfigError> {
        let mut g = GovernConfig::default();
        g.enabled = self.enabled.unwrap_or(g.enabled);
        g.auto_suspend_orphans = self.auto_suspend_orphans.unwrap_or(g.auto_suspend_orphans);
        interval("sweep_secs", self.sweep_secs, 1, DAY, &mut g.sweep_interval)?;
        interval("react_secs", self.react_secs, 0, 3600, &mut g.react_within)?;
        let r = &mut g.rules;
        secs("idle_after_secs", self.idle_after_secs, 1, 3650 * DAY, &mut r.idle_after)?;
        secs("usage_window_secs", self.usage_window_secs, 1, 3650 * DAY, &mut r.usage_window)?;
        secs("key_rotation_secs", self.key_rotation_secs, 1, 3650 * DAY, &mut r.key_rotation)?;
        secs("attestation_every_secs", self.attestation_every_secs, 1, 3650 * DAY, &mut r.attestation_every)?;
        secs("max_warrant_lifetime_secs", self.max_warrant_lifetime_secs, 1, DAY, &mut r.max_warrant_lifetime)?;
        secs(
            "max_ephemeral_lifetime_secs",
            self.max_ephemeral_lifetime_secs,
            1,
            3650 * DAY,
            &mut r.max_ephemeral_lifetime,
        )?;
        if let Some(ns) = &self.sensitive_namespaces {
            if ns.iter().any(|n| n.is_empty() || n.contains(['.', ':', '*', ' '])) {
                return Err(ConfigError::Invalid(
                    "`governance.sensitive_namespaces` holds first action segments like `payments`".into(),
                ));
            }
            r.sensitive_namespaces = ns.clone();
        }
        if let Some(f) = self.fanout_limit {
            r.fanout_limit = f;
        }
        secs("shadow_quiet_secs", self.shadow_quiet_secs, 1, 365 * DAY, &mut g.shadow_quiet)?;
        secs("max_acceptance_secs", self.max_acceptance_secs, 1, 3650 * DAY, &mut g.max_acceptance)?;
        if let Some(h) = self.history {
            if h > 100_000 {
                return Err(ConfigError::Invalid("`governance.history` may be at most 100000".into()));
            }
            g.history = h;
        }
        let webhook = match &self.webhook_url {
            None => {
                if self.webhook_secret.is_some() || self.webhook_attempts.is_some() {
                    return Err(ConfigError::Invalid("`governance.webhook_*` needs `governance.webhook_url`".into()));
                }
                None
            }
            Some(url) => Some(
                WebhookConfig::new(
                    url,
                    self.webhook_secret.clone(),
                    self.webhook_attempts,
                    self.danger_allow_private_webhook.unwrap_or(false),
                )
                .map_err(|e| ConfigError::Invalid(e.0))?,
            ),
        };
        Ok((g, webhook))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_override_defaults_and_bad_ones_are_refused() {
        let f: GovernanceFile = toml::from_str("sweep_secs = 5\nidle_after_secs = 60\nfanout_limit = 3").unwrap();
        let (g, hook) = f.resolve().unwrap();
        assert_eq!(g.sweep_interval, Duration::from_secs(5));
        assert_eq!(g.rules.idle_after, 60);
        assert_eq!(g.rules.fanout_limit, 3);
        assert!(hook.is_none());
        for bad in [
            "sweep_secs = 0",
            "webhook_secret = \"x\"",
            "webhook_url = \"ftp://x\"",
            "sensitive_namespaces = [\"a.b\"]",
        ] {
            let f: GovernanceFile = toml::from_str(bad).unwrap();
            assert!(f.resolve().is_err(), "{bad}");
        }
        assert!(toml::from_str::<GovernanceFile>("nope = 1").is_err());
    }
}
