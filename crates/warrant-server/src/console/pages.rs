//! The console's pages that show: overview, inventory, agent, live decisions, trace,
//! approvals, findings, policies and the kill switch form. Every page checks what the
//! signed-in user may see; a human sees only their own agents and approvals.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::Html;
use maud::{html, Markup};
use serde::Deserialize;
use warrant_core::audit::AuditKind;
use warrant_core::decision::Outcome;
use warrant_core::govern::{Finding, FindingKind, FindingStatus, Severity};
use warrant_core::guard::approval::{Approval, ApprovalStatus};
use warrant_core::{AgentId, AgentStatus, Capability, HumanId, UnixTime};
use warrant_engine::audit::{AuditQuery, AuditView};
use warrant_engine::govern::findings::{FindingQuery, MAX_FINDINGS};
use warrant_engine::govern::owner::InventoryRow;
use warrant_engine::revocation::LiveWarrant;

use super::view::{badge, csrf, json, left, page, sparkline, time};
use super::{Failure, User};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// How many recent decisions the overview and the decisions page read.
const RECENT_DECISIONS: usize = 1000;

/// How many rows the live decisions table keeps (older rows are dropped).
pub const LIVE_ROWS: usize = 200;

/// Only a reader (any operator role) may see this page.
fn reader(user: &User) -> Result<(), Failure> {
    user.require(Capability::Read)
}

/// Recent decision records, newest first.
async fn recent_decisions(state: &AppState, query: AuditQuery) -> Result<Vec<AuditView>, Failure> {
    let query = AuditQuery { kind: Some(AuditKind::Decision), newest_first: true, ..query };
    state.engine.audit().query(&query).await.map_err(|e| Failure::internal(&e))
}

/// A string field of a record's details.
fn detail<'a>(view: &'a AuditView, field: &str) -> &'a str {
    view.entry.details.get(field).and_then(|v| v.as_str()).unwrap_or("")
}

/// The first reason of a decision record, or its code.
fn first_reason(view: &AuditView) -> String {
    view.entry
        .details
        .get("reasons")
        .and_then(|r| r.get(0))
        .and_then(|r| r.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| view.entry.details.get("code").map(|c| c.to_string()).unwrap_or_default())
}

/// `GET /console`: the overview.
pub async fn overview(State(state): State<AppState>, user: User) -> Result<Html<String>, Failure> {
    if let Some(me) = user.human().filter(|_| !user.can(Capability::Read)) {
        return own_overview(&state, &user, me).await;
    }
    reader(&user)?;
    let recent = recent_decisions(&state, AuditQuery { limit: RECENT_DECISIONS, ..AuditQuery::default() }).await?;
    let mut split: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for r in &recent {
        let outcome = r.entry.decision.as_deref().unwrap_or("unknown");
        *split.entry(outcome).or_default() += 1;
        if outcome == Outcome::Deny.as_str() {
            *reasons.entry(first_reason(r)).or_default() += 1;
        }
    }
    let mut top: Vec<(String, usize)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    // Decisions per minute over the last 30 minutes, from the records read.
    let now = state.engine.now();
    let mut per_minute = [0.0f64; 30];
    for r in &recent {
        let ago = (now.0 - r.entry.at.0) / 60;
        if let Some(slot) = usize::try_from(29 - ago).ok().and_then(|i| per_minute.get_mut(i)) {
            *slot += 1.0;
        }
    }
    let max = per_minute.iter().copied().fold(0.0, f64::max);
    let agents = state.engine.registry().agents_in_memory();
    let suspended = agents.iter().filter(|a| a.status == AgentStatus::Suspended).count();
    let open = state
        .engine
        .governance()
        .findings(&FindingQuery { status: Some(FindingStatus::Open), kind: None, subject: None, limit: MAX_FINDINGS })
        .await?;
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    for f in &open {
        *by_severity.entry(f.severity).or_default() += 1;
    }
    // The whole log is verified at most once a minute for the overview.
    let chain = state.engine.audit().verify_recent(now, 60).await;
    let body = html! {
        section.cards aria-label="Now" {
            div.card {
                h2 { "Decisions per second" }
                p.big { output #rate aria-live="off" { "0" } }
                p.note { "Live, from the event stream (last 60 seconds)." }
                svg #rate-chart .spark viewBox="0 0 240 48" role="img" aria-label="Decisions per second, last 60 seconds" {
                    polyline points="" {}
                }
            }
            div.card {
                h2 { "Recent decisions" }
                p.note { "The last " (recent.len()) " when the page loaded, counted on live." }
                dl.split {
                    @for outcome in [Outcome::Allow, Outcome::Deny, Outcome::Pending] {
                        dt { (badge(outcome.as_str())) }
                        dd #{ "split-" (outcome.as_str()) } { (split.get(outcome.as_str()).copied().unwrap_or(0)) }
                    }
                }
                (sparkline("Decisions per minute, last 30 minutes", &per_minute, max))
            }
            div.card {
                h2 { "Suspended or quarantined agents" }
                p.big { a href="/console/agents?status=suspended" { (suspended) } }
                p.note { "of " (agents.len()) " agents" }
            }
            div.card {
                h2 { "Audit chain" }
                @match &chain {
                    Ok((at, v)) if v.ok() => { p.big { (badge("verified")) } p.note { (v.chain.records) " records, every link and checkpoint checked at " (time(*at)) } }
                    Ok((_, v)) => { p.big { (badge("broken")) } p.error role="alert" { "First bad record: " (v.chain.first_bad.map(|s| s.to_string()).unwrap_or_default()) " — " (v.chain.reason.clone().unwrap_or_default()) } }
                    Err(e) => { p.big { (badge("unknown")) } p.error role="alert" { "Could not verify: " (e) } }
                }
            }
        }
        section.cols {
            div {
                h2 { "Top deny reasons" }
                @if top.is_empty() {
                    p.note { "No denies among the recent decisions." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Reason" } th scope="col" { "Denies" } } }
                        tbody { @for (reason, n) in &top { tr { td { (reason) } td.num { (n) } } } }
                    }
                }
            }
            div {
                h2 { "Open findings by severity" }
                table {
                    thead { tr { th scope="col" { "Severity" } th scope="col" { "Open" } } }
                    tbody {
                        @for s in [Severity::Critical, Severity::High, Severity::Medium, Severity::Low] {
                            tr { td { (badge(s.as_str())) } td.num { a href={ "/console/findings?severity=" (s.as_str()) } { (by_severity.get(&s).copied().unwrap_or(0)) } } }
                        }
                    }
                }
            }
        }
        div #live-overview data-live="overview" hidden {}
    };
    Ok(page("Overview", Some(&user), "/console", body))
}

