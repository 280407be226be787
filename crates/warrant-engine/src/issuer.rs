//! The token endpoint's grants, without HTTP (RFC 6749, RFC 7523, RFC 8693):
//!
//! * `client_credentials` with an EdDSA client assertion: an autonomous root warrant;
//! * token exchange with a human session as `subject_token`: a delegated root warrant;
//! * token exchange with a parent warrant as `subject_token`: a delegation.
//!
//! In both exchanges the acting agent authenticates with its client assertion as the
//! `actor_token`. Every warrant is recorded before it is returned: a warrant that could
//! not be recorded is never handed out.

use std::sync::Arc;
use warrant_core::audit::details::WarrantDetails;
use warrant_core::audit::AuditEntry;
use warrant_core::delegation::{grant_delegation, grant_root, DelegationRequest, RootRequest};
use warrant_core::guard::budget::{attenuate, Budget};
use warrant_core::{
    Actor, Agent, AgentId, Confirmation, DelegationError, FederatedIdentity, Grant, Human, Mode, Scope, TaskClaim,
    UnixTime, WarrantClaims,
};

use warrant_store::{
    Issuance, IssueGuard, SessionPurpose, SpentAssertion, Store, StoreError, TaskRecord, WarrantRecord,
};
use warrant_token::assertion::{claimed_agent, verify_assertion};
use warrant_token::jws::{peek_unverified, Header};
use warrant_token::session::{verify_session, SESSION_TYP};
use warrant_token::warrant::{sign_warrant, verify_warrant, WARRANT_TYP};
use warrant_token::KeyRing;

use crate::audit::{Audit, AuditError};
use crate::clock::Clock;
use crate::dpop::{Dpop, DpopError, PresentedProof};
use crate::error::{Classify as _, ErrorKind};
use crate::federation::{Federation, FederationError};
use crate::govern::Governance;
use crate::guard::Guardrails;
use crate::keys::KeyManager;
use crate::random;
use crate::registry::Registry;
use crate::revocation::Revocation;
use crate::spiffe::{SpiffeError, SpiffeTrust};
use warrant_token::dpop::Proof;
use warrant_token::dpop::ProofError;
use warrant_token::oidc::IdTokenError;
use warrant_token::spiffe::{SvidError, ASSERTION_TYPE_JWT_SPIFFE};

/// `grant_type` for client credentials.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// `grant_type` for RFC 8693 token exchange.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `client_assertion_type` for RFC 7523 JWT client assertions.
pub const ASSERTION_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Token type of a human session (it stands in for an IdP ID token).
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Token type of a warrant.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Generic JWT token type; accepted for both sessions and warrants.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The longest `task_purpose`, in characters.
pub const MAX_PURPOSE: usize = 500;

/// A token request's parameters, as parsed from the form (each at most once).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `scope`, space-separated.
    pub scope: Option<String>,
    /// `ttl` in seconds (extension).
    pub ttl: Option<String>,
    /// `task_purpose` (extension): required for root warrants.
    pub task_purpose: Option<String>,
    /// `client_assertion_type`.
    pub client_assertion_type: Option<String>,
    /// `client_assertion`.
    pub client_assertion: Option<String>,
    /// `subject_token`.
    pub subject_token: Option<String>,
    /// `subject_token_type`.
    pub subject_token_type: Option<String>,
    /// `actor_token`: the acting agent's client assertion.
    pub actor_token: Option<String>,
    /// `actor_token_type`.
    pub actor_token_type: Option<String>,
    /// `budget` (extension): `counter=limit` pairs, e.g. `estimated_cost=5000`. On a
    /// delegation the child gets at most what the parent has left.
    pub budget: Option<String>,
    /// `resource` (RFC 8707): the absolute URI (no fragment) of the resource server the
    /// warrant is for; it becomes the warrant's `aud`.
    pub resource: Option<String>,
    /// `token`: the token to introspect (RFC 7662) or revoke (RFC 7009).
    pub token: Option<String>,
    /// `token_type_hint` (RFC 7662, RFC 7009): ignored beyond its form, since Warrant has
    /// one kind of token to look up.
    pub token_type_hint: Option<String>,
    /// The request's DPoP proof (the `DPoP` header, RFC 9449), with the method and URL it
    /// must be for. At the token endpoint it binds the new warrant to its key.
    pub dpop: Option<PresentedProof>,
    /// `subject_dpop` (extension): for the exchange of a DPoP-bound warrant, its holder's
    /// proof (of the subject token's key, for `POST` on the token endpoint, with `ath` of
    /// the subject token) that it delegates.
    pub subject_dpop: Option<String>,
}

/// The longest `resource`, in bytes.
pub const MAX_RESOURCE: usize = 1024;

