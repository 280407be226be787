"""`warrant gateway` end to end, with the official MCP Python SDK on both sides.

A FastMCP upstream (mcp_upstream.py, the `mcp` package) on a free loopback port, a real
`warrant serve`, and `warrant gateway --upstream demo=URL --listen ADDR --server URL --credential FILE`
in front of the upstream; the client is the `mcp` package's Streamable HTTP client and
`ClientSession`, authenticated by the agent SDK's `WarrantAuth`; the gateway authenticates
to Warrant with a PEP credential (`--credential FILE`). Covered: initialize, a
filtered tools/list, an allowed call, a denied call the upstream never sees, calls
authorized by a declared COAZ mapping with CEL (and one whose mapping states another
subject), the approval round trip, a revoked warrant denied on its next call, warrants
for another audience (or none) refused with 401, the RFC 9728 metadata document and the
401 challenge, the audit of each decided call, and the client's warrant never reaching
the upstream.

The contract (issue 13): upstream `u` is served at `/mcp/<u>`, its resource identifier is
that URL; `tools/call` of tool `t` is the Warrant action `mcp.tools.call` on
`mcp/<u>/tool/<t>`; a server-wide method `m` is `mcp.` + `m` (`/` as `.`) on `mcp/<u>`; a
declared mapping's action `a` on `{type, id}` is `a` on `<type>/<id>`; a denial is the
JSON-RPC error -32001, a mapping error -32602; a `pending` decision is a JSON-RPC error
whose `data` holds `approval_id`, `expires_at` and `poll`, and the retry carries the id in
`params._meta["io.warrant/approval_id"]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import McpError

from harness import (
    STARTUP_TIMEOUT,
    WARRANT_BIN,
    Server,
    drain,
    dpop_proof,
    free_port,
    python_process,
    read_json_lines,
    stop,
)
from warrant_sdk import AgentKey, DpopKey, Warrant, WarrantAuth, WarrantClient

UPSTREAM = "demo"
APPROVAL_META = "io.warrant/approval_id"
DENIED = -32001
MAPPING_ERROR = -32602
#: How long one MCP request may take before the test fails instead of waiting on.
READ_TIMEOUT = timedelta(seconds=30)

APPROVAL_POLICY = f"""
@id("gateway-test-deleting-notes-needs-the-owner")
@approval("owner")
forbid (principal, action == Warrant::Action::"mcp.tools.call", resource)
when {{ resource.path == "mcp/{UPSTREAM}/tool/delete_note" }};
"""

#: What the test agent may do: the MCP handshake and listing on `demo`, two tools by the
#: default mapping, and the one customer `lookup_customer`'s declared mapping names.
SCOPE = [
    f"mcp.initialize:mcp/{UPSTREAM}",
    f"mcp.tools.list:mcp/{UPSTREAM}",
    f"mcp.tools.call:mcp/{UPSTREAM}/tool/echo",
    f"mcp.tools.call:mcp/{UPSTREAM}/tool/delete_note",
    "crm.read:customers/eu-42",
]


@dataclass
class Upstream:
    """The FastMCP upstream and its log of requests and tool runs."""

    url: str
    log: Path

    def events(self) -> list[dict[str, Any]]:
        return read_json_lines(self.log)

    def runs(self, tool: str) -> list[dict[str, Any]]:
        """The arguments of every run of `tool`, in order."""
        return [e["arguments"] for e in self.events() if e.get("tool") == tool]

    def authorizations(self) -> set[str | None]:
        """Every Authorization header the upstream received."""
        return {e["authorization"] for e in self.events() if "http" in e}


@dataclass
class Gateway:
    """A running `warrant gateway` in front of `demo`."""

    base: str
    lines: list[str]
    #: The name of the PEP credential the gateway authenticates with.
    pep: str

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint of `demo`, which is also its resource identifier."""
        return f"{self.base}/mcp/{UPSTREAM}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp/{UPSTREAM}"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    log = tmp_path_factory.mktemp("upstream") / "events.jsonl"
    proc = python_process(["mcp_upstream.py", str(log)])
    lines: list[str] = []
    found = drain(proc, lines, re.compile(r"upstream listening on (http://127\.0\.0\.1:\d+/mcp)"))
    try:
        url = found.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        proc.kill()
        proc.wait()
        pytest.fail(f"the MCP upstream did not start: {''.join(lines)}")
    yield Upstream(url=url, log=log)
    stop(proc, "the MCP upstream")


