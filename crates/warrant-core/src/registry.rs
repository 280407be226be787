//! Humans and agents as the registry holds them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::id::{AgentId, HumanId};
use crate::scope::Scope;
use crate::time::UnixTime;

/// Whether a human may still start or delegate work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HumanStatus {
    /// May own agents and delegate.
    Active,
    /// May do nothing; every warrant on their behalf is refused.
    Disabled,
}

/// A person: the only principal whose intent can start work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Human {
    /// The human's id.
    pub id: HumanId,
    /// Display name.
    pub name: String,
    /// Contact email.
    pub email: String,
    /// The permissions this human may delegate to agents.
    pub entitlements: Scope,
    /// Active or disabled.
    pub status: HumanStatus,
    /// When the human was registered.
    pub created_at: UnixTime,
    /// The human's roles (e.g. `editor`), which Cedar sees as `principal.roles` when the
    /// human is the subject of a decision. Sorted, each at most once; omitted from JSON
    /// when empty, so records written before roles existed read the same.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<String>,
    /// What an identity provider calls this human (its `sub`, e.g. an opaque id), unique
    /// among humans: an enforcement point may name the human by it. Omitted from JSON
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The identity provider the human signs in with, and who they are there; absent for
    /// humans an administrator registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<FederatedIdentity>,
}

/// A human as a trusted OpenID provider knows them: its issuer and their `sub` there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FederatedIdentity {
    /// The provider's issuer identifier.
    pub issuer: String,
    /// The human's subject at that provider.
    pub subject: String,
}

impl Human {
    /// Whether the human may start or delegate work.
    pub fn is_active(&self) -> bool {
        self.status == HumanStatus::Active
    }
}

/// How an agent obtains its root warrants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Acts on behalf of a human, who presents a session token (`sub` = the human).
    Delegated,
    /// Acts under its own identity with a client assertion (`sub` = the agent).
    Autonomous,
}

impl Mode {
    /// The wire name, `delegated` or `autonomous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Delegated => "delegated",
            Mode::Autonomous => "autonomous",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An agent's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// May authenticate and receive warrants.
    Active,
    /// Temporarily refused; may be resumed.
    Suspended,
    /// Permanently refused.
    Retired,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Retired => "retired",
        }
    }
}

/// An Ed25519 public key as a JWK (RFC 8037): `{"kty":"OKP","crv":"Ed25519","x":…}`.
///
/// The core only carries it; `warrant-token` checks that `x` is a valid key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicJwk {
    /// Key type; always `OKP`.
    pub kty: String,
    /// Curve; always `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Optional key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A registered non-human identity with exactly one accountable human owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// The accountable human.
    pub owner: HumanId,
    /// Delegated or autonomous.
    pub mode: Mode,
    /// The ceiling of anything this agent may ever hold.
    pub max_scope: Scope,
    /// The key its client assertions are signed with; `None` for an agent that
    /// authenticates with a SPIFFE JWT-SVID instead.
    pub public_key: Option<PublicJwk>,
    /// The SPIFFE ID it authenticates as (with a JWT-SVID of its trust domain), instead of
    /// a key of its own.
    pub spiffe_id: Option<String>,
    /// Lifecycle state.
    pub status: AgentStatus,
    /// When an ephemeral agent stops being usable.
    pub expires_at: Option<UnixTime>,
    /// Free-form labels (team, environment, …).
    pub labels: BTreeMap<String, String>,
    /// When the agent was registered.
    pub created_at: UnixTime,
}

impl Agent {
    /// Whether the agent's own state lets it act at `now` (status and expiry; the owner
    /// is checked separately).
    pub fn usable_at(&self, now: UnixTime) -> Result<(), AgentUnusable> {
        match self.status {
            AgentStatus::Active => {}
            AgentStatus::Suspended => return Err(AgentUnusable::Suspended),
            AgentStatus::Retired => return Err(AgentUnusable::Retired),
        }
        match self.expires_at {
            Some(exp) if exp <= now => Err(AgentUnusable::Expired),
            _ => Ok(()),
        }
    }
}

/// Why an agent may not act right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentUnusable {
    /// Its status is `suspended`.
    #[error("is suspended")]
    Suspended,
    /// Its status is `retired`.
    #[error("is retired")]
    Retired,
    /// Its ephemeral lifetime has ended.
    #[error("has expired")]
    Expired,
}

/// What a human's session token is good for: one purpose each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionPurpose {
    /// Starting delegated work: the `subject_token` of a token exchange, nothing else.
    Delegation,
    /// The human's own approvals and attestations, never a token exchange.
    Approval,
}

impl SessionPurpose {
    /// Every purpose, in declaration order.
    pub const ALL: [SessionPurpose; 2] = [SessionPurpose::Delegation, SessionPurpose::Approval];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionPurpose::Delegation => "delegation",
            SessionPurpose::Approval => "approval",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<SessionPurpose> {
        SessionPurpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_purposes_keep_their_stored_names() {
        for purpose in SessionPurpose::ALL {
            let json = serde_json::to_value(purpose).unwrap();
            assert_eq!(json, serde_json::json!(purpose.as_str()));
            assert_eq!(serde_json::from_value::<SessionPurpose>(json).unwrap(), purpose);
            assert_eq!(SessionPurpose::parse(purpose.as_str()), Some(purpose));
        }
        assert_eq!(SessionPurpose::ALL.map(SessionPurpose::as_str), ["delegation", "approval"]);
    }
}
