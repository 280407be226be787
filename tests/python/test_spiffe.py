"""SPIFFE workload identity for autonomous agents: an agent registered with a SPIFFE ID
authenticates at the token endpoint with a JWT-SVID made by an independent library
(joserfc), verified against its trust domain's bundle (`[[federation.spiffe]]`); every
other SVID is refused with `invalid_client` and issues nothing."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from harness import LoopbackServer, QuietHandler, Server, start_server

JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TRUST_DOMAIN = "example.org"
WORKLOAD = f"spiffe://{TRUST_DOMAIN}/ns/prod/sa/reporter"


def write_bundle(path: Path, *keys: ECKey) -> None:
    """A SPIFFE trust bundle: a JWKS whose keys are for JWT-SVIDs."""
    jwks = {"keys": [{**k.as_dict(private=False), "use": "jwt-svid"} for k in keys], "spiffe_sequence": 1}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(jwks))
    os.replace(tmp, path)


class Domain:
    """The trust domain's signing keys and bundle file."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle
        self.key = ECKey.generate_key("P-256", parameters={"kid": "svid-1"})
        write_bundle(bundle, self.key)

    def svid(self, audience: str, key: ECKey | None = None, **claims: Any) -> str:
        key = key or self.key
        now = int(time.time())
        body = {"sub": WORKLOAD, "aud": [audience], "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, body, key)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Domain]]:
    data = tmp_path_factory.mktemp("spiffe") / "data"
    data.mkdir()
    domain = Domain(data.parent / "bundle.jwks")
    (data / "warrant.toml").write_text(
        f'[[federation.spiffe]]\ntrust_domain = "{TRUST_DOMAIN}"\nbundle_file = "{domain.bundle}"\n'
    )
    srv = start_server(data)
    yield srv, domain
    assert srv.stop() == 0, "the server did not shut down cleanly"


def register(server: Server, spiffe_id: str = WORKLOAD, **extra: Any) -> httpx.Response:
    owner = server.human(["reports.*"])
    body = {"name": f"workload {uuid.uuid4().hex[:6]}", "owner": owner, "mode": "autonomous",
            "max_scope": ["reports.*"], "spiffe_id": spiffe_id, **extra}
    return server.admin("POST", "/v1/agents", body)


def token(server: Server, assertion: str, assertion_type: str = JWT_SPIFFE) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_assertion_type": assertion_type,
            "client_assertion": assertion, "task_purpose": "nightly report"}
    return server.http.post(server.base + "/oauth2/token", data=form)


def test_a_spiffe_agent_gets_a_warrant_with_its_jwt_svid_and_nothing_else_does(setup: tuple[Server, Domain]) -> None:
    server, domain = setup
    registered = register(server)
    assert registered.status_code == 201, registered.text
    agent = registered.json()
    assert agent["spiffe_id"] == WORKLOAD and "public_key" not in agent
    endpoint = server.issuer + "/oauth2/token"

    issued = token(server, domain.svid(endpoint))
    assert issued.status_code == 200, issued.text
    seen = server.http.post(server.base + "/oauth2/introspect", data={"token": issued.json()["access_token"]},
                            headers={"Authorization": f"Bearer {server.admin_token}"}).json()
    assert seen["active"] and seen["client_id"] == agent["id"] and seen["mode"] == "autonomous"
    # A JWT-SVID without `jti` is reusable until it expires (SPIFFE workloads cache them)...
    reusable = domain.svid(endpoint)
    assert token(server, reusable).status_code == 200
    assert token(server, reusable).status_code == 200
    # ...one with a `jti` is single-use.
    once = domain.svid(endpoint, jti=uuid.uuid4().hex)
    assert token(server, once).status_code == 200
    assert token(server, once).json()["error"] == "invalid_client"
    # Also just after its expiry, while the clock leeway still accepts it.
    late = int(time.time())
    just_expired = domain.svid(endpoint, jti=uuid.uuid4().hex, iat=late - 60, exp=late - 5)
    assert token(server, just_expired).status_code == 200
    assert token(server, just_expired).json()["error"] == "invalid_client"

    stranger = ECKey.generate_key("P-256", parameters={"kid": "svid-1"})
    now = int(time.time())
    for name, bad in [
        ("signed by a key not in the bundle", domain.svid(endpoint, key=stranger)),
        ("for another audience", domain.svid("https://elsewhere.example/token")),
        ("expired", domain.svid(endpoint, iat=now - 600, exp=now - 300)),
        ("living too long", domain.svid(endpoint, exp=now + 7200)),
        ("of an unregistered workload", domain.svid(endpoint, sub=f"spiffe://{TRUST_DOMAIN}/ns/prod/sa/other")),
        ("of an untrusted trust domain", domain.svid(endpoint, sub="spiffe://evil.example/ns/prod/sa/reporter")),
        ("without exp", domain.svid(endpoint, exp=None)),
        ("not a JWT", "not-a-jwt"),
    ]:
        refused = token(server, bad)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", (name, refused.text)
    # The right SVID under the wrong assertion type.
    assert token(server, domain.svid(endpoint), JWT_BEARER).json()["error"] == "invalid_client"

    # The trust domain rotates its key: the new bundle is read, the old key stops working.
    old = domain.key
    domain.key = ECKey.generate_key("P-256", parameters={"kid": "svid-2"})
    write_bundle(domain.bundle, domain.key)
    assert token(server, domain.svid(endpoint)).status_code == 200
    assert token(server, domain.svid(endpoint, key=old)).status_code == 401

    # A suspended workload is refused.
    server.admin_ok("POST", f"/v1/agents/{agent['id']}/suspend")
    assert token(server, domain.svid(endpoint)).json()["error"] == "invalid_client"


