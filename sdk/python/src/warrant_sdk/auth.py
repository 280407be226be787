"""An :class:`httpx.Auth` that presents a warrant as ``Authorization: Bearer`` (or, for a
DPoP-bound warrant, ``Authorization: DPoP`` with a fresh proof on every request): what an
MCP client (or any httpx client) uses to call through Warrant's gateway.
:func:`httpx2_auth` gives the same for ``httpx2``, the HTTP client of ``mcp`` 2.x."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx

from .cache import WarrantCache
from .dpop import DpopKey
from .model import Warrant

__all__ = ["WarrantAuth", "httpx2_auth"]


class _BearerFlows:
    """The flows of :class:`WarrantAuth`, written against what ``httpx`` and ``httpx2``
    requests and responses have in common (``headers``, ``status_code``)."""

    def __init__(
        self, source: WarrantCache | Warrant | str, *, retry_unauthorized: bool = True, dpop: DpopKey | None = None
    ) -> None:
        self._source = source
        self._retry = retry_unauthorized
        self._dpop = dpop

    @staticmethod
    def _token(warrant: Warrant | str) -> str:
        return warrant.token if isinstance(warrant, Warrant) else warrant

    def _present(self, request: Any, warrant: Warrant | str) -> None:
        """Puts the warrant (and, with a DPoP key, a proof for this request) on ``request``."""
        token = self._token(warrant)
        if self._dpop is None:
            request.headers["Authorization"] = f"Bearer {token}"
        else:
            request.headers["Authorization"] = f"DPoP {token}"
            request.headers["DPoP"] = self._dpop.proof(request.method, str(request.url), token)

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """The flow for a synchronous client."""
        source = self._source
        warrant = source.get() if isinstance(source, WarrantCache) else source
        self._present(request, warrant)
        response = yield request
        if (
            response.status_code == 401
            and self._retry
            and isinstance(source, WarrantCache)
            and isinstance(warrant, Warrant)
        ):
            source.invalidate(warrant)
            self._present(request, source.get())
            yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """The flow for an asynchronous client (renewals run in a worker thread)."""
        source = self._source
        warrant = await source.aget() if isinstance(source, WarrantCache) else source
        self._present(request, warrant)
        response = yield request
        if (
            response.status_code == 401
            and self._retry
            and isinstance(source, WarrantCache)
            and isinstance(warrant, Warrant)
        ):
            source.invalidate(warrant)
            self._present(request, await source.aget())
            yield request


class WarrantAuth(_BearerFlows, httpx.Auth):
    """Puts a warrant in ``Authorization: Bearer`` on every request.

    ``source`` is a :class:`WarrantCache` (the usual case: the warrant is renewed before
    it expires), or one fixed :class:`Warrant` or token string. With a cache and
    ``retry_unauthorized`` (the default), a ``401`` answer drops the cached warrant and
    the request is sent once more with a fresh one; the second answer is final. Works with
    :class:`httpx.Client` and :class:`httpx.AsyncClient` (an async client renews in a
    worker thread). With ``dpop`` (the key the warrants are bound to), each request goes as
    ``Authorization: DPoP`` with a fresh proof for its method and URL.
    """

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for :class:`httpx.Client`."""
        return super().sync_auth_flow(request)

    def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow for :class:`httpx.AsyncClient`."""
        return super().async_auth_flow(request)


_httpx2_class: type | None = None


def httpx2_auth(
    source: WarrantCache | Warrant | str, *, retry_unauthorized: bool = True, dpop: DpopKey | None = None
) -> Any:
    """:class:`WarrantAuth` for ``httpx2`` clients (``httpx2.Client``,
    ``httpx2.AsyncClient``), the HTTP client of ``mcp`` 2.x: the same flows, as an
    ``httpx2.Auth``. Needs ``httpx2`` installed (it is not a dependency of this package);
    raises :class:`ImportError` otherwise."""
    global _httpx2_class
    if _httpx2_class is None:
        import httpx2  # type: ignore[import-not-found, unused-ignore]

        _httpx2_class = type("WarrantAuth2", (_BearerFlows, httpx2.Auth), {"__doc__": WarrantAuth.__doc__})
    return _httpx2_class(source, retry_unauthorized=retry_unauthorized, dpop=dpop)
