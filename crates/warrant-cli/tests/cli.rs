//! End-to-end tests of the `warrant` binary: the demo, and the README walkthrough against
//! a real `warrant serve` process.
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test code")]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warrant");

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).output().unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "warrant {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn json(args: &[&str], cwd: &Path) -> Value {
    serde_json::from_str(&ok(args, cwd)).unwrap()
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// `warrant serve` on `data` with `extra` arguments.
    fn start_with(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(extra)
            // The tests' servers take the default unless told otherwise.
            .env_remove("WARRANT_WRITER_NICE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.split("listening on ").nth(1).expect("a `listening on` line").trim().to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        self.terminate_ref()
    }

    fn terminate_ref(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Server {
    /// `kill -9`, and waits for the process to be gone.
    fn kill_9(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn demo_completes_and_shows_the_refused_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&["demo"], dir.path());
    assert!(out.contains("refused: invalid_scope"), "{out}");
    assert!(out.contains("valid EdDSA signature"), "{out}");
    assert!(out.contains("\"act\""), "{out}");
    assert!(out.contains("-> ALLOW"), "{out}");
    assert!(out.contains("DENY") && out.contains("forbidden by policy cost-ceiling"), "{out}");
    let after_completion = out.split("tries again").nth(1).unwrap_or_default();
    assert!(after_completion.contains("-> DENY"), "the sub-agent must be denied once the task is complete: {out}");
    assert!(out.contains("intact: true"), "{out}");
}

#[test]
fn readme_walkthrough_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let conn = ["--server", server.url.as_str(), "--data", data.to_str().unwrap()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(conn.iter()).map(|s| (*s).to_owned()).collect() };
    let call = |args: &[&str]| {
        let v = with(args);
        json(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };
    let text = |args: &[&str]| {
        let v = with(args);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };

    let alice = call(&[
        "human",
        "add",
        "--name",
        "Alice",
        "--email",
        "alice@example.com",
        "-e",
        "crm.read:customers/**",
        "-e",
        "tickets.*",
        "--json",
    ]);
    let alice = alice["id"].as_str().unwrap().to_owned();

    ok(&["keygen", "assistant"], cwd);
    ok(&["keygen", "researcher"], cwd);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(cwd.join("assistant.key.jwk")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!run(&["keygen", "assistant"], cwd).status.success(), "keygen must not overwrite a key");

    let assistant = call(&[
        "agent",
        "add",
        "--name",
        "support-assistant",
        "--owner",
        &alice,
        "--mode",
        "delegated",
        "-s",
        "crm.*",
        "-s",
        "tickets.*",
        "--public-key",
        "assistant.pub.jwk",
        "--json",
    ]);
    let assistant = assistant["id"].as_str().unwrap().to_owned();
    let researcher = call(&[
        "agent",
        "add",
        "--name",
        "crm-researcher",
        "--owner",
        &alice,
        "--mode",
        "delegated",
        "-s",
        "crm.read:customers/**",
        "--public-key",
        "researcher.pub.jwk",
        "--label",
        "team=support",
        "--json",
    ]);
    let researcher = researcher["id"].as_str().unwrap().to_owned();
    let table = text(&["agent", "list"]);
    assert!(table.contains("support-assistant") && table.contains("crm-researcher"), "{table}");

    let session = text(&["human", "session", &alice]).trim().to_owned();
    let w1 = text(&[
        "token",
        "exchange",
        "--agent",
        &assistant,
        "--key",
        "assistant.key.jwk",
        "--subject-token",
        &session,
        "--purpose",
        "answer ticket 4711",
        "--token-only",
    ])
    .trim()
    .to_owned();
    let child = call(&[
        "token",
        "exchange",
        "--agent",
        &researcher,
        "--key",
        "researcher.key.jwk",
        "--subject-token",
        &w1,
        "--scope",
        "crm.read:customers/42",
        "--ttl",
        "120",
        "--json",
    ]);
    let claims = &child["claims"];
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(claims["act"]["sub"], researcher.as_str());
    assert_eq!(claims["act"]["act"]["sub"], assistant.as_str());
    assert_eq!(claims["scope"], "crm.read:customers/42");

    let refused = run(
        &with(&[
            "token",
            "exchange",
            "--agent",
            &researcher,
            "--key",
            "researcher.key.jwk",
            "--subject-token",
            &w1,
            "--scope",
            "billing.refund",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        cwd,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_scope"));

    let inspected = text(&["token", "inspect", &w1]);
    assert!(inspected.starts_with("VALID"), "{inspected}");

    // The running server holds the data directory: an offline rotation is refused, naming
    // the directory, the server's pid and the way through the API; a second server too.
    let refused = run(&with(&["key", "rotate"]).iter().map(String::as_str).collect::<Vec<_>>(), cwd);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&format!("`{}` is in use", data.display())), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", server.child.id())) && stderr.contains("--online"), "{stderr}");
    let second = run(&["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"], cwd);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {}", server.child.id())) && stderr.contains("in use"), "{stderr}");
    // Reading the store directly is fine while it runs.
    assert!(ok(&["audit", "verify", "--data", data.to_str().unwrap()], cwd).starts_with("OK:"));

    // Rotation through the server is in force at once; the old key keeps verifying.
    let rotated = call(&["key", "rotate", "--online", "--json"]);
    assert_eq!(rotated["published"].as_array().unwrap().len(), 2, "{rotated}");
    let jwks: Value = reqwest::blocking_get(&format!("{}/.well-known/jwks.json", server.url));
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    assert!(text(&["token", "inspect", &w1]).starts_with("VALID"));
    let minted_after = text(&[
        "token",
        "exchange",
        "--agent",
        &researcher,
        "--key",
        "researcher.key.jwk",
        "--subject-token",
        &w1,
        "--token-only",
    ]);
    assert!(text(&["token", "inspect", minted_after.trim()]).starts_with("VALID"));

    let status = server.terminate();
    assert!(status.success(), "graceful shutdown should exit 0, got {status}");
}

#[test]
fn humans_get_roles_and_the_todo_example_sets_itself_up() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let conn = ["--server", server.url.as_str(), "--data", data.to_str().unwrap()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(conn.iter()).map(|s| (*s).to_owned()).collect() };
    let call = |args: &[&str]| json(&with(args).iter().map(String::as_str).collect::<Vec<_>>(), cwd);

    let ada = call(&[
        "human",
        "add",
        "--name",
        "Ada",
        "--email",
        "ada@example.com",
        "--role",
        "viewer",
        "--role",
        "admin",
        "--json",
    ]);
    assert_eq!(ada["roles"], serde_json::json!(["admin", "viewer"]));
    let id = ada["id"].as_str().unwrap().to_owned();
    let changed = call(&["human", "roles", &id, "--role", "editor", "--json"]);
    assert_eq!(changed["roles"], serde_json::json!(["editor"]));
    let table = ok(&with(&["human", "list"]).iter().map(String::as_str).collect::<Vec<_>>(), cwd);
    assert!(table.contains("ROLES") && table.contains("editor"), "{table}");
    let cleared = call(&["human", "roles", &id, "--json"]);
    assert_eq!(cleared["roles"], serde_json::json!([]));
    let bad = run(
        &with(&["human", "roles", &id, "--role", "not a role"]).iter().map(String::as_str).collect::<Vec<_>>(),
        cwd,
    );
    assert!(!bad.status.success());

    // The example's setup script, with this binary as `warrant`.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/authzen-todo/setup.sh");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(script)
        .arg(&data)
        .env("PATH", path)
        .env("WARRANT_SERVER", &server.url)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "setup.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let humans = call(&["human", "list", "--json"]);
    let roles_of = |email: &str| {
        humans["humans"].as_array().unwrap().iter().find(|h| h["email"] == email).unwrap()["roles"].clone()
    };
    assert_eq!(roles_of("rick@the-citadel.com"), serde_json::json!(["admin", "evil_genius"]));
    assert_eq!(roles_of("morty@the-citadel.com"), serde_json::json!(["editor"]));
    assert_eq!(roles_of("summer@the-smiths.com"), serde_json::json!(["editor"]));
    assert_eq!(roles_of("beth@the-smiths.com"), serde_json::json!(["viewer"]));
    assert_eq!(roles_of("jerry@the-smiths.com"), serde_json::json!(["viewer"]));
    let rick = humans["humans"].as_array().unwrap().iter().find(|h| h["email"] == "rick@the-citadel.com").unwrap();
    assert_eq!(rick["external_id"], "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs");
    let policies = ok(&with(&["policy", "show"]).iter().map(String::as_str).collect::<Vec<_>>(), cwd);
    assert!(policies.contains("todo-update-own"), "the example's policies are in force: {policies}");
    server.terminate();
}

#[test]
fn key_rotate_refuses_a_directory_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["key", "rotate", "--data", dir.path().join("nothing").to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Warrant database"));
}

mod reqwest {
    /// A blocking GET returning JSON, on a small runtime of its own.
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }

    /// A blocking GET returning text.
    pub fn blocking_text(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}

/// A data directory under `cwd` whose server registered three humans (`h0..h2@example.com`,
/// so the audit log has records) and then stopped cleanly.
fn three_humans_then_stopped(cwd: &Path) -> std::path::PathBuf {
    let data = cwd.join("data");
    let server = Server::start(&data);
    let conn = ["--server", server.url.as_str(), "--data", data.to_str().unwrap()];
    for i in 0..3 {
        let email = format!("h{i}@example.com");
        let mut args = vec!["human", "add", "--name", "H", "--email", email.as_str()];
        args.extend(conn);
        ok(&args, cwd);
    }
    assert!(server.terminate().success());
    data
}

#[test]
fn audit_verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = three_humans_then_stopped(cwd);
    let data_arg = data.to_str().unwrap();
    let clean = ok(&["audit", "verify", "--data", data_arg], cwd);
    assert!(clean.starts_with("OK:"), "{clean}");

    // An edited record: the verifier names it, and exits 1.
    let db = rusqlite::Connection::open(data.join("warrant.db")).unwrap();
    warrant_store::sqlite::settle_audit_tail(&db).unwrap();
    let edited: usize = db
        .execute("UPDATE audit_records SET body = replace(body, 'h1@example.com', 'x1@example.com') WHERE body LIKE '%h1@example.com%'", [])
        .unwrap();
    assert_eq!(edited, 1);
    let seq: i64 =
        db.query_row("SELECT seq FROM audit_records WHERE body LIKE '%x1@example.com%'", [], |r| r.get(0)).unwrap();
    drop(db);
    let out = run(&["audit", "verify", "--data", data_arg], cwd);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("first bad record is #{seq}")), "{stderr}");

    // The export still reads every record, for the investigation.
    let export = ok(&["audit", "export", "--data", data_arg], cwd);
    assert!(export.lines().count() >= 3);
    assert!(export.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
}

/// Runs `warrant` with extra environment variables.
fn run_env(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    Command::new(BIN).args(args).envs(env.iter().copied()).current_dir(cwd).output().unwrap()
}

#[test]
fn audit_verify_reads_the_witness_and_names_a_truncated_tail_and_a_wiped_log() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = three_humans_then_stopped(cwd);
    let data_arg = data.to_str().unwrap();
    let clean = ok(&["audit", "verify", "--data", data_arg], cwd);
    assert!(clean.starts_with("OK:") && clean.contains("witnessed"), "{clean}");
    let report: Value = serde_json::from_str(&ok(&["audit", "verify", "--data", data_arg, "--json"], cwd)).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["witness"]["ok"], true, "{report}");
    let head: i64 = {
        let db = rusqlite::Connection::open(data.join("warrant.db")).unwrap();
        warrant_store::sqlite::settle_audit_tail(&db).unwrap();
        db.query_row("SELECT MAX(seq) FROM audit_records", [], |r| r.get(0)).unwrap()
    };
    assert!(head >= 3);

    // The tail and its checkpoints removed: the database alone is consistent, the
    // witness is not.
    let copy = cwd.join("copy");
    std::fs::create_dir(&copy).unwrap();
    for name in ["warrant.db", "admin.token"] {
        std::fs::copy(data.join(name), copy.join(name)).unwrap();
    }
    let db = rusqlite::Connection::open(data.join("warrant.db")).unwrap();
    db.execute_batch(&format!("DELETE FROM audit_records WHERE seq > {}; DELETE FROM audit_checkpoints;", head - 2))
        .unwrap();
    drop(db);
    let out = run(&["audit", "verify", "--data", data_arg], cwd);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TAMPERED") && stderr.contains("witness"), "{stderr}");
    assert!(stderr.contains(&format!("from {} on were removed", head - 1)), "{stderr}");

    // The whole log wiped.
    let db = rusqlite::Connection::open(data.join("warrant.db")).unwrap();
    db.execute_batch("DELETE FROM audit_records; DELETE FROM audit_checkpoints;").unwrap();
    drop(db);
    let out = run(&["audit", "verify", "--data", data_arg], cwd);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wiped"), "{}", String::from_utf8_lossy(&out.stderr));

    // A copy of the database alone (no KEK file, no witness beside it) cannot be verified
    // as whole, nor have its keys rotated.
    let copy_arg = copy.to_str().unwrap();
    let out = run(&["audit", "verify", "--data", copy_arg], cwd);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key-encryption key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["key", "rotate", "--data", copy_arg], cwd);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key-encryption key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!copy.join("keys").exists(), "no KEK is made for a database whose keys are sealed");
    // Given the KEK (here through the environment) and no witness, it says so.
    let kek = std::fs::read_to_string(data.join("keys").join("kek")).unwrap();
    let out = run_env(&["audit", "verify", "--data", copy_arg], &[("WARRANT_KEK", kek.trim())], cwd);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the witness holds no checkpoint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let witness = data.join("witness").join("audit-witness.jsonl");
    let out = run_env(
        &["audit", "verify", "--data", copy_arg, "--witness", witness.to_str().unwrap()],
        &[("WARRANT_KEK", kek.trim())],
        cwd,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_env(&["key", "rotate", "--data", copy_arg], &[("WARRANT_KEK", kek.trim())], cwd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_refuses_a_wrong_kek() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    assert!(Server::start(&data).terminate().success());
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("WARRANT_KEK", wrong)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with a wrong KEK");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("does not open") && !stderr.contains("panicked"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[path = "../../warrant-store/tests/support/threads.rs"]
mod threads;
#[cfg(target_os = "linux")]
use threads::may_take_nice;

/// The nice values of a process's threads named `name` (cut to 15 bytes, as the kernel
/// keeps it).
#[cfg(target_os = "linux")]
fn thread_nices(pid: u32, name: &str) -> Vec<i32> {
    threads::threads(&pid.to_string()).into_iter().filter(|t| t.name == name).map(|t| t.nice).collect()
}

/// `--writer-nice` sets the nice value of the SQLite commit thread and of no other; by
/// default it asks for -10 (given where the system allows it, as it does for root); 0 asks
/// for nothing; a thread already higher is never lowered; a value that would lower it is
/// refused with the range.
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_the_commit_thread_at_the_nice_value_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The server's threads start at this thread's value.
    let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
    for (args, asked) in [(&["--writer-nice", "-3"][..], -3), (&[][..], -10), (&["--writer-nice", "0"][..], 0)] {
        let server = Server::start_with(&data, args);
        let writers = thread_nices(server.child.id(), "warrant-sqlite-");
        let workers = thread_nices(server.child.id(), "tokio-rt-worker");
        let metrics = reqwest::blocking_text(&format!("{}/metrics", server.url));
        assert!(server.terminate().success());
        // 0 asks for nothing; a value is taken only when higher than the thread's and allowed.
        let expected = if asked != 0 && asked < own && may_take_nice(asked) { asked } else { own };
        assert_eq!(writers, vec![expected], "{args:?}: the commit thread (this thread at {own})");
        let gauge = metrics.lines().find_map(|l| l.strip_prefix("warrant_storage_writer_nice "));
        assert_eq!(gauge.map(str::parse::<i32>), Some(Ok(expected)), "{args:?}: /metrics says so too");
        assert!(
            !workers.is_empty() && workers.iter().all(|n| *n == own),
            "{args:?}: the workers keep {own}: {workers:?}"
        );
    }
    let (status, stderr) = serve_refuses(&data, &["--writer-nice", "5"]);
    assert!(!status.success() && stderr.contains("`writer_nice`") && stderr.contains("from -20"), "{stderr}");
}

/// The crash test: `kill -9` the real `warrant serve` while several clients load it with
/// decisions, restart it on the same data directory, and check that every decision a
/// client received an answer for is in the audit log (an answer is given only once its
/// record is durable) and that the chain verifies.
#[test]
fn kill_9_during_a_decision_load_loses_no_answered_decision() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    const WORKERS: usize = 8;
    const BEFORE_KILL: usize = 1000;

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let http = ::reqwest::Client::builder().no_proxy().build().unwrap();

    // A human, an autonomous agent of theirs, and a warrant, over HTTP.
    let token: String = rt.block_on(async {
        let admin_post =
            |path: &str, body: Value| http.post(format!("{}{path}", server.url)).bearer_auth(&admin).json(&body).send();
        let human: Value = admin_post(
            "/v1/humans",
            json!({"name": "Crash", "email": "crash@example.com", "entitlements": ["crm.read:customers/**"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        let key = warrant_token::KeyPair::from_seed(&seed);
        let agent: Value = admin_post(
            "/v1/agents",
            json!({"name": "loader", "owner": human["id"], "mode": "autonomous",
                   "max_scope": ["crm.read:customers/**"], "public_key": key.public_jwk()}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let agent_id = warrant_core::AgentId::parse(agent["id"].as_str().unwrap()).unwrap();
        let metadata: Value = http
            .get(format!("{}/.well-known/oauth-authorization-server", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let issuer = metadata["issuer"].as_str().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let assertion = warrant_token::assertion::make_assertion(
            &key,
            &agent_id,
            &format!("{issuer}/oauth2/token"),
            warrant_core::UnixTime(i64::try_from(now).unwrap()),
            "crash-test",
        )
        .unwrap();
        let issued: Value = http
            .post(format!("{}/oauth2/token", server.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
                ("task_purpose", "crash test load"),
                ("ttl", "900"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued["access_token"].as_str().unwrap_or_else(|| panic!("no warrant: {issued}")).to_owned()
    });

    // The load: every answer a client fully received is remembered with what it asked.
    let received: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
            let (received, answered) = (Arc::clone(&received), Arc::clone(&answered));
            rt.spawn(async move {
                for i in 0u64.. {
                    let resource = format!("customers/{w}-{i}");
                    let body =
                        json!({"token": token, "action": "crm.read", "resource": resource, "context": {"rows": i}});
                    let Ok(response) = http.post(format!("{url}/v1/authorize")).json(&body).send().await else {
                        break;
                    };
                    let Ok(decision) = response.json::<Value>().await else { break };
                    assert_eq!(decision["decision"], "allow", "{decision}");
                    let id = decision["decision_id"].as_str().unwrap();
                    let seq: u64 = id.strip_prefix("dec_").unwrap().parse().unwrap();
                    received.lock().unwrap().push((seq, resource));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Mid-load: kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    // (A client that stopped early is joined below, which shows why.)
    while answered.load(Ordering::SeqCst) < BEFORE_KILL && !workers.iter().any(|w| w.is_finished()) {
        assert!(Instant::now() < deadline, "the server never answered {BEFORE_KILL} decisions");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "killed, not exited: {status}");
    for worker in workers {
        rt.block_on(worker).unwrap();
    }
    drop(server);
    let received = std::mem::take(&mut *received.lock().unwrap());
    assert!(received.len() >= BEFORE_KILL);
    let mut seqs: Vec<u64> = received.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), received.len(), "every decision has its own id");

    // Restart on the same data directory: every answered decision is in the log.
    let server = Server::start(&data);
    let recorded: BTreeMap<u64, Value> = rt.block_on(async {
        let mut recorded = BTreeMap::new();
        let mut after = 0u64;
        loop {
            let page: Value = http
                .get(format!("{}/v1/audit?kind=decision&order=oldest&limit=1000&after={after}", server.url))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for r in page["records"].as_array().unwrap() {
                recorded.insert(r["seq"].as_u64().unwrap(), r.clone());
            }
            match page["next"].as_u64() {
                Some(next) => after = next,
                None => break recorded,
            }
        }
    });
    for (seq, resource) in &received {
        let record =
            recorded.get(seq).unwrap_or_else(|| panic!("decision dec_{seq} was answered but is not in the log"));
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(record["details"]["resource"], resource.as_str(), "{record}");
    }
    eprintln!(
        "crash test: {} decisions answered before kill -9, {} recorded (the rest were in flight)",
        received.len(),
        recorded.len()
    );
    // One of them by id, as a client would look it up.
    let (seq, _) = &received[received.len() / 2];
    let one: Value = rt.block_on(async {
        let r = http.get(format!("{}/v1/audit/dec_{seq}", server.url)).bearer_auth(&admin).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(one["seq"], *seq);

    let report: Value = rt.block_on(async {
        let r = http.get(format!("{}/v1/audit/verify", server.url)).bearer_auth(&admin).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["records"].as_u64().unwrap() >= received.len() as u64, "{report}");

    // And offline, on the data directory.
    assert!(server.terminate().success());
    let verified = ok(&["audit", "verify", "--data", data.to_str().unwrap()], cwd);
    assert!(verified.starts_with("OK:"), "{verified}");
}

#[test]
fn bench_runs_every_scenario_against_its_own_server() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let out = ok(
        &[
            "bench",
            "--duration",
            "1",
            "--concurrency",
            "2",
            "--scenario",
            "all",
            "--json",
            "out.json",
            "--chart",
            "out.svg",
        ],
        cwd,
    );
    assert!(out.contains("in-process server"), "{out}");
    assert!(out.contains("vs axum"), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(cwd.join("out.json")).unwrap()).unwrap();
    assert_eq!(report["target"]["kind"], "in-process", "{report}");
    // The in-process server's commit thread priority, read from its /metrics (Linux).
    let nice = report["target"]["writer_nice"].as_i64();
    assert_eq!(nice.is_some(), cfg!(target_os = "linux"), "{}", report["target"]);
    assert!(nice.is_none_or(|n| (-20..=19).contains(&n)), "{}", report["target"]);
    let positive = |point: &Value| {
        assert_eq!(point["concurrency"], 2, "{point}");
        assert!(point["throughput_per_s"].as_f64().unwrap() > 0.0, "{point}");
        assert!(point["requests"].as_u64().unwrap() > 0, "{point}");
        assert_eq!(point["errors"], 0, "{point}");
    };
    report["baseline"].as_array().unwrap().iter().for_each(positive);
    // Measured again after the scenarios, and authorize's ratio against both.
    report["baseline_after"].as_array().unwrap().iter().for_each(positive);
    assert!(report["ratios"][0]["ratio_after"].as_f64().unwrap() > 0.0, "{report}");
    assert!(out.contains("baseline after:"), "{out}");
    for scenario in ["authorize", "batch", "mint", "exchange", "revocation"] {
        let points = report["scenarios"][scenario].as_array().unwrap_or_else(|| panic!("no {scenario}: {report}"));
        assert_eq!(points.len(), 1, "{scenario}: {report}");
        points.iter().for_each(positive);
    }
    assert!(report["scenarios"]["batch"][0]["decisions_per_s"].as_f64().unwrap() > 0.0);
    // The authorize point's audit appends are counted too (the other scenarios' are not).
    let appends = &report["scenarios"]["authorize"][0]["commits"];
    assert!(appends["appends"].as_u64().unwrap() > 0 && appends["append_mean_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        appends["decisions"].as_u64().unwrap() > 0 && appends["decision_mean_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["scenarios"]["mint"][0]["commits"].is_null(), "{report}");
    let revocation = &report["scenarios"]["revocation"][0]["revocation"];
    assert!(revocation["cycles"].as_u64().unwrap() > 0, "{revocation}");
    assert_eq!(revocation["allows_after_revocation"], 0, "{revocation}");
    assert_eq!(revocation["next_decision_codes"]["revoked"], revocation["cycles"], "{revocation}");
    assert!(report["ratios"][0]["ratio"].as_f64().unwrap() > 0.0, "{report}");
    // Open-loop points at 50%, 70% and 90% of the authorize peak, in that order.
    let open = report["open_loop"].as_array().unwrap();
    let fractions: Vec<f64> = open.iter().map(|o| o["fraction_of_peak"].as_f64().unwrap()).collect();
    assert_eq!(fractions, [0.5, 0.7, 0.9], "{report}");
    assert!(open.iter().all(|o| o["requests"].as_u64().unwrap() > 0), "{report}");
    // Each point's audit appends, read from the server's metrics around its window: every
    // append made at least one decision's record durable.
    for o in open {
        let commits = &o["commits"];
        let (appends, records) = (commits["appends"].as_u64().unwrap(), commits["records"].as_u64().unwrap());
        assert!(appends > 0 && appends <= records, "{commits}");
        assert!(commits["records_over_target"].as_u64().unwrap() <= records, "{commits}");
        assert!(commits["records_waited_over_target"].as_u64().unwrap() <= records, "{commits}");
        assert!(commits["wait_mean_ms"].as_f64().unwrap() > 0.0, "{commits}");
        let decisions = commits["decisions"].as_u64().unwrap();
        assert!(decisions > 0 && commits["decisions_over_target"].as_u64().unwrap() <= decisions, "{commits}");
        // The decisions' p99 in the server: one of the histogram's bounds, or over them all.
        let p99 = commits["decision_p99_at_most_ms"].as_f64();
        assert!(p99.is_none_or(|ms| ms > 0.0 && ms <= 1000.0), "{commits}");
        assert_eq!(commits["target_ms"], 2.0, "{commits}");
    }
    assert!(out.contains("kept their callers waiting over 2 ms from queued to durable"), "{out}");
    assert!(out.contains("in the server (parsed request to decision)"), "{out}");
    // The endpoint on the same schedule before each point: the tail's floor at that rate.
    let floor_tail = report["baseline_open_loop"].as_array().unwrap();
    let rates = |points: &[Value]| points.iter().map(|o| o["rate_per_s"].as_f64().unwrap()).collect::<Vec<_>>();
    assert_eq!(rates(floor_tail), rates(open), "{report}");
    assert!(floor_tail.iter().all(|o| o["requests"].as_u64().unwrap() > 0 && o["errors"] == 0), "{report}");
    assert!(out.contains("; the endpoint at the same rate: p99 "), "{out}");
    // And at the same fractions of its own peak, which is faster than authorize's.
    let own = report["baseline_open_loop_own"].as_array().unwrap();
    let fractions_own: Vec<f64> = own.iter().map(|o| o["fraction_of_peak"].as_f64().unwrap()).collect();
    assert_eq!(fractions_own, [0.5, 0.7, 0.9], "{report}");
    assert!(own.iter().all(|o| o["requests"].as_u64().unwrap() > 0 && o["errors"] == 0), "{report}");
    assert!(out.contains("at the same share of its own peak"), "{out}");
    for o in open.iter().chain(floor_tail).chain(own) {
        let late = o["send_lag"]["p99_ms"].as_f64().unwrap() > 2.0;
        assert_eq!(o["client_late"].as_bool(), Some(late), "{o}");
    }
    // The floor of a durable answer, measured on the server's own disk in the same run.
    let floor = &report["floor"]["fdatasync"];
    assert_eq!(floor["count"], 200, "{report}");
    assert!(floor["p50_ms"].as_f64().unwrap() > 0.0, "{floor}");
    assert!(out.contains("fdatasync"), "{out}");
    // And again with an idle gap before each sync, as one connection's syncs come (the
    // line docs/bench/halt-poll.sh picks out by "idle before each").
    assert_eq!(report["floor"]["fdatasync_after_idle"]["count"], 200, "{report}");
    assert_eq!(report["floor"]["idle_gap_ms"], 0.5, "{report}");
    assert!(out.contains("idle before each"), "{out}");
    // Every MCP path carried calls without a failure: direct, both gateways (nginx only
    // where it is installed); a gateway's overhead is measured against the direct call.
    let paths = report["gateway"]["paths"].as_array().unwrap_or_else(|| panic!("no gateway paths: {report}"));
    for via in ["direct", "gateway", "in-serve"] {
        let path = paths.iter().find(|p| p["via"] == via).unwrap_or_else(|| panic!("no {via} path: {report}"));
        assert_eq!(path["point"]["errors"], 0, "{path}");
        assert!(path["point"]["requests"].as_u64().unwrap() > 0, "{path}");
        assert_eq!(path["overhead_p99_ms"].is_f64(), via != "direct", "{path}");
        assert_eq!(path["target_met"].is_boolean(), via != "direct", "{path}");
    }
    let svg = std::fs::read_to_string(cwd.join("out.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("authorize p99"), "not the chart: {}", &svg[..svg.len().min(200)]);
}

#[test]
fn governance_review_inventory_attest_and_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let conn = ["--server", server.url.as_str(), "--data", data.to_str().unwrap()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(conn.iter()).map(|s| (*s).to_owned()).collect() };
    let exec = |args: &[&str]| {
        let v = with(args);
        run(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };
    let call = |args: &[&str]| {
        let v = with(args);
        json(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };
    let text = |args: &[&str]| {
        let v = with(args);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };

    let none = text(&["review"]);
    assert!(none.contains("no active findings"), "{none}");

    let owner = call(&["human", "add", "--name", "Olga", "--email", "olga@example.com", "-e", "payments.*", "--json"]);
    let owner = owner["id"].as_str().unwrap().to_owned();
    ok(&["keygen", "payer"], cwd);
    let agent = call(&[
        "agent",
        "add",
        "--name",
        "payer",
        "--owner",
        &owner,
        "--mode",
        "autonomous",
        "-s",
        "payments.*",
        "--public-key",
        "payer.pub.jwk",
        "--json",
    ]);
    let agent = agent["id"].as_str().unwrap().to_owned();

    // An open-ended grant on a sensitive namespace is a finding once swept.
    let sweep = call(&["review", "sweep", "--json"]);
    assert!(sweep["agents"].as_u64().unwrap() >= 1, "{sweep}");
    let swept = text(&["review", "sweep"]);
    assert!(swept.starts_with("swept 1 agents"), "{swept}");
    let findings = call(&["review", "--kind", "broad_grant", "--json"]);
    let broad = findings["findings"].as_array().unwrap().iter().find(|f| f["subject"] == agent.as_str()).unwrap();
    assert_eq!(broad["severity"], "high", "{broad}");
    let id = broad["id"].as_str().unwrap().to_owned();
    let report = text(&["review"]);
    assert!(report.contains("KIND") && report.contains("TOTAL"), "{report}");
    assert!(report.contains(&format!("[HIGH] broad_grant  {agent}  (open)")), "{report}");
    assert!(report.contains(&id) && report.contains("Z, last seen 20") && report.contains("payments.*"), "{report}");

    // Accepting needs a lapse; a bad duration is refused before anything is sent.
    assert!(!exec(&["review", "accept", &id, "--justification", "x"]).status.success());
    let bad = exec(&["review", "accept", &id, "--justification", "x", "--for", "3 fortnights"]);
    assert!(!bad.status.success());
    let accepted =
        call(&["review", "accept", &id, "--justification", "payments bot, reviewed", "--for", "1d", "--json"]);
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["acceptance"]["justification"], "payments bot, reviewed");
    let listed = call(&["review", "--status", "accepted", "--json"]);
    assert!(listed["findings"].as_array().unwrap().iter().any(|f| f["id"] == id.as_str()), "{listed}");
    // Only over-privileged findings carry a recommendation to apply; the server's message is shown.
    let refused = exec(&["review", "apply", &id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("over-privileged"));

    let csv = text(&["inventory", "--format", "csv"]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("id,name,owner"), "{csv}");
    let row = lines.find(|l| l.starts_with(agent.as_str())).unwrap();
    assert!(row.contains("olga@example.com") && row.contains("broad_grant"), "{csv}");
    let out = exec(&["inventory", "--json", "--out", "inventory.json"]);
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inventory.json"));
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(cwd.join("inventory.json")).unwrap()).unwrap();
    assert!(exported["agents"].as_array().unwrap().iter().any(|a| a["id"] == agent.as_str()), "{exported}");

    // Attestation: refused without a terminal or --yes; as the owner with --yes it is recorded.
    let unconfirmed = exec(&["agent", "attest", &agent]);
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let session = text(&["human", "approver-session", &owner]).trim().to_owned();
    let attested = text(&["agent", "attest", &agent, "--approver", &session, "--note", "still needed", "--yes"]);
    assert!(attested.contains("holds (max scope):\n    payments.*"), "{attested}");
    assert!(attested.contains("broad_grant") && attested.contains("attested agent"), "{attested}");
    assert!(attested.contains(&format!("(by {owner}")), "{attested}");
    let inventory = call(&["inventory", "--json"]);
    let row = inventory["agents"].as_array().unwrap().iter().find(|a| a["id"] == agent.as_str()).unwrap().clone();
    assert!(row["last_attested"].as_i64().is_some(), "{row}");

    // Key rotation: the new key mints, the old one no longer does.
    text(&["agent", "rotate-key", &agent, "--generate", "payer2"]);
    assert!(cwd.join("payer2.key.jwk").exists() && cwd.join("payer2.pub.jwk").exists());
    let mint =
        |key: &str| exec(&["token", "mint", "--agent", &agent, "--key", key, "--purpose", "pay", "--token-only"]);
    assert!(mint("payer2.key.jwk").status.success());
    let stale = mint("payer.key.jwk");
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("invalid_client"));

    assert!(server.terminate().success());
}

/// Clients of a `warrant serve` process for the crash and disk tests: a registry, the
/// token endpoint, decisions, revocations and approvals over HTTP.
mod client {
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::{json, Value};
    use warrant_core::{AgentId, UnixTime};
    use warrant_token::KeyPair;

    /// The issuer URL the servers of these tests are started with, so that warrants stay
    /// valid across restarts on new ports.
    pub const ISSUER: &str = "http://warrant.test";
    const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

    /// Large payments need the owner's approval.
    pub const APPROVAL_POLICY: &str = r#"@id("large-payments-need-the-owner")
@approval("owner")
forbid (principal, action in Warrant::Action::"payments.*", resource)
when { context.telemetry has amount && context.telemetry.amount > 1000 };
"#;

    static UNIQUE: AtomicU64 = AtomicU64::new(0);

    fn unique() -> u64 {
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    }

    /// One HTTP answer.
    #[derive(Debug)]
    pub struct Answer {
        pub status: u16,
        pub body: Value,
        pub text: String,
    }

    /// A registered agent and its private key.
    pub struct Agent {
        pub id: AgentId,
        pub key: KeyPair,
    }

    /// The server's address and the admin token.
    #[derive(Clone)]
    pub struct Api {
        pub http: reqwest::Client,
        pub url: String,
        pub admin: String,
    }

    impl Api {
        pub fn new(url: &str, admin: &str) -> Api {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            Api { http, url: url.to_owned(), admin: admin.to_owned() }
        }

        /// Sends `request`; `None` when no whole answer came back (the server died).
        pub async fn send(&self, request: reqwest::RequestBuilder) -> Option<Answer> {
            let response = request.send().await.ok()?;
            let status = response.status().as_u16();
            let text = response.text().await.ok()?;
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Some(Answer { status, body, text })
        }

        pub async fn get(&self, path: &str, bearer: &str) -> Option<Answer> {
            self.send(self.http.get(format!("{}{path}", self.url)).bearer_auth(bearer)).await
        }

        pub async fn post(&self, path: &str, bearer: &str, body: &Value) -> Option<Answer> {
            self.send(self.http.post(format!("{}{path}", self.url)).bearer_auth(bearer).json(body)).await
        }

        pub async fn admin_get(&self, path: &str) -> Option<Answer> {
            self.get(path, &self.admin).await
        }

        pub async fn admin_post(&self, path: &str, body: &Value) -> Option<Answer> {
            self.post(path, &self.admin, body).await
        }

        pub async fn authorize(&self, body: &Value) -> Option<Answer> {
            self.send(self.http.post(format!("{}/v1/authorize", self.url)).json(body)).await
        }

        pub async fn healthy(&self) -> bool {
            self.send(self.http.get(format!("{}/healthz", self.url))).await.is_some_and(|a| a.status == 200)
        }

        async fn token(&self, form: &[(&str, &str)]) -> Option<Answer> {
            self.send(self.http.post(format!("{}/oauth2/token", self.url)).form(form)).await
        }

        fn assertion(agent: &Agent) -> String {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let jti = format!("a-{}-{}", unique(), agent.key.kid());
            warrant_token::assertion::make_assertion(
                &agent.key,
                &agent.id,
                &format!("{ISSUER}/oauth2/token"),
                UnixTime(i64::try_from(now).unwrap()),
                &jti,
            )
            .unwrap()
        }

        /// A root warrant by client credentials (a new task).
        pub async fn client_credentials(&self, agent: &Agent, purpose: &str) -> Option<Answer> {
            let assertion = Api::assertion(agent);
            self.token(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
                ("task_purpose", purpose),
                ("ttl", "900"),
            ])
            .await
        }

        /// A token exchange: `actor` acts on `subject` (a human session when `purpose` is
        /// given, else a warrant it delegates from).
        pub async fn exchange(&self, subject: &str, actor: &Agent, purpose: Option<&str>) -> Option<Answer> {
            let assertion = Api::assertion(actor);
            let mut form = vec![
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", if purpose.is_some() { ID_TOKEN } else { ACCESS_TOKEN }),
                ("actor_token", assertion.as_str()),
                ("actor_token_type", JWT),
                ("ttl", "900"),
            ];
            if let Some(purpose) = purpose {
                form.push(("task_purpose", purpose));
            }
            self.token(&form).await
        }

        async fn created(&self, path: &str, body: &Value) -> Value {
            let answer = self.admin_post(path, body).await.unwrap();
            assert_eq!(answer.status, 201, "POST {path}: {}", answer.text);
            answer.body
        }

        pub async fn agent(&self, owner: &str, mode: &str, max_scope: &[&str]) -> Agent {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).unwrap();
            let key = KeyPair::from_seed(&seed);
            let body = json!({"name": format!("agent {}", unique()), "owner": owner, "mode": mode,
                              "max_scope": max_scope, "public_key": key.public_jwk()});
            let view = self.created("/v1/agents", &body).await;
            Agent { id: AgentId::parse(view["id"].as_str().unwrap()).unwrap(), key }
        }
    }

    /// What the tests work with: a human with a delegation session and an approver
    /// token, two delegated agents and an autonomous one, all theirs; a delegated root
    /// warrant (`root`, held by the first agent), a delegation of it (`sub`, held by `a2`) and the
    /// bot's own root warrant; and the approval policy in force.
    pub struct World {
        pub approver: String,
        pub a2: Agent,
        pub bot: Agent,
        pub root: String,
        pub sub: String,
        pub bot_warrant: String,
    }

    /// The access token of a 200 token answer, or a panic naming what came back.
    pub fn access_token(answer: &Answer) -> (String, String, String) {
        assert_eq!(answer.status, 200, "token endpoint: {}", answer.text);
        let field = |name: &str| answer.body[name].as_str().unwrap().to_owned();
        (field("access_token"), field("warrant_id"), field("task_id"))
    }

    impl World {
        pub async fn build(api: &Api, data: &std::path::Path) -> World {
            let n = unique();
            let human = api
                .created(
                    "/v1/humans",
                    &json!({"name": "Crash", "email": format!("crash{n}@example.com"),
                            "entitlements": ["crm.*", "payments.*"]}),
                )
                .await;
            let human = human["id"].as_str().unwrap().to_owned();
            let session = api.created(&format!("/v1/humans/{human}/sessions"), &json!({})).await;
            let approver = api.created(&format!("/v1/humans/{human}/approver-sessions"), &json!({})).await;
            let scope = ["crm.*", "payments.*"];
            let a1 = api.agent(&human, "delegated", &scope).await;
            let a2 = api.agent(&human, "delegated", &scope).await;
            let bot = api.agent(&human, "autonomous", &scope).await;
            std::fs::write(data.join("policies").join("approvals.cedar"), APPROVAL_POLICY).unwrap();
            let reload = api.admin_post("/v1/policies/reload", &json!({})).await.unwrap();
            assert_eq!(reload.status, 200, "{}", reload.text);
            let shown = api.admin_get("/v1/policies").await.unwrap();
            assert!(shown.body["text"].as_str().unwrap().contains("large-payments-need-the-owner"), "{}", shown.text);
            let session = session["token"].as_str().unwrap();
            let (root, _, _) = access_token(&api.exchange(session, &a1, Some("crash work")).await.unwrap());
            let (sub, _, _) = access_token(&api.exchange(&root, &a2, None).await.unwrap());
            let (bot_warrant, _, _) = access_token(&api.client_credentials(&bot, "crash bot").await.unwrap());
            World { approver: approver["token"].as_str().unwrap().to_owned(), a2, bot, root, sub, bot_warrant }
        }
    }

    /// A read that the policies allow.
    pub fn read(token: &str, resource: &str) -> Value {
        json!({"token": token, "action": "crm.read", "resource": resource})
    }

    /// A payment above the approval threshold: `pending` until the owner approves it.
    pub fn pay(token: &str, resource: &str) -> Value {
        json!({"token": token, "action": "payments.send", "resource": resource, "context": {"amount": 5000}})
    }

    /// The sequence number of a decision's `dec_N`.
    pub fn seq(decision: &Value) -> u64 {
        let id = decision["decision_id"].as_str().unwrap_or_else(|| panic!("no decision_id: {decision}"));
        id.strip_prefix("dec_").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unrecorded: {decision}"))
    }

    /// Asserts a 5xx JSON error `error` that names no internals.
    #[track_caller]
    pub fn opaque_failure(answer: &Answer, error: &str) {
        assert!((500..600).contains(&answer.status), "expected a 5xx: {} {}", answer.status, answer.text);
        assert_eq!(answer.body["error"], error, "{}", answer.text);
        let lower = answer.text.to_lowercase();
        for secret in ["sqlite", "database", "disk", "full", "space", "read-only", "readonly", "i/o", "panic", "/"] {
            assert!(!lower.contains(secret), "the error reveals `{secret}`: {}", answer.text);
        }
    }
}

/// Writes acknowledged by the server during the crash loop, checked after restarts.
#[derive(Default)]
struct Acked {
    /// `dec_N`, the decision answered and the resource asked about.
    decisions: Vec<(u64, String, String)>,
    /// Warrants the token endpoint returned: task and jti.
    warrants: Vec<(String, String)>,
    /// Revocations answered 200: the revoked warrant's token.
    revoked: Vec<String>,
    /// Approvals a `pending` answer named.
    opened: Vec<String>,
    /// Approvals answered `approved`.
    approved: Vec<String>,
    /// Approved retries answered `allow`.
    used: usize,
}

impl Acked {
    fn is_empty(&self) -> bool {
        self.decisions.is_empty() && self.warrants.is_empty() && self.approved.is_empty()
    }

    fn absorb(&mut self, other: Acked) {
        self.decisions.extend(other.decisions);
        self.warrants.extend(other.warrants);
        self.revoked.extend(other.revoked);
        self.opened.extend(other.opened);
        self.approved.extend(other.approved);
        self.used += other.used;
    }

    /// Checks every write in `self` against the running server: each decision is in the
    /// audit log as answered, each warrant is listed by its task, each revoked warrant is
    /// denied as `revoked`, each approval exists and each approved one is approved or used.
    async fn check(&self, api: &client::Api, when: &str) {
        use std::collections::{BTreeMap, BTreeSet};
        if let Some(first) = self.decisions.iter().map(|d| d.0).min() {
            let last = self.decisions.iter().map(|d| d.0).max().unwrap();
            let mut recorded: BTreeMap<u64, Value> = BTreeMap::new();
            let mut after = first - 1;
            while after < last {
                let page = api
                    .admin_get(&format!("/v1/audit?kind=decision&order=oldest&limit=1000&after={after}"))
                    .await
                    .unwrap();
                assert_eq!(page.status, 200, "{}", page.text);
                for r in page.body["records"].as_array().unwrap() {
                    recorded.insert(r["seq"].as_u64().unwrap(), r.clone());
                }
                match page.body["next"].as_u64() {
                    Some(next) => after = next,
                    None => break,
                }
            }
            for (seq, decision, resource) in &self.decisions {
                let record = recorded.get(seq).unwrap_or_else(|| {
                    panic!("{when}: decision dec_{seq} ({decision}) was answered but is not in the log")
                });
                assert_eq!(record["decision"], decision.as_str(), "{when}: {record}");
                assert_eq!(record["details"]["resource"], resource.as_str(), "{when}: {record}");
            }
        }
        let tasks: BTreeSet<&str> = self.warrants.iter().map(|(task, _)| task.as_str()).collect();
        let mut listed: BTreeSet<String> = BTreeSet::new();
        for task in tasks {
            let view = api.admin_get(&format!("/v1/tasks/{task}")).await.unwrap();
            assert_eq!(view.status, 200, "{when}: task {task} of an issued warrant: {}", view.text);
            for w in view.body["warrants"].as_array().unwrap() {
                listed.insert(w["jti"].as_str().unwrap().to_owned());
            }
        }
        for (task, jti) in &self.warrants {
            assert!(listed.contains(jti), "{when}: warrant {jti} was issued but task {task} does not list it");
        }
        for token in &self.revoked {
            let d = api.authorize(&client::read(token, "customers/after-revocation")).await.unwrap();
            assert_eq!(d.body["decision"], "deny", "{when}: a revoked warrant was allowed: {}", d.text);
            assert_eq!(d.body["code"], "revoked", "{when}: {}", d.text);
        }
        let approved: BTreeSet<&String> = self.approved.iter().collect();
        for id in &self.opened {
            let a = api.admin_get(&format!("/v1/approvals/{id}")).await.unwrap();
            assert_eq!(a.status, 200, "{when}: approval {id} was opened but is gone: {}", a.text);
            let status = a.body["status"].as_str().unwrap();
            if approved.contains(id) {
                assert!(status == "approved" || status == "used", "{when}: approved {id} is now {status}");
            } else {
                assert!(["pending", "approved", "used"].contains(&status), "{when}: approval {id} is {status}");
            }
        }
    }
}

/// The crash loop: 100 cycles of `kill -9` of the real `warrant serve`, one data
/// directory throughout, each cycle at a random point of a mixed load (decisions that
/// allow and that ask for approval, client-credentials issuance and delegations,
/// revocations, the owner approving, approved retries). After every restart, every write
/// acknowledged before the kill is checked (see [`Acked::check`]); at the end all of them
/// are checked again and the audit chain verifies, online and offline.
///
/// `WARRANT_CRASH_CYCLES` and `WARRANT_CRASH_SEED` change the number of cycles and the
/// random kill points (the seed is printed).
#[test]
fn kill_9_at_random_points_of_a_mixed_load_loses_no_acknowledged_write() {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use client::{access_token, pay, read, seq, Api, World, ISSUER};
    use serde_json::json;

    let started = Instant::now();
    let cycles: usize = std::env::var("WARRANT_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 = std::env::var("WARRANT_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).unwrap();
        u64::from_le_bytes(bytes) | 1
    });
    eprintln!("crash loop: {cycles} cycles, WARRANT_CRASH_SEED={seed}");
    let mut state = seed;
    let mut random = move |below: u64| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Baselines and trust off: a load of ever new resources would be an anomaly to them,
    // and quarantine would end the load. Approvals apply regardless.
    let config = dir.path().join("warrant.toml");
    std::fs::write(&config, "[guard]\nenabled = false\n").unwrap();
    let args = ["--issuer", ISSUER, "--config", config.to_str().unwrap()];
    let mut startup = Duration::ZERO;
    let mut start = || {
        let at = Instant::now();
        let server = Server::start_with(&data, &args);
        startup += at.elapsed();
        server
    };

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = start();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let mut api = Api::new(&server.url, &admin);
    let world = Arc::new(rt.block_on(World::build(&api, &data)));
    let mut server = Some(server);

    // Approvals a pending answer opened, waiting for the owner; approved ones waiting for
    // their retry. Both carry over across cycles.
    let to_approve: Arc<Mutex<VecDeque<(String, Value)>>> = Arc::default();
    let to_retry: Arc<Mutex<VecDeque<(String, Value)>>> = Arc::default();
    // Warrants issued and not yet revoked (their token and jti).
    let to_revoke: Arc<Mutex<VecDeque<(String, String)>>> = Arc::default();
    let mut all = Acked::default();
    let mut load = Duration::ZERO;
    for cycle in 0..cycles {
        let server_now = server.take().unwrap();
        api.url = server_now.url.clone();
        let acked = Arc::new(Mutex::new(Acked::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let (api, world, acked, stop) = (api.clone(), Arc::clone(&world), Arc::clone(&acked), Arc::clone(&stop));
            let (to_approve, to_retry) = (Arc::clone(&to_approve), Arc::clone(&to_retry));
            workers.push(rt.spawn(async move {
                let tokens = [&world.root, &world.sub, &world.bot_warrant];
                for i in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let retry = to_retry.lock().unwrap().pop_front();
                    let (body, expected, opened) = match retry {
                        Some((id, mut body)) => {
                            body["approval_id"] = json!(id);
                            (body, "allow", false)
                        }
                        None if (i + w) % 5 == 0 => {
                            (pay(&world.root, &format!("payments/{cycle}-{w}-{i}")), "pending", true)
                        }
                        None => (read(tokens[(i % 3) as usize], &format!("customers/{cycle}-{w}-{i}")), "allow", false),
                    };
                    let Some(answer) = api.authorize(&body).await else { break };
                    let d = &answer.body;
                    assert_eq!(d["decision"], expected, "cycle {cycle}: {}", answer.text);
                    let resource = body["resource"].as_str().unwrap().to_owned();
                    let mut acked = acked.lock().unwrap();
                    acked.decisions.push((seq(d), expected.to_owned(), resource));
                    if opened {
                        let id = d["approval_id"].as_str().unwrap().to_owned();
                        acked.opened.push(id.clone());
                        to_approve.lock().unwrap().push_back((id, body));
                    } else if body.get("approval_id").is_some() {
                        acked.used += 1;
                    }
                }
            }));
        }
        for _ in 0..2 {
            // Issuance: client credentials and delegations, in turn; two of three
            // warrants are handed to the revoker.
            let (api, world, acked, stop) = (api.clone(), Arc::clone(&world), Arc::clone(&acked), Arc::clone(&stop));
            let to_revoke = Arc::clone(&to_revoke);
            workers.push(rt.spawn(async move {
                for i in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let answer = if i % 2 == 0 {
                        api.client_credentials(&world.bot, &format!("cycle {cycle}")).await
                    } else {
                        api.exchange(&world.root, &world.a2, None).await
                    };
                    let Some(answer) = answer else { break };
                    let (token, jti, task) = access_token(&answer);
                    acked.lock().unwrap().warrants.push((task, jti.clone()));
                    if i % 3 != 2 {
                        to_revoke.lock().unwrap().push_back((token, jti));
                    }
                }
            }));
        }
        {
            // Revocations of warrants just issued (a bot's root, or a delegation of `root`).
            let (api, acked, stop) = (api.clone(), Arc::clone(&acked), Arc::clone(&stop));
            let to_revoke = Arc::clone(&to_revoke);
            workers.push(rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let next = to_revoke.lock().unwrap().pop_front();
                    let Some((token, jti)) = next else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let body = json!({"kind": "warrant", "id": jti, "reason": format!("crash cycle {cycle}")});
                    let Some(revoked) = api.admin_post("/v1/revocations", &body).await else { break };
                    assert_eq!(revoked.status, 200, "cycle {cycle}: {}", revoked.text);
                    acked.lock().unwrap().revoked.push(token);
                }
            }));
        }
        {
            // The owner approves, with their approver token.
            let (api, world, acked, stop) = (api.clone(), Arc::clone(&world), Arc::clone(&acked), Arc::clone(&stop));
            let (to_approve, to_retry) = (Arc::clone(&to_approve), Arc::clone(&to_retry));
            workers.push(rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let next = to_approve.lock().unwrap().pop_front();
                    let Some((id, body)) = next else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let path = format!("/v1/approvals/{id}/approve");
                    let Some(answer) = api.post(&path, &world.approver, &json!({"reason": "ok"})).await else { break };
                    assert_eq!(answer.status, 200, "cycle {cycle}: approving {id}: {}", answer.text);
                    assert_eq!(answer.body["status"], "approved", "{}", answer.text);
                    acked.lock().unwrap().approved.push(id.clone());
                    to_retry.lock().unwrap().push_back((id, body));
                }
            }));
        }

        // The kill, at a random point of the load: 0 to 400 ms after its first
        // acknowledged write (on this shared, slow machine the first answers of a fresh
        // process can take a while; a cycle that acknowledged nothing would check nothing).
        let burst = Instant::now();
        while acked.lock().unwrap().is_empty() && burst.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(random(401)));
        load += burst.elapsed();
        server_now.kill_9();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            rt.block_on(worker).unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());

        // Restart on the same directory; what was acknowledged before the kill is there.
        let restarted = start();
        api.url = restarted.url.clone();
        rt.block_on(acked.check(&api, &format!("after kill {}", cycle + 1)));
        all.absorb(acked);
        server = Some(restarted);
    }

    // Everything once more, and the chain.
    let server = server.take().unwrap();
    rt.block_on(all.check(&api, "at the end"));
    let report = rt.block_on(api.admin_get("/v1/audit/verify")).unwrap();
    assert_eq!(report.body["ok"], true, "{}", report.text);
    assert!(server.terminate().success());
    let verified = ok(&["audit", "verify", "--data", data.to_str().unwrap()], dir.path());
    assert!(verified.starts_with("OK:"), "{verified}");
    let pending = all.decisions.iter().filter(|d| d.1 == "pending").count();
    eprintln!(
        "crash loop: {cycles} kill -9 cycles in {:.1} s ({:.0} ms per server start, {:.0} ms of load per cycle); \
         acknowledged and found after restart: {} decisions ({} pending), {} warrants, {} revocations \
         (each still denies), {} approvals opened, {} approved, {} used; audit chain of {} records verifies",
        started.elapsed().as_secs_f64(),
        startup.as_secs_f64() * 1000.0 / (cycles + 1) as f64,
        load.as_secs_f64() * 1000.0 / cycles as f64,
        all.decisions.len(),
        pending,
        all.warrants.len(),
        all.revoked.len(),
        all.opened.len(),
        all.approved.len(),
        all.used,
        report.body["records"],
    );
}

/// A tmpfs mounted on a fresh directory, unmounted when dropped (also when a test fails).
/// Mounting needs root, which CI has.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = format!("size={size},mode=0700");
        let target = dir.path().to_str().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs", target])
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs { dir })
        } else {
            Err(format!("mount failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// The mount, or `None` when the test is to be skipped: a test that needs a mount
    /// fails when it cannot have one, unless `WARRANT_SKIP_ROOT_TESTS=1` says to skip it.
    fn for_test(size: &str, test: &str) -> Option<Tmpfs> {
        match Tmpfs::mount(size) {
            Ok(mount) => Some(mount),
            Err(why) if std::env::var("WARRANT_SKIP_ROOT_TESTS").as_deref() == Ok("1") => {
                eprintln!("{test}: SKIPPED (WARRANT_SKIP_ROOT_TESTS=1): cannot mount a tmpfs: {why}");
                None
            }
            Err(why) => panic!(
                "{test} mounts a tmpfs, which needs root (CI runs as root): {why}. \
                 Set WARRANT_SKIP_ROOT_TESTS=1 to skip it deliberately."
            ),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,OPTIONS`.
    fn remount(&self, options: &str) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}"), self.path().to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        for size in [64 * 1024, 4096, 1] {
            loop {
                match file.write(&chunk[..size]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        let mut probe = std::fs::File::create(self.path().join("probe")).unwrap();
        assert!(probe.write_all(&[0u8; 4096]).and_then(|()| probe.sync_all()).is_err(), "the disk is not full");
        std::fs::remove_file(self.path().join("probe")).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = self.path().to_str().unwrap().to_owned();
        let unmounted = Command::new("umount").arg(&target).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a server a failed test left running): detach it anyway.
            let _ = Command::new("umount").args(["-l", &target]).status();
        }
    }
}

/// `warrant serve` on `data` that is expected not to start: its exit status and stderr,
/// or a panic if it starts listening or runs past 30 s.
fn serve_refuses(data: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("listening on"), "it started: {stdout}");
            return (status, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`warrant serve` neither started nor exited within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A full disk under a running server: every decision that would allow denies (code
/// `audit`, nothing unrecorded is allowed), a pending one denies, issuance and registry
/// changes fail with an opaque 5xx, a revocation either takes effect or fails clearly,
/// and the server stays up. Once the filler is removed, without a restart, decisions
/// allow again and everything works; a `kill -9` then loses nothing and the chain
/// verifies.
#[test]
fn a_full_disk_denies_every_decision_and_warrant_recovers_when_space_returns() {
    use client::{access_token, opaque_failure, pay, read, seq, Api, World, ISSUER};
    use serde_json::json;

    let test = "a_full_disk_denies_every_decision_and_warrant_recovers_when_space_returns";
    let Some(disk) = Tmpfs::for_test("3m", test) else { return };
    let started = Instant::now();
    let data = disk.path().join("data");
    let mut server = Server::start_with(&data, &["--issuer", ISSUER]);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api = Api::new(&server.url, &admin);
    let world = rt.block_on(World::build(&api, &data));
    let allowed = |token: &str, resource: &str| {
        let d = rt.block_on(api.authorize(&read(token, resource))).unwrap();
        assert_eq!(d.body["decision"], "allow", "{}", d.text);
        seq(&d.body)
    };
    let before = allowed(&world.root, "customers/before");
    let (doomed, doomed_jti, _) = access_token(&rt.block_on(api.client_credentials(&world.bot, "doomed")).unwrap());
    allowed(&doomed, "customers/doomed");

    let filler = disk.fill();

    // Every decision denies: those that would allow, a pending one, junk.
    for i in 0..20 {
        let token = [&world.root, &world.sub, &world.bot_warrant, &doomed][i % 4];
        let d = rt.block_on(api.authorize(&read(token, &format!("customers/full-{i}")))).unwrap();
        assert_eq!(d.status, 200, "{}", d.text);
        assert_eq!(d.body["decision"], "deny", "allowed on a full disk: {}", d.text);
        assert_eq!(d.body["code"], "audit", "{}", d.text);
        assert_eq!(d.body["decision_id"], "dec_unrecorded", "{}", d.text);
    }
    let d = rt.block_on(api.authorize(&pay(&world.root, "payments/full"))).unwrap();
    assert_eq!(d.body["decision"], "deny", "{}", d.text);
    let d = rt.block_on(api.authorize(&read("junk", "customers/full"))).unwrap();
    assert_eq!(d.body["decision"], "deny", "{}", d.text);

    // Issuance and registry changes fail, opaquely.
    opaque_failure(&rt.block_on(api.client_credentials(&world.bot, "on a full disk")).unwrap(), "server_error");
    opaque_failure(&rt.block_on(api.exchange(&world.root, &world.a2, None)).unwrap(), "server_error");
    let ghost = json!({"name": "Ghost", "email": "ghost@example.com", "entitlements": []});
    opaque_failure(&rt.block_on(api.admin_post("/v1/humans", &ghost)).unwrap(), "internal_error");
    // A revocation takes effect or fails clearly.
    let revoke = json!({"kind": "warrant", "id": doomed_jti, "reason": "revoked on a full disk"});
    let revoked = rt.block_on(api.admin_post("/v1/revocations", &revoke)).unwrap();
    let revoked_during_the_fault = revoked.status == 200;
    if !revoked_during_the_fault {
        opaque_failure(&revoked, "internal_error");
    }
    assert!(rt.block_on(api.healthy()) && server.alive(), "the server must stay up on a full disk");

    // Space returns: no restart needed.
    std::fs::remove_file(&filler).unwrap();
    let after = allowed(&world.root, "customers/after");
    assert!(after > before, "dec_{after} after dec_{before}");
    allowed(&world.sub, "customers/after");
    allowed(&world.bot_warrant, "customers/after");
    let d = rt.block_on(api.authorize(&pay(&world.root, "payments/after"))).unwrap();
    assert_eq!(d.body["decision"], "pending", "{}", d.text);
    access_token(&rt.block_on(api.client_credentials(&world.bot, "after the fault")).unwrap());
    access_token(&rt.block_on(api.exchange(&world.root, &world.a2, None)).unwrap());
    let created = rt.block_on(api.admin_post("/v1/humans", &ghost)).unwrap();
    assert_eq!(created.status, 201, "the failed registry change must not have happened: {}", created.text);
    if !revoked_during_the_fault {
        let revoked = rt.block_on(api.admin_post("/v1/revocations", &revoke)).unwrap();
        assert_eq!(revoked.status, 200, "{}", revoked.text);
    }
    let d = rt.block_on(api.authorize(&read(&doomed, "customers/doomed"))).unwrap();
    assert_eq!((&d.body["decision"], &d.body["code"]), (&json!("deny"), &json!("revoked")), "{}", d.text);
    let report = rt.block_on(api.admin_get("/v1/audit/verify")).unwrap();
    assert_eq!(report.body["ok"], true, "{}", report.text);

    // And a crash after the fault loses nothing.
    server.kill_9();
    let server = Server::start_with(&data, &["--issuer", ISSUER]);
    let api = Api::new(&server.url, &admin);
    let record = rt.block_on(api.admin_get(&format!("/v1/audit/dec_{after}"))).unwrap();
    assert_eq!(record.body["decision"], "allow", "{}", record.text);
    let d = rt.block_on(api.authorize(&read(&doomed, "customers/doomed"))).unwrap();
    assert_eq!(d.body["code"], "revoked", "{}", d.text);
    let report = rt.block_on(api.admin_get("/v1/audit/verify")).unwrap();
    assert_eq!(report.body["ok"], true, "{}", report.text);
    assert!(server.terminate().success());
    let verified = ok(&["audit", "verify", "--data", data.to_str().unwrap()], disk.path());
    assert!(verified.starts_with("OK:"), "{verified}");
    eprintln!(
        "full disk: 22 decisions denied, issuance and a registry change refused, the revocation {}; \
         recovered without a restart ({:.1} s)",
        if revoked_during_the_fault { "took effect" } else { "failed clearly and was retried" },
        started.elapsed().as_secs_f64()
    );
}

/// A read-only data directory. Linux refuses to remount a file system read-only while
/// a process holds a file on it open for writing (`mount point is busy`), so a running
/// server's database cannot be made read-only under it; the test checks that this is so
/// (and, should it ever succeed, that decisions then deny). Then, after a `kill -9`, the
/// directory is remounted read-only: `warrant serve` refuses to start with a clear error
/// (no panic); remounted read-write, it starts, nothing acknowledged before is lost and
/// decisions allow.
#[test]
fn a_read_only_data_directory_fails_clearly_and_warrant_recovers_when_writable() {
    use client::{read, seq, Api, World, ISSUER};

    let test = "a_read_only_data_directory_fails_clearly_and_warrant_recovers_when_writable";
    let Some(disk) = Tmpfs::for_test("8m", test) else { return };
    let started = Instant::now();
    let data = disk.path().join("data");
    let server = Server::start_with(&data, &["--issuer", ISSUER]);
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api = Api::new(&server.url, &admin);
    let world = rt.block_on(World::build(&api, &data));
    let d = rt.block_on(api.authorize(&read(&world.root, "customers/before"))).unwrap();
    assert_eq!(d.body["decision"], "allow", "{}", d.text);
    let before = seq(&d.body);

    match disk.remount("ro") {
        Err(why) => assert!(why.contains("busy"), "{why}"),
        Ok(()) => {
            let d = rt.block_on(api.authorize(&read(&world.root, "customers/read-only"))).unwrap();
            let refused = d.body["decision"] == "deny";
            disk.remount("rw").unwrap();
            assert!(refused, "allowed on a read-only file system: {}", d.text);
        }
    }

    server.kill_9();
    disk.remount("ro").unwrap();
    let (status, stderr) = serve_refuses(&data, &["--issuer", ISSUER]);
    assert!(!status.success(), "{status}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.to_lowercase().contains("read-only") || stderr.to_lowercase().contains("readonly"), "{stderr}");
    // The audit log can still be verified and exported offline, from the read-only mount,
    // after an unclean stop (its WAL not yet checkpointed into the database file).
    let data_arg = data.to_str().unwrap();
    let verified = ok(&["audit", "verify", "--data", data_arg], disk.path());
    assert!(verified.starts_with("OK:"), "{verified}");
    let export = ok(&["audit", "export", "--data", data_arg], disk.path());
    assert!(export.lines().count() as u64 >= before, "{export}");

    disk.remount("rw").unwrap();
    let server = Server::start_with(&data, &["--issuer", ISSUER]);
    let api = Api::new(&server.url, &admin);
    let record = rt.block_on(api.admin_get(&format!("/v1/audit/dec_{before}"))).unwrap();
    assert_eq!(record.body["decision"], "allow", "{}", record.text);
    let d = rt.block_on(api.authorize(&read(&world.root, "customers/after"))).unwrap();
    assert_eq!(d.body["decision"], "allow", "{}", d.text);
    let report = rt.block_on(api.admin_get("/v1/audit/verify")).unwrap();
    assert_eq!(report.body["ok"], true, "{}", report.text);
    assert!(server.terminate().success());
    // And after a clean stop (no WAL left), read-only too.
    disk.remount("ro").unwrap();
    let verified = ok(&["audit", "verify", "--data", data_arg], disk.path());
    assert!(verified.starts_with("OK:"), "{verified}");
    disk.remount("rw").unwrap();
    eprintln!(
        "read-only: `warrant serve` refused to start ({}), recovered when writable ({:.1} s)",
        stderr.lines().last().unwrap_or_default().trim(),
        started.elapsed().as_secs_f64()
    );
}

/// A server, a human, an autonomous agent with its key file in `cwd`, and the connection
/// arguments for the CLI.
struct World {
    server: Server,
    conn: Vec<String>,
    human: String,
    agent: String,
}

impl World {
    fn start(cwd: &Path) -> World {
        World::start_with(cwd, &[])
    }

    /// A world whose server runs with `extra` arguments.
    fn start_with(cwd: &Path, extra: &[&str]) -> World {
        let data = cwd.join("data");
        let server = Server::start_with(&data, extra);
        let conn = vec!["--server".to_owned(), server.url.clone(), "--data".to_owned(), data.display().to_string()];
        let mut world = World { server, conn, human: String::new(), agent: String::new() };
        let human = world.json(
            &["human", "add", "--name", "Pat", "--email", "pat@example.com", "-e", "crm.*", "-e", "payments.*"],
            cwd,
        );
        world.human = human["id"].as_str().unwrap().to_owned();
        ok(&["keygen", "bot"], cwd);
        let agent = world.json(
            &[
                "agent",
                "add",
                "--name",
                "bot",
                "--owner",
                &world.human.clone(),
                "--mode",
                "autonomous",
                "-s",
                "crm.*",
                "-s",
                "payments.*",
                "--public-key",
                "bot.pub.jwk",
            ],
            cwd,
        );
        world.agent = agent["id"].as_str().unwrap().to_owned();
        world
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        args.iter().copied().chain(self.conn.iter().map(String::as_str)).collect()
    }

    fn run(&self, args: &[&str], cwd: &Path) -> Output {
        run(&self.args(args), cwd)
    }

    fn ok(&self, args: &[&str], cwd: &Path) -> String {
        ok(&self.args(args), cwd)
    }

    fn json(&self, args: &[&str], cwd: &Path) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        json(&self.args(&args), cwd)
    }

    /// A fresh autonomous warrant of the agent.
    fn mint(&self, cwd: &Path, extra: &[&str]) -> String {
        let mut args = vec!["token", "mint", "--agent", &self.agent, "--key", "bot.key.jwk", "--purpose", "work"];
        args.extend_from_slice(extra);
        args.push("--token-only");
        self.ok(&args, cwd).trim().to_owned()
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn authorize_is_a_gate_exit_1_on_deny_and_2_on_pending_with_or_without_json() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let world = World::start(cwd);
    std::fs::write(
        cwd.join("data/policies/approval.cedar"),
        "@id(\"payments-need-the-owner\")\n@approval(\"owner\")\nforbid (principal, action in Warrant::Action::\"payments.*\", resource);\n",
    )
    .unwrap();
    world.ok(&["policy", "reload"], cwd);
    let token = world.mint(cwd, &[]);
    let ask = |action: &str, resource: &str, json: bool| {
        let mut args = vec!["authorize", "--token", &token, "--action", action, "--resource", resource];
        if json {
            args.push("--json");
        }
        world.run(&args, cwd)
    };
    for json in [false, true] {
        let allow = ask("crm.read", "customers/1", json);
        assert_eq!(code(&allow), Some(0), "allow, json={json}: {}", String::from_utf8_lossy(&allow.stderr));
        let deny = ask("tickets.close", "tickets/1", json);
        assert_eq!(code(&deny), Some(1), "deny, json={json}: {}", String::from_utf8_lossy(&deny.stdout));
        let pending = ask("payments.refund", "payments/1", json);
        assert_eq!(code(&pending), Some(2), "pending, json={json}: {}", String::from_utf8_lossy(&pending.stdout));
        if json {
            let d: Value = serde_json::from_slice(&deny.stdout).unwrap();
            assert_eq!(d["decision"], "deny", "{d}");
            let p: Value = serde_json::from_slice(&pending.stdout).unwrap();
            assert_eq!(p["decision"], "pending", "{p}");
            assert!(deny.stderr.is_empty() && pending.stderr.is_empty(), "--json keeps stderr quiet");
        } else {
            assert!(String::from_utf8_lossy(&deny.stderr).contains("denied (scope)"));
            assert!(String::from_utf8_lossy(&pending.stderr).contains("warrant approve"));
        }
    }
    // What `agent trust` and `task show` print is what the API answers.
    let trust = world.ok(&["agent", "trust", &world.agent], cwd);
    let api = world.json(&["agent", "trust", &world.agent], cwd);
    assert_eq!(api["actions"]["crm.read"], 2, "{api}");
    assert!(trust.contains("actions           crm.read=2"), "{trust}");
    assert!(trust.contains("allowed           2") && trust.contains("trust             "), "{trust}");
    let task = world.json(&["token", "inspect", &token], cwd)["claims"]["task"]["id"].as_str().unwrap().to_owned();
    let shown = world.ok(&["task", "show", &task], cwd);
    let api = world.json(&["task", "show", &task], cwd);
    for value in [&api["human"], &api["root_agent"], &api["warrants"][0]["jti"], &api["warrants"][0]["scope"]] {
        assert!(shown.contains(value.as_str().unwrap()), "{value} missing:\n{shown}");
    }
    assert!(shown.contains("ended    no") && shown.contains("[active]"), "{shown}");
    let created = shown.lines().find(|l| l.starts_with("created")).unwrap();
    assert!(created.ends_with('Z') && created.contains("T"), "{shown}");
    drop(world);
}

#[test]
fn token_inspect_asks_the_server_and_reports_revoked_and_expired_warrants() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let world = World::start(cwd);
    let token = world.mint(cwd, &[]);
    let valid = world.run(&["token", "inspect", &token], cwd);
    assert_eq!(code(&valid), Some(0));
    assert!(String::from_utf8_lossy(&valid.stdout).starts_with("VALID"));
    let jti = world.json(&["token", "inspect", &token], cwd)["claims"]["jti"].as_str().unwrap().to_owned();

    world.ok(&["revoke", "warrant", &jti, "--reason", "wrong customer"], cwd);
    let revoked = world.run(&["token", "inspect", &token], cwd);
    assert_eq!(code(&revoked), Some(1));
    let text = String::from_utf8_lossy(&revoked.stdout);
    assert!(text.starts_with("REVOKED: wrong customer (revocation rev_"), "{text}");
    let revoked = world.run(&["token", "inspect", &token, "--json"], cwd);
    assert_eq!(code(&revoked), Some(1));
    let v: Value = serde_json::from_slice(&revoked.stdout).unwrap();
    assert_eq!((v["valid"].as_bool(), v["state"].as_str()), (Some(false), Some("revoked")), "{v}");
    assert_eq!(v["revocation"]["reason"], "wrong customer");

    let short = world.mint(cwd, &["--ttl", "1"]);
    std::thread::sleep(Duration::from_millis(2100));
    let expired = world.run(&["token", "inspect", &short], cwd);
    assert_eq!(code(&expired), Some(1));
    assert!(String::from_utf8_lossy(&expired.stdout).starts_with("EXPIRED at 20"), "{expired:?}");
    drop(world);
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // The document is larger than a pipe's buffer: writes after the reader left fail with EPIPE.
    for args in [&["openapi"][..], &["demo"][..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "warrant {args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked") && !stderr.contains("error"), "warrant {args:?}: {stderr}");
    }
}

/// Runs `warrant` with stdout on a pipe whose reader is already gone, as in `warrant … |
/// head` once `head` has left: every write to stdout fails with `EPIPE`.
fn run_into_a_closed_pipe(args: &[&str], cwd: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN).args(args).current_dir(cwd).stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

/// Nothing on stderr says the closed pipe was a problem.
fn assert_quiet(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warrant {args:?}: {:?}\n{stderr}", out.status);
    for noise in ["panicked", "Broken pipe", "broken pipe", "error"] {
        assert!(!stderr.contains(noise), "warrant {args:?} said {noise:?}: {stderr}");
    }
}

#[test]
fn audit_export_into_a_pipe_closed_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut world = World::start(cwd);
    let data = cwd.join("data");
    // Enough history that the export is several times a pipe's buffer (64 KiB on Linux), so
    // the reader below leaves while the export is still writing: a registry record a human.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let api = client::Api::new(&world.server.url, &admin);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for i in 0..600 {
        let body = serde_json::json!({"name": format!("Human {i}"), "email": format!("h{i}@example.com")});
        let answer = rt.block_on(api.admin_post("/v1/humans", &body)).unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let token = world.mint(cwd, &[]);
    // Commands that talk to the server, with their reader gone before they write.
    for args in [
        &["agent", "list"][..],
        &["human", "list"],
        &["audit", "query"],
        &["review"],
        &["inventory"],
        &["token", "inspect", &token],
    ] {
        let out = run_into_a_closed_pipe(&world.args(args), cwd);
        assert_quiet(args, &out);
    }
    assert!(world.server.terminate_ref().success());
    let export = ["audit", "export", "--data", data.to_str().unwrap()];
    let whole = ok(&export, cwd);
    assert!(whole.len() > 4 * 65_536, "only {} bytes of audit export", whole.len());

    // `warrant audit export | head -1`: the first record is read, then the reader leaves.
    let mut child =
        Command::new(BIN).args(export).current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    drop(reader);
    let out = child.wait_with_output().unwrap();
    assert_eq!(first, whole.lines().next().map(|l| format!("{l}\n")).unwrap());
    assert_quiet(&export, &out);

    // And with the reader gone before the first record, offline commands too.
    for args in [&export[..], &["audit", "verify", "--data", data.to_str().unwrap()], &["openapi"], &["--help"]] {
        let out = run_into_a_closed_pipe(args, cwd);
        assert_quiet(args, &out);
    }

    // `warrant … 2>&1 | head`: stderr is the closed pipe too. A command that succeeds still
    // does; one that fails says so with its status, not with a panic (101).
    let nowhere = cwd.join("no-data");
    for (args, status) in [(&export[..], 0), (&["audit", "export", "--data", nowhere.to_str().unwrap()][..], 1)] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status_of = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .unwrap();
        assert_eq!(status_of.code(), Some(status), "warrant {args:?}");
    }
}

#[test]
fn files_holding_tokens_keys_or_audit_data_are_created_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut world = World::start(cwd);
    let data = cwd.join("data");
    // An export over an existing world-readable file is made private before it is written.
    std::fs::write(cwd.join("old.jsonl"), "").unwrap();
    std::fs::set_permissions(cwd.join("old.jsonl"), std::fs::Permissions::from_mode(0o644)).unwrap();
    world.ok(&["human", "session", &world.human, "--out", "pat.session"], cwd);
    world.ok(&["inventory", "--out", "inventory.csv"], cwd);
    world.ok(&["agent", "rotate-key", &world.agent, "--generate", "bot2"], cwd);
    assert!(world.server.terminate_ref().success());
    ok(&["audit", "export", "--data", data.to_str().unwrap(), "--out", "audit.jsonl"], cwd);
    ok(&["audit", "export", "--data", data.to_str().unwrap(), "--out", "old.jsonl"], cwd);
    for file in ["pat.session", "inventory.csv", "audit.jsonl", "old.jsonl", "bot.key.jwk", "bot2.key.jwk"] {
        let mode = std::fs::metadata(cwd.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
    let session = std::fs::read_to_string(cwd.join("pat.session")).unwrap();
    assert_eq!(session.trim().split('.').count(), 3, "a JWS: {session}");
    assert!(std::fs::read_to_string(cwd.join("audit.jsonl")).unwrap().lines().count() >= 2);
}

#[test]
fn a_missing_admin_token_is_reported_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let nowhere = cwd.join("no-data");
    // Port 9 on loopback: nothing listens, so reaching for the server would say so instead.
    for args in [&["agent", "list"][..], &["review"][..], &["audit", "query"][..], &["token", "inspect", "x.y.z"][..]] {
        let mut full = args.to_vec();
        full.extend(["--server", "http://127.0.0.1:9", "--data", nowhere.to_str().unwrap()]);
        let out = Command::new(BIN).args(&full).current_dir(cwd).env_remove("WARRANT_ADMIN_TOKEN").output().unwrap();
        assert_eq!(code(&out), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = nowhere.join("admin.token");
        assert!(stderr.contains(&format!("no admin token found at `{}`", path.display())), "{args:?}: {stderr}");
        assert!(stderr.contains("--admin-token") && stderr.contains("WARRANT_ADMIN_TOKEN"), "{stderr}");
        assert!(!stderr.contains("cannot reach"), "{args:?}: {stderr}");
    }
}

/// The README and docs cite only files the repository has: every relative Markdown link
/// resolves, and no document or source comment sends readers to a design document that
/// is not there.
#[test]
fn docs_cite_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Spelled in two halves so that this file does not cite it either.
    let missing = ["DESIGN", ".md"].concat();
    let mut documents = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    for doc in &documents {
        let text = std::fs::read_to_string(doc).unwrap();
        assert!(!text.contains(&missing), "{} cites {missing}", doc.display());
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap().split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            let resolved = doc.parent().unwrap().join(target);
            assert!(resolved.exists(), "{} links to `{target}`, which does not exist", doc.display());
        }
    }
    let mut sources = vec![root.join("crates")];
    while let Some(dir) = sources.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains(&missing), "{} cites {missing}", path.display());
            }
        }
    }
}

