//! Cedar values built as Cedar holds them, without evaluating an expression per value.
//!
//! Cedar's public API takes every attribute as an expression and evaluates each one on
//! every request: a context of twelve attributes, a caller's JSON object or a resource
//! entity is built as an expression tree, then evaluated into values, then the entity
//! store's ancestor relation is recomputed over every entity when one is added. Most of a
//! decision's time went there rather than into the policies.
//!
//! This module builds the same values directly with `cedar-policy-core`, the engine that
//! `cedar-policy` is a facade over (pinned to the same exact version, so the types are
//! the facade's own):
//!
//! * [`WarrantContext`]: the part of the Cedar context that only depends on the warrant
//!   (mode, human, owner, chain, task, purpose, scope), built once per verified warrant
//!   and shared by every decision made with it;
//! * [`json_object`]: the caller's JSON (`context`, `resource_attrs`) in one pass;
//! * [`with_entities`]: the request's own entities (the resource, the agent's activity)
//!   added to the cached entities of the agent and action. They have no parents and no
//!   entity has them as one, so the cached store's ancestor relation stays closed and is
//!   not recomputed.
//!
//! What the caller's JSON may be is bounded here too ([`MAX_DEPTH`]), and what cannot be
//! handed to Cedar is an [`EvalError`], on which the caller denies.
//!
//! The semantics are the public API's: the tests below build each value both ways and
//! compare them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cedar_policy::{Context, Entities, EntityUid};
use cedar_policy_core::ast::{self, PartialValue, Value};
use cedar_policy_core::entities::{NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use ref_cast::RefCast as _;
use smol_str::SmolStr;
use warrant_core::WarrantClaims;

/// How deeply nested the caller's `context` and `resource_attrs` may be.
pub const MAX_DEPTH: usize = 8;

/// Why the input could not be handed to Cedar. The caller denies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The caller's `context` or `resource_attrs` holds something Cedar cannot take.
    #[error("{0}")]
    Input(String),
    /// Cedar refused to build the entities, context or request.
    #[error("cannot build the Cedar request: {0}")]
    Cedar(String),
}

/// The warrant-derived part of a decision's Cedar context, built once per verified
/// warrant: `mode`, `human`, `owner`, `chain`, `root_agent`, `chain_depth`, `task`,
/// `purpose` and `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantContext {
    attrs: Arc<BTreeMap<SmolStr, Value>>,
}

impl WarrantContext {
    /// The context attributes `claims` give every decision made with them.
    pub fn new(claims: &WarrantClaims) -> Self {
        let chain = claims.chain();
        let text = |s: &str| Value::from(s);
        let attrs = named([
            ("mode", text(claims.mode.as_str())),
            ("human", text(claims.human().as_str())),
            ("owner", text(claims.owner.as_str())),
            ("chain", strings(chain.iter().map(|a| a.as_str()))),
            ("root_agent", text(chain.first().map(|a| a.as_str()).unwrap_or_default())),
            ("chain_depth", Value::from(i64::try_from(chain.len()).unwrap_or(i64::MAX))),
            ("task", text(claims.task.id.as_str())),
            ("purpose", text(&claims.task.purpose)),
            ("scope", strings(claims.scope.split_whitespace())),
        ]);
        WarrantContext { attrs: Arc::new(attrs) }
    }

    /// The whole context: these attributes and the request's own. A request attribute
    /// never replaces a warrant-derived one (the callers only add names of their own).
    pub(crate) fn with(&self, request: impl IntoIterator<Item = (&'static str, Value)>) -> Context {
        let mut attrs = (*self.attrs).clone();
        for (name, value) in request {
            attrs.entry(SmolStr::new_static(name)).or_insert(value);
        }
        context_of(attrs)
    }
}

/// Attributes by name.
fn named(fields: impl IntoIterator<Item = (&'static str, Value)>) -> BTreeMap<SmolStr, Value> {
    fields.into_iter().map(|(k, v)| (SmolStr::new_static(k), v)).collect()
}

/// A Cedar context of exactly `fields`.
pub(crate) fn context(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Context {
    context_of(named(fields))
}

fn context_of(attrs: BTreeMap<SmolStr, Value>) -> Context {
    Context::ref_cast(&ast::Context::Value(Arc::new(attrs))).clone()
}

/// A set of strings.
pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::set(items.into_iter().map(Value::from), None)
}

/// A record of `fields`.
pub(crate) fn record(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::record_arc(Arc::new(named(fields)), None)
}

/// Where a value sits in the caller's JSON (`context.a.b`), spelled out only in an error.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    key: &'a str,
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.key)
    }
}

/// A JSON value as a Cedar value; `None` for `null` (an absent optional attribute, and
/// dropped from a set). Numbers must be 64-bit integers; at most [`MAX_DEPTH`] levels.
fn json(field: Path<'_>, value: &serde_json::Value, depth: usize) -> Result<Option<Value>, EvalError> {
    use serde_json::Value as Json;
    if depth > MAX_DEPTH {
        return Err(EvalError::Input(format!("`{field}` is nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(Some(match value {
        Json::Null => return Ok(None),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => {
                return Err(EvalError::Input(format!(
                    "`{field}` is `{n}`: Cedar numbers are 64-bit integers (send cents, not dollars)"
                )))
            }
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if let Some(v) = json(field, item, depth + 1)? {
                    out.push(v);
                }
            }
            Value::set(out, None)
        }
        Json::Object(map) => json_record(field, map, depth + 1)?,
    }))
}

