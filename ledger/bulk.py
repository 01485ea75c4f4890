"""Set-based earns: many purchases of one issuer booked in one transaction.

Each row is still a full posting, exactly as `ledger_book_earn` (the single earn, `earn_sql`)
books it, and parity-tested against it: the EARN transfer of the issuer's own points and one
BONUS transfer per other funder (`parent_id` the head: the EARN, or the first BONUS when the
EARN has none), a lot per transfer whose issuer is its funder, the campaign draws (member
usage, budget slots), the purchase counted in `members.purchases` (also when it earns nothing),
the idempotency key stored with its result, a `transfer.booked` outbox event per transfer, and
the transfers announced to `events.booked` (settlement books their obligations). Only the
number of statements changes: the rows are staged with COPY into temporary tables, then a
handful of INSERT ... SELECT statements book them all.

Order of work, the same as a single earn's (key, period lock, member lock, draws, writes):

1. stage the rows and their bonuses (COPY; transfer and lot ids are UUIDv7 generated here, in
   order);
2. claim every key at once (INSERT ... ON CONFLICT DO NOTHING, in key order), storing the
   final result with it; a key that already exists is a replay when it was used for the same
   request (reported with its original transfer), else the row is IDEMPOTENCY_KEY_REUSED;
3. `events.begin` (settlement's shared period lock);
4. lock the members involved, in id order (`FOR NO KEY UPDATE`, as `postings.posting` does);
5. rows booked one by one through the single earn, `ledger_book_earn` (`earn_once`), in row
   order: the first rows of members with outstanding debts (rare), until the debt is cleared
   (the function repays debts from the new lots first), and the rows whose price may have
   changed since it was computed (see *Re-pricing*). Their keys are already claimed (step 2),
   so the function is called without one; ids are made just before each call, as `earnPoints`
   makes them, and the keys' stored results are then rewritten with what was booked. A
   member's later rows are booked with everyone's in step 6, under fresh ids made after the
   one-by-one postings', so the member's transfers and lots stay in the order of the rows, as
   single earns would leave them;
6. every other row, set-based: the campaign draws of all of them at once (each member's usage
   per campaign and period added up, in key order; each budget slot's total taken, the slots
   locked in (campaign, slot) order first), then transfers, lots, their outbox events and the
   purchase counts in one statement, then `events.booked` without the outbox step.

Budgets and member limits are never exceeded: the set-based draws run in a savepoint when any
of them is budgeted or limited; when a budget slot cannot cover its rows' total (the rows
would have borrowed from its siblings, or the budget runs out) or a member would pass a limit
(a concurrent earn drew meanwhile), the savepoint is rolled back, the rows of the members with
draws on the campaigns that refused are booked one by one instead (step 5), where the function
checks each draw under its locks exactly as for a single earn, and the others are tried
set-based again. The slots are taken last, just before the commit, so their locks are held
for as short a time as the chunk allows.

*Re-pricing.* A row's price depends on the member's earlier purchases (`members.purchases`,
per-member campaign usage), which the caller computed for the batch's rows in order. A row
the function refuses (`CampaignLimitReached`) is priced again through the caller's
`Repricer` (without what ran out) and booked again; the member's later rows are then priced
again too before they are booked, one by one. So are the rows of a member after one of its
rows turned out to be a replay (it was counted as a purchase when the batch was priced).

Booking every row of an indebted member one by one held that member's lock for seconds on a
5,000-row batch (every other partner's hold or redemption on the member waited); now it is
held for the few rows that repay the debt plus the set-based statements.

The outbox events of step 6 are the rows the transfers' INSERT returns, passed through the
event's one definition (`ledger.outbox.TRANSFER_BOOKED_VALUES`): the same columns and payload
the hook's `outbox_transfers_booked` writes, with no second read of the transfers. Each event
takes its transfer's id as its own: unique, free, and ordered as the transfers are (a member's
later rows come after its one-by-one postings' events, see `_renumber_after`). The hook then
runs with `events_written`, for settlement alone.
"""

from __future__ import annotations

import functools
import heapq
import os
import time
import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import orjson
from asyncpg.pgproto.pgproto import UUID as WireUUID  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY
from db.ids import new_id
from ledger import events, postings
from ledger.accounts import AccountCode, account_id
from ledger.earn_once import (
    BonusToBook,
    CampaignDraw,
    CampaignLimitReached,
    EarnToBook,
    book_earn_once,
)
from ledger.outbox import TRANSFER_BOOKED_COLUMNS, TRANSFER_BOOKED_READS, TRANSFER_BOOKED_VALUES

