"""Real processes on a database of the test's own: a `coalition worker` killed with SIGKILL
while it holds an event delivers it again after a restart, counted once; a SIGTERM stops it
cleanly; `coalition serve --no-worker` consumes nothing, `coalition serve` does."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics.activity import Activity
from db.engine import create_engine
from tests.conftest import make_partner
from tests.ledger import helpers as h
from tests.outbox.helpers import (
    Process,
    activity_total,
    own_database,
    start,
    wait_for,
    worker_backends,
)
from tests.reliability.helpers import free_port

FAST = {
    "COALITION_OUTBOX_POLL_INTERVAL": "0.1",
    "COALITION_WORKER_HEARTBEAT_TIMEOUT": "2",  # a dead worker's job is picked again soon
    "COALITION_OUTBOX_STATS_INTERVAL": "0.2",
}


async def _jobs(engine: AsyncEngine, status: str) -> int:
    async with engine.connect() as c:
        count = await c.scalar(
            text(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'outbox.activity' AND status = CAST(:s AS pgqueuer_status)"
            ),
            {"s": status},
        )
    return int(count or 0)


async def _receipts(engine: AsyncEngine) -> dict[str, int]:
    """Receipts of the activity consumer per transfer reference."""
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT o.payload->>'reference' AS reference, count(*) AS n FROM outbox_receipts r"
                " JOIN outbox o ON o.id = r.event_id WHERE r.consumer = 'activity'"
                " GROUP BY 1"
            )
        )
        return {r.reference: int(r.n) for r in rows}


async def test_a_killed_workers_event_is_delivered_again_and_counted_once(
    database_url: str, tmp_path: Path
) -> None:
    hold = f"held-{secrets.token_hex(4)}"
    async with own_database(database_url) as url:
        engine = create_engine(url, pool_size=2)
        try:
            partner = await make_partner(engine)
            member = await h.new_member(engine, [partner.id])
            log = tmp_path / "worker.log"
            worker = start(
                ["worker"],
                database_url=url,
                log=log,
                env={**FAST, "COALITION_WORKER_TEST_HOLD": hold},
            )
            try:
                await h.earn(engine, partner.id, member, 100, reference="before")
                await h.earn(engine, partner.id, member, 20, reference=hold)
                await h.earn(engine, partner.id, member, 3, reference="after")
                await wait_for(
                    lambda: _log_says(worker.output(), "holding event"),
                    bool,
                    "the worker to hold the event",
                )
                assert await _jobs(engine, "picked") >= 1
            finally:
                worker.kill()  # SIGKILL while it holds the event, mid-transaction
            killed_at = await activity_total(engine, partner.id)
            assert killed_at.points_issued < 123  # the held delivery never committed

            worker = start(["worker"], database_url=url, log=log, env=FAST)
            try:
                total = await wait_for(
                    lambda: activity_total(engine, partner.id),
                    lambda t: t.earns >= 3,
                    "the restarted worker to deliver the held event",
                )
                assert total == Activity(earns=3, points_issued=123)
                await wait_for(
                    lambda: _jobs(engine, "picked"), lambda n: n == 0, "the job to finish"
                )
                assert await _jobs(engine, "queued") == 0
                assert await activity_total(engine, partner.id) == total
                assert await _receipts(engine) == {"before": 1, hold: 1, "after": 1}
            finally:
                code = worker.terminate()
            assert code == 0, worker.output()  # SIGTERM: a clean stop
            assert "worker stopped" in worker.output()
        finally:
            await engine.dispose()


def _log_says(output: str, words: str) -> bool:
    return words in output


def _pending(base_url: str) -> float | None:
    body = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = re.search(r'^coalition_outbox_pending_events\{consumer="activity"\} (\S+)$', body, re.M)
    return float(found.group(1)) if found else None


async def _serve(url: str, tmp_path: Path, *args: str) -> tuple[Process, str]:
    port = free_port()
    served = start(
        ["serve", "--port", str(port), *args],
        database_url=url,
        log=tmp_path / "serve.log",
        env={**FAST, "COALITION_DATA_DIR": str(tmp_path / "data")},
    )
    base = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        if served.process.poll() is not None:
            raise AssertionError(f"serve exited:\n{served.output()}")
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_for(healthy, bool, "coalition serve to start")
    return served, base


async def test_serve_no_worker_consumes_nothing_and_serve_does(
    database_url: str, tmp_path: Path
) -> None:
    async with own_database(database_url) as url:
        engine = create_engine(url, pool_size=2)
        try:
            partner = await make_partner(engine)
            member = await h.new_member(engine, [partner.id])
            await h.earn(engine, partner.id, member, 100)
            await h.earn(engine, partner.id, member, 50)

            served, base = await _serve(url, tmp_path, "--no-worker")
            try:
                # The server reads the backlog (2 earns; the enrolment is not the rollup's)...
                backlog = await wait_for(
                    lambda: _pending(base), lambda n: n is not None and n >= 2, "metrics"
                )
                assert backlog == 2
                # ...and runs no worker: no worker connection, no cursor, nothing handled.
                assert await worker_backends(engine) == 0
                async with engine.connect() as c:
                    assert await c.scalar(text("SELECT count(*) FROM outbox_cursors")) == 0
                    assert await c.scalar(text("SELECT count(*) FROM outbox_receipts")) == 0
                assert await activity_total(engine, partner.id) == Activity()
            finally:
                served.terminate()  # uvicorn re-raises the signal after a clean shutdown

            served, base = await _serve(url, tmp_path)
            try:
                total = await wait_for(
                    lambda: activity_total(engine, partner.id),
                    lambda t: t.earns >= 2,
                    "serve's own worker",
                )
                assert total == Activity(earns=2, points_issued=150)
                assert await worker_backends(engine) >= 1
                await wait_for(lambda: _pending(base), lambda n: n == 0, "the backlog to drain")
            finally:
                served.terminate()  # uvicorn re-raises the signal after a clean shutdown
            assert "Application shutdown complete" in served.output()  # the worker stopped
        finally:
            await engine.dispose()
