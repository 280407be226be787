//! The issuer's signing keys: created on first start, rotated on demand, and kept in the
//! JWKS after retirement until every warrant they signed has expired; and the audit
//! checkpoint key, a key of its own that signs nothing else.
//!
//! Every seed is stored sealed with the key-encryption key ([`Kek`], kept outside the
//! database; see `warrant_token::seal`). At start, seeds that an older build stored in
//! the clear are sealed ([`seal_plaintext`]); a KEK that does not open the active keys is
//! a startup error, never a reason to make new keys. Stored public keys are never
//! trusted: every key in use is derived from a seed the KEK opened.

use std::sync::{Arc, RwLock};

use warrant_core::UnixTime;
use warrant_store::{KeyMaterial, KeyPurpose, Store, StoreError, StoredKey};
use warrant_token::checkpoint::KeyArchive;
use warrant_token::{Kek, KeyPair, KeyRing, SealError};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::{Classify, ErrorKind};
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
    /// No key-encryption key was given.
    #[error("no key-encryption key (KEK) is configured: signing keys are only stored sealed")]
    NoKek,
    /// The KEK does not open a stored key that must be used.
    #[error(
        "the key-encryption key does not open the stored {purpose} key `{kid}`: {source}; start with the KEK this \
         database was sealed with (WARRANT_KEK or the KEK file)"
    )]
    Sealed {
        /// The key's id.
        kid: String,
        /// What the key signs.
        purpose: &'static str,
        /// Why it did not open.
        source: SealError,
    },
    /// A plaintext seed appeared in a database whose keys are already sealed: only the
    /// first start after an upgrade seals plaintext keys, so this row was written by
    /// someone else.
    #[error(
        "the signing key `{0}` is stored in plaintext in a database whose keys are sealed: refusing to adopt it \
         (was the database tampered with?)"
    )]
    UnexpectedPlaintext(String),
}