/// A human's overview: their agents and what waits for them.
async fn own_overview(state: &AppState, user: &User, me: &HumanId) -> Result<Html<String>, Failure> {
    let agents = state.engine.registry().agents_in_memory().iter().filter(|a| &a.owner == me).count();
    let waiting = state.engine.approvals().list(Some(ApprovalStatus::Pending), None, Some(me), 1000).await?.len();
    let body = html! {
        section.cards {
            div.card { h2 { "Your agents" } p.big { a href="/console/agents" { (agents) } } }
            div.card { h2 { "Waiting for your decision" } p.big { a href="/console/approvals" { (waiting) } } }
        }
    };
    Ok(page("Overview", Some(user), "/console", body))
}

/// Inventory filters.
#[derive(Debug, Default, Deserialize)]
pub struct AgentFilter {
    /// Text in the id, name, owner or owner's email.
    #[serde(default)]
    pub q: String,
    /// `active`, `suspended` or `retired`.
    #[serde(default)]
    pub status: String,
    /// `delegated` or `autonomous`.
    #[serde(default)]
    pub mode: String,
    /// `yes`: only agents with open findings.
    #[serde(default)]
    pub findings: String,
}

impl AgentFilter {
    fn keeps(&self, r: &InventoryRow) -> bool {
        let q = self.q.trim().to_lowercase();
        (q.is_empty()
            || r.id.as_str().to_lowercase().contains(&q)
            || r.name.to_lowercase().contains(&q)
            || r.owner.as_str().to_lowercase().contains(&q)
            || r.owner_email.as_deref().is_some_and(|e| e.to_lowercase().contains(&q)))
            && (self.status.is_empty() || r.status.as_str() == self.status)
            && (self.mode.is_empty() || r.mode.as_str() == self.mode)
            && (self.findings != "yes" || !r.open_findings.is_empty())
    }
}

fn option(value: &str, label: &str, current: &str) -> Markup {
    html! {
        @if value == current { option value=(value) selected { (label) } } @else { option value=(value) { (label) } }
    }
}

/// `GET /console/agents`: every agent (a human: their own), with search and filters.
pub async fn agents(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<AgentFilter>,
) -> Result<Html<String>, Failure> {
    let now = state.engine.now();
    let mut rows: Vec<InventoryRow> =
        state.engine.governance().inventory().into_iter().filter(|r| user.may_see(&r.owner)).collect();
    let total = rows.len();
    rows.retain(|r| filter.keeps(r));
    rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.as_str().cmp(b.id.as_str())));
    let body = html! {
        form.filters method="get" action="/console/agents" role="search" {
            label for="q" { "Search" }
            input #q type="search" name="q" value=(filter.q) placeholder="id, name, owner";
            label for="status" { "Status" }
            select #status name="status" {
                (option("", "any", &filter.status)) (option("active", "active", &filter.status))
                (option("suspended", "suspended", &filter.status)) (option("retired", "retired", &filter.status))
            }
            label for="mode" { "Mode" }
            select #mode name="mode" {
                (option("", "any", &filter.mode)) (option("delegated", "delegated", &filter.mode))
                (option("autonomous", "autonomous", &filter.mode))
            }
            label for="findings" { "Findings" }
            select #findings name="findings" {
                (option("", "any", &filter.findings)) (option("yes", "with open findings", &filter.findings))
            }
            button type="submit" { "Filter" }
        }
        p #agent-count { (rows.len()) " of " (total) " agents" }
        table #inventory {
            thead { tr {
                th scope="col" { "Agent" } th scope="col" { "Owner" } th scope="col" { "Mode" }
                th scope="col" { "Status" } th scope="col" { "Trust" } th scope="col" { "Last seen" }
                th scope="col" { "Findings" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td { a href={ "/console/agents/" (r.id) } { (r.name) } br; code.small { (r.id) } }
                        td { (r.owner_email.as_deref().unwrap_or(r.owner.as_str())) @if r.owner_status != "active" { " " (badge(r.owner_status)) } }
                        td { (r.mode.as_str()) }
                        td { (badge(r.status.as_str())) }
                        td.num { (format!("{:.2}", r.trust)) }
                        td { @if let Some(t) = r.last_activity { (ago(now, t)) } @else { "never" } }
                        td { @for k in &r.open_findings { (badge(k.as_str())) " " } }
                    }
                }
            }
        }
    };
    Ok(page("Agents", Some(&user), "/console/agents", body))
}

