//! The per-agent rules a sweep applies. Each is a plain function of the agent's facts,
//! the rules' thresholds and the time.
//!
//! Evidence holds stable facts (timestamps, not ages), so that a problem that does not
//! change does not rewrite its finding on every sweep.

use serde_json::json;

use crate::govern::finding::{FindingKind, Observation, Severity};
use crate::govern::usage::{self, AgentUsage};
use crate::id::WarrantId;
use crate::permission::Permission;
use crate::registry::{Agent, AgentStatus, Human, Mode};
use crate::time::UnixTime;

/// The thresholds the rules apply. Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernRules {
    /// An active agent with no activity for this long is idle (default 30 days).
    pub idle_after: i64,
    /// How far back use counts; an agent is judged over-privileged only once it has
    /// been registered this long (default 30 days).
    pub usage_window: i64,
    /// An agent key older than this is stale (default 90 days).
    pub key_rotation: i64,
    /// How often an owner must re-attest each agent (default 90 days).
    pub attestation_every: i64,
    /// A live warrant whose lifetime is longer than this is long-lived (default 900 s).
    pub max_warrant_lifetime: i64,
    /// An ephemeral agent registered to live longer than this is long-lived (default 7 days).
    pub max_ephemeral_lifetime: i64,
    /// Namespaces (first action segment) where an open-ended grant is a finding.
    pub sensitive_namespaces: Vec<String>,
    /// The delegation depth limit (the most agents one chain may hold).
    pub max_depth: usize,
    /// More live delegated warrants than this from one agent is unusual fan-out.
    pub fanout_limit: usize,
}

impl Default for GovernRules {
    fn default() -> Self {
        const DAY: i64 = 86_400;
        GovernRules {
            idle_after: 30 * DAY,
            usage_window: 30 * DAY,
            key_rotation: 90 * DAY,
            attestation_every: 90 * DAY,
            max_warrant_lifetime: 900,
            max_ephemeral_lifetime: 7 * DAY,
            sensitive_namespaces: ["payments", "iam", "secrets", "admin"].map(str::to_owned).to_vec(),
            max_depth: 5,
            fanout_limit: 50,
        }
    }
}

/// What an agent holds right now: its live (unexpired, unrevoked) warrants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// How many live warrants it holds.
    pub count: usize,
    /// Its live warrants that live longer than the rules allow, with their lifetimes.
    pub long_lived: Vec<(WarrantId, i64)>,
    /// The longest chain among its live warrants, and that warrant.
    pub deepest: Option<(WarrantId, usize)>,
    /// How many live warrants were delegated from its warrants.
    pub fanout: usize,
}

/// Everything the rules look at for one agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentFacts<'a> {
    /// The agent as registered.
    pub agent: &'a Agent,
    /// Its owner, when still registered.
    pub owner: Option<&'a Human>,
    /// What it used in the usage window.
    pub usage: Option<&'a AgentUsage>,
    /// What it holds now.
    pub live: &'a LiveStats,
    /// When its current key was registered.
    pub key_set_at: UnixTime,
    /// When its owner last attested it.
    pub last_attested: Option<UnixTime>,
}

/// Whether `p` grants an open-ended resource (`**` within the first segment, or no
/// resource part) on the namespace `ns`.
fn broad_on(p: &Permission, ns: &str) -> bool {
    let covers_ns = p.is_any_action() || p.namespace() == ns;
    // Open-ended (`**` last, or no resource) with at most one segment before the `**`.
    covers_ns && p.has_open_resource() && p.resource_segments() <= 2
}

fn observation(kind: FindingKind, severity: Severity, agent: &Agent, evidence: serde_json::Value) -> Observation {
    Observation { kind, severity, subject: agent.id.to_string(), evidence }
}

