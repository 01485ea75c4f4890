"""Reverse an earn (own lot, breakage, claw-back, debt) or a redemption (restore the lots).

An earn is reversed as the purchase it stands for: the head transfer (the EARN, or the first
BONUS when the EARN had no points) and the BONUS transfers of its other funders
(`parent_id` = the head). The points asked for (default: all not yet reversed) are split over
the head and its children in proportion to what each has not had reversed, by the largest
remainder (so they add up exactly), and each part is reversed as an earn of its own funder:
one REVERSAL per part (`reversal_of` = that transfer; the parts after the first point at it
with `parent_id`), so settlement reverses each funder's obligations. The campaign draws of the
purchase (the head's `campaigns` metadata) get back their share: to the campaign's budget (the
member's slot) and off the member's usage. A BONUS that is not a head is reversed with its
earn, not on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
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


def largest_remainder(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (non-negative, summing to at least `total`):
    floors first, then one more to the largest remainders (ties: the earlier weight). The
    parts add up to `total` and none exceeds its weight."""
    whole = sum(weights)
    if whole <= 0 or total <= 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


_GROUP = text(
    "SELECT t.id, t.code, t.points, t.member_id, t.partner_id, t.parent_id, t.metadata_,"
    " (SELECT COALESCE(sum(r.points), 0) FROM transfers r"
    "   WHERE r.reversal_of_id = t.id AND r.code = 'REVERSAL') AS reversed"
    " FROM transfers t WHERE t.id = :t OR t.parent_id = :t"
    " ORDER BY t.id <> :t, t.id"
)


async def reverse(
    conn: AsyncConnection,
    original: OriginalTransfer,
    *,
    points: int | None,
    client_id: str | None,
    reason: str | None,
) -> uuid.UUID:
    """Reverse all or part of an earn (with its funders' bonuses) or a redemption.

    Returns the REVERSAL of the head (the first part booked; the others name it as their
    `parent_id`: `reversal_points` adds them up)."""
    if original.code not in (TransferCode.EARN, TransferCode.REDEEM, TransferCode.BONUS):
        raise DomainError(
            ErrorCode.NOT_REVERSIBLE,
            f"a {original.code} transfer cannot be reversed",
            ["transferId"],
        )
    async with posting(conn, original.member_id) as post:
        metadata = {"reason": reason} if reason else {}
        if original.code == TransferCode.REDEEM:
            wanted = _wanted(original.points - await _reversed(conn, original.id), points)
            return await _reverse_redemption(post, original, wanted, client_id, metadata)
        group = (await conn.execute(_GROUP, {"t": original.id})).all()
        head = group[0] if group and group[0].id == original.id else None
        if head is None or head.parent_id is not None:
            raise DomainError(
                ErrorCode.NOT_REVERSIBLE,
                "a BONUS transfer is reversed with the earn it belongs to: reverse that earn",
                ["transferId"],
            )
        lefts = [int(t.points) - int(t.reversed) for t in group]
        wanted = _wanted(sum(lefts), points)
        parts = largest_remainder(wanted, lefts)
        total = sum(int(t.points) for t in group)
        before = sum(int(t.reversed) for t in group)
        returned = await _return_draws(
            conn, original.member_id, head.metadata_, total, before, before + wanted
        )
        earns = [
            (
                OriginalTransfer(
                    id=transfer.id,
                    code=transfer.code,
                    points=int(transfer.points),
                    member_id=original.member_id,
                    partner_id=transfer.partner_id,
                ),
                part,
            )
            for transfer, part in zip(group, parts, strict=True)
            if part > 0
        ]
        head_metadata = {"campaigns": returned} if returned else {}
        return await _reverse_earns(post, earns, client_id, metadata, head_metadata)


async def _reversed(conn: AsyncConnection, transfer_id: uuid.UUID) -> int:
    return int(
        await conn.scalar(
            text(
                "SELECT COALESCE(sum(points), 0) FROM transfers"
                " WHERE reversal_of_id = :t AND code = 'REVERSAL'"
            ),
            {"t": transfer_id},
        )
        or 0
    )


def _wanted(left: int, points: int | None) -> int:
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
    return wanted


async def reversal_points(conn: AsyncConnection, reversal_id: uuid.UUID) -> int:
    """The points of a reversal as `reverse` returned it: its own and its parts'."""
    return int(
        await conn.scalar(
            text("SELECT COALESCE(sum(points), 0) FROM transfers WHERE id = :r OR parent_id = :r"),
            {"r": reversal_id},
        )
        or 0
    )


