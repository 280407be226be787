//! Warrant's domain core: its vocabulary (humans, agents, permissions, scopes, warrants)
//! as types, and the pure rules
//! that decide what a warrant may hold.
//!
//! Nothing here does I/O, reads the clock or spawns tasks: the current time and any
//! randomness are passed in by the caller, so every rule is a plain function that tests
//! and property tests can drive directly.
//!
//! * [`access`]: operator roles, what each may do, and who an audited change is by.
//! * [`authzen`]: the OpenID AuthZEN Authorization API 1.0 request and response shapes.
//! * [`id`]: typed identifiers (`hum_…`, `agt_…`, `tsk_…`, `wrt_…`).
//! * [`permission`]: one permission, `action` or `action:resource-pattern`, and *covers*.
//! * [`scope`]: a set of permissions, *covers* and intersection.
//! * [`registry`]: humans and agents as registered, and what a human's session is for.
//! * [`revocation`]: what a revocation names.
//! * [`claims`]: the claims a warrant carries on the wire (see `docs/wire.md`).
//! * [`decision`]: the machine-readable code of an authorization decision.
//! * [`delegation`]: the issuance and delegation rules (scope only narrows, one
//!   accountable human, bounded chains).
//! * [`guard`]: runtime guardrails: rate limits, budgets, baselines, anomaly signals,
//!   trust and approvals.
//! * [`govern`]: continuous governance: findings, usage and least-privilege
//!   recommendations, the per-agent rules of a sweep.

pub mod access;
pub mod audit;
pub mod authzen;
pub mod claims;
pub mod decision;
pub mod delegation;
pub mod govern;
pub mod guard;
pub mod id;
pub mod permission;
pub mod registry;
pub mod revocation;
pub mod scope;
pub mod time;

pub use access::{Capability, Principal, Role};
pub use claims::{Actor, Confirmation, TaskClaim, WarrantClaims};
pub use decision::DecisionCode;
pub use delegation::{DelegationError, Grant, Limits};
pub use id::{AgentId, ApprovalId, HumanId, IdError, PepId, TaskId, WarrantId};
pub use permission::{percent_decode, percent_encode, NonCanonical, Permission, PermissionError};
pub use registry::{Agent, AgentStatus, FederatedIdentity, Human, HumanStatus, Mode, PublicJwk, SessionPurpose};
pub use revocation::RevocationKind;
pub use scope::Scope;
pub use time::UnixTime;
