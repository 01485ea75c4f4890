"""Co-funded earns: the EARN of the partner where the purchase happened plus one BONUS per other
funder (a partner, or the operator), each with a lot its funder issued; reversed per funder in
exact proportion; the purchase counted in `members.purchases`."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics import activity as activity_consumer
from core.caller import OPERATOR_PARTY
from core.errors import DomainError, ErrorCode
from ledger.accounts import AccountCode, account_id
from ledger.earn_once import BonusToBook, bonuses_for
from ledger.outbox import TRANSFER_BOOKED
from ledger.postings import expire_member, hold
from ledger.postings.reverse import largest_remainder, reversal_points
from outbox.delivery import Event
from partners.service import PartnerRecord
from tests.conftest import make_partner
from tests.ledger.funded import (
    OPERATOR,
    assert_ledger,
    book,
    earn_of,
    issuance,
    new_member,
    party,
    redeem,
    reverse,
    rows,
)


@pytest.fixture
async def grocer(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Grocer")


@pytest.fixture
async def fuel(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Fuel")


@pytest.fixture
async def cinema(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Cinema")


async def purchase_rows(engine: AsyncEngine, head: uuid.UUID) -> list[Any]:
    return await rows(
        engine,
        "SELECT t.id, t.code, t.points, t.partner_id, t.parent_id, t.reference, t.amount,"
        " t.metadata_, t.debit_account_id, t.credit_account_id, l.issuer_partner_id,"
        " l.points AS lot_points, l.remaining, l.available_at, l.expires_at"
        " FROM transfers t JOIN lots l ON l.transfer_id = t.id"
        " WHERE t.id = :h OR t.parent_id = :h ORDER BY t.id <> :h, t.id",
        h=head,
    )


def test_bonuses_for_splits_the_issuers_own_points_from_the_other_funders() -> None:
    grocer, fuel, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    own, bonuses = bonuses_for({None: 20, grocer: 50, fuel: 30, other: 0}, grocer)
    assert own == 50
    assert [(b.funder_id, b.points) for b in bonuses] == [(fuel, 30), (None, 20)]
    assert bonuses[1].party_id == OPERATOR_PARTY
    own, bonuses = bonuses_for({None: 5, fuel: 7}, grocer)
    assert own == 0
    assert [b.funder_id for b in bonuses] == [fuel, None]  # a partner heads, the operator last


def test_largest_remainder_adds_up_and_never_exceeds_a_weight() -> None:
    assert largest_remainder(10, [50, 30, 20]) == [5, 3, 2]
    assert largest_remainder(7, [45, 27, 18]) == [4, 2, 1]
    assert largest_remainder(1, [1, 1, 1]) == [1, 0, 0]
    for total in range(0, 101):
        parts = largest_remainder(total, [50, 33, 17])
        assert sum(parts) == total
        assert all(0 <= p <= w for p, w in zip(parts, [50, 33, 17], strict=True))


async def test_a_co_funded_earn_books_an_earn_and_a_bonus_per_other_funder(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR: 20})
    booked = await book(engine, earn)
    assert isinstance(booked, datetime)
    assert earn.head_id == earn.transfer_id

    found = await purchase_rows(engine, earn.transfer_id)
    assert [(r.code, r.points, r.partner_id, r.issuer_partner_id) for r in found] == [
        ("EARN", 50, grocer.id, grocer.id),
        ("BONUS", 30, fuel.id, fuel.id),
        ("BONUS", 20, OPERATOR_PARTY, OPERATOR_PARTY),
    ]
    wallet = account_id(AccountCode.MEMBER_WALLET, member)
    head, *children = found
    assert head.parent_id is None
    assert head.reference == earn.reference and head.amount == Decimal("100.00")
    for child, funder in zip(children, (fuel.id, OPERATOR), strict=True):
        assert child.parent_id == earn.transfer_id
        assert child.debit_account_id == issuance(funder)
        assert child.credit_account_id == wallet
        assert child.reference is None and child.amount is None and child.metadata_ == {}
        assert (child.available_at, child.expires_at) == (head.available_at, head.expires_at)
        assert child.remaining == child.lot_points
    # The operator's account the points come from exists (its own row, migration 0015).
    opened = await rows(
        engine,
        "SELECT code FROM accounts WHERE owner_id = :o ORDER BY code",
        o=OPERATOR_PARTY,
    )
    assert {r.code for r in opened} >= {
        "PARTNER_ISSUANCE",
        "PARTNER_REDEMPTION",
        "PARTNER_BREAKAGE",
    }
    await assert_ledger(engine, member)
    balance = await rows(
        engine, "SELECT sum(remaining) AS pts FROM lots WHERE member_id = :m", m=member
    )
    assert balance[0].pts == 100


async def test_without_own_points_the_first_bonus_heads_the_purchase(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {fuel.id: 30, OPERATOR: 20}, metadata={"explanation": [1]})
    assert earn.points == 0
    await book(engine, earn)
    head_id = earn.bonuses[0].transfer_id
    assert earn.head_id == head_id
    found = await purchase_rows(engine, head_id)
    assert [(r.code, r.points, r.partner_id, r.parent_id) for r in found] == [
        ("BONUS", 30, fuel.id, None),
        ("BONUS", 20, OPERATOR_PARTY, head_id),
    ]
    assert found[0].reference == earn.reference and found[0].metadata_ == {"explanation": [1]}
    assert await rows(engine, "SELECT 1 FROM transfers WHERE id = :t", t=earn.transfer_id) == []
    # A BONUS that is not a head is reversed with its head only.
    with pytest.raises(DomainError) as refused:
        await reverse(engine, earn.bonuses[1].transfer_id, None)
    assert refused.value.code == ErrorCode.NOT_REVERSIBLE
    reversal = await reverse(engine, head_id, None)
    async with engine.connect() as c:
        assert await reversal_points(c, reversal) == 50
    await assert_ledger(engine, member)


async def test_full_and_partial_reversals_return_points_per_funder_in_proportion(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR: 20})
    await book(engine, earn)
    ids = [earn.transfer_id, earn.bonuses[0].transfer_id, earn.bonuses[1].transfer_id]

    async def reversed_per_transfer() -> list[int]:
        found = await rows(
            engine,
            "SELECT o.id, COALESCE(sum(r.points), 0) AS pts FROM unnest(CAST(:ids AS uuid[]))"
            " AS o(id) LEFT JOIN transfers r ON r.reversal_of_id = o.id AND r.code = 'REVERSAL'"
            " GROUP BY o.id",
            ids=ids,
        )
        by_id = {r.id: int(r.pts) for r in found}
        return [by_id[i] for i in ids]

    first = await reverse(engine, earn.transfer_id, 10)
    assert await reversed_per_transfer() == [5, 3, 2]
    second = await reverse(engine, earn.transfer_id, 7)  # of 45/27/18: 3.5, 2.1, 1.4
    assert await reversed_per_transfer() == [9, 5, 3]
    async with engine.connect() as c:
        assert await reversal_points(c, first) == 10
        assert await reversal_points(c, second) == 7
    parts = await rows(
        engine,
        "SELECT id, reversal_of_id, partner_id, credit_account_id, parent_id, metadata_"
        " FROM transfers WHERE id = :r OR parent_id = :r ORDER BY id <> :r, id",
        r=second,
    )
    assert [p.reversal_of_id for p in parts] == ids
    assert [p.partner_id for p in parts] == [grocer.id, fuel.id, OPERATOR_PARTY]
    assert [p.credit_account_id for p in parts] == [issuance(f) for f in (grocer.id, fuel.id, None)]
    assert [p.parent_id for p in parts] == [None, second, second]
    assert parts[0].metadata_ == {"reason": "refund"}
    last = await reverse(engine, earn.transfer_id, None)  # all that is left: 83
    async with engine.connect() as c:
        assert await reversal_points(c, last) == 83
    assert await reversed_per_transfer() == [50, 30, 20]
    lots = await rows(
        engine, "SELECT sum(remaining) AS pts FROM lots WHERE member_id = :m", m=member
    )
    assert lots[0].pts == 0
    with pytest.raises(DomainError) as again:
        await reverse(engine, earn.transfer_id, 1)
    assert again.value.code == ErrorCode.ALREADY_REVERSED
    await assert_ledger(engine, member)


async def test_a_reversal_beyond_what_is_left_is_refused(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 5, fuel.id: 5})
    await book(engine, earn)
    with pytest.raises(DomainError) as refused:
        await reverse(engine, earn.transfer_id, 11)
    assert refused.value.code == ErrorCode.INVALID_AMOUNT
    assert "between 1 and 10" in refused.value.message


async def test_reversing_spent_bonus_points_claws_back_and_records_debts_per_funder(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord, cinema: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id, cinema.id)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR: 20})
    await book(engine, earn)
    await redeem(engine, cinema.id, member, 90)
    spent = {
        r.issuer_partner_id: int(r.points - r.remaining)
        for r in await rows(
            engine,
            "SELECT issuer_partner_id, points, remaining FROM lots WHERE member_id = :m",
            m=member,
        )
    }
    assert sum(spent.values()) == 90
    await reverse(engine, earn.transfer_id, None)
    debts = await rows(
        engine,
        "SELECT creditor_partner_id, sum(points) AS pts FROM debts WHERE member_id = :m"
        " GROUP BY creditor_partner_id",
        m=member,
    )
    # Each funder took back what was left in its own lot; what its lot had lost to the
    # redemption is owed to it (no part clawed back another part's points).
    assert {d.creditor_partner_id: int(d.pts) for d in debts} == {
        funder: points for funder, points in spent.items() if points
    }
    clawed = await rows(
        engine,
        "SELECT count(*) AS n FROM consumptions c JOIN transfers t ON t.id = c.transfer_id"
        " WHERE t.member_id = :m AND c.kind = 'CLAWBACK'",
        m=member,
    )
    assert clawed[0].n == 0
    await assert_ledger(engine, member)

    # A later earn repays the debts, oldest first, from its new lots (the earn's, then the
    # bonuses'): consumptions name each lot's issuer, the debt's creditor the redeemer.
    later = earn_of(member, grocer.id, {grocer.id: 60, fuel.id: 40})
    await book(engine, later)
    repaid = await rows(
        engine,
        "SELECT c.issuer_partner_id, c.redeemer_partner_id, c.points FROM consumptions c"
        " JOIN transfers t ON t.id = c.transfer_id"
        " WHERE t.member_id = :m AND c.kind = 'DEBT_REPAYMENT'",
        m=member,
    )
    assert sum(int(r.points) for r in repaid) == 90
    assert {r.issuer_partner_id for r in repaid} == {grocer.id, fuel.id}
    left = await rows(
        engine,
        "SELECT COALESCE(sum(remaining), 0) AS pts FROM debts WHERE member_id = :m",
        m=member,
    )
    assert left[0].pts == 0
    await assert_ledger(engine, member)


async def test_purchases_are_counted_only_for_purchases(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)

    async def purchases() -> int:
        found = await rows(engine, "SELECT purchases FROM members WHERE id = :m", m=member)
        return int(found[0].purchases)

    assert await purchases() == 0
    await book(engine, earn_of(member, grocer.id, {grocer.id: 10, fuel.id: 5}))
    assert await purchases() == 1
    await book(engine, earn_of(member, grocer.id, {grocer.id: 10}, purchase=False))
    assert await purchases() == 1
    await book(engine, earn_of(member, grocer.id, {}, purchase=True))  # earns nothing
    assert await purchases() == 2
    replayed = earn_of(member, grocer.id, {grocer.id: 3})
    await book(engine, replayed, idempotency_key="same-key")
    await book(engine, replayed, idempotency_key="same-key")  # a replay counts nothing
    assert await purchases() == 3


async def test_the_old_eighteen_argument_call_books_as_before(
    engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 12}, purchase=False)
    await book(engine, earn)  # no bonus, draw nor purchase: the 18 positional arguments
    found = await purchase_rows(engine, earn.transfer_id)
    assert [(r.code, r.points, r.parent_id) for r in found] == [("EARN", 12, None)]
    counted = await rows(engine, "SELECT purchases FROM members WHERE id = :m", m=member)
    assert counted[0].purchases == 0


async def test_a_bonus_to_book_may_name_the_operator_either_way(
    engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    base = earn_of(member, grocer.id, {grocer.id: 1})
    earn = replace(
        base,
        bonuses=(BonusToBook(funder_id=OPERATOR_PARTY, points=4), BonusToBook(None, 0)),
    )
    await book(engine, earn)
    found = await purchase_rows(engine, earn.transfer_id)
    assert [(r.code, r.points, r.partner_id) for r in found] == [
        ("EARN", 1, grocer.id),
        ("BONUS", 4, OPERATOR_PARTY),
    ]
    assert party(None) == OPERATOR_PARTY


async def test_bonus_points_expire_into_their_funders_breakage(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 5, fuel.id: 3, OPERATOR: 2})
    await book(engine, earn)
    async with engine.begin() as c:
        await c.execute(
            text(
                "UPDATE lots SET expires_at = now() - interval '1 second',"
                " available_at = LEAST(available_at, now() - interval '2 seconds')"
                " WHERE member_id = :m"
            ),
            {"m": member},
        )
        assert await expire_member(c, member) == 10
    expired = await rows(
        engine,
        "SELECT partner_id, points, credit_account_id FROM transfers"
        " WHERE member_id = :m AND code = 'EXPIRY' ORDER BY partner_id",
        m=member,
    )
    assert {(e.partner_id, e.points) for e in expired} == {
        (grocer.id, 5),
        (fuel.id, 3),
        (OPERATOR_PARTY, 2),
    }
    assert all(
        e.credit_account_id == account_id(AccountCode.PARTNER_BREAKAGE, e.partner_id)
        for e in expired
    )
    # Reversing the expired purchase takes its points back from each funder's breakage.
    await reverse(engine, earn.transfer_id, None)
    back = await rows(
        engine,
        "SELECT partner_id, points FROM transfers WHERE member_id = :m"
        " AND code = 'BREAKAGE_REVERSAL'",
        m=member,
    )
    assert {(b.partner_id, b.points) for b in back} == {
        (grocer.id, 5),
        (fuel.id, 3),
        (OPERATOR_PARTY, 2),
    }
    await assert_ledger(engine, member)


async def test_a_reversal_leaves_the_points_that_back_a_hold(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord, cinema: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id, cinema.id)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR: 20})
    await book(engine, earn)
    async with engine.begin() as c:
        await hold(
            c,
            member_id=member,
            partner_id=cinema.id,
            client_id="test-hold",
            points=80,
            reference="checkout",
            ttl=timedelta(hours=1),
        )
    await reverse(engine, earn.transfer_id, None)
    left = await rows(
        engine,
        "SELECT (SELECT sum(remaining) FROM lots WHERE member_id = :m) AS kept,"
        " (SELECT sum(remaining) FROM debts WHERE member_id = :m) AS owed",
        m=member,
    )
    assert (left[0].kept, left[0].owed) == (80, 80)
    await assert_ledger(engine, member)


async def test_the_activity_rollup_counts_bonus_points_as_issued_not_as_earns(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 30, OPERATOR: 20})
    await book(engine, earn)
    await reverse(engine, earn.transfer_id, 10)
    parties = [grocer.id, fuel.id, OPERATOR_PARTY]
    figures = ("earns", "reversals", "points_issued", "earn_points_reversed")

    async def activity(c: AsyncConnection) -> dict[uuid.UUID, tuple[int, ...]]:
        found = await c.execute(
            text(
                f"SELECT partner_id, {', '.join(f'sum({f})' for f in figures)}"
                " FROM analytics_daily_activity WHERE partner_id = ANY(:p) GROUP BY partner_id"
            ),
            {"p": parties},
        )
        totals = {r[0]: tuple(int(v) for v in r[1:]) for r in found}
        return {p: totals.get(p, (0, 0, 0, 0)) for p in parties}

    async with engine.begin() as c:  # rolled back: the outbox worker may count them too
        events = [
            Event(r.id, r.type, r.occurred_at, r.partner_id, r.member_id, r.payload)
            for r in await c.execute(
                text(
                    "SELECT id, type, occurred_at, partner_id, member_id, payload FROM outbox"
                    " WHERE member_id = :m AND type = :t ORDER BY id"
                ),
                {"m": member, "t": TRANSFER_BOOKED},
            )
        ]
        before = await activity(c)
        await activity_consumer.handle(c, events)
        after = await activity(c)
        await c.rollback()
    delta = {p: tuple(a - b for a, b in zip(after[p], before[p], strict=True)) for p in parties}
    assert delta == {
        grocer.id: (1, 1, 50, 5),
        fuel.id: (0, 0, 30, 3),
        OPERATOR_PARTY: (0, 0, 20, 2),
    }
