"""The job queue's tables are exactly what the pinned pgqueuer expects."""

from __future__ import annotations

import asyncpg
from pgqueuer import Queries
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.worker import asyncpg_dsn


async def test_the_queue_tables_are_the_pinned_pgqueuers(engine: AsyncEngine) -> None:
    """Migration 0007 carries pgqueuer's DDL as a literal; a pgqueuer whose schema differs
    fails here with the statements a new migration must apply."""
    conn = await asyncpg.connect(asyncpg_dsn(engine))
    try:
        plan = await Queries.from_asyncpg_connection(conn).plan_upgrade()
    finally:
        await conn.close()
    assert plan.statements == (), "\n".join(plan.statements)
