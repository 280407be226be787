//! ID tokens of a trusted OpenID provider (OpenID Connect Core 1.0, section 3.1.3.7):
//! the provider's JWKS (RSA, P-256 and Ed25519 keys), and verification of an ID token
//! against it: `RS256`, `ES256` or `EdDSA` only (never `none` or HMAC), the key found by
//! `kid`, the signature, then `iss`, `aud` (and `azp` when there are several audiences),
//! `exp`, `iat` and `nbf`. Nothing in a token is read before its signature checks, except
//! the header and, to pick the provider, the unverified `iss` ([`peek_issuer`]).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use warrant_core::UnixTime;

use crate::jws::MAX_TOKEN_LEN;

/// How far a provider's clock may be from ours, seconds.
pub const LEEWAY_SECS: i64 = 60;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a compact JWS with a JSON header and payload, or too long.
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    /// An algorithm other than `RS256`, `ES256` or `EdDSA`.
    #[error("the ID token's algorithm `{0}` is not accepted (RS256, ES256 or EdDSA)")]
    UnsupportedAlg(String),
    /// No key of the provider matches the token's `kid` and algorithm.
    #[error("the ID token was signed with a key the provider does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the ID token's signature is invalid")]
    BadSignature,
    /// `iss` is not the provider's.
    #[error("the ID token's issuer is not `{0}`")]
    Issuer(String),
    /// `aud` does not name the accepted audience, or `azp` names another party.
    #[error("the ID token is not for audience `{0}`")]
    Audience(String),
    /// Expired, issued in the future, or not valid yet.
    #[error("the ID token {0}")]
    Time(&'static str),
    /// A required claim is missing or of the wrong type.
    #[error("the ID token's claims are invalid: {0}")]
    Claims(String),
}

/// One verification key of a provider.
#[derive(Clone)]
enum Key {
    /// RSA modulus and exponent (big-endian bytes), for `RS256`.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point (`04 || x || y`), for `ES256`.
    P256(Vec<u8>),
    /// An Ed25519 public key, for `EdDSA`.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Rsa { .. } => "RS256",
            Key::P256(_) => "ES256",
            Key::Ed25519(_) => "EdDSA",
        }
    }
}

/// A provider's signing keys, as read from its JWKS.
#[derive(Clone, Default)]
pub struct ProviderKeys {
    keys: Vec<(Option<String>, Key)>,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> =
            self.keys.iter().map(|(kid, k)| format!("{}:{}", kid.as_deref().unwrap_or("-"), k.alg())).collect();
        f.debug_struct("ProviderKeys").field("keys", &kids).finish()
    }
}

fn b64_field(jwk: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    B64.decode(jwk.get(name)?.as_str()?).ok()
}

impl ProviderKeys {
    /// The signing keys of a JWKS document (RFC 7517). Keys that are not for signatures
    /// (`use` other than `sig`), of another type or curve, or malformed are skipped.
    pub fn from_jwks(jwks: &Value) -> Self {
        Self::from_jwks_for(jwks, "sig")
    }

    /// The keys of a JWKS document whose `use` is `key_use` (or absent): `sig` for a
    /// provider's JWKS, `jwt-svid` for a SPIFFE trust bundle.
    pub fn from_jwks_for(jwks: &Value, key_use: &str) -> Self {
        let mut keys = Vec::new();
        for jwk in jwks.get("keys").and_then(Value::as_array).into_iter().flatten() {
            let Some(jwk) = jwk.as_object() else { continue };
            if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != key_use) {
                continue;
            }
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
            let crv = jwk.get("crv").and_then(Value::as_str);
            let key = match (jwk.get("kty").and_then(Value::as_str), crv) {
                (Some("RSA"), _) => match (b64_field(jwk, "n"), b64_field(jwk, "e")) {
                    // Big-endian integers; some publishers pad them with leading zeros.
                    (Some(n), Some(e)) => {
                        let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
                        let (n, e) = (strip(n), strip(e));
                        if n.is_empty() || e.is_empty() {
                            continue;
                        }
                        Key::Rsa { n, e }
                    }
                    _ => continue,
                },
                (Some("EC"), Some("P-256")) => match (b64_field(jwk, "x"), b64_field(jwk, "y")) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut point = Vec::with_capacity(65);
                        point.push(4);
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        Key::P256(point)
                    }
                    _ => continue,
                },
                (Some("OKP"), Some("Ed25519")) => {
                    let Some(x) = b64_field(jwk, "x").and_then(|x| <[u8; 32]>::try_from(x).ok()) else { continue };
                    match ed25519_dalek::VerifyingKey::from_bytes(&x) {
                        Ok(k) => Key::Ed25519(k),
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            keys.push((kid, key));
        }
        ProviderKeys { keys }
    }

