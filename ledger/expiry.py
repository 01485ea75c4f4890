"""The expiry sweep: close lots past `expires_at`, one member per transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.postings import expire_member
from ledger.queries import members_with_expired_lots


@dataclass(frozen=True)
class ExpiryReport:
    members: int
    points: int


async def expire_due(engine: AsyncEngine, *, batch: int = 500) -> ExpiryReport:
    members = points = 0
    while True:
        async with engine.connect() as conn:
            due = await members_with_expired_lots(conn, batch)
        if not due:
            return ExpiryReport(members, points)
        for member_id in due:
            async with engine.begin() as conn:
                points += await expire_member(conn, member_id)
            members += 1