/// How long ago `at` was.
fn ago(now: UnixTime, at: UnixTime) -> String {
    let secs = now.0 - at.0;
    match secs {
        s if s < 60 => format!("{}s ago", s.max(0)),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// One delegation tree: the root warrant and its descendants among `live`.
fn tree(now: UnixTime, node: &LiveWarrant, live: &[LiveWarrant], depth: usize) -> Markup {
    html! {
        li {
            span.node {
                a href={ "/console/agents/" (node.agent) } { code { (node.agent) } }
                " holds " code { (node.jti) } " · scope " code { (node.scope) } " · " (left(now, node.expires_at)) " left"
            }
            @let children: Vec<&LiveWarrant> = live.iter().filter(|w| w.parent.as_ref() == Some(&node.jti)).collect();
            @if !children.is_empty() && depth < 16 {
                ul { @for c in children { (tree(now, c, live, depth + 1)) } }
            }
        }
    }
}

/// `GET /console/agents/{id}`: one agent, its delegation trees, trust, baseline and
/// findings, with the buttons an operator may press.
pub async fn agent(State(state): State<AppState>, user: User, Path(id): Path<String>) -> Result<Html<String>, Failure> {
    let agent = state.engine.registry().agent(&id).await?;
    if !user.may_see(&agent.owner) {
        return Err(Failure::not_found(format!("agent `{id}`")));
    }
    let now = state.engine.now();
    let row = state.engine.governance().inventory_row(&agent.id);
    let live = state.engine.revocation().live_under(warrant_core::RevocationKind::Agent, agent.id.as_str()).await?;
    let jtis: std::collections::HashSet<&warrant_core::WarrantId> = live.iter().map(|w| &w.jti).collect();
    let roots: Vec<&LiveWarrant> =
        live.iter().filter(|w| w.parent.as_ref().is_none_or(|p| !jtis.contains(p))).collect();
    let history =
        recent_decisions(&state, AuditQuery { agent: Some(agent.id.clone()), limit: 100, ..AuditQuery::default() })
            .await?;
    let trust: Vec<f64> =
        history.iter().rev().filter_map(|r| r.entry.details.get("trust").and_then(|t| t.as_f64())).collect();
    let guard = state.engine.guardrails().agent(&agent.id);
    let findings = agent_findings(&state, &agent.id).await?;
    let mut top_actions: Vec<(String, u64)> =
        guard.as_ref().map(|g| g.baseline.actions.iter().map(|(a, n)| (a.clone(), *n)).collect()).unwrap_or_default();
    top_actions.sort_by_key(|a| std::cmp::Reverse(a.1));
    top_actions.truncate(8);
    let operate = user.can(Capability::Operate);
    let body = html! {
        dl.facts {
            dt { "Id" } dd { code #agent-id { (agent.id) } }
            dt { "Owner" } dd { (agent.owner) }
            dt { "Mode" } dd { (agent.mode.as_str()) }
            dt { "Status" } dd #agent-status { (badge(agent.status.as_str())) }
            dt { "Max scope" } dd { code { (agent.max_scope) } }
            dt { "Trust" } dd { (row.as_ref().map(|r| format!("{:.2}", r.trust)).unwrap_or_default()) }
            dt { "Last seen" } dd { @if let Some(t) = row.as_ref().and_then(|r| r.last_activity) { (time(t)) } @else { "never" } }
        }
        @if operate {
            section.actions aria-label="Actions" {
                @if agent.status == AgentStatus::Active {
                    form method="post" action={ "/console/agents/" (agent.id) "/suspend" } { (csrf(&user)) button type="submit" { "Suspend" } }
                }
                @if agent.status == AgentStatus::Suspended {
                    form method="post" action={ "/console/agents/" (agent.id) "/resume" } { (csrf(&user)) button type="submit" { "Resume" } }
                }
                a.button href={ "/console/kill?kind=agent&id=" (agent.id) } { "Revoke…" }
                details {
                    summary { "Rotate key" }
                    form method="post" action={ "/console/agents/" (agent.id) "/key" } {
                        (csrf(&user))
                        label for="public_key" { "New Ed25519 public key (JWK)" }
                        textarea #public_key name="public_key" rows="4" required {}
                        button type="submit" { "Rotate key" }
                    }
                }
            }
        }
        section aria-labelledby="trees" {
            h2 #trees { "Delegation trees (" (live.len()) " live warrants)" }
            @if roots.is_empty() {
                p.note { "No live warrants." }
            } @else {
                ul.tree #delegation {
                    @for root in &roots {
                        li {
                            span.node { "human " code { (root.human) } " · task " code { (root.task) } }
                            ul { (tree(now, root, &live, 0)) }
                        }
                    }
                }
            }
        }
        section.cols {
            div {
                h2 { "Trust history" }
                @if trust.is_empty() { p.note { "No decisions with a trust score yet." } }
                @else { (sparkline("Trust over the agent's last decisions", &trust, 1.0)) }
            }
            div {
                h2 { "Baseline" }
                @if let Some(g) = &guard {
                    p { (g.baseline.allowed) " allowed actions since " (time(g.baseline.since)) }
                    table {
                        thead { tr { th scope="col" { "Action" } th scope="col" { "Count" } } }
                        tbody { @for (a, n) in &top_actions { tr { td { code { (a) } } td.num { (n) } } } }
                    }
                } @else {
                    p.note { "Not seen by this server yet." }
                }
            }
        }
        section aria-labelledby="agent-findings" {
            h2 #agent-findings { "Findings" }
            (finding_list(&user, &findings))
        }
    };
    Ok(page(&agent.name, Some(&user), "/console/agents", body))
}

async fn agent_findings(state: &AppState, agent: &AgentId) -> Result<Vec<Finding>, Failure> {
    let mut out = Vec::new();
    for status in [FindingStatus::Open, FindingStatus::Accepted] {
        let q = FindingQuery { status: Some(status), kind: None, subject: Some(agent.to_string()), limit: 100 };
        out.extend(state.engine.governance().findings(&q).await?);
    }
    Ok(out)
}

/// Decision filters.
#[derive(Debug, Default, Deserialize)]
pub struct DecisionFilter {
    /// Only this agent's.
    #[serde(default)]
    pub agent: String,
    /// Only on behalf of this human.
    #[serde(default)]
    pub human: String,
    /// `allow`, `deny` or `pending`.
    #[serde(default)]
    pub decision: String,
    /// Only this action.
    #[serde(default)]
    pub action: String,
}

/// `GET /console/decisions`: the latest decisions, then new ones as they happen.
pub async fn decisions(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<DecisionFilter>,
) -> Result<Html<String>, Failure> {
    reader(&user)?;
    let bad = |e: &dyn std::fmt::Display| Failure::new(axum::http::StatusCode::BAD_REQUEST, e.to_string());
    let agent = match filter.agent.trim() {
        "" => None,
        a => Some(AgentId::parse(a).map_err(|e| bad(&e))?),
    };
    let human = match filter.human.trim() {
        "" => None,
        h => Some(HumanId::parse(h).map_err(|e| bad(&e))?),
    };
    let decision = match filter.decision.as_str() {
        "" => None,
        d => Some(Outcome::parse(d).ok_or_else(|| bad(&format!("`{d}` is not a decision: allow, deny or pending")))?),
    };
    let action = filter.action.trim();
    let rows = recent_decisions(
        &state,
        AuditQuery { agent, human, decision, limit: if action.is_empty() { 50 } else { 500 }, ..AuditQuery::default() },
    )
    .await?;
    let rows: Vec<&AuditView> =
        rows.iter().filter(|r| action.is_empty() || detail(r, "action") == action).take(50).collect();
    let body = html! {
        form.filters method="get" action="/console/decisions" role="search" {
            label for="f-agent" { "Agent" } input #f-agent name="agent" value=(filter.agent) placeholder="agt_…";
            label for="f-human" { "Human" } input #f-human name="human" value=(filter.human) placeholder="hum_…";
            label for="f-decision" { "Decision" }
            select #f-decision name="decision" {
                (option("", "any", &filter.decision)) (option("allow", "allow", &filter.decision))
                (option("deny", "deny", &filter.decision)) (option("pending", "pending", &filter.decision))
            }
            label for="f-action" { "Action" } input #f-action name="action" value=(filter.action);
            button type="submit" { "Filter" }
        }
        p.note #live-status role="status" { "Connecting to the live stream…" }
        table #decisions data-live="decisions" data-max=(LIVE_ROWS)
            data-agent=(filter.agent.trim()) data-human=(filter.human.trim())
            data-decision=(filter.decision) data-action=(action) {
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Decision" } th scope="col" { "Agent" }
                th scope="col" { "Human" } th scope="col" { "Action" } th scope="col" { "Resource" } th scope="col" { "Why" }
            } }
            tbody {
                @for r in rows {
                    tr {
                        td { a href={ "/console/decisions/" (r.seq) } { (time(r.entry.at)) } }
                        td { (badge(r.entry.decision.as_deref().unwrap_or(""))) }
                        td { code { (r.entry.agent.as_ref().map(|a| a.as_str()).unwrap_or("")) } }
                        td { code { (r.entry.human.as_ref().map(|h| h.as_str()).unwrap_or("")) } }
                        td { code { (detail(r, "action")) } }
                        td { code { (detail(r, "resource")) } }
                        td { (first_reason(r)) }
                    }
                }
            }
        }
    };
    Ok(page("Live decisions", Some(&user), "/console/decisions", body))
}

