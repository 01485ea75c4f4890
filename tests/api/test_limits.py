"""Limits over HTTP: query depth, aliases, tokens and body size; malformed requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import error_codes, make_shop
from tests.conftest import Api, unique_phone

MIB = 1024 * 1024


def _member_levels(levels: int) -> str:
    """member > transfers > nodes > member > transfers > nodes > ... `levels` times."""
    inner = "id"
    for _ in range(levels):
        inner = f"member {{ id transfers(first: 1) {{ nodes {{ {inner} }} }} }}"
    return inner


def _nested_member_query(levels: int) -> str:
    return f"query($id: ID!) {{ transfer(id: $id) {{ {_member_levels(levels)} }} }}"


def _body(query: str, padding: str) -> bytes:
    return json.dumps({"query": query, "variables": {"pad": padding}}).encode()


def _post(api: Api, token: str, **kwargs: object) -> httpx.Response:
    return api.http.post(
        "/graphql",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        **kwargs,  # type: ignore[arg-type]
    )


async def test_query_depth_limit(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    shop.enroll(phone)
    earn = shop.earn_ok({"phone": phone}, "10")["transfer"]
    shallow = shop.api.gql(_nested_member_query(2), {"id": earn["id"]})  # depth 8
    assert "errors" not in shallow, shallow
    assert shallow["data"]["transfer"]["member"]["transfers"]["nodes"][0]["member"]["id"]
    deep = shop.api.gql(_nested_member_query(4), {"id": earn["id"]})  # depth 14
    assert deep.get("data") is None
    assert deep["errors"] and "depth" in deep["errors"][0]["message"].lower()
    assert error_codes(deep) == ["MAX_DEPTH_EXCEEDED"]
    # Depth hidden in a fragment counts as well.
    hidden = "query($id: ID!) { transfer(id: $id) { ...T } }"
    hidden += f" fragment T on Transfer {{ {_member_levels(4)} }}"
    body = shop.api.gql(hidden, {"id": earn["id"]})
    assert body.get("data") is None and error_codes(body) == ["MAX_DEPTH_EXCEEDED"], body


async def test_alias_limit(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    ok = "{ " + " ".join(f"a{i}: viewer {{ clientId }}" for i in range(30)) + " }"
    body = shop.api.gql(ok)
    assert "errors" not in body and len(body["data"]) == 30
    too_many = "{ " + " ".join(f"a{i}: viewer {{ clientId }}" for i in range(31)) + " }"
    body = shop.api.gql(too_many)
    assert body.get("data") is None
    assert body["errors"] and "alias" in body["errors"][0]["message"].lower()
    assert error_codes(body) == ["MAX_ALIASES_EXCEEDED"]
    # Aliases hidden in fragments count as well.
    fragment = (
        "query { ...F } fragment F on Query { "
        + " ".join(f"b{i}: coalitionSettings {{ currency }}" for i in range(31))
        + " }"
    )
    body = shop.api.gql(fragment)
    assert body.get("data") is None and error_codes(body) == ["MAX_ALIASES_EXCEEDED"]


async def test_token_limit(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    huge = "{ viewer { " + " ".join(["clientId"] * 2100) + " } }"
    body = shop.api.gql(huge)
    assert body.get("data") is None and body["errors"]
    assert "INTERNAL_ERROR" not in error_codes(body)


async def test_request_body_over_one_mib_is_413(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    token = shop.api.token()
    padding = "x" * (MIB + 10)
    query = "{ viewer { clientId } }"
    big = _body(query, padding)
    response = _post(shop.api, token, content=big)
    assert response.status_code == 413, response.text[:200]
    # Streamed without a Content-Length header, the limit still holds.

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "{ viewer { clientId } }", "variables": {"pad": "'
        for _ in range(20):
            yield b"y" * (64 * 1024)
        yield b'"}}'

    response = _post(shop.api, token, content=chunks())
    assert response.status_code == 413, response.text[:200]
    # Just under the limit is fine.
    small = _body(query, "z" * (MIB - 200))
    response = _post(shop.api, token, content=small)
    assert response.status_code == 200, response.text[:200]
    # The OAuth endpoints are limited too.
    response = shop.api.http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&pad=" + b"p" * (MIB + 10),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(shop.api.client_id, shop.api.client_secret),
    )
    assert response.status_code == 413


async def test_malformed_requests_are_client_errors(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    token = shop.api.token()
    for content in (
        b"{not json",
        b"[]",
        b'{"variables": {}}',
        b'"just a string"',
        b"42",
        b"null",
        b"true",
    ):
        response = _post(shop.api, token, content=content)
        assert 400 <= response.status_code < 500, (content, response.status_code, response.text)
    body = shop.api.gql("{ viewer { noSuchField } }")
    assert body["errors"] and "INTERNAL_ERROR" not in error_codes(body)
    body = shop.api.gql("{ viewer { clientId }")  # syntax error
    assert body["errors"] and "INTERNAL_ERROR" not in error_codes(body)
    huge_int = shop.api.gql("query($f: Int) { partners(first: $f) { nodes { id } } }", {"f": 2**40})
    assert huge_int["errors"] and "INTERNAL_ERROR" not in error_codes(huge_int)
