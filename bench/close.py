"""Scenario 8: close a settlement period holding 1,000,000 obligations across 50 partners."""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text

from bench.setup import bench_database_url
from db.engine import create_engine
from db.migrate import upgrade
from partners.service import create_partner
from settlement.close import close_period
from settlement.periods import current_period
from settlement.synthetic import seed_obligations


@dataclass(frozen=True)
class CloseFigures:
    obligations: int
    partners: int
    seed_seconds: float
    close_seconds: float
    positions: int
    instructions: int
    peak_rss_mib: float


async def _close(url: str, obligations: int, partners: int) -> CloseFigures:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            ids = [
                (
                    await create_partner(
                        conn, name=f"P{i}", slug=f"close-{i}", earn_rate=Decimal("1")
                    )
                ).id
                for i in range(partners)
            ]
        started = time.perf_counter()
        async with engine.begin() as conn:
            period = await current_period(conn)
            for _ in range(obligations // 100_000):
                await seed_obligations(conn, period.id, ids, 100_000)
        seeded = time.perf_counter() - started
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
        started = time.perf_counter()
        async with engine.begin() as conn:
            closed = await close_period(conn)
        took = time.perf_counter() - started
        async with engine.connect() as conn:
            positions = await conn.scalar(
                text("SELECT count(*) FROM settlement_positions WHERE period_id = :p"),
                {"p": closed.id},
            )
            instructions = await conn.scalar(
                text("SELECT count(*) FROM settlement_instructions WHERE period_id = :p"),
                {"p": closed.id},
            )
    finally:
        await engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return CloseFigures(
        obligations, partners, seeded, took, int(positions or 0), int(instructions or 0), peak
    )


def run_close(obligations: int = 1_000_000, partners: int = 50) -> CloseFigures:
    url = bench_database_url("coalition_bench_close")
    upgrade(url)
    return asyncio.run(_close(url, obligations, partners))