    /// How many usable keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token with `alg` and `kid`: the one with that `kid` (of the same
    /// algorithm); without a `kid`, the only key of that algorithm.
    fn find(&self, alg: &str, kid: Option<&str>) -> Option<&Key> {
        let mut of_alg = self.keys.iter().filter(|(_, k)| k.alg() == alg);
        match kid {
            Some(kid) => of_alg.find(|(k, _)| k.as_deref() == Some(kid)).map(|(_, k)| k),
            None => {
                let first = of_alg.next()?;
                of_alg.next().is_none().then_some(&first.1)
            }
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// The claims of a verified ID token that Warrant reads; every other claim is in
/// `other` (e.g. `groups`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdTokenClaims {
    /// The provider.
    pub iss: String,
    /// The user, as the provider names them.
    pub sub: String,
    /// Expiry.
    pub exp: UnixTime,
    /// Every claim, as sent.
    pub all: Map<String, Value>,
}

impl IdTokenClaims {
    /// A string claim.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.all.get(name).and_then(Value::as_str)
    }

    /// A claim that is a list of strings, or one string (read as a list of one).
    pub fn strings(&self, name: &str) -> Vec<String> {
        string_list(self.all.get(name)).into_iter().map(str::to_owned).collect()
    }
}

/// A claim that is one string or a list of them (like `aud`), as a list; the strings of
/// a list, anything else in it skipped; empty for anything else.
pub(crate) fn string_list(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn split(token: &str) -> Result<(&str, &str, &str), IdTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdTokenError::Malformed("longer than a token may be"));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => Ok((h, p, s)),
        _ => Err(IdTokenError::Malformed("not three base64url parts")),
    }
}

pub(crate) fn json_part(part: &str) -> Result<Map<String, Value>, IdTokenError> {
    let bytes = B64.decode(part).map_err(|_| IdTokenError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| IdTokenError::Malformed("a part is not a JSON object"))
}

/// The `iss` a token claims, read without verifying anything: only to pick which
/// provider's keys to verify it with.
pub fn peek_issuer(token: &str) -> Result<String, IdTokenError> {
    let (_, payload, _) = split(token)?;
    json_part(payload)?
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| IdTokenError::Claims("no `iss`".into()))
}

fn check_signature(key: &Key, signed: &[u8], signature: &[u8]) -> Result<(), IdTokenError> {
    use ring::signature as sig;
    let ok = match key {
        Key::Rsa { n, e } => sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
            .verify(&sig::RSA_PKCS1_2048_8192_SHA256, signed, signature)
            .is_ok(),
        Key::P256(point) => {
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(signed, signature).is_ok()
        }
        Key::Ed25519(key) => match ed25519_dalek::Signature::from_slice(signature) {
            Ok(s) => key.verify_strict(signed, &s).is_ok(),
            Err(_) => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(IdTokenError::BadSignature)
    }
}

pub(crate) fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, IdTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| IdTokenError::Claims(format!("`{name}` is not a number"))),
    }
}

