"""Cheap Argon2 for the many throwaway API clients these tests create (as tests/api does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher


@pytest.fixture(scope="session", autouse=True)
def cheap_client_secrets() -> Iterator[None]:
    from partners import clients

    original = clients._hasher
    clients._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    clients._hasher = original
