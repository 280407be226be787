//! The decision path (`docs/architecture.md`), every call, no database read:
//! parse -> verify the warrant (cached by token digest until it expires) -> revocation
//! -> agent, owner and human status -> scope covers -> guardrails' assessment (anomaly
//! signals, trust; quarantine below the threshold) -> Cedar (with `trust` and `anomaly`)
//! -> `@quarantine` / `@approval` forbids -> rate limits -> budgets -> approval used ->
//! audit record (with the budget charges, in one transaction) -> answer.
//!
//! Every failure on the way is a deny with a reason (fail closed): an invalid
//! token, an unknown key, a policy error, an audit write failure. Nothing fails open.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use warrant_core::guard::budget::Charge;
use warrant_core::guard::signal::Signal;
use warrant_core::guard::trust::percent;
use warrant_core::permission::shown;
use warrant_core::{Agent, AgentId, Permission, Scope, UnixTime, WarrantClaims};
use warrant_policy::DecisionInput;
use warrant_store::RevocationKind;
use warrant_token::warrant::verify_warrant;

use crate::govern::replay::Recorded;
use crate::govern::shadow::{peek, Peek, ShadowCause};
use crate::quarantine::quarantine_reason;
use crate::Engine;

/// The most entries the verified-warrant cache holds before it is swept.
pub const WARRANT_CACHE_MAX: usize = 100_000;
/// The most requests one batch may hold.
pub const MAX_BATCH: usize = 100;
/// The longest resource path accepted, in bytes.
pub const MAX_RESOURCE: usize = 1024;

/// A request to act.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    /// The warrant.
    pub token: String,
    /// The concrete action, e.g. `crm.read`.
    pub action: String,
    /// The concrete resource path, e.g. `customers/42`.
    pub resource: String,
    /// Attributes of the resource (a JSON object).
    pub resource_attrs: Option<Value>,
    /// Runtime telemetry (a JSON object): `estimated_cost`, `rows`, …
    pub context: Option<Value>,
    /// The approval this retry presents (`apr_…`), after a `pending` answer.
    pub approval_id: Option<String>,
}

/// `allow`, `deny` or `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The action may proceed.
    Allow,
    /// It may not.
    Deny,
    /// It may proceed once a human approves it: retry with the approval id.
    Pending,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Pending => "pending",
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allow, deny or pending.
    pub outcome: Outcome,
    /// The decision's id (its audit record), `dec_…`.
    pub decision_id: String,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The policies that decided (empty when the decision was made before Cedar).
    pub policies: Vec<String>,
    /// The policy set version that decided, when Cedar ran.
    pub policy_version: Option<i64>,
    /// The warrant's claims, when it verified.
    pub claims: Option<Arc<WarrantClaims>>,
    /// A short machine-readable reason code (`scope`, `revoked`, `policy`, …).
    pub code: &'static str,
    /// For `pending`: the approval to retry with. For an approved retry: the one used.
    pub approval_id: Option<String>,
    /// For a rate-limit deny: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// The acting agent's trust score when the guardrails ran.
    pub trust: Option<f64>,
    /// The anomaly signals the request raised.
    pub signals: Vec<Signal>,
    /// What the request spent from budgets (recorded with the decision).
    pub charges: Vec<Charge>,
    /// Set when this decision quarantined the agent: why.
    pub quarantined: Option<String>,
    /// An anonymous deny counted into its window's aggregate record instead of getting
    /// one of its own (see [`crate::anonymous`]); its id is then `dec_aggregated`.
    pub aggregated: bool,
}

impl Decision {
    /// A deny with a reason, before it is recorded.
    pub(crate) fn deny(code: &'static str, reason: impl Into<String>, claims: Option<&Arc<WarrantClaims>>) -> Decision {
        Decision {
            outcome: Outcome::Deny,
            decision_id: String::new(),
            reasons: vec![reason.into()],
            policies: Vec::new(),
            policy_version: None,
            claims: claims.cloned(),
            code,
            approval_id: None,
            retry_after: None,
            trust: None,
            signals: Vec::new(),
            charges: Vec::new(),
            quarantined: None,
            aggregated: false,
        }
    }
}

/// The most of one caller-supplied JSON value (`resource_attrs`, `context`) an audit
/// record keeps, in bytes of compact JSON. A larger value is kept as its size and
/// SHA-256, so the record still binds it without storing it.
pub const MAX_AUDITED_INPUT: usize = 2048;

