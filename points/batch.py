"""Batch earn: a partner's purchases booked many at a time, each exactly as `earnPoints` would.

Per-row outcomes, not all-or-nothing: every row is validated like a single `earn_points`
call; rows that would fail alone are rejected (with their index, error code and message)
and every other row is booked in the same transaction. A row therefore ends one of:

- booked: its earn (0 points: no transfer, as `earnPoints` answers; the purchase is still
  counted) and its key stored now;
- replayed: its idempotency key was already used for the same request (earlier, or by an
  earlier row of the batch): nothing new is booked, the original transfer is reported;
- rejected: INVALID_AMOUNT, INVALID_LINES, INVALID_INPUT, INVALID_PHONE, MEMBER_NOT_FOUND or
  IDEMPOTENCY_KEY_REUSED (the key was used for a different request); nothing is stored.

The checks run in `earn_points`'s order, so a row gets the answer the single mutation would
give: reference, occurredAt's time zone and the key's length first; then the key (a replay
wins over later checks); then amount, lines (store, channel), occurredAt's range and the
member. Rows are processed as if one after another: a later row reusing an earlier row's key
replays it (same request) or is rejected (different request). Keys are the single mutation's
(`earnPoints`, same request hash, same stored result): a batch row and an `earnPoints` call
replay each other. Lines, store and channel count in the hash only when sent.

Pricing: every row is priced by the earn engine (`points.pricing.price_in_force`, the engine
`earnPoints` prices with) with the campaigns and tier policy in force at its occurredAt (the
catalog and the policy are read once per batch, by the revisions of `coalition_settings`),
the member's tier, its purchases before the row (the batch's earlier rows of the member count,
in order) and its use of campaigns with a per-member limit (accumulated across the rows). A
row with no campaign in force and no tier multiplier is priced by a shortcut that writes the
engine's base-rate line (checked against the engine once per batch and rate card). Members
are resolved with one query per kind of reference (phones found as given need no parsing),
the partner's rate cards are read once and each row takes the card in force at its
occurredAt (as `rate_card_at`), and `ledger.bulk` books the accepted rows with a few
statements; the rows it books one by one (a debt to repay, a budget or limit a concurrent earn
used up) are priced again here when their member's earlier rows changed (`_Pricer`).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from ledger import bulk
from ledger.amounts import EXAMPLE
from ledger.earn_once import CampaignLimitReached
from ledger.idempotency import request_hash
from members.phones import normalize_phone
from members.service import MemberRef
from partners.service import RateCardRecord, get_partner
from partners.settings import load_settings
from points.campaigns.catalog import CampaignCatalog, catalog
from points.campaigns.limits import budget_left, period_start
from points.checks import CLOCK_SKEW, MAX_AMOUNT, partner_of
from points.earn import EarnTimes, booking, check_earn_before_key, earn_request, stored_line
from points.pricing import (
    EarnSetting,
    MemberState,
    local_day,
    price_in_force,
    remember_budget,
)
from points.purchase import Purchase, check_purchase
from points.rules.engine import CompiledCampaign, base_line, purchase_facts
from points.rules.model import LimitPeriod, PurchaseLine, TierPolicyRule
from points.tiers.members import MEMBER_TIER_COLUMN, MEMBER_TIER_JOIN
from points.tiers.policy import policy_in_force

OPERATION = "earnPoints"  # keys are shared with the single mutation: the same key replays
BASE_RATE = "BASE_RATE"


class EarnRow(NamedTuple):
    """One purchase of a batch (a NamedTuple: a file holds 100,000 of them)."""

    member: MemberRef
    amount: Decimal
    reference: str
    idempotency_key: str
    occurred_at: datetime | None = None
    lines: tuple[PurchaseLine, ...] = ()
    store_id: str | None = None
    channel: str | None = None

    def purchase(self) -> Purchase | None:
        """The receipt's extra fields as `earnPoints` takes them (None: only an amount)."""
        if not self.lines and self.store_id is None and self.channel is None:
            return None
        return Purchase(self.amount, self.lines, self.store_id, self.channel)


