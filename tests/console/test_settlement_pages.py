"""Settlement in a real browser: a cross-brand redemption's obligation in the OPEN period's
positions and matrix, closing (with a confirmation) as finance, the instructions, recording
a payment; and support refused."""

from __future__ import annotations

import secrets
import uuid

from playwright.async_api import expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from settlement.reconciliation import submit_report
from settlement.records import ReportLine
from tests.conftest import OPERATOR, Api, make_client, make_partner, unique_phone
from tests.console.conftest import Tab, make_staff, sign_in
from tests.console.test_console import _clean


async def _cross_brand(server: str, engine: AsyncEngine) -> tuple[str, str, uuid.UUID]:
    tag = secrets.token_hex(3)
    grocer = await make_partner(engine, earn_rate="1", name=f"Grocer {tag}")
    cinema = await make_partner(engine, earn_rate="1", name=f"Cinema {tag}")
    scopes = ["members:write", "points:earn", "points:redeem"]
    at_grocer = Api(server, *await make_client(engine, grocer.id, scopes))
    at_cinema = Api(server, *await make_client(engine, cinema.id, scopes))
    phone = unique_phone()
    enroll = "mutation($p: String!) { enrollMember(input: {phone: $p}) { errors { code } } }"
    at_grocer.gql(enroll, {"p": phone})
    at_cinema.gql(enroll, {"p": phone})
    earned = at_grocer.gql(
        'mutation($p: String!) { earnPoints(input: {member: {phone: $p}, amount: "500",'
        ' reference: "r", idempotencyKey: "e"}) { errors { code } } }',
        {"p": phone},
    )
    assert earned["data"]["earnPoints"]["errors"] == []
    burnt = at_cinema.gql(
        "mutation($p: String!) { redeemPoints(input: {member: {phone: $p}, points: 300,"
        ' reference: "t", idempotencyKey: "b"}) { errors { code } } }',
        {"p": phone},
    )
    assert burnt["data"]["redeemPoints"]["errors"] == [], burnt
    return grocer.name, cinema.name, grocer.id


async def test_support_cannot_see_or_close_a_period(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    support = await make_staff(engine, "support")
    async with engine.connect() as conn:
        period = await conn.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
    tab, _ = page
    await sign_in(tab, server, support)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(tab.get_by_role("link", name="Settlement")).to_have_count(0)
    response = await tab.goto(f"{server}/console/settlement/{period}")
    assert response is not None and response.status == 403
    await tab.goto(f"{server}/console/")
    csrf = await tab.locator("header input[name=csrf]").get_attribute("value")
    refused = await tab.context.request.post(
        f"{server}/console/settlement/{period}/close",
        form={"csrf": csrf or "", "confirm": "yes"},
        max_redirects=0,
    )
    assert refused.status == 403
    async with engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM settlement_periods WHERE id = :p"), {"p": period}
        )
    assert status == "OPEN"


async def test_finance_closes_a_period_and_records_a_payment(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    grocer, cinema, grocer_id = await _cross_brand(server, engine)
    finance = await make_staff(engine, "finance")
    tab, log = page
    await sign_in(tab, server, finance)
    await tab.get_by_role("link", name="Settlement").click()
    await expect(tab.get_by_role("heading", name="Settlement periods")).to_be_visible()
    await tab.locator("#periods tbody tr", has_text="OPEN").get_by_role("link").click()
    await expect(tab.locator("#period-status")).to_have_text("OPEN")
    assert await tab.title() == "Period OPEN · Coalition"  # the page's title, and only it
    period_url = tab.url
    # Provisional: the grocer owes the cinema for the points burnt there.
    await expect(tab.locator("#positions")).to_contain_text(grocer)
    await expect(tab.locator("#matrix")).to_contain_text(cinema)

    # Without the confirmation: refused on the form, nothing closed.
    await tab.get_by_role("button", name="Close period").click()
    await expect(tab.get_by_role("alert")).to_contain_text("confirmation")
    await expect(tab.locator("#period-status")).to_have_text("OPEN")
    await tab.get_by_label("I confirm").check()
    await tab.get_by_role("button", name="Close period").click()
    await expect(tab.locator("#period-status")).to_have_text("CLOSED")
    assert tab.url == period_url
    period_id = period_url.rsplit("/", 1)[1]

    ours = tab.locator("#instructions tbody tr", has_text=grocer)
    await expect(ours.first).to_be_visible()
    instruction_id = await ours.first.locator("code").inner_text()
    await ours.first.get_by_label("Bank reference").fill("BANK-42")
    await ours.first.get_by_role("button", name="Record payment").click()
    await expect(tab.locator("#instructions tbody tr", has_text=instruction_id)).to_contain_text(
        "BANK-42"
    )
    async with engine.connect() as conn:
        paid = (
            await conn.execute(
                text(
                    "SELECT i.bank_reference, a.actor FROM settlement_instructions i"
                    " JOIN audit_log a ON a.subject_id = i.id::text"
                    " AND a.action = 'SETTLEMENT_PAYMENT_RECORDED'"
                    " WHERE i.id = :i AND i.period_id = :p"
                ),
                {"i": instruction_id, "p": period_id},
            )
        ).one()
        closer = await conn.scalar(
            text(
                "SELECT actor FROM audit_log WHERE action = 'SETTLEMENT_PERIOD_CLOSED'"
                " AND subject_id = :p"
            ),
            {"p": period_id},
        )
    assert paid.bank_reference == "BANK-42"
    assert paid.actor == closer == f"staff:{finance.email}"

    # The grocer's statement, as CSV.
    link = tab.locator("#positions tbody tr", has_text=grocer).get_by_role("link", name="CSV")
    async with tab.expect_download() as download:
        await link.click()
    saved = await (await download.value).path()
    assert saved is not None
    with open(saved, encoding="utf-8") as statement:
        assert str(grocer_id) in statement.read()

    # A report that differs from the ledger: its break, resolved on the page.
    async with engine.begin() as conn:
        await submit_report(
            conn,
            OPERATOR,
            uuid.UUID(period_id),
            [ReportLine(reference="not-in-ledger", kind="EARN", points=7)],
            partner_id=grocer_id,
        )
    await tab.reload()
    row = tab.locator("#breaks tbody tr", has_text="not-in-ledger")
    await expect(row).to_contain_text("MISSING_IN_LEDGER")
    await row.get_by_role("button", name="Resolve").click()
    await expect(tab.get_by_role("alert")).to_contain_text("needs a note")
    row = tab.locator("#breaks tbody tr", has_text="not-in-ledger")
    await row.get_by_label("Note").fill("till test receipt, never issued")
    await row.get_by_role("button", name="Resolve").click()
    await expect(tab.locator("#breaks tbody tr", has_text="not-in-ledger")).to_contain_text(
        "ACCEPTED: till test receipt"
    )
    _clean(log, server)
