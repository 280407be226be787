//! The seed corpora under `fuzz/corpus/<target>/`: real tokens signed with the fixed keys,
//! permissions and scopes, token form bodies, authorize bodies and the shipped policies.
//! The `jws` target writes them when started with `WARRANT_FUZZ_WRITE_SEEDS` set (see
//! docs/fuzzing.md), so regenerating them needs no other build. Only its own files are
//! added or overwritten; seeds added by hand stay.

use std::path::Path;

use crate::{fixed_tokens, ring, ISSUER};

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Writes every seed under `corpus` (`fuzz/corpus`); `repo` is the repository root, for
/// the shipped policies.
pub fn write_seeds(corpus: &Path, repo: &Path) {
    let tokens = fixed_tokens();
    let token = |name: &str| tokens.iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone()).unwrap();

    // jws: the signed tokens, some broken ones, and the ring's JWKS.
    let dir = corpus.join("jws");
    for (name, t) in &tokens {
        write(&dir, &format!("{name}.jwt"), t);
    }
    let warrant = token("warrant");
    let parts: Vec<&str> = warrant.split('.').collect();
    write(&dir, "tampered.jwt", format!("{}.{}x.{}", parts[0], parts[1], parts[2]));
    write(&dir, "alg-none.jwt", format!("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.{}.", parts[1]));
    write(&dir, "hs256.jwt", format!("eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{}.{}", parts[1], parts[2]));
    write(&dir, "two-parts.jwt", format!("{}.{}", parts[0], parts[1]));
    write(&dir, "jwks.json", serde_json::to_vec(&ring().jwks()).unwrap());

    // scope: "scope A\nscope B\nextra permissions".
    let dir = corpus.join("scope");
    for (name, text) in [
        ("crm", "crm.* billing.read:invoices/**\ncrm.read:customers/* billing.*:invoices/2024/*\n"),
        ("paths", "a:x/*/z/** a:y\na:x/1/** a:*/1/z\n*:q/**"),
        ("any", "*\ncrm.read crm.notes.write:customers/42/notes/7\n"),
        ("wild-vs-exact", "payments.*:accounts/*\npayments.transfer:accounts/1 payments.refund.partial\n"),
        ("bad", "crm..read a:x//y\na:**/x a:x* *.read\n:x a.*.b"),
    ] {
        write(&dir, name, text);
    }

    // token_form: bodies as clients send them.
    let dir = corpus.join("token_form");
    let assertion = token("assertion");
    let session = token("session");
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    for (name, body) in [
        (
            "client-credentials",
            format!(
                "grant_type=client_credentials&scope={}&ttl=600&task_purpose={}&client_assertion_type={}&client_assertion={assertion}",
                encode("crm.read:customers/* billing.read"),
                encode("nightly reconciliation"),
                encode(jwt_bearer)
            ),
        ),
        (
            "exchange-session",
            format!(
                "grant_type={}&subject_token={session}&subject_token_type={}&actor_token={assertion}&actor_token_type={}&scope={}&budget={}",
                encode(exchange),
                encode("urn:ietf:params:oauth:token-type:id_token"),
                encode("urn:ietf:params:oauth:token-type:jwt"),
                encode("payments.transfer:accounts/*"),
                encode("estimated_cost=5000,rows=100")
            ),
        ),
        (
            "exchange-warrant",
            format!(
                "grant_type={}&subject_token={warrant}&subject_token_type={}&actor_token={assertion}&actor_token_type={}",
                encode(exchange),
                encode("urn:ietf:params:oauth:token-type:access_token"),
                encode("urn:ietf:params:oauth:token-type:jwt")
            ),
        ),
        ("repeated", "grant_type=client_credentials&scope=crm.read&scope=crm.write".to_owned()),
        ("unknown-and-encoded", "foo=bar&grant_type=client%5Fcredentials&scope=crm.read+billing.*&x=%ZZ&&=".to_owned()),
    ] {
        write(&dir, name, body);
    }

    // authorize: bodies naming the fixture's tokens by placeholder.
    let dir = corpus.join("authorize");
    let body = |token: &str, action: &str, resource: &str, extra: serde_json::Value| {
        let mut b = serde_json::json!({"token": token, "action": action, "resource": resource});
        if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(extra.clone());
        }
        serde_json::to_vec(&b).unwrap()
    };
    let none = serde_json::json!({});
    for (name, bytes) in [
        ("allow-crm", body("@valid", "crm.read", "customers/42", none.clone())),
        (
            "allow-notes",
            body(
                "@valid",
                "crm.notes.write",
                "customers/42/notes/7",
                serde_json::json!({"context": {"estimated_cost": 20}}),
            ),
        ),
        (
            "allow-payment",
            body(
                "@valid",
                "payments.transfer",
                "accounts/1",
                serde_json::json!({"resource_attrs": {"owner": "hum_x"}, "context": {"amount": 100}}),
            ),
        ),
        ("out-of-scope", body("@valid", "crm.write", "customers/42", none.clone())),
        (
            "too-costly",
            body(
                "@valid",
                "billing.read",
                "invoices/2024/7",
                serde_json::json!({"context": {"estimated_cost": 10001}}),
            ),
        ),
        ("wildcard-resource", body("@valid", "crm.read", "customers/*", none.clone())),
        (
            "approval",
            body("@valid", "crm.read", "customers/1", serde_json::json!({"approval_id": "apr_AAAAAAAAAAAAAAAA"})),
        ),
        ("revoked", body("@revoked", "crm.read", "customers/42", none.clone())),
        ("session", body("@session", "crm.read", "customers/42", none.clone())),
        ("foreign-warrant", body(&warrant, "crm.read", "customers/42", none.clone())),
        ("attrs-not-object", body("@valid", "crm.read", "customers/42", serde_json::json!({"resource_attrs": [1, 2]}))),
        ("unknown-field", br#"{"token":"@valid","action":"crm.read","resource":"customers/1","extra":1}"#.to_vec()),
    ] {
        write(&dir, name, bytes);
    }

    // policy: the shipped default set and the documented examples, one set of several
    // files, and one with the schema given explicitly.
    let dir = corpus.join("policy");
    let default = std::fs::read_to_string(repo.join("crates/warrant-policy/policies/default.cedar")).unwrap();
    write(&dir, "default.cedar", &default);
    let mut all = default.clone();
    let mut docs: Vec<_> = std::fs::read_dir(repo.join("docs/policies")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.sort();
    for path in docs {
        let text = std::fs::read_to_string(&path).unwrap();
        write(&dir, path.file_name().unwrap().to_str().unwrap(), &text);
        all.push_str("//@@file\n");
        all.push_str(&text);
    }
    write(&dir, "all-files", all);
    write(&dir, "with-schema", format!("{default}//@@schema\n{}", warrant_policy::schema::BASE_SCHEMA));
    eprintln!("seeds written under {} (issuer {ISSUER})", corpus.display());
}
