//! What a simulation counted, and how it is reported: per benign behaviour the responses
//! its decisions got (every one of them a false response), per attack where it was
//! contained; as Markdown tables and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::behaviour::{Attack, Behaviour};
use super::classify::Response;

/// Counts over every decision (and delegation) of one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Decisions made (`Decisions::authorize`), whatever their outcome.
    pub decisions: u64,
    /// Of them, allows.
    pub allowed: u64,
    /// Decisions per code (`allow`, `scope`, `revoked`, …).
    pub codes: BTreeMap<String, u64>,
    /// Denies by the warrant's scope.
    pub scope_denies: u64,
    /// Decisions on requests the behaviour itself expected to be denied (retries of a
    /// request outside the scope).
    pub expected_denies: u64,
    /// Denies because an earlier response revoked the warrant or suspended the agent
    /// (codes `revoked` and `agent`): the agent kept trying.
    pub after_response: u64,
    /// Actions not sent because the actor held no warrant (its delegation was refused).
    pub no_warrant: u64,
    /// Delegations issued (token exchanges).
    pub delegations: u64,
    /// Delegations refused.
    pub refused_delegations: u64,
    /// Root warrants minted.
    pub mints: u64,
    /// Root warrants refused (a quarantined agent cannot mint).
    pub mint_failures: u64,
    /// Deploys announced.
    pub deploys: u64,
    /// Signals raised, per kind (`novel_action`, …).
    pub signals: BTreeMap<String, u64>,
    /// Guardrail responses, per kind (decisions and refused delegations).
    pub responses: BTreeMap<Response, u64>,
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.decisions += other.decisions;
        self.allowed += other.allowed;
        for (k, v) in &other.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        self.scope_denies += other.scope_denies;
        self.expected_denies += other.expected_denies;
        self.after_response += other.after_response;
        self.no_warrant += other.no_warrant;
        self.delegations += other.delegations;
        self.refused_delegations += other.refused_delegations;
        self.mints += other.mints;
        self.mint_failures += other.mint_failures;
        self.deploys += other.deploys;
        for (k, v) in &other.signals {
            *self.signals.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.responses {
            *self.responses.entry(*k).or_default() += v;
        }
    }

    /// How many responses of kind `r`.
    pub fn response(&self, r: Response) -> u64 {
        self.responses.get(&r).copied().unwrap_or(0)
    }

    /// Every response of any kind.
    pub fn all_responses(&self) -> u64 {
        self.responses.values().sum()
    }

    /// Revocations and quarantines (warrant, task, agent).
    pub fn revocations(&self) -> u64 {
        Response::ALL.into_iter().filter(|r| r.is_revocation()).map(|r| self.response(r)).sum()
    }

    /// Signals of every kind.
    pub fn all_signals(&self) -> u64 {
        self.signals.values().sum()
    }

    fn to_json(&self) -> Value {
        let responses: BTreeMap<&str, u64> = self.responses.iter().map(|(r, n)| (r.name(), *n)).collect();
        json!({
            "decisions": self.decisions, "allowed": self.allowed, "codes": self.codes,
            "scope_denies": self.scope_denies, "expected_denies": self.expected_denies,
            "after_response": self.after_response, "no_warrant": self.no_warrant,
            "delegations": self.delegations, "refused_delegations": self.refused_delegations,
            "mints": self.mints, "mint_failures": self.mint_failures, "deploys": self.deploys,
            "signals": self.signals, "responses": responses,
        })
    }
}

/// What happened to one numbered action of an attack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// It was sent (decided, or refused for want of a warrant).
    pub seen: bool,
    /// It was allowed (a decision's allow, or a delegation issued).
    pub allowed: bool,
    /// The guardrail response its decision (or refused delegation) carried.
    pub response: Option<Response>,
    /// It was a refused delegation, or an action without a warrant for one.
    pub refused: bool,
}