STAGE = "bulk_earn_stage"
BONUS_STAGE = "bulk_earn_bonus_stage"
MAX_REPRICES = 8
_STAGE_COLUMNS = (
    "pos",
    "key",
    "digest",
    "member_id",
    "wallet",
    "points",
    "total",
    "reference",
    "amount",
    "occurred_at",
    "metadata",
    "result",
    "transfer_id",
    "lot_id",
    "head_id",
)
_BONUS_COLUMNS = ("pos", "n", "funder", "account", "points", "transfer_id", "lot_id")


class BulkEarn(NamedTuple):
    """One purchase to book (a NamedTuple: a batch holds 100,000 of them)."""

    key: str  # idempotency key, unique within the batch
    digest: str  # idempotency.request_hash of the request
    member_id: uuid.UUID
    points: int  # the EARN's (the issuer's own points), >= 0; 0 books no EARN
    reference: str
    amount: Decimal
    occurred_at: datetime  # the lots are available `pending` later, expire `validity` after
    metadata: str  # the head transfer's metadata, a JSON object (with the draws, `campaigns`)
    result: str  # the key's stored result without `transfer_id` (added here), a JSON object
    # The other funders' points (a partner, or None: the operator), in `bonuses_for` order.
    bonuses: tuple[tuple[uuid.UUID | None, int], ...] = ()
    draws: tuple[CampaignDraw, ...] = ()

    @property
    def total(self) -> int:
        return max(self.points, 0) + sum(p for _, p in self.bonuses if p > 0)


class Repricer(Protocol):
    """Prices a row of the batch again (the caller's engine), for the one-by-one path."""

    @property
    def stateful(self) -> bool:
        """Whether a row's price depends on the member's earlier rows (campaigns in force)."""
        ...

    async def __call__(
        self,
        conn: AsyncConnection,
        pos: int,
        skipped: AbstractSet[int],
        booked: AbstractSet[int],
        refused: CampaignLimitReached | None,
    ) -> BulkEarn:
        """Row `pos` priced again with the member's earlier rows as they are booked (the rows
        at `skipped` book nothing: replays and reused keys; those at `booked` are in the
        database already, booked one by one); `refused` is the draw the booking just refused.
        The last answer for a row is the one booked."""
        ...


class StoredKey(NamedTuple):
    """What a key already in the table says about its first use."""

    operation: str
    request_hash: str
    transfer_id: str | None
    points: int


@dataclass
class BulkOutcome:
    """Per position in the input: booked now, replayed, or refused (key reused)."""

    booked: list[int] = field(default_factory=list)
    replayed: dict[int, StoredKey] = field(default_factory=dict)
    reused: dict[int, StoredKey] = field(default_factory=dict)
    transfers: int = 0  # EARN and BONUS transfers booked
    points: int = 0
    one_by_one: int = 0  # rows booked through the single earn


def same_request(stored: StoredKey, operation: str, digest: str) -> bool:
    return stored.operation == operation and stored.request_hash == digest


async def stored_keys(
    conn: AsyncConnection, client_id: str, keys: Sequence[str]
) -> dict[str, StoredKey]:
    """The keys of this client that already exist, with the request and result they stored."""
    if not keys:
        return {}
    rows = await conn.execute(
        text(
            "SELECT key, operation, request_hash, result->>'transfer_id' AS transfer_id,"
            " COALESCE((result->>'points')::bigint, 0) AS points"
            " FROM idempotency_keys WHERE client_id = :c AND key = ANY(:keys)"
        ),
        {"c": client_id, "keys": list(keys)},
    )
    return {
        r.key: StoredKey(r.operation, r.request_hash, r.transfer_id, int(r.points)) for r in rows
    }


@functools.lru_cache(maxsize=200_000)
def _accounts(member_id: uuid.UUID) -> tuple[WireUUID, WireUUID]:
    """The member's id and wallet id as asyncpg encodes fastest. Wallet ids are uuid5 hashes
    (slow in Python); a batch names far fewer members than rows, and a partner's next batch
    names the same ones."""
    return WireUUID(member_id.bytes), WireUUID(postings.wallet(member_id).bytes)


@functools.lru_cache(maxsize=1024)
def _funder(funder: uuid.UUID | None) -> tuple[WireUUID, WireUUID]:
    """A bonus funder as the ledger names it (the operator: OPERATOR_PARTY) and its issuance
    account."""
    party = OPERATOR_PARTY if funder is None else funder
    return WireUUID(party.bytes), WireUUID(account_id(AccountCode.PARTNER_ISSUANCE, party).bytes)


