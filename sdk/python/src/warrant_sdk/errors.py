"""The exceptions the SDK raises; every one is a :class:`WarrantError`.

A caller that asks for a decision must treat any exception as a deny: the SDK never
turns a failure into an allow.
"""

from __future__ import annotations

__all__ = ["ApiError", "KeyFileError", "OAuthError", "TransportError", "WarrantError"]


class WarrantError(Exception):
    """Base class of every error the SDK raises."""


class KeyFileError(WarrantError):
    """An agent key (a JWK file or object) that cannot be used: unreadable, not JSON,
    not an Ed25519 private key, or whose public half does not match its private half."""


class TransportError(WarrantError):
    """The server could not be reached, or answered something that is not Warrant's
    wire format (no JSON, a field missing or of the wrong type)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status, when there was an answer.
        self.status = status


class OAuthError(WarrantError):
    """The token endpoint refused the request (RFC 6749 §5.2).

    ``error`` is the OAuth error code (``invalid_scope``, ``invalid_grant``,
    ``invalid_client``, ``invalid_request``, ``temporarily_unavailable``, ...) and
    ``error_description`` the server's explanation.
    """

    def __init__(
        self, status: int, error: str, error_description: str | None, *, retry_after: int | None = None
    ) -> None:
        text = f"{error}: {error_description}" if error_description else error
        super().__init__(f"token endpoint refused the request ({status}): {text}")
        #: The HTTP status (400, 401 or 429).
        self.status = status
        #: The OAuth error code.
        self.error = error
        #: The server's explanation, if any.
        self.error_description = error_description
        #: For 429: seconds to wait before retrying (the ``Retry-After`` header).
        self.retry_after = retry_after


class ApiError(WarrantError):
    """A Warrant API endpoint (``/v1/...``) answered an error: ``{error, message}`` with a
    4xx status (or a 5xx that says only that the server failed)."""

    def __init__(self, status: int, error: str, message: str | None, *, retry_after: int | None = None) -> None:
        text = f"{error}: {message}" if message else error
        super().__init__(f"Warrant API error ({status}): {text}")
        #: The HTTP status.
        self.status = status
        #: The machine-readable error (``invalid_request``, ``rate_limited``, ...).
        self.error = error
        #: The server's explanation, if any.
        self.message = message
        #: For 429: seconds to wait before retrying (the ``Retry-After`` header).
        self.retry_after = retry_after