impl Classify for KeyError {
    fn kind(&self) -> ErrorKind {
        match self {
            KeyError::NoKek => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// How long retired warrant-signing keys stay published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLifetimes {
    /// The longest a warrant lives, in seconds: anything a key signed before it was
    /// retired has expired this long after.
    pub max_ttl: i64,
    /// Extra seconds, for replicas that signed with it before they reloaded the ring.
    pub grace: i64,
}

/// The keys service: holds the current [`KeyRing`] and checkpoint key (cheap to read
/// from any number of threads), reloads them from the store and rotates the signing key.
pub struct KeyManager {
    ring: RwLock<Arc<KeyRing>>,
    checkpoint: RwLock<KeyPair>,
    kek: Kek,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lifetimes: KeyLifetimes,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager").field("lifetimes", &self.lifetimes).finish_non_exhaustive()
    }
}

/// Creates a new warrant-signing key and makes it the active one, retiring the previous
/// key. Returns the new key id. Used at first start and by `warrant key rotate`.
pub async fn rotate(store: &dyn Store, kek: &Kek, now: UnixTime) -> Result<String, KeyError> {
    rotate_purpose(store, kek, KeyPurpose::Warrant, now).await
}

/// Creates a new key for `purpose`, sealed with `kek`, and makes it the active one of
/// that purpose, retiring the previous one. Returns the new key id.
pub async fn rotate_purpose(
    store: &dyn Store,
    kek: &Kek,
    purpose: KeyPurpose,
    now: UnixTime,
) -> Result<String, KeyError> {
    let seed = Zeroizing::new(random::bytes::<32>()?);
    let pair = KeyPair::from_seed(&seed);
    let sealed = kek.seal_pair(purpose.as_str(), &pair, random::bytes()?).map_err(|source| KeyError::Sealed {
        kid: pair.kid().to_owned(),
        purpose: purpose.as_str(),
        source,
    })?;
    let stored = StoredKey {
        kid: pair.kid().to_owned(),
        purpose,
        material: KeyMaterial::Sealed(sealed),
        created_at: now,
        retired_at: None,
    };
    store.rotate_in(&stored).await?;
    tracing::info!(kid = pair.kid(), purpose = purpose.as_str(), "created a new signing key");
    Ok(pair.kid().to_owned())
}

/// Seals every seed an older build stored in plaintext, in one transaction, and returns
/// how many. Only a database with no sealed key yet is migrated this way: a plaintext
/// seed next to sealed ones is refused ([`KeyError::UnexpectedPlaintext`]).
pub async fn seal_plaintext(store: &dyn Store, kek: &Kek) -> Result<usize, KeyError> {
    let keys = store.signing_keys().await?;
    let any_sealed = keys.iter().any(|k| matches!(k.material, KeyMaterial::Sealed(_)));
    let mut sealed = Vec::new();
    for key in &keys {
        let KeyMaterial::Plaintext(seed) = &key.material else { continue };
        if any_sealed {
            return Err(KeyError::UnexpectedPlaintext(key.kid.clone()));
        }
        let purpose = key.purpose.as_str();
        if KeyPair::from_seed(seed).kid() != key.kid {
            return Err(KeyError::Sealed { kid: key.kid.clone(), purpose, source: SealError::KidMismatch });
        }
        let blob = kek.seal(purpose, &key.kid, seed, random::bytes()?).map_err(|source| KeyError::Sealed {
            kid: key.kid.clone(),
            purpose,
            source,
        })?;
        sealed.push((key.kid.clone(), blob));
    }
    if sealed.is_empty() {
        return Ok(0);
    }
    let count = store.seal_keys(&sealed).await?;
    tracing::warn!(
        count,
        "sealed signing keys that were stored in plaintext; copies of the database made before hold them in the \
         clear: rotate them (`warrant key rotate`)"
    );
    Ok(count)
}

/// Opens a stored key with the KEK.
fn open(kek: &Kek, key: &StoredKey) -> Result<KeyPair, KeyError> {
    match &key.material {
        KeyMaterial::Sealed(sealed) => kek
            .open_pair(key.purpose.as_str(), &key.kid, sealed)
            .map_err(|source| KeyError::Sealed { kid: key.kid.clone(), purpose: key.purpose.as_str(), source }),
        KeyMaterial::Plaintext(_) => Err(KeyError::UnexpectedPlaintext(key.kid.clone())),
    }
}

/// The active key of `purpose`, opened; `None` when there is none.
fn active(kek: &Kek, keys: &[StoredKey], purpose: KeyPurpose) -> Result<Option<KeyPair>, KeyError> {
    keys.iter().find(|k| k.purpose == purpose && k.retired_at.is_none()).map(|k| open(kek, k)).transpose()
}

/// Builds the ring and the checkpoint key from storage: the newest unretired key of each
/// purpose signs; retired warrant keys stay while a warrant they signed may still be
/// alive. Every active key is opened before any missing one is created, so a wrong KEK
/// fails here rather than adding keys.
async fn build(
    store: &dyn Store,
    kek: &Kek,
    now: UnixTime,
    lifetimes: KeyLifetimes,
) -> Result<(KeyRing, KeyPair), KeyError> {
    let mut keys = store.signing_keys().await?;
    let mut warrant = active(kek, &keys, KeyPurpose::Warrant)?;
    let mut checkpoint = active(kek, &keys, KeyPurpose::Checkpoint)?;
    if warrant.is_none() || checkpoint.is_none() {
        for (purpose, missing) in
            [(KeyPurpose::Warrant, warrant.is_none()), (KeyPurpose::Checkpoint, checkpoint.is_none())]
        {
            if missing {
                rotate_purpose(store, kek, purpose, now).await?;
            }
        }
        keys = store.signing_keys().await?;
        warrant = active(kek, &keys, KeyPurpose::Warrant)?;
        checkpoint = active(kek, &keys, KeyPurpose::Checkpoint)?;
    }
    let (Some(warrant), Some(checkpoint)) = (warrant, checkpoint) else { return Err(KeyError::NoActiveKey) };
    let mut retired = Vec::new();
    for key in keys.iter().filter(|k| k.purpose == KeyPurpose::Warrant && k.retired_at.is_some()) {
        if !still_published(store, key, now, lifetimes).await? {
            continue;
        }
        match open(kek, key) {
            Ok(pair) => retired.push((key.kid.clone(), pair.verifying_key())),
            Err(e) => tracing::warn!(kid = %key.kid, error = %e, "skipping a retired key the KEK does not open"),
        }
    }
    Ok((KeyRing::new(warrant, retired), checkpoint))
}

/// Whether a retired key must still verify: a warrant it signed may still be alive.
async fn still_published(
    store: &dyn Store,
    key: &StoredKey,
    now: UnixTime,
    lifetimes: KeyLifetimes,
) -> Result<bool, KeyError> {
    let Some(retired_at) = key.retired_at else { return Ok(true) };
    // Anything signed before retirement expires within max_ttl; the grace covers
    // replicas that signed with it before they reloaded the ring.
    if retired_at.plus(lifetimes.max_ttl).plus(lifetimes.grace) > now {
        return Ok(true);
    }
    Ok(store.last_expiry_for_key(&key.kid).await?.is_some_and(|exp| exp > now))
}

/// The keys audit checkpoints are verified with, all derived from seeds the KEK opened
/// (a public key written into the database is never trusted).
#[derive(Debug, Clone, Default)]
pub struct CheckpointKeys {
    /// Every checkpoint key, retired or not.
    pub current: KeyArchive,
    /// Every warrant-signing key: builds before checkpoints had a key of their own signed
    /// them with the issuer's key, so these verify only checkpoints older than the first
    /// one a checkpoint key signed.
    pub legacy: KeyArchive,
    /// The ids of stored keys the KEK does not open (inserted or altered rows).
    pub unopened: Vec<String>,
}

/// Reads the [`CheckpointKeys`] from the store. Keys still in plaintext count as legacy
/// keys only in a database an older build wrote and no server has sealed since (no
/// sealed key at all): next to sealed keys a plaintext row was written by someone else,
/// and is not trusted.
pub async fn checkpoint_keys(store: &dyn Store, kek: Option<&Kek>) -> Result<CheckpointKeys, KeyError> {
    let stored = store.signing_keys().await?;
    let any_sealed = stored.iter().any(|k| matches!(k.material, KeyMaterial::Sealed(_)));
    let mut keys = CheckpointKeys::default();
    for key in stored {
        let pair = match (&key.material, kek) {
            (KeyMaterial::Plaintext(seed), _) if !any_sealed && key.purpose == KeyPurpose::Warrant => {
                Ok(KeyPair::from_seed(seed))
            }
            (KeyMaterial::Plaintext(_), _) => Err(KeyError::UnexpectedPlaintext(key.kid.clone())),
            (KeyMaterial::Sealed(_), Some(kek)) => open(kek, &key),
            (KeyMaterial::Sealed(_), None) => return Err(KeyError::NoKek),
        };
        match (pair, key.purpose) {
            (Ok(pair), KeyPurpose::Checkpoint) => keys.current.insert(pair.verifying_key()),
            (Ok(pair), KeyPurpose::Warrant) => keys.legacy.insert(pair.verifying_key()),
            (Err(e), _) => {
                tracing::warn!(kid = %key.kid, error = %e, "a stored key does not open with the KEK; not trusted");
                keys.unopened.push(key.kid);
            }
        }
    }
    Ok(keys)
}

impl KeyManager {
    /// Seals plaintext seeds left by an older build, then loads the ring and the
    /// checkpoint key, creating either when the store has none. Fails without a KEK or
    /// when the KEK does not open the stored keys.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        kek: Option<Kek>,
        lifetimes: KeyLifetimes,
    ) -> Result<Self, KeyError> {
        let kek = kek.ok_or(KeyError::NoKek)?;
        seal_plaintext(store.as_ref(), &kek).await?;
        let (ring, checkpoint) = build(store.as_ref(), &kek, clock.now(), lifetimes).await?;
        Ok(KeyManager {
            ring: RwLock::new(Arc::new(ring)),
            checkpoint: RwLock::new(checkpoint),
            kek,
            store,
            clock,
            lifetimes,
        })
    }

