//! One permission: `action` or `action:resource-pattern`, and the *covers* relation.
//!
//! * Actions are dot-separated segments (`crm.read`). A final `*` segment covers every
//!   action under that prefix (`crm.*` covers `crm.read` and `crm.notes.write`, not
//!   `crm`); a lone `*` covers every action.
//! * Resources are slash-separated paths. In a pattern, `*` matches exactly one segment
//!   and a final `**` matches zero or more. No resource part means any resource.
//!
//! Resources have **one canonical form**, the same in a scope and in a request, and
//! anything else is refused (never normalised): segments are non-empty; `.` and `..` are
//! not segments; there is no `\`, no whitespace, no control character and no invisible
//! formatting character (zero-width, bidirectional overrides such as U+202E, tags, the
//! byte-order mark). A `%` is allowed only in a *percent-encoded segment*, which must be
//! exactly what [`percent_encode`] makes of its decoded text: every byte other than the
//! unreserved `A-Z a-z 0-9 - . _ ~` written `%` + two uppercase hex digits, and nothing
//! else encoded (`%2f`, `%41`, `%2`, a raw `:` next to a `%` are refused). An encoded `/`
//! (`%2F`) is part of the segment, never a separator, so a `*` matches a whole encoded
//! name such as an MCP resource URI; the decoded text must be UTF-8 and must not hold a
//! `.` or `..` component between `/` or `\`. Paths are then compared segment by segment,
//! byte for byte. See [`canonical_segment`].
//!
//! Patterns are parsed once into segment lists ("parse, don't validate"): a [`Permission`]
//! value is always well formed, and its `Display` form parses back to an equal value.

use serde::{Deserialize, Serialize};

/// Why a string is not a valid permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// The input was empty.
    #[error("a permission cannot be empty")]
    Empty,
    /// An action segment is empty or has characters outside `[A-Za-z0-9_-]`.
    #[error("`{0}` has an invalid action: use dot-separated segments of letters, digits, `_` and `-`, optionally ending in `.*`")]
    BadAction(String),
    /// A resource segment is empty, contains whitespace, or misuses `*`/`**`.
    #[error("`{0}` has an invalid resource: use non-empty slash-separated segments; `*` must be a whole segment and `**` may only be the last one")]
    BadResource(String),
    /// A resource segment is not in the canonical form (see [`canonical_segment`]). The
    /// input is kept escaped, so a control character in it is never echoed raw.
    #[error("`{input}` is not a canonical resource path: {why}")]
    NonCanonicalResource {
        /// The offending input, escaped and shortened.
        input: String,
        /// What is wrong with it.
        why: NonCanonical,
    },
    /// The input is longer than [`MAX_PERMISSION_LEN`].
    #[error("a permission may be at most {MAX_PERMISSION_LEN} characters long")]
    TooLong,
    /// A scope lists more than [`MAX_SCOPE_LEN`] permissions.
    #[error("a scope may hold at most {MAX_SCOPE_LEN} permissions")]
    TooMany,
}

/// The longest permission accepted, in bytes.
pub const MAX_PERMISSION_LEN: usize = 512;

/// The most permissions one scope may hold: an agent's max scope, a human's
/// entitlements, a requested scope and a warrant's scope alike (also
/// `warrant_core::scope::MAX_SCOPE_LEN`).
pub const MAX_SCOPE_LEN: usize = 256;

/// One segment of a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A literal segment that matches itself.
    Lit(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: zero or more segments; only ever last.
    Rest,
}

/// A parsed permission. Construct with [`Permission::parse`] or `str::parse`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permission {
    /// Action segments, without a trailing wildcard.
    action: Vec<String>,
    /// Whether the action ends in `*` (covers everything below `action`).
    action_wild: bool,
    /// Resource segments; `[Rest]` when the permission names no resource.
    resource: Vec<Segment>,
    /// Whether the permission was written without a resource part.
    any_resource: bool,
}

