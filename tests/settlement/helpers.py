"""Shared steps of the settlement tests: a member at several partners, points operations,
coalition settings changed for one test and always restored."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef, enroll
from partners.service import PartnerRecord
from partners.settings import update_settings
from points.service import earn_points, redeem_points, reverse_transfer
from settlement.close import close_period
from settlement.records import PeriodRecord
from tests.conftest import partner_caller, unique_phone


def key() -> str:
    return secrets.token_hex(8)


async def member_at(engine: AsyncEngine, *partners: PartnerRecord) -> str:
    phone = unique_phone()
    async with engine.begin() as c:
        for partner in partners:
            await enroll(c, partner_caller(partner.id), phone=phone, partner_ref=None)
    return phone


async def earn(
    engine: AsyncEngine, partner: PartnerRecord, phone: str, amount: str, reference: str = ""
) -> uuid.UUID:
    async with engine.begin() as c:
        outcome = await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(phone=phone),
            amount=Decimal(amount),
            reference=reference or key(),
            occurred_at=None,
            idempotency_key=key(),
        )
    assert outcome.transfer_id is not None
    return uuid.UUID(outcome.transfer_id)


async def redeem(
    engine: AsyncEngine, partner: PartnerRecord, phone: str, points: int, reference: str = ""
) -> uuid.UUID:
    async with engine.begin() as c:
        outcome = await redeem_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(phone=phone),
            points=points,
            reference=reference or key(),
            idempotency_key=key(),
        )
    return uuid.UUID(outcome.transfer_id)


async def reverse(
    engine: AsyncEngine, partner: PartnerRecord, transfer_id: uuid.UUID, points: int | None
) -> uuid.UUID:
    async with engine.begin() as c:
        outcome = await reverse_transfer(
            c,
            partner_caller(partner.id),
            transfer_id=transfer_id,
            points=points,
            reason="test",
            idempotency_key=key(),
        )
    return uuid.UUID(outcome.transfer_id)


async def close(engine: AsyncEngine, cutoff: datetime | None = None) -> PeriodRecord:
    async with engine.begin() as c:
        return await close_period(c, cutoff)


@asynccontextmanager
async def coalition_terms(engine: AsyncEngine, **changes: Any) -> AsyncIterator[None]:
    """Change the shared settings for one test; the defaults come back whatever happens."""
    async with engine.begin() as c:
        await update_settings(c, **changes)
    try:
        yield
    finally:
        async with engine.begin() as c:
            await update_settings(
                c,
                point_value=Decimal("1.00"),
                funding_model="REDEMPTION",
                clearing_fee=Decimal("0"),
            )


async def obligations_of(
    engine: AsyncEngine, *transfer_ids: uuid.UUID
) -> set[tuple[uuid.UUID, uuid.UUID, str, int, int]]:
    """(debtor, creditor, kind, points, amount) booked for the transfers."""
    async with engine.begin() as c:
        rows = await c.execute(
            text(
                "SELECT debtor_id, creditor_id, kind, points, amount FROM obligations"
                " WHERE transfer_id = ANY(:ids)"
            ),
            {"ids": list(transfer_ids)},
        )
        return {tuple(r) for r in rows}


async def period_of(engine: AsyncEngine, transfer_id: uuid.UUID) -> set[uuid.UUID]:
    async with engine.begin() as c:
        rows = await c.execute(
            text("SELECT DISTINCT period_id FROM obligations WHERE transfer_id = :t"),
            {"t": transfer_id},
        )
        return {r.period_id for r in rows}
