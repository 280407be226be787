"""Agent keys and RFC 7523 client assertions.

An agent proves who it is to the token endpoint with a short-lived JWT signed by its
Ed25519 key (``alg: EdDSA``), whose ``iss`` and ``sub`` are the agent id and whose
``aud`` is the token endpoint. ``warrant keygen NAME`` writes the private key as a JWK
(RFC 8037: ``kty: OKP``, ``crv: Ed25519``, ``x``, ``d``) to ``NAME.key.jwk``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .errors import KeyFileError

__all__ = ["ASSERTION_LIFETIME", "AgentKey"]

#: Lifetime of a client assertion, in seconds (the server accepts at most 3600).
ASSERTION_LIFETIME = 60


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decodes base64url with or without padding; raises ``ValueError`` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"not base64url: {e}") from None


class AgentKey:
    """An agent's id and its Ed25519 private key: what it needs to sign client assertions.

    The private key never appears in ``repr`` or ``str``.
    """

    __slots__ = ("_key", "agent_id")

    def __init__(self, agent_id: str, private_key: Ed25519PrivateKey) -> None:
        if not agent_id:
            raise KeyFileError("an agent key needs the agent's id")
        #: The agent id (``agt_...``) the key is registered to.
        self.agent_id = agent_id
        self._key = private_key

    @classmethod
    def from_jwk(cls, agent_id: str, jwk: Mapping[str, Any]) -> AgentKey:
        """Reads a private Ed25519 JWK (with ``d``); checks ``x`` when present."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise KeyFileError(f"not an Ed25519 JWK (kty {jwk.get('kty')!r}, crv {jwk.get('crv')!r})")
        d = jwk.get("d")
        if not isinstance(d, str):
            raise KeyFileError("the JWK holds no private key (`d`); use the `.key.jwk` file")
        try:
            seed = unb64url(d)
        except ValueError as e:
            raise KeyFileError(f"the JWK's `d` is {e}") from None
        if len(seed) != 32:
            raise KeyFileError("the JWK's `d` is not 32 bytes")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        x = jwk.get("x")
        if x is not None and x != b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)):
            raise KeyFileError("the JWK's `x` does not match its `d`")
        return cls(agent_id, key)

    @classmethod
    def from_file(cls, agent_id: str, path: str | os.PathLike[str]) -> AgentKey:
        """Reads the private JWK file ``warrant keygen`` writes (``NAME.key.jwk``)."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise KeyFileError(f"cannot read key file `{os.fspath(path)}`: {e.strerror or e}") from None
        try:
            jwk = json.loads(text)
        except json.JSONDecodeError:
            raise KeyFileError(f"`{os.fspath(path)}` is not a JSON JWK") from None
        if not isinstance(jwk, dict):
            raise KeyFileError(f"`{os.fspath(path)}` is not a JSON JWK")
        return cls.from_jwk(agent_id, jwk)

    @staticmethod
    def new_private_key() -> Ed25519PrivateKey:
        """A fresh Ed25519 private key from the operating system's CSPRNG."""
        return Ed25519PrivateKey.generate()

    @staticmethod
    def public_jwk_of(private_key: Ed25519PrivateKey) -> dict[str, str]:
        """The public JWK of ``private_key``, as an agent is registered with it."""
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}

    @staticmethod
    def private_jwk_of(private_key: Ed25519PrivateKey) -> dict[str, str]:
        """The private JWK of ``private_key`` (with ``d``): keep it secret."""
        seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {**AgentKey.public_jwk_of(private_key), "d": b64url(seed)}

    def public_jwk(self) -> dict[str, str]:
        """The public JWK (``kty``, ``crv``, ``x``) to register the agent with."""
        return self.public_jwk_of(self._key)

    def client_assertion(
        self,
        audience: str,
        *,
        now: float | None = None,
        lifetime: int = ASSERTION_LIFETIME,
        jti: str | None = None,
    ) -> str:
        """An RFC 7523 client assertion for ``audience`` (the token endpoint URL).

        ``iss`` = ``sub`` = the agent id, ``iat``, ``exp`` = ``iat`` + ``lifetime``, and a
        random ``jti`` (the server accepts each ``jti`` once).
        """
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.agent_id,
            "sub": self.agent_id,
            "aud": audience,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": jti if jti is not None else secrets.token_hex(16),
        }
        return sign_jws({"alg": "EdDSA", "typ": "JWT"}, claims, self._key)

    def __repr__(self) -> str:
        return f"AgentKey(agent_id={self.agent_id!r}, x={self.public_jwk()['x']!r})"


def sign_jws(header: Mapping[str, Any], claims: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    """A compact JWS of ``claims`` signed with ``key`` (EdDSA)."""

    def part(value: Mapping[str, Any]) -> str:
        return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))

    signing_input = f"{part(header)}.{part(claims)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"
