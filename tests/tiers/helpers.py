"""Helpers of the tier tests: a policy, a running worker, and the tier tables as stored."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.worker import Worker, WorkerSettings
from points.rules.model import FundingShare, TierRule
from points.tiers import evaluation
from points.tiers.members import member_tier
from points.tiers.policy import StoredTierPolicy, set_tier_policy

# Multipliers of 1: what the earn engine books stays the purchase's base points whatever the
# member's tier, so the tests' point counts do not depend on the engine.
SILVER = TierRule("SILVER", "Silver", 1000, Decimal(1))
GOLD = TierRule("GOLD", "Gold", 5000, Decimal(1))
TIERS = (SILVER, GOLD)


async def set_policy(
    engine: AsyncEngine,
    *,
    tiers: tuple[TierRule, ...] = TIERS,
    window_days: int = 365,
    grace_days: int = 10,
    funding: tuple[FundingShare, ...] = (),
) -> StoredTierPolicy:
    async with engine.begin() as c:
        return await set_tier_policy(
            c,
            actor="test",
            window_days=window_days,
            grace_days=grace_days,
            tiers=tiers,
            funding=funding,
        )


async def tier_of(engine: AsyncEngine, member_id: uuid.UUID) -> str:
    async with engine.connect() as c:
        return await member_tier(c, member_id)


async def tier_row(engine: AsyncEngine, member_id: uuid.UUID) -> Any:
    async with engine.connect() as c:
        return (
            await c.execute(
                text("SELECT * FROM member_tiers WHERE member_id = :m"), {"m": member_id}
            )
        ).one_or_none()


async def history(engine: AsyncEngine, member_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """(from, to, reason) of the member's tier changes, oldest first."""
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT from_tier, to_tier, reason FROM member_tier_changes"
                " WHERE member_id = :m ORDER BY at, id"
            ),
            {"m": member_id},
        )
        return [tuple(r) for r in rows]


async def tier_events(engine: AsyncEngine, member_id: uuid.UUID) -> list[dict[str, Any]]:
    """Payloads of the member's `member.tier_changed` events, oldest first."""
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT payload FROM outbox WHERE type = :t AND member_id = :m ORDER BY id"),
            {"t": evaluation.MEMBER_TIER_CHANGED, "m": member_id},
        )
        return [r.payload for r in rows]


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    """(policy versions, tiers_revision, audit entries): what setting a policy changes."""
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT (SELECT count(*) FROM tier_policies),"
                    " (SELECT tiers_revision FROM coalition_settings WHERE id = 1),"
                    " (SELECT count(*) FROM audit_log)"
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


@contextlib.asynccontextmanager
async def running_worker(engine: AsyncEngine) -> AsyncIterator[Worker]:
    """The outbox worker (relay, queue, delivery) with the tier consumer, as `coalition worker`
    runs it, on the given database."""
    settings = WorkerSettings(poll_interval=0.05, concurrency=2, stats_interval=60)
    worker = Worker(engine, [evaluation.CONSUMER], settings)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
