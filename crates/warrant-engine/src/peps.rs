//! The PEP credentials service: the credentials enforcement points (API gateways, the
//! MCP gateway, tool servers) present to the AuthZEN PDP (`/access/v1/*`). The admin
//! creates one per enforcement point; its secret (`wpep_…`) is shown once and only its
//! SHA-256 is stored. Creation and revocation are audited before they take effect. The
//! live credentials are held in memory, so authenticating a request reads no database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq as _;
use warrant_core::audit::details::RegistryDetails;
use warrant_core::audit::AuditEntry;
use warrant_core::{PepId, UnixTime};
use warrant_store::{PepRecord, Store, StoreError};

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{Classify, ErrorKind};
use crate::random::{self, RandomError};

/// The prefix of every PEP secret, so a leaked one is recognisable.
pub const PEP_TOKEN_PREFIX: &str = "wpep_";
/// The longest PEP name accepted, in bytes.
pub const MAX_PEP_NAME: usize = 128;

/// An enforcement point's credential, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep {
    /// Its id, `pep_…`.
    pub id: PepId,
    /// Its name (recorded with every decision it asks for).
    pub name: String,
    /// Whether it may ask about plain subjects (no warrant).
    pub plain_subjects: bool,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
}

impl From<PepRecord> for Pep {
    fn from(r: PepRecord) -> Self {
        Pep {
            id: r.id,
            name: r.name,
            plain_subjects: r.plain_subjects,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// What the admin asks for.
#[derive(Debug, Clone, Default)]
pub struct NewPep {
    /// A name for people and audit records (1 to 128 printable characters).
    pub name: String,
    /// Whether it may ask about plain subjects.
    pub plain_subjects: bool,
}

/// A credential just created, with its secret: shown this once, never stored.
pub struct CreatedPep {
    /// The credential.
    pub pep: Pep,
    /// The bearer secret, `wpep_<43 base64url characters>`.
    pub token: String,
}

impl std::fmt::Debug for CreatedPep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPep").field("pep", &self.pep).field("token", &"<redacted>").finish()
    }
}

/// Why a PEP credential operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PepError {
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No such credential, or it was revoked already.
    #[error("no live PEP credential `{0}`")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (randomness, the audit log).
    #[error("{0}")]
    Internal(String),
}

impl Classify for PepError {
    fn kind(&self) -> ErrorKind {
        match self {
            PepError::Invalid(_) => ErrorKind::Invalid,
            PepError::NotFound(_) => ErrorKind::NotFound,
            PepError::Store(_) | PepError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<RandomError> for PepError {
    fn from(e: RandomError) -> Self {
        PepError::Internal(e.to_string())
    }
}

/// The live (unrevoked) credentials of `records`, by the SHA-256 of their secret.
fn live_of(records: Vec<PepRecord>) -> HashMap<[u8; 32], Pep> {
    records.into_iter().filter(|r| r.revoked_at.is_none()).map(|r| (r.secret_sha256, Pep::from(r))).collect()
}

/// The PEP credentials service.
pub struct Peps {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Arc<Audit>,
    live: RwLock<HashMap<[u8; 32], Pep>>,
    /// Counts this server's own changes (each after its store write), so that a list the
    /// change feed read before one of them never replaces it.
    writes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Peps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.live.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Peps").field("live", &live).finish_non_exhaustive()
    }
}

impl Peps {
    /// Loads the live (unrevoked) credentials into memory.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        audit: Arc<Audit>,
    ) -> Result<Self, StoreError> {
        let live = live_of(store.list_peps().await?);
        Ok(Peps { store, clock, audit, live: RwLock::new(live), writes: std::sync::atomic::AtomicU64::new(0) })
    }

    /// Reads the live credentials from the store again (another server created or revoked
    /// one).
    pub(crate) async fn reload(&self) -> Result<(), StoreError> {
        loop {
            let mark = self.writes.load(std::sync::atomic::Ordering::SeqCst);
            let live = live_of(self.store.list_peps().await?);
            let Ok(mut current) = self.live.write() else { return Ok(()) };
            // A change this server made meanwhile may be missing from what was read.
            if self.writes.load(std::sync::atomic::Ordering::SeqCst) == mark {
                *current = live;
                return Ok(());
            }
        }
    }

    /// The live credential whose secret is `secret`, if any: the secret's SHA-256 is
    /// compared in constant time with each live credential's.
    pub fn authenticate(&self, secret: &str) -> Option<Pep> {
        if !secret.starts_with(PEP_TOKEN_PREFIX) {
            return None;
        }
        let presented = random::secret_digest(secret);
        let live = self.live.read().ok()?;
        live.iter()
            .find(|(stored, _)| bool::from(stored.as_slice().ct_eq(presented.as_slice())))
            .map(|(_, p)| p.clone())
    }

    /// Creates a credential; its secret is in the answer and nowhere else.
    pub async fn create(&self, new: NewPep) -> Result<CreatedPep, PepError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > MAX_PEP_NAME || name.chars().any(char::is_control) {
            return Err(PepError::Invalid(format!("`name` must be 1 to {MAX_PEP_NAME} bytes of printable characters")));
        }
        let token = format!("{PEP_TOKEN_PREFIX}{}", random::secret::<32>()?);
        let record = PepRecord {
            id: PepId::from_random(random::bytes()?),
            name: name.to_owned(),
            secret_sha256: random::secret_digest(&token),
            plain_subjects: new.plain_subjects,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.audited(RegistryDetails::PepAdd {
            id: record.id.clone(),
            name: record.name.clone(),
            plain_subjects: record.plain_subjects,
        })
        .await?;
        self.store.insert_pep(&record).await?;
        let pep = Pep::from(record.clone());
        if let Ok(mut live) = self.live.write() {
            self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            live.insert(record.secret_sha256, pep.clone());
        }
        tracing::info!(pep = %pep.id, name = %pep.name, "created a PEP credential");
        Ok(CreatedPep { pep, token })
    }

    /// Every credential, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<Pep>, PepError> {
        Ok(self.store.list_peps().await?.into_iter().map(Pep::from).collect())
    }

    /// Revokes a credential: from now on it authenticates nothing.
    pub async fn revoke(&self, id: &str) -> Result<Pep, PepError> {
        let id = PepId::parse(id).map_err(|e| PepError::Invalid(e.to_string()))?;
        let live = self.list().await?.into_iter().find(|p| p.id == id && p.revoked_at.is_none());
        let Some(pep) = live else { return Err(PepError::NotFound(id.to_string())) };
        self.audited(RegistryDetails::PepRevoke { id: id.clone() }).await?;
        let at = self.clock.now();
        if !self.store.revoke_pep(&id, at).await? {
            return Err(PepError::NotFound(id.to_string()));
        }
        if let Ok(mut live) = self.live.write() {
            self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            live.retain(|_, p| p.id != id);
        }
        tracing::info!(pep = %id, "revoked a PEP credential");
        Ok(Pep { revoked_at: Some(at), ..pep })
    }

    /// Audits a change before it is made: if the record cannot be written, it is not.
    async fn audited(&self, details: RegistryDetails) -> Result<(), PepError> {
        let entry = AuditEntry::with_details(self.clock.now(), details)
            .map_err(|e| PepError::Internal(format!("the change's record could not be encoded: {e}")))?;
        self.audit
            .record(entry)
            .await
            .map(|_| ())
            .map_err(|e| PepError::Internal(format!("the change could not be audited, so it was not made: {e}")))
    }
}