/// `value` as an audit record keeps it: whole when small, else its size and digest.
fn audited_input(value: &Value) -> Value {
    let text = value.to_string();
    if text.len() <= MAX_AUDITED_INPUT {
        return value.clone();
    }
    serde_json::json!({
        "truncated": true,
        "bytes": text.len(),
        "sha256": hex::encode(Sha256::digest(text.as_bytes())),
    })
}

/// A caller-supplied string as an audit record keeps it: escaped, and cut to
/// `MAX_RESOURCE` bytes' worth of characters (a request this long was refused anyway).
fn audited_text(text: &str) -> String {
    if text.len() <= MAX_RESOURCE && !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_RESOURCE / 4).flat_map(char::escape_debug).collect();
    out.push('…');
    out
}

/// A verified warrant, as cached.
#[derive(Debug)]
pub struct VerifiedWarrant {
    /// Its claims.
    pub claims: Arc<WarrantClaims>,
    /// Its parsed scope.
    pub scope: Scope,
    /// Its chain of agents, root first.
    pub chain: Vec<warrant_core::AgentId>,
}

/// Verified warrants by SHA-256 of the token, until they expire.
#[derive(Debug, Default)]
pub struct WarrantCache {
    entries: RwLock<HashMap<[u8; 32], Arc<VerifiedWarrant>>>,
}

impl WarrantCache {
    fn get(&self, digest: &[u8; 32], now: UnixTime) -> Option<Arc<VerifiedWarrant>> {
        let hit = self.entries.read().ok()?.get(digest).cloned()?;
        (hit.claims.exp > now).then_some(hit)
    }

    fn put(&self, digest: [u8; 32], warrant: Arc<VerifiedWarrant>, now: UnixTime) {
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= WARRANT_CACHE_MAX {
                map.retain(|_, w| w.claims.exp > now);
                if map.len() >= WARRANT_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(digest, warrant);
        }
    }

    /// How many warrants are cached.
    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A deny, before the decision is recorded.
type Refusal = Box<Decision>;

fn refuse(code: &'static str, reason: impl Into<String>, claims: Option<&Arc<WarrantClaims>>) -> Refusal {
    Box::new(Decision::deny(code, reason, claims))
}

/// Whether a verification failure means the token was not issued by Warrant (shadow
/// activity), as opposed to one of ours that expired or is not valid yet.
fn shadow_cause(e: &warrant_token::warrant::VerifyError) -> Option<ShadowCause> {
    use warrant_token::jws::JwsError;
    use warrant_token::warrant::VerifyError;
    match e {
        VerifyError::WrongIssuer(_) => Some(ShadowCause::ForeignIssuer),
        VerifyError::Jws(JwsError::UnknownKey) => Some(ShadowCause::UnknownKey),
        VerifyError::Jws(JwsError::BadSignature) => Some(ShadowCause::Forged),
        VerifyError::Jws(_) => Some(ShadowCause::NotAWarrant),
        _ => None,
    }
}

/// Checks that the request names one concrete action and one concrete resource in its
/// canonical form (see `warrant_core::permission`): a path that is not canonical is
/// refused, never normalised.
fn check_shape(req: &AuthorizeRequest) -> Result<(), String> {
    let action_ok = !req.action.contains(':') && Permission::parse(&req.action).is_ok_and(|p| p.is_concrete_action());
    if !action_ok {
        return Err(format!("`{}` is not a concrete action (dot-separated segments, no wildcard)", shown(&req.action)));
    }
    let concrete = || {
        format!(
            "`{}` is not a concrete resource path (non-empty segments separated by `/`, no `*`, at most {MAX_RESOURCE} bytes)",
            shown(&req.resource)
        )
    };
    if req.resource.len() > MAX_RESOURCE || req.resource.contains('*') {
        return Err(concrete());
    }
    match Permission::parse(&format!("x:{}", req.resource)) {
        Ok(_) => {}
        Err(warrant_core::PermissionError::NonCanonicalResource { why, .. }) => {
            return Err(format!("`{}` is not a canonical resource path: {why}", shown(&req.resource)));
        }
        Err(_) => return Err(concrete()),
    }
    for (name, value) in [("resource_attrs", &req.resource_attrs), ("context", &req.context)] {
        if !matches!(value, None | Some(Value::Null) | Some(Value::Object(_))) {
            return Err(format!("`{name}` must be a JSON object"));
        }
    }
    Ok(())
}

impl Engine {
    /// Whether `token` is a warrant of ours already verified and not expired (in the
    /// verified-warrant cache): a cheap look-up, with no verification and no side effect.
    pub fn knows_warrant(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.warrant_cache().get(&digest, self.now()).is_some()
    }

