"""The tier policy page and a member's tier on the member page, over real HTTP with real staff
sessions: marketing sets a policy (versioned, audited as the staff member), a member who earns
enough shows its tier, qualifying points, the next tier and its tier change to support; a bad
policy is a typed error on the form with nothing saved; support and finance only look.

The policy is coalition-wide and the suite shares one database: thresholds here are far above
what any other test earns, so no other test's member gets a tier from it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from points.tiers.members import member_tier
from points.tiers.policy import current_policy
from schema.relay import from_global_id
from tests.api.helpers import make_shop
from tests.conftest import unique_phone
from tests.console.conftest import make_staff
from tests.console.staff_http import StaffHttp, field_value
from tests.outbox.helpers import wait_for

SILVER_AT = 2_000_000
GOLD_AT = 5_000_000


def _policy(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "window_days": "365",
        "grace_days": "30",
        "code": ["SILVER", "GOLD", ""],
        "name": ["Silver", "Gold", ""],
        "threshold": [str(SILVER_AT), str(GOLD_AT), ""],
        "multiplier": ["1.25", "1.5", ""],
        "funder": ["operator", ""],
        "share": ["1", ""],
    }
    fields.update(changes)
    return fields


async def _version(engine: AsyncEngine) -> int | None:
    async with engine.connect() as conn:
        policy = await current_policy(conn)
    return None if policy is None else policy.version


async def test_marketing_sets_the_policy_and_support_sees_a_members_tier(
    server: str, engine: AsyncEngine
) -> None:
    marketer = await make_staff(engine, "marketing")
    staff = StaffHttp(server, marketer)
    saved = staff.post("/tiers", _policy())
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/console/tiers?saved=1"
    async with engine.connect() as conn:
        policy = await current_policy(conn)
        assert policy is not None
        audited = (
            await conn.execute(
                text(
                    "SELECT actor, details FROM audit_log"
                    " WHERE action = 'COALITION_SETTINGS_UPDATED' ORDER BY id DESC LIMIT 1"
                )
            )
        ).one()
    rule = policy.rule
    assert (rule.window_days, rule.grace_days) == (365, 30)
    assert [(t.code, t.name, t.threshold, str(t.multiplier)) for t in rule.tiers] == [
        ("SILVER", "Silver", SILVER_AT, "1.25"),
        ("GOLD", "Gold", GOLD_AT, "1.5"),
    ]
    assert [(f.funder, str(f.share)) for f in rule.funding] == [(None, "1")]
    assert audited.actor == f"staff:{marketer.email}"
    assert audited.details["tierPolicy"]["version"] == policy.version

    page = staff.get("/tiers?saved=1").text
    assert f"New policy saved as version {policy.version}" in page
    assert f"In force: version {policy.version}" in page
    tiers = page.split('id="tiers"')[1].split("</table>")[0]
    assert "Silver" in tiers and "2\u202f000\u202f000" in tiers and "×1.25" in tiers
    assert "Operator: 1" in page.split('id="policy-funding"')[1].split("</dd>")[0]
    newest = page.split('id="policy-versions"')[1].split("<tbody>")[1].split("</tr>")[0]
    assert f"<td>{policy.version}</td>" in newest and f"staff:{marketer.email}" in newest
    # The form shows the policy in force, ready to change.
    assert field_value(page, "window_days") == "365"
    assert field_value(page, "code") == "SILVER"

    # A member earns past Silver's threshold: upgraded by the outbox within seconds.
    shop = await make_shop(engine, server)
    phone = unique_phone()
    member = shop.enroll(phone)
    shop.earn_ok({"id": member["id"]}, f"{SILVER_AT}.00")

    async def tier() -> str:
        async with engine.connect() as conn:
            return await member_tier(conn, _id(member))

    assert await wait_for(tier, lambda t: t == "SILVER", "the member's upgrade", 30) == "SILVER"

    support = StaffHttp(server, await make_staff(engine, "support"))
    found = support.get("/members", phone=phone).text
    standing = found.split('id="tier"')[1].split("</section>")[0]
    assert "Silver (SILVER)" in standing.split('id="tier-current">')[1].split("</dd>")[0]
    assert f"{SILVER_AT} in the last 365 days" in standing
    assert f"Gold (GOLD): {GOLD_AT - SILVER_AT} points to go" in standing
    change = standing.split('id="tier-changes"')[1].split("<tbody>")[1].split("</tr>")[0]
    assert "none" in change and "Silver (SILVER)" in change and "UPGRADE" in change

    # Members per tier on the policy page.
    counted = staff.get("/tiers").text.split('id="tiers"')[1].split("</table>")[0]
    silver_row = counted.split("<td>SILVER</td>")[1].split("</tr>")[0]
    assert int(silver_row.rsplit("<td>", 1)[1].split("</td>")[0]) >= 1


def _id(member: dict[str, Any]) -> uuid.UUID:
    return from_global_id(member["id"], "Member")[1]


async def test_a_bad_policy_is_a_typed_error_on_the_form_and_nothing_is_saved(
    server: str, engine: AsyncEngine
) -> None:
    staff = StaffHttp(server, await make_staff(engine, "marketing"))
    assert staff.post("/tiers", _policy()).status_code == 303
    before = await _version(engine)
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"threshold": [str(GOLD_AT), str(SILVER_AT), ""]},
            "INVALID_TIER_POLICY",
            "strictly ascending",
        ),
        ({"multiplier": ["0.5", "1.5", ""]}, "INVALID_TIER_POLICY", "below 1 would take"),
        ({"share": ["0.5", ""]}, "INVALID_FUNDING", "not exactly 1"),
        ({"window_days": "0"}, "INVALID_TIER_POLICY", "windowDays must be"),
        ({"window_days": "a year"}, "INVALID_TIER_POLICY", "whole number"),
        (
            {"code": ["", ""], "name": ["", ""], "threshold": ["", ""], "multiplier": ["", ""]},
            "INVALID_TIER_POLICY",
            "Switch tiers off",
        ),
    ]
    for changes, code, message in cases:
        fields = _policy(**changes)
        answer = staff.post("/tiers", fields)
        assert answer.status_code == 422, (code, answer.text)
        assert f"<strong>{code}</strong>" in answer.text, (code, answer.text)
        assert message in answer.text, (code, answer.text)
        assert "Nothing was saved" in answer.text
        assert field_value(answer.text, "window_days") == fields["window_days"]
        assert await _version(engine) == before


async def test_support_and_finance_see_the_policy_but_may_not_set_it(
    server: str, engine: AsyncEngine
) -> None:
    before = await _version(engine)
    for role in ("support", "finance"):
        staff = StaffHttp(server, await make_staff(engine, role))
        assert 'href="/console/tiers"' in staff.get("/").text
        page = staff.get("/tiers")
        assert page.status_code == 200 and "tier-policy-form" not in page.text
        refused = staff.post("/tiers", _policy(window_days="30"))
        assert refused.status_code == 403 and role in refused.text
    assert await _version(engine) == before
    admin = StaffHttp(server, await make_staff(engine, "admin"))
    assert "tier-policy-form" in admin.get("/tiers").text