def uuid7s(n: int, *, after_ms: int = -1) -> list[WireUUID]:
    """n UUIDv7 ids, increasing (a 24-bit counter continues the millisecond timestamp, as RFC
    9562 allows), for the rows a batch inserts: cheaper here than `uuid7()` in the database.
    With `after_ms`, they start in a later millisecond than that (so after ids made in it)."""
    ms = max(time.time_ns() // 1_000_000, after_ms + 1)
    start = int.from_bytes(os.urandom(2), "big") & 0x7FF
    noise = os.urandom(8 * n)
    ids = []
    for i in range(n):
        k = start + i
        high = ((ms + (k >> 12)) << 16) | 0x7000 | (k & 0xFFF)
        low = int.from_bytes(noise[8 * i : 8 * i + 8], "big") & 0x3FFFFFFFFFFFFFFF
        ids.append(WireUUID(((high << 64) | low | 0x8000000000000000).to_bytes(16, "big")))
    return ids


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy's, in the same transaction (for COPY)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


_CREATE_STAGE = text(
    f"CREATE TEMPORARY TABLE {STAGE} ("
    " pos integer NOT NULL, key text NOT NULL, digest text NOT NULL, member_id uuid NOT NULL,"
    " wallet uuid NOT NULL, points bigint NOT NULL, total bigint NOT NULL,"
    " reference text NOT NULL, amount text NOT NULL, occurred_at timestamptz NOT NULL,"
    " metadata text NOT NULL, result text NOT NULL, transfer_id uuid NOT NULL,"
    " lot_id uuid NOT NULL, head_id uuid"
    ") ON COMMIT DROP"
)
_CREATE_BONUS_STAGE = text(
    f"CREATE TEMPORARY TABLE {BONUS_STAGE} ("
    " pos integer NOT NULL, n integer NOT NULL, funder uuid NOT NULL, account uuid NOT NULL,"
    " points bigint NOT NULL, transfer_id uuid NOT NULL, lot_id uuid NOT NULL"
    ") ON COMMIT DROP"
)

# Keys are claimed in one statement; the ones already there (committed before it started)
# come back with what they stored. A key committed by a concurrent batch while this one
# waited on it conflicts without being visible here: it is read again afterwards.
_CLAIM = text(
    f"""
    WITH claimed AS (
      INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)
      SELECT CAST(:client AS text), s.key, CAST(:op AS text), s.digest,
             CAST(s.result AS jsonb) || jsonb_build_object('transfer_id', s.head_id::text)
      FROM {STAGE} s ORDER BY s.key COLLATE "C"
      ON CONFLICT DO NOTHING
      RETURNING key
    )
    SELECT s.pos, s.key, k.operation, k.request_hash, k.result->>'transfer_id' AS transfer_id,
           COALESCE((k.result->>'points')::bigint, 0) AS points
    FROM {STAGE} s
    LEFT JOIN idempotency_keys k ON k.client_id = CAST(:client AS text) AND k.key = s.key
    WHERE NOT EXISTS (SELECT 1 FROM claimed c WHERE c.key = s.key)
    """
)

_LOCK_MEMBERS = text(
    "SELECT count(*) FROM (SELECT id FROM members WHERE id = ANY(:ids)"
    " ORDER BY id FOR NO KEY UPDATE) locked"
)

_OWED = text(
    "SELECT member_id, sum(remaining) AS owed FROM debts"
    " WHERE member_id = ANY(:ids) AND remaining > 0 GROUP BY member_id"
)

# Rows of members booked set-based after their one-by-one rows: new ids (later than those
# postings'), in the stage and in the results their keys stored.
_RENUMBER = text(
    f"""
    WITH fresh AS (
      SELECT * FROM unnest(CAST(:pos AS integer[]), CAST(:transfers AS uuid[]),
                           CAST(:lots AS uuid[]), CAST(:heads AS uuid[]))
        AS f(pos, transfer_id, lot_id, head_id)
    ), staged AS (
      UPDATE {STAGE} s SET transfer_id = fresh.transfer_id, lot_id = fresh.lot_id,
                           head_id = fresh.head_id
      FROM fresh WHERE s.pos = fresh.pos
      RETURNING s.key, s.head_id
    )
    UPDATE idempotency_keys k
    SET result = jsonb_set(k.result, '{{transfer_id}}', to_jsonb(staged.head_id::text))
    FROM staged WHERE k.client_id = :client AND k.key = staged.key
    """
)
_RENUMBER_BONUSES = text(
    f"UPDATE {BONUS_STAGE} b SET transfer_id = f.transfer_id, lot_id = f.lot_id"
    " FROM unnest(CAST(:pos AS integer[]), CAST(:n AS integer[]), CAST(:transfers AS uuid[]),"
    " CAST(:lots AS uuid[])) AS f(pos, n, transfer_id, lot_id)"
    " WHERE b.pos = f.pos AND b.n = f.n"
)

# The results of the rows booked one by one: what was booked (priced again, maybe), naming the
# transfers `ledger_book_earn` made.
_REWRITE_KEYS = text(
    "UPDATE idempotency_keys k SET result = CAST(b.result AS jsonb)"
    " FROM unnest(CAST(:keys AS text[]), CAST(:results AS text[])) AS b(key, result)"
    " WHERE k.client_id = :client AND k.key = b.key"
)

# Each member's campaign usage per campaign and period, added up for the chunk (in key order);
# returns the campaigns whose limits that leaves passed: the member's usage before the chunk (what the
# row holds now, less the chunk's points) above the least `slack` (limit minus the chunk's
# points up to a row, over its rows with a limit). NULL slack: no limit.
_USAGE = text(
    """
    WITH d AS (
      SELECT * FROM unnest(CAST(:campaigns AS uuid[]), CAST(:members AS uuid[]),
                           CAST(:periods AS date[]), CAST(:points AS bigint[]),
                           CAST(:slack AS bigint[]))
        AS d(campaign, member, period, points, slack)
    ), up AS (
      INSERT INTO campaign_member_usage AS u (campaign_id, member_id, period_start, points)
      SELECT campaign, member, period, points FROM d ORDER BY campaign, member, period
      ON CONFLICT (campaign_id, member_id, period_start)
      DO UPDATE SET points = u.points + EXCLUDED.points
      RETURNING u.campaign_id, u.member_id, u.period_start, u.points
    )
    SELECT DISTINCT up.campaign_id FROM up
    JOIN d ON d.campaign = up.campaign_id AND d.member = up.member_id AND d.period = up.period_start
    WHERE up.points - d.points > d.slack
    """
)

# The budget slots the chunk's budgeted draws come from (each member's, by its hash, as
# `ledger_book_earn` picks it), locked in (campaign, slot) order, with what each must give.
# A campaign without slots comes back with a NULL slot (its budget cannot cover anything).
_BUDGET_NEEDS = text(
    """
    WITH d AS (
      SELECT * FROM unnest(CAST(:campaigns AS uuid[]), CAST(:members AS uuid[]),
                           CAST(:points AS bigint[])) AS d(campaign, member, points)
    ), n AS (
      SELECT campaign_id, count(*) AS slots FROM campaign_budget_slots
      WHERE campaign_id IN (SELECT campaign FROM d) GROUP BY campaign_id
    ), need AS (
      SELECT d.campaign, (abs(hashtext(d.member::text)::bigint) % n.slots)::smallint AS slot,
             sum(d.points) AS points
      FROM d JOIN n ON n.campaign_id = d.campaign GROUP BY 1, 2
    ), locked AS (
      SELECT s.campaign_id, s.slot, s.remaining FROM campaign_budget_slots s
      WHERE (s.campaign_id, s.slot) IN (SELECT campaign, slot FROM need)
      ORDER BY s.campaign_id, s.slot FOR UPDATE
    )
    SELECT d.campaign, need.slot, need.points, locked.remaining
    FROM (SELECT DISTINCT campaign FROM d) d
    LEFT JOIN need ON need.campaign = d.campaign
    LEFT JOIN locked ON locked.campaign_id = need.campaign AND locked.slot = need.slot
    """
)
_BUDGET_TAKE = text(
    "UPDATE campaign_budget_slots s SET remaining = s.remaining - t.points"
    " FROM unnest(CAST(:campaigns AS uuid[]), CAST(:slots AS smallint[]),"
    " CAST(:points AS bigint[])) AS t(campaign, slot, points)"
    " WHERE s.campaign_id = t.campaign AND s.slot = t.slot"
)


def _book_sql(bonuses: bool) -> str:
    """Lots, transfers (EARNs and BONUSes), their outbox events and the purchase counts, in
    one statement. The transfers are inserted in row order (a row's EARN, then its bonuses);
    the outbox events come from the rows as inserted (created_at, amount as stored)."""
    earn_lots = """
      SELECT lot_id, member_id, CAST(:issuer AS uuid), transfer_id, points, points,
             occurred_at + make_interval(secs => :pending),
             occurred_at + make_interval(secs => :lifetime)
      FROM todo WHERE points > 0"""
    earns = """
      SELECT transfer_id, 'EARN' AS code, CAST(:issuance AS uuid) AS debit, wallet, points,
             member_id, CAST(:issuer AS uuid) AS partner, CAST(:client AS text) AS client,
             reference, CAST(amount AS numeric) AS amount, CAST(metadata AS jsonb) AS metadata,
             occurred_at, CAST(NULL AS uuid) AS parent_id, pos, 0 AS n
      FROM todo WHERE points > 0"""
    bonus_cte = bonus_lots = bonus_transfers = ""
    if bonuses:
        bonus_cte = f"""
    bon AS MATERIALIZED (
      SELECT b.pos, b.n, b.funder, b.account, b.points, b.transfer_id, b.lot_id, s.member_id,
             s.wallet, s.head_id, s.reference, s.amount, s.metadata, s.occurred_at
      FROM {BONUS_STAGE} b JOIN todo s ON s.pos = b.pos
    ),"""
        bonus_lots = """
      UNION ALL
      SELECT lot_id, member_id, funder, transfer_id, points, points,
             occurred_at + make_interval(secs => :pending),
             occurred_at + make_interval(secs => :lifetime)
      FROM bon"""
        bonus_transfers = """
      UNION ALL
      SELECT transfer_id, 'BONUS', account, wallet, points, member_id, funder,
             CAST(:client AS text),
             CASE WHEN transfer_id = head_id THEN reference END,
             CASE WHEN transfer_id = head_id THEN CAST(amount AS numeric) END,
             CASE WHEN transfer_id = head_id THEN CAST(metadata AS jsonb)
                  ELSE CAST('{}' AS jsonb) END,
             occurred_at, NULLIF(head_id, transfer_id), pos, n
      FROM bon"""
    return f"""
    WITH todo AS MATERIALIZED (
      SELECT pos, member_id, wallet, points, reference, amount, occurred_at, metadata,
             transfer_id, lot_id, head_id
      FROM {STAGE} WHERE total > 0
    ), counted AS (
      UPDATE members m SET purchases = m.purchases + c.n
      FROM (SELECT member_id, count(*) AS n FROM {STAGE} GROUP BY member_id) c
      WHERE m.id = c.member_id
    ),{bonus_cte}
    new_lots AS (
      INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,
                        available_at, expires_at){earn_lots}{bonus_lots}
    ), t AS (
      INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                             partner_id, client_id, reference, amount, metadata_, occurred_at,
                             created_at, parent_id)
      SELECT x.transfer_id, x.code, x.debit, x.wallet, x.points, x.member_id, x.partner,
             x.client, x.reference, x.amount, x.metadata, x.occurred_at, clock_timestamp(),
             x.parent_id
      FROM ({earns}{bonus_transfers}
      ) x ORDER BY x.pos, x.n
      RETURNING {TRANSFER_BOOKED_READS}
    )
    INSERT INTO outbox (id, {TRANSFER_BOOKED_COLUMNS})
    SELECT t.id, {TRANSFER_BOOKED_VALUES}
    FROM t
    """


_BOOK = text(_book_sql(bonuses=False))
_BOOK_WITH_BONUSES = text(_book_sql(bonuses=True))


class _Ids(NamedTuple):
    """A row's ids: its EARN transfer and lot, and each bonus's transfer and lot."""

    transfer: WireUUID
    lot: WireUUID
    bonuses: tuple[tuple[WireUUID, WireUUID], ...]

    def head(self, row: BulkEarn) -> WireUUID | None:
        if row.points > 0:
            return self.transfer
        return self.bonuses[0][0] if self.bonuses else None


def _paid(row: BulkEarn) -> list[tuple[uuid.UUID | None, int]]:
    return [(funder, points) for funder, points in row.bonuses if points > 0]


def _allocate(
    rows: Sequence[BulkEarn], positions: Sequence[int], *, after_ms: int = -1
) -> list[_Ids]:
    sizes = [2 + 2 * len(_paid(rows[p])) for p in positions]
    fresh = uuid7s(sum(sizes), after_ms=after_ms)
    out = []
    at = 0
    for size in sizes:
        chunk = fresh[at : at + size]
        at += size
        out.append(
            _Ids(chunk[0], chunk[1], tuple((chunk[k], chunk[k + 1]) for k in range(2, size, 2)))
        )
    return out


@dataclass
class _Run:
    """One bulk earn's state while it books."""

    conn: AsyncConnection
    issuer_id: uuid.UUID
    client_id: str
    pending: timedelta
    validity: timedelta
    rows: list[BulkEarn]  # as booked (a row priced again replaces its first price)
    ids: list[_Ids]
    reprice: Repricer | None
    outcome: BulkOutcome
    skipped: set[int] = field(default_factory=set)
    one_by_one: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)  # booked one by one already
    first_alone: dict[uuid.UUID, int] = field(default_factory=dict)  # member -> first such row
    dirty: set[uuid.UUID] = field(default_factory=set)  # members whose later rows need a price
    booked_ms: int = -1
    renumbered: set[int] = field(default_factory=set)
    by_member: dict[uuid.UUID, list[int]] = field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return self.reprice is not None and self.reprice.stateful

    def remaining(self) -> list[int]:
        """The rows still to book set-based, in order."""
        return [
            pos
            for pos in range(len(self.rows))
            if pos not in self.skipped and pos not in self.one_by_one
        ]

    async def alone(self, positions: Sequence[int]) -> None:
        """Book `positions` (and the later rows of members whose price changed) one by one."""
        queue = sorted(set(positions) - self.one_by_one)
        heapq.heapify(queue)
        self.one_by_one.update(queue)
        keys: list[str] = []
        results: list[str] = []
        while queue:
            pos = heapq.heappop(queue)
            member = self.rows[pos].member_id
            self.first_alone.setdefault(member, pos)
            first = self.rows[pos]
            row = first
            if member in self.dirty and self.reprice is not None:
                row = await self.reprice(self.conn, pos, self.skipped, self.done, None)
            for _ in range(MAX_REPRICES):
                try:
                    head = await self._book_one(row)
                except CampaignLimitReached as refused:
                    if self.reprice is None:
                        raise
                    row = await self.reprice(self.conn, pos, self.skipped, self.done, refused)
                    continue
                break
            else:
                raise RuntimeError("campaign limits kept changing while booking a batch row")
            self.rows[pos] = row
            self.done.add(pos)
            result = orjson.loads(row.result)
            result["transfer_id"] = None if head is None else str(head)
            keys.append(row.key)
            results.append(orjson.dumps(result).decode())
            if row != first and self.stateful and member not in self.dirty:
                # Its later rows were priced after this one's first price: price them again.
                self.dirty.add(member)
                later = [p for p in self.by_member[member] if p > pos and p not in self.skipped]
                for p in later:
                    if p not in self.one_by_one:
                        self.one_by_one.add(p)
                        heapq.heappush(queue, p)
        if keys:
            await self.conn.execute(
                _REWRITE_KEYS, {"keys": keys, "results": results, "client": self.client_id}
            )

    async def _book_one(self, row: BulkEarn) -> uuid.UUID | None:
        """`row` through the single earn; returns its head transfer (None: 0 points)."""
        earn = EarnToBook(
            member_id=row.member_id,
            issuer_id=self.issuer_id,
            client_id=self.client_id,
            transfer_id=new_id(),
            lot_id=new_id(),
            points=row.points,
            reference=row.reference,
            amount=row.amount,
            metadata=orjson.loads(row.metadata),
            occurred_at=row.occurred_at,
            available_at=row.occurred_at + self.pending,
            expires_at=row.occurred_at + self.pending + self.validity,
            bonuses=tuple(BonusToBook(funder_id=f, points=p) for f, p in _paid(row)),
            draws=row.draws,
            purchase=True,
        )
        # The key was claimed with the batch's (step 2): the function claims none.
        created = await book_earn_once(self.conn, earn, key=None)
        if isinstance(created, datetime):
            self.booked_ms = max(self.booked_ms, int(created.timestamp() * 1000))
        self.outcome.one_by_one += 1
        self.outcome.transfers += (earn.points > 0) + sum(1 for b in earn.bonuses if b.points > 0)
        self.outcome.points += earn.total_points
        return earn.head_id


