//! Typed evidence, one type per [`FindingKind`].
//!
//! A finding keeps its evidence as a JSON value ([`Finding::evidence`]), which is how it
//! is stored and served. These types are how evidence is *built* (and can be read back
//! with [`Evidence::parse`]): each serializes to exactly the JSON the rules wrote before
//! they existed, field for field and in the same order (the workspace builds
//! `serde_json` with `preserve_order`).
//!
//! Evidence holds stable facts (timestamps and limits rather than ages where it can), so
//! that a problem that does not change does not rewrite its finding on every sweep.
//!
//! [`Finding::evidence`]: super::finding::Finding::evidence

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind::FindingKind;
use crate::id::{AgentId, HumanId, WarrantId};
use crate::permission::Permission;
use crate::registry::AgentStatus;
use crate::scope::Scope;
use crate::time::UnixTime;

/// The evidence of a finding, one variant per kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Evidence {
    /// [`FindingKind::OrphanedAgent`].
    OrphanedAgent(OrphanedAgent),
    /// [`FindingKind::ExpiredEphemeral`].
    ExpiredEphemeral(ExpiredEphemeral),
    /// [`FindingKind::IdleAgent`].
    IdleAgent(IdleAgent),
    /// [`FindingKind::OverPrivileged`].
    OverPrivileged(OverPrivileged),
    /// [`FindingKind::ExceedsOwner`].
    ExceedsOwner(ExceedsOwner),
    /// [`FindingKind::BroadGrant`].
    BroadGrant(BroadGrant),
    /// [`FindingKind::LongLivedGrant`].
    LongLivedGrant(LongLivedGrant),
    /// [`FindingKind::StaleKey`].
    StaleKey(StaleKey),
    /// [`FindingKind::ShadowActivity`].
    Shadow(Shadow),
    /// [`FindingKind::DelegationDepth`].
    DelegationDepth(DelegationDepth),
    /// [`FindingKind::DelegationFanout`].
    DelegationFanout(DelegationFanout),
    /// [`FindingKind::PolicyBroadening`].
    PolicyBroadening(PolicyBroadening),
    /// [`FindingKind::AttestationOverdue`].
    AttestationOverdue(AttestationOverdue),
}

impl Evidence {
    /// The kind of finding this evidence belongs to.
    pub fn kind(&self) -> FindingKind {
        match self {
            Evidence::OrphanedAgent(_) => FindingKind::OrphanedAgent,
            Evidence::ExpiredEphemeral(_) => FindingKind::ExpiredEphemeral,
            Evidence::IdleAgent(_) => FindingKind::IdleAgent,
            Evidence::OverPrivileged(_) => FindingKind::OverPrivileged,
            Evidence::ExceedsOwner(_) => FindingKind::ExceedsOwner,
            Evidence::BroadGrant(_) => FindingKind::BroadGrant,
            Evidence::LongLivedGrant(_) => FindingKind::LongLivedGrant,
            Evidence::StaleKey(_) => FindingKind::StaleKey,
            Evidence::Shadow(_) => FindingKind::ShadowActivity,
            Evidence::DelegationDepth(_) => FindingKind::DelegationDepth,
            Evidence::DelegationFanout(_) => FindingKind::DelegationFanout,
            Evidence::PolicyBroadening(_) => FindingKind::PolicyBroadening,
            Evidence::AttestationOverdue(_) => FindingKind::AttestationOverdue,
        }
    }

    /// The evidence as a finding keeps it.
    ///
    /// Serializing evidence cannot fail (every map key is a string and no type has a
    /// fallible `Serialize`); should it ever, the value says so instead of panicking.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({ "unencodable_evidence": e.to_string() }))
    }

    /// Reads a finding's stored evidence as the type of its `kind`.
    pub fn parse(kind: FindingKind, value: &Value) -> Result<Evidence, serde_json::Error> {
        fn read<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
            T::deserialize(value)
        }
        Ok(match kind {
            FindingKind::OrphanedAgent => Evidence::OrphanedAgent(read(value)?),
            FindingKind::ExpiredEphemeral => Evidence::ExpiredEphemeral(read(value)?),
            FindingKind::IdleAgent => Evidence::IdleAgent(read(value)?),
            FindingKind::OverPrivileged => Evidence::OverPrivileged(read(value)?),
            FindingKind::ExceedsOwner => Evidence::ExceedsOwner(read(value)?),
            FindingKind::BroadGrant => Evidence::BroadGrant(read(value)?),
            FindingKind::LongLivedGrant => Evidence::LongLivedGrant(read(value)?),
            FindingKind::StaleKey => Evidence::StaleKey(read(value)?),
            FindingKind::ShadowActivity => Evidence::Shadow(read(value)?),
            FindingKind::DelegationDepth => Evidence::DelegationDepth(read(value)?),
            FindingKind::DelegationFanout => Evidence::DelegationFanout(read(value)?),
            FindingKind::PolicyBroadening => Evidence::PolicyBroadening(read(value)?),
            FindingKind::AttestationOverdue => Evidence::AttestationOverdue(read(value)?),
        })
    }
}

