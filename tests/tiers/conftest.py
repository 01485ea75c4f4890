"""Fixtures of the tier tests: a database of their own for the domain and worker tests (the
tier policy is coalition-wide, so setting one there disturbs no other test), and cheap client
secrets for the HTTP tests against the suite's served app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from tests.outbox.helpers import own_database


@pytest.fixture(scope="session")
async def tiers_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A freshly migrated database beside the suite's, for the tier tests only: no served app
    and no worker consumes it unless a test starts one."""
    async with own_database(database_url) as url:
        engine = create_engine(url, pool_size=5)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def cheap_client_secrets() -> Iterator[None]:
    from partners import clients

    original = clients._hasher
    clients._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    clients._hasher = original
