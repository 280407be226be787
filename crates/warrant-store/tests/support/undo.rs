//! Takes a SQLite database back to the schema an older build left, for the tests that
//! check what a migration does to the data already there. Shared by the store's and the
//! engine's tests (`#[path]`), so each migration's undo is written once.

/// What undoes each migration: entry `n - 1` undoes migration `n` (`None`: the tests never
/// go back before it). A new migration adds its undo here;
/// `every_migration_is_undone_and_redone_to_the_same_schema` fails until it does.
pub const UNDO: &[Option<&str>] = &[
    None,
    None,
    // 3: the agents of a warrant's chain, by agent.
    Some("DROP TABLE warrant_agents;"),
    // 4: budgets, guard state, approvals.
    Some(
        "DROP INDEX warrants_budget; ALTER TABLE warrants DROP COLUMN budget; DROP TABLE budget_spend; \
         DROP TABLE agent_guard; DROP TABLE approvals;",
    ),
    // 5: agent keys and the governance tables.
    Some("DROP TABLE agent_keys; DROP TABLE findings; DROP TABLE agent_usage; DROP TABLE attestations;"),
    // 6: human sessions, revocations by target.
    Some("DROP TABLE sessions; DROP INDEX revocations_target;"),
    // 7: sealed signing keys with a purpose.
    Some("ALTER TABLE signing_keys DROP COLUMN purpose; ALTER TABLE signing_keys DROP COLUMN sealed;"),
    // 8: PEP credentials, a warrant's claims.
    Some("DROP TABLE peps; ALTER TABLE warrants DROP COLUMN claims;"),
    // 9: humans' roles.
    Some("ALTER TABLE humans DROP COLUMN roles;"),
    // 10: humans' external ids.
    Some("DROP INDEX humans_external_id; ALTER TABLE humans DROP COLUMN external_id;"),
    // 11: humans' identity at a provider.
    Some(
        "DROP INDEX humans_identity; ALTER TABLE humans DROP COLUMN idp_subject; \
         ALTER TABLE humans DROP COLUMN idp_issuer;",
    ),
    // 12: the Shared Signals transmitter.
    Some("DROP TABLE ssf_events; DROP TABLE ssf_streams;"),
    // 13: agents' SPIFFE IDs.
    Some("DROP INDEX agents_spiffe; ALTER TABLE agents DROP COLUMN spiffe_id;"),
    // 14: console sessions and sign-ins.
    Some("DROP TABLE console_logins; DROP TABLE console_sessions;"),
    // 15: the audit log's unindexed tail (an older build keeps every record in `audit_records`).
    Some(
        "INSERT INTO audit_records (seq, at, kind, agent, human, task, warrant, decision, body, prev_hash, hash) \
         SELECT seq, at, kind, agent, human, task, warrant, decision, body, prev_hash, hash FROM audit_tail; \
         DROP TABLE audit_tail;",
    ),
    // 16: the indexes for reads of history.
    Some(
        "DROP INDEX warrants_expires; DROP INDEX findings_recent; DROP INDEX approvals_approver; \
         DROP INDEX approvals_recent;",
    ),
    // 17: the audit log by decision (and back the index by time it dropped).
    Some("DROP INDEX audit_decision; CREATE INDEX audit_at ON audit_records(at);"),
];

/// Undoes the migrations of the database on `db` newest first, down to the schema with
/// `version` migrations applied, and sets its `user_version` to `version`.
pub fn undo_migrations_to(db: &rusqlite::Connection, version: usize) {
    let applied: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let applied = usize::try_from(applied).unwrap();
    assert!(version <= applied, "the database is at version {applied}, below {version}");
    for n in (version + 1..=applied).rev() {
        let undo = UNDO.get(n - 1).copied().flatten().unwrap_or_else(|| panic!("no undo for migration {n}"));
        db.execute_batch(undo).unwrap_or_else(|e| panic!("undoing migration {n}: {e}"));
    }
    db.pragma_update(None, "user_version", i64::try_from(version).unwrap()).unwrap();
}
