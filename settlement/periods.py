"""Settlement periods: exactly one OPEN at any time (a partial unique index guarantees it)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from settlement.records import PeriodRecord

COLUMNS = "id, status, starts_at, cutoff, closed_at, settled_at"


async def current_period(conn: AsyncConnection) -> PeriodRecord:
    row = (
        await conn.execute(text(f"SELECT {COLUMNS} FROM settlement_periods WHERE status = 'OPEN'"))
    ).one()
    return PeriodRecord(**row._mapping)


async def get_period(conn: AsyncConnection, period_id: uuid.UUID) -> PeriodRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM settlement_periods WHERE id = :id"), {"id": period_id}
        )
    ).one_or_none()
    return PeriodRecord(**row._mapping) if row else None


async def require_period(conn: AsyncConnection, period_id: uuid.UUID) -> PeriodRecord:
    period = await get_period(conn, period_id)
    if period is None:
        raise DomainError(ErrorCode.PERIOD_NOT_FOUND, "no such settlement period", ["periodId"])
    return period


async def list_periods(
    conn: AsyncConnection, after: uuid.UUID | None, limit: int
) -> list[PeriodRecord]:
    """A page in id order (ids are UUIDv7, so also in the order the periods were opened)."""
    rows = await conn.execute(
        text(
            f"SELECT {COLUMNS} FROM settlement_periods"
            " WHERE CAST(:after AS uuid) IS NULL OR id > :after ORDER BY id LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    return [PeriodRecord(**r._mapping) for r in rows]
