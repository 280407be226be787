//! Continuous governance: the findings a security team acts on, and the pure rules that
//! raise and clear them.
//!
//! Everything here is pure: the engine gathers the facts (the registry, what each agent
//! used, its live warrants, attestations) and passes the time in.
//!
//! * [`finding`]: a finding's kind, severity, subject, evidence and status.
//! * [`evidence`]: the typed evidence of each kind of finding.
//! * [`usage`]: what an agent actually used, and the narrower scope recommended from it.
//! * [`rules`]: the per-agent rules a sweep applies (orphaned, idle, over-privileged, …),
//!   one function each.
//! * [`reconcile`]: turning one sweep's observations into opened, refreshed, reopened
//!   and resolved findings.
//! * [`shadow`]: one subject's shadow activity as counted, and how the counts of servers
//!   sharing a database add up.

pub mod evidence;
pub mod finding;
pub mod kind;
pub mod reconcile;
pub mod rules;
pub mod shadow;
pub mod usage;

pub use evidence::Evidence;
pub use finding::{Acceptance, Attestation, Finding, FindingKind, FindingStatus, Observation, Severity};
pub use reconcile::{reconcile, Changes, SweepScope};
pub use rules::{observe_agent, AgentFacts, AgentRule, GovernRules, LiveStats, AGENT_RULES};
pub use shadow::{ClaimedIds, ShadowActivity, ShadowBatch, ShadowBatchId};
pub use usage::AgentUsage;
