"""`coalition serve --demo`: the printed credentials and request work against the server."""

from __future__ import annotations

import io
import re

import httpx
from rich.console import Console

from api.demo import seed_demo


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
