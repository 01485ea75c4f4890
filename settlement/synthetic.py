"""Synthetic obligations for benchmarks: bulk-inserted in one INSERT ... SELECT."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def seed_obligations(
    conn: AsyncConnection, period_id: uuid.UUID, parties: Sequence[uuid.UUID], count: int
) -> int:
    """Insert `count` random REDEMPTION obligations between distinct `parties` (≥ 2) in the
    period, created at the transaction's start, with no source transfer."""
    if len(parties) < 2:
        raise ValueError("need at least two parties")
    result = await conn.execute(
        text(
            """
            INSERT INTO obligations (id, period_id, transfer_id, issuer_id, debtor_id,
                                     creditor_id, kind, points, unit_price, amount, created_at)
            SELECT gen_random_uuid(), :period, NULL, d, d, c, 'REDEMPTION', pts, 1, pts * 100,
                   now()
            FROM (
              SELECT (CAST(:parties AS uuid[]))[1 + i] AS d,
                     (CAST(:parties AS uuid[]))[1 + (i + 1 + j) % CAST(:n AS int)] AS c,
                     pts
              FROM (SELECT floor(random() * CAST(:n AS int))::int AS i,
                           floor(random() * (CAST(:n AS int) - 1))::int AS j,
                           1 + floor(random() * 1000)::bigint AS pts
                    FROM generate_series(1, CAST(:count AS int))) r
            ) pairs
            """
        ),
        {"period": period_id, "parties": list(parties), "n": len(parties), "count": count},
    )
    return int(result.rowcount)
