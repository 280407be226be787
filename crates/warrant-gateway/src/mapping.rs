//! Which decisions an MCP request needs: the default mapping of every MCP method to a
//! Warrant action and resource, and the mappings an upstream declares for its tools in
//! `inputSchema.x-authzen-mapping` (CEL expressions over the call's `params` and the
//! warrant's claims, as the COAZ-MCP profile defines them).
//!
//! Pure: no I/O. [`plan`] turns one JSON-RPC message into a [`Plan`]; the gateway asks
//! the PDP for each [`Evaluation`] of it and forwards the message only if every one is
//! permitted.

use std::sync::Arc;

use serde_json::{Map, Value};
use warrant_core::authzen::{McpCall, Resource};
use warrant_core::Scope;

/// The key under `inputSchema` where a tool declares its mapping.
pub const MAPPING_KEY: &str = "x-authzen-mapping";

/// Methods that target the upstream as a whole: action `mcp.<method>` on `mcp/<u>`.
const SERVER_WIDE: &[&str] = &[
    "initialize",
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "completion/complete",
    "logging/setLevel",
    "tasks/list",
    "tasks/get",
    "tasks/result",
    "tasks/cancel",
];

/// Methods on one resource of the upstream: action `mcp.<method>` on
/// `mcp/<u>/resource/<uri, percent-encoded>`.
const ON_A_RESOURCE: &[&str] = &["resources/read", "resources/subscribe", "resources/unsubscribe"];

/// One decision a request needs (the subject, the warrant, is added by the gateway).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The Warrant action, e.g. `mcp.tools.call`.
    pub action: String,
    /// The AuthZEN resource; `<type>/<id>` is the Warrant resource path.
    pub resource: Resource,
    /// The decision context a declared mapping states (empty for a default mapping).
    pub context: Map<String, Value>,
}

impl Evaluation {
    /// The Warrant resource path, `<type>/<id>`.
    pub fn resource_path(&self) -> String {
        format!("{}/{}", self.resource.kind, self.resource.id)
    }
}

/// What the gateway does with one message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `ping`, a notification or a response: forwarded without a decision.
    PassThrough,
    /// Forwarded only if every evaluation is permitted.
    Decide {
        /// The call, as recorded with each decision.
        call: McpCall,
        /// The decisions, in order.
        evaluations: Vec<Evaluation>,
    },
}

/// Why no AuthZEN request could be built for a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The method has no mapping and is not passed through: denied.
    #[error("method `{0}` is not one the gateway knows how to authorize")]
    UnknownMethod(String),
    /// A parameter the default mapping needs is missing or malformed.
    #[error("`params.{0}` is required and must be a non-empty string without `/`")]
    Param(&'static str),
    /// A declared mapping is malformed or could not be evaluated.
    #[error("COAZ mapping error: {0}")]
    Declared(String),
}

/// The Warrant action of MCP method `method`: `mcp.` + the method with `/` as `.`.
pub fn action_of(method: &str) -> String {
    format!("mcp.{}", method.replace('/', "."))
}

/// `text` percent-encoded: every byte but the unreserved ones (RFC 3986 §2.3), as `%` and
/// two uppercase hex digits, `/` included, so a URI is one resource segment. This is the
/// one canonical spelling the engine accepts (`warrant_core::percent_encode`).
pub fn percent_encode(text: &str) -> String {
    warrant_core::percent_encode(text)
}

fn name_param<'a>(params: &'a Value, key: &'static str) -> Result<&'a str, MappingError> {
    match params.get(key).and_then(Value::as_str) {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
        _ => Err(MappingError::Param(key)),
    }
}

fn mcp_resource(upstream: &str, rest: &[&str]) -> Resource {
    let mut id = upstream.to_owned();
    for part in rest {
        id.push('/');
        id.push_str(part);
    }
    Resource { kind: "mcp".into(), id, properties: Map::new() }
}

