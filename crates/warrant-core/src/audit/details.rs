//! Typed details for each kind of audit record the engine writes.
//!
//! An [`AuditEntry`](super::AuditEntry) keeps its details as a JSON value, so that every
//! record ever written still decodes. These types are how a record's details are *built*:
//! one type per kind of record, whose serialization is exactly the JSON the engine wrote
//! before they existed (field names, order, and which keys are omitted rather than
//! written as `null`). [`AuditEntry::with_details`](super::AuditEntry::with_details)
//! takes any of them and sets the entry's kind from it.
//!
//! Field order matters: the workspace builds `serde_json` with `preserve_order`, so a
//! record's keys are written in the order the details serialize them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::AuditKind;
use crate::authzen::McpCall;
use crate::decision::DecisionCode;
use crate::govern::finding::FindingKind;
use crate::guard::approval::{Approval, ApprovalStatus, Approver};
use crate::guard::budget::Charge;
use crate::guard::signal::Signal;
use crate::id::{AgentId, ApprovalId, HumanId, PepId, WarrantId};
use crate::registry::{Agent, AgentStatus, Human, HumanStatus, Mode};
use crate::revocation::RevocationKind;
use crate::scope::Scope;
use crate::time::UnixTime;

/// The details of any audit record, one variant per kind of record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum AuditDetails {
    /// An authorization decision.
    Decision(DecisionDetails),
    /// A window of anonymous denies, counted instead of recorded one by one.
    AnonymousDenies(AnonymousDenies),
    /// A warrant issued (root) or delegated.
    Warrant(WarrantDetails),
    /// A revocation.
    Revocation(RevocationDetails),
    /// A registry change.
    Registry(RegistryDetails),
    /// A policy set change, or a refused one.
    Policy(PolicyDetails),
    /// An approval opened, decided or used.
    Approval(ApprovalDetails),
    /// A governance act.
    Governance(GovernanceDetails),
}

impl AuditDetails {
    /// The kind of record these details belong to.
    pub fn kind(&self) -> AuditKind {
        match self {
            AuditDetails::Decision(_) | AuditDetails::AnonymousDenies(_) => AuditKind::Decision,
            AuditDetails::Warrant(w) => w.kind(),
            AuditDetails::Revocation(_) => AuditKind::Revocation,
            AuditDetails::Registry(_) => AuditKind::Registry,
            AuditDetails::Policy(_) => AuditKind::Policy,
            AuditDetails::Approval(_) => AuditKind::Approval,
            AuditDetails::Governance(_) => AuditKind::Governance,
        }
    }

    /// The details as the JSON value an audit record keeps.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

macro_rules! into_details {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for AuditDetails {
                fn from(d: $ty) -> Self {
                    AuditDetails::$variant(d)
                }
            }
        )*
    };
}

into_details! {
    DecisionDetails => Decision,
    AnonymousDenies => AnonymousDenies,
    WarrantDetails => Warrant,
    RevocationDetails => Revocation,
    RegistryDetails => Registry,
    PolicyDetails => Policy,
    ApprovalDetails => Approval,
    GovernanceDetails => Governance,
}

/// The details of a decision record. The outcome (`allow`, `deny`, `pending`) is the
/// entry's `decision` field, not a detail.
///
/// `policy_version` is written as `null` when Cedar did not run; every other optional
/// detail is omitted when absent (and `signals`, `charges` when empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionDetails {
    /// The requested action, as audited (escaped and cut when oversized).
    pub action: String,
    /// The requested resource, as audited.
    pub resource: String,
    /// The decision's code.
    pub code: DecisionCode,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The policies that decided.
    pub policies: Vec<String>,
    /// The policy set version that decided, when Cedar ran (`null` otherwise).
    pub policy_version: Option<i64>,
    /// The acting agent's trust score, when the guardrails ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<f64>,
    /// The anomaly signals the request raised.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
    /// What the request spent from budgets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<Charge>,
    /// The approval to retry with (pending), or the one used (an approved retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// For a rate-limit deny: seconds until a retry can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Set when this decision quarantined the agent: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
    /// The guardrails' graduated response to the agent's trust, carried out or in shadow
    /// mode, when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Box<crate::guard::response::GuardResponse>>,
    /// The verified warrant's chain and scope, when the warrant verified.
    #[serde(flatten)]
    pub warrant: Option<DecisionWarrant>,
    /// Who asked and about whom, for a decision an enforcement point asked for: its
    /// `subject`, `pep` and `mcp` keys (boxed: most decisions have none).
    #[serde(flatten)]
    pub origin: Option<Box<DecisionOrigin>>,
    /// The request's `resource_attrs`, as audited (see the engine's size bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_attrs: Option<Arc<Value>>,
    /// The request's `context`, as audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Arc<Value>>,
}

