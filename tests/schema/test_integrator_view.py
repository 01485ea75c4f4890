"""What a partner's integrator relies on at run time, over HTTP: every `UserError.field` is
the path of an input field as the client wrote it; `MemberRef` is `@oneOf`; `DateTime`
speaks RFC 3339 with offsets; connections page as Relay expects; audit entries are nodes for
the operator only; every top-level error has a code from `TopLevelErrorCode`."""

from __future__ import annotations

import re
import uuid
from typing import Any

from graphql import GraphQLSchema
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.relay import to_global_id
from schema.root import build_schema
from tests.api.helpers import ENROLL, TRANSFERS, error_codes, key, make_shop
from tests.conftest import Api, make_partner, partner_api, unique_phone
from tests.schema.lint import input_path_exists

SCHEMA: GraphQLSchema = build_schema()._schema
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00")


def _input_type(mutation: str) -> str:
    assert SCHEMA.mutation_type is not None
    return str(SCHEMA.mutation_type.fields[mutation].args["input"].type).rstrip("!")


def _call(api: Api, mutation: str, value: dict[str, Any]) -> dict[str, Any]:
    document = (
        f"mutation($input: {_input_type(mutation)}!) {{ {mutation}(input: $input) {{"
        " errors { code message field } } }"
    )
    if mutation == "earnPointsBatch":
        document = (
            "mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {"
            " rejectedRows { index code message field } errors { code message field } } }"
        )
    payload: dict[str, Any] = api.data(document, {"input": value})[mutation]
    return payload


def _missing(type_name: str) -> str:
    return to_global_id(type_name, uuid.uuid4())


