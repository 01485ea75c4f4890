"""Every write of the points currency, in Python. The ledger's other writers follow the same
rules: `bulk` (set-based earns) and the single earn and redemption as SQL functions
(`earn_sql`, `redeem_sql`); nothing outside the ledger inserts transfers or changes lots.

Each posting runs in the caller's transaction and starts by locking the member's row
(`FOR NO KEY UPDATE`, which does not conflict with the KEY SHARE locks that foreign keys
take), so one member's balance changes one at a time while members and partners proceed in
parallel. No partner- or operator-level row is updated: their totals are derived.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from db.ids import new_id
from ledger import events
from ledger.accounts import AccountCode, account_id
from ledger.errors import DomainError, ErrorCode
from ledger.queries import TRANSFER_COLUMNS, TransferRecord


class TransferCode:
    EARN = "EARN"
    REDEEM = "REDEEM"
    REVERSAL = "REVERSAL"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"
    DEBT = "DEBT"  # the part of an earn reversal the member could not cover
    DEBT_REPAYMENT = "DEBT_REPAYMENT"
    BREAKAGE_REVERSAL = "BREAKAGE_REVERSAL"  # reversing an earn whose points had expired


@dataclass
class Posting:
    """The transfers one posting transaction booked, announced to subscribers at the end."""

    conn: AsyncConnection
    member_id: uuid.UUID | None
    booked: list[uuid.UUID] = field(default_factory=list)

    async def transfer(
        self,
        code: str,
        *,
        debit: uuid.UUID,
        credit: uuid.UUID,
        points: int,
        partner_id: uuid.UUID | None,
        client_id: str | None,
        reference: str | None = None,
        reversal_of: uuid.UUID | None = None,
        amount: Decimal | None = None,
        occurred_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        transfer_id = new_id()
        await self.conn.execute(
            _INSERT_TRANSFER,
            {
                "id": transfer_id,
                "code": code,
                "debit": debit,
                "credit": credit,
                "points": points,
                "member": self.member_id,
                "partner": partner_id,
                "client": client_id,
                "reference": reference,
                "reversal_of": reversal_of,
                "amount": amount,
                "occurred_at": occurred_at,
                "metadata": metadata or {},
            },
        )
        self.booked.append(transfer_id)
        return transfer_id


_INSERT_TRANSFER = text(
    "INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,"
    " partner_id, client_id, reference, reversal_of_id, amount, metadata_, occurred_at,"
    " created_at) VALUES (:id, :code, :debit, :credit, :points, :member, :partner, :client,"
    " :reference, :reversal_of, :amount, :metadata, COALESCE(:occurred_at, clock_timestamp()),"
    " clock_timestamp())"
).bindparams(bindparam("metadata", type_=JSONB))


@asynccontextmanager
async def posting(conn: AsyncConnection, member_id: uuid.UUID | None) -> AsyncIterator[Posting]:
    """Lock the member, collect what is booked, and announce it before the transaction ends."""
    await events.begin(conn)
    if member_id is not None:
        locked = await conn.scalar(
            text("SELECT id FROM members WHERE id = :m FOR NO KEY UPDATE"), {"m": member_id}
        )
        if locked is None:
            raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    current = Posting(conn, member_id)
    yield current
    await events.booked(conn, current.booked)


def wallet(member_id: uuid.UUID) -> uuid.UUID:
    return account_id(AccountCode.MEMBER_WALLET, member_id)


async def spendable(
    conn: AsyncConnection, member_id: uuid.UUID, *, exclude_hold: uuid.UUID | None = None
) -> int:
    """Available points minus active holds (the member must be locked by the caller)."""
    value = await conn.scalar(
        text(
            "SELECT COALESCE((SELECT sum(remaining) FROM lots WHERE member_id = :m"
            "  AND remaining > 0 AND available_at <= now() AND expires_at > now()), 0)"
            " - COALESCE((SELECT sum(points) FROM holds WHERE member_id = :m"
            "  AND status = 'ACTIVE' AND expires_at > now()"
            "  AND id IS DISTINCT FROM CAST(:h AS uuid)), 0)"
        ),
        {"m": member_id, "h": exclude_hold},
    )
    return int(value or 0)


_CONSUME = text(
    """
    WITH candidates AS (
      SELECT id, issuer_partner_id, remaining,
             sum(remaining) OVER (ORDER BY expires_at, id) AS running
      FROM lots
      WHERE member_id = :m AND remaining > 0 AND expires_at > now()
        AND (NOT :only_available OR available_at <= now())
        AND id IS DISTINCT FROM CAST(:skip_lot AS uuid)
    ), take AS (
      SELECT id, issuer_partner_id, LEAST(remaining, :points - (running - remaining)) AS pts
      FROM candidates WHERE running - remaining < :points
    ), spent AS (
      UPDATE lots SET remaining = lots.remaining - take.pts FROM take WHERE lots.id = take.id
      RETURNING lots.id
    )
    INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                              redeemer_partner_id, points)
    SELECT uuid7(), :t, take.id, :kind, take.issuer_partner_id, :redeemer, take.pts
    FROM take JOIN spent ON spent.id = take.id
    RETURNING points
    """
)


async def _consume(
    conn: AsyncConnection,
    transfer_id: uuid.UUID,
    member_id: uuid.UUID,
    points: int,
    *,
    kind: str,
    redeemer: uuid.UUID | None,
    only_available: bool,
    skip_lot: uuid.UUID | None = None,
) -> int:
    """Take points from the member's lots, earliest expiry first, recording each consumption."""
    if points <= 0:
        return 0
    rows = await conn.execute(
        _CONSUME,
        {
            "m": member_id,
            "t": transfer_id,
            "points": points,
            "kind": kind,
            "redeemer": redeemer,
            "only_available": only_available,
            "skip_lot": skip_lot,
        },
    )
    return sum(int(r.points) for r in rows)


