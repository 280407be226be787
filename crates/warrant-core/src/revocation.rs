//! What a revocation names.

use serde::{Deserialize, Serialize};

/// What a revocation names: one warrant, or everything of an agent, a task or a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One warrant and its descendants.
    Warrant,
    /// Every warrant whose chain contains an agent (and the agent is suspended).
    Agent,
    /// Every warrant of a task (also how a task is completed).
    Task,
    /// Every warrant on behalf of a human.
    Human,
}

impl RevocationKind {
    /// Every kind, in declaration order.
    pub const ALL: [RevocationKind; 4] =
        [RevocationKind::Warrant, RevocationKind::Agent, RevocationKind::Task, RevocationKind::Human];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Warrant => "warrant",
            RevocationKind::Agent => "agent",
            RevocationKind::Task => "task",
            RevocationKind::Human => "human",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<RevocationKind> {
        RevocationKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_todays_and_match_serde() {
        let names: Vec<&str> = RevocationKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["warrant", "agent", "task", "human"]);
        for kind in RevocationKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<RevocationKind>(json).unwrap(), kind);
            assert_eq!(RevocationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RevocationKind::parse("session"), None);
    }
}
