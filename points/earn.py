"""The earn: a purchase priced by the earn engine and booked with its idempotency key, in two
statements on an autocommit connection (one read, one booking function), and the quote: the
same price with nothing booked."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import idempotency, postings
from ledger.amounts import EXAMPLE
from ledger.earn_once import (
    CampaignLimitReached,
    EarnToBook,
    KeyTaken,
    bonuses_for,
    book_earn_once,
)
from ledger.queries import EARNED_AT, TransferRecord, prefixed_transfer, prefixed_transfer_columns
from members.service import (
    MemberRef,
    check_ref_in_region,
    lookup_params,
    partner_lookup_sql,
    region_in_force,
    resolve,
)
from partners.service import (
    BEGINNING,
    EARN_CONTEXT_COLUMNS,
    EARN_CONTEXT_FROM,
    EARN_CONTEXT_WHERE,
    EarnContext,
    earn_context_of,
)
from points.campaigns.limits import budget_left
from points.checks import (
    CLOCK_SKEW,
    MAX_AMOUNT,
    check_instant,
    check_key,
    check_reference,
    partner_of,
    ref_dict,
)
from points.pricing import (
    EarnSetting,
    MemberState,
    Priced,
    price,
    remember_budget,
)
from points.purchase import Purchase, check_purchase
from points.rules.model import PricedLine, PurchaseLine
from points.tiers.members import MEMBER_TIER_COLUMN, MEMBER_TIER_JOIN


@dataclass(frozen=True)
class EarnOutcome:
    member_id: str
    transfer_id: str | None
    points: int
    lines: list[dict[str, Any]]
    replayed: bool = False
    # The booked transfer as stored (not part of the idempotent result).
    transfer: TransferRecord | None = None


def check_earn_before_key(reference: str, key: str, occurred_at: datetime | None) -> None:
    """What an earn refuses before it looks at its idempotency key (single and batch)."""
    check_reference(reference)
    check_instant(occurred_at, "occurredAt")
    if occurred_at is not None and occurred_at < BEGINNING:  # before any rate card
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "occurredAt is so old that its points would already have expired",
            ["occurredAt"],
        )
    check_key(key)


def earn_request(
    member: MemberRef,
    amount: Decimal,
    reference: str,
    occurred_at: datetime | None,
    purchase: Purchase | None = None,
) -> dict[str, Any]:
    """What the idempotency key's request hash covers. Lines, store and channel count only
    when sent, so the hash of an earn without them is what it always was."""
    return {
        "member": ref_dict(member),
        "amount": str(amount),
        "reference": reference,
        "occurredAt": occurred_at,
        **(purchase.request() if purchase is not None else {}),
    }


# The member as the engine sees it: purchases before this one, tier, and what it used of
# per-member campaign limits in the periods a purchase at :at can count against (binds :at;
# `{lookup}` is the member lookup).
_MEMBER_STATE = (
    "LEFT JOIN LATERAL (SELECT m.id AS member_id, m.purchases, {tier} AS tier,"
    " (SELECT jsonb_agg(jsonb_build_array(u.campaign_id, u.period_start, u.points))"
    "  FROM campaign_member_usage u WHERE u.member_id = m.id AND (u.period_start = DATE"
    " '0001-01-01' OR u.period_start >= LEAST("
    "  date_trunc('week', COALESCE(CAST(:at AS timestamptz), now()) AT TIME ZONE s.time_zone),"
    "  date_trunc('month', COALESCE(CAST(:at AS timestamptz), now()) AT TIME ZONE s.time_zone))"
    " )) AS usage FROM members m {tier_join} WHERE m.id = {lookup}) mf ON true"
).format(tier=MEMBER_TIER_COLUMN, tier_join=MEMBER_TIER_JOIN, lookup=partner_lookup_sql("p.id"))

_ENGINE_COLUMNS = (
    "p.slug AS partner_slug, s.time_zone, s.campaigns_revision, s.tiers_revision,"
    " mf.member_id, mf.purchases, mf.tier, mf.usage"
)

# One read before the write: the stored key, the earn context and the member (binds :client,
# :key, :p, :at and the member lookup's :ref, :phone, :mid).
# On a replay it also returns the booked transfer, which the payload shows.
_EARN_PREFLIGHT = text(
    f"SELECT {EARN_CONTEXT_COLUMNS}, {idempotency.KEY_COLUMNS}, {_ENGINE_COLUMNS},"
    f" {prefixed_transfer_columns('t', 'stored_')}"
    f" FROM {EARN_CONTEXT_FROM} {idempotency.KEY_JOIN}"
    " LEFT JOIN transfers t ON t.id = CAST(k.result ->> 'transfer_id' AS uuid)"
    f" {_MEMBER_STATE} WHERE {EARN_CONTEXT_WHERE}"
)

# The same without a key: what a quote reads (binds :p, :at and the member lookup).
_QUOTE_PREFLIGHT = text(
    f"SELECT {EARN_CONTEXT_COLUMNS}, {_ENGINE_COLUMNS}"
    f" FROM {EARN_CONTEXT_FROM} {_MEMBER_STATE} WHERE {EARN_CONTEXT_WHERE}"
)

# The member state alone, for a member found again after the phone region changed.
_MEMBER_STATE_BY_ID = text(
    "SELECT mf.member_id, mf.purchases, mf.tier, mf.usage FROM coalition_settings s"
    f" {_MEMBER_STATE.replace(partner_lookup_sql('p.id'), 'CAST(:mid AS uuid)')}"
    " WHERE s.id = 1"
)


def _check_amount(amount: Decimal, exponent: int) -> None:
    if (
        not amount.is_finite()
        or amount <= 0
        or amount > MAX_AMOUNT
        or amount.as_tuple().exponent < -exponent  # type: ignore[operator]
    ):
        raise DomainError(
            ErrorCode.INVALID_AMOUNT,
            f"amount must be a decimal string such as {EXAMPLE}: positive, at most"
            f" {MAX_AMOUNT}, with at most {exponent} decimals",
            ["amount"],
        )


@dataclass(frozen=True)
class EarnTimes:
    booked_at: datetime
    available_at: datetime
    expires_at: datetime


def _times(context: EarnContext, occurred_at: datetime | None) -> EarnTimes:
    now = context.now
    booked_at = occurred_at or now
    if booked_at > now + CLOCK_SKEW:
        raise DomainError(ErrorCode.INVALID_INPUT, "occurredAt is in the future", ["occurredAt"])
    available_at = booked_at + timedelta(days=context.pending_days)
    expires_at = available_at + timedelta(days=context.points_validity_days)
    if expires_at <= now:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "occurredAt is so old that its points would already have expired",
            ["occurredAt"],
        )
    return EarnTimes(booked_at, available_at, expires_at)


def _setting(row: Any, context: EarnContext) -> EarnSetting:
    return EarnSetting(
        partner_id=context.card.partner_id,
        partner_slug=row.partner_slug,
        earn_rate=context.card.earn_rate,
        time_zone=row.time_zone,
        campaigns_revision=row.campaigns_revision,
        tiers_revision=row.tiers_revision,
    )


def _member_state(row: Any) -> MemberState:
    usage = {
        (uuid.UUID(campaign), date.fromisoformat(start)): int(points)
        for campaign, start, points in row.usage or ()
    }
    return MemberState(
        member_id=row.member_id, tier=row.tier or "", purchases=row.purchases, usage=usage
    )


async def _member_of(
    conn: AsyncConnection,
    caller: Caller,
    member: MemberRef,
    row: Any,
    read_in: str | None,
    context: EarnContext,
) -> MemberState:
    """The member the preflight found, or, when the phone region changed since the phone was
    parsed, the one found again (rare: a second read)."""
    if region_in_force(read_in, context.default_region):
        found = row if row.member_id is not None else None
    else:
        member_id = await resolve(conn, caller, member)
        found = (
            (await conn.execute(_MEMBER_STATE_BY_ID, {"mid": member_id, "at": row.now})).one()
            if member_id is not None
            else None
        )
    if found is None or found.member_id is None:
        raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    return _member_state(found)


def stored_line(line: PricedLine) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "rule": line.rule,
        "description": line.description,
        "points": line.points,
        "funded_by": [
            {"partner_id": str(f.funder) if f.funder else None, "points": f.points}
            for f in line.funded_by
        ],
    }
    if line.campaign_id is not None:
        stored["campaign_id"] = str(line.campaign_id)
        stored["campaign_version"] = line.campaign_version
    return stored


def booking(
    priced: Priced,
    *,
    member_id: uuid.UUID,
    partner_id: uuid.UUID,
    client_id: str,
    reference: str,
    amount: Decimal,
    times: EarnTimes,
    card_id: uuid.UUID,
) -> EarnToBook:
    """The EARN transfer holds what the partner where the purchase happened pays; each other
    funder (a co-funding partner, or the operator) gets a BONUS transfer and lot of its own."""
    own, bonuses = bonuses_for(priced.earn.by_funder(), partner_id)
    lines = [stored_line(line) for line in priced.earn.lines]
    metadata: dict[str, Any] = {"explanation": lines, "rate_card_id": str(card_id)}
    if own == 0 and bonuses:  # a funder's BONUS heads the purchase: say where it happened
        metadata[EARNED_AT] = str(partner_id)
    return EarnToBook(
        member_id=member_id,
        issuer_id=partner_id,
        client_id=client_id,
        transfer_id=new_id(),
        lot_id=new_id(),
        points=own,
        reference=reference,
        amount=amount,
        metadata=metadata,
        occurred_at=times.booked_at,
        available_at=times.available_at,
        expires_at=times.expires_at,
        bonuses=bonuses,
        draws=priced.draws,
        purchase=True,
    )


MAX_REPRICES = 8


async def _price_and_book(
    conn: AsyncConnection,
    *,
    setting: EarnSetting,
    member: MemberState,
    purchase: Purchase,
    times: EarnTimes,
    client_id: str,
    reference: str,
    card_id: uuid.UUID,
    key: str,
    digest: str,
) -> tuple[EarnOutcome, EarnToBook, datetime | KeyTaken | None]:
    """Price, then book; a campaign whose budget or member limit ran out meanwhile (the
    booking checks both under its locks) is priced again with what is left."""
    for _ in range(MAX_REPRICES):
        priced = await price(conn, setting, member, purchase, times.booked_at)
        earn = booking(
            priced,
            member_id=member.member_id,
            partner_id=setting.partner_id,
            client_id=client_id,
            reference=reference,
            amount=purchase.amount,
            times=times,
            card_id=card_id,
        )
        head = earn.head_id
        outcome = EarnOutcome(
            member_id=str(member.member_id),
            transfer_id=str(head) if head is not None else None,
            points=priced.earn.points,
            lines=earn.metadata["explanation"],
        )
        try:
            booked = await book_earn_once(
                conn, earn, key=key, request_hash=digest, result=stored_result(outcome)
            )
        except CampaignLimitReached as reached:
            if reached.kind == "BUDGET":
                left = await budget_left(conn, reached.campaign_id)
                remember_budget(reached.campaign_id, left or 0)
            else:
                member = await _fresh_usage(conn, member, times.booked_at)
            continue
        return outcome, earn, booked
    raise RuntimeError("campaign limits kept changing while pricing an earn")


async def _fresh_usage(conn: AsyncConnection, member: MemberState, at: datetime) -> MemberState:
    row = (await conn.execute(_MEMBER_STATE_BY_ID, {"mid": member.member_id, "at": at})).one()
    return replace(member, usage=_member_state(row).usage)


async def earn_points(
    conn: AsyncConnection,
    caller: Caller,
    *,
    member: MemberRef,
    amount: Decimal,
    reference: str,
    occurred_at: datetime | None,
    idempotency_key: str,
    lines: tuple[PurchaseLine, ...] = (),
    store_id: str | None = None,
    channel: str | None = None,
) -> EarnOutcome:
    """An earn in two statements on an autocommit connection: one read (a replay ends
    there), then `ledger_book_earn`, which stores the key, the posting, its bonus transfers,
    campaign draws and obligations atomically."""
    partner_id = partner_of(caller, "earnPoints")
    purchase = Purchase(amount=amount, lines=lines, store_id=store_id, channel=channel)
    check_earn_before_key(reference, idempotency_key, occurred_at)
    digest = idempotency.request_hash(
        "earnPoints", earn_request(member, amount, reference, occurred_at, purchase)
    )
    checked, read_in = await check_ref_in_region(conn, caller, member)
    row = (
        await conn.execute(
            _EARN_PREFLIGHT,
            {
                "client": caller.client_id,
                "key": idempotency_key,
                "p": partner_id,
                "at": occurred_at,
                **lookup_params(checked),
            },
        )
    ).one()
    stored = idempotency.stored_result(
        row.key_operation, row.key_hash, row.key_result, "earnPoints", digest
    )
    if stored is not None:
        return EarnOutcome(**stored, replayed=True, transfer=prefixed_transfer(row, "stored_"))
    context = earn_context_of(row)
    _check_amount(amount, context.currency_exponent)
    check_purchase(purchase, context.currency_exponent)
    times = _times(context, occurred_at)
    state = await _member_of(conn, caller, member, row, read_in, context)
    outcome, earn, booked = await _price_and_book(
        conn,
        setting=_setting(row, context),
        member=state,
        purchase=purchase,
        times=times,
        client_id=caller.client_id,
        reference=reference,
        card_id=context.card.id,
        key=idempotency_key,
        digest=digest,
    )
    if isinstance(booked, KeyTaken):  # a concurrent call with this key committed first
        stored = idempotency.stored_result(
            booked.operation, booked.request_hash, booked.result, "earnPoints", digest
        )
        assert stored is not None
        return EarnOutcome(**stored, replayed=True)
    if booked is None or earn.points == 0:
        return outcome  # nothing booked, or the head is a BONUS (loaded when selected)
    transfer = TransferRecord(
        id=earn.transfer_id,
        code=postings.TransferCode.EARN,
        points=earn.points,
        member_id=state.member_id,
        partner_id=partner_id,
        client_id=caller.client_id,
        reference=reference,
        reversal_of_id=None,
        amount=amount,
        metadata=earn.metadata,
        occurred_at=times.booked_at,
        created_at=booked,
    )
    return replace(outcome, transfer=transfer)


@dataclass(frozen=True)
class EarnQuote:
    member_id: str
    points: int
    lines: list[dict[str, Any]]


async def quote_earn(
    conn: AsyncConnection,
    caller: Caller,
    *,
    member: MemberRef,
    amount: Decimal,
    occurred_at: datetime | None,
    lines: tuple[PurchaseLine, ...] = (),
    store_id: str | None = None,
    channel: str | None = None,
) -> EarnQuote:
    """What `earnPoints` would give for this purchase now, by the same engine, with nothing
    booked (what a till shows before payment). Budgets are taken as the earn would find them
    unless one is known to be short; the earn itself is the final word."""
    partner_id = partner_of(caller, "quoteEarn")
    purchase = Purchase(amount=amount, lines=lines, store_id=store_id, channel=channel)
    check_instant(occurred_at, "occurredAt")
    checked, read_in = await check_ref_in_region(conn, caller, member)
    row = (
        await conn.execute(
            _QUOTE_PREFLIGHT, {"p": partner_id, "at": occurred_at, **lookup_params(checked)}
        )
    ).one()
    context = earn_context_of(row)
    _check_amount(amount, context.currency_exponent)
    check_purchase(purchase, context.currency_exponent)
    times = _times(context, occurred_at)
    state = await _member_of(conn, caller, member, row, read_in, context)
    priced = await price(conn, _setting(row, context), state, purchase, times.booked_at)
    return EarnQuote(
        member_id=str(state.member_id),
        points=priced.earn.points,
        lines=[stored_line(line) for line in priced.earn.lines],
    )


def stored_result(outcome: Any) -> dict[str, Any]:
    data = asdict(outcome)
    data.pop("replayed", None)
    data.pop("transfer", None)
    return data
