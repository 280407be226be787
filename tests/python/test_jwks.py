"""Warrant's warrants, checked by an independent JWT implementation (PyJWT).

Starts the real `warrant` binary (`WARRANT_BIN`, default `target/debug/warrant` of this
repository) on a loopback port with a fresh data directory, registers a human and agents
over HTTP with keys made here, obtains warrants with client assertions signed by PyJWT,
and verifies them with PyJWT against the server's JWKS.

    python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt
    WARRANT_BIN=target/debug/warrant .venv/bin/pytest tests/python -q
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO = Path(__file__).resolve().parents[2]
WARRANT_BIN = Path(os.environ.get("WARRANT_BIN", REPO / "target" / "debug" / "warrant"))
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
STARTUP_TIMEOUT = 30
SHUTDOWN_TIMEOUT = 10

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    issuer: str
    admin: str
    http: requests.Session
    lines: list[str]

    def admin_post(self, path: str, body: dict | None = None) -> requests.Response:
        return self.http.post(
            self.base + path, json=body, headers={"Authorization": f"Bearer {self.admin}"}, timeout=10
        )

    def token(self, form: dict) -> requests.Response:
        return self.http.post(self.base + "/oauth2/token", data=form, timeout=10)

    def stop(self) -> int:
        """SIGTERM, then the exit code; fails when the server does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the server did not exit within {SHUTDOWN_TIMEOUT} s of SIGTERM")


def start_server(data: Path) -> Server:
    if not WARRANT_BIN.is_file():
        pytest.fail(f"no warrant binary at {WARRANT_BIN}: build it (cargo build -p warrant-cli) or set WARRANT_BIN")
    proc = subprocess.Popen(
        [str(WARRANT_BIN), "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    # Drain stdout on a thread so the server can never block on a full pipe.
    lines: list[str] = []
    found: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = LISTENING.search(line)
            if match:
                found.put(match.group(1))

    threading.Thread(target=drain, daemon=True).start()
    try:
        base = found.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        proc.kill()
        proc.wait()
        pytest.fail(f"the server printed no `listening on` line; exit {proc.returncode}, stdout {''.join(lines)!r}")
    admin = (data / "admin.token").read_text().strip()
    http = requests.Session()
    http.trust_env = False  # loopback only: never through a proxy from the environment
    metadata = http.get(base + "/.well-known/oauth-authorization-server", timeout=10).json()
    return Server(proc=proc, base=base, issuer=metadata["issuer"], admin=admin, http=http, lines=lines)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("warrant") / "data")
    yield srv
    assert srv.stop() == 0, "the server did not shut down cleanly"


@dataclass
class Agent:
    id: str
    key: Ed25519PrivateKey


def public_jwk(key: Ed25519PrivateKey) -> dict:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def make_human(srv: Server, entitlements: list[str]) -> str:
    n = uuid.uuid4().hex[:12]
    reply = srv.admin_post("/v1/humans", {"name": f"Py {n}", "email": f"py-{n}@example.com", "entitlements": entitlements})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def make_agent(srv: Server, owner: str, mode: str, max_scope: list[str]) -> Agent:
    key = Ed25519PrivateKey.generate()
    body = {"name": f"py agent {uuid.uuid4().hex[:8]}", "owner": owner, "mode": mode, "max_scope": max_scope,
            "public_key": public_jwk(key)}
    reply = srv.admin_post("/v1/agents", body)
    assert reply.status_code == 201, reply.text
    view = reply.json()
    assert view["public_key"]["x"] == body["public_key"]["x"]
    return Agent(id=view["id"], key=key)


def assertion(srv: Server, agent: Agent) -> str:
    """An RFC 7523 client assertion, signed by PyJWT."""
    now = int(time.time())
    claims = {
        "iss": agent.id,
        "sub": agent.id,
        "aud": srv.issuer + "/oauth2/token",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, agent.key, algorithm="EdDSA")


def client_credentials(srv: Server, agent: Agent, purpose: str, **extra: str) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(srv, agent),
        "task_purpose": purpose,
        **extra,
    }
    return srv.token(form)


def exchange(srv: Server, subject: str, subject_type: str, actor: Agent, **extra: str) -> requests.Response:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": subject_type,
        "actor_token": assertion(srv, actor),
        "actor_token_type": JWT_TYPE,
        **extra,
    }
    return srv.token(form)