    /// The current ring.
    pub fn ring(&self) -> Result<Arc<KeyRing>, KeyError> {
        self.ring.read().map(|r| Arc::clone(&r)).map_err(|_| KeyError::Poisoned)
    }

    /// The active checkpoint key.
    pub fn checkpoint_key(&self) -> Result<KeyPair, KeyError> {
        self.checkpoint.read().map(|k| k.clone()).map_err(|_| KeyError::Poisoned)
    }

    /// The keys checkpoints verify against, opened with this manager's KEK.
    pub(crate) async fn checkpoint_keys(&self, store: &dyn Store) -> Result<CheckpointKeys, KeyError> {
        checkpoint_keys(store, Some(&self.kek)).await
    }

    /// Reloads the ring and the checkpoint key from the store (picks up a rotation made
    /// by `warrant key rotate` or another node).
    pub async fn refresh(&self) -> Result<(), KeyError> {
        self.refresh_at(self.clock.now()).await
    }

    /// [`KeyManager::refresh`] as of `now`: which retired keys are still published
    /// depends on the time.
    pub async fn refresh_at(&self, now: UnixTime) -> Result<(), KeyError> {
        let (ring, checkpoint) = build(self.store.as_ref(), &self.kek, now, self.lifetimes).await?;
        let ring = Arc::new(ring);
        {
            let mut guard = self.ring.write().map_err(|_| KeyError::Poisoned)?;
            if guard.kids() != ring.kids() {
                tracing::info!(
                    active = ring.active().kid(),
                    published = ring.kids().len(),
                    "reloaded the signing key ring"
                );
            }
            *guard = ring;
        }
        *self.checkpoint.write().map_err(|_| KeyError::Poisoned)? = checkpoint;
        Ok(())
    }

    /// Rotates the issuer's signing key: a new active key, in force on this node when
    /// this returns; the old one stays published until the warrants it signed have
    /// expired. Returns the new key's id.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let kid = rotate(self.store.as_ref(), &self.kek, self.clock.now()).await?;
        self.refresh().await?;
        Ok(kid)
    }
}
