"""What a caller asks a campaign to be (`CampaignSpec`) and the checks it must pass before a
version is stored. Every refusal is a `DomainError` naming the input field as the API client
wrote it (`["funding", "1", "share"]`); nothing is written before every check has passed.

Rules:
- name: 1 to 200 characters; lists (stores, channels, tiers, categories, skus): at most 1000
  entries of 1 to 200 characters each, without NUL (duplicates are dropped);
- schedule: times with an offset; `endsAt` after `startsAt` (INVALID_SCHEDULE), and not past
  when the campaign is created; `startsAt` defaults to now;
- condition: CEL that compiles to a boolean (INVALID_CONDITION with the compiler's message);
- effect (INVALID_EFFECT): `multiplier` at least 1 (1 gives nothing extra, below 1 would take
  base points away), at most 100; `bonusPoints` 0 to 1000000000; `pointsPerUnit` 0 to
  1000000; decimals with at most 6 places; and it must give something: a multiplier above 1,
  bonus points or points per unit above 0;
- funding (INVALID_FUNDING): shares above 0 and at most 1 (at most 6 decimals) adding up to
  exactly 1, each funder once, each a partner (null: the operator); empty: the partner where
  the purchase happens pays;
- limits: `maxPointsPerPurchase`, `perMemberLimit` and `budgetPoints` at least 1
  (INVALID_AMOUNT); `priority` -1000000 to 1000000;
- a partner's client (PARTNER_NOT_ALLOWED): its campaign applies only at itself (`partnerIds`
  empty or itself) and is funded only by itself (`funding` empty or itself with share 1).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY
from core.errors import DomainError, ErrorCode
from points.rules.cel import ConditionError, compile_condition
from points.rules.model import Effect, FundingShare, LimitPeriod

MAX_NAME = 200
MAX_ITEM = 200
MAX_ITEMS = 1000
MAX_FUNDERS = 50
MAX_CONDITION = 2000
MAX_MULTIPLIER = Decimal(100)
MAX_BONUS_POINTS = 1_000_000_000
MAX_POINTS_PER_UNIT = Decimal(1_000_000)
MAX_PRIORITY = 1_000_000
MAX_DECIMALS = 6


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign's definition as asked for (checked by `check_spec`). Lists in the order
    given; empty `partner_ids`/`store_ids`/`channels`/`tiers`: every one."""

    name: str
    effect: Effect
    starts_at: datetime | None = None  # None: now
    ends_at: datetime | None = None
    partner_ids: Sequence[uuid.UUID] = ()
    store_ids: Sequence[str] = ()
    channels: Sequence[str] = ()
    tiers: Sequence[str] = ()
    condition: str = "true"
    funding: Sequence[FundingShare] = field(default_factory=tuple)
    priority: int = 0
    exclusive: bool = False
    max_points_per_purchase: int | None = None
    per_member_limit: int | None = None
    limit_period: LimitPeriod = LimitPeriod.CAMPAIGN
    budget_points: int | None = None


# The fields an update may change, with the value `None` resets each to (the default of
# createCampaign); `name` and `effect` have none.
RESETTABLE: dict[str, object] = {
    "starts_at": None,
    "ends_at": None,
    "partner_ids": (),
    "store_ids": (),
    "channels": (),
    "tiers": (),
    "condition": "true",
    "funding": (),
    "priority": 0,
    "exclusive": False,
    "max_points_per_purchase": None,
    "per_member_limit": None,
    "limit_period": LimitPeriod.CAMPAIGN,
    "budget_points": None,
}
API_NAMES = {
    "name": "name",
    "effect": "effect",
    "starts_at": "startsAt",
    "ends_at": "endsAt",
    "partner_ids": "partnerIds",
    "store_ids": "storeIds",
    "channels": "channels",
    "tiers": "tiers",
    "condition": "condition",
    "funding": "funding",
    "priority": "priority",
    "exclusive": "exclusive",
    "max_points_per_purchase": "maxPointsPerPurchase",
    "per_member_limit": "perMemberLimit",
    "limit_period": "limitPeriod",
    "budget_points": "budgetPoints",
}


def _fail(code: ErrorCode, message: str, *path: str | int) -> DomainError:
    return DomainError(code, message, [str(p) for p in path])


def _name(value: str) -> str:
    name = value.strip()
    if not 0 < len(name) <= MAX_NAME or "\x00" in name:
        raise _fail(
            ErrorCode.INVALID_INPUT, f"name must be 1 to {MAX_NAME} characters, without NUL", "name"
        )
    return name


