"""Adjustments: operator corrections between partner and operator accounts, and support
corrections of a member's points (a credit funded by a partner, a debit into the operator's
adjustment account)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT, AccountCode, account_id
from ledger.postings.base import TransferCode, consume, posting, spendable, wallet


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


_INSERT_CREDIT_LOT = text(
    "INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,"
    " available_at, expires_at) VALUES (:lot, :member, :issuer, :t, :points, :points, now(),"
    " now() + make_interval(days => :days))"
)


async def credit_member(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    funder_id: uuid.UUID,
    points: int,
    validity_days: int,
    client_id: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """A support credit: an ADJUSTMENT from the funding partner's issuance account to the
    member's wallet, with a lot whose issuer is the funder (available now, expiring after the
    funder's validity days), so a later redemption settles like the funder's earned points."""
    async with posting(conn, member_id) as post:
        transfer_id = await post.transfer(
            TransferCode.ADJUSTMENT,
            debit=account_id(AccountCode.PARTNER_ISSUANCE, funder_id),
            credit=wallet(member_id),
            points=points,
            partner_id=funder_id,
            client_id=client_id,
            metadata=metadata,
        )
        await conn.execute(
            _INSERT_CREDIT_LOT,
            {
                "lot": new_id(),
                "member": member_id,
                "issuer": funder_id,
                "t": transfer_id,
                "points": points,
                "days": validity_days,
            },
        )
    return transfer_id


async def debit_member(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    points: int,
    client_id: str | None,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """A support debit: an ADJUSTMENT from the member's wallet into the operator's adjustment
    account, taken from the spendable balance oldest expiry first (one consumption per lot,
    kind ADJUSTMENT). Never below zero; no money moves (the issuers keep what they no longer
    owe, as with breakage)."""
    async with posting(conn, member_id) as post:
        if points > await spendable(conn, member_id):
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS, "not enough spendable points", ["points"]
            )
        transfer_id = await post.transfer(
            TransferCode.ADJUSTMENT,
            debit=wallet(member_id),
            credit=OPERATOR_ADJUSTMENT_ACCOUNT,
            points=points,
            partner_id=None,
            client_id=client_id,
            metadata=metadata,
        )
        taken = await consume(
            conn,
            transfer_id,
            member_id,
            points,
            kind=TransferCode.ADJUSTMENT,
            redeemer=None,
            only_available=True,
        )
        if taken != points:  # the spendable check above holds the member lock
            raise DomainError(
                ErrorCode.INSUFFICIENT_POINTS, "not enough spendable points", ["points"]
            )
    return transfer_id
