"""Property tests of a close over random obligation sets (hypothesis).

Each example inserts synthetic obligations between fresh parties, closes the period and
checks: positions equal the sums a plain Python computation gives and sum to zero,
instructions settle every position exactly with at most N − 1 payments, gross lines and
bilateral nets agree with the obligations.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from db.engine import create_engine
from settlement.close import close_period
from settlement.periods import current_period

# (debtor index, creditor offset, amount): the creditor is another of the example's parties.
obligation = st.tuples(
    st.integers(0, 7), st.integers(1, 7), st.integers(0, 10**12), st.sampled_from(["X", "Y"])
)
example = st.tuples(st.integers(2, 8), st.lists(obligation, min_size=0, max_size=40))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(example)
def test_close_balances_random_obligations(
    database_url: str, case: tuple[int, list[tuple[int, int, int, str]]]
) -> None:
    parties_count, raw = case
    parties = [uuid.uuid4() for _ in range(parties_count)]
    rows = [
        (parties[d % parties_count], parties[(d + o) % parties_count], amount, kind)
        for d, o, amount, kind in raw
        if o % parties_count != 0
    ]
    asyncio.run(_check(database_url, parties, rows))


async def _check(
    url: str, parties: list[uuid.UUID], rows: list[tuple[uuid.UUID, uuid.UUID, int, str]]
) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            period = await current_period(conn)
            if rows:
                await conn.execute(
                    text(
                        "INSERT INTO obligations (id, period_id, debtor_id, creditor_id, kind,"
                        " points, unit_price, amount, created_at) SELECT gen_random_uuid(), :p,"
                        " d, c, k, 1, 1, a, now() FROM unnest(CAST(:d AS uuid[]),"
                        " CAST(:c AS uuid[]), CAST(:a AS bigint[]), CAST(:k AS text[]))"
                        " AS x(d, c, a, k)"
                    ),
                    {
                        "p": period.id,
                        "d": [r[0] for r in rows],
                        "c": [r[1] for r in rows],
                        "a": [r[2] for r in rows],
                        "k": [r[3] for r in rows],
                    },
                )
        async with engine.begin() as conn:
            closed = await close_period(conn)
            assert closed.id == period.id
            await _assert_balanced(conn, period.id, parties, rows)
    finally:
        await engine.dispose()


async def _assert_balanced(
    conn: object,
    period_id: uuid.UUID,
    parties: list[uuid.UUID],
    rows: list[tuple[uuid.UUID, uuid.UUID, int, str]],
) -> None:
    from sqlalchemy.ext.asyncio import AsyncConnection

    assert isinstance(conn, AsyncConnection)
    p = {"p": period_id}
    gross: dict[tuple[uuid.UUID, uuid.UUID, str], int] = defaultdict(int)
    net: dict[uuid.UUID, int] = defaultdict(int)
    for debtor, creditor, amount, kind in rows:
        gross[(debtor, creditor, kind)] += amount
        net[creditor] += amount
        net[debtor] -= amount
    mine = set(parties)
    lines = {
        (r.debtor_id, r.creditor_id, r.kind): r.amount
        for r in await conn.execute(
            text("SELECT * FROM settlement_gross_lines WHERE period_id = :p"), p
        )
        if r.debtor_id in mine
    }
    assert lines == dict(gross)
    positions = {
        r.party_id: r
        for r in await conn.execute(
            text("SELECT * FROM settlement_positions WHERE period_id = :p"), p
        )
    }
    for party in mine:
        got = positions[party].net if party in positions else 0
        assert got == net[party]
    assert sum(r.net for r in positions.values()) == 0
    for r in positions.values():
        assert r.net == r.receivable - r.payable
    # Bilateral nets agree with the gross matrix.
    for r in await conn.execute(
        text("SELECT * FROM settlement_bilateral_nets WHERE period_id = :p"), p
    ):
        if r.party_a in mine:
            a_owes_b = sum(v for (d, c, _), v in gross.items() if (d, c) == (r.party_a, r.party_b))
            b_owes_a = sum(v for (d, c, _), v in gross.items() if (d, c) == (r.party_b, r.party_a))
            assert (r.a_owes_b, r.b_owes_a, r.net) == (a_owes_b, b_owes_a, a_owes_b - b_owes_a)
    # Instructions settle every position exactly, with at most N − 1 payments.
    settled: dict[uuid.UUID, int] = defaultdict(int)
    instructions = list(
        await conn.execute(text("SELECT * FROM settlement_instructions WHERE period_id = :p"), p)
    )
    for i in instructions:
        assert i.amount > 0
        settled[i.payee_id] += i.amount
        settled[i.payer_id] -= i.amount
    for party, r in positions.items():
        assert settled[party] == r.net
    nonzero = sum(1 for r in positions.values() if r.net != 0)
    assert len(instructions) <= max(nonzero - 1, 0)
