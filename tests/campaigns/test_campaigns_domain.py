"""Campaigns in the domain: versions, lifecycle, validation (nothing saved on a refusal),
budget slots, the catalog of versions in force and its cache, the coalition's time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from partners.settings import load_settings, update_settings
from points.campaigns import catalog, limits, queries, service
from points.campaigns.records import CampaignRecord
from points.campaigns.validation import CampaignSpec
from points.rules.model import CampaignStatus, Effect, FundingShare, LimitPeriod
from tests.conftest import make_partner, partner_caller

DOUBLE = Effect(multiplier=Decimal(2))


def operator() -> Caller:
    """An operator caller of its own, so a test can tell what it (and only it) wrote."""
    return Caller(client_id=f"op-{uuid.uuid4()}", partner_id=None, scopes=frozenset({"operator"}))


def marketer(partner_id: uuid.UUID) -> Caller:
    return partner_caller(partner_id, "campaigns:write")


def spec(**fields: Any) -> CampaignSpec:
    return CampaignSpec(**{"name": "Double points", "effect": DOUBLE, **fields})


async def create(engine: AsyncEngine, caller: Caller, **fields: Any) -> CampaignRecord:
    """A campaign; the operator's apply at a partner of their own unless told otherwise, so
    that no campaign of these tests gives points to another test's purchases (the database
    is shared)."""
    draft = fields.pop("draft", False)
    if caller.partner_id is None and "partner_ids" not in fields:
        fields["partner_ids"] = [(await make_partner(engine)).id]
    async with engine.begin() as c:
        return await service.create_campaign(c, caller, spec(**fields), draft=draft)


async def update(
    engine: AsyncEngine, caller: Caller, campaign: CampaignRecord, **changes: Any
) -> CampaignRecord:
    async with engine.begin() as c:
        return await service.update_campaign(c, caller, campaign.id, changes)


async def status(
    engine: AsyncEngine, caller: Caller, campaign: CampaignRecord, action: str
) -> CampaignRecord:
    async with engine.begin() as c:
        return await service.change_status(c, caller, campaign.id, action)


async def revision(engine: AsyncEngine) -> int:
    async with engine.connect() as c:
        return await catalog.current_revision(c)


async def written_by(engine: AsyncEngine, actor: str) -> tuple[int, int, int]:
    """(campaigns, versions, audit entries) written by `actor`."""
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT (SELECT count(*) FROM campaigns WHERE created_by = :a),"
                    " (SELECT count(*) FROM campaign_versions WHERE created_by = :a),"
                    " (SELECT count(*) FROM audit_log WHERE actor = :a)"
                ),
                {"a": actor},
            )
        ).one()
    return (row[0], row[1], row[2])


async def versions(engine: AsyncEngine, campaign: CampaignRecord) -> list[tuple[int, str]]:
    async with engine.connect() as c:
        found = await queries.list_versions(c, campaign.id)
    return [(v.rule.version, v.rule.status) for v in found]


async def in_force(engine: AsyncEngine, when: datetime) -> dict[uuid.UUID, int]:
    """campaign id -> the version in force at `when` (every campaign in the database)."""
    async with engine.connect() as c:
        rules = await catalog.rules_at(c, await catalog.current_revision(c), when)
    return {r.rule.campaign_id: r.rule.version for r in rules}


# ---- create, versions, audit ---------------------------------------------------------------


async def test_create_writes_version_one_bumps_the_revision_and_audits(
    engine: AsyncEngine,
) -> None:
    grocer, fuel = await make_partner(engine), await make_partner(engine)
    op = operator()
    before = await revision(engine)
    created = await create(
        engine,
        op,
        name="  Fuel and groceries  ",
        partner_ids=[fuel.id, grocer.id, grocer.id],
        store_ids=["s-2", "s-1"],
        channels=["online"],
        tiers=["GOLD"],
        condition="purchase.amount >= 1000.0",
        effect=Effect(multiplier=Decimal("1.5"), bonus_points=100, categories=("fuel",)),
        funding=[FundingShare(grocer.id, Decimal("0.5")), FundingShare(fuel.id, Decimal("0.5"))],
        priority=5,
        exclusive=True,
        max_points_per_purchase=500,
        per_member_limit=1000,
        limit_period=LimitPeriod.MONTH,
        budget_points=100_000,
    )
    assert await revision(engine) == before + 1
    rule = created.rule
    assert (created.status, created.version, created.owner_partner_id) == (
        CampaignStatus.ACTIVE,
        1,
        None,
    )
    assert rule.name == "Fuel and groceries"
    assert rule.partner_ids == {grocer.id, fuel.id}
    assert rule.store_ids == {"s-1", "s-2"} and rule.channels == {"online"}
    assert rule.tiers == {"GOLD"} and rule.condition == "purchase.amount >= 1000.0"
    assert rule.effect == Effect(multiplier=Decimal("1.5"), bonus_points=100, categories=("fuel",))
    assert [f.funder for f in rule.funding] == [grocer.id, fuel.id]  # the order given
    assert (rule.priority, rule.exclusive, rule.max_points_per_purchase) == (5, True, 500)
    assert (rule.per_member_limit, rule.limit_period) == (1000, LimitPeriod.MONTH)
    assert rule.budget_points == 100_000 and created.budget_left == 100_000
    assert created.created_by == op.client_id and created.current.changed_by == op.client_id
    assert rule.starts_at <= created.current.effective_at
    assert await written_by(engine, op.client_id) == (1, 1, 1)
    async with engine.connect() as c:
        entry = (
            await c.execute(
                text(
                    "SELECT action, subject_type, subject_id, details FROM audit_log"
                    " WHERE actor = :a"
                ),
                {"a": op.client_id},
            )
        ).one()
    assert (entry.action, entry.subject_type, entry.subject_id) == (
        "CAMPAIGN_CREATED",
        "Campaign",
        str(created.id),
    )
    assert entry.details["definition"]["budgetPoints"] == 100_000


async def test_versions_are_immutable_rows(engine: AsyncEngine) -> None:
    created = await create(engine, operator())
    for statement in (
        "UPDATE campaign_versions SET priority = 9 WHERE campaign_id = :c",
        "DELETE FROM campaign_versions WHERE campaign_id = :c",
    ):
        with pytest.raises(Exception, match="immutable"):
            async with engine.begin() as c:
                await c.execute(text(statement), {"c": created.id})


async def test_every_change_is_a_new_version_and_an_audit_entry(engine: AsyncEngine) -> None:
    op = operator()
    created = await create(engine, op, draft=True)
    assert created.status == CampaignStatus.DRAFT
    changed = await update(engine, op, created, name="Triple", effect=Effect(multiplier=Decimal(3)))
    assert (changed.version, changed.status, changed.rule.name) == (
        2,
        CampaignStatus.DRAFT,
        "Triple",
    )
    for action in ("resume", "pause", "resume", "end", "archive"):
        await status(engine, op, created, action)
    assert await versions(engine, created) == [
        (1, "DRAFT"),
        (2, "DRAFT"),
        (3, "ACTIVE"),
        (4, "PAUSED"),
        (5, "ACTIVE"),
        (6, "ENDED"),
        (7, "ARCHIVED"),
    ]
    async with engine.connect() as c:
        found = await queries.list_versions(c, created.id)
        actions = (
            (
                await c.execute(
                    text("SELECT action FROM audit_log WHERE actor = :a ORDER BY id"),
                    {"a": op.client_id},
                )
            )
            .scalars()
            .all()
        )
    times = [v.effective_at for v in found]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(v.rule.name == "Triple" for v in found[1:])
    assert actions == [
        "CAMPAIGN_CREATED",
        "CAMPAIGN_UPDATED",
        "CAMPAIGN_RESUMED",
        "CAMPAIGN_PAUSED",
        "CAMPAIGN_RESUMED",
        "CAMPAIGN_ENDED",
        "CAMPAIGN_ARCHIVED",
    ]


async def test_an_update_audits_what_changed_from_and_to(engine: AsyncEngine) -> None:
    op = operator()
    created = await create(engine, op)
    await update(engine, op, created, priority=7, condition="purchase.weekday >= 6")
    async with engine.connect() as c:
        details = await c.scalar(
            text("SELECT details FROM audit_log WHERE actor = :a AND action = 'CAMPAIGN_UPDATED'"),
            {"a": op.client_id},
        )
    assert details == {
        "version": 2,
        "changes": {
            "priority": {"from": 0, "to": 7},
            "condition": {"from": "true", "to": "purchase.weekday >= 6"},
        },
    }


async def test_a_change_that_changes_nothing_writes_nothing(engine: AsyncEngine) -> None:
    op = operator()
    created = await create(engine, op, priority=3)
    before = await revision(engine)
    same = await update(engine, op, created, priority=3, name="Double points")
    assert same.version == 1
    paused = await status(engine, op, created, "pause")
    again = await status(engine, op, created, "pause")  # a retried request
    assert (paused.version, again.version) == (2, 2)
    assert await revision(engine) == before + 1
    assert await written_by(engine, op.client_id) == (1, 2, 2)


async def test_null_puts_a_field_back_to_its_default(engine: AsyncEngine) -> None:
    op = operator()
    ends = datetime.now(UTC) + timedelta(days=7)
    created = await create(
        engine, op, ends_at=ends, priority=4, channels=["app"], budget_points=10, tiers=["GOLD"]
    )
    reset = await update(
        engine, op, created, ends_at=None, priority=None, channels=None, budget_points=None
    )
    assert (reset.rule.ends_at, reset.rule.priority, reset.rule.channels) == (None, 0, frozenset())
    assert reset.rule.budget_points is None and reset.budget_left is None
    assert reset.rule.tiers == {"GOLD"}  # not given: unchanged
    for field, code in (("name", ErrorCode.INVALID_INPUT), ("effect", ErrorCode.INVALID_EFFECT)):
        with pytest.raises(DomainError) as refused:
            await update(engine, op, created, **{field: None})
        assert (refused.value.code, refused.value.field) == (code, [field])


# ---- lifecycle ------------------------------------------------------------------------------


async def test_transitions_outside_the_lifecycle_are_refused(engine: AsyncEngine) -> None:
    op = operator()
    active = await create(engine, op)
    draft = await create(engine, op, draft=True)
    refused = [
        (active, "archive"),  # end it first
        (draft, "pause"),
        (draft, "end"),
    ]
    for campaign, action in refused:
        with pytest.raises(DomainError) as exc:
            await status(engine, op, campaign, action)
        assert exc.value.code == ErrorCode.CAMPAIGN_NOT_EDITABLE, action
    await status(engine, op, active, "end")
    for action in ("pause", "resume"):
        with pytest.raises(DomainError) as exc:
            await status(engine, op, active, action)
        assert exc.value.code == ErrorCode.CAMPAIGN_NOT_EDITABLE
    with pytest.raises(DomainError) as exc:
        await update(engine, op, active, priority=1)
    assert exc.value.code == ErrorCode.CAMPAIGN_NOT_EDITABLE
    await status(engine, op, active, "archive")
    await status(engine, op, draft, "archive")
    for campaign in (active, draft):
        with pytest.raises(DomainError) as exc:
            await update(engine, op, campaign, name="Back")
        assert exc.value.code == ErrorCode.CAMPAIGN_NOT_EDITABLE
    with pytest.raises(DomainError) as exc:
        await status(engine, op, draft, "resume")
    assert exc.value.code == ErrorCode.CAMPAIGN_NOT_EDITABLE


async def test_a_missing_campaign_is_not_found(engine: AsyncEngine) -> None:
    async with engine.begin() as c:
        with pytest.raises(DomainError) as exc:
            await service.pause_campaign(c, operator(), uuid.uuid4())
    assert (exc.value.code, exc.value.field) == (ErrorCode.CAMPAIGN_NOT_FOUND, ["id"])


# ---- validation: each refusal, nothing saved -------------------------------------------------

NOW = datetime.now(UTC)


def _cases(known: uuid.UUID) -> list[tuple[dict[str, Any], ErrorCode, list[str]]]:
    half = Decimal("0.5")
    return [
        ({"condition": "purchase.amount >"}, ErrorCode.INVALID_CONDITION, ["condition"]),
        ({"condition": "purchase.amount"}, ErrorCode.INVALID_CONDITION, ["condition"]),
        ({"condition": "purchase.nope == 1"}, ErrorCode.INVALID_CONDITION, ["condition"]),
        ({"funding": [FundingShare(known, Decimal("0.9"))]}, ErrorCode.INVALID_FUNDING, ["funding"]),
        (
            {"funding": [FundingShare(known, Decimal(1)), FundingShare(None, Decimal(0))]},
            ErrorCode.INVALID_FUNDING,
            ["funding", "1", "share"],
        ),
        ({"funding": [FundingShare(known, Decimal("1.5"))]}, ErrorCode.INVALID_FUNDING, ["funding", "0", "share"]),
        ({"funding": [FundingShare(known, Decimal("-0.5")), FundingShare(None, Decimal("1.5"))]}, ErrorCode.INVALID_FUNDING, ["funding", "0", "share"]),
        ({"funding": [FundingShare(known, half), FundingShare(known, half)]}, ErrorCode.INVALID_FUNDING, ["funding", "1", "partnerId"]),
        ({"funding": [FundingShare(None, half), FundingShare(uuid.uuid4(), half)]}, ErrorCode.INVALID_FUNDING, ["funding", "1", "partnerId"]),
        ({"funding": [FundingShare(None, Decimal("0.3333333")), FundingShare(known, Decimal("0.6666667"))]}, ErrorCode.INVALID_FUNDING, ["funding", "0", "share"]),
        ({"starts_at": NOW + timedelta(days=2), "ends_at": NOW + timedelta(days=1)}, ErrorCode.INVALID_SCHEDULE, ["endsAt"]),
        ({"starts_at": NOW + timedelta(days=1), "ends_at": NOW + timedelta(days=1)}, ErrorCode.INVALID_SCHEDULE, ["endsAt"]),
        ({"starts_at": NOW - timedelta(days=9), "ends_at": NOW - timedelta(days=1)}, ErrorCode.INVALID_SCHEDULE, ["endsAt"]),
        ({"starts_at": datetime(2030, 1, 1)}, ErrorCode.INVALID_INPUT, ["startsAt"]),
        ({"effect": Effect(multiplier=Decimal("0.5"))}, ErrorCode.INVALID_EFFECT, ["effect", "multiplier"]),
        ({"effect": Effect(multiplier=Decimal(-2))}, ErrorCode.INVALID_EFFECT, ["effect", "multiplier"]),
        ({"effect": Effect(multiplier=Decimal("1.0000001"))}, ErrorCode.INVALID_EFFECT, ["effect", "multiplier"]),
        ({"effect": Effect(multiplier=Decimal("NaN"))}, ErrorCode.INVALID_AMOUNT, ["effect", "multiplier"]),
        ({"effect": Effect(bonus_points=-5)}, ErrorCode.INVALID_EFFECT, ["effect", "bonusPoints"]),
        ({"effect": Effect(points_per_unit=Decimal(-1))}, ErrorCode.INVALID_EFFECT, ["effect", "pointsPerUnit"]),
        ({"effect": Effect()}, ErrorCode.INVALID_EFFECT, ["effect"]),
        ({"effect": Effect(multiplier=Decimal(1), bonus_points=0)}, ErrorCode.INVALID_EFFECT, ["effect"]),
        ({"effect": Effect(bonus_points=5, categories=("",))}, ErrorCode.INVALID_INPUT, ["effect", "categories", "0"]),
        ({"name": " "}, ErrorCode.INVALID_INPUT, ["name"]),
        ({"partner_ids": [known, uuid.uuid4()]}, ErrorCode.PARTNER_NOT_FOUND, ["partnerIds", "1"]),
        ({"store_ids": ["ok", "x" * 201]}, ErrorCode.INVALID_INPUT, ["storeIds", "1"]),
        ({"budget_points": 0}, ErrorCode.INVALID_AMOUNT, ["budgetPoints"]),
        ({"per_member_limit": -1}, ErrorCode.INVALID_AMOUNT, ["perMemberLimit"]),
        ({"max_points_per_purchase": 0}, ErrorCode.INVALID_AMOUNT, ["maxPointsPerPurchase"]),
        ({"priority": 10**7}, ErrorCode.INVALID_INPUT, ["priority"]),
    ]  # fmt: skip


async def test_each_refusal_has_its_code_and_field_and_saves_nothing(engine: AsyncEngine) -> None:
    known = (await make_partner(engine)).id
    op = operator()
    before = await revision(engine)
    for fields, code, field in _cases(known):
        with pytest.raises(DomainError) as refused:
            await create(engine, op, **fields)
        assert (refused.value.code, refused.value.field) == (code, field), fields
    assert await written_by(engine, op.client_id) == (0, 0, 0)
    assert await revision(engine) == before
    # The same checks guard an update: the campaign keeps its version.
    created = await create(engine, op)
    for fields, code, field in _cases(known):
        if "ends_at" in fields and fields["ends_at"] < NOW:
            continue  # a past end is refused only at creation
        with pytest.raises(DomainError) as refused:
            await update(engine, op, created, **fields)
        assert (refused.value.code, refused.value.field) == (code, field), fields
    assert await written_by(engine, op.client_id) == (1, 1, 1)


async def test_the_condition_error_is_the_compilers_message(engine: AsyncEngine) -> None:
    with pytest.raises(DomainError) as refused:
        await create(engine, operator(), condition="purchase.amount > 1000")
    assert refused.value.code == ErrorCode.INVALID_CONDITION
    assert "purchase.amount" in refused.value.message and "1000.0" in refused.value.message


async def test_a_partners_campaign_applies_at_itself_funded_by_itself(engine: AsyncEngine) -> None:
    own, other = await make_partner(engine), await make_partner(engine)
    me = marketer(own.id)
    created = await create(engine, me)
    assert created.owner_partner_id == own.id
    assert created.rule.partner_ids == {own.id}
    assert created.rule.funding == (FundingShare(own.id, Decimal(1)),)
    explicit = await create(
        engine, me, partner_ids=[own.id], funding=[FundingShare(own.id, Decimal(1))]
    )
    assert explicit.rule.partner_ids == {own.id}
    for fields, field in (
        ({"partner_ids": [own.id, other.id]}, ["partnerIds", "1"]),
        ({"funding": [FundingShare(other.id, Decimal(1))]}, ["funding", "0", "partnerId"]),
        ({"funding": [FundingShare(None, Decimal(1))]}, ["funding", "0", "partnerId"]),
        (
            {"funding": [FundingShare(own.id, Decimal("0.5")), FundingShare(None, Decimal("0.5"))]},
            ["funding", "1", "partnerId"],
        ),
    ):
        with pytest.raises(DomainError) as refused:
            await create(engine, me, **fields)
        assert (refused.value.code, refused.value.field) == (ErrorCode.PARTNER_NOT_ALLOWED, field)
        with pytest.raises(DomainError) as refused:
            await update(engine, me, created, **fields)
        assert refused.value.code == ErrorCode.PARTNER_NOT_ALLOWED
    # Even the operator cannot aim a partner's campaign elsewhere.
    with pytest.raises(DomainError) as refused:
        await update(engine, operator(), created, partner_ids=[other.id])
    assert refused.value.code == ErrorCode.PARTNER_NOT_ALLOWED


async def test_a_partner_sees_and_changes_only_its_own_campaigns(engine: AsyncEngine) -> None:
    own, other = await make_partner(engine), await make_partner(engine)
    mine = await create(engine, marketer(own.id))
    theirs = await create(engine, marketer(other.id))
    coalition = await create(engine, operator())
    async with engine.connect() as c:
        seen = await queries.list_campaigns(c, marketer(own.id), after=None, limit=100)
        assert {r.id for r in seen} == {mine.id}
        assert await queries.get_campaign(c, marketer(own.id), theirs.id) is None
        assert await queries.get_campaign(c, marketer(own.id), coalition.id) is None
        everything = await queries.list_campaigns(c, operator(), after=None, limit=100)
        assert {mine.id, theirs.id, coalition.id} <= {r.id for r in everything}
        # A partner client without the scope, or a partner-less non-operator, sees nothing.
        nobody = Caller("x", None, frozenset({"members:read"}))
        assert await queries.list_campaigns(c, nobody, after=None, limit=100) == []
    for target in (theirs, coalition):
        with pytest.raises(DomainError) as refused:
            await update(engine, marketer(own.id), target, priority=1)
        assert refused.value.code == ErrorCode.CAMPAIGN_NOT_FOUND
        with pytest.raises(DomainError) as refused:
            await status(engine, marketer(own.id), target, "pause")
        assert refused.value.code == ErrorCode.CAMPAIGN_NOT_FOUND
    # The operator may change a partner's campaign (within its rules).
    paused = await status(engine, operator(), mine, "pause")
    assert paused.status == CampaignStatus.PAUSED
    # Without the scope, nothing.
    with pytest.raises(DomainError) as refused:
        await create(engine, partner_caller(own.id, "points:earn"))
    assert refused.value.code == ErrorCode.INVALID_SCOPE


async def test_pages_are_newest_first_and_filter_by_status(engine: AsyncEngine) -> None:
    me = marketer((await make_partner(engine)).id)
    made = [await create(engine, me, name=f"c{i}") for i in range(5)]
    await status(engine, me, made[1], "pause")
    async with engine.connect() as c:
        first = await queries.list_campaigns(c, me, after=None, limit=3)
        rest = await queries.list_campaigns(c, me, after=first[-1].id, limit=3)
        paused = await queries.list_campaigns(
            c, me, after=None, limit=10, status=CampaignStatus.PAUSED
        )
    assert [r.rule.name for r in first + rest] == ["c4", "c3", "c2", "c1", "c0"]
    assert [r.id for r in paused] == [made[1].id]


# ---- budget slots ---------------------------------------------------------------------------


async def slots(engine: AsyncEngine, campaign: CampaignRecord) -> list[int]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT remaining FROM campaign_budget_slots WHERE campaign_id = :c ORDER BY slot"
            ),
            {"c": campaign.id},
        )
        return [r.remaining for r in rows]


async def spend(engine: AsyncEngine, campaign: CampaignRecord, slot: int, points: int) -> None:
    """What the booking does: draw points from a slot."""
    async with engine.begin() as c:
        await c.execute(
            text(
                "UPDATE campaign_budget_slots SET remaining = remaining - :p"
                " WHERE campaign_id = :c AND slot = :s"
            ),
            {"c": campaign.id, "s": slot, "p": points},
        )


async def test_budget_slots_hold_the_budget_and_follow_its_changes(engine: AsyncEngine) -> None:
    op = operator()
    created = await create(engine, op, budget_points=1000)
    held = await slots(engine, created)
    assert len(held) == limits.BUDGET_SLOTS and sum(held) == 1000
    assert max(held) - min(held) <= 1
    raised = await update(engine, op, created, budget_points=1500)
    assert sum(await slots(engine, created)) == 1500 == raised.budget_left
    # 600 points given from many slots; then the budget is cut by 700: 200 left.
    await spend(engine, created, 0, 90)
    await spend(engine, created, 3, 10)
    await spend(engine, created, 5, 50)
    async with engine.begin() as c:
        await c.execute(
            text(
                "UPDATE campaign_budget_slots SET remaining = remaining - 50"
                " WHERE campaign_id = :c AND slot >= 7"
            ),
            {"c": created.id},
        )
    assert sum(await slots(engine, created)) == 1500 - 600
    cut = await update(engine, op, created, budget_points=800)
    assert cut.budget_left == 200 == sum(await slots(engine, created))
    assert min(await slots(engine, created)) >= 0
    # Cut below what was given: nothing left, never below zero.
    gone = await update(engine, op, created, budget_points=100)
    assert gone.budget_left == 0 and set(await slots(engine, created)) == {0}
    # Removed: no budget (the slots stay); set again: the difference from the last one.
    removed = await update(engine, op, created, budget_points=None)
    assert removed.budget_left is None and len(await slots(engine, created)) == 16
    again = await update(engine, op, created, budget_points=1100)
    assert again.budget_left == 1000


async def test_a_budget_set_later_starts_full(engine: AsyncEngine) -> None:
    op = operator()
    created = await create(engine, op)
    assert created.budget_left is None and await slots(engine, created) == []
    later = await update(engine, op, created, budget_points=7)
    assert later.budget_left == 7
    assert sorted(await slots(engine, created)) == [0] * 9 + [1] * 7


def test_slot_arithmetic() -> None:
    assert limits.split_evenly(35, 16) == [3, 3, 3] + [2] * 13
    for remaining in ([10, 0, 5, 5], [1] * 16, [100, 1, 0, 37]):
        for points in range(sum(remaining) + 3):
            left = limits._take(remaining, points)
            assert all(v >= 0 for v in left)
            assert sum(left) == max(0, sum(remaining) - points)
            assert all(a <= b for a, b in zip(left, remaining, strict=True))


def test_limit_periods_start_on_the_local_day_week_month() -> None:
    day = datetime(2026, 3, 19).date()  # a Thursday
    assert limits.period_start(LimitPeriod.DAY, day) == day
    assert limits.period_start(LimitPeriod.WEEK, day) == datetime(2026, 3, 16).date()
    assert limits.period_start(LimitPeriod.MONTH, day) == datetime(2026, 3, 1).date()
    assert limits.period_start(LimitPeriod.CAMPAIGN, day) == limits.CAMPAIGN_PERIOD


# ---- the catalog: versions in force, and its cache ------------------------------------------


async def test_a_purchase_is_judged_by_the_version_in_force_when_it_happened(
    engine: AsyncEngine,
) -> None:
    op = operator()
    created = await create(engine, op)
    async with engine.connect() as c:
        before_change = (await c.execute(text("SELECT clock_timestamp()"))).scalar_one()
    await update(engine, op, created, effect=Effect(multiplier=Decimal(3)))
    async with engine.connect() as c:
        after_change = (await c.execute(text("SELECT clock_timestamp()"))).scalar_one()
    await status(engine, op, created, "pause")
    async with engine.connect() as c:
        paused_at = (await c.execute(text("SELECT clock_timestamp()"))).scalar_one()
        rules = await catalog.rules_at(c, await catalog.current_revision(c), before_change)
    then = [r for r in rules if r.rule.campaign_id == created.id]
    assert [r.rule.effect.multiplier for r in then] == [Decimal(2)]
    assert (await in_force(engine, after_change)).get(created.id) == 2
    assert created.id not in await in_force(engine, paused_at)
    assert created.id not in await in_force(engine, created.rule.starts_at - timedelta(seconds=1))


async def test_the_schedule_and_the_status_bound_what_is_in_force(engine: AsyncEngine) -> None:
    op = operator()
    start = datetime.now(UTC) + timedelta(days=1)
    end = start + timedelta(days=2)
    later = await create(engine, op, starts_at=start, ends_at=end)
    draft = await create(engine, op, draft=True)
    assert later.id not in await in_force(engine, start - timedelta(microseconds=1))
    assert (await in_force(engine, start)).get(later.id) == 1
    assert (await in_force(engine, end - timedelta(microseconds=1))).get(later.id) == 1
    assert later.id not in await in_force(engine, end)
    assert draft.id not in await in_force(engine, start)


async def test_an_archived_campaign_still_prices_the_time_it_was_active(
    engine: AsyncEngine,
) -> None:
    op = operator()
    created = await create(engine, op, priority=10**6)
    async with engine.connect() as c:
        while_active = (await c.execute(text("SELECT clock_timestamp()"))).scalar_one()
    await status(engine, op, created, "end")
    await status(engine, op, created, "archive")
    assert (await in_force(engine, while_active)).get(created.id) == 1
    assert created.id not in await in_force(engine, datetime.now(UTC) + timedelta(seconds=5))


async def test_rules_come_in_stacking_order(engine: AsyncEngine) -> None:
    op = operator()
    start = datetime.now(UTC) + timedelta(days=30)
    low = await create(engine, op, starts_at=start, priority=-5)
    high = await create(engine, op, starts_at=start, priority=900_000)
    mid = await create(engine, op, starts_at=start, priority=1)
    async with engine.connect() as c:
        rules = await catalog.rules_at(c, await catalog.current_revision(c), start)
    ours = [r.rule.campaign_id for r in rules if r.rule.campaign_id in {low.id, high.id, mid.id}]
    assert ours == [high.id, mid.id, low.id]
    assert [r.rule.priority for r in rules] == sorted(
        (r.rule.priority for r in rules), reverse=True
    )
    assert all(r.condition.source == r.rule.condition for r in rules)


class _NoDatabase:
    """A connection that must not be used: the catalog answers from its cache."""

    def __init__(self, real: AsyncConnection) -> None:
        self.engine = real.engine

    async def execute(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the catalog went to the database")

    async def scalar(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the catalog went to the database")


async def test_the_catalog_is_cached_until_the_revision_changes(engine: AsyncEngine) -> None:
    op = operator()
    now = datetime.now(UTC) + timedelta(seconds=30)
    async with engine.connect() as c:
        first = await catalog.catalog(c, await catalog.current_revision(c))
        offline: Any = _NoDatabase(c)
        # Same revision (or an older one read by a slower earn): no round trip, same object.
        assert await catalog.catalog(offline, first.revision) is first
        assert await catalog.catalog(offline, max(first.revision - 1, 0)) is first
        assert catalog.cached_catalog(c) is first
        first.rules_at(now)
        assert first.rules_at(now) is first.rules_at(now)  # one answer per slice
    created = await create(engine, op)
    async with engine.connect() as c:
        changed = await catalog.current_revision(c)
        assert changed > first.revision
        reloaded = await catalog.catalog(c, changed)
        assert reloaded is not first and reloaded.revision >= changed
        assert created.id in {r.rule.campaign_id for r in reloaded.rules_at(now)}
        assert created.id not in {r.rule.campaign_id for r in first.rules_at(now)}
        assert await catalog.catalog(_NoDatabase(c), changed) is reloaded  # type: ignore[arg-type]


async def test_concurrent_earns_load_a_new_catalog_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    await create(engine, operator())
    loads = 0
    real = catalog.load_catalog

    async def counting(conn: AsyncConnection) -> catalog.CampaignCatalog:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return await real(conn)

    monkeypatch.setattr(catalog, "load_catalog", counting)
    async with engine.connect() as c:
        revision_now = await catalog.current_revision(c)

    async def earn() -> int:
        async with engine.connect() as c:
            return (await catalog.catalog(c, revision_now)).revision

    assert set(await asyncio.gather(*(earn() for _ in range(5)))) == {revision_now}
    assert loads == 1


# ---- the coalition's time zone --------------------------------------------------------------


async def test_the_time_zone_is_an_iana_name(conn: AsyncConnection) -> None:
    assert (await load_settings(conn)).time_zone == "UTC"
    try:
        assert (await update_settings(conn, time_zone="Europe/Moscow")).time_zone == "Europe/Moscow"
        for bad in ("Mars/Olympus", "", "localtime", "../etc/passwd", "europe/moscow", "UTC "):
            with pytest.raises(DomainError) as refused:
                await update_settings(conn, time_zone=bad)
            assert (refused.value.code, refused.value.field) == (
                ErrorCode.INVALID_INPUT,
                ["timeZone"],
            ), bad
        assert (await load_settings(conn)).time_zone == "Europe/Moscow"
    finally:
        await update_settings(conn, time_zone="UTC")
