"""Batch earn: a partner's purchases booked many at a time, each exactly as `earnPoints` would.

Per-row outcomes, not all-or-nothing: every row is validated like a single `earn_points`
call; rows that would fail alone are rejected (with their index, error code and message)
and every other row is booked in the same transaction. A row therefore ends one of:

- booked: its earn (0 points: no transfer, as `earnPoints` answers) and its key stored now;
- replayed: its idempotency key was already used for the same request (earlier, or by an
  earlier row of the batch): nothing new is booked, the original transfer is reported;
- rejected: INVALID_AMOUNT, INVALID_INPUT, INVALID_PHONE, MEMBER_NOT_FOUND or
  IDEMPOTENCY_KEY_REUSED (the key was used for a different request); nothing is stored.

The checks run in `earn_points`'s order, so a row gets the answer the single mutation would
give: reference, occurredAt's time zone and the key's length first; then the key (a replay
wins over later checks); then amount, occurredAt's range and the member. Rows are processed
as if one after another: a later row reusing an earlier row's key replays it (same request)
or is rejected (different request). Keys are the single mutation's (`earnPoints`, same
request hash, same stored result): a batch row and an `earnPoints` call replay each other.

Set-based: members are resolved with one query per kind of reference (phones found as given
need no parsing), the partner's rate cards are read once and each row takes the card in
force at its occurredAt (as `rate_card_at`: the latest effective_from <= it), points and
explanation come from `compute_earn`'s rule, and `ledger.bulk` books the accepted rows with
a few statements.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from ledger import bulk
from ledger.amounts import EXAMPLE
from ledger.idempotency import request_hash
from members.phones import normalize_phone
from members.service import MemberRef
from partners.earning import Purchase, compute_earn
from partners.service import RateCardRecord, get_partner
from partners.settings import load_settings
from points.service import (
    CLOCK_SKEW,
    MAX_AMOUNT,
    _partner_of,
    check_earn_before_key,
    earn_request,
)

OPERATION = "earnPoints"  # keys are shared with the single mutation: the same key replays
BASE_RATE = "BASE_RATE"


class EarnRow(NamedTuple):
    """One purchase of a batch (a NamedTuple: a file holds 100,000 of them)."""

    member: MemberRef
    amount: Decimal
    reference: str
    idempotency_key: str
    occurred_at: datetime | None = None


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
    transfers: int = 0  # EARN transfers booked now (rows earning 0 points book none)
    points: int = 0  # points booked now
    replayed: list[RowReplay] = field(default_factory=list)
    rejected: list[RowRejection] = field(default_factory=list)


class _Card(NamedTuple):
    record: RateCardRecord
    rate: Decimal
    rate_text: str  # as compute_earn writes it in the explanation
    id_text: str


class _Reject(Exception):
    def __init__(self, code: ErrorCode, message: str, field: list[str]) -> None:
        self.code, self.message, self.field = code, message, field


async def _rate_cards(conn: AsyncConnection, partner_id: uuid.UUID) -> list[_Card]:
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
        cards.append(_Card(record, rate, str(rate.normalize()), str(record.id)))
    return cards


def _lines(amount: Decimal, text: str, card: _Card) -> tuple[int, list[dict[str, Any]]]:
    """compute_earn's BASE_RATE rule, without building its dataclasses for every row.

    floor(amount × rate) is int() of the product: both are positive (amount is validated,
    rates are never negative), and the product is exact (at most 24 digits, the context
    has 28), exactly as compute_earn computes it.
    """
    points = int(amount * card.rate)
    description = f"{text} × {card.rate_text} points per unit, rounded down"
    return points, [{"rule": BASE_RATE, "description": description, "points": points}]


def _slow_lines(amount: Decimal, text: str, card: _Card) -> tuple[int, list[dict[str, Any]]]:
    result = compute_earn(Purchase(amount=amount), card.record)
    return result.points, [asdict(line) for line in result.lines]


def _fast_path_holds(amount: Decimal, card: _Card) -> bool:
    """The shortcut is used only while compute_earn is still the base rate alone (checked
    once per batch and card: a new earn rule makes every row go through compute_earn)."""
    probes = (amount, Decimal("0.01"), Decimal("999999999.99"))
    return all(_lines(a, str(a), card) == _slow_lines(a, str(a), card) for a in probes)


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


async def earn_points_batch(
    conn: AsyncConnection, caller: Caller, rows: Sequence[EarnRow]
) -> BatchOutcome:
    """Book many earns of the calling partner in the caller's transaction (per-row results)."""
    partner_id = _partner_of(caller, "earnPointsBatch")
    outcome = BatchOutcome()
    if not rows:
        return outcome
    settings = await load_settings(conn)
    partner = await get_partner(conn, partner_id)
    assert partner is not None
    now = await conn.scalar(text("SELECT now()"))
    assert isinstance(now, datetime)
    cards = await _rate_cards(conn, partner_id)
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
    # itself) reject a row outright; those made after it (amount, occurredAt's range, the
    # member) are deferred: a key already used answers first. PostgreSQL text cannot hold
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
        try:
            digest = request_hash(
                OPERATION, earn_request(row.member, amount, reference, occurred_at)
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

    # Rows in order: resolve the member, price the purchase, and settle keys used twice.
    owner_of: dict[str, int] = {}  # key -> the batch row that books it
    duplicates: dict[int, int] = {}  # later row -> the row that owns its key
    earns: list[bulk.BulkEarn] = []
    positions: list[int] = []  # earns[j] is row positions[j]
    fast: dict[int, bool] = {}  # per card: compute_earn is still the base rate alone
    member_texts: dict[uuid.UUID, str] = {}
    for i, digest in digests.items():
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
        card = cards[c]
        if c not in fast:
            fast[c] = _fast_path_holds(row.amount, card)
        points, lines = (_lines if fast[c] else _slow_lines)(row.amount, amounts[i], card)
        member_text = member_texts.get(member_id)
        if member_text is None:
            member_text = member_texts[member_id] = str(member_id)
        earns.append(
            bulk.BulkEarn(
                key=key,
                digest=digest,
                member_id=member_id,
                points=points,
                reference=row.reference,
                amount=row.amount,
                occurred_at=booked_at,
                metadata=orjson.dumps(
                    {"explanation": lines, "rate_card_id": card.id_text}
                ).decode(),
                result=orjson.dumps(
                    {"member_id": member_text, "points": points, "lines": lines}
                ).decode(),
            )
        )
        positions.append(i)
        owner_of[key] = i

    booked = await bulk.bulk_earn(
        conn,
        issuer_id=partner_id,
        client_id=caller.client_id,
        operation=OPERATION,
        pending=pending,
        validity=validity,
        rows=earns,
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


def _reused(i: int) -> RowRejection:
    return RowRejection(
        i,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this idempotencyKey was already used with a different request",
        ["idempotencyKey"],
    )