_INSERT_EARN = text(
    "WITH t AS (INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points,"
    "  member_id, partner_id, client_id, reference, amount, metadata_, occurred_at, created_at)"
    "  VALUES (:id, 'EARN', :debit, :credit, :points, :member, :issuer, :client, :reference,"
    "  :amount, :metadata, COALESCE(:occurred_at, clock_timestamp()), clock_timestamp())"
    f"  RETURNING {TRANSFER_COLUMNS}),"
    " lot AS (INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,"
    "  available_at, expires_at) SELECT :lot, :member, :issuer, t.id, :points, :points,"
    "  :available_at, :expires_at FROM t)"
    " SELECT * FROM t"
).bindparams(bindparam("metadata", type_=JSONB))


async def book_earn(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    issuer_id: uuid.UUID,
    client_id: str | None,
    points: int,
    reference: str | None,
    amount: Decimal | None,
    occurred_at: datetime | None,
    available_at: datetime,
    expires_at: datetime,
    metadata: dict[str, Any] | None = None,
) -> TransferRecord:
    """Book an earn and its lot (one statement), then repay the member's debts from the new
    lot first. Returns the transfer as stored."""
    async with posting(conn, member_id) as post:
        lot_id = new_id()
        row = (
            await conn.execute(
                _INSERT_EARN,
                {
                    "id": new_id(),
                    "debit": account_id(AccountCode.PARTNER_ISSUANCE, issuer_id),
                    "credit": wallet(member_id),
                    "points": points,
                    "member": member_id,
                    "issuer": issuer_id,
                    "client": client_id,
                    "reference": reference,
                    "amount": amount,
                    "metadata": metadata or {},
                    "occurred_at": occurred_at,
                    "lot": lot_id,
                    "available_at": available_at,
                    "expires_at": expires_at,
                },
            )
        ).one()
        booked = TransferRecord(**row._mapping)
        post.booked.append(booked.id)
        await _repay_debts(post, member_id, issuer_id, lot_id, points, client_id)
    return booked


