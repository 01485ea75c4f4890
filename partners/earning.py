"""Earn computation: one function from a purchase to points, with its explanation.

Every future earn rule (tiers, happy hours, category multipliers, caps) plugs in here and
adds lines to the explanation, so a partner app can show the customer why points were given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from partners.service import RateCardRecord


@dataclass(frozen=True)
class Purchase:
    amount: Decimal


@dataclass(frozen=True)
class EarnLine:
    rule: str
    description: str
    points: int


@dataclass(frozen=True)
class EarnResult:
    points: int
    lines: list[EarnLine] = field(default_factory=list)


def compute_earn(purchase: Purchase, card: RateCardRecord) -> EarnResult:
    """points = floor(amount × earnRate): a customer is never given a fraction of a point."""
    points = int((purchase.amount * card.earn_rate).to_integral_value(rounding=ROUND_FLOOR))
    line = EarnLine(
        rule="BASE_RATE",
        description=f"{purchase.amount} × {card.earn_rate.normalize()} points per unit, rounded down",
        points=points,
    )
    return EarnResult(points=points, lines=[line])
