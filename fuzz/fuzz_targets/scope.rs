//! Permission and scope parsing, and the algebra on what parses.
//!
//! The input is up to three lines: scope A, scope B, and extra permissions. Asserts:
//! nothing panics; every permission and scope that parses prints back to an equal value;
//! a scope covers itself; A ∩ B is covered by A and by B, and equals B ∩ A up to
//! coverage; when A covers B, A ∩ B covers B; on concrete requests made from the
//! patterns, `allows` agrees with `covers` of the concrete permission, and A ∩ B allows
//! exactly what both A and B allow. The algebra is checked on scopes of at most 32
//! permissions each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warrant_core::{Permission, Scope};

/// A concrete request inside `p`'s pattern (wildcards filled with `x`, `**` with one or
/// no segment), or several.
fn probes(p: &Permission) -> Vec<(String, String)> {
    let text = p.to_string();
    let (action, resource) = match text.split_once(':') {
        Some((a, r)) => (a.to_owned(), Some(r.to_owned())),
        None => (text.clone(), None),
    };
    let action = match action.as_str() {
        "*" => "x".to_owned(),
        a => match a.strip_suffix(".*") {
            Some(prefix) => format!("{prefix}.x"),
            None => a.to_owned(),
        },
    };
    let resources: Vec<String> = match resource {
        None => vec!["r".to_owned(), "r/s".to_owned()],
        Some(r) => {
            let segments: Vec<&str> = r.split('/').collect();
            let fill = |rest: &[&str]| -> Vec<String> {
                segments
                    .iter()
                    .map(|s| if *s == "*" { "x" } else { s })
                    .chain(rest.iter().copied())
                    .map(str::to_owned)
                    .collect()
            };
            let mut out = Vec::new();
            if segments.last() == Some(&"**") {
                let body = &segments[..segments.len() - 1];
                let lit: Vec<String> =
                    body.iter().map(|s| if *s == "*" { "x".to_owned() } else { (*s).to_owned() }).collect();
                if !lit.is_empty() {
                    out.push(lit.join("/"));
                }
                let mut deeper = lit.clone();
                deeper.push("y".to_owned());
                out.push(deeper.join("/"));
            } else {
                out.push(fill(&[]).join("/"));
            }
            out
        }
    };
    resources.into_iter().map(|r| (action.clone(), r)).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (a_text, b_text, extra) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));

    for word in text.split_whitespace().chain(text.lines()) {
        if let Ok(p) = Permission::parse(word) {
            assert_eq!(Permission::parse(&p.to_string()).as_ref(), Ok(&p), "{word:?} does not print back");
            assert!(p.covers(&p), "{p} does not cover itself");
            assert_eq!(p.meet(&p).map(|m| m.covers(&p) && p.covers(&m)), Some(true), "{p} meet itself");
        }
    }
    let _ = Scope::parse(extra);

    let (Ok(a), Ok(b)) = (Scope::parse(a_text), Scope::parse(b_text)) else { return };
    // The algebra below is quadratic (and an intersection of n × m permissions can have
    // n × m members): keep each input small enough that a slow unit is a real finding.
    if a.permissions().len() > 32 || b.permissions().len() > 32 {
        return;
    }
    for s in [&a, &b] {
        assert_eq!(Scope::parse(&s.to_string()).as_ref(), Ok(s), "scope {s} does not print back");
        assert!(s.covers(s), "scope {s} does not cover itself");
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(&serde_json::from_str::<Scope>(&json).unwrap(), s);
    }
    let ab = a.intersect(&b);
    let ba = b.intersect(&a);
    assert!(a.covers(&ab), "{a} does not cover {a} ∩ {b} = {ab}");
    assert!(b.covers(&ab), "{b} does not cover {a} ∩ {b} = {ab}");
    assert!(ab.covers(&ba) && ba.covers(&ab), "{ab} and {ba} differ");
    if a.covers(&b) {
        assert!(ab.covers(&b), "{a} covers {b} but {ab} does not");
    }
    assert!(a.intersect(&a).covers(&a), "{a} ∩ itself is narrower");

    let perms: Vec<&Permission> = a.permissions().iter().chain(b.permissions()).collect();
    for p in perms.iter().copied().chain(ab.permissions().iter().take(64)) {
        for (action, resource) in probes(p) {
            let Ok(concrete) = Permission::parse(&format!("{action}:{resource}")) else { continue };
            assert!(p.allows(&action, &resource), "{p} does not allow its own probe {action} on {resource}");
            for q in &perms {
                assert_eq!(
                    q.allows(&action, &resource),
                    q.covers(&concrete),
                    "{q}: allows({action}, {resource}) disagrees with covers({concrete})"
                );
            }
            assert_eq!(
                ab.allows(&action, &resource),
                a.allows(&action, &resource) && b.allows(&action, &resource),
                "{a} ∩ {b} = {ab} on {action} {resource}"
            );
        }
    }
});
