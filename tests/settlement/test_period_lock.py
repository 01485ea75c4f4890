"""A close waits for postings in flight: no posting straddles a cutoff."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef
from points.service import redeem_points
from settlement.close import close_period
from tests.conftest import make_partner, partner_caller
from tests.settlement.helpers import close, earn, key, member_at, period_of


async def test_close_waits_for_a_posting_in_flight(engine: AsyncEngine) -> None:
    a = await make_partner(engine, points_validity_days=100)
    b = await make_partner(engine)
    phone = await member_at(engine, a, b)
    await earn(engine, a, phone, "100")
    async with engine.connect() as posting:
        await posting.begin()
        burnt = await redeem_points(
            posting,
            partner_caller(b.id),
            member=MemberRef(phone=phone),
            points=10,
            reference="in-flight",
            idempotency_key=key(),
        )
        # The posting holds the period lock shared: a close cannot take it.
        async with engine.begin() as closing:
            await closing.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(DBAPIError):
                await close_period(closing, None)
        await posting.commit()
    closed = await close(engine)
    assert await period_of(engine, uuid.UUID(burnt.transfer_id)) == {closed.id}
