"""Shared helpers of the outbox tests: waiting for a condition, the rollup and events as
stored, a database of a test's own, and `coalition worker` / `coalition serve` processes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics.activity import Activity
from db.engine import create_engine
from db.migrate import upgrade_async

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0  # seconds: generous, these wait on other processes and a shared machine

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T] | T],
    done: Callable[[T], bool],
    what: str,
    deadline: float = DEADLINE,
) -> T:
    """Probe (sync or async) until `done(value)`, failing with the last value after
    `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        probed = probe()
        value: T = await probed if inspect.isawaitable(probed) else probed  # type: ignore[assignment]
        if done(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}; last seen: {value!r}")
        await asyncio.sleep(0.1)


async def activity_total(engine: AsyncEngine, partner_id: uuid.UUID) -> Activity:
    """The partner's rollup summed over every day (a test may straddle midnight UTC)."""
    columns = Activity.__dataclass_fields__
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT "
                    + ", ".join(f"COALESCE(sum({name}), 0) AS {name}" for name in columns)
                    + " FROM analytics_daily_activity WHERE partner_id = :p"
                ),
                {"p": partner_id},
            )
        ).one()
    return Activity(*(int(v) for v in row))


async def transfer_events(engine: AsyncEngine, transfer_ids: list[uuid.UUID]) -> list[Any]:
    async with engine.connect() as c:
        return list(
            (
                await c.execute(
                    text(
                        "SELECT id, type, occurred_at, partner_id, member_id, payload FROM outbox"
                        " WHERE type = 'transfer.booked'"
                        " AND payload->>'transfer_id' = ANY(CAST(:ids AS text[]))"
                    ),
                    {"ids": [str(t) for t in transfer_ids]},
                )
            ).all()
        )


@contextlib.asynccontextmanager
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A freshly migrated database beside the suite's (no other test's worker consumes it)."""
    name = f"outbox_{secrets.token_hex(4)}"
    admin = create_engine(database_url, pool_size=1)
    try:
        async with admin.connect() as c:
            await c.execution_options(isolation_level="AUTOCOMMIT")
            await c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
        await upgrade_async(url)
        yield url
    finally:
        async with admin.connect() as c:
            await c.execution_options(isolation_level="AUTOCOMMIT")
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@dataclass
class Process:
    """A `coalition` command in its own process group, its output in `log`."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, whatever the process holds is cut."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after a generous wait)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"no exit after SIGTERM:\n{self.output()}") from None


def start(args: list[str], *, database_url: str, log: Path, env: dict[str, str]) -> Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    clean.update(DATABASE_URL=database_url, COALITION_EXPIRY_INTERVAL="0", **env)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            env=clean,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(process, log)


async def worker_backends(engine: AsyncEngine) -> int:
    """Connections of an outbox worker (relay or queue) to this database."""
    async with engine.connect() as c:
        count = await c.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'coalition-worker%'"
            )
        )
    return int(count or 0)
