//! The AuthZEN Authorization API 1.0 adapter: an access evaluation (or a batch of them)
//! mapped onto the decision pipeline, and its answer mapped back. The PDP's HTTP
//! endpoints (`/access/v1/*`) and the MCP gateway call this same adapter, so every
//! evaluation about an agent is exactly a [`Decisions::authorize`] decision: verified,
//! admitted (revocation, chain, scope), assessed, evaluated by Cedar, settled (budgets,
//! approvals) and recorded before it is answered.
//!
//! The mapping: `action.name` is the Warrant action; the resource `{type, id}` is the
//! resource path `<type>/<id>`; `resource.properties` are the resource attributes and
//! `context` (less Warrant's reserved keys) the decision context, both untrusted caller
//! input. The agent's warrant is named either by the token itself
//! (`subject.properties.token`) or, for a PEP that validated the JWT already (the COAZ
//! shape), by `subject.id` = its `sub`, `context.agent` = its `client_id` and
//! `context.warrant_id` = its `jti`, checked against the claims Warrant recorded when it
//! issued it. A stated subject or agent that does not match the warrant is an error,
//! never an allow. A subject with neither is a plain subject ([`plain_subject`]).

use std::sync::Arc;

use serde_json::{Map, Value};
use warrant_core::authzen::{
    EvaluationError as EntryError, EvaluationRequest, EvaluationResponse, EvaluationsRequest, EvaluationsResponse,
    EvaluationsSemantic, McpCall, MissingElement, PdpMetadata, ResponseContext, ACTION_MCP, CONTEXT_AGENT,
    CONTEXT_APPROVAL_ID, CONTEXT_WARRANT_ID, SUBJECT_DPOP, SUBJECT_TOKEN,
};
use warrant_core::decision::Outcome;
use warrant_core::WarrantId;

use crate::approvals::Approvals;
use crate::clock::Clock;
use crate::decisions::{Decisions, VerifiedWarrant};
use crate::dpop::PresentedProof;
use crate::error::{Classify, ErrorKind};
use crate::peps::Pep;
use crate::request::{AuthorizeRequest, Decision, SubjectRequest, Via, MAX_BATCH};

/// Where the PDP answers one evaluation.
pub const EVALUATION_PATH: &str = "/access/v1/evaluation";
/// Where the PDP answers a batch of evaluations.
pub const EVALUATIONS_PATH: &str = "/access/v1/evaluations";

/// The name decisions record for evaluations asked with the admin token.
pub const ADMIN_ASKER: &str = "admin";

/// Who asks: an enforcement point's credential, or the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    /// The name its decisions record (the PEP credential's name, or `admin`).
    pub name: String,
    /// Whether it may ask about plain subjects.
    pub plain_subjects: bool,
}

impl Asker {
    /// The admin token: may ask about anything.
    pub fn admin() -> Asker {
        Asker { name: ADMIN_ASKER.to_owned(), plain_subjects: true }
    }
}

impl From<&Pep> for Asker {
    fn from(pep: &Pep) -> Self {
        Asker { name: pep.name.clone(), plain_subjects: pep.plain_subjects }
    }
}

/// Why an evaluation could not be evaluated (on its own: an HTTP error; in a batch: that
/// entry's `decision: false` with `context.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvaluationError {
    /// The request lacks its subject, action or resource.
    #[error(transparent)]
    Missing(#[from] MissingElement),
    /// More entries than one batch may hold.
    #[error("a batch holds at most {MAX_BATCH} evaluations, this one {0}")]
    TooMany(usize),
    /// A Warrant key of the request has the wrong shape.
    #[error("{0}")]
    Invalid(String),
    /// The stated subject or agent is not the warrant's.
    #[error("{0}")]
    Mismatch(String),
    /// The credential may not ask about plain subjects.
    #[error("this credential may not ask about plain subjects")]
    PlainSubjectsForbidden,
}

