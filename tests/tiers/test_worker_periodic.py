"""The worker's periodic jobs (the daily tier evaluation runs as one): run every interval,
restarted after a failure, cancelled when the worker stops; chosen in api/worker.py."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api import worker as api_worker
from outbox.worker import Periodic, Worker, WorkerSettings
from points.tiers import evaluation
from tests.outbox.helpers import wait_for


async def test_a_periodic_job_runs_again_after_a_failure_and_stops_with_the_worker(
    tiers_engine: AsyncEngine,
) -> None:
    calls: list[str] = []
    cancelled = asyncio.Event()

    async def job(engine: AsyncEngine) -> None:
        calls.append("run")
        if len(calls) == 2:
            raise RuntimeError("a failing run is retried")
        if len(calls) >= 4:
            try:
                await asyncio.Event().wait()  # a long run, cut short by the stop
            except asyncio.CancelledError:
                cancelled.set()
                raise

    settings = WorkerSettings(poll_interval=0.05, concurrency=2, stats_interval=60)
    worker = Worker(tiers_engine, [], settings, [Periodic("test", job, interval=0.05)])
    running = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: len(calls), lambda n: n >= 4, "four runs", 30)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert cancelled.is_set()


def test_the_worker_runs_the_daily_tier_evaluation_and_the_tier_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert evaluation.CONSUMER in api_worker.consumers()
    monkeypatch.delenv("COALITION_TIERS_CHECK_INTERVAL", raising=False)
    [job] = api_worker.periodic()
    assert job.run is evaluation.run_daily and job.interval == 600
    monkeypatch.setenv("COALITION_TIERS_CHECK_INTERVAL", "0")  # a cron job runs it instead
    assert api_worker.periodic() == []
