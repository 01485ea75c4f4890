"""Two-phase redemption: hold, capture (a redemption, booked by `ledger_book_redeem`), void."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import events
from ledger.postings.base import posting, spendable
from ledger.redeem_once import RedeemToBook, book_redeem_once


async def hold(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    partner_id: uuid.UUID,
    client_id: str,
    points: int,
    reference: str,
    ttl: timedelta,
) -> uuid.UUID:
    """Reserve available points (no transfer yet: nothing moves until capture)."""
    async with posting(conn, member_id):
        available = await spendable(conn, member_id)
        if available < points:
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS,
                f"the member has {max(available, 0)} points available, {points} requested",
                ["points"],
            )
        hold_id = new_id()
        await conn.execute(
            text(
                "INSERT INTO holds (id, member_id, partner_id, client_id, points, reference,"
                " status, expires_at) VALUES (:id, :m, :p, :c, :pts, :ref, 'ACTIVE',"
                " clock_timestamp() + :ttl)"
            ),
            {
                "id": hold_id,
                "m": member_id,
                "p": partner_id,
                "c": client_id,
                "pts": points,
                "ref": reference,
                "ttl": ttl,
            },
        )
    return hold_id


async def _active_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Any:
    row = (
        await conn.execute(
            text(
                "SELECT id, member_id, partner_id, points, reference,"
                " (status = 'ACTIVE' AND expires_at > now()) AS active"
                " FROM holds WHERE id = :h FOR UPDATE"
            ),
            {"h": hold_id},
        )
    ).one_or_none()
    if row is None:
        raise DomainError(ErrorCode.HOLD_NOT_FOUND, "no such hold", ["holdId"])
    if not row.active:
        raise DomainError(ErrorCode.HOLD_NOT_ACTIVE, "the hold is no longer active", ["holdId"])
    return row


async def capture(
    conn: AsyncConnection, hold_id: uuid.UUID, *, points: int | None, client_id: str | None
) -> uuid.UUID:
    """Turn a hold into a redemption of up to its points; the rest is released."""
    member_id = await conn.scalar(text("SELECT member_id FROM holds WHERE id = :h"), {"h": hold_id})
    if member_id is None:
        raise DomainError(ErrorCode.HOLD_NOT_FOUND, "no such hold", ["holdId"])
    # Same lock order as every posting: the begin hooks (settlement's period lock) first,
    # then the member row, so a period close queued in between cannot form a wait cycle.
    await events.begin(conn)
    await conn.execute(
        text("SELECT id FROM members WHERE id = :m FOR NO KEY UPDATE"), {"m": member_id}
    )
    row = await _active_hold(conn, hold_id)
    wanted = int(row.points) if points is None else points
    if wanted <= 0 or wanted > int(row.points):
        raise DomainError(
            ErrorCode.INVALID_AMOUNT, f"points must be between 1 and {row.points}", ["points"]
        )
    # The redemption itself is the single redemption's SQL function (`ledger_book_redeem`),
    # spending the hold's points; the caller has stored its own idempotency key.
    transfer_id = new_id()
    await book_redeem_once(
        conn,
        RedeemToBook(
            member_id=row.member_id,
            redeemer_id=row.partner_id,
            client_id=client_id,
            transfer_id=transfer_id,
            points=wanted,
            reference=row.reference,
            hold_id=hold_id,
        ),
        key=None,
    )
    await conn.execute(
        text(
            "UPDATE holds SET status = 'CAPTURED', resolved_at = clock_timestamp(),"
            " transfer_id = :t WHERE id = :h"
        ),
        {"t": transfer_id, "h": hold_id},
    )
    return transfer_id


async def void(conn: AsyncConnection, hold_id: uuid.UUID) -> None:
    await _active_hold(conn, hold_id)
    await conn.execute(
        text("UPDATE holds SET status = 'VOIDED', resolved_at = clock_timestamp() WHERE id = :h"),
        {"h": hold_id},
    )
