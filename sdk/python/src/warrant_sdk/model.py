"""What the server hands out and answers: a :class:`Warrant` and a :class:`Decision`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import TransportError
from .keys import unb64url

__all__ = ["Decision", "DecisionKind", "Warrant", "peek_claims"]

#: Warrant's three answers.
DecisionKind = Literal["allow", "deny", "pending"]


def peek_claims(token: str) -> dict[str, Any]:
    """The claims of a JWS, read WITHOUT verifying its signature.

    The holder of a warrant reads its own warrant's claims (expiry, scope, task) this way;
    whoever decides on a warrant verifies it (the server, or a tool server against the
    JWKS). Raises :class:`ValueError` for anything that is not a JWS with a JSON object
    payload.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS (three dot-separated parts)")
    try:
        claims = json.loads(unb64url(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"the payload is not JSON: {e}") from None
    if not isinstance(claims, dict):
        raise ValueError("the payload is not a JSON object")
    return claims


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"the `{name}` claim is missing or not an integer")
    return value


@dataclass(frozen=True)
class Warrant:
    """A warrant: the token, its claims (read without verification, see
    :func:`peek_claims`) and its expiry. The token never appears in ``repr``."""

    #: The JWS to present as ``Authorization: Bearer``.
    token: str = field(repr=False)
    #: Its claims (``iss``, ``sub``, ``aud``, ``exp``, ``jti``, ``client_id``, ``scope``,
    #: ``act``, ``task``, ``mode``, ``owner``, ``parent``, ``budget``).
    claims: Mapping[str, Any] = field(repr=False, compare=False)
    #: The warrant id (``jti``, ``wrt_...``).
    id: str
    #: When it was issued (``iat``, Unix seconds).
    issued_at: int
    #: When it expires (``exp``, Unix seconds).
    expires_at: int
    #: Its permissions.
    scope: tuple[str, ...]

    @classmethod
    def from_token(cls, token: str) -> Warrant:
        """Reads a warrant's claims; raises :class:`ValueError` when it is not one."""
        claims = peek_claims(token)
        jti = claims.get("jti")
        if not isinstance(jti, str):
            raise ValueError("the `jti` claim is missing")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise ValueError("the `scope` claim is not a string")
        return cls(
            token=token,
            claims=claims,
            id=jti,
            issued_at=_int_claim(claims, "iat"),
            expires_at=_int_claim(claims, "exp"),
            scope=tuple(scope.split()),
        )

    @property
    def bound_to(self) -> str | None:
        """For a DPoP-bound warrant, the thumbprint of its key (``cnf.jkt``); else ``None``."""
        cnf = self.claims.get("cnf")
        value = cnf.get("jkt") if isinstance(cnf, Mapping) else None
        return value if isinstance(value, str) else None

    @property
    def agent(self) -> str | None:
        """The agent acting now (``client_id``)."""
        value = self.claims.get("client_id")
        return value if isinstance(value, str) else None

    @property
    def subject(self) -> str | None:
        """``sub``: the human for delegated work, the root agent for autonomous work."""
        value = self.claims.get("sub")
        return value if isinstance(value, str) else None

    @property
    def task_id(self) -> str | None:
        """The task the warrant serves (``task.id``)."""
        task = self.claims.get("task")
        value = task.get("id") if isinstance(task, Mapping) else None
        return value if isinstance(value, str) else None

    @property
    def audience(self) -> tuple[str, ...]:
        """``aud``, as a tuple (a JWT may carry one audience or several)."""
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return (aud,)
        if isinstance(aud, list):
            return tuple(a for a in aud if isinstance(a, str))
        return ()

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (negative once expired)."""
        return self.expires_at - now


def _str_list(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TransportError(f"the decision's `{name}` is not a list of strings")
    return tuple(value)


def _optional(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TransportError(f"the decision's `{name}` has the wrong type")
    return value


@dataclass(frozen=True)
class Decision:
    """Warrant's answer to ``POST /v1/authorize``.

    Only ``allow`` permits; ``pending`` means a human must approve first: once approved,
    retry the *same* request with ``approval_id`` and it is allowed once.
    """

    #: ``allow``, ``deny`` or ``pending``.
    decision: DecisionKind
    #: The decision's audit record (``dec_<seq>``).
    decision_id: str
    #: The machine-readable reason: ``allow``, ``scope``, ``policy``, ``revoked``,
    #: ``invalid_token``, ``approval_required``, ``approval``, ``budget``, ...
    code: str
    #: Why, in words.
    reasons: tuple[str, ...]
    #: The policies that decided.
    policies: tuple[str, ...] = ()
    #: The policy set version that decided, when Cedar ran.
    policy_version: int | None = None
    #: For ``pending``: the approval to retry with; for an approved retry: the one used.
    approval_id: str | None = None
    #: For ``rate_limited``: seconds until a retry can succeed.
    retry_after: int | None = None
    #: The acting agent's trust score (0 to 1), when the guardrails ran.
    trust: float | None = None

    @property
    def allowed(self) -> bool:
        """True only for ``allow``."""
        return self.decision == "allow"

    @property
    def pending(self) -> bool:
        """True when a human must approve first (see :attr:`approval_id`)."""
        return self.decision == "pending"

    @classmethod
    def from_json(cls, body: Any) -> Decision:
        """Reads the JSON answer; raises :class:`TransportError` when it is malformed."""
        if not isinstance(body, Mapping):
            raise TransportError("the decision is not a JSON object")
        decision = body.get("decision")
        if decision not in ("allow", "deny", "pending"):
            raise TransportError(f"unknown decision {decision!r}")
        decision_id, code = body.get("decision_id"), body.get("code")
        if not isinstance(decision_id, str) or not isinstance(code, str):
            raise TransportError("the decision has no `decision_id` or `code`")
        trust = _optional(body, "trust", (int, float))
        return cls(
            decision=decision,
            decision_id=decision_id,
            code=code,
            reasons=_str_list(body, "reasons"),
            policies=_str_list(body, "policies"),
            policy_version=_optional(body, "policy_version", int),
            approval_id=_optional(body, "approval_id", str),
            retry_after=_optional(body, "retry_after", int),
            trust=None if trust is None else float(trust),
        )