    /// Verifies a warrant, from the cache when it was verified before.
    fn verified(&self, token: &str, now: UnixTime) -> Result<Arc<VerifiedWarrant>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.warrant_cache().get(&digest, now) {
            return Ok(hit);
        }
        let ring = self.keys().ring().map_err(|e| refuse("internal", format!("keys unavailable: {e}"), None))?;
        let claims = verify_warrant(token, ring.as_ref(), &self.config().issuer, now).map_err(|e| {
            if let Some(cause) = shadow_cause(&e) {
                let seen = peek(token);
                // A key we do not know, on a token claiming another issuer: that issuer's.
                let foreign = seen.iss.as_deref().is_some_and(|iss| iss != self.config().issuer);
                let cause = if foreign { ShadowCause::ForeignIssuer } else { cause };
                self.governance().shadow().record(cause, seen, now);
            }
            refuse("invalid_token", format!("invalid warrant: {e}"), None)
        })?;
        let scope = claims.scope().map_err(|e| refuse("invalid_token", format!("invalid warrant scope: {e}"), None))?;
        let chain = claims.chain();
        let verified = Arc::new(VerifiedWarrant { claims: Arc::new(claims), scope, chain });
        self.warrant_cache().put(digest, Arc::clone(&verified), now);
        Ok(verified)
    }

    /// The checks before policy: the warrant, revocation, the chain's agents and owners,
    /// the human, and the scope. Returns the verified warrant and the acting agent.
    fn admit(&self, req: &AuthorizeRequest, now: UnixTime) -> Result<(Arc<VerifiedWarrant>, Arc<Agent>), Refusal> {
        let warrant = self.verified(&req.token, now)?;
        let claims = &warrant.claims;
        check_shape(req).map_err(|e| refuse("invalid_request", format!("invalid request: {e}"), Some(claims)))?;
        if let Some(why) = self.revocations().warrant(&claims.jti) {
            return Err(refuse("revoked", format!("warrant `{}` {why}", claims.jti), Some(claims)));
        }
        if self.revocations().task_ended(&claims.task.id) {
            return Err(refuse("task_ended", format!("task `{}` has ended", claims.task.id), Some(claims)));
        }
        let directory = self.directory();
        let mut acting = None;
        for id in &warrant.chain {
            let Some(agent) = directory.agent(id) else {
                let seen = Peek { iss: Some(claims.iss.clone()), client: Some(id.to_string()), kid: None };
                self.governance().shadow().record(ShadowCause::UnregisteredAgent, seen, now);
                return Err(refuse("agent", format!("agent `{id}` is not registered"), Some(claims)));
            };
            agent.usable_at(now).map_err(|why| refuse("agent", format!("agent `{id}` {why}"), Some(claims)))?;
            if !directory.human(&agent.owner).is_some_and(|h| h.is_active()) {
                return Err(refuse(
                    "owner",
                    format!("the owner `{}` of agent `{id}` is disabled", agent.owner),
                    Some(claims),
                ));
            }
            acting = Some(agent);
        }
        let Some(agent) = acting else {
            return Err(refuse("invalid_token", "the warrant names no agent", Some(claims)));
        };
        if !directory.human(claims.human()).is_some_and(|h| h.is_active()) {
            return Err(refuse("human", format!("human `{}` is disabled", claims.human()), Some(claims)));
        }
        if !warrant.scope.allows(&req.action, &req.resource) {
            return Err(refuse(
                "scope",
                format!("the warrant's scope `{}` does not cover `{}` on `{}`", claims.scope, req.action, req.resource),
                Some(claims),
            ));
        }
        Ok((warrant, agent))
    }

    /// The whole decision, before its audit record.
    async fn decide(&self, req: &AuthorizeRequest, now: UnixTime) -> Decision {
        let decision = self.decide_unrecorded(req, now).await;
        if let Some(claims) = decision.claims.as_ref().filter(|_| decision.code != "agent") {
            let allowed = (decision.outcome == Outcome::Allow).then_some((req.action.as_str(), req.resource.as_str()));
            self.governance().decided(&claims.client_id, allowed, now);
        }
        decision
    }

