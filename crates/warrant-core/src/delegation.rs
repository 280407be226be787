//! The issuance and delegation rules: what scope and lifetime a new warrant may get.
//!
//! These are pure functions of the registry state, the parent warrant and the request.
//! They enforce the invariants listed in `docs/architecture.md`: scope only narrows
//! (covered by every ceiling, expiry no later than the parent's), one accountable human,
//! and bounded chains (depth limit, no agent twice).

use crate::claims::WarrantClaims;
use crate::id::{AgentId, HumanId};
use crate::permission::Permission;
use crate::registry::{Agent, AgentUnusable, Human, Mode};
use crate::scope::{Scope, ScopeSizeError, MAX_SCOPE_LEN};
use crate::time::UnixTime;

/// Issuance limits, with safe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lifetime when the request names none, in seconds (default 300).
    pub default_ttl: i64,
    /// The longest lifetime any warrant gets, in seconds (default 900).
    pub max_ttl: i64,
    /// The most agents one chain may hold (default 5).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { default_ttl: 300, max_ttl: 900, max_depth: 5 }
    }
}

/// Which ceiling a requested scope went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ceiling {
    /// The parent warrant's scope.
    Parent,
    /// The agent's registered max scope.
    AgentMaxScope,
    /// The delegating human's entitlements.
    HumanEntitlements,
}

impl std::fmt::Display for Ceiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ceiling::Parent => "the parent warrant's scope",
            Ceiling::AgentMaxScope => "the agent's max scope",
            Ceiling::HumanEntitlements => "the human's entitlements",
        })
    }
}

/// Why a warrant may not be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationError {
    /// The agent that would hold the warrant may not act.
    #[error("agent `{agent}` {why}")]
    AgentUnusable {
        /// The agent.
        agent: AgentId,
        /// Why.
        why: AgentUnusable,
    },
    /// An agent earlier in the chain may no longer act.
    #[error("agent `{agent}` in the delegation chain {why}")]
    ChainAgentUnusable {
        /// The agent.
        agent: AgentId,
        /// Why.
        why: AgentUnusable,
    },
    /// The agent's owner is disabled.
    #[error("the owner `{owner}` of agent `{agent}` is disabled")]
    OwnerInactive {
        /// The agent.
        agent: AgentId,
        /// Its owner.
        owner: HumanId,
    },
    /// The human on whose behalf the work runs is disabled.
    #[error("human `{0}` is disabled")]
    HumanInactive(HumanId),
    /// The human supplied is not the one the parent warrant traces to.
    #[error("the delegation names human `{given}`, but the parent warrant traces to `{expected}`")]
    HumanMismatch {
        /// The human the parent traces to.
        expected: HumanId,
        /// The human supplied.
        given: HumanId,
    },
    /// The agent's mode does not fit the kind of work.
    #[error("agent `{agent}` is registered as {mode} and cannot take part in {work} work")]
    ModeMismatch {
        /// The agent.
        agent: AgentId,
        /// Its registered mode.
        mode: Mode,
        /// The kind of work requested.
        work: Mode,
    },
    /// A requested permission is not covered by a ceiling.
    #[error("`{permission}` is not covered by {ceiling}")]
    ScopeNotCovered {
        /// The first permission that went over.
        permission: Permission,
        /// The ceiling it went over.
        ceiling: Ceiling,
    },
    /// Nothing is left once the ceilings are intersected.
    #[error("no permission is left within every ceiling")]
    EmptyScope,
    /// A ceiling holds more permissions than a scope may.
    #[error("{ceiling} holds {len} permissions, more than the {MAX_SCOPE_LEN} a scope may hold")]
    CeilingTooLarge {
        /// The ceiling.
        ceiling: Ceiling,
        /// How many permissions it holds.
        len: usize,
    },
    /// The requested scope would not fit in a warrant.
    #[error("the requested scope is too large for a warrant: {0}")]
    RequestedScopeTooLarge(ScopeSizeError),
    /// Everything every ceiling allows would not fit in a warrant.
    #[error("everything every ceiling allows is too large for a warrant ({0}); request an explicit `scope`")]
    IntersectionTooLarge(ScopeSizeError),
    /// The chain would be deeper than the limit.
    #[error("the delegation chain would hold {depth} agents; the limit is {limit}")]
    TooDeep {
        /// The depth the new warrant would have.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// The agent already appears in the chain.
    #[error("agent `{0}` already appears in this delegation chain")]
    Cycle(AgentId),
    /// The parent warrant has expired.
    #[error("the parent warrant has expired")]
    ParentExpired,
    /// The requested lifetime is not a positive number of seconds.
    #[error("the requested lifetime must be a positive number of seconds")]
    BadTtl,
}