/// The default mapping of `method` for upstream `upstream`: one evaluation, or an error
/// for an unknown method or missing parameters.
pub fn default_evaluation(upstream: &str, method: &str, params: &Value) -> Result<Evaluation, MappingError> {
    let resource = if SERVER_WIDE.contains(&method) {
        mcp_resource(upstream, &[])
    } else if ON_A_RESOURCE.contains(&method) {
        let uri = match params.get("uri").and_then(Value::as_str) {
            Some(uri) if !uri.is_empty() => uri,
            _ => return Err(MappingError::Param("uri")),
        };
        mcp_resource(upstream, &["resource", &percent_encode(uri)])
    } else if method == "tools/call" {
        mcp_resource(upstream, &["tool", name_param(params, "name")?])
    } else if method == "prompts/get" {
        mcp_resource(upstream, &["prompt", name_param(params, "name")?])
    } else {
        return Err(MappingError::UnknownMethod(method.chars().take(100).collect()));
    };
    Ok(Evaluation { action: action_of(method), resource, context: Map::new() })
}

/// The decisions one client message needs. `message` is the JSON-RPC object; `declared`
/// finds a tool's declared mapping; `token` is the verified warrant's claims (the CEL
/// variable `token`), `sub` its subject (which a declared mapping's `subject.id` must
/// equal).
pub fn plan(
    upstream: &str,
    message: &Map<String, Value>,
    declared: impl Fn(&str) -> Option<Arc<DeclaredMapping>>,
    token: &Value,
    sub: &str,
) -> Result<Plan, MappingError> {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response to a request of the upstream's carries no method; anything else
        // without one is not a message the gateway lets through.
        if message.contains_key("result") || message.contains_key("error") {
            return Ok(Plan::PassThrough);
        }
        return Err(MappingError::UnknownMethod(String::new()));
    };
    // Only a true notification (no `id`) passes undecided: a request named like one, or
    // a request sent without an `id`, is decided like any other.
    let is_notification = !message.contains_key("id") && method.starts_with("notifications/");
    if method == "ping" || is_notification {
        return Ok(Plan::PassThrough);
    }
    let empty = Value::Object(Map::new());
    let params = message.get("params").unwrap_or(&empty);
    let target = match method {
        "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str).map(str::to_owned),
        m if ON_A_RESOURCE.contains(&m) => params.get("uri").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let call = McpCall { method: method.to_owned(), target, upstream: upstream.to_owned() };
    if method == "tools/call" {
        let tool = name_param(params, "name")?;
        if let Some(mapping) = declared(tool) {
            let evaluations = mapping.evaluate(params, token, sub)?;
            return Ok(Plan::Decide { call, evaluations });
        }
    }
    let evaluation = default_evaluation(upstream, method, params)?;
    Ok(Plan::Decide { call, evaluations: vec![evaluation] })
}

/// A tool's declared mapping (`x-authzen-mapping`), checked when it is learned: exactly
/// one envelope (`evaluation` or `evaluations`), every expression compiles, no subject
/// inside an `evaluations` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredMapping {
    /// The envelope's template, unresolved.
    template: Value,
    /// Whether the envelope is `evaluations`.
    many: bool,
}

fn declared(why: impl Into<String>) -> MappingError {
    MappingError::Declared(why.into())
}

fn cel_env() -> cel::Env {
    cel::Env::stdlib().with_optional_support(true)
}

/// Every `$` expression in `value`, checked to compile.
fn check_expressions(value: &Value, env: &cel::Env) -> Result<(), MappingError> {
    match value {
        Value::String(s) => match expression(s) {
            Some(source) => env
                .compile(source)
                .map(|_| ())
                .map_err(|e| declared(format!("expression `{}` does not compile: {e}", shown(source)))),
            None => Ok(()),
        },
        Value::Array(items) => items.iter().try_for_each(|v| check_expressions(v, env)),
        Value::Object(map) => map.values().try_for_each(|v| check_expressions(v, env)),
        _ => Ok(()),
    }
}

/// The CEL source of a `$`-prefixed string, or `None` for a literal (`$$` escapes `$`).
fn expression(s: &str) -> Option<&str> {
    match s.strip_prefix('$') {
        Some(rest) if !rest.starts_with('$') => Some(rest),
        _ => None,
    }
}

fn shown(text: &str) -> String {
    warrant_core::permission::shown(text)
}

/// Whether `action` is a literal in the template (not a `$` expression).
fn literal_action(action: &Value) -> Option<&str> {
    let name = action.get("name")?.as_str()?;
    match expression(name) {
        Some(_) => None,
        None => Some(name.strip_prefix('$').unwrap_or(name)),
    }
}

