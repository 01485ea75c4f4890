"""TokenService: verified tokens are remembered, but never past their expiry; revocations
reach the server through its periodic refresh."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from joserfc.jwk import ECKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api import tokens
from api.tokens import InvalidToken, TokenService
from tests.conftest import Api, make_client, make_partner


def _service(ttl: int = 60) -> TokenService:
    key = ECKey.generate_key("P-256", parameters={"kid": "test"})
    return TokenService(key, issuer="https://issuer.test", audience="coalition", ttl_seconds=ttl)


def test_a_remembered_token_expires_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _service(ttl=60)
    token, issued = service.issue("cl_1", None, frozenset({"operator"}))
    assert service.verify(token) == issued
    assert service.verify(token) == issued  # the second time from memory
    later = time.time() + 60 + tokens.LEEWAY_SECONDS + 1
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        service.verify(token)
    with pytest.raises(InvalidToken):  # and it stays refused
        service.verify(token)


def test_only_the_exact_token_text_is_remembered() -> None:
    service = _service()
    token, _ = service.issue("cl_1", None, frozenset({"operator"}))
    service.verify(token)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(InvalidToken):
        service.verify(forged)
    other = _service()
    with pytest.raises(InvalidToken):  # another key's service never saw it
        other.verify(token)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    service = _service()
    issued = [service.issue(f"cl_{n}", None, frozenset())[0] for n in range(5)]
    for token in issued:
        service.verify(token)
    assert len(service._verified) == 3
    assert all(service.verify(token) for token in issued)  # evicted ones verify again


# ---- revocations reach the server through its periodic refresh ---------------------------
#
# /oauth/revoke also updates the list of the process that answers it, so a test through it
# passes without any refresh. These revoke in the database only, as another worker (or the
# operator's CLI) does: the server can only learn of it from its refresh loop. The tests'
# server refreshes every 0.5 s (COALITION_REVOCATION_REFRESH in tests/conftest.py); the bound
# allows that plus generous slack for two shared cores, and still fails without a refresh.
REFRESH_BOUND_SECONDS = 5.0


def _status(server: str, token: str) -> int:
    response = httpx.post(
        f"{server}/graphql",
        json={"query": "{ viewer { clientId } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code


def _refused_within(server: str, token: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _status(server, token) == 401:
            return True
        time.sleep(0.1)
    return _status(server, token) == 401


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    jti: str = claims["jti"]
    return jti


async def test_a_client_revoked_in_the_database_is_refused_after_a_refresh(
    engine: AsyncEngine, server: str
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    bystander_id, bystander_secret = await make_client(engine, partner.id, ["members:read"])
    token = Api(server, client_id, secret).token()
    bystander = Api(server, bystander_id, bystander_secret).token()
    assert _status(server, token) == 200
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_clients SET revoked_at = now() WHERE client_id = :c"),
            {"c": client_id},
        )
    assert _refused_within(server, token, REFRESH_BOUND_SECONDS)
    assert _status(server, bystander) == 200  # another client of the same partner


async def test_a_token_revoked_in_the_database_is_refused_after_a_refresh(
    engine: AsyncEngine, server: str
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    api = Api(server, client_id, secret)
    token, other = api.token(), api.token()
    assert _status(server, token) == _status(server, other) == 200
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO revoked_tokens (jti, client_id, expires_at)"
                " VALUES (:j, :c, now() + interval '1 hour')"
            ),
            {"j": _jti(token), "c": client_id},
        )
    assert _refused_within(server, token, REFRESH_BOUND_SECONDS)
    assert _status(server, other) == 200  # only that token
