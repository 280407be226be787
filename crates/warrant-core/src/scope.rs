//! A scope: a set of permissions, written on the wire as space-separated permissions
//! (the OAuth `scope` syntax).

use serde::{Deserialize, Serialize};

use crate::permission::{Permission, PermissionError};

/// A set of permissions. Kept free of duplicates and of permissions already covered by
/// another member, in first-seen order, so that equal sets print the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scope(Vec<Permission>);

/// The most permissions one scope may hold.
pub const MAX_SCOPE_LEN: usize = 256;

impl Scope {
    /// The empty scope, which allows nothing.
    pub fn empty() -> Self {
        Scope(Vec::new())
    }

    /// Builds a scope from permissions, dropping any that another member covers.
    pub fn from_permissions(perms: impl IntoIterator<Item = Permission>) -> Self {
        let mut out: Vec<Permission> = Vec::new();
        for p in perms {
            if out.iter().any(|q| q.covers(&p)) {
                continue;
            }
            out.retain(|q| !p.covers(q));
            out.push(p);
        }
        Scope(out)
    }

    /// Parses a space-separated scope string (`"crm.read billing.*:invoices/**"`).
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        Self::parse_list(text.split_whitespace())
    }

    /// Parses a list of permission strings.
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, PermissionError> {
        let perms = items.into_iter().map(Permission::parse).collect::<Result<Vec<_>, _>>()?;
        if perms.len() > MAX_SCOPE_LEN {
            return Err(PermissionError::TooLong);
        }
        Ok(Self::from_permissions(perms))
    }

    /// The permissions in this scope.
    pub fn permissions(&self) -> &[Permission] {
        &self.0
    }

    /// Whether the scope holds no permission.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some member of this scope covers `perm`.
    pub fn covers_permission(&self, perm: &Permission) -> bool {
        self.0.iter().any(|p| p.covers(perm))
    }

    /// Whether this scope covers every permission of `other`.
    pub fn covers(&self, other: &Scope) -> bool {
        other.0.iter().all(|p| self.covers_permission(p))
    }

    /// The first permission of `other` this scope does not cover, if any.
    pub fn first_uncovered<'a>(&self, other: &'a Scope) -> Option<&'a Permission> {
        other.0.iter().find(|p| !self.covers_permission(p))
    }

    /// Whether this scope allows the concrete request `action` on `resource`.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.0.iter().any(|p| p.allows(action, resource))
    }

    /// The permissions covered by both scopes.
    pub fn intersect(&self, other: &Scope) -> Scope {
        Scope::from_permissions(self.0.iter().flat_map(|a| other.0.iter().filter_map(move |b| a.meet(b))))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl TryFrom<Vec<String>> for Scope {
    type Error = PermissionError;
    fn try_from(items: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse_list(items.iter().map(String::as_str))
    }
}

impl From<Scope> for Vec<String> {
    fn from(s: Scope) -> Vec<String> {
        s.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_members_are_dropped() {
        let s = Scope::parse("crm.read crm.* crm.read:x").unwrap();
        assert_eq!(s.to_string(), "crm.*");
    }

    #[test]
    fn intersection() {
        let a = Scope::parse("crm.* billing.read:invoices/**").unwrap();
        let b = Scope::parse("crm.read:customers/* billing.*:invoices/2024/*").unwrap();
        assert_eq!(a.intersect(&b).to_string(), "crm.read:customers/* billing.read:invoices/2024/*");
        assert!(a.intersect(&Scope::parse("hr.read").unwrap()).is_empty());
    }
}
