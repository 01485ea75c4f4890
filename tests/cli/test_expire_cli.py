"""`coalition expire` closes lots past their expiry and books breakage per issuer."""

from __future__ import annotations

import secrets
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import queries
from members.service import MemberRef, enroll
from points.service import earn_points
from tests.cli.test_cli import env_with, run
from tests.conftest import make_partner, partner_caller, unique_phone


async def test_expire_command_books_breakage_and_runs_idempotently(
    engine: AsyncEngine, database_url: str
) -> None:
    partner = await make_partner(engine)
    phone = unique_phone()
    async with engine.begin() as c:
        member = await enroll(c, partner_caller(partner.id), phone=phone, partner_ref=None)
        await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(phone=phone),
            amount=Decimal("70"),
            reference="E-1",
            occurred_at=None,
            idempotency_key=secrets.token_hex(8),
        )
        # Test setup: age the lot past its expiry.
        await c.execute(
            text(
                "UPDATE lots SET expires_at = now() - interval '1 day',"
                " available_at = now() - interval '2 days' WHERE member_id = :m"
            ),
            {"m": member.id},
        )
    env = env_with(DATABASE_URL=database_url)
    first = run(["expire"], env)
    assert first.returncode == 0, first.stderr
    async with engine.connect() as c:
        expiry = (
            await c.execute(
                text(
                    "SELECT code, points, partner_id FROM transfers WHERE member_id = :m"
                    " AND code = 'EXPIRY'"
                ),
                {"m": member.id},
            )
        ).all()
        balance = await queries.balance(c, member.id)
    assert [(r.code, r.points, r.partner_id) for r in expiry] == [("EXPIRY", 70, partner.id)]
    assert balance.available == 0
    second = run(["expire"], env)
    assert second.returncode == 0
    async with engine.connect() as c:
        count = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE member_id = :m AND code = 'EXPIRY'"),
            {"m": member.id},
        )
    assert count == 1