@dataclass(frozen=True)
class RowRejection:
    index: int  # position of the row in the batch, from 0
    code: ErrorCode
    message: str
    field: list[str] | None


@dataclass(frozen=True)
class RowReplay:
    index: int
    transfer_id: str | None  # None: the original earn gave 0 points
    points: int


@dataclass
class BatchOutcome:
    booked: int = 0  # rows whose earn (and key) was stored now
    transfers: int = 0  # transfers booked now: EARNs and BONUSes (0-point rows book none)
    points: int = 0  # points booked now
    replayed: list[RowReplay] = field(default_factory=list)
    rejected: list[RowRejection] = field(default_factory=list)


class _Card(NamedTuple):
    record: RateCardRecord
    rate: Decimal
    rate_text: str  # as the engine's base-rate line writes it
    id_text: str
    setting: EarnSetting


class _Reject(Exception):
    def __init__(self, code: ErrorCode, message: str, field: list[str]) -> None:
        self.code, self.message, self.field = code, message, field


async def _rate_cards(
    conn: AsyncConnection, partner_id: uuid.UUID, setting: EarnSetting
) -> list[_Card]:
    rows = await conn.execute(
        text(
            "SELECT id, partner_id, effective_from, earn_rate, issue_price, redeem_price"
            " FROM rate_cards WHERE partner_id = :p ORDER BY effective_from"
        ),
        {"p": partner_id},
    )
    cards = []
    for r in rows:
        record = RateCardRecord(**r._mapping)
        rate = record.earn_rate
        cards.append(
            _Card(
                record,
                rate,
                str(rate.normalize()),
                str(record.id),
                EarnSetting(
                    partner_id=partner_id,
                    partner_slug=setting.partner_slug,
                    earn_rate=rate,
                    time_zone=setting.time_zone,
                    campaigns_revision=setting.campaigns_revision,
                    tiers_revision=setting.tiers_revision,
                ),
            )
        )
    return cards


def _base_only(amount: Decimal, amount_text: str, card: _Card, partner: str) -> dict[str, Any]:
    """The engine's base-rate line as `earnPoints` stores it, without the engine's objects.

    floor(amount × rate) is int() of the product: both are positive (amount is validated,
    rates are never negative), and the product is exact (at most 24 digits, the context
    has 28), exactly as the engine computes it.
    """
    points = int(amount * card.rate)
    return {
        "rule": BASE_RATE,
        "description": f"{amount_text} × {card.rate_text} points per unit, rounded down",
        "points": points,
        "funded_by": [{"partner_id": partner, "points": points}],
    }


def _shortcut_holds(amount: Decimal, card: _Card) -> bool:
    """The shortcut is used only while it writes the engine's base-rate line (checked once
    per batch and card: a change to the engine's line makes every row go through it)."""
    partner = str(card.setting.partner_id)
    for a in (amount, Decimal("0.01"), Decimal("999999999.99")):
        facts = purchase_facts(
            partner_id=card.setting.partner_id,
            partner_slug=card.setting.partner_slug,
            amount=a,
            occurred_at=card.record.effective_from,
            time_zone=card.setting.time_zone,
        )
        if stored_line(base_line(facts, card.rate)) != _base_only(a, str(a), card, partner):
            return False
    return True


class _Accepted(NamedTuple):
    """A row that passed the checks and is booked by this batch (unless its key is taken)."""

    at: int  # the row's index in the batch
    member_id: uuid.UUID
    booked_at: datetime
    card: _Card
    digest: str
    amount_text: str
    campaigns: tuple[CompiledCampaign, ...]
    policy: TierPolicyRule | None


Usage = dict[tuple[uuid.UUID, date], int]


