"""The audit log: every operator action leaves one row, in the action's own transaction, in a
table the database refuses to change; the operator reads it newest first, partners cannot."""

from __future__ import annotations

import asyncio
import json
import secrets
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core import audit
from tests.api.helpers import error_codes, make_shop
from tests.conftest import Api, make_partner, partner_api, unique_phone, unique_slug

AUDIT = """query($first: Int, $after: String, $action: AuditAction) {
  auditLog(first: $first, after: $after, action: $action) {
    edges { cursor node { id occurredAt actor action subjectType subjectId details } }
    pageInfo { hasNextPage endCursor } } }"""
CREATE_PARTNER = """mutation($i: CreatePartnerInput!) { createPartner(input: $i) {
  partner { id slug } errors { code } } }"""
SET_RATE_CARD = """mutation($i: SetRateCardInput!) { setRateCard(input: $i) {
  rateCard { earnRate } errors { code } } }"""
CREATE_CLIENT = """mutation($i: CreateApiClientInput!) { createApiClient(input: $i) {
  clientId clientSecret errors { code } } }"""
REVOKE_CLIENT = """mutation($i: RevokeApiClientInput!) { revokeApiClient(input: $i) {
  clientId errors { code } } }"""
SETTINGS = "{ coalitionSettings { pointValue clearingFee } }"
UPDATE_SETTINGS = """mutation($i: UpdateCoalitionSettingsInput!) {
  updateCoalitionSettings(input: $i) { settings { pointValue } errors { code } } }"""
CLOSE = """mutation($i: CloseSettlementPeriodInput!) { closeSettlementPeriod(input: $i) {
  period { id status } errors { code } } }"""
PAY = """mutation($i: RecordSettlementPaymentInput!) { recordSettlementPayment(input: $i) {
  instruction { id } errors { code } } }"""
SUBMIT = """mutation($i: SubmitPartnerReportInput!) { submitPartnerReport(input: $i) {
  report { id breaks { id kind } } errors { code } } }"""
RESOLVE = """mutation($i: ResolveReconciliationBreakInput!) { resolveReconciliationBreak(input: $i) {
  break { status } errors { code } } }"""
CURRENT = "{ currentSettlementPeriod { id } }"
INSTRUCTIONS = """query($id: ID!) { settlementPeriod(id: $id) {
  instructions { id amount payer { partner { slug } } payee { partner { slug } } } } }"""


def key() -> str:
    return secrets.token_hex(8)


def entries(operator: Api, first: int = 50, action: str | None = None) -> list[dict[str, Any]]:
    page = operator.data(AUDIT, {"first": first, "action": action})["auditLog"]
    return [edge["node"] for edge in page["edges"]]


def entry_for(found: list[dict[str, Any]], action: str, subject_id: str) -> dict[str, Any]:
    matches = [e for e in found if e["action"] == action and e["subjectId"] == subject_id]
    assert len(matches) == 1, (action, subject_id, found)
    return matches[0]