/// Why a resource segment is not canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonCanonical {
    /// A `.` or `..` segment.
    #[error("`.` and `..` segments are not allowed")]
    DotSegment,
    /// A `%` not followed by two uppercase hex digits.
    #[error("`%` must be followed by two uppercase hex digits (`%2F`, not `%2f`)")]
    PercentMalformed,
    /// A `%` that encodes an unreserved character, which is always written as itself.
    #[error("`A-Z a-z 0-9 - . _ ~` are never percent-encoded (`A`, not `%41`)")]
    PercentUnreserved,
    /// A raw character other than `A-Z a-z 0-9 - . _ ~` in a segment that uses `%`.
    #[error("a percent-encoded segment must encode every character other than `A-Z a-z 0-9 - . _ ~`")]
    PercentPartial,
    /// Percent-encoding whose decoded bytes are not UTF-8.
    #[error("percent-encoded bytes must decode to UTF-8")]
    PercentNotUtf8,
    /// A percent-encoded segment whose decoded text has a `.` or `..` component.
    #[error("the decoded text of a percent-encoded segment must not have `.` or `..` components")]
    EncodedDotSegment,
    /// A `\`.
    #[error("`\\` is not allowed")]
    Backslash,
    /// Whitespace, a control character or an invisible formatting character.
    #[error("whitespace, control and invisible formatting characters are not allowed")]
    Invisible,
}

/// Whether `c` is an invisible formatting character (Unicode category Cf, and the
/// separators that are not whitespace to Rust): zero-width characters, bidirectional
/// embeddings, overrides and isolates, the byte-order mark, interlinear annotations and
/// tag characters.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}')
}

/// Whether `b` is an unreserved URI character (RFC 3986 §2.3), never percent-encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of an uppercase hex digit.
fn upper_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `text` percent-encoded in the canonical form of a resource segment: every byte other
/// than the unreserved `A-Z a-z 0-9 - . _ ~` as `%` and two uppercase hex digits (so `/`
/// is `%2F` and the result is one segment). [`percent_decode`] inverts it.
pub fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a segment in the canonical form [`percent_encode`] makes, or says why it is
/// not in that form. A segment without `%` is not percent-encoded; this still decodes it
/// when it is all unreserved characters.
pub fn percent_decode(segment: &str) -> Result<String, NonCanonical> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(upper_hex);
            let lo = bytes.get(i + 2).copied().and_then(upper_hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(NonCanonical::PercentMalformed);
            };
            let byte = hi << 4 | lo;
            if is_unreserved(byte) {
                return Err(NonCanonical::PercentUnreserved);
            }
            out.push(byte);
            i += 3;
        } else if is_unreserved(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(NonCanonical::PercentPartial);
        }
    }
    String::from_utf8(out).map_err(|_| NonCanonical::PercentNotUtf8)
}

/// Checks that `segment` is a canonical literal resource segment: non-empty, not `.` or
/// `..`, and either free of `%`, `\`, whitespace, control and invisible formatting
/// characters, or a canonical percent-encoded segment (see the module documentation).
/// (`*` is a wildcard, checked by the pattern parser.)
pub fn canonical_segment(segment: &str) -> Result<(), NonCanonical> {
    if segment == "." || segment == ".." {
        return Err(NonCanonical::DotSegment);
    }
    if segment.contains('%') {
        let decoded = percent_decode(segment)?;
        if decoded.split(['/', '\\']).any(|part| part == "." || part == "..") {
            return Err(NonCanonical::EncodedDotSegment);
        }
        return Ok(());
    }
    for c in segment.chars() {
        match c {
            '\\' => return Err(NonCanonical::Backslash),
            c if c.is_whitespace() || c.is_control() || is_invisible(c) => return Err(NonCanonical::Invisible),
            _ => {}
        }
    }
    Ok(())
}