/// The `resource` parameter, checked (RFC 8707 §2): an absolute URI without a fragment,
/// kept as sent (the resource server compares it exactly).
fn parse_resource(req: &TokenRequest) -> Result<Option<String>, TokenError> {
    let Some(text) = req.resource.as_deref() else { return Ok(None) };
    let bad = |why: &str| Err(TokenError::InvalidTarget(format!("`resource` {why}")));
    if text.is_empty() {
        return bad("is empty; send an absolute URI or leave it out");
    }
    if text.len() > MAX_RESOURCE {
        return bad(&format!("is longer than {MAX_RESOURCE} bytes"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    match url::Url::parse(text) {
        Ok(u) if u.fragment().is_some() || text.contains('#') => bad("must not have a fragment"),
        Ok(u) if u.cannot_be_a_base() => bad("must be a hierarchical absolute URI such as `https://host/path`"),
        Ok(_) => Ok(Some(text.to_owned())),
        Err(e) => bad(&format!("is not an absolute URI: {e}")),
    }
}

/// The audience of a new warrant: `resource` when asked for, else the default; a
/// delegation keeps its parent's audience, except that a parent with the default
/// audience may be narrowed to a resource. Another resource than a narrowed parent's is
/// `invalid_target`.
fn audience(default: &str, parent: Option<&str>, resource: Option<String>) -> Result<String, TokenError> {
    match (parent, resource) {
        (None, None) => Ok(default.to_owned()),
        (None, Some(r)) => Ok(r),
        (Some(p), None) => Ok(p.to_owned()),
        (Some(p), Some(r)) if p == default || p == r => Ok(r),
        (Some(p), Some(r)) => Err(TokenError::InvalidTarget(format!(
            "the subject token is for `{p}`; a delegation cannot be for another resource (`{r}`)"
        ))),
    }
}

fn parse_budget(req: &TokenRequest) -> Result<Option<Budget>, TokenError> {
    match req.budget.as_deref() {
        None => Ok(None),
        Some(text) => warrant_core::guard::budget::parse_budget(text)
            .map(Some)
            .map_err(|e| TokenError::InvalidRequest(format!("`budget`: {e}"))),
    }
}

/// What a grant mints besides its scope and lifetime.
struct Minted {
    sub: String,
    /// The audience (`aud`).
    aud: String,
    mode: Mode,
    task: TaskClaim,
    budget: Budget,
    exchanged: bool,
    /// The key the warrant is bound to (DPoP), if any.
    cnf: Option<Confirmation>,
    /// The identity provider's sign-in the warrant rests on, if any (audited with it).
    identity: Option<FederatedIdentity>,
}

/// Who starts delegated work: the acting agent and its owner, the human it acts for, the
/// provider identity they signed in with (if any) and the session presented (if any).
struct Start {
    agent: Agent,
    owner: Human,
    human: Human,
    identity: Option<FederatedIdentity>,
    session: Option<String>,
}

/// A freshly issued warrant.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed warrant.
    pub token: String,
    /// Its claims.
    pub claims: WarrantClaims,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Whether it came from a token exchange (the response then names its type).
    pub exchanged: bool,
}

/// Why no warrant was issued. Each variant is one RFC 6749 §5.2 error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `invalid_request`: missing, repeated or malformed parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_client`: the client assertion failed, or the agent may not act.
    #[error("{0}")]
    InvalidClient(String),
    /// `invalid_grant`: the subject token or the delegation is not acceptable.
    #[error("{0}")]
    InvalidGrant(String),
    /// `invalid_scope`: the requested scope exceeds what may be granted.
    #[error("{0}")]
    InvalidScope(String),
    /// `invalid_target` (RFC 8707 §2): the `resource` is malformed or not one this
    /// warrant may be for.
    #[error("{0}")]
    InvalidTarget(String),
    /// `invalid_dpop_proof` (RFC 9449 §5): the `DPoP` proof is malformed, invalid or
    /// replayed, or missing where the warrant must be bound.
    #[error("{0}")]
    InvalidDpopProof(String),
    /// `temporarily_unavailable`: try again later (e.g. too many DPoP proofs in flight).
    #[error("{0}")]
    Unavailable(String),
    /// `unsupported_grant_type`.
    #[error("grant type `{0}` is not supported; use `client_credentials` or token exchange")]
    UnsupportedGrantType(String),
    /// `server_error`: the store failed (the cause is kept); the detail is for logs.
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    /// A failure of ours (storage, signing); the detail is for logs only.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl TokenError {
    /// The RFC 6749 error code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::InvalidTarget(_) => "invalid_target",
            TokenError::InvalidDpopProof(_) => "invalid_dpop_proof",
            TokenError::Unavailable(_) => "temporarily_unavailable",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::Store(_) | TokenError::Internal(_) => "server_error",
        }
    }
}

impl crate::error::Classify for TokenError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            TokenError::InvalidClient(_) => ErrorKind::Forbidden,
            TokenError::Unavailable(_) => ErrorKind::Unavailable,
            TokenError::Store(_) | TokenError::Internal(_) => ErrorKind::Internal,
            _ => ErrorKind::Invalid,
        }
    }
}

/// Why a client assertion is refused the second time it is presented.
const ASSERTION_REPLAYED: &str = "the client assertion was already used; assertions are single-use";

/// When a verified client assertion is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spend {
    /// Before anything else happens.
    Now,
    /// With the warrant's record, in the same transaction ([`IssueGuard::assertion`]).
    WithIssuance,
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Revoked(why) => TokenError::InvalidGrant(format!("no warrant was issued: {why}")),
            StoreError::Replayed(_) => TokenError::InvalidClient(ASSERTION_REPLAYED.into()),
            e => TokenError::Store(e),
        }
    }
}

impl From<random::RandomError> for TokenError {
    fn from(e: random::RandomError) -> Self {
        TokenError::Internal(e.to_string())
    }
}

impl From<DelegationError> for TokenError {
    fn from(e: DelegationError) -> Self {
        match e {
            e if e.is_scope_error() => TokenError::InvalidScope(e.to_string()),
            DelegationError::AgentUnusable { .. } => TokenError::InvalidClient(e.to_string()),
            DelegationError::BadTtl => TokenError::InvalidRequest(e.to_string()),
            e => TokenError::InvalidGrant(e.to_string()),
        }
    }
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, TokenError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(TokenError::InvalidRequest(format!("`{name}` is required"))),
    }
}

fn parse_scope(req: &TokenRequest) -> Result<Option<Scope>, TokenError> {
    match req.scope.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Scope::parse(text).map(Some).map_err(|e| TokenError::InvalidScope(e.to_string())),
    }
}

fn parse_ttl(req: &TokenRequest) -> Result<Option<i64>, TokenError> {
    match req.ttl.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(TokenError::InvalidRequest(format!("`ttl` must be a positive number of seconds, not `{text}`"))),
        },
    }
}

