"""What every posting shares: the transfer codes, the posting transaction (hooks and the
member lock), the wallet, the spendable balance and the consumption of lots oldest-expiry first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import events, spending
from ledger.accounts import AccountCode, account_id


class TransferCode:
    EARN = "EARN"
    REDEEM = "REDEEM"
    REVERSAL = "REVERSAL"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"
    DEBT = "DEBT"  # the part of an earn reversal the member could not cover
    DEBT_REPAYMENT = "DEBT_REPAYMENT"
    BREAKAGE_REVERSAL = "BREAKAGE_REVERSAL"  # reversing an earn whose points had expired
    # Points of a purchase paid by another funder than the partner where it happened (a
    # partner, or the operator): from the funder's issuance account, with a lot it issued;
    # `parent_id` names the purchase's head transfer (`ledger.earn_sql`).
    BONUS = "BONUS"


@dataclass
class Posting:
    """The transfers one posting transaction booked, announced to subscribers at the end."""

    conn: AsyncConnection
    member_id: uuid.UUID | None
    booked: list[uuid.UUID] = field(default_factory=list)

    async def transfer(
        self,
        code: str,
        *,
        debit: uuid.UUID,
        credit: uuid.UUID,
        points: int,
        partner_id: uuid.UUID | None,
        client_id: str | None,
        reference: str | None = None,
        reversal_of: uuid.UUID | None = None,
        amount: Decimal | None = None,
        occurred_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        parent_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        transfer_id = new_id()
        await self.conn.execute(
            _INSERT_TRANSFER,
            {
                "id": transfer_id,
                "code": code,
                "debit": debit,
                "credit": credit,
                "points": points,
                "member": self.member_id,
                "partner": partner_id,
                "client": client_id,
                "reference": reference,
                "reversal_of": reversal_of,
                "amount": amount,
                "occurred_at": occurred_at,
                "metadata": metadata or {},
                "parent": parent_id,
            },
        )
        self.booked.append(transfer_id)
        return transfer_id


_INSERT_TRANSFER = text(
    "INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,"
    " partner_id, client_id, reference, reversal_of_id, amount, metadata_, occurred_at,"
    " created_at, parent_id) VALUES (:id, :code, :debit, :credit, :points, :member, :partner,"
    " :client, :reference, :reversal_of, :amount, :metadata,"
    " COALESCE(:occurred_at, clock_timestamp()), clock_timestamp(), :parent)"
).bindparams(bindparam("metadata", type_=JSONB))


@asynccontextmanager
async def posting(conn: AsyncConnection, member_id: uuid.UUID | None) -> AsyncIterator[Posting]:
    """Lock the member, collect what is booked, and announce it before the transaction ends."""
    await events.begin(conn)
    if member_id is not None:
        locked = await conn.scalar(
            text("SELECT id FROM members WHERE id = :m FOR NO KEY UPDATE"), {"m": member_id}
        )
        if locked is None:
            raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    current = Posting(conn, member_id)
    yield current
    await events.booked(conn, current.booked)


def wallet(member_id: uuid.UUID) -> uuid.UUID:
    return account_id(AccountCode.MEMBER_WALLET, member_id)


_SPENDABLE = text(
    f"SELECT {spending.spendable(':m', ' AND h.id IS DISTINCT FROM CAST(:h AS uuid)')}"
)


async def spendable(
    conn: AsyncConnection, member_id: uuid.UUID, *, exclude_hold: uuid.UUID | None = None
) -> int:
    """Available points minus active holds (the member must be locked by the caller)."""
    value = await conn.scalar(
        _SPENDABLE,
        {"m": member_id, "h": exclude_hold},
    )
    return int(value or 0)


# Oldest expiry first (`ledger.spending`), optionally only lots past their pending period;
# one consumption per lot taken.
_CONSUME = text(
    f"""
    WITH {spending.take_oldest_first(":m", ":points", " AND (NOT :only_available OR l.available_at <= now())")}
    INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                              redeemer_partner_id, points)
    SELECT uuid7(), :t, take.id, :kind, take.issuer_partner_id, :redeemer, take.pts
    FROM take JOIN spent ON spent.id = take.id
    RETURNING points
    """
)


async def consume(
    conn: AsyncConnection,
    transfer_id: uuid.UUID,
    member_id: uuid.UUID,
    points: int,
    *,
    kind: str,
    redeemer: uuid.UUID | None,
    only_available: bool,
) -> int:
    """Take points from the member's lots, earliest expiry first, recording each consumption."""
    if points <= 0:
        return 0
    rows = await conn.execute(
        _CONSUME,
        {
            "m": member_id,
            "t": transfer_id,
            "points": points,
            "kind": kind,
            "redeemer": redeemer,
            "only_available": only_available,
        },
    )
    return sum(int(r.points) for r in rows)