async def test_every_user_error_names_the_input_field_as_the_client_wrote_it(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    shop.enroll(phone, "F-1")
    member = {"phone": phone}
    period = operator_api.data("{ currentSettlementPeriod { id } }")["currentSettlementPeriod"]
    earn = {"member": member, "amount": "10", "reference": "r", "idempotencyKey": key()}
    hold = {"member": member, "points": 1, "reference": "r", "idempotencyKey": key()}
    partner = shop.api
    adjust = {"member": member, "points": 1, "fundedBy": shop.id, "reason": "r"}
    adjust["idempotencyKey"] = key()
    reused = key()
    first = _call(operator_api, "adjustMemberPoints", {**adjust, "idempotencyKey": reused})
    assert first["errors"] == []
    # mutation -> (caller, input, the code and field it must answer)
    cases: list[tuple[str, Api, dict[str, Any], str, list[str]]] = [
        ("enrollMember", partner, {"phone": "12"}, "INVALID_PHONE", ["phone"]),
        ("enrollMember", partner, {"phone": phone, "partnerRef": ""}, "INVALID_INPUT", ["partnerRef"]),
        ("earnPoints", partner, {**earn, "amount": "-1"}, "INVALID_AMOUNT", ["amount"]),
        ("earnPoints", partner, {**earn, "member": {"phone": "12"}}, "INVALID_PHONE", ["member", "phone"]),
        ("earnPoints", partner, {**earn, "member": {"id": "x"}}, "INVALID_INPUT", ["member", "id"]),
        ("earnPoints", partner, {**earn, "member": {"id": _missing("Partner")}}, "INVALID_INPUT", ["member", "id"]),
        ("earnPoints", partner, {**earn, "member": {"phone": unique_phone()}}, "MEMBER_NOT_FOUND", ["member"]),
        ("earnPoints", partner, {**earn, "reference": " "}, "INVALID_INPUT", ["reference"]),
        ("earnPoints", partner, {**earn, "idempotencyKey": ""}, "INVALID_INPUT", ["idempotencyKey"]),
        ("earnPoints", partner, {**earn, "occurredAt": "2024-01-01T10:00:00"}, "INVALID_INPUT", ["occurredAt"]),
        ("redeemPoints", partner, {**hold, "points": 0}, "INVALID_AMOUNT", ["points"]),
        ("redeemPoints", partner, {**hold, "points": 10**6}, "INSUFFICIENT_POINTS", ["points"]),
        ("redeemPoints", partner, {**hold, "member": {"partnerRef": "F-0"}}, "MEMBER_NOT_FOUND", ["member"]),
        ("reverseTransfer", partner, {"transferId": "x", "idempotencyKey": key()}, "INVALID_INPUT", ["transferId"]),
        ("reverseTransfer", partner, {"transferId": _missing("Transfer"), "idempotencyKey": key()}, "TRANSFER_NOT_FOUND", ["transferId"]),
        ("earnPoints", partner, {**earn, "lines": [{"sku": "A", "amount": "1"}]}, "INVALID_LINES", ["lines"]),
        ("createCampaign", operator_api, {"name": "C", "effect": {"multiplier": "2"}, "condition": "purchase.amount >"}, "INVALID_CONDITION", ["condition"]),
        ("updateCampaign", operator_api, {"id": _missing("Campaign")}, "CAMPAIGN_NOT_FOUND", ["id"]),
        ("pauseCampaign", operator_api, {"id": "x"}, "INVALID_INPUT", ["id"]),
        ("resumeCampaign", operator_api, {"id": _missing("Campaign")}, "CAMPAIGN_NOT_FOUND", ["id"]),
        ("endCampaign", operator_api, {"id": _missing("Partner")}, "INVALID_INPUT", ["id"]),
        ("setTierPolicy", operator_api, {"windowDays": 0, "tiers": []}, "INVALID_TIER_POLICY", ["windowDays"]),
        ("archiveCampaign", operator_api, {"id": _missing("Campaign")}, "CAMPAIGN_NOT_FOUND", ["id"]),
        ("reverseTransfer", partner, {"transferId": _missing("Transfer"), "idempotencyKey": key(), "points": 0}, "INVALID_AMOUNT", ["points"]),
        ("holdPoints", partner, {**hold, "ttlMinutes": 0}, "INVALID_INPUT", ["ttlMinutes"]),
        ("holdPoints", partner, {**hold, "points": 10**6}, "INSUFFICIENT_POINTS", ["points"]),
        ("captureHold", partner, {"holdId": "x", "idempotencyKey": key()}, "INVALID_INPUT", ["holdId"]),
        ("captureHold", partner, {"holdId": _missing("Hold"), "idempotencyKey": key()}, "HOLD_NOT_FOUND", ["holdId"]),
        ("voidHold", partner, {"holdId": _missing("Transfer"), "idempotencyKey": key()}, "INVALID_INPUT", ["holdId"]),
        ("voidHold", partner, {"holdId": _missing("Hold"), "idempotencyKey": key()}, "HOLD_NOT_FOUND", ["holdId"]),
        ("earnPointsBatch", partner, {"rows": [earn] * 5001}, "INVALID_INPUT", ["rows"]),
        ("createPartner", operator_api, {"name": "N", "slug": "Not A Slug", "earnRate": "1"}, "INVALID_INPUT", ["slug"]),
        ("createPartner", operator_api, {"name": "N", "slug": f"s-{key()}", "earnRate": "-1"}, "INVALID_AMOUNT", ["earnRate"]),
        ("createPartner", operator_api, {"name": "N", "slug": f"s-{key()}", "earnRate": "1", "pendingDays": 999}, "INVALID_INPUT", ["pendingDays"]),
        ("setRateCard", operator_api, {"partnerId": "x", "earnRate": "1"}, "INVALID_INPUT", ["partnerId"]),
        ("setRateCard", operator_api, {"partnerId": _missing("Partner"), "earnRate": "1"}, "PARTNER_NOT_FOUND", ["partnerId"]),
        ("setRateCard", operator_api, {"partnerId": shop.id, "earnRate": "1", "effectiveFrom": "2001-01-01T00:00:00Z"}, "INVALID_INPUT", ["effectiveFrom"]),
        ("createApiClient", operator_api, {"scopes": ["nope"]}, "INVALID_SCOPE", ["scopes"]),
        ("createApiClient", operator_api, {"scopes": ["members:read"], "partnerId": "x"}, "INVALID_INPUT", ["partnerId"]),
        ("createApiClient", operator_api, {"scopes": ["members:read"], "partnerId": _missing("Partner")}, "PARTNER_NOT_FOUND", ["partnerId"]),
        ("revokeApiClient", operator_api, {"clientId": "cl_nobody"}, "CLIENT_NOT_FOUND", ["clientId"]),
        ("updateCoalitionSettings", operator_api, {"pointValue": "-1"}, "INVALID_AMOUNT", ["pointValue"]),
        ("updateCoalitionSettings", operator_api, {"defaultRegion": "XX"}, "INVALID_INPUT", ["defaultRegion"]),
        ("closeSettlementPeriod", operator_api, {"cutoff": "2999-01-01T00:00:00Z"}, "INVALID_CUTOFF", ["cutoff"]),
        ("closeSettlementPeriod", operator_api, {"periodId": "x"}, "INVALID_INPUT", ["periodId"]),
        ("closeSettlementPeriod", operator_api, {"periodId": _missing("SettlementPeriod")}, "PERIOD_NOT_FOUND", ["periodId"]),
        ("recordSettlementPayment", operator_api, {"instructionId": "x", "bankReference": "B"}, "INVALID_INPUT", ["instructionId"]),
        ("recordSettlementPayment", operator_api, {"instructionId": _missing("PaymentInstruction"), "bankReference": "B"}, "INSTRUCTION_NOT_FOUND", ["instructionId"]),
        ("recordSettlementPayment", operator_api, {"instructionId": _missing("PaymentInstruction"), "bankReference": " "}, "INVALID_INPUT", ["bankReference"]),
        ("submitPartnerReport", partner, {"periodId": "x", "records": []}, "INVALID_INPUT", ["periodId"]),
        ("submitPartnerReport", partner, {"periodId": _missing("SettlementPeriod"), "records": []}, "PERIOD_NOT_FOUND", ["periodId"]),
        ("submitPartnerReport", operator_api, {"periodId": period["id"], "records": [], "partnerId": "x"}, "INVALID_INPUT", ["partnerId"]),
        ("resolveReconciliationBreak", operator_api, {"breakId": "x", "action": "ACCEPT", "note": "n"}, "INVALID_INPUT", ["breakId"]),
        ("resolveReconciliationBreak", operator_api, {"breakId": _missing("ReconciliationBreak"), "action": "ACCEPT", "note": "n"}, "BREAK_NOT_FOUND", ["breakId"]),
        ("resolveReconciliationBreak", operator_api, {"breakId": _missing("ReconciliationBreak"), "action": "ACCEPT", "note": "n" * 1001}, "INVALID_INPUT", ["note"]),
        ("adjustMemberPoints", operator_api, {**adjust, "points": 0}, "INVALID_AMOUNT", ["points"]),
        ("adjustMemberPoints", operator_api, {**adjust, "reason": " "}, "INVALID_INPUT", ["reason"]),
        ("adjustMemberPoints", operator_api, {**adjust, "fundedBy": None}, "INVALID_INPUT", ["fundedBy"]),
        ("adjustMemberPoints", operator_api, {**adjust, "fundedBy": "x"}, "INVALID_INPUT", ["fundedBy"]),
        ("adjustMemberPoints", operator_api, {**adjust, "fundedBy": _missing("Partner")}, "PARTNER_NOT_FOUND", ["fundedBy"]),
        ("adjustMemberPoints", operator_api, {**adjust, "member": {"phone": unique_phone()}}, "MEMBER_NOT_FOUND", ["member"]),
        ("adjustMemberPoints", operator_api, {**adjust, "member": {"id": "x"}}, "INVALID_INPUT", ["member", "id"]),
        ("adjustMemberPoints", operator_api, {**adjust, "points": -10**6}, "INSUFFICIENT_POINTS", ["points"]),
        ("adjustMemberPoints", operator_api, {**adjust, "idempotencyKey": ""}, "INVALID_INPUT", ["idempotencyKey"]),
        ("adjustMemberPoints", operator_api, {**adjust, "idempotencyKey": reused, "points": 2}, "IDEMPOTENCY_KEY_REUSED", ["idempotencyKey"]),
    ]  # fmt: skip
    assert SCHEMA.mutation_type is not None
    assert {c[0] for c in cases} == set(SCHEMA.mutation_type.fields), "a mutation has no case"
    answers = []
    for mutation, api, value, _, _ in cases:
        [error] = _call(api, mutation, value)["errors"]
        answers.append((mutation, error["code"], error["field"]))
        assert input_path_exists(SCHEMA, _input_type(mutation), error["field"]), (mutation, error)
    assert answers == [(m, code, field) for m, _, _, code, field in cases]

    # A batch's rows: each refused row's field is a path within the row (EarnRowInput).
    rows = [
        {**earn, "idempotencyKey": key()},
        {**earn, "idempotencyKey": key(), "amount": "1.001"},
        {**earn, "idempotencyKey": key(), "member": {"phone": "12"}},
        {**earn, "idempotencyKey": key(), "member": {"id": "x"}},
        {**earn, "idempotencyKey": key(), "member": {"partnerRef": "c-\x00"}},
    ]
    batch = _call(partner, "earnPointsBatch", {"rows": rows})
    refused = [(r["index"], r["code"], r["field"]) for r in batch["rejectedRows"]]
    assert refused == [
        (1, "INVALID_AMOUNT", ["amount"]),
        (2, "INVALID_PHONE", ["member", "phone"]),
        (3, "INVALID_INPUT", ["member", "id"]),
        (4, "INVALID_INPUT", ["member", "partnerRef"]),
    ]
    assert all(input_path_exists(SCHEMA, "EarnRowInput", field) for _, _, field in refused)


async def test_member_ref_with_zero_or_two_fields_is_a_coded_error_that_books_nothing(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    shop.enroll(phone, "O-1")
    earn = "mutation($input: EarnPointsInput!) { earnPoints(input: $input) { points } }"
    for ref in ({}, {"phone": phone, "partnerRef": "O-1"}, {"phone": None}):
        value = {"member": ref, "amount": "10", "reference": "r", "idempotencyKey": key()}
        body = shop.api.gql(earn, {"input": value})
        assert body["data"] is None and error_codes(body) == ["INVALID_INPUT"], body
        assert (
            "MemberRef" in body["errors"][0]["message"]
            or "must be non-null" in (body["errors"][0]["message"])
        )
    inline = shop.api.gql(
        f'mutation {{ earnPoints(input: {{member: {{phone: "{phone}", partnerRef: "O-1"}},'
        ' amount: "10", reference: "r", idempotencyKey: "k"}) { points } }'
    )
    assert error_codes(inline) == ["INVALID_INPUT"]
    assert "exactly one key" in inline["errors"][0]["message"]
    assert shop.balance({"phone": phone})["available"] == 0


async def test_datetimes_are_rfc3339_with_an_offset_both_ways(
    engine: AsyncEngine, server: str
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    shop.enroll(phone)
    earn = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
      transfer { occurredAt createdAt } errors { code field } } }"""
    value = {"member": {"phone": phone}, "amount": "10", "reference": "r"}
    booked = shop.api.data(
        earn,
        {"input": {**value, "idempotencyKey": key(), "occurredAt": "2026-01-01T10:15:00+03:00"}},
    )["earnPoints"]
    assert booked["errors"] == []
    assert booked["transfer"]["occurredAt"] == "2026-01-01T07:15:00+00:00"
    assert RFC3339.fullmatch(booked["transfer"]["createdAt"])
    # Lowercase separators are RFC 3339 too; Z is UTC.
    lower = shop.api.data(
        earn, {"input": {**value, "idempotencyKey": key(), "occurredAt": "2026-01-01t07:15:00z"}}
    )["earnPoints"]
    assert lower["transfer"]["occurredAt"] == "2026-01-01T07:15:00+00:00"
    # Not RFC 3339: a GraphQL error with a code, nothing booked.
    for text in ("2026-01-01", "20260101T101500Z", "yesterday", "2026-01-01 10:15:00+03:00"):
        body = shop.api.gql(earn, {"input": {**value, "idempotencyKey": key(), "occurredAt": text}})
        assert body["data"] is None and error_codes(body) == ["INVALID_INPUT"], text
        assert "RFC 3339" in body["errors"][0]["message"], body
    # No offset: refused as data, with the field.
    naive = shop.api.data(
        earn, {"input": {**value, "idempotencyKey": key(), "occurredAt": "2026-01-01T10:15:00"}}
    )["earnPoints"]
    assert naive["errors"] == [{"code": "INVALID_INPUT", "field": ["occurredAt"]}]


async def test_transfers_page_as_a_relay_connection(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    shop.enroll(phone)
    for n in range(3):
        shop.earn_ok({"phone": phone}, "10", reference=f"p-{n}")
    query = TRANSFERS.replace("pageInfo { hasNextPage endCursor }", PAGE_INFO)
    seen: list[str] = []
    after = None
    pages = []
    while True:
        connection = shop.api.data(query, {"ref": {"phone": phone}, "first": 2, "after": after})[
            "member"
        ]["transfers"]
        info = connection["pageInfo"]
        pages.append((info["hasPreviousPage"], info["hasNextPage"]))
        cursors = [e["cursor"] for e in connection["edges"]]
        assert (info["startCursor"], info["endCursor"]) == (cursors[0], cursors[-1])
        seen += [e["node"]["reference"] for e in connection["edges"]]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == ["p-2", "p-1", "p-0"] and pages == [(False, True), (True, False)]
    # Past the end: an empty page has no cursors.
    last = info["endCursor"]
    empty = shop.api.data(query, {"ref": {"phone": phone}, "first": 2, "after": last})
    info = empty["member"]["transfers"]["pageInfo"]
    assert empty["member"]["transfers"]["edges"] == []
    assert info == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }


PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
AUDIT_NODE = """query($id: ID!) { node(id: $id) { __typename id
  ... on AuditEntry { action subjectType subjectId occurredAt } } }"""


async def test_an_audit_entry_is_a_node_for_the_operator_only(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    created = operator_api.data(
        """mutation($input: CreatePartnerInput!) { createPartner(input: $input) {
          partner { id } errors { code } } }""",
        {"input": {"name": "Audited", "slug": f"audited-{key()}", "earnRate": "1"}},
    )["createPartner"]
    log = operator_api.data(
        "{ auditLog(first: 5, action: PARTNER_CREATED) { nodes { id subjectId } } }"
    )["auditLog"]["nodes"]
    [entry] = [e for e in log if e["subjectId"] == created["partner"]["id"]]
    node = operator_api.data(AUDIT_NODE, {"id": entry["id"]})["node"]
    assert node["__typename"] == "AuditEntry" and node["id"] == entry["id"]
    assert node["action"] == "PARTNER_CREATED" and node["subjectType"] == "Partner"
    assert RFC3339.fullmatch(node["occurredAt"])
    assert operator_api.data(AUDIT_NODE, {"id": _missing("AuditEntry")})["node"] is None
    # A partner's client, even with every partner scope: null, as for any object it may not see.
    partner = await make_partner(engine)
    api = await partner_api(engine, server, partner.id)
    body = api.gql(AUDIT_NODE, {"id": entry["id"]})
    assert "errors" not in body and body["data"]["node"] is None
    assert error_codes(api.gql("{ auditLog(first: 1) { nodes { id } } }")) == ["FORBIDDEN"]


async def test_every_top_level_error_carries_a_code(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    for document, code in (
        ("{ viewer { ", "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { noSuchField } }", "GRAPHQL_VALIDATION_FAILED"),
        ("query($n: Int!) { viewer { clientId } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ partners(first: 0) { nodes { id } } }", "INVALID_INPUT"),
        ('{ transfer(id: "x") { id } }', "INVALID_INPUT"),
    ):
        assert error_codes(shop.api.gql(document)) == [code], document
    body = shop.api.gql(ENROLL, {"input": {"phone": 12}})
    assert error_codes(body) == ["INVALID_INPUT"], body
