"""Partners and their effective-dated rate cards."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger.accounts import PARTNER_CODES, open_accounts
from partners.settings import load_settings

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# The first rate card of a partner applies from the beginning, so backdated purchases find it.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
MAX_RATE = Decimal("1000000")


@dataclass(frozen=True)
class PartnerRecord:
    id: uuid.UUID
    slug: str
    name: str
    accepts_redemption: bool
    pending_days: int
    points_validity_days: int
    created_at: datetime


@dataclass(frozen=True)
class RateCardRecord:
    id: uuid.UUID
    partner_id: uuid.UUID
    effective_from: datetime
    earn_rate: Decimal
    issue_price: Decimal
    redeem_price: Decimal


_PARTNER_COLUMNS = (
    "id, slug, name, accepts_redemption, pending_days, points_validity_days, created_at"
)
_CARD_COLUMNS = "id, partner_id, effective_from, earn_rate, issue_price, redeem_price"
# The operator's own row (id OPERATOR_PARTY, slug `_operator`, migration 0015) exists so that
# lots, debts and transfers of points the operator funds keep their foreign keys; it is never a
# partner to anyone: every read here leaves it out.
_NOT_OPERATOR = f"id <> '{OPERATOR_PARTY}'::uuid"


def _check_rate(name: str, value: Decimal | None) -> None:
    if value is None:
        return
    if not value.is_finite() or value < 0 or value > MAX_RATE:
        raise DomainError(
            ErrorCode.INVALID_AMOUNT, f"{name} must be between 0 and {MAX_RATE}", [name]
        )
    if value.as_tuple().exponent < -6:  # type: ignore[operator]
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{name} has more than 6 decimals", [name])


async def create_partner(
    conn: AsyncConnection,
    *,
    name: str,
    slug: str,
    earn_rate: Decimal,
    accepts_redemption: bool = True,
    pending_days: int = 0,
    points_validity_days: int = 365,
    issue_price: Decimal | None = None,
    redeem_price: Decimal | None = None,
) -> PartnerRecord:
    if not name.strip() or len(name) > 200 or "\x00" in name:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "name must be 1 to 200 characters, without NUL", ["name"]
        )
    if not SLUG.match(slug):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "slug must be lowercase letters, digits and dashes (at most 64)",
            ["slug"],
        )
    if not 0 <= pending_days <= 365:
        raise DomainError(ErrorCode.INVALID_INPUT, "pendingDays must be 0 to 365", ["pendingDays"])
    if not 1 <= points_validity_days <= 3650:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "pointsValidityDays must be 1 to 3650", ["pointsValidityDays"]
        )
    for field_name, value in (
        ("earnRate", earn_rate),
        ("issuePrice", issue_price),
        ("redeemPrice", redeem_price),
    ):
        _check_rate(field_name, value)
    partner_id = new_id()
    try:
        async with conn.begin_nested():
            await conn.execute(
                text(
                    "INSERT INTO partners (id, slug, name, accepts_redemption, pending_days,"
                    " points_validity_days) VALUES (:id, :slug, :name, :ar, :pd, :pv)"
                ),
                {
                    "id": partner_id,
                    "slug": slug,
                    "name": name.strip(),
                    "ar": accepts_redemption,
                    "pd": pending_days,
                    "pv": points_validity_days,
                },
            )
    except IntegrityError as exc:
        raise DomainError(ErrorCode.SLUG_TAKEN, f"slug {slug!r} is taken", ["slug"]) from exc
    await open_accounts(conn, partner_id, PARTNER_CODES)
    await _insert_card(conn, partner_id, BEGINNING, earn_rate, issue_price, redeem_price)
    partner = await get_partner(conn, partner_id)
    assert partner is not None
    return partner


async def _insert_card(
    conn: AsyncConnection,
    partner_id: uuid.UUID,
    effective_from: datetime,
    earn_rate: Decimal,
    issue_price: Decimal | None,
    redeem_price: Decimal | None,
) -> RateCardRecord:
    settings = await load_settings(conn)
    row = (
        await conn.execute(
            text(
                "INSERT INTO rate_cards (id, partner_id, effective_from, earn_rate, issue_price,"
                " redeem_price) VALUES (:id, :p, :f, :e, :i, :r)"
                " ON CONFLICT (partner_id, effective_from) DO UPDATE SET earn_rate = :e,"
                " issue_price = :i, redeem_price = :r"
                f" RETURNING {_CARD_COLUMNS}"
            ),
            {
                "id": new_id(),
                "p": partner_id,
                "f": effective_from,
                "e": earn_rate,
                "i": issue_price if issue_price is not None else settings.point_value,
                "r": redeem_price if redeem_price is not None else settings.point_value,
            },
        )
    ).one()
    return RateCardRecord(**row._mapping)


async def set_rate_card(
    conn: AsyncConnection,
    partner_id: uuid.UUID,
    *,
    earn_rate: Decimal,
    issue_price: Decimal | None,
    redeem_price: Decimal | None,
    effective_from: datetime | None,
) -> RateCardRecord:
    """Add a card from `effective_from` (default now). Never in the past: booked earns keep
    the rate they were booked at, and settlement prices of past periods never move."""
    for field_name, value in (
        ("earnRate", earn_rate),
        ("issuePrice", issue_price),
        ("redeemPrice", redeem_price),
    ):
        _check_rate(field_name, value)
    now = await conn.scalar(text("SELECT now()"))
    assert isinstance(now, datetime)
    start = effective_from or now
    if start.tzinfo is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "effectiveFrom needs a time zone", ["effectiveFrom"]
        )
    try:  # "9999-12-31T23:59-14:00" has no UTC equivalent (nor a place in timestamptz)
        start.astimezone(UTC)
    except OverflowError as exc:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "effectiveFrom is out of range", ["effectiveFrom"]
        ) from exc
    if start < now:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "effectiveFrom must not be in the past", ["effectiveFrom"]
        )
    if await get_partner(conn, partner_id) is None:
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    return await _insert_card(conn, partner_id, start, earn_rate, issue_price, redeem_price)


async def set_accepts_redemption(
    conn: AsyncConnection, partner_id: uuid.UUID, accepts: bool
) -> PartnerRecord:
    """Whether members may redeem points at the partner from now on (earlier redemptions
    stand)."""
    row = (
        await conn.execute(
            text(
                f"UPDATE partners SET accepts_redemption = :a WHERE id = :id AND {_NOT_OPERATOR}"
                f" RETURNING {_PARTNER_COLUMNS}"
            ),
            {"a": accepts, "id": partner_id},
        )
    ).one_or_none()
    if row is None:
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    return PartnerRecord(**row._mapping)


async def rate_card_at(
    conn: AsyncConnection, partner_id: uuid.UUID, at: datetime | None
) -> RateCardRecord:
    row = (
        await conn.execute(
            text(
                f"SELECT {_CARD_COLUMNS} FROM rate_cards WHERE partner_id = :p"
                " AND effective_from <= COALESCE(:at, now())"
                " ORDER BY effective_from DESC LIMIT 1"
            ),
            {"p": partner_id, "at": at},
        )
    ).one()
    return RateCardRecord(**row._mapping)


async def rate_cards(conn: AsyncConnection, partner_id: uuid.UUID) -> list[RateCardRecord]:
    rows = await conn.execute(
        text(
            f"SELECT {_CARD_COLUMNS} FROM rate_cards WHERE partner_id = :p ORDER BY effective_from"
        ),
        {"p": partner_id},
    )
    return [RateCardRecord(**r._mapping) for r in rows]


async def get_partner(conn: AsyncConnection, partner_id: uuid.UUID) -> PartnerRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE id = :id AND {_NOT_OPERATOR}"),
            {"id": partner_id},
        )
    ).one_or_none()
    return PartnerRecord(**row._mapping) if row else None


async def get_partner_by_slug(conn: AsyncConnection, slug: str) -> PartnerRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE slug = :s AND {_NOT_OPERATOR}"),
            {"s": slug},
        )
    ).one_or_none()
    return PartnerRecord(**row._mapping) if row else None


async def require_partner_by_slug(
    conn: AsyncConnection, slug: str, field: list[str] | None = None
) -> PartnerRecord:
    """The partner with this slug, or PARTNER_NOT_FOUND (on `field`) when there is none."""
    partner = await get_partner_by_slug(conn, slug)
    if partner is None:
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, f"no partner {slug!r}", field)
    return partner


async def get_partners(
    conn: AsyncConnection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, PartnerRecord]:
    rows = await conn.execute(
        text(f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE id = ANY(:ids) AND {_NOT_OPERATOR}"),
        {"ids": ids},
    )
    return {r.id: PartnerRecord(**r._mapping) for r in rows}


async def list_partners(
    conn: AsyncConnection, *, after: uuid.UUID | None, limit: int, only: uuid.UUID | None
) -> list[PartnerRecord]:
    """A page in id order; `only` restricts a partner's client to its own partner."""
    rows = await conn.execute(
        text(
            f"SELECT {_PARTNER_COLUMNS} FROM partners"
            f" WHERE {_NOT_OPERATOR} AND (CAST(:after AS uuid) IS NULL OR id > :after)"
            " AND (CAST(:only AS uuid) IS NULL OR id = :only) ORDER BY id LIMIT :limit"
        ),
        {"after": after, "only": only, "limit": limit},
    )
    return [PartnerRecord(**r._mapping) for r in rows]