/// The header's `typ`, the payload, after the algorithm, key and signature checks.
pub(crate) fn signed_payload(
    token: &str,
    keys: &ProviderKeys,
) -> Result<(Option<String>, Map<String, Value>), IdTokenError> {
    let (header_b64, payload_b64, signature_b64) = split(token)?;
    let header_json = json_part(header_b64)?;
    let typ = header_json.get("typ").and_then(Value::as_str).map(str::to_owned);
    let header: Header = serde_json::from_value(Value::Object(header_json))
        .map_err(|_| IdTokenError::Malformed("the header has no `alg`"))?;
    if header.crit.is_some() {
        return Err(IdTokenError::Malformed("a `crit` header is not supported"));
    }
    if !matches!(header.alg.as_str(), "RS256" | "ES256" | "EdDSA") {
        return Err(IdTokenError::UnsupportedAlg(header.alg));
    }
    let key = keys.find(&header.alg, header.kid.as_deref()).ok_or(IdTokenError::UnknownKey)?;
    let signature = B64.decode(signature_b64).map_err(|_| IdTokenError::Malformed("the signature is not base64url"))?;
    let signed = token
        .as_bytes()
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(IdTokenError::Malformed("not three base64url parts"))?;
    check_signature(key, signed, &signature)?;
    Ok((typ, json_part(payload_b64)?))
}

/// Verifies an ID token of provider `issuer` for client `audience` against `keys` at
/// `now`. [`IdTokenError::UnknownKey`] means the provider's keys may have changed: fetch
/// them again (rate-limited) and retry once.
pub fn verify_id_token(
    token: &str,
    keys: &ProviderKeys,
    issuer: &str,
    audience: &str,
    now: UnixTime,
) -> Result<IdTokenClaims, IdTokenError> {
    let (typ, claims) = signed_payload(token, keys)?;
    // Other JWTs a provider signs for the same client (logout tokens, SETs, access
    // tokens) are not ID tokens.
    let typ = typ.unwrap_or_default().to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    if matches!(typ, "logout+jwt" | "secevent+jwt" | "at+jwt") || claims.contains_key("events") {
        return Err(IdTokenError::Claims("the token is not an ID token".into()));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(issuer) {
        return Err(IdTokenError::Issuer(issuer.to_owned()));
    }
    let audiences = string_list(claims.get("aud"));
    if !audiences.contains(&audience) {
        return Err(IdTokenError::Audience(audience.to_owned()));
    }
    if let Some(azp) = text("azp") {
        if azp != audience {
            return Err(IdTokenError::Audience(audience.to_owned()));
        }
    } else if audiences.len() > 1 {
        return Err(IdTokenError::Audience(audience.to_owned()));
    }
    let sub = match text("sub") {
        Some(s) if !s.is_empty() && s.len() <= 255 => s.to_owned(),
        _ => return Err(IdTokenError::Claims("`sub` is missing, empty or longer than 255 bytes".into())),
    };
    let exp = time_claim(&claims, "exp")?.ok_or_else(|| IdTokenError::Claims("no `exp`".into()))?;
    if exp.saturating_add(LEEWAY_SECS) <= now.0 {
        return Err(IdTokenError::Time("has expired"));
    }
    let iat = time_claim(&claims, "iat")?.ok_or_else(|| IdTokenError::Claims("no `iat`".into()))?;
    if iat > now.0.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::Time("was issued in the future"));
    }
    if time_claim(&claims, "nbf")?.is_some_and(|nbf| nbf > now.0.saturating_add(LEEWAY_SECS)) {
        return Err(IdTokenError::Time("is not valid yet"));
    }
    Ok(IdTokenClaims { iss: issuer.to_owned(), sub, exp: UnixTime(exp), all: claims })
}

/// A verified Security Event Token (RFC 8417) of a provider: its `jti`, its events by
/// type URI, and the top-level `sub_id`, if any (SSF 1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct SetClaims {
    /// The SET's id.
    pub jti: String,
    /// When it was issued.
    pub iat: i64,
    /// Event type URI to the event's members.
    pub events: Map<String, Value>,
    /// The subject of every event (`sub_id`), when given at the top level.
    pub sub_id: Option<Value>,
}

