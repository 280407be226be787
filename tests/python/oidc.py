"""A real OpenID provider (tests/oidc/provider.mjs, on oidc-provider) for the federation
tests, and a headless sign-in through it: authorization code + PKCE, returning the ID
token. Not a test module (pytest collects only `test_*.py`).

    provider = start_provider(tmp_path, {"alice": {"password": "pw", "name": "Alice Example",
                                                   "email": "alice@example.com", "groups": ["support"]}})
    id_token = login(provider, "alice", "pw")
    provider.set_accounts({...})  # read again by the provider at every lookup
    provider.stop()
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from harness import REPO, free_port, launch, stop

OIDC_DIR = REPO / "tests" / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
SCOPE = "openid profile email groups"
MAX_REDIRECTS = 10
HTTP_TIMEOUT = 10


class OIDCError(Exception):
    """A sign-in through the test provider went wrong; the message says where and what came back."""


@dataclass
class Provider:
    """A running tests/oidc/provider.mjs with one public client and a file of accounts."""

    issuer: str
    client_id: str
    redirect_uri: str
    accounts_path: Path
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list, repr=False)
    keys_path: Path | None = None

    def signing_keys(self) -> list[dict[str, Any]]:
        """The provider's private signing keys (JWKs), for tests that sign tokens it never would."""
        assert self.keys_path is not None
        return list(json.loads(self.keys_path.read_text())["keys"])

    def set_accounts(self, accounts: dict[str, Any]) -> None:
        """Rewrites the accounts file (atomically); the provider reads it at every lookup."""
        write_accounts(self.accounts_path, accounts)

    def stop(self) -> int:
        return stop(self.proc, "the OpenID provider")


def write_accounts(path: Path, accounts: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(accounts, indent=2))
    os.replace(tmp, path)


def start_provider(
    workdir: Path,
    accounts: dict[str, Any],
    client_id: str = "warrant-test",
    redirect_uri: str = "http://127.0.0.1:9/callback",
) -> Provider:
    """Starts the provider on a free loopback port; its accounts file is written in `workdir`."""
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"no {OIDC_DIR / 'node_modules'}: run npm ci --prefix tests/oidc")
    node = os.environ.get("NODE") or shutil.which("node")
    if not node:
        pytest.fail("no `node` on PATH (Node.js 20 or later is needed for tests/oidc/provider.mjs); or set NODE")
    workdir.mkdir(parents=True, exist_ok=True)
    accounts_path = workdir / "oidc-accounts.json"
    write_accounts(accounts_path, accounts)
    keys_path = workdir / "oidc-keys.json"

    for _attempt in range(3):  # the port was free a moment ago; another process may take it first
        port = free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "ACCOUNTS": str(accounts_path),
            "CLIENT_ID": client_id,
            "REDIRECT_URI": redirect_uri,
            "KEY_FILE": str(keys_path),
        }
        # Its warnings and errors land in `lines` too.
        proc, lines, issuer = launch([node, str(PROVIDER_SCRIPT)], stderr=subprocess.STDOUT, cwd=OIDC_DIR, env=env)
        if issuer is None:
            output = "".join(lines)
            if "EADDRINUSE" in output:
                continue
            pytest.fail(
                f"the OpenID provider printed no `listening on` line; exit {proc.returncode}, output {output!r}"
            )
        return Provider(
            issuer=issuer,
            client_id=client_id,
            redirect_uri=redirect_uri,
            accounts_path=accounts_path,
            proc=proc,
            lines=lines,
            keys_path=keys_path,
        )
    pytest.fail("the OpenID provider found no free port in 3 tries")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims_of(jwt: str) -> dict[str, Any]:
    """The payload of a compact JWS, not verified (the tests verify it where it matters)."""
    try:
        payload = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as e:
        raise OIDCError(f"the ID token is not a JWT: {jwt!r}") from e


def _fail(what: str, reply: httpx.Response) -> OIDCError:
    return OIDCError(f"{what}: {reply.request.method} {reply.request.url} -> {reply.status_code} {reply.text[:2000]!r}")


def _is_redirect_uri(url: str, redirect_uri: str) -> bool:
    got, want = urlsplit(url), urlsplit(redirect_uri)
    return (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path)


def login(provider: Provider, user: str, password: str) -> str:
    """Signs `user` in (authorization code + PKCE S256, state and nonce) with plain HTTP and
    a cookie jar; stops at the redirect to the client's redirect URI (never fetched),
    redeems the code with the verifier, and returns the ID token. Raises OIDCError."""
    verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    state = secrets.token_urlsafe(16)
    nonce = secrets.token_urlsafe(16)

    # A fresh client per sign-in: its cookie jar carries the interaction and session cookies.
    with httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False, follow_redirects=False) as http:
        reply = http.get(provider.issuer + "/.well-known/openid-configuration")
        if reply.status_code != 200:
            raise _fail("discovery", reply)
        discovery = reply.json()
        if discovery.get("issuer") != provider.issuer:
            raise OIDCError(f"discovery names issuer {discovery.get('issuer')!r}, not {provider.issuer!r}")

        reply = http.get(
            discovery["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": provider.client_id,
                "redirect_uri": provider.redirect_uri,
                "scope": SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        callback = None
        logged_in = False
        for _hop in range(MAX_REDIRECTS):
            if reply.is_redirect:
                location = urljoin(str(reply.url), reply.headers["location"])
                if _is_redirect_uri(location, provider.redirect_uri):
                    callback = location
                    break
                reply = http.get(location)
                continue
            if reply.status_code != 200:
                raise _fail("the authorization flow", reply)
            path = reply.url.path.rstrip("/")
            if not path.startswith("/interaction/") or logged_in:
                raise _fail("the authorization flow stopped on an unexpected page", reply)
            # The login page of provider.mjs: a form posting `login` and `password`.
            uid = path.split("/")[2]
            reply = http.post(f"{provider.issuer}/interaction/{uid}/login", data={"login": user, "password": password})
            if not reply.is_redirect:
                raise _fail(f"signing in as {user!r}", reply)
            logged_in = True
        if callback is None:
            raise _fail(f"no redirect to {provider.redirect_uri} within {MAX_REDIRECTS} hops", reply)

        query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        if "error" in query:
            raise OIDCError(f"the provider redirected with an error: {query}")
        if query.get("state") != state:
            raise OIDCError(f"the redirect's state {query.get('state')!r} is not the one sent ({state!r})")
        if "iss" in query and query["iss"] != provider.issuer:
            raise OIDCError(f"the redirect's iss {query['iss']!r} is not {provider.issuer!r}")
        code = query.get("code")
        if not code:
            raise OIDCError(f"the redirect carries no code: {callback}")

        reply = http.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": provider.redirect_uri,
                "client_id": provider.client_id,
                "code_verifier": verifier,
            },
        )
        if reply.status_code != 200:
            raise _fail("the token request", reply)
        id_token = reply.json().get("id_token")
        if not isinstance(id_token, str):
            raise _fail("the token response has no id_token", reply)
        if _claims_of(id_token).get("nonce") != nonce:
            raise OIDCError(f"the ID token's nonce is not the one sent: {_claims_of(id_token)}")
        return id_token
