"""In-transaction posting hooks, as SQL functions other modules subscribe to.

`ledger_posting_begin()` runs before a posting writes anything (settlement takes its period
lock there); `ledger_posting_booked(ids)` runs after, in the same transaction, with the ids of
the transfers booked (settlement books their obligations; the outbox gets one
`transfer.booked` event per transfer, see `ledger.outbox`). The ledger only calls them; their
bodies are installed by the subscribers' migrations (0004, 0007). Postings written in Python
call them through this module; postings written as SQL functions call them directly.

`POSTING_BEGIN` and `POSTING_BOOKED` below are the current definitions: the subscriber list in
one place. A new subscriber adds its call here and a migration re-creating the hook with this
text (tests/db/test_function_drift.py fails until both agree). Why a rebuilt list rather than
triggers the subscribers add on their own: obligations are computed from a posting's
consumptions, which are written after its transfers, and one posting inserts transfers in
several statements (an earn and its debt repayments), so a trigger on `transfers` (row- or
statement-level, with transition tables) would run too early and once per statement; the hook
runs once per posting, after its last row, as one call with a cached plan.

`ledger_posting_booked(ids, p_events_written => true)` is for a caller that has written the
outbox's `transfer.booked` events of `ids` itself: a batch chunk, which writes them from the
rows it inserts, in the same statement (`ledger.bulk`), rather than have the hook read 10,000
transfers back by id. Every other subscriber runs as usual. The SQL-function postings call the
hook with one argument (the flag defaults to false), so they need no change when it changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# 7243002 is settlement's period lock (`settlement.booking.PERIOD_LOCK`; the drift test checks
# they agree): postings take it shared, a period close exclusively.
POSTING_BEGIN = """
        CREATE FUNCTION ledger_posting_begin() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM pg_advisory_xact_lock_shared(7243002);  -- settlement's period lock
        END $fn$
        """

# Subscribers, in order: settlement's obligations (0004), the outbox's events (0007; skipped
# for a caller that wrote them, 0012).
POSTING_BOOKED = """
CREATE OR REPLACE FUNCTION ledger_posting_booked(
  p_ids uuid[], p_events_written boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM settlement_book_obligations(p_ids);
  IF NOT p_events_written THEN
    PERFORM outbox_transfers_booked(p_ids);
  END IF;
END $fn$
"""

_BEGIN = text("SELECT ledger_posting_begin()")
_BOOKED = text("SELECT ledger_posting_booked(CAST(:ids AS uuid[]), CAST(:written AS boolean))")


async def begin(conn: AsyncConnection) -> None:
    await conn.execute(_BEGIN)


async def booked(
    conn: AsyncConnection, transfer_ids: Sequence[uuid.UUID], *, events_written: bool = False
) -> None:
    """Run the subscribers for `transfer_ids`; `events_written` when the caller has written
    their `transfer.booked` events itself (`ledger.outbox.TRANSFER_BOOKED_VALUES`)."""
    if transfer_ids:
        await conn.execute(_BOOKED, {"ids": list(transfer_ids), "written": events_written})
