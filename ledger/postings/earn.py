"""Earn: an EARN transfer and its lot, then the member's debts repaid from the new lot first."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from db.ids import new_id
from ledger.accounts import AccountCode, account_id
from ledger.postings.base import Posting, TransferCode, posting, wallet
from ledger.queries import TRANSFER_COLUMNS, TransferRecord

_INSERT_EARN = text(
    "WITH t AS (INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points,"
    "  member_id, partner_id, client_id, reference, amount, metadata_, occurred_at, created_at)"
    "  VALUES (:id, 'EARN', :debit, :credit, :points, :member, :issuer, :client, :reference,"
    "  :amount, :metadata, COALESCE(:occurred_at, clock_timestamp()), clock_timestamp())"
    f"  RETURNING {TRANSFER_COLUMNS}),"
    " lot AS (INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,"
    "  available_at, expires_at) SELECT :lot, :member, :issuer, t.id, :points, :points,"
    "  :available_at, :expires_at FROM t)"
    " SELECT * FROM t"
).bindparams(bindparam("metadata", type_=JSONB))


async def book_earn(
    conn: AsyncConnection,
    *,
    member_id: uuid.UUID,
    issuer_id: uuid.UUID,
    client_id: str | None,
    points: int,
    reference: str | None,
    amount: Decimal | None,
    occurred_at: datetime | None,
    available_at: datetime,
    expires_at: datetime,
    metadata: dict[str, Any] | None = None,
) -> TransferRecord:
    """Book an earn and its lot (one statement), then repay the member's debts from the new
    lot first. Returns the transfer as stored."""
    async with posting(conn, member_id) as post:
        lot_id = new_id()
        row = (
            await conn.execute(
                _INSERT_EARN,
                {
                    "id": new_id(),
                    "debit": account_id(AccountCode.PARTNER_ISSUANCE, issuer_id),
                    "credit": wallet(member_id),
                    "points": points,
                    "member": member_id,
                    "issuer": issuer_id,
                    "client": client_id,
                    "reference": reference,
                    "amount": amount,
                    "metadata": metadata or {},
                    "occurred_at": occurred_at,
                    "lot": lot_id,
                    "available_at": available_at,
                    "expires_at": expires_at,
                },
            )
        ).one()
        booked = TransferRecord(**row._mapping)
        post.booked.append(booked.id)
        await _repay_debts(post, member_id, issuer_id, lot_id, points, client_id)
    return booked


async def _repay_debts(
    post: Posting,
    member_id: uuid.UUID,
    issuer_id: uuid.UUID,
    lot_id: uuid.UUID,
    points: int,
    client_id: str | None,
) -> None:
    debts = (
        await post.conn.execute(
            text(
                "SELECT id, creditor_partner_id, remaining FROM debts"
                " WHERE member_id = :m AND remaining > 0 ORDER BY created_at, id"
            ),
            {"m": member_id},
        )
    ).all()
    left = points
    for debt in debts:
        repay = min(left, int(debt.remaining))
        if repay <= 0:
            break
        left -= repay
        repayment = await post.transfer(
            TransferCode.DEBT_REPAYMENT,
            debit=wallet(member_id),
            credit=account_id(AccountCode.MEMBER_DEBT, member_id),
            points=repay,
            partner_id=debt.creditor_partner_id,
            client_id=client_id,
            metadata={"debt_id": str(debt.id)},
        )
        await post.conn.execute(
            text("UPDATE lots SET remaining = remaining - :p WHERE id = :lot"),
            {"p": repay, "lot": lot_id},
        )
        await post.conn.execute(
            text("UPDATE debts SET remaining = remaining - :p WHERE id = :d"),
            {"p": repay, "d": debt.id},
        )
        await post.conn.execute(
            text(
                "INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,"
                " redeemer_partner_id, points)"
                " VALUES (uuid7(), :t, :lot, 'DEBT_REPAYMENT', :issuer, :creditor, :p)"
            ),
            {
                "t": repayment,
                "lot": lot_id,
                "issuer": issuer_id,
                "creditor": debt.creditor_partner_id,
                "p": repay,
            },
        )