impl Classify for EvaluationError {
    fn kind(&self) -> ErrorKind {
        match self {
            EvaluationError::PlainSubjectsForbidden => ErrorKind::Forbidden,
            _ => ErrorKind::Invalid,
        }
    }
}

impl EvaluationError {
    /// The HTTP status this error has on its own (and in a batch entry's `context.error`).
    pub fn status(&self) -> u16 {
        match self.kind() {
            ErrorKind::Forbidden => 403,
            _ => 400,
        }
    }

    /// A batch entry's answer for this error: not permitted, with the reason.
    pub fn entry(&self) -> EvaluationResponse {
        EvaluationResponse {
            decision: false,
            context: Some(ResponseContext {
                error: Some(EntryError { status: self.status(), message: self.to_string() }),
                ..ResponseContext::default()
            }),
        }
    }
}

/// An evaluation, mapped.
enum Mapped {
    /// About an agent's warrant: a decision request for the pipeline.
    Agent(Box<AuthorizeRequest>),
    /// About a plain subject (no warrant): a request for the policies for plain subjects.
    Plain(Box<SubjectRequest>),
}

/// The AuthZEN adapter (`engine.authzen()`).
pub struct Authzen {
    clock: Arc<dyn Clock>,
    issuer: String,
    decisions: Arc<Decisions>,
    approvals: Arc<Approvals>,
}

impl std::fmt::Debug for Authzen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authzen").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// A reserved context key's value, which must be a string when present.
fn take_string(context: &mut Map<String, Value>, key: &str) -> Result<Option<String>, EvaluationError> {
    match context.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EvaluationError::Invalid(format!("`context.{key}` must be a string"))),
    }
}

/// A JSON object as the pipeline takes it (none when empty).
fn object(map: Map<String, Value>) -> Option<Value> {
    (!map.is_empty()).then_some(Value::Object(map))
}

