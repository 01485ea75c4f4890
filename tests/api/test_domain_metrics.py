"""The domain series of GET /metrics, read back after earns and redemptions over HTTP: counts
and points of what was booked (replays count nothing), and the database pool's use."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.api.helpers import Shop, key, make_shop, payload
from tests.conftest import serving, unique_phone

HANG = 30.0
DOMAIN = (
    "coalition_earns_total",
    "coalition_redemptions_total",
    "coalition_points_issued_total",
    "coalition_points_redeemed_total",
)
POOL = ("coalition_db_pool_size", "coalition_db_pool_checked_out", "coalition_db_pool_overflow")
BATCH = """mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {
  booked replayed rejected points errors { code } } }"""


@pytest.fixture(scope="module")
def app(database_url: str, server: str) -> Starlette:
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings = dataclasses.replace(load_settings(), environment="development", metrics_token=None)
    # No outbox worker in this app: between requests nothing may hold a pooled connection.
    return create_app(database_url, settings=settings, run_expiry=False, run_worker=False)


@pytest.fixture(scope="module")
def dev(app: Starlette) -> Iterator[str]:
    with serving(app, app.state.platform.settings) as url:
        yield url


@pytest.fixture
async def shop(engine: AsyncEngine, dev: str) -> Shop:
    return await make_shop(engine, dev)


def _scrape(base: str) -> dict[str, float]:
    response = httpx.get(f"{base}/metrics", timeout=HANG)
    assert response.status_code == 200, response.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in DOMAIN}


def test_earns_and_redemptions_are_counted_once(shop: Shop, dev: str) -> None:
    member = {"phone": unique_phone()}
    shop.enroll(member["phone"])
    before = _scrape(dev)

    same = {"idempotency_key": key(), "reference": "receipt-1"}
    first = shop.earn_ok(member, "150", **same)
    assert first["points"] == 150
    replay = shop.earn_ok(member, "150", **same)  # the same answer, nothing booked
    assert replay["transfer"]["id"] == first["transfer"]["id"]
    redeemed = shop.redeem(member, 40)
    assert redeemed["errors"] == [] and redeemed["points"] == 40
    refused = shop.redeem(member, 10_000)  # more than the member has: nothing booked
    assert [e["code"] for e in refused["errors"]] == ["INSUFFICIENT_POINTS"]

    assert _delta(before, _scrape(dev)) == {
        "coalition_earns_total": 1,
        "coalition_redemptions_total": 1,
        "coalition_points_issued_total": 150,
        "coalition_points_redeemed_total": 40,
    }


def test_a_batch_counts_each_earn_it_booked(shop: Shop, dev: str) -> None:
    phones = [unique_phone(), unique_phone()]
    for phone in phones:
        shop.enroll(phone)
    before = _scrape(dev)
    rows: list[dict[str, Any]] = [
        {"member": {"phone": phone}, "amount": amount, "reference": key(), "idempotencyKey": key()}
        for phone, amount in zip(phones, ("30", "12.50"), strict=True)
    ]
    rows.append({**rows[0], "idempotencyKey": key(), "member": {"phone": "+79990000000"}})
    result = payload(shop.api, BATCH, {"rows": rows}, "earnPointsBatch")
    assert (result["booked"], result["rejected"], result["points"]) == (2, 1, 42), result
    assert _delta(before, _scrape(dev)) == {
        "coalition_earns_total": 2,
        "coalition_redemptions_total": 0,
        "coalition_points_issued_total": 42,
        "coalition_points_redeemed_total": 0,
    }


def test_the_database_pool_is_read_at_scrape_time(app: Starlette, dev: str) -> None:
    assert httpx.get(f"{dev}/healthz", timeout=HANG).status_code == 200  # a connection used
    readings = []
    for _ in range(20):
        readings.append(_scrape(dev))
        time.sleep(0.05)
    series = readings[-1]
    pool = app.state.platform.engine.pool
    assert series["coalition_db_pool_size"] == pool.size() > 0
    # Background refreshers (revocations every 0.5 s here, the outbox backlog) hold a
    # connection for a moment; between requests some scrape finds none checked out and none
    # open beyond the pool.
    assert min(r["coalition_db_pool_checked_out"] for r in readings) == 0
    assert min(r["coalition_db_pool_overflow"] for r in readings) == 0
    assert set(POOL) <= series.keys()
