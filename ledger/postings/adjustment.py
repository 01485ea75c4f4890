"""Adjustment: an operator correction between partner and operator accounts."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.postings.base import TransferCode, posting


async def adjust(
    conn: AsyncConnection,
    *,
    debit: uuid.UUID,
    credit: uuid.UUID,
    points: int,
    partner_id: uuid.UUID | None,
    client_id: str | None,
    reference: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """An operator correction between partner and operator accounts (never a member wallet)."""
    async with posting(conn, None) as post:
        return await post.transfer(
            TransferCode.ADJUSTMENT,
            debit=debit,
            credit=credit,
            points=points,
            partner_id=partner_id,
            client_id=client_id,
            reference=reference,
            metadata=metadata,
        )
