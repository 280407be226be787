//! The gateway's HTTP side: `POST /mcp/<u>` (every message authenticated, mapped,
//! decided, then forwarded as the client sent it), `GET`/`DELETE /mcp/<u>` (405), and
//! `GET /.well-known/oauth-protected-resource/mcp/<u>`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::{json, Map, Value};
use warrant_core::authzen::{
    Action, EvaluationRequest, ResponseContext, Subject, ACTION_MCP, CONTEXT_APPROVAL_ID, SUBJECT_TOKEN,
};
use warrant_core::{UnixTime, WarrantClaims};
use warrant_token::dpop::ProofRegister;

use crate::auth::{self, AuthError, ResourceMetadata, Verified, Verifier};
use crate::mapping::{self, DeclaredMapping, Evaluation, MappingError, Plan, MAPPING_KEY};
use crate::pdp::Pdp;
use crate::rpc::{self, ErrorResponse};
use crate::{GatewayConfig, Upstream};

/// Where a retried call presents its approval: `params._meta["io.warrant/approval_id"]`.
pub const META_APPROVAL_ID: &str = "io.warrant/approval_id";
/// The largest upstream answer the gateway reads whole (a `tools/list` it filters).
const MAX_REWRITTEN: usize = 16 * 1024 * 1024;
/// The most `tools/list` pages the gateway reads when it learns a catalogue itself.
const MAX_PAGES: usize = 20;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
    /// The Warrant server's metadata or keys could not be read.
    #[error(transparent)]
    Server(#[from] AuthError),
}

/// What the gateway knows of one tool of an upstream.
#[derive(Debug, Clone)]
enum Tool {
    /// No declared mapping: the default one applies.
    Default,
    /// A declared mapping.
    Declared(Arc<DeclaredMapping>),
    /// A declared mapping that is malformed: the tool is hidden and its calls refused.
    Broken(String),
}

/// Tools by upstream, then by name, as learned from `tools/list` answers.
type Catalogue = HashMap<String, HashMap<String, Tool>>;

struct Inner {
    upstreams: HashMap<String, Upstream>,
    public_url: String,
    /// The public URL's origin (`scheme://host[:port]`), the only `Origin` accepted.
    origin: String,
    verifier: Verifier,
    pdp: Arc<dyn Pdp>,
    http: reqwest::Client,
    catalogue: RwLock<Catalogue>,
    /// The DPoP proofs seen (each is accepted once).
    proofs: ProofRegister,
}

/// A running gateway's state; [`Gateway::router`] serves it.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("public_url", &self.0.public_url).finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway for `config`, deciding through `pdp`; reads the Warrant server's issuer
    /// and keys first.
    pub async fn new(config: GatewayConfig, pdp: Arc<dyn Pdp>) -> Result<Self, GatewayError> {
        if config.upstreams.is_empty() {
            return Err(GatewayError::Config("at least one upstream is required (`--upstream NAME=URL`)".into()));
        }
        let mut upstreams = HashMap::new();
        for u in config.upstreams {
            if upstreams.insert(u.name.clone(), u.clone()).is_some() {
                return Err(GatewayError::Config(format!("upstream `{}` is named twice", u.name)));
            }
        }
        // Upstream redirects are not followed: a redirect would carry the call elsewhere.
        // No overall timeout (a tool may stream for long), but a bounded connect.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let verifier = Verifier::connect(http.clone(), &config.server).await?;
        let public_url = config.public_url.trim_end_matches('/').to_owned();
        let origin = match url::Url::parse(&public_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u.origin().ascii_serialization(),
            _ => {
                return Err(GatewayError::Config(format!(
                    "the public URL `{public_url}` is not an absolute http(s) URL"
                )))
            }
        };
        Ok(Gateway(Arc::new(Inner {
            upstreams,
            public_url,
            origin,
            verifier,
            pdp,
            http,
            catalogue: RwLock::new(HashMap::new()),
            proofs: ProofRegister::default(),
        })))
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/mcp/{upstream}", post(call).get(not_allowed).delete(not_allowed))
            .route("/.well-known/oauth-protected-resource/mcp/{upstream}", get(metadata))
            .with_state(self.clone())
    }
}

fn now() -> UnixTime {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn not_found(upstream: &str) -> Response {
    let message = format!("no upstream `{}` here", warrant_core::permission::shown(upstream));
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "message": message}))).into_response()
}

/// `GET` (a server-to-client stream) and `DELETE` (ending a session) are not offered:
/// 405, which MCP clients take as "not supported".
async fn not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
}

