//! Shared fixtures for Warrant's micro-benchmarks (`benches/warrant.rs`) and for the
//! anchor test (`tests/anchors.rs`), so that every benchmark and the test use the same
//! policies and the same requests.
//!
//! * [`policies`]: a generated policy set of N policies, as Cedar (what Warrant loads)
//!   and as the equivalent Rego (what an OPA user would run), and the [`policies::Probe`]
//!   requests asked of them.
//! * [`anchors`]: the baselines: a bare `cedar_policy::Authorizer` over the whole set with
//!   the request and entities built once, and regorus (interpreter and RVM) on the Rego.
//! * [`fixture`]: a real [`warrant_engine::Engine`] over SQLite in a temporary directory,
//!   with a human, two agents and a minted warrant.
//! * [`govern`]: a registry of 100 000 agents (healthy and not) for the governance sweep
//!   benchmark (`benches/govern.rs`).
//! * [`simulate`]: a labelled traffic corpus (benign behaviours and attacks) run against a
//!   real engine on a manual clock, scoring the guardrails' false responses and how fast
//!   attacks are contained (`src/bin/simulate.rs`, `tests/simulate.rs`).

pub mod anchors;
pub mod fixture;
pub mod govern;
pub mod policies;
pub mod simulate;

use warrant_core::UnixTime;

/// The benchmark's clock: Tuesday 2023-11-14, 10:00:00 UTC (business hours).
pub const T0: UnixTime = UnixTime(1_699_956_000);

/// The policy-set sizes every decision benchmark runs at.
pub const SIZES: [usize; 3] = [10, 50, 500];

/// The issuer URL of the benchmark engine.
pub const ISSUER: &str = "http://127.0.0.1:8080";