@pytest.fixture(scope="module")
def gateway(warrant_server: Server, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    # The gateway's own credential: a PEP credential the admin creates, in a file (mode
    # 0600); no admin token in its environment, so nothing else could stand in for it.
    pep = warrant_server.admin_ok("POST", "/v1/peps", {"name": "gateway test"})
    credential = tmp_path_factory.mktemp("gateway-credential") / "pep.token"
    credential.touch(mode=0o600)
    credential.write_text(pep["token"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARRANT_")}
    cwd = tmp_path_factory.mktemp("gateway-cwd")  # holds no ./warrant-data/admin.token
    proc = subprocess.Popen(
        [
            str(WARRANT_BIN),
            "gateway",
            "--upstream",
            f"{UPSTREAM}={upstream.url}",
            "--listen",
            f"127.0.0.1:{port}",
            "--server",
            warrant_server.base,
            "--credential",
            str(credential),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
    )
    lines: list[str] = []
    drain(proc, lines)
    gw = Gateway(base=f"http://127.0.0.1:{port}", lines=lines, pep=pep["name"])
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(timeout=5, trust_env=False) as http:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`warrant gateway` exited with {proc.returncode}: {''.join(lines)}")
            try:
                if http.get(gw.metadata_url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(
                    f"`warrant gateway` did not serve {gw.metadata_url} within {STARTUP_TIMEOUT} s: {''.join(lines)}"
                )
            time.sleep(0.05)
    yield gw
    assert stop(proc, "the gateway") == 0, f"the gateway did not shut down cleanly: {''.join(lines)}"


@dataclass
class Agent:
    key: AgentKey
    client: WarrantClient

    def warrant(self, resource: str | None, purpose: str = "work through the gateway") -> Warrant:
        return self.client.mint(self.key, purpose, resource=resource)


@pytest.fixture(scope="module")
def agent(warrant_server: Server) -> Iterator[Agent]:
    warrant_server.add_policy("gateway-test-approval", APPROVAL_POLICY)
    owner = warrant_server.human([])
    key = warrant_server.agent(owner, "autonomous", SCOPE)
    with WarrantClient(warrant_server.base) as client:
        yield Agent(key=key, client=client)


@asynccontextmanager
async def mcp_session(url: str, auth: WarrantAuth) -> AsyncIterator[ClientSession]:
    """An initialized `mcp` client session on `url`, authenticated by `auth`."""
    async with create_mcp_http_client(auth=auth) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
                yield session


async def refused(call: Any) -> McpError:
    """The JSON-RPC error an MCP call is answered with (fails if it succeeds)."""
    with pytest.raises(McpError) as error:
        await call
    return error.value


def text_of(result: Any) -> str:
    assert not result.isError, result
    return "".join(block.text for block in result.content if block.type == "text")


def decisions(srv: Server, warrant: Warrant) -> list[dict[str, Any]]:
    """The warrant's decision records, oldest first."""
    return srv.admin_ok("GET", f"/v1/audit?kind=decision&warrant={warrant.id}&order=oldest&limit=1000")["records"]


# --- RFC 9728 metadata, the 401 challenge and the audience -----------------------------


def test_protected_resource_metadata_and_the_401_challenge(warrant_server: Server, gateway: Gateway):
    with httpx.Client(timeout=10, trust_env=False) as http:
        prm = http.get(gateway.metadata_url)
        assert prm.status_code == 200, prm.text
        doc = prm.json()
        assert doc["resource"] == gateway.mcp_url
        assert warrant_server.issuer in doc["authorization_servers"]

        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        }
        headers = {"Accept": "application/json, text/event-stream"}
        for bearer in (None, "Bearer not-a-warrant"):
            sent = {**headers, **({"Authorization": bearer} if bearer else {})}
            reply = http.post(gateway.mcp_url, json=initialize, headers=sent)
            assert reply.status_code == 401, reply.text
            challenge = reply.headers.get("www-authenticate", "")
            assert challenge.startswith("Bearer "), challenge
            assert f'resource_metadata="{gateway.metadata_url}"' in challenge, challenge


def test_a_warrant_for_another_audience_is_refused_with_401(gateway: Gateway, upstream: Upstream, agent: Agent):
    right = agent.warrant(gateway.mcp_url)
    assert right.audience == (gateway.mcp_url,), "the token endpoint put `resource` in `aud`"
    before = len(upstream.events())
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    wrong = [agent.warrant(None), agent.warrant(f"{gateway.base}/mcp/other")]
    assert wrong[0].audience != (gateway.mcp_url,) and wrong[1].audience == (f"{gateway.base}/mcp/other",)
    with httpx.Client(timeout=10, trust_env=False) as http:
        for w in wrong:
            reply = http.post(
                gateway.mcp_url,
                json=initialize,
                headers={"Authorization": f"Bearer {w.token}", "Accept": "application/json, text/event-stream"},
            )
            assert reply.status_code == 401, reply.text
            assert f'resource_metadata="{gateway.metadata_url}"' in reply.headers.get("www-authenticate", "")
    assert len(upstream.events()) == before, "a refused request reached the upstream"


def rpc_result(reply: httpx.Response) -> Any:
    """The JSON-RPC message of an answer sent as JSON or as one server-sent event."""
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in reply.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return reply.json()


def test_a_dpop_bound_warrant_works_only_with_fresh_proofs_of_its_key(
    warrant_server: Server, gateway: Gateway, upstream: Upstream, agent: Agent
):
    token_url = warrant_server.issuer + "/oauth2/token"
    key = ECKey.generate_key("P-256")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": agent.key.client_assertion(token_url),
        "task_purpose": "bound warrant at the gateway",
        "resource": gateway.mcp_url,
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=10, trust_env=False) as http:
        issued = http.post(warrant_server.base + "/oauth2/token", data=form, headers={"DPoP": dpop_proof(key, "POST", token_url)})
        assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
        warrant = issued.json()["access_token"]
        session: dict[str, str] = {}

        def send(message: dict[str, Any], proof: str | None, scheme: str = "DPoP") -> httpx.Response:
            headers = {**accept, **session, "Authorization": f"{scheme} {warrant}"}
            if proof is not None:
                headers["DPoP"] = proof
            return http.post(gateway.mcp_url, json=message, headers=headers)

        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        }
        started = send(initialize, dpop_proof(key, "POST", gateway.mcp_url, warrant))
        assert started.status_code == 200, started.text
        if "mcp-session-id" in started.headers:
            session["Mcp-Session-Id"] = started.headers["mcp-session-id"]
        done = send({"jsonrpc": "2.0", "method": "notifications/initialized"}, dpop_proof(key, "POST", gateway.mcp_url, warrant))
        assert done.status_code in (200, 202), done.text

        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "bound"}}}
        proof = dpop_proof(key, "POST", gateway.mcp_url, warrant)
        answered = send(call, proof)
        assert answered.status_code == 200, answered.text
        assert rpc_result(answered)["result"]["content"][0]["text"] == "bound"
        assert upstream.runs("echo")[-1] == {"text": "bound"}

        before = len(upstream.events())
        stranger = ECKey.generate_key("P-256")
        for name, bad, scheme in [
            ("replayed", proof, "DPoP"),
            ("missing", None, "DPoP"),
            ("for another URL", dpop_proof(key, "POST", gateway.base + "/mcp/other", warrant), "DPoP"),
            ("for another token", dpop_proof(key, "POST", gateway.mcp_url, "another.token.x"), "DPoP"),
            ("by another key", dpop_proof(stranger, "POST", gateway.mcp_url, warrant), "DPoP"),
            ("malformed", "not.a.proof", "DPoP"),
            ("sent as a bearer token", dpop_proof(key, "POST", gateway.mcp_url, warrant), "Bearer"),
        ]:
            reply = send(call, bad, scheme)
            assert reply.status_code == 401, (name, reply.text)
            challenge = reply.headers.get("www-authenticate", "")
            assert challenge.startswith('DPoP error="invalid_dpop_proof"'), (name, challenge)
        assert len(upstream.events()) == before, "a refused request reached the upstream"