/// Verifies a SET of provider `issuer` against `keys` at `now`: signature as for an ID
/// token, `typ` `secevent+jwt`, `iss`, `aud` naming one of `audiences`, `iat` not in the
/// future, `exp` (when present) not passed, a `jti`, and at least one event.
pub fn verify_set(
    token: &str,
    keys: &ProviderKeys,
    issuer: &str,
    audiences: &[&str],
    now: UnixTime,
) -> Result<SetClaims, IdTokenError> {
    let (typ, claims) = signed_payload(token, keys)?;
    let typ = typ.unwrap_or_default().to_ascii_lowercase();
    if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
        return Err(IdTokenError::Claims("the token's `typ` is not `secevent+jwt`".into()));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(IdTokenError::Issuer(issuer.to_owned()));
    }
    if !string_list(claims.get("aud")).iter().any(|a| audiences.contains(a)) {
        return Err(IdTokenError::Audience(audiences.join("` or `")));
    }
    let iat = time_claim(&claims, "iat")?.ok_or_else(|| IdTokenError::Claims("no `iat`".into()))?;
    if iat > now.0.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::Time("was issued in the future"));
    }
    if time_claim(&claims, "exp")?.is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) <= now.0) {
        return Err(IdTokenError::Time("has expired"));
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 255 => j.to_owned(),
        _ => return Err(IdTokenError::Claims("`jti` is missing, empty or longer than 255 bytes".into())),
    };
    let events = match claims.get("events") {
        Some(Value::Object(events)) if !events.is_empty() => events.clone(),
        _ => return Err(IdTokenError::Claims("`events` must be an object with at least one event".into())),
    };
    Ok(SetClaims { jti, iat, events, sub_id: claims.get("sub_id").cloned() })
}

