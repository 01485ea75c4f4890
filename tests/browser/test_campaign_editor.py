"""The campaign editor in a real browser (Debian's Chromium through Playwright, htmx as
served): a marketer types a condition that does not compile and sees the compiler's message
under the field, fixes it and sees "compiles", tries the unsaved campaign on a purchase and
sees the points and who pays them, then saves it. No request leaves the origin and the
Content-Security-Policy is never violated."""

from __future__ import annotations

from playwright.async_api import expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_partner, unique_slug
from tests.console.conftest import Tab, make_staff, sign_in
from tests.console.test_console import _clean


async def test_a_marketer_fixes_a_condition_and_tries_the_campaign_on_a_purchase(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    shop = await make_partner(engine, earn_rate="1", name=f"Editor Shop {unique_slug()}")
    marketer = await make_staff(engine, "marketing")
    tab, log = page
    await sign_in(tab, server, marketer)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await tab.get_by_role("link", name="Campaigns").click()
    await expect(tab.get_by_role("heading", name="Campaigns")).to_be_visible()
    await tab.get_by_role("link", name="New campaign").click()
    await expect(tab.get_by_role("heading", name="New campaign")).to_be_visible()

    name = f"Big baskets {unique_slug()}"
    await tab.get_by_label("Name").fill(name)
    await tab.get_by_label("Partners (none selected: every partner)").select_option(str(shop.id))
    await tab.get_by_label("Bonus points per purchase").fill("25")

    # Typed: an int compared with the double amount does not compile; the compiler says why.
    condition = tab.get_by_label("Condition (CEL)")
    status = tab.locator("#condition-status")
    await expect(status).to_contain_text("compiles")  # "true", as the form starts
    await condition.fill("")
    await condition.press_sequentially("purchase.amount > 500", delay=15)
    await expect(status).to_contain_text("Does not compile")
    await expect(status).to_contain_text("no matching overload")
    await expect(status).to_contain_text("write 1000.0, not 1000")
    await condition.press_sequentially(".0", delay=15)
    await expect(status).not_to_contain_text("Does not compile")
    await expect(status).to_contain_text("compiles")

    # Tried on a purchase before saving: base 1000 (the shop) + 25 bonus (the shop: no funding
    # rows, so the partner where the purchase happens pays).
    await tab.get_by_label("Partner", exact=True).select_option(shop.slug)
    await tab.get_by_label("Amount", exact=True).fill("1000")
    await tab.get_by_role("button", name="Try it").click()
    result = tab.locator("#preview-result")
    await expect(result.locator("#preview-points")).to_have_text("1025")
    ours = result.locator("tr.ours")
    await expect(ours).to_contain_text("(this form)")
    await expect(ours).to_contain_text("25")
    await expect(ours).to_contain_text(f"{shop.name}: 25")
    # A purchase under the threshold: the condition is false, and the page says so.
    await tab.get_by_label("Amount", exact=True).fill("400")
    await tab.get_by_role("button", name="Try it").click()
    await expect(result.locator("#preview-points")).to_have_text("400")
    await expect(result).to_contain_text("its condition is false")

    await tab.get_by_role("button", name="Create campaign").click()
    await expect(tab.get_by_role("heading", name=name)).to_be_visible()
    await expect(tab.locator("#campaign-status")).to_have_text("ACTIVE")
    await expect(tab.get_by_label("Condition (CEL)")).to_have_value("purchase.amount > 500.0")
    _clean(log, server)
