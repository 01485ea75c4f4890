"""`coalition worker`, and the same worker inside `coalition serve` (unless `--no-worker`).

This is where the consumers are chosen (the outbox package knows none of them), where a
stand-alone worker handles SIGTERM, and where an API process keeps the outbox backlog figures
on its /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics import activity
from db.engine import create_engine
from outbox.delivery import Consumer
from outbox.metrics import BacklogReading, OutboxCollector, read_backlog
from outbox.worker import Periodic, Worker, WorkerSettings
from points.tiers import evaluation as tiers

log = logging.getLogger("coalition.worker")


def consumers() -> list[Consumer]:
    """Every consumer of the outbox, in the order the relay serves them."""
    return [activity.CONSUMER, tiers.CONSUMER]


def periodic() -> list[Periodic]:
    """What the worker runs now and then. The daily tier evaluation is looked at every
    COALITION_TIERS_CHECK_INTERVAL seconds (default 600; 0: never, e.g. when a cron job runs
    `coalition tiers evaluate`) and runs once per UTC day, and after a policy change."""
    every = float(os.environ.get("COALITION_TIERS_CHECK_INTERVAL", "600"))
    if every <= 0:
        return []
    return [Periodic("tiers", tiers.run_daily, interval=every, delay=min(every, 30))]


class OutboxRuntime:
    """What an API process runs beside its routes: the backlog figures always (they come from
    the database, so they are right whichever process consumes), the worker when asked."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: CollectorRegistry,
        *,
        run_worker: bool,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or WorkerSettings.from_env()
        self.consumers = consumers()
        self.reading = BacklogReading()
        self.worker = (
            Worker(engine, self.consumers, self.settings, periodic()) if run_worker else None
        )
        registry.register(OutboxCollector(self.reading))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._refresh()))
        if self.worker is not None:
            self._tasks.append(asyncio.create_task(self.worker.run()))

    async def stop(self) -> None:
        if not self._tasks:
            return
        refresher, *working = self._tasks
        refresher.cancel()
        if self.worker is not None and working:
            self.worker.stop()
            await asyncio.wait(working, timeout=self.settings.shutdown_timeout)
        for task in working:
            task.cancel()  # still delivering after the timeout: its job goes back to the queue
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _refresh(self) -> None:
        while True:
            try:
                self.reading.backlog = await read_backlog(self.engine, self.consumers)
            except Exception:
                self.reading.backlog = []  # absent rather than stale
                log.debug("outbox backlog not read; will retry", exc_info=True)
            await asyncio.sleep(self.settings.stats_interval)


async def run_worker_command(url: str, *, concurrency: int | None = None) -> None:
    """Run the worker until SIGTERM or SIGINT: the first lets running jobs finish, a second
    stops at once (a job cut short goes back to the queue)."""
    settings = WorkerSettings.from_env()
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=max(2, concurrency))
    engine = create_engine(url, pool_size=settings.concurrency + 1)
    worker = Worker(engine, consumers(), settings, periodic())
    running = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if worker.stopping:
            log.warning("stopping now")
            running.cancel()
        else:
            log.info("stopping: waiting for running jobs")
            worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    log.info("worker started: consumers %s", ", ".join(c.name for c in worker.consumers))
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await engine.dispose()
    log.info("worker stopped")
