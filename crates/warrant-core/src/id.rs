//! Typed identifiers. Each kind has its own prefix so that an agent id can never be
//! passed where a human id is expected, on the wire or in code.
//!
//! Ids are minted from caller-supplied random bytes (the core does no I/O); parsing
//! checks the prefix and the character set, so a parsed id is always well formed.

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string does not start with the kind's prefix.
    #[error("`{value}` is not a {kind} id: it must start with `{prefix}`")]
    WrongPrefix {
        /// What kind of id was expected.
        kind: &'static str,
        /// The expected prefix.
        prefix: &'static str,
        /// The offending input.
        value: String,
    },
    /// The part after the prefix is empty, too long, or has characters outside `[a-z0-9_-]`.
    #[error("`{value}` is not a valid {kind} id: after `{prefix}` use 1 to 64 characters from a-z, 0-9, `_` and `-`")]
    BadBody {
        /// What kind of id was expected.
        kind: &'static str,
        /// The expected prefix.
        prefix: &'static str,
        /// The offending input.
        value: String,
    },
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Mints a new id from random bytes supplied by the caller.
            pub fn from_random(bytes: [u8; 12]) -> Self {
                Self(format!("{}{}", $prefix, hex::encode(bytes)))
            }

            /// Mints a new id that sorts by when it was made: 12 hex digits of `millis`
            /// (milliseconds since the Unix epoch, modulo 2^48, about 8 900 years), then
            /// the 20 hex digits of `random`. Ids made close together in time sit side by
            /// side in a database index, so a burst of inserts writes a few index pages
            /// instead of one page per id; `random` keeps them unique and unguessable.
            pub fn from_time_and_random(millis: u64, random: [u8; 10]) -> Self {
                Self(format!("{}{:012x}{}", $prefix, millis & 0xffff_ffff_ffff, hex::encode(random)))
            }

            /// Parses an id, checking its prefix and characters.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let Some(body) = value.strip_prefix($prefix) else {
                    return Err(IdError::WrongPrefix { kind: $kind, prefix: $prefix, value: value.to_owned() });
                };
                let ok = !body.is_empty()
                    && body.len() <= 64
                    && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
                if ok {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError::BadBody { kind: $kind, prefix: $prefix, value: value.to_owned() })
                }
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

typed_id!(
    /// A human: the only principal whose intent can start work.
    HumanId, "hum_", "human"
);
typed_id!(
    /// A registered agent.
    AgentId, "agt_", "agent"
);
typed_id!(
    /// A task: one unit of intent that every warrant belongs to.
    TaskId, "tsk_", "task"
);
typed_id!(
    /// A warrant's `jti`.
    WarrantId, "wrt_", "warrant"
);
typed_id!(
    /// A human approval of a `pending` decision.
    ApprovalId, "apr_", "approval"
);
typed_id!(
    /// An enforcement point's (PEP's) credential for the AuthZEN PDP.
    PepId, "pep_", "PEP credential"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_parse_back() {
        let id = AgentId::from_random([7; 12]);
        assert_eq!(AgentId::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("agt_"));
    }

    /// Time-ordered ids parse back, and an id made later sorts after one made earlier
    /// whatever their random parts (so inserts of a burst land side by side in an index).
    #[test]
    fn time_ordered_ids_parse_back_and_sort_by_time() {
        let early = WarrantId::from_time_and_random(1_764_900_000_000, [0xff; 10]);
        let later = WarrantId::from_time_and_random(1_764_900_000_001, [0; 10]);
        assert_eq!(WarrantId::parse(early.as_str()), Ok(early.clone()));
        assert_eq!(early.as_str().len(), "wrt_".len() + 32);
        assert!(early < later, "{early} should sort before {later}");
        let task = TaskId::from_time_and_random(0, [1; 10]);
        assert_eq!(TaskId::parse(task.as_str()), Ok(task.clone()));
        assert!(task.as_str().starts_with("tsk_000000000000"));
        // Only the low 48 bits of the time are kept: the id never grows.
        let far = TaskId::from_time_and_random(u64::MAX, [1; 10]);
        assert_eq!(far.as_str().len(), task.as_str().len());
    }

    #[test]
    fn wrong_kind_is_refused() {
        let human = HumanId::from_random([1; 12]);
        assert!(matches!(AgentId::parse(human.as_str()), Err(IdError::WrongPrefix { .. })));
        assert!(matches!(AgentId::parse("agt_"), Err(IdError::BadBody { .. })));
        assert!(matches!(AgentId::parse("agt_ABC"), Err(IdError::BadBody { .. })));
        assert!(matches!(AgentId::parse("agt_a b"), Err(IdError::BadBody { .. })));
    }
}
