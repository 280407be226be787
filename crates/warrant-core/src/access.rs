//! Who may do what on Warrant's own API and console: the operator roles, what each may
//! do, and the principal an audited change is recorded under.
//!
//! Four roles, from the least to the most:
//! - [`Role::Viewer`] reads everything;
//! - [`Role::Approver`] reads, and decides approvals;
//! - [`Role::Operator`] reads, and suspends, resumes, revokes, rotates agent keys and
//!   applies or accepts findings (it does not decide approvals: separation of duties);
//! - [`Role::Admin`] does everything, including registering humans and agents, policies
//!   and enforcement point credentials.
//!
//! A human who signs in without a role is a [`Principal::Human`]: they see their own
//! agents and approvals and decide their own approvals, nothing else.

use serde::{Deserialize, Serialize};

use crate::HumanId;

/// What a request needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Read the inventory, decisions, audit, findings, policies.
    Read,
    /// Approve or reject any approval.
    Decide,
    /// Suspend, resume, revoke, rotate agent keys, apply or accept findings, sweep.
    Operate,
    /// Everything else: registration, policies, credentials, keys.
    Administer,
}

impl Capability {
    /// What it takes, in words, for a refusal to name.
    pub fn needs(self) -> &'static str {
        match self {
            Capability::Read => "reading the inventory needs a role (viewer or above)",
            Capability::Decide => "deciding approvals needs the approver or admin role",
            Capability::Operate => "suspending, revoking and applying findings need the operator or admin role",
            Capability::Administer => "this needs the admin role",
        }
    }
}

/// An operator's role, mapped from their identity provider's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads, and decides approvals.
    Approver,
    /// Reads, and suspends, resumes, revokes, applies findings.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Approver, Role::Operator, Role::Admin];

    /// The wire name (`viewer`, `approver`, `operator`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this role may do what `needed` names.
    pub fn can(self, needed: Capability) -> bool {
        matches!(
            (self, needed),
            (Role::Admin, _)
                | (_, Capability::Read)
                | (Role::Approver, Capability::Decide)
                | (Role::Operator, Capability::Operate)
        )
    }

    /// The role `groups` give under `mapping` (role to the groups that hold it): the
    /// greatest role any of the groups holds, or `None`.
    pub fn from_groups<'a>(groups: &[String], mapping: impl IntoIterator<Item = (Role, &'a [String])>) -> Option<Role> {
        mapping
            .into_iter()
            .filter(|(_, holders)| holders.iter().any(|g| groups.contains(g)))
            .map(|(role, _)| role)
            .max()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a change, as the audit log records it (`by`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    /// The admin token (break-glass).
    AdminToken,
    /// An operator signed in at an identity provider, with the role their groups give.
    Operator {
        /// The provider's issuer.
        issuer: String,
        /// Their subject (`sub`) there.
        subject: String,
        /// Their display name.
        name: String,
        /// Their role.
        role: Role,
    },
    /// A human acting for themselves (their own agents and approvals).
    Human {
        /// The human.
        id: HumanId,
        /// Their display name.
        name: String,
    },
}

impl Principal {
    /// Whether this principal may do what `needed` names anywhere: the admin token and
    /// operators by role; a human only through their own resources (see [`Principal::human`]).
    pub fn can(&self, needed: Capability) -> bool {
        match self {
            Principal::AdminToken => true,
            Principal::Operator { role, .. } => role.can(needed),
            Principal::Human { .. } => false,
        }
    }

    /// The human, for a principal that is one.
    pub fn human(&self) -> Option<&HumanId> {
        match self {
            Principal::Human { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The role shown for this principal (`admin` for the admin token, `human` for a human).
    pub fn role_label(&self) -> &'static str {
        match self {
            Principal::AdminToken => "admin",
            Principal::Operator { role, .. } => role.as_str(),
            Principal::Human { .. } => "human",
        }
    }

    /// How records that name their author by text (finding acceptances, approvals) name
    /// this principal: `admin` for the admin token, `operator:<issuer>#<subject>`, or
    /// the human's id.
    pub fn recorded_as(&self) -> String {
        match self {
            Principal::AdminToken => "admin".to_owned(),
            Principal::Operator { issuer, subject, .. } => format!("operator:{issuer}#{subject}"),
            Principal::Human { id, .. } => id.to_string(),
        }
    }

    /// A short label: `admin token`, the operator's or human's name.
    pub fn label(&self) -> String {
        match self {
            Principal::AdminToken => "admin token".to_owned(),
            Principal::Operator { name, .. } | Principal::Human { name, .. } => name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_can_exactly_what_the_docs_say() {
        use Capability::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Approver, [true, true, false, false]),
            (Role::Operator, [true, false, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Read, Decide, Operate, Administer].map(|c| role.can(c));
            assert_eq!(got, expected, "{role}");
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn the_greatest_role_of_any_group_wins_and_no_group_gives_none() {
        let viewers = vec!["auditors".to_owned()];
        let admins = vec!["warrant-admins".to_owned()];
        let mapping = || [(Role::Viewer, viewers.as_slice()), (Role::Admin, admins.as_slice())];
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Role::from_groups(&groups(&["auditors", "warrant-admins"]), mapping()), Some(Role::Admin));
        assert_eq!(Role::from_groups(&groups(&["auditors"]), mapping()), Some(Role::Viewer));
        assert_eq!(Role::from_groups(&groups(&["sales"]), mapping()), None);
    }

    #[test]
    fn a_human_has_no_capability_beyond_their_own_resources() {
        let human =
            Principal::Human { id: HumanId::parse("hum_00000000000000000000000000000001").unwrap(), name: "A".into() };
        assert!(!human.can(Capability::Read));
        assert!(human.human().is_some());
        assert!(Principal::AdminToken.can(Capability::Administer));
    }
}