impl DeclaredMapping {
    /// Reads a declared mapping.
    pub fn parse(mapping: &Value) -> Result<Self, MappingError> {
        let Some(obj) = mapping.as_object() else { return Err(declared("the mapping is not an object")) };
        let (many, template) = match (obj.len(), obj.get("evaluation"), obj.get("evaluations")) {
            (1, Some(t), None) => (false, t),
            (1, None, Some(t)) => (true, t),
            _ => return Err(declared("the mapping must have exactly one key, `evaluation` or `evaluations`")),
        };
        if !template.is_object() {
            return Err(declared("the envelope is not an object"));
        }
        if many {
            let entries = template
                .get("evaluations")
                .and_then(Value::as_array)
                .ok_or_else(|| declared("an `evaluations` envelope needs an `evaluations` array"))?;
            if entries.iter().any(|e| e.get("subject").is_some()) {
                return Err(declared("an `evaluations` entry must not set `subject`"));
            }
        }
        check_expressions(template, &cel_env())?;
        Ok(DeclaredMapping { template: template.clone(), many })
    }

    /// The actions the mapping names as literals, and whether any is an expression
    /// (known only at call time).
    pub fn literal_actions(&self) -> (Vec<String>, bool) {
        let mut actions = Vec::new();
        let mut dynamic = false;
        let mut visit = |action: Option<&Value>| match action.map(literal_action) {
            Some(Some(a)) => actions.push(a.to_owned()),
            Some(None) => dynamic = true,
            None => {}
        };
        visit(self.template.get("action"));
        if self.many {
            for entry in self.template.get("evaluations").and_then(Value::as_array).into_iter().flatten() {
                visit(entry.get("action"));
            }
        }
        (actions, dynamic)
    }

    /// The evaluations of one call: the template resolved against `params` and `token`,
    /// the subject's id verified against `sub`.
    pub fn evaluate(&self, params: &Value, token: &Value, sub: &str) -> Result<Vec<Evaluation>, MappingError> {
        let env = Arc::new(cel_env());
        let mut ctx = cel::Context::with_env(env);
        let to_cel = |v: &Value| cel::to_value(v).map_err(|e| declared(format!("input not representable: {e}")));
        ctx.add_variable_from_value("params", to_cel(params)?);
        ctx.add_variable_from_value("token", to_cel(token)?);
        let resolved = resolve(&self.template, &ctx)?.unwrap_or(Value::Null);
        let subject = resolved.get("subject").ok_or_else(|| declared("the mapping states no `subject`"))?;
        match subject.get("id").and_then(Value::as_str) {
            Some(id) if id == sub => {}
            Some(_) => return Err(declared("`subject.id` is not the warrant's `sub`")),
            None => return Err(declared("the mapping states no `subject.id`")),
        }
        let context = object(resolved.get("context"), "context")?;
        if !self.many {
            return Ok(vec![evaluation(resolved.get("action"), resolved.get("resource"), context)?]);
        }
        let entries = resolved
            .get("evaluations")
            .and_then(Value::as_array)
            .ok_or_else(|| declared("`evaluations` did not resolve to an array"))?;
        if entries.is_empty() {
            return Err(declared("`evaluations` is empty"));
        }
        entries
            .iter()
            .map(|entry| {
                let context = match entry.get("context") {
                    Some(c) => object(Some(c), "context")?,
                    None => context.clone(),
                };
                let action = entry.get("action").or(resolved.get("action"));
                let resource = entry.get("resource").or(resolved.get("resource"));
                evaluation(action, resource, context)
            })
            .collect()
    }
}

fn object(value: Option<&Value>, name: &str) -> Result<Map<String, Value>, MappingError> {
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(declared(format!("`{name}` is not an object"))),
    }
}

fn text(value: Option<&Value>, name: &str) -> Result<String, MappingError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(declared(format!("`{name}` is missing or not a non-empty string"))),
    }
}

fn evaluation(
    action: Option<&Value>,
    resource: Option<&Value>,
    context: Map<String, Value>,
) -> Result<Evaluation, MappingError> {
    let action = action.ok_or_else(|| declared("no `action`"))?;
    let resource = resource.ok_or_else(|| declared("no `resource`"))?;
    Ok(Evaluation {
        action: text(action.get("name"), "action.name")?,
        resource: Resource {
            kind: text(resource.get("type"), "resource.type")?,
            id: text(resource.get("id"), "resource.id")?,
            properties: object(resource.get("properties"), "resource.properties")?,
        },
        context,
    })
}

