//! Runs the guardrails' labelled traffic corpus against a real engine and prints what it
//! scored: false responses per benign behaviour, containment per attack.
//!
//! ```text
//! cargo run --release -p warrant-bench --bin simulate -- --agent-days 10000 \
//!     [--attack-runs 10] [--seed 1] [--only steady,batch-200s,scope-probing] \
//!     [--volume reduced|spec] [--answer queued|each] [--batch 1000] \
//!     [--store tmpfs|memory] [--per-engine 250000] [--runtime current|multi] \
//!     [--json out.json]
//! ```
//!
//! `--agent-days` is per benign behaviour; `--attack-runs 0` runs no attack. `--volume`
//! (`reduced` by default) is how much traffic an agent-day carries, see
//! `warrant_bench::simulate::Volume`. Decisions are queued and answered 1,000 at a time
//! unless `--answer each`; the runtime is tokio's current-thread one unless `--runtime
//! multi` (current-thread measured faster here); SQLite is a file on tmpfs (/dev/shm)
//! unless `--store memory`; one engine holds at most `--per-engine` decisions (250,000),
//! more are spread over several. Progress goes to stderr, the Markdown tables to stdout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use warrant_bench::simulate::{
    attack_table, benign_table, run_attack, run_benign, Answering, Attack, Behaviour, Progress, SimConfig, Storage,
    Volume,
};

struct Args {
    agent_days: u64,
    attack_runs: u64,
    seed: u64,
    only: Option<Vec<String>>,
    json: Option<String>,
    answering: Answering,
    current_thread: bool,
    volume: Volume,
    storage: Storage,
    per_engine: u64,
}

const USAGE: &str = "usage: simulate [--agent-days N] [--attack-runs N] [--seed N] [--only NAME,NAME] \
[--volume reduced|spec] [--answer queued|each] [--batch N] [--store tmpfs|memory] [--per-engine N] [--runtime current|multi] [--json PATH]";

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        agent_days: 10_000,
        attack_runs: 10,
        seed: 1,
        only: None,
        json: None,
        answering: Answering::Queued { batch: 1_000 },
        current_thread: true,
        volume: Volume::Reduced,
        storage: Storage::Tmpfs,
        per_engine: warrant_bench::simulate::driver::DECISIONS_PER_ENGINE,
    };
    let mut each = false;
    let mut batch = 1_000_usize;
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"));
        let number = |v: String| v.replace('_', "").parse::<u64>().map_err(|e| format!("`{flag}`: {e}"));
        match flag.as_str() {
            "--agent-days" => args.agent_days = number(value()?)?,
            "--attack-runs" => args.attack_runs = number(value()?)?,
            "--seed" => args.seed = number(value()?)?,
            "--batch" => batch = usize::try_from(number(value()?)?.max(1)).unwrap_or(1_000),
            "--json" => args.json = Some(value()?),
            "--answer" => match value()?.as_str() {
                "each" => each = true,
                "queued" => each = false,
                other => return Err(format!("`--answer` is `queued` or `each`, not `{other}`")),
            },
            "--only" => {
                let names: Vec<String> =
                    value()?.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
                if let Some(bad) = names.iter().find(|n| Behaviour::parse(n).is_none() && Attack::parse(n).is_none()) {
                    let known: Vec<&str> =
                        Behaviour::ALL.iter().map(|b| b.name()).chain(Attack::ALL.iter().map(|a| a.name())).collect();
                    return Err(format!("`{bad}` is not a behaviour or an attack; known: {}", known.join(", ")));
                }
                args.only = Some(names);
            }
            "--volume" => {
                let v = value()?;
                args.volume =
                    Volume::parse(&v).ok_or_else(|| format!("`--volume` is `reduced` or `spec`, not `{v}`"))?;
            }
            "--per-engine" => args.per_engine = number(value()?)?.max(1),
            "--store" => {
                let v = value()?;
                args.storage =
                    Storage::parse(&v).ok_or_else(|| format!("`--store` is `tmpfs` or `memory`, not `{v}`"))?;
            }
            "--runtime" => match value()?.as_str() {
                "current" => args.current_thread = true,
                "multi" => args.current_thread = false,
                other => return Err(format!("`--runtime` is `current` or `multi`, not `{other}`")),
            },
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    args.answering = if each { Answering::EachDecision } else { Answering::Queued { batch } };
    Ok(args)
}

