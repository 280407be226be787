//! The per-agent rules a sweep applies. Each is a plain function of the agent's facts,
//! the rules' thresholds and the time.
//!
//! Evidence holds stable facts (timestamps, not ages), so that a problem that does not
//! change does not rewrite its finding on every sweep.

use crate::govern::evidence::{
    AttestationOverdue, BroadGrant, DelegationDepth, DelegationFanout, Evidence, ExceedsOwner, ExpiredEphemeral,
    IdleAgent, LongLivedGrant, LongLivedWarrant, OrphanedAgent, OverPrivileged, OwnerStanding, StaleKey,
    EXPIRED_EPHEMERAL_FIX, ORPHANED_FIX,
};
use crate::govern::finding::{Observation, Severity};
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

fn observation(severity: Severity, agent: &Agent, evidence: impl Into<Evidence>) -> Observation {
    Observation::new(severity, agent.id.to_string(), evidence)
}

/// One per-agent rule: the finding an agent's facts raise at a time, if any. Each
/// assumes an agent that is not retired ([`observe_agent`] checks that).
pub type AgentRule = fn(&AgentFacts<'_>, &GovernRules, UnixTime) -> Option<Observation>;

/// The per-agent rules, in the order [`observe_agent`] applies them.
pub const AGENT_RULES: [AgentRule; 11] = [
    orphaned_agent,
    expired_ephemeral,
    long_lived_grant,
    idle_agent,
    over_privileged,
    exceeds_owner,
    broad_grant,
    stale_key,
    delegation_depth,
    delegation_fanout,
    attestation_overdue,
];

/// The findings one agent's facts raise at `now`. A retired agent raises none.
pub fn observe_agent(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Vec<Observation> {
    if facts.agent.status == AgentStatus::Retired {
        return Vec::new();
    }
    AGENT_RULES.iter().filter_map(|rule| rule(facts, rules, now)).collect()
}

/// Orphaned agent (high): its owner is disabled or no longer registered.
pub fn orphaned_agent(facts: &AgentFacts<'_>, _rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    let agent = facts.agent;
    let owner_status = match facts.owner {
        Some(owner) if owner.is_active() => return None,
        Some(_) => OwnerStanding::Disabled,
        None => OwnerStanding::Removed,
    };
    Some(observation(
        Severity::High,
        agent,
        OrphanedAgent {
            owner: agent.owner.clone(),
            owner_status,
            agent_status: agent.status,
            fix: ORPHANED_FIX.to_owned(),
        },
    ))
}

/// Expired ephemeral agent: past its expiry but not retired (high while it still holds
/// live warrants, medium otherwise).
pub fn expired_ephemeral(facts: &AgentFacts<'_>, _rules: &GovernRules, now: UnixTime) -> Option<Observation> {
    let expires_at = facts.agent.expires_at.filter(|&at| at <= now)?;
    let severity = if facts.live.count > 0 { Severity::High } else { Severity::Medium };
    Some(observation(
        severity,
        facts.agent,
        ExpiredEphemeral { expires_at, live_warrants: facts.live.count, fix: EXPIRED_EPHEMERAL_FIX.to_owned() },
    ))
}

/// Long-lived grant (medium): an ephemeral agent registered to live longer than
/// allowed, or else live warrants that live longer than allowed.
pub fn long_lived_grant(facts: &AgentFacts<'_>, rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    let agent = facts.agent;
    if let Some(expires_at) = agent.expires_at {
        let lifetime = agent.created_at.until(expires_at);
        if lifetime > rules.max_ephemeral_lifetime {
            return Some(observation(
                Severity::Medium,
                agent,
                LongLivedGrant::Ephemeral {
                    ephemeral_lifetime_secs: lifetime,
                    max_ephemeral_lifetime_secs: rules.max_ephemeral_lifetime,
                },
            ));
        }
    }
    if facts.live.long_lived.is_empty() {
        return None;
    }
    let warrants = facts
        .live
        .long_lived
        .iter()
        .map(|(jti, secs)| LongLivedWarrant { warrant: jti.clone(), lifetime_secs: *secs })
        .collect();
    Some(observation(
        Severity::Medium,
        agent,
        LongLivedGrant::Warrants { warrants, max_warrant_lifetime_secs: rules.max_warrant_lifetime },
    ))
}

/// Idle agent (low): an active agent with no activity for the idle limit.
pub fn idle_agent(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Option<Observation> {
    let agent = facts.agent;
    if agent.status != AgentStatus::Active {
        return None;
    }
    let last_activity = facts.usage.and_then(|u| u.last_seen);
    let idle = last_activity.unwrap_or(agent.created_at).until(now);
    if idle < rules.idle_after {
        return None;
    }
    Some(observation(
        Severity::Low,
        agent,
        IdleAgent {
            last_activity,
            never_active: last_activity.is_none(),
            idle_secs: idle,
            idle_after_secs: rules.idle_after,
        },
    ))
}

/// Over-privileged (medium): an active agent, registered for at least the usage
/// window, whose max scope holds permissions it did not use in it.
pub fn over_privileged(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Option<Observation> {
    let agent = facts.agent;
    if agent.status != AgentStatus::Active {
        return None;
    }
    let used = facts.usage.filter(|_| agent.created_at.until(now) >= rules.usage_window)?.used_permissions();
    let recommended = usage::recommend(&agent.max_scope, &used);
    if recommended.is_empty() || recommended.covers(&agent.max_scope) {
        return None;
    }
    Some(observation(
        Severity::Medium,
        agent,
        OverPrivileged {
            max_scope: agent.max_scope.clone(),
            unused: usage::unused(&agent.max_scope, &used),
            used,
            recommended_scope: recommended,
            window_secs: rules.usage_window,
        },
    ))
}

/// Exceeds owner: the max scope goes beyond the owner's entitlements (high for an
/// autonomous agent, medium otherwise).
pub fn exceeds_owner(facts: &AgentFacts<'_>, _rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    let (agent, owner) = (facts.agent, facts.owner?);
    let beyond: Vec<Permission> =
        agent.max_scope.permissions().iter().filter(|p| !owner.entitlements.covers_permission(p)).cloned().collect();
    if beyond.is_empty() {
        return None;
    }
    let severity = if agent.mode == Mode::Autonomous { Severity::High } else { Severity::Medium };
    Some(observation(
        severity,
        agent,
        ExceedsOwner { beyond_owner: beyond, owner: owner.id.clone(), owner_entitlements: owner.entitlements.clone() },
    ))
}

/// Broad grant (high): open-ended grants on sensitive namespaces.
pub fn broad_grant(facts: &AgentFacts<'_>, rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    let grants: Vec<String> = facts
        .agent
        .max_scope
        .permissions()
        .iter()
        .filter_map(|p| {
            let ns = rules.sensitive_namespaces.iter().find(|ns| broad_on(p, ns))?;
            Some(format!("{p} (namespace `{ns}`)"))
        })
        .collect();
    (!grants.is_empty()).then(|| observation(Severity::High, facts.agent, BroadGrant { grants }))
}

/// Stale key (medium): the agent's key is older than the rotation period.
pub fn stale_key(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Option<Observation> {
    let key_age = facts.key_set_at.until(now);
    (key_age > rules.key_rotation).then(|| {
        observation(
            Severity::Medium,
            facts.agent,
            StaleKey { key_set_at: facts.key_set_at, key_age_secs: key_age, rotation_secs: rules.key_rotation },
        )
    })
}

/// Delegation depth (low): a live warrant's chain is at or next to the depth limit.
pub fn delegation_depth(facts: &AgentFacts<'_>, rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    let (jti, depth) = facts.live.deepest.as_ref()?;
    (rules.max_depth >= 2 && *depth + 1 >= rules.max_depth).then(|| {
        observation(
            Severity::Low,
            facts.agent,
            DelegationDepth { warrant: jti.clone(), depth: *depth, max_depth: rules.max_depth },
        )
    })
}

/// Delegation fan-out (medium): more live delegated warrants than the limit.
pub fn delegation_fanout(facts: &AgentFacts<'_>, rules: &GovernRules, _now: UnixTime) -> Option<Observation> {
    (facts.live.fanout > rules.fanout_limit).then(|| {
        observation(
            Severity::Medium,
            facts.agent,
            DelegationFanout { live_delegations: facts.live.fanout, fanout_limit: rules.fanout_limit },
        )
    })
}

/// Attestation overdue (low): the owner has not re-attested the agent within the
/// cadence (counted from its registration when never attested).
pub fn attestation_overdue(facts: &AgentFacts<'_>, rules: &GovernRules, now: UnixTime) -> Option<Observation> {
    let agent = facts.agent;
    let attested = facts.last_attested.unwrap_or(agent.created_at);
    (attested.until(now) > rules.attestation_every).then(|| {
        observation(
            Severity::Low,
            agent,
            AttestationOverdue {
                last_attested: facts.last_attested,
                due_since: attested.plus(rules.attestation_every),
                owner: agent.owner.clone(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::govern::finding::FindingKind;
    use crate::registry::{HumanStatus, PublicJwk};
    use crate::scope::Scope;
    use crate::{AgentId, HumanId};

    const DAY: i64 = 86_400;

    /// The rules as one function, as they were before each rule had its own (with
    /// `json!` evidence): the reference the split rules must match exactly.
    mod legacy {
        use serde_json::json;

        use crate::govern::finding::{FindingKind, Observation, Severity};
        use crate::govern::rules::{broad_on, usage, AgentFacts, GovernRules};
        use crate::permission::Permission;
        use crate::registry::{Agent, AgentStatus, Mode};
        use crate::time::UnixTime;

        fn observation(
            kind: FindingKind,
            severity: Severity,
            agent: &Agent,
            evidence: serde_json::Value,
        ) -> Observation {
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
                        "fix": "hand the agent to an active owner (POST /v1/agents/{id}/owner), retire it, or enable its owner again",
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
                let warrants: Vec<_> = facts
                    .live
                    .long_lived
                    .iter()
                    .map(|(jti, secs)| json!({"warrant": jti, "lifetime_secs": secs}))
                    .collect();
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
    }

    fn human(entitlements: &str, status: HumanStatus) -> Human {
        Human {
            id: HumanId::from_random([1; 12]),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            entitlements: Scope::parse(entitlements).unwrap(),
            status,
            created_at: UnixTime(0),
            roles: Default::default(),
            external_id: None,
            identity: None,
        }
    }

    fn agent(max: &str) -> Agent {
        Agent {
            id: AgentId::from_random([7; 12]),
            name: "bot".into(),
            owner: HumanId::from_random([1; 12]),
            mode: Mode::Delegated,
            max_scope: Scope::parse(max).unwrap(),
            public_key: Some(PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: "x".into(), kid: None }),
            spiffe_id: None,
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

    /// The facts of one generated case.
    #[derive(Debug, Clone)]
    struct Case {
        owner: Option<(usize, bool)>,
        scope: usize,
        status: usize,
        autonomous: bool,
        created_at: i64,
        expires_in: Option<i64>,
        usage: Option<(Vec<usize>, Option<i64>)>,
        live_count: usize,
        long_lived: Vec<i64>,
        deepest: Option<usize>,
        fanout: usize,
        key_set_at: i64,
        last_attested: Option<i64>,
        now: i64,
        max_depth: usize,
    }

    const SCOPES: [&str; 5] = ["crm.read", "crm.*", "crm.read payments.*", "*", "iam.keys:** crm.read:crm/1"];
    const USED: [(&str, &str); 4] =
        [("crm.read", "crm/1"), ("crm.write", "crm/2"), ("payments.send", "acct/1"), ("iam.keys", "k/1")];

    fn case() -> impl proptest::strategy::Strategy<Value = Case> {
        use proptest::prelude::*;
        let days = |hi: i64| (0..hi).prop_map(|d| d * DAY);
        (
            (proptest::option::of((0..SCOPES.len(), any::<bool>())), 0..SCOPES.len(), 0..3_usize, any::<bool>()),
            (days(200), proptest::option::of(-50 * DAY..50 * DAY)),
            proptest::option::of((proptest::collection::vec(0..USED.len(), 0..4), proptest::option::of(days(200)))),
            (0..5_usize, proptest::collection::vec(900..5000_i64, 0..3), proptest::option::of(0..7_usize), 0..80_usize),
            (days(200), proptest::option::of(days(200)), days(400), 0..7_usize),
        )
            .prop_map(
                |(
                    (owner, scope, status, autonomous),
                    (created_at, expires_in),
                    usage,
                    (live_count, long_lived, deepest, fanout),
                    (key_set_at, last_attested, now, max_depth),
                )| Case {
                    owner,
                    scope,
                    status,
                    autonomous,
                    created_at,
                    expires_in,
                    usage,
                    live_count,
                    long_lived,
                    deepest,
                    fanout,
                    key_set_at,
                    last_attested,
                    now,
                    max_depth,
                },
            )
    }

    /// Runs the split rules and the legacy function on one case.
    fn both(c: &Case) -> (Vec<Observation>, Vec<Observation>) {
        let owner = c.owner.map(|(scope, active)| {
            human(SCOPES[scope], if active { HumanStatus::Active } else { HumanStatus::Disabled })
        });
        let mut a = agent(SCOPES[c.scope]);
        a.status = [AgentStatus::Active, AgentStatus::Suspended, AgentStatus::Retired][c.status];
        a.mode = if c.autonomous { Mode::Autonomous } else { Mode::Delegated };
        a.created_at = UnixTime(c.created_at);
        a.expires_at = c.expires_in.map(|secs| UnixTime(c.created_at + secs.abs() * 3));
        let usage = c.usage.as_ref().map(|(used, seen)| {
            let mut u = AgentUsage::default();
            for &i in used {
                let (action, resource) = USED[i];
                u.used(action, resource, UnixTime(c.created_at + 1));
            }
            if let Some(at) = seen {
                u.seen(UnixTime(*at));
            }
            u
        });
        let live = LiveStats {
            count: c.live_count,
            long_lived: c
                .long_lived
                .iter()
                .enumerate()
                .map(|(i, s)| (WarrantId::from_random([i as u8; 12]), *s))
                .collect(),
            deepest: c.deepest.map(|d| (WarrantId::from_random([9; 12]), d)),
            fanout: c.fanout,
        };
        let facts = AgentFacts {
            agent: &a,
            owner: owner.as_ref(),
            usage: usage.as_ref(),
            live: &live,
            key_set_at: UnixTime(c.key_set_at),
            last_attested: c.last_attested.map(UnixTime),
        };
        let rules = GovernRules { max_depth: c.max_depth, ..GovernRules::default() };
        let now = UnixTime(c.now);
        (observe_agent(&facts, &rules, now), legacy::observe_agent(&facts, &rules, now))
    }

    proptest::proptest! {
        #[test]
        fn the_split_rules_observe_exactly_what_the_single_function_did(c in case()) {
            let (split, before) = both(&c);
            proptest::prop_assert_eq!(split, before);
        }
    }

    #[test]
    fn the_generated_cases_reach_every_per_agent_kind() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let c = case().new_tree(&mut runner).unwrap().current();
            let (split, before) = both(&c);
            assert_eq!(split, before, "{c:?}");
            seen.extend(split.iter().map(|o| o.kind));
        }
        let per_agent: std::collections::BTreeSet<_> = FindingKind::ALL.into_iter().filter(|k| k.per_agent()).collect();
        assert_eq!(seen, per_agent, "some kind was never raised: the comparison would not cover it");
    }

    #[test]
    fn each_kinds_evidence_keeps_its_key_order() {
        let owner = human("crm.read", HumanStatus::Disabled);
        let mut a = agent("crm.read payments.*");
        a.mode = Mode::Autonomous;
        a.expires_at = Some(UnixTime(40 * DAY));
        let mut live = LiveStats {
            count: 3,
            long_lived: vec![(WarrantId::from_random([1; 12]), 3600)],
            deepest: Some((WarrantId::from_random([2; 12]), 4)),
            fanout: 80,
        };
        let mut usage = AgentUsage::default();
        usage.used("crm.read", "crm/1", UnixTime(DAY));
        let now = UnixTime(100 * DAY);
        let rules = GovernRules::default();
        let (h, w1, w2) =
            (HumanId::from_random([1; 12]), WarrantId::from_random([1; 12]), WarrantId::from_random([2; 12]));
        // Key order as the legacy `json!` literals wrote them.
        let expected: Vec<(FindingKind, String)> = vec![
            (FindingKind::OrphanedAgent, format!(r#"{{"owner":"{h}","owner_status":"disabled","agent_status":"active","fix":"hand the agent to an active owner (POST /v1/agents/{{id}}/owner), retire it, or enable its owner again"}}"#)),
            (FindingKind::ExpiredEphemeral, r#"{"expires_at":3456000,"live_warrants":3,"fix":"retire the agent (DELETE /v1/agents/{id}), which revokes what it holds"}"#.to_owned()),
            (FindingKind::LongLivedGrant, r#"{"ephemeral_lifetime_secs":3456000,"max_ephemeral_lifetime_secs":604800}"#.to_owned()),
            (FindingKind::IdleAgent, r#"{"last_activity":86400,"never_active":false,"idle_secs":8553600,"idle_after_secs":2592000}"#.to_owned()),
            (FindingKind::OverPrivileged, r#"{"max_scope":["crm.read","payments.*"],"unused":["payments.*"],"used":["crm.read:crm/1"],"recommended_scope":["crm.read:crm/1"],"window_secs":2592000}"#.to_owned()),
            (FindingKind::ExceedsOwner, format!(r#"{{"beyond_owner":["payments.*"],"owner":"{h}","owner_entitlements":["crm.read"]}}"#)),
            (FindingKind::BroadGrant, r#"{"grants":["payments.* (namespace `payments`)"]}"#.to_owned()),
            (FindingKind::StaleKey, r#"{"key_set_at":0,"key_age_secs":8640000,"rotation_secs":7776000}"#.to_owned()),
            (FindingKind::DelegationDepth, format!(r#"{{"warrant":"{w2}","depth":4,"max_depth":5}}"#)),
            (FindingKind::DelegationFanout, r#"{"live_delegations":80,"fanout_limit":50}"#.to_owned()),
            (FindingKind::AttestationOverdue, format!(r#"{{"last_attested":null,"due_since":7776000,"owner":"{h}"}}"#)),
        ];
        let obs = observe_agent(&facts(&a, Some(&owner), Some(&usage), &live), &rules, now);
        let got: Vec<(FindingKind, String)> = obs
            .iter()
            .map(|o| (o.kind, serde_json::to_string(&Evidence::parse(o.kind, &o.evidence).unwrap()).unwrap()))
            .collect();
        assert_eq!(got, expected);
        // The other shape of a long-lived grant: warrants, when the agent is not ephemeral.
        a.expires_at = None;
        live.deepest = None;
        let obs = long_lived_grant(&facts(&a, Some(&owner), Some(&usage), &live), &rules, now).unwrap();
        let text = serde_json::to_string(&Evidence::parse(obs.kind, &obs.evidence).unwrap()).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"warrants":[{{"warrant":"{w1}","lifetime_secs":3600}}],"max_warrant_lifetime_secs":900}}"#)
        );
    }
}
