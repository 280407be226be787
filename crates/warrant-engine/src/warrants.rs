//! One recorded warrant's state, for `GET /v1/warrants/{jti}` and `warrant token
//! inspect`: a signature can be checked by anyone with the JWKS, but only the issuer knows
//! whether the warrant was revoked.

use warrant_core::WarrantId;
use warrant_store::{RevocationRecord, WarrantRecord};

use crate::revocation::RevokeError;
use crate::Engine;

/// Where a recorded warrant stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarrantState {
    /// Unexpired and not revoked: decisions go on to the identity, scope and policy checks.
    Active,
    /// Past its expiry, never revoked.
    Expired,
    /// Revoked (directly, through its task, an agent of its chain, its human or an
    /// ancestor), whether or not it has expired since.
    Revoked,
}

impl WarrantState {
    /// The wire name: `active`, `expired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarrantState::Active => "active",
            WarrantState::Expired => "expired",
            WarrantState::Revoked => "revoked",
        }
    }
}

/// A recorded warrant, its state and the revocation that ended it, if any.
#[derive(Debug, Clone)]
pub struct WarrantStatus {
    /// The warrant as recorded at issuance.
    pub record: WarrantRecord,
    /// Its state now.
    pub state: WarrantState,
    /// The revocation that ended it (`None` unless `state` is `Revoked`). When the
    /// in-memory index knows of a revocation the store cannot show, the state is still
    /// `Revoked` (fail closed) and this is `None`.
    pub revocation: Option<RevocationRecord>,
}

impl Engine {
    /// The state of the warrant `jti`: revoked (with its revocation), expired or active.
    pub async fn warrant_status(&self, jti: &str) -> Result<WarrantStatus, RevokeError> {
        let id = WarrantId::parse(jti).map_err(|e| RevokeError::Invalid(e.to_string()))?;
        let record = self
            .store()
            .get_warrant(&id)
            .await?
            .ok_or_else(|| RevokeError::NotFound { kind: "warrant", id: jti.into() })?;
        let revocation = self.store().revocation_of(&id).await?;
        let revoked = revocation.is_some()
            || self.revocations().warrant(&id).is_some()
            || self.revocations().task_ended(&record.task);
        let state = if revoked {
            WarrantState::Revoked
        } else if record.expires_at <= self.now() {
            WarrantState::Expired
        } else {
            WarrantState::Active
        };
        Ok(WarrantStatus { record, state, revocation })
    }
}
