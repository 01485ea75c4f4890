"""The points operations partners call besides the earn (`points.earn`): redeem, reverse,
hold, capture, void.

Each runs inside the caller's transaction: the idempotency key is claimed first and its
result stored with the effect, so a replay returns the first answer and a failure leaves
nothing behind (not even the key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import idempotency, postings
from ledger.earn_once import KeyTaken
from ledger.queries import EARNED_AT, TransferRecord, prefixed_transfer, prefixed_transfer_columns
from ledger.redeem_once import RedeemToBook, book_redeem_once
from members.service import (
    MemberRef,
    check_ref_in_region,
    lookup_params,
    partner_lookup_sql,
    region_in_force,
    resolve,
)
from partners.service import get_partner
from partners.settings import CoalitionSettings
from points.checks import (
    MAX_HOLD_MINUTES,
    check_key,
    check_points,
    check_reference,
    check_text,
    partner_of,
    ref_dict,
    replay_or_claim,
)
from points.earn import EarnOutcome, EarnQuote, earn_points, quote_earn, stored_result
from points.pricing import forget_budgets

__all__ = ["EarnOutcome", "EarnQuote", "earn_points", "quote_earn"]


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
    partner_id = partner_of(caller, "redeemPoints")
    check_points(points)
    check_reference(reference)
    check_key(idempotency_key)
    request = {"member": ref_dict(member), "points": points, "reference": reference}
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
        conn, redeem, key=idempotency_key, request_hash=digest, result=stored_result(outcome)
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
    check_points(points)
    if reason is not None and len(reason) > 500:
        raise DomainError(ErrorCode.INVALID_INPUT, "reason is at most 500 characters", ["reason"])
    check_text(reason, "reason")
    request = {"transferId": str(transfer_id), "points": points, "reason": reason}
    stored = await replay_or_claim(conn, caller, idempotency_key, "reverseTransfer", request)
    if stored is not None:
        return ReverseOutcome(**stored, replayed=True)
    row = (
        await conn.execute(
            text(
                "SELECT id, code, points, member_id, partner_id,"
                " COALESCE(CAST(metadata_ ->> :earned_at AS uuid), partner_id) AS booked_by"
                " FROM transfers WHERE id = :t"
            ),
            {"t": transfer_id, "earned_at": EARNED_AT},
        )
    ).one_or_none()
    # Another partner's transfer is reported exactly like a missing one.
    if row is None or row.member_id is None or not caller.can_see_partner(row.booked_by):
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
    booked = await postings.reversal_points(conn, reversal)
    forget_budgets()
    outcome = ReverseOutcome(member_id=str(row.member_id), transfer_id=str(reversal), points=booked)
    await idempotency.complete(conn, caller.client_id, idempotency_key, stored_result(outcome))
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
    partner_id = partner_of(caller, "holdPoints")
    check_points(points)
    check_reference(reference)
    if not 1 <= ttl_minutes <= MAX_HOLD_MINUTES:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"ttlMinutes must be 1 to {MAX_HOLD_MINUTES}", ["ttlMinutes"]
        )
    request = {
        "member": ref_dict(member),
        "points": points,
        "reference": reference,
        "ttl": ttl_minutes,
    }
    stored = await replay_or_claim(conn, caller, idempotency_key, "holdPoints", request)
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
    await idempotency.complete(conn, caller.client_id, idempotency_key, stored_result(outcome))
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
    check_points(points)
    request = {"holdId": str(hold_id), "points": points}
    stored = await replay_or_claim(conn, caller, idempotency_key, "captureHold", request)
    if stored is not None:
        return HoldOutcome(**stored, replayed=True)
    member_id = await _own_hold(conn, caller, hold_id)
    transfer_id = await postings.capture(conn, hold_id, points=points, client_id=caller.client_id)
    outcome = HoldOutcome(
        member_id=str(member_id), hold_id=str(hold_id), transfer_id=str(transfer_id)
    )
    await idempotency.complete(conn, caller.client_id, idempotency_key, stored_result(outcome))
    return outcome


async def void_hold(
    conn: AsyncConnection, caller: Caller, *, hold_id: uuid.UUID, idempotency_key: str
) -> HoldOutcome:
    request = {"holdId": str(hold_id)}
    stored = await replay_or_claim(conn, caller, idempotency_key, "voidHold", request)
    if stored is not None:
        return HoldOutcome(**stored, replayed=True)
    member_id = await _own_hold(conn, caller, hold_id)
    await postings.void(conn, hold_id)
    outcome = HoldOutcome(member_id=str(member_id), hold_id=str(hold_id))
    await idempotency.complete(conn, caller.client_id, idempotency_key, stored_result(outcome))
    return outcome