def _usage_since(at: datetime, time_zone: str) -> date:
    """The earliest limit period a purchase at `at` can count against (its week's or month's
    start, whichever is earlier), as `earnPoints`'s preflight reads usage."""
    day = local_day(at, time_zone)
    return min(period_start(LimitPeriod.WEEK, day), period_start(LimitPeriod.MONTH, day))


class _Pricer:
    """Prices the accepted rows in order (the member's earlier rows count), and again for
    `ledger.bulk` when it books a row one by one (`bulk.Repricer`)."""

    def __init__(
        self,
        rows: Sequence[EarnRow],
        accepted: list[_Accepted],
        *,
        partner_id: uuid.UUID,
        client_id: str,
        tiers: dict[uuid.UUID, str],
        purchases: dict[uuid.UUID, int],
        usage: dict[uuid.UUID, Usage],
        limited: frozenset[uuid.UUID],
        time_zone: str,
    ) -> None:
        self.rows = rows
        self.accepted = accepted
        self.partner_id = partner_id
        self.partner_text = str(partner_id)
        self.client_id = client_id
        self.tiers = tiers
        self.purchases = purchases  # before the batch
        self.usage = usage  # before the batch, of campaigns with a member limit
        self.limited = limited
        self.time_zone = time_zone
        self.current: list[bulk.BulkEarn] = []
        self.by_member: dict[uuid.UUID, list[int]] = {}
        self.member_texts: dict[uuid.UUID, str] = {}
        self.shortcut: dict[int, bool] = {}  # per card
        self._stateful = False

    @property
    def stateful(self) -> bool:
        return self._stateful

    def price_all(self) -> list[bulk.BulkEarn]:
        counted: dict[uuid.UUID, int] = {}
        running: dict[uuid.UUID, Usage] = {}
        for j, acc in enumerate(self.accepted):
            member = acc.member_id
            self.by_member.setdefault(member, []).append(j)
            before = counted.get(member, 0)
            counted[member] = before + 1
            if self._plain(acc):
                self.current.append(self._plain_earn(acc))
                continue
            self._stateful = self._stateful or bool(acc.campaigns)
            usage = running.get(member)
            if usage is None:
                usage = running[member] = dict(self.usage.get(member, {}))
            earn = self._engine_earn(acc, self.purchases.get(member, 0) + before, usage)
            self.current.append(earn)
            for d in earn.draws:
                period = d.counted_period
                if period is not None and d.campaign_id in self.limited:
                    usage[(d.campaign_id, period)] = (
                        usage.get((d.campaign_id, period), 0) + d.points
                    )
        return self.current

    def _plain(self, acc: _Accepted) -> bool:
        """No campaign in force and no tier multiplier: the base rate alone."""
        if acc.campaigns:
            return False
        policy = acc.policy
        if policy is not None:
            tier = self.tiers.get(acc.member_id, "")
            if tier and any(t.code == tier and t.multiplier > 1 for t in policy.tiers):
                return False
        card = acc.card
        key = id(card)
        holds = self.shortcut.get(key)
        if holds is None:
            holds = self.shortcut[key] = _shortcut_holds(self.rows[acc.at].amount, card)
        return holds

    def _member_text(self, member: uuid.UUID) -> str:
        found = self.member_texts.get(member)
        if found is None:
            found = self.member_texts[member] = str(member)
        return found

    def _plain_earn(self, acc: _Accepted) -> bulk.BulkEarn:
        row = self.rows[acc.at]
        line = _base_only(row.amount, acc.amount_text, acc.card, self.partner_text)
        points = line["points"]
        return bulk.BulkEarn(
            key=row.idempotency_key,
            digest=acc.digest,
            member_id=acc.member_id,
            points=points,
            reference=row.reference,
            amount=row.amount,
            occurred_at=acc.booked_at,
            metadata=orjson.dumps(
                {"explanation": [line], "rate_card_id": acc.card.id_text}
            ).decode(),
            result=orjson.dumps(
                {"member_id": self._member_text(acc.member_id), "points": points, "lines": [line]}
            ).decode(),
        )

    def _engine_earn(self, acc: _Accepted, purchases: int, usage: Usage) -> bulk.BulkEarn:
        row = self.rows[acc.at]
        purchase = Purchase(row.amount, row.lines, row.store_id, row.channel)
        priced = price_in_force(
            acc.card.setting,
            MemberState(acc.member_id, self.tiers.get(acc.member_id, ""), purchases, usage),
            purchase,
            acc.booked_at,
            acc.campaigns,
            acc.policy,
        )
        # The single earn's booking of this price (its ids are not used: the batch makes its
        # own), so the transfers' split, metadata and draws are the single earn's by
        # construction.
        earn = booking(
            priced,
            member_id=acc.member_id,
            partner_id=self.partner_id,
            client_id=self.client_id,
            reference=row.reference,
            amount=row.amount,
            times=EarnTimes(acc.booked_at, acc.booked_at, acc.booked_at),  # lots: `ledger.bulk`
            card_id=acc.card.record.id,
        )
        return bulk.BulkEarn(
            key=row.idempotency_key,
            digest=acc.digest,
            member_id=acc.member_id,
            points=earn.points,
            reference=row.reference,
            amount=row.amount,
            occurred_at=acc.booked_at,
            metadata=orjson.dumps(earn.head_metadata).decode(),
            result=orjson.dumps(
                {
                    "member_id": self._member_text(acc.member_id),
                    "points": priced.earn.points,
                    "lines": earn.metadata["explanation"],
                }
            ).decode(),
            bonuses=tuple((b.funder_id, b.points) for b in earn.bonuses),
            draws=earn.draws,
        )

    async def __call__(
        self,
        conn: AsyncConnection,
        pos: int,
        skipped: AbstractSet[int],
        booked: AbstractSet[int],
        refused: CampaignLimitReached | None,
    ) -> bulk.BulkEarn:
        acc = self.accepted[pos]
        member = acc.member_id
        earlier = [j for j in self.by_member[member] if j < pos and j not in skipped]
        if refused is not None and refused.kind == "BUDGET":
            campaign = refused.campaign_id
            remember_budget(campaign, await budget_left(conn, campaign) or 0)
        elif refused is not None:
            # What the member used as the database holds it now (this batch's rows booked so
            # far included), less those rows: the usage before the batch.
            fresh = await _usage(
                conn, [member], self.limited, _usage_since(acc.booked_at, self.time_zone)
            )
            base = fresh.get(member, {})
            for j in earlier:
                if j in booked:
                    for d in self.current[j].draws:
                        period = d.counted_period
                        if period is not None and d.campaign_id in self.limited:
                            k = (d.campaign_id, period)
                            base[k] = base.get(k, 0) - d.points
            self.usage[member] = base
        usage = dict(self.usage.get(member, {}))
        for j in earlier:
            for d in self.current[j].draws:
                period = d.counted_period
                if period is not None and d.campaign_id in self.limited:
                    usage[(d.campaign_id, period)] = (
                        usage.get((d.campaign_id, period), 0) + d.points
                    )
        if self._plain(acc):
            earn = self._plain_earn(acc)
        else:
            earn = self._engine_earn(acc, self.purchases.get(member, 0) + len(earlier), usage)
        self.current[pos] = earn
        return earn


