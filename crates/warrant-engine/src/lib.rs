//! The Warrant application without HTTP.
//!
//! [`Engine`] owns the store, the clock, the signing keys and the configuration, and
//! exposes every operation the server (and later benchmarks and gateways) drive
//! in-process:
//!
//! * [`registry`]: humans, their sessions, and agents;
//! * [`keys`]: the issuer's key ring, created on first start, rotated, refreshed;
//! * [`issuer`]: the token endpoint's grants (client credentials and token exchange).
//!
//! Time comes only through the [`Clock`] trait, randomness only through [`random`].

pub mod audit;
pub mod clock;
pub mod config;
pub mod issuer;
pub mod keys;
pub mod random;
pub mod registry;

use std::sync::Arc;

use warrant_store::Store;

pub use clock::{Clock, ManualClock};
pub use config::EngineConfig;
pub use issuer::{Issued, TokenError, TokenRequest};
pub use keys::{KeyError, KeyManager};
pub use registry::{NewAgent, NewHuman, RegistryError, Session};

/// The application: shared by every request handler.
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    keys: KeyManager,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the engine over `store`, creating the first signing key if there is none.
    pub async fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Result<Self, KeyError> {
        let keys = KeyManager::load(store.as_ref(), clock.now(), &config).await?;
        Ok(Engine { store, clock, config, keys })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The key manager.
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// The current time, from the engine's clock.
    pub fn now(&self) -> warrant_core::UnixTime {
        self.clock.now()
    }

    /// Reloads the key ring from the store (picks up `warrant key rotate`).
    pub async fn refresh_keys(&self) -> Result<(), KeyError> {
        self.keys.refresh(self.store.as_ref(), self.clock.now(), &self.config).await
    }
}
