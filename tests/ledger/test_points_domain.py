"""Earn, redeem and reverse through the domain operations, checked against the ledger tables."""

from __future__ import annotations

import secrets
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import queries
from members.service import MemberRef, enroll
from points.service import earn_points, redeem_points, reverse_transfer
from tests.conftest import make_partner, partner_caller, unique_phone


def key() -> str:
    return secrets.token_hex(8)


async def test_earn_then_redeem_across_brands(engine: AsyncEngine) -> None:
    grocer = await make_partner(engine, earn_rate="0.1")
    cinema = await make_partner(engine)
    phone = unique_phone()
    async with engine.begin() as c:
        member = await enroll(c, partner_caller(grocer.id), phone=phone, partner_ref="g-1")
        await enroll(c, partner_caller(cinema.id), phone=phone, partner_ref=None)
    async with engine.begin() as c:
        earned = await earn_points(
            c,
            partner_caller(grocer.id),
            member=MemberRef(partner_ref="g-1"),
            amount=Decimal("1234.50"),
            reference="receipt-1",
            occurred_at=None,
            idempotency_key=key(),
        )
    assert earned.points == 123
    async with engine.begin() as c:
        burnt = await redeem_points(
            c,
            partner_caller(cinema.id),
            member=MemberRef(phone=phone),
            points=100,
            reference="ticket-1",
            idempotency_key=key(),
        )
        assert burnt.value == "100.00" or Decimal(burnt.value) == Decimal(100)
        bal = await queries.balance(c, member.id)
    assert bal.available == 23
    async with engine.begin() as c:
        issuers = (
            await c.execute(
                text(
                    "SELECT issuer_partner_id, redeemer_partner_id, points FROM consumptions"
                    " WHERE transfer_id = :t"
                ),
                {"t": burnt.transfer_id},
            )
        ).all()
    assert [(r.issuer_partner_id, r.redeemer_partner_id, r.points) for r in issuers] == [
        (grocer.id, cinema.id, 100)
    ]
    async with engine.begin() as c:
        await reverse_transfer(
            c,
            partner_caller(cinema.id),
            transfer_id=burnt.transfer_id,
            points=40,
            reason="refund",
            idempotency_key=key(),
        )
        assert (await queries.balance(c, member.id)).available == 63