impl Authzen {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        issuer: String,
        decisions: Arc<Decisions>,
        approvals: Arc<Approvals>,
    ) -> Self {
        Authzen { clock, issuer, decisions, approvals }
    }

    /// The PDP's metadata (`GET /.well-known/authzen-configuration`), with absolute URLs
    /// under the issuer.
    pub fn metadata(&self) -> PdpMetadata {
        let base = self.issuer.trim_end_matches('/');
        PdpMetadata {
            policy_decision_point: base.to_owned(),
            access_evaluation_endpoint: format!("{base}{EVALUATION_PATH}"),
            access_evaluations_endpoint: Some(format!("{base}{EVALUATIONS_PATH}")),
        }
    }

    /// One evaluation (`POST /access/v1/evaluation`). A deny or a pending decision is
    /// `decision: false`; only a request that cannot be evaluated is an error.
    pub async fn evaluate(
        &self,
        asker: &Asker,
        req: &EvaluationRequest,
    ) -> Result<EvaluationResponse, EvaluationError> {
        match self.map(asker, req).await? {
            Mapped::Agent(areq) => Ok(self.respond(self.decisions.authorize(&areq).await).await),
            Mapped::Plain(sreq) => Ok(self.respond(self.decisions.authorize_subject(&sreq).await).await),
        }
    }

    /// A batch (`POST /access/v1/evaluations`): the defaults applied to each entry,
    /// answered in request order. `execute_all` decides every entry, and the agents'
    /// decisions are recorded in one group commit; the other semantics decide in order
    /// and stop after the first deny (or permit), so nothing after it is decided or
    /// recorded. An entry that cannot be evaluated is `decision: false` with
    /// `context.error`, and counts as a deny for the semantic.
    pub async fn evaluations(
        &self,
        asker: &Asker,
        req: &EvaluationsRequest,
    ) -> Result<EvaluationsResponse, EvaluationError> {
        let all = req.expand()?;
        if all.len() > MAX_BATCH {
            return Err(EvaluationError::TooMany(all.len()));
        }
        let semantic = req.semantic();
        if semantic != EvaluationsSemantic::ExecuteAll {
            let mut out = Vec::with_capacity(all.len());
            for one in &all {
                let answer = self.evaluate(asker, one).await.unwrap_or_else(|e| e.entry());
                let stop = semantic.stops_after(answer.decision);
                out.push(answer);
                if stop {
                    break;
                }
            }
            return Ok(EvaluationsResponse { evaluations: out });
        }
        let mut mapped = Vec::with_capacity(all.len());
        for one in &all {
            mapped.push(self.map(asker, one).await);
        }
        let agents: Vec<AuthorizeRequest> = mapped
            .iter()
            .filter_map(|m| match m {
                Ok(Mapped::Agent(areq)) => Some(areq.as_ref().clone()),
                _ => None,
            })
            .collect();
        let mut decided = self.decisions.authorize_batch(&agents).await.into_iter();
        let mut out = Vec::with_capacity(all.len());
        for m in mapped {
            let answer = match m {
                Ok(Mapped::Agent(_)) => match decided.next() {
                    Some(d) => self.respond(d).await,
                    None => EvaluationError::Invalid("the entry was not decided".into()).entry(),
                },
                Ok(Mapped::Plain(sreq)) => self.respond(self.decisions.authorize_subject(&sreq).await).await,
                Err(e) => e.entry(),
            };
            out.push(answer);
        }
        Ok(EvaluationsResponse { evaluations: out })
    }

    /// Maps an evaluation to a decision request, checking any stated subject and agent
    /// against the warrant it names.
    async fn map(&self, asker: &Asker, req: &EvaluationRequest) -> Result<Mapped, EvaluationError> {
        let token = match req.subject.properties.get(SUBJECT_TOKEN) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => {
                return Err(EvaluationError::Invalid(format!("`subject.properties.{SUBJECT_TOKEN}` must be a string")))
            }
        };
        let proof = dpop_evidence(req.subject.properties.get(SUBJECT_DPOP))?;
        let mut context = req.context.clone();
        let agent = take_string(&mut context, CONTEXT_AGENT)?;
        let warrant_id = take_string(&mut context, CONTEXT_WARRANT_ID)?;
        let approval_id = take_string(&mut context, CONTEXT_APPROVAL_ID)?;
        let mcp = match req.action.properties.get(ACTION_MCP) {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<McpCall>(v.clone()).map_err(|e| {
                EvaluationError::Invalid(format!("`action.properties.{ACTION_MCP}` is not an MCP call: {e}"))
            })?),
        };
        let recorded = match &warrant_id {
            Some(jti) => Some(WarrantId::parse(jti).map_err(|e| {
                EvaluationError::Invalid(format!("`context.{CONTEXT_WARRANT_ID}` is not a warrant id: {e}"))
            })?),
            None => None,
        };
        if token.is_none() && recorded.is_none() {
            if agent.is_some() {
                return Err(EvaluationError::Invalid(format!(
                    "`context.{CONTEXT_AGENT}` names an agent but no warrant: add `context.{CONTEXT_WARRANT_ID}` (or `subject.properties.{SUBJECT_TOKEN}`)"
                )));
            }
            // Only a credential allowed to ask about plain subjects may.
            if !asker.plain_subjects {
                return Err(EvaluationError::PlainSubjectsForbidden);
            }
            return Ok(Mapped::Plain(Box::new(SubjectRequest {
                subject: req.subject.clone(),
                action: req.action.name.clone(),
                resource: format!("{}/{}", req.resource.kind, req.resource.id),
                resource_attrs: object(req.resource.properties.clone()).map(Arc::new),
                context: object(context).map(Arc::new),
                via: Some(Via { pep: asker.name.clone(), mcp }),
            })));
        }
        if token.is_none() && agent.is_none() {
            return Err(EvaluationError::Invalid(format!(
                "`context.{CONTEXT_WARRANT_ID}` needs `context.{CONTEXT_AGENT}`, the warrant's `client_id`"
            )));
        }
        // The warrant's claims, to check what the request states against them. A
        // warrant that does not verify is left to the pipeline, which denies and records
        // it; this look-ahead notes nothing and fills the cache the pipeline reads.
        let now = self.clock.now();
        let warrant = match (&token, &recorded) {
            (Some(t), _) => self.decisions.verify_noting(t, now, false).ok(),
            (None, Some(jti)) => self.decisions.verify_recorded(jti, now).await.ok(),
            (None, None) => None,
        };
        if let Some(warrant) = &warrant {
            // Beside a token, a stated `warrant_id` must be that token's `jti`.
            let stated_jti = recorded.as_ref().filter(|_| token.is_some());
            check_stated(warrant, &req.subject.id, agent.as_deref(), stated_jti)?;
        }
        // A presented token is what the pipeline verifies; without one, the recorded
        // warrant the `jti` names.
        let (token, recorded) = match token {
            Some(token) => (token, None),
            None => (String::new(), recorded),
        };
        Ok(Mapped::Agent(Box::new(AuthorizeRequest {
            token,
            recorded,
            action: req.action.name.clone(),
            resource: format!("{}/{}", req.resource.kind, req.resource.id),
            resource_attrs: object(req.resource.properties.clone()).map(Arc::new),
            context: object(context).map(Arc::new),
            approval_id,
            via: Some(Via { pep: asker.name.clone(), mcp }),
            proof,
        })))
    }

    /// The AuthZEN answer for a decision.
    async fn respond(&self, d: Decision) -> EvaluationResponse {
        let mut context = ResponseContext {
            decision_id: (!d.decision_id.is_empty()).then(|| d.decision_id.clone()),
            outcome: Some(d.outcome.as_str().to_owned()),
            code: Some(d.code.as_str().to_owned()),
            reasons: d.reasons.clone(),
            approval_id: d.approval_id.clone(),
            ..ResponseContext::default()
        };
        if d.outcome == Outcome::Pending {
            if let Some(id) = &d.approval_id {
                context.expires_at = self.approvals.get(id).await.ok().map(|a| a.expires_at.0);
                context.poll = Some(format!("{}/v1/approvals/{id}", self.issuer.trim_end_matches('/')));
            }
        }
        EvaluationResponse { decision: d.outcome == Outcome::Allow, context: Some(context) }
    }
}

