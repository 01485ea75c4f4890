"""Daily activity per partner: earns, redemptions, reversals and their points, from
`transfer.booked` events (the operator console's dashboard and KPIs read it).

A day is a UTC calendar day of the booking (the event's time) until the coalition has a time
zone setting. A reversal counts on the day it was booked, at the partner that booked the
original, split by what it reversed. A BONUS (points a funder paid towards another partner's
earn, `ledger.earn_sql`) counts as points issued by its funder, not as an earn; its funder's
part of the earn's reversal as earn points reversed, not as a reversal. Each event is counted once: the outbox delivery records its receipt in
the same transaction as this upsert.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.outbox import TRANSFER_BOOKED
from ledger.postings import TransferCode
from outbox.delivery import Consumer, Event


@dataclass
class Activity:
    earns: int = 0
    redemptions: int = 0
    reversals: int = 0
    points_issued: int = 0
    points_redeemed: int = 0
    earn_points_reversed: int = 0
    redeem_points_reversed: int = 0
    points_expired: int = 0


_COLUMNS = tuple(Activity.__dataclass_fields__)

# Rows in key order, so concurrent deliveries lock partner-days in the same order.
_UPSERT = text(
    f"""
    INSERT INTO analytics_daily_activity AS a (partner_id, day, {", ".join(_COLUMNS)})
    SELECT * FROM unnest(CAST(:partners AS uuid[]), CAST(:days AS date[]),
                         {", ".join(f"CAST(:{c} AS bigint[])" for c in _COLUMNS)})
    ON CONFLICT (partner_id, day) DO UPDATE SET
      {", ".join(f"{c} = a.{c} + EXCLUDED.{c}" for c in _COLUMNS)}, updated_at = now()
    """
)

_ORIGINAL_CODES = text("SELECT id, code FROM transfers WHERE id = ANY(CAST(:ids AS uuid[]))")


async def handle(conn: AsyncConnection, events: Sequence[Event]) -> None:
    reversed_ids = {
        uuid.UUID(e.payload["reversal_of_id"])
        for e in events
        if e.payload.get("code") == TransferCode.REVERSAL and e.payload.get("reversal_of_id")
    }
    original_codes: dict[uuid.UUID, str] = {}
    if reversed_ids:
        rows = await conn.execute(_ORIGINAL_CODES, {"ids": sorted(reversed_ids)})
        original_codes = {r.id: r.code for r in rows}

    days: dict[tuple[uuid.UUID, date], Activity] = defaultdict(Activity)
    for event in events:
        if event.partner_id is None:
            continue  # operator adjustments between operator accounts
        code, points = event.payload.get("code"), int(event.payload.get("points") or 0)
        key = (event.partner_id, event.occurred_at.astimezone(UTC).date())
        if code == TransferCode.EARN:
            days[key].earns += 1
            days[key].points_issued += points
        elif code == TransferCode.BONUS:  # a funder's share of another partner's earn
            days[key].points_issued += points
        elif code == TransferCode.REDEEM:
            days[key].redemptions += 1
            days[key].points_redeemed += points
        elif code == TransferCode.REVERSAL:
            original = original_codes.get(uuid.UUID(event.payload["reversal_of_id"]))
            if original == TransferCode.BONUS:  # its funder's part of an earn's reversal
                days[key].earn_points_reversed += points
                continue
            days[key].reversals += 1
            if original == TransferCode.EARN:
                days[key].earn_points_reversed += points
            else:
                days[key].redeem_points_reversed += points
        elif code == TransferCode.EXPIRY:
            days[key].points_expired += points
    if not days:
        return
    keys = sorted(days)
    columns = list(zip(*(astuple(days[k]) for k in keys), strict=True))
    await conn.execute(
        _UPSERT,
        {
            "partners": [k[0] for k in keys],
            "days": [k[1] for k in keys],
            **{name: list(values) for name, values in zip(_COLUMNS, columns, strict=True)},
        },
    )


CONSUMER = Consumer(name="activity", types=frozenset({TRANSFER_BOOKED}), handle=handle)


async def daily_activity(
    conn: AsyncConnection, partner_id: uuid.UUID, since: date, until: date
) -> dict[date, Activity]:
    """The partner's days in [since, until] that had any activity."""
    rows = await conn.execute(
        text(
            f"SELECT day, {', '.join(_COLUMNS)} FROM analytics_daily_activity"
            " WHERE partner_id = :p AND day BETWEEN :since AND :until ORDER BY day"
        ),
        {"p": partner_id, "since": since, "until": until},
    )
    return {r.day: Activity(*(int(getattr(r, c)) for c in _COLUMNS)) for r in rows}
