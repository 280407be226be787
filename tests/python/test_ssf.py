"""The Shared Signals transmitter, from a subscriber's side: a receiver authenticated with
a PEP credential creates a stream, a revocation cascade is announced as one signed CAEP
`session-revoked` SET per revoked warrant, in order, and the subscriber verifies every
SET with an independent library (joserfc) against the transmitter's JWKS. Polled
(RFC 8936: acknowledged SETs are not sent again, unacknowledged ones are) and pushed
(RFC 8935, to a receiver on loopback)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from harness import LoopbackServer, QuietHandler, Server, start_server
from warrant_sdk import AgentKey, Warrant, WarrantClient

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
PUSH, POLL = "urn:ietf:rfc:8935", "urn:ietf:rfc:8936"
SCOPE = ["tickets.*"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("ssf") / "data"
    data.mkdir()
    # The push receiver of these tests listens on loopback, over http.
    (data / "warrant.toml").write_text("[ssf]\ndanger_allow_private_push = true\n")
    srv = start_server(data)
    yield srv
    assert srv.stop() == 0, "the server did not shut down cleanly"


class Receiver:
    """A subscriber: a PEP credential, and the transmitter's metadata and keys."""

    def __init__(self, server: Server) -> None:
        self.server = server
        pep = server.admin_ok("POST", "/v1/peps", {"name": f"cache-{uuid.uuid4().hex[:6]}"})
        self.headers = {"Authorization": f"Bearer {pep['token']}"}
        self.meta = server.http.get(server.base + "/.well-known/ssf-configuration").json()
        self.keys = KeySet.import_key_set(server.http.get(self.meta["jwks_uri"]).json())

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.server.http.request(method, url, headers=self.headers, **kwargs)

    def create(self, delivery: dict[str, Any]) -> dict[str, Any]:
        body = {"delivery": delivery, "events_requested": [SESSION_REVOKED], "description": "warrant cache"}
        reply = self.call("POST", self.meta["configuration_endpoint"], json=body)
        assert reply.status_code == 201, reply.text
        return reply.json()

    def verify(self, token: str, stream: dict[str, Any]) -> dict[str, Any]:
        """The SET's claims, after joserfc checked its signature, type, issuer and audience."""
        decoded = jwt.decode(token, self.keys, algorithms=["EdDSA"])
        assert decoded.header["typ"] == "secevent+jwt"
        claims = decoded.claims
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.meta["issuer"]},
                              aud={"essential": True, "value": stream["aud"]}).validate(claims)
        return claims


def cascade(server: Server) -> tuple[list[Warrant], Warrant]:
    """A root warrant with a child and a grandchild, and an unrelated warrant."""
    owner = server.human(SCOPE)
    agents = [server.agent(owner, "autonomous", SCOPE) for _ in range(3)]
    with WarrantClient(server.base) as client:
        root = client.mint(agents[0], "cascade")
        child = client.exchange(agents[1], root)
        grandchild = client.exchange(agents[2], child)
        other = client.mint(agents[0], "unrelated")
    return [root, child, grandchild], other


def revoked_jtis(receiver: Receiver, stream: dict[str, Any], sets: dict[str, str]) -> list[str]:
    """The warrants the SETs announce, in the order of their sequence numbers, each SET
    verified by joserfc."""
    out = []
    for set_id in sorted(sets, key=lambda j: int(j.rsplit(".", 1)[1])):
        claims = receiver.verify(sets[set_id], stream)
        assert claims["jti"] == set_id
        event = claims["events"][SESSION_REVOKED]
        assert event["event_timestamp"] > 0 and event["reason_admin"]["en"]
        session = claims["sub_id"]["session"]
        assert session["format"] == "jwt_id" and session["iss"] == receiver.meta["issuer"]
        assert claims["sub_id"]["application"]["id"].startswith("agt_")
        assert claims["txn"].startswith("rev_"), claims
        out.append(session["jti"])
    return out


