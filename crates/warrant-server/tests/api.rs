//! Warrant's HTTP API, end to end: every test starts a real server on a loopback port
//! with a fresh data directory and sends it HTTP requests, in-process to its router or,
//! where the connection matters, over its socket (see `api/testkit.rs`).
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test code")]

#[path = "api/testkit.rs"]
mod testkit;

#[path = "api/authzen.rs"]
mod authzen;
#[path = "api/bad_input.rs"]
mod bad_input;
#[path = "api/console.rs"]
mod console;
#[path = "api/decisions.rs"]
mod decisions;
#[path = "api/evidence.rs"]
mod evidence;
#[path = "api/failclosed.rs"]
mod failclosed;
#[path = "api/govern.rs"]
mod govern;
#[path = "api/guard.rs"]
mod guard;
#[path = "api/introspection.rs"]
mod introspection;
#[path = "api/lifecycle.rs"]
mod lifecycle;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/management.rs"]
mod management;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/oauth.rs"]
mod oauth;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/policies.rs"]
mod policies;
#[path = "api/revocation.rs"]
mod revocation;
#[path = "api/tasks.rs"]
mod tasks;
#[path = "api/tokens.rs"]
mod tokens;
