//! Token confusion and forgery: a session is not a warrant (nor the other way round),
//! neither is a client assertion, and nothing signed by a key outside the issuer's ring
//! or altered after signing is accepted.

use reqwest::StatusCode;
use serde_json::{json, Value};
use warrant_core::HumanId;
use warrant_token::session::{sign_session, SessionClaims};
use warrant_token::warrant::sign_warrant;

use crate::testkit::{b64, new_key, now, unb64, Server, ACCESS_TOKEN, ID_TOKEN, JWT, JWT_BEARER};

#[tokio::test]
async fn sessions_warrants_and_assertions_are_not_interchangeable() {
    let s = Server::start().await;
    let human = s.human(&["crm.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*"]).await;
    let auto = s.agent(&human, "autonomous", &["crm.read"]).await;
    let session = s.session(&human).await;
    let (root, _) = s.warrant(&s.delegated_root(&session, &a, &[]).await).await;

    // A session where a warrant is expected.
    s.delegate(&session, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A warrant where a session is expected.
    s.exchange(&root, ID_TOKEN, &b, &[("task_purpose", "p")])
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A client assertion as the subject, under each subject token type.
    let assertion = s.assertion(&b);
    for kind in [ACCESS_TOKEN, ID_TOKEN, JWT] {
        s.exchange(&assertion, kind, &b, &[("task_purpose", "p")])
            .await
            .oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // A session or a warrant as the client assertion.
    for token in [&session, &root] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", token.as_str()),
            ("task_purpose", "p"),
        ];
        s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // A session or a warrant as the actor token.
    for token in [&session, &root] {
        let form = [
            ("grant_type", crate::testkit::TOKEN_EXCHANGE),
            ("subject_token", root.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", token.as_str()),
        ];
        s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // Another agent's assertion is not this agent's: the assertion names its agent, and
    // the signature must be that agent's key.
    let id = warrant_core::AgentId::parse(&auto.id).unwrap();
    let audience = format!("{}/oauth2/token", s.issuer);
    let wrong_key = warrant_token::assertion::make_assertion(&b.key, &id, &audience, now(), "wrong-key").unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", wrong_key.as_str()),
        ("task_purpose", "p"),
    ];
    s.token(&form).await.oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    s.healthy().await;
}

/// Splits a compact JWS into its header and payload JSON and its signature text.
fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let header = serde_json::from_slice(&unb64(it.next().unwrap())).unwrap();
    let payload = serde_json::from_slice(&unb64(it.next().unwrap())).unwrap();
    (header, payload, it.next().unwrap().to_owned())
}

/// A compact JWS from JSON header and payload, signed with `key`.
fn sign_by_hand(header: &Value, payload: &Value, key: &warrant_token::KeyPair) -> String {
    let input = format!("{}.{}", b64(serde_json::to_vec(header).unwrap()), b64(serde_json::to_vec(payload).unwrap()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.to_bytes()))
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let s = Server::start().await;
    let human = s.human(&["crm.*", "billing.*"]).await;
    let a = s.agent(&human, "delegated", &["crm.*", "billing.*"]).await;
    let b = s.agent(&human, "delegated", &["crm.*", "billing.*"]).await;
    let session = s.session(&human).await;
    let (root, decoded) = s.warrant(&s.delegated_root(&session, &a, &[("scope", "crm.read")]).await).await;
    let foreign = new_key();

    // The same claims, signed by a key outside the ring (under its own kid).
    let forged = sign_warrant(&foreign, &decoded.typed).unwrap();
    s.delegate(&forged, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Signed by a foreign key under the issuer's kid.
    let (header, payload, signature) = parts(&root);
    assert_eq!(header["kid"], decoded.header.kid.clone().unwrap().as_str());
    let forged = sign_by_hand(&header, &payload, &foreign);
    s.delegate(&forged, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // The issuer's signature over a payload altered after signing.
    let mut wider = payload.clone();
    wider["scope"] = json!("crm.* billing.*");
    let tampered = format!(
        "{}.{}.{signature}",
        b64(serde_json::to_vec(&header).unwrap()),
        b64(serde_json::to_vec(&wider).unwrap())
    );
    s.delegate(&tampered, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A signature bit flipped.
    let mut sig = unb64(&signature);
    sig[0] ^= 1;
    let flipped = format!("{}.{}", root.rsplit_once('.').unwrap().0, b64(&sig));
    s.delegate(&flipped, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // A session for the human signed by a foreign key.
    let claims = SessionClaims {
        iss: s.issuer.clone(),
        sub: HumanId::parse(&human).unwrap(),
        aud: s.issuer.clone(),
        exp: now().plus(600),
        iat: now(),
        nbf: now(),
        jti: "forged-session".into(),
    };
    let forged_session = sign_session(&foreign, &claims).unwrap();
    s.delegated_root(&forged_session, &a, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // The genuine warrant still delegates.
    s.delegate(&root, &b, &[]).await.ok();
}

#[tokio::test]
async fn a_warrant_from_another_server_is_refused() {
    let s = Server::start().await;
    let other = Server::start().await;
    let human = other.human(&["crm.*"]).await;
    let a = other.agent(&human, "delegated", &["crm.*"]).await;
    let session = other.session(&human).await;
    let (foreign_warrant, _) = other.warrant(&other.delegated_root(&session, &a, &[]).await).await;

    let local_human = s.human(&["crm.*"]).await;
    let b = s.agent(&local_human, "delegated", &["crm.*"]).await;
    s.delegate(&foreign_warrant, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    s.delegated_root(&session, &b, &[]).await.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    other.stop().await;
    s.stop().await;
}
