"""A campaign's budget slots and the periods of its per-member limit.

Budget: the points a campaign may give in total, split into `BUDGET_SLOTS` rows of
`campaign_budget_slots` so that concurrent earns drawing from it do not all wait on one row.
The slots hold what is left (their sum is `budgetLeft`); the booking draws from the slot its
member hashes to (`ledger_book_earn`: abs(hashtext(member id)) mod the slots) and borrows from siblings when that one runs dry; a reversal
gives points back. Here the slots are only created and resized:
- a budget B on a campaign without slots: B split evenly over the slots;
- a budget changed from B to B': B' − B added, spread evenly, or B − B' taken away in
  proportion to what each slot holds (never below zero: what was given stays given);
- a budget removed (null): the slots stay as they are (the booking ignores them while the
  version in force has no budget), and a later budget adjusts them by its difference from
  the last one set.

Per-member limit: points per member per period, counted in `campaign_member_usage` under the
period's first day in the coalition's time zone (`period_start`).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.earn_once import CAMPAIGN_PERIOD
from points.rules.model import LimitPeriod

BUDGET_SLOTS = 16


def period_start(period: LimitPeriod, local_day: date) -> date:
    """The first day of the limit period holding `local_day` (a day in the coalition's time
    zone): the day itself, its ISO week's Monday, its month's first day, or
    CAMPAIGN_PERIOD (the whole campaign)."""
    if period == LimitPeriod.DAY:
        return local_day
    if period == LimitPeriod.WEEK:
        return local_day - timedelta(days=local_day.isoweekday() - 1)
    if period == LimitPeriod.MONTH:
        return local_day.replace(day=1)
    return CAMPAIGN_PERIOD


def split_evenly(points: int, parts: int = BUDGET_SLOTS) -> list[int]:
    """`points` in `parts` parts that differ by at most one (the first ones larger)."""
    base, extra = divmod(points, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _take(remaining: list[int], points: int) -> list[int]:
    """Take `points` away in proportion to what each slot holds (the rounding from the fullest
    ones), never below zero: all of it when `points` is at least the total."""
    total = sum(remaining)
    if points >= total:
        return [0] * len(remaining)
    left = [v - v * points // total for v in remaining]
    rest = sum(left) - (total - points)  # fewer than the slots holding a fraction
    for i in sorted(range(len(left)), key=lambda i: (-left[i], i))[:rest]:
        left[i] -= 1
    return left


async def set_budget(
    conn: AsyncConnection, campaign_id: uuid.UUID, previous: int | None, budget: int | None
) -> None:
    """Create or resize the campaign's slots for a budget changed from `previous` (the last
    budget set, even if removed since; None: never had one) to `budget` (None: removed)."""
    if budget is None or budget == previous:
        return
    rows = (
        await conn.execute(
            text(
                "SELECT slot, remaining FROM campaign_budget_slots WHERE campaign_id = :c"
                " ORDER BY slot FOR UPDATE"
            ),
            {"c": campaign_id},
        )
    ).all()
    if not rows or previous is None:
        # No slots yet: the whole budget, split evenly (any old slots are replaced).
        await conn.execute(
            text("DELETE FROM campaign_budget_slots WHERE campaign_id = :c"), {"c": campaign_id}
        )
        await conn.execute(
            text(
                "INSERT INTO campaign_budget_slots (campaign_id, slot, remaining)"
                " SELECT :c, s - 1, r FROM unnest(CAST(:r AS bigint[])) WITH ORDINALITY AS t(r, s)"
            ),
            {"c": campaign_id, "r": split_evenly(budget)},
        )
        return
    slots = [r.slot for r in rows]
    remaining = [r.remaining for r in rows]
    delta = budget - previous
    if delta > 0:
        updated = [
            v + add for v, add in zip(remaining, split_evenly(delta, len(rows)), strict=True)
        ]
    else:
        updated = _take(remaining, -delta)
    await conn.execute(
        text(
            "UPDATE campaign_budget_slots b SET remaining = t.r"
            " FROM unnest(CAST(:s AS smallint[]), CAST(:r AS bigint[])) AS t(s, r)"
            " WHERE b.campaign_id = :c AND b.slot = t.s"
        ),
        {"c": campaign_id, "s": slots, "r": updated},
    )


async def budget_left(conn: AsyncConnection, campaign_id: uuid.UUID) -> int | None:
    """What is left of the budget (the sum of the slots); None when there are no slots."""
    left = await conn.scalar(
        text(
            "SELECT CAST(sum(remaining) AS bigint) FROM campaign_budget_slots"
            " WHERE campaign_id = :c"
        ),
        {"c": campaign_id},
    )
    return None if left is None else int(left)
