"""Campaign pages over real HTTP with real staff sessions: marketing creates and edits a
co-funded campaign (a version per change, audited as the staff member), the condition field's
check answers with the compiler's own message, "try it on a purchase" prices the unsaved form
with the campaigns in force and names who pays each line, the lifecycle buttons, typed domain
errors on the form with nothing saved, and the roles that may only look (or not at all).

The suite shares one database: every campaign here applies only at partners the test made, so
no other test's purchase is priced by it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from partners.service import PartnerRecord
from points.campaigns.queries import get_campaign, list_versions
from points.rules.cel import ConditionError, compile_condition
from points.rules.model import CampaignStatus
from tests.conftest import OPERATOR, make_partner, unique_slug
from tests.console.conftest import make_staff
from tests.console.staff_http import StaffHttp, field_value

BLANK_FUNDING: dict[str, Any] = {"funder": ["", ""], "share": ["", ""]}


def _fields(partner: PartnerRecord, **changes: Any) -> dict[str, Any]:
    """The editor's fields for a campaign applying only at `partner`."""
    fields: dict[str, Any] = {
        "name": f"Campaign {unique_slug()}",
        "starts_at": "",
        "ends_at": "",
        "partner_ids": [str(partner.id)],
        "store_ids": "",
        "channels": "",
        "tiers": "",
        "condition": "true",
        "multiplier": "",
        "bonus_points": "10",
        "points_per_unit": "",
        "categories": "",
        "skus": "",
        **BLANK_FUNDING,
        "priority": "0",
        "max_points_per_purchase": "",
        "per_member_limit": "",
        "limit_period": "CAMPAIGN",
        "budget_points": "",
    }
    fields.update(changes)
    return fields


def _created_id(response: httpx.Response) -> uuid.UUID:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/console/campaigns/") and location.endswith("?done=created")
    return uuid.UUID(location.split("/")[-1].split("?")[0])


async def _named(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(text("SELECT count(*) FROM campaigns WHERE name = :n"), {"n": name})
            or 0
        )


def _compiler_says(source: str) -> str:
    """The compiler's message, as a page shows it (HTML-escaped)."""
    with pytest.raises(ConditionError) as caught:
        compile_condition(source)
    return str(escape(str(caught.value)))


async def test_marketing_creates_and_edits_a_co_funded_campaign(
    server: str, engine: AsyncEngine
) -> None:
    cafe = await make_partner(engine, name="Console Café")
    bakery = await make_partner(engine, name="Console Bakery")
    marketer = await make_staff(engine, "marketing")
    staff = StaffHttp(server, marketer)
    home = staff.get("/").text
    assert 'href="/console/campaigns"' in home and 'href="/console/tiers"' in home
    assert staff.get("/campaigns/new").status_code == 200

    fields = _fields(
        cafe,
        partner_ids=[str(cafe.id), str(bakery.id)],
        channels="app, online",
        tiers="GOLD",
        condition='"coffee" in purchase.categories && purchase.amount >= 100.0',
        multiplier="2",
        bonus_points="50",
        categories="coffee",
        funder=[str(cafe.id), "operator", ""],
        share=["0.6", "0.4", ""],
        priority="5",
        exclusive="on",
        max_points_per_purchase="1000",
        per_member_limit="500",
        limit_period="WEEK",
        budget_points="100000",
    )
    campaign_id = _created_id(staff.post("/campaigns", fields))

    async with engine.connect() as conn:
        record = await get_campaign(conn, OPERATOR, campaign_id)
        assert record is not None
        rule = record.rule
        assert rule.name == fields["name"] and rule.status == CampaignStatus.ACTIVE
        assert rule.partner_ids == {cafe.id, bakery.id}
        assert rule.channels == {"app", "online"} and rule.tiers == {"GOLD"}
        assert rule.condition == fields["condition"]
        assert str(rule.effect.multiplier) == "2" and rule.effect.bonus_points == 50
        assert rule.effect.categories == ("coffee",)
        assert [(f.funder, str(f.share)) for f in rule.funding] == [
            (cafe.id, "0.6"),
            (None, "0.4"),
        ]
        assert (rule.priority, rule.exclusive) == (5, True)
        assert (rule.max_points_per_purchase, rule.per_member_limit) == (1000, 500)
        assert (str(rule.limit_period), rule.budget_points) == ("WEEK", 100000)
        assert record.owner_partner_id is None
        actor = await conn.scalar(
            text(
                "SELECT actor FROM audit_log WHERE action = 'CAMPAIGN_CREATED' AND subject_id = :id"
            ),
            {"id": str(campaign_id)},
        )
    assert actor == f"staff:{marketer.email}"

    page = staff.get(f"/campaigns/{campaign_id}?done=created").text
    assert "Campaign created" in page and escape(fields["name"]) in page
    assert 'id="campaign-status">ACTIVE' in page
    assert "100\u202f000 left of 100\u202f000" in page
    listing = staff.get("/campaigns").text
    row = listing.split(escape(fields["name"]))[1].split("</tr>")[0]
    for cell in ("ACTIVE", "<td>5</td>", "coalition", "100\u202f000 / 100\u202f000", "<td>1</td>"):
        assert cell in row, (cell, row)

    # An edit: every field sent again as shown, the priority changed: version 2, the start
    # kept to the microsecond (the field shows whole seconds).
    shown = {
        **fields,
        "starts_at": field_value(page, "starts_at"),
        "name": field_value(page, "name"),
        "priority": "7",
    }
    edited = staff.post(f"/campaigns/{campaign_id}", shown)
    assert edited.status_code == 303, edited.text
    assert edited.headers["location"].endswith("?done=updated")
    async with engine.connect() as conn:
        after = await get_campaign(conn, OPERATOR, campaign_id)
        versions = await list_versions(conn, campaign_id)
    assert after is not None and after.version == 2 and after.rule.priority == 7
    assert after.rule.starts_at == rule.starts_at
    assert [v.changed_by for v in versions] == [f"staff:{marketer.email}"] * 2
    page = staff.get(f"/campaigns/{campaign_id}").text
    history = page.split('id="versions"')[1]
    assert "<td>2</td>" in history and "priority" in history

    # The same form again changes nothing: no version 3.
    again = staff.post(f"/campaigns/{campaign_id}", shown)
    assert again.headers["location"].endswith("?done=unchanged")
    async with engine.connect() as conn:
        same = await get_campaign(conn, OPERATOR, campaign_id)
    assert same is not None and same.version == 2