fn json_record(
    field: Path<'_>,
    map: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
) -> Result<Value, EvalError> {
    let mut fields = BTreeMap::new();
    for (k, v) in map {
        if let Some(value) = json(Path { parent: Some(&field), key: k }, v, depth)? {
            fields.insert(SmolStr::new(k), value);
        }
    }
    Ok(Value::record_arc(Arc::new(fields), None))
}

/// A caller's JSON object named `field` (absent or `null`: an empty record) as a Cedar
/// record. Its numbers must be 64-bit integers, its depth at most [`MAX_DEPTH`].
pub fn json_object(field: &str, value: Option<&serde_json::Value>) -> Result<Value, EvalError> {
    let field = Path { parent: None, key: field };
    match value {
        None | Some(serde_json::Value::Null) => Ok(Value::empty_record(None)),
        Some(serde_json::Value::Object(map)) => json_record(field, map, 0),
        Some(_) => Err(EvalError::Input(format!("`{field}` must be a JSON object"))),
    }
}

/// An entity: `attrs` as attributes, `parents` as its parents, `tags` as tags.
pub(crate) fn entity(
    uid: &EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, Value)>,
    parents: impl IntoIterator<Item = EntityUid>,
    tags: impl IntoIterator<Item = (SmolStr, Value)>,
) -> ast::Entity {
    ast::Entity::new_with_attr_partial_value(
        ast::EntityUID::from(uid.clone()),
        attrs.into_iter().map(|(k, v)| (SmolStr::new_static(k), PartialValue::Value(v))),
        HashSet::new(),
        parents.into_iter().map(ast::EntityUID::from).collect(),
        tags.into_iter().map(|(k, v)| (k, PartialValue::Value(v))),
    )
}

/// An entity with no parents: `attrs` as attributes, `tags` as tags.
pub(crate) fn leaf_entity(
    uid: &EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, Value)>,
    tags: impl IntoIterator<Item = (SmolStr, Value)>,
) -> ast::Entity {
    entity(uid, attrs, [], tags)
}

/// `base` with `leaves` added: entities with no parents that no entity has as a parent
/// ([`leaf_entity`]), so the ancestor relation `base` holds stays transitively closed.
pub(crate) fn with_entities(base: &Entities, leaves: Vec<ast::Entity>) -> Result<Entities, EvalError> {
    debug_assert!(leaves.iter().all(|e| e.parents().next().is_none()));
    let core: &cedar_policy_core::entities::Entities = base.as_ref();
    let extended = core
        .clone()
        .add_entities(
            leaves.into_iter().map(Arc::new),
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            Extensions::all_available(),
        )
        .map_err(|e| EvalError::Cedar(e.to_string()))?;
    Ok(Entities::from(extended))
}

#[cfg(test)]
mod tests {
    //! Each value built here equals the one Cedar's public API builds from expressions.

    use cedar_policy::{Entity, EntityId, EntityTypeName, RestrictedExpression};
    use proptest::prelude::*;
    use serde_json::json as j;

    use super::*;