impl DelegationError {
    /// Whether the error is about scope (OAuth `invalid_scope`) rather than the grant.
    pub fn is_scope_error(&self) -> bool {
        matches!(
            self,
            DelegationError::ScopeNotCovered { .. }
                | DelegationError::EmptyScope
                | DelegationError::CeilingTooLarge { .. }
                | DelegationError::RequestedScopeTooLarge(_)
                | DelegationError::IntersectionTooLarge(_)
        )
    }
}

/// What a new warrant may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The granted scope.
    pub scope: Scope,
    /// Issued at.
    pub iat: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
    /// The chain of agents, root first, the new holder last.
    pub chain: Vec<AgentId>,
}

/// A request for a root warrant: autonomous (`on_behalf_of` is `None`) or delegated.
#[derive(Debug, Clone, Copy)]
pub struct RootRequest<'a> {
    /// The agent that will hold the warrant.
    pub agent: &'a Agent,
    /// That agent's owner.
    pub owner: &'a Human,
    /// The human the agent acts for, for delegated work.
    pub on_behalf_of: Option<&'a Human>,
    /// The scope asked for; `None` asks for everything every ceiling allows.
    pub scope: Option<&'a Scope>,
    /// The lifetime asked for, in seconds.
    pub ttl: Option<i64>,
    /// The current time.
    pub now: UnixTime,
}

/// A request to delegate a parent warrant to another agent.
#[derive(Debug, Clone, Copy)]
pub struct DelegationRequest<'a> {
    /// The parent warrant's claims (already verified).
    pub parent: &'a WarrantClaims,
    /// The parent warrant's parsed scope.
    pub parent_scope: &'a Scope,
    /// Every agent of the parent's chain, as the registry holds them now, root first.
    pub chain_agents: &'a [Agent],
    /// The owners of those agents, as the registry holds them now (any order; each once
    /// is enough). An agent whose owner is missing here or disabled may not delegate.
    pub chain_owners: &'a [Human],
    /// The agent that will hold the new warrant.
    pub child: &'a Agent,
    /// That agent's owner.
    pub child_owner: &'a Human,
    /// The human the parent traces to (`parent.task.human`: the `sub` for delegated work,
    /// the root agent's owner for autonomous work), as the registry holds them now;
    /// `None` when no longer registered. Must be active for either kind of work; for
    /// delegated work their entitlements are a ceiling.
    pub human: Option<&'a Human>,
    /// The scope asked for; `None` asks for everything every ceiling allows.
    pub scope: Option<&'a Scope>,
    /// The lifetime asked for, in seconds.
    pub ttl: Option<i64>,
    /// The current time.
    pub now: UnixTime,
}

fn check_agent(agent: &Agent, owner: &Human, work: Mode, now: UnixTime) -> Result<(), DelegationError> {
    agent.usable_at(now).map_err(|why| DelegationError::AgentUnusable { agent: agent.id.clone(), why })?;
    if !owner.is_active() {
        return Err(DelegationError::OwnerInactive { agent: agent.id.clone(), owner: owner.id.clone() });
    }
    if agent.mode != work {
        return Err(DelegationError::ModeMismatch { agent: agent.id.clone(), mode: agent.mode, work });
    }
    Ok(())
}

/// Intersects the ceilings, or checks a requested scope against each of them. Either way
/// the result fits in a warrant that verifies ([`Scope::check_warrant_size`]), and the
/// work is bounded: every ceiling holds at most [`MAX_SCOPE_LEN`] permissions, and an
/// intersection stops as soon as it holds more than that.
fn fit_scope(requested: Option<&Scope>, ceilings: &[(&Scope, Ceiling)]) -> Result<Scope, DelegationError> {
    for (ceiling_scope, ceiling) in ceilings {
        let len = ceiling_scope.permissions().len();
        if len > MAX_SCOPE_LEN {
            return Err(DelegationError::CeilingTooLarge { ceiling: *ceiling, len });
        }
    }
    let scope = match requested {
        Some(req) => {
            req.check_warrant_size().map_err(DelegationError::RequestedScopeTooLarge)?;
            for (ceiling_scope, ceiling) in ceilings {
                if let Some(p) = ceiling_scope.first_uncovered(req) {
                    return Err(DelegationError::ScopeNotCovered { permission: p.clone(), ceiling: *ceiling });
                }
            }
            req.clone()
        }
        None => {
            let mut iter = ceilings.iter();
            let mut scope = iter.next().map(|(s, _)| (*s).clone()).unwrap_or_default();
            for (ceiling_scope, _) in iter {
                scope = scope.intersect_within(ceiling_scope, MAX_SCOPE_LEN).map_err(|over| {
                    DelegationError::IntersectionTooLarge(ScopeSizeError::TooMany(over.permissions().len()))
                })?;
            }
            scope.check_warrant_size().map_err(DelegationError::IntersectionTooLarge)?;
            scope
        }
    };
    if scope.is_empty() {
        return Err(DelegationError::EmptyScope);
    }
    Ok(scope)
}

