//! A scope: a set of permissions, written on the wire as space-separated permissions
//! (the OAuth `scope` syntax).

use serde::{Deserialize, Serialize};

use crate::permission::{Permission, PermissionError, MAX_PERMISSION_LEN};

/// A set of permissions. Kept free of duplicates and of permissions already covered by
/// another member, in first-seen order, so that equal sets print the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Scope(Vec<Permission>);

pub use crate::permission::MAX_SCOPE_LEN;

/// The longest scope a warrant may carry, in bytes of its space-separated text. With the
/// other claims it keeps a warrant well inside the longest token that verifies
/// (`warrant_token::jws::MAX_TOKEN_LEN`, 16 KiB).
pub const MAX_WARRANT_SCOPE_BYTES: usize = 4096;

/// Why a scope may not be a warrant's scope: it would not fit in a warrant that verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeSizeError {
    /// More than [`MAX_SCOPE_LEN`] permissions.
    #[error("more than the {MAX_SCOPE_LEN} permissions a scope may hold")]
    TooMany(usize),
    /// Longer than [`MAX_WARRANT_SCOPE_BYTES`].
    #[error("{0} bytes, more than the {MAX_WARRANT_SCOPE_BYTES} a warrant's scope may be")]
    TooLong(usize),
    /// A permission longer than a permission may be.
    #[error("a permission of {0} bytes, more than the {MAX_PERMISSION_LEN} a permission may be")]
    PermissionTooLong(usize),
}

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

    /// Parses a list of permission strings; at most [`MAX_SCOPE_LEN`] of them.
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, PermissionError> {
        let mut perms = Vec::new();
        for item in items {
            if perms.len() == MAX_SCOPE_LEN {
                return Err(PermissionError::TooMany);
            }
            perms.push(Permission::parse(item)?);
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
        match self.intersect_within(other, usize::MAX) {
            Ok(scope) | Err(scope) => scope,
        }
    }

    /// The permissions covered by both scopes, if that takes at most `max` permissions;
    /// else `Err` with `max + 1` of them (not a meaningful scope: only a refusal).
    ///
    /// The cost is bounded by `|self| * |other|` meets and, for each of them, comparisons
    /// with at most `max + 1` kept permissions (never the square of the number of meets):
    /// the meets are taken broadest first, so a permission once kept is never dropped
    /// again, and the work stops once more than `max` are kept. The result is exactly
    /// what [`from_permissions`](Self::from_permissions) makes of all the meets in their
    /// natural order (the same members, in the same order).
    pub fn intersect_within(&self, other: &Scope, max: usize) -> Result<Scope, Scope> {
        let meets: Vec<Permission> =
            self.0.iter().flat_map(|a| other.0.iter().filter_map(move |b| a.meet(b))).collect();
        let mut order: Vec<usize> = (0..meets.len()).collect();
        order.sort_by_cached_key(|&i| meets.get(i).map(Permission::breadth));
        // Broadest first: a kept permission is never covered by a later one, so `kept`
        // only grows, and ends as the maximal meets (one per class of equal ones).
        let mut kept: Vec<&Permission> = Vec::new();
        for p in order.iter().filter_map(|&i| meets.get(i)) {
            if kept.iter().any(|q| q.covers(p)) {
                continue;
            }
            if kept.len() == max {
                kept.push(p);
                return Err(Scope(kept.into_iter().cloned().collect()));
            }
            kept.push(p);
        }
        // Back to first-seen order: the meets that are as broad as a kept one, which
        // `from_permissions` reduces to the first of each class, at most `kept.len()`
        // compared at each step.
        let maximal = meets.iter().filter(|p| kept.iter().any(|q| p.covers(q))).cloned().collect::<Vec<_>>();
        Ok(Scope::from_permissions(maximal))
    }

    /// The length of the scope's text (permissions joined by single spaces), in bytes.
    pub fn text_len(&self) -> usize {
        self.0.iter().map(|p| p.to_string().len()).sum::<usize>() + self.0.len().saturating_sub(1)
    }

    /// Checks that a warrant may carry this scope: at most [`MAX_SCOPE_LEN`] permissions,
    /// none longer than a permission may be, at most [`MAX_WARRANT_SCOPE_BYTES`] in all.
    /// A scope that passes parses back from its text, so a warrant holding it verifies.
    pub fn check_warrant_size(&self) -> Result<(), ScopeSizeError> {
        if self.0.len() > MAX_SCOPE_LEN {
            return Err(ScopeSizeError::TooMany(self.0.len()));
        }
        let mut total = self.0.len().saturating_sub(1);
        for p in &self.0 {
            let len = p.to_string().len();
            if len > MAX_PERMISSION_LEN {
                return Err(ScopeSizeError::PermissionTooLong(len));
            }
            total += len;
        }
        if total > MAX_WARRANT_SCOPE_BYTES {
            return Err(ScopeSizeError::TooLong(total));
        }
        Ok(())
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

    #[test]
    fn too_many_permissions_are_refused_by_name() {
        let list: Vec<String> = (0..=MAX_SCOPE_LEN).map(|i| format!("a.p{i}")).collect();
        let err = Scope::parse_list(list.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err, PermissionError::TooMany);
        assert!(err.to_string().contains("256 permissions"), "{err}");
        assert!(Scope::parse_list(list.iter().take(MAX_SCOPE_LEN).map(String::as_str)).is_ok());
    }

    #[test]
    fn bounded_intersection_stops_early() {
        // 256 x 256 distinct meets: every action of one side with every resource of the
        // other. Unbounded, reducing 65,536 meets compared each with all kept ones.
        let a = Scope::parse_list(
            (0..MAX_SCOPE_LEN).map(|i| format!("x.a{i}:*/**")).collect::<Vec<_>>().iter().map(String::as_str),
        )
        .unwrap();
        let b = Scope::parse_list(
            (0..MAX_SCOPE_LEN).map(|i| format!("x.*:r{i}/**")).collect::<Vec<_>>().iter().map(String::as_str),
        )
        .unwrap();
        // It stops at the first meet past the bound (what it hands back holds exactly one
        // more than the bound), rather than reducing all 65,536; the time is a benchmark's
        // business, not a test's.
        let over = a.intersect_within(&b, MAX_SCOPE_LEN).unwrap_err();
        assert_eq!(over.permissions().len(), MAX_SCOPE_LEN + 1);
        // Within the bound, the same answer as reducing every meet.
        let small = Scope::parse("x.a1:*/** x.a2:*/**").unwrap();
        let naive = Scope::from_permissions(
            small.permissions().iter().flat_map(|p| b.permissions().iter().filter_map(move |q| p.meet(q))),
        );
        assert_eq!(small.intersect_within(&b, 2 * MAX_SCOPE_LEN).ok(), Some(naive));
    }

    #[test]
    fn warrant_size() {
        assert!(Scope::parse("crm.read tickets.*").unwrap().check_warrant_size().is_ok());
        let p = Permission::parse(&format!("a:{}/**", "y".repeat(500))).unwrap();
        let q = Permission::parse(&format!("a:*/{}/**", "z".repeat(500))).unwrap();
        // The meet of two permissions may be longer than either.
        let meet = Scope::from_permissions(p.meet(&q));
        assert!(matches!(meet.check_warrant_size(), Err(ScopeSizeError::PermissionTooLong(_))), "{meet}");
        let wide = Scope::parse_list(
            (0..200).map(|i| format!("abcdefghijklmnopqrstuvwxyz.p{i}")).collect::<Vec<_>>().iter().map(String::as_str),
        )
        .unwrap();
        assert_eq!(wide.text_len(), wide.to_string().len());
        assert!(matches!(wide.check_warrant_size(), Err(ScopeSizeError::TooLong(_))));
    }
}
