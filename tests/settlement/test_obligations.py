"""Obligations booked with their transfers: both funding models, the fee, rounding."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY as OP
from tests.conftest import make_partner
from tests.settlement.helpers import (
    coalition_terms,
    earn,
    member_at,
    obligations_of,
    redeem,
    reverse,
)


async def test_redemption_funded_issuer_pays_redeemer(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine, points_validity_days=200)
    phone = await member_at(engine, a, b)
    earned = await earn(engine, a, phone, "300")
    await earn(engine, b, phone, "100")
    assert await obligations_of(engine, earned) == set()  # earning costs nothing
    # 350 points: A's 300 (earliest expiry) and 50 of B's own.
    burnt = await redeem(engine, b, phone, 350)
    assert await obligations_of(engine, burnt) == {(a.id, b.id, "REDEMPTION", 300, 30000)}
    # Own points redeemed at home: nothing owed.
    own = await redeem(engine, b, phone, 20)
    assert await obligations_of(engine, own) == set()
    # Reversing 320 gives back B's 50 first (latest expiry), then 270 of A's.
    back = await reverse(engine, b, burnt, 320)
    assert await obligations_of(engine, back) == {(b.id, a.id, "REDEMPTION_REVERSAL", 270, 27000)}


async def test_clearing_fee_is_owed_by_the_redeemer(engine: AsyncEngine) -> None:
    a = await make_partner(engine)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    async with coalition_terms(engine, clearing_fee=Decimal("0.05")):
        await earn(engine, a, phone, "100")
        burnt = await redeem(engine, b, phone, 30)
        back = await reverse(engine, b, burnt, None)
        own = await redeem(engine, a, phone, 10)
    assert await obligations_of(engine, burnt) == {
        (a.id, b.id, "REDEMPTION", 30, 3000),
        (b.id, OP, "CLEARING_FEE", 30, 150),
    }
    assert await obligations_of(engine, back) == {
        (b.id, a.id, "REDEMPTION_REVERSAL", 30, 3000),
        (OP, b.id, "CLEARING_FEE_REVERSAL", 30, 150),
    }
    assert await obligations_of(engine, own) == set()  # no fee on own points


async def test_issuance_funded(engine: AsyncEngine) -> None:
    a = await make_partner(engine, issue_price="0.80", redeem_price="0.95")
    b = await make_partner(engine, issue_price="0.70", redeem_price="0.90")
    phone = await member_at(engine, a, b)
    async with coalition_terms(engine, funding_model="ISSUANCE", clearing_fee=Decimal("0.05")):
        earned = await earn(engine, a, phone, "100")
        at_b = await redeem(engine, b, phone, 60)
        at_a = await redeem(engine, a, phone, 10)  # own points: the operator still pays
        earn_back = await reverse(engine, a, earned, 20)  # from the lot's 30 left
        redeem_back = await reverse(engine, b, at_b, 10)
    assert await obligations_of(engine, earned) == {(a.id, OP, "ISSUANCE", 100, 8000)}
    # No clearing fee when issuance-funded: the operator earns the spread.
    assert await obligations_of(engine, at_b) == {(OP, b.id, "REDEMPTION", 60, 5400)}
    assert await obligations_of(engine, at_a) == {(OP, a.id, "REDEMPTION", 10, 950)}
    assert await obligations_of(engine, earn_back) == {(OP, a.id, "ISSUANCE_REVERSAL", 20, 1600)}
    assert await obligations_of(engine, redeem_back) == {(b.id, OP, "REDEMPTION_REVERSAL", 10, 900)}


async def test_issuance_funded_clawback_books_nothing(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine, points_validity_days=200)
    phone = await member_at(engine, a, b)
    async with coalition_terms(engine, funding_model="ISSUANCE"):
        earned = await earn(engine, a, phone, "50")
        await earn(engine, b, phone, "100")
        await redeem(engine, b, phone, 50)  # A's 50
        back = await reverse(engine, a, earned, None)  # claws back 50 of B's points
    assert await obligations_of(engine, back) == {(OP, a.id, "ISSUANCE_REVERSAL", 50, 5000)}


async def test_clawback_and_debt_repayment_redemption_funded(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine, points_validity_days=200)
    c = await make_partner(engine, points_validity_days=300)
    phone = await member_at(engine, a, b, c)
    earned = await earn(engine, a, phone, "100")
    await earn(engine, b, phone, "30")
    await redeem(engine, c, phone, 100)  # A's 100 at C
    # Reversing A's earn: its lot is empty, 30 clawed back from B's points, 70 become debt.
    back = await reverse(engine, a, earned, None)
    assert await obligations_of(engine, back) == {(b.id, a.id, "CLAWBACK", 30, 3000)}
    # C's next earn repays the debt to A first: C's points used for A.
    repaid = await earn(engine, c, phone, "80")
    assert await obligations_of(engine, repaid) == set()  # the earn itself costs nothing
    from sqlalchemy import text

    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT o.debtor_id, o.creditor_id, o.kind, o.points, o.amount FROM obligations o"
                " JOIN transfers t ON t.id = o.transfer_id WHERE t.code = 'DEBT_REPAYMENT'"
                " AND t.member_id = (SELECT member_id FROM transfers WHERE id = :e)"
            ),
            {"e": repaid},
        )
        assert {tuple(r) for r in rows} == {(c.id, a.id, "DEBT_REPAYMENT", 70, 7000)}


async def test_rounding_half_even_and_cumulative_reversals(engine: AsyncEngine) -> None:
    a = await make_partner(engine)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    # 1.5 minor units per point: every odd number of points lands on a half.
    async with coalition_terms(engine, point_value=Decimal("0.015")):
        await earn(engine, a, phone, "100")
        one = await redeem(engine, b, phone, 1)  # 1.5 → 2
        three = await redeem(engine, b, phone, 3)  # 4.5 → 4
        five = await redeem(engine, b, phone, 5)  # 7.5 → 8
        parts = [await reverse(engine, b, three, 1) for _ in range(3)]
    assert await obligations_of(engine, one) == {(a.id, b.id, "REDEMPTION", 1, 2)}
    assert await obligations_of(engine, three) == {(a.id, b.id, "REDEMPTION", 3, 4)}
    assert await obligations_of(engine, five) == {(a.id, b.id, "REDEMPTION", 5, 8)}
    amounts = [next(iter(await obligations_of(engine, p)))[4] for p in parts]
    # Cumulative: round(1.5)=2, round(3.0)−2=1, round(4.5)−3=1: the whole comes back exactly.
    assert amounts == [2, 1, 1]
    assert sum(amounts) == 4
