#![expect(clippy::unwrap_used, clippy::expect_used, missing_docs, reason = "benchmark code")]
//! The generated policy set, as Cedar and as Rego, from one list of [`Rule`]s, and the
//! [`Probe`] requests asked of it.
//!
//! A set of N policies is the default `permit-within-scope`, a global `cost-ceiling`, and
//! N-2 forbids, one per action namespace `svc{i}` (i = 2..N), of five kinds chosen by
//! `i % 5`: a delegation-depth limit, no autonomous deletes, business hours only, a
//! per-service cost ceiling, and a row limit on reads and exports. The benchmark request
//! ([`Probe::bench`]) is `svc3.write` on `accounts/7` with an estimated cost under
//! svc3's ceiling: it is allowed, and of the N policies exactly three can apply to it
//! (the permit, the global ceiling and `svc3-cost`).

use serde_json::{json, Value};
use warrant_core::{Mode, UnixTime};
use warrant_policy::{CompiledPolicies, PolicyFile};

use crate::T0;

/// One forbid of the generated set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// No single action may cost more than `limit` (every action).
    CostCeiling { limit: i64 },
    /// `svc{svc}.*` only within `max` agents of the root.
    Depth { svc: usize, max: i64 },
    /// `svc{svc}.delete` never by autonomous work.
    NoAutonomousDelete { svc: usize },
    /// `svc{svc}.*` only Monday to Friday, 08:00 to 18:00 UTC.
    BusinessHours { svc: usize },
    /// `svc{svc}.*` may not cost more than `limit`.
    Cost { svc: usize, limit: i64 },
    /// `svc{svc}.read` and `svc{svc}.export` of at most `max` rows.
    Rows { svc: usize, max: i64 },
}

/// The id of the permit every set holds.
pub const PERMIT_ID: &str = "permit-within-scope";

impl Rule {
    /// The policy id (`@id`).
    pub fn id(&self) -> String {
        match self {
            Rule::CostCeiling { .. } => "cost-ceiling".to_owned(),
            Rule::Depth { svc, .. } => format!("svc{svc}-depth"),
            Rule::NoAutonomousDelete { svc } => format!("svc{svc}-mode"),
            Rule::BusinessHours { svc } => format!("svc{svc}-hours"),
            Rule::Cost { svc, .. } => format!("svc{svc}-cost"),
            Rule::Rows { svc, .. } => format!("svc{svc}-rows"),
        }
    }

    /// The rule as a Cedar forbid.
    pub fn cedar(&self) -> String {
        let id = self.id();
        let ns = |svc: &usize| format!("Warrant::Action::\"svc{svc}.*\"");
        match self {
            Rule::CostCeiling { limit } => format!(
                "@id(\"{id}\")\nforbid (principal, action, resource)\n\
                 when {{ context.telemetry has estimated_cost && context.telemetry.estimated_cost > {limit} }};\n"
            ),
            Rule::Depth { svc, max } => format!(
                "@id(\"{id}\")\nforbid (principal, action in {}, resource)\nwhen {{ context.chain_depth > {max} }};\n",
                ns(svc)
            ),
            Rule::NoAutonomousDelete { svc } => format!(
                "@id(\"{id}\")\nforbid (principal, action == Warrant::Action::\"svc{svc}.delete\", resource)\n\
                 when {{ context.mode == \"autonomous\" }};\n"
            ),
            Rule::BusinessHours { svc } => format!(
                "@id(\"{id}\")\nforbid (principal, action in {}, resource)\n\
                 unless {{ context.weekday < 5 && context.hour >= 8 && context.hour < 18 }};\n",
                ns(svc)
            ),
            Rule::Cost { svc, limit } => format!(
                "@id(\"{id}\")\nforbid (principal, action in {}, resource)\n\
                 when {{ context.telemetry has estimated_cost && context.telemetry.estimated_cost > {limit} }};\n",
                ns(svc)
            ),
            Rule::Rows { svc, max } => format!(
                "@id(\"{id}\")\nforbid (\n  principal,\n  \
                 action in [Warrant::Action::\"svc{svc}.read\", Warrant::Action::\"svc{svc}.export\"],\n  resource\n)\n\
                 when {{ context.telemetry has rows && context.telemetry.rows > {max} }};\n"
            ),
        }
    }

