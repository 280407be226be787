//! The comparison is honest: Warrant's Cedar evaluation, a bare Cedar evaluation of the
//! whole set, regorus's interpreter and regorus's RVM give the same answer to every probe
//! at every benchmarked size, and the engine fixture decides the benchmark request as the
//! policies say.

use warrant_bench::anchors::{cedar_policy_set, rego_input, warrant_evaluate, BareCedar, RegoInterpreter, RegoVm};
use warrant_bench::fixture::{roomy_audit, EngineFixture};
use warrant_bench::policies::{self, probes, rego_text, Probe};
use warrant_bench::SIZES;
use warrant_engine::Outcome;

#[test]
fn every_set_has_n_policies_in_both_languages() {
    for n in SIZES {
        assert_eq!(policies::compiled(n).policy_ids().len(), n);
        assert_eq!(cedar_policy_set(n).policies().count(), n);
        // One `deny` per forbid plus `default allow` and `allow if not deny`.
        assert_eq!(rego_text(n).matches("\ndeny if {").count(), n - 1);
    }
}

#[test]
fn cedar_and_both_rego_paths_agree_on_every_probe_at_every_size() {
    for n in SIZES {
        let compiled = policies::compiled(n);
        let set = cedar_policy_set(n);
        let mut interpreter = RegoInterpreter::new(n);
        let mut vm = RegoVm::new(n);
        let mut allowed = 0;
        for probe in probes() {
            let warrant = warrant_evaluate(&compiled, &probe);
            let bare = BareCedar::with_set(set.clone(), &probe).is_authorized();
            let input = rego_input(&probe);
            let interpreted = interpreter.eval(&input);
            let executed = vm.eval(&input);
            assert_eq!(
                [warrant, bare, interpreted, executed],
                [probe.allow; 4],
                "n = {n}, probe `{}`: [warrant, bare cedar, regorus interpreter, regorus rvm]",
                probe.name
            );
            allowed += usize::from(probe.allow);
        }
        assert!(allowed > 0 && allowed < probes().len());
    }
}

#[test]
fn the_vm_reused_across_inputs_does_not_carry_results_over() {
    let mut vm = RegoVm::new(50);
    let all = probes();
    for probe in all.iter().chain(all.iter().rev()) {
        assert_eq!(vm.eval(&rego_input(probe)), probe.allow, "{}", probe.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_fixture_decides_as_the_policies_say_and_delegates() {
    let fixture = EngineFixture::open(50, roomy_audit()).await;
    let allow = fixture.engine.decisions().authorize(&fixture.authorize_request(&Probe::bench())).await;
    assert_eq!(allow.outcome, Outcome::Allow, "{allow:?}");
    assert_eq!(allow.policies, vec!["permit-within-scope".to_owned()]);
    // The cached path (second call, same token) decides the same.
    let again = fixture.engine.decisions().authorize_queued(&fixture.authorize_request(&Probe::bench())).await;
    assert_eq!(again.decision().outcome, Outcome::Allow);
    assert!(again.is_queued());
    let over = probes().into_iter().find(|p| p.name == "svc3 over its ceiling").unwrap();
    let deny = fixture.engine.decisions().authorize(&fixture.authorize_request(&over)).await;
    assert_eq!(deny.outcome, Outcome::Deny, "{deny:?}");
    assert_eq!(deny.policies, vec!["svc3-cost".to_owned()]);
    let child = fixture.engine.issuer().token(&fixture.exchange_request()).await.unwrap();
    assert_eq!(child.claims.chain().len(), 2);
    assert_eq!(child.claims.client_id, fixture.child.id);
    fixture.drain().await;
}
