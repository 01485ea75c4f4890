"""Campaigns over real HTTP with real OAuth tokens: the operator's round trip, a partner's own
campaigns and the scope rules, errors as data, the coalition's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.relay import to_global_id
from tests.api.helpers import error_codes, payload, user_errors
from tests.conftest import PARTNER_SCOPES, Api, make_client, make_partner

FIELDS = """id name status version startsAt endsAt effectiveAt createdBy createdAt
  owner { id } partners { id } storeIds channels tiers condition
  effect { multiplier bonusPoints pointsPerUnit categories skus }
  funding { partner { id } share } priority exclusive maxPointsPerPurchase perMemberLimit
  limitPeriod budgetPoints budgetLeft
  versions { version status effectiveAt changedBy name priority effect { multiplier } }"""

MUTATION = """mutation($input: {type}!) {{ {name}(input: $input) {{
  campaign {{ {fields} }} errors {{ code message field }} }} }}"""

CAMPAIGN = f"query($id: ID!) {{ campaign(id: $id) {{ {FIELDS} }} }}"
CAMPAIGNS = """query($first: Int, $after: String, $status: CampaignStatus) {
  campaigns(first: $first, after: $after, status: $status) {
    edges { cursor node { id name status owner { id } } } pageInfo { hasNextPage endCursor } } }"""
AUDIT = """query($action: AuditAction) { auditLog(first: 50, action: $action) {
  nodes { actor action subjectType subjectId details } } }"""
SETTINGS = "{ coalitionSettings { timeZone } }"
UPDATE_SETTINGS = """mutation($input: UpdateCoalitionSettingsInput!) {
  updateCoalitionSettings(input: $input) { settings { timeZone } errors { code field } } }"""

INPUTS = {
    "createCampaign": "CreateCampaignInput",
    "updateCampaign": "UpdateCampaignInput",
    "pauseCampaign": "PauseCampaignInput",
    "resumeCampaign": "ResumeCampaignInput",
    "endCampaign": "EndCampaignInput",
    "archiveCampaign": "ArchiveCampaignInput",
}


def call(api: Api, name: str, input: dict[str, Any]) -> dict[str, Any]:
    document = MUTATION.format(type=INPUTS[name], name=name, fields=FIELDS)
    return payload(api, document, input, name)


def ok(api: Api, name: str, input: dict[str, Any]) -> dict[str, Any]:
    result = call(api, name, input)
    assert result["errors"] == [], result["errors"]
    campaign: dict[str, Any] = result["campaign"]
    return campaign


def new(**fields: Any) -> dict[str, Any]:
    return {"name": "Weekend double", "effect": {"multiplier": "2"}, **fields}


async def fresh(engine: AsyncEngine) -> str:
    """A partner of the test's own: the operator's campaigns here apply only at such partners,
    so that none gives points to another test's purchases (the database is shared)."""
    return to_global_id("Partner", (await make_partner(engine)).id)


async def marketer(engine: AsyncEngine, server: str, *scopes: str) -> tuple[Api, str]:
    """A partner's client with `campaigns:write` (or `scopes`), and the partner's global id."""
    partner = await make_partner(engine)
    client_id, secret = await make_client(
        engine, partner.id, list(scopes) or [*PARTNER_SCOPES, "campaigns:write"]
    )
    return Api(server, client_id, secret), to_global_id("Partner", partner.id)