/// `text` for an error message or a reason: escaped (no raw control characters) and at
/// most 100 characters, with `…` when cut.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(100).flat_map(char::escape_debug).collect();
    if text.chars().count() > 100 {
        out.push('…');
    }
    out
}

fn valid_action_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_action(text: &str, whole: &str) -> Result<(Vec<String>, bool), PermissionError> {
    let bad = || PermissionError::BadAction(shown(whole));
    if text == "*" {
        return Ok((Vec::new(), true));
    }
    let (body, wild) = match text.strip_suffix(".*") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let segments: Vec<String> = body.split('.').map(str::to_owned).collect();
    if segments.iter().all(|s| valid_action_segment(s)) {
        Ok((segments, wild))
    } else {
        Err(bad())
    }
}

fn parse_resource(text: &str, whole: &str) -> Result<Vec<Segment>, PermissionError> {
    let bad = || PermissionError::BadResource(shown(whole));
    let parts: Vec<&str> = text.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let segment = match *part {
            "" => return Err(bad()),
            "*" => Segment::One,
            "**" if i == last => Segment::Rest,
            p => {
                canonical_segment(p)
                    .map_err(|why| PermissionError::NonCanonicalResource { input: shown(whole), why })?;
                if p.contains('*') {
                    return Err(bad());
                }
                Segment::Lit(p.to_owned())
            }
        };
        out.push(segment);
    }
    Ok(out)
}

impl Permission {
    /// Parses `action` or `action:resource-pattern`.
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        if text.is_empty() {
            return Err(PermissionError::Empty);
        }
        if text.len() > MAX_PERMISSION_LEN {
            return Err(PermissionError::TooLong);
        }
        let (action_text, resource_text) = match text.split_once(':') {
            Some((a, r)) => (a, Some(r)),
            None => (text, None),
        };
        let (action, action_wild) = parse_action(action_text, text)?;
        let (resource, any_resource) = match resource_text {
            Some(r) => (parse_resource(r, text)?, false),
            None => (vec![Segment::Rest], true),
        };
        Ok(Self { action, action_wild, resource, any_resource })
    }

    /// Whether this permission names one concrete action (no `*`).
    pub fn is_concrete_action(&self) -> bool {
        !self.action_wild
    }

    /// Whether the action is the lone `*` (every action).
    pub fn is_any_action(&self) -> bool {
        self.action_wild && self.action.is_empty()
    }

    /// Whether the resource part ends in `**` or is absent (open-ended).
    pub fn has_open_resource(&self) -> bool {
        matches!(self.resource.last(), Some(Segment::Rest))
    }

    /// How many segments the resource pattern has, a final `**` included (1 for a
    /// permission without a resource part, which stands for `**`).
    pub fn resource_segments(&self) -> usize {
        self.resource.len()
    }

    /// The action as written, e.g. `crm.*`.
    pub fn action_text(&self) -> String {
        match (self.action.is_empty(), self.action_wild) {
            (true, _) => "*".to_owned(),
            (false, true) => format!("{}.*", self.action.join(".")),
            (false, false) => self.action.join("."),
        }
    }

    /// The first action segment (its namespace), `*` for the lone wildcard.
    pub fn namespace(&self) -> &str {
        self.action.first().map(String::as_str).unwrap_or("*")
    }

    /// A key that orders broader permissions first: whenever `a` covers `b` and `b` does
    /// not cover `a`, `a.breadth() < b.breadth()`. Wild actions come first, shorter ones
    /// before longer ones; then resources ending in `**`, earlier `**` first; then fewer
    /// literal segments.
    pub(crate) fn breadth(&self) -> (bool, usize, usize, usize) {
        let rest_at = match self.resource.last() {
            Some(Segment::Rest) => self.resource.len().saturating_sub(1),
            _ => usize::MAX,
        };
        let literals = self.resource.iter().filter(|s| matches!(s, Segment::Lit(_))).count();
        let action_len = if self.action_wild { self.action.len() } else { 0 };
        (!self.action_wild, action_len, rest_at, literals)
    }

    /// Whether every request this permission allows is also allowed by `self`.
    pub fn covers(&self, other: &Permission) -> bool {
        // A concrete resource has at least one segment, so a lone `**` (no resource part)
        // allows exactly what `*/**` allows: compare with that form, which `*/**` covers.
        let other_resource = match other.resource.as_slice() {
            [Segment::Rest] => ONE_OR_MORE,
            resource => resource,
        };
        action_covers(&self.action, self.action_wild, &other.action, other.action_wild)
            && resource_covers(&self.resource, other_resource)
    }

    /// Whether this permission allows the concrete request `action` on `resource`.
    ///
    /// `action` and `resource` are taken literally: a `*` in them is not a wildcard.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        let action_segments: Vec<&str> = action.split('.').collect();
        let action_ok = if self.action_wild {
            action_segments.len() > self.action.len() && self.action.iter().zip(&action_segments).all(|(a, b)| a == b)
        } else {
            self.action.len() == action_segments.len() && self.action.iter().zip(&action_segments).all(|(a, b)| a == b)
        };
        action_ok && resource_matches(&self.resource, &resource.split('/').collect::<Vec<_>>())
    }

    /// The permissions that both `self` and `other` cover, as at most one permission
    /// (this pattern language is closed under intersection).
    pub fn meet(&self, other: &Permission) -> Option<Permission> {
        let (action, action_wild) = if action_covers(&self.action, self.action_wild, &other.action, other.action_wild) {
            (other.action.clone(), other.action_wild)
        } else if action_covers(&other.action, other.action_wild, &self.action, self.action_wild) {
            (self.action.clone(), self.action_wild)
        } else {
            return None;
        };
        let resource = resource_meet(&self.resource, &other.resource)?;
        let any_resource = resource == [Segment::Rest] && (self.any_resource || other.any_resource);
        Some(Permission { action, action_wild, resource, any_resource })
    }
}

