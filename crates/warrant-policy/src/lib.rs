//! Warrant's Cedar policies.
//!
//! * [`schema`]: the schema shipped with Warrant, and the action declarations generated
//!   from the actions a policy set names (with their wildcard groups).
//! * [`load`]: reading `*.cedar` files, naming policies (`@id`), validating the set
//!   against the schema (strict mode) and fingerprinting it. An invalid set is an error,
//!   never a partial set.
//! * [`eval`]: mapping one decision's input to Cedar entities and context, and
//!   evaluating it. Any evaluation error is reported, so the caller can deny.
//! * [`native`]: the Cedar values of that input built as Cedar holds them (the
//!   warrant-derived context once per warrant), not evaluated from expressions per
//!   request.
//!
//! No I/O happens here except [`load::read_dir`]; time is part of the input.

pub mod eval;
pub mod load;
pub mod native;
pub mod schema;

pub use eval::{DecisionInput, EvalError, SubjectInput, SubjectPrincipal, Verdict};
pub use load::{CompiledPolicies, PolicyError, PolicyFile};
pub use native::WarrantContext;

/// The policy set written to a new data directory.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");
/// The file name the default set is written under.
pub const DEFAULT_POLICY_FILE: &str = "default.cedar";
