"""The operator's API over HTTP: partners, rate cards, API clients, coalition settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.relay import encode_cursor
from tests.api.helpers import VIEWER, error_codes, make_shop, payload, unique_phone, user_errors
from tests.conftest import Api, make_partner, unique_slug

CREATE_PARTNER = """mutation($input: CreatePartnerInput!) { createPartner(input: $input) {
  partner { id slug name acceptsRedemption pendingDays pointsValidityDays
            rateCards { earnRate effectiveFrom } }
  errors { code message field } } }"""

SET_RATE_CARD = """mutation($input: SetRateCardInput!) { setRateCard(input: $input) {
  rateCard { effectiveFrom earnRate issuePrice redeemPrice } errors { code message field } } }"""

CREATE_CLIENT = """mutation($input: CreateApiClientInput!) { createApiClient(input: $input) {
  clientId clientSecret scopes errors { code message field } } }"""

SETTINGS = """{ coalitionSettings { currency currencyExponent pointValue defaultRegion
  fundingModel clearingFee } }"""

UPDATE_SETTINGS = """mutation($input: UpdateCoalitionSettingsInput!) {
  updateCoalitionSettings(input: $input) {
    settings { pointValue defaultRegion fundingModel clearingFee }
    errors { code message field } } }"""

PARTNERS = """query($first: Int, $after: String) { partners(first: $first, after: $after) {
  edges { cursor node { id slug rateCards { earnRate } } } pageInfo { hasNextPage endCursor } } }"""


def _create(operator: Api, **fields: Any) -> dict[str, Any]:
    data = {"name": "Cafe", "slug": unique_slug(), "earnRate": "0.05", **fields}
    return payload(operator, CREATE_PARTNER, data, "createPartner")


async def test_create_partner_with_defaults(operator_api: Api) -> None:
    slug = unique_slug()
    created = _create(operator_api, slug=slug, name="  Corner Cafe  ")
    assert created["errors"] == []
    partner = created["partner"]
    assert partner["slug"] == slug
    assert partner["name"] == "Corner Cafe"
    assert partner["acceptsRedemption"] is True
    assert partner["pendingDays"] == 0
    assert partner["pointsValidityDays"] == 365
    assert [Decimal(c["earnRate"]) for c in partner["rateCards"]] == [Decimal("0.05")]
    custom = _create(operator_api, acceptsRedemption=False, pendingDays=14, pointsValidityDays=90)[
        "partner"
    ]
    assert (custom["acceptsRedemption"], custom["pendingDays"], custom["pointsValidityDays"]) == (
        False,
        14,
        90,
    )


async def test_create_partner_refuses_taken_and_invalid_slugs(operator_api: Api) -> None:
    slug = unique_slug()
    assert _create(operator_api, slug=slug)["errors"] == []
    taken = _create(operator_api, slug=slug)
    assert user_errors(taken) == ["SLUG_TAKEN"] and taken["partner"] is None
    for bad in ("Upper", "has space", "-dash", "dash-", "", "x" * 65, "ünï"):
        result = _create(operator_api, slug=bad)
        assert user_errors(result) == ["INVALID_INPUT"], bad
        assert result["errors"][0]["field"] == ["slug"]
    for fields, code in (
        ({"name": " "}, "INVALID_INPUT"),
        ({"earnRate": "-1"}, "INVALID_AMOUNT"),
        ({"pendingDays": -1}, "INVALID_INPUT"),
        ({"pointsValidityDays": 0}, "INVALID_INPUT"),
    ):
        assert user_errors(_create(operator_api, **fields)) == [code], fields


async def test_partners_connection(engine: AsyncEngine, server: str, operator_api: Api) -> None:
    # Page from a marker created first: the shared test database may hold many partners.
    marker = await make_partner(engine)
    shop = await make_shop(engine, server)
    other = await make_shop(engine, server)
    # A partner sees only itself, with its own rate cards.
    own = shop.api.data(PARTNERS, {})["partners"]
    assert [e["node"]["slug"] for e in own["edges"]] == [shop.slug]
    assert own["edges"][0]["node"]["rateCards"]
    assert own["pageInfo"]["hasNextPage"] is False
    # The operator sees all partners, page by page, each once.
    slugs: list[str] = []
    after: str | None = encode_cursor(marker.id)
    while True:
        page = operator_api.data(PARTNERS, {"first": 2, "after": after})["partners"]
        assert len(page["edges"]) <= 2
        slugs.extend(e["node"]["slug"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert {shop.slug, other.slug} <= set(slugs)
    assert len(slugs) == len(set(slugs)) and marker.slug not in slugs
    assert len(slugs) == len(set(slugs))
    assert error_codes(operator_api.gql(PARTNERS, {"first": 101})) == ["INVALID_INPUT"]
    assert error_codes(operator_api.gql(PARTNERS, {"after": "bogus"})) == ["INVALID_CURSOR"]


async def test_set_rate_card(engine: AsyncEngine, server: str, operator_api: Api) -> None:
    shop = await make_shop(engine, server, earn_rate="1")
    phone = unique_phone()
    shop.enroll(phone)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = payload(
        operator_api,
        SET_RATE_CARD,
        {"partnerId": shop.id, "earnRate": "5", "effectiveFrom": past},
        "setRateCard",
    )
    assert user_errors(refused) == ["INVALID_INPUT"]
    assert refused["errors"][0]["field"] == ["effectiveFrom"]
    future = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    scheduled = payload(
        operator_api,
        SET_RATE_CARD,
        {"partnerId": shop.id, "earnRate": "3", "effectiveFrom": future.isoformat()},
        "setRateCard",
    )
    assert scheduled["errors"] == []
    assert Decimal(scheduled["rateCard"]["earnRate"]) == 3
    assert datetime.fromisoformat(scheduled["rateCard"]["effectiveFrom"]) == future
    # Today's earn still uses today's card.
    assert shop.earn_ok({"phone": phone}, "10")["points"] == 10
    cards = shop.api.data(PARTNERS, {})["partners"]["edges"][0]["node"]["rateCards"]
    assert [Decimal(c["earnRate"]) for c in cards] == [1, 3]
    # A card from now applies at once.
    now_card = payload(
        operator_api, SET_RATE_CARD, {"partnerId": shop.id, "earnRate": "2"}, "setRateCard"
    )
    assert now_card["errors"] == []
    assert shop.earn_ok({"phone": phone}, "10")["points"] == 20
    for fields, code in (
        ({"partnerId": "garbage", "earnRate": "1"}, "INVALID_INPUT"),
        ({"partnerId": shop.id, "earnRate": "-2"}, "INVALID_AMOUNT"),
        ({"partnerId": shop.id, "earnRate": "0.0000001"}, "INVALID_AMOUNT"),
    ):
        assert user_errors(payload(operator_api, SET_RATE_CARD, fields, "setRateCard")) == [code]
    from schema.relay import to_global_id

    ghost = to_global_id("Partner", "00000000-0000-7000-8000-000000000000")
    missing = payload(
        operator_api, SET_RATE_CARD, {"partnerId": ghost, "earnRate": "1"}, "setRateCard"
    )
    assert user_errors(missing) == ["PARTNER_NOT_FOUND"]


async def test_create_api_client(engine: AsyncEngine, server: str, operator_api: Api) -> None:
    shop = await make_shop(engine, server)
    created = payload(
        operator_api,
        CREATE_CLIENT,
        {"partnerId": shop.id, "scopes": ["members:read", "points:earn"], "name": "POS"},
        "createApiClient",
    )
    assert created["errors"] == []
    assert created["clientId"] and created["clientSecret"]
    assert created["scopes"] == ["members:read", "points:earn"]
    with httpx.Client(base_url=server) as http:
        response = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(created["clientId"], created["clientSecret"]),
        )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    viewer = operator_api.gql(VIEWER, token=token)["data"]["viewer"]
    assert viewer["clientId"] == created["clientId"]
    assert viewer["partner"]["slug"] == shop.slug
    assert sorted(viewer["scopes"]) == ["members:read", "points:earn"]
    # An operator client.
    op = payload(operator_api, CREATE_CLIENT, {"scopes": ["operator"]}, "createApiClient")
    assert op["errors"] == [] and op["scopes"] == ["operator"]
    for fields in (
        {"partnerId": shop.id, "scopes": ["members:read", "points:steal"]},
        {"partnerId": shop.id, "scopes": ["operator"]},
        {"partnerId": shop.id, "scopes": []},
        {"scopes": ["members:read"]},  # partner-less but not an operator
    ):
        refused = payload(operator_api, CREATE_CLIENT, fields, "createApiClient")
        assert user_errors(refused) == ["INVALID_SCOPE"], fields
        assert refused["clientId"] is None and refused["clientSecret"] is None
    from schema.relay import to_global_id

    ghost = to_global_id("Partner", "00000000-0000-7000-8000-000000000000")
    refused = payload(
        operator_api,
        CREATE_CLIENT,
        {"partnerId": ghost, "scopes": ["members:read"]},
        "createApiClient",
    )
    assert user_errors(refused) == ["PARTNER_NOT_FOUND"]


async def test_update_coalition_settings(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    before = operator_api.data(SETTINGS)["coalitionSettings"]
    try:
        updated = payload(
            operator_api,
            UPDATE_SETTINGS,
            {"pointValue": "0.5", "clearingFee": "0.02"},
            "updateCoalitionSettings",
        )
        assert updated["errors"] == []
        assert Decimal(updated["settings"]["pointValue"]) == Decimal("0.5")
        assert Decimal(updated["settings"]["clearingFee"]) == Decimal("0.02")
        assert updated["settings"]["defaultRegion"] == before["defaultRegion"]
        # Partners read the same settings, and a redemption is valued at the new price.
        shop = await make_shop(engine, server)
        seen = shop.api.data(SETTINGS)["coalitionSettings"]
        assert Decimal(seen["pointValue"]) == Decimal("0.5")
        phone = unique_phone()
        shop.enroll(phone)
        shop.earn_ok({"phone": phone}, "100")
        assert Decimal(shop.redeem({"phone": phone}, 30)["value"]) == Decimal("15")
        for fields, code in (
            ({"pointValue": "-1"}, "INVALID_AMOUNT"),
            ({"defaultRegion": "XX"}, "INVALID_INPUT"),
        ):
            result = payload(operator_api, UPDATE_SETTINGS, fields, "updateCoalitionSettings")
            assert user_errors(result) == [code], fields
        # fundingModel is a FundingModel enum: a value outside it never reaches the mutation.
        body = operator_api.gql(UPDATE_SETTINGS, {"input": {"fundingModel": "BARTER"}})
        assert body["data"] is None and error_codes(body) == ["INVALID_INPUT"]
        assert "FundingModel" in body["errors"][0]["message"]
        assert Decimal(operator_api.data(SETTINGS)["coalitionSettings"]["pointValue"]) == Decimal(
            "0.5"
        )
    finally:
        restored = payload(
            operator_api,
            UPDATE_SETTINGS,
            {"pointValue": before["pointValue"], "clearingFee": before["clearingFee"]},
            "updateCoalitionSettings",
        )
        assert restored["errors"] == []
