"""Expiry: close lots past `expires_at`, one EXPIRY transfer per issuer into its breakage."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.accounts import AccountCode, account_id
from ledger.postings.base import TransferCode, posting, wallet


async def expire_member(conn: AsyncConnection, member_id: uuid.UUID) -> int:
    """Close the member's lots past expiry: one EXPIRY transfer per issuer, booked as breakage."""
    expired = 0
    async with posting(conn, member_id) as post:
        groups = (
            await conn.execute(
                text(
                    "SELECT issuer_partner_id, sum(remaining) AS pts FROM lots"
                    " WHERE member_id = :m AND remaining > 0 AND expires_at <= now()"
                    " GROUP BY issuer_partner_id ORDER BY issuer_partner_id"
                ),
                {"m": member_id},
            )
        ).all()
        for group in groups:
            transfer_id = await post.transfer(
                TransferCode.EXPIRY,
                debit=wallet(member_id),
                credit=account_id(AccountCode.PARTNER_BREAKAGE, group.issuer_partner_id),
                points=int(group.pts),
                partner_id=group.issuer_partner_id,
                client_id=None,
            )
            await conn.execute(
                text(
                    "WITH due AS (UPDATE lots SET remaining = 0 FROM"
                    "  (SELECT id, remaining AS pts FROM lots WHERE member_id = :m"
                    "   AND issuer_partner_id = :i AND remaining > 0 AND expires_at <= now()) d"
                    "  WHERE lots.id = d.id RETURNING lots.id, d.pts)"
                    " INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
                    "  redeemer_partner_id, points)"
                    " SELECT uuid7(), :t, due.id, 'EXPIRY', :i, NULL, due.pts FROM due"
                ),
                {"m": member_id, "i": group.issuer_partner_id, "t": transfer_id},
            )
            expired += int(group.pts)
    return expired
