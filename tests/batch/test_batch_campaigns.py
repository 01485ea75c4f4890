"""The batch prices every row with the earn engine and books what a single earn would: lines,
store and channel per row (and in the request hash), a bad line rejecting only its row, a
replayed row that does not count as a purchase, and budgets and member limits that concurrent
batches and single earns never overspend."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.ingest_cli import BadLines, ingest_file, parse_lines
from core.caller import Caller, Scope
from core.errors import ErrorCode
from members.service import MemberRef
from points.batch import EarnRow
from points.campaigns.service import create_campaign
from points.campaigns.validation import CampaignSpec
from points.rules.model import Effect, LimitPeriod, PurchaseLine
from points.service import earn_points
from tests.batch.helpers import batch, enrolled, key
from tests.conftest import make_partner, partner_api, partner_caller
from tests.ledger import helpers as h

OPERATOR = Caller(
    client_id="test-operator", partner_id=None, scopes=frozenset({str(Scope.OPERATOR)})
)
COFFEE = PurchaseLine("espresso", "coffee", Decimal(1), Decimal("30"))
BREAD = PurchaseLine("loaf", "bakery", Decimal("0.5"), Decimal("20"))


async def _campaign(engine: AsyncEngine, **fields: Any) -> uuid.UUID:
    async with engine.begin() as c:
        return (await create_campaign(c, OPERATOR, CampaignSpec(**fields))).id


async def _now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as c:
        now = await c.scalar(text("SELECT now()"))
    assert isinstance(now, datetime)
    return now


def _row(
    member: uuid.UUID, amount: str, reference: str, *, k: str | None = None, **extra: Any
) -> EarnRow:
    return EarnRow(MemberRef(id=member), Decimal(amount), reference, k or key(), **extra)


async def _campaign_points(engine: AsyncEngine, campaign: uuid.UUID) -> int:
    """The points the campaign's lines gave, over every purchase booked."""
    async with engine.connect() as c:
        value = await c.scalar(
            text(
                "SELECT COALESCE(sum((d->>'points')::bigint), 0) FROM transfers t"
                " CROSS JOIN jsonb_array_elements(t.metadata_->'campaigns') d"
                " WHERE d->>'id' = :c"
            ),
            {"c": str(campaign)},
        )
    return int(value or 0)


