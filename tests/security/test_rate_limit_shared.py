"""Query-cost buckets shared by every API process: leased from PostgreSQL, spent in memory.

What a client can spend across all processes together is at most capacity + restore rate ×
time; a lease comes back with time; and a request rarely goes to the database for its
budget (a lease per slice, not per request).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.rate_limits import PostgresBuckets
from schema.cost import SharedCostLimiter
from tests.conftest import Api, make_client
from tests.reliability.helpers import ROOT, free_port
from tests.security.serving import ManualClock, limited_app, serve

PARTNERS_10 = "{ partners(first: 10) { nodes { id } } }"  # 1 + 10 = 11 points
COST = 11


async def bucket(engine: AsyncEngine, client_id: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT available, updated_at, leases FROM rate_limit_buckets"
                    " WHERE client_id = :c"
                ),
                {"c": client_id},
            )
        ).one_or_none()


def send(base_url: str, token: str) -> dict[str, Any]:
    """One request on a connection of its own (so a multi-worker server spreads them)."""
    response = httpx.post(
        f"{base_url}/graphql",
        json={"query": PARTNERS_10},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def allowed(bodies: list[dict[str, Any]]) -> int:
    """Requests that ran; every other one must have been refused as RATE_LIMITED."""
    ran = [b for b in bodies if "errors" not in b]
    for refused in (b for b in bodies if "errors" in b):
        [error] = refused["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED", error
        assert error["extensions"]["retryAfterSeconds"] > 0
        assert refused["data"] is None
    return len(ran)


@pytest.fixture
def two_processes(database_url: str, server: str) -> Iterator[tuple[str, str, ManualClock]]:
    """Two API apps on one database, each with its own limiter (as two worker processes or
    replicas have), a 100-point bucket refilling 10 points a second, 10-point leases, and
    one hand-moved clock."""
    clock = ManualClock()
    settings = {
        "rate_limit_capacity": 100,
        "rate_limit_restore": 10,
        "rate_limit_lease": 10,
    }
    first = limited_app(database_url, clock, **settings)
    second = limited_app(database_url, clock, **settings)
    with serve(first) as a, serve(second) as b:
        yield a, b, clock


async def test_two_processes_together_never_let_a_client_spend_more_than_its_bucket(
    engine: AsyncEngine, two_processes: tuple[str, str, ManualClock]
) -> None:
    a, b, clock = two_processes
    client_id, secret = await make_client(engine, None, ["operator"])
    token = Api(a, client_id, secret).token()

    # 40 requests at once, half to each process: 100 points cover 9 of them in all. Buckets
    # in each process would have let 9 through each (18).
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(send, [a, b] * 20, [token] * 40))
    first = allowed(bodies)
    assert first * COST <= 100
    # Lease slices stranded in a process are the only loss: at most a slice and a request each.
    assert first * COST >= 100 - 2 * (10 + COST)

    # Time refills the one shared bucket, not one per process: 5 s bring 50 points.
    clock.advance(5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(send, [b, a] * 20, [token] * 40))
    second = allowed(bodies)
    assert second >= 1
    assert (first + second) * COST <= 100 + 10 * 5

    # The figures a client paces itself by stay in the response, as with one process.
    last = send(a, token)
    figures = last["errors"][0]["extensions"]
    assert figures["capacity"] == 100 and figures["restoreRate"] == 10
    assert figures["available"] < COST
    row = await bucket(engine, client_id)
    assert row is not None and row.available < COST


async def test_a_lease_refills_by_the_time_elapsed_capped_at_capacity(
    engine: AsyncEngine,
) -> None:
    clock = ManualClock(5000.0)
    # 50-point slices: more than the bucket holds after each step, so no lease is taken
    # ahead in the background and every figure below is exact.
    limiter = SharedCostLimiter(
        100, 10, clock=clock, store=PostgresBuckets(engine), lease_points=50, refusal_cost=7
    )
    client = f"lease-test-{time.time_ns()}"
    assert (await limiter.charge(client, 60)).allowed
    # The first lease took what was needed or a slice, whichever is more: 60.
    row = await bucket(engine, client)
    assert row.available == 40 and row.updated_at == 5000.0 and row.leases == 1
    refused = await limiter.charge(client, 60)
    assert not refused.allowed and refused.retry_after == 2.0
    clock.advance(2)  # +20 points in the row
    again = await limiter.charge(client, 60)
    assert again.allowed and again.available == 0
    row = await bucket(engine, client)
    assert row.available == 0 and row.updated_at == 5002.0
    # A refusal for a limit takes its charge from the row too, never below empty.
    clock.advance(0.5)
    penalty = await limiter.charge_refusal(client, 500)
    assert penalty.charged == 5 and penalty.available == 0
    # However long the wait, never more than the capacity.
    clock.advance(3600)
    assert (await limiter.charge(client, 100)).allowed
    assert not (await limiter.charge(client, 1)).allowed
    # What a stopping process leased and did not spend goes back to the row.
    spare = f"lease-spare-{time.time_ns()}"
    assert (await limiter.charge(spare, 1)).allowed  # leased 50, spent 1
    assert (await bucket(engine, spare)).available == 50
    await limiter.close()
    assert (await bucket(engine, spare)).available == 99
    # With the default clock the rows are refilled by the database's own clock.
    real = SharedCostLimiter(100, 10, store=PostgresBuckets(engine))
    client = f"lease-db-clock-{time.time_ns()}"
    assert (await real.charge(client, 5)).allowed
    async with engine.connect() as conn:
        skew = await conn.scalar(
            text(
                "SELECT abs(extract(epoch FROM clock_timestamp()) - updated_at)"
                " FROM rate_limit_buckets WHERE client_id = :c"
            ),
            {"c": client},
        )
    assert skew < 60
    await real.close()


async def test_leases_are_far_fewer_than_requests(
    engine: AsyncEngine, database_url: str, server: str
) -> None:
    clock = ManualClock()
    app = limited_app(database_url, clock, rate_limit_capacity=5000, rate_limit_restore=100)
    limiter = app.state.platform.cost_limiter
    with serve(app) as url:
        api = Api(url, *(await make_client(engine, None, ["operator"])))
        bodies = [api.gql(PARTNERS_10) for _ in range(200)]
    assert allowed(bodies) == 200  # 2,200 points of a 5,000-point bucket
    row = await bucket(engine, api.client_id)
    # 500-point slices (10 % of the capacity): a handful of statements for 200 requests.
    assert row.leases <= 8, row
    assert limiter.leases == row.leases
    # The server gave back what it had leased and not spent when it stopped.
    assert row.available == 5000 - 200 * COST


@contextlib.contextmanager
def coalition_serve(database_url: str, data_dir: Path, **env: str) -> Iterator[str]:
    """`coalition serve --workers 2` as production runs it; yields its base URL."""
    import os
    import signal

    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    environment.update(
        DATABASE_URL=database_url,
        COALITION_DATA_DIR=str(data_dir),
        COALITION_ENV="production",
        COALITION_EXPIRY_INTERVAL="0",
        **env,
    )
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # at most a minute, to fail instead of hanging
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


async def test_coalition_serve_with_two_workers_holds_one_budget_per_client(
    engine: AsyncEngine, database_url: str, server: str, tmp_path: Path
) -> None:
    client_id, secret = await make_client(engine, None, ["operator"])
    # 100 points refilling one point a minute: the run cannot refill a request's worth.
    with coalition_serve(
        database_url,
        tmp_path / "data",
        COALITION_RATE_LIMIT_CAPACITY="100",
        COALITION_RATE_LIMIT_RESTORE="0.0166",
    ) as base:
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30,
        ).json()["access_token"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = list(pool.map(send, [base] * 40, [token] * 40))
    ran = allowed(bodies)
    # Each worker on its own would have let 9 through (18 in all); together, 100 points'
    # worth, less what is stranded in a worker's lease (10 % of the capacity) at the end.
    assert ran * COST <= 100, json.dumps(bodies[:3])
    assert ran * COST >= 100 - 2 * (10 + COST)


async def test_without_the_database_each_process_limits_by_itself_until_it_is_back(
    engine: AsyncEngine,
) -> None:
    """A lease that cannot be taken (PostgreSQL down or unreachable) does not fail the
    request: the process falls back to a bucket of its own, then leases again."""
    from db.engine import create_engine

    clock = ManualClock()
    nowhere = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere", pool_size=1)
    limiter = SharedCostLimiter(100, 10, clock=clock, store=PostgresBuckets(nowhere))
    client = f"lease-down-{time.time_ns()}"
    try:
        assert (await limiter.charge(client, 60)).allowed
        refused = await limiter.charge(client, 60)  # its own bucket: 40 left
        assert not refused.allowed and refused.available == 40
    finally:
        await nowhere.dispose()
    assert await bucket(engine, client) is None
    limiter.store = PostgresBuckets(engine)  # the database answers again
    assert (await limiter.charge(client, 60)).allowed
    # The charge spent its whole lease, so the next slice (10) is leased in the background:
    # wait for it, or the row is read before or after it by chance.
    ahead = limiter._shares[client].ahead
    assert ahead is not None
    await ahead
    row = await bucket(engine, client)
    assert row is not None and row.leases == 2 and row.available == 30
