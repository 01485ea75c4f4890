"""Tiers over real HTTP with real tokens, against the served app and its worker: the operator
sets the policy, a partner cannot; any client reads it; `Member.tier` and `tierProgress`
follow a member's earns within seconds, for the partners that may see the member.

The policy is coalition-wide and the suite shares one database: thresholds here are far above
what any other test earns, so no other test's member ever gets a tier.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import error_codes, make_shop, payload
from tests.conftest import Api, partner_api, unique_phone
from tests.outbox.helpers import wait_for

SILVER_AT = 2_000_000
GOLD_AT = 5_000_000

SET_POLICY = """mutation($input: SetTierPolicyInput!) { setTierPolicy(input: $input) {
  policy { version windowDays graceDays tiers { code name threshold multiplier }
           funding { operator share partner { id slug } } }
  errors { code message field } } }"""

POLICY = """{ tierPolicy { version windowDays graceDays tiers { code name threshold multiplier }
  funding { operator share partner { id } } } }"""

MEMBER_TIER = """query($ref: MemberRef!) { member(ref: $ref) {
  id tier { code name multiplier }
  tierProgress { qualifyingPoints windowDays tier { code } nextTier { code threshold }
                 pointsToNext graceEndsAt } } }"""

MEMBERS_TIERS = """query($a: MemberRef!, $b: MemberRef!) {
  a: member(ref: $a) { tier { code } tierProgress { qualifyingPoints } }
  b: member(ref: $b) { tier { code } tierProgress { qualifyingPoints } } }"""


def _policy_input(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "windowDays": 365,
        "graceDays": 30,
        "tiers": [
            {"code": "SILVER", "name": "Silver", "threshold": SILVER_AT, "multiplier": "1.25"},
            {"code": "GOLD", "name": "Gold", "threshold": GOLD_AT, "multiplier": "1.5"},
        ],
    }
    policy.update(changes)
    return policy


def _member_tier(api: Api, member_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = api.data(MEMBER_TIER, {"ref": {"id": member_id}})["member"]
    return found


async def test_operator_sets_the_policy_and_members_reach_tiers_over_http(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer = await make_shop(engine, server)
    fuel = await make_shop(engine, server)
    stranger = await make_shop(engine, server)
    funding = [
        {"partnerId": grocer.id, "share": "0.5"},
        {"partnerId": fuel.id, "share": "0.3"},
        {"partnerId": None, "share": "0.2"},
    ]
    result = payload(operator_api, SET_POLICY, _policy_input(funding=funding), "setTierPolicy")
    assert result["errors"] == []
    policy = result["policy"]
    assert policy["tiers"][1] == {
        "code": "GOLD",
        "name": "Gold",
        "threshold": GOLD_AT,
        "multiplier": "1.5",
    }
    assert [(f["operator"], f["share"]) for f in policy["funding"]] == [
        (False, "0.5"),
        (False, "0.3"),
        (True, "0.2"),
    ]
    assert policy["funding"][0]["partner"]["slug"] == grocer.slug

    # Every client reads the policy; a partner sees only its own funding share.
    seen = grocer.api.data(POLICY)["tierPolicy"]
    assert seen["version"] == policy["version"] and seen["tiers"] == policy["tiers"]
    assert seen["funding"] == [{"operator": False, "share": "0.5", "partner": {"id": grocer.id}}]
    assert stranger.api.data(POLICY)["tierPolicy"]["funding"] == []

    phone = unique_phone()
    member = grocer.enroll(phone)
    assert fuel.enroll(phone)["id"] == member["id"]  # one member, enrolled at both

    before = _member_tier(grocer.api, member["id"])
    assert before is not None and before["tier"] is None
    assert before["tierProgress"] == {
        "qualifyingPoints": 0,
        "windowDays": 365,
        "tier": None,
        "nextTier": {"code": "SILVER", "threshold": SILVER_AT},
        "pointsToNext": SILVER_AT,
        "graceEndsAt": None,
    }
    grocer.earn_ok({"id": member["id"]}, "1500000.00")
    fuel.earn_ok({"id": member["id"]}, "500000.00")  # 2,000,000 across two partners
    reached = await wait_for(
        lambda: _member_tier(fuel.api, member["id"]),
        lambda m: m is not None and m["tier"] is not None,
        "Member.tier over HTTP",
        30,
    )
    assert reached is not None
    assert reached["tier"] == {"code": "SILVER", "name": "Silver", "multiplier": "1.25"}
    progress = reached["tierProgress"]
    assert progress["tier"] == {"code": "SILVER"}
    assert progress["nextTier"] == {"code": "GOLD", "threshold": GOLD_AT}
    assert progress["pointsToNext"] == GOLD_AT - progress["qualifyingPoints"]
    assert progress["qualifyingPoints"] >= SILVER_AT
    # The operator sees it too; a partner the member is not enrolled with does not see the
    # member at all, so not its tier either.
    assert _member_tier(operator_api, member["id"])["tier"]["code"] == "SILVER"  # type: ignore[index]
    assert _member_tier(stranger.api, member["id"]) is None

    # Several members in one request: one read of tiers and one of qualifying points.
    other = grocer.enroll(unique_phone())
    both = grocer.api.data(MEMBERS_TIERS, {"a": {"id": member["id"]}, "b": {"id": other["id"]}})
    assert both["a"]["tier"] == {"code": "SILVER"} and both["b"]["tier"] is None
    assert both["b"]["tierProgress"] == {"qualifyingPoints": 0}


async def test_a_partner_cannot_set_the_policy(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    before = operator_api.data(POLICY)["tierPolicy"]
    body = shop.api.gql(SET_POLICY, {"input": _policy_input(windowDays=30)})
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] is None or body["data"].get("setTierPolicy") is None
    assert operator_api.data(POLICY)["tierPolicy"] == before


async def test_a_bad_policy_is_refused_with_a_typed_error_over_http(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    before = operator_api.data(POLICY)["tierPolicy"]
    tiers = _policy_input()["tiers"]
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        (
            _policy_input(tiers=[tiers[1], tiers[0]]),
            "INVALID_TIER_POLICY",
            ["tiers", "1", "threshold"],
        ),
        (
            _policy_input(tiers=[{**tiers[0], "multiplier": "0.5"}]),
            "INVALID_TIER_POLICY",
            ["tiers", "0", "multiplier"],
        ),
        (
            _policy_input(tiers=[{**tiers[0], "multiplier": "1,5"}]),  # not a Decimal
            "INVALID_TIER_POLICY",
            ["tiers", "0", "multiplier"],
        ),
        (_policy_input(windowDays=0), "INVALID_TIER_POLICY", ["windowDays"]),
        (
            _policy_input(funding=[{"partnerId": None, "share": "0.5"}]),
            "INVALID_FUNDING",
            ["funding"],
        ),
        (
            _policy_input(funding=[{"partnerId": "not-an-id", "share": "1"}]),
            "INVALID_INPUT",
            ["funding", "0", "partnerId"],
        ),
    ]
    for policy_input, code, field in cases:
        result = payload(operator_api, SET_POLICY, policy_input, "setTierPolicy")
        assert result["policy"] is None
        assert [(e["code"], e["field"]) for e in result["errors"]] == [(code, field)], policy_input
    assert operator_api.data(POLICY)["tierPolicy"] == before


async def test_tier_fields_need_only_the_members_read_scope(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    member = shop.enroll(unique_phone())
    reader = await partner_api(engine, server, shop.raw_id, ["members:read"])
    found = _member_tier(reader, member["id"])
    assert found is not None and found["tier"] is None
    assert found["tierProgress"]["qualifyingPoints"] == 0
    # tierPolicy needs no scope at all beyond an authenticated client.
    reader.data(POLICY)