@dataclass(frozen=True)
class EarnContext:
    """Everything an earn needs to know about its partner, in one round trip."""

    now: datetime
    currency_exponent: int
    default_region: str
    pending_days: int
    points_validity_days: int
    card: RateCardRecord


EARN_CONTEXT_COLUMNS = (
    "now() AS now, s.currency_exponent, s.default_region, p.pending_days,"
    " p.points_validity_days, c.id, c.partner_id, c.effective_from, c.earn_rate,"
    " c.issue_price, c.redeem_price"
)
# Binds :p (the partner) and :at (the purchase time, NULL for now).
EARN_CONTEXT_FROM = (
    "coalition_settings s CROSS JOIN partners p CROSS JOIN LATERAL ("
    "  SELECT * FROM rate_cards WHERE partner_id = p.id"
    "  AND effective_from <= COALESCE(CAST(:at AS timestamptz), now())"
    "  ORDER BY effective_from DESC LIMIT 1) c"
)
EARN_CONTEXT_WHERE = "s.id = 1 AND p.id = :p"


def earn_context_of(row: Any) -> EarnContext:
    """An EarnContext from a row holding EARN_CONTEXT_COLUMNS."""
    return EarnContext(
        now=row.now,
        currency_exponent=row.currency_exponent,
        default_region=row.default_region,
        pending_days=row.pending_days,
        points_validity_days=row.points_validity_days,
        card=RateCardRecord(
            id=row.id,
            partner_id=row.partner_id,
            effective_from=row.effective_from,
            earn_rate=row.earn_rate,
            issue_price=row.issue_price,
            redeem_price=row.redeem_price,
        ),
    )