/// Resolves a template: literals as they are (`$$` → `$`), `$` strings by evaluating
/// them; a field whose expression yields null or an absent optional is left out.
fn resolve(value: &Value, ctx: &cel::Context) -> Result<Option<Value>, MappingError> {
    match value {
        Value::String(s) => match expression(s) {
            Some(source) => evaluate(source, ctx),
            None => Ok(Some(Value::String(s.strip_prefix('$').unwrap_or(s).to_owned()))),
        },
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(resolve(item, ctx)?.unwrap_or(Value::Null));
            }
            Ok(Some(Value::Array(out)))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(v) = resolve(v, ctx)? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        other => Ok(Some(other.clone())),
    }
}

fn evaluate(source: &str, ctx: &cel::Context) -> Result<Option<Value>, MappingError> {
    let failed = |e: String| declared(format!("expression `{}` failed: {e}", shown(source)));
    let program = cel_env().compile(source).map_err(|e| failed(e.to_string()))?;
    let value = program.execute(ctx).map_err(|e| failed(e.to_string()))?;
    let value = match <&cel::objects::OptionalValue>::try_from(&value) {
        Ok(optional) => match optional.value() {
            Some(inner) => inner.clone(),
            None => return Ok(None),
        },
        Err(_) => value,
    };
    match value.json().map_err(|e| failed(e.to_string()))? {
        Value::Null => Ok(None),
        json => Ok(Some(json)),
    }
}

/// Whether `tools/list` shows tool `tool` of upstream `upstream` to a warrant of `scope`:
/// the scope holds some permission for the action its call maps to (the default mapping:
/// it allows `mcp.tools.call` on `mcp/<u>/tool/<t>`; a declared mapping: some permission
/// names each literal action; an action computed per call does not hide the tool, whose
/// calls are decided anyway).
pub fn tool_visible(scope: &Scope, upstream: &str, tool: &str, mapping: Option<&DeclaredMapping>) -> bool {
    match mapping {
        None => !tool.contains('/') && scope.allows("mcp.tools.call", &format!("mcp/{upstream}/tool/{tool}")),
        Some(m) => {
            let (actions, _) = m.literal_actions();
            actions.iter().all(|a| has_permission_for(scope, a))
        }
    }
}

