"""Who may see which settlement rows: the operator everything, a partner its own."""

from __future__ import annotations

import uuid

from core.caller import Caller, Scope
from core.errors import DomainError, ErrorCode


def visible_party(caller: Caller, scope: str = Scope.SETTLEMENT_READ) -> uuid.UUID | None:
    """None for the operator (no filter); the caller's partner id otherwise."""
    if caller.is_operator:
        return None
    if caller.partner_id is None or not caller.has(scope):
        raise DomainError(ErrorCode.INVALID_SCOPE, f"this needs the {scope} scope", [])
    return caller.partner_id


def require_operator(caller: Caller) -> None:
    if not caller.is_operator:
        raise DomainError(ErrorCode.INVALID_SCOPE, "only the operator can do this", [])