async fn metadata(State(gw): State<Gateway>, Path(upstream): Path<String>) -> Response {
    if !gw.0.upstreams.contains_key(&upstream) {
        return not_found(&upstream);
    }
    Json(ResourceMetadata::of(&gw.0.public_url, &upstream, gw.0.verifier.issuer())).into_response()
}

fn unauthorized(gw: &Gateway, upstream: &str, error: &AuthError) -> Response {
    if let AuthError::Keys(why) = error {
        tracing::error!(error = %why, "the Warrant server's keys could not be read");
        let body = json!({"error": "temporarily_unavailable", "message": "warrants cannot be verified now"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let challenge = auth::challenge(&gw.0.public_url, upstream, error);
    let mut response =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token", "error_description": error.to_string()})))
            .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn rpc_error(
    status: StatusCode,
    id: Value,
    code: rmcp::model::ErrorCode,
    message: impl Into<String>,
    data: Option<Value>,
) -> Response {
    (status, Json(ErrorResponse::new(id, code, message, data))).into_response()
}

/// How the warrant came: `Authorization: Bearer …` or, for a DPoP-bound warrant,
/// `Authorization: DPoP …` (RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

fn authorization(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim()))
}

/// The DPoP proof a bound warrant needs, checked (RFC 9449 §7): sent with the `DPoP`
/// scheme, exactly one `DPoP` header, made with the bound key for this request (`POST` on
/// the upstream's URL) and this token, and never used before. An unbound warrant needs
/// none (one sent anyway is ignored, as RFC 9449 allows for bearer tokens).
fn check_proof(
    gw: &Gateway,
    headers: &HeaderMap,
    scheme: Scheme,
    claims: &WarrantClaims,
    token: &str,
    resource: &str,
) -> Result<Option<String>, AuthError> {
    let Some(cnf) = &claims.cnf else { return Ok(None) };
    if scheme != Scheme::Dpop {
        return Err(AuthError::Dpop("the warrant is DPoP-bound: send it as `Authorization: DPoP <warrant>`".into()));
    }
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AuthError::Dpop("send exactly one `DPoP` header with a proof for this request".into()));
    };
    let proof = value.to_str().map_err(|_| AuthError::Dpop("the `DPoP` header is not ASCII".into()))?.trim();
    let expected = warrant_token::dpop::Expected { htm: "POST", htu: resource, token: Some(token) };
    gw.0.proofs.accept(proof, &expected, &cnf.jkt, now()).map_err(|e| AuthError::Dpop(e.to_string()))?;
    Ok(Some(proof.to_owned()))
}

/// The request headers an upstream gets: the message's type and what it accepts, the
/// MCP headers (`Mcp-Session-Id`, `MCP-Protocol-Version`, …) and `Last-Event-ID`.
/// Never `Authorization`, cookies or hop-by-hop headers.
fn upstream_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == "content-type" || n == "accept" || n == "last-event-id" || n.starts_with("mcp-") {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The response headers a client gets from the upstream: its content type, cache
/// control and MCP headers.
fn client_headers(headers: &reqwest::header::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n == "content-type" || n == "cache-control" || n.starts_with("mcp-")
        })
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
            let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
            Some((name, value))
        })
        .collect()
}

/// The approval a retried call presents, taken out of `params._meta` (so the upstream
/// never sees it). `Some(None)` when the key is there but not a string.
fn take_approval(message: &mut Map<String, Value>) -> Option<Option<String>> {
    let params = message.get_mut("params")?.as_object_mut()?;
    let meta = params.get_mut("_meta")?.as_object_mut()?;
    let approval = meta.remove(META_APPROVAL_ID)?;
    if meta.is_empty() {
        params.remove("_meta");
    }
    Some(approval.as_str().map(str::to_owned))
}

