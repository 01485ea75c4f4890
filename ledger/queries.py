"""Reads of the ledger: balances, transfers, holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import spending


@dataclass(frozen=True)
class BalanceRecord:
    available: int
    pending: int
    held: int
    debt: int


@dataclass(frozen=True)
class TransferRecord:
    id: uuid.UUID
    code: str
    points: int
    member_id: uuid.UUID | None
    partner_id: uuid.UUID | None
    client_id: str | None
    reference: str | None
    reversal_of_id: uuid.UUID | None
    amount: Decimal | None
    metadata: dict[str, Any]
    occurred_at: datetime
    created_at: datetime

    @property
    def booked_by_partner_id(self) -> uuid.UUID | None:
        """The partner whose request booked it (what a partner may see). A BONUS standing for
        a purchase the partner itself paid nothing for is paid by its funder (`partner_id`)
        but was booked by the partner where the purchase happened (`earned_at`)."""
        earned_at = self.metadata.get(EARNED_AT)
        return uuid.UUID(earned_at) if earned_at else self.partner_id


EARNED_AT = "earned_at"
"""Metadata of a BONUS heading a purchase: the partner where the purchase happened."""


@dataclass(frozen=True)
class HoldRecord:
    id: uuid.UUID
    member_id: uuid.UUID
    partner_id: uuid.UUID
    points: int
    reference: str
    status: str
    expires_at: datetime
    created_at: datetime
    transfer_id: uuid.UUID | None


TRANSFER_COLUMNS = (
    "id, code, points, member_id, partner_id, client_id, reference, reversal_of_id, amount,"
    " metadata_ AS metadata, occurred_at, created_at"
)
_TRANSFER_FIELDS = [
    "id", "code", "points", "member_id", "partner_id", "client_id", "reference",
    "reversal_of_id", "amount", "metadata", "occurred_at", "created_at",
]  # fmt: skip


def prefixed_transfer_columns(table: str, prefix: str) -> str:
    """The transfer's columns from `table`, named `prefix` + field, to join into a larger read."""
    return ", ".join(
        f"{table}.{'metadata_' if f == 'metadata' else f} AS {prefix}{f}" for f in _TRANSFER_FIELDS
    )


def prefixed_transfer(row: Any, prefix: str) -> TransferRecord | None:
    """The transfer read with `prefixed_transfer_columns`, or None when the join found none."""
    values = {f: getattr(row, prefix + f) for f in _TRANSFER_FIELDS}
    return TransferRecord(**values) if values["id"] is not None else None


def balance_columns(member: str) -> str:
    """A member's balance as the columns available, pending, held and debt, for any read that
    names the member by the SQL expression `member` (0 everywhere when it is NULL). Available
    and held points are `ledger.spending`'s: spendable = available - held."""
    m = member
    return (
        f"COALESCE((SELECT sum(l.remaining) FROM lots l WHERE {spending.available_lots(m)}), 0)"
        " AS available,"
        f" COALESCE((SELECT sum(remaining) FROM lots WHERE member_id = {m} AND remaining > 0"
        "   AND available_at > now() AND expires_at > now()), 0) AS pending,"
        f" COALESCE((SELECT sum(h.points) FROM holds h WHERE {spending.active_holds(m)}), 0)"
        " AS held,"
        f" COALESCE((SELECT sum(remaining) FROM debts WHERE member_id = {m}), 0) AS debt"
    )


def balance_of(row: Any) -> BalanceRecord:
    """The balance from a row holding `balance_columns`: held points are not available."""
    held = int(row.held)
    return BalanceRecord(
        available=max(0, int(row.available) - held),
        pending=int(row.pending),
        held=held,
        debt=int(row.debt),
    )


_BALANCE = text(f"SELECT {balance_columns('CAST(:m AS uuid)')}")


async def balance(conn: AsyncConnection, member_id: uuid.UUID) -> BalanceRecord:
    return balance_of((await conn.execute(_BALANCE, {"m": member_id})).one())


async def expiring(conn: AsyncConnection, member_id: uuid.UUID, within_days: int) -> int:
    value = await conn.scalar(
        text(
            "SELECT COALESCE(sum(remaining), 0) FROM lots WHERE member_id = :m AND remaining > 0"
            " AND expires_at > now() AND expires_at <= now() + make_interval(days => :d)"
        ),
        {"m": member_id, "d": within_days},
    )
    return int(value or 0)


async def transfers_by_id(
    conn: AsyncConnection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, TransferRecord]:
    rows = await conn.execute(
        text(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY(:ids)"), {"ids": ids}
    )
    return {r.id: TransferRecord(**r._mapping) for r in rows}


async def member_transfers(
    conn: AsyncConnection,
    member_id: uuid.UUID,
    *,
    partner_id: uuid.UUID | None,
    before: uuid.UUID | None,
    limit: int,
) -> list[TransferRecord]:
    """Newest first; a partner sees only the transfers booked at that partner."""
    rows = await conn.execute(
        text(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE member_id = :m"
            " AND (CAST(:p AS uuid) IS NULL OR partner_id = :p)"
            " AND (CAST(:before AS uuid) IS NULL OR id < :before)"
            " ORDER BY id DESC LIMIT :limit"
        ),
        {"m": member_id, "p": partner_id, "before": before, "limit": limit},
    )
    return [TransferRecord(**r._mapping) for r in rows]


async def holds_by_id(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[uuid.UUID, HoldRecord]:
    rows = await conn.execute(
        text(
            "SELECT id, member_id, partner_id, points, reference,"
            " CASE WHEN status = 'ACTIVE' AND expires_at <= now() THEN 'EXPIRED'"
            "  ELSE status END AS status, expires_at, created_at, transfer_id"
            " FROM holds WHERE id = ANY(:ids)"
        ),
        {"ids": ids},
    )
    return {r.id: HoldRecord(**r._mapping) for r in rows}


async def members_with_expired_lots(conn: AsyncConnection, limit: int) -> list[uuid.UUID]:
    rows = await conn.execute(
        text(
            "SELECT DISTINCT member_id FROM lots WHERE remaining > 0 AND expires_at <= now()"
            " LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [r.member_id for r in rows]