async def test_rows_carry_lines_store_and_channel(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    ((member, _, _),) = await enrolled(engine, [partner.id], 1)
    await _campaign(
        engine,
        name="Coffee x3",
        effect=Effect(multiplier=Decimal(3), categories=("coffee",)),
        partner_ids=(partner.id,),
        store_ids=("S1",),
        channels=("app",),
    )
    rows = [
        _row(member, "50", "A", lines=(COFFEE, BREAD), store_id="S1", channel="app"),
        _row(member, "50", "B", lines=(COFFEE, BREAD), store_id="S2", channel="app"),
        _row(
            member,
            "50",
            "C",
            lines=(BREAD, BREAD, PurchaseLine("roll", "bakery", Decimal(1), Decimal(10))),
            channel="app",
        ),
    ]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert outcome.rejected == []
    assert outcome.points == (50 + 60) + 50 + 50  # only A is at S1 with coffee
    async with engine.connect() as c:
        explanation = await c.scalar(
            text(
                "SELECT metadata_->'explanation' FROM transfers WHERE partner_id = :p AND reference = 'A'"
            ),
            {"p": partner.id},
        )
    assert [line["rule"] for line in explanation] == ["BASE_RATE", "CAMPAIGN"]
    assert explanation[1]["description"] == "Campaign 'Coffee x3': ×3 points on 30 of coffee"
    assert explanation[1]["funded_by"] == [{"partner_id": str(partner.id), "points": 60}]


async def test_a_bad_line_rejects_its_row_only(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    ((member, _, _),) = await enrolled(engine, [partner.id], 1)
    rows = [
        _row(member, "50", "ok", lines=(COFFEE, BREAD)),
        _row(member, "51", "sum", lines=(COFFEE, BREAD)),  # 50, not 51
        _row(member, "30", "qty", lines=(PurchaseLine("x", None, Decimal(0), Decimal(30)),)),
        _row(member, "30", "sku", lines=(PurchaseLine(" ", None, Decimal(1), Decimal(30)),)),
        _row(member, "30", "store", store_id=""),
        _row(member, "-1", "amount first", lines=(COFFEE,)),  # the amount is checked first
        _row(member, "30", "ok too", channel="web"),
    ]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert [(r.index, r.code, r.field) for r in outcome.rejected] == [
        (1, ErrorCode.INVALID_LINES, ["lines"]),
        (2, ErrorCode.INVALID_LINES, ["lines.0.quantity"]),
        (3, ErrorCode.INVALID_LINES, ["lines.0.sku"]),
        (4, ErrorCode.INVALID_INPUT, ["storeId"]),
        (5, ErrorCode.INVALID_AMOUNT, ["amount"]),
    ]
    assert (outcome.booked, outcome.points) == (2, 80)
    async with engine.connect() as c:
        keys = await c.scalar(
            text("SELECT count(*) FROM idempotency_keys WHERE client_id = :c"),
            {"c": f"test-{partner.id}"},
        )
    assert keys == 2  # nothing stored for a rejected row


async def test_lines_store_and_channel_count_in_the_request_hash(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    ((member, _, _),) = await enrolled(engine, [partner.id], 1)
    same, other = key(), key()
    async with engine.begin() as c:
        single = await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(id=member),
            amount=Decimal(50),
            reference="R",
            occurred_at=None,
            idempotency_key=same,
            lines=(COFFEE, BREAD),
            store_id="S1",
        )
        await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(id=member),
            amount=Decimal(50),
            reference="R2",
            occurred_at=None,
            idempotency_key=other,
            lines=(COFFEE, BREAD),
        )
    rows = [
        _row(member, "50", "R", k=same, lines=(COFFEE, BREAD), store_id="S1"),  # a replay
        _row(member, "50", "R2", k=other, lines=(COFFEE, BREAD), channel="app"),  # not the same
    ]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert [(r.index, r.transfer_id, r.points) for r in outcome.replayed] == [
        (0, single.transfer_id, 50)
    ]
    assert [(r.index, r.code) for r in outcome.rejected] == [(1, ErrorCode.IDEMPOTENCY_KEY_REUSED)]


async def test_the_batchs_earlier_rows_of_a_member_count_as_purchases(
    engine: AsyncEngine,
) -> None:
    """`member.purchases` is what single earns would have seen: the batch's earlier rows of the
    member count, a replayed row does not (it booked nothing now)."""
    partner = await make_partner(engine)
    (m1, _, _), (m2, _, _) = await enrolled(engine, [partner.id], 2)
    await _campaign(
        engine,
        name="Second visit",
        effect=Effect(bonus_points=100),
        condition="member.purchases == 1",
        partner_ids=(partner.id,),
    )
    earlier = key()
    async with engine.begin() as c:
        first = await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(id=m1),
            amount=Decimal(10),
            reference="first",
            occurred_at=None,
            idempotency_key=earlier,
        )
    assert first.points == 10
    rows = [
        _row(m1, "10", "first", k=earlier),  # replayed: m1 has one purchase
        _row(m1, "20", "second"),  # its second purchase: the bonus
        _row(m1, "30", "third"),
        _row(m2, "10", "first"),
        _row(m2, "20", "second"),  # the bonus
    ]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert [r.index for r in outcome.replayed] == [0]
    assert outcome.points == 120 + 30 + 10 + 120
    async with engine.connect() as c:
        purchases: dict[uuid.UUID, int] = dict(
            (
                await c.execute(
                    text("SELECT id, purchases FROM members WHERE id = ANY(:m)"), {"m": [m1, m2]}
                )
            ).all()
        )
    assert purchases == {m1: 3, m2: 2}


async def test_concurrent_batches_and_earns_never_overspend_a_budget_or_a_limit(
    engine: AsyncEngine,
) -> None:
    partner = await make_partner(engine)
    members = [m for m, _, _ in await enrolled(engine, [partner.id], 6)]
    budget = await _campaign(
        engine,
        name="Small budget",
        effect=Effect(bonus_points=10),
        budget_points=95,
        partner_ids=(partner.id,),
    )
    limit = await _campaign(
        engine,
        name="Limited",
        effect=Effect(bonus_points=7),
        per_member_limit=20,
        limit_period=LimitPeriod.WEEK,
        partner_ids=(partner.id,),
    )
    at = await _now(engine)

    async def one_batch(n: int) -> None:
        rows = [_row(members[(n + i) % 6], "5", f"B{n}-{i}", occurred_at=at) for i in range(6)]
        outcome = await batch(engine, partner_caller(partner.id), rows)
        assert outcome.rejected == []

    async def one_earn(n: int) -> None:
        async with engine.connect() as c:
            auto = await c.execution_options(isolation_level="AUTOCOMMIT")
            await earn_points(
                auto,
                partner_caller(partner.id),
                member=MemberRef(id=members[n % 6]),
                amount=Decimal(5),
                reference=f"E{n}",
                occurred_at=at,
                idempotency_key=key(),
            )

    await asyncio.gather(*(one_batch(n) for n in range(4)), *(one_earn(n) for n in range(6)))
    async with engine.connect() as c:
        slots = list(
            await c.scalars(
                text("SELECT remaining FROM campaign_budget_slots WHERE campaign_id = :c"),
                {"c": budget},
            )
        )
        usage: dict[uuid.UUID, int] = dict(
            (
                await c.execute(
                    text(
                        "SELECT member_id, points FROM campaign_member_usage WHERE campaign_id = :c"
                    ),
                    {"c": limit},
                )
            ).all()
        )
        await h.assert_invariants(c, members)
    assert min(slots) >= 0
    given = await _campaign_points(engine, budget)
    assert given == 95 - sum(slots) and given > 0
    assert all(0 < points <= 20 for points in usage.values()) and len(usage) == 6
    assert await _campaign_points(engine, limit) == sum(usage.values())