/// One `POST /mcp/<u>`.
async fn call(State(gw): State<Gateway>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(upstream) = gw.0.upstreams.get(&name).cloned() else { return not_found(&name) };
    if let Some(origin) = headers.get(header::ORIGIN) {
        // A browser page of another origin (DNS rebinding): refused, as MCP asks.
        if origin.to_str().ok() != Some(gw.0.origin.as_str()) {
            let body = json!({"error": "forbidden", "message": "requests from this origin are not accepted"});
            return (StatusCode::FORBIDDEN, Json(body)).into_response();
        }
    }
    let resource = auth::resource_id(&gw.0.public_url, &name);
    let (scheme, token) = match authorization(&headers) {
        Some((scheme, t)) if !t.is_empty() => (scheme, t),
        _ => return unauthorized(&gw, &name, &AuthError::Missing),
    };
    let verified = match gw.0.verifier.verify(token, &resource, now()).await {
        Ok(verified) => verified,
        Err(e) => return unauthorized(&gw, &name, &e),
    };
    let proof = match check_proof(&gw, &headers, scheme, &verified.claims, token, &resource) {
        Ok(proof) => proof.map(|proof| DpopEvidence { proof, htu: resource.clone() }),
        Err(e) => return unauthorized(&gw, &name, &e),
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(StatusCode::BAD_REQUEST, Value::Null, rpc::PARSE_ERROR, format!("not JSON: {e}"), None)
        }
    };
    let Value::Object(mut message) = message else {
        let why = "the body must be one JSON-RPC message (batches are not supported)";
        return rpc_error(StatusCode::BAD_REQUEST, Value::Null, rpc::INVALID_REQUEST, why, None);
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message.get("method").and_then(Value::as_str).map(str::to_owned);
    let approval = take_approval(&mut message);
    let forwarded = match approval {
        None => body,
        Some(_) => match serde_json::to_vec(&message) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => return rpc_error(StatusCode::OK, id, rpc::INTERNAL, format!("re-encoding failed: {e}"), None),
        },
    };
    let presented = Presented { verified: &verified, token, proof: proof.as_ref() };
    if let Err(refusal) = gw.decide(&upstream, &headers, &message, presented, approval).await {
        return refusal.answer(id);
    }
    let response = match gw.0.http.post(&upstream.url).headers(upstream_headers(&headers)).body(forwarded).send().await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(upstream = %name, error = %e, "upstream unreachable");
            let why = format!("upstream `{name}` could not be reached");
            return rpc_error(StatusCode::BAD_GATEWAY, id, rpc::INTERNAL, why, None);
        }
    };
    if method.as_deref() == Some("tools/list") && response.status().is_success() {
        return gw.filtered_tools_list(&name, &verified.claims, &id, response).await;
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = client_headers(response.headers());
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    out.headers_mut().extend(headers);
    out
}

impl Gateway {
    /// Decides one message: `Ok` to forward it, else why it is refused.
    async fn decide(
        &self,
        upstream: &Upstream,
        headers: &HeaderMap,
        message: &Map<String, Value>,
        presented: Presented<'_>,
        approval: Option<Option<String>>,
    ) -> Result<(), Refusal> {
        let Presented { verified, token, proof } = presented;
        let claims = &verified.claims;
        let approval = match approval {
            Some(None) => {
                return Err(Refusal::Mapping(format!("`_meta.{META_APPROVAL_ID}` must be a string")));
            }
            Some(Some(a)) => Some(a),
            None => None,
        };
        let tool = (message.get("method").and_then(Value::as_str) == Some("tools/call"))
            .then(|| message.get("params").and_then(|p| p.get("name")).and_then(Value::as_str))
            .flatten();
        if let Some(tool) = tool {
            if let Tool::Broken(why) = self.tool(&upstream.name, tool, headers).await.map_err(Refusal::Unavailable)? {
                return Err(Refusal::Mapping(format!("COAZ mapping error: tool `{tool}`: {why}")));
            }
        }
        let declared = |t: &str| match self.known(&upstream.name, t) {
            Some(Tool::Declared(m)) => Some(m),
            _ => None,
        };
        let (call, evaluations) = match mapping::plan(&upstream.name, message, declared, &verified.json, &claims.sub) {
            Ok(Plan::PassThrough) => return Ok(()),
            Ok(Plan::Decide { call, evaluations }) => (call, evaluations),
            Err(e @ MappingError::UnknownMethod(_)) => return Err(Refusal::Unknown(e.to_string())),
            Err(e) => return Err(Refusal::Mapping(e.to_string())),
        };
        let mcp = serde_json::to_value(&call).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if proof.is_some() && evaluations.len() > 1 {
            // The PDP accepts each proof once, and one request carries one proof.
            return Err(Refusal::Mapping(
                "a DPoP-bound warrant cannot make a call that its declared mapping decides in several evaluations"
                    .into(),
            ));
        }
        for evaluation in evaluations {
            let request = evaluation_request(evaluation, claims, token, proof, &mcp, approval.as_deref());
            let answer = self.0.pdp.evaluate(&request).await.map_err(|e| {
                tracing::warn!(error = %e, "the PDP failed; refusing");
                Refusal::Unavailable(e.to_string())
            })?;
            if !answer.decision {
                return Err(Refusal::Denied(answer.context.unwrap_or_default()));
            }
        }
        Ok(())
    }

    fn known(&self, upstream: &str, tool: &str) -> Option<Tool> {
        let catalogue = self.0.catalogue.read().unwrap_or_else(|e| e.into_inner());
        catalogue.get(upstream)?.get(tool).cloned()
    }