macro_rules! into_evidence {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for Evidence {
                fn from(e: $ty) -> Self {
                    Evidence::$variant(e)
                }
            }
        )*
    };
}

into_evidence! {
    OrphanedAgent => OrphanedAgent,
    ExpiredEphemeral => ExpiredEphemeral,
    IdleAgent => IdleAgent,
    OverPrivileged => OverPrivileged,
    ExceedsOwner => ExceedsOwner,
    BroadGrant => BroadGrant,
    LongLivedGrant => LongLivedGrant,
    StaleKey => StaleKey,
    Shadow => Shadow,
    DelegationDepth => DelegationDepth,
    DelegationFanout => DelegationFanout,
    PolicyBroadening => PolicyBroadening,
    AttestationOverdue => AttestationOverdue,
}

/// The advice an orphaned-agent finding carries.
pub const ORPHANED_FIX: &str =
    "hand the agent to an active owner (POST /v1/agents/{id}/owner), retire it, or enable its owner again";

/// The advice an expired-ephemeral finding carries.
pub const EXPIRED_EPHEMERAL_FIX: &str = "retire the agent (DELETE /v1/agents/{id}), which revokes what it holds";

/// Where an orphaned agent's owner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OwnerStanding {
    /// Registered and active.
    Active,
    /// Registered but disabled.
    Disabled,
    /// No longer registered.
    Removed,
}

/// The agent's owner is disabled or no longer registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanedAgent {
    /// The owner as registered on the agent.
    pub owner: HumanId,
    /// Where the owner stands.
    pub owner_status: OwnerStanding,
    /// The agent's status.
    pub agent_status: AgentStatus,
    /// What to do ([`ORPHANED_FIX`]).
    pub fix: String,
}

/// An ephemeral agent is past its expiry but not retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredEphemeral {
    /// When it expired.
    pub expires_at: UnixTime,
    /// How many live warrants it still holds.
    pub live_warrants: usize,
    /// What to do ([`EXPIRED_EPHEMERAL_FIX`]).
    pub fix: String,
}

/// The agent has not acted for longer than the idle limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleAgent {
    /// When it last acted (`null` if never).
    pub last_activity: Option<UnixTime>,
    /// Whether it never acted.
    pub never_active: bool,
    /// For how long it has been idle.
    pub idle_secs: i64,
    /// The idle limit.
    pub idle_after_secs: i64,
}

/// The agent's max scope holds permissions it did not use in the usage window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverPrivileged {
    /// Its max scope.
    pub max_scope: Scope,
    /// The permissions of its max scope it did not use.
    pub unused: Vec<Permission>,
    /// What it used.
    pub used: Vec<Permission>,
    /// The narrower max scope recommended.
    pub recommended_scope: Scope,
    /// The usage window.
    pub window_secs: i64,
}

/// The agent's max scope goes beyond its owner's entitlements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceedsOwner {
    /// The permissions of its max scope the owner is not entitled to.
    pub beyond_owner: Vec<Permission>,
    /// The owner.
    pub owner: HumanId,
    /// The owner's entitlements.
    pub owner_entitlements: Scope,
}

/// Open-ended grants on sensitive namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadGrant {
    /// Each grant, as ``<permission> (namespace `<ns>`)``.
    pub grants: Vec<String>,
}

/// A live warrant, or an ephemeral agent, lives longer than governance allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum LongLivedGrant {
    /// An ephemeral agent registered to live too long.
    Ephemeral {
        /// Its registered lifetime.
        ephemeral_lifetime_secs: i64,
        /// The limit.
        max_ephemeral_lifetime_secs: i64,
    },
    /// Live warrants that live too long.
    Warrants {
        /// The warrants (at most a few) and their lifetimes.
        warrants: Vec<LongLivedWarrant>,
        /// The limit.
        max_warrant_lifetime_secs: i64,
    },
}

/// One long-lived warrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongLivedWarrant {
    /// The warrant.
    pub warrant: WarrantId,
    /// Its lifetime.
    pub lifetime_secs: i64,
}

/// The agent's key is older than the rotation period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleKey {
    /// When the key was registered.
    pub key_set_at: UnixTime,
    /// Its age.
    pub key_age_secs: i64,
    /// The rotation period.
    pub rotation_secs: i64,
}

