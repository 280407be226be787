"""The standard OAuth endpoints, driven by independent client libraries against a real
server: authlib obtains an autonomous warrant with `private_key_jwt` (EdDSA), introspects
it (RFC 7662) and revokes it (RFC 7009); joserfc makes the DPoP proofs (RFC 9449) of a
sender-constrained warrant, and a replayed, wrong-URL, wrong-key, missing or malformed
proof is refused and changes nothing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey

from harness import Server, dpop_proof

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def metadata(server: Server) -> dict[str, Any]:
    return server.http.get(server.base + "/.well-known/oauth-authorization-server").json()


def authlib_agent(server: Server, scope: list[str]) -> tuple[str, OKPKey]:
    """An autonomous agent registered with the public half of a key authlib signs with."""
    owner = server.human(scope)
    key = OKPKey.generate_key("Ed25519")
    public = key.as_dict(private=False)
    body = {
        "name": f"authlib {uuid.uuid4().hex[:8]}",
        "owner": owner,
        "mode": "autonomous",
        "max_scope": scope,
        "public_key": {"kty": public["kty"], "crv": public["crv"], "x": public["x"]},
    }
    return server.admin_ok("POST", "/v1/agents", body)["id"], key


def authlib_client(agent_id: str, key: OKPKey) -> OAuth2Client:
    # No endpoint given to PrivateKeyJWT: each assertion's `aud` is the URL it is sent to
    # (the token, introspection or revocation endpoint), as authlib does by default.
    client = OAuth2Client(
        client_id=agent_id,
        client_secret=key,
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
        trust_env=False,
    )
    client.register_client_auth_method(PrivateKeyJWT(alg="EdDSA"))
    return client


def test_metadata_lists_every_endpoint_and_method(warrant_server: Server) -> None:
    meta = metadata(warrant_server)
    issuer = warrant_server.issuer
    assert meta["token_endpoint"] == f"{issuer}/oauth2/token"
    assert meta["introspection_endpoint"] == f"{issuer}/oauth2/introspect"
    assert meta["revocation_endpoint"] == f"{issuer}/oauth2/revoke"
    assert meta["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert "private_key_jwt" in meta["introspection_endpoint_auth_methods_supported"]
    assert meta["revocation_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(meta["dpop_signing_alg_values_supported"]) == {"EdDSA", "ES256", "RS256"}


def test_authlib_obtains_introspects_and_revokes_a_warrant_with_private_key_jwt(warrant_server: Server) -> None:
    meta = metadata(warrant_server)
    agent_id, key = authlib_agent(warrant_server, ["reports.read:reports/*"])
    with authlib_client(agent_id, key) as client:
        token = client.fetch_token(
            meta["token_endpoint"],
            grant_type="client_credentials",
            scope="reports.read:reports/*",
            task_purpose="nightly report",
        )
        assert token["token_type"] == "Bearer"
        warrant = token["access_token"]
        assert claims_of(warrant)["client_id"] == agent_id

        seen = client.introspect_token(meta["introspection_endpoint"], token=warrant).json()
        assert seen["active"] is True
        assert seen["client_id"] == agent_id and seen["sub"] == agent_id
        assert seen["scope"] == "reports.read:reports/*"
        assert seen["token_type"] == "Bearer" and seen["mode"] == "autonomous"
        assert seen["jti"] == claims_of(warrant)["jti"]

        # Another agent (authenticated the same way) does not see it.
        other_id, other_key = authlib_agent(warrant_server, ["reports.read:reports/*"])
        with authlib_client(other_id, other_key) as other:
            assert other.introspect_token(meta["introspection_endpoint"], token=warrant).json() == {"active": False}
            # Nor may it revoke it.
            refused = other.revoke_token(meta["revocation_endpoint"], token=warrant)
            assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"

        # The holder revokes it (RFC 7009): the next decision denies, introspection says so.
        assert client.revoke_token(meta["revocation_endpoint"], token=warrant).status_code == 200
        assert client.introspect_token(meta["introspection_endpoint"], token=warrant).json() == {"active": False}
        # Revoking again, or revoking garbage, is answered 200 and changes nothing.
        assert client.revoke_token(meta["revocation_endpoint"], token=warrant).status_code == 200
        assert client.revoke_token(meta["revocation_endpoint"], token="not-a-warrant").status_code == 200

    decided = warrant_server.http.post(
        warrant_server.base + "/v1/authorize",
        json={"token": warrant, "action": "reports.read", "resource": "reports/q3"},
    ).json()
    assert decided["decision"] == "deny" and decided["code"] == "revoked"
    # An operator's introspection (admin token) agrees.
    seen = warrant_server.http.post(
        warrant_server.base + "/oauth2/introspect",
        data={"token": warrant},
        headers={"Authorization": f"Bearer {warrant_server.admin_token}"},
    )
    assert seen.status_code == 200 and seen.json() == {"active": False}


def test_introspection_needs_a_caller_and_a_token(warrant_server: Server) -> None:
    url = warrant_server.base + "/oauth2/introspect"
    anonymous = warrant_server.http.post(url, data={"token": "x"})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    wrong = warrant_server.http.post(url, data={"token": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    missing = warrant_server.http.post(url, data={}, headers={"Authorization": f"Bearer {warrant_server.admin_token}"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    # A PEP credential is good for introspection; garbage is merely inactive.
    pep = warrant_server.admin_ok("POST", "/v1/peps", {"name": f"rs-{uuid.uuid4().hex[:6]}"})
    seen = warrant_server.http.post(url, data={"token": "garbage"}, headers={"Authorization": f"Bearer {pep['token']}"})
    assert seen.status_code == 200 and seen.json() == {"active": False}


class Holder:
    """An agent with a DPoP key made by joserfc (P-256), and its proofs."""

    def __init__(self, server: Server, scope: list[str]) -> None:
        self.server = server
        owner = server.human(scope)
        self.agent = server.agent(owner, "autonomous", scope)
        self.dpop_key = ECKey.generate_key("P-256")

    def proof(self, method: str, url: str, token: str | None = None, key: ECKey | None = None, **extra: Any) -> str:
        return dpop_proof(key or self.dpop_key, method, url, token, **extra)

    def token_request(self, proof: str | None) -> httpx.Response:
        endpoint = self.server.issuer + "/oauth2/token"
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.agent.client_assertion(endpoint),
            "task_purpose": "dpop test",
        }
        headers = {"DPoP": proof} if proof is not None else {}
        return self.server.http.post(self.server.base + "/oauth2/token", data=form, headers=headers)

    def authorize(self, token: str, proof: str | None) -> dict[str, Any]:
        headers = {"DPoP": proof} if proof is not None else {}
        body = {"token": token, "action": "crm.read", "resource": "customers/42"}
        reply = self.server.http.post(self.server.base + "/v1/authorize", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        return reply.json()


def test_a_dpop_bound_warrant_is_used_only_with_fresh_proofs_of_its_key(warrant_server: Server) -> None:
    holder = Holder(warrant_server, ["crm.read:customers/*"])
    issuer = warrant_server.issuer
    token_url, authorize_url = issuer + "/oauth2/token", issuer + "/v1/authorize"

    issued = holder.token_request(holder.proof("POST", token_url))
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"
    warrant = issued.json()["access_token"]
    assert claims_of(warrant)["cnf"] == {"jkt": holder.dpop_key.thumbprint()}

    proof = holder.proof("POST", authorize_url, warrant)
    first = holder.authorize(warrant, proof)
    assert first["decision"] == "allow", first
    # The same proof again: a replay.
    replayed = holder.authorize(warrant, proof)
    assert (replayed["decision"], replayed["code"]) == ("deny", "dpop"), replayed
    assert "already used" in replayed["reasons"][0]
    # A proof for another URL, for another token, by another key, or none at all.
    for bad in [
        holder.proof("POST", issuer + "/v1/authorize/batch", warrant),
        holder.proof("GET", authorize_url, warrant),
        holder.proof("POST", authorize_url, "another.token.entirely"),
        holder.proof("POST", authorize_url, warrant, key=ECKey.generate_key("P-256")),
        holder.proof("POST", authorize_url, warrant, iat=int(time.time()) - 3600),
        "not.a.proof",
        None,
    ]:
        denied = holder.authorize(warrant, bad)
        assert (denied["decision"], denied["code"]) == ("deny", "dpop"), (bad, denied)
    # A fresh, right proof still works: the refusals changed nothing.
    assert holder.authorize(warrant, holder.proof("POST", authorize_url, warrant))["decision"] == "allow"

    # The holder introspects it with a proof; without one, it is not active for it.
    introspect_url = issuer + "/oauth2/introspect"

    def introspect(proof: str | None) -> dict[str, Any]:
        form = {
            "token": warrant,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": holder.agent.client_assertion(introspect_url),
        }
        headers = {"DPoP": proof} if proof is not None else {}
        return warrant_server.http.post(warrant_server.base + "/oauth2/introspect", data=form, headers=headers).json()

    seen = introspect(holder.proof("POST", introspect_url, warrant))
    assert seen["active"] is True and seen["token_type"] == "DPoP"
    assert seen["cnf"] == {"jkt": holder.dpop_key.thumbprint()}
    assert introspect(None) == {"active": False}
    assert introspect(holder.proof("POST", authorize_url, warrant)) == {"active": False}


def test_a_malformed_dpop_proof_at_the_token_endpoint_gets_the_standard_error_and_changes_nothing(
    warrant_server: Server,
) -> None:
    holder = Holder(warrant_server, ["crm.read:customers/*"])
    token_url = warrant_server.issuer + "/oauth2/token"
    issued = f"/v1/audit?kind=issuance&agent={holder.agent.agent_id}"
    before = warrant_server.admin_ok("GET", issued)
    for bad in [
        "not.a.proof",
        holder.proof("POST", warrant_server.issuer + "/v1/authorize"),
        holder.proof("GET", token_url),
        jwt.encode({"typ": "JWT", "alg": "ES256", "jwk": holder.dpop_key.as_dict(private=False)},
                   {"htm": "POST", "htu": token_url, "iat": int(time.time()), "jti": "x"}, holder.dpop_key),
    ]:
        refused = holder.token_request(bad)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_dpop_proof"
    after = warrant_server.admin_ok("GET", issued)
    assert len(after["records"]) == len(before["records"]), "a refused request issued nothing"
    # A proof used once is not good for a second warrant.
    proof = holder.proof("POST", token_url)
    assert holder.token_request(proof).status_code == 200
    again = holder.token_request(proof)
    assert again.status_code == 400 and again.json()["error"] == "invalid_dpop_proof"


def test_a_bound_warrant_is_delegated_only_by_its_holder_and_only_to_a_bound_child(warrant_server: Server) -> None:
    scope = ["crm.read:customers/*"]
    parent = Holder(warrant_server, scope)
    token_url = warrant_server.issuer + "/oauth2/token"
    warrant = parent.token_request(parent.proof("POST", token_url)).json()["access_token"]
    child_agent = warrant_server.agent(warrant_server.human(scope), "autonomous", scope)
    child_key = ECKey.generate_key("P-256")

    def exchange(proof: str | None, holder_proof: str | None) -> httpx.Response:
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": warrant,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "actor_token": child_agent.client_assertion(token_url),
            "actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
        }
        if holder_proof is not None:
            form["subject_dpop"] = holder_proof
        headers = {"DPoP": proof} if proof is not None else {}
        return warrant_server.http.post(warrant_server.base + "/oauth2/token", data=form, headers=headers)

    def holder(key: ECKey | None = None) -> str:
        """The parent holder's consent: its key, for the token endpoint and this subject token."""
        return parent.proof("POST", token_url, warrant, key=key)

    # A thief with the warrant but not its key: no holder proof, or one by another key.
    for name, refused in [
        ("no holder proof", exchange(parent.proof("POST", token_url, key=child_key), None)),
        ("a holder proof by another key", exchange(parent.proof("POST", token_url, key=child_key), holder(child_key))),
        ("an unbound child", exchange(None, holder())),
    ]:
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof", (name, refused.text)
    bound = exchange(parent.proof("POST", token_url, key=child_key), holder())
    assert bound.status_code == 200, bound.text
    child = bound.json()["access_token"]
    assert claims_of(child)["cnf"] == {"jkt": child_key.thumbprint()}
    authorize_url = warrant_server.issuer + "/v1/authorize"
    # The parent's key does not work for the child; the child's does.
    denied = parent.authorize(child, parent.proof("POST", authorize_url, child))
    assert denied["code"] == "dpop"
    assert parent.authorize(child, parent.proof("POST", authorize_url, child, key=child_key))["decision"] == "allow"
    # A bound root warrant cannot end its task as a bearer token (a thief could).
    task = claims_of(warrant)["task"]["id"]
    ended = warrant_server.http.post(
        warrant_server.base + f"/v1/tasks/{task}/complete", headers={"Authorization": f"Bearer {warrant}"}
    )
    assert ended.status_code == 403, ended.text