async def test_the_condition_check_answers_with_the_compilers_message(
    server: str, engine: AsyncEngine
) -> None:
    staff = StaffHttp(server, await make_staff(engine, "marketing"))
    for bad in ("purchase.amont > 10.0", "purchase.amount > 1000", "purchase.amount"):
        answer = staff.post("/campaigns/condition", {"condition": bad}, **{"HX-Request": "true"})
        assert answer.status_code == 200
        assert "Does not compile" in answer.text
        assert _compiler_says(bad) in answer.text, answer.text
    hint = staff.post("/campaigns/condition", {"condition": "purchase.amount > 1000"}).text
    assert "write 1000.0, not 1000" in hint
    good = staff.post("/campaigns/condition", {"condition": 'member.tier == "GOLD"'})
    assert 'data-compiles="yes"' in good.text and "compiles" in good.text
    # The editor lists the variables a condition can read.
    editor = staff.get("/campaigns/new").text
    for variable in ("purchase.amount", "purchase.local_hour", "member.tier", "partner.slug"):
        assert f"<code>{variable}</code>" in editor


async def test_try_it_on_a_purchase_prices_the_unsaved_form_with_the_campaigns_in_force(
    server: str, engine: AsyncEngine
) -> None:
    cafe = await make_partner(engine, earn_rate="1", name="Preview Café")
    mill = await make_partner(engine, earn_rate="1", name="Preview Mill")
    staff = StaffHttp(server, await make_staff(engine, "marketing"))
    # A campaign in force at the café: 7 points a purchase, paid by the operator.
    saved_name = f"Saved {unique_slug()}"
    saved = _created_id(
        staff.post(
            "/campaigns",
            _fields(cafe, name=saved_name, bonus_points="7", funder=["operator"], share=["1"]),
        )
    )
    async with engine.connect() as conn:
        before = await conn.scalar(text("SELECT count(*) FROM campaigns"))

    form = _fields(
        cafe,
        name="Coffee doubles",
        multiplier="2",
        bonus_points="10",
        categories="coffee",
        funder=[str(cafe.id), str(mill.id)],
        share=["0.5", "0.5"],
    )
    purchase = {
        "campaign_id": "",
        "try_partner": cafe.slug,
        "try_amount": "1000",
        "try_lines": "latte,coffee,300\nbagel,bakery,700",
        "try_time": "",
        "try_channel": "",
        "try_store": "",
        "try_tier": "",
        "try_purchases": "0",
    }
    answer = staff.post("/campaigns/preview", {**form, **purchase}, **{"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    body = answer.text
    # Base 1000 (the café); the saved campaign's 7 (the operator); the form's campaign on the
    # 300 of coffee: 300 × (2 − 1) + 10 = 310, split 155 / 155.
    assert 'id="preview-points">1317<' in body, body
    lines = body.split("<tbody>")[1].split("</tr>")
    assert "BASE_RATE" in lines[0] and "Preview Café: 1000" in lines[0]
    ours = next(line for line in lines if "(this form)" in line)
    assert "<td>310</td>" in ours and "Preview Café: 155" in ours and "Preview Mill: 155" in ours
    other = next(line for line in lines if saved_name in line)
    assert "Operator: 7" in other
    assert "gives the points marked below" in body

    # Elsewhere (another partner), the form's campaign does not apply, and the page says why.
    elsewhere = staff.post("/campaigns/preview", {**form, **purchase, "try_partner": mill.slug})
    assert 'id="preview-points">1000<' in elsewhere.text
    assert "does not apply at this partner" in elsewhere.text

    # The saved campaign, edited in the form: its form version replaces its saved one.
    edited = _fields(cafe, name=saved_name, bonus_points="40", funder=["operator"], share=["1"])
    replaced = staff.post(
        "/campaigns/preview", {**edited, **purchase, "campaign_id": str(saved)}
    ).text
    assert 'id="preview-points">1040<' in replaced
    assert replaced.count(escape(saved_name)) == 1

    # Typed errors in the fragment, nothing priced: a bad condition, lines that do not add up.
    bad = staff.post("/campaigns/preview", {**form, **purchase, "condition": "purchase.amont"})
    assert "INVALID_CONDITION" in bad.text and "preview-points" not in bad.text
    assert _compiler_says("purchase.amont") in bad.text
    short = staff.post("/campaigns/preview", {**form, **purchase, "try_lines": "latte,coffee,3"})
    assert "INVALID_LINES" in short.text
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM campaigns")) == before


async def test_lifecycle_buttons_and_refused_transitions(server: str, engine: AsyncEngine) -> None:
    shop = await make_partner(engine)
    marketer = await make_staff(engine, "marketing")
    staff = StaffHttp(server, marketer)
    campaign_id = _created_id(staff.post("/campaigns", _fields(shop, draft="on")))
    path = f"/campaigns/{campaign_id}"
    page = staff.get(path).text
    assert 'id="campaign-status">DRAFT' in page and ">Activate</button>" in page
    assert ">Pause</button>" not in page

    async def status() -> str:
        async with engine.connect() as conn:
            found = await get_campaign(conn, OPERATOR, campaign_id)
        assert found is not None
        return str(found.status)

    refused = staff.post(f"{path}/pause", {})
    assert refused.status_code == 422
    assert "CAMPAIGN_NOT_EDITABLE" in refused.text and "cannot be paused" in refused.text
    assert await status() == "DRAFT"
    for action, expected in (
        ("resume", "ACTIVE"),
        ("pause", "PAUSED"),
        ("resume", "ACTIVE"),
    ):
        done = staff.post(f"{path}/{action}", {})
        assert done.status_code == 303 and done.headers["location"].endswith(f"?done={action}")
        assert await status() == expected
    refused = staff.post(f"{path}/archive", {})
    assert refused.status_code == 422 and "end it first" in refused.text
    assert staff.post(f"{path}/end", {}).status_code == 303
    page = staff.get(path).text
    assert 'id="campaign-status">ENDED' in page
    assert "Save changes" not in page and ">Archive</button>" in page
    # An ended campaign is not edited: the domain refuses, nothing changes.
    refused = staff.post(path, _fields(shop, priority="9"))
    assert refused.status_code == 422 and "CAMPAIGN_NOT_EDITABLE" in refused.text
    assert staff.post(f"{path}/archive", {}).status_code == 303
    assert await status() == "ARCHIVED"
    assert staff.post(f"{path}/explode", {}).status_code == 404
    async with engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT action, actor FROM audit_log WHERE subject_id = :id"
                    " AND action LIKE 'CAMPAIGN_%' ORDER BY id"
                ),
                {"id": str(campaign_id)},
            )
        ).all()
        versions = await list_versions(conn, campaign_id)
    assert [a.action for a in audited] == [
        "CAMPAIGN_CREATED",
        "CAMPAIGN_RESUMED",
        "CAMPAIGN_PAUSED",
        "CAMPAIGN_RESUMED",
        "CAMPAIGN_ENDED",
        "CAMPAIGN_ARCHIVED",
    ]
    assert {a.actor for a in audited} == {f"staff:{marketer.email}"}
    assert [str(v.rule.status) for v in versions] == [
        "DRAFT",
        "ACTIVE",
        "PAUSED",
        "ACTIVE",
        "ENDED",
        "ARCHIVED",
    ]
    # The status filter.
    archived = staff.get("/campaigns", status="ARCHIVED").text
    assert str(campaign_id) in archived
    assert str(campaign_id) not in staff.get("/campaigns", status="ACTIVE").text


