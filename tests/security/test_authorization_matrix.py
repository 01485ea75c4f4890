"""The authorization matrix, generated from the schema: every root query and mutation, called
over HTTP with no token, with a token of each single scope, and as the operator.

RULES is the expected policy, written here independently of the code's declarations: a root
field missing from it (a new operation) fails the suite until someone decides who may call it.
Deny is a GraphQL error with `extensions.code == "FORBIDDEN"` at the field; allow is no
FORBIDDEN anywhere (the placeholder arguments may well be refused as unknown or invalid).

The second half covers what the matrix cannot: that a partner allowed to call a field still
never sees another partner's objects through it.
"""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLInputType,
    GraphQLSchema,
    Undefined,
    get_named_type,
    is_enum_type,
    is_input_object_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_scalar_type,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.permissions import ROOT_FIELD_SCOPES
from schema.relay import to_global_id
from schema.root import build_schema
from tests.conftest import PARTNER_SCOPES, Api, make_client, make_partner, unique_phone

ANY = "*"
OPERATOR = "operator"
RULES: dict[str, str] = {
    # queries
    "viewer": ANY,
    "node": ANY,
    "partners": ANY,
    "coalitionSettings": ANY,
    "member": "members:read",
    "transfer": "members:read",
    "settlementPeriods": "settlement:read",
    "settlementPeriod": "settlement:read",
    "currentSettlementPeriod": "settlement:read",
    "auditLog": OPERATOR,
    "quoteEarn": "points:earn",
    "campaigns": "campaigns:write",
    "campaign": "campaigns:write",
    "tierPolicy": ANY,
    # mutations
    "enrollMember": "members:write",
    "earnPoints": "points:earn",
    "earnPointsBatch": "points:earn",
    "redeemPoints": "points:redeem",
    "holdPoints": "points:redeem",
    "captureHold": "points:redeem",
    "voidHold": "points:redeem",
    "reverseTransfer": "points:reverse",
    "submitPartnerReport": "reconciliation:write",
    "createPartner": OPERATOR,
    "setRateCard": OPERATOR,
    "createApiClient": OPERATOR,
    "revokeApiClient": OPERATOR,
    "updateCoalitionSettings": OPERATOR,
    "closeSettlementPeriod": OPERATOR,
    "recordSettlementPayment": OPERATOR,
    "resolveReconciliationBreak": OPERATOR,
    "adjustMemberPoints": OPERATOR,
    "createCampaign": "campaigns:write",
    "updateCampaign": "campaigns:write",
    "pauseCampaign": "campaigns:write",
    "resumeCampaign": "campaigns:write",
    "endCampaign": "campaigns:write",
    "archiveCampaign": "campaigns:write",
    "setTierPolicy": OPERATOR,
}

SCHEMA: GraphQLSchema = build_schema()._schema
# The Relay type a placeholder id names, by argument or input field name.
ID_TYPES = {
    "partnerId": "Partner",
    "periodId": "SettlementPeriod",
    "instructionId": "PaymentInstruction",
    "breakId": "ReconciliationBreak",
    "holdId": "Hold",
    "transferId": "Transfer",
    "id": "Campaign",
}


def root_fields() -> list[tuple[str, str, GraphQLField]]:
    assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
    return [
        *(("query", n, f) for n, f in SCHEMA.query_type.fields.items()),
        *(("mutation", n, f) for n, f in SCHEMA.mutation_type.fields.items()),
    ]


def placeholder(type_: Any, name: str) -> Any:
    """A value of the right shape: ids are valid global ids of objects that do not exist, so
    allowed writes are refused as unknown instead of changing anything."""
    if is_non_null_type(type_):
        return placeholder(type_.of_type, name)
    if is_list_type(type_):
        return [placeholder(type_.of_type, name)]
    if is_input_object_type(type_):
        value = {}
        for field_name, field in type_.fields.items():
            required = is_non_null_type(field.type) and field.default_value is Undefined
            is_id = get_named_type(field.type).name == "ID"
            if required or is_id:
                value[field_name] = placeholder(field.type, field_name)
        return value
    if is_enum_type(type_):
        return next(iter(type_.values))
    assert is_scalar_type(type_), type_
    scalars: dict[str, Any] = {
        "ID": to_global_id(ID_TYPES.get(name, "Node"), uuid.uuid4()),
        "String": f"matrix-{secrets.token_hex(4)}",
        "Int": 1,
        "Float": 1.0,
        "Boolean": False,
        "Decimal": "1",
        "DateTime": "2020-01-01T00:00:00+00:00",
        "JSON": {},
    }
    assert type_.name in scalars, f"no placeholder for the scalar {type_.name}: add one"
    return scalars[type_.name]


