//! The outbound webhook: every `finding` event (opened, reopened, resolved, accepted) is
//! POSTed as JSON to a configured URL, in order, with retries and exponential backoff.
//!
//! Each delivery carries `X-Warrant-Event: finding`, `X-Warrant-Delivery: <event id>`
//! and, when a secret is configured, `X-Warrant-Signature: sha256=<hex HMAC-SHA256 of the
//! body>`. A receiver should verify the signature and de-duplicate on the delivery id
//! (a retry after a lost response delivers again). Deliveries that still fail after the
//! last attempt are logged and dropped: the findings themselves are in the store and
//! `GET /v1/findings` has them. The secret is never logged.
//!
//! **Where it may deliver.** Redirects are never followed (a 3xx is a failed attempt),
//! and no proxy from the environment is used. Unless `danger_allow_private_webhook` is
//! set, the target must be a public address: loopback, private (RFC 1918, `fc00::/7`),
//! link-local (`169.254.0.0/16`, where cloud metadata services answer, `fe80::/10`),
//! shared (`100.64.0.0/10`), unspecified, multicast, broadcast and reserved addresses
//! are refused. A literal address in `webhook_url` is checked when the configuration
//! is read (the server does not start); a host name is resolved and checked at every
//! connection, and the connection goes to exactly the addresses checked, so a DNS
//! answer that changes in between (rebinding) cannot slip past. A refused delivery is
//! logged like any failed attempt.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::events::Event;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};
use zeroize::Zeroizing;

/// The webhook's settings are not valid; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WebhookConfigError(pub String);

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
    allow_private: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .field("attempts", &self.attempts)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Checks the URL (http or https, with a host; a literal address must be public
    /// unless `allow_private`), the secret (when set, 16 bytes or more) and the attempts
    /// (1 to 20, default 6).
    pub fn new(
        url: &str,
        secret: Option<String>,
        attempts: Option<u32>,
        allow_private: bool,
    ) -> Result<Self, WebhookConfigError> {
        let not_http = || WebhookConfigError("`governance.webhook_url` must be an http(s) URL".into());
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
            return Err(not_http());
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| not_http())?;
        let host = parsed.host_str().ok_or_else(not_http)?;
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            if let (Some(why), false) = (forbidden_address(ip), allow_private) {
                return Err(WebhookConfigError(format!(
                    "`governance.webhook_url` points at {ip}, a {why} address; set `governance.danger_allow_private_webhook = true` to deliver there anyway"
                )));
            }
        }
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(WebhookConfigError("`governance.webhook_secret` must be at least 16 bytes".into()));
        }
        let attempts = attempts.unwrap_or(6);
        if !(1..=20).contains(&attempts) {
            return Err(WebhookConfigError("`governance.webhook_attempts` must be between 1 and 20".into()));
        }
        Ok(WebhookConfig {
            url: url.to_owned(),
            secret: secret.map(|s| Arc::new(Zeroizing::new(s))),
            attempts,
            first_backoff: FIRST_BACKOFF,
            allow_private,
        })
    }

    /// The same settings with a shorter first backoff (tests).
    pub fn with_first_backoff(mut self, backoff: Duration) -> Self {
        self.first_backoff = backoff;
        self
    }
}

/// Why a webhook may not deliver to `ip` (without `danger_allow_private_webhook`), if
/// it may not: the kind of address it is.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let [s0, s1, s2, s3, s4, s5, s6, s7] = v6.segments();
            let embedded = || Ipv4Addr::new((s6 >> 8) as u8, s6 as u8, (s7 >> 8) as u8, s7 as u8);
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s0 & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if s0 & 0xffc0 == 0xfe80 || s0 & 0xffc0 == 0xfec0 {
                Some("link-local")
            } else if [s0, s1, s2, s3, s4, s5] == [0x64, 0xff9b, 0, 0, 0, 0] || [s0, s1, s2, s3, s4, s5] == [0; 6] {
                // NAT64 and IPv4-compatible addresses: the IPv4 address they carry.
                forbidden_v4(embedded())
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if a == 100 && b & 0xc0 == 64 {
        Some("shared (100.64.0.0/10)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("protocol-assignment (192.0.0.0/24)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved or broadcast")
    } else {
        None
    }
}

/// Resolves webhook host names and refuses any that resolve to an address
/// [`forbidden_address`] names; the client connects to exactly the addresses returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((ip, why)) = addrs.iter().find_map(|a| forbidden_address(a.ip()).map(|why| (a.ip(), why))) {
                let refusal = format!(
                    "`{host}` resolves to {ip}, a {why} address; webhooks are not delivered there without `governance.danger_allow_private_webhook`"
                );
                return Err(refusal.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The webhook's HTTP client: no redirects, no proxy, and unless `allow_private`, only
/// public addresses.
pub fn client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none()).no_proxy();
    if allow_private {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(PublicOnlyResolver)).build()
    }
}

/// An error and its causes, `: `-separated (reqwest's own message omits them), without
/// the URL.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
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
    let client = match client(config.allow_private) {
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
        if let Some(why) = literal_refusal(config) {
            tracing::error!(delivery = event.id, why, "refused to deliver a finding event to the webhook");
            return;
        }
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
            Ok(resp) if resp.status().is_redirection() => {
                format!("status {} (redirects are not followed)", resp.status().as_u16())
            }
            Ok(resp) => format!("status {}", resp.status().as_u16()),
            Err(e) => describe(e),
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

/// The URL's host, when it is a literal address the webhook may not reach (checked at
/// configuration already; checked again here, as the resolver never sees literals).
fn literal_refusal(config: &WebhookConfig) -> Option<&'static str> {
    if config.allow_private {
        return None;
    }
    let url = reqwest::Url::parse(&config.url).ok()?;
    let ip = url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()?;
    forbidden_address(ip)
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
        assert!(WebhookConfig::new("ftp://x", None, None, false).is_err());
        assert!(WebhookConfig::new("https://x", Some("short".into()), None, false).is_err());
        assert!(WebhookConfig::new("https://x", None, Some(0), false).is_err());
        let ok = WebhookConfig::new("https://x", Some("0123456789abcdef".into()), None, false);
        assert!(ok.is_ok_and(|c| !format!("{c:?}").contains("0123456789abcdef")));
    }

    #[test]
    fn private_literal_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/hook",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:192.168.0.1]/",
            "http://0.0.0.0/",
            "http://100.100.100.200/",
        ] {
            let refused = WebhookConfig::new(url, None, None, false);
            assert!(
                refused.as_ref().is_err_and(|e| e.to_string().contains("danger_allow_private_webhook")),
                "{url}: {refused:?}"
            );
            assert!(WebhookConfig::new(url, None, None, true).is_ok(), "{url}");
        }
        assert!(WebhookConfig::new("https://93.184.215.14/hook", None, None, false).is_ok());
        assert!(WebhookConfig::new("https://siem.example.com/hook", None, None, false).is_ok());
    }

    #[test]
    fn addresses_are_classified() {
        for ip in [
            "127.0.0.2",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "::",
            "64:ff9b::a00:1",
        ] {
            assert!(forbidden_address(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "172.32.0.1", "100.128.0.1"] {
            assert_eq!(forbidden_address(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn host_names_resolving_to_loopback_are_refused_at_delivery() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = PublicOnlyResolver.resolve(name).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("loopback"), "{refused}");
        // And the client built for deliveries says so when it is asked to go there.
        let err = client(false).unwrap().post("http://localhost:9/hook").send().await.unwrap_err();
        assert!(describe(err).contains("danger_allow_private_webhook"));
    }
}
