//! Settings, layered: a TOML file, then `WARRANT_*` environment variables, then flags,
//! each overriding the one before. Flags and environment variables are read by the CLI
//! (clap) into [`ServeOptions`]; [`Settings::resolve`] lays them over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warrant_core::Limits;

/// The data directory when nothing else is configured.
pub const DEFAULT_DATA_DIR: &str = "./warrant-data";
/// The listen address when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The largest request body accepted, in bytes, when nothing else is configured.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The TOML configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Public issuer URL.
    pub issuer: Option<String>,
    /// Default warrant lifetime, seconds.
    pub default_ttl: Option<i64>,
    /// Maximum warrant lifetime, seconds.
    pub max_ttl: Option<i64>,
    /// Maximum delegation depth.
    pub max_depth: Option<usize>,
    /// Human session lifetime, seconds.
    pub session_ttl: Option<i64>,
    /// Largest request body, bytes.
    pub body_limit: Option<usize>,
}

/// Values from flags or the environment (already merged by clap: flag over variable).
pub type ServeOptions = FileConfig;

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("the configuration file `{path}` is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// The resolved settings `warrant serve` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Data directory (database, admin token).
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public issuer URL; derived from the bound address when unset.
    pub issuer: Option<String>,
    /// Lifetimes and depth.
    pub limits: Limits,
    /// Human session lifetime, seconds.
    pub session_ttl: i64,
    /// Largest request body, bytes.
    pub body_limit: usize,
}

impl FileConfig {
    /// Reads a TOML configuration file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// `self` where set, else `under`.
    pub fn over(self, under: FileConfig) -> FileConfig {
        FileConfig {
            data: self.data.or(under.data),
            listen: self.listen.or(under.listen),
            issuer: self.issuer.or(under.issuer),
            default_ttl: self.default_ttl.or(under.default_ttl),
            max_ttl: self.max_ttl.or(under.max_ttl),
            max_depth: self.max_depth.or(under.max_depth),
            session_ttl: self.session_ttl.or(under.session_ttl),
            body_limit: self.body_limit.or(under.body_limit),
        }
    }
}

impl Settings {
    /// Lays `options` (flags over environment) over the configuration file, if any: the
    /// file named by `config_path`, else `<data>/warrant.toml` when it exists.
    pub fn resolve(options: ServeOptions, config_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = match config_path {
            Some(path) => FileConfig::read(path)?,
            None => {
                let data = options.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let implicit = data.join("warrant.toml");
                if implicit.is_file() {
                    FileConfig::read(&implicit)?
                } else {
                    FileConfig::default()
                }
            }
        };
        Self::from_config(options.over(file))
    }

    /// Validates merged values and fills defaults.
    pub fn from_config(c: FileConfig) -> Result<Settings, ConfigError> {
        let defaults = Limits::default();
        let listen_text = c.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            ConfigError::Invalid(format!("`listen` `{listen_text}` is not an address like 127.0.0.1:8080"))
        })?;
        let limits = Limits {
            default_ttl: c.default_ttl.unwrap_or(defaults.default_ttl),
            max_ttl: c.max_ttl.unwrap_or(defaults.max_ttl),
            max_depth: c.max_depth.unwrap_or(defaults.max_depth),
        };
        if limits.max_ttl <= 0 || limits.max_ttl > 86_400 {
            return Err(ConfigError::Invalid("`max_ttl` must be between 1 and 86400 seconds".into()));
        }
        if limits.default_ttl <= 0 || limits.default_ttl > limits.max_ttl {
            return Err(ConfigError::Invalid("`default_ttl` must be positive and at most `max_ttl`".into()));
        }
        if limits.max_depth == 0 || limits.max_depth > 32 {
            return Err(ConfigError::Invalid("`max_depth` must be between 1 and 32".into()));
        }
        let session_ttl = c.session_ttl.unwrap_or(3600);
        if session_ttl <= 0 || session_ttl > 7 * 86_400 {
            return Err(ConfigError::Invalid("`session_ttl` must be between 1 second and 7 days".into()));
        }
        let body_limit = c.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
            return Err(ConfigError::Invalid("`body_limit` must be between 1 KiB and 16 MiB".into()));
        }
        if let Some(issuer) = &c.issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!("`issuer` `{issuer}` must be an http(s) URL")));
            }
        }
        Ok(Settings {
            data: c.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            issuer: c.issuer,
            limits,
            session_ttl,
            body_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_environment_over_file() {
        let file = FileConfig { listen: Some("127.0.0.1:1".into()), max_ttl: Some(600), ..Default::default() };
        let flags = FileConfig { listen: Some("127.0.0.1:2".into()), ..Default::default() };
        let s = Settings::from_config(flags.over(file)).unwrap();
        assert_eq!(s.listen.port(), 2);
        assert_eq!(s.limits.max_ttl, 600);
        assert_eq!(s.data, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = FileConfig { default_ttl: Some(1000), max_ttl: Some(900), ..Default::default() };
        assert!(Settings::from_config(bad).is_err());
        let bad = FileConfig { listen: Some("nowhere".into()), ..Default::default() };
        assert!(Settings::from_config(bad).is_err());
        assert!(toml::from_str::<FileConfig>("unknown = 1").is_err());
    }
}
