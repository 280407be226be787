//! What an agent actually used, and the narrower max scope recommended from it.
//!
//! Usage is kept per action: when it was last allowed, up to [`MAX_RESOURCES`] distinct
//! resources, and the longest path prefix common to every resource it touched. Scope an
//! agent delegated onwards counts as used too: a max scope narrowed below what the agent
//! hands to its sub-agents would break the delegation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::permission::Permission;
use crate::scope::Scope;
use crate::time::UnixTime;

/// The most distinct resources remembered per action; beyond it only the common prefix
/// is kept.
pub const MAX_RESOURCES: usize = 16;

/// How one action was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionUse {
    /// When it was last allowed.
    pub last: UnixTime,
    /// Distinct resources, at most [`MAX_RESOURCES`].
    pub resources: BTreeSet<String>,
    /// Whether more resources were seen than are remembered.
    #[serde(default)]
    pub overflow: bool,
    /// The path segments every resource seen so far starts with.
    pub prefix: Vec<String>,
}

/// What one agent used: allowed actions, delegated scope and its last activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUsage {
    /// The last time the agent asked for a decision or a warrant.
    #[serde(default)]
    pub last_seen: Option<UnixTime>,
    /// Allowed actions, by action.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionUse>,
    /// Permissions the agent delegated onwards, with when.
    #[serde(default)]
    pub delegated: BTreeMap<Permission, UnixTime>,
}

fn common_prefix(prefix: &mut Vec<String>, resource: &str) {
    let same = prefix.iter().zip(resource.split('/')).take_while(|(a, b)| a.as_str() == *b).count();
    prefix.truncate(same);
}

impl AgentUsage {
    /// Notes activity at `now` (a decision asked for, a warrant minted).
    pub fn seen(&mut self, now: UnixTime) {
        if self.last_seen.is_none_or(|t| t < now) {
            self.last_seen = Some(now);
        }
    }

    /// Notes an allowed `action` on `resource` at `now`.
    pub fn used(&mut self, action: &str, resource: &str, now: UnixTime) {
        self.seen(now);
        match self.actions.get_mut(action) {
            Some(entry) => {
                entry.last = entry.last.max(now);
                if !entry.resources.contains(resource) {
                    common_prefix(&mut entry.prefix, resource);
                    if entry.resources.len() < MAX_RESOURCES {
                        entry.resources.insert(resource.to_owned());
                    } else {
                        entry.overflow = true;
                    }
                }
            }
            None => {
                let entry = ActionUse {
                    last: now,
                    resources: BTreeSet::from([resource.to_owned()]),
                    overflow: false,
                    prefix: resource.split('/').map(str::to_owned).collect(),
                };
                self.actions.insert(action.to_owned(), entry);
            }
        }
    }

    /// Notes that the agent delegated `scope` onwards at `now`.
    pub fn delegated(&mut self, scope: &Scope, now: UnixTime) {
        self.seen(now);
        for p in scope.permissions() {
            let last = self.delegated.entry(p.clone()).or_insert(now);
            *last = (*last).max(now);
        }
    }

