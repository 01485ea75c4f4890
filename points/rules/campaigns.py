"""One campaign version against one purchase: is it in force, what does it give, who pays.

`CompiledCampaign` pairs a stored version with its compiled condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from operator import attrgetter

from points.rules.cel import Condition, compile_condition
from points.rules.funding import split_points
from points.rules.model import (
    CampaignRule,
    CampaignStatus,
    Effect,
    Headroom,
    LimitPeriod,
    MemberFacts,
    PricedLine,
    PurchaseFacts,
)


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def stacking_order(rule: CampaignRule) -> tuple[int, datetime, bytes]:
    """Higher priority first; on a tie the earlier start, then the id (deterministic)."""
    return (-rule.priority, rule.starts_at, rule.campaign_id.bytes)


@dataclass(frozen=True, slots=True)
class CompiledCampaign:
    rule: CampaignRule
    condition: Condition
    order: tuple[int, datetime, bytes] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: every earn sorts its campaigns by it.
        object.__setattr__(self, "order", stacking_order(self.rule))


def compile_campaign(rule: CampaignRule) -> CompiledCampaign:
    """The campaign with its condition compiled. Conditions are cached by their text, so each
    version's is compiled once however often its campaign is loaded.

    Raises `ConditionError` for a condition that does not compile: creation refuses those, so
    here it means a stored version was written around the check.
    """
    return CompiledCampaign(rule, compile_condition(rule.condition))


def in_force(rule: CampaignRule, purchase: PurchaseFacts, member: MemberFacts) -> bool:
    """Status, schedule (start inclusive, end exclusive) and targeting; not the condition."""
    return (
        rule.status == CampaignStatus.ACTIVE
        and rule.starts_at <= purchase.occurred_at
        and (rule.ends_at is None or purchase.occurred_at < rule.ends_at)
        # A partner's own campaign applies only at that partner, whatever else it says.
        and (rule.owner_partner_id is None or rule.owner_partner_id == purchase.partner_id)
        and (not rule.partner_ids or purchase.partner_id in rule.partner_ids)
        and (not rule.store_ids or purchase.store in rule.store_ids)
        and (not rule.channels or purchase.channel in rule.channels)
        and (not rule.tiers or member.tier in rule.tiers)
    )


def qualifying_amount(effect: Effect, purchase: PurchaseFacts) -> Decimal | None:
    """The amount the effect counts: the purchase, or its lines in the effect's categories or
    skus (either matches). None when a filter matches no line: the campaign does not apply."""
    if not effect.categories and not effect.skus:
        return purchase.amount
    matching = [
        ln.amount
        for ln in purchase.lines
        if (ln.category is not None and ln.category in effect.categories) or ln.sku in effect.skus
    ]
    if not matching:
        return None
    return min(sum(matching, Decimal(0)), purchase.amount)


def _effect_points(effect: Effect, qualifying: Decimal, earn_rate: Decimal) -> tuple[int, str]:
    points = 0
    words: list[str] = []
    if effect.multiplier is not None and effect.multiplier > 1:
        points += floor(floor(qualifying * earn_rate) * (effect.multiplier - 1))
        words.append(f"×{effect.multiplier.normalize()} points")
    if effect.points_per_unit is not None and effect.points_per_unit > 0:
        points += floor(qualifying * effect.points_per_unit)
        words.append(f"{effect.points_per_unit.normalize()} extra points per unit")
    if effect.bonus_points is not None and effect.bonus_points > 0:
        points += effect.bonus_points
        plural = "s" if effect.bonus_points != 1 else ""
        words.append(f"{effect.bonus_points} bonus point{plural}")
    text = " and ".join(words)
    if effect.categories or effect.skus:
        text += f" on {qualifying} of {', '.join((*effect.categories, *effect.skus))}"
    return points, text


_PERIOD = {
    LimitPeriod.DAY: "today",
    LimitPeriod.WEEK: "this week",
    LimitPeriod.MONTH: "this month",
    LimitPeriod.CAMPAIGN: "in this campaign",
}


def _cap(rule: CampaignRule, headroom: Headroom | None, points: int) -> tuple[int, str]:
    """The points after the per-purchase cap, the member's limit and the budget; the reason
    names the one that bound. The rule's own totals bound too: what is left is never more."""
    limits: list[tuple[int, str]] = []
    if rule.max_points_per_purchase is not None:
        limits.append(
            (rule.max_points_per_purchase, "capped at the campaign's points per purchase")
        )
    member_left = headroom.member_points_left if headroom else None
    for left in (member_left, rule.per_member_limit):
        if left is not None:
            limits.append((left, f"capped by your limit {_PERIOD[rule.limit_period]}"))
    budget_left = headroom.budget_points_left if headroom else None
    for left in (budget_left, rule.budget_points):
        if left is not None:
            limits.append((left, "capped by the campaign's budget"))
    reason = ""
    for limit, why in limits:
        if limit < points:
            points, reason = max(limit, 0), why
    return points, reason


def price_campaign(
    campaign: CompiledCampaign,
    purchase: PurchaseFacts,
    *,
    earn_rate: Decimal,
    headroom: Headroom | None,
) -> PricedLine | None:
    """The campaign's line for a purchase its condition matched, or None when it gives nothing
    (no qualifying line, a zero effect, or limits used up)."""
    rule = campaign.rule
    qualifying = qualifying_amount(rule.effect, purchase)
    if qualifying is None:
        return None
    raw, what = _effect_points(rule.effect, qualifying, earn_rate)
    if raw <= 0:
        return None
    points, capped = _cap(rule, headroom, raw)
    if points <= 0:
        return None
    description = f"Campaign '{rule.name}': {what}"
    if capped:
        description += f", {capped} ({points} of {raw})"
    return PricedLine(
        rule="CAMPAIGN",
        description=description,
        points=points,
        funded_by=split_points(points, rule.funding, default=purchase.partner_id),
        campaign_id=rule.campaign_id,
        campaign_version=rule.version,
    )


def applicable(
    campaigns: Sequence[CompiledCampaign], purchase: PurchaseFacts, member: MemberFacts
) -> list[CompiledCampaign]:
    """The campaigns in force for this purchase, in stacking order (conditions not yet run)."""
    return sorted((c for c in campaigns if in_force(c.rule, purchase, member)), key=_by_order)


_by_order = attrgetter("order")