def operation(kind: str, name: str, field: GraphQLField) -> tuple[str, dict[str, Any]]:
    """The smallest valid operation calling `name`: its required arguments as variables."""
    definitions, arguments, variables = [], [], {}
    for arg_name, arg in field.args.items():
        if not (is_non_null_type(arg.type) and arg.default_value is Undefined):
            continue
        arg_type: GraphQLInputType = arg.type
        definitions.append(f"${arg_name}: {arg_type}")
        arguments.append(f"{arg_name}: ${arg_name}")
        variables[arg_name] = placeholder(arg_type, arg_name)
    header = f"{kind} Matrix({', '.join(definitions)})" if definitions else f"{kind} Matrix"
    call = f"{name}({', '.join(arguments)})" if arguments else name
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    return f"{header} {{ {call}{selection} }}", variables


def test_every_root_field_has_a_rule_and_the_code_declares_the_same() -> None:
    names = {name for _, name, _ in root_fields()}
    missing = names - set(RULES)
    assert not missing, f"root fields without a rule in RULES: {sorted(missing)}"
    assert not set(RULES) - names, f"rules for fields that no longer exist: {set(RULES) - names}"
    assert {n: str(ROOT_FIELD_SCOPES[n]) for n in names} == RULES


def test_placeholder_operations_are_valid_graphql() -> None:
    from graphql import parse, validate

    for kind, name, field in root_fields():
        query, _ = operation(kind, name, field)
        assert validate(SCHEMA, parse(query)) == [], query


def _forbidden_at(body: dict[str, Any], name: str) -> bool:
    return any(
        (e.get("extensions") or {}).get("code") == "FORBIDDEN" and e.get("path") == [name]
        for e in body.get("errors") or []
    )


def _any_forbidden(body: dict[str, Any]) -> bool:
    return any(
        (e.get("extensions") or {}).get("code") == "FORBIDDEN" for e in body.get("errors") or []
    )


