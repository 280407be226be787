"""The Python agent SDK (sdk/python, `warrant_sdk`) against a real `warrant serve`.

Keys the CLI writes, client assertions checked by PyJWT, minting, delegation that only
narrows, escalation refused with the OAuth error, the warrant cache's renewal (with an
injected clock), decisions (allow, deny, pending and the approval round trip) and the
httpx.Auth, sync and async, against a small resource server that asks Warrant.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from harness import WARRANT_BIN, Server, free_port
from warrant_sdk import (
    AgentKey,
    ApiError,
    Decision,
    DpopKey,
    KeyFileError,
    OAuthError,
    TransportError,
    Warrant,
    WarrantAuth,
    WarrantCache,
    WarrantClient,
    httpx2_auth,
    peek_claims,
)


@pytest.fixture(scope="module")
def client(warrant_server: Server) -> Iterator[WarrantClient]:
    with WarrantClient(warrant_server.base, http=None) as c:
        yield c


def verify(srv: Server, token: str) -> dict:
    """Verifies a warrant with PyJWT against the server's JWKS."""
    keys = {k["kid"]: k for k in srv.http.get(srv.base + "/.well-known/jwks.json").json()["keys"]}
    key = jwt.PyJWK(keys[jwt.get_unverified_header(token)["kid"]])
    return jwt.decode(token, key=key, algorithms=["EdDSA"], audience=srv.issuer, issuer=srv.issuer)


# --- keys and assertions -------------------------------------------------------------


def test_key_files_written_by_the_cli_mint_a_warrant(warrant_server: Server, client: WarrantClient, tmp_path: Path):
    subprocess.run([str(WARRANT_BIN), "keygen", str(tmp_path / "bot")], check=True, capture_output=True)
    public = json.loads((tmp_path / "bot.pub.jwk").read_text())
    owner = warrant_server.human([])
    registered = warrant_server.agent(owner, "autonomous", ["reports.*", "crm.read:customers/*"], public_jwk=public)
    key = AgentKey.from_file(registered.agent_id, tmp_path / "bot.key.jwk")
    assert key.public_jwk()["x"] == public["x"]
    assert json.loads((tmp_path / "bot.key.jwk").read_text())["d"] not in repr(key)

    w = client.mint(key, "nightly report", scope=["reports.read"], ttl=120, budget={"estimated_cost": 5000})
    claims = verify(warrant_server, w.token)
    assert dict(w.claims) == claims
    assert w.id == claims["jti"] and w.id.startswith("wrt_")
    assert w.agent == key.agent_id == w.subject
    assert w.scope == ("reports.read",)
    assert w.expires_at - w.issued_at == 120
    assert w.task_id == claims["task"]["id"] and claims["task"]["purpose"] == "nightly report"
    assert claims["budget"] == {"estimated_cost": 5000}
    assert w.audience == (warrant_server.issuer,)
    assert w.token not in repr(w)
    assert {w, Warrant.from_token(w.token)} == {w}, "warrants are hashable values"


def test_client_assertion_verifies_with_pyjwt(client: WarrantClient):
    key = AgentKey("agt_example", AgentKey.new_private_key())
    first = key.client_assertion(client.token_endpoint)
    second = key.client_assertion(client.token_endpoint)
    assert jwt.get_unverified_header(first) == {"alg": "EdDSA", "typ": "JWT"}
    claims = jwt.decode(
        first,
        key=jwt.PyJWK({**key.public_jwk(), "alg": "EdDSA"}),
        algorithms=["EdDSA"],
        audience=client.token_endpoint,
    )
    assert claims["iss"] == claims["sub"] == "agt_example"
    assert claims["aud"] == client.token_endpoint == client.issuer + "/oauth2/token"
    assert claims["exp"] - claims["iat"] == 60
    assert peek_claims(key.client_assertion("aud", now=1_800_000_000))["exp"] == 1_800_000_060
    assert claims["jti"] != peek_claims(second)["jti"]


