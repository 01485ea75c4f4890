"""In-transaction posting hooks, as SQL functions other modules subscribe to.

`ledger_posting_begin()` runs before a posting writes anything (settlement takes its period
lock there); `ledger_posting_booked(ids)` runs after, in the same transaction, with the ids of
the transfers booked (settlement books their obligations; the outbox gets one
`transfer.booked` event per transfer, see `ledger.outbox`). The ledger only calls them; their
bodies are installed by the subscribers' migrations (0004, 0007). Postings written in Python
call them through this module; postings written as SQL functions call them directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_BEGIN = text("SELECT ledger_posting_begin()")
_BOOKED = text("SELECT ledger_posting_booked(CAST(:ids AS uuid[]))")


async def begin(conn: AsyncConnection) -> None:
    await conn.execute(_BEGIN)


async def booked(conn: AsyncConnection, transfer_ids: Sequence[uuid.UUID]) -> None:
    if transfer_ids:
        await conn.execute(_BOOKED, {"ids": list(transfer_ids)})