async def bulk_earn(
    conn: AsyncConnection,
    *,
    issuer_id: uuid.UUID,
    client_id: str,
    operation: str,
    pending: timedelta,
    validity: timedelta,
    rows: Sequence[BulkEarn],
    reprice: Repricer | None = None,
) -> BulkOutcome:
    """Book earns of one issuer for many members in the caller's transaction.

    Keys must be unique within `rows`; `operation` is the name keys are stored under
    (`earnPoints`, so a batch row and a single earn with the same key and request replay
    each other). Each lot is available `pending` after its purchase and expires `validity`
    after that (exact durations, as `earn_points` adds them). `reprice` prices a row again
    when its draws are refused or its member's earlier rows changed (required when rows have
    draws). Positions in the outcome are indexes into `rows`.
    """
    outcome = BulkOutcome()
    if not rows:
        return outcome
    if len({r.key for r in rows}) != len(rows):
        raise ValueError("idempotency keys must be unique within a bulk earn")
    run = _Run(
        conn=conn,
        issuer_id=issuer_id,
        client_id=client_id,
        pending=pending,
        validity=validity,
        rows=list(rows),
        ids=_allocate(rows, range(len(rows))),
        reprice=reprice,
        outcome=outcome,
    )
    for pos, r in enumerate(rows):
        run.by_member.setdefault(r.member_id, []).append(pos)

    # 1. Stage.
    records = []
    bonus_records = []
    for pos, r in enumerate(rows):
        member, wallet = _accounts(r.member_id)
        ids = run.ids[pos]
        records.append(
            (
                pos,
                r.key,
                r.digest,
                member,
                wallet,
                r.points,
                r.total,
                r.reference,
                str(r.amount),  # as text: asyncpg's numeric encoder is slow; PG parses it
                r.occurred_at,
                r.metadata,  # JSON as text: the same for jsonb, without a codec call per row
                r.result,
                ids.transfer,
                ids.lot,
                ids.head(r),
            )
        )
        for n, ((funder, points), (transfer, lot)) in enumerate(
            zip(_paid(r), ids.bonuses, strict=True), start=1
        ):
            party, account = _funder(funder)
            bonus_records.append((pos, n, party, account, points, transfer, lot))
    await conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{STAGE}"))
    await conn.execute(_CREATE_STAGE)
    # Sorting and materializing a chunk's rows in memory, not in temporary files.
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))
    driver = await _driver(conn)
    await driver.copy_records_to_table(STAGE, records=records, columns=_STAGE_COLUMNS)
    if bonus_records:
        await conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{BONUS_STAGE}"))
        await conn.execute(_CREATE_BONUS_STAGE)
        await driver.copy_records_to_table(
            BONUS_STAGE, records=bonus_records, columns=_BONUS_COLUMNS
        )
    del records, bonus_records

    # 2. Claim the keys; the ones already taken are replays or reuses.
    unclaimed = (await conn.execute(_CLAIM, {"client": client_id, "op": operation})).all()
    if unclaimed:
        late = [u.key for u in unclaimed if u.operation is None]
        committed_since = await stored_keys(conn, client_id, late)
        for u in unclaimed:
            pos = int(u.pos)
            if u.operation is not None:
                previous = StoredKey(u.operation, u.request_hash, u.transfer_id, int(u.points))
            else:
                previous = committed_since[u.key]  # it conflicted: it is there now
            if same_request(previous, operation, rows[pos].digest):
                outcome.replayed[pos] = previous
            else:
                outcome.reused[pos] = previous
            run.skipped.add(pos)
        await _unstage(conn, sorted(run.skipped))

    # 3-4. The period lock, then the members in id order (every purchase is counted on its
    # member's row, as the single earn counts it, even one that earns nothing).
    members = sorted(
        {_accounts(r.member_id)[0] for pos, r in enumerate(rows) if pos not in run.skipped}
    )
    await events.begin(conn)
    if members:
        await conn.execute(_LOCK_MEMBERS, {"ids": members})

    # 5. One by one: indebted members' first rows (the single earn repays the debt from each
    #    new lot) and, when prices depend on earlier rows, the rows after a replayed one.
    owed: dict[uuid.UUID, int] = {}
    if members:
        owed = {r.member_id: int(r.owed) for r in await conn.execute(_OWED, {"ids": members})}
    alone = _repaying_rows(rows, run.skipped, owed)
    if run.stateful and run.skipped:
        for pos in sorted(run.skipped):
            member = rows[pos].member_id
            if member in run.dirty:
                continue
            later = [p for p in run.by_member[member] if p > pos and p not in run.skipped]
            if later:
                run.dirty.add(member)
                alone += later
    if alone:
        await run.alone(alone)
        await _unstage(conn, sorted(run.one_by_one))
        await _renumber_after(run)

    # 6. Everyone else, set-based; when a budget or a member limit cannot take the rows'
    #    draws, their members' rows one by one instead.
    while True:
        remaining = run.remaining()
        if not any(_limited(run.rows[p]) for p in remaining):
            booked = await _book_set_based(run, remaining)
            break
        savepoint = await conn.begin_nested()
        booked = await _book_set_based(run, remaining)
        if not booked.refused:
            await savepoint.commit()
            break
        await savepoint.rollback()
        # The members with draws on a campaign that refused: their rows one by one.
        concerned = {
            run.rows[p].member_id
            for p in remaining
            if any(d.points > 0 and d.campaign_id in booked.refused for d in run.rows[p].draws)
        }
        await run.alone([p for p in remaining if run.rows[p].member_id in concerned])
        await _unstage(conn, sorted(run.one_by_one))
        await _renumber_after(run)
    if booked.refused:
        raise AssertionError("rows without limited draws cannot be refused")
    outcome.transfers += booked.transfers
    outcome.points += booked.points
    outcome.booked = [pos for pos in range(len(rows)) if pos not in run.skipped]
    return outcome


