//! The claims a warrant carries (see `docs/wire.md`), as an RFC 9068 JWT access token.

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, HumanId, TaskId, WarrantId};
use crate::permission::PermissionError;
use crate::registry::Mode;
use crate::scope::Scope;
use crate::time::UnixTime;

/// The RFC 8693 `act` claim: the current actor, nesting the prior actors.
///
/// Warrant always records every agent of the chain here, the root agent innermost and the
/// agent acting now outermost, so the chain is recoverable from `act` alone (for
/// autonomous work the root actor is also the `sub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The agent that acted at this link.
    pub sub: AgentId,
    /// The actor before it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Builds the nested claim from a chain given root first. `None` for an empty chain.
    pub fn from_chain(chain: &[AgentId]) -> Option<Actor> {
        chain.iter().fold(None, |inner, sub| Some(Actor { sub: sub.clone(), act: inner.map(Box::new) }))
    }

    /// The chain of agents, root first, current actor last.
    pub fn chain(&self) -> Vec<AgentId> {
        let mut out = Vec::new();
        let mut cur = Some(self);
        while let Some(actor) = cur {
            out.push(actor.sub.clone());
            cur = actor.act.as_deref();
        }
        out.reverse();
        out
    }
}

/// The `task` claim: the unit of intent this warrant belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaim {
    /// The task id.
    pub id: TaskId,
    /// What the work is for, in the words of whoever started it.
    pub purpose: String,
    /// The human whose intent started the task: the `sub` for delegated work, the root
    /// agent's owner for autonomous work (an extension of RFC 9068's claims; see `docs/wire.md`).
    pub human: HumanId,
}

/// The claims of a warrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarrantClaims {
    /// The issuer URL.
    pub iss: String,
    /// The subject: the human for delegated work, the root agent for autonomous work.
    pub sub: String,
    /// The audience.
    pub aud: String,
    /// Expiry.
    pub exp: UnixTime,
    /// Issued at.
    pub iat: UnixTime,
    /// Not before.
    pub nbf: UnixTime,
    /// The warrant id.
    pub jti: WarrantId,
    /// The agent acting now.
    pub client_id: AgentId,
    /// Space-separated permissions.
    pub scope: String,
    /// The actor chain (RFC 8693 §4.1), outermost = current actor.
    pub act: Actor,
    /// The task.
    pub task: TaskClaim,
    /// Delegated or autonomous work.
    pub mode: Mode,
    /// The accountable owner of the agent acting now.
    pub owner: HumanId,
    /// The parent warrant's `jti`; absent at the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<WarrantId>,
    /// Confirmation claim when the warrant is sender-constrained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Budgets (extension): counter -> what this warrant and everything delegated from it
    /// may spend in all, e.g. `{"estimated_cost": 5000}`. Absent when there is none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub budget: std::collections::BTreeMap<String, i64>,
}

/// The confirmation claim (RFC 7800) of a sender-constrained warrant: the holder must
/// prove possession of the key whose JWK SHA-256 thumbprint (RFC 7638) is `jkt` with a
/// DPoP proof (RFC 9449) each time it uses the warrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The base64url SHA-256 thumbprint of the holder's public key.
    pub jkt: String,
}

impl WarrantClaims {
    /// The chain of agents, root first, the agent acting now last.
    pub fn chain(&self) -> Vec<AgentId> {
        self.act.chain()
    }

    /// How many agents the chain holds (1 for a root warrant).
    pub fn depth(&self) -> usize {
        self.chain().len()
    }

    /// The scope, parsed.
    pub fn scope(&self) -> Result<Scope, PermissionError> {
        Scope::parse(&self.scope)
    }

    /// The human this warrant traces to (every warrant has one accountable human).
    pub fn human(&self) -> &HumanId {
        &self.task.human
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_nests_outermost_current() {
        let chain: Vec<AgentId> = (1..=3u8).map(|i| AgentId::from_random([i; 12])).collect();
        let act = Actor::from_chain(&chain).unwrap();
        assert_eq!(act.sub, chain[2]);
        assert_eq!(act.act.as_ref().unwrap().sub, chain[1]);
        assert_eq!(act.act.as_ref().unwrap().act.as_ref().unwrap().sub, chain[0]);
        assert_eq!(act.chain(), chain);
        let json = serde_json::to_value(&act).unwrap();
        assert_eq!(json["act"]["act"]["sub"], chain[0].as_str());
        assert!(json["act"]["act"].get("act").is_none());
    }
}
