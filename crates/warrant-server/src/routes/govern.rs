//! Continuous governance's endpoints: findings (`/v1/findings`), a sweep on demand
//! (`/v1/governance/sweep`), the inventory export (`/v1/inventory`), owner attestation
//! (`/v1/agents/{id}/attestation`, `/attest`) and agent key rotation
//! (`/v1/agents/{id}/key`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::govern::{Finding, FindingKind, FindingStatus};
use warrant_core::guard::approval::Decider;
use warrant_core::{PublicJwk, UnixTime};
use warrant_engine::govern::findings::{FindingQuery as FindingSelection, MAX_FINDINGS};
use warrant_engine::govern::owner::Attestation;
use warrant_engine::govern::owner::{Attester, InventoryRow};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApproverAuth, Json, Operator, Path, Query, Viewer};
use crate::routes::agents::AgentView;
use crate::state::AppState;

/// Findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingList {
    /// Most recently seen first.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Finding>,
}

/// Which findings to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    /// `active` (open or accepted; the default), `open`, `accepted`, `resolved` or `all`.
    pub status: Option<String>,
    /// Only this kind (e.g. `over_privileged`).
    pub kind: Option<String>,
    /// Only findings about this subject (e.g. an agent id).
    pub subject: Option<String>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<usize>,
}

/// Lists findings.
#[utoipa::path(get, path = "/v1/findings", tag = "governance", security(("admin" = [])), params(FindingQuery),
    responses((status = 200, body = FindingList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<FindingQuery>,
) -> Result<JsonOut<FindingList>, ApiError> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(FindingKind::parse(k).ok_or_else(|| {
            let kinds: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::bad_request(format!("`{k}` is not a finding kind: {}", kinds.join(", ")))
        })?),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_FINDINGS);
    let statuses: Vec<Option<FindingStatus>> = match q.status.as_deref().unwrap_or("active") {
        "active" => vec![Some(FindingStatus::Open), Some(FindingStatus::Accepted)],
        "all" => vec![None],
        s => vec![Some(FindingStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("`{s}` is not a status: active, open, accepted, resolved or all"))
        })?)],
    };
    let mut findings = Vec::new();
    for status in statuses {
        let filter = FindingSelection { status, kind, subject: q.subject.clone(), limit };
        findings.extend(state.engine.governance().findings(&filter).await?);
    }
    findings.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    findings.truncate(limit);
    Ok(JsonOut(FindingList { findings }))
}

/// Shows one finding.
#[utoipa::path(get, path = "/v1/findings/{id}", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "finding id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<Finding>, ApiError> {
    Ok(JsonOut(state.engine.governance().finding(&id).await?))
}

/// Accepting a finding's risk: why, and until when (`until`, or `for_secs` from now).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// Why the risk is accepted (kept in the finding and the audit log).
    pub justification: String,
    /// Until when (Unix seconds).
    pub until: Option<i64>,
    /// For how long from now, seconds.
    pub for_secs: Option<i64>,
}

/// Accepts a finding's risk until an expiry; it reopens then if its cause remains.
#[utoipa::path(post, path = "/v1/findings/{id}/accept", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "finding id")), request_body = AcceptBody,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn accept(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<AcceptBody>,
) -> Result<JsonOut<Finding>, ApiError> {
    let until = match (body.until, body.for_secs) {
        (Some(t), None) => UnixTime(t),
        (None, Some(secs)) => state.engine.now().plus(secs),
        _ => return Err(ApiError::bad_request("give exactly one of `until` (Unix seconds) and `for_secs`")),
    };
    Ok(JsonOut(state.engine.governance().accept_finding(&id, &who.0.recorded_as(), &body.justification, until).await?))
}

/// An applied recommendation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    /// The agent with its narrowed max scope.
    pub agent: AgentView,
    /// The finding after the agent was swept again (normally resolved).
    #[schema(value_type = Object)]
    pub finding: Finding,
}

/// Applies an over-privileged finding's recommendation: narrows the agent's max scope
/// to what it used, and revokes its live warrants beyond it.
#[utoipa::path(post, path = "/v1/findings/{id}/apply", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "finding id")),
    responses((status = 200, body = Applied), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn apply(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<Applied>, ApiError> {
    let (agent, finding) = state.engine.governance().apply_recommendation(&id, &who.0.recorded_as()).await?;
    Ok(JsonOut(Applied { agent: agent.into(), finding }))
}

/// What a sweep did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepView {
    /// Agents looked at.
    pub agents: usize,
    /// Live warrants looked at.
    pub live_warrants: usize,
    /// Findings opened.
    pub opened: usize,
    /// Findings updated.
    pub updated: usize,
    /// Findings reopened (acceptance lapsed).
    pub reopened: usize,
    /// Findings resolved.
    pub resolved: usize,
    /// Orphaned agents suspended.
    pub suspended: usize,
    /// How long it took, milliseconds.
    pub took_ms: u64,
}

/// Sweeps every agent now (it also runs on its interval).
#[utoipa::path(post, path = "/v1/governance/sweep", tag = "governance", security(("admin" = [])),
    responses((status = 200, body = SweepView), (status = 401, body = ErrorBody)))]
