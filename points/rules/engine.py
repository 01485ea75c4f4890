"""The earn engine: a purchase, its member and the rules in force → priced points, line by line,
with who pays each line. A pure function, so `earnPoints`, the batch, `quoteEarn` and the
console's preview give the same answer.

Lines, in order: BASE_RATE (floor(amount × earn rate), paid by the partner where the purchase
happens), TIER (floor(base × (multiplier − 1)), paid per the tier policy's shares), then each
campaign that gives points, in stacking order. Arithmetic is Decimal/int throughout; only a
CEL condition sees the amount as a double.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from points.rules.campaigns import (
    CompiledCampaign,
    applicable,
    compile_campaign,
    floor,
    price_campaign,
)
from points.rules.cel import Condition, condition_set, facts
from points.rules.funding import split_points
from points.rules.model import (
    Funded,
    Headroom,
    MemberFacts,
    PricedEarn,
    PricedLine,
    PurchaseFacts,
    PurchaseLine,
    TierPolicyRule,
)

__all__ = [
    "CompiledCampaign",
    "base_line",
    "compile_campaign",
    "price_earn",
    "purchase_facts",
    "tier_line",
]


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def purchase_facts(
    *,
    partner_id: uuid.UUID,
    partner_slug: str,
    amount: Decimal,
    occurred_at: datetime,
    time_zone: str,
    lines: Sequence[PurchaseLine] = (),
    store: str | None = None,
    channel: str | None = None,
) -> PurchaseFacts:
    """The purchase as rules see it, with the local hour and weekday (1 = Monday) in the
    coalition's IANA `time_zone`. A naive `occurred_at` is taken as UTC."""
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    local = occurred_at.astimezone(_zone(time_zone))
    return PurchaseFacts(
        partner_id=partner_id,
        partner_slug=partner_slug,
        amount=amount,
        lines=tuple(lines),
        occurred_at=occurred_at,
        local_hour=local.hour,
        weekday=local.isoweekday(),
        store=store,
        channel=channel,
    )


def base_line(purchase: PurchaseFacts, earn_rate: Decimal) -> PricedLine:
    """Always a line, even of 0 points: it is what tells a customer why a small purchase
    earned nothing (earnPoints has always answered so)."""
    points = floor(purchase.amount * earn_rate)
    return PricedLine(
        rule="BASE_RATE",
        description=f"{purchase.amount} × {earn_rate.normalize()} points per unit, rounded down",
        points=points,
        funded_by=(Funded(purchase.partner_id, points),),
    )


def tier_line(
    purchase: PurchaseFacts, member: MemberFacts, base: int, policy: TierPolicyRule | None
) -> PricedLine | None:
    if policy is None or not member.tier:
        return None
    tier = next((t for t in policy.tiers if t.code == member.tier), None)
    if tier is None or tier.multiplier <= 1:
        return None
    points = floor(base * (tier.multiplier - 1))
    if points <= 0:
        return None
    return PricedLine(
        rule="TIER",
        description=f"{tier.name} tier: ×{tier.multiplier.normalize()} base points, rounded down",
        points=points,
        funded_by=split_points(points, policy.funding, default=purchase.partner_id),
    )


def price_earn(
    purchase: PurchaseFacts,
    member: MemberFacts,
    *,
    earn_rate: Decimal,
    campaigns: Sequence[CompiledCampaign],
    tier_policy: TierPolicyRule | None,
    headroom: Mapping[uuid.UUID, Headroom],
) -> PricedEarn:
    """Price one purchase. `headroom` is what each campaign's member limit and budget leave
    (keyed by campaign id; missing: only the campaign's own totals bound it).

    Campaigns apply in stacking order (priority, then earlier start, then id). One whose
    condition fails to evaluate does not match. An exclusive campaign that gives points stops
    every campaign after it; one whose limits are used up steps aside.
    """
    lines: list[PricedLine] = []
    base = base_line(purchase, earn_rate)
    base_points = base.points
    lines.append(base)
    tier = tier_line(purchase, member, base_points, tier_policy)
    if tier:
        lines.append(tier)
    in_force = applicable(campaigns, purchase, member)
    verdicts: dict[Condition, bool] = {}
    if any(not c.condition.always for c in in_force):
        # Every campaign given, not only those in force, so the set (and its compiled list)
        # is the same for every purchase priced against these campaigns.
        conditions = condition_set(tuple(c.condition for c in campaigns if not c.condition.always))
        verdicts = conditions.holds(facts(purchase, member))
    for campaign in in_force:
        if not (campaign.condition.always or verdicts[campaign.condition]):
            continue
        line = price_campaign(
            campaign,
            purchase,
            earn_rate=earn_rate,
            headroom=headroom.get(campaign.rule.campaign_id),
        )
        if line is None:
            continue
        lines.append(line)
        if campaign.rule.exclusive:
            break
    return PricedEarn(points=sum(line.points for line in lines), lines=tuple(lines))