/// `GET /console/decisions/{id}`: a decision's provenance, back to the human and the
/// policies that decided (`dec_…` or the audit sequence number).
pub async fn trace(State(state): State<AppState>, user: User, Path(id): Path<String>) -> Result<Html<String>, Failure> {
    let seq: u64 =
        id.strip_prefix("dec_").unwrap_or(&id).parse().map_err(|_| {
            Failure::not_found(format!("`{}` is not a decision id", warrant_core::permission::shown(&id)))
        })?;
    let Some(trace) = state.engine.audit().trace(seq).await.map_err(|e| Failure::internal(&e))? else {
        return Err(Failure::not_found(format!("no audit record {seq}")));
    };
    let entry = &trace.record.entry;
    let mine = entry.human.as_ref().is_some_and(|h| user.human() == Some(h));
    if !user.can(Capability::Read) && !mine {
        return Err(Failure::not_found(format!("no audit record {seq}")));
    }
    let body = html! {
        dl.facts {
            dt { "Record" } dd { code { (trace.record.seq) } " · hash " code.small { (trace.record.hash) } }
            dt { "When" } dd { (time(entry.at)) }
            dt { "Kind" } dd { (entry.kind.as_str()) }
            @if let Some(d) = &entry.decision { dt { "Decision" } dd #trace-decision { (badge(d)) } }
            dt { "Action" } dd { code { (detail(&trace.record, "action")) } " on " code { (detail(&trace.record, "resource")) } }
            @if let Some(by) = &entry.by { dt { "By" } dd { (by.label()) } }
        }
        section aria-labelledby="chain" {
            h2 #chain { "Chain of authority" }
            ol.chain {
                li { "Human " @if let Some(h) = &trace.human { (json(h)) } @else { code { (entry.human.as_ref().map(|h| h.as_str()).unwrap_or("none (autonomous)")) } } }
                @if let Some(task) = &trace.task { li { "Task " (json(task)) } }
                @for w in &trace.warrants {
                    li { "Warrant " code { (w.jti) } " held by " a href={ "/console/agents/" (w.agent) } { code { (w.agent) } } " · scope " code { (w.scope) } }
                }
            }
        }
        @if let Some(p) = &trace.policies {
            section aria-labelledby="policies" {
                h2 #policies { "Policies (version " (p.version) ")" }
                p { "Deciding: " @for id in &p.deciding { code.policy { (id) } " " } @if p.deciding.is_empty() { "none (default deny)" } }
                details { summary { "The whole set as it was" } pre.json tabindex="0" { (p.text) } }
            }
        }
        details { summary { "The record" } (json(&entry.details)) }
    };
    Ok(page(&format!("Decision dec_{seq}"), Some(&user), "/console/decisions", body))
}

/// Approval filters.
#[derive(Debug, Default, Deserialize)]
pub struct ApprovalFilter {
    /// `pending` (default), `approved`, `rejected`, `used`, `expired` or `all`.
    #[serde(default)]
    pub status: String,
}

/// Whether `user` may see (and decide) `approval`.
fn may_decide(user: &User, approval: &Approval) -> bool {
    user.can(Capability::Decide) || user.human() == Some(&approval.approver)
}

fn may_view_approval(user: &User, approval: &Approval) -> bool {
    user.can(Capability::Read) || user.human() == Some(&approval.approver)
}

/// `GET /console/approvals`: the inbox.
pub async fn approvals(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<ApprovalFilter>,
) -> Result<Html<String>, Failure> {
    let status = match filter.status.as_str() {
        "" | "pending" => Some(ApprovalStatus::Pending),
        "all" => None,
        s => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            Failure::new(axum::http::StatusCode::BAD_REQUEST, format!("`{s}` is not an approval status"))
        })?),
    };
    let rows: Vec<Approval> = state
        .engine
        .approvals()
        .list(status, None, if user.can(Capability::Read) { None } else { user.human() }, 500)
        .await?
        .into_iter()
        .filter(|a| may_view_approval(&user, a))
        .collect();
    let now = state.engine.now();
    let current = if filter.status.is_empty() { "pending" } else { filter.status.as_str() };
    let body = html! {
        form.filters method="get" action="/console/approvals" {
            label for="a-status" { "Status" }
            select #a-status name="status" {
                @for s in ["pending", "approved", "rejected", "used", "expired", "all"] { (option(s, s, current)) }
            }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() { p.note #no-approvals { "Nothing here." } }
        @for a in &rows { (approval_card(&user, a, now)) }
    };
    Ok(page("Approvals", Some(&user), "/console/approvals", body))
}

