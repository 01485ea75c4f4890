"""Delivery: the worker running in the served app fills the daily activity rollup; a repeated
or concurrent delivery of the same events changes nothing; a transaction that commits late is
delivered, not skipped."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics.activity import CONSUMER as ACTIVITY
from analytics.activity import Activity
from ledger import outbox
from outbox.delivery import ORIGIN, Consumer, Event, EventRange, Position, deliver
from outbox.relay import ensure_cursors, relay_once
from outbox.worker import asyncpg_dsn
from tests.conftest import make_partner
from tests.ledger import helpers as h
from tests.outbox.helpers import activity_total, wait_for


async def _handled(engine: AsyncEngine, consumer: str, event_ids: Sequence[uuid.UUID]) -> int:
    async with engine.connect() as c:
        count = await c.scalar(
            text(
                "SELECT count(*) FROM outbox_receipts"
                " WHERE consumer = :c AND event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"c": consumer, "ids": list(event_ids)},
        )
    return int(count or 0)


async def _event_ids(engine: AsyncEngine, member_id: uuid.UUID) -> list[uuid.UUID]:
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT id FROM outbox WHERE member_id = :m AND type = 'transfer.booked'"),
            {"m": member_id},
        )
        return [r.id for r in rows]


async def test_the_worker_rolls_up_each_partners_day(engine: AsyncEngine, server: str) -> None:
    grocer = await make_partner(engine)
    cinema = await make_partner(engine)
    member = await h.new_member(engine, [grocer.id, cinema.id])
    first = await h.earn(engine, grocer.id, member, 100)
    await h.earn(engine, grocer.id, member, 50)
    burnt = await h.redeem(engine, cinema.id, member, 30)
    await h.reverse(engine, grocer.id, first.transfer_id, 20)  # an earn reversal at the grocer
    await h.reverse(engine, cinema.id, burnt.transfer_id, 10)  # a redemption reversal
    await h.redeem(engine, grocer.id, member, 5)  # points burnt where they were earned

    expected_grocer = Activity(
        earns=2,
        redemptions=1,
        reversals=1,
        points_issued=150,
        points_redeemed=5,
        earn_points_reversed=20,
    )
    expected_cinema = Activity(
        redemptions=1, reversals=1, points_redeemed=30, redeem_points_reversed=10
    )
    await wait_for(
        lambda: activity_total(engine, grocer.id),
        lambda total: total == expected_grocer,
        "the grocer's rollup",
    )
    await wait_for(
        lambda: activity_total(engine, cinema.id),
        lambda total: total == expected_cinema,
        "the cinema's rollup",
    )
    events = await _event_ids(engine, member)
    assert len(events) == 6
    assert await _handled(engine, ACTIVITY.name, events) == 6

    # Delivered again (a job run twice, a worker that died after committing): nothing changes.
    async with engine.connect() as c:
        upto = (
            await c.execute(
                text("SELECT xact_id::text, id FROM outbox ORDER BY xact_id DESC, id DESC LIMIT 1")
            )
        ).one()
    assert await deliver(engine, ACTIVITY, EventRange(ORIGIN, Position(upto[0], upto[1]))) == 0
    assert await activity_total(engine, grocer.id) == expected_grocer
    assert await activity_total(engine, cinema.id) == expected_cinema


def _recorder(name: str, seen: list[uuid.UUID], *, pause: float = 0) -> Consumer:
    """A consumer of its own event type (named after it), recording what it is handed."""

    async def handle(conn: AsyncConnection, events: Sequence[Event]) -> None:
        seen.extend(e.id for e in events)
        await asyncio.sleep(pause)  # keeps the transaction open while the other delivery runs

    return Consumer(name=name, types=frozenset({f"test.{name}"}), handle=handle)


async def _record(conn: AsyncConnection, consumer: Consumer, label: str) -> uuid.UUID:
    (event_type,) = consumer.types
    return await outbox.record(
        conn, event_type, partner_id=None, member_id=None, payload={"label": label}
    )


async def _position(engine: AsyncEngine, event_id: uuid.UUID) -> Position:
    async with engine.connect() as c:
        row = (
            await c.execute(
                text("SELECT xact_id::text, id FROM outbox WHERE id = :e"), {"e": event_id}
            )
        ).one()
    return Position(row[0], row[1])


async def test_concurrent_deliveries_of_one_range_handle_each_event_once(
    engine: AsyncEngine,
) -> None:
    seen: list[uuid.UUID] = []
    consumer = _recorder(f"dup-{secrets.token_hex(4)}", seen, pause=0.3)
    async with engine.begin() as c:
        ids = [await _record(c, consumer, str(n)) for n in range(5)]
    first, last = await _position(engine, ids[0]), await _position(engine, ids[-1])
    window = EventRange(Position(first.xact_id, uuid.UUID(int=0)), last)

    counts = await asyncio.gather(*(deliver(engine, consumer, window) for _ in range(3)))
    assert sorted(counts) == [0, 0, 5]
    assert sorted(seen) == sorted(ids)
    assert await _handled(engine, consumer.name, ids) == 5
    assert await deliver(engine, consumer, window) == 0  # and once more, later
    assert sorted(seen) == sorted(ids)


async def _jobs(conn: Any, consumer: Consumer) -> list[EventRange]:
    rows = await conn.fetch(
        "DELETE FROM pgqueuer WHERE entrypoint = $1 RETURNING payload", consumer.entrypoint
    )
    return [EventRange.decode(r["payload"]) for r in rows]


async def test_a_transaction_that_commits_late_is_not_skipped(engine: AsyncEngine) -> None:
    """Event A is written first but committed last: an id cursor would have passed it."""
    seen: list[uuid.UUID] = []
    consumer = _recorder(f"late-{secrets.token_hex(4)}", seen)
    relay = await asyncpg.connect(asyncpg_dsn(engine))

    async def relay_and_deliver() -> list[uuid.UUID]:
        while await relay_once(relay, consumer, 100_000):
            pass
        for window in await _jobs(relay, consumer):
            await deliver(engine, consumer, window)
        return seen

    try:
        await ensure_cursors(relay, [consumer])
        await relay_and_deliver()  # from the start of the outbox: none of its type yet
        async with engine.connect() as slow:
            await slow.begin()
            late = await _record(slow, consumer, "written first, committed last")
            async with engine.begin() as c:
                early = await _record(c, consumer, "written second, committed first")
            assert late < early  # UUIDv7: the late one has the smaller id
            # Held back while the older transaction runs (it is below the horizon), not skipped.
            assert await relay_and_deliver() == []
            await slow.commit()
        # Other transactions of the cluster may hold the horizon back a little longer.
        await wait_for(relay_and_deliver, lambda s: len(s) >= 2, "both events")
        assert seen == [late, early]  # both, once, in delivery order
    finally:
        await relay.close()
