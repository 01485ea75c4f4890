"""Settlement through the API a partner and the operator use, over real HTTP."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Api, make_partner, partner_api, unique_phone

ENROLL = "mutation($i: EnrollMemberInput!) { enrollMember(input: $i) { errors { code } } }"
EARN = """mutation($i: EarnPointsInput!) { earnPoints(input: $i) { points errors { code } } }"""
REDEEM = """mutation($i: RedeemPointsInput!) { redeemPoints(input: $i) {
  transfer { id } errors { code } } }"""
CLOSE = """mutation($i: CloseSettlementPeriodInput!) { closeSettlementPeriod(input: $i) {
  period { id status cutoff } errors { code message } } }"""
PERIOD = """query($id: ID!) { settlementPeriod(id: $id) { id status
  obligations { debtor { isOperator partner { slug } } creditor { partner { slug } } kind points amount }
  positions { party { partner { slug } } receivable payable net }
  instructions { id payer { partner { slug } } payee { partner { slug } } amount paidAt }
  statement { pointsIssued pointsRedeemedElsewhere othersPointsRedeemedHere grossPayable
              grossReceivable net instructions { amount } }
  verification { ok differences { message } } } }"""
CURRENT = "{ currentSettlementPeriod { id status } }"


def key() -> str:
    return secrets.token_hex(8)


async def _coalition(engine: AsyncEngine, server: str) -> dict[str, Any]:
    """Three brands; two members earn at A and B and burn at C (and A)."""
    a = await make_partner(engine, name="A grocer")
    b = await make_partner(engine, name="B fuel")
    c = await make_partner(engine, name="C cinema")
    apis = {p.slug: await partner_api(engine, server, p.id) for p in (a, b, c)}
    phones = [unique_phone(), unique_phone()]
    for phone in phones:
        for api in apis.values():
            api.data(ENROLL, {"i": {"phone": phone}})
    earn = lambda api, phone, amount: api.data(  # noqa: E731
        EARN,
        {
            "i": {
                "member": {"phone": phone},
                "amount": amount,
                "reference": key(),
                "idempotencyKey": key(),
            }
        },
    )
    earn(apis[a.slug], phones[0], "300")  # 300 points issued by A
    earn(apis[b.slug], phones[1], "500")  # 500 points issued by B
    redeem = lambda api, phone, points: api.data(  # noqa: E731
        REDEEM,
        {
            "i": {
                "member": {"phone": phone},
                "points": points,
                "reference": key(),
                "idempotencyKey": key(),
            }
        },
    )
    redeem(apis[c.slug], phones[0], 200)  # A owes C 200.00
    redeem(apis[c.slug], phones[1], 350)  # B owes C 350.00
    redeem(apis[a.slug], phones[1], 100)  # B owes A 100.00
    return {"a": a, "b": b, "c": c, "apis": apis}


async def test_close_nets_positions_and_pays_in_at_most_n_minus_one(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    # The README's worked example in a period of its own: what earlier tests booked is
    # closed into the period before.
    earlier = operator_api.data(CURRENT)["currentSettlementPeriod"]["id"]
    flushed = operator_api.data(CLOSE, {"i": {"periodId": earlier}})["closeSettlementPeriod"]
    assert flushed["errors"] == []
    world = await _coalition(engine, server)
    a, b, c = world["a"], world["b"], world["c"]
    open_id = operator_api.data(CURRENT)["currentSettlementPeriod"]["id"]
    assert open_id != earlier
    closed = operator_api.data(CLOSE, {"i": {"periodId": open_id}})["closeSettlementPeriod"]
    assert closed["errors"] == [] and closed["period"]["status"] in ("CLOSED", "SETTLED")
    # A retried close of the same period is refused instead of closing the next one.
    again = operator_api.data(CLOSE, {"i": {"periodId": open_id}})["closeSettlementPeriod"]
    assert [e["code"] for e in again["errors"]] == ["PERIOD_NOT_FOUND"]

    period = operator_api.data(PERIOD, {"id": open_id})["settlementPeriod"]
    assert period["status"] == "CLOSED"
    # The README's gross obligations, and nothing else (no fee: the clearing fee is 0).
    assert sorted(
        (
            o["debtor"]["partner"]["slug"],
            o["creditor"]["partner"]["slug"],
            o["kind"],
            o["points"],
            Decimal(o["amount"]),
        )
        for o in period["obligations"]
    ) == sorted(
        [
            (a.slug, c.slug, "REDEMPTION", 200, Decimal("200.00")),  # A owes C
            (b.slug, c.slug, "REDEMPTION", 350, Decimal("350.00")),  # B owes C
            (b.slug, a.slug, "REDEMPTION", 100, Decimal("100.00")),  # B owes A
        ]
    )
    # The README's positions: (receivable, payable, net) per party; no other party has one.
    assert {
        p["party"]["partner"]["slug"]: (
            Decimal(p["receivable"]),
            Decimal(p["payable"]),
            Decimal(p["net"]),
        )
        for p in period["positions"]
        if Decimal(p["receivable"]) or Decimal(p["payable"])
    } == {
        a.slug: (Decimal("100.00"), Decimal("200.00"), Decimal("-100.00")),
        b.slug: (Decimal("0.00"), Decimal("450.00"), Decimal("-450.00")),
        c.slug: (Decimal("550.00"), Decimal("0.00"), Decimal("550.00")),
    }
    # Payment instructions: B pays C 450.00, A pays C 100.00 (two payments for three parties).
    assert sorted(
        (
            i["payer"]["partner"]["slug"],
            i["payee"]["partner"]["slug"],
            Decimal(i["amount"]),
            i["paidAt"],
        )
        for i in period["instructions"]
    ) == sorted(
        [(b.slug, c.slug, Decimal("450.00"), None), (a.slug, c.slug, Decimal("100.00"), None)]
    )
    assert period["verification"] == {"ok": True, "differences": []}

    # C's own view: its statement and only its own position.
    c_view = world["apis"][c.slug].data(PERIOD, {"id": open_id})["settlementPeriod"]
    assert [p["party"]["partner"]["slug"] for p in c_view["positions"]] == [c.slug]
    assert c_view["verification"] is None
    statement = c_view["statement"]
    assert statement["othersPointsRedeemedHere"] == 550
    assert Decimal(statement["grossReceivable"]) == Decimal("550.00")
    assert Decimal(statement["net"]) == Decimal("550.00")
    assert sum(Decimal(i["amount"]) for i in statement["instructions"]) == Decimal("550.00")
    for o in c_view["obligations"]:
        parties = {
            o["debtor"]["partner"] and o["debtor"]["partner"]["slug"],
            o["creditor"]["partner"] and o["creditor"]["partner"]["slug"],
        }
        assert c.slug in parties
    for i in c_view["instructions"]:
        assert c.slug in (i["payer"]["partner"]["slug"], i["payee"]["partner"]["slug"])

    # Paying every instruction settles the period.
    pay = """mutation($i: RecordSettlementPaymentInput!) { recordSettlementPayment(input: $i) {
      instruction { paidAt bankReference } period { status } errors { code } } }"""
    statuses = []
    for n, instruction in enumerate(period["instructions"]):
        paid = operator_api.data(
            pay, {"i": {"instructionId": instruction["id"], "bankReference": f"BANK-{n}"}}
        )
        assert paid["recordSettlementPayment"]["errors"] == []
        statuses.append(paid["recordSettlementPayment"]["period"]["status"])
    if statuses:
        assert statuses[-1] == "SETTLED"
        twice = operator_api.data(
            pay,
            {
                "i": {
                    "instructionId": period["instructions"][0]["id"],
                    "bankReference": "BANK-again",
                }
            },
        )
        assert [e["code"] for e in twice["recordSettlementPayment"]["errors"]] == ["ALREADY_PAID"]


async def test_partners_cannot_close_pay_or_read_without_settlement_scope(
    engine: AsyncEngine, server: str
) -> None:
    partner = await make_partner(engine)
    api = await partner_api(engine, server, partner.id)
    body = api.gql(CLOSE, {"i": {}})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    reader = await partner_api(engine, server, partner.id, ["members:read"])
    body = reader.gql(CURRENT)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


SUBMIT = """mutation($i: SubmitPartnerReportInput!) { submitPartnerReport(input: $i) {
  report { id recordCount breaks { id kind reference reportedPoints ledgerPoints status } }
  errors { code message } } }"""
RESOLVE = """mutation($i: ResolveReconciliationBreakInput!) { resolveReconciliationBreak(input: $i) {
  break { status note adjustmentPoints } errors { code message } } }"""


async def test_reconciliation_over_the_api_finds_breaks_and_the_operator_resolves_them(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer = await make_partner(engine)
    other = await make_partner(engine)
    api = await partner_api(engine, server, grocer.id)
    other_api = await partner_api(engine, server, other.id)
    phone = unique_phone()
    api.data(ENROLL, {"i": {"phone": phone}})
    for ref, amount in (("R-1", "100"), ("R-2", "250")):
        api.data(
            EARN,
            {
                "i": {
                    "member": {"phone": phone},
                    "amount": amount,
                    "reference": ref,
                    "idempotencyKey": key(),
                }
            },
        )
    period_id = api.data(CURRENT)["currentSettlementPeriod"]["id"]
    records = [
        {"reference": "R-1", "kind": "EARN", "points": 100, "amount": "100"},
        {"reference": "R-2", "kind": "EARN", "points": 260, "amount": "250"},
        {"reference": "R-9", "kind": "EARN", "points": 5, "amount": "5"},
    ]
    report = api.data(SUBMIT, {"i": {"periodId": period_id, "records": records}})
    payload = report["submitPartnerReport"]
    assert payload["errors"] == []
    kinds = sorted((b["kind"], b["reference"]) for b in payload["report"]["breaks"])
    assert kinds == [("MISSING_IN_LEDGER", "R-9"), ("POINTS_MISMATCH", "R-2")]

    # Another partner sees none of it; a partner cannot resolve breaks.
    other_view = other_api.data(
        "query($id: ID!) { settlementPeriod(id: $id) { reports { id } } }", {"id": period_id}
    )
    assert other_view["settlementPeriod"]["reports"] == []
    mismatch = next(b for b in payload["report"]["breaks"] if b["kind"] == "POINTS_MISMATCH")
    denied = api.gql(RESOLVE, {"i": {"breakId": mismatch["id"], "action": "ACCEPT", "note": "x"}})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    accepted = operator_api.data(
        RESOLVE, {"i": {"breakId": mismatch["id"], "action": "ACCEPT", "note": "till rounding"}}
    )["resolveReconciliationBreak"]
    assert accepted["errors"] == [] and accepted["break"]["status"] == "ACCEPTED"
    missing = next(b for b in payload["report"]["breaks"] if b["kind"] == "MISSING_IN_LEDGER")
    adjusted = operator_api.data(
        RESOLVE, {"i": {"breakId": missing["id"], "action": "ADJUST", "note": "goodwill"}}
    )["resolveReconciliationBreak"]
    assert adjusted["errors"] == [] and adjusted["break"]["status"] == "ADJUSTED"
    twice = operator_api.data(
        RESOLVE, {"i": {"breakId": missing["id"], "action": "ACCEPT", "note": "again"}}
    )["resolveReconciliationBreak"]
    assert [e["code"] for e in twice["errors"]] == ["BREAK_ALREADY_RESOLVED"]

    bad = api.data(
        SUBMIT,
        {"i": {"periodId": period_id, "records": [{"reference": "", "kind": "EARN", "points": 1}]}},
    )["submitPartnerReport"]
    assert [e["code"] for e in bad["errors"]] == ["REPORT_INVALID"]


async def test_resolving_an_unknown_break_is_break_not_found_and_changes_nothing(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    from sqlalchemy import text

    from db.ids import new_id
    from schema.relay import to_global_id

    async def state() -> tuple[Any, ...]:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM transfers) AS transfers,"
                        " (SELECT count(*) FROM obligations) AS obligations,"
                        " (SELECT count(*) FROM audit_log) AS audit,"
                        " (SELECT count(*) FROM reconciliation_breaks"
                        "  WHERE status <> 'OPEN') AS resolved"
                    )
                )
            ).one()
        return tuple(row)

    before = await state()
    unknown = to_global_id("ReconciliationBreak", new_id())
    for action, note in (("ACCEPT", "fine"), ("ADJUST", "goodwill")):
        result = operator_api.data(
            RESOLVE, {"i": {"breakId": unknown, "action": action, "note": note}}
        )["resolveReconciliationBreak"]
        assert result["break"] is None, action
        assert [e["code"] for e in result["errors"]] == ["BREAK_NOT_FOUND"], action
    assert await state() == before
