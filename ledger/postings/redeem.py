"""Redeem: a REDEEM transfer consuming available lots earliest-expiry first."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from ledger.accounts import AccountCode, account_id
from ledger.postings.base import TransferCode, consume, posting, spendable, wallet


async def redeem(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    redeemer_id: uuid.UUID,
    client_id: str | None,
    points: int,
    reference: str | None,
    metadata: dict[str, Any] | None = None,
    hold_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Burn available points at a partner, consuming lots earliest-expiry first."""
    async with posting(conn, member_id) as post:
        available = await spendable(conn, member_id, exclude_hold=hold_id)
        if available < points:
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS,
                f"the member has {max(available, 0)} points available, {points} requested",
                ["points"],
            )
        transfer_id = await post.transfer(
            TransferCode.REDEEM,
            debit=wallet(member_id),
            credit=account_id(AccountCode.PARTNER_REDEMPTION, redeemer_id),
            points=points,
            partner_id=redeemer_id,
            client_id=client_id,
            reference=reference,
            metadata=metadata,
        )
        taken = await consume(
            conn,
            transfer_id,
            member_id,
            points,
            kind="REDEEM",
            redeemer=redeemer_id,
            only_available=True,
        )
        if taken != points:  # the balance check above makes this unreachable
            raise RuntimeError(f"redemption consumed {taken} of {points} points")
    return transfer_id
