"""Partner reports matched against the ledger: planted breaks of every kind, resolution."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY as OP
from core.errors import DomainError, ErrorCode
from settlement.periods import current_period
from settlement.reconciliation import list_breaks, list_reports, resolve_break, submit_report
from settlement.records import ReportLine
from settlement.report_csv import parse_report_csv
from settlement.verify import verify_period
from tests.conftest import OPERATOR, make_partner, partner_caller
from tests.settlement.helpers import earn, member_at, obligations_of, redeem, reverse

REPORT = """reference,kind,points,amount
e1,EARN,100,100.00
e2,EARN,50,55.00
r1,REDEEM,40,40.00
r1,REVERSAL,10,
r2,REDEEM,25,
x9,EARN,10,10
e1,EARN,100,100.00
"""


async def test_planted_breaks_are_found_and_resolved(engine: AsyncEngine) -> None:
    p = await make_partner(engine, points_validity_days=100)
    other = await make_partner(engine)
    phone = await member_at(engine, p)
    await earn(engine, p, phone, "100.00", "e1")
    await earn(engine, p, phone, "50.00", "e2")  # reported with amount 55.00
    await earn(engine, p, phone, "30.00", "e3")  # not reported
    r1 = await redeem(engine, p, phone, 40, "r1")
    await reverse(engine, p, r1, 10)  # reported under r1's reference
    await redeem(engine, p, phone, 20, "r2")  # reported as 25 points
    async with engine.begin() as conn:
        period = await current_period(conn)
        report = await submit_report(
            conn, partner_caller(p.id), period.id, parse_report_csv(REPORT), source="CSV"
        )
    found = {(b.kind, b.reference, b.record_kind) for b in report.breaks}
    assert found == {
        ("DUPLICATE", "e1", "EARN"),
        ("AMOUNT_MISMATCH", "e2", "EARN"),
        ("MISSING_IN_REPORT", "e3", "EARN"),
        ("POINTS_MISMATCH", "r2", "REDEEM"),
        ("MISSING_IN_LEDGER", "x9", "EARN"),
    }
    by_ref = {b.reference: b for b in report.breaks if b.kind != "DUPLICATE"}
    assert (by_ref["r2"].reported_points, by_ref["r2"].ledger_points) == (25, 20)
    assert by_ref["e2"].ledger_amount == Decimal("50") and report.record_count == 7

    async with engine.begin() as conn:
        # A partner sees only its own reports and breaks, and resolves nothing.
        assert await list_breaks(conn, partner_caller(other.id), report_id=report.id) == []
        assert [r.id for r in await list_reports(conn, partner_caller(p.id))] == [report.id]
        assert len(await list_breaks(conn, partner_caller(p.id), report_id=report.id)) == 5
        with pytest.raises(DomainError) as err:
            await resolve_break(conn, partner_caller(p.id), by_ref["e2"].id, "ACCEPT", "ok")
        assert err.value.code == ErrorCode.INVALID_SCOPE
        with pytest.raises(DomainError) as err:
            await resolve_break(conn, OPERATOR, by_ref["e2"].id, "ACCEPT", None)
        assert err.value.code == ErrorCode.INVALID_INPUT
        accepted = await resolve_break(conn, OPERATOR, by_ref["e2"].id, "ACCEPT", "tip included")
        assert (accepted.status, accepted.note) == ("ACCEPTED", "tip included")
        adjusted = await resolve_break(conn, OPERATOR, by_ref["r2"].id, "ADJUST", "5 short")
        with pytest.raises(DomainError) as err:
            await resolve_break(conn, OPERATOR, by_ref["r2"].id, "ACCEPT", "again")
        assert err.value.code == ErrorCode.BREAK_ALREADY_RESOLVED
    assert adjusted.status == "ADJUSTED" and adjusted.adjustment_points == 5
    assert adjusted.adjustment_transfer_id is not None
    # The partner redeemed 5 more than the ledger holds: the operator owes it 5.00.
    assert await obligations_of(engine, adjusted.adjustment_transfer_id) == {
        (OP, p.id, "ADJUSTMENT", 5, 500)
    }
    async with engine.begin() as conn:
        proof = await verify_period(conn, period.id)
        mine = [d for d in proof.differences if p.id in (d.party_id, d.counterparty_id)]
        assert mine == []
        open_breaks = await list_breaks(conn, OPERATOR, report_id=report.id, status="OPEN")
        assert len(open_breaks) == 3


async def test_invalid_report_changes_nothing(engine: AsyncEngine) -> None:
    p = await make_partner(engine)
    async with engine.begin() as conn:
        period = await current_period(conn)
        with pytest.raises(DomainError) as err:
            await submit_report(
                conn,
                partner_caller(p.id),
                period.id,
                [ReportLine("a", "EARN", 1), ReportLine("b", "BURN", 1)],
            )
        assert (err.value.code, err.value.message) == (
            ErrorCode.REPORT_INVALID,
            "line 2: kind must be one of EARN, REDEEM, REVERSAL",
        )
        stored = await conn.scalar(
            text("SELECT count(*) FROM partner_reports WHERE partner_id = :p"), {"p": p.id}
        )
        assert stored == 0
        with pytest.raises(DomainError) as err:
            await submit_report(conn, partner_caller(p.id), period.id, [], partner_id=OP)
        assert err.value.code == ErrorCode.PARTNER_NOT_FOUND


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ref,kind,points,amount\n", "line 1: the header must be reference,kind,points,amount"),
        ("", "line 1: the header must be reference,kind,points,amount"),
        (
            "reference,kind,points,amount\na,EARN,1,\nb,EARN,x,1\n",
            "line 3: points 'x' is not a whole number",
        ),
        ("reference,kind,points,amount\na,EARN,0,\n", "line 2: points must be 1 to 1000000000000"),
        ("reference,kind,points,amount\na,EARN,1\n", "line 2: expected 4 fields, found 3"),
        ("reference,kind,points,amount\na,EARN,1,abc\n", "line 2: amount 'abc' is not a number"),
        (
            "reference,kind,points,amount\na,EARN,1,-1\n",
            "line 2: amount must be 0 to 1000000000 with at most 6 decimals",
        ),
        (
            "reference,kind,points,amount\n,EARN,1,\n",
            "line 2: reference must be 1 to 200 characters",
        ),
        (
            "reference,kind,points,amount\na,GIFT,1,\n",
            "line 2: kind must be one of EARN, REDEEM, REVERSAL",
        ),
        ('reference,kind,points,amount\n"a,EARN,1,\n', "line 2: malformed CSV"),
    ],
)
def test_malformed_csv_names_the_line(content: str, message: str) -> None:
    with pytest.raises(DomainError) as err:
        parse_report_csv(content)
    assert err.value.code == ErrorCode.REPORT_INVALID
    assert err.value.message.startswith(message)


def test_csv_parses_records() -> None:
    records = parse_report_csv(
        "\ufeffreference,kind,points,amount\r\nA-1,earn,12,3.50\r\n\r\nB,REDEEM,4,\r\n"
    )
    assert records == [
        ReportLine("A-1", "EARN", 12, Decimal("3.50")),
        ReportLine("B", "REDEEM", 4, None),
    ]