_MEMBER_STATES = text(
    f"SELECT m.id, m.purchases, {MEMBER_TIER_COLUMN} AS tier FROM members m {MEMBER_TIER_JOIN}"
    " WHERE m.id = ANY(:ids)"
)
_USAGE = text(
    "SELECT campaign_id, member_id, period_start, points FROM campaign_member_usage"
    " WHERE campaign_id = ANY(:campaigns) AND member_id = ANY(:members)"
    " AND (period_start = DATE '0001-01-01' OR period_start >= :since)"
)


async def _usage(
    conn: AsyncConnection,
    members: Sequence[uuid.UUID],
    campaigns: AbstractSet[uuid.UUID],
    since: date,
) -> dict[uuid.UUID, Usage]:
    """What the members used of these campaigns in periods from `since` (and whole campaigns)."""
    found: dict[uuid.UUID, Usage] = {}
    if not members or not campaigns:
        return found
    rows = await conn.execute(
        _USAGE, {"campaigns": list(campaigns), "members": list(members), "since": since}
    )
    for r in rows:
        found.setdefault(r.member_id, {})[(r.campaign_id, r.period_start)] = int(r.points)
    return found


class _Resolver:
    """Members named by the rows, looked up for the whole batch (visible ones only)."""

    def __init__(self, partner_id: uuid.UUID, region: str) -> None:
        self.partner_id = partner_id
        self.region = region
        self.phones: set[str] = set()
        self.refs: set[str] = set()
        self.ids: set[uuid.UUID] = set()
        self.by_phone: dict[str, uuid.UUID] = {}
        self.by_ref: dict[str, uuid.UUID] = {}
        self.by_id: set[uuid.UUID] = set()
        self.phone_errors: dict[str, DomainError] = {}

    def want(self, ref: MemberRef) -> None:
        if ref.partner_ref is not None:
            self.refs.add(ref.partner_ref)
        elif ref.phone is not None:
            self.phones.add(ref.phone)
        elif ref.id is not None:
            self.ids.add(ref.id)

    async def _phones(self, conn: AsyncConnection, phones: list[str]) -> dict[str, uuid.UUID]:
        rows = await conn.execute(
            text(
                "SELECT m.phone, m.id FROM members m JOIN memberships ms"
                " ON ms.member_id = m.id AND ms.partner_id = :p WHERE m.phone = ANY(:phones)"
            ),
            {"p": self.partner_id, "phones": phones},
        )
        return {r.phone: r.id for r in rows}

    async def load(self, conn: AsyncConnection) -> None:
        if self.phones:
            # Stored phones are E.164 as normalize_phone writes them, and normalize_phone
            # leaves its own output unchanged: a phone found as given needs no parsing
            # (the slow part of a batch). The others are normalized and looked up again.
            self.by_phone = await self._phones(conn, [p for p in self.phones if "\x00" not in p])
            normalized: dict[str, str] = {}
            for raw in self.phones - self.by_phone.keys():
                try:
                    e164 = normalize_phone(raw, self.region)
                except DomainError as exc:
                    self.phone_errors[raw] = exc
                    continue
                if e164 != raw:
                    normalized[raw] = e164
            if normalized:
                found = await self._phones(conn, sorted(set(normalized.values())))
                for raw, e164 in normalized.items():
                    if e164 in found:
                        self.by_phone[raw] = found[e164]
        if self.refs:
            rows = await conn.execute(
                text(
                    "SELECT partner_ref, member_id FROM memberships"
                    " WHERE partner_id = :p AND partner_ref = ANY(:refs)"
                ),
                {"p": self.partner_id, "refs": list(self.refs)},
            )
            self.by_ref = {r.partner_ref: r.member_id for r in rows}
        if self.ids:
            found_ids = await conn.scalars(
                text(
                    "SELECT member_id FROM memberships WHERE partner_id = :p"
                    " AND member_id = ANY(:ids)"
                ),
                {"p": self.partner_id, "ids": list(self.ids)},
            )
            self.by_id = set(found_ids.all())

    def member(self, ref: MemberRef) -> uuid.UUID:
        found: uuid.UUID | None
        if ref.partner_ref is not None:
            found = self.by_ref.get(ref.partner_ref)
        elif ref.phone is not None:
            error = self.phone_errors.get(ref.phone)
            if error is not None:
                raise _Reject(error.code, error.message, ["member", "phone"])
            found = self.by_phone.get(ref.phone)
        else:
            found = ref.id if ref.id in self.by_id else None
        if found is None:
            raise _Reject(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
        return found


def _one_ref(ref: MemberRef) -> bool:
    return (ref.id is not None) + (ref.phone is not None) + (ref.partner_ref is not None) == 1


def _before_key(reference: str, key: str, occurred_at: datetime | None) -> DomainError | None:
    """What earn_points refuses before it looks at the key (its checks, its messages)."""
    try:
        check_earn_before_key(reference, key, occurred_at)
    except DomainError as refused:
        return refused
    return None


class _Rules:
    """The campaigns and tier policy in force at each row's time, read once per batch."""

    def __init__(
        self, catalog: CampaignCatalog, low: TierPolicyRule | None, high: TierPolicyRule | None
    ) -> None:
        self.catalog = catalog
        self.constant_policy = low == high
        self.policy = low

    @property
    def any_campaign(self) -> bool:
        return bool(self.catalog.segments)

    def limited(self) -> frozenset[uuid.UUID]:
        """The campaigns with a per-member limit (their usage prices a purchase)."""
        return frozenset(
            s.campaign.rule.campaign_id
            for s in self.catalog.segments
            if s.campaign.rule.per_member_limit is not None
        )


_SETTINGS = text(
    "SELECT now() AS now, campaigns_revision, tiers_revision FROM coalition_settings WHERE id = 1"
)


async def earn_points_batch(
    conn: AsyncConnection, caller: Caller, rows: Sequence[EarnRow]
) -> BatchOutcome:
    """Book many earns of the calling partner in the caller's transaction (per-row results)."""
    partner_id = partner_of(caller, "earnPointsBatch")
    outcome = BatchOutcome()
    if not rows:
        return outcome
    settings = await load_settings(conn)
    partner = await get_partner(conn, partner_id)
    assert partner is not None
    state = (await conn.execute(_SETTINGS)).one()
    now = state.now
    assert isinstance(now, datetime)
    setting = EarnSetting(
        partner_id=partner_id,
        partner_slug=partner.slug,
        earn_rate=Decimal(0),  # per rate card
        time_zone=settings.time_zone,
        campaigns_revision=int(state.campaigns_revision),
        tiers_revision=int(state.tiers_revision),
    )
    cards = await _rate_cards(conn, partner_id, setting)
    starts = [c.record.effective_from for c in cards]
    pending = timedelta(days=partner.pending_days)
    validity = timedelta(days=partner.points_validity_days)
    latest, oldest = now + CLOCK_SKEW, now - pending - validity
    exponent = -settings.currency_exponent
    amount_message = (
        f"amount must be a decimal string such as {EXAMPLE}: positive, at most"
        f" {MAX_AMOUNT}, with at most {settings.currency_exponent} decimals"
    )

    rejected: dict[int, RowRejection] = {}
    digests: dict[int, str] = {}  # rows that passed the checks made before the key
    amounts: dict[int, str] = {}  # their amounts as text (as the request and the explanation)
    deferred: dict[int, RowRejection] = {}  # failures the key's replay would win over
    resolver = _Resolver(partner_id, settings.default_region)

    def reject(i: int, code: ErrorCode, message: str, field_name: str) -> RowRejection:
        return RowRejection(i, code, message, [field_name])

    # The checks earn_points makes before it claims the key (reference, occurredAt, the key
    # itself) reject a row outright; those made after it (amount, lines, occurredAt's range,
    # the member) are deferred: a key already used answers first. PostgreSQL text cannot hold
    # NUL, so no text with one goes near the database (it would fail the whole batch).
    for i, row in enumerate(rows):
        amount, reference, key, occurred_at = (
            row.amount,
            row.reference,
            row.idempotency_key,
            row.occurred_at,
        )
        refused = _before_key(reference, key, occurred_at)
        if refused is not None:
            rejected[i] = RowRejection(i, refused.code, refused.message, refused.field or [])
            continue
        purchase = row.purchase()
        try:
            digest = request_hash(
                OPERATION, earn_request(row.member, amount, reference, occurred_at, purchase)
            )
        except DomainError as unhashable:  # text no UTF-8 can hold, as earn_points refuses it
            rejected[i] = RowRejection(
                i, unhashable.code, unhashable.message, unhashable.field or []
            )
            continue
        amounts[i] = str(amount)
        digests[i] = digest
        if (
            not amount.is_finite()
            or amount <= 0
            or amount > MAX_AMOUNT
            or amount.as_tuple().exponent < exponent  # type: ignore[operator]
        ):
            deferred[i] = reject(i, ErrorCode.INVALID_AMOUNT, amount_message, "amount")
            continue
        if purchase is not None:
            try:
                check_purchase(purchase, settings.currency_exponent)
            except DomainError as bad:
                deferred[i] = RowRejection(i, bad.code, bad.message, bad.field or [])
                continue
        if occurred_at is not None and occurred_at > latest:
            deferred[i] = reject(
                i, ErrorCode.INVALID_INPUT, "occurredAt is in the future", "occurredAt"
            )
            continue
        if occurred_at is not None and occurred_at <= oldest:
            deferred[i] = reject(
                i,
                ErrorCode.INVALID_INPUT,
                "occurredAt is so old that its points would already have expired",
                "occurredAt",
            )
            continue
        if not _one_ref(row.member):
            deferred[i] = reject(
                i, ErrorCode.INVALID_INPUT, "give exactly one of id, phone and partnerRef", "member"
            )
            continue
        if row.member.partner_ref is not None and "\x00" in row.member.partner_ref:
            deferred[i] = RowRejection(
                i,
                ErrorCode.INVALID_INPUT,
                "partnerRef must not contain NUL",
                ["member", "partnerRef"],
            )
            continue
        resolver.want(row.member)
    await resolver.load(conn)

    # Rows in order: resolve the member and settle keys used twice.
    owner_of: dict[str, int] = {}  # key -> the batch row that books it
    duplicates: dict[int, int] = {}  # later row -> the row that owns its key
    found: list[tuple[int, uuid.UUID, datetime, _Card]] = []
    for i in digests:
        row = rows[i]
        key = row.idempotency_key
        if key in owner_of:
            duplicates[i] = owner_of[key]
            continue
        if i in deferred:
            continue
        try:
            member_id = resolver.member(row.member)
        except _Reject as exc:
            deferred[i] = RowRejection(i, exc.code, exc.message, exc.field)
            continue
        booked_at = row.occurred_at or now
        c = bisect.bisect_right(starts, booked_at) - 1
        if c < 0:  # every partner has a card from the beginning of time (partners.service)
            raise RuntimeError(f"no rate card of {partner_id} in force at {booked_at}")
        found.append((i, member_id, booked_at, cards[c]))
        owner_of[key] = i

    pricer = await _pricer(conn, caller, rows, found, digests, amounts, setting)
    earns = pricer.price_all()
    positions = [acc.at for acc in pricer.accepted]  # earns[j] is row positions[j]

    booked = await bulk.bulk_earn(
        conn,
        issuer_id=partner_id,
        client_id=caller.client_id,
        operation=OPERATION,
        pending=pending,
        validity=validity,
        rows=earns,
        reprice=pricer,
    )
    outcome.transfers, outcome.points = booked.transfers, booked.points
    outcome.booked = len(booked.booked)
    fresh = {positions[j] for j in booked.booked}  # rows whose key this batch stored
    existing: dict[str, bulk.StoredKey] = {}  # keys stored before this batch
    for j, stored in booked.replayed.items():
        existing[earns[j].key] = stored
        outcome.replayed.append(RowReplay(positions[j], stored.transfer_id, stored.points))
    for j, stored in booked.reused.items():
        existing[earns[j].key] = stored
        rejected[positions[j]] = _reused(positions[j])

    # Rows that failed later checks: a key stored before the batch still answers first (a
    # key this batch stored belongs to a later row: this one, failing, stored nothing).
    failed = {
        i: f for i, f in deferred.items() if owner_of.get(rows[i].idempotency_key) not in fresh
    }
    for i in deferred.keys() - failed.keys():
        rejected[i] = deferred[i]
    missing = sorted({rows[i].idempotency_key for i in failed} - existing.keys())
    existing.update(await bulk.stored_keys(conn, caller.client_id, missing))
    for i, failure in failed.items():
        previous = existing.get(rows[i].idempotency_key)
        if previous is None:
            rejected[i] = failure
        elif bulk.same_request(previous, OPERATION, digests[i]):
            outcome.replayed.append(RowReplay(i, previous.transfer_id, previous.points))
        else:
            rejected[i] = _reused(i)

    # A key used again later in the batch: a replay of that row, or a reuse.
    if duplicates:
        own = await bulk.stored_keys(
            conn,
            caller.client_id,
            sorted({rows[o].idempotency_key for o in duplicates.values() if o in fresh}),
        )
        for i, owner in duplicates.items():
            key = rows[i].idempotency_key
            previous = own.get(key) if owner in fresh else existing.get(key)
            if previous is not None and bulk.same_request(previous, OPERATION, digests[i]):
                outcome.replayed.append(RowReplay(i, previous.transfer_id, previous.points))
            else:
                rejected[i] = _reused(i)

    outcome.rejected = [rejected[i] for i in sorted(rejected)]
    outcome.replayed.sort(key=lambda r: r.index)
    return outcome


async def _pricer(
    conn: AsyncConnection,
    caller: Caller,
    rows: Sequence[EarnRow],
    found: list[tuple[int, uuid.UUID, datetime, _Card]],
    digests: dict[int, str],
    amounts: dict[int, str],
    setting: EarnSetting,
) -> _Pricer:
    """The rules in force at the rows' times and their members as the engine sees them."""
    rules: _Rules | None = None
    if found:
        times = [at for _, _, at, _ in found]
        first, last = min(times), max(times)
        low = await policy_in_force(conn, setting.tiers_revision, first)
        high = low if first == last else await policy_in_force(conn, setting.tiers_revision, last)
        rules = _Rules(await catalog(conn, setting.campaigns_revision), low, high)
    accepted: list[_Accepted] = []
    for i, member_id, booked_at, card in found:
        assert rules is not None
        policy = rules.policy
        if not rules.constant_policy:
            policy = await policy_in_force(conn, setting.tiers_revision, booked_at)
        campaigns = rules.catalog.rules_at(booked_at) if rules.any_campaign else ()
        accepted.append(
            _Accepted(i, member_id, booked_at, card, digests[i], amounts[i], campaigns, policy)
        )
    tiers: dict[uuid.UUID, str] = {}
    purchases: dict[uuid.UUID, int] = {}
    usage: dict[uuid.UUID, Usage] = {}
    limited: frozenset[uuid.UUID] = frozenset()
    needs_members = rules is not None and (
        rules.any_campaign
        or any(
            p is not None and any(t.multiplier > 1 for t in p.tiers)
            for p in {id(a.policy): a.policy for a in accepted}.values()
        )
    )
    if needs_members:
        assert rules is not None
        members = sorted({a.member_id for a in accepted})
        for r in await conn.execute(_MEMBER_STATES, {"ids": members}):
            tiers[r.id] = r.tier or ""
            purchases[r.id] = int(r.purchases)
        limited = rules.limited()
        if limited:
            since = _usage_since(min(a.booked_at for a in accepted), setting.time_zone)
            usage = await _usage(conn, members, limited, since)
    return _Pricer(
        rows,
        accepted,
        partner_id=setting.partner_id,
        client_id=caller.client_id,
        tiers=tiers,
        purchases=purchases,
        usage=usage,
        limited=limited,
        time_zone=setting.time_zone,
    )


def _reused(i: int) -> RowRejection:
    return RowRejection(
        i,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this idempotencyKey was already used with a different request",
        ["idempotencyKey"],
    )
