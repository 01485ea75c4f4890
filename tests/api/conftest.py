"""HTTP test settings: cheap Argon2 for the many throwaway API clients these tests create.

The server runs in this process (a uvicorn thread), so both the secrets the tests create and
the server's verification of them use these parameters; verification reads the parameters from
each stored hash, so production-strength hashes (the unknown-client dummy) still verify as such.
"""

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
