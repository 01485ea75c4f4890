"""Consumers, and one delivery of a range of events to one consumer, at most once in effect.

The relay (`outbox.relay`) hands each consumer the events in order of (writing transaction,
id) as ranges `(after, upto]` carried by queue jobs. A delivery claims a receipt per
(consumer, event) in the same transaction as the consumer's effects: an event whose receipt
exists (its effects committed) is left out, and two deliveries of one range racing each other
wait on each other's receipts, so however often a job runs, each event is handled once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("coalition.outbox")


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    type: str
    occurred_at: datetime
    partner_id: uuid.UUID | None
    member_id: uuid.UUID | None
    payload: dict[str, Any]


Handler = Callable[[AsyncConnection, Sequence[Event]], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    """`handle` gets the events of `types` not yet handled by this consumer, in delivery order,
    inside the transaction that records their receipts: its writes commit with them or not at
    all. It must not commit, and should write rows in a stable order (no deadlocks between
    concurrent deliveries)."""

    name: str  # stable: receipts and the relay's cursor are kept under it
    types: frozenset[str]
    handle: Handler

    @property
    def entrypoint(self) -> str:
        return f"outbox.{self.name}"


@dataclass(frozen=True)
class Position:
    """A place in delivery order: the writing transaction's id (xid8, as text) and the event id."""

    xact_id: str
    event_id: uuid.UUID

    def encode(self) -> list[str]:
        return [self.xact_id, str(self.event_id)]

    @classmethod
    def decode(cls, value: Any) -> Position:
        xact_id, event_id = value
        return cls(str(xact_id), uuid.UUID(str(event_id)))


ORIGIN = Position("0", uuid.UUID(int=0))


@dataclass(frozen=True)
class EventRange:
    """The events after `after` up to and including `upto`, in delivery order."""

    after: Position
    upto: Position

    def encode(self) -> bytes:
        return orjson.dumps({"after": self.after.encode(), "upto": self.upto.encode()})

    @classmethod
    def decode(cls, payload: bytes | None) -> EventRange:
        data = orjson.loads(payload or b"{}")
        return cls(Position.decode(data["after"]), Position.decode(data["upto"]))


_CLAIM = text(
    """
    WITH fresh AS (
      INSERT INTO outbox_receipts (consumer, event_id)
      SELECT CAST(:consumer AS text), o.id FROM outbox o
      WHERE (o.xact_id, o.id) > (CAST(CAST(:after_xact AS text) AS xid8), CAST(:after_id AS uuid))
        AND (o.xact_id, o.id) <= (CAST(CAST(:upto_xact AS text) AS xid8), CAST(:upto_id AS uuid))
        AND o.type = ANY(CAST(:types AS text[]))
      ORDER BY o.xact_id, o.id
      ON CONFLICT DO NOTHING
      RETURNING event_id
    )
    SELECT o.id, o.type, o.occurred_at, o.partner_id, o.member_id, o.payload
    FROM outbox o JOIN fresh ON fresh.event_id = o.id
    ORDER BY o.xact_id, o.id
    """
)


async def deliver(
    engine: AsyncEngine, consumer: Consumer, window: EventRange, *, hold: str | None = None
) -> int:
    """Hand the consumer the events of `window` it has not handled yet, in one transaction;
    returns how many it got.

    `hold` is a test hook (`COALITION_WORKER_TEST_HOLD`): when an event's payload reference
    equals it, the delivery stops forever before committing, so a test can kill the worker
    while it holds the event.
    """
    async with engine.begin() as conn:
        rows = await conn.execute(
            _CLAIM,
            {
                "consumer": consumer.name,
                "after_xact": window.after.xact_id,
                "after_id": window.after.event_id,
                "upto_xact": window.upto.xact_id,
                "upto_id": window.upto.event_id,
                "types": sorted(consumer.types),
            },
        )
        events = [Event(**row._mapping) for row in rows]
        if events:
            await consumer.handle(conn, events)
        if hold is not None:
            held = [e.id for e in events if e.payload.get("reference") == hold]
            if held:
                log.warning("holding event %s for %s (test hook)", held[0], consumer.name)
                await asyncio.Event().wait()
    return len(events)
