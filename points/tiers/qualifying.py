"""Qualifying points: what a member earned at all partners within the policy's rolling window.

Qualifying points of a member at time `now` = the points of its EARN and BONUS transfers whose
purchase happened (`occurred_at`) after `now - window_days`, minus the points of the REVERSAL
transfers of those transfers booked by `now`. Pending points (still in a partner's return
window) count: a member is upgraded as soon as it qualifies, and a refund within the return
window takes them back (without an immediate downgrade, see `points.tiers.evaluation`).
Redemptions and expiry do not lower qualifying points: spending is not un-earning. Points
given by a tier multiplier or a campaign count too (they are EARN or BONUS points).

The read is one indexed statement for any number of members: `ix_transfers_member_qualifying`
(migration 0014: `transfers (member_id, occurred_at) INCLUDE (points) WHERE code IN ('EARN',
'BONUS')`) gives each member's earned points in the window without touching its other
transfers, and `ix_transfers_reversal_of` finds each one's reversals.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

QUALIFYING_CODES = ("EARN", "BONUS")

_QUALIFYING = text(
    """
    SELECT m.id AS member_id,
           COALESCE(sum(t.points), 0) - COALESCE(sum(r.reversed), 0) AS points
    FROM unnest(CAST(:members AS uuid[])) AS m(id)
    LEFT JOIN transfers t
      ON t.member_id = m.id AND t.code IN ('EARN', 'BONUS') AND t.occurred_at > :since
    LEFT JOIN LATERAL (
      SELECT sum(x.points) AS reversed FROM transfers x
      WHERE x.reversal_of_id = t.id AND x.code = 'REVERSAL' AND x.created_at <= :now
    ) r ON true
    GROUP BY m.id
    """
)


def window_start(now: datetime, window_days: int) -> datetime:
    """Purchases after this instant are in the window that ends at `now`."""
    return now - timedelta(days=window_days)


async def qualifying_points_of(
    conn: AsyncConnection, member_ids: Sequence[uuid.UUID], *, window_days: int, now: datetime
) -> dict[uuid.UUID, int]:
    """Each member's qualifying points at `now` (every member given has an entry, 0 at least)."""
    if not member_ids:
        return {}
    rows = await conn.execute(
        _QUALIFYING,
        {
            "members": list(dict.fromkeys(member_ids)),
            "since": window_start(now, window_days),
            "now": now,
        },
    )
    return {r.member_id: max(0, int(r.points)) for r in rows}


async def qualifying_points(
    conn: AsyncConnection, member_id: uuid.UUID, *, window_days: int, now: datetime
) -> int:
    found = await qualifying_points_of(conn, [member_id], window_days=window_days, now=now)
    return found.get(member_id, 0)
