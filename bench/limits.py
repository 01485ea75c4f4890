"""`python -m bench limits`: what the query-cost limit costs, per process and shared.

Scenarios 1 (the ceiling, `{ __typename }`: free, so it measures the limiter's own work), 2
(earns from 20 partners' clients) and 3 (every earn from one client: one bucket row for both
workers) against `coalition serve --workers N`, three times: the limit off, buckets per
process (COALITION_RATE_LIMIT_SHARED=0) and shared buckets leased from PostgreSQL. The
budget is set high enough that nothing is refused (a refusal is cheaper than an earn and
would flatter the figures; the GraphQL errors column shows there were none), so the
difference is the limiter's cost. The lease statements each run took are counted from
`rate_limit_buckets.leases`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bench.load import (
    Figures,
    _free_port,
    _tokens,
    cpu_sample,
    figures,
    start_server,
    stop_server,
    with_cpu,
    write_setup,
    wrk,
)
from bench.setup import OUT, bench_database_url, seed
from db.engine import create_engine
from db.migrate import upgrade

MODES = ("off", "per process", "shared")


@dataclass(frozen=True)
class LimitFigures:
    mode: str
    figures: Figures
    leases: int  # lease statements during the run (shared mode only)

    @property
    def leases_per_1000(self) -> float:
        return 1000 * self.leases / max(1, self.figures.requests)


def _settings(mode: str, capacity: int, restore: int, lease: int) -> dict[str, str]:
    if mode == "off":
        return {"COALITION_RATE_LIMIT_CAPACITY": "0"}
    return {
        "COALITION_RATE_LIMIT_CAPACITY": str(capacity),
        "COALITION_RATE_LIMIT_RESTORE": str(restore),
        "COALITION_RATE_LIMIT_LEASE": str(lease),
        "COALITION_RATE_LIMIT_SHARED": "1" if mode == "shared" else "0",
    }


async def _leases(url: str) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(
                text("SELECT coalesce(sum(leases), 0) FROM rate_limit_buckets")
            )
        return int(total or 0)
    finally:
        await engine.dispose()


def run_limits(
    *,
    workers: int,
    connections: int,
    seconds: int,
    members: int,
    capacity: int,
    restore: int,
    lease: int,
) -> list[LimitFigures]:
    OUT.mkdir(parents=True, exist_ok=True)
    url = bench_database_url("coalition_bench_limits")
    upgrade(url)

    async def _seed() -> Any:
        engine = create_engine(url, pool_size=2)
        try:
            return await seed(engine, partners=20, members=members, points=1_000_000)
        finally:
            await engine.dispose()

    seeded = asyncio.run(_seed())
    results: list[LimitFigures] = []
    for mode in MODES:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, workers, _settings(mode, capacity, restore, lease))
        try:
            setup = write_setup(_tokens(base, seeded.clients), seeded.phones, [])
            for name, script, env in (
                ("1 ceiling {__typename}", "typename.lua", None),
                ("2 earn, 20 partners", "earn.lua", None),
                ("3 earn, one client", "earn.lua", {"BENCH_HOT": "1"}),
            ):
                before_leases = asyncio.run(_leases(url))
                before = cpu_sample(server.pid)
                run = wrk(
                    script,
                    base,
                    connections=connections,
                    seconds=seconds,
                    setup=setup,
                    extra_env=env,
                )
                [measured] = with_cpu([figures(name, run)], before, cpu_sample(server.pid))
                leases = asyncio.run(_leases(url)) - before_leases
                results.append(LimitFigures(mode, measured, leases))
        finally:
            stop_server(server)
    return results
