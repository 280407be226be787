//! Warrant's HTTP API over [`warrant_engine::Engine`].
//!
//! * [`config`]: settings from a TOML file, `WARRANT_*` variables and flags.
//! * [`server`]: opening the data directory, the admin token, binding, serving and
//!   graceful shutdown; the [`server::SystemClock`], the one place that reads real time.
//! * [`app`]: the router; [`routes`]: thin handlers; [`error`]: the one API error
//!   type and the OAuth error type; [`extract`]: extractors whose rejections use them.
//! * [`openapi`]: the OpenAPI document, generated from the handlers.

pub mod app;
pub mod config;
pub mod console;
pub mod error;
pub mod extract;
pub mod kek;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod shed;
pub mod state;
pub mod telemetry;
/// The outbound webhook (part of the engine; re-exported for callers of this crate).
pub use warrant_engine::webhook;

pub use app::app;
pub use config::{FileConfig, ServeOptions, Settings};
pub use server::{BoundServer, ServeError};
pub use state::AppState;
