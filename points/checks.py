"""What every points operation checks of its request before it reads anything: the calling
partner, references, idempotency keys, instants and point counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from ledger import idempotency
from ledger.text import has_lone_surrogate
from members.service import MemberRef

MAX_AMOUNT = Decimal("1000000000")
MAX_POINTS = 10**12
CLOCK_SKEW = timedelta(minutes=5)
MAX_HOLD_MINUTES = 7 * 24 * 60


def partner_of(caller: Caller, operation: str) -> uuid.UUID:
    if caller.partner_id is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{operation} is booked by a partner's client", []
        )
    return caller.partner_id


def check_text(value: str | None, field: str) -> None:
    """PostgreSQL text cannot hold a NUL character (nor UTF-8 a lone surrogate): refuse it
    as input, not as a crash."""
    if value is not None and "\x00" in value:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must not contain NUL", [field])
    if value is not None and has_lone_surrogate(value):
        raise DomainError(ErrorCode.INVALID_INPUT, idempotency.unicode_message(field), [field])


def check_reference(reference: str) -> None:
    if not reference.strip() or len(reference) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "reference must be 1 to 200 characters", ["reference"]
        )
    check_text(reference, "reference")


def check_key(key: str) -> None:
    if not key or len(key) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "idempotencyKey must be 1 to 200 characters",
            ["idempotencyKey"],
        )
    check_text(key, "idempotencyKey")


def check_instant(value: datetime | None, field: str) -> None:
    """A time must have a zone and exist in UTC ("0001-01-01T00:00+14:00" does not)."""
    if value is None:
        return
    if value.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} needs a time zone", [field])
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} is out of range", [field]) from exc


def check_points(points: int | None, field: str = "points") -> None:
    if points is not None and not 0 < points <= MAX_POINTS:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} must be 1 to {MAX_POINTS}", [field])


def ref_dict(ref: MemberRef) -> dict[str, Any]:
    return {"id": ref.id, "phone": ref.phone, "partnerRef": ref.partner_ref}


async def replay_or_claim(
    conn: AsyncConnection, caller: Caller, key: str, operation: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    check_key(key)
    digest = idempotency.request_hash(operation, request)
    return await idempotency.claim(conn, caller.client_id, key, operation, digest)