#[test]
fn audit_query_is_newest_first_and_pages_with_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let world = World::start(cwd);
    for i in 0..4 {
        world.ok(&["human", "add", "--name", "H", "--email", &format!("h{i}@example.com")], cwd);
    }
    let seqs = |page: &Value| -> Vec<u64> {
        page["records"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect()
    };
    let first = world.json(&["audit", "query", "--kind", "registry", "--limit", "2"], cwd);
    let newest = seqs(&first);
    assert_eq!(newest.len(), 2);
    assert!(newest[0] > newest[1], "newest first: {first}");
    let next = first["next"].as_u64().unwrap();
    let second =
        world.json(&["audit", "query", "--kind", "registry", "--limit", "2", "--before", &next.to_string()], cwd);
    assert!(seqs(&second).iter().all(|s| *s < newest[1]), "{second}");
    let oldest = world.json(&["audit", "query", "--kind", "registry", "--oldest-first", "--limit", "2"], cwd);
    let oldest = seqs(&oldest);
    assert!(oldest[0] < oldest[1]);
    let after =
        world.json(&["audit", "query", "--oldest-first", "--after", &oldest[1].to_string(), "--limit", "1"], cwd);
    assert_eq!(seqs(&after), vec![oldest[1] + 1]);
    // The table says how to get the next page, on stderr.
    let out = world.run(&["audit", "query", "--limit", "1"], cwd);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--before"), "{out:?}");
}

