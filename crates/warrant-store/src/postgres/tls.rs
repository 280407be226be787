//! TLS to the PostgreSQL server (rustls).
//!
//! The URL's `sslmode` says whether to use TLS, as libpq spells it: `disable` (never),
//! `prefer` (the default: when the server offers it), `require`, `verify-ca` and
//! `verify-full` (always). Whenever TLS is used, the server's certificate is verified
//! against the trusted roots and its name against the URL's host: Warrant never encrypts
//! to a server it has not authenticated (libpq's `prefer` and `require` would). The roots
//! are the system's, or the PEM file named by `sslrootcert=PATH`, which replaces them.
//! `verify-ca` is therefore as strict as `verify-full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// A database URL with Warrant's own TLS parameters taken out: what the driver parses.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SplitUrl {
    /// The URL for the driver (`sslmode` mapped to a value it knows).
    pub url: String,
    /// `sslrootcert`, if given.
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslrootcert` out of `url`'s query and maps `sslmode=verify-ca|verify-full` to
/// `require` (the driver knows only `disable`, `prefer` and `require`; verification is
/// always on here).
pub(super) fn split(url: &str) -> Result<SplitUrl, StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(SplitUrl { url: url.to_owned(), root_cert: None });
    };
    let mut root_cert = None;
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("sslrootcert", path) if !path.is_empty() => root_cert = Some(PathBuf::from(path)),
            ("sslrootcert", _) => return Err(StoreError::Backend("`sslrootcert` names no file".into())),
            ("sslmode", "verify-ca" | "verify-full") => {
                kept.append_pair("sslmode", "require");
            }
            ("sslmode", "disable" | "prefer" | "require") => {
                kept.append_pair("sslmode", &value);
            }
            ("sslmode", other) => {
                return Err(StoreError::Backend(format!(
                    "`sslmode={other}` is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
            _ => {
                kept.append_pair(&key, &value);
            }
        }
    }
    let query = kept.finish();
    let url = if query.is_empty() { base.to_owned() } else { format!("{base}?{query}") };
    Ok(SplitUrl { url, root_cert })
}

/// The TLS connector: trusts the certificates of `root_cert` (a PEM file), or the
/// system's roots when none is given.
pub(super) fn connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| StoreError::Backend(format!("cannot read `sslrootcert` `{}`: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(StoreError::Backend(format!("`sslrootcert` `{}` holds no certificate", path.display())));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    StoreError::Backend(format!("`sslrootcert` `{}` holds a bad certificate: {e}", path.display()))
                })?;
            }
        }
        None => {
            // Certificates the system store holds but rustls cannot use are skipped; with
            // none at all, TLS connections fail verification (clearly) rather than trust
            // anything.
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "a system root certificate could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates for PostgreSQL connections");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::{split, SplitUrl};

    #[test]
    fn warrants_tls_parameters_are_taken_out_and_verify_modes_mapped() {
        let s = split("postgres://u@h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=w")
            .expect("a valid URL");
        assert_eq!(
            s,
            SplitUrl {
                url: "postgres://u@h/d?sslmode=require&application_name=w".into(),
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let plain = split("postgres://u@h/d").expect("a valid URL");
        assert_eq!(plain, SplitUrl { url: "postgres://u@h/d".into(), root_cert: None });
        let only_root = split("postgres://u@h/d?sslrootcert=ca.pem").expect("a valid URL");
        assert_eq!(only_root.url, "postgres://u@h/d");
        assert!(split("postgres://u@h/d?sslmode=allow").is_err(), "libpq's `allow` would fall back to plain text");
        assert!(split("postgres://u@h/d?sslrootcert=").is_err());
    }
}
