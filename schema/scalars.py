"""The `Decimal` and `DateTime` scalars: one exact wire format each, stated in the SDL.

`Decimal`: amounts, rates and prices as strings in one exact format.

Strawberry's own `Decimal` hands its input to Python's `Decimal`, which accepts "1_000",
" 10 ", "١٠" and JSON floats. This one accepts exactly the text `ledger.amounts` defines
(`^-?[0-9]+(\\.[0-9]+)?$`). Anything else becomes NaN rather than a GraphQL error, so that
it reaches the mutation and is refused there like any other bad amount: INVALID_AMOUNT in
the payload's `errors`, with its field, per row in a batch (every check of a Decimal input
refuses a value that is not finite). Output never uses exponent notation.

`DateTime`: an RFC 3339 date-time with its offset (`2026-11-23T10:15:00+03:00`,
`2026-11-23T07:15:00Z`). Strawberry's own accepts whatever `dateutil` can read ("20261123",
a date alone); a typed client needs one format, so anything else is a GraphQL error naming
the value. A date-time without its offset reaches the field, which refuses it as data
(INVALID_INPUT with the field). Output is always UTC with the offset written out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.types.scalar import ScalarDefinition

from ledger.amounts import DECIMAL_PATTERN, InvalidDecimal, format_decimal, parse_decimal

NOT_A_NUMBER = Decimal("NaN")


def _parse(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except InvalidDecimal:
        return NOT_A_NUMBER  # refused as INVALID_AMOUNT where the field is checked


def _serialize(value: object) -> str:
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


DECIMAL_SPECIFIED_BY = "https://www.w3.org/TR/xmlschema11-2/#decimal"
DATETIME_SPECIFIED_BY = "https://scalars.graphql.org/andimarek/date-time"

DecimalScalar = ScalarDefinition(
    name="Decimal",
    description=(
        'An exact decimal number written as a JSON string, such as "149.90", matching'
        f" `^{DECIMAL_PATTERN}$` (ASCII digits, an optional leading minus, an optional"
        " fraction after a dot; at most 64 characters). Never a JSON number, an exponent,"
        " a plus sign, spaces or separators: an input in any other form is refused like a"
        " value out of the field's range (INVALID_AMOUNT in the payload's `errors`, with the"
        " field). Money (amounts, values, settlement figures) has the currency's scale: 2"
        ' decimals for RUB, always written out ("100.00"); rates and prices have at most 6'
        " decimals. Map it to a string or an exact decimal type in clients, never to a"
        " binary float."
    ),
    # The XML Schema `decimal` lexical space; this format is its subset without "+", ".5"
    # or "5." (the description gives the exact pattern).
    specified_by_url=DECIMAL_SPECIFIED_BY,
    serialize=_serialize,
    parse_value=_parse,
    parse_literal=None,
    origin=Decimal,
)

# RFC 3339 `date-time`: a full date, "T", a full time with optional fraction, and an offset.
# Without the offset the value still parses (naive): the field it is given for refuses it
# with INVALID_INPUT and its path, as data, like any other out-of-range value.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_FRACTION = re.compile(r"\.([0-9]+)")


def parse_datetime(value: object) -> datetime:
    """An RFC 3339 date-time (naive when it lacks the offset), or a coercion error."""
    if not isinstance(value, str) or len(value) > 40 or _RFC3339.fullmatch(value) is None:
        raise StrawberryInputCoercionError(
            f"Value cannot represent a DateTime: {value!r:.60}. Expected an RFC 3339 date-time"
            ' with an offset, such as "2026-11-23T10:15:00+03:00" or "2026-11-23T07:15:00Z".'
        )
    # Python reads at most 6 fraction digits: finer ones are truncated (microseconds).
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.upper(), count=1)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:  # a month 13, a day 30 of February, an offset of 99 hours
        raise StrawberryInputCoercionError(
            f"Value cannot represent a DateTime: {value!r:.60}. {exc}."
        ) from None


def _serialize_datetime(value: object) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {value!r:.60}")
    if value.tzinfo is None:  # timestamps come from timestamptz columns: UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


DateTimeScalar = ScalarDefinition(
    name="DateTime",
    description=(
        "An instant as an RFC 3339 date-time string with its offset:"
        ' "2026-11-23T10:15:00+03:00", "2026-11-23T07:15:00.123456Z". Inputs must carry an'
        " offset (`Z` or `±hh:mm`): one without is refused as INVALID_INPUT in the payload's"
        " `errors` (with the field), any other text as a GraphQL error. Fractions finer than"
        " microseconds are truncated. Outputs"
        ' are always in UTC with the offset written "+00:00", and with microseconds when'
        " they are not zero."
    ),
    specified_by_url=DATETIME_SPECIFIED_BY,
    serialize=_serialize_datetime,
    parse_value=parse_datetime,
    parse_literal=None,
    origin=datetime,
)

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    Decimal: DecimalScalar,
    datetime: DateTimeScalar,
}