fn approval_card(user: &User, a: &Approval, now: UnixTime) -> Markup {
    html! {
        article.approval #(a.id) aria-labelledby={ "h-" (a.id) } {
            h2 #{ "h-" (a.id) } { code { (a.action) } " on " code { (a.resource) } }
            dl.facts {
                dt { "Status" } dd.approval-status { (badge(a.status.as_str())) }
                dt { "Agent" } dd { a href={ "/console/agents/" (a.agent) } { code { (a.agent) } } }
                dt { "On behalf of" } dd { code { (a.human) } }
                dt { "Task" } dd { code { (a.task) } }
                dt { "Warrant" } dd { code { (a.warrant) } }
                dt { "Asked by policy" } dd { @for p in &a.policies { code.policy { (p) } " " } }
                dt { "Approver" } dd { code { (a.approver) } " (" (a.approver_role.as_str()) ")" }
                dt { "Expires" } dd { (left(now, a.expires_at)) }
                @if let Some(by) = &a.decided_by { dt { "Decided by" } dd { (by) } }
                @if let Some(r) = &a.reason { dt { "Note" } dd { (r) } }
                @if let Some(t) = a.used_at { dt { "Retried" } dd.retried { "The agent's retry was allowed at " (time(t)) } }
            }
            details { summary { "Request and context" } (json(&a.request)) }
            @if a.status == ApprovalStatus::Pending && may_decide(user, a) {
                form.decide method="post" action={ "/console/approvals/" (a.id) "/approve" } {
                    (csrf(user))
                    label for={ "note-" (a.id) } { "Note (kept in the audit log)" }
                    input #{ "note-" (a.id) } name="reason" maxlength="500";
                    button type="submit" name="verdict" value="approve" { "Approve" }
                    button.danger type="submit" formaction={ "/console/approvals/" (a.id) "/reject" } { "Reject" }
                }
            }
            p { a href={ "/console/approvals/" (a.id) } { "Open" } }
        }
    }
}

