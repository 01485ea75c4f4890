"""`coalition serve --demo`: the printed credentials and request work against the server."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.demo import PARTNER_SCOPES, seed_demo
from tests.reliability.helpers import serve


async def test_demo_seed_prints_working_credentials_and_has_cross_brand_history(
    database_url: str, server: str
) -> None:
    out = io.StringIO()
    await seed_demo(database_url, host="127.0.0.1", port=8000, console=Console(file=out, width=80))
    printed = out.getvalue()
    lines = re.findall(r"^\s+(\S+)\s+client_id=(\S+)\s+client_secret=(\S+)", printed, re.M)
    found = {who: (client_id, secret) for who, client_id, secret in lines}
    assert {"operator", "fresh-market", "skyline-cinema", "metro-fuel", "bookworm"} <= set(found)
    assert "curl -s" in printed and "/oauth/token" in printed
    client_id, secret = found["fresh-market"]
    token = httpx.post(
        f"{server}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).json()["access_token"]
    query = (
        '{ member(ref: {phone: "+79120000101"}) { balance { available pending } '
        "transfers(first: 10) { nodes { code points } } } }"
    )
    body = httpx.post(
        f"{server}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    member = body["data"]["member"]
    assert member["balance"]["available"] > 0
    assert {t["code"] for t in member["transfers"]["nodes"]} == {"EARN"}
    # The cinema burnt this member's points, earned at other brands.
    operator_id, operator_secret = found["operator"]
    op_token = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(operator_id, operator_secret),
    ).json()["access_token"]
    history = httpx.post(
        f"{server}/graphql",
        json={
            "query": '{ member(ref: {phone: "+79120000101"}) { balance { pending } '
            "transfers(first: 20) { nodes { code partner { slug } } } } }"
        },
        headers={"Authorization": f"Bearer {op_token}"},
    ).json()["data"]["member"]
    codes = {(t["code"], t["partner"]["slug"]) for t in history["transfers"]["nodes"]}
    assert ("REDEEM", "skyline-cinema") in codes and ("EARN", "metro-fuel") in codes
    assert history["balance"]["pending"] > 0  # Bookworm's 14-day return window


def _printed_clients(output: str) -> dict[str, tuple[str, str, str]]:
    """who -> (client_id, client_secret, scopes) as `serve --demo` prints them."""
    found = re.findall(
        r"^\s+(\S+)\s+client_id=(\S+)\s+client_secret=(\S+)\n\s+scopes: ([^\n]+)$", output, re.M
    )
    return {who: (client_id, secret, scopes) for who, client_id, secret, scopes in found}


async def _active_demo_clients(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count: int = await conn.scalar(
            text(
                "SELECT count(*) FROM api_clients WHERE revoked_at IS NULL"
                " AND name IN ('demo operator', 'demo fresh-market', 'demo skyline-cinema',"
                " 'demo metro-fuel', 'demo bookworm')"
            )
        )
    return count


async def _demo_transfers(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count: int = await conn.scalar(
            text(
                "SELECT count(*) FROM transfers t JOIN partners p ON p.id = t.partner_id"
                " WHERE p.slug IN ('fresh-market', 'skyline-cinema', 'metro-fuel', 'bookworm')"
            )
        )
    return count


def _token(base_url: str, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=30,
    )


async def test_serve_demo_twice_rotates_its_clients_and_books_nothing_again(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """`coalition serve --demo` run twice: the second run finds the demo coalition, books no
    history again, and replaces (not adds to) the demo clients, whose new credentials and
    scopes it prints and which work; the first run's no longer do."""
    outputs: list[str] = []
    for run in range(2):
        log = tmp_path / f"serve-{run}.log"
        served = serve(
            data_dir=tmp_path / "data", log=log, database_url=database_url, args=("--demo",)
        )
        try:
            outputs.append(log.read_text())
            printed = _printed_clients(outputs[-1])
            assert set(printed) == {
                "operator",
                "fresh-market",
                "skyline-cinema",
                "metro-fuel",
                "bookworm",
            }, outputs[-1]
            for who, (client_id, secret, scopes) in printed.items():
                answer = _token(served.base_url, client_id, secret)
                assert answer.status_code == 200, (who, answer.text)
                assert answer.json()["scope"] == scopes  # the scopes printed are granted
            if run == 0:
                transfers = await _demo_transfers(engine)
        finally:
            served.stop()
        assert await _active_demo_clients(engine) == 5

    assert printed["operator"][2] == "operator"
    assert printed["fresh-market"][2] == " ".join(sorted(PARTNER_SCOPES))
    assert "nothing new booked" in outputs[1] and "revoked and replaced" in outputs[1]
    assert await _demo_transfers(engine) == transfers
    first = _printed_clients(outputs[0])
    assert {c[0] for c in first.values()}.isdisjoint({c[0] for c in printed.values()})
    # The first run's clients are revoked: their secrets no longer get a token.
    served = serve(
        data_dir=tmp_path / "data", log=tmp_path / "serve-2.log", database_url=database_url
    )
    try:
        client_id, secret, _ = first["fresh-market"]
        refused = _token(served.base_url, client_id, secret)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    finally:
        served.stop()
