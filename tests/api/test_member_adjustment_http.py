"""adjustMemberPoints over HTTP: the operator credits and debits with a reason; a partner's
token is FORBIDDEN and books nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import error_codes, key, make_shop
from tests.conftest import Api, unique_phone

ADJUST = """mutation($input: AdjustMemberPointsInput!) { adjustMemberPoints(input: $input) {
  transfer { id code points reason partner { slug } }
  member { id balance { available pending held debt } }
  errors { code message field } } }"""

HISTORY = """query($ref: MemberRef!) { member(ref: $ref) {
  transfers(first: 10) { edges { node { code points reason } } } } }"""


def _adjust(api: Api, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.data(
        ADJUST, {"input": {"idempotencyKey": key(), "reason": "goodwill", **fields}}
    )["adjustMemberPoints"]
    return result


async def test_operator_adjusts_and_a_partner_is_forbidden(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    member = shop.enroll(phone)
    ref = {"id": member["id"]}

    credit = _adjust(operator_api, member=ref, points=120, fundedBy=shop.id, reason="lost card")
    assert credit["errors"] == []
    assert credit["transfer"]["code"] == "ADJUSTMENT"
    assert credit["transfer"]["reason"] == "lost card"
    assert credit["transfer"]["partner"]["slug"] == shop.slug
    assert credit["member"]["balance"]["available"] == 120

    debit = _adjust(operator_api, member=ref, points=-20, reason="double credit")
    assert debit["errors"] == []
    assert debit["member"]["balance"]["available"] == 100
    too_much = _adjust(operator_api, member=ref, points=-101)
    assert [(e["code"], e["field"]) for e in too_much["errors"]] == [
        ("INSUFFICIENT_POINTS", ["points"])
    ]

    # The member's history (the operator's view) explains each adjustment; a partner sees
    # only the credit it funded (a debit belongs to no partner).
    history = operator_api.data(HISTORY, {"ref": ref})["member"]["transfers"]["edges"]
    reasons = {(e["node"]["code"], e["node"]["points"], e["node"]["reason"]) for e in history}
    assert {("ADJUSTMENT", 120, "lost card"), ("ADJUSTMENT", 20, "double credit")} <= reasons

    body = shop.api.gql(
        ADJUST,
        {
            "input": {
                "member": ref,
                "points": 1000,
                "fundedBy": shop.id,
                "reason": "self-service",
                "idempotencyKey": key(),
            }
        },
    )
    assert error_codes(body) == ["FORBIDDEN"]
    balance = operator_api.data(
        "query($ref: MemberRef!) { member(ref: $ref) { balance { available } } }", {"ref": ref}
    )
    assert balance["member"]["balance"]["available"] == 100
