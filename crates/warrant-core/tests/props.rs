#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

//! Property tests for `warrant-core`: the invariants listed in `docs/architecture.md`.
//!
//! The permission and scope algebra is checked against a small reference model: patterns
//! over a tiny alphabet, a naive matcher written without the crate, and a finite universe
//! of concrete requests that is large enough to separate any two generated patterns.
//! The delegation rules are checked against invariants 1, 2 and 6.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::strategy::Union;
use warrant_core::delegation::{grant_delegation, grant_root, DelegationRequest, RootRequest};
use warrant_core::{
    Actor, Agent, AgentId, AgentStatus, DelegationError, Grant, Human, HumanId, HumanStatus, Limits, Mode, Permission,
    PublicJwk, Scope, TaskClaim, TaskId, UnixTime, WarrantClaims, WarrantId,
};

// ---------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------

/// Action segments patterns are built from.
const ACTION_ALPHABET: [&str; 3] = ["a", "b", "c"];
/// Resource pattern segments (`*` is the one-segment wildcard).
const RESOURCE_ALPHABET: [&str; 3] = ["x", "y", "*"];
/// Concrete action segments: `d` never appears in a pattern ("any other segment").
const UNIVERSE_ACTIONS: [&str; 4] = ["a", "b", "c", "d"];
/// Concrete resource segments: `z` never appears in a pattern ("any other segment").
const UNIVERSE_RESOURCES: [&str; 3] = ["x", "y", "z"];
/// The longest action pattern body and resource pattern body the generators produce.
const MAX_PATTERN_SEGMENTS: usize = 3;
/// Concrete actions have 1..=4 segments: one more than the longest wildcard body, so
/// `a.b.c.*` can be told from `a.b.c`.
const MAX_ACTION_LEN: usize = MAX_PATTERN_SEGMENTS + 1;
/// Concrete resources have 1..=5 segments: `**` after three segments needs paths of 3, 4
/// and 5 segments to be told from `*`, `*/*` and their unions.
const MAX_RESOURCE_LEN: usize = MAX_PATTERN_SEGMENTS + 2;

/// A resource pattern of the model: literal or `*` segments, optionally a final `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelResource {
    segments: Vec<String>,
    rest: bool,
}

/// A permission of the model. `action` empty with `action_wild` is the lone `*`;
/// `resource: None` is "no resource part".
#[derive(Clone, PartialEq, Eq)]
struct ModelPerm {
    action: Vec<String>,
    action_wild: bool,
    resource: Option<ModelResource>,
}

impl ModelPerm {
    /// The permission as text, in the permission syntax (`action` or `action:resource-pattern`).
    fn text(&self) -> String {
        let mut out = if self.action.is_empty() {
            "*".to_owned()
        } else if self.action_wild {
            format!("{}.*", self.action.join("."))
        } else {
            self.action.join(".")
        };
        if let Some(r) = &self.resource {
            let mut segments = r.segments.clone();
            if r.rest {
                segments.push("**".to_owned());
            }
            out.push(':');
            out.push_str(&segments.join("/"));
        }
        out
    }

    /// Reads back a permission printed by the crate (same syntax, no validation).
    fn from_text(text: &str) -> ModelPerm {
        let (action_text, resource_text) = match text.split_once(':') {
            Some((a, r)) => (a, Some(r)),
            None => (text, None),
        };
        let split = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        let (action, action_wild) = if action_text == "*" {
            (Vec::new(), true)
        } else if let Some(body) = action_text.strip_suffix(".*") {
            (split(body), true)
        } else {
            (split(action_text), false)
        };
        let resource = resource_text.map(|r| {
            let mut segments: Vec<String> = r.split('/').map(str::to_owned).collect();
            let rest = segments.last().is_some_and(|s| s == "**");
            if rest {
                segments.pop();
            }
            ModelResource { segments, rest }
        });
        ModelPerm { action, action_wild, resource }
    }

    /// Whether the action pattern matches the concrete action `action`.
    fn action_ok(&self, action: &[&str]) -> bool {
        let length_ok =
            if self.action_wild { action.len() > self.action.len() } else { action.len() == self.action.len() };
        length_ok && self.action.iter().zip(action).all(|(p, a)| p == a)
    }

    /// Whether the resource pattern matches the concrete path `resource`.
    fn resource_ok(&self, resource: &[&str]) -> bool {
        let Some(r) = &self.resource else {
            return true;
        };
        let length_ok = if r.rest { resource.len() >= r.segments.len() } else { resource.len() == r.segments.len() };
        length_ok && r.segments.iter().zip(resource).all(|(p, s)| p == "*" || p == s)
    }

    /// The reference matcher: whether this permission allows the concrete request.
    fn allows(&self, action: &[&str], resource: &[&str]) -> bool {
        self.action_ok(action) && self.resource_ok(resource)
    }
}

impl fmt::Debug for ModelPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

/// Every word of 1..=`max_len` segments over `alphabet`.
fn words(alphabet: &[&'static str], max_len: usize) -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    let mut layer: Vec<Vec<&'static str>> = vec![Vec::new()];
    for _ in 0..max_len {
        layer = layer
            .iter()
            .flat_map(|w| {
                alphabet.iter().map(move |s| {
                    let mut w = w.clone();
                    w.push(*s);
                    w
                })
            })
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

/// The finite universe of concrete requests: the model's ground truth.
struct Universe {
    actions: Vec<Vec<&'static str>>,
    resources: Vec<Vec<&'static str>>,
    action_texts: Vec<String>,
    resource_texts: Vec<String>,
    /// `u64` words per action row of a [`ReqSet`].
    row_words: usize,
}

fn universe() -> &'static Universe {
    static UNIVERSE: OnceLock<Universe> = OnceLock::new();
    UNIVERSE.get_or_init(|| {
        let actions = words(&UNIVERSE_ACTIONS, MAX_ACTION_LEN);
        let resources = words(&UNIVERSE_RESOURCES, MAX_RESOURCE_LEN);
        let action_texts = actions.iter().map(|a| a.join(".")).collect();
        let resource_texts = resources.iter().map(|r| r.join("/")).collect();
        let row_words = resources.len().div_ceil(64);
        Universe { actions, resources, action_texts, resource_texts, row_words }
    })
}

/// A set of concrete requests of the universe, one bit per (action, resource) pair.
#[derive(Clone, PartialEq, Eq)]
struct ReqSet(Vec<u64>);

impl fmt::Debug for ReqSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        write!(f, "ReqSet({n} requests)")
    }
}

impl ReqSet {
    fn empty() -> Self {
        let u = universe();
        ReqSet(vec![0; u.actions.len() * u.row_words])
    }

    fn full() -> Self {
        let u = universe();
        let mut set = Self::empty();
        for ai in 0..u.actions.len() {
            for ri in 0..u.resources.len() {
                set.insert(ai, ri);
            }
        }
        set
    }

    fn insert(&mut self, ai: usize, ri: usize) {
        let w = universe().row_words;
        self.0[ai * w + ri / 64] |= 1 << (ri % 64);
    }

    fn contains(&self, ai: usize, ri: usize) -> bool {
        let w = universe().row_words;
        self.0[ai * w + ri / 64] & (1 << (ri % 64)) != 0
    }

    /// Every request the reference matcher says `p` allows.
    fn of_perm(p: &ModelPerm) -> Self {
        let u = universe();
        let mut set = Self::empty();
        let resources: Vec<usize> = (0..u.resources.len()).filter(|&ri| p.resource_ok(&u.resources[ri])).collect();
        for (ai, action) in u.actions.iter().enumerate() {
            if p.action_ok(action) {
                for &ri in &resources {
                    set.insert(ai, ri);
                }
            }
        }
        set
    }

    /// Every request some member of `ps` allows.
    fn of_scope(ps: &[ModelPerm]) -> Self {
        ps.iter().fold(Self::empty(), |acc, p| acc.union(&Self::of_perm(p)))
    }

    fn union(&self, other: &Self) -> Self {
        ReqSet(self.0.iter().zip(&other.0).map(|(a, b)| a | b).collect())
    }