def jwks(srv: Server) -> dict:
    reply = srv.http.get(srv.issuer + "/.well-known/jwks.json", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def verify(srv: Server, token: str) -> dict:
    """Verifies a warrant with PyJWT and the key the JWKS publishes under its `kid`."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "EdDSA"
    keys = {k["kid"]: k for k in jwks(srv)["keys"]}
    assert header["kid"] in keys, "the warrant's kid is not in the JWKS"
    key = jwt.PyJWK(keys[header["kid"]])
    return jwt.decode(
        token,
        key=key,
        algorithms=["EdDSA"],
        audience=srv.issuer,
        issuer=srv.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]},
    )


def warrant_of(reply: requests.Response) -> str:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer"
    return body["access_token"]


def test_jwks_shape(server: Server):
    doc = jwks(server)
    assert doc["keys"], "no signing key published"
    for key in doc["keys"]:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA" and key["use"] == "sig"
        assert "d" not in key
        assert len(unb64url(key["x"])) == 32
        jwt.PyJWK(key)  # PyJWT accepts it as an Ed25519 key
    meta = server.http.get(server.base + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["token_endpoint"] == server.issuer + "/oauth2/token"
    assert meta["jwks_uri"] == server.issuer + "/.well-known/jwks.json"


def test_autonomous_warrant_verifies_with_pyjwt(server: Server):
    owner = make_human(server, [])
    agent = make_agent(server, owner, "autonomous", ["reports.read", "crm.read:customers/*"])
    reply = client_credentials(server, agent, "nightly report")
    token = warrant_of(reply)
    assert reply.json()["expires_in"] == 300
    claims = verify(server, token)
    assert claims["sub"] == agent.id
    assert claims["client_id"] == agent.id
    assert set(claims["scope"].split()) == {"reports.read", "crm.read:customers/*"}
    assert claims["scope"] == reply.json()["scope"]
    assert claims["act"] == {"sub": agent.id}
    assert claims["mode"] == "autonomous"
    assert claims["owner"] == owner
    assert claims["task"]["purpose"] == "nightly report"
    assert claims["exp"] - claims["iat"] == 300
    assert "parent" not in claims


def test_pyjwt_refuses_a_tampered_warrant(server: Server):
    owner = make_human(server, [])
    agent = make_agent(server, owner, "autonomous", ["reports.read"])
    token = warrant_of(client_credentials(server, agent, "tamper"))
    verify(server, token)
    header, payload, signature = token.split(".")

    claims = json.loads(unb64url(payload))
    claims["scope"] = "*"
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(jwt.InvalidSignatureError):
        verify(server, tampered)

    flipped = bytearray(unb64url(signature))
    flipped[0] ^= 1
    with pytest.raises(jwt.InvalidSignatureError):
        verify(server, ".".join([header, payload, b64url(bytes(flipped))]))

    # Re-signed by a key outside the JWKS, under the issuer's kid.
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"typ": "at+jwt", "kid": jwt.get_unverified_header(token)["kid"]})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(server, forged)
    # ... and the server refuses all of them too.
    b = make_agent(server, owner, "autonomous", ["reports.read"])
    for bad in (tampered, forged):
        reply = exchange(server, bad, ACCESS_TOKEN, b)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant", reply.text


def test_autonomous_delegation_verifies_with_nested_act(server: Server):
    owner = make_human(server, [])
    a = make_agent(server, owner, "autonomous", ["reports.*"])
    b = make_agent(server, owner, "autonomous", ["reports.read"])
    parent = warrant_of(client_credentials(server, a, "delegate"))
    parent_claims = verify(server, parent)
    reply = exchange(server, parent, ACCESS_TOKEN, b)
    child = warrant_of(reply)
    assert reply.json()["issued_token_type"] == ACCESS_TOKEN
    claims = verify(server, child)
    assert claims["sub"] == a.id
    assert claims["client_id"] == b.id
    assert claims["act"] == {"sub": b.id, "act": {"sub": a.id}}
    assert claims["parent"] == parent_claims["jti"]
    assert claims["task"] == parent_claims["task"]
    assert claims["scope"] == "reports.read"
    assert claims["exp"] <= parent_claims["exp"]


def test_delegated_chain_verifies_with_nested_act(server: Server):
    human = make_human(server, ["crm.*"])
    a = make_agent(server, human, "delegated", ["crm.*"])
    b = make_agent(server, human, "delegated", ["crm.*"])
    c = make_agent(server, human, "delegated", ["crm.read"])
    reply = server.admin_post(f"/v1/humans/{human}/sessions")
    assert reply.status_code == 201, reply.text
    session = reply.json()["token"]

    root = warrant_of(exchange(server, session, ID_TOKEN, a, task_purpose="tidy the CRM", scope="crm.read crm.write"))
    mid = warrant_of(exchange(server, root, ACCESS_TOKEN, b))
    leaf = warrant_of(exchange(server, mid, ACCESS_TOKEN, c))
    root_claims, mid_claims, leaf_claims = (verify(server, t) for t in (root, mid, leaf))
    assert root_claims["sub"] == human and root_claims["mode"] == "delegated"
    assert set(root_claims["scope"].split()) == {"crm.read", "crm.write"}
    assert leaf_claims["sub"] == human
    assert leaf_claims["act"] == {"sub": c.id, "act": {"sub": b.id, "act": {"sub": a.id}}}
    assert leaf_claims["parent"] == mid_claims["jti"]
    assert mid_claims["parent"] == root_claims["jti"]
    assert leaf_claims["task"]["id"] == root_claims["task"]["id"]
    assert leaf_claims["scope"] == "crm.read"


def test_a_replayed_assertion_is_refused(server: Server):
    owner = make_human(server, [])
    agent = make_agent(server, owner, "autonomous", ["reports.read"])
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(server, agent),
        "task_purpose": "once",
    }
    assert server.token(form).status_code == 200
    again = server.token(form)
    assert again.status_code == 401, again.text
    assert again.json()["error"] == "invalid_client"


def test_sigterm_shuts_down_gracefully(tmp_path: Path):
    srv = start_server(tmp_path / "data")
    assert srv.http.get(srv.base + "/healthz", timeout=10).text == "ok"
    assert srv.stop() == 0
