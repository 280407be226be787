"""Humans from a real OpenID provider: oidc-provider (tests/oidc) on loopback, a user
signed in through authorization code + PKCE, and the ID token exchanged at Warrant's
token endpoint for a delegated warrant. The user's groups at the provider decide what
the warrant may carry, at every exchange; tokens the provider did not sign for Warrant
are refused and change nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from harness import Server, start_server
from oidc import Provider, login, start_provider
from warrant_sdk import TOKEN_TYPE_ID_TOKEN, AgentKey, OAuthError, WarrantClient

CLIENT_ID = "warrant-test"
ALICE = {
    "alice": {
        "password": "correct horse",
        "name": "Alice Example",
        "email": "alice@example.com",
        "groups": ["admins"],
    }
}
GROUPS = {"support": ["tickets.*"], "admins": ["tickets.*", "payments.*"]}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    p = start_provider(tmp_path_factory.mktemp("oidc"), ALICE, client_id=CLIENT_ID)
    yield p
    assert p.stop() == 0, "the provider did not shut down cleanly"


@pytest.fixture(scope="module")
def server(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("warrant") / "data"
    data.mkdir(parents=True)
    groups = "\n".join(f"{g} = {json.dumps(perms)}" for g, perms in GROUPS.items())
    (data / "warrant.toml").write_text(
        f'[[federation.oidc]]\nissuer = "{provider.issuer}"\naudience = "{CLIENT_ID}"\n'
        f"[federation.oidc.groups]\n{groups}\n"
    )
    srv = start_server(data)
    yield srv
    assert srv.stop() == 0, "the server did not shut down cleanly"


@pytest.fixture(scope="module")
def assistant(server: Server) -> AgentKey:
    """A delegated agent owned by an administrator-registered human."""
    owner = server.human(["tickets.*", "payments.*"])
    return server.agent(owner, "delegated", ["tickets.*", "payments.*"])


@pytest.fixture()
def client(server: Server) -> Iterator[WarrantClient]:
    with WarrantClient(server.base) as c:
        yield c


def humans(server: Server) -> list[dict[str, Any]]:
    return list(server.admin_ok("GET", "/v1/humans")["humans"])


def exchange(client: WarrantClient, key: AgentKey, id_token: str, scope: str | None = None):  # noqa: ANN201
    return client.exchange(key, id_token, subject_token_type=TOKEN_TYPE_ID_TOKEN, purpose="federated", scope=scope)


def test_a_signed_in_user_gets_a_delegated_warrant_and_their_groups_decide_its_scope(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    provider.set_accounts(ALICE)
    id_token = login(provider, "alice", "correct horse")
    root = exchange(client, assistant, id_token, scope="tickets.* payments.refund")
    assert root.claims["mode"] == "delegated"
    assert set(root.scope) == {"tickets.*", "payments.refund"}

    # The human was created just in time, named by the provider and the subject.
    alice = [h for h in humans(server) if h.get("identity", {}).get("subject") == "alice"]
    assert len(alice) == 1, humans(server)
    assert alice[0]["identity"] == {"issuer": provider.issuer, "subject": "alice"}
    assert alice[0]["email"] == "alice@example.com" and alice[0]["name"] == "Alice Example"
    assert sorted(alice[0]["entitlements"]) == ["payments.*", "tickets.*"]
    assert root.subject == alice[0]["id"]

    # The issuance's audit record names the provider and the subject.
    records = server.admin_ok("GET", f"/v1/audit?warrant={root.id}")["records"]
    issuance = [r for r in records if r["kind"] == "issuance"]
    assert issuance and issuance[0]["details"]["identity"] == {"issuer": provider.issuer, "subject": "alice"}

    # Alice leaves the admins group at the provider: the next warrant is narrower.
    provider.set_accounts({"alice": {**ALICE["alice"], "groups": ["support"]}})
    narrower = login(provider, "alice", "correct horse")
    with pytest.raises(OAuthError) as refused:
        exchange(client, assistant, narrower, scope="payments.refund")
    assert refused.value.error == "invalid_scope"
    ticket = exchange(client, assistant, narrower, scope="tickets.read")
    assert ticket.scope == ("tickets.read",) and ticket.subject == root.subject
    now = [h for h in humans(server) if h["id"] == root.subject][0]
    assert now["entitlements"] == ["tickets.*"]
    # The change itself is on the record, with the groups that caused it.
    changes = server.admin_ok("GET", "/v1/audit?kind=registry")["records"]
    change = [
        {k: sorted(v) for k, v in r["details"]["change"].items()}
        for r in changes
        if r["details"].get("op") == "human.entitlements" and r["human"] == root.subject
    ]
    assert {"from": ["payments.*", "tickets.*"], "to": ["tickets.*"], "groups": ["support"]} in change, change
    # Signing in again is the same human, not a second one.
    assert len([h for h in humans(server) if h.get("identity")]) == 1


def forged(provider: Provider, claims: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
    """An ID token signed by `key` (default: the provider's own RS256 key)."""
    if key is None:
        jwk = next(k for k in provider.signing_keys() if k["alg"] == "RS256")
        key = RSAKey.import_key(jwk)
        kid = jwk["kid"]
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    return jwt.encode({"alg": alg, "kid": kid or "k"}, claims, key)


def test_tokens_not_from_the_provider_for_warrant_are_invalid_grant_and_create_nobody(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    now = int(time.time())
    subject = f"mallory-{uuid.uuid4().hex[:6]}"
    good = {
        "iss": provider.issuer,
        "sub": subject,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "email": f"{subject}@example.com",
        "email_verified": True,
        "groups": ["admins"],
    }
    # The provider's own key signs a well-formed token: accepted (so the cases below fail
    # for the one reason each names).
    control = forged(provider, {**good, "sub": subject + "-ok", "email": f"{subject}-ok@example.com"})
    assert exchange(client, assistant, control, scope="tickets.read").scope == ("tickets.read",)

    before = humans(server)
    other_key = RSAKey.generate_key(2048)
    rs256_kid = next(k["kid"] for k in provider.signing_keys() if k["alg"] == "RS256")
    cases = {
        "not a trusted identity provider": forged(provider, {**good, "iss": "http://127.0.0.1:9"}, other_key, "x"),
        "not for audience": forged(provider, {**good, "aud": "someone-else"}),
        "has expired": forged(provider, {**good, "iat": now - 7200, "exp": now - 3600}),
        # Signed by a key the provider does not publish (rotated out, or never its own).
        "key the provider does not publish": forged(provider, good, other_key, "rotated-out"),
        "signature is invalid": forged(provider, good, other_key, rs256_kid),
        "does not publish": forged(provider, good, ECKey.generate_key("P-256"), "ec"),
        "malformed": "not-a-token",
    }
    for why, token in cases.items():
        with pytest.raises(OAuthError) as refused:
            exchange(client, assistant, token, scope="tickets.read")
        assert refused.value.status == 400, why
        assert refused.value.error == "invalid_grant", (why, refused.value)
        assert why in (refused.value.error_description or ""), (why, refused.value)
    assert humans(server) == before, "a refused sign-in created or changed a human"


def test_a_token_without_email_creates_nobody_and_says_why(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    now = int(time.time())
    token = forged(provider, {"iss": provider.issuer, "sub": "no-mail", "aud": CLIENT_ID, "iat": now, "exp": now + 60})
    before = humans(server)
    with pytest.raises(OAuthError) as refused:
        exchange(client, assistant, token, scope="tickets.read")
    assert refused.value.error == "invalid_grant"
    assert "email" in (refused.value.error_description or "")
    assert humans(server) == before


def test_an_unverified_email_registers_nobody(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "unverified", "aud": CLIENT_ID, "iat": now, "exp": now + 60,
              "email": "ceo@example.com"}
    before = humans(server)
    for verified in ({}, {"email_verified": False}):
        with pytest.raises(OAuthError) as refused:
            exchange(client, assistant, forged(provider, {**claims, **verified}), scope="tickets.read")
        assert refused.value.error == "invalid_grant"
        assert "not verified" in (refused.value.error_description or ""), refused.value
    assert humans(server) == before


def test_an_email_of_an_administrator_registered_human_is_not_taken_over(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    taken = server.admin_ok(
        "POST", "/v1/humans", {"name": "Bob", "email": "bob@example.com", "entitlements": ["tickets.*"]}
    )
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "bob", "aud": CLIENT_ID, "iat": now, "exp": now + 60}
    token = forged(provider, {**claims, "email": "bob@example.com", "email_verified": True, "groups": ["admins"]})
    with pytest.raises(OAuthError) as refused:
        exchange(client, assistant, token, scope="tickets.read")
    assert refused.value.error == "invalid_grant"
    assert "already exists" in (refused.value.error_description or ""), refused.value
    bob = [h for h in humans(server) if h["id"] == taken["id"]][0]
    assert "identity" not in bob and bob["entitlements"] == ["tickets.*"]
    assert not [h for h in humans(server) if h.get("identity", {}).get("subject") == "bob"]



def test_concurrent_first_sign_ins_register_the_person_once(
    server: Server, provider: Provider, assistant: AgentKey
):
    now = int(time.time())
    subject = f"carol-{uuid.uuid4().hex[:6]}"
    token = forged(
        provider,
        {"iss": provider.issuer, "sub": subject, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
         "email": f"{subject}@example.com", "email_verified": True, "groups": ["support"]},
    )

    def one(_: int) -> str:
        with WarrantClient(server.base) as c:
            return exchange(c, assistant, token, scope="tickets.read").subject

    with ThreadPoolExecutor(max_workers=8) as pool:
        subjects = set(pool.map(one, range(16)))
    assert len(subjects) == 1, subjects
    mine = [h for h in humans(server) if h.get("identity", {}).get("subject") == subject]
    assert [h["id"] for h in mine] == list(subjects)
    added = server.admin_ok("GET", f"/v1/audit?kind=registry&human={mine[0]['id']}")["records"]
    assert [r["details"]["op"] for r in added] == ["human.add"], added


# --- Shared Signals: the provider pushes security events (RFC 8935) ------------------------

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


def security_event(provider: Provider, event: str, subject: str, key: Any = None, kid: str | None = None,
                   aud: str = CLIENT_ID, typ: str = "secevent+jwt", iss: str | None = None,
                   iat: int | None = None, more: dict[str, Any] | None = None) -> str:
    """A SET signed by `key` (default: the provider's own key), as a transmitter makes it."""
    if key is None:
        jwk = next(k for k in provider.signing_keys() if k["alg"] == "RS256")
        key, kid = RSAKey.import_key(jwk), jwk["kid"]
    issuer = iss or provider.issuer
    claims = {
        "iss": issuer,
        "aud": aud,
        "iat": iat or int(time.time()),
        "jti": uuid.uuid4().hex,
        "sub_id": {"format": "iss_sub", "iss": issuer, "sub": subject},
        "events": {event: {"event_timestamp": int(time.time())}, **(more or {})},
    }
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    return jwt.encode({"alg": alg, "kid": kid or "k", "typ": typ}, claims, key)


def push(server: Server, set_token: str, media: str = "application/secevent+jwt"):  # noqa: ANN201
    return server.http.post(server.base + "/ssf/receiver", content=set_token, headers={"content-type": media})


def test_security_events_disable_and_revoke_and_bad_ones_change_nothing(
    server: Server, provider: Provider, assistant: AgentKey, client: WarrantClient
):
    provider.set_accounts(ALICE)
    warrant = exchange(client, assistant, login(provider, "alice", "correct horse"), scope="tickets.read")
    assert client.authorize(warrant, "tickets.read", "tickets/1").decision == "allow"
    alice = warrant.subject

    # Refused, and nothing changes: the warrant still decides allow afterwards.
    other = RSAKey.generate_key(2048)
    bad = {
        "invalid_key": security_event(provider, RISC + "account-disabled", "alice", other, "rotated-out"),
        "invalid_audience": security_event(provider, RISC + "account-disabled", "alice", aud="someone-else"),
        "invalid_issuer": security_event(
            provider, RISC + "account-disabled", "alice", other, "x", iss="http://127.0.0.1:9"
        ),
        "invalid_request": security_event(provider, RISC + "account-disabled", "alice", typ="JWT"),
    }
    for err, token in bad.items():
        reply = push(server, token)
        assert reply.status_code == 400, (err, reply.text)
        assert reply.json()["err"] == err, reply.text
    reply = push(server, security_event(provider, RISC + "account-disabled", "alice"), media="application/jwt")
    assert reply.status_code == 400 and reply.json()["err"] == "invalid_request"
    # Too old to act on; one event about another provider's user refuses the whole SET.
    stale = security_event(provider, RISC + "account-disabled", "alice", iat=int(time.time()) - 3600)
    assert push(server, stale).json()["err"] == "invalid_request"
    foreign_subject = {"subject": {"format": "iss_sub", "iss": "https://elsewhere.example", "sub": "x"}}
    mixed = security_event(provider, RISC + "account-disabled", "alice", more={CAEP + "credential-change": foreign_subject})
    reply = push(server, mixed)
    assert reply.status_code == 400 and reply.json()["err"] == "invalid_request", reply.text
    # An event type Warrant does not act on: accepted, nothing changes.
    other_type = security_event(provider, CAEP + "device-compliance-change", "alice")
    assert push(server, other_type).status_code == 202
    # Someone Warrant does not know: accepted, nothing changes.
    assert push(server, security_event(provider, RISC + "account-disabled", "nobody")).status_code == 202
    assert client.authorize(warrant, "tickets.read", "tickets/1").decision == "allow"

    # account-disabled: the human is disabled, and their live warrant is denied at once.
    disabled = security_event(provider, RISC + "account-disabled", "alice")
    assert push(server, disabled).status_code == 202
    denied = client.authorize(warrant, "tickets.read", "tickets/1")
    assert denied.decision == "deny" and denied.code == "human", denied
    assert [h for h in humans(server) if h["id"] == alice][0]["status"] == "disabled"
    with pytest.raises(OAuthError) as refused:
        exchange(client, assistant, login(provider, "alice", "correct horse"), scope="tickets.read")
    assert refused.value.error == "invalid_grant" and "disabled" in (refused.value.error_description or "")
    # The same SET delivered again (a transmitter's retry, or a replay) is not acted on twice.
    assert push(server, disabled).status_code == 202

    # An administrator enables her again: the same warrant is allowed again.
    enabled = server.admin_ok("POST", f"/v1/humans/{alice}/enable")
    assert enabled["status"] == "active"
    assert client.authorize(warrant, "tickets.read", "tickets/1").decision == "allow"
    # Replaying the old SET does not disable her again.
    assert push(server, disabled).status_code == 202
    assert client.authorize(warrant, "tickets.read", "tickets/1").decision == "allow"

    # session-revoked: every live warrant of hers ends; signing in again still works.
    assert push(server, security_event(provider, CAEP + "session-revoked", "alice")).status_code == 202
    revoked = client.authorize(warrant, "tickets.read", "tickets/1")
    assert revoked.decision == "deny" and revoked.code == "revoked", revoked
    fresh = exchange(client, assistant, login(provider, "alice", "correct horse"), scope="tickets.read")
    assert client.authorize(fresh, "tickets.read", "tickets/1").decision == "allow"
    ops = [r["details"]["op"] for r in server.admin_ok("GET", f"/v1/audit?kind=registry&human={alice}")["records"]]
    assert "human.disable" in ops and "human.enable" in ops, ops
