"""DPoP (RFC 9449): sender-constrained warrants.

A warrant minted with a DPoP proof is bound to the proof's key (its ``cnf.jkt``): a thief
who copies the warrant cannot use it without the private key. Every use then needs a new
proof, a short JWT signed with that key for the request's method and URL (and, when a
warrant goes with it, the warrant's hash). :class:`DpopKey` makes them; pass it to
:meth:`WarrantClient.mint`, :meth:`WarrantClient.exchange`, :meth:`WarrantClient.authorize`
and :class:`WarrantAuth`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .keys import AgentKey, b64url, sign_jws

__all__ = ["DpopKey"]


def _htu(url: str) -> str:
    """The URL as a proof names it: without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class DpopKey:
    """A key that DPoP-bound warrants are tied to, and the proofs made with it.

    Keep it in the process that uses the warrants (it is the point of binding that the
    key never travels with them). The private key never appears in ``repr``.
    """

    __slots__ = ("_key",)

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key if private_key is not None else Ed25519PrivateKey.generate()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK every proof carries."""
        return AgentKey.public_jwk_of(self._key)

    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint: the ``cnf.jkt`` of warrants bound to this key."""
        jwk = self.public_jwk()
        canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"))
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def proof(self, method: str, url: str, token: str | None = None, *, now: float | None = None) -> str:
        """A fresh proof for one request: ``method`` on ``url``, and, when a warrant goes
        with it, its hash (``ath``). Each proof is accepted once."""
        claims: dict[str, object] = {
            "htm": method.upper(),
            "htu": _htu(url),
            "iat": int(time.time() if now is None else now),
            "jti": secrets.token_urlsafe(16),
        }
        if token is not None:
            claims["ath"] = b64url(hashlib.sha256(token.encode("ascii")).digest())
        return sign_jws({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.public_jwk()}, claims, self._key)

    def __repr__(self) -> str:
        return f"DpopKey(jkt={self.thumbprint()!r})"