/// The enforcement point that asked for a decision, and the plain subject it asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionOrigin {
    /// The plain subject decided about (no warrant), when it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<DecisionSubject>,
    /// The enforcement point that asked (the PEP credential's name, `admin` for the admin
    /// token), when the request came through the AuthZEN PDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pep: Option<String>,
    /// The MCP call the enforcement point decided, as it stated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpCall>,
}

/// The plain subject of a decision (a human or a service, no warrant), as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionSubject {
    /// The subject's type as the enforcement point gave it (`user`, `service`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The subject's id as given (escaped and cut when oversized).
    pub id: String,
    /// The registered human it resolved to, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human: Option<HumanId>,
    /// The roles the human held when decided.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<String>,
}

/// What a decision record holds of the warrant, when it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionWarrant {
    /// Its chain of agents, root first.
    pub chain: Vec<AgentId>,
    /// Its scope, as the space-separated claim.
    pub scope: String,
}

/// The aggregate record of a window of anonymous denies (no valid warrant): how many,
/// when, and with which codes. Its record is a `decision` record whose outcome is `deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousDenies {
    /// How many denies were counted.
    pub count: u64,
    /// The first one's time.
    pub first_at: UnixTime,
    /// The last one's time.
    pub last_at: UnixTime,
    /// How many of each code.
    pub codes: BTreeMap<DecisionCode, u64>,
}

impl Serialize for AnonymousDenies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Counts {
            count: u64,
            first_at: UnixTime,
            last_at: UnixTime,
            // Keyed by the code's name: the names' order, as before the codes were typed.
            codes: BTreeMap<&'static str, u64>,
        }
        let counts = Counts {
            count: self.count,
            first_at: self.first_at,
            last_at: self.last_at,
            codes: self.codes.iter().map(|(code, n)| (code.as_str(), *n)).collect(),
        };
        let reasons = [format!(
            "{} further anonymous denies (no valid warrant) in this window, counted rather than recorded one by one",
            self.count
        )];
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("code", &DecisionCode::Aggregated)?;
        map.serialize_entry("aggregated", &counts)?;
        map.serialize_entry("reasons", &reasons)?;
        map.end()
    }
}

/// The details of an issuance or delegation record (a delegation has a parent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarrantDetails {
    /// The warrant's `sub`.
    pub sub: String,
    /// Delegated or autonomous.
    pub mode: Mode,
    /// The warrant's scope, as the space-separated claim.
    pub scope: String,
    /// Issued at.
    pub iat: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
    /// The chain of agents, root first.
    pub chain: Vec<AgentId>,
    /// The parent warrant (`null` for a root warrant).
    pub parent: Option<WarrantId>,
    /// The task's purpose.
    pub purpose: String,
    /// The signing key's id.
    pub kid: String,
    /// The warrant's budget limits, by counter.
    pub budget: BTreeMap<String, i64>,
    /// For a warrant exchanged for an identity provider's ID token: the provider and the
    /// human's subject there. Omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::registry::FederatedIdentity>,
}

impl WarrantDetails {
    /// `delegation` when the warrant has a parent, else `issuance`.
    pub fn kind(&self) -> AuditKind {
        if self.parent.is_some() {
            AuditKind::Delegation
        } else {
            AuditKind::Issuance
        }
    }
}

/// The details of a revocation record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationDetails {
    /// The revocation's id, `rev_…`.
    pub revocation: String,
    /// What it names.
    pub kind: RevocationKind,
    /// The id of the warrant, agent, task or human.
    pub target: String,
    /// Why, in the revoker's words.
    pub reason: String,
    /// The warrants it ended.
    pub revoked_warrants: Vec<WarrantId>,
}