async def _repay_debts(
    post: Posting,
    member_id: uuid.UUID,
    issuer_id: uuid.UUID,
    lot_id: uuid.UUID,
    points: int,
    client_id: str | None,
) -> None:
    debts = (
        await post.conn.execute(
            text(
                "SELECT id, creditor_partner_id, remaining FROM debts"
                " WHERE member_id = :m AND remaining > 0 ORDER BY created_at, id"
            ),
            {"m": member_id},
        )
    ).all()
    left = points
    for debt in debts:
        repay = min(left, int(debt.remaining))
        if repay <= 0:
            break
        left -= repay
        repayment = await post.transfer(
            TransferCode.DEBT_REPAYMENT,
            debit=wallet(member_id),
            credit=account_id(AccountCode.MEMBER_DEBT, member_id),
            points=repay,
            partner_id=debt.creditor_partner_id,
            client_id=client_id,
            metadata={"debt_id": str(debt.id)},
        )
        await post.conn.execute(
            text("UPDATE lots SET remaining = remaining - :p WHERE id = :lot"),
            {"p": repay, "lot": lot_id},
        )
        await post.conn.execute(
            text("UPDATE debts SET remaining = remaining - :p WHERE id = :d"),
            {"p": repay, "d": debt.id},
        )
        await post.conn.execute(
            text(
                "INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
                " redeemer_partner_id, points)"
                " VALUES (uuid7(), :t, :lot, 'DEBT_REPAYMENT', :issuer, :creditor, :p)"
            ),
            {
                "t": repayment,
                "lot": lot_id,
                "issuer": issuer_id,
                "creditor": debt.creditor_partner_id,
                "p": repay,
            },
        )


