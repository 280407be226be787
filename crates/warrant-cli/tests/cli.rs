//! End-to-end tests of the `warrant` binary: the demo, and the README walkthrough against
//! a real `warrant serve` process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test code"
)]

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
        let mut child = Command::new(BIN)
            .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
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

    // Rotation on the data directory reaches the running server; the old key keeps verifying.
    ok(&["key", "rotate", "--data", data.to_str().unwrap()], cwd);
    let jwks_url = format!("{}/.well-known/jwks.json", server.url);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let jwks: Value = reqwest::blocking_get(&jwks_url);
        if jwks["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated key never reached the JWKS: {jwks}");
        std::thread::sleep(Duration::from_millis(500));
    }
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
}

#[test]
fn audit_verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
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
    let data_arg = data.to_str().unwrap();
    let clean = ok(&["audit", "verify", "--data", data_arg], cwd);
    assert!(clean.starts_with("OK:"), "{clean}");

    // An edited record: the verifier names it, and exits 1.
    let db = rusqlite::Connection::open(data.join("warrant.db")).unwrap();
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