/// Why a token counts as shadow activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowCause {
    /// Signed by another issuer.
    ForeignIssuer,
    /// Names this issuer, but no key of ours signed it.
    UnknownKey,
    /// Names one of our keys, but the signature does not verify.
    #[serde(rename = "forged_signature")]
    Forged,
    /// Not a Warrant token (malformed, another algorithm or type).
    NotAWarrant,
    /// A token of ours naming an agent that is not registered.
    UnregisteredAgent,
}

impl ShadowCause {
    /// Every cause.
    pub const ALL: [ShadowCause; 5] = [
        ShadowCause::ForeignIssuer,
        ShadowCause::UnknownKey,
        ShadowCause::Forged,
        ShadowCause::NotAWarrant,
        ShadowCause::UnregisteredAgent,
    ];

    /// The evidence name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowCause::ForeignIssuer => "foreign_issuer",
            ShadowCause::UnknownKey => "unknown_key",
            ShadowCause::Forged => "forged_signature",
            ShadowCause::NotAWarrant => "not_a_warrant",
            ShadowCause::UnregisteredAgent => "unregistered_agent",
        }
    }

    /// Parses the evidence name.
    pub fn parse(s: &str) -> Option<ShadowCause> {
        ShadowCause::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Decisions asked for with tokens Warrant did not issue, or for unregistered agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    /// Why the tokens count.
    pub cause: ShadowCause,
    /// How many were seen.
    pub occurrences: u64,
    /// The first few distinct claimed values, with how often each was seen.
    pub claimed: Vec<Claimed>,
    /// How many distinct values were claimed (counted up to a bound).
    pub distinct_claimed: usize,
    /// The first one's time.
    pub first_seen: UnixTime,
    /// The last one's time.
    pub last_seen: UnixTime,
    /// A sample `iss` (`null` when none).
    pub claimed_issuer: Option<String>,
    /// A sample `client_id` (`null` when none).
    pub claimed_client: Option<String>,
    /// A sample `kid` (`null` when none).
    pub kid: Option<String>,
    /// How long it must stay quiet to be resolved.
    pub quiet_secs_to_resolve: i64,
}

/// One claimed value and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    /// The value (issuer, key or client, by cause).
    pub value: String,
    /// How often.
    pub occurrences: u64,
}

/// The agent holds a warrant whose chain is at or next to the depth limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationDepth {
    /// The deepest live warrant.
    pub warrant: WarrantId,
    /// Its chain's depth.
    pub depth: usize,
    /// The limit.
    pub max_depth: usize,
}

/// The agent has delegated to more live warrants than the fan-out limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationFanout {
    /// How many live warrants were delegated from its warrants.
    pub live_delegations: usize,
    /// The limit.
    pub fanout_limit: usize,
}

/// A policy change allows requests the previous set denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyBroadening {
    /// The previous version.
    pub from_version: i64,
    /// The new version.
    pub to_version: i64,
    /// How many distinct past requests were replayed.
    pub replayed: usize,
    /// How many of them the new set allows and the old one denied.
    pub newly_allowed: usize,
    /// A few of them.
    pub samples: Vec<BroadenedRequest>,
}

/// A past request a policy change newly allows (no context or attributes: they may hold
/// data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadenedRequest {
    /// The agent that asked.
    pub agent: AgentId,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The human the work traced to.
    pub human: HumanId,
    /// When it was decided.
    pub decided_at: UnixTime,
}

