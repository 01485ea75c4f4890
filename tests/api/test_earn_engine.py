"""The earn engine over real HTTP with real tokens: receipt lines, campaigns paid by several
funders, quoteEarn's promise (the same answer, nothing booked), budgets and member limits
that cap, reversals that give back per funder, and a campaign judged at occurredAt.

The database is shared by every test: each operator campaign here applies only at the test's
own partners, so it gives nothing to another test's purchases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import (
    REVERSE,
    Shop,
    error_codes,
    key,
    make_shop,
    payload,
    user_errors,
)
from tests.conftest import Api, make_client, unique_phone

EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id code points }
  member { balance { available } }
  explanation { rule description points fundedBy { partner { slug } points } }
  errors { code message field } } }"""

QUOTE = """query($input: QuoteEarnInput!) { quoteEarn(input: $input) {
  points explanation { rule description points fundedBy { partner { slug } points } }
  errors { code message field } } }"""

CREATE = """mutation($input: CreateCampaignInput!) { createCampaign(input: $input) {
  campaign { id status budgetLeft } errors { code message field } } }"""

BALANCE = """query($ref: MemberRef!) { member(ref: $ref) { balance { available } } }"""

HISTORY = """query($ref: MemberRef!) { member(ref: $ref) {
  transfers(first: 20) { edges { node { code points partner { slug } } } } } }"""


def campaign(operator: Api, **fields: Any) -> dict[str, Any]:
    result = payload(operator, CREATE, fields, "createCampaign")
    assert result["errors"] == [], result["errors"]
    created: dict[str, Any] = result["campaign"]
    return created


def earn(shop: Shop, member: dict[str, Any], amount: str, **extra: Any) -> dict[str, Any]:
    input = {
        "member": member,
        "amount": amount,
        "reference": f"R-{key()}",
        "idempotencyKey": extra.pop("idempotencyKey", key()),
        **extra,
    }
    return payload(shop.api, EARN, input, "earnPoints")