def _limited(row: BulkEarn) -> bool:
    """Whether a row's draws can be refused (a budget, a member limit)."""
    return any(d.points > 0 and (d.budgeted or d.member_limit is not None) for d in row.draws)


async def _unstage(conn: AsyncConnection, positions: Sequence[int]) -> None:
    if positions:
        await conn.execute(text(f"DELETE FROM {STAGE} WHERE pos = ANY(:p)"), {"p": positions})


def _repaying_rows(
    rows: Sequence[BulkEarn], skipped: set[int], owed: dict[uuid.UUID, int]
) -> list[int]:
    """The positions to book one by one: each indebted member's first rows with points, in
    order, until their points cover the debt (an earn repays min(points, what is owed))."""
    left = dict(owed)
    positions = []
    for pos, r in enumerate(rows):
        if pos in skipped or left.get(r.member_id, 0) <= 0:
            continue
        total = r.total
        if total <= 0:
            continue
        positions.append(pos)
        left[r.member_id] -= total
    return positions


class _SetBased(NamedTuple):
    transfers: int = 0
    points: int = 0
    refused: frozenset[uuid.UUID] = frozenset()  # campaigns whose limit or budget refused


async def _book_set_based(run: _Run, positions: list[int]) -> _SetBased:
    """Book `positions` (every row still staged) set-based: draws, then transfers, lots,
    events and purchase counts, then the budget slots (last: their locks are held until the
    commit). Returns the transfers and points booked, or the campaigns whose member limit or
    budget cannot take the draws (the caller rolls back to its savepoint)."""
    conn = run.conn
    rows = run.rows
    usage: dict[tuple[uuid.UUID, uuid.UUID, date], list[Any]] = {}  # key -> [points, slack]
    budget: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for pos in positions:
        r = rows[pos]
        for d in r.draws:
            if d.points <= 0:
                continue
            period = d.counted_period
            if period is not None:
                key = (d.campaign_id, r.member_id, period)
                entry = usage.get(key)
                if entry is None:
                    entry = usage[key] = [0, None]
                entry[0] += d.points
                if d.member_limit is not None:
                    slack = d.member_limit - entry[0]
                    entry[1] = slack if entry[1] is None else min(entry[1], slack)
            if d.budgeted:
                bkey = (d.campaign_id, r.member_id)
                budget[bkey] = budget.get(bkey, 0) + d.points
    if usage:
        keys = list(usage)
        passed = await conn.scalars(
            _USAGE,
            {
                "campaigns": [k[0] for k in keys],
                "members": [k[1] for k in keys],
                "periods": [k[2] for k in keys],
                "points": [usage[k][0] for k in keys],
                "slack": [usage[k][1] for k in keys],
            },
        )
        over = frozenset(passed)
        if over:
            return _SetBased(refused=over)

    transfer_ids: list[WireUUID] = []
    points = 0
    for pos in positions:
        r, ids = rows[pos], run.ids[pos]
        if r.points > 0:
            transfer_ids.append(ids.transfer)
        transfer_ids.extend(t for t, _ in ids.bonuses)
        points += r.total
    if positions:
        await conn.execute(
            _BOOK_WITH_BONUSES if any(run.ids[p].bonuses for p in positions) else _BOOK,
            {
                "issuer": run.issuer_id,
                "client": run.client_id,
                "issuance": account_id(AccountCode.PARTNER_ISSUANCE, run.issuer_id),
                "pending": run.pending.total_seconds(),
                "lifetime": (run.pending + run.validity).total_seconds(),
            },
        )
    await events.booked(conn, transfer_ids, events_written=True)  # written by _BOOK

    if budget:
        bkeys = list(budget)
        needs = (
            await conn.execute(
                _BUDGET_NEEDS,
                {
                    "campaigns": [k[0] for k in bkeys],
                    "members": [k[1] for k in bkeys],
                    "points": [budget[k] for k in bkeys],
                },
            )
        ).all()
        short = frozenset(
            n.campaign
            for n in needs
            if n.slot is None or n.remaining is None or n.remaining < n.points
        )
        if short:
            return _SetBased(refused=short)
        await conn.execute(
            _BUDGET_TAKE,
            {
                "campaigns": [n.campaign for n in needs],
                "slots": [n.slot for n in needs],
                "points": [n.points for n in needs],
            },
        )
    return _SetBased(len(transfer_ids), points)