# Back into the member's budget slot of the campaign (the one its earns draw from first).
_BUDGET_BACK = text(
    "UPDATE campaign_budget_slots s SET remaining = s.remaining + :p"
    " WHERE s.campaign_id = :c AND s.slot = ("
    "  SELECT abs(hashtext(CAST(:m AS uuid)::text)::bigint) % NULLIF(count(*), 0)"
    "  FROM campaign_budget_slots n WHERE n.campaign_id = :c)"
)
_USAGE_BACK = text(
    "UPDATE campaign_member_usage SET points = GREATEST(points - :p, 0)"
    " WHERE campaign_id = :c AND member_id = :m AND period_start = :period"
)


async def _return_draws(
    conn: AsyncConnection,
    member_id: uuid.UUID,
    head_metadata: dict[str, Any] | None,
    total: int,
    before: int,
    after: int,
) -> list[dict[str, Any]]:
    """Give the campaign draws of a purchase of `total` points their share of a reversal that
    takes the purchase's reversed points from `before` to `after`: each draw has had
    floor(draw × reversed / total) back, so the parts never go back on themselves, never give
    back more than the draw's proportional share, and a full reversal gives back the whole
    draw. In campaign id order, as the earn takes them. Returns what went back."""
    draws = (head_metadata or {}).get("campaigns") or []
    returned: list[dict[str, Any]] = []
    for draw in sorted(draws, key=lambda d: str(d["id"])):
        points = int(draw["points"])
        back = points * after // total - points * before // total
        if back <= 0:
            continue
        campaign = uuid.UUID(str(draw["id"]))
        if draw.get("budgeted"):
            await conn.execute(_BUDGET_BACK, {"p": back, "c": campaign, "m": member_id})
        if draw.get("period_start"):
            await conn.execute(
                _USAGE_BACK,
                {
                    "p": back,
                    "c": campaign,
                    "m": member_id,
                    "period": date.fromisoformat(str(draw["period_start"])),
                },
            )
        returned.append({"id": str(campaign), "points": back})
    return returned


async def _reverse_earns(
    post: Posting,
    parts: list[tuple[OriginalTransfer, int]],
    client_id: str | None,
    metadata: dict[str, Any],
    head_metadata: dict[str, Any],
) -> uuid.UUID:
    """Reverse `wanted` points of each earn part (an EARN or a BONUS, each with its own lot and
    funder) with one REVERSAL each; the first is the head, the others name it as parent.

    Every part first takes what is still in its own lot, then what expired from it (out of
    its funder's breakage); only then is what was already spent clawed back from the member's
    other points, then recorded as a debt to the part's funder. So a purchase reversed as a
    whole takes each funder's unspent points back from that funder's own lot, rather than one
    part clawing back another's."""
    conn = post.conn
    member_id = parts[0][0].member_id
    head: uuid.UUID | None = None
    margin = 0
    owed: list[tuple[OriginalTransfer, uuid.UUID, int]] = []
    for original, wanted in parts:
        issuer = original.partner_id
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
            metadata={**metadata, **head_metadata} if head is None else metadata,
            parent_id=head,
        )
        if head is None:
            head = reversal
            # Points that back active holds stay where they are: a hold is a promise to a
            # partner that its capture will find them. `margin` is what may still leave the
            # spendable lots.
            margin = max(0, await spendable(conn, member_id))
        # 1. What is still in the part's own lot (less what backs holds, when it is spendable).
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
                    " redeemer_partner_id, points)"
                    " VALUES (uuid7(), :t, :lot, 'REVERSAL', :i, :i, :p)"
                ),
                {"t": reversal, "lot": lot.id, "i": issuer, "p": from_lot},
            )
        # 2. What expired from that lot: taken back from breakage, not from the member again.
        from_breakage = max(0, min(wanted - from_lot, int(lot.expired) - int(lot.unexpired)))
        if from_breakage:
            await post.transfer(
                TransferCode.BREAKAGE_REVERSAL,
                debit=account_id(AccountCode.PARTNER_BREAKAGE, issuer),
                credit=wallet(member_id),
                points=from_breakage,
                partner_id=issuer,
                client_id=client_id,
                reversal_of=original.id,
            )
        owed.append((original, reversal, wanted - from_lot - from_breakage))
    for original, reversal, rest in owed:
        issuer = original.partner_id
        # 3. What was already spent: clawed back from the member's other points, not held ones.
        if rest:
            taken, margin = await _claw_back(conn, reversal, member_id, issuer, rest, margin)
            rest -= taken
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
    assert head is not None  # parts is never empty
    return head


async def _claw_back(
    conn: AsyncConnection,
    reversal: uuid.UUID,
    member_id: uuid.UUID,
    issuer: uuid.UUID,
    points: int,
    margin: int,
) -> tuple[int, int]:
    """Take up to `points` from the member's unexpired lots, earliest expiry first, but no more
    than `margin` from spendable ones (the rest of those back active holds). Pending points
    back no hold and may all be taken. Returns the points taken and the margin left."""
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
        return 0, margin
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
    return points - left, margin


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
