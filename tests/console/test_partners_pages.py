"""Partners in the console, in a real browser: the list, creating a partner (and its errors on
the form), a rate card from a date, API clients created with scopes (the secret shown once)
and revoked, and a role that may look but not change."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_partner
from tests.console.conftest import StaffLogin, Tab, make_staff, sign_in
from tests.console.test_console import _clean


async def _signed_in(tab: Tab, server: str, who: StaffLogin) -> None:
    await sign_in(tab[0], server, who)
    await expect(tab[0].get_by_role("heading", name="Dashboard")).to_be_visible()


async def test_admin_creates_a_partner_and_sees_domain_errors_on_the_form(
    server: str, engine: AsyncEngine, admin: StaffLogin, page: Tab
) -> None:
    tab, log = page
    await _signed_in(page, server, admin)
    await tab.get_by_role("link", name="Partners").click()
    await expect(tab.get_by_role("heading", name="Partners")).to_be_visible()
    slug = f"cafe-{secrets.token_hex(3)}"

    # An earn rate that is not a number: the domain's code, on the form, nothing created.
    await tab.get_by_label("Name").fill("Corner Café")
    await tab.get_by_label("Slug").fill(slug)
    await tab.get_by_label("Earn rate (points per currency unit)").fill("1e3")
    await tab.get_by_role("button", name="Create partner").click()
    await expect(tab.get_by_role("alert")).to_contain_text("INVALID_AMOUNT")
    await expect(tab.get_by_label("Slug")).to_have_value(slug)  # the form keeps its values

    await tab.get_by_label("Earn rate (points per currency unit)").fill("0.5")
    await tab.get_by_label("Accepts redemption").uncheck()
    await tab.get_by_role("button", name="Create partner").click()
    await expect(tab.get_by_role("heading", name="Corner Café")).to_be_visible()
    await expect(tab.locator("#accepts-redemption")).to_contain_text("no")
    await tab.get_by_role("button", name="Accept points").click()
    await expect(tab.locator("#accepts-redemption")).to_contain_text("yes")
    await expect(tab.get_by_role("button", name="Stop accepting points")).to_be_visible()
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT p.accepts_redemption, a.actor FROM partners p JOIN audit_log a"
                    " ON a.subject_id = p.id::text AND a.action = 'PARTNER_CREATED'"
                    " WHERE p.slug = :s"
                ),
                {"s": slug},
            )
        ).one()
    assert row.accepts_redemption is True
    assert row.actor == f"staff:{admin.email}"

    # The same slug again: SLUG_TAKEN on the form.
    await tab.get_by_role("link", name="Partners").first.click()
    await expect(tab.locator("#partners")).to_contain_text(slug)
    await tab.get_by_label("Name").fill("Another")
    await tab.get_by_label("Slug").fill(slug)
    await tab.get_by_label("Earn rate (points per currency unit)").fill("1")
    await tab.get_by_role("button", name="Create partner").click()
    await expect(tab.get_by_role("alert")).to_contain_text("SLUG_TAKEN")
    _clean(log, server)


async def test_rate_card_and_api_client_with_the_secret_shown_once_then_revoked(
    server: str, engine: AsyncEngine, admin: StaffLogin, page: Tab
) -> None:
    partner = await make_partner(engine, name="Rate Card Shop")
    tab, log = page
    await _signed_in(page, server, admin)
    await tab.goto(f"{server}/console/partners/{partner.slug}")
    await expect(tab.get_by_role("heading", name="Rate Card Shop")).to_be_visible()

    # A rate card in the past is refused by the domain; one from tomorrow is added.
    await tab.get_by_label("Earn rate", exact=True).fill("2")
    await tab.get_by_label("Effective from (UTC; empty: now)").fill("2020-01-01T00:00")
    await tab.get_by_role("button", name="Set rate card").click()
    await expect(tab.get_by_role("alert")).to_contain_text("must not be in the past")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    await tab.get_by_label("Earn rate", exact=True).fill("2")
    await tab.get_by_label("Effective from (UTC; empty: now)").fill(
        tomorrow.strftime("%Y-%m-%dT%H:%M")
    )
    await tab.get_by_role("button", name="Set rate card").click()
    await expect(tab.locator("#rate-cards tbody tr")).to_have_count(2)
    await expect(tab.locator("#rate-cards")).to_contain_text(
        tomorrow.strftime("%Y-%m-%d %H:%M:00 UTC")
    )

    # No scope: the domain's INVALID_SCOPE on the form.
    await tab.get_by_role("button", name="Create client").click()
    await expect(tab.get_by_role("alert")).to_contain_text("INVALID_SCOPE")
    await tab.get_by_label("Name (optional)").fill("tills")
    await tab.get_by_label("points:earn").check()
    await tab.get_by_label("members:read").check()
    await tab.get_by_role("button", name="Create client").click()
    await expect(tab.locator("#new-client")).to_contain_text("never shown again")
    client_id = await tab.locator("#new-client-id").inner_text()
    secret = await tab.locator("#new-client-secret").inner_text()
    token = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "members:read points:earn"

    # Shown once: the page, loaded again, has the client but not its secret.
    await tab.goto(f"{server}/console/partners/{partner.slug}")
    await expect(tab.locator("#clients")).to_contain_text(client_id)
    assert secret not in await tab.content()

    await tab.get_by_role("button", name=f"Revoke {client_id}").click()
    await expect(tab.locator("#clients")).to_contain_text("revoked")
    refused = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert refused.status_code == 401
    async with engine.connect() as conn:
        actors = (
            await conn.scalars(
                text(
                    "SELECT action FROM audit_log WHERE subject_id = :c AND actor = :a ORDER BY id"
                ),
                {"c": client_id, "a": f"staff:{admin.email}"},
            )
        ).all()
    assert actors == ["API_CLIENT_CREATED", "API_CLIENT_REVOKED"]
    _clean(log, server)


async def test_support_sees_partners_but_cannot_create_one(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    support = await make_staff(engine, "support")
    partner = await make_partner(engine)
    tab, _ = page
    await _signed_in(page, server, support)
    await tab.goto(f"{server}/console/partners")
    await expect(tab.locator("#partners")).to_contain_text(partner.slug)
    await expect(tab.locator("#create-partner")).to_have_count(0)
    await tab.goto(f"{server}/console/partners/{partner.slug}")
    await expect(tab.locator("#create-client")).to_have_count(0)

    # The server refuses the POST itself, with a valid CSRF token: 403 and nothing created.
    csrf = await tab.locator("header input[name=csrf]").get_attribute("value")
    slug = f"nope-{secrets.token_hex(3)}"
    refused = await tab.context.request.post(
        f"{server}/console/partners",
        form={"csrf": csrf or "", "name": "Nope", "slug": slug, "earn_rate": "1"},
        max_redirects=0,
    )
    assert refused.status == 403
    refused = await tab.context.request.post(
        f"{server}/console/partners/{partner.slug}/clients",
        form={"csrf": csrf or "", "scopes": "points:earn"},
        max_redirects=0,
    )
    assert refused.status == 403
    async with engine.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM partners WHERE slug = :s"), {"s": slug})
            == 0
        )
        assert (
            await conn.scalar(
                text("SELECT count(*) FROM api_clients WHERE partner_id = :p"), {"p": partner.id}
            )
            == 0
        )


async def test_a_partner_form_posted_without_the_csrf_token_changes_nothing(
    server: str, engine: AsyncEngine, admin: StaffLogin, page: Tab
) -> None:
    tab, _ = page
    await _signed_in(page, server, admin)
    slug = f"csrf-{secrets.token_hex(3)}"
    for extra in ({}, {"csrf": "forged"}):
        refused = await tab.context.request.post(
            f"{server}/console/partners",
            form={"name": "Forged", "slug": slug, "earn_rate": "1", **extra},
            max_redirects=0,
        )
        assert refused.status == 403
    async with engine.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM partners WHERE slug = :s"), {"s": slug})
            == 0
        )