/// `GET /console/approvals/{id}`: one approval; its status follows the agent's retry live.
pub async fn approval(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Html<String>, Failure> {
    let a = state.engine.approvals().get(&id).await?;
    if !may_view_approval(&user, &a) {
        return Err(Failure::not_found(format!("approval `{}`", warrant_core::permission::shown(&id))));
    }
    let now = state.engine.now();
    let body = html! {
        div #approval-live data-poll={ "/console/approvals/" (a.id) "/card" } aria-live="polite" { (approval_card(&user, &a, now)) }
    };
    Ok(page("Approval", Some(&user), "/console/approvals", body))
}

/// `GET /console/approvals/{id}/card`: the approval's card alone (what the page polls).
pub async fn approval_card_only(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Html<String>, Failure> {
    let a = state.engine.approvals().get(&id).await?;
    if !may_view_approval(&user, &a) {
        return Err(Failure::not_found(format!("approval `{}`", warrant_core::permission::shown(&id))));
    }
    Ok(Html(approval_card(&user, &a, state.engine.now()).into_string()))
}

/// Finding filters.
#[derive(Debug, Default, Deserialize)]
pub struct FindingFilter {
    /// A finding kind.
    #[serde(default)]
    pub kind: String,
    /// A severity.
    #[serde(default)]
    pub severity: String,
    /// `active` (default: open or accepted), `open`, `accepted`, `resolved` or `all`.
    #[serde(default)]
    pub status: String,
}

/// `GET /console/findings`.
pub async fn findings(
    State(state): State<AppState>,
    user: User,
    Query(filter): Query<FindingFilter>,
) -> Result<Html<String>, Failure> {
    reader(&user)?;
    let bad = |m: String| Failure::new(axum::http::StatusCode::BAD_REQUEST, m);
    let kind = match filter.kind.as_str() {
        "" => None,
        k => Some(FindingKind::parse(k).ok_or_else(|| bad(format!("`{k}` is not a finding kind")))?),
    };
    let statuses: Vec<Option<FindingStatus>> = match filter.status.as_str() {
        "" | "active" => vec![Some(FindingStatus::Open), Some(FindingStatus::Accepted)],
        "all" => vec![None],
        s => vec![Some(FindingStatus::parse(s).ok_or_else(|| bad(format!("`{s}` is not a finding status")))?)],
    };
    let mut rows = Vec::new();
    for status in statuses {
        let q = FindingQuery { status, kind, subject: None, limit: MAX_FINDINGS };
        rows.extend(state.engine.governance().findings(&q).await?);
    }
    if !filter.severity.is_empty() {
        rows.retain(|f| f.severity.as_str() == filter.severity);
    }
    rows.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| b.last_seen.cmp(&a.last_seen)));
    let body = html! {
        form.filters method="get" action="/console/findings" role="search" {
            label for="k" { "Kind" }
            select #k name="kind" {
                (option("", "any", &filter.kind))
                @for k in FindingKind::ALL { (option(k.as_str(), k.as_str(), &filter.kind)) }
            }
            label for="sev" { "Severity" }
            select #sev name="severity" {
                (option("", "any", &filter.severity))
                @for s in [Severity::Critical, Severity::High, Severity::Medium, Severity::Low] { (option(s.as_str(), s.as_str(), &filter.severity)) }
            }
            label for="st" { "Status" }
            select #st name="status" {
                @for s in ["active", "open", "accepted", "resolved", "all"] { (option(s, s, if filter.status.is_empty() { "active" } else { &filter.status })) }
            }
            button type="submit" { "Filter" }
        }
        (finding_list(&user, &rows))
    };
    Ok(page("Findings", Some(&user), "/console/findings", body))
}

