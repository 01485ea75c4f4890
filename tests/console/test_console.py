"""The operator console in a real browser (Debian's Chromium through Playwright): sign-in,
sessions that end, CSRF refusals, role limits, the dashboard and the audit log on real data,
and not one request leaving the server's origin."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from playwright.async_api import expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from console.staff import disable_staff
from tests.conftest import Api, make_client, make_partner, unique_phone
from tests.console.conftest import StaffLogin, Tab, make_staff, sign_in

SESSION_COOKIE = "coalition_console"


def _clean(tab_log: object, base: str) -> None:
    log = tab_log
    assert log.off_origin(base) == [], log.off_origin(base)  # type: ignore[attr-defined]
    assert not [m for m in log.console if "Content Security Policy" in m], log.console  # type: ignore[attr-defined]
    assert log.errors == [], log.errors  # type: ignore[attr-defined]


async def test_wrong_password_is_refused_and_the_right_one_opens_the_dashboard(
    server: str, admin: StaffLogin, page: Tab
) -> None:
    tab, log = page
    async with tab.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/console/sign-in")
    ) as answer:
        await sign_in(tab, server, admin, password="not-the-password")
    assert (await answer.value).status == 401
    await expect(tab.get_by_role("alert")).to_have_text("Wrong email or password.")
    assert not [c for c in await tab.context.cookies() if c["name"] == SESSION_COOKIE]

    await sign_in(tab, server, admin)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(tab.locator("header")).to_contain_text(admin.email)
    cookie = next(c for c in await tab.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    _clean(log, server)


async def test_dashboard_shows_the_rollup_with_charts(
    server: str, engine: AsyncEngine, admin: StaffLogin, page: Tab
) -> None:
    # Real bookings through the API; the server's outbox worker rolls them up.
    partner = await make_partner(engine, earn_rate="1")
    api = Api(server, *await make_client(engine, partner.id, ["members:write", "points:earn"]))
    phone = unique_phone()
    async with engine.connect() as conn:
        before = await conn.scalar(
            text("SELECT COALESCE(sum(earns), 0) FROM analytics_daily_activity")
        )
    api.gql(
        "mutation($p: String!) { enrollMember(input: {phone: $p}) { errors { code } } }",
        {"p": phone},
    )
    booked = api.gql(
        'mutation($p: String!) { earnPoints(input: {member: {phone: $p}, amount: "250",'
        ' reference: "r2", idempotencyKey: "k2"}) { points errors { code } } }',
        {"p": phone},
    )
    assert booked["data"]["earnPoints"] == {"points": 250, "errors": []}, booked
    deadline = time.time() + 20
    while True:
        async with engine.connect() as conn:
            after = await conn.scalar(
                text("SELECT COALESCE(sum(earns), 0) FROM analytics_daily_activity")
            )
        if after > before or time.time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert after > before, "the outbox worker did not roll the earn up"
    async with engine.connect() as conn:
        members = await conn.scalar(text("SELECT count(*) FROM members"))
        today = (
            await conn.execute(
                text(
                    "SELECT COALESCE(sum(earns), 0) AS earns, COALESCE(sum(points_issued"
                    " - earn_points_reversed), 0) AS issued FROM analytics_daily_activity"
                    " WHERE day = (now() AT TIME ZONE 'UTC')::date"
                )
            )
        ).one()

    tab, log = page
    await sign_in(tab, server, admin)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(tab.locator("body")).to_have_attribute("data-charts", "drawn")

    # Totals may grow meanwhile (other tests book too): at least what was there.
    shown = await tab.locator("#kpi-members").inner_text()
    assert int(shown.replace("\u202f", "")) >= members
    day_row = tab.locator("table.data tbody tr").first
    cells = await day_row.locator("td").all_inner_texts()
    assert int(cells[1]) >= today.earns > 0
    assert int(cells[3]) >= today.issued >= 250
    assert await tab.locator("#kpi-outstanding").inner_text() != ""
    # The charts' data is the rollup's, as the page received it.
    data = json.loads(await tab.locator("#dashboard-data").inner_text())
    assert len(data["days"]) == 30 and data["earns"][-1] >= today.earns
    _clean(log, server)
    assert any("/console/static/chart-4.6.1.umd.min.js" in u for u in log.requests)


async def test_audit_log_lists_and_filters_console_actions(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    finance = await make_staff(engine, "finance")
    tab, log = page
    await sign_in(tab, server, finance)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    await tab.get_by_role("link", name="Audit log").click()
    await expect(tab.get_by_role("heading", name="Audit log")).to_be_visible()
    await tab.get_by_label("Actor").fill(f"staff:{finance.email}")
    await tab.get_by_role("button", name="Filter").click()
    rows = tab.locator("#audit-rows tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("STAFF_SIGNED_IN")
    await expect(rows.first).to_contain_text(finance.email)
    await tab.get_by_label("Action").select_option("STAFF_CREATED")
    await tab.get_by_label("Actor").fill("test")
    await tab.get_by_role("button", name="Filter").click()
    await expect(tab.locator("#audit-rows")).to_contain_text(finance.email)
    await expect(tab.locator("#audit-rows")).not_to_contain_text("STAFF_SIGNED_IN")
    # The filters are in the address, so the filtered page can be reloaded or shared.
    await tab.reload()
    await expect(tab.get_by_label("Action")).to_have_value("STAFF_CREATED")
    _clean(log, server)


async def test_roles_are_enforced_by_the_server(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    support = await make_staff(engine, "support")
    tab, _ = page
    await sign_in(tab, server, support)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    # The link is hidden, and the page itself refuses.
    await expect(tab.get_by_role("link", name="Audit log")).to_have_count(0)
    response = await tab.goto(f"{server}/console/audit")
    assert response is not None and response.status == 403
    await expect(tab.get_by_role("alert")).to_contain_text("support")


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    server: str, admin: StaffLogin, page: Tab
) -> None:
    tab, _ = page
    await sign_in(tab, server, admin)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    request = tab.context.request  # the browser's own cookies
    for form in ({}, {"csrf": "wrong"}):
        refused = await request.post(f"{server}/console/sign-out", form=form, max_redirects=0)
        assert refused.status == 403
    # Nothing changed: the session still works.
    await tab.goto(f"{server}/console/")
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    # The sign-in form has its own token (double-submitted): without it, 403.
    refused = await request.post(
        f"{server}/console/sign-in",
        form={"email": admin.email, "password": admin.password},
        max_redirects=0,
    )
    assert refused.status == 403


async def test_sign_out_ends_the_session_on_the_server(
    server: str, admin: StaffLogin, page: Tab
) -> None:
    tab, _ = page
    await sign_in(tab, server, admin)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    token = next(c["value"] for c in await tab.context.cookies() if c["name"] == SESSION_COOKIE)
    await tab.get_by_role("button", name="Sign out").click()
    await expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()
    # The old cookie, replayed, no longer opens anything.
    replay = httpx.get(f"{server}/console/", cookies={SESSION_COOKIE: token})
    assert replay.status_code == 303
    assert replay.headers["location"] == "/console/sign-in"


async def test_disabling_a_staff_member_ends_their_sessions(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    who = await make_staff(engine, "marketing")
    tab, _ = page
    await sign_in(tab, server, who)
    await expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    async with engine.begin() as conn:
        await disable_staff(conn, who.email, actor="test")
    await tab.reload()
    await expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()
    await sign_in(tab, server, who)
    await expect(tab.get_by_role("alert")).to_have_text("Wrong email or password.")


async def test_sign_in_is_throttled_after_repeated_failures(
    server: str, engine: AsyncEngine, page: Tab
) -> None:
    who = await make_staff(engine, "support")
    tab, _ = page
    for _ in range(5):
        await sign_in(tab, server, who, password="guess-guess-guess")
        await expect(tab.get_by_role("alert")).to_have_text("Wrong email or password.")
    async with tab.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/console/sign-in")
    ) as answer:
        await sign_in(tab, server, who)  # the right password, but too late
    assert (await answer.value).status == 429
    await expect(tab.get_by_role("alert")).to_contain_text("Too many failed sign-ins")


async def test_pages_carry_a_self_only_content_security_policy(server: str) -> None:
    for path in ("/console/sign-in", "/console/static/console.css"):
        response = httpx.get(f"{server}{path}")
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp
        assert response.headers["x-frame-options"] == "DENY"


async def test_an_idle_or_too_old_session_ends(
    server: str, engine: AsyncEngine, admin: StaffLogin
) -> None:
    from console.staff import get_staff, start_session

    async with engine.begin() as conn:
        staff = await get_staff(conn, admin.email)
        assert staff is not None
        idle_token, idle = await start_session(conn, staff)
        old_token, old = await start_session(conn, staff)
        fresh_token, _ = await start_session(conn, staff)
        # Unused for longer than the idle timeout (30 min), and begun before the absolute one
        # (12 h) though used a moment ago.
        await conn.execute(
            text(
                "UPDATE console_sessions SET last_seen_at = now() - interval '31 minutes'"
                " WHERE token_hash = :t"
            ),
            {"t": idle.token_hash},
        )
        await conn.execute(
            text(
                "UPDATE console_sessions SET created_at = now() - interval '13 hours'"
                " WHERE token_hash = :t"
            ),
            {"t": old.token_hash},
        )
    for token, opens in ((idle_token, False), (old_token, False), (fresh_token, True)):
        response = httpx.get(f"{server}/console/", cookies={SESSION_COOKIE: token})
        assert response.status_code == (200 if opens else 303), token


def test_cookies_are_secure_when_the_setting_says_so(database_url: str, server: str) -> None:
    import dataclasses

    from api.app import create_app
    from api.settings import load_settings
    from tests.conftest import serving

    settings = dataclasses.replace(load_settings(), console_secure_cookies=True)
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        response = httpx.get(f"{url}/console/sign-in")
    cookie = response.headers["set-cookie"]
    assert "coalition_console_signin=" in cookie
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console"):
        assert flag.lower() in cookie.lower(), cookie
    plain = httpx.get(f"{server}/console/sign-in").headers["set-cookie"]
    assert "secure" not in plain.lower()  # plain HTTP in development: a Secure cookie would be lost