async def test_domain_errors_are_shown_on_the_form_and_nothing_is_saved(
    server: str, engine: AsyncEngine
) -> None:
    shop = await make_partner(engine)
    staff = StaffHttp(server, await make_staff(engine, "marketing"))
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"funder": [str(shop.id), "operator"], "share": ["0.5", "0.4"]},
            "INVALID_FUNDING",
            "add up to exactly 1",
        ),
        (
            {"starts_at": "2031-05-01T10:00", "ends_at": "2031-04-01T10:00"},
            "INVALID_SCHEDULE",
            "endsAt must be after startsAt",
        ),
        (
            {"condition": "purchase.amont > 1.0"},
            "INVALID_CONDITION",
            _compiler_says("purchase.amont > 1.0"),
        ),
        ({"multiplier": "0.5", "bonus_points": ""}, "INVALID_EFFECT", "multiplier must be"),
        ({"bonus_points": "", "multiplier": ""}, "INVALID_EFFECT", "the effect gives nothing"),
        ({"budget_points": "lots"}, "INVALID_INPUT", "whole number"),
        ({"partner_ids": [str(uuid.uuid4())]}, "PARTNER_NOT_FOUND", "no such partner"),
    ]
    for changes, code, message in cases:
        fields = _fields(shop, **changes)
        answer = staff.post("/campaigns", fields)
        assert answer.status_code == 422, (code, answer.text)
        assert f"<strong>{code}</strong>" in answer.text, (code, answer.text)
        assert message in answer.text, (code, answer.text)
        assert "Nothing was saved" in answer.text
        # The form keeps what was typed.
        assert field_value(answer.text, "name") == fields["name"]
        assert await _named(engine, fields["name"]) == 0

    # An edit refused the same way leaves the campaign as it was.
    campaign_id = _created_id(staff.post("/campaigns", _fields(shop)))
    refused = staff.post(f"/campaigns/{campaign_id}", _fields(shop, condition="member.tier > 1"))
    assert refused.status_code == 422 and "INVALID_CONDITION" in refused.text
    assert "member.tier &gt; 1" in refused.text  # the typed condition is kept
    async with engine.connect() as conn:
        record = await get_campaign(conn, OPERATOR, campaign_id)
    assert record is not None and record.version == 1 and record.rule.condition == "true"


