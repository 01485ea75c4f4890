"""From an earn's preflight row to the engine's answer: the facts of the purchase and member,
the campaigns and tier policy in force at its occurredAt, the limits left, and the campaign
draws the booking must make. `earnPoints`, `quoteEarn` and the batch price through here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.earn_once import CampaignDraw
from points.campaigns.catalog import campaigns_in_force
from points.campaigns.limits import period_start
from points.purchase import Purchase
from points.rules.engine import CompiledCampaign, price_earn, purchase_facts
from points.rules.model import (
    CampaignRule,
    Headroom,
    MemberFacts,
    PricedEarn,
    PurchaseFacts,
    TierPolicyRule,
)
from points.tiers.policy import policy_in_force

BUDGET_MEMORY_SECONDS = 5.0
"""How long a budget found short is remembered, so earns do not each try and fail first."""


@dataclass(frozen=True)
class EarnSetting:
    """What the earn's preflight read about its partner and the coalition."""

    partner_id: uuid.UUID
    partner_slug: str
    earn_rate: Decimal
    time_zone: str
    campaigns_revision: int
    tiers_revision: int


@dataclass(frozen=True)
class MemberState:
    """The member before this purchase, as the preflight read it."""

    member_id: uuid.UUID
    tier: str
    purchases: int
    usage: Mapping[tuple[uuid.UUID, date], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Priced:
    earn: PricedEarn
    draws: tuple[CampaignDraw, ...]


def local_day(occurred_at: datetime, time_zone: str) -> date:
    return occurred_at.astimezone(ZoneInfo(time_zone)).date()


def facts_of(setting: EarnSetting, purchase: Purchase, occurred_at: datetime) -> PurchaseFacts:
    return purchase_facts(
        partner_id=setting.partner_id,
        partner_slug=setting.partner_slug,
        amount=purchase.amount,
        occurred_at=occurred_at,
        time_zone=setting.time_zone,
        lines=purchase.lines,
        store=purchase.store_id,
        channel=purchase.channel,
    )


# Budgets found short recently: campaign id -> (points left then, when read).
_short_budgets: dict[uuid.UUID, tuple[int, float]] = {}


def remember_budget(campaign_id: uuid.UUID, left: int) -> None:
    _short_budgets[campaign_id] = (left, time.monotonic())


def forget_budgets() -> None:
    """A reversal gave points back to some budget: price by the budgets' own rows again."""
    _short_budgets.clear()


def _budget_left(campaign_id: uuid.UUID) -> int | None:
    known = _short_budgets.get(campaign_id)
    if known is None:
        return None
    left, at = known
    if time.monotonic() - at > BUDGET_MEMORY_SECONDS:
        del _short_budgets[campaign_id]
        return None
    return left


def _headroom(rule: CampaignRule, member: MemberState, day: date) -> tuple[Headroom | None, date]:
    start = period_start(rule.limit_period, day)
    member_left = None
    if rule.per_member_limit is not None:
        member_left = max(0, rule.per_member_limit - member.usage.get((rule.campaign_id, start), 0))
    budget_left = _budget_left(rule.campaign_id) if rule.budget_points is not None else None
    if member_left is None and budget_left is None:
        return None, start
    return Headroom(member_points_left=member_left, budget_points_left=budget_left), start


async def price(
    conn: AsyncConnection,
    setting: EarnSetting,
    member: MemberState,
    purchase: Purchase,
    occurred_at: datetime,
) -> Priced:
    """The engine's answer for this purchase, and the campaign draws its booking makes."""
    campaigns: Sequence[CompiledCampaign] = await campaigns_in_force(
        conn, setting.campaigns_revision, occurred_at
    )
    policy = await policy_in_force(conn, setting.tiers_revision, occurred_at)
    return price_in_force(setting, member, purchase, occurred_at, campaigns, policy)


def price_in_force(
    setting: EarnSetting,
    member: MemberState,
    purchase: Purchase,
    occurred_at: datetime,
    campaigns: Sequence[CompiledCampaign],
    policy: TierPolicyRule | None,
) -> Priced:
    """`price` with the campaigns and tier policy in force at `occurred_at` already loaded:
    the same answer and draws, no database (the batch loads them once for all its rows).
    Headroom is computed only for campaigns with a member limit or a budget (`_headroom` gives
    the others none)."""
    day = local_day(occurred_at, setting.time_zone)
    headroom: dict[uuid.UUID, Headroom] = {}
    rules: dict[uuid.UUID, CampaignRule] = {}
    for campaign in campaigns:
        rule = campaign.rule
        rules[rule.campaign_id] = rule
        if rule.per_member_limit is None and rule.budget_points is None:
            continue
        room, _ = _headroom(rule, member, day)
        if room is not None:
            headroom[rule.campaign_id] = room
    earn = price_earn(
        facts_of(setting, purchase, occurred_at),
        MemberFacts(member_id=member.member_id, tier=member.tier, purchases=member.purchases),
        earn_rate=setting.earn_rate,
        campaigns=campaigns,
        tier_policy=policy,
        headroom=headroom,
    )
    draws = []
    for line in earn.lines:
        if line.campaign_id is None or line.points <= 0:
            continue
        rule = rules[line.campaign_id]
        draws.append(
            CampaignDraw(
                campaign_id=rule.campaign_id,
                version=rule.version,
                points=line.points,
                budgeted=rule.budget_points is not None,
                member_limit=rule.per_member_limit,
                period_start=period_start(rule.limit_period, day),
            )
        )
    return Priced(earn=earn, draws=tuple(draws))
