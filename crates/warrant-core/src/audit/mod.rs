//! The audit chain, pure: records, canonical encoding and hash chaining, verification.
//!
//! Every audited event is an [`AuditEntry`]. It is stored as an [`AuditRecord`]: its
//! sequence number, its *body* (the canonical encoding of the sequence number and the
//! entry: compact JSON of a struct whose field order is fixed, see [`chain`]), the hash of
//! the record before it, and its own hash, `SHA-256(prev_hash || body)`. The first record
//! has sequence number 1 and chains onto [`GENESIS`] (32 zero bytes).
//!
//! The hash covers the body *as stored*: verification never re-encodes anything, so the
//! chain stays verifiable whatever a later build's JSON encoder does with the same entry.
//!
//! [`ChainVerifier`] checks a chain streamed in sequence order, together with the heads of
//! signed checkpoints (their signatures are checked by the caller), and names the first
//! bad record. [`verify_chain`] runs it over an iterator.
//!
//! [`details`] holds one type per kind of record the engine writes, serializing to the
//! record's `details`; [`AuditEntry::with_details`] builds an entry from one.

pub mod details;

pub use details::{
    AnonymousDenies, ApprovalDetails, ApprovalOp, AuditDetails, DecisionDetails, DecisionWarrant, GovernanceDetails,
    PolicyDetails, RegistryDetails, RevocationDetails, WarrantDetails,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AgentId, HumanId, TaskId, UnixTime, WarrantId};

/// The `prev_hash` of the first record: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A root warrant was issued.
    Issuance,
    /// A warrant was exchanged for a narrower one.
    Delegation,
    /// An authorization decision (allow, deny or pending).
    Decision,
    /// A warrant, agent, task or human was revoked.
    Revocation,
    /// A human or agent was registered or changed status.
    Registry,
    /// The policy set changed.
    Policy,
    /// A task changed state (e.g. completed).
    Task,
    /// A human approval was opened, approved, rejected or used.
    Approval,
    /// A governance act: a finding accepted, an agent attested.
    Governance,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 9] = [
        AuditKind::Issuance,
        AuditKind::Delegation,
        AuditKind::Decision,
        AuditKind::Revocation,
        AuditKind::Registry,
        AuditKind::Policy,
        AuditKind::Task,
        AuditKind::Approval,
        AuditKind::Governance,
    ];

    /// The wire name (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Issuance => "issuance",
            AuditKind::Delegation => "delegation",
            AuditKind::Decision => "decision",
            AuditKind::Revocation => "revocation",
            AuditKind::Registry => "registry",
            AuditKind::Policy => "policy",
            AuditKind::Task => "task",
            AuditKind::Approval => "approval",
            AuditKind::Governance => "governance",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Result<AuditKind, UnknownAuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == text).ok_or_else(|| UnknownAuditKind(text.to_owned()))
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditKind {
    type Err = UnknownAuditKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::parse(s)
    }
}

/// A string that names no [`AuditKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an audit record kind")]
pub struct UnknownAuditKind(pub String);

/// One audited event, before it is chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened (from the caller's clock).
    pub at: UnixTime,
    /// What it is about.
    pub kind: AuditKind,
    /// The agent acting or concerned, if any.
    pub agent: Option<AgentId>,
    /// The human the work traces to, if any.
    pub human: Option<HumanId>,
    /// The task, if any.
    pub task: Option<TaskId>,
    /// The warrant used or issued, if any.
    pub warrant: Option<WarrantId>,
    /// For decisions: `allow`, `deny` or `pending`.
    pub decision: Option<String>,
    /// Everything else, kind-specific (reasons, policies, scopes, …).
    pub details: serde_json::Value,
    /// Who made the change through the API or console (absent on records written before
    /// this field existed and on records nobody asked for, e.g. decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<crate::access::Principal>,
}

impl AuditEntry {
    /// An entry of `kind` at `at` with nothing else set (`details` is `{}`).
    pub fn new(at: UnixTime, kind: AuditKind) -> Self {
        AuditEntry {
            at,
            kind,
            agent: None,
            human: None,
            task: None,
            warrant: None,
            decision: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
            by: None,
        }
    }

