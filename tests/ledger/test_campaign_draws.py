"""Campaign budgets and per-member limits, enforced inside the earn's one statement
(`ledger_book_earn`): a budget is never overspent under concurrency and borrows from sibling
slots; a limit refuses the draw; a refusal books nothing and claims no key; a reversal gives
the draws their share back."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import date, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import create_engine
from ledger.earn_once import (
    CAMPAIGN_PERIOD,
    CampaignDraw,
    CampaignLimitReached,
    book_earn_once,
)
from partners.service import PartnerRecord
from tests.conftest import make_partner
from tests.ledger.funded import (
    OPERATOR,
    assert_ledger,
    book,
    earn_of,
    key,
    member_slot,
    new_campaign,
    new_member,
    reverse,
    rows,
    slots_of,
    usage_of,
)

MONTH = date(2030, 1, 1)


@pytest.fixture
async def grocer(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Grocer")


@pytest.fixture
async def fuel(engine: AsyncEngine) -> PartnerRecord:
    return await make_partner(engine, name="Fuel")


async def booked_transfers(engine: AsyncEngine, member: uuid.UUID) -> int:
    found = await rows(engine, "SELECT count(*) AS n FROM transfers WHERE member_id = :m", m=member)
    return int(found[0].n)


async def test_a_budgeted_draw_comes_from_the_members_slot(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    campaign = await new_campaign(engine, [100, 100, 100, 100])
    member = await new_member(engine, grocer.id)
    slot = await member_slot(engine, member, 4)
    draw = CampaignDraw(campaign, version=3, points=40, budgeted=True)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 20, OPERATOR: 20}, draws=(draw,))
    await book(engine, earn)
    expected = [100] * 4
    expected[slot] = 60
    assert await slots_of(engine, campaign) == expected
    head = await rows(engine, "SELECT metadata_ FROM transfers WHERE id = :t", t=earn.transfer_id)
    assert head[0].metadata_["campaigns"] == [
        {"id": str(campaign), "version": 3, "points": 40, "budgeted": True, "period_start": None}
    ]
    assert await usage_of(engine, campaign, member, CAMPAIGN_PERIOD) is None  # not counted


async def test_an_empty_slot_borrows_from_its_siblings_in_order(
    engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    member = await new_member(engine, grocer.id)
    slot = await member_slot(engine, member, 4)
    budget = [30, 30, 30, 30]
    budget[slot] = 0
    campaign = await new_campaign(engine, budget)
    draw = CampaignDraw(campaign, version=1, points=50, budgeted=True)
    await book(engine, earn_of(member, grocer.id, {grocer.id: 50}, draws=(draw,)))
    expected = list(budget)
    expected[(slot + 1) % 4] = 0  # the next sibling first, all it had
    expected[(slot + 2) % 4] = 10  # then the one after it, for the rest
    assert await slots_of(engine, campaign) == expected


async def test_a_budget_that_cannot_cover_the_draw_books_nothing_and_claims_no_key(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    campaign = await new_campaign(engine, [10, 10, 10, 10])
    member = await new_member(engine, grocer.id)
    draw = CampaignDraw(campaign, version=1, points=41, budgeted=True)
    earn = earn_of(member, grocer.id, {grocer.id: 50, fuel.id: 41}, draws=(draw,))
    with pytest.raises(CampaignLimitReached) as refused:
        await book(engine, earn, idempotency_key="budget-key")
    assert (refused.value.campaign_id, refused.value.kind) == (campaign, "BUDGET")
    assert await slots_of(engine, campaign) == [10, 10, 10, 10]
    assert await booked_transfers(engine, member) == 0
    counted = await rows(engine, "SELECT purchases FROM members WHERE id = :m", m=member)
    assert counted[0].purchases == 0
    # Priced again without the campaign, the same key books.
    again = replace(
        earn_of(member, grocer.id, {grocer.id: 50}),
        transfer_id=earn.transfer_id,
        lot_id=earn.lot_id,
    )
    assert isinstance(await book(engine, again, idempotency_key="budget-key"), datetime)
    assert await booked_transfers(engine, member) == 1
    # A campaign without slots has no budget left at all.
    empty = await new_campaign(engine, [])
    with pytest.raises(CampaignLimitReached) as none:
        await book(
            engine,
            earn_of(
                member,
                grocer.id,
                {grocer.id: 5},
                draws=(CampaignDraw(empty, version=1, points=5, budgeted=True),),
            ),
        )
    assert none.value.kind == "BUDGET"


async def test_a_member_limit_refuses_the_draw_past_it_and_books_nothing(
    engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    campaign = await new_campaign(engine)
    member = await new_member(engine, grocer.id)

    def draw(points: int) -> CampaignDraw:
        return CampaignDraw(campaign, 1, points, member_limit=100, period_start=MONTH)

    await book(engine, earn_of(member, grocer.id, {grocer.id: 60}, draws=(draw(60),)))
    assert await usage_of(engine, campaign, member, MONTH) == 60
    with pytest.raises(CampaignLimitReached) as refused:
        await book(engine, earn_of(member, grocer.id, {grocer.id: 41}, draws=(draw(41),)))
    assert (refused.value.campaign_id, refused.value.kind) == (campaign, "MEMBER_LIMIT")
    assert await usage_of(engine, campaign, member, MONTH) == 60
    assert await booked_transfers(engine, member) == 1
    await book(engine, earn_of(member, grocer.id, {grocer.id: 40}, draws=(draw(40),)))
    assert await usage_of(engine, campaign, member, MONTH) == 100
    # Another period counts from zero; a limit without a period counts the whole campaign.
    other = replace(draw(100), period_start=date(2030, 2, 1))
    await book(engine, earn_of(member, grocer.id, {grocer.id: 100}, draws=(other,)))
    whole = CampaignDraw(campaign, 1, 7, member_limit=10)
    await book(engine, earn_of(member, grocer.id, {grocer.id: 7}, draws=(whole,)))
    assert await usage_of(engine, campaign, member, CAMPAIGN_PERIOD) == 7


async def test_inside_a_transaction_a_refusal_leaves_the_transaction_usable(
    engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    campaign = await new_campaign(engine, [1])
    member = await new_member(engine, grocer.id)
    draw = CampaignDraw(campaign, 1, 5, budgeted=True)
    async with engine.begin() as c:
        with pytest.raises(CampaignLimitReached):
            await book_earn_once(
                c,
                earn_of(member, grocer.id, {grocer.id: 5}, draws=(draw,)),
                key=key(),
                request_hash="h",
                result={},
            )
        booked = await book_earn_once(
            c, earn_of(member, grocer.id, {grocer.id: 5}), key=key(), request_hash="h", result={}
        )
        assert isinstance(booked, datetime)
    assert await booked_transfers(engine, member) == 1


async def test_a_reversal_gives_the_draws_their_share_back(
    engine: AsyncEngine, grocer: PartnerRecord, fuel: PartnerRecord
) -> None:
    budgeted = await new_campaign(engine, [500, 500])
    limited = await new_campaign(engine)
    member = await new_member(engine, grocer.id)
    slot = await member_slot(engine, member, 2)
    draws = (
        CampaignDraw(budgeted, 2, 30, budgeted=True),
        CampaignDraw(limited, 1, 21, member_limit=1000, period_start=MONTH),
    )
    # 100 points: base 49 (grocer), campaign lines 30 and 21 shared with fuel and the operator.
    earn = earn_of(member, grocer.id, {grocer.id: 64, fuel.id: 21, OPERATOR: 15}, draws=draws)
    await book(engine, earn)
    assert (await slots_of(engine, budgeted))[slot] == 470
    assert await usage_of(engine, limited, member, MONTH) == 21

    first = await reverse(engine, earn.transfer_id, 50)  # half: 15 and 10 (of 10.5) back
    assert (await slots_of(engine, budgeted))[slot] == 485
    assert await usage_of(engine, limited, member, MONTH) == 11
    note = await rows(engine, "SELECT metadata_ FROM transfers WHERE id = :r", r=first)
    assert sorted(note[0].metadata_["campaigns"], key=lambda c: c["points"]) == [
        {"id": str(limited), "points": 10},
        {"id": str(budgeted), "points": 15},
    ]
    await reverse(engine, earn.transfer_id, 1)  # floor(30 × 51 / 100) − 15 = 0, 10 − 10 = 0
    assert (await slots_of(engine, budgeted))[slot] == 485
    await reverse(engine, earn.transfer_id, None)  # the rest: every draw whole again
    assert (await slots_of(engine, budgeted))[slot] == 500
    assert await usage_of(engine, limited, member, MONTH) == 0
    await assert_ledger(engine, member)


async def test_concurrent_earns_never_overspend_a_budget(
    database_url: str, engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    """50 earns on 50 connections at once, 30 points each, against a budget of 1,000 in 4
    slots: exactly 33 get it, the rest are refused, no slot goes negative, no deadlock."""
    campaign = await new_campaign(engine, [250, 250, 250, 250])
    members = [await new_member(engine, grocer.id) for _ in range(50)]
    wide = create_engine(database_url, pool_size=50)
    try:
        # Open the connections first, so the earns really start together.
        conns = [await wide.connect() for _ in members]
        autos = [await c.execution_options(isolation_level="AUTOCOMMIT") for c in conns]
        start = asyncio.Event()

        async def one(conn: AsyncConnection, member: uuid.UUID) -> bool:
            earn = earn_of(
                member,
                grocer.id,
                {grocer.id: 30},
                draws=(CampaignDraw(campaign, 1, 30, budgeted=True),),
            )
            await start.wait()
            try:
                await book_earn_once(conn, earn, key=key(), request_hash="h", result={})
            except CampaignLimitReached as refused:
                assert refused.kind == "BUDGET"
                return False
            return True

        tasks = [asyncio.create_task(one(c, m)) for c, m in zip(autos, members, strict=True)]
        await asyncio.sleep(0.05)
        start.set()
        results = await asyncio.gather(*tasks)
        for c in conns:
            await c.close()
    finally:
        await wide.dispose()
    slots = await slots_of(engine, campaign)
    assert all(s >= 0 for s in slots)
    assert sum(results) == 33
    assert sum(slots) == 1000 - 30 * sum(results) == 10
    async with engine.connect() as c:
        drawn = await c.scalar(
            text("SELECT sum(points) FROM transfers WHERE member_id = ANY(:m) AND code = 'EARN'"),
            {"m": members},
        )
    assert drawn == 990


async def test_concurrent_earns_drawing_from_two_budgets_never_deadlock(
    database_url: str, engine: AsyncEngine, grocer: PartnerRecord
) -> None:
    """Each earn draws from two budgets (in campaign id order, whatever the order given), the
    second one short in most slots, so most earns borrow: none deadlocks and neither budget
    is overspent."""
    first = await new_campaign(engine, [120, 0, 40, 0, 200, 0, 0, 40])
    second = await new_campaign(engine, [0, 0, 0, 333])
    members = [await new_member(engine, grocer.id) for _ in range(40)]
    wide = create_engine(database_url, pool_size=40)
    try:
        conns = [await wide.connect() for _ in members]
        autos = [await c.execution_options(isolation_level="AUTOCOMMIT") for c in conns]
        start = asyncio.Event()

        async def one(conn: AsyncConnection, member: uuid.UUID, flip: bool) -> bool:
            draws = (
                CampaignDraw(first, 1, 20, budgeted=True),
                CampaignDraw(second, 1, 10, budgeted=True),
            )
            earn = earn_of(member, grocer.id, {grocer.id: 30}, draws=draws[::-1] if flip else draws)
            await start.wait()
            try:
                await book_earn_once(conn, earn, key=key(), request_hash="h", result={})
            except CampaignLimitReached:
                return False
            return True

        tasks = [
            asyncio.create_task(one(c, m, i % 2 == 1))
            for i, (c, m) in enumerate(zip(autos, members, strict=True))
        ]
        await asyncio.sleep(0.05)
        start.set()
        results = await asyncio.gather(*tasks)
        for c in conns:
            await c.close()
    finally:
        await wide.dispose()
    booked = sum(results)
    assert booked == 20  # the first budget (400) covers 20 draws of 20, the second 33
    assert all(s >= 0 for s in await slots_of(engine, first) + await slots_of(engine, second))
    assert sum(await slots_of(engine, first)) == 400 - 20 * booked
    assert sum(await slots_of(engine, second)) == 333 - 10 * booked
