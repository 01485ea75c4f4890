"""Points over HTTP: earn, redeem, reverse, holds, balances and history."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import (
    EARN,
    HOLD,
    REDEEM,
    TRANSFER,
    TRANSFERS,
    Shop,
    error_codes,
    key,
    make_shop,
    payload,
    user_errors,
)
from tests.conftest import Api, unique_phone

EXPIRING = """query($ref: MemberRef!, $d: Int!) { member(ref: $ref) {
  balance { available pending soon: expiring(withinDays: $d) default: expiring } } }"""


async def _member(shop: Shop, ref: str = "M") -> dict[str, Any]:
    phone = unique_phone()
    shop.enroll(phone, f"{ref}-{key()}")
    return {"phone": phone}


# ---- earn -----------------------------------------------------------------------------------


async def test_earn_gives_floor_of_amount_times_rate_and_explains_it(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server, earn_rate="0.07")
    member = await _member(shop)
    result = shop.earn_ok(member, "1499.90", reference="RCPT-1")
    assert result["points"] == 104  # 1499.90 × 0.07 = 104.993
    transfer = result["transfer"]
    assert transfer["code"] == "EARN" and transfer["points"] == 104
    assert transfer["reference"] == "RCPT-1"
    assert transfer["partner"]["slug"] == shop.slug
    assert transfer["amount"] == "1499.90"  # as sent, not "1499.900000"
    assert result["member"]["balance"] == {"available": 104, "pending": 0, "held": 0, "debt": 0}
    assert result["explanation"] and sum(line["points"] for line in result["explanation"]) == 104
    assert all(line["rule"] and line["description"] for line in result["explanation"])
    # The explanation is kept with the transfer for the app's history screen.
    stored = shop.api.data(
        """query($id: ID!) { transfer(id: $id) { explanation { rule points } amount } }""",
        {"id": transfer["id"]},
    )["transfer"]
    assert sum(line["points"] for line in stored["explanation"]) == 104
    small = shop.earn_ok(member, "14.28")  # 0.9996 points: none
    assert small["points"] == 0
    assert shop.balance(member)["available"] == 104


async def test_pending_points_are_not_available(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server, pending_days=14)
    member = await _member(shop)
    result = shop.earn_ok(member, "250")
    assert result["points"] == 250
    assert result["member"]["balance"] == {"available": 0, "pending": 250, "held": 0, "debt": 0}
    refused = shop.redeem(member, 1)
    assert user_errors(refused) == ["INSUFFICIENT_POINTS"]
    assert shop.balance(member)["pending"] == 250


async def test_earn_rejects_bad_amounts_and_books_nothing(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    for amount in ("0", "-5", "-0.01", "1.001", "0.001", "1e20", "99999999999999", "NaN"):
        result = shop.earn(member, amount)
        assert user_errors(result) == ["INVALID_AMOUNT"], (amount, result)
        assert result["transfer"] is None and result["points"] == 0
        assert result["errors"][0]["field"] == ["amount"]
    assert shop.balance(member)["available"] == 0
    history = shop.api.data(TRANSFERS, {"ref": member})["member"]["transfers"]
    assert history["edges"] == []


async def test_amount_that_is_not_a_number_is_a_client_error(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    body = shop.api.gql(
        EARN,
        {
            "input": {
                "member": member,
                "amount": "12,50",
                "reference": "R",
                "idempotencyKey": key(),
            }
        },
    )
    # Not a number in the Decimal format: refused as any bad amount is, not a server crash
    # (tests/security/test_amounts.py has the whole format).
    assert "errors" not in body, body
    result = body["data"]["earnPoints"]
    assert user_errors(result) == ["INVALID_AMOUNT"] and result["transfer"] is None
    assert result["errors"][0]["field"] == ["amount"]
    body = shop.api.gql(
        EARN,
        {
            "input": {
                "member": member,
                "amount": "10",
                "reference": "R",
                "idempotencyKey": key(),
                "occurredAt": "yesterday",
            }
        },
    )
    assert body.get("data") is None and body["errors"]
    assert "INTERNAL_ERROR" not in error_codes(body), body


async def test_earn_for_unknown_member(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    for ref in ({"phone": unique_phone()}, {"partnerRef": "nobody"}):
        result = shop.earn(ref, "10")
        assert user_errors(result) == ["MEMBER_NOT_FOUND"], ref
        assert result["transfer"] is None
    garbage = shop.earn({"phone": "not a phone"}, "10")
    assert user_errors(garbage) == ["INVALID_PHONE"]


async def test_earn_replay_returns_the_same_transfer_and_books_nothing_new(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    ikey = key()
    first = shop.earn_ok(member, "100", idempotency_key=ikey, reference="R-42")
    again = shop.earn_ok(member, "100", idempotency_key=ikey, reference="R-42")
    assert again["transfer"]["id"] == first["transfer"]["id"]
    assert again["points"] == first["points"] == 100
    assert again["member"]["balance"]["available"] == 100
    assert shop.balance(member)["available"] == 100
    edges = shop.api.data(TRANSFERS, {"ref": member})["member"]["transfers"]["edges"]
    assert len(edges) == 1
    # The same key with a different request is refused and changes nothing.
    reused = shop.earn(member, "101", idempotency_key=ikey, reference="R-42")
    assert user_errors(reused) == ["IDEMPOTENCY_KEY_REUSED"]
    assert reused["transfer"] is None
    other_op = shop.redeem(member, 10, idempotency_key=ikey)
    assert user_errors(other_op) == ["IDEMPOTENCY_KEY_REUSED"]
    assert shop.balance(member)["available"] == 100


async def test_a_failed_earn_does_not_burn_its_idempotency_key(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    ikey = key()
    failed = shop.earn({"phone": unique_phone()}, "10", idempotency_key=ikey)
    assert user_errors(failed) == ["MEMBER_NOT_FOUND"]
    retried = shop.earn(member, "10", idempotency_key=ikey)
    assert retried["errors"] == [] and retried["points"] == 10


async def test_earn_occurred_at(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server, points_validity_days=30)
    member = await _member(shop)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    result = shop.earn(member, "10", occurredAt=future)
    assert user_errors(result) == ["INVALID_INPUT"]
    assert result["errors"][0]["field"] == ["occurredAt"]
    ancient = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    assert user_errors(shop.earn(member, "10", occurredAt=ancient)) == ["INVALID_INPUT"]
    naive = datetime.now().replace(microsecond=0).isoformat()
    assert user_errors(shop.earn(member, "10", occurredAt=naive)) == ["INVALID_INPUT"]
    assert shop.balance(member)["available"] == 0
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    ok = shop.earn_ok(member, "10", occurredAt=past)
    assert ok["points"] == 10
    # Expiry counts from the purchase: 28 days left of 30.
    balance = shop.api.data(EXPIRING, {"ref": member, "d": 28})["member"]["balance"]
    assert balance["soon"] == 10
    balance = shop.api.data(EXPIRING, {"ref": member, "d": 27})["member"]["balance"]
    assert balance["soon"] == 0


async def test_earn_needs_a_partner_client(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    result = payload(
        operator_api,
        EARN,
        {"member": member, "amount": "10", "reference": "R", "idempotencyKey": key()},
        "earnPoints",
    )
    assert user_errors(result) == ["INVALID_INPUT"]
    assert shop.balance(member)["available"] == 0


# ---- redeem ---------------------------------------------------------------------------------


async def test_redeem_across_brands_and_insufficient_points(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    grocer.enroll(phone)
    cinema.enroll(phone, "CIN-1")
    grocer.earn_ok({"phone": phone}, "300")
    point_value = operator_api.data("{ coalitionSettings { pointValue } }")["coalitionSettings"][
        "pointValue"
    ]
    burnt = cinema.redeem({"partnerRef": "CIN-1"}, 120)
    assert burnt["errors"] == []
    assert burnt["points"] == 120
    assert Decimal(burnt["value"]) == 120 * Decimal(point_value)
    # Money reads as money: no zeros past the minor unit ("120.00", not "120.000000").
    assert len(burnt["value"].split(".")[-1]) == 2 or "." not in burnt["value"]
    assert burnt["transfer"]["code"] == "REDEEM" and burnt["transfer"]["points"] == 120
    assert burnt["transfer"]["partner"]["slug"] == cinema.slug
    assert burnt["member"]["balance"]["available"] == 180
    too_much = cinema.redeem({"partnerRef": "CIN-1"}, 181)
    assert user_errors(too_much) == ["INSUFFICIENT_POINTS"]
    assert too_much["errors"][0]["message"] == "the member has 180 points available, 181 requested"
    assert too_much["errors"][0]["field"] == ["points"]
    assert too_much["transfer"] is None
    # The refused redemption kept nothing, not even its key: the same key books once covered.
    retry = {"idempotency_key": "retry-after-refusal", "reference": "ORDER-9"}
    assert user_errors(cinema.redeem({"partnerRef": "CIN-1"}, 181, **retry)) == [
        "INSUFFICIENT_POINTS"
    ]
    retried = cinema.redeem({"partnerRef": "CIN-1"}, 180, **retry)
    again = cinema.redeem({"partnerRef": "CIN-1"}, 180, **retry)
    assert retried["errors"] == [] and again["errors"] == []
    assert again["transfer"] == retried["transfer"]
    assert cinema.balance({"phone": phone})["available"] == 0
    cinema.earn_ok({"phone": phone}, "180")
    assert cinema.balance({"phone": phone})["available"] == 180
    for points in (0, -1):
        bad = cinema.redeem({"phone": phone}, points)
        assert user_errors(bad) == ["INVALID_AMOUNT"], points
    assert cinema.balance({"phone": phone})["available"] == 180
    # Replay of a redemption: same transfer, no second burn.
    ikey = key()
    once = cinema.redeem({"phone": phone}, 30, idempotency_key=ikey, reference="T-9")
    twice = cinema.redeem({"phone": phone}, 30, idempotency_key=ikey, reference="T-9")
    assert once["errors"] == twice["errors"] == []
    assert once["transfer"]["id"] == twice["transfer"]["id"]
    assert twice["value"] == once["value"]
    assert cinema.balance({"phone": phone})["available"] == 150


async def test_redeem_at_a_partner_that_does_not_accept_points(
    engine: AsyncEngine, server: str
) -> None:
    grocer = await make_shop(engine, server)
    fuel = await make_shop(engine, server, accepts_redemption=False)
    phone = unique_phone()
    grocer.enroll(phone)
    fuel.enroll(phone)
    grocer.earn_ok({"phone": phone}, "100")
    refused = fuel.redeem({"phone": phone}, 10)
    assert user_errors(refused) == ["REDEMPTION_NOT_ACCEPTED"]
    held = fuel.hold({"phone": phone}, 10)
    assert user_errors(held) == ["REDEMPTION_NOT_ACCEPTED"]
    assert grocer.balance({"phone": phone}) == {
        "available": 100,
        "pending": 0,
        "held": 0,
        "debt": 0,
    }


async def test_redeem_needs_enrollment_at_the_redeeming_partner(
    engine: AsyncEngine, server: str
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    grocer.enroll(phone)
    grocer.earn_ok({"phone": phone}, "100")
    refused = cinema.redeem({"phone": phone}, 10)
    assert user_errors(refused) == ["MEMBER_NOT_FOUND"]
    assert grocer.balance({"phone": phone})["available"] == 100


# ---- reverse --------------------------------------------------------------------------------


async def test_full_and_partial_reversal_of_an_earn(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    earn = shop.earn_ok(member, "100")["transfer"]
    partial = shop.reverse(earn["id"], points=30, reason="returned one item")
    assert partial["errors"] == []
    assert partial["transfer"]["code"] == "REVERSAL" and partial["transfer"]["points"] == 30
    assert partial["transfer"]["reason"] == "returned one item"
    assert partial["transfer"]["reversalOf"]["id"] == earn["id"]
    assert partial["member"]["balance"]["available"] == 70
    too_many = shop.reverse(earn["id"], points=71)
    assert user_errors(too_many) == ["INVALID_AMOUNT"]
    rest = shop.reverse(earn["id"])
    assert rest["errors"] == [] and rest["transfer"]["points"] == 70
    assert rest["member"]["balance"]["available"] == 0
    again = shop.reverse(earn["id"])
    assert user_errors(again) == ["ALREADY_REVERSED"]
    assert shop.balance(member) == {"available": 0, "pending": 0, "held": 0, "debt": 0}


async def test_full_and_partial_reversal_of_a_redemption(engine: AsyncEngine, server: str) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    grocer.enroll(phone)
    cinema.enroll(phone)
    grocer.earn_ok({"phone": phone}, "200")
    burn = cinema.redeem({"phone": phone}, 150)["transfer"]
    assert cinema.balance({"phone": phone})["available"] == 50
    partial = cinema.reverse(burn["id"], points=50)
    assert partial["errors"] == [] and partial["transfer"]["points"] == 50
    assert partial["member"]["balance"]["available"] == 100
    rest = cinema.reverse(burn["id"])
    assert rest["errors"] == [] and rest["transfer"]["points"] == 100
    assert rest["member"]["balance"]["available"] == 200
    assert user_errors(cinema.reverse(burn["id"])) == ["ALREADY_REVERSED"]
    # The restored points are spendable again.
    assert cinema.redeem({"phone": phone}, 200)["errors"] == []


async def test_reversals_are_not_reversible_and_ids_are_checked(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    earn = shop.earn_ok(member, "100")["transfer"]
    reversal = shop.reverse(earn["id"], points=10)["transfer"]
    assert user_errors(shop.reverse(reversal["id"])) == ["NOT_REVERSIBLE"]
    assert user_errors(shop.reverse("garbage")) == ["INVALID_INPUT"]
    assert user_errors(shop.reverse(shop.id)) == ["INVALID_INPUT"]  # a Partner id
    assert user_errors(shop.reverse(earn["id"], points=0)) == ["INVALID_AMOUNT"]
    assert shop.balance(member)["available"] == 90


async def test_reversing_a_spent_earn_claws_back_then_records_debt(
    engine: AsyncEngine, server: str
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    bakery = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    for shop in (grocer, cinema, bakery):
        shop.enroll(phone)
    earn = grocer.earn_ok(ref, "100")["transfer"]
    bakery.earn_ok(ref, "30")
    cinema.redeem(ref, 100)  # spends grocer's 100 (or part of bakery's, by expiry order)
    assert grocer.balance(ref)["available"] == 30
    reversed_ = grocer.reverse(earn["id"])
    assert reversed_["errors"] == [], reversed_
    assert reversed_["transfer"]["points"] == 100
    # 30 clawed back from the member's other points, 70 owed.
    assert reversed_["member"]["balance"] == {"available": 0, "pending": 0, "held": 0, "debt": 70}
    # The next earns repay the debt before anything becomes available.
    after = bakery.earn_ok(ref, "50")
    assert after["member"]["balance"] == {"available": 0, "pending": 0, "held": 0, "debt": 20}
    after = bakery.earn_ok(ref, "25")
    assert after["member"]["balance"] == {"available": 5, "pending": 0, "held": 0, "debt": 0}
    assert user_errors(cinema.redeem(ref, 6)) == ["INSUFFICIENT_POINTS"]


async def test_a_refund_repays_the_members_debt_before_it_is_spendable(
    engine: AsyncEngine, server: str
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    for shop in (grocer, cinema):
        shop.enroll(phone)
    earn = grocer.earn_ok(ref, "100")["transfer"]
    burnt = cinema.redeem(ref, 40)
    assert burnt["errors"] == [], burnt
    # The earn is reversed after 40 of its points were spent: 60 back, 40 owed.
    assert grocer.reverse(earn["id"])["member"]["balance"]["debt"] == 40
    # The cinema refunds the 40: they pay the debt instead of becoming spendable again.
    refund = cinema.reverse(burnt["transfer"]["id"])
    assert refund["errors"] == [], refund
    assert refund["member"]["balance"] == {"available": 0, "pending": 0, "held": 0, "debt": 0}
    history = grocer.api.data(
        "query($r: MemberRef!) { member(ref: $r) { transfers(first: 10) { nodes { code points } } } }",
        {"r": ref},
    )["member"]["transfers"]["nodes"]
    assert {"code": "DEBT_REPAYMENT", "points": 40} in history


# ---- holds ----------------------------------------------------------------------------------


async def test_hold_capture_and_void(engine: AsyncEngine, server: str) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    grocer.enroll(phone)
    cinema.enroll(phone)
    grocer.earn_ok(ref, "100")
    hold = cinema.hold(ref, 60)
    assert hold["errors"] == []
    assert hold["hold"]["status"] == "ACTIVE" and hold["hold"]["points"] == 60
    assert hold["member"]["balance"] == {"available": 40, "pending": 0, "held": 60, "debt": 0}
    assert user_errors(cinema.hold(ref, 41)) == ["INSUFFICIENT_POINTS"]
    assert user_errors(cinema.redeem(ref, 41)) == ["INSUFFICIENT_POINTS"]
    captured = cinema.capture(hold["hold"]["id"], points=50)
    assert captured["errors"] == []
    assert captured["hold"]["status"] == "CAPTURED"
    assert captured["transfer"]["code"] == "REDEEM" and captured["transfer"]["points"] == 50
    assert captured["hold"]["transfer"]["id"] == captured["transfer"]["id"]
    assert captured["member"]["balance"] == {"available": 50, "pending": 0, "held": 0, "debt": 0}
    # A captured hold cannot be captured or voided again.
    assert user_errors(cinema.capture(hold["hold"]["id"])) == ["HOLD_NOT_ACTIVE"]
    assert user_errors(cinema.void(hold["hold"]["id"])) == ["HOLD_NOT_ACTIVE"]
    second = cinema.hold(ref, 20)
    voided = cinema.void(second["hold"]["id"])
    assert voided["errors"] == [] and voided["hold"]["status"] == "VOIDED"
    assert voided["member"]["balance"] == {"available": 50, "pending": 0, "held": 0, "debt": 0}
    assert user_errors(cinema.capture(second["hold"]["id"])) == ["HOLD_NOT_ACTIVE"]
    assert cinema.balance(ref)["available"] == 50
    # The capture shows in the history as a REDEEM at the cinema.
    edges = cinema.api.data(TRANSFERS, {"ref": ref})["member"]["transfers"]["edges"]
    assert [(e["node"]["code"], e["node"]["points"]) for e in edges] == [("REDEEM", 50)]


HOLD_NODE = """query($id: ID!) { node(id: $id) { ... on Hold {
  points status createdAt expiresAt } } }"""


async def test_an_uncaptured_hold_lapses_by_itself_after_its_ttl(
    engine: AsyncEngine, server: str
) -> None:
    """README: `an uncaptured hold lapses by itself after ttlMinutes`. Two holds of different
    lifetimes; then the clock moves on 2 minutes (both holds are moved 2 minutes into the
    past, nothing else is touched). The 1-minute hold has lapsed: its points are available
    again and it cannot be captured; the 60-minute one still holds its points."""
    from sqlalchemy import text

    from schema.relay import from_global_id

    shop = await make_shop(engine, server)
    member = await _member(shop)
    shop.earn_ok(member, "100")
    short = payload(
        shop.api,
        HOLD,
        {
            "member": member,
            "points": 30,
            "reference": "H-1",
            "idempotencyKey": key(),
            "ttlMinutes": 1,
        },
        "holdPoints",
    )
    long = payload(
        shop.api,
        HOLD,
        {
            "member": member,
            "points": 20,
            "reference": "H-60",
            "idempotencyKey": key(),
            "ttlMinutes": 60,
        },
        "holdPoints",
    )
    default = shop.hold(member, 5)  # no ttlMinutes: 15
    assert short["errors"] == long["errors"] == default["errors"] == []
    assert shop.balance(member) == {"available": 45, "pending": 0, "held": 55, "debt": 0}

    def lifetime(hold_id: str) -> timedelta:
        hold = shop.api.data(HOLD_NODE, {"id": hold_id})["node"]
        created = datetime.fromisoformat(hold["createdAt"])
        return datetime.fromisoformat(hold["expiresAt"]) - created

    # Each hold lives for its own ttl (to the second: created and expiry are stamped by one
    # statement, microseconds apart).
    for hold, minutes in ((short, 1), (long, 60), (default, 15)):
        assert abs(lifetime(hold["hold"]["id"]) - timedelta(minutes=minutes)) < timedelta(
            seconds=1
        ), minutes

    ids = [from_global_id(h["hold"]["id"], "Hold")[1] for h in (short, long, default)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE holds SET created_at = created_at - interval '2 minutes',"
                " expires_at = expires_at - interval '2 minutes' WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
    # The 1-minute hold lapsed: 30 points are available again, 25 are still held.
    assert shop.balance(member) == {"available": 75, "pending": 0, "held": 25, "debt": 0}
    statuses = [
        shop.api.data(HOLD_NODE, {"id": h["hold"]["id"]})["node"]["status"]
        for h in (short, long, default)
    ]
    assert statuses == ["EXPIRED", "ACTIVE", "ACTIVE"]
    assert user_errors(shop.capture(short["hold"]["id"])) == ["HOLD_NOT_ACTIVE"]
    assert user_errors(shop.void(short["hold"]["id"])) == ["HOLD_NOT_ACTIVE"]
    # The lapsed points can be spent; the live holds' points cannot.
    assert user_errors(shop.redeem(member, 76)) == ["INSUFFICIENT_POINTS"]
    assert shop.redeem(member, 75)["errors"] == []
    captured = shop.capture(long["hold"]["id"])
    assert captured["errors"] == [] and captured["transfer"]["points"] == 20
    assert shop.balance(member) == {"available": 0, "pending": 0, "held": 5, "debt": 0}


async def test_capture_more_than_held_and_bad_hold_ids(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    shop.earn_ok(member, "100")
    hold = shop.hold(member, 10)["hold"]
    assert user_errors(shop.capture(hold["id"], points=11)) == ["INVALID_AMOUNT"]
    assert user_errors(shop.capture("garbage")) == ["INVALID_INPUT"]
    assert user_errors(shop.hold(member, 0)) == ["INVALID_AMOUNT"]
    assert shop.balance(member) == {"available": 90, "pending": 0, "held": 10, "debt": 0}


# ---- balances and history -------------------------------------------------------------------


async def test_balance_expiring(engine: AsyncEngine, server: str) -> None:
    short = await make_shop(engine, server, points_validity_days=10)
    long = await make_shop(engine, server, points_validity_days=365)
    phone = unique_phone()
    ref = {"phone": phone}
    short.enroll(phone)
    long.enroll(phone)
    short.earn_ok(ref, "40")
    long.earn_ok(ref, "60")
    balance = short.api.data(EXPIRING, {"ref": ref, "d": 11})["member"]["balance"]
    assert balance["available"] == 100
    assert balance["soon"] == 40
    assert balance["default"] == 40  # withinDays defaults to 30
    assert short.api.data(EXPIRING, {"ref": ref, "d": 5})["member"]["balance"]["soon"] == 0
    assert short.api.data(EXPIRING, {"ref": ref, "d": 366})["member"]["balance"]["soon"] == 100
    body = short.api.gql(EXPIRING, {"ref": ref, "d": -1})
    assert error_codes(body) == ["INVALID_INPUT"]


async def test_transfers_pagination(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    booked = [shop.earn_ok(member, str(n))["transfer"]["id"] for n in range(1, 8)]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = shop.api.data(TRANSFERS, {"ref": member, "first": 3, "after": after})["member"][
            "transfers"
        ]
        pages += 1
        seen.extend(e["node"]["id"] for e in page["edges"])
        assert len(page["edges"]) <= 3
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == list(reversed(booked))  # newest first, each once
    full = shop.api.data(TRANSFERS, {"ref": member, "first": 100})["member"]["transfers"]
    assert len(full["edges"]) == 7 and full["pageInfo"]["hasNextPage"] is False
    for first in (101, 0, -1):
        body = shop.api.gql(TRANSFERS, {"ref": member, "first": first})
        assert error_codes(body) == ["INVALID_INPUT"], first
    for cursor in ("garbage", "Zm9vOmJhcg==", "!!!"):
        body = shop.api.gql(TRANSFERS, {"ref": member, "first": 3, "after": cursor})
        assert error_codes(body) == ["INVALID_CURSOR"], cursor


async def test_a_page_without_first_holds_twenty(engine: AsyncEngine, server: str) -> None:
    """README: `first` (1–100, default 20)."""
    shop = await make_shop(engine, server)
    member = await _member(shop)
    booked = [shop.earn_ok(member, str(n))["transfer"]["id"] for n in range(1, 26)]
    page = shop.api.data(TRANSFERS, {"ref": member})["member"]["transfers"]
    assert [e["node"]["id"] for e in page["edges"]] == list(reversed(booked))[:20]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = shop.api.data(TRANSFERS, {"ref": member, "after": page["pageInfo"]["endCursor"]})
    edges = rest["member"]["transfers"]["edges"]
    assert [e["node"]["id"] for e in edges] == list(reversed(booked))[20:]
    assert rest["member"]["transfers"]["pageInfo"]["hasNextPage"] is False
    # At most 100 a page: 101 is refused, not cut down.
    assert (
        len(shop.api.data(TRANSFERS, {"ref": member, "first": 100})["member"]["transfers"]["edges"])
        == 25
    )
    body = shop.api.gql(TRANSFERS, {"ref": member, "first": 101})
    assert error_codes(body) == ["INVALID_INPUT"]
    assert body["data"] is None or body["data"]["member"] is None


async def test_transfer_by_id(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    earn = shop.earn_ok(member, "12", reference="R-12")["transfer"]
    found = shop.api.data(TRANSFER, {"id": earn["id"]})["transfer"]
    assert found == {"id": earn["id"], "code": "EARN", "points": 12, "reference": "R-12"}
    node = shop.api.data(
        """query($id: ID!) { node(id: $id) { id ... on Transfer { points } } }""",
        {"id": earn["id"]},
    )["node"]
    assert node == {"id": earn["id"], "points": 12}
    assert error_codes(shop.api.gql(TRANSFER, {"id": "garbage"})) == ["INVALID_INPUT"]
    # Redeem payloads are visible too (value of points at the redeemer).
    burnt = payload(
        shop.api,
        REDEEM,
        {"member": member, "points": 2, "reference": "B", "idempotencyKey": key()},
        "redeemPoints",
    )
    assert shop.api.data(TRANSFER, {"id": burnt["transfer"]["id"]})["transfer"]["points"] == 2


# ---- input checks and concurrency -----------------------------------------------------------


async def test_references_keys_and_ttl_are_checked(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    shop.earn_ok(member, "100")
    for fields in ({"reference": " "}, {"reference": "r" * 201}, {"idempotency_key": "k" * 201}):
        result = shop.earn(member, "10", **fields)
        assert user_errors(result) == ["INVALID_INPUT"], fields
    empty_key = payload(
        shop.api,
        EARN,
        {"member": member, "amount": "10", "reference": "R", "idempotencyKey": ""},
        "earnPoints",
    )
    assert user_errors(empty_key) == ["INVALID_INPUT"]
    for ttl in (0, 7 * 24 * 60 + 1):
        result = payload(
            shop.api,
            HOLD,
            {
                "member": member,
                "points": 5,
                "reference": "H",
                "idempotencyKey": key(),
                "ttlMinutes": ttl,
            },
            "holdPoints",
        )
        assert user_errors(result) == ["INVALID_INPUT"], ttl
    assert shop.balance(member) == {"available": 100, "pending": 0, "held": 0, "debt": 0}


async def test_concurrent_redemptions_never_overspend(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    shop.earn_ok(member, "50")
    token = shop.api.token()  # one token, fetched before the threads start

    def burn(_: int) -> dict[str, Any]:
        body = shop.api.gql(
            REDEEM,
            {"input": {"member": member, "points": 10, "reference": "C", "idempotencyKey": key()}},
            token=token,
        )
        result: dict[str, Any] = body["data"]["redeemPoints"]
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(burn, range(8)))
    succeeded = [r for r in results if r["errors"] == []]
    refused = [r for r in results if user_errors(r) == ["INSUFFICIENT_POINTS"]]
    assert len(succeeded) == 5 and len(refused) == 3
    assert shop.balance(member)["available"] == 0


async def test_concurrent_replays_of_one_key_book_once(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    token = shop.api.token()
    ikey = key()

    def earn(_: int) -> dict[str, Any]:
        body = shop.api.gql(
            EARN,
            {
                "input": {
                    "member": member,
                    "amount": "40",
                    "reference": "SAME",
                    "idempotencyKey": ikey,
                }
            },
            token=token,
        )
        result: dict[str, Any] = body["data"]["earnPoints"]
        return result

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(earn, range(6)))
    assert all(r["errors"] == [] for r in results), results
    assert len({r["transfer"]["id"] for r in results}) == 1
    assert shop.balance(member)["available"] == 40


async def test_reversing_an_earn_whose_points_expired_takes_them_from_breakage(
    engine: AsyncEngine, server: str
) -> None:
    """Expired points went to the issuer's breakage; reversing their earn takes them back from
    there, not a second time from the member's other points."""
    from sqlalchemy import text

    from ledger.postings import expire_member
    from schema.relay import from_global_id

    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    grocer.enroll(phone)
    cinema.enroll(phone)
    earn = grocer.earn_ok(ref, "100")
    cinema.earn_ok(ref, "50")
    _, member_id = from_global_id(earn["member"]["id"], "Member")
    _, transfer_id = from_global_id(earn["transfer"]["id"], "Transfer")
    # Let the grocer's lot run out (as if its validity had passed), then sweep this member.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE lots SET available_at = now() - interval '2 days',"
                " expires_at = now() - interval '1 second' WHERE transfer_id = :t"
            ),
            {"t": transfer_id},
        )
    async with engine.begin() as conn:
        assert await expire_member(conn, member_id) == 100
    assert grocer.balance(ref) == {"available": 50, "pending": 0, "held": 0, "debt": 0}
    codes = [
        e["node"]["code"]
        for e in grocer.api.data(TRANSFERS, {"ref": ref})["member"]["transfers"]["edges"]
    ]
    assert codes == ["EXPIRY", "EARN"]
    reversed_ = grocer.reverse(earn["transfer"]["id"])
    assert reversed_["errors"] == []
    assert reversed_["transfer"]["points"] == 100
    assert reversed_["member"]["balance"] == {
        "available": 50,
        "pending": 0,
        "held": 0,
        "debt": 0,
    }
    assert cinema.redeem(ref, 50)["errors"] == []


async def test_earn_by_national_number_when_the_remembered_region_is_stale(
    engine: AsyncEngine, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups normalise phones with the region it last read; a stale one (the
    operator changed it since) must not refuse or misfile a number valid in the real one."""
    import members.service

    shop = await make_shop(engine, server)
    phone = unique_phone()  # +7912..., written nationally in Russia as 8912...
    shop.enroll(phone)
    monkeypatch.setattr(members.service, "_region_seen", "US")  # 8912... is no US number
    result = shop.earn_ok({"phone": "8" + phone[2:]}, "40")
    assert result["points"] == 40
    assert shop.balance({"phone": phone})["available"] == 40
    assert members.service._region_seen == "RU"
    monkeypatch.setattr(members.service, "_region_seen", "US")  # and for a plain lookup
    found = shop.api.data(
        "query($r: MemberRef!) { member(ref: $r) { balance { available } } }",
        {"r": {"phone": "8" + phone[2:]}},
    )["member"]
    assert found == {"balance": {"available": 40}}
    # A number that is invalid in the region in force is still refused, and books nothing.
    assert user_errors(shop.earn({"phone": "8123"}, "40")) == ["INVALID_PHONE"]
    assert shop.balance({"phone": phone})["available"] == 40
