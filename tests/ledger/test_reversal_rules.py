"""Earn reversals against expired lots, active holds and empty wallets; debts; the expiry sweep."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import DomainError, ErrorCode
from ledger.expiry import expire_due
from ledger.postings import expire_member
from tests.conftest import make_partner
from tests.ledger import helpers as h


async def _codes(engine: AsyncEngine, member_id: uuid.UUID) -> Counter[str]:
    async with engine.connect() as c:
        return Counter(t.code for t in await h.transfers_of(c, member_id))


async def _kinds(engine: AsyncEngine, transfer_id: str) -> dict[str, int]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT kind, sum(points) AS pts FROM consumptions WHERE transfer_id = :t GROUP BY kind"
            ),
            {"t": uuid.UUID(transfer_id)},
        )
        return {r.kind: int(r.pts) for r in rows}


async def test_reversing_an_expired_earn_takes_the_points_back_from_breakage(
    engine: AsyncEngine,
) -> None:
    issuer = await make_partner(engine)
    other = await make_partner(engine)
    member = await h.new_member(engine, [issuer.id, other.id])
    earned = await h.earn(engine, issuer.id, member, 100)
    await h.earn(engine, other.id, member, 50)
    async with engine.begin() as c:
        lot = await h.lot_of(c, earned.transfer_id)
        await h.make_due(c, [lot.id])
    async with engine.begin() as c:
        assert await expire_member(c, member) == 100
    assert (await h.balance(engine, member)).available == 50

    reversal = await h.reverse(engine, issuer.id, earned.transfer_id, None)

    assert reversal.points == 100
    bal = await h.balance(engine, member)
    assert (bal.available, bal.pending, bal.debt) == (50, 0, 0), bal
    codes = await _codes(engine, member)
    assert codes["BREAKAGE_REVERSAL"] == 1 and codes["DEBT"] == 0
    assert "CLAWBACK" not in await _kinds(engine, reversal.transfer_id)
    async with engine.connect() as c:
        breakage = await c.scalar(
            text(
                "SELECT sum(points) FROM transfers WHERE code = 'BREAKAGE_REVERSAL'"
                " AND reversal_of_id = :t"
            ),
            {"t": uuid.UUID(str(earned.transfer_id))},
        )
        assert breakage == 100
        await h.assert_invariants(c, [member])


async def test_partial_reversals_of_a_partly_spent_expired_earn(engine: AsyncEngine) -> None:
    """Spent points are clawed back, expired ones come back from breakage, never twice."""
    issuer = await make_partner(engine)
    other = await make_partner(engine)
    member = await h.new_member(engine, [issuer.id, other.id])
    earned = await h.earn(engine, issuer.id, member, 100)
    await h.redeem(engine, other.id, member, 30)  # 30 of the lot spent
    async with engine.begin() as c:
        await h.make_due(c, [(await h.lot_of(c, earned.transfer_id)).id])
    async with engine.begin() as c:
        assert await expire_member(c, member) == 70
    await h.earn(engine, other.id, member, 200)

    first = await h.reverse(engine, issuer.id, earned.transfer_id, 50)
    assert "CLAWBACK" not in await _kinds(engine, first.transfer_id)
    assert (await h.balance(engine, member)).available == 200
    second = await h.reverse(engine, issuer.id, earned.transfer_id, 50)
    # 20 more from breakage (70 expired in all), the 30 that were spent clawed back.
    assert await _kinds(engine, second.transfer_id) == {"CLAWBACK": 30}
    bal = await h.balance(engine, member)
    assert (bal.available, bal.debt) == (170, 0)
    try:
        await h.reverse(engine, issuer.id, earned.transfer_id, 1)
    except DomainError as exc:
        assert exc.code == ErrorCode.ALREADY_REVERSED
    else:
        raise AssertionError("a fully reversed earn was reversed again")
    async with engine.connect() as c:
        await h.assert_invariants(c, [member])


async def test_clawback_never_takes_held_points(engine: AsyncEngine) -> None:
    """A member with held available points and pending points: the clawback takes the pending
    ones, so the hold can still be captured."""
    shop = await make_partner(engine)
    travel = await make_partner(engine, pending_days=10)
    member = await h.new_member(engine, [shop.id, travel.id])
    spent = await h.earn(engine, shop.id, member, 100)
    await h.redeem(engine, shop.id, member, 100)
    await h.earn(engine, shop.id, member, 80)
    await h.earn(engine, travel.id, member, 60)  # pending
    checkout = await h.hold(engine, shop.id, member, 80)

    reversal = await h.reverse(engine, shop.id, spent.transfer_id, None)

    assert await _kinds(engine, reversal.transfer_id) == {"CLAWBACK": 60}
    bal = await h.balance(engine, member)
    assert (bal.available, bal.pending, bal.held, bal.debt) == (0, 0, 80, 40), bal
    captured = await h.capture(engine, shop.id, checkout.hold_id, None)
    assert captured.transfer_id is not None
    async with engine.connect() as c:
        await h.assert_invariants(c, [member])


async def test_reversal_leaves_the_points_backing_a_hold(engine: AsyncEngine) -> None:
    """Even the earn's own lot is not taken when its points back an active hold: the part the
    member cannot give back becomes a debt, repaid by the next earn."""
    shop = await make_partner(engine)
    member = await h.new_member(engine, [shop.id])
    earned = await h.earn(engine, shop.id, member, 100)
    checkout = await h.hold(engine, shop.id, member, 70)

    await h.reverse(engine, shop.id, earned.transfer_id, None)

    bal = await h.balance(engine, member)
    assert (bal.available, bal.held, bal.debt) == (0, 70, 70), bal
    await h.capture(engine, shop.id, checkout.hold_id, None)
    await h.earn(engine, shop.id, member, 100)
    bal = await h.balance(engine, member)
    assert (bal.available, bal.held, bal.debt) == (30, 0, 0), bal
    async with engine.connect() as c:
        await h.assert_invariants(c, [member])


async def test_reversing_a_spent_earn_records_a_debt_repaid_by_the_next_earn(
    engine: AsyncEngine,
) -> None:
    grocer = await make_partner(engine)
    cinema = await make_partner(engine)
    fuel = await make_partner(engine, pending_days=3)
    member = await h.new_member(engine, [grocer.id, cinema.id, fuel.id])
    earned = await h.earn(engine, grocer.id, member, 100)
    await h.redeem(engine, cinema.id, member, 100)

    reversal = await h.reverse(engine, grocer.id, earned.transfer_id, None)

    bal = await h.balance(engine, member)
    assert (bal.available, bal.pending, bal.debt) == (0, 0, 100), bal
    async with engine.connect() as c:
        await h.assert_invariants(c, [member])  # includes: the wallet is not negative
        debt = (
            await c.execute(
                text(
                    "SELECT creditor_partner_id, points, remaining, transfer_id FROM debts WHERE member_id = :m"
                ),
                {"m": member},
            )
        ).one()
    assert (debt.creditor_partner_id, debt.points, debt.remaining) == (grocer.id, 100, 100)
    assert str(debt.transfer_id) == reversal.transfer_id
    try:
        await h.redeem(engine, cinema.id, member, 1)
    except DomainError as exc:
        assert exc.code == ErrorCode.INSUFFICIENT_POINTS
    else:
        raise AssertionError("a member in debt redeemed points")

    # The next earn, at another partner and still pending, repays the debt first.
    partial = await h.earn(engine, fuel.id, member, 30)
    async with engine.connect() as c:
        lot = await h.lot_of(c, partial.transfer_id)
        repayments = (
            await c.execute(
                text(
                    "SELECT t.points, t.partner_id, c.lot_id, c.points AS consumed"
                    " FROM transfers t JOIN consumptions c ON c.transfer_id = t.id"
                    " WHERE t.member_id = :m AND t.code = 'DEBT_REPAYMENT'"
                ),
                {"m": member},
            )
        ).all()
    assert lot.remaining == 0
    assert [(r.points, r.partner_id, r.lot_id, r.consumed) for r in repayments] == [
        (30, grocer.id, lot.id, 30)
    ]
    assert (await h.balance(engine, member)).debt == 70

    settled = await h.earn(engine, cinema.id, member, 100)
    async with engine.connect() as c:
        assert (await h.lot_of(c, settled.transfer_id)).remaining == 30
        await h.assert_invariants(c, [member])
    bal = await h.balance(engine, member)
    assert (bal.available, bal.pending, bal.debt) == (30, 0, 0), bal
    assert (await _codes(engine, member))["DEBT_REPAYMENT"] == 2


async def test_expire_due_books_one_expiry_per_member_and_issuer(engine: AsyncEngine) -> None:
    a = await make_partner(engine)
    b = await make_partner(engine, pending_days=2)
    members = [await h.new_member(engine, [a.id, b.id]) for _ in range(2)]
    due: list[uuid.UUID] = []
    for member in members:
        for partner, amount in ((a, 10), (a, 20), (b, 40), (a, 5)):
            earned = await h.earn(engine, partner.id, member, amount)
            async with engine.connect() as c:
                lot = await h.lot_of(c, earned.transfer_id)
            if amount != 5:  # the last lot stays valid
                due.append(lot.id)
    await h.redeem(engine, a.id, members[0], 15)  # the first lot and 5 of the second
    before = {m: await h.balance(engine, m) for m in members}
    assert before[members[0]].available == 20 and before[members[1]].pending == 40
    async with engine.begin() as c:
        await h.make_due(c, due)

    report = await expire_due(engine)

    assert report.members >= 2 and report.points >= 15 + 40 + 70
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT t.member_id, t.partner_id, t.points,"
                    " (SELECT sum(points) FROM consumptions WHERE transfer_id = t.id"
                    "   AND kind = 'EXPIRY') AS consumed"
                    " FROM transfers t WHERE t.member_id = ANY(:ms) AND t.code = 'EXPIRY'"
                ),
                {"ms": members},
            )
        ).all()
        expired = sorted((members.index(r.member_id), r.partner_id == a.id, r.points) for r in rows)
        assert expired == [(0, False, 40), (0, True, 15), (1, False, 40), (1, True, 30)]
        assert all(r.points == r.consumed for r in rows)
        remaining = await c.scalar(
            text("SELECT sum(remaining) FROM lots WHERE id = ANY(:ids)"), {"ids": due}
        )
        assert remaining == 0
        await h.assert_invariants(c, members)
    for member in members:
        bal = await h.balance(engine, member)
        assert (bal.available, bal.pending) == (5, 0), bal

    await expire_due(engine)
    async with engine.connect() as c:
        again = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE member_id = ANY(:ms) AND code = 'EXPIRY'"),
            {"ms": members},
        )
    assert again == 4


async def test_refunds_restore_the_consumed_lots_latest_expiry_first(engine: AsyncEngine) -> None:
    short = await make_partner(engine, points_validity_days=30)
    long = await make_partner(engine, points_validity_days=365)
    member = await h.new_member(engine, [short.id, long.id])
    soon = await h.earn(engine, short.id, member, 50)
    later = await h.earn(engine, long.id, member, 50)
    burnt = await h.redeem(engine, long.id, member, 80)

    async def remaining() -> tuple[int, int]:
        async with engine.connect() as c:
            return (
                (await h.lot_of(c, soon.transfer_id)).remaining,
                (await h.lot_of(c, later.transfer_id)).remaining,
            )

    assert await remaining() == (0, 20)  # earliest expiry consumed first
    await h.reverse(engine, long.id, burnt.transfer_id, 40)
    assert await remaining() == (10, 50)  # latest expiry restored first
    await h.reverse(engine, long.id, burnt.transfer_id, None)
    assert await remaining() == (50, 50)
    async with engine.connect() as c:
        await h.assert_invariants(c, [member])