    /// An entry at `at` with typed `details`: its kind is theirs, and its `details` their
    /// JSON value (the stored form is unchanged: a JSON value). For the aggregate of
    /// anonymous denies `decision` is `deny`; for a decision the caller sets `decision`
    /// (the outcome) and, like for every kind, the agent, human, task and warrant fields.
    pub fn with_details(at: UnixTime, details: impl Into<AuditDetails>) -> Result<Self, EncodeError> {
        let details = details.into();
        let mut entry = AuditEntry::new(at, details.kind());
        if let AuditDetails::AnonymousDenies(_) = details {
            entry.decision = Some("deny".to_owned());
        }
        entry.details = details.to_value()?;
        Ok(entry)
    }

    /// The same entry, recorded as made by `by`.
    pub fn by(self, by: Option<crate::access::Principal>) -> Self {
        AuditEntry { by, ..self }
    }
}

/// One record of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The sequence number, from 1, without gaps.
    pub seq: u64,
    /// The canonical encoding of `seq` and the entry (see [`chain`]).
    pub body: String,
    /// The hash of the record before (or [`GENESIS`]).
    pub prev_hash: [u8; 32],
    /// `SHA-256(prev_hash || body)`.
    pub hash: [u8; 32],
}

/// The canonical body, serialized. Field order is the encoding: never reorder, rename or
/// insert fields here; a new encoding needs a new version marker.
#[derive(Serialize)]
struct BodyRef<'a, D: Serialize + ?Sized> {
    seq: u64,
    at: UnixTime,
    kind: AuditKind,
    agent: Option<&'a AgentId>,
    human: Option<&'a HumanId>,
    task: Option<&'a TaskId>,
    warrant: Option<&'a WarrantId>,
    decision: Option<&'a str>,
    details: &'a D,
    /// Appended last and only when present, so every record written before it existed
    /// encodes (and verifies) exactly as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a crate::access::Principal>,
}

/// The canonical body, parsed back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    seq: u64,
    at: UnixTime,
    kind: AuditKind,
    agent: Option<AgentId>,
    human: Option<HumanId>,
    task: Option<TaskId>,
    warrant: Option<WarrantId>,
    decision: Option<String>,
    details: serde_json::Value,
    #[serde(default)]
    by: Option<crate::access::Principal>,
}

/// Why an entry could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("the audit entry cannot be encoded: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Why a record's body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the body of audit record {seq} is not a valid audit entry: {source}")]
pub struct DecodeError {
    /// The record's sequence number.
    pub seq: u64,
    /// What the parser said.
    pub source: serde_json::Error,
}

/// `SHA-256(prev_hash || body)`.
pub fn record_hash(prev_hash: &[u8; 32], body: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(body.as_bytes());
    hasher.finalize().into()
}

/// The canonical body of `entry` at `seq`: compact JSON of
/// `{seq, at, kind, agent, human, task, warrant, decision, details}` in that order
/// (absent values are `null`). The key order inside `details` is whatever serde_json
/// produces in this build (insertion order with `preserve_order`, sorted without): the
/// hash covers the stored text, so either is verifiable forever.
pub fn encode_body(seq: u64, entry: &AuditEntry) -> Result<String, EncodeError> {
    encode_body_with(seq, entry, &entry.details)
}

/// The canonical body of `entry` at `seq` with `details` in place of `entry.details`.
fn encode_body_with<D: Serialize + ?Sized>(seq: u64, entry: &AuditEntry, details: &D) -> Result<String, EncodeError> {
    let body = BodyRef {
        seq,
        at: entry.at,
        kind: entry.kind,
        agent: entry.agent.as_ref(),
        human: entry.human.as_ref(),
        task: entry.task.as_ref(),
        warrant: entry.warrant.as_ref(),
        decision: entry.decision.as_deref(),
        details,
        by: entry.by.as_ref(),
    };
    Ok(serde_json::to_string(&body)?)
}

/// Chains `entry` as record `seq` onto the record whose hash is `prev_hash`.
pub fn chain(prev_hash: [u8; 32], seq: u64, entry: &AuditEntry) -> Result<AuditRecord, EncodeError> {
    let body = encode_body(seq, entry)?;
    let hash = record_hash(&prev_hash, &body);
    Ok(AuditRecord { seq, body, prev_hash, hash })
}

