//! Files the CLI writes: agent key files (a private JWK, mode 0600, and its public half)
//! and private outputs (exports, sessions), always created mode 0600.

use std::path::Path;

use warrant_core::PublicJwk;
use warrant_token::KeyPair;

/// Reads an agent's private key from a JWK file.
pub fn read_private(path: &Path) -> Result<KeyPair, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key file `{}`: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| format!("`{}` is not a JSON JWK", path.display()))?;
    if value.get("d").is_none() {
        return Err(format!("`{}` holds no private key (`d`); pass the `.key.jwk` file", path.display()));
    }
    KeyPair::from_private_jwk(&value).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// Reads the public half of a JWK file (public or private).
pub fn read_public(path: &Path) -> Result<PublicJwk, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key file `{}`: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| format!("`{}` is not a JSON JWK", path.display()))?;
    let member = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(PublicJwk {
        kty: member("kty").unwrap_or_default(),
        crv: member("crv").unwrap_or_default(),
        x: member("x").ok_or_else(|| format!("`{}` has no `x` member", path.display()))?,
        kid: None,
    })
}

/// Writes `contents` to a new file (never overwrites), mode 0600 on Unix when `secret`.
pub fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// Creates (or truncates) `path` for data that must stay private (audit exports, the
/// inventory, session tokens): a new file is created mode 0600 on Unix, and an existing
/// one is set to 0600 through the open handle before anything is written to it.
pub fn create_private(path: &Path) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make `{}` private: {e}", path.display()))?;
    }
    Ok(file)
}

/// Writes `contents` to `path` through [`create_private`].
pub fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    let mut file = create_private(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// A fresh key pair from the operating system's CSPRNG.
pub fn generate() -> Result<KeyPair, String> {
    let seed = warrant_engine::random::bytes::<32>().map_err(|e| e.to_string())?;
    Ok(KeyPair::from_seed(&seed))
}