/// The details of a registry record: `{"op": …, "change": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryDetails {
    /// `human.add`: the human as registered.
    HumanAdd(Human),
    /// `human.disable`: `{"status": "disabled"}`.
    HumanDisable,
    /// `human.enable`: a disabled human enabled again, `{"status": "active"}`.
    HumanEnable,
    /// `human.roles`: a human's roles replaced, `{"from": [...], "to": [...]}`.
    HumanRoles {
        /// The roles before.
        from: BTreeSet<String>,
        /// The roles after.
        to: BTreeSet<String>,
    },
    /// `human.entitlements`: a signed-in human's entitlements recomputed from their
    /// identity provider's groups, `{"from": scope, "to": scope, "groups": [...]}`.
    HumanEntitlements {
        /// The entitlements before.
        from: Scope,
        /// The entitlements after.
        to: Scope,
        /// The groups the provider sent.
        groups: Vec<String>,
    },
    /// `agent.add`: the agent as registered.
    AgentAdd(Agent),
    /// `agent.<status>` (`agent.active`, `agent.suspended`, `agent.retired`):
    /// `{"status": <status>}`.
    AgentStatus(AgentStatus),
    /// `agent.owner`: an agent handed to another owner, `{"from": hum_…, "to": hum_…}`.
    AgentOwner {
        /// The owner before.
        from: HumanId,
        /// The owner after.
        to: HumanId,
    },
    /// `agent.max_scope`: an agent's max scope narrowed by an over-privileged finding's
    /// recommendation.
    AgentMaxScope {
        /// The max scope before.
        from: Scope,
        /// The max scope after.
        to: Scope,
        /// The finding whose recommendation it applies, `fnd_…`.
        finding: String,
        /// Who applied it.
        by: String,
    },
    /// `agent.key`: an agent's public key rotated.
    AgentKey {
        /// The old key's `x`.
        from: String,
        /// The new key's `x`.
        to: String,
    },
    /// `agent.deploy`: the owner announced a deploy of the agent: its new tools and
    /// resources are expected until `until`.
    AgentDeploy {
        /// What was deployed, as the owner named it.
        version: String,
        /// Until when its novelty is expected.
        until: UnixTime,
    },
    /// `pep.add`: an enforcement point's credential created (never its secret).
    PepAdd {
        /// Its id.
        id: PepId,
        /// Its name.
        name: String,
        /// Whether it may ask about plain subjects.
        plain_subjects: bool,
    },
    /// `pep.revoke`: an enforcement point's credential revoked.
    PepRevoke {
        /// Its id.
        id: PepId,
    },
}

impl RegistryDetails {
    /// The record's `op`, e.g. `agent.add`.
    pub fn op(&self) -> String {
        match self {
            RegistryDetails::HumanAdd(_) => "human.add".into(),
            RegistryDetails::HumanDisable => "human.disable".into(),
            RegistryDetails::HumanEnable => "human.enable".into(),
            RegistryDetails::HumanRoles { .. } => "human.roles".into(),
            RegistryDetails::HumanEntitlements { .. } => "human.entitlements".into(),
            RegistryDetails::AgentAdd(_) => "agent.add".into(),
            RegistryDetails::AgentStatus(status) => format!("agent.{}", status.as_str()),
            RegistryDetails::AgentOwner { .. } => "agent.owner".into(),
            RegistryDetails::AgentMaxScope { .. } => "agent.max_scope".into(),
            RegistryDetails::AgentKey { .. } => "agent.key".into(),
            RegistryDetails::AgentDeploy { .. } => "agent.deploy".into(),
            RegistryDetails::PepAdd { .. } => "pep.add".into(),
            RegistryDetails::PepRevoke { .. } => "pep.revoke".into(),
        }
    }
}

impl Serialize for RegistryDetails {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Status<T> {
            status: T,
        }
        #[derive(Serialize)]
        struct MaxScope<'a> {
            from: &'a Scope,
            to: &'a Scope,
            finding: &'a str,
            by: &'a str,
        }
        #[derive(Serialize)]
        struct Roles<'a> {
            from: &'a BTreeSet<String>,
            to: &'a BTreeSet<String>,
        }
        #[derive(Serialize)]
        struct Entitlements<'a> {
            from: &'a Scope,
            to: &'a Scope,
            groups: &'a [String],
        }
        #[derive(Serialize)]
        struct Owner<'a> {
            from: &'a HumanId,
            to: &'a HumanId,
        }
        #[derive(Serialize)]
        struct Key<'a> {
            from: &'a str,
            to: &'a str,
        }
        #[derive(Serialize)]
        struct PepAdd<'a> {
            id: &'a PepId,
            name: &'a str,
            plain_subjects: bool,
        }
        #[derive(Serialize)]
        struct PepRevoke<'a> {
            id: &'a PepId,
        }
        #[derive(Serialize)]
        struct Deploy<'a> {
            version: &'a str,
            until: UnixTime,
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("op", &self.op())?;
        match self {
            RegistryDetails::HumanAdd(human) => map.serialize_entry("change", human)?,
            RegistryDetails::HumanDisable => {
                map.serialize_entry("change", &Status { status: HumanStatus::Disabled })?
            }
            RegistryDetails::HumanEnable => map.serialize_entry("change", &Status { status: HumanStatus::Active })?,
            RegistryDetails::HumanRoles { from, to } => map.serialize_entry("change", &Roles { from, to })?,
            RegistryDetails::HumanEntitlements { from, to, groups } => {
                map.serialize_entry("change", &Entitlements { from, to, groups })?;
            }
            RegistryDetails::AgentAdd(agent) => map.serialize_entry("change", agent)?,
            RegistryDetails::AgentStatus(status) => map.serialize_entry("change", &Status { status })?,
            RegistryDetails::AgentOwner { from, to } => map.serialize_entry("change", &Owner { from, to })?,
            RegistryDetails::AgentMaxScope { from, to, finding, by } => {
                map.serialize_entry("change", &MaxScope { from, to, finding, by })?;
            }
            RegistryDetails::AgentKey { from, to } => map.serialize_entry("change", &Key { from, to })?,
            RegistryDetails::PepAdd { id, name, plain_subjects } => {
                map.serialize_entry("change", &PepAdd { id, name, plain_subjects: *plain_subjects })?;
            }
            RegistryDetails::PepRevoke { id } => map.serialize_entry("change", &PepRevoke { id })?,
            RegistryDetails::AgentDeploy { version, until } => {
                map.serialize_entry("change", &Deploy { version, until: *until })?;
            }
        }
        map.end()
    }
}