    /// The public API's reading of a JSON value (the reference).
    fn expression(value: &serde_json::Value) -> Option<RestrictedExpression> {
        use serde_json::Value as Json;
        Some(match value {
            Json::Null => return None,
            Json::Bool(b) => RestrictedExpression::new_bool(*b),
            Json::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
            Json::String(s) => RestrictedExpression::new_string(s.clone()),
            Json::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(expression)),
            Json::Object(map) => {
                RestrictedExpression::new_record(map.iter().filter_map(|(k, v)| Some((k.clone(), expression(v)?))))
                    .ok()?
            }
        })
    }

    fn reference_context(pairs: Vec<(String, RestrictedExpression)>) -> Context {
        Context::from_pairs(pairs).unwrap()
    }

    fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z\u{e9}\u{1F600} ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_is_read_as_cedar_reads_the_same_expression(value in arbitrary_json()) {
            let object = j!({ "x": value });
            let ours = context([("t", json_object("context", Some(&object)).unwrap())]);
            let theirs = reference_context(vec![("t".to_owned(), expression(&object).unwrap())]);
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn json_refuses_what_cedar_cannot_hold() {
        assert!(json_object("context", Some(&j!({ "price": 1.5 }))).is_err());
        assert!(json_object("context", Some(&j!([1]))).is_err());
        // The object's own values are at depth 0: MAX_DEPTH + 1 nested objects still fit.
        let mut deep = j!(1);
        for _ in 0..=MAX_DEPTH {
            deep = j!({ "d": deep });
        }
        assert!(json_object("context", Some(&deep)).is_ok());
        let err = json_object("context", Some(&j!({ "d": deep }))).unwrap_err().to_string();
        assert!(err.contains("`context.d.d.d.d.d.d.d.d.d.d` is nested deeper"), "{err}");
        let err = json_object("context", Some(&j!({ "a": { "b": [1.5] } }))).unwrap_err().to_string();
        assert!(err.starts_with("`context.a.b` is `1.5`"), "{err}");
        assert_eq!(json_object("context", None).unwrap(), Value::empty_record(None));
    }

    #[test]
    fn the_warrant_context_is_the_one_expressions_give() {
        use warrant_core::{Actor, AgentId, HumanId, Mode, TaskClaim, TaskId, UnixTime, WarrantId};
        let chain = [AgentId::from_random([7; 12]), AgentId::from_random([8; 12])];
        let human = HumanId::from_random([3; 12]);
        let claims = WarrantClaims {
            iss: "http://issuer".into(),
            sub: human.to_string(),
            aud: "http://issuer".into(),
            exp: UnixTime(2_000_000_000),
            iat: UnixTime(1_000),
            nbf: UnixTime(1_000),
            jti: WarrantId::from_random([4; 12]),
            client_id: chain[1].clone(),
            scope: "crm.read  crm.write:accounts/*".into(),
            act: Actor::from_chain(&chain).unwrap(),
            task: TaskClaim { id: TaskId::from_random([5; 12]), purpose: "quarterly report".into(), human },
            mode: Mode::Delegated,
            owner: HumanId::from_random([2; 12]),
            parent: None,
            cnf: None,
            budget: Default::default(),
        };
        let ours = WarrantContext::new(&claims).with([("hour", Value::from(3))]);
        let chain = claims.chain();
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let theirs = reference_context(vec![
            ("mode".into(), s(claims.mode.as_str())),
            ("human".into(), s(claims.human().as_str())),
            ("owner".into(), s(claims.owner.as_str())),
            ("chain".into(), RestrictedExpression::new_set(chain.iter().map(|a| s(a.as_str())))),
            ("root_agent".into(), s(chain[0].as_str())),
            ("chain_depth".into(), RestrictedExpression::new_long(chain.len() as i64)),
            ("task".into(), s(claims.task.id.as_str())),
            ("purpose".into(), s("quarterly report")),
            ("scope".into(), RestrictedExpression::new_set([s("crm.read"), s("crm.write:accounts/*")])),
            ("hour".into(), RestrictedExpression::new_long(3)),
        ]);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_leaf_entity_is_the_one_expressions_give() {
        let ty: EntityTypeName = "Warrant::Resource".parse().unwrap();
        let uid = EntityUid::from_type_name_and_id(ty, EntityId::new("crm/accounts/7"));
        let attrs = j!({ "owner": "hum_1", "tier": 2, "tags": ["a", "b"] });
        let ours = leaf_entity(
            &uid,
            [("path", Value::from("crm/accounts/7")), ("attrs", json_object("attrs", Some(&attrs)).unwrap())],
            [(SmolStr::new("k"), Value::from(4))],
        );
        let theirs = Entity::new_with_tags(
            uid,
            [
                ("path".to_owned(), RestrictedExpression::new_string("crm/accounts/7".into())),
                ("attrs".to_owned(), expression(&attrs).unwrap()),
            ],
            [],
            [("k".to_owned(), RestrictedExpression::new_long(4))],
        )
        .unwrap();
        assert!(ours.deep_eq(theirs.as_ref()), "{ours:?}\n{theirs:?}");
    }

    #[test]
    fn leaves_join_a_closed_store_and_it_stays_closed() {
        let human: EntityTypeName = "Warrant::Human".parse().unwrap();
        let agent: EntityTypeName = "Warrant::Agent".parse().unwrap();
        let resource: EntityTypeName = "Warrant::Resource".parse().unwrap();
        let owner = EntityUid::from_type_name_and_id(human, EntityId::new("hum_1"));
        let me = EntityUid::from_type_name_and_id(agent, EntityId::new("agt_1"));
        let base = Entities::from_entities(
            [
                Entity::new_no_attrs(owner.clone(), HashSet::new()),
                Entity::new_no_attrs(me.clone(), HashSet::from([owner.clone()])),
            ],
            None,
        )
        .unwrap();
        let thing = EntityUid::from_type_name_and_id(resource, EntityId::new("x"));
        let ours = with_entities(&base, vec![leaf_entity(&thing, [("path", Value::from("x"))], [])]).unwrap();
        let theirs = base
            .clone()
            .add_entities(
                [Entity::new(
                    thing.clone(),
                    [("path".to_owned(), RestrictedExpression::new_string("x".into()))].into(),
                    HashSet::new(),
                )
                .unwrap()],
                None,
            )
            .unwrap();
        assert_eq!(ours, theirs);
        assert!(ours.is_ancestor_of(&owner, &me));
        // The same uid twice with different attributes is refused, as the public API refuses it.
        assert!(with_entities(&ours, vec![leaf_entity(&thing, [("path", Value::from("y"))], [])]).is_err());
    }
}