def test_unusable_key_files_are_refused_clearly(tmp_path: Path):
    with pytest.raises(KeyFileError, match="cannot read"):
        AgentKey.from_file("agt_x", tmp_path / "missing.key.jwk")
    (tmp_path / "junk.jwk").write_text("not json")
    with pytest.raises(KeyFileError, match="not a JSON JWK"):
        AgentKey.from_file("agt_x", tmp_path / "junk.jwk")
    private = AgentKey.new_private_key()
    (tmp_path / "pub.jwk").write_text(json.dumps(AgentKey.public_jwk_of(private)))
    with pytest.raises(KeyFileError, match="no private key"):
        AgentKey.from_file("agt_x", tmp_path / "pub.jwk")
    other = AgentKey.public_jwk_of(AgentKey.new_private_key())["x"]
    with pytest.raises(KeyFileError, match="does not match"):
        AgentKey.from_jwk("agt_x", {**AgentKey.private_jwk_of(private), "x": other})
    with pytest.raises(KeyFileError, match="not an Ed25519 JWK"):
        AgentKey.from_jwk("agt_x", {"kty": "EC", "crv": "P-256", "d": "AA"})
    assert AgentKey.from_jwk("agt_x", AgentKey.private_jwk_of(private)).public_jwk() == AgentKey.public_jwk_of(private)


def test_a_key_the_server_does_not_know_is_invalid_client(warrant_server: Server, client: WarrantClient):
    owner = warrant_server.human([])
    registered = warrant_server.agent(owner, "autonomous", ["reports.read"])
    impostor = AgentKey(registered.agent_id, AgentKey.new_private_key())
    with pytest.raises(OAuthError) as refused:
        client.mint(impostor, "impostor")
    assert refused.value.status == 401 and refused.value.error == "invalid_client"


# --- delegation ----------------------------------------------------------------------


def test_exchange_narrows_and_records_the_chain(warrant_server: Server, client: WarrantClient):
    alice = warrant_server.human(["crm.*", "tickets.*"])
    assistant = warrant_server.agent(alice, "delegated", ["crm.*", "tickets.*"])
    researcher = warrant_server.agent(alice, "delegated", ["crm.read:customers/**"])
    root = client.exchange(assistant, warrant_server.session(alice), purpose="answer ticket 4711", ttl=300)
    assert root.subject == alice and root.agent == assistant.agent_id
    assert root.claims["mode"] == "delegated" and root.claims["task"]["purpose"] == "answer ticket 4711"

    child = client.exchange(researcher, root, scope="crm.read:customers/42", ttl=120, budget={"rows": 10})
    claims = verify(warrant_server, child.token)
    assert child.scope == ("crm.read:customers/42",)
    assert claims["act"] == {"sub": researcher.agent_id, "act": {"sub": assistant.agent_id}}
    assert claims["parent"] == root.id and child.task_id == root.task_id
    assert child.expires_at <= root.expires_at and child.expires_at - child.issued_at <= 120
    assert claims["budget"] == {"rows": 10}


def test_escalation_is_refused_with_the_oauth_error(warrant_server: Server, client: WarrantClient):
    alice = warrant_server.human(["crm.*"])
    assistant = warrant_server.agent(alice, "delegated", ["crm.*"])
    researcher = warrant_server.agent(alice, "delegated", ["crm.*", "billing.*"])
    root = client.exchange(assistant, warrant_server.session(alice), purpose="escalate", scope="crm.read")
    with pytest.raises(OAuthError) as refused:
        client.exchange(researcher, root, scope="billing.refund")
    assert refused.value.status == 400
    assert refused.value.error == "invalid_scope"
    assert refused.value.error_description and "billing.refund" in refused.value.error_description
    assert "invalid_scope" in str(refused.value)


