//! Loading a policy set: files -> named policies -> schema with the named actions ->
//! strict validation -> a fingerprinted, ready-to-evaluate set.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr as _;

use cedar_policy::{ActionConstraint, Authorizer, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use sha2::{Digest as _, Sha256};

use crate::schema::{with_actions, with_actions_for, NAMESPACE, SCHEMA_FILE, SUBJECT_APPLIES_TO, SUBJECT_TYPES};

/// The largest policy file read, in bytes.
pub const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// One policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The file name (e.g. `default.cedar`).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// Why a policy set was refused. The previous set, if any, stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A file or the directory could not be read.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The directory holds no `*.cedar` file.
    #[error("no policy file (`*.cedar`) in `{0}`")]
    NoFiles(String),
    /// A file does not parse.
    #[error("`{file}` does not parse: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// A file holds a template (`?principal`), which is not supported.
    #[error("`{0}` holds a policy template; templates are not supported")]
    Template(String),
    /// Two policies share an id.
    #[error("policy id `{0}` is used twice")]
    DuplicateId(String),
    /// The schema does not parse.
    #[error("the schema is invalid: {0}")]
    Schema(String),
    /// The policies do not validate against the schema.
    #[error("the policies do not validate against the schema: {0}")]
    Invalid(String),
    /// The policies for plain subjects (humans, services) do not validate against the
    /// schema (which must declare `Human` with its attributes, `Service` and
    /// `SubjectContext`, as the shipped one does).
    #[error("the policies for plain subjects do not validate against the schema: {0}")]
    InvalidSubject(String),
    /// A guardrail annotation (`@approval`, `@quarantine`) is misplaced or malformed.
    #[error("policy `{id}`: {message}")]
    Annotation {
        /// The policy.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// What Warrant's own annotations ask of a forbid policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    /// `@approval("owner"|"human")`: a request this forbid matches becomes `pending`
    /// until that human approves it.
    pub approval: Option<warrant_core::guard::approval::Approver>,
    /// `@quarantine`: a request this forbid matches quarantines the agent.
    pub quarantine: bool,
}

/// Reads `@approval` and `@quarantine` from a policy: only forbids may carry them.
fn marks_of(id: &str, policy: &cedar_policy::Policy) -> Result<Marks, PolicyError> {
    let bad = |message: String| PolicyError::Annotation { id: id.to_owned(), message };
    let approval = match policy.annotation("approval") {
        None => None,
        Some(v) => Some(
            warrant_core::guard::approval::Approver::parse(v)
                .ok_or_else(|| bad(format!("`@approval(\"{v}\")` must name `owner` or `human`")))?,
        ),
    };
    let quarantine = policy.annotation("quarantine").is_some();
    if (approval.is_some() || quarantine) && policy.effect() != cedar_policy::Effect::Forbid {
        return Err(bad("`@approval` and `@quarantine` belong on `forbid` policies".into()));
    }
    if approval.is_some() && quarantine {
        return Err(bad("a policy cannot both ask for approval and quarantine".into()));
    }
    Ok(Marks { approval, quarantine })
}

/// Whether a policy's head names a plain-subject type (`Warrant::Human`,
/// `Warrant::Service`) as its principal: `is`, `is … in` or `==`. `principal in
/// Warrant::Human::"…"` names no type: it is an agent policy (agents are members of
/// their owner).
fn is_subject_policy(policy: &cedar_policy::Policy) -> bool {
    let named = |t: &cedar_policy::EntityTypeName| {
        SUBJECT_TYPES.iter().any(|kind| t.to_string() == format!("{NAMESPACE}::{kind}"))
    };
    match policy.principal_constraint() {
        cedar_policy::PrincipalConstraint::Is(t) | cedar_policy::PrincipalConstraint::IsIn(t, _) => named(&t),
        cedar_policy::PrincipalConstraint::Eq(uid) => named(uid.type_name()),
        cedar_policy::PrincipalConstraint::Any | cedar_policy::PrincipalConstraint::In(_) => false,
    }
}

/// Which actions a policy's scope can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionScope {
    /// `action` unconstrained.
    Any,
    /// `action == A` or `action in [A, …]`: matches an action equal to, or a member of,
    /// one of these (an action's groups are its `x.*` ancestors).
    Among(Vec<String>),
}

impl ActionScope {
    /// Whether a request for `action` (whose groups are `groups`) can match.
    pub(crate) fn matches(&self, action: &str, groups: &[String]) -> bool {
        match self {
            ActionScope::Any => true,
            ActionScope::Among(ids) => ids.iter().any(|id| id == action || groups.contains(id)),
        }
    }
}

