//! The outbound webhook: every `finding` event (opened, reopened, resolved, accepted) is
//! POSTed as JSON to a configured URL, in order, with retries and exponential backoff.
//!
//! Each delivery carries `X-Warrant-Event: finding`, `X-Warrant-Delivery: <event id>`
//! and, when a secret is configured, `X-Warrant-Signature: sha256=<hex HMAC-SHA256 of the
//! body>`. A receiver should verify the signature and de-duplicate on the delivery id
//! (a retry after a lost response delivers again). Deliveries that still fail after the
//! last attempt are logged and dropped: the findings themselves are in the store and
//! `GET /v1/findings` has them. The secret is never logged.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};
use warrant_engine::events::Event;
use zeroize::Zeroizing;

use crate::config::ConfigError;

/// Events waiting for delivery; beyond this new events are dropped (and logged).
pub const QUEUE: usize = 10_000;
/// The first retry waits this long; each next one twice as long, at most [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how finding events are delivered.
#[derive(Clone)]
pub struct WebhookConfig {
    url: String,
    secret: Option<Arc<Zeroizing<String>>>,
    attempts: u32,
    first_backoff: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Checks the URL (http or https), the secret (when set, 16 bytes or more) and the
    /// attempts (1 to 20, default 6).
    pub fn new(url: &str, secret: Option<String>, attempts: Option<u32>) -> Result<Self, ConfigError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
            return Err(ConfigError::Invalid("`governance.webhook_url` must be an http(s) URL".into()));
        }
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid("`governance.webhook_secret` must be at least 16 bytes".into()));
        }
        let attempts = attempts.unwrap_or(6);
        if !(1..=20).contains(&attempts) {
            return Err(ConfigError::Invalid("`governance.webhook_attempts` must be between 1 and 20".into()));
        }
        Ok(WebhookConfig {
            url: url.to_owned(),
            secret: secret.map(|s| Arc::new(Zeroizing::new(s))),
            attempts,
            first_backoff: FIRST_BACKOFF,
        })
    }

    /// The same settings with a shorter first backoff (tests).
    pub fn with_first_backoff(mut self, backoff: Duration) -> Self {
        self.first_backoff = backoff;
        self
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers finding events from `events` until the bus closes. Spawn it; abort it at
/// shutdown.
pub async fn run(config: WebhookConfig, mut events: broadcast::Receiver<Arc<Event>>) {
    let (tx, mut rx) = mpsc::channel::<Arc<Event>>(QUEUE);
    // Drain the bus promptly into our own queue, so a slow receiver does not make us lag.
    let drain = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if tx.try_send(event).is_err() {
                        tracing::error!(
                            "the webhook queue is full; a finding event was dropped (see GET /v1/findings)"
                        );
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(
                        skipped = n,
                        "the webhook fell behind; finding events were dropped (see GET /v1/findings)"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; finding events will not be delivered");
            drain.abort();
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        deliver(&client, &config, &event).await;
    }
}

async fn deliver(client: &reqwest::Client, config: &WebhookConfig, event: &Event) {
    let body = match serde_json::to_vec(event) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a finding event for the webhook");
            return;
        }
    };
    let mut backoff = config.first_backoff;
    for attempt in 1..=config.attempts {
        let mut req = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header("x-warrant-event", event.kind.as_str())
            .header("x-warrant-delivery", event.id.to_string())
            .body(body.clone());
        if let Some(secret) = &config.secret {
            req = req.header("x-warrant-signature", signature(secret.as_bytes(), &body));
        }
        let outcome = match req.send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => format!("status {}", resp.status().as_u16()),
            Err(e) => format!("{}", e.without_url()),
        };
        if attempt == config.attempts {
            tracing::error!(
                delivery = event.id,
                attempts = attempt,
                outcome,
                "gave up delivering a finding event to the webhook"
            );
            return;
        }
        tracing::warn!(
            delivery = event.id,
            attempt,
            outcome,
            retry_in_ms = backoff.as_millis() as u64,
            "webhook delivery failed; retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(WebhookConfig::new("ftp://x", None, None).is_err());
        assert!(WebhookConfig::new("https://x", Some("short".into()), None).is_err());
        assert!(WebhookConfig::new("https://x", None, Some(0)).is_err());
        let ok = WebhookConfig::new("https://x", Some("0123456789abcdef".into()), None);
        assert!(ok.is_ok_and(|c| !format!("{c:?}").contains("0123456789abcdef")));
    }
}
