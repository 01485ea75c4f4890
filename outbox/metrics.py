"""Backlog figures per consumer, for Prometheus: events not yet handled, the age of the oldest,
and jobs parked after failing too often.

Read from the database with one statement (so every API process reports them, whichever
process runs the worker, and they grow while no worker runs at all), refreshed every few
seconds by `api.worker.OutboxRuntime`; the collector serves the last reading.

Pending events are those of the consumer's types past its relay cursor (counted up to
`COUNT_CAP`) plus those in its unfinished jobs (queued, picked, or failed and held). The age is
that of the first pending event in delivery order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.delivery import Consumer

COUNT_CAP = 1_000_000  # a scrape never counts a larger backlog row by row

_BACKLOG = text(
    f"""
    WITH names AS (
      SELECT n.name, n.entrypoint, string_to_array(n.types, ' ') AS types,
             COALESCE(c.xact_id, '0'::xid8) AS xact_id,
             COALESCE(c.event_id, '00000000-0000-0000-0000-000000000000'::uuid) AS event_id
      FROM unnest(CAST(:names AS text[]), CAST(:entrypoints AS text[]), CAST(:types AS text[]))
        AS n(name, entrypoint, types)
      LEFT JOIN outbox_cursors c ON c.consumer = n.name
    ), jobs AS (
      SELECT entrypoint,
             sum(COALESCE((headers->>'events')::bigint, 0)) AS events,
             min((headers->>'oldest')::timestamptz) AS oldest,
             count(*) FILTER (WHERE status = 'failed') AS failed
      FROM pgqueuer
      WHERE entrypoint = ANY(CAST(:entrypoints AS text[]))
        AND status IN ('queued', 'picked', 'failed')
      GROUP BY entrypoint
    )
    SELECT n.name,
           (SELECT count(*) FROM (SELECT 1 FROM outbox o
              WHERE (o.xact_id, o.id) > (n.xact_id, n.event_id) AND o.type = ANY(n.types)
              LIMIT {COUNT_CAP}) x)
             + COALESCE(j.events, 0) AS pending,
           LEAST(j.oldest, (SELECT o.occurred_at FROM outbox o
              WHERE (o.xact_id, o.id) > (n.xact_id, n.event_id) AND o.type = ANY(n.types)
              ORDER BY o.xact_id, o.id LIMIT 1)) AS oldest,
           COALESCE(j.failed, 0) AS failed
    FROM names n LEFT JOIN jobs j ON j.entrypoint = n.entrypoint
    ORDER BY n.name
    """
)


@dataclass(frozen=True)
class Backlog:
    consumer: str
    pending: int
    oldest: datetime | None  # of the first pending event; None when nothing is pending
    failed_jobs: int


async def read_backlog(engine: AsyncEngine, consumers: Sequence[Consumer]) -> list[Backlog]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            _BACKLOG,
            {
                "names": [c.name for c in consumers],
                "entrypoints": [c.entrypoint for c in consumers],
                "types": [" ".join(sorted(c.types)) for c in consumers],
            },
        )
        return [Backlog(r.name, int(r.pending), r.oldest, int(r.failed)) for r in rows]


@dataclass
class BacklogReading:
    """The last reading, shared by the refresher and the collector."""

    backlog: list[Backlog] = field(default_factory=list)


class OutboxCollector(Collector):
    def __init__(self, reading: BacklogReading) -> None:
        self.reading = reading

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(self.reading.backlog)

    @staticmethod
    def _families(backlog: Sequence[Backlog] = ()) -> list[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "coalition_outbox_pending_events",
            "Outbox events a consumer has not handled yet (queue depth).",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "coalition_outbox_lag_seconds",
            "Age of the oldest outbox event a consumer has not handled yet (0: none pending).",
            labels=["consumer"],
        )
        failed = GaugeMetricFamily(
            "coalition_outbox_failed_jobs",
            "A consumer's jobs held after failing every retry (their events wait).",
            labels=["consumer"],
        )
        now = time.time()
        for b in backlog:
            pending.add_metric([b.consumer], b.pending)
            age = 0.0 if b.oldest is None or b.pending == 0 else now - b.oldest.timestamp()
            lag.add_metric([b.consumer], max(0.0, age))
            failed.add_metric([b.consumer], b.failed_jobs)
        return [pending, lag, failed]
