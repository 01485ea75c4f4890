"""Bodies no client should send are the client's error, never the server's.

An undecodable body (not UTF-8, JSON nested a thousand deep) is a JSON 400. A string with a
lone UTF-16 surrogate (`"\\ud800"` is valid JSON, but no UTF-8 text holds it) is refused as
INVALID_INPUT naming its field, and books nothing. The OAuth form endpoints read bad bytes
without failing either.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import BALANCE, EARN, REDEEM, TRANSFERS, Shop, key, make_shop
from tests.conftest import unique_phone

LONE = "\ud800"
VIEWER = "{ viewer { clientId } }"


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


UNDECODABLE = [
    pytest.param(b'{"query": "\xff"}', id="bad-utf8"),
    pytest.param(b"\xff\xfe{}", id="bom-garbage"),
    pytest.param(b'{"query": "\xed\xa0\x80"}', id="encoded-surrogate"),  # CESU-8, not UTF-8
    pytest.param(_nested(1000), id="nested-1000"),
    pytest.param(_nested(100_000), id="nested-100000"),
    pytest.param(
        b'{"query": "{ viewer { clientId } }", "variables": {"a": ' + _nested(1000) + b"}}",
        id="nested-variables",
    ),
    pytest.param(
        b'{"query": "mutation($i: EarnPointsBatchInput!) { earnPointsBatch(input: $i)'
        b' { booked } }", "variables": {"i": {"rows": ' + _nested(900) + b"}}}",
        id="nested-batch-rows",
    ),
]


@pytest.fixture
async def shop(engine: AsyncEngine, server: str) -> Shop:
    return await make_shop(engine, server)


def _post(shop: Shop, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return shop.api.http.post(
        "/graphql",
        content=body,
        headers={"Authorization": f"Bearer {shop.api.token()}", "Content-Type": content_type},
    )


def _gql(shop: Shop, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """As a client's JSON encoder writes it: a lone surrogate as the `\\ud800` escape (httpx
    refuses to encode one)."""
    response = _post(shop, json.dumps({"query": query, "variables": variables}).encode())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("body", UNDECODABLE)
async def test_undecodable_bodies_are_a_json_400(shop: Shop, body: bytes) -> None:
    response = _post(shop, body)
    assert response.status_code == 400, response.text[:300]
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "UTF-8" in error["message"] or "deep" in error["message"]
    # The server is fine afterwards.
    after = _post(shop, json.dumps({"query": VIEWER}).encode())
    assert after.status_code == 200 and after.json()["data"]["viewer"]["clientId"]


async def test_other_unreadable_requests_are_json_4xx(shop: Shop) -> None:
    for body, content_type in [
        (b"{not json", "application/json"),
        (b"42", "application/json"),
        (b"query=%ff", "application/x-www-form-urlencoded"),
        (
            b"--b\r\nContent-Disposition: form-data; name=operations\r\n\r\n\xff\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
    ]:
        response = _post(shop, body, content_type)
        assert 400 <= response.status_code < 500, (body, response.status_code)
        assert response.json()["errors"][0]["message"], body


async def test_lone_surrogates_are_invalid_input(shop: Shop) -> None:
    phone = unique_phone()
    shop.enroll(phone)
    member = {"phone": phone}
    shop.earn_ok(member, "100")
    for field, mutation, name, extra in [
        ("reference", EARN, "earnPoints", {"amount": "10"}),
        ("idempotencyKey", EARN, "earnPoints", {"amount": "10"}),
        ("reference", REDEEM, "redeemPoints", {"points": 5}),
        ("idempotencyKey", REDEEM, "redeemPoints", {"points": 5}),
    ]:
        request = {"member": member, "reference": "R", "idempotencyKey": key(), **extra}
        request[field] = f"x{LONE}y"
        body = _gql(shop, mutation, {"input": request})
        assert "errors" not in body, (field, name, body)
        result = body["data"][name]
        assert [(e["code"], e["field"]) for e in result["errors"]] == [
            ("INVALID_INPUT", [field])
        ], (field, name, result)
        assert result["transfer"] is None
    # In a member reference: refused with the path to it.
    for ref in ({"partnerRef": f"c{LONE}"}, {"phone": f"+7912{LONE}"}):
        request = {"member": ref, "amount": "10", "reference": "R", "idempotencyKey": key()}
        result = _gql(shop, EARN, {"input": request})["data"]["earnPoints"]
        [error] = result["errors"]
        assert error["code"] == "INVALID_INPUT" and error["field"][0] == "member", result
    # In a batch: that row only.
    rows = [
        {"member": member, "amount": "10", "reference": "B-1", "idempotencyKey": key()},
        {"member": member, "amount": "10", "reference": f"B{LONE}", "idempotencyKey": key()},
        {
            "member": {"partnerRef": LONE},
            "amount": "10",
            "reference": "B-3",
            "idempotencyKey": key(),
        },
        {"member": member, "amount": "10", "reference": "B-4", "idempotencyKey": LONE},
    ]
    batch = _gql(
        shop,
        """mutation($i: EarnPointsBatchInput!) { earnPointsBatch(input: $i) {
          booked rejectedRows { index code field } errors { code } } }""",
        {"i": {"rows": rows}},
    )["data"]["earnPointsBatch"]
    assert batch["errors"] == [] and batch["booked"] == 1
    assert batch["rejectedRows"] == [
        {"index": 1, "code": "INVALID_INPUT", "field": ["reference"]},
        {"index": 2, "code": "INVALID_INPUT", "field": ["member", "partnerRef"]},
        {"index": 3, "code": "INVALID_INPUT", "field": ["idempotencyKey"]},
    ]
    # Nothing but the first earn and the good batch row was booked.
    assert shop.api.data(BALANCE, {"ref": member})["member"]["balance"]["available"] == 110
    edges = shop.api.data(TRANSFERS, {"ref": member})["member"]["transfers"]["edges"]
    assert len(edges) == 2


async def test_lone_surrogates_echoed_in_errors_are_still_json(shop: Shop) -> None:
    # GraphQL's own messages quote the bad value back; the answer must still encode.
    body = _gql(shop, "query($id: ID!) { transfer(id: $id) { id } }", {"id": 5})
    assert body["errors"]
    response = _post(
        shop,
        json.dumps({"query": VIEWER, "operationName": f"Op{LONE}"}).encode(),
    )
    assert 200 <= response.status_code < 500, response.text
    assert response.json()["errors"]
    literal = _post(
        shop, json.dumps({"query": f'{{ member(ref: {{phone: "{LONE}"}}) {{ id }} }}'}).encode()
    )
    assert literal.status_code == 200 and literal.json()["errors"]


async def test_oauth_forms_with_bad_bytes_are_client_errors(shop: Shop) -> None:
    auth = (shop.api.client_id, shop.api.client_secret)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path, body, basic in [
        ("/oauth/token", b"grant_type=client_credentials&scope=%ff\xff", True),
        ("/oauth/token", b"grant_type=\xff&client_id=\xff&client_secret=%ed%a0%80", False),
        ("/oauth/token", b"\xff\xfe\x00", True),
        ("/oauth/introspect", b"token=%ff\xff", True),
        ("/oauth/revoke", b"token=%ff\xff&token_type_hint=\xff", True),
    ]:
        response = shop.api.http.post(
            path, content=body, headers=form, auth=auth if basic else None
        )
        assert 200 <= response.status_code < 500, (path, body, response.text)
        assert isinstance(response.json(), dict), (path, body)
    bad_basic = shop.api.http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials",
        headers={**form, "Authorization": "Basic /w=="},  # base64 of the byte 0xff
    )
    assert bad_basic.status_code == 401
