"""Scopes over HTTP: every operation refuses a token without its scope, and changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import (
    CAPTURE,
    EARN,
    ENROLL,
    HOLD,
    MEMBER,
    NODE,
    REDEEM,
    REVERSE,
    TRANSFER,
    VIEWER,
    VOID,
    error_codes,
    key,
    make_shop,
)
from tests.api.test_partners_admin import (
    CREATE_CLIENT,
    CREATE_PARTNER,
    PARTNERS,
    SET_RATE_CARD,
    SETTINGS,
    UPDATE_SETTINGS,
)
from tests.conftest import PARTNER_SCOPES, Api, unique_phone, unique_slug

REVOKE_CLIENT = """mutation($input: RevokeApiClientInput!) { revokeApiClient(input: $input) {
  clientId errors { code } } }"""

HOLD_STATUS = """query($id: ID!) { node(id: $id) { ... on Hold { status } } }"""

# The scope each partner-facing root field needs (the operator-only ones are checked below).
PARTNER_FIELDS = {
    "enrollMember": "members:write",
    "earnPoints": "points:earn",
    "earnPointsBatch": "points:earn",
    "redeemPoints": "points:redeem",
    "holdPoints": "points:redeem",
    "captureHold": "points:redeem",
    "voidHold": "points:redeem",
    "reverseTransfer": "points:reverse",
    "member": "members:read",
    "transfer": "members:read",
    "quoteEarn": "points:earn",
    "campaigns": "campaigns:write",
    "campaign": "campaigns:write",
    "createCampaign": "campaigns:write",
    "updateCampaign": "campaigns:write",
    "pauseCampaign": "campaigns:write",
    "resumeCampaign": "campaigns:write",
    "endCampaign": "campaigns:write",
    "archiveCampaign": "campaigns:write",
}
OPERATOR_FIELDS = {
    "createPartner",
    "setRateCard",
    "createApiClient",
    "revokeApiClient",
    "updateCoalitionSettings",
    "auditLog",
    "setTierPolicy",
    "adjustMemberPoints",
}
ANY_CLIENT_FIELDS = {"viewer", "node", "partners", "coalitionSettings", "tierPolicy"}


def _without(scope: str) -> str:
    return " ".join(s for s in PARTNER_SCOPES if s != scope)


def _forbidden(api: Api, token: str, query: str, variables: dict[str, Any], field: str) -> None:
    body = api.gql(query, variables, token=token)
    assert error_codes(body) == ["FORBIDDEN"], (field, body)
    assert body["errors"][0]["path"] == [field]
    assert body.get("data") is None or body["data"].get(field) is None


def test_every_non_settlement_root_field_has_a_declared_scope() -> None:
    from strawberry.types.base import get_object_definition

    from schema.permissions import ROOT_FIELD_SCOPES
    from schema.root import build_schema
    from schema.settlement.api import SettlementMutations, SettlementQueries

    graphql_schema = build_schema()._schema
    assert graphql_schema.query_type is not None and graphql_schema.mutation_type is not None
    names = set(graphql_schema.query_type.fields) | set(graphql_schema.mutation_type.fields)
    settlement: set[str] = set()
    for cls in (SettlementQueries, SettlementMutations):
        definition = get_object_definition(cls, strict=True)
        settlement |= {f.graphql_name or _camel(f.python_name) for f in definition.fields}
    covered = set(PARTNER_FIELDS) | OPERATOR_FIELDS | ANY_CLIENT_FIELDS
    assert names - settlement == covered
    for name, scope in PARTNER_FIELDS.items():
        assert ROOT_FIELD_SCOPES[name] == scope, name
    for name in OPERATOR_FIELDS:
        assert ROOT_FIELD_SCOPES[name] == "operator", name
    for name in ANY_CLIENT_FIELDS:
        assert ROOT_FIELD_SCOPES[name] == "*", name


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def test_points_and_member_operations_refuse_a_token_without_their_scope(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    api = shop.api
    phone = unique_phone()
    ref = {"phone": phone}
    shop.enroll(phone)
    earn = shop.earn_ok(ref, "100")["transfer"]
    hold = shop.hold(ref, 10)["hold"]
    before = shop.balance(ref)
    assert before == {"available": 90, "pending": 0, "held": 10, "debt": 0}

    newcomer = unique_phone()
    _forbidden(
        api,
        api.token(_without("members:write")),
        ENROLL,
        {"input": {"phone": newcomer}},
        "enrollMember",
    )
    assert api.data(MEMBER, {"ref": {"phone": newcomer}})["member"] is None

    # A token with only members:read cannot move points.
    reader = api.token("members:read")
    _forbidden(
        api,
        reader,
        EARN,
        {"input": {"member": ref, "amount": "50", "reference": "R", "idempotencyKey": key()}},
        "earnPoints",
    )
    _forbidden(
        api,
        api.token(_without("points:earn")),
        EARN,
        {"input": {"member": ref, "amount": "50", "reference": "R", "idempotencyKey": key()}},
        "earnPoints",
    )
    no_redeem = api.token(_without("points:redeem"))
    _forbidden(
        api,
        no_redeem,
        REDEEM,
        {"input": {"member": ref, "points": 5, "reference": "R", "idempotencyKey": key()}},
        "redeemPoints",
    )
    _forbidden(
        api,
        no_redeem,
        HOLD,
        {"input": {"member": ref, "points": 5, "reference": "R", "idempotencyKey": key()}},
        "holdPoints",
    )
    _forbidden(
        api,
        no_redeem,
        CAPTURE,
        {"input": {"holdId": hold["id"], "idempotencyKey": key()}},
        "captureHold",
    )
    _forbidden(
        api, no_redeem, VOID, {"input": {"holdId": hold["id"], "idempotencyKey": key()}}, "voidHold"
    )
    _forbidden(
        api,
        api.token(_without("points:reverse")),
        REVERSE,
        {"input": {"transferId": earn["id"], "idempotencyKey": key()}},
        "reverseTransfer",
    )
    # Nothing changed.
    assert shop.balance(ref) == before
    assert api.data(HOLD_STATUS, {"id": hold["id"]})["node"]["status"] == "ACTIVE"

    # Reads need members:read.
    no_read = api.token(_without("members:read"))
    _forbidden(api, no_read, MEMBER, {"ref": ref}, "member")
    _forbidden(api, no_read, TRANSFER, {"id": earn["id"]}, "transfer")
    # node does not refuse, but shows nothing the token may not read.
    for node_id in (earn["id"], hold["id"]):
        body = api.gql(NODE, {"id": node_id}, token=no_read)
        assert "errors" not in body and body["data"]["node"] is None
    # Fields any client may use still work with the narrowest token.
    narrow = api.token("points:earn")
    body = api.gql(VIEWER, token=narrow)
    assert body["data"]["viewer"]["scopes"] == ["points:earn"]
    assert "errors" not in api.gql(PARTNERS, {}, token=narrow)
    # One forbidden field does not hide the others of the same request.
    mixed = api.gql(
        """query($ref: MemberRef!) { viewer { clientId } member(ref: $ref) { id } }""",
        {"ref": ref},
        token=narrow,
    )
    assert error_codes(mixed) == ["FORBIDDEN"]
    assert mixed["data"]["viewer"]["clientId"] == api.client_id
    assert mixed["data"]["member"] is None


async def test_operator_operations_refuse_partner_tokens(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    token = shop.api.token()  # every partner scope, but not 'operator'
    slug = unique_slug()
    _forbidden(
        shop.api,
        token,
        CREATE_PARTNER,
        {"input": {"name": "Evil", "slug": slug, "earnRate": "100"}},
        "createPartner",
    )
    _forbidden(
        shop.api,
        token,
        SET_RATE_CARD,
        {"input": {"partnerId": shop.id, "earnRate": "100"}},
        "setRateCard",
    )
    _forbidden(
        shop.api,
        token,
        CREATE_CLIENT,
        {"input": {"partnerId": shop.id, "scopes": ["members:read"]}},
        "createApiClient",
    )
    _forbidden(
        shop.api, token, CREATE_CLIENT, {"input": {"scopes": ["operator"]}}, "createApiClient"
    )
    victim = await make_shop(engine, server)
    _forbidden(
        shop.api,
        token,
        REVOKE_CLIENT,
        {"input": {"clientId": victim.api.client_id}},
        "revokeApiClient",
    )
    before = operator_api.data(SETTINGS)["coalitionSettings"]
    _forbidden(
        shop.api,
        token,
        UPDATE_SETTINGS,
        {"input": {"pointValue": "1000"}},
        "updateCoalitionSettings",
    )
    # Nothing changed.
    assert operator_api.data(SETTINGS)["coalitionSettings"] == before
    cards = shop.api.data(PARTNERS, {})["partners"]["edges"][0]["node"]["rateCards"]
    assert len(cards) == 1
    async with engine.connect() as conn:
        created = await conn.scalar(
            text("SELECT count(*) FROM partners WHERE slug = :s"), {"s": slug}
        )
    assert created == 0
    assert "errors" not in victim.api.gql(VIEWER)