# --- the cache -----------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cache_renews_before_expiry_with_a_real_server(warrant_server: Server, client: WarrantClient):
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["reports.read"])
    clock = Clock(0)
    cache = client.minting(key, "keep fresh", ttl=120, margin=30, clock=clock)
    assert cache.peek() is None
    first = cache.get()
    clock.now = first.issued_at
    assert cache.get() is first
    clock.now = first.expires_at - 30.5
    assert cache.get() is first, "renewed before the margin"
    clock.now = first.expires_at - 30
    second = cache.get()
    assert second.id != first.id and second.expires_at - second.issued_at == 120
    assert cache.peek() is second
    clock.now = second.issued_at
    assert cache.get() is second


def fake_warrant(n: int, issued: int, lifetime: int) -> Warrant:
    """A warrant-shaped token for the cache's own logic (its signature is never checked)."""
    body = {"jti": f"wrt_{n}", "iat": issued, "exp": issued + lifetime, "scope": "a.b"}
    payload = jwt.utils.base64url_encode(json.dumps(body).encode()).decode()
    return Warrant.from_token(f"e30.{payload}.sig")


def test_cache_halves_the_margin_for_a_short_warrant():
    clock, made = Clock(1000), []

    def renew() -> Warrant:
        made.append(fake_warrant(len(made), int(clock.now), 40))
        return made[-1]

    cache = WarrantCache(renew, margin=30, clock=clock)
    first = cache.get()
    clock.now = 1019
    assert cache.get() is first
    clock.now = 1020  # half of 40 s: the margin is capped at half the lifetime
    assert cache.get() is not first and len(made) == 2


def test_cache_renews_once_for_concurrent_callers_and_retries_after_a_failure():
    clock, calls = Clock(1000), []
    gate = threading.Event()
    fail = [True]

    def renew() -> Warrant:
        calls.append(1)
        gate.wait()
        if fail[0]:
            fail[0] = False
            raise OAuthError(400, "invalid_grant", "parent revoked")
        return fake_warrant(len(calls), int(clock.now), 300)

    cache = WarrantCache(renew, margin=30, clock=clock)
    with pytest.raises(OAuthError):
        gate.set()
        cache.get()
    assert cache.peek() is None
    gate.clear()
    results: list[Warrant] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 2, "one failed renewal, then one renewal shared by eight callers"
    assert len(results) == 8 and all(r is results[0] for r in results)
    cache.invalidate(fake_warrant(99, 1000, 300))  # not the cached one: kept
    assert cache.peek() is results[0]
    cache.invalidate(results[0])
    assert cache.peek() is None


def test_cache_aget_renews_in_a_worker_thread():
    clock, made = Clock(1000), []
    loop_thread: list[int] = []

    def renew() -> Warrant:
        made.append(threading.get_ident())
        return fake_warrant(len(made), int(clock.now), 300)

    async def run() -> tuple[Warrant, Warrant]:
        loop_thread.append(threading.get_ident())
        return await cache.aget(), await cache.aget()

    cache = WarrantCache(renew, margin=30, clock=clock)
    a, b = asyncio.run(run())
    assert a is b and len(made) == 1
    assert made[0] != loop_thread[0], "the renewal ran on the event loop's thread"


# --- decisions -----------------------------------------------------------------------


def test_authorize_allow_deny_and_revoked(warrant_server: Server, client: WarrantClient):
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["crm.read:customers/*"])
    w = client.mint(key, "decide")
    allowed = client.authorize(w, "crm.read", "customers/42")
    assert allowed.allowed and allowed.decision == "allow" and allowed.code == "allow"
    assert allowed.decision_id.startswith("dec_") and not allowed.pending
    denied = client.authorize(w.token, "crm.write", "customers/42")
    assert denied.decision == "deny" and denied.code == "scope" and not denied.allowed and denied.reasons
    expensive = client.authorize(w, "crm.read", "customers/42", context={"estimated_cost": 25000})
    assert expensive.decision == "deny" and expensive.code == "policy" and "cost-ceiling" in expensive.policies
    warrant_server.revoke("warrant", w.id)
    assert client.authorize(w, "crm.read", "customers/42").code == "revoked"
    assert client.authorize("not a token", "crm.read", "customers/42").code == "invalid_token"


