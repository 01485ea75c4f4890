"""`earnPointsBatch` over HTTP, as a partner's integration calls it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from schema.points.batch import MAX_ROWS
from tests.batch.helpers import enrolled, key
from tests.conftest import make_partner, partner_api

BATCH = """mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {
  booked replayed rejected transfers points
  rejectedRows { index code message field } replayedRows { index transferId points }
  errors { code message field } } }"""

BALANCE = """query($ref: MemberRef!) { member(ref: $ref) { balance { available } } }"""


def _codes(body: dict[str, Any]) -> list[str]:
    return [str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []]


async def test_earn_points_batch_over_http(engine: AsyncEngine, server: str) -> None:
    partner = await make_partner(engine, earn_rate="2")
    (_, phone, ref), (_, other, _) = await enrolled(engine, [partner.id], 2)
    api = await partner_api(engine, server, partner.id)
    rows = [
        {
            "member": {"phone": phone},
            "amount": "10.50",
            "reference": "R-1",
            "idempotencyKey": key(),
        },
        {"member": {"partnerRef": ref}, "amount": "5", "reference": "R-2", "idempotencyKey": key()},
        {
            "member": {"phone": "+79990000001"},
            "amount": "5",
            "reference": "R-3",
            "idempotencyKey": key(),
        },
        {
            "member": {"id": "bm90LWFuLWlk"},
            "amount": "5",
            "reference": "R-4",
            "idempotencyKey": key(),
        },
        {"member": {"phone": other}, "amount": "0", "reference": "R-5", "idempotencyKey": key()},
        {
            "member": {"phone": other},
            "amount": "3",
            "reference": "R-6",
            "idempotencyKey": key(),
            "occurredAt": "2024-01-01T10:00:00+03:00",
        },
    ]
    result = api.data(BATCH, {"input": {"rows": rows}})["earnPointsBatch"]
    assert result["errors"] == []
    assert (result["booked"], result["rejected"], result["transfers"], result["points"]) == (
        2,
        4,
        2,
        31,
    )
    assert [(r["index"], r["code"]) for r in result["rejectedRows"]] == [
        (2, "MEMBER_NOT_FOUND"),
        (3, "INVALID_INPUT"),
        (4, "INVALID_AMOUNT"),
        (5, "INVALID_INPUT"),  # so old its points would have expired
    ]
    assert api.data(BALANCE, {"ref": {"phone": phone}})["member"]["balance"]["available"] == 31

    again = api.data(BATCH, {"input": {"rows": rows[:2]}})["earnPointsBatch"]
    assert (again["booked"], again["replayed"], again["points"]) == (0, 2, 0)
    assert [(r["index"], r["points"]) for r in again["replayedRows"]] == [(0, 21), (1, 10)]
    transfer = api.data(
        """query($id: ID!) { transfer(id: $id) { reference points } }""",
        {"id": again["replayedRows"][0]["transferId"]},
    )["transfer"]
    assert transfer == {"reference": "R-1", "points": 21}


async def test_earn_points_batch_needs_points_earn_and_bounds_its_rows(
    engine: AsyncEngine, server: str
) -> None:
    partner = await make_partner(engine)
    ((_, phone, _),) = await enrolled(engine, [partner.id], 1)
    reader = await partner_api(engine, server, partner.id, ["members:read"])
    row = {"member": {"phone": phone}, "amount": "10", "reference": "R", "idempotencyKey": key()}
    body = reader.gql(BATCH, {"input": {"rows": [row]}})
    assert _codes(body) == ["FORBIDDEN"] and body["data"] is None

    api = await partner_api(engine, server, partner.id)
    too_many = [dict(row, idempotencyKey=f"k{i}") for i in range(MAX_ROWS + 1)]
    refused = api.data(BATCH, {"input": {"rows": too_many}})["earnPointsBatch"]
    assert [e["code"] for e in refused["errors"]] == ["INVALID_INPUT"]
    assert refused["booked"] == 0
    balance = api.data(BALANCE, {"ref": {"phone": phone}})["member"]["balance"]["available"]
    assert balance == 0