    /// The rule as one Rego `deny` rule over the input of [`rego_input`](crate::anchors::rego_input).
    pub fn rego(&self) -> String {
        let id = self.id();
        let body = match self {
            Rule::CostCeiling { limit } => format!("  input.context.estimated_cost > {limit}"),
            Rule::Depth { svc, max } => {
                format!("  startswith(input.action, \"svc{svc}.\")\n  input.chain_depth > {max}")
            }
            Rule::NoAutonomousDelete { svc } => {
                format!("  input.action == \"svc{svc}.delete\"\n  input.mode == \"autonomous\"")
            }
            Rule::BusinessHours { svc } => format!("  startswith(input.action, \"svc{svc}.\")\n  not business_hours"),
            Rule::Cost { svc, limit } => {
                format!("  startswith(input.action, \"svc{svc}.\")\n  input.context.estimated_cost > {limit}")
            }
            Rule::Rows { svc, max } => {
                format!("  input.action in {{\"svc{svc}.read\", \"svc{svc}.export\"}}\n  input.context.rows > {max}")
            }
        };
        format!("# {id}\ndeny if {{\n{body}\n}}\n")
    }
}

/// The N-1 forbids of a set of `n` policies (the permit is the N-th).
pub fn rules(n: usize) -> Vec<Rule> {
    let mut out = Vec::with_capacity(n.saturating_sub(1));
    if n >= 2 {
        out.push(Rule::CostCeiling { limit: 10_000 });
    }
    for svc in 2..n {
        let limit = 1000 + 10 * i64::try_from(svc).unwrap();
        out.push(match svc % 5 {
            0 => Rule::Depth { svc, max: 2 },
            1 => Rule::NoAutonomousDelete { svc },
            2 => Rule::BusinessHours { svc },
            3 => Rule::Cost { svc, limit },
            _ => Rule::Rows { svc, max: 1000 },
        });
    }
    out
}

/// The Cedar text of a set of `n` policies (one file).
pub fn cedar_text(n: usize) -> String {
    let mut text = format!(
        "// {n} generated policies: the default permit, a global cost ceiling and one forbid per service.\n\n\
         @id(\"{PERMIT_ID}\")\npermit (principal, action, resource);\n"
    );
    for rule in rules(n) {
        text.push('\n');
        text.push_str(&rule.cedar());
    }
    text
}

/// The file name the Cedar set is written under.
pub fn cedar_file_name(n: usize) -> String {
    format!("bench-{n}.cedar")
}

/// The Cedar set as the policy files Warrant compiles.
pub fn cedar_files(n: usize) -> Vec<PolicyFile> {
    vec![PolicyFile { name: cedar_file_name(n), text: cedar_text(n) }]
}

/// The Cedar set compiled and validated by Warrant against its shipped schema.
pub fn compiled(n: usize) -> CompiledPolicies {
    CompiledPolicies::compile(cedar_files(n), warrant_policy::schema::BASE_SCHEMA).expect("the generated set compiles")
}

/// The rule every generated Rego policy is evaluated at.
pub const REGO_ENTRY: &str = "data.warrant.allow";

/// The same semantics in Rego: `allow` unless some `deny` holds.
pub fn rego_text(n: usize) -> String {
    let mut text = format!(
        "# {n} generated policies, the same semantics as the Cedar set.\npackage warrant\n\n\
         default allow := false\n\n\
         # {PERMIT_ID}: whatever the scope covers is allowed, unless a forbid says otherwise.\n\
         allow if not deny\n\n\
         business_hours if {{\n  input.weekday < 5\n  input.hour >= 8\n  input.hour < 18\n}}\n"
    );
    for rule in rules(n) {
        text.push('\n');
        text.push_str(&rule.rego());
    }
    text
}

