"""Closing a period: fix the cutoff, freeze its obligations, open the next period, and compute
the gross matrix, bilateral nets, positions, payment instructions and statements — all with
set-based SQL in one transaction, so the memory used does not grow with the obligations.

Payment instructions: payers (net < 0) and payees (net > 0), each in party id order, cover
consecutive intervals of the total owed; every overlapping (payer, payee) pair is one payment
of the overlap's length. That is at most P + R − 1 ≤ N − 1 payments, and each party's
payments add up to its net exactly (no rounding: all integers).

A period whose positions are all zero has no instructions and is SETTLED at once.

`period_id` names the period the caller means to close. It is compared with the OPEN period
only once the exclusive period lock is held: checked before it, five parallel closes of one
period would each pass the check and then close five periods one after another.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from db.ids import new_id
from settlement import queries
from settlement.booking import PERIOD_LOCK
from settlement.periods import get_period, require_period
from settlement.records import PeriodRecord

_LINES = queries.FROZEN_LINES

_GROSS = text(
    "INSERT INTO settlement_gross_lines (period_id, debtor_id, creditor_id, kind, points,"
    " amount, obligations)"
    f" SELECT :period, debtor_id, creditor_id, kind, points, amount, obligations"
    f" FROM ({queries.LIVE_LINES}) lines"
)
_BILATERAL = text(
    "INSERT INTO settlement_bilateral_nets (period_id, party_a, party_b, a_owes_b, b_owes_a,"
    f" net) SELECT :period, party_a, party_b, a_owes_b, b_owes_a, net"
    f" FROM ({queries.bilateral_sql(_LINES)}) nets"
)
_POSITIONS = text(
    "INSERT INTO settlement_positions (period_id, party_id, receivable, payable, net)"
    f" SELECT :period, party_id, receivable, payable, net FROM ({queries.positions_sql(_LINES)}) p"
)
_INSTRUCTIONS = text(
    """
    WITH pos AS (SELECT party_id, net FROM settlement_positions
                 WHERE period_id = :period AND net <> 0),
    payers AS (SELECT party_id, -net AS owed, sum(-net) OVER (ORDER BY party_id) AS upto
               FROM pos WHERE net < 0),
    payees AS (SELECT party_id, net AS due, sum(net) OVER (ORDER BY party_id) AS upto
               FROM pos WHERE net > 0)
    INSERT INTO settlement_instructions (id, period_id, payer_id, payee_id, amount)
    SELECT uuid7(), :period, a.party_id, b.party_id,
           LEAST(a.upto, b.upto) - GREATEST(a.upto - a.owed, b.upto - b.due)
    FROM payers a JOIN payees b
      ON a.upto - a.owed < b.upto AND b.upto - b.due < a.upto
    ORDER BY a.upto, b.upto
    """
)
_STATEMENTS = text(
    f"INSERT INTO settlement_statements (period_id, {queries.STATEMENT_COLUMNS})"
    f" SELECT :period, {queries.STATEMENT_COLUMNS} FROM ({queries.statement_sql(_LINES)}) s"
)


async def close_period(
    conn: AsyncConnection, cutoff: datetime | None = None, period_id: uuid.UUID | None = None
) -> PeriodRecord:
    """Close the OPEN period at `cutoff` (default: now) and open the next one from it.

    With `period_id`, only that period: when it is not the OPEN one (a retried or parallel
    close already closed it), PERIOD_NOT_FOUND and nothing changes.
    """
    # Waits for postings in flight; postings that start now wait for this transaction. So
    # does any other close: the OPEN period read below is the one left by the last close.
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PERIOD_LOCK})
    now = await conn.scalar(text("SELECT clock_timestamp()"))
    assert isinstance(now, datetime)
    period = (
        await conn.execute(
            text("SELECT id, starts_at FROM settlement_periods WHERE status = 'OPEN' FOR UPDATE")
        )
    ).one()
    if period_id is not None and period.id != period_id:
        raise await _not_open(conn, period_id)
    cut = now if cutoff is None else cutoff
    if cut.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_CUTOFF, "cutoff needs a time zone", ["cutoff"])
    if cut < period.starts_at or cut > now:
        raise DomainError(
            ErrorCode.INVALID_CUTOFF,
            f"cutoff must be between the period's start ({period.starts_at.isoformat()}) and now",
            ["cutoff"],
        )
    params: dict[str, Any] = {
        "period": period.id,
        "next": new_id(),
        "cutoff": cut,
        "now": now,
        "starts_at": period.starts_at,
        "ends_at": cut,
    }
    await conn.execute(
        text(
            "UPDATE settlement_periods SET status = 'CLOSED', cutoff = :cutoff, closed_at = :now"
            " WHERE id = :period"
        ),
        params,
    )
    await conn.execute(
        text(
            "INSERT INTO settlement_periods (id, status, starts_at) VALUES (:next, 'OPEN', :cutoff)"
        ),
        params,
    )
    # Booked after the cutoff (only when the cutoff is in the past): the next period's.
    await conn.execute(
        text(
            "UPDATE obligations SET period_id = :next"
            " WHERE period_id = :period AND created_at >= :cutoff"
        ),
        params,
    )
    for statement in (_GROSS, _BILATERAL, _POSITIONS, _INSTRUCTIONS, _STATEMENTS):
        await conn.execute(statement, params)
    # Nothing to pay: settled as soon as it is closed.
    await conn.execute(
        text(
            "UPDATE settlement_periods SET status = 'SETTLED', settled_at = :now"
            " WHERE id = :period AND NOT EXISTS"
            " (SELECT 1 FROM settlement_instructions WHERE period_id = :period)"
        ),
        params,
    )
    return await require_period(conn, period.id)


async def _not_open(conn: AsyncConnection, period_id: uuid.UUID) -> DomainError:
    """The caller named a period that is not the OPEN one: say which case it is."""
    named = await get_period(conn, period_id)
    message = (
        "no such settlement period"
        if named is None
        else f"that period is not the OPEN one: it is already {named.status}"
    )
    return DomainError(ErrorCode.PERIOD_NOT_FOUND, message, ["periodId"])
