"""Members' tiers as stored (`member_tiers`), and what the earn path folds into its own reads.

A member without a tier has no row. The tier code is "" when none (as CEL's `member.tier`
and `MemberFacts.tier` expect).

For the earn path, which reads everything it needs in one preflight statement:

- `member_tier_sql(member)`: a column expression, the tier code of the member whose id is
  the SQL expression `member` ("" when none), e.g.
  `f"SELECT ..., {member_tier_sql('m.id')} AS member_tier FROM ..."`; one primary-key probe;
- `MEMBER_TIER_JOIN` / `MEMBER_TIER_COLUMN`: the same as a join, for a query that already
  has the member as `m`;
- and with `coalition_settings s` in the query, select `s.tiers_revision` and pass it to
  `points.tiers.policy.policy_in_force(conn, revision, occurred_at)` for the policy (cached:
  no query while the revision is unchanged).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


def member_tier_sql(member: str) -> str:
    """The tier code ("" when none) of the member whose id is the SQL expression `member`."""
    return f"COALESCE((SELECT mt.tier_code FROM member_tiers mt WHERE mt.member_id = {member}), '')"


MEMBER_TIER_JOIN = "LEFT JOIN member_tiers mt ON mt.member_id = m.id"
"""Joins a query's member `m` to its tier row (alias `mt`); read it with MEMBER_TIER_COLUMN."""

MEMBER_TIER_COLUMN = "COALESCE(mt.tier_code, '')"
"""The tier code ("" when none), with MEMBER_TIER_JOIN in the query."""


@dataclass(frozen=True)
class MemberTierRecord:
    member_id: uuid.UUID
    tier_code: str
    since: datetime
    qualifying_points: int  # as of evaluated_at
    evaluated_at: datetime
    below_since: datetime | None  # first found below the tier's threshold (grace runs)
    policy_version: int


_SELECT = (
    "SELECT member_id, tier_code, since, qualifying_points, evaluated_at, below_since,"
    " policy_version FROM member_tiers"
)


async def member_tiers_of(
    conn: AsyncConnection, member_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, MemberTierRecord]:
    """The tier rows of these members (members without a tier are absent)."""
    if not member_ids:
        return {}
    rows = await conn.execute(
        text(f"{_SELECT} WHERE member_id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": list(member_ids)},
    )
    return {r.member_id: MemberTierRecord(**r._mapping) for r in rows}


async def member_tier(conn: AsyncConnection, member_id: uuid.UUID) -> str:
    """The member's tier code, "" when none."""
    code = await conn.scalar(
        text(f"SELECT {member_tier_sql('CAST(:m AS uuid)')}"), {"m": member_id}
    )
    return str(code or "")


@dataclass(frozen=True)
class TierChangeRecord:
    id: uuid.UUID
    member_id: uuid.UUID
    from_tier: str | None
    to_tier: str | None
    reason: str
    qualifying_points: int
    policy_version: int
    event_id: uuid.UUID
    at: datetime


async def tier_history(
    conn: AsyncConnection, member_id: uuid.UUID, *, limit: int = 100
) -> list[TierChangeRecord]:
    """The member's tier changes, newest first."""
    rows = await conn.execute(
        text(
            "SELECT id, member_id, from_tier, to_tier, reason, qualifying_points,"
            " policy_version, event_id, at FROM member_tier_changes"
            " WHERE member_id = :m ORDER BY at DESC, id DESC LIMIT :limit"
        ),
        {"m": member_id, "limit": limit},
    )
    return [TierChangeRecord(**r._mapping) for r in rows]
