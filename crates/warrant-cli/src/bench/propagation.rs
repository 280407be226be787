//! The propagation scenario: servers sharing one database (`--also`). Under a background
//! authorize load spread over every server, a warrant is delegated on the first server,
//! seen allowed on every other, revoked on the first; from the moment the revocation's
//! answer arrives, every other server is asked about the warrant until it denies it as
//! revoked. The time to that first deny, per server, over many revocations, is the
//! propagation time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::load::{histogram, micros, Latency};
use super::target::{FormMaker, FormPool};
use super::BenchError;

/// How long one server may take to deny a revoked warrant before the run fails.
const GIVE_UP: Duration = Duration::from_secs(10);

/// What the propagation scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct PropagationReport {
    /// Revocations made (each on the first server).
    pub revocations: usize,
    /// The servers asked after each revocation.
    pub followers: Vec<String>,
    /// Revocation answered to first deny, over every follower and revocation.
    pub to_deny: Latency,
    /// The same, per follower.
    pub per_follower: Vec<Latency>,
    /// The revocation's own round trip on the first server.
    pub revoke: Latency,
    /// Background decisions per second during the run, over every server.
    pub load_per_s: f64,
    /// Background load workers.
    pub load_concurrency: usize,
    /// Background decisions that were not allows (should be 0).
    pub load_failures: u64,
}

#[derive(Debug, Deserialize)]
struct Decided {
    decision: String,
    #[serde(default)]
    code: String,
}

#[derive(Debug, Deserialize)]
struct Issued {
    access_token: String,
    warrant_id: String,
}

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("  propagation {bar:30} {pos}/{len} revocations")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

async fn decide(http: &reqwest::Client, server: &str, token: &str) -> Result<Decided, BenchError> {
    let body = json!({"token": token, "action": "crm.read", "resource": "customers/42", "context": {"rows": 1}});
    let answer = http.post(format!("{server}/v1/authorize")).json(&body).send().await?;
    let status = answer.status();
    if !status.is_success() {
        return Err(BenchError::Setup(format!("{server}/v1/authorize answered {status}")));
    }
    Ok(answer.json().await?)
}

/// Runs the scenario: `revocations` times, with `load_concurrency` background workers.
pub async fn run(
    http: &reqwest::Client,
    servers: &[String],
    admin: &str,
    maker: FormMaker,
    background: &str,
    revocations: usize,
    load_concurrency: usize,
) -> Result<PropagationReport, BenchError> {
    let (leader, followers) = servers.split_first().ok_or_else(|| BenchError::Usage("no server".into()))?;
    if followers.is_empty() {
        return Err(BenchError::Usage(
            "the propagation scenario needs another server sharing the database: --also URL".into(),
        ));
    }
    let pool = FormPool::new(maker, revocations)?;

    // The background load: the same warrant asked on every server in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for w in 0..load_concurrency {
        let (http, servers, token) = (http.clone(), servers.to_vec(), background.to_owned());
        let (stop, done, failed) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let Some(server) = servers.get(i % servers.len()) else { break };
                i = i.wrapping_add(1);
                match decide(&http, server, &token).await {
                    Ok(d) if d.decision == "allow" => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    let started = Instant::now();
    let mut all = histogram()?;
    let mut each = followers.iter().map(|_| histogram()).collect::<Result<Vec<_>, _>>()?;
    let mut revoke = histogram()?;
    let progress = bar(u64::try_from(revocations).unwrap_or(u64::MAX));
    let outcome: Result<(), BenchError> = async {
        for _ in 0..revocations {
            let form = pool.take().map_err(|e| BenchError::Setup(e.to_string()))?;
            let answer = http
                .post(format!("{leader}/oauth2/token"))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await?;
            if !answer.status().is_success() {
                return Err(BenchError::Setup(format!("delegation on {leader} answered {}", answer.status())));
            }
            let issued: Issued = answer.json().await?;
            // Allowed everywhere first (the first time, the other servers may still be
            // applying the fixture's registrations).
            for server in servers {
                let asked = Instant::now();
                loop {
                    let d = decide(http, server, &issued.access_token).await?;
                    if d.decision == "allow" {
                        break;
                    }
                    if asked.elapsed() > GIVE_UP {
                        return Err(BenchError::Setup(format!("{server} did not allow a fresh warrant: {}", d.code)));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let body = json!({"kind": "warrant", "id": issued.warrant_id, "reason": "bench: propagation"});
            let sent = Instant::now();
            let answer = http.post(format!("{leader}/v1/revocations")).bearer_auth(admin).json(&body).send().await?;
            if !answer.status().is_success() {
                return Err(BenchError::Setup(format!("revocation on {leader} answered {}", answer.status())));
            }
            let revoked = Instant::now();
            revoke.saturating_record(micros(revoked - sent));
            // Every follower asked at once, each until its first deny.
            let asks = followers.iter().map(|server| {
                let (http, server, token) = (http.clone(), server.clone(), issued.access_token.clone());
                tokio::spawn(async move {
                    loop {
                        let d = decide(&http, &server, &token).await?;
                        if d.decision != "allow" {
                            if d.code != "revoked" {
                                return Err(BenchError::Setup(format!(
                                    "{server} denied with `{}`, not `revoked`",
                                    d.code
                                )));
                            }
                            return Ok(revoked.elapsed());
                        }
                        if revoked.elapsed() > GIVE_UP {
                            return Err(BenchError::Setup(format!(
                                "{server} still allowed a revoked warrant after {GIVE_UP:?}"
                            )));
                        }
                    }
                })
            });
            let asks: Vec<_> = asks.collect();
            for (i, ask) in asks.into_iter().enumerate() {
                let took = ask.await.map_err(|e| BenchError::Worker(e.to_string()))??;
                all.saturating_record(micros(took));
                if let Some(h) = each.get_mut(i) {
                    h.saturating_record(micros(took));
                }
            }
            progress.inc(1);
        }
        Ok(())
    }
    .await;
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    outcome?;
    Ok(PropagationReport {
        revocations,
        followers: followers.to_vec(),
        to_deny: Latency::of(&all),
        per_follower: each.iter().map(Latency::of).collect(),
        revoke: Latency::of(&revoke),
        load_per_s: done.load(Ordering::Relaxed) as f64 / elapsed.max(f64::EPSILON),
        load_concurrency,
        load_failures: failed.load(Ordering::Relaxed),
    })
}