    /// The decision, before governance notes the agent's use.
    async fn decide_unrecorded(&self, req: &AuthorizeRequest, now: UnixTime) -> Decision {
        match self.admit(req, now) {
            Ok((warrant, agent)) => self.judge(req, &warrant, &agent, now).await,
            Err(mut refusal) => {
                // Asking for what the warrant does not cover is probing, like a policy deny.
                if let (Some(claims), "scope") = (refusal.claims.clone(), refusal.code) {
                    self.after_deny(&mut refusal, &claims.client_id, req, now).await;
                }
                *refusal
            }
        }
    }

    /// Guardrails and policy, for a request whose warrant and scope are in order.
    async fn judge(
        &self,
        req: &AuthorizeRequest,
        warrant: &VerifiedWarrant,
        agent: &Arc<Agent>,
        now: UnixTime,
    ) -> Decision {
        let claims = &warrant.claims;
        let guard = self.guard();
        let Some(policies) = self.policies().current() else {
            return Decision::deny("policy", "the policy set is unavailable", Some(claims));
        };
        let presented = match &req.approval_id {
            None => None,
            Some(id) => match self.presented_approval(id, req, claims, now).await {
                Ok(used) => Some(used),
                Err(reason) => return Decision::deny("approval", reason, Some(claims)),
            },
        };
        let assessment = guard.assess(&agent.id, &req.action, &req.resource, now);
        self.publish_signals(&agent.id, &assessment.signals, now);
        if guard.below_threshold(assessment.trust) {
            let mut d =
                Decision::deny("quarantine", "the agent's trust fell below the quarantine threshold", Some(claims));
            d.trust = Some(assessment.trust);
            d.signals = assessment.signals;
            let why = quarantine_reason(assessment.trust, &d.signals);
            self.quarantine(&mut d, &agent.id, why, now).await;
            return d;
        }
        let input = DecisionInput {
            agent,
            claims,
            action: &req.action,
            resource: &req.resource,
            resource_attrs: req.resource_attrs.as_ref(),
            telemetry: req.context.as_ref(),
            now,
            trust: percent(assessment.trust),
            anomaly: &assessment.kinds,
            approved: presented.is_some(),
        };
        if self.governance().history().enabled() && self.governance().config().enabled {
            self.governance().history().record(Recorded {
                agent: Arc::clone(agent),
                claims: Arc::clone(claims),
                action: req.action.clone(),
                resource: req.resource.clone(),
                resource_attrs: req.resource_attrs.clone(),
                telemetry: req.context.clone(),
                at: now,
                trust: input.trust,
                anomaly: assessment.kinds.clone(),
                approved: input.approved,
            });
        }
        let verdict = match policies.compiled.evaluate(&input) {
            Ok(v) => v,
            Err(e) => return Decision::deny("invalid_request", format!("invalid request: {e}"), Some(claims)),
        };
        let mut d = Decision::deny("policy", String::new(), Some(claims));
        d.trust = Some(assessment.trust);
        d.signals = assessment.signals;
        d.policy_version = Some(policies.version);
        if !verdict.errors.is_empty() {
            d.code = "policy_error";
            d.reasons = vec![format!("policy evaluation failed: {}", verdict.errors.join("; "))];
            return d;
        }
        d.policies = verdict.policies;
        if verdict.quarantine {
            d.code = "quarantine";
            let why = format!("forbidden by quarantine policy {}", d.policies.join(", "));
            d.reasons = vec![why.clone()];
            self.quarantine(&mut d, &agent.id, why, now).await;
            return d;
        }
        if let Some(role) = verdict.approval {
            match self.open_approval(role, req, claims, agent, &d.policies, now).await {
                Ok(approval) => {
                    d.outcome = Outcome::Pending;
                    d.code = "approval_required";
                    d.reasons = vec![format!(
                        "policy {} asks for the approval of {} `{}`: retry with approval_id `{}` once approved",
                        d.policies.join(", "),
                        role.as_str(),
                        approval.approver,
                        approval.id
                    )];
                    d.approval_id = Some(approval.id.to_string());
                }
                Err(reason) => {
                    d.code = "approval";
                    d.reasons = vec![reason];
                }
            }
            return d;
        }
        if !verdict.allow {
            d.reasons = vec![if d.policies.is_empty() {
                "no policy permits this action".to_owned()
            } else {
                format!("forbidden by policy {}", d.policies.join(", "))
            }];
            self.after_deny(&mut d, &agent.id, req, now).await;
            return d;
        }
        if let Err(limited) = guard.check_rates(&warrant.chain, &claims.task.id, claims.human(), now) {
            d.code = "rate_limited";
            d.reasons = vec![format!("{}; retry in {} s", limited.reason, limited.retry_after)];
            d.retry_after = Some(limited.retry_after);
            return d;
        }
        match guard.charge(&claims.jti, req.context.as_ref()) {
            Ok(charges) => d.charges = charges,
            Err(e) => {
                d.code = "budget";
                d.reasons = vec![e.to_string()];
                return d;
            }
        }
        if let Some(used) = presented {
            if let Err(reason) = self.use_approval(&used, now).await {
                guard.refund(&d.charges);
                d.charges.clear();
                d.code = "approval";
                d.reasons = vec![reason];
                return d;
            }
            d.approval_id = Some(used.id.to_string());
        }
        guard.record(&agent.id, &req.action, &req.resource, true, false, now);
        d.outcome = Outcome::Allow;
        d.code = "allow";
        d.reasons = vec![format!("allowed by policy {}", d.policies.join(", "))];
        d
    }

