#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test code")]
//! The engine's own tests, in-process: issuance, delegation, decisions, revocation
//! cascades, task completion, approvals, quarantine, budgets and governance, each on an
//! in-memory SQLite store with a manual clock (no sleeps: time moves when a test moves
//! it), plus the audit writer against a real SQLite file.
//!
//! Every call into the engine goes through [`harness`].

#[path = "engine/harness.rs"]
mod harness;
/// The store's own undo of each SQLite migration, for tests of what a migration does.
#[path = "../../warrant-store/tests/support/undo.rs"]
mod undo;

#[path = "engine/approvals.rs"]
mod approvals;
#[path = "engine/audit.rs"]
mod audit;
#[path = "engine/authzen.rs"]
mod authzen;
#[path = "engine/budgets.rs"]
mod budgets;
#[path = "engine/calibration.rs"]
mod calibration;
#[path = "engine/cluster.rs"]
mod cluster;
#[path = "engine/decisions.rs"]
mod decisions;
#[path = "engine/delegation.rs"]
mod delegation;
#[path = "engine/governance.rs"]
mod governance;
#[path = "engine/issuance.rs"]
mod issuance;
#[path = "engine/quarantine.rs"]
mod quarantine;
#[path = "engine/revocation.rs"]
mod revocation;
#[path = "engine/subjects.rs"]
mod subjects;
#[path = "engine/tasks.rs"]
mod tasks;
#[path = "engine/transmitter.rs"]
mod transmitter;