async def test_support_and_finance_may_look_but_not_change(
    server: str, engine: AsyncEngine
) -> None:
    shop = await make_partner(engine)
    marketer = StaffHttp(server, await make_staff(engine, "marketing"))
    fields = _fields(shop)
    campaign_id = _created_id(marketer.post("/campaigns", fields))
    for role in ("support", "finance"):
        staff = StaffHttp(server, await make_staff(engine, role))
        assert 'href="/console/campaigns"' in staff.get("/").text
        listing = staff.get("/campaigns")
        assert listing.status_code == 200 and escape(fields["name"]) in listing.text
        assert "New campaign" not in listing.text
        page = staff.get(f"/campaigns/{campaign_id}")
        assert page.status_code == 200
        assert 'id="definition"' in page.text and "campaign-form" not in page.text
        assert "Pause</button>" not in page.text
        assert staff.get("/campaigns/new").status_code == 403
        for path, data in (
            ("/campaigns", _fields(shop)),
            (f"/campaigns/{campaign_id}", {**fields, "priority": "3"}),
            (f"/campaigns/{campaign_id}/pause", {}),
            ("/campaigns/condition", {"condition": "true"}),
            ("/campaigns/preview", {**fields, "try_partner": shop.slug, "try_amount": "1"}),
        ):
            refused = staff.post(path, data)
            assert refused.status_code == 403, (role, path)
            assert role in refused.text
    async with engine.connect() as conn:
        record = await get_campaign(conn, OPERATOR, campaign_id)
    assert record is not None and record.version == 1 and record.status == CampaignStatus.ACTIVE

    # Not signed in: the pages send to the sign-in page; a POST is refused.
    anonymous = httpx.Client(base_url=server)
    for path in ("/console/campaigns", f"/console/campaigns/{campaign_id}", "/console/tiers"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    assert anonymous.post("/console/campaigns", data=fields).status_code == 403
    # A page that is not a campaign.
    assert marketer.get(f"/campaigns/{uuid.uuid4()}").status_code == 404