/// The details of a policy record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyDetails {
    /// The set in force when the engine started.
    InForceAtStart {
        /// Its stored version.
        version: i64,
        /// Its SHA-256 fingerprint.
        hash: String,
        /// Its policy ids.
        policies: Vec<String>,
    },
    /// A new set took effect.
    Activated {
        /// Its stored version.
        version: i64,
        /// Its SHA-256 fingerprint.
        hash: String,
        /// Its policy ids.
        policies: Vec<String>,
    },
    /// A new set was refused; the previous one stays in force.
    Refused {
        /// Why.
        error: String,
    },
}

/// What happened to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalOp {
    /// Opened for a pending request.
    Opened,
    /// Approved by its approver.
    Approved,
    /// Rejected by its approver.
    Rejected,
    /// Used by the one retry it allowed.
    Used,
}

impl ApprovalOp {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOp::Opened => "opened",
            ApprovalOp::Approved => "approved",
            ApprovalOp::Rejected => "rejected",
            ApprovalOp::Used => "used",
        }
    }
}

/// The details of an approval record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalDetails {
    /// What happened.
    pub op: ApprovalOp,
    /// The approval.
    pub approval_id: ApprovalId,
    /// Its status after the change.
    pub status: ApprovalStatus,
    /// Who must approve.
    pub approver: HumanId,
    /// In which role.
    pub approver_role: Approver,
    /// The request's action.
    pub action: String,
    /// The request's resource.
    pub resource: String,
    /// The request (its `resource_attrs` and `context`).
    pub request: Value,
    /// The policies that held it back.
    pub policies: Vec<String>,
    /// When it lapses.
    pub expires_at: UnixTime,
    /// Who decided it (`null` until decided).
    pub decided_by: Option<String>,
    /// The approver's reason (`null` when none).
    pub reason: Option<String>,
}

impl ApprovalDetails {
    /// The details of `op` on `approval` (as it stands after the change).
    pub fn new(op: ApprovalOp, approval: &Approval) -> Self {
        ApprovalDetails {
            op,
            approval_id: approval.id.clone(),
            status: approval.status,
            approver: approval.approver.clone(),
            approver_role: approval.approver_role,
            action: approval.action.clone(),
            resource: approval.resource.clone(),
            request: approval.request.clone(),
            policies: approval.policies.clone(),
            expires_at: approval.expires_at,
            decided_by: approval.decided_by.clone(),
            reason: approval.reason.clone(),
        }
    }
}

