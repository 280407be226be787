//! The issuer's signing keys: created on first start, rotated on demand, and kept in the
//! JWKS after retirement until every warrant they signed has expired.

use std::sync::{Arc, RwLock};

use warrant_core::UnixTime;
use warrant_store::{Store, StoreError, StoredKey};
use warrant_token::{KeyPair, KeyRing};

use crate::config::EngineConfig;
use crate::random::{self, RandomError};

/// Why the key ring could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for a new key.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The store holds no usable active key even after creating one.
    #[error("no active signing key is stored")]
    NoActiveKey,
    /// The in-memory ring's lock was poisoned by a panic elsewhere.
    #[error("the key ring lock is poisoned")]
    Poisoned,
}

/// Holds the current [`KeyRing`]; cheap to read from any number of threads.
#[derive(Debug)]
pub struct KeyManager {
    ring: RwLock<Arc<KeyRing>>,
}

/// Creates a new signing key and makes it the active one, retiring the previous key.
/// Returns the new key id. Used at first start and by `warrant key rotate`.
pub async fn rotate(store: &dyn Store, now: UnixTime) -> Result<String, KeyError> {
    let pair = KeyPair::from_seed(&random::bytes::<32>()?);
    let stored = StoredKey { kid: pair.kid().to_owned(), seed: pair.seed(), created_at: now, retired_at: None };
    store.rotate_in(&stored).await?;
    tracing::info!(kid = pair.kid(), "created a new signing key");
    Ok(pair.kid().to_owned())
}

/// Builds the ring from storage: the newest unretired key signs; retired keys stay
/// while a warrant they signed may still be alive.
async fn build_ring(store: &dyn Store, now: UnixTime, config: &EngineConfig) -> Result<KeyRing, KeyError> {
    let mut keys = store.signing_keys().await?;
    if !keys.iter().any(|k| k.retired_at.is_none()) {
        rotate(store, now).await?;
        keys = store.signing_keys().await?;
    }
    let active = keys.iter().find(|k| k.retired_at.is_none()).ok_or(KeyError::NoActiveKey)?;
    let active = KeyPair::from_seed(&active.seed);
    let mut retired = Vec::new();
    for key in keys.iter().filter(|k| k.retired_at.is_some()) {
        if still_published(store, key, now, config).await? {
            retired.push((key.kid.clone(), KeyPair::from_seed(&key.seed).verifying_key()));
        }
    }
    Ok(KeyRing::new(active, retired))
}

/// Whether a retired key must still verify: a warrant it signed may still be alive.
async fn still_published(
    store: &dyn Store,
    key: &StoredKey,
    now: UnixTime,
    config: &EngineConfig,
) -> Result<bool, KeyError> {
    let Some(retired_at) = key.retired_at else { return Ok(true) };
    // Anything signed before retirement expires within max_ttl; the grace covers
    // replicas that signed with it before they reloaded the ring.
    if retired_at.plus(config.limits.max_ttl).plus(config.key_grace) > now {
        return Ok(true);
    }
    Ok(store.last_expiry_for_key(&key.kid).await?.is_some_and(|exp| exp > now))
}

impl KeyManager {
    /// Loads the ring, creating the first key when the store has none.
    pub async fn load(store: &dyn Store, now: UnixTime, config: &EngineConfig) -> Result<Self, KeyError> {
        let ring = build_ring(store, now, config).await?;
        Ok(KeyManager { ring: RwLock::new(Arc::new(ring)) })
    }

    /// The current ring.
    pub fn ring(&self) -> Result<Arc<KeyRing>, KeyError> {
        self.ring.read().map(|r| Arc::clone(&r)).map_err(|_| KeyError::Poisoned)
    }

    /// Reloads the ring from the store.
    pub async fn refresh(&self, store: &dyn Store, now: UnixTime, config: &EngineConfig) -> Result<(), KeyError> {
        let ring = Arc::new(build_ring(store, now, config).await?);
        let mut guard = self.ring.write().map_err(|_| KeyError::Poisoned)?;
        if guard.kids() != ring.kids() {
            tracing::info!(
                active = ring.active().kid(),
                published = ring.kids().len(),
                "reloaded the signing key ring"
            );
        }
        *guard = ring;
        Ok(())
    }
}
