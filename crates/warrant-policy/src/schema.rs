//! The Cedar schema: the shipped base (entity and context types) plus generated action
//! declarations.

use std::collections::BTreeSet;

/// The schema shipped with Warrant (`schema/warrant.cedarschema`).
pub const BASE_SCHEMA: &str = include_str!("../schema/warrant.cedarschema");
/// The file name under which an operator may override the base schema in the policies
/// directory.
pub const SCHEMA_FILE: &str = "warrant.cedarschema";
/// The Cedar namespace of every Warrant entity type and action.
pub const NAMESPACE: &str = "Warrant";

/// The wildcard groups an action belongs to, nearest first: `a.b.c` -> `a.b.*`, `a.*`,
/// `*`; `a.*` -> `*`; `*` -> nothing.
pub fn action_groups(action: &str) -> Vec<String> {
    let base = action.strip_suffix(".*").unwrap_or(action);
    if action == "*" {
        return Vec::new();
    }
    let segments: Vec<&str> = base.split('.').collect();
    let mut out = Vec::new();
    // Every proper prefix is a group (`a.*` covers what is strictly below `a`), for a
    // concrete action `a.b.c` and for a group `a.b.*` alike.
    for len in (1..segments.len()).rev() {
        if let Some(prefix) = segments.get(..len) {
            out.push(format!("{}.*", prefix.join(".")));
        }
    }
    out.push("*".to_owned());
    out
}

/// What an agent's decision applies to: the request shape of the agent policies.
pub const AGENT_APPLIES_TO: &str = "principal: [Agent], resource: [Resource], context: Context";
/// What a plain subject's decision applies to: the request shape of the policies whose
/// head names `Human` or `Service`.
pub const SUBJECT_APPLIES_TO: &str = "principal: [Human, Service], resource: [Resource], context: SubjectContext";
/// The entity types a plain-subject policy names in its head.
pub const SUBJECT_TYPES: [&str; 2] = ["Human", "Service"];

/// The schema text for `actions`: the base schema with one declaration per action and
/// per wildcard group, each group containing its members, applying to agents.
pub fn with_actions(base: &str, actions: &BTreeSet<String>) -> String {
    with_actions_for(base, actions, AGENT_APPLIES_TO)
}

/// The schema text for `actions` applying to `applies_to` (the inside of `appliesTo {…}`).
pub fn with_actions_for(base: &str, actions: &BTreeSet<String>, applies_to: &str) -> String {
    let mut all: BTreeSet<String> = BTreeSet::new();
    all.insert("*".to_owned());
    for action in actions {
        all.insert(action.clone());
        all.extend(action_groups(action));
    }
    let mut decls = String::new();
    for action in &all {
        let parent = action_groups(action).into_iter().next();
        let escaped = escape(action);
        let member = match parent {
            Some(p) => format!(" in [\"{}\"]", escape(&p)),
            None => String::new(),
        };
        decls.push_str(&format!("  action \"{escaped}\"{member} appliesTo {{ {applies_to} }};\n"));
    }
    // Cedar allows one block per namespace: the actions go inside the base's `Warrant`
    // block, which must be the last thing in the file.
    match base.rfind('}') {
        Some(end) => format!(
            "{}\n  // actions named by the policy set\n{decls}{}",
            base.get(..end).unwrap_or(base),
            base.get(end..).unwrap_or("")
        ),
        None => format!("{base}\nnamespace {NAMESPACE} {{\n{decls}}}\n"),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert_eq!(action_groups("a.b.c"), vec!["a.b.*", "a.*", "*"]);
        assert_eq!(action_groups("a.b.*"), vec!["a.*", "*"]);
        assert_eq!(action_groups("a.*"), vec!["*"]);
        assert_eq!(action_groups("a"), vec!["*"]);
        assert!(action_groups("*").is_empty());
    }
}