fn parse_purpose(req: &TokenRequest) -> Result<String, TokenError> {
    let purpose = required(&req.task_purpose, "task_purpose")
        .map_err(|_| {
            TokenError::InvalidRequest(
                "`task_purpose` is required: every warrant belongs to a task with a purpose".into(),
            )
        })?
        .trim();
    if purpose.is_empty() || purpose.chars().count() > MAX_PURPOSE || purpose.chars().any(char::is_control) {
        return Err(TokenError::InvalidRequest(format!(
            "`task_purpose` must be 1 to {MAX_PURPOSE} printable characters"
        )));
    }
    Ok(purpose.to_owned())
}

/// What kind of token a `subject_token` is.
enum Subject {
    Session,
    Warrant,
}

fn subject_kind(token: &str, declared: &str) -> Result<Subject, TokenError> {
    match declared {
        TOKEN_TYPE_ID_TOKEN => Ok(Subject::Session),
        TOKEN_TYPE_ACCESS_TOKEN => Ok(Subject::Warrant),
        TOKEN_TYPE_JWT => {
            let (header, _): (Header, serde_json::Value) =
                peek_unverified(token).map_err(|e| TokenError::InvalidGrant(format!("the subject token: {e}")))?;
            match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some(SESSION_TYP) => Ok(Subject::Session),
                Some(WARRANT_TYP) => Ok(Subject::Warrant),
                _ => Err(TokenError::InvalidGrant("the subject token is neither a session nor a warrant".into())),
            }
        }
        other => Err(TokenError::InvalidRequest(format!(
            "`subject_token_type` `{other}` is not supported; use `{TOKEN_TYPE_ID_TOKEN}`, `{TOKEN_TYPE_ACCESS_TOKEN}` or `{TOKEN_TYPE_JWT}`"
        ))),
    }
}

/// Who issues, for whom, and within which limits.
#[derive(Debug, Clone)]
pub(crate) struct IssuerSettings {
    pub issuer: String,
    pub audience: String,
    pub limits: warrant_core::Limits,
    pub token_endpoint: String,
}

/// The issuer service: the token endpoint's grants. Reads agents and humans from the
/// store (the source of truth an issuance is serialised against), signs with the keys
/// service, records every warrant before returning it.
pub struct Issuer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: IssuerSettings,
    keys: Arc<KeyManager>,
    revocation: Arc<Revocation>,
    guardrails: Arc<Guardrails>,
    governance: Arc<Governance>,
    audit: Arc<Audit>,
    federation: Arc<Federation>,
    registry: Arc<Registry>,
    dpop: Arc<Dpop>,
    spiffe: Arc<SpiffeTrust>,
    /// Agents' public keys as decoded for verifying their client assertions.
    decoded: warrant_token::keys::DecodedKeys,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What the issuer service is built from.
pub(crate) struct IssuerParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: IssuerSettings,
    pub keys: Arc<KeyManager>,
    pub revocation: Arc<Revocation>,
    pub guardrails: Arc<Guardrails>,
    pub governance: Arc<Governance>,
    pub audit: Arc<Audit>,
    pub federation: Arc<Federation>,
    pub registry: Arc<Registry>,
    pub dpop: Arc<Dpop>,
    pub spiffe: Arc<SpiffeTrust>,
}

impl Issuer {
    pub(crate) fn new(parts: IssuerParts) -> Self {
        let IssuerParts {
            store,
            clock,
            settings,
            keys,
            revocation,
            guardrails,
            governance,
            audit,
            federation,
            registry,
            dpop,
            spiffe,
        } = parts;
        Issuer {
            store,
            clock,
            settings,
            keys,
            revocation,
            guardrails,
            governance,
            audit,
            federation,
            registry,
            dpop,
            spiffe,
            decoded: warrant_token::keys::DecodedKeys::default(),
        }
    }

    /// Handles one token request.
    pub async fn token(&self, req: &TokenRequest) -> Result<Issued, TokenError> {
        let grant_type = required(&req.grant_type, "grant_type")?;
        if !matches!(grant_type, GRANT_CLIENT_CREDENTIALS | GRANT_TOKEN_EXCHANGE) {
            return Err(TokenError::UnsupportedGrantType(grant_type.chars().take(100).collect()));
        }
        // Checked before anything else, spent only once the client is authenticated.
        let proof = match &req.dpop {
            None => None,
            Some(presented) => Some(self.dpop.verify(presented, None, self.clock.now()).map_err(dpop_error)?),
        };
        match grant_type {
            GRANT_CLIENT_CREDENTIALS => self.client_credentials(req, proof).await,
            _ => self.token_exchange(req, proof).await,
        }
    }

    /// Spends the request's verified DPoP proof, now that its sender is authenticated,
    /// and answers the key the new warrant is bound to (none without a proof).
    async fn bind(&self, proof: Option<&Proof>, now: UnixTime) -> Result<Option<Confirmation>, TokenError> {
        let Some(proof) = proof else { return Ok(None) };
        self.dpop.spend_verified(proof, now).await.map_err(dpop_error)?;
        Ok(Some(Confirmation { jkt: proof.jkt.clone() }))
    }

    /// Authenticates the agent calling `endpoint` (introspection, revocation) by its
    /// client assertion (RFC 7523, `private_key_jwt`), whose `aud` may name that endpoint,
    /// the token endpoint or the issuer. The assertion is spent.
    pub async fn authenticate_client(&self, req: &TokenRequest, endpoint: &str) -> Result<Agent, TokenError> {
        let assertion = self.client_assertion(req)?;
        let (agent, _, _) = self.authenticate_for(assertion, Some(endpoint), self.clock.now(), Spend::Now).await?;
        Ok(agent)
    }