def ok(api: Api, mutation: str, variables: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = api.data(mutation, {"i": variables})[name]
    assert result["errors"] == [], result
    return result


async def test_every_operator_action_is_recorded_with_its_actor_and_no_secret(
    engine: AsyncEngine, server: str, database_url: str, operator_api: Api
) -> None:
    op = operator_api
    # A period of our own: nothing booked by other tests ends up in our instructions.
    first_period = op.data(CURRENT)["currentSettlementPeriod"]["id"]
    ok(op, CLOSE, {"periodId": first_period}, "closeSettlementPeriod")

    slugs = {name: unique_slug() for name in ("a", "b", "c")}
    partners = {
        name: ok(
            op,
            CREATE_PARTNER,
            {"name": f"Audit {name}", "slug": slug, "earnRate": "1"},
            "createPartner",
        )["partner"]
        for name, slug in slugs.items()
    }
    ok(op, SET_RATE_CARD, {"partnerId": partners["a"]["id"], "earnRate": "2"}, "setRateCard")
    clients = {
        name: ok(
            op,
            CREATE_CLIENT,
            {
                "partnerId": partners[name]["id"],
                "scopes": ["points:earn", "points:redeem", "members:write", "reconciliation:write"],
            },
            "createApiClient",
        )
        for name in ("a", "b", "c")
    }
    doomed = ok(op, CREATE_CLIENT, {"scopes": ["operator"], "name": "doomed"}, "createApiClient")
    ok(op, REVOKE_CLIENT, {"clientId": doomed["clientId"]}, "revokeApiClient")
    current = op.data(SETTINGS)["coalitionSettings"]
    ok(op, UPDATE_SETTINGS, {"pointValue": current["pointValue"]}, "updateCoalitionSettings")

    # Activity: 100 points earned at A (rate 2 from now on: 50 spent), burnt at B and C.
    apis = {n: Api(server, c["clientId"], c["clientSecret"]) for n, c in clients.items()}
    phone = unique_phone()
    for api in apis.values():
        api.data(
            "mutation($i: EnrollMemberInput!) { enrollMember(input: $i) { errors { code } } }",
            {"i": {"phone": phone}},
        )
    earned = apis["a"].data(
        "mutation($i: EarnPointsInput!) { earnPoints(input: $i) { points errors { code } } }",
        {
            "i": {
                "member": {"phone": phone},
                "amount": "50",
                "reference": "E-1",
                "idempotencyKey": key(),
            }
        },
    )["earnPoints"]
    assert earned == {"points": 100, "errors": []}
    for name, points in (("b", 30), ("c", 20)):
        burnt = apis[name].data(
            "mutation($i: RedeemPointsInput!) { redeemPoints(input: $i) { errors { code } } }",
            {
                "i": {
                    "member": {"phone": phone},
                    "points": points,
                    "reference": f"B-{name}",
                    "idempotencyKey": key(),
                }
            },
        )["redeemPoints"]
        assert burnt["errors"] == []
    period = op.data(CURRENT)["currentSettlementPeriod"]["id"]
    report = ok(
        apis["a"],
        SUBMIT,
        {"periodId": period, "records": [{"reference": "NOPE", "kind": "EARN", "points": 1}]},
        "submitPartnerReport",
    )["report"]
    [brk] = [b for b in report["breaks"] if b["kind"] == "MISSING_IN_LEDGER"]
    ok(
        op,
        RESOLVE,
        {"breakId": brk["id"], "action": "ACCEPT", "note": "noise"},
        "resolveReconciliationBreak",
    )

    # The operator's command line closes the period and pays one instruction; the API the other.
    from typer.testing import CliRunner

    from api.settlement_cli import app as settlement_app

    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    closed = await asyncio.to_thread(runner.invoke, settlement_app, ["close"], env=env)
    assert closed.exit_code == 0, closed.output
    instructions = op.data(INSTRUCTIONS, {"id": period})["settlementPeriod"]["instructions"]
    assert sorted(
        (i["payer"]["partner"]["slug"], i["payee"]["partner"]["slug"], Decimal(i["amount"]))
        for i in instructions
    ) == sorted([(slugs["a"], slugs["b"], Decimal(30)), (slugs["a"], slugs["c"], Decimal(20))])
    ok(
        op,
        PAY,
        {"instructionId": instructions[0]["id"], "bankReference": "BANK-1"},
        "recordSettlementPayment",
    )
    paid = await asyncio.to_thread(
        runner.invoke,
        settlement_app,
        ["pay", "--instruction", instructions[1]["id"], "--reference", "BANK-2"],
        env=env,
    )
    assert paid.exit_code == 0, paid.output
    from api.commands import create_client_command

    cli_client = await create_client_command(database_url, slugs["c"], ["members:read"], "cli")

    found = entries(op, 60)
    actor = op.client_id
    assert entry_for(found, "SETTLEMENT_PERIOD_CLOSED", first_period)["actor"] == actor
    for name in ("a", "b", "c"):
        created = entry_for(found, "PARTNER_CREATED", partners[name]["id"])
        assert created["actor"] == actor and created["subjectType"] == "Partner"
        assert created["details"]["slug"] == slugs[name]
        assert created["details"]["earnRate"] == "1"
        client = entry_for(found, "API_CLIENT_CREATED", clients[name]["clientId"])
        assert client["actor"] == actor and client["subjectType"] == "ApiClient"
        assert client["details"]["scopes"] == sorted(
            ["points:earn", "points:redeem", "members:write", "reconciliation:write"]
        )
    card = entry_for(found, "RATE_CARD_SET", partners["a"]["id"])
    assert card["details"]["earnRate"] == "2.000000" or Decimal(card["details"]["earnRate"]) == 2
    assert entry_for(found, "API_CLIENT_REVOKED", doomed["clientId"])["actor"] == actor
    settings = [e for e in found if e["action"] == "COALITION_SETTINGS_UPDATED"]
    assert settings[0]["details"] == {"changes": {"pointValue": current["pointValue"]}}
    submitted = entry_for(found, "PARTNER_REPORT_SUBMITTED", report["id"])
    assert submitted["actor"] == clients["a"]["clientId"]  # a partner's own submission
    assert submitted["details"]["breaks"] == 2 and submitted["details"]["source"] == "API"
    resolved = entry_for(found, "RECONCILIATION_BREAK_RESOLVED", brk["id"])
    assert resolved["actor"] == actor and resolved["details"]["status"] == "ACCEPTED"
    assert resolved["details"]["note"] == "noise"
    assert entry_for(found, "SETTLEMENT_PERIOD_CLOSED", period)["actor"] == "cli"
    by_api = entry_for(found, "SETTLEMENT_PAYMENT_RECORDED", instructions[0]["id"])
    assert by_api["actor"] == actor and by_api["details"]["bankReference"] == "BANK-1"
    by_cli = entry_for(found, "SETTLEMENT_PAYMENT_RECORDED", instructions[1]["id"])
    assert by_cli["actor"] == "cli" and by_cli["details"]["periodStatus"] == "SETTLED"
    assert entry_for(found, "API_CLIENT_CREATED", cli_client["client_id"])["actor"] == "cli"

    # Newest first, and never a secret anywhere.
    times = [e["occurredAt"] for e in found]
    assert times == sorted(times, reverse=True)
    dumped = json.dumps(found)
    secrets_shown = [c["clientSecret"] for c in (*clients.values(), doomed)]
    secrets_shown.append(cli_client["client_secret"])
    async with engine.connect() as conn:
        for secret in secrets_shown:
            assert secret not in dumped
            hits = await conn.execute(
                text("SELECT count(*) FROM audit_log WHERE details::text LIKE :s"),
                {"s": f"%{secret}%"},
            )
            assert hits.scalar_one() == 0


async def test_a_failed_action_leaves_no_audit_row(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    slug = unique_slug()
    data = {"name": "Once", "slug": slug, "earnRate": "1"}
    ok(operator_api, CREATE_PARTNER, data, "createPartner")
    again = operator_api.data(CREATE_PARTNER, {"i": data})["createPartner"]
    assert again["errors"] and again["partner"] is None
    bad_rate = operator_api.data(
        CREATE_PARTNER, {"i": {**data, "slug": unique_slug(), "earnRate": "-1"}}
    )["createPartner"]
    assert bad_rate["errors"]
    unknown = operator_api.data(REVOKE_CLIENT, {"i": {"clientId": "cl_nobody"}})
    assert unknown["revokeApiClient"]["errors"]
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, count(*) FROM audit_log WHERE details->>'slug' = :slug"
                " OR subject_id = 'cl_nobody' GROUP BY action"
            ),
            {"slug": slug},
        )
        assert {action: n for action, n in rows} == {"PARTNER_CREATED": 1}
    # The row is written in the action's transaction: a rollback takes it away too.
    subject = f"rollback-{key()}"
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await audit.record(conn, "test", audit.AuditAction.PARTNER_CREATED, "Partner", subject)
            raise RuntimeError("the action failed after its audit row")
    async with engine.connect() as conn:
        count = await conn.execute(
            text("SELECT count(*) FROM audit_log WHERE subject_id = :s"), {"s": subject}
        )
        assert count.scalar_one() == 0