async def _renumber_after(run: _Run) -> bool:
    """Fresh ids for the set-based rows of members booked one by one that come after their
    first one-by-one row (see step 5). True when any were renumbered."""
    later = [
        pos
        for pos in run.remaining()
        if run.rows[pos].total > 0
        and pos not in run.renumbered
        and run.first_alone.get(run.rows[pos].member_id, len(run.rows)) < pos
    ]
    if not later:
        return False
    # new_id() is monotonic within the process: one more is later than every id the one-by-one
    # postings were given, and (on one clock) than the uuid7() ids of the repayments
    # ledger_book_earn made before returning. The fresh ids start in a later millisecond than
    # that, and than the last posting's created_at in the database's clock plus one (a guard
    # for a database clock ahead of this process's).
    floor_ms = max(new_id().int >> 80, run.booked_ms + 1)
    fresh = _allocate(run.rows, later, after_ms=floor_ms)
    for pos, ids in zip(later, fresh, strict=True):
        run.ids[pos] = ids
    run.renumbered.update(later)
    await run.conn.execute(
        _RENUMBER,
        {
            "pos": later,
            "transfers": [run.ids[p].transfer for p in later],
            "lots": [run.ids[p].lot for p in later],
            "heads": [run.ids[p].head(run.rows[p]) for p in later],
            "client": run.client_id,
        },
    )
    bonus_rows = [(p, n, t, lot) for p in later for n, (t, lot) in enumerate(run.ids[p].bonuses, 1)]
    if bonus_rows:
        await run.conn.execute(
            _RENUMBER_BONUSES,
            {
                "pos": [b[0] for b in bonus_rows],
                "n": [b[1] for b in bonus_rows],
                "transfers": [b[2] for b in bonus_rows],
                "lots": [b[3] for b in bonus_rows],
            },
        )
    return True