def test_dpop_bound_warrants_with_the_sdk(warrant_server: Server, client: WarrantClient):
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["crm.read:customers/*"])
    mine = DpopKey()
    w = client.mint(key, "bound", dpop=mine)
    assert w.bound_to == mine.thumbprint()
    assert client.authorize(w, "crm.read", "customers/1", dpop=mine).allowed
    # Without the key, or with another, the warrant is useless.
    assert client.authorize(w, "crm.read", "customers/1").code == "dpop"
    assert client.authorize(w, "crm.read", "customers/1", dpop=DpopKey()).code == "dpop"
    # Delegated with the holder's consent to a child bound to its own key.
    child_agent = warrant_server.agent(owner, "autonomous", ["crm.read:customers/*"])
    childs = DpopKey()
    with pytest.raises(OAuthError) as refused:
        client.exchange(child_agent, w, dpop=childs)
    assert refused.value.error == "invalid_dpop_proof"
    child = client.exchange(child_agent, w, dpop=childs, holder_proof=client.holder_proof(w, mine))
    assert child.bound_to == childs.thumbprint()
    assert client.authorize(child, "crm.read", "customers/2", dpop=childs).allowed


def test_authorize_bad_request_raises_api_error(client: WarrantClient):
    with pytest.raises(ApiError) as bad:
        client.authorize("x", "crm.read", "customers/42", context={"blob": "x" * 70_000})
    assert bad.value.status == 413 and bad.value.error == "payload_too_large"


APPROVAL_POLICY = """
@id("sdk-test-refunds-need-the-owner")
@approval("owner")
forbid (principal, action == Warrant::Action::"billing.refund", resource);
"""


def test_pending_then_approved_retry_is_allowed_once(warrant_server: Server, client: WarrantClient):
    warrant_server.add_policy("sdk-test-approval", APPROVAL_POLICY)
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["billing.refund:orders/*"])
    w = client.mint(key, "refund order 7")
    pending = client.authorize(w, "billing.refund", "orders/7", context={"amount": 100})
    assert pending.pending and pending.code == "approval_required" and pending.approval_id
    assert pending.approval_id.startswith("apr_")
    warrant_server.approve(pending.approval_id)
    retry = client.authorize(w, "billing.refund", "orders/7", context={"amount": 100}, approval_id=pending.approval_id)
    assert retry.allowed and retry.approval_id == pending.approval_id
    again = client.authorize(w, "billing.refund", "orders/7", context={"amount": 100}, approval_id=pending.approval_id)
    assert again.decision == "deny" and again.code == "approval"


# --- httpx.Auth ----------------------------------------------------------------------


@dataclass
class ToolServer:
    """A resource server that asks Warrant about every request's bearer warrant: 200 on
    allow, 401 for a warrant that is invalid or revoked, 403 otherwise."""

    url: str
    seen: list[str]


