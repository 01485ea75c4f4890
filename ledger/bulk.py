"""Set-based earns: many purchases of one issuer booked in one transaction.

Each row is still a full posting, exactly as `ledger_book_earn` (the single earn, `earn_sql`)
books it, and parity-tested against it: one EARN transfer from
the issuer's issuance account to the member's wallet, one lot, the idempotency key stored
with its result, and the transfers announced to `events.booked` (settlement books their
obligations). Only the number of statements changes: the rows are staged with COPY into a
temporary table, then a handful of INSERT ... SELECT statements book them all.

Order of work, the same as a single earn's (key, period lock, member lock, writes):

1. stage the rows (COPY; transfer and lot ids are UUIDv7 generated here, in order);
2. claim every key at once (INSERT ... ON CONFLICT DO NOTHING, in key order), storing the
   final result with it; a key that already exists is a replay when it was used for the same
   request (reported with its original transfer), else the row is IDEMPOTENCY_KEY_REUSED;
3. `events.begin` (settlement's shared period lock);
4. lock the members involved, in id order (`FOR NO KEY UPDATE`, as `postings.posting` does);
5. members with outstanding debts (rare): their first rows, in order, go one by one through
   the single earn, `ledger_book_earn` (`earn_once`), which repays debts from the new lot
   first, until the debt is cleared (usually one row). Their keys are already claimed (step
   2), so the function is called without one; ids are made just before each call, as
   `earnPoints` makes them, and the keys' stored results are then pointed at them. The
   member's later rows have no debt left to repay: they are booked with everyone's in step 6,
   under fresh ids made after the one-by-one postings', so the member's transfers and lots
   stay in the order of the rows, as single earns would leave them;
6. every other row: transfers and lots in one statement, then `events.booked`.

Booking every row of an indebted member one by one held that member's lock for seconds on a
5,000-row batch (every other partner's hold or redemption on the member waited); now it is
held for the few rows that repay the debt plus the set-based statements.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from asyncpg.pgproto.pgproto import UUID as WireUUID  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.ids import new_id
from ledger import events, postings
from ledger.accounts import AccountCode, account_id
from ledger.earn_once import EarnToBook, book_earn_once

STAGE = "bulk_earn_stage"
_STAGE_COLUMNS = (
    "pos",
    "key",
    "digest",
    "member_id",
    "wallet",
    "points",
    "reference",
    "amount",
    "occurred_at",
    "metadata",
    "result",
    "transfer_id",
    "lot_id",
)


class BulkEarn(NamedTuple):
    """One purchase to book (a NamedTuple: a batch holds 100,000 of them)."""

    key: str  # idempotency key, unique within the batch
    digest: str  # idempotency.request_hash of the request
    member_id: uuid.UUID
    points: int  # >= 0; 0 stores the key and its result but books no transfer
    reference: str
    amount: Decimal
    occurred_at: datetime  # the lot is available `pending` later, expires `validity` after
    metadata: str  # the transfer's metadata, a JSON object
    result: str  # the key's stored result without `transfer_id` (added here), a JSON object


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
    transfers: int = 0
    points: int = 0


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
    " wallet uuid NOT NULL, points bigint NOT NULL, reference text NOT NULL,"
    " amount text NOT NULL, occurred_at timestamptz NOT NULL, metadata text NOT NULL,"
    " result text NOT NULL, transfer_id uuid NOT NULL, lot_id uuid NOT NULL"
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
             CAST(s.result AS jsonb) || jsonb_build_object('transfer_id',
               CASE WHEN s.points > 0 THEN s.transfer_id::text END)
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

# Rows of indebted members booked set-based after their one-by-one rows: new ids (later than
# those postings'), in the stage and in the results their keys stored.
_RENUMBER = text(
    f"""
    WITH fresh AS (
      SELECT * FROM unnest(CAST(:pos AS integer[]), CAST(:transfers AS uuid[]),
                           CAST(:lots AS uuid[])) AS f(pos, transfer_id, lot_id)
    ), staged AS (
      UPDATE {STAGE} s SET transfer_id = fresh.transfer_id, lot_id = fresh.lot_id
      FROM fresh WHERE s.pos = fresh.pos
      RETURNING s.key, s.transfer_id
    )
    UPDATE idempotency_keys k
    SET result = jsonb_set(k.result, '{{transfer_id}}', to_jsonb(staged.transfer_id::text))
    FROM staged WHERE k.client_id = :client AND k.key = staged.key
    """
)

# The results of the rows booked one by one name the transfers `ledger_book_earn` made.
_POINT_KEYS = text(
    "UPDATE idempotency_keys k SET result = jsonb_set(k.result, '{transfer_id}',"
    " to_jsonb(b.transfer_id)) FROM unnest(CAST(:keys AS text[]), CAST(:transfers AS text[]))"
    " AS b(key, transfer_id) WHERE k.client_id = :client AND k.key = b.key"
)

_BOOK = text(
    f"""
    WITH todo AS MATERIALIZED (
      SELECT * FROM {STAGE} WHERE points > 0
    ), new_lots AS (
      INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,
                        available_at, expires_at)
      SELECT lot_id, member_id, CAST(:issuer AS uuid), transfer_id, points, points,
             occurred_at + make_interval(secs => :pending),
             occurred_at + make_interval(secs => :lifetime)
      FROM todo
    )
    INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                           partner_id, client_id, reference, amount, metadata_, occurred_at,
                           created_at)
    SELECT transfer_id, CAST(:code AS text), CAST(:issuance AS uuid), wallet, points, member_id,
           CAST(:issuer AS uuid), CAST(:client AS text), reference, CAST(amount AS numeric),
           CAST(metadata AS jsonb), occurred_at, clock_timestamp()
    FROM todo ORDER BY pos
    """
)


async def bulk_earn(
    conn: AsyncConnection,
    *,
    issuer_id: uuid.UUID,
    client_id: str,
    operation: str,
    pending: timedelta,
    validity: timedelta,
    rows: Sequence[BulkEarn],
) -> BulkOutcome:
    """Book earns of one issuer for many members in the caller's transaction.

    Keys must be unique within `rows`; `operation` is the name keys are stored under
    (`earnPoints`, so a batch row and a single earn with the same key and request replay
    each other). Each lot is available `pending` after its purchase and expires `validity`
    after that (exact durations, as `earn_points` adds them). Positions in the outcome are
    indexes into `rows`.
    """
    outcome = BulkOutcome()
    if not rows:
        return outcome
    if len({r.key for r in rows}) != len(rows):
        raise ValueError("idempotency keys must be unique within a bulk earn")

    # 1. Stage.
    ids = uuid7s(2 * len(rows))
    records = []
    for pos, r in enumerate(rows):
        member, wallet = _accounts(r.member_id)
        records.append(
            (
                pos,
                r.key,
                r.digest,
                member,
                wallet,
                r.points,
                r.reference,
                str(r.amount),  # as text: asyncpg's numeric encoder is slow; PG parses it
                r.occurred_at,
                r.metadata,  # JSON as text: the same for jsonb, without a codec call per row
                r.result,
                ids[2 * pos],
                ids[2 * pos + 1],
            )
        )
    await conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{STAGE}"))
    await conn.execute(_CREATE_STAGE)
    # Sorting and materializing a chunk's rows in memory, not in temporary files.
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))
    driver = await _driver(conn)
    await driver.copy_records_to_table(STAGE, records=records, columns=_STAGE_COLUMNS)
    del records

    # 2. Claim the keys; the ones already taken are replays or reuses.
    unclaimed = (await conn.execute(_CLAIM, {"client": client_id, "op": operation})).all()
    skipped: set[int] = set()
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
            skipped.add(pos)
        await conn.execute(text(f"DELETE FROM {STAGE} WHERE pos = ANY(:p)"), {"p": sorted(skipped)})

    # 3-4. The period lock, then the members in id order.
    members = sorted(
        {
            _accounts(r.member_id)[0]
            for pos, r in enumerate(rows)
            if r.points > 0 and pos not in skipped
        }
    )
    await events.begin(conn)
    if members:
        await conn.execute(_LOCK_MEMBERS, {"ids": members})

    # 5. Members with debts: their first rows one by one (the single earn, ledger_book_earn,
    #    repays the debt from each new lot) until the debt is cleared; their later rows join
    #    step 6.
    owed: dict[uuid.UUID, int] = {}
    if members:
        owed = {r.member_id: int(r.owed) for r in await conn.execute(_OWED, {"ids": members})}
    one_by_one = _repaying_rows(rows, skipped, owed)
    if one_by_one:
        booked_ms = await _book_one_by_one(
            conn, issuer_id, client_id, pending, validity, rows, one_by_one, outcome
        )
        await conn.execute(text(f"DELETE FROM {STAGE} WHERE pos = ANY(:p)"), {"p": one_by_one})
        ids = await _renumber_after(conn, client_id, rows, skipped, set(one_by_one), ids, booked_ms)

    # 6. Everyone else: transfers and lots in one statement, then the subscribers.
    transfer_ids: list[uuid.UUID] = []
    done = set(one_by_one)
    for pos, r in enumerate(rows):
        if pos in skipped:
            continue
        outcome.booked.append(pos)
        if r.points > 0 and pos not in done:
            transfer_ids.append(ids[2 * pos])
            outcome.points += r.points
    if transfer_ids:
        await conn.execute(
            _BOOK,
            {
                "issuer": issuer_id,
                "client": client_id,
                "code": postings.TransferCode.EARN,
                "issuance": account_id(AccountCode.PARTNER_ISSUANCE, issuer_id),
                "pending": pending.total_seconds(),
                "lifetime": (pending + validity).total_seconds(),
            },
        )
    await events.booked(conn, transfer_ids)
    outcome.transfers += len(transfer_ids)
    return outcome


def _repaying_rows(
    rows: Sequence[BulkEarn], skipped: set[int], owed: dict[uuid.UUID, int]
) -> list[int]:
    """The positions to book one by one: each indebted member's first rows with points, in
    order, until their points cover the debt (an earn repays min(points, what is owed))."""
    left = dict(owed)
    positions = []
    for pos, r in enumerate(rows):
        if pos in skipped or r.points <= 0 or left.get(r.member_id, 0) <= 0:
            continue
        positions.append(pos)
        left[r.member_id] -= r.points
    return positions


async def _book_one_by_one(
    conn: AsyncConnection,
    issuer_id: uuid.UUID,
    client_id: str,
    pending: timedelta,
    validity: timedelta,
    rows: Sequence[BulkEarn],
    positions: Sequence[int],
    outcome: BulkOutcome,
) -> int:
    """Book `positions` through the single earn; returns the last one's created_at as a
    millisecond of the database's clock."""
    booked_ids: list[str] = []
    booked_ms = -1
    for pos in positions:
        r = rows[pos]
        earn = EarnToBook(
            member_id=r.member_id,
            issuer_id=issuer_id,
            client_id=client_id,
            transfer_id=new_id(),
            lot_id=new_id(),
            points=r.points,
            reference=r.reference,
            amount=r.amount,
            metadata=orjson.loads(r.metadata),
            occurred_at=r.occurred_at,
            available_at=r.occurred_at + pending,
            expires_at=r.occurred_at + pending + validity,
        )
        # The key was claimed with the batch's (step 2): the function claims none.
        created = await book_earn_once(conn, earn, key=None)
        if not isinstance(created, datetime):  # no key to be taken, and points > 0
            raise RuntimeError(f"the single earn booked nothing for row {pos}")
        booked_ms = max(booked_ms, int(created.timestamp() * 1000))
        booked_ids.append(str(earn.transfer_id))
        outcome.transfers += 1
        outcome.points += r.points
    await conn.execute(
        _POINT_KEYS,
        {"keys": [rows[p].key for p in positions], "transfers": booked_ids, "client": client_id},
    )
    return booked_ms