/// The expiry: the requested (or default) lifetime, capped by the maximum, by `cap`
/// (the parent's expiry) and by the agent's own expiry.
fn fit_expiry(
    ttl: Option<i64>,
    now: UnixTime,
    limits: &Limits,
    caps: &[Option<UnixTime>],
) -> Result<UnixTime, DelegationError> {
    let ttl = ttl.unwrap_or(limits.default_ttl);
    if ttl <= 0 {
        return Err(DelegationError::BadTtl);
    }
    let exp = now.plus(ttl.min(limits.max_ttl));
    Ok(caps.iter().flatten().fold(exp, |e, cap| e.min(*cap)))
}

/// Decides a root warrant: autonomous (client credentials) or delegated (human session).
pub fn grant_root(req: &RootRequest<'_>, limits: &Limits) -> Result<Grant, DelegationError> {
    let work = if req.on_behalf_of.is_some() { Mode::Delegated } else { Mode::Autonomous };
    check_agent(req.agent, req.owner, work, req.now)?;
    let mut ceilings = vec![(&req.agent.max_scope, Ceiling::AgentMaxScope)];
    if let Some(human) = req.on_behalf_of {
        if !human.is_active() {
            return Err(DelegationError::HumanInactive(human.id.clone()));
        }
        ceilings.push((&human.entitlements, Ceiling::HumanEntitlements));
    }
    let scope = fit_scope(req.scope, &ceilings)?;
    let exp = fit_expiry(req.ttl, req.now, limits, &[req.agent.expires_at])?;
    Ok(Grant { scope, iat: req.now, exp, chain: vec![req.agent.id.clone()] })
}

/// Decides a delegation of `parent` to `child`.
pub fn grant_delegation(req: &DelegationRequest<'_>, limits: &Limits) -> Result<Grant, DelegationError> {
    let parent = req.parent;
    if parent.exp <= req.now {
        return Err(DelegationError::ParentExpired);
    }
    check_agent(req.child, req.child_owner, parent.mode, req.now)?;
    let chain = parent.chain();
    for agent in req.chain_agents {
        agent.usable_at(req.now).map_err(|why| DelegationError::ChainAgentUnusable { agent: agent.id.clone(), why })?;
        if !req.chain_owners.iter().any(|o| o.id == agent.owner && o.is_active()) {
            return Err(DelegationError::OwnerInactive { agent: agent.id.clone(), owner: agent.owner.clone() });
        }
    }
    let Some(human) = req.human else {
        return Err(DelegationError::HumanInactive(parent.task.human.clone()));
    };
    if human.id != parent.task.human {
        return Err(DelegationError::HumanMismatch { expected: parent.task.human.clone(), given: human.id.clone() });
    }
    if !human.is_active() {
        return Err(DelegationError::HumanInactive(human.id.clone()));
    }
    if chain.contains(&req.child.id) {
        return Err(DelegationError::Cycle(req.child.id.clone()));
    }
    let depth = chain.len() + 1;
    if depth > limits.max_depth {
        return Err(DelegationError::TooDeep { depth, limit: limits.max_depth });
    }
    let mut ceilings = vec![(req.parent_scope, Ceiling::Parent), (&req.child.max_scope, Ceiling::AgentMaxScope)];
    if parent.mode == Mode::Delegated {
        ceilings.push((&human.entitlements, Ceiling::HumanEntitlements));
    }
    let scope = fit_scope(req.scope, &ceilings)?;
    let exp = fit_expiry(req.ttl, req.now, limits, &[Some(parent.exp), req.child.expires_at])?;
    let mut new_chain = chain;
    new_chain.push(req.child.id.clone());
    Ok(Grant { scope, iat: req.now, exp, chain: new_chain })
}
