//! `/v1/audit`: query, provenance trace, verification.

use axum::extract::State;
use axum::Json as JsonOut;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warrant_core::audit::AuditKind;
use warrant_core::{AgentId, HumanId, TaskId, UnixTime, WarrantId};
use warrant_engine::audit::{AuditView, Trace};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query, Viewer};
use crate::state::AppState;

/// Filters; every one is optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records about this agent.
    pub agent: Option<String>,
    /// Records tracing to this human.
    pub human: Option<String>,
    /// Records of this task.
    pub task: Option<String>,
    /// Records about this warrant.
    pub warrant: Option<String>,
    /// `issuance`, `delegation`, `decision`, `revocation`, `registry`, `policy` or `task`.
    pub kind: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// From this time (Unix seconds).
    pub since: Option<i64>,
    /// Until this time (Unix seconds).
    pub until: Option<i64>,
    /// `newest` (the default: newest first) or `oldest` (oldest first).
    pub order: Option<String>,
    /// Only records before this sequence number (exclusive): the next page of a
    /// newest-first query.
    pub before: Option<u64>,
    /// Only records after this sequence number (exclusive): the next page of an
    /// oldest-first query.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The records, newest first (or oldest first with `order=oldest`).
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<AuditView>,
    /// The cursor of the next page, absent on the last one: pass it as `before` (newest
    /// first) or `after` (`order=oldest`), with the same filters.
    pub next: Option<u64>,
}

/// The result of verifying the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// Whether every record and checkpoint verified and the witness agrees.
    pub ok: bool,
    /// How many records were checked.
    pub records: u64,
    /// The first bad record's sequence number.
    pub first_bad: Option<u64>,
    /// What is wrong with it.
    pub reason: Option<String>,
    /// The comparison with the witness file (absent when no witness is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessView>,
}

/// The log compared with the witness of its checkpoints, kept outside the database.
#[derive(Debug, Serialize, ToSchema)]
pub struct WitnessView {
    /// How many witnessed checkpoints were read.
    pub checkpoints: u64,
    /// Whether the log agrees with the witness.
    pub ok: bool,
    /// What is wrong: records removed after a witnessed checkpoint, a wiped log, a
    /// witnessed head the chain no longer has, a database checkpoint the witness never saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn parse<T>(
    field: &str,
    value: Option<String>,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ApiError> {
    value.map(|v| f(&v).map_err(|e| ApiError::bad_request(format!("`{field}`: {e}")))).transpose()
}

/// Audit records matching the filters, newest first (or oldest first), a page at a time.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("admin" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody)))]
pub async fn query(
    _: Viewer,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<JsonOut<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, warrant_engine::audit::MAX_QUERY);
    let filter = warrant_engine::audit::AuditQuery {
        agent: parse("agent", q.agent, |s| AgentId::parse(s).map_err(|e| e.to_string()))?,
        human: parse("human", q.human, |s| HumanId::parse(s).map_err(|e| e.to_string()))?,
        task: parse("task", q.task, |s| TaskId::parse(s).map_err(|e| e.to_string()))?,
        warrant: parse("warrant", q.warrant, |s| WarrantId::parse(s).map_err(|e| e.to_string()))?,
        kind: parse("kind", q.kind, |s| AuditKind::parse(s).map_err(|e| e.to_string()))?,
        decision: parse("decision", q.decision, |s| match s {
            "allow" => Ok(warrant_engine::Outcome::Allow),
            "deny" => Ok(warrant_engine::Outcome::Deny),
            "pending" => Ok(warrant_engine::Outcome::Pending),
            _ => Err("use `allow`, `deny` or `pending`".to_owned()),
        })?,
        since: q.since.map(UnixTime),
        until: q.until.map(UnixTime),
        after_seq: q.after,
        before_seq: q.before,
        newest_first: match q.order.as_deref() {
            None | Some("newest") => true,
            Some("oldest") => false,
            Some(other) => return Err(ApiError::bad_request(format!("`order`: `{other}`: use `newest` or `oldest`"))),
        },
        limit,
    };
    let records = state.engine.audit().query(&filter).await.map_err(|e| ApiError::internal(&e))?;
    let next = (records.len() == limit).then(|| records.last().map(|r| r.seq)).flatten();
    Ok(JsonOut(AuditPage { records, next }))
}

/// `dec_123` or `123` -> 123.
fn record_id(id: &str) -> Result<u64, ApiError> {
    id.strip_prefix("dec_")
        .unwrap_or(id)
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not an audit record id (`dec_123` or `123`)")))
}

/// One record.
#[utoipa::path(get, path = "/v1/audit/{id}", tag = "audit", security(("admin" = [])),
    params(("id" = String, Path, description = "record id: `dec_123` or `123`")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn record(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<AuditView>, ApiError> {
    let seq = record_id(&id)?;
    let record = state.engine.audit().get(seq).await.map_err(|e| ApiError::internal(&e))?;
    record.map(JsonOut).ok_or_else(|| ApiError::not_found(format!("no audit record `{id}`")))
}

/// The provenance of a record back to the human: the warrants root -> leaf with scopes
/// and expiries, the agents, the task purpose, and the policies that decided.
#[utoipa::path(get, path = "/v1/audit/{id}/trace", tag = "audit", security(("admin" = [])),
    params(("id" = String, Path, description = "record id: `dec_123` or `123`")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn trace(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonOut<Trace>, ApiError> {
    let seq = record_id(&id)?;
    let trace = state.engine.audit().trace(seq).await.map_err(|e| ApiError::internal(&e))?;
    trace.map(JsonOut).ok_or_else(|| ApiError::not_found(format!("no audit record `{id}`")))
}

/// Verifies the whole hash chain and its signed checkpoints, naming the first bad record.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("admin" = [])),
    responses((status = 200, body = VerifyView)))]
pub async fn verify(_: Viewer, State(state): State<AppState>) -> Result<JsonOut<VerifyView>, ApiError> {
    let verification = state.engine.audit().verify().await.map_err(|e| ApiError::internal(&e))?;
    let ok = verification.ok();
    let report = verification.chain;
    let witness =
        verification.witness.map(|w| WitnessView { checkpoints: w.checkpoints, ok: w.ok, problem: w.problem });
    let reason = match (&report.reason, &witness) {
        (None, Some(WitnessView { problem: Some(problem), .. })) => Some(format!("witness: {problem}")),
        _ => report.reason,
    };
    Ok(JsonOut(VerifyView { ok, records: report.records, first_bad: report.first_bad, reason, witness }))
}