/// Checks what the request states against the warrant: `subject.id` is its `sub`,
/// `context.agent` (when stated) its `client_id`, `context.warrant_id` (when stated
/// beside a token) its `jti`. The warrant's own values are not echoed.
fn check_stated(
    warrant: &VerifiedWarrant,
    subject: &str,
    agent: Option<&str>,
    jti: Option<&WarrantId>,
) -> Result<(), EvaluationError> {
    let claims = &warrant.claims;
    if subject != claims.sub {
        return Err(EvaluationError::Mismatch("`subject.id` is not the warrant's subject (its `sub` claim)".into()));
    }
    if agent.is_some_and(|a| a != claims.client_id.as_str()) {
        return Err(EvaluationError::Mismatch(format!(
            "`context.{CONTEXT_AGENT}` is not the warrant's agent (its `client_id` claim)"
        )));
    }
    if jti.is_some_and(|j| *j != claims.jti) {
        return Err(EvaluationError::Mismatch(format!(
            "`context.{CONTEXT_WARRANT_ID}` is not the presented warrant's `jti`"
        )));
    }
    Ok(())
}

/// The DPoP proof an enforcement point forwards (`subject.properties.dpop`): the proof
/// its client sent, and the method and URL of the request it came with.
fn dpop_evidence(value: Option<&Value>) -> Result<Option<PresentedProof>, EvaluationError> {
    let bad = || {
        EvaluationError::Invalid(format!(
            "`subject.properties.{SUBJECT_DPOP}` must be an object with the strings `proof`, `htm` and `htu`"
        ))
    };
    let fields = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(bad()),
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(bad);
    Ok(Some(PresentedProof { proof: text("proof")?, htm: text("htm")?, htu: text("htu")? }))
}
