//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`. `warrant openapi` prints it; `docs/openapi.json` is a checked-in copy
//! that a test keeps current.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    agents, audit, authzen, decisions, govern, guard, humans, keys, oauth, peps, policies, revocations, ssf, token,
    transmitter, warrants, wellknown,
};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Warrant", description = "Identity, credential and authorization control plane for AI agents."),
    paths(
        wellknown::jwks, wellknown::metadata, openapi, wellknown::health, wellknown::ready, keys::rotate,
        token::token,
        oauth::introspect,
        oauth::revoke,
        transmitter::configuration,
        transmitter::create,
        transmitter::read,
        transmitter::delete,
        transmitter::status,
        transmitter::verify,
        transmitter::poll,
        humans::create, humans::list, humans::show, humans::disable, humans::enable, humans::set_roles, humans::session, humans::approver_session,
        agents::create, agents::list, agents::show, agents::suspend, agents::resume, agents::transfer, agents::retire,
        decisions::authorize, decisions::batch,
        guard::list, guard::show, guard::approve, guard::reject, guard::trust, guard::deploy, guard::events,
        govern::list, govern::show, govern::accept, govern::apply, govern::sweep, govern::inventory,
        govern::evidence, govern::attest, govern::rotate_key,
        revocations::revoke, revocations::task, revocations::complete, warrants::show,
        policies::show, policies::history, policies::reload,
        audit::query, audit::record, audit::trace, audit::verify,
        peps::create, peps::list, peps::revoke, ssf::receive,
        authzen::evaluation, authzen::evaluations, authzen::configuration,
        wellknown::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::OAuthErrorBody)),
    modifiers(&AdminAuth),
    tags(
        (name = "oauth", description = "RFC 6749 / 7523 / 8693 token endpoint, RFC 7662 introspection, RFC 7009 revocation, RFC 9449 DPoP"),
        (name = "discovery", description = "keys, metadata, this document"),
        (name = "humans", description = "the human registry (admin)"),
        (name = "agents", description = "the agent inventory (admin)"),
        (name = "decisions", description = "decisions at the point of action"),
        (name = "revocations", description = "revocations and tasks"),
        (name = "policies", description = "the Cedar policy set (admin)"),
        (name = "audit", description = "the tamper-evident audit log (admin)"),
        (name = "approvals", description = "human approval of pending decisions (approver session or admin)"),
        (name = "events", description = "live server-sent events (admin)"),
        (name = "authzen", description = "the AuthZEN 1.0 PDP (a PEP credential or admin) and its PEP credentials (admin)"),
        (name = "governance", description = "findings, attestation, the inventory (admin; attestation: owner session)"),
        (name = "ssf", description = "the Shared Signals transmitter: streams of revoked warrants for receivers (a PEP credential or admin)"),
    )
)]
pub struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "pep",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "discovery",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as OpenApi>::openapi())
}