def test_registration_needs_exactly_one_credential_and_a_trusted_domain(setup: tuple[Server, Domain]) -> None:
    server, _ = setup
    assert register(server, "spiffe://untrusted.example/x").status_code == 400
    assert register(server, "https://example.org/x").status_code == 400
    both = register(server, f"spiffe://{TRUST_DOMAIN}/both",
                    public_key={"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
    assert both.status_code == 400
    neither = server.admin("POST", "/v1/agents", {"name": "n", "owner": server.human([]), "mode": "autonomous",
                                                   "max_scope": ["reports.*"]})
    assert neither.status_code == 400
    first = register(server, f"spiffe://{TRUST_DOMAIN}/twice")
    assert first.status_code == 201
    assert register(server, f"spiffe://{TRUST_DOMAIN}/twice").status_code == 409
    # Its key cannot be rotated: it has none.
    rotated = server.admin("POST", f"/v1/agents/{first.json()['id']}/key",
                           {"public_key": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}})
    assert rotated.status_code == 400, rotated.text


class BundleEndpoint(LoopbackServer):
    """A trust domain's bundle endpoint on loopback, serving whatever `keys` holds and
    counting the fetches."""

    def __init__(self, *keys: ECKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        endpoint = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                endpoint.fetches += 1
                body = json.dumps({"keys": [{**k.as_dict(private=False), "use": "jwt-svid"} for k in endpoint.keys],
                                   "spiffe_sequence": endpoint.fetches, "spiffe_refresh_hint": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.address("/bundle")


def test_a_bundle_endpoint_is_fetched_and_fetched_again_when_the_domain_rotates(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    first = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    endpoint = BundleEndpoint(first)
    data = tmp_path_factory.mktemp("spiffe-url") / "data"
    data.mkdir()
    (data / "warrant.toml").write_text(
        f'[[federation.spiffe]]\ntrust_domain = "{TRUST_DOMAIN}"\nbundle_url = "{endpoint.url}"\n'
    )
    server = start_server(data)
    try:
        assert register(server).status_code == 201
        domain = Domain.__new__(Domain)
        domain.key = first
        endpoint_url = server.issuer + "/oauth2/token"
        assert token(server, domain.svid(endpoint_url)).status_code == 200
        assert token(server, domain.svid(endpoint_url)).status_code == 200
        assert endpoint.fetches == 1, "the bundle is fresh for its refresh hint"
        # The domain rotates: an SVID under the new key makes Warrant fetch the bundle again.
        domain.key = ECKey.generate_key("P-256", parameters={"kid": "k2"})
        endpoint.keys = [domain.key]
        assert token(server, domain.svid(endpoint_url)).status_code == 200
        assert endpoint.fetches == 2
        # An unknown key right after is not fetched for again (at most once every 10 s).
        stranger = ECKey.generate_key("P-256", parameters={"kid": "k3"})
        assert token(server, domain.svid(endpoint_url, key=stranger)).status_code == 401
        assert endpoint.fetches == 2
    finally:
        assert server.stop() == 0
        endpoint.shutdown()