    /// What is known of `tool`, learning the upstream's catalogue first when the tool is
    /// not in it. An error when the catalogue cannot be read (the call is refused).
    async fn tool(&self, upstream: &str, tool: &str, headers: &HeaderMap) -> Result<Tool, String> {
        if let Some(known) = self.known(upstream, tool) {
            return Ok(known);
        }
        self.learn_catalogue(upstream, headers).await?;
        Ok(self.known(upstream, tool).unwrap_or(Tool::Default))
    }

    /// Reads the upstream's `tools/list` (every page) with the client's MCP headers.
    async fn learn_catalogue(&self, upstream: &str, headers: &HeaderMap) -> Result<(), String> {
        let url = self.0.upstreams.get(upstream).map(|u| u.url.clone()).ok_or("no such upstream")?;
        let failed = |why: String| format!("the tool catalogue of `{upstream}` could not be read: {why}");
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let id = Value::from(format!("warrant-gateway-tools-{page}"));
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let mut request_headers = upstream_headers(headers);
            request_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            request_headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
            let response = self
                .0
                .http
                .post(&url)
                .headers(request_headers)
                .json(&body)
                .send()
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("it answered {}", response.status())));
            }
            let is_sse = is_event_stream(response.headers());
            let bytes = read_capped(response).await.map_err(failed)?;
            let result = find_result(&bytes, is_sse, &id).ok_or_else(|| failed("no tools/list result".into()))?;
            self.learn(upstream, &result);
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Records the tools of a `tools/list` result.
    fn learn(&self, upstream: &str, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else { return };
        let mut catalogue = self.0.catalogue.write().unwrap_or_else(|e| e.into_inner());
        let known = catalogue.entry(upstream.to_owned()).or_default();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            let entry = match tool.get("inputSchema").and_then(|s| s.get(MAPPING_KEY)) {
                None => Tool::Default,
                Some(m) => match DeclaredMapping::parse(m) {
                    Ok(m) => Tool::Declared(Arc::new(m)),
                    Err(e) => {
                        tracing::warn!(upstream, tool = name, error = %e, "malformed declared mapping; the tool is hidden");
                        Tool::Broken(e.to_string())
                    }
                },
            };
            known.insert(name.to_owned(), entry);
        }
    }

    /// Forwards a `tools/list` answer with only the tools the warrant may call, learning
    /// their mappings on the way.
    async fn filtered_tools_list(
        &self,
        upstream: &str,
        claims: &WarrantClaims,
        id: &Value,
        response: reqwest::Response,
    ) -> Response {
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = client_headers(response.headers());
        let is_sse = is_event_stream(response.headers());
        let bytes = match read_capped(response).await {
            Ok(b) => b,
            Err(why) => return rpc_error(StatusCode::BAD_GATEWAY, id.clone(), rpc::INTERNAL, why, None),
        };
        let scope = claims.scope().unwrap_or_else(|_| warrant_core::Scope::empty());
        let rewrite = |message: &mut Map<String, Value>| {
            if !rpc::answers(message, id) {
                return;
            }
            let Some(result) = message.get_mut("result") else { return };
            self.learn(upstream, result);
            if let Some(Value::Array(tools)) = result.get_mut("tools") {
                tools.retain(|tool| {
                    let Some(name) = tool.get("name").and_then(Value::as_str) else { return false };
                    match self.known(upstream, name) {
                        Some(Tool::Declared(m)) => mapping::tool_visible(&scope, upstream, name, Some(&m)),
                        Some(Tool::Default) | None => mapping::tool_visible(&scope, upstream, name, None),
                        Some(Tool::Broken(_)) => false,
                    }
                });
            }
        };
        let body = if is_sse {
            let text = String::from_utf8_lossy(&bytes);
            let mut events = rpc::parse_sse(&text);
            for event in &mut events {
                let Some(data) = &event.data else { continue };
                let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(data) else { continue };
                rewrite(&mut message);
                event.data = serde_json::to_string(&message).ok();
            }
            rpc::write_sse(&events).into_bytes()
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(mut message)) => {
                    rewrite(&mut message);
                    serde_json::to_vec(&message).unwrap_or_default()
                }
                _ => bytes.to_vec(),
            }
        };
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        out.headers_mut().extend(headers);
        out
    }
}