/// What every request for one action shares: the policies that can apply to it (its
/// slice), its uid, and the entities of the action and its wildcard groups.
#[derive(Debug)]
pub(crate) struct ActionSlice {
    pub(crate) set: PolicySet,
    /// The slice without its `@approval` forbids (what an approved request is held to);
    /// `None` when the slice has none.
    pub(crate) relaxed: Option<PolicySet>,
    pub(crate) uid: cedar_policy::EntityUid,
    pub(crate) entities: Vec<cedar_policy::Entity>,
}

/// Slices by action.
pub(crate) type Slices = std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<ActionSlice>>>;

/// An agent and its owner as Cedar entities, with the registry state they were built from.
#[derive(Debug)]
pub(crate) struct AgentEntities {
    pub(crate) agent: warrant_core::Agent,
    /// Identity of this build: base entity sets made from it are valid while it is current.
    pub(crate) entities_id: std::sync::Arc<()>,
    pub(crate) uid: cedar_policy::EntityUid,
    pub(crate) entities: [cedar_policy::Entity; 2],
}

/// Agent entities by agent id; rebuilt when the agent changes.
pub(crate) type AgentCache =
    std::sync::RwLock<std::collections::HashMap<warrant_core::AgentId, std::sync::Arc<AgentEntities>>>;

/// The entities shared by every request of one agent for one action, by (agent, action),
/// tagged with the agent build they came from. Shared, not copied: a decision copies them
/// once, to add its own resource.
pub(crate) type BaseCache = std::sync::RwLock<
    std::collections::HashMap<
        (warrant_core::AgentId, String),
        (std::sync::Arc<()>, std::sync::Arc<cedar_policy::Entities>),
    >,
>;

/// Warrant's entity type names, parsed once (parsing a name runs Cedar's parser).
#[derive(Debug)]
pub(crate) struct Types {
    pub(crate) human: cedar_policy::EntityTypeName,
    pub(crate) service: cedar_policy::EntityTypeName,
    pub(crate) agent: cedar_policy::EntityTypeName,
    pub(crate) action: cedar_policy::EntityTypeName,
    pub(crate) resource: cedar_policy::EntityTypeName,
    pub(crate) activity: cedar_policy::EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, PolicyError> {
        let name = |kind: &str| {
            format!("{NAMESPACE}::{kind}")
                .parse::<cedar_policy::EntityTypeName>()
                .map_err(|e| PolicyError::Schema(e.to_string()))
        };
        Ok(Types {
            human: name("Human")?,
            service: name("Service")?,
            agent: name("Agent")?,
            action: name("Action")?,
            resource: name("Resource")?,
            activity: name("Activity")?,
        })
    }
}

/// The most actions whose slices are cached before the cache is cleared.
pub(crate) const MAX_SLICES: usize = 4096;

/// A validated policy set, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledPolicies {
    /// The policies for agents.
    pub(crate) set: PolicySet,
    /// The policies for plain subjects (their head names `Human` or `Service`).
    pub(crate) subject_set: PolicySet,
    /// Every policy with the actions its scope can match, for slicing.
    pub(crate) scoped: std::sync::Arc<Vec<(cedar_policy::Policy, ActionScope)>>,
    pub(crate) slices: std::sync::Arc<Slices>,
    pub(crate) agents: std::sync::Arc<AgentCache>,
    pub(crate) bases: std::sync::Arc<BaseCache>,
    pub(crate) types: std::sync::Arc<Types>,
    pub(crate) authorizer: std::sync::Arc<Authorizer>,
    /// Guardrail annotations by policy id (only policies that carry one).
    pub(crate) marks: std::sync::Arc<std::collections::HashMap<String, Marks>>,
    schema_text: String,
    base_schema: String,
    files: Vec<PolicyFile>,
    ids: Vec<String>,
    hash: String,
    uses_history: bool,
}

