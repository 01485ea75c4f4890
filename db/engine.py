"""The async engine and the one way code gets a connection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

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


@dataclass
class WriteMark:
    """Whether work running outside a transaction has sent its (single, atomic) write."""

    sent: bool = False


_write_mark: ContextVar[WriteMark | None] = ContextVar("coalition_write_mark", default=None)


@contextmanager
def watch_write() -> Iterator[WriteMark]:
    """Watch the work run in this block: from `mark_write_sent()` on, a lost connection
    leaves its outcome unknown, so the work must not be run again."""
    mark = WriteMark()
    token = _write_mark.set(mark)
    try:
        yield mark
    finally:
        _write_mark.reset(token)


def mark_write_sent() -> None:
    mark = _write_mark.get()
    if mark is not None:
        mark.sent = True
