r"""Decimal numbers as clients write them (amounts, rates, prices): one rule for the API's
`Decimal` scalar and for the files partners send.

The accepted text is exactly `^-?[0-9]+(\.[0-9]+)?$`, at most 64 characters: ASCII digits,
an optional leading minus and an optional fraction after a dot, such as "149.90", "10",
"-1" or "0.000001". Python's `Decimal` is far more lenient and none of that is a number a
till prints: "1_000", " 10 ", "+5", "1e3", ".5", "5.", "NaN", "Infinity" and digits of
other scripts ("١٠") are refused, as is a JSON number (`12.5` is a binary float: 0.1 is
not 0.1). The scale and range depend on the field (the currency's decimals for an amount,
6 for a rate or price) and are checked where the value is used, with INVALID_AMOUNT.
"""

from __future__ import annotations

import re
from decimal import Decimal

DECIMAL_PATTERN = r"-?[0-9]+(\.[0-9]+)?"
MAX_DECIMAL_LENGTH = 64  # the widest column (NUMERIC(20, 6)) needs 28 characters
_DECIMAL = re.compile(DECIMAL_PATTERN)
EXAMPLE = '"149.90"'


class InvalidDecimal(ValueError):
    """Text that is not a decimal number in the accepted format."""


def parse_decimal(value: object) -> Decimal:
    """The Decimal a client's text stands for, or InvalidDecimal (see the module)."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_DECIMAL_LENGTH
        or _DECIMAL.fullmatch(value) is None
    ):
        raise InvalidDecimal(
            f"{value!r:.80} is not a decimal number written like {EXAMPLE}"
            " (ASCII digits, an optional minus and an optional fraction after a dot)"
        )
    return Decimal(value)


def format_decimal(value: Decimal) -> str:
    """A Decimal in the same format, never in exponent notation (str(Decimal) may be "1E+2")."""
    return format(value, "f")