/// Where one run of an attack was contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containment {
    /// N: the attack's actions.
    pub actions: u32,
    /// How many of them were sent (decided, or refused for want of a warrant): N unless
    /// the run ended early.
    pub sent: u32,
    /// The smallest k such that action k and every later one was not allowed; `None`
    /// when action N was allowed (not contained in N).
    pub contained_at: Option<u32>,
    /// The response that contained it (the first at or after k), or `denied` (plain
    /// scope or policy denies) or `refused` (refused delegations); empty when not
    /// contained.
    pub by: String,
    /// The first action (any k) that got a response, and which.
    pub first_response: Option<(u32, Response)>,
}

impl Containment {
    /// The containment of an attack whose actions went as `steps` (action k at index
    /// k - 1).
    pub fn of(steps: &[Step]) -> Containment {
        let actions = u32::try_from(steps.len()).unwrap_or(u32::MAX);
        let sent = u32::try_from(steps.iter().filter(|s| s.seen).count()).unwrap_or(u32::MAX);
        let contained_from = match steps.iter().rposition(|s| s.allowed) {
            None => Some(0),
            Some(i) if i + 1 >= steps.len() => None,
            Some(i) => Some(i + 1),
        };
        let first_response = steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.response.map(|r| (u32::try_from(i + 1).unwrap_or(u32::MAX), r)));
        let Some(from) = contained_from else {
            return Containment { actions, sent, contained_at: None, by: String::new(), first_response };
        };
        let rest = steps.get(from..).unwrap_or_default();
        let by = match rest.iter().find_map(|s| s.response) {
            Some(r) => r.name().to_owned(),
            None if rest.iter().any(|s| s.refused) => "refused".to_owned(),
            None => "denied".to_owned(),
        };
        Containment {
            actions,
            sent,
            contained_at: Some(u32::try_from(from + 1).unwrap_or(u32::MAX)),
            by,
            first_response,
        }
    }

    /// k for sorting: N + 1 when not contained.
    fn key(&self) -> u32 {
        self.contained_at.unwrap_or(self.actions.saturating_add(1))
    }
}

/// One benign behaviour's results.
#[derive(Debug, Clone)]
pub struct BenignReport {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// Agents simulated (each orchestrator's workers included).
    pub agents: u64,
    /// Simulated days.
    pub days: u32,
    /// Agent-days: agents times days.
    pub agent_days: u64,
    /// Engines it was spread over (each with its own database).
    pub engines: usize,
    /// What it counted.
    pub tally: Tally,
    /// Wall time.
    pub wall: Duration,
}

impl BenignReport {
    /// False responses (every response to a benign behaviour is one) per 10,000
    /// agent-days.
    pub fn false_per_10k(&self) -> f64 {
        if self.agent_days == 0 {
            return 0.0;
        }
        self.tally.all_responses() as f64 * 10_000.0 / self.agent_days as f64
    }

    /// Decisions per second of wall time.
    pub fn rate(&self) -> f64 {
        per_second(self.tally.decisions, self.wall)
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "behaviour": self.behaviour.name(), "agents": self.agents, "days": self.days,
            "agent_days": self.agent_days, "engines": self.engines, "wall_s": self.wall.as_secs_f64(),
            "decisions_per_s": self.rate(), "false_responses_per_10k_agent_days": self.false_per_10k(),
            "tally": self.tally.to_json(),
        })
    }
}

/// One attack's results over its runs.
#[derive(Debug, Clone)]
pub struct AttackReport {
    /// The attack.
    pub attack: Attack,
    /// Each run's containment.
    pub runs: Vec<Containment>,
    /// What the runs counted together (the victims' own traffic included).
    pub tally: Tally,
    /// Wall time.
    pub wall: Duration,
}

impl AttackReport {
    fn sorted(&self) -> Vec<&Containment> {
        let mut v: Vec<&Containment> = self.runs.iter().collect();
        v.sort_by_key(|c| c.key());
        v
    }

    /// The median run (the lower median for an even number of runs).
    pub fn median(&self) -> Option<&Containment> {
        let v = self.sorted();
        v.get(v.len().saturating_sub(1) / 2).copied()
    }

    /// The worst run (contained last, or not at all).
    pub fn worst(&self) -> Option<&Containment> {
        self.sorted().last().copied()
    }