/// Whether some permission of `scope` allows `action` on some resource.
fn has_permission_for(scope: &Scope, action: &str) -> bool {
    let Ok(any) = warrant_core::Permission::parse(action) else { return false };
    scope.permissions().iter().any(|p| p.meet(&any).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn none(_: &str) -> Option<Arc<DeclaredMapping>> {
        None
    }

    fn token() -> Value {
        json!({"sub": "hum_1", "client_id": "agt_1", "aud": "http://gw/mcp/crm", "roles": ["treasury"]})
    }

    fn only(plan: Plan) -> Evaluation {
        match plan {
            Plan::Decide { mut evaluations, .. } if evaluations.len() == 1 => evaluations.remove(0),
            other => panic!("not one evaluation: {other:?}"),
        }
    }

    #[test]
    fn default_mappings_follow_the_contract() {
        let t = token();
        let cases = [
            (json!({"id": 1, "method": "initialize", "params": {}}), "mcp.initialize", "mcp/crm"),
            (json!({"id": 1, "method": "server/discover"}), "mcp.server.discover", "mcp/crm"),
            (json!({"id": 1, "method": "tools/list"}), "mcp.tools.list", "mcp/crm"),
            (json!({"id": 1, "method": "tools/call", "params": {"name": "get"}}), "mcp.tools.call", "mcp/crm/tool/get"),
            (json!({"id": 1, "method": "prompts/get", "params": {"name": "p"}}), "mcp.prompts.get", "mcp/crm/prompt/p"),
            (
                json!({"id": 1, "method": "resources/read", "params": {"uri": "file:///a b/c"}}),
                "mcp.resources.read",
                "mcp/crm/resource/file%3A%2F%2F%2Fa%20b%2Fc",
            ),
        ];
        for (m, action, path) in cases {
            let e = only(plan("crm", &msg(m), none, &t, "hum_1").unwrap());
            assert_eq!((e.action.as_str(), e.resource_path().as_str()), (action, path));
            assert_eq!(e.resource.kind, "mcp");
            // Every path the gateway asks about is one the engine accepts.
            assert!(warrant_core::Permission::parse(&format!("{action}:{path}")).is_ok(), "{path}");
        }
        // Resource URIs of every kind become one canonical segment the engine accepts.
        for uri in ["file:///docs/readme.md", "https://ex.com/a b?q=ü#f", "urn:x:100%", "s3://b/k~1_-.", "/"] {
            let e = only(
                plan("crm", &msg(json!({"id": 1, "method": "resources/read", "params": {"uri": uri}})), none, &t, "x")
                    .unwrap(),
            );
            let path = e.resource_path();
            let segment = path.strip_prefix("mcp/crm/resource/").unwrap();
            assert_eq!(warrant_core::percent_decode(segment).as_deref(), Ok(uri));
            assert!(warrant_core::Permission::parse(&format!("mcp.resources.read:{path}")).is_ok(), "{path}");
        }
        let p = plan("crm", &msg(json!({"id": 1, "method": "tools/call", "params": {"name": "get"}})), none, &t, "x");
        match p.unwrap() {
            Plan::Decide { call, .. } => {
                assert_eq!(
                    call,
                    McpCall { method: "tools/call".into(), target: Some("get".into()), upstream: "crm".into() }
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_notifications_and_responses_pass_unknown_methods_do_not() {
        let t = token();
        for m in [
            json!({"id": 1, "method": "ping"}),
            json!({"method": "notifications/initialized"}),
            json!({"id": 3, "result": {}}),
            json!({"id": 4, "error": {"code": 1, "message": "no"}}),
        ] {
            assert_eq!(plan("u", &msg(m), none, &t, "s").unwrap(), Plan::PassThrough);
        }
        // Without an `id` a request is still decided; with one, a "notification" is too.
        let sneaky = msg(json!({"method": "tools/call", "params": {"name": "rm"}}));
        assert!(matches!(plan("u", &sneaky, none, &t, "s").unwrap(), Plan::Decide { .. }));
        let sneaky = msg(json!({"id": 5, "method": "notifications/x"}));
        assert!(matches!(plan("u", &sneaky, none, &t, "s"), Err(MappingError::UnknownMethod(_))));
        assert!(plan("u", &msg(json!({"id": 6})), none, &t, "s").is_err());
        let err = plan("u", &msg(json!({"id": 1, "method": "admin/wipe"})), none, &t, "s").unwrap_err();
        assert_eq!(err, MappingError::UnknownMethod("admin/wipe".into()));
        for bad in [json!({}), json!({"name": ""}), json!({"name": "a/../b"}), json!({"name": 3})] {
            let m = msg(json!({"id": 1, "method": "tools/call", "params": bad}));
            assert_eq!(plan("u", &m, none, &t, "s").unwrap_err(), MappingError::Param("name"));
        }
    }

    fn transfer() -> DeclaredMapping {
        DeclaredMapping::parse(&json!({"evaluation": {
            "subject": {"type": "identity", "id": "$token.sub"},
            "action": {"name": "$params.arguments.currency == 'USD' ? 'payments.domestic' : 'payments.international'"},
            "resource": {"type": "account", "id": "$params.arguments.from",
                         "properties": {"sensitivity": "$params.arguments.amount > 10000 ? 'high' : 'standard'"}},
            "context": {"agent": "$token.?client_id", "missing": "$params.arguments.?nope", "price": "$$5",
                        "amount": "$params.arguments.amount"}
        }}))
        .unwrap()
    }

    #[test]
    fn a_declared_mapping_is_resolved_with_cel() {
        let m = Arc::new(transfer());
        let call = json!({"id": 9, "method": "tools/call", "params": {"name": "transfer",
            "arguments": {"currency": "EUR", "from": "acc-1", "amount": 20000}}});
        let e = only(plan("bank", &msg(call), |t| (t == "transfer").then(|| m.clone()), &token(), "hum_1").unwrap());
        assert_eq!(e.action, "payments.international");
        assert_eq!(e.resource_path(), "account/acc-1");
        assert_eq!(e.resource.properties.get("sensitivity"), Some(&json!("high")));
        assert_eq!(e.context.get("agent"), Some(&json!("agt_1")));
        assert_eq!(e.context.get("price"), Some(&json!("$5")));
        assert_eq!(e.context.get("amount"), Some(&json!(20000)));
        assert!(!e.context.contains_key("missing"), "an absent optional leaves its field out");
        assert_eq!(m.literal_actions(), (vec![], true));
    }

    #[test]
    fn declared_mapping_errors_are_mapping_errors() {
        let args = json!({"name": "transfer", "arguments": {"currency": "USD", "from": "a", "amount": 1}});
        // The subject must be the warrant's.
        let err = transfer().evaluate(&args, &token(), "hum_other").unwrap_err();
        assert!(matches!(err, MappingError::Declared(ref w) if w.contains("subject.id")), "{err:?}");
        // A missing argument.
        let err = transfer().evaluate(&json!({"arguments": {}}), &token(), "hum_1").unwrap_err();
        assert!(matches!(err, MappingError::Declared(ref w) if w.contains("failed")), "{err:?}");
        // Malformed mappings.
        for bad in [
            json!({"evaluation": {}, "evaluations": {}}),
            json!({"other": {}}),
            json!({"evaluation": {"action": {"name": "$)("}}}),
            json!({"evaluations": {"subject": {"id": "$token.sub"}, "evaluations": [{"subject": {"id": "x"}}]}}),
            json!([]),
        ] {
            assert!(DeclaredMapping::parse(&bad).is_err(), "{bad}");
        }
        // No subject.
        let m = DeclaredMapping::parse(
            &json!({"evaluation": {"action": {"name": "a"}, "resource": {"type": "t", "id": "i"}}}),
        )
        .unwrap();
        assert!(m.evaluate(&json!({}), &token(), "hum_1").is_err());
    }

    #[test]
    fn an_evaluations_envelope_gives_one_decision_per_entry() {
        let m = DeclaredMapping::parse(&json!({"evaluations": {
            "subject": {"type": "identity", "id": "$token.sub"},
            "context": {"agent": "$token.client_id"},
            "evaluations": [
                {"action": {"name": "storage.read"}, "resource": {"type": "objects", "id": "$params.arguments.source"}},
                {"action": {"name": "storage.write"}, "resource": {"type": "objects", "id": "$params.arguments.destination"}}
            ]
        }}))
        .unwrap();
        let all = m.evaluate(&json!({"arguments": {"source": "a", "destination": "b"}}), &token(), "hum_1").unwrap();
        let got: Vec<_> = all.iter().map(|e| (e.action.as_str(), e.resource_path())).collect();
        assert_eq!(got, [("storage.read", "objects/a".to_owned()), ("storage.write", "objects/b".to_owned())]);
        assert_eq!(all[1].context.get("agent"), Some(&json!("agt_1")));
        assert_eq!(m.literal_actions(), (vec!["storage.read".into(), "storage.write".into()], false));
    }

    #[test]
    fn tools_are_visible_when_the_scope_holds_a_permission_for_their_action() {
        let scope = Scope::parse("mcp.tools.call:mcp/crm/tool/get storage.read:objects/**").unwrap();
        assert!(tool_visible(&scope, "crm", "get", None));
        assert!(!tool_visible(&scope, "crm", "delete", None));
        assert!(!tool_visible(&scope, "other", "get", None));
        let copy = DeclaredMapping::parse(&json!({"evaluation": {"subject": {"id": "$token.sub"},
            "action": {"name": "storage.read"}, "resource": {"type": "objects", "id": "x"}}}))
        .unwrap();
        assert!(tool_visible(&scope, "crm", "copy", Some(&copy)));
        let write = DeclaredMapping::parse(&json!({"evaluation": {"subject": {"id": "$token.sub"},
            "action": {"name": "storage.write"}, "resource": {"type": "objects", "id": "x"}}}))
        .unwrap();
        assert!(!tool_visible(&scope, "crm", "copy", Some(&write)));
        assert!(tool_visible(&Scope::parse("storage.*").unwrap(), "crm", "copy", Some(&write)));
    }
}
