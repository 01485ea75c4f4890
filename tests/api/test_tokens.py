"""TokenService: verified tokens are remembered, but never past their expiry."""

from __future__ import annotations

import time

import pytest
from joserfc.jwk import ECKey

from api import tokens
from api.tokens import InvalidToken, TokenService


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