async def redeem(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    redeemer_id: uuid.UUID,
    client_id: str | None,
    points: int,
    reference: str | None,
    metadata: dict[str, Any] | None = None,
    hold_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Burn available points at a partner, consuming lots earliest-expiry first."""
    async with posting(conn, member_id) as post:
        available = await spendable(conn, member_id, exclude_hold=hold_id)
        if available < points:
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS,
                f"the member has {max(available, 0)} points available, {points} requested",
                ["points"],
            )
        transfer_id = await post.transfer(
            TransferCode.REDEEM,
            debit=wallet(member_id),
            credit=account_id(AccountCode.PARTNER_REDEMPTION, redeemer_id),
            points=points,
            partner_id=redeemer_id,
            client_id=client_id,
            reference=reference,
            metadata=metadata,
        )
        taken = await _consume(
            conn,
            transfer_id,
            member_id,
            points,
            kind="REDEEM",
            redeemer=redeemer_id,
            only_available=True,
        )
        if taken != points:  # the balance check above makes this unreachable
            raise RuntimeError(f"redemption consumed {taken} of {points} points")
    return transfer_id


@dataclass(frozen=True)
class OriginalTransfer:
    id: uuid.UUID
    code: str
    points: int
    member_id: uuid.UUID
    partner_id: uuid.UUID


async def reverse(
    conn: AsyncConnection,
    original: OriginalTransfer,
    *,
    points: int | None,
    client_id: str | None,
    reason: str | None,
) -> uuid.UUID:
    """Reverse all or part of an earn or a redemption with one REVERSAL transfer."""
    if original.code not in (TransferCode.EARN, TransferCode.REDEEM):
        raise DomainError(
            ErrorCode.NOT_REVERSIBLE,
            f"a {original.code} transfer cannot be reversed",
            ["transferId"],
        )
    async with posting(conn, original.member_id) as post:
        reversed_so_far = int(
            await conn.scalar(
                text(
                    "SELECT COALESCE(sum(points), 0) FROM transfers"
                    " WHERE reversal_of_id = :t AND code = 'REVERSAL'"
                ),
                {"t": original.id},
            )
            or 0
        )
        left = original.points - reversed_so_far
        if left <= 0:
            raise DomainError(
                ErrorCode.ALREADY_REVERSED,
                "this transfer is already fully reversed",
                ["transferId"],
            )
        wanted = left if points is None else points
        if wanted <= 0 or wanted > left:
            raise DomainError(
                ErrorCode.INVALID_AMOUNT,
                f"points must be between 1 and {left}, the part not yet reversed",
                ["points"],
            )
        metadata = {"reason": reason} if reason else {}
        if original.code == TransferCode.EARN:
            return await _reverse_earn(post, original, wanted, client_id, metadata)
        return await _reverse_redemption(post, original, wanted, client_id, metadata)


async def _reverse_earn(
    post: Posting,
    original: OriginalTransfer,
    wanted: int,
    client_id: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    conn, member_id, issuer = post.conn, original.member_id, original.partner_id
    lot = (
        await conn.execute(
            text(
                "SELECT l.id, l.remaining,"
                " (l.available_at <= now() AND l.expires_at > now()) AS spendable,"
                " (SELECT COALESCE(sum(points), 0) FROM consumptions"
                "   WHERE lot_id = l.id AND kind = 'EXPIRY') AS expired,"
                " (SELECT COALESCE(sum(points), 0) FROM transfers"
                "   WHERE reversal_of_id = :t AND code = 'BREAKAGE_REVERSAL') AS unexpired"
                " FROM lots l WHERE l.transfer_id = :t"
            ),
            {"t": original.id},
        )
    ).one()
    reversal = await post.transfer(
        TransferCode.REVERSAL,
        debit=wallet(member_id),
        credit=account_id(AccountCode.PARTNER_ISSUANCE, issuer),
        points=wanted,
        partner_id=issuer,
        client_id=client_id,
        reversal_of=original.id,
        metadata=metadata,
    )
    # Points that back active holds stay where they are: a hold is a promise to a partner
    # that its capture will find them. `margin` is what may still leave the spendable lots.
    margin = max(0, await spendable(conn, member_id))
    # 1. What is still in the earn's own lot (less what backs holds, when it is spendable).
    from_lot = min(wanted, int(lot.remaining))
    if lot.spendable:
        from_lot = min(from_lot, margin)
        margin -= from_lot
    if from_lot:
        await conn.execute(
            text("UPDATE lots SET remaining = remaining - :p WHERE id = :lot"),
            {"p": from_lot, "lot": lot.id},
        )
        await conn.execute(
            text(
                "INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
                " redeemer_partner_id, points) VALUES (uuid7(), :t, :lot, 'REVERSAL', :i, :i, :p)"
            ),
            {"t": reversal, "lot": lot.id, "i": issuer, "p": from_lot},
        )
    # 2. What expired from that lot: taken back from breakage, not from the member again.
    from_breakage = min(wanted - from_lot, int(lot.expired) - int(lot.unexpired))
    if from_breakage > 0:
        await post.transfer(
            TransferCode.BREAKAGE_REVERSAL,
            debit=account_id(AccountCode.PARTNER_BREAKAGE, issuer),
            credit=wallet(member_id),
            points=from_breakage,
            partner_id=issuer,
            client_id=client_id,
            reversal_of=original.id,
        )
    else:
        from_breakage = 0
    # 3. What was already spent: clawed back from the member's other points, not held ones.
    rest = wanted - from_lot - from_breakage
    if rest:
        rest -= await _claw_back(conn, reversal, member_id, issuer, rest, margin)
    # 4. Anything left becomes a recorded debt that the member's next earns repay.
    if rest:
        await post.transfer(
            TransferCode.DEBT,
            debit=account_id(AccountCode.MEMBER_DEBT, member_id),
            credit=wallet(member_id),
            points=rest,
            partner_id=issuer,
            client_id=client_id,
            reversal_of=original.id,
        )
        await conn.execute(
            text(
                "INSERT INTO debts (id, member_id, creditor_partner_id, transfer_id, points,"
                " remaining) VALUES (uuid7(), :m, :i, :t, :p, :p)"
            ),
            {"m": member_id, "i": issuer, "t": reversal, "p": rest},
        )
    return reversal


async def _claw_back(
    conn: AsyncConnection,
    reversal: uuid.UUID,
    member_id: uuid.UUID,
    issuer: uuid.UUID,
    points: int,
    margin: int,
) -> int:
    """Take up to `points` from the member's unexpired lots, earliest expiry first, but no more
    than `margin` from spendable ones (the rest of those back active holds). Pending points
    back no hold and may all be taken. Returns the points taken."""
    lots = (
        await conn.execute(
            text(
                "SELECT id, issuer_partner_id, remaining, available_at <= now() AS spendable"
                " FROM lots WHERE member_id = :m AND remaining > 0 AND expires_at > now()"
                " ORDER BY expires_at, id"
            ),
            {"m": member_id},
        )
    ).all()
    ids: list[uuid.UUID] = []
    issuers: list[uuid.UUID] = []
    takes: list[int] = []
    left = points
    for lot in lots:
        if left <= 0:
            break
        take = min(int(lot.remaining), left, margin if lot.spendable else left)
        if take <= 0:
            continue
        if lot.spendable:
            margin -= take
        left -= take
        ids.append(lot.id)
        issuers.append(lot.issuer_partner_id)
        takes.append(take)
    if not ids:
        return 0
    await conn.execute(
        text(
            "WITH take AS (SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:issuers AS uuid[]),"
            "  CAST(:pts AS bigint[])) AS x(lot_id, issuer_partner_id, pts)),"
            " spent AS (UPDATE lots SET remaining = lots.remaining - take.pts FROM take"
            "  WHERE lots.id = take.lot_id RETURNING lots.id)"
            " INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
            "  redeemer_partner_id, points)"
            " SELECT uuid7(), :t, take.lot_id, 'CLAWBACK', take.issuer_partner_id, :redeemer,"
            "  take.pts FROM take JOIN spent ON spent.id = take.lot_id"
        ),
        {"ids": ids, "issuers": issuers, "pts": takes, "t": reversal, "redeemer": issuer},
    )
    return points - left


_RESTORE = text(
    """
    WITH net AS (
      SELECT c.lot_id, c.issuer_partner_id, c.redeemer_partner_id, l.expires_at,
             sum(c.points) AS pts
      FROM consumptions c JOIN lots l ON l.id = c.lot_id
      WHERE c.transfer_id = :original
         OR c.transfer_id IN (SELECT id FROM transfers WHERE reversal_of_id = :original)
      GROUP BY c.lot_id, c.issuer_partner_id, c.redeemer_partner_id, l.expires_at
      HAVING sum(c.points) > 0
    ), ordered AS (
      SELECT *, sum(pts) OVER (ORDER BY expires_at DESC, lot_id DESC) AS running FROM net
    ), take AS (
      SELECT lot_id, issuer_partner_id, redeemer_partner_id,
             LEAST(pts, :points - (running - pts)) AS pts
      FROM ordered WHERE running - pts < :points
    ), restored AS (
      UPDATE lots SET remaining = lots.remaining + take.pts FROM take WHERE lots.id = take.lot_id
      RETURNING lots.id
    )
    INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                              redeemer_partner_id, points)
    SELECT uuid7(), :t, take.lot_id, 'RESTORE', take.issuer_partner_id,
           take.redeemer_partner_id, -take.pts
    FROM take JOIN restored ON restored.id = take.lot_id
    RETURNING points
    """
)


async def _reverse_redemption(
    post: Posting,
    original: OriginalTransfer,
    wanted: int,
    client_id: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """Give the points back into the lots they came from, latest-expiring first."""
    reversal = await post.transfer(
        TransferCode.REVERSAL,
        debit=account_id(AccountCode.PARTNER_REDEMPTION, original.partner_id),
        credit=wallet(original.member_id),
        points=wanted,
        partner_id=original.partner_id,
        client_id=client_id,
        reversal_of=original.id,
        metadata=metadata,
    )
    rows = await post.conn.execute(
        _RESTORE, {"original": original.id, "t": reversal, "points": wanted}
    )
    restored = -sum(int(r.points) for r in rows)
    if restored != wanted:  # consumptions always cover the unreversed part
        raise RuntimeError(f"restored {restored} of {wanted} points")
    await _repay_debts_from_lots(post, original.member_id, wanted, client_id)
    return reversal


async def _repay_debts_from_lots(
    post: Posting, member_id: uuid.UUID, limit: int, client_id: str | None
) -> None:
    """A member who owes points repays from points given back (a refund) before they become
    spendable, as from an earn: up to `limit`, oldest debt first, earliest-expiring lots first.
    Points that back active holds stay (as an earn reversal leaves them), and points given
    back into lots that have expired cannot repay anything."""
    usable = await post.conn.scalar(
        text(
            "SELECT COALESCE((SELECT sum(remaining) FROM lots WHERE member_id = :m"
            "  AND remaining > 0 AND expires_at > now()), 0)"
            " - COALESCE((SELECT sum(points) FROM holds WHERE member_id = :m"
            "  AND status = 'ACTIVE' AND expires_at > now()), 0)"
        ),
        {"m": member_id},
    )
    limit = min(limit, max(0, int(usable or 0)))
    if limit == 0:
        return
    debts = (
        await post.conn.execute(
            text(
                "SELECT id, creditor_partner_id, remaining FROM debts"
                " WHERE member_id = :m AND remaining > 0 ORDER BY created_at, id"
            ),
            {"m": member_id},
        )
    ).all()
    left = limit
    for debt in debts:
        repay = min(left, int(debt.remaining))
        if repay <= 0:
            break
        left -= repay
        repayment = await post.transfer(
            TransferCode.DEBT_REPAYMENT,
            debit=wallet(member_id),
            credit=account_id(AccountCode.MEMBER_DEBT, member_id),
            points=repay,
            partner_id=debt.creditor_partner_id,
            client_id=client_id,
            metadata={"debt_id": str(debt.id)},
        )
        taken = await _consume(
            post.conn,
            repayment,
            member_id,
            repay,
            kind="DEBT_REPAYMENT",
            redeemer=debt.creditor_partner_id,
            only_available=False,
        )
        if taken != repay:  # `limit` is at most what the unexpired lots hold
            raise RuntimeError(f"repaid {taken} of {repay} points of debt {debt.id}")
        await post.conn.execute(
            text("UPDATE debts SET remaining = remaining - :p WHERE id = :d"),
            {"p": repay, "d": debt.id},
        )


async def hold(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    partner_id: uuid.UUID,
    client_id: str,
    points: int,
    reference: str,
    ttl: timedelta,
) -> uuid.UUID:
    """Reserve available points (no transfer yet: nothing moves until capture)."""
    async with posting(conn, member_id):
        available = await spendable(conn, member_id)
        if available < points:
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS,
                f"the member has {max(available, 0)} points available, {points} requested",
                ["points"],
            )
        hold_id = new_id()
        await conn.execute(
            text(
                "INSERT INTO holds (id, member_id, partner_id, client_id, points, reference,"
                " status, expires_at) VALUES (:id, :m, :p, :c, :pts, :ref, 'ACTIVE',"
                " clock_timestamp() + :ttl)"
            ),
            {
                "id": hold_id,
                "m": member_id,
                "p": partner_id,
                "c": client_id,
                "pts": points,
                "ref": reference,
                "ttl": ttl,
            },
        )
    return hold_id


async def _active_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Any:
    row = (
        await conn.execute(
            text(
                "SELECT id, member_id, partner_id, points, reference,"
                " (status = 'ACTIVE' AND expires_at > now()) AS active"
                " FROM holds WHERE id = :h FOR UPDATE"
            ),
            {"h": hold_id},
        )
    ).one_or_none()
    if row is None:
        raise DomainError(ErrorCode.HOLD_NOT_FOUND, "no such hold", ["holdId"])
    if not row.active:
        raise DomainError(ErrorCode.HOLD_NOT_ACTIVE, "the hold is no longer active", ["holdId"])
    return row


async def capture(
    conn: AsyncConnection, hold_id: uuid.UUID, *, points: int | None, client_id: str | None
) -> uuid.UUID:
    """Turn a hold into a redemption of up to its points; the rest is released."""
    member_id = await conn.scalar(text("SELECT member_id FROM holds WHERE id = :h"), {"h": hold_id})
    if member_id is None:
        raise DomainError(ErrorCode.HOLD_NOT_FOUND, "no such hold", ["holdId"])
    # Same lock order as every posting: the begin hooks (settlement's period lock) first,
    # then the member row, so a period close queued in between cannot form a wait cycle.
    await events.begin(conn)
    await conn.execute(
        text("SELECT id FROM members WHERE id = :m FOR NO KEY UPDATE"), {"m": member_id}
    )
    row = await _active_hold(conn, hold_id)
    wanted = int(row.points) if points is None else points
    if wanted <= 0 or wanted > int(row.points):
        raise DomainError(
            ErrorCode.INVALID_AMOUNT, f"points must be between 1 and {row.points}", ["points"]
        )
    transfer_id = await redeem(
        conn,
        member_id=row.member_id,
        redeemer_id=row.partner_id,
        client_id=client_id,
        points=wanted,
        reference=row.reference,
        metadata={"hold_id": str(hold_id)},
        hold_id=hold_id,
    )
    await conn.execute(
        text(
            "UPDATE holds SET status = 'CAPTURED', resolved_at = clock_timestamp(),"
            " transfer_id = :t WHERE id = :h"
        ),
        {"t": transfer_id, "h": hold_id},
    )
    return transfer_id


async def void(conn: AsyncConnection, hold_id: uuid.UUID) -> None:
    await _active_hold(conn, hold_id)
    await conn.execute(
        text("UPDATE holds SET status = 'VOIDED', resolved_at = clock_timestamp() WHERE id = :h"),
        {"h": hold_id},
    )


async def expire_member(conn: AsyncConnection, member_id: uuid.UUID) -> int:
    """Close the member's lots past expiry: one EXPIRY transfer per issuer, booked as breakage."""
    expired = 0
    async with posting(conn, member_id) as post:
        groups = (
            await conn.execute(
                text(
                    "SELECT issuer_partner_id, sum(remaining) AS pts FROM lots"
                    " WHERE member_id = :m AND remaining > 0 AND expires_at <= now()"
                    " GROUP BY issuer_partner_id ORDER BY issuer_partner_id"
                ),
                {"m": member_id},
            )
        ).all()
        for group in groups:
            transfer_id = await post.transfer(
                TransferCode.EXPIRY,
                debit=wallet(member_id),
                credit=account_id(AccountCode.PARTNER_BREAKAGE, group.issuer_partner_id),
                points=int(group.pts),
                partner_id=group.issuer_partner_id,
                client_id=None,
            )
            await conn.execute(
                text(
                    "WITH due AS (UPDATE lots SET remaining = 0 FROM"
                    "  (SELECT id, remaining AS pts FROM lots WHERE member_id = :m"
                    "   AND issuer_partner_id = :i AND remaining > 0 AND expires_at <= now()) d"
                    "  WHERE lots.id = d.id RETURNING lots.id, d.pts)"
                    " INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
                    "  redeemer_partner_id, points)"
                    " SELECT uuid7(), :t, due.id, 'EXPIRY', :i, NULL, due.pts FROM due"
                ),
                {"m": member_id, "i": group.issuer_partner_id, "t": transfer_id},
            )
            expired += int(group.pts)
    return expired


async def adjust(
    conn: AsyncConnection,
    *,
    debit: uuid.UUID,
    credit: uuid.UUID,
    points: int,
    partner_id: uuid.UUID | None,
    client_id: str | None,
    reference: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """An operator correction between partner and operator accounts (never a member wallet)."""
    async with posting(conn, None) as post:
        return await post.transfer(
            TransferCode.ADJUSTMENT,
            debit=debit,
            credit=credit,
            points=points,
            partner_id=partner_id,
            client_id=client_id,
            reference=reference,
            metadata=metadata,
        )
