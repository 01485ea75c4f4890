"""Soak: scenario 2 for N minutes while sampling the server's memory (all its processes)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import psutil

from bench.load import (
    _book_replays,
    _free_port,
    _tokens,
    start_server,
    stop_server,
    write_setup,
    wrk,
)
from bench.setup import OUT, bench_database_url, seed
from db.engine import create_engine
from db.migrate import upgrade


@dataclass(frozen=True)
class SoakFigures:
    minutes: float
    requests: int
    rps: float
    rss_after_warmup_mib: float
    rss_last_mib: float
    rss_max_mib: float
    growth_percent: float
    samples: list[tuple[float, float]]


def _rss_mib(pid: int) -> float:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def run_soak(*, minutes: float, workers: int, connections: int, members: int) -> SoakFigures:
    OUT.mkdir(parents=True, exist_ok=True)
    url = bench_database_url("coalition_bench_soak")
    upgrade(url)

    async def _seed() -> Any:
        engine = create_engine(url, pool_size=2)
        try:
            return await seed(engine, partners=20, members=members, points=1_000_000)
        finally:
            await engine.dispose()

    seeded = asyncio.run(_seed())
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, workers)
    try:
        tokens = _tokens(base, seeded.clients)
        setup = write_setup(tokens, seeded.phones, _book_replays(base, tokens, seeded.phones, 10))
        seconds = int(minutes * 60)
        load = wrk("earn.lua", base, connections=connections, seconds=seconds, setup=setup)
        started = time.time()
        samples: list[tuple[float, float]] = []
        while load.poll() is None:
            samples.append((time.time() - started, _rss_mib(server.pid)))
            time.sleep(10)
        out, _ = load.communicate()
    finally:
        stop_server(server)
    import json

    figures = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    # Growth is measured from the end of the first minute (pools, caches and JIT-free warm-up).
    warm = [rss for t, rss in samples if t >= 60] or [rss for _, rss in samples]
    first, last, peak = warm[0], warm[-1], max(warm)
    return SoakFigures(
        minutes=minutes,
        requests=int(figures["requests"]),
        rps=float(figures["rps"]),
        rss_after_warmup_mib=first,
        rss_last_mib=last,
        rss_max_mib=peak,
        growth_percent=(peak - first) / first * 100,
        samples=samples,
    )
