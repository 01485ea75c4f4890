"""The whole path over HTTP: OAuth token, enroll, earn, redeem, reverse, balance."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_partner, partner_api, unique_phone

ENROLL = """mutation($input: EnrollMemberInput!) { enrollMember(input: $input) {
  member { id phone partnerRef } errors { code message field } } }"""
EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id code points reference partner { slug } }
  member { balance { available pending held } }
  explanation { rule points } errors { code message field } } }"""
REDEEM = """mutation($input: RedeemPointsInput!) { redeemPoints(input: $input) {
  points value transfer { id code points } member { balance { available } }
  errors { code message field } } }"""


async def test_earn_and_burn_across_brands_over_http(engine: AsyncEngine, server: str) -> None:
    grocer = await make_partner(engine, earn_rate="0.1")
    cinema = await make_partner(engine)
    grocer_api = await partner_api(engine, server, grocer.id)
    cinema_api = await partner_api(engine, server, cinema.id)
    phone = unique_phone()
    enrolled = grocer_api.data(ENROLL, {"input": {"phone": phone, "partnerRef": "C-1"}})
    member = enrolled["enrollMember"]["member"]
    assert member["phone"] != phone and member["phone"].endswith(phone[-2:])
    cinema_api.data(ENROLL, {"input": {"phone": phone}})
    earned = grocer_api.data(
        EARN,
        {
            "input": {
                "member": {"partnerRef": "C-1"},
                "amount": "1499.90",
                "reference": "R-1",
                "idempotencyKey": secrets.token_hex(8),
            }
        },
    )["earnPoints"]
    assert earned["errors"] == []
    assert earned["points"] == 149
    assert earned["member"]["balance"]["available"] == 149
    assert earned["transfer"]["partner"]["slug"] == grocer.slug
    burnt = cinema_api.data(
        REDEEM,
        {
            "input": {
                "member": {"phone": phone},
                "points": 100,
                "reference": "T-1",
                "idempotencyKey": secrets.token_hex(8),
            }
        },
    )["redeemPoints"]
    assert burnt["errors"] == []
    assert burnt["value"] == "100.00" or float(burnt["value"]) == 100
    assert burnt["member"]["balance"]["available"] == 49
