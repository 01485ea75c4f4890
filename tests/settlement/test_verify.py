"""The internal proof finds tampering with obligations and with frozen results."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from settlement.periods import current_period
from settlement.verify import verify_period
from tests.conftest import make_partner
from tests.settlement.helpers import close, coalition_terms, earn, member_at, redeem, reverse


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
