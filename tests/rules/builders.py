"""Small builders for purchases, members and campaigns: tests name only what they vary."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from points.rules.model import (
    CampaignRule,
    CampaignStatus,
    Effect,
    FundingShare,
    MemberFacts,
    PurchaseFacts,
    PurchaseLine,
)

GROCER = uuid.UUID("00000000-0000-0000-0000-00000000000a")
FUEL = uuid.UUID("00000000-0000-0000-0000-00000000000b")
CINEMA = uuid.UUID("00000000-0000-0000-0000-00000000000c")
MEMBER = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
START = datetime(2026, 3, 1, tzinfo=UTC)


def line(sku: str, category: str | None, amount: str, quantity: str = "1") -> PurchaseLine:
    return PurchaseLine(
        sku=sku, category=category, quantity=Decimal(quantity), amount=Decimal(amount)
    )


def purchase(
    amount: str = "100",
    *lines: PurchaseLine,
    partner_id: uuid.UUID = GROCER,
    slug: str = "grocer",
    occurred_at: datetime = NOON,
    local_hour: int = 12,
    weekday: int = 3,
    store: str | None = None,
    channel: str | None = None,
) -> PurchaseFacts:
    return PurchaseFacts(
        partner_id=partner_id,
        partner_slug=slug,
        amount=Decimal(amount),
        lines=tuple(lines),
        occurred_at=occurred_at,
        local_hour=local_hour,
        weekday=weekday,
        store=store,
        channel=channel,
    )


def member(tier: str = "", purchases: int = 0) -> MemberFacts:
    return MemberFacts(member_id=MEMBER, tier=tier, purchases=purchases)


def shares(*pairs: tuple[uuid.UUID | None, str]) -> tuple[FundingShare, ...]:
    return tuple(FundingShare(funder=f, share=Decimal(s)) for f, s in pairs)


def campaign(name: str = "Campaign", *, n: int = 1, **changes: Any) -> CampaignRule:
    """An active, open-ended, untargeted campaign giving nothing unless `effect` says so."""
    values: dict[str, Any] = {
        "campaign_id": uuid.UUID(int=n),
        "version": 1,
        "name": name,
        "owner_partner_id": None,
        "status": CampaignStatus.ACTIVE,
        "starts_at": START,
        "ends_at": None,
        "partner_ids": frozenset(),
        "store_ids": frozenset(),
        "channels": frozenset(),
        "tiers": frozenset(),
        "condition": "true",
        "effect": Effect(),
        "funding": (),
    }
    values.update(changes)
    return CampaignRule(**values)