    /// The client assertion of a request that authenticates the client itself.
    fn client_assertion<'a>(&self, req: &'a TokenRequest) -> Result<&'a str, TokenError> {
        let assertion_type = required(&req.client_assertion_type, "client_assertion_type").map_err(|_| {
            TokenError::InvalidClient(
                "client authentication is required: send `client_assertion_type` and `client_assertion`".into(),
            )
        })?;
        let assertion = required(&req.client_assertion, "client_assertion")
            .map_err(|e| TokenError::InvalidClient(e.to_string()))?;
        let svid = warrant_token::spiffe::looks_like_svid(assertion);
        match assertion_type {
            ASSERTION_TYPE_JWT_BEARER if !svid => {}
            ASSERTION_TYPE_JWT_SPIFFE if svid => {}
            ASSERTION_TYPE_JWT_BEARER | ASSERTION_TYPE_JWT_SPIFFE => {
                return Err(TokenError::InvalidClient(format!(
                    "`client_assertion_type` `{assertion_type}` does not fit the assertion: a JWT-SVID (`sub` a SPIFFE ID) is `{ASSERTION_TYPE_JWT_SPIFFE}`, an agent's own assertion `{ASSERTION_TYPE_JWT_BEARER}`"
                )))
            }
            _ => {
                return Err(TokenError::InvalidClient(format!(
                    "`client_assertion_type` must be `{ASSERTION_TYPE_JWT_BEARER}` or `{ASSERTION_TYPE_JWT_SPIFFE}`"
                )))
            }
        }
        Ok(assertion)
    }

    /// Authenticates an agent by its client assertion at the token endpoint; the
    /// assertion is spent.
    async fn authenticate(&self, assertion: &str, now: UnixTime) -> Result<(Agent, Human), TokenError> {
        let (agent, owner, _) = self.authenticate_for(assertion, None, now, Spend::Now).await?;
        Ok((agent, owner))
    }

    /// Authenticates an agent by its client assertion at the token endpoint for an
    /// issuance that writes nothing before its warrant: the assertion is returned
    /// unspent, for the warrant's record to spend in the same transaction (one durable
    /// write fewer per issuance; a replay is refused there and nothing is recorded). A
    /// JWT-SVID is spent at once.
    async fn authenticate_to_issue(
        &self,
        assertion: &str,
        now: UnixTime,
    ) -> Result<(Agent, Human, Option<SpentAssertion>), TokenError> {
        self.authenticate_for(assertion, None, now, Spend::WithIssuance).await
    }

    /// Authenticates an agent by its client assertion, whose `aud` may also be `endpoint`
    /// (the endpoint being called, when it is not the token endpoint); the assertion is
    /// spent now, or returned to be spent with the issuance (`spend`).
    async fn authenticate_for(
        &self,
        assertion: &str,
        endpoint: Option<&str>,
        now: UnixTime,
        spend: Spend,
    ) -> Result<(Agent, Human, Option<SpentAssertion>), TokenError> {
        let audiences = self.audiences(endpoint);
        let (agent, unspent) = if warrant_token::spiffe::looks_like_svid(assertion) {
            (self.authenticate_svid(assertion, &audiences, now).await?, None)
        } else {
            let agent_id = claimed_agent(assertion)
                .map_err(|e| TokenError::InvalidClient(format!("the client assertion: {e}")))?;
            let agent = self.store.get_agent(&agent_id).await?;
            self.verify_client(agent, &agent_id, assertion, &audiences, now, spend).await?
        };
        let owner = owner_of(&agent, self.store.get_human(&agent.owner).await?)?;
        Ok((agent, owner, unspent))
    }

    /// Authenticates the agent of a client-credentials grant, reading the revocation
    /// watermark, the agent and its owner together
    /// ([`warrant_store::WarrantStore::issuance_start`]: one
    /// store round trip instead of three on the busiest issuance path); the assertion is
    /// returned unspent, for the warrant's record to spend. Also answers the watermark,
    /// read before any check that reads the registry.
    async fn authenticate_granted(
        &self,
        assertion: &str,
        now: UnixTime,
    ) -> Result<(Agent, Human, Option<SpentAssertion>, u64), TokenError> {
        if warrant_token::spiffe::looks_like_svid(assertion) {
            let as_of = self.store.revocation_watermark().await?;
            let (agent, owner, unspent) = self.authenticate_for(assertion, None, now, Spend::WithIssuance).await?;
            return Ok((agent, owner, unspent, as_of));
        }
        let agent_id =
            claimed_agent(assertion).map_err(|e| TokenError::InvalidClient(format!("the client assertion: {e}")))?;
        let start = self.store.issuance_start(&agent_id).await?;
        let (agent, owner, unspent) =
            self.verify_read_client(start.agent, start.owner, &agent_id, assertion, now).await?;
        Ok((agent, owner, unspent, start.watermark))
    }

    /// Verifies an agent's own `assertion` at the token endpoint against the agent
    /// `agent_id` and its owner as read with the issuance's other reads (`None`: not
    /// registered); the assertion is returned unspent, for the warrant's record to spend.
    async fn verify_read_client(
        &self,
        agent: Option<Agent>,
        owner: Option<Human>,
        agent_id: &AgentId,
        assertion: &str,
        now: UnixTime,
    ) -> Result<(Agent, Human, Option<SpentAssertion>), TokenError> {
        let audiences = self.audiences(None);
        let (agent, unspent) =
            self.verify_client(agent, agent_id, assertion, &audiences, now, Spend::WithIssuance).await?;
        let owner = owner_of(&agent, owner)?;
        Ok((agent, owner, unspent))
    }

    /// The audiences a client assertion may name: the token endpoint, the issuer, and
    /// `endpoint` when the assertion is presented to another endpoint.
    fn audiences<'a>(&'a self, endpoint: Option<&'a str>) -> [&'a str; 3] {
        let token_endpoint = self.settings.token_endpoint.as_str();
        [token_endpoint, self.settings.issuer.as_str(), endpoint.unwrap_or(token_endpoint)]
    }

    /// Verifies `assertion` as signed by `agent` (`agent_id` as registered, `None` when
    /// it is not), checks the agent may act now, and spends the assertion now or returns
    /// it to be spent with the issuance (`spend`).
    async fn verify_client(
        &self,
        agent: Option<Agent>,
        agent_id: &AgentId,
        assertion: &str,
        audiences: &[&str],
        now: UnixTime,
        spend: Spend,
    ) -> Result<(Agent, Option<SpentAssertion>), TokenError> {
        let client = |msg: String| TokenError::InvalidClient(msg);
        let agent = agent.ok_or_else(|| client(format!("agent `{agent_id}` is not registered")))?;
        let Some(public_key) = &agent.public_key else {
            return Err(client(format!(
                "agent `{agent_id}` authenticates with its SPIFFE ID: present a JWT-SVID ({ASSERTION_TYPE_JWT_SPIFFE})"
            )));
        };
        let key = self
            .decoded
            .verifying_key(public_key)
            .map_err(|e| TokenError::Internal(format!("stored key of `{agent_id}`: {e}")))?;
        let claims = verify_assertion(assertion, &key, &agent.id, audiences, now)
            .map_err(|e| client(format!("the client assertion: {e}")))?;
        agent.usable_at(now).map_err(|why| client(format!("agent `{}` {why}", agent.id)))?;
        let unspent = match spend {
            Spend::Now => {
                if !self.store.spend_assertion(&agent.id, &claims.jti, claims.exp, now).await? {
                    return Err(client(ASSERTION_REPLAYED.into()));
                }
                None
            }
            Spend::WithIssuance => {
                Some(SpentAssertion { agent: agent.id.clone(), jti: claims.jti, exp: claims.exp, now })
            }
        };
        Ok((agent, unspent))
    }

    /// Authenticates an agent registered with a SPIFFE ID by its JWT-SVID: verified
    /// against its trust domain's bundle, for this server, unexpired; its `jti`, when it
    /// has one, is spent (a JWT-SVID without one may be presented again until it expires,
    /// as SPIFFE workloads cache them).
    async fn authenticate_svid(&self, svid: &str, audiences: &[&str], now: UnixTime) -> Result<Agent, TokenError> {
        let client = |msg: String| TokenError::InvalidClient(msg);
        let claimed = warrant_token::spiffe::peek_subject(svid).map_err(|e| client(e.to_string()))?;
        let keys = self.spiffe.keys(claimed.trust_domain()).await.map_err(|e| match e {
            SpiffeError::NotTrusted(_) => client(e.to_string()),
            e => TokenError::Internal(e.to_string()),
        })?;
        let verify = |keys: &warrant_token::oidc::ProviderKeys| {
            warrant_token::spiffe::verify_svid(svid, keys, claimed.trust_domain(), audiences, now)
        };
        let verified = match verify(&keys) {
            // A key the bundle does not hold: the domain may have rotated; fetch its
            // bundle again (rate-limited) and try once more.
            Err(SvidError::Token(IdTokenError::UnknownKey)) => {
                match self.spiffe.refreshed(claimed.trust_domain()).await {
                    Some(fresh) => verify(&fresh),
                    None => Err(SvidError::Token(IdTokenError::UnknownKey)),
                }
            }
            other => other,
        }
        .map_err(|e| client(e.to_string()))?;
        let agent = self
            .store
            .agent_by_spiffe_id(verified.sub.as_str())
            .await?
            .ok_or_else(|| client(format!("no agent is registered with SPIFFE ID `{}`", verified.sub)))?;
        agent.usable_at(now).map_err(|why| client(format!("agent `{}` {why}", agent.id)))?;
        if let Some(jti) = &verified.jti {
            // Remembered as long as it would still be accepted (its expiry plus the leeway).
            let until = UnixTime(verified.exp.0.saturating_add(warrant_token::spiffe::LEEWAY_SECS));
            if !self.store.spend_assertion(&agent.id, jti, until, now).await? {
                return Err(client("the JWT-SVID was already used (it has a `jti`, so it is single-use)".into()));
            }
        }
        Ok(agent)
    }

    async fn client_credentials(&self, req: &TokenRequest, proof: Option<Proof>) -> Result<Issued, TokenError> {
        let now = self.clock.now();
        let assertion = self.client_assertion(req)?;
        let (scope, ttl, purpose) = (parse_scope(req)?, parse_ttl(req)?, parse_purpose(req)?);
        let budget = parse_budget(req)?.unwrap_or_default();
        let aud = audience(&self.settings.audience, None, parse_resource(req)?)?;
        let (agent, owner, assertion, as_of) = self.authenticate_granted(assertion, now).await?;
        let cnf = self.bind(proof.as_ref(), now).await?;
        let grant = grant_root(
            &RootRequest { agent: &agent, owner: &owner, on_behalf_of: None, scope: scope.as_ref(), ttl, now },
            &self.settings.limits,
        )?;
        let task = TaskClaim { id: random::task_id(self.clock.now_millis())?, purpose, human: owner.id.clone() };
        let minted = Minted {
            sub: agent.id.to_string(),
            aud,
            mode: Mode::Autonomous,
            task,
            budget,
            exchanged: false,
            cnf,
            identity: None,
        };
        self.mint(grant, &agent, minted, None, IssueGuard { as_of, session: None, assertion }, now).await
    }

    /// A token exchange. The revocation watermark is read before any check that reads
    /// the store: a revocation recorded after it that names what the new warrant rests on
    /// refuses the warrant when it is recorded (see `IssueGuard`). A delegation reads it
    /// with everything else it reads, first (`WarrantStore::delegation_start`).
    async fn token_exchange(&self, req: &TokenRequest, proof: Option<Proof>) -> Result<Issued, TokenError> {
        let now = self.clock.now();
        let subject = required(&req.subject_token, "subject_token")?;
        let subject_type = required(&req.subject_token_type, "subject_token_type")?;
        let actor = required(&req.actor_token, "actor_token").map_err(|_| {
            TokenError::InvalidRequest("`actor_token` is required: the acting agent's client assertion".into())
        })?;
        if let Some(t) = req.actor_token_type.as_deref() {
            if t != TOKEN_TYPE_JWT {
                return Err(TokenError::InvalidRequest(format!("`actor_token_type` must be `{TOKEN_TYPE_JWT}`")));
            }
        }
        let kind = subject_kind(subject, subject_type)?;
        let (scope, ttl) = (parse_scope(req)?, parse_ttl(req)?);
        let budget = parse_budget(req)?;
        let resource = parse_resource(req)?;
        let purpose = match kind {
            Subject::Session => Some(parse_purpose(req)?),
            Subject::Warrant => None,
        };
        let ring = self.keys.ring().map_err(|e| TokenError::Internal(e.to_string()))?;
        let issuer = self.settings.issuer.as_str();
        let foreign = warrant_token::oidc::peek_issuer(subject).ok().filter(|iss| iss != issuer);
        match kind {
            Subject::Session => {
                let as_of = self.store.revocation_watermark().await?;
                let start = match foreign {
                    Some(_) => self.federated_start(subject, actor, now).await?,
                    None => self.session_start(subject, actor, ring.as_ref(), now).await?,
                };
                let Start { agent, owner, human, identity, session } = start;
                let cnf = self.bind(proof.as_ref(), now).await?;
                let grant = grant_root(
                    &RootRequest {
                        agent: &agent,
                        owner: &owner,
                        on_behalf_of: Some(&human),
                        scope: scope.as_ref(),
                        ttl,
                        now,
                    },
                    &self.settings.limits,
                )?;
                let task = TaskClaim {
                    id: random::task_id(self.clock.now_millis())?,
                    purpose: purpose.unwrap_or_default(),
                    human: human.id.clone(),
                };
                let minted = Minted {
                    sub: human.id.to_string(),
                    aud: audience(&self.settings.audience, None, resource)?,
                    mode: Mode::Delegated,
                    task,
                    budget: budget.unwrap_or_default(),
                    exchanged: true,
                    cnf,
                    identity,
                };
                self.mint(grant, &agent, minted, None, IssueGuard { as_of, session, assertion: None }, now).await
            }
            Subject::Warrant => {
                let parent = verify_warrant(subject, ring.as_ref(), issuer, now)
                    .map_err(|e| TokenError::InvalidGrant(format!("the subject token: {e}")))?;
                // One store read for the whole delegation: the watermark first, the parent's
                // record, the actor and its owner (an agent's own assertion; a JWT-SVID, or
                // an assertion that names no agent, is authenticated as usual below), the
                // parent's chain, their owners and the human.
                let actor_id =
                    (!warrant_token::spiffe::looks_like_svid(actor)).then(|| claimed_agent(actor).ok()).flatten();
                let parent_chain = parent.chain();
                let start =
                    self.store.delegation_start(&parent.jti, actor_id.as_ref(), &parent_chain, parent.human()).await?;
                let as_of = start.watermark;
                if !start.parent_recorded {
                    return Err(TokenError::InvalidGrant(
                        "the subject token is not a warrant this server recorded".into(),
                    ));
                }
                if let Some(why) = self.revocation.warrant_revoked(&parent.jti) {
                    return Err(TokenError::InvalidGrant(format!("the subject token has been {why}")));
                }
                if self.revocation.task_ended(&parent.task.id) {
                    return Err(TokenError::InvalidGrant(format!("task `{}` has ended", parent.task.id)));
                }
                // A bound warrant is delegated only by its holder (a proof of the parent's
                // key for this exchange and this subject token, `subject_dpop`), and only
                // narrows: the child is bound too, to its new holder's key (`DPoP`).
                let holder_proof = match &parent.cnf {
                    None => None,
                    Some(cnf) => Some(self.holder_proof(req, subject, cnf, proof.is_some(), now)?),
                };
                let aud = audience(&self.settings.audience, Some(&parent.aud), resource)?;
                let (child, child_owner, assertion) = match &actor_id {
                    Some(id) => self.verify_read_client(start.actor, start.actor_owner, id, actor, now).await?,
                    None => self.authenticate_to_issue(actor, now).await?,
                };
                if let Some(holder_proof) = &holder_proof {
                    self.dpop.spend_verified(holder_proof, now).await.map_err(dpop_error)?;
                }
                let cnf = self.bind(proof.as_ref(), now).await?;
                let parent_scope =
                    parent.scope().map_err(|e| TokenError::InvalidGrant(format!("the subject token's scope: {e}")))?;
                let chain_agents = parent_chain
                    .iter()
                    .zip(start.chain)
                    .map(|(id, agent)| {
                        agent.ok_or_else(|| {
                            TokenError::InvalidGrant(format!("agent `{id}` in the delegation chain is not registered"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (chain_owners, human) = (start.chain_owners, start.human);
                let grant = grant_delegation(
                    &DelegationRequest {
                        parent: &parent,
                        parent_scope: &parent_scope,
                        chain_agents: &chain_agents,
                        chain_owners: &chain_owners,
                        child: &child,
                        child_owner: &child_owner,
                        human: human.as_ref(),
                        scope: scope.as_ref(),
                        ttl,
                        now,
                    },
                    &self.settings.limits,
                )?;
                let task = parent.task.clone();
                // A child gets at most what its parent has left, counter by counter.
                let left = self.guardrails.budget_left(&parent.jti).await.map_err(TokenError::Store)?;
                let budget = attenuate(&left, budget.as_ref());
                let minted = Minted {
                    sub: parent.sub.clone(),
                    aud,
                    mode: parent.mode,
                    task,
                    budget,
                    exchanged: true,
                    cnf,
                    identity: None,
                };
                let issued = self
                    .mint(grant, &child, minted, Some(&parent), IssueGuard { as_of, session: None, assertion }, now)
                    .await?;
                if self.guardrails.delegated(&parent.client_id, now).await.is_some() {
                    // A burst of delegations quarantined the delegating agent, and with it
                    // the warrant just issued (its chain holds that agent).
                    return Err(TokenError::InvalidGrant(format!(
                        "agent `{}` was quarantined for its delegations",
                        parent.client_id
                    )));
                }
                Ok(issued)
            }
        }
    }

    /// The proof that the holder of a bound subject token agrees to its delegation: a
    /// DPoP proof made with the subject token's key (`cnf.jkt`) for `POST` on the token
    /// endpoint and this subject token (`ath`), sent as `subject_dpop`, verified (spent by
    /// the caller once the actor is authenticated). The exchange must also bind the child
    /// (`child_bound`).
    fn holder_proof(
        &self,
        req: &TokenRequest,
        subject: &str,
        cnf: &Confirmation,
        child_bound: bool,
        now: UnixTime,
    ) -> Result<Proof, TokenError> {
        let Some(text) = req.subject_dpop.as_deref().filter(|t| !t.is_empty()) else {
            return Err(TokenError::InvalidDpopProof(
                "the subject token is DPoP-bound: its holder's proof for this exchange must come as `subject_dpop` (a DPoP proof of the subject token's key for POST on the token endpoint, with `ath` of the subject token)".into(),
            ));
        };
        if !child_bound {
            return Err(TokenError::InvalidDpopProof(
                "the subject token is DPoP-bound, so its delegation must be bound too: send a `DPoP` proof made with the new holder's key".into(),
            ));
        }
        let presented =
            PresentedProof { proof: text.to_owned(), htm: "POST".into(), htu: self.settings.token_endpoint.clone() };
        let proof = self.dpop.verify(&presented, Some(subject), now).map_err(dpop_error)?;
        if proof.jkt != cnf.jkt {
            return Err(TokenError::InvalidDpopProof(
                "`subject_dpop` is not made with the subject token's key: only its holder may delegate it".into(),
            ));
        }
        Ok(proof)
    }

    /// The start of delegated work from a session this server opened: the session checked
    /// (ours, for delegation, not revoked), the actor authenticated, the human read.
    async fn session_start(
        &self,
        subject: &str,
        actor: &str,
        ring: &KeyRing,
        now: UnixTime,
    ) -> Result<Start, TokenError> {
        let session = verify_session(subject, ring, &self.settings.issuer, now)
            .map_err(|e| TokenError::InvalidGrant(format!("the subject token: {e}")))?;
        match self.store.get_session(&session.jti).await? {
            Some(s) if s.purpose == SessionPurpose::Delegation && s.human == session.sub => {
                if s.revoked_at.is_some() {
                    return Err(TokenError::InvalidGrant("the subject token's session has been revoked".into()));
                }
            }
            _ => {
                return Err(TokenError::InvalidGrant(
                    "the subject token is not a session this server opened for delegation".into(),
                ))
            }
        }
        let (agent, owner) = self.authenticate(actor, now).await?;
        let human = self
            .store
            .get_human(&session.sub)
            .await?
            .ok_or_else(|| TokenError::InvalidGrant(format!("human `{}` is not registered", session.sub)))?;
        Ok(Start { agent, owner, human, identity: None, session: Some(session.jti) })
    }

    /// The start of delegated work from a trusted provider's ID token: the actor
    /// authenticated, the token verified, then the human found or registered with the
    /// entitlements their groups give now.
    async fn federated_start(&self, subject: &str, actor: &str, now: UnixTime) -> Result<Start, TokenError> {
        // The agent first: nobody unauthenticated makes Warrant fetch a provider's keys.
        let (agent, owner) = self.authenticate(actor, now).await?;
        let signin = self.federation.sign_in(subject, now).await.map_err(|e| match e {
            FederationError::Unavailable(why) => TokenError::Internal(why),
            e => TokenError::InvalidGrant(format!("the subject token: {e}")),
        })?;
        let human = self.registry.federated_human(&signin).await.map_err(|e| match e.kind() {
            ErrorKind::Internal => TokenError::Internal(e.to_string()),
            _ => TokenError::InvalidGrant(format!("the signed-in human: {e}")),
        })?;
        Ok(Start { agent, owner, human, identity: Some(signin.identity), session: None })
    }

    /// Signs, records and returns a warrant for `grant`. The store records it only if
    /// nothing it rests on was revoked (`guard`), in the same transaction that any
    /// revocation of its ancestors is serialised with, and that makes its audit record
    /// durable.
    async fn mint(
        &self,
        grant: Grant,
        agent: &Agent,
        minted: Minted,
        parent: Option<&WarrantClaims>,
        guard: IssueGuard,
        now: UnixTime,
    ) -> Result<Issued, TokenError> {
        let Minted { sub, aud, mode, task, budget, exchanged, cnf, identity } = minted;
        let ring = self.keys.ring().map_err(|e| TokenError::Internal(e.to_string()))?;
        let act = Actor::from_chain(&grant.chain).ok_or_else(|| TokenError::Internal("empty chain".into()))?;
        let claims = WarrantClaims {
            iss: self.settings.issuer.clone(),
            sub,
            aud,
            exp: grant.exp,
            iat: grant.iat,
            nbf: grant.iat,
            jti: random::warrant_id(self.clock.now_millis())?,
            client_id: agent.id.clone(),
            scope: grant.scope.to_string(),
            act,
            task,
            mode,
            owner: agent.owner.clone(),
            parent: parent.map(|p| p.jti.clone()),
            cnf,
            budget,
        };
        let token = sign_warrant(ring.active(), &claims).map_err(|e| TokenError::Internal(e.to_string()))?;
        // Never hand out a warrant that would not verify (the scope is bounded, but the
        // purpose, the chain and the issuer add to it).
        if token.len() > warrant_token::jws::MAX_TOKEN_LEN {
            return Err(TokenError::InvalidScope(format!(
                "the warrant would be {} bytes, more than the {} a warrant may be; request a narrower `scope`",
                token.len(),
                warrant_token::jws::MAX_TOKEN_LEN
            )));
        }
        let record = WarrantRecord {
            jti: claims.jti.clone(),
            parent: claims.parent.clone(),
            agent: agent.id.clone(),
            task: claims.task.id.clone(),
            human: claims.task.human.clone(),
            sub: claims.sub.clone(),
            mode,
            scope: grant.scope,
            chain: grant.chain,
            kid: ring.active().kid().to_owned(),
            issued_at: claims.iat,
            expires_at: claims.exp,
            budget: claims.budget.clone(),
            claims: Some(claims.clone()),
        };
        let new_task = parent.is_none().then(|| TaskRecord {
            id: claims.task.id.clone(),
            purpose: claims.task.purpose.clone(),
            human: claims.task.human.clone(),
            root_agent: agent.id.clone(),
            created_at: now,
            deadline: claims.exp,
        });
        let details = WarrantDetails {
            sub: claims.sub.clone(),
            mode,
            scope: claims.scope.clone(),
            iat: claims.iat,
            exp: claims.exp,
            chain: record.chain.clone(),
            parent: claims.parent.clone(),
            purpose: claims.task.purpose.clone(),
            kid: record.kid.clone(),
            budget: claims.budget.clone(),
            identity,
        };
        let mut entry = AuditEntry::with_details(now, details).map_err(|e| TokenError::Internal(e.to_string()))?;
        entry.agent = Some(agent.id.clone());
        entry.human = Some(claims.task.human.clone());
        entry.task = Some(claims.task.id.clone());
        entry.warrant = Some(claims.jti.clone());
        // What is read after the record moves into the issuance.
        let depth = record.chain.len();
        let narrowed = parent.map(|p| (&p.client_id, record.scope.clone()));
        // The warrant and its audit record commit in one transaction: recorded and
        // audited, or neither (refused when something it rests on was revoked).
        let issuance = Issuance { warrant: record, new_task, guard };
        match self.audit.issue(entry, issuance).await {
            Ok(_) => {}
            Err(AuditError::Refused(refusal)) => return Err(StoreError::from(refusal).into()),
            Err(e @ AuditError::QueueFull(_)) => {
                return Err(TokenError::Unavailable(format!("no warrant was issued: {e}; retry shortly")))
            }
            Err(e) => {
                return Err(TokenError::Internal(format!(
                    "the issuance could not be recorded and audited, so no warrant was issued: {e}"
                )))
            }
        }
        self.guardrails.open_budget(&claims.jti, claims.parent.as_ref(), &claims.budget, claims.exp);
        self.governance.issued(&agent.id, narrowed.as_ref().map(|(client, scope)| (*client, scope)), now);
        tracing::info!(
            jti = %claims.jti, agent = %agent.id, task = %claims.task.id, mode = %mode,
            depth, parent = ?claims.parent.as_ref().map(|p| p.as_str()),
            "issued a warrant"
        );
        Ok(Issued { expires_in: now.until(claims.exp), token, claims, exchanged })
    }
}

/// The owner read for `agent`; a missing one is an internal error (the store never
/// registers an agent without its owner).
fn owner_of(agent: &Agent, owner: Option<Human>) -> Result<Human, TokenError> {
    owner.ok_or_else(|| TokenError::Internal(format!("owner of `{}` is missing", agent.id)))
}

/// A refused DPoP proof as a token error: `invalid_dpop_proof`, or
/// `temporarily_unavailable` when the register of proofs is full.
fn dpop_error(e: DpopError) -> TokenError {
    match e {
        DpopError::Proof(ProofError::TooMany) => TokenError::Unavailable(ProofError::TooMany.to_string()),
        DpopError::Unavailable(why) => TokenError::Unavailable(why),
        e => TokenError::InvalidDpopProof(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{audience, parse_resource, TokenError, TokenRequest};

    fn resource(text: &str) -> Result<Option<String>, TokenError> {
        parse_resource(&TokenRequest { resource: Some(text.to_owned()), ..TokenRequest::default() })
    }

    #[test]
    fn a_resource_is_an_absolute_uri_without_a_fragment_kept_as_sent() {
        assert_eq!(resource("https://gw.example/mcp/crm").unwrap().as_deref(), Some("https://gw.example/mcp/crm"));
        assert_eq!(resource("http://127.0.0.1:9/mcp/a").unwrap().as_deref(), Some("http://127.0.0.1:9/mcp/a"));
        for bad in [
            "",
            "/mcp/crm",
            "mcp/crm",
            "https://gw.example/mcp#x",
            "https://gw.example/mcp#",
            "mailto:a@b",
            "https://a b/",
        ] {
            assert!(matches!(resource(bad), Err(TokenError::InvalidTarget(_))), "{bad:?}");
        }
        assert!(matches!(resource(&format!("https://a/{}", "x".repeat(2000))), Err(TokenError::InvalidTarget(_))));
        assert_eq!(parse_resource(&TokenRequest::default()).unwrap(), None);
    }

    #[test]
    fn a_delegation_keeps_its_parents_audience_or_narrows_the_default() {
        let d = "https://issuer";
        assert_eq!(audience(d, None, None).unwrap(), d);
        assert_eq!(audience(d, None, Some("https://r".into())).unwrap(), "https://r");
        assert_eq!(audience(d, Some("https://r"), None).unwrap(), "https://r");
        assert_eq!(audience(d, Some(d), Some("https://r".into())).unwrap(), "https://r");
        assert_eq!(audience(d, Some("https://r"), Some("https://r".into())).unwrap(), "https://r");
        let err = audience(d, Some("https://r"), Some("https://other".into())).unwrap_err();
        assert_eq!(err.code(), "invalid_target");
        let err = audience(d, Some("https://r"), Some(d.into())).unwrap_err();
        assert_eq!(err.code(), "invalid_target");
    }
}
