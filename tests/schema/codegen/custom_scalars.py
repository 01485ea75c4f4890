"""Strict scalar mappings for the generated client: Decimal and DateTime as Python types.

Copied into the generated package (`files_to_include`); `parse` reads what the server sends,
`serialize` writes what it accepts (see the scalars' descriptions in the SDL).
"""

from datetime import datetime
from decimal import Decimal


def parse_decimal(value: str) -> Decimal:
    return Decimal(value)


def serialize_decimal(value: Decimal) -> str:
    return format(value, "f")  # never "1E+2"


def parse_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value)


def serialize_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("DateTime needs an offset")
    return value.isoformat()