def _strings(values: Sequence[str], *path: str) -> tuple[str, ...]:
    if len(values) > MAX_ITEMS:
        raise _fail(ErrorCode.INVALID_INPUT, f"at most {MAX_ITEMS} entries", *path)
    for i, value in enumerate(values):
        if not 0 < len(value) <= MAX_ITEM or "\x00" in value or value != value.strip():
            raise _fail(
                ErrorCode.INVALID_INPUT,
                f"each entry must be 1 to {MAX_ITEM} characters, without NUL or surrounding spaces",
                *path,
                i,
            )
    return tuple(sorted(dict.fromkeys(values)))


def _instant(value: datetime | None, path: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise _fail(ErrorCode.INVALID_INPUT, "a time must carry its offset", path)


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _decimal(
    value: Decimal, low: Decimal, high: Decimal, code: ErrorCode, message: str, *path: str | int
) -> None:
    if not value.is_finite():  # a Decimal input in another format (schema/scalars.py)
        raise _fail(ErrorCode.INVALID_AMOUNT, "not a decimal number", *path)
    if not low <= value <= high or _decimals(value) > MAX_DECIMALS:
        raise _fail(code, message, *path)


def check_effect(effect: Effect) -> Effect:
    if effect.multiplier is not None:
        _decimal(
            effect.multiplier,
            Decimal(1),
            MAX_MULTIPLIER,
            ErrorCode.INVALID_EFFECT,
            f"multiplier must be 1 to {MAX_MULTIPLIER} (2 doubles the base points; below 1"
            f" would take points away), with at most {MAX_DECIMALS} decimals",
            "effect",
            "multiplier",
        )
    if effect.bonus_points is not None and not 0 <= effect.bonus_points <= MAX_BONUS_POINTS:
        raise _fail(
            ErrorCode.INVALID_EFFECT,
            f"bonusPoints must be 0 to {MAX_BONUS_POINTS}",
            "effect",
            "bonusPoints",
        )
    if effect.points_per_unit is not None:
        _decimal(
            effect.points_per_unit,
            Decimal(0),
            MAX_POINTS_PER_UNIT,
            ErrorCode.INVALID_EFFECT,
            f"pointsPerUnit must be 0 to {MAX_POINTS_PER_UNIT}, with at most {MAX_DECIMALS}"
            " decimals",
            "effect",
            "pointsPerUnit",
        )
    gives = (
        (effect.multiplier is not None and effect.multiplier > 1)
        or (effect.bonus_points is not None and effect.bonus_points > 0)
        or (effect.points_per_unit is not None and effect.points_per_unit > 0)
    )
    if not gives:
        raise _fail(
            ErrorCode.INVALID_EFFECT,
            "the effect gives nothing: set a multiplier above 1, bonusPoints or pointsPerUnit"
            " above 0",
            "effect",
        )
    return Effect(
        multiplier=effect.multiplier,
        bonus_points=effect.bonus_points,
        points_per_unit=effect.points_per_unit,
        categories=_strings(effect.categories, "effect", "categories"),
        skus=_strings(effect.skus, "effect", "skus"),
    )


def check_condition(source: str) -> str:
    if len(source) > MAX_CONDITION:
        raise _fail(ErrorCode.INVALID_CONDITION, f"at most {MAX_CONDITION} characters", "condition")
    try:
        compile_condition(source)
    except ConditionError as exc:
        raise _fail(ErrorCode.INVALID_CONDITION, str(exc), "condition") from exc
    return source


async def _existing_partners(conn: AsyncConnection, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    # The operator's own settlement party is no partner: it funds as null.
    rows = await conn.execute(
        text("SELECT id FROM partners WHERE id = ANY(:ids) AND id <> :operator"),
        {"ids": sorted(ids), "operator": OPERATOR_PARTY},
    )
    return {r.id for r in rows}


async def check_spec(
    conn: AsyncConnection,
    spec: CampaignSpec,
    *,
    owner: uuid.UUID | None,
    now: datetime,
    creating: bool,
) -> CampaignSpec:
    """The spec, checked and normalized (lists sorted and without duplicates, the start
    resolved, a partner's own targeting and funding filled in); raises DomainError."""
    name = _name(spec.name)
    _instant(spec.starts_at, "startsAt")
    _instant(spec.ends_at, "endsAt")
    starts_at = spec.starts_at or now
    if spec.ends_at is not None and spec.ends_at <= starts_at:
        raise _fail(ErrorCode.INVALID_SCHEDULE, "endsAt must be after startsAt", "endsAt")
    if creating and spec.ends_at is not None and spec.ends_at <= now:
        raise _fail(ErrorCode.INVALID_SCHEDULE, "endsAt is already past", "endsAt")

    # Where it applies.
    if len(spec.partner_ids) > MAX_ITEMS:
        raise _fail(ErrorCode.INVALID_INPUT, f"at most {MAX_ITEMS} partners", "partnerIds")
    if owner is not None:
        for i, partner_id in enumerate(spec.partner_ids):
            if partner_id != owner:
                raise _fail(
                    ErrorCode.PARTNER_NOT_ALLOWED,
                    "a partner's campaign applies only at that partner",
                    "partnerIds",
                    i,
                )
        partner_ids: tuple[uuid.UUID, ...] = (owner,)
    else:
        partner_ids = tuple(sorted(set(spec.partner_ids)))
    store_ids = _strings(spec.store_ids, "storeIds")
    channels = _strings(spec.channels, "channels")
    tiers = _strings(spec.tiers, "tiers")

    condition = check_condition(spec.condition)
    effect = check_effect(spec.effect)

    # Who pays.
    funding = tuple(spec.funding)
    if len(funding) > MAX_FUNDERS:
        raise _fail(ErrorCode.INVALID_FUNDING, f"at most {MAX_FUNDERS} funders", "funding")
    seen: set[uuid.UUID | None] = set()
    for i, share in enumerate(funding):
        if owner is not None and share.funder != owner:
            raise _fail(
                ErrorCode.PARTNER_NOT_ALLOWED,
                "a partner's campaign is funded only by that partner",
                "funding",
                i,
                "partnerId",
            )
        if share.funder in seen:
            raise _fail(
                ErrorCode.INVALID_FUNDING, "a funder is named twice", "funding", i, "partnerId"
            )
        seen.add(share.funder)
        _decimal(
            share.share,
            Decimal(0),
            Decimal(1),
            ErrorCode.INVALID_FUNDING,
            f"a share must be above 0 and at most 1, with at most {MAX_DECIMALS} decimals",
            "funding",
            i,
            "share",
        )
        if share.share <= 0:
            raise _fail(ErrorCode.INVALID_FUNDING, "a share must be above 0", "funding", i, "share")
    if funding and sum((f.share for f in funding), Decimal(0)) != 1:
        raise _fail(ErrorCode.INVALID_FUNDING, "the shares must add up to exactly 1", "funding")
    if owner is not None and not funding:
        funding = (FundingShare(owner, Decimal(1)),)

    # Every partner named must exist (one query for both lists).
    funders = {f.funder for f in funding if f.funder is not None}
    known = await _existing_partners(conn, set(partner_ids) | funders)
    for i, partner_id in enumerate(spec.partner_ids):
        if owner is None and partner_id not in known:
            raise _fail(ErrorCode.PARTNER_NOT_FOUND, "no such partner", "partnerIds", i)
    for i, share in enumerate(spec.funding):
        if share.funder is not None and share.funder not in known:
            raise _fail(
                ErrorCode.INVALID_FUNDING,
                "the funder is not a partner of the coalition",
                "funding",
                i,
                "partnerId",
            )

    # Limits.
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise _fail(
            ErrorCode.INVALID_INPUT,
            f"priority must be -{MAX_PRIORITY} to {MAX_PRIORITY}",
            "priority",
        )
    for attr in ("max_points_per_purchase", "per_member_limit", "budget_points"):
        value = getattr(spec, attr)
        if value is not None and value < 1:
            raise _fail(ErrorCode.INVALID_AMOUNT, "must be at least 1 point", API_NAMES[attr])

    return CampaignSpec(
        name=name,
        effect=effect,
        starts_at=starts_at,
        ends_at=spec.ends_at,
        partner_ids=partner_ids,
        store_ids=store_ids,
        channels=channels,
        tiers=tiers,
        condition=condition,
        funding=funding,
        priority=spec.priority,
        exclusive=spec.exclusive,
        max_points_per_purchase=spec.max_points_per_purchase,
        per_member_limit=spec.per_member_limit,
        limit_period=LimitPeriod(spec.limit_period),
        budget_points=spec.budget_points,
    )
