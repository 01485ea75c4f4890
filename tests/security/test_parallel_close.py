"""Parallel closes of one settlement period close it once.

The check that `periodId` is still the OPEN period used to run before the close's lock: five
closes of one period queued on the lock would each pass it, then close five periods one
after another (the named one and four empty ones after it). Each test below makes the race
certain instead of likely: a transaction holds the period lock until every close is queued
on it (seen in `pg_locks`), then lets them run.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import DomainError, ErrorCode
from schema.relay import from_global_id, to_global_id
from settlement.booking import PERIOD_LOCK
from settlement.close import close_period
from settlement.periods import current_period
from settlement.records import PeriodRecord
from tests.cli.test_cli import env_with
from tests.conftest import Api

CLOSERS = 5
CLOSE = """mutation($i: CloseSettlementPeriodInput!) { closeSettlementPeriod(input: $i) {
  period { id status } errors { code message } } }"""
CURRENT = "{ currentSettlementPeriod { id startsAt } }"
T = TypeVar("T")


async def _waiting_on_period_lock(engine: AsyncEngine) -> int:
    async with engine.connect() as c:
        waiting = await c.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE d.datname = current_database() AND l.locktype = 'advisory'"
                " AND NOT l.granted AND l.classid = :high AND l.objid = :low"
            ),
            {"high": PERIOD_LOCK >> 32, "low": PERIOD_LOCK & 0xFFFFFFFF},
        )
    return int(waiting or 0)


@asynccontextmanager
async def _period_lock_held(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the close's lock (as a close in progress would) for the block."""
    async with engine.begin() as c:
        await c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PERIOD_LOCK})
        yield


async def _all_queued(engine: AsyncEngine, count: int, runs: Sequence[asyncio.Future[Any]]) -> None:
    """Return once `count` sessions wait on the period lock (a close that finished early,
    on a broken build, would otherwise leave this waiting for ever: stop then too)."""
    for _ in range(1200):  # a bound, not a timing assertion: 60 s before giving up
        if await _waiting_on_period_lock(engine) >= count or any(r.done() for r in runs):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} closes never queued on the period lock")


async def _race(engine: AsyncEngine, count: int, close_one: Callable[[], Awaitable[T]]) -> list[T]:
    """Start `count` closes while the lock is held; release it once all of them wait."""
    async with _period_lock_held(engine):
        runs = [asyncio.ensure_future(close_one()) for _ in range(count)]
        await _all_queued(engine, count, runs)
    return await asyncio.gather(*runs)


async def _periods_since(engine: AsyncEngine, first: uuid.UUID) -> list[Any]:
    """The named period and every period opened after it (ids are UUIDv7: in order)."""
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT id, status, starts_at, cutoff FROM settlement_periods"
                " WHERE id >= :p ORDER BY id"
            ),
            {"p": first},
        )
        return list(rows)


async def _audited_closes(engine: AsyncEngine) -> int:
    async with engine.connect() as c:
        count = await c.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'SETTLEMENT_PERIOD_CLOSED'")
        )
    return int(count or 0)


def _assert_closed_once(periods: list[Any], period_id: uuid.UUID) -> None:
    """The named period closed, exactly one new OPEN period from its cutoff, nothing else."""
    assert [p.id for p in periods][:1] == [period_id]
    assert [p.status for p in periods] in (["CLOSED", "OPEN"], ["SETTLED", "OPEN"]), periods
    assert periods[1].starts_at == periods[0].cutoff


async def test_parallel_domain_closes_of_one_period_close_it_once(engine: AsyncEngine) -> None:
    async with engine.connect() as c:
        period_id = (await current_period(c)).id

    async def close_one() -> PeriodRecord | DomainError:
        try:
            async with engine.begin() as c:
                return await close_period(c, None, period_id)
        except DomainError as refused:
            return refused

    results = await _race(engine, CLOSERS, close_one)

    closed = [r for r in results if isinstance(r, PeriodRecord)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert [r.id for r in closed] == [period_id]
    assert [r.code for r in refused] == [ErrorCode.PERIOD_NOT_FOUND] * (CLOSERS - 1)
    assert all("already" in r.message for r in refused), [r.message for r in refused]
    _assert_closed_once(await _periods_since(engine, period_id), period_id)


async def test_a_close_of_an_unknown_period_is_refused_and_closes_nothing(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as c:
        open_before = await current_period(c)
    try:
        async with engine.begin() as c:
            await close_period(c, None, uuid.uuid4())
    except DomainError as refused:
        assert (refused.code, refused.message) == (
            ErrorCode.PERIOD_NOT_FOUND,
            "no such settlement period",
        )
    else:
        raise AssertionError("closing an unknown period succeeded")
    async with engine.connect() as c:
        assert await current_period(c) == open_before


async def test_parallel_closes_over_http_close_the_period_once(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    token = operator_api.token()
    period_gid = operator_api.data(CURRENT)["currentSettlementPeriod"]["id"]
    period_id = from_global_id(period_gid, "SettlementPeriod")[1]
    audited_before = await _audited_closes(engine)

    def post() -> dict[str, Any]:
        response = httpx.post(
            f"{server}/graphql",
            json={"query": CLOSE, "variables": {"i": {"periodId": period_gid}}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        payload: dict[str, Any] = body["data"]["closeSettlementPeriod"]
        return payload

    # Five operator requests on five threads, all queued on the lock before any runs.
    answers = await _race(engine, CLOSERS, lambda: asyncio.to_thread(post))

    winners = [a for a in answers if a["errors"] == []]
    assert [w["period"]["id"] for w in winners] == [period_gid], answers
    losers = [a for a in answers if a["errors"]]
    assert [(a["period"], [e["code"] for e in a["errors"]]) for a in losers] == [
        (None, ["PERIOD_NOT_FOUND"])
    ] * (CLOSERS - 1)
    _assert_closed_once(await _periods_since(engine, period_id), period_id)
    # What the operator sees: the period after it is the OPEN one, and one close audited.
    now_open = operator_api.data(CURRENT)["currentSettlementPeriod"]
    assert now_open["id"] == to_global_id(
        "SettlementPeriod", (await _periods_since(engine, period_id))[1].id
    )
    assert await _audited_closes(engine) == audited_before + 1


async def test_parallel_cli_closes_of_one_period_close_it_once(
    engine: AsyncEngine, database_url: str
) -> None:
    """`coalition settlement close --period ID` goes through the same check under the lock."""
    async with engine.connect() as c:
        period_id = (await current_period(c)).id
    env = env_with(DATABASE_URL=database_url)
    closers = 3  # processes are dearer than requests; three make the same race

    async def close_one() -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api.cli",
            "settlement",
            "close",
            "--period",
            str(period_id),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    results = await _race(engine, closers, close_one)

    assert sorted(code for code, _, _ in results) == [0] + [1] * (closers - 1), results
    assert next(out for code, out, _ in results if code == 0).startswith(
        f"closed period {period_id}"
    )
    assert all("PERIOD_NOT_FOUND" in err for code, _, err in results if code == 1), results
    _assert_closed_once(await _periods_since(engine, period_id), period_id)