/// `*/**`: one or more segments, what a resource pattern that is a lone `**` allows.
const ONE_OR_MORE: &[Segment] = &[Segment::One, Segment::Rest];

fn action_covers(a: &[String], a_wild: bool, b: &[String], b_wild: bool) -> bool {
    if a_wild {
        // `a.*` covers anything strictly below `a`, wild or not.
        b.len() > a.len() && a.iter().zip(b).all(|(x, y)| x == y) || (b_wild && b.len() == a.len() && a == b)
    } else {
        !b_wild && a == b
    }
}

fn resource_covers(a: &[Segment], b: &[Segment]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some((Segment::Rest, _)), _) => true,
        (Some(_), None) => false,
        (Some((_, _)), Some((Segment::Rest, _))) => false,
        (Some((Segment::One, a_rest)), Some((_, b_rest))) => resource_covers(a_rest, b_rest),
        (Some((Segment::Lit(x), a_rest)), Some((Segment::Lit(y), b_rest))) => x == y && resource_covers(a_rest, b_rest),
        (Some((Segment::Lit(_), _)), Some((Segment::One, _))) => false,
    }
}

fn resource_meet(a: &[Segment], b: &[Segment]) -> Option<Vec<Segment>> {
    match (a.split_first(), b.split_first()) {
        (None, None) => Some(Vec::new()),
        (Some((Segment::Rest, _)), _) => Some(b.to_vec()),
        (_, Some((Segment::Rest, _))) => Some(a.to_vec()),
        (None, Some(_)) | (Some(_), None) => None,
        (Some((x, a_rest)), Some((y, b_rest))) => {
            let head = match (x, y) {
                (Segment::One, other) | (other, Segment::One) => other.clone(),
                (Segment::Lit(p), Segment::Lit(q)) if p == q => x.clone(),
                _ => return None,
            };
            let mut tail = resource_meet(a_rest, b_rest)?;
            tail.insert(0, head);
            Some(tail)
        }
    }
}