/// Chains `entry` with typed `details` (its own `details` are not read) as record `seq`
/// onto the record whose hash is `prev_hash`: the details are serialized once, straight
/// into the body, with no JSON value built between. The record reads back as
/// [`AuditEntry::with_details`] of the same details would have written it.
pub fn chain_details(
    prev_hash: [u8; 32],
    seq: u64,
    entry: &AuditEntry,
    details: &AuditDetails,
) -> Result<AuditRecord, EncodeError> {
    let body = encode_body_with(seq, entry, details)?;
    let hash = record_hash(&prev_hash, &body);
    Ok(AuditRecord { seq, body, prev_hash, hash })
}

/// Reads a record's body back: the sequence number it embeds and the entry.
pub fn decode(record: &AuditRecord) -> Result<(u64, AuditEntry), DecodeError> {
    let body: Body = serde_json::from_str(&record.body).map_err(|source| DecodeError { seq: record.seq, source })?;
    let entry = AuditEntry {
        at: body.at,
        kind: body.kind,
        agent: body.agent,
        human: body.human,
        task: body.task,
        warrant: body.warrant,
        decision: body.decision,
        details: body.details,
        by: body.by,
    };
    Ok((body.seq, entry))
}

/// A hash as lowercase hex.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

/// A text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 hash in hex")]
pub struct BadHashHex(pub String);

/// Parses 64 hex digits into a hash.
pub fn parse_hash_hex(text: &str) -> Result<[u8; 32], BadHashHex> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| BadHashHex(text.to_owned()))?;
    Ok(out)
}

/// A signed checkpoint's claim about the chain: the record at `seq` has hash `head_hash`.
/// The caller has already checked the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHead {
    /// The sequence number of the head record when the checkpoint was signed.
    pub seq: u64,
    /// That record's hash.
    pub head_hash: [u8; 32],
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether every record and checkpoint checked out.
    pub ok: bool,
    /// How many records verified before the first bad one (all of them when `ok`).
    pub records: u64,
    /// The sequence number of the first bad (or first missing) record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<u64>,
    /// What is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Verifies a chain streamed record by record, in sequence order.