async def test_the_operators_round_trip(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer, fuel = await make_partner(engine), await make_partner(engine)
    grocer_id, fuel_id = to_global_id("Partner", grocer.id), to_global_id("Partner", fuel.id)
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    created = ok(
        operator_api,
        "createCampaign",
        new(
            name="Fuel + groceries",
            startsAt=starts.isoformat(),
            endsAt=(starts + timedelta(days=30)).isoformat(),
            partnerIds=[grocer_id, fuel_id],
            storeIds=["S1"],
            channels=["store"],
            tiers=["GOLD", "SILVER"],
            condition="purchase.amount >= 1000.0 && purchase.weekday >= 6",
            effect={"multiplier": "1.5", "bonusPoints": 50, "categories": ["fuel"]},
            funding=[
                {"partnerId": grocer_id, "share": "0.5"},
                {"partnerId": fuel_id, "share": "0.3"},
                {"partnerId": None, "share": "0.2"},
            ],
            priority=10,
            exclusive=True,
            maxPointsPerPurchase=500,
            perMemberLimit=2000,
            limitPeriod="WEEK",
            budgetPoints=100000,
        ),
    )
    assert created["status"] == "ACTIVE" and created["version"] == 1
    assert created["owner"] is None
    assert created["startsAt"] == starts.isoformat()
    assert {p["id"] for p in created["partners"]} == {grocer_id, fuel_id}
    assert (created["storeIds"], created["channels"], created["tiers"]) == (
        ["S1"],
        ["store"],
        ["GOLD", "SILVER"],
    )
    assert created["effect"] == {
        "multiplier": "1.5",
        "bonusPoints": 50,
        "pointsPerUnit": None,
        "categories": ["fuel"],
        "skus": [],
    }
    assert [(f["partner"] and f["partner"]["id"], f["share"]) for f in created["funding"]] == [
        (grocer_id, "0.5"),
        (fuel_id, "0.3"),
        (None, "0.2"),
    ]
    assert (created["priority"], created["exclusive"], created["limitPeriod"]) == (10, True, "WEEK")
    assert (created["maxPointsPerPurchase"], created["perMemberLimit"]) == (500, 2000)
    assert created["budgetPoints"] == 100000 == created["budgetLeft"]
    assert created["createdBy"] == operator_api.client_id
    campaign_id = created["id"]

    updated = ok(
        operator_api,
        "updateCampaign",
        {"id": campaign_id, "priority": 20, "budgetPoints": 120000, "endsAt": None},
    )
    assert (updated["version"], updated["priority"], updated["endsAt"]) == (2, 20, None)
    assert updated["budgetLeft"] == 120000
    assert updated["condition"] == created["condition"]  # not given: unchanged
    assert ok(operator_api, "pauseCampaign", {"id": campaign_id})["status"] == "PAUSED"
    assert ok(operator_api, "resumeCampaign", {"id": campaign_id})["status"] == "ACTIVE"
    refused = call(operator_api, "archiveCampaign", {"id": campaign_id})
    assert user_errors(refused) == ["CAMPAIGN_NOT_EDITABLE"] and refused["campaign"] is None
    assert ok(operator_api, "endCampaign", {"id": campaign_id})["status"] == "ENDED"
    archived = ok(operator_api, "archiveCampaign", {"id": campaign_id})
    assert (archived["status"], archived["version"]) == ("ARCHIVED", 6)

    read = operator_api.data(CAMPAIGN, {"id": campaign_id})["campaign"]
    history = [(v["version"], v["status"], v["priority"]) for v in read["versions"]]
    assert history == [
        (1, "ACTIVE", 10),
        (2, "ACTIVE", 20),
        (3, "PAUSED", 20),
        (4, "ACTIVE", 20),
        (5, "ENDED", 20),
        (6, "ARCHIVED", 20),
    ]
    assert {v["changedBy"] for v in read["versions"]} == {operator_api.client_id}
    assert read["effectiveAt"] == read["versions"][-1]["effectiveAt"]
    assert [v["effectiveAt"] for v in read["versions"]] == sorted(
        v["effectiveAt"] for v in read["versions"]
    )
    refused = call(operator_api, "updateCampaign", {"id": campaign_id, "name": "Again"})
    assert user_errors(refused) == ["CAMPAIGN_NOT_EDITABLE"]

    # Every change is in the audit log, with the campaign's global id.
    entries = operator_api.data(AUDIT)["auditLog"]["nodes"]
    ours = [e["action"] for e in entries if e["subjectId"] == campaign_id]
    assert sorted(ours) == sorted(
        [
            "CAMPAIGN_CREATED",
            "CAMPAIGN_UPDATED",
            "CAMPAIGN_PAUSED",
            "CAMPAIGN_RESUMED",
            "CAMPAIGN_ENDED",
            "CAMPAIGN_ARCHIVED",
        ]
    )
    assert {e["subjectType"] for e in entries if e["subjectId"] == campaign_id} == {"Campaign"}


async def test_a_draft_starts_with_resume(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    draft = ok(operator_api, "createCampaign", new(draft=True, partnerIds=[await fresh(engine)]))
    assert draft["status"] == "DRAFT"
    assert call(operator_api, "pauseCampaign", {"id": draft["id"]})["errors"][0]["code"] == (
        "CAMPAIGN_NOT_EDITABLE"
    )
    started = ok(operator_api, "resumeCampaign", {"id": draft["id"]})
    assert (started["status"], started["version"]) == ("ACTIVE", 2)
    # Asking again changes nothing and is not an error (a retried request).
    again = ok(operator_api, "resumeCampaign", {"id": draft["id"]})
    assert again["version"] == 2


async def test_refusals_are_payload_errors_naming_the_field(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    partner = to_global_id("Partner", (await make_partner(engine)).id)
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        (new(condition="purchase.amount > 10"), "INVALID_CONDITION", ["condition"]),
        (new(funding=[{"partnerId": partner, "share": "0.6"}]), "INVALID_FUNDING", ["funding"]),
        (new(funding=[{"partnerId": partner, "share": "0.5"}, {"partnerId": partner, "share": "0.5"}]), "INVALID_FUNDING", ["funding", "1", "partnerId"]),
        (new(funding=[{"partnerId": to_global_id("Partner", "00000000-0000-0000-0000-000000000001"), "share": "1"}]), "INVALID_FUNDING", ["funding", "0", "partnerId"]),
        (new(funding=[{"partnerId": "nope", "share": "1"}]), "INVALID_INPUT", ["funding", "0", "partnerId"]),
        (new(funding=[{"partnerId": None, "share": "1.5"}]), "INVALID_FUNDING", ["funding", "0", "share"]),
        (new(funding=[{"partnerId": None, "share": "abc"}]), "INVALID_AMOUNT", ["funding", "0", "share"]),
        (new(startsAt=(now + timedelta(days=2)).isoformat(), endsAt=(now + timedelta(days=1)).isoformat()), "INVALID_SCHEDULE", ["endsAt"]),
        (new(startsAt="2030-01-01T00:00:00"), "INVALID_INPUT", ["startsAt"]),
        (new(effect={"multiplier": "0.5"}), "INVALID_EFFECT", ["effect", "multiplier"]),
        (new(effect={"bonusPoints": -1}), "INVALID_EFFECT", ["effect", "bonusPoints"]),
        (new(effect={}), "INVALID_EFFECT", ["effect"]),
        (new(partnerIds=[partner, "x"]), "INVALID_INPUT", ["partnerIds", "1"]),
        (new(partnerIds=[to_global_id("Partner", "00000000-0000-0000-0000-000000000002")]), "PARTNER_NOT_FOUND", ["partnerIds", "0"]),
        (new(budgetPoints=0), "INVALID_AMOUNT", ["budgetPoints"]),
        (new(name=""), "INVALID_INPUT", ["name"]),
    ]  # fmt: skip
    for input, code, field in cases:
        result = call(operator_api, "createCampaign", input)
        assert result["campaign"] is None, input
        [error] = result["errors"]
        assert (error["code"], error["field"]) == (code, field), (input, error)
    compiler = call(operator_api, "createCampaign", new(condition="purchase.amount > 10"))
    assert (
        "1000.0" in compiler["errors"][0]["message"] or "double" in compiler["errors"][0]["message"]
    )
    async with engine.connect() as c:
        saved = await c.scalar(
            text("SELECT count(*) FROM campaigns WHERE created_by = :c"),
            {"c": operator_api.client_id},
        )
    assert saved == 0
    for name in ("updateCampaign", "pauseCampaign", "archiveCampaign"):
        missing = call(
            operator_api,
            name,
            {"id": to_global_id("Campaign", "00000000-0000-0000-0000-000000000003")},
        )
        assert [(e["code"], e["field"]) for e in missing["errors"]] == [
            ("CAMPAIGN_NOT_FOUND", ["id"])
        ]
        wrong = call(operator_api, name, {"id": partner})
        assert [(e["code"], e["field"]) for e in wrong["errors"]] == [("INVALID_INPUT", ["id"])]
    bad_id = operator_api.gql(CAMPAIGN, {"id": "nope"})
    assert error_codes(bad_id) == ["INVALID_INPUT"]


async def test_a_partners_own_campaigns(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    api, me = await marketer(engine, server)
    other_api, other = await marketer(engine, server)
    mine = ok(api, "createCampaign", new(effect={"bonusPoints": 100}))
    assert mine["owner"]["id"] == me
    assert [p["id"] for p in mine["partners"]] == [me]
    assert [(f["partner"]["id"], f["share"]) for f in mine["funding"]] == [(me, "1")]
    theirs = ok(other_api, "createCampaign", new())
    coalition = ok(operator_api, "createCampaign", new(partnerIds=[await fresh(engine)]))

    # It sees and changes only its own.
    listed = {e["node"]["id"] for e in api.data(CAMPAIGNS, {"first": 100})["campaigns"]["edges"]}
    assert listed == {mine["id"]}
    for hidden in (theirs, coalition):
        assert api.data(CAMPAIGN, {"id": hidden["id"]})["campaign"] is None
        for name, input in (
            ("updateCampaign", {"id": hidden["id"], "priority": 5}),
            ("pauseCampaign", {"id": hidden["id"]}),
            ("endCampaign", {"id": hidden["id"]}),
        ):
            assert user_errors(call(api, name, input)) == ["CAMPAIGN_NOT_FOUND"], name
    assert ok(api, "pauseCampaign", {"id": mine["id"]})["status"] == "PAUSED"

    # Aimed at, or funded by, anyone else: refused, nothing saved.
    for input, field in (
        (new(partnerIds=[other]), ["partnerIds", "0"]),
        (new(partnerIds=[me, other]), ["partnerIds", "1"]),
        (new(funding=[{"partnerId": other, "share": "1"}]), ["funding", "0", "partnerId"]),
        (new(funding=[{"partnerId": None, "share": "1"}]), ["funding", "0", "partnerId"]),
    ):
        result = call(api, "createCampaign", input)
        assert [(e["code"], e["field"]) for e in result["errors"]] == [
            ("PARTNER_NOT_ALLOWED", field)
        ]
    refused = call(api, "updateCampaign", {"id": mine["id"], "partnerIds": [other]})
    assert user_errors(refused) == ["PARTNER_NOT_ALLOWED"]
    assert len(api.data(CAMPAIGNS, {"first": 100})["campaigns"]["edges"]) == 1

    # The operator sees every campaign, the partners' included.
    seen: set[str] = set()
    after = None
    while True:
        page = operator_api.data(CAMPAIGNS, {"first": 100, "after": after})["campaigns"]
        seen |= {e["node"]["id"] for e in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert {mine["id"], theirs["id"], coalition["id"]} <= seen
    assert operator_api.data(CAMPAIGN, {"id": mine["id"]})["campaign"]["owner"]["id"] == me
    paused = operator_api.data(CAMPAIGNS, {"first": 100, "status": "PAUSED"})["campaigns"]
    assert mine["id"] in {e["node"]["id"] for e in paused["edges"]}


async def test_without_campaigns_write_a_partner_is_refused(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    api, _ = await marketer(engine, server, *PARTNER_SCOPES)
    coalition = ok(operator_api, "createCampaign", new(partnerIds=[await fresh(engine)]))
    calls: list[tuple[str, dict[str, object], str]] = [
        (
            MUTATION.format(type="CreateCampaignInput", name="createCampaign", fields="id"),
            {"input": new()},
            "createCampaign",
        ),
        (
            MUTATION.format(type="PauseCampaignInput", name="pauseCampaign", fields="id"),
            {"input": {"id": coalition["id"]}},
            "pauseCampaign",
        ),
        (CAMPAIGNS, {}, "campaigns"),
        (CAMPAIGN, {"id": coalition["id"]}, "campaign"),
    ]
    for document, variables, field in calls:
        body = api.gql(document, variables)
        assert error_codes(body) == ["FORBIDDEN"], field
        assert body["errors"][0]["path"] == [field]
    assert operator_api.data(CAMPAIGN, {"id": coalition["id"]})["campaign"]["status"] == "ACTIVE"


async def test_the_token_endpoint_grants_campaigns_write_only_to_its_holders(
    engine: AsyncEngine, server: str
) -> None:
    holder, _ = await marketer(engine, server)
    token = holder.token("campaigns:write")
    body = holder.gql(
        MUTATION.format(type="CreateCampaignInput", name="createCampaign", fields="id"),
        {"input": new()},
        token=token,
    )
    assert body["data"]["createCampaign"]["errors"] == []
    # A token narrowed to other scopes cannot manage campaigns.
    narrow = holder.token("points:earn")
    assert error_codes(holder.gql(CAMPAIGNS, {}, token=narrow)) == ["FORBIDDEN"]
    lacking, _ = await marketer(engine, server, *PARTNER_SCOPES)
    response = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "campaigns:write"},
        auth=(lacking.client_id, lacking.client_secret),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


async def test_the_operator_grants_campaigns_write(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    partner = to_global_id("Partner", (await make_partner(engine)).id)
    created = operator_api.data(
        """mutation($input: CreateApiClientInput!) { createApiClient(input: $input) {
          clientId clientSecret scopes errors { code } } }""",
        {"input": {"partnerId": partner, "scopes": ["campaigns:write"]}},
    )["createApiClient"]
    assert created["errors"] == [] and created["scopes"] == ["campaigns:write"]
    api = Api(server, created["clientId"], created["clientSecret"])
    assert ok(api, "createCampaign", new())["owner"]["id"] == partner


async def test_the_coalition_time_zone(server: str, operator_api: Api) -> None:
    assert operator_api.data(SETTINGS)["coalitionSettings"]["timeZone"] == "UTC"
    try:
        changed = payload(
            operator_api,
            UPDATE_SETTINGS,
            {"timeZone": "Asia/Yekaterinburg"},
            "updateCoalitionSettings",
        )
        assert changed == {"settings": {"timeZone": "Asia/Yekaterinburg"}, "errors": []}
        refused = payload(
            operator_api, UPDATE_SETTINGS, {"timeZone": "Moscow"}, "updateCoalitionSettings"
        )
        assert refused == {
            "settings": None,
            "errors": [{"code": "INVALID_INPUT", "field": ["timeZone"]}],
        }
        assert operator_api.data(SETTINGS)["coalitionSettings"]["timeZone"] == "Asia/Yekaterinburg"
    finally:
        payload(operator_api, UPDATE_SETTINGS, {"timeZone": "UTC"}, "updateCoalitionSettings")
