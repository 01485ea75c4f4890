"""Set-based earns: many purchases of one issuer booked in one transaction.

Each row is still a full posting, exactly as `postings.book_earn` books it: one EARN transfer from
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
5. members with outstanding debts (rare) get their rows booked one by one through
   `postings.book_earn`, which repays debts from the new lot first; their stored results are
   then pointed at the transfers `postings.book_earn` booked;
6. every other row: transfers and lots in one statement, then `events.booked`.
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

from ledger import events, postings
from ledger.accounts import AccountCode, account_id

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


def uuid7s(n: int) -> list[WireUUID]:
    """n UUIDv7 ids, increasing (a 24-bit counter continues the millisecond timestamp, as RFC
    9562 allows), for the rows a batch inserts: cheaper here than `uuid7()` in the database."""
    ms = time.time_ns() // 1_000_000
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

_DEBTORS = text(
    "SELECT DISTINCT member_id FROM debts WHERE member_id = ANY(:ids) AND remaining > 0"
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

    # 5. Members with debts: booked one by one by postings.book_earn, which repays them first.
    debtors: set[uuid.UUID] = set()
    if members:
        debtors = set((await conn.scalars(_DEBTORS, {"ids": members})).all())
    if debtors:
        await _book_debtors(
            conn, issuer_id, client_id, pending, validity, rows, skipped, debtors, outcome
        )
        await conn.execute(
            text(f"DELETE FROM {STAGE} WHERE member_id = ANY(:m)"), {"m": list(debtors)}
        )

    # 6. Everyone else: transfers and lots in one statement, then the subscribers.
    transfer_ids: list[uuid.UUID] = []
    for pos, r in enumerate(rows):
        if pos in skipped:
            continue
        outcome.booked.append(pos)
        if r.points > 0 and r.member_id not in debtors:
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


async def _book_debtors(
    conn: AsyncConnection,
    issuer_id: uuid.UUID,
    client_id: str,
    pending: timedelta,
    validity: timedelta,
    rows: Sequence[BulkEarn],
    skipped: set[int],
    debtors: set[uuid.UUID],
    outcome: BulkOutcome,
) -> None:
    for pos, r in enumerate(rows):
        if pos in skipped or r.member_id not in debtors or r.points <= 0:
            continue
        booked = await postings.book_earn(
            conn,
            member_id=r.member_id,
            issuer_id=issuer_id,
            client_id=client_id,
            points=r.points,
            reference=r.reference,
            amount=r.amount,
            occurred_at=r.occurred_at,
            available_at=r.occurred_at + pending,
            expires_at=r.occurred_at + pending + validity,
            metadata=orjson.loads(r.metadata),
        )
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET result = jsonb_set(result, '{transfer_id}',"
                " to_jsonb(CAST(:t AS text))) WHERE client_id = :c AND key = :k"
            ),
            {"t": str(booked.id), "c": client_id, "k": r.key},
        )
        outcome.transfers += 1
        outcome.points += r.points