///
/// Per record, in this order: the sequence number follows the previous one (a gap names
/// the first missing number); the hash matches `prev_hash || body` (an edit names the
/// record); the body parses and embeds the row's sequence number (a moved record names
/// the row it was moved to); `prev_hash` is the previous record's hash (a rewritten and
/// rehashed record names the record whose hash its successor does not acknowledge, or the
/// successor when the previous record is confirmed by a checkpoint); a checkpoint at this
/// sequence number names this record's hash (a mismatch names the checkpoint's record:
/// the rewrite happened after the previous good checkpoint). At the end, a
/// checkpoint beyond the last record shows the tail was truncated: the first missing
/// record is named.
///
/// Only the first (lowest) failure is kept: records at or beyond it are not checked.
/// Truncating records after the last checkpoint cannot be detected from the chain alone.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: [u8; 32],
    checkpoints: std::collections::VecDeque<CheckpointHead>,
    records: u64,
    /// The last record whose hash a signed checkpoint confirmed (0 for none).
    confirmed: u64,
    failure: Option<(u64, String)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting record 1 on [`GENESIS`].
    pub fn new() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS,
            checkpoints: std::collections::VecDeque::new(),
            records: 0,
            confirmed: 0,
            failure: None,
        }
    }

    /// Adds a checkpoint (signature already checked). Checkpoints may be added in any
    /// order, but each must be added before the record at its sequence number is pushed
    /// (or before [`finish`](Self::finish) when it lies beyond the last record). The one
    /// exception is a checkpoint of the last record pushed: a log being written while it
    /// is verified stores a record before the checkpoint of it, so that checkpoint can
    /// arrive just after its record was checked; it is compared with that record's hash.
    pub fn add_checkpoint(&mut self, checkpoint: CheckpointHead) {
        let last = self.next_seq.saturating_sub(1);
        if checkpoint.seq == last && last > 0 && !self.failed_by(last) {
            if checkpoint.head_hash == self.prev_hash {
                self.confirmed = last;
            } else {
                self.reject(
                    last,
                    format!(
                        "record {last} differs from the signed checkpoint at {last}: the records since the \
                         previous checkpoint may have been rewritten"
                    ),
                );
            }
            return;
        }
        if checkpoint.seq < self.next_seq {
            // Its record was already pushed: too late to compare; treat as a misuse that
            // must not pass silently.
            self.reject(
                checkpoint.seq,
                format!("checkpoint at {} arrived after its record was checked", checkpoint.seq),
            );
            return;
        }
        let at = self.checkpoints.partition_point(|c| c.seq <= checkpoint.seq);
        self.checkpoints.insert(at, checkpoint);
    }

    /// Records a failure found by the caller (a bad checkpoint signature, indexed columns
    /// that disagree with the body, an unreadable row). The lowest failure wins.
    pub fn reject(&mut self, seq: u64, reason: impl Into<String>) {
        if self.failure.as_ref().is_some_and(|(bad, _)| *bad <= seq) {
            return;
        }
        self.failure = Some((seq, reason.into()));
        self.records = self.records.min(seq.saturating_sub(1));
    }

    /// Whether a failure at or before `seq` is already known (nothing more can change
    /// the report for records from `seq` on).
    pub fn failed_by(&self, seq: u64) -> bool {
        self.failure.as_ref().is_some_and(|(bad, _)| *bad <= seq)
    }

    /// Whether any failure is known.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks the next record. Returns its entry when it is good, `None` when it is bad
    /// or a failure at or before it is already known.
    pub fn push(&mut self, record: &AuditRecord) -> Option<AuditEntry> {
        let seq = self.next_seq;
        if self.failed_by(seq) {
            return None;
        }
        if record.seq != seq {
            if record.seq > seq {
                self.reject(seq, format!("record {seq} is missing (the next record is {})", record.seq));
            } else {
                self.reject(seq, format!("record {} appears where record {seq} was expected", record.seq));
            }
            return None;
        }
        if record_hash(&record.prev_hash, &record.body) != record.hash {
            self.reject(seq, format!("record {seq} was altered: its hash does not match its contents"));
            return None;
        }
        let entry = match decode(record) {
            Ok((embedded, _)) if embedded != seq => {
                self.reject(seq, format!("record {seq} holds the body of record {embedded}"));
                return None;
            }
            Ok((_, entry)) => entry,
            Err(e) => {
                self.reject(seq, e.to_string());
                return None;
            }
        };
        if record.prev_hash != self.prev_hash {
            let earlier = seq.saturating_sub(1);
            if seq == 1 || self.confirmed == earlier {
                // The previous record is the genesis or matched a signed checkpoint: this
                // record's link (and so the record) was rewritten.
                self.reject(seq, format!("record {seq} was rewritten: it does not chain onto record {earlier}"));
            } else {
                // Either `earlier` was rewritten and rehashed, or `seq` was: name the
                // earlier one.
                self.reject(
                    earlier,
                    format!(
                        "the chain is broken between records {earlier} and {seq}: record {earlier} was rewritten \
                         (or record {seq} was)"
                    ),
                );
            }
            return None;
        }
        while let Some(cp) = self.checkpoints.front().copied() {
            if cp.seq > seq {
                break;
            }
            self.checkpoints.pop_front();
            if cp.seq == seq && cp.head_hash != record.hash {
                self.reject(
                    seq,
                    format!(
                        "record {seq} differs from the signed checkpoint at {seq}: the records since the \
                         previous checkpoint may have been rewritten"
                    ),
                );
                return None;
            }
            if cp.seq == seq {
                self.confirmed = seq;
            }
        }
        self.prev_hash = record.hash;
        self.next_seq = seq.saturating_add(1);
        self.records = self.records.saturating_add(1);
        Some(entry)
    }

    /// The hash of the last good record ([`GENESIS`] before any).
    pub fn head_hash(&self) -> [u8; 32] {
        self.prev_hash
    }

    /// Ends verification: any checkpoint beyond the last record shows a truncated tail.
    pub fn finish(mut self) -> VerifyReport {
        if let Some(cp) = self.checkpoints.iter().find(|c| c.seq >= self.next_seq).copied() {
            let missing = self.next_seq;
            self.reject(
                missing,
                format!(
                    "the log ends at record {} but a signed checkpoint names record {}: records from {missing} \
                     on were removed",
                    missing.saturating_sub(1),
                    cp.seq
                ),
            );
        }
        match self.failure {
            None => VerifyReport { ok: true, records: self.records, first_bad: None, reason: None },
            Some((seq, reason)) => {
                VerifyReport { ok: false, records: self.records, first_bad: Some(seq), reason: Some(reason) }
            }
        }
    }
}

