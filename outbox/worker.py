"""The worker: the relay and pgqueuer's queue manager, each on its own connection, each
restarted after a failure (a database restart, a lost connection) until the worker stops.

Consumers run as pgqueuer entrypoints (`outbox.<name>`), their transactions on the given
engine's pool. Delivery is at least once:

- a worker that dies holding a job (SIGKILL, power loss) stops its heartbeat; after
  `heartbeat_timeout` another worker (or the same one restarted) picks the job again;
- a consumer that raises is retried with exponential backoff; after `max_attempts` its job is
  held with status `failed` (never deleted: its events wait, counted in the metrics);
- a stop (SIGTERM) lets running jobs finish; a job cancelled anyway is put back in the queue.

The receipts of `outbox.delivery` make every repeat harmless.

Beside delivery, the worker runs its `periodic` jobs (the daily tier evaluation): each is
called every `interval` seconds, restarted with backoff after a failure, and cancelled when
the worker stops. Every worker process runs them: a job decides itself whether there is work
and must be safe to run in several processes at once (a lock in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]
from pgqueuer import DatabaseRetryEntrypointExecutor, Job, Queries, QueueManager, RetryRequested
from pgqueuer.executors import EntrypointExecutorParameters
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.delivery import Consumer, EventRange, deliver
from outbox.relay import ensure_cursors, relay_once

log = logging.getLogger("coalition.worker")

APPLICATION_NAME = "coalition-worker"  # the worker's own connections, as pg_stat_activity shows

_PRUNE = """
WITH log AS (
  DELETE FROM pgqueuer_log WHERE aggregated AND created < now() - $1::float8 * interval '1 day'
)
DELETE FROM pgqueuer_statistics WHERE created < now() - $1::float8 * interval '1 day'
"""

_DISCONNECTS = (
    OSError,  # refused, reset, timed out
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection closed under a query
    asyncpg.exceptions.OperatorInterventionError,  # the server shutting down
)


@dataclass(frozen=True)
class Periodic:
    """A job run every `interval` seconds (the first time `delay` seconds after the start)."""

    name: str
    run: Callable[[AsyncEngine], Awaitable[object]]
    interval: float
    delay: float = 0


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4  # jobs one worker process runs at once
    poll_interval: float = 0.5  # seconds between relay rounds when the outbox is quiet
    batch: int = 1000  # events per job at most
    heartbeat_timeout: float = 30  # seconds without a heartbeat before a job is picked again
    max_attempts: int = 10  # failed deliveries of a job before it is held as failed
    shutdown_timeout: float = 30  # seconds running jobs get to finish when stopping
    log_retention_days: float = 14  # pgqueuer's job log and statistics are pruned past this
    stats_interval: float = 5  # seconds between readings of the backlog for /metrics
    test_hold: str | None = None  # test hook: see outbox.delivery.deliver

    @classmethod
    def from_env(cls) -> WorkerSettings:
        env = os.environ.get
        return cls(
            concurrency=max(2, int(env("COALITION_WORKER_CONCURRENCY", "4"))),
            poll_interval=float(env("COALITION_OUTBOX_POLL_INTERVAL", "0.5")),
            batch=max(1, int(env("COALITION_OUTBOX_BATCH", "1000"))),
            heartbeat_timeout=float(env("COALITION_WORKER_HEARTBEAT_TIMEOUT", "30")),
            max_attempts=int(env("COALITION_WORKER_MAX_ATTEMPTS", "10")),
            shutdown_timeout=float(env("COALITION_WORKER_SHUTDOWN_TIMEOUT", "30")),
            log_retention_days=float(env("COALITION_WORKER_LOG_RETENTION_DAYS", "14")),
            stats_interval=float(env("COALITION_OUTBOX_STATS_INTERVAL", "5")),
            test_hold=env("COALITION_WORKER_TEST_HOLD") or None,
        )


def asyncpg_dsn(engine: AsyncEngine) -> str:
    """The engine's database as a plain libpq URL for asyncpg (socket host kept in the query)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        consumers: Sequence[Consumer],
        settings: WorkerSettings,
        periodic: Sequence[Periodic] = (),
    ) -> None:
        self.engine = engine
        self.consumers = list(consumers)
        self.periodic = list(periodic)
        self.settings = settings
        self._stopping = asyncio.Event()
        self._queue: QueueManager | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking work; running jobs finish (`run` returns when they have)."""
        self._stopping.set()
        if self._queue is not None:
            self._queue.shutdown.set()

    async def run(self) -> None:
        await asyncio.gather(
            self._supervise("relay", self._relay),
            self._supervise("queue", self._serve_queue),
            *(self._every(job) for job in self.periodic),
        )

    async def _every(self, job: Periodic) -> None:
        await self._pause(job.delay)
        started = False

        async def body() -> None:
            nonlocal started
            if started:
                await self._pause(job.interval)
            started = True
            if self._stopping.is_set():
                return
            running = asyncio.ensure_future(job.run(self.engine))
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not running.done():  # stopping: its transaction rolls back
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
            if running.done() and not running.cancelled():
                running.result()  # a failure: restarted with backoff by _supervise

        await self._supervise(job.name, body)

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await body()
                backoff = 0.5
            except Exception as exc:
                # A lost database is expected now and then: one line, not a traceback.
                lost = isinstance(exc, _DISCONNECTS)
                log.warning(
                    "worker %s stopped (%s); restarting in %.1f s",
                    name,
                    f"{type(exc).__name__}: {exc}" if lost else "error",
                    backoff,
                    exc_info=not lost,
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, 30)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _connect(self, role: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            asyncpg_dsn(self.engine),
            server_settings={"application_name": f"{APPLICATION_NAME}-{role}"},
        )

    async def _relay(self) -> None:
        conn = await self._connect("relay")
        try:
            await ensure_cursors(conn, self.consumers)
            prune_at = time.monotonic()
            while not self._stopping.is_set():
                if time.monotonic() >= prune_at:  # hourly: pgqueuer keeps its log forever
                    await conn.execute(_PRUNE, self.settings.log_retention_days)
                    prune_at = time.monotonic() + 3600
                moved = 0
                for consumer in self.consumers:
                    moved = max(moved, await relay_once(conn, consumer, self.settings.batch))
                if moved < self.settings.batch:  # else a backlog: go on at once
                    await self._pause(self.settings.poll_interval)
        finally:
            await _close(conn)

    async def _serve_queue(self) -> None:
        conn = await self._connect("queue")
        try:
            queue = QueueManager(Queries.from_asyncpg_connection(conn))
            for consumer in self.consumers:
                self._register(queue, consumer)
            self._queue = queue
            if self._stopping.is_set():
                return
            per_round = max(1, self.settings.concurrency // 2)
            stale_after = timedelta(seconds=self.settings.heartbeat_timeout)
            await queue.run(
                # A dead worker's job sends no notification: look for it at least this often.
                dequeue_timeout=min(timedelta(seconds=30), stale_after),
                batch_size=per_round,
                max_concurrent_tasks=max(2 * per_round, self.settings.concurrency),
                heartbeat_timeout=stale_after,
            )
        finally:
            self._queue = None
            await _close(conn)

    def _register(self, queue: QueueManager, consumer: Consumer) -> None:
        settings = self.settings

        async def run_job(job: Job) -> None:
            try:
                await deliver(
                    self.engine, consumer, EventRange.decode(job.payload), hold=settings.test_hold
                )
            except asyncio.CancelledError:
                # pgqueuer logs a cancelled job as done and drops it: ask for a retry instead.
                raise RetryRequested(reason="the worker stopped mid-delivery") from None
            except Exception:
                # Retried with backoff by the executor; the reason is only in pgqueuer_log.
                log.warning(
                    "consumer %s failed (attempt %d); will retry",
                    consumer.name,
                    job.attempts + 1,
                    exc_info=True,
                )
                raise

        def executor(parameters: EntrypointExecutorParameters) -> DatabaseRetryEntrypointExecutor:
            return DatabaseRetryEntrypointExecutor(parameters, max_attempts=settings.max_attempts)

        queue.entrypoint(
            consumer.entrypoint,
            accepts_context=False,
            on_failure="hold",
            executor_factory=executor,
        )(run_job)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()