#[test]
fn pep_credentials_from_the_command_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let conn = ["--server", server.url.as_str(), "--data", data.to_str().unwrap()];
    let args = |extra: &[&str]| -> Vec<String> { extra.iter().chain(conn.iter()).map(|s| (*s).to_owned()).collect() };
    let ok_args = |extra: &[&str]| {
        let v = args(extra);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };

    // Printed once, or written alone to a 0600 file.
    let printed = ok_args(&["pep", "add", "--name", "api-gateway", "--plain-subjects"]);
    assert!(printed.trim().starts_with("wpep_"), "{printed}");
    let file = cwd.join("gateway.pep");
    let shown = ok_args(&["pep", "add", "--name", "mcp-gateway", "--out", file.to_str().unwrap(), "--json"]);
    let created: Value = serde_json::from_str(&shown).unwrap();
    assert!(created.get("token").is_none(), "{created}");
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(secret.trim().starts_with("wpep_") && !shown.contains(secret.trim()));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let list: Value = serde_json::from_str(&ok_args(&["pep", "list", "--json"])).unwrap();
    let peps = list["peps"].as_array().unwrap();
    assert_eq!(peps.iter().map(|p| p["name"].as_str().unwrap()).collect::<Vec<_>>(), ["api-gateway", "mcp-gateway"]);
    assert_eq!(peps[0]["plain_subjects"], true);
    assert!(ok_args(&["pep", "list"]).contains("mcp-gateway"));
    let id = created["id"].as_str().unwrap();
    let revoked: Value = serde_json::from_str(&ok_args(&["pep", "revoke", id, "--json"])).unwrap();
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");
    let again = run(&args(&["pep", "revoke", id]).iter().map(String::as_str).collect::<Vec<_>>(), cwd);
    assert!(!again.status.success());
    assert!(server.terminate().success());
}

