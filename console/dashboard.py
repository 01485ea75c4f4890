"""The dashboard's figures, read from the outbox's daily rollup (`analytics_daily_activity`),
never from a scan of the ledger: per UTC day, coalition-wide, over a range of days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY


@dataclass(frozen=True)
class Day:
    day: date
    earns: int
    redemptions: int
    points_issued: int
    points_redeemed: int
    points_expired: int


@dataclass(frozen=True)
class Dashboard:
    start: date
    end: date  # inclusive
    days: list[Day] = field(default_factory=list)
    members: int = 0
    partners: int = 0
    # Points issued and not (yet) redeemed, reversed or expired: what the coalition owes its
    # members, in points, as of the rollup (all days, not only the range).
    outstanding_points: int = 0

    @property
    def earns(self) -> int:
        return sum(d.earns for d in self.days)

    @property
    def redemptions(self) -> int:
        return sum(d.redemptions for d in self.days)

    @property
    def points_issued(self) -> int:
        return sum(d.points_issued for d in self.days)

    @property
    def points_redeemed(self) -> int:
        return sum(d.points_redeemed for d in self.days)

    @property
    def points_expired(self) -> int:
        return sum(d.points_expired for d in self.days)

    def chart(self) -> dict[str, list[object]]:
        """The series the page's charts draw (JSON-ready)."""
        return {
            "days": [d.day.isoformat() for d in self.days],
            "earns": [d.earns for d in self.days],
            "redemptions": [d.redemptions for d in self.days],
            "issued": [d.points_issued for d in self.days],
            "redeemed": [d.points_redeemed for d in self.days],
            "expired": [d.points_expired for d in self.days],
        }


MAX_DAYS = 366

_DAYS = text(
    """
    SELECT g.day::date AS day,
           COALESCE(sum(a.earns), 0)::bigint AS earns,
           COALESCE(sum(a.redemptions), 0)::bigint AS redemptions,
           COALESCE(sum(a.points_issued - a.earn_points_reversed), 0)::bigint AS points_issued,
           COALESCE(sum(a.points_redeemed - a.redeem_points_reversed), 0)::bigint
             AS points_redeemed,
           COALESCE(sum(a.points_expired), 0)::bigint AS points_expired
    FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS g(day)
    LEFT JOIN analytics_daily_activity a ON a.day = g.day::date
    GROUP BY g.day ORDER BY g.day
    """
)
# The operator's own partners row (migration 0015) is no partner.
_TOTALS = text(
    f"""
    SELECT COALESCE(sum(points_issued - earn_points_reversed - points_redeemed
                        + redeem_points_reversed - points_expired), 0)::bigint AS outstanding,
           (SELECT count(*) FROM partners WHERE id <> '{OPERATOR_PARTY}'::uuid) AS partners,
           (SELECT count(*) FROM members) AS members
    FROM analytics_daily_activity
    """
)


async def load_dashboard(conn: AsyncConnection, start: date, end: date) -> Dashboard:
    if end < start:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
    days = [
        Day(r.day, r.earns, r.redemptions, r.points_issued, r.points_redeemed, r.points_expired)
        for r in await conn.execute(_DAYS, {"start": start, "end": end})
    ]
    totals = (await conn.execute(_TOTALS)).one()
    return Dashboard(
        start=start,
        end=end,
        days=days,
        members=totals.members,
        partners=totals.partners,
        outstanding_points=totals.outstanding,
    )