/// The findings one agent's facts raise at `now`. A retired agent raises none.
pub fn observe_agent(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Vec<Observation> {
    let agent = facts.agent;
    let mut out = Vec::new();
    if agent.status == AgentStatus::Retired {
        return out;
    }
    let active = agent.status == AgentStatus::Active;

    match facts.owner {
        Some(owner) if owner.is_active() => {}
        owner => out.push(observation(
            FindingKind::OrphanedAgent,
            Severity::High,
            agent,
            json!({
                "owner": agent.owner,
                "owner_status": owner.map_or("removed", |h| if h.is_active() { "active" } else { "disabled" }),
                "agent_status": agent.status.as_str(),
                "fix": "retire the agent, or re-enable its owner",
            }),
        )),
    }

    if let Some(expires_at) = agent.expires_at {
        if expires_at <= now {
            let severity = if facts.live.count > 0 { Severity::High } else { Severity::Medium };
            out.push(observation(
                FindingKind::ExpiredEphemeral,
                severity,
                agent,
                json!({
                    "expires_at": expires_at,
                    "live_warrants": facts.live.count,
                    "fix": "retire the agent (DELETE /v1/agents/{id}), which revokes what it holds",
                }),
            ));
        }
        let lifetime = agent.created_at.until(expires_at);
        if lifetime > rules.max_ephemeral_lifetime {
            out.push(observation(
                FindingKind::LongLivedGrant,
                Severity::Medium,
                agent,
                json!({
                    "ephemeral_lifetime_secs": lifetime,
                    "max_ephemeral_lifetime_secs": rules.max_ephemeral_lifetime,
                }),
            ));
        }
    }
    if !facts.live.long_lived.is_empty() && !out.iter().any(|o| o.kind == FindingKind::LongLivedGrant) {
        let warrants: Vec<_> =
            facts.live.long_lived.iter().map(|(jti, secs)| json!({"warrant": jti, "lifetime_secs": secs})).collect();
        out.push(observation(
            FindingKind::LongLivedGrant,
            Severity::Medium,
            agent,
            json!({"warrants": warrants, "max_warrant_lifetime_secs": rules.max_warrant_lifetime}),
        ));
    }

    if active {
        let last = facts.usage.and_then(|u| u.last_seen).unwrap_or(agent.created_at);
        let idle = last.until(now);
        if idle >= rules.idle_after {
            let never = facts.usage.and_then(|u| u.last_seen).is_none();
            out.push(observation(
                FindingKind::IdleAgent,
                Severity::Low,
                agent,
                json!({
                    "last_activity": facts.usage.and_then(|u| u.last_seen),
                    "never_active": never,
                    "idle_secs": idle,
                    "idle_after_secs": rules.idle_after,
                }),
            ));
        }
        if let Some(used) = facts.usage.filter(|_| agent.created_at.until(now) >= rules.usage_window) {
            let used = used.used_permissions();
            let recommended = usage::recommend(&agent.max_scope, &used);
            if !recommended.is_empty() && !recommended.covers(&agent.max_scope) {
                out.push(observation(
                    FindingKind::OverPrivileged,
                    Severity::Medium,
                    agent,
                    json!({
                        "max_scope": agent.max_scope,
                        "unused": usage::unused(&agent.max_scope, &used),
                        "used": used,
                        "recommended_scope": recommended,
                        "window_secs": rules.usage_window,
                    }),
                ));
            }
        }
    }

    if let Some(owner) = facts.owner {
        let beyond: Vec<&Permission> =
            agent.max_scope.permissions().iter().filter(|p| !owner.entitlements.covers_permission(p)).collect();
        if !beyond.is_empty() {
            let severity = if agent.mode == Mode::Autonomous { Severity::High } else { Severity::Medium };
            out.push(observation(
                FindingKind::ExceedsOwner,
                severity,
                agent,
                json!({"beyond_owner": beyond, "owner": owner.id, "owner_entitlements": owner.entitlements}),
            ));
        }
    }

    let broad: Vec<String> = agent
        .max_scope
        .permissions()
        .iter()
        .filter_map(|p| {
            let ns = rules.sensitive_namespaces.iter().find(|ns| broad_on(p, ns))?;
            Some(format!("{p} (namespace `{ns}`)"))
        })
        .collect();
    if !broad.is_empty() {
        out.push(observation(FindingKind::BroadGrant, Severity::High, agent, json!({"grants": broad})));
    }

    let key_age = facts.key_set_at.until(now);
    if key_age > rules.key_rotation {
        out.push(observation(
            FindingKind::StaleKey,
            Severity::Medium,
            agent,
            json!({"key_set_at": facts.key_set_at, "key_age_secs": key_age, "rotation_secs": rules.key_rotation}),
        ));
    }

    if let Some((jti, depth)) = &facts.live.deepest {
        if rules.max_depth >= 2 && *depth + 1 >= rules.max_depth {
            out.push(observation(
                FindingKind::DelegationDepth,
                Severity::Low,
                agent,
                json!({"warrant": jti, "depth": depth, "max_depth": rules.max_depth}),
            ));
        }
    }
    if facts.live.fanout > rules.fanout_limit {
        out.push(observation(
            FindingKind::DelegationFanout,
            Severity::Medium,
            agent,
            json!({"live_delegations": facts.live.fanout, "fanout_limit": rules.fanout_limit}),
        ));
    }

    let attested = facts.last_attested.unwrap_or(agent.created_at);
    if attested.until(now) > rules.attestation_every {
        out.push(observation(
            FindingKind::AttestationOverdue,
            Severity::Low,
            agent,
            json!({
                "last_attested": facts.last_attested,
                "due_since": attested.plus(rules.attestation_every),
                "owner": agent.owner,
            }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{HumanStatus, PublicJwk};
    use crate::scope::Scope;
    use crate::{AgentId, HumanId};

    const DAY: i64 = 86_400;

    fn human(entitlements: &str, status: HumanStatus) -> Human {
        Human {
            id: HumanId::from_random([1; 12]),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            entitlements: Scope::parse(entitlements).unwrap(),
            status,
            created_at: UnixTime(0),
        }
    }

    fn agent(max: &str) -> Agent {
        Agent {
            id: AgentId::from_random([7; 12]),
            name: "bot".into(),
            owner: HumanId::from_random([1; 12]),
            mode: Mode::Delegated,
            max_scope: Scope::parse(max).unwrap(),
            public_key: PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: "x".into(), kid: None },
            status: AgentStatus::Active,
            expires_at: None,
            labels: Default::default(),
            created_at: UnixTime(0),
        }
    }

    fn kinds(obs: &[Observation]) -> Vec<FindingKind> {
        let mut k: Vec<_> = obs.iter().map(|o| o.kind).collect();
        k.sort();
        k
    }

    fn facts<'a>(
        agent: &'a Agent,
        owner: Option<&'a Human>,
        usage: Option<&'a AgentUsage>,
        live: &'a LiveStats,
    ) -> AgentFacts<'a> {
        AgentFacts { agent, owner, usage, live, key_set_at: UnixTime(0), last_attested: None }
    }

    #[test]
    fn a_healthy_agent_raises_nothing() {
        let owner = human("crm.*", HumanStatus::Active);
        let a = agent("crm.read");
        let mut usage = AgentUsage::default();
        usage.used("crm.read", "crm/1", UnixTime(DAY));
        let live = LiveStats::default();
        let obs =
            observe_agent(&facts(&a, Some(&owner), Some(&usage), &live), &GovernRules::default(), UnixTime(2 * DAY));
        assert!(obs.is_empty(), "{obs:?}");
    }

    #[test]
    fn each_problem_raises_its_kind() {
        let owner = human("crm.read", HumanStatus::Disabled);
        let mut a = agent("crm.read payments.*");
        a.mode = Mode::Autonomous;
        a.expires_at = Some(UnixTime(40 * DAY));
        let live = LiveStats {
            count: 3,
            long_lived: vec![(WarrantId::from_random([1; 12]), 3600)],
            deepest: Some((WarrantId::from_random([2; 12]), 4)),
            fanout: 80,
        };
        let mut usage = AgentUsage::default();
        usage.used("crm.read", "crm/1", UnixTime(DAY));
        let now = UnixTime(100 * DAY);
        let obs = observe_agent(&facts(&a, Some(&owner), Some(&usage), &live), &GovernRules::default(), now);
        assert_eq!(
            kinds(&obs),
            vec![
                FindingKind::OrphanedAgent,
                FindingKind::ExpiredEphemeral,
                FindingKind::IdleAgent,
                FindingKind::OverPrivileged,
                FindingKind::ExceedsOwner,
                FindingKind::BroadGrant,
                FindingKind::LongLivedGrant,
                FindingKind::StaleKey,
                FindingKind::DelegationDepth,
                FindingKind::DelegationFanout,
                FindingKind::AttestationOverdue,
            ]
        );
        let over = obs.iter().find(|o| o.kind == FindingKind::OverPrivileged).unwrap();
        assert_eq!(over.evidence["recommended_scope"], json!(["crm.read:crm/1"]));
        assert_eq!(over.evidence["unused"], json!(["payments.*"]));
        // Ages are computed from the sweep's `now`, as documented.
        let idle = obs.iter().find(|o| o.kind == FindingKind::IdleAgent).unwrap();
        assert_eq!(idle.evidence["idle_secs"], json!(99 * DAY), "{:?}", idle.evidence);
        assert_eq!(idle.evidence["last_activity"], json!(DAY));
        let stale = obs.iter().find(|o| o.kind == FindingKind::StaleKey).unwrap();
        assert_eq!(stale.evidence["key_age_secs"], json!(100 * DAY), "{:?}", stale.evidence);
        assert_eq!(stale.evidence["key_set_at"], json!(0));
    }

    #[test]
    fn a_retired_agent_raises_nothing_and_a_young_one_is_not_judged_over_privileged() {
        let owner = human("*", HumanStatus::Active);
        let mut a = agent("crm.*");
        let mut usage = AgentUsage::default();
        usage.used("crm.read", "crm/1", UnixTime(10));
        let live = LiveStats::default();
        let young =
            observe_agent(&facts(&a, Some(&owner), Some(&usage), &live), &GovernRules::default(), UnixTime(DAY));
        assert!(young.is_empty(), "{young:?}");
        a.status = AgentStatus::Retired;
        let retired = observe_agent(&facts(&a, None, None, &live), &GovernRules::default(), UnixTime(1000 * DAY));
        assert!(retired.is_empty());
    }

    #[test]
    fn broad_grants_are_open_ended_grants_on_sensitive_namespaces() {
        let p = |s: &str| Permission::parse(s).unwrap();
        assert!(broad_on(&p("payments.refund"), "payments"));
        assert!(broad_on(&p("payments.*:**"), "payments"));
        assert!(broad_on(&p("*:customers/**"), "payments"));
        assert!(!broad_on(&p("payments.refund:customers/42/**"), "payments"));
        assert!(!broad_on(&p("payments.refund:customers/42"), "payments"));
        assert!(!broad_on(&p("crm.*"), "payments"));
    }
}
