"""A purchase as a partner sends it: the amount, optional receipt lines, store and channel.

One check serves `earnPoints`, `quoteEarn`, the batch and the ingest file, so a purchase is
refused for the same reason wherever it arrives. Lines must add up to the amount exactly: a
category campaign prices the lines, so a receipt whose lines disagree with its total cannot be
priced honestly, and guessing which side is right would pay the wrong points silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.errors import DomainError, ErrorCode
from ledger.text import has_lone_surrogate
from points.rules.model import PurchaseLine

MAX_LINES = 500
MAX_QUANTITY = Decimal("1000000")
MAX_TEXT = 100
QUANTITY_DECIMALS = 3


@dataclass(frozen=True)
class Purchase:
    amount: Decimal
    lines: tuple[PurchaseLine, ...] = ()
    store_id: str | None = None
    channel: str | None = None

    def request(self) -> dict[str, object]:
        """What of the purchase an idempotency key's request hash covers (beyond the amount)."""
        extra: dict[str, object] = {}
        if self.lines:
            extra["lines"] = [
                [line.sku, line.category, str(line.quantity), str(line.amount)]
                for line in self.lines
            ]
        if self.store_id is not None:
            extra["storeId"] = self.store_id
        if self.channel is not None:
            extra["channel"] = self.channel
        return extra


def _bad(message: str, *field: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_LINES, message, list(field))


def _check_label(value: str | None, field: str, *, required: bool) -> None:
    if value is None:
        if required:
            raise _bad(f"{field} is required", field)
        return
    if not value.strip() or len(value) > MAX_TEXT:
        raise _bad(f"{field} must be 1 to {MAX_TEXT} characters", field)
    if "\x00" in value or has_lone_surrogate(value):
        raise _bad(f"{field} must be plain text", field)


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_purchase(purchase: Purchase, currency_exponent: int) -> None:
    """Refuse lines, store or channel that cannot be priced; the amount is checked by the earn."""
    for value, field in ((purchase.store_id, "storeId"), (purchase.channel, "channel")):
        if value is not None and (not value.strip() or len(value) > MAX_TEXT):
            raise DomainError(
                ErrorCode.INVALID_INPUT, f"{field} must be 1 to {MAX_TEXT} characters", [field]
            )
        if value is not None and ("\x00" in value or has_lone_surrogate(value)):
            raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must be plain text", [field])
    if not purchase.lines:
        return
    if len(purchase.lines) > MAX_LINES:
        raise _bad(f"a purchase has at most {MAX_LINES} lines", "lines")
    total = Decimal(0)
    for index, line in enumerate(purchase.lines):
        at = f"lines.{index}"
        _check_label(line.sku, f"{at}.sku", required=True)
        _check_label(line.category, f"{at}.category", required=False)
        if (
            not line.quantity.is_finite()
            or line.quantity <= 0
            or line.quantity > MAX_QUANTITY
            or _decimals(line.quantity) > QUANTITY_DECIMALS
        ):
            raise _bad(
                f"quantity must be positive, at most {MAX_QUANTITY}, with at most"
                f" {QUANTITY_DECIMALS} decimals",
                f"{at}.quantity",
            )
        if (
            not line.amount.is_finite()
            or line.amount < 0
            or _decimals(line.amount) > currency_exponent
        ):
            raise _bad(
                f"amount must be zero or positive, with at most {currency_exponent} decimals",
                f"{at}.amount",
            )
        total += line.amount
    if total != purchase.amount:
        raise _bad(f"the lines add up to {total}, not to the amount {purchase.amount}", "lines")
