"""Shared helpers of the batch tests: members enrolled with refs, batches in a transaction."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import Caller
from members.service import MemberRef, enroll
from points.batch import BatchOutcome, EarnRow, earn_points_batch
from tests.conftest import partner_caller, unique_phone


def key() -> str:
    return "k-" + secrets.token_hex(8)


async def enrolled(
    engine: AsyncEngine, partner_ids: Sequence[uuid.UUID], count: int
) -> list[tuple[uuid.UUID, str, str]]:
    """`count` fresh members enrolled at every partner: (id, phone, partnerRef at each)."""
    members = []
    async with engine.begin() as c:
        for _ in range(count):
            phone = unique_phone()
            ref = "c-" + secrets.token_hex(6)
            record = await enroll(c, partner_caller(partner_ids[0]), phone=phone, partner_ref=ref)
            for other in partner_ids[1:]:
                await enroll(c, partner_caller(other), phone=phone, partner_ref=ref)
            members.append((record.id, phone, ref))
    return members


def row(
    *,
    phone: str | None = None,
    partner_ref: str | None = None,
    member_id: uuid.UUID | None = None,
    amount: str = "100",
    reference: str = "receipt",
    idempotency_key: str | None = None,
    occurred_at: datetime | None = None,
) -> EarnRow:
    return EarnRow(
        MemberRef(id=member_id, phone=phone, partner_ref=partner_ref),
        Decimal(amount),
        reference,
        idempotency_key or key(),
        occurred_at,
    )


async def batch(engine: AsyncEngine, caller: Caller, rows: Sequence[EarnRow]) -> BatchOutcome:
    async with engine.begin() as c:
        return await earn_points_batch(c, caller, rows)
