"""Recording the bank payments of a closed period's instructions."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from settlement.records import InstructionRecord

INSTRUCTION_COLUMNS = "id, period_id, payer_id, payee_id, amount, paid_at, bank_reference"


async def record_payment(
    conn: AsyncConnection, instruction_id: uuid.UUID, bank_reference: str
) -> InstructionRecord:
    """Mark an instruction paid; the period becomes SETTLED with its last payment."""
    reference = bank_reference.strip()
    if not reference or len(reference) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "bankReference must be 1 to 200 characters", ["bankReference"]
        )
    period_id = await conn.scalar(
        text("SELECT period_id FROM settlement_instructions WHERE id = :i"), {"i": instruction_id}
    )
    if period_id is None:
        raise DomainError(
            ErrorCode.INSTRUCTION_NOT_FOUND, "no such payment instruction", ["instructionId"]
        )
    # The period row serializes payments of one period, so exactly one of them settles it.
    await conn.execute(
        text("SELECT id FROM settlement_periods WHERE id = :p FOR UPDATE"), {"p": period_id}
    )
    row = (
        await conn.execute(
            text(
                "UPDATE settlement_instructions SET paid_at = clock_timestamp(),"
                " bank_reference = :ref WHERE id = :i AND paid_at IS NULL"
                f" RETURNING {INSTRUCTION_COLUMNS}"
            ),
            {"i": instruction_id, "ref": reference},
        )
    ).one_or_none()
    if row is None:
        raise DomainError(
            ErrorCode.ALREADY_PAID, "this instruction is already paid", ["instructionId"]
        )
    await conn.execute(
        text(
            "UPDATE settlement_periods SET status = 'SETTLED', settled_at = clock_timestamp()"
            " WHERE id = :p AND status = 'CLOSED' AND NOT EXISTS (SELECT 1"
            " FROM settlement_instructions WHERE period_id = :p AND paid_at IS NULL)"
        ),
        {"p": period_id},
    )
    return InstructionRecord(**row._mapping)
