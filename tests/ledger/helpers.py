"""Shared helpers of the ledger tests: domain calls in their own transactions, and the
invariants of the points ledger checked against the tables for a given set of members."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import queries
from ledger.accounts import AccountCode, account_id
from members.service import MemberRef, enroll
from points.service import (
    EarnOutcome,
    HoldOutcome,
    RedeemOutcome,
    ReverseOutcome,
    capture_hold,
    earn_points,
    hold_points,
    redeem_points,
    reverse_transfer,
    void_hold,
)
from tests.conftest import partner_caller, unique_phone


def key() -> str:
    return secrets.token_hex(8)


async def new_member(engine: AsyncEngine, partner_ids: Iterable[uuid.UUID]) -> uuid.UUID:
    """A fresh member enrolled at every given partner (so each partner's client sees it)."""
    phone = unique_phone()
    member_id: uuid.UUID | None = None
    async with engine.begin() as c:
        for partner_id in partner_ids:
            record = await enroll(c, partner_caller(partner_id), phone=phone, partner_ref=None)
            member_id = record.id
    assert member_id is not None
    return member_id


async def earn(
    engine: AsyncEngine,
    partner_id: uuid.UUID,
    member_id: uuid.UUID,
    amount: int | str,
    *,
    idempotency_key: str | None = None,
    reference: str = "receipt",
) -> EarnOutcome:
    async with engine.begin() as c:
        return await earn_points(
            c,
            partner_caller(partner_id),
            member=MemberRef(id=member_id),
            amount=Decimal(amount),
            reference=reference,
            occurred_at=None,
            idempotency_key=idempotency_key or key(),
        )


async def redeem(
    engine: AsyncEngine, partner_id: uuid.UUID, member_id: uuid.UUID, points: int
) -> RedeemOutcome:
    async with engine.begin() as c:
        return await redeem_points(
            c,
            partner_caller(partner_id),
            member=MemberRef(id=member_id),
            points=points,
            reference="basket",
            idempotency_key=key(),
        )


async def reverse(
    engine: AsyncEngine, partner_id: uuid.UUID, transfer_id: uuid.UUID | str, points: int | None
) -> ReverseOutcome:
    async with engine.begin() as c:
        return await reverse_transfer(
            c,
            partner_caller(partner_id),
            transfer_id=uuid.UUID(str(transfer_id)),
            points=points,
            reason="refund",
            idempotency_key=key(),
        )


async def hold(
    engine: AsyncEngine, partner_id: uuid.UUID, member_id: uuid.UUID, points: int
) -> HoldOutcome:
    async with engine.begin() as c:
        return await hold_points(
            c,
            partner_caller(partner_id),
            member=MemberRef(id=member_id),
            points=points,
            reference="checkout",
            ttl_minutes=60,
            idempotency_key=key(),
        )


async def capture(
    engine: AsyncEngine, partner_id: uuid.UUID, hold_id: uuid.UUID | str, points: int | None
) -> HoldOutcome:
    async with engine.begin() as c:
        return await capture_hold(
            c,
            partner_caller(partner_id),
            hold_id=uuid.UUID(str(hold_id)),
            points=points,
            idempotency_key=key(),
        )


async def void(engine: AsyncEngine, partner_id: uuid.UUID, hold_id: uuid.UUID | str) -> HoldOutcome:
    async with engine.begin() as c:
        return await void_hold(
            c, partner_caller(partner_id), hold_id=uuid.UUID(str(hold_id)), idempotency_key=key()
        )


async def balance(engine: AsyncEngine, member_id: uuid.UUID) -> queries.BalanceRecord:
    async with engine.connect() as c:
        return await queries.balance(c, member_id)


async def make_due(conn: AsyncConnection, lot_ids: list[uuid.UUID]) -> None:
    """Test setup: move lots' expiry (and availability) into the past."""
    await conn.execute(
        text(
            "UPDATE lots SET expires_at = now() - interval '1 second',"
            " available_at = LEAST(available_at, now() - interval '2 seconds')"
            " WHERE id = ANY(:ids)"
        ),
        {"ids": lot_ids},
    )


async def lot_of(conn: AsyncConnection, transfer_id: uuid.UUID | str) -> Any:
    return (
        await conn.execute(
            text(
                "SELECT id, issuer_partner_id, points, remaining, available_at, expires_at"
                " FROM lots WHERE transfer_id = :t"
            ),
            {"t": uuid.UUID(str(transfer_id))},
        )
    ).one()


async def transfers_of(conn: AsyncConnection, member_id: uuid.UUID) -> list[Any]:
    return list(
        (
            await conn.execute(
                text(
                    "SELECT id, code, points, partner_id, reversal_of_id, debit_account_id,"
                    " credit_account_id FROM transfers WHERE member_id = :m ORDER BY id"
                ),
                {"m": member_id},
            )
        ).all()
    )


async def violations(conn: AsyncConnection, member_ids: Iterable[uuid.UUID]) -> list[str]:
    """Every broken ledger invariant for these members, as readable strings (empty: all hold)."""
    problems: list[str] = []
    for member_id in member_ids:
        problems += await _member_violations(conn, member_id)
    return problems


async def assert_invariants(conn: AsyncConnection, member_ids: Iterable[uuid.UUID]) -> None:
    problems = await violations(conn, member_ids)
    assert not problems, "\n".join(problems)


async def _member_violations(conn: AsyncConnection, member_id: uuid.UUID) -> list[str]:
    problems: list[str] = []
    wallet = account_id(AccountCode.MEMBER_WALLET, member_id)
    debt_account = account_id(AccountCode.MEMBER_DEBT, member_id)
    transfers = await transfers_of(conn, member_id)
    by_id = {t.id: t for t in transfers}

    wallet_balance = debt_balance = 0
    for t in transfers:
        if t.points <= 0:
            problems.append(f"transfer {t.id} has {t.points} points")
        if t.debit_account_id == t.credit_account_id:
            problems.append(f"transfer {t.id} debits and credits one account")
        if t.credit_account_id == wallet:
            wallet_balance += t.points
        if t.debit_account_id == wallet:
            wallet_balance -= t.points
        if t.debit_account_id == debt_account:
            debt_balance += t.points
        if t.credit_account_id == debt_account:
            debt_balance -= t.points

    lots = (
        await conn.execute(
            text(
                "SELECT l.id, l.transfer_id, l.issuer_partner_id, l.points, l.remaining,"
                " COALESCE((SELECT sum(points) FROM consumptions WHERE lot_id = l.id), 0)"
                "  AS consumed FROM lots l WHERE l.member_id = :m"
            ),
            {"m": member_id},
        )
    ).all()
    lot_total = sum(int(lot.remaining) for lot in lots)
    if wallet_balance != lot_total:
        problems.append(
            f"member {member_id}: wallet {wallet_balance} != lots remaining {lot_total}"
        )
    if wallet_balance < 0:
        problems.append(f"member {member_id}: wallet balance {wallet_balance} is negative")
    for lot in lots:
        if not 0 <= lot.remaining <= lot.points:
            problems.append(f"lot {lot.id}: remaining {lot.remaining} of {lot.points}")
        if lot.remaining != lot.points - lot.consumed:
            problems.append(
                f"lot {lot.id}: remaining {lot.remaining} but points {lot.points}"
                f" minus consumptions {lot.consumed}"
            )
    lots_by_transfer = {lot.transfer_id: lot for lot in lots}
    lots_by_id = {lot.id: lot for lot in lots}

    debts = int(
        await conn.scalar(
            text("SELECT COALESCE(sum(remaining), 0) FROM debts WHERE member_id = :m"),
            {"m": member_id},
        )
        or 0
    )
    if debt_balance != debts:
        problems.append(f"member {member_id}: debt account {debt_balance} != debts {debts}")
    bad_debts = await conn.scalar(
        text(
            "SELECT count(*) FROM debts WHERE member_id = :m"
            " AND NOT (remaining >= 0 AND remaining <= points)"
        ),
        {"m": member_id},
    )
    if bad_debts:
        problems.append(f"member {member_id}: {bad_debts} debts out of range")

    consumptions = (
        await conn.execute(
            text(
                "SELECT c.transfer_id, c.lot_id, c.kind, c.issuer_partner_id, c.points"
                " FROM consumptions c JOIN transfers t ON t.id = c.transfer_id"
                " WHERE t.member_id = :m"
            ),
            {"m": member_id},
        )
    ).all()
    consumed: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for c in consumptions:
        consumed[(c.transfer_id, c.kind)] += int(c.points)
        lot = lots_by_id.get(c.lot_id)
        if lot is None:
            problems.append(f"consumption of {c.transfer_id} on a lot of another member")
        elif lot.issuer_partner_id != c.issuer_partner_id:
            problems.append(f"consumption of {c.transfer_id} names the wrong issuer")
        if (c.kind == "RESTORE") != (c.points < 0):
            problems.append(f"consumption {c.kind} of {c.transfer_id} has {c.points} points")

    children: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for t in transfers:
        if t.reversal_of_id is not None:
            children[t.reversal_of_id].append(t)
            if t.reversal_of_id not in by_id:
                problems.append(f"{t.code} {t.id} reverses a transfer of another member")

    for t in transfers:
        kids = children.get(t.id, [])
        reversals = [k for k in kids if k.code == "REVERSAL"]
        reversed_points = sum(k.points for k in reversals)
        if reversed_points > t.points:
            problems.append(f"{t.code} {t.id}: reversed {reversed_points} of {t.points}")
        if reversals and t.code not in ("EARN", "REDEEM"):
            problems.append(f"{t.code} {t.id} was reversed")
        if t.code == "REDEEM":
            if consumed[(t.id, "REDEEM")] != t.points:
                problems.append(
                    f"REDEEM {t.id}: consumptions {consumed[(t.id, 'REDEEM')]} != {t.points}"
                )
            restored = sum(consumed[(k.id, "RESTORE")] for k in reversals)
            if consumed[(t.id, "REDEEM")] + restored != t.points - reversed_points:
                problems.append(
                    f"REDEEM {t.id}: consumed {consumed[(t.id, 'REDEEM')]} restored {-restored}"
                    f" but {t.points} points with {reversed_points} reversed"
                )
            for k in reversals:
                if -consumed[(k.id, "RESTORE")] != k.points:
                    problems.append(f"REVERSAL {k.id}: restored {-consumed[(k.id, 'RESTORE')]}")
        elif t.code == "EARN":
            lot = lots_by_transfer.get(t.id)
            if lot is None or lot.points != t.points or lot.issuer_partner_id != t.partner_id:
                problems.append(f"EARN {t.id}: no matching lot")
            taken = sum(
                consumed[(k.id, "REVERSAL")] + consumed[(k.id, "CLAWBACK")] for k in reversals
            )
            breakage = sum(k.points for k in kids if k.code == "BREAKAGE_REVERSAL")
            owed = sum(k.points for k in kids if k.code == "DEBT")
            if taken + breakage + owed != reversed_points:
                problems.append(
                    f"EARN {t.id}: reversed {reversed_points} = taken {taken}"
                    f" + breakage {breakage} + debt {owed} does not add up"
                )
            if lot is not None:
                expired = sum(
                    int(c.points) for c in consumptions if c.lot_id == lot.id and c.kind == "EXPIRY"
                )
                if breakage > expired:
                    problems.append(f"EARN {t.id}: {breakage} back from breakage of {expired}")
        elif t.code in ("EXPIRY", "DEBT_REPAYMENT") and consumed[(t.id, t.code)] != t.points:
            problems.append(f"{t.code} {t.id}: consumptions {consumed[(t.id, t.code)]}")
    return problems
