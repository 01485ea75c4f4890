"""The async engine and the one way code gets a connection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from db.embedded import database_url


def _json_dumps(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


def create_engine(url: str | None = None, *, pool_size: int | None = None) -> AsyncEngine:
    size = pool_size or int(os.environ.get("COALITION_DB_POOL_SIZE", "10"))
    return create_async_engine(
        url or database_url(),
        pool_size=size,
        max_overflow=size,
        pool_pre_ping=os.environ.get("COALITION_DB_PRE_PING", "0") == "1",
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One database transaction: committed when the block ends, rolled back on any error."""
    async with engine.begin() as conn:
        yield conn