async def test_the_database_refuses_to_change_or_remove_audit_rows(engine: AsyncEngine) -> None:
    subject = f"immutable-{key()}"
    async with engine.begin() as conn:
        await audit.record(
            conn, "test", audit.AuditAction.API_CLIENT_REVOKED, "ApiClient", subject, {"n": 1}
        )
    for statement in (
        "UPDATE audit_log SET actor = 'someone else' WHERE subject_id = :s",
        "UPDATE audit_log SET details = '{}' WHERE subject_id = :s",
        "DELETE FROM audit_log WHERE subject_id = :s",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"s": subject})
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT actor, details FROM audit_log WHERE subject_id = :s"), {"s": subject}
            )
        ).one()
    assert tuple(row) == ("test", {"n": 1})


async def test_details_refuse_secrets_and_unknown_types(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for details in (
            {"clientSecret": "cs_x"},
            {"nested": {"password": "x"}},
            {"access_token": "x"},
        ):
            with pytest.raises(ValueError, match="secrets"):
                await audit.record(
                    conn, "t", audit.AuditAction.API_CLIENT_CREATED, "ApiClient", "x", details
                )
        with pytest.raises(TypeError):
            await audit.record(
                conn, "t", audit.AuditAction.API_CLIENT_CREATED, "ApiClient", "x", {"o": object()}
            )
        await conn.rollback()


async def test_the_audit_log_pages_newest_first_filters_and_is_the_operators_only(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    made = [
        ok(
            operator_api,
            CREATE_PARTNER,
            {"name": f"Page {n}", "slug": unique_slug(), "earnRate": "1"},
            "createPartner",
        )["partner"]["id"]
        for n in range(3)
    ]
    page = operator_api.data(AUDIT, {"first": 2, "action": "PARTNER_CREATED"})["auditLog"]
    assert [e["node"]["subjectId"] for e in page["edges"]] == [made[2], made[1]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = operator_api.data(
        AUDIT, {"first": 1, "after": page["pageInfo"]["endCursor"], "action": "PARTNER_CREATED"}
    )["auditLog"]
    assert [e["node"]["subjectId"] for e in rest["edges"]] == [made[0]]
    mixed = entries(operator_api, 5)
    assert {e["action"] for e in entries(operator_api, 5, "PARTNER_CREATED")} == {"PARTNER_CREATED"}
    assert mixed[0]["subjectId"] == made[2]
    bad = operator_api.gql(AUDIT, {"first": 101})
    assert error_codes(bad) == ["INVALID_INPUT"]

    shop = await make_shop(engine, server)
    denied = shop.api.gql(AUDIT, {"first": 1})
    assert error_codes(denied) == ["FORBIDDEN"] and denied["data"] is None
    partner = await make_partner(engine)
    reader = await partner_api(engine, server, partner.id, ["settlement:read"])
    assert error_codes(reader.gql(AUDIT)) == ["FORBIDDEN"]