fn resource_matches(pattern: &[Segment], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((Segment::Rest, _)), _) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Segment::One, p_rest)), Some((_, rest))) => resource_matches(p_rest, rest),
        (Some((Segment::Lit(x), p_rest)), Some((y, rest))) => x == y && resource_matches(p_rest, rest),
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.action_text())?;
        if self.any_resource {
            return Ok(());
        }
        f.write_str(":")?;
        for (i, segment) in self.resource.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match segment {
                Segment::Lit(s) => f.write_str(s)?,
                Segment::One => f.write_str("*")?,
                Segment::Rest => f.write_str("**")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Permission {
    type Err = PermissionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Permission {
    type Error = PermissionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn resources_have_one_canonical_form() {
        for (text, why) in [
            ("crm.read:customers/42/../43", NonCanonical::DotSegment),
            ("crm.read:customers/./42", NonCanonical::DotSegment),
            ("crm.read:customers/..", NonCanonical::DotSegment),
            ("crm.read:customers/42%2F..", NonCanonical::EncodedDotSegment),
            ("mcp.resources.read:mcp/docs/resource/file%3A%2F%2F%2Fa%2F.%2Fb", NonCanonical::EncodedDotSegment),
            ("mcp.resources.read:mcp/docs/resource/..%5Csecret", NonCanonical::EncodedDotSegment),
            ("crm.read:customers/42%2f", NonCanonical::PercentMalformed),
            ("crm.read:customers/42%2", NonCanonical::PercentMalformed),
            ("crm.read:customers/42%", NonCanonical::PercentMalformed),
            ("crm.read:customers/%%2F", NonCanonical::PercentMalformed),
            ("crm.read:customers/%G0", NonCanonical::PercentMalformed),
            ("crm.read:customers/%41", NonCanonical::PercentUnreserved),
            ("crm.read:customers/%2E%2E", NonCanonical::PercentUnreserved),
            ("crm.read:customers/4%7E2", NonCanonical::PercentUnreserved),
            ("mcp.resources.read:mcp/docs/resource/file:%2F%2F%2Freadme.md", NonCanonical::PercentPartial),
            ("crm.read:kunden/m%C3%BCller:x", NonCanonical::PercentPartial),
            ("crm.read:customers/%FF", NonCanonical::PercentNotUtf8),
            ("crm.read:customers/%C3", NonCanonical::PercentNotUtf8),
            ("crm.read:customers\\42", NonCanonical::Backslash),
            ("crm.read:customers/4\u{0}2", NonCanonical::Invisible),
            ("crm.read:customers/\u{1b}[0m", NonCanonical::Invisible),
            ("crm.read:customers/\u{202e}24", NonCanonical::Invisible),
            ("crm.read:customers/\u{200d}", NonCanonical::Invisible),
            ("crm.read:customers/\u{e0041}", NonCanonical::Invisible),
            ("crm.read:customers/\u{a0}", NonCanonical::Invisible),
        ] {
            match Permission::parse(text) {
                Err(PermissionError::NonCanonicalResource { input, why: got }) => {
                    assert_eq!(got, why, "{text:?}");
                    assert!(!input.chars().any(char::is_control), "the error echoes a control character: {input:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        // Dots inside a segment, non-ASCII letters, and `:` in a resource stay allowed.
        for text in ["crm.read:files/report.v2.pdf", "crm.read:kunden/müller", "crm.read:urn:x/..a", "crm.read:a/.../b"]
        {
            assert!(Permission::parse(text).is_ok(), "{text:?}");
        }
        // Canonical percent-encoded segments are allowed too.
        for text in [
            "mcp.resources.read:mcp/docs/resource/file%3A%2F%2F%2Freadme.md",
            "crm.read:kunden/m%C3%BCller",
            "crm.read:customers/42%2F",
            "crm.read:a/%2A",
            "crm.read:a/%25",
            "crm.read:a/x%2F...%2Fy",
        ] {
            assert!(Permission::parse(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn percent_encoding_is_canonical() {
        assert_eq!(percent_encode("file:///readme.md"), "file%3A%2F%2F%2Freadme.md");
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(percent_encode("müller 100%"), "m%C3%BCller%20100%25");
        assert_eq!(percent_decode("file%3A%2F%2F%2Freadme.md").as_deref(), Ok("file:///readme.md"));
        assert_eq!(percent_decode("m%c3%bcller"), Err(NonCanonical::PercentMalformed));
    }

    #[test]
    fn an_encoded_slash_is_part_of_its_segment() {
        let one = p("mcp.resources.read:mcp/docs/resource/*");
        let exact = p("mcp.resources.read:mcp/docs/resource/file%3A%2F%2F%2Freadme.md");
        let all = p("mcp.resources.read:mcp/docs/resource/**");
        let readme = "mcp/docs/resource/file%3A%2F%2F%2Freadme.md";
        for perm in [&one, &exact, &all] {
            assert!(perm.allows("mcp.resources.read", readme), "{perm}");
            assert!(!perm.allows("mcp.resources.read", "mcp/other/resource/file%3A%2F%2F%2Freadme.md"), "{perm}");
        }
        assert!(!exact.allows("mcp.resources.read", "mcp/docs/resource/file%3A%2F%2F%2Fsecret.md"));
        assert!(!exact.allows("mcp.resources.read", "mcp/docs/resource/file%3A%2F%2F%2Freadme.md/x"));
        assert!(one.covers(&exact) && all.covers(&one) && !exact.covers(&one));
        assert_eq!(exact.to_string().parse::<Permission>().as_ref(), Ok(&exact));
    }

    #[test]
    fn action_wildcards() {
        assert!(p("crm.*").covers(&p("crm.read")));
        assert!(p("crm.*").covers(&p("crm.notes.write")));
        assert!(p("crm.*").covers(&p("crm.notes.*")));
        assert!(p("crm.*").covers(&p("crm.*")));
        assert!(!p("crm.*").covers(&p("crm")));
        assert!(!p("crm.*").covers(&p("crmx.read")));
        assert!(!p("crm.read").covers(&p("crm.*")));
        assert!(p("*").covers(&p("anything.at.all:x/y")));
    }

    #[test]
    fn resource_patterns() {
        assert!(p("a:x/*").covers(&p("a:x/1")));
        assert!(!p("a:x/*").covers(&p("a:x/1/2")));
        assert!(p("a:x/**").covers(&p("a:x/1/2")));
        assert!(p("a:x/**").covers(&p("a:x")));
        assert!(p("a:x/**").covers(&p("a:x/*/y")));
        assert!(!p("a:x/*").covers(&p("a:x/**")));
        assert!(p("a").covers(&p("a:anything/here")));
        assert!(!p("a:x").covers(&p("a")));
    }

    #[test]
    fn concrete_requests() {
        assert!(p("crm.read:customers/*").allows("crm.read", "customers/42"));
        assert!(!p("crm.read:customers/*").allows("crm.read", "customers/42/notes"));
        assert!(p("crm.*").allows("crm.read", "customers/42/notes"));
        assert!(!p("crm.read:customers/42").allows("crm.read", "customers/*"));
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in ["", ".a", "a.", "a..b", "a.*.b", "a:", "a:/x", "a:x//y", "a:**/x", "a:x*", "a b", "a:x y"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["crm.read", "crm.*", "*", "crm.read:customers/*/notes/**", "a:b"] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn meet_is_the_narrower() {
        assert_eq!(p("crm.*:x/**").meet(&p("crm.read:x/1")), Some(p("crm.read:x/1")));
        assert_eq!(p("crm.read:*/1").meet(&p("crm.*:x/*")), Some(p("crm.read:x/1")));
        assert_eq!(p("crm.read").meet(&p("billing.read")), None);
        assert_eq!(p("a:x/1").meet(&p("a:x/2")), None);
    }
}