def test_the_official_mcp_client_with_a_dpop_bound_warrant(gateway: Gateway, upstream: Upstream, agent: Agent):
    """The SDK's `WarrantAuth` with a DPoP key: every MCP request goes with a fresh proof."""
    key = DpopKey()
    cache = agent.client.minting(agent.key, "bound tools", resource=gateway.mcp_url, dpop=key)
    assert cache.get().bound_to == key.thumbprint()

    async def scenario() -> str:
        async with mcp_session(gateway.mcp_url, WarrantAuth(cache, dpop=key)) as session:
            await session.initialize()
            return text_of(await session.call_tool("echo", {"text": "sdk bound"}))

    assert asyncio.run(scenario()) == "sdk bound"
    assert {"text": "sdk bound"} in upstream.runs("echo")
    # The same warrant without its key is refused before the upstream sees anything.

    async def keyless() -> None:
        async with mcp_session(gateway.mcp_url, WarrantAuth(cache)) as session:
            await session.initialize()

    before = len(upstream.events())
    with pytest.raises(Exception):
        asyncio.run(keyless())
    assert len(upstream.events()) == before


# --- the MCP client through the gateway --------------------------------------------------


def test_mcp_client_through_the_gateway(warrant_server: Server, gateway: Gateway, upstream: Upstream, agent: Agent):
    cache = agent.client.minting(agent.key, "tools through the gateway", resource=gateway.mcp_url)

    async def scenario() -> tuple[Any, Any]:
        async with mcp_session(gateway.mcp_url, WarrantAuth(cache)) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            echoed = await session.call_tool("echo", {"text": "hello"})
            assert text_of(echoed) == "hello"

            denied = await refused(session.call_tool("admin_reset", {}))
            assert denied.error.code == DENIED, denied.error

            mapped = await session.call_tool("lookup_customer", {"region": "eu", "customer_id": 42})
            assert text_of(mapped) == "customer eu-42"
            other = await refused(session.call_tool("lookup_customer", {"region": "eu", "customer_id": 43}))
            assert other.error.code == DENIED, other.error

            smuggled = await refused(session.call_tool("impersonate", {}))
            assert smuggled.error.code == MAPPING_ERROR, smuggled.error
            return init, listed

    init, listed = asyncio.run(scenario())
    assert init.serverInfo.name == "warrant-demo-upstream"
    tools = {t.name: t for t in listed.tools}
    assert {"echo", "delete_note", "lookup_customer"} <= set(tools), sorted(tools)
    assert "admin_reset" not in tools, "tools/list shows a tool the warrant may not call"
    assert tools["lookup_customer"].inputSchema["x-authzen-mapping"]["evaluation"]["action"] == {"name": "crm.read"}

    # The upstream ran exactly the allowed calls, and never saw the client's warrant.
    # Once (other tests of this module echo other texts).
    assert [r for r in upstream.runs("echo") if r == {"text": "hello"}] == [{"text": "hello"}]
    assert upstream.runs("admin_reset") == []
    assert upstream.runs("lookup_customer") == [{"region": "eu", "customer_id": 42}]
    assert upstream.runs("impersonate") == []
    warrant = cache.peek()
    assert warrant is not None
    assert not any(h and warrant.token in h for h in upstream.authorizations()), "the gateway forwarded the warrant"

    # Every decided call is audited under the warrant, with the MCP call it decided.
    records = decisions(warrant_server, warrant)
    seen = {(r["details"]["action"], r["details"]["resource"], r["decision"]) for r in records}
    assert ("mcp.initialize", f"mcp/{UPSTREAM}", "allow") in seen, seen
    assert ("mcp.tools.call", f"mcp/{UPSTREAM}/tool/echo", "allow") in seen, seen
    assert ("mcp.tools.call", f"mcp/{UPSTREAM}/tool/admin_reset", "deny") in seen, seen
    assert ("crm.read", "customers/eu-42", "allow") in seen, seen
    assert ("crm.read", "customers/eu-43", "deny") in seen, seen
    echo_record = next(r for r in records if r["details"]["resource"] == f"mcp/{UPSTREAM}/tool/echo")
    assert echo_record["agent"] == agent.key.agent_id and echo_record["human"]
    assert echo_record["details"]["chain"] == [agent.key.agent_id]
    assert echo_record["details"]["mcp"] == {"method": "tools/call", "target": "echo", "upstream": UPSTREAM}
    assert echo_record["details"]["pep"] == gateway.pep, "the record names the enforcement point that asked"
    lookup_record = next(r for r in records if r["details"]["resource"] == "customers/eu-42")
    assert lookup_record["details"]["mcp"] == {
        "method": "tools/call",
        "target": "lookup_customer",
        "upstream": UPSTREAM,
    }