/// The owner has not re-attested the agent within the attestation cadence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationOverdue {
    /// When it was last attested (`null` if never).
    pub last_attested: Option<UnixTime>,
    /// Since when an attestation is due.
    pub due_since: UnixTime,
    /// The owner who must attest.
    pub owner: HumanId,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `evidence` serializes to `expected` (as text, so key order counts), its value is
    /// `engine` (the `json!` built today), and it reads back from that value.
    fn same(evidence: impl Into<Evidence>, expected: &str, engine: Value) {
        let evidence = evidence.into();
        assert_eq!(serde_json::to_string(&evidence).unwrap(), expected);
        assert_eq!(evidence.to_value(), engine);
        assert_eq!(serde_json::from_str::<Value>(expected).unwrap(), engine);
        assert_eq!(Evidence::parse(evidence.kind(), &engine).unwrap(), evidence);
    }

    fn hid() -> HumanId {
        HumanId::from_random([1; 12])
    }

    fn aid() -> AgentId {
        AgentId::from_random([7; 12])
    }

    fn wid() -> WarrantId {
        WarrantId::from_random([2; 12])
    }

    #[test]
    fn shadow_evidence_is_todays() {
        let samples = [("https://evil".to_owned(), 2_u64)];
        let engine = json!({
            "cause": "foreign_issuer",
            "occurrences": 2_u64,
            "claimed": samples.iter().map(|(v, n)| json!({"value": v, "occurrences": n})).collect::<Vec<_>>(),
            "distinct_claimed": 1_usize,
            "first_seen": UnixTime(10),
            "last_seen": UnixTime(20),
            "claimed_issuer": Some("https://evil"),
            "claimed_client": None::<String>,
            "kid": None::<String>,
            "quiet_secs_to_resolve": 3600_i64,
        });
        let evidence = Shadow {
            cause: ShadowCause::ForeignIssuer,
            occurrences: 2,
            claimed: vec![Claimed { value: "https://evil".into(), occurrences: 2 }],
            distinct_claimed: 1,
            first_seen: UnixTime(10),
            last_seen: UnixTime(20),
            claimed_issuer: Some("https://evil".into()),
            claimed_client: None,
            kid: None,
            quiet_secs_to_resolve: 3600,
        };
        let expected = concat!(
            r#"{"cause":"foreign_issuer","occurrences":2,"claimed":[{"value":"https://evil","occurrences":2}],"#,
            r#""distinct_claimed":1,"first_seen":10,"last_seen":20,"claimed_issuer":"https://evil","#,
            r#""claimed_client":null,"kid":null,"quiet_secs_to_resolve":3600}"#
        );
        same(evidence, expected, engine);
    }

    #[test]
    fn shadow_causes_keep_their_evidence_names() {
        for cause in ShadowCause::ALL {
            assert_eq!(serde_json::to_value(cause).unwrap(), json!(cause.as_str()));
            assert_eq!(ShadowCause::parse(cause.as_str()), Some(cause));
        }
        assert_eq!(
            ShadowCause::ALL.map(ShadowCause::as_str),
            ["foreign_issuer", "unknown_key", "forged_signature", "not_a_warrant", "unregistered_agent"]
        );
    }

    #[test]
    fn policy_broadening_evidence_is_todays() {
        // Engine: replay's `summary()` per sample, then the finding's json!.
        let sample = json!({
            "agent": aid(),
            "action": "crm.delete",
            "resource": "crm/1",
            "human": hid(),
            "decided_at": UnixTime(50),
        });
        let engine = json!({
            "from_version": 1_i64,
            "to_version": 2_i64,
            "replayed": 10_usize,
            "newly_allowed": 1_usize,
            "samples": vec![sample],
        });
        let evidence = PolicyBroadening {
            from_version: 1,
            to_version: 2,
            replayed: 10,
            newly_allowed: 1,
            samples: vec![BroadenedRequest {
                agent: aid(),
                action: "crm.delete".into(),
                resource: "crm/1".into(),
                human: hid(),
                decided_at: UnixTime(50),
            }],
        };
        let expected = format!(
            concat!(
                r#"{{"from_version":1,"to_version":2,"replayed":10,"newly_allowed":1,"samples":[{{"agent":"{a}","#,
                r#""action":"crm.delete","resource":"crm/1","human":"{h}","decided_at":50}}]}}"#
            ),
            a = aid(),
            h = hid()
        );
        same(evidence, &expected, engine);
    }

    #[test]
    fn both_long_lived_shapes_read_back_as_themselves() {
        same(
            LongLivedGrant::Ephemeral { ephemeral_lifetime_secs: 9, max_ephemeral_lifetime_secs: 5 },
            r#"{"ephemeral_lifetime_secs":9,"max_ephemeral_lifetime_secs":5}"#,
            json!({"ephemeral_lifetime_secs": 9, "max_ephemeral_lifetime_secs": 5}),
        );
        same(
            LongLivedGrant::Warrants {
                warrants: vec![LongLivedWarrant { warrant: wid(), lifetime_secs: 3600 }],
                max_warrant_lifetime_secs: 900,
            },
            &format!(
                r#"{{"warrants":[{{"warrant":"{}","lifetime_secs":3600}}],"max_warrant_lifetime_secs":900}}"#,
                wid()
            ),
            json!({"warrants": [json!({"warrant": wid(), "lifetime_secs": 3600})], "max_warrant_lifetime_secs": 900}),
        );
    }

    #[test]
    fn evidence_of_another_kind_does_not_parse() {
        let fanout = json!({"live_delegations": 80, "fanout_limit": 50});
        assert!(Evidence::parse(FindingKind::DelegationFanout, &fanout).is_ok());
        assert!(Evidence::parse(FindingKind::StaleKey, &fanout).is_err());
    }
}
