"""What the earn engine reads and writes: the facts of a purchase and its member, the rules in
force (campaign versions, the tier policy), and the priced result with who pays each line.

Pure data, no database: the engine (`points.rules.engine`) is a function of these values, so
`earnPoints`, the batch, `quoteEarn` and the console's preview give the same answer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

OPERATOR_FUNDER: uuid.UUID | None = None
"""A funding share whose funder is None is paid by the coalition operator."""


@dataclass(frozen=True)
class PurchaseLine:
    sku: str
    category: str | None
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class PurchaseFacts:
    """A purchase as rules see it. `local_hour`/`weekday` are in the coalition's time zone
    (weekday 1 = Monday)."""

    partner_id: uuid.UUID
    partner_slug: str
    amount: Decimal
    lines: tuple[PurchaseLine, ...]
    occurred_at: datetime
    local_hour: int
    weekday: int
    store: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class MemberFacts:
    """The member before this purchase: tier code ("" when none) and purchases at all partners."""

    member_id: uuid.UUID
    tier: str = ""
    purchases: int = 0


@dataclass(frozen=True)
class FundingShare:
    funder: uuid.UUID | None  # a partner, or None for the operator
    share: Decimal  # 0 < share <= 1; a rule's shares sum to exactly 1


class CampaignStatus(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"
    ARCHIVED = "ARCHIVED"


class LimitPeriod(StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    CAMPAIGN = "CAMPAIGN"


@dataclass(frozen=True)
class Effect:
    """What a matching campaign gives. Any combination; all three are added together.

    - `multiplier`: extra points = base points of the qualifying amount × (multiplier − 1)
      (a multiplier of 2 doubles the base rate);
    - `points_per_unit`: extra points per currency unit of the qualifying amount;
    - `bonus_points`: a fixed number of points per matching purchase.
    The qualifying amount is the purchase amount, or, with `categories`/`skus`, the sum of the
    matching lines (no matching line: the campaign does not apply).
    """

    multiplier: Decimal | None = None
    bonus_points: int | None = None
    points_per_unit: Decimal | None = None
    categories: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignRule:
    """One campaign version, as the engine needs it (immutable once stored)."""

    campaign_id: uuid.UUID
    version: int
    name: str
    owner_partner_id: uuid.UUID | None  # None: a coalition-wide (operator) campaign
    status: CampaignStatus
    starts_at: datetime
    ends_at: datetime | None
    partner_ids: frozenset[uuid.UUID]  # empty: every partner
    store_ids: frozenset[str]  # empty: every store
    channels: frozenset[str]  # empty: every channel
    tiers: frozenset[str]  # empty: every member
    condition: str  # CEL, "true" by default
    effect: Effect
    funding: tuple[FundingShare, ...]  # empty: the partner where the purchase happens pays
    priority: int = 0
    exclusive: bool = False
    max_points_per_purchase: int | None = None
    per_member_limit: int | None = None  # points per member per `limit_period`
    limit_period: LimitPeriod = LimitPeriod.CAMPAIGN
    budget_points: int | None = None


@dataclass(frozen=True)
class TierRule:
    code: str
    name: str
    threshold: int  # qualifying points within the policy's window
    multiplier: Decimal  # 1 = no extra points


@dataclass(frozen=True)
class TierPolicyRule:
    window_days: int
    tiers: tuple[TierRule, ...]  # ascending thresholds
    funding: tuple[FundingShare, ...] = ()  # empty: the earning partner pays the tier bonus
    grace_days: int = 0


@dataclass(frozen=True)
class Headroom:
    """What limits leave for one campaign and member before this purchase (None: no limit)."""

    member_points_left: int | None = None
    budget_points_left: int | None = None


@dataclass(frozen=True)
class Funded:
    funder: uuid.UUID | None  # None: the operator
    points: int


@dataclass(frozen=True)
class PricedLine:
    """One line of the explanation. `rule` is BASE_RATE, TIER or CAMPAIGN; `campaign_id` and
    `campaign_version` name the campaign version that gave it."""

    rule: str
    description: str
    points: int
    funded_by: tuple[Funded, ...]
    campaign_id: uuid.UUID | None = None
    campaign_version: int | None = None


@dataclass(frozen=True)
class PricedEarn:
    points: int
    lines: tuple[PricedLine, ...] = field(default_factory=tuple)

    def by_funder(self) -> dict[uuid.UUID | None, int]:
        """Points per funder over all lines (what the booking splits into lots)."""
        totals: dict[uuid.UUID | None, int] = {}
        for line in self.lines:
            for funded in line.funded_by:
                totals[funded.funder] = totals.get(funded.funder, 0) + funded.points
        return {funder: points for funder, points in totals.items() if points}
