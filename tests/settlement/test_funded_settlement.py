"""Co-funded points settle to their funders with the existing obligation rules: under
REDEMPTION funding each funder (the operator included) owes the partner where its points are
redeemed; under ISSUANCE each partner funder owes the operator its issue price at the earn, the
operator nothing; reversals reverse each funder's part; a period with the operator as the debtor
of REDEMPTION lines closes, nets to zero, and the internal proof agrees."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY
from partners.service import PartnerRecord
from settlement.close import close_period
from settlement.periods import current_period
from settlement.statements import statement
from settlement.verify import verify_period
from settlement.views import bilateral_nets, positions
from tests.conftest import OPERATOR, make_partner
from tests.ledger.funded import (
    OPERATOR as OPERATOR_FUNDER,
)
from tests.ledger.funded import (
    assert_ledger,
    book,
    earn_of,
    funding,
    new_member,
    redeem,
    reverse,
)

Obligation = tuple[uuid.UUID, uuid.UUID, str, int, int]


@pytest.fixture
async def grocer(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Grocer")


@pytest.fixture
async def fuel(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Fuel", issue_price="0.5")


@pytest.fixture
async def cinema(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Cinema", redeem_price="0.8")


async def obligations_of(engine: AsyncEngine, *transfer_ids: uuid.UUID) -> set[Obligation]:
    """(debtor, creditor, kind, points, amount) booked for the transfers."""
    async with engine.connect() as c:
        found = await c.execute(
            text(
                "SELECT debtor_id, creditor_id, kind, points, amount FROM obligations"
                " WHERE transfer_id = ANY(:ids)"
            ),
            {"ids": list(transfer_ids)},
        )
        return {(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in found}


async def parts_of(engine: AsyncEngine, reversal: uuid.UUID) -> list[uuid.UUID]:
    async with engine.connect() as c:
        found = await c.execute(
            text("SELECT id FROM transfers WHERE id = :r OR parent_id = :r"), {"r": reversal}
        )
        return [r.id for r in found]


async def prove(engine: AsyncEngine, period_id: uuid.UUID) -> None:
    async with engine.connect() as c:
        proof = await verify_period(c, period_id)
    assert proof.ok, proof.differences


async def test_redeemed_bonus_points_make_each_funder_owe_the_redeemer(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord, cinema: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id, cinema.id)
    async with engine.begin() as c:
        await close_period(c)  # a period of this test's transfers only
    async with funding(engine, "REDEMPTION", clearing_fee=Decimal("0.01")):
        earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR_FUNDER: 20})
        await book(engine, earn)
        ids = [earn.transfer_id, *(b.transfer_id for b in earn.bonuses)]
        assert await obligations_of(engine, *ids) == set()  # nothing owed at the earn
        burnt = await redeem(engine, cinema.id, member, 100)
        refunded = await reverse(engine, burnt, 10)  # the latest-expiring (last) lots first
    owed = await obligations_of(engine, burnt)
    assert {o for o in owed if o[2] == "REDEMPTION"} == {
        (grocer.id, cinema.id, "REDEMPTION", 50, 5000),
        (fuel.id, cinema.id, "REDEMPTION", 30, 3000),
        (OPERATOR_PARTY, cinema.id, "REDEMPTION", 20, 2000),
    }
    # The clearing fee is the redeemer's, on every other issuer's points, the operator's too.
    assert {o for o in owed if o[2] == "CLEARING_FEE"} == {
        (cinema.id, OPERATOR_PARTY, "CLEARING_FEE", 50, 50),
        (cinema.id, OPERATOR_PARTY, "CLEARING_FEE", 30, 30),
        (cinema.id, OPERATOR_PARTY, "CLEARING_FEE", 20, 20),
    }
    back = await obligations_of(engine, refunded)
    reversed_lines = [o for o in back if o[2] == "REDEMPTION_REVERSAL"]
    assert sum(o[3] for o in reversed_lines) == 10
    assert all(o[0] == cinema.id for o in reversed_lines)
    assert {o[1] for o in reversed_lines} <= {grocer.id, fuel.id, OPERATOR_PARTY}
    await assert_ledger(engine, member)

    async with engine.begin() as c:
        period = await current_period(c)
    await prove(engine, period.id)
    async with engine.begin() as c:
        closed = await close_period(c)
    await prove(engine, closed.id)
    async with engine.connect() as c:
        nets = {p.party_id: p.net for p in await positions(c, OPERATOR, closed.id)}
        bilateral = await bilateral_nets(c, OPERATOR, closed.id)
        mine = await statement(c, OPERATOR, closed.id, OPERATOR_PARTY)
        fuels = await statement(c, OPERATOR, closed.id, fuel.id)
    assert sum(nets.values()) == 0
    assert nets[cinema.id] > 0 and nets[fuel.id] < 0
    assert any(OPERATOR_PARTY in (b.party_a, b.party_b) for b in bilateral)
    assert mine.points_issued == 20 and mine.points_redeemed_elsewhere > 0
    assert fuels.points_issued == 30
    assert any(
        line.kind == "REDEMPTION" and line.debtor_id == OPERATOR_PARTY for line in mine.lines
    )


async def test_under_issuance_each_partner_funder_owes_its_issue_price_and_the_operator_none(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord, cinema: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id, cinema.id)
    async with funding(engine, "ISSUANCE"):
        earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR_FUNDER: 20})
        await book(engine, earn)
        fuel_bonus, operator_bonus = (b.transfer_id for b in earn.bonuses)
        assert await obligations_of(engine, earn.transfer_id) == {
            (grocer.id, OPERATOR_PARTY, "ISSUANCE", 50, 5000)
        }
        assert await obligations_of(engine, fuel_bonus) == {
            (fuel.id, OPERATOR_PARTY, "ISSUANCE", 30, 1500)  # fuel's own issue price, 0.50
        }
        assert await obligations_of(engine, operator_bonus) == set()

        partial = await reverse(engine, earn.transfer_id, 10)  # 5, 3 and 2 points
        assert await obligations_of(engine, *await parts_of(engine, partial)) == {
            (OPERATOR_PARTY, grocer.id, "ISSUANCE_REVERSAL", 5, 500),
            (OPERATOR_PARTY, fuel.id, "ISSUANCE_REVERSAL", 3, 150),
        }
        burnt = await redeem(engine, cinema.id, member, 40)
        assert await obligations_of(engine, burnt) == {
            (OPERATOR_PARTY, cinema.id, "REDEMPTION", 40, 3200)
        }
        rest = await reverse(engine, earn.transfer_id, None)
        assert await obligations_of(engine, *await parts_of(engine, rest)) == {
            (OPERATOR_PARTY, grocer.id, "ISSUANCE_REVERSAL", 45, 4500),
            (OPERATOR_PARTY, fuel.id, "ISSUANCE_REVERSAL", 27, 1350),
        }
    await assert_ledger(engine, member)
    async with engine.begin() as c:
        period = await current_period(c)
    await prove(engine, period.id)
    # The proof derives the BONUS's obligation on its own: one missing is reported.
    async with engine.begin() as c:
        await c.execute(text("DELETE FROM obligations WHERE transfer_id = :t"), {"t": fuel_bonus})
        proof = await verify_period(c, period.id)
        await c.rollback()
    assert {(d.transfer_id, d.party_id, d.kind) for d in proof.differences} == {
        (fuel_bonus, fuel.id, "ISSUANCE")
    }
    async with engine.begin() as c:
        closed = await close_period(c)
    await prove(engine, closed.id)


async def test_debts_owed_to_the_operator_settle_when_repaid(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord, cinema: PartnerRecord
) -> None:
    """An operator-funded part reversed after it was spent leaves a debt owed to the
    operator; points of another issuer that repay it are that issuer's points used for the
    operator: a DEBT_REPAYMENT obligation to the operator (REDEMPTION funding)."""
    member = await new_member(engine, grocer.id, cinema.id)
    earn = earn_of(member, grocer.id, {grocer.id: 10, OPERATOR_FUNDER: 90})
    await book(engine, earn)
    await redeem(engine, cinema.id, member, 100)
    await reverse(engine, earn.transfer_id, None)
    later = earn_of(member, fuel.id, {fuel.id: 200})
    await book(engine, later)
    async with engine.connect() as c:
        repaid = await c.execute(
            text(
                "SELECT o.debtor_id, o.creditor_id, sum(o.points) AS pts FROM obligations o"
                " JOIN transfers t ON t.id = o.transfer_id"
                " WHERE t.member_id = :m AND o.kind = 'DEBT_REPAYMENT'"
                " GROUP BY o.debtor_id, o.creditor_id"
            ),
            {"m": member},
        )
        by_creditor = {r.creditor_id: (r.debtor_id, int(r.pts)) for r in repaid}
    assert by_creditor == {OPERATOR_PARTY: (fuel.id, 90), grocer.id: (fuel.id, 10)}
    await assert_ledger(engine, member)
    async with engine.begin() as c:
        period = await current_period(c)
    await prove(engine, period.id)