async def test_authorization_matrix(engine: AsyncEngine, server: str) -> None:
    partner = await make_partner(engine)
    partner_client = Api(server, *(await make_client(engine, partner.id, PARTNER_SCOPES)))
    operator = Api(server, *(await make_client(engine, None, ["operator"])))
    callers: dict[str, str] = {s: partner_client.token(s) for s in PARTNER_SCOPES}
    callers[OPERATOR] = operator.token()

    fields = root_fields()
    wrong: list[str] = []
    denials = 0
    with httpx.Client(base_url=server, timeout=30) as http:
        for kind, name, field in fields:
            query, variables = operation(kind, name, field)
            body = {"query": query, "variables": variables}
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                anonymous = http.post("/graphql", json=body, headers=headers)
                if anonymous.status_code != 401:
                    wrong.append(f"{name} {headers or 'no token'}: {anonymous.status_code}")
            rule = RULES[name]
            for caller, token in callers.items():
                answer = http.post(
                    "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.status_code == 200, (name, caller, answer.text)
                result = answer.json()
                allowed = caller == OPERATOR or rule in (ANY, caller)
                if allowed and _any_forbidden(result):
                    wrong.append(f"{name} as {caller}: denied, expected allowed: {result}")
                if not allowed:
                    denials += _forbidden_at(result, name)
                    if not _forbidden_at(result, name):
                        wrong.append(f"{name} as {caller}: allowed, expected FORBIDDEN: {result}")
                    elif (result.get("data") or {}).get(name) is not None:
                        wrong.append(f"{name} as {caller}: FORBIDDEN but data leaked: {result}")
    assert not wrong, "\n".join(wrong)
    # Not vacuous: every expected denial was seen.
    expected = sum(
        1 for _, name, _ in fields for s in PARTNER_SCOPES if RULES[name] not in (ANY, s)
    )
    assert denials == expected > 0
    # The matrix's size, for the record: every field × (2 anonymous + 7 scopes + operator).
    assert len(fields) >= len(RULES) and len(callers) == len(PARTNER_SCOPES) + 1


# ---- what a permitted partner still must not see --------------------------------------------

ENROLL = (
    "mutation($i: EnrollMemberInput!) { enrollMember(input: $i) { member { id } errors { code } } }"
)
EARN = """mutation($i: EarnPointsInput!) { earnPoints(input: $i) {
  transfer { id } errors { code } } }"""
REDEEM = """mutation($i: RedeemPointsInput!) { redeemPoints(input: $i) {
  transfer { id } errors { code } } }"""
HOLD = (
    """mutation($i: HoldPointsInput!) { holdPoints(input: $i) { hold { id } errors { code } } }"""
)
SUBMIT = """mutation($i: SubmitPartnerReportInput!) { submitPartnerReport(input: $i) {
  report { id breaks { id } } errors { code } } }"""
CLOSE = """mutation($i: CloseSettlementPeriodInput!) { closeSettlementPeriod(input: $i) {
  period { id } errors { code } } }"""
CURRENT = "{ currentSettlementPeriod { id } }"
PERIOD_VIEW = """query($id: ID!, $other: ID) { settlementPeriod(id: $id) {
  obligations { debtor { partner { id rateCards { earnRate } } }
                creditor { partner { id rateCards { earnRate } } } points }
  positions { party { partner { id } } net }
  instructions { id payer { partner { id } } payee { partner { id } } amount }
  own: statement { party { partner { id } } pointsIssued net }
  named: statement(partnerId: $other) { party { partner { id } } pointsIssued net }
  reports { id partner { id } breaks { id } } } }"""
PERIODS_VIEW = """{ settlementPeriods(first: 100) { nodes { id
  positions { party { partner { id } } } statement { party { partner { id } } } } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
TRANSFER = "query($id: ID!) { transfer(id: $id) { id } }"
MEMBER = "query($ref: MemberRef!) { member(ref: $ref) { id } }"


def key() -> str:
    return secrets.token_hex(8)


def _partners_in(view: dict[str, Any]) -> set[str]:
    """Every partner id a period view mentions, wherever it appears."""
    seen: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            partner = value.get("partner")
            if isinstance(partner, dict) and partner.get("id"):
                seen.add(partner["id"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(view)
    return seen


@pytest.fixture
async def cross_brand_period(engine: AsyncEngine, server: str, operator_api: Api) -> dict[str, Any]:
    """A and B trade (A's points burnt at B, a hold at A, a report by A); C, a bystander with
    every partner scope, trades with nobody. The period is closed with instructions."""
    a, b, c = [await make_partner(engine) for _ in range(3)]
    ids = {name: to_global_id("Partner", p.id) for name, p in zip("abc", (a, b, c), strict=True)}
    apis = {
        name: Api(server, *(await make_client(engine, p.id, PARTNER_SCOPES)))
        for name, p in zip("abc", (a, b, c), strict=True)
    }
    before = operator_api.data(CURRENT)["currentSettlementPeriod"]["id"]
    operator_api.data(CLOSE, {"i": {"periodId": before}})
    phone = unique_phone()
    member = apis["a"].data(ENROLL, {"i": {"phone": phone, "partnerRef": "A-REF"}})
    apis["b"].data(ENROLL, {"i": {"phone": phone}})
    ref = {"phone": phone}
    earn = apis["a"].data(
        EARN,
        {"i": {"member": ref, "amount": "100", "reference": "E-1", "idempotencyKey": key()}},
    )["earnPoints"]["transfer"]
    burn = apis["b"].data(
        REDEEM, {"i": {"member": ref, "points": 40, "reference": "B-1", "idempotencyKey": key()}}
    )["redeemPoints"]["transfer"]
    hold = apis["a"].data(
        HOLD, {"i": {"member": ref, "points": 5, "reference": "H-1", "idempotencyKey": key()}}
    )["holdPoints"]["hold"]
    period = operator_api.data(CURRENT)["currentSettlementPeriod"]["id"]
    report = apis["a"].data(
        SUBMIT,
        {"i": {"periodId": period, "records": [{"reference": "X", "kind": "EARN", "points": 1}]}},
    )["submitPartnerReport"]["report"]
    closed = operator_api.data(CLOSE, {"i": {"periodId": period}})["closeSettlementPeriod"]
    assert closed["errors"] == []
    operator_view = operator_api.data(PERIOD_VIEW, {"id": period, "other": ids["a"]})
    instructions = operator_view["settlementPeriod"]["instructions"]
    assert [(i["payer"]["partner"]["id"], i["payee"]["partner"]["id"]) for i in instructions] == [
        (ids["a"], ids["b"])
    ]
    assert operator_view["settlementPeriod"]["named"]["party"]["partner"]["id"] == ids["a"]
    return {
        "ids": ids,
        "apis": apis,
        "period": period,
        "member": member["enrollMember"]["member"]["id"],
        "phone": phone,
        "earn": earn["id"],
        "burn": burn["id"],
        "hold": hold["id"],
        "report": report,
        "instruction": instructions[0]["id"],
    }


async def test_a_bystander_sees_nothing_of_a_period_it_took_no_part_in(
    cross_brand_period: dict[str, Any],
) -> None:
    w = cross_brand_period
    ids, c = w["ids"], w["apis"]["c"]
    view = c.data(PERIOD_VIEW, {"id": w["period"], "other": ids["a"]})["settlementPeriod"]
    assert view["obligations"] == [] and view["instructions"] == [] and view["reports"] == []
    assert view["positions"] == []
    assert view["own"]["party"]["partner"]["id"] == ids["c"] and view["own"]["net"] == "0.00"
    assert view["named"] is None  # A's statement, asked for by name
    assert _partners_in(view) <= {ids["c"]}
    # Through the list of periods too.
    for node in c.data(PERIODS_VIEW)["settlementPeriods"]["nodes"]:
        assert _partners_in(node) <= {ids["c"]}, node
    # And through node, transfer and member: A's and B's objects do not exist for C.
    for object_id in (w["member"], w["earn"], w["burn"], w["hold"], ids["a"], ids["b"]):
        assert c.data(NODE, {"id": object_id})["node"] is None, object_id
    for transfer_id in (w["earn"], w["burn"]):
        assert c.data(TRANSFER, {"id": transfer_id})["transfer"] is None
    for ref in ({"id": w["member"]}, {"phone": w["phone"]}, {"partnerRef": "A-REF"}):
        assert c.data(MEMBER, {"ref": ref})["member"] is None


async def test_a_counterparty_sees_the_lines_it_is_party_to_and_nothing_of_the_other(
    cross_brand_period: dict[str, Any],
) -> None:
    w = cross_brand_period
    ids, b = w["ids"], w["apis"]["b"]
    view = b.data(PERIOD_VIEW, {"id": w["period"], "other": ids["a"]})["settlementPeriod"]
    # B is owed by A: it sees that line and that instruction, and A as its counterparty...
    assert [
        (o["debtor"]["partner"]["id"], o["creditor"]["partner"]["id"]) for o in view["obligations"]
    ] == [(ids["a"], ids["b"])]
    assert [i["id"] for i in view["instructions"]] == [w["instruction"]]
    # ...but not A's rate cards, A's position, A's statement or A's reconciliation report.
    assert view["obligations"][0]["debtor"]["partner"]["rateCards"] is None
    assert view["obligations"][0]["creditor"]["partner"]["rateCards"] is not None
    assert [p["party"]["partner"]["id"] for p in view["positions"]] == [ids["b"]]
    assert view["own"]["party"]["partner"]["id"] == ids["b"]
    assert view["named"] is None
    assert view["reports"] == []
    # Settlement objects are not fetchable through node by anyone but... nobody: no leak.
    for object_id in (w["report"]["id"], w["report"]["breaks"][0]["id"], w["instruction"]):
        assert b.data(NODE, {"id": object_id})["node"] is None
    # B burnt A's points, but A's earn and hold stay A's.
    assert b.data(TRANSFER, {"id": w["earn"]})["transfer"] is None
    assert b.data(NODE, {"id": w["hold"]})["node"] is None
    assert b.data(TRANSFER, {"id": w["burn"]})["transfer"] == {"id": w["burn"]}
    # B cannot file a report in A's name.
    filed = b.data(
        SUBMIT,
        {
            "i": {
                "periodId": w["period"],
                "partnerId": ids["a"],
                "records": [{"reference": "E-1", "kind": "EARN", "points": 100}],
            }
        },
    )["submitPartnerReport"]
    assert [e["code"] for e in filed["errors"]] == ["PARTNER_NOT_FOUND"]
    a_view = w["apis"]["a"].data(PERIOD_VIEW, {"id": w["period"], "other": ids["b"]})
    assert [r["id"] for r in a_view["settlementPeriod"]["reports"]] == [w["report"]["id"]]
    assert a_view["settlementPeriod"]["named"] is None
    assert Decimal(a_view["settlementPeriod"]["own"]["net"]) == Decimal("-40.00")
