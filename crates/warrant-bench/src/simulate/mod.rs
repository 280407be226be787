//! A labelled traffic corpus and simulator for the guardrails.
//!
//! Benign behaviours (steady, diurnal, batch jobs, interactive sessions, retry loops,
//! deploys, an orchestrator fanning out to workers) and attacks (a stolen warrant, scope
//! probing, bulk and slow exfiltration, privilege creep, a delegation burst) are generated
//! as time-ordered event streams ([`behaviour`]), deterministically from a seed
//! ([`rng`]), and run against a real engine in-process on a manual clock ([`driver`]).
//! Every decision is classified by the one function [`classify::classify`]; the
//! results ([`report`]) are, per benign behaviour, its false responses (any guardrail
//! response to benign traffic), and per attack the action it was contained at.
//!
//! `cargo run --release -p warrant-bench --bin simulate -- --agent-days 10000` runs the
//! full corpus; `tests/simulate.rs` runs a small one and asserts the targets.

pub mod behaviour;
pub mod classify;
pub mod driver;
pub mod report;
pub mod rng;

pub use behaviour::{Attack, Behaviour, Event, EventKind, Generator, Label, Scenario, Volume};
pub use classify::{classify, Response};
pub use driver::{
    open_engine, plan, run_attack, run_benign, run_benign_plan, Answering, Plan, Progress, SimConfig, SimEngine,
    SimError, Storage,
};
pub use report::{attack_table, benign_table, AttackReport, BenignReport, Containment, Tally};
pub use rng::SplitMix64;

use warrant_core::{AgentId, UnixTime};
use warrant_engine::Engine;

/// The owner announces that `agent` was deployed at `version`, at `now`: new tools and
/// resource prefixes are to be expected from it for a while, and should not count
/// against it.
pub fn announce_deploy(engine: &Engine, agent: &AgentId, version: &str, now: UnixTime) {
    engine.guardrails().announce_deploy(agent, version, now);
}
