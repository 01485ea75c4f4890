"""Campaigns as stored: a campaign row, its immutable versions, and their conversion to the
engine's `CampaignRule` (points/rules/model.py).

A version's definition is plain columns and two JSON documents:
- `effect`: `{"multiplier": "2" | null, "bonusPoints": 100 | null, "pointsPerUnit": "0.5" |
  null, "categories": [...], "skus": [...]}` (decimals as strings, so they stay exact);
- `funding`: `[{"partnerId": "<uuid>" | null (the operator), "share": "0.5"}, ...]` in the
  order given (the largest-remainder split gives ties to the share given first).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from points.rules.model import CampaignRule, CampaignStatus, Effect, FundingShare, LimitPeriod

# The columns of a version (`v`) and of its campaign (`c`) that make a `CampaignRule`.
VERSION_COLUMNS = (
    "v.campaign_id, v.version, v.effective_at, v.created_by AS changed_by, v.name, v.status,"
    " v.starts_at, v.ends_at, v.partner_ids, v.store_ids, v.channels, v.tiers, v.condition,"
    " v.effect, v.funding, v.priority, v.exclusive, v.max_points_per_purchase,"
    " v.per_member_limit, v.limit_period, v.budget_points, c.owner_partner_id"
)


@dataclass(frozen=True)
class CampaignVersionRecord:
    """One version: the definition in force from `effective_at` until the next version's."""

    rule: CampaignRule
    effective_at: datetime
    changed_by: str  # the API client id (or `staff:<email>`, `cli`) that made the change


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as it stands now: its current version and what is left of its budget."""

    id: uuid.UUID
    owner_partner_id: uuid.UUID | None  # None: the operator's (coalition-wide)
    created_at: datetime
    created_by: str
    current: CampaignVersionRecord
    budget_left: int | None  # None: no budget

    @property
    def rule(self) -> CampaignRule:
        return self.current.rule

    @property
    def status(self) -> CampaignStatus:
        return self.current.rule.status

    @property
    def version(self) -> int:
        return self.current.rule.version


def effect_json(effect: Effect) -> dict[str, Any]:
    return {
        "multiplier": None if effect.multiplier is None else str(effect.multiplier),
        "bonusPoints": effect.bonus_points,
        "pointsPerUnit": None if effect.points_per_unit is None else str(effect.points_per_unit),
        "categories": list(effect.categories),
        "skus": list(effect.skus),
    }


def effect_of(data: dict[str, Any]) -> Effect:
    multiplier = data.get("multiplier")
    per_unit = data.get("pointsPerUnit")
    return Effect(
        multiplier=None if multiplier is None else Decimal(multiplier),
        bonus_points=data.get("bonusPoints"),
        points_per_unit=None if per_unit is None else Decimal(per_unit),
        categories=tuple(data.get("categories") or ()),
        skus=tuple(data.get("skus") or ()),
    )


def funding_json(funding: tuple[FundingShare, ...]) -> list[dict[str, Any]]:
    return [
        {"partnerId": None if f.funder is None else str(f.funder), "share": str(f.share)}
        for f in funding
    ]


def funding_of(data: list[dict[str, Any]]) -> tuple[FundingShare, ...]:
    return tuple(
        FundingShare(
            funder=None if item.get("partnerId") is None else uuid.UUID(item["partnerId"]),
            share=Decimal(item["share"]),
        )
        for item in data
    )


def version_of(row: Any) -> CampaignVersionRecord:
    """A version from a row holding VERSION_COLUMNS."""
    rule = CampaignRule(
        campaign_id=row.campaign_id,
        version=row.version,
        name=row.name,
        owner_partner_id=row.owner_partner_id,
        status=CampaignStatus(row.status),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        partner_ids=frozenset(row.partner_ids),
        store_ids=frozenset(row.store_ids),
        channels=frozenset(row.channels),
        tiers=frozenset(row.tiers),
        condition=row.condition,
        effect=effect_of(row.effect),
        funding=funding_of(row.funding),
        priority=row.priority,
        exclusive=row.exclusive,
        max_points_per_purchase=row.max_points_per_purchase,
        per_member_limit=row.per_member_limit,
        limit_period=LimitPeriod(row.limit_period),
        budget_points=row.budget_points,
    )
    return CampaignVersionRecord(
        rule=rule, effective_at=row.effective_at, changed_by=row.changed_by
    )


def definition_details(rule: CampaignRule) -> dict[str, Any]:
    """A version's definition as plain data with the API's field names (audit details)."""
    return {
        "name": rule.name,
        "status": rule.status,
        "startsAt": rule.starts_at,
        "endsAt": rule.ends_at,
        "partnerIds": sorted(str(p) for p in rule.partner_ids),
        "storeIds": sorted(rule.store_ids),
        "channels": sorted(rule.channels),
        "tiers": sorted(rule.tiers),
        "condition": rule.condition,
        "effect": effect_json(rule.effect),
        "funding": funding_json(rule.funding),
        "priority": rule.priority,
        "exclusive": rule.exclusive,
        "maxPointsPerPurchase": rule.max_points_per_purchase,
        "perMemberLimit": rule.per_member_limit,
        "limitPeriod": rule.limit_period,
        "budgetPoints": rule.budget_points,
    }
