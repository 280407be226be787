//! The checked-in OpenAPI document (`docs/openapi.json`) matches the one the handlers
//! generate. Run with `WARRANT_BLESS=1` to rewrite it after an intended API change.

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn the_checked_in_openapi_document_is_current() {
    let generated = format!("{}\n", warrant_server::openapi::json());
    let parsed: serde_json::Value = serde_json::from_str(&generated).expect("the generated document is JSON");
    assert!(parsed["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not an OpenAPI 3 document");
    for path in ["/oauth2/token", "/.well-known/jwks.json", "/v1/humans", "/v1/agents/{id}"] {
        assert!(parsed["paths"].get(path).is_some(), "`{path}` is not documented");
    }
    if std::env::var("WARRANT_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(CHECKED_IN, &generated).expect("write docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN)
        .unwrap_or_else(|e| panic!("cannot read {CHECKED_IN} ({e}); run the tests with WARRANT_BLESS=1 to create it"));
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "docs/openapi.json is out of date with the handlers; run `WARRANT_BLESS=1 cargo test -p warrant-server --test api openapi` and review the diff"
    );
}
