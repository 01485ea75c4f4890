"""A member adjustment from the console in a real browser: support credits with a reason and
a funding partner, sees the new balance and the history line, gets domain errors on the form;
finance is refused (403) and nothing changes; no request leaves the origin."""

from __future__ import annotations

from playwright.async_api import expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.queries import balance
from members.service import MemberRef, find_member
from tests.conftest import OPERATOR, Api, make_client, make_partner, unique_phone
from tests.console.conftest import Tab, make_staff, sign_in
from tests.console.test_console import _clean


async def _member(server: str, engine: AsyncEngine) -> tuple[str, str, str]:
    partner = await make_partner(engine, earn_rate="1", name="Goodwill Shop")
    api = Api(server, *await make_client(engine, partner.id, ["members:write"]))
    phone = unique_phone()
    enrolled = api.gql(
        "mutation($p: String!) { enrollMember(input: {phone: $p}) { errors { code } } }",
        {"p": phone},
    )
    assert enrolled["data"]["enrollMember"]["errors"] == []
    return phone, partner.slug, partner.name


async def test_support_adjusts_with_a_reason_and_sees_the_new_balance(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    phone, slug, name = await _member(server, engine)
    support = await make_staff(engine, "support")
    tab, log = page
    await sign_in(tab, server, support)
    await tab.get_by_role("link", name="Members").click()
    await tab.get_by_label("Phone").fill(phone)
    await tab.get_by_role("button", name="Find by phone").click()
    await expect(tab.locator("#bal-available")).to_have_text("0")

    # A credit without a funding partner: the domain's error on the form, nothing booked.
    await tab.get_by_label("Points (negative to debit)").fill("150")
    await tab.get_by_label("Reason").fill("lost receipt, goodwill")
    await tab.get_by_role("button", name="Adjust").click()
    await expect(tab.get_by_role("alert")).to_contain_text("INVALID_INPUT")
    await expect(tab.locator("#bal-available")).to_have_text("0")

    await tab.get_by_label("Funded by (for a credit)").select_option(slug)
    await tab.get_by_role("button", name="Adjust").click()
    await expect(tab.locator("#adjusted")).to_be_visible()
    await expect(tab.locator("#bal-available")).to_have_text("150")
    row = tab.locator("#history tbody tr").first
    await expect(row).to_contain_text("ADJUSTMENT")
    await expect(row).to_contain_text("150")
    await expect(row).to_contain_text(name)
    await expect(row).to_contain_text("lost receipt, goodwill")

    # A debit beyond the balance is refused on the form; within it, booked.
    await tab.get_by_label("Points (negative to debit)").fill("-151")
    await tab.get_by_label("Reason").fill("duplicate credit")
    await tab.get_by_role("button", name="Adjust").click()
    await expect(tab.get_by_role("alert")).to_contain_text("INSUFFICIENT_POINTS")
    await tab.get_by_label("Points (negative to debit)").fill("-50")
    await tab.get_by_role("button", name="Adjust").click()
    await expect(tab.locator("#bal-available")).to_have_text("100")
    await expect(tab.locator("#history tbody tr").first).to_contain_text("duplicate credit")

    async with engine.connect() as conn:
        member = await find_member(conn, OPERATOR, MemberRef(phone=phone))
        assert (await balance(conn, member.id)).available == 100
        actors = (
            await conn.execute(
                text(
                    "SELECT actor, details ->> 'points' AS points FROM audit_log"
                    " WHERE action = 'MEMBER_ADJUSTED' AND subject_id = :m ORDER BY id"
                ),
                {"m": str(member.id)},
            )
        ).all()
    assert [(a.actor, a.points) for a in actors] == [
        (f"staff:{support.email}", "150"),
        (f"staff:{support.email}", "-50"),
    ]
    _clean(log, server)


async def test_finance_may_not_adjust(server: str, engine: AsyncEngine, page: Tab) -> None:
    phone, slug, _ = await _member(server, engine)
    async with engine.connect() as conn:
        member = await find_member(conn, OPERATOR, MemberRef(phone=phone))
    finance = await make_staff(engine, "finance")
    tab, _ = page
    await sign_in(tab, server, finance)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    csrf = await tab.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    refused = await tab.context.request.post(
        f"{server}/console/members/adjust",
        form={
            "csrf": csrf,
            "phone": phone,
            "member_id": str(member.id),
            "points": "500",
            "funded_by": slug,
            "reason": "not allowed",
            "key": "finance-try",
        },
        max_redirects=0,
    )
    assert refused.status == 403
    async with engine.connect() as conn:
        assert (await balance(conn, member.id)).available == 0
