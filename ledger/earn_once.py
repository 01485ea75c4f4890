"""Booking a single earn with its idempotency key in one statement (`ledger.earn_sql`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from core.writes import mark_write_sent
from ledger.accounts import AccountCode, account_id


@dataclass(frozen=True)
class KeyTaken:
    """The key was already stored (by an earlier call, or a concurrent one that committed)."""

    operation: str
    request_hash: str
    result: dict[str, Any]


@dataclass(frozen=True)
class EarnToBook:
    member_id: uuid.UUID
    issuer_id: uuid.UUID
    client_id: str | None
    transfer_id: uuid.UUID
    lot_id: uuid.UUID
    points: int
    reference: str | None
    amount: Decimal | None
    metadata: dict[str, Any]
    occurred_at: datetime
    available_at: datetime
    expires_at: datetime


_BOOK_EARN = text(
    "SELECT * FROM ledger_book_earn(:client, :key, :hash, :result, :transfer, :lot, :member,"
    " :issuer, :issuance, :wallet, :debt, :points, :reference, :amount, :metadata,"
    " :occurred_at, :available_at, :expires_at)"
).bindparams(bindparam("result", type_=JSONB), bindparam("metadata", type_=JSONB))


async def book_earn_once(
    conn: AsyncConnection,
    earn: EarnToBook,
    *,
    key: str | None,
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
) -> datetime | KeyTaken | None:
    """Claim `key` with `result` and book `earn` (when it has points), atomically.

    Returns the transfer's created_at (None for a zero-point earn, which books only the key),
    or KeyTaken. On an autocommit connection the statement is its own transaction; inside a
    caller's transaction it is part of that one. With `key=None` no key is claimed: the
    caller has stored it already (a batch claims its rows' keys at once), or there is none.
    """
    mark_write_sent()
    row = (
        await conn.execute(
            _BOOK_EARN,
            {
                "client": earn.client_id,
                "key": key,
                "hash": request_hash,
                "result": result,
                "transfer": earn.transfer_id,
                "lot": earn.lot_id,
                "member": earn.member_id,
                "issuer": earn.issuer_id,
                "issuance": account_id(AccountCode.PARTNER_ISSUANCE, earn.issuer_id),
                "wallet": account_id(AccountCode.MEMBER_WALLET, earn.member_id),
                "debt": account_id(AccountCode.MEMBER_DEBT, earn.member_id),
                "points": earn.points,
                "reference": earn.reference,
                "amount": earn.amount,
                "metadata": earn.metadata,
                "occurred_at": earn.occurred_at,
                "available_at": earn.available_at,
                "expires_at": earn.expires_at,
            },
        )
    ).one()
    if row.status == "KEY_TAKEN":
        return KeyTaken(row.key_operation, row.key_hash, row.key_result)
    created_at: datetime | None = row.created_at
    return created_at
