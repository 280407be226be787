"""Warrant's agent SDK.

Load an agent key, mint a warrant (or have one delegated), keep it fresh, present it to
an MCP gateway or any HTTP API, and ask Warrant for decisions::

    from warrant_sdk import AgentKey, WarrantAuth, WarrantClient

    key = AgentKey.from_file("agt_...", "bot.key.jwk")
    with WarrantClient("http://127.0.0.1:8080") as warrant:
        cache = warrant.minting(key, "nightly report", resource="http://127.0.0.1:8090/mcp/demo")
        auth = WarrantAuth(cache)  # httpx.Client(auth=auth) / httpx.AsyncClient(auth=auth)
        decision = warrant.authorize(cache.get(), "reports.read", "reports/2026-12")
"""

from .auth import WarrantAuth, httpx2_auth
from .cache import WarrantCache
from .dpop import DpopKey
from .client import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    WarrantClient,
)
from .errors import ApiError, KeyFileError, OAuthError, TransportError, WarrantError
from .keys import AgentKey
from .model import Decision, DecisionKind, Warrant, peek_claims

__all__ = [
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
    "AgentKey",
    "ApiError",
    "Decision",
    "DecisionKind",
    "DpopKey",
    "KeyFileError",
    "OAuthError",
    "TransportError",
    "Warrant",
    "WarrantAuth",
    "WarrantCache",
    "WarrantClient",
    "WarrantError",
    "httpx2_auth",
    "peek_claims",
]

__version__ = "0.1.0"
