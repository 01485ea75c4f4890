"""A period's gross lines, bilateral nets, positions and instructions, as the caller may see
them: the operator all of them, a partner only the rows it is party to. An OPEN period's
figures are computed live from its obligations (provisional; it has no instructions yet)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from settlement import queries
from settlement.access import visible_party
from settlement.payments import INSTRUCTION_COLUMNS
from settlement.periods import require_period
from settlement.records import (
    BilateralNetRecord,
    GrossLineRecord,
    InstructionRecord,
    PositionRecord,
)


async def _lines_sql(conn: AsyncConnection, period_id: uuid.UUID) -> str:
    period = await require_period(conn, period_id)
    return queries.lines_sql(frozen=period.status != "OPEN")


async def gross_lines(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID
) -> list[GrossLineRecord]:
    party = visible_party(caller)
    lines = await _lines_sql(conn, period_id)
    rows = await conn.execute(
        text(
            f"SELECT CAST(:period AS uuid) AS period_id, * FROM ({lines}) l"
            " WHERE CAST(:party AS uuid) IS NULL OR :party IN (debtor_id, creditor_id)"
            " ORDER BY debtor_id, creditor_id, kind"
        ),
        {"period": period_id, "party": party},
    )
    return [GrossLineRecord(**r._mapping) for r in rows]


async def bilateral_nets(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID
) -> list[BilateralNetRecord]:
    party = visible_party(caller)
    lines = await _lines_sql(conn, period_id)
    rows = await conn.execute(
        text(
            f"SELECT CAST(:period AS uuid) AS period_id, * FROM ({queries.bilateral_sql(lines)}) n"
            " WHERE CAST(:party AS uuid) IS NULL OR :party IN (party_a, party_b)"
            " ORDER BY party_a, party_b"
        ),
        {"period": period_id, "party": party},
    )
    return [BilateralNetRecord(**r._mapping) for r in rows]


async def positions(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID
) -> list[PositionRecord]:
    party = visible_party(caller)
    period = await require_period(conn, period_id)
    source = (
        "SELECT party_id, receivable, payable, net FROM settlement_positions"
        " WHERE period_id = :period"
        if period.status != "OPEN"
        else queries.positions_sql(queries.LIVE_LINES)
    )
    rows = await conn.execute(
        text(
            f"SELECT CAST(:period AS uuid) AS period_id, * FROM ({source}) p"
            " WHERE CAST(:party AS uuid) IS NULL OR party_id = :party ORDER BY party_id"
        ),
        {"period": period_id, "party": party},
    )
    return [PositionRecord(**r._mapping) for r in rows]


async def instructions(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID
) -> list[InstructionRecord]:
    party = visible_party(caller)
    await require_period(conn, period_id)
    return await _instructions(conn, period_id, party)


async def _instructions(
    conn: AsyncConnection, period_id: uuid.UUID, party: uuid.UUID | None
) -> list[InstructionRecord]:
    rows = await conn.execute(
        text(
            f"SELECT {INSTRUCTION_COLUMNS} FROM settlement_instructions WHERE period_id = :period"
            " AND (CAST(:party AS uuid) IS NULL OR :party IN (payer_id, payee_id))"
            " ORDER BY payer_id, payee_id, id"
        ),
        {"period": period_id, "party": party},
    )
    return [InstructionRecord(**r._mapping) for r in rows]


async def party_instructions(
    conn: AsyncConnection, period_id: uuid.UUID, party: uuid.UUID
) -> list[InstructionRecord]:
    """Instructions a party pays or receives (for its statement; no access check)."""
    return await _instructions(conn, period_id, party)