    /// Adds what `other` recorded of the same agent (another server's view of it): the
    /// later times, every action and delegated permission of either, each action's
    /// resources together (at most [`MAX_RESOURCES`], beyond which it overflows) and the
    /// prefix both share. Merging a usage into itself changes nothing.
    pub fn merge(&mut self, other: &AgentUsage) {
        if let Some(at) = other.last_seen {
            self.seen(at);
        }
        for (action, theirs) in &other.actions {
            let Some(mine) = self.actions.get_mut(action) else {
                self.actions.insert(action.clone(), theirs.clone());
                continue;
            };
            mine.last = mine.last.max(theirs.last);
            let same = mine.prefix.iter().zip(&theirs.prefix).take_while(|(a, b)| a == b).count();
            mine.prefix.truncate(same);
            mine.overflow |= theirs.overflow;
            for resource in &theirs.resources {
                if mine.resources.contains(resource) {
                    continue;
                }
                if mine.resources.len() < MAX_RESOURCES {
                    mine.resources.insert(resource.clone());
                } else {
                    mine.overflow = true;
                }
            }
        }
        for (permission, &at) in &other.delegated {
            let last = self.delegated.entry(permission.clone()).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Forgets use older than `since` (outside the usage window). Returns whether
    /// anything was forgotten.
    pub fn forget_before(&mut self, since: UnixTime) -> bool {
        let before = self.actions.len() + self.delegated.len();
        self.actions.retain(|_, u| u.last >= since);
        self.delegated.retain(|_, last| *last >= since);
        before != self.actions.len() + self.delegated.len()
    }

    /// The permissions that cover what was used: per action, the one resource it was
    /// used on, or its common prefix followed by `**` (the action alone when the
    /// resources share no prefix); plus every delegated permission.
    pub fn used_permissions(&self) -> Vec<Permission> {
        let mut out = Vec::with_capacity(self.actions.len() + self.delegated.len());
        for (action, entry) in &self.actions {
            let text = match (entry.resources.len(), entry.overflow, entry.prefix.is_empty()) {
                (1, false, _) => entry.resources.iter().next().map(|r| format!("{action}:{r}")),
                (_, _, true) => Some(action.clone()),
                _ => Some(format!("{action}:{}/**", entry.prefix.join("/"))),
            };
            if let Some(p) = text.and_then(|t| Permission::parse(&t).ok()) {
                out.push(p);
            }
        }
        out.extend(self.delegated.keys().cloned());
        out
    }
}

/// The members of `max` that nothing `used` (an [`AgentUsage::used_permissions`]) touched.
pub fn unused(max: &Scope, used: &[Permission]) -> Vec<Permission> {
    max.permissions().iter().filter(|p| !used.iter().any(|u| p.meet(u).is_some())).cloned().collect()
}

/// The narrowest scope, within `max`, that still allows everything `used` (an
/// [`AgentUsage::used_permissions`]) allows that `max` allows: each used permission met
/// with each member of `max`.
///
/// Always covered by `max`, so applying it only ever narrows.
pub fn recommend(max: &Scope, used: &[Permission]) -> Scope {
    Scope::from_permissions(max.permissions().iter().flat_map(|p| used.iter().filter_map(move |u| p.meet(u))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_two_servers_views_is_seeing_both_streams() {
        let a_calls = [("crm.read", "crm/acct/1", 10), ("crm.read", "crm/acct/2", 20), ("mail.send", "mail/x", 5)];
        let b_calls = [("crm.read", "crm/lead/9", 30), ("crm.write", "crm/acct/1", 15)];
        let (mut a, mut b, mut both) = (AgentUsage::default(), AgentUsage::default(), AgentUsage::default());
        for (action, resource, at) in a_calls {
            a.used(action, resource, UnixTime(at));
            both.used(action, resource, UnixTime(at));
        }
        for (action, resource, at) in b_calls {
            b.used(action, resource, UnixTime(at));
            both.used(action, resource, UnixTime(at));
        }
        let scope = Scope::parse("crm.admin:crm/**").unwrap();
        b.delegated(&scope, UnixTime(40));
        both.delegated(&scope, UnixTime(40));
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, both);
        let mut other_way = b.clone();
        other_way.merge(&a);
        assert_eq!(other_way.used_permissions(), both.used_permissions());
        let again = merged.clone();
        merged.merge(&again);
        assert_eq!(merged, both, "merging a usage into itself changes nothing");
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn recommends_what_was_used_within_the_max_scope() {
        let max = scope("crm.* billing.read payments.refund:customers/**");
        let mut usage = AgentUsage::default();
        usage.used("crm.read", "crm/accounts/1", UnixTime(10));
        usage.used("crm.read", "crm/accounts/2", UnixTime(11));
        usage.used("billing.read", "invoices/7", UnixTime(12));
        let rec = recommend(&max, &usage.used_permissions());
        assert_eq!(rec.to_string(), "crm.read:crm/accounts/** billing.read:invoices/7");
        assert!(max.covers(&rec));
        for (a, r) in [("crm.read", "crm/accounts/1"), ("crm.read", "crm/accounts/2"), ("billing.read", "invoices/7")] {
            assert!(rec.allows(a, r), "{a} {r}");
        }
        assert!(!rec.allows("crm.write", "crm/accounts/1"));
        let unused: Vec<String> = unused(&max, &usage.used_permissions()).iter().map(|p| p.to_string()).collect();
        assert_eq!(unused, vec!["payments.refund:customers/**"]);
    }

    #[test]
    fn delegated_scope_counts_as_used() {
        let max = scope("crm.* tickets.*");
        let mut usage = AgentUsage::default();
        usage.delegated(&scope("tickets.create:queue/ops/**"), UnixTime(5));
        let rec = recommend(&max, &usage.used_permissions());
        assert_eq!(rec.to_string(), "tickets.create:queue/ops/**");
        assert_eq!(unused(&max, &usage.used_permissions()).len(), 1);
    }

    #[test]
    fn many_resources_collapse_to_their_prefix_and_disjoint_ones_to_the_action() {
        let mut usage = AgentUsage::default();
        for i in 0..40 {
            usage.used("docs.read", &format!("docs/team/{i}"), UnixTime(i));
        }
        usage.used("mail.send", "eu/alice", UnixTime(1));
        usage.used("mail.send", "us/bob", UnixTime(2));
        let rec = recommend(&scope("docs.read mail.send"), &usage.used_permissions());
        assert_eq!(rec.to_string(), "docs.read:docs/team/** mail.send");
        assert!(rec.allows("docs.read", "docs/team/39"));
    }

    #[test]
    fn forgetting_drops_use_outside_the_window() {
        let mut usage = AgentUsage::default();
        usage.used("a.b", "x", UnixTime(1));
        usage.used("a.c", "x", UnixTime(100));
        assert!(usage.forget_before(UnixTime(50)));
        assert_eq!(usage.actions.keys().collect::<Vec<_>>(), vec!["a.c"]);
        assert_eq!(usage.last_seen, Some(UnixTime(100)));
    }

    #[test]
    fn usage_round_trips_through_json() {
        let mut usage = AgentUsage::default();
        usage.used("a.b", "x/y", UnixTime(1));
        usage.delegated(&scope("a.b:x/**"), UnixTime(2));
        let json = serde_json::to_string(&usage).unwrap();
        assert_eq!(serde_json::from_str::<AgentUsage>(&json).unwrap(), usage);
    }
}
