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


# Connections a process keeps. Size it to the requests a worker has in flight: a connection
# beyond the pool (an overflow one) is opened for one use and closed, i.e. a new PostgreSQL
# backend each time, with its plan caches cold. At 16 requests in flight per worker, a pool
# of 10 opened ~170 backends in 10 s of replays; 20 opened none after warm-up.
DEFAULT_POOL_SIZE = 20


def create_engine(url: str | None = None, *, pool_size: int | None = None) -> AsyncEngine:
    size = pool_size or int(os.environ.get("COALITION_DB_POOL_SIZE", str(DEFAULT_POOL_SIZE)))
    return create_async_engine(
        url or database_url(),
        pool_size=size,
        max_overflow=max(2, size // 2),  # bursts only (see DEFAULT_POOL_SIZE)
        pool_pre_ping=os.environ.get("COALITION_DB_PRE_PING", "0") == "1",
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One database transaction: committed when the block ends, rolled back on any error."""
    async with engine.begin() as conn:
        yield conn
