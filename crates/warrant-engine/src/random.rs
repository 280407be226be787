//! Randomness from the operating system's CSPRNG, for ids, keys and tokens.

use warrant_core::{AgentId, HumanId, TaskId, WarrantId};

/// The operating system would not provide random bytes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(buf)
}

/// A fresh secret of `N` random bytes, as URL-safe base64 without padding (what goes in
/// a cookie, a bearer token or an OAuth `state`).
pub fn secret<const N: usize>() -> Result<String, RandomError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes::<N>()?))
}

/// The SHA-256 a secret is stored and looked up by (never the secret itself).
pub fn secret_digest(secret: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// A fresh human id.
pub fn human_id() -> Result<HumanId, RandomError> {
    Ok(HumanId::from_random(bytes()?))
}

/// A fresh agent id.
pub fn agent_id() -> Result<AgentId, RandomError> {
    Ok(AgentId::from_random(bytes()?))
}

/// A fresh task id, made at `millis` (milliseconds since the Unix epoch): task ids sort
/// by time ([`TaskId::from_time_and_random`]), so recording many keeps the index writes
/// together.
pub fn task_id(millis: i64) -> Result<TaskId, RandomError> {
    Ok(TaskId::from_time_and_random(u64::try_from(millis).unwrap_or(0), bytes()?))
}

/// A fresh warrant id, made at `millis` (milliseconds since the Unix epoch): warrant ids
/// sort by time ([`WarrantId::from_time_and_random`]), so a burst of issuance writes a
/// few index pages of the warrant tables and the audit log, not one per warrant.
pub fn warrant_id(millis: i64) -> Result<WarrantId, RandomError> {
    Ok(WarrantId::from_time_and_random(u64::try_from(millis).unwrap_or(0), bytes()?))
}

/// A fresh approval id.
pub fn approval_id() -> Result<warrant_core::ApprovalId, RandomError> {
    Ok(warrant_core::ApprovalId::from_random(bytes()?))
}
