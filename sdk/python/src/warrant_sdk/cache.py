"""A warrant that is always fresh: :class:`WarrantCache` renews it before it expires."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio.to_thread

from .model import Warrant

__all__ = ["WarrantCache"]


class WarrantCache:
    """Holds the current warrant and renews it, with ``renew``, before it expires.

    A warrant is renewed once ``clock()`` reaches ``expires_at - margin``; for a warrant
    that lives less than twice ``margin``, once half its lifetime has passed, so a short
    warrant is still used before it is replaced. ``clock`` returns Unix seconds (default
    :func:`time.time`; expiry is the server's ``exp``, so keep the clocks in step, as JWTs
    need anyway); tests inject their own. Thread-safe: concurrent callers share
    one renewal. :meth:`aget` renews in a worker thread so an event loop never blocks on
    the token endpoint. If ``renew`` raises, the exception propagates and the next call
    tries again.
    """

    def __init__(
        self, renew: Callable[[], Warrant], *, margin: float = 30.0, clock: Callable[[], float] | None = None
    ) -> None:
        if margin < 0:
            raise ValueError("margin must not be negative")
        self._renew = renew
        self._margin = margin
        self._clock = clock if clock is not None else time.time
        self._current: Warrant | None = None
        self._lock = threading.Lock()

    def _fresh(self, warrant: Warrant) -> bool:
        lifetime = warrant.expires_at - warrant.issued_at
        margin = min(self._margin, lifetime / 2)
        return self._clock() < warrant.expires_at - margin

    def get(self) -> Warrant:
        """The current warrant, renewed first if it is missing or about to expire."""
        with self._lock:
            current = self._current
            if current is None or not self._fresh(current):
                current = self._renew()
                self._current = current
            return current

    async def aget(self) -> Warrant:
        """:meth:`get` for async code: a fresh warrant is returned at once; a renewal
        runs in a worker thread."""
        with self._lock:
            current = self._current
            if current is not None and self._fresh(current):
                return current
        return await anyio.to_thread.run_sync(self.get)

    def peek(self) -> Warrant | None:
        """The cached warrant as it is, without renewing it (``None`` before the first
        :meth:`get`)."""
        with self._lock:
            return self._current

    def invalidate(self, warrant: Warrant | None = None) -> None:
        """Drops the cached warrant (only if it is ``warrant``, when given), so the next
        :meth:`get` renews: for a warrant a resource server refused (revoked, say)."""
        with self._lock:
            if warrant is None or self._current is warrant:
                self._current = None
