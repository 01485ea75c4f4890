"""Closing periods: a hand-worked scenario, late reversals, cutoffs, payments, statements."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY as OP
from core.errors import DomainError, ErrorCode
from settlement import views
from settlement.close import close_period
from settlement.payments import record_payment
from settlement.periods import current_period, get_period, list_periods
from settlement.statements import render_csv, render_json, statement
from settlement.verify import verify_period
from tests.conftest import OPERATOR, make_partner, partner_caller
from tests.settlement.helpers import (
    close,
    coalition_terms,
    earn,
    member_at,
    period_of,
    redeem,
    reverse,
)


async def test_hand_worked_scenario(engine: AsyncEngine) -> None:
    """Three partners, a 0.05 clearing fee; every figure below is worked out by hand."""
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine, points_validity_days=200)
    c = await make_partner(engine, points_validity_days=300)
    phone = await member_at(engine, a, b, c)
    await close(engine)  # a clean period holding only this scenario (tests run one at a time)
    async with coalition_terms(engine, clearing_fee=Decimal("0.05")):
        await earn(engine, a, phone, "1000")  # lot A 1000, expires first
        await earn(engine, c, phone, "500")  # lot C 500, expires last
        at_b = await redeem(engine, b, phone, 1200)  # A 1000 + C 200: A→B 1000.00, C→B 200.00
        await redeem(engine, c, phone, 100)  # C's own points: nothing
        await earn(engine, b, phone, "300")  # lot B 300
        await redeem(engine, a, phone, 250)  # B's 250 at A: B→A 250.00
        await reverse(engine, b, at_b, 300)  # restores C 200 then A 100: B→C 200, B→A 100
    period = await close(engine)
    assert period.status == "CLOSED"

    lines = {
        (ln.debtor_id, ln.creditor_id, ln.kind): (ln.points, ln.amount)
        for ln in await _as_operator(engine, views.gross_lines, period.id)
    }
    assert lines == {
        (a.id, b.id, "REDEMPTION"): (1000, 100000),
        (c.id, b.id, "REDEMPTION"): (200, 20000),
        (b.id, a.id, "REDEMPTION"): (250, 25000),
        (b.id, c.id, "REDEMPTION_REVERSAL"): (200, 20000),
        (b.id, a.id, "REDEMPTION_REVERSAL"): (100, 10000),
        (b.id, OP, "CLEARING_FEE"): (1200, 6000),  # 5000 for A's points + 1000 for C's
        (a.id, OP, "CLEARING_FEE"): (250, 1250),
        (OP, b.id, "CLEARING_FEE_REVERSAL"): (300, 1500),
    }
    nets = {
        (n.party_a, n.party_b): n.net
        for n in await _as_operator(engine, views.bilateral_nets, period.id)
    }
    ab = (a.id, b.id) if a.id < b.id else (b.id, a.id)
    assert nets[ab] == (65000 if ab[0] == a.id else -65000)  # A owes B 1000 − 350 net
    assert nets[(b.id, c.id) if b.id < c.id else (c.id, b.id)] == 0
    positions = {
        p.party_id: (p.receivable, p.payable, p.net)
        for p in await _as_operator(engine, views.positions, period.id)
    }
    assert positions == {
        a.id: (35000, 101250, -66250),
        b.id: (121500, 61000, 60500),
        c.id: (20000, 20000, 0),
        OP: (7250, 1500, 5750),
    }
    instructions = await _as_operator(engine, views.instructions, period.id)
    # One payer (A) and two payees (the operator, whose id sorts first, then B): 2 payments.
    assert [(i.payer_id, i.payee_id, i.amount) for i in instructions] == [
        (a.id, OP, 5750),
        (a.id, b.id, 60500),
    ]

    async with engine.begin() as conn:
        stmt_a = await statement(conn, partner_caller(a.id), period.id, a.id)
        stmt_b = await statement(conn, OPERATOR, period.id, b.id)
        stmt_c = await statement(conn, OPERATOR, period.id, c.id)
        proof = await verify_period(conn, period.id)
    assert (stmt_a.points_issued, stmt_a.points_redeemed_elsewhere) == (1000, 900)
    assert (stmt_a.others_points_redeemed_here, stmt_a.fees) == (250, 1250)
    assert (stmt_a.gross_payable, stmt_a.gross_receivable, stmt_a.net) == (101250, 35000, -66250)
    assert [i.amount for i in stmt_a.instructions] == [5750, 60500]
    assert (stmt_b.points_issued, stmt_b.redemption_reversal_points) == (300, 300)
    assert (stmt_b.others_points_redeemed_here, stmt_b.points_redeemed_elsewhere) == (900, 250)
    assert (stmt_b.fees, stmt_b.net) == (4500, 60500)
    assert (stmt_c.points_issued, stmt_c.own_points_redeemed_here) == (500, 100)
    assert (stmt_c.points_redeemed_elsewhere, stmt_c.net) == (0, 0)
    assert proof.ok, proof.differences
    # At B: 2 + 2 fees; at A: 1 + 1 fee; the reversal: 2 + 2 fee reversals (one per issuer).
    assert proof.obligations_checked == 10

    csv_text = render_csv(stmt_a)
    assert "summary,net,,,-66250,-662.50," in csv_text
    assert f"instruction,{instructions[1].id},{b.id},,-60500,-605.00,unpaid" in csv_text
    assert '"net": -66250' in render_json(stmt_a)

    # Payments: the period is SETTLED with the last one.
    async with engine.begin() as conn:
        await record_payment(conn, instructions[0].id, "BANK-1")
        assert (await get_period(conn, period.id)).status == "CLOSED"  # type: ignore[union-attr]
        with pytest.raises(DomainError) as err:
            await record_payment(conn, instructions[0].id, "BANK-1b")
        assert err.value.code == ErrorCode.ALREADY_PAID
    async with engine.begin() as conn:
        paid = await record_payment(conn, instructions[1].id, "BANK-2")
        assert paid.bank_reference == "BANK-2" and paid.paid_at is not None
        settled = await get_period(conn, period.id)
        assert settled is not None and settled.status == "SETTLED"
        with pytest.raises(DomainError) as err:
            await record_payment(conn, uuid.uuid4(), "x")
        assert err.value.code == ErrorCode.INSTRUCTION_NOT_FOUND


async def _as_operator(engine: AsyncEngine, view, period_id: uuid.UUID):  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        return await view(conn, OPERATOR, period_id)


async def test_partner_sees_only_its_own_rows(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    other = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "100")
    await redeem(engine, b, phone, 40)
    period = await close(engine)
    async with engine.begin() as conn:
        mine = partner_caller(a.id)
        assert [p.party_id for p in await views.positions(conn, mine, period.id)] == [a.id]
        lines = await views.gross_lines(conn, mine, period.id)
        assert lines and all(a.id in (x.debtor_id, x.creditor_id) for x in lines)
        nets = await views.bilateral_nets(conn, mine, period.id)
        assert nets and all(a.id in (n.party_a, n.party_b) for n in nets)
        ins = await views.instructions(conn, mine, period.id)
        assert ins and all(a.id in (i.payer_id, i.payee_id) for i in ins)
        assert await views.positions(conn, partner_caller(other.id), period.id) == []
        with pytest.raises(DomainError) as err:
            await statement(conn, mine, period.id, b.id)
        assert err.value.code == ErrorCode.PARTNER_NOT_FOUND
        with pytest.raises(DomainError) as err:
            await views.positions(conn, partner_caller(a.id, "members:read"), period.id)
        assert err.value.code == ErrorCode.INVALID_SCOPE
        with pytest.raises(DomainError) as err:
            await views.positions(conn, OPERATOR, uuid.uuid4())
        assert err.value.code == ErrorCode.PERIOD_NOT_FOUND


async def test_late_reversal_lands_in_the_next_period(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "100")
    burnt = await redeem(engine, b, phone, 80)
    closed = await close(engine)
    frozen = await _snapshot(engine, closed.id)
    back = await reverse(engine, b, burnt, 30)
    async with engine.begin() as conn:
        open_now = await current_period(conn)
    assert await period_of(engine, burnt) == {closed.id}
    assert await period_of(engine, back) == {open_now.id}
    assert await _snapshot(engine, closed.id) == frozen
    nxt = await close(engine)
    assert nxt.id == open_now.id
    assert await _snapshot(engine, closed.id) == frozen  # a CLOSED period never changes
    async with engine.begin() as conn:
        mine = {p.party_id: p.net for p in await views.positions(conn, OPERATOR, nxt.id)}
    assert (mine[a.id], mine[b.id]) == (3000, -3000)


async def _snapshot(engine: AsyncEngine, period_id: uuid.UUID) -> tuple[object, ...]:
    async with engine.begin() as conn:
        parts = []
        for table, order in (
            ("obligations", "id"),
            ("settlement_gross_lines", "debtor_id, creditor_id, kind"),
            ("settlement_positions", "party_id"),
            ("settlement_instructions", "id"),
            ("settlement_statements", "party_id"),
        ):
            rows = await conn.execute(
                text(f"SELECT * FROM {table} WHERE period_id = :p ORDER BY {order}"),
                {"p": period_id},
            )
            parts.append(tuple(tuple(r) for r in rows))
        period = await get_period(conn, period_id)
        return (*parts, period)


async def test_cutoff_in_the_past_moves_later_obligations(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "100")
    before = await redeem(engine, b, phone, 10)
    async with engine.begin() as conn:
        cutoff = await conn.scalar(text("SELECT clock_timestamp()"))
    after = await redeem(engine, b, phone, 20)
    closed = await close(engine, cutoff)
    assert closed.cutoff == cutoff
    async with engine.begin() as conn:
        nxt = await current_period(conn)
    assert nxt.starts_at == cutoff
    assert await period_of(engine, before) == {closed.id}
    assert await period_of(engine, after) == {nxt.id}


async def test_invalid_cutoffs(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        period = await current_period(conn)
        now = await conn.scalar(text("SELECT now()"))
    for cutoff in (now + timedelta(hours=1), period.starts_at - timedelta(seconds=1)):
        async with engine.begin() as conn:
            with pytest.raises(DomainError) as err:
                await close_period(conn, cutoff)
            assert err.value.code == ErrorCode.INVALID_CUTOFF


async def test_empty_period_is_settled_at_close(engine: AsyncEngine) -> None:
    await close(engine)
    empty = await close(engine)  # nothing was booked in between
    assert empty.status == "SETTLED" and empty.settled_at == empty.closed_at
    async with engine.begin() as conn:
        page = await list_periods(conn, None, 1000)
        assert empty.id in [p.id for p in page]
        after = await list_periods(conn, empty.id, 10)
        assert [p.status for p in after] == ["OPEN"]
        assert (await verify_period(conn, empty.id)).ok


async def test_open_period_statement_is_live(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "100")
    await redeem(engine, b, phone, 40)
    async with engine.begin() as conn:
        period = await current_period(conn)
        live = await statement(conn, partner_caller(b.id), period.id, b.id)
    assert live.period_status == "OPEN"
    assert (live.others_points_redeemed_here, live.gross_receivable, live.net) == (40, 4000, 4000)
    assert live.instructions == ()
