"""An :class:`httpx.Auth` that presents a warrant as ``Authorization: Bearer``: what an MCP
client (or any httpx client) uses to call through Warrant's gateway."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from .cache import WarrantCache
from .model import Warrant

__all__ = ["WarrantAuth"]


class WarrantAuth(httpx.Auth):
    """Puts a warrant in ``Authorization: Bearer`` on every request.

    ``source`` is a :class:`WarrantCache` (the usual case: the warrant is renewed before
    it expires), or one fixed :class:`Warrant` or token string. With a cache and
    ``retry_unauthorized`` (the default), a ``401`` answer drops the cached warrant and
    the request is sent once more with a fresh one; the second answer is final. Works with
    :class:`httpx.Client` and :class:`httpx.AsyncClient` (an async client renews in a
    worker thread).
    """

    def __init__(self, source: WarrantCache | Warrant | str, *, retry_unauthorized: bool = True) -> None:
        self._source = source
        self._retry = retry_unauthorized

    @staticmethod
    def _token(warrant: Warrant | str) -> str:
        return warrant.token if isinstance(warrant, Warrant) else warrant

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for :class:`httpx.Client`."""
        source = self._source
        warrant = source.get() if isinstance(source, WarrantCache) else source
        request.headers["Authorization"] = f"Bearer {self._token(warrant)}"
        response = yield request
        if (
            response.status_code == 401
            and self._retry
            and isinstance(source, WarrantCache)
            and isinstance(warrant, Warrant)
        ):
            source.invalidate(warrant)
            request.headers["Authorization"] = f"Bearer {source.get().token}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow for :class:`httpx.AsyncClient`."""
        source = self._source
        warrant = await source.aget() if isinstance(source, WarrantCache) else source
        request.headers["Authorization"] = f"Bearer {self._token(warrant)}"
        response = yield request
        if (
            response.status_code == 401
            and self._retry
            and isinstance(source, WarrantCache)
            and isinstance(warrant, Warrant)
        ):
            source.invalidate(warrant)
            request.headers["Authorization"] = f"Bearer {(await source.aget()).token}"
            yield request
