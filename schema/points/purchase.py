"""The receipt fields an earn, a quote and a batch row share: lines, store and channel."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from points.rules.model import PurchaseLine


@strawberry.input(description="One line of the receipt (what category and sku campaigns price).")
class PurchaseLineInput:
    sku: str = strawberry.field(description="The partner's article number (1 to 100 characters).")
    category: str | None = strawberry.field(
        default=None,
        description="The line's category, as campaigns name it (`coffee`, `fuel`); at most 100"
        " characters.",
    )
    quantity: Decimal | None = strawberry.field(
        default=None,
        description='How many (positive, at most 3 decimals: "2", "0.750" kg); 1 when left out.',
    )
    amount: Decimal = strawberry.field(
        description="What the line cost in currency units, after its discounts (zero or"
        " positive). The lines must add up to the purchase amount exactly (INVALID_LINES)."
    )


def lines_of(lines: list[PurchaseLineInput] | None) -> tuple[PurchaseLine, ...]:
    return tuple(
        PurchaseLine(
            sku=x.sku,
            category=x.category,
            quantity=Decimal(1) if x.quantity is None else x.quantity,
            amount=x.amount,
        )
        for x in lines or ()
    )