/// The scopes of a finding's evidence field.
fn scopes(f: &Finding, field: &str) -> Vec<String> {
    f.evidence
        .get(field)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The recommended narrowing as a diff: what goes, what stays or comes.
fn scope_diff(f: &Finding) -> Markup {
    let from = scopes(f, "max_scope");
    let to = scopes(f, "recommended_scope");
    html! {
        pre.diff tabindex="0" aria-label="Recommended narrowing of the max scope" {
            @for s in &from { @if !to.contains(s) { span.del { "- " (s) } "\n" } }
            @for s in &to { @if from.contains(s) { span { "  " (s) } "\n" } @else { span.ins { "+ " (s) } "\n" } }
        }
    }
}

fn finding_list(user: &User, rows: &[Finding]) -> Markup {
    let operate = user.can(Capability::Operate);
    html! {
        @if rows.is_empty() { p.note { "No findings." } }
        @for f in rows {
            article.finding #(f.id) aria-labelledby={ "h-" (f.id) } {
                h3 #{ "h-" (f.id) } { (badge(f.severity.as_str())) " " (f.kind.as_str()) " · " code { (f.subject) } " " (badge(f.status.as_str())) }
                p.note { "First seen " (time(f.first_seen)) ", last seen " (time(f.last_seen)) }
                @if f.kind == FindingKind::OverPrivileged { (scope_diff(f)) }
                details { summary { "Evidence" } (json(&f.evidence)) }
                @if let Some(a) = &f.acceptance { p { "Accepted by " (a.by) " until " (time(a.until)) ": " (a.justification) } }
                @if operate && f.status.is_active() {
                    div.actions {
                        @if f.kind == FindingKind::OverPrivileged {
                            form method="post" action={ "/console/findings/" (f.id) "/apply" } { (csrf(user)) button type="submit" { "Apply the narrowing" } }
                        }
                        @if f.status == FindingStatus::Open {
                            details {
                                summary { "Accept the risk" }
                                form method="post" action={ "/console/findings/" (f.id) "/accept" } {
                                    (csrf(user))
                                    label for={ "j-" (f.id) } { "Justification" }
                                    textarea #{ "j-" (f.id) } name="justification" rows="2" required {}
                                    label for={ "d-" (f.id) } { "For how many days" }
                                    input #{ "d-" (f.id) } type="number" name="days" min="1" max="365" value="30" required;
                                    button type="submit" { "Accept" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Policy page parameters: two versions to compare.
#[derive(Debug, Default, Deserialize)]
pub struct PolicyDiff {
    /// The older version.
    pub from: Option<i64>,
    /// The newer version.
    pub to: Option<i64>,
}

/// `GET /console/policies`: the set in force, its history and a diff.
pub async fn policies(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<PolicyDiff>,
) -> Result<Html<String>, Failure> {
    reader(&user)?;
    policies_page(&state, &user, q, None).await
}

/// The policies page, with a reload's outcome when there was one.
pub async fn policies_page(
    state: &AppState,
    user: &User,
    q: PolicyDiff,
    reload: Option<Result<String, String>>,
) -> Result<Html<String>, Failure> {
    let current = state.engine.policy().current().map(|c| c.version);
    let mut versions = state.engine.policy().versions().await.map_err(|e| Failure::internal(&e))?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.id));
    let text = match current {
        Some(v) => state.engine.policy().version(v).await.map_err(|e| Failure::internal(&e))?,
        None => None,
    };
    let diff = match (q.from, q.to) {
        (Some(a), Some(b)) => {
            let old = state.engine.policy().version(a).await.map_err(|e| Failure::internal(&e))?;
            let new = state.engine.policy().version(b).await.map_err(|e| Failure::internal(&e))?;
            match (old, new) {
                (Some(old), Some(new)) => Some((a, b, diff_lines(&old.policies, &new.policies))),
                _ => return Err(Failure::not_found("no such policy version")),
            }
        }
        _ => None,
    };
    // The latest policy record: a refused set (by the file watcher too) says why.
    let last = state
        .engine
        .audit()
        .query(&AuditQuery { kind: Some(AuditKind::Policy), newest_first: true, limit: 1, ..AuditQuery::default() })
        .await
        .map_err(|e| Failure::internal(&e))?;
    let refused = last
        .first()
        .filter(|r| detail(r, "op") == "refused")
        .map(|r| (r.entry.at, detail(r, "error").to_owned()))
        .filter(|_| reload.is_none());
    let admin = user.can(Capability::Administer);
    let body = html! {
        @if let Some((at, error)) = &refused {
            div.error role="alert" #refused-policy {
                p { "The policy files were refused at " (time(*at)) "; the set below stays in force until they are fixed:" }
                pre tabindex="0" { (error) }
            }
        }
        @match &reload {
            Some(Ok(m)) => { p.ok role="status" #reload-result { (m) } }
            Some(Err(m)) => { div.error role="alert" #reload-result { p { "The reload failed; the previous set stays in force." } pre tabindex="0" { (m) } } }
            None => {}
        }
        @if admin {
            form method="post" action="/console/policies/reload" { (csrf(user)) button type="submit" { "Reload from disk" } }
        }
        section aria-labelledby="history" {
            h2 #history { "History" }
            form.filters method="get" action="/console/policies" {
                label for="from" { "Compare" }
                select #from name="from" { @for v in &versions { @if Some(v.id) == q.from { option value=(v.id) selected { (v.id) } } @else { option value=(v.id) { (v.id) } } } }
                label for="to" { "with" }
                select #to name="to" { @for v in &versions { @if Some(v.id) == q.to.or(current) { option value=(v.id) selected { (v.id) } } @else { option value=(v.id) { (v.id) } } } }
                button type="submit" { "Diff" }
            }
            table {
                thead { tr { th scope="col" { "Version" } th scope="col" { "Loaded" } th scope="col" { "Fingerprint" } } }
                tbody { @for v in &versions { tr { td { (v.id) @if Some(v.id) == current { " " (badge("in-force")) } } td { (time(v.loaded_at)) } td { code.small { (v.hash) } } } } }
            }
        }
        @if let Some((a, b, lines)) = &diff {
            section aria-labelledby="diff" {
                h2 #diff { "Version " (a) " → " (b) }
                pre.diff #policy-diff tabindex="0" { @for (tag, line) in lines { @match tag {
                    '-' => { span.del { "- " (line) } }
                    '+' => { span.ins { "+ " (line) } }
                    _ => { span { "  " (line) } }
                } } }
            }
        }
        @if let Some(t) = &text {
            section aria-labelledby="in-force" {
                h2 #in-force { "In force: version " (t.id) }
                pre.json tabindex="0" { (t.policies) }
            }
        }
    };
    Ok(page("Policies", Some(user), "/console/policies", body))
}

/// A line diff of two policy texts: `('-' | '+' | ' ', line)`.
pub fn diff_lines(old: &str, new: &str) -> Vec<(char, String)> {
    similar::TextDiff::from_lines(old, new)
        .iter_all_changes()
        .map(|c| {
            let tag = match c.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            (tag, c.value().to_owned())
        })
        .collect()
}

/// Kill switch parameters, prefilled from a link.
#[derive(Debug, Default, Deserialize)]
pub struct KillTarget {
    /// `agent`, `task`, `human` or `warrant`.
    #[serde(default)]
    pub kind: String,
    /// Its id.
    #[serde(default)]
    pub id: String,
}

/// `GET /console/kill`: what to revoke.
pub async fn kill(user: User, Query(target): Query<KillTarget>) -> Result<Html<String>, Failure> {
    user.require(Capability::Operate)?;
    let kind = if target.kind.is_empty() { "agent" } else { target.kind.as_str() };
    let body = html! {
        p { "Revoke every live warrant of an agent (which is also suspended), a task, a human or one warrant with its descendants. You will see how many warrants this ends before it happens." }
        form method="post" action="/console/kill/confirm" {
            (csrf(&user))
            label for="kind" { "What" }
            select #kind name="kind" { @for k in ["agent", "task", "human", "warrant"] { (option(k, k, kind)) } }
            label for="target" { "Id" }
            input #target name="id" value=(target.id) required placeholder="agt_…, tsk_…, hum_…, wrt_…";
            label for="reason" { "Reason (kept in the audit log)" }
            input #reason name="reason" required maxlength="500";
            button type="submit" { "Continue" }
        }
    };
    Ok(page("Kill switch", Some(&user), "/console/kill", body))
}

/// The delegation trees a kill switch ends, as a list.
pub fn doomed(now: UnixTime, live: &[LiveWarrant]) -> Markup {
    html! {
        ul #doomed {
            @for w in live.iter().take(100) {
                li { code { (w.jti) } " · " code { (w.agent) } " for " code { (w.human) } " · " (left(now, w.expires_at)) " left" }
            }
            @if live.len() > 100 { li { "and " (live.len() - 100) " more" } }
        }
    }
}
