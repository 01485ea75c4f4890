"""Phone numbers: the coalition identity of a member, always stored as E.164."""

from __future__ import annotations

import functools

import phonenumbers

from core.errors import DomainError, ErrorCode


# Parsing costs tens of microseconds, and tills and daily files name the same customers over
# and over; the answer depends only on the two arguments (failures are not cached).
@functools.lru_cache(maxsize=65_536)
def normalize_phone(raw: str, default_region: str) -> str:
    """Parse a phone as people type it (national numbers in the coalition's region) to E.164."""
    if not raw or len(raw) > 40:
        raise DomainError(ErrorCode.INVALID_PHONE, "phone must be 1 to 40 characters", ["phone"])
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise DomainError(ErrorCode.INVALID_PHONE, f"not a phone number: {exc}", ["phone"]) from exc
    if not phonenumbers.is_valid_number(number):
        raise DomainError(ErrorCode.INVALID_PHONE, "not a valid phone number", ["phone"])
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """What a partner sees: enough to confirm with the customer, not enough to contact them."""
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:5] + "*" * (len(e164) - 7) + e164[-2:]
