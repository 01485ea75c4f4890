"""Members moving between tiers: upgrades through the real outbox delivery within seconds, no
downgrade on a refund, downgrades at the daily evaluation after the grace period (time is
moved with the evaluation's `now`), one `member.tier_changed` event per change, and a new
policy applied lazily."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef
from points.rules.model import TierRule
from points.service import earn_points
from points.tiers import evaluation
from points.tiers.evaluation import evaluate_members, evaluate_tiers, run_daily
from points.tiers.policy import current_policy
from points.tiers.qualifying import qualifying_points
from tests.conftest import make_partner, partner_caller
from tests.ledger import helpers as h
from tests.outbox.helpers import wait_for
from tests.tiers.helpers import (
    GOLD,
    SILVER,
    history,
    running_worker,
    set_policy,
    tier_events,
    tier_of,
    tier_row,
)

WITHIN_SECONDS = 10.0


async def _db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as c:
        found = await c.scalar(text("SELECT now()"))
    assert isinstance(found, datetime)
    return found


async def _qualifying(engine: AsyncEngine, member: uuid.UUID, now: datetime | None = None) -> int:
    async with engine.connect() as c:
        return await qualifying_points(c, member, window_days=365, now=now or await _db_now(engine))


async def _earn_at(
    engine: AsyncEngine, partner: uuid.UUID, member: uuid.UUID, amount: int, at: datetime
) -> None:
    async with engine.begin() as c:
        await earn_points(
            c,
            partner_caller(partner),
            member=MemberRef(id=member),
            amount=Decimal(amount),
            reference="receipt",
            occurred_at=at,
            idempotency_key=h.key(),
        )


async def test_a_member_is_upgraded_within_seconds_through_the_outbox(
    tiers_engine: AsyncEngine,
) -> None:
    await set_policy(tiers_engine)
    grocer = await make_partner(tiers_engine)
    fuel = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id, fuel.id])
    async with running_worker(tiers_engine):
        await h.earn(tiers_engine, grocer.id, member, 600)
        await h.earn(tiers_engine, fuel.id, member, 399)  # 999: one short of SILVER
        await asyncio.sleep(1)  # the consumer has seen both by now, and left the member be
        assert await tier_of(tiers_engine, member) == ""
        started = time.monotonic()
        await h.earn(tiers_engine, fuel.id, member, 1)  # across partners: 1000
        await wait_for(lambda: tier_of(tiers_engine, member), lambda t: t == "SILVER", "SILVER", 30)
        assert time.monotonic() - started < WITHIN_SECONDS
        await h.earn(tiers_engine, grocer.id, member, 4500)
        await wait_for(lambda: tier_of(tiers_engine, member), lambda t: t == "GOLD", "GOLD", 30)
    assert await history(tiers_engine, member) == [
        (None, "SILVER", "UPGRADE"),
        ("SILVER", "GOLD", "UPGRADE"),
    ]
    events = await tier_events(tiers_engine, member)
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        (None, "SILVER", "UPGRADE"),
        ("SILVER", "GOLD", "UPGRADE"),
    ]
    assert events[1]["member_id"] == str(member) and events[1]["qualifying_points"] == 5500
    assert datetime.fromisoformat(events[1]["at"]) <= await _db_now(tiers_engine)
    row = await tier_row(tiers_engine, member)
    assert row.tier_code == "GOLD" and row.qualifying_points == 5500 and row.below_since is None


async def test_a_refund_alone_never_downgrades_it_starts_the_grace_period(
    tiers_engine: AsyncEngine,
) -> None:
    await set_policy(tiers_engine)
    grocer = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id])
    async with running_worker(tiers_engine):
        earned = await h.earn(tiers_engine, grocer.id, member, 1200)
        await wait_for(lambda: tier_of(tiers_engine, member), lambda t: t == "SILVER", "SILVER")
        await h.reverse(tiers_engine, grocer.id, earned.transfer_id, 500)  # 700 left
        row = await wait_for(
            lambda: tier_row(tiers_engine, member),
            lambda r: r.below_since is not None,
            "the grace period to start",
        )
        assert row.tier_code == "SILVER" and row.qualifying_points == 700
        assert await _qualifying(tiers_engine, member) == 700
        # Earning back above the threshold ends the grace period.
        await h.earn(tiers_engine, grocer.id, member, 300)
        row = await wait_for(
            lambda: tier_row(tiers_engine, member),
            lambda r: r.below_since is None,
            "the grace period to end",
        )
    assert row.tier_code == "SILVER" and row.qualifying_points == 1000
    assert await history(tiers_engine, member) == [(None, "SILVER", "UPGRADE")]
    assert len(await tier_events(tiers_engine, member)) == 1


async def test_the_daily_evaluation_downgrades_after_the_grace_period_and_not_before(
    tiers_engine: AsyncEngine,
) -> None:
    policy = await set_policy(tiers_engine, grace_days=10)
    grocer = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id])
    now = await _db_now(tiers_engine)
    await _earn_at(tiers_engine, grocer.id, member, 1200, now - timedelta(days=200))
    await _earn_at(tiers_engine, grocer.id, member, 4000, now)
    await evaluate_tiers(tiers_engine, now=now, members=[member])
    assert await tier_of(tiers_engine, member) == "GOLD"  # 5200

    # The first earn leaves the window 165 days from now: 4000 is below GOLD, above SILVER.
    below = now + timedelta(days=166)
    report = await evaluate_tiers(tiers_engine, now=below, members=[member])
    assert (report.members, report.downgraded, report.in_grace) == (1, 0, 1)
    row = await tier_row(tiers_engine, member)
    assert (row.tier_code, row.below_since, row.qualifying_points) == ("GOLD", below, 4000)
    # Still within the grace period: kept, and the start of the grace period does not move.
    almost = below + timedelta(days=10) - timedelta(seconds=1)
    await evaluate_tiers(tiers_engine, now=almost, members=[member])
    row = await tier_row(tiers_engine, member)
    assert (row.tier_code, row.below_since) == ("GOLD", below)
    # The outbox consumer never downgrades, even past the grace period.
    async with tiers_engine.begin() as c:
        await evaluate_members(c, policy, [member], below + timedelta(days=11), may_downgrade=False)
    assert await tier_of(tiers_engine, member) == "GOLD"
    # Grace over: down to the highest tier the points reach.
    report = await evaluate_tiers(tiers_engine, now=below + timedelta(days=10), members=[member])
    assert report.downgraded == 1
    row = await tier_row(tiers_engine, member)
    assert (row.tier_code, row.below_since) == ("SILVER", None)
    assert row.since == below + timedelta(days=10)
    # A year on, nothing is left in the window: no tier at all (after SILVER's own grace).
    later = now + timedelta(days=400)
    await evaluate_tiers(tiers_engine, now=later, members=[member])
    assert await tier_of(tiers_engine, member) == "SILVER"
    await evaluate_tiers(tiers_engine, now=later + timedelta(days=10), members=[member])
    assert await tier_of(tiers_engine, member) == ""
    assert await tier_row(tiers_engine, member) is None
    assert await history(tiers_engine, member) == [
        (None, "GOLD", "UPGRADE"),
        ("GOLD", "SILVER", "DOWNGRADE"),
        ("SILVER", None, "DOWNGRADE"),
    ]
    events = await tier_events(tiers_engine, member)
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        (None, "GOLD", "UPGRADE"),
        ("GOLD", "SILVER", "DOWNGRADE"),
        ("SILVER", None, "DOWNGRADE"),
    ]


async def test_with_no_grace_the_first_evaluation_below_downgrades(
    tiers_engine: AsyncEngine,
) -> None:
    await set_policy(tiers_engine, grace_days=0)
    grocer = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id])
    await h.earn(tiers_engine, grocer.id, member, 1500)
    now = await _db_now(tiers_engine)
    await evaluate_tiers(tiers_engine, now=now, members=[member])
    assert await tier_of(tiers_engine, member) == "SILVER"
    await evaluate_tiers(tiers_engine, now=now + timedelta(days=366), members=[member])
    assert await tier_of(tiers_engine, member) == ""


async def test_a_change_is_written_once_however_often_and_concurrently_it_is_evaluated(
    tiers_engine: AsyncEngine,
) -> None:
    await set_policy(tiers_engine)
    grocer = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id])
    await h.earn(tiers_engine, grocer.id, member, 6000)
    async with tiers_engine.connect() as c:
        policy = await current_policy(c)
    assert policy is not None
    now = await _db_now(tiers_engine)

    async def once() -> None:
        async with tiers_engine.begin() as c:
            await evaluate_members(c, policy, [member], now, may_downgrade=False)

    await asyncio.gather(*(once() for _ in range(4)))
    await evaluate_tiers(tiers_engine, now=now, members=[member])
    # And the outbox delivering the earn's event, twice over.
    async with running_worker(tiers_engine):
        await wait_for(
            lambda: _handled(tiers_engine, member), lambda n: n >= 1, "the earn's delivery"
        )
    assert await history(tiers_engine, member) == [(None, "GOLD", "UPGRADE")]
    assert len(await tier_events(tiers_engine, member)) == 1


async def _handled(engine: AsyncEngine, member: uuid.UUID) -> int:
    async with engine.connect() as c:
        count = await c.scalar(
            text(
                "SELECT count(*) FROM outbox_receipts r JOIN outbox o ON o.id = r.event_id"
                " WHERE r.consumer = :c AND o.member_id = :m"
            ),
            {"c": evaluation.CONSUMER.name, "m": member},
        )
    return int(count or 0)


async def test_qualifying_points_count_earns_at_every_partner_less_their_reversals(
    tiers_engine: AsyncEngine,
) -> None:
    grocer = await make_partner(tiers_engine)
    cinema = await make_partner(tiers_engine, earn_rate="2")
    member = await h.new_member(tiers_engine, [grocer.id, cinema.id])
    first = await h.earn(tiers_engine, grocer.id, member, 100)
    await h.earn(tiers_engine, cinema.id, member, 50)  # 100 points
    await h.redeem(tiers_engine, cinema.id, member, 150)  # spending is not un-earning
    await h.reverse(tiers_engine, grocer.id, first.transfer_id, 30)
    assert await _qualifying(tiers_engine, member) == 170
    now = await _db_now(tiers_engine)
    assert await _qualifying(tiers_engine, member, now + timedelta(days=366)) == 0
    async with tiers_engine.connect() as c:
        plan = "\n".join(
            r[0]
            for r in await c.execute(
                text(
                    "EXPLAIN SELECT sum(points) FROM transfers WHERE member_id = :m"
                    " AND code IN ('EARN', 'BONUS') AND occurred_at > :since"
                ),
                {"m": member, "since": now - timedelta(days=365)},
            )
        )
    assert "ix_transfers_member_qualifying" in plan, plan


async def test_a_new_policy_applies_lazily_next_event_or_daily_sweep(
    tiers_engine: AsyncEngine,
) -> None:
    await set_policy(tiers_engine)
    grocer = await make_partner(tiers_engine)
    busy = await h.new_member(tiers_engine, [grocer.id])
    quiet = await h.new_member(tiers_engine, [grocer.id])
    newcomer = await h.new_member(tiers_engine, [grocer.id])
    async with running_worker(tiers_engine):
        await h.earn(tiers_engine, grocer.id, busy, 6000)
        await h.earn(tiers_engine, grocer.id, quiet, 6000)
        await h.earn(tiers_engine, grocer.id, newcomer, 800)  # nothing under the old policy
        for member in (busy, quiet):
            await wait_for(lambda m=member: tier_of(tiers_engine, m), lambda t: t == "GOLD", "GOLD")
        await wait_for(
            lambda: _handled(tiers_engine, newcomer), lambda n: n >= 1, "the newcomer's earn"
        )
        assert await tier_of(tiers_engine, newcomer) == ""

        # GOLD leaves the policy; SILVER's threshold drops to 500. Nothing is rewritten at once.
        platinum = TierRule("PLATINUM", "Platinum", 10_000, Decimal(1))
        low_silver = TierRule("SILVER", "Silver", 500, Decimal(1))
        await set_policy(tiers_engine, tiers=(low_silver, platinum))
        assert await tier_of(tiers_engine, busy) == "GOLD"
        # The busy member moves at its next event (POLICY: its tier is gone, no grace) ...
        await h.earn(tiers_engine, grocer.id, busy, 10)
        await wait_for(lambda: tier_of(tiers_engine, busy), lambda t: t == "SILVER", "SILVER")
    assert (await history(tiers_engine, busy))[-1] == ("GOLD", "SILVER", "POLICY")
    # ... the others at the daily evaluation, which sweeps every member after a policy change.
    assert await tier_of(tiers_engine, quiet) == "GOLD"
    report = await run_daily(tiers_engine)
    assert report is not None and report.full_sweep and report.members >= 3
    assert await tier_of(tiers_engine, quiet) == "SILVER"
    assert await tier_of(tiers_engine, newcomer) == "SILVER"
    assert (await history(tiers_engine, quiet))[-1] == ("GOLD", "SILVER", "POLICY")
    assert (await history(tiers_engine, newcomer))[-1] == (None, "SILVER", "UPGRADE")
    # Once a day after that, and then only over members with a tier.
    assert await run_daily(tiers_engine) is None
    forced = await run_daily(tiers_engine, force=True)
    assert forced is not None and not forced.full_sweep
    async with tiers_engine.connect() as c:
        tiered = int(await c.scalar(text("SELECT count(*) FROM member_tiers")) or 0)
    assert forced.members == tiered
    assert await run_daily(tiers_engine, now=datetime.now(UTC) + timedelta(days=1)) is not None


async def test_a_tier_from_zero_points_is_given_at_enrollment(tiers_engine: AsyncEngine) -> None:
    welcome = TierRule("BLUE", "Blue", 0, Decimal(1))
    await set_policy(tiers_engine, tiers=(welcome, SILVER, GOLD))
    grocer = await make_partner(tiers_engine)
    async with running_worker(tiers_engine):
        member = await h.new_member(tiers_engine, [grocer.id])
        await wait_for(lambda: tier_of(tiers_engine, member), lambda t: t == "BLUE", "BLUE")
    assert await history(tiers_engine, member) == [(None, "BLUE", "UPGRADE")]
    await set_policy(tiers_engine)  # back to the tests' usual policy