/// Verifies `records` (in sequence order) against `checkpoints` (signatures already
/// checked). See [`ChainVerifier`].
pub fn verify_chain<I>(records: I, checkpoints: &[CheckpointHead]) -> VerifyReport
where
    I: IntoIterator<Item = AuditRecord>,
{
    let mut verifier = ChainVerifier::new();
    for cp in checkpoints {
        verifier.add_checkpoint(*cp);
    }
    for record in records {
        if verifier.failed() {
            break;
        }
        verifier.push(&record);
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> AuditEntry {
        let mut e = AuditEntry::new(UnixTime(1_700_000_000 + i as i64), AuditKind::Decision);
        e.agent = Some(AgentId::from_random([i as u8; 12]));
        e.decision = Some(if i % 2 == 1 { "deny" } else { "allow" }.into());
        e.details = serde_json::json!({"z": 1, "a": [i], "m": {"y": true, "b": null}});
        e
    }

    #[test]
    fn a_record_without_by_encodes_as_before_and_one_with_by_round_trips() {
        // The body of a record written before `by` existed: exactly these bytes.
        let e = entry(2);
        let body = encode_body(7, &e).unwrap();
        assert!(!body.contains("\"by\""), "{body}");
        let record = chain(GENESIS, 7, &e).unwrap();
        assert_eq!(decode(&record).unwrap().1, e);

        let by = crate::access::Principal::Operator {
            issuer: "https://idp.example".into(),
            subject: "u1".into(),
            name: "Olga".into(),
            role: crate::access::Role::Operator,
        };
        let e = entry(3).by(Some(by.clone()));
        let record = chain(GENESIS, 8, &e).unwrap();
        assert!(record.body.ends_with(r#","by":{"kind":"operator","issuer":"https://idp.example","subject":"u1","name":"Olga","role":"operator"}}"#), "{}", record.body);
        let (_, back) = decode(&record).unwrap();
        assert_eq!(back.by, Some(by));
    }

    #[test]
    fn an_entry_with_typed_details_has_their_kind_and_value_and_chains_as_before() {
        let policy = PolicyDetails::Refused { error: "bad".into() };
        let e = AuditEntry::with_details(UnixTime(5), policy.clone()).unwrap();
        let mut by_hand = AuditEntry::new(UnixTime(5), AuditKind::Policy);
        by_hand.details = serde_json::json!({ "op": "refused", "error": "bad" });
        assert_eq!(e, by_hand);
        assert_eq!(chain(GENESIS, 1, &e).unwrap(), chain(GENESIS, 1, &by_hand).unwrap());

        let summary = AnonymousDenies {
            count: 2,
            first_at: UnixTime(1),
            last_at: UnixTime(2),
            codes: [(crate::DecisionCode::InvalidToken, 2)].into_iter().collect(),
        };
        let e = AuditEntry::with_details(UnixTime(2), summary).unwrap();
        assert_eq!((e.kind, e.decision.as_deref()), (AuditKind::Decision, Some("deny")));
        assert_eq!(e.details["aggregated"]["codes"]["invalid_token"], 2);
    }

    #[test]
    fn typed_details_chained_directly_read_back_as_the_entry_with_those_details() {
        let details = DecisionDetails {
            action: "crm.read".into(),
            resource: "crm/accounts/7".into(),
            code: crate::DecisionCode::Allow,
            reasons: vec!["scope covers".into()],
            policies: vec!["permit-within-scope".into()],
            policy_version: Some(3),
            trust: Some(0.875),
            signals: Vec::new(),
            charges: Vec::new(),
            approval_id: None,
            retry_after: Some(2),
            quarantined: None,
            response: None,
            warrant: Some(DecisionWarrant { chain: vec![AgentId::from_random([1; 12])], scope: "crm.*".into() }),
            origin: Some(Box::new(details::DecisionOrigin { subject: None, pep: Some("gw".into()), mcp: None })),
            resource_attrs: Some(std::sync::Arc::new(serde_json::json!({ "z": 1, "a": [true, null, "x"] }))),
            context: Some(std::sync::Arc::new(serde_json::json!({ "ip": "10.0.0.1", "n": -4 }))),
        };
        let mut expected = AuditEntry::with_details(UnixTime(9), details.clone()).unwrap();
        expected.agent = Some(AgentId::from_random([1; 12]));
        expected.decision = Some("allow".into());
        let mut header = expected.clone();
        header.details = serde_json::Value::Null;
        let record = chain_details(GENESIS, 4, &header, &AuditDetails::from(details)).unwrap();
        assert_eq!(decode(&record).unwrap(), (4, expected));
        assert_eq!(record.hash, record_hash(&GENESIS, &record.body));
    }

    fn log(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let r = chain(prev, seq, &entry(seq)).unwrap();
                prev = r.hash;
                r
            })
            .collect()
    }

    fn head(records: &[AuditRecord], seq: u64) -> CheckpointHead {
        CheckpointHead { seq, head_hash: records[seq as usize - 1].hash }
    }

    #[test]
    fn body_is_canonical_with_fixed_field_order() {
        let mut e = AuditEntry::new(UnixTime(5), AuditKind::Revocation);
        // Keys already sorted: `details` keeps insertion order only when serde_json's
        // `preserve_order` is on, which depends on the build; the hash covers the stored
        // text either way.
        e.details = serde_json::json!({"a": 2, "z": 1});
        let body = encode_body(7, &e).unwrap();
        assert_eq!(
            body,
            r#"{"seq":7,"at":5,"kind":"revocation","agent":null,"human":null,"task":null,"warrant":null,"decision":null,"details":{"a":2,"z":1}}"#
        );
    }

    #[test]
    fn chain_then_decode_round_trips() {
        let records = log(3);
        assert_eq!(records[0].prev_hash, GENESIS);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[2].hash, record_hash(&records[1].hash, &records[2].body));
        let (seq, back) = decode(&records[1]).unwrap();
        assert_eq!(seq, 2);
        assert_eq!(back, entry(2));
    }

    #[test]
    fn kinds_are_snake_case_on_the_wire() {
        for kind in AuditKind::ALL {
            let wire = serde_json::to_value(kind).unwrap();
            assert_eq!(wire, serde_json::Value::String(kind.as_str().into()));
            assert_eq!(AuditKind::parse(kind.as_str()), Ok(kind));
        }
        assert!(AuditKind::parse("Decision").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let h = [0xab; 32];
        assert_eq!(parse_hash_hex(&hash_hex(&h)), Ok(h));
        assert!(parse_hash_hex("abcd").is_err());
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = log(10);
        let cps = [head(&records, 4), head(&records, 10)];
        let report = verify_chain(records, &cps);
        assert_eq!(report, VerifyReport { ok: true, records: 10, first_bad: None, reason: None });
        assert_eq!(verify_chain(Vec::new(), &[]).records, 0);
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut records = log(10);
        records[4].body = records[4].body.replace("deny", "allow");
        let report = verify_chain(records, &[]);
        assert!(!report.ok);
        assert_eq!(report.first_bad, Some(5));
        assert_eq!(report.records, 4);
        assert!(report.reason.unwrap().contains("altered"));
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut records = log(10);
        records.remove(6);
        let report = verify_chain(records, &[]);
        assert_eq!((report.ok, report.first_bad), (false, Some(7)));
        assert!(report.reason.unwrap().contains("missing"));
    }

    #[test]
    fn swapped_records_are_named() {
        // Rows keep their seq; their contents are exchanged.
        let mut records = log(10);
        let (a, b) = (records[2].clone(), records[7].clone());
        records[2] = AuditRecord { seq: 3, ..b };
        records[7] = AuditRecord { seq: 8, ..a };
        let report = verify_chain(records, &[]);
        assert_eq!((report.ok, report.first_bad), (false, Some(3)));
        assert!(report.reason.unwrap().contains("body of record 8"));
        // Iterated out of order.
        let mut records = log(5);
        records.swap(1, 2);
        assert_eq!(verify_chain(records, &[]).first_bad, Some(2));
    }

    #[test]
    fn a_body_with_another_seq_is_named() {
        let mut records = log(5);
        // A record whose body embeds the wrong seq but whose hash is consistent.
        let prev = records[2].prev_hash;
        let body = encode_body(9, &entry(3)).unwrap();
        records[2] = AuditRecord { seq: 3, hash: record_hash(&prev, &body), body, prev_hash: prev };
        assert_eq!(verify_chain(records, &[]).first_bad, Some(3));
    }

    #[test]
    fn a_rewritten_and_rehashed_record_is_named_by_the_broken_link() {
        let mut records = log(6);
        let mut forged = entry(3);
        forged.decision = Some("allow".into());
        records[2] = chain(records[2].prev_hash, 3, &forged).unwrap();
        let report = verify_chain(records, &[]);
        assert_eq!(report.first_bad, Some(3));
        assert_eq!(report.records, 2);
    }

    #[test]
    fn a_rewritten_link_after_a_confirmed_record_names_the_rewritten_one() {
        let records = log(6);
        let cps = [head(&records, 2)];
        let mut forged = records.clone();
        // Record 3 rewritten wholesale onto a made-up predecessor hash. Record 2 is
        // confirmed by the checkpoint, so record 3 is named, not record 2.
        forged[2] = chain([5; 32], 3, &entry(3)).unwrap();
        assert_eq!(verify_chain(forged.clone(), &cps).first_bad, Some(3));
        // Record 1 must chain onto the genesis hash.
        forged[0] = chain([5; 32], 1, &entry(1)).unwrap();
        assert_eq!(verify_chain(forged, &[]).first_bad, Some(1));
    }

    #[test]
    fn a_garbage_body_is_named() {
        let mut records = log(3);
        let prev = records[1].prev_hash;
        records[1].body = "not json".into();
        records[1].hash = record_hash(&prev, "not json");
        assert_eq!(verify_chain(records, &[]).first_bad, Some(2));
    }

    #[test]
    fn a_truncated_tail_after_a_checkpoint_is_named() {
        let records = log(10);
        let cps = [head(&records, 5), head(&records, 9)];
        let report = verify_chain(records.into_iter().take(7), &cps);
        assert_eq!((report.ok, report.first_bad, report.records), (false, Some(8), 7));
        assert!(report.reason.unwrap().contains("removed"));
    }

    #[test]
    fn a_fully_rechained_log_is_caught_by_its_checkpoint() {
        let records = log(10);
        let cps = [head(&records, 5), head(&records, 10)];
        // Rewrite record 7 and rehash everything after it.
        let mut forged = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=10 {
            let mut e = entry(seq);
            if seq == 7 {
                e.decision = Some("allow".into());
            }
            let r = chain(prev, seq, &e).unwrap();
            prev = r.hash;
            forged.push(r);
        }
        let report = verify_chain(forged, &cps);
        assert_eq!((report.ok, report.first_bad), (false, Some(10)));
        assert!(report.reason.unwrap().contains("checkpoint"));
    }

    #[test]
    fn a_checkpoint_of_the_last_record_checked_may_arrive_late_and_is_still_compared() {
        // A log being written while it is verified: record 6 is read and checked, then the
        // writer stores the checkpoint of record 6.
        let records = log(6);
        let mut verifier = ChainVerifier::new();
        for r in &records {
            verifier.push(r);
        }
        verifier.add_checkpoint(head(&records, 6));
        let report = verifier.finish();
        assert!(report.ok, "{report:?}");
        // A late checkpoint that disagrees with the record it names still fails.
        let mut verifier = ChainVerifier::new();
        for r in &records {
            verifier.push(r);
        }
        verifier.add_checkpoint(CheckpointHead { seq: 6, head_hash: [7; 32] });
        assert_eq!(verifier.finish().first_bad, Some(6));
        // One for an earlier record is still a misuse.
        let mut verifier = ChainVerifier::new();
        for r in &records {
            verifier.push(r);
        }
        verifier.add_checkpoint(head(&records, 4));
        assert_eq!(verifier.finish().first_bad, Some(4));
    }

    #[test]
    fn a_checkpoint_disagreeing_with_its_record_is_named() {
        let records = log(6);
        let cps = [CheckpointHead { seq: 4, head_hash: [7; 32] }];
        assert_eq!(verify_chain(records, &cps).first_bad, Some(4));
    }

    #[test]
    fn the_lowest_failure_wins() {
        let mut records = log(10);
        records[7].body.push(' ');
        let mut verifier = ChainVerifier::new();
        verifier.reject(9, "bad checkpoint signature");
        for r in &records {
            verifier.push(r);
        }
        assert_eq!(verifier.finish().first_bad, Some(8));

        let mut verifier = ChainVerifier::new();
        verifier.reject(3, "bad checkpoint signature");
        for r in &records {
            verifier.push(r);
        }
        let report = verifier.finish();
        assert_eq!((report.first_bad, report.records), (Some(3), 2));
    }
}
