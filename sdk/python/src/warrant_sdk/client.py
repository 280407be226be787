"""The Warrant client: mint and delegate warrants at the token endpoint, and ask for
decisions at ``/v1/authorize``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from .cache import WarrantCache
from .dpop import DpopKey
from .errors import ApiError, OAuthError, TransportError
from .keys import AgentKey
from .model import Decision, Warrant

__all__ = [
    "ASSERTION_TYPE_JWT_BEARER",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
    "WarrantClient",
]

#: ``grant_type`` of a root warrant (RFC 6749 §4.4).
GRANT_CLIENT_CREDENTIALS = "client_credentials"
#: ``grant_type`` of a delegation (RFC 8693).
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
#: ``client_assertion_type`` of an RFC 7523 client assertion.
ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: ``subject_token_type`` of a warrant.
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
#: ``subject_token_type`` of a human's session (an ID token).
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
#: A JWT of either kind (the server tells them apart); also the ``actor_token_type``.
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"

Scope = str | Iterable[str]
Budget = str | Mapping[str, int]


def _error_fields(body: Any, text_key: str) -> tuple[str, str | None]:
    """An error body's code (``error``; ``server_error`` when it names none) and its text
    (``text_key``: ``error_description`` for OAuth errors, ``message`` for the API's)."""
    error = body.get("error") if isinstance(body, dict) else None
    text = body.get(text_key) if isinstance(body, dict) else None
    return (error if isinstance(error, str) else "server_error", text if isinstance(text, str) else None)


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after")
    return int(value) if value is not None and value.isdigit() else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise TransportError(
            f"the server answered {response.status_code} without JSON", status=response.status_code
        ) from None


def _scope_text(scope: Scope) -> str:
    return scope if isinstance(scope, str) else " ".join(scope)


def _budget_text(budget: Budget) -> str:
    if isinstance(budget, str):
        return budget
    return " ".join(f"{counter}={limit}" for counter, limit in budget.items())


class WarrantClient:
    """A client of one Warrant server.

    ``server`` is the server's base URL (``http://127.0.0.1:8080``). Pass ``http`` to use
    your own :class:`httpx.Client` (proxies, TLS settings); the client is then yours to
    close. Thread-safe: share one client between threads.
    """

    def __init__(self, server: str, *, http: httpx.Client | None = None, timeout: float = 10.0) -> None:
        #: The server's base URL, without a trailing ``/``.
        self.server = server.rstrip("/")
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._metadata: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> WarrantClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP client, if this client made it."""
        if self._owns_http:
            self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, self.server + path, **kwargs)
        except httpx.HTTPError as e:
            raise TransportError(f"cannot reach the Warrant server at {self.server}: {e}") from None

    def metadata(self) -> dict[str, Any]:
        """The server's RFC 8414 metadata (``/.well-known/oauth-authorization-server``),
        fetched once."""
        with self._lock:
            if self._metadata is None:
                response = self._request("GET", "/.well-known/oauth-authorization-server")
                body = _json(response)
                if response.status_code != 200 or not isinstance(body, dict):
                    raise TransportError("the server's metadata is unavailable", status=response.status_code)
                self._metadata = body
            return self._metadata

    @property
    def issuer(self) -> str:
        """The issuer URL (the ``iss`` of every warrant)."""
        issuer = self.metadata().get("issuer")
        if not isinstance(issuer, str):
            raise TransportError("the server's metadata names no issuer")
        return issuer

    @property
    def token_endpoint(self) -> str:
        """The token endpoint's URL as the server names it: the audience of client
        assertions."""
        endpoint = self.metadata().get("token_endpoint")
        if not isinstance(endpoint, str):
            raise TransportError("the server's metadata names no token endpoint")
        return endpoint

    def _token(self, form: dict[str, str], dpop: DpopKey | None = None) -> Warrant:
        headers = {"DPoP": dpop.proof("POST", self.token_endpoint)} if dpop is not None else {}
        response = self._request("POST", "/oauth2/token", data=form, headers=headers)
        body = _json(response)
        if response.status_code != 200:
            error, description = _error_fields(body, "error_description")
            raise OAuthError(response.status_code, error, description, retry_after=_retry_after(response))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise TransportError("the token endpoint answered no `access_token`", status=200)
        try:
            return Warrant.from_token(token)
        except ValueError as e:
            raise TransportError(f"the token endpoint answered something that is not a warrant: {e}") from None

    @staticmethod
    def _ask(
        form: dict[str, str], scope: Scope | None, ttl: int | None, budget: Budget | None, resource: str | None
    ) -> dict[str, str]:
        if scope is not None:
            form["scope"] = _scope_text(scope)
        if ttl is not None:
            form["ttl"] = str(int(ttl))
        if budget is not None:
            form["budget"] = _budget_text(budget)
        if resource is not None:
            form["resource"] = resource
        return form

    def mint(
        self,
        key: AgentKey,
        purpose: str,
        *,
        scope: Scope | None = None,
        ttl: int | None = None,
        budget: Budget | None = None,
        resource: str | None = None,
        dpop: DpopKey | None = None,
    ) -> Warrant:
        """A root warrant for an autonomous agent: client credentials with a client
        assertion signed by ``key``. With ``dpop``, the warrant is bound to that key (RFC
        9449): it is then used only with proofs made by it (pass the same key to
        :meth:`authorize` and :class:`WarrantAuth`).

        ``purpose`` is the task's purpose (1 to 500 printable characters). ``scope``
        narrows the agent's max scope (a string or permissions); ``ttl`` asks for a
        lifetime in seconds (capped by the server); ``budget`` sets counters
        (``{"estimated_cost": 5000}``); ``resource`` (RFC 8707) is the URL of the
        resource server the warrant is for, e.g. the gateway's MCP URL, and becomes its
        ``aud``. Raises :class:`OAuthError` with the server's ``error`` when refused.
        """
        form = {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "client_assertion_type": ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": key.client_assertion(self.token_endpoint),
            "task_purpose": purpose,
        }
        return self._token(self._ask(form, scope, ttl, budget, resource), dpop)

    def exchange(
        self,
        key: AgentKey,
        subject_token: Warrant | str,
        *,
        subject_token_type: str | None = None,
        purpose: str | None = None,
        scope: Scope | None = None,
        ttl: int | None = None,
        budget: Budget | None = None,
        resource: str | None = None,
        dpop: DpopKey | None = None,
        holder_proof: str | None = None,
    ) -> Warrant:
        """Delegation (RFC 8693 token exchange): a warrant for the agent of ``key``, acting
        for ``subject_token``: a parent warrant, or a human's session to start delegated
        work.

        ``dpop`` binds the new warrant to that key. A DPoP-bound parent can only be
        delegated to a bound child, and only with its holder's consent: ``holder_proof``,
        which the parent's holder makes with :meth:`holder_proof` right before handing the
        parent over.

        A delegation only narrows: ``scope``, ``ttl`` and ``budget`` can ask for less
        than the parent holds, never more (``invalid_scope`` otherwise). ``purpose`` is
        required when ``subject_token`` is a human's session (a new task) and ignored
        for a parent warrant. ``subject_token_type`` defaults to the access-token type for
        a :class:`Warrant` and to the generic JWT type for a string (the server tells a
        warrant from a session). ``resource`` as in :meth:`mint`.
        """
        if isinstance(subject_token, Warrant):
            subject, kind = subject_token.token, subject_token_type or TOKEN_TYPE_ACCESS_TOKEN
        else:
            subject, kind = subject_token, subject_token_type or TOKEN_TYPE_JWT
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": kind,
            "actor_token": key.client_assertion(self.token_endpoint),
            "actor_token_type": TOKEN_TYPE_JWT,
        }
        if purpose is not None:
            form["task_purpose"] = purpose
        if holder_proof is not None:
            form["subject_dpop"] = holder_proof
        return self._token(self._ask(form, scope, ttl, budget, resource), dpop)

    def holder_proof(self, parent: Warrant | str, dpop: DpopKey) -> str:
        """The consent of the holder of a DPoP-bound ``parent`` (made with its key
        ``dpop``) to one delegation of it, valid for a minute: hand it to the agent that
        exchanges ``parent``, which passes it as ``holder_proof``."""
        token = parent.token if isinstance(parent, Warrant) else parent
        return dpop.proof("POST", self.token_endpoint, token)

    def authorize(
        self,
        warrant: Warrant | str,
        action: str,
        resource: str,
        *,
        resource_attrs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
        dpop: DpopKey | None = None,
    ) -> Decision:
        """Asks whether ``warrant`` may do ``action`` on ``resource`` now. A DPoP-bound
        warrant needs its key as ``dpop`` (a fresh proof goes with the request).

        ``resource_attrs`` and ``context`` are caller input that policies can read (to
        deny more). After a ``pending`` decision is approved, send the same request with
        ``approval_id``. Any exception means no decision: treat it as a deny.
        """
        body: dict[str, Any] = {
            "token": warrant.token if isinstance(warrant, Warrant) else warrant,
            "action": action,
            "resource": resource,
        }
        if resource_attrs is not None:
            body["resource_attrs"] = dict(resource_attrs)
        if context is not None:
            body["context"] = dict(context)
        if approval_id is not None:
            body["approval_id"] = approval_id
        headers = {}
        if dpop is not None:
            headers["DPoP"] = dpop.proof("POST", self.issuer + "/v1/authorize", body["token"])
        response = self._request("POST", "/v1/authorize", json=body, headers=headers)
        answer = _json(response)
        if response.status_code != 200:
            error, message = _error_fields(answer, "message")
            raise ApiError(response.status_code, error, message, retry_after=_retry_after(response))
        return Decision.from_json(answer)

    def minting(
        self,
        key: AgentKey,
        purpose: str,
        *,
        scope: Scope | None = None,
        ttl: int | None = None,
        budget: Budget | None = None,
        resource: str | None = None,
        margin: float = 30.0,
        clock: Callable[[], float] | None = None,
        dpop: DpopKey | None = None,
    ) -> WarrantCache:
        """A :class:`WarrantCache` that mints a new root warrant (with these arguments)
        whenever the cached one is about to expire. Each renewal is a new task."""

        def renew() -> Warrant:
            return self.mint(key, purpose, scope=scope, ttl=ttl, budget=budget, resource=resource, dpop=dpop)

        return WarrantCache(renew, margin=margin, clock=clock)

    def delegating(
        self,
        key: AgentKey,
        parent: WarrantCache | Warrant | str,
        *,
        scope: Scope | None = None,
        ttl: int | None = None,
        budget: Budget | None = None,
        resource: str | None = None,
        margin: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> WarrantCache:
        """A :class:`WarrantCache` of warrants delegated to ``key``'s agent from
        ``parent`` (a cache of the parent's warrants, renewed as needed, or one fixed
        warrant), exchanged anew whenever the cached one is about to expire."""

        def renew() -> Warrant:
            subject = parent.get() if isinstance(parent, WarrantCache) else parent
            return self.exchange(key, subject, scope=scope, ttl=ttl, budget=budget, resource=resource)

        return WarrantCache(renew, margin=margin, clock=clock)
