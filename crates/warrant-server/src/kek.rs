//! Finding the key-encryption key (KEK) that seals the signing keys at rest.
//!
//! In order: the `WARRANT_KEK` environment variable (base64 of 32 random bytes), else the
//! KEK file (`kek_file`, `--kek-file`, `WARRANT_KEK_FILE`; by default `<data>/keys/kek`,
//! which a copy of `warrant.db` alone does not include). On first start, when the
//! database holds no sealed key yet, a missing KEK file is created (mode 0600, in a
//! directory of mode 0700). A missing KEK for a database whose keys are sealed is an
//! error: a new KEK could not open them, and new keys are never made in their place.
//! `warrant serve`, `warrant key rotate` and `warrant audit verify` all find it here.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use warrant_store::{KeyMaterial, KeyStore, StoreError};
use warrant_token::Kek;
use zeroize::Zeroizing;

/// The environment variable holding the KEK itself (base64).
pub const KEK_ENV: &str = "WARRANT_KEK";
/// The KEK file inside the data directory when none is configured.
pub const DEFAULT_KEK_FILE: &str = "keys/kek";

/// What to do when no KEK is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// Create the KEK file when the database holds no sealed key (first start).
    Create,
    /// Never create one.
    Fail,
}

/// Why no usable KEK was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    /// `WARRANT_KEK` is set to something else than base64 of 32 bytes.
    #[error("`{KEK_ENV}` is set but is not base64 of 32 bytes")]
    BadEnvironment,
    /// The KEK file does not hold base64 of 32 bytes.
    #[error("the KEK file `{0}` does not hold base64 of 32 bytes")]
    BadFile(PathBuf),
    /// The KEK file could not be read or created.
    #[error("the KEK file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database holds sealed keys and no KEK was found.
    #[error(
        "the database holds sealed signing keys but no key-encryption key was found: `{KEK_ENV}` is not set and the \
         KEK file `{0}` does not exist; restore the KEK this database was sealed with (a new one cannot open its keys)"
    )]
    Missing(PathBuf),
    /// No KEK was found and none may be created here.
    #[error("no key-encryption key: `{KEK_ENV}` is not set and the KEK file `{0}` does not exist")]
    NotFound(PathBuf),
    /// The store could not tell whether it holds sealed keys.
    #[error("cannot read the signing keys: {0}")]
    Store(#[from] StoreError),
    /// No randomness for a new KEK.
    #[error("cannot create a key-encryption key: {0}")]
    Random(String),
}

/// The KEK file for a data directory when none is configured: `<data>/keys/kek`.
pub fn default_kek_file(data: &Path) -> PathBuf {
    data.join(DEFAULT_KEK_FILE)
}

/// Whether the store holds any sealed key.
pub async fn has_sealed_keys(store: &dyn KeyStore) -> Result<bool, StoreError> {
    Ok(store.signing_keys().await?.iter().any(|k| matches!(k.material, KeyMaterial::Sealed(_))))
}

/// Finds the KEK for `store` (see the module documentation), reading `WARRANT_KEK` from
/// the environment.
pub async fn for_store(store: &dyn KeyStore, kek_file: &Path, when_missing: WhenMissing) -> Result<Kek, KekError> {
    let sealed = has_sealed_keys(store).await?;
    let env = std::env::var(KEK_ENV).ok().map(Zeroizing::new);
    find(env.as_ref().map(|v| v.as_str()), kek_file, sealed, when_missing)
}

/// Finds the KEK: `env` (the value of `WARRANT_KEK`), else the file at `kek_file`, else
/// (only when `when_missing` allows it and `sealed_keys` is false) a new KEK file.
pub fn find(env: Option<&str>, kek_file: &Path, sealed_keys: bool, when_missing: WhenMissing) -> Result<Kek, KekError> {
    if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
        return Kek::from_base64(value).map_err(|_| KekError::BadEnvironment);
    }
    match std::fs::read_to_string(kek_file) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_readable_by_others(kek_file);
            return Kek::from_base64(&text).map_err(|_| KekError::BadFile(kek_file.to_owned()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(KekError::Io { path: kek_file.to_owned(), source }),
    }
    if sealed_keys {
        return Err(KekError::Missing(kek_file.to_owned()));
    }
    if when_missing == WhenMissing::Fail {
        return Err(KekError::NotFound(kek_file.to_owned()));
    }
    create(kek_file)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(path = %path.display(), "the KEK file is readable by others; chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Creates a new KEK file (mode 0600; its directory mode 0700) and returns the KEK.
fn create(path: &Path) -> Result<Kek, KekError> {
    let io = |source| KekError::Io { path: path.to_owned(), source };
    let bytes = Zeroizing::new(warrant_engine::random::bytes::<32>().map_err(|e| KekError::Random(e.to_string()))?);
    let kek = Kek::from_bytes(*bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    let mut text = kek.to_base64();
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        #[cfg(unix)]
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        #[cfg(not(unix))]
        let _ = dir;
    }
    tracing::warn!(
        path = %path.display(),
        "created a new key-encryption key; keep it apart from database backups (another disk, or {KEK_ENV})"
    );
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_then_file_then_created_only_for_an_unsealed_database() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys").join("kek");
        // Nothing sealed, may create: a new file appears, and is read back the next time.
        let created = find(None, &file, false, WhenMissing::Create).unwrap();
        let again = find(None, &file, true, WhenMissing::Fail).unwrap();
        assert_eq!(created.to_base64(), again.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The environment wins over the file.
        let env = Kek::from_bytes([3; 32]).to_base64();
        assert_eq!(find(Some(&env), &file, true, WhenMissing::Fail).unwrap().to_base64(), env);
        assert!(matches!(find(Some("short"), &file, true, WhenMissing::Fail), Err(KekError::BadEnvironment)));
        // Sealed keys and no KEK: an error, never a new KEK.
        let gone = dir.path().join("elsewhere").join("kek");
        assert!(matches!(find(None, &gone, true, WhenMissing::Create), Err(KekError::Missing(_))));
        assert!(matches!(find(None, &gone, false, WhenMissing::Fail), Err(KekError::NotFound(_))));
        assert!(!gone.exists());
        std::fs::create_dir_all(gone.parent().unwrap()).unwrap();
        std::fs::write(&gone, "nope\n").unwrap();
        assert!(matches!(find(None, &gone, true, WhenMissing::Fail), Err(KekError::BadFile(_))));
    }
}