pub async fn sweep(_: Operator, State(state): State<AppState>) -> Result<JsonOut<SweepView>, ApiError> {
    let started = std::time::Instant::now();
    let r = state.engine.governance().sweep().await?;
    Ok(JsonOut(SweepView {
        agents: r.agents,
        live_warrants: r.live_warrants,
        opened: r.opened,
        updated: r.updated,
        reopened: r.reopened,
        resolved: r.resolved,
        suspended: r.suspended,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// The inventory export's format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The inventory.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inventory {
    /// Every agent, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub agents: Vec<InventoryRow>,
}

/// One CSV field: quoted when needed, and defused when a spreadsheet would run it as a
/// formula (a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'` in front).
fn csv_field(value: &str) -> String {
    let defused =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

fn time_text(t: Option<UnixTime>) -> String {
    t.map(|t| t.secs().to_string()).unwrap_or_default()
}

/// The inventory as CSV, one row per agent.
pub fn inventory_csv(rows: &[InventoryRow]) -> String {
    let mut out = String::from(
        "id,name,owner,owner_email,owner_status,mode,status,max_scope,created_at,expires_at,last_activity,trust,last_attested,open_findings\n",
    );
    for r in rows {
        let kinds: Vec<&str> = r.open_findings.iter().map(|k| k.as_str()).collect();
        let fields = [
            r.id.to_string(),
            r.name.clone(),
            r.owner.to_string(),
            r.owner_email.clone().unwrap_or_default(),
            r.owner_status.to_owned(),
            r.mode.as_str().to_owned(),
            r.status.as_str().to_owned(),
            r.max_scope.to_string(),
            r.created_at.secs().to_string(),
            time_text(r.expires_at),
            time_text(r.last_activity),
            format!("{:.3}", r.trust),
            time_text(r.last_attested),
            kinds.join(" "),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Exports every agent with owner, mode, scopes, last activity, trust and open findings,
/// as JSON or CSV (for auditors).
#[utoipa::path(get, path = "/v1/inventory", tag = "governance", security(("admin" = [])), params(InventoryQuery),
    responses((status = 200, body = Inventory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn inventory(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<InventoryQuery>,
) -> Result<Response, ApiError> {
    let rows = state.engine.governance().inventory();
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(JsonOut(Inventory { agents: rows }).into_response()),
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"warrant-inventory.csv\""),
            ],
            inventory_csv(&rows),
        )
            .into_response()),
        other => Err(ApiError::bad_request(format!("`{other}` is not a format: json or csv"))),
    }
}

/// Who attests: the admin token or the agent's owner; an operator signed in to the
/// console does not attest for an owner.
fn attester(by: Decider) -> Result<Attester, ApiError> {
    match by {
        Decider::Admin => Ok(Attester::Admin),
        Decider::Human(h) => Ok(Attester::Human(h)),
        Decider::Operator { .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "attestation is the agent owner's (or the admin token's), not an operator's",
        )),
    }
}

/// What an owner sees before attesting: what the agent holds against what it used, the
/// recommended narrower scope and its open findings. The owner (session token) or the
/// admin.
#[utoipa::path(get, path = "/v1/agents/{id}/attestation", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn evidence(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<serde_json::Value>, ApiError> {
    Ok(JsonOut(state.engine.governance().attestation_evidence(&id, &attester(by)?)?))
}

/// An attestation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestBody {
    /// What the owner says (kept with the attestation).
    #[serde(default)]
    pub note: String,
}

/// An attestation as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttestationView {
    /// `att_…`.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// Who attested (`admin` or a human id).
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
    /// The note.
    pub note: String,
    /// What was in front of them.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

impl From<Attestation> for AttestationView {
    fn from(a: Attestation) -> Self {
        AttestationView {
            id: a.id,
            agent: a.agent.to_string(),
            by: a.by,
            at: a.at.secs(),
            note: a.note,
            evidence: a.evidence,
        }
    }
}

/// The owner re-attests that the agent should keep what it holds, with the evidence in
/// front of them. The owner (session token) or the admin.
#[utoipa::path(post, path = "/v1/agents/{id}/attest", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")), request_body = AttestBody,
    responses((status = 200, body = AttestationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attest(
    ApproverAuth(by): ApproverAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<AttestBody>,
) -> Result<JsonOut<AttestationView>, ApiError> {
    Ok(JsonOut(state.engine.governance().attest(&id, attester(by)?, &body.note).await?.into()))
}

/// A new agent key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The new Ed25519 public key as a JWK.
    #[schema(value_type = Object)]
    pub public_key: PublicJwk,
}

/// Rotates an agent's key: client assertions must be signed with the new key from now on.
#[utoipa::path(post, path = "/v1/agents/{id}/key", tag = "governance", security(("admin" = [])),
    params(("id" = String, Path, description = "agent id")), request_body = KeyBody,
    responses((status = 200, body = AgentView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_key(
    who: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<KeyBody>,
) -> Result<JsonOut<AgentView>, ApiError> {
    Ok(JsonOut(state.engine.governance().rotate_agent_key(&id, body.public_key, who.by()).await?.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
