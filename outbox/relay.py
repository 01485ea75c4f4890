"""The relay: committed outbox events into each consumer's queue, as ranges, never skipping one.

Events are read in order of (writing transaction id, event id), and only from transactions
older than the oldest one still running (`pg_snapshot_xmin` of the current snapshot): every
transaction below that horizon has committed or rolled back, so no event can still appear
behind the cursor. A cursor by event id alone would skip the events of a transaction that
commits after a later-started one (UUIDv7 ids follow the clock, not commit order).

The price: a long transaction anywhere in the cluster holds delivery back until it ends
(visible as `coalition_outbox_lag_seconds`). Nothing is lost meanwhile.

Per consumer, in one transaction: lock its cursor row (SKIP LOCKED: a relay in another worker
process that holds it is doing the work), read up to `batch` events past the cursor, enqueue
one job carrying their range, move the cursor. The job and the cursor commit together, so a
range is enqueued exactly once; the job is then delivered at least once (`outbox.delivery`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg  # type: ignore[import-untyped]
from pgqueuer import AsyncpgDriver, Queries

from outbox.delivery import Consumer, EventRange, Position

_ENSURE_CURSORS = (
    "INSERT INTO outbox_cursors (consumer) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
)

_LOCK_CURSOR = (
    "SELECT xact_id::text AS xact_id, event_id FROM outbox_cursors"
    " WHERE consumer = $1 FOR UPDATE SKIP LOCKED"
)

_NEXT = """
SELECT id, xact_id::text AS xact_id, occurred_at, type FROM outbox
WHERE (xact_id, id) > ($1::text::xid8, $2::uuid)
  AND xact_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xact_id, id
LIMIT $3
"""

_MOVE_CURSOR = (
    "UPDATE outbox_cursors SET xact_id = $2::text::xid8, event_id = $3, relayed_at = now()"
    " WHERE consumer = $1"
)


async def ensure_cursors(conn: asyncpg.Connection, consumers: Sequence[Consumer]) -> None:
    """A consumer seen for the first time starts at the beginning of the outbox."""
    await conn.execute(_ENSURE_CURSORS, [c.name for c in consumers])


async def relay_once(conn: asyncpg.Connection, consumer: Consumer, batch: int) -> int:
    """Move the cursor over up to `batch` events, enqueueing one job for their range when any
    is of a type the consumer takes; returns how many events were passed."""
    async with conn.transaction():
        cursor = await conn.fetchrow(_LOCK_CURSOR, consumer.name)
        if cursor is None:
            return 0
        rows = await conn.fetch(_NEXT, cursor["xact_id"], cursor["event_id"], batch)
        if not rows:
            return 0
        window = EventRange(
            Position(cursor["xact_id"], cursor["event_id"]),
            Position(rows[-1]["xact_id"], rows[-1]["id"]),
        )
        wanted = [r["occurred_at"] for r in rows if r["type"] in consumer.types]
        if wanted:
            oldest: datetime = min(wanted)
            # Headers feed the backlog figures (outbox.metrics) without reading the range again.
            await Queries(AsyncpgDriver(conn)).enqueue(
                [consumer.entrypoint],
                [window.encode()],
                [0],
                headers=[{"events": str(len(wanted)), "oldest": oldest.isoformat()}],
            )
        await conn.execute(_MOVE_CURSOR, consumer.name, window.upto.xact_id, window.upto.event_id)
        return len(rows)