/// Reads every `*.cedar` file of `dir` (sorted by name) and the schema override
/// `warrant.cedarschema` when present.
pub fn read_dir(dir: &Path) -> Result<(Vec<PolicyFile>, Option<String>), PolicyError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| PolicyError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, &e))?;
    let mut files = Vec::new();
    let mut schema = None;
    for entry in entries {
        let path = entry.map_err(|e| read_err(dir, &e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let is_policy = name.ends_with(".cedar") && !name.starts_with('.');
        if !is_policy && name != SCHEMA_FILE {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| read_err(&path, &e))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_POLICY_FILE {
            return Err(read_err(&path, &format!("larger than {MAX_POLICY_FILE} bytes")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, &e))?;
        if name == SCHEMA_FILE {
            schema = Some(text);
        } else {
            files.push(PolicyFile { name, text });
        }
    }
    if files.is_empty() {
        return Err(PolicyError::NoFiles(dir.display().to_string()));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((files, schema))
}

impl CompiledPolicies {
    /// Parses, names and validates `files` against `base_schema` plus the actions they
    /// name. Policy ids come from an `@id("…")` annotation, else `file#n`.
    ///
    /// A policy whose head names a plain-subject type (`principal is Warrant::Human`,
    /// `principal is Warrant::Service`, `principal == Warrant::Human::"…"`, also with
    /// `in`) is for plain subjects: it is validated against the actions applying to
    /// `Human` and `Service` principals with the `SubjectContext`, and only plain-subject
    /// decisions evaluate it. Every other policy is for agents, validated and evaluated
    /// exactly as before plain subjects existed.
    pub fn compile(files: Vec<PolicyFile>, base_schema: &str) -> Result<Self, PolicyError> {
        let mut set = PolicySet::new();
        let mut subject_set = PolicySet::new();
        let mut subject_actions = BTreeSet::new();
        let mut scoped = Vec::new();
        let mut ids = Vec::new();
        let mut marks = std::collections::HashMap::new();
        let mut actions = BTreeSet::new();
        let action_type = format!("{NAMESPACE}::Action");
        for file in &files {
            let parsed = PolicySet::from_str(&file.text)
                .map_err(|e| PolicyError::Parse { file: file.name.clone(), message: e.to_string() })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Template(file.name.clone()));
            }
            for (i, policy) in parsed.policies().enumerate() {
                let id = policy.annotation("id").map_or_else(|| format!("{}#{i}", file.name), str::to_owned);
                let (uids, any) = match policy.action_constraint() {
                    ActionConstraint::Any => (Vec::new(), true),
                    ActionConstraint::Eq(uid) => (vec![uid], false),
                    ActionConstraint::In(uids) => (uids, false),
                };
                let mut among = Vec::new();
                for uid in uids {
                    // A uid of another type can never equal a Warrant action: validation
                    // refuses it; until then it simply matches nothing.
                    if uid.type_name().to_string() == action_type {
                        among.push(uid.id().unescaped().to_owned());
                    }
                }
                let mark = marks_of(&id, policy)?;
                let named = policy.new_id(PolicyId::new(&id));
                if is_subject_policy(policy) {
                    if mark != Marks::default() {
                        return Err(PolicyError::Annotation {
                            id,
                            message:
                                "`@approval` and `@quarantine` apply to agents, not to a policy for plain subjects"
                                    .into(),
                        });
                    }
                    if set.policy(&PolicyId::new(&id)).is_some() {
                        return Err(PolicyError::DuplicateId(id));
                    }
                    subject_set.add(named).map_err(|_| PolicyError::DuplicateId(id.clone()))?;
                    subject_actions.extend(among);
                    ids.push(id);
                    continue;
                }
                if mark != Marks::default() {
                    marks.insert(id.clone(), mark);
                }
                if subject_set.policy(&PolicyId::new(&id)).is_some() {
                    return Err(PolicyError::DuplicateId(id));
                }
                actions.extend(among.iter().cloned());
                set.add(named.clone()).map_err(|_| PolicyError::DuplicateId(id.clone()))?;
                scoped.push((named, if any { ActionScope::Any } else { ActionScope::Among(among) }));
                ids.push(id);
            }
        }
        let schema_text = with_actions(base_schema, &actions);
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&schema_text).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let messages: Vec<String> = result.validation_errors().map(|e| format!("{e}")).collect();
            return Err(PolicyError::Invalid(messages.join("; ")));
        }
        // The plain-subject policies, validated on their own (only when there are any, so
        // a schema without the plain-subject types still serves agents).
        let subject_schema = if subject_set.is_empty() {
            None
        } else {
            let text = with_actions_for(base_schema, &subject_actions, SUBJECT_APPLIES_TO);
            let (schema, _warnings) =
                Schema::from_cedarschema_str(&text).map_err(|e| PolicyError::InvalidSubject(e.to_string()))?;
            let result = Validator::new(schema).validate(&subject_set, ValidationMode::Strict);
            if !result.validation_passed() {
                let messages: Vec<String> = result.validation_errors().map(|e| format!("{e}")).collect();
                return Err(PolicyError::InvalidSubject(messages.join("; ")));
            }
            Some(text)
        };
        let mut hasher = Sha256::new();
        hasher.update(schema_text.as_bytes());
        if let Some(text) = &subject_schema {
            hasher.update([0]);
            hasher.update(text.as_bytes());
        }
        for file in &files {
            hasher.update([0]);
            hasher.update(file.name.as_bytes());
            hasher.update([0]);
            hasher.update(file.text.as_bytes());
        }
        let hash = hex::encode(hasher.finalize());
        let uses_history = set.policies().any(|p| p.to_string().contains("history"));
        Ok(CompiledPolicies {
            set,
            subject_set,
            scoped: std::sync::Arc::new(scoped),
            slices: std::sync::Arc::default(),
            agents: std::sync::Arc::default(),
            bases: std::sync::Arc::default(),
            types: std::sync::Arc::new(Types::new()?),
            authorizer: std::sync::Arc::new(Authorizer::new()),
            marks: std::sync::Arc::new(marks),
            schema_text,
            base_schema: base_schema.to_owned(),
            files,
            ids,
            hash,
            uses_history,
        })
    }

    /// Whether an agent policy reads `context.history`: only then does a decision count
    /// the agent's recent activity and hand it to Cedar.
    pub fn uses_history(&self) -> bool {
        self.uses_history
    }

    /// The policies that can apply to `action` (its slice) and its entities, built once
    /// per action. The decision over a slice equals the decision over the whole set: a
    /// policy whose action constraint does not match is never satisfied and never
    /// evaluated further.
    pub(crate) fn slice(&self, action: &str) -> Result<std::sync::Arc<ActionSlice>, crate::EvalError> {
        if let Some(hit) = self.slices.read().ok().and_then(|m| m.get(action).cloned()) {
            return Ok(hit);
        }
        let groups = crate::schema::action_groups(action);
        let mut set = PolicySet::new();
        let mut relaxed = PolicySet::new();
        let mut any_approval = false;
        for (policy, scope) in self.scoped.iter() {
            if scope.matches(action, &groups) {
                set.add(policy.clone()).map_err(|e| crate::EvalError::Cedar(e.to_string()))?;
                if self.marks(policy.id().as_ref()).approval.is_some() {
                    any_approval = true;
                } else {
                    relaxed.add(policy.clone()).map_err(|e| crate::EvalError::Cedar(e.to_string()))?;
                }
            }
        }
        let relaxed = any_approval.then_some(relaxed);
        let uid_of = |id: &str| {
            cedar_policy::EntityUid::from_type_name_and_id(self.types.action.clone(), cedar_policy::EntityId::new(id))
        };
        // The action and each of its wildcard groups, each a member of the next.
        let uid = uid_of(action);
        let mut entities = Vec::with_capacity(groups.len() + 1);
        let mut member = uid.clone();
        for group in &groups {
            let group_uid = uid_of(group);
            entities.push(cedar_policy::Entity::new_no_attrs(member, [group_uid.clone()].into_iter().collect()));
            member = group_uid;
        }
        entities.push(cedar_policy::Entity::new_no_attrs(member, Default::default()));
        let slice = std::sync::Arc::new(ActionSlice { set, relaxed, uid, entities });
        if let Ok(mut m) = self.slices.write() {
            if m.len() >= MAX_SLICES {
                m.clear();
            }
            m.insert(action.to_owned(), std::sync::Arc::clone(&slice));
        }
        Ok(slice)
    }

    /// The guardrail annotations of policy `id` (none for an unknown id).
    pub fn marks(&self, id: &str) -> Marks {
        self.marks.get(id).copied().unwrap_or_default()
    }

    /// Whether any policy carries `@approval` or `@quarantine`.
    pub fn has_marks(&self) -> bool {
        !self.marks.is_empty()
    }

    /// How many policies are for plain subjects.
    pub fn subject_policy_count(&self) -> usize {
        self.subject_set.policies().count()
    }

    /// How many policies can apply to `action`.
    pub fn slice_len(&self, action: &str) -> usize {
        self.slice(action).map(|s| s.set.policies().count()).unwrap_or(0)
    }

    /// The SHA-256 fingerprint of the schema and every file.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The policy ids, in file order.
    pub fn policy_ids(&self) -> &[String] {
        &self.ids
    }

    /// The files the set was compiled from.
    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// Every file's text, each under a `// file: NAME` header.
    pub fn source_text(&self) -> String {
        self.files.iter().map(|f| format!("// file: {}\n{}\n", f.name, f.text)).collect()
    }

    /// The base schema (shipped or overridden) the set was compiled with; with the files,
    /// enough to compile the same set again.
    pub fn base_schema(&self) -> &str {
        &self.base_schema
    }

    /// The full schema the set was validated against (base plus generated actions).
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }
}