/// Why a message is not forwarded; each is a JSON-RPC error (HTTP 200) answering it.
#[derive(Debug)]
enum Refusal {
    /// The PDP did not permit it (`-32001`); for `pending`, with the approval to retry with.
    Denied(ResponseContext),
    /// A method the gateway cannot map (`-32001`).
    Unknown(String),
    /// A mapping error (`-32602`).
    Mapping(String),
    /// The PDP or the upstream's catalogue could not be reached (`-32603`); the detail
    /// is for the log.
    Unavailable(String),
}

impl Refusal {
    fn answer(self, id: Value) -> Response {
        let (code, message, data) = match self {
            Refusal::Denied(context) => {
                let reason = context.reasons.first().cloned().unwrap_or_else(|| "not permitted".into());
                let pending = context.outcome.as_deref() == Some("pending") && context.approval_id.is_some();
                let message = if pending {
                    format!(
                        "Approval required: {reason}; retry with `params._meta[\"{META_APPROVAL_ID}\"]` once it is approved"
                    )
                } else {
                    format!("Access denied: {reason}")
                };
                let data = Denial::from(context);
                (rpc::DENIED, message, serde_json::to_value(data).ok())
            }
            Refusal::Unknown(why) => (rpc::DENIED, format!("Access denied: {why}"), None),
            Refusal::Mapping(why) => (rpc::INVALID_PARAMS, why, None),
            Refusal::Unavailable(why) => {
                tracing::warn!(error = %why, "refused: a decision could not be made");
                (rpc::INTERNAL, "Authorization service unavailable".to_owned(), None)
            }
        };
        rpc_error(StatusCode::OK, id, code, message, data)
    }
}

/// The `data` of a denial: the decision, and for `pending` the approval to retry with.
#[derive(Debug, Serialize)]
struct Denial {
    decision_id: Option<String>,
    outcome: String,
    code: Option<String>,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll: Option<String>,
}

impl From<ResponseContext> for Denial {
    fn from(c: ResponseContext) -> Self {
        Denial {
            decision_id: c.decision_id,
            outcome: c.outcome.unwrap_or_else(|| "deny".into()),
            code: c.code,
            reasons: c.reasons,
            approval_id: c.approval_id,
            expires_at: c.expires_at,
            poll: c.poll,
        }
    }
}

/// The warrant of a request as the gateway checked it: verified, the token itself, and
/// the DPoP proof that came with it when it is bound.
#[derive(Clone, Copy)]
struct Presented<'a> {
    verified: &'a Verified,
    token: &'a str,
    proof: Option<&'a DpopEvidence>,
}

/// A bound warrant's proof, as the PDP checks it again: made for `POST` on `htu`.
#[derive(Debug, Clone)]
struct DpopEvidence {
    proof: String,
    htu: String,
}

fn evaluation_request(
    evaluation: Evaluation,
    claims: &WarrantClaims,
    token: &str,
    proof: Option<&DpopEvidence>,
    mcp: &Value,
    approval: Option<&str>,
) -> EvaluationRequest {
    let mut subject_properties = Map::new();
    subject_properties.insert(SUBJECT_TOKEN.into(), Value::from(token));
    if let Some(p) = proof {
        let dpop = json!({"proof": p.proof, "htm": "POST", "htu": p.htu});
        subject_properties.insert(warrant_core::authzen::SUBJECT_DPOP.into(), dpop);
    }
    let mut action_properties = Map::new();
    action_properties.insert(ACTION_MCP.into(), mcp.clone());
    let mut context = evaluation.context;
    if let Some(approval) = approval {
        context.insert(CONTEXT_APPROVAL_ID.into(), Value::from(approval));
    }
    EvaluationRequest {
        subject: Subject { kind: "agent".into(), id: claims.sub.clone(), properties: subject_properties },
        action: Action { name: evaluation.action, properties: action_properties },
        resource: evaluation.resource,
        context,
    }
}

fn is_event_stream(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.try_next().await.map_err(|e| format!("reading the upstream's answer: {e}"))? {
        if out.len() + chunk.len() > MAX_REWRITTEN {
            return Err(format!("the upstream's answer is over {MAX_REWRITTEN} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The `result` of the response to `id` in an upstream answer.
fn find_result(bytes: &[u8], is_sse: bool, id: &Value) -> Option<Value> {
    let messages: Vec<Value> = if is_sse {
        let text = String::from_utf8_lossy(bytes);
        rpc::parse_sse(&text).into_iter().filter_map(|e| serde_json::from_str(e.data.as_deref()?).ok()).collect()
    } else {
        vec![serde_json::from_slice(bytes).ok()?]
    };
    messages.into_iter().find_map(|m| match m {
        Value::Object(mut m) if rpc::answers(&m, id) => m.remove("result"),
        _ => None,
    })
}
