"""Coalition-wide economics: currency, point value, phone region, funding model, fee; and the
time zone rules see local hours and weekdays in."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode

FUNDING_MODELS = ("REDEMPTION", "ISSUANCE")
MAX_PRICE = Decimal("1000000")


@dataclass(frozen=True)
class CoalitionSettings:
    currency: str
    currency_exponent: int
    point_value: Decimal
    default_region: str
    funding_model: str
    clearing_fee: Decimal
    time_zone: str = "UTC"  # IANA name: campaigns see local hours and weekdays in it

    def to_minor(self, amount: Decimal) -> Decimal:
        """Currency units to minor units, unrounded (callers round once, by their rule)."""
        return amount * (Decimal(10) ** self.currency_exponent)

    def money(self, amount: Decimal) -> Decimal:
        """An amount as partners expect to read it, losslessly: no zeros past the minor unit
        ("120.000000" from a NUMERIC(20, 6) column reads "120.00"), every significant digit kept.
        """
        quantized = amount.quantize(Decimal(1).scaleb(-self.currency_exponent))
        return quantized if quantized == amount else amount.normalize()


async def load_settings(conn: AsyncConnection) -> CoalitionSettings:
    row = (
        await conn.execute(
            text(
                "SELECT currency, currency_exponent, point_value, default_region,"
                " funding_model, clearing_fee, time_zone FROM coalition_settings WHERE id = 1"
            )
        )
    ).one()
    return CoalitionSettings(**row._mapping)


async def update_settings(
    conn: AsyncConnection,
    *,
    point_value: Decimal | None = None,
    default_region: str | None = None,
    funding_model: str | None = None,
    clearing_fee: Decimal | None = None,
    time_zone: str | None = None,
) -> CoalitionSettings:
    if funding_model is not None and funding_model not in FUNDING_MODELS:
        raise DomainError(ErrorCode.INVALID_INPUT, "unknown funding model", ["fundingModel"])
    for name, value in (("pointValue", point_value), ("clearingFee", clearing_fee)):
        # NaN, infinities and values beyond the NUMERIC(20, 6) columns are the caller's
        # mistake, not a crash (comparing a NaN raises InvalidOperation).
        if value is not None and (not value.is_finite() or not 0 <= value <= MAX_PRICE):
            raise DomainError(
                ErrorCode.INVALID_AMOUNT, f"{name} must be between 0 and {MAX_PRICE}", [name]
            )
        if value is not None and value.as_tuple().exponent < -6:  # type: ignore[operator]
            raise DomainError(ErrorCode.INVALID_AMOUNT, f"{name} has more than 6 decimals", [name])
    if default_region is not None:
        import phonenumbers

        if default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise DomainError(ErrorCode.INVALID_INPUT, "unknown region", ["defaultRegion"])
        default_region = default_region.upper()
    if time_zone is not None:
        time_zone = check_time_zone(time_zone)
    await conn.execute(
        text(
            "UPDATE coalition_settings SET point_value = COALESCE(:pv, point_value),"
            " default_region = COALESCE(:region, default_region),"
            " funding_model = COALESCE(:fm, funding_model),"
            " clearing_fee = COALESCE(:fee, clearing_fee),"
            " time_zone = COALESCE(:tz, time_zone), updated_at = now() WHERE id = 1"
        ),
        {
            "pv": point_value,
            "region": default_region,
            "fm": funding_model,
            "fee": clearing_fee,
            "tz": time_zone,
        },
    )
    return await load_settings(conn)


# Names in the time zone database that are not places: the host's own zone, and tzdata's
# internal ones.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def check_time_zone(name: str) -> str:
    """An IANA time zone name as the time zone database spells it (`Europe/Moscow`, `UTC`), or
    INVALID_INPUT on `timeZone`."""
    if name not in _zone_names():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "unknown time zone: an IANA name such as Europe/Moscow or UTC",
            ["timeZone"],
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DomainError(ErrorCode.INVALID_INPUT, "unknown time zone", ["timeZone"]) from exc
    return name
