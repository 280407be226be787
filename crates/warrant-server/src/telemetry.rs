//! Structured logs. Handlers log ids and outcomes, never tokens, keys or request bodies;
//! the HTTP trace layer records method, path and status only (no headers).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human-readable by default, JSON lines when `json`.
/// The filter comes from `WARRANT_LOG` (e.g. `debug`, `warrant_engine=debug`), default `info`.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("WARRANT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already installed, which is harmless.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