/// Permissions from group names: the union of what `rules` gives each of `groups`, in
/// order, each once. A group without a rule gives nothing.
pub fn permissions_of(groups: &[String], rules: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for group in groups {
        for permission in rules.get(group).into_iter().flatten() {
            if !out.contains(permission) {
                out.push(permission.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const NOW: UnixTime = UnixTime(1_800_000_000);

    struct Es256 {
        pair: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Es256 {
        fn new(kid: &'static str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
            Es256 { pair, kid }
        }
        fn jwk(&self) -> Value {
            let point = self.pair.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                   "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
        }
        fn sign(&self, header: Value, claims: Value) -> String {
            let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
            let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
            format!("{input}.{}", B64.encode(sig.as_ref()))
        }
        fn token(&self, claims: Value) -> String {
            self.sign(json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}), claims)
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "u-1", "aud": "warrant", "exp": NOW.0 + 300, "iat": NOW.0 - 5,
               "groups": ["support", "ops"], "email": "a@example.com"})
    }

    fn with(change: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = claims();
        change(c.as_object_mut().unwrap());
        c
    }

    #[test]
    fn a_token_of_the_provider_for_us_verifies_and_any_other_is_refused() {
        let key = Es256::new("k1");
        let keys = ProviderKeys::from_jwks(&json!({"keys": [key.jwk()]}));
        let ok = verify_id_token(&key.token(claims()), &keys, ISS, "warrant", NOW).unwrap();
        assert_eq!((ok.iss.as_str(), ok.sub.as_str()), (ISS, "u-1"));
        assert_eq!(ok.strings("groups"), vec!["support", "ops"]);
        assert_eq!(peek_issuer(&key.token(claims())).unwrap(), ISS);

        let refused = |c: Value| verify_id_token(&key.token(c), &keys, ISS, "warrant", NOW).unwrap_err();
        assert!(matches!(
            refused(with(|c| drop(c.insert("iss".into(), json!("https://evil"))))),
            IdTokenError::Issuer(_)
        ));
        assert!(matches!(refused(with(|c| drop(c.insert("aud".into(), json!("other"))))), IdTokenError::Audience(_)));
        // Several audiences need an `azp` that is us.
        assert!(matches!(
            refused(with(|c| drop(c.insert("aud".into(), json!(["warrant", "x"]))))),
            IdTokenError::Audience(_)
        ));
        let with_azp = with(|c| {
            c.insert("aud".into(), json!(["warrant", "x"]));
            c.insert("azp".into(), json!("warrant"));
        });
        assert!(verify_id_token(&key.token(with_azp), &keys, ISS, "warrant", NOW).is_ok());
        assert!(matches!(refused(with(|c| drop(c.insert("exp".into(), json!(NOW.0 - 61))))), IdTokenError::Time(_)));
        assert!(matches!(refused(with(|c| drop(c.insert("iat".into(), json!(NOW.0 + 120))))), IdTokenError::Time(_)));
        assert!(matches!(refused(with(|c| drop(c.remove("sub")))), IdTokenError::Claims(_)));
        assert!(matches!(refused(with(|c| drop(c.remove("exp")))), IdTokenError::Claims(_)));
    }

    #[test]
    fn keys_algorithms_and_signatures_are_checked_before_any_claim() {
        let key = Es256::new("k1");
        let other = Es256::new("k2");
        let keys = ProviderKeys::from_jwks(&json!({"keys": [key.jwk()]}));
        // A key the provider does not publish (rotated out, or never its own).
        let unknown = other.token(claims());
        assert_eq!(verify_id_token(&unknown, &keys, ISS, "warrant", NOW), Err(IdTokenError::UnknownKey));
        // Signed by another key under our kid: a bad signature.
        let forged = other.sign(json!({"alg": "ES256", "kid": "k1"}), claims());
        assert_eq!(verify_id_token(&forged, &keys, ISS, "warrant", NOW), Err(IdTokenError::BadSignature));
        // Other provider-signed JWTs for the same client are not ID tokens.
        for typ in ["logout+jwt", "secevent+jwt", "at+jwt"] {
            let token = key.sign(json!({"alg": "ES256", "kid": "k1", "typ": typ}), claims());
            assert!(
                matches!(verify_id_token(&token, &keys, ISS, "warrant", NOW), Err(IdTokenError::Claims(_))),
                "{typ}"
            );
        }
        let logout = with(|c| {
            drop(c.insert("events".into(), json!({"http://schemas.openid.net/event/backchannel-logout": {}})))
        });
        assert!(matches!(
            verify_id_token(&key.token(logout), &keys, ISS, "warrant", NOW),
            Err(IdTokenError::Claims(_))
        ));
        // A far-future expiry is not an overflow.
        assert!(verify_id_token(
            &key.token(with(|c| drop(c.insert("exp".into(), json!(i64::MAX))))),
            &keys,
            ISS,
            "warrant",
            NOW
        )
        .is_ok());
        // nbf in the future, azp naming another party.
        let early = with(|c| drop(c.insert("nbf".into(), json!(NOW.0 + 600))));
        assert!(matches!(verify_id_token(&key.token(early), &keys, ISS, "warrant", NOW), Err(IdTokenError::Time(_))));
        let azp = with(|c| drop(c.insert("azp".into(), json!("someone-else"))));
        assert!(matches!(verify_id_token(&key.token(azp), &keys, ISS, "warrant", NOW), Err(IdTokenError::Audience(_))));
        for alg in ["none", "HS256", "RS512"] {
            let token = key.sign(json!({"alg": alg, "kid": "k1"}), claims());
            assert!(matches!(
                verify_id_token(&token, &keys, ISS, "warrant", NOW),
                Err(IdTokenError::UnsupportedAlg(_))
            ));
        }
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(verify_id_token(junk, &keys, ISS, "warrant", NOW), Err(IdTokenError::Malformed(_))));
        }
        // Keys for encryption and unknown key types are not signing keys.
        let mut enc = key.jwk();
        enc["use"] = json!("enc");
        let skipped = ProviderKeys::from_jwks(&json!({"keys": [enc, {"kty": "oct", "k": "AAAA"}, {"kty": "EC"}]}));
        assert!(skipped.is_empty());
    }

    #[test]
    fn a_security_event_token_is_checked_like_an_id_token_and_needs_its_type_and_events() {
        let key = Es256::new("k1");
        let keys = ProviderKeys::from_jwks(&json!({"keys": [key.jwk()]}));
        let set = |typ: &str, claims: Value| key.sign(json!({"alg": "ES256", "kid": "k1", "typ": typ}), claims);
        let event = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
        let good = json!({"iss": ISS, "aud": "warrant", "iat": NOW.0, "jti": "set-1",
                          "sub_id": {"format": "iss_sub", "iss": ISS, "sub": "u-1"}, "events": {event: {}}});
        let ok = verify_set(&set("secevent+jwt", good.clone()), &keys, ISS, &["warrant"], NOW).unwrap();
        assert_eq!(ok.jti, "set-1");
        assert!(ok.events.contains_key(event));
        assert_eq!(ok.sub_id.unwrap()["sub"], "u-1");
        let refused = |typ: &str, c: Value| verify_set(&set(typ, c), &keys, ISS, &["warrant"], NOW).unwrap_err();
        assert!(matches!(refused("JWT", good.clone()), IdTokenError::Claims(_)), "an ID token is not a SET");
        let mut other = good.clone();
        other["aud"] = json!("elsewhere");
        assert!(matches!(refused("secevent+jwt", other), IdTokenError::Audience(_)));
        let mut empty = good.clone();
        empty["events"] = json!({});
        assert!(matches!(refused("secevent+jwt", empty), IdTokenError::Claims(_)));
        let mut no_jti = good;
        no_jti.as_object_mut().unwrap().remove("jti");
        assert!(matches!(refused("secevent+jwt", no_jti), IdTokenError::Claims(_)));
    }

    #[test]
    fn eddsa_keys_verify_and_leading_zeros_of_rsa_numbers_are_ignored() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let x = B64.encode(signing.verifying_key().as_bytes());
        let keys = ProviderKeys::from_jwks(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e1", "x": x}]}));
        let input = format!(
            "{}.{}",
            B64.encode(json!({"alg": "EdDSA", "kid": "e1"}).to_string()),
            B64.encode(claims().to_string())
        );
        use ed25519_dalek::Signer as _;
        let token = format!("{input}.{}", B64.encode(signing.sign(input.as_bytes()).to_bytes()));
        assert_eq!(verify_id_token(&token, &keys, ISS, "warrant", NOW).unwrap().sub, "u-1");
        // The same token claimed as RS256 finds no RSA key.
        let rsa = ProviderKeys::from_jwks(
            &json!({"keys": [{"kty": "RSA", "kid": "r", "n": B64.encode([0, 0, 1, 2]), "e": B64.encode([0, 1, 0, 1])}]}),
        );
        assert_eq!(rsa.len(), 1, "padded numbers are read");
        let empty = ProviderKeys::from_jwks(&json!({"keys": [{"kty": "RSA", "n": B64.encode([0, 0]), "e": "AQAB"}]}));
        assert!(empty.is_empty(), "a zero modulus is no key");
    }

    #[test]
    fn groups_map_to_the_union_of_their_permissions() {
        let rules: BTreeMap<String, Vec<String>> = [
            ("support".to_owned(), vec!["tickets.*".to_owned()]),
            ("ops".to_owned(), vec!["tickets.read".to_owned(), "deploy.*".to_owned()]),
        ]
        .into();
        let groups = vec!["ops".to_owned(), "support".to_owned(), "unknown".to_owned()];
        assert_eq!(permissions_of(&groups, &rules), vec!["tickets.read", "deploy.*", "tickets.*"]);
        assert!(permissions_of(&[], &rules).is_empty());
    }
}