def test_a_polled_stream_receives_every_revoked_jti_of_a_cascade_at_least_once(server: Server) -> None:
    receiver = Receiver(server)
    assert receiver.meta["delivery_methods_supported"] == [PUSH, POLL]
    stream = receiver.create({"method": POLL})
    poll_url = stream["delivery"]["endpoint_url"]
    assert poll_url.startswith(server.issuer + "/ssf/poll/")
    assert receiver.call("POST", poll_url, json={}).json() == {"sets": {}, "moreAvailable": False}

    chain, other = cascade(server)
    server.revoke("warrant", chain[0].id, "the task was hijacked")

    first = receiver.call("POST", poll_url, json={"returnImmediately": True}).json()
    assert revoked_jtis(receiver, stream, first["sets"]) == [w.id for w in chain]
    assert other.id not in str(first)
    # Not acknowledged: sent again (the same SETs, the same ids).
    again = receiver.call("POST", poll_url, json={}).json()
    assert sorted(again["sets"]) == sorted(first["sets"])
    # Acknowledge the first two only: the third is sent again, alone.
    ids = sorted(first["sets"], key=lambda j: int(j.rsplit(".", 1)[1]))
    rest = receiver.call("POST", poll_url, json={"ack": ids[:2]}).json()
    assert list(rest["sets"]) == [ids[2]]
    done = receiver.call("POST", poll_url, json={"ack": [ids[2]]}).json()
    assert done == {"sets": {}, "moreAvailable": False}

    # Acknowledging a SET that does not exist yet acknowledges nothing: when it comes, it
    # is delivered.
    future = f"{stream['stream_id']}.{int(ids[2].rsplit('.', 1)[1]) + 1}"
    assert receiver.call("POST", poll_url, json={"ack": [future]}).json()["sets"] == {}
    # A later revocation (the other warrant's agent) arrives on the same stream.
    server.revoke("warrant", other.id, "done")
    later = receiver.call("POST", poll_url, json={"maxEvents": 10}).json()
    assert revoked_jtis(receiver, stream, later["sets"]) == [other.id]

    # A verification event echoes the receiver's state.
    assert receiver.call("POST", receiver.meta["verification_endpoint"],
                         json={"stream_id": stream["stream_id"], "state": "abc"}).status_code == 204
    checked = receiver.call("POST", poll_url, json={"ack": list(later["sets"])}).json()
    [(set_id, token)] = checked["sets"].items()
    claims = receiver.verify(token, stream)
    assert claims["events"][VERIFICATION] == {"state": "abc"}


def test_streams_belong_to_their_receiver_and_bad_requests_change_nothing(server: Server) -> None:
    mine, theirs = Receiver(server), Receiver(server)
    stream = mine.create({"method": POLL})
    config = mine.meta["configuration_endpoint"]
    sid = stream["stream_id"]
    assert mine.call("GET", config, params={"stream_id": sid}).json()["stream_id"] == sid
    assert mine.call("GET", mine.meta["status_endpoint"], params={"stream_id": sid}).json()["status"] == "enabled"
    # Another receiver neither sees, polls nor deletes it.
    assert theirs.call("GET", config, params={"stream_id": sid}).status_code == 404
    assert theirs.call("POST", stream["delivery"]["endpoint_url"], json={}).status_code == 404
    assert theirs.call("DELETE", config, params={"stream_id": sid}).status_code == 404
    assert sid not in str(theirs.call("GET", config).json())
    # No credential: 401.
    assert server.http.get(config).status_code == 401
    # Malformed requests.
    for delivery in [{"method": "urn:example:carrier-pigeon"}, {"method": PUSH},
                     {"method": PUSH, "endpoint_url": "ftp://x/y"}, {"method": POLL, "endpoint_url": "https://x/"}]:
        reply = mine.call("POST", config, json={"delivery": delivery})
        assert reply.status_code == 400, (delivery, reply.text)
    # The owner deletes it.
    assert mine.call("DELETE", config, params={"stream_id": sid}).status_code == 204
    assert mine.call("GET", config, params={"stream_id": sid}).status_code == 404


class PushReceiver(LoopbackServer):
    """An RFC 8935 receiver on loopback: records each SET, answers 202 (or, while
    `failing`, 503)."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.auth: list[str | None] = []
        self.failing = False
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if receiver.failing or self.headers.get("Content-Type") != "application/secevent+jwt":
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.sets.append(body)
                receiver.auth.append(self.headers.get("Authorization"))
                self.send_response(202)
                self.end_headers()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.address("/events")


def wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_pushed_stream_delivers_in_order_and_again_after_the_receiver_fails(server: Server) -> None:
    receiver = Receiver(server)
    push = PushReceiver()
    try:
        stream = receiver.create({"method": PUSH, "endpoint_url": push.url, "authorization_header": "Bearer rx-secret"})
        assert "authorization_header" not in stream["delivery"], "the receiver's secret is never shown back"
        push.failing = True
        chain, _ = cascade(server)
        server.revoke("warrant", chain[0].id, "compromised")
        time.sleep(1.5)
        assert push.sets == [], "nothing is recorded as delivered while the receiver fails"
        push.failing = False
        wait_for(lambda: len(push.sets) >= 3, "three pushed SETs")
        jtis = [receiver.verify(s, stream)["sub_id"]["session"]["jti"] for s in push.sets]
        assert jtis == [w.id for w in chain]
        assert set(push.auth) == {"Bearer rx-secret"}
    finally:
        push.shutdown()