    /// A probing deny: counts towards the agent's deny streak, which may quarantine it,
    /// and towards the escalation ladder, which answers first at the scale of the
    /// warrant, then of its task, then of the agent.
    async fn after_deny(&self, d: &mut Decision, agent: &AgentId, req: &AuthorizeRequest, now: UnixTime) {
        use warrant_core::guard::escalation::Response;
        let (signals, trust) = self.guard().record(agent, &req.action, &req.resource, false, true, now);
        self.publish_signals(agent, &signals, now);
        d.signals.extend(signals);
        d.trust = Some(trust);
        if self.guard().below_threshold(trust) {
            let why = quarantine_reason(trust, &d.signals);
            self.quarantine(d, agent, why, now).await;
            return;
        }
        let Some(claims) = d.claims.clone() else { return };
        match self.guard().escalate(agent, &claims.jti, &claims.task.id, claims.exp, now) {
            Response::None => {}
            Response::RevokeWarrant { denies } => {
                let why =
                    format!("probing: {denies} requests with this warrant were refused by its scope or the policy");
                self.contain(d, RevocationKind::Warrant, claims.jti.as_str(), why).await;
            }
            Response::RevokeTask { warrants } => {
                let why = format!("probing: {warrants} warrants of this task were revoked for probing");
                self.contain(d, RevocationKind::Task, claims.task.id.as_str(), why).await;
            }
            Response::QuarantineAgent { tasks } => {
                let why = format!("{tasks} of its tasks were revoked for probing");
                self.quarantine(d, agent, why, now).await;
            }
            _ => {}
        }
    }

    /// Revokes a warrant or a task as the response to probing, before the decision that
    /// triggered it is answered.
    async fn contain(&self, d: &mut Decision, kind: RevocationKind, id: &str, why: String) {
        match self.revoke(kind, id, &why).await {
            Ok(revoked) => {
                tracing::warn!(kind = kind.as_str(), id, warrants = revoked.revoked_warrants, %why, "contained probing");
                d.reasons.push(format!(
                    "{} `{id}` is revoked: {why} ({} warrant(s) ended)",
                    kind.as_str(),
                    revoked.revoked_warrants
                ));
            }
            Err(e) => {
                tracing::error!(kind = kind.as_str(), id, error = %e, "containing probing did not complete cleanly");
                d.reasons.push(format!("{} `{id}` is revoked: {why}", kind.as_str()));
            }
        }
    }

    /// Decides one request. Never fails: every error is a deny with a reason. Answers
    /// only once the decision's audit record is durable.
    pub async fn authorize(&self, req: &AuthorizeRequest) -> Decision {
        let (decision, receipt) = self.authorize_queued(req).await;
        Self::settle(decision, receipt).await
    }

    /// The decision with its audit record queued but not yet durable. Nobody may be
    /// answered before [`Engine::settle`]; this split is for benchmarks and batches.
    pub async fn authorize_queued(&self, req: &AuthorizeRequest) -> (Decision, Option<crate::audit::Receipt>) {
        let now = self.now();
        let decision = self.decide(req, now).await;
        self.queue_decision(req, decision, now).await
    }

