"""The internal proof finds tampering with obligations and with frozen results."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef
from points.service import redeem_points
from settlement.periods import current_period
from settlement.verify import expected_amount, minor_units, verify_period
from tests.conftest import make_partner, partner_caller
from tests.settlement.helpers import (
    close,
    coalition_terms,
    earn,
    key,
    member_at,
    redeem,
    reverse,
)


async def test_verify_reports_tampering(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100, issue_price="0.5")
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    burnt_before = None
    async with coalition_terms(engine, clearing_fee=Decimal("0.013")):
        await earn(engine, a, phone, "500")
        burnt_before = await redeem(engine, b, phone, 101)
    await close(engine)  # the original redemption is in an older period
    async with coalition_terms(engine, funding_model="ISSUANCE"):
        earned = await earn(engine, a, phone, "77")  # priced under the new terms
        await reverse(engine, b, burnt_before, 33)  # reversed at the original terms
        await reverse(engine, b, burnt_before, 68)
    period = await close(engine)
    async with engine.begin() as conn:
        proof = await verify_period(conn, period.id)
        assert proof.ok, proof.differences
        await conn.execute(
            text("UPDATE obligations SET amount = amount + 1 WHERE transfer_id = :t"),
            {"t": earned},
        )
        await conn.execute(
            text(
                "UPDATE settlement_positions SET net = net + 5 WHERE period_id = :p"
                " AND party_id = :a"
            ),
            {"p": period.id, "a": a.id},
        )
        proof = await verify_period(conn, period.id)
        await conn.rollback()  # leave the period as it was
    checks = {(d.check, d.transfer_id, d.party_id) for d in proof.differences}
    assert not proof.ok
    assert ("OBLIGATION", earned, a.id) in checks
    assert any(d.check == "GROSS_LINE" and d.party_id == a.id for d in proof.differences)
    assert ("POSITION", None, a.id) in checks
    assert any(d.check == "POSITIONS_SUM" for d in proof.differences)
    assert ("INSTRUCTIONS", None, a.id) in checks


async def test_verify_reports_missing_and_unexplained_obligations(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "50")
    burnt = await redeem(engine, b, phone, 20)
    async with engine.begin() as conn:
        period = await current_period(conn)
        await conn.execute(text("DELETE FROM obligations WHERE transfer_id = :t"), {"t": burnt})
        await conn.execute(
            text(
                "INSERT INTO obligations (id, period_id, debtor_id, creditor_id, kind, points,"
                " unit_price, amount, created_at) VALUES (gen_random_uuid(), :p, :a, :b,"
                " 'REDEMPTION', 1, 1, 100, now())"
            ),
            {"p": period.id, "a": a.id, "b": b.id},
        )
        proof = await verify_period(conn, period.id)
        await conn.rollback()
    messages = {(d.transfer_id, d.message) for d in proof.differences if d.party_id == a.id}
    assert (burnt, "the ledger implies an obligation that was not booked") in messages
    assert (None, "a booked obligation is not implied by the ledger") in messages


HALF_UP = """CREATE OR REPLACE FUNCTION round_half_even(x numeric) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT round(x)::bigint $$"""


async def test_verify_catches_a_rounding_bug_in_the_booking_code(engine: AsyncEngine) -> None:
    """Verification rounds on its own (half to even, to minor units), so a bug in the rounding
    the booking code uses is reported, not repeated. One point worth 0.125 RUB is 12.5
    kopecks: 12 half to even, 13 half up."""
    a = await make_partner(engine)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    async with coalition_terms(engine, point_value=Decimal("0.125")):
        await earn(engine, a, phone, "10")
        right = await redeem(engine, b, phone, 1)
        async with engine.begin() as conn:
            # The booking's rounding turns half-up, in this transaction only (rolled back).
            await conn.execute(text(HALF_UP))
            wrong = (
                await redeem_points(
                    conn,
                    partner_caller(b.id),
                    member=MemberRef(phone=phone),
                    points=1,
                    reference=key(),
                    idempotency_key=key(),
                )
            ).transfer_id
            booked: dict[uuid.UUID, int] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT transfer_id, amount FROM obligations"
                            " WHERE transfer_id = ANY(:t) AND kind = 'REDEMPTION'"
                        ),
                        {"t": [right, uuid.UUID(wrong)]},
                    )
                ).all()
            )
            period = await current_period(conn)
            proof = await verify_period(conn, period.id)
            await conn.rollback()  # leave the period and the function as they were
    assert booked == {right: 12, uuid.UUID(wrong): 13}
    assert not proof.ok
    assert [
        (d.check, d.transfer_id, d.party_id, d.kind, d.expected, d.actual)
        for d in proof.differences
    ] == [("OBLIGATION", uuid.UUID(wrong), a.id, "REDEMPTION", 12, 13)]
    assert proof.differences[0].message == "the amount differs from what the ledger implies"


def test_verification_rounds_half_to_even_to_minor_units() -> None:
    cases = {
        "12.5": 12,
        "13.5": 14,
        "0.5": 0,
        "1.5": 2,
        "-2.5": -2,
        "12.4999999": 12,
        "12.5000001": 13,
        "131.3": 131,
        "99999999999999999.5": 100000000000000000,  # beyond a float's precision
    }
    assert {raw: minor_units(Decimal(raw)) for raw in cases} == cases
    # A reversal's share: the cumulative amount rounded less the earlier parts' rounding.
    assert expected_amount(Decimal("37.5"), Decimal("12.5")) == 38 - 12
    assert expected_amount(None, Decimal(0)) is None
