"""A consumer that fails is retried with backoff and handles its events once when it recovers;
one that keeps failing has its job held as `failed` (never dropped), counted in the metrics;
the worker prunes pgqueuer's old job log."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import outbox
from outbox.delivery import Consumer, Event
from outbox.metrics import read_backlog
from outbox.worker import Worker, WorkerSettings
from tests.outbox.helpers import wait_for


async def _status(engine: AsyncEngine, consumer: Consumer) -> list[str]:
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT status::text FROM pgqueuer WHERE entrypoint = :e"),
            {"e": consumer.entrypoint},
        )
        return [r[0] for r in rows]


async def test_failing_consumers_are_retried_and_then_held(engine: AsyncEngine) -> None:
    handled: list[uuid.UUID] = []
    attempts: list[int] = []

    async def flaky_handle(conn: AsyncConnection, events: Sequence[Event]) -> None:
        attempts.append(len(events))
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")
        handled.extend(e.id for e in events)

    async def broken_handle(conn: AsyncConnection, events: Sequence[Event]) -> None:
        raise RuntimeError("always fails")

    flaky_name, broken_name = f"flaky-{secrets.token_hex(4)}", f"broken-{secrets.token_hex(4)}"
    flaky = Consumer(flaky_name, frozenset({f"test.{flaky_name}"}), flaky_handle)
    broken = Consumer(broken_name, frozenset({f"test.{broken_name}"}), broken_handle)
    worker = Worker(
        engine,
        [flaky, broken],
        WorkerSettings(poll_interval=0.1, heartbeat_timeout=5, max_attempts=2),
    )
    async with engine.begin() as c:  # a month-old line of pgqueuer's job log
        await c.execute(
            text(
                "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint,"
                " aggregated) VALUES (now() - interval '30 days', 0, 'successful', 0, :e, true)"
            ),
            {"e": flaky.entrypoint},
        )
    running = asyncio.create_task(worker.run())
    try:
        async with engine.begin() as c:
            event = await outbox.record(
                c, f"test.{flaky_name}", partner_id=None, member_id=None, payload={}
            )
            await outbox.record(
                c, f"test.{broken_name}", partner_id=None, member_id=None, payload={}
            )
        await wait_for(lambda: list(handled), lambda h: len(h) >= 1, "the retried delivery")
        assert handled == [event] and attempts == [1, 1]
        await wait_for(lambda: _status(engine, broken), lambda s: s == ["failed"], "the hold")
        backlog = {b.consumer: b for b in await read_backlog(engine, [flaky, broken])}
        assert (backlog[flaky_name].pending, backlog[flaky_name].failed_jobs) == (0, 0)
        assert (backlog[broken_name].pending, backlog[broken_name].failed_jobs) == (1, 1)
        assert backlog[broken_name].oldest is not None
        async with engine.connect() as c:  # pruned (14 days by default), the recent ones kept
            old = await c.scalar(
                text(
                    "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = :e"
                    " AND created < now() - interval '1 day'"
                ),
                {"e": flaky.entrypoint},
            )
        assert old == 0
    finally:
        worker.stop()
        await asyncio.wait_for(running, 60)
        async with engine.begin() as c:  # the held job is this test's alone
            await c.execute(
                text("DELETE FROM pgqueuer WHERE entrypoint = :e"), {"e": broken.entrypoint}
            )