def quote(shop: Shop, member: dict[str, Any], amount: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = shop.api.data(
        QUOTE, {"input": {"member": member, "amount": amount, **extra}}
    )["quoteEarn"]
    return result


def lines(result: dict[str, Any]) -> list[tuple[str, int, list[tuple[str | None, int]]]]:
    """Each explanation line as (rule, points, [(funder slug or None, points)])."""
    return [
        (
            line["rule"],
            line["points"],
            [((f["partner"] or {}).get("slug"), f["points"]) for f in line["fundedBy"]],
        )
        for line in result["explanation"]
    ]


def balance(shop: Shop, member: dict[str, Any]) -> int:
    value: int = shop.api.data(BALANCE, {"ref": member})["member"]["balance"]["available"]
    return value


async def member_of(*shops: Shop) -> dict[str, Any]:
    phone = unique_phone()
    for shop in shops:
        shop.enroll(phone)
    return {"phone": phone}


async def test_a_cross_brand_campaign_is_paid_by_its_funders_and_quoted_first(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer = await make_shop(engine, server, earn_rate="0.1")
    fuel = await make_shop(engine, server, earn_rate="0.1")
    member = await member_of(grocer, fuel)
    campaign(
        operator_api,
        name="Fuel + groceries week",
        partnerIds=[grocer.id],
        effect={"bonusPoints": 100},
        funding=[
            {"partnerId": grocer.id, "share": "0.5"},
            {"partnerId": fuel.id, "share": "0.3"},
            {"partnerId": None, "share": "0.2"},
        ],
    )
    quoted = quote(grocer, member, "1000.00")
    assert quoted["errors"] == []
    expected = [
        ("BASE_RATE", 100, [(grocer.slug, 100)]),
        ("CAMPAIGN", 100, [(grocer.slug, 50), (fuel.slug, 30), (None, 20)]),
    ]
    assert quoted["points"] == 200 and lines(quoted) == expected
    assert balance(grocer, member) == 0  # the quote booked nothing

    earned = earn(grocer, member, "1000.00")
    assert earned["errors"] == [] and earned["points"] == 200
    assert lines(earned) == expected  # the same engine, the same answer
    assert "Fuel + groceries week" in earned["explanation"][1]["description"]
    # The EARN holds what the grocer pays; each other funder has a BONUS of its own.
    assert earned["transfer"]["code"] == "EARN" and earned["transfer"]["points"] == 150
    assert earned["member"]["balance"]["available"] == 200
    history = [
        (e["node"]["code"], e["node"]["points"], (e["node"]["partner"] or {}).get("slug"))
        for e in operator_api.data(HISTORY, {"ref": member})["member"]["transfers"]["edges"]
    ]
    assert sorted(history, key=str) == sorted(
        [("EARN", 150, grocer.slug), ("BONUS", 30, fuel.slug), ("BONUS", 20, None)], key=str
    )

    # The same purchase at the fuel station is not in the campaign: base rate only.
    assert earn(fuel, member, "1000.00")["points"] == 100

    # Reversing the purchase gives every funder's points back.
    reversed_ = payload(
        grocer.api,
        REVERSE,
        {"transferId": earned["transfer"]["id"], "idempotencyKey": key()},
        "reverseTransfer",
    )
    assert reversed_["errors"] == []
    assert balance(grocer, member) == 100  # only the fuel station's own earn is left


async def test_lines_price_category_campaigns_and_must_add_up(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    cafe = await make_shop(engine, server, earn_rate="0.1")
    member = await member_of(cafe)
    campaign(
        operator_api,
        name="Coffee triple",
        partnerIds=[cafe.id],
        effect={"multiplier": "3", "categories": ["coffee"]},
    )
    receipt = [
        {"sku": "LATTE", "category": "coffee", "amount": "300.00"},
        {"sku": "BAGEL", "category": "bakery", "quantity": "2", "amount": "200.00"},
    ]
    # Lines that do not add up: refused, nothing booked, and the key is not used up.
    same_key = key()
    bad = earn(cafe, member, "600.00", lines=receipt, idempotencyKey=same_key)
    assert user_errors(bad) == ["INVALID_LINES"] and bad["points"] == 0
    assert bad["errors"][0]["field"] == ["lines"]
    assert "500.00" in bad["errors"][0]["message"]
    assert balance(cafe, member) == 0
    good = earn(cafe, member, "500.00", lines=receipt, idempotencyKey=same_key)
    assert good["errors"] == []
    # Base 50; the campaign triples the coffee line's 30 base points: +60.
    assert [(rule, points) for rule, points, _ in lines(good)] == [
        ("BASE_RATE", 50),
        ("CAMPAIGN", 60),
    ]
    # Without lines the category campaign has nothing to price.
    assert earn(cafe, member, "500.00")["points"] == 50
    # A line without a usable sku or a negative amount is refused with the line named.
    for broken, field in (
        ({"sku": " ", "amount": "500.00"}, "lines.0.sku"),
        ({"sku": "X", "amount": "-1"}, "lines.0.amount"),
        ({"sku": "X", "amount": "500.00", "quantity": "0"}, "lines.0.quantity"),
    ):
        refused = earn(cafe, member, "500.00", lines=[broken])
        assert user_errors(refused) == ["INVALID_LINES"]
        assert refused["errors"][0]["field"] == [field]
        assert user_errors(quote(cafe, member, "500.00", lines=[broken])) == ["INVALID_LINES"]
    assert balance(cafe, member) == 160  # 110 with the lines, 50 without


async def test_budget_and_member_limit_cap_and_a_reversal_gives_back(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server, earn_rate="0")
    first, second = await member_of(shop), await member_of(shop)
    created = campaign(
        operator_api,
        name="Welcome bonus",
        partnerIds=[shop.id],
        effect={"bonusPoints": 100},
        budgetPoints=250,
        perMemberLimit=150,
        limitPeriod="DAY",
    )
    assert created["budgetLeft"] == 250
    a = earn(shop, first, "10.00")
    assert a["points"] == 100
    b = earn(shop, first, "10.00")  # the member's daily limit leaves 50
    assert b["points"] == 50 and "limit" in b["explanation"][-1]["description"]
    c = earn(shop, second, "10.00")  # the budget leaves 100
    assert c["points"] == 100
    d = earn(shop, second, "10.00")  # nothing left in the budget
    assert d["points"] == 0 and [x[0] for x in lines(d)] == ["BASE_RATE"]
    left = await _budget_left(engine, created["id"])
    assert left == 0
    # Reversing the first earn returns its 100 points to the budget and the member's limit.
    undone = payload(
        shop.api,
        REVERSE,
        {"transferId": a["transfer"]["id"], "idempotencyKey": key()},
        "reverseTransfer",
    )
    assert undone["errors"] == []
    assert await _budget_left(engine, created["id"]) == 100
    assert earn(shop, first, "10.00")["points"] == 100


async def _budget_left(engine: AsyncEngine, global_id: str) -> int:
    from schema.relay import from_global_id

    _, raw = from_global_id(global_id, "Campaign")
    async with engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT sum(remaining) FROM campaign_budget_slots WHERE campaign_id = :c"),
            {"c": raw},
        )
    return int(left or 0)


async def test_a_purchase_is_priced_by_the_campaigns_in_force_when_it_happened(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server, earn_rate="1")
    member = await member_of(shop)
    campaign(operator_api, name="From now on", partnerIds=[shop.id], effect={"bonusPoints": 7})
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert earn(shop, member, "10", occurredAt=yesterday)["points"] == 10
    assert quote(shop, member, "10", occurredAt=yesterday)["points"] == 10
    assert earn(shop, member, "10")["points"] == 17


async def test_quote_needs_the_earn_scope_and_a_member_of_the_partner(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    other = await make_shop(engine, server)
    member = await member_of(shop)
    # Another partner cannot learn the member's price (nor that the member exists).
    assert user_errors(quote(other, member, "10")) == ["MEMBER_NOT_FOUND"]
    client_id, secret = await make_client(engine, shop.raw_id, ["members:read"])
    reader = Api(server, client_id, secret)
    body = reader.gql(QUOTE, {"input": {"member": member, "amount": "10"}})
    assert body["data"] is None and error_codes(body) == ["FORBIDDEN"]
    # Bad amounts and times are refused as earnPoints refuses them.
    assert user_errors(quote(shop, member, "0")) == ["INVALID_AMOUNT"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert user_errors(quote(shop, member, "10", occurredAt=future)) == ["INVALID_INPUT"]
