"""Member support in a real browser: find a member by phone or by a partner's reference, and
see the balance and the history (with the earn's explanation) the ledger holds."""

from __future__ import annotations

import secrets

from playwright.async_api import expect
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.queries import balance
from tests.conftest import Api, make_client, make_partner, unique_phone
from tests.console.conftest import Tab, make_staff, sign_in
from tests.console.test_console import _clean


async def test_support_finds_a_member_by_phone_and_by_reference(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    partner = await make_partner(engine, earn_rate="1", name="Support Shop")
    api = Api(server, *await make_client(engine, partner.id, ["members:write", "points:earn"]))
    phone, ref = unique_phone(), f"CUST-{secrets.token_hex(3)}"
    enrolled = api.gql(
        "mutation($p: String!, $r: String!) { enrollMember(input: {phone: $p, partnerRef: $r})"
        " { member { id } errors { code } } }",
        {"p": phone, "r": ref},
    )
    assert enrolled["data"]["enrollMember"]["errors"] == []
    earned = api.gql(
        'mutation($r: String!) { earnPoints(input: {member: {partnerRef: $r}, amount: "321",'
        ' reference: "till-9", idempotencyKey: "k-9"}) { points errors { code } } }',
        {"r": ref},
    )
    assert earned["data"]["earnPoints"] == {"points": 321, "errors": []}, earned

    support = await make_staff(engine, "support")
    tab, log = page
    await sign_in(tab, server, support)
    await tab.get_by_role("link", name="Members").click()
    await expect(tab.get_by_role("heading", name="Member support")).to_be_visible()

    # A phone that is not one: the domain's code on the form.
    await tab.get_by_label("Phone").fill("12")
    await tab.get_by_role("button", name="Find by phone").click()
    await expect(tab.get_by_role("alert")).to_contain_text("INVALID_PHONE")

    await tab.get_by_label("Phone").fill(phone)
    await tab.get_by_role("button", name="Find by phone").click()
    await expect(tab.locator("#member h2")).to_have_text(f"Member {phone}")
    async with engine.connect() as conn:
        from members.service import MemberRef, find_member
        from tests.conftest import OPERATOR

        member = await find_member(conn, OPERATOR, MemberRef(phone=phone))
        held = await balance(conn, member.id)
    await expect(tab.locator("#bal-available")).to_have_text(str(held.available))
    await expect(tab.locator("#bal-debt")).to_have_text(str(held.debt))
    row = tab.locator("#history tbody tr").first
    await expect(row).to_contain_text("EARN")
    await expect(row).to_contain_text("321")
    await expect(row).to_contain_text("till-9")
    await expect(row).to_contain_text("Support Shop")

    # By the partner's own reference: the same member.
    await tab.get_by_label("Partner", exact=True).select_option(partner.slug)
    await tab.get_by_label("Partner reference").fill(ref)
    await tab.get_by_role("button", name="Find by reference").click()
    await expect(tab.locator("#member code").first).to_have_text(str(member.id))
    await tab.get_by_label("Partner reference").fill("nobody-" + ref)
    await tab.get_by_role("button", name="Find by reference").click()
    await expect(tab.get_by_role("alert")).to_contain_text("MEMBER_NOT_FOUND")
    _clean(log, server)


async def test_finance_may_not_open_member_support(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    finance = await make_staff(engine, "finance")
    tab, _ = page
    await sign_in(tab, server, finance)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(tab.get_by_role("link", name="Members")).to_have_count(0)
    response = await tab.goto(f"{server}/console/members?phone=%2B79120000101")
    assert response is not None and response.status == 403