    /// Whether every run was contained within `k` actions.
    pub fn all_within(&self, k: u32) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(|c| c.contained_at.is_some_and(|at| at <= k))
    }

    /// What contained the runs: the most frequent answer, with its share when the runs
    /// differ, and the median action of the first response (`revoke warrant @5`).
    pub fn by(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &self.runs {
            let by = if c.contained_at.is_some() { c.by.as_str() } else { "not contained" };
            *counts.entry(by).or_default() += 1;
        }
        let Some((top, n)) = counts.iter().max_by_key(|(_, n)| **n) else { return "-".into() };
        let mut out = (*top).to_owned();
        if *n < self.runs.len() {
            let _ = write!(out, " ({n}/{})", self.runs.len());
        }
        let mut firsts: Vec<u32> = self.runs.iter().filter_map(|c| c.first_response.map(|(k, _)| k)).collect();
        firsts.sort_unstable();
        if let Some(k) = firsts.get(firsts.len().saturating_sub(1) / 2) {
            let _ = write!(out, ", first response @{k}");
        }
        out
    }

    /// Decisions per second of wall time.
    pub fn rate(&self) -> f64 {
        per_second(self.tally.decisions, self.wall)
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|c| {
                json!({
                    "actions": c.actions, "sent": c.sent, "contained_at": c.contained_at, "by": c.by,
                    "first_response": c.first_response.map(|(k, r)| json!({"at": k, "response": r.name()})),
                })
            })
            .collect();
        json!({
            "attack": self.attack.name(), "target": self.attack.target(),
            "median": self.median().and_then(|c| c.contained_at), "worst": self.worst().and_then(|c| c.contained_at),
            "by": self.by(), "runs": runs, "wall_s": self.wall.as_secs_f64(), "decisions_per_s": self.rate(),
            "tally": self.tally.to_json(),
        })
    }
}

fn per_second(n: u64, wall: Duration) -> f64 {
    let s = wall.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// `n` with thousands separators (`12,345`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The benign behaviours' table.
pub fn benign_table(reports: &[BenignReport]) -> String {
    let mut out = String::from(
        "| behaviour | agent-days | decisions | signals | throttle | approval | revoke warrant | revoke task | quarantine | false responses per 10,000 agent-days |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        let t = &r.tally;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.behaviour.name(),
            thousands(r.agent_days),
            thousands(t.decisions),
            thousands(t.all_signals()),
            thousands(t.response(Response::Throttle)),
            thousands(t.response(Response::Approval)),
            thousands(t.response(Response::RevokeWarrant)),
            thousands(t.response(Response::RevokeTask)),
            thousands(t.response(Response::Quarantine)),
            r.false_per_10k(),
        );
    }
    out
}

/// The attacks' table.
pub fn attack_table(reports: &[AttackReport]) -> String {
    let mut out = String::from(
        "| attack | runs | contained within (median) | worst | by | target |\n| --- | ---: | ---: | ---: | --- | ---: |\n",
    );
    let within = |c: Option<&Containment>| match c {
        Some(Containment { contained_at: Some(k), .. }) => k.to_string(),
        Some(c) => format!("not contained in {}", c.actions),
        None => "-".into(),
    };
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.attack.name(),
            r.runs.len(),
            within(r.median()),
            within(r.worst()),
            r.by(),
            r.attack.target().map_or_else(|| "-".to_owned(), |t| t.to_string()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(allowed: &[bool]) -> Vec<Step> {
        allowed.iter().map(|a| Step { seen: true, allowed: *a, ..Step::default() }).collect()
    }

    #[test]
    fn containment_is_the_first_action_after_the_last_allow() {
        let c = Containment::of(&steps(&[true, true, false, true, false, false]));
        assert_eq!(c.contained_at, Some(5));
        assert_eq!(c.by, "denied");
        let c = Containment::of(&steps(&[false, false]));
        assert_eq!(c.contained_at, Some(1));
        let c = Containment::of(&steps(&[false, true]));
        assert_eq!(c.contained_at, None);
        let mut s = steps(&[true, false, false, false]);
        if let Some(x) = s.get_mut(2) {
            x.response = Some(Response::Quarantine);
        }
        let c = Containment::of(&s);
        assert_eq!(
            (c.contained_at, c.by.as_str(), c.first_response),
            (Some(2), "quarantine", Some((3, Response::Quarantine)))
        );
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