def test_approval_round_trip(warrant_server: Server, gateway: Gateway, upstream: Upstream, agent: Agent):
    warrant = agent.warrant(gateway.mcp_url, "delete a note")

    async def ask() -> dict[str, Any]:
        async with mcp_session(gateway.mcp_url, WarrantAuth(warrant)) as session:
            await session.initialize()
            pending = await refused(session.call_tool("delete_note", {"note_id": 7}))
            assert isinstance(pending.error.data, dict), pending.error
            return pending.error.data

    data = asyncio.run(ask())
    approval_id = data["approval_id"]
    assert approval_id.startswith("apr_") and isinstance(data["expires_at"], int) and approval_id in data["poll"]
    assert upstream.runs("delete_note") == [], "a pending call reached the upstream"
    approval = warrant_server.admin_ok("GET", f"/v1/approvals/{approval_id}")
    assert approval["status"] == "pending" and approval["resource"] == f"mcp/{UPSTREAM}/tool/delete_note"
    warrant_server.approve(approval_id)

    async def retry() -> tuple[str, McpError]:
        async with mcp_session(gateway.mcp_url, WarrantAuth(warrant)) as session:
            await session.initialize()
            done = await session.call_tool("delete_note", {"note_id": 7}, meta={APPROVAL_META: approval_id})
            again = await refused(session.call_tool("delete_note", {"note_id": 7}, meta={APPROVAL_META: approval_id}))
            return text_of(done), again

    done, again = asyncio.run(retry())
    assert done == "deleted note 7"
    assert again.error.code == DENIED, "an approval is good for one call"
    assert upstream.runs("delete_note") == [{"note_id": 7}]
    assert warrant_server.admin_ok("GET", f"/v1/approvals/{approval_id}")["status"] == "used"


