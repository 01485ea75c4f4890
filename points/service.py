"""The points operations partners call: earn, redeem, reverse, hold, capture, void.

Each runs inside the caller's transaction: the idempotency key is claimed first and its
result stored with the effect, so a replay returns the first answer and a failure leaves
nothing behind (not even the key).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import idempotency, postings
from ledger.amounts import EXAMPLE
from ledger.earn_once import EarnToBook, KeyTaken, book_earn_once
from ledger.queries import TransferRecord, prefixed_transfer, prefixed_transfer_columns
from ledger.redeem_once import RedeemToBook, book_redeem_once
from ledger.text import has_lone_surrogate
from members.service import (
    MemberRef,
    check_ref_in_region,
    lookup_params,
    partner_lookup_sql,
    region_in_force,
    resolve,
)
from partners.earning import Purchase, compute_earn
from partners.service import (
    BEGINNING,
    EARN_CONTEXT_COLUMNS,
    EARN_CONTEXT_FROM,
    EARN_CONTEXT_WHERE,
    earn_context_of,
    get_partner,
)
from partners.settings import CoalitionSettings

MAX_AMOUNT = Decimal("1000000000")
MAX_POINTS = 10**12
CLOCK_SKEW = timedelta(minutes=5)
MAX_HOLD_MINUTES = 7 * 24 * 60


def _partner_of(caller: Caller, operation: str) -> uuid.UUID:
    if caller.partner_id is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{operation} is booked by a partner's client", []
        )
    return caller.partner_id


def _check_text(value: str | None, field: str) -> None:
    """PostgreSQL text cannot hold a NUL character (nor UTF-8 a lone surrogate): refuse it
    as input, not as a crash."""
    if value is not None and "\x00" in value:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must not contain NUL", [field])
    if value is not None and has_lone_surrogate(value):
        raise DomainError(ErrorCode.INVALID_INPUT, idempotency.unicode_message(field), [field])


def _check_reference(reference: str) -> None:
    if not reference.strip() or len(reference) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "reference must be 1 to 200 characters", ["reference"]
        )
    _check_text(reference, "reference")


def _check_key(key: str) -> None:
    if not key or len(key) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "idempotencyKey must be 1 to 200 characters",
            ["idempotencyKey"],
        )
    _check_text(key, "idempotencyKey")


def _check_instant(value: datetime | None, field: str) -> None:
    """A time must have a zone and exist in UTC ("0001-01-01T00:00+14:00" does not)."""
    if value is None:
        return
    if value.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} needs a time zone", [field])
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} is out of range", [field]) from exc


def _check_points(points: int | None, field: str = "points") -> None:
    if points is not None and not 0 < points <= MAX_POINTS:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} must be 1 to {MAX_POINTS}", [field])


def _ref_dict(ref: MemberRef) -> dict[str, Any]:
    return {"id": ref.id, "phone": ref.phone, "partnerRef": ref.partner_ref}


async def _replay_or_claim(
    conn: AsyncConnection, caller: Caller, key: str, operation: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    _check_key(key)
    digest = idempotency.request_hash(operation, request)
    return await idempotency.claim(conn, caller.client_id, key, operation, digest)


@dataclass(frozen=True)
class EarnOutcome:
    member_id: str
    transfer_id: str | None
    points: int
    lines: list[dict[str, Any]]
    replayed: bool = False
    # The booked transfer as stored (not part of the idempotent result).
    transfer: TransferRecord | None = None


def check_earn_before_key(reference: str, key: str, occurred_at: datetime | None) -> None:
    """What an earn refuses before it looks at its idempotency key (single and batch)."""
    _check_reference(reference)
    _check_instant(occurred_at, "occurredAt")
    if occurred_at is not None and occurred_at < BEGINNING:  # before any rate card
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "occurredAt is so old that its points would already have expired",
            ["occurredAt"],
        )
    _check_key(key)


def earn_request(
    member: MemberRef, amount: Decimal, reference: str, occurred_at: datetime | None
) -> dict[str, Any]:
    return {
        "member": _ref_dict(member),
        "amount": str(amount),
        "reference": reference,
        "occurredAt": occurred_at,
    }


# One read before the write: the stored key, the earn context and the member (binds :client,
# :key, :p, :at and the member lookup's :ref, :phone, :mid).
# On a replay it also returns the booked transfer, which the payload shows.
_EARN_PREFLIGHT = text(
    f"SELECT {EARN_CONTEXT_COLUMNS}, {idempotency.KEY_COLUMNS},"
    f" {partner_lookup_sql('p.id')} AS member_id, {prefixed_transfer_columns('t', 'stored_')}"
    f" FROM {EARN_CONTEXT_FROM} {idempotency.KEY_JOIN}"
    " LEFT JOIN transfers t ON t.id = CAST(k.result ->> 'transfer_id' AS uuid)"
    f" WHERE {EARN_CONTEXT_WHERE}"
)


async def earn_points(
    conn: AsyncConnection,
    caller: Caller,
    *,
    member: MemberRef,
    amount: Decimal,
    reference: str,
    occurred_at: datetime | None,
    idempotency_key: str,
) -> EarnOutcome:
    """An earn in two statements on an autocommit connection: one read (a replay ends
    there), then `ledger_book_earn`, which stores the key, the posting and its obligations
    atomically."""
    partner_id = _partner_of(caller, "earnPoints")
    check_earn_before_key(reference, idempotency_key, occurred_at)
    digest = idempotency.request_hash(
        "earnPoints", earn_request(member, amount, reference, occurred_at)
    )
    checked, read_in = await check_ref_in_region(conn, caller, member)
    row = (
        await conn.execute(
            _EARN_PREFLIGHT,
            {
                "client": caller.client_id,
                "key": idempotency_key,
                "p": partner_id,
                "at": occurred_at,
                **lookup_params(checked),
            },
        )
    ).one()
    stored = idempotency.stored_result(
        row.key_operation, row.key_hash, row.key_result, "earnPoints", digest
    )
    if stored is not None:
        return EarnOutcome(**stored, replayed=True, transfer=prefixed_transfer(row, "stored_"))
    context = earn_context_of(row)
    if (
        not amount.is_finite()
        or amount <= 0
        or amount > MAX_AMOUNT
        or amount.as_tuple().exponent < -context.currency_exponent  # type: ignore[operator]
    ):
        raise DomainError(
            ErrorCode.INVALID_AMOUNT,
            f"amount must be a decimal string such as {EXAMPLE}: positive, at most"
            f" {MAX_AMOUNT}, with at most {context.currency_exponent} decimals",
            ["amount"],
        )
    now = context.now
    booked_at = occurred_at or now
    if booked_at > now + CLOCK_SKEW:
        raise DomainError(ErrorCode.INVALID_INPUT, "occurredAt is in the future", ["occurredAt"])
    available_at = booked_at + timedelta(days=context.pending_days)
    expires_at = available_at + timedelta(days=context.points_validity_days)
    if expires_at <= now:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "occurredAt is so old that its points would already have expired",
            ["occurredAt"],
        )
    member_id: uuid.UUID | None = row.member_id
    if not region_in_force(read_in, context.default_region):  # it changed: look again
        member_id = await resolve(conn, caller, member)
    if member_id is None:
        raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    result = compute_earn(Purchase(amount=amount), context.card)
    lines = [asdict(line) for line in result.lines]
    earn = EarnToBook(
        member_id=member_id,
        issuer_id=partner_id,
        client_id=caller.client_id,
        transfer_id=new_id(),
        lot_id=new_id(),
        points=result.points,
        reference=reference,
        amount=amount,
        metadata={"explanation": lines, "rate_card_id": str(context.card.id)},
        occurred_at=booked_at,
        available_at=available_at,
        expires_at=expires_at,
    )
    outcome = EarnOutcome(
        member_id=str(member_id),
        transfer_id=str(earn.transfer_id) if result.points > 0 else None,
        points=result.points,
        lines=lines,
    )
    booked = await book_earn_once(
        conn, earn, key=idempotency_key, request_hash=digest, result=_stored(outcome)
    )
    if isinstance(booked, KeyTaken):  # a concurrent call with this key committed first
        stored = idempotency.stored_result(
            booked.operation, booked.request_hash, booked.result, "earnPoints", digest
        )
        assert stored is not None
        return EarnOutcome(**stored, replayed=True)
    if booked is None:
        return outcome
    transfer = TransferRecord(
        id=earn.transfer_id,
        code=postings.TransferCode.EARN,
        points=earn.points,
        member_id=member_id,
        partner_id=partner_id,
        client_id=caller.client_id,
        reference=reference,
        reversal_of_id=None,
        amount=amount,
        metadata=earn.metadata,
        occurred_at=booked_at,
        created_at=booked,
    )
    return replace(outcome, transfer=transfer)


def _stored(outcome: Any) -> dict[str, Any]:
    data = asdict(outcome)
    data.pop("replayed", None)
    data.pop("transfer", None)
    return data


@dataclass(frozen=True)
class RedeemOutcome:
    member_id: str
    transfer_id: str
    points: int
    value: str  # Decimal, in currency units
    replayed: bool = False
    transfer: TransferRecord | None = None  # as stored (not part of the idempotent result)


# One read before the write: the stored key (and its transfer), the redeeming partner, the
# coalition's settings and the member.
_REDEEM_PREFLIGHT = text(
    "SELECT p.name, p.accepts_redemption, s.currency, s.currency_exponent, s.point_value,"
    " s.default_region, s.funding_model, s.clearing_fee,"
    f" {idempotency.KEY_COLUMNS}, {partner_lookup_sql('p.id')} AS member_id,"
    f" {prefixed_transfer_columns('t', 'stored_')}"
    f" FROM coalition_settings s CROSS JOIN partners p {idempotency.KEY_JOIN}"
    " LEFT JOIN transfers t ON t.id = CAST(k.result ->> 'transfer_id' AS uuid)"
    " WHERE s.id = 1 AND p.id = :p"
)


async def redeem_points(
    conn: AsyncConnection,
    caller: Caller,
    *,
    member: MemberRef,
    points: int,
    reference: str,
    idempotency_key: str,
) -> RedeemOutcome:
    """A redemption in two statements on an autocommit connection, like `earn_points`."""
    partner_id = _partner_of(caller, "redeemPoints")
    _check_points(points)
    _check_reference(reference)
    _check_key(idempotency_key)
    request = {"member": _ref_dict(member), "points": points, "reference": reference}
    digest = idempotency.request_hash("redeemPoints", request)
    checked, read_in = await check_ref_in_region(conn, caller, member)
    row = (
        await conn.execute(
            _REDEEM_PREFLIGHT,
            {
                "client": caller.client_id,
                "key": idempotency_key,
                "p": partner_id,
                **lookup_params(checked),
            },
        )
    ).one()
    stored = idempotency.stored_result(
        row.key_operation, row.key_hash, row.key_result, "redeemPoints", digest
    )
    if stored is not None:
        return RedeemOutcome(**stored, replayed=True, transfer=prefixed_transfer(row, "stored_"))
    if not row.accepts_redemption:
        raise DomainError(
            ErrorCode.REDEMPTION_NOT_ACCEPTED, f"{row.name} does not accept points", []
        )
    member_id: uuid.UUID | None = row.member_id
    if not region_in_force(read_in, row.default_region):  # it changed: look again
        member_id = await resolve(conn, caller, member)
    if member_id is None:
        raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    settings = CoalitionSettings(
        currency=row.currency,
        currency_exponent=row.currency_exponent,
        point_value=row.point_value,
        default_region=row.default_region,
        funding_model=row.funding_model,
        clearing_fee=row.clearing_fee,
    )
    redeem = RedeemToBook(
        member_id=member_id,
        redeemer_id=partner_id,
        client_id=caller.client_id,
        transfer_id=new_id(),
        points=points,
        reference=reference,
    )
    outcome = RedeemOutcome(
        member_id=str(member_id),
        transfer_id=str(redeem.transfer_id),
        points=points,
        value=str(settings.money(points * settings.point_value)),
    )
    booked = await book_redeem_once(
        conn, redeem, key=idempotency_key, request_hash=digest, result=_stored(outcome)
    )
    if isinstance(booked, KeyTaken):  # a concurrent call with this key committed first
        stored = idempotency.stored_result(
            booked.operation, booked.request_hash, booked.result, "redeemPoints", digest
        )
        assert stored is not None
        return RedeemOutcome(**stored, replayed=True)
    transfer = TransferRecord(
        id=redeem.transfer_id,
        code=postings.TransferCode.REDEEM,
        points=points,
        member_id=member_id,
        partner_id=partner_id,
        client_id=caller.client_id,
        reference=reference,
        reversal_of_id=None,
        amount=None,
        metadata={},
        occurred_at=booked,
        created_at=booked,
    )
    return replace(outcome, transfer=transfer)


@dataclass(frozen=True)
class ReverseOutcome:
    member_id: str
    transfer_id: str
    points: int
    replayed: bool = False


async def reverse_transfer(
    conn: AsyncConnection,
    caller: Caller,
    *,
    transfer_id: uuid.UUID,
    points: int | None,
    reason: str | None,
    idempotency_key: str,
) -> ReverseOutcome:
    _check_points(points)
    if reason is not None and len(reason) > 500:
        raise DomainError(ErrorCode.INVALID_INPUT, "reason is at most 500 characters", ["reason"])
    _check_text(reason, "reason")
    request = {"transferId": str(transfer_id), "points": points, "reason": reason}
    stored = await _replay_or_claim(conn, caller, idempotency_key, "reverseTransfer", request)
    if stored is not None:
        return ReverseOutcome(**stored, replayed=True)
    row = (
        await conn.execute(
            text("SELECT id, code, points, member_id, partner_id FROM transfers WHERE id = :t"),
            {"t": transfer_id},
        )
    ).one_or_none()
    # Another partner's transfer is reported exactly like a missing one.
    if row is None or row.member_id is None or not caller.can_see_partner(row.partner_id):
        raise DomainError(ErrorCode.TRANSFER_NOT_FOUND, "no such transfer", ["transferId"])
    original = postings.OriginalTransfer(
        id=row.id,
        code=row.code,
        points=int(row.points),
        member_id=row.member_id,
        partner_id=row.partner_id,
    )
    reversal = await postings.reverse(
        conn, original, points=points, client_id=caller.client_id, reason=reason
    )
    booked = await conn.scalar(text("SELECT points FROM transfers WHERE id = :t"), {"t": reversal})
    outcome = ReverseOutcome(
        member_id=str(row.member_id), transfer_id=str(reversal), points=int(booked or 0)
    )
    await idempotency.complete(conn, caller.client_id, idempotency_key, _stored(outcome))
    return outcome


@dataclass(frozen=True)
class HoldOutcome:
    member_id: str
    hold_id: str
    transfer_id: str | None = None
    replayed: bool = False


async def hold_points(
    conn: AsyncConnection,
    caller: Caller,
    *,
    member: MemberRef,
    points: int,
    reference: str,
    ttl_minutes: int,
    idempotency_key: str,
) -> HoldOutcome:
    partner_id = _partner_of(caller, "holdPoints")
    _check_points(points)
    _check_reference(reference)
    if not 1 <= ttl_minutes <= MAX_HOLD_MINUTES:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"ttlMinutes must be 1 to {MAX_HOLD_MINUTES}", ["ttlMinutes"]
        )
    request = {
        "member": _ref_dict(member),
        "points": points,
        "reference": reference,
        "ttl": ttl_minutes,
    }
    stored = await _replay_or_claim(conn, caller, idempotency_key, "holdPoints", request)
    if stored is not None:
        return HoldOutcome(**stored, replayed=True)
    partner = await get_partner(conn, partner_id)
    assert partner is not None
    if not partner.accepts_redemption:
        raise DomainError(
            ErrorCode.REDEMPTION_NOT_ACCEPTED, f"{partner.name} does not accept points", []
        )
    member_id = await resolve(conn, caller, member)
    hold_id = await postings.hold(
        conn,
        member_id=member_id,
        partner_id=partner_id,
        client_id=caller.client_id,
        points=points,
        reference=reference,
        ttl=timedelta(minutes=ttl_minutes),
    )
    outcome = HoldOutcome(member_id=str(member_id), hold_id=str(hold_id))
    await idempotency.complete(conn, caller.client_id, idempotency_key, _stored(outcome))
    return outcome


async def _own_hold(conn: AsyncConnection, caller: Caller, hold_id: uuid.UUID) -> uuid.UUID:
    row = (
        await conn.execute(
            text("SELECT member_id, partner_id FROM holds WHERE id = :h"), {"h": hold_id}
        )
    ).one_or_none()
    if row is None or not caller.can_see_partner(row.partner_id):
        raise DomainError(ErrorCode.HOLD_NOT_FOUND, "no such hold", ["holdId"])
    member_id: uuid.UUID = row.member_id
    return member_id


async def capture_hold(
    conn: AsyncConnection,
    caller: Caller,
    *,
    hold_id: uuid.UUID,
    points: int | None,
    idempotency_key: str,
) -> HoldOutcome:
    _check_points(points)
    request = {"holdId": str(hold_id), "points": points}
    stored = await _replay_or_claim(conn, caller, idempotency_key, "captureHold", request)
    if stored is not None:
        return HoldOutcome(**stored, replayed=True)
    member_id = await _own_hold(conn, caller, hold_id)
    transfer_id = await postings.capture(conn, hold_id, points=points, client_id=caller.client_id)
    outcome = HoldOutcome(
        member_id=str(member_id), hold_id=str(hold_id), transfer_id=str(transfer_id)
    )
    await idempotency.complete(conn, caller.client_id, idempotency_key, _stored(outcome))
    return outcome


async def void_hold(
    conn: AsyncConnection, caller: Caller, *, hold_id: uuid.UUID, idempotency_key: str
) -> HoldOutcome:
    request = {"holdId": str(hold_id)}
    stored = await _replay_or_claim(conn, caller, idempotency_key, "voidHold", request)
    if stored is not None:
        return HoldOutcome(**stored, replayed=True)
    member_id = await _own_hold(conn, caller, hold_id)
    await postings.void(conn, hold_id)
    outcome = HoldOutcome(member_id=str(member_id), hold_id=str(hold_id))
    await idempotency.complete(conn, caller.client_id, idempotency_key, _stored(outcome))
    return outcome
