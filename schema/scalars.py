"""The `Decimal` scalar: amounts, rates and prices as strings in one exact format.

Strawberry's own `Decimal` hands its input to Python's `Decimal`, which accepts "1_000",
" 10 ", "١٠" and JSON floats. This one accepts exactly the text `ledger.amounts` defines
(`^-?[0-9]+(\\.[0-9]+)?$`). Anything else becomes NaN rather than a GraphQL error, so that
it reaches the mutation and is refused there like any other bad amount: INVALID_AMOUNT in
the payload's `errors`, with its field, per row in a batch (every check of a Decimal input
refuses a value that is not finite). Output never uses exponent notation.
"""

from __future__ import annotations

from decimal import Decimal

from strawberry.types.scalar import ScalarDefinition

from ledger.amounts import InvalidDecimal, format_decimal, parse_decimal

NOT_A_NUMBER = Decimal("NaN")


def _parse(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except InvalidDecimal:
        return NOT_A_NUMBER  # refused as INVALID_AMOUNT where the field is checked


def _serialize(value: object) -> str:
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


DecimalScalar = ScalarDefinition(
    name="Decimal",
    description=(
        'A decimal number as a string, such as "149.90": ASCII digits, an optional leading'
        " minus and an optional fraction after a dot (`^-?[0-9]+(\\.[0-9]+)?$`, at most 64"
        " characters). No exponent, spaces, separators or JSON numbers: anything else is"
        " refused as a value out of the field's range is (INVALID_AMOUNT for amounts, rates"
        " and prices)."
    ),
    specified_by_url=None,
    serialize=_serialize,
    parse_value=_parse,
    parse_literal=None,
    origin=Decimal,
)

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {Decimal: DecimalScalar}