def test_a_revoked_warrant_is_denied_on_its_next_call(
    warrant_server: Server, gateway: Gateway, upstream: Upstream, agent: Agent
):
    warrant = agent.warrant(gateway.mcp_url, "until revoked")
    before = len(upstream.runs("echo"))

    async def scenario() -> McpError:
        async with mcp_session(gateway.mcp_url, WarrantAuth(warrant)) as session:
            await session.initialize()
            assert text_of(await session.call_tool("echo", {"text": "before"})) == "before"
            warrant_server.revoke("warrant", warrant.id, "gateway test")
            return await refused(session.call_tool("echo", {"text": "after"}))

    error = asyncio.run(scenario())
    assert error.error.code == DENIED, error.error
    assert upstream.runs("echo")[before:] == [{"text": "before"}]
    revoked = [r for r in decisions(warrant_server, warrant) if r["details"]["code"] == "revoked"]
    assert f"mcp/{UPSTREAM}/tool/echo" in [r["details"]["resource"] for r in revoked], revoked


def test_the_sdk_example_calls_a_tool(warrant_server: Server, gateway: Gateway, upstream: Upstream, tmp_path: Path):
    """sdk/python/examples/call_tool.py, as the docs run it: a key from `warrant keygen`,
    a warrant minted for the gateway's URL, one allowed call and one refused."""
    subprocess.run([str(WARRANT_BIN), "keygen", str(tmp_path / "bot")], check=True, capture_output=True)
    owner = warrant_server.human([])
    public = json.loads((tmp_path / "bot.pub.jwk").read_text())
    bot = warrant_server.agent(owner, "autonomous", SCOPE, public_jwk=public)
    example = Path(__file__).resolve().parents[2] / "sdk" / "python" / "examples" / "call_tool.py"

    def run(tool: str, arguments: str) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            str(example),
            "--server",
            warrant_server.base,
            "--agent",
            bot.agent_id,
            "--key",
            str(tmp_path / "bot.key.jwk"),
            gateway.mcp_url,
            tool,
            arguments,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    before = len(upstream.runs("echo"))
    ok = run("echo", '{"text": "from the example"}')
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "from the example"
    assert upstream.runs("echo")[before:] == [{"text": "from the example"}]
    refused_call = run("admin_reset", "{}")
    assert refused_call.returncode == 1, refused_call.stderr
    assert f"refused ({DENIED})" in refused_call.stderr
    assert upstream.runs("admin_reset") == []


def test_the_example_upstream_serves_echo():
    """sdk/python/examples/echo_upstream.py, the upstream the docs put behind the gateway."""
    port = free_port()
    example = Path(__file__).resolve().parents[2] / "sdk" / "python" / "examples" / "echo_upstream.py"
    proc = subprocess.Popen(
        [sys.executable, str(example), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    drain(proc, lines)
    url = f"http://127.0.0.1:{port}/mcp"

    async def call() -> str:
        async with streamable_http_client(url) as (read, write, _):
            async with ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
                await session.initialize()
                return text_of(await session.call_tool("echo", {"text": "ping"}))

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"echo_upstream.py exited: {''.join(lines)}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"echo_upstream.py did not listen: {''.join(lines)}"
                time.sleep(0.05)
        assert asyncio.run(call()) == "ping"
    finally:
        stop(proc, "echo_upstream.py")
