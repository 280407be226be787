"""A real Warrant server for the SDK and gateway tests, and the admin calls that set up
humans, agents and policies. Not a test module (pytest collects only `test_*.py`)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from warrant_sdk import AgentKey

REPO = Path(__file__).resolve().parents[2]
WARRANT_BIN = Path(os.environ.get("WARRANT_BIN", REPO / "target" / "debug" / "warrant"))
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
STARTUP_TIMEOUT = 30
SHUTDOWN_TIMEOUT = 10


def free_port() -> int:
    """A loopback port that was free a moment ago (for processes that need one named)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[str], what: str) -> int:
    """SIGTERM, then the exit code; fails the test when `proc` does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} did not exit within {SHUTDOWN_TIMEOUT} s of SIGTERM")


def drain(proc: subprocess.Popen[str], lines: list[str], pattern: re.Pattern[str] | None = None) -> queue.Queue[str]:
    """Reads `proc`'s stdout on a thread (so it never blocks on a full pipe) into `lines`;
    the first match of `pattern`'s group 1 is put on the returned queue."""
    found: queue.Queue[str] = queue.Queue()

    def run() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = pattern.search(line) if pattern else None
            if match:
                found.put(match.group(1))

    threading.Thread(target=run, daemon=True).start()
    return found


@dataclass
class Server:
    """A running `warrant serve` and an admin HTTP client for it."""

    proc: subprocess.Popen[str]
    data: Path
    base: str
    issuer: str
    admin_token: str = field(repr=False)
    http: httpx.Client
    lines: list[str]

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def admin_ok(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.admin(method, path, body)
        assert reply.status_code in (200, 201), f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def human(self, entitlements: list[str]) -> str:
        n = uuid.uuid4().hex[:12]
        return self.admin_ok(
            "POST", "/v1/humans", {"name": f"Py {n}", "email": f"py-{n}@example.com", "entitlements": entitlements}
        )["id"]

    def agent(self, owner: str, mode: str, max_scope: list[str], public_jwk: dict[str, str] | None = None) -> AgentKey:
        """Registers an agent; with no `public_jwk`, with a key made here. Returns its key."""
        private = AgentKey.new_private_key()
        jwk = public_jwk if public_jwk is not None else AgentKey.public_jwk_of(private)
        body = {
            "name": f"py agent {uuid.uuid4().hex[:8]}",
            "owner": owner,
            "mode": mode,
            "max_scope": max_scope,
            "public_key": jwk,
        }
        return AgentKey(self.admin_ok("POST", "/v1/agents", body)["id"], private)

    def session(self, human: str) -> str:
        return self.admin_ok("POST", f"/v1/humans/{human}/sessions")["token"]

    def revoke(self, kind: str, target: str, reason: str = "test") -> dict[str, Any]:
        return self.admin_ok("POST", "/v1/revocations", {"kind": kind, "id": target, "reason": reason})

    def add_policy(self, name: str, text: str) -> None:
        """Adds a Cedar file to the policy set and reloads it (fails if it does not load)."""
        (self.data / "policies" / f"{name}.cedar").write_text(text)
        reply = self.admin_ok("POST", "/v1/policies/reload")
        assert reply["changed"], reply

    def approve(self, approval_id: str) -> dict[str, Any]:
        return self.admin_ok("POST", f"/v1/approvals/{approval_id}/approve", {"reason": "looks right"})

    def stop(self) -> int:
        self.http.close()
        return stop(self.proc, "the server")


def launch(args: list[str], **popen: Any) -> tuple[subprocess.Popen[str], list[str], str | None]:
    """Starts `args` with its stdout read on a thread (`popen` as for `subprocess.Popen`;
    stderr discarded unless given). Returns the process, its output lines so far, and the
    URL of its `listening on` line; `None` when none came within STARTUP_TIMEOUT, the
    process then killed and reaped."""
    popen.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **popen)
    lines: list[str] = []
    found = drain(proc, lines, LISTENING)
    try:
        return proc, lines, found.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        return proc, lines, None


def start_server(data: Path) -> Server:
    """Starts `warrant serve` on a free loopback port with the data directory `data`."""
    if not WARRANT_BIN.is_file():
        pytest.fail(f"no warrant binary at {WARRANT_BIN}: build it (cargo build --bin warrant) or set WARRANT_BIN")
    proc, lines, base = launch([str(WARRANT_BIN), "serve", "--data", str(data), "--listen", "127.0.0.1:0"])
    if base is None:
        pytest.fail(f"the server printed no `listening on` line; exit {proc.returncode}, stdout {''.join(lines)!r}")
    http = httpx.Client(timeout=10, trust_env=False)  # loopback only: never through a proxy
    issuer = http.get(base + "/.well-known/oauth-authorization-server").json()["issuer"]
    admin = (data / "admin.token").read_text().strip()
    return Server(proc=proc, data=data, base=base, issuer=issuer, admin_token=admin, http=http, lines=lines)


def python_process(args: list[str]) -> subprocess.Popen[str]:
    """Runs a Python script of this directory with this interpreter (the test venv)."""
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).parent,
    )


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing (the tests' servers would fill the output)."""

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    """An HTTP server on a free loopback port, serving `handler` on a daemon thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def address(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


def dpop_proof(key: ECKey, method: str, url: str, token: str | None = None, **extra: Any) -> str:
    """A DPoP proof (RFC 9449) made with joserfc (ES256) for `method` on `url`, bound to
    `token` (`ath`) when given; `extra` claims override the defaults."""
    claims: dict[str, Any] = {"htm": method, "htu": url, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    if token is not None:
        claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    claims.update(extra)
    return jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}, claims, key)