/// One request asked of the policies, with the answer the semantics give.
#[derive(Debug, Clone)]
pub struct Probe {
    /// A short name for messages.
    pub name: &'static str,
    /// The concrete action.
    pub action: String,
    /// The concrete resource path.
    pub resource: String,
    /// The caller's `context` (a JSON object).
    pub telemetry: Value,
    /// The caller's `resource_attrs` (a JSON object).
    pub resource_attrs: Value,
    /// How many agents the warrant's chain holds (1 at the root).
    pub depth: usize,
    /// Delegated or autonomous work.
    pub mode: Mode,
    /// The decision time.
    pub at: UnixTime,
    /// Whether the semantics allow it (for sets where the named service exists).
    pub allow: bool,
}

impl Probe {
    fn new(name: &'static str, action: &str, telemetry: Value, allow: bool) -> Self {
        Probe {
            name,
            action: action.to_owned(),
            resource: "accounts/7".to_owned(),
            telemetry,
            resource_attrs: json!({ "owner": "hum_finance", "classification": "internal" }),
            depth: 1,
            mode: Mode::Delegated,
            at: T0,
            allow,
        }
    }

    /// The request every decision benchmark asks: `svc3.write` on `accounts/7`, cost
    /// 500 (svc3's ceiling is 1030): allowed.
    pub fn bench() -> Self {
        Probe::new("bench", "svc3.write", json!({ "estimated_cost": 500, "query": "update balance" }), true)
    }
}

/// Requests with known answers, over services 2 to 9 (present in every generated set of
/// 10 policies or more).
pub fn probes() -> Vec<Probe> {
    let hour = |h: i64| UnixTime(T0.secs() - 10 * 3600 + h * 3600);
    let saturday = UnixTime(T0.secs() + 4 * 86_400);
    vec![
        Probe::bench(),
        Probe::new("svc3 over its ceiling", "svc3.write", json!({ "estimated_cost": 5000 }), false),
        Probe::new("over the global ceiling", "svc3.write", json!({ "estimated_cost": 20_000 }), false),
        Probe::new("no telemetry", "svc3.read", json!({}), true),
        Probe::new("svc8 under its ceiling", "svc8.pay", json!({ "estimated_cost": 1050 }), true),
        Probe::new("svc8 over its ceiling", "svc8.pay", json!({ "estimated_cost": 1090 }), false),
        Probe { at: hour(3), ..Probe::new("svc2 at night", "svc2.deploy", json!({}), false) },
        Probe { at: hour(17), ..Probe::new("svc2 in business hours", "svc2.deploy", json!({}), true) },
        Probe { at: saturday, ..Probe::new("svc7 on a Saturday", "svc7.deploy", json!({}), false) },
        Probe { depth: 3, ..Probe::new("svc5 three deep", "svc5.transfer", json!({}), false) },
        Probe { depth: 2, ..Probe::new("svc5 two deep", "svc5.transfer", json!({}), true) },
        Probe { mode: Mode::Autonomous, ..Probe::new("svc6 autonomous delete", "svc6.delete", json!({}), false) },
        Probe::new("svc6 delegated delete", "svc6.delete", json!({}), true),
        Probe { mode: Mode::Autonomous, ..Probe::new("svc6 autonomous write", "svc6.write", json!({}), true) },
        Probe::new("svc4 big export", "svc4.export", json!({ "rows": 5000 }), false),
        Probe::new("svc9 big read", "svc9.read", json!({ "rows": 1001 }), false),
        Probe::new("svc4 big write", "svc4.write", json!({ "rows": 5000 }), true),
        Probe::new("svc4.export.sub is not svc4.export", "svc4.export.csv", json!({ "rows": 5000 }), true),
        Probe::new("unknown service", "billing.refund", json!({ "estimated_cost": 9000 }), true),
    ]
}
