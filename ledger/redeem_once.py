"""Booking a single redemption with its idempotency key in one statement (`ledger.redeem_sql`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from core.writes import mark_write_sent
from ledger.accounts import AccountCode, account_id
from ledger.earn_once import KeyTaken
from ledger.redeem_sql import INSUFFICIENT_POINTS_SQLSTATE


@dataclass(frozen=True)
class RedeemToBook:
    member_id: uuid.UUID
    redeemer_id: uuid.UUID
    client_id: str | None
    transfer_id: uuid.UUID
    points: int
    reference: str | None
    hold_id: uuid.UUID | None = None  # a capture: the hold's own points are spendable


_BOOK_REDEEM = text(
    "SELECT * FROM ledger_book_redeem(:client, :key, :hash, :result, :transfer, :member,"
    " :redeemer, :wallet, :redemption, :points, :reference, :hold)"
).bindparams(bindparam("result", type_=JSONB))


def _insufficient(exc: DBAPIError) -> str | None:
    """The available points, when PostgreSQL refused the redemption as not covered."""
    cause = getattr(exc.orig, "__cause__", None)
    if getattr(cause, "sqlstate", None) != INSUFFICIENT_POINTS_SQLSTATE:
        return None
    return str(getattr(cause, "message", "0"))


async def book_redeem_once(
    conn: AsyncConnection,
    redeem: RedeemToBook,
    *,
    key: str | None,
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
) -> datetime | KeyTaken:
    """Claim `key` with `result` and book `redeem`, atomically: the transfer's created_at,
    KeyTaken, or INSUFFICIENT_POINTS (then nothing is stored). The statement is atomic by
    itself, or part of the caller's transaction when there is one. With `key=None` no key is
    claimed: the caller has stored its own (a hold's capture)."""
    mark_write_sent()
    try:
        row = (
            await conn.execute(
                _BOOK_REDEEM,
                {
                    "client": redeem.client_id,
                    "key": key,
                    "hash": request_hash,
                    "result": result,
                    "transfer": redeem.transfer_id,
                    "member": redeem.member_id,
                    "redeemer": redeem.redeemer_id,
                    "wallet": account_id(AccountCode.MEMBER_WALLET, redeem.member_id),
                    "redemption": account_id(AccountCode.PARTNER_REDEMPTION, redeem.redeemer_id),
                    "points": redeem.points,
                    "reference": redeem.reference,
                    "hold": redeem.hold_id,
                },
            )
        ).one()
    except DBAPIError as exc:
        available = _insufficient(exc)
        if available is None:
            raise
        raise DomainError(
            ErrorCode.INSUFFICIENT_POINTS,
            f"the member has {available} points available, {redeem.points} requested",
            ["points"],
        ) from exc
    if row.status == "KEY_TAKEN":
        return KeyTaken(row.key_operation, row.key_hash, row.key_result)
    created_at: datetime = row.created_at
    return created_at
