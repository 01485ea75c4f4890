"""Changing campaigns: create, update, pause, resume, end, archive.

Every change is a new immutable version (campaign_versions) taking force when it is saved
(`effective_at`, strictly after the previous version's), in one transaction with the campaign
row, its budget slots, the catalog revision (`coalition_settings.campaigns_revision`, which
tells every earn its cached catalog is stale) and an audit entry. A refused change raises
`DomainError` before anything is written.

Who: the operator (coalition-wide campaigns, and every campaign); a partner's client with the
`campaigns:write` scope (its own campaigns only, applying only at itself and funded only by
itself; another partner's campaign is CAMPAIGN_NOT_FOUND to it).

Lifecycle (the status of each version; a purchase is priced only by ACTIVE versions, within
their schedule):

    DRAFT ──resume──▶ ACTIVE ◀──resume── PAUSED
      │                 │ └────pause────▶  │
      │                 └──end──▶ ENDED ◀──end
      └──archive──▶ ARCHIVED ◀──archive──┘ (from ENDED)

- update: DRAFT, ACTIVE or PAUSED (the status is kept); ENDED and ARCHIVED are final;
- asking for the status a campaign already has (pausing a PAUSED one, ...) changes nothing
  and is not an error (a retried request is harmless); an update that changes nothing
  writes no version either;
- reaching `endsAt` does not change the stored status: the schedule is part of the version.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.audit import AuditAction
from core.caller import Caller, Scope
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from points.campaigns.limits import set_budget
from points.campaigns.queries import get_campaign, visible_owner
from points.campaigns.records import (
    CampaignRecord,
    definition_details,
    effect_json,
    funding_json,
)
from points.campaigns.validation import API_NAMES, RESETTABLE, CampaignSpec, check_spec
from points.rules.model import CampaignRule, CampaignStatus

EDITABLE = frozenset({CampaignStatus.DRAFT, CampaignStatus.ACTIVE, CampaignStatus.PAUSED})

# action -> (the statuses it applies to, the status it sets, its audit action, its verb)
TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus, AuditAction, str]] = {
    "pause": (
        frozenset({CampaignStatus.ACTIVE}),
        CampaignStatus.PAUSED,
        AuditAction.CAMPAIGN_PAUSED,
        "paused (only an ACTIVE campaign is)",
    ),
    "resume": (
        frozenset({CampaignStatus.DRAFT, CampaignStatus.PAUSED}),
        CampaignStatus.ACTIVE,
        AuditAction.CAMPAIGN_RESUMED,
        "resumed (only a DRAFT or PAUSED campaign is)",
    ),
    "end": (
        frozenset({CampaignStatus.ACTIVE, CampaignStatus.PAUSED}),
        CampaignStatus.ENDED,
        AuditAction.CAMPAIGN_ENDED,
        "ended (only an ACTIVE or PAUSED campaign is)",
    ),
    "archive": (
        frozenset({CampaignStatus.DRAFT, CampaignStatus.ENDED}),
        CampaignStatus.ARCHIVED,
        AuditAction.CAMPAIGN_ARCHIVED,
        "archived (only a DRAFT or ENDED campaign is: end it first)",
    ),
}

_INSERT_VERSION = text(
    "INSERT INTO campaign_versions (campaign_id, version, effective_at, created_by, name,"
    " status, starts_at, ends_at, partner_ids, store_ids, channels, tiers, condition, effect,"
    " funding, priority, exclusive, max_points_per_purchase, per_member_limit, limit_period,"
    " budget_points)"
    " SELECT :c, :version,"
    # Strictly after the previous version, whatever the clock says.
    " GREATEST(clock_timestamp(), COALESCE(max(effective_at) + interval '1 microsecond',"
    " '-infinity')), :by, :name, :status, :starts_at, CAST(:ends_at AS timestamptz),"
    " CAST(:partner_ids AS uuid[]), CAST(:store_ids AS text[]), CAST(:channels AS text[]),"
    " CAST(:tiers AS text[]), :condition, CAST(:effect AS jsonb), CAST(:funding AS jsonb),"
    " :priority, :exclusive, CAST(:max_points AS bigint), CAST(:member_limit AS bigint),"
    " :limit_period, CAST(:budget AS bigint)"
    " FROM campaign_versions WHERE campaign_id = :c"
    " RETURNING effective_at"
).bindparams(bindparam("effect", type_=JSONB), bindparam("funding", type_=JSONB))

_BUMP_REVISION = text(
    "UPDATE coalition_settings SET campaigns_revision = campaigns_revision + 1 WHERE id = 1"
)


def _owner_of(caller: Caller) -> uuid.UUID | None:
    """The owner of the campaigns `caller` creates (None: the operator's); refuses a caller
    that is neither the operator nor a partner's client with `campaigns:write`."""
    if caller.is_operator:
        return None
    if caller.partner_id is None or not caller.has(Scope.CAMPAIGNS_WRITE):
        raise DomainError(ErrorCode.INVALID_SCOPE, "campaigns need the 'campaigns:write' scope")
    return caller.partner_id


def spec_of(rule: CampaignRule) -> CampaignSpec:
    """A stored version's definition, in the normalized form `check_spec` returns."""
    return CampaignSpec(
        name=rule.name,
        effect=rule.effect,
        starts_at=rule.starts_at,
        ends_at=rule.ends_at,
        partner_ids=tuple(sorted(rule.partner_ids)),
        store_ids=tuple(sorted(rule.store_ids)),
        channels=tuple(sorted(rule.channels)),
        tiers=tuple(sorted(rule.tiers)),
        condition=rule.condition,
        funding=rule.funding,
        priority=rule.priority,
        exclusive=rule.exclusive,
        max_points_per_purchase=rule.max_points_per_purchase,
        per_member_limit=rule.per_member_limit,
        limit_period=rule.limit_period,
        budget_points=rule.budget_points,
    )


def _rule(
    campaign_id: uuid.UUID,
    version: int,
    owner: uuid.UUID | None,
    status: CampaignStatus,
    spec: CampaignSpec,
) -> CampaignRule:
    assert spec.starts_at is not None  # resolved by check_spec
    return CampaignRule(
        campaign_id=campaign_id,
        version=version,
        name=spec.name,
        owner_partner_id=owner,
        status=status,
        starts_at=spec.starts_at,
        ends_at=spec.ends_at,
        partner_ids=frozenset(spec.partner_ids),
        store_ids=frozenset(spec.store_ids),
        channels=frozenset(spec.channels),
        tiers=frozenset(spec.tiers),
        condition=spec.condition,
        effect=spec.effect,
        funding=tuple(spec.funding),
        priority=spec.priority,
        exclusive=spec.exclusive,
        max_points_per_purchase=spec.max_points_per_purchase,
        per_member_limit=spec.per_member_limit,
        limit_period=spec.limit_period,
        budget_points=spec.budget_points,
    )


async def _insert_version(conn: AsyncConnection, rule: CampaignRule, actor: str) -> datetime:
    effective_at: datetime = (
        await conn.execute(
            _INSERT_VERSION,
            {
                "c": rule.campaign_id,
                "version": rule.version,
                "by": actor,
                "name": rule.name,
                "status": str(rule.status),
                "starts_at": rule.starts_at,
                "ends_at": rule.ends_at,
                "partner_ids": sorted(rule.partner_ids),
                "store_ids": sorted(rule.store_ids),
                "channels": sorted(rule.channels),
                "tiers": sorted(rule.tiers),
                "condition": rule.condition,
                "effect": effect_json(rule.effect),
                "funding": funding_json(rule.funding),
                "priority": rule.priority,
                "exclusive": rule.exclusive,
                "max_points": rule.max_points_per_purchase,
                "member_limit": rule.per_member_limit,
                "limit_period": str(rule.limit_period),
                "budget": rule.budget_points,
            },
        )
    ).scalar_one()
    await conn.execute(
        text(
            "UPDATE campaigns SET name = :name, status = :status, current_version = :version"
            " WHERE id = :c"
        ),
        {
            "c": rule.campaign_id,
            "name": rule.name,
            "status": str(rule.status),
            "version": rule.version,
        },
    )
    # Every earn's next preflight sees the catalog changed.
    await conn.execute(_BUMP_REVISION)
    return effective_at


async def _now(conn: AsyncConnection) -> datetime:
    now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
    return now


async def _locked(conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID) -> CampaignRecord:
    """The campaign, locked for this transaction's change; CAMPAIGN_NOT_FOUND when missing or
    not the caller's."""
    _owner_of(caller)
    owner = visible_owner(caller)
    found = await conn.scalar(
        text(
            "SELECT id FROM campaigns WHERE id = :id"
            " AND (CAST(:owner AS uuid) IS NULL OR owner_partner_id = :owner) FOR UPDATE"
        ),
        {"id": campaign_id, "owner": owner},
    )
    record = None if found is None else await get_campaign(conn, caller, campaign_id)
    if record is None:
        raise DomainError(ErrorCode.CAMPAIGN_NOT_FOUND, "no such campaign", ["id"])
    return record


async def _reloaded(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID
) -> CampaignRecord:
    record = await get_campaign(conn, caller, campaign_id)
    assert record is not None
    return record


async def create_campaign(
    conn: AsyncConnection,
    caller: Caller,
    spec: CampaignSpec,
    *,
    draft: bool = False,
    actor: str | None = None,
) -> CampaignRecord:
    """A new campaign (ACTIVE from `starts_at`, or a DRAFT that applies nowhere until it is
    resumed): its version 1, its budget slots, the catalog revision and the audit entry."""
    owner = _owner_of(caller)
    by = actor or caller.client_id
    checked = await check_spec(conn, spec, owner=owner, now=await _now(conn), creating=True)
    campaign_id = new_id()
    status = CampaignStatus.DRAFT if draft else CampaignStatus.ACTIVE
    await conn.execute(
        text(
            "INSERT INTO campaigns (id, owner_partner_id, name, status, current_version,"
            " created_by) VALUES (:id, :owner, :name, :status, 1, :by)"
        ),
        {"id": campaign_id, "owner": owner, "name": checked.name, "status": str(status), "by": by},
    )
    rule = _rule(campaign_id, 1, owner, status, checked)
    await _insert_version(conn, rule, by)
    await set_budget(conn, campaign_id, None, rule.budget_points)
    await audit.record(
        conn,
        by,
        AuditAction.CAMPAIGN_CREATED,
        "Campaign",
        campaign_id,
        {"version": 1, "ownerPartnerId": owner, "definition": definition_details(rule)},
    )
    return await _reloaded(conn, caller, campaign_id)


async def _last_budget(conn: AsyncConnection, campaign_id: uuid.UUID) -> int | None:
    """The last budget any version set (the slots hold what is left of it)."""
    last: int | None = await conn.scalar(
        text(
            "SELECT budget_points FROM campaign_versions WHERE campaign_id = :c"
            " AND budget_points IS NOT NULL ORDER BY version DESC LIMIT 1"
        ),
        {"c": campaign_id},
    )
    return last


async def update_campaign(
    conn: AsyncConnection,
    caller: Caller,
    campaign_id: uuid.UUID,
    changes: Mapping[str, Any],
    *,
    actor: str | None = None,
) -> CampaignRecord:
    """A new version with `changes` (CampaignSpec field -> value; None puts a field back to
    its default, as when created) applied to the current one; the status is kept. Only a
    DRAFT, ACTIVE or PAUSED campaign is edited."""
    current = await _locked(conn, caller, campaign_id)
    by = actor or caller.client_id
    if current.status not in EDITABLE:
        raise DomainError(
            ErrorCode.CAMPAIGN_NOT_EDITABLE,
            f"a campaign that is {current.status} cannot be changed",
            ["id"],
        )
    resolved: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in API_NAMES:
            raise ValueError(f"not a campaign field: {key}")
        if value is None:
            if key not in RESETTABLE:
                path = [API_NAMES[key]]
                code = ErrorCode.INVALID_EFFECT if key == "effect" else ErrorCode.INVALID_INPUT
                raise DomainError(code, f"{API_NAMES[key]} cannot be null", path)
            value = RESETTABLE[key]
        resolved[key] = value
    before = spec_of(current.rule)
    wanted = dataclasses.replace(before, **resolved)
    checked = await check_spec(
        conn, wanted, owner=current.owner_partner_id, now=await _now(conn), creating=False
    )
    if checked == before:
        return current  # nothing changes: no new version
    rule = _rule(
        campaign_id, current.version + 1, current.owner_partner_id, current.status, checked
    )
    previous_budget = await _last_budget(conn, campaign_id)
    await _insert_version(conn, rule, by)
    await set_budget(conn, campaign_id, previous_budget, rule.budget_points)
    old, new = definition_details(current.rule), definition_details(rule)
    await audit.record(
        conn,
        by,
        AuditAction.CAMPAIGN_UPDATED,
        "Campaign",
        campaign_id,
        {
            "version": rule.version,
            "changes": {k: {"from": old[k], "to": v} for k, v in new.items() if old[k] != v},
        },
    )
    return await _reloaded(conn, caller, campaign_id)


async def change_status(
    conn: AsyncConnection,
    caller: Caller,
    campaign_id: uuid.UUID,
    action: str,
    *,
    actor: str | None = None,
) -> CampaignRecord:
    """`action` (pause, resume, end, archive) as a new version with the same definition."""
    allowed, target, audit_action, verb = TRANSITIONS[action]
    current = await _locked(conn, caller, campaign_id)
    by = actor or caller.client_id
    if current.status == target:
        return current  # already there: a retried request changes nothing
    if current.status not in allowed:
        raise DomainError(
            ErrorCode.CAMPAIGN_NOT_EDITABLE,
            f"a campaign that is {current.status} cannot be {verb}",
            ["id"],
        )
    rule = dataclasses.replace(current.rule, version=current.version + 1, status=target)
    await _insert_version(conn, rule, by)
    await audit.record(
        conn,
        by,
        audit_action,
        "Campaign",
        campaign_id,
        {"version": rule.version, "from": current.status, "to": target},
    )
    return await _reloaded(conn, caller, campaign_id)


async def pause_campaign(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID, *, actor: str | None = None
) -> CampaignRecord:
    return await change_status(conn, caller, campaign_id, "pause", actor=actor)


async def resume_campaign(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID, *, actor: str | None = None
) -> CampaignRecord:
    return await change_status(conn, caller, campaign_id, "resume", actor=actor)


async def end_campaign(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID, *, actor: str | None = None
) -> CampaignRecord:
    return await change_status(conn, caller, campaign_id, "end", actor=actor)


async def archive_campaign(
    conn: AsyncConnection, caller: Caller, campaign_id: uuid.UUID, *, actor: str | None = None
) -> CampaignRecord:
    return await change_status(conn, caller, campaign_id, "archive", actor=actor)