async def _renumber_after(
    conn: AsyncConnection,
    client_id: str,
    rows: Sequence[BulkEarn],
    skipped: set[int],
    done: set[int],
    ids: list[WireUUID],
    booked_ms: int,
) -> list[WireUUID]:
    """Fresh ids for the later rows of the members just booked one by one (see step 5)."""
    members = {rows[p].member_id for p in done}
    later = [
        pos
        for pos, r in enumerate(rows)
        if r.member_id in members and r.points > 0 and pos not in skipped and pos not in done
    ]
    if not later:
        return ids
    # new_id() is monotonic within the process: one more is later than every EARN id the
    # one-by-one postings were given, and (on one clock) than the uuid7() ids of the repayments
    # ledger_book_earn made before returning. The fresh ids start in a later millisecond than
    # that, and than the last EARN's created_at in the database's clock plus one (a guard for
    # a database clock ahead of this process's).
    floor_ms = max(new_id().int >> 80, booked_ms + 1)
    fresh = uuid7s(2 * len(later), after_ms=floor_ms)
    renumbered = list(ids)
    for n, pos in enumerate(later):
        renumbered[2 * pos], renumbered[2 * pos + 1] = fresh[2 * n], fresh[2 * n + 1]
    await conn.execute(
        _RENUMBER,
        {
            "pos": later,
            "transfers": [renumbered[2 * p] for p in later],
            "lots": [renumbered[2 * p + 1] for p in later],
            "client": client_id,
        },
    )
    return renumbered
