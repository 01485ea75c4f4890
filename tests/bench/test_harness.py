"""The benchmark harness itself, at a small scale: what it books it verifies, and its
figures add up. (The HTTP scenarios need wrk and minutes; they are run by hand.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from bench.close import run_close
from bench.ingest import run_ingest
from bench.load import CpuSample, Figures, with_cpu
from bench.setup import _admin_and_url, drop_bench_database
from db.engine import create_engine


def bench_url(name: str) -> str:
    """The URL of a benchmark's database (without dropping or creating it)."""
    return _admin_and_url(name)[1]


@pytest.fixture
def drops() -> Iterator[list[str]]:
    """Databases a harness run creates, dropped when the test ends (on a shared server too)."""
    names: list[str] = []
    yield names
    for name in names:
        drop_bench_database(name)


def test_ingest_books_a_small_day_once_and_checks_it_in_sql(drops: list[str]) -> None:
    drops.append("coalition_bench_ingest")
    figures = run_ingest(rows=3_000, members=300, chunk=1_000, jobs=2)
    assert figures.booked == figures.rows == 3_000
    assert figures.replayed == 3_000  # the second import of the same file booked nothing
    assert figures.transfers == figures.lots == figures.keys == 3_000
    assert figures.wallet_mismatches == 0 and figures.rejected == 0
    assert figures.verified
    assert figures.earns_per_second > 0 and figures.python_cpu_us > 0


def _close_booked(url: str) -> dict[str, Any]:
    """What the close left in the bench database, recomputed here in plain SQL from the
    period's obligations (not through the settlement code under test)."""

    async def read() -> dict[str, Any]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:

                async def rows(sql: str) -> list[Any]:
                    return list(await conn.execute(text(sql)))

                periods = await rows(
                    "SELECT id, status FROM settlement_periods ORDER BY starts_at, id"
                )
                closed = next(p.id for p in periods if p.status != "OPEN")
                params = {"p": closed}

                async def one(sql: str) -> Any:
                    return (await conn.execute(text(sql), params)).one()

                async def many(sql: str) -> list[Any]:
                    return list(await conn.execute(text(sql), params))

                return {
                    "statuses": sorted(p.status for p in periods),
                    "obligations": await one(
                        "SELECT count(*) AS n, sum(points) AS points, sum(amount) AS amount,"
                        " count(*) FILTER (WHERE period_id <> :p) AS elsewhere"
                        " FROM obligations"
                    ),
                    # Every (debtor, creditor) line against the obligations it sums.
                    "line_differences": await many(
                        "WITH o AS (SELECT debtor_id, creditor_id, kind, sum(points) AS points,"
                        "  sum(amount) AS amount, count(*) AS n FROM obligations"
                        "  WHERE period_id = :p GROUP BY debtor_id, creditor_id, kind),"
                        " g AS (SELECT * FROM settlement_gross_lines WHERE period_id = :p)"
                        " SELECT * FROM o FULL JOIN g USING (debtor_id, creditor_id, kind)"
                        " WHERE o.points IS DISTINCT FROM g.points"
                        "  OR o.amount IS DISTINCT FROM g.amount"
                        "  OR o.n IS DISTINCT FROM g.obligations"
                    ),
                    # Every party's position against what it is owed and owes.
                    "position_differences": await many(
                        "WITH x AS (SELECT creditor_id AS party, amount AS rec, 0 AS pay"
                        "  FROM obligations WHERE period_id = :p UNION ALL"
                        "  SELECT debtor_id, 0, amount FROM obligations WHERE period_id = :p),"
                        " e AS (SELECT party, sum(rec) AS rec, sum(pay) AS pay FROM x"
                        "  GROUP BY party),"
                        " s AS (SELECT * FROM settlement_positions WHERE period_id = :p)"
                        " SELECT * FROM e FULL JOIN s ON s.party_id = e.party"
                        " WHERE e.rec IS DISTINCT FROM s.receivable"
                        "  OR e.pay IS DISTINCT FROM s.payable"
                        "  OR e.rec - e.pay IS DISTINCT FROM s.net"
                    ),
                    "positions": await one(
                        "SELECT count(*) AS n, sum(net) AS total,"
                        " count(*) FILTER (WHERE net <> 0) AS nonzero"
                        " FROM settlement_positions WHERE period_id = :p"
                    ),
                    # Every party's payments against its net position.
                    "unsettled": await many(
                        "WITH paid AS (SELECT payee_id AS party, amount FROM"
                        "  settlement_instructions WHERE period_id = :p UNION ALL"
                        "  SELECT payer_id, -amount FROM settlement_instructions"
                        "  WHERE period_id = :p),"
                        " t AS (SELECT party, sum(amount) AS total FROM paid GROUP BY party),"
                        " s AS (SELECT party_id, net FROM settlement_positions"
                        "  WHERE period_id = :p)"
                        " SELECT COALESCE(s.party_id, t.party) AS party, s.net, t.total"
                        " FROM s FULL JOIN t ON t.party = s.party_id"
                        " WHERE COALESCE(s.net, 0) <> COALESCE(t.total, 0)"
                    ),
                    "instructions": await one(
                        "SELECT count(*) AS n, count(*) FILTER (WHERE amount <= 0) AS empty,"
                        " count(*) FILTER (WHERE payer_id = payee_id) AS to_self"
                        " FROM settlement_instructions WHERE period_id = :p"
                    ),
                }
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_close_nets_every_partner_of_a_small_period(drops: list[str]) -> None:
    drops.append("coalition_bench_close")
    figures = run_close(obligations=100_000, partners=5)
    assert figures.positions == 5  # one position per partner that owes or is owed
    assert 1 <= figures.instructions <= 4  # netted: fewer payments than partners
    assert figures.close_seconds > 0

    booked = _close_booked(bench_url("coalition_bench_close"))
    # One period closed (it owes something, so not settled yet), the next one open and empty.
    assert booked["statuses"] == ["CLOSED", "OPEN"]
    obligations = booked["obligations"]
    assert obligations.n == 100_000 and obligations.elsewhere == 0
    assert obligations.amount == obligations.points * 100  # seeded at 1.00 a point
    assert booked["line_differences"] == []
    assert booked["position_differences"] == []
    positions = booked["positions"]
    assert positions.n == figures.positions == 5 and positions.total == 0
    # Each party's payments add up to its position; at most N - 1 of them, none empty.
    assert booked["unsettled"] == []
    instructions = booked["instructions"]
    assert instructions.n == figures.instructions <= positions.nonzero - 1
    assert instructions.empty == instructions.to_self == 0


def test_cpu_is_shared_over_every_request_of_the_sample() -> None:
    reads = Figures("reads", 100.0, 1.0, 2.0, 300, 0, 0)
    earns = Figures("earns", 50.0, 1.0, 2.0, 100, 0, 0)
    before, after = CpuSample(server=10.0, postgres=4.0), CpuSample(server=12.0, postgres=4.4)
    shared = with_cpu([reads, earns], before, after)
    assert [f.server_cpu_ms for f in shared] == [5.0, 5.0]  # 2 s over 400 requests
    assert [round(f.postgres_cpu_ms, 6) for f in shared] == [1.0, 1.0]
    assert [f.name for f in shared] == ["reads", "earns"]