    fn intersect(&self, other: &Self) -> Self {
        ReqSet(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }

    fn is_subset(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// Model *covers* for permissions: every request `b` allows, `a` allows.
fn model_perm_covers(a: &ModelPerm, b: &ModelPerm) -> bool {
    ReqSet::of_perm(b).is_subset(&ReqSet::of_perm(a))
}

/// Model *covers* for scopes, as `Scope::covers` documents it: every permission of `b` is
/// covered by one permission of `a`.
fn model_scope_covers(a: &[ModelPerm], b: &[ModelPerm]) -> bool {
    b.iter().all(|q| a.iter().any(|p| model_perm_covers(p, q)))
}

fn perm(m: &ModelPerm) -> Permission {
    Permission::parse(&m.text()).unwrap()
}

fn scope(ms: &[ModelPerm]) -> Scope {
    let texts: Vec<String> = ms.iter().map(ModelPerm::text).collect();
    Scope::parse_list(texts.iter().map(String::as_str)).unwrap()
}

/// The crate's scope read back into the model through its `Display` form.
fn model_of(s: &Scope) -> Vec<ModelPerm> {
    s.permissions().iter().map(|p| ModelPerm::from_text(&p.to_string())).collect()
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

fn action_segment() -> impl Strategy<Value = String> {
    select(ACTION_ALPHABET.to_vec()).prop_map(str::to_owned)
}

fn resource_segment() -> impl Strategy<Value = String> {
    select(RESOURCE_ALPHABET.to_vec()).prop_map(str::to_owned)
}

fn model_action() -> impl Strategy<Value = (Vec<String>, bool)> {
    prop_oneof![
        1 => Just((Vec::new(), true)),
        6 => (prop::collection::vec(action_segment(), 1..=MAX_PATTERN_SEGMENTS), any::<bool>()),
    ]
}

fn model_resource() -> impl Strategy<Value = Option<ModelResource>> {
    prop_oneof![
        1 => Just(None),
        4 => (prop::collection::vec(resource_segment(), 1..=MAX_PATTERN_SEGMENTS), any::<bool>())
            .prop_map(|(segments, rest)| Some(ModelResource { segments, rest })),
    ]
}

fn model_perm() -> impl Strategy<Value = ModelPerm> {
    (model_action(), model_resource()).prop_map(|((action, action_wild), resource)| ModelPerm {
        action,
        action_wild,
        resource,
    })
}

/// Permissions that `p` covers by construction (semantically): wildcards replaced by
/// something narrower, open ends extended or closed.
fn narrower(p: ModelPerm) -> BoxedStrategy<ModelPerm> {
    let action: BoxedStrategy<(Vec<String>, bool)> = if p.action_wild {
        let base = p.action.clone();
        let room = MAX_PATTERN_SEGMENTS - base.len();
        (prop::collection::vec(action_segment(), 0..=room), any::<bool>())
            .prop_map(move |(extension, wild)| {
                // `a.*` does not allow `a` itself: an unextended action stays wild.
                let wild = wild || extension.is_empty();
                let mut action = base.clone();
                action.extend(extension);
                (action, wild)
            })
            .boxed()
    } else {
        Just((p.action.clone(), false)).boxed()
    };
    let resource: BoxedStrategy<Option<ModelResource>> = match p.resource {
        None => model_resource().boxed(),
        Some(r) => {
            let fixed: Vec<BoxedStrategy<String>> = r
                .segments
                .iter()
                .map(|s| if s == "*" { resource_segment().boxed() } else { Just(s.clone()).boxed() })
                .collect();
            let room = if r.rest { MAX_PATTERN_SEGMENTS - r.segments.len() } else { 0 };
            let open = r.rest;
            (fixed, prop::collection::vec(resource_segment(), 0..=room), any::<bool>())
                .prop_map(move |(mut segments, extension, rest)| {
                    segments.extend(extension);
                    Some(ModelResource { segments, rest: open && rest })
                })
                .boxed()
        }
    };
    (action, resource).prop_map(|((action, action_wild), resource)| ModelPerm { action, action_wild, resource }).boxed()
}

/// Pairs that are sometimes unrelated, sometimes `a` covers `b`, sometimes the reverse.
fn perm_pair() -> impl Strategy<Value = (ModelPerm, ModelPerm)> {
    prop_oneof![
        (model_perm(), model_perm()),
        model_perm().prop_flat_map(|a| (Just(a.clone()), narrower(a))),
        model_perm().prop_flat_map(|b| (narrower(b.clone()), Just(b))),
    ]
}

fn model_scope() -> impl Strategy<Value = Vec<ModelPerm>> {
    prop::collection::vec(model_perm(), 0..=4)
}

/// A scope whose members are each narrower than some member of `s`.
fn narrower_scope(s: Vec<ModelPerm>) -> BoxedStrategy<Vec<ModelPerm>> {
    if s.is_empty() {
        return Just(Vec::new()).boxed();
    }
    prop::collection::vec(select(s).prop_flat_map(narrower), 1..=3).boxed()
}

fn related_scope(base: &[ModelPerm]) -> BoxedStrategy<Vec<ModelPerm>> {
    prop_oneof![
        2 => Just(base.to_vec()),
        3 => narrower_scope(base.to_vec()),
        1 => model_scope(),
    ]
    .boxed()
}

fn scope_pair() -> impl Strategy<Value = (Vec<ModelPerm>, Vec<ModelPerm>)> {
    prop_oneof![
        (model_scope(), model_scope()),
        model_scope().prop_flat_map(|a| (Just(a.clone()), narrower_scope(a))),
        model_scope().prop_flat_map(|b| (narrower_scope(b.clone()), Just(b))),
    ]
}

/// Three ceilings, each derived from the one before, in random roles: they often
/// overlap, and one is often the narrowest.
fn ceilings() -> impl Strategy<Value = (Vec<ModelPerm>, Vec<ModelPerm>, Vec<ModelPerm>)> {
    prop::collection::vec(model_perm(), 1..=4)
        .prop_flat_map(|first| (Just(first.clone()), related_scope(&first)))
        .prop_flat_map(|(first, second)| (Just(first), Just(second.clone()), related_scope(&second)))
        .prop_flat_map(|(a, b, c)| Just(vec![a, b, c]).prop_shuffle())
        .prop_map(|mut v| {
            let c = v.pop().unwrap();
            let b = v.pop().unwrap();
            let a = v.pop().unwrap();
            (a, b, c)
        })
}

/// A requested scope: none, arbitrary, or narrower than one of the ceilings.
fn requested(ceilings: &[&Vec<ModelPerm>]) -> BoxedStrategy<Option<Vec<ModelPerm>>> {
    let mut options: Vec<(u32, BoxedStrategy<Option<Vec<ModelPerm>>>)> =
        vec![(2, Just(None).boxed()), (2, model_scope().prop_map(Some).boxed())];
    for c in ceilings {
        options.push((2, narrower_scope((*c).clone()).prop_map(Some).boxed()));
    }
    Union::new_weighted(options).boxed()
}

fn limits() -> impl Strategy<Value = Limits> {
    let max_depth = prop_oneof![1 => 1usize..=3, 3 => 4usize..=8];
    (1i64..2000, 1i64..2000, max_depth).prop_map(|(default_ttl, max_ttl, max_depth)| Limits {
        default_ttl,
        max_ttl,
        max_depth,
    })
}

fn ttl() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![1 => Just(None), 4 => (-5i64..3000).prop_map(Some)]
}

fn agent_status() -> impl Strategy<Value = AgentStatus> {
    prop_oneof![
        30 => Just(AgentStatus::Active),
        1 => Just(AgentStatus::Suspended),
        1 => Just(AgentStatus::Retired),
    ]
}

fn expires_in() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![1 => Just(None), 1 => (-20i64..3000).prop_map(Some)]
}

// ---------------------------------------------------------------------------------------
// Registry and claims fixtures
// ---------------------------------------------------------------------------------------

fn agent_id(n: u8) -> AgentId {
    AgentId::from_random([n; 12])
}

fn human_id(n: u8) -> HumanId {
    HumanId::from_random([n; 12])
}

fn human_status(active: bool) -> HumanStatus {
    if active {
        HumanStatus::Active
    } else {
        HumanStatus::Disabled
    }
}

fn make_human(n: u8, entitlements: Scope, active: bool) -> Human {
    Human {
        id: human_id(n),
        name: format!("human {n}"),
        email: format!("h{n}@example.test"),
        entitlements,
        status: human_status(active),
        created_at: UnixTime(0),
        roles: Default::default(),
        external_id: None,
        identity: None,
    }
}

fn make_agent(
    n: u8,
    owner: &HumanId,
    mode: Mode,
    max_scope: Scope,
    status: AgentStatus,
    expires_at: Option<UnixTime>,
) -> Agent {
    Agent {
        id: agent_id(n),
        name: format!("agent {n}"),
        owner: owner.clone(),
        mode,
        max_scope,
        public_key: Some(PublicJwk { kty: "OKP".to_owned(), crv: "Ed25519".to_owned(), x: "A".repeat(43), kid: None }),
        spiffe_id: None,
        status,
        expires_at,
        labels: BTreeMap::new(),
        created_at: UnixTime(0),
    }
}

fn other_mode(mode: Mode) -> Mode {
    if mode == Mode::Delegated {
        Mode::Autonomous
    } else {
        Mode::Delegated
    }
}

/// A warrant's claims, built by hand the way an issuer would.
fn make_claims(
    chain: &[AgentId],
    mode: Mode,
    human: &HumanId,
    owner: &HumanId,
    scope: &Scope,
    iat: UnixTime,
    exp: UnixTime,
) -> WarrantClaims {
    let sub = if mode == Mode::Delegated { human.to_string() } else { chain[0].to_string() };
    WarrantClaims {
        iss: "https://warrant.test".to_owned(),
        sub,
        aud: "https://api.test".to_owned(),
        exp,
        iat,
        nbf: iat,
        jti: WarrantId::from_random([u8::try_from(chain.len()).unwrap(); 12]),
        client_id: chain.last().unwrap().clone(),
        scope: scope.to_string(),
        act: Actor::from_chain(chain).unwrap(),
        task: TaskClaim {
            id: TaskId::from_random([0x7a; 12]),
            purpose: "property test".to_owned(),
            human: human.clone(),
        },
        mode,
        owner: owner.clone(),
        parent: (chain.len() > 1).then(|| WarrantId::from_random([0xee; 12])),
        cnf: None,
        budget: Default::default(),
    }
}

/// The claims of the warrant a successful delegation issues: the task (and so the
/// human) is carried over from the parent, the chain comes from the grant.
fn child_claims(parent: &WarrantClaims, grant: &Grant, child: &Agent) -> WarrantClaims {
    WarrantClaims {
        exp: grant.exp,
        iat: grant.iat,
        nbf: grant.iat,
        jti: WarrantId::from_random([0xcc; 12]),
        client_id: child.id.clone(),
        scope: grant.scope.to_string(),
        act: Actor::from_chain(&grant.chain).unwrap(),
        owner: child.owner.clone(),
        parent: Some(parent.jti.clone()),
        ..parent.clone()
    }
}

/// A granted scope is non-empty and covered, by the crate's rule and by the model's
/// ground truth, by every ceiling.
fn check_within(granted: &Scope, ceilings: &[(&str, &[ModelPerm])]) -> Result<(), TestCaseError> {
    prop_assert!(!granted.is_empty(), "an empty scope was granted");
    let granted_set = ReqSet::of_scope(&model_of(granted));
    for (name, ceiling) in ceilings {
        prop_assert!(
            scope(ceiling).covers(granted),
            "granted `{granted}` is not covered by the {name} `{}`",
            scope(ceiling)
        );
        prop_assert!(
            granted_set.is_subset(&ReqSet::of_scope(ceiling)),
            "granted `{granted}` allows requests the {name} `{}` does not",
            scope(ceiling)
        );
    }
    Ok(())
}

/// In a world where nothing but the scope and the lifetime can fail, the outcome the
/// model predicts.
fn check_scope_outcome(
    result: &Result<Grant, DelegationError>,
    requested: Option<&[ModelPerm]>,
    ceilings: &[(&str, &[ModelPerm])],
    ttl: Option<i64>,
) -> Result<(), TestCaseError> {
    match requested {
        Some(req) => {
            if let Some((name, ceiling)) = ceilings.iter().find(|(_, c)| !model_scope_covers(c, req)) {
                prop_assert!(
                    matches!(result, Err(e) if e.is_scope_error()),
                    "request {req:?} is not covered by the {name} {ceiling:?}, yet the result is {result:?}"
                );
                return Ok(());
            }
            if req.is_empty() {
                prop_assert_eq!(result, &Err(DelegationError::EmptyScope));
                prop_assert!(DelegationError::EmptyScope.is_scope_error());
                return Ok(());
            }
        }
        None => {
            let want = ceilings.iter().fold(ReqSet::full(), |acc, (_, c)| acc.intersect(&ReqSet::of_scope(c)));
            if want.is_empty() {
                prop_assert_eq!(result, &Err(DelegationError::EmptyScope));
                prop_assert!(DelegationError::EmptyScope.is_scope_error());
                return Ok(());
            }
            if let Ok(grant) = result {
                prop_assert_eq!(
                    ReqSet::of_scope(&model_of(&grant.scope)),
                    want,
                    "no scope asked for, so the grant `{}` should be exactly the ceilings' intersection",
                    grant.scope
                );
            }
        }
    }
    if ttl.is_some_and(|t| t <= 0) {
        prop_assert_eq!(result, &Err(DelegationError::BadTtl));
        prop_assert!(!DelegationError::BadTtl.is_scope_error());
    } else {
        prop_assert!(result.is_ok(), "a valid request was refused: {result:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Permission algebra
// ---------------------------------------------------------------------------------------

fn all_action_patterns() -> Vec<ModelPerm> {
    let mut out = vec![ModelPerm { action: Vec::new(), action_wild: true, resource: None }];
    for w in words(&ACTION_ALPHABET, MAX_PATTERN_SEGMENTS) {
        for action_wild in [false, true] {
            let action = w.iter().map(|s| (*s).to_owned()).collect();
            out.push(ModelPerm { action, action_wild, resource: None });
        }
    }
    out
}

fn all_resource_patterns() -> Vec<ModelPerm> {
    let action = vec!["a".to_owned()];
    let mut out = vec![ModelPerm { action: action.clone(), action_wild: false, resource: None }];
    for w in words(&RESOURCE_ALPHABET, MAX_PATTERN_SEGMENTS) {
        for rest in [false, true] {
            let segments = w.iter().map(|s| (*s).to_owned()).collect();
            out.push(ModelPerm {
                action: action.clone(),
                action_wild: false,
                resource: Some(ModelResource { segments, rest }),
            });
        }
    }
    out
}

/// `covers` against the model for every pair of patterns in `patterns`.
fn check_covers_exhaustively(patterns: &[ModelPerm]) {
    let sets: Vec<ReqSet> = patterns.iter().map(ReqSet::of_perm).collect();
    let perms: Vec<Permission> = patterns.iter().map(perm).collect();
    for (i, a) in perms.iter().enumerate() {
        for (j, b) in perms.iter().enumerate() {
            assert_eq!(a.covers(b), sets[j].is_subset(&sets[i]), "`{a}`.covers(`{b}`) disagrees with the model");
        }
    }
}

#[test]
fn covers_is_exact_for_every_pair_of_action_patterns() {
    check_covers_exhaustively(&all_action_patterns());
}

#[test]
fn covers_is_exact_for_every_pair_of_resource_patterns() {
    check_covers_exhaustively(&all_resource_patterns());
}

#[test]
fn allows_agrees_with_reference_for_every_action_and_resource_pattern() {
    let u = universe();
    for m in all_action_patterns() {
        let p = perm(&m);
        for (action, text) in u.actions.iter().zip(&u.action_texts) {
            assert_eq!(p.allows(text, "x"), m.allows(action, &["x"]), "`{p}` on `{text}`");
        }
    }
    for m in all_resource_patterns() {
        let p = perm(&m);
        for (resource, text) in u.resources.iter().zip(&u.resource_texts) {
            assert_eq!(p.allows("a", text), m.allows(&["a"], resource), "`{p}` on `{text}`");
        }
    }
}

/// Regression: a concrete resource always has at least one segment, so `*/**` allows
/// exactly what a lone `**` (or no resource part) allows, and covers it.
#[test]
fn one_or_more_segments_covers_any_resource() {
    let p = |s: &str| Permission::parse(s).unwrap();
    assert!(p("a:*/**").covers(&p("a")));
    assert!(p("a:*/**").covers(&p("a:**")));
    assert!(p("a").covers(&p("a:*/**")));
    assert!(!p("a:x/**").covers(&p("a")));
    assert!(!p("a:*/*/**").covers(&p("a")));
    assert!(!Scope::parse("a:*/**").unwrap().covers(&Scope::parse("a b:x").unwrap()));
    assert!(Scope::parse("a:*/** b.*").unwrap().covers(&Scope::parse("a b.c:x").unwrap()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `allows` agrees with the reference matcher on every request of the universe.
    #[test]
    fn allows_agrees_with_reference_on_the_whole_universe(m in model_perm()) {
        let u = universe();
        let p = perm(&m);
        for (action, action_text) in u.actions.iter().zip(&u.action_texts) {
            for (resource, resource_text) in u.resources.iter().zip(&u.resource_texts) {
                prop_assert_eq!(
                    p.allows(action_text, resource_text),
                    m.allows(action, resource),
                    "`{}` on `{}` `{}`", p, action_text, resource_text
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `covers` is exactly inclusion of the allowed requests.
    #[test]
    fn permission_covers_is_exact((a, b) in perm_pair()) {
        let (pa, pb) = (perm(&a), perm(&b));
        prop_assert_eq!(pa.covers(&pb), model_perm_covers(&a, &b), "`{}`.covers(`{}`)", pa, pb);
    }

    /// `meet` allows exactly what both permissions allow.
    #[test]
    fn permission_meet_is_exact((a, b) in perm_pair()) {
        let (pa, pb) = (perm(&a), perm(&b));
        let want = ReqSet::of_perm(&a).intersect(&ReqSet::of_perm(&b));
        match pa.meet(&pb) {
            None => prop_assert!(want.is_empty(), "`{}` meet `{}` is None but they overlap", pa, pb),
            Some(m) => {
                prop_assert_eq!(Permission::parse(&m.to_string()).unwrap(), m.clone());
                prop_assert_eq!(ReqSet::of_perm(&ModelPerm::from_text(&m.to_string())), want,
                    "`{}` meet `{}` = `{}`", pa, pb, m);
                prop_assert!(pa.covers(&m) && pb.covers(&m));
            }
        }
    }

    /// `covers` is reflexive and transitive.
    #[test]
    fn permission_covers_is_a_preorder(
        (a, b, c) in perm_pair().prop_flat_map(|(a, b)| {
            let c = prop_oneof![model_perm(), narrower(b.clone())];
            (Just(a), Just(b), c)
        })
    ) {
        let (pa, pb, pc) = (perm(&a), perm(&b), perm(&c));
        prop_assert!(pa.covers(&pa));
        if pa.covers(&pb) && pb.covers(&pc) {
            prop_assert!(pa.covers(&pc), "`{}` ⊒ `{}` ⊒ `{}`", pa, pb, pc);
        }
    }

    /// `Display` prints the canonical text, and it parses back to an equal permission.
    #[test]
    fn permission_display_round_trips(m in model_perm()) {
        let p = perm(&m);
        prop_assert_eq!(p.to_string(), m.text());
        prop_assert_eq!(Permission::parse(&p.to_string()).unwrap(), p.clone());
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), p);
    }
}

// ---------------------------------------------------------------------------------------
// Scope algebra
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `intersect` allows exactly the requests both scopes allow.
    #[test]
    fn scope_intersect_is_exact(
        (a, b) in scope_pair(),
        samples in prop::collection::vec((any::<Index>(), any::<Index>()), 64),
    ) {
        let (sa, sb) = (scope(&a), scope(&b));
        let both = sa.intersect(&sb);
        let want = ReqSet::of_scope(&a).intersect(&ReqSet::of_scope(&b));
        let got = ReqSet::of_scope(&model_of(&both));
        prop_assert_eq!(got, want.clone(), "`{}` ∩ `{}` = `{}`", sa, sb, both);
        prop_assert!(sa.covers(&both) && sb.covers(&both), "`{}` ∩ `{}` = `{}`", sa, sb, both);
        prop_assert_eq!(Scope::parse(&both.to_string()).unwrap(), both.clone());
        // The crate's own `allows` on the intersection, at sampled requests.
        let u = universe();
        for (ai, ri) in samples {
            let (ai, ri) = (ai.index(u.actions.len()), ri.index(u.resources.len()));
            prop_assert_eq!(
                both.allows(&u.action_texts[ai], &u.resource_texts[ri]),
                want.contains(ai, ri),
                "`{}` on `{}` `{}`", both, u.action_texts[ai], u.resource_texts[ri]
            );
        }
    }

    /// The bounded intersection is the plain reduction of every meet (the same members in
    /// the same order), and refuses exactly when that holds more than the bound.
    #[test]
    fn bounded_intersection_is_the_plain_reduction((a, b) in scope_pair(), bound in 0usize..6) {
        let (sa, sb) = (scope(&a), scope(&b));
        let plain = Scope::from_permissions(
            sa.permissions().iter().flat_map(|p| sb.permissions().iter().filter_map(move |q| p.meet(q))),
        );
        prop_assert_eq!(sa.intersect(&sb), plain.clone());
        match sa.intersect_within(&sb, bound) {
            Ok(s) => {
                prop_assert_eq!(s, plain.clone());
                prop_assert!(plain.permissions().len() <= bound);
            }
            Err(_) => prop_assert!(plain.permissions().len() > bound, "`{}` refused at {}", plain, bound),
        }
    }

    /// `Scope::covers` agrees with the model (each permission of the
    /// covered scope is covered by one of the covering scope), and is sound: it never
    /// claims an inclusion of allowed requests that does not hold.
    #[test]
    fn scope_covers_agrees_with_model((a, b) in scope_pair()) {
        let (sa, sb) = (scope(&a), scope(&b));
        let covers = sa.covers(&sb);
        prop_assert_eq!(covers, model_scope_covers(&a, &b), "`{}`.covers(`{}`)", sa, sb);
        if covers {
            prop_assert!(ReqSet::of_scope(&b).is_subset(&ReqSet::of_scope(&a)));
        }
        prop_assert_eq!(sa.first_uncovered(&sb).is_none(), covers);
    }

    /// `Scope::covers` is reflexive and transitive.
    #[test]
    fn scope_covers_is_a_preorder(
        (a, b, c) in scope_pair().prop_flat_map(|(a, b)| {
            let c = prop_oneof![model_scope(), narrower_scope(b.clone())];
            (Just(a), Just(b), c)
        })
    ) {
        let (sa, sb, sc) = (scope(&a), scope(&b), scope(&c));
        prop_assert!(sa.covers(&sa));
        if sa.covers(&sb) && sb.covers(&sc) {
            prop_assert!(sa.covers(&sc), "`{}` ⊒ `{}` ⊒ `{}`", sa, sb, sc);
        }
    }

    /// A scope's `Display` parses back to an equal scope (and so does its JSON); it
    /// allows what its permissions allow, and no member covers another.
    #[test]
    fn scope_display_round_trips(a in model_scope()) {
        let s = scope(&a);
        for (i, p) in s.permissions().iter().enumerate() {
            for (j, q) in s.permissions().iter().enumerate() {
                prop_assert!(i == j || !p.covers(q), "`{}` holds `{}` and `{}`", s, p, q);
            }
        }
        prop_assert_eq!(Scope::parse(&s.to_string()).unwrap(), s.clone());
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s.clone());
        prop_assert_eq!(ReqSet::of_scope(&model_of(&s)), ReqSet::of_scope(&a));
    }
}

// ---------------------------------------------------------------------------------------
// Invariant 1: root warrants
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct RootCase {
    delegated: bool,
    max_scope: Vec<ModelPerm>,
    entitlements: Vec<ModelPerm>,
    requested: Option<Vec<ModelPerm>>,
    ttl: Option<i64>,
    now: i64,
    agent_expires_in: Option<i64>,
    agent_status: AgentStatus,
    agent_mode_matches: bool,
    owner_active: bool,
    human_active: bool,
    limits: Limits,
}

fn root_case() -> impl Strategy<Value = RootCase> {
    ceilings().prop_flat_map(|(max_scope, entitlements, _)| {
        let req = requested(&[&max_scope, &entitlements]);
        (
            (any::<bool>(), Just(max_scope), Just(entitlements), req, ttl()),
            (
                1_000_000i64..2_000_000,
                expires_in(),
                agent_status(),
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.95),
                limits(),
            ),
        )
            .prop_map(
                |(
                    (delegated, max_scope, entitlements, requested, ttl),
                    (now, agent_expires_in, agent_status, agent_mode_matches, owner_active, human_active, limits),
                )| RootCase {
                    delegated,
                    max_scope,
                    entitlements,
                    requested,
                    ttl,
                    now,
                    agent_expires_in,
                    agent_status,
                    agent_mode_matches,
                    owner_active,
                    human_active,
                    limits,
                },
            )
    })
}

fn check_root(case: &RootCase) -> Result<(), TestCaseError> {
    let now = UnixTime(case.now);
    let work = if case.delegated { Mode::Delegated } else { Mode::Autonomous };
    let owner = make_human(1, Scope::empty(), case.owner_active);
    let human = make_human(2, scope(&case.entitlements), case.human_active);
    let mode = if case.agent_mode_matches { work } else { other_mode(work) };
    let expires_at = case.agent_expires_in.map(|s| now.plus(s));
    let agent = make_agent(1, &owner.id, mode, scope(&case.max_scope), case.agent_status, expires_at);
    let requested = case.requested.as_deref().map(scope);
    let req = RootRequest {
        agent: &agent,
        owner: &owner,
        on_behalf_of: case.delegated.then_some(&human),
        scope: requested.as_ref(),
        ttl: case.ttl,
        now,
    };
    let result = grant_root(&req, &case.limits);

    let mut ceilings: Vec<(&str, &[ModelPerm])> = vec![("agent's max scope", &case.max_scope)];
    if case.delegated {
        ceilings.push(("human's entitlements", &case.entitlements));
    }
    let world_ok = case.agent_status == AgentStatus::Active
        && !matches!(expires_at, Some(e) if e <= now)
        && case.agent_mode_matches
        && case.owner_active
        && (!case.delegated || case.human_active);

    if let Ok(grant) = &result {
        prop_assert!(world_ok, "granted in a world that should refuse: {grant:?}");
        check_within(&grant.scope, &ceilings)?;
        if let Some(r) = &requested {
            prop_assert_eq!(&grant.scope, r);
        }
        prop_assert_eq!(grant.iat, now);
        prop_assert!(grant.exp > now);
        prop_assert!(grant.exp <= now.plus(case.limits.max_ttl));
        if let Some(e) = expires_at {
            prop_assert!(grant.exp <= e);
        }
        prop_assert_eq!(&grant.chain, &vec![agent.id.clone()]);
    }
    if !world_ok {
        // Refused, and for the grant itself (OAuth `invalid_grant`), not for its scope.
        prop_assert!(matches!(&result, Err(e) if !e.is_scope_error()), "{result:?}");
        return Ok(());
    }
    check_scope_outcome(&result, case.requested.as_deref(), &ceilings, case.ttl)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Invariant 1 for root warrants: the scope is covered by the agent's max scope and,
    /// for delegated work, by the human's entitlements; the lifetime is capped; a request
    /// over a ceiling is a scope error.
    #[test]
    fn root_grants_stay_within_every_ceiling(case in root_case()) {
        check_root(&case)?;
    }
}

// ---------------------------------------------------------------------------------------
// Invariants 1 and 2: delegation
// ---------------------------------------------------------------------------------------

/// Agents 1..=8 may be in a parent chain; 9..=12 never are.
const CHAIN_POOL: u8 = 8;

#[derive(Debug, Clone)]
struct DelegationCase {
    delegated: bool,
    parent_scope: Vec<ModelPerm>,
    child_max_scope: Vec<ModelPerm>,
    entitlements: Vec<ModelPerm>,
    requested: Option<Vec<ModelPerm>>,
    chain: Vec<u8>,
    child: u8,
    ttl: Option<i64>,
    now: i64,
    parent_exp_in: i64,
    child_expires_in: Option<i64>,
    child_status: AgentStatus,
    chain_usable: bool,
    child_mode_matches: bool,
    owner_active: bool,
    /// `None`: the caller passes no human for the chain.
    human_active: Option<bool>,
    limits: Limits,
}

fn parent_chain(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    subsequence((1..=CHAIN_POOL).collect::<Vec<u8>>(), 1..=max_len).prop_shuffle()
}

fn delegation_case() -> impl Strategy<Value = DelegationCase> {
    ceilings().prop_flat_map(|(parent_scope, child_max_scope, entitlements)| {
        let req = requested(&[&parent_scope, &child_max_scope, &entitlements]);
        (
            (
                any::<bool>(),
                Just(parent_scope),
                Just(child_max_scope),
                Just(entitlements),
                req,
                parent_chain(4),
                prop_oneof![3 => 9u8..=12, 1 => 1u8..=CHAIN_POOL],
                ttl(),
            ),
            (
                1_000_000i64..2_000_000,
                prop_oneof![1 => -20i64..=0, 19 => 1i64..3000],
                expires_in(),
                agent_status(),
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.95),
                prop_oneof![1 => Just(None), 1 => Just(Some(false)), 38 => Just(Some(true))],
                limits(),
            ),
        )
            .prop_map(
                |(
                    (delegated, parent_scope, child_max_scope, entitlements, requested, chain, child, ttl),
                    (
                        now,
                        parent_exp_in,
                        child_expires_in,
                        child_status,
                        chain_usable,
                        child_mode_matches,
                        owner_active,
                        human_active,
                        limits,
                    ),
                )| DelegationCase {
                    delegated,
                    parent_scope,
                    child_max_scope,
                    entitlements,
                    requested,
                    chain,
                    child,
                    ttl,
                    now,
                    parent_exp_in,
                    child_expires_in,
                    child_status,
                    chain_usable,
                    child_mode_matches,
                    owner_active,
                    human_active,
                    limits,
                },
            )
    })
}

/// A world built from a [`DelegationCase`]: registry entries and the parent's claims.
struct DelegationWorld {
    now: UnixTime,
    parent: WarrantClaims,
    parent_scope: Scope,
    chain_agents: Vec<Agent>,
    chain_owners: Vec<Human>,
    child: Agent,
    child_owner: Human,
    human: Option<Human>,
    requested: Option<Scope>,
}

impl DelegationWorld {
    fn new(case: &DelegationCase) -> Self {
        let now = UnixTime(case.now);
        let mode = if case.delegated { Mode::Delegated } else { Mode::Autonomous };
        let root_owner = human_id(1);
        let human = if case.delegated { human_id(2) } else { root_owner.clone() };
        let chain_agents: Vec<Agent> = case
            .chain
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // When the chain is not usable, its root has been suspended since.
                let status = if i == 0 && !case.chain_usable { AgentStatus::Suspended } else { AgentStatus::Active };
                make_agent(*n, &root_owner, mode, Scope::parse("*").unwrap(), status, None)
            })
            .collect();
        let chain: Vec<AgentId> = chain_agents.iter().map(|a| a.id.clone()).collect();
        let parent_scope = scope(&case.parent_scope);
        let parent =
            make_claims(&chain, mode, &human, &root_owner, &parent_scope, now.plus(-10), now.plus(case.parent_exp_in));
        let child_owner = make_human(3, Scope::empty(), case.owner_active);
        let child_mode = if case.child_mode_matches { mode } else { other_mode(mode) };
        let child = make_agent(
            case.child,
            &child_owner.id,
            child_mode,
            scope(&case.child_max_scope),
            case.child_status,
            case.child_expires_in.map(|s| now.plus(s)),
        );
        // Autonomous work traces to the root agent's owner, so that owner is the human.
        let human_number = if case.delegated { 2 } else { 1 };
        let human = case.human_active.map(|active| make_human(human_number, scope(&case.entitlements), active));
        let chain_owners = match (&human, case.delegated) {
            (Some(h), false) => vec![h.clone()],
            (None, false) => vec![],
            (_, true) => vec![make_human(1, Scope::empty(), true)],
        };
        let requested = case.requested.as_deref().map(scope);
        DelegationWorld { now, parent, parent_scope, chain_agents, chain_owners, child, child_owner, human, requested }
    }

    fn request(&self, ttl: Option<i64>) -> DelegationRequest<'_> {
        DelegationRequest {
            parent: &self.parent,
            parent_scope: &self.parent_scope,
            chain_agents: &self.chain_agents,
            chain_owners: &self.chain_owners,
            child: &self.child,
            child_owner: &self.child_owner,
            human: self.human.as_ref(),
            scope: self.requested.as_ref(),
            ttl,
            now: self.now,
        }
    }
}

/// Invariant 2 for one successful delegation.
fn check_chain(parent: &WarrantClaims, grant: &Grant, child: &Agent) -> Result<(), TestCaseError> {
    let parent_chain = parent.chain();
    let mut want = parent_chain.clone();
    want.push(child.id.clone());
    prop_assert_eq!(&grant.chain, &want);
    prop_assert_eq!(&grant.chain[..parent_chain.len()], &parent_chain[..]);
    let act = Actor::from_chain(&grant.chain).unwrap();
    prop_assert_eq!(act.chain(), grant.chain.clone());
    prop_assert_eq!(&act.sub, &child.id);
    // The prior actors are the parent's `act`, untouched.
    prop_assert_eq!(act.act.as_deref(), Some(&parent.act));
    let claims = child_claims(parent, grant, child);
    prop_assert_eq!(claims.human(), parent.human());
    prop_assert_eq!(claims.chain(), grant.chain.clone());
    prop_assert_eq!(claims.depth(), parent.depth() + 1);
    Ok(())
}

fn check_delegation(case: &DelegationCase) -> Result<(), TestCaseError> {
    let world = DelegationWorld::new(case);
    let result = grant_delegation(&world.request(case.ttl), &case.limits);
    let now = world.now;
    let parent = &world.parent;
    let child = &world.child;

    let mut ceilings: Vec<(&str, &[ModelPerm])> =
        vec![("parent's scope", &case.parent_scope), ("agent's max scope", &case.child_max_scope)];
    if case.delegated {
        ceilings.push(("human's entitlements", &case.entitlements));
    }
    let in_chain = parent.chain().contains(&child.id);
    let depth = parent.depth() + 1;
    let world_ok = parent.exp > now
        && case.child_status == AgentStatus::Active
        && !matches!(child.expires_at, Some(e) if e <= now)
        && case.child_mode_matches
        && case.owner_active
        && case.chain_usable
        && case.human_active == Some(true);

    if let Ok(grant) = &result {
        prop_assert!(world_ok && !in_chain && depth <= case.limits.max_depth, "granted: {grant:?}");
        check_within(&grant.scope, &ceilings)?;
        if let Some(r) = &world.requested {
            prop_assert_eq!(&grant.scope, r);
        }
        prop_assert_eq!(grant.iat, now);
        prop_assert!(grant.exp > now);
        prop_assert!(grant.exp <= parent.exp, "exp {} after the parent's {}", grant.exp, parent.exp);
        prop_assert!(grant.exp <= now.plus(case.limits.max_ttl));
        if let Some(e) = child.expires_at {
            prop_assert!(grant.exp <= e);
        }
        check_chain(parent, grant, child)?;
    }
    if !world_ok {
        // Refused, and for the grant itself (OAuth `invalid_grant`), not for its scope.
        prop_assert!(matches!(&result, Err(e) if !e.is_scope_error()), "{result:?}");
        if parent.exp <= now {
            prop_assert_eq!(&result, &Err(DelegationError::ParentExpired));
        }
        return Ok(());
    }
    if in_chain {
        prop_assert_eq!(&result, &Err(DelegationError::Cycle(child.id.clone())));
        prop_assert!(!DelegationError::Cycle(child.id.clone()).is_scope_error());
        return Ok(());
    }
    if depth > case.limits.max_depth {
        let too_deep = DelegationError::TooDeep { depth, limit: case.limits.max_depth };
        prop_assert!(!too_deep.is_scope_error());
        prop_assert_eq!(&result, &Err(too_deep));
        return Ok(());
    }
    check_scope_outcome(&result, case.requested.as_deref(), &ceilings, case.ttl)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Invariant 1 for delegation: the scope is covered by the parent's scope, the
    /// child's max scope and, for delegated work, the human's entitlements; the expiry is
    /// no later than the parent's; a request over a ceiling is a scope error.
    #[test]
    fn delegations_stay_within_every_ceiling(case in delegation_case()) {
        check_delegation(&case)?;
    }

    /// Invariant 2: a delegation appends the child to the parent's chain and rewrites
    /// nothing before it; the human stays the same. Every case here is a valid request.
    #[test]
    fn delegation_appends_to_the_chain_and_keeps_the_human(
        delegated in any::<bool>(),
        parent_scope in prop::collection::vec(model_perm(), 1..=4),
        chain in parent_chain(4),
        child in 9u8..=12,
        now in 1_000_000i64..2_000_000,
        parent_exp_in in 1i64..3000,
        ttl in prop::option::of(1i64..3000),
    ) {
        let case = DelegationCase {
            delegated,
            parent_scope,
            child_max_scope: vec![ModelPerm::from_text("*")],
            entitlements: vec![ModelPerm::from_text("*")],
            requested: None,
            chain,
            child,
            ttl,
            now,
            parent_exp_in,
            child_expires_in: None,
            child_status: AgentStatus::Active,
            chain_usable: true,
            child_mode_matches: true,
            owner_active: true,
            human_active: Some(true),
            limits: Limits::default(),
        };
        let world = DelegationWorld::new(&case);
        let grant = grant_delegation(&world.request(case.ttl), &case.limits);
        prop_assert!(grant.is_ok(), "{:?}", grant);
        let grant = grant.unwrap();
        check_chain(&world.parent, &grant, &world.child)?;
        prop_assert_eq!(grant.scope.to_string(), world.parent_scope.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Invariant 6: bounded depth, no cycles
// ---------------------------------------------------------------------------------------

/// The agents of the walk: 1..=6.
const WALK_POOL: u8 = 6;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Repeated delegation over a random sequence of agents: every chain stays within
    /// `max_depth` and free of repeats; a repeat is refused with `Cycle`, one agent too
    /// many with `TooDeep`.
    #[test]
    fn delegation_chains_are_bounded_and_acyclic(
        delegated in any::<bool>(),
        common in model_perm(),
        max_scopes in prop::collection::vec(prop::collection::vec(model_perm(), 0..=2), WALK_POOL as usize),
        root in 1u8..=WALK_POOL,
        walk in prop::collection::vec((1u8..=WALK_POOL, any::<bool>()), 1..=14),
        max_depth in 1usize..=7,
        now in 1_000_000i64..2_000_000,
    ) {
        let now = UnixTime(now);
        let limits = Limits { max_depth, ..Limits::default() };
        let mode = if delegated { Mode::Delegated } else { Mode::Autonomous };
        let owner = make_human(1, Scope::empty(), true);
        let human = make_human(2, Scope::parse("*").unwrap(), true);
        let agents: Vec<Agent> = max_scopes
            .iter()
            .zip(1..=WALK_POOL)
            .map(|(ms, n)| {
                // Every max scope holds `common`, so the ceilings always overlap.
                let mut ms = ms.clone();
                ms.push(common.clone());
                make_agent(n, &owner.id, mode, scope(&ms), AgentStatus::Active, None)
            })
            .collect();
        let by_number = |n: u8| &agents[usize::from(n - 1)];

        let root_agent = by_number(root);
        let root_req = RootRequest {
            agent: root_agent,
            owner: &owner,
            on_behalf_of: delegated.then_some(&human),
            scope: None,
            ttl: None,
            now,
        };
        // A root warrant over the agent's whole max scope: it always succeeds.
        let root_grant = grant_root(&root_req, &limits).unwrap();
        let human_id = if delegated { human.id.clone() } else { owner.id.clone() };
        let mut current =
            make_claims(&root_grant.chain, mode, &human_id, &owner.id, &root_grant.scope, now, root_grant.exp);

        for (n, go_deeper) in walk {
            let child = by_number(n);
            let chain = current.chain();
            let chain_agents: Vec<Agent> =
                chain.iter().map(|id| agents.iter().find(|a| &a.id == id).unwrap().clone()).collect();
            let parent_scope = current.scope().unwrap();
            let req = DelegationRequest {
                parent: &current,
                parent_scope: &parent_scope,
                chain_agents: &chain_agents,
                chain_owners: std::slice::from_ref(&owner),
                child,
                child_owner: &owner,
                human: Some(if delegated { &human } else { &owner }),
                scope: None,
                ttl: None,
                now,
            };
            let result = grant_delegation(&req, &limits);
            if chain.contains(&child.id) {
                prop_assert_eq!(result, Err(DelegationError::Cycle(child.id.clone())));
                continue;
            }
            if chain.len() + 1 > max_depth {
                prop_assert_eq!(result, Err(DelegationError::TooDeep { depth: chain.len() + 1, limit: max_depth }));
                continue;
            }
            // Every max scope holds `common`, so nothing else can refuse this step.
            prop_assert!(result.is_ok(), "refused: {:?}", result);
            let grant = result.unwrap();
            prop_assert!(grant.chain.len() <= max_depth);
            let mut seen = grant.chain.clone();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), grant.chain.len(), "repeated agent in {:?}", grant.chain);
            check_chain(&current, &grant, child)?;
            if go_deeper {
                current = make_claims(&grant.chain, mode, &human_id, &owner.id, &grant.scope, now, grant.exp);
            }
        }
    }
}

/// The registry as it is now decides: an agent of the chain whose owner was disabled
/// since, or a human other than the one the parent traces to, refuses the delegation.
#[test]
fn chain_owners_and_the_traced_human_are_checked_now() {
    let now = UnixTime(1_000_000);
    let everything = Scope::parse("*").unwrap();
    let owner = make_human(1, Scope::empty(), true);
    let alice = make_human(2, everything.clone(), true);
    let root = make_agent(1, &owner.id, Mode::Delegated, everything.clone(), AgentStatus::Active, None);
    let child = make_agent(9, &owner.id, Mode::Delegated, everything.clone(), AgentStatus::Active, None);
    let parent = make_claims(
        std::slice::from_ref(&root.id),
        Mode::Delegated,
        &alice.id,
        &owner.id,
        &everything,
        now,
        now.plus(60),
    );
    let chain_agents = [root.clone()];
    let attempt = |owners: &[Human], human: &Human| {
        let request = DelegationRequest {
            parent: &parent,
            parent_scope: &everything,
            chain_agents: &chain_agents,
            chain_owners: owners,
            child: &child,
            child_owner: &owner,
            human: Some(human),
            scope: None,
            ttl: None,
            now,
        };
        grant_delegation(&request, &Limits::default())
    };

    let ok = attempt(std::slice::from_ref(&owner), &alice);
    assert!(ok.is_ok(), "{ok:?}");

    let disabled_owner = Human { status: HumanStatus::Disabled, ..owner.clone() };
    let err = attempt(&[disabled_owner], &alice);
    assert_eq!(err, Err(DelegationError::OwnerInactive { agent: root.id.clone(), owner: owner.id.clone() }));
    let err = attempt(&[], &alice);
    assert!(matches!(err, Err(DelegationError::OwnerInactive { .. })), "{err:?}");

    let mallory = make_human(5, everything.clone(), true);
    let err = attempt(std::slice::from_ref(&owner), &mallory);
    assert_eq!(err, Err(DelegationError::HumanMismatch { expected: alice.id.clone(), given: mallory.id }));
    assert!(!err.unwrap_err().is_scope_error());
}

// ---------------------------------------------------------------------------------------
// Guardrails: budgets, rate limits, trust and baselines
// ---------------------------------------------------------------------------------------

/// Property tests of `warrant_core::guard`: the budget ledger against a model of the
/// delegation tree, GCRA against its conformance bound, and the trust and baseline rules.
mod guard_props {
    use std::collections::BTreeMap;

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::Index;
    use warrant_core::guard::baseline::{Baseline, BaselineConfig};
    use warrant_core::guard::budget::{attenuate, format_budget, parse_budget, Budget, Charge, ChargeError, Ledger};
    use warrant_core::guard::rate::{Gcra, RateLimit};
    use warrant_core::guard::signal::{Signal, SignalKind};
    use warrant_core::guard::trust::{percent, Trust, TrustConfig};
    use warrant_core::{UnixTime, WarrantId};

    const T0: i64 = 1_700_000_000;
    const EXP: UnixTime = UnixTime(2_000_000_000);
    /// The most warrants a generated tree holds.
    const MAX_NODES: usize = 12;

    #[derive(Debug, Clone)]
    enum LedgerOp {
        /// Delegates from an existing warrant: with its own (attenuated) budget, asking
        /// for `requested` (cost, rows) or for everything; or with no budget of its own.
        Open { parent: Index, own: bool, requested: Option<(i64, i64)> },
        /// Charges (cost, rows) to an existing warrant.
        Charge { node: Index, cost: i64, rows: i64 },
        /// Refunds the latest accepted charge not refunded yet.
        Refund,
    }

    fn ledger_op() -> impl Strategy<Value = LedgerOp> {
        prop_oneof![
            2 => (any::<Index>(), any::<bool>(), proptest::option::of((0i64..150, 0i64..30)))
                .prop_map(|(parent, own, requested)| LedgerOp::Open { parent, own, requested }),
            6 => (any::<Index>(), 0i64..40, 0i64..8).prop_map(|(node, cost, rows)| LedgerOp::Charge { node, cost, rows }),
            1 => Just(LedgerOp::Refund),
        ]
    }

    fn node_id(i: usize) -> WarrantId {
        WarrantId::parse(&format!("wrt_n{i}")).unwrap()
    }

    /// The reference model: the tree, each warrant's own limits, and the accepted charges.
    struct Model {
        parents: Vec<Option<usize>>,
        limits: Vec<Budget>,
        /// Accepted, unrefunded charges: (warrant charged at, amounts).
        accepted: Vec<(usize, Budget)>,
    }

    impl Model {
        /// `n` and its ancestors.
        fn chain(&self, n: usize) -> Vec<usize> {
            let mut chain = vec![n];
            let mut cur = n;
            while let Some(p) = self.parents[cur] {
                chain.push(p);
                cur = p;
            }
            chain
        }

        /// What was accepted at `m` or below it on `counter`.
        fn spent_below(&self, m: usize, counter: &str) -> i64 {
            self.accepted
                .iter()
                .filter(|(n, _)| self.chain(*n).contains(&m))
                .map(|(_, amounts)| amounts.get(counter).copied().unwrap_or(0))
                .sum()
        }

        /// What `n` may still spend, per counter: the least left on its chain.
        fn left(&self, n: usize) -> Budget {
            let mut left = Budget::new();
            for m in self.chain(n) {
                for (c, &limit) in &self.limits[m] {
                    let l = limit - self.spent_below(m, c);
                    left.entry(c.clone()).and_modify(|v| *v = (*v).min(l)).or_insert(l);
                }
            }
            left
        }
    }

    fn budget(pairs: &[(&str, i64)]) -> Budget {
        pairs.iter().map(|(c, v)| ((*c).to_owned(), *v)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// For any tree of warrants (budgets attenuated from the parent's, or none of their
        /// own) and any sequence of charges and refunds: what was accepted at or below a
        /// warrant never exceeds its limit; a charge is accepted exactly when every warrant
        /// on its chain has enough left; a refused charge changes nothing; and `left`
        /// agrees with the model throughout.
        #[test]
        fn ledger_trees_never_overspend(
            root_cost in 0i64..200,
            root_rows in proptest::option::of(0i64..50),
            ops in vec(ledger_op(), 1..60),
        ) {
            let mut root = budget(&[("cost", root_cost)]);
            if let Some(rows) = root_rows {
                root.insert("rows".into(), rows);
            }
            let mut ledger = Ledger::default();
            ledger.open(node_id(0), None, root.clone(), EXP);
            let mut model = Model { parents: vec![None], limits: vec![root], accepted: Vec::new() };
            let mut history: Vec<Vec<Charge>> = Vec::new();

            for op in ops {
                let nodes = model.parents.len();
                match op {
                    LedgerOp::Open { parent, own, requested } => {
                        if nodes >= MAX_NODES {
                            continue;
                        }
                        let p = parent.index(nodes);
                        let limits = if own {
                            let requested = requested.map(|(cost, rows)| budget(&[("cost", cost), ("rows", rows)]));
                            attenuate(&ledger.left(&node_id(p)), requested.as_ref())
                        } else {
                            Budget::new()
                        };
                        ledger.open(node_id(nodes), Some(node_id(p)), limits.clone(), EXP);
                        model.parents.push(Some(p));
                        model.limits.push(limits);
                    }
                    LedgerOp::Charge { node, cost, rows } => {
                        let n = node.index(nodes);
                        let amounts = budget(&[("cost", cost), ("rows", rows)]);
                        let fits = model.left(n).iter().all(|(c, &l)| amounts.get(c).copied().unwrap_or(0) <= l);
                        let before: Vec<Budget> = (0..nodes).map(|i| ledger.left(&node_id(i))).collect();
                        match ledger.charge(&node_id(n), &amounts) {
                            Ok(charges) => {
                                prop_assert!(fits, "accepted {:?} at {} beyond {:?}", amounts, n, model.left(n));
                                prop_assert!(charges.iter().all(|c| c.amount > 0));
                                model.accepted.push((n, amounts));
                                history.push(charges);
                            }
                            Err(ChargeError::Exceeded { left, needed, .. }) => {
                                prop_assert!(!fits, "refused {:?} at {} within {:?}", amounts, n, model.left(n));
                                prop_assert!(needed > left);
                                let after: Vec<Budget> = (0..nodes).map(|i| ledger.left(&node_id(i))).collect();
                                prop_assert_eq!(after, before);
                            }
                            Err(e) => prop_assert!(false, "unexpected {e}"),
                        }
                    }
                    LedgerOp::Refund => {
                        if let Some(charges) = history.pop() {
                            ledger.refund(&charges);
                            model.accepted.pop();
                        }
                    }
                }
                for m in 0..model.parents.len() {
                    for (c, &limit) in &model.limits[m] {
                        prop_assert!(model.spent_below(m, c) <= limit, "warrant {} overspent `{}`", m, c);
                    }
                    prop_assert_eq!(ledger.left(&node_id(m)), model.left(m));
                    let mut counters: Vec<String> = model.left(m).into_keys().collect();
                    counters.sort();
                    prop_assert_eq!(ledger.counters(&node_id(m)), counters);
                }
            }
        }

        /// Budgets print as they parse.
        #[test]
        fn budgets_round_trip(b in btree_map("[a-z][a-z0-9_]{0,12}", 0i64..=i64::MAX, 0..=16)) {
            prop_assert_eq!(parse_budget(&format_budget(&b)), Ok(b));
        }

        /// A child never gets more than its parent has left, nor a negative limit.
        #[test]
        fn attenuation_never_widens(
            left in btree_map(prop::sample::select(vec!["a", "b", "c"]), -10i64..100, 0..3),
            requested in proptest::option::of(btree_map(prop::sample::select(vec!["a", "b", "d"]), 0i64..100, 0..3)),
        ) {
            let left: Budget = left.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let requested: Option<Budget> = requested.map(|r| r.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
            let child = attenuate(&left, requested.as_ref());
            for (c, &l) in &left {
                prop_assert!(child[c] <= l.max(0) && child[c] >= 0);
            }
            for (c, &v) in child.iter() {
                if let Some(r) = requested.as_ref().and_then(|r| r.get(c)) {
                    prop_assert!(v <= *r);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// GCRA's conformance bound: between any two admitted requests `s` seconds apart,
        /// at most `limit * (per + s) / per` are admitted (a burst of `limit`, then the
        /// rate). A refusal's `retry_after` is exact: the request conforms then, and not
        /// a second earlier.
        #[test]
        fn gcra_admits_at_most_burst_plus_rate(
            limit in 1u64..20,
            per in 1u64..120,
            gaps in vec(prop_oneof![Just(0i64), 0i64..5, 0i64..40], 1..200),
        ) {
            let rl = RateLimit { limit, per_secs: per };
            let mut g = Gcra::default();
            let mut t = T0;
            let mut admitted = Vec::new();
            for gap in gaps {
                t += gap;
                match g.check(rl, UnixTime(t)) {
                    Ok(next) => {
                        g = next;
                        admitted.push(t);
                    }
                    Err(retry) => {
                        prop_assert!(retry >= 1);
                        let retry = i64::try_from(retry).unwrap();
                        prop_assert!(g.check(rl, UnixTime(t + retry)).is_ok());
                        if retry > 1 {
                            prop_assert!(g.check(rl, UnixTime(t + retry - 1)).is_err());
                        }
                    }
                }
            }
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let span = i128::from(admitted[j] - admitted[i]);
                    let count = i128::try_from(j - i + 1).unwrap();
                    let (l, p) = (i128::from(limit), i128::from(per));
                    prop_assert!(count * p <= l * (p + span), "{} admitted in {}s under {}", count, span, rl);
                }
            }
        }

        /// A fresh key admits exactly `limit` at once; requests spaced by at least the
        /// emission interval are always admitted.
        #[test]
        fn gcra_burst_and_steady_pace(limit in 1u64..50, per in 1u64..100, extra in vec(0i64..3, 1..60)) {
            let rl = RateLimit { limit, per_secs: per };
            let mut g = Gcra::default();
            let mut admitted = 0;
            for _ in 0..limit + 5 {
                if let Ok(next) = g.check(rl, UnixTime(T0)) {
                    g = next;
                    admitted += 1;
                }
            }
            prop_assert_eq!(admitted, limit);

            let interval = i64::try_from(per.div_ceil(limit)).unwrap();
            let mut g = Gcra::default();
            let mut t = T0;
            for e in extra {
                let next = g.check(rl, UnixTime(t));
                prop_assert!(next.is_ok(), "refused at {} under {}", t - T0, rl);
                g = next.unwrap();
                t += interval + e;
            }
        }

        /// Rate limits print as they parse.
        #[test]
        fn rate_limits_round_trip(limit in any::<u64>(), per in 1u64..=u64::MAX) {
            let rl = RateLimit { limit, per_secs: per };
            prop_assert_eq!(RateLimit::parse(&rl.to_string()), Ok(rl));
        }

        /// Trust stays in [0, 1], never rises with a signal, never falls with time alone,
        /// and `percent` agrees with it.
        #[test]
        fn trust_is_bounded_and_monotone(
            steps in vec((0i64..20_000, proptest::option::of(prop::sample::select(SignalKind::ALL.to_vec()))), 1..40),
        ) {
            let cfg = TrustConfig::default();
            let mut trust = Trust::new(&cfg, UnixTime(T0));
            let mut now = T0;
            for (dt, kind) in steps {
                let before = trust.current(&cfg, UnixTime(now));
                now += dt;
                let later = trust.current(&cfg, UnixTime(now));
                prop_assert!(later >= before && (0.0..=1.0).contains(&later));
                let signals: Vec<Signal> = kind.into_iter().map(|k| Signal::new(k, "p")).collect();
                trust = trust.penalise(&cfg, &signals, UnixTime(now));
                let after = trust.current(&cfg, UnixTime(now));
                prop_assert!(after <= later && (0.0..=1.0).contains(&after));
                prop_assert!((0..=100).contains(&percent(after)));
                prop_assert_eq!(trust.quarantined(&cfg, UnixTime(now)), after < cfg.quarantine_below);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Past learning, an action is novel exactly when it was never allowed; assessing
        /// and denying never teach the baseline.
        #[test]
        fn novelty_is_exactly_never_allowed(
            steps in vec((prop::sample::select(vec!["a.read", "a.write", "b.send", "c.drop"]), any::<bool>()), 1..60),
        ) {
            let cfg = BaselineConfig::default();
            let mut b = Baseline::new(UnixTime(T0));
            let mut t = T0;
            for _ in 0..120 {
                b.assess(&cfg, "a.read", "x/1", UnixTime(t));
                b.record(&cfg, "a.read", "x/1", true, false, UnixTime(t));
                t += 6;
            }
            let mut allowed: BTreeMap<&str, bool> = BTreeMap::from([("a.read", true)]);
            for (action, allow) in steps {
                t += 3;
                let known = allowed.contains_key(action);
                let before = (b.actions.clone(), b.prefixes.clone(), b.hours, b.allowed);
                let signals = b.assess(&cfg, action, "x/2", UnixTime(t));
                prop_assert_eq!((b.actions.clone(), b.prefixes.clone(), b.hours, b.allowed), before.clone());
                let novel = signals.iter().any(|s| s.kind == SignalKind::NovelAction);
                prop_assert_eq!(novel, !known, "{} known: {}", action, known);
                b.record(&cfg, action, "x/2", allow, true, UnixTime(t));
                if allow {
                    allowed.insert(action, true);
                } else {
                    prop_assert_eq!((b.actions.clone(), b.prefixes.clone(), b.hours, b.allowed), before);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Percent-encoded resource segments: one spelling per decoded text
// ---------------------------------------------------------------------------------------

/// Whether `text`, split at `/` and `\`, has a `.` or `..` component.
fn has_dot_component(text: &str) -> bool {
    text.split(['/', '\\']).any(|part| part == "." || part == "..")
}

/// Decodes `%hh` in any case and keeps every other character; `None` for a `%` without
/// two hex digits or bytes that are not UTF-8.
fn lenient_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The encoder always produces an accepted segment (unless the text has a dot
    /// component), which decodes back to the text and which a permission naming it allows.
    #[test]
    fn percent_encode_round_trips(text in "\\PC{1,24}|[a-z:/.%]{1,12}") {
        let encoded = warrant_core::percent_encode(&text);
        let accepted = warrant_core::permission::canonical_segment(&encoded).is_ok();
        prop_assert_eq!(accepted, !has_dot_component(&text), "{:?} -> {:?}", text, encoded);
        if accepted {
            let decoded = warrant_core::percent_decode(&encoded);
            prop_assert_eq!(decoded.as_deref(), Ok(text.as_str()));
            let resource = format!("mcp/u/resource/{encoded}");
            let perm = Permission::parse(&format!("mcp.resources.read:{resource}")).unwrap();
            prop_assert!(perm.allows("mcp.resources.read", &resource));
            prop_assert!(Permission::parse("mcp.resources.read:mcp/u/resource/*").unwrap().covers(&perm));
        }
    }

    /// A segment that uses `%` is accepted exactly when it is the encoder's output for
    /// some text without a dot component, checked against a lenient decoder written here:
    /// no decoded text has a second accepted spelling (`%2f`, `%41`, a raw `:` are refused).
    #[test]
    fn accepted_percent_segments_are_the_encoders_output(segment in "[%0-9A-Fa-fgz:~_.-]{0,6}%[%0-9A-Fa-fgz:~_.-]{0,6}") {
        let accepted = warrant_core::permission::canonical_segment(&segment).is_ok();
        let model = lenient_decode(&segment)
            .is_some_and(|text| warrant_core::percent_encode(&text) == segment && !has_dot_component(&text));
        prop_assert_eq!(accepted, model, "{:?}", segment);
    }
}
