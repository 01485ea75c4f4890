"""Reverse an earn (own lot, breakage, claw-back, debt) or a redemption (restore the lots)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from ledger.accounts import AccountCode, account_id
from ledger.postings.base import Posting, TransferCode, consume, posting, spendable, wallet


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
        taken = await consume(
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