/// The details of a governance record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op")]
#[non_exhaustive]
pub enum GovernanceDetails {
    /// `finding.accept`: a finding's risk accepted until a time.
    #[serde(rename = "finding.accept")]
    FindingAccept {
        /// The finding, `fnd_…`.
        finding: String,
        /// Its kind.
        kind: FindingKind,
        /// Its subject.
        subject: String,
        /// Who accepted it.
        by: String,
        /// Why.
        justification: String,
        /// Until when.
        until: UnixTime,
    },
    /// `agent.attest`: an owner attested an agent.
    #[serde(rename = "agent.attest")]
    AgentAttest {
        /// The attestation, `att_…`.
        attestation: String,
        /// Who attested.
        by: String,
        /// Their note.
        note: String,
        /// The max scope attested.
        max_scope: Scope,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::guard::signal::SignalKind;
    use crate::registry::PublicJwk;
    use crate::TaskId;

    /// The details serialize to `expected` (compared as text, so key order counts) and
    /// their value equals `engine`, the `json!` the engine builds today.
    fn same(details: impl Into<AuditDetails>, expected: &str, engine: Value) {
        let details = details.into();
        assert_eq!(serde_json::to_string(&details).unwrap(), expected);
        assert_eq!(details.to_value().unwrap(), engine);
        // The expected text is the engine's JSON: same keys and values.
        assert_eq!(serde_json::from_str::<Value>(expected).unwrap(), engine);
    }

    fn agent_id() -> AgentId {
        AgentId::from_random([7; 12])
    }

    fn human_id() -> HumanId {
        HumanId::from_random([1; 12])
    }

    fn wid(n: u8) -> WarrantId {
        WarrantId::from_random([n; 12])
    }

    fn decision(code: DecisionCode) -> DecisionDetails {
        DecisionDetails {
            action: "crm.read".into(),
            resource: "crm/1".into(),
            code,
            reasons: vec!["no".into()],
            policies: vec![],
            policy_version: None,
            trust: None,
            signals: vec![],
            charges: vec![],
            approval_id: None,
            retry_after: None,
            quarantined: None,
            response: None,
            warrant: None,
            origin: None,
            resource_attrs: None,
            context: None,
        }
    }

    #[test]
    fn a_bare_decision_writes_null_policy_version_and_omits_the_rest() {
        // Engine: json!({"action", "resource", "code", "reasons", "policies",
        // "policy_version"}) and nothing inserted.
        let engine = json!({
            "action": "crm.read",
            "resource": "crm/1",
            "code": "invalid_token",
            "reasons": ["no"],
            "policies": [],
            "policy_version": null,
        });
        same(
            decision(DecisionCode::InvalidToken),
            r#"{"action":"crm.read","resource":"crm/1","code":"invalid_token","reasons":["no"],"policies":[],"policy_version":null}"#,
            engine,
        );
    }

    #[test]
    fn a_plain_subject_decision_names_the_subject_and_pep_after_the_outcome() {
        let mut d = decision(DecisionCode::Policy);
        d.origin = Some(Box::new(DecisionOrigin {
            subject: Some(DecisionSubject {
                kind: "user".into(),
                id: "ada@example.com".into(),
                human: Some(human_id()),
                roles: ["editor".to_owned()].into_iter().collect(),
            }),
            pep: Some("todo".into()),
            mcp: None,
        }));
        let value = AuditDetails::from(d.clone()).to_value().unwrap();
        assert_eq!(
            value["subject"],
            json!({"type": "user", "id": "ada@example.com", "human": human_id(), "roles": ["editor"]})
        );
        assert_eq!(value["pep"], "todo");
        // A service has no human and no roles; a PEP without a name writes no `pep`.
        d.origin = Some(Box::new(DecisionOrigin {
            subject: Some(DecisionSubject {
                kind: "service".into(),
                id: "svc".into(),
                human: None,
                roles: Default::default(),
            }),
            pep: None,
            mcp: None,
        }));
        let value = AuditDetails::from(d).to_value().unwrap();
        assert_eq!(value["subject"], json!({"type": "service", "id": "svc"}));
        assert!(value.get("pep").is_none());
    }

    #[test]
    fn a_full_decision_inserts_in_the_engines_order() {
        let mut d = decision(DecisionCode::Allow);
        d.policies = vec!["p1".into()];
        d.policy_version = Some(3);
        d.trust = Some(0.5);
        d.signals = vec![Signal::new(SignalKind::DenyStreak, "5 denies")];
        d.charges = vec![Charge { warrant: wid(2), counter: "usd".into(), amount: 4, expires_at: UnixTime(900) }];
        d.approval_id = Some("apr_1".into());
        d.retry_after = Some(7);
        d.quarantined = Some("low trust".into());
        d.warrant = Some(DecisionWarrant { chain: vec![agent_id()], scope: "crm.read".into() });
        d.resource_attrs = Some(Arc::new(json!({"owner": "ada"})));
        d.context = Some(Arc::new(json!({"ip": "10.0.0.1"})));
        // Engine: the base json!, then map.insert of each present optional, in this order.
        let mut engine = json!({
            "action": "crm.read",
            "resource": "crm/1",
            "code": "allow",
            "reasons": ["no"],
            "policies": ["p1"],
            "policy_version": 3,
        });
        let map = engine.as_object_mut().unwrap();
        map.insert("trust".into(), json!(0.5));
        map.insert("signals".into(), json!([{"kind": "deny_streak", "detail": "5 denies"}]));
        map.insert("charges".into(), json!([{"warrant": wid(2), "counter": "usd", "amount": 4, "expires_at": 900}]));
        map.insert("approval_id".into(), json!("apr_1"));
        map.insert("retry_after".into(), json!(7));
        map.insert("quarantined".into(), json!("low trust"));
        map.insert("chain".into(), json!([agent_id()]));
        map.insert("scope".into(), json!("crm.read"));
        map.insert("resource_attrs".into(), json!({"owner": "ada"}));
        map.insert("context".into(), json!({"ip": "10.0.0.1"}));
        let expected = format!(
            concat!(
                r#"{{"action":"crm.read","resource":"crm/1","code":"allow","reasons":["no"],"policies":["p1"],"#,
                r#""policy_version":3,"trust":0.5,"signals":[{{"kind":"deny_streak","detail":"5 denies"}}],"#,
                r#""charges":[{{"warrant":"{w}","counter":"usd","amount":4,"expires_at":900}}],"#,
                r#""approval_id":"apr_1","retry_after":7,"quarantined":"low trust","chain":["{a}"],"#,
                r#""scope":"crm.read","resource_attrs":{{"owner":"ada"}},"context":{{"ip":"10.0.0.1"}}}}"#
            ),
            w = wid(2),
            a = agent_id(),
        );
        let details = AuditDetails::from(d);
        assert_eq!(details.kind(), AuditKind::Decision);
        same(details, &expected, engine);
    }

    #[test]
    fn a_decision_with_a_warrant_but_no_guardrails_puts_chain_and_scope_after_policy_version() {
        let mut d = decision(DecisionCode::Scope);
        d.warrant = Some(DecisionWarrant { chain: vec![agent_id()], scope: "crm.read".into() });
        d.context = Some(Arc::new(json!(1)));
        let engine = json!({
            "action": "crm.read", "resource": "crm/1", "code": "scope", "reasons": ["no"],
            "policies": [], "policy_version": null, "chain": [agent_id()], "scope": "crm.read", "context": 1,
        });
        let expected = format!(
            concat!(
                r#"{{"action":"crm.read","resource":"crm/1","code":"scope","reasons":["no"],"policies":[],"#,
                r#""policy_version":null,"chain":["{a}"],"scope":"crm.read","context":1}}"#
            ),
            a = agent_id()
        );
        same(d, &expected, engine);
    }

    #[test]
    fn anonymous_denies_keep_todays_summary() {
        let mut codes = BTreeMap::new();
        // Declaration order differs from the names' order: the names' order is kept.
        codes.insert(DecisionCode::InvalidToken, 500);
        codes.insert(DecisionCode::Internal, 1);
        let summary = AnonymousDenies { count: 501, first_at: UnixTime(1_000), last_at: UnixTime(1_009), codes };
        // Engine: codes is a BTreeMap<&'static str, u64>.
        let engine_codes: BTreeMap<&str, u64> = [("invalid_token", 500), ("internal", 1)].into_iter().collect();
        let engine = json!({
            "code": "aggregated",
            "aggregated": {
                "count": 501,
                "first_at": UnixTime(1_000),
                "last_at": UnixTime(1_009),
                "codes": engine_codes,
            },
            "reasons": [format!(
                "{} further anonymous denies (no valid warrant) in this window, counted rather than recorded one by one",
                501
            )],
        });
        let expected = concat!(
            r#"{"code":"aggregated","aggregated":{"count":501,"first_at":1000,"last_at":1009,"#,
            r#""codes":{"internal":1,"invalid_token":500}},"reasons":["501 further anonymous denies (no valid "#,
            r#"warrant) in this window, counted rather than recorded one by one"]}"#
        );
        let details = AuditDetails::from(summary);
        assert_eq!(details.kind(), AuditKind::Decision);
        same(details, expected, engine);
    }

    fn warrant(parent: Option<WarrantId>) -> WarrantDetails {
        WarrantDetails {
            identity: None,
            sub: human_id().to_string(),
            mode: Mode::Delegated,
            scope: "crm.read".into(),
            iat: UnixTime(100),
            exp: UnixTime(400),
            chain: vec![agent_id()],
            parent,
            purpose: "triage".into(),
            kid: "k1".into(),
            budget: [("usd".to_owned(), 50)].into_iter().collect(),
        }
    }

    #[test]
    fn issuance_and_delegation_details_are_todays() {
        let budget: BTreeMap<String, i64> = [("usd".to_owned(), 50)].into_iter().collect();
        for parent in [None, Some(wid(3))] {
            let engine = json!({
                "sub": human_id().to_string(),
                "mode": Mode::Delegated.as_str(),
                "scope": "crm.read",
                "iat": UnixTime(100),
                "exp": UnixTime(400),
                "chain": vec![agent_id()],
                "parent": parent,
                "purpose": "triage",
                "kid": "k1",
                "budget": budget,
            });
            let parent_text = parent.as_ref().map_or("null".to_owned(), |p| format!("\"{p}\""));
            let expected = format!(
                concat!(
                    r#"{{"sub":"{h}","mode":"delegated","scope":"crm.read","iat":100,"exp":400,"chain":["{a}"],"#,
                    r#""parent":{p},"purpose":"triage","kid":"k1","budget":{{"usd":50}}}}"#
                ),
                h = human_id(),
                a = agent_id(),
                p = parent_text,
            );
            let details = AuditDetails::from(warrant(parent.clone()));
            let kind = if parent.is_some() { AuditKind::Delegation } else { AuditKind::Issuance };
            assert_eq!(details.kind(), kind);
            same(details, &expected, engine);
        }
    }

    #[test]
    fn revocation_details_are_todays() {
        let targets = [(wid(4), ()), (wid(5), ())];
        let engine = json!({
            "revocation": "rev_1",
            "kind": RevocationKind::Task.as_str(),
            "target": "tsk_1",
            "reason": "done",
            "revoked_warrants": targets.iter().map(|(jti, _)| jti.as_str()).collect::<Vec<_>>(),
        });
        let details = RevocationDetails {
            revocation: "rev_1".into(),
            kind: RevocationKind::Task,
            target: "tsk_1".into(),
            reason: "done".into(),
            revoked_warrants: vec![wid(4), wid(5)],
        };
        let expected = format!(
            r#"{{"revocation":"rev_1","kind":"task","target":"tsk_1","reason":"done","revoked_warrants":["{}","{}"]}}"#,
            wid(4),
            wid(5)
        );
        same(details, &expected, engine);
    }

    fn human() -> Human {
        Human {
            id: human_id(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            entitlements: Scope::parse("crm.*").unwrap(),
            status: HumanStatus::Active,
            created_at: UnixTime(0),
            roles: Default::default(),
            external_id: None,
            identity: None,
        }
    }

    fn agent() -> Agent {
        Agent {
            id: agent_id(),
            name: "bot".into(),
            owner: human_id(),
            mode: Mode::Delegated,
            max_scope: Scope::parse("crm.read").unwrap(),
            public_key: Some(PublicJwk { kty: "OKP".into(), crv: "Ed25519".into(), x: "x".into(), kid: None }),
            spiffe_id: None,
            status: AgentStatus::Active,
            expires_at: None,
            labels: Default::default(),
            created_at: UnixTime(0),
        }
    }

    #[test]
    fn registry_details_are_op_then_change() {
        // Engine: json!({ "op": op, "change": details }) with these `details`.
        let h = human();
        let expected = format!(r#"{{"op":"human.add","change":{}}}"#, serde_json::to_string(&h).unwrap());
        same(
            RegistryDetails::HumanAdd(h.clone()),
            &expected,
            json!({"op": "human.add", "change": serde_json::to_value(&h).unwrap()}),
        );
        same(
            RegistryDetails::HumanDisable,
            r#"{"op":"human.disable","change":{"status":"disabled"}}"#,
            json!({"op": "human.disable", "change": json!({ "status": "disabled" })}),
        );
        let a = agent();
        let expected = format!(r#"{{"op":"agent.add","change":{}}}"#, serde_json::to_string(&a).unwrap());
        same(
            RegistryDetails::AgentAdd(a.clone()),
            &expected,
            json!({"op": "agent.add", "change": serde_json::to_value(&a).unwrap()}),
        );
        for next in [AgentStatus::Active, AgentStatus::Suspended, AgentStatus::Retired] {
            let op = format!("agent.{}", next.as_str());
            let expected = format!(r#"{{"op":"{op}","change":{{"status":"{}"}}}}"#, next.as_str());
            same(
                RegistryDetails::AgentStatus(next),
                &expected,
                json!({"op": op, "change": json!({ "status": next.as_str() })}),
            );
        }
        let (from, to) = (Scope::parse("crm.*").unwrap(), Scope::parse("crm.read").unwrap());
        same(
            RegistryDetails::AgentMaxScope {
                from: from.clone(),
                to: to.clone(),
                finding: "fnd_1".into(),
                by: "admin".into(),
            },
            r#"{"op":"agent.max_scope","change":{"from":["crm.*"],"to":["crm.read"],"finding":"fnd_1","by":"admin"}}"#,
            json!({
                "op": "agent.max_scope",
                "change": {"from": from, "to": to, "finding": "fnd_1", "by": "admin"},
            }),
        );
        same(
            RegistryDetails::AgentKey { from: "old".into(), to: "new".into() },
            r#"{"op":"agent.key","change":{"from":"old","to":"new"}}"#,
            json!({"op": "agent.key", "change": {"from": "old", "to": "new"}}),
        );
        assert_eq!(AuditDetails::from(RegistryDetails::HumanDisable).kind(), AuditKind::Registry);
    }

    #[test]
    fn policy_details_are_todays() {
        let policies = vec!["p1".to_owned(), "p2".to_owned()];
        for (details, op) in [
            (
                PolicyDetails::InForceAtStart { version: 2, hash: "ab".into(), policies: policies.clone() },
                "in_force_at_start",
            ),
            (PolicyDetails::Activated { version: 2, hash: "ab".into(), policies: policies.clone() }, "activated"),
        ] {
            let engine = json!({"op": op, "version": 2_i64, "hash": "ab", "policies": policies});
            let expected = format!(r#"{{"op":"{op}","version":2,"hash":"ab","policies":["p1","p2"]}}"#);
            same(details, &expected, engine);
        }
        same(
            PolicyDetails::Refused { error: "bad".into() },
            r#"{"op":"refused","error":"bad"}"#,
            json!({ "op": "refused", "error": "bad".to_string() }),
        );
        assert_eq!(AuditDetails::from(PolicyDetails::Refused { error: String::new() }).kind(), AuditKind::Policy);
    }

    fn approval() -> Approval {
        Approval {
            id: ApprovalId::from_random([9; 12]),
            status: ApprovalStatus::Pending,
            approver_role: Approver::Owner,
            approver: human_id(),
            agent: agent_id(),
            human: human_id(),
            task: TaskId::from_random([8; 12]),
            warrant: wid(1),
            action: "payments.send".into(),
            resource: "acct/1".into(),
            request_digest: "d".into(),
            request: json!({"resource_attrs": null, "context": {"amount": 5}}),
            policies: vec!["p".into()],
            created_at: UnixTime(10),
            expires_at: UnixTime(70),
            decided_at: None,
            decided_by: None,
            reason: None,
            used_at: None,
        }
    }

    #[test]
    fn approval_details_are_todays() {
        let mut a = approval();
        for (op, decided) in [
            (ApprovalOp::Opened, false),
            (ApprovalOp::Approved, true),
            (ApprovalOp::Rejected, true),
            (ApprovalOp::Used, true),
        ] {
            if decided {
                a.status = ApprovalStatus::Approved;
                a.decided_by = Some(human_id().to_string());
                a.reason = Some("fine".into());
            }
            let engine = json!({
                "op": op.as_str(),
                "approval_id": a.id,
                "status": a.status.as_str(),
                "approver": a.approver,
                "approver_role": a.approver_role.as_str(),
                "action": a.action,
                "resource": a.resource,
                "request": a.request,
                "policies": a.policies,
                "expires_at": a.expires_at,
                "decided_by": a.decided_by,
                "reason": a.reason,
            });
            let tail = if decided {
                format!(r#""decided_by":"{}","reason":"fine""#, human_id())
            } else {
                r#""decided_by":null,"reason":null"#.to_owned()
            };
            let expected = format!(
                concat!(
                    r#"{{"op":"{op}","approval_id":"{id}","status":"{status}","approver":"{h}","#,
                    r#""approver_role":"owner","action":"payments.send","resource":"acct/1","#,
                    r#""request":{request},"policies":["p"],"expires_at":70,{tail}}}"#
                ),
                op = op.as_str(),
                id = a.id,
                status = a.status.as_str(),
                h = human_id(),
                request = serde_json::to_string(&a.request).unwrap(),
                tail = tail,
            );
            let details = AuditDetails::from(ApprovalDetails::new(op, &a));
            assert_eq!(details.kind(), AuditKind::Approval);
            same(details, &expected, engine);
        }
    }

    #[test]
    fn governance_details_are_todays() {
        let until = UnixTime(500);
        same(
            GovernanceDetails::FindingAccept {
                finding: "fnd_1".into(),
                kind: FindingKind::IdleAgent,
                subject: agent_id().to_string(),
                by: "admin".into(),
                justification: "seasonal".into(),
                until,
            },
            &format!(
                concat!(
                    r#"{{"op":"finding.accept","finding":"fnd_1","kind":"idle_agent","subject":"{a}","by":"admin","#,
                    r#""justification":"seasonal","until":500}}"#
                ),
                a = agent_id()
            ),
            json!({
                "op": "finding.accept",
                "finding": "fnd_1",
                "kind": FindingKind::IdleAgent,
                "subject": agent_id().to_string(),
                "by": "admin",
                "justification": "seasonal",
                "until": until,
            }),
        );
        let max_scope = Scope::parse("crm.read").unwrap();
        let details = GovernanceDetails::AgentAttest {
            attestation: "att_1".into(),
            by: "hum_x".into(),
            note: "ok".into(),
            max_scope: max_scope.clone(),
        };
        assert_eq!(AuditDetails::from(details.clone()).kind(), AuditKind::Governance);
        same(
            details,
            r#"{"op":"agent.attest","attestation":"att_1","by":"hum_x","note":"ok","max_scope":["crm.read"]}"#,
            json!({
                "op": "agent.attest",
                "attestation": "att_1",
                "by": "hum_x",
                "note": "ok",
                "max_scope": max_scope,
            }),
        );
    }
}
