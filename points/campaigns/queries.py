"""Reading campaigns: one, a page of them, a campaign's versions. A partner's client sees only
its own partner's campaigns; the operator sees every campaign."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from points.campaigns.records import (
    VERSION_COLUMNS,
    CampaignRecord,
    CampaignVersionRecord,
    version_of,
)
from points.rules.model import CampaignStatus

_CAMPAIGN_COLUMNS = (
    f"c.id, c.created_at, c.created_by AS campaign_created_by, {VERSION_COLUMNS},"
    " (SELECT CAST(sum(b.remaining) AS bigint) FROM campaign_budget_slots b"
    "  WHERE b.campaign_id = c.id) AS slots_left"
)
_FROM = (
    "campaigns c JOIN campaign_versions v ON v.campaign_id = c.id AND v.version = c.current_version"
)
# A partner's client sees its own partner's campaigns only (NULL: the operator, every one).
_VISIBLE = "(CAST(:owner AS uuid) IS NULL OR c.owner_partner_id = :owner)"


def visible_owner(caller: Caller) -> uuid.UUID | None:
    """The owner a caller's campaigns are restricted to; None: every campaign (the operator).
    A caller that is neither sees nothing (a random owner)."""
    if caller.is_operator:
        return None
    return caller.partner_id or uuid.uuid4()


def _record(row: Any) -> CampaignRecord:
    current = version_of(row)
    budget_left = None
    if current.rule.budget_points is not None:
        budget_left = row.slots_left or 0
    return CampaignRecord(
        id=row.id,
        owner_partner_id=current.rule.owner_partner_id,
        created_at=row.created_at,
        created_by=row.campaign_created_by,
        current=current,
        budget_left=budget_left,
    )


async def get_campaign(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID
) -> CampaignRecord | None:
    """The campaign as it stands now, or None when missing or not the caller's to see."""
    row = (
        await conn.execute(
            text(f"SELECT {_CAMPAIGN_COLUMNS} FROM {_FROM} WHERE c.id = :id AND {_VISIBLE}"),
            {"id": campaign_id, "owner": visible_owner(caller)},
        )
    ).one_or_none()
    return None if row is None else _record(row)


async def list_campaigns(
    conn: AsyncConnection,
    caller: Caller,
    *,
    after: uuid.UUID | None,
    limit: int,
    status: CampaignStatus | None = None,
) -> list[CampaignRecord]:
    """A page of the campaigns the caller may see, newest first, after the cursor's."""
    rows = await conn.execute(
        text(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM {_FROM} WHERE {_VISIBLE}"
            " AND (CAST(:after AS uuid) IS NULL OR c.id < :after)"
            " AND (CAST(:status AS text) IS NULL OR c.status = :status)"
            " ORDER BY c.id DESC LIMIT :limit"
        ),
        {
            "owner": visible_owner(caller),
            "after": after,
            "status": None if status is None else str(status),
            "limit": limit,
        },
    )
    return [_record(r) for r in rows]


async def list_versions(
    conn: AsyncConnection, campaign_id: uuid.UUID
) -> list[CampaignVersionRecord]:
    """Every version of a campaign, oldest first (the caller has checked it may see it)."""
    rows = await conn.execute(
        text(
            f"SELECT {VERSION_COLUMNS} FROM campaign_versions v"
            " JOIN campaigns c ON c.id = v.campaign_id"
            " WHERE v.campaign_id = :id ORDER BY v.version"
        ),
        {"id": campaign_id},
    )
    return [version_of(r) for r in rows]


async def versions_of(
    conn: AsyncConnection, campaign_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[CampaignVersionRecord]]:
    """Every version of each campaign, oldest first, in one query (a page's campaigns)."""
    rows = await conn.execute(
        text(
            f"SELECT {VERSION_COLUMNS} FROM campaign_versions v"
            " JOIN campaigns c ON c.id = v.campaign_id"
            " WHERE v.campaign_id = ANY(:ids) ORDER BY v.campaign_id, v.version"
        ),
        {"ids": campaign_ids},
    )
    found: dict[uuid.UUID, list[CampaignVersionRecord]] = {i: [] for i in campaign_ids}
    for row in rows:
        found[row.campaign_id].append(version_of(row))
    return found