@pytest.fixture
def tool_server(warrant_server: Server) -> Iterator[ToolServer]:
    seen: list[str] = []
    pdp = WarrantClient(warrant_server.base)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            header = self.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            seen.append(token)
            decision = pdp.authorize(token, "reports.read", self.path.lstrip("/"))
            status = 200 if decision.allowed else 401 if decision.code in ("invalid_token", "revoked") else 403
            body = json.dumps({"decision": decision.decision, "code": decision.code}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield ToolServer(url=f"http://127.0.0.1:{httpd.server_address[1]}", seen=seen)
    httpd.shutdown()
    httpd.server_close()
    thread.join()
    pdp.close()


def test_httpx_auth_presents_and_renews_the_warrant(
    warrant_server: Server, client: WarrantClient, tool_server: ToolServer
):
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["reports.read:reports/*"])
    cache = client.minting(key, "read reports")
    with httpx.Client(auth=WarrantAuth(cache), trust_env=False) as http:
        assert http.get(tool_server.url + "/reports/q3").status_code == 200
        first = cache.peek()
        assert first is not None and tool_server.seen == [first.token]
        assert http.get(tool_server.url + "/reports/q3").status_code == 200 and cache.peek() is first

        # Revoked: the tool server answers 401, the auth drops the warrant, mints a new
        # one and sends the request once more.
        warrant_server.revoke("warrant", first.id)
        assert http.get(tool_server.url + "/reports/q4").status_code == 200
        second = cache.peek()
        assert second is not None and second.id != first.id
        assert tool_server.seen[-2:] == [first.token, second.token]

    # A fixed warrant is never replaced: the 401 is the answer.
    with httpx.Client(auth=WarrantAuth(first), trust_env=False) as http:
        assert http.get(tool_server.url + "/reports/q4").status_code == 401
    assert tool_server.seen[-1] == first.token

    # Out of scope is not an authentication problem: 403, no renewal.
    count = len(tool_server.seen)
    with httpx.Client(auth=WarrantAuth(cache), trust_env=False) as http:
        reply = http.get(tool_server.url + "/secrets/keys")
    assert reply.status_code == 403 and len(tool_server.seen) == count + 1 and cache.peek() is second


def test_httpx_auth_async(warrant_server: Server, client: WarrantClient, tool_server: ToolServer):
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["reports.read:reports/*"])
    cache = client.minting(key, "read reports async")

    async def run() -> list[int]:
        async with httpx.AsyncClient(auth=WarrantAuth(cache), trust_env=False) as http:
            replies = await asyncio.gather(*(http.get(f"{tool_server.url}/reports/r{i}") for i in range(3)))
        return [r.status_code for r in replies]

    assert asyncio.run(run()) == [200, 200, 200]
    current = cache.peek()
    assert current is not None and tool_server.seen == [current.token] * 3


def test_httpx2_auth_for_mcp_2(warrant_server: Server, client: WarrantClient, tool_server: ToolServer):
    """`mcp` 2.x speaks HTTP through `httpx2`: the same flows, as an `httpx2.Auth`."""
    import httpx2

    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", ["reports.read:reports/*"])
    cache = client.minting(key, "read reports with httpx2")
    auth = httpx2_auth(cache)
    assert isinstance(auth, httpx2.Auth)
    with httpx2.Client(auth=auth, trust_env=False) as http:
        assert http.get(tool_server.url + "/reports/a").status_code == 200
        first = cache.peek()
        assert first is not None
        warrant_server.revoke("warrant", first.id)
        assert http.get(tool_server.url + "/reports/b").status_code == 200
    second = cache.peek()
    assert second is not None and second.id != first.id
    assert tool_server.seen == [first.token, first.token, second.token]

    async def run() -> int:
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            return (await http.get(tool_server.url + "/reports/c")).status_code

    assert asyncio.run(run()) == 200 and tool_server.seen[-1] == second.token


def test_an_unreachable_server_or_a_malformed_answer_is_a_transport_error():
    key = AgentKey("agt_x", AgentKey.new_private_key())
    with WarrantClient(f"http://127.0.0.1:{free_port()}") as nobody:
        with pytest.raises(TransportError, match="cannot reach"):
            nobody.mint(key, "nobody listens")
        with pytest.raises(TransportError, match="cannot reach"):
            nobody.authorize("token", "a.b", "c/d")
    for body in (
        [],
        {"decision": "maybe", "decision_id": "dec_1", "code": "x"},
        {"decision": "allow"},
        {"decision": "allow", "decision_id": "dec_1", "code": "allow", "reasons": "no list"},
    ):
        with pytest.raises(TransportError):
            Decision.from_json(body)
    with pytest.raises(ValueError):
        Warrant.from_token("not.a-jwt")