async def test_a_batch_over_graphql_takes_lines(engine: AsyncEngine, server: str) -> None:
    partner = await make_partner(engine)
    ((_, phone, _),) = await enrolled(engine, [partner.id], 1)
    await _campaign(
        engine,
        name="Bakery bonus",
        effect=Effect(bonus_points=7, categories=("bakery",)),
        partner_ids=(partner.id,),
    )
    api = await partner_api(engine, server, partner.id)
    line = {"sku": "loaf", "category": "bakery", "quantity": "0.5", "amount": "20"}
    rows = [
        {
            "member": {"phone": phone},
            "amount": "20",
            "reference": "G-1",
            "idempotencyKey": key(),
            "lines": [line],
            "storeId": "S9",
            "channel": "store",
        },
        {
            "member": {"phone": phone},
            "amount": "21",
            "reference": "G-2",
            "idempotencyKey": key(),
            "lines": [line],
        },
    ]
    mutation = """mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {
      booked points transfers rejectedRows { index code field } errors { code } } }"""
    result = api.data(mutation, {"input": {"rows": rows}})["earnPointsBatch"]
    assert result == {
        "booked": 1,
        "points": 27,
        "transfers": 1,
        "rejectedRows": [{"index": 1, "code": "INVALID_LINES", "field": ["lines"]}],
        "errors": [],
    }


def test_the_lines_column_reads_a_json_array_of_lines() -> None:
    assert parse_lines("") == ()
    assert parse_lines(
        '[{"sku": "a", "category": "coffee", "quantity": "2", "amount": "3.50"},'
        ' {"sku": "b", "amount": 1.25}]'
    ) == (
        PurchaseLine("a", "coffee", Decimal(2), Decimal("3.50")),
        PurchaseLine("b", None, Decimal(1), Decimal("1.25")),
    )
    for cell, path in (
        ("not json", ["lines"]),
        ('{"sku": "a"}', ["lines"]),
        ('[{"amount": "1"}]', ["lines", "0", "sku"]),
        ('[{"sku": "a"}]', ["lines", "0", "amount"]),
        ('[{"sku": "a", "amount": "1e3"}]', ["lines", "0", "amount"]),
        ('[{"sku": "a", "amount": 1e3}]', ["lines"]),
        ('[{"sku": "a", "amount": NaN}]', ["lines"]),
        ('[{"sku": "a", "amount": "1", "price": "1"}]', ["lines", "0", "price"]),
        ('[{"sku": "a", "amount": "1", "quantity": true}]', ["lines", "0", "quantity"]),
    ):
        try:
            parse_lines(cell)
        except BadLines as bad:
            assert bad.path == path, cell
        else:
            raise AssertionError(f"{cell} was read")


async def test_the_ingest_file_takes_store_channel_and_lines(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    partner = await make_partner(engine)
    ((_, phone, _),) = await enrolled(engine, [partner.id], 1)
    await _campaign(
        engine,
        name="Coffee in the app",
        effect=Effect(bonus_points=5, categories=("coffee",)),
        channels=("app",),
        partner_ids=(partner.id,),
    )
    when = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    await asyncio.sleep(1.1)  # the purchases happen after the campaign took effect
    coffee = '"[{""sku"": ""e1"", ""category"": ""coffee"", ""amount"": ""30""}]"'
    path = tmp_path / "day.csv"
    path.write_text(
        "lines,phone,partner_ref,amount,reference,occurred_at,idempotency_key,store_id,channel\n"
        f"{coffee},{phone},,30,R-1,{when},i-1,S1,app\n"
        f"{coffee},{phone},,30,R-2,{when},i-2,,\n"
        f'"[{{""sku"": 5}}]",{phone},,30,R-3,{when},i-3,,app\n'
        f"{coffee},{phone},,31,R-4,{when},i-4,,app\n"
        f",{phone},,30,R-5,{when},i-5,,\n"
    )
    report = await ingest_file(engine, partner.slug, path, chunk=2, jobs=1)
    assert (report.rows, report.booked, report.points) == (5, 3, 35 + 30 + 30)
    assert [(line, r.code) for line, r in report.rejected] == [
        (4, ErrorCode.INVALID_LINES),
        (5, ErrorCode.INVALID_LINES),
    ]
    again = await ingest_file(engine, partner.slug, path, chunk=2, jobs=1)
    assert (again.booked, again.replayed) == (0, 3)
