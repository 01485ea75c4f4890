"""The live rules of the campaign scenarios: 20 campaigns of which 3 match every bench earn
(a multiplier, a co-funded bonus with a budget, points per unit with a monthly member limit),
17 that never do (other channels, tiers, categories, or a condition that is false), and a
tier policy with a third of the members in its top tier."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import Caller, Scope
from points.campaigns.service import create_campaign
from points.campaigns.validation import CampaignSpec
from points.rules.model import Effect, FundingShare, LimitPeriod, TierRule
from points.tiers.policy import set_tier_policy

OPERATOR = Caller(client_id="bench", partner_id=None, scopes=frozenset({str(Scope.OPERATOR)}))


def _specs(partners: list[uuid.UUID]) -> list[CampaignSpec]:
    half = Decimal("0.5")
    matching = [
        CampaignSpec(name="Double points", effect=Effect(multiplier=Decimal(2)), priority=10),
        CampaignSpec(
            name="Coalition week bonus",
            effect=Effect(bonus_points=10),
            funding=(FundingShare(partners[0], half), FundingShare(None, half)),
            budget_points=10**12,
            priority=5,
        ),
        CampaignSpec(
            name="Points per rouble over 100",
            effect=Effect(points_per_unit=Decimal("0.05")),
            condition="purchase.amount >= 100.0",
            per_member_limit=10**9,
            limit_period=LimitPeriod.MONTH,
        ),
    ]
    never = [
        CampaignSpec(name=f"Online only {i}", effect=Effect(bonus_points=5), channels=("online",))
        for i in range(5)
    ]
    never += [
        CampaignSpec(
            name=f"Huge baskets {i}",
            effect=Effect(bonus_points=50),
            condition=f"purchase.amount > {1_000_000 + i}.0",
        )
        for i in range(5)
    ]
    never += [
        CampaignSpec(
            name=f"Platinum {i}", effect=Effect(multiplier=Decimal(3)), tiers=("platinum",)
        )
        for i in range(4)
    ]
    never += [
        CampaignSpec(
            name=f"Category {i}", effect=Effect(multiplier=Decimal(2), categories=(f"none-{i}",))
        )
        for i in range(3)
    ]
    return matching + never


async def install(engine: AsyncEngine, partners: list[uuid.UUID]) -> None:
    async with engine.begin() as conn:
        for spec in _specs(partners):
            await create_campaign(conn, OPERATOR, spec)
        await set_tier_policy(
            conn,
            actor="bench",
            window_days=365,
            grace_days=30,
            tiers=(
                TierRule(code="silver", name="Silver", threshold=1000, multiplier=Decimal("1.2")),
                TierRule(code="gold", name="Gold", threshold=5000, multiplier=Decimal("1.5")),
                TierRule(code="platinum", name="Platinum", threshold=10**9, multiplier=Decimal(2)),
            ),
        )
        await conn.execute(
            text(
                "INSERT INTO member_tiers (member_id, tier_code, since, qualifying_points,"
                " evaluated_at, policy_version) SELECT id, 'gold', now(), 5000, now(),"
                " (SELECT max(version) FROM tier_policies) FROM members"
                " WHERE abs(hashtext(id::text)) % 3 = 0"
            )
        )