fn selected(only: Option<&Vec<String>>, name: &str) -> bool {
    only.is_none_or(|names| names.iter().any(|n| n == name))
}

/// The commit this runs from (`abc1234`, `+dirty` when the tree has changes), if git
/// can tell.
fn commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        None => "unknown".to_owned(),
    }
}

/// Prints progress to stderr, at most every 2 seconds (and always at the end).
fn reporter() -> impl FnMut(&Progress) {
    let mut last = Instant::now().checked_sub(Duration::from_secs(10)).unwrap_or_else(Instant::now);
    move |p: &Progress| {
        let done = p.agent_days >= p.of;
        if !done && last.elapsed() < Duration::from_secs(2) {
            return;
        }
        last = Instant::now();
        let secs = p.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { p.decisions as f64 / secs } else { 0.0 };
        eprintln!(
            "{:>18}: {:>7}/{} agent-days, {:>11} decisions, {:>8.0} decisions/s, {:.1} s",
            p.scenario.name(),
            p.agent_days,
            p.of,
            p.decisions,
            rate,
            secs
        );
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    let command: Vec<String> = std::env::args().collect();
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = SimConfig {
        seed: args.seed,
        answering: args.answering,
        volume: args.volume,
        storage: args.storage,
        decisions_per_engine: args.per_engine,
        ..SimConfig::default()
    };
    let result = runtime.block_on(async {
        let mut benign = Vec::new();
        let mut attacks = Vec::new();
        let mut progress = reporter();
        for b in Behaviour::ALL.into_iter().filter(|b| selected(args.only.as_ref(), b.name())) {
            if args.agent_days == 0 {
                break;
            }
            benign.push(run_benign(b, args.agent_days, &config, &mut progress).await?);
        }
        for a in Attack::ALL.into_iter().filter(|a| selected(args.only.as_ref(), a.name())) {
            if args.attack_runs == 0 {
                break;
            }
            attacks.push(run_attack(a, args.attack_runs, &config, &mut progress).await?);
        }
        Ok::<_, warrant_bench::simulate::SimError>((benign, attacks))
    });
    let (benign, attacks) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("the simulation failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = started.elapsed();
    let commit = commit();
    let decisions: u64 =
        benign.iter().map(|r| r.tally.decisions).chain(attacks.iter().map(|r| r.tally.decisions)).sum();
    let answering = match args.answering {
        Answering::EachDecision => "each decision answered on its own (`authorize`)".to_owned(),
        Answering::Queued { batch } => format!("decisions queued, answered {batch} at a time"),
    };
    println!("# Guardrail simulation\n");
    println!("`{}`\n", command.join(" "));
    println!(
        "commit `{commit}`, seed {}, volume {}, store {}, wall time {:.1} s, {} decisions ({:.0}/s), {answering}\n",
        args.seed,
        args.volume.name(),
        args.storage.name(),
        wall.as_secs_f64(),
        warrant_bench::simulate::report::thousands(decisions),
        decisions as f64 / wall.as_secs_f64().max(1e-9),
    );
    if !benign.is_empty() {
        println!("## Benign behaviours\n\n{}", benign_table(&benign));
    }
    if !attacks.is_empty() {
        println!("## Attacks\n\n{}", attack_table(&attacks));
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "command": command, "commit": commit, "seed": args.seed, "volume": args.volume.name(), "store": args.storage.name(), "wall_s": wall.as_secs_f64(),
            "answering": answering,
            "benign": benign.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "attacks": attacks.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("could not write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