/// One HTTP/1.1 request over a fresh connection; the whole answer as text.
fn http(addr: &str, request: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn gateway_starts_with_the_admin_token_it_finds_and_challenges_without_a_warrant() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let server = Server::start(&data);
    let gateway = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["gateway", "--server", &server.url, "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(cwd)
            .env_remove("WARRANT_ADMIN_TOKEN")
            .env_remove("WARRANT_PEP_TOKEN")
            .env_remove("WARRANT_CONFIG");
        cmd
    };

    // No credential anywhere: refused before it listens.
    let out = gateway(&["--upstream", "crm=http://127.0.0.1:9/mcp", "--data", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no PEP credential"), "{out:?}");
    // A malformed upstream is refused by the flag parser.
    let out = gateway(&["--upstream", "crm", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());

    // The admin token found in the data directory is the credential.
    let mut child = gateway(&["--upstream", "crm=http://127.0.0.1:9/mcp", "--data", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.split("listening on ").nth(1).expect("a `listening on` line").trim().to_owned();
    assert_eq!(lines.next().unwrap().unwrap().trim(), format!("upstream crm: {url}/mcp/crm"));
    let addr = url.trim_start_matches("http://");

    let meta = http(
        addr,
        "GET /.well-known/oauth-protected-resource/mcp/crm HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert!(meta.starts_with("HTTP/1.1 200"), "{meta}");
    let body: Value = serde_json::from_str(meta.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["resource"], format!("{url}/mcp/crm"));
    assert_eq!(body["authorization_servers"][0], server.url.as_str());

    let post = "POST /mcp/crm HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let denied = http(addr, post);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let challenge =
        format!("www-authenticate: Bearer resource_metadata=\"{url}/.well-known/oauth-protected-resource/mcp/crm\"");
    assert!(denied.to_ascii_lowercase().contains(&challenge.to_ascii_lowercase()), "{denied}");

    let _ = child.kill();
    let _ = child.wait();
    server.terminate();
}

/// What the in-process gateway's upstream saw: the JSON-RPC messages it was sent, and
/// whether any carried an `Authorization` header.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<(Value, bool)>>>);

/// A small MCP server (JSON answers) that records every message.
async fn mcp_upstream(
    axum::extract::State(seen): axum::extract::State<Seen>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    seen.0.lock().unwrap().push((body.clone(), headers.contains_key("authorization")));
    let Some(id) = body.get("id").cloned() else { return axum::http::StatusCode::ACCEPTED.into_response() };
    let result = match body["method"].as_str().unwrap_or_default() {
        "initialize" => serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                           "serverInfo": {"name": "upstream", "version": "1"}}),
        "tools/list" => serde_json::json!({"tools": [
            {"name": "get_customer", "inputSchema": {"type": "object"}},
            {"name": "delete_customer", "inputSchema": {"type": "object"}}
        ]}),
        "tools/call" => {
            serde_json::json!({"content": [{"type": "text", "text": format!("called {}", body["params"]["name"])}]})
        }
        _ => serde_json::json!({}),
    };
    axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// `warrant serve` with `args`; its stdout lines up to and including the gateway's
/// upstream line (the rest is drained).
fn serve_with_gateway(args: &[&str]) -> (Server, Vec<String>) {
    let mut child =
        Command::new(BIN).arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut head = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.trim_start().starts_with("upstream ");
        head.push(line);
        if last {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = head[0].split("listening on ").nth(1).expect("a `listening on` line").trim().to_owned();
    (Server { child, url }, head)
}

/// The `[gateway]` table of `warrant serve`: the gateway runs on its own address and
/// decides in-process. An allowed tool call reaches the upstream (without the warrant), a
/// denied one does not, the audit records both with the PEP `gateway` and the MCP call,
/// a warrant for another resource is refused with the 401 challenge, and SIGTERM stops
/// both listeners cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_gateway_of_its_gateway_table_deciding_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let seen = Seen::default();
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let router = axum::Router::new().route("/mcp", axum::routing::post(mcp_upstream)).with_state(seen.clone());
    tokio::spawn(async move { axum::serve(up, router).await.unwrap() });
    let config = cwd.join("warrant.toml");
    std::fs::write(
        &config,
        format!("[gateway]\nlisten = \"127.0.0.1:8090\"\nupstreams = {{ crm = \"http://{up_addr}/mcp\" }}\n"),
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let (server, head) = serve_with_gateway(&[
        "--data",
        data_arg,
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        // The flag wins over the table's `listen`.
        "--gateway-listen",
        "127.0.0.1:0",
    ]);
    let gateway = head.iter().find_map(|l| l.strip_prefix("gateway:")).expect("a `gateway:` line").trim().to_owned();
    let resource = format!("{gateway}/mcp/crm");
    assert_eq!(head.last().unwrap().trim(), format!("upstream crm: {resource}"), "{head:?}");

    // A human, an autonomous agent that may call tools, and a warrant for the gateway's
    // `crm` upstream that holds one tool.
    let conn = ["--server", server.url.as_str(), "--data", data_arg];
    let cli = |args: &[&str]| -> String {
        let all: Vec<&str> = args.iter().chain(conn.iter()).copied().collect();
        ok(&all, cwd)
    };
    let human: Value = serde_json::from_str(&cli(&[
        "human",
        "add",
        "--name",
        "Pat",
        "--email",
        "pat@example.com",
        "-e",
        "mcp.*",
        "--json",
    ]))
    .unwrap();
    let human = human["id"].as_str().unwrap().to_owned();
    ok(&["keygen", "bot"], cwd);
    let agent: Value = serde_json::from_str(&cli(&[
        "agent",
        "add",
        "--name",
        "bot",
        "--owner",
        &human,
        "--mode",
        "autonomous",
        "-s",
        "mcp.*",
        "--public-key",
        "bot.pub.jwk",
        "--json",
    ]))
    .unwrap();
    let agent = agent["id"].as_str().unwrap().to_owned();
    let mint = |resource: &str| {
        cli(&[
            "token",
            "mint",
            "--agent",
            &agent,
            "--key",
            "bot.key.jwk",
            "--purpose",
            "support",
            "--scope",
            "mcp.tools.call:mcp/*/tool/get_customer",
            "--resource",
            resource,
            "--token-only",
        ])
        .trim()
        .to_owned()
    };
    let warrant = mint(&resource);

    let http = ::reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |token: String, id: u64, tool: &str| {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                      "params": {"name": tool, "arguments": {"id": "42"}}});
        http.post(&resource)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
    };
    let allowed = call(warrant.clone(), 1, "get_customer").await.unwrap();
    assert_eq!(allowed.status(), 200);
    let allowed: Value = allowed.json().await.unwrap();
    assert_eq!(allowed["result"]["content"][0]["text"], "called \"get_customer\"", "{allowed}");
    let denied: Value = call(warrant.clone(), 2, "delete_customer").await.unwrap().json().await.unwrap();
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    assert_eq!(denied["error"]["data"]["outcome"], "deny", "{denied}");
    let calls: Vec<(Value, bool)> = seen.0.lock().unwrap().clone();
    // (The gateway reads the upstream's `tools/list` itself to learn its catalogue.)
    let names: Vec<&Value> =
        calls.iter().filter(|(m, _)| m["method"] == "tools/call").map(|(m, _)| &m["params"]["name"]).collect();
    assert_eq!(names, [&Value::from("get_customer")], "only the allowed call reached the upstream");
    assert!(calls.iter().all(|(_, auth)| !auth), "the warrant is never forwarded");

    // A warrant minted for another resource is refused with the challenge.
    let elsewhere = mint("http://elsewhere.example/mcp/crm");
    let refused = call(elsewhere, 3, "get_customer").await.unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(&format!("resource_metadata=\"{gateway}/.well-known/oauth-protected-resource/mcp/crm\"")),
        "{challenge}"
    );

    // Both decisions are in the audit log, by the PEP `gateway`, with the MCP call.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let audit: Value = http
        .get(format!("{}/v1/audit?kind=decision", server.url))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = audit["records"].as_array().unwrap();
    for (tool, decision) in [("get_customer", "allow"), ("delete_customer", "deny")] {
        let record = records
            .iter()
            .find(|r| r["details"]["resource"] == format!("mcp/crm/tool/{tool}"))
            .unwrap_or_else(|| panic!("the call of {tool} is audited: {audit}"));
        assert_eq!(record["decision"], decision, "{record}");
        assert_eq!(record["details"]["pep"], "gateway", "{record}");
        assert_eq!(
            record["details"]["mcp"],
            serde_json::json!({"method": "tools/call", "target": tool, "upstream": "crm"}),
            "{record}"
        );
        assert_eq!(record["agent"], agent.as_str());
        assert_eq!(record["human"], human.as_str());
    }
    assert_eq!(records.len(), 2, "the refused warrant was never decided: {audit}");

    assert!(server.terminate().success(), "the server and its gateway stop cleanly on SIGTERM");
    assert!(std::net::TcpStream::connect(gateway.trim_start_matches("http://")).is_err(), "the gateway is gone");
}

/// `warrant serve --config FILE` exits without listening; its stderr.
fn serve_refuses_config(data: &Path, listen: &str, config: &str) -> String {
    let file = data.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap(), "--listen", listen, "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started with {config}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_a_bad_gateway_table_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = "upstreams = { crm = \"http://127.0.0.1:9/mcp\" }";
    for (listen, table, why) in [
        ("127.0.0.1:0", "upstreams = { \"no spaces\" = \"http://127.0.0.1:9/mcp\" }", "upstream name `no spaces`"),
        ("127.0.0.1:0", "upstreams = { crm = \"ftp://127.0.0.1/mcp\" }", "is not an absolute http(s) URL"),
        ("127.0.0.1:0", "listen = \"127.0.0.1:0\"", "names no upstream"),
        ("127.0.0.1:18931", &format!("listen = \"127.0.0.1:18931\"\n{up}"), "collides with the API's `listen`"),
        ("127.0.0.1:0", &format!("public_url = \"mcp.example.com\"\n{up}"), "`gateway.public_url`"),
        ("127.0.0.1:0", &format!("server = \"http://127.0.0.1:8080\"\n{up}"), "unknown field `server`"),
    ] {
        let stderr = serve_refuses_config(&data, listen, &format!("[gateway]\n{table}\n"));
        assert!(stderr.contains(why), "{table}: {stderr}");
    }
    // The flags are checked the same way.
    let (_, stderr) = serve_refuses(&data, &["--gateway-upstream", "crm"]);
    assert!(stderr.contains("`crm` is not NAME=URL"), "{stderr}");
    let (_, stderr) = serve_refuses(&data, &["--gateway-listen", "127.0.0.1:0"]);
    assert!(stderr.contains("names no upstream"), "{stderr}");
    // The gateway's address taken: refused, naming the key.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let stderr = serve_refuses_config(&data, "127.0.0.1:0", &format!("[gateway]\nlisten = \"{addr}\"\n{up}\n"));
    assert!(stderr.contains("`gateway.listen`"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// A database of its own on the test PostgreSQL server (`WARRANT_TEST_POSTGRES`, set by
/// `scripts/test`), dropped at the end; `None` only when `WARRANT_SKIP_POSTGRES_TESTS=1`.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(test: &str) -> Option<PgDatabase> {
        let admin = match std::env::var("WARRANT_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("WARRANT_SKIP_POSTGRES_TESTS").as_deref() == Ok("1") => {
                eprintln!("{test}: SKIPPED (WARRANT_SKIP_POSTGRES_TESTS=1)");
                return None;
            }
            _ => panic!(
                "{test} needs a PostgreSQL server: WARRANT_TEST_POSTGRES is not set (scripts/test starts one). \
                 Set WARRANT_SKIP_POSTGRES_TESTS=1 to skip it deliberately."
            ),
        };
        let name = format!("cli_{}_{}", test.chars().take(20).collect::<String>(), std::process::id());
        Self::sql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
        Self::sql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, query) = admin.split_once('?').map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Some(PgDatabase { admin, name, url })
    }

    /// Runs `sql` on the admin connection.
    fn sql(admin: &str, sql: &str) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Closes the database to every connection (new ones are refused, open ones ended),
    /// or opens it again: an outage of the database as Warrant sees it.
    fn set_reachable(&self, reachable: bool) {
        let name = &self.name;
        Self::sql(&self.admin, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}"));
        if !reachable {
            Self::sql(
                &self.admin,
                &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
            );
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = std::panic::catch_unwind(|| {
            Self::sql(&self.admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        });
    }
}

/// The readiness status of the server at `url`.
fn readyz(url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { ::reqwest::get(format!("{url}/readyz")).await.unwrap().status().as_u16() })
}

/// Polls `readyz` until it answers `status`, for at most `limit`; how long it took.
fn await_readyz(url: &str, status: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if readyz(url) == status {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "/readyz did not answer {status} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `warrant migrate` creates the schema, and a second run finds nothing to do; a server
/// on PostgreSQL keeps what it was given across a restart; losing the database makes the
/// server deny and report not-ready, and getting it back recovers without a restart.
#[test]
fn postgres_migrate_serve_restart_and_an_outage() {
    let Some(db) = PgDatabase::create("pg_serve") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let first = ok(&["migrate", "--database", &db.url], cwd);
    assert!(first.contains("migrated the schema from version 0 to"), "{first}");
    let again = ok(&["migrate", "--database", &db.url], cwd);
    assert!(again.contains("nothing to do"), "{again}");

    let pg = ["--database", db.url.as_str(), "--issuer", "http://warrant.test", "--no-migrate"];
    // Without an issuer, PostgreSQL is refused: every server on a database signs as one.
    let (status, stderr) = serve_refuses(&cwd.join("other"), &["--database", &db.url]);
    assert!(!status.success() && stderr.contains("set `issuer`"), "{stderr}");
    let (status, stderr) = serve_refuses(&cwd.join("other"), &["--database", "mysql://x"]);
    assert!(!status.success() && stderr.contains("`database` must be `sqlite` or a `postgres://"), "{stderr}");

    let mut world = World::start_with(cwd, &pg);
    let token = world.mint(cwd, &[]);
    let ask = |world: &World| {
        code(&world.run(&["authorize", "--token", &token, "--action", "crm.read", "--resource", "c/1"], cwd))
    };
    assert_eq!(ask(&world), Some(0), "allowed on PostgreSQL");
    assert_eq!(readyz(&world.server.url), 200);

    // The database goes away: not ready within 5 s, and decisions deny.
    db.set_reachable(false);
    await_readyz(&world.server.url, 503, Duration::from_secs(5));
    assert_eq!(ask(&world), Some(1), "denied while the database is unreachable");
    // It comes back: ready again and allowing, without a restart.
    db.set_reachable(true);
    await_readyz(&world.server.url, 200, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(&world) != Some(0) {
        assert!(Instant::now() < deadline, "decisions did not recover after the database came back");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A restart on the same database (and data directory, which holds the key-encryption
    // key) keeps the human, the agent and the audit chain.
    assert!(world.server.terminate_ref().success());
    world.server = Server::start_with(&cwd.join("data"), &pg);
    world.conn[1] = world.server.url.clone();
    let humans = world.json(&["human", "list"], cwd);
    assert!(humans.to_string().contains(&world.human), "{humans}");
    assert_eq!(ask(&world), Some(0), "the warrant minted before the restart still allows");
    assert!(world.server.terminate_ref().success());
    let data = cwd.join("data").display().to_string();
    let verify = json(&["audit", "verify", "--data", &data, "--database", &db.url, "--json"], cwd);
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["records"].as_u64().unwrap() >= 6, "registry, issuance and decisions are recorded: {verify}");
    let export = ok(&["audit", "export", "--data", &data, "--database", &db.url], cwd);
    assert_eq!(export.lines().count() as u64, verify["records"].as_u64().unwrap(), "{export}");
}

/// A PostgreSQL server of a test's own (scripts/pg-test-cluster), which the test may stop
/// and start again; removed when dropped. `None` when the PostgreSQL tests are skipped.
struct OwnPostgres {
    dir: tempfile::TempDir,
    admin: String,
}

impl OwnPostgres {
    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster")
    }

    fn start(test: &str) -> Option<OwnPostgres> {
        if std::env::var("WARRANT_SKIP_POSTGRES_TESTS").as_deref() == Ok("1") {
            eprintln!("{test}: SKIPPED (WARRANT_SKIP_POSTGRES_TESTS=1)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(Self::script()).arg("start").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "pg-test-cluster start: {}", String::from_utf8_lossy(&out.stderr));
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Some(OwnPostgres { dir, admin })
    }

    /// A new database on it; its URL.
    fn database(&self, name: &str) -> String {
        PgDatabase::sql(&self.admin, &format!("CREATE DATABASE {name}"));
        format!("{}/{name}", self.admin.trim_end_matches("/postgres"))
    }

    /// Stops the server (`pg_ctl stop`), or starts it again on the same port.
    fn set_running(&self, running: bool) {
        let action = if running { "resume" } else { "pause" };
        let out = Command::new(Self::script()).arg(action).arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "pg-test-cluster {action}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(Self::script()).arg("stop").arg(self.dir.path()).status();
    }
}

/// Three servers on one PostgreSQL database act as one: registrations made on one are
/// usable on the others, the first server's admin token works on all, a warrant revoked
/// on one is denied on the others at once, a budget spent from all three at the same time
/// is spent exactly, a server killed with SIGKILL under load loses no answered decision or
/// issued warrant, stopping PostgreSQL makes every server deny and report not ready until
/// it is started again (no server restarted), and the one audit chain they wrote verifies.
#[test]
fn three_servers_on_one_postgres_database_act_as_one() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    let Some(postgres) = OwnPostgres::start("three_servers") else { return };
    let database = postgres.database("warrant_three");
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    ok(&["migrate", "--database", &database], cwd);
    let pg = ["--database", database.as_str(), "--issuer", "http://warrant.test", "--no-migrate"];
    let world = World::start_with(cwd, &pg);
    // The others get the key-encryption key the first created, and nothing else.
    let kek = cwd.join("data/keys/kek").display().to_string();
    let mut others: Vec<&str> = pg.to_vec();
    others.extend(["--kek-file", kek.as_str()]);
    let b = Server::start_with(&cwd.join("b"), &others);
    let mut c = Server::start_with(&cwd.join("c"), &others);
    assert!(!cwd.join("b/admin.token").exists(), "the admin token stays with the server that created it");
    let urls = [world.server.url.clone(), b.url.clone(), c.url.clone()];
    let admin = std::fs::read_to_string(cwd.join("data/admin.token")).unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let http = ::reqwest::Client::builder().no_proxy().build().unwrap();
    let decide = |url: &str, token: &str, context: Value| -> Value {
        rt.block_on(async {
            let body = json!({"token": token, "action": "crm.read", "resource": "c/1", "context": context});
            http.post(format!("{url}/v1/authorize")).json(&body).send().await.unwrap().json().await.unwrap()
        })
    };
    let until = |what: &str, limit: Duration, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Registered on A (the world's server), usable on B and C; A's admin token works on C.
    let token = world.mint(cwd, &[]);
    for url in &urls {
        until("registrations reach every server", Duration::from_secs(5), &|| {
            decide(url, &token, json!({}))["decision"] == "allow"
        });
    }
    let humans = rt.block_on(async {
        http.get(format!("{}/v1/humans", c.url)).bearer_auth(&admin).send().await.unwrap().status().as_u16()
    });
    assert_eq!(humans, 200, "every server accepts the admin token the first one created");

    // Revoked on A: denied on B and C as soon as they apply the change (the bound here is
    // generous; the measured propagation time is in BENCHMARKS.md).
    let revoked = world.mint(cwd, &[]);
    let inspected = world.json(&["token", "inspect", &revoked], cwd);
    let jti = inspected["claims"]["jti"].as_str().unwrap_or_else(|| panic!("{inspected}")).to_owned();
    for url in &urls {
        until("the new warrant is allowed everywhere", Duration::from_secs(5), &|| {
            decide(url, &revoked, json!({}))["decision"] == "allow"
        });
    }
    world.ok(&["revoke", "warrant", &jti, "--reason", "replicas test"], cwd);
    for url in &urls[1..] {
        until("a revocation reaches every server", Duration::from_secs(2), &|| {
            decide(url, &revoked, json!({}))["code"] == "revoked"
        });
    }

    // A budget of 30 spent from all three servers at once, 1 at a time, by 12 clients
    // asking 120 times: exactly 30 allowed.
    let budgeted = world.mint(cwd, &["--budget", "estimated_cost=30"]);
    for url in &urls {
        until("the budgeted warrant is known everywhere", Duration::from_secs(5), &|| {
            decide(url, &budgeted, json!({}))["decision"] == "allow"
        });
    }
    let allowed: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for url in &urls {
            for _ in 0..4 {
                let (http, url, token) = (http.clone(), url.clone(), budgeted.clone());
                tasks.push(tokio::spawn(async move {
                    let mut allowed = 0;
                    for _ in 0..10 {
                        let body = json!({"token": token, "action": "crm.read", "resource": "c/1",
                                          "context": {"estimated_cost": 1}});
                        let d: Value = http
                            .post(format!("{url}/v1/authorize"))
                            .json(&body)
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        match d["code"].as_str() {
                            Some("allow") => allowed += 1,
                            Some("budget") => {}
                            other => panic!("only the budget may deny here: {other:?} {d}"),
                        }
                    }
                    allowed
                }));
            }
        }
        let mut allowed = 0;
        for task in tasks {
            allowed += task.await.unwrap();
        }
        allowed
    });
    assert_eq!(allowed, 30, "never over the budget, and all of it spendable, across servers");

    // C is killed with SIGKILL under load: every decision it answered is in the log, and a
    // warrant it issued is usable on A.
    let issued_on_c = ok(
        &[
            "token",
            "mint",
            "--agent",
            &world.agent,
            "--key",
            "bot.key.jwk",
            "--purpose",
            "on c",
            "--token-only",
            "--server",
            &c.url,
            "--data",
            &cwd.join("data").display().to_string(),
        ],
        cwd,
    )
    .trim()
    .to_owned();
    let answered: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Issuance on C under the same load: every warrant C handed out must survive it.
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let minting = {
        let (issued, stop, agent, c_url) = (Arc::clone(&issued), Arc::clone(&stop), world.agent.clone(), c.url.clone());
        let (cwd, data) = (cwd.to_owned(), cwd.join("data").display().to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = run(
                    &[
                        "token",
                        "mint",
                        "--agent",
                        &agent,
                        "--key",
                        "bot.key.jwk",
                        "--purpose",
                        "under load",
                        "--token-only",
                        "--server",
                        &c_url,
                        "--data",
                        &data,
                    ],
                    &cwd,
                );
                if !out.status.success() {
                    break;
                }
                issued.lock().unwrap().push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
            }
        })
    };
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, token) = (http.clone(), c.url.clone(), token.clone());
            let (answered, stop) = (Arc::clone(&answered), Arc::clone(&stop));
            rt.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let body = json!({"token": token, "action": "crm.read", "resource": "c/1"});
                    let Ok(response) = http.post(format!("{url}/v1/authorize")).json(&body).send().await else { break };
                    let Ok(d) = response.json::<Value>().await else { break };
                    let id = d["decision_id"].as_str().unwrap();
                    answered.lock().unwrap().push(id.strip_prefix("dec_").unwrap().parse().unwrap());
                }
            })
        })
        .collect();
    until("load on C", Duration::from_secs(20), &|| {
        answered.lock().unwrap().len() >= 200 && issued.lock().unwrap().len() >= 3
    });
    let pid = c.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let _ = c.child.wait();
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for task in load {
            let _ = task.await;
        }
    });
    minting.join().unwrap();
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 200);
    for token in issued.lock().unwrap().iter() {
        assert_eq!(decide(&urls[0], token, json!({}))["decision"], "allow", "a warrant C issued before it was killed");
    }
    let missing: Vec<u64> = rt.block_on(async {
        let mut missing = Vec::new();
        for seq in &answered {
            let status = http
                .get(format!("{}/v1/audit/{seq}", urls[0]))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status != 200 {
                missing.push(*seq);
            }
        }
        missing
    });
    assert!(missing.is_empty(), "decisions C answered are missing from the log: {missing:?}");
    assert_eq!(decide(&urls[0], &issued_on_c, json!({}))["decision"], "allow", "C's issuance survived it");

    // PostgreSQL is stopped: A and B deny and report not ready; it is started again: both
    // recover without a restart.
    postgres.set_running(false);
    for url in &urls[..2] {
        await_readyz(url, 503, Duration::from_secs(6));
        assert_eq!(decide(url, &token, json!({}))["decision"], "deny", "never an allow without the database");
    }
    postgres.set_running(true);
    for url in &urls[..2] {
        await_readyz(url, 200, Duration::from_secs(15));
        until("decisions recover", Duration::from_secs(10), &|| decide(url, &token, json!({}))["decision"] == "allow");
    }

    // One chain, written by three servers, verifies end to end.
    let mut world = world;
    assert!(world.server.terminate_ref().success());
    assert!(b.terminate().success());
    let data = cwd.join("data").display().to_string();
    let verify = json(&["audit", "verify", "--data", &data, "--database", &database, "--json"], cwd);
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["records"].as_u64().unwrap() >= answered.len() as u64, "{verify}");
}
