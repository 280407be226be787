//! What the engine needs to know about its deployment.

use warrant_core::Limits;

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The introspection endpoint's path (RFC 7662).
pub const INTROSPECTION_PATH: &str = "/oauth2/introspect";
/// The revocation endpoint's path (RFC 7009).
pub const REVOCATION_PATH: &str = "/oauth2/revoke";
/// The decision endpoint's path.
pub const AUTHORIZE_PATH: &str = "/v1/authorize";

/// Engine settings. The server builds this from its configuration file, environment and
/// flags.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The issuer URL (`iss` of every warrant), e.g. `http://127.0.0.1:8080`.
    pub issuer: String,
    /// The audience of warrants (`aud`); defaults to the issuer.
    pub audience: String,
    /// Lifetimes and depth.
    pub limits: Limits,
    /// How long a human session token lives, in seconds.
    pub session_ttl: i64,
    /// How long a human's approver token (approvals, attestation) lives, in seconds.
    pub approver_ttl: i64,
    /// How long a retired signing key stays published beyond the last warrant it
    /// signed, in seconds: covers replicas that have not reloaded the ring yet.
    pub key_grace: i64,
    /// The policy directory (`<data>/policies`); `None` uses the default set in memory.
    pub policy_dir: Option<std::path::PathBuf>,
    /// Audit writer settings.
    pub audit: crate::audit::AuditConfig,
    /// Runtime guardrails.
    pub guard: crate::guard::GuardConfig,
    /// Continuous governance.
    pub govern: crate::govern::GovernConfig,
    /// How denies without a valid warrant are recorded.
    pub anonymous: crate::decisions::anonymous::AnonymousConfig,
    /// The key-encryption key signing keys are sealed with. Required: the engine does not
    /// open without one ([`KeyError::NoKek`](crate::KeyError::NoKek)). The server reads it
    /// from `WARRANT_KEK` or the KEK file; its `Debug` never shows it.
    pub kek: Option<warrant_token::Kek>,
    /// Trusted OpenID providers whose ID tokens sign humans in (`[[federation.oidc]]`).
    pub federation: Vec<crate::federation::OidcProvider>,
    /// Whether SSF push streams may deliver to plain http and private, loopback or
    /// link-local addresses (`ssf.danger_allow_private_push`; off by default).
    pub ssf_allow_private_push: bool,
    /// Trusted SPIFFE trust domains whose workloads authenticate as agents with
    /// JWT-SVIDs (`[[federation.spiffe]]`).
    pub spiffe: Vec<crate::spiffe::SpiffeDomain>,
    /// How the server follows the change feed of a shared database (`[cluster]`).
    pub cluster: crate::cluster::ClusterConfig,
    /// How long a console session lasts, in seconds (`console.session_ttl_secs`).
    pub console_session_ttl: i64,
}

impl EngineConfig {
    /// Settings for `issuer` with every other value at its default.
    pub fn for_issuer(issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        EngineConfig {
            audience: issuer.clone(),
            issuer,
            limits: Limits::default(),
            session_ttl: 3600,
            approver_ttl: 600,
            key_grace: 60,
            policy_dir: None,
            audit: crate::audit::AuditConfig::default(),
            guard: crate::guard::GuardConfig::default(),
            govern: crate::govern::GovernConfig::default(),
            anonymous: crate::decisions::anonymous::AnonymousConfig::default(),
            kek: None,
            federation: Vec::new(),
            ssf_allow_private_push: false,
            spiffe: Vec::new(),
            cluster: crate::cluster::ClusterConfig::default(),
            console_session_ttl: crate::console::DEFAULT_SESSION_TTL_SECS,
        }
    }

    /// The token endpoint URL, which client assertions may name as `aud`.
    pub fn token_endpoint(&self) -> String {
        self.endpoint(TOKEN_PATH)
    }

    /// The public URL of the endpoint at `path` (which starts with `/`): what DPoP proofs
    /// name as `htu` and client assertions as `aud`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
