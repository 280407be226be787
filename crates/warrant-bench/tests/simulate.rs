#![expect(clippy::expect_used, reason = "test code: a simulation that cannot run is a failed test")]
//! The guardrails against a small labelled corpus (`warrant_bench::simulate`), run
//! against a real engine with the default guardrail settings: what a user relies on.
//!
//! * benign agents (steady, diurnal, batch jobs, interactive sessions, retry loops,
//!   deploys, an orchestrator and its workers) are never quarantined and never have a
//!   warrant or task revoked, whatever their shape;
//! * a scope probe is contained within 20 actions, bulk exfiltration within 50, a stolen
//!   warrant within 10;
//! * every attack's actions all reach the engine (the measure counts what it claims to).
//!
//! About 20 agent-days per behaviour (two agents for ten days; an orchestrator with its
//! five workers for four) and three runs per attack, at the reduced volume
//! ([`Volume::Reduced`]): well under a minute and a half in a debug build on two cores.
//! The full corpus is `cargo run --release -p warrant-bench --bin simulate`.

use std::future::Future;

use warrant_bench::simulate::{
    attack_table, benign_table, run_attack, run_benign_plan, Attack, AttackReport, Behaviour, BenignReport, Plan,
    Response, SimConfig, Volume,
};

/// Runs `f` on a current-thread runtime (as the simulator's binary does).
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
}

fn config() -> SimConfig {
    SimConfig { seed: 1, volume: Volume::Reduced, ..SimConfig::default() }
}

/// About 20 agent-days of `behaviour`.
fn benign(behaviour: Behaviour) -> BenignReport {
    let plan = match behaviour {
        Behaviour::Orchestrator => Plan { days: 4, engines: vec![1] },
        _ => Plan { days: 10, engines: vec![2] },
    };
    let report = block_on(run_benign_plan(behaviour, &plan, &config(), &mut |_| {})).expect("the simulation runs");
    eprintln!("{}", benign_table(std::slice::from_ref(&report)));
    assert!(report.tally.decisions > 0, "{}: no decisions were made", behaviour.name());
    report
}

/// Asserts that a benign behaviour got no revocation and no quarantine.
fn never_revoked_or_quarantined(behaviour: Behaviour) {
    let r = benign(behaviour);
    let t = &r.tally;
    assert!(
        t.revocations() == 0,
        "{}: benign traffic was quarantined or had warrants or tasks revoked over {} agent-days: \
         quarantine {}, revoke task {}, revoke warrant {} (signals {:?}, decision codes {:?})",
        behaviour.name(),
        r.agent_days,
        t.response(Response::Quarantine),
        t.response(Response::RevokeTask),
        t.response(Response::RevokeWarrant),
        t.signals,
        t.codes,
    );
    if matches!(behaviour, Behaviour::RetryNoBackoff | Behaviour::RetryBackoff) {
        assert!(
            t.expected_denies > 0 && t.scope_denies == t.expected_denies,
            "{}: every retry of the out-of-scope request is a plain scope deny ({} retries, {} scope denies)",
            behaviour.name(),
            t.expected_denies,
            t.scope_denies,
        );
    }
}

fn attack(attack: Attack) -> AttackReport {
    let report = block_on(run_attack(attack, 3, &config(), &mut |_| {})).expect("the simulation runs");
    eprintln!("{}", attack_table(std::slice::from_ref(&report)));
    for run in &report.runs {
        assert_eq!(run.sent, run.actions, "{}: every action of the attack reaches the engine", attack.name());
    }
    report
}

/// Asserts that every run of `a` was contained within its target.
fn contained_within_target(a: Attack) {
    let target = a.target().expect("an attack with a target");
    let r = attack(a);
    let runs: Vec<String> = r
        .runs
        .iter()
        .map(|c| match c.contained_at {
            Some(k) => format!("{k} ({})", c.by),
            None => format!("not contained in {}", c.actions),
        })
        .collect();
    assert!(r.all_within(target), "{} must be contained within {target} actions; runs: {}", a.name(), runs.join(", "));
}

#[test]
fn steady_agents_are_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Steady);
}

#[test]
fn diurnal_agents_are_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Diurnal);
}

#[test]
fn a_batch_every_200_seconds_is_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Batch200s);
}

#[test]
fn an_hourly_batch_is_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::BatchHourly);
}

#[test]
fn a_daily_batch_is_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::BatchDaily);
}

#[test]
fn interactive_sessions_are_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Interactive);
}

#[test]
fn a_retry_loop_without_backoff_is_denied_by_scope_but_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::RetryNoBackoff);
}

#[test]
fn a_retry_loop_with_backoff_is_denied_by_scope_but_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::RetryBackoff);
}

#[test]
fn weekly_deploys_with_new_tools_are_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Deploy);
}

#[test]
fn an_orchestrator_and_its_workers_are_never_revoked_or_quarantined() {
    never_revoked_or_quarantined(Behaviour::Orchestrator);
}

#[test]
fn scope_probing_is_contained_within_20_actions() {
    contained_within_target(Attack::ScopeProbing);
}

#[test]
fn bulk_exfiltration_is_contained_within_50_actions() {
    contained_within_target(Attack::BulkExfiltration);
}

#[test]
fn a_stolen_warrant_is_contained_within_10_actions() {
    contained_within_target(Attack::StolenWarrant);
}

#[test]
fn the_attacks_without_a_target_run_to_the_end() {
    for a in [Attack::SlowExfiltration, Attack::PrivilegeCreep, Attack::DelegationBurst] {
        attack(a);
    }
}