    /// Decides many requests (at most [`MAX_BATCH`]), in order. Their audit records are
    /// queued together and committed in one group; the answers wait for all of them.
    pub async fn authorize_batch(&self, reqs: &[AuthorizeRequest]) -> Vec<Decision> {
        let mut pending = Vec::with_capacity(reqs.len());
        for req in reqs {
            pending.push(self.authorize_queued(req).await);
        }
        let mut out = Vec::with_capacity(pending.len());
        for (decision, receipt) in pending {
            out.push(Self::settle(decision, receipt).await);
        }
        out
    }
}

impl Engine {
    /// Queues the decision's audit record.
    async fn queue_decision(
        &self,
        req: &AuthorizeRequest,
        decision: Decision,
        now: UnixTime,
    ) -> (Decision, Option<crate::audit::Receipt>) {
        let mut entry = warrant_core::audit::AuditEntry::new(now, warrant_core::audit::AuditKind::Decision);
        entry.decision = Some(decision.outcome.as_str().to_owned());
        let mut details = serde_json::json!({
            "action": audited_text(&req.action),
            "resource": audited_text(&req.resource),
            "code": decision.code,
            "reasons": decision.reasons,
            "policies": decision.policies,
            "policy_version": decision.policy_version,
        });
        if let Some(map) = details.as_object_mut() {
            if let Some(trust) = decision.trust {
                map.insert("trust".into(), serde_json::json!(trust));
            }
            if !decision.signals.is_empty() {
                map.insert("signals".into(), serde_json::json!(decision.signals));
            }
            if !decision.charges.is_empty() {
                map.insert("charges".into(), serde_json::json!(decision.charges));
            }
            if let Some(id) = &decision.approval_id {
                map.insert("approval_id".into(), Value::String(id.clone()));
            }
            if let Some(secs) = decision.retry_after {
                map.insert("retry_after".into(), serde_json::json!(secs));
            }
            if let Some(why) = &decision.quarantined {
                map.insert("quarantined".into(), Value::String(why.clone()));
            }
        }
        if let Some(claims) = &decision.claims {
            entry.agent = Some(claims.client_id.clone());
            entry.human = Some(claims.human().clone());
            entry.task = Some(claims.task.id.clone());
            entry.warrant = Some(claims.jti.clone());
            if let Some(map) = details.as_object_mut() {
                map.insert("chain".into(), serde_json::json!(claims.chain()));
                map.insert("scope".into(), Value::String(claims.scope.clone()));
            }
        }
        if let Some(map) = details.as_object_mut() {
            if let Some(attrs) = &req.resource_attrs {
                map.insert("resource_attrs".into(), audited_input(attrs));
            }
            if let Some(context) = &req.context {
                map.insert("context".into(), audited_input(context));
            }
        }
        entry.details = details;
        let mut decision = decision;
        if decision.claims.is_none() && decision.outcome == Outcome::Deny {
            let (admission, closed) = self.anonymous().admit(decision.code, now);
            if let Some(summary) = closed {
                // Queued, not awaited: it records denies that were answered already.
                if let Err(e) = self.audit_writer().enqueue(summary).await {
                    tracing::error!(error = %e, "the aggregate of anonymous denies could not be queued");
                }
            }
            if admission == crate::anonymous::Admission::Aggregate {
                decision.aggregated = true;
                return (decision, None);
            }
        }
        self.publish_decision(req, &decision, now);
        let charges = crate::quarantine::spend_rows(&decision);
        match self.audit_writer().enqueue_with(entry, charges).await {
            Ok(receipt) => (decision, Some(receipt)),
            Err(e) => {
                tracing::error!(error = %e, "a decision could not be queued for the audit log; denying");
                (decision, None)
            }
        }
    }

    /// Waits for the decision's audit record to be durable. If it cannot be written the
    /// answer is a deny, whatever was decided.
    pub async fn settle(mut decision: Decision, receipt: Option<crate::audit::Receipt>) -> Decision {
        if decision.aggregated {
            // A deny either way; its evidence is the window's aggregate record.
            decision.decision_id = "dec_aggregated".into();
            return decision;
        }
        let result = match receipt {
            Some(receipt) => receipt.durable().await,
            None => Err(crate::audit::AuditError::Closed),
        };
        match result {
            Ok(seq) => decision.decision_id = format!("dec_{seq}"),
            Err(e) => {
                tracing::error!(error = %e, "a decision could not be audited; denying");
                decision.outcome = Outcome::Deny;
                decision.code = "audit";
                decision.decision_id = "dec_unrecorded".into();
                decision.reasons = vec!["the decision could not be recorded in the audit log, so it is a deny".into()];
            }
        }
        decision
    }
}
